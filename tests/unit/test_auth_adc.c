/* Unit tests for credential discovery (auth/adc.c) and the stored-login
 * path (auth/store.c): the order of sources with a fake HOME, XDG and
 * CLOUDSDK_CONFIG and environment, and the report of what was tried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/auth_store.h"
#include "unit_util.h"

static char dir[64];
static char sa_path[128], user_path[128], tok_path[128];

static void mkdirs(const char *rel)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", dir, rel);
	assert_int_equal(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0600), 0);
}

/* A clean environment: every variable discovery reads is unset or points
 * into dir; the metadata server is a port where nothing listens. */
static int reset_env(void **state)
{
	char buf[256];

	(void)state;
	snprintf(buf, sizeof(buf), "%s/home", dir);
	setenv("HOME", buf, 1);
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("CLOUDSDK_CONFIG");
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	unsetenv("DURAFS_ACCESS_TOKEN");
	unsetenv("DURAFS_NO_METADATA");
	unsetenv("DURAFS_OAUTH_TOKEN_URI");
	setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
	unsetenv("GCE_METADATA_IP");
	snprintf(buf, sizeof(buf), "rm -rf '%s/home' '%s/xdg' '%s/gc'", dir, dir, dir);
	assert_int_equal(system(buf), 0);
	mkdirs("home");
	return 0;
}

static int setup(void **state)
{
	json_t *o;
	char *text;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/durafs-authadc-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sa_path, sizeof(sa_path), "%s/sa.json", dir);
	snprintf(user_path, sizeof(user_path), "%s/user.json", dir);
	snprintf(tok_path, sizeof(tok_path), "%s/token", dir);
	o = json_pack("{s:s, s:s, s:s}", "type", "service_account", "client_email",
		      "sa@p.iam.gserviceaccount.com", "private_key", ut_rsa_key_pem);
	text = json_dumps(o, 0);
	write_file(sa_path, text);
	free(text);
	json_decref(o);
	write_file(user_path, "{\"type\":\"authorized_user\",\"client_id\":\"c\","
		   "\"client_secret\":\"s\",\"refresh_token\":\"r\"}");
	write_file(tok_path, "ya29.file\n");
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

static void copy_to(const char *src, const char *rel)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s/%s'", src, dir, rel);
	assert_int_equal(system(cmd), 0);
}

/* Resolve with o; returns the source (caller frees) and the trail. */
static struct auth_source *resolve(const struct auth_opts *o, char **trail, struct err *err)
{
	struct auth_source *src = NULL;

	err_clear(err);
	if (auth_adc_resolve(o, &src, trail, err))
		assert_null(src);
	return src;
}

static void test_nothing_found(void **state)
{
	struct auth_source *src;
	struct err err;
	char *trail = NULL, want[256];
	struct timespec t0, t1;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	src = resolve(NULL, &trail, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_null(src);
	assert_int_equal(err.code, ERR_AUTH);
	assert_non_null(strstr(err.msg, "no Google credentials found"));
	assert_non_null(strstr(err.msg, "durafs auth login"));
	/* Every step, in order. */
	assert_non_null(trail);
	snprintf(want, sizeof(want), "1. --token-file / --credentials: not given\n"
		 "2. $DURAFS_ACCESS_TOKEN: not set\n"
		 "3. durafs login %s/home/.config/durafs/credentials.json: not found\n"
		 "4. $GOOGLE_APPLICATION_CREDENTIALS: not set\n"
		 "5. gcloud ADC file %s/home/.config/gcloud/application_default_credentials.json:"
		 " not found\n6. metadata server 127.0.0.1:1: ", dir, dir);
	if (strncmp(trail, want, strlen(want)))
		fail_msg("trail:\n%s\nwant prefix:\n%s", trail, want);
	/* Nothing listening: the probe fails at once. */
	assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
	free(trail);

	setenv("DURAFS_NO_METADATA", "1", 1);
	src = resolve(NULL, &trail, &err);
	assert_null(src);
	assert_non_null(strstr(trail, "6. metadata server 127.0.0.1:1: skipped ($DURAFS_NO_METADATA"
			       " is set)"));
	free(trail);
}

static void test_gcloud_file(void **state)
{
	struct auth_source *src;
	struct err err;
	char *trail = NULL, buf[256];

	(void)state;
	mkdirs("home/.config/gcloud");
	copy_to(user_path, "home/.config/gcloud/application_default_credentials.json");
	src = resolve(NULL, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "authorized_user");
	assert_non_null(strstr(src->origin, "ADC step 2"));
	snprintf(buf, sizeof(buf), "%s/home/.config/gcloud/application_default_credentials.json",
		 dir);
	assert_string_equal(src->path, buf);
	auth_source_free(src);
	free(trail);

	/* With CLOUDSDK_CONFIG set, only that directory counts. */
	snprintf(buf, sizeof(buf), "%s/gc", dir);
	setenv("CLOUDSDK_CONFIG", buf, 1);
	src = resolve(NULL, &trail, &err);
	assert_null(src);
	assert_non_null(strstr(trail, "/gc/application_default_credentials.json: not found"));
	free(trail);
	mkdirs("gc");
	copy_to(sa_path, "gc/application_default_credentials.json");
	src = resolve(NULL, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "service_account");
	snprintf(buf, sizeof(buf), "%s/gc/application_default_credentials.json", dir);
	assert_string_equal(src->path, buf);
	assert_string_equal(src->scopes, AUTH_SCOPES_DEFAULT);
	auth_source_free(src);
	free(trail);
}

static void test_gac_beats_gcloud(void **state)
{
	struct auth_source *src;
	struct err err;
	char *trail = NULL, buf[256];

	(void)state;
	mkdirs("home/.config/gcloud");
	copy_to(user_path, "home/.config/gcloud/application_default_credentials.json");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_path, 1);
	src = resolve(NULL, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "service_account");
	assert_string_equal(src->origin, "ADC step 1: $GOOGLE_APPLICATION_CREDENTIALS");
	assert_string_equal(src->path, sa_path);
	auth_source_free(src);
	free(trail);

	/* Set but missing: an error, not a fall-through to gcloud's file. */
	snprintf(buf, sizeof(buf), "%s/nope.json", dir);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", buf, 1);
	src = resolve(NULL, &trail, &err);
	assert_null(src);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_non_null(strstr(err.msg, "$GOOGLE_APPLICATION_CREDENTIALS names a missing file"));
	assert_non_null(strstr(err.msg, buf));
	free(trail);
}

static void test_stored_login_and_xdg(void **state)
{
	struct auth_source *src;
	struct err err;
	char *trail = NULL, *p, buf[256];

	(void)state;
	setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_path, 1);
	mkdirs("home/.config/durafs");
	copy_to(user_path, "home/.config/durafs/credentials.json");
	src = resolve(NULL, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "authorized_user");
	assert_non_null(strstr(src->origin, "durafs login"));
	auth_source_free(src);
	free(trail);

	/* $XDG_CONFIG_HOME moves it; a relative one is ignored (XDG rule). */
	snprintf(buf, sizeof(buf), "%s/xdg", dir);
	setenv("XDG_CONFIG_HOME", buf, 1);
	p = auth_store_path(&err);
	snprintf(buf, sizeof(buf), "%s/xdg/durafs/credentials.json", dir);
	assert_string_equal(p, buf);
	free(p);
	src = resolve(NULL, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "service_account");
	assert_non_null(strstr(trail, "/xdg/durafs/credentials.json: not found"));
	auth_source_free(src);
	free(trail);
	setenv("XDG_CONFIG_HOME", "relative/dir", 1);
	p = auth_store_path(&err);
	snprintf(buf, sizeof(buf), "%s/home/.config/durafs/credentials.json", dir);
	assert_string_equal(p, buf);
	free(p);

	/* A broken stored login is an error naming it, not skipped. */
	unsetenv("XDG_CONFIG_HOME");
	write_file(buf, "{\"type\":\"authorized_user\",\"client_id\":\"c\"}");
	src = resolve(NULL, &trail, &err);
	assert_null(src);
	assert_non_null(strstr(err.msg, buf));
	assert_non_null(strstr(err.msg, "field \"client_secret\" missing"));
	free(trail);
}

static void test_env_and_options_first(void **state)
{
	struct auth_opts o;
	struct auth_source *src;
	struct err err;
	char *trail = NULL;

	(void)state;
	mkdirs("home/.config/durafs");
	copy_to(user_path, "home/.config/durafs/credentials.json");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_path, 1);
	setenv("DURAFS_ACCESS_TOKEN", "ya29.env", 1);
	src = resolve(NULL, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "static");
	assert_string_equal(src->origin, "$DURAFS_ACCESS_TOKEN");
	auth_source_free(src);
	free(trail);

	memset(&o, 0, sizeof(o));
	o.credentials = sa_path;
	o.scopes = AUTH_SCOPE_DRIVE;
	src = resolve(&o, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "service_account");
	assert_string_equal(src->origin, "--credentials");
	assert_string_equal(src->scopes, AUTH_SCOPE_DRIVE);
	assert_non_null(strstr(trail, "1. --credentials "));
	assert_null(strstr(trail, "2."));
	auth_source_free(src);
	free(trail);

	memset(&o, 0, sizeof(o));
	o.token_file = tok_path;
	src = resolve(&o, &trail, &err);
	assert_non_null(src);
	assert_string_equal(src->ops->kind, "static");
	assert_string_equal(src->path, tok_path);
	auth_source_free(src);
	free(trail);

	o.credentials = sa_path;
	src = resolve(&o, &trail, &err);
	assert_null(src);
	assert_int_equal(err.code, ERR_INVAL);
	free(trail);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_nothing_found, reset_env),
		cmocka_unit_test_setup(test_gcloud_file, reset_env),
		cmocka_unit_test_setup(test_gac_beats_gcloud, reset_env),
		cmocka_unit_test_setup(test_stored_login_and_xdg, reset_env),
		cmocka_unit_test_setup(test_env_and_options_first, reset_env),
	};

	return cmocka_run_group_tests_name("auth_adc", tests, setup, teardown);
}
