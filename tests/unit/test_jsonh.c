/* Unit tests for sync/jsonh.c: strict parsing, typed getters on good and
 * malformed input, int64 as string or number with overflow, missing fields,
 * messages naming the field, and serialization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/jsonh.h"

static json_t *parse_ok(const char *s)
{
	struct err e;
	json_t *o = NULL;

	assert_int_equal(jsonh_parse_object(s, strlen(s), "test", &o, &e), 0);
	assert_non_null(o);
	return o;
}

static void parse_bad(const char *s, size_t len, const char *needle)
{
	struct err e;
	json_t *o = (json_t *)0x1;

	assert_int_equal(jsonh_parse_object(s, len, "GCS object", &o, &e), -1);
	assert_ptr_equal(o, (json_t *)0x1);  /* untouched on failure */
	assert_int_equal(e.code, ERR_PARSE);
	assert_non_null(strstr(e.msg, "GCS object"));
	if (needle && !strstr(e.msg, needle))
		fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
}

static void test_parse(void **state)
{
	static const char trunc[] = "{\"a\":1";
	json_t *o;

	(void)state;
	o = parse_ok("  {\"kind\":\"storage#object\",\"n\":[1,2]}\n");
	json_decref(o);
	/* a buffer that is not NUL-terminated: only len bytes count */
	{
		char buf[16];
		memcpy(buf, "{\"x\":1}GARBAGE!!", 16);
		assert_int_equal(jsonh_parse_object(buf, 7, "t", &o, NULL), 0);
		json_decref(o);
	}
	parse_bad("", 0, "empty");
	parse_bad(NULL, 0, "empty");
	parse_bad(trunc, sizeof(trunc) - 1, "malformed JSON");
	parse_bad("{\"a\":1} x", 9, "malformed JSON");
	parse_bad("[1,2]", 5, "expected a JSON object, got array");
	parse_bad("\"str\"", 5, "got string");
	parse_bad("42", 2, "got integer");
	parse_bad("{\"a\":1,\"a\":2}", 13, "malformed JSON");
	parse_bad("<html>502 Bad Gateway</html>", 28, "malformed JSON");
	parse_bad("{\"a\":\"\xff\xfe\"}", 9, "malformed JSON");  /* invalid UTF-8 */
}

static void test_strings(void **state)
{
	static const char doc[] = "{\"name\":\"a/b c\",\"nul\":\"x\\u0000y\",\"num\":5,"
				  "\"nil\":null,\"long\":\"0123456789\"}";
	json_t *o = parse_ok(doc);
	const char *s = NULL;
	char buf[11], small[10];
	char *dup = NULL;
	size_t len = 0;
	struct err e;

	(void)state;
	assert_int_equal(jsonh_get_str(o, "name", &s, &e), 0);
	assert_string_equal(s, "a/b c");
	assert_int_equal(jsonh_get_str(o, "missing", &s, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
	assert_string_equal(e.msg, "field \"missing\" missing");
	assert_int_equal(jsonh_get_str(o, "nil", &s, &e), -1);
	assert_int_equal(jsonh_get_str(o, "num", &s, &e), -1);
	assert_string_equal(e.msg, "field \"num\" must be a string, got integer");
	assert_int_equal(jsonh_get_str(o, "nul", &s, &e), -1);
	assert_non_null(strstr(e.msg, "NUL"));
	assert_int_equal(jsonh_get_strn(o, "nul", &s, &len, &e), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(s, "x\0y", 3);
	s = "sentinel";
	assert_int_equal(jsonh_opt_str(o, "missing", &s, &e), 0);
	assert_null(s);
	assert_int_equal(jsonh_opt_str(o, "nil", &s, &e), 0);
	assert_null(s);
	assert_int_equal(jsonh_opt_str(o, "num", &s, &e), -1);
	assert_int_equal(jsonh_get_strbuf(o, "long", buf, sizeof(buf), &e), 0);
	assert_string_equal(buf, "0123456789");
	assert_int_equal(jsonh_get_strbuf(o, "long", small, sizeof(small), &e), -1);
	assert_non_null(strstr(e.msg, "too long"));
	assert_int_equal(jsonh_opt_strbuf(o, "missing", small, sizeof(small), &e), 0);
	assert_string_equal(small, "");
	assert_int_equal(jsonh_get_strdup(o, "name", &dup, &e), 0);
	assert_string_equal(dup, "a/b c");
	free(dup);
	dup = (char *)"x";
	assert_int_equal(jsonh_opt_strdup(o, "missing", &dup, &e), 0);
	assert_null(dup);
	assert_int_equal(jsonh_get_strdup(o, "missing", &dup, NULL), -1);
	json_decref(o);
}

static void test_bool(void **state)
{
	json_t *o = parse_ok("{\"t\":true,\"f\":false,\"one\":1,\"s\":\"true\"}");
	struct err e;
	int b = -1;

	(void)state;
	assert_int_equal(jsonh_get_bool(o, "t", &b, &e), 0);
	assert_int_equal(b, 1);
	assert_int_equal(jsonh_get_bool(o, "f", &b, &e), 0);
	assert_int_equal(b, 0);
	assert_int_equal(jsonh_get_bool(o, "one", &b, &e), -1);
	assert_string_equal(e.msg, "field \"one\" must be a boolean, got integer");
	assert_int_equal(jsonh_get_bool(o, "s", &b, &e), -1);
	assert_int_equal(jsonh_opt_bool(o, "absent", 7, &b, &e), 0);
	assert_int_equal(b, 7);
	assert_int_equal(jsonh_get_bool(o, "absent", &b, &e), -1);
	json_decref(o);
}

static void test_int64(void **state)
{
	static const char doc[] =
		"{\"size\":\"1234567890123\",\"num\":42,\"neg\":\"-17\",\"max\":\"9223372036854775807\","
		"\"min\":\"-9223372036854775808\",\"over\":\"9223372036854775808\","
		"\"under\":\"-9223372036854775809\",\"huge\":\"99999999999999999999999\","
		"\"real\":1.5,\"realint\":2.0,\"exp\":\"1e3\",\"empty\":\"\",\"sp\":\" 5\","
		"\"plus\":\"+5\",\"lead0\":\"007\",\"zero\":\"0\",\"negzero\":\"-0\",\"hex\":\"0x10\","
		"\"junk\":\"12x\",\"bool\":true,\"nil\":null,\"numneg\":-3}";
	json_t *o = parse_ok(doc);
	static const char *const bad[] = {
		"over", "under", "huge", "real", "realint", "exp", "empty", "sp",
		"plus", "lead0", "negzero", "hex", "junk", "bool",
	};
	struct err e;
	int64_t v = 0;
	uint64_t u = 0;
	size_t i;

	(void)state;
	assert_int_equal(jsonh_get_int64(o, "size", &v, &e), 0);
	assert_true(v == 1234567890123LL);
	assert_int_equal(jsonh_get_int64(o, "num", &v, &e), 0);
	assert_true(v == 42);
	assert_int_equal(jsonh_get_int64(o, "neg", &v, &e), 0);
	assert_true(v == -17);
	assert_int_equal(jsonh_get_int64(o, "max", &v, &e), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(jsonh_get_int64(o, "min", &v, &e), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(jsonh_get_int64(o, "zero", &v, &e), 0);
	assert_true(v == 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 99;
		if (jsonh_get_int64(o, bad[i], &v, &e) != -1)
			fail_msg("\"%s\" accepted as int64", bad[i]);
		assert_true(v == 99);
		assert_int_equal(e.code, ERR_PARSE);
		assert_non_null(strstr(e.msg, bad[i]));
		assert_non_null(strstr(e.msg, "int64"));
	}
	assert_int_equal(jsonh_get_int64(o, "junk", &v, &e), -1);
	assert_string_equal(e.msg, "field \"junk\" must be an int64 (number or decimal "
			    "string), got string \"12x\"");
	assert_int_equal(jsonh_get_int64(o, "real", &v, &e), -1);
	assert_non_null(strstr(e.msg, "got real"));
	assert_int_equal(jsonh_get_int64(o, "nil", &v, &e), -1);
	assert_string_equal(e.msg, "field \"nil\" missing");
	assert_int_equal(jsonh_opt_int64(o, "nil", -5, &v, &e), 0);
	assert_true(v == -5);
	assert_int_equal(jsonh_opt_int64(o, "absent", 8, &v, &e), 0);
	assert_true(v == 8);
	assert_int_equal(jsonh_opt_int64(o, "junk", 8, &v, &e), -1);
	/* unsigned */
	assert_int_equal(jsonh_get_uint64(o, "size", &u, &e), 0);
	assert_true(u == 1234567890123ULL);
	assert_int_equal(jsonh_get_uint64(o, "neg", &u, &e), -1);
	assert_non_null(strstr(e.msg, "non-negative"));
	assert_int_equal(jsonh_get_uint64(o, "numneg", &u, &e), -1);
	assert_int_equal(jsonh_opt_uint64(o, "absent", 3, &u, &e), 0);
	assert_true(u == 3);
	assert_int_equal(jsonh_get_uint64(o, "absent", &u, &e), -1);
	/* headers */
	assert_int_equal(jsonh_parse_int64("1700000000123456", "x-goog-generation", &v, &e), 0);
	assert_true(v == 1700000000123456LL);
	assert_int_equal(jsonh_parse_int64("17 ", "x-goog-generation", &v, &e), -1);
	assert_non_null(strstr(e.msg, "x-goog-generation"));
	assert_int_equal(jsonh_parse_int64(NULL, "hdr", &v, &e), -1);
	json_decref(o);
}

static void test_containers(void **state)
{
	json_t *o = parse_ok("{\"items\":[{\"name\":\"a\"},7,\"s\"],\"prefixes\":[\"p/\",\"x\\u0000\"],"
			     "\"meta\":{\"k\":\"v\"},\"nil\":null,\"str\":\"x\"}");
	json_t *a = NULL, *m = NULL, *el = NULL;
	const char *s = NULL;
	struct err e;

	(void)state;
	assert_int_equal(jsonh_get_array(o, "items", &a, &e), 0);
	assert_int_equal(json_array_size(a), 3);
	assert_int_equal(jsonh_elem_object(a, 0, "items", &el, &e), 0);
	assert_int_equal(jsonh_get_str(el, "name", &s, &e), 0);
	assert_string_equal(s, "a");
	assert_int_equal(jsonh_elem_object(a, 1, "items", &el, &e), -1);
	assert_string_equal(e.msg, "element items[1] must be an object, got integer");
	assert_int_equal(jsonh_elem_str(a, 2, "items", &s, &e), 0);
	assert_string_equal(s, "s");
	assert_int_equal(jsonh_elem_object(a, 3, "items", &el, &e), -1);
	assert_non_null(strstr(e.msg, "items[3] missing"));
	assert_int_equal(jsonh_get_array(o, "prefixes", &a, &e), 0);
	assert_int_equal(jsonh_elem_str(a, 1, "prefixes", &s, &e), -1);
	assert_non_null(strstr(e.msg, "NUL"));
	assert_int_equal(jsonh_elem_str(o, 0, "prefixes", &s, &e), -1);
	assert_int_equal(jsonh_get_array(o, "meta", &a, &e), -1);
	assert_string_equal(e.msg, "field \"meta\" must be an array, got object");
	assert_int_equal(jsonh_get_object(o, "meta", &m, &e), 0);
	assert_int_equal(jsonh_get_str(m, "k", &s, &e), 0);
	assert_string_equal(s, "v");
	assert_int_equal(jsonh_get_object(o, "items", &m, &e), -1);
	assert_int_equal(jsonh_get_object(o, "nil", &m, &e), -1);
	a = (json_t *)0x1;
	assert_int_equal(jsonh_opt_array(o, "nil", &a, &e), 0);
	assert_null(a);
	assert_int_equal(json_array_size(a), 0);
	assert_int_equal(jsonh_opt_object(o, "absent", &m, &e), 0);
	assert_null(m);
	assert_int_equal(jsonh_opt_object(o, "str", &m, &e), -1);
	/* getters on something that is not an object */
	assert_int_equal(jsonh_get_str(a, "x", &s, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
	assert_int_equal(jsonh_get_str(json_object_get(o, "str"), "x", &s, &e), -1);
	assert_non_null(strstr(e.msg, "not an object"));
	json_decref(o);
}

static void test_dumps(void **state)
{
	json_t *v = json_pack("{s:s, s:I, s:b, s:[s]}", "name", "a/\"b\"", "size",
			      (json_int_t)5000000000LL, "ok", 1, "l", "x");
	struct err e;
	char *s;

	(void)state;
	assert_non_null(v);
	s = jsonh_dumps(v, &e);
	assert_non_null(s);
	assert_string_equal(s, "{\"name\":\"a/\\\"b\\\"\",\"size\":5000000000,\"ok\":true,\"l\":[\"x\"]}");
	free(s);
	json_decref(v);
	assert_null(jsonh_dumps(NULL, &e));
	assert_int_equal(e.code, ERR_INVAL);
	assert_string_equal(jsonh_type_name(NULL), "nothing");
}

static void test_secret_values_not_echoed(void **state)
{
	json_t *o = parse_ok("{\"expires_in\":\"ya29.SECRETTOKEN\"}");
	struct err e;
	int64_t v;

	(void)state;
	assert_int_equal(jsonh_get_int64(o, "expires_in", &v, &e), -1);
	assert_null(strstr(e.msg, "SECRET"));
	json_decref(o);
}

static void test_utf8(void **state)
{
	json_t *v;

	(void)state;
	assert_int_equal(jsonh_utf8_valid(""), 1);
	assert_int_equal(jsonh_utf8_valid("plain/ascii.txt"), 1);
	assert_int_equal(jsonh_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), 1);
	assert_int_equal(jsonh_utf8_valid("bad\xff"), 0);             /* never a lead */
	assert_int_equal(jsonh_utf8_valid("cut\xc3"), 0);             /* truncated */
	assert_int_equal(jsonh_utf8_valid("\xc0\xaf"), 0);           /* overlong '/' */
	assert_int_equal(jsonh_utf8_valid("\xe0\x80\xaf"), 0);      /* overlong, 3 bytes */
	assert_int_equal(jsonh_utf8_valid("\xed\xa0\x80"), 0);      /* surrogate */
	assert_int_equal(jsonh_utf8_valid("\xf4\x90\x80\x80"), 0); /* past U+10FFFF */
	/* valid text is kept as it is */
	v = jsonh_string_lossy("caf\xc3\xa9");
	assert_non_null(v);
	assert_string_equal(json_string_value(v), "caf\xc3\xa9");
	json_decref(v);
	/* each bad byte becomes U+FFFD; the valid sequences around it stay */
	v = jsonh_string_lossy("a\xff" "b\xc3\xa9\xc3");
	assert_non_null(v);
	assert_string_equal(json_string_value(v), "a\xef\xbf\xbd" "b\xc3\xa9\xef\xbf\xbd");
	json_decref(v);
	v = jsonh_string_lossy(NULL);
	assert_non_null(v);
	assert_string_equal(json_string_value(v), "");
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_int64),
		cmocka_unit_test(test_containers),
		cmocka_unit_test(test_dumps),
		cmocka_unit_test(test_secret_values_not_echoed),
		cmocka_unit_test(test_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
