/* Metadata-server token source (auth/src_metadata.c): GCE VMs, Cloud Run,
 * and Colab runtimes with ephemeral auth hand out tokens at
 * http://HOST/computeMetadata/v1/ to requests carrying
 * "Metadata-Flavor: Google", and answer with the same header. */
#ifndef DURAFS_AUTH_META_H
#define DURAFS_AUTH_META_H

#include "durafs/auth.h"
#include "durafs/err.h"

#define AUTH_META_ENV_HOST "GCE_METADATA_HOST"
/* google-auth-library-python's variable for the same server's address. */
#define AUTH_META_ENV_IP "GCE_METADATA_IP"
/* The link-local address (no DNS lookup, so off GCE the probe fails within
 * its connect timeout rather than a resolver's). */
#define AUTH_META_DEFAULT_HOST "169.254.169.254"
/* Connect timeout of the probe. */
#define AUTH_META_PROBE_MS 500

/* $GCE_METADATA_HOST (host or host:port, an "http://" prefix tolerated),
 * else $GCE_METADATA_IP, else the default. Borrowed. */
const char *auth_meta_host(void);

/* Whether a metadata server answers at host: a GET of /computeMetadata/v1/
 * within connect_ms to connect (0: AUTH_META_PROBE_MS) and about twice that
 * in all, whose reply is 200 with "Metadata-Flavor: Google". Returns 0, or
 * -1 with *err saying what happened (ERR_NET nothing listens / timeout,
 * ERR_PARSE something else answered). Never retried. */
int auth_meta_probe(const char *host, long connect_ms, struct err *err);

/* A source asking host for tokens of the default service account (with
 * ?scopes= when scopes is not NULL; space-separated URLs). The account
 * email is asked once now, best effort (whoami shows it). origin copied.
 * Does not probe. 0 or -1 with *err (ERR_INVAL for a malformed host). */
int auth_meta_new(const char *host, const char *scopes, const char *origin,
		  struct auth_source **out, struct err *err);

#endif
