/* The GCS backend (sync/gcs.c) against a real durafs-emulator started by
 * the harness: every operation, with faults injected (503/429, cut
 * connections, short 308s, expired sessions, capped and failing pages),
 * concurrent writers, interrupted directory renames, and exact paged
 * listings. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/enc.h"
#include "durafs/gcs.h"
#include "durafs/http.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"
#include "emu_harness.h"
#include "unit_util.h"

#define BUCKET "durafs-test"          /* versioning on */
#define PLAIN "durafs-plain"          /* versioning off */
#define CHUNK (256u * 1024u)

static struct emuh *emu;
static struct http *http;
static struct be *be;        /* BUCKET, no prefix, 256 KiB chunks */
static struct be *be_plain;  /* PLAIN */

/* --- helpers ---------------------------------------------------------- */

static struct be *new_backend(const char *bucket, const char *prefix, uint64_t chunk)
{
	struct gcs_opts o;
	struct be *b = NULL;
	struct err e;

	memset(&o, 0, sizeof(o));
	o.bucket = bucket;
	o.prefix = prefix;
	o.endpoint = emuh_url(emu);
	o.http = http;
	o.chunk_size = chunk;
	o.retry_base_ms = 2;
	o.chunk_max_failures = 30;
	if (gcs_new(&o, &b, &e) < 0)
		fail_msg("gcs_new: %s", e.msg);
	return b;
}

static int setup(void **state)
{
	struct err e;

	(void)state;
	if (emuh_test_start_noauth("test_gcs_emu", 12, 40, &emu, &http) < 0)
		return -1;
	if (emuh_gcs_bucket(emu, BUCKET, 1, &e) < 0 ||
	    emuh_gcs_bucket(emu, PLAIN, 0, &e) < 0) {
		fprintf(stderr, "test_gcs_emu: setup: %s\n", e.msg);
		return -1;
	}
	be = new_backend(BUCKET, NULL, CHUNK);
	be_plain = new_backend(PLAIN, NULL, CHUNK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	be_free(be);
	be_free(be_plain);
	emuh_test_stop(emu, http);
	return 0;
}

static int clear_faults(void **state)
{
	(void)state;
	emuh_must_faults(emu, "[]");
	return 0;
}

/* --- the operations, once without faults ------------------------------ */

static void test_check(void **state)
{
	struct be *nob;
	struct err e;

	(void)state;
	UT_OK(be_check(be, &e_));
	nob = new_backend("no-such-bucket", NULL, 0);
	assert_int_equal(be_check(nob, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "no-such-bucket"));
	be_free(nob);
}

static void test_basic_ops(void **state)
{
	struct be_entry ent, cur, f1;
	struct be_list l = { 0 };
	struct ut_buf got = { 0 };
	struct be_version stale;
	struct be_pre pre;
	struct err e;
	uint64_t g;

	(void)state;
	memset(&ent, 0, sizeof(ent));
	ut_put_str(be, "basic/hello.txt", "hello, world\n", &f1);
	assert_int_equal(f1.type, BE_FILE);
	assert_int_equal(f1.size, 13);
	assert_true(f1.ver.gen > 0);
	assert_int_equal(f1.mtime.tv_sec, 1700000000);

	UT_OK(be_stat(be, "basic/hello.txt", &ent, &e_));
	assert_int_equal(ent.type, BE_FILE);
	assert_int_equal(ent.ver.gen, f1.ver.gen);
	assert_true(ent.has_crc32c && ent.has_md5);
	assert_int_equal(ent.crc32c, ck_crc32c(0, "hello, world\n", 13));
	assert_string_equal(ent.name, "hello.txt");
	be_entry_release(&ent);

	/* Ranged reads: middle, past the end, at the end. */
	UT_OK(be_read(be, "basic/hello.txt", &f1.ver, 7, 5, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 5);
	assert_memory_equal(got.p, "world", 5);
	got.n = 0;
	UT_OK(be_read(be, "basic/hello.txt", &f1.ver, 10, 100, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 3);
	got.n = 0;
	UT_OK(be_read(be, "basic/hello.txt", &f1.ver, 13, 10, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 0);
	UT_OK(be_read(be, "basic/hello.txt", &f1.ver, 500, 10, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 0);
	free(got.p);

	/* A directory: marker, then listing, then stat. */
	UT_OK(be_mkdir(be, "basic/sub", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	be_entry_release(&ent);
	/* mkdir is idempotent on a directory, refused on a file. */
	UT_OK(be_mkdir(be, "basic/sub", NULL, &e_));
	assert_int_equal(be_mkdir(be, "basic/hello.txt", NULL, &e), -1);
	assert_int_equal(e.code, ERR_EXISTS);
	UT_OK(be_stat(be, "basic/sub", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	assert_int_equal(ent.implicit, 0);
	be_entry_release(&ent);

	/* Symlinks carry their target in the listing. */
	pre = ut_pre_absent();
	UT_OK(be_symlink(be, "basic/link", "hello.txt", &f1.mtime, &pre, &ent, &e_));
	assert_int_equal(ent.type, BE_SYMLINK);
	be_entry_release(&ent);

	UT_OK(be_list(be, "basic", &l, &e_));
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "hello.txt");
	assert_string_equal(l.v[1].name, "link");
	assert_int_equal(l.v[1].type, BE_SYMLINK);
	assert_string_equal(l.v[1].symlink_target, "hello.txt");
	assert_int_equal(l.v[1].size, 9);
	assert_string_equal(l.v[2].name, "sub");
	assert_int_equal(l.v[2].type, BE_DIR);
	be_list_release(&l);

	/* Root listing shows basic/ as a directory. */
	UT_OK(be_list(be, "", &l, &e_));
	assert_non_null(be_list_find(&l, "basic"));
	assert_int_equal(be_list_find(&l, "basic")->type, BE_DIR);
	be_list_release(&l);

	/* Missing things. */
	assert_int_equal(be_stat(be, "basic/nope", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(be_list(be, "basic/nope", &l, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);

	/* Rename a file; the old name is gone; renaming again is NOTFOUND. */
	pre = ut_pre_absent();
	UT_OK(be_rename(be, "basic/hello.txt", &f1.ver, "basic/sub/moved.txt", &pre, &ent, &e_));
	assert_string_equal(ent.name, "moved.txt");
	assert_int_equal(ent.size, 13);
	assert_int_equal(be_stat(be, "basic/hello.txt", &cur, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(be_rename(be, "basic/hello.txt", &f1.ver, "basic/x", &pre, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	{
		struct ut_buf mv = { 0 };

		UT_OK(be_read(be, "basic/sub/moved.txt", &ent.ver, 0, UINT64_MAX, ut_buf_sink, &mv,
			   NULL, &e_));
		assert_int_equal(mv.n, 13);
		assert_memory_equal(mv.p, "hello, world\n", 13);
		free(mv.p);
	}
	be_entry_release(&ent);
	be_entry_release(&f1);

	/* rmdir refuses a non-empty directory. */
	assert_int_equal(be_rmdir(be, "basic/sub", &e), -1);
	assert_int_equal(e.code, ERR_NOTEMPTY);
	UT_OK(be_stat(be, "basic/sub/moved.txt", &ent, &e_));
	stale = ent.ver;
	stale.gen -= 1;
	/* A guarded delete with a stale generation is a conflict. */
	assert_int_equal(be_remove(be, "basic/sub/moved.txt", &stale, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_int_equal(cur.ver.gen, ent.ver.gen);
	be_entry_release(&cur);
	UT_OK(be_remove(be, "basic/sub/moved.txt", &ent.ver, NULL, &e_));
	assert_int_equal(be_remove(be, "basic/sub/moved.txt", &ent.ver, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	be_entry_release(&ent);
	UT_OK(be_rmdir(be, "basic/sub", &e_));
	assert_int_equal(be_rmdir(be, "basic/sub", &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
}

static void test_upload_resumable_roundtrip(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	size_t n = 5 * CHUNK + 12345;
	int fd = ut_pattern_file(n, 1, &m), r, chunks = 0;
	int64_t recv0 = emuh_must_counter(emu, "gcs.upload_bytes_received");

	(void)state;
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(be, "big/one.bin", &m, &pre, &up, &e_));
	assert_true(up.session[0] != '\0');
	assert_int_equal(up.chunk_size, CHUNK);
	do {
		struct err e;

		r = be_upload_chunk(be, &up, fd, &ent, &e);
		if (r < 0)
			fail_msg("chunk: %s", e.msg);
		chunks++;
	} while (r == 0);
	assert_int_equal(chunks, 6);
	assert_true(up.done);
	assert_int_equal(up.persisted, n);
	assert_int_equal(ent.size, n);
	assert_int_equal(ent.crc32c, m.crc32c);
	assert_int_equal(ent.mtime.tv_sec, m.mtime.tv_sec);
	/* Sent exactly once (plus the small JSON of the first request). */
	assert_in_range(emuh_must_counter(emu, "gcs.upload_bytes_received") - recv0, n, n + 2048);
	ut_check_remote_fd(be, "big/one.bin", &ent.ver, fd, n);
	/* The range read pinned to the generation works in the middle. */
	{
		struct ut_buf got = { 0 };
		char want[100];

		UT_OK(be_read(be, "big/one.bin", &ent.ver, CHUNK - 50, 100, ut_buf_sink, &got, NULL,
			   &e_));
		assert_int_equal(got.n, 100);
		assert_int_equal(pread(fd, want, 100, CHUNK - 50), 100);
		assert_memory_equal(got.p, want, 100);
		free(got.p);
	}
	be_entry_release(&ent);
	close(fd);
}

/* --- faults ------------------------------------------------------------- */

struct prog {
	uint64_t calls, items, bytes;
	uint64_t arm_at;           /* install `rules` when items reaches this */
	const char *rules;
	int cancel_at;             /* return non-zero at this many items */
};

static int prog_cb(void *ud, uint64_t items, uint64_t bytes)
{
	struct prog *p = ud;

	p->calls++;
	p->items = items;
	p->bytes = bytes;
	if (p->rules && items == p->arm_at)
		emuh_must_faults(emu, p->rules);
	return p->cancel_at && items >= (uint64_t)p->cancel_at;
}

/* Every operation succeeds with 30% of requests failing (503/429) and
 * connections cut mid-request and mid-reply. */
static void test_everything_under_faults(void **state)
{
	struct be_entry ent, f1, f2, big;
	struct be_list l = { 0 };
	struct be_upload up;
	struct be_pre pre;
	struct be_meta m, mb;
	struct prog pg;
	size_t nb = 3 * CHUNK + 777;
	int fd = ut_pattern_file(20000, 7, &m), fdb = ut_pattern_file(nb, 8, &mb), i;
	char name[64];
	const char *srcs[2];
	struct be_version vers[2];
	int64_t fired0, fired1;
	json_t *st = NULL;
	struct err e;

	(void)state;
	/* 30% of all requests fail (15% 503, then 18% of the rest 429);
	 * chunk uploads are cut mid-body and downloads mid-reply, the first
	 * two for sure, then 20% of them. */
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":503,\"fraction\":0.15},"
	       "{\"kind\":\"status\",\"status\":429,\"fraction\":0.18},"
	       "{\"kind\":\"cut\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"after_bytes\":70000,"
	       "\"count\":2},"
	       "{\"kind\":\"cut\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"after_bytes\":70000,"
	       "\"fraction\":0.2},"
	       "{\"kind\":\"cut_response\",\"method\":\"GET\",\"query\":\"alt=media\","
	       "\"after_bytes\":5000,\"count\":2},"
	       "{\"kind\":\"cut_response\",\"method\":\"GET\",\"query\":\"alt=media\","
	       "\"after_bytes\":5000,\"fraction\":0.2}]");
	pre = ut_pre_absent();
	UT_OK(be_put(be, "flt/small.bin", fd, &m, &pre, &f1, &e_));
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "flt/big.bin", fdb, &mb, &pre, CHUNK, 3, &up, NULL, NULL, &big,
			  &e_));
	assert_int_equal(big.size, nb);
	UT_OK(be_mkdir(be, "flt/d", NULL, &e_));
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "flt/d/f%d", i);
		ut_put_str(be, name, name, NULL);
	}
	UT_OK(be_symlink(be, "flt/ln", "small.bin", NULL, &pre, NULL, &e_));
	UT_OK(be_stat(be, "flt/small.bin", &ent, &e_));
	assert_int_equal(ent.ver.gen, f1.ver.gen);
	be_entry_release(&ent);
	UT_OK(be_stat(be, "flt/d", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	be_entry_release(&ent);
	UT_OK(be_list(be, "flt", &l, &e_));
	assert_int_equal(l.n, 4);  /* big.bin d ln small.bin */
	be_list_release(&l);
	ut_check_remote_fd(be, "flt/small.bin", &f1.ver, fd, 20000);
	ut_check_remote_fd(be, "flt/big.bin", &big.ver, fdb, nb);
	/* Overwrite guarded by the generation. */
	UT_OK(be_put(be, "flt/small.bin", fd, &m, &(struct be_pre){ BE_PRE_MATCH, f1.ver }, &f2,
		  &e_));
	assert_true(f2.ver.gen > f1.ver.gen);
	/* Compose small + big into a new object. */
	srcs[0] = "flt/small.bin";
	srcs[1] = "flt/big.bin";
	vers[0] = f2.ver;
	vers[1] = big.ver;
	UT_OK(be_compose(be, "flt/composed", &pre, srcs, vers, 2, NULL, &ent, &e_));
	assert_int_equal(ent.size, 20000 + nb);
	be_entry_release(&ent);
	pre = ut_pre_absent();
	UT_OK(be_rename(be, "flt/small.bin", &f2.ver, "flt/renamed.bin", &pre, &ent, &e_));
	be_entry_release(&ent);
	memset(&pg, 0, sizeof(pg));
	UT_OK(be_rename_dir(be, "flt/d", "flt/d2", prog_cb, &pg, &e_));
	assert_int_equal(pg.items, 5);
	UT_OK(be_list(be, "flt/d2", &l, &e_));
	assert_int_equal(l.n, 5);
	be_list_release(&l);
	assert_int_equal(be_stat(be, "flt/d", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "flt/d2/f%d", i);
		UT_OK(be_stat(be, name, &ent, &e_));
		UT_OK(be_remove(be, name, &ent.ver, NULL, &e_));
		be_entry_release(&ent);
	}
	UT_OK(be_rmdir(be, "flt/d2", &e_));
	UT_OK(be_stat(be, "flt/big.bin", &ent, &e_));
	UT_OK(be_remove(be, "flt/big.bin", &ent.ver, NULL, &e_));
	be_entry_release(&ent);
	memset(&pg, 0, sizeof(pg));
	UT_OK(be_purge(be, "flt", prog_cb, &pg, &e_));
	assert_true(pg.items >= 3);  /* small.bin x2, big.bin, d/ files ... */

	/* The faults really fired. */
	assert_int_equal(emuh_stats(emu, &st, &e), 0);
	{
		json_t *ff = json_object_get(st, "faults_fired");

		fired0 = json_integer_value(json_object_get(ff, "status"));
		fired1 = json_integer_value(json_object_get(ff, "cut")) +
			 json_integer_value(json_object_get(ff, "cut_response"));
	}
	json_decref(st);
	print_message("    faults fired: %" PRId64 " status, %" PRId64 " cuts\n", fired0, fired1);
	assert_true(fired0 >= 5);
	assert_true(fired1 >= 4);
	emuh_must_faults(emu, "[]");
	ut_check_remote_fd(be, "flt/renamed.bin", NULL, fd, 20000);
	be_entry_release(&f1);
	be_entry_release(&f2);
	be_entry_release(&big);
	close(fd);
	close(fdb);
}

/* An upload cut mid-chunk resumes from what the server persisted: the
 * bytes received by the emulator exceed the file only by the part of the
 * cut chunk that was not persisted. */
static void test_upload_cut_resumes(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	size_t n = 4 * 1024 * 1024 + 99;
	int fd = ut_pattern_file(n, 2, &m);
	int64_t recv0 = emuh_must_counter(emu, "gcs.upload_bytes_received");
	int64_t start0 = emuh_must_counter(emu, "gcs.upload_sessions_started");
	int64_t res0 = emuh_must_counter(emu, "gcs.upload_sessions_resumed");
	int64_t recv, resent;
	struct be *b1 = new_backend(BUCKET, NULL, 1024 * 1024);

	(void)state;
	/* Cut the first 1 MiB chunk 600,000 bytes in. The connection is a
	 * reused one, so this also checks that nothing below us (libcurl)
	 * silently resends the chunk. */
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(b1, "cut/file.bin", &m, &pre, &up, &e_));
	emuh_must_faults(emu, "[{\"kind\":\"cut\",\"method\":\"PUT\",\"path\":\"/upload/*\","
	       "\"query\":\"upload_id\",\"after_bytes\":600000,\"count\":1}]");
	/* One call: cut, status query, progress = what the server kept. */
	assert_int_equal(be_upload_chunk(b1, &up, fd, &ent, NULL), 0);
	assert_int_equal(up.persisted, 524288);
	UT_OK(be_upload_file(b1, "cut/file.bin", fd, &m, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	recv = emuh_must_counter(emu, "gcs.upload_bytes_received") - recv0;
	resent = recv - (int64_t)n;
	print_message("    %zu bytes uploaded, %" PRId64 " received, %" PRId64 " sent twice\n",
		      n, recv, resent);
	/* At most the 600,000 bytes of the cut attempt, less what persisted
	 * (the emulator keeps whole 256 KiB units: 524,288). */
	assert_in_range(resent, 0, 600000 - 524288 + 2048);
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started") - start0, 1);
	assert_true(emuh_must_counter(emu, "gcs.upload_sessions_resumed") - res0 >= 1);
	ut_check_remote_fd(b1, "cut/file.bin", &ent.ver, fd, n);
	be_entry_release(&ent);
	be_free(b1);
	close(fd);
}

/* A 308 that persists less than was sent: the next chunk starts at the
 * server's offset. */
static void test_short_308(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	size_t n = 3 * 512 * 1024 + 5;
	int fd = ut_pattern_file(n, 3, &m), r, calls = 0;
	int64_t recv0 = emuh_must_counter(emu, "gcs.upload_bytes_received"), recv;
	uint64_t before;
	struct be *b2 = new_backend(BUCKET, NULL, 512 * 1024);

	(void)state;
	emuh_must_faults(emu, "[{\"kind\":\"short308\",\"persist_less\":100000,\"count\":2}]");
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(b2, "short/file.bin", &m, &pre, &up, &e_));
	before = up.persisted;
	r = be_upload_chunk(b2, &up, fd, &ent, NULL);
	assert_int_equal(r, 0);
	/* 512 KiB sent, 100,000 fewer kept, rounded down to 256 KiB units. */
	assert_int_equal(up.persisted - before, 256 * 1024);
	do {
		struct err e;

		r = be_upload_chunk(b2, &up, fd, &ent, &e);
		if (r < 0)
			fail_msg("chunk: %s", e.msg);
		calls++;
	} while (r == 0);
	assert_int_equal(ent.size, n);
	recv = emuh_must_counter(emu, "gcs.upload_bytes_received") - recv0;
	print_message("    %zu bytes uploaded in %d more chunks, %" PRId64 " received\n", n,
		      calls, recv);
	assert_in_range(recv - (int64_t)n, 2 * 256 * 1024, 2 * 256 * 1024 + 2048);
	ut_check_remote_fd(b2, "short/file.bin", &ent.ver, fd, n);
	be_entry_release(&ent);
	be_free(b2);
	close(fd);
}

/* An expired session is ERR_GONE for the low-level calls, and
 * be_upload_file starts over transparently. */
static void test_expired_session(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	struct err e;
	size_t n = 3 * CHUNK + 1;
	int fd = ut_pattern_file(n, 4, &m), r;
	int64_t start0;

	(void)state;
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(be, "exp/a.bin", &m, &pre, &up, &e_));
	UT_OK(be_upload_chunk(be, &up, fd, &ent, &e_));
	emuh_must_faults(emu, "[{\"kind\":\"expire_session\",\"count\":1}]");
	r = be_upload_chunk(be, &up, fd, &ent, &e);
	assert_int_equal(r, -1);
	assert_int_equal(e.code, ERR_GONE);
	r = be_upload_query(be, &up, &ent, &e);
	assert_int_equal(r, -1);
	assert_int_equal(e.code, ERR_GONE);

	/* The driver restarts it from zero and reports the new session. */
	start0 = emuh_must_counter(emu, "gcs.upload_sessions_started");
	emuh_must_faults(emu, "[{\"kind\":\"expire_session\",\"count\":1}]");
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "exp/b.bin", fd, &m, &pre, 1, 2, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started") - start0, 2);
	ut_check_remote_fd(be, "exp/b.bin", &ent.ver, fd, n);
	be_entry_release(&ent);
	/* With no restarts allowed, the caller sees ERR_GONE. */
	emuh_must_faults(emu, "[{\"kind\":\"expire_session\",\"count\":1}]");
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_file(be, "exp/c.bin", fd, &m, &pre, 1, 0, &up, NULL, NULL,
					&ent, &e), -1);
	assert_int_equal(e.code, ERR_GONE);
	close(fd);
}

struct saved {
	struct be_upload last;
	int calls;
	int stop_after;
};

static int save_state(void *ud, const struct be_upload *up)
{
	struct saved *s = ud;

	s->last = *up;
	s->calls++;
	return s->stop_after && s->calls >= s->stop_after;
}

/* The upload state saved by the caller (the journal) resumes in a new
 * backend instance (a restarted daemon) without resending anything; a
 * changed file abandons the session. */
static void test_resume_saved_state(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m, m2;
	struct saved sv;
	struct err e;
	size_t n = 6 * CHUNK + 3;
	int fd = ut_pattern_file(n, 5, &m), fd2;
	int64_t recv0, start0;
	struct be *b2;

	(void)state;
	memset(&sv, 0, sizeof(sv));
	sv.stop_after = 3;  /* session started, 2 chunks persisted, then "crash" */
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_file(be, "resume/a.bin", fd, &m, &pre, 1, 0, &up, save_state,
					&sv, &ent, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_int_equal(sv.last.persisted, 2 * CHUNK);
	recv0 = emuh_must_counter(emu, "gcs.upload_bytes_received");
	start0 = emuh_must_counter(emu, "gcs.upload_sessions_started");
	b2 = new_backend(BUCKET, NULL, CHUNK);
	up = sv.last;
	up.chunk_size = 0;  /* a journal need not store it: the default */
	UT_OK(be_upload_file(b2, "resume/a.bin", fd, &m, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_bytes_received") - recv0, (int64_t)(n - 2 * CHUNK));
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started") - start0, 0);
	ut_check_remote_fd(b2, "resume/a.bin", &ent.ver, fd, n);
	be_entry_release(&ent);

	/* Content changed since the saved session: a new session. */
	memset(&sv, 0, sizeof(sv));
	sv.stop_after = 2;
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_file(b2, "resume/b.bin", fd, &m, &pre, 1, 0, &up, save_state,
					&sv, &ent, &e), -1);
	fd2 = ut_pattern_file(n, 6, &m2);
	up = sv.last;
	start0 = emuh_must_counter(emu, "gcs.upload_sessions_started");
	UT_OK(be_upload_file(b2, "resume/b.bin", fd2, &m2, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started") - start0, 1);
	ut_check_remote_fd(b2, "resume/b.bin", &ent.ver, fd2, n);
	be_entry_release(&ent);
	be_free(b2);
	close(fd);
	close(fd2);
}

/* --- listings ------------------------------------------------------------ */

/* 25,000 objects through pages capped at 100: exactly 25,000 names. */
static void test_list_25000(void **state)
{
	struct be_list l = { 0 };
	struct timespec t0, t1;
	struct err e;
	char name[32];
	size_t i;
	int64_t pages0, pages;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (emuh_gcs_fill(emu, BUCKET, "huge/obj-", 25000, 8, &e) < 0)
		fail_msg("fill: %s", e.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("    created 25000 objects in %.1f s\n",
		      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":100}]");
	assert_int_equal(emuh_requests(emu, "gcs.objects.list", 0, &pages0, &e), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	UT_OK(be_list(be, "huge", &l, &e_));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(emuh_requests(emu, "gcs.objects.list", 0, &pages, &e), 0);
	pages -= pages0;
	print_message("    listed %zu entries in %" PRId64 " pages, %.2f s\n", l.n, pages,
		      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	assert_int_equal(l.n, 25000);
	assert_true(pages >= 250);
	for (i = 0; i < l.n; i++) {
		snprintf(name, sizeof(name), "obj-%06zu", i);
		assert_string_equal(l.v[i].name, name);
		assert_int_equal(l.v[i].type, BE_FILE);
	}
	be_list_release(&l);
}

/* A listing whose 7th page fails permanently is an error, not 600 names. */
static void test_list_page7_fails(void **state)
{
	struct be_list l = { 0 };
	char *reply = NULL, *tok_enc = NULL, rules[1024], path[512];
	const char *tok = NULL;
	json_t *j = NULL;
	struct err e;
	int page;

	(void)state;
	if (emuh_gcs_fill(emu, BUCKET, "p7/o", 650, 8, &e) < 0)
		fail_msg("fill: %s", e.msg);
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":100}]");
	/* Walk to the 7th page's token the way the backend asks. */
	for (page = 1; page <= 6; page++) {
		snprintf(path, sizeof(path), "/storage/v1/b/" BUCKET "/o?prefix=p7%%2F"
			 "&delimiter=%%2F&maxResults=1000%s%s", tok_enc ? "&pageToken=" : "",
			 tok_enc ? tok_enc : "");
		free(tok_enc);
		tok_enc = NULL;
		UT_OK(emuh_call(emu, "GET", path, NULL, &reply, &e_));
		assert_int_equal(jsonh_parse_object(reply, strlen(reply), "page", &j, &e), 0);
		assert_int_equal(jsonh_get_str(j, "nextPageToken", &tok, &e), 0);
		tok_enc = enc_url(tok);
		json_decref(j);
		free(reply);
	}
	snprintf(rules, sizeof(rules), "[{\"kind\":\"page_cap\",\"max\":100},"
		 "{\"kind\":\"status\",\"status\":503,\"method\":\"GET\",\"query\":\"pageToken=%s\"}]",
		 tok_enc);
	emuh_must_faults(emu, rules);
	l.n = 0;
	assert_int_equal(be_list(be, "p7", &l, &e), -1);
	assert_int_equal(l.n, 0);
	assert_null(l.v);
	assert_non_null(strstr(e.msg, "page 7"));
	assert_int_equal(e.http_status, 503);
	print_message("    error: %s\n", e.msg);
	/* The same listing without the fault is whole. */
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":100}]");
	UT_OK(be_list(be, "p7", &l, &e_));
	assert_int_equal(l.n, 650);
	be_list_release(&l);
	free(tok_enc);
}

/* Names that cannot be POSIX names are skipped; a file shadowed by a
 * directory of the same name is hidden; implicit directories show. */
static void test_list_odd_names(void **state)
{
	struct be_list l = { 0 };
	struct be_entry ent;
	struct err e;
	static const char *const names[] = {
		"odd//empty-segment", "odd/./dot", "odd/../dotdot", "odd/ok", "odd/same",
		"odd/same/child", "odd/imp/deep/x", NULL,
	};
	size_t i;

	(void)state;
	for (i = 0; names[i]; i++)
		if (emuh_gcs_put(emu, BUCKET, names[i], "x", 1, &e) < 0)
			fail_msg("put %s: %s", names[i], e.msg);
	UT_OK(be_list(be, "odd", &l, &e_));
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "imp");
	assert_int_equal(l.v[0].type, BE_DIR);
	assert_int_equal(l.v[0].implicit, 1);
	assert_string_equal(l.v[1].name, "ok");
	assert_string_equal(l.v[2].name, "same");
	assert_int_equal(l.v[2].type, BE_DIR);
	assert_int_equal(l.skipped_invalid, 3);
	assert_int_equal(l.shadowed, 1);
	be_list_release(&l);
	UT_OK(be_stat(be, "odd/same", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	be_entry_release(&ent);
	UT_OK(be_stat(be, "odd/imp/deep", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	assert_int_equal(ent.implicit, 1);
	be_entry_release(&ent);
	/* rmdir of an implicit directory with children: not empty. */
	assert_int_equal(be_rmdir(be, "odd/imp", &e), -1);
	assert_int_equal(e.code, ERR_NOTEMPTY);
}

/* --- conflicts and versions -------------------------------------------- */

struct racer {
	int idx;
	int rc;
	int code;
	int64_t gen;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	char body[64];
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	struct err e;
	char tmpl[] = "/tmp/durafs-gcs-emu-XXXXXX";
	int fd = mkstemp(tmpl);

	unlink(tmpl);
	snprintf(body, sizeof(body), "writer %d\n", r->idx);
	if (write(fd, body, strlen(body)) != (ssize_t)strlen(body))
		r->rc = -2;
	memset(&m, 0, sizeof(m));
	be_meta_from_fd(fd, &m, &e);
	memset(&ent, 0, sizeof(ent));
	r->rc = be_put(be, "race/file", fd, &m, &pre, &ent, &e);
	r->code = r->rc < 0 ? e.code : 0;
	r->gen = ent.ver.gen;
	be_entry_release(&ent);
	close(fd);
	return NULL;
}

static void test_conflicts(void **state)
{
	struct be_entry a, b2, cur, ent;
	struct be_upload up;
	struct be_pre pre;
	struct be_meta m;
	struct err e;
	struct racer r[8];
	pthread_t t[8];
	int i, wins = 0, fd;

	(void)state;
	ut_put_str(be, "conf/doc", "version 1\n", &a);
	/* B writes over A's version: fine. */
	{
		char tmpl[] = "/tmp/durafs-gcs-emu-XXXXXX";

		fd = mkstemp(tmpl);
		unlink(tmpl);
		assert_int_equal(write(fd, "version B\n", 10), 10);
		memset(&m, 0, sizeof(m));
		assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	}
	pre = ut_pre_match(&a.ver);
	UT_OK(be_put(be, "conf/doc", fd, &m, &pre, &b2, &e_));
	/* A, still holding version 1, gets a conflict with B's generation. */
	assert_int_equal(pwrite(fd, "version A\n", 10, 0), 10);
	assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	assert_int_equal(be_put(be, "conf/doc", fd, &m, &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_int_equal(e.http_status, 412);
	assert_int_equal(cur.ver.gen, b2.ver.gen);
	be_entry_release(&cur);
	/* "Must not exist" on an existing object: conflict too. */
	pre = ut_pre_absent();
	assert_int_equal(be_put(be, "conf/doc", fd, &m, &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	be_entry_release(&cur);
	/* The resumable path: conflict, never an overwrite. */
	pre = ut_pre_match(&a.ver);
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_file(be, "conf/doc", fd, &m, &pre, 1, 0, &up, NULL, NULL,
					&cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_int_equal(cur.ver.gen, b2.ver.gen);
	be_entry_release(&cur);
	/* A rename onto a changed destination: conflict, source kept. */
	ut_put_str(be, "conf/src", "source\n", &ent);
	pre = ut_pre_match(&a.ver);
	assert_int_equal(be_rename(be, "conf/src", &ent.ver, "conf/doc", &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	be_entry_release(&cur);
	UT_OK(be_stat(be, "conf/src", &cur, &e_));
	be_entry_release(&cur);
	be_entry_release(&ent);
	close(fd);
	/* Remote is still B's. */
	{
		struct ut_buf got = { 0 };

		UT_OK(be_read(be, "conf/doc", NULL, 0, UINT64_MAX, ut_buf_sink, &got, NULL, &e_));
		assert_int_equal(got.n, 10);
		assert_memory_equal(got.p, "version B\n", 10);
		free(got.p);
	}
	/* Eight writers create one new name at once: one wins. */
	memset(r, 0, sizeof(r));
	for (i = 0; i < 8; i++) {
		r[i].idx = i;
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 8; i++) {
		if (r[i].rc == 0)
			wins++;
		else
			assert_int_equal(r[i].code, ERR_CONFLICT);
	}
	assert_int_equal(wins, 1);
	be_entry_release(&a);
	be_entry_release(&b2);
}

/* Reads are pinned to the generation seen at open. */
static void test_read_pinned(void **state)
{
	struct be_entry v1, v2;
	struct ut_buf got = { 0 };
	struct be_meta m;
	struct be_pre pre;
	struct err e;
	char tmpl[] = "/tmp/durafs-gcs-emu-XXXXXX";
	int fd;

	(void)state;
	ut_put_str(be, "pin/f", "first\n", &v1);
	ut_put_str(be_plain, "pin/f", "first\n", &v2);
	fd = mkstemp(tmpl);
	unlink(tmpl);
	assert_int_equal(write(fd, "second\n", 7), 7);
	memset(&m, 0, sizeof(m));
	assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	pre = ut_pre_match(&v1.ver);
	UT_OK(be_put(be, "pin/f", fd, &m, &pre, NULL, &e_));
	pre = ut_pre_match(&v2.ver);
	UT_OK(be_put(be_plain, "pin/f", fd, &m, &pre, NULL, &e_));
	close(fd);
	/* Versioned bucket: the old generation is still what we read. */
	UT_OK(be_read(be, "pin/f", &v1.ver, 0, UINT64_MAX, ut_buf_sink, &got, NULL, &e_));
	assert_int_equal(got.n, 6);
	assert_memory_equal(got.p, "first\n", 6);
	got.n = 0;
	/* Unversioned: that generation is gone; never the new bytes. */
	assert_int_equal(be_read(be_plain, "pin/f", &v2.ver, 0, UINT64_MAX, ut_buf_sink, &got, NULL,
				 &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(got.n, 0);
	free(got.p);
	be_entry_release(&v1);
	be_entry_release(&v2);
}

/* Purge removes every noncurrent generation under a prefix, and nothing
 * current or outside it. */
static void test_purge(void **state)
{
	struct be_entry v, keep;
	struct be_meta m;
	struct be_pre pre;
	struct prog pg;
	struct err e;
	char *reply = NULL;
	json_t *j = NULL, *items = NULL;
	int fd, i;
	char tmpl[] = "/tmp/durafs-gcs-emu-XXXXXX";

	(void)state;
	ut_put_str(be, "pur/a", "a0", &v);
	ut_put_str(be, "pur-outside", "o0", &keep);
	fd = mkstemp(tmpl);
	unlink(tmpl);
	for (i = 1; i <= 3; i++) {
		char body[8];

		snprintf(body, sizeof(body), "a%d", i);
		assert_int_equal(pwrite(fd, body, 2, 0), 2);
		memset(&m, 0, sizeof(m));
		assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
		pre = ut_pre_match(&v.ver);
		be_entry_release(&v);
		UT_OK(be_put(be, "pur/a", fd, &m, &pre, &v, &e_));
	}
	UT_OK(be_put(be, "pur-outside", fd, &m, &(struct be_pre){ BE_PRE_MATCH, keep.ver }, NULL,
		  &e_));
	close(fd);
	memset(&pg, 0, sizeof(pg));
	UT_OK(be_purge(be, "pur", prog_cb, &pg, &e_));
	assert_int_equal(pg.items, 3);
	assert_int_equal(pg.bytes, 6);
	/* Only the live generation is left under pur/; pur-outside keeps its
	 * noncurrent one. */
	UT_OK(emuh_call(emu, "GET", "/storage/v1/b/" BUCKET "/o?prefix=pur&versions=true", NULL,
		     &reply, &e_));
	assert_int_equal(jsonh_parse_object(reply, strlen(reply), "list", &j, &e), 0);
	assert_int_equal(jsonh_get_array(j, "items", &items, &e), 0);
	assert_int_equal(json_array_size(items), 3);
	json_decref(j);
	free(reply);
	/* Nothing left to purge: a no-op. */
	memset(&pg, 0, sizeof(pg));
	UT_OK(be_purge(be, "pur", prog_cb, &pg, &e_));
	assert_int_equal(pg.items, 0);
	be_entry_release(&v);
	be_entry_release(&keep);
}

/* --- directory rename, interrupted ----------------------------------- */

static void make_tree(const char *root, int nfiles)
{
	char path[256];
	int i;

	snprintf(path, sizeof(path), "%s", root);
	UT_OK(be_mkdir(be, path, NULL, &e_));
	snprintf(path, sizeof(path), "%s/sub", root);
	UT_OK(be_mkdir(be, path, NULL, &e_));
	for (i = 0; i < nfiles; i++) {
		snprintf(path, sizeof(path), "%s/%sf%02d", root, i % 3 == 0 ? "sub/" : "", i);
		ut_put_str(be, path, path + strlen(root), NULL);
	}
}

static void check_tree(const char *root, int nfiles)
{
	char path[256];
	struct ut_buf got = { 0 };
	struct be_entry ent;
	int i;

	UT_OK(be_stat(be, root, &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	assert_int_equal(ent.implicit, 0);
	be_entry_release(&ent);
	for (i = 0; i < nfiles; i++) {
		snprintf(path, sizeof(path), "%s/%sf%02d", root, i % 3 == 0 ? "sub/" : "", i);
		got.n = 0;
		UT_OK(be_read(be, path, NULL, 0, UINT64_MAX, ut_buf_sink, &got, NULL, &e_));
		/* The content is the path relative to the old root. */
		assert_int_equal(got.n, strlen(path) - strlen(root));
		assert_memory_equal(got.p, path + strlen(root), got.n);
	}
	free(got.p);
}

static void test_rename_dir_interrupted(void **state)
{
	struct be_list l = { 0 };
	struct be_entry ent;
	struct prog pg;
	struct err e;

	(void)state;
	make_tree("rd/src", 20);
	/* Interrupted between a copy and its delete: after 6 objects moved,
	 * every DELETE fails for good. */
	memset(&pg, 0, sizeof(pg));
	pg.arm_at = 6;
	pg.rules = "[{\"kind\":\"status\",\"status\":503,\"method\":\"DELETE\"}]";
	assert_int_equal(be_rename_dir(be, "rd/src", "rd/dst", prog_cb, &pg, &e), -1);
	print_message("    interrupted: %s\n", e.msg);
	emuh_must_faults(emu, "[]");
	assert_int_equal(pg.items, 6);
	/* Half-done: both exist. */
	UT_OK(be_stat(be, "rd/src", &ent, &e_));
	be_entry_release(&ent);
	UT_OK(be_stat(be, "rd/dst", &ent, &e_));
	be_entry_release(&ent);
	/* Interrupted again by the caller after 4 more. */
	memset(&pg, 0, sizeof(pg));
	pg.cancel_at = 4;
	assert_int_equal(be_rename_dir(be, "rd/src", "rd/dst", prog_cb, &pg, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	/* Re-running finishes it. */
	memset(&pg, 0, sizeof(pg));
	UT_OK(be_rename_dir(be, "rd/src", "rd/dst", prog_cb, &pg, &e_));
	assert_true(pg.items >= 10);
	assert_int_equal(be_stat(be, "rd/src", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	check_tree("rd/dst", 20);
	UT_OK(be_list(be, "rd/dst", &l, &e_));
	assert_int_equal(l.n, 14);  /* 13 files + sub */
	be_list_release(&l);
	/* Once more: already done, still success. */
	UT_OK(be_rename_dir(be, "rd/src", "rd/dst", NULL, NULL, &e_));
	/* Into itself: refused. */
	assert_int_equal(be_rename_dir(be, "rd/dst", "rd/dst/sub/x", NULL, NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	/* Neither exists: not found. */
	assert_int_equal(be_rename_dir(be, "rd/none", "rd/none2", NULL, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
}

/* A mount rooted at a prefix sees only what is under it. */
static void test_prefix_mount(void **state)
{
	struct be *bp = new_backend(BUCKET, "pm/root", 0);
	struct be_list l = { 0 };
	struct be_entry ent;
	struct err e;

	(void)state;
	ut_put_str(be, "pm/root/inside", "in", NULL);
	ut_put_str(be, "pm/rootless", "out", NULL);
	ut_put_str(bp, "made-here", "here", &ent);
	be_entry_release(&ent);
	/* append tails waiting for compose live in a hidden root directory:
	 * never listed at the root, an ordinary name anywhere else */
	ut_put_str(be, "pm/root/.durafs-tmp/tail1", "t", NULL);
	ut_put_str(be, "pm/root/sub/.durafs-tmp/x", "x", NULL);
	UT_OK(be_list(bp, "", &l, &e_));
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "inside");
	assert_string_equal(l.v[1].name, "made-here");
	assert_string_equal(l.v[2].name, "sub");
	be_list_release(&l);
	UT_OK(be_list(bp, "sub", &l, &e_));
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].name, ".durafs-tmp");
	be_list_release(&l);
	UT_OK(be_stat(be, "pm/root/made-here", &ent, &e_));
	be_entry_release(&ent);
	assert_int_equal(be_stat(bp, "rootless", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	be_free(bp);
}

static void *cancel_later(void *arg)
{
	ut_sleep_ms(300);
	http_cancel_all(arg);
	return NULL;
}

/* The pause between attempts of a failing chunk ends as soon as the HTTP
 * handle is cancelled (an unmount never waits out a backoff). */
static void test_backoff_canceled(void **state)
{
	struct http_opts ho;
	struct http *h = NULL;
	struct gcs_opts o;
	struct be *b = NULL;
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	struct err e;
	pthread_t t;
	int64_t t0, dt;
	int fd = ut_pattern_file(1024 * 1024, 9, &m);

	(void)state;
	memset(&ho, 0, sizeof(ho));
	UT_OK(http_new(&ho, &h, &e_));
	memset(&o, 0, sizeof(o));
	o.bucket = BUCKET;
	o.endpoint = emuh_url(emu);
	o.http = h;
	o.chunk_size = 256 * 1024;
	o.retry_base_ms = 60000;          /* a minute before the first retry */
	o.chunk_max_failures = 5;
	UT_OK(gcs_new(&o, &b, &e_));
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(b, "backoff/file.bin", &m, &pre, &up, &e_));
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":503,\"method\":\"PUT\","
			 "\"path\":\"/upload/*\",\"query\":\"upload_id\"}]");
	assert_int_equal(pthread_create(&t, NULL, cancel_later, h), 0);
	t0 = ut_now_ms();
	assert_int_equal(be_upload_chunk(b, &up, fd, &ent, &e), -1);
	dt = ut_now_ms() - t0;
	pthread_join(t, NULL);
	print_message("    failing chunk with a 60 s backoff: returned at %" PRId64 " ms, the "
		      "cancel came at 300 ms (%s)\n", dt, e.msg);
	assert_true(dt < 10000);
	http_uncancel(h);
	be_free(b);
	http_free(h);
	close(fd);
}

/* Rewrites of large objects loop on rewriteToken. */
static void test_rename_large_rewrite_loop(void **state)
{
	struct be_entry ent, moved;
	struct be_pre pre = ut_pre_absent();
	struct be_upload up;
	struct be_meta m;
	size_t n = 3 * 1024 * 1024 + 10;
	int fd = ut_pattern_file(n, 9, &m);
	int64_t rw0, rw;
	struct err e;

	(void)state;
	UT_OK(emuh_call(emu, "POST", "/_emulator/gcs/rewrite_max_bytes", "{\"bytes\":1048576}",
		     NULL, &e_));
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "rw/big", fd, &m, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(emuh_requests(emu, "gcs.objects.rewrite", 0, &rw0, &e), 0);
	UT_OK(be_rename(be, "rw/big", &ent.ver, "rw/big2", &pre, &moved, &e_));
	assert_int_equal(emuh_requests(emu, "gcs.objects.rewrite", 0, &rw, &e), 0);
	print_message("    rewrite calls: %" PRId64 "\n", rw - rw0);
	assert_true(rw - rw0 >= 4);
	assert_int_equal(moved.crc32c, m.crc32c);
	ut_check_remote_fd(be, "rw/big2", &moved.ver, fd, n);
	be_entry_release(&ent);
	be_entry_release(&moved);
	close(fd);
}

/* setattr: a metadata PATCH guarded by generation and metageneration; the
 * content (generation) is untouched, the metageneration moves on. */
static void test_setattr(void **state)
{
	struct be_entry f1, out, st, cur;
	struct be_attr a;
	struct be_version old;
	int64_t up0, up1;
	struct err e;
	int i;

	(void)state;
	assert_true(be_caps(be) & BE_CAP_SETATTR);
	ut_put_str(be, "setattr/f", "same bytes", &f1);
	assert_int_equal(emuh_counter(emu, "gcs.upload_bytes_received", &up0, &e), 0);
	memset(&a, 0, sizeof(a));
	a.set = BE_ATTR_MTIME;
	a.mtime.tv_sec = 1234567890;
	UT_OK(be_setattr(be, "setattr/f", &f1.ver, &a, &out, &e_));
	assert_int_equal(out.ver.gen, f1.ver.gen);
	assert_int_equal(out.ver.metagen, f1.ver.metagen + 1);
	assert_int_equal(out.mtime.tv_sec, 1234567890);
	assert_int_equal(out.crc32c, f1.crc32c);
	UT_OK(be_stat(be, "setattr/f", &st, &e_));
	assert_int_equal(st.mtime.tv_sec, 1234567890);
	assert_true(be_version_equal(&st.ver, &out.ver));
	be_entry_release(&st);
	/* No content went up again. */
	assert_int_equal(emuh_counter(emu, "gcs.upload_bytes_received", &up1, &e), 0);
	assert_int_equal(up1, up0);

	/* The same change again with the old version: our own earlier attempt
	 * (a lost reply) is recognised. */
	old = f1.ver;
	UT_OK(be_setattr(be, "setattr/f", &old, &a, &cur, &e_));
	assert_int_equal(cur.mtime.tv_sec, 1234567890);
	be_entry_release(&cur);
	/* Another mtime with the stale metageneration: a conflict, with the
	 * current entry. */
	a.mtime.tv_sec = 1111111111;
	assert_int_equal(be_setattr(be, "setattr/f", &old, &a, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_true(be_version_equal(&cur.ver, &out.ver));
	be_entry_release(&cur);
	/* With the current version it goes through, under 30% 503s. */
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":503,\"fraction\":0.3}]");
	for (i = 0; i < 10; i++) {
		a.mtime.tv_sec = 1500000000 + i;
		UT_OK(be_setattr(be, "setattr/f", &out.ver, &a, &cur, &e_));
		assert_int_equal(cur.mtime.tv_sec, a.mtime.tv_sec);
		be_entry_release(&out);
		out = cur;
	}
	emuh_must_faults(emu, "[]");
	/* Gone: not found; no generation: refused. */
	assert_int_equal(be_setattr(be, "setattr/none", &out.ver, &a, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	memset(&old, 0, sizeof(old));
	assert_int_equal(be_setattr(be, "setattr/f", &old, &a, NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	be_entry_release(&out);
	be_entry_release(&f1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_check, clear_faults),
		cmocka_unit_test_teardown(test_basic_ops, clear_faults),
		cmocka_unit_test_teardown(test_upload_resumable_roundtrip, clear_faults),
		cmocka_unit_test_teardown(test_everything_under_faults, clear_faults),
		cmocka_unit_test_teardown(test_upload_cut_resumes, clear_faults),
		cmocka_unit_test_teardown(test_backoff_canceled, clear_faults),
		cmocka_unit_test_teardown(test_short_308, clear_faults),
		cmocka_unit_test_teardown(test_expired_session, clear_faults),
		cmocka_unit_test_teardown(test_resume_saved_state, clear_faults),
		cmocka_unit_test_teardown(test_list_25000, clear_faults),
		cmocka_unit_test_teardown(test_list_page7_fails, clear_faults),
		cmocka_unit_test_teardown(test_list_odd_names, clear_faults),
		cmocka_unit_test_teardown(test_conflicts, clear_faults),
		cmocka_unit_test_teardown(test_read_pinned, clear_faults),
		cmocka_unit_test_teardown(test_purge, clear_faults),
		cmocka_unit_test_teardown(test_rename_dir_interrupted, clear_faults),
		cmocka_unit_test_teardown(test_prefix_mount, clear_faults),
		cmocka_unit_test_teardown(test_rename_large_rewrite_loop, clear_faults),
		cmocka_unit_test_teardown(test_setattr, clear_faults),
	};

	return cmocka_run_group_tests_name("gcs_emu", tests, setup, teardown);
}
