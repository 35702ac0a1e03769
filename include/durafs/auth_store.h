/* durafs' own stored login (auth/store.c): the authorized_user file that
 * `durafs auth login` writes, at $XDG_CONFIG_HOME/durafs/credentials.json
 * (default ~/.config/durafs/credentials.json), mode 0600, replaced
 * atomically (write a temporary file, fsync, rename, fsync the directory). */
#ifndef DURAFS_AUTH_STORE_H
#define DURAFS_AUTH_STORE_H

#include <stddef.h>

#include "durafs/err.h"

/* The stored-login path, malloc'd: $XDG_CONFIG_HOME when set and absolute
 * (the XDG rule), else $HOME/.config (HOME from the environment, else the
 * password database). NULL with *err when neither is known. */
char *auth_store_path(struct err *err);

/* The configuration directory root used above ($XDG_CONFIG_HOME or
 * $HOME/.config), malloc'd, or NULL with *err. */
char *auth_store_config_dir(struct err *err);

/* Write len bytes to path atomically with mode 0600, creating missing
 * parent directories with mode 0700. On failure the old file is intact and
 * no temporary file is left. 0 or -1 with *err (ERR_IO naming the path). */
int auth_store_write(const char *path, const void *data, size_t len, struct err *err);

/* What a login stores. Strings are borrowed; scopes space-separated;
 * account may be NULL. */
struct auth_login_record {
	const char *client_id;
	const char *client_secret;
	const char *refresh_token;
	const char *token_uri;
	const char *scopes;
	const char *account;
};

/* Store rec at path (NULL: auth_store_path()) as an authorized_user JSON
 * file, atomically, 0600. 0 or -1 with *err. */
int auth_store_save(const char *path, const struct auth_login_record *rec, struct err *err);

#endif
