/* Unit tests for fs/mount.c against a real emulator (tests/unit/emu_harness):
 * paths and endpoint, the cache dir, credentials decision, the bucket check,
 * the journal's meta (in use, other source, reload), flush (success,
 * permanent failure listed, timeout, cancel, retry), status, and the
 * control-socket commands over a socketpair. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/log.h"
#include "durafs/mount.h"
#include "durafs/mount_cli.h"
#include "durafs/cli.h"
#include "emu_harness.h"

struct t {
	struct emuh *emu;
	char dir[PATH_MAX];         /* temporary directory for cache dirs */
	struct mopts mo;
	struct mnt m;
	int n;                      /* cache dirs made */
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));

	if (!t || emuh_mount_start("mount", &t->emu, t->dir, sizeof(t->dir)) < 0) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	emuh_mount_stop(t->emu, t->dir);
	free(t);
	return 0;
}

/* Options for source in a fresh cache dir under t->dir. */
static void opts(struct t *t, const char *source)
{
	char cd[PATH_MAX + 16];

	mopts_defaults(&t->mo);
	snprintf(cd, sizeof(cd), "%s/c%d", t->dir, t->n++);
	t->mo.source = strdup(source);
	t->mo.cache_dir = strdup(cd);
	t->mo.mountpoint = strdup("/mnt/x");
	t->mo.writeback_delay_ms = 0;
	t->mo.retry_max_ms = 200;
}

/* mnt_init .. mnt_sched_start; fails the test on error. */
static void bring_up(struct t *t, const char *source)
{
	struct err e;

	opts(t, source);
	err_clear(&e);
	if (emuh_faults(t->emu, "[]", &e) < 0)
		fail_msg("faults: %s", e.msg);
	if (mnt_init(&t->m, &t->mo, &e) < 0 || mnt_cache_dir_create(&t->m, &e) < 0 ||
	    mnt_remote_open(&t->m, &e) < 0 || mnt_check(&t->m, &e) < 0 ||
	    mnt_journal_open(&t->m, 0, &e) < 0 || mnt_sched_start(&t->m, &e) < 0)
		fail_msg("bring up %s: %s", source, e.msg);
}

static void take_down(struct t *t)
{
	mnt_release(&t->m);
	mopts_release(&t->mo);
}

/* A new local file at path with content data, journaled for upload (what
 * the filesystem does on close) with a writeback delay. with_cache 0: the
 * cache file is missing. */
static uint64_t new_file(struct t *t, const char *path, const char *data, int with_cache,
			 int64_t delay_ms)
{
	char name[64], full[PATH_MAX + 80];
	uint64_t fid = 0, seq = 0;
	struct err e;
	int fd;

	snprintf(name, sizeof(name), "f%lu", (unsigned long)random());
	snprintf(full, sizeof(full), "%s/%s", t->m.files_dir, name);
	if (with_cache) {
		fd = open(full, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
		close(fd);
	}
	if (jnl_file_new(t->m.jnl, path, JNL_FILE, name, NULL, strlen(data), 0, &fid, &e) < 0 ||
	    jnl_write(t->m.jnl, fid, strlen(data), 0, delay_ms, &seq, &e) < 0)
		fail_msg("journal: %s", e.msg);
	return seq;
}

static void test_init_and_cache_dir(void **state)
{
	struct t *t = *state;
	struct err e;
	struct stat st;
	char f[PATH_MAX + 32];

	opts(t, "gs://bkt/pre");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_string_equal(t->m.endpoint, emuh_url(t->emu));
	assert_int_equal(t->m.emulated, 1);
	assert_non_null(strstr(t->m.journal_path, "/journal.db"));
	assert_non_null(strstr(t->m.ctl_path, "/ctl.sock"));
	assert_non_null(strstr(t->m.files_dir, "/files"));
	/* parents created, modes 0700, an existing loose mode tightened */
	assert_int_equal(mnt_cache_dir_create(&t->m, &e), 0);
	assert_int_equal(stat(t->mo.cache_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	chmod(t->mo.cache_dir, 0755);
	assert_int_equal(mnt_cache_dir_create(&t->m, &e), 0);
	assert_int_equal(stat(t->mo.cache_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(t->m.files_dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	take_down(t);
	/* a file where the cache dir should be */
	opts(t, "gs://bkt");
	snprintf(f, sizeof(f), "%s", t->mo.cache_dir);
	fclose(fopen(f, "w"));
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_cache_dir_create(&t->m, &e), -1);
	take_down(t);
	/* explicit endpoint wins, and is not "emulated" */
	opts(t, "gs://bkt");
	t->mo.endpoint = strdup("http://127.0.0.1:1/");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_string_equal(t->m.endpoint, "http://127.0.0.1:1");
	assert_int_equal(t->m.emulated, 0);
	take_down(t);
	/* relative cache dir refused */
	opts(t, "gs://bkt");
	free(t->mo.cache_dir);
	t->mo.cache_dir = strdup("rel");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	take_down(t);
}

static void test_remote_and_check(void **state)
{
	struct t *t = *state;
	struct err e;

	/* the emulator convention: no credentials */
	opts(t, "gs://bkt");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_remote_open(&t->m, &e), 0);
	assert_int_equal(t->m.no_auth, 1);
	assert_string_equal(t->m.auth_kind, "none");
	assert_int_equal(mnt_check(&t->m, &e), 0);
	take_down(t);
	/* a missing bucket: one line naming it */
	opts(t, "gs://no-such-bkt");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_remote_open(&t->m, &e), 0);
	err_clear(&e);
	assert_int_equal(mnt_check(&t->m, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "\"no-such-bkt\" does not exist"));
	assert_null(strchr(e.msg, '\n'));
	take_down(t);
	/* nobody listening */
	opts(t, "gs://bkt");
	t->mo.endpoint = strdup("http://127.0.0.1:1");
	t->mo.no_auth = 1;
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_remote_open(&t->m, &e), 0);
	assert_int_equal(mnt_check(&t->m, &e), -1);
	assert_non_null(strstr(e.msg, "cannot reach http://127.0.0.1:1"));
	take_down(t);
	/* Drive: the endpoint from DURAFS_DRIVE_ENDPOINT, no credentials, the
	 * drive backend, and its root answers */
	setenv("DURAFS_DRIVE_ENDPOINT", emuh_url(t->emu), 1);
	opts(t, "drive:");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_string_equal(t->m.endpoint, emuh_url(t->emu));
	assert_int_equal(t->m.emulated, 1);
	assert_int_equal(mnt_remote_open(&t->m, &e), 0);
	assert_int_equal(t->m.no_auth, 1);
	assert_string_equal(be_name(t->m.be), "drive");
	assert_true(be_caps(t->m.be) & BE_CAP_RMDIR_TREE);
	assert_int_equal(mnt_check(&t->m, &e), 0);
	take_down(t);
	/* a folder that does not exist: one line */
	opts(t, "drive:no/such/folder");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_remote_open(&t->m, &e), 0);
	assert_int_equal(mnt_check(&t->m, &e), -1);
	assert_null(strchr(e.msg, '\n'));
	take_down(t);
	/* a malformed source fails in mnt_init, before any credentials */
	opts(t, "drive:id=");
	err_clear(&e);
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_non_null(strstr(e.msg, "drive:id="));
	take_down(t);
	/* an explicit endpoint is not an emulator: credentials are needed */
	opts(t, "drive:");
	t->mo.endpoint = strdup("http://127.0.0.1:1");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_string_equal(t->m.endpoint, "http://127.0.0.1:1");
	assert_int_equal(t->m.emulated, 0);
	take_down(t);
	unsetenv("DURAFS_DRIVE_ENDPOINT");
}

static void test_journal_meta(void **state)
{
	struct t *t = *state;
	struct mopts mo2, loaded;
	struct mnt m2;
	struct err e;
	struct jnl *j = NULL;
	char path[PATH_MAX + 32];

	opts(t, "gs://bkt/p");
	t->mo.chunk_size = 512 * 1024;
	t->mo.upload_workers = 3;
	t->mo.conflict = MOPTS_CONFLICT_FAIL;
	t->mo.token_file = strdup("/x/token");
	t->mo.docs = MOPTS_DOCS_HIDE;
	t->mo.delete_mode = MOPTS_DELETE_PERMANENT;
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_cache_dir_create(&t->m, &e), 0);
	assert_int_equal(mnt_journal_open(&t->m, 0, &e), 0);
	/* a second opener of the same cache dir */
	mo2 = t->mo;
	assert_int_equal(mnt_init(&m2, &mo2, &e), 0);
	err_clear(&e);
	assert_int_equal(mnt_journal_open(&m2, 0, &e), -1);
	assert_int_equal(e.sys_errno, EBUSY);
	assert_non_null(strstr(e.msg, "in use by another mount"));
	mnt_release(&m2);
	mnt_release(&t->m);
	/* the recorded options come back */
	snprintf(path, sizeof(path), "%s/journal.db", t->mo.cache_dir);
	assert_int_equal(jnl_open(path, NULL, &j, NULL, &e), 0);
	assert_int_equal(mnt_meta_load(j, t->mo.cache_dir, &loaded, &e), 0);
	assert_string_equal(loaded.source, "gs://bkt/p");
	assert_string_equal(loaded.token_file, "/x/token");
	assert_null(loaded.credentials);
	assert_null(loaded.endpoint);
	assert_int_equal(loaded.chunk_size, 512 * 1024);
	assert_int_equal(loaded.upload_workers, 3);
	assert_int_equal(loaded.conflict, MOPTS_CONFLICT_FAIL);
	assert_int_equal(loaded.docs, MOPTS_DOCS_HIDE);
	assert_int_equal(loaded.delete_mode, MOPTS_DELETE_PERMANENT);
	assert_string_equal(loaded.mountpoint, "/mnt/x");
	mopts_release(&loaded);
	jnl_close(j);
	/* another source for this cache dir is refused */
	free(t->mo.source);
	t->mo.source = strdup("gs://other");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_journal_open(&t->m, 0, &e), -1);
	assert_non_null(strstr(e.msg, "belongs to gs://bkt/p"));
	/* must_exist on an empty dir */
	take_down(t);
	opts(t, "gs://bkt");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_journal_open(&t->m, 1, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	take_down(t);
}

/* A command on a cache dir (status, sync --flush): no journal, a journal
 * held by a mount, then one free to open (relative path too). */
static void test_cache_dir_open(void **state)
{
	struct t *t = *state;
	struct mopts mo;
	struct jnl *j = NULL;
	struct err e;
	char nowhere[PATH_MAX + 16], cwd[PATH_MAX], *abs = NULL;

	memset(&mo, 0, sizeof(mo));
	snprintf(nowhere, sizeof(nowhere), "%s/nowhere", t->dir);
	err_clear(&e);
	assert_int_equal(mnt_cache_dir_open(nowhere, "x", &abs, &j, &mo, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "no durafs journal in"));
	assert_null(j);
	free(abs);
	mopts_release(&mo);
	/* held by a mount */
	opts(t, "gs://bkt/held");
	assert_int_equal(mnt_init(&t->m, &t->mo, &e), 0);
	assert_int_equal(mnt_cache_dir_create(&t->m, &e), 0);
	assert_int_equal(mnt_journal_open(&t->m, 0, &e), 0);
	abs = NULL;
	assert_int_equal(mnt_cache_dir_open(t->mo.cache_dir, "durafs status MOUNTPOINT", &abs, &j,
					    &mo, &e), -1);
	assert_int_equal(e.sys_errno, EBUSY);
	assert_non_null(strstr(e.msg, "is in use by a running mount: use `durafs status "
			       "MOUNTPOINT`"));
	assert_null(j);
	free(abs);
	mopts_release(&mo);
	mnt_release(&t->m);
	/* free: by a path relative to the current directory */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(t->dir), 0);
	abs = NULL;
	assert_int_equal(mnt_cache_dir_open(strrchr(t->mo.cache_dir, '/') + 1, "x", &abs, &j, &mo,
					    &e), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_non_null(j);
	assert_string_equal(abs, t->mo.cache_dir);
	assert_string_equal(mo.source, "gs://bkt/held");
	assert_string_equal(mo.cache_dir, t->mo.cache_dir);
	jnl_close(j);
	free(abs);
	mopts_release(&mo);
	take_down(t);
}

struct prog_rec {
	int calls;
	uint64_t first_left;
	int stop_after;             /* > 0: ask to stop at that call */
};

static int on_progress(void *ud, const struct jnl_progress *p)
{
	struct prog_rec *r = ud;

	if (r->calls++ == 0)
		r->first_left = p->ops_left;
	return r->stop_after && r->calls >= r->stop_after;
}

static void test_flush(void **state)
{
	struct t *t = *state;
	struct prog_rec pr = { 0 };
	json_t *failed = NULL, *st;
	struct err e;
	char *body = NULL;

	bring_up(t, "gs://bkt/flush");
	new_file(t, "a.txt", "alpha", 1, 60000);  /* the flush expedites them */
	new_file(t, "b.txt", "bravo bravo", 1, 60000);
	assert_int_equal(mnt_flush(&t->m, 30000, on_progress, &pr, &failed, &e), 0);
	assert_null(failed);
	assert_true(pr.calls >= 2);
	assert_int_equal(pr.first_left, 2);
	assert_int_equal(emuh_call(t->emu, "GET", "/storage/v1/b/bkt/o/flush%2Fb.txt?alt=media",
				   NULL, &body, &e), 0);
	assert_string_equal(body, "bravo bravo");
	free(body);
	st = mnt_status(&t->m);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "committed"),
							    "ops")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "pending"),
							    "ops")), 0);
	assert_true(json_is_false(json_object_get(json_object_get(st, "mount"), "daemon")));
	assert_true(json_is_null(json_object_get(json_object_get(st, "mount"), "mountpoint")));
	json_decref(st);

	/* a permanent failure (the cache file is missing): listed, kept */
	new_file(t, "lost.txt", "never written", 0, 0);
	err_clear(&e);
	assert_int_equal(mnt_flush(&t->m, 30000, NULL, NULL, &failed, &e), -1);
	assert_non_null(failed);
	assert_int_equal(json_array_size(failed), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(failed, 0), "path")),
			    "lost.txt");
	assert_string_equal(json_string_value(json_object_get(json_array_get(failed, 0), "state")),
			    "failed");
	assert_true(strlen(json_string_value(json_object_get(json_array_get(failed, 0),
							     "reason"))) > 0);
	json_decref(failed);
	st = mnt_status(&t->m);
	assert_int_equal(json_array_size(json_object_get(st, "failed")), 1);
	json_decref(st);
	take_down(t);
}

static void test_flush_timeout_cancel_retry(void **state)
{
	struct t *t = *state;
	struct prog_rec pr = { .stop_after = 2 };
	json_t *failed = NULL;
	struct err e;
	uint64_t n = 0;

	bring_up(t, "gs://bkt/slow");
	assert_int_equal(emuh_faults(t->emu, "[{\"kind\":\"status\",\"status\":503,"
					      "\"path\":\"/upload/*\"}]", &e), 0);
	new_file(t, "x.txt", "x", 1, 0);
	err_clear(&e);
	assert_int_equal(mnt_flush(&t->m, 300, NULL, NULL, &failed, &e), -1);
	assert_int_equal(e.code, ERR_TIMEOUT);
	assert_null(failed);
	assert_int_equal(mnt_flush(&t->m, -1, on_progress, &pr, &failed, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_int_equal(pr.calls, 3);  /* the first sample, the one that stopped, the last */
	assert_int_equal(emuh_faults(t->emu, "[]", &e), 0);
	assert_int_equal(mnt_flush(&t->m, 30000, NULL, NULL, &failed, &e), 0);
	/* retry of failed ops: none here; a failed one comes back to the queue */
	assert_int_equal(mnt_retry_failed(&t->m, &n, &e), 0);
	assert_int_equal(n, 0);
	new_file(t, "late.txt", "late", 0, 0);
	assert_int_equal(mnt_flush(&t->m, 30000, NULL, NULL, &failed, &e), -1);
	json_decref(failed);
	assert_int_equal(mnt_retry_failed(&t->m, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(mnt_ack_conflicts(&t->m, &n, &e), 0);
	assert_int_equal(n, 0);
	take_down(t);
}

/* ---- control commands over a socketpair ---------------------------------- */

struct srv {
	int sv[2];
	pthread_t th;
	struct mnt *m;
};

static void *serve_main(void *arg)
{
	struct srv *s = arg;

	ctl_serve_fd(s->sv[1], mnt_ctl_handler, s->m, NULL);
	close(s->sv[1]);
	return NULL;
}

static json_t *call(struct ctl_client *c, const char *req, int *nprogress)
{
	json_t *r = json_loads(req, 0, NULL), *m = NULL;
	struct err e;

	assert_non_null(r);
	assert_int_equal(ctl_client_send(c, r, &e), 0);
	json_decref(r);
	if (nprogress)
		*nprogress = 0;
	for (;;) {
		assert_int_equal(ctl_client_recv(c, 30000, &m, &e), 1);
		if (json_object_get(m, "result"))
			return m;
		assert_non_null(json_object_get(m, "progress"));
		if (nprogress)
			(*nprogress)++;
		json_decref(m);
	}
}

static const char *res(const json_t *m)
{
	return json_string_value(json_object_get(m, "result"));
}

static void test_ctl_commands(void **state)
{
	struct t *t = *state;
	struct srv s;
	struct ctl_client c;
	json_t *m;
	int np = 0;

	bring_up(t, "gs://bkt/ctl");
	memset(&s, 0, sizeof(s));
	s.m = &t->m;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sv), 0);
	assert_int_equal(pthread_create(&s.th, NULL, serve_main, &s), 0);
	memset(&c, 0, sizeof(c));
	c.fd = s.sv[0];

	m = call(&c, "{\"cmd\":\"ping\"}", NULL);
	assert_string_equal(res(m), "ok");
	assert_int_equal(json_integer_value(json_object_get(m, "pid")), getpid());
	json_decref(m);
	new_file(t, "c1.txt", "one", 1, 0);
	m = call(&c, "{\"cmd\":\"flush\",\"timeout_ms\":30000}", &np);
	assert_string_equal(res(m), "ok");
	assert_true(np >= 2);  /* the first sample and the last */
	json_decref(m);
	m = call(&c, "{\"cmd\":\"status\"}", NULL);
	assert_string_equal(res(m), "ok");
	assert_string_equal(json_string_value(json_object_get(json_object_get(
		json_object_get(m, "status"), "mount"), "source")), "gs://bkt/ctl");
	json_decref(m);
	new_file(t, "gone.txt", "x", 0, 0);
	m = call(&c, "{\"cmd\":\"flush\"}", NULL);
	assert_string_equal(res(m), "error");
	assert_string_equal(json_string_value(json_object_get(json_array_get(
		json_object_get(m, "failed"), 0), "path")), "gone.txt");
	json_decref(m);
	m = call(&c, "{\"cmd\":\"retry\"}", NULL);
	assert_int_equal(json_integer_value(json_object_get(m, "retried")), 1);
	json_decref(m);
	m = call(&c, "{\"cmd\":\"ack_conflicts\"}", NULL);
	assert_int_equal(json_integer_value(json_object_get(m, "resolved")), 0);
	json_decref(m);
	m = call(&c, "{\"cmd\":\"flush\",\"timeout_ms\":-5}", NULL);
	assert_string_equal(res(m), "error");
	json_decref(m);
	m = call(&c, "{\"cmd\":\"unmount\"}", NULL);   /* no daemon here */
	assert_string_equal(res(m), "error");
	json_decref(m);
	m = call(&c, "{\"cmd\":\"frobnicate\"}", NULL);
	assert_non_null(strstr(json_string_value(json_object_get(m, "error")), "unknown command"));
	json_decref(m);
	m = call(&c, "{\"nocmd\":1}", NULL);
	assert_string_equal(res(m), "error");
	json_decref(m);
	atomic_store(&t->m.stopping, 1);
	m = call(&c, "{\"cmd\":\"status\"}", NULL);
	assert_non_null(strstr(json_string_value(json_object_get(m, "error")), "shutting down"));
	json_decref(m);
	ctl_client_close(&c);
	pthread_join(s.th, NULL);
	take_down(t);
}

/* The CLI side (fs/mount_cli.c) over the same handler: one-shot calls, a
 * flush shown as JSON lines, and the report of failed files. */
static void test_cli_side(void **state)
{
	struct t *t = *state;
	struct srv s;
	struct ctl_client c;
	json_t *req, *reply = NULL;
	struct err e;
	char *out = NULL, *err_txt = NULL;
	size_t len = 0, elen = 0;
	FILE *f, *ef;
	int64_t ms;
	int code;

	assert_int_equal(mcli_parse_timeout("1.5", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(mcli_parse_timeout("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(mcli_parse_timeout("soon", &ms), -1);

	bring_up(t, "gs://bkt/cli");
	memset(&s, 0, sizeof(s));
	s.m = &t->m;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sv), 0);
	assert_int_equal(pthread_create(&s.th, NULL, serve_main, &s), 0);
	memset(&c, 0, sizeof(c));
	c.fd = s.sv[0];

	req = json_pack("{s:s}", "cmd", "ping");
	assert_int_equal(mcli_call(&c, req, 10000, &reply, &e), 0);
	assert_string_equal(res(reply), "ok");
	json_decref(reply);
	json_decref(req);
	req = json_pack("{s:s}", "cmd", "nope");
	assert_int_equal(mcli_call(&c, req, 10000, &reply, &e), -1);
	assert_non_null(strstr(e.msg, "unknown command"));
	assert_non_null(reply);
	json_decref(reply);
	json_decref(req);

	new_file(t, "ok.txt", "fine", 1, 0);
	f = open_memstream(&out, &len);
	code = mcli_flush(&c, "test", 30000, 0, 1, f);
	fclose(f);
	assert_int_equal(code, CLI_OK);
	assert_non_null(strstr(out, "{\"progress\":"));
	assert_non_null(strstr(out, "{\"result\":\"ok\"}\n"));
	free(out);
	out = NULL;

	/* a failing file: exit 1, and the report names it (stderr) */
	new_file(t, "bad.txt", "missing cache file", 0, 0);
	f = open_memstream(&out, &len);
	code = mcli_flush(&c, "test", 30000, 0, 1, f);
	fclose(f);
	assert_int_equal(code, CLI_FAIL);
	assert_non_null(strstr(out, "\"failed\":[{"));
	assert_non_null(strstr(out, "{\"result\""));
	reply = json_loads(strstr(out, "{\"result\""), 0, NULL);
	assert_non_null(reply);
	ef = open_memstream(&err_txt, &elen);
	mcli_print_failed(ef, "  ", json_object_get(reply, "failed"));
	fclose(ef);
	assert_non_null(strstr(err_txt, "  bad.txt: write failed: "));
	assert_non_null(strstr(err_txt, "missing"));
	free(err_txt);
	json_decref(reply);
	free(out);

	ctl_client_close(&c);
	pthread_join(s.th, NULL);
	take_down(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_and_cache_dir),
		cmocka_unit_test(test_remote_and_check),
		cmocka_unit_test(test_journal_meta),
		cmocka_unit_test(test_cache_dir_open),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_flush_timeout_cancel_retry),
		cmocka_unit_test(test_ctl_commands),
		cmocka_unit_test(test_cli_side),
	};
	if (!emuh_binary())
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
