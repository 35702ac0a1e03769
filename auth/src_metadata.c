/* Metadata-server token source (include/durafs/auth_meta.h): the probe
 * that ADC discovery uses, and token fetches that check the server really
 * is a metadata server (Metadata-Flavor: Google both ways). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_meta.h"
#include "durafs/auth_oauth.h"
#include "durafs/enc.h"

#define META_PATH "/computeMetadata/v1/"
#define META_SA "instance/service-accounts/default/"

struct meta {
	char *base;        /* "http://host[:port]" */
	char *scopes;      /* comma-separated, or NULL */
	struct http *http;
};

const char *auth_meta_host(void)
{
	const char *h = getenv(AUTH_META_ENV_HOST);

	if (!h || !*h)
		h = getenv(AUTH_META_ENV_IP);
	if (!h || !*h)
		return AUTH_META_DEFAULT_HOST;
	if (!strncmp(h, "http://", 7))
		h += 7;
	return h;
}

/* "http://" + host, refusing anything but a host[:port] (no path, no
 * userinfo), so the variable cannot redirect the request elsewhere. */
static char *base_url(const char *host, struct err *err)
{
	const char *p;
	char *b;
	size_t n;

	if (!strncmp(host, "http://", 7))
		host += 7;
	n = strlen(host);
	while (n && host[n - 1] == '/')
		n--;
	if (!n || n > 255) {
		err_set(err, ERR_INVAL, "$%s: not a host[:port]", AUTH_META_ENV_HOST);
		return NULL;
	}
	for (p = host; p < host + n; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-:[]_", *p)) {
			err_set(err, ERR_INVAL, "$%s: not a host[:port] (character '%c')",
				AUTH_META_ENV_HOST, isprint((unsigned char)*p) ? *p : '?');
			return NULL;
		}
	b = malloc(n + 8);
	if (!b) {
		err_set(err, ERR_NOMEM, "out of memory");
		return NULL;
	}
	snprintf(b, n + 8, "http://%.*s", (int)n, host);
	return b;
}

static const char *const meta_headers[] = { "Metadata-Flavor: Google", NULL };

/* GET base + META_PATH + rel; 0 with resp filled on a 200 that carries
 * Metadata-Flavor: Google. */
static int meta_get(struct http *h, const char *base, const char *rel, int retry,
		    long timeout_ms, struct http_resp *resp, struct err *err)
{
	struct http_req req;
	const char *flavor;
	struct err herr;
	char url[1024];
	int rc;

	snprintf(url, sizeof(url), "%s%s%s", base, META_PATH, rel);
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = url;
	req.headers = meta_headers;
	req.body_fd = -1;
	req.retry = retry ? HTTP_RETRY_SAFE : HTTP_RETRY_NONE;
	req.no_auth = 1;
	req.max_body = 256 * 1024;
	req.timeout_ms = timeout_ms;
	err_clear(&herr);
	rc = http_do(h, &req, resp, &herr);
	if (!resp->status) {
		if (err) {
			*err = herr;
			err_prefix(err, "no metadata server at %s", base);
		}
		return -1;
	}
	flavor = http_resp_header(resp, "Metadata-Flavor", 0);
	if (!flavor || strcmp(flavor, "Google"))
		return err_set(err, ERR_PARSE, "%s answered (HTTP %ld) without \"Metadata-Flavor: "
			       "Google\": not a metadata server", base, resp->status);
	if (rc) {
		if (err) {
			*err = herr;
			err_prefix(err, "metadata server %s", base);
		}
		return -1;
	}
	if (resp->status != 200)
		return err_set(err, ERR_HTTP, "metadata server %s: HTTP %ld", base, resp->status);
	return 0;
}

int auth_meta_probe(const char *host, long connect_ms, struct err *err)
{
	struct http_resp resp;
	struct http *h = NULL;
	char *base = NULL;
	int rc = -1;

	memset(&resp, 0, sizeof(resp));
	if (connect_ms <= 0)
		connect_ms = AUTH_META_PROBE_MS;
	base = base_url(host, err);
	if (!base || auth_oauth_http(connect_ms, &h, err))
		goto out;
	rc = meta_get(h, base, "", 0, connect_ms * 2, &resp, err);
out:
	http_resp_release(&resp);
	http_free(h);
	free(base);
	return rc;
}

static void meta_free(void *ctx)
{
	struct meta *m = ctx;

	free(m->base);
	free(m->scopes);
	http_free(m->http);
	free(m);
}

static int meta_fetch(void *ctx, struct auth_token *out, struct err *err)
{
	struct meta *m = ctx;
	struct http_resp resp;
	char *q = NULL, rel[900], what[300];
	int rc = -1;

	memset(&resp, 0, sizeof(resp));
	if (m->scopes) {
		q = enc_url(m->scopes);
		if (!q) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	snprintf(rel, sizeof(rel), META_SA "token%s%s", q ? "?scopes=" : "", q ? q : "");
	if (meta_get(m->http, m->base, rel, 1, 30000, &resp, err))
		goto out;
	snprintf(what, sizeof(what), "metadata server %s: token reply", m->base);
	if (auth_oauth_parse_token(resp.body ? resp.body : "", resp.body_len, what, out, err))
		goto out;
	rc = 0;
out:
	if (rc)
		auth_token_release(out);
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	http_resp_release(&resp);
	free(q);
	return rc;
}

static const struct auth_source_ops meta_ops = {
	.kind = "metadata",
	.fetch = meta_fetch,
	.free = meta_free,
};

/* The default service account's email, or NULL. */
static char *meta_email(struct meta *m)
{
	struct http_resp resp;
	struct err ignored;
	char *email = NULL;
	size_t i;

	memset(&resp, 0, sizeof(resp));
	if (meta_get(m->http, m->base, META_SA "email", 0, 2000, &resp, &ignored) ||
	    !resp.body || !resp.body_len || resp.body_len > 320)
		goto out;
	for (i = 0; i < resp.body_len; i++)
		if (!isgraph((unsigned char)resp.body[i]))
			goto out;
	email = strdup(resp.body);
out:
	http_resp_release(&resp);
	return email;
}

int auth_meta_new(const char *host, const char *scopes, const char *origin,
		  struct auth_source **out, struct err *err)
{
	struct meta *m = NULL;
	char *email = NULL, *p;
	int rc = -1;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	m->base = base_url(host, err);
	if (!m->base)
		goto out;
	if (scopes) {
		m->scopes = strdup(scopes);
		if (!m->scopes) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		for (p = m->scopes; *p; p++)
			if (*p == ' ')
				*p = ',';
	}
	if (auth_oauth_http(AUTH_META_PROBE_MS, &m->http, err))
		goto out;
	email = meta_email(m);
	rc = auth_source_new(&meta_ops, m, origin, NULL, email, scopes, out, err);
	m = NULL;  /* stolen */
out:
	if (m)
		meta_free(m);
	free(email);
	return rc;
}
