/* Unit tests for fs/inode.c: lookup counts, forget, paths, renames,
 * detach, generations, and concurrent use. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/inode.h"

static void assert_path(struct ino_table *t, uint64_t ino, const char *want)
{
	char *p = NULL;

	assert_int_equal(ino_path(t, ino, &p), 0);
	assert_string_equal(p, want);
	free(p);
}

static void test_root_and_lookup(void **state)
{
	struct ino_table *t = NULL;
	uint64_t a, a2, b, gen_a, gen_a2, n, f;
	char *p = NULL;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_count(t), 1);
	assert_path(t, INO_ROOT, "");
	assert_int_equal(ino_get(t, INO_ROOT, "a", &a, &gen_a), 0);
	assert_true(a > INO_ROOT);
	assert_int_equal(ino_get(t, INO_ROOT, "a", &a2, &gen_a2), 0);
	assert_int_equal(a, a2);
	assert_int_equal(gen_a, gen_a2);
	assert_int_equal(ino_nlookup(t, a, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ino_get(t, a, "b", &b, NULL), 0);
	assert_path(t, b, "a/b");
	assert_int_equal(ino_child_path(t, b, "c", &p), 0);
	assert_string_equal(p, "a/b/c");
	free(p);
	assert_int_equal(ino_child_path(t, INO_ROOT, "top", &p), 0);
	assert_string_equal(p, "top");
	free(p);
	assert_int_equal(ino_find(t, a, "b", &f), 0);
	assert_int_equal(f, b);
	assert_int_equal(ino_find(t, a, "zz", &f), -ENOENT);
	assert_int_equal(ino_get(t, 999999, "x", &f, NULL), -ENOENT);
	assert_int_equal(ino_get(t, INO_ROOT, "", &f, NULL), -EINVAL);
	assert_int_equal(ino_path(t, 424242, &p), -ENOENT);
	assert_int_equal(ino_count(t), 3);
	ino_table_free(t);
}

static void test_forget_frees_bottom_up(void **state)
{
	struct ino_table *t = NULL;
	uint64_t a, b, n;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "a", &a, NULL), 0);
	assert_int_equal(ino_get(t, a, "b", &b, NULL), 0);
	/* The parent is forgotten first: kept while its child lives. */
	ino_forget(t, a, 1);
	assert_true(ino_exists(t, a));
	assert_int_equal(ino_nlookup(t, a, &n), 0);
	assert_int_equal(n, 0);
	assert_path(t, b, "a/b");
	ino_forget(t, b, 1);
	assert_false(ino_exists(t, b));
	assert_false(ino_exists(t, a));
	assert_int_equal(ino_count(t), 1);
	/* Over-forgetting is clamped; the root is never freed. */
	assert_int_equal(ino_get(t, INO_ROOT, "c", &a, NULL), 0);
	ino_forget(t, a, 5);
	assert_false(ino_exists(t, a));
	ino_forget(t, INO_ROOT, 100);
	assert_true(ino_exists(t, INO_ROOT));
	ino_forget(t, 777, 1);
	ino_table_free(t);
}

static void test_inos_never_reused_generations_unique(void **state)
{
	struct ino_table *t = NULL;
	uint64_t a, gen_a, a2, gen_a2;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "f", &a, &gen_a), 0);
	ino_detach(t, INO_ROOT, "f");
	assert_int_equal(ino_get(t, INO_ROOT, "f", &a2, &gen_a2), 0);
	assert_int_not_equal(a, a2);
	assert_int_not_equal(gen_a, gen_a2);
	ino_forget(t, a, 1);
	ino_forget(t, a2, 1);
	assert_int_equal(ino_get(t, INO_ROOT, "f", &a, &gen_a), 0);
	assert_int_not_equal(a, a2);
	assert_int_not_equal(gen_a, gen_a2);
	ino_table_free(t);
}

static void test_detach_keeps_open_inode(void **state)
{
	struct ino_table *t = NULL;
	uint64_t d, f, x;
	char *p = NULL;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "d", &d, NULL), 0);
	assert_int_equal(ino_get(t, d, "f", &f, NULL), 0);
	ino_detach(t, d, "f");
	assert_true(ino_exists(t, f));
	assert_int_equal(ino_path(t, f, &p), -ESTALE);
	assert_int_equal(ino_find(t, d, "f", &x), -ENOENT);
	/* A detached directory cannot get new children. */
	ino_detach(t, INO_ROOT, "d");
	assert_int_equal(ino_get(t, d, "g", &x, NULL), -ENOENT);
	assert_int_equal(ino_path(t, d, &p), -ESTALE);
	ino_forget(t, d, 1);
	assert_true(ino_exists(t, d));     /* f still names it as parent */
	ino_forget(t, f, 1);
	assert_false(ino_exists(t, f));
	assert_false(ino_exists(t, d));
	assert_int_equal(ino_count(t), 1);
	ino_table_free(t);
}

static void test_rename_moves_subtree(void **state)
{
	struct ino_table *t = NULL;
	uint64_t a, b, c, x, y, f, parent;
	char *name = NULL;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "a", &a, NULL), 0);
	assert_int_equal(ino_get(t, a, "b", &b, NULL), 0);
	assert_int_equal(ino_get(t, b, "c", &c, NULL), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "x", &x, NULL), 0);
	/* Move a directory with a long new name: the subtree follows. */
	assert_int_equal(ino_rename(t, a, "b", x, "a-much-longer-name-than-before"), 0);
	assert_path(t, b, "x/a-much-longer-name-than-before");
	assert_path(t, c, "x/a-much-longer-name-than-before/c");
	assert_int_equal(ino_find(t, a, "b", &f), -ENOENT);
	assert_int_equal(ino_find(t, x, "a-much-longer-name-than-before", &f), 0);
	assert_int_equal(f, b);
	assert_int_equal(ino_parent(t, c, &parent, &name), 0);
	assert_int_equal(parent, b);
	assert_string_equal(name, "c");
	free(name);
	assert_int_equal(ino_parent(t, INO_ROOT, &parent, NULL), -EINVAL);
	/* Rename over an existing node detaches it. */
	assert_int_equal(ino_get(t, INO_ROOT, "y", &y, NULL), 0);
	assert_int_equal(ino_rename(t, INO_ROOT, "x", INO_ROOT, "y"), 0);
	assert_path(t, c, "y/a-much-longer-name-than-before/c");
	assert_int_equal(ino_path(t, y, &name), -ESTALE);
	ino_forget(t, y, 1);
	assert_false(ino_exists(t, y));
	/* Renaming an unknown source only replaces the destination. */
	assert_int_equal(ino_get(t, INO_ROOT, "z", &f, NULL), 0);
	assert_int_equal(ino_rename(t, INO_ROOT, "ghost", INO_ROOT, "z"), 0);
	assert_int_equal(ino_find(t, INO_ROOT, "z", &x), -ENOENT);
	/* Renaming onto itself is a no-op; a bad destination parent fails. */
	assert_int_equal(ino_rename(t, INO_ROOT, "a", INO_ROOT, "a"), 0);
	assert_path(t, a, "a");
	assert_int_equal(ino_rename(t, INO_ROOT, "a", 123456, "q"), -ENOENT);
	/* The old parent of a moved node is freed once forgotten. */
	ino_forget(t, a, 1);
	assert_false(ino_exists(t, a));
	ino_table_free(t);
}

static void test_tags(void **state)
{
	struct ino_table *t = NULL;
	uint64_t a;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "a", &a, NULL), 0);
	assert_int_equal(ino_get_tag(t, a), 0);
	ino_set_tag(t, a, 0xabcdef);
	assert_int_equal(ino_get_tag(t, a), 0xabcdef);
	ino_set_tag(t, 9999, 1);
	assert_int_equal(ino_get_tag(t, 9999), 0);
	ino_table_free(t);
}

/* Times kept on a node: ctime always set, mtime only when given; they go
 * with the node when the kernel forgets it. */
static void test_times(void **state)
{
	struct ino_table *t = NULL;
	int64_t m, c;
	uint64_t a, b;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	assert_int_equal(ino_get(t, INO_ROOT, "a", &a, NULL), 0);
	ino_get_times(t, a, &m, &c);
	assert_true(m == 0 && c == 0);
	ino_set_times(t, a, 500, 700);
	ino_get_times(t, a, &m, &c);
	assert_true(m == 500 && c == 700);
	ino_set_times(t, a, 0, 900);       /* ctime only */
	ino_get_times(t, a, &m, &c);
	assert_true(m == 500 && c == 900);
	ino_set_times(t, 9999, 1, 1);      /* unknown: no-op */
	ino_get_times(t, 9999, &m, &c);
	assert_true(m == 0 && c == 0);
	ino_forget(t, a, 1);
	assert_false(ino_exists(t, a));
	assert_int_equal(ino_get(t, INO_ROOT, "a", &b, NULL), 0);
	assert_true(b != a);
	ino_get_times(t, b, &m, &c);
	assert_true(m == 0 && c == 0);
	ino_table_free(t);
}

static void test_many_nodes_grow(void **state)
{
	struct ino_table *t = NULL;
	uint64_t *inos = calloc(20000, sizeof(*inos));
	char name[32];
	size_t i;

	(void)state;
	assert_non_null(inos);
	assert_int_equal(ino_table_new(&t), 0);
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "file-%zu", i);
		assert_int_equal(ino_get(t, INO_ROOT, name, &inos[i], NULL), 0);
	}
	assert_int_equal(ino_count(t), 20001);
	for (i = 0; i < 20000; i += 997) {
		uint64_t f;
		char *p = NULL;

		snprintf(name, sizeof(name), "file-%zu", i);
		assert_int_equal(ino_find(t, INO_ROOT, name, &f), 0);
		assert_int_equal(f, inos[i]);
		assert_int_equal(ino_path(t, f, &p), 0);
		assert_string_equal(p, name);
		free(p);
	}
	for (i = 0; i < 20000; i++)
		ino_forget(t, inos[i], 1);
	assert_int_equal(ino_count(t), 1);
	ino_table_free(t);
	free(inos);
}

struct thr {
	struct ino_table *t;
	int id;
};

static void *worker(void *arg)
{
	struct thr *th = arg;
	char name[32];
	int i;

	for (i = 0; i < 2000; i++) {
		uint64_t ino;
		char *p = NULL;

		snprintf(name, sizeof(name), "n%d", i % 50);
		if (ino_get(th->t, INO_ROOT, name, &ino, NULL) != 0)
			return (void *)1;
		if (ino_path(th->t, ino, &p) == 0 && strcmp(p, name) != 0) {
			free(p);
			return (void *)1;
		}
		free(p);
		ino_forget(th->t, ino, 1);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct ino_table *t = NULL;
	pthread_t th[4];
	struct thr a[4];
	int i;

	(void)state;
	assert_int_equal(ino_table_new(&t), 0);
	for (i = 0; i < 4; i++) {
		a[i].t = t;
		a[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, worker, &a[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		void *r = NULL;

		pthread_join(th[i], &r);
		assert_null(r);
	}
	assert_int_equal(ino_count(t), 1);
	ino_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_and_lookup),
		cmocka_unit_test(test_forget_frees_bottom_up),
		cmocka_unit_test(test_inos_never_reused_generations_unique),
		cmocka_unit_test(test_detach_keeps_open_inode),
		cmocka_unit_test(test_rename_moves_subtree),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_many_nodes_grow),
		cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
