/* durafs-emulator metadata service: the parts of the GCE metadata server
 * that Google's auth libraries use (probe, service account email, scopes,
 * access token), with the Metadata-Flavor: Google handshake. Tokens come
 * from the OAuth service's table, so the API accepts them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu.h"

#define MD_PREFIX "/computeMetadata/v1/"
#define SA_PREFIX MD_PREFIX "instance/service-accounts/"
#define DEFAULT_EMAIL "default-sa@durafs-emu.iam.gserviceaccount.com"
#define DEFAULT_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define MAX_SCOPES 32

struct metadata {
	pthread_mutex_t mu;
	char email[256];                 /* protected by mu */
	char scopes[MAX_SCOPES][256];    /* protected by mu */
	int nscopes;                     /* protected by mu */
	int disabled;                    /* protected by mu */
};

static void md_defaults(struct metadata *m)
{
	snprintf(m->email, sizeof(m->email), "%s", DEFAULT_EMAIL);
	snprintf(m->scopes[0], sizeof(m->scopes[0]), "%s", DEFAULT_SCOPE);
	m->nscopes = 1;
	m->disabled = 0;
}

static void md_text(struct emu_resp *r, int status, const char *text)
{
	emu_resp_text(r, status, "application/text", text, strlen(text));
	emu_resp_header(r, "Metadata-Flavor", "Google");
}

/* Scopes joined with sep into buf. mu held. */
static void join_scopes(const struct metadata *m, char sep, char *buf, size_t sz)
{
	size_t off = 0;
	int i, n;

	buf[0] = '\0';
	for (i = 0; i < m->nscopes; i++) {
		n = snprintf(buf + off, sz - off, "%s%s", i ? (sep == '\n' ? "\n" : " ") : "",
			     m->scopes[i]);
		if (n < 0 || (size_t)n >= sz - off)
			break;
		off += (size_t)n;
	}
	if (sep == '\n' && off + 1 < sz) {
		buf[off++] = '\n';
		buf[off] = '\0';
	}
}

static void md_token(struct emu *e, struct metadata *m, const struct emu_req *req,
		     struct emu_resp *r)
{
	const char *q = emu_req_query(req, "scopes");
	char scopes[MAX_SCOPES * 260], email[256], *token = NULL;
	long expires_in = 0;
	size_t i;

	pthread_mutex_lock(&m->mu);
	join_scopes(m, ' ', scopes, sizeof(scopes));
	snprintf(email, sizeof(email), "%s", m->email);
	pthread_mutex_unlock(&m->mu);
	if (q && q[0]) {
		/* ?scopes=a,b: the token carries exactly these */
		snprintf(scopes, sizeof(scopes), "%s", q);
		for (i = 0; scopes[i]; i++)
			if (scopes[i] == ',')
				scopes[i] = ' ';
	}
	token = emu_oauth_issue(e, email, scopes, 0, &expires_in);
	if (!token) {
		emu_resp_error(r, 503, "backendError", "the OAuth service is not running");
		return;
	}
	emu_resp_json(r, 200, json_pack("{s:s, s:i, s:s}", "access_token", token,
					 "expires_in", (int)expires_in, "token_type", "Bearer"));
	emu_resp_header(r, "Metadata-Flavor", "Google");
	emu_stat_add(e, "metadata.tokens_issued", 1);
	free(token);
}

static int md_handle(struct emu *e, void *state, const struct emu_req *req,
		     struct emu_resp *r)
{
	struct metadata *m = state;
	const char *flavor = emu_req_header(req, "Metadata-Flavor");
	const char *legacy = emu_req_header(req, "X-Google-Metadata-Request");
	const char *p = req->path, *acct, *slash;
	const char *rec = emu_req_query(req, "recursive");
	char buf[MAX_SCOPES * 260 + 512], email[256];
	int disabled;
	size_t alen;

	if (req->truncated)
		return 0;
	pthread_mutex_lock(&m->mu);
	disabled = m->disabled;
	snprintf(email, sizeof(email), "%s", m->email);
	pthread_mutex_unlock(&m->mu);
	r->kind = "metadata.other";
	if (disabled) {
		/* not on GCE: no Metadata-Flavor in the reply, so probes fail */
		emu_resp_text(r, 404, "text/plain", "metadata server disabled\n", 25);
		return 0;
	}
	if (!strcmp(p, "/")) {
		r->kind = "metadata.probe";
		md_text(r, 200, "computeMetadata/\n");
		return 0;
	}
	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
		md_text(r, 405, "Method not allowed\n");
		return 0;
	}
	if (!(flavor && !strcmp(flavor, "Google")) && !(legacy && !strcasecmp(legacy, "True"))) {
		r->kind = "metadata.refused";
		md_text(r, 403, "Missing required header \"Metadata-Flavor\": \"Google\"\n");
		return 0;
	}
	if (!strcmp(p, "/computeMetadata/v1") || !strcmp(p, MD_PREFIX)) {
		r->kind = "metadata.probe";
		md_text(r, 200, "instance/\noauth/\nproject/\n");
		return 0;
	}
	if (!strcmp(p, MD_PREFIX "project/project-id")) {
		r->kind = "metadata.project";
		md_text(r, 200, "durafs-emulator");
		return 0;
	}
	if (!strcmp(p, MD_PREFIX "project/numeric-project-id")) {
		r->kind = "metadata.project";
		md_text(r, 200, "123456789012");
		return 0;
	}
	if (!strcmp(p, SA_PREFIX)) {
		r->kind = "metadata.service_accounts";
		snprintf(buf, sizeof(buf), "default/\n%s/\n", email);
		md_text(r, 200, buf);
		return 0;
	}
	if (strncmp(p, SA_PREFIX, strlen(SA_PREFIX)))
		goto notfound;
	acct = p + strlen(SA_PREFIX);
	slash = strchr(acct, '/');
	if (!slash)
		goto notfound;
	alen = (size_t)(slash - acct);
	if (!((alen == 7 && !strncmp(acct, "default", 7)) ||
	      (alen == strlen(email) && !strncmp(acct, email, alen))))
		goto notfound;
	p = slash + 1;
	if (!strcmp(p, "token")) {
		r->kind = "metadata.token";
		md_token(e, m, req, r);
		return 0;
	}
	if (!strcmp(p, "email")) {
		r->kind = "metadata.email";
		md_text(r, 200, email);
		return 0;
	}
	if (!strcmp(p, "scopes")) {
		r->kind = "metadata.scopes";
		pthread_mutex_lock(&m->mu);
		join_scopes(m, '\n', buf, sizeof(buf));
		pthread_mutex_unlock(&m->mu);
		md_text(r, 200, buf);
		return 0;
	}
	if (!strcmp(p, "")) {
		r->kind = "metadata.service_account";
		if (rec && !strcmp(rec, "true")) {
			json_t *sc = json_array();
			int i;

			pthread_mutex_lock(&m->mu);
			for (i = 0; i < m->nscopes; i++)
				json_array_append_new(sc, json_string(m->scopes[i]));
			pthread_mutex_unlock(&m->mu);
			emu_resp_json(r, 200, json_pack("{s:[s], s:s, s:o}", "aliases",
							 "default", "email", email, "scopes",
							 sc));
			emu_resp_header(r, "Metadata-Flavor", "Google");
		} else {
			md_text(r, 200, "aliases\nemail\nidentity\nscopes\ntoken\n");
		}
		return 0;
	}
notfound:
	r->kind = "metadata.not_found";
	md_text(r, 404, "Not Found\n");
	return 0;
}

static int md_control(struct emu *e, void *state, const char *sub,
		      const struct emu_req *req, struct emu_resp *r)
{
	struct metadata *m = state, nm;
	json_error_t jerr;
	json_t *j, *v;
	const char *key;
	size_t i;

	(void)e;
	if (strcmp(sub, "config"))
		return -1;
	if (strcmp(req->method, "POST")) {
		emu_resp_error(r, 405, "methodNotAllowed", "metadata/config takes POST");
		return 0;
	}
	j = json_loadb(req->body, req->body_len, 0, &jerr);
	if (!json_is_object(j)) {
		emu_resp_error(r, 400, "parseError", "expected a JSON object: %s",
			       j ? "not an object" : jerr.text);
		json_decref(j);
		return 0;
	}
	pthread_mutex_lock(&m->mu);
	memcpy(&nm, m, sizeof(nm));
	pthread_mutex_unlock(&m->mu);
	json_object_foreach(j, key, v) {
		if (!strcmp(key, "email")) {
			if (!json_is_string(v) || !json_string_length(v) ||
			    json_string_length(v) >= sizeof(nm.email) ||
			    strchr(json_string_value(v), '/')) {
				emu_resp_error(r, 400, "invalid", "\"email\" must be a short string "
					       "without '/'");
				goto out;
			}
			snprintf(nm.email, sizeof(nm.email), "%s", json_string_value(v));
		} else if (!strcmp(key, "scopes")) {
			if (!json_is_array(v) || json_array_size(v) > MAX_SCOPES) {
				emu_resp_error(r, 400, "invalid", "\"scopes\" must be an array of at "
					       "most %d strings", MAX_SCOPES);
				goto out;
			}
			for (i = 0; i < json_array_size(v); i++) {
				json_t *s = json_array_get(v, i);

				if (!json_is_string(s) || !json_string_length(s) ||
				    json_string_length(s) >= sizeof(nm.scopes[0])) {
					emu_resp_error(r, 400, "invalid", "scope %zu is not a short "
						       "non-empty string", i);
					goto out;
				}
				snprintf(nm.scopes[i], sizeof(nm.scopes[i]), "%s",
					 json_string_value(s));
			}
			nm.nscopes = (int)json_array_size(v);
		} else if (!strcmp(key, "disabled")) {
			if (!json_is_boolean(v)) {
				emu_resp_error(r, 400, "invalid", "\"disabled\" must be a boolean");
				goto out;
			}
			nm.disabled = json_is_true(v);
		} else {
			emu_resp_error(r, 400, "invalid", "unknown field \"%.64s\" (expected email, "
				       "scopes, disabled)", key);
			goto out;
		}
	}
	pthread_mutex_lock(&m->mu);
	snprintf(m->email, sizeof(m->email), "%s", nm.email);
	memcpy(m->scopes, nm.scopes, sizeof(m->scopes));
	m->nscopes = nm.nscopes;
	m->disabled = nm.disabled;
	pthread_mutex_unlock(&m->mu);
	{
		json_t *sc = json_array();

		for (i = 0; i < (size_t)nm.nscopes; i++)
			json_array_append_new(sc, json_string(nm.scopes[i]));
		emu_resp_json(r, 200, json_pack("{s:s, s:o, s:b}", "email", nm.email, "scopes",
						 sc, "disabled", nm.disabled));
	}
out:
	json_decref(j);
	return 0;
}

static int md_init(struct emu *e, void **state)
{
	struct metadata *m = calloc(1, sizeof(*m));

	(void)e;
	if (!m)
		return -1;
	if (pthread_mutex_init(&m->mu, NULL)) {
		free(m);
		return -1;
	}
	md_defaults(m);
	*state = m;
	return 0;
}

static void md_reset(struct emu *e, void *state)
{
	struct metadata *m = state;

	(void)e;
	pthread_mutex_lock(&m->mu);
	md_defaults(m);
	pthread_mutex_unlock(&m->mu);
}

static void md_fini(struct emu *e, void *state)
{
	struct metadata *m = state;

	(void)e;
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* "/" only matches the root itself (the GCE probe), see the core's router. */
static const char *const md_prefixes[] = { "/computeMetadata/", "/", NULL };

const struct emu_service emu_metadata_service = {
	.name = "metadata",
	.prefixes = md_prefixes,
	.needs_auth = 0,
	.init = md_init,
	.handle = md_handle,
	.control = md_control,
	.reset = md_reset,
	.fini = md_fini,
};
