/* Stored listings of the filesystem core (fs/fs_dir.c) against a real
 * durafs-emulator through the GCS backend: a fetch overtaken by a forget
 * (a committed directory rename) is fetched again rather than stored; a
 * listing marked stale (the change poller) keeps answering while its
 * refetch fails; a stale listing answers after a bounded wait while the
 * remote is slow, and is revalidated in the background. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "durafs/journal.h"
#include "durafs/mopts.h"
#include "emu_harness.h"
#include "fs_fixture.h"
#include "unit_util.h"
#include "../../fs/fs_i.h"

#define BKT "fsdir"

static struct emuh *emu;
static struct http *http;

static int group_setup(void **state)
{
	(void)state;
	return ffx_group_start("test_fs_dir_emu", BKT, &emu, &http);
}

static int group_teardown(void **state)
{
	(void)state;
	ffx_group_stop(emu, http);
	return 0;
}

static int setup(void **state)
{
	*state = ffx_new(emu, http, BKT, "/tmp/fsdiremu.XXXXXX");
	return 0;
}

static int teardown(void **state)
{
	ffx_free(*state, http);
	return 0;
}

static void put(const char *name)
{
	UT_OK(emuh_gcs_put(emu, BKT, name, "x", 1, &e_));
}

/* The merged listing of dir as "a,b,c" (or "" when empty) into buf. */
static int list_names(struct fs_fx *f, const char *dir, char *buf, size_t len)
{
	struct fs_dsnap_ent *v = NULL;
	char *names = NULL;
	size_t n = 0, i, pos = 0;
	int rc;

	buf[0] = '\0';
	rc = fs_dir_list(f->fs, dir, &v, &n, &names);
	for (i = 0; rc == 0 && i < n; i++) {
		int w = snprintf(buf + pos, len - pos, "%s%s", i ? "," : "", names + v[i].name_off);

		assert_true(w > 0 && (size_t)w < len - pos);
		pos += (size_t)w;
	}
	free(v);
	free(names);
	return rc;
}

/* Poll the listing of dir until it is want (at most about 20 s; the
 * stored listing meanwhile must be `before`). */
static void wait_names(struct fs_fx *f, const char *dir, const char *before, const char *want)
{
	char buf[256];
	int i;

	for (i = 0; i < 200; i++) {
		assert_int_equal(list_names(f, dir, buf, sizeof(buf)), 0);
		if (!strcmp(buf, want))
			return;
		assert_string_equal(buf, before);
		ut_sleep_ms(100);
	}
	fail_msg("the listing of %s stayed \"%s\", want \"%s\"", dir, buf, want);
}

/* hits of the fault rule at index i. */
static int64_t fault_hits(size_t i)
{
	char *reply = NULL;
	json_t *j, *r;
	json_error_t je;
	int64_t hits = -1;

	UT_OK(emuh_call(emu, "GET", "/_emulator/faults", NULL, &reply, &e_));
	j = json_loads(reply, 0, &je);
	assert_non_null(j);
	r = json_array_get(json_object_get(j, "rules"), i);
	if (r)
		hits = json_integer_value(json_object_get(r, "hits"));
	json_decref(j);
	free(reply);
	return hits;
}

struct refresh_arg {
	struct fs *fs;
	const char *dir;
	int rc;
};

static void *refresh_main(void *p)
{
	struct refresh_arg *a = p;

	a->rc = fs_dir_refresh(a->fs, a->dir);
	return NULL;
}

/* A refetch whose listing request is held until after the directory was
 * forgotten (a rename committed): what it got is not stored as the
 * listing; it is fetched again, so the stored listing was taken after the
 * forget. */
static void test_forget_overtakes_fetch(void **state)
{
	struct fs_fx *f = *state;
	struct refresh_arg a = { f->fs, "d", -1 };
	pthread_t t;
	char buf[256];
	size_t n;
	int64_t fetched, forgot;
	int complete;

	put("d/a");
	assert_int_equal(list_names(f, "d", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a");
	fs_dir_invalidate(f->fs, "d");
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"ms\":800,\"method\":\"GET\","
			 "\"query\":\"prefix=d%2F&delimiter\",\"count\":1}]");
	assert_int_equal(pthread_create(&t, NULL, refresh_main, &a), 0);
	while (fault_hits(0) < 1)
		ut_sleep_ms(10);
	put("d/b");
	forgot = fs_now_ms();
	UT_OK(fs_dir_forget(f->fs, "d", &e_));
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(a.rc, 0);
	UT_OK(jnl_dir_info(f->j, "d", &n, &fetched, &complete, &e_));
	assert_int_equal(complete, 1);
	assert_int_equal(n, 2);
	assert_true(fetched >= forgot);
	assert_int_equal(list_names(f, "d", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a,b");
}

/* A listing marked stale answers (whole) while its refetch fails; once
 * the remote answers, a refetch shows the change. */
static void test_stale_mark_answers_while_refetch_fails(void **state)
{
	struct fs_fx *f = *state;
	char buf[256];
	size_t n;
	int64_t fetched;
	int complete;

	put("p/a");
	assert_int_equal(list_names(f, "p", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a");
	fs_dir_invalidate(f->fs, "p");
	UT_OK(jnl_dir_info(f->j, "p", &n, &fetched, &complete, &e_));
	assert_int_equal(complete, 1);
	assert_int_equal(fetched, 0);
	assert_int_equal(n, 1);
	put("p/b");
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":503,\"method\":\"GET\"}]");
	assert_int_equal(list_names(f, "p", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a");
	/* never listed: nothing to answer with */
	assert_int_equal(list_names(f, "q", buf, sizeof(buf)), -EIO);
	/* after a failure, stale listings answer at once for a TTL and are
	 * refetched in the background */
	emuh_must_faults(emu, "[]");
	fs_dir_invalidate(f->fs, "p");
	wait_names(f, "p", "a", "a,b");
}

/* Past the TTL, a stale listing answers after the bounded wait while its
 * refetch is held by the remote (it would show b); the refetch lands in
 * the background. */
static void test_stale_answers_while_remote_slow(void **state)
{
	struct fs_fx *f = *state;
	char buf[256];

	f->fs->ttl_ms = 100;
	put("s/a");
	assert_int_equal(list_names(f, "s", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a");
	ut_sleep_ms(150);
	put("s/b");
	emuh_must_faults(emu, "[{\"kind\":\"latency\",\"ms\":3500,\"method\":\"GET\","
			 "\"query\":\"prefix=s%2F&delimiter\",\"count\":1}]");
	assert_int_equal(list_names(f, "s", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a");
	assert_int_equal(fault_hits(0), 1);
	/* answers at once from now on, until the refetch lands */
	assert_int_equal(list_names(f, "s", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a");
	f->fs->ttl_ms = 60000;
	wait_names(f, "s", "a", "a,b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forget_overtakes_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_mark_answers_while_refetch_fails,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_answers_while_remote_slow, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
