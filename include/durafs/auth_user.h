/* authorized_user token source (auth/src_user.c): a user's refresh token
 * with its OAuth client (gcloud's application_default_credentials.json,
 * Colab's adc.json, durafs' own stored login) traded for access tokens. */
#ifndef DURAFS_AUTH_USER_H
#define DURAFS_AUTH_USER_H

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/err.h"

/* Build a source from the parsed file obj (read from path): client_id,
 * client_secret, refresh_token required; token_uri optional (default:
 * $DURAFS_OAUTH_TOKEN_URI, else Google's); account and scopes (string or
 * array) optional, shown by whoami. When a refresh fails the file is read
 * again and, if it now holds other credentials (Colab rewrites it), the
 * refresh is tried once more with them. relogin tells the user how to log
 * in again when the refresh token is expired or revoked (copied; NULL for
 * a generic hint). Returns 0 or -1 with *err naming the file and field. */
int auth_user_new(const json_t *obj, const char *path, const char *origin,
		  const char *relogin, struct auth_source **out, struct err *err);

/* The scopes member of a credentials file (a space-separated string or an
 * array of strings) as one malloc'd space-separated string; *out NULL when
 * absent. ERR_PARSE naming path when of another shape. */
int auth_user_scopes(const json_t *obj, const char *path, char **out, struct err *err);

#endif
