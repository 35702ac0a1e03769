/* OAuth2 token endpoint client (auth/oauth.c): form-encoded POSTs through
 * the HTTP layer, token replies parsed strictly, refusals reported with
 * Google's "error" and "error_description" and never a secret. */
#ifndef DURAFS_AUTH_OAUTH_H
#define DURAFS_AUTH_OAUTH_H

#include <stddef.h>

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/err.h"
#include "durafs/http.h"

/* Endpoint overrides (tests point them at the emulator). */
#define AUTH_ENV_TOKEN_URI "DURAFS_OAUTH_TOKEN_URI"
#define AUTH_ENV_AUTH_URI "DURAFS_OAUTH_AUTH_URI"
#define AUTH_ENV_DEVICE_URI "DURAFS_OAUTH_DEVICE_URI"
#define AUTH_GOOGLE_AUTH_URI "https://accounts.google.com/o/oauth2/v2/auth"
#define AUTH_GOOGLE_DEVICE_URI "https://oauth2.googleapis.com/device/code"

/* The value of environment variable env when set and non-empty, else dflt.
 * Borrowed. */
const char *auth_oauth_uri(const char *env, const char *dflt);

/* A new HTTP client for token endpoints and the metadata server: no
 * Authorization ever, connect timeout connect_ms (0: 10 s), 4 retries with
 * a short backoff (5xx, 429, resets), debug logging when the process log
 * level is debug. 0 or -1 with *err. */
int auth_oauth_http(long connect_ms, struct http **out, struct err *err);

/* Build an application/x-www-form-urlencoded body from a NULL-terminated
 * list of name, value pairs (values percent-encoded; a NULL value skips the
 * pair). Returns a malloc'd string (wipe it: it holds secrets) or NULL on
 * ENOMEM. */
char *auth_oauth_form(const char *const *pairs);

/* Parse a successful token reply: access_token (required, a valid header
 * value), expires_in (integer or decimal string, > 0; absent = unknown),
 * token_type (Bearer when present), scope, refresh_token, id_token
 * (optional). what names the reply in messages. Fills *out (zeroed by the
 * caller; released by the caller on success and failure). */
int auth_oauth_parse_token(const char *body, size_t len, const char *what,
			   struct auth_token *out, struct err *err);

/* Fill *err from a refused request: ERR_AUTH (400/401/403 with an OAuth
 * error) with reason = the "error" string and a message
 * "<what>: <error>: <error_description>" (description sanitized and cut
 * short). Other statuses keep the HTTP layer's mapping. Returns -1. */
int auth_oauth_refusal(long status, const char *body, size_t len, const char *what,
		       struct err *err);

/* POST form to uri and parse the token reply into *out (zeroed by the
 * caller; on failure it is released). Retries 5xx/429/connection errors
 * (the HTTP layer's policy), never a refused grant. what names the grant in
 * messages ("service account sa@x", "refresh token from /f"). */
int auth_oauth_post(struct http *h, const char *uri, const char *form, const char *what,
		    struct auth_token *out, struct err *err);

/* POST form to uri and return the parsed JSON object of a 2xx reply (for
 * the device-code endpoint). *status gets the HTTP status (0 on transport
 * failure). On a non-2xx reply: -1 with auth_oauth_refusal's error, and
 * *reply still set when the body was an OAuth error object (so a poller can
 * read "error"). Caller json_decrefs *reply. */
int auth_oauth_post_json(struct http *h, const char *uri, const char *form,
			 const char *what, long *status, json_t **reply, struct err *err);

#endif
