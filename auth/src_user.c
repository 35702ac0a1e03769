/* authorized_user token source (include/durafs/auth_user.h): the
 * refresh-token grant, re-reading the file when a refresh fails because
 * Colab or gcloud may have replaced the credentials meanwhile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_oauth.h"
#include "durafs/auth_user.h"

#define USER_RELOGIN_DEFAULT \
	"log in again with `durafs auth login` or `gcloud auth application-default login`"

struct user {
	char *path;
	char *client_id;
	char *client_secret;   /* secret */
	char *refresh_token;   /* secret */
	char *token_uri;
	char *relogin;
	struct http *http;     /* created at the first fetch */
};

/* The credentials part of struct user, as read from the file. */
struct user_creds {
	const char *client_id, *client_secret, *refresh_token, *token_uri;
};

static void user_clear_creds(struct user *u)
{
	free(u->client_id);
	auth_cred_wipe(u->client_secret, 0);
	auth_cred_wipe(u->refresh_token, 0);
	free(u->token_uri);
	u->client_id = u->client_secret = u->refresh_token = u->token_uri = NULL;
}

static void user_free(void *ctx)
{
	struct user *u = ctx;

	user_clear_creds(u);
	free(u->path);
	free(u->relogin);
	http_free(u->http);
	free(u);
}

static int read_creds(const json_t *obj, const char *path, struct user_creds *c,
		      struct err *err)
{
	memset(c, 0, sizeof(*c));
	if (auth_cred_str(obj, path, "client_id", 1, &c->client_id, err) ||
	    auth_cred_str(obj, path, "client_secret", 1, &c->client_secret, err) ||
	    auth_cred_str(obj, path, "refresh_token", 1, &c->refresh_token, err) ||
	    auth_cred_str(obj, path, "token_uri", 0, &c->token_uri, err))
		return -1;
	if (!c->token_uri)
		c->token_uri = auth_oauth_uri(AUTH_ENV_TOKEN_URI, AUTH_GOOGLE_TOKEN_URI);
	return 0;
}

static int set_creds(struct user *u, const struct user_creds *c, struct err *err)
{
	user_clear_creds(u);
	u->client_id = strdup(c->client_id);
	u->client_secret = strdup(c->client_secret);
	u->refresh_token = strdup(c->refresh_token);
	u->token_uri = strdup(c->token_uri);
	if (!u->client_id || !u->client_secret || !u->refresh_token || !u->token_uri)
		return err_set(err, ERR_NOMEM, "out of memory");
	return 0;
}

static int refresh(struct user *u, struct auth_token *out, struct err *err)
{
	char *form = NULL, what[400];
	int rc;

	snprintf(what, sizeof(what), "refresh token from %s", u->path);
	form = auth_oauth_form((const char *const[]){
		"grant_type", "refresh_token",
		"client_id", u->client_id,
		"client_secret", u->client_secret,
		"refresh_token", u->refresh_token,
		NULL,
	});
	if (!form)
		return err_set(err, ERR_NOMEM, "out of memory");
	rc = auth_oauth_post(u->http, u->token_uri, form, what, out, err);
	auth_cred_wipe(form, 0);
	return rc;
}

static int same(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

/* Re-read the file; returns 1 when it now holds other credentials (and u
 * was updated), 0 when unchanged or unreadable. */
static int reread(struct user *u)
{
	struct user_creds c;
	struct err ignored;
	json_t *obj = NULL;
	FILE *devnull = NULL;
	int changed = 0;

	/* The permission warning was given at the first read. */
	devnull = fopen("/dev/null", "w");
	if (auth_cred_load(u->path, devnull, &obj, &ignored) ||
	    read_creds(obj, u->path, &c, &ignored))
		goto out;
	if (same(c.client_id, u->client_id) && same(c.client_secret, u->client_secret) &&
	    same(c.refresh_token, u->refresh_token) && same(c.token_uri, u->token_uri))
		goto out;
	if (set_creds(u, &c, &ignored))
		goto out;
	changed = 1;
out:
	if (devnull)
		fclose(devnull);
	json_decref(obj);
	return changed;
}

static int user_fetch(void *ctx, struct auth_token *out, struct err *err)
{
	struct user *u = ctx;
	size_t n;

	if (!u->client_id && !reread(u))
		return err_set(err, ERR_AUTH, "%s: cannot read the credentials again", u->path);
	if (!u->http && auth_oauth_http(0, &u->http, err))
		return -1;
	if (refresh(u, out, err) == 0)
		return 0;
	if (reread(u)) {
		auth_token_release(out);
		if (refresh(u, out, err) == 0)
			return 0;
	}
	if (err && err->code == ERR_AUTH && !strcmp(err->reason, "invalid_grant")) {
		n = strlen(err->msg);
		snprintf(err->msg + n, sizeof(err->msg) - n,
			 " - the refresh token has expired or been revoked: %s", u->relogin);
	}
	return -1;
}

static const struct auth_source_ops user_ops = {
	.kind = "authorized_user",
	.fetch = user_fetch,
	.free = user_free,
};

int auth_user_scopes(const json_t *obj, const char *path, char **out, struct err *err)
{
	json_t *v = json_object_get(obj, "scopes"), *e;
	size_t i, len = 0, cap = 1, n;
	char *s = NULL;

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		if (!json_string_length(v))
			return 0;
		*out = strdup(json_string_value(v));
		return *out ? 0 : err_set(err, ERR_NOMEM, "out of memory");
	}
	if (!json_is_array(v))
		return err_set(err, ERR_PARSE, "%s: field \"scopes\" is neither a string nor "
			       "an array", path);
	json_array_foreach(v, i, e) {
		if (!json_is_string(e))
			return err_set(err, ERR_PARSE, "%s: field \"scopes\" holds a non-string",
				       path);
		cap += json_string_length(e) + 1;
	}
	if (!json_array_size(v))
		return 0;
	s = malloc(cap);
	if (!s)
		return err_set(err, ERR_NOMEM, "out of memory");
	s[0] = '\0';
	json_array_foreach(v, i, e) {
		n = strlen(json_string_value(e));
		if (len)
			s[len++] = ' ';
		memcpy(s + len, json_string_value(e), n);
		len += n;
		s[len] = '\0';
	}
	*out = s;
	return 0;
}

int auth_user_new(const json_t *obj, const char *path, const char *origin,
		  const char *relogin, struct auth_source **out, struct err *err)
{
	struct user_creds c;
	struct user *u = NULL;
	const char *account = NULL;
	char *scopes = NULL;
	int rc = -1;

	*out = NULL;
	if (read_creds(obj, path, &c, err) ||
	    auth_cred_str(obj, path, "account", 0, &account, err) ||
	    auth_user_scopes(obj, path, &scopes, err))
		goto out;
	u = calloc(1, sizeof(*u));
	if (!u) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	u->path = strdup(path);
	u->relogin = strdup(relogin ? relogin : USER_RELOGIN_DEFAULT);
	if (!u->path || !u->relogin) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (set_creds(u, &c, err))
		goto out;
	rc = auth_source_new(&user_ops, u, origin, path, account, scopes, out, err);
	u = NULL;  /* stolen */
out:
	if (u)
		user_free(u);
	free(scopes);
	return rc;
}
