/* Unit tests for jnl_dir_info (sync/journal.c): what a mount learns about a
 * stored listing without reading its entries -- the count, the fetch time
 * and the complete flag agree with jnl_dir_get through put, entry edits,
 * invalidation, stale marks, forget and a reopen (a remount), and stay
 * cheap for a listing of 100,000 entries. */
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

#include "durafs/journal.h"
#include "unit_util.h"

#define OK(expr) ut_ok_at((expr), &e, #expr, __LINE__)

/* jnl_dir_info must agree with jnl_dir_get on dir. */
static void check_agrees(struct jnl *j, const char *dir)
{
	struct jnl_entry *v = NULL;
	size_t n = 0, ni = 99;
	int64_t fg = 0, fi = -1;
	int cg = 0, ci = -1, rg, ri;
	struct err e, e2;

	rg = jnl_dir_get(j, dir, &v, &n, &fg, &cg, &e);
	ri = jnl_dir_info(j, dir, &ni, &fi, &ci, &e2);
	assert_int_equal(rg, ri);
	if (rg < 0) {
		assert_int_equal(e.code, e2.code);
		assert_int_equal(ni, 0);
		assert_int_equal(fi, 0);
		assert_int_equal(ci, 0);
		return;
	}
	assert_int_equal(ni, n);
	assert_int_equal(fi, fg);
	assert_int_equal(ci, cg);
	jnl_entries_free(v, n);
}

/* in[0..2]: a file "a" (size 1, remote "g1.1:"), a folder "b" and a
 * symlink "c" (size 3); the rest zeroed. */
static void sample_entries(struct jnl_entry in[3])
{
	memset(in, 0, 3 * sizeof(in[0]));
	in[0].name = "a";
	in[0].type = JNL_FILE;
	in[0].size = 1;
	in[0].remote = "g1.1:";
	in[1].name = "b";
	in[1].type = JNL_DIR;
	in[2].name = "c";
	in[2].type = JNL_SYMLINK;
	in[2].size = 3;
}

static void test_not_found(void **state)
{
	struct ut_jnl_fx *f = *state;
	size_t n = 7;
	int64_t t = 7;
	int c = 7;
	struct err e;

	err_clear(&e);
	assert_int_equal(jnl_dir_info(f->j, "nothing", &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(n, 0);
	assert_int_equal(t, 0);
	assert_int_equal(c, 0);
	/* The root too. */
	assert_int_equal(jnl_dir_info(f->j, "", &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
}

static void test_invalid_dir(void **state)
{
	struct ut_jnl_fx *f = *state;
	size_t n;
	int64_t t;
	int c;
	struct err e;

	assert_int_equal(jnl_dir_info(f->j, "/abs", &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(jnl_dir_info(f->j, "a//b", &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(jnl_dir_info(f->j, NULL, &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
}

static void test_follows_changes(void **state)
{
	struct ut_jnl_fx *f = *state;
	struct jnl_entry in[3], one;
	size_t n;
	int64_t t;
	int c;
	struct err e;

	sample_entries(in);

	/* An empty listing is a listing (complete, 0 entries). */
	OK(jnl_dir_put(f->j, "d", in, 0, 500, &e));
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 0);
	assert_int_equal(t, 500);
	assert_int_equal(c, 1);
	check_agrees(f->j, "d");

	OK(jnl_dir_put(f->j, "d", in, 3, 1000, &e));
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 3);
	assert_int_equal(t, 1000);
	assert_int_equal(c, 1);
	check_agrees(f->j, "d");

	/* Another directory and the root do not count. */
	OK(jnl_dir_put(f->j, "", in, 2, 2000, &e));
	OK(jnl_dir_put(f->j, "d/b", in, 1, 3000, &e));
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 3);
	OK(jnl_dir_info(f->j, "", &n, &t, &c, &e));
	assert_int_equal(n, 2);
	assert_int_equal(t, 2000);
	check_agrees(f->j, "");
	check_agrees(f->j, "d/b");

	/* Single-entry edits change the count, not the flag or time. */
	memset(&one, 0, sizeof(one));
	one.name = "z";
	one.type = JNL_FILE;
	OK(jnl_entry_put(f->j, "d", &one, &e));
	OK(jnl_entry_put(f->j, "d", &one, &e));      /* a replace: still one */
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 4);
	assert_int_equal(t, 1000);
	assert_int_equal(c, 1);
	OK(jnl_entry_del(f->j, "d", "a", &e));
	OK(jnl_entry_del(f->j, "d", "a", &e));
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 3);
	check_agrees(f->j, "d");

	/* Invalidated: entries kept, not complete. */
	OK(jnl_dir_invalidate(f->j, "d", &e));
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 3);
	assert_int_equal(c, 0);
	check_agrees(f->j, "d");

	/* Survives a reopen (a remount). */
	jnl_close(f->j);
	f->j = NULL;
	OK(jnl_open(f->path, NULL, &f->j, NULL, &e));
	OK(jnl_dir_info(f->j, "d", &n, &t, &c, &e));
	assert_int_equal(n, 3);
	assert_int_equal(t, 1000);
	assert_int_equal(c, 0);
	OK(jnl_dir_info(f->j, "", &n, &t, &c, &e));
	assert_int_equal(n, 2);
	assert_int_equal(c, 1);

	/* Forgotten with everything below. */
	OK(jnl_dir_forget(f->j, "d", &e));
	err_clear(&e);
	assert_int_equal(jnl_dir_info(f->j, "d", &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(jnl_dir_info(f->j, "d/b", &n, &t, &c, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	check_agrees(f->j, "d");
	OK(jnl_dir_info(f->j, "", &n, &t, &c, &e));
	assert_int_equal(n, 2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 100,000 entries: the info is right and much cheaper than reading them
 * (what a remount does first for every directory it touches). */
/* jnl_dir_stale: the listing stays complete with its entries, fetched 0
 * (older than any TTL), also after a reopen; a later put is fresh again;
 * nothing stored: ERR_NOTFOUND. */
static void test_stale(void **state)
{
	struct ut_jnl_fx *f = *state;
	struct jnl_entry in[3];
	size_t n;
	int64_t t;
	int c;
	struct err e;

	sample_entries(in);
	err_clear(&e);
	assert_int_equal(jnl_dir_stale(f->j, "s", &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(jnl_dir_stale(f->j, "/abs", &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	OK(jnl_dir_put(f->j, "s", in, 2, 1234, &e));
	OK(jnl_dir_stale(f->j, "s", &e));
	OK(jnl_dir_info(f->j, "s", &n, &t, &c, &e));
	assert_int_equal(n, 2);
	assert_int_equal(t, 0);
	assert_int_equal(c, 1);
	check_agrees(f->j, "s");
	jnl_close(f->j);
	f->j = NULL;
	OK(jnl_open(f->path, NULL, &f->j, NULL, &e));
	OK(jnl_dir_info(f->j, "s", &n, &t, &c, &e));
	assert_int_equal(n, 2);
	assert_int_equal(t, 0);
	assert_int_equal(c, 1);
	OK(jnl_dir_put(f->j, "s", in, 1, 5678, &e));
	OK(jnl_dir_info(f->j, "s", &n, &t, &c, &e));
	assert_int_equal(n, 1);
	assert_int_equal(t, 5678);
	assert_int_equal(c, 1);
	/* the root's listing too */
	OK(jnl_dir_put(f->j, "", in, 2, 99, &e));
	OK(jnl_dir_stale(f->j, "", &e));
	OK(jnl_dir_info(f->j, "", &n, &t, &c, &e));
	assert_int_equal(t, 0);
	assert_int_equal(c, 1);
}

static void test_big(void **state)
{
	struct ut_jnl_fx *f = *state;
	enum { N = 100000 };
	struct jnl_entry *in = calloc(N, sizeof(*in));
	char *names = malloc((size_t)N * 8);
	struct jnl_entry *v = NULL;
	size_t n = 0, i;
	int64_t t;
	int c, k;
	double t0, t_info, t_get;
	struct err e;

	assert_non_null(in);
	assert_non_null(names);
	for (i = 0; i < N; i++) {
		snprintf(names + i * 8, 8, "f%06zu", i);
		in[i].name = names + i * 8;
		in[i].type = JNL_FILE;
		in[i].size = i;
		in[i].remote = "g5.1:";
	}
	OK(jnl_dir_put(f->j, "big", in, N, 42, &e));
	t0 = now_s();
	for (k = 0; k < 5; k++)
		OK(jnl_dir_info(f->j, "big", &n, &t, &c, &e));
	t_info = (now_s() - t0) / 5;
	assert_int_equal(n, N);
	assert_int_equal(t, 42);
	assert_int_equal(c, 1);
	t0 = now_s();
	OK(jnl_dir_get(f->j, "big", &v, &n, &t, &c, &e));
	t_get = now_s() - t0;
	assert_int_equal(n, N);
	jnl_entries_free(v, n);
	print_message("100,000 entries: jnl_dir_info %.1f ms, jnl_dir_get %.1f ms\n",
		      t_info * 1e3, t_get * 1e3);
	/* Counting reads no entry text: it must not cost what reading the
	 * listing does (generous, sanitizers and load vary). */
	assert_true(t_info < t_get);
	free(in);
	free(names);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_not_found, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_invalid_dir, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_follows_changes, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_stale, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_big, ut_jnl_setup, ut_jnl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
