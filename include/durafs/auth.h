/* durafs token provider (auth/provider.c): the one object the HTTP layer asks
 * for a bearer token. It wraps a token source (static, service account,
 * authorized_user, metadata server), caches the token, refreshes it before
 * expiry, and makes many threads share one refresh. */
#ifndef DURAFS_AUTH_H
#define DURAFS_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "durafs/err.h"

/* Google scopes durafs uses. */
#define AUTH_SCOPE_GCS "https://www.googleapis.com/auth/devstorage.read_write"
#define AUTH_SCOPE_CLOUD "https://www.googleapis.com/auth/cloud-platform"
#define AUTH_SCOPE_DRIVE "https://www.googleapis.com/auth/drive"
#define AUTH_SCOPE_DRIVE_FILE "https://www.googleapis.com/auth/drive.file"
#define AUTH_SCOPE_DRIVE_RO "https://www.googleapis.com/auth/drive.readonly"
/* What durafs asks for when nobody says otherwise: both backends. */
#define AUTH_SCOPES_DEFAULT AUTH_SCOPE_GCS " " AUTH_SCOPE_DRIVE

/* Google's token endpoint, used when a credentials file names none. */
#define AUTH_GOOGLE_TOKEN_URI "https://oauth2.googleapis.com/token"

/* A token as a source hands it over. Every string is malloc'd and owned by
 * the struct; auth_token_release wipes the secrets before freeing. */
struct auth_token {
	char *access_token;   /* the bearer token (secret) */
	char *refresh_token;  /* only from an authorization-code exchange (secret) */
	char *id_token;       /* only when the token endpoint sent one (secret) */
	char *scope;          /* granted scopes (space separated) when known */
	long expires_in;      /* lifetime in seconds from now; 0 = unknown (no
			       * scheduled refresh, only on 401) */
};

/* Wipe and free what t holds, then zero it. Safe on a zeroed struct. */
void auth_token_release(struct auth_token *t);

/* A token source: one way of getting a fresh token. */
struct auth_source_ops {
	const char *kind;  /* "static", "service_account", "authorized_user",
			    * "metadata" */
	/* Obtain a fresh token into *out (zeroed by the caller). The provider
	 * calls it from one thread at a time for a given source, without any
	 * provider lock held; it may block on the network. Returns 0, or -1
	 * with *err set (never a secret in the message). */
	int (*fetch)(void *ctx, struct auth_token *out, struct err *err);
	/* Free ctx (wiping secrets). NULL ctx is never passed. */
	void (*free)(void *ctx);
};

/* A source and what the CLI shows about it. All strings are malloc'd and
 * owned by the source; none is a secret. */
struct auth_source {
	const struct auth_source_ops *ops;
	void *ctx;        /* owned: ops->free(ctx) */
	char *origin;     /* why this source was chosen, e.g.
			   * "ADC step 1: $GOOGLE_APPLICATION_CREDENTIALS" */
	char *path;       /* credentials file, or NULL */
	char *account;    /* service account email / user account, or NULL */
	char *scopes;     /* scopes requested (space separated), or NULL */
};

/* Wrap ctx in a new source. Steals ctx: on failure (ENOMEM, -1 with *err)
 * ops->free(ctx) has been called. origin/path/account/scopes are copied
 * (each may be NULL). */
int auth_source_new(const struct auth_source_ops *ops, void *ctx, const char *origin,
		    const char *path, const char *account, const char *scopes,
		    struct auth_source **out, struct err *err);
/* Replace a descriptive field (copy of val, may be NULL); 0 or -1 ENOMEM. */
int auth_source_set(char **field, const char *val);
void auth_source_free(struct auth_source *s);

/* When to refresh a token of the given lifetime, in seconds after it was
 * obtained: 5 minutes before expiry, or at half-life when the lifetime is
 * 10 minutes or less (so 600 s -> 300, 3599 -> 3299, 120 -> 60, 1 -> 0).
 * lifetime <= 0 means unknown: returns -1 (never refresh on a schedule). */
long auth_refresh_after(long lifetime);

/* Expand a scope name: "gcs" (devstorage.read_write), "gcs.ro"
 * (devstorage.read_only), "cloud" (cloud-platform), "drive", "drive.file",
 * "drive.readonly", or a full https:// URL kept as is. A comma- or
 * space-separated list expands each. Returns a malloc'd space-separated
 * string, or NULL with *err (ERR_INVAL naming the bad name, or ERR_NOMEM). */
char *auth_scope_expand(const char *names, struct err *err);

struct auth_provider;

/* Create a provider over src (stolen, even on failure). Nothing is fetched
 * yet. Returns 0 or -1 with *err. */
int auth_provider_new(struct auth_source *src, struct auth_provider **out, struct err *err);
/* Free the provider and its source. No call may be in progress. */
void auth_provider_free(struct auth_provider *p);

/* Copy a valid token into buf (NUL-terminated) and its generation into *gen
 * (may be NULL). Thread-safe. A cached token is returned at once; past its
 * refresh point one caller refreshes while the others keep using the
 * still-valid token; with no usable token every caller waits for the one
 * refresh in flight and all get its error if it fails. Returns 0, or -1
 * with *err (ERR_INVAL when buf is too small). */
int auth_provider_get(struct auth_provider *p, char *buf, size_t buflen, uint64_t *gen,
		      struct err *err);
/* The token of generation gen was refused (401): drop it, unless it was
 * already replaced (so 32 threads refused with the same token cause one
 * refresh). Thread-safe. */
void auth_provider_invalidate(struct auth_provider *p, uint64_t gen);

/* An http_token_fn (include/durafs/http.h) with ud = the provider.
 * invalidate != 0 drops the token this thread last received from this
 * provider (tracked per thread, so only the first of many threads refused
 * with the same token causes a refresh), then returns a fresh one. */
int auth_provider_token_fn(void *ud, int invalidate, char *buf, size_t buflen,
			   struct err *err);

/* What the provider knows, for `durafs auth whoami`. Strings are borrowed
 * from the provider: valid until it is freed, except scopes, valid until
 * the next refresh (call it when no other thread uses the provider). No
 * secret is included. */
struct auth_info {
	const char *kind;      /* source kind */
	const char *origin;
	const char *path;      /* may be NULL */
	const char *account;   /* may be NULL */
	const char *scopes;    /* granted scopes when the token endpoint said,
				* else requested; may be NULL */
	time_t expires_at;     /* wall-clock expiry of the cached token; 0 if
				* none or unknown */
	uint64_t generation;   /* tokens obtained so far */
	uint64_t fetches;      /* fetch calls made (successful or not) */
};
void auth_provider_info(struct auth_provider *p, struct auth_info *out);

#endif
