/* Credential discovery (include/durafs/auth_adc.h): explicit options, the
 * environment, durafs' stored login, then Google's ADC order, recording
 * each step looked at so the user can see why a source was (not) chosen. */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durafs/auth_adc.h"
#include "durafs/auth_cred.h"
#include "durafs/auth_meta.h"
#include "durafs/auth_sa.h"
#include "durafs/auth_static.h"
#include "durafs/auth_store.h"
#include "durafs/auth_user.h"

#define RELOGIN_DURAFS "run `durafs auth login` to log in again"
#define RELOGIN_GCLOUD "run `gcloud auth application-default login` again " \
	"(in Colab: google.colab.auth.authenticate_user())"
#define NO_CREDS_HINT "run `durafs auth login`, point $GOOGLE_APPLICATION_CREDENTIALS " \
	"at a key file, or in Colab run google.colab.auth.authenticate_user() first"

/* A growing text of "N. step: outcome" lines. Allocation failures make it
 * stop growing (it is diagnostics only). */
struct trail {
	char *s;
	size_t len, cap;
	int steps;
};

static void trail_add(struct trail *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void trail_add(struct trail *t, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	size_t n;
	char *bigger;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (t->len + n + 8 > t->cap) {
		bigger = realloc(t->s, (t->len + n + 8) * 2);
		if (!bigger)
			return;
		t->s = bigger;
		t->cap = (t->len + n + 8) * 2;
	}
	t->len += (size_t)snprintf(t->s + t->len, t->cap - t->len, "%d. %s\n", ++t->steps,
				   line);
}

static int file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 || errno != ENOENT;
}

int auth_adc_from_file(const char *path, const char *origin, const char *relogin,
		       const struct auth_opts *o, struct auth_source **out, struct err *err)
{
	json_t *obj = NULL;
	const char *type = NULL, *scopes;
	int rc = -1;

	*out = NULL;
	scopes = o && o->scopes ? o->scopes : AUTH_SCOPES_DEFAULT;
	if (auth_cred_load(path, o ? o->warn : NULL, &obj, err) ||
	    auth_cred_str(obj, path, "type", 1, &type, err))
		goto out;
	if (!strcmp(type, "service_account"))
		rc = auth_sa_new(obj, path, scopes, o ? o->subject : NULL, origin, out, err);
	else if (!strcmp(type, "authorized_user"))
		rc = auth_user_new(obj, path, origin, relogin, out, err);
	else
		err_set(err, ERR_INVAL, "%s: credentials of type \"%.40s\" are not supported "
			"by durafs (supported: service_account, authorized_user)%s", path, type,
			!strcmp(type, "external_account") ?
			"; for workload identity federation, mint a token with gcloud and "
			"use --token-file" : "");
out:
	json_decref(obj);
	return rc;
}

char *auth_adc_gcloud_path(struct err *err)
{
	const char *dir = getenv("CLOUDSDK_CONFIG"), *home = getenv("HOME");
	struct passwd *pw;
	char *out = NULL;
	size_t n;

	if (dir && *dir) {
		n = strlen(dir) + sizeof("/application_default_credentials.json");
		out = malloc(n);
		if (out)
			snprintf(out, n, "%s/application_default_credentials.json", dir);
		else
			err_set(err, ERR_NOMEM, "out of memory");
		return out;
	}
	if (!home || !*home) {
		pw = getpwuid(getuid());
		home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
	}
	if (!home) {
		err_set(err, ERR_INVAL, "cannot find the home directory (set $HOME)");
		return NULL;
	}
	n = strlen(home) + sizeof("/.config/gcloud/application_default_credentials.json");
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s/.config/gcloud/application_default_credentials.json", home);
	else
		err_set(err, ERR_NOMEM, "out of memory");
	return out;
}

int auth_adc_resolve(const struct auth_opts *o, struct auth_source **out, char **trail,
		     struct err *err)
{
	static const struct auth_opts none = { 0 };
	struct trail t = { 0 };
	struct err merr;
	char *store = NULL, *gpath = NULL, origin[1200];
	const char *env, *host, *scopes;
	int rc = -1;

	*out = NULL;
	if (trail)
		*trail = NULL;
	if (!o)
		o = &none;
	scopes = o->scopes ? o->scopes : AUTH_SCOPES_DEFAULT;

	/* 1-2: explicit options. */
	if (o->token_file && o->credentials) {
		err_set(err, ERR_INVAL, "--token-file and --credentials cannot be used together");
		goto out;
	}
	if (o->token_file) {
		trail_add(&t, "--token-file %s: given", o->token_file);
		rc = auth_static_new_file(o->token_file, "--token-file", o->warn, out, err);
		goto out;
	}
	if (o->credentials) {
		trail_add(&t, "--credentials %s: given", o->credentials);
		rc = auth_adc_from_file(o->credentials, "--credentials", NULL, o, out, err);
		goto out;
	}
	trail_add(&t, "--token-file / --credentials: not given");

	/* 3: the environment. */
	env = getenv(AUTH_ENV_ACCESS_TOKEN);
	if (env && *env) {
		trail_add(&t, "$%s: set", AUTH_ENV_ACCESS_TOKEN);
		rc = auth_static_new_env(AUTH_ENV_ACCESS_TOKEN, "$" AUTH_ENV_ACCESS_TOKEN, out,
					 err);
		goto out;
	}
	trail_add(&t, "$%s: not set", AUTH_ENV_ACCESS_TOKEN);

	/* 4: durafs' own login. */
	store = auth_store_path(err);
	if (!store)
		goto out;
	if (file_exists(store)) {
		trail_add(&t, "durafs login %s: found", store);
		snprintf(origin, sizeof(origin), "durafs login (%s)", store);
		rc = auth_adc_from_file(store, origin, RELOGIN_DURAFS, o, out, err);
		goto out;
	}
	trail_add(&t, "durafs login %s: not found", store);

	/* 5: ADC step 1. */
	env = getenv(AUTH_ENV_GAC);
	if (env && *env) {
		trail_add(&t, "$%s=%s: set", AUTH_ENV_GAC, env);
		snprintf(origin, sizeof(origin), "ADC step 1: $%s", AUTH_ENV_GAC);
		rc = auth_adc_from_file(env, origin, RELOGIN_GCLOUD, o, out, err);
		if (rc && err && err->code == ERR_NOTFOUND)
			err_prefix(err, "$%s names a missing file", AUTH_ENV_GAC);
		goto out;
	}
	trail_add(&t, "$%s: not set", AUTH_ENV_GAC);

	/* 6: ADC step 2, gcloud's well-known file. */
	gpath = auth_adc_gcloud_path(err);
	if (!gpath)
		goto out;
	if (file_exists(gpath)) {
		trail_add(&t, "gcloud ADC file %s: found", gpath);
		rc = auth_adc_from_file(gpath, "ADC step 2: gcloud application-default "
					"credentials", RELOGIN_GCLOUD, o, out, err);
		goto out;
	}
	trail_add(&t, "gcloud ADC file %s: not found", gpath);

	/* 7: ADC step 3, the metadata server. */
	host = auth_meta_host();
	env = getenv(AUTH_ENV_NO_METADATA);
	if (o->no_metadata || (env && *env && strcmp(env, "0"))) {
		trail_add(&t, "metadata server %s: skipped%s", host,
			  o->no_metadata ? "" : " ($" AUTH_ENV_NO_METADATA " is set)");
	} else {
		err_clear(&merr);
		if (auth_meta_probe(host, o->metadata_connect_ms, &merr) == 0) {
			trail_add(&t, "metadata server %s: answered", host);
			snprintf(origin, sizeof(origin), "ADC step 3: metadata server %s%s", host,
				 getenv(AUTH_META_ENV_HOST) ? " ($" AUTH_META_ENV_HOST ")" :
				 getenv(AUTH_META_ENV_IP) ? " ($" AUTH_META_ENV_IP ")" : "");
			rc = auth_meta_new(host, scopes, origin, out, err);
			goto out;
		}
		trail_add(&t, "metadata server %s: %s", host, merr.msg);
	}
	err_set(err, ERR_AUTH, "no Google credentials found (tried: --token-file/--credentials, "
		"$%s, %s, $%s, %s, the metadata server %s); %s", AUTH_ENV_ACCESS_TOKEN, store,
		AUTH_ENV_GAC, gpath, host, NO_CREDS_HINT);
out:
	if (trail)
		*trail = t.s;
	else
		free(t.s);
	free(store);
	free(gpath);
	return rc;
}

int auth_adc_open(const struct auth_opts *o, struct auth_provider **out, char **trail,
		  struct err *err)
{
	struct auth_source *src = NULL;

	*out = NULL;
	if (auth_adc_resolve(o, &src, trail, err))
		return -1;
	return auth_provider_new(src, out, err);
}
