/* Unit tests for credentials files (auth/credfile.c), the static source,
 * the file-reading side of the service-account and authorized_user
 * sources, and token-endpoint reply parsing (auth/oauth.c): every missing
 * or malformed field is named with its file, no secret is ever quoted, and
 * loose permissions draw the ssh-style warning. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/auth_cred.h"
#include "durafs/auth_oauth.h"
#include "durafs/auth_static.h"
#include "unit_util.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/durafs-authcred-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* Write text to dir/name with mode; returns the path (static buffer). */
static const char *put(const char *name, const char *text, mode_t mode)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

/* Build a source from a file; returns its error (code ERR_OK on success). */
static struct err from_file(const char *path, FILE *warn, struct auth_source **out)
{
	struct auth_opts o = { 0 };
	struct err err;

	err_clear(&err);
	o.warn = warn;
	o.scopes = AUTH_SCOPE_GCS;
	*out = NULL;
	auth_adc_from_file(path, "test", NULL, &o, out, &err);
	return err;
}

static void test_perm_warning(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m;
	const char *p;
	char *data = NULL;
	struct err err;

	(void)state;
	m = open_memstream(&buf, &len);
	assert_int_equal(auth_cred_perm_warn("/a/b.json", 0600, m), 0);
	assert_int_equal(auth_cred_perm_warn("/a/b.json", 0400, m), 0);
	fflush(m);
	assert_int_equal(len, 0);
	assert_int_equal(auth_cred_perm_warn("/a/b.json", 0640, m), 1);
	fflush(m);
	assert_non_null(strstr(buf, "/a/b.json"));
	assert_non_null(strstr(buf, "group"));
	assert_non_null(strstr(buf, "chmod 600 /a/b.json"));
	fclose(m);
	free(buf);

	/* Reading a 0644 file warns, a 0600 one does not. */
	buf = NULL;
	m = open_memstream(&buf, &len);
	p = put("loose.json", "{}", 0644);
	assert_int_equal(auth_cred_read(p, m, &data, NULL, &err), 0);
	free(data);
	fflush(m);
	assert_non_null(strstr(buf, "loose.json"));
	assert_non_null(strstr(buf, "group and others"));
	assert_non_null(strstr(buf, "chmod 600"));
	fclose(m);
	free(buf);
	buf = NULL;
	m = open_memstream(&buf, &len);
	p = put("tight.json", "{}", 0600);
	assert_int_equal(auth_cred_read(p, m, &data, NULL, &err), 0);
	free(data);
	fflush(m);
	assert_int_equal(len, 0);
	fclose(m);
	free(buf);
}

static void test_read_errors(void **state)
{
	struct err err;
	char *data = NULL, path[256];
	json_t *j = NULL;
	FILE *devnull = fopen("/dev/null", "w");

	(void)state;
	snprintf(path, sizeof(path), "%s/missing.json", dir);
	assert_int_equal(auth_cred_read(path, devnull, &data, NULL, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(auth_cred_read(dir, devnull, &data, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));

	/* A syntax error reports line/column, never the text around it. */
	assert_int_equal(auth_cred_load(put("bad.json", "{\"private_key\": \"SECRETKEY\n",
					    0600), devnull, &j, &err), -1);
	assert_int_equal(err.code, ERR_PARSE);
	assert_non_null(strstr(err.msg, "bad.json: not valid JSON (line"));
	assert_null(strstr(err.msg, "SECRET"));
	assert_int_equal(auth_cred_load(put("arr.json", "[1]", 0600), devnull, &j, &err), -1);
	assert_non_null(strstr(err.msg, "not a JSON object"));
	assert_int_equal(auth_cred_load(put("dup.json", "{\"a\":\"1\",\"a\":\"SECRET\"}", 0600),
				       devnull, &j, &err), -1);
	assert_null(strstr(err.msg, "SECRET"));
	fclose(devnull);
}

/* Each field of a service-account file, missing or wrong. */
static void test_sa_fields(void **state)
{
	static const struct {
		const char *json;
		const char *want;
	} cases[] = {
		{ "{}", "field \"type\" missing" },
		{ "{\"type\":7}", "field \"type\" is not a string" },
		{ "{\"type\":\"service_account\"}", "field \"client_email\" missing" },
		{ "{\"type\":\"service_account\",\"client_email\":\"\"}",
		  "field \"client_email\" is empty" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a@b\"}",
		  "field \"private_key\" missing" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":42}",
		  "field \"private_key\" is not a string" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a@b\","
		  "\"private_key\":\"SECRET-NOT-PEM\"}",
		  "field \"private_key\" is not a PEM private key" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a@b\","
		  "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nSECRETSECRET\\n"
		  "-----END PRIVATE KEY-----\\n\"}",
		  "field \"private_key\" is not a valid PEM private key" },
		{ "{\"type\":\"service_account\",\"client_email\":\"nobody\","
		  "\"private_key\":\"x\"}", "field \"client_email\" is not an email" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a@b\","
		  "\"private_key\":\"x\",\"token_uri\":[]}", "field \"token_uri\" is not a string" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a@b\","
		  "\"private_key\":\"x\",\"private_key_id\":1}",
		  "field \"private_key_id\" is not a string" },
		{ "{\"type\":\"authorized_user\"}", "field \"client_id\" missing" },
		{ "{\"type\":\"authorized_user\",\"client_id\":\"c\"}",
		  "field \"client_secret\" missing" },
		{ "{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"SECRET\"}",
		  "field \"refresh_token\" missing" },
		{ "{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"SECRET\","
		  "\"refresh_token\":true}", "field \"refresh_token\" is not a string" },
		{ "{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"SECRET\","
		  "\"refresh_token\":\"SECRET\",\"scopes\":5}", "field \"scopes\" is neither" },
		{ "{\"type\":\"external_account\"}", "\"external_account\" are not supported" },
		{ "{\"type\":\"impersonated_service_account\"}", "are not supported" },
	};
	struct auth_source *src;
	struct err err;
	const char *p;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = put("cred.json", cases[i].json, 0600);
		err = from_file(p, NULL, &src);
		assert_null(src);
		assert_int_not_equal(err.code, ERR_OK);
		if (!strstr(err.msg, cases[i].want) || strncmp(err.msg, p, strlen(p)))
			fail_msg("case %zu: got '%s', want '%s: ...%s'", i, err.msg, p,
				 cases[i].want);
		assert_null(strstr(err.msg, "SECRET"));
	}
}

static void test_good_files(void **state)
{
	struct auth_source *src;
	struct err err;
	json_t *o;
	char *text;

	(void)state;
	o = json_pack("{s:s, s:s, s:s, s:s}", "type", "service_account", "client_email",
		      "sa@p.iam.gserviceaccount.com", "private_key", ut_rsa_key_pem, "private_key_id",
		      "k1");
	text = json_dumps(o, 0);
	err = from_file(put("sa.json", text, 0600), NULL, &src);
	assert_int_equal(err.code, ERR_OK);
	assert_string_equal(src->ops->kind, "service_account");
	assert_string_equal(src->account, "sa@p.iam.gserviceaccount.com");
	assert_string_equal(src->scopes, AUTH_SCOPE_GCS);
	assert_string_equal(src->origin, "test");
	auth_source_free(src);
	free(text);
	json_decref(o);

	/* gcloud's file, as `gcloud auth application-default login` writes it. */
	err = from_file(put("adc.json", "{\"account\": \"\", \"client_id\": \"000000000000-fakeclientid"
			    "0000.apps.googleusercontent.com\", \"client_secret\": "
			    "\"fake-secret\", \"quota_project_id\": \"p\", "
			    "\"refresh_token\": \"1//0g-rt\", \"type\": \"authorized_user\", "
			    "\"universe_domain\": \"googleapis.com\"}", 0600), NULL, &src);
	assert_int_equal(err.code, ERR_OK);
	assert_null(src->account);
	assert_null(src->scopes);
	auth_source_free(src);

	err = from_file(put("user.json", "{\"type\":\"authorized_user\",\"client_id\":\"c\","
			    "\"client_secret\":\"s\",\"refresh_token\":\"r\",\"account\":"
			    "\"me@example.com\",\"scopes\":[\"a\",\"b\"]}", 0600), NULL, &src);
	assert_int_equal(err.code, ERR_OK);
	assert_string_equal(src->ops->kind, "authorized_user");
	assert_string_equal(src->account, "me@example.com");
	assert_string_equal(src->scopes, "a b");
	auth_source_free(src);
}

static void test_static_sources(void **state)
{
	struct auth_source *src = NULL;
	struct auth_token t = { 0 };
	struct err err;
	const char *p;

	(void)state;
	unsetenv("DURAFS_TEST_TOKEN");
	assert_int_equal(auth_static_new_env("DURAFS_TEST_TOKEN", "o", &src, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	setenv("DURAFS_TEST_TOKEN", "bad token\r\nX-Injected: 1", 1);
	assert_int_equal(auth_static_new_env("DURAFS_TEST_TOKEN", "o", &src, &err), -1);
	assert_int_equal(err.code, ERR_PARSE);
	assert_null(strstr(err.msg, "bad token"));
	setenv("DURAFS_TEST_TOKEN", "ya29.good", 1);
	assert_int_equal(auth_static_new_env("DURAFS_TEST_TOKEN", "o", &src, &err), 0);
	assert_int_equal(src->ops->fetch(src->ctx, &t, &err), 0);
	assert_string_equal(t.access_token, "ya29.good");
	assert_int_equal(t.expires_in, 0);
	auth_token_release(&t);
	auth_source_free(src);

	/* A token file is trimmed and read again at each fetch. */
	p = put("tok", "  ya29.one\n\n", 0600);
	assert_int_equal(auth_static_new_file(p, "o", NULL, &src, &err), 0);
	assert_int_equal(src->ops->fetch(src->ctx, &t, &err), 0);
	assert_string_equal(t.access_token, "ya29.one");
	auth_token_release(&t);
	put("tok", "ya29.two", 0600);
	assert_int_equal(src->ops->fetch(src->ctx, &t, &err), 0);
	assert_string_equal(t.access_token, "ya29.two");
	auth_token_release(&t);
	auth_source_free(src);
	p = put("tok", "\n", 0600);
	assert_int_equal(auth_static_new_file(p, "o", NULL, &src, &err), -1);
	assert_non_null(strstr(err.msg, "empty"));
	p = put("tok", "two words", 0600);
	assert_int_equal(auth_static_new_file(p, "o", NULL, &src, &err), -1);
	assert_non_null(strstr(err.msg, p));
	assert_null(strstr(err.msg, "words"));
}

static void test_token_reply(void **state)
{
	struct auth_token t = { 0 };
	struct err err;

#define PARSE(s) auth_oauth_parse_token((s), strlen(s), "reply", &t, &err)
	(void)state;
	assert_int_equal(PARSE("{\"access_token\":\"ya29.a\",\"expires_in\":3599,"
			       "\"token_type\":\"Bearer\",\"scope\":\"x y\"}"), 0);
	assert_string_equal(t.access_token, "ya29.a");
	assert_int_equal(t.expires_in, 3599);
	assert_string_equal(t.scope, "x y");
	auth_token_release(&t);
	assert_null(t.access_token);
	/* expires_in as a string, token_type any case, refresh_token kept. */
	assert_int_equal(PARSE("{\"access_token\":\"a\",\"expires_in\":\"60\",\"token_type\":"
			       "\"bearer\",\"refresh_token\":\"1//r\"}"), 0);
	assert_int_equal(t.expires_in, 60);
	assert_string_equal(t.refresh_token, "1//r");
	auth_token_release(&t);
	assert_int_equal(PARSE("{\"access_token\":\"a\"}"), 0);
	assert_int_equal(t.expires_in, 0);
	auth_token_release(&t);

	assert_int_equal(PARSE("{\"expires_in\":1}"), -1);
	assert_non_null(strstr(err.msg, "field \"access_token\" missing"));
	auth_token_release(&t);
	assert_int_equal(PARSE("{\"access_token\":\"a b\"}"), -1);
	auth_token_release(&t);
	assert_int_equal(PARSE("{\"access_token\":\"a\",\"expires_in\":-5}"), -1);
	assert_non_null(strstr(err.msg, "expires_in"));
	auth_token_release(&t);
	assert_int_equal(PARSE("{\"access_token\":\"a\",\"expires_in\":\"12x\"}"), -1);
	auth_token_release(&t);
	assert_int_equal(PARSE("{\"access_token\":\"a\",\"expires_in\":1.5}"), -1);
	auth_token_release(&t);
	assert_int_equal(PARSE("{\"access_token\":\"a\",\"token_type\":\"MAC\"}"), -1);
	assert_non_null(strstr(err.msg, "not Bearer"));
	auth_token_release(&t);
	assert_int_equal(PARSE("<html>ya29.SECRET</html>"), -1);
	assert_int_equal(err.code, ERR_PARSE);
	assert_null(strstr(err.msg, "SECRET"));
	auth_token_release(&t);
	assert_int_equal(PARSE(""), -1);
	auth_token_release(&t);
#undef PARSE
}

static void test_refusal(void **state)
{
	struct err err;
	const char *b = "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
			"expired or revoked.\"}";

	(void)state;
	assert_int_equal(auth_oauth_refusal(400, b, strlen(b), "refresh token from /f", &err),
			 -1);
	assert_int_equal(err.code, ERR_AUTH);
	assert_int_equal(err.http_status, 400);
	assert_string_equal(err.reason, "invalid_grant");
	assert_string_equal(err.msg, "refresh token from /f: refused (HTTP 400): invalid_grant: "
			    "Token has been expired or revoked.");
	b = "{\"error\":\"invalid_client\"}";
	auth_oauth_refusal(401, b, strlen(b), "x", &err);
	assert_string_equal(err.reason, "invalid_client");
	assert_string_equal(err.msg, "x: refused (HTTP 401): invalid_client");
	b = "{\"error\":{\"code\":403,\"message\":\"denied\",\"status\":\"PERMISSION_DENIED\"}}";
	auth_oauth_refusal(403, b, strlen(b), "x", &err);
	assert_string_equal(err.msg, "x: refused (HTTP 403): PERMISSION_DENIED: denied");
	b = "<html>oops</html>";
	auth_oauth_refusal(503, b, strlen(b), "x", &err);
	assert_int_equal(err.code, ERR_HTTP);
	assert_string_equal(err.msg, "x: HTTP 503 from the server");
	/* Control characters in a description never reach the message. */
	b = "{\"error\":\"e\",\"error_description\":\"a\\nb\\u001bc\"}";
	auth_oauth_refusal(400, b, strlen(b), "x", &err);
	assert_string_equal(err.msg, "x: refused (HTTP 400): e: a?b?c");
}

static void test_form(void **state)
{
	char *f;

	(void)state;
	f = auth_oauth_form((const char *const[]){ "grant_type", "refresh_token", "skip", NULL,
						   "refresh_token", "1//a b+c&d=e", NULL });
	assert_non_null(f);
	assert_string_equal(f, "grant_type=refresh_token&refresh_token=1%2F%2Fa%20b%2Bc%26d%3De");
	free(f);
	f = auth_oauth_form((const char *const[]){ NULL });
	assert_string_equal(f, "");
	free(f);
	setenv("DURAFS_TEST_URI", "http://127.0.0.1:1/token", 1);
	assert_string_equal(auth_oauth_uri("DURAFS_TEST_URI", "d"), "http://127.0.0.1:1/token");
	setenv("DURAFS_TEST_URI", "", 1);
	assert_string_equal(auth_oauth_uri("DURAFS_TEST_URI", "d"), "d");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_perm_warning),
		cmocka_unit_test(test_read_errors),
		cmocka_unit_test(test_sa_fields),
		cmocka_unit_test(test_good_files),
		cmocka_unit_test(test_static_sources),
		cmocka_unit_test(test_token_reply),
		cmocka_unit_test(test_refusal),
		cmocka_unit_test(test_form),
	};

	return cmocka_run_group_tests_name("auth_cred", tests, setup, teardown);
}
