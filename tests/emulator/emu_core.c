/* durafs-emulator core: the libmicrohttpd server, request accumulation,
 * routing to services by path prefix, bearer-token enforcement, fault
 * injection, request/byte statistics and the /_emulator/ control API.
 *
 * Request life cycle (one struct emu_conn per HTTP request):
 *   uri_log_cb        raw URI captured (path stays percent-encoded)
 *   first ahc call    route, decide faults / auth / 413 ("begin")
 *   ahc with data     body accumulated (or discarded, or cut)
 *   last ahc call     latency, service or fixed reply, cut_response, queue
 *   completed_cb      conn freed
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "durafs/enc.h"
#include "emu.h"
#include "emu_core_fault.h"

#define EMU_DEFAULT_MAX_BODY ((uint64_t)2 << 30)   /* 2 GiB */
#define EMU_CONTROL_MAX_BODY ((uint64_t)64 << 20)  /* control calls */
#define EMU_CTRL_PREFIX "/_emulator/"
#define EMU_HUGE ((size_t)2 << 20)            /* transparent huge page */
#define EMU_BIG_BODY ((size_t)8 << 20)        /* bodies that get THP advice */
#ifndef EMU_CONN_MEMORY
#define EMU_CONN_MEMORY (1024 * 1024)  /* MHD per-connection pool: read size */
#endif

/* Every service the core routes to, in match order. */
static const struct emu_service *const emu_services[] = {
	&emu_gcs_service,
	&emu_oauth_service,
	&emu_metadata_service,
	&emu_drive_service,
};
#define EMU_NSERVICES (sizeof(emu_services) / sizeof(emu_services[0]))

struct stat_kind {
	char kind[64];
	int status;           /* HTTP status, or -1 for a cut request */
	uint64_t n;
};

struct stat_counter {
	char name[96];
	int64_t value;
};

struct svc_totals {
	atomic_uint_fast64_t requests;
	atomic_uint_fast64_t bytes_received;
	atomic_uint_fast64_t bytes_sent;
};

struct emu {
	struct emu_opts opts;
	char *data_dir;
	char base_url[128];
	int listen_fd;                     /* owned until MHD takes it */
	int family;
	struct MHD_Daemon *mhd;
	atomic_int stopping;
	void *state[EMU_NSERVICES];
	int inited[EMU_NSERVICES];
	struct emu_faults faults;

	pthread_mutex_t stats_mu;
	struct stat_kind *kinds;           /* protected by stats_mu */
	size_t nkinds, capkinds;           /* protected by stats_mu */
	struct stat_counter *counters;     /* protected by stats_mu */
	size_t ncounters, capcounters;     /* protected by stats_mu */
	atomic_uint_fast64_t bytes_received;
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t requests;
	struct svc_totals totals[EMU_NSERVICES];
};

enum conn_mode { MODE_SERVICE = 0, MODE_CONTROL, MODE_FIXED };

struct qparam {
	char *key;
	char *value;
};

struct emu_conn {
	struct emu *e;
	struct MHD_Connection *mc;
	char *path;                 /* raw path, NUL-terminated */
	char *query;                /* raw query, "" when none */
	struct emu_kv *params;
	size_t nparams;
	const char *method;
	int started;
	int mode;
	int svc;                    /* index in emu_services, -1 none */
	char *body;                 /* NULL until data arrives */
	size_t len, cap;
	uint64_t expected;          /* Content-Length or UINT64_MAX */
	uint64_t max_body;
	int body_taken;
	struct emu_resp fixed;      /* MODE_FIXED reply */
	int cut;                    /* a cut rule is armed */
	uint64_t cut_after;
	long latency_ms;
	struct timespec t0;
	char kindbuf[48];           /* "<service>.fault" */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

static void resp_init(struct emu_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static void resp_release(struct emu_resp *r)
{
	int i;

	if (r->body_free)
		r->body_free(r->body_ud);
	else
		free(r->body);
	if (r->fd >= 0)
		close(r->fd);
	for (i = 0; i < r->nheaders; i++) {
		free(r->hname[i]);
		free(r->hvalue[i]);
	}
	resp_init(r);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

void emu_log(const struct emu *e, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n, off;
	ssize_t w;
	size_t done = 0;

	(void)e;
	off = snprintf(buf, sizeof(buf), "durafs-emulator: ");
	va_start(ap, fmt);
	n = vsnprintf(buf + off, sizeof(buf) - (size_t)off - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += off;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	while (done < (size_t)n) {
		w = write(STDERR_FILENO, buf + done, (size_t)n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
}

int emu_verbose(const struct emu *e)
{
	return e ? e->opts.verbose : 0;
}

const char *emu_base_url(const struct emu *e)
{
	return e->base_url;
}

const char *emu_data_dir(const struct emu *e)
{
	return e->data_dir;
}

void *emu_service_state(struct emu *e, const char *name)
{
	size_t i;

	if (!e)
		return NULL;
	for (i = 0; i < EMU_NSERVICES; i++)
		if (e->inited[i] && !strcmp(emu_services[i]->name, name))
			return e->state[i];
	return NULL;
}

/* Sleep ms milliseconds, waking early when the server stops. */
static void sleep_ms(struct emu *e, long ms)
{
	struct timespec ts;

	while (ms > 0 && !atomic_load(&e->stopping)) {
		long step = ms > 50 ? 50 : ms;

		ts.tv_sec = 0;
		ts.tv_nsec = step * 1000000L;
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		ms -= step;
	}
}

/* ------------------------------------------------------------------------ */
/* Percent and form decoding                                                */

char *emu_pct_decode(const char *in, size_t n)
{
	return enc_url_decode(in, n, 0);
}

void emu_kv_free(struct emu_kv *kv, size_t n)
{
	size_t i;

	if (!kv)
		return;
	for (i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

int emu_form_parse(const char *s, size_t n, struct emu_kv **out, size_t *count)
{
	struct emu_kv *kv = NULL, *grown;
	size_t nkv = 0, cap = 0, i = 0;
	int rc = -1;

	*out = NULL;
	*count = 0;
	while (i < n) {
		size_t start = i, eq, end;

		while (i < n && s[i] != '&')
			i++;
		end = i;
		if (i < n)
			i++;
		if (end == start)
			continue;  /* "a=1&&b=2" */
		eq = start;
		while (eq < end && s[eq] != '=')
			eq++;
		if (nkv == cap) {
			cap = cap ? cap * 2 : 8;
			if (cap > 100000)
				goto out;
			grown = realloc(kv, cap * sizeof(*kv));
			if (!grown)
				goto out;
			kv = grown;
		}
		kv[nkv].key = enc_url_decode(s + start, eq - start, 1);
		kv[nkv].value = eq < end ? enc_url_decode(s + eq + 1, end - eq - 1, 1)
					 : strdup("");
		if (!kv[nkv].key || !kv[nkv].value) {
			free(kv[nkv].key);
			free(kv[nkv].value);
			goto out;
		}
		nkv++;
	}
	*out = kv;
	*count = nkv;
	kv = NULL;
	rc = 0;
out:
	emu_kv_free(kv, nkv);
	return rc;
}

const char *emu_kv_get(const struct emu_kv *kv, size_t n, const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(kv[i].key, key))
			return kv[i].value;
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Request accessors                                                        */

const char *emu_req_header(const struct emu_req *req, const char *name)
{
	if (!req->conn || !req->conn->mc)
		return NULL;
	return MHD_lookup_connection_value(req->conn->mc, MHD_HEADER_KIND, name);
}

const char *emu_req_query(const struct emu_req *req, const char *name)
{
	if (!req->conn)
		return NULL;
	return emu_kv_get(req->conn->params, req->conn->nparams, name);
}

char *emu_req_take_body(const struct emu_req *req)
{
	struct emu_conn *c = req->conn;
	char *b;

	if (!c) {
		b = malloc(req->body_len + 1);
		if (b) {
			memcpy(b, req->body ? req->body : "", req->body_len);
			b[req->body_len] = '\0';
		}
		return b;
	}
	if (c->body_taken)
		return NULL;
	if (!c->body)
		return strdup("");
	b = c->body;
	c->body = NULL;
	c->body_taken = 1;
	return b;
}

/* ------------------------------------------------------------------------ */
/* Reply helpers                                                            */

void emu_resp_text(struct emu_resp *r, int status, const char *ctype,
		   const char *body, size_t len)
{
	char *b = malloc(len + 1);

	if (r->body_free)
		r->body_free(r->body_ud);
	else
		free(r->body);
	r->body_free = NULL;
	r->body_ud = NULL;
	r->body = NULL;
	r->body_len = 0;
	r->status = status;
	r->content_type = ctype;
	if (!b) {
		r->status = 500;
		return;
	}
	if (len)
		memcpy(b, body, len);
	b[len] = '\0';
	r->body = b;
	r->body_len = len;
}

void emu_resp_json(struct emu_resp *r, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (!s) {
		emu_resp_text(r, 500, "application/json; charset=UTF-8",
			      "{\"error\":{\"code\":500,\"message\":\"out of memory\"}}", 48);
		return;
	}
	if (r->body_free)
		r->body_free(r->body_ud);
	else
		free(r->body);
	r->body_free = NULL;
	r->body_ud = NULL;
	r->body = s;
	r->body_len = strlen(s);
	r->status = status;
	r->content_type = "application/json; charset=UTF-8";
}

static json_t *google_error(int status, const char *reason, const char *msg)
{
	json_t *item = json_pack("{s:s, s:s, s:s}", "message", msg, "domain", "global",
				 "reason", reason);
	json_t *errs = json_array();

	if (item)
		json_array_append_new(errs, item);
	return json_pack("{s:{s:i, s:s, s:o}}", "error", "code", status, "message", msg,
			 "errors", errs);
}

void emu_resp_error(struct emu_resp *r, int status, const char *reason,
		    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emu_resp_json(r, status, google_error(status, reason ? reason : "invalid", msg));
}

void emu_resp_header(struct emu_resp *r, const char *name, const char *fmt, ...)
{
	char *v = NULL, *n = NULL;
	va_list ap;
	int i;

	va_start(ap, fmt);
	if (vasprintf(&v, fmt, ap) < 0)
		v = NULL;
	va_end(ap);
	n = strdup(name);
	if (!v || !n)
		goto fail;
	/* A header set twice keeps the last value. */
	for (i = 0; i < r->nheaders; i++) {
		if (!strcasecmp(r->hname[i], name)) {
			free(r->hvalue[i]);
			r->hvalue[i] = v;
			free(n);
			return;
		}
	}
	if (r->nheaders >= EMU_MAX_HEADERS) {
		emu_log(NULL, "too many reply headers; dropped %s", name);
		goto fail;
	}
	r->hname[r->nheaders] = n;
	r->hvalue[r->nheaders] = v;
	r->nheaders++;
	return;
fail:
	free(v);
	free(n);
}

void emu_resp_incomplete(struct emu_resp *r, const char *no308, uint64_t persisted)
{
	if (no308 && !strcasecmp(no308, "yes")) {
		emu_resp_text(r, 200, "text/plain", "", 0);
		emu_resp_header(r, "X-HTTP-Status-Code-Override", "308");
	} else {
		emu_resp_text(r, 308, "text/plain", "", 0);
	}
	if (persisted)
		emu_resp_header(r, "Range", "bytes=0-%" PRIu64, persisted - 1);
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */

static void stat_request(struct emu *e, const char *kind, int status)
{
	size_t i;

	pthread_mutex_lock(&e->stats_mu);
	for (i = 0; i < e->nkinds; i++) {
		if (e->kinds[i].status == status && !strcmp(e->kinds[i].kind, kind)) {
			e->kinds[i].n++;
			goto out;
		}
	}
	if (e->nkinds == e->capkinds) {
		size_t cap = e->capkinds ? e->capkinds * 2 : 64;
		struct stat_kind *k = realloc(e->kinds, cap * sizeof(*k));

		if (!k)
			goto out;
		e->kinds = k;
		e->capkinds = cap;
	}
	snprintf(e->kinds[e->nkinds].kind, sizeof(e->kinds[0].kind), "%s", kind);
	e->kinds[e->nkinds].status = status;
	e->kinds[e->nkinds].n = 1;
	e->nkinds++;
out:
	pthread_mutex_unlock(&e->stats_mu);
}

void emu_stat_add(struct emu *e, const char *name, int64_t n)
{
	size_t i;

	if (!e || !name)
		return;
	pthread_mutex_lock(&e->stats_mu);
	for (i = 0; i < e->ncounters; i++) {
		if (!strcmp(e->counters[i].name, name)) {
			e->counters[i].value += n;
			goto out;
		}
	}
	if (e->ncounters == e->capcounters) {
		size_t cap = e->capcounters ? e->capcounters * 2 : 32;
		struct stat_counter *c = realloc(e->counters, cap * sizeof(*c));

		if (!c)
			goto out;
		e->counters = c;
		e->capcounters = cap;
	}
	snprintf(e->counters[e->ncounters].name, sizeof(e->counters[0].name), "%s", name);
	e->counters[e->ncounters].value = n;
	e->ncounters++;
out:
	pthread_mutex_unlock(&e->stats_mu);
}

static json_t *stats_json(struct emu *e)
{
	json_t *o = json_object(), *req = json_object(), *ctr = json_object();
	json_t *svcs = json_object();
	size_t i;
	char st[16];

	if (!o || !req || !ctr || !svcs)
		goto fail;
	pthread_mutex_lock(&e->stats_mu);
	for (i = 0; i < e->nkinds; i++) {
		json_t *k = json_object_get(req, e->kinds[i].kind);

		if (!k) {
			k = json_object();
			json_object_set_new(req, e->kinds[i].kind, k);
		}
		if (e->kinds[i].status < 0)
			snprintf(st, sizeof(st), "cut");
		else
			snprintf(st, sizeof(st), "%d", e->kinds[i].status);
		json_object_set_new(k, st, json_integer((json_int_t)e->kinds[i].n));
	}
	for (i = 0; i < e->ncounters; i++)
		json_object_set_new(ctr, e->counters[i].name,
				    json_integer(e->counters[i].value));
	pthread_mutex_unlock(&e->stats_mu);
	for (i = 0; i < EMU_NSERVICES; i++)
		json_object_set_new(svcs, emu_services[i]->name, json_pack("{s:I, s:I, s:I}",
			"requests", (json_int_t)atomic_load(&e->totals[i].requests),
			"bytes_received", (json_int_t)atomic_load(&e->totals[i].bytes_received),
			"bytes_sent", (json_int_t)atomic_load(&e->totals[i].bytes_sent)));
	json_object_set_new(o, "requests", req);
	json_object_set_new(o, "counters", ctr);
	json_object_set_new(o, "services", svcs);
	json_object_set_new(o, "requests_total",
			    json_integer((json_int_t)atomic_load(&e->requests)));
	json_object_set_new(o, "bytes_received",
			    json_integer((json_int_t)atomic_load(&e->bytes_received)));
	json_object_set_new(o, "bytes_sent",
			    json_integer((json_int_t)atomic_load(&e->bytes_sent)));
	json_object_set_new(o, "faults_fired", emu_faults_fired_json(&e->faults));
	return o;
fail:
	json_decref(o);
	json_decref(req);
	json_decref(ctr);
	json_decref(svcs);
	return NULL;
}

static void stats_clear(struct emu *e)
{
	size_t i;

	pthread_mutex_lock(&e->stats_mu);
	e->nkinds = 0;
	e->ncounters = 0;
	pthread_mutex_unlock(&e->stats_mu);
	atomic_store(&e->bytes_received, 0);
	atomic_store(&e->bytes_sent, 0);
	atomic_store(&e->requests, 0);
	for (i = 0; i < EMU_NSERVICES; i++) {
		atomic_store(&e->totals[i].requests, 0);
		atomic_store(&e->totals[i].bytes_received, 0);
		atomic_store(&e->totals[i].bytes_sent, 0);
	}
}

/* ------------------------------------------------------------------------ */
/* Faults consulted by services                                             */

static int service_fault(struct emu *e, const struct emu_req *req, int kind,
			 struct emu_fault_rule *r)
{
	if (!e || !req || !req->method || !req->path)
		return 0;
	return emu_faults_take(&e->faults, kind, req->method, req->path,
			       req->query ? req->query : "", UINT64_MAX, r);
}

int emu_fault_short308(struct emu *e, const struct emu_req *req, uint64_t *persist_less)
{
	struct emu_fault_rule r;

	if (!service_fault(e, req, EMU_FAULT_SHORT308, &r))
		return 0;
	if (persist_less)
		*persist_less = r.persist_less;
	return 1;
}

int emu_fault_page_cap(struct emu *e, const struct emu_req *req, long *max_items)
{
	struct emu_fault_rule r;

	if (!service_fault(e, req, EMU_FAULT_PAGE_CAP, &r))
		return 0;
	if (max_items)
		*max_items = r.max;
	return 1;
}

int emu_fault_expire_session(struct emu *e, const struct emu_req *req)
{
	return service_fault(e, req, EMU_FAULT_EXPIRE_SESSION, NULL);
}

/* ------------------------------------------------------------------------ */
/* Sending a reply                                                          */

/* Source of a reply body cut after `limit` bytes (cut_response faults). */
struct cut_src {
	struct emu_resp r;      /* body / fd owned here */
	uint64_t limit;
};

static ssize_t cut_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct cut_src *s = cls;
	size_t n;
	ssize_t got;

	if (pos >= s->limit)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	n = max;
	if ((uint64_t)n > s->limit - pos)
		n = (size_t)(s->limit - pos);
	if (s->r.fd >= 0) {
		do
			got = pread(s->r.fd, buf, n, s->r.off + (off_t)pos);
		while (got < 0 && errno == EINTR);
		return got > 0 ? got : MHD_CONTENT_READER_END_WITH_ERROR;
	}
	memcpy(buf, s->r.body + pos, n);
	return (ssize_t)n;
}

static void cut_free(void *cls)
{
	struct cut_src *s = cls;

	resp_release(&s->r);
	free(s);
}

static void log_request(struct emu_conn *c, int status, const char *kind, uint64_t sent)
{
	const char *q = c->query && c->query[0] ? c->query : NULL;
	int secret = q && (strstr(q, "token") || strstr(q, "assertion") ||
			   strstr(q, "secret") || strstr(q, "key="));

	emu_log(c->e, "%s %s%s%s -> %d %s in=%zu out=%llu %.1fms", c->method, c->path,
		q ? "?" : "", q ? (secret ? "<redacted>" : q) : "", status,
		kind, c->len, (unsigned long long)sent, ms_since(&c->t0));
}

static const char *default_kind(struct emu_conn *c)
{
	if (c->mode == MODE_CONTROL)
		return "control";
	return c->svc >= 0 ? emu_services[c->svc]->name : "unrouted";
}

/* Queue r (consumed) on c's connection; counts stats. */
static enum MHD_Result send_resp(struct emu_conn *c, struct emu_resp *r)
{
	struct emu *e = c->e;
	struct MHD_Response *mr = NULL;
	struct emu_fault_rule rule;
	uint64_t body_len;
	const char *kind = r->kind ? r->kind : default_kind(c);
	enum MHD_Result ret = MHD_NO;
	int i, status;

	if (r->status < 100 || r->status > 599) {
		emu_log(e, "service %s gave no valid status (%d) for %s %s", kind, r->status,
			c->method, c->path);
		resp_release(r);
		emu_resp_error(r, 500, "backendError", "emulator: no reply status");
		r->kind = kind;
	}
	if (r->fd < 0 && !r->body && r->body_len) {
		emu_log(e, "service %s set body_len without a body", kind);
		r->body_len = 0;
	}
	status = r->status;
	body_len = r->fd >= 0 ? r->len : r->body_len;

	if (c->mode != MODE_CONTROL &&
	    emu_faults_take(&e->faults, EMU_FAULT_CUT_RESPONSE, c->method, c->path,
			    c->query, body_len, &rule)) {
		struct cut_src *s = malloc(sizeof(*s));

		if (!s)
			goto out;
		s->r = *r;
		s->limit = rule.after_bytes;
		/* headers stay in r (copied below), body/fd move to s */
		for (i = 0; i < s->r.nheaders; i++) {
			s->r.hname[i] = NULL;
			s->r.hvalue[i] = NULL;
		}
		s->r.nheaders = 0;
		r->body = NULL;
		r->body_free = NULL;
		r->body_ud = NULL;
		r->fd = -1;
		mr = MHD_create_response_from_callback(body_len, 256 * 1024, cut_reader, s,
						       cut_free);
		if (!mr) {
			cut_free(s);
			goto out;
		}
		body_len = rule.after_bytes;
	} else if (r->fd >= 0) {
		mr = MHD_create_response_from_fd_at_offset64(r->len, r->fd, (int64_t)r->off);
		if (!mr)
			goto out;
		r->fd = -1;  /* MHD closes it */
	} else if (r->body && r->body_len) {
		if (r->body_free)
			mr = MHD_create_response_from_buffer_with_free_callback_cls(
				r->body_len, r->body, r->body_free, r->body_ud);
		else
			mr = MHD_create_response_from_buffer_with_free_callback_cls(
				r->body_len, r->body, free, r->body);
		if (!mr)
			goto out;
		r->body = NULL;
		r->body_free = NULL;
		r->body_ud = NULL;
	} else {
		mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (!mr)
			goto out;
	}
	for (i = 0; i < r->nheaders; i++) {
		if (!strcasecmp(r->hname[i], "Content-Length") ||
		    !strcasecmp(r->hname[i], "Transfer-Encoding"))
			continue;
		if (MHD_add_response_header(mr, r->hname[i], r->hvalue[i]) != MHD_YES)
			emu_log(e, "could not add reply header %s", r->hname[i]);
	}
	if (!MHD_get_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE) && status != 204)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
					r->content_type ? r->content_type
							: "application/json; charset=UTF-8");
	ret = MHD_queue_response(c->mc, (unsigned int)status, mr);
	if (ret != MHD_YES)
		emu_log(e, "could not queue the reply to %s %s", c->method, c->path);
out:
	if (mr)
		MHD_destroy_response(mr);
	if (c->mode != MODE_CONTROL) {
		atomic_fetch_add(&e->bytes_sent, body_len);
		atomic_fetch_add(&e->requests, 1);
		if (c->svc >= 0) {
			atomic_fetch_add(&e->totals[c->svc].bytes_sent, body_len);
			atomic_fetch_add(&e->totals[c->svc].requests, 1);
		}
		stat_request(e, kind, status);
	}
	if (e->opts.verbose)
		log_request(c, status, kind, body_len);
	resp_release(r);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* The control API: /_emulator/...                                          */

static json_t *parse_json_body(struct emu_conn *c, struct emu_resp *r)
{
	json_error_t jerr;
	json_t *j;

	if (!c->len) {
		j = json_object();
		return j;
	}
	j = json_loadb(c->body, c->len, 0, &jerr);
	if (!j)
		emu_resp_error(r, 400, "parseError", "malformed JSON body: %s (line %d)",
			       jerr.text, jerr.line);
	return j;
}

static void do_reset(struct emu *e)
{
	size_t i;

	emu_faults_clear(&e->faults);
	for (i = 0; i < EMU_NSERVICES; i++)
		if (e->inited[i] && emu_services[i]->reset)
			emu_services[i]->reset(e, e->state[i]);
	stats_clear(e);
}

static void handle_control(struct emu_conn *c, struct emu_req *req, struct emu_resp *r)
{
	struct emu *e = c->e;
	const char *sub = c->path + strlen(EMU_CTRL_PREFIX);
	char why[512];
	json_t *j = NULL;
	size_t i;

	r->kind = "control";
	if (!strcmp(sub, "stats")) {
		if (strcmp(c->method, "GET")) {
			emu_resp_error(r, 405, "methodNotAllowed", "use GET for stats");
			return;
		}
		j = stats_json(e);
		emu_resp_json(r, j ? 200 : 500, j ? j : json_object());
		return;
	}
	if (!strcmp(sub, "reset")) {
		if (strcmp(c->method, "POST")) {
			emu_resp_error(r, 405, "methodNotAllowed", "use POST for reset");
			return;
		}
		do_reset(e);
		emu_resp_json(r, 200, json_pack("{s:b}", "reset", 1));
		return;
	}
	if (!strcmp(sub, "health")) {
		emu_resp_json(r, 200, json_pack("{s:b, s:s}", "ok", 1, "url", e->base_url));
		return;
	}
	if (!strcmp(sub, "faults")) {
		if (!strcmp(c->method, "GET")) {
			j = emu_faults_list(&e->faults);
			emu_resp_json(r, j ? 200 : 500, j ? j : json_object());
			return;
		}
		if (strcmp(c->method, "POST")) {
			emu_resp_error(r, 405, "methodNotAllowed", "use GET or POST for faults");
			return;
		}
		j = parse_json_body(c, r);
		if (!j)
			return;
		if (emu_faults_apply(&e->faults, j, why, sizeof(why)) < 0) {
			json_decref(j);
			emu_resp_error(r, 400, "invalid", "faults: %s", why);
			return;
		}
		json_decref(j);
		j = emu_faults_list(&e->faults);
		emu_resp_json(r, j ? 200 : 500, j ? j : json_object());
		return;
	}
	for (i = 0; i < EMU_NSERVICES; i++) {
		const char *name = emu_services[i]->name;
		size_t nl = strlen(name);

		if (strncmp(sub, name, nl) || (sub[nl] != '/' && sub[nl] != '\0'))
			continue;
		if (!e->inited[i] || !emu_services[i]->control)
			break;
		req->service = name;
		if (emu_services[i]->control(e, e->state[i], sub[nl] ? sub + nl + 1 : "",
					     req, r) < 0 || !r->status) {
			resp_release(r);
			emu_resp_error(r, 404, "notFound", "no control call %s", c->path);
		}
		if (!r->kind)
			r->kind = "control";
		return;
	}
	emu_resp_error(r, 404, "notFound", "no control call %s", c->path);
}

/* ------------------------------------------------------------------------ */
/* Routing and the MHD callbacks                                            */

static int prefix_match(const char *prefix, const char *path)
{
	size_t n = strlen(prefix);

	if (!strcmp(prefix, "/"))
		return !strcmp(path, "/");
	if (strncmp(prefix, path, n))
		return 0;
	return prefix[n - 1] == '/' || path[n] == '\0' || path[n] == '/';
}

static int route(const char *path)
{
	size_t i;
	const char *const *p;

	for (i = 0; i < EMU_NSERVICES; i++)
		for (p = emu_services[i]->prefixes; p && *p; p++)
			if (prefix_match(*p, path))
				return (int)i;
	return -1;
}

static const char *bearer_of(struct emu_conn *c)
{
	const char *a = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);

	if (!a)
		return NULL;
	while (*a == ' ')
		a++;
	if (strncasecmp(a, "Bearer ", 7))
		return NULL;
	a += 7;
	while (*a == ' ')
		a++;
	return *a ? a : NULL;
}

static void status_fault_reply(struct emu_resp *r, const struct emu_fault_rule *f)
{
	const char *reason = f->reason;

	if (!reason[0]) {
		switch (f->status) {
		case 400: reason = "invalid"; break;
		case 401: reason = "authError"; break;
		case 403: reason = "rateLimitExceeded"; break;
		case 404: reason = "notFound"; break;
		case 408: reason = "requestTimeout"; break;
		case 409: reason = "conflict"; break;
		case 410: reason = "gone"; break;
		case 412: reason = "conditionNotMet"; break;
		case 429: reason = "rateLimitExceeded"; break;
		case 503: reason = "backendError"; break;
		default: reason = f->status >= 500 ? "backendError" : "invalid"; break;
		}
	}
	emu_resp_error(r, f->status, reason, "%s",
		       f->message[0] ? f->message : "injected fault");
	if (f->retry_after >= 0)
		emu_resp_header(r, "Retry-After", "%ld", f->retry_after);
}

/* First call for a request: decide what happens to it. Returns MHD_YES, or
 * MHD_NO to close the connection. */
static enum MHD_Result begin(struct emu_conn *c)
{
	struct emu *e = c->e;
	struct emu_fault_rule rule;
	const char *cl, *bearer;
	char *end = NULL;
	const struct emu_service *svc;

	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	c->expected = UINT64_MAX;
	cl = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		errno = 0;
		unsigned long long v = strtoull(cl, &end, 10);

		if (!errno && end != cl && !*end)
			c->expected = v;
	}

	if (!strncmp(c->path, EMU_CTRL_PREFIX, strlen(EMU_CTRL_PREFIX))) {
		c->mode = MODE_CONTROL;
		c->max_body = EMU_CONTROL_MAX_BODY;
	} else {
		c->mode = MODE_SERVICE;
		c->max_body = e->opts.max_body;
		c->svc = route(c->path);
	}
	if (c->expected != UINT64_MAX && c->expected > c->max_body) {
		struct emu_resp r;
		resp_init(&r);
		emu_resp_error(&r, 413, "uploadTooLarge",
			       "request body of %llu bytes exceeds the emulator's cap of %llu",
			       (unsigned long long)c->expected,
			       (unsigned long long)c->max_body);
		r.kind = c->mode == MODE_CONTROL ? "control" : "core.too_large";
		return send_resp(c, &r);  /* MHD closes after an early reply */
	}
	if (emu_form_parse(c->query, strlen(c->query), &c->params, &c->nparams) < 0) {
		c->mode = MODE_FIXED;
		emu_resp_error(&c->fixed, 400, "invalid", "malformed query string");
		c->fixed.kind = "core.bad_request";
		return MHD_YES;
	}
	if (c->mode == MODE_CONTROL)
		return MHD_YES;
	if (c->svc < 0) {
		c->mode = MODE_FIXED;
		emu_resp_error(&c->fixed, 404, "notFound", "Not Found: %s %s", c->method,
			       c->path);
		c->fixed.kind = "core.not_found";
		return MHD_YES;
	}
	svc = emu_services[c->svc];
	if (emu_faults_take(&e->faults, EMU_FAULT_LATENCY, c->method, c->path, c->query,
			    UINT64_MAX, &rule))
		c->latency_ms = rule.ms;
	if (emu_faults_take(&e->faults, EMU_FAULT_STATUS, c->method, c->path, c->query,
			    UINT64_MAX, &rule)) {
		c->mode = MODE_FIXED;
		status_fault_reply(&c->fixed, &rule);
		snprintf(c->kindbuf, sizeof(c->kindbuf), "%s.fault", svc->name);
		c->fixed.kind = c->kindbuf;
		return MHD_YES;
	}
	if (svc->needs_auth && !e->opts.no_auth) {
		bearer = bearer_of(c);
		if (!bearer || !emu_oauth_token_valid(e, bearer)) {
			c->mode = MODE_FIXED;
			if (!bearer)
				emu_resp_error(&c->fixed, 401, "required",
					       "Anonymous caller: Login Required.");
			else
				emu_resp_error(&c->fixed, 401, "authError",
					       "Invalid Credentials");
			emu_resp_header(&c->fixed, "WWW-Authenticate",
					"Bearer realm=\"https://accounts.google.com/\"");
			c->fixed.kind = "core.unauthorized";
			return MHD_YES;
		}
	}
	if (emu_faults_take(&e->faults, EMU_FAULT_CUT, c->method, c->path, c->query,
			    c->expected, &rule)) {
		c->cut = 1;
		c->cut_after = rule.after_bytes;
	}
	return MHD_YES;
}

static void fill_req(struct emu_conn *c, struct emu_req *req)
{
	memset(req, 0, sizeof(*req));
	req->method = c->method;
	req->path = c->path;
	req->query = c->query;
	req->body = c->body ? c->body : "";
	req->body_len = c->len;
	req->conn = c;
	req->bearer = c->mc ? bearer_of(c) : NULL;
	req->service = c->svc >= 0 ? emu_services[c->svc]->name : NULL;
}

/* Ask for transparent huge pages on the 2 MiB-aligned part of a large
 * buffer: receiving a 1 GiB body otherwise spends most of its time in
 * 4 KiB page faults. Advisory; failures are ignored. */
static void body_advise(char *b, size_t cap)
{
	uintptr_t start = ((uintptr_t)b + EMU_HUGE - 1) & ~(uintptr_t)(EMU_HUGE - 1);
	uintptr_t end = ((uintptr_t)b + cap) & ~(uintptr_t)(EMU_HUGE - 1);

	if (cap >= EMU_BIG_BODY && end > start)
		madvise((void *)start, end - start, MADV_HUGEPAGE);
}

/* Grow c->body to hold at least need bytes plus a NUL. The buffer is
 * always malloc-compatible (services free() it). */
static int body_reserve(struct emu_conn *c, size_t need)
{
	size_t cap;
	char *b;
	void *p = NULL;

	if (need + 1 <= c->cap)
		return 0;
	if (c->expected != UINT64_MAX && need <= c->expected && c->cap == 0)
		cap = (size_t)c->expected + 1;
	else
		cap = c->cap ? c->cap * 2 : 64 * 1024;
	while (cap < need + 1)
		cap *= 2;
	if (!c->body && cap >= EMU_BIG_BODY) {
		if (posix_memalign(&p, EMU_HUGE, cap))
			return -1;
		b = p;
	} else {
		b = realloc(c->body, cap);
		if (!b)
			return -1;
	}
	body_advise(b, cap);
	c->body = b;
	c->cap = cap;
	return 0;
}

/* Deliver a cut request's partial body to its service, then close. */
static enum MHD_Result do_cut(struct emu_conn *c)
{
	struct emu *e = c->e;
	struct emu_req req;
	struct emu_resp r;
	const struct emu_service *svc = emu_services[c->svc];

	if (body_reserve(c, c->len) < 0)
		return MHD_NO;
	c->body[c->len] = '\0';
	fill_req(c, &req);
	req.truncated = 1;
	resp_init(&r);
	svc->handle(e, e->state[c->svc], &req, &r);
	stat_request(e, r.kind ? r.kind : svc->name, -1);
	atomic_fetch_add(&e->requests, 1);
	atomic_fetch_add(&e->totals[c->svc].requests, 1);
	if (e->opts.verbose)
		log_request(c, 0, "cut", 0);
	resp_release(&r);
	return MHD_NO;
}

static enum MHD_Result on_data(struct emu_conn *c, const char *data, size_t n)
{
	struct emu *e = c->e;
	size_t take = n;
	int cut_now = 0;

	if (c->cut) {
		uint64_t left = c->cut_after - c->len;

		if ((uint64_t)take >= left) {
			take = (size_t)left;
			cut_now = 1;
		}
	}
	if (c->mode != MODE_CONTROL) {
		atomic_fetch_add(&e->bytes_received, take);
		if (c->svc >= 0)
			atomic_fetch_add(&e->totals[c->svc].bytes_received, take);
	}
	if (c->mode == MODE_FIXED) {
		c->len += take;
		return MHD_YES;
	}
	if ((uint64_t)c->len + take > c->max_body) {
		emu_log(e, "%s %s: request body over the cap of %llu bytes; closing",
			c->method, c->path, (unsigned long long)c->max_body);
		return MHD_NO;
	}
	if (take) {
		if (body_reserve(c, c->len + take) < 0) {
			emu_log(e, "%s %s: out of memory for a %zu-byte body", c->method,
				c->path, c->len + take);
			return MHD_NO;
		}
		memcpy(c->body + c->len, data, take);
		c->len += take;
	}
	if (cut_now)
		return do_cut(c);
	return MHD_YES;
}

static enum MHD_Result finish(struct emu_conn *c)
{
	struct emu *e = c->e;
	struct emu_req req;
	struct emu_resp r;
	const struct emu_service *svc;

	if (c->latency_ms)
		sleep_ms(e, c->latency_ms);
	if (c->mode == MODE_FIXED) {
		r = c->fixed;
		resp_init(&c->fixed);
		return send_resp(c, &r);
	}
	if (c->body)
		c->body[c->len] = '\0';
	fill_req(c, &req);
	resp_init(&r);
	if (c->mode == MODE_CONTROL) {
		handle_control(c, &req, &r);
		return send_resp(c, &r);
	}
	svc = emu_services[c->svc];
	if (svc->handle(e, e->state[c->svc], &req, &r) < 0) {
		resp_release(&r);
		emu_resp_error(&r, 404, "notFound", "Not Found: %s %s", c->method, c->path);
		r.kind = "core.not_found";
	}
	return send_resp(c, &r);
}

static enum MHD_Result ahc(void *cls, struct MHD_Connection *mc, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	struct emu_conn *c = *con_cls;

	(void)cls;
	(void)url;
	(void)version;
	if (!c)
		return MHD_NO;  /* no URI captured: out of memory */
	if (!c->started) {
		c->started = 1;
		c->mc = mc;
		c->method = method;
		return begin(c);
	}
	if (*upload_data_size) {
		enum MHD_Result ret = on_data(c, upload_data, *upload_data_size);

		*upload_data_size = 0;
		return ret;
	}
	return finish(c);
}

static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *mc)
{
	struct emu_conn *c = calloc(1, sizeof(*c));
	const char *p = uri, *q;

	(void)mc;
	if (!c)
		return NULL;
	c->e = cls;
	c->svc = -1;
	resp_init(&c->fixed);
	/* absolute-form request target: skip scheme and authority */
	if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
		p = strstr(p, "://") + 3;
		p = strchr(p, '/');
		if (!p)
			p = "/";
	}
	q = strchr(p, '?');
	c->path = q ? strndup(p, (size_t)(q - p)) : strdup(p);
	c->query = strdup(q ? q + 1 : "");
	if (!c->path || !c->query) {
		free(c->path);
		free(c->query);
		free(c);
		return NULL;
	}
	return c;
}

static void completed_cb(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct emu_conn *c = *con_cls;

	(void)cls;
	(void)mc;
	(void)toe;
	if (!c)
		return;
	free(c->path);
	free(c->query);
	emu_kv_free(c->params, c->nparams);
	free(c->body);
	resp_release(&c->fixed);
	free(c);
	*con_cls = NULL;
}

static size_t unescape_identity(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	struct emu *e = cls;
	char buf[1024];
	size_t n;

	if (!e->opts.verbose)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	emu_log(e, "mhd: %s", buf);
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */

/* Bind the listening socket for "host:port" ("[v6]:port" too). */
static int bind_listen(struct emu *e, const char *spec, char *err, size_t errsz)
{
	char host[256];
	const char *colon, *port;
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, rc, portnum;

	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - spec - 1) >= sizeof(host)) {
			snprintf(err, errsz, "--listen %s: expected [ADDR]:PORT", spec);
			return -1;
		}
		memcpy(host, spec + 1, (size_t)(rb - spec - 1));
		host[rb - spec - 1] = '\0';
		port = rb + 2;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
			snprintf(err, errsz, "--listen %s: expected ADDR:PORT", spec);
			return -1;
		}
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	{
		char *end = NULL;
		long pn;

		errno = 0;
		pn = strtol(port, &end, 10);
		if (errno || end == port || *end || pn < 0 || pn > 65535) {
			snprintf(err, errsz, "--listen %s: the port must be 0..65535", spec);
			return -1;
		}
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, errsz, "--listen %s: %s (a numeric address is needed)", spec,
			 gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto sysfail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto sysfail;
	e->family = ai->ai_family;
	portnum = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ai->ai_family == AF_INET6)
		snprintf(e->base_url, sizeof(e->base_url), "http://[%s]:%d",
			 (!strcmp(host, "::") ? "::1" : host), portnum);
	else
		snprintf(e->base_url, sizeof(e->base_url), "http://%s:%d",
			 (!strcmp(host, "0.0.0.0") ? "127.0.0.1" : host), portnum);
	freeaddrinfo(ai);
	e->listen_fd = fd;
	return 0;
sysfail:
	snprintf(err, errsz, "--listen %s: %s", spec, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return -1;
}

struct emu *emu_new(const struct emu_opts *o, char *err, size_t errsz)
{
	struct emu *e = calloc(1, sizeof(*e));
	json_error_t jerr;
	json_t *fj = NULL, *body = NULL;
	char why[512];
	size_t i;

	if (!e) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	e->opts = *o;
	e->listen_fd = -1;
	if (!e->opts.max_body)
		e->opts.max_body = EMU_DEFAULT_MAX_BODY;
	pthread_mutex_init(&e->stats_mu, NULL);
	if (emu_faults_init(&e->faults, o->seed) < 0) {
		snprintf(err, errsz, "cannot initialise the fault table");
		free(e);
		return NULL;
	}
	if (o->data_dir) {
		e->data_dir = strdup(o->data_dir);
		if (!e->data_dir) {
			snprintf(err, errsz, "out of memory");
			goto fail;
		}
	}
	e->opts.data_dir = e->data_dir;
	e->opts.faults = NULL;
	e->opts.listen = NULL;
	if (bind_listen(e, o->listen ? o->listen : "127.0.0.1:0", err, errsz) < 0)
		goto fail;
	if (o->faults) {
		fj = json_loads(o->faults, 0, &jerr);
		if (!fj) {
			snprintf(err, errsz, "--faults: malformed JSON: %s (line %d)", jerr.text,
				 jerr.line);
			goto fail;
		}
		/* Either a rules array or a control body ({"rules": [...]}). */
		body = json_is_array(fj) ? json_pack("{s:O}", "rules", fj) : json_incref(fj);
		if (!body || emu_faults_apply(&e->faults, body, why, sizeof(why)) < 0) {
			snprintf(err, errsz, "--faults: %s", body ? why : "out of memory");
			goto fail;
		}
		json_decref(body);
		body = NULL;
		json_decref(fj);
		fj = NULL;
	}
	for (i = 0; i < EMU_NSERVICES; i++) {
		e->state[i] = NULL;
		if (emu_services[i]->init && emu_services[i]->init(e, &e->state[i]) < 0) {
			snprintf(err, errsz, "service %s failed to initialise%s",
				 emu_services[i]->name,
				 e->data_dir ? " (is the data dir readable and valid?)" : "");
			goto fail;
		}
		e->inited[i] = 1;
	}
	return e;
fail:
	json_decref(fj);
	json_decref(body);
	emu_free(e);
	return NULL;
}

int emu_start(struct emu *e, char *err, size_t errsz)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	unsigned int threads = e->opts.threads > 0 ? (unsigned int)e->opts.threads : 0;

	if (threads)
		flags |= MHD_USE_EPOLL;
	else
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	if (e->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct MHD_OptionItem pool[] = {
		{ MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};

	if (!threads)
		pool[0].option = MHD_OPTION_END;
	e->mhd = MHD_start_daemon(flags, 0, NULL, NULL, ahc, e,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, e,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)e->listen_fd,
		MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, e,
		MHD_OPTION_NOTIFY_COMPLETED, completed_cb, e,
		MHD_OPTION_UNESCAPE_CALLBACK, unescape_identity, e,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)EMU_CONN_MEMORY,
		MHD_OPTION_CONNECTION_MEMORY_INCREMENT, (size_t)(64 * 1024),
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)600,
		MHD_OPTION_ARRAY, pool,
		MHD_OPTION_END);
	if (!e->mhd) {
		snprintf(err, errsz, "cannot start the HTTP server on %s", e->base_url);
		return -1;
	}
	e->listen_fd = -1;  /* MHD owns and closes it */
	return 0;
}

void emu_free(struct emu *e)
{
	size_t i;

	if (!e)
		return;
	atomic_store(&e->stopping, 1);
	if (e->mhd)
		MHD_stop_daemon(e->mhd);
	if (e->listen_fd >= 0)
		close(e->listen_fd);
	for (i = EMU_NSERVICES; i-- > 0;)
		if (e->inited[i] && emu_services[i]->fini)
			emu_services[i]->fini(e, e->state[i]);
	emu_faults_release(&e->faults);
	pthread_mutex_destroy(&e->stats_mu);
	free(e->kinds);
	free(e->counters);
	free(e->data_dir);
	free(e);
}
