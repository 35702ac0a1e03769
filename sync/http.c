/* The HTTP layer (include/durafs/http.h): libcurl easy handles kept in a
 * pool and sharing DNS and TLS sessions, the single retry policy (backoff,
 * jitter, Retry-After, 401 refresh), Google error parsing and counters. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "durafs/http.h"
#include "durafs/log.h"

#ifndef DURAFS_VERSION
#define DURAFS_VERSION "0"
#endif

#define HTTP_TAG "http"
#define HTTP_DOWN_BUFFER (1L << 20)     /* CURLOPT_BUFFERSIZE */
#define HTTP_UP_BUFFER (2L << 20)       /* CURLOPT_UPLOAD_BUFFERSIZE (max) */
#define HTTP_ERR_BODY_MAX ((size_t)1 << 20)
#define HTTP_DEFAULT_MAX_BODY ((size_t)64 << 20)
#define HTTP_TOKEN_MAX 8192
#define HTTP_EXCERPT_MAX 200

struct http {
	struct http_opts opts;          /* copy; user_agent points to ua */
	char *ua;
	CURLSH *share;
	/* One mutex per curl_lock_data kind, taken by the share callbacks. */
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	int nshare_locks;               /* how many were initialised */
	pthread_mutex_t pool_lock;
	CURL **pool;                    /* idle handles; protected by pool_lock */
	size_t npool;                   /* protected by pool_lock */
	int pool_lock_ok;
	pthread_mutex_t stats_lock;
	struct http_stats stats;        /* protected by stats_lock */
	uint64_t rng;                   /* jitter PRNG; protected by stats_lock */
	int stats_lock_ok;
	/* http_cancel_all: backoff waits sleep on cancel_cv; the count is
	 * changed under cancel_lock and read without it by the transfers. */
	pthread_mutex_t cancel_lock;
	pthread_cond_t cancel_cv;       /* CLOCK_MONOTONIC */
	int cancel_ok;                  /* cancel_lock and cancel_cv exist */
	atomic_int canceled;            /* > 0: cancel_all calls not undone */
};

/* State of one attempt, shared with the curl callbacks. */
struct http_xfer {
	struct http *h;
	const struct http_req *req;
	struct http_resp *resp;
	CURL *curl;
	uint64_t up_pos;                /* next body byte to send */
	int read_failed;                /* body fd read failed or fell short */
	int read_errno;
	size_t body_cap;                /* allocated size of resp->body */
	size_t body_limit;              /* 0 until the first body byte */
	int body_is_2xx;
	int too_big;
	int sink_abort;
	int progress_abort;
	int cancel_abort;               /* http_cancel_all stopped it */
	int nomem;
	int sends;                      /* requests libcurl started (prereq) */
	int resend_refused;             /* libcurl wanted to resend a NONE req */
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc = CURLE_FAILED_INIT;

static void http_global_init(void)
{
	http_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- share locks --------------------------------------------------------- */

static void http_share_lock(CURL *c, curl_lock_data data,
			    curl_lock_access access, void *ud)
{
	struct http *h = ud;

	(void)c;
	(void)access;
	if ((int)data >= 0 && (int)data < h->nshare_locks)
		pthread_mutex_lock(&h->share_locks[data]);
}

static void http_share_unlock(CURL *c, curl_lock_data data, void *ud)
{
	struct http *h = ud;

	(void)c;
	if ((int)data >= 0 && (int)data < h->nshare_locks)
		pthread_mutex_unlock(&h->share_locks[data]);
}

/* --- client -------------------------------------------------------------- */

int http_new(const struct http_opts *opts, struct http **out, struct err *err)
{
	static const struct http_opts defaults;
	struct http *h = NULL;
	int rc = -1, i;

	*out = NULL;
	pthread_once(&http_once, http_global_init);
	if (http_global_rc != CURLE_OK) {
		err_set(err, ERR_NET, "libcurl initialisation failed: %s",
			curl_easy_strerror(http_global_rc));
		goto out;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		err_set(err, ERR_NOMEM, "http client: out of memory");
		goto out;
	}
	h->opts = opts ? *opts : defaults;
	if (h->opts.connect_timeout_ms <= 0)
		h->opts.connect_timeout_ms = 10000;
	if (h->opts.low_speed_limit <= 0)
		h->opts.low_speed_limit = 1;
	if (h->opts.low_speed_time_s <= 0)
		h->opts.low_speed_time_s = 60;
	if (h->opts.max_retries < 0)
		h->opts.max_retries = 0;
	else if (h->opts.max_retries == 0)
		h->opts.max_retries = 8;
	if (h->opts.backoff_initial_ms <= 0)
		h->opts.backoff_initial_ms = 1000;
	if (h->opts.backoff_max_ms <= 0)
		h->opts.backoff_max_ms = 32000;
	else if (h->opts.backoff_max_ms > 3600000)
		h->opts.backoff_max_ms = 3600000;
	if (h->opts.backoff_jitter_ms == 0)
		h->opts.backoff_jitter_ms = 1000;
	else if (h->opts.backoff_jitter_ms < 0)
		h->opts.backoff_jitter_ms = 0;
	if (h->opts.pool_max <= 0)
		h->opts.pool_max = 64;
	h->ua = strdup(h->opts.user_agent ? h->opts.user_agent
					  : "durafs/" DURAFS_VERSION);
	h->pool = calloc((size_t)h->opts.pool_max, sizeof(*h->pool));
	if (!h->ua || !h->pool) {
		err_set(err, ERR_NOMEM, "http client: out of memory");
		goto out;
	}
	h->opts.user_agent = h->ua;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++) {
		if (pthread_mutex_init(&h->share_locks[i], NULL)) {
			err_set(err, ERR_NOMEM, "http client: mutex");
			goto out;
		}
		h->nshare_locks++;
	}
	if (pthread_mutex_init(&h->pool_lock, NULL)) {
		err_set(err, ERR_NOMEM, "http client: mutex");
		goto out;
	}
	h->pool_lock_ok = 1;
	if (pthread_mutex_init(&h->stats_lock, NULL)) {
		err_set(err, ERR_NOMEM, "http client: mutex");
		goto out;
	}
	h->stats_lock_ok = 1;
	{
		pthread_condattr_t ca;

		if (pthread_condattr_init(&ca)) {
			err_set(err, ERR_NOMEM, "http client: condition variable");
			goto out;
		}
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		if (pthread_mutex_init(&h->cancel_lock, NULL)) {
			pthread_condattr_destroy(&ca);
			err_set(err, ERR_NOMEM, "http client: mutex");
			goto out;
		}
		if (pthread_cond_init(&h->cancel_cv, &ca)) {
			pthread_condattr_destroy(&ca);
			pthread_mutex_destroy(&h->cancel_lock);
			err_set(err, ERR_NOMEM, "http client: condition variable");
			goto out;
		}
		pthread_condattr_destroy(&ca);
		h->cancel_ok = 1;
	}
	atomic_init(&h->canceled, 0);
	h->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
		 (uint64_t)(uintptr_t)h;
	if (!h->rng)
		h->rng = 0x9e3779b97f4a7c15ULL;
	h->share = curl_share_init();
	if (!h->share) {
		err_set(err, ERR_NOMEM, "http client: curl_share_init failed");
		goto out;
	}
	if (curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, http_share_lock) ||
	    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, http_share_unlock) ||
	    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)) {
		err_set(err, ERR_NET, "http client: curl share setup failed");
		goto out;
	}
	/* Public suffix list sharing is optional (libcurl built without PSL). */
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_PSL);
	*out = h;
	h = NULL;
	rc = 0;
out:
	http_free(h);
	return rc;
}

void http_free(struct http *h)
{
	size_t i;
	int j;

	if (!h)
		return;
	for (i = 0; i < h->npool; i++)
		curl_easy_cleanup(h->pool[i]);
	if (h->share)
		curl_share_cleanup(h->share);
	for (j = 0; j < h->nshare_locks; j++)
		pthread_mutex_destroy(&h->share_locks[j]);
	if (h->pool_lock_ok)
		pthread_mutex_destroy(&h->pool_lock);
	if (h->stats_lock_ok)
		pthread_mutex_destroy(&h->stats_lock);
	if (h->cancel_ok) {
		pthread_cond_destroy(&h->cancel_cv);
		pthread_mutex_destroy(&h->cancel_lock);
	}
	free(h->pool);
	free(h->ua);
	free(h);
}

/* An idle handle (most recently used first), or a new one attached to the
 * share. NULL when out of memory. */
static CURL *http_take(struct http *h)
{
	CURL *c = NULL;

	pthread_mutex_lock(&h->pool_lock);
	if (h->npool > 0)
		c = h->pool[--h->npool];
	pthread_mutex_unlock(&h->pool_lock);
	if (c)
		return c;
	c = curl_easy_init();
	if (c && curl_easy_setopt(c, CURLOPT_SHARE, h->share) != CURLE_OK) {
		curl_easy_cleanup(c);
		c = NULL;
	}
	return c;
}

/* Forget the request's options (no dangling pointers) and keep the handle,
 * with its open connections, for the next request. */
static void http_give(struct http *h, CURL *c)
{
	if (!c)
		return;
	curl_easy_reset(c);
	pthread_mutex_lock(&h->pool_lock);
	if (h->npool < (size_t)h->opts.pool_max) {
		h->pool[h->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->pool_lock);
	if (c)
		curl_easy_cleanup(c);
}

/* --- cancellation --------------------------------------------------------- */

void http_cancel_all(struct http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->cancel_lock);
	atomic_fetch_add(&h->canceled, 1);
	pthread_cond_broadcast(&h->cancel_cv);
	pthread_mutex_unlock(&h->cancel_lock);
}

void http_uncancel(struct http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->cancel_lock);
	if (atomic_load(&h->canceled) > 0)
		atomic_fetch_sub(&h->canceled, 1);
	pthread_mutex_unlock(&h->cancel_lock);
}

int http_canceled(struct http *h)
{
	return h && atomic_load(&h->canceled) > 0;
}

int http_pause(struct http *h, long ms, struct err *err)
{
	struct timespec ts;
	int rc = 0;

	if (!h)
		return err_set(err, ERR_INVAL, "http: no client");
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ms > 0) {
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&h->cancel_lock);
	for (;;) {
		if (atomic_load(&h->canceled) > 0) {
			rc = -1;
			break;
		}
		if (ms <= 0 ||
		    pthread_cond_timedwait(&h->cancel_cv, &h->cancel_lock, &ts) == ETIMEDOUT)
			break;
	}
	/* A cancel that raced with the timeout still wins. */
	if (rc == 0 && ms > 0 && atomic_load(&h->canceled) > 0)
		rc = -1;
	pthread_mutex_unlock(&h->cancel_lock);
	if (rc < 0)
		err_set(err, ERR_CANCELED, "canceled: the HTTP client is shutting down");
	return rc;
}

void http_get_stats(struct http *h, struct http_stats *out)
{
	pthread_mutex_lock(&h->stats_lock);
	*out = h->stats;
	pthread_mutex_unlock(&h->stats_lock);
}

/* Uniform in [0, n]. */
static long http_rand(struct http *h, long n)
{
	uint64_t x;

	if (n <= 0)
		return 0;
	pthread_mutex_lock(&h->stats_lock);
	x = h->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	h->rng = x;
	pthread_mutex_unlock(&h->stats_lock);
	return (long)((x * 0x2545f4914f6cdd1dULL) % ((uint64_t)n + 1));
}

/* --- responses ----------------------------------------------------------- */

static void http_headers_clear(struct http_resp *resp)
{
	size_t i;

	for (i = 0; i < resp->nheaders; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	resp->headers = NULL;
	resp->nheaders = 0;
}

void http_resp_release(struct http_resp *resp)
{
	if (!resp)
		return;
	http_headers_clear(resp);
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

const char *http_resp_header(const struct http_resp *resp, const char *name,
			     size_t idx)
{
	size_t i;

	if (!resp || !name)
		return NULL;
	for (i = 0; i < resp->nheaders; i++) {
		if (strcasecmp(resp->headers[i].name, name) != 0)
			continue;
		if (idx == 0)
			return resp->headers[i].value;
		idx--;
	}
	return NULL;
}

/* A new status line starts a new reply (100 Continue, then the real one):
 * forget the headers and body collected so far. */
static void http_xfer_new_reply(struct http_xfer *x)
{
	http_headers_clear(x->resp);
	x->resp->body_len = 0;
	if (x->resp->body)
		x->resp->body[0] = '\0';
	x->body_limit = 0;
}

static size_t http_header_cb(char *data, size_t size, size_t n, void *ud)
{
	struct http_xfer *x = ud;
	struct http_resp *resp = x->resp;
	struct http_header *nh;
	size_t len = size * n, nlen, vstart, vend;
	const char *colon;
	char *name = NULL, *value = NULL;

	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		const char *sp = memchr(data, ' ', len);

		http_xfer_new_reply(x);
		resp->status = 0;
		if (sp && (size_t)(sp - data) + 4 <= len &&
		    isdigit((unsigned char)sp[1]) && isdigit((unsigned char)sp[2]) &&
		    isdigit((unsigned char)sp[3]))
			resp->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 +
				       (sp[3] - '0');
		return size * n;
	}
	colon = memchr(data, ':', len);
	if (!colon || colon == data)
		return size * n;  /* blank line, or not a header */
	nlen = (size_t)(colon - data);
	vstart = nlen + 1;
	while (vstart < len && (data[vstart] == ' ' || data[vstart] == '\t'))
		vstart++;
	vend = len;
	while (vend > vstart && (data[vend - 1] == ' ' || data[vend - 1] == '\t'))
		vend--;
	name = strndup(data, nlen);
	value = strndup(data + vstart, vend - vstart);
	nh = realloc(resp->headers, (resp->nheaders + 1) * sizeof(*nh));
	if (!name || !value || !nh) {
		if (nh)
			resp->headers = nh;
		free(name);
		free(value);
		x->nomem = 1;
		return 0;  /* aborts the transfer */
	}
	resp->headers = nh;
	nh[resp->nheaders].name = name;
	nh[resp->nheaders].value = value;
	resp->nheaders++;
	return size * n;
}

/* Append to resp->body (NUL-terminated) within body_limit. */
static int http_collect(struct http_xfer *x, const char *data, size_t len)
{
	struct http_resp *resp = x->resp;
	size_t want, cap;
	char *nb;

	if (resp->body_len + len > x->body_limit) {
		if (x->body_is_2xx) {
			x->too_big = 1;
			return -1;
		}
		len = x->body_limit - resp->body_len;  /* error bodies: cut */
		if (len == 0)
			return 0;
	}
	want = resp->body_len + len + 1;
	if (want > x->body_cap) {
		curl_off_t cl = -1;

		cap = x->body_cap ? x->body_cap : 16384;
		if (!x->body_cap &&
		    curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
				      &cl) == CURLE_OK &&
		    cl > 0 && (uint64_t)cl < x->body_limit)
			cap = (size_t)cl + 1;
		while (cap < want)
			cap *= 2;
		nb = realloc(resp->body, cap);
		if (!nb) {
			x->nomem = 1;
			return -1;
		}
		resp->body = nb;
		x->body_cap = cap;
	}
	memcpy(resp->body + resp->body_len, data, len);
	resp->body_len += len;
	resp->body[resp->body_len] = '\0';
	return 0;
}

static size_t http_write_cb(char *data, size_t size, size_t n, void *ud)
{
	struct http_xfer *x = ud;
	const struct http_req *req = x->req;
	size_t len = size * n;

	if (x->body_limit == 0) {
		size_t max = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;

		x->body_is_2xx = x->resp->status >= 200 && x->resp->status < 300;
		x->body_limit = x->body_is_2xx ? max
			      : (max < HTTP_ERR_BODY_MAX ? max : HTTP_ERR_BODY_MAX);
	}
	if (x->body_is_2xx && req->sink) {
		if (req->sink(req->sink_ud, data, len) != 0) {
			x->sink_abort = 1;
			return 0;
		}
		x->resp->sink_bytes += len;
		return len;
	}
	return http_collect(x, data, len) ? 0 : len;
}

/* --- request bodies ------------------------------------------------------ */

static size_t http_read_cb(char *buf, size_t size, size_t n, void *ud)
{
	struct http_xfer *x = ud;
	const struct http_req *req = x->req;
	size_t want = size * n;
	uint64_t left = req->body_len - x->up_pos;
	ssize_t got;

	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (req->body_fd < 0) {
		memcpy(buf, (const char *)req->body + x->up_pos, want);
		x->up_pos += want;
		return want;
	}
	do {
		got = pread(req->body_fd, buf, want,
			    req->body_off + (off_t)x->up_pos);
	} while (got < 0 && errno == EINTR);
	if (got <= 0) {
		/* 0: the file is shorter than body_len says. */
		x->read_failed = 1;
		x->read_errno = got < 0 ? errno : 0;
		return CURL_READFUNC_ABORT;
	}
	x->up_pos += (uint64_t)got;  /* short reads: curl asks again */
	return (size_t)got;
}

static int http_seek_cb(void *ud, curl_off_t offset, int origin)
{
	struct http_xfer *x = ud;

	/* A rewind means libcurl is about to send the body again (its own
	 * resend on a dead reused connection): never for a NONE request. */
	if (x->req->retry != HTTP_RETRY_SAFE && (uint64_t)offset != x->up_pos) {
		x->resend_refused = 1;
		return CURL_SEEKFUNC_FAIL;
	}
	if (origin != SEEK_SET || offset < 0 ||
	    (uint64_t)offset > (uint64_t)x->req->body_len)
		return CURL_SEEKFUNC_FAIL;
	x->up_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Called before every request libcurl sends in this transfer: more than
 * one means it resends on its own (a reused connection found dead). */
static int http_prereq_cb(void *ud, char *ip, char *lip, int port, int lport)
{
	struct http_xfer *x = ud;

	(void)ip;
	(void)lip;
	(void)port;
	(void)lport;
	x->sends++;
	if (x->sends > 1 && x->req->retry != HTTP_RETRY_SAFE) {
		x->resend_refused = 1;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static int http_xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow,
			    curl_off_t ultotal, curl_off_t ulnow)
{
	struct http_xfer *x = ud;

	(void)dltotal;
	(void)ultotal;
	if (atomic_load(&x->h->canceled) > 0) {
		x->cancel_abort = 1;
		return 1;
	}
	if (x->req->progress &&
	    x->req->progress(x->req->progress_ud, (uint64_t)ulnow, (uint64_t)dlnow) != 0) {
		x->progress_abort = 1;
		return 1;
	}
	return 0;
}

/* --- redaction and parsing helpers --------------------------------------- */

static const char *const http_secret_params[] = {
	"access_token", "upload_id", "key", "code", "token", "id_token",
	"refresh_token", "client_secret", "assertion", "signature",
	"x-goog-signature", "sig", "code_verifier", "password",
};

static int http_param_secret(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(http_secret_params) / sizeof(http_secret_params[0]); i++)
		if (strlen(http_secret_params[i]) == n &&
		    strncasecmp(http_secret_params[i], name, n) == 0)
			return 1;
	return 0;
}

/* Bounded appender for http_redact_url. */
struct http_sb {
	char *buf;
	size_t size, len;
};

static void http_sb_add(struct http_sb *sb, const char *s, size_t n)
{
	size_t room;

	if (sb->size == 0)
		return;
	room = sb->size - 1 - sb->len;
	if (n > room)
		n = room;
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void http_redact_url(const char *url, char *out, size_t outsz)
{
	struct http_sb sb = { out, outsz, 0 };
	const char *q, *p, *at, *scheme, *hostend, *colon, *amp, *eq, *frag;

	if (!out || outsz == 0)
		return;
	out[0] = '\0';
	if (!url)
		return;
	frag = strchr(url, '#');
	q = strchr(url, '?');
	if (frag && (!q || frag < q))
		q = NULL;
	/* user:password@ in the authority. "://" counts only right after a
	 * scheme name at the start: one inside a path or query (say
	 * "?next=https://u:p@h") is not where the authority is, and taking it
	 * would move p past q. */
	scheme = strstr(url, "://");
	if (scheme && (scheme == url || (size_t)(scheme - url) !=
		       strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			      "0123456789+-.")))
		scheme = NULL;
	p = url;
	if (scheme) {
		const char *auth = scheme + 3;

		hostend = auth + strcspn(auth, "/?#");
		at = memchr(auth, '@', (size_t)(hostend - auth));
		if (at) {
			colon = memchr(auth, ':', (size_t)(at - auth));
			http_sb_add(&sb, url, (size_t)((colon ? colon : at) - url));
			http_sb_add(&sb, colon ? ":***@" : "@", colon ? 5 : 1);
			p = at + 1;
		}
	}
	if (!q) {
		http_sb_add(&sb, p, strlen(p));
		goto out;
	}
	http_sb_add(&sb, p, (size_t)(q + 1 - p));
	p = q + 1;
	while (*p && *p != '#') {
		size_t plen = strcspn(p, "&#");

		amp = p + plen;
		eq = memchr(p, '=', plen);
		if (eq && http_param_secret(p, (size_t)(eq - p))) {
			http_sb_add(&sb, p, (size_t)(eq + 1 - p));
			http_sb_add(&sb, "***", 3);
		} else {
			http_sb_add(&sb, p, plen);
		}
		p = amp;
		if (*p == '&') {
			http_sb_add(&sb, "&", 1);
			p++;
		}
	}
	http_sb_add(&sb, p, strlen(p));
out:
	log_redact(out);
}

long http_parse_retry_after(const char *value, time_t now)
{
	const char *s = value;
	size_t n;
	time_t t;
	long secs = 0;

	if (!s)
		return -1;
	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0)
		return -1;
	if (isdigit((unsigned char)s[0])) {
		size_t i;

		for (i = 0; i < n; i++) {
			if (!isdigit((unsigned char)s[i]))
				return -1;
			if (secs < 100000000L)
				secs = secs * 10 + (s[i] - '0');
		}
		return secs * 1000L;
	}
	/* An HTTP date: three formats, all of which curl_getdate accepts; make
	 * sure it looks like one (a weekday name, a comma or a space). */
	if (!isalpha((unsigned char)s[0]) || n < 20)
		return -1;
	t = curl_getdate(s, NULL);
	if (t == (time_t)-1)
		return -1;
	if (t <= now)
		return 0;
	if (t - now > 100000000L)
		return 100000000L * 1000L;
	return (long)(t - now) * 1000L;
}

/* Printable excerpt of a non-JSON body: ASCII 0x20-0x7e, whitespace and
 * control runs folded to one space, at most HTTP_EXCERPT_MAX bytes. */
static void http_excerpt(const char *body, size_t len, char *out, size_t outsz)
{
	size_t i, o = 0, max = outsz - 1;
	int space = 1;

	if (max > HTTP_EXCERPT_MAX)
		max = HTTP_EXCERPT_MAX;
	for (i = 0; i < len && o < max; i++) {
		unsigned char c = (unsigned char)body[i];

		if (c > 0x20 && c < 0x7f) {
			out[o++] = (char)c;
			space = 0;
		} else if (!space) {
			out[o++] = ' ';
			space = 1;
		}
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	log_redact(out);
}

/* Copy a remote string for err->reason / messages: printable ASCII only. */
static void http_clean_copy(char *dst, size_t dstsz, const char *src)
{
	size_t o = 0;

	for (; src && *src && o + 1 < dstsz; src++) {
		unsigned char c = (unsigned char)*src;
		dst[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
	}
	dst[o] = '\0';
}

static int http_reason_in(const char *reason, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(reason, list[i]) == 0)
			return 1;
	return 0;
}

#define HTTP_IN(r, l) http_reason_in((r), (l), sizeof(l) / sizeof((l)[0]))

static const char *const http_rate_reasons[] = {
	"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED",
};
static const char *const http_quota_reasons[] = {
	"quotaExceeded", "dailyLimitExceeded", "dailyLimitExceededUnreg",
	"downloadQuotaExceeded", "sharingRateLimitExceeded", "RESOURCE_EXHAUSTED",
};
static const char *const http_nospc_reasons[] = {
	"storageQuotaExceeded",
};
static const char *const http_auth_reasons[] = {
	"authError", "invalidCredentials", "unauthorized", "insufficientScopes",
	"insufficientAuthenticatedScopes", "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
	"UNAUTHENTICATED",
};
static const char *const http_grant_reasons[] = {
	"invalid_grant", "invalid_client", "unauthorized_client", "access_denied",
};

/* Pull reason and message out of a Google or OAuth error JSON. Returns 1
 * when the body was such a JSON object. */
static int http_parse_error(const char *body, size_t len, char *reason,
			    size_t rsz, char *msg, size_t msz)
{
	json_t *root = NULL, *e, *v, *arr;
	size_t i;
	int found = 0;

	reason[0] = msg[0] = '\0';
	if (!body || len == 0)
		return 0;
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_object(root))
		goto out;
	e = json_object_get(root, "error");
	if (json_is_object(e)) {
		found = 1;
		http_clean_copy(msg, msz, json_string_value(json_object_get(e, "message")));
		arr = json_object_get(e, "errors");
		v = json_array_get(arr, 0);
		http_clean_copy(reason, rsz, json_string_value(json_object_get(v, "reason")));
		arr = json_object_get(e, "details");
		for (i = 0; !reason[0] && i < json_array_size(arr); i++)
			http_clean_copy(reason, rsz, json_string_value(
				json_object_get(json_array_get(arr, i), "reason")));
		if (!reason[0])
			http_clean_copy(reason, rsz,
					json_string_value(json_object_get(e, "status")));
	} else if (json_is_string(e)) {
		found = 1;
		http_clean_copy(reason, rsz, json_string_value(e));
		http_clean_copy(msg, msz, json_string_value(
			json_object_get(root, "error_description")));
	}
out:
	json_decref(root);
	return found;
}

int http_status_to_err(long status, const char *body, size_t len,
		       struct err *err)
{
	char reason[64], msg[300], excerpt[HTTP_EXCERPT_MAX + 1];
	const char *text;
	int code;

	excerpt[0] = '\0';
	if (!http_parse_error(body, len, reason, sizeof(reason), msg, sizeof(msg)) &&
	    body && len > 0)
		http_excerpt(body, len, excerpt, sizeof(excerpt));
	switch (status) {
	case 400:
		code = HTTP_IN(reason, http_grant_reasons) ? ERR_AUTH : ERR_INVAL;
		break;
	case 401:
		code = ERR_AUTH;
		break;
	case 403:
		if (HTTP_IN(reason, http_rate_reasons))
			code = ERR_RATE;
		else if (HTTP_IN(reason, http_quota_reasons))
			code = ERR_QUOTA;
		else if (HTTP_IN(reason, http_nospc_reasons))
			code = ERR_NOSPC;
		else if (HTTP_IN(reason, http_auth_reasons))
			code = ERR_AUTH;
		else
			code = ERR_PERM;
		break;
	case 404: code = ERR_NOTFOUND; break;
	case 409: code = ERR_EXISTS; break;
	case 410: code = ERR_GONE; break;
	case 412: code = ERR_CONFLICT; break;
	case 416: code = ERR_RANGE; break;
	case 429: code = ERR_RATE; break;
	default: code = ERR_HTTP; break;
	}
	text = msg[0] ? msg : excerpt[0] ? excerpt : "(no details)";
	err_set(err, code, "HTTP %ld%s%s: %s", status, reason[0] ? " " : "",
		reason, text);
	if (err) {
		err->http_status = status;
		snprintf(err->reason, sizeof(err->reason), "%s", reason);
		log_redact(err->msg);
		log_redact(err->reason);
	}
	return -1;
}

/* --- one attempt --------------------------------------------------------- */

static int http_has_header(const struct http_req *req, const char *name)
{
	size_t n = strlen(name);
	const char *const *hp;

	for (hp = req->headers; hp && *hp; hp++)
		if (strncasecmp(*hp, name, n) == 0 && (*hp)[n] == ':')
			return 1;
	return 0;
}

/* Wipe and free a header list (it may hold a token). */
static void http_slist_free(struct curl_slist *l)
{
	struct curl_slist *p;

	for (p = l; p; p = p->next)
		if (p->data)
			explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

static int http_add_header(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = curl_slist_append(*l, line);

	if (!n)
		return -1;
	*l = n;
	return 0;
}

static int http_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP3:
		return 1;
	default:
		return 0;
	}
}

enum http_outcome {
	HTTP_OK,        /* 2xx/3xx */
	HTTP_FINAL,     /* failed, not retryable */
	HTTP_RETRY,     /* failed, retryable per policy */
	HTTP_REAUTH,    /* 401: refresh the token and try again */
};

static int http_is_body_method(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
	       strcmp(m, "PATCH") == 0;
}

/* Configure c for one attempt of req. Returns 0 or -1 (out of memory /
 * unsupported option). */
static int http_setup(struct http *h, CURL *c, const struct http_req *req,
		      const char *method, struct curl_slist *hdrs,
		      struct http_xfer *x, char *errbuf)
{
	long cto = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
					       : h->opts.connect_timeout_ms;
	CURLcode rc = CURLE_OK;

#define HTTP_SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
	HTTP_SET(CURLOPT_URL, req->url);
	HTTP_SET(CURLOPT_NOSIGNAL, 1L);
	HTTP_SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	HTTP_SET(CURLOPT_TCP_KEEPALIVE, 1L);
	HTTP_SET(CURLOPT_TCP_KEEPIDLE, 60L);
	HTTP_SET(CURLOPT_TCP_KEEPINTVL, 30L);
	HTTP_SET(CURLOPT_SSL_VERIFYPEER, 1L);
	HTTP_SET(CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500
	HTTP_SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	HTTP_SET(CURLOPT_FOLLOWLOCATION, 0L);
	HTTP_SET(CURLOPT_PATH_AS_IS, 1L);
	HTTP_SET(CURLOPT_CONNECTTIMEOUT_MS, cto);
	HTTP_SET(CURLOPT_LOW_SPEED_LIMIT, h->opts.low_speed_limit);
	HTTP_SET(CURLOPT_LOW_SPEED_TIME, h->opts.low_speed_time_s);
	HTTP_SET(CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L);
	HTTP_SET(CURLOPT_USERAGENT, h->ua);
	HTTP_SET(CURLOPT_BUFFERSIZE, HTTP_DOWN_BUFFER);
	HTTP_SET(CURLOPT_HTTPHEADER, hdrs);
	HTTP_SET(CURLOPT_HEADERFUNCTION, http_header_cb);
	HTTP_SET(CURLOPT_HEADERDATA, x);
	HTTP_SET(CURLOPT_WRITEFUNCTION, http_write_cb);
	HTTP_SET(CURLOPT_WRITEDATA, x);
	HTTP_SET(CURLOPT_ERRORBUFFER, errbuf);
	HTTP_SET(CURLOPT_PREREQFUNCTION, http_prereq_cb);
	HTTP_SET(CURLOPT_PREREQDATA, x);
	/* Always on: it also notices http_cancel_all. */
	HTTP_SET(CURLOPT_NOPROGRESS, 0L);
	HTTP_SET(CURLOPT_XFERINFOFUNCTION, http_xferinfo_cb);
	HTTP_SET(CURLOPT_XFERINFODATA, x);
	if (strcmp(method, "HEAD") == 0) {
		HTTP_SET(CURLOPT_NOBODY, 1L);
	} else if (req->body_len > 0 || http_is_body_method(method)) {
		HTTP_SET(CURLOPT_UPLOAD, 1L);
		HTTP_SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
		HTTP_SET(CURLOPT_UPLOAD_BUFFERSIZE, HTTP_UP_BUFFER);
		HTTP_SET(CURLOPT_READFUNCTION, http_read_cb);
		HTTP_SET(CURLOPT_READDATA, x);
		HTTP_SET(CURLOPT_SEEKFUNCTION, http_seek_cb);
		HTTP_SET(CURLOPT_SEEKDATA, x);
		if (strcmp(method, "PUT") != 0)
			HTTP_SET(CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET") != 0) {
		HTTP_SET(CURLOPT_CUSTOMREQUEST, method);
	}
#undef HTTP_SET
	return rc == CURLE_OK ? 0 : -1;
}

static long http_ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (long)((t1.tv_sec - t0->tv_sec) * 1000L +
		      (t1.tv_nsec - t0->tv_nsec) / 1000000L);
}

/* One try of req on c. Fills resp and, when not HTTP_OK, *err; *retry_after
 * gets the server's Retry-After in ms or -1. */
static enum http_outcome http_attempt(struct http *h, CURL *c,
				      const struct http_req *req,
				      const char *method, const char *safe_url,
				      int invalidate, int *token_sent,
				      struct http_resp *resp, long *retry_after,
				      struct err *err)
{
	char errbuf[CURL_ERROR_SIZE], token[HTTP_TOKEN_MAX];
	char auth[HTTP_TOKEN_MAX + 32];
	struct http_xfer x;
	struct curl_slist *hdrs = NULL;
	const char *const *hp;
	curl_off_t up = 0, down = 0;
	struct timespec t0;
	enum http_outcome oc = HTTP_FINAL;
	CURLcode rc;
	struct err terr;
	const char *ra;
	int retry_ok = req->retry == HTTP_RETRY_SAFE;

	*retry_after = -1;
	*token_sent = 0;
	errbuf[0] = '\0';
	token[0] = '\0';
	auth[0] = '\0';
	memset(&x, 0, sizeof(x));
	x.h = h;
	x.req = req;
	x.resp = resp;
	x.curl = c;
	/* Each attempt starts from a clean reply (the body buffer is freed:
	 * its size is not tracked across attempts). */
	http_headers_clear(resp);
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = 0;

	if (h->opts.token && !req->no_auth) {
		err_clear(&terr);
		if (h->opts.token(h->opts.token_ud, invalidate, token, sizeof(token),
				  &terr) != 0) {
			if (err) {
				*err = terr;
				if (err->code == ERR_OK)
					err->code = ERR_AUTH;
				log_redact(err->msg);
				err_prefix(err, "%s %s: token", method, safe_url);
			}
			goto out;
		}
		token[sizeof(token) - 1] = '\0';
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		if (http_add_header(&hdrs, auth))
			goto nomem;
		*token_sent = 1;
	}
	for (hp = req->headers; hp && *hp; hp++)
		if (http_add_header(&hdrs, *hp))
			goto nomem;
	if (http_add_header(&hdrs, "Expect:"))
		goto nomem;
	if (strcmp(method, "POST") == 0 && !http_has_header(req, "Content-Type") &&
	    http_add_header(&hdrs, "Content-Type: application/x-www-form-urlencoded"))
		goto nomem;
	if (http_setup(h, c, req, method, hdrs, &x, errbuf)) {
		err_set(err, ERR_INVAL, "%s %s: libcurl refused an option", method,
			safe_url);
		goto out;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
	pthread_mutex_lock(&h->stats_lock);
	h->stats.requests += x.sends > 1 ? (uint64_t)x.sends : 1;
	h->stats.retries += x.sends > 1 ? (uint64_t)(x.sends - 1) : 0;
	h->stats.bytes_up += (uint64_t)(up > 0 ? up : 0);
	h->stats.bytes_down += (uint64_t)(down > 0 ? down : 0);
	pthread_mutex_unlock(&h->stats_lock);
	if (h->opts.debug)
		log_debug(HTTP_TAG, "%s %s -> %ld%s%s (%lld B up, %lld B down, %ld ms)",
			  method, safe_url, resp->status, rc ? " " : "",
			  rc ? curl_easy_strerror(rc) : "", (long long)up,
			  (long long)down, http_ms_since(&t0));

	if (x.sends > 1 && !x.resend_refused)
		log_debug(HTTP_TAG, "%s %s: the reused connection was dead, libcurl "
			  "resent the request on a new one", method, safe_url);
	if (x.nomem)
		goto nomem;
	if (x.resend_refused) {
		err_set(err, ERR_NET, "%s %s: connection lost before any reply; not "
			"resent (the request is not safe to retry)", method, safe_url);
		goto out;
	}
	if (x.read_failed) {
		if (x.read_errno) {
			errno = x.read_errno;
			err_sys(err, "%s %s: reading the request body", method, safe_url);
		} else {
			err_set(err, ERR_IO, "%s %s: request body file shorter than "
				"%zu bytes", method, safe_url, req->body_len);
		}
		goto out;
	}
	if (x.cancel_abort) {
		err_set(err, ERR_CANCELED, "%s %s: canceled (the HTTP client is "
			"shutting down)", method, safe_url);
		goto out;
	}
	if (x.sink_abort || x.progress_abort) {
		err_set(err, ERR_CANCELED, "%s %s: canceled by the %s", method,
			safe_url, x.sink_abort ? "sink" : "progress callback");
		goto out;
	}
	if (x.too_big) {
		err_set(err, ERR_PARSE, "%s %s: reply body larger than %zu bytes",
			method, safe_url,
			req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY);
		goto out;
	}
	if (rc != CURLE_OK) {
		char delivered[96] = "";

		if (resp->sink_bytes > 0)
			snprintf(delivered, sizeof(delivered), " (after %llu bytes "
				 "delivered to the sink; not retried)",
				 (unsigned long long)resp->sink_bytes);
		err_set(err, rc == CURLE_OPERATION_TIMEDOUT ? ERR_TIMEOUT : ERR_NET,
			"%s %s: %s%s", method, safe_url,
			errbuf[0] ? errbuf : curl_easy_strerror(rc), delivered);
		if (err)
			log_redact(err->msg);
		if (resp->sink_bytes == 0 && retry_ok && http_transient(rc))
			oc = HTTP_RETRY;
		goto out;
	}
	if (resp->status >= 200 && resp->status < 400) {
		oc = HTTP_OK;
		goto out;
	}
	http_status_to_err(resp->status, resp->body, resp->body_len, err);
	if (err)
		err_prefix(err, "%s %s", method, safe_url);
	if (resp->status == 401 && *token_sent) {
		oc = HTTP_REAUTH;
		goto out;
	}
	if (retry_ok) {
		switch (resp->status) {
		case 408: case 429: case 500: case 502: case 503: case 504:
			oc = HTTP_RETRY;
			break;
		case 403:
			if (err && err->code == ERR_RATE)
				oc = HTTP_RETRY;
			break;
		default:
			break;
		}
	}
	ra = http_resp_header(resp, "Retry-After", 0);
	if (ra)
		*retry_after = http_parse_retry_after(ra, time(NULL));
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "%s %s: out of memory", method, safe_url);
	oc = HTTP_FINAL;
out:
	http_slist_free(hdrs);
	explicit_bzero(token, sizeof(token));
	explicit_bzero(auth, sizeof(auth));
	return oc;
}

/* Delay before retry number n (0-based). */
static long http_backoff_ms(struct http *h, int n, long retry_after)
{
	long d = h->opts.backoff_initial_ms, max = h->opts.backoff_max_ms;
	int i;

	if (retry_after >= 0)
		return retry_after < 2 * max ? retry_after : 2 * max;
	for (i = 0; i < n && d < max; i++)
		d *= 2;
	d += http_rand(h, h->opts.backoff_jitter_ms);
	return d < max ? d : max;
}

/* The transport error text of e->msg, without its "METHOD URL: " head. */
static const char *http_msg_tail(const struct err *e)
{
	const char *p = strstr(e->msg, ": ");

	return p ? p + 2 : e->msg;
}

static int http_method_ok(const char *m)
{
	if (!*m || strlen(m) > 16)
		return 0;
	for (; *m; m++)
		if (!isupper((unsigned char)*m))
			return 0;
	return 1;
}

int http_do(struct http *h, const struct http_req *req, struct http_resp *resp,
	    struct err *err)
{
	char safe_url[512], reason[160];
	struct http_resp own;
	struct err lerr;
	const char *method = "GET";
	CURL *c = NULL;
	enum http_outcome oc;
	int max_retries, retries = 0, invalidate = 0, refreshed = 0, token_sent;
	long retry_after, delay;
	int rc = -1;

	if (!resp)
		resp = &own;
	memset(resp, 0, sizeof(*resp));
	err_clear(&lerr);
	safe_url[0] = '\0';
	if (!h || !req || !req->url) {
		err_set(&lerr, ERR_INVAL, "http: no client or URL");
		goto out;
	}
	if (req->method)
		method = req->method;
	http_redact_url(req->url, safe_url, sizeof(safe_url));
	if (!http_method_ok(method)) {
		err_set(&lerr, ERR_INVAL, "http: bad method for %s", safe_url);
		goto out;
	}
	if (req->body_len > 0 && req->body_fd < 0 && !req->body) {
		err_set(&lerr, ERR_INVAL, "%s %s: body_len without a body", method,
			safe_url);
		goto out;
	}
	max_retries = req->max_retries > 0 ? req->max_retries
		    : req->max_retries < 0 ? 0 : h->opts.max_retries;
	c = http_take(h);
	if (!c) {
		err_set(&lerr, ERR_NOMEM, "%s %s: no curl handle", method, safe_url);
		goto out;
	}
	for (;;) {
		if (http_canceled(h)) {
			err_set(&lerr, ERR_CANCELED, "%s %s: canceled (the HTTP client is "
				"shutting down)", method, safe_url);
			break;
		}
		resp->attempts++;
		resp->sink_bytes = 0;
		err_clear(&lerr);
		oc = http_attempt(h, c, req, method, safe_url, invalidate,
				  &token_sent, resp, &retry_after, &lerr);
		invalidate = 0;
		if (oc == HTTP_OK) {
			rc = 0;
			break;
		}
		if (oc == HTTP_REAUTH && !refreshed) {
			refreshed = 1;
			invalidate = 1;
			pthread_mutex_lock(&h->stats_lock);
			h->stats.retries++;
			h->stats.token_refreshes++;
			pthread_mutex_unlock(&h->stats_lock);
			log_debug(HTTP_TAG, "retry: %s %s -> 401, refreshing the token",
				  method, safe_url);
			curl_easy_reset(c);
			continue;
		}
		if (oc != HTTP_RETRY || retries >= max_retries)
			break;
		delay = http_backoff_ms(h, retries, retry_after);
		retries++;
		if (resp->status)
			snprintf(reason, sizeof(reason), "%ld%s%s", resp->status,
				 lerr.reason[0] ? " " : "", lerr.reason);
		else
			snprintf(reason, sizeof(reason), "%s (%s)",
				 err_code_name(lerr.code), http_msg_tail(&lerr));
		log_debug(HTTP_TAG, "retry %d/%d: %s %s -> %s, waiting %ld ms%s",
			  retries, max_retries, method, safe_url, reason, delay,
			  retry_after >= 0 ? " (Retry-After)" : "");
		pthread_mutex_lock(&h->stats_lock);
		h->stats.retries++;
		pthread_mutex_unlock(&h->stats_lock);
		if (http_pause(h, delay, NULL) < 0) {
			/* Canceled while backing off: keep the last reply for
			 * the caller's information, report the cancel. */
			err_set(&lerr, ERR_CANCELED, "%s %s: canceled while waiting to "
				"retry (the HTTP client is shutting down)", method, safe_url);
			break;
		}
		curl_easy_reset(c);
	}
	http_give(h, c);
out:
	if (rc == 0)
		err_clear(&lerr);
	if (err)
		*err = lerr;
	if (resp == &own)
		http_resp_release(&own);
	return rc;
}
