/* Unit tests for fs/view.c: the merge of a stored listing with journal
 * children and removed names, the one-name rule, and remote path
 * translation through pending renames. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/view.h"

#define SEC 1000000000LL

struct active_ctx {
	int calls;
	uint64_t active_fid;    /* this fid reports active */
	int fail;               /* return -EIO */
};

static int active_cb(void *ud, const struct jnl_file *f)
{
	struct active_ctx *c = ud;

	c->calls++;
	if (c->fail)
		return -EIO;
	return f->fid == c->active_fid;
}

static struct jnl_entry ent(const char *name, int type, uint64_t size, int64_t mtime,
			    const char *remote)
{
	struct jnl_entry e;

	memset(&e, 0, sizeof(e));
	e.name = (char *)name;
	e.type = type;
	e.size = size;
	e.mtime_ns = mtime;
	e.remote = (char *)remote;
	return e;
}

static struct jnl_file jfile(uint64_t fid, const char *path, int type, const char *base,
			     int dirty, uint64_t size, int64_t mtime)
{
	struct jnl_file f;

	memset(&f, 0, sizeof(f));
	f.fid = fid;
	f.path = (char *)path;
	f.type = type;
	f.base = (char *)base;
	f.dirty = dirty;
	f.size = size;
	f.mtime_ns = mtime;
	return f;
}

static void test_pick_rules(void **state)
{
	struct active_ctx ctx = { 0, 0, 0 };
	struct jnl_entry l = ent("f", JNL_FILE, 10, 100 * SEC, "g5.1");
	struct jnl_file dirty = jfile(7, "d/f", JNL_FILE, "g5.1", 1, 99, 200 * SEC);
	struct jnl_file fresh = jfile(8, "d/f", JNL_FILE, NULL, 0, 3, 300 * SEC);
	struct jnl_file same = jfile(9, "d/f", JNL_FILE, "g5.1", 0, 10, 100 * SEC + 5);
	struct jnl_file stale = jfile(10, "d/f", JNL_FILE, "g4.1", 0, 8, 50 * SEC);
	struct view_ent v;

	(void)state;
	/* 1. dirty or never committed: local, without asking. */
	assert_int_equal(view_pick(&l, &dirty, 0, active_cb, &ctx, &v), 1);
	assert_true(v.flags & VIEW_LOCAL);
	assert_int_equal(v.size, 99);
	assert_int_equal(v.fid, 7);
	assert_null(v.remote);
	assert_string_equal(v.name, "f");
	assert_int_equal(view_pick(NULL, &fresh, 0, active_cb, &ctx, &v), 1);
	assert_true(v.flags & VIEW_LOCAL);
	assert_int_equal(v.size, 3);
	assert_int_equal(ctx.calls, 0);
	/* 2. clean and matching: the listing, with the fid, no query. */
	assert_int_equal(view_pick(&l, &same, 0, active_cb, &ctx, &v), 1);
	assert_false(v.flags & VIEW_LOCAL);
	assert_int_equal(v.fid, 9);
	assert_string_equal(v.remote, "g5.1");
	assert_int_equal(ctx.calls, 0);
	/* 3. clean but different: ask. Inactive -> the remote wins. */
	assert_int_equal(view_pick(&l, &stale, 0, active_cb, &ctx, &v), 1);
	assert_int_equal(ctx.calls, 1);
	assert_false(v.flags & VIEW_LOCAL);
	assert_int_equal(v.size, 10);
	assert_string_equal(v.remote, "g5.1");
	assert_int_equal(v.fid, 10);
	/* ... active (e.g. a pending rename) -> local. */
	ctx.active_fid = 10;
	assert_int_equal(view_pick(&l, &stale, 0, active_cb, &ctx, &v), 1);
	assert_true(v.flags & VIEW_LOCAL);
	assert_int_equal(v.size, 8);
	assert_string_equal(v.remote, "g4.1");
	/* ... inactive and absent remotely: hidden. */
	ctx.active_fid = 0;
	assert_int_equal(view_pick(NULL, &stale, 0, active_cb, &ctx, &v), 0);
	/* ... inactive with a placeholder entry (no remote version): the
	 * journal's attributes, not local. */
	{
		struct jnl_entry ph = ent("f", JNL_FILE, 0, 300 * SEC, NULL);

		assert_int_equal(view_pick(&ph, &stale, 0, active_cb, &ctx, &v), 1);
		assert_false(v.flags & VIEW_LOCAL);
		assert_int_equal(v.size, 8);
		assert_string_equal(v.remote, "g4.1");
		assert_int_equal(v.fid, 10);
	}
	/* ... inactive, and the listing predates our own commit (lower
	 * generation of the same object): the journal's version. */
	{
		struct jnl_file mine = jfile(20, "d/f", JNL_FILE, "g9.1", 0, 77, 400 * SEC);
		struct jnl_entry old = ent("f", JNL_FILE, 10, 100 * SEC, "g5.1");
		struct jnl_entry later = ent("f", JNL_FILE, 12, 500 * SEC, "g11.1");

		assert_int_equal(view_pick(&old, &mine, 0, active_cb, &ctx, &v), 1);
		assert_false(v.flags & VIEW_LOCAL);
		assert_int_equal(v.size, 77);
		assert_string_equal(v.remote, "g9.1");
		/* A later remote version (another writer) wins. */
		assert_int_equal(view_pick(&later, &mine, 0, active_cb, &ctx, &v), 1);
		assert_int_equal(v.size, 12);
		assert_string_equal(v.remote, "g11.1");
		assert_int_equal(v.fid, 20);
	}
	/* A failing callback fails the pick. */
	ctx.fail = 1;
	assert_int_equal(view_pick(NULL, &stale, 0, active_cb, &ctx, &v), -EIO);
	ctx.fail = 0;
	/* 4. no journal file: the listing unless removed. */
	assert_int_equal(view_pick(&l, NULL, 0, active_cb, &ctx, &v), 1);
	assert_int_equal(v.fid, 0);
	assert_int_equal(view_pick(&l, NULL, 1, active_cb, &ctx, &v), 0);
	assert_int_equal(view_pick(NULL, NULL, 0, active_cb, &ctx, &v), 0);
}

static void test_pick_symlink_and_dirs(void **state)
{
	struct active_ctx ctx = { 0, 0, 0 };
	struct jnl_file ln = jfile(3, "l", JNL_SYMLINK, NULL, 0, 0, SEC);
	struct jnl_entry prefix = ent("d", JNL_DIR, 0, 0, NULL);
	struct jnl_file dir = jfile(4, "d", JNL_DIR, "", 0, 0, 0);
	struct view_ent v;

	(void)state;
	ln.target = (char *)"some/target";
	assert_int_equal(view_pick(NULL, &ln, 0, active_cb, &ctx, &v), 1);
	assert_int_equal(v.type, JNL_SYMLINK);
	assert_int_equal(v.size, strlen("some/target"));
	/* A tracked prefix directory (base "") matches a listing without a
	 * remote version. */
	assert_int_equal(view_pick(&prefix, &dir, 0, active_cb, &ctx, &v), 1);
	assert_int_equal(ctx.calls, 0);
	assert_int_equal(v.fid, 4);
	assert_int_equal(v.type, JNL_DIR);
}

static void test_merge(void **state)
{
	struct active_ctx ctx = { 0, 0, 0 };
	struct jnl_entry l[] = {
		ent("a", JNL_FILE, 1, SEC, "g1.1"),
		ent("b", JNL_FILE, 2, SEC, "g2.1"),      /* removed locally */
		ent("c", JNL_DIR, 0, 0, NULL),
		ent("e", JNL_FILE, 5, SEC, "g5.1"),      /* tracked, same */
		ent("g", JNL_FILE, 7, SEC, "g7.2"),      /* tracked, changed */
	};
	struct jnl_file j[] = {
		jfile(11, "dir/aa", JNL_FILE, NULL, 1, 100, 2 * SEC),  /* new */
		jfile(12, "dir/e", JNL_FILE, "g5.1", 0, 5, SEC),
		jfile(13, "dir/f", JNL_FILE, "g9.1", 0, 9, SEC),      /* gone */
		jfile(14, "dir/g", JNL_FILE, "g7.1", 0, 6, SEC),
		jfile(15, "dir/h", JNL_DIR, NULL, 0, 0, SEC),         /* mkdir */
	};
	char *removed[] = { (char *)"b", (char *)"zz" };
	struct view_ent *v = NULL;
	size_t n = 0;
	const char *want[] = { "a", "aa", "c", "e", "g", "h" };
	size_t i;

	(void)state;
	assert_int_equal(view_merge(l, 5, j, 5, removed, 2, active_cb, &ctx, &v, &n), 0);
	assert_int_equal(n, 6);
	for (i = 0; i < n; i++)
		assert_string_equal(v[i].name, want[i]);
	assert_true(v[1].flags & VIEW_LOCAL);
	assert_int_equal(v[1].size, 100);
	assert_int_equal(v[3].fid, 12);
	assert_false(v[3].flags & VIEW_LOCAL);
	assert_int_equal(v[4].fid, 14);
	assert_string_equal(v[4].remote, "g7.2");
	assert_int_equal(v[4].size, 7);
	assert_true(v[5].flags & VIEW_LOCAL);
	assert_int_equal(v[5].type, JNL_DIR);
	/* Only f and g needed the journal query. */
	assert_int_equal(ctx.calls, 2);
	free(v);

	/* Empty inputs. */
	assert_int_equal(view_merge(NULL, 0, NULL, 0, NULL, 0, active_cb, &ctx, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	/* Unsorted input is refused. */
	{
		struct jnl_entry bad[] = { ent("b", JNL_FILE, 0, 0, "g1.1"),
					   ent("a", JNL_FILE, 0, 0, "g1.1") };

		assert_int_equal(view_merge(bad, 2, NULL, 0, NULL, 0, active_cb, &ctx,
					    &v, &n), -EINVAL);
	}
	/* An error from the callback fails the merge. */
	ctx.fail = 1;
	assert_int_equal(view_merge(l, 5, j, 5, removed, 2, active_cb, &ctx, &v, &n), -EIO);
	assert_null(v);
}

static void test_merge_large(void **state)
{
	struct active_ctx ctx = { 0, 0, 0 };
	size_t nl = 100000, i, n = 0;
	struct jnl_entry *l = calloc(nl, sizeof(*l));
	char **names = calloc(nl, sizeof(*names));
	struct view_ent *v = NULL;

	(void)state;
	assert_non_null(l);
	assert_non_null(names);
	for (i = 0; i < nl; i++) {
		names[i] = malloc(16);
		assert_non_null(names[i]);
		snprintf(names[i], 16, "f%07zu", i);
		l[i] = ent(names[i], JNL_FILE, i, SEC, "g1.1");
	}
	assert_int_equal(view_merge(l, nl, NULL, 0, NULL, 0, active_cb, &ctx, &v, &n), 0);
	assert_int_equal(n, nl);
	assert_string_equal(v[nl - 1].name, "f0099999");
	free(v);
	for (i = 0; i < nl; i++)
		free(names[i]);
	free(names);
	free(l);
}

static int keep_not_seq2(void *ud, const struct view_rename *r)
{
	int *calls = ud;

	(*calls)++;
	return r->seq != 2;
}

static void check_remote(const struct view_rename *r, size_t n, const char *path,
			 const char *want)
{
	char *got = view_remote_path(r, n, path, NULL, NULL);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_remote_path(void **state)
{
	struct view_rename r[] = {
		{ 1, 10, "a", "b" },          /* dir a renamed to b */
		{ 2, 11, "b/x", "c" },        /* then b/x moved to c */
		{ 3, 12, "d", "b2" },         /* then d moved to b2 */
	};
	struct view_rename r2[] = {
		{ 1, 10, "a", "b" },
		{ 2, 13, "c", "b" },          /* c renamed over b */
	};
	int calls = 0;
	char *got;

	(void)state;
	check_remote(r, 0, "b/x", "b/x");
	check_remote(r, 1, "b", "a");
	check_remote(r, 1, "b/x/y", "a/x/y");
	check_remote(r, 1, "bb", "bb");           /* not below b */
	check_remote(r, 2, "c", "a/x");
	check_remote(r, 2, "c/deep", "a/x/deep");
	check_remote(r, 3, "b2/q", "d/q");
	check_remote(r2, 2, "b", "c");
	check_remote(r2, 2, "b/k", "c/k");
	/* A committed rename (rejected by the callback) no longer maps; the
	 * callback is asked only about renames that apply. */
	got = view_remote_path(r, 2, "c/deep", keep_not_seq2, &calls);
	assert_string_equal(got, "c/deep");
	assert_int_equal(calls, 1);
	free(got);
	calls = 0;
	got = view_remote_path(r, 3, "zzz", keep_not_seq2, &calls);
	assert_string_equal(got, "zzz");
	assert_int_equal(calls, 0);
	free(got);
}

static void test_split_join_within(void **state)
{
	char *dir = NULL, *p;
	const char *name = NULL;

	(void)state;
	assert_int_equal(view_split("a/b/c", &dir, &name), 0);
	assert_string_equal(dir, "a/b");
	assert_string_equal(name, "c");
	free(dir);
	assert_int_equal(view_split("top", &dir, &name), 0);
	assert_string_equal(dir, "");
	assert_string_equal(name, "top");
	free(dir);
	assert_int_equal(view_split("", &dir, &name), -EINVAL);
	p = view_join("", "x");
	assert_string_equal(p, "x");
	free(p);
	p = view_join("a/b", "x");
	assert_string_equal(p, "a/b/x");
	free(p);
	assert_true(view_path_within("a/b", "a"));
	assert_true(view_path_within("a", "a"));
	assert_false(view_path_within("ab", "a"));
	assert_true(view_path_within("anything", ""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pick_rules),
		cmocka_unit_test(test_pick_symlink_and_dirs),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_merge_large),
		cmocka_unit_test(test_remote_path),
		cmocka_unit_test(test_split_join_within),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
