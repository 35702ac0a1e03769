/* Tests of the write path for long-running writers and actionable errors
 * (sync/sched.c, sync/backend.c, sync/gcs.c) against a real durafs-emulator:
 * the advice for Google's quota and rate reasons, checksums split at an
 * offset, be_append (GCS compose of a tail, inline and resumable, with its
 * guards), the scheduler's append rule (tracked writes, fallbacks, one
 * update per second), snapshot labelling of files open for writing,
 * snapshots sent from a consistent copy (sch_set_freeze_fn) while the file
 * is rewritten in place, and a storage quota failure that keeps the
 * change. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/gcs.h"
#include "durafs/http.h"
#include "durafs/journal.h"
#include "durafs/log.h"
#include "durafs/sched.h"
#include "emu_harness.h"
#include "sched_fixture.h"
#include "unit_util.h"

#define BUCKET "durafs-writers"
#define KIB 1024u
#define MIB (1024u * 1024u)

static struct emuh *emu;
static struct http *http;
static struct be *be;

struct fx {
	char dir[64];
	char files[96];
	char db[96];
	struct jnl *j;
	struct sched *s;
	struct sched_opts so;
	unsigned next_cache;
	int open_answer;            /* what the open-file test answers */
	int ev_conflict;
	pthread_mutex_t mu;
	/* the snapshot copy (freeze_fn) and the in-place rewriter */
	pthread_mutex_t wmu;        /* a write of the cache file holds it, as the
				     * filesystem's writes hold the file's lock */
	int freeze_answer;          /* 1 copy, 0 nothing to copy, -1 fail */
	int freezes;                /* calls of freeze_fn */
	char rewrite_path[256];     /* the cache file the rewriter changes */
};

static struct fx fx;

/* Names of every object in the bucket root listing (the mount's view). */
static size_t remote_count(const char *dir)
{
	struct be_list l = { 0 };
	size_t n;

	UT_OK(be_list(be, dir, &l, &e_));
	n = l.n;
	be_list_release(&l);
	return n;
}

static int remote_exists(const char *path)
{
	return sfx_remote_exists(be, path);
}

/* --- advice ------------------------------------------------------------- */

static void test_advice(void **state)
{
	static const char *const reasons[] = {
		"storageQuotaExceeded", "userRateLimitExceeded", "rateLimitExceeded",
		"downloadQuotaExceeded", "quotaExceeded", "dailyLimitExceeded",
	};
	struct err src, dst;
	char longpath[400];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		const char *a = be_reason_advice(reasons[i]);

		assert_non_null(a);
		assert_true(strlen(a) > 20);
		assert_string_equal(be_reason_find(reasons[i]), reasons[i]);
	}
	assert_null(be_reason_advice(NULL));
	assert_null(be_reason_advice(""));
	assert_null(be_reason_advice("backendError"));
	assert_non_null(strstr(be_reason_advice("storageQuotaExceeded"), "--retry-failed"));
	/* Whole words only; the longer name wins inside a message. */
	assert_string_equal(be_reason_find("upload \"a\": HTTP 403 userRateLimitExceeded: slow"),
			    "userRateLimitExceeded");
	assert_string_equal(be_reason_find("x (reason: rateLimitExceeded)"), "rateLimitExceeded");
	assert_null(be_reason_find("myuserRateLimitExceededX"));
	assert_null(be_reason_find("quotaExceededs"));
	assert_null(be_reason_find(""));
	assert_null(be_reason_find(NULL));
	assert_string_equal(be_reason_find("a storageQuotaExceeded b quotaExceeded"),
			    "storageQuotaExceeded");

	err_clear(&src);
	err_set(&src, ERR_NOSPC, "HTTP 403 storageQuotaExceeded: The user's quota is full.");
	src.http_status = 403;
	snprintf(src.reason, sizeof(src.reason), "storageQuotaExceeded");
	assert_int_equal(be_err_advise(&dst, &src, "upload", "logs/run1.txt"), 1);
	assert_int_equal(dst.code, ERR_NOSPC);
	assert_int_equal(dst.http_status, 403);
	assert_string_equal(dst.reason, "storageQuotaExceeded");
	assert_non_null(strstr(dst.msg, "upload \"logs/run1.txt\""));
	assert_non_null(strstr(dst.msg, "Google's reason: storageQuotaExceeded"));
	assert_non_null(strstr(dst.msg, "what to do: "));
	assert_string_equal(be_reason_find(dst.msg), "storageQuotaExceeded");
	/* A long path is cut so the advice still fits. */
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(be_err_advise(&src, &src, "read", longpath), 1);
	assert_non_null(strstr(src.msg, "...\": "));
	assert_non_null(strstr(src.msg, "retry-failed"));
	/* Reasons without advice leave dst alone. */
	err_set(&src, ERR_HTTP, "HTTP 500 backendError: oops");
	snprintf(src.reason, sizeof(src.reason), "backendError");
	memset(&dst, 0, sizeof(dst));
	assert_int_equal(be_err_advise(&dst, &src, "upload", "a"), 0);
	assert_int_equal(dst.code, 0);
}

/* --- checksums split at an offset --------------------------------------- */

static void test_meta_split(void **state)
{
	const size_t n = 3 * MIB + 12345;
	unsigned char *d = ut_pattern(n, 1), md5[16];
	char path[128];
	struct be_meta m;
	uint32_t pc = 1, tc = 1;
	uint64_t splits[] = { 0, 1, 1000, MIB, MIB + 1, n - 1, n };
	size_t i;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/split", fx.dir);
	ut_write_at(path, d, n, 0, 1);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ck_md5(d, n, md5);
	for (i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		memset(&m, 0, sizeof(m));
		UT_OK(be_meta_split_from_fd(fd, splits[i], &m, &pc, &tc, &e_));
		assert_int_equal(m.size, n);
		assert_int_equal(m.crc32c, ck_crc32c(0, d, n));
		assert_memory_equal(m.md5, md5, 16);
		assert_int_equal(pc, ck_crc32c(0, d, (size_t)splits[i]));
		assert_int_equal(tc, ck_crc32c(0, d + splits[i], n - (size_t)splits[i]));
	}
	/* Past the end: an empty prefix, the tail is nothing. */
	UT_OK(be_meta_split_from_fd(fd, n + 10, &m, &pc, &tc, &e_));
	assert_int_equal(pc, 0);
	assert_int_equal(tc, 0);
	assert_int_equal(m.size, n);
	/* NULL outputs: plain be_meta_from_fd. */
	UT_OK(be_meta_split_from_fd(fd, 100, &m, NULL, &tc, &e_));
	assert_int_equal(tc, ck_crc32c(0, d + 100, n - 100));
	UT_OK(be_meta_split_from_fd(fd, 100, &m, NULL, NULL, &e_));
	assert_int_equal(m.crc32c, ck_crc32c(0, d, n));
	close(fd);
	free(d);
}

/* --- be_append ---------------------------------------------------------- */

static void meta_of(const unsigned char *d, size_t n, struct be_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->size = n;
	m->crc32c = ck_crc32c(0, d, n);
	ck_md5(d, n, m->md5);
	m->mtime.tv_sec = 1700000000;
}

static void put_file(const char *path, const char *local, const unsigned char *d, size_t n,
		     struct be_entry *out)
{
	struct be_meta m;
	struct be_pre pre = { BE_PRE_ABSENT, { 0, 0, "" } };
	struct be_upload up;
	int fd;

	ut_write_at(local, d, n, 0, 1);
	fd = open(local, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	meta_of(d, n, &m);
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, path, fd, &m, &pre, 8 * MIB, 3, &up, NULL, NULL, out, &e_));
	close(fd);
}

static void test_be_append(void **state)
{
	const size_t n0 = 600 * KIB, small = 40 * KIB, big = 700 * KIB;
	unsigned char *d = ut_pattern(n0 + small + big, 2);
	char local[128];
	struct be_entry e0, e1, e2, cur;
	struct be_meta m;
	struct err e;
	int fd;

	(void)state;
	memset(&e0, 0, sizeof(e0));
	memset(&e1, 0, sizeof(e1));
	memset(&e2, 0, sizeof(e2));
	memset(&cur, 0, sizeof(cur));
	assert_true(be_can_append(be));
	snprintf(local, sizeof(local), "%s/app", fx.dir);
	/* Leftovers of a crash: the first append of this backend instance
	 * (this test runs first) deletes the old temporary, not the fresh. */
	{
		struct be_pre pre = { BE_PRE_ABSENT, { 0, 0, "" } };
		struct be_meta tm;

		ut_write_at(local, "left", 4, 0, 1);
		fd = open(local, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		meta_of((const unsigned char *)"left", 4, &tm);
		tm.mtime.tv_sec = 1000;
		UT_OK(be_put(be, ".durafs-tmp/old", fd, &tm, &pre, NULL, &e_));
		tm.mtime.tv_sec = time(NULL);
		UT_OK(be_put(be, ".durafs-tmp/fresh", fd, &tm, &pre, NULL, &e_));
		close(fd);
		assert_int_equal(remote_count(".durafs-tmp"), 2);
	}
	put_file("app/log", local, d, n0, &e0);
	/* A small tail: one request for the temporary, one compose. */
	ut_write_at(local, d + n0, small, (off_t)n0, 0);
	fd = open(local, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	meta_of(d, n0 + small, &m);
	UT_OK(be_append(be, "app/log", &e0.ver, n0, ck_crc32c(0, d + n0, small), fd, &m, &e1,
		     &e_));
	assert_int_equal(e1.size, n0 + small);
	assert_true(e1.ver.gen > e0.ver.gen);
	assert_true(e1.has_crc32c);
	assert_int_equal(e1.crc32c, m.crc32c);
	ut_check_remote_mem(be, "app/log", d, n0 + small);
	close(fd);
	assert_int_equal(remote_count(".durafs-tmp"), 1);
	assert_int_equal(remote_exists(".durafs-tmp/fresh"), 1);
	UT_OK(be_stat(be, ".durafs-tmp/fresh", &cur, &e_));
	UT_OK(be_remove(be, ".durafs-tmp/fresh", &cur.ver, NULL, &e_));
	be_entry_release(&cur);
	/* A tail larger than the chunk size goes through a resumable session. */
	ut_write_at(local, d + n0 + small, big, (off_t)(n0 + small), 0);
	fd = open(local, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	meta_of(d, n0 + small + big, &m);
	UT_OK(be_append(be, "app/log", &e1.ver, n0 + small, ck_crc32c(0, d + n0 + small, big), fd,
		     &m, &e2, &e_));
	assert_int_equal(e2.size, n0 + small + big);
	ut_check_remote_mem(be, "app/log", d, n0 + small + big);
	/* No temporary is left: the mount's root has only app/. */
	assert_int_equal(remote_count(""), 1);
	assert_int_equal(remote_count("app"), 1);
	/* A stale version: ERR_CONFLICT with the current entry; nothing left. */
	err_clear(&e);
	assert_int_equal(be_append(be, "app/log", &e1.ver, n0 + small,
				   ck_crc32c(0, d + n0 + small, big), fd, &m, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_int_equal(cur.ver.gen, e2.ver.gen);
	be_entry_release(&cur);
	assert_int_equal(remote_count(""), 1);
	/* A tail that no longer has the caller's checksum: refused before
	 * anything is sent. */
	err_clear(&e);
	assert_int_equal(be_append(be, "app/log", &e2.ver, n0 + small, 12345u, fd, &m, NULL, &e),
			 -1);
	assert_int_equal(e.code, ERR_INVAL);
	/* Nothing to append. */
	err_clear(&e);
	assert_int_equal(be_append(be, "app/log", &e2.ver, m.size, 0, fd, &m, NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	ut_check_remote_mem(be, "app/log", d, n0 + small + big);
	close(fd);
	be_entry_release(&e0);
	be_entry_release(&e1);
	be_entry_release(&e2);
	free(d);
}

/* --- hashing while uploading --------------------------------------------- */

struct late_ctx {
	const char *local;
	uint64_t stop_at;           /* stop (return 1) once this much persisted */
	uint64_t change_at;         /* overwrite the file's end once this much persisted */
	int changed;
	size_t n;
};

static int late_state(void *ud, const struct be_upload *up)
{
	struct late_ctx *c = ud;

	if (c->change_at && !c->changed && up->persisted >= c->change_at) {
		ut_write_at(c->local, "CHANGED!", 8, (off_t)(c->n - 8), 0);
		c->changed = 1;
	}
	if (c->stop_at && !up->done && up->persisted >= c->stop_at)
		return 1;
	return 0;
}

static void test_sums_late(void **state)
{
	const size_t n = 3 * MIB + 777;
	unsigned char *d = ut_pattern(n, 11), md5[16];
	struct be_pre pre = { BE_PRE_ABSENT, { 0, 0, "" } };
	struct late_ctx c;
	struct be_upload up;
	struct be_entry ent;
	struct be_meta m;
	char local[128];
	struct err e;
	int fd;

	(void)state;
	memset(&ent, 0, sizeof(ent));
	assert_true(be_caps(be) & BE_CAP_SUMS_LATE);
	snprintf(local, sizeof(local), "%s/late", fx.dir);
	ut_write_at(local, d, n, 0, 1);
	fd = open(local, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ck_md5(d, n, md5);
	/* Whole, with the sums sent at the end. */
	memset(&m, 0, sizeof(m));
	m.size = n;
	m.flags = BE_META_SUMS_LATE;
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "late/a", fd, &m, &pre, 256 * KIB, 3, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(ent.size, n);
	assert_int_equal(ent.crc32c, ck_crc32c(0, d, n));
	assert_memory_equal(ent.md5, md5, 16);
	assert_true(up.meta.flags & BE_META_SUMS_READY);
	assert_int_equal(up.meta.crc32c, ck_crc32c(0, d, n));
	be_entry_release(&ent);
	ut_check_remote_mem(be, "late/a", d, n);
	/* Resuming a session that turns out complete: its sums are checked
	 * once known (here equal, then after a change of the file not). */
	up.meta = m;
	UT_OK(be_upload_file(be, "late/a", fd, &m, &pre, 256 * KIB, 3, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(ent.crc32c, ck_crc32c(0, d, n));
	be_entry_release(&ent);
	ut_write_at(local, "X", 1, 5, 0);
	up.meta = m;
	err_clear(&e);
	assert_int_equal(be_upload_file(be, "late/a", fd, &m, &pre, 256 * KIB, 3, &up, NULL,
					NULL, NULL, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
	ut_write_at(local, d + 5, 1, 5, 0);
	/* Stopped halfway, then resumed from the stored state: the rest only. */
	memset(&c, 0, sizeof(c));
	c.stop_at = MIB;
	memset(&up, 0, sizeof(up));
	up.chunk_size = 256 * KIB;
	err_clear(&e);
	assert_int_equal(be_upload_file(be, "late/b", fd, &m, &pre, 256 * KIB, 3, &up,
					late_state, &c, &ent, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_true(up.session[0] != '\0');
	assert_true(up.persisted >= MIB && up.persisted < n);
	{
		struct err se;
		int64_t before = 0, after = 0;

		assert_int_equal(emuh_counter(emu, "gcs.upload_bytes_received", &before, &se), 0);
		UT_OK(be_upload_file(be, "late/b", fd, &m, &pre, 256 * KIB, 3, &up, NULL, NULL, &ent,
				  &e_));
		assert_int_equal(emuh_counter(emu, "gcs.upload_bytes_received", &after, &se), 0);
		assert_true(after - before <= (int64_t)(n - MIB));
	}
	assert_int_equal(ent.crc32c, ck_crc32c(0, d, n));
	be_entry_release(&ent);
	ut_check_remote_mem(be, "late/b", d, n);
	/* The file changes after its sums were taken: the server refuses. */
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"ms\":60}]");
	memset(&c, 0, sizeof(c));
	c.local = local;
	c.change_at = 2 * MIB;
	c.n = n;
	memset(&up, 0, sizeof(up));
	up.chunk_size = 256 * KIB;
	err_clear(&e);
	assert_int_equal(be_upload_file(be, "late/c", fd, &m, &pre, 256 * KIB, 3, &up,
					late_state, &c, &ent, &e), -1);
	assert_true(c.changed);
	/* GCS answers 400 to a checksum mismatch (ERR_INVAL) */
	assert_true(e.code == ERR_INVAL || e.code == ERR_PARSE);
	be_entry_release(&ent);
	memset(&ent, 0, sizeof(ent));
	assert_int_equal(be_stat(be, "late/c", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	close(fd);
	free(d);
}

/* --- the scheduler ------------------------------------------------------ */

static int open_fn(void *ud, uint64_t fid)
{
	struct fx *f = ud;
	int r;

	(void)fid;
	pthread_mutex_lock(&f->mu);
	r = f->open_answer;
	pthread_mutex_unlock(&f->mu);
	return r;
}

static void on_event(void *ud, const struct sched_event *ev)
{
	struct fx *f = ud;

	pthread_mutex_lock(&f->mu);
	if (ev->kind == SCHED_EV_CONFLICT)
		f->ev_conflict++;
	pthread_mutex_unlock(&f->mu);
}

static void cache_path(const char *name, char *buf, size_t len);

/* sched_freeze_fn: copy fid's cache file into dst with the rewriter's
 * writes held (fx.wmu), or answer fx.freeze_answer when it is not 1. */
static int freeze_fn(void *ud, uint64_t fid, int dst, struct err *err)
{
	struct fx *f = ud;
	struct jnl_file jf;
	char buf[65536], path[256];
	off_t off = 0;
	ssize_t n;
	int answer, src, rc = 1;

	memset(&jf, 0, sizeof(jf));
	pthread_mutex_lock(&f->mu);
	answer = f->freeze_answer;
	f->freezes++;
	pthread_mutex_unlock(&f->mu);
	if (answer == 0)
		return 0;
	if (answer < 0)
		return err_set(err, ERR_IO, "test: the copy fails");
	if (jnl_file_get(f->j, fid, &jf, err) < 0)
		return -1;
	cache_path(jf.cache_name, path, sizeof(path));
	jnl_file_release(&jf);
	pthread_mutex_lock(&f->wmu);
	src = open(path, O_RDONLY | O_CLOEXEC);
	if (src < 0) {
		rc = err_sys(err, "test: open %s", path);
		goto out;
	}
	while ((n = pread(src, buf, sizeof(buf), off)) > 0) {
		if (pwrite(dst, buf, (size_t)n, off) != n) {
			rc = err_sys(err, "test: copy");
			break;
		}
		off += n;
	}
	if (n < 0)
		rc = err_sys(err, "test: read");
	close(src);
out:
	pthread_mutex_unlock(&f->wmu);
	return rc;
}

static void fx_start(void)
{
	UT_OK(sch_new(fx.j, be, &fx.so, &fx.s, &e_));
	sch_set_event_fn(fx.s, on_event, &fx);
	sch_set_open_fn(fx.s, open_fn, &fx);
	UT_OK(sch_start(fx.s, &e_));
}

static void cache_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", fx.files, name);
}

/* A new local file at path holding data, journaled. Returns the fid. */
static uint64_t new_file(const char *path, const void *data, size_t n)
{
	char name[32], cp[256];
	uint64_t fid = 0, seq = 0;
	int64_t mt = ut_wall_ns();

	snprintf(name, sizeof(name), "c%06u", ++fx.next_cache);
	cache_path(name, cp, sizeof(cp));
	ut_write_at(cp, data, n, 0, 1);
	UT_OK(jnl_file_new(fx.j, path, JNL_FILE, name, NULL, n, mt, &fid, &e_));
	UT_OK(jnl_write(fx.j, fid, n, mt, 0, &seq, &e_));
	return fid;
}

/* Change fid's cache file as the filesystem does: tell the scheduler, mark
 * dirty, write data at off (truncating to off + n when trunc), journal. */
static void change(uint64_t fid, const void *data, size_t n, uint64_t off, int trunc)
{
	struct jnl_file f;
	char cp[256];
	uint64_t seq;

	memset(&f, 0, sizeof(f));
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	UT_OK(jnl_file_dirty(fx.j, fid, NULL, &e_));
	sch_note_write(fx.s, fid, trunc ? 0 : off);
	cache_path(f.cache_name, cp, sizeof(cp));
	if (trunc)
		ut_write_at(cp, data, n, 0, 1);
	else
		ut_write_at(cp, data, n, (off_t)off, 0);
	sch_note_write_end(fx.s, fid, trunc ? 0 : off);
	UT_OK(jnl_write(fx.j, fid, off + n, ut_wall_ns(), 0, &seq, &e_));
	jnl_file_release(&f);
}

static void wait_fid(uint64_t fid)
{
	UT_OK(sch_wait_fid(fx.s, fid, 30000, &e_));
}

static uint64_t appends(void)
{
	struct sched_stats st;

	sch_get_stats(fx.s, &st);
	return st.appends;
}

static void test_sched_append(void **state)
{
	const size_t n0 = 512 * KIB, step = 20 * KIB, steps = 4;
	unsigned char *d = ut_pattern(n0 + steps * step, 3);
	int64_t composes, t0;
	uint64_t fid;
	size_t i, n = n0;

	(void)state;
	fx_start();
	fid = new_file("grow/a.csv", d, n0);
	wait_fid(fid);
	ut_check_remote_mem(be, "grow/a.csv", d, n0);
	composes = emuh_must_requests(emu, "gcs.objects.compose", 0);
	t0 = ut_now_ms();
	for (i = 0; i < steps; i++) {
		change(fid, d + n, step, n, 0);
		n += step;
		wait_fid(fid);
		ut_check_remote_mem(be, "grow/a.csv", d, n);
	}
	assert_int_equal(appends(), steps);
	assert_int_equal(emuh_must_requests(emu, "gcs.objects.compose", 0) - composes, (int64_t)steps);
	/* One update per second per object: steps updates after the first
	 * commit take at least steps - 1 seconds... and the first waited for
	 * the gap after the initial upload too. */
	assert_true(ut_now_ms() - t0 >= (int64_t)(steps - 1) * 1000 - 50);
	assert_int_equal(remote_count(""), 1);  /* no temporary left */
	free(d);
}

static void test_sched_append_fallbacks(void **state)
{
	const size_t n0 = 400 * KIB;
	unsigned char *d = ut_pattern(n0 + 3 * 10 * KIB, 4), *x;
	struct be_entry cur, other;
	struct be_meta m;
	struct be_pre pre;
	char local[128];
	uint64_t fid;
	size_t n = n0;
	int fd;

	(void)state;
	memset(&cur, 0, sizeof(cur));
	memset(&other, 0, sizeof(other));
	fx_start();
	fid = new_file("fb/f.bin", d, n0);
	wait_fid(fid);
	/* A change below the committed size: whole upload. Both writes are
	 * made with the workers stopped: a worker could otherwise upload the
	 * first alone (whole) and then rightly send the second as an append. */
	sch_stop(fx.s);
	change(fid, "XYZ", 3, 100, 0);
	memcpy(d + 100, "XYZ", 3);
	change(fid, d + n, 10 * KIB, n, 0);
	n += 10 * KIB;
	UT_OK(sch_start(fx.s, &e_));
	wait_fid(fid);
	ut_check_remote_mem(be, "fb/f.bin", d, n);
	assert_int_equal(appends(), 0);
	/* Now a plain append is one. */
	change(fid, d + n, 10 * KIB, n, 0);
	n += 10 * KIB;
	wait_fid(fid);
	ut_check_remote_mem(be, "fb/f.bin", d, n);
	assert_int_equal(appends(), 1);
	/* After a restart nothing is known of the writes: whole again. */
	sch_free(fx.s);
	fx.s = NULL;
	fx_start();
	change(fid, d + n, 10 * KIB, n, 0);
	n += 10 * KIB;
	wait_fid(fid);
	ut_check_remote_mem(be, "fb/f.bin", d, n);
	assert_int_equal(appends(), 0);
	/* Someone else replaced the remote file: the append's guard fails,
	 * the whole upload's too, and keep-both applies. */
	UT_OK(be_stat(be, "fb/f.bin", &cur, &e_));
	x = ut_pattern(n, 9);
	snprintf(local, sizeof(local), "%s/other", fx.dir);
	ut_write_at(local, x, n, 0, 1);
	fd = open(local, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	meta_of(x, n, &m);
	pre.kind = BE_PRE_MATCH;
	pre.ver = cur.ver;
	UT_OK(be_put(be, "fb/f.bin", fd, &m, &pre, &other, &e_));
	close(fd);
	change(fid, "tail", 4, n, 0);
	{
		struct err e;

		err_clear(&e);
		assert_int_equal(sch_wait_fid(fx.s, fid, 30000, &e), -1);
		assert_int_equal(e.code, ERR_CONFLICT);
	}
	/* The event follows the journal's record: wait for it a little. */
	{
		int64_t t0 = ut_now_ms();
		int got = 0;

		while (!got && ut_now_ms() - t0 < 5000) {
			pthread_mutex_lock(&fx.mu);
			got = fx.ev_conflict;
			pthread_mutex_unlock(&fx.mu);
			if (!got)
				ut_sleep_ms(5);
		}
		assert_int_equal(got, 1);
	}
	ut_check_remote_mem(be, "fb/f.bin", x, n);
	assert_int_equal(remote_count("fb"), 2);   /* f.bin and its conflict copy */
	be_entry_release(&cur);
	be_entry_release(&other);
	free(x);
	free(d);
}

static void test_snapshot_label(void **state)
{
	const size_t n = 2 * MIB;
	unsigned char *d = ut_pattern(n, 5);
	struct sched_upload *v = NULL;
	size_t nv = 0, i;
	int64_t t0;
	int seen = 0;
	uint64_t fid;

	(void)state;
	fx.open_answer = 1;
	/* Slow chunks so the upload can be seen. */
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"ms\":150}]");
	fx_start();
	fid = new_file("snap/open.log", d, n);
	t0 = ut_now_ms();
	while (!seen && ut_now_ms() - t0 < 20000) {
		UT_OK(sch_uploads(fx.s, &v, &nv, &e_));
		for (i = 0; i < nv; i++)
			if (!strcmp(v[i].path, "snap/open.log") && v[i].snapshot)
				seen = 1;
		sch_uploads_free(v, nv);
		v = NULL;
		ut_sleep_ms(10);
	}
	assert_true(seen);
	/* The file keeps changing while it uploads (appends): a snapshot is
	 * finished rather than abandoned. */
	wait_fid(fid);
	ut_check_remote_mem(be, "snap/open.log", d, n);
	free(d);
}

/* --- snapshots from a consistent copy ------------------------------------ */

struct rewriter {
	uint64_t fid;
	size_t n;
	atomic_int stop;
	int rounds;
};

/* Rewrite the whole cache file in place with one byte value after another
 * (a checkpoint saved again and again), as the filesystem does: mark the
 * file dirty, tell the scheduler, write under fx.wmu. */
static void *rewriter_main(void *arg)
{
	struct rewriter *r = arg;
	unsigned char *d = malloc(r->n);
	struct err e;
	int fd;

	if (!d)
		return NULL;
	fd = open(fx.rewrite_path, O_WRONLY | O_CLOEXEC);
	while (fd >= 0 && !atomic_load(&r->stop)) {
		memset(d, 'A' + r->rounds % 26, r->n);
		if (jnl_file_dirty(fx.j, r->fid, NULL, &e) < 0)
			break;
		sch_note_write(fx.s, r->fid, 0);
		/* Half now, half after a pause: a read in between is torn. */
		pthread_mutex_lock(&fx.wmu);
		if (pwrite(fd, d, r->n / 2, 0) != (ssize_t)(r->n / 2)) {
			pthread_mutex_unlock(&fx.wmu);
			sch_note_write_end(fx.s, r->fid, 0);
			break;
		}
		ut_sleep_ms(2);
		if (pwrite(fd, d + r->n / 2, r->n - r->n / 2, (off_t)(r->n / 2)) !=
		    (ssize_t)(r->n - r->n / 2)) {
			pthread_mutex_unlock(&fx.wmu);
			sch_note_write_end(fx.s, r->fid, 0);
			break;
		}
		pthread_mutex_unlock(&fx.wmu);
		sch_note_write_end(fx.s, r->fid, 0);
		r->rounds++;
		ut_sleep_ms(5);
	}
	if (fd >= 0)
		close(fd);
	free(d);
	return NULL;
}

/* The remote object at path: n bytes, all equal (one whole rewrite). */
static void check_remote_uniform(const char *path, size_t n)
{
	struct ut_buf got = { 0 };
	uint64_t g = 0;
	size_t i;

	UT_OK(be_read(be, path, NULL, 0, UINT64_MAX, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, n);
	for (i = 1; i < got.n; i++)
		if (got.p[i] != got.p[0])
			fail_msg("%s is torn: byte %zu is '%c', byte 0 '%c'", path, i, got.p[i],
				 got.p[0]);
	free(got.p);
}

static void test_snapshot_copy(void **state)
{
	const size_t n = 1 * MIB;  /* 4 chunks: a resumable upload */
	unsigned char *d = malloc(n);
	struct sched_stats st;
	struct rewriter r;
	struct jnl_file f;
	pthread_t th;
	uint64_t fid;

	(void)state;
	assert_non_null(d);
	memset(d, 'z', n);
	memset(&r, 0, sizeof(r));
	memset(&f, 0, sizeof(f));
	fx.open_answer = 1;
	fx.freeze_answer = 1;
	/* Slow chunks: the file is rewritten many times while it uploads. */
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"ms\":100}]");
	fx_start();
	sch_set_freeze_fn(fx.s, freeze_fn, &fx);
	/* Claimed at once; the rewriter runs while the chunks go out. */
	fid = new_file("snap/ckpt.bin", d, n);
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	cache_path(f.cache_name, fx.rewrite_path, sizeof(fx.rewrite_path));
	jnl_file_release(&f);
	r.fid = fid;
	r.n = n;
	atomic_init(&r.stop, 0);
	assert_int_equal(pthread_create(&th, NULL, rewriter_main, &r), 0);
	wait_fid(fid);
	atomic_store(&r.stop, 1);
	pthread_join(th, NULL);
	assert_true(r.rounds >= 10);
	/* Sent once, from the copy: whole, untorn, never restarted. */
	check_remote_uniform("snap/ckpt.bin", n);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.snapshot_copies, 1);
	assert_int_equal(st.sessions_restarted, 0);
	assert_int_equal(st.retries, 0);
	assert_int_equal(fx.freezes, 1);
	/* The rewrites after the copy are not lost: the file is still dirty
	 * in the journal for the next upload. */
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	assert_int_equal(f.dirty, 1);
	jnl_file_release(&f);
	free(d);
}

static void test_snapshot_copy_fallback(void **state)
{
	const size_t n = 600 * KIB;
	unsigned char *d = ut_pattern(n, 10), *d2 = ut_pattern(n, 11);
	struct sched_stats st;
	struct jnl_file f;
	uint64_t fid;

	(void)state;
	memset(&f, 0, sizeof(f));
	fx.open_answer = 1;
	fx_start();
	sch_set_freeze_fn(fx.s, freeze_fn, &fx);
	/* Nothing to copy (closed meanwhile): the cache file itself is sent. */
	fx.freeze_answer = 0;
	fid = new_file("snap/a", d, n);
	wait_fid(fid);
	ut_check_remote_mem(be, "snap/a", d, n);
	/* The copy fails: logged, and the cache file itself is sent. */
	fx.freeze_answer = -1;
	fid = new_file("snap/b", d2, n);
	wait_fid(fid);
	ut_check_remote_mem(be, "snap/b", d2, n);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.snapshot_copies, 0);
	assert_int_equal(fx.freezes, 2);
	/* A file not open for writing is no snapshot: never copied. */
	fx.open_answer = 0;
	fx.freeze_answer = 1;
	fid = new_file("snap/c", d, n);
	wait_fid(fid);
	ut_check_remote_mem(be, "snap/c", d, n);
	assert_int_equal(fx.freezes, 2);
	/* Cleared: no copy either. */
	sch_set_freeze_fn(fx.s, NULL, NULL);
	fx.open_answer = 1;
	fid = new_file("snap/d", d2, n);
	wait_fid(fid);
	ut_check_remote_mem(be, "snap/d", d2, n);
	assert_int_equal(fx.freezes, 2);
	free(d);
	free(d2);
}

/* Snapshot copies a crash left (the fallback without O_TMPFILE) are
 * removed when a scheduler starts on the cache dir; cache files stay. */
static void test_snapshot_leftovers_removed(void **state)
{
	char left[256], keep[256];
	struct stat st;
	int fd;

	(void)state;
	snprintf(left, sizeof(left), "%s/.snapshot-Ab12Cd", fx.files);
	snprintf(keep, sizeof(keep), "%s/snapshot-not-ours", fx.files);
	fd = open(left, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "stale", 5), 5);
	close(fd);
	fd = open(keep, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	fx_start();
	assert_int_equal(stat(left, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(stat(keep, &st), 0);
}

static void test_storage_quota_kept(void **state)
{
	unsigned char *d = ut_pattern(100 * KIB, 6);
	struct jnl_op *v = NULL;
	size_t n = 0;
	struct err e;
	uint64_t fid;

	(void)state;
	emuh_must_faults(emu,
			 "[{\"kind\":\"status\",\"status\":403,\"reason\":\"storageQuotaExceeded\","
	       "\"path\":\"/upload/*\"}]");
	fx_start();
	fid = new_file("q/full.bin", d, 100 * KIB);
	err_clear(&e);
	assert_int_equal(sch_wait_fid(fx.s, fid, 30000, &e), -1);
	assert_int_equal(e.code, ERR_NOSPC);
	UT_OK(jnl_list_ops(fx.j, JNL_MASK(JNL_FAILED), 0, &v, &n, &e_));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].err_code, ERR_NOSPC);
	assert_non_null(strstr(v[0].err_msg, "q/full.bin"));
	assert_non_null(strstr(v[0].err_msg, "storageQuotaExceeded"));
	assert_non_null(strstr(v[0].err_msg, "what to do"));
	assert_string_equal(be_reason_find(v[0].err_msg), "storageQuotaExceeded");
	emuh_must_faults(emu, "[]");     /* space was freed */
	UT_OK(jnl_retry(fx.j, v[0].seq, &e_));
	jnl_ops_free(v, n);
	wait_fid(fid);
	ut_check_remote_mem(be, "q/full.bin", d, 100 * KIB);
	free(d);
}

static void test_rate_limit_retried(void **state)
{
	unsigned char *d = ut_pattern(50 * KIB, 7);
	struct jnl_op *v = NULL;
	size_t n = 0, i;
	int64_t t0;
	int seen = 0;
	uint64_t fid;

	(void)state;
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":403,\"reason\":\"userRateLimitExceeded\","
	       "\"path\":\"/upload/*\",\"count\":40}]");
	fx_start();
	fid = new_file("r/slow.bin", d, 50 * KIB);
	t0 = ut_now_ms();
	while (!seen && ut_now_ms() - t0 < 20000) {
		UT_OK(jnl_list_ops(fx.j, JNL_MASK(JNL_PENDING), 0, &v, &n, &e_));
		for (i = 0; i < n; i++)
			if (v[i].err_code == ERR_RATE && v[i].err_msg &&
			    strstr(v[i].err_msg, "userRateLimitExceeded") &&
			    strstr(v[i].err_msg, "what to do"))
				seen = 1;
		jnl_ops_free(v, n);
		ut_sleep_ms(10);
	}
	assert_true(seen);
	wait_fid(fid);     /* retried until the limit lifts: never failed */
	ut_check_remote_mem(be, "r/slow.bin", d, 50 * KIB);
	free(d);
}

/* --- fixtures ----------------------------------------------------------- */

static int fx_setup(void **state)
{
	struct err e;

	(void)state;
	memset(&fx, 0, sizeof(fx));
	pthread_mutex_init(&fx.mu, NULL);
	pthread_mutex_init(&fx.wmu, NULL);
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/durafs-wr-XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	snprintf(fx.files, sizeof(fx.files), "%s/files", fx.dir);
	snprintf(fx.db, sizeof(fx.db), "%s/journal.db", fx.dir);
	if (mkdir(fx.files, 0700) < 0)
		return -1;
	if (emuh_reset(emu, &e) < 0 || emuh_gcs_bucket(emu, BUCKET, 0, &e) < 0) {
		fprintf(stderr, "test_sched_writers: reset: %s\n", e.msg);
		return -1;
	}
	if (jnl_open(fx.db, NULL, &fx.j, NULL, &e) < 0) {
		fprintf(stderr, "test_sched_writers: journal: %s\n", e.msg);
		return -1;
	}
	memset(&fx.so, 0, sizeof(fx.so));
	fx.so.workers = 4;
	fx.so.chunk_size = 256 * KIB;
	fx.so.small_max = 256 * KIB;
	fx.so.files_dir = fx.files;
	fx.so.retry_initial_ms = 30;
	fx.so.retry_max_ms = 300;
	fx.so.housekeeping_ms = 100;
	fx.so.renew_ms = 500;
	fx.so.http = http;
	return 0;
}

static int fx_teardown(void **state)
{
	char cmd[128];

	(void)state;
	emuh_must_faults(emu, "[]");
	sch_free(fx.s);
	fx.s = NULL;
	jnl_close(fx.j);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
	if (system(cmd) != 0)
		return -1;
	pthread_mutex_destroy(&fx.mu);
	pthread_mutex_destroy(&fx.wmu);
	return 0;
}

static int group_setup(void **state)
{
	const struct sfx_group_opts o = { .max_retries = 2, .backoff_max_ms = 20,
					  .jitter_ms = 2, .chunk_size = 256 * KIB };

	(void)state;
	return sfx_group_start("test_sched_writers", BUCKET, 0, &o, &emu, &http, &be);
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
		cmocka_unit_test_setup_teardown(test_advice, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_meta_split, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_be_append, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sums_late, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sched_append, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sched_append_fallbacks, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_label, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_copy, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_copy_fallback, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_leftovers_removed, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_storage_quota_kept, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_rate_limit_retried, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests_name("sched_writers", tests, group_setup, group_teardown);
}
