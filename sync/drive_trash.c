/* Drive trash tools (include/durafs/drive.h): list the trash through every
 * page, empty it, and delete many items for good through batch requests
 * (multipart/mixed, up to 100 calls each) with several batches in flight,
 * rate-limited calls retried in later batches under the backend's pacer.
 * Used by the backend's purge op and by `durafs trash`. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "durafs/clock.h"
#include "durafs/drive.h"
#include "durafs/enc.h"
#include "durafs/http.h"
#include "durafs/log.h"
#include "drive_i.h"

#define TAG "drive"
#define ITEM_MAX_ATTEMPTS 10     /* transient failures of one call */
#define ITEM_MAX_RATE 200        /* rate-limited answers of one call */

int drive_trash_list(struct be *b, drive_file_fn fn, void *ud, struct err *err)
{
	struct drive *d = (struct drive *)b;
	char root[BE_ID_MAX];

	/* The root fixes which drive's trash this is. */
	if (drive_root(d, root, err) < 0)
		return -1;
	if (drive_list_q(d, "trashed = true", d->page_size, 1, fn, ud, err) < 0) {
		err_prefix(err, "listing the trash");
		return -1;
	}
	return 0;
}

int drive_empty_trash(struct be *b, struct err *err)
{
	struct drive *d = (struct drive *)b;
	struct http_resp resp = { 0 };
	struct http_req req;
	struct drive_sb u = { 0 };
	char root[BE_ID_MAX], *url = NULL;
	int rc = -1;

	if (drive_root(d, root, err) < 0)
		return -1;
	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/trash");
	pthread_mutex_lock(&d->root_mu);
	if (d->drive_id[0]) {
		drive_sb_add(&u, "?driveId=");
		drive_sb_enc(&u, d->drive_id);
	}
	pthread_mutex_unlock(&d->root_mu);
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	memset(&req, 0, sizeof(req));
	req.method = "DELETE";
	req.url = url;
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;
	if (drive_do(d, &req, 1, &resp, err) < 0) {
		err_prefix(err, "emptying the trash");
		goto out;
	}
	rc = 0;
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* --- batch deletes ----------------------------------------------------------- */

struct del {
	struct drive *d;
	const char *const *ids;
	const uint64_t *sizes;
	size_t n;

	pthread_mutex_t mu;       /* protects everything below */
	pthread_cond_t cv;        /* queue, counters or stop changed */
	size_t *queue;            /* indices waiting for a batch (FIFO ring) */
	size_t qhead, qlen;
	int *attempts, *rates;
	long *last_status;
	char (*last_reason)[64];
	size_t left;              /* items not final */
	size_t k;                 /* calls per batch now: shrinks to what the
				   * server let through when some calls are
				   * rate-limited, grows back on clean replies */
	size_t k_limit;           /* batch size limit: what the server took of
				   * the last refused batch (its burst), up by
				   * a quarter after 3 clean batches at it */
	unsigned clean_at_limit;
	size_t k_safe;            /* largest batch that went through clean */
	double rate;              /* calls/s we allow ourselves; 0 = unpaced */
	int64_t next_ms;          /* monotonic: the next batch starts then */
	int64_t start_ms;
	uint64_t accepted;        /* calls the server took (not rate-limited) */
	uint64_t done, bytes, failed;
	int stop;
};

static void q_push(struct del *x, size_t i)
{
	x->queue[(x->qhead + x->qlen) % x->n] = i;
	x->qlen++;
}

static size_t q_pop(struct del *x)
{
	size_t i = x->queue[x->qhead];

	x->qhead = (x->qhead + 1) % x->n;
	x->qlen--;
	return i;
}

/* Item i is final (mu held). */
static void finish(struct del *x, size_t i, long status, const char *reason)
{
	x->last_status[i] = status;
	snprintf(x->last_reason[i], sizeof(x->last_reason[i]), "%s", reason ? reason : "");
	if ((status >= 200 && status < 300) || status == 404) {
		x->done++;
		x->bytes += x->sizes ? x->sizes[i] : 0;
	} else {
		x->failed++;
		log_debug(TAG, "delete %s: HTTP %ld %s", x->ids[i], status, reason ? reason : "");
	}
	x->left--;
}

/* Item i failed transiently (mu held): again later, or final. */
static void again(struct del *x, size_t i, long status, const char *reason, int rate)
{
	if (rate ? ++x->rates[i] > ITEM_MAX_RATE : ++x->attempts[i] > ITEM_MAX_ATTEMPTS) {
		finish(x, i, status, reason);
		return;
	}
	x->last_status[i] = status;
	snprintf(x->last_reason[i], sizeof(x->last_reason[i]), "%s", reason ? reason : "");
	q_push(x, i);
}

static int reason_is_rate(const char *r)
{
	return strcmp(r, "rateLimitExceeded") == 0 || strcmp(r, "userRateLimitExceeded") == 0 ||
	       strcmp(r, "RATE_LIMIT_EXCEEDED") == 0;
}

/* Send one batch of items idx[0..k); apply the results (takes mu). */
static void send_batch(struct del *x, const size_t *idx, size_t k)
{
	struct drive *d = x->d;
	struct http_resp resp = { 0 };
	struct http_req req;
	struct drive_batch_part *parts = NULL;
	const char *ids[DRIVE_BATCH_MAX], *hdrs[2], *ctype;
	unsigned char rnd[12];
	char boundary[40], ct[96], *body = NULL;
	int seen[DRIVE_BATCH_MAX];
	size_t blen = 0, np = 0, i, j;
	struct err e;
	int ok = 0;
	size_t rate = 0;
	long p;

	err_clear(&e);
	for (i = 0; i < k; i++)
		ids[i] = x->ids[idx[i]];
	memcpy(boundary, "batch_", 6);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		err_set(&e, ERR_IO, "no randomness for a boundary");
		goto done;
	}
	enc_hex(rnd, sizeof(rnd), boundary + 6);
	body = drive_batch_delete_body(boundary, "/drive/v3", ids, k, &blen, &e);
	parts = calloc(DRIVE_BATCH_MAX, sizeof(*parts));
	if (!body || !parts) {
		if (!e.code)
			err_set(&e, ERR_NOMEM, "out of memory");
		goto done;
	}
	snprintf(ct, sizeof(ct), "Content-Type: multipart/mixed; boundary=%s", boundary);
	hdrs[0] = ct;
	hdrs[1] = NULL;
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = d->batch;
	req.headers = hdrs;
	req.body = body;
	req.body_len = blen;
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;  /* deletes are idempotent: 404 = done */
	if (drive_do(d, &req, 1, &resp, &e) < 0)
		goto done;
	ctype = http_resp_header(&resp, "Content-Type", 0);
	if (drive_parse_batch_reply(ctype, resp.body, resp.body_len, parts, DRIVE_BATCH_MAX, &np,
				    &e) < 0)
		goto done;
	ok = 1;
done:
	memset(seen, 0, sizeof(seen));
	pthread_mutex_lock(&x->mu);
	if (!ok) {
		/* The whole batch failed: everything goes again, or fails for
		 * good when the error cannot pass with time. */
		for (i = 0; i < k; i++) {
			if (drive_err_transient(&e) || e.code == ERR_PARSE)
				again(x, idx[i], e.http_status, e.reason[0] ? e.reason : e.msg, 0);
			else
				finish(x, idx[i], e.http_status ? e.http_status : 0,
				       e.reason[0] ? e.reason : err_code_name(e.code));
		}
		if (!drive_err_transient(&e) && e.code != ERR_PARSE)
			log_warn(TAG, "batch delete of %zu items failed: %s", k, e.msg);
		goto unlock;
	}
	for (j = 0; j < np; j++) {
		p = parts[j].index;
		if (p < 0 || (size_t)p >= k || seen[p])
			continue;  /* not one of ours, or a repeat: ignored */
		seen[p] = 1;
		i = idx[p];
		if ((parts[j].status >= 200 && parts[j].status < 300) || parts[j].status == 404) {
			finish(x, i, parts[j].status, parts[j].reason);
		} else if (parts[j].status == 429 ||
			   (parts[j].status == 403 && reason_is_rate(parts[j].reason))) {
			rate++;
			again(x, i, parts[j].status, parts[j].reason, 1);
		} else if (parts[j].status == 408 || parts[j].status >= 500) {
			again(x, i, parts[j].status, parts[j].reason, 0);
		} else {
			finish(x, i, parts[j].status, parts[j].reason);
		}
	}
	for (p = 0; (size_t)p < k; p++)
		if (!seen[p])
			again(x, idx[p], 0, "no answer in the batch reply", 0);
	x->accepted += k - rate;
	if (rate) {
		/* Refused calls: a batch bigger than the server's burst (keep
		 * batches to what it took), or a rate above its budget
		 * (multiplicative decrease; the first estimate is what the
		 * server took per second so far). */
		if (x->rate == 0) {
			double secs = (double)(clk_mono_ms() - x->start_ms) / 1000.0;

			x->rate = (double)x->accepted / (secs > 1.0 ? secs : 1.0);
		} else if (k <= x->k_safe) {
			x->rate *= 0.75;  /* a size known to fit: the rate is too high */
		}
		if (x->rate < 2.0)
			x->rate = 2.0;
		/* A batch answered with nothing taken says little about the
		 * burst (others in flight took it): halve the size instead. */
		if (k - rate > 0)
			x->k_limit = k - rate;
		else
			x->k_limit = x->k_limit / 2;
		if (x->k_limit < 5)
			x->k_limit = 5;
		x->k = x->k_limit;
		x->clean_at_limit = 0;
	} else {
		if (x->rate > 0)
			x->rate *= 1.1;
		if (k > x->k_safe)
			x->k_safe = k;
		if (k >= x->k_limit && ++x->clean_at_limit >= 3 && x->k_limit < DRIVE_BATCH_MAX) {
			x->k_limit += x->k_limit / 4 + 1;
			if (x->k_limit > DRIVE_BATCH_MAX)
				x->k_limit = DRIVE_BATCH_MAX;
			x->clean_at_limit = 0;
		}
		x->k = x->k + x->k / 4 + 1;
		if (x->k > x->k_limit)
			x->k = x->k_limit;
	}
unlock:
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	http_resp_release(&resp);
	free(parts);
	free(body);
}

static void *del_worker(void *arg)
{
	struct del *x = arg;
	size_t idx[DRIVE_BATCH_MAX], k;
	int64_t now, wait;

	pthread_mutex_lock(&x->mu);
	for (;;) {
		while (!x->stop && x->left > 0 && x->qlen == 0)
			pthread_cond_wait(&x->cv, &x->mu);
		if (x->stop || x->left == 0)
			break;
		for (k = 0; k < x->k && x->qlen > 0; k++)
			idx[k] = q_pop(x);
		/* Our own pacing: k calls take k / rate seconds of the budget. */
		now = clk_mono_ms();
		wait = x->next_ms > now ? x->next_ms - now : 0;
		x->next_ms = (x->next_ms > now ? x->next_ms : now) +
			     (x->rate > 0 ? (int64_t)((double)k * 1000.0 / x->rate) : 0);
		pthread_mutex_unlock(&x->mu);
		http_pause(x->d->http, (long)wait, NULL);  /* a cancel ends it */
		send_batch(x, idx, k);
		pthread_mutex_lock(&x->mu);
	}
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

int drive_delete_ids(struct be *b, const char *const *ids, const uint64_t *sizes, size_t n,
		     int threads, drive_del_progress_fn progress, void *ud, long *status,
		     char (*reasons)[64], struct err *err)
{
	struct drive *d = (struct drive *)b;
	struct del x;
	pthread_t th[32];
	struct timespec ts;
	size_t i, nth = 0, first_fail = SIZE_MAX;
	uint64_t done, bytes, failed;
	int canceled = 0, rc = -1;

	if (n == 0)
		return 0;
	memset(&x, 0, sizeof(x));
	x.d = d;
	x.ids = ids;
	x.sizes = sizes;
	x.n = n;
	x.left = n;
	x.k = x.k_limit = DRIVE_BATCH_MAX;
	x.start_ms = clk_mono_ms();
	x.queue = calloc(n, sizeof(*x.queue));
	x.attempts = calloc(n, sizeof(*x.attempts));
	x.rates = calloc(n, sizeof(*x.rates));
	x.last_status = calloc(n, sizeof(*x.last_status));
	x.last_reason = calloc(n, sizeof(*x.last_reason));
	if (!x.queue || !x.attempts || !x.rates || !x.last_status || !x.last_reason) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_init(&x.mu, NULL);
	pthread_cond_init(&x.cv, NULL);
	for (i = 0; i < n; i++)
		q_push(&x, i);
	if (threads <= 0)
		threads = d->batch_threads;
	if (threads > (int)(sizeof(th) / sizeof(th[0])))
		threads = (int)(sizeof(th) / sizeof(th[0]));
	if ((size_t)threads > (n + DRIVE_BATCH_MAX - 1) / DRIVE_BATCH_MAX)
		threads = (int)((n + DRIVE_BATCH_MAX - 1) / DRIVE_BATCH_MAX);
	for (i = 0; i < (size_t)threads; i++) {
		if (pthread_create(&th[i], NULL, del_worker, &x) != 0)
			break;
		nth++;
	}
	if (nth == 0) {
		err_set(err, ERR_NOMEM, "cannot start a batch thread");
		goto destroy;
	}
	pthread_mutex_lock(&x.mu);
	for (;;) {
		done = x.done;
		bytes = x.bytes;
		failed = x.failed;
		if (x.left == 0)
			break;
		pthread_mutex_unlock(&x.mu);
		if (progress && progress(ud, done, bytes, failed) != 0) {
			canceled = 1;
			pthread_mutex_lock(&x.mu);
			x.stop = 1;
			pthread_cond_broadcast(&x.cv);
			break;
		}
		pthread_mutex_lock(&x.mu);
		if (x.left == 0)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&x.cv, &x.mu, &ts);
	}
	pthread_mutex_unlock(&x.mu);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	if (progress && !canceled)
		progress(ud, x.done, x.bytes, x.failed);
	for (i = 0; i < n; i++) {
		if (status)
			status[i] = x.last_status[i];
		if (reasons)
			snprintf(reasons[i], 64, "%s", x.last_reason[i]);
		if (first_fail == SIZE_MAX && !((x.last_status[i] >= 200 && x.last_status[i] < 300) ||
						x.last_status[i] == 404))
			first_fail = i;
	}
	if (canceled) {
		err_set(err, ERR_CANCELED, "deleting stopped by the caller after %" PRIu64
			" of %zu items", x.done, n);
	} else if (x.failed > 0) {
		err_set(err, ERR_HTTP, "%" PRIu64 " of %zu items could not be deleted (first: %s: "
			"HTTP %ld %s)", x.failed, n, ids[first_fail], x.last_status[first_fail],
			x.last_reason[first_fail]);
	} else {
		rc = 0;
	}
destroy:
	pthread_cond_destroy(&x.cv);
	pthread_mutex_destroy(&x.mu);
out:
	free(x.queue);
	free(x.attempts);
	free(x.rates);
	free(x.last_status);
	free(x.last_reason);
	return rc;
}
