/* Tests of streamed uploads (sync/stream.c, through the scheduler that
 * owns it) against a real durafs-emulator, the GCS backend and a real
 * journal: chunks sent while a file is written and only the tail after the
 * write op, a non-sequential change abandoning the stream, a restart
 * resuming the recorded session, and stale or malformed records. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/http.h"
#include "durafs/journal.h"
#include "durafs/sched.h"
#include "durafs/stream.h"
#include "emu_harness.h"
#include "sched_fixture.h"
#include "unit_util.h"

#define BUCKET "durafs-stream"
#define KIB 1024u
#define MIB (1024u * 1024u)
#define CHUNK (256u * KIB)
#define JSON_SLACK (4u * KIB)   /* session metadata counted as upload bytes */

static struct emuh *emu;
static struct http *http;
static struct be *be;

static struct sfx fx;

static void fx_start(void)
{
	sfx_start(&fx, be);
}

static void fx_stop(void)
{
	sch_free(fx.s);
	fx.s = NULL;
}

static int64_t received(void)
{
	return emuh_must_counter(emu, "gcs.upload_bytes_received");
}

/* Wait (60 s at most) until the emulator received at least want bytes. */
static void wait_received(int64_t want)
{
	int64_t t0 = ut_now_ms();

	while (received() < want) {
		if (ut_now_ms() - t0 > 60000)
			fail_msg("only %" PRId64 " of %" PRId64 " bytes streamed", received(), want);
		ut_sleep_ms(10);
	}
}

/* A new local file at path with an empty cache file "c<fid-ish>". */
static uint64_t new_file(const char *path, const char *cache, char *cp, size_t cplen)
{
	uint64_t fid = 0;

	snprintf(cp, cplen, "%s/%s", fx.files, cache);
	ut_write_at(cp, "", 0, 0, 1);
	UT_OK(jnl_file_new(fx.j, path, JNL_FILE, cache, NULL, 0, ut_wall_ns(), &fid, &e_));
	return fid;
}

/* What the filesystem does for a write: dirty, tell the scheduler, write. */
static void fs_write(uint64_t fid, const char *cp, const unsigned char *d, size_t off,
		     size_t len)
{
	UT_OK(jnl_file_dirty(fx.j, fid, NULL, &e_));
	sch_note_write(fx.s, fid, off);
	ut_write_at(cp, d + off, len, (off_t)off, 0);
	sch_note_write_end(fx.s, fid, off);
}

/* Write d[from, to) in step-byte writes. */
static void fs_write_seq(uint64_t fid, const char *cp, const unsigned char *d, size_t from,
			 size_t to, size_t step)
{
	size_t off, len;

	for (off = from; off < to; off += len) {
		len = to - off < step ? to - off : step;
		fs_write(fid, cp, d, off, len);
	}
}

/* fsync: journal the content, wait until it is committed. */
static void fs_fsync(uint64_t fid, size_t size)
{
	uint64_t seq = 0;

	UT_OK(jnl_write(fx.j, fid, size, ut_wall_ns(), 0, &seq, &e_));
	UT_OK(sch_wait_fid(fx.s, fid, 60000, &e_));
}

static int record_exists(uint64_t fid)
{
	char key[48], *v = NULL;
	int r;

	snprintf(key, sizeof(key), "stream.%" PRIu64, fid);
	UT_OK(jnl_meta_get(fx.j, key, &v, &e_));
	r = v != NULL;
	free(v);
	return r;
}

static int remote_exists(const char *path)
{
	return sfx_remote_exists(be, path);
}

/* --- tests ------------------------------------------------------------------ */

/* Chunks go out while the file is written; the write op sends only the
 * rest; the remote gets exactly the file, each byte once. */
static void test_streamed_then_tail(void **state)
{
	const size_t n = 4 * MIB + 1000;
	unsigned char *d = ut_pattern(n, 11);
	struct sched_stats st;
	char cp[256];
	uint64_t fid;
	int64_t before, total;

	(void)state;
	fx_start();
	fid = new_file("s/a.bin", "c1", cp, sizeof(cp));
	fs_write_seq(fid, cp, d, 0, 3 * MIB, 128 * KIB);
	/* The last write began at 3 MiB - 128 KiB: chunks up to 1.25 MiB below. */
	wait_received(3 * MIB - 128 * KIB - MIB - CHUNK);
	assert_true(record_exists(fid));
	assert_false(remote_exists("s/a.bin"));   /* nothing shows before the op */
	before = received();
	fs_write_seq(fid, cp, d, 3 * MIB, n, 128 * KIB);
	fs_fsync(fid, n);
	ut_check_remote_mem(be, "s/a.bin", d, n);
	total = received();
	assert_true(total >= (int64_t)n);
	assert_true(total <= (int64_t)(n + JSON_SLACK));
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.streamed, 1);
	assert_int_equal(st.sessions_restarted, 0);
	assert_true(st.streamed_bytes + JSON_SLACK >= (uint64_t)before);
	/* After the op began only the rest went: what the stream had not sent. */
	assert_true(total - (int64_t)st.streamed_bytes <= (int64_t)(n - st.streamed_bytes +
								    JSON_SLACK));
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started"), 1);
	assert_false(record_exists(fid));
	free(d);
}

/* A write below what was streamed abandons the stream (cancelled, record
 * gone); the op uploads the whole file. */
static void test_rewrite_abandons(void **state)
{
	const size_t n = 3 * MIB;
	unsigned char *d = ut_pattern(n, 12);
	struct sched_stats st;
	char cp[256];
	uint64_t fid;
	int64_t t0;

	(void)state;
	fx_start();
	fid = new_file("s/b.bin", "c2", cp, sizeof(cp));
	fs_write_seq(fid, cp, d, 0, 2 * MIB, 128 * KIB);
	wait_received(CHUNK);
	memcpy(d + 100, "REWRITE", 7);
	fs_write(fid, cp, d, 100, 7);
	t0 = ut_now_ms();
	while (emuh_must_requests(emu, "gcs.upload.cancel", 0) < 1 || record_exists(fid)) {
		if (ut_now_ms() - t0 > 30000)
			fail_msg("the stream was not abandoned");
		ut_sleep_ms(10);
	}
	fs_write_seq(fid, cp, d, 2 * MIB, n, 128 * KIB);
	fs_fsync(fid, n);
	ut_check_remote_mem(be, "s/b.bin", d, n);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.streamed, 0);
	assert_int_equal(st.sessions_restarted, 0);
	free(d);
}

/* A seek back (far below the furthest write) abandons too, even above
 * what was sent; a truncate below what was sent as well. */
static void test_seek_back_and_truncate(void **state)
{
	const size_t n = 6 * MIB;
	unsigned char *d = ut_pattern(n, 13);
	struct sched_stats st;
	char cp[256], cp2[256];
	uint64_t fid, fid2;
	int64_t base;

	(void)state;
	fx.so.stream_lead = 2 * MIB;   /* a chunk goes once 2 MiB follow it */
	fx_start();
	fid = new_file("s/c.bin", "c3", cp, sizeof(cp));
	/* the last write begins at 3 MiB: chunks [0, 1 MiB) go */
	fs_write_seq(fid, cp, d, 0, 4 * MIB, MIB);
	wait_received(MIB);
	/* 1.5 MiB below the furthest write, above what was sent (1 MiB) */
	memcpy(d + 3 * MIB / 2, "SEEKBACK", 8);
	fs_write(fid, cp, d, 3 * MIB / 2, 8);
	fs_write_seq(fid, cp, d, 4 * MIB, n, MIB);
	fs_fsync(fid, n);
	ut_check_remote_mem(be, "s/c.bin", d, n);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.streamed, 0);
	assert_int_equal(st.sessions_restarted, 0);   /* dropped before the op */

	/* truncate to 0 (noted at offset 0) after chunks went: abandoned */
	fid2 = new_file("s/d.bin", "c4", cp2, sizeof(cp2));
	base = received();
	fs_write_seq(fid2, cp2, d, 0, 6 * MIB, MIB);
	wait_received(base + CHUNK);
	sch_note_write(fx.s, fid2, 0);
	assert_int_equal(truncate(cp2, 0), 0);
	sch_note_write_end(fx.s, fid2, 0);
	fs_write_seq(fid2, cp2, d, 0, MIB, MIB);
	fs_fsync(fid2, MIB);
	ut_check_remote_mem(be, "s/d.bin", d, MIB);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.streamed, 0);
	assert_int_equal(st.sessions_restarted, 0);
	free(d);
}

/* The daemon stops mid-stream (its state in memory is lost); after a
 * restart the recovered write op finishes the recorded session: no byte
 * is sent twice beyond one chunk, one session in all. */
static void test_restart_resumes(void **state)
{
	const size_t n = 5 * MIB + 333;
	unsigned char *d = ut_pattern(n, 14);
	struct sched_stats st;
	struct jnl_recovery rec;
	char cp[256];
	uint64_t fid;
	int64_t streamed, total;

	(void)state;
	fx_start();
	fid = new_file("s/e.bin", "c5", cp, sizeof(cp));
	fs_write_seq(fid, cp, d, 0, n, 256 * KIB);
	wait_received(3 * MIB);
	sch_stop(fx.s);
	fx_stop();
	streamed = received();
	assert_true(record_exists(fid));
	assert_false(remote_exists("s/e.bin"));
	jnl_close(fx.j);
	fx.j = NULL;
	memset(&rec, 0, sizeof(rec));
	UT_OK(jnl_open(fx.db, NULL, &fx.j, &rec, &e_));
	assert_int_equal(rec.redirtied, 1);   /* the file gets its write op */
	fx_start();
	UT_OK(sch_flush(fx.s, 60000, NULL, NULL, &e_));
	ut_check_remote_mem(be, "s/e.bin", d, n);
	total = received();
	print_message("    streamed %" PRId64 " before the stop, %" PRId64 " in all for %zu\n",
		      streamed, total, n);
	assert_true(total <= (int64_t)(n + CHUNK + JSON_SLACK));
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started"), 1);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.streamed, 1);
	assert_false(record_exists(fid));
	free(d);
}

/* Records that do not fit are ignored (malformed) or cancelled (another
 * path): the op uploads normally and the record is gone. */
static void test_stale_records(void **state)
{
	const size_t n = 2 * MIB;
	unsigned char *d = ut_pattern(n, 15);
	char cp[256], key[48];
	uint64_t fid, fid2, seq;

	(void)state;
	fx_start();
	fid = new_file("s/f.bin", "c6", cp, sizeof(cp));
	ut_write_at(cp, d, n, 0, 1);
	snprintf(key, sizeof(key), "stream.%" PRIu64, fid);
	UT_OK(jnl_meta_set(fx.j, key, "{\"v\":1,\"path\":", &e_));
	UT_OK(jnl_write(fx.j, fid, n, ut_wall_ns(), 0, &seq, &e_));
	UT_OK(sch_wait_fid(fx.s, fid, 60000, &e_));
	ut_check_remote_mem(be, "s/f.bin", d, n);

	fid2 = new_file("s/g.bin", "c7", cp, sizeof(cp));
	ut_write_at(cp, d, n, 0, 1);
	snprintf(key, sizeof(key), "stream.%" PRIu64, fid2);
	UT_OK(jnl_meta_set(fx.j, key, "{\"v\":1,\"path\":\"s/other\",\"session\":"
			   "\"http://127.0.0.1:1/nothing\",\"persisted\":262144,"
			   "\"chunk\":262144}", &e_));
	UT_OK(jnl_write(fx.j, fid2, n, ut_wall_ns(), 0, &seq, &e_));
	UT_OK(sch_wait_fid(fx.s, fid2, 60000, &e_));
	ut_check_remote_mem(be, "s/g.bin", d, n);
	assert_false(record_exists(fid2));
	free(d);
}

/* A change under way holds back the chunks it may touch: none reaching
 * beyond its offset is read until it ends; then streaming goes on, and
 * the op finishes with the streamed sums (only the rest is read). */
static void test_change_under_way_waits(void **state)
{
	const size_t n = 4 * MIB;
	unsigned char *d = ut_pattern(n, 17);
	struct sched_stats st;
	char cp[256];
	uint64_t fid;

	(void)state;
	fx.so.stream_lead = CHUNK;   /* chunks up to 256 KiB below the last write */
	fx_start();
	fid = new_file("s/w.bin", "c9", cp, sizeof(cp));
	fs_write_seq(fid, cp, d, 0, 7 * MIB / 4, 256 * KIB);
	/* a write at 2 MiB begins (and does not end yet) */
	UT_OK(jnl_file_dirty(fx.j, fid, NULL, &e_));
	sch_note_write(fx.s, fid, 2 * MIB);
	fs_write_seq(fid, cp, d, 7 * MIB / 4, 3 * MIB, 256 * KIB);
	/* chunks up to 2.5 MiB would go; those beyond 2 MiB wait */
	wait_received(2 * MIB);
	ut_sleep_ms(300);
	assert_true(received() <= (int64_t)(2 * MIB + JSON_SLACK));
	ut_write_at(cp, d + 2 * MIB, 256 * KIB, 2 * MIB, 0);
	sch_note_write_end(fx.s, fid, 2 * MIB);
	wait_received(5 * MIB / 2);
	fs_write_seq(fid, cp, d, 3 * MIB, n, 256 * KIB);
	fs_fsync(fid, n);
	ut_check_remote_mem(be, "s/w.bin", d, n);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.streamed, 1);
	assert_int_equal(st.sessions_restarted, 0);
	assert_true(received() <= (int64_t)(n + JSON_SLACK));
	free(d);
}

/* no_stream: nothing is sent before the write op. */
static void test_no_stream(void **state)
{
	const size_t n = 3 * MIB;
	unsigned char *d = ut_pattern(n, 16);
	char cp[256];
	uint64_t fid;

	(void)state;
	fx.so.no_stream = 1;
	fx_start();
	fid = new_file("s/h.bin", "c8", cp, sizeof(cp));
	fs_write_seq(fid, cp, d, 0, n, 128 * KIB);
	ut_sleep_ms(300);
	assert_int_equal(received(), 0);
	fs_fsync(fid, n);
	ut_check_remote_mem(be, "s/h.bin", d, n);
	free(d);
}

/* The backend half (BE_META_SIZE_UNKNOWN on GCS): full chunks only, a
 * status query that never completes the session, nothing visible until
 * the final size is given with the sums; wrong sums are refused. */
static void test_backend_size_unknown(void **state)
{
	const size_t n = 3 * CHUNK + 100;
	struct be_meta meta, sums;
	struct be_upload up, up2;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct err e;
	int fd, r;

	(void)state;
	assert_true(be_caps(be) & BE_CAP_STREAM);
	fd = ut_pattern_file(n, 21, &sums);
	memset(&meta, 0, sizeof(meta));
	meta.size = 2 * CHUNK + 1;   /* what is there "so far" */
	meta.flags = BE_META_SUMS_LATE | BE_META_SIZE_UNKNOWN;
	memset(&up, 0, sizeof(up));
	up.chunk_size = CHUNK;
	UT_OK(be_upload_begin(be, "u/x.bin", &meta, &pre, &up, &e_));
	assert_true(up.meta.flags & BE_META_SIZE_UNKNOWN);
	memset(&ent, 0, sizeof(ent));
	assert_int_equal(be_upload_chunk(be, &up, fd, &ent, NULL), 0);
	assert_int_equal(up.persisted, CHUNK);
	assert_int_equal(be_upload_chunk(be, &up, fd, &ent, NULL), 0);
	assert_int_equal(up.persisted, 2 * CHUNK);
	/* the 1 byte left would be the last chunk: refused while unknown */
	assert_int_equal(be_upload_chunk(be, &up, fd, &ent, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	/* a status query with what persisted as "size" still completes nothing */
	up.meta.size = 2 * CHUNK;
	assert_int_equal(be_upload_query(be, &up, &ent, NULL), 0);
	assert_int_equal(up.persisted, 2 * CHUNK);
	assert_false(remote_exists("u/x.bin"));
	/* the final size and the right sums: committed, byte-exact */
	up.meta.size = n;
	up.meta.flags = BE_META_SUMS_LATE | BE_META_SUMS_READY;
	up.meta.crc32c = sums.crc32c;
	memcpy(up.meta.md5, sums.md5, 16);
	assert_int_equal(be_upload_query(be, &up, &ent, NULL), 0);
	r = be_upload_chunk(be, &up, fd, &ent, NULL);
	if (r == 0)   /* a full chunk first, then the final one */
		r = be_upload_chunk(be, &up, fd, &ent, NULL);
	assert_int_equal(r, 1);
	assert_int_equal(ent.size, n);
	be_entry_release(&ent);
	{
		unsigned char *d = ut_pattern(n, 21);

		ut_check_remote_mem(be, "u/x.bin", d, n);
		free(d);
	}
	/* another session finished with wrong sums: refused, nothing shows */
	memset(&up2, 0, sizeof(up2));
	up2.chunk_size = CHUNK;
	UT_OK(be_upload_begin(be, "u/y.bin", &meta, &pre, &up2, &e_));
	assert_int_equal(be_upload_chunk(be, &up2, fd, &ent, NULL), 0);
	up2.meta.size = n;
	up2.meta.flags = BE_META_SUMS_LATE | BE_META_SUMS_READY;
	up2.meta.crc32c = sums.crc32c ^ 1;
	memcpy(up2.meta.md5, sums.md5, 16);
	r = be_upload_chunk(be, &up2, fd, &ent, &e);
	while (r == 0)
		r = be_upload_chunk(be, &up2, fd, &ent, &e);
	assert_int_equal(r, -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_false(remote_exists("u/y.bin"));
	be_entry_release(&ent);
	close(fd);
}

/* --- fixtures ------------------------------------------------------------------ */

static int fx_setup(void **state)
{
	(void)state;
	if (sfx_setup(&fx, "test_stream", emu, BUCKET, http) < 0)
		return -1;
	fx.so.workers = 2;
	fx.so.chunk_size = CHUNK;
	fx.so.small_max = 8 * MIB;   /* the tail goes through the session */
	fx.so.renew_ms = 0;          /* 0: the scheduler's default (60 s) */
	return 0;
}

static int fx_teardown(void **state)
{
	(void)state;
	return sfx_teardown(&fx, emu);
}

static int group_setup(void **state)
{
	const struct sfx_group_opts go = {
		.max_retries = 12, .backoff_max_ms = 40, .jitter_ms = 5, .chunk_size = 0,
	};

	(void)state;
	return sfx_group_start("test_stream", BUCKET, 0, &go, &emu, &http, &be);
}

static int group_teardown(void **state)
{
	(void)state;
	sfx_group_stop(emu, http, be);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_streamed_then_tail, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_rewrite_abandons, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_seek_back_and_truncate, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_restart_resumes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stale_records, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_change_under_way_waits, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_stream, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_backend_size_unknown, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests_name("stream", tests, group_setup, group_teardown);
}
