/* Unit tests for jnl_entries_by_id (sync/journal.c): the places the stored
 * listings show one remote item at, found by the id part of the entries'
 * remote versions -- every listing holding it (a duplicate in two folders),
 * none for an unknown id or a prefix of one, entries without an id never
 * matched, forgotten listings gone, a reopen keeping them, bad input
 * refused; several ids in one scan (jnl_entries_by_ids). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/journal.h"
#include "unit_util.h"

#define OK(expr) ut_ok_at((expr), &e, #expr, __LINE__)

static void put(struct jnl *j, const char *dir, const char *name, int type, const char *remote)
{
	struct jnl_entry en;
	struct err e;

	memset(&en, 0, sizeof(en));
	en.name = (char *)name;
	en.type = type;
	en.size = 1;
	en.remote = (char *)remote;
	OK(jnl_entry_put(j, dir, &en, &e));
}

/* The places of id as "path:type,..." into buf. */
static void places(struct jnl *j, const char *id, char *buf, size_t cap)
{
	struct jnl_place *v = NULL;
	size_t n = 99, i, at = 0;
	struct err e;

	OK(jnl_entries_by_id(j, id, &v, &n, &e));
	buf[0] = '\0';
	for (i = 0; i < n; i++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%s:%d", i ? "," : "", v[i].path,
				       v[i].type);
	if (n == 0)
		assert_null(v);
	jnl_places_free(v, n);
}

static void test_by_id(void **state)
{
	struct ut_jnl_fx *f = *state;
	struct jnl_entry lst[2];
	struct jnl_place *v = (struct jnl_place *)1;
	char got[512];
	size_t n = 7;
	struct err e;

	memset(lst, 0, sizeof(lst));
	lst[0].name = "a.txt";
	lst[0].type = JNL_FILE;
	lst[0].remote = "g3.0:ID-A";
	lst[1].name = "sub";
	lst[1].type = JNL_DIR;
	lst[1].remote = "g1.0:ID-SUB";
	OK(jnl_dir_put(f->j, "", lst, 2, 1, &e));
	put(f->j, "sub", "b (3f2a1c).txt", JNL_FILE, "g2.0:ID-B");
	put(f->j, "sub", "c", JNL_FILE, "g2.0");                 /* no id (GCS) */
	put(f->j, "sub/deeper", "again.txt", JNL_FILE, "g9.1:ID-A");
	put(f->j, "other", "ID-A", JNL_FILE, "g1.0:X");          /* the id as a name */
	put(f->j, "other", "prefix", JNL_FILE, "g1.0:ID-AB");

	places(f->j, "ID-A", got, sizeof(got));
	assert_string_equal(got, "a.txt:1,sub/deeper/again.txt:1");
	places(f->j, "ID-SUB", got, sizeof(got));
	assert_string_equal(got, "sub:2");
	places(f->j, "ID-B", got, sizeof(got));
	assert_string_equal(got, "sub/b (3f2a1c).txt:1");
	places(f->j, "ID", got, sizeof(got));
	assert_string_equal(got, "");
	places(f->j, "g2.0", got, sizeof(got));
	assert_string_equal(got, "");
	places(f->j, "unknown", got, sizeof(got));
	assert_string_equal(got, "");

	/* a forgotten subtree no longer shows it; a reopen keeps the rest */
	OK(jnl_dir_forget(f->j, "sub", &e));
	places(f->j, "ID-A", got, sizeof(got));
	assert_string_equal(got, "a.txt:1");
	jnl_close(f->j);
	f->j = NULL;
	OK(jnl_open(f->path, NULL, &f->j, NULL, &e));
	places(f->j, "ID-A", got, sizeof(got));
	assert_string_equal(got, "a.txt:1");
	places(f->j, "ID-SUB", got, sizeof(got));
	assert_string_equal(got, "sub:2");

	/* several ids in one scan; ids JSON must escape; an unknown one */
	{
		const char *ids[] = { "ID-SUB", "q\"uo\\te", "nope", "ID-A" };
		struct jnl_place *pv = NULL;
		size_t pn = 0, i;

		put(f->j, "other", "quoted", JNL_FILE, "g1.0:q\"uo\\te");
		OK(jnl_entries_by_ids(f->j, ids, 4, &pv, &pn, &e));
		assert_int_equal(pn, 3);
		assert_string_equal(pv[0].path, "a.txt");
		assert_string_equal(pv[1].path, "sub");     /* (dir, name) order */
		assert_int_equal(pv[1].type, JNL_DIR);
		assert_string_equal(pv[2].path, "other/quoted");
		jnl_places_free(pv, pn);
		OK(jnl_entries_by_ids(f->j, ids, 0, &pv, &pn, &e));
		assert_null(pv);
		assert_int_equal(pn, 0);
		ids[1] = "bad\xff";
		assert_int_equal(jnl_entries_by_ids(f->j, ids, 4, &pv, &pn, &e), -1);
		assert_int_equal(e.code, ERR_INVAL);
		ids[1] = "";
		assert_int_equal(jnl_entries_by_ids(f->j, ids, 4, &pv, &pn, &e), -1);
		for (i = 0; i < pn; i++)
			fail();
	}

	/* bad input: refused, outputs cleared */
	assert_int_equal(jnl_entries_by_id(f->j, "", &v, &n, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_null(v);
	assert_int_equal(n, 0);
	assert_int_equal(jnl_entries_by_id(f->j, NULL, &v, &n, &e), -1);
	jnl_places_free(NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_by_id, ut_jnl_setup, ut_jnl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
