/* Unit tests for sync/http.c against a real HTTP/1.1 server started in the
 * test (a thread per connection on 127.0.0.1 playing scripted replies and
 * recording what it received): retry policy, 401 refresh, bodies from fds,
 * sinks, caps, error mapping, redaction and connection reuse. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "durafs/cksum.h"
#include "durafs/http.h"
#include "durafs/log.h"
#include "unit_util.h"

/* ------------------------------------------------------------------------ */
/* The scripted server                                                      */
/* ------------------------------------------------------------------------ */

enum act {
	ACT_REPLY,        /* status, headers, body; keep the connection */
	ACT_RESET_MID,    /* headers + half the body, pause, then RST */
	ACT_CLOSE,        /* close without any reply */
	ACT_STALL,        /* headers + 10 bytes of a longer body, then silence */
};

struct step {
	enum act act;
	int status;
	char headers[512];      /* extra "Name: value\r\n" lines */
	const char *body;       /* NULL: gen_len pattern bytes */
	size_t body_len;
	uint64_t gen_len;
};

struct rec {
	char method[16];
	char target[1024];
	char headers[4096];     /* raw header block */
	uint64_t body_len;
	uint32_t body_crc;
	char body_head[512];
	int chunked;
};

#define MAX_STEPS 64
#define MAX_RECS 1024
#define MAX_CONNS 128
#define PAT_LEN 65521u        /* a prime: misplaced bytes change the crc */
#define IO_BUF (1u << 20)

struct srv {
	int lfd;
	int port;
	char base[64];
	pthread_t acc;
	pthread_mutex_t mu;
	struct step steps[MAX_STEPS];   /* guarded by mu */
	int nsteps, next;
	struct rec recs[MAX_RECS];
	int nrec;
	int conn_fds[MAX_CONNS];
	pthread_t conn_th[MAX_CONNS];
	int nconns;
	int stop;
};

static unsigned char *pattern;  /* PAT_LEN + IO_BUF bytes: any window is contiguous */

static void pattern_init(void)
{
	size_t i;

	if (pattern)
		return;
	pattern = malloc(PAT_LEN + IO_BUF);
	assert_non_null(pattern);
	for (i = 0; i < PAT_LEN + IO_BUF; i++) {
		size_t k = i % PAT_LEN;
		pattern[i] = (unsigned char)(k * 7 + (k >> 8) * 13 + 1);
	}
}

/* crc32c of n pattern bytes starting at stream offset 0. */
static uint32_t pattern_crc(uint64_t n)
{
	uint64_t off = 0;
	uint32_t crc = 0;

	while (off < n) {
		size_t len = n - off > IO_BUF ? IO_BUF : (size_t)(n - off);
		crc = ck_crc32c(crc, pattern + off % PAT_LEN, len);
		off += len;
	}
	return crc;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct conn_arg {
	struct srv *s;
	int idx;
	int fd;
};

/* Send n pattern bytes starting at stream offset 0. */
static int send_pattern(int fd, uint64_t n)
{
	uint64_t off = 0;

	while (off < n) {
		size_t len = n - off > IO_BUF ? IO_BUF : (size_t)(n - off);
		if (write_all(fd, pattern + off % PAT_LEN, len))
			return -1;
		off += len;
	}
	return 0;
}

static void *conn_main(void *arg)
{
	struct conn_arg *ca = arg;
	struct srv *s = ca->s;
	int fd = ca->fd;
	char *buf = malloc(IO_BUF);
	size_t have = 0;

	free(ca);
	if (!buf)
		return NULL;
	for (;;) {
		struct rec r;
		struct step st;
		char *end, *line, *p, hdr[1024];
		size_t headlen, n;
		uint64_t clen = 0, got;
		ssize_t k;
		int hl;

		memset(&r, 0, sizeof(r));
		/* request head */
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have == IO_BUF)
				goto out;
			k = recv(fd, buf + have, IO_BUF - have, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				goto out;
			have += (size_t)k;
		}
		headlen = (size_t)(end - buf) + 4;
		line = strndup(buf, headlen);
		if (!line)
			goto out;
		sscanf(line, "%15s %1023s", r.method, r.target);
		p = strstr(line, "\r\n");
		snprintf(r.headers, sizeof(r.headers), "%s", p ? p + 2 : "");
		for (p = line; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
			if (strncasecmp(p, "Content-Length:", 15) == 0)
				clen = strtoull(p + 15, NULL, 10);
			if (strncasecmp(p, "Transfer-Encoding:", 18) == 0)
				r.chunked = 1;
		}
		free(line);
		memmove(buf, buf + headlen, have - headlen);
		have -= headlen;
		/* body */
		got = 0;
		while (got < clen) {
			if (have == 0) {
				k = recv(fd, buf, IO_BUF, 0);
				if (k < 0 && errno == EINTR)
					continue;
				if (k <= 0)
					goto out;
				have = (size_t)k;
			}
			n = have;
			if (n > clen - got)
				n = (size_t)(clen - got);
			r.body_crc = ck_crc32c(r.body_crc, buf, n);
			if (got < sizeof(r.body_head) - 1) {
				size_t c = sizeof(r.body_head) - 1 - (size_t)got;
				memcpy(r.body_head + got, buf, n < c ? n : c);
			}
			got += n;
			memmove(buf, buf + n, have - n);
			have -= n;
		}
		r.body_len = got;
		pthread_mutex_lock(&s->mu);
		if (s->next < s->nsteps) {
			st = s->steps[s->next++];
		} else {
			memset(&st, 0, sizeof(st));
			st.act = ACT_REPLY;
			st.status = 200;
			st.body = "ok";
			st.body_len = 2;
		}
		if (s->nrec < MAX_RECS)
			s->recs[s->nrec++] = r;
		pthread_mutex_unlock(&s->mu);
		if (r.chunked)
			goto out;
		if (st.act == ACT_CLOSE)
			goto out;
		{
			uint64_t blen = st.body ? st.body_len : st.gen_len;

			hl = snprintf(hdr, sizeof(hdr),
				      "HTTP/1.1 %d Scripted\r\nContent-Length: %llu\r\n%s\r\n",
				      st.status, (unsigned long long)blen, st.headers);
			if (write_all(fd, hdr, (size_t)hl))
				goto out;
			if (st.act == ACT_RESET_MID || st.act == ACT_STALL) {
				uint64_t part = st.act == ACT_STALL ? 10 : blen / 2;
				struct linger lg = { 1, 0 };

				if (st.body ? write_all(fd, st.body, (size_t)part)
					    : send_pattern(fd, part))
					goto out;
				if (st.act == ACT_STALL) {
					/* silence until the client gives up */
					char c;
					while (recv(fd, &c, 1, 0) > 0)
						;
					goto out;
				}
				ut_sleep_ms(150);  /* let the client read it all */
				setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
				goto out_reset;
			}
			if (st.body ? write_all(fd, st.body, st.body_len)
				    : send_pattern(fd, st.gen_len))
				goto out;
		}
	}
out_reset:
	/* SO_LINGER {1, 0}: this close sends RST. The fd slot is marked so
	 * srv_stop does not close it again. */
	pthread_mutex_lock(&s->mu);
	{
		int i;
		for (i = 0; i < s->nconns; i++)
			if (s->conn_fds[i] == fd)
				s->conn_fds[i] = -1;
	}
	pthread_mutex_unlock(&s->mu);
	close(fd);
	free(buf);
	return NULL;
out:
	free(buf);
	shutdown(fd, SHUT_RDWR);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct srv *s = arg;

	for (;;) {
		struct conn_arg *ca;
		int fd = accept(s->lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		pthread_mutex_lock(&s->mu);
		if (s->stop || s->nconns == MAX_CONNS) {
			pthread_mutex_unlock(&s->mu);
			close(fd);
			continue;
		}
		ca = malloc(sizeof(*ca));
		assert_non_null(ca);
		ca->s = s;
		ca->fd = fd;
		ca->idx = s->nconns;
		s->conn_fds[s->nconns] = fd;
		if (pthread_create(&s->conn_th[s->nconns], NULL, conn_main, ca) == 0)
			s->nconns++;
		else
			close(fd);
		pthread_mutex_unlock(&s->mu);
	}
}

static struct srv *srv_start(void)
{
	struct srv *s = calloc(1, sizeof(*s));
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int one = 1;

	assert_non_null(s);
	pattern_init();
	pthread_mutex_init(&s->mu, NULL);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 64), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
	s->port = ntohs(a.sin_port);
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
	assert_int_equal(pthread_create(&s->acc, NULL, accept_main, s), 0);
	return s;
}

static void srv_stop(struct srv *s)
{
	int i, n;

	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_mutex_unlock(&s->mu);
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->acc, NULL);
	close(s->lfd);
	pthread_mutex_lock(&s->mu);
	n = s->nconns;
	for (i = 0; i < n; i++)
		if (s->conn_fds[i] >= 0)
			shutdown(s->conn_fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&s->mu);
	for (i = 0; i < n; i++)
		pthread_join(s->conn_th[i], NULL);
	for (i = 0; i < n; i++)
		if (s->conn_fds[i] >= 0)
			close(s->conn_fds[i]);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static void srv_push(struct srv *s, enum act act, int status, const char *headers,
		     const char *body, uint64_t gen_len)
{
	struct step *st;

	pthread_mutex_lock(&s->mu);
	assert_true(s->nsteps < MAX_STEPS);
	st = &s->steps[s->nsteps++];
	memset(st, 0, sizeof(*st));
	st->act = act;
	st->status = status;
	snprintf(st->headers, sizeof(st->headers), "%s", headers ? headers : "");
	st->body = body;
	st->body_len = body ? strlen(body) : 0;
	st->gen_len = gen_len;
	pthread_mutex_unlock(&s->mu);
}

static void srv_reply(struct srv *s, int status, const char *headers, const char *body)
{
	srv_push(s, ACT_REPLY, status, headers, body ? body : "", 0);
}

static int srv_nrec(struct srv *s)
{
	int n;

	pthread_mutex_lock(&s->mu);
	n = s->nrec;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* Value of header name in the recorded request (static buffer), or NULL. */
static const char *rec_header(const struct rec *r, const char *name)
{
	static char val[2048];
	const char *p = r->headers;
	size_t n = strlen(name);

	while (p && *p) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			snprintf(val, sizeof(val), "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
			return val;
		}
		p = strstr(p, "\r\n");
		if (p)
			p += 2;
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Test clients: fast backoff, no jitter unless asked. */
static struct http *client(http_token_fn tok, void *ud)
{
	struct http_opts o;
	struct http *h = NULL;
	struct err e;

	memset(&o, 0, sizeof(o));
	o.backoff_initial_ms = 5;
	o.backoff_max_ms = 40;
	o.backoff_jitter_ms = 5;
	o.max_retries = 4;
	o.token = tok;
	o.token_ud = ud;
	assert_int_equal(http_new(&o, &h, &e), 0);
	return h;
}

static struct http_req get_req(const char *url, enum http_retry retry)
{
	struct http_req r;

	memset(&r, 0, sizeof(r));
	r.url = url;
	r.retry = retry;
	r.body_fd = -1;
	return r;
}

struct tok {
	pthread_mutex_t mu;
	int calls, invalidations, gen, fail;
};

static int tok_fn(void *ud, int invalidate, char *buf, size_t len, struct err *err)
{
	struct tok *t = ud;

	pthread_mutex_lock(&t->mu);
	t->calls++;
	if (invalidate) {
		t->invalidations++;
		t->gen++;
	}
	snprintf(buf, len, "tok-SECRET-%d", t->gen + 1);
	pthread_mutex_unlock(&t->mu);
	if (t->fail)
		return err_set(err, ERR_AUTH, "no credentials found (tried: env)");
	return 0;
}

static const char json_rate[] =
	"{\"error\":{\"code\":403,\"message\":\"Rate Limit Exceeded\","
	"\"errors\":[{\"domain\":\"usageLimits\",\"reason\":\"rateLimitExceeded\"}]}}";
static const char json_forbidden[] =
	"{\"error\":{\"code\":403,\"message\":\"a@b.com does not have storage.objects.get access\","
	"\"errors\":[{\"domain\":\"global\",\"reason\":\"forbidden\"}]}}";

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_get_ok_headers(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct http_stats st;
	struct err e;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "%s/storage/v1/b/bk/o/a%%2Fb?alt=json", s->base);
	srv_reply(s, 200, "X-Goog-Hash: crc32c=AAAAAA==\r\nx-goog-hash: md5=BBBB\r\n"
		  "X-Goog-Generation:   17  \r\n", "{\"name\":\"a/b\"}");
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.attempts, 1);
	assert_int_equal(resp.body_len, 14);
	assert_string_equal(resp.body, "{\"name\":\"a/b\"}");
	assert_string_equal(http_resp_header(&resp, "x-goog-hash", 0), "crc32c=AAAAAA==");
	assert_string_equal(http_resp_header(&resp, "X-GOOG-HASH", 1), "md5=BBBB");
	assert_null(http_resp_header(&resp, "x-goog-hash", 2));
	assert_string_equal(http_resp_header(&resp, "x-goog-generation", 0), "17");
	assert_string_equal(http_resp_header(&resp, "content-length", 0), "14");
	http_resp_release(&resp);
	assert_null(resp.body);
	assert_int_equal(resp.nheaders, 0);
	assert_int_equal(srv_nrec(s), 1);
	assert_string_equal(s->recs[0].method, "GET");
	assert_string_equal(s->recs[0].target, "/storage/v1/b/bk/o/a%2Fb?alt=json");
	assert_null(rec_header(&s->recs[0], "Authorization"));
	assert_non_null(strstr(rec_header(&s->recs[0], "User-Agent"), "durafs/"));
	/* dot segments are sent as they are (object names may be "..") */
	snprintf(url, sizeof(url), "%s/o/../x/./y", s->base);
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	http_resp_release(&resp);
	assert_string_equal(s->recs[1].target, "/o/../x/./y");
	http_get_stats(h, &st);
	assert_int_equal(st.requests, 2);
	assert_int_equal(st.retries, 0);
	assert_true(st.bytes_down >= 16);
	http_free(h);
	srv_stop(s);
}

static void test_bodies_methods_auth(void **state)
{
	static const char *const hdrs[] = { "Content-Type: application/json", NULL };
	static const char json[] = "{\"name\":\"x\"}";
	struct tok t = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0 };
	struct srv *s = srv_start();
	struct http *h = client(tok_fn, &t);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];
	int i;

	(void)state;
	snprintf(url, sizeof(url), "%s/upload", s->base);
	req = get_req(url, HTTP_RETRY_NONE);
	req.method = "POST";
	req.headers = hdrs;
	req.body = json;
	req.body_len = strlen(json);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	http_resp_release(&resp);
	/* empty POST, PATCH with body, DELETE, PUT empty, no_auth */
	req = get_req(url, HTTP_RETRY_NONE);
	req.method = "POST";
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	http_resp_release(&resp);
	req.method = "PATCH";
	req.body = "abc";
	req.body_len = 3;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	http_resp_release(&resp);
	req = get_req(url, HTTP_RETRY_SAFE);
	req.method = "DELETE";
	srv_reply(s, 204, NULL, NULL);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.status, 204);
	assert_null(resp.body);
	http_resp_release(&resp);
	req.method = "PUT";
	req.no_auth = 1;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	http_resp_release(&resp);

	assert_int_equal(srv_nrec(s), 5);
	for (i = 0; i < 5; i++) {
		assert_false(s->recs[i].chunked);
		assert_null(rec_header(&s->recs[i], "Expect"));
	}
	assert_string_equal(s->recs[0].method, "POST");
	assert_string_equal(rec_header(&s->recs[0], "Authorization"), "Bearer tok-SECRET-1");
	assert_string_equal(rec_header(&s->recs[0], "Content-Type"), "application/json");
	assert_string_equal(rec_header(&s->recs[0], "Content-Length"), "12");
	assert_string_equal(s->recs[0].body_head, json);
	assert_string_equal(rec_header(&s->recs[1], "Content-Length"), "0");
	assert_string_equal(rec_header(&s->recs[1], "Content-Type"),
			    "application/x-www-form-urlencoded");
	assert_string_equal(s->recs[2].method, "PATCH");
	assert_string_equal(s->recs[2].body_head, "abc");
	assert_null(rec_header(&s->recs[2], "Content-Type"));
	assert_string_equal(s->recs[3].method, "DELETE");
	assert_null(rec_header(&s->recs[3], "Content-Length"));
	assert_string_equal(s->recs[4].method, "PUT");
	assert_string_equal(rec_header(&s->recs[4], "Content-Length"), "0");
	assert_null(rec_header(&s->recs[4], "Authorization"));
	assert_int_equal(t.calls, 4);
	assert_int_equal(t.invalidations, 0);
	/* bad requests */
	req = get_req(NULL, HTTP_RETRY_NONE);
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	http_resp_release(&resp);
	req = get_req(url, HTTP_RETRY_NONE);
	req.method = "get me";
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	req.method = "PUT";
	req.body_len = 5;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_retry_503_429_408(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct http_stats st;
	struct err e;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "%s/o", s->base);
	srv_reply(s, 503, NULL, "busy");
	srv_reply(s, 200, NULL, "done");
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 2);
	assert_string_equal(resp.body, "done");
	http_resp_release(&resp);
	srv_reply(s, 429, NULL, "{\"error\":{\"code\":429,\"message\":\"slow down\"}}");
	srv_reply(s, 408, NULL, NULL);
	srv_reply(s, 500, NULL, NULL);
	srv_reply(s, 502, NULL, NULL);
	srv_reply(s, 504, NULL, NULL);
	srv_reply(s, 200, NULL, "fine");
	req.max_retries = 5;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 6);
	assert_string_equal(resp.body, "fine");
	http_resp_release(&resp);
	http_get_stats(h, &st);
	assert_int_equal(st.requests, 8);
	assert_int_equal(st.retries, 6);
	/* exhausted: the last reply's error is reported */
	srv_reply(s, 503, NULL, NULL);
	srv_reply(s, 503, NULL, NULL);
	srv_reply(s, 503, NULL, "{\"error\":{\"code\":503,\"message\":\"Backend Error\","
		  "\"errors\":[{\"reason\":\"backendError\"}]}}");
	req.max_retries = 2;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 3);
	assert_int_equal(resp.status, 503);
	assert_int_equal(e.code, ERR_HTTP);
	assert_int_equal(e.http_status, 503);
	assert_string_equal(e.reason, "backendError");
	assert_non_null(strstr(e.msg, "GET http://127.0.0.1:"));
	assert_non_null(strstr(e.msg, "HTTP 503 backendError: Backend Error"));
	http_resp_release(&resp);
	/* 501 and 400 are not retried even for SAFE */
	srv_reply(s, 501, NULL, NULL);
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	http_resp_release(&resp);
	srv_reply(s, 400, NULL, "{\"error\":{\"code\":400,\"message\":\"Invalid argument\","
		  "\"errors\":[{\"reason\":\"invalid\"}]}}");
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	assert_int_equal(e.code, ERR_INVAL);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_retry_after(void **state)
{
	struct http_opts o;
	struct srv *s = srv_start();
	struct http *h = NULL;
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];
	double t0, dt;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.backoff_initial_ms = 1;
	o.backoff_max_ms = 1000;   /* Retry-After capped at 2 s */
	o.backoff_jitter_ms = -1;
	assert_int_equal(http_new(&o, &h, &e), 0);
	snprintf(url, sizeof(url), "%s/o", s->base);
	srv_reply(s, 503, "Retry-After: 1\r\n", NULL);
	srv_reply(s, 200, NULL, "ok");
	req = get_req(url, HTTP_RETRY_SAFE);
	t0 = now_s();
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	dt = now_s() - t0;
	assert_int_equal(resp.attempts, 2);
	http_resp_release(&resp);
	if (dt < 0.95 || dt > 5)
		fail_msg("Retry-After: 1 waited %.3f s", dt);
	/* a huge Retry-After is capped at 2 * backoff_max */
	http_free(h);
	o.backoff_max_ms = 150;
	assert_int_equal(http_new(&o, &h, &e), 0);
	srv_reply(s, 429, "Retry-After: 3600\r\n", NULL);
	srv_reply(s, 200, NULL, "ok");
	t0 = now_s();
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	dt = now_s() - t0;
	http_resp_release(&resp);
	if (dt < 0.28 || dt > 3.0)
		fail_msg("capped Retry-After waited %.3f s (want ~0.3)", dt);
	http_free(h);
	srv_stop(s);
}

static void test_parse_retry_after(void **state)
{
	time_t t = 1445412480;  /* Wed, 21 Oct 2015 07:28:00 GMT */

	(void)state;
	assert_int_equal(http_parse_retry_after("120", t), 120000);
	assert_int_equal(http_parse_retry_after(" 3 ", t), 3000);
	assert_int_equal(http_parse_retry_after("0", t), 0);
	assert_int_equal(http_parse_retry_after("", t), -1);
	assert_int_equal(http_parse_retry_after(NULL, t), -1);
	assert_int_equal(http_parse_retry_after("-5", t), -1);
	assert_int_equal(http_parse_retry_after("5s", t), -1);
	assert_int_equal(http_parse_retry_after("soon", t), -1);
	assert_int_equal(http_parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", t), 5000);
	assert_int_equal(http_parse_retry_after("Wednesday, 21-Oct-15 07:28:07 GMT", t), 7000);
	assert_int_equal(http_parse_retry_after("Wed Oct 21 07:28:02 2015", t), 2000);
	assert_int_equal(http_parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", t), 0);
	assert_int_equal(http_parse_retry_after("Xyz, 99 Foo 2015 99:99:99 GMT", t), -1);
}

static void test_403_rate_vs_forbidden(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "%s/drive/v3/files", s->base);
	srv_reply(s, 403, NULL, json_rate);
	srv_reply(s, 200, NULL, "{}");
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 2);
	http_resp_release(&resp);
	srv_reply(s, 403, NULL, json_forbidden);
	srv_reply(s, 200, NULL, "{}");  /* must not be reached by the next call */
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	assert_int_equal(e.code, ERR_PERM);
	assert_int_equal(e.http_status, 403);
	assert_string_equal(e.reason, "forbidden");
	assert_non_null(strstr(e.msg, "does not have storage.objects.get access"));
	assert_int_equal(err_to_errno(&e), -EACCES);
	http_resp_release(&resp);
	/* exhausted rate limit: ERR_RATE (skip the unused 200 first) */
	pthread_mutex_lock(&s->mu);
	s->next = s->nsteps;
	pthread_mutex_unlock(&s->mu);
	srv_reply(s, 403, NULL, json_rate);
	srv_reply(s, 403, NULL, json_rate);
	req.max_retries = 1;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 2);
	assert_int_equal(e.code, ERR_RATE);
	assert_string_equal(e.reason, "rateLimitExceeded");
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_none_tried_once(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "%s/o", s->base);
	srv_reply(s, 503, NULL, "busy");
	srv_reply(s, 200, NULL, "late");
	req = get_req(url, HTTP_RETRY_NONE);
	req.method = "POST";
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	assert_int_equal(resp.status, 503);
	assert_string_equal(resp.body, "busy");
	assert_int_equal(e.code, ERR_HTTP);
	assert_int_equal(srv_nrec(s), 1);
	http_resp_release(&resp);
	/* max_retries < 0 on a SAFE request: also once */
	srv_reply(s, 503, NULL, NULL);
	req = get_req(url, HTTP_RETRY_SAFE);
	req.max_retries = -1;
	pthread_mutex_lock(&s->mu);
	s->next = s->nsteps - 1;
	pthread_mutex_unlock(&s->mu);
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_401_refresh(void **state)
{
	struct tok t = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0 };
	struct srv *s = srv_start();
	struct http *h = client(tok_fn, &t);
	struct http_resp resp;
	struct http_req req;
	struct http_stats st;
	struct err e;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "%s/o", s->base);
	srv_reply(s, 401, "WWW-Authenticate: Bearer\r\n",
		  "{\"error\":{\"code\":401,\"message\":\"Invalid Credentials\","
		  "\"errors\":[{\"reason\":\"authError\"}]}}");
	srv_reply(s, 200, NULL, "ok");
	req = get_req(url, HTTP_RETRY_NONE);  /* 401 retries whatever retry says */
	req.method = "POST";
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 2);
	http_resp_release(&resp);
	assert_int_equal(t.calls, 2);
	assert_int_equal(t.invalidations, 1);
	assert_string_equal(rec_header(&s->recs[0], "Authorization"), "Bearer tok-SECRET-1");
	assert_string_equal(rec_header(&s->recs[1], "Authorization"), "Bearer tok-SECRET-2");
	http_get_stats(h, &st);
	assert_int_equal(st.token_refreshes, 1);
	assert_int_equal(st.retries, 1);
	/* a second 401 fails: one refresh per request */
	srv_reply(s, 401, NULL, NULL);
	srv_reply(s, 401, NULL, NULL);
	srv_reply(s, 200, NULL, "unreached");
	req.retry = HTTP_RETRY_SAFE;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 2);
	assert_int_equal(e.code, ERR_AUTH);
	assert_int_equal(e.http_status, 401);
	assert_int_equal(t.invalidations, 2);
	http_resp_release(&resp);
	/* the refresh retry does not use up max_retries: 401, 503, 200 with
	 * max_retries 1 succeeds */
	pthread_mutex_lock(&s->mu);
	s->next = s->nsteps;
	pthread_mutex_unlock(&s->mu);
	srv_reply(s, 401, NULL, NULL);
	srv_reply(s, 503, NULL, NULL);
	srv_reply(s, 200, NULL, "ok");
	req.max_retries = 1;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 3);
	http_resp_release(&resp);
	/* a token source that fails: nothing is sent */
	t.fail = 1;
	int before = srv_nrec(s);
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_AUTH);
	assert_non_null(strstr(e.msg, "no credentials found"));
	assert_int_equal(srv_nrec(s), before);
	http_resp_release(&resp);
	/* 401 without a token sent (no_auth) is final */
	t.fail = 0;
	srv_reply(s, 401, NULL, NULL);
	req.no_auth = 1;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_reset_mid_reply(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];
	const uint64_t n = 300000;

	(void)state;
	snprintf(url, sizeof(url), "%s/o?alt=media", s->base);
	srv_push(s, ACT_RESET_MID, 200, NULL, NULL, n);
	srv_push(s, ACT_REPLY, 200, NULL, NULL, n);
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 2);
	assert_int_equal(resp.body_len, n);
	assert_int_equal(ck_crc32c(0, resp.body, resp.body_len), pattern_crc(n));
	http_resp_release(&resp);
	/* closed without a reply: retried too. A fresh client, so the close
	 * hits a new connection (on a reused one libcurl itself resends once,
	 * below our policy). */
	http_free(h);
	h = client(NULL, NULL);
	srv_push(s, ACT_CLOSE, 0, NULL, NULL, 0);
	srv_reply(s, 200, NULL, "ok");
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 2);
	http_resp_release(&resp);
	/* NONE: the reset is final */
	srv_push(s, ACT_RESET_MID, 200, NULL, NULL, n);
	req.retry = HTTP_RETRY_NONE;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	assert_int_equal(e.code, ERR_NET);
	assert_int_equal(e.http_status, 0);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

/* libcurl resends on its own when a reused connection dies before any reply
 * byte: allowed for SAFE requests, never for NONE ones. */
static void test_no_silent_resend(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req, warm;
	struct http_stats st0, st1;
	struct err e;
	char url[128];
	const size_t n = 600000;
	char *body = calloc(1, n);
	int before;

	(void)state;
	assert_non_null(body);
	snprintf(url, sizeof(url), "%s/upload?upload_id=u", s->base);
	warm = get_req(url, HTTP_RETRY_SAFE);
	/* NONE with a body, on a reused connection */
	assert_int_equal(http_do(h, &warm, NULL, &e), 0);
	srv_push(s, ACT_CLOSE, 0, NULL, NULL, 0);
	before = srv_nrec(s);
	req = get_req(url, HTTP_RETRY_NONE);
	req.method = "PUT";
	req.body = body;
	req.body_len = n;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_NET);
	assert_int_equal(resp.attempts, 1);
	assert_non_null(strstr(e.msg, "not resent"));
	assert_int_equal(srv_nrec(s) - before, 1);
	http_resp_release(&resp);
	/* NONE without a body */
	assert_int_equal(http_do(h, &warm, NULL, &e), 0);
	srv_push(s, ACT_CLOSE, 0, NULL, NULL, 0);
	before = srv_nrec(s);
	req = get_req(url, HTTP_RETRY_NONE);
	req.method = "POST";
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_NET);
	assert_int_equal(srv_nrec(s) - before, 1);
	http_resp_release(&resp);
	/* SAFE: resent (by libcurl or by us), counted as a retry */
	assert_int_equal(http_do(h, &warm, NULL, &e), 0);
	srv_push(s, ACT_CLOSE, 0, NULL, NULL, 0);
	before = srv_nrec(s);
	http_get_stats(h, &st0);
	req = get_req(url, HTTP_RETRY_SAFE);
	req.method = "PUT";
	req.body = body;
	req.body_len = n;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	http_get_stats(h, &st1);
	assert_int_equal(srv_nrec(s) - before, 2);
	assert_int_equal(s->recs[before + 1].body_len, n);
	assert_int_equal(st1.retries - st0.retries, 1);
	assert_int_equal(st1.requests - st0.requests, 2);
	http_resp_release(&resp);
	free(body);
	http_free(h);
	srv_stop(s);
}

struct sinkst {
	uint32_t crc;
	uint64_t n;
	uint64_t abort_after;
};

static int sink_fn(void *ud, const char *data, size_t len)
{
	struct sinkst *k = ud;

	k->crc = ck_crc32c(k->crc, data, len);
	k->n += len;
	return k->abort_after && k->n >= k->abort_after;
}

static void test_sink(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct sinkst k;
	struct err e;
	char url[128];
	const uint64_t n = 3000000;

	(void)state;
	snprintf(url, sizeof(url), "%s/o?alt=media", s->base);
	/* a complete transfer, after a 503 whose error body is collected */
	srv_reply(s, 503, NULL, "try later");
	srv_push(s, ACT_REPLY, 200, NULL, NULL, n);
	memset(&k, 0, sizeof(k));
	req = get_req(url, HTTP_RETRY_SAFE);
	req.sink = sink_fn;
	req.sink_ud = &k;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 2);
	assert_int_equal(resp.sink_bytes, n);
	assert_int_equal(k.n, n);
	assert_int_equal(k.crc, pattern_crc(n));
	assert_null(resp.body);
	http_resp_release(&resp);
	/* reset after half the body reached the sink: not retried */
	srv_push(s, ACT_RESET_MID, 200, NULL, NULL, n);
	srv_push(s, ACT_REPLY, 200, NULL, NULL, n);
	memset(&k, 0, sizeof(k));
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_NET);
	assert_int_equal(resp.attempts, 1);
	assert_int_equal(resp.sink_bytes, n / 2);
	assert_non_null(strstr(e.msg, "(after 1500000 bytes delivered to the sink; not retried)"));
	assert_int_equal(k.n, n / 2);
	assert_int_equal(k.crc, pattern_crc(n / 2));
	http_resp_release(&resp);
	pthread_mutex_lock(&s->mu);
	s->next = s->nsteps;
	pthread_mutex_unlock(&s->mu);
	/* the sink says stop */
	srv_push(s, ACT_REPLY, 200, NULL, NULL, n);
	memset(&k, 0, sizeof(k));
	k.abort_after = 100000;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_int_equal(resp.attempts, 1);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_fd_body_resent(void **state)
{
	char path[] = "/tmp/durafs-test-http-XXXXXX";
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];
	const size_t fsize = 3u << 20, off = 1000, len = (3u << 20) - 5000;
	unsigned char *data = malloc(fsize);
	uint32_t want;
	size_t i;
	int fd;

	(void)state;
	assert_non_null(data);
	for (i = 0; i < fsize; i++)
		data[i] = (unsigned char)((i * 2654435761u) >> 13);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, fsize), (ssize_t)fsize);
	want = ck_crc32c(0, data + off, len);
	snprintf(url, sizeof(url), "%s/upload/session?upload_id=x", s->base);
	srv_reply(s, 503, NULL, NULL);
	srv_reply(s, 500, NULL, NULL);
	srv_reply(s, 200, NULL, "{}");
	req = get_req(url, HTTP_RETRY_SAFE);
	req.method = "PUT";
	req.body_fd = fd;
	req.body_off = (off_t)off;
	req.body_len = len;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 3);
	http_resp_release(&resp);
	assert_int_equal(srv_nrec(s), 3);
	for (i = 0; i < 3; i++) {
		char cl[32];

		snprintf(cl, sizeof(cl), "%zu", len);
		assert_string_equal(rec_header(&s->recs[i], "Content-Length"), cl);
		assert_int_equal(s->recs[i].body_len, len);
		assert_int_equal(s->recs[i].body_crc, want);
		assert_null(rec_header(&s->recs[i], "Expect"));
	}
	/* the file is shorter than body_len: ERR_IO, not retried */
	req.body_len = fsize;  /* from off: 1000 bytes past the end */
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_IO);
	assert_int_equal(resp.attempts, 1);
	assert_non_null(strstr(e.msg, "shorter"));
	http_resp_release(&resp);
	/* a bad fd */
	req.body_fd = 9999;
	req.body_len = 10;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_IO);
	assert_int_equal(e.sys_errno, EBADF);
	http_resp_release(&resp);
	close(fd);
	free(data);
	http_free(h);
	srv_stop(s);
}

static void test_max_body(void **state)
{
	static char big[200], exact[101], errbig[200];
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	snprintf(url, sizeof(url), "%s/o", s->base);
	srv_reply(s, 200, NULL, big);
	srv_reply(s, 200, NULL, "unreached");
	req = get_req(url, HTTP_RETRY_SAFE);
	req.max_body = 100;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
	assert_int_equal(resp.attempts, 1);
	assert_non_null(strstr(e.msg, "larger than 100 bytes"));
	http_resp_release(&resp);
	/* exactly max_body is fine */
	memset(exact, 'b', 100);
	pthread_mutex_lock(&s->mu);
	s->next = s->nsteps;
	pthread_mutex_unlock(&s->mu);
	srv_reply(s, 200, NULL, exact);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.body_len, 100);
	http_resp_release(&resp);
	/* an error body larger than the cap is cut, not an error of its own */
	memset(errbig, 'c', sizeof(errbig) - 1);
	srv_reply(s, 404, NULL, errbig);
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(resp.body_len, 100);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

static void test_308_and_head(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "%s/upload?upload_id=abc", s->base);
	srv_reply(s, 308, "Range: bytes=0-262143\r\nLocation: http://elsewhere/\r\n", NULL);
	req = get_req(url, HTTP_RETRY_SAFE);
	req.method = "PUT";
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.status, 308);
	assert_string_equal(http_resp_header(&resp, "range", 0), "bytes=0-262143");
	http_resp_release(&resp);
	srv_reply(s, 200, "X-Goog-Generation: 5\r\n", NULL);
	req = get_req(url, HTTP_RETRY_SAFE);
	req.method = "HEAD";
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_string_equal(http_resp_header(&resp, "x-goog-generation", 0), "5");
	http_resp_release(&resp);
	assert_string_equal(s->recs[1].method, "HEAD");
	http_free(h);
	srv_stop(s);
}

struct prog {
	int calls;
	uint64_t last_up;
	uint64_t stop_at;
};

static int prog_fn(void *ud, uint64_t up, uint64_t down)
{
	struct prog *p = ud;

	(void)down;
	p->calls++;
	p->last_up = up;
	return p->stop_at && up >= p->stop_at;
}

static void test_progress(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct prog p;
	struct err e;
	char url[128];
	const size_t n = 8u << 20;
	char *body = calloc(1, n);

	(void)state;
	assert_non_null(body);
	snprintf(url, sizeof(url), "%s/upload", s->base);
	memset(&p, 0, sizeof(p));
	req = get_req(url, HTTP_RETRY_SAFE);
	req.method = "PUT";
	req.body = body;
	req.body_len = n;
	req.progress = prog_fn;
	req.progress_ud = &p;
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_true(p.calls > 0);
	assert_int_equal(p.last_up, n);
	http_resp_release(&resp);
	memset(&p, 0, sizeof(p));
	p.stop_at = 1;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_int_equal(resp.attempts, 1);
	http_resp_release(&resp);
	free(body);
	http_free(h);
	srv_stop(s);
}

static void test_transport_errors(void **state)
{
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	struct err e;
	char url[128];
	int fd;

	(void)state;
	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x?access_token=SECRETQ",
		 ntohs(a.sin_port));
	req = get_req(url, HTTP_RETRY_SAFE);
	req.max_retries = 2;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 3);
	assert_int_equal(e.code, ERR_NET);
	assert_int_equal(e.http_status, 0);
	assert_null(strstr(e.msg, "SECRETQ"));
	assert_non_null(strstr(e.msg, "access_token=***"));
	http_resp_release(&resp);
	req.retry = HTTP_RETRY_NONE;
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	http_resp_release(&resp);
	close(fd);
	/* only http and https */
	req = get_req("file:///etc/passwd", HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_int_equal(resp.attempts, 1);
	assert_null(resp.body);
	http_resp_release(&resp);
	http_free(h);
}

static void test_stall_detected(void **state)
{
	struct http_opts o;
	struct srv *s = srv_start();
	struct http *h = NULL;
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[128];
	double t0, dt;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.low_speed_limit = 1000;
	o.low_speed_time_s = 1;
	o.max_retries = -1;
	assert_int_equal(http_new(&o, &h, &e), 0);
	snprintf(url, sizeof(url), "%s/o?alt=media", s->base);
	srv_push(s, ACT_STALL, 200, NULL, NULL, 1000000);
	req = get_req(url, HTTP_RETRY_SAFE);
	t0 = now_s();
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	dt = now_s() - t0;
	assert_int_equal(e.code, ERR_TIMEOUT);
	assert_int_equal(resp.attempts, 1);
	if (dt < 0.9 || dt > 5)
		fail_msg("stall detected after %.2f s", dt);
	http_resp_release(&resp);
	/* a whole-attempt timeout, well before the stall detection (10 s) */
	http_free(h);
	o.low_speed_time_s = 10;
	assert_int_equal(http_new(&o, &h, &e), 0);
	srv_push(s, ACT_STALL, 200, NULL, NULL, 1000000);
	req.timeout_ms = 300;
	t0 = now_s();
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	dt = now_s() - t0;
	assert_int_equal(e.code, ERR_TIMEOUT);
	assert_true(dt < 3.0);
	http_resp_release(&resp);
	http_free(h);
	srv_stop(s);
}

/* A request run on its own thread, for the cancellation tests. */
struct bg_req {
	struct http *h;
	struct http_req req;
	struct http_resp resp;
	struct err e;
	int rc;
	double t_end;
};

static void *bg_main(void *arg)
{
	struct bg_req *b = arg;

	b->rc = http_do(b->h, &b->req, &b->resp, &b->e);
	b->t_end = now_s();
	return NULL;
}

/* Cancel b's request from this thread once it is under way (after
 * settle_ms), and return how long http_do took to give up after that. */
static double cancel_bg(struct bg_req *b, long settle_ms)
{
	pthread_t t;
	double t0;

	assert_int_equal(pthread_create(&t, NULL, bg_main, b), 0);
	ut_sleep_ms(settle_ms);
	t0 = now_s();
	http_cancel_all(b->h);
	pthread_join(t, NULL);
	return b->t_end - t0;
}

/* http_cancel_all stops a request waiting in its retry backoff at once, a
 * stalled download and a blocked upload within about a second; later
 * requests fail at once until http_uncancel; cancels nest. */
static void test_cancel_all(void **state)
{
	struct http_opts o;
	struct srv *s = srv_start();
	struct http *h = NULL;
	struct http_resp resp;
	struct http_req req;
	struct bg_req b;
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	struct err e;
	char url[128];
	unsigned char *big;
	double dt, t0;
	int lfd;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.backoff_initial_ms = 20000;   /* a retry would wait 20 s */
	o.backoff_jitter_ms = -1;
	o.max_retries = 3;
	assert_int_equal(http_new(&o, &h, &e), 0);
	assert_int_equal(http_canceled(h), 0);

	/* 1. Stuck in the backoff after a 503. */
	snprintf(url, sizeof(url), "%s/b/x/o?uploadType=media", s->base);
	srv_reply(s, 503, NULL, "{\"error\":{\"code\":503,\"message\":\"busy\"}}");
	memset(&b, 0, sizeof(b));
	b.h = h;
	b.req = get_req(url, HTTP_RETRY_SAFE);
	dt = cancel_bg(&b, 300);
	print_message("cancel during the backoff: http_do returned after %.0f ms\n",
		      dt * 1000);
	assert_int_equal(b.rc, -1);
	assert_int_equal(b.e.code, ERR_CANCELED);
	assert_int_equal(b.resp.attempts, 1);
	assert_true(dt < 0.5);
	http_resp_release(&b.resp);
	/* Later requests fail at once, without reaching the server. */
	{
		int before = srv_nrec(s);

		req = get_req(url, HTTP_RETRY_SAFE);
		assert_int_equal(http_do(h, &req, &resp, &e), -1);
		assert_int_equal(e.code, ERR_CANCELED);
		assert_int_equal(resp.attempts, 0);
		http_resp_release(&resp);
		assert_int_equal(srv_nrec(s), before);
	}
	assert_int_equal(http_canceled(h), 1);
	/* Nesting: a second cancel needs its own uncancel. */
	http_cancel_all(h);
	http_uncancel(h);
	assert_int_equal(http_canceled(h), 1);
	http_uncancel(h);
	assert_int_equal(http_canceled(h), 0);
	http_uncancel(h);  /* one too many: ignored */
	assert_int_equal(http_canceled(h), 0);
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);  /* the default 200 */
	assert_int_equal(resp.status, 200);
	http_resp_release(&resp);

	/* 2. Mid-download: the server sent 10 bytes, then nothing (the stall
	 * detection would take 60 s). */
	snprintf(url, sizeof(url), "%s/o?alt=media", s->base);
	srv_push(s, ACT_STALL, 200, NULL, NULL, 1000000);
	memset(&b, 0, sizeof(b));
	b.h = h;
	b.req = get_req(url, HTTP_RETRY_SAFE);
	dt = cancel_bg(&b, 300);
	print_message("cancel of a stalled download: http_do returned after %.0f ms\n",
		      dt * 1000);
	assert_int_equal(b.rc, -1);
	assert_int_equal(b.e.code, ERR_CANCELED);
	assert_true(dt < 2.5);
	http_resp_release(&b.resp);
	http_uncancel(h);

	/* 3. Mid-upload: a server that accepts the connection (the kernel
	 * does) but never reads: the 64 MiB body stops in the socket
	 * buffers. */
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/upload", ntohs(a.sin_port));
	big = calloc(1, 64u << 20);
	assert_non_null(big);
	memset(&b, 0, sizeof(b));
	b.h = h;
	b.req = get_req(url, HTTP_RETRY_NONE);
	b.req.method = "PUT";
	b.req.body = big;
	b.req.body_len = 64u << 20;
	dt = cancel_bg(&b, 300);
	print_message("cancel of a blocked upload: http_do returned after %.0f ms\n",
		      dt * 1000);
	assert_int_equal(b.rc, -1);
	assert_int_equal(b.e.code, ERR_CANCELED);
	assert_true(dt < 2.5);
	http_resp_release(&b.resp);
	http_uncancel(h);
	close(lfd);
	free(big);

	/* http_pause: sleeps when not cancelled, returns at once when. */
	t0 = now_s();
	assert_int_equal(http_pause(h, 50, &e), 0);
	assert_true(now_s() - t0 >= 0.045);
	assert_int_equal(http_pause(h, 0, &e), 0);
	http_cancel_all(h);
	t0 = now_s();
	assert_int_equal(http_pause(h, 10000, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_true(now_s() - t0 < 0.5);
	http_uncancel(h);
	http_cancel_all(NULL);
	http_uncancel(NULL);
	assert_int_equal(http_canceled(NULL), 0);
	http_free(h);
	srv_stop(s);
}

/* A thread sleeping in http_pause is woken by http_cancel_all. */
struct pause_arg {
	struct http *h;
	int rc;
	struct err e;
};

static void *pause_main(void *arg)
{
	struct pause_arg *p = arg;

	p->rc = http_pause(p->h, 30000, &p->e);
	return NULL;
}

static void test_pause_woken(void **state)
{
	struct http *h = client(NULL, NULL);
	struct pause_arg p;
	pthread_t t;
	double t0;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.h = h;
	assert_int_equal(pthread_create(&t, NULL, pause_main, &p), 0);
	ut_sleep_ms(100);
	t0 = now_s();
	http_cancel_all(h);
	pthread_join(t, NULL);
	assert_int_equal(p.rc, -1);
	assert_int_equal(p.e.code, ERR_CANCELED);
	assert_true(now_s() - t0 < 0.5);
	http_free(h);
}

/* Read the whole file into a malloc'd string. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void test_debug_log_has_no_secrets(void **state)
{
	char path[] = "/tmp/durafs-test-httplog-XXXXXX";
	struct tok t = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0 };
	struct http_opts o;
	struct srv *s = srv_start();
	struct http *h = NULL;
	struct http_resp resp;
	struct http_req req;
	struct err e;
	char url[256], *text;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open(path, &e), 0);
	log_set_level(LOG_LVL_DEBUG);
	memset(&o, 0, sizeof(o));
	o.backoff_initial_ms = 2;
	o.backoff_max_ms = 10;
	o.debug = 1;
	o.token = tok_fn;
	o.token_ud = &t;
	assert_int_equal(http_new(&o, &h, &e), 0);
	snprintf(url, sizeof(url), "%s/upload/x?uploadType=resumable&upload_id=USECRET"
		 "&access_token=QSECRET&name=a%%2Fb", s->base);
	srv_reply(s, 503, NULL, "{\"error\":{\"code\":503,\"message\":\"echo Bearer tok-SECRET-1\"}}");
	srv_reply(s, 401, NULL, NULL);
	srv_reply(s, 200, NULL, "{\"access_token\":\"ya29.RSECRET\"}");
	req = get_req(url, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	assert_int_equal(resp.attempts, 3);
	http_resp_release(&resp);
	srv_reply(s, 404, NULL, "{\"error\":{\"code\":404,\"message\":\"No such object\"}}");
	assert_int_equal(http_do(h, &req, &resp, &e), -1);
	assert_null(strstr(e.msg, "SECRET"));
	assert_non_null(strstr(e.msg, "upload_id=***"));
	http_resp_release(&resp);
	http_free(h);
	log_close();
	log_set_level(LOG_LVL_INFO);
	text = slurp(path);
	assert_non_null(strstr(text, "DEBUG http: retry 1/8: GET http://127.0.0.1:"));
	assert_non_null(strstr(text, "-> 503, waiting"));
	assert_non_null(strstr(text, "-> 401, refreshing the token"));
	assert_non_null(strstr(text, "upload_id=***&access_token=***&name=a%2Fb"));
	assert_non_null(strstr(text, "-> 200 ("));
	if (strstr(text, "SECRET") || strstr(text, "Authorization"))
		fail_msg("secret in the debug log:\n%s", text);
	/* the server did get the token */
	assert_string_equal(rec_header(&s->recs[0], "Authorization"), "Bearer tok-SECRET-1");
	free(text);
	unlink(path);
	srv_stop(s);
}

static void test_redact_url(void **state)
{
	char out[256], tiny[12];

	(void)state;
	http_redact_url("https://h/o?alt=media&access_token=abc&generation=5#frag", out, sizeof(out));
	assert_string_equal(out, "https://h/o?alt=media&access_token=***&generation=5#frag");
	http_redact_url("https://user:pw@h:8080/p?KEY=k&code=c&Upload_Id=u&pageToken=t", out, sizeof(out));
	assert_string_equal(out, "https://user:***@h:8080/p?KEY=***&code=***&Upload_Id=***&pageToken=t");
	http_redact_url("http://127.0.0.1:5/storage/v1/b", out, sizeof(out));
	assert_string_equal(out, "http://127.0.0.1:5/storage/v1/b");
	http_redact_url("http://h/p?x&token=", out, sizeof(out));
	assert_string_equal(out, "http://h/p?x&token=***");
	http_redact_url("http://h/p?access_token=secretsecret", tiny, sizeof(tiny));
	assert_string_equal(tiny, "http://h/p?");
	http_redact_url(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	/* "://" after the query starts is not the authority (found by
	 * tests/fuzz/fuzz_http_err.c: it used to read past the string). */
	http_redact_url("{\"er?rories://u:p@storage/o?uploadtZ", out, sizeof(out));
	assert_string_equal(out, "{\"er?rories://u:p@storage/o?uploadtZ");
	http_redact_url("/p?next=https://u:pw@h/x&token=t", out, sizeof(out));
	assert_string_equal(out, "/p?next=https://u:pw@h/x&token=***");
	http_redact_url("https://h/p?next=https://u:pw@h2/&code=c", out, sizeof(out));
	assert_string_equal(out, "https://h/p?next=https://u:pw@h2/&code=***");
	http_redact_url("HTTPS://u:pw@h/p", out, sizeof(out));
	assert_string_equal(out, "HTTPS://u:***@h/p");
	http_redact_url("://u:pw@h/p?x", out, sizeof(out));
	assert_string_equal(out, "://u:pw@h/p?x");
}

static void check_map(long status, const char *body, int code, const char *reason,
		      int neg_errno)
{
	struct err e;

	assert_int_equal(http_status_to_err(status, body, body ? strlen(body) : 0, &e), -1);
	if (e.code != code)
		fail_msg("HTTP %ld %s: code %s, want %s", status, body ? body : "",
			 err_code_name(e.code), err_code_name(code));
	assert_int_equal(e.http_status, status);
	assert_string_equal(e.reason, reason);
	assert_int_equal(err_to_errno(&e), neg_errno);
}

static const char *gerr(char *buf, size_t n, int code, const char *reason)
{
	snprintf(buf, n, "{\"error\":{\"code\":%d,\"message\":\"m\",\"errors\":"
		 "[{\"domain\":\"global\",\"reason\":\"%s\",\"message\":\"m\"}]}}", code, reason);
	return buf;
}

static void test_status_mapping(void **state)
{
	char b[512];
	struct err e;

	(void)state;
	check_map(400, gerr(b, sizeof(b), 400, "invalid"), ERR_INVAL, "invalid", -EINVAL);
	check_map(400, "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or revoked.\"}",
		  ERR_AUTH, "invalid_grant", -EACCES);
	check_map(400, "{\"error\":\"invalid_request\"}", ERR_INVAL, "invalid_request", -EINVAL);
	check_map(401, "{\"error\":\"invalid_client\",\"error_description\":\"x\"}", ERR_AUTH,
		  "invalid_client", -EACCES);
	check_map(401, NULL, ERR_AUTH, "", -EACCES);
	check_map(403, gerr(b, sizeof(b), 403, "rateLimitExceeded"), ERR_RATE, "rateLimitExceeded", -EIO);
	check_map(403, gerr(b, sizeof(b), 403, "userRateLimitExceeded"), ERR_RATE,
		  "userRateLimitExceeded", -EIO);
	check_map(403, gerr(b, sizeof(b), 403, "quotaExceeded"), ERR_QUOTA, "quotaExceeded", -EDQUOT);
	check_map(403, gerr(b, sizeof(b), 403, "dailyLimitExceeded"), ERR_QUOTA,
		  "dailyLimitExceeded", -EDQUOT);
	check_map(403, gerr(b, sizeof(b), 403, "downloadQuotaExceeded"), ERR_QUOTA,
		  "downloadQuotaExceeded", -EDQUOT);
	check_map(403, gerr(b, sizeof(b), 403, "storageQuotaExceeded"), ERR_NOSPC,
		  "storageQuotaExceeded", -ENOSPC);
	check_map(403, gerr(b, sizeof(b), 403, "authError"), ERR_AUTH, "authError", -EACCES);
	check_map(403, gerr(b, sizeof(b), 403, "insufficientPermissions"), ERR_PERM,
		  "insufficientPermissions", -EACCES);
	check_map(403, "{\"error\":{\"code\":403,\"message\":\"m\",\"status\":\"PERMISSION_DENIED\","
		  "\"details\":[{\"@type\":\"x\",\"reason\":\"ACCESS_TOKEN_SCOPE_INSUFFICIENT\"}]}}",
		  ERR_AUTH, "ACCESS_TOKEN_SCOPE_INSUFFICIENT", -EACCES);
	check_map(403, "{\"error\":{\"code\":403,\"message\":\"m\",\"status\":\"PERMISSION_DENIED\"}}",
		  ERR_PERM, "PERMISSION_DENIED", -EACCES);
	check_map(404, gerr(b, sizeof(b), 404, "notFound"), ERR_NOTFOUND, "notFound", -ENOENT);
	check_map(409, gerr(b, sizeof(b), 409, "conflict"), ERR_EXISTS, "conflict", -EEXIST);
	check_map(410, NULL, ERR_GONE, "", -EIO);
	check_map(412, gerr(b, sizeof(b), 412, "conditionNotMet"), ERR_CONFLICT, "conditionNotMet", -EIO);
	check_map(416, NULL, ERR_RANGE, "", -EINVAL);
	check_map(429, NULL, ERR_RATE, "", -EIO);
	check_map(500, gerr(b, sizeof(b), 500, "backendError"), ERR_HTTP, "backendError", -EIO);
	check_map(503, "", ERR_HTTP, "", -EIO);
	check_map(499, NULL, ERR_HTTP, "", -EIO);
	/* message format */
	snprintf(b, sizeof(b), "{\"error\":{\"code\":404,\"message\":\"No such object: b/o\","
		 "\"errors\":[{\"reason\":\"notFound\"}]}}");
	http_status_to_err(404, b, strlen(b), &e);
	assert_string_equal(e.msg, "HTTP 404 notFound: No such object: b/o");
	snprintf(b, sizeof(b), "{\"error\":\"invalid_grant\",\"error_description\":\"Bad Request\"}");
	http_status_to_err(401, b, strlen(b), &e);
	assert_string_equal(e.msg, "HTTP 401 invalid_grant: Bad Request");
	http_status_to_err(502, NULL, 0, &e);
	assert_string_equal(e.msg, "HTTP 502: (no details)");
	/* reasons that do not fit or carry junk are cut and cleaned */
	snprintf(b, sizeof(b), "{\"error\":{\"errors\":[{\"reason\":\"a\\nb\\u0001"
		 "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"}]}}");
	http_status_to_err(403, b, strlen(b), &e);
	assert_int_equal(strlen(e.reason), sizeof(e.reason) - 1);
	assert_null(strchr(e.reason, '\n'));
	assert_int_equal(http_status_to_err(500, "x", 1, NULL), -1);
}

static void test_non_json_excerpt(void **state)
{
	char body[1200];
	struct err e;
	size_t i;
	const char *colon;

	(void)state;
	snprintf(body, sizeof(body), "<html>\r\n<head><title>502 Bad Gateway</title></head>\n"
		 "\x01\x02\x7f\xff<body>access_token=ZSECRET   ");
	for (i = strlen(body); i < sizeof(body) - 1; i++)
		body[i] = (char)('a' + i % 26);
	body[sizeof(body) - 1] = '\0';
	assert_int_equal(http_status_to_err(502, body, strlen(body), &e), -1);
	assert_int_equal(e.code, ERR_HTTP);
	assert_string_equal(e.reason, "");
	colon = strstr(e.msg, ": ");
	assert_non_null(colon);
	assert_true(strlen(colon + 2) <= 200);
	assert_true(strncmp(e.msg, "HTTP 502: <html> <head><title>502 Bad Gateway</title></head> <body>", 67) == 0);
	for (i = 0; e.msg[i]; i++)
		assert_true(e.msg[i] >= 0x20 && e.msg[i] < 0x7f);
	assert_null(strstr(e.msg, "ZSECRET"));
	/* JSON that is not an error object is an excerpt too */
	assert_int_equal(http_status_to_err(500, "[1,2]", 5, &e), -1);
	assert_string_equal(e.msg, "HTTP 500: [1,2]");
}

struct par {
	struct http *h;
	const char *url;
	int ok;
};

static void *par_main(void *arg)
{
	struct par *p = arg;
	struct http_resp resp;
	struct http_req req = get_req(p->url, HTTP_RETRY_SAFE);
	struct err e;
	int i;

	for (i = 0; i < 25; i++) {
		if (http_do(p->h, &req, &resp, &e) == 0 && resp.body_len == 2 &&
		    strcmp(resp.body, "ok") == 0)
			p->ok++;
		http_resp_release(&resp);
	}
	return NULL;
}

static void test_keepalive_and_threads(void **state)
{
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	struct http_resp resp;
	struct http_req req;
	struct http_stats st;
	struct par p[8];
	pthread_t th[8];
	struct err e;
	char url[128];
	int i, conns;

	(void)state;
	snprintf(url, sizeof(url), "%s/o", s->base);
	req = get_req(url, HTTP_RETRY_SAFE);
	for (i = 0; i < 20; i++) {
		assert_int_equal(http_do(h, &req, &resp, &e), 0);
		http_resp_release(&resp);
	}
	pthread_mutex_lock(&s->mu);
	conns = s->nconns;
	pthread_mutex_unlock(&s->mu);
	assert_int_equal(conns, 1);  /* one kept-alive connection */
	for (i = 0; i < 8; i++) {
		p[i].h = h;
		p[i].url = url;
		p[i].ok = 0;
		assert_int_equal(pthread_create(&th[i], NULL, par_main, &p[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(p[i].ok, 25);
	}
	pthread_mutex_lock(&s->mu);
	conns = s->nconns;
	pthread_mutex_unlock(&s->mu);
	assert_true(conns <= 9);  /* at most one per concurrent handle */
	http_get_stats(h, &st);
	assert_int_equal(st.requests, 220);
	http_free(h);
	srv_stop(s);
}

/* Large transfers: a PUT from an fd and a GET into a sink through http_do,
 * checked end to end with crc32c. DURAFS_HTTP_BENCH_MB sets the size (default
 * 64); when set, each transfer is also timed with bare libcurl (same server,
 * same buffer sizes, no Expect) in alternating rounds, for comparison. */
static size_t raw_write(char *d, size_t sz, size_t n, void *ud)
{
	struct sinkst *k = ud;

	k->crc = ck_crc32c(k->crc, d, sz * n);
	k->n += sz * n;
	return sz * n;
}

static size_t raw_read(char *buf, size_t sz, size_t n, void *ud)
{
	int *fdp = ud;
	ssize_t got = read(*fdp, buf, sz * n);

	return got < 0 ? CURL_READFUNC_ABORT : (size_t)got;
}

/* Seconds for one bare-libcurl PUT (fd rewound) or GET of n bytes. */
static double raw_xfer(struct srv *s, const char *url, int fd, uint64_t n, int put)
{
	struct curl_slist *noexpect = curl_slist_append(NULL, "Expect:");
	CURL *c = curl_easy_init();
	struct sinkst k;
	double t0, dt;

	assert_non_null(c);
	assert_non_null(noexpect);
	memset(&k, 0, sizeof(k));
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, noexpect);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 1L << 20);
	if (put) {
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, raw_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &fd);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)n);
		curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
	} else {
		srv_push(s, ACT_REPLY, 200, NULL, NULL, n);
	}
	t0 = now_s();
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	dt = now_s() - t0;
	if (!put)
		assert_int_equal(k.n, n);
	curl_easy_cleanup(c);
	curl_slist_free_all(noexpect);
	return dt;
}

/* Seconds for one http_do PUT from fd or GET into a crc sink; checked. */
static double http_xfer(struct http *h, struct srv *s, const char *url, int fd,
			uint64_t n, int put)
{
	struct http_resp resp;
	struct http_req req = get_req(url, HTTP_RETRY_SAFE);
	struct sinkst k;
	struct err e;
	double t0, dt;
	int rec;

	memset(&k, 0, sizeof(k));
	if (put) {
		req.method = "PUT";
		req.body_fd = fd;
		req.body_len = n;
	} else {
		srv_push(s, ACT_REPLY, 200, NULL, NULL, n);
		req.sink = sink_fn;
		req.sink_ud = &k;
	}
	rec = srv_nrec(s);
	t0 = now_s();
	assert_int_equal(http_do(h, &req, &resp, &e), 0);
	dt = now_s() - t0;
	if (put) {
		assert_int_equal(s->recs[rec].body_len, n);
		assert_int_equal(s->recs[rec].body_crc, pattern_crc(n));
	} else {
		assert_int_equal(resp.sink_bytes, n);
		assert_int_equal(k.crc, pattern_crc(n));
	}
	http_resp_release(&resp);
	return dt;
}

static void test_large_transfer(void **state)
{
	char path[] = "/tmp/durafs-test-http-big-XXXXXX";
	const char *env = getenv("DURAFS_HTTP_BENCH_MB");
	uint64_t mb = env ? strtoull(env, NULL, 10) : 64, n, off;
	struct srv *s = srv_start();
	struct http *h = client(NULL, NULL);
	char url[128];
	double mbs;
	int fd, round;

	(void)state;
	if (mb == 0)
		mb = 64;
	n = mb << 20;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	for (off = 0; off < n; off += IO_BUF)
		assert_int_equal(write(fd, pattern + off % PAT_LEN, IO_BUF), (ssize_t)IO_BUF);
	snprintf(url, sizeof(url), "%s/upload/big", s->base);
	mbs = (double)n / 1e6;
	for (round = 0; round < (env ? 3 : 1); round++) {
		double hp = http_xfer(h, s, url, fd, n, 1);
		double hg = http_xfer(h, s, url, fd, n, 0);

		print_message("http_do %llu MiB: PUT from fd %.0f MB/s, GET into sink %.0f MB/s\n",
			      (unsigned long long)mb, mbs / hp, mbs / hg);
		if (env) {
			double rp = raw_xfer(s, url, fd, n, 1);
			double rg = raw_xfer(s, url, fd, n, 0);

			print_message("bare libcurl  : PUT from fd %.0f MB/s, GET into sink %.0f MB/s\n",
				      mbs / rp, mbs / rg);
		}
	}
	close(fd);
	http_free(h);
	srv_stop(s);
}

static void test_new_defaults(void **state)
{
	struct http *h = NULL;
	struct http_stats st;
	struct err e;

	(void)state;
	assert_int_equal(http_new(NULL, &h, &e), 0);
	http_get_stats(h, &st);
	assert_int_equal(st.requests, 0);
	http_free(h);
	http_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_defaults),
		cmocka_unit_test(test_get_ok_headers),
		cmocka_unit_test(test_bodies_methods_auth),
		cmocka_unit_test(test_retry_503_429_408),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_parse_retry_after),
		cmocka_unit_test(test_403_rate_vs_forbidden),
		cmocka_unit_test(test_none_tried_once),
		cmocka_unit_test(test_401_refresh),
		cmocka_unit_test(test_reset_mid_reply),
		cmocka_unit_test(test_no_silent_resend),
		cmocka_unit_test(test_sink),
		cmocka_unit_test(test_fd_body_resent),
		cmocka_unit_test(test_max_body),
		cmocka_unit_test(test_308_and_head),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_transport_errors),
		cmocka_unit_test(test_stall_detected),
		cmocka_unit_test(test_cancel_all),
		cmocka_unit_test(test_pause_woken),
		cmocka_unit_test(test_debug_log_has_no_secrets),
		cmocka_unit_test(test_redact_url),
		cmocka_unit_test(test_status_mapping),
		cmocka_unit_test(test_non_json_excerpt),
		cmocka_unit_test(test_keepalive_and_threads),
		cmocka_unit_test(test_large_transfer),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	free(pattern);
	return rc;
}
