/* libFuzzer target for auth/'s parsers of remote and on-disk input: token
 * endpoint replies (auth_oauth_parse_token), OAuth error replies
 * (auth_oauth_refusal) for every status a grant meets, credentials files
 * (auth_cred_parse, auth_cred_str, auth_user_scopes, and the
 * authorized_user and service_account constructors that read them), the
 * redirect URL a user pastes or a browser sends (auth_login_parse_redirect),
 * bearer-token checks and scope names. Besides memory safety it checks the
 * contract: a parsed token is a valid header value with a sane lifetime,
 * refusal messages are printable, and no secret a file or reply carried
 * (tokens, refresh tokens, client secrets, private keys, codes) is ever
 * quoted in an error message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/auth_cred.h"
#include "durafs/auth_login.h"
#include "durafs/auth_oauth.h"
#include "durafs/auth_sa.h"
#include "durafs/auth_user.h"
#include "durafs/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const secret_fields[] = {
	"access_token", "refresh_token", "client_secret", "private_key", "id_token",
	"code", "assertion",
};

static void check_printable(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			abort();
}

/* 1 when s occurs in a key or in the value of a non-secret string member of
 * j (a message may then show it legitimately: an error description, a
 * token_type, a field name). */
static int shown_elsewhere(const json_t *j, const char *s, const char *self)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)j, k, v) {
		if (strstr(k, s))
			return 1;
		if (strcmp(k, self) && json_is_string(v) && strstr(json_string_value(v), s))
			return 1;
	}
	return 0;
}

/* Abort when msg quotes the value of a secret member of j that nothing
 * else in j or in the fixed text of messages could explain (values of 12
 * bytes or more: shorter ones occur by chance). */
static void check_no_secret(const json_t *j, const char *msg)
{
	static const char fixed[] =
		"/home/u/.config/gcloud/application_default_credentials.json "
		"token reply refresh token from /f field missing empty is not a string "
		"https://www.googleapis.com/auth/cloud-platform";
	size_t i;

	if (!json_is_object(j))
		return;
	for (i = 0; i < sizeof(secret_fields) / sizeof(secret_fields[0]); i++) {
		json_t *v = json_object_get(j, secret_fields[i]);
		const char *s = json_string_value(v);

		if (s && strlen(s) >= 12 && strlen(s) == json_string_length(v) &&
		    strstr(msg, s) && !strstr(fixed, s) &&
		    !shown_elsewhere(j, s, secret_fields[i]))
			abort();
	}
}

/* The value of the first "code=" in s (malloc'd, not decoded), or NULL. */
static char *raw_code(const char *s)
{
	const char *p = s;
	size_t n;

	/* only a real "code" parameter: at the start, or after '?' or '&'
	 * (inside another parameter's value it is that value's text) */
	while ((p = strstr(p, "code=")) && p != s && p[-1] != '?' && p[-1] != '&')
		p++;
	if (!p)
		return NULL;
	p += 5;
	n = strcspn(p, "&# \t\r\n");
	return n >= 8 ? strndup(p, n) : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 400, 401, 403, 428, 429, 500, 503 };
	static const char *const fields[] = {
		"type", "client_id", "client_secret", "refresh_token", "token_uri",
		"client_email", "private_key", "private_key_id", "account", "quota_project_id",
	};
	static const char path[] = "/home/u/.config/gcloud/application_default_credentials.json";
	static int quiet;
	const char *body = (const char *)data;
	struct auth_token tok;
	struct auth_source *src = NULL;
	json_t *reply = NULL, *obj = NULL;
	json_error_t jerr;
	struct err e;
	char *s, *code = NULL, *raw, *sc = NULL;
	const char *str;
	size_t i;

	if (!quiet) {
		log_set_level(LOG_LVL_ERROR);
		quiet = 1;
	}
	/* What the checks below compare messages against. */
	reply = json_loadb(body, size, JSON_DECODE_ANY, &jerr);

	/* A token endpoint (or metadata server) reply. */
	memset(&tok, 0, sizeof(tok));
	if (auth_oauth_parse_token(body, size, "token reply", &tok, &e) == 0) {
		if (!tok.access_token || auth_cred_check_token(tok.access_token, "t", &e) != 0)
			abort();
		if (tok.expires_in < 0 || tok.expires_in > 10L * 365 * 86400)
			abort();
	} else {
		check_printable(e.msg, sizeof(e.msg));
		check_no_secret(reply, e.msg);
	}
	auth_token_release(&tok);

	/* A refused grant, for each status a token endpoint answers with. */
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		memset(&e, 0x5a, sizeof(e));
		if (auth_oauth_refusal(statuses[i], body, size, "refresh token from /f", &e) != -1)
			abort();
		check_printable(e.msg, sizeof(e.msg));
		check_printable(e.reason, sizeof(e.reason));
		if (e.http_status != statuses[i])
			abort();
	}
	auth_oauth_refusal(400, body, size, "x", NULL);

	/* A credentials file. */
	if (auth_cred_parse(body, size, path, &obj, &e) == 0) {
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			if (auth_cred_str(obj, path, fields[i], 1, &str, &e) < 0)
				check_no_secret(obj, e.msg);
			auth_cred_str(obj, path, fields[i], 0, &str, &e);
		}
		if (auth_user_scopes(obj, path, &sc, &e) == 0)
			free(sc);
		else
			check_no_secret(obj, e.msg);
		if (auth_user_new(obj, path, "fuzz", NULL, &src, &e) == 0) {
			auth_source_free(src);
			src = NULL;
		} else {
			check_printable(e.msg, sizeof(e.msg));
			check_no_secret(obj, e.msg);
		}
		if (auth_sa_new(obj, path, "https://www.googleapis.com/auth/cloud-platform",
				NULL, "fuzz", &src, &e) == 0) {
			auth_source_free(src);
			src = NULL;
		} else {
			check_no_secret(obj, e.msg);
		}
		json_decref(obj);
	} else {
		check_no_secret(reply, e.msg);
	}
	json_decref(reply);

	/* A pasted redirect URL or a request line from the browser. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	raw = raw_code(s);
	if (auth_login_parse_redirect(s, "st4te-expected-by-this-login", &code, &e) == 0) {
		if (!code || !code[0])
			abort();
		auth_cred_wipe(code, 0);
	} else {
		if (code)
			abort();
		check_printable(e.msg, sizeof(e.msg));
		/* the code may be quoted only if the input also has it as
		 * something else (an error description, say) */
		if (raw && strstr(e.msg, raw) && !strstr(strstr(s, raw) + 1, raw))
			abort();
	}
	code = NULL;
	if (auth_login_parse_redirect(s, NULL, &code, &e) == 0)
		auth_cred_wipe(code, 0);
	free(raw);
	if (auth_cred_check_token(s, "DURAFS_ACCESS_TOKEN", &e) < 0 && strlen(s) >= 8 &&
	    strstr(e.msg, s))
		abort();
	sc = auth_scope_expand(s, &e);
	free(sc);
	free(s);
	return 0;
}
