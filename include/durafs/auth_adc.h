/* Credential discovery (auth/adc.c): durafs' order of token sources, which
 * ends with Google's Application Default Credentials (ADC) order:
 *
 *   1. --token-file FILE           static token (explicit option)
 *   2. --credentials FILE          key or authorized_user file (explicit)
 *   3. $DURAFS_ACCESS_TOKEN        static token
 *   4. durafs' stored login        $XDG_CONFIG_HOME/durafs/credentials.json
 *                                  (~/.config/durafs/credentials.json)
 *   5. ADC 1: $GOOGLE_APPLICATION_CREDENTIALS (a file; set but missing is
 *      an error, as in Google's libraries)
 *   6. ADC 2: $CLOUDSDK_CONFIG/application_default_credentials.json when
 *      CLOUDSDK_CONFIG is set, else
 *      ~/.config/gcloud/application_default_credentials.json
 *   7. ADC 3: the metadata server ($GCE_METADATA_HOST or 169.254.169.254),
 *      probed with a short timeout; skipped when $DURAFS_NO_METADATA=1.
 *
 * The first step that applies wins; a step that applies but is broken (a
 * malformed file, an unsupported type) is an error, never skipped. */
#ifndef DURAFS_AUTH_ADC_H
#define DURAFS_AUTH_ADC_H

#include <stdio.h>

#include "durafs/auth.h"
#include "durafs/err.h"

#define AUTH_ENV_ACCESS_TOKEN "DURAFS_ACCESS_TOKEN"
#define AUTH_ENV_NO_METADATA "DURAFS_NO_METADATA"
#define AUTH_ENV_GAC "GOOGLE_APPLICATION_CREDENTIALS"

struct auth_opts {
	const char *token_file;    /* --token-file, or NULL */
	const char *credentials;   /* --credentials, or NULL */
	const char *scopes;        /* space-separated scope URLs for service
				    * accounts and the metadata server; NULL:
				    * AUTH_SCOPES_DEFAULT */
	const char *subject;       /* service-account impersonation, or NULL */
	FILE *warn;                /* permission warnings; NULL: stderr */
	long metadata_connect_ms;  /* probe connect timeout; 0: default */
	int no_metadata;           /* 1: skip step 7 */
};

/* A source from a credentials JSON file: its "type" chooses
 * service_account or authorized_user; other types (external_account,
 * impersonated_service_account ...) are refused as not supported. origin
 * and relogin (how to log in again; NULL generic) are copied. */
int auth_adc_from_file(const char *path, const char *origin, const char *relogin,
		       const struct auth_opts *o, struct auth_source **out, struct err *err);

/* Walk the order above. On success *out is the source. *trail (when trail
 * is not NULL) gets a malloc'd text, one line per step looked at, saying
 * what was found, for `whoami` and for the "no credentials" report; the
 * caller frees it (also on failure). Fails with ERR_AUTH listing what was
 * tried when nothing applies, or the error of the step that applied. */
int auth_adc_resolve(const struct auth_opts *o, struct auth_source **out, char **trail,
		     struct err *err);

/* auth_adc_resolve, then a provider over the source found: what a mount
 * calls. Nothing is fetched yet (call auth_provider_get to check the
 * credentials work). trail as for auth_adc_resolve. */
int auth_adc_open(const struct auth_opts *o, struct auth_provider **out, char **trail,
		  struct err *err);

/* Where step 6 looks (malloc'd), or NULL with *err when there is no home. */
char *auth_adc_gcloud_path(struct err *err);

#endif
