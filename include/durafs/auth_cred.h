/* Credentials files (auth/credfile.c): reading a JSON key or token file
 * safely (size cap, short reads, permission warning as ssh gives), and
 * messages that name the file and the field but never quote a secret. */
#ifndef DURAFS_AUTH_CRED_H
#define DURAFS_AUTH_CRED_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "durafs/err.h"

/* Largest credentials file read (key files are ~2.5 KiB). */
#define AUTH_CRED_MAX_SIZE (1024 * 1024)

/* When mode gives group or others any access, write a one-line warning to
 * out naming path and the fix (chmod 600), and return 1; else return 0.
 * out NULL means stderr. */
int auth_cred_perm_warn(const char *path, mode_t mode, FILE *out);

/* Read the whole regular file path (at most AUTH_CRED_MAX_SIZE bytes) into
 * a malloc'd NUL-terminated buffer (*out, length *len, len may be NULL),
 * warning about its permissions on warn (NULL: stderr). The caller wipes
 * and frees it. Errors name the file: ERR_NOTFOUND when it does not exist,
 * ERR_IO (errno saved), ERR_INVAL when not a regular file or too large. */
int auth_cred_read(const char *path, FILE *warn, char **out, size_t *len, struct err *err);

/* Parse len bytes as one JSON object. what names the input in messages
 * ("/path/sa.json", "token reply"); a syntax error reports only its line
 * and column, never the text around it (it may be a key). *out is a new
 * reference. ERR_PARSE on failure. */
int auth_cred_parse(const char *buf, size_t len, const char *what, json_t **out,
		    struct err *err);

/* Read and parse path (auth_cred_read + auth_cred_parse). */
int auth_cred_load(const char *path, FILE *warn, json_t **out, struct err *err);

/* A string member. required: missing or null is ERR_PARSE
 * "PATH: field "NAME" missing", and "" is "... is empty". Optional: absent,
 * null or "" give *out = NULL and 0. Present but not a string (or holding a
 * NUL) is ERR_PARSE "... is not a string" in both cases. *out is borrowed
 * from obj. */
int auth_cred_str(const json_t *obj, const char *what, const char *field, int required,
		  const char **out, struct err *err);

/* A bearer token must be non-empty printable ASCII without spaces (it goes
 * into an HTTP header). Returns 0, or -1 with ERR_PARSE naming what (never
 * quoting the token). */
int auth_cred_check_token(const char *tok, const char *what, struct err *err);

/* Overwrite and free a secret buffer of len bytes (len 0: strlen). */
void auth_cred_wipe(char *s, size_t len);

#endif
