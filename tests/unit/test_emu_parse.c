/* Unit tests for tests/emulator/emu_parse.c: Content-Range, Range,
 * multipart/related, x-goog-hash, `fields` selectors and opaque tokens,
 * including the malformed inputs a client (or a fuzzer) may send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emu_parse.h"

static void test_i64(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(emu_parse_i64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(emu_parse_i64("1700000000123456", &v), 0);
	assert_true(v == 1700000000123456LL);
	assert_int_equal(emu_parse_i64("-5", &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(emu_parse_i64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(emu_parse_i64("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(emu_parse_i64("9223372036854775808", &v), -1);
	assert_int_equal(emu_parse_i64("", &v), -1);
	assert_int_equal(emu_parse_i64("-", &v), -1);
	assert_int_equal(emu_parse_i64("12a", &v), -1);
	assert_int_equal(emu_parse_i64(" 1", &v), -1);
	assert_int_equal(emu_parse_i64(NULL, &v), -1);
}

static void test_content_range(void **state)
{
	struct emu_crange c;

	(void)state;
	assert_int_equal(emu_parse_content_range("bytes 0-262143/1000000", &c), 0);
	assert_true(c.has_range && !c.open_end && c.has_total);
	assert_int_equal(c.first, 0);
	assert_int_equal(c.last, 262143);
	assert_int_equal(c.total, 1000000);

	assert_int_equal(emu_parse_content_range("bytes 262144-524287/*", &c), 0);
	assert_true(c.has_range && !c.has_total);
	assert_int_equal(c.first, 262144);

	assert_int_equal(emu_parse_content_range("bytes */1000", &c), 0);
	assert_true(!c.has_range && c.has_total);
	assert_int_equal(c.total, 1000);

	assert_int_equal(emu_parse_content_range("bytes */*", &c), 0);
	assert_true(!c.has_range && !c.has_total);

	assert_int_equal(emu_parse_content_range("bytes 0-*/*", &c), 0);
	assert_true(c.has_range && c.open_end && !c.has_total);

	assert_int_equal(emu_parse_content_range("bytes 5-*/10", &c), 0);
	assert_true(c.open_end && c.has_total && c.total == 10);

	/* malformed or inconsistent */
	assert_int_equal(emu_parse_content_range("bytes 10-5/100", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes 0-100/100", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes 0-99", &c), -1);
	assert_int_equal(emu_parse_content_range("items 0-9/10", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes -1-9/10", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes 0-9/10 junk", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes 0-99999999999999999999/*", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes 11-*/10", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes 0-18446744073709551615/*", &c), -1);
	assert_int_equal(emu_parse_content_range("bytes */9223372036854775808", &c), -1);
	assert_int_equal(emu_parse_content_range("", &c), -1);
	assert_int_equal(emu_parse_content_range(NULL, &c), -1);
}

static void test_range(void **state)
{
	uint64_t a = 0, b = 0;

	(void)state;
	assert_int_equal(emu_parse_range(NULL, 10, &a, &b), EMU_RANGE_WHOLE);
	assert_int_equal(emu_parse_range("bytes=2-4", 10, &a, &b), EMU_RANGE_PART);
	assert_int_equal(a, 2);
	assert_int_equal(b, 4);
	assert_int_equal(emu_parse_range("bytes=5-", 10, &a, &b), EMU_RANGE_PART);
	assert_int_equal(a, 5);
	assert_int_equal(b, 9);
	assert_int_equal(emu_parse_range("bytes=5-100", 10, &a, &b), EMU_RANGE_PART);
	assert_int_equal(b, 9);
	assert_int_equal(emu_parse_range("bytes=-3", 10, &a, &b), EMU_RANGE_PART);
	assert_int_equal(a, 7);
	assert_int_equal(b, 9);
	assert_int_equal(emu_parse_range("bytes=-30", 10, &a, &b), EMU_RANGE_PART);
	assert_int_equal(a, 0);
	assert_int_equal(emu_parse_range("bytes=10-", 10, &a, &b), EMU_RANGE_UNSAT);
	assert_int_equal(emu_parse_range("bytes=0-", 0, &a, &b), EMU_RANGE_UNSAT);
	assert_int_equal(emu_parse_range("bytes=-0", 10, &a, &b), EMU_RANGE_UNSAT);
	/* ignored: malformed, reversed, several ranges */
	assert_int_equal(emu_parse_range("bytes=4-2", 10, &a, &b), EMU_RANGE_WHOLE);
	assert_int_equal(emu_parse_range("bytes=0-1,3-4", 10, &a, &b), EMU_RANGE_WHOLE);
	assert_int_equal(emu_parse_range("pages=1-2", 10, &a, &b), EMU_RANGE_WHOLE);
	assert_int_equal(emu_parse_range("bytes=-", 10, &a, &b), EMU_RANGE_WHOLE);
}

static void test_boundary(void **state)
{
	char b[80];

	(void)state;
	assert_int_equal(emu_parse_boundary("multipart/related; boundary=abc123", b, sizeof(b)), 0);
	assert_string_equal(b, "abc123");
	assert_int_equal(emu_parse_boundary("multipart/related;boundary=\"a b;c\"", b, sizeof(b)), 0);
	assert_string_equal(b, "a b;c");
	assert_int_equal(emu_parse_boundary("Multipart/Related; charset=x; BOUNDARY=zz; q=1", b,
					    sizeof(b)), 0);
	assert_string_equal(b, "zz");
	assert_int_equal(emu_parse_boundary("application/json", b, sizeof(b)), -1);
	assert_int_equal(emu_parse_boundary("multipart/related", b, sizeof(b)), -1);
	assert_int_equal(emu_parse_boundary("multipart/related; boundary=", b, sizeof(b)), -1);
	assert_int_equal(emu_parse_boundary("multipart/related; boundary=\"open", b, sizeof(b)), -1);
	assert_int_equal(emu_parse_boundary(NULL, b, sizeof(b)), -1);
	assert_int_equal(emu_parse_boundary("multipart/related; boundary=0123456789", b, 4), -1);
}

static void test_multipart(void **state)
{
	static const char crlf[] =
		"preamble\r\n--XX\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
		"{\"name\":\"a\"}\r\n--XX\r\nContent-Type: text/plain\r\n"
		"Content-Transfer-Encoding: binary\r\n\r\nhel\r\nlo--X\r\n--XX--\r\nepilogue";
	static const char lf[] = "--b\n\n{}\n--b\ncontent-type: x/y\n\ndata\n--b--";
	static const char empty_data[] = "--b\r\n\r\n{}\r\n--b\r\n\r\n\r\n--b--\r\n";
	struct emu_multipart mp;
	char why[128];

	(void)state;
	assert_int_equal(emu_parse_multipart(crlf, sizeof(crlf) - 1, "XX", &mp, why,
					     sizeof(why)), 0);
	assert_int_equal(mp.nparts, 2);
	assert_int_equal(mp.part[0].len, 12);
	assert_memory_equal(mp.part[0].data, "{\"name\":\"a\"}", 12);
	assert_int_equal(mp.part[0].ctype_len, strlen("application/json; charset=UTF-8"));
	assert_int_equal(mp.part[1].len, 10);
	assert_memory_equal(mp.part[1].data, "hel\r\nlo--X", 10);
	assert_memory_equal(mp.part[1].ctype, "text/plain", 10);

	assert_int_equal(emu_parse_multipart(lf, sizeof(lf) - 1, "b", &mp, why, sizeof(why)), 0);
	assert_int_equal(mp.nparts, 2);
	assert_int_equal(mp.part[0].ctype_len, 0);
	assert_int_equal(mp.part[1].len, 4);
	assert_memory_equal(mp.part[1].data, "data", 4);

	assert_int_equal(emu_parse_multipart(empty_data, sizeof(empty_data) - 1, "b", &mp, why,
					     sizeof(why)), 0);
	assert_int_equal(mp.nparts, 2);
	assert_int_equal(mp.part[1].len, 0);
}

static void test_multipart_bad(void **state)
{
	struct emu_multipart mp;
	char why[128];
	static const char *const bad[] = {
		"",                                             /* nothing */
		"--XX\r\n\r\n{}\r\n--XX\r\n\r\ndata",           /* no close delimiter */
		"no boundary here",
		"--XX\r\nContent-Type text/plain\r\n\r\nx\r\n--XX--", /* header without ':' */
		"--XX\r\nContent-Transfer-Encoding: base64\r\n\r\neA==\r\n--XX--",
		"--XX\r\nContent-Type: a", /* unterminated headers */
		"--XX--\r\n",              /* close first */
		"--XXY\r\n\r\nx\r\n--XX--",
	};
	static const char many[] =
		"--X\r\n\r\n1\r\n--X\r\n\r\n2\r\n--X\r\n\r\n3\r\n--X\r\n\r\n4\r\n--X\r\n\r\n5\r\n--X--";
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(emu_parse_multipart(bad[i], strlen(bad[i]), "XX", &mp, why,
						     sizeof(why)), -1);
		assert_true(why[0] != '\0');
	}
	assert_int_equal(emu_parse_multipart(many, sizeof(many) - 1, "X", &mp, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "too many"));
	assert_int_equal(emu_parse_multipart("--X--", 5, "", &mp, NULL, 0), -1);
}

static void test_goog_hash(void **state)
{
	char crc[16], md5[32];

	(void)state;
	assert_int_equal(emu_parse_goog_hash("crc32c=yZRlqg==,md5=XrY7u+Ae7tCTyyK7j1rNww==",
					     crc, sizeof(crc), md5, sizeof(md5)), 0);
	assert_string_equal(crc, "yZRlqg==");
	assert_string_equal(md5, "XrY7u+Ae7tCTyyK7j1rNww==");
	assert_int_equal(emu_parse_goog_hash(" md5=AAA= , crc32c=BBB= ", crc, sizeof(crc), md5,
					     sizeof(md5)), 0);
	assert_string_equal(crc, "BBB=");
	assert_string_equal(md5, "AAA=");
	assert_int_equal(emu_parse_goog_hash("sha256=zzz", crc, sizeof(crc), md5, sizeof(md5)), 0);
	assert_string_equal(crc, "");
	assert_string_equal(md5, "");
	assert_int_equal(emu_parse_goog_hash(NULL, crc, sizeof(crc), md5, sizeof(md5)), 0);
	assert_int_equal(emu_parse_goog_hash("crc32c", crc, sizeof(crc), md5, sizeof(md5)), -1);
	assert_int_equal(emu_parse_goog_hash("crc32c=", crc, sizeof(crc), md5, sizeof(md5)), -1);
	assert_int_equal(emu_parse_goog_hash("=abc", crc, sizeof(crc), md5, sizeof(md5)), -1);
	assert_int_equal(emu_parse_goog_hash("crc32c=0123456789abcdefXYZ", crc, sizeof(crc), md5,
					     sizeof(md5)), -1);
}

static json_t *apply(const char *sel, const char *doc)
{
	int bad = 0;
	struct emu_fields *f = emu_fields_parse(sel, &bad);
	json_t *j = json_loads(doc, 0, NULL);

	assert_int_equal(bad, 0);
	assert_non_null(j);
	emu_fields_apply(f, j);
	emu_fields_free(f);
	return j;
}

static void assert_json(json_t *j, const char *want)
{
	json_t *w = json_loads(want, 0, NULL);

	assert_non_null(w);
	if (!json_equal(j, w)) {
		char *s = json_dumps(j, JSON_SORT_KEYS);

		print_error("got %s\n", s);
		free(s);
		fail();
	}
	json_decref(w);
	json_decref(j);
}

static void test_fields(void **state)
{
	static const char doc[] =
		"{\"kind\":\"k\",\"nextPageToken\":\"t\",\"prefixes\":[\"a/\"],"
		"\"items\":[{\"name\":\"x\",\"size\":\"1\",\"metadata\":{\"m\":\"1\",\"n\":\"2\"}},"
		"{\"name\":\"y\",\"size\":\"2\"}]}";
	int bad = 1;

	(void)state;
	assert_json(apply("nextPageToken,prefixes,items(name,size)", doc),
		    "{\"nextPageToken\":\"t\",\"prefixes\":[\"a/\"],"
		    "\"items\":[{\"name\":\"x\",\"size\":\"1\"},{\"name\":\"y\",\"size\":\"2\"}]}");
	assert_json(apply("items/name", doc), "{\"items\":[{\"name\":\"x\"},{\"name\":\"y\"}]}");
	assert_json(apply("items(metadata/m)", doc),
		    "{\"items\":[{\"metadata\":{\"m\":\"1\"}},{}]}");
	assert_json(apply("items(name),items(size)", doc),
		    "{\"items\":[{\"name\":\"x\",\"size\":\"1\"},{\"name\":\"y\",\"size\":\"2\"}]}");
	assert_json(apply(" kind , unknown ", doc), "{\"kind\":\"k\"}");
	assert_json(apply("*", doc), doc);
	assert_json(apply("items(*)", "{\"items\":[{\"a\":1}],\"b\":2}"), "{\"items\":[{\"a\":1}]}");
	/* empty selector: everything */
	assert_null(emu_fields_parse("", &bad));
	assert_int_equal(bad, 0);
	assert_null(emu_fields_parse(NULL, &bad));
	assert_int_equal(bad, 0);
	emu_fields_apply(NULL, NULL);
}

static void test_fields_bad(void **state)
{
	static const char *const bad_sel[] = {
		"items(", "items()", "a,,b", ",a", "a)", "a/", "a b", "a(b))", "(a)", "a/(b)",
		"a(b(c(d(e(f(g(h(i(j(k(l(m(n(o(p(q(r(s)))))))))))))))))))",
	};
	char big[4096];
	size_t i;
	int bad;

	(void)state;
	for (i = 0; i < sizeof(bad_sel) / sizeof(bad_sel[0]); i++) {
		bad = 0;
		assert_null(emu_fields_parse(bad_sel[i], &bad));
		assert_int_equal(bad, 1);
	}
	/* too many nodes */
	for (i = 0; i + 3 < sizeof(big); i += 3) {
		big[i] = 'a' + (char)(i % 26);
		big[i + 1] = 'a' + (char)((i / 26) % 26);
		big[i + 2] = ',';
	}
	big[i - 1] = '\0';
	bad = 0;
	assert_null(emu_fields_parse(big, &bad));
	assert_int_equal(bad, 1);
}

static void test_tokens(void **state)
{
	char *t, *k = NULL, *raw;
	size_t kl = 0, n = 0;
	int64_t g = 0;
	static const char name[] = "dir/sub dir/\xc3\xa9t\xc3\xa9+?&=.txt";

	(void)state;
	t = emu_page_token_make(name, strlen(name), 1234567);
	assert_non_null(t);
	assert_null(strpbrk(t, "+/=&?% "));  /* safe in a query unescaped */
	assert_int_equal(emu_page_token_parse(t, &k, &kl, &g), 0);
	assert_int_equal(kl, strlen(name));
	assert_string_equal(k, name);
	assert_true(g == 1234567);
	free(k);
	free(t);

	t = emu_page_token_make("", 0, -1);
	assert_int_equal(emu_page_token_parse(t, &k, &kl, &g), 0);
	assert_int_equal(kl, 0);
	assert_true(g == -1);
	free(k);
	free(t);

	assert_int_equal(emu_page_token_parse("not base64!", &k, &kl, &g), -1);
	t = emu_token_encode("2:5:x", 5);
	assert_int_equal(emu_page_token_parse(t, &k, &kl, &g), -1);
	free(t);
	t = emu_token_encode("1:x:y", 5);
	assert_int_equal(emu_page_token_parse(t, &k, &kl, &g), -1);
	free(t);
	t = emu_token_encode("1:-7:y", 6);
	assert_int_equal(emu_page_token_parse(t, &k, &kl, &g), -1);
	free(t);
	t = emu_token_encode("1:5:a\0b", 7);
	assert_int_equal(emu_page_token_parse(t, &k, &kl, &g), -1);
	free(t);
	assert_int_equal(emu_page_token_parse("", &k, &kl, &g), -1);

	raw = emu_token_decode("aGVsbG8", &n);
	assert_non_null(raw);
	assert_int_equal(n, 5);
	assert_string_equal(raw, "hello");
	free(raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_i64),
		cmocka_unit_test(test_content_range),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_boundary),
		cmocka_unit_test(test_multipart),
		cmocka_unit_test(test_multipart_bad),
		cmocka_unit_test(test_goog_hash),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_fields_bad),
		cmocka_unit_test(test_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
