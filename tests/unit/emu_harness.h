/* Test harness for cmocka programs that need a real durafs-emulator: start
 * it on a free loopback port, stop or restart it, and drive its control API
 * (faults, stats, reset) through sync/http.c; plus failing-on-error forms
 * for cmocka tests. Linked into every unit test. */
#ifndef DURAFS_EMU_HARNESS_H
#define DURAFS_EMU_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "durafs/err.h"
#include "durafs/http.h"

struct emuh;

struct emuh_opts {
	int no_auth;                    /* pass --no-auth */
	int persistent;                 /* 1: --data-dir in a temporary directory
					 * (removed by emuh_stop), so state survives
					 * emuh_restart */
	const char *data_dir;           /* explicit --data-dir (kept); overrides
					 * persistent */
	const char *faults;             /* --faults SPEC, or NULL */
	const char *const *extra_args;  /* more arguments, NULL-terminated, or NULL */
};

/* The emulator binary: $DURAFS_EMULATOR, else $DURAFS_BUILD/durafs-emulator,
 * else durafs-emulator beside this test's build directory (BUILD/tests/..),
 * else build/durafs-emulator. Returns a static path, or NULL (with a reason
 * on stderr) when none is executable. */
const char *emuh_binary(void);

/* Start an emulator (o may be NULL: in memory, auth enforced). Its output
 * goes to a log file in a private temporary directory (its tail is printed
 * when it fails to start). Waits until it accepts connections (20 s max).
 * Returns 0 and *out, or -1 with *err. */
int emuh_start(const struct emuh_opts *o, struct emuh **out, struct err *err);

/* Stop it (SIGTERM, SIGKILL after 5 s), reap it, remove the temporary
 * directory. NULL is fine. */
void emuh_stop(struct emuh *e);

/* Kill -9 the process (a crash) and start it again on the same port with
 * the same arguments (state survives only with a data dir). */
int emuh_restart(struct emuh *e, struct err *err);

/* Base URL "http://127.0.0.1:PORT"; valid until emuh_stop. */
const char *emuh_url(const struct emuh *e);
/* Process id (for tests that signal it themselves). */
int emuh_pid(const struct emuh *e);
/* A shared HTTP client (no auth, 3 quick retries) tests may use to set up
 * remote state; owned by the harness. Thread-safe like any http client. */
struct http *emuh_http(struct emuh *e);
/* Path of the emulator's log file. */
const char *emuh_log_path(const struct emuh *e);

/* A control or API call: method on base URL + path, optional JSON body.
 * *reply (may be NULL) gets the malloc'd body. Fails on a non-2xx status
 * with the emulator's message. */
int emuh_call(struct emuh *e, const char *method, const char *path,
	      const char *body, char **reply, struct err *err);

/* Replace the fault rules with rules_json (a JSON array, e.g.
 * "[{\"kind\":\"status\",\"status\":503,\"fraction\":0.3}]"); "[]" clears. */
int emuh_faults(struct emuh *e, const char *rules_json, struct err *err);
/* POST /_emulator/reset: state, faults and stats cleared. */
int emuh_reset(struct emuh *e, struct err *err);
/* GET /_emulator/stats as a new JSON reference. */
int emuh_stats(struct emuh *e, json_t **out, struct err *err);
/* One counter of stats.counters (0 when absent). */
int emuh_counter(struct emuh *e, const char *name, int64_t *value, struct err *err);
/* Sum of stats.requests[kind][*] (every status), or of one status when
 * status != 0. */
int emuh_requests(struct emuh *e, const char *kind, int status, int64_t *value,
		  struct err *err);

/* Create a GCS bucket (versioning on when versioned != 0). */
int emuh_gcs_bucket(struct emuh *e, const char *bucket, int versioned, struct err *err);
/* Upload len bytes as object name of bucket with one media request
 * (unguarded; for test setup only). */
int emuh_gcs_put(struct emuh *e, const char *bucket, const char *name,
		 const void *data, size_t len, struct err *err);
/* Create objects prefix + "%06zu" (i = 0..n-1) with small bodies using
 * `threads` parallel media uploads. */
int emuh_gcs_fill(struct emuh *e, const char *bucket, const char *prefix, size_t n,
		  int threads, struct err *err);

/* --- for cmocka tests: each fails the current test on error ---------------- */

/* A test's group setup: log level ERROR (DEBUG when $DURAFS_TEST_DEBUG is
 * set), then emuh_start(eo) into *emu and http_new(ho) into *http (the
 * test's own client; the caller frees it). who names the test in the
 * message printed on stderr on failure; returns 0, or -1 with nothing left
 * running. */
int emuh_test_start(const char *who, const struct emuh_opts *eo,
		    const struct http_opts *ho, struct emuh **emu, struct http **http);
/* emuh_test_start with the usual options: an emulator in memory without
 * auth, and a client retrying max_retries times with a backoff from 2 ms
 * up to backoff_max_ms. */
int emuh_test_start_noauth(const char *who, int max_retries, long backoff_max_ms,
			   struct emuh **emu, struct http **http);
/* The group teardown's counterpart: http_free(http), emuh_stop(emu); NULLs
 * are fine. */
void emuh_test_stop(struct emuh *emu, struct http *http);
/* The setup of a test of fs/mount.c: a temporary directory
 * "/tmp/durafs-<tag>-XXXXXX" into dir (len bytes), an emulator without auth
 * holding bucket "bkt", the log sent to dir/test.log (expected failures log
 * errors), and the environment pointing GCS at the emulator
 * (STORAGE_EMULATOR_HOST, DURAFS_NO_METADATA=1; Drive's endpoint is left
 * to the test).
 * 0 with *emu, or -1 with the reason on stderr and nothing left running. */
int emuh_mount_start(const char *tag, struct emuh **emu, char *dir, size_t len);
/* Its counterpart: the log closed, the emulator stopped, dir removed. */
void emuh_mount_stop(struct emuh *emu, const char *dir);
/* emuh_faults; fails the test on error. */
void emuh_must_faults(struct emuh *e, const char *rules_json);
/* POST body (may be NULL) to a control path, reply ignored; fails the test
 * on error. */
void emuh_must_post(struct emuh *e, const char *path, const char *body);
/* emuh_counter; fails the test on error. */
int64_t emuh_must_counter(struct emuh *e, const char *name);
/* emuh_requests; fails the test on error. */
int64_t emuh_must_requests(struct emuh *e, const char *kind, int status);

#endif
