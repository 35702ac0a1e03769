/* The emulator harness for cmocka tests (emu_harness.h): spawns
 * durafs-emulator on 127.0.0.1, waits for its ready file, and wraps the
 * control API (faults, stats, reset), a few GCS setup calls and the
 * cmocka forms that fail the current test on error. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/enc.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"
#include "emu_harness.h"
#include "unit_util.h"

extern char **environ;

#define EMUH_MAX_ARGS 64

struct emuh {
	pid_t pid;
	char url[128];
	int port;
	char tmpdir[PATH_MAX];      /* private: ready file, log, data dir */
	char ready[PATH_MAX + 32];
	char log[PATH_MAX + 32];
	char *argv[EMUH_MAX_ARGS];  /* malloc'd strings; argv[port_arg] is the
				     * --listen value */
	int argc;
	int port_arg;
	struct http *http;
};

static char emuh_bin[PATH_MAX];

static int executable(const char *p)
{
	return access(p, X_OK) == 0;
}

const char *emuh_binary(void)
{
	char self[PATH_MAX], *slash;
	const char *env;
	ssize_t n;

	env = getenv("DURAFS_EMULATOR");
	if (env && *env && executable(env)) {
		snprintf(emuh_bin, sizeof(emuh_bin), "%s", env);
		return emuh_bin;
	}
	env = getenv("DURAFS_BUILD");
	if (env && *env) {
		snprintf(emuh_bin, sizeof(emuh_bin), "%s/durafs-emulator", env);
		if (executable(emuh_bin))
			return emuh_bin;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		/* BUILD/tests/test_x -> BUILD/durafs-emulator */
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			slash = strrchr(self, '/');
			if (slash) {
				*slash = '\0';
				snprintf(emuh_bin, sizeof(emuh_bin), "%s/durafs-emulator", self);
				if (executable(emuh_bin))
					return emuh_bin;
			}
		}
	}
	snprintf(emuh_bin, sizeof(emuh_bin), "build/durafs-emulator");
	if (executable(emuh_bin))
		return emuh_bin;
	fprintf(stderr, "emu_harness: durafs-emulator not found (set DURAFS_BUILD or "
		"DURAFS_EMULATOR, or build it: make BUILD=... BUILD/durafs-emulator)\n");
	return NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void print_log_tail(const struct emuh *e)
{
	char buf[2048];
	ssize_t n;
	off_t size;
	int fd = open(e->log, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1)
		lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "emu_harness: emulator log tail:\n%s\n", buf);
	}
	close(fd);
}

static int add_arg(struct emuh *e, const char *s)
{
	if (e->argc >= EMUH_MAX_ARGS - 1)
		return -1;
	e->argv[e->argc] = strdup(s);
	if (!e->argv[e->argc])
		return -1;
	e->argc++;
	e->argv[e->argc] = NULL;
	return 0;
}

/* Spawn with the current argv and wait for the ready file. */
static int spawn_and_wait(struct emuh *e, struct err *err)
{
	posix_spawn_file_actions_t fa;
	char buf[256];
	ssize_t n;
	int fd, rc, status, i;

	unlink(e->ready);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	rc = posix_spawn(&e->pid, e->argv[0], &fa, NULL, e->argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		errno = rc;
		e->pid = -1;
		return err_sys(err, "spawn %s", e->argv[0]);
	}
	for (i = 0; i < 2000; i++) {
		fd = open(e->ready, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n > 0) {
				buf[n] = '\0';
				buf[strcspn(buf, "\r\n")] = '\0';
				if (strncmp(buf, "http://", 7) == 0 && strrchr(buf, ':')) {
					snprintf(e->url, sizeof(e->url), "%s", buf);
					e->port = (int)strtol(strrchr(buf, ':') + 1, NULL, 10);
					return 0;
				}
			}
		}
		if (waitpid(e->pid, &status, WNOHANG) == e->pid) {
			e->pid = -1;
			print_log_tail(e);
			return err_set(err, ERR_IO, "the emulator exited before it was ready "
				       "(status %d); log: %s", status, e->log);
		}
		ut_sleep_ms(10);
	}
	print_log_tail(e);
	kill(e->pid, SIGKILL);
	waitpid(e->pid, &status, 0);
	e->pid = -1;
	return err_set(err, ERR_TIMEOUT, "the emulator did not become ready in 20 s");
}

int emuh_start(const struct emuh_opts *o, struct emuh **out, struct err *err)
{
	struct http_opts ho;
	struct emuh *e = NULL;
	const char *bin = emuh_binary();
	char data[PATH_MAX + 16];
	size_t i;
	int rc = -1;

	*out = NULL;
	if (!bin)
		return err_set(err, ERR_NOTFOUND, "durafs-emulator not found");
	e = calloc(1, sizeof(*e));
	if (!e)
		return err_set(err, ERR_NOMEM, "out of memory");
	e->pid = -1;
	snprintf(e->tmpdir, sizeof(e->tmpdir), "/tmp/durafs-emuh-XXXXXX");
	if (!mkdtemp(e->tmpdir)) {
		e->tmpdir[0] = '\0';
		err_sys(err, "mkdtemp");
		goto out;
	}
	snprintf(e->ready, sizeof(e->ready), "%s/ready", e->tmpdir);
	snprintf(e->log, sizeof(e->log), "%s/emulator.log", e->tmpdir);
	if (add_arg(e, bin) < 0 || add_arg(e, "--listen") < 0)
		goto nomem;
	e->port_arg = e->argc;
	if (add_arg(e, "127.0.0.1:0") < 0 || add_arg(e, "--ready-file") < 0 ||
	    add_arg(e, e->ready) < 0)
		goto nomem;
	if (o && o->no_auth && add_arg(e, "--no-auth") < 0)
		goto nomem;
	if (o && (o->data_dir || o->persistent)) {
		if (o->data_dir) {
			snprintf(data, sizeof(data), "%s", o->data_dir);
		} else {
			snprintf(data, sizeof(data), "%s/data", e->tmpdir);
			if (mkdir(data, 0700) < 0) {
				err_sys(err, "mkdir %s", data);
				goto out;
			}
		}
		if (add_arg(e, "--data-dir") < 0 || add_arg(e, data) < 0)
			goto nomem;
	}
	if (o && o->faults && (add_arg(e, "--faults") < 0 || add_arg(e, o->faults) < 0))
		goto nomem;
	for (i = 0; o && o->extra_args && o->extra_args[i]; i++)
		if (add_arg(e, o->extra_args[i]) < 0)
			goto nomem;
	if (spawn_and_wait(e, err) < 0)
		goto out;
	/* Pin the port so a restart comes back on the same URL. */
	snprintf(data, sizeof(data), "127.0.0.1:%d", e->port);
	free(e->argv[e->port_arg]);
	e->argv[e->port_arg] = strdup(data);
	if (!e->argv[e->port_arg])
		goto nomem;
	memset(&ho, 0, sizeof(ho));
	ho.max_retries = 3;
	ho.backoff_initial_ms = 20;
	ho.backoff_max_ms = 200;
	if (http_new(&ho, &e->http, err) < 0)
		goto out;
	*out = e;
	e = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	emuh_stop(e);
	return rc;
}

static void stop_process(struct emuh *e, int sig)
{
	int status, i;

	if (e->pid <= 0)
		return;
	kill(e->pid, sig);
	for (i = 0; i < 500; i++) {
		if (waitpid(e->pid, &status, WNOHANG) == e->pid) {
			e->pid = -1;
			return;
		}
		ut_sleep_ms(10);
	}
	kill(e->pid, SIGKILL);
	waitpid(e->pid, &status, 0);
	e->pid = -1;
}

void emuh_stop(struct emuh *e)
{
	int i;

	if (!e)
		return;
	stop_process(e, SIGTERM);
	http_free(e->http);
	if (e->tmpdir[0])
		nftw(e->tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	for (i = 0; i < e->argc; i++)
		free(e->argv[i]);
	free(e);
}

int emuh_restart(struct emuh *e, struct err *err)
{
	int i;

	stop_process(e, SIGKILL);
	/* The port may take a moment to be free again. */
	for (i = 0; i < 50; i++) {
		if (spawn_and_wait(e, err) == 0)
			return 0;
		ut_sleep_ms(100);
	}
	return -1;
}

const char *emuh_url(const struct emuh *e)
{
	return e->url;
}

int emuh_pid(const struct emuh *e)
{
	return (int)e->pid;
}

struct http *emuh_http(struct emuh *e)
{
	return e->http;
}

const char *emuh_log_path(const struct emuh *e)
{
	return e->log;
}

/* method url with an optional body of a content type. */
static int do_call(struct emuh *e, const char *method, const char *url, const char *ctype,
		   const void *body, size_t len, char **reply, struct err *err)
{
	struct http_req req;
	struct http_resp resp = { 0 };
	char ct[128];
	const char *hdrs[2] = { NULL, NULL };
	int rc = -1;

	if (reply)
		*reply = NULL;
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.body = body;
	req.body_len = len;
	req.body_fd = -1;
	req.no_auth = 1;
	req.retry = HTTP_RETRY_SAFE;
	if (ctype) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		hdrs[0] = ct;
		req.headers = hdrs;
	}
	if (http_do(e->http, &req, &resp, err) < 0)
		goto out;
	if (resp.status < 200 || resp.status > 299) {
		err_set(err, ERR_HTTP, "%s %s: HTTP %ld", method, url, resp.status);
		goto out;
	}
	if (reply) {
		*reply = resp.body;
		resp.body = NULL;
	}
	rc = 0;
out:
	http_resp_release(&resp);
	return rc;
}

int emuh_call(struct emuh *e, const char *method, const char *path, const char *body,
	      char **reply, struct err *err)
{
	char *url = NULL;
	size_t n = strlen(e->url) + strlen(path) + 1;
	int rc;

	url = malloc(n);
	if (!url)
		return err_set(err, ERR_NOMEM, "out of memory");
	snprintf(url, n, "%s%s", e->url, path);
	rc = do_call(e, method, url, body ? "application/json" : NULL, body,
		     body ? strlen(body) : 0, reply, err);
	free(url);
	return rc;
}

int emuh_faults(struct emuh *e, const char *rules_json, struct err *err)
{
	size_t n = strlen(rules_json) + 16;
	char *body = malloc(n);
	int rc;

	if (!body)
		return err_set(err, ERR_NOMEM, "out of memory");
	snprintf(body, n, "{\"rules\":%s}", rules_json);
	rc = emuh_call(e, "POST", "/_emulator/faults", body, NULL, err);
	free(body);
	return rc;
}

int emuh_reset(struct emuh *e, struct err *err)
{
	return emuh_call(e, "POST", "/_emulator/reset", "{}", NULL, err);
}

int emuh_stats(struct emuh *e, json_t **out, struct err *err)
{
	char *reply = NULL;
	int rc;

	*out = NULL;
	if (emuh_call(e, "GET", "/_emulator/stats", NULL, &reply, err) < 0)
		return -1;
	rc = jsonh_parse_object(reply ? reply : "", reply ? strlen(reply) : 0,
				"emulator stats", out, err);
	free(reply);
	return rc;
}

int emuh_counter(struct emuh *e, const char *name, int64_t *value, struct err *err)
{
	json_t *st = NULL, *ctr = NULL;
	int rc = -1;

	*value = 0;
	if (emuh_stats(e, &st, err) < 0)
		return -1;
	if (jsonh_opt_object(st, "counters", &ctr, err) < 0 ||
	    (ctr && jsonh_opt_int64(ctr, name, 0, value, err) < 0))
		goto out;
	rc = 0;
out:
	json_decref(st);
	return rc;
}

int emuh_requests(struct emuh *e, const char *kind, int status, int64_t *value,
		  struct err *err)
{
	json_t *st = NULL, *req = NULL, *k = NULL, *v;
	const char *key;
	char want[16];
	int rc = -1;

	*value = 0;
	if (emuh_stats(e, &st, err) < 0)
		return -1;
	if (jsonh_opt_object(st, "requests", &req, err) < 0)
		goto out;
	k = req ? json_object_get(req, kind) : NULL;
	snprintf(want, sizeof(want), "%d", status);
	if (k && json_is_object(k)) {
		json_object_foreach(k, key, v) {
			if (json_is_integer(v) && (status == 0 || strcmp(key, want) == 0))
				*value += json_integer_value(v);
		}
	}
	rc = 0;
out:
	json_decref(st);
	return rc;
}

int emuh_gcs_bucket(struct emuh *e, const char *bucket, int versioned, struct err *err)
{
	char body[512];

	snprintf(body, sizeof(body), "{\"name\":\"%s\",\"versioning\":{\"enabled\":%s}}",
		 bucket, versioned ? "true" : "false");
	return emuh_call(e, "POST", "/storage/v1/b?project=durafs-test", body, NULL, err);
}

int emuh_gcs_put(struct emuh *e, const char *bucket, const char *name, const void *data,
		 size_t len, struct err *err)
{
	char *eb = enc_url(bucket), *en = enc_url(name), *url = NULL;
	size_t n;
	int rc = -1;

	if (!eb || !en) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	n = strlen(e->url) + strlen(eb) + strlen(en) + 96;
	url = malloc(n);
	if (!url) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(url, n, "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s", e->url, eb, en);
	rc = do_call(e, "POST", url, "application/octet-stream", data, len, NULL, err);
out:
	free(eb);
	free(en);
	free(url);
	return rc;
}

struct fill_job {
	struct emuh *e;
	const char *bucket, *prefix;
	size_t n;
	size_t next;                /* protected by mu */
	pthread_mutex_t mu;
	int failed;                 /* protected by mu */
	struct err err;             /* first failure; protected by mu */
};

static void *fill_worker(void *arg)
{
	struct fill_job *j = arg;
	char name[1024], body[64];
	struct err err;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&j->mu);
		i = j->next++;
		if (j->failed)
			i = j->n;
		pthread_mutex_unlock(&j->mu);
		if (i >= j->n)
			break;
		snprintf(name, sizeof(name), "%s%06zu", j->prefix, i);
		snprintf(body, sizeof(body), "object %zu\n", i);
		if (emuh_gcs_put(j->e, j->bucket, name, body, strlen(body), &err) < 0) {
			pthread_mutex_lock(&j->mu);
			if (!j->failed)
				j->err = err;
			j->failed = 1;
			pthread_mutex_unlock(&j->mu);
			break;
		}
	}
	return NULL;
}

int emuh_gcs_fill(struct emuh *e, const char *bucket, const char *prefix, size_t n,
		  int threads, struct err *err)
{
	pthread_t tid[64];
	struct fill_job j;
	int i, started = 0;

	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	memset(&j, 0, sizeof(j));
	j.e = e;
	j.bucket = bucket;
	j.prefix = prefix;
	j.n = n;
	pthread_mutex_init(&j.mu, NULL);
	for (i = 0; i < threads; i++) {
		if (pthread_create(&tid[i], NULL, fill_worker, &j) != 0)
			break;
		started++;
	}
	if (started == 0)
		fill_worker(&j);
	for (i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_mutex_destroy(&j.mu);
	if (j.failed) {
		if (err)
			*err = j.err;
		return -1;
	}
	return 0;
}

int emuh_test_start(const char *who, const struct emuh_opts *eo,
		    const struct http_opts *ho, struct emuh **emu, struct http **http)
{
	struct err e;

	*http = NULL;
	log_set_level(getenv("DURAFS_TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	if (emuh_start(eo, emu, &e) < 0) {
		fprintf(stderr, "%s: cannot start the emulator: %s\n", who, e.msg);
		return -1;
	}
	if (http_new(ho, http, &e) < 0) {
		fprintf(stderr, "%s: http: %s\n", who, e.msg);
		emuh_stop(*emu);
		*emu = NULL;
		return -1;
	}
	return 0;
}

int emuh_test_start_noauth(const char *who, int max_retries, long backoff_max_ms,
			   struct emuh **emu, struct http **http)
{
	struct emuh_opts eo;
	struct http_opts ho;

	memset(&eo, 0, sizeof(eo));
	eo.no_auth = 1;
	memset(&ho, 0, sizeof(ho));
	ho.max_retries = max_retries;
	ho.backoff_initial_ms = 2;
	ho.backoff_max_ms = backoff_max_ms;
	return emuh_test_start(who, &eo, &ho, emu, http);
}

void emuh_test_stop(struct emuh *emu, struct http *http)
{
	http_free(http);
	emuh_stop(emu);
}

int emuh_mount_start(const char *tag, struct emuh **emu, char *dir, size_t len)
{
	struct emuh_opts eo = { .no_auth = 1 };
	char log[PATH_MAX + 16];
	struct err e;

	*emu = NULL;
	err_clear(&e);
	snprintf(dir, len, "/tmp/durafs-%s-XXXXXX", tag);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "setup: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (emuh_start(&eo, emu, &e) < 0 || emuh_gcs_bucket(*emu, "bkt", 0, &e) < 0) {
		fprintf(stderr, "setup: %s\n", e.msg);
		emuh_stop(*emu);
		*emu = NULL;
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		return -1;
	}
	snprintf(log, sizeof(log), "%s/test.log", dir);
	if (log_open(log, &e) < 0)
		fprintf(stderr, "setup: %s\n", e.msg);
	setenv("STORAGE_EMULATOR_HOST", emuh_url(*emu), 1);
	setenv("DURAFS_NO_METADATA", "1", 1);
	return 0;
}

void emuh_mount_stop(struct emuh *emu, const char *dir)
{
	log_close();
	emuh_stop(emu);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void emuh_must_faults(struct emuh *e, const char *rules_json)
{
	struct err err;

	if (emuh_faults(e, rules_json, &err) < 0)
		fail_msg("faults %s: %s", rules_json, err.msg);
}

void emuh_must_post(struct emuh *e, const char *path, const char *body)
{
	struct err err;

	if (emuh_call(e, "POST", path, body, NULL, &err) < 0)
		fail_msg("%s: %s", path, err.msg);
}

int64_t emuh_must_counter(struct emuh *e, const char *name)
{
	struct err err;
	int64_t v = 0;

	if (emuh_counter(e, name, &v, &err) < 0)
		fail_msg("counter %s: %s", name, err.msg);
	return v;
}

int64_t emuh_must_requests(struct emuh *e, const char *kind, int status)
{
	struct err err;
	int64_t v = 0;

	if (emuh_requests(e, kind, status, &v, &err) < 0)
		fail_msg("requests %s: %s", kind, err.msg);
	return v;
}
