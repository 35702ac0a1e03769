/* Tests of the scheduler (sync/sched.c) against a real durafs-emulator
 * (emu_harness), the real GCS backend and a real journal in a temporary
 * cache dir: uploads of every size class, coalescing, ordered name and
 * directory ops, resume after a stop, faults, an unreachable remote,
 * conflicts (keep-both and fail), permanent failures and retry, setattr,
 * cache file collection, and a prompt stop. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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
#include "durafs/drive.h"
#include "durafs/gcs.h"
#include "durafs/http.h"
#include "durafs/journal.h"
#include "durafs/log.h"
#include "durafs/sched.h"
#include "emu_harness.h"
#include "sched_fixture.h"
#include "unit_util.h"

#define BUCKET "durafs-sched"
#define KIB 1024u
#define MIB (1024u * 1024u)

static struct emuh *emu;
static struct http *http;
static struct be *be;

/* One test's world (sched_fixture.h). */
static struct sfx fx;

/* --- helpers: the shared fixture bound to this file's fx and be ---------- */

static void cache_path(const char *name, char *buf, size_t len)
{
	sfx_cache_path(&fx, name, buf, len);
}

static uint64_t new_file(const char *path, const void *data, size_t n, int64_t delay_ms)
{
	return sfx_new_file(&fx, path, data, n, delay_ms);
}

/* Replace fid's content as the filesystem does: dirty, write, journal. */
static void rewrite(uint64_t fid, const void *data, size_t n, int64_t delay_ms)
{
	struct jnl_file f;
	char cp[256];
	uint64_t seq;

	memset(&f, 0, sizeof(f));
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	UT_OK(jnl_file_dirty(fx.j, fid, NULL, &e_));
	cache_path(f.cache_name, cp, sizeof(cp));
	ut_write_at(cp, data, n, 0, 1);
	UT_OK(jnl_write(fx.j, fid, n, ut_wall_ns(), delay_ms, &seq, &e_));
	jnl_file_release(&f);
}

static int remote_exists(const char *path)
{
	return sfx_remote_exists(be, path);
}

/* Events are emitted right after the journal records the result, so a
 * waiter may see the result first: wait (2 s at most) for *count >= want. */
static int events_at_least(int *count, int want)
{
	int64_t t0 = ut_now_ms();
	int v;

	for (;;) {
		pthread_mutex_lock(&fx.mu);
		v = *count;
		pthread_mutex_unlock(&fx.mu);
		if (v >= want || ut_now_ms() - t0 > 2000)
			return v;
		ut_sleep_ms(5);
	}
}

static void default_opts(struct sched_opts *o)
{
	sfx_default_opts(o, fx.files, http);
}

static void fx_open_journal(void)
{
	UT_OK(jnl_open(fx.db, NULL, &fx.j, NULL, &e_));
}

static void fx_start(void)
{
	sfx_start(&fx, be);
}

static void fx_stop(void)
{
	sch_free(fx.s);
	fx.s = NULL;
}

static int fx_setup(void **state)
{
	(void)state;
	return sfx_setup(&fx, "test_sched", emu, BUCKET, http);
}

static int fx_teardown(void **state)
{
	(void)state;
	return sfx_teardown(&fx, emu);
}

/* Ops of fid in the given states. */
static size_t count_ops(unsigned mask, uint64_t fid, struct jnl_op *copy)
{
	struct jnl_op *v = NULL;
	size_t n = 0, i, k = 0;

	UT_OK(jnl_list_ops(fx.j, mask, 0, &v, &n, &e_));
	for (i = 0; i < n; i++) {
		if (fid && v[i].fid != fid)
			continue;
		if (copy && k == 0) {
			*copy = v[i];
			memset(&v[i], 0, sizeof(v[i]));
		}
		k++;
	}
	jnl_ops_free(v, n);
	return k;
}

/* --- tests ---------------------------------------------------------------- */

static void test_bad_options(void **state)
{
	struct sched_opts o;
	struct sched *s = (struct sched *)1;
	struct err e;

	(void)state;
	default_opts(&o);
	o.files_dir = NULL;
	assert_int_equal(sch_new(fx.j, be, &o, &s, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_null(s);
	default_opts(&o);
	o.chunk_size = 100000;
	assert_int_equal(sch_new(fx.j, be, &o, &s, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	default_opts(&o);
	o.workers = 100000;
	assert_int_equal(sch_new(fx.j, be, &o, &s, &e), -1);
	/* Start, start again (refused), stop twice, start again. */
	default_opts(&o);
	assert_int_equal(sch_new(fx.j, be, &o, &s, &e), 0);
	assert_int_equal(sch_start(s, &e), 0);
	assert_int_equal(sch_start(s, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	sch_stop(s);
	sch_stop(s);
	assert_int_equal(sch_start(s, &e), 0);
	sch_free(s);
}

/* fsync semantics for every size class: after sch_wait_fid returns 0 the
 * remote holds the bytes and the file is clean with the remote version. */
static void test_sizes(void **state)
{
	static const size_t sizes[] = { 0, 1, 256 * KIB - 1, 256 * KIB, 16 * MIB + 1 };
	char path[64], want[160];
	struct sched_stats st;
	struct jnl_file f;
	struct be_entry ent;
	uint64_t fids[5], total = 0;
	unsigned char *data[5];
	size_t i;

	(void)state;
	fx_start();
	for (i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "sizes/f%zu.bin", sizes[i]);
		data[i] = ut_pattern(sizes[i], (unsigned)i + 1);
		fids[i] = new_file(path, data[i], sizes[i], 2000);
		total += sizes[i];
	}
	for (i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "sizes/f%zu.bin", sizes[i]);
		UT_OK(sch_wait_fid(fx.s, fids[i], 30000, &e_));
		ut_check_remote_mem(be, path, data[i], sizes[i]);
		memset(&f, 0, sizeof(f));
		memset(&ent, 0, sizeof(ent));
		UT_OK(jnl_file_get(fx.j, fids[i], &f, &e_));
		UT_OK(be_stat(be, path, &ent, &e_));
		assert_int_equal(f.dirty, 0);
		assert_non_null(f.base);
		assert_int_equal(be_version_format(&ent.ver, want, sizeof(want)), 0);
		assert_string_equal(f.base, want);
		assert_int_equal(ent.size, sizes[i]);
		jnl_file_release(&f);
		be_entry_release(&ent);
		free(data[i]);
	}
	/* 256 KiB and 16 MiB + 1 went through resumable sessions. */
	assert_true(emuh_must_counter(emu, "gcs.upload_sessions_started") >= 2);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.ops_done, 5);
	assert_int_equal(st.bytes_uploaded, total);
	assert_int_equal(st.failures, 0);
	assert_int_equal(events_at_least(&fx.ev_committed, 5), 5);
}

/* 20 quick rewrites within the writeback delay become one upload of the
 * last content. */
static void test_coalescing(void **state)
{
	unsigned char *d = NULL;
	uint64_t fid;
	int i;

	(void)state;
	fx_start();
	d = ut_pattern(1000, 100);
	fid = new_file("co/file.txt", d, 1000, 400);
	free(d);
	for (i = 1; i < 20; i++) {
		d = ut_pattern(1000 + (size_t)i, 100 + (unsigned)i);
		rewrite(fid, d, 1000 + (size_t)i, 400);
		if (i < 19)
			free(d);
	}
	assert_int_equal(count_ops(JNL_MASK_ALL, fid, NULL), 1);
	UT_OK(sch_wait_fid(fx.s, fid, 20000, &e_));
	ut_check_remote_mem(be, "co/file.txt", d, 1019);
	free(d);
	assert_int_equal(emuh_must_requests(emu, "gcs.objects.insert.multipart", 0) +
			 emuh_must_requests(emu, "gcs.objects.insert.resumable", 0) +
			 emuh_must_requests(emu, "gcs.objects.insert.media", 0), 1);
}

/* Name and directory ops reach the remote in journal order; a file created
 * and unlinked before its upload never reaches the remote. */
static void test_ops_in_order(void **state)
{
	unsigned char *a = ut_pattern(5000, 7), *x = ut_pattern(300 * KIB, 8);
	uint64_t fa, fx2, fd_, fs, fl, fghost, seq;
	struct sched_stats st;
	struct be_entry ent;
	int64_t uploads;

	(void)state;
	fx_start();
	UT_OK(jnl_mkdir(fx.j, "d", ut_wall_ns(), &fd_, &seq, &e_));
	fa = new_file("d/a", a, 5000, 0);
	UT_OK(jnl_symlink(fx.j, "d/l", "b", ut_wall_ns(), &fl, &seq, &e_));
	UT_OK(jnl_rename(fx.j, fa, "d/b", 0, &seq, &e_));
	UT_OK(jnl_mkdir(fx.j, "d/s", ut_wall_ns(), &fs, &seq, &e_));
	fx2 = new_file("d/s/x", x, 300 * KIB, 0);
	UT_OK(jnl_rename(fx.j, fs, "d/t", 0, &seq, &e_));
	UT_OK(sch_flush(fx.s, 30000, NULL, NULL, &e_));
	memset(&ent, 0, sizeof(ent));
	UT_OK(be_stat(be, "d", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	be_entry_release(&ent);
	ut_check_remote_mem(be, "d/b", a, 5000);
	assert_false(remote_exists("d/a"));
	UT_OK(be_stat(be, "d/l", &ent, &e_));
	assert_int_equal(ent.type, BE_SYMLINK);
	be_entry_release(&ent);
	ut_check_remote_mem(be, "d/t/x", x, 300 * KIB);
	assert_false(remote_exists("d/s/x"));
	assert_false(remote_exists("d/s"));

	/* A directory rename rewrites its objects (GCS): a later write of a
	 * file below it is guarded by the new copy, not a stale version. */
	UT_OK(jnl_rename(fx.j, fs, "d/u", 0, &seq, &e_));
	rewrite(fx2, a, 5000, 0);
	UT_OK(sch_flush(fx.s, 30000, NULL, NULL, &e_));
	ut_check_remote_mem(be, "d/u/x", a, 5000);
	assert_false(remote_exists("d/t/x"));
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.conflicts, 0);
	assert_int_equal(st.failures, 0);

	/* Remove it all again. */
	UT_OK(jnl_unlink(fx.j, fa, &seq, &e_));
	UT_OK(jnl_unlink(fx.j, fl, &seq, &e_));
	UT_OK(jnl_unlink(fx.j, fx2, &seq, &e_));
	UT_OK(jnl_rmdir(fx.j, fs, &seq, &e_));
	UT_OK(sch_flush(fx.s, 30000, NULL, NULL, &e_));
	assert_false(remote_exists("d/b"));
	assert_false(remote_exists("d/l"));
	assert_false(remote_exists("d/u/x"));
	assert_false(remote_exists("d/u"));
	assert_true(remote_exists("d"));

	/* Created and unlinked before its upload: never sent. */
	uploads = emuh_must_requests(emu, "gcs.objects.insert.multipart", 0) +
		  emuh_must_requests(emu, "gcs.objects.insert.resumable", 0);
	fghost = new_file("d/ghost", a, 5000, 5000);
	UT_OK(jnl_unlink(fx.j, fghost, &seq, &e_));
	assert_int_equal(seq, 0);
	UT_OK(sch_flush(fx.s, 10000, NULL, NULL, &e_));
	assert_false(remote_exists("d/ghost"));
	assert_int_equal(emuh_must_requests(emu, "gcs.objects.insert.multipart", 0) +
			 emuh_must_requests(emu, "gcs.objects.insert.resumable", 0), uploads);
	/* Its cache file is collected by the housekeeping thread. */
	{
		char cp[256];
		struct jnl_file f;
		int64_t t0 = ut_now_ms();

		memset(&f, 0, sizeof(f));
		if (jnl_file_get(fx.j, fghost, &f, NULL) == 0) {
			cache_path(f.cache_name, cp, sizeof(cp));
			jnl_file_release(&f);
		} else {
			snprintf(cp, sizeof(cp), "%s/c%06u", fx.files, fx.next_cache);
		}
		while (access(cp, F_OK) == 0 && ut_now_ms() - t0 < 5000)
			ut_sleep_ms(50);
		assert_int_not_equal(access(cp, F_OK), 0);
	}
	free(a);
	free(x);
}

struct prog_count {
	int calls;
	uint64_t first_left;
	uint64_t last_left;
};

static void on_progress(void *ud, const struct jnl_progress *p)
{
	struct prog_count *c = ud;

	if (!c->calls++)
		c->first_left = p->ops_left;
	c->last_left = p->ops_left;
}

/* A stop mid-upload returns promptly and leaves a resumable session; a new
 * journal and scheduler resume it from the server's offset. */
static void test_resume_after_stop(void **state)
{
	const size_t n = 64 * MIB;
	unsigned char *d = ut_pattern(n, 77);
	struct sched_upload *ups = NULL;
	struct sched_stats st;
	struct prog_count pc = { 0, 0, 0 };
	struct jnl_op op;
	size_t nups = 0, i;
	uint64_t fid, persisted = 0;
	int64_t t0, stop_ms, recv;

	(void)state;
	fx.so.workers = 2;
	fx.so.chunk_size = 1 * MIB;
	fx.so.small_max = 8 * MIB;
	/* Slow the chunks down so the upload is surely in flight. */
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"ms\":25}]");
	fx_start();
	fid = new_file("big/resume.bin", d, n, 0);
	t0 = ut_now_ms();
	while (persisted < 8 * MIB && ut_now_ms() - t0 < 30000) {
		UT_OK(sch_uploads(fx.s, &ups, &nups, &e_));
		for (i = 0; i < nups; i++) {
			assert_string_equal(ups[i].path, "big/resume.bin");
			assert_int_equal(ups[i].total, n);
			persisted = ups[i].persisted;
		}
		sch_uploads_free(ups, nups);
		ut_sleep_ms(5);
	}
	assert_true(persisted >= 8 * MIB);
	assert_true(persisted < n);
	t0 = ut_now_ms();
	sch_stop(fx.s);
	stop_ms = ut_now_ms() - t0;
	print_message("    sch_stop mid-upload took %" PRId64 " ms\n", stop_ms);
	assert_true(stop_ms < 3000);
	fx_stop();
	/* The op is pending with its session and offset kept. */
	memset(&op, 0, sizeof(op));
	assert_int_equal(count_ops(JNL_MASK(JNL_PENDING), fid, &op), 1);
	assert_true(op.persisted >= 8 * MIB);
	assert_int_equal(op.total, n);
	jnl_op_release(&op);

	/* A new journal handle and scheduler: the daemon restarted. */
	jnl_close(fx.j);
	fx.j = NULL;
	fx_open_journal();
	emuh_must_faults(emu, "[]");
	fx_start();
	UT_OK(sch_flush(fx.s, 60000, on_progress, &pc, &e_));
	assert_true(pc.calls >= 1);
	assert_int_equal(pc.last_left, 0);
	ut_check_remote_mem(be, "big/resume.bin", d, n);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.sessions_resumed, 1);
	assert_true(emuh_must_counter(emu, "gcs.upload_sessions_resumed") >= 1);
	assert_int_equal(emuh_must_counter(emu, "gcs.upload_sessions_started"), 1);
	recv = emuh_must_counter(emu, "gcs.upload_bytes_received");
	print_message("    64 MiB resumed: %" PRId64 " bytes received in all\n", recv);
	/* Sent twice at most: the chunk in flight at the stop, which a slow
	 * server (here the latency fault) may take only after the new
	 * scheduler asked it where to resume. Counted too: the session
	 * start's JSON metadata (119 bytes; 1 KiB bounds it). */
	assert_true(recv <= (int64_t)(n + 1 * MIB + 1 * KIB));
	free(d);
}

/* 30% of every request answered 503 plus connections cut mid-body: 200
 * files of random sizes are all committed byte-identical. */
static void test_faults_soak(void **state)
{
	enum { NF = 200 };
	unsigned char *data[NF];
	size_t sizes[NF];
	char path[64];
	unsigned seed = 12345;
	struct sched_stats st;
	json_t *js = NULL;
	int64_t t0;
	int i;

	(void)state;
	fx.so.workers = 8;
	fx.so.retry_initial_ms = 10;
	fx.so.retry_max_ms = 100;
	for (i = 0; i < NF; i++) {
		sizes[i] = (size_t)(rand_r(&seed) % (i % 10 == 0 ? 900 * KIB : 40 * KIB));
		data[i] = ut_pattern(sizes[i], (unsigned)i + 1000);
	}
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":503,\"fraction\":0.3},"
	       "{\"kind\":\"cut\",\"method\":\"PUT\",\"path\":\"/upload/*\","
	       "\"after_bytes\":60000,\"fraction\":0.2},"
	       "{\"kind\":\"cut\",\"method\":\"POST\",\"path\":\"/upload/*\","
	       "\"after_bytes\":3000,\"fraction\":0.1}]");
	fx_start();
	t0 = ut_now_ms();
	for (i = 0; i < NF; i++) {
		snprintf(path, sizeof(path), "soak/%02d/f%03d", i % 7, i);
		new_file(path, data[i], sizes[i], 0);
	}
	UT_OK(sch_flush(fx.s, 90000, NULL, NULL, &e_));
	print_message("    200 files under faults committed in %" PRId64 " ms\n",
		      ut_now_ms() - t0);
	UT_OK(emuh_stats(emu, &js, &e_));
	{
		json_t *ff = json_object_get(js, "faults_fired");
		int64_t fired = ff ? json_integer_value(json_object_get(ff, "status")) : 0;

		print_message("    faults fired: %" PRId64 " status\n", fired);
		assert_true(fired > 50);
	}
	json_decref(js);
	emuh_must_faults(emu, "[]");
	for (i = 0; i < NF; i++) {
		snprintf(path, sizeof(path), "soak/%02d/f%03d", i % 7, i);
		ut_check_remote_mem(be, path, data[i], sizes[i]);
		free(data[i]);
	}
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.ops_done, NF);
	assert_int_equal(st.failures, 0);
	assert_int_equal(st.conflicts, 0);
	UT_OK(jnl_check(fx.j, &e_));
}

/* The remote goes away: fsync times out with ERR_TIMEOUT and the op stays
 * queued; once the remote is back (same port, same data) it commits. */
static void test_unreachable(void **state)
{
	unsigned char *d = ut_pattern(100 * KIB, 5);
	struct err e;
	uint64_t fid;
	int64_t t0, took;

	(void)state;
	fx_start();
	/* The emulator dies (no reap here: emuh_restart reaps it). */
	assert_int_equal(kill(emuh_pid(emu), SIGKILL), 0);
	ut_sleep_ms(100);
	fid = new_file("away/file.bin", d, 100 * KIB, 0);
	t0 = ut_now_ms();
	assert_int_equal(sch_wait_fid(fx.s, fid, 2000, &e), -1);
	took = ut_now_ms() - t0;
	assert_int_equal(e.code, ERR_TIMEOUT);
	assert_true(took >= 1900 && took < 5000);
	assert_int_equal(count_ops(JNL_MASK(JNL_PENDING) | JNL_MASK(JNL_IN_PROGRESS), fid,
				   NULL), 1);
	assert_int_equal(count_ops(JNL_MASK(JNL_FAILED), fid, NULL), 0);
	UT_OK(emuh_restart(emu, &e_));
	UT_OK(sch_wait_fid(fx.s, fid, 30000, &e_));
	ut_check_remote_mem(be, "away/file.bin", d, 100 * KIB);
	free(d);
}

/* Another writer changed the object after our base was recorded: the local
 * version goes to a conflict copy, the remote stays, the journal shows the
 * conflict; later writes replace the remote's version. */
static void test_conflict_keep_both(void **state)
{
	static const char other[] = "written by someone else";
	unsigned char *v1 = ut_pattern(3000, 1), *v2 = ut_pattern(400 * KIB, 2);
	unsigned char *v3 = ut_pattern(100, 3);
	struct be_list l = { 0 };
	struct jnl_op op;
	struct jnl_file f;
	struct be_entry ent;
	struct sched_stats st;
	char want[160], copy[4200];
	struct err e;
	uint64_t fid, seq;
	size_t i, ncopies = 0;

	(void)state;
	fx_start();
	fid = new_file("cf/doc.txt", v1, 3000, 0);
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	UT_OK(emuh_gcs_put(emu, BUCKET, "cf/doc.txt", other, strlen(other), &e_));
	/* A big local change (resumable path) made after that. */
	rewrite(fid, v2, 400 * KIB, 0);
	assert_int_equal(sch_wait_fid(fx.s, fid, 10000, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	ut_check_remote_mem(be, "cf/doc.txt", other, strlen(other));
	UT_OK(be_list(be, "cf", &l, &e_));
	for (i = 0; i < l.n; i++)
		if (strncmp(l.v[i].name, "doc.txt.conflict-", 17) == 0) {
			snprintf(copy, sizeof(copy), "cf/%s", l.v[i].name);
			ncopies++;
		}
	be_list_release(&l);
	assert_int_equal(ncopies, 1);
	ut_check_remote_mem(be, copy, v2, 400 * KIB);
	memset(&op, 0, sizeof(op));
	assert_int_equal(count_ops(JNL_MASK(JNL_CONFLICT), fid, &op), 1);
	assert_string_equal(op.conflict_name, copy);
	seq = op.seq;
	jnl_op_release(&op);
	assert_int_equal(events_at_least(&fx.ev_conflict, 1), 1);
	assert_string_equal(fx.conflict_path, "cf/doc.txt");
	assert_string_equal(fx.conflict_copy, copy);
	sch_get_stats(fx.s, &st);
	assert_int_equal(st.conflicts, 1);
	/* The fid now mirrors the remote's version. */
	memset(&f, 0, sizeof(f));
	memset(&ent, 0, sizeof(ent));
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	UT_OK(be_stat(be, "cf/doc.txt", &ent, &e_));
	assert_int_equal(be_version_format(&ent.ver, want, sizeof(want)), 0);
	assert_string_equal(f.base, want);
	assert_int_equal(f.dirty, 0);
	jnl_file_release(&f);
	be_entry_release(&ent);
	/* Acknowledged; the next local write replaces the remote version. */
	UT_OK(jnl_resolve(fx.j, seq, &e_));
	rewrite(fid, v3, 100, 0);
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	ut_check_remote_mem(be, "cf/doc.txt", v3, 100);

	/* An unlink whose remote changed meanwhile keeps the remote version. */
	UT_OK(emuh_gcs_put(emu, BUCKET, "cf/doc.txt", other, strlen(other), &e_));
	UT_OK(jnl_unlink(fx.j, fid, &seq, &e_));
	assert_true(seq > 0);
	assert_int_equal(sch_flush(fx.s, 10000, NULL, NULL, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "cf/doc.txt"));
	ut_check_remote_mem(be, "cf/doc.txt", other, strlen(other));
	assert_int_equal(count_ops(JNL_MASK(JNL_FAILED), fid, NULL), 1);
	UT_OK(jnl_resolve(fx.j, seq, &e_));
	free(v1);
	free(v2);
	free(v3);
}

static void test_conflict_fail(void **state)
{
	static const char other[] = "theirs";
	unsigned char *v1 = ut_pattern(2000, 11), *v2 = ut_pattern(2500, 12);
	struct be_list l = { 0 };
	struct jnl_op op;
	struct err e;
	uint64_t fid;
	size_t i;

	(void)state;
	fx.so.conflict_fail = 1;
	fx_start();
	fid = new_file("cff/x.bin", v1, 2000, 0);
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	UT_OK(emuh_gcs_put(emu, BUCKET, "cff/x.bin", other, strlen(other), &e_));
	rewrite(fid, v2, 2500, 0);
	assert_int_equal(sch_wait_fid(fx.s, fid, 10000, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	ut_check_remote_mem(be, "cff/x.bin", other, strlen(other));
	UT_OK(be_list(be, "cff", &l, &e_));
	for (i = 0; i < l.n; i++)
		assert_null(strstr(l.v[i].name, "conflict"));
	be_list_release(&l);
	memset(&op, 0, sizeof(op));
	assert_int_equal(count_ops(JNL_MASK(JNL_FAILED), fid, &op), 1);
	assert_int_equal(op.err_code, ERR_CONFLICT);
	assert_non_null(strstr(op.err_msg, "cff/x.bin"));
	jnl_op_release(&op);
	assert_int_equal(events_at_least(&fx.ev_failed, 1), 1);
	free(v1);
	free(v2);
}

/* A permanent error (403 forbidden): the op fails, the wait returns the
 * error, the data stays in the cache; jnl_retry then commits it. */
static void test_permanent_then_retry(void **state)
{
	unsigned char *d = ut_pattern(7000, 21), *back = NULL;
	struct jnl_op op;
	struct jnl_file f;
	char cp[256];
	struct err e;
	uint64_t fid, seq;
	int fd;

	(void)state;
	fx_start();
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":403,\"reason\":\"forbidden\","
	       "\"path\":\"/upload/*\",\"count\":1}]");
	fid = new_file("perm/file.bin", d, 7000, 0);
	assert_int_equal(sch_wait_fid(fx.s, fid, 10000, &e), -1);
	assert_int_equal(e.code, ERR_PERM);
	assert_non_null(strstr(e.msg, "perm/file.bin"));
	assert_non_null(strstr(e.msg, "forbidden"));
	memset(&op, 0, sizeof(op));
	assert_int_equal(count_ops(JNL_MASK(JNL_FAILED), fid, &op), 1);
	seq = op.seq;
	jnl_op_release(&op);
	assert_false(remote_exists("perm/file.bin"));
	/* The data is still in the cache. */
	memset(&f, 0, sizeof(f));
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	assert_int_equal(f.dirty, 1);
	cache_path(f.cache_name, cp, sizeof(cp));
	jnl_file_release(&f);
	back = malloc(7000);
	assert_non_null(back);
	fd = open(cp, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, back, 7000, 0), 7000);
	close(fd);
	assert_memory_equal(back, d, 7000);
	assert_int_equal(events_at_least(&fx.ev_failed, 1), 1);
	/* The user retries; the fault is used up. */
	UT_OK(jnl_retry(fx.j, seq, &e_));
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	ut_check_remote_mem(be, "perm/file.bin", d, 7000);
	free(back);
	free(d);
}

/* A missing cache file is a permanent failure naming the path. */
static void test_missing_cache_file(void **state)
{
	unsigned char *d = ut_pattern(10, 3);
	struct jnl_file f;
	char cp[256];
	struct err e;
	uint64_t fid;

	(void)state;
	fid = new_file("gone/file", d, 10, 0);
	memset(&f, 0, sizeof(f));
	UT_OK(jnl_file_get(fx.j, fid, &f, &e_));
	cache_path(f.cache_name, cp, sizeof(cp));
	jnl_file_release(&f);
	assert_int_equal(unlink(cp), 0);
	fx_start();
	assert_int_equal(sch_wait_fid(fx.s, fid, 10000, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "gone/file"));
	free(d);
}

/* setattr sends the mtime by re-uploading identical content. */
static void test_setattr(void **state)
{
	unsigned char *d = ut_pattern(4000, 31);
	int64_t mt = (int64_t)1600000000 * 1000000000;
	struct be_entry ent;
	uint64_t fid, seq;

	(void)state;
	fx_start();
	fid = new_file("sa/file", d, 4000, 0);
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	UT_OK(jnl_setattr(fx.j, fid, mt, &seq, &e_));
	assert_true(seq > 0);
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	memset(&ent, 0, sizeof(ent));
	UT_OK(be_stat(be, "sa/file", &ent, &e_));
	assert_int_equal(ent.mtime.tv_sec, 1600000000);
	be_entry_release(&ent);
	ut_check_remote_mem(be, "sa/file", d, 4000);
	free(d);
	/* The same through a resumable upload. */
	d = ut_pattern(600 * KIB, 32);
	fid = new_file("sa/big", d, 600 * KIB, 0);
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	UT_OK(jnl_setattr(fx.j, fid, mt + 5000000000, &seq, &e_));
	UT_OK(sch_wait_fid(fx.s, fid, 10000, &e_));
	memset(&ent, 0, sizeof(ent));
	UT_OK(be_stat(be, "sa/big", &ent, &e_));
	assert_int_equal(ent.mtime.tv_sec, 1600000005);
	be_entry_release(&ent);
	ut_check_remote_mem(be, "sa/big", d, 600 * KIB);
	free(d);
}

/* A flush reports progress and the waits honour their timeouts. */
static void test_flush_progress(void **state)
{
	struct prog_count pc = { 0, 0, 0 };
	unsigned char *d = ut_pattern(2 * MIB, 41);
	int i;
	char path[64];

	(void)state;
	fx.so.chunk_size = 256 * KIB;
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"ms\":40}]");
	fx_start();
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "fp/f%d", i);
		new_file(path, d, 2 * MIB, 60000);
		/* small ones commit at once when released: the first sample
		 * must still count them (the totals a display shows) */
		snprintf(path, sizeof(path), "fp/s%d", i);
		new_file(path, d, 4 * KIB, 60000);
	}
	UT_OK(sch_flush(fx.s, 30000, on_progress, &pc, &e_));
	assert_true(pc.calls >= 2);
	assert_int_equal(pc.first_left, 6);
	assert_int_equal(pc.last_left, 0);
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "fp/f%d", i);
		ut_check_remote_mem(be, path, d, 2 * MIB);
		snprintf(path, sizeof(path), "fp/s%d", i);
		ut_check_remote_mem(be, path, d, 4 * KIB);
	}
	free(d);
}

/* The file changes while its upload runs: the upload is abandoned at the
 * next chunk and redone with the new content; nothing stale is committed. */
static void test_change_during_upload(void **state)
{
	const size_t n = 6 * MIB;
	unsigned char *v1 = ut_pattern(n, 51), *v2 = ut_pattern(n + 5, 52);
	struct sched_upload *ups = NULL;
	struct sched_stats st;
	size_t nups = 0;
	uint64_t fid, persisted = 0;
	int64_t t0;

	(void)state;
	fx.so.chunk_size = 256 * KIB;
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"method\":\"PUT\",\"path\":\"/upload/*\",\"ms\":20}]");
	fx_start();
	fid = new_file("chg/file.bin", v1, n, 0);
	t0 = ut_now_ms();
	while (persisted < 1 * MIB && ut_now_ms() - t0 < 20000) {
		UT_OK(sch_uploads(fx.s, &ups, &nups, &e_));
		if (nups == 1)
			persisted = ups[0].persisted;
		sch_uploads_free(ups, nups);
		ut_sleep_ms(5);
	}
	assert_true(persisted >= 1 * MIB && persisted < n);
	rewrite(fid, v2, n + 5, 0);
	emuh_must_faults(emu, "[]");
	UT_OK(sch_wait_fid(fx.s, fid, 30000, &e_));
	ut_check_remote_mem(be, "chg/file.bin", v2, n + 5);
	sch_get_stats(fx.s, &st);
	assert_true(st.sessions_restarted >= 1);
	assert_int_equal(st.conflicts, 0);
	assert_int_equal(count_ops(JNL_MASK_ALL, fid, NULL), 0);
	free(v1);
	free(v2);
}

/* Remote changes under name ops: nothing remote is destroyed. */
static void test_remote_changes_kept(void **state)
{
	unsigned char *d = ut_pattern(3000, 61);
	uint64_t fdir, seq, ff;
	struct jnl_op op;
	struct err e;

	(void)state;
	fx_start();
	/* rmdir of a directory that gained a child remotely. */
	UT_OK(jnl_mkdir(fx.j, "rm", ut_wall_ns(), &fdir, &seq, &e_));
	UT_OK(sch_flush(fx.s, 10000, NULL, NULL, &e_));
	UT_OK(emuh_gcs_put(emu, BUCKET, "rm/theirs", "x", 1, &e_));
	UT_OK(jnl_rmdir(fx.j, fdir, &seq, &e_));
	assert_int_equal(sch_flush(fx.s, 10000, NULL, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTEMPTY);
	assert_true(remote_exists("rm/theirs"));
	UT_OK(jnl_resolve(fx.j, seq, &e_));
	/* rename of a file whose source was deleted remotely. */
	ff = new_file("mv/src", d, 3000, 0);
	UT_OK(sch_wait_fid(fx.s, ff, 10000, &e_));
	{
		struct be_entry ent;

		memset(&ent, 0, sizeof(ent));
		UT_OK(be_stat(be, "mv/src", &ent, &e_));
		UT_OK(be_remove(be, "mv/src", &ent.ver, NULL, &e_));
		be_entry_release(&ent);
	}
	UT_OK(jnl_rename(fx.j, ff, "mv/dst", 0, &seq, &e_));
	assert_int_equal(sch_wait_fid(fx.s, ff, 10000, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	memset(&op, 0, sizeof(op));
	assert_int_equal(count_ops(JNL_MASK(JNL_FAILED), ff, &op), 1);
	assert_int_equal(op.kind, JNL_OP_RENAME);
	assert_non_null(strstr(op.err_msg, "deleted remotely"));
	jnl_op_release(&op);
	assert_false(remote_exists("mv/dst"));

	/* A rename an earlier attempt finished (its reply lost): done, and the
	 * file's next write is guarded by the moved copy. */
	ff = new_file("mv2/a", d, 3000, 0);
	UT_OK(sch_wait_fid(fx.s, ff, 10000, &e_));
	{
		struct be_entry ent, moved;
		struct be_pre pre;

		memset(&ent, 0, sizeof(ent));
		memset(&moved, 0, sizeof(moved));
		memset(&pre, 0, sizeof(pre));
		pre.kind = BE_PRE_ABSENT;
		UT_OK(be_stat(be, "mv2/a", &ent, &e_));
		UT_OK(be_rename(be, "mv2/a", &ent.ver, "mv2/b", &pre, &moved, &e_));
		be_entry_release(&ent);
		be_entry_release(&moved);
	}
	UT_OK(jnl_rename(fx.j, ff, "mv2/b", 0, &seq, &e_));
	UT_OK(sch_wait_fid(fx.s, ff, 10000, &e_));
	rewrite(ff, d, 2000, 0);
	UT_OK(sch_wait_fid(fx.s, ff, 10000, &e_));
	ut_check_remote_mem(be, "mv2/b", d, 2000);
	assert_false(remote_exists("mv2/a"));
	free(d);
}

/* sch_stop with idle workers (asleep in jnl_claim_wait, no poll timeout)
 * returns at once, again and again. */
static void test_stop_idle(void **state)
{
	int64_t t0, took, worst = 0;
	int round;
	struct err e;

	(void)state;
	fx.so.workers = 8;
	UT_OK(sch_new(fx.j, be, &fx.so, &fx.s, &e_));
	for (round = 0; round < 5; round++) {
		UT_OK(sch_start(fx.s, &e_));
		ut_sleep_ms(round == 0 ? 100 : 10 * round);
		t0 = ut_now_ms();
		sch_stop(fx.s);
		took = ut_now_ms() - t0;
		if (took > worst)
			worst = took;
	}
	print_message("    sch_stop with 8 idle workers: worst of 5 took %" PRId64 " ms\n",
		      worst);
	/* Typically ~1 ms; a loaded 2-core box (or ASan) may add scheduling
	 * delay, never the old 1 s poll. */
	assert_true(worst < 500);
	/* Still works after all that: an op appended now is committed. */
	UT_OK(sch_start(fx.s, &e_));
	{
		unsigned char d[100] = { 1, 2, 3 };
		uint64_t fid = new_file("idle/after.bin", d, sizeof(d), 0);

		assert_int_equal(sch_wait_fid(fx.s, fid, 10000, &e), 0);
		ut_check_remote_mem(be, "idle/after.bin", d, sizeof(d));
	}
	fx_stop();
}

/* The remote is unreachable and workers sit in HTTP retry backoffs of
 * several seconds: with sched_opts.http, sch_stop cancels them and returns
 * within a few seconds; the ops stay pending (not failed) and the upload
 * completes once the remote is back. */
/* Put a file on backend b at path (through be_put) and track it in the
 * journal as clean at that version. Returns its fid. */
static uint64_t remote_tracked_file(struct be *b, const char *path, const char *content)
{
	struct be_pre pre = { BE_PRE_ABSENT, { 0, 0, "" } };
	struct be_meta meta;
	struct be_entry ent;
	char cp[256], ver[BE_ID_MAX + 64];
	uint64_t fid = 0;
	int fd;

	memset(&meta, 0, sizeof(meta));
	memset(&ent, 0, sizeof(ent));
	cache_path("upload.tmp", cp, sizeof(cp));
	ut_write_at(cp, content, strlen(content), 0, 1);
	fd = open(cp, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	UT_OK(be_meta_from_fd(fd, &meta, &e_));
	UT_OK(be_put(b, path, fd, &meta, &pre, &ent, &e_));
	close(fd);
	assert_int_equal(be_version_format(&ent.ver, ver, sizeof(ver)), 0);
	UT_OK(jnl_file_new(fx.j, path, JNL_FILE, NULL, ver, meta.size, ut_wall_ns(), &fid, &e_));
	be_entry_release(&ent);
	return fid;
}

static uint64_t remote_tracked_dir(struct be *b, const char *path)
{
	struct be_entry ent;
	char ver[BE_ID_MAX + 64];
	uint64_t fid = 0;

	memset(&ent, 0, sizeof(ent));
	UT_OK(be_mkdir(b, path, &ent, &e_));
	assert_int_equal(be_version_format(&ent.ver, ver, sizeof(ver)), 0);
	UT_OK(jnl_file_new(fx.j, path, JNL_DIR, NULL, ver, 0, ut_wall_ns(), &fid, &e_));
	be_entry_release(&ent);
	return fid;
}

/* Drive deletes a folder with its contents: `rm -rf` (the unlinks held
 * back by the removal delay, then the rmdirs absorbing them) is one trash
 * call on the top folder, run by the scheduler as rmdir_tree. */
static void test_rmdir_tree_drive(void **state)
{
	struct drive_opts dopt;
	struct be *db = NULL;
	struct be_entry ent;
	struct jnl_op op;
	struct err e;
	uint64_t top, sub, f[4], seq = 0;
	int64_t upd0, del0;
	int i;

	(void)state;
	memset(&dopt, 0, sizeof(dopt));
	dopt.source = "drive:";
	dopt.endpoint = emuh_url(emu);
	dopt.http = http;
	UT_OK(drive_new(&dopt, &db, &e_));
	assert_true(be_caps(db) & BE_CAP_RMDIR_TREE);
	top = remote_tracked_dir(db, "rt");
	sub = remote_tracked_dir(db, "rt/sub");
	f[0] = remote_tracked_file(db, "rt/a", "a");
	f[1] = remote_tracked_file(db, "rt/b", "b");
	f[2] = remote_tracked_file(db, "rt/sub/c", "c");
	f[3] = remote_tracked_file(db, "rt/sub/d", "d");
	jnl_set_removal_delay(fx.j, 60000);
	UT_OK(sch_new(fx.j, db, &fx.so, &fx.s, &e_));
	UT_OK(sch_start(fx.s, &e_));
	upd0 = emuh_must_requests(emu, "drive.files.update", 0);
	del0 = emuh_must_requests(emu, "drive.files.delete", 0);
	/* rm -rf rt: depth first */
	UT_OK(jnl_unlink(fx.j, f[2], NULL, &e_));
	UT_OK(jnl_unlink(fx.j, f[3], NULL, &e_));
	UT_OK(jnl_rmdir_tree(fx.j, sub, NULL, &e_));
	UT_OK(jnl_unlink(fx.j, f[0], NULL, &e_));
	UT_OK(jnl_unlink(fx.j, f[1], NULL, &e_));
	ut_sleep_ms(300);              /* held back: nothing reached the remote */
	assert_int_equal(emuh_must_requests(emu, "drive.files.update", 0) - upd0, 0);
	/* The rmdir of top-level "rt" is not held back: a running worker may
	 * claim and finish it before the journal is looked at. Look with the
	 * workers stopped, then let them run. */
	sch_stop(fx.s);
	UT_OK(jnl_rmdir_tree(fx.j, top, &seq, &e_));
	assert_true(seq > 0);
	/* one op left, flagged */
	memset(&op, 0, sizeof(op));
	assert_int_equal(count_ops(JNL_MASK_ALL, 0, &op), 1);
	assert_int_equal(op.seq, seq);
	assert_int_equal(op.kind, JNL_OP_RMDIR);
	assert_int_equal(op.fid, top);
	assert_true(op.flags & JNL_OPF_TREE);
	jnl_op_release(&op);
	UT_OK(sch_start(fx.s, &e_));
	UT_OK(sch_flush(fx.s, 30000, NULL, NULL, &e_));
	assert_int_equal(emuh_must_requests(emu, "drive.files.update", 0) - upd0, 1);
	assert_int_equal(emuh_must_requests(emu, "drive.files.delete", 0) - del0, 0);
	memset(&ent, 0, sizeof(ent));
	assert_int_equal(be_stat(db, "rt", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	/* a plain rmdir of an empty folder stays an rmdir */
	sub = remote_tracked_dir(db, "rt2");
	UT_OK(jnl_rmdir_tree(fx.j, sub, NULL, &e_));
	UT_OK(sch_flush(fx.s, 30000, NULL, NULL, &e_));
	assert_int_equal(be_stat(db, "rt2", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	for (i = 0; i < 4; i++)
		assert_int_equal(count_ops(JNL_MASK_ALL, f[i], NULL), 0);
	sch_free(fx.s);
	fx.s = NULL;
	be_free(db);
}

static void test_stop_unreachable(void **state)
{
	unsigned char *small = ut_pattern(100 * KIB, 8), *big = ut_pattern(3 * MIB, 9);
	struct http_opts ho;
	struct gcs_opts go;
	struct http *h2 = NULL;
	struct be *be2 = NULL;
	struct http_stats hs;
	struct sched *s2 = NULL;
	uint64_t f1, f2;
	int64_t t0, took;

	(void)state;
	/* A client with production-like retry pacing: 2 s, 4 s, 8 s... */
	memset(&ho, 0, sizeof(ho));
	ho.max_retries = 8;
	ho.backoff_initial_ms = 2000;
	ho.backoff_max_ms = 32000;
	ho.backoff_jitter_ms = 100;
	ho.connect_timeout_ms = 1000;
	UT_OK(http_new(&ho, &h2, &e_));
	memset(&go, 0, sizeof(go));
	go.bucket = BUCKET;
	go.endpoint = emuh_url(emu);
	go.http = h2;
	UT_OK(gcs_new(&go, &be2, &e_));
	fx.so.workers = 2;
	fx.so.small_max = 1 * MIB;
	fx.so.chunk_size = 1 * MIB;
	fx.so.http = h2;
	UT_OK(sch_new(fx.j, be2, &fx.so, &s2, &e_));
	UT_OK(sch_start(s2, &e_));
	assert_int_equal(kill(emuh_pid(emu), SIGKILL), 0);
	ut_sleep_ms(100);
	f1 = new_file("away/small.bin", small, 100 * KIB, 0);
	f2 = new_file("away/big.bin", big, 3 * MIB, 0);
	/* Wait until both requests failed and backed off at least once. */
	t0 = ut_now_ms();
	do {
		ut_sleep_ms(20);
		http_get_stats(h2, &hs);
	} while (hs.retries < 2 && ut_now_ms() - t0 < 10000);
	assert_true(hs.retries >= 2);
	ut_sleep_ms(200);
	t0 = ut_now_ms();
	sch_stop(s2);
	took = ut_now_ms() - t0;
	print_message("    sch_stop with the remote unreachable took %" PRId64 " ms\n", took);
	assert_true(took < 3000);
	assert_int_equal(http_canceled(h2), 0);  /* re-armed */
	assert_int_equal(count_ops(JNL_MASK(JNL_FAILED), 0, NULL), 0);
	assert_int_equal(count_ops(JNL_MASK(JNL_PENDING), f1, NULL), 1);
	assert_int_equal(count_ops(JNL_MASK(JNL_PENDING), f2, NULL), 1);
	sch_free(s2);
	be_free(be2);
	http_free(h2);
	/* The remote comes back: the test's fast scheduler commits both. */
	UT_OK(emuh_restart(emu, &e_));
	fx.so.http = http;
	fx_start();
	UT_OK(sch_wait_fid(fx.s, f1, 30000, &e_));
	UT_OK(sch_wait_fid(fx.s, f2, 30000, &e_));
	ut_check_remote_mem(be, "away/small.bin", small, 100 * KIB);
	ut_check_remote_mem(be, "away/big.bin", big, 3 * MIB);
	free(small);
	free(big);
}

/* --- main ----------------------------------------------------------------- */

static int group_setup(void **state)
{
	const struct sfx_group_opts o = { .max_retries = 12, .backoff_max_ms = 40,
					  .jitter_ms = 5, .chunk_size = 0 };

	(void)state;
	return sfx_group_start("test_sched", BUCKET, 1, &o, &emu, &http, &be);
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
		cmocka_unit_test_setup_teardown(test_bad_options, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stop_idle, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stop_unreachable, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sizes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_coalescing, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_ops_in_order, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_stop, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_faults_soak, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_unreachable, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_conflict_keep_both, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_conflict_fail, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_permanent_then_retry, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_missing_cache_file, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_setattr, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_flush_progress, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_change_during_upload, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_remote_changes_kept, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_rmdir_tree_drive, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests_name("sched", tests, group_setup, group_teardown);
}
