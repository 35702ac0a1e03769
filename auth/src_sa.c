/* Service-account token source (include/durafs/auth_sa.h): signs a JWT with
 * the key file's private key and trades it at token_uri for an access
 * token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_jwt.h"
#include "durafs/auth_oauth.h"
#include "durafs/auth_sa.h"

struct sa {
	char *path;        /* key file, for messages */
	char *email;
	char *kid;         /* private_key_id or NULL */
	char *token_uri;
	char *scopes;
	char *subject;     /* or NULL */
	EVP_PKEY *key;
	struct http *http; /* created at the first fetch */
};

static void sa_free(void *ctx)
{
	struct sa *s = ctx;

	free(s->path);
	free(s->email);
	free(s->kid);
	free(s->token_uri);
	free(s->scopes);
	free(s->subject);
	EVP_PKEY_free(s->key);
	http_free(s->http);
	free(s);
}

static int sa_sign(struct sa *s, time_t now, char **jwt, struct err *err)
{
	char *claims = NULL;
	int rc;

	claims = auth_jwt_sa_claims(s->email, s->scopes, s->token_uri, s->subject, now,
				    AUTH_JWT_LIFETIME);
	if (!claims)
		return err_set(err, ERR_NOMEM, "out of memory");
	rc = auth_jwt_sign(s->key, s->kid, claims, jwt, err);
	free(claims);
	return rc;
}

static int sa_fetch(void *ctx, struct auth_token *out, struct err *err)
{
	struct sa *s = ctx;
	char *jwt = NULL, *form = NULL, what[400];
	int rc = -1;

	snprintf(what, sizeof(what), "service account %s (%s)", s->email, s->path);
	if (!s->http && auth_oauth_http(0, &s->http, err))
		goto out;
	if (sa_sign(s, time(NULL), &jwt, err)) {
		err_prefix(err, "%s", what);
		goto out;
	}
	form = auth_oauth_form((const char *const[]){
		"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer",
		"assertion", jwt,
		NULL,
	});
	if (!form) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (auth_oauth_post(s->http, s->token_uri, form, what, out, err)) {
		if (err && err->code == ERR_AUTH && !strcmp(err->reason, "invalid_grant")) {
			size_t n = strlen(err->msg);

			snprintf(err->msg + n, sizeof(err->msg) - n,
				 " (the key may have been deleted or disabled, or the clock is "
				 "wrong)");
		}
		goto out;
	}
	rc = 0;
out:
	auth_cred_wipe(jwt, 0);
	auth_cred_wipe(form, 0);
	return rc;
}

static const struct auth_source_ops sa_ops = {
	.kind = "service_account",
	.fetch = sa_fetch,
	.free = sa_free,
};

static int dup_field(char **dst, const char *src, struct err *err)
{
	if (!src)
		return 0;
	*dst = strdup(src);
	if (!*dst)
		return err_set(err, ERR_NOMEM, "out of memory");
	return 0;
}

int auth_sa_new(const json_t *obj, const char *path, const char *scopes, const char *subject,
		const char *origin, struct auth_source **out, struct err *err)
{
	const char *email = NULL, *pem = NULL, *kid = NULL, *uri = NULL;
	struct sa *s = NULL;
	char what[300];

	*out = NULL;
	if (auth_cred_str(obj, path, "client_email", 1, &email, err) ||
	    auth_cred_str(obj, path, "private_key", 1, &pem, err) ||
	    auth_cred_str(obj, path, "private_key_id", 0, &kid, err) ||
	    auth_cred_str(obj, path, "token_uri", 0, &uri, err))
		return -1;
	if (!strchr(email, '@'))
		return err_set(err, ERR_PARSE, "%s: field \"client_email\" is not an email "
			       "address", path);
	if (!scopes || !*scopes)
		return err_set(err, ERR_INVAL, "%s: a service account needs at least one scope",
			       path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, ERR_NOMEM, "out of memory");
	snprintf(what, sizeof(what), "%s: field \"private_key\"", path);
	if (auth_jwt_load_key(pem, what, &s->key, err) ||
	    dup_field(&s->path, path, err) || dup_field(&s->email, email, err) ||
	    dup_field(&s->kid, kid, err) ||
	    dup_field(&s->token_uri, uri ? uri : AUTH_GOOGLE_TOKEN_URI, err) ||
	    dup_field(&s->scopes, scopes, err) || dup_field(&s->subject, subject, err)) {
		sa_free(s);
		return -1;
	}
	return auth_source_new(&sa_ops, s, origin, path, subject ? subject : email, scopes,
			       out, err);
}

int auth_sa_assertion(struct auth_source *src, time_t now, char **jwt, struct err *err)
{
	*jwt = NULL;
	if (!src || src->ops != &sa_ops)
		return err_set(err, ERR_INVAL, "not a service-account source");
	return sa_sign(src->ctx, now, jwt, err);
}
