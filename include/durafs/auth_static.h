/* Static token source (auth/src_static.c): an access token given as is, in
 * an environment variable or a file. Never refreshed on a schedule; a file
 * is read again whenever a new token is needed (after a 401), so a script
 * can rotate it. */
#ifndef DURAFS_AUTH_STATIC_H
#define DURAFS_AUTH_STATIC_H

#include <stdio.h>

#include "durafs/auth.h"
#include "durafs/err.h"

/* From the value of environment variable var (read now, copied). Fails
 * with ERR_NOTFOUND when unset or empty, ERR_PARSE when not a valid header
 * value. origin is copied. */
int auth_static_new_env(const char *var, const char *origin, struct auth_source **out,
			struct err *err);

/* From the file path: its content, surrounding whitespace trimmed. Read
 * now to fail early (ERR_NOTFOUND, ERR_PARSE naming the file), and again at
 * each fetch. Permission warnings go to warn (NULL: stderr). */
int auth_static_new_file(const char *path, const char *origin, FILE *warn,
			 struct auth_source **out, struct err *err);

#endif
