/* `durafs auth login` flows (auth/login.c): the loopback flow with PKCE
 * (RFC 8252 + RFC 7636 S256) that listens on 127.0.0.1 for the redirect and
 * also accepts the redirect URL pasted on stdin (headless machines), and the
 * device flow (RFC 8628; Google allows it for drive.file only). The refresh
 * token obtained is stored as durafs' login (auth_store.h). */
#ifndef DURAFS_AUTH_LOGIN_H
#define DURAFS_AUTH_LOGIN_H

#include <stddef.h>
#include <stdio.h>

#include "durafs/err.h"

#define AUTH_ENV_CLIENT_ID "DURAFS_CLIENT_ID"
#define AUTH_ENV_CLIENT_SECRET "DURAFS_CLIENT_SECRET"

/* PKCE: a verifier is 43 characters of base64url (32 random bytes); its
 * S256 challenge is base64url(SHA-256(verifier)), 43 characters. */
#define AUTH_PKCE_LEN 43

/* Fill out (AUTH_PKCE_LEN + 1 bytes) with a fresh random verifier / state.
 * 0, or -1 with *err when the system has no randomness to give. */
int auth_login_random(char *out, size_t outsz, struct err *err);

/* The S256 challenge of verifier into out (AUTH_PKCE_LEN + 1 bytes). 0 or
 * -1 (a verifier outside RFC 7636's 43..128 unreserved characters). */
int auth_login_challenge(const char *verifier, char *out, size_t outsz);

/* The authorization URL (malloc'd, NULL on ENOMEM): auth_uri with
 * response_type=code, client_id, redirect_uri, scope, state,
 * code_challenge, code_challenge_method=S256, access_type=offline,
 * prompt=consent. */
char *auth_login_auth_url(const char *auth_uri, const char *client_id,
			  const char *redirect_uri, const char *scopes, const char *state,
			  const char *challenge);

/* Extract the authorization code from what the user pasted or what the
 * browser sent to the listener: a full redirect URL, its "/?query" or
 * "?query" part, an HTTP request line "GET /?query HTTP/1.1", or a bare
 * code. A query must carry state equal to expected_state (a bare code has
 * none to check) and code; "error=" gives ERR_AUTH with the error and its
 * description. *code is malloc'd (a secret: wipe it). ERR_INVAL for
 * anything else; messages never quote the code. */
int auth_login_parse_redirect(const char *input, const char *expected_state, char **code,
			      struct err *err);

struct auth_login_opts {
	const char *client_id;      /* required */
	const char *client_secret;  /* required */
	const char *scopes;         /* space-separated URLs, required */
	int no_browser;             /* 1: never start a browser */
	int device;                 /* 1: the device flow */
	long timeout_s;             /* how long to wait for the user; 0: 300 */
	const char *store_path;     /* NULL: auth_store_path() */
	int in_fd;                  /* where a pasted redirect URL is read
				     * (stdin), or -1 */
	FILE *out;                  /* instructions and the URL; NULL: stderr */
};

/* Run the flow o asks for, exchange the code at the token endpoint
 * ($DURAFS_OAUTH_TOKEN_URI or Google's; the authorization and device
 * endpoints likewise from $DURAFS_OAUTH_AUTH_URI / _DEVICE_URI), and store
 * the login. *stored (may be NULL) gets the malloc'd path written. 0, or
 * -1 with *err (nothing stored). */
int auth_login_run(const struct auth_login_opts *o, char **stored, struct err *err);

/* The message telling a user how to create the OAuth client durafs needs. */
const char *auth_login_client_help(void);

#endif
