/* Unit tests for sync/journal.c: every op state transition, the coalescing
 * and ordering rules, waits with threads, status, recovery, the stored
 * listings and cache map, schema checks, speed, and a full disk (tmpfs). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "durafs/journal.h"

struct fx {
	char dir[128];
	char path[192];
	char mnt[256];        /* a tmpfs mounted by the test, or "" */
	struct jnl *j;
	int64_t now;          /* the fake clock */
	struct jnl_opts opts;
};

static int64_t fake_clock(void *arg)
{
	return ((struct fx *)arg)->now;
}

static void ok_at(int rc, const struct err *e, const char *what, int line)
{
	if (rc != 0) {
		print_message("line %d: %s failed (%d): %s\n", line, what, rc,
			      e->msg);
		fail();
	}
}
#define OK(expr) ok_at((expr), &e, #expr, __LINE__)
#define FAILS(expr, want) do { \
	err_clear(&e); \
	assert_int_equal((expr), -1); \
	if (e.code != (want)) \
		print_message("line %d: got %d (%s)\n", __LINE__, e.code, e.msg); \
	assert_int_equal(e.code, (want)); \
} while (0)

static void rm_rf(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void fx_open(struct fx *f, struct jnl_recovery *rec)
{
	struct err e;

	OK(jnl_open(f->path, &f->opts, &f->j, rec, &e));
}

static void fx_reopen(struct fx *f, struct jnl_recovery *rec)
{
	jnl_close(f->j);
	f->j = NULL;
	fx_open(f, rec);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/jnltest.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/journal.db", f->dir);
	f->now = 1000000;
	f->opts.clock = fake_clock;
	f->opts.clock_arg = f;
	fx_open(f, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct err e;

	if (f->mnt[0])
		umount2(f->mnt, MNT_DETACH);
	if (f->j) {
		if (jnl_check(f->j, &e) != 0) {
			print_message("jnl_check at teardown: %s\n", e.msg);
			jnl_close(f->j);
			rm_rf(f->dir);
			free(f);
			return -1;
		}
		jnl_close(f->j);
	}
	rm_rf(f->dir);
	free(f);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) used by this process so far. */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* A new local file at path with a write op; returns the fid, *seq the op. */
static uint64_t new_written(struct jnl *j, const char *path, uint64_t size,
			    uint64_t *seq)
{
	struct err e;
	uint64_t fid = 0, s = 0;
	char cache[64];

	snprintf(cache, sizeof(cache), "c-%s", path);
	for (char *c = cache; *c; c++)
		if (*c == '/')
			*c = '_';
	OK(jnl_file_new(j, path, JNL_FILE, cache, NULL, 0, 1, &fid, &e));
	OK(jnl_write(j, fid, size, 7, 0, &s, &e));
	assert_true(s > 0);
	if (seq)
		*seq = s;
	return fid;
}

/* A tracked remote file (clean, with a base). */
static uint64_t remote_file(struct jnl *j, const char *path, const char *base)
{
	struct err e;
	uint64_t fid = 0;

	OK(jnl_file_new(j, path, JNL_FILE, NULL, base, 5, 1, &fid, &e));
	return fid;
}

static size_t count_ops(struct jnl *j, unsigned mask)
{
	struct err e;
	struct jnl_op *v = NULL;
	size_t n = 0;

	OK(jnl_list_ops(j, mask, 0, &v, &n, &e));
	jnl_ops_free(v, n);
	return n;
}

/* Claim every ready op; their seqs (sorted by claim order) into out[],
 * claims into cl[]. Returns how many. The ops are left claimed. */
static size_t claim_all(struct jnl *j, uint64_t *out, uint64_t *cl, size_t max)
{
	struct err e;
	struct jnl_op op;
	size_t n = 0;
	int r;

	while ((r = jnl_claim_next(j, &op, &e)) == 1) {
		assert_true(n < max);
		out[n] = op.seq;
		cl[n] = op.claim;
		n++;
		jnl_op_release(&op);
	}
	assert_int_equal(r, 0);
	return n;
}

static int has_seq(const uint64_t *v, size_t n, uint64_t seq)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == seq)
			return 1;
	return 0;
}

static void complete_seq(struct jnl *j, const uint64_t *seqs,
			 const uint64_t *cl, size_t n, uint64_t seq)
{
	struct err e;

	for (size_t i = 0; i < n; i++)
		if (seqs[i] == seq) {
			OK(jnl_complete(j, seq, cl[i], "g", &e));
			return;
		}
	fail_msg("seq %llu was not claimed", (unsigned long long)seq);
}

/* ------------------------------------------------------------------------ */

static void test_open_create_reopen(void **state)
{
	struct fx *f = *state;
	struct jnl *j2 = NULL;
	struct jnl_recovery rec;
	struct stat st;
	struct err e;
	uint64_t seq;

	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	new_written(f->j, "a", 1, &seq);
	/* A second opener is refused at once with a clear message. */
	FAILS(jnl_open(f->path, NULL, &j2, NULL, &e), ERR_IO);
	assert_null(j2);
	assert_int_equal(e.sys_errno, EBUSY);
	assert_non_null(strstr(e.msg, "in use"));
	fx_reopen(f, &rec);
	assert_int_equal(rec.created, 0);
	assert_int_equal(rec.pending, 1);
	assert_int_equal(jnl_last_seq(f->j), seq);
	/* seq numbers are never reused after a restart. */
	new_written(f->j, "b", 1, &seq);
	assert_int_equal(seq, 2);
}

static void test_open_narrows_mode(void **state)
{
	struct fx *f = *state;
	struct stat st;

	jnl_close(f->j);
	f->j = NULL;
	assert_int_equal(chmod(f->path, 0644), 0);
	fx_open(f, NULL);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void sql_on_file(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("sql: %s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

static void test_open_refuses_newer_and_foreign(void **state)
{
	struct fx *f = *state;
	struct jnl *j2 = NULL;
	struct err e;
	char other[256];
	int fd;

	new_written(f->j, "a", 1, NULL);
	jnl_close(f->j);
	f->j = NULL;
	sql_on_file(f->path, "PRAGMA user_version=99");
	FAILS(jnl_open(f->path, NULL, &j2, NULL, &e), ERR_INVAL);
	assert_non_null(strstr(e.msg, "newer durafs"));
	assert_null(j2);
	sql_on_file(f->path, "PRAGMA user_version=3");
	fx_open(f, NULL);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 1);

	/* Another application's SQLite database. */
	snprintf(other, sizeof(other), "%s/other.db", f->dir);
	sql_on_file(other, "CREATE TABLE t(x)");
	FAILS(jnl_open(other, NULL, &j2, NULL, &e), ERR_INVAL);
	assert_non_null(strstr(e.msg, "not a durafs journal"));
	/* Not a database at all. */
	snprintf(other, sizeof(other), "%s/garbage.db", f->dir);
	fd = open(other, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(write(fd, "this is not sqlite at all.......", 32),
				 32);
	close(fd);
	FAILS(jnl_open(other, NULL, &j2, NULL, &e), ERR_INVAL);
	assert_non_null(strstr(e.msg, "not a durafs journal"));
	/* A directory that does not exist. */
	FAILS(jnl_open("/nonexistent-dir/j.db", NULL, &j2, NULL, &e), ERR_IO);
}

static void test_invalid_paths(void **state)
{
	struct fx *f = *state;
	static const char *bad[] = { "", "/a", "a/", "a//b", ".", "a/./b",
				     "a/..", "../a" };
	struct err e;
	uint64_t fid, seq;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FAILS(jnl_file_new(f->j, bad[i], JNL_FILE, NULL, NULL, 0, 0, &fid,
				   &e), ERR_INVAL);
		FAILS(jnl_mkdir(f->j, bad[i], 0, &fid, &seq, &e), ERR_INVAL);
	}
	FAILS(jnl_file_new(f->j, "x", 9, NULL, NULL, 0, 0, &fid, &e), ERR_INVAL);
	FAILS(jnl_symlink(f->j, "l", "", 0, &fid, &seq, &e), ERR_INVAL);
	fid = remote_file(f->j, "x", "g1");
	FAILS(jnl_rename(f->j, fid, "a//b", 0, &seq, &e), ERR_INVAL);
	FAILS(jnl_rename(f->j, fid, "y", 0x80, &seq, &e), ERR_INVAL);
}

static void test_file_identity(void **state)
{
	struct fx *f = *state;
	struct jnl_file jf;
	struct err e;
	uint64_t a, b, x;

	OK(jnl_file_new(f->j, "a", JNL_FILE, "ca", NULL, 3, 11, &a, &e));
	OK(jnl_file_get(f->j, a, &jf, &e));
	assert_string_equal(jf.path, "a");
	assert_string_equal(jf.cache_name, "ca");
	assert_null(jf.base);
	assert_int_equal(jf.dirty, 1);       /* new local file */
	assert_int_equal(jf.version, 1);
	assert_int_equal(jf.type, JNL_FILE);
	assert_int_equal(jf.size, 3);
	assert_int_equal(jf.mtime_ns, 11);
	jnl_file_release(&jf);
	b = remote_file(f->j, "b", "g7");
	OK(jnl_file_get(f->j, b, &jf, &e));
	assert_int_equal(jf.dirty, 0);       /* tracked remote file */
	assert_string_equal(jf.base, "g7");
	jnl_file_release(&jf);
	FAILS(jnl_file_new(f->j, "a", JNL_FILE, NULL, NULL, 0, 0, &x, &e),
	      ERR_EXISTS);
	assert_int_equal(x, a);
	OK(jnl_file_lookup(f->j, "b", &x, &e));
	assert_int_equal(x, b);
	FAILS(jnl_file_lookup(f->j, "zz", &x, &e), ERR_NOTFOUND);
	FAILS(jnl_file_get(f->j, 999, &jf, &e), ERR_NOTFOUND);
	OK(jnl_file_set_cache(f->j, b, "cb", &e));
	OK(jnl_file_set_base(f->j, b, "g8", &e));
	OK(jnl_file_get(f->j, b, &jf, &e));
	assert_string_equal(jf.cache_name, "cb");
	assert_string_equal(jf.base, "g8");
	jnl_file_release(&jf);
	/* No ops were appended by any of this. */
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
	assert_int_equal(jnl_last_seq(f->j), 0);
}

static void test_write_claim_complete(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, op2;
	struct jnl_file jf;
	struct jnl_stats st;
	struct err e;
	uint64_t fid, seq;

	fid = new_written(f->j, "a", 10, &seq);
	assert_int_equal(seq, 1);
	assert_int_equal(jnl_last_seq(f->j), 1);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, seq);
	assert_int_equal(op.kind, JNL_OP_WRITE);
	assert_int_equal(op.state, JNL_IN_PROGRESS);
	assert_int_equal(op.fid, fid);
	assert_int_equal(op.type, JNL_FILE);
	assert_string_equal(op.path, "a");
	assert_null(op.path2);
	assert_string_equal(op.cache_name, "c-a");
	assert_null(op.base);              /* new: must not exist remotely */
	assert_int_equal(op.version, 2);
	assert_int_equal(op.size, 10);
	assert_int_equal(op.mtime_ns, 7);
	assert_int_equal(op.attempts, 1);
	assert_true(op.claim > 0);
	assert_null(op.session);
	assert_int_equal(jnl_claim_next(f->j, &op2, &e), 0);
	OK(jnl_stats(f->j, &st, &e));
	assert_int_equal(st.inflight_ops, 1);
	assert_int_equal(st.pending_ops, 0);
	OK(jnl_complete(f->j, op.seq, op.claim, "g1", &e));
	/* A second completion with the same claim is refused. */
	FAILS(jnl_complete(f->j, op.seq, op.claim, "g1", &e), ERR_CANCELED);
	jnl_op_release(&op);
	OK(jnl_file_get(f->j, fid, &jf, &e));
	assert_int_equal(jf.dirty, 0);
	assert_string_equal(jf.base, "g1");
	jnl_file_release(&jf);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
	OK(jnl_wait_fid(f->j, fid, seq, 0, 0, &e));
	OK(jnl_wait_all(f->j, seq, 0, 0, &e));
	OK(jnl_stats(f->j, &st, &e));
	assert_int_equal(st.committed_ops, 1);
	assert_int_equal(st.committed_bytes, 10);
	assert_int_equal(st.dirty_files, 0);
	assert_int_equal(st.last_seq, 1);
}

static void test_write_coalescing(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, op2, *v = NULL;
	struct jnl_file jf;
	struct err e;
	uint64_t fid, s1, s, s4;
	size_t n;

	fid = new_written(f->j, "a", 1, &s1);
	OK(jnl_write(f->j, fid, 2, 8, 0, &s, &e));
	assert_int_equal(s, s1);
	OK(jnl_write(f->j, fid, 3, 9, 0, &s, &e));
	assert_int_equal(s, s1);
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].size, 3);
	assert_int_equal(v[0].mtime_ns, 9);
	assert_int_equal(v[0].version, 4);
	jnl_ops_free(v, n);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.version, 4);
	/* A write while the upload runs is a new op, held behind it. */
	OK(jnl_write(f->j, fid, 4, 10, 0, &s4, &e));
	assert_true(s4 > s1);
	assert_int_equal(jnl_claim_next(f->j, &op2, &e), 0);
	OK(jnl_complete(f->j, op.seq, op.claim, "g1", &e));
	jnl_op_release(&op);
	OK(jnl_file_get(f->j, fid, &jf, &e));
	assert_int_equal(jf.dirty, 1);     /* version 5 not uploaded yet */
	assert_string_equal(jf.base, "g1");
	jnl_file_release(&jf);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s4);
	assert_string_equal(op.base, "g1"); /* guard: the version just made */
	assert_int_equal(op.version, 5);
	OK(jnl_complete(f->j, op.seq, op.claim, "g2", &e));
	jnl_op_release(&op);
	OK(jnl_file_get(f->j, fid, &jf, &e));
	assert_int_equal(jf.dirty, 0);
	jnl_file_release(&jf);

	/* Rule c: a started write requeued, a new write appended behind it;
	 * the first upload covers the second, which is dropped. */
	OK(jnl_write(f->j, fid, 6, 11, 0, &s1, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_retry_later(f->j, op.seq, op.claim, 0, NULL, &e));
	jnl_op_release(&op);
	OK(jnl_write(f->j, fid, 7, 12, 0, &s, &e));
	assert_true(s > s1);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 2);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	assert_int_equal(op.attempts, 2);
	OK(jnl_complete(f->j, op.seq, op.claim, "g3", &e));
	jnl_op_release(&op);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
	OK(jnl_wait_fid(f->j, fid, s, 0, 0, &e));
	OK(jnl_file_get(f->j, fid, &jf, &e));
	assert_int_equal(jf.dirty, 0);
	jnl_file_release(&jf);
	/* Writing a directory is refused. */
	OK(jnl_mkdir(f->j, "d", 0, &fid, &s, &e));
	FAILS(jnl_write(f->j, fid, 1, 1, 0, &s, &e), ERR_INVAL);
}

static void test_writeback_delay(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, *v = NULL;
	struct err e;
	uint64_t fid, s;
	size_t n;

	jnl_close(f->j);
	f->opts.max_defer_ms = 5000;
	fx_open(f, NULL);
	f->now = 1000;
	OK(jnl_file_new(f->j, "a", JNL_FILE, NULL, NULL, 0, 0, &fid, &e));
	OK(jnl_write(f->j, fid, 1, 1, 2000, &s, &e));
	f->now = 2999;
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	f->now = 3000;
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);

	/* Rewrites push the op back, but never past created + max_defer. */
	f->now = 10000;
	OK(jnl_write(f->j, fid, 1, 1, 2000, &s, &e));
	f->now = 11000;
	OK(jnl_write(f->j, fid, 1, 1, 2000, &s, &e));
	f->now = 12500;
	OK(jnl_write(f->j, fid, 1, 1, 2000, &s, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].not_before_ms, 14500);
	assert_int_equal(v[0].created_ms, 10000);
	jnl_ops_free(v, n);
	f->now = 14000;
	OK(jnl_write(f->j, fid, 1, 1, 2000, &s, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(v[0].not_before_ms, 15000);
	jnl_ops_free(v, n);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	/* A write with no delay (fsync) makes it due now. */
	f->now = 14100;
	OK(jnl_write(f->j, fid, 1, 1, 0, &s, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
}

static void test_expedite(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct err e;
	uint64_t fid, s1, s2;

	OK(jnl_file_new(f->j, "a", JNL_FILE, NULL, NULL, 0, 0, &fid, &e));
	OK(jnl_write(f->j, fid, 1, 1, 60000, &s1, &e));
	OK(jnl_rename(f->j, fid, "b", 0, &s2, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	/* fsync of the rename expedites the write it depends on. */
	OK(jnl_expedite(f->j, fid, s2, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	/* Backoff after a failed attempt is not shortened. */
	OK(jnl_retry_later(f->j, op.seq, op.claim, 10000, NULL, &e));
	jnl_op_release(&op);
	OK(jnl_expedite(f->j, 0, s2, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	f->now += 10000;
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s2);
	assert_int_equal(op.kind, JNL_OP_RENAME);
	assert_string_equal(op.path, "a");
	assert_string_equal(op.path2, "b");
	assert_string_equal(op.base, "g");
	OK(jnl_complete(f->j, op.seq, op.claim, "g2", &e));
	jnl_op_release(&op);
}

static void test_file_dirty_versions(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct jnl_file jf;
	struct err e;
	uint64_t fid, v, s;

	fid = remote_file(f->j, "a", "g0");
	OK(jnl_file_dirty(f->j, fid, &v, &e));
	assert_int_equal(v, 1);
	OK(jnl_file_dirty(f->j, fid, &v, &e));
	assert_int_equal(v, 1);             /* dirty, not claimed: no change */
	OK(jnl_write(f->j, fid, 5, 1, 0, &s, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.version, 2);
	assert_string_equal(op.base, "g0");
	OK(jnl_file_dirty(f->j, fid, &v, &e));
	assert_int_equal(v, 3);             /* changed after the claim */
	OK(jnl_file_dirty(f->j, fid, &v, &e));
	assert_int_equal(v, 3);
	OK(jnl_complete(f->j, op.seq, op.claim, "g1", &e));
	jnl_op_release(&op);
	OK(jnl_file_get(f->j, fid, &jf, &e));
	assert_int_equal(jf.dirty, 1);      /* version 3 is not on the remote */
	assert_int_equal(jf.version, 3);
	jnl_file_release(&jf);
	FAILS(jnl_file_dirty(f->j, 4242, &v, &e), ERR_NOTFOUND);
}

static void test_cancel_create_unlink(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct jnl_file jf;
	struct err e;
	char **names = NULL;
	size_t n = 0;
	uint64_t fid, g, s, sg;

	fid = new_written(f->j, "a", 4, &s);
	OK(jnl_setattr(f->j, fid, 99, &s, &e));
	OK(jnl_unlink(f->j, fid, &s, &e));
	assert_int_equal(s, 0);             /* never reaches the remote */
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
	OK(jnl_file_get(f->j, fid, &jf, &e));
	assert_null(jf.path);
	assert_int_equal(jf.dirty, 0);
	jnl_file_release(&jf);
	FAILS(jnl_file_lookup(f->j, "a", &g, &e), ERR_NOTFOUND);
	FAILS(jnl_unlink(f->j, fid, &s, &e), ERR_NOTFOUND);
	OK(jnl_gc(f->j, &names, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "c-a");
	jnl_names_free(names, n);
	FAILS(jnl_file_get(f->j, fid, &jf, &e), ERR_NOTFOUND);

	/* create a, rename a -> b, create a again, unlink b: only the second
	 * a reaches the remote, and its write is no longer held back. */
	fid = new_written(f->j, "a", 1, NULL);
	OK(jnl_rename(f->j, fid, "b", 0, &s, &e));
	g = new_written(f->j, "a", 2, &sg);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_not_equal(op.seq, sg);   /* the first write goes first */
	OK(jnl_retry_later(f->j, op.seq, op.claim, 0, NULL, &e));
	jnl_op_release(&op);
	/* That write has now started: unlinking b appends an unlink. */
	OK(jnl_unlink(f->j, fid, &s, &e));
	assert_true(s > 0);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 4);

	/* Same again, but nothing started: everything of fid vanishes. */
	fid = new_written(f->j, "p", 1, NULL);
	OK(jnl_rename(f->j, fid, "q", 0, &s, &e));
	g = new_written(f->j, "p", 2, &sg);
	OK(jnl_unlink(f->j, fid, &s, &e));
	assert_int_equal(s, 0);
	{
		uint64_t seqs[8], cl[8];
		size_t k = claim_all(f->j, seqs, cl, 8);

		assert_true(has_seq(seqs, k, sg));   /* p's write is free */
		for (size_t i = 0; i < k; i++)
			complete_seq(f->j, seqs, cl, k, seqs[i]);
	}
	(void)g;
}

static void test_unlink_after_commit(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct err e;
	char **names = NULL;
	size_t n = 0;
	uint64_t fid, s;

	fid = new_written(f->j, "a", 4, &s);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_complete(f->j, op.seq, op.claim, "g1", &e));
	jnl_op_release(&op);
	OK(jnl_unlink(f->j, fid, &s, &e));
	assert_true(s > 0);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.kind, JNL_OP_UNLINK);
	assert_string_equal(op.path, "a");
	assert_string_equal(op.base, "g1");
	/* Not collectable while its op is unfinished. */
	OK(jnl_gc(f->j, &names, &n, &e));
	assert_int_equal(n, 0);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	OK(jnl_gc(f->j, &names, &n, &e));
	assert_int_equal(n, 1);
	jnl_names_free(names, n);

	/* A tracked remote file rewritten then unlinked: the write is
	 * dropped, the unlink stays. */
	fid = remote_file(f->j, "b", "g0");
	OK(jnl_write(f->j, fid, 1, 1, 0, &s, &e));
	OK(jnl_setattr(f->j, fid, 5, &s, &e));
	OK(jnl_unlink(f->j, fid, &s, &e));
	assert_true(s > 0);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 1);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.kind, JNL_OP_UNLINK);
	assert_string_equal(op.base, "g0");
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);

	/* A create whose upload started is not cancelled by an unlink. */
	fid = new_written(f->j, "c", 1, NULL);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_retry_later(f->j, op.seq, op.claim, 0, NULL, &e));
	jnl_op_release(&op);
	OK(jnl_unlink(f->j, fid, &s, &e));
	assert_true(s > 0);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 2);
	/* Wrong type. */
	OK(jnl_mkdir(f->j, "d", 0, &fid, &s, &e));
	FAILS(jnl_unlink(f->j, fid, &s, &e), ERR_INVAL);
	fid = remote_file(f->j, "x", "g");
	FAILS(jnl_rmdir(f->j, fid, &s, &e), ERR_INVAL);
}

static void test_mkdir_rmdir(void **state)
{
	struct fx *f = *state;
	struct err e;
	uint64_t d, d2, x, s;

	OK(jnl_mkdir(f->j, "d", 5, &d, &s, &e));
	assert_true(s > 0);
	FAILS(jnl_mkdir(f->j, "d", 5, &d2, &s, &e), ERR_EXISTS);
	assert_int_equal(d2, d);
	x = new_written(f->j, "d/x", 1, NULL);
	FAILS(jnl_rmdir(f->j, d, &s, &e), ERR_NOTEMPTY);
	OK(jnl_unlink(f->j, x, &s, &e));
	assert_int_equal(s, 0);
	OK(jnl_rmdir(f->j, d, &s, &e));
	assert_int_equal(s, 0);             /* the folder never existed */
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
	OK(jnl_mkdir(f->j, "d", 5, &d2, &s, &e));
	assert_int_not_equal(d2, d);        /* fids are never reused */

	/* A child renamed out of a new directory still needs the folder: the
	 * mkdir is not cancelled. */
	OK(jnl_mkdir(f->j, "m", 5, &d, &s, &e));
	x = new_written(f->j, "m/x", 1, NULL);
	OK(jnl_rename(f->j, x, "y", 0, &s, &e));
	OK(jnl_rmdir(f->j, d, &s, &e));
	assert_true(s > 0);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 1 + 4);

	/* Symlinks: created with their target, cancelled like files. */
	OK(jnl_symlink(f->j, "l", "target/path", 9, &x, &s, &e));
	{
		struct jnl_op op;
		struct jnl_file jf;

		OK(jnl_file_get(f->j, x, &jf, &e));
		assert_int_equal(jf.type, JNL_SYMLINK);
		assert_string_equal(jf.target, "target/path");
		jnl_file_release(&jf);
		(void)op;
	}
	OK(jnl_unlink(f->j, x, &s, &e));
	assert_int_equal(s, 0);
}

static void test_order_unrelated_parallel(void **state)
{
	struct fx *f = *state;
	uint64_t seqs[8], cl[8], s[3];
	size_t n;

	new_written(f->j, "a", 1, &s[0]);
	new_written(f->j, "b", 1, &s[1]);
	new_written(f->j, "dir/c", 1, &s[2]);
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(seqs[i], s[i]);   /* journal order */
	for (int i = 0; i < 3; i++)
		complete_seq(f->j, seqs, cl, n, s[i]);
}

static void test_order_directory_tree(void **state)
{
	struct fx *f = *state;
	struct err e;
	uint64_t seqs[16], cl[16], d, s1, s2, s3, s4, s5, s6;
	size_t n;

	OK(jnl_mkdir(f->j, "d", 0, &d, &s1, &e));
	new_written(f->j, "d/a", 1, &s2);
	new_written(f->j, "d/b", 1, &s3);
	OK(jnl_mkdir(f->j, "d/e", 0, &d, &s4, &e));
	new_written(f->j, "d/e/f", 1, &s5);
	new_written(f->j, "z", 1, &s6);
	n = claim_all(f->j, seqs, cl, 16);
	assert_int_equal(n, 2);
	assert_int_equal(seqs[0], s1);
	assert_int_equal(seqs[1], s6);
	complete_seq(f->j, seqs, cl, n, s1);
	complete_seq(f->j, seqs, cl, n, s6);
	n = claim_all(f->j, seqs, cl, 16);
	assert_int_equal(n, 3);
	assert_true(has_seq(seqs, n, s2) && has_seq(seqs, n, s3) &&
		    has_seq(seqs, n, s4));
	complete_seq(f->j, seqs, cl, n, s4);
	{
		uint64_t seqs2[4], cl2[4];
		size_t n2 = claim_all(f->j, seqs2, cl2, 4);

		assert_int_equal(n2, 1);
		assert_int_equal(seqs2[0], s5);
		complete_seq(f->j, seqs2, cl2, n2, s5);
	}
	complete_seq(f->j, seqs, cl, n, s2);
	complete_seq(f->j, seqs, cl, n, s3);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
}

static void test_order_rename_chain(void **state)
{
	struct fx *f = *state;
	struct err e;
	uint64_t seqs[8], cl[8], a, b, s1, s2, s3, x;
	size_t n;

	a = remote_file(f->j, "a", "ga");
	b = remote_file(f->j, "b", "gb");
	/* swap a and b through t */
	OK(jnl_rename(f->j, a, "t", 0, &s1, &e));
	OK(jnl_rename(f->j, b, "a", 0, &s2, &e));
	OK(jnl_rename(f->j, a, "b", 0, &s3, &e));
	OK(jnl_file_lookup(f->j, "a", &x, &e));
	assert_int_equal(x, b);
	OK(jnl_file_lookup(f->j, "b", &x, &e));
	assert_int_equal(x, a);
	OK(jnl_check(f->j, &e));
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], s1);
	complete_seq(f->j, seqs, cl, n, s1);
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], s2);
	complete_seq(f->j, seqs, cl, n, s2);
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], s3);
	complete_seq(f->j, seqs, cl, n, s3);

	/* Unlink then create at the same path: the new write waits. */
	OK(jnl_unlink(f->j, b, &s1, &e));
	new_written(f->j, "a", 1, &s2);
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], s1);
	complete_seq(f->j, seqs, cl, n, s1);
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], s2);
	complete_seq(f->j, seqs, cl, n, s2);
}

static void test_rename_directory(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct err e;
	uint64_t seqs[8], cl[8], d, x, y, z, s1, s2, s3, s4;
	size_t n;

	OK(jnl_mkdir(f->j, "d", 0, &d, &s1, &e));
	x = new_written(f->j, "d/x", 1, &s2);
	OK(jnl_rename(f->j, d, "e", 0, &s3, &e));
	OK(jnl_file_lookup(f->j, "e/x", &y, &e));
	assert_int_equal(y, x);
	FAILS(jnl_file_lookup(f->j, "d/x", &y, &e), ERR_NOTFOUND);
	OK(jnl_mkdir(f->j, "e/sub", 0, &y, &s4, &e));
	FAILS(jnl_rename(f->j, d, "e/sub/z", 0, &z, &e), ERR_INVAL);
	FAILS(jnl_rename(f->j, x, "e/sub", 0, &z, &e), ERR_EXISTS);
	n = claim_all(f->j, seqs, cl, 8);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], s1);
	complete_seq(f->j, seqs, cl, n, s1);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s2);
	assert_string_equal(op.path, "d/x");   /* where it was written */
	{
		struct jnl_op op2;

		/* the rename waits for the write below d, mkdir e/sub for it */
		assert_int_equal(jnl_claim_next(f->j, &op2, &e), 0);
	}
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s3);
	assert_string_equal(op.path, "d");
	assert_string_equal(op.path2, "e");
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s4);
	OK(jnl_complete(f->j, op.seq, op.claim, "", &e));
	jnl_op_release(&op);
	/* Renaming to the current path is a no-op. */
	OK(jnl_rename(f->j, d, "e", 0, &s1, &e));
	assert_int_equal(s1, 0);
}

static void test_rename_replace(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct jnl_file jf;
	struct err e;
	char **names = NULL;
	size_t n = 0;
	uint64_t a, b, c, s, x;

	a = remote_file(f->j, "a", "ga");
	b = remote_file(f->j, "b", "gb");
	OK(jnl_file_set_cache(f->j, b, "cb", &e));
	FAILS(jnl_rename(f->j, a, "b", 0, &s, &e), ERR_EXISTS);
	OK(jnl_rename(f->j, a, "b", JNL_RENAME_REPLACE, &s, &e));
	assert_true(s > 0);
	OK(jnl_file_lookup(f->j, "b", &x, &e));
	assert_int_equal(x, a);
	OK(jnl_file_get(f->j, b, &jf, &e));
	assert_null(jf.path);
	jnl_file_release(&jf);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 1); /* no unlink op */
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.kind, JNL_OP_RENAME);
	assert_string_equal(op.base, "ga");
	assert_string_equal(op.base2, "gb");   /* overwrite guarded */
	OK(jnl_complete(f->j, op.seq, op.claim, "gnew", &e));
	jnl_op_release(&op);
	OK(jnl_file_get(f->j, a, &jf, &e));
	assert_string_equal(jf.base, "gnew");
	jnl_file_release(&jf);
	OK(jnl_gc(f->j, &names, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "cb");
	jnl_names_free(names, n);

	/* Replacing a target that never reached the remote: its ops vanish
	 * and the rename carries no replaced file. */
	c = new_written(f->j, "c", 1, NULL);
	OK(jnl_rename(f->j, a, "c", JNL_RENAME_REPLACE, &s, &e));
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 1);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_null(op.base2);
	assert_string_equal(op.path2, "c");
	OK(jnl_complete(f->j, op.seq, op.claim, "g2", &e));
	jnl_op_release(&op);
	(void)c;
	/* A directory over a non-empty one / a file over a directory. */
	OK(jnl_mkdir(f->j, "d1", 0, &a, &s, &e));
	OK(jnl_mkdir(f->j, "d2", 0, &b, &s, &e));
	new_written(f->j, "d2/f", 1, NULL);
	FAILS(jnl_rename(f->j, a, "d2", JNL_RENAME_REPLACE, &s, &e),
	      ERR_NOTEMPTY);
	OK(jnl_file_lookup(f->j, "c", &x, &e));
	FAILS(jnl_rename(f->j, x, "d1", JNL_RENAME_REPLACE, &s, &e), ERR_INVAL);
}

static void test_setattr_folding(void **state)
{
	struct fx *f = *state;
	struct jnl_op *v = NULL;
	struct err e;
	uint64_t a, b, s1, s, sw;
	size_t n;

	a = remote_file(f->j, "a", "g0");
	OK(jnl_setattr(f->j, a, 100, &s1, &e));
	assert_true(s1 > 0);
	OK(jnl_setattr(f->j, a, 200, &s, &e));
	assert_int_equal(s, s1);
	b = new_written(f->j, "b", 1, &sw);
	OK(jnl_setattr(f->j, b, 300, &s, &e));
	assert_int_equal(s, sw);
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 2);
	assert_int_equal(v[0].kind, JNL_OP_SETATTR);
	assert_int_equal(v[0].mtime_ns, 200);
	assert_int_equal(v[1].kind, JNL_OP_WRITE);
	assert_int_equal(v[1].mtime_ns, 300);
	jnl_ops_free(v, n);
	/* A later write absorbs a pending setattr. */
	OK(jnl_write(f->j, a, 9, 400, 0, &s, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 2);
	assert_int_equal(v[0].kind, JNL_OP_WRITE);
	assert_int_equal(v[1].kind, JNL_OP_WRITE);
	jnl_ops_free(v, n);
}

static void test_fail_retry_resolve(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, *v = NULL;
	struct err e, cause;
	uint64_t d, x, q, y, s1, s2, s3, s4;
	size_t n;

	OK(jnl_mkdir(f->j, "d", 0, &d, &s1, &e));
	x = new_written(f->j, "d/x", 1, &s2);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	err_set(&cause, ERR_PERM, "forbidden by policy");
	OK(jnl_fail(f->j, op.seq, op.claim, &cause, &e));
	FAILS(jnl_complete(f->j, op.seq, op.claim, "g", &e), ERR_CANCELED);
	jnl_op_release(&op);
	FAILS(jnl_wait_fid(f->j, d, s1, 0, 0, &e), ERR_PERM);
	assert_non_null(strstr(e.msg, "d: forbidden by policy"));
	/* d/x is held back by the failed mkdir: its wait fails at once. */
	FAILS(jnl_wait_fid(f->j, x, s2, 5000, 0, &e), ERR_PERM);
	assert_non_null(strstr(e.msg, "d/x: waits for d"));
	FAILS(jnl_wait_all(f->j, s2, 5000, JNL_WAIT_SETTLE, &e), ERR_PERM);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	OK(jnl_list_ops(f->j, JNL_MASK(JNL_FAILED), 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].err_code, ERR_PERM);
	assert_string_equal(v[0].err_msg, "forbidden by policy");
	jnl_ops_free(v, n);
	FAILS(jnl_retry(f->j, s2, &e), ERR_INVAL);
	FAILS(jnl_resolve(f->j, s2, &e), ERR_INVAL);
	OK(jnl_retry(f->j, s1, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	assert_int_equal(op.attempts, 2);
	assert_int_equal(op.err_code, 0);
	OK(jnl_complete(f->j, op.seq, op.claim, "", &e));
	jnl_op_release(&op);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s2);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
	OK(jnl_wait_fid(f->j, x, s2, 0, 0, &e));

	/* Resolving (giving up on) a failed op frees what it held back. */
	OK(jnl_mkdir(f->j, "q", 0, &q, &s3, &e));
	y = new_written(f->j, "q/y", 1, &s4);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_fail(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	OK(jnl_resolve(f->j, s3, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s4);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
	OK(jnl_wait_fid(f->j, y, s4, 0, 0, &e));
}

static void test_conflict(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, *v = NULL;
	struct jnl_file jf;
	struct jnl_progress p;
	struct err e;
	uint64_t a, s1, s2;
	size_t n;

	a = remote_file(f->j, "a", "g0");
	OK(jnl_write(f->j, a, 3, 1, 0, &s1, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	FAILS(jnl_conflict(f->j, op.seq, op.claim, "", NULL, &e), ERR_INVAL);
	OK(jnl_conflict(f->j, op.seq, op.claim, "a.conflict-123", "g5", &e));
	jnl_op_release(&op);
	FAILS(jnl_wait_fid(f->j, a, s1, 0, 0, &e), ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "a.conflict-123"));
	OK(jnl_file_get(f->j, a, &jf, &e));
	assert_int_equal(jf.dirty, 0);
	assert_string_equal(jf.base, "g5");
	jnl_file_release(&jf);
	OK(jnl_progress(f->j, s1, &p, &e));
	assert_int_equal(p.ops_left, 0);
	assert_int_equal(p.conflicts, 1);
	/* A conflict does not hold later ops back. */
	OK(jnl_write(f->j, a, 4, 2, 0, &s2, &e));
	assert_true(s2 > s1);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s2);
	assert_string_equal(op.base, "g5");
	OK(jnl_complete(f->j, op.seq, op.claim, "g6", &e));
	jnl_op_release(&op);
	OK(jnl_list_ops(f->j, JNL_MASK(JNL_CONFLICT), 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(v[0].conflict_name, "a.conflict-123");
	assert_int_equal(v[0].err_code, ERR_CONFLICT);
	jnl_ops_free(v, n);
	OK(jnl_resolve(f->j, s1, &e));
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 0);
	OK(jnl_wait_fid(f->j, a, s2, 0, 0, &e));
}

struct waiter {
	struct jnl *j;
	uint64_t fid, seq;
	int64_t timeout;
	unsigned flags;
	int rc;
	struct err e;
	struct jnl_op op;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	if (w->fid)
		w->rc = jnl_wait_fid(w->j, w->fid, w->seq, w->timeout, w->flags,
				     &w->e);
	else
		w->rc = jnl_wait_all(w->j, w->seq, w->timeout, w->flags, &w->e);
	return NULL;
}

static void *claim_thread(void *arg)
{
	struct waiter *w = arg;

	w->rc = jnl_claim_wait(w->j, w->timeout, &w->op, &w->e);
	return NULL;
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void test_wait_with_threads(void **state)
{
	struct fx *f = *state;
	struct waiter w1, w2;
	pthread_t t1, t2;
	struct jnl_op op;
	struct err e;
	uint64_t a, s, s2;

	a = new_written(f->j, "a", 1, &s);
	memset(&w1, 0, sizeof(w1));
	w1.j = f->j;
	w1.fid = a;
	w1.seq = s;
	w1.timeout = -1;
	memset(&w2, 0, sizeof(w2));
	w2.j = f->j;
	w2.seq = s;
	w2.timeout = 10000;
	assert_int_equal(pthread_create(&t1, NULL, wait_thread, &w1), 0);
	assert_int_equal(pthread_create(&t2, NULL, wait_thread, &w2), 0);
	msleep(50);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	msleep(20);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_int_equal(w1.rc, 0);
	assert_int_equal(w2.rc, 0);

	/* A failure wakes the waiter with the op's error. */
	OK(jnl_write(f->j, a, 1, 1, 0, &s2, &e));
	w1.seq = s2;
	assert_int_equal(pthread_create(&t1, NULL, wait_thread, &w1), 0);
	msleep(30);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	{
		struct err cause;

		err_set(&cause, ERR_QUOTA, "storage quota");
		OK(jnl_fail(f->j, op.seq, op.claim, &cause, &e));
	}
	jnl_op_release(&op);
	pthread_join(t1, NULL);
	assert_int_equal(w1.rc, -1);
	assert_int_equal(w1.e.code, ERR_QUOTA);
	assert_int_equal(err_to_errno(&w1.e), -EDQUOT);
	OK(jnl_resolve(f->j, s2, &e));

	/* Timeout. */
	OK(jnl_write(f->j, a, 1, 1, 0, &s2, &e));
	FAILS(jnl_wait_fid(f->j, a, s2, 30, 0, &e), ERR_TIMEOUT);
	/* Waiting for seqs before this op returns at once. */
	OK(jnl_wait_fid(f->j, a, s2 - 1, 0, 0, &e));

	/* shutdown wakes everyone with ERR_CANCELED. */
	w1.seq = s2;
	w1.timeout = -1;
	w2.timeout = -1;
	w2.seq = s2;
	assert_int_equal(pthread_create(&t1, NULL, wait_thread, &w1), 0);
	assert_int_equal(pthread_create(&t2, NULL, claim_thread, &w2), 0);
	msleep(30);
	/* the claimer may have taken the op before sleeping: fine either way */
	jnl_shutdown(f->j);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_int_equal(w1.rc, -1);
	assert_int_equal(w1.e.code, ERR_CANCELED);
	if (w2.rc == 1)
		jnl_op_release(&w2.op);
	else
		assert_int_equal(w2.e.code, ERR_CANCELED);
	FAILS(jnl_claim_next(f->j, &op, &e), ERR_CANCELED);
	FAILS(jnl_wait_all(f->j, s2, 0, 0, &e), ERR_CANCELED);
}

static void test_claim_wait_thread(void **state)
{
	struct fx *f = *state;
	struct waiter w;
	pthread_t t;
	struct jnl_op op;
	struct err e;
	uint64_t s;

	/* Nothing to do: returns 0 after the timeout. */
	assert_int_equal(jnl_claim_wait(f->j, 20, &op, &e), 0);
	memset(&w, 0, sizeof(w));
	w.j = f->j;
	w.timeout = 10000;
	assert_int_equal(pthread_create(&t, NULL, claim_thread, &w), 0);
	msleep(30);
	new_written(f->j, "a", 1, &s);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, 1);
	assert_int_equal(w.op.seq, s);
	OK(jnl_complete(f->j, w.op.seq, w.op.claim, "g", &e));
	jnl_op_release(&w.op);
	/* A claimer waiting behind a dependency wakes when it completes. */
	{
		uint64_t d, x;

		OK(jnl_mkdir(f->j, "d", 0, &d, &s, &e));
		x = new_written(f->j, "d/x", 1, NULL);
		assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
		assert_int_equal(op.seq, s);
		assert_int_equal(pthread_create(&t, NULL, claim_thread, &w), 0);
		msleep(30);
		OK(jnl_complete(f->j, op.seq, op.claim, "", &e));
		jnl_op_release(&op);
		pthread_join(t, NULL);
		assert_int_equal(w.rc, 1);
		assert_int_equal(w.op.fid, x);
		OK(jnl_complete(f->j, w.op.seq, w.op.claim, "g", &e));
		jnl_op_release(&w.op);
	}
}

/* jnl_wake_claimers: sleeping claimers leave at once with 0 and nothing
 * claimed; later waits are not affected (no sticky flag). */
static void test_wake_claimers(void **state)
{
	struct fx *f = *state;
	struct waiter w1, w2;
	pthread_t t1, t2;
	struct jnl_op op;
	struct err e;
	uint64_t s, fid;
	double t0, dt;

	memset(&w1, 0, sizeof(w1));
	w1.j = f->j;
	w1.timeout = -1;
	memset(&w2, 0, sizeof(w2));
	w2.j = f->j;
	w2.timeout = 60000;
	assert_int_equal(pthread_create(&t1, NULL, claim_thread, &w1), 0);
	assert_int_equal(pthread_create(&t2, NULL, claim_thread, &w2), 0);
	msleep(100);
	t0 = now_s();
	jnl_wake_claimers(f->j);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	dt = now_s() - t0;
	assert_int_equal(w1.rc, 0);
	assert_int_equal(w2.rc, 0);
	assert_int_equal(w1.op.seq, 0);
	assert_int_equal(w2.op.seq, 0);
	assert_true(dt < 2.0);
	print_message("two claimers woken in %.1f ms\n", dt * 1000);

	/* Not sticky: a later wait runs its full timeout... */
	t0 = now_s();
	assert_int_equal(jnl_claim_wait(f->j, 50, &op, &e), 0);
	assert_true(now_s() - t0 >= 0.045);
	/* ...and one waiting forever is woken by an append and claims it. */
	memset(&w1, 0, sizeof(w1));
	w1.j = f->j;
	w1.timeout = -1;
	assert_int_equal(pthread_create(&t1, NULL, claim_thread, &w1), 0);
	msleep(30);
	fid = new_written(f->j, "a", 1, &s);
	pthread_join(t1, NULL);
	assert_int_equal(w1.rc, 1);
	assert_int_equal(w1.op.seq, s);
	OK(jnl_complete(f->j, w1.op.seq, w1.op.claim, "g", &e));
	jnl_op_release(&w1.op);

	/* Woken claimers leave the op they could have claimed pending; a wake
	 * with nobody waiting changes nothing; NULL is a no-op. */
	jnl_wake_claimers(f->j);
	jnl_wake_claimers(NULL);
	OK(jnl_write(f->j, fid, 2, 2, 0, &s, &e));
	assert_int_equal(jnl_claim_wait(f->j, 1000, &op, &e), 1);
	assert_int_equal(op.seq, s);
	OK(jnl_complete(f->j, op.seq, op.claim, "g2", &e));
	jnl_op_release(&op);

	/* jnl_shutdown still cancels, and wake after it is harmless. */
	jnl_shutdown(f->j);
	jnl_wake_claimers(f->j);
	FAILS(jnl_claim_wait(f->j, 10, &op, &e), ERR_CANCELED);
}

static void test_claim_wait_not_before(void **state)
{
	struct fx *f = *state;
	struct jnl_op op;
	struct err e;
	uint64_t fid, s;
	double t0, dt;

	jnl_close(f->j);
	f->opts.clock = NULL;     /* the real clock: claim_wait sleeps on it */
	fx_open(f, NULL);
	OK(jnl_file_new(f->j, "a", JNL_FILE, NULL, NULL, 0, 0, &fid, &e));
	OK(jnl_write(f->j, fid, 1, 1, 150, &s, &e));
	t0 = now_s();
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	/* Nobody signals: it wakes by itself when the writeback delay ends. */
	assert_int_equal(jnl_claim_wait(f->j, 5000, &op, &e), 1);
	dt = now_s() - t0;
	assert_int_equal(op.seq, s);
	assert_true(dt >= 0.12);
	assert_true(dt < 4.0);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
}

static void test_wait_all_settle(void **state)
{
	struct fx *f = *state;
	struct jnl_op o1, o2;
	struct err e, cause;
	uint64_t s1, s2;

	new_written(f->j, "a", 1, &s1);
	new_written(f->j, "b", 1, &s2);
	assert_int_equal(jnl_claim_next(f->j, &o1, &e), 1);
	assert_int_equal(jnl_claim_next(f->j, &o2, &e), 1);
	err_set(&cause, ERR_NET, "connection reset");
	OK(jnl_fail(f->j, o1.seq, o1.claim, &cause, &e));
	FAILS(jnl_wait_all(f->j, s2, 0, 0, &e), ERR_NET);
	/* With SETTLE it keeps waiting while b can still finish. */
	FAILS(jnl_wait_all(f->j, s2, 40, JNL_WAIT_SETTLE, &e), ERR_TIMEOUT);
	OK(jnl_complete(f->j, o2.seq, o2.claim, "g", &e));
	FAILS(jnl_wait_all(f->j, s2, 40, JNL_WAIT_SETTLE, &e), ERR_NET);
	assert_non_null(strstr(e.msg, "a: connection reset"));
	jnl_op_release(&o1);
	jnl_op_release(&o2);
}

static void test_upload_session_survives_restart(void **state)
{
	struct fx *f = *state;
	static const unsigned char md5[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
					       11, 12, 13, 14, 15, 16 };
	const char *uri = "http://127.0.0.1:1/upload?upload_id=SECRET123";
	struct jnl_recovery rec;
	struct jnl_op op, *v = NULL;
	struct err e;
	uint64_t a, s, ver;
	size_t n;

	a = new_written(f->j, "a", 1000, &s);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	ver = op.version;
	FAILS(jnl_upload_progress(f->j, op.seq, op.claim, 10, &e), ERR_INVAL);
	FAILS(jnl_upload_begin(f->j, op.seq, op.claim, "", 1000, ver, 1, md5,
			       &e), ERR_INVAL);
	OK(jnl_upload_begin(f->j, op.seq, op.claim, uri, 1000, ver, 0xdeadbeef,
			    md5, &e));
	OK(jnl_upload_progress(f->j, op.seq, op.claim, 256, &e));
	OK(jnl_upload_progress(f->j, op.seq, op.claim, 512, &e));
	FAILS(jnl_upload_progress(f->j, op.seq, op.claim, 2000, &e), ERR_INVAL);
	assert_null(strstr(e.msg, "SECRET"));
	jnl_op_release(&op);
	/* The daemon dies here (the claim is never completed). */
	fx_reopen(f, &rec);
	assert_int_equal(rec.requeued, 1);
	assert_int_equal(rec.pending, 1);
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_null(v[0].session);          /* status never shows it */
	assert_int_equal(v[0].persisted, 512);
	jnl_ops_free(v, n);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s);
	assert_int_equal(op.attempts, 2);
	assert_string_equal(op.session, uri);
	assert_int_equal(op.total, 1000);
	assert_int_equal(op.persisted, 512);
	assert_int_equal(op.sess_version, ver);
	assert_int_equal(op.version, ver);  /* unchanged: resume */
	assert_int_equal(op.has_sums, 1);
	assert_int_equal(op.crc32c, 0xdeadbeef);
	assert_memory_equal(op.md5, md5, 16);
	/* The content changed: the worker resets and starts again. */
	OK(jnl_upload_reset(f->j, op.seq, op.claim, &e));
	OK(jnl_retry_later(f->j, op.seq, op.claim, 0, NULL, &e));
	jnl_op_release(&op);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_null(op.session);
	assert_int_equal(op.persisted, 0);
	assert_int_equal(op.has_sums, 0);
	OK(jnl_complete(f->j, op.seq, op.claim, "g", &e));
	jnl_op_release(&op);
	/* upload_begin on something that is not a write. */
	OK(jnl_rename(f->j, a, "b", 0, &s, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	FAILS(jnl_upload_begin(f->j, op.seq, op.claim, uri, 1, 1, 1, md5, &e),
	      ERR_INVAL);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
}

static void test_lease_expiry(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, op2;
	struct err e;
	uint64_t n, s;

	jnl_close(f->j);
	f->opts.lease_ms = 1000;
	fx_open(f, NULL);
	f->now = 100;
	new_written(f->j, "a", 1, &s);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	f->now = 900;
	OK(jnl_renew(f->j, op.seq, op.claim, &e));   /* until 1900 */
	f->now = 1500;
	OK(jnl_expire_leases(f->j, &n, &e));
	assert_int_equal(n, 0);
	f->now = 2000;
	OK(jnl_expire_leases(f->j, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(jnl_claim_next(f->j, &op2, &e), 1);
	assert_int_equal(op2.seq, op.seq);
	assert_int_not_equal(op2.claim, op.claim);
	FAILS(jnl_complete(f->j, op.seq, op.claim, "g", &e), ERR_CANCELED);
	FAILS(jnl_renew(f->j, op.seq, op.claim, &e), ERR_CANCELED);
	FAILS(jnl_upload_progress(f->j, op.seq, op.claim, 0, &e), ERR_CANCELED);
	OK(jnl_complete(f->j, op2.seq, op2.claim, "g", &e));
	jnl_op_release(&op);
	jnl_op_release(&op2);
}

static void test_recovery_redirty(void **state)
{
	struct fx *f = *state;
	struct jnl_recovery rec;
	struct jnl_op op, *v = NULL;
	struct jnl_file *fv = NULL;
	struct err e;
	uint64_t a, b, c, s;
	size_t n;

	OK(jnl_file_new(f->j, "a", JNL_FILE, "ca", NULL, 0, 0, &a, &e));
	b = remote_file(f->j, "b", "g0");
	OK(jnl_file_dirty(f->j, b, NULL, &e));
	c = new_written(f->j, "c", 1, &s);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_fail(f->j, op.seq, op.claim, NULL, &e));   /* still covered */
	jnl_op_release(&op);
	OK(jnl_dirty_files(f->j, &fv, &n, &e));
	assert_int_equal(n, 3);
	assert_string_equal(fv[0].path, "a");
	jnl_files_free(fv, n);
	fx_reopen(f, &rec);
	assert_int_equal(rec.redirtied, 2);
	assert_int_equal(rec.failed, 1);
	assert_int_equal(rec.pending, 2);
	OK(jnl_list_ops(f->j, JNL_MASK(JNL_PENDING), 0, &v, &n, &e));
	assert_int_equal(n, 2);
	assert_int_equal(v[0].fid, a);
	assert_int_equal(v[0].kind, JNL_OP_WRITE);
	assert_int_equal(v[1].fid, b);
	assert_string_equal(v[1].base, "g0");
	jnl_ops_free(v, n);
	(void)c;
}

static void test_stats_and_progress(void **state)
{
	struct fx *f = *state;
	static const unsigned char md5[16] = { 0 };
	struct jnl_op ob, oc, od;
	struct jnl_stats st;
	struct jnl_progress p;
	struct err e;
	uint64_t d, s;

	new_written(f->j, "a", 100, NULL);
	new_written(f->j, "b", 200, NULL);
	new_written(f->j, "c", 300, NULL);
	d = remote_file(f->j, "d", "g0");
	OK(jnl_write(f->j, d, 400, 1, 0, &s, &e));
	/* leave a pending; b in flight; c failed; d in conflict */
	{
		struct jnl_op oa;

		assert_int_equal(jnl_claim_next(f->j, &oa, &e), 1);
		OK(jnl_retry_later(f->j, oa.seq, oa.claim, 100000, NULL, &e));
		jnl_op_release(&oa);
	}
	assert_int_equal(jnl_claim_next(f->j, &ob, &e), 1);
	assert_int_equal(jnl_claim_next(f->j, &oc, &e), 1);
	assert_int_equal(jnl_claim_next(f->j, &od, &e), 1);
	OK(jnl_upload_begin(f->j, ob.seq, ob.claim, "u", 200, ob.version, 0, md5,
			    &e));
	OK(jnl_upload_progress(f->j, ob.seq, ob.claim, 50, &e));
	OK(jnl_fail(f->j, oc.seq, oc.claim, NULL, &e));
	OK(jnl_conflict(f->j, od.seq, od.claim, "d.conflict", NULL, &e));
	OK(jnl_stats(f->j, &st, &e));
	assert_int_equal(st.pending_ops, 1);
	assert_int_equal(st.pending_bytes, 100);
	assert_int_equal(st.retrying_ops, 1);
	assert_int_equal(st.inflight_ops, 1);
	assert_int_equal(st.inflight_bytes, 200);
	assert_int_equal(st.inflight_persisted, 50);
	assert_int_equal(st.failed_ops, 1);
	assert_int_equal(st.conflict_ops, 1);
	assert_int_equal(st.dirty_files, 3);
	assert_int_equal(st.last_seq, s);
	OK(jnl_progress(f->j, s, &p, &e));
	assert_int_equal(p.ops_left, 3);
	assert_int_equal(p.bytes_left, 100 + 150 + 300);
	assert_int_equal(p.failed, 1);
	assert_int_equal(p.conflicts, 1);
	OK(jnl_progress(f->j, 1, &p, &e));
	assert_int_equal(p.ops_left, 1);
	assert_int_equal(count_ops(f->j, JNL_MASK(JNL_IN_PROGRESS) |
				   JNL_MASK(JNL_PENDING)), 2);
	{
		struct jnl_op *v = NULL;
		size_t n;

		OK(jnl_list_ops(f->j, JNL_MASK_ALL, 2, &v, &n, &e));
		assert_int_equal(n, 2);     /* the limit */
		jnl_ops_free(v, n);
	}
	OK(jnl_complete(f->j, ob.seq, ob.claim, "g", &e));
	OK(jnl_progress(f->j, s, &p, &e));
	assert_int_equal(p.committed_ops, 1);
	assert_int_equal(p.committed_bytes, 200);
	jnl_op_release(&ob);
	jnl_op_release(&oc);
	jnl_op_release(&od);
}

static void test_children_and_removed(void **state)
{
	struct fx *f = *state;
	struct jnl_file *v = NULL;
	struct err e;
	char **names = NULL;
	size_t n;
	uint64_t d, a, b, s;

	OK(jnl_mkdir(f->j, "d", 0, &d, &s, &e));
	a = new_written(f->j, "d/a", 1, NULL);
	b = remote_file(f->j, "d/b", "gb");
	new_written(f->j, "d/c/deep", 1, NULL);
	OK(jnl_unlink(f->j, b, &s, &e));
	OK(jnl_children(f->j, "d", &v, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(v[0].path, "d/a");
	jnl_files_free(v, n);
	OK(jnl_removed_children(f->j, "d", &names, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "b");
	jnl_names_free(names, n);
	OK(jnl_children(f->j, "", &v, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(v[0].path, "d");
	jnl_files_free(v, n);
	OK(jnl_rename(f->j, a, "z", 0, &s, &e));
	OK(jnl_removed_children(f->j, "d", &names, &n, &e));
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "a");
	assert_string_equal(names[1], "b");
	jnl_names_free(names, n);
	OK(jnl_children(f->j, "", &v, &n, &e));
	assert_int_equal(n, 2);
	assert_string_equal(v[1].path, "z");
	jnl_files_free(v, n);
	/* A new file at the removed name shows again. */
	new_written(f->j, "d/b", 1, NULL);
	OK(jnl_removed_children(f->j, "d", &names, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "a");
	jnl_names_free(names, n);
	OK(jnl_removed_children(f->j, "", &names, &n, &e));
	assert_int_equal(n, 0);
	FAILS(jnl_children(f->j, "/x", &v, &n, &e), ERR_INVAL);
}

static void test_entries(void **state)
{
	struct fx *f = *state;
	struct jnl_entry in[3], *v = NULL, one;
	struct err e;
	int64_t fetched;
	size_t n;
	int complete;
	char *val = NULL;

	FAILS(jnl_dir_get(f->j, "x", &v, &n, &fetched, &complete, &e),
	      ERR_NOTFOUND);
	memset(in, 0, sizeof(in));
	in[0] = (struct jnl_entry){ "b", JNL_FILE, 10, 5, "g1", 3 };
	in[1] = (struct jnl_entry){ "a", JNL_DIR, 0, 6, NULL, 0 };
	OK(jnl_dir_put(f->j, "x", in, 2, 1000, &e));
	OK(jnl_dir_get(f->j, "x", &v, &n, &fetched, &complete, &e));
	assert_int_equal(n, 2);
	assert_int_equal(complete, 1);
	assert_int_equal(fetched, 1000);
	assert_string_equal(v[0].name, "a");
	assert_int_equal(v[0].type, JNL_DIR);
	assert_null(v[0].remote);
	assert_string_equal(v[1].name, "b");
	assert_int_equal(v[1].size, 10);
	assert_int_equal(v[1].mtime_ns, 5);
	assert_string_equal(v[1].remote, "g1");
	assert_int_equal(v[1].flags, 3);
	assert_int_equal(v[0].flags, 0);
	jnl_entries_free(v, n);
	/* A duplicate name is refused and the old listing stays. */
	in[2] = (struct jnl_entry){ "b", JNL_FILE, 1, 1, NULL, 0 };
	FAILS(jnl_dir_put(f->j, "x", in, 3, 2000, &e), ERR_INVAL);
	in[2] = (struct jnl_entry){ "a/b", JNL_FILE, 1, 1, NULL, 0 };
	FAILS(jnl_dir_put(f->j, "x", in, 3, 2000, &e), ERR_INVAL);
	OK(jnl_dir_get(f->j, "x", &v, &n, &fetched, &complete, &e));
	assert_int_equal(n, 2);
	assert_int_equal(fetched, 1000);
	jnl_entries_free(v, n);
	OK(jnl_dir_put(f->j, "x", &in[0], 1, 3000, &e));
	OK(jnl_dir_invalidate(f->j, "x", &e));
	OK(jnl_dir_get(f->j, "x", &v, &n, &fetched, &complete, &e));
	assert_int_equal(n, 1);
	assert_int_equal(complete, 0);
	jnl_entries_free(v, n);
	one = (struct jnl_entry){ "c", JNL_SYMLINK, 3, 7, "g3", 2 };
	OK(jnl_entry_put(f->j, "x", &one, &e));
	OK(jnl_entry_get(f->j, "x", "c", &one, &e));
	assert_int_equal(one.type, JNL_SYMLINK);
	assert_string_equal(one.remote, "g3");
	assert_int_equal(one.flags, 2);
	jnl_entry_release(&one);
	OK(jnl_entry_del(f->j, "x", "c", &e));
	OK(jnl_entry_del(f->j, "x", "c", &e));
	FAILS(jnl_entry_get(f->j, "x", "c", &one, &e), ERR_NOTFOUND);
	/* Root, forget recursive. */
	OK(jnl_dir_put(f->j, "", in, 1, 1, &e));
	OK(jnl_dir_put(f->j, "x/y", in, 1, 1, &e));
	OK(jnl_dir_put(f->j, "xa", in, 1, 1, &e));
	OK(jnl_dir_forget(f->j, "x", &e));
	FAILS(jnl_dir_get(f->j, "x", &v, &n, &fetched, &complete, &e),
	      ERR_NOTFOUND);
	FAILS(jnl_dir_get(f->j, "x/y", &v, &n, &fetched, &complete, &e),
	      ERR_NOTFOUND);
	OK(jnl_dir_get(f->j, "xa", &v, &n, &fetched, &complete, &e));
	jnl_entries_free(v, n);
	OK(jnl_dir_get(f->j, "", &v, &n, &fetched, &complete, &e));
	assert_int_equal(n, 1);
	jnl_entries_free(v, n);
	/* Survives a reopen. */
	fx_reopen(f, NULL);
	OK(jnl_dir_get(f->j, "xa", &v, &n, &fetched, &complete, &e));
	assert_int_equal(n, 1);
	jnl_entries_free(v, n);
	OK(jnl_meta_get(f->j, "token", &val, &e));
	assert_null(val);
	OK(jnl_meta_set(f->j, "token", "abc", &e));
	OK(jnl_meta_set(f->j, "token", "def", &e));
	OK(jnl_meta_get(f->j, "token", &val, &e));
	assert_string_equal(val, "def");
	free(val);
	FAILS(jnl_meta_set(f->j, "", "x", &e), ERR_INVAL);
}

/* A journal of schema version 1 (entries without flags, as session 1
 * wrote them) is upgraded in place on open: its stored listings and ops
 * survive, their flags read 0, new flags are stored, and (version 3) its
 * entries are found by id. */
static void test_schema_upgrade_v1(void **state)
{
	struct fx *f = *state;
	struct jnl_entry in = { "doc.docx", JNL_FILE, 10, 5, "g1.0:id1", 0 }, one;
	struct err e;

	new_written(f->j, "a", 1, NULL);
	OK(jnl_dir_put(f->j, "d", &in, 1, 1000, &e));
	jnl_close(f->j);
	f->j = NULL;
	/* Turn it into what version 1 had. */
	sql_on_file(f->path, "DROP INDEX entries_id;"
		    "ALTER TABLE entries DROP COLUMN flags;"
		    "PRAGMA user_version=1");
	fx_open(f, NULL);
	assert_int_equal(count_ops(f->j, JNL_MASK_ALL), 1);
	memset(&one, 0, sizeof(one));
	OK(jnl_entry_get(f->j, "d", "doc.docx", &one, &e));
	assert_int_equal(one.flags, 0);
	assert_int_equal(one.size, 10);
	assert_string_equal(one.remote, "g1.0:id1");
	jnl_entry_release(&one);
	in.flags = 3;
	OK(jnl_entry_put(f->j, "d", &in, &e));
	OK(jnl_entry_get(f->j, "d", "doc.docx", &one, &e));
	assert_int_equal(one.flags, 3);
	jnl_entry_release(&one);
	OK(jnl_check(f->j, &e));
	/* Upgraded through version 3: the entry is found by its id. */
	{
		struct jnl_place *pl = NULL;
		size_t npl = 0;

		OK(jnl_entries_by_id(f->j, "id1", &pl, &npl, &e));
		assert_int_equal(npl, 1);
		assert_string_equal(pl[0].path, "d/doc.docx");
		jnl_places_free(pl, npl);
	}
	/* Reopening a version 3 journal upgrades nothing and keeps it. */
	fx_reopen(f, NULL);
	OK(jnl_entry_get(f->j, "d", "doc.docx", &one, &e));
	assert_int_equal(one.flags, 3);
	jnl_entry_release(&one);
}

/* A directory of 100,000 entries: stored and read back whole, sorted, and
 * fast enough for a remount to answer `ls` from it at once. */
static void test_entries_100k(void **state)
{
	struct fx *f = *state;
	enum { N = 100000 };
	struct jnl_entry *in, *v = NULL;
	struct err e;
	char (*names)[16];
	int64_t fetched;
	size_t n;
	int complete;
	double t0, tput, tget;

	in = calloc(N, sizeof(*in));
	names = calloc(N, sizeof(*names));
	assert_non_null(in);
	assert_non_null(names);
	for (int i = 0; i < N; i++) {
		/* reverse order: the listing must come back sorted anyway */
		snprintf(names[i], sizeof(names[i]), "img_%06d.jpg", N - 1 - i);
		in[i].name = names[i];
		in[i].type = JNL_FILE;
		in[i].size = (uint64_t)i;
		in[i].remote = "1700000000000000";
	}
	t0 = now_s();
	OK(jnl_dir_put(f->j, "train/class_1", in, N, 1, &e));
	tput = now_s() - t0;
	fx_reopen(f, NULL);       /* a remount */
	t0 = now_s();
	OK(jnl_dir_get(f->j, "train/class_1", &v, &n, &fetched, &complete, &e));
	tget = now_s() - t0;
	assert_int_equal(n, N);
	assert_int_equal(complete, 1);
	assert_string_equal(v[0].name, "img_000000.jpg");
	assert_string_equal(v[N - 1].name, "img_099999.jpg");
	assert_int_equal(v[N - 1].size, 0);
	jnl_entries_free(v, n);
	print_message("listing of 100000 entries: stored in %.2f s, read back "
		      "after reopen in %.2f s\n", tput, tget);
	free(in);
	free(names);
}

static void test_cache_map(void **state)
{
	struct fx *f = *state;
	struct jnl_cache_file *v = NULL;
	struct err e;
	uint64_t mo, ml, bytes, files, fid;
	size_t n;

#define MISSING(name, rem, off, len, eo, el) do { \
	OK(jnl_cache_missing(f->j, name, rem, off, len, &mo, &ml, &e)); \
	assert_int_equal(mo, eo); \
	assert_int_equal(ml, el); \
} while (0)
	MISSING("c1", "g1", 0, 100, 0, 100);
	OK(jnl_cache_add(f->j, "c1", "g1", 0, 50, &e));
	MISSING("c1", "g1", 0, 100, 50, 50);
	MISSING("c1", "g1", 10, 20, 30, 0);
	OK(jnl_cache_add(f->j, "c1", "g1", 60, 10, &e));
	MISSING("c1", "g1", 0, 100, 50, 10);
	MISSING("c1", "g1", 55, 45, 55, 5);
	MISSING("c1", "g1", 60, 40, 70, 30);
	MISSING("c1", "g1", 75, 5, 75, 5);
	OK(jnl_cache_add(f->j, "c1", "g1", 50, 10, &e));   /* joins both */
	MISSING("c1", "g1", 0, 100, 70, 30);
	OK(jnl_cache_usage(f->j, &bytes, &files, &e));
	assert_int_equal(bytes, 70);
	assert_int_equal(files, 1);
	OK(jnl_cache_add(f->j, "c1", "g1", 0, 10, &e));    /* already there */
	OK(jnl_cache_add(f->j, "c1", "g1", 65, 20, &e));   /* overlaps */
	OK(jnl_cache_add(f->j, "c1", "g1", 200, 10, &e));
	OK(jnl_cache_add(f->j, "c1", "g1", 90, 120, &e));  /* swallows 200 */
	OK(jnl_cache_usage(f->j, &bytes, &files, &e));
	assert_int_equal(bytes, 85 + 120);
	MISSING("c1", "g1", 0, 300, 85, 5);
	MISSING("c1", "g2", 0, 10, 0, 10);                 /* other version */
	OK(jnl_cache_add(f->j, "c1", "g2", 0, 10, &e));    /* resets */
	OK(jnl_cache_usage(f->j, &bytes, &files, &e));
	assert_int_equal(bytes, 10);
	OK(jnl_check(f->j, &e));
	/* LRU order follows access; dirty files are never listed. */
	f->now += 10;
	OK(jnl_cache_add(f->j, "c2", "h", 0, 5, &e));
	f->now += 10;
	OK(jnl_cache_add(f->j, "c3", NULL, 0, 5, &e));
	OK(jnl_cache_lru(f->j, 0, &v, &n, &e));
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "c1");
	assert_string_equal(v[2].name, "c3");
	assert_null(v[2].remote);
	jnl_cache_files_free(v, n);
	f->now += 10;
	MISSING("c1", "g2", 0, 20, 10, 10);                /* touches c1 */
	OK(jnl_cache_lru(f->j, 1, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "c2");
	jnl_cache_files_free(v, n);
	OK(jnl_file_new(f->j, "f", JNL_FILE, "c2", NULL, 0, 0, &fid, &e));
	OK(jnl_cache_lru(f->j, 0, &v, &n, &e));
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "c3");
	assert_string_equal(v[1].name, "c1");
	jnl_cache_files_free(v, n);
	OK(jnl_cache_drop(f->j, "c1", &e));
	OK(jnl_cache_usage(f->j, &bytes, &files, &e));
	assert_int_equal(files, 2);
	assert_int_equal(bytes, 10);
	FAILS(jnl_cache_add(f->j, "c1", "g", UINT64_MAX - 1, 10, &e), ERR_INVAL);
	OK(jnl_cache_add(f->j, "c1", "g", 5, 0, &e));
#undef MISSING
}

/* Access times noted by jnl_cache_missing are kept in memory and stored in
 * batches: the LRU order still sees every one (also past a batch and after
 * a reopen), and a late-stored access time never moves a file back. */
static void test_cache_touch_deferred(void **state)
{
	struct fx *f = *state;
	struct jnl_cache_file *v = NULL;
	struct err e;
	uint64_t mo, ml;
	size_t n, i;
	char name[32];

	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "c%03zu", i);
		f->now += 10;
		OK(jnl_cache_add(f->j, name, "g", 0, 10, &e));
	}
	/* Read them back in reverse: 300 touches, more than one batch. */
	for (i = 300; i > 0; i--) {
		snprintf(name, sizeof(name), "c%03zu", i - 1);
		f->now += 10;
		OK(jnl_cache_missing(f->j, name, "g", 0, 10, &mo, &ml, &e));
		assert_int_equal(ml, 0);
	}
	OK(jnl_cache_lru(f->j, 2, &v, &n, &e));
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "c299");
	assert_string_equal(v[1].name, "c298");
	jnl_cache_files_free(v, n);
	/* Pending at close: stored. */
	f->now += 10;
	OK(jnl_cache_missing(f->j, "c299", "g", 0, 10, &mo, &ml, &e));
	fx_reopen(f, NULL);
	OK(jnl_cache_lru(f->j, 1, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "c298");
	jnl_cache_files_free(v, n);
	/* A touch noted before a newer add does not move the file back. */
	f->now += 10;
	OK(jnl_cache_missing(f->j, "c298", "g", 0, 10, &mo, &ml, &e));
	f->now += 1000;
	OK(jnl_cache_add(f->j, "c298", "g", 10, 10, &e));
	OK(jnl_cache_lru(f->j, 0, &v, &n, &e));
	assert_int_equal(n, 300);
	assert_string_equal(v[n - 1].name, "c298");
	assert_int_equal(v[n - 1].atime_ms, f->now);
	jnl_cache_files_free(v, n);
	OK(jnl_check(f->j, &e));
}

static void test_check_detects_tampering(void **state)
{
	struct fx *f = *state;
	struct err e;
	uint64_t d, s;

	OK(jnl_mkdir(f->j, "d", 0, &d, &s, &e));
	new_written(f->j, "d/a", 1, NULL);
	new_written(f->j, "d/b", 1, NULL);
	OK(jnl_check(f->j, &e));
	jnl_close(f->j);
	f->j = NULL;
	sql_on_file(f->path, "UPDATE ops SET ndeps=ndeps+1 WHERE seq=2");
	fx_open(f, NULL);
	FAILS(jnl_check(f->j, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "ndeps"));
	jnl_close(f->j);
	f->j = NULL;
	sql_on_file(f->path, "DELETE FROM deps WHERE seq=3;"
		    "UPDATE ops SET ndeps=(SELECT count(*) FROM deps WHERE "
		    "deps.seq=ops.seq)");
	fx_open(f, NULL);
	FAILS(jnl_check(f->j, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "does not wait"));
	/* Put it back so teardown's check passes. */
	jnl_close(f->j);
	f->j = NULL;
	sql_on_file(f->path, "INSERT INTO deps(seq,dep) VALUES(3,1)");
	fx_open(f, NULL);
	OK(jnl_check(f->j, &e));
}

static void test_rmdir_tree(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, *v = NULL;
	struct err e;
	uint64_t d, a, sd, x, d2, y, s, s1;
	size_t n;

	OK(jnl_file_new(f->j, "d", JNL_DIR, NULL, "", 0, 0, &d, &e));
	a = remote_file(f->j, "d/a", "ga");
	OK(jnl_file_new(f->j, "d/s", JNL_DIR, NULL, "", 0, 0, &sd, &e));
	x = remote_file(f->j, "d/s/x", "gx");
	OK(jnl_unlink(f->j, x, &s, &e));
	OK(jnl_rmdir_tree(f->j, sd, &s1, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].seq, s1);
	assert_int_equal(v[0].flags, JNL_OPF_TREE);
	jnl_ops_free(v, n);
	OK(jnl_unlink(f->j, a, &s, &e));
	OK(jnl_rmdir_tree(f->j, d, &s1, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 1);           /* rm -rf d: one call */
	assert_int_equal(v[0].kind, JNL_OP_RMDIR);
	assert_string_equal(v[0].path, "d");
	assert_int_equal(v[0].flags, JNL_OPF_TREE);
	jnl_ops_free(v, n);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.flags, JNL_OPF_TREE);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);

	/* A removal a worker already started is not folded; the rmdir waits
	 * for it and is a plain one. */
	OK(jnl_file_new(f->j, "d2", JNL_DIR, NULL, "", 0, 0, &d2, &e));
	y = remote_file(f->j, "d2/y", "gy");
	OK(jnl_unlink(f->j, y, &s, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	OK(jnl_rmdir_tree(f->j, d2, &s1, &e));
	OK(jnl_list_ops(f->j, JNL_MASK(JNL_PENDING), 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].flags, 0);
	jnl_ops_free(v, n);
	{
		struct jnl_op op2;

		assert_int_equal(jnl_claim_next(f->j, &op2, &e), 0);
	}
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
}

/* jnl_set_removal_delay: removals inside a directory wait (so a later
 * rmdir_tree folds them even though workers are idle), top-level ones and
 * other ops do not, and jnl_expedite (flush) lifts the wait. */
static void test_removal_delay(void **state)
{
	struct fx *f = *state;
	struct jnl_op op, *v = NULL;
	struct err e;
	uint64_t d, a, b, top, w, s, s1;
	size_t n;

	jnl_set_removal_delay(f->j, 60000);
	OK(jnl_file_new(f->j, "d", JNL_DIR, NULL, "", 0, 0, &d, &e));
	a = remote_file(f->j, "d/a", "ga");
	b = remote_file(f->j, "d/b", "gb");
	top = remote_file(f->j, "top", "gt");
	OK(jnl_unlink(f->j, a, &s, &e));
	assert_true(s > 0);
	/* held back: an idle worker finds nothing */
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	/* a top-level unlink and a write are not */
	OK(jnl_unlink(f->j, top, &s1, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	w = new_written(f->j, "d/new", 3, NULL);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.fid, w);
	OK(jnl_complete(f->j, op.seq, op.claim, "gn", &e));
	jnl_op_release(&op);
	OK(jnl_unlink(f->j, b, NULL, &e));
	OK(jnl_unlink(f->j, w, NULL, &e));
	/* rm -rf d: the waiting unlinks fold into one rmdir, not held back */
	OK(jnl_rmdir_tree(f->j, d, &s1, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &v, &n, &e));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].flags, JNL_OPF_TREE);
	jnl_ops_free(v, n);
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s1);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	/* a flush does not wait for the delay */
	OK(jnl_file_new(f->j, "e", JNL_DIR, NULL, "", 0, 0, &d, &e));
	a = remote_file(f->j, "e/a", "gea");
	OK(jnl_unlink(f->j, a, &s, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 0);
	OK(jnl_expedite(f->j, 0, jnl_last_seq(f->j), &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
	/* 0 turns it off */
	jnl_set_removal_delay(f->j, 0);
	b = remote_file(f->j, "e/b", "geb");
	OK(jnl_unlink(f->j, b, &s, &e));
	assert_int_equal(jnl_claim_next(f->j, &op, &e), 1);
	assert_int_equal(op.seq, s);
	OK(jnl_complete(f->j, op.seq, op.claim, NULL, &e));
	jnl_op_release(&op);
}

/* Threads appending and workers claiming at once: every op runs exactly
 * once, never while a related op runs, and the journal drains to empty. */
#define ST_APPENDERS 4
#define ST_WORKERS 4
#define ST_FILES 150

struct stress {
	struct jnl *j;
	pthread_mutex_t mu;
	struct jnl_op running[ST_WORKERS];  /* protected by mu */
	int appenders_left;                  /* protected by mu */
	int violation;                       /* protected by mu */
	uint64_t done;                       /* protected by mu */
	char why[256];                       /* protected by mu */
};

struct stress_arg {
	struct stress *st;
	int id;
};

static int rel_path(const char *a, const char *b)
{
	size_t la, lb;

	if (!a || !b)
		return 0;
	la = strlen(a);
	lb = strlen(b);
	if (la > lb)
		return rel_path(b, a);
	return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '/');
}

static int ops_rel(const struct jnl_op *x, const struct jnl_op *y)
{
	return x->fid == y->fid || rel_path(x->path, y->path) ||
	       rel_path(x->path, y->path2) || rel_path(x->path2, y->path) ||
	       rel_path(x->path2, y->path2);
}

static void *stress_appender(void *arg)
{
	struct stress_arg *a = arg;
	struct jnl *j = a->st->j;
	struct err e;
	uint64_t d, fid, s;
	char p[64], q[64];

	snprintf(p, sizeof(p), "t%d", a->id);
	OK(jnl_mkdir(j, p, 0, &d, &s, &e));
	for (int i = 0; i < ST_FILES; i++) {
		snprintf(p, sizeof(p), "t%d/f%d", a->id, i);
		OK(jnl_file_new(j, p, JNL_FILE, NULL, NULL, 0, 0, &fid, &e));
		OK(jnl_write(j, fid, 10, 1, 0, &s, &e));
		OK(jnl_write(j, fid, 20, 2, 0, &s, &e));
		if (i % 2 == 0) {
			snprintf(q, sizeof(q), "t%d/g%d", a->id, i);
			OK(jnl_rename(j, fid, q, 0, &s, &e));
		}
		if (i % 4 == 1)
			OK(jnl_unlink(j, fid, &s, &e));
		if (i % 50 == 49) {   /* a subdirectory moved around */
			snprintf(p, sizeof(p), "t%d/sub%d", a->id, i);
			OK(jnl_mkdir(j, p, 0, &fid, &s, &e));
			snprintf(q, sizeof(q), "t%d/sub%d/x", a->id, i);
			OK(jnl_file_new(j, q, JNL_FILE, NULL, NULL, 0, 0, &d, &e));
			OK(jnl_write(j, d, 1, 1, 0, &s, &e));
			snprintf(q, sizeof(q), "t%d/moved%d", a->id, i);
			OK(jnl_rename(j, fid, q, 0, &s, &e));
		}
	}
	pthread_mutex_lock(&a->st->mu);
	a->st->appenders_left--;
	pthread_mutex_unlock(&a->st->mu);
	return NULL;
}

static void *stress_worker(void *arg)
{
	struct stress_arg *a = arg;
	struct stress *st = a->st;
	struct jnl_op op;
	struct err e;
	int r, idle = 0;
	unsigned n = (unsigned)a->id * 7919u;

	for (;;) {
		r = jnl_claim_wait(st->j, 20, &op, &e);
		if (r < 0) {
			print_message("claim_wait: %s\n", e.msg);
			break;
		}
		if (r == 0) {
			int left;

			pthread_mutex_lock(&st->mu);
			left = st->appenders_left;
			pthread_mutex_unlock(&st->mu);
			if (left == 0 && ++idle > 10)
				break;
			continue;
		}
		idle = 0;
		pthread_mutex_lock(&st->mu);
		for (int k = 0; k < ST_WORKERS; k++)
			if (st->running[k].seq && ops_rel(&st->running[k], &op) &&
			    !st->violation) {
				st->violation = 1;
				snprintf(st->why, sizeof(st->why), "op %llu (%s) "
					 "claimed while related op %llu (%s) runs",
					 (unsigned long long)op.seq, op.path,
					 (unsigned long long)st->running[k].seq,
					 st->running[k].path);
			}
		st->running[a->id] = op;
		pthread_mutex_unlock(&st->mu);
		n = n * 1103515245u + 12345u;
		if ((n >> 16) % 8 == 0)
			sched_yield();
		pthread_mutex_lock(&st->mu);
		memset(&st->running[a->id], 0, sizeof(op));
		pthread_mutex_unlock(&st->mu);
		if ((n >> 16) % 10 == 0) {
			OK(jnl_retry_later(st->j, op.seq, op.claim, 0, NULL, &e));
		} else {
			OK(jnl_complete(st->j, op.seq, op.claim, "g", &e));
			pthread_mutex_lock(&st->mu);
			st->done++;
			pthread_mutex_unlock(&st->mu);
		}
		jnl_op_release(&op);
	}
	return NULL;
}

static void test_threads_stress(void **state)
{
	struct fx *f = *state;
	struct stress st;
	struct stress_arg args[ST_APPENDERS + ST_WORKERS];
	pthread_t th[ST_APPENDERS + ST_WORKERS];
	struct jnl_stats s;
	struct err e;

	/* the real clock: claim_wait sleeps on it */
	jnl_close(f->j);
	f->opts.clock = NULL;
	fx_open(f, NULL);
	memset(&st, 0, sizeof(st));
	st.j = f->j;
	pthread_mutex_init(&st.mu, NULL);
	st.appenders_left = ST_APPENDERS;
	for (int i = 0; i < ST_APPENDERS + ST_WORKERS; i++) {
		args[i].st = &st;
		args[i].id = i < ST_APPENDERS ? i : i - ST_APPENDERS;
		assert_int_equal(pthread_create(&th[i], NULL,
						i < ST_APPENDERS ? stress_appender :
						stress_worker, &args[i]), 0);
	}
	for (int i = 0; i < ST_APPENDERS + ST_WORKERS; i++)
		pthread_join(th[i], NULL);
	if (st.violation)
		fail_msg("%s", st.why);
	OK(jnl_wait_all(f->j, jnl_last_seq(f->j), 0, 0, &e));
	OK(jnl_stats(f->j, &s, &e));
	assert_int_equal(s.pending_ops + s.inflight_ops + s.failed_ops, 0);
	assert_int_equal(s.dirty_files, 0);
	assert_int_equal(s.committed_ops, st.done);
	print_message("threads: %llu ops committed by %d workers while %d "
		      "threads appended\n", (unsigned long long)st.done,
		      ST_WORKERS, ST_APPENDERS);
	pthread_mutex_destroy(&st.mu);
}

/* Append n small writes (in 100 directories), claim and complete them all;
 * report the rates. */
static void perf_run(const char *path, int sync_full, int n, double *t_append,
		     double *t_drain, double *cpu)
{
	struct jnl_opts o;
	struct jnl *j = NULL;
	struct jnl_op op;
	struct err e;
	uint64_t fid, s;
	char p[64];
	double t0;
	int done = 0, r;

	memset(&o, 0, sizeof(o));
	o.sync_full = sync_full;
	OK(jnl_open(path, &o, &j, NULL, &e));
	for (int i = 0; i < 100; i++) {
		snprintf(p, sizeof(p), "dir%02d", i);
		OK(jnl_mkdir(j, p, 0, &fid, &s, &e));
	}
	while ((r = jnl_claim_next(j, &op, &e)) == 1) {
		OK(jnl_complete(j, op.seq, op.claim, "", &e));
		jnl_op_release(&op);
	}
	*cpu = cpu_s();
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "dir%02d/file%06d", i % 100, i);
		OK(jnl_file_new(j, p, JNL_FILE, NULL, NULL, 0, 0, &fid, &e));
		OK(jnl_write(j, fid, 1000, 1, 0, &s, &e));
	}
	*t_append = now_s() - t0;
	t0 = now_s();
	while ((r = jnl_claim_next(j, &op, &e)) == 1) {
		OK(jnl_complete(j, op.seq, op.claim, "g1", &e));
		jnl_op_release(&op);
		done++;
	}
	*t_drain = now_s() - t0;
	*cpu = cpu_s() - *cpu;
	assert_int_equal(r, 0);
	assert_int_equal(done, n);
	OK(jnl_check(j, &e));
	jnl_close(j);
}

static void test_perf_10k(void **state)
{
	struct fx *f = *state;
	char path[256];
	double ta, td, cpu;

	snprintf(path, sizeof(path), "%s/perf.db", f->dir);
	perf_run(path, 0, 10000, &ta, &td, &cpu);
	print_message("journal perf (synchronous=NORMAL): 10000 files: "
		      "new+write %.2f s (%.0f files/s), claim+complete %.2f s "
		      "(%.0f ops/s); %.2f s CPU for the 40000 transactions\n",
		      ta, 10000 / ta, td, 10000 / td, cpu);
	/* "Well under a few seconds" on an idle machine; generous here so a
	 * loaded CI box or ASan does not fail it. */
	assert_true(ta + td < 120.0);
	snprintf(path, sizeof(path), "%s/perf-full.db", f->dir);
	perf_run(path, 1, 100, &ta, &td, &cpu);
	print_message("journal perf (synchronous=FULL): 100 files: new+write "
		      "%.2f s (%.0f files/s), claim+complete %.2f s (%.0f ops/s)\n",
		      ta, 100 / ta, td, 100 / td);
}

/* Fill a 512 KiB tmpfs: appends fail with ERR_NOSPC, nothing acknowledged
 * is lost, the journal stays sound and works again once space is back. */
static void test_disk_full(void **state)
{
	struct fx *f = *state;
	char path[300], filler[300], p[64];
	struct jnl *j = NULL;
	struct jnl_recovery rec;
	struct statvfs sv;
	struct err e;
	uint64_t fid, s, acked = 0, avail;
	int fd, nospc = 0, i;
	char buf[4096];

	snprintf(f->mnt, sizeof(f->mnt), "%s/tiny", f->dir);
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount("tmpfs", f->mnt, "tmpfs", 0, "size=512k,mode=0700") != 0) {
		print_message("SKIPPED: cannot mount a tmpfs (%s): the full-disk "
			      "test needs root or CAP_SYS_ADMIN\n",
			      strerror(errno));
		f->mnt[0] = '\0';
		skip();
	}
	snprintf(path, sizeof(path), "%s/journal.db", f->mnt);
	snprintf(filler, sizeof(filler), "%s/filler", f->mnt);
	OK(jnl_open(path, NULL, &j, NULL, &e));
	/* Fill the file system up to ~256 KiB free. */
	assert_int_equal(statvfs(f->mnt, &sv), 0);
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	fd = open(filler, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	memset(buf, 'x', sizeof(buf));
	for (uint64_t done = 0; done + 256 * 1024 < avail; done += sizeof(buf))
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			break;
	close(fd);
	for (i = 0; i < 5000 && nospc < 20; i++) {
		snprintf(p, sizeof(p), "file%05d", i);
		if (jnl_file_new(j, p, JNL_FILE, NULL, NULL, 0, 0, &fid, &e) != 0) {
			assert_int_equal(e.code, ERR_NOSPC);
			assert_int_equal(err_to_errno(&e), -ENOSPC);
			nospc++;
			continue;
		}
		if (jnl_write(j, fid, 10, 1, 0, &s, &e) != 0) {
			assert_int_equal(e.code, ERR_NOSPC);
			nospc++;
			continue;
		}
		acked++;
	}
	print_message("disk full: %llu writes acknowledged, %d refused with "
		      "ENOSPC\n", (unsigned long long)acked, nospc);
	assert_true(nospc > 0);
	assert_true(acked > 0);
	assert_int_equal(count_ops(j, JNL_MASK_ALL), acked);
	OK(jnl_check(j, &e));
	/* Space back: it works again, and after a reopen everything is there. */
	assert_int_equal(unlink(filler), 0);
	OK(jnl_file_new(j, "after", JNL_FILE, NULL, NULL, 0, 0, &fid, &e));
	OK(jnl_write(j, fid, 10, 1, 0, &s, &e));
	acked++;
	jnl_close(j);
	j = NULL;
	OK(jnl_open(path, NULL, &j, &rec, &e));
	/* Files whose write op was refused are still dirty: recovery gives
	 * them one, so their content is not forgotten either. */
	assert_int_equal(count_ops(j, JNL_MASK_ALL), acked + rec.redirtied);
	OK(jnl_check(j, &e));
	jnl_close(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_open_create_reopen),
		T(test_open_narrows_mode),
		T(test_open_refuses_newer_and_foreign),
		T(test_invalid_paths),
		T(test_file_identity),
		T(test_write_claim_complete),
		T(test_write_coalescing),
		T(test_writeback_delay),
		T(test_expedite),
		T(test_file_dirty_versions),
		T(test_cancel_create_unlink),
		T(test_unlink_after_commit),
		T(test_mkdir_rmdir),
		T(test_order_unrelated_parallel),
		T(test_order_directory_tree),
		T(test_order_rename_chain),
		T(test_rename_directory),
		T(test_rename_replace),
		T(test_rmdir_tree),
		T(test_setattr_folding),
		T(test_fail_retry_resolve),
		T(test_conflict),
		T(test_wait_with_threads),
		T(test_claim_wait_thread),
		T(test_wake_claimers),
		T(test_claim_wait_not_before),
		T(test_wait_all_settle),
		T(test_upload_session_survives_restart),
		T(test_lease_expiry),
		T(test_recovery_redirty),
		T(test_stats_and_progress),
		T(test_children_and_removed),
		T(test_entries),
		T(test_schema_upgrade_v1),
		T(test_removal_delay),
		T(test_entries_100k),
		T(test_cache_map),
		T(test_cache_touch_deferred),
		T(test_check_detects_tampering),
		T(test_threads_stress),
		T(test_perf_10k),
		T(test_disk_full),
#undef T
	};

	/* JNL_TEST_FILTER=test_perf_10k runs only the matching tests. */
	if (getenv("JNL_TEST_FILTER"))
		cmocka_set_test_filter(getenv("JNL_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
