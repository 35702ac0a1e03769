/* durafs HTTP layer (sync/http.c): one libcurl client shared by every worker
 * thread, with the project's single retry policy, token handling, Google
 * error parsing and counters. Nothing above sync/ speaks HTTP.
 *
 * Connections: a client keeps a pool of idle curl easy handles; a request
 * takes one (the most recently used first), and gives it back with its
 * connections still open, so keep-alive connections are reused across
 * requests and threads. DNS and TLS sessions are shared by every handle
 * through a curl share object (one mutex per shared data kind). The
 * connection cache itself is per handle, not in the share: libcurl does not
 * support a shared connection cache used by concurrent threads (its
 * CURLSHOPT_SHARE documentation and known bug "A shared connection cache is
 * not thread-safe").
 *
 * Below our policy, libcurl resends a request on its own when it went out
 * on a reused connection that died before any reply byte (the idle
 * keep-alive race). We let it do so only for HTTP_RETRY_SAFE requests
 * (counted in http_stats.retries); a HTTP_RETRY_NONE request is never sent
 * twice: it fails with ERR_NET instead, since the server may have acted on
 * the first copy (say, persisted part of an upload chunk).
 *
 * Transport: HTTP/2 over TLS when the server offers it (HTTP/1.1 otherwise
 * and for plain http), TCP keepalive, no signals, TLS peer and host
 * verification always on (there is no option to turn it off), redirects
 * never followed, only http and https URLs. Long transfers are never cut by
 * a total timeout unless the request asks for one: a transfer slower than
 * low_speed_limit bytes/s for low_speed_time_s seconds is a stall (a
 * retryable ERR_TIMEOUT).
 *
 * Bodies: always a definite Content-Length, never chunked; `Expect:
 * 100-continue` is never sent, whatever the size: it costs a round trip on
 * every chunk of every upload, and buys only an earlier rejection in rare
 * cases (expired session, stale token, failed precondition), which we
 * detect anyway from the reply. A body is streamed from memory or read
 * with pread from an fd in 2 MiB slices: never copied whole. */
#ifndef DURAFS_HTTP_H
#define DURAFS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "durafs/err.h"

struct http;

/* Supplies a bearer token. Called without any http lock held, possibly from
 * many threads at once; must be thread-safe. invalidate != 0 means the last
 * token was refused with 401: drop it and fetch a fresh one. Writes a
 * NUL-terminated token into buf; returns 0, or -1 with *err set (the
 * request then fails with that error). */
typedef int (*http_token_fn)(void *ud, int invalidate, char *buf, size_t buflen,
			     struct err *err);

/* Receives response body bytes of a successful (2xx) reply in order.
 * Returns 0 to go on, non-zero to abort the transfer (http_do then fails
 * with ERR_CANCELED). */
typedef int (*http_sink_fn)(void *ud, const char *data, size_t len);

struct http_opts {
	const char *user_agent;     /* NULL: "durafs/VERSION" */
	long connect_timeout_ms;    /* 0: 10000 */
	long low_speed_limit;       /* bytes/s below which a transfer stalls; 0: 1 */
	long low_speed_time_s;      /* ...for this long = stalled; 0: 60 */
	int max_retries;            /* retries after the first try; <0: 0, 0: 8 */
	long backoff_initial_ms;    /* 0: 1000; doubles each retry */
	long backoff_max_ms;        /* 0: 32000 */
	/* Retry n (n = 0 for the first retry) waits
	 *   min(backoff_initial_ms * 2^n + rand(0..backoff_jitter_ms),
	 *       backoff_max_ms)
	 * or, when the reply carries Retry-After (seconds or HTTP date), that
	 * delay capped at 2 * backoff_max_ms. */
	long backoff_jitter_ms;     /* 0: 1000; <0: no jitter */
	http_token_fn token;        /* NULL: never send Authorization */
	void *token_ud;
	int debug;                  /* log every attempt at debug level, not
				     * only retries (URLs and headers redacted,
				     * see http_redact_url) */
	int pool_max;               /* idle easy handles kept; 0: 64 */
};

/* How a failed attempt may be retried. */
enum http_retry {
	HTTP_RETRY_NONE = 0,  /* never retried (not idempotent, no precondition) */
	HTTP_RETRY_SAFE = 1,  /* idempotent or precondition-guarded: retry 408,
			       * 429, 500, 502, 503, 504, 403 with Google reason
			       * rateLimitExceeded/userRateLimitExceeded, and
			       * transport failures (connect, DNS, reset, stall,
			       * timeout, partial transfer) with backoff */
};

/* Progress of an attempt: bytes sent and received so far (of this attempt;
 * a retry starts again from 0). Called often from the transfer's thread.
 * Return 0 to go on, non-zero to abort (http_do fails with ERR_CANCELED,
 * no retry). */
typedef int (*http_progress_fn)(void *ud, uint64_t up, uint64_t down);

struct http_req {
	const char *method;             /* "GET", "PUT", ...; NULL = "GET" */
	const char *url;                /* absolute URL */
	const char *const *headers;     /* NULL-terminated "Name: value" list or NULL */
	/* Request body: a memory buffer, or body_len bytes of body_fd at body_off
	 * (read with pread, so a retry re-reads it). body_fd < 0 selects memory.
	 * A body is always sent with a definite Content-Length (never chunked),
	 * including an empty body for POST/PUT/PATCH. No Content-Type is
	 * added, except for a POST whose headers have none: then
	 * "application/x-www-form-urlencoded" (libcurl's convention for
	 * POST data). If body_fd yields fewer than body_len bytes (the file
	 * shrank) the request fails with ERR_IO, not retried. body and
	 * body_fd are only read, during http_do. */
	const void *body;
	size_t body_len;
	int body_fd;                    /* -1 unless reading the body from a file */
	off_t body_off;
	enum http_retry retry;
	int no_auth;                    /* 1: never add Authorization */
	/* Response body of a 2xx reply goes to sink when set, else it is
	 * collected in resp->body (at most max_body bytes; larger fails with
	 * ERR_PARSE, not retried). Bodies of 1xx/3xx/4xx/5xx replies are
	 * always collected in resp->body, cut (silently) at
	 * min(max_body, 1 MiB). When a sink has received any byte and the
	 * transfer then fails, it is not retried: http_do fails with ERR_NET
	 * (or ERR_TIMEOUT) and resp->sink_bytes says how many arrived. A sink
	 * returning non-zero fails the request with ERR_CANCELED. */
	http_sink_fn sink;
	void *sink_ud;
	size_t max_body;                /* 0: 64 MiB */
	long timeout_ms;                /* whole-attempt timeout; 0: none (stall
					 * detection only) */
	http_progress_fn progress;      /* NULL: none */
	void *progress_ud;
	int max_retries;                /* overrides http_opts.max_retries when
					 * > 0; < 0 means no retry at all (the
					 * 401 token refresh still applies) */
	long connect_timeout_ms;        /* overrides the client's when > 0
					 * (e.g. a fast metadata-server probe) */
};

struct http_header {
	char *name;                     /* as received */
	char *value;                    /* trimmed */
};

struct http_resp {
	long status;                    /* final HTTP status, 0 if none */
	char *body;                     /* NUL-terminated, malloc'd; NULL if none */
	size_t body_len;
	struct http_header *headers;    /* headers of the final reply */
	size_t nheaders;
	uint64_t sink_bytes;            /* bytes delivered to the sink */
	int attempts;                   /* tries made (1 = no retry) */
};

/* Create a client. Returns 0 or -1 with *err set. curl_global_init is done
 * once per process by the first call. The client may be used by any number of
 * threads at once; idle connections, DNS and TLS sessions are reused between
 * them (see the top of this file). opts may be NULL (all defaults); it is
 * copied (user_agent included). http_free must not run concurrently with
 * http_do on the same client; it is a no-op on NULL. */
int http_new(const struct http_opts *opts, struct http **out, struct err *err);
void http_free(struct http *h);

/* Perform a request with the retry policy. resp is zeroed first and, on
 * return, filled (caller must http_resp_release it, whatever the result);
 * resp may be NULL when the caller needs nothing from the reply.
 * Returns 0 when the final status is 2xx or 3xx (308 is a normal answer,
 * redirects are not followed). Otherwise returns -1 and *err holds:
 * ERR_NET / ERR_TIMEOUT for transport failures after retries (http_status
 * 0), or the mapped code of the final HTTP reply with http_status, Google's
 * reason and message parsed from the error JSON (see http_status_to_err);
 * resp->status/body/headers then describe that final reply. A 401 (when a
 * token was sent) invalidates the token once and retries once, whatever
 * req->retry says; that retry does not use up max_retries. Retries are
 * logged at debug level (method, redacted URL, status or transport error,
 * delay) when the log level is debug; with http_opts.debug every attempt
 * is logged too. err->msg names the method and the redacted URL and never
 * holds a token; err may be NULL. Thread-safe; blocks the calling thread
 * (also while backing off) unless http_cancel_all is in effect: then it
 * fails with ERR_CANCELED (not retried), see below. */
int http_do(struct http *h, const struct http_req *req, struct http_resp *resp,
	    struct err *err);

/* Cancellation, for a clean and prompt shutdown (the scheduler's sch_stop
 * while the remote is unreachable or slow):
 * - http_cancel_all(h): every http_do of h running now fails with
 *   ERR_CANCELED: one waiting to retry at once (the backoff wait is a
 *   condition wait, woken by this call), one in a transfer (connecting,
 *   sending, receiving or stalled) at libcurl's next progress callback,
 *   within about one second (libcurl calls it at least once a second; a
 *   busy transfer much more often). Every http_do started later fails at
 *   once with ERR_CANCELED, until the matching http_uncancel. A request
 *   stopped mid-way may or may not have been acted on by the server, as
 *   with a dropped connection: callers treat ERR_CANCELED as "outcome
 *   unknown, try again later", never as a final refusal.
 * - http_uncancel(h): undoes one http_cancel_all. Calls nest (a count): h
 *   works again once every cancel has been undone; an extra uncancel is
 *   ignored.
 * - http_canceled(h): 1 while cancelled (h NULL: 0).
 * - http_pause(h, ms, err): sleep ms (<= 0: none) unless h is or becomes
 *   cancelled: 0 after the full sleep, -1 with ERR_CANCELED at once when
 *   cancelled. For callers' own backoff loops around http_do (so that
 *   they too stop promptly); err may be NULL.
 * All four are thread-safe and may be called from any thread, including
 * while other threads are inside http_do; h must be valid (not freed). */
void http_cancel_all(struct http *h);
void http_uncancel(struct http *h);
int http_canceled(struct http *h);
int http_pause(struct http *h, long ms, struct err *err);

/* Free what a response holds and zero it. Safe on a zeroed resp. */
void http_resp_release(struct http_resp *resp);

/* idx-th header named name (case-insensitive), or NULL. */
const char *http_resp_header(const struct http_resp *resp, const char *name,
			     size_t idx);

/* Fill *err from an HTTP status and an error body (Google JSON
 * {"error":{"code","message","errors":[{"reason"}]}} (reason falling back to
 * error.details[].reason, then error.status) or OAuth
 * {"error","error_description"}; anything else is kept as a short excerpt:
 * printable ASCII only, at most 200 bytes, secrets masked by log_redact).
 * err->reason gets the reason, err->msg "HTTP <status> <reason>: <message>".
 * Mapping: 400 INVAL (reason kept) except the OAuth grant refusals
 * invalid_grant, invalid_client, unauthorized_client, access_denied ->
 * AUTH; 401 AUTH; 403 by reason (rateLimitExceeded, userRateLimitExceeded
 * -> RATE; quotaExceeded, dailyLimitExceeded, downloadQuotaExceeded,
 * sharingRateLimitExceeded... -> QUOTA; storageQuotaExceeded -> NOSPC;
 * authError, insufficientScopes... -> AUTH; else PERM); 404 NOTFOUND;
 * 409 EXISTS; 410 GONE; 412 CONFLICT; 416 RANGE; 429 RATE; else HTTP.
 * body may be NULL. Returns -1. */
int http_status_to_err(long status, const char *body, size_t len, struct err *err);

/* Counters since http_new. */
struct http_stats {
	uint64_t requests;              /* attempts sent */
	uint64_t retries;               /* attempts that were retries */
	uint64_t bytes_up;
	uint64_t bytes_down;
	uint64_t token_refreshes;       /* 401-triggered invalidations */
};
void http_get_stats(struct http *h, struct http_stats *out);

/* Retry-After value -> delay in ms: delta-seconds ("120") or an HTTP date
 * (RFC 7231; a date in the past gives 0), now being the current time.
 * Returns -1 when malformed. Pure. */
long http_parse_retry_after(const char *value, time_t now);

/* Copy url into out (NUL-terminated, cut at outsz) with the values of
 * sensitive query parameters (access_token, upload_id, key, code, token,
 * signatures...) masked, as every log line and error message of this
 * module shows URLs. Pure. */
void http_redact_url(const char *url, char *out, size_t outsz);

#endif
