/* Small helpers shared by the cmocka unit tests (not emulator-specific):
 * the UT_OK assertion, a test RSA key, clocks, temporary files with known
 * content, a growing read sink, the usual preconditions and a fresh
 * journal per test. Linked into
 * every unit test (Makefile UNIT_EXTRA); failures end the current test via
 * cmocka. */
#ifndef DURAFS_UNIT_UTIL_H
#define DURAFS_UNIT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "durafs/backend.h"
#include "durafs/err.h"

struct jnl;

/* A 1024-bit RSA private key in PEM (PKCS#8), generated for the tests
 * only: what a service account file's "private_key" holds. */
extern const char ut_rsa_key_pem[];

/* Run call (which may use the struct err e_ declared here) and fail the
 * test with its message and code when it returns < 0. */
#define UT_OK(call) do { struct err e_; err_clear(&e_); \
	if ((call) < 0) fail_msg("line %d: %s: %s (%s)", __LINE__, #call, e_.msg, \
				 err_code_name(e_.code)); \
	} while (0)

/* CLOCK_MONOTONIC in milliseconds. */
int64_t ut_now_ms(void);
/* CLOCK_REALTIME in nanoseconds. */
int64_t ut_wall_ns(void);
/* Sleep ms milliseconds (restarted on EINTR). */
void ut_sleep_ms(long ms);

/* n bytes of a deterministic pattern for seed (the same seed gives the
 * same bytes at the same offsets); malloc'd, the caller frees it. Fails
 * the test when out of memory. */
unsigned char *ut_pattern(size_t n, unsigned seed);
/* Write n bytes of data at off of the file path (created 0600; truncated
 * first when trunc), handling short writes and EINTR; fails the test on
 * error. */
void ut_write_at(const char *path, const void *data, size_t n, off_t off, int trunc);

/* An unlinked temporary file of the n bytes ut_pattern(n, seed); *m filled
 * from it with mtime 1700000000 + seed. Returns the fd (the caller closes
 * it); fails the test on any error. */
int ut_pattern_file(size_t n, unsigned seed, struct be_meta *m);
/* An unlinked temporary file holding the string s; *m filled, mtime
 * 1700000000. Returns the fd (the caller closes it); fails the test on error. */
int ut_str_file(const char *s, struct be_meta *m);

/* Preconditions: the path must not exist / must be at version *v. */
struct be_pre ut_pre_absent(void);
struct be_pre ut_pre_match(const struct be_version *v);

/* be_put the string s at path with pre = absent; *out (may be NULL) gets
 * the new entry. Fails the test when the put fails. */
void ut_put_str(struct be *b, const char *path, const char *s, struct be_entry *out);

/* A growing buffer for be_read sinks: p is malloc'd (the caller frees it),
 * always NUL-terminated after the n bytes once anything was appended. */
struct ut_buf {
	char *p;
	size_t n, cap;
};

/* A be_read sink appending to the struct ut_buf *ud (fails the test when
 * out of memory). */
int ut_buf_sink(void *ud, const void *data, size_t len);

/* Read path (at ver, or current when NULL) whole through b and fail the
 * test unless it equals the first n bytes of fd. */
void ut_check_remote_fd(struct be *b, const char *path, const struct be_version *ver,
			int fd, size_t n);

/* Read path (current version) whole through b and fail the test unless
 * it is exactly the n bytes of data. */
void ut_check_remote_mem(struct be *b, const char *path, const void *data, size_t n);

/* Fail the test (naming line and what) with e's message when rc != 0:
 * the body of the journal tests' OK(expr) macro. */
void ut_ok_at(int rc, const struct err *e, const char *what, int line);

/* One test's journal: path (journal.db) in the temporary dir dir. */
struct ut_jnl_fx {
	char dir[128];
	char path[192];
	struct jnl *j;
};

/* cmocka setup: *state becomes a malloc'd struct ut_jnl_fx with a fresh
 * temporary dir and the journal opened in it; fails the test on error. */
int ut_jnl_setup(void **state);
/* cmocka teardown for ut_jnl_setup: the journal closed, the dir removed,
 * the fixture freed; fails the test when the dir cannot be removed. */
int ut_jnl_teardown(void **state);

#endif
