/* Unit tests for tests/emulator/emu_drive_batch.c: splitting a Drive batch
 * (multipart/mixed of application/http requests, CRLF or LF, with and
 * without bodies), the part cap, malformed batches, response ids and the
 * multipart reply builder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emu_drive_batch.h"

static int parse(const char *body, size_t max, struct dbatch *b)
{
	char why[160];

	return dbatch_parse(body, strlen(body), "BND", max, b, why, sizeof(why));
}

static void test_parse_parts(void **state)
{
	static const char body[] =
		"preamble is ignored\r\n"
		"--BND\r\n"
		"Content-Type: application/http\r\n"
		"Content-ID: <item1>\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"DELETE /drive/v3/files/abc?supportsAllDrives=true HTTP/1.1\r\n"
		"\r\n"
		"\r\n"
		"--BND\r\n"
		"Content-Type: application/http\r\n"
		"Content-ID: item2\r\n"
		"\r\n"
		"PATCH https://www.googleapis.com/drive/v3/files/x?fields=name HTTP/1.1\r\n"
		"Content-Type: application/json; charset=UTF-8\r\n"
		"Content-Length: 15\r\n"
		"\r\n"
		"{\"name\":\"new\"}\n"
		"\r\n"
		"--BND\n"
		"Content-Type: application/http\n"
		"\n"
		"GET /drive/v3/about?fields=user\n"
		"--BND--\r\n"
		"epilogue\r\n";
	struct dbatch b;

	(void)state;
	assert_int_equal(parse(body, 100, &b), 0);
	assert_int_equal(b.nparts, 3);
	assert_string_equal(b.parts[0].content_id, "<item1>");
	assert_string_equal(b.parts[0].method, "DELETE");
	assert_string_equal(b.parts[0].target, "/drive/v3/files/abc?supportsAllDrives=true");
	assert_int_equal(b.parts[0].nh, 0);
	assert_int_equal(b.parts[0].body_len, 0);
	assert_string_equal(b.parts[1].content_id, "item2");
	assert_string_equal(b.parts[1].method, "PATCH");
	assert_string_equal(b.parts[1].target,
			    "https://www.googleapis.com/drive/v3/files/x?fields=name");
	assert_int_equal(b.parts[1].nh, 2);
	assert_string_equal(dbatch_header(&b.parts[1], "content-type"),
			    "application/json; charset=UTF-8");
	assert_string_equal(dbatch_header(&b.parts[1], "CONTENT-LENGTH"), "15");
	assert_null(dbatch_header(&b.parts[1], "Authorization"));
	assert_int_equal(b.parts[1].body_len, 15);
	assert_memory_equal(b.parts[1].body, "{\"name\":\"new\"}\n", 15);
	assert_null(b.parts[2].content_id);
	assert_string_equal(b.parts[2].method, "GET");
	assert_string_equal(b.parts[2].target, "/drive/v3/about?fields=user");
	dbatch_release(&b);
	dbatch_release(&b);  /* idempotent */
}

static void test_part_cap(void **state)
{
	size_t cap = 101 * 80 + 32, len = 0;
	char *body = malloc(cap);
	struct dbatch b;
	int i;

	(void)state;
	for (i = 0; i < 101; i++)
		len += (size_t)snprintf(body + len, cap - len,
					"--BND\r\nContent-Type: application/http\r\n\r\nGET /f/%d\r\n", i);
	snprintf(body + len, cap - len, "--BND--\r\n");
	assert_int_equal(parse(body, 101, &b), 0);
	assert_int_equal(b.nparts, 101);
	dbatch_release(&b);
	assert_int_equal(parse(body, 100, &b), -2);
	assert_int_equal(b.nparts, 101);
	assert_null(b.parts);
	free(body);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"no delimiter at all",
		"--BND--\r\n",  /* no parts */
		"--BND\r\nContent-Type: application/http\r\n\r\nGET /x\r\n",  /* no close */
		"--BND\r\nContent-Type: text/plain\r\n\r\nGET /x\r\n--BND--",
		"--BND\r\n\r\nGET /x\r\n--BND--",  /* no Content-Type */
		"--BND\r\nContent-Type: application/http\r\n\r\n\r\n--BND--",
		"--BND\r\nContent-Type: application/http\r\n\r\nget /x\r\n--BND--",
		"--BND\r\nContent-Type: application/http\r\n\r\nGET\r\n--BND--",
		"--BND\r\nContent-Type: application/http\r\n\r\nGET /x FTP/1\r\n--BND--",
		"--BND\r\nContent-Type: application/http\r\nbroken header\r\n\r\nGET /x\r\n--BND--",
		"--BND\r\nContent-Type: application/http\r\n\r\nGET /x\r\nno colon\r\n\r\n--BND--",
		"--BND\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"GET /x\r\n--BND--",
		"--BNDgarbage\r\nContent-Type: application/http\r\n\r\nGET /x\r\n--BND--",
	};
	size_t i;
	struct dbatch b;
	char why[160];

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (dbatch_parse(bad[i], strlen(bad[i]), "BND", 100, &b, why, sizeof(why)) != -1)
			fail_msg("accepted malformed batch #%zu", i);
		assert_true(why[0] != '\0');
		assert_int_equal(b.nparts, 0);
	}
	assert_int_equal(dbatch_parse("--x--", 5, "", 100, &b, NULL, 0), -1);
	/* a NUL inside a request line is refused */
	{
		static const char nul[] = "--BND\r\nContent-Type: application/http\r\n\r\n"
					  "GET /a\0b HTTP/1.1\r\n--BND--";

		assert_int_equal(dbatch_parse(nul, sizeof(nul) - 1, "BND", 100, &b, why,
					      sizeof(why)), -1);
	}
}

static void test_response_id(void **state)
{
	char *r;

	(void)state;
	r = dbatch_response_id("<item1>");
	assert_string_equal(r, "<response-item1>");
	free(r);
	r = dbatch_response_id("abc");
	assert_string_equal(r, "response-abc");
	free(r);
	r = dbatch_response_id("<>");
	assert_string_equal(r, "<response->");
	free(r);
	assert_null(dbatch_response_id(NULL));
	assert_null(dbatch_response_id(""));
}

static void test_reply(void **state)
{
	struct dbuf b = { 0 };
	const char *names[] = { "Content-Type" };
	const char *values[] = { "application/json; charset=UTF-8" };
	static const char want[] =
		"--RB\r\nContent-Type: application/http\r\nContent-ID: <response-1>\r\n\r\n"
		"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
		"Content-Length: 2\r\n\r\n{}\r\n"
		"--RB\r\nContent-Type: application/http\r\n\r\n"
		"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n\r\n"
		"--RB--\r\n";

	(void)state;
	dbatch_add_response(&b, "RB", "<response-1>", 200, names, values, 1, "{}", 2);
	dbatch_add_response(&b, "RB", NULL, 204, NULL, NULL, 0, "", 0);
	dbatch_finish(&b, "RB");
	assert_int_equal(b.oom, 0);
	assert_int_equal(b.len, strlen(want));
	assert_string_equal(b.p, want);
	free(b.p);
	assert_string_equal(dbatch_reason_phrase(404), "Not Found");
	assert_string_equal(dbatch_reason_phrase(299), "OK");
	assert_string_equal(dbatch_reason_phrase(599), "Server Error");
}

/* A reply round-trips through the parser's own delimiter rules. */
static void test_roundtrip_bodies(void **state)
{
	struct dbuf b = { 0 };
	struct dbatch out;
	char why[100];
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		dbuf_addf(&b, "--BND\r\nContent-Type: application/http\r\nContent-ID: <%d>\r\n\r\n", i);
		dbuf_addf(&b, "POST /drive/v3/files HTTP/1.1\r\nContent-Type: application/json\r\n\r\n");
		dbuf_addf(&b, "{\"name\":\"--BN%d\"}\r\n", i);  /* looks like, but is not, a delimiter */
	}
	dbuf_addf(&b, "--BND--");
	assert_int_equal(dbatch_parse(b.p, b.len, "BND", 100, &out, why, sizeof(why)), 0);
	assert_int_equal(out.nparts, 5);
	for (i = 0; i < 5; i++) {
		char want[32];

		snprintf(want, sizeof(want), "{\"name\":\"--BN%d\"}", i);
		assert_string_equal(out.parts[i].body, want);
	}
	dbatch_release(&out);
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_parts),
		cmocka_unit_test(test_part_cap),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_response_id),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_roundtrip_bodies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
