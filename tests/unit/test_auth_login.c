/* Unit tests for the login pieces (auth/login.c, auth/store.c): the PKCE
 * S256 challenge (RFC 7636 appendix B vector), verifier and state shape,
 * the authorization URL, redirect parsing, and the atomic 0600 store. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/auth_login.h"
#include "durafs/auth_store.h"

static void test_pkce_rfc7636(void **state)
{
	char ch[AUTH_PKCE_LEN + 1];

	(void)state;
	/* RFC 7636, appendix B. */
	assert_int_equal(auth_login_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch,
					      sizeof(ch)), 0);
	assert_string_equal(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	/* Verifiers outside 43..128 unreserved characters are refused. */
	assert_int_equal(auth_login_challenge("short", ch, sizeof(ch)), -1);
	assert_int_equal(auth_login_challenge("dBjftJeZ4CVP+mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch,
					      sizeof(ch)), -1);
	assert_int_equal(auth_login_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch,
					      10), -1);
}

static void test_random(void **state)
{
	char a[AUTH_PKCE_LEN + 1], b[AUTH_PKCE_LEN + 1], ch[AUTH_PKCE_LEN + 1];
	struct err err;
	size_t i;

	(void)state;
	assert_int_equal(auth_login_random(a, sizeof(a), &err), 0);
	assert_int_equal(auth_login_random(b, sizeof(b), &err), 0);
	assert_int_equal(strlen(a), AUTH_PKCE_LEN);
	assert_string_not_equal(a, b);
	for (i = 0; i < AUTH_PKCE_LEN; i++)
		assert_true(isalnum((unsigned char)a[i]) || a[i] == '-' || a[i] == '_');
	assert_int_equal(auth_login_challenge(a, ch, sizeof(ch)), 0);
	assert_int_equal(auth_login_random(a, 10, &err), -1);
}

static void test_auth_url(void **state)
{
	char *u;

	(void)state;
	u = auth_login_auth_url("https://accounts.google.com/o/oauth2/v2/auth", "id.apps",
				"http://127.0.0.1:4321", AUTH_SCOPE_DRIVE " " AUTH_SCOPE_GCS,
				"st-1", "chal");
	assert_non_null(u);
	assert_string_equal(u, "https://accounts.google.com/o/oauth2/v2/auth?response_type=code"
			    "&client_id=id.apps&redirect_uri=http%3A%2F%2F127.0.0.1%3A4321"
			    "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdrive%20https%3A%2F%2F"
			    "www.googleapis.com%2Fauth%2Fdevstorage.read_write&state=st-1"
			    "&code_challenge=chal&code_challenge_method=S256&access_type=offline"
			    "&prompt=consent");
	free(u);
	/* An endpoint that already has a query gets '&'. */
	u = auth_login_auth_url("http://x/auth?a=1", "c", "r", "s", "t", "h");
	assert_non_null(strstr(u, "http://x/auth?a=1&response_type=code&"));
	free(u);
}

static void test_parse_redirect(void **state)
{
	struct err err;
	char *code = NULL;

	(void)state;
#define OK(in, want) do { \
		assert_int_equal(auth_login_parse_redirect((in), "S1", &code, &err), 0); \
		assert_string_equal(code, (want)); free(code); code = NULL; } while (0)
#define BAD(in, ecode, text) do { \
		assert_int_equal(auth_login_parse_redirect((in), "S1", &code, &err), -1); \
		assert_null(code); assert_int_equal(err.code, (ecode)); \
		if (!strstr(err.msg, (text))) fail_msg("'%s' lacks '%s'", err.msg, (text)); \
		assert_null(strstr(err.msg, "4/SECRET")); } while (0)

	OK("http://127.0.0.1:5555/?state=S1&code=4/0Ab%2Bc&scope=x", "4/0Ab+c");
	OK("  http://127.0.0.1:5555/?code=4%2Fabc&state=S1#frag\n", "4/abc");
	OK("/?code=a+b&state=S1", "a b");
	OK("?code=zz&state=S1&authuser=0&prompt=consent", "zz");
	OK("GET /?code=q1&state=S1 HTTP/1.1", "q1");
	OK("code=q2&state=S1", "q2");
	/* A bare code: nothing to check it against but PKCE. */
	OK("4/0AbcDEF-ghi_jkl", "4/0AbcDEF-ghi_jkl");
	OK("4%2F0Abc", "4%2F0Abc");

	BAD("http://127.0.0.1:5555/?code=4/SECRET&state=WRONG", ERR_INVAL, "state does not match");
	BAD("http://127.0.0.1:5555/?code=4/SECRET", ERR_INVAL, "state does not match");
	BAD("http://127.0.0.1:5555/?state=S1", ERR_INVAL, "no authorization code");
	BAD("http://127.0.0.1:5555/?state=S1&code=", ERR_INVAL, "no authorization code");
	BAD("http://127.0.0.1:5555/?state=S1&code=4/SECRET&code=b", ERR_INVAL, "repeats");
	BAD("http://127.0.0.1:5555/?state=S1&code=%zz4/SECRET", ERR_INVAL, "percent-escape");
	BAD("http://127.0.0.1:5555/?error=access_denied&error_description=The+user+said+no&"
	    "state=S1", ERR_AUTH, "refused: access_denied: The user said no");
	assert_string_equal(err.reason, "access_denied");
	BAD("", ERR_INVAL, "nothing was pasted");
	BAD("  \n", ERR_INVAL, "nothing was pasted");
	BAD("some words here", ERR_INVAL, "neither the redirect URL nor");
	BAD("http://127.0.0.1:5555/", ERR_INVAL, "neither");
	/* found by fuzzing: an empty "bare code" must not be accepted */
	BAD("GET  /?code=x HTTP/1.1", ERR_INVAL, "");
#undef OK
#undef BAD
}

static void test_store(void **state)
{
	struct auth_login_record rec;
	struct auth_source *src = NULL;
	struct auth_opts o;
	struct err err;
	struct stat st;
	char dir[64], path[160], cmd[128];
	json_t *j;
	json_error_t jerr;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/durafs-authlogin-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/durafs/credentials.json", dir);
	memset(&rec, 0, sizeof(rec));
	rec.client_id = "cid";
	rec.client_secret = "csecret";
	rec.refresh_token = "1//rt";
	rec.token_uri = "http://127.0.0.1:9/token";
	rec.scopes = AUTH_SCOPE_DRIVE;
	rec.account = "me@example.com";
	umask(022);
	assert_int_equal(auth_store_save(path, &rec, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(cmd, sizeof(cmd), "%s/a/b/durafs", dir);
	assert_int_equal(stat(cmd, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	j = json_load_file(path, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "authorized_user");
	assert_string_equal(json_string_value(json_object_get(j, "refresh_token")), "1//rt");
	assert_string_equal(json_string_value(json_object_get(j, "token_uri")),
			    "http://127.0.0.1:9/token");
	json_decref(j);
	/* Replacing it leaves no temporary file behind and stays 0600. */
	rec.refresh_token = "1//rt2";
	assert_int_equal(auth_store_save(path, &rec, &err), 0);
	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s/a/b/durafs' | wc -l) -eq 1", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* What was stored reads back as an authorized_user source. */
	memset(&o, 0, sizeof(o));
	assert_int_equal(auth_adc_from_file(path, "stored", NULL, &o, &src, &err), 0);
	assert_string_equal(src->account, "me@example.com");
	assert_string_equal(src->scopes, AUTH_SCOPE_DRIVE);
	auth_source_free(src);
	/* A directory in the way: a clear error, nothing left behind. */
	snprintf(path, sizeof(path), "%s/a", dir);
	assert_int_equal(auth_store_save(path, &rec, &err), -1);
	assert_int_equal(err.code, ERR_IO);
	assert_non_null(strstr(err.msg, path));
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls '%s' | grep tmp)\"", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkce_rfc7636),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_auth_url),
		cmocka_unit_test(test_parse_redirect),
		cmocka_unit_test(test_store),
	};

	return cmocka_run_group_tests_name("auth_login", tests, NULL, NULL);
}
