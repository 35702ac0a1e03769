/* OAuth2 token endpoint client (include/durafs/auth_oauth.h): every grant
 * durafs makes (JWT bearer, refresh token, authorization code, device code)
 * goes through here and the HTTP layer's retry policy. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_oauth.h"
#include "durafs/enc.h"
#include "durafs/log.h"

/* Token replies are small; anything bigger is not a token reply. */
#define OAUTH_MAX_REPLY (256 * 1024)
#define OAUTH_TIMEOUT_MS 60000

const char *auth_oauth_uri(const char *env, const char *dflt)
{
	const char *v = getenv(env);

	return v && *v ? v : dflt;
}

int auth_oauth_http(long connect_ms, struct http **out, struct err *err)
{
	struct http_opts o;

	memset(&o, 0, sizeof(o));
	o.connect_timeout_ms = connect_ms > 0 ? connect_ms : 10000;
	o.max_retries = 4;
	o.backoff_initial_ms = 250;
	o.backoff_max_ms = 4000;
	o.token = NULL;
	o.debug = log_enabled(LOG_LVL_DEBUG);
	return http_new(&o, out, err);
}

char *auth_oauth_form(const char *const *pairs)
{
	char *out = NULL, *enc = NULL, *res = NULL;
	size_t len = 0, cap = 0, nl, el;
	size_t i;

	for (i = 0; pairs[i]; i += 2) {
		if (!pairs[i + 1])
			continue;
		enc = enc_form(pairs[i + 1]);
		if (!enc)
			goto out;
		nl = strlen(pairs[i]);
		el = strlen(enc);
		if (len + nl + el + 3 > cap) {
			char *bigger;

			cap = (len + nl + el + 3) * 2;
			bigger = malloc(cap);
			if (!bigger)
				goto out;
			if (out) {
				memcpy(bigger, out, len + 1);
				auth_cred_wipe(out, len);
			}
			out = bigger;
		}
		if (len)
			out[len++] = '&';
		memcpy(out + len, pairs[i], nl);
		len += nl;
		out[len++] = '=';
		memcpy(out + len, enc, el);
		len += el;
		out[len] = '\0';
		auth_cred_wipe(enc, el);
		enc = NULL;
	}
	if (!out) {
		out = strdup("");
		if (!out)
			goto out;
	}
	res = out;
	out = NULL;
out:
	if (enc)
		auth_cred_wipe(enc, 0);
	if (out)
		auth_cred_wipe(out, len);
	return res;
}

/* Copy a remote-supplied string for a message: printable ASCII only, at
 * most outsz - 1 bytes. */
static void sanitize(const char *in, char *out, size_t outsz)
{
	size_t i = 0;

	for (; in && *in && i + 1 < outsz; in++)
		out[i++] = isprint((unsigned char)*in) ? *in : '?';
	out[i] = '\0';
}

/* A string member, or NULL when absent; ERR_PARSE when of another type. */
static int opt_str(const json_t *o, const char *what, const char *field, const char **out,
		   struct err *err)
{
	return auth_cred_str(o, what, field, 0, out, err);
}

static int dup_opt(const json_t *o, const char *what, const char *field, char **out,
		   struct err *err)
{
	const char *s = NULL;

	if (opt_str(o, what, field, &s, err))
		return -1;
	if (!s)
		return 0;
	*out = strdup(s);
	if (!*out)
		return err_set(err, ERR_NOMEM, "out of memory");
	return 0;
}

int auth_oauth_parse_token(const char *body, size_t len, const char *what,
			   struct auth_token *out, struct err *err)
{
	json_t *j = NULL, *v;
	const char *s = NULL;
	char *end = NULL;
	long long life = 0;
	int rc = -1;

	if (auth_cred_parse(body, len, what, &j, err))
		goto out;
	if (auth_cred_str(j, what, "access_token", 1, &s, err))
		goto out;
	if (auth_cred_check_token(s, what, err))
		goto out;
	out->access_token = strdup(s);
	if (!out->access_token) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	v = json_object_get(j, "expires_in");
	if (v && json_is_integer(v)) {
		life = json_integer_value(v);
	} else if (v && json_is_string(v)) {
		s = json_string_value(v);
		errno = 0;
		life = strtoll(s, &end, 10);
		if (!*s || *end || errno || !isdigit((unsigned char)*s)) {
			err_set(err, ERR_PARSE, "%s: field \"expires_in\" is not a number", what);
			goto out;
		}
	} else if (v && !json_is_null(v)) {
		err_set(err, ERR_PARSE, "%s: field \"expires_in\" is not an integer", what);
		goto out;
	}
	if (v && !json_is_null(v) && (life <= 0 || life > 10L * 365 * 86400)) {
		err_set(err, ERR_PARSE, "%s: field \"expires_in\" out of range (%lld)", what,
			life);
		goto out;
	}
	out->expires_in = (long)life;
	if (opt_str(j, what, "token_type", &s, err))
		goto out;
	if (s && strcasecmp(s, "Bearer")) {
		char t[40];

		sanitize(s, t, sizeof(t));
		err_set(err, ERR_PARSE, "%s: token_type \"%s\" is not Bearer", what, t);
		goto out;
	}
	if (dup_opt(j, what, "scope", &out->scope, err) ||
	    dup_opt(j, what, "refresh_token", &out->refresh_token, err) ||
	    dup_opt(j, what, "id_token", &out->id_token, err))
		goto out;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

int auth_oauth_refusal(long status, const char *body, size_t len, const char *what,
		       struct err *err)
{
	json_error_t jerr;
	json_t *j = NULL, *e, *d;
	char code[64] = "", desc[240] = "";
	int ecode;

	if (body && len)
		j = json_loadb(body, len, 0, &jerr);
	e = j ? json_object_get(j, "error") : NULL;
	if (e && json_is_string(e)) {
		sanitize(json_string_value(e), code, sizeof(code));
		d = json_object_get(j, "error_description");
		if (d && json_is_string(d))
			sanitize(json_string_value(d), desc, sizeof(desc));
	} else if (e && json_is_object(e)) {
		/* Google API shape {"error":{"code","message","status"}}. */
		d = json_object_get(e, "status");
		if (d && json_is_string(d))
			sanitize(json_string_value(d), code, sizeof(code));
		d = json_object_get(e, "message");
		if (d && json_is_string(d))
			sanitize(json_string_value(d), desc, sizeof(desc));
	}
	if (status == 400 || status == 401 || status == 403 || status == 428)
		ecode = ERR_AUTH;
	else if (status == 429)
		ecode = ERR_RATE;
	else
		ecode = ERR_HTTP;
	if (code[0])
		err_set(err, ecode, "%s: refused (HTTP %ld): %s%s%s", what, status, code,
			desc[0] ? ": " : "", desc);
	else
		err_set(err, ecode, "%s: HTTP %ld from the server", what, status);
	if (err) {
		err->http_status = status;
		memcpy(err->reason, code, sizeof(err->reason));
	}
	json_decref(j);
	return -1;
}

/* POST and collect the reply. Returns 0 on 2xx with *resp filled; -1 with
 * *err otherwise (resp still filled for the caller to inspect/release). */
static int post(struct http *h, const char *uri, const char *form, const char *what,
		struct http_resp *resp, struct err *err)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded",
		"Accept: application/json",
		NULL,
	};
	struct http_req req;
	struct err herr;

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = uri;
	req.headers = headers;
	req.body = form;
	req.body_len = strlen(form);
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;
	req.no_auth = 1;
	req.max_body = OAUTH_MAX_REPLY;
	req.timeout_ms = OAUTH_TIMEOUT_MS;
	err_clear(&herr);
	if (http_do(h, &req, resp, &herr) == 0 && resp->status >= 200 && resp->status < 300)
		return 0;
	if (resp->status >= 300)
		return auth_oauth_refusal(resp->status, resp->body, resp->body_len, what, err);
	if (err) {
		*err = herr;
		if (err->code == ERR_OK)
			err->code = ERR_NET;
		err_prefix(err, "%s: cannot reach %s", what, uri);
	}
	return -1;
}

int auth_oauth_post(struct http *h, const char *uri, const char *form, const char *what,
		    struct auth_token *out, struct err *err)
{
	struct http_resp resp;
	char rwhat[300];
	int rc = -1;

	memset(&resp, 0, sizeof(resp));
	if (post(h, uri, form, what, &resp, err))
		goto out;
	snprintf(rwhat, sizeof(rwhat), "%s: token reply", what);
	if (auth_oauth_parse_token(resp.body, resp.body_len, rwhat, out, err))
		goto out;
	rc = 0;
out:
	if (rc)
		auth_token_release(out);
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	http_resp_release(&resp);
	return rc;
}

int auth_oauth_post_json(struct http *h, const char *uri, const char *form,
			 const char *what, long *status, json_t **reply, struct err *err)
{
	struct http_resp resp;
	json_error_t jerr;
	char rwhat[300];
	int rc = -1;

	*reply = NULL;
	memset(&resp, 0, sizeof(resp));
	rc = post(h, uri, form, what, &resp, err);
	*status = resp.status;
	if (rc) {
		if (resp.status >= 400 && resp.body)
			*reply = json_loadb(resp.body, resp.body_len, 0, &jerr);
		if (*reply && !json_is_object(*reply)) {
			json_decref(*reply);
			*reply = NULL;
		}
		goto out;
	}
	snprintf(rwhat, sizeof(rwhat), "%s: reply", what);
	rc = auth_cred_parse(resp.body ? resp.body : "", resp.body_len, rwhat, reply, err);
out:
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	http_resp_release(&resp);
	return rc;
}
