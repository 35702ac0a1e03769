/* durafs-emulator internals: the contract between the HTTP core (emu_core.c:
 * libmicrohttpd server, routing, auth check, faults, stats, control API) and
 * the services it serves (GCS, OAuth, metadata, later Drive). */
#ifndef DURAFS_EMU_H
#define DURAFS_EMU_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

struct emu;
struct emu_conn;  /* core-private per-request state */

/* One request, fully received before a service sees it. */
struct emu_req {
	const char *method;       /* "GET", "POST", ... */
	const char *path;         /* raw path, still percent-encoded, no query */
	const char *body;         /* whole request body (NUL-terminated copy) */
	size_t body_len;
	int truncated;            /* 1: the connection was cut by a "cut" fault
				   * after body_len bytes; the reply is discarded
				   * and the connection closed. A service may
				   * persist what arrived, as Google does. */
	const char *bearer;       /* token from Authorization, or NULL */
	struct emu_conn *conn;    /* for emu_req_header / emu_req_query */
	/* Added fields (set by the core; NULL/"" when a request is built by
	 * hand, e.g. in a unit test): */
	const char *query;        /* raw query string after '?', "" when none */
	const char *service;      /* name of the service the core routed to */
};

/* A reply. The core initialises *resp (status 0, fd -1, everything else
 * NULL/0) before calling a service: fill fields, never memset it. The core
 * frees body with free() (or calls body_free) after sending, also when the
 * reply is discarded; set headers only with emu_resp_header. */
#define EMU_MAX_HEADERS 16
struct emu_resp {
	int status;
	char *body;               /* malloc'd, or owned via body_free */
	size_t body_len;
	void (*body_free)(void *ud);  /* if set, called with body_ud instead of free(body) */
	void *body_ud;
	int fd;                   /* >= 0: send len bytes of fd at off (core closes fd) */
	off_t off;
	uint64_t len;
	const char *content_type; /* static string; default application/json */
	const char *kind;         /* static label for stats, e.g. "gcs.objects.list" */
	char *hname[EMU_MAX_HEADERS];
	char *hvalue[EMU_MAX_HEADERS];
	int nheaders;
};

/* Request accessors. Header lookup is case-insensitive; query values are
 * percent-decoded (and '+' is a space); NULL when absent. */
const char *emu_req_header(const struct emu_req *req, const char *name);
const char *emu_req_query(const struct emu_req *req, const char *name);

/* Percent-decode n bytes of in into a new NUL-terminated string (caller
 * frees); NULL on a malformed escape, a decoded NUL (%00) or no memory.
 * '+' is kept as '+'. */
char *emu_pct_decode(const char *in, size_t n);

/* Reply helpers. emu_resp_json steals the reference to j. */
void emu_resp_json(struct emu_resp *r, int status, json_t *j);
void emu_resp_text(struct emu_resp *r, int status, const char *ctype,
		   const char *body, size_t len);
/* Google-shaped error:
 * {"error":{"code":S,"message":M,"errors":[{"reason":R,"message":M,"domain":"global"}]}} */
void emu_resp_error(struct emu_resp *r, int status, const char *reason,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void emu_resp_header(struct emu_resp *r, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A resumable upload's "resume incomplete" reply: 308 with Range:
 * bytes=0-(persisted-1) (no Range when nothing is persisted), or, when
 * no308 (the request's X-GUploader-No-308 value, may be NULL) is "yes", a
 * 200 with X-HTTP-Status-Code-Override: 308 (what Go clients ask for). */
void emu_resp_incomplete(struct emu_resp *r, const char *no308, uint64_t persisted);

/* The server's base URL, "http://127.0.0.1:PORT" (for session URIs). */
const char *emu_base_url(const struct emu *e);
/* --data-dir, or NULL when state lives in memory only. */
const char *emu_data_dir(const struct emu *e);

/* Counters shown by GET /_emulator/stats under "counters". Thread-safe. */
void emu_stat_add(struct emu *e, const char *name, int64_t n);

/* Faults a service applies itself (the core applies status, latency and cut
 * faults before dispatch). Each returns 1 and consumes one use when a rule of
 * that kind matches req (method + path glob), else 0. */
int emu_fault_short308(struct emu *e, const struct emu_req *req, uint64_t *persist_less);
int emu_fault_page_cap(struct emu *e, const struct emu_req *req, long *max_items);
int emu_fault_expire_session(struct emu *e, const struct emu_req *req);

/* Token check used by the core for API paths unless --no-auth: 1 when the
 * bearer token was issued by this emulator and has not expired. */
int emu_oauth_token_valid(struct emu *e, const char *bearer);

/* A service: prefix-routed by the core. handle fills resp and returns 0;
 * it returns -1 only for "not mine" (the core answers 404). Called from many
 * threads at once: services lock their own state. */
struct emu_service {
	const char *name;                     /* "gcs", "oauth", "metadata" */
	const char *const *prefixes;          /* NULL-terminated path prefixes */
	int needs_auth;                       /* 1: core enforces bearer tokens */
	int (*init)(struct emu *e, void **state);
	int (*handle)(struct emu *e, void *state, const struct emu_req *req,
		      struct emu_resp *resp);
	/* POST /_emulator/<name>/...: service control calls (tests use them). */
	int (*control)(struct emu *e, void *state, const char *subpath,
		       const struct emu_req *req, struct emu_resp *resp);
	void (*reset)(struct emu *e, void *state);    /* POST /_emulator/reset */
	void (*fini)(struct emu *e, void *state);
};

extern const struct emu_service emu_gcs_service;
extern const struct emu_service emu_oauth_service;
extern const struct emu_service emu_metadata_service;
extern const struct emu_service emu_drive_service;

/* --- Additions to the contract (core) ---------------------------------- */

/* Decoded key/value pairs of a query string or an
 * application/x-www-form-urlencoded body. */
struct emu_kv {
	char *key;
	char *value;
};
/* Parse n bytes of "a=1&b=x+y%21" ('+' is a space, %XX decoded; a key
 * without '=' gets ""; empty pairs skipped) into a new array (*out, free
 * with emu_kv_free). Returns 0, or -1 on a malformed escape, a decoded NUL,
 * more than 100000 pairs or no memory. Pure, thread-safe. */
int emu_form_parse(const char *s, size_t n, struct emu_kv **out, size_t *count);
void emu_kv_free(struct emu_kv *kv, size_t count);
/* First value for key, or NULL. */
const char *emu_kv_get(const struct emu_kv *kv, size_t count, const char *key);

/* Take ownership of the request body (malloc'd, NUL-terminated, body_len
 * bytes + NUL): the caller frees it with free(); the core no longer does.
 * req->body stays pointing at it until the caller frees it. Returns a
 * fresh empty string for an empty body, NULL when already taken or out of
 * memory. Avoids copying large upload bodies. */
char *emu_req_take_body(const struct emu_req *req);

/* The state pointer a service's init returned, by service name; NULL when
 * no such service or it is not initialised. */
void *emu_service_state(struct emu *e, const char *name);

/* 1 when --verbose was given. */
int emu_verbose(const struct emu *e);

/* Write one line to the emulator's log (stderr), prefixed with
 * "durafs-emulator: ". Thread-safe (one write per line). Never pass
 * secrets. */
void emu_log(const struct emu *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Issue an access token as the OAuth service does (implemented in
 * emu_oauth.c): account and scopes (space-separated) are recorded with the
 * token; lifetime <= 0 uses the configured token lifetime. Returns a
 * malloc'd token ("ya29.emu-...") and *expires_in, or NULL when the OAuth
 * service is not running or memory ran out. Thread-safe. */
char *emu_oauth_issue(struct emu *e, const char *account, const char *scopes,
		      long lifetime, long *expires_in);

/* --- Server lifecycle (emu_main.c) --------------------------------------- */

struct emu_opts {
	const char *listen;       /* "127.0.0.1:0", "[::1]:8080", "0.0.0.0:9000" */
	const char *data_dir;     /* NULL: in memory */
	const char *faults;       /* JSON (rules array or control body), or NULL */
	int no_auth;
	int verbose;
	int threads;              /* 0: a thread per connection; N: epoll pool */
	uint64_t seed;            /* fault PRNG seed */
	uint64_t max_body;        /* request body cap; 0: default (2 GiB) */
};

/* Create the emulator: bind the listening socket, initialise every
 * service (loading --data-dir state) and install --faults. Returns NULL
 * with a message in err on failure. Nothing is served until emu_start. */
struct emu *emu_new(const struct emu_opts *o, char *err, size_t errsz);
/* Start serving (threads begin accepting). 0 or -1 with err. */
int emu_start(struct emu *e, char *err, size_t errsz);
/* Stop serving, call every service's fini (state saved), free
 * everything. e may be NULL. Not thread-safe with anything else. */
void emu_free(struct emu *e);

#endif
