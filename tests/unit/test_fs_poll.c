/* The pure half of the change poller (fs/fs_poll.c): the sorted string set
 * and the plan built from change reports (which listings to refetch, which
 * kernel names to drop, which moved-away trees to forget). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/fs_poll.h"

static struct be_change chg(const char *old_path, const char *new_dir, const char *new_name,
			    int gone, enum be_type type)
{
	struct be_change c;

	memset(&c, 0, sizeof(c));
	c.id = "id1";
	c.old_path = old_path;
	c.new_dir = new_dir;
	c.new_name = new_name;
	c.gone = gone;
	c.type = type;
	return c;
}

static void set_is(const struct fs_strset *s, const char *const *want, size_t n)
{
	size_t i;

	if (s->n != n) {
		for (i = 0; i < s->n; i++)
			print_message("    has \"%s\"\n", s->v[i]);
		fail_msg("set has %zu strings, want %zu", s->n, n);
	}
	for (i = 0; i < n; i++)
		assert_string_equal(s->v[i], want[i]);
}

static void test_strset(void **state)
{
	struct fs_strset s = { 0 };
	char buf[32];
	int i;

	(void)state;
	assert_int_equal(fs_strset_add(&s, "b"), 0);
	assert_int_equal(fs_strset_add(&s, "a"), 0);
	assert_int_equal(fs_strset_add(&s, "b"), 0);
	assert_int_equal(fs_strset_add(&s, ""), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.v[0], "");
	assert_string_equal(s.v[1], "a");
	assert_string_equal(s.v[2], "b");
	assert_true(fs_strset_has(&s, "a"));
	assert_false(fs_strset_has(&s, "c"));
	for (i = 999; i >= 0; i--) {
		snprintf(buf, sizeof(buf), "d%04d", i);
		assert_int_equal(fs_strset_add(&s, buf), 0);
		assert_int_equal(fs_strset_add(&s, buf), 0);
	}
	assert_int_equal(s.n, 1003);
	for (i = 1; i < (int)s.n; i++)
		assert_true(strcmp(s.v[i - 1], s.v[i]) < 0);
	fs_strset_release(&s);
	assert_int_equal(s.n, 0);
	assert_null(s.v);
	fs_strset_release(&s);
}

/* A new file in a subdirectory: its directory is refetched, its name's
 * negative kernel entry dropped. */
static void test_plan_new_file(void **state)
{
	struct fs_poll_plan p;
	struct be_change c = chg(NULL, "a/b", "x.csv", 0, BE_FILE);
	static const char *const dirs[] = { "a/b" }, *const names[] = { "a/b/x.csv" };

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(fs_poll_plan_add(&p, &c), 0);
	set_is(&p.refresh, dirs, 1);
	set_is(&p.names, names, 1);
	set_is(&p.drop, NULL, 0);
	assert_int_equal(p.changes, 1);
	fs_poll_plan_release(&p);
}

/* Content changed in place at the top level. */
static void test_plan_modified(void **state)
{
	struct fs_poll_plan p;
	struct be_change c = chg("top.txt", "", "top.txt", 0, BE_FILE);
	static const char *const dirs[] = { "" }, *const names[] = { "top.txt" };

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(fs_poll_plan_add(&p, &c), 0);
	assert_int_equal(fs_poll_plan_add(&p, &c), 0);   /* twice: idempotent */
	set_is(&p.refresh, dirs, 1);
	set_is(&p.names, names, 1);
	set_is(&p.drop, NULL, 0);
	assert_int_equal(p.changes, 2);
	fs_poll_plan_release(&p);
}

/* A file moved between directories, a file trashed, a directory renamed
 * (its tree forgotten), a directory trashed, an unknown removed item. */
static void test_plan_moves(void **state)
{
	struct fs_poll_plan p;
	struct be_change c[] = {
		chg("a/f", "b", "g", 0, BE_FILE),
		chg("a/gone.txt", NULL, NULL, 1, BE_NONE),
		chg("d1", "", "d2", 0, BE_DIR),
		chg("t/dead", NULL, NULL, 1, BE_DIR),
		chg(NULL, NULL, NULL, 1, BE_NONE),
	};
	static const char *const dirs[] = { "", "a", "b", "t" };
	static const char *const names[] = { "a/f", "a/gone.txt", "b/g", "d1", "d2", "t/dead" };
	static const char *const drops[] = { "a/gone.txt", "d1", "t/dead" };
	size_t i;

	(void)state;
	memset(&p, 0, sizeof(p));
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		assert_int_equal(fs_poll_plan_add(&p, &c[i]), 0);
	set_is(&p.refresh, dirs, 4);
	set_is(&p.names, names, 6);
	set_is(&p.drop, drops, 3);
	fs_poll_plan_release(&p);
}

/* A directory whose content changed in place (a child's change reports the
 * directory only through the child): not dropped. */
static void test_plan_dir_in_place(void **state)
{
	struct fs_poll_plan p;
	struct be_change c = chg("d", "", "d", 0, BE_DIR);

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(fs_poll_plan_add(&p, &c), 0);
	assert_int_equal(p.drop.n, 0);
	assert_int_equal(p.refresh.n, 1);
	fs_poll_plan_release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strset),
		cmocka_unit_test(test_plan_new_file),
		cmocka_unit_test(test_plan_modified),
		cmocka_unit_test(test_plan_moves),
		cmocka_unit_test(test_plan_dir_in_place),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
