/* Service-account token source (auth/src_sa.c): a JSON key file of type
 * "service_account" signs an RS256 JWT that is exchanged at the file's
 * token_uri for an access token (the JWT-bearer grant). */
#ifndef DURAFS_AUTH_SA_H
#define DURAFS_AUTH_SA_H

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/err.h"

/* Build a source from the parsed key file obj (read from path, used in
 * messages): client_email, private_key (PEM, RSA) required; private_key_id
 * (the JWT kid) and token_uri (default Google's) optional. The key is
 * loaded now, so a damaged file fails here. scopes: space-separated scope
 * URLs (required); subject: the user to impersonate with domain-wide
 * delegation, or NULL. origin: why it was chosen (copied). Returns 0 or -1
 * with *err naming the file and the field. */
int auth_sa_new(const json_t *obj, const char *path, const char *scopes, const char *subject,
		const char *origin, struct auth_source **out, struct err *err);

/* The signed assertion this source would post at time now (a secret: the
 * caller wipes and frees *jwt). For tests and diagnostics. */
int auth_sa_assertion(struct auth_source *src, time_t now, char **jwt, struct err *err);

#endif
