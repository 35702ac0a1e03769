/* Static token source (include/durafs/auth_static.h): DURAFS_ACCESS_TOKEN
 * or --token-file, for scripts, tests and tokens minted elsewhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_static.h"

struct stat_src {
	char *token;   /* from the environment (secret), or NULL */
	char *path;    /* token file, or NULL */
};

static void static_free(void *ctx)
{
	struct stat_src *s = ctx;

	auth_cred_wipe(s->token, 0);
	free(s->path);
	free(s);
}

/* Read the token file into a malloc'd trimmed string. */
static int read_token_file(const char *path, FILE *warn, char **out, struct err *err)
{
	char *buf = NULL, *start, *end, *tok = NULL;
	size_t len = 0;
	int rc = -1;

	*out = NULL;
	if (auth_cred_read(path, warn, &buf, &len, err))
		goto out;
	if (strlen(buf) != len) {
		err_set(err, ERR_PARSE, "%s: the token file contains a NUL byte", path);
		goto out;
	}
	start = buf;
	while (*start == ' ' || *start == '\t' || *start == '\r' || *start == '\n')
		start++;
	end = start + strlen(start);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
			       end[-1] == '\n'))
		end--;
	*end = '\0';
	if (auth_cred_check_token(start, path, err))
		goto out;
	tok = strdup(start);
	if (!tok) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = tok;
	rc = 0;
out:
	auth_cred_wipe(buf, len);
	return rc;
}

static int static_fetch(void *ctx, struct auth_token *out, struct err *err)
{
	struct stat_src *s = ctx;
	FILE *devnull = NULL;
	int rc;

	if (s->token) {
		out->access_token = strdup(s->token);
		if (!out->access_token)
			return err_set(err, ERR_NOMEM, "out of memory");
		return 0;
	}
	/* The permission warning was given when the source was made. */
	devnull = fopen("/dev/null", "w");
	rc = read_token_file(s->path, devnull, &out->access_token, err);
	if (devnull)
		fclose(devnull);
	return rc;
}

static const struct auth_source_ops static_ops = {
	.kind = "static",
	.fetch = static_fetch,
	.free = static_free,
};

int auth_static_new_env(const char *var, const char *origin, struct auth_source **out,
			struct err *err)
{
	const char *v = getenv(var);
	struct stat_src *s = NULL;

	*out = NULL;
	if (!v || !*v)
		return err_set(err, ERR_NOTFOUND, "$%s is not set", var);
	if (auth_cred_check_token(v, var, err))
		return -1;
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, ERR_NOMEM, "out of memory");
	s->token = strdup(v);
	if (!s->token) {
		static_free(s);
		return err_set(err, ERR_NOMEM, "out of memory");
	}
	return auth_source_new(&static_ops, s, origin, NULL, NULL, NULL, out, err);
}

int auth_static_new_file(const char *path, const char *origin, FILE *warn,
			 struct auth_source **out, struct err *err)
{
	struct stat_src *s = NULL;
	char *tok = NULL;

	*out = NULL;
	if (read_token_file(path, warn, &tok, err))
		return -1;
	auth_cred_wipe(tok, 0);
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, ERR_NOMEM, "out of memory");
	s->path = strdup(path);
	if (!s->path) {
		static_free(s);
		return err_set(err, ERR_NOMEM, "out of memory");
	}
	return auth_source_new(&static_ops, s, origin, path, NULL, NULL, out, err);
}
