/* Unit tests for sync/log.c: secret redaction in every form, levels, line
 * format, file destination and whole lines under concurrent writers. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/log.h"

/* Redact a copy of in; check no secret survives and the expected text
 * (with the masks) is exactly what remains. */
static void check_redact(const char *in, const char *want, size_t nmask)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s", in);
	assert_int_equal(log_redact(buf), nmask);
	assert_string_equal(buf, want);
}

static void test_redact_forms(void **state)
{
	(void)state;
	check_redact("Authorization: Bearer ya29.a0AfH6SMBx-secret_tok",
		     "Authorization: ***", 1);
	check_redact("header authorization: Basic dXNlcjpwYXNz\r\nHost: x",
		     "header authorization: ***\r\nHost: x", 1);
	check_redact("sent Bearer abc.def-ghi~jkl/mn+o= then", "sent Bearer *** then", 1);
	check_redact("GET /o?alt=media&access_token=SECRET1&x=1",
		     "GET /o?alt=media&access_token=***&x=1", 1);
	check_redact("{\"access_token\":\"SECRET2\",\"expires_in\":3599}",
		     "{\"access_token\":\"***\",\"expires_in\":3599}", 1);
	check_redact("{\"refresh_token\": \"1//0gSECRET3\", \"a\":1}",
		     "{\"refresh_token\": \"***\", \"a\":1}", 1);
	check_redact("grant_type=urn%3Ajwt-bearer&assertion=AAA.BBB.CCC",
		     "grant_type=urn%3Ajwt-bearer&assertion=***", 1);
	check_redact("client_id=123&client_secret=GOCSPX-xyz&grant_type=refresh_token",
		     "client_id=123&client_secret=***&grant_type=refresh_token", 1);
	check_redact("{\"private_key_id\": \"abcdef\", \"x\": 2}",
		     "{\"private_key_id\": \"***\", \"x\": 2}", 1);
	check_redact("\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEv\\\"Q\\n-----END PRIVATE KEY-----\\n\", \"n\": 1",
		     "\"private_key\": \"***\", \"n\": 1", 1);
	check_redact("key file -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKC\n-----END RSA PRIVATE KEY----- done",
		     "key file -----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY----- done", 1);
	check_redact("PUT /upload/storage/v1/b/b/o?uploadType=resumable&upload_id=ADPycdt",
		     "PUT /upload/storage/v1/b/b/o?uploadType=resumable&upload_id=***", 1);
	check_redact("redirect /cb?state=s1&code=4/0AX4XfWh&scope=x",
		     "redirect /cb?state=s1&code=***&scope=x", 1);
	check_redact("GET /v?key=AIzaSyA", "GET /v?key=***", 1);
	/* escaped JSON inside a string */
	check_redact("body=\"{\\\"access_token\\\":\\\"SECRET4\\\"}\"",
		     "body=\"{\\\"access_token\\\":\\\"***\\\"}\"", 1);
	/* bare tokens and JWTs, wherever they appear */
	check_redact("token is ya29.c.b0Aaekm1K then", "token is *** then", 1);
	check_redact("jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln end",
		     "jwt *** end", 1);
	/* short values are masked without growing the string */
	check_redact("access_token=ab", "access_token=**", 1);
}

static void test_redact_leaves_innocent_text(void **state)
{
	(void)state;
	check_redact("nextPageToken=abc&pageToken=def&monkey=1&codec=x",
		     "nextPageToken=abc&pageToken=def&monkey=1&codec=x", 0);
	check_redact("{\"error\":{\"code\":404,\"message\":\"No such object\"}}",
		     "{\"error\":{\"code\":404,\"message\":\"No such object\"}}", 0);
	check_redact("token refresh failed: invalid_grant",
		     "token refresh failed: invalid_grant", 0);
	check_redact("{\"token_type\":\"Bearer\",\"expires_in\":3599}",
		     "{\"token_type\":\"Bearer\",\"expires_in\":3599}", 0);
	check_redact("field \"access_token\" missing", "field \"access_token\" missing", 0);
	check_redact("", "", 0);
	assert_int_equal(log_redact(NULL), 0);
}

static void test_levels(void **state)
{
	int lvl = -1;

	(void)state;
	assert_int_equal(log_get_level(), LOG_LVL_INFO);
	assert_true(log_enabled(LOG_LVL_ERROR));
	assert_true(log_enabled(LOG_LVL_INFO));
	assert_false(log_enabled(LOG_LVL_DEBUG));
	log_set_level(LOG_LVL_DEBUG);
	assert_true(log_enabled(LOG_LVL_DEBUG));
	log_set_level(99);
	assert_int_equal(log_get_level(), LOG_LVL_DEBUG);
	log_set_level(-5);
	assert_int_equal(log_get_level(), LOG_LVL_ERROR);
	assert_false(log_enabled(LOG_LVL_WARN));
	assert_int_equal(log_level_parse("WARNING", &lvl), 0);
	assert_int_equal(lvl, LOG_LVL_WARN);
	assert_int_equal(log_level_parse("debug", &lvl), 0);
	assert_int_equal(lvl, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("loud", &lvl), -1);
	assert_int_equal(log_level_parse(NULL, &lvl), -1);
	assert_string_equal(log_level_name(LOG_LVL_ERROR), "ERROR");
	assert_string_equal(log_level_name(LOG_LVL_DEBUG), "DEBUG");
	log_set_level(LOG_LVL_INFO);
}

/* Read the whole file into a malloc'd string. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void test_file_lines(void **state)
{
	char path[] = "/tmp/durafs-test-log-XXXXXX";
	struct err e;
	char *text, *line2;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open(path, &e), 0);
	log_set_level(LOG_LVL_INFO);
	errno = EXDEV;
	log_info("gcs", "listed %d names under %s", 3, "a/b");
	assert_int_equal(errno, EXDEV);  /* logging never clobbers errno */
	log_debug("gcs", "hidden %s", "debug line");
	log_warn(NULL, "multi\nline\ttext with Bearer SECRETX and access_token=SECRETY");
	log_close();
	log_error("test", "this goes to stderr, not the file");
	text = slurp(path);
	/* 2024-05-01T12:34:56.789Z INFO  gcs: listed 3 names under a/b */
	assert_int_equal(strlen(text) > 25, 1);
	assert_true(text[4] == '-' && text[10] == 'T' && text[19] == '.' && text[23] == 'Z');
	assert_non_null(strstr(text, "Z INFO  gcs: listed 3 names under a/b\n"));
	assert_null(strstr(text, "hidden"));
	line2 = strchr(text, '\n');
	assert_non_null(line2);
	assert_non_null(strstr(line2 + 1, "WARN  -: multi line text with Bearer *** and access_token=***\n"));
	assert_null(strstr(text, "SECRET"));
	/* exactly two lines */
	assert_null(strchr(strchr(line2 + 1, '\n') + 1, '\n'));
	free(text);
	unlink(path);
	assert_int_equal(log_open("/nonexistent-dir/x.log", &e), -1);
	assert_int_equal(e.code, ERR_IO);
}

static void test_long_message_truncated(void **state)
{
	char path[] = "/tmp/durafs-test-log-XXXXXX";
	char *big, *text;
	struct err e;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	big = malloc(10000);
	assert_non_null(big);
	memset(big, 'x', 9999);
	big[9999] = '\0';
	assert_int_equal(log_open(path, &e), 0);
	log_error("t", "%s", big);
	log_close();
	text = slurp(path);
	assert_true(strlen(text) < 4096 + 128);
	assert_non_null(strstr(text, "xxx...\n"));
	free(text);
	free(big);
	unlink(path);
}

#define NTHREADS 8
#define NLINES 500

static void *writer(void *arg)
{
	long id = (long)arg;
	int i;

	for (i = 0; i < NLINES; i++)
		log_info("thr", "thread %ld line %d %s", id, i,
			 "padding-padding-padding-padding-padding-padding");
	return NULL;
}

static void test_threads_whole_lines(void **state)
{
	char path[] = "/tmp/durafs-test-log-XXXXXX";
	pthread_t th[NTHREADS];
	char *text, *p, *nl;
	struct err e;
	long i;
	int fd, lines = 0;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open(path, &e), 0);
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)i), 0);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	log_close();
	text = slurp(path);
	for (p = text; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		assert_non_null(nl);
		*nl = '\0';
		assert_non_null(strstr(p, " INFO  thr: thread "));
		assert_non_null(strstr(p, "padding-padding"));
		lines++;
	}
	assert_int_equal(lines, NTHREADS * NLINES);
	free(text);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact_forms),
		cmocka_unit_test(test_redact_leaves_innocent_text),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_file_lines),
		cmocka_unit_test(test_long_message_truncated),
		cmocka_unit_test(test_threads_whole_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
