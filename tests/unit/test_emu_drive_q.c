/* Unit tests for tests/emulator/emu_drive_q.c: the Drive `q` grammar
 * (terms, escapes, precedence, whitespace, dates), its evaluation against
 * a file, the parent hint, and the malformed queries that must be refused
 * with a reason rather than crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emu_drive_q.h"

static struct dq_file sample(void)
{
	struct dq_file f;

	memset(&f, 0, sizeof(f));
	f.id = "1abc";
	f.name = "Report Final.docx";
	f.mime = "application/pdf";
	f.parent = "ROOTID";
	f.owned_by_me = 1;
	f.modified_ms = 1651363200000LL;  /* 2022-05-01T00:00:00Z */
	f.created_ms = 1609459200000LL;   /* 2021-01-01T00:00:00Z */
	return f;
}

/* Parse q (must succeed) and evaluate it against f. */
static int ev(const char *q, const struct dq_file *f)
{
	char why[160];
	int empty = 0, r;
	struct dq_node *n = dq_parse(q, strlen(q), &empty, why, sizeof(why));

	if (!n)
		fail_msg("query refused: %s: %s", q, why);
	r = dq_eval(n, f, "ROOTID", "me@example.com");
	dq_free(n);
	return r;
}

static void refused(const char *q)
{
	char why[160] = "";
	int empty = 0;
	struct dq_node *n = dq_parse(q, strlen(q), &empty, why, sizeof(why));

	if (n)
		fail_msg("query accepted but should not be: %s", q);
	assert_int_equal(empty, 0);
	assert_true(why[0] != '\0');
}

static void test_terms(void **state)
{
	struct dq_file f = sample();

	(void)state;
	assert_true(ev("'ROOTID' in parents", &f));
	assert_true(ev("'root' in parents", &f));
	assert_false(ev("'other' in parents", &f));
	assert_true(ev("name = 'Report Final.docx'", &f));
	assert_false(ev("name = 'report final.docx'", &f));
	assert_true(ev("name != 'x'", &f));
	assert_true(ev("name contains 'report'", &f));
	assert_true(ev("name contains 'FINAL'", &f));
	assert_true(ev("name contains 'docx'", &f));
	assert_false(ev("name contains 'port'", &f));
	assert_true(ev("mimeType = 'application/pdf'", &f));
	assert_true(ev("mimeType contains 'pdf'", &f));
	assert_true(ev("mimeType != 'application/vnd.google-apps.folder'", &f));
	assert_true(ev("trashed = false", &f));
	assert_false(ev("trashed = true", &f));
	assert_true(ev("trashed != true", &f));
	assert_true(ev("starred = false", &f));
	assert_true(ev("'me' in owners", &f));
	assert_true(ev("'me@example.com' in writers", &f));
	assert_false(ev("'x@example.com' in readers", &f));
	assert_false(ev("sharedWithMe", &f));
	assert_true(ev("sharedWithMe = false", &f));
	assert_true(ev("visibility = 'limited'", &f));
	assert_true(ev("title = 'Report Final.docx'", &f));
	f.trashed = 1;
	assert_true(ev("trashed = true", &f));
}

static void test_escapes_and_whitespace(void **state)
{
	struct dq_file f = sample();

	(void)state;
	f.name = "it's a \\ test";
	assert_true(ev("name = 'it\\'s a \\\\ test'", &f));
	assert_true(ev("name='it\\'s a \\\\ test'", &f));
	assert_true(ev("\n\tname\n=\t'it\\'s a \\\\ test'  ", &f));
	assert_true(ev("name contains 'it\\'s'", &f));
	f.name = "a/b";
	assert_true(ev("name = 'a/b'", &f));
	f.name = "";
	assert_true(ev("name = ''", &f));
	assert_true(ev("name contains ''", &f));
	/* keywords in any case, parentheses without spaces */
	f = sample();
	assert_true(ev("(name='Report Final.docx')AND('ROOTID' IN parents)", &f));
	assert_true(ev("NOT trashed=true", &f));
}

static void test_precedence(void **state)
{
	struct dq_file f = sample();

	(void)state;
	/* and binds tighter than or: a or (b and c) */
	assert_true(ev("name = 'Report Final.docx' or name = 'x' and trashed = true", &f));
	assert_false(ev("(name = 'Report Final.docx' or name = 'x') and trashed = true", &f));
	assert_true(ev("trashed = true and name = 'x' or 'ROOTID' in parents", &f));
	assert_false(ev("not 'ROOTID' in parents", &f));
	assert_true(ev("not not 'ROOTID' in parents", &f));
	assert_true(ev("not (trashed = true or starred = true)", &f));
	assert_false(ev("not trashed = false and name = 'Report Final.docx'", &f));
	/* long chains do not recurse on the right */
	{
		size_t cap = 200000, len = 0;
		char *q = malloc(cap);
		int i;

		for (i = 0; i < 1999; i++)
			len += (size_t)snprintf(q + len, cap - len, "name = 'n%d' or ", i);
		snprintf(q + len, cap - len, "name = 'Report Final.docx'");
		assert_true(ev(q, &f));
		free(q);
	}
}

static void test_dates(void **state)
{
	struct dq_file f = sample();
	int64_t ms;

	(void)state;
	assert_true(ev("modifiedTime > '2022-01-01T00:00:00'", &f));
	assert_true(ev("modifiedTime = '2022-05-01T00:00:00Z'", &f));
	assert_true(ev("modifiedTime = '2022-05-01T02:00:00+02:00'", &f));
	assert_true(ev("modifiedTime >= '2022-05-01T00:00:00.000Z'", &f));
	assert_false(ev("modifiedTime < '2022-05-01T00:00:00.000Z'", &f));
	assert_true(ev("modifiedTime <= '2022-05-01'", &f));
	assert_true(ev("createdTime < '2021-01-01T00:00:00.001Z'", &f));
	assert_int_equal(dq_parse_time("1970-01-01T00:00:00Z", &ms), 0);
	assert_true(ms == 0);
	assert_int_equal(dq_parse_time("2000-02-29T12:34:56.789Z", &ms), 0);
	assert_true(ms == 951827696789LL);
	assert_int_equal(dq_parse_time("1969-12-31T23:59:59Z", &ms), 0);
	assert_true(ms == -1000);
	assert_int_equal(dq_parse_time("2022-13-01", &ms), -1);
	assert_int_equal(dq_parse_time("2022-02-30", &ms), -1);
	assert_int_equal(dq_parse_time("2022-01-01T25:00:00", &ms), -1);
	assert_int_equal(dq_parse_time("2022-01-01T00:00:00+1:00", &ms), -1);
	assert_int_equal(dq_parse_time("yesterday", &ms), -1);
	assert_int_equal(dq_parse_time(NULL, &ms), -1);
}

static void test_properties_and_fulltext(void **state)
{
	struct dq_file f = sample();
	json_t *props = json_pack("{s:s}", "team", "a b");

	(void)state;
	f.properties = props;
	f.text = "Hello Searchable World";
	f.text_len = strlen(f.text);
	assert_true(ev("properties has { key='team' and value='a b' }", &f));
	assert_true(ev("properties has {key='team' and value='a b'}", &f));
	assert_false(ev("properties has { key='team' and value='a' }", &f));
	assert_false(ev("appProperties has { key='team' and value='a b' }", &f));
	assert_true(ev("fullText contains 'searchable'", &f));
	assert_true(ev("fullText contains 'final'", &f));
	assert_false(ev("fullText contains 'absent'", &f));
	f.target_id = "T1";
	assert_true(ev("shortcutDetails.targetId = 'T1'", &f));
	json_decref(props);
}

#define PQ(q) dq_parse(q, strlen(q), &empty, why, sizeof(why))

static void test_hints(void **state)
{
	char why[100];
	int empty;
	struct dq_node *n;

	(void)state;
	n = PQ("'P1' in parents and trashed = false");
	assert_non_null(n);
	assert_string_equal(dq_parent_hint(n), "P1");
	assert_false(dq_has_fulltext(n));
	dq_free(n);
	n = PQ("trashed = false and ('P2' in parents and name = 'x')");
	assert_non_null(n);
	assert_string_equal(dq_parent_hint(n), "P2");
	dq_free(n);
	n = PQ("'P1' in parents or name = 'x'");
	assert_null(dq_parent_hint(n));
	dq_free(n);
	n = PQ("not 'P1' in parents");
	assert_null(dq_parent_hint(n));
	dq_free(n);
	n = PQ("name = 'a' and fullText contains 'b'");
	assert_true(dq_has_fulltext(n));
	dq_free(n);
	/* blank: no filter */
	assert_null(PQ("  \n\t"));
	assert_int_equal(empty, 1);
	assert_null(PQ(""));
	assert_int_equal(empty, 1);
	assert_true(dq_eval(NULL, NULL, NULL, NULL));
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"name", "name =", "name = x", "name = 'x", "name == 'x'", "name ! 'x'",
		"name = 'a\\n'", "name = 'a\\", "'x' in", "'x' in nowhere", "'x' parents",
		"bogus = 'x'", "trashed = maybe", "trashed contains true", "name > 'x'",
		"modifiedTime contains '2020-01-01'", "modifiedTime > 'soon'",
		"(name = 'x'", "name = 'x')", "()", "and", "not", "name = 'x' and",
		"or name = 'x'", "name = 'x' name = 'y'", "properties has { key='a' }",
		"properties has key='a'", "properties = 'a'", "fullText = 'x'",
		"name = 'x' $", "name = \"x\"", "starred = 'true'", "parents in 'x'",
		"mimeType < 'a'", "name contains", "'x'",
	};
	size_t i;
	char deep[400];

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(bad[i]);
	memset(deep, '(', 100);
	snprintf(deep + 100, sizeof(deep) - 100, "name = 'x'");
	memset(deep + strlen(deep), ')', 100);
	deep[210] = '\0';
	refused(deep);
	/* an embedded NUL is refused, not truncated */
	{
		char why[100];
		int empty;

		assert_null(dq_parse("name = 'a\0b'", 12, &empty, why, sizeof(why)));
		assert_null(dq_parse("name = 'a'\0", 11, &empty, why, sizeof(why)));
	}
	/* why may be NULL */
	assert_null(dq_parse("name =", 6, NULL, NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_terms),
		cmocka_unit_test(test_escapes_and_whitespace),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_properties_and_fulltext),
		cmocka_unit_test(test_hints),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
