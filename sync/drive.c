/* The Google Drive backend (include/durafs/drive.h): the backend interface
 * over Drive v3. Paths are resolved to file ids through folder listings
 * cached per folder id (with the name mapping of drive_names.c); writes are
 * guarded by the file's version (and md5), creates use pre-generated ids so
 * a retried create never duplicates, every upload's md5Checksum is checked,
 * and rate-limit replies pace every write of the instance.
 *
 * Folder cache: struct drive_map holds one folder's children as shown
 * (sorted by shown name), reference-counted (refs under cache_mu) so a
 * reader keeps it while another thread replaces it; its children are
 * guarded by its rwlock. A map answers lookups for cache_ttl_ms; be_list
 * always lists afresh and replaces it. Our own creates, renames and
 * deletes update the maps in place when that cannot change another
 * child's shown name, else mark the map stale (rebuilt on next use). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/clock.h"
#include "durafs/drive.h"
#include "durafs/enc.h"
#include "durafs/http.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"
#include "drive_i.h"

#define TAG "drive"
#define MAPS_MAX 128                   /* folder maps kept */
#define SESSION_TAG "#durafs="         /* guard data appended to a session URI */

static struct drive *D(struct be *b)
{
	return (struct drive *)b;
}

/* --- pacing -------------------------------------------------------------- */

/* Halve the interval for every full recover period without a hit. Called
 * with pace_mu held. */
static void pace_decay(struct drive *d, int64_t now)
{
	while (d->pace_cur > 0 && now - d->pace_changed >= d->pace_recover) {
		d->pace_cur /= 2;
		d->pace_changed += d->pace_recover;
		if (d->pace_cur < d->pace_interval)
			d->pace_cur = 0;
	}
}

void drive_pace_wait(struct drive *d)
{
	int64_t now, t;

	pthread_mutex_lock(&d->pace_mu);
	now = clk_mono_ms();
	pace_decay(d, now);
	t = now > d->pace_not_before ? now : d->pace_not_before;
	if (d->pace_cur > 0) {
		if (t < d->pace_next_slot)
			t = d->pace_next_slot;
		d->pace_next_slot = t + d->pace_cur;
	}
	if (t > now) {
		d->pstats.paced_writes++;
		d->pstats.paced_ms += (uint64_t)(t - now);
	}
	pthread_mutex_unlock(&d->pace_mu);
	if (t > now)
		http_pause(d->http, (long)(t - now), NULL);
}

void drive_pace_hit(struct drive *d, long retry_after_ms)
{
	int64_t now;
	long delay;
	int n;

	pthread_mutex_lock(&d->pace_mu);
	now = clk_mono_ms();
	d->pace_hits++;
	d->pstats.rate_hits++;
	if (retry_after_ms >= 0) {
		delay = retry_after_ms < 2 * d->pace_backoff_max ? retry_after_ms
								 : 2 * d->pace_backoff_max;
	} else {
		n = d->pace_hits - 1 > 16 ? 16 : d->pace_hits - 1;
		delay = d->pace_backoff;
		while (n-- > 0 && delay < d->pace_backoff_max)
			delay *= 2;
		if (delay > d->pace_backoff_max)
			delay = d->pace_backoff_max;
		delay = delay / 2 + be_jitter(delay / 2);
	}
	if (now + delay > d->pace_not_before)
		d->pace_not_before = now + delay;
	pace_decay(d, now);
	if (d->pace_cur == 0)
		d->pace_cur = d->pace_interval;
	else if (d->pace_cur < d->pace_interval_max)
		d->pace_cur = d->pace_cur * 2 > d->pace_interval_max ? d->pace_interval_max
								     : d->pace_cur * 2;
	d->pace_changed = now;
	pthread_mutex_unlock(&d->pace_mu);
	log_debug(TAG, "rate limited: writes wait %ld ms, then one every %ld ms", delay,
		  d->pace_cur);
}

void drive_pace_ok(struct drive *d)
{
	pthread_mutex_lock(&d->pace_mu);
	d->pace_hits = 0;
	/* Additive increase of the rate: each clean reply shortens the
	 * spacing a little; gone below half the base, no spacing at all. */
	if (d->pace_cur > 0) {
		d->pace_cur = d->pace_cur * 9 / 10;
		if (d->pace_cur < d->pace_interval / 2)
			d->pace_cur = 0;
	}
	pthread_mutex_unlock(&d->pace_mu);
}

void drive_pace_stats(struct be *b, struct drive_pace_stats *out)
{
	struct drive *d = D(b);

	pthread_mutex_lock(&d->pace_mu);
	pace_decay(d, clk_mono_ms());
	*out = d->pstats;
	out->interval_ms = d->pace_cur;
	pthread_mutex_unlock(&d->pace_mu);
}

/* --- requests ----------------------------------------------------------------- */

int drive_err_transient(const struct err *e)
{
	if (!e)
		return 0;
	if (e->code == ERR_NET || e->code == ERR_TIMEOUT || e->code == ERR_RATE)
		return 1;
	return e->http_status == 408 || e->http_status == 429 || e->http_status >= 500;
}

static long resp_retry_after(const struct http_resp *resp)
{
	const char *h = http_resp_header(resp, "Retry-After", 0);

	return h ? http_parse_retry_after(h, time(NULL)) : -1;
}

int drive_do(struct drive *d, const struct http_req *req0, int write, struct http_resp *resp,
	     struct err *err)
{
	struct http_req req = *req0;
	int rate = 0, handed = 0;

	if (!write)
		return http_do(d->http, &req, resp, err);
	for (;;) {
		drive_pace_wait(d);
		/* The first try alone, so that a rate limit reaches the pacer;
		 * after another transient failure, http.c's own retries. */
		req.max_retries = handed ? req0->max_retries : -1;
		http_resp_release(resp);
		if (http_do(d->http, &req, resp, err) == 0) {
			drive_pace_ok(d);
			return 0;
		}
		if (err->code == ERR_RATE) {
			drive_pace_hit(d, resp_retry_after(resp));
			if (req.retry != HTTP_RETRY_SAFE || ++rate > d->rate_max)
				return -1;
			handed = 0;
			continue;
		}
		if (handed || req.retry != HTTP_RETRY_SAFE || !drive_err_transient(err) ||
		    resp->sink_bytes > 0)
			return -1;
		handed = 1;
		http_pause(d->http, d->retry_base_ms / 2 + be_jitter(d->retry_base_ms / 2), NULL);
	}
}

/* A request with an optional JSON body. */
static int call(struct drive *d, const char *method, const char *url, const char *json,
		int write, enum http_retry retry, struct http_resp *resp, struct err *err)
{
	static const char *const jh[] = { "Content-Type: application/json; charset=UTF-8", NULL };
	struct http_req req;

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = json ? jh : NULL;
	req.body = json;
	req.body_len = json ? strlen(json) : 0;
	req.body_fd = -1;
	req.retry = retry;
	return drive_do(d, &req, write, resp, err);
}

void drive_sb_list_params(struct drive *d, struct drive_sb *u)
{
	drive_sb_add(u, "supportsAllDrives=true&includeItemsFromAllDrives=true");
	pthread_mutex_lock(&d->root_mu);
	if (d->drive_id[0]) {
		drive_sb_add(u, "&corpora=drive&driveId=");
		drive_sb_enc(u, d->drive_id);
	}
	pthread_mutex_unlock(&d->root_mu);
}

/* GET a file's metadata. ERR_NOTFOUND when absent. */
static int get_file(struct drive *d, const char *id, struct drive_file *out, struct err *err)
{
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	char *url = NULL;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/");
	drive_sb_enc(&u, id);
	drive_sb_add(&u, "?supportsAllDrives=true&fields=");
	drive_sb_enc(&u, DRIVE_FILE_FIELDS);
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	if (call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
		goto out;
	rc = drive_parse_file(resp.body, resp.body_len, out, err);
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* One page of files.list. */
static int list_page(struct drive *d, const char *q, long page_size, int all_drives,
		     const char *token, struct drive_page *pg, struct err *err)
{
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	char *url = NULL;
	int rc = -1;

	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files?q=");
	drive_sb_enc(&u, q);
	drive_sb_addf(&u, "&pageSize=%ld&", page_size);
	if (all_drives)
		drive_sb_list_params(d, &u);
	else
		drive_sb_add(&u, "supportsAllDrives=true");
	drive_sb_add(&u, "&fields=");
	drive_sb_enc(&u, "nextPageToken,incompleteSearch,files(" DRIVE_FILE_FIELDS ")");
	if (token) {
		drive_sb_add(&u, "&pageToken=");
		drive_sb_enc(&u, token);
	}
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	if (call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
		goto out;
	if (drive_parse_list_page(resp.body, resp.body_len, pg, err) < 0)
		goto out;
	if (pg->incomplete) {
		drive_page_release(pg);
		err_set(err, ERR_HTTP, "Drive answered with an incomplete search");
		goto out;
	}
	rc = 0;
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* Move pg->next_token into *token, refusing a token that repeats. */
static int take_token(struct drive_page *pg, char **token, struct err *err)
{
	if (pg->next_token && *token && strcmp(pg->next_token, *token) == 0)
		return err_set(err, ERR_PARSE, "the server repeated its page token");
	free(*token);
	*token = pg->next_token;
	pg->next_token = NULL;
	return 0;
}

int drive_list_q(struct drive *d, const char *q, long page_size, int all_drives,
		 drive_file_fn fn, void *ud, struct err *err)
{
	struct drive_page pg = { 0 };
	char *token = NULL;
	size_t i, page = 0;
	int rc = -1;

	do {
		page++;
		if (list_page(d, q, page_size, all_drives, token, &pg, err) < 0) {
			err_prefix(err, "page %zu", page);
			goto out;
		}
		for (i = 0; i < pg.n; i++) {
			if (fn(ud, &pg.files[i]) != 0) {
				err_set(err, ERR_CANCELED, "listing stopped by the caller");
				goto out;
			}
		}
		if (take_token(&pg, &token, err) < 0)
			goto out;
		drive_page_release(&pg);
	} while (token);
	rc = 0;
out:
	drive_page_release(&pg);
	free(token);
	return rc;
}

/* Every file matching q, moved into *out (n items). */
static int list_collect(struct drive *d, const char *q, long page_size,
			struct drive_file **out, size_t *nout, struct err *err)
{
	struct drive_page pg = { 0 };
	struct drive_file *v = NULL, *nv;
	size_t n = 0, cap = 0, i, page = 0;
	char *token = NULL;
	int rc = -1;

	do {
		page++;
		if (list_page(d, q, page_size, 1, token, &pg, err) < 0) {
			err_prefix(err, "page %zu", page);
			goto out;
		}
		if (n + pg.n > cap) {
			cap = (n + pg.n) * 2 + 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
			v = nv;
		}
		for (i = 0; i < pg.n; i++) {
			v[n++] = pg.files[i];
			memset(&pg.files[i], 0, sizeof(pg.files[i]));
		}
		if (take_token(&pg, &token, err) < 0)
			goto out;
		drive_page_release(&pg);
	} while (token);
	*out = v;
	*nout = n;
	v = NULL;
	n = 0;
	rc = 0;
out:
	for (i = 0; i < n; i++)
		drive_file_release(&v[i]);
	free(v);
	drive_page_release(&pg);
	free(token);
	return rc;
}

/* "'ID' in parents and trashed = <trashed>" plus extra (may be NULL). */
static char *q_children(const char *folder, const char *trashed, const char *extra,
			struct err *err)
{
	struct drive_sb b = { 0 };
	char *qf = drive_q_quote(folder);

	if (!qf) {
		err_set(err, ERR_NOMEM, "out of memory");
		return NULL;
	}
	drive_sb_add(&b, qf);
	drive_sb_add(&b, " in parents and trashed = ");
	drive_sb_add(&b, trashed);
	if (extra) {
		drive_sb_add(&b, " and ");
		drive_sb_add(&b, extra);
	}
	free(qf);
	return drive_sb_take(&b, NULL, err);
}

/* --- kinds and entries -------------------------------------------------------- */

enum kind { K_HIDE = 0, K_DIR, K_FILE, K_DOC, K_LINK };

static int file_kind(const struct drive *d, const struct drive_file *f)
{
	if (!f->mime)
		return K_HIDE;
	if (strcmp(f->mime, DRIVE_MIME_FOLDER) == 0)
		return K_DIR;
	if (strncmp(f->mime, DRIVE_MIME_APPS, strlen(DRIVE_MIME_APPS)) == 0) {
		if (drive_export_for(f->mime))
			return d->docs == DRIVE_DOCS_HIDE ? K_HIDE : K_DOC;
		return K_HIDE;
	}
	if (f->symlink_target)
		return K_LINK;
	return K_FILE;
}

/* One child of a folder as shown. */
struct dchild {
	char *name;               /* shown name */
	char *base;               /* shown name before de-duplication */
	struct drive_file f;      /* the item itself */
	struct drive_file t;      /* a shortcut's target (t.id NULL otherwise) */
};

static const struct drive_file *eff(const struct dchild *c)
{
	return c->t.id ? &c->t : &c->f;
}

static void dchild_release(struct dchild *c)
{
	free(c->name);
	free(c->base);
	drive_file_release(&c->f);
	drive_file_release(&c->t);
	memset(c, 0, sizeof(*c));
}

static int dchild_copy(struct dchild *dst, const struct dchild *src, struct err *err)
{
	memset(dst, 0, sizeof(*dst));
	dst->name = src->name ? strdup(src->name) : NULL;
	dst->base = src->base ? strdup(src->base) : NULL;
	if ((src->name && !dst->name) || (src->base && !dst->base) ||
	    drive_file_copy(&dst->f, &src->f, err) < 0 ||
	    (src->t.id && drive_file_copy(&dst->t, &src->t, err) < 0)) {
		dchild_release(dst);
		return err_set(err, ERR_NOMEM, "out of memory");
	}
	return 0;
}

static uint64_t exp_size(struct drive *d, const char *id, int64_t version, int *known)
{
	size_t i;
	uint64_t s = 0;

	*known = 0;
	pthread_mutex_lock(&d->exp_mu);
	for (i = 0; i < d->nexp; i++) {
		if (d->exp[i].version == version && strcmp(d->exp[i].id, id) == 0) {
			s = d->exp[i].size;
			*known = 1;
			break;
		}
	}
	pthread_mutex_unlock(&d->exp_mu);
	return s;
}

static void exp_remember(struct drive *d, const char *id, int64_t version, uint64_t size)
{
	size_t i, slot;

	if (strlen(id) >= BE_ID_MAX)
		return;
	pthread_mutex_lock(&d->exp_mu);
	for (i = 0; i < d->nexp; i++)
		if (strcmp(d->exp[i].id, id) == 0)
			break;
	if (i < d->nexp) {
		slot = i;
	} else if (d->nexp < sizeof(d->exp) / sizeof(d->exp[0])) {
		slot = d->nexp++;
	} else {
		slot = d->exp_next;
		d->exp_next = (d->exp_next + 1) % (sizeof(d->exp) / sizeof(d->exp[0]));
	}
	snprintf(d->exp[slot].id, sizeof(d->exp[slot].id), "%s", id);
	d->exp[slot].version = version;
	d->exp[slot].size = size;
	pthread_mutex_unlock(&d->exp_mu);
}

/* The entry of file f (the effective file of a child) named name. */
static int file_entry(struct drive *d, const struct drive_file *f, const char *name,
		      struct be_entry *e, struct err *err)
{
	const struct drive_export *x;
	int k = file_kind(d, f), known = 0;

	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		goto nomem;
	e->mtime = f->mtime;
	snprintf(e->ver.id, sizeof(e->ver.id), "%s", f->id);
	e->ver.gen = f->version;
	switch (k) {
	case K_DIR:
		e->type = BE_DIR;
		break;
	case K_LINK:
		e->type = BE_SYMLINK;
		e->size = strlen(f->symlink_target);
		if (!(e->symlink_target = strdup(f->symlink_target)))
			goto nomem;
		break;
	case K_DOC:
		x = drive_export_for(f->mime);
		e->type = BE_FILE;
		e->flags = BE_EF_READONLY | BE_EF_SIZE_UNKNOWN;
		e->size = exp_size(d, f->id, f->version, &known);
		if (!(e->content_type = strdup(x->export_mime)))
			goto nomem;
		break;
	default:
		e->type = BE_FILE;
		e->size = f->has_size ? f->size : 0;
		e->has_md5 = f->has_md5;
		memcpy(e->md5, f->md5, sizeof(e->md5));
		if (f->mime && !(e->content_type = strdup(f->mime)))
			goto nomem;
		break;
	}
	return 0;
nomem:
	be_entry_release(e);
	return err_set(err, ERR_NOMEM, "out of memory");
}

/* --- folder maps ---------------------------------------------------------- */

struct drive_map {
	char *folder_id;
	pthread_rwlock_t lock;    /* guards v, n, cap, at_ms */
	struct dchild *v;         /* sorted by name */
	size_t n, cap;
	size_t skipped;           /* items not shown (invalid names) */
	int64_t at_ms;            /* built at (monotonic); 0 = stale */
	int refs;                 /* protected by drive.cache_mu */
};

static void map_free(struct drive_map *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->n; i++)
		dchild_release(&m->v[i]);
	free(m->v);
	free(m->folder_id);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static void map_release(struct drive *d, struct drive_map *m)
{
	int last;

	if (!m)
		return;
	pthread_mutex_lock(&d->cache_mu);
	last = --m->refs == 0;
	pthread_mutex_unlock(&d->cache_mu);
	if (last)
		map_free(m);
}

static int child_cmp(const void *a, const void *b)
{
	const struct dchild *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Index of name in m (rdlock held), or -1. */
static long map_index(const struct drive_map *m, const char *name)
{
	size_t lo = 0, hi = m->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(name, m->v[mid].name);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* Copy the child named name into *out: 1 found, 0 absent, -1 error. */
static int map_find(struct drive_map *m, const char *name, struct dchild *out,
		    struct err *err)
{
	long i;
	int rc = 0;

	pthread_rwlock_rdlock(&m->lock);
	i = map_index(m, name);
	if (i >= 0)
		rc = dchild_copy(out, &m->v[i], err) < 0 ? -1 : 1;
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

/* Build the map of folder from a fresh listing. */
static int map_build(struct drive *d, const char *folder, struct drive_map **out,
		     struct err *err)
{
	struct drive_map *m = NULL;
	struct drive_file *files = NULL, tgt;
	struct drive_name_in *in = NULL;
	char **names = NULL, **bases = NULL, *q = NULL;
	size_t n = 0, i, k = 0, keep = 0;
	struct err tmp;
	int *kind = NULL, rc = -1;

	*out = NULL;
	memset(&tgt, 0, sizeof(tgt));
	q = q_children(folder, "false", NULL, err);
	if (!q || list_collect(d, q, d->page_size, &files, &n, err) < 0)
		goto out;
	m = calloc(1, sizeof(*m));
	if (m && pthread_rwlock_init(&m->lock, NULL) != 0) {
		free(m);
		m = NULL;
	}
	in = calloc(n ? n : 1, sizeof(*in));
	names = calloc(n ? n : 1, sizeof(*names));
	bases = calloc(n ? n : 1, sizeof(*bases));
	kind = calloc(n ? n : 1, sizeof(*kind));
	if (!m || !in || !names || !bases || !kind)
		goto nomem;
	m->refs = 1;
	if (!(m->folder_id = strdup(folder)))
		goto nomem;
	m->v = calloc(n ? n : 1, sizeof(*m->v));
	if (!m->v)
		goto nomem;
	m->cap = n ? n : 1;
	/* Resolve shortcuts; decide what is shown. */
	for (i = 0; i < n; i++) {
		struct dchild *c = &m->v[keep];
		const struct drive_file *f;

		memset(c, 0, sizeof(*c));
		c->f = files[i];
		memset(&files[i], 0, sizeof(files[i]));
		if (c->f.mime && strcmp(c->f.mime, DRIVE_MIME_SHORTCUT) == 0) {
			if (!c->f.target_id) {
				log_warn(TAG, "hiding shortcut \"%.*s\" (id %s): it has no target",
					 (int)c->f.name_len, c->f.name, c->f.id);
				dchild_release(c);
				continue;
			}
			err_clear(&tmp);
			if (get_file(d, c->f.target_id, &tgt, &tmp) < 0 ||
			    tgt.trashed || (tgt.mime && strcmp(tgt.mime, DRIVE_MIME_SHORTCUT) == 0)) {
				if (tmp.code && tmp.code != ERR_NOTFOUND && tmp.code != ERR_PERM) {
					*err = tmp;
					err_prefix(err, "shortcut \"%.*s\"", (int)c->f.name_len,
						   c->f.name);
					drive_file_release(&tgt);
					dchild_release(c);
					goto out;
				}
				log_warn(TAG, "hiding shortcut \"%.*s\" (id %s): its target %s is "
					 "%s", (int)c->f.name_len, c->f.name, c->f.id, c->f.target_id,
					 tmp.code ? "missing or not accessible" :
					 tgt.trashed ? "in the trash" : "another shortcut");
				drive_file_release(&tgt);
				dchild_release(c);
				continue;
			}
			c->t = tgt;
			memset(&tgt, 0, sizeof(tgt));
		}
		f = eff(c);
		kind[keep] = file_kind(d, f);
		if (kind[keep] == K_HIDE) {
			log_debug(TAG, "not showing \"%.*s\" (%s)", (int)c->f.name_len, c->f.name,
				  f->mime ? f->mime : "?");
			dchild_release(c);
			continue;
		}
		in[keep].name = c->f.name;
		in[keep].name_len = c->f.name_len;
		in[keep].id = c->f.id;
		in[keep].ext = kind[keep] == K_DOC ? drive_export_for(f->mime)->ext : NULL;
		in[keep].is_dir = kind[keep] == K_DIR;
		in[keep].ctime = c->f.ctime;
		keep++;
	}
	if (drive_names_assign(in, keep, names, bases, &m->skipped, err) < 0)
		goto out;
	for (i = 0; i < keep; i++) {
		if (!names[i]) {
			dchild_release(&m->v[i]);
			free(bases[i]);
			bases[i] = NULL;
			continue;
		}
		m->v[k] = m->v[i];
		if (k != i)
			memset(&m->v[i], 0, sizeof(m->v[i]));
		m->v[k].name = names[i];
		m->v[k].base = bases[i];
		names[i] = bases[i] = NULL;
		k++;
	}
	m->n = k;
	qsort(m->v, m->n, sizeof(*m->v), child_cmp);
	m->at_ms = clk_mono_ms();
	*out = m;
	m = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	if (m) {
		/* Children [0, keep) were moved in; the rest are zeroed. */
		if (m->v)
			m->n = keep > m->n ? keep : m->n;
		map_free(m);
	}
	for (i = 0; i < n; i++)
		drive_file_release(&files[i]);
	if (names)
		for (i = 0; i < n; i++) {
			free(names[i]);
			free(bases[i]);
		}
	free(files);
	free(in);
	free(names);
	free(bases);
	free(kind);
	free(q);
	return rc;
}

/* Put m in the cache (replacing a map of the same folder); takes the
 * caller's reference for the cache. */
static void cache_put(struct drive *d, struct drive_map *m)
{
	struct drive_map *old = NULL, **nv;
	size_t i, oldest = 0;

	if (d->ttl_ms < 0) {
		map_release(d, m);
		return;
	}
	pthread_mutex_lock(&d->cache_mu);
	for (i = 0; i < d->nmaps; i++) {
		if (strcmp(d->maps[i]->folder_id, m->folder_id) == 0) {
			old = d->maps[i];
			d->maps[i] = m;
			goto done;
		}
	}
	if (d->nmaps >= MAPS_MAX) {
		int64_t best = INT64_MAX, at;

		for (i = 0; i < d->nmaps; i++) {
			pthread_rwlock_rdlock(&d->maps[i]->lock);
			at = d->maps[i]->at_ms;
			pthread_rwlock_unlock(&d->maps[i]->lock);
			if (at < best) {
				best = at;
				oldest = i;
			}
		}
		old = d->maps[oldest];
		d->maps[oldest] = m;
		goto done;
	}
	if (d->nmaps == d->cap_maps) {
		nv = realloc(d->maps, (d->cap_maps ? d->cap_maps * 2 : 16) * sizeof(*nv));
		if (!nv) {
			old = m;  /* not cached */
			goto done;
		}
		d->maps = nv;
		d->cap_maps = d->cap_maps ? d->cap_maps * 2 : 16;
	}
	d->maps[d->nmaps++] = m;
done:
	if (old && --old->refs == 0) {
		pthread_mutex_unlock(&d->cache_mu);
		map_free(old);
		return;
	}
	pthread_mutex_unlock(&d->cache_mu);
}

/* A cached map of folder with a reference for the caller, or NULL. fresh:
 * only one younger than the TTL. */
static struct drive_map *cache_get(struct drive *d, const char *folder, int fresh)
{
	struct drive_map *m = NULL;
	int64_t now = clk_mono_ms(), at;
	size_t i;

	pthread_mutex_lock(&d->cache_mu);
	for (i = 0; i < d->nmaps; i++) {
		if (strcmp(d->maps[i]->folder_id, folder) != 0)
			continue;
		pthread_rwlock_rdlock(&d->maps[i]->lock);
		at = d->maps[i]->at_ms;
		pthread_rwlock_unlock(&d->maps[i]->lock);
		if (!fresh || (at != 0 && now - at < d->ttl_ms)) {
			m = d->maps[i];
			m->refs++;
		}
		break;
	}
	pthread_mutex_unlock(&d->cache_mu);
	return m;
}

/* The map of folder (cached when younger than the TTL and `rebuild` is 0,
 * else built afresh and cached); the caller releases it. */
static int map_get(struct drive *d, const char *folder, int rebuild, struct drive_map **out,
		   struct err *err)
{
	struct drive_map *m = rebuild ? NULL : cache_get(d, folder, 1);

	if (m) {
		*out = m;
		return 0;
	}
	if (map_build(d, folder, &m, err) < 0)
		return -1;
	if (d->ttl_ms >= 0) {
		pthread_mutex_lock(&d->cache_mu);
		m->refs++;
		pthread_mutex_unlock(&d->cache_mu);
		cache_put(d, m);
	}
	*out = m;
	return 0;
}

static void map_stale(struct drive_map *m)
{
	m->at_ms = 0;
}

/* The shown name an item would get alone: encoded name (+ export ext), or
 * NULL (not shown, or out of memory). */
static char *shown_base(struct drive *d, const struct drive_file *f)
{
	const struct drive_export *x;
	char *enc, *r;
	size_t a, b;
	int k = file_kind(d, f), oom = 0;

	if (k == K_HIDE || (f->mime && strcmp(f->mime, DRIVE_MIME_SHORTCUT) == 0))
		return NULL;
	enc = drive_name_encode(f->name, f->name_len, &oom);
	if (!enc || k != K_DOC)
		return enc;
	x = drive_export_for(f->mime);
	a = strlen(enc);
	b = strlen(x->ext);
	if (a + b > 255) {
		free(enc);
		return NULL;
	}
	r = realloc(enc, a + b + 1);
	if (!r) {
		free(enc);
		return NULL;
	}
	memcpy(r + a, x->ext, b + 1);
	return r;
}

/* Remove child i (wrlock held) unless that changes another's shown name
 * (then the map goes stale). */
static void map_remove_at(struct drive_map *m, size_t i)
{
	size_t j;

	for (j = 0; j < m->n; j++) {
		if (j != i && strcmp(m->v[j].base, m->v[i].base) == 0) {
			map_stale(m);
			return;
		}
	}
	dchild_release(&m->v[i]);
	memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(m->v[0]));
	m->n--;
}

/* Note that f (just written by us) now lives in folder parent. */
static void cache_upsert(struct drive *d, const char *parent, const struct drive_file *f)
{
	struct drive_map *m;
	struct dchild c, *nv;
	struct err tmp;
	char *base = NULL;
	size_t i, pos;
	long at = -1;

	if (!parent)
		return;
	m = cache_get(d, parent, 0);
	if (!m)
		return;
	memset(&c, 0, sizeof(c));
	base = shown_base(d, f);
	pthread_rwlock_wrlock(&m->lock);
	if (m->at_ms == 0)
		goto done;
	for (i = 0; i < m->n; i++) {
		if (m->v[i].t.id && strcmp(m->v[i].t.id, f->id) == 0) {
			map_stale(m);  /* a shortcut to it: its data changed */
			goto done;
		}
		if (strcmp(m->v[i].f.id, f->id) == 0)
			at = (long)i;
	}
	if (at >= 0) {
		if (base && strcmp(base, m->v[at].base) == 0) {
			drive_file_release(&m->v[at].f);
			err_clear(&tmp);
			if (drive_file_copy(&m->v[at].f, f, &tmp) < 0)
				map_stale(m);
			goto done;
		}
		map_remove_at(m, (size_t)at);
		if (m->at_ms == 0)
			goto done;
	}
	if (!base)
		goto done;
	for (i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].base, base) == 0 || strcmp(m->v[i].name, base) == 0) {
			map_stale(m);
			goto done;
		}
	}
	err_clear(&tmp);
	c.name = strdup(base);
	c.base = base;
	base = NULL;
	if (!c.name || drive_file_copy(&c.f, f, &tmp) < 0) {
		map_stale(m);
		goto done;
	}
	if (m->n == m->cap) {
		nv = realloc(m->v, (m->cap ? m->cap * 2 : 16) * sizeof(*nv));
		if (!nv) {
			map_stale(m);
			goto done;
		}
		m->v = nv;
		m->cap = m->cap ? m->cap * 2 : 16;
	}
	for (pos = 0; pos < m->n && strcmp(m->v[pos].name, c.name) < 0; pos++)
		;
	memmove(&m->v[pos + 1], &m->v[pos], (m->n - pos) * sizeof(m->v[0]));
	m->v[pos] = c;
	memset(&c, 0, sizeof(c));
	m->n++;
done:
	pthread_rwlock_unlock(&m->lock);
	dchild_release(&c);
	free(base);
	map_release(d, m);
}

/* Note that item id left folder parent (moved away, trashed, deleted). */
static void cache_remove(struct drive *d, const char *parent, const char *id)
{
	struct drive_map *m;
	size_t i;

	if (!parent)
		return;
	m = cache_get(d, parent, 0);
	if (!m)
		return;
	pthread_rwlock_wrlock(&m->lock);
	for (i = 0; i < m->n; i++) {
		if (m->v[i].t.id && strcmp(m->v[i].t.id, id) == 0) {
			map_stale(m);
			break;
		}
		if (strcmp(m->v[i].f.id, id) == 0) {
			map_remove_at(m, i);
			break;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	map_release(d, m);
}

/* Forget folder's own map (it was trashed or deleted). */
static void cache_drop(struct drive *d, const char *folder)
{
	struct drive_map *m = cache_get(d, folder, 0);

	if (!m)
		return;
	pthread_rwlock_wrlock(&m->lock);
	map_stale(m);
	pthread_rwlock_unlock(&m->lock);
	map_release(d, m);
}

/* --- roots and paths ------------------------------------------------------ */

/* Resolve path from folder base: *out = the child (a copy; zeroed first),
 * *parent (may be NULL; BE_ID_MAX) = the folder that holds it. path must
 * not be "". ERR_NOTFOUND naming the missing component. */
static int resolve_from(struct drive *d, const char *base, const char *path, int rebuild,
			struct dchild *out, char *parent, struct err *err)
{
	struct drive_map *m = NULL;
	char folder[BE_ID_MAX], comp[256];
	const char *p = path, *slash;
	size_t len;
	int r, rc = -1;

	memset(out, 0, sizeof(*out));
	snprintf(folder, sizeof(folder), "%s", base);
	for (;;) {
		slash = strchr(p, '/');
		len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || len >= sizeof(comp)) {
			err_set(err, ERR_INVAL, "\"%s\" is not a valid path", path);
			goto out;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		if (map_get(d, folder, rebuild, &m, err) < 0)
			goto out;
		dchild_release(out);
		r = map_find(m, comp, out, err);
		map_release(d, m);
		m = NULL;
		if (r < 0)
			goto out;
		if (r == 0) {
			err_set(err, ERR_NOTFOUND, "\"%.*s\": no such file or directory",
				(int)(p + len - path), path);
			goto out;
		}
		if (!slash)
			break;
		if (file_kind(d, eff(out)) != K_DIR) {
			err_set(err, ERR_NOTFOUND, "\"%.*s\" is not a directory",
				(int)(p + len - path), path);
			goto out;
		}
		snprintf(folder, sizeof(folder), "%s", eff(out)->id);
		p = slash + 1;
	}
	if (parent)
		snprintf(parent, BE_ID_MAX, "%s", folder);
	rc = 0;
out:
	if (rc < 0)
		dchild_release(out);
	return rc;
}

/* GET /drives[/ID] to find a shared drive: by id (check it) or by name. */
static int find_shared_drive(struct drive *d, int by_name, const char *ref, char *id,
			     struct err *err)
{
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	json_t *j = NULL, *arr, *it;
	char *url = NULL, *token = NULL;
	const char *s, *nm, *tok;
	size_t i, found = 0;
	int rc = -1;

	if (!by_name) {
		drive_sb_add(&u, d->api);
		drive_sb_add(&u, "/drives/");
		drive_sb_enc(&u, ref);
		drive_sb_add(&u, "?fields=id,name");
		url = drive_sb_take(&u, NULL, err);
		if (!url || call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
			goto out;
		if (jsonh_parse_object(resp.body, resp.body_len, "Drive shared drive", &j, err) < 0 ||
		    jsonh_get_str(j, "id", &s, err) < 0)
			goto out;
		if (!drive_id_valid(s, strlen(s))) {
			err_set(err, ERR_PARSE, "shared drive: invalid id");
			goto out;
		}
		snprintf(id, BE_ID_MAX, "%s", s);
		rc = 0;
		goto out;
	}
	do {
		drive_sb_add(&u, d->api);
		drive_sb_add(&u, "/drives?pageSize=100&fields=nextPageToken,drives(id,name)");
		if (token) {
			drive_sb_add(&u, "&pageToken=");
			drive_sb_enc(&u, token);
		}
		free(url);
		url = drive_sb_take(&u, NULL, err);
		http_resp_release(&resp);
		if (!url || call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
			goto out;
		json_decref(j);
		j = NULL;
		if (jsonh_parse_object(resp.body, resp.body_len, "Drive shared drives", &j, err) < 0 ||
		    jsonh_opt_array(j, "drives", &arr, err) < 0)
			goto out;
		for (i = 0; i < json_array_size(arr); i++) {
			if (jsonh_elem_object(arr, i, "drives", &it, err) < 0 ||
			    jsonh_get_str(it, "id", &s, err) < 0 ||
			    jsonh_get_str(it, "name", &nm, err) < 0)
				goto out;
			if (strcmp(nm, ref) != 0)
				continue;
			if (!drive_id_valid(s, strlen(s))) {
				err_set(err, ERR_PARSE, "shared drive: invalid id");
				goto out;
			}
			if (found++ == 0)
				snprintf(id, BE_ID_MAX, "%s", s);
		}
		if (jsonh_opt_str(j, "nextPageToken", &tok, err) < 0)
			goto out;
		if (tok && token && strcmp(tok, token) == 0) {
			err_set(err, ERR_PARSE, "shared drives: the server repeated its page token");
			goto out;
		}
		free(token);
		token = tok && *tok ? strdup(tok) : NULL;
		if (tok && *tok && !token) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	} while (token);
	if (found == 0) {
		err_set(err, ERR_NOTFOUND, "no shared drive named \"%s\"", ref);
		goto out;
	}
	if (found > 1) {
		err_set(err, ERR_INVAL, "%zu shared drives are named \"%s\": use "
			"drive:shared_id=ID", found, ref);
		goto out;
	}
	rc = 0;
out:
	json_decref(j);
	http_resp_release(&resp);
	free(url);
	free(token);
	return rc;
}

int drive_root(struct drive *d, char *buf, struct err *err)
{
	struct drive_file f;
	struct dchild c;
	char base[BE_ID_MAX], did[BE_ID_MAX];
	int rc = -1;

	memset(&f, 0, sizeof(f));
	memset(&c, 0, sizeof(c));
	pthread_mutex_lock(&d->root_mu);
	if (d->root_id[0]) {
		snprintf(buf, BE_ID_MAX, "%s", d->root_id);
		pthread_mutex_unlock(&d->root_mu);
		return 0;
	}
	did[0] = '\0';
	switch (d->src.kind) {
	case DRIVE_ROOT_MY:
	case DRIVE_ROOT_ID:
		if (get_file(d, d->src.kind == DRIVE_ROOT_MY ? "root" : d->src.ref, &f, err) < 0) {
			err_prefix(err, "root folder");
			goto out;
		}
		if (!f.mime || strcmp(f.mime, DRIVE_MIME_FOLDER) != 0) {
			err_set(err, ERR_INVAL, "root \"%s\" is not a folder", f.id);
			goto out;
		}
		if (f.trashed) {
			err_set(err, ERR_NOTFOUND, "root folder \"%s\" is in the trash", f.id);
			goto out;
		}
		snprintf(base, sizeof(base), "%s", f.id);
		if (f.drive_id)
			snprintf(did, sizeof(did), "%s", f.drive_id);
		break;
	default:
		if (find_shared_drive(d, d->src.kind == DRIVE_ROOT_SHARED_NAME, d->src.ref, base,
				      err) < 0) {
			err_prefix(err, "shared drive");
			goto out;
		}
		snprintf(did, sizeof(did), "%s", base);
		break;
	}
	/* Lists from here on use the root's drive. */
	snprintf(d->drive_id, sizeof(d->drive_id), "%s", did);
	pthread_mutex_unlock(&d->root_mu);
	if (d->src.path[0]) {
		if (resolve_from(d, base, d->src.path, 0, &c, NULL, err) < 0) {
			err_prefix(err, "root path");
			pthread_mutex_lock(&d->root_mu);
			goto out;
		}
		if (file_kind(d, eff(&c)) != K_DIR) {
			err_set(err, ERR_INVAL, "root path \"%s\" is not a folder", d->src.path);
			pthread_mutex_lock(&d->root_mu);
			goto out;
		}
		snprintf(base, sizeof(base), "%s", eff(&c)->id);
	}
	pthread_mutex_lock(&d->root_mu);
	if (!d->root_id[0]) {
		snprintf(d->root_id, sizeof(d->root_id), "%s", base);
		d->root_is_top = d->src.path[0] == '\0' && d->src.kind != DRIVE_ROOT_ID;
		log_debug(TAG, "root folder %s%s%s", d->root_id, d->drive_id[0] ? " on shared drive " : "",
			  d->drive_id);
	}
	snprintf(buf, BE_ID_MAX, "%s", d->root_id);
	rc = 0;
out:
	pthread_mutex_unlock(&d->root_mu);
	drive_file_release(&f);
	dchild_release(&c);
	return rc;
}

void drive_root_id(struct be *b, char *buf, size_t len)
{
	struct drive *d = D(b);

	pthread_mutex_lock(&d->root_mu);
	snprintf(buf, len, "%s", d->root_id);
	pthread_mutex_unlock(&d->root_mu);
}

void drive_root_drive_id(struct be *b, char *buf, size_t len)
{
	struct drive *d = D(b);

	pthread_mutex_lock(&d->root_mu);
	snprintf(buf, len, "%s", d->root_id[0] ? d->drive_id : "");
	pthread_mutex_unlock(&d->root_mu);
}

int drive_root_restore(struct be *b, const char *root_id, const char *drive_id,
		       struct err *err)
{
	struct drive *d = D(b);

	if (!root_id || !drive_id_valid(root_id, strlen(root_id)) ||
	    (drive_id && *drive_id && !drive_id_valid(drive_id, strlen(drive_id))))
		return err_set(err, ERR_INVAL, "drive: the stored root folder id is malformed");
	pthread_mutex_lock(&d->root_mu);
	if (!d->root_id[0]) {
		snprintf(d->drive_id, sizeof(d->drive_id), "%s", drive_id ? drive_id : "");
		snprintf(d->root_id, sizeof(d->root_id), "%s", root_id);
		d->root_is_top = d->src.path[0] == '\0' && d->src.kind != DRIVE_ROOT_ID;
		log_debug(TAG, "root folder %s (stored)%s%s", d->root_id,
			  d->drive_id[0] ? " on shared drive " : "", d->drive_id);
	}
	pthread_mutex_unlock(&d->root_mu);
	return 0;
}

/* Resolve a mount path ("" = root: a synthetic child). rebuild: list every
 * folder on the way afresh instead of trusting cached listings. */
static int resolve_x(struct drive *d, const char *path, int rebuild, struct dchild *out,
		     char *parent, struct err *err)
{
	char root[BE_ID_MAX];

	memset(out, 0, sizeof(*out));
	if (!be_path_valid(path))
		return err_set(err, ERR_INVAL, "\"%s\" is not a valid path", path ? path : "(null)");
	if (drive_root(d, root, err) < 0)
		return -1;
	if (!*path) {
		out->name = strdup("");
		out->f.id = strdup(root);
		out->f.name = strdup("");
		out->f.mime = strdup(DRIVE_MIME_FOLDER);
		if (!out->name || !out->f.id || !out->f.name || !out->f.mime) {
			dchild_release(out);
			return err_set(err, ERR_NOMEM, "out of memory");
		}
		if (parent)
			parent[0] = '\0';
		return 0;
	}
	return resolve_from(d, root, path, rebuild, out, parent, err);
}

/* Resolve path through the cached listings; when that finds nothing (or,
 * with want_id, another item), once more through fresh listings: a cached
 * listing may predate a change made by another client. */
static int resolve_want(struct drive *d, const char *path, const char *want_id,
			struct dchild *out, char *parent, struct err *err)
{
	int r = resolve_x(d, path, 0, out, parent, err);

	if (r == 0 && (!want_id || strcmp(eff(out)->id, want_id) == 0))
		return 0;
	if (r < 0 && err->code != ERR_NOTFOUND)
		return -1;
	if (r == 0)
		dchild_release(out);
	err_clear(err);
	return resolve_x(d, path, 1, out, parent, err);
}

static int resolve(struct drive *d, const char *path, struct dchild *out, char *parent,
		   struct err *err)
{
	return resolve_x(d, path, 0, out, parent, err);
}

/* The folder id of directory path dir ("" = root). */
static int resolve_dir(struct drive *d, const char *dir, char *id, struct err *err)
{
	struct dchild c;
	int rc = -1;

	if (resolve_want(d, dir, NULL, &c, NULL, err) < 0)
		return -1;
	if (file_kind(d, eff(&c)) != K_DIR) {
		err_set(err, ERR_NOTFOUND, "\"%s\" is not a directory", dir);
		goto out;
	}
	snprintf(id, BE_ID_MAX, "%s", eff(&c)->id);
	rc = 0;
out:
	dchild_release(&c);
	return rc;
}

/* Split path into its directory (malloc'd, "" for top level) and the Drive
 * name of its last component (malloc'd; ERR_INVAL when it has none). */
static int split_path(const char *path, char **dir, char **rname, struct err *err)
{
	const char *base;
	int oom = 0;

	*dir = *rname = NULL;
	if (!be_path_valid(path) || !*path)
		return err_set(err, ERR_INVAL, "\"%s\" is not a valid path", path ? path : "(null)");
	base = be_basename(path);
	*dir = strndup(path, base == path ? 0 : (size_t)(base - path - 1));
	*rname = drive_name_decode(base, strlen(base), &oom);
	if (!*dir || oom) {
		free(*dir);
		free(*rname);
		*dir = *rname = NULL;
		return err_set(err, ERR_NOMEM, "out of memory");
	}
	if (!*rname) {
		free(*dir);
		*dir = NULL;
		return err_set(err, ERR_INVAL, "\"%s\": this name cannot be stored on Drive (U+201B "
			       "is an escape in shown names; see docs/drive.md)", base);
	}
	return 0;
}

/* --- ids ------------------------------------------------------------------- */

/* A pre-generated file id into id[BE_ID_MAX]. */
static int take_id(struct drive *d, char *id, struct err *err)
{
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	char *ids[DRIVE_BATCH_MAX], *url = NULL;
	int n = 0, i, rc = -1;

	pthread_mutex_lock(&d->ids_mu);
	if (d->nids > 0) {
		d->nids--;
		snprintf(id, BE_ID_MAX, "%s", d->ids[d->nids]);
		free(d->ids[d->nids]);
		d->ids[d->nids] = NULL;
		pthread_mutex_unlock(&d->ids_mu);
		return 0;
	}
	pthread_mutex_unlock(&d->ids_mu);
	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/generateIds?count=100&space=drive&fields=ids");
	url = drive_sb_take(&u, NULL, err);
	if (!url || call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0) {
		err_prefix(err, "generating file ids");
		goto out;
	}
	n = drive_parse_ids(resp.body, resp.body_len, ids, DRIVE_BATCH_MAX, err);
	if (n < 0)
		goto out;
	snprintf(id, BE_ID_MAX, "%s", ids[0]);
	free(ids[0]);
	pthread_mutex_lock(&d->ids_mu);
	for (i = 1; i < n; i++) {
		if (d->nids < sizeof(d->ids) / sizeof(d->ids[0]))
			d->ids[d->nids++] = ids[i];
		else
			free(ids[i]);
	}
	pthread_mutex_unlock(&d->ids_mu);
	rc = 0;
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* --- check, list, stat ------------------------------------------------------ */

static int drive_check(struct be *b, struct err *err)
{
	struct drive *d = D(b);
	char root[BE_ID_MAX];
	struct drive_file f;
	int rc = -1;

	if (drive_root(d, root, err) < 0)
		return -1;
	if (get_file(d, root, &f, err) < 0) {
		err_prefix(err, "root folder");
		return -1;
	}
	if (f.trashed)
		err_set(err, ERR_NOTFOUND, "the root folder is in the trash");
	else
		rc = 0;
	drive_file_release(&f);
	return rc;
}

static int drive_list(struct be *b, const char *dir, struct be_list *out, struct err *err)
{
	struct drive *d = D(b);
	struct be_list l = { 0 };
	struct drive_map *m = NULL;
	struct be_entry *e;
	char folder[BE_ID_MAX];
	size_t i;
	int rc = -1;

	if (resolve_dir(d, dir, folder, err) < 0) {
		err_prefix(err, "list \"%s\"", dir);
		goto out;
	}
	if (map_build(d, folder, &m, err) < 0) {
		err_prefix(err, "list \"%s\"", dir);
		goto out;
	}
	for (i = 0; i < m->n; i++) {
		e = be_list_add(&l, m->v[i].name, strlen(m->v[i].name));
		if (!e) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		free(e->name);
		e->name = NULL;
		if (file_entry(d, eff(&m->v[i]), m->v[i].name, e, err) < 0) {
			l.n--;
			goto out;
		}
	}
	l.skipped_invalid = m->skipped;
	be_list_finish(&l);
	log_debug(TAG, "listed \"%s\": %zu entries", dir, l.n);
	be_list_release(out);
	*out = l;
	memset(&l, 0, sizeof(l));
	if (d->ttl_ms >= 0) {
		pthread_mutex_lock(&d->cache_mu);
		m->refs++;
		pthread_mutex_unlock(&d->cache_mu);
		cache_put(d, m);
	}
	rc = 0;
out:
	if (m)
		map_release(d, m);
	be_list_release(&l);
	return rc;
}

static int drive_stat(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct drive *d = D(b);
	struct dchild c;
	int rc;

	memset(out, 0, sizeof(*out));
	if (resolve(d, path, &c, NULL, err) < 0) {
		err_prefix(err, "stat");
		return -1;
	}
	rc = file_entry(d, eff(&c), c.name, out, err);
	dchild_release(&c);
	return rc;
}

/* --- read -------------------------------------------------------------------- */

struct rd {
	struct be_rdwin w;
	struct ck_md5 md5;        /* md5 of [0, md5_pos) */
	uint64_t md5_pos;
	int md5_ok;               /* md5 covers a contiguous run from 0 */
};

/* http sink: the md5 of a run from 0, then the window. */
static int rd_sink(void *ud, const char *data, size_t len)
{
	struct rd *r = ud;

	if (r->md5_ok && r->w.pos == r->md5_pos) {
		ck_md5_update(&r->md5, data, len);
		r->md5_pos += len;
	}
	return be_rdwin_feed(&r->w, data, len);
}

static int read_export(struct drive *d, const struct drive_file *f, uint64_t off, uint64_t len,
		       be_sink_fn sink, void *ud, uint64_t *got, struct err *err)
{
	const struct drive_export *x = drive_export_for(f->mime);
	struct http_resp resp = { 0 };
	struct http_req req;
	struct drive_sb u = { 0 };
	char *url = NULL;
	uint64_t end;
	int rc = -1;

	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/");
	drive_sb_enc(&u, f->id);
	drive_sb_add(&u, "/export?supportsAllDrives=true&mimeType=");
	drive_sb_enc(&u, x->export_mime);
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = url;
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;
	req.max_body = DRIVE_EXPORT_MAX;
	if (drive_do(d, &req, 0, &resp, err) < 0)
		goto out;
	exp_remember(d, f->id, f->version, resp.body_len);
	if (off < resp.body_len) {
		end = len > resp.body_len - off ? resp.body_len : off + len;
		if (sink(ud, resp.body + off, (size_t)(end - off)) != 0) {
			err_set(err, ERR_CANCELED, "stopped by the caller");
			goto out;
		}
		*got = end - off;
	}
	rc = 0;
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

static int read_media(struct drive *d, const struct drive_file *f, const char *path,
		      uint64_t off, uint64_t len, be_sink_fn sink, void *ud, uint64_t *got,
		      struct err *err)
{
	struct http_resp resp = { 0 };
	struct http_req req;
	struct drive_sb u = { 0 };
	struct rd r;
	char *url = NULL, range[96];
	const char *hdrs[2] = { range, NULL };
	unsigned char md5[16];
	uint64_t size = f->has_size ? f->size : 0, start, first, last, total;
	int pieces = 0, rc = -1;

	memset(&r, 0, sizeof(r));
	r.w.sink = sink;
	r.w.ud = ud;
	r.w.skip_to = off;
	r.w.end = len > size - (off < size ? off : size) ? size : off + len;
	r.md5_ok = off == 0 && ck_md5_init(&r.md5) == 0;
	if (off >= size || r.w.end <= off) {
		rc = 0;
		goto out;
	}
	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/");
	drive_sb_enc(&u, f->id);
	drive_sb_add(&u, "?alt=media&supportsAllDrives=true");
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	for (;;) {
		start = r.w.skip_to;
		snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, start,
			 r.w.end - 1);
		r.w.pos = start;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.url = url;
		req.headers = hdrs;
		req.body_fd = -1;
		req.retry = HTTP_RETRY_SAFE;
		req.sink = rd_sink;
		req.sink_ud = &r;
		http_resp_release(&resp);
		if (drive_do(d, &req, 0, &resp, err) == 0)
			break;
		if (r.w.enough) {
			err_clear(err);
			rc = 0;
			goto out;
		}
		if (r.w.user_abort) {
			err_set(err, ERR_CANCELED, "read \"%s\": stopped by the caller", path);
			goto out;
		}
		if (resp.status == 416) {
			err_clear(err);
			rc = 0;
			goto out;
		}
		if ((err->code == ERR_NET || err->code == ERR_TIMEOUT) && resp.sink_bytes > 0 &&
		    ++pieces <= 100000) {
			log_debug(TAG, "read \"%s\": transfer cut; continuing at %" PRIu64, path,
				  r.w.skip_to);
			continue;
		}
		err_prefix(err, "read \"%s\"", path);
		goto out;
	}
	if (resp.status == 206) {
		if (be_content_range_parse(http_resp_header(&resp, "Content-Range", 0), &first,
					   &last, &total) < 0 ||
		    first != start || total == UINT64_MAX) {
			err_set(err, ERR_PARSE, "read \"%s\": bad Content-Range", path);
			goto out;
		}
	} else if (resp.status == 200) {
		if (start > 0) {
			err_set(err, ERR_PARSE, "read \"%s\": the server ignored the Range header",
				path);
			goto out;
		}
		total = r.w.pos;
	} else {
		err_set(err, ERR_PARSE, "read \"%s\": unexpected HTTP status %ld", path, resp.status);
		goto out;
	}
	if (r.w.skip_to < r.w.end && !r.w.enough) {
		err_set(err, ERR_NET, "read \"%s\": the reply ended after %" PRIu64 " of %" PRIu64
			" bytes", path, r.w.skip_to, r.w.end);
		goto out;
	}
	if (r.md5_ok && r.md5_pos == size && f->has_md5) {
		ck_md5_final(&r.md5, md5);
		r.md5_ok = 0;
		if (memcmp(md5, f->md5, 16) != 0) {
			err_set(err, ERR_PARSE, "read \"%s\": checksum mismatch (md5 of the bytes "
				"received differs from md5Checksum)", path);
			goto out;
		}
	}
	rc = 0;
out:
	if (r.md5_ok)
		ck_md5_release(&r.md5);
	*got = r.w.delivered;
	http_resp_release(&resp);
	free(url);
	return rc;
}

static int drive_read(struct be *b, const char *path, const struct be_version *ver,
		      uint64_t off, uint64_t len, be_sink_fn sink, void *ud, uint64_t *got,
		      struct err *err)
{
	struct drive *d = D(b);
	struct drive_file f;
	struct dchild c;
	uint64_t g = 0;
	int k, rc = -1;

	memset(&f, 0, sizeof(f));
	memset(&c, 0, sizeof(c));
	if (got)
		*got = 0;
	if (len == 0)
		return 0;
	if (ver && ver->id[0]) {
		if (get_file(d, ver->id, &f, err) < 0) {
			if (err->code == ERR_NOTFOUND)
				err_set(err, ERR_NOTFOUND, "read \"%s\": the file is gone", path);
			else
				err_prefix(err, "read \"%s\"", path);
			goto out;
		}
		if (f.trashed) {
			err_set(err, ERR_NOTFOUND, "read \"%s\": the file is in the trash", path);
			goto out;
		}
		if (ver->gen > 0 && f.version != ver->gen) {
			err_set(err, ERR_NOTFOUND, "read \"%s\": version %" PRId64 " is gone (now %"
				PRId64 ")", path, ver->gen, f.version);
			goto out;
		}
	} else {
		/* The path gives the id; size, md5 and type come fresh (a cached
		 * listing may predate a change by another client). */
		if (resolve(d, path, &c, NULL, err) < 0) {
			err_prefix(err, "read");
			goto out;
		}
		if (get_file(d, eff(&c)->id, &f, err) < 0) {
			err_prefix(err, "read \"%s\"", path);
			goto out;
		}
		if (f.trashed) {
			err_set(err, ERR_NOTFOUND, "read \"%s\": the file is in the trash", path);
			goto out;
		}
	}
	k = file_kind(d, &f);
	if (k == K_DIR || k == K_HIDE) {
		err_set(err, ERR_INVAL, "read \"%s\": not a file", path);
		goto out;
	}
	if (k == K_DOC)
		rc = read_export(d, &f, off, len, sink, ud, &g, err);
	else
		rc = read_media(d, &f, path, off, len, sink, ud, &g, err);
out:
	if (got)
		*got = g;
	drive_file_release(&f);
	dchild_release(&c);
	return rc;
}

/* --- writes: helpers ------------------------------------------------------------ */

static void fmt_time(const struct timespec *t, char *out, size_t len)
{
	struct tm tm;
	time_t s = t->tv_sec;

	gmtime_r(&s, &tm);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (long)(t->tv_nsec / 1000000));
}

/* Upload metadata JSON: id/name/parents for creates, modifiedTime when set,
 * the content type, and the symlink property. */
static char *meta_json(const char *id, const char *name, const char *parent,
		       const struct be_meta *m, const char *symlink_target, struct err *err)
{
	json_t *j = json_object(), *a = NULL, *ap = NULL;
	char t[48];
	char *s = NULL;

	if (!j)
		goto nomem;
	if (id && json_object_set_new(j, "id", json_string(id)) < 0)
		goto nomem;
	if (name && json_object_set_new(j, "name", json_string(name)) < 0) {
		err_set(err, ERR_INVAL, "name \"%s\" is not valid UTF-8", name);
		goto out;
	}
	if (parent) {
		a = json_array();
		if (!a || json_array_append_new(a, json_string(parent)) < 0 ||
		    json_object_set(j, "parents", a) < 0)
			goto nomem;
	}
	if (m && (m->mtime.tv_sec || m->mtime.tv_nsec)) {
		fmt_time(&m->mtime, t, sizeof(t));
		if (json_object_set_new(j, "modifiedTime", json_string(t)) < 0)
			goto nomem;
	}
	if (m && json_object_set_new(j, "mimeType", json_string(m->content_type ?
				     m->content_type : "application/octet-stream")) < 0)
		goto nomem;
	if (symlink_target) {
		ap = json_object();
		if (!ap)
			goto nomem;
		if (json_object_set_new(ap, DRIVE_PROP_SYMLINK, json_string(symlink_target)) < 0) {
			err_set(err, ERR_INVAL, "symlink target is not valid UTF-8");
			goto out;
		}
		if (json_object_set(j, "appProperties", ap) < 0)
			goto nomem;
	}
	s = jsonh_dumps(j, err);
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	json_decref(a);
	json_decref(ap);
	json_decref(j);
	return s;
}

static int same_content(const struct drive_file *f, uint64_t size, const unsigned char md5[16])
{
	return f->has_size && f->size == size && f->has_md5 && memcmp(f->md5, md5, 16) == 0;
}

/* Check what Drive committed against what we sent. */
static int verify_committed(const struct drive_file *f, const struct be_meta *m,
			    const char *path, struct err *err)
{
	if (!f->has_size || f->size != m->size)
		return err_set(err, ERR_PARSE, "upload \"%s\": committed size %" PRIu64 " differs "
			       "from %" PRIu64, path, f->has_size ? f->size : 0, m->size);
	if (!f->has_md5)
		return err_set(err, ERR_PARSE, "upload \"%s\": the reply has no md5Checksum to "
			       "verify", path);
	if (memcmp(f->md5, m->md5, 16) != 0)
		return err_set(err, ERR_PARSE, "upload \"%s\": committed md5Checksum differs "
			       "(checksum mismatch)", path);
	return 0;
}

static int check_pre(const struct be_pre *pre, const char *path, struct err *err)
{
	if (!pre)
		return err_set(err, ERR_INVAL, "%s: a write needs a precondition", path);
	if (pre->kind == BE_PRE_ABSENT)
		return 0;
	if (pre->kind == BE_PRE_MATCH && pre->ver.id[0] &&
	    drive_id_valid(pre->ver.id, strlen(pre->ver.id)))
		return 0;
	return err_set(err, ERR_INVAL, "%s: bad precondition (kind %d, id \"%s\")", path,
		       (int)pre->kind, pre->ver.id);
}

/* The live items of folder parent the server matches to "name = rname"
 * (its match may be looser than ours: the callers compare): 0 with *v
 * (malloc'd, *n items; the caller releases each and frees *v), or -1 with
 * *err and nothing to free. */
static int list_named(struct drive *d, const char *parent, const char *rname,
		      struct drive_file **v, size_t *n, struct err *err)
{
	struct drive_sb b = { 0 };
	char *qn = NULL, *cond = NULL, *q = NULL;
	int rc = -1;

	*v = NULL;
	*n = 0;
	qn = drive_q_quote(rname);
	if (!qn) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	drive_sb_add(&b, "name = ");
	drive_sb_add(&b, qn);
	cond = drive_sb_take(&b, NULL, err);
	if (!cond)
		goto out;
	q = q_children(parent, "false", cond, err);
	if (!q || list_collect(d, q, 100, v, n, err) < 0)
		goto out;
	rc = 0;
out:
	free(qn);
	free(cond);
	free(q);
	return rc;
}

/* The oldest live item named rname in folder parent: 1 found (*out), 0
 * none, -1 error. */
static int find_by_name(struct drive *d, const char *parent, const char *rname,
			struct drive_file *out, struct err *err)
{
	struct drive_file *v = NULL;
	size_t n = 0, i, best = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (list_named(d, parent, rname, &v, &n, err) < 0)
		goto out;
	rc = 0;
	for (i = 0; i < n; i++) {
		if (v[i].name_len != strlen(rname) || memcmp(v[i].name, rname, v[i].name_len) != 0)
			continue;  /* the server's match is not ours */
		if (rc == 0 || v[i].ctime.tv_sec < v[best].ctime.tv_sec ||
		    (v[i].ctime.tv_sec == v[best].ctime.tv_sec && strcmp(v[i].id, v[best].id) < 0))
			best = i;
		rc = 1;
	}
	if (rc == 1) {
		*out = v[best];
		memset(&v[best], 0, sizeof(v[best]));
	}
out:
	for (i = 0; i < n; i++)
		drive_file_release(&v[i]);
	free(v);
	return rc;
}

/* Fill *out (may be NULL) with the entry of f named after path. */
static void entry_of(struct drive *d, const struct drive_file *f, const char *path,
		     struct be_entry *out)
{
	struct err tmp;

	if (!out)
		return;
	err_clear(&tmp);
	if (file_entry(d, f, be_basename(path), out, &tmp) < 0)
		memset(out, 0, sizeof(*out));
}

/* A write found the remote different from its guard: ERR_CONFLICT with
 * *out = f (or BE_NONE when f is NULL). */
static int conflict(struct drive *d, const struct drive_file *f, const char *path,
		    const char *what, struct be_entry *out, struct err *err)
{
	if (out) {
		be_entry_release(out);
		if (f)
			entry_of(d, f, path, out);
	}
	err_set(err, ERR_CONFLICT, "%s \"%s\": changed remotely (%s)", what, path,
		f ? "another version is there now" : "it is gone");
	err->http_status = 412;
	return -1;
}

/* Check a BE_PRE_MATCH guard against the current file: 0 go on (*cur
 * filled), 1 the file already holds exactly our content (size, md5), -1
 * with ERR_CONFLICT (*out = current) or another error. */
static int guard_match(struct drive *d, const struct be_pre *pre, const char *path,
		       uint64_t size, const unsigned char md5[16], struct drive_file *cur,
		       struct be_entry *out, struct err *err)
{
	int k;

	if (get_file(d, pre->ver.id, cur, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			return conflict(d, NULL, path, "write", out, err);
		err_prefix(err, "write \"%s\"", path);
		return -1;
	}
	if (cur->trashed) {
		drive_file_release(cur);
		return conflict(d, NULL, path, "write", out, err);
	}
	k = file_kind(d, cur);
	if (k == K_DIR || k == K_DOC || strncmp(cur->mime, DRIVE_MIME_APPS,
						strlen(DRIVE_MIME_APPS)) == 0)
		return err_set(err, ERR_PERM, "write \"%s\": %s cannot be written", path,
			       k == K_DIR ? "a folder" : "a Google Docs file");
	if (cur->version != pre->ver.gen) {
		if (md5 && same_content(cur, size, md5))
			return 1;
		return conflict(d, cur, path, "write", out, err);
	}
	return 0;
}

/* Check a BE_PRE_ABSENT guard in folder parent: 0 absent, 1 an item of
 * that name holds exactly our content (*cur), -1 ERR_CONFLICT (*out) or
 * another error. */
static int guard_absent(struct drive *d, const char *parent, const char *rname,
			const char *path, uint64_t size, const unsigned char md5[16],
			struct drive_file *cur, struct be_entry *out, struct err *err)
{
	int r = find_by_name(d, parent, rname, cur, err);

	if (r < 0) {
		err_prefix(err, "write \"%s\"", path);
		return -1;
	}
	if (r == 0)
		return 0;
	if (md5 && file_kind(d, cur) != K_DIR && same_content(cur, size, md5))
		return 1;
	return conflict(d, cur, path, "create", out, err);
}

/* One multipart upload (POST a create or PATCH an update). */
static int multipart(struct drive *d, const char *method, const char *url, const char *js,
		     const char *data, size_t len, const char *ctype, struct drive_file *res,
		     struct err *err)
{
	struct http_resp resp = { 0 };
	struct http_req req;
	struct drive_sb body = { 0 };
	unsigned char rnd[12];
	char boundary[40], ct[96], *bodys = NULL;
	const char *hdrs[2] = { ct, NULL };
	size_t blen = 0;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		err_set(err, ERR_IO, "no randomness for a multipart boundary");
		goto out;
	}
	memcpy(boundary, "durafs_", 7);
	enc_hex(rnd, sizeof(rnd), boundary + 7);
	drive_sb_addf(&body, "--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
		      boundary);
	drive_sb_add(&body, js);
	drive_sb_addf(&body, "\r\n--%s\r\nContent-Type: ", boundary);
	drive_sb_add(&body, ctype ? ctype : "application/octet-stream");
	drive_sb_add(&body, "\r\n\r\n");
	drive_sb_addn(&body, data, len);
	drive_sb_addf(&body, "\r\n--%s--\r\n", boundary);
	bodys = drive_sb_take(&body, &blen, err);
	if (!bodys)
		goto out;
	snprintf(ct, sizeof(ct), "Content-Type: multipart/related; boundary=%s", boundary);
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = hdrs;
	req.body = bodys;
	req.body_len = blen;
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;  /* a create carries its id; an update is idempotent */
	if (drive_do(d, &req, 1, &resp, err) < 0)
		goto out;
	rc = drive_parse_file(resp.body, resp.body_len, res, err);
out:
	http_resp_release(&resp);
	free(bodys);
	return rc;
}

/* upl/files[/ID]?uploadType=T&supportsAllDrives=true&fields=... */
static char *upload_url(struct drive *d, const char *id, const char *type, struct err *err)
{
	struct drive_sb u = { 0 };

	drive_sb_add(&u, d->upl);
	drive_sb_add(&u, "/files");
	if (id) {
		drive_sb_add(&u, "/");
		drive_sb_enc(&u, id);
	}
	drive_sb_add(&u, "?uploadType=");
	drive_sb_add(&u, type);
	drive_sb_add(&u, "&supportsAllDrives=true&fields=");
	drive_sb_enc(&u, DRIVE_FILE_FIELDS);
	return drive_sb_take(&u, NULL, err);
}

/* api/files/ID?supportsAllDrives=true&fields=...[&extra] */
static char *file_url(struct drive *d, const char *id, const char *extra, struct err *err)
{
	struct drive_sb u = { 0 };

	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/");
	drive_sb_enc(&u, id);
	drive_sb_add(&u, "?supportsAllDrives=true&fields=");
	drive_sb_enc(&u, DRIVE_FILE_FIELDS);
	if (extra)
		drive_sb_add(&u, extra);
	return drive_sb_take(&u, NULL, err);
}

/* One multipart write of path (create or replace), guarded. */
static int put_mem(struct drive *d, const char *path, const char *data, const struct be_meta *m,
		   const char *symlink_target, const struct be_pre *pre, struct be_entry *out,
		   struct err *err)
{
	struct drive_file cur, res;
	char *dir = NULL, *rname = NULL, *url = NULL, *js = NULL, parent[BE_ID_MAX], id[BE_ID_MAX];
	struct err tmp;
	int r, rc = -1;

	memset(&cur, 0, sizeof(cur));
	memset(&res, 0, sizeof(res));
	if (out)
		memset(out, 0, sizeof(*out));
	if (check_pre(pre, path, err) < 0 || split_path(path, &dir, &rname, err) < 0)
		goto out;
	if (pre->kind == BE_PRE_ABSENT) {
		if (resolve_dir(d, dir, parent, err) < 0) {
			err_prefix(err, "upload \"%s\"", path);
			goto out;
		}
		r = guard_absent(d, parent, rname, path, m->size, m->md5, &cur, out, err);
		if (r < 0)
			goto out;
		if (r == 1) {
			log_debug(TAG, "upload \"%s\": already there with our content", path);
			entry_of(d, &cur, path, out);
			rc = 0;
			goto out;
		}
		if (take_id(d, id, err) < 0)
			goto out;
		js = meta_json(id, rname, parent, m, symlink_target, err);
		url = js ? upload_url(d, NULL, "multipart", err) : NULL;
		if (!url)
			goto out;
		if (multipart(d, "POST", url, js, data, (size_t)m->size, m->content_type, &res,
			      err) < 0) {
			if (err->code != ERR_EXISTS) {
				err_prefix(err, "upload \"%s\"", path);
				goto out;
			}
			/* 409: an earlier attempt with this id was committed. */
			err_clear(&tmp);
			if (get_file(d, id, &res, &tmp) < 0 || !same_content(&res, m->size, m->md5)) {
				err_set(err, ERR_CONFLICT, "upload \"%s\": id %s exists with other "
					"content", path, id);
				goto out;
			}
		}
	} else {
		r = guard_match(d, pre, path, m->size, m->md5, &cur, out, err);
		if (r < 0)
			goto out;
		if (r == 1) {
			entry_of(d, &cur, path, out);
			rc = 0;
			goto out;
		}
		js = meta_json(NULL, NULL, NULL, m, symlink_target, err);
		url = js ? upload_url(d, pre->ver.id, "multipart", err) : NULL;
		if (!url)
			goto out;
		if (multipart(d, "PATCH", url, js, data, (size_t)m->size, m->content_type, &res,
			      err) < 0) {
			err_prefix(err, "upload \"%s\"", path);
			goto out;
		}
	}
	if (verify_committed(&res, m, path, err) < 0)
		goto out;
	cache_upsert(d, res.parent, &res);
	entry_of(d, &res, path, out);
	rc = 0;
out:
	drive_file_release(&cur);
	drive_file_release(&res);
	free(dir);
	free(rname);
	free(url);
	free(js);
	return rc;
}

static int drive_put(struct be *b, const char *path, int fd, const struct be_meta *meta,
		     const struct be_pre *pre, struct be_entry *out, struct err *err)
{
	char *data = NULL;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (be_load_for_put(fd, meta, (uint64_t)1 << 30, 1, path, &data, err) < 0)
		goto out;
	rc = put_mem(D(b), path, data, meta, NULL, pre, out, err);
out:
	free(data);
	return rc;
}

static int drive_symlink(struct be *b, const char *path, const char *target,
			 const struct timespec *mtime, const struct be_pre *pre,
			 struct be_entry *out, struct err *err)
{
	struct be_meta m;

	if (be_symlink_meta(path, target, mtime, "text/plain", &m, err) < 0)
		return -1;
	return put_mem(D(b), path, target, &m, target, pre, out, err);
}

/* --- resumable uploads ------------------------------------------------------------ */

/* Guard data kept after the session URI ("#durafs=a:PARENT:ID" for a
 * create, "#durafs=m:ID:VERSION" for a replace); never sent. */
struct sguard {
	char kind;                /* 'a', 'm', or 0 when none */
	char a[BE_ID_MAX], b[BE_ID_MAX];
	int64_t ver;
};

static int session_parse(const char *session, char *url, size_t urlsz, struct sguard *g)
{
	const char *t = strstr(session, SESSION_TAG), *p, *c;
	size_t ulen = t ? (size_t)(t - session) : strlen(session);
	long long v;
	char *end;

	memset(g, 0, sizeof(*g));
	if (ulen >= urlsz)
		return -1;
	memcpy(url, session, ulen);
	url[ulen] = '\0';
	if (!t)
		return 0;
	p = t + strlen(SESSION_TAG);
	if ((p[0] != 'a' && p[0] != 'm') || p[1] != ':')
		return -1;
	g->kind = p[0];
	p += 2;
	c = strchr(p, ':');
	if (!c || (size_t)(c - p) >= sizeof(g->a) || c == p)
		return -1;
	memcpy(g->a, p, (size_t)(c - p));
	g->a[c - p] = '\0';
	p = c + 1;
	if (g->kind == 'a') {
		if (!*p || strlen(p) >= sizeof(g->b) || !drive_id_valid(p, strlen(p)))
			return -1;
		snprintf(g->b, sizeof(g->b), "%s", p);
	} else {
		errno = 0;
		v = strtoll(p, &end, 10);
		if (errno || end == p || *end || v < 0)
			return -1;
		g->ver = v;
	}
	return drive_id_valid(g->a, strlen(g->a)) ? 0 : -1;
}

static int drive_upload_begin(struct be *b, const char *path, const struct be_meta *meta,
			      const struct be_pre *pre, struct be_upload *up, struct err *err)
{
	struct drive *d = D(b);
	struct http_resp resp = { 0 };
	struct http_req req;
	struct drive_file cur;
	char *dir = NULL, *rname = NULL, *js = NULL, *url = NULL;
	char parent[BE_ID_MAX], id[BE_ID_MAX], xct[160], xlen[64], tag[BE_ID_MAX * 2 + 40];
	const char *hdrs[4], *loc;
	uint64_t chunk = up->chunk_size ? up->chunk_size : d->chunk;
	int r, n, rc = -1;

	memset(&cur, 0, sizeof(cur));
	if (!be_chunk_size_valid(chunk)) {
		err_set(err, ERR_INVAL, "upload \"%s\": chunk size %" PRIu64 " is not a multiple "
			"of 256 KiB", path, chunk);
		goto out;
	}
	if (check_pre(pre, path, err) < 0 || split_path(path, &dir, &rname, err) < 0)
		goto out;
	if (strlen(path) >= sizeof(up->path)) {
		err_set(err, ERR_INVAL, "upload: path too long");
		goto out;
	}
	memset(up, 0, sizeof(*up));
	if (pre->kind == BE_PRE_ABSENT) {
		if (resolve_dir(d, dir, parent, err) < 0) {
			err_prefix(err, "upload \"%s\"", path);
			goto out;
		}
		r = guard_absent(d, parent, rname, path, meta->size, meta->md5, &cur, NULL, err);
		if (r < 0)
			goto out;
		if (r == 0) {
			if (take_id(d, id, err) < 0)
				goto out;
			js = meta_json(id, rname, parent, meta, NULL, err);
			url = js ? upload_url(d, NULL, "resumable", err) : NULL;
			snprintf(tag, sizeof(tag), SESSION_TAG "a:%s:%s", parent, id);
		}
	} else {
		r = guard_match(d, pre, path, meta->size, meta->md5, &cur, NULL, err);
		if (r < 0)
			goto out;
		if (r == 0) {
			js = meta_json(NULL, NULL, NULL, meta, NULL, err);
			url = js ? upload_url(d, pre->ver.id, "resumable", err) : NULL;
			snprintf(tag, sizeof(tag), SESSION_TAG "m:%s:%" PRId64, pre->ver.id,
				 pre->ver.gen);
		}
	}
	if (r == 1) {
		/* Already committed by an earlier attempt. */
		be_upload_started(up, path, meta, chunk, 1);
		rc = 0;
		goto out;
	}
	if (!url)
		goto out;
	snprintf(xct, sizeof(xct), "X-Upload-Content-Type: %s",
		 meta->content_type ? meta->content_type : "application/octet-stream");
	snprintf(xlen, sizeof(xlen), "X-Upload-Content-Length: %" PRIu64, meta->size);
	hdrs[0] = "Content-Type: application/json; charset=UTF-8";
	hdrs[1] = xct;
	hdrs[2] = xlen;
	hdrs[3] = NULL;
	memset(&req, 0, sizeof(req));
	req.method = pre->kind == BE_PRE_ABSENT ? "POST" : "PATCH";
	req.url = url;
	req.headers = hdrs;
	req.body = js;
	req.body_len = strlen(js);
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;
	if (drive_do(d, &req, 1, &resp, err) < 0) {
		err_prefix(err, "upload \"%s\": starting a session", path);
		goto out;
	}
	loc = http_resp_header(&resp, "Location", 0);
	if (!loc || !*loc) {
		err_set(err, ERR_PARSE, "upload \"%s\": no Location in the session reply", path);
		goto out;
	}
	if (loc[0] == '/')
		n = snprintf(up->session, sizeof(up->session), "%s%s%s", d->ep, loc, tag);
	else if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0)
		n = snprintf(up->session, sizeof(up->session), "%s%s", loc, tag);
	else {
		err_set(err, ERR_PARSE, "upload \"%s\": session URI is not a URL", path);
		goto out;
	}
	if (n < 0 || (size_t)n >= sizeof(up->session) || strchr(loc, '#')) {
		err_set(err, ERR_PARSE, "upload \"%s\": session URI too long or malformed", path);
		goto out;
	}
	be_upload_started(up, path, meta, chunk, 0);
	rc = 0;
out:
	if (rc < 0)
		up->session[0] = '\0';
	http_resp_release(&resp);
	drive_file_release(&cur);
	free(dir);
	free(rname);
	free(js);
	free(url);
	return rc;
}

/* A completing reply (200/201): parse, verify, finish *up. */
static int upload_completed(struct drive *d, struct be_upload *up, const struct http_resp *resp,
			    struct be_entry *out, struct err *err)
{
	struct drive_file f;
	int rc = -1;

	if (drive_parse_file(resp->body, resp->body_len, &f, err) < 0) {
		err_prefix(err, "upload \"%s\": completing", up->path);
		return -1;
	}
	if (verify_committed(&f, &up->meta, up->path, err) < 0)
		goto out;
	cache_upsert(d, f.parent, &f);
	entry_of(d, &f, up->path, out);
	up->persisted = up->meta.size;
	up->done = 1;
	rc = 1;
out:
	drive_file_release(&f);
	return rc;
}

static int session_failed(struct be_upload *up, struct err *err)
{
	long st = err->http_status;

	if (err->code == ERR_GONE || err->code == ERR_NOTFOUND || st == 404 || st == 410) {
		err_set(err, ERR_GONE, "upload \"%s\": the session expired or was cancelled "
			"(HTTP %ld); start over", up->path, st);
		err->http_status = st;
		return -1;
	}
	err_prefix(err, "upload \"%s\"", up->path);
	return -1;
}

static int drive_upload_query(struct be *b, struct be_upload *up, struct be_entry *out,
			      struct err *err)
{
	struct drive *d = D(b);
	struct http_resp resp = { 0 };
	struct http_req req;
	struct sguard g;
	char cr[96], url[BE_SESSION_MAX];
	const char *hdrs[2] = { cr, NULL };
	uint64_t p;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!up->session[0] || session_parse(up->session, url, sizeof(url), &g) < 0)
		return err_set(err, ERR_INVAL, "upload \"%s\": no session or a malformed one",
			       up->path);
	be_content_range_header(cr, sizeof(cr), 0, 0, up->meta.size);
	memset(&req, 0, sizeof(req));
	req.method = "PUT";
	req.url = url;
	req.headers = hdrs;
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;
	if (drive_do(d, &req, 0, &resp, err) < 0) {
		rc = session_failed(up, err);
		goto out;
	}
	if (resp.status == 200 || resp.status == 201) {
		rc = upload_completed(d, up, &resp, out, err);
		goto out;
	}
	if (resp.status != 308) {
		err_set(err, ERR_PARSE, "upload \"%s\": status query answered HTTP %ld", up->path,
			resp.status);
		goto out;
	}
	if (be_range_persisted(http_resp_header(&resp, "Range", 0), &p) < 0 ||
	    p > up->meta.size) {
		err_set(err, ERR_PARSE, "upload \"%s\": bad Range in 308 reply", up->path);
		goto out;
	}
	up->persisted = p;
	rc = 0;
out:
	http_resp_release(&resp);
	return rc;
}

/* Before the last chunk: is the guard still true? 0 yes, -1 ERR_CONFLICT
 * (the session is cancelled, *out = current) or another error. */
static int final_guard(struct drive *d, struct be_upload *up, const struct sguard *g,
		       struct be_entry *out, struct err *err)
{
	struct drive_file cur;
	struct err tmp;
	char *dir = NULL, *rname = NULL;
	int r, rc = -1;

	memset(&cur, 0, sizeof(cur));
	if (g->kind == 'm') {
		if (get_file(d, g->a, &cur, err) < 0) {
			if (err->code != ERR_NOTFOUND)
				goto out;
			conflict(d, NULL, up->path, "upload", out, err);
			goto cancel;
		}
		if (cur.trashed || cur.version != g->ver) {
			conflict(d, cur.trashed ? NULL : &cur, up->path, "upload", out, err);
			goto cancel;
		}
		rc = 0;
		goto out;
	}
	if (g->kind == 'a') {
		if (split_path(up->path, &dir, &rname, err) < 0)
			goto out;
		r = find_by_name(d, g->a, rname, &cur, err);
		if (r < 0)
			goto out;
		if (r == 1 && strcmp(cur.id, g->b) != 0) {
			conflict(d, &cur, up->path, "upload", out, err);
			goto cancel;
		}
	}
	rc = 0;
	goto out;
cancel:
	err_clear(&tmp);
	{
		struct be_upload copy = *up;

		be_upload_cancel(&d->base, &copy, &tmp);
	}
	up->session[0] = '\0';
out:
	drive_file_release(&cur);
	free(dir);
	free(rname);
	return rc;
}

static int drive_upload_chunk(struct be *b, struct be_upload *up, int fd,
			      struct be_entry *out, struct err *err)
{
	struct drive *d = D(b);
	struct http_resp resp = { 0 };
	struct http_req req;
	struct sguard g;
	struct dchild c;
	char cr[128], url[BE_SESSION_MAX];
	const char *hdrs[2] = { cr, NULL };
	uint64_t len, p, before;
	struct err tmp;
	int last, fails = 0, q, rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (up->done) {
		err_clear(&tmp);
		if (out && resolve(d, up->path, &c, NULL, &tmp) == 0) {
			entry_of(d, eff(&c), up->path, out);
			dchild_release(&c);
		}
		return 1;
	}
	if (up->chunk_size == 0)
		up->chunk_size = d->chunk;
	if (!up->session[0] || !be_chunk_size_valid(up->chunk_size) ||
	    session_parse(up->session, url, sizeof(url), &g) < 0)
		return err_set(err, ERR_INVAL, "upload \"%s\": no session or bad chunk size",
			       up->path);
	for (;;) {
		before = up->persisted;
		len = be_chunk_next(up->meta.size, up->persisted, up->chunk_size, &last);
		if (last && final_guard(d, up, &g, out, err) < 0)
			goto out;
		be_content_range_header(cr, sizeof(cr), up->persisted, len, up->meta.size);
		memset(&req, 0, sizeof(req));
		req.method = "PUT";
		req.url = url;
		req.headers = hdrs;
		req.body_fd = len ? fd : -1;
		req.body_off = (off_t)up->persisted;
		req.body_len = (size_t)len;
		req.retry = HTTP_RETRY_NONE;  /* after a failure we ask what persisted */
		http_resp_release(&resp);
		if (drive_do(d, &req, 1, &resp, err) == 0) {
			if (resp.status == 200 || resp.status == 201) {
				rc = upload_completed(d, up, &resp, out, err);
				goto out;
			}
			if (resp.status != 308) {
				err_set(err, ERR_PARSE, "upload \"%s\": chunk answered HTTP %ld",
					up->path, resp.status);
				goto out;
			}
			if (be_range_persisted(http_resp_header(&resp, "Range", 0), &p) < 0 ||
			    p > up->meta.size) {
				err_set(err, ERR_PARSE, "upload \"%s\": bad Range in 308 reply",
					up->path);
				goto out;
			}
			up->persisted = p;
			if (up->persisted > before) {
				rc = 0;
				goto out;
			}
			err_set(err, ERR_HTTP, "upload \"%s\": the server persisted nothing of a "
				"chunk", up->path);
		} else if (!drive_err_transient(err)) {
			rc = session_failed(up, err);
			goto out;
		}
		/* Ask what persisted (never resend blindly), until it answers. */
		for (;;) {
			if (++fails > d->max_fail) {
				err_prefix(err, "upload \"%s\": giving up after %d failures",
					   up->path, fails - 1);
				goto out;
			}
			log_debug(TAG, "upload \"%s\": chunk at %" PRIu64 " failed (%s); asking what "
				  "persisted", up->path, before, err->msg);
			be_backoff(d->http, d->retry_base_ms, fails - 1);
			q = drive_upload_query(b, up, out, err);
			if (q == 1) {
				rc = 1;
				goto out;
			}
			if (q == 0)
				break;
			if (!drive_err_transient(err))
				goto out;
		}
		if (up->persisted > before) {
			rc = 0;
			goto out;
		}
	}
out:
	http_resp_release(&resp);
	return rc;
}

static int drive_upload_cancel(struct be *b, struct be_upload *up, struct err *err)
{
	struct drive *d = D(b);
	struct http_resp resp = { 0 };
	struct http_req req;
	struct sguard g;
	char url[BE_SESSION_MAX];
	int rc = 0;

	if (!up->session[0] || up->done)
		return 0;
	if (session_parse(up->session, url, sizeof(url), &g) < 0) {
		up->session[0] = '\0';
		return 0;
	}
	memset(&req, 0, sizeof(req));
	req.method = "DELETE";
	req.url = url;
	req.body_fd = -1;
	req.retry = HTTP_RETRY_SAFE;
	if (drive_do(d, &req, 0, &resp, err) < 0) {
		if (resp.status == 499 || resp.status == 404 || resp.status == 410) {
			err_clear(err);
		} else {
			err_prefix(err, "cancel upload \"%s\"", up->path);
			rc = -1;
		}
	}
	http_resp_release(&resp);
	if (rc == 0)
		up->session[0] = '\0';
	return rc;
}

/* --- directories, renames, deletes ---------------------------------------------------- */

/* Trash (or delete for good, per -o delete=) item id. ERR_NOTFOUND when
 * gone. */
static int remove_id(struct drive *d, const char *id, int permanent, struct err *err)
{
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	char *url = NULL;
	int rc = -1;

	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/");
	drive_sb_enc(&u, id);
	drive_sb_add(&u, permanent ? "?supportsAllDrives=true" : "?supportsAllDrives=true&fields=id");
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	rc = call(d, permanent ? "DELETE" : "PATCH", url, permanent ? NULL : "{\"trashed\":true}",
		  1, HTTP_RETRY_SAFE, &resp, err);
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* Whether folder has a live child: 1 yes, 0 no, -1 error. */
static int has_children(struct drive *d, const char *folder, struct err *err)
{
	struct drive_page pg = { 0 };
	char *q = q_children(folder, "false", NULL, err);
	int rc = -1;

	if (!q)
		return -1;
	/* One page of one item decides, but a server may answer an empty page
	 * with a token: follow it. */
	{
		char *token = NULL;

		for (;;) {
			if (list_page(d, q, 1, 1, token, &pg, err) < 0)
				break;
			if (pg.n > 0) {
				rc = 1;
				break;
			}
			if (take_token(&pg, &token, err) < 0)
				break;
			drive_page_release(&pg);
			if (!token) {
				rc = 0;
				break;
			}
		}
		free(token);
	}
	drive_page_release(&pg);
	free(q);
	return rc;
}

static int drive_mkdir(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct drive *d = D(b);
	struct drive_file cur, res;
	char *dir = NULL, *rname = NULL, *url = NULL, *js = NULL, parent[BE_ID_MAX], id[BE_ID_MAX];
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	json_t *j = NULL, *a = NULL;
	struct err tmp;
	int r, rc = -1;

	memset(&cur, 0, sizeof(cur));
	memset(&res, 0, sizeof(res));
	if (out)
		memset(out, 0, sizeof(*out));
	if (!*path)
		return err_set(err, ERR_EXISTS, "mkdir: the root exists");
	if (split_path(path, &dir, &rname, err) < 0 || resolve_dir(d, dir, parent, err) < 0) {
		err_prefix(err, "mkdir");
		goto out;
	}
	r = find_by_name(d, parent, rname, &cur, err);
	if (r < 0) {
		err_prefix(err, "mkdir \"%s\"", path);
		goto out;
	}
	if (r == 1) {
		if (file_kind(d, &cur) != K_DIR) {
			err_set(err, ERR_EXISTS, "mkdir \"%s\": a file exists with that name", path);
			goto out;
		}
		entry_of(d, &cur, path, out);
		rc = 0;
		goto out;
	}
	if (take_id(d, id, err) < 0)
		goto out;
	j = json_object();
	a = json_array();
	if (!j || !a || json_object_set_new(j, "id", json_string(id)) < 0 ||
	    json_object_set_new(j, "name", json_string(rname)) < 0 ||
	    json_object_set_new(j, "mimeType", json_string(DRIVE_MIME_FOLDER)) < 0 ||
	    json_array_append_new(a, json_string(parent)) < 0 ||
	    json_object_set(j, "parents", a) < 0) {
		err_set(err, ERR_INVAL, "mkdir \"%s\": cannot build the request (a name that is "
			"not UTF-8?)", path);
		goto out;
	}
	js = jsonh_dumps(j, err);
	if (!js)
		goto out;
	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files?supportsAllDrives=true&fields=");
	drive_sb_enc(&u, DRIVE_FILE_FIELDS);
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	if (call(d, "POST", url, js, 1, HTTP_RETRY_SAFE, &resp, err) < 0) {
		if (err->code != ERR_EXISTS) {
			err_prefix(err, "mkdir \"%s\"", path);
			goto out;
		}
		err_clear(&tmp);
		if (get_file(d, id, &res, &tmp) < 0 || file_kind(d, &res) != K_DIR) {
			err_set(err, ERR_EXISTS, "mkdir \"%s\": id %s is taken", path, id);
			goto out;
		}
	} else if (drive_parse_file(resp.body, resp.body_len, &res, err) < 0) {
		err_prefix(err, "mkdir \"%s\"", path);
		goto out;
	}
	cache_upsert(d, parent, &res);
	entry_of(d, &res, path, out);
	rc = 0;
out:
	json_decref(j);
	json_decref(a);
	http_resp_release(&resp);
	drive_file_release(&cur);
	drive_file_release(&res);
	free(dir);
	free(rname);
	free(url);
	free(js);
	return rc;
}

/* drive_rmdir (tree 0: only when empty) and drive_rmdir_tree (tree 1:
 * the folder goes with its contents, one call). */
static int rmdir_common(struct be *b, const char *path, int tree, struct err *err)
{
	struct drive *d = D(b);
	struct dchild c;
	char parent[BE_ID_MAX];
	int r, rc = -1;

	if (!*path)
		return err_set(err, ERR_INVAL, "rmdir: cannot remove the root");
	if (resolve_want(d, path, NULL, &c, parent, err) < 0) {
		err_prefix(err, "rmdir");
		return -1;
	}
	if (file_kind(d, eff(&c)) != K_DIR) {
		err_set(err, ERR_NOTFOUND, "rmdir \"%s\": not a directory", path);
		goto out;
	}
	r = tree ? 0 : has_children(d, eff(&c)->id, err);
	if (r < 0) {
		err_prefix(err, "rmdir \"%s\"", path);
		goto out;
	}
	if (r == 1) {
		err_set(err, ERR_NOTEMPTY, "rmdir \"%s\": directory not empty", path);
		goto out;
	}
	/* A shortcut to a folder: remove the shortcut, never the target. */
	if (remove_id(d, c.f.id, d->delete_mode == DRIVE_DELETE_PERMANENT, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			err_set(err, ERR_NOTFOUND, "rmdir \"%s\": already gone", path);
		else
			err_prefix(err, "rmdir \"%s\"", path);
		goto out;
	}
	cache_remove(d, parent, c.f.id);
	cache_drop(d, eff(&c)->id);
	rc = 0;
out:
	dchild_release(&c);
	return rc;
}

static int drive_rmdir(struct be *b, const char *path, struct err *err)
{
	return rmdir_common(b, path, 0, err);
}

static int drive_rmdir_tree(struct be *b, const char *path, struct err *err)
{
	return rmdir_common(b, path, 1, err);
}

/* PATCH item id into folder to_parent (from from_parent) under rname. */
static int move_id(struct drive *d, const char *id, const char *from_parent,
		   const char *to_parent, const char *rname, struct drive_file *res,
		   struct err *err)
{
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	json_t *j = NULL;
	char *url = NULL, *js = NULL;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	j = json_object();
	if (!j || json_object_set_new(j, "name", json_string(rname)) < 0) {
		err_set(err, ERR_INVAL, "name \"%s\" is not valid UTF-8", rname);
		goto out;
	}
	js = jsonh_dumps(j, err);
	if (!js)
		goto out;
	drive_sb_add(&u, d->api);
	drive_sb_add(&u, "/files/");
	drive_sb_enc(&u, id);
	drive_sb_add(&u, "?supportsAllDrives=true&fields=");
	drive_sb_enc(&u, DRIVE_FILE_FIELDS);
	if (strcmp(from_parent, to_parent) != 0) {
		drive_sb_add(&u, "&addParents=");
		drive_sb_enc(&u, to_parent);
		drive_sb_add(&u, "&removeParents=");
		drive_sb_enc(&u, from_parent);
	}
	url = drive_sb_take(&u, NULL, err);
	if (!url)
		goto out;
	if (call(d, "PATCH", url, js, 1, HTTP_RETRY_SAFE, &resp, err) < 0)
		goto out;
	rc = drive_parse_file(resp.body, resp.body_len, res, err);
out:
	json_decref(j);
	http_resp_release(&resp);
	free(url);
	free(js);
	return rc;
}

/* The Drive name for renaming child c to shown name base: a Docs export
 * keeps its type, so its extension is dropped when given. */
static char *rename_target_name(struct drive *d, const struct dchild *c, const char *to,
				struct err *err)
{
	const struct drive_export *x;
	char *dir = NULL, *rname = NULL;
	size_t n, e;

	if (split_path(to, &dir, &rname, err) < 0)
		return NULL;
	free(dir);
	if (c && file_kind(d, eff(c)) == K_DOC) {
		x = drive_export_for(eff(c)->mime);
		n = strlen(rname);
		e = strlen(x->ext);
		if (n > e && strcmp(rname + n - e, x->ext) == 0)
			rname[n - e] = '\0';
	}
	return rname;
}

/* The destination guard of a rename in folder parent: remove what to_pre
 * allows us to replace. 0 go on, -1 error (ERR_CONFLICT, *out = what is
 * there). self: the id being moved (never counts as in the way). */
static int rename_make_room(struct drive *d, const char *parent, const char *rname,
			    const char *to, const struct be_pre *to_pre, const char *self,
			    struct be_entry *out, struct err *err)
{
	struct drive_file cur;
	int r, rc = -1;

	memset(&cur, 0, sizeof(cur));
	if (to_pre->kind == BE_PRE_ABSENT) {
		r = find_by_name(d, parent, rname, &cur, err);
		if (r < 0)
			goto out;
		if (r == 1 && strcmp(cur.id, self) != 0) {
			conflict(d, &cur, to, "rename onto", out, err);
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (get_file(d, to_pre->ver.id, &cur, err) < 0) {
		if (err->code != ERR_NOTFOUND)
			goto out;
		err_clear(err);
		rc = 0;  /* gone already: nothing to replace */
		goto out;
	}
	if (cur.trashed || !cur.parent || strcmp(cur.parent, parent) != 0) {
		rc = 0;  /* trashed or moved away (an earlier attempt of ours) */
		goto out;
	}
	if (cur.version != to_pre->ver.gen) {
		conflict(d, &cur, to, "rename onto", out, err);
		goto out;
	}
	if (remove_id(d, cur.id, d->delete_mode == DRIVE_DELETE_PERMANENT, err) < 0 &&
	    err->code != ERR_NOTFOUND)
		goto out;
	err_clear(err);
	cache_remove(d, parent, cur.id);
	rc = 0;
out:
	drive_file_release(&cur);
	return rc;
}

static int drive_rename(struct be *b, const char *from, const struct be_version *from_ver,
			const char *to, const struct be_pre *to_pre, struct be_entry *out,
			struct err *err)
{
	struct drive *d = D(b);
	struct dchild c, dc;
	struct drive_file cur, res;
	char from_parent[BE_ID_MAX], to_parent[BE_ID_MAX], *todir = NULL, *rname = NULL;
	const char *item;
	struct err tmp;
	int rc = -1;

	memset(&c, 0, sizeof(c));
	memset(&dc, 0, sizeof(dc));
	memset(&cur, 0, sizeof(cur));
	memset(&res, 0, sizeof(res));
	if (out)
		memset(out, 0, sizeof(*out));
	if (!from_ver || !from_ver->id[0]) {
		err_set(err, ERR_INVAL, "rename \"%s\": the source id is required", from);
		goto out;
	}
	if (check_pre(to_pre, to, err) < 0)
		goto out;
	if (!*from || !*to) {
		err_set(err, ERR_INVAL, "rename: cannot rename the root");
		goto out;
	}
	if (strcmp(from, to) == 0) {
		err_set(err, ERR_INVAL, "rename \"%s\" onto itself", from);
		goto out;
	}
	err_clear(&tmp);
	if (resolve_want(d, from, from_ver->id, &c, from_parent, &tmp) < 0 ||
	    strcmp(eff(&c)->id, from_ver->id) != 0) {
		/* Not there: finished by an earlier attempt? */
		err_clear(&tmp);
		if (resolve_want(d, to, from_ver->id, &dc, NULL, &tmp) == 0 &&
		    strcmp(eff(&dc)->id, from_ver->id) == 0) {
			entry_of(d, eff(&dc), to, out);
			rc = 0;
			goto out;
		}
		if (c.f.id)
			conflict(d, eff(&c), from, "rename", out, err);
		else
			err_set(err, ERR_NOTFOUND, "rename \"%s\": no such file", from);
		goto out;
	}
	/* The source must still be the version the caller saw. */
	if (get_file(d, from_ver->id, &cur, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			err_set(err, ERR_NOTFOUND, "rename \"%s\": the file is gone", from);
		else
			err_prefix(err, "rename \"%s\"", from);
		goto out;
	}
	if (cur.trashed || (from_ver->gen > 0 && cur.version != from_ver->gen)) {
		conflict(d, cur.trashed ? NULL : &cur, from, "rename", out, err);
		goto out;
	}
	if (file_kind(d, eff(&c)) == K_DIR) {
		err_set(err, ERR_INVAL, "rename \"%s\": a directory (use rename_dir)", from);
		goto out;
	}
	if (split_path(to, &todir, &rname, err) < 0 || resolve_dir(d, todir, to_parent, err) < 0) {
		err_prefix(err, "rename \"%s\"", from);
		goto out;
	}
	free(rname);
	rname = rename_target_name(d, &c, to, err);
	if (!rname)
		goto out;
	/* A shortcut moves itself, not its target. */
	item = c.f.id;
	if (rename_make_room(d, to_parent, rname, to, to_pre, item, out, err) < 0) {
		if (err->code != ERR_CONFLICT)
			err_prefix(err, "rename \"%s\"", from);
		goto out;
	}
	if (move_id(d, item, from_parent, to_parent, rname, &res, err) < 0) {
		err_prefix(err, "rename \"%s\" to \"%s\"", from, to);
		goto out;
	}
	cache_remove(d, from_parent, item);
	if (c.t.id) {
		cache_upsert(d, to_parent, &res);
		cache_drop(d, to_parent);  /* the shortcut's target data is not in res */
		entry_of(d, &c.t, to, out);
	} else {
		cache_upsert(d, to_parent, &res);
		entry_of(d, &res, to, out);
	}
	rc = 0;
out:
	dchild_release(&c);
	dchild_release(&dc);
	drive_file_release(&cur);
	drive_file_release(&res);
	free(todir);
	free(rname);
	return rc;
}

static int drive_rename_dir(struct be *b, const char *from, const char *to,
			    be_progress_fn progress, void *ud, struct err *err)
{
	struct drive *d = D(b);
	struct dchild c, dc;
	struct drive_file res;
	char from_parent[BE_ID_MAX], to_parent[BE_ID_MAX], *todir = NULL, *rname = NULL;
	struct err tmp;
	int r, rc = -1;

	memset(&c, 0, sizeof(c));
	memset(&dc, 0, sizeof(dc));
	memset(&res, 0, sizeof(res));
	if (!*from || !*to) {
		err_set(err, ERR_INVAL, "rename: cannot rename the root");
		goto out;
	}
	if (strcmp(from, to) == 0)
		return 0;
	if (strncmp(to, from, strlen(from)) == 0 && to[strlen(from)] == '/') {
		err_set(err, ERR_INVAL, "rename \"%s\" into its own subdirectory", from);
		goto out;
	}
	if (resolve_want(d, from, NULL, &c, from_parent, err) < 0) {
		if (err->code != ERR_NOTFOUND)
			goto out;
		err_clear(&tmp);
		if (resolve(d, to, &dc, NULL, &tmp) == 0 && file_kind(d, eff(&dc)) == K_DIR) {
			err_clear(err);
			rc = 0;  /* finished by an earlier run */
			goto out;
		}
		err_set(err, ERR_NOTFOUND, "rename \"%s\": no such directory", from);
		goto out;
	}
	if (file_kind(d, eff(&c)) != K_DIR) {
		err_set(err, ERR_INVAL, "rename_dir \"%s\": not a directory", from);
		goto out;
	}
	if (split_path(to, &todir, &rname, err) < 0 || resolve_dir(d, todir, to_parent, err) < 0) {
		err_prefix(err, "rename \"%s\"", from);
		goto out;
	}
	/* An empty directory in the way is replaced (POSIX); anything else is
	 * refused. */
	err_clear(&tmp);
	if (resolve(d, to, &dc, NULL, &tmp) == 0) {
		if (file_kind(d, eff(&dc)) != K_DIR) {
			err_set(err, ERR_EXISTS, "rename \"%s\": \"%s\" is a file", from, to);
			goto out;
		}
		r = has_children(d, eff(&dc)->id, err);
		if (r < 0)
			goto out;
		if (r == 1) {
			err_set(err, ERR_NOTEMPTY, "rename \"%s\": \"%s\" is not empty", from, to);
			goto out;
		}
		if (remove_id(d, dc.f.id, d->delete_mode == DRIVE_DELETE_PERMANENT, err) < 0 &&
		    err->code != ERR_NOTFOUND) {
			err_prefix(err, "rename \"%s\": replacing \"%s\"", from, to);
			goto out;
		}
		err_clear(err);
		cache_remove(d, to_parent, dc.f.id);
	} else if (tmp.code != ERR_NOTFOUND) {
		*err = tmp;
		goto out;
	}
	if (move_id(d, c.f.id, from_parent, to_parent, rname, &res, err) < 0) {
		err_prefix(err, "rename \"%s\" to \"%s\"", from, to);
		goto out;
	}
	cache_remove(d, from_parent, c.f.id);
	cache_upsert(d, to_parent, &res);
	if (progress && progress(ud, 1, 0) != 0) {
		err_set(err, ERR_CANCELED, "rename \"%s\": stopped by the caller", from);
		goto out;
	}
	rc = 0;
out:
	dchild_release(&c);
	dchild_release(&dc);
	drive_file_release(&res);
	free(todir);
	free(rname);
	return rc;
}

static int drive_remove(struct be *b, const char *path, const struct be_version *ver,
			struct be_entry *cur, struct err *err)
{
	struct drive *d = D(b);
	struct drive_file f;
	struct dchild c;
	char *dir = NULL, *rname = NULL, parent[BE_ID_MAX];
	const char *item;
	struct err tmp;
	int rc = -1;

	memset(&f, 0, sizeof(f));
	memset(&c, 0, sizeof(c));
	if (cur)
		memset(cur, 0, sizeof(*cur));
	if (!ver || !ver->id[0]) {
		err_set(err, ERR_INVAL, "delete \"%s\": the file id is required", path);
		goto out;
	}
	if (!*path) {
		err_set(err, ERR_INVAL, "delete: cannot delete the root");
		goto out;
	}
	if (split_path(path, &dir, &rname, err) < 0 || resolve_dir(d, dir, parent, err) < 0) {
		err_prefix(err, "delete \"%s\"", path);
		goto out;
	}
	/* A shortcut shown at path: remove the shortcut, not its target. */
	item = ver->id;
	err_clear(&tmp);
	if (resolve(d, path, &c, NULL, &tmp) == 0 && c.t.id && strcmp(c.t.id, ver->id) == 0)
		item = c.f.id;
	if (get_file(d, item, &f, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			err_set(err, ERR_NOTFOUND, "delete \"%s\": already gone", path);
		else
			err_prefix(err, "delete \"%s\"", path);
		goto out;
	}
	if (f.trashed) {
		err_set(err, ERR_NOTFOUND, "delete \"%s\": already in the trash", path);
		goto out;
	}
	if (!f.parent || strcmp(f.parent, parent) != 0) {
		err_set(err, ERR_NOTFOUND, "delete \"%s\": the file was moved away", path);
		goto out;
	}
	if (item == ver->id && ver->gen > 0 && f.version != ver->gen) {
		conflict(d, &f, path, "delete", cur, err);
		goto out;
	}
	if (remove_id(d, item, d->delete_mode == DRIVE_DELETE_PERMANENT, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			err_set(err, ERR_NOTFOUND, "delete \"%s\": already gone", path);
		else
			err_prefix(err, "delete \"%s\"", path);
		goto out;
	}
	cache_remove(d, parent, item);
	rc = 0;
out:
	drive_file_release(&f);
	dchild_release(&c);
	free(dir);
	free(rname);
	return rc;
}

static int drive_setattr(struct be *b, const char *path, const struct be_version *ver,
			 const struct be_attr *attr, struct be_entry *out, struct err *err)
{
	struct drive *d = D(b);
	struct http_resp resp = { 0 };
	struct drive_file cur, res;
	char t[48], body[96], *url = NULL;
	int rc = -1;

	memset(&cur, 0, sizeof(cur));
	memset(&res, 0, sizeof(res));
	if (out)
		memset(out, 0, sizeof(*out));
	if (!ver || !ver->id[0] || !drive_id_valid(ver->id, strlen(ver->id))) {
		err_set(err, ERR_INVAL, "setattr \"%s\": the file id is required", path);
		goto out;
	}
	if (get_file(d, ver->id, &cur, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			err_set(err, ERR_NOTFOUND, "setattr \"%s\": the file is gone", path);
		else
			err_prefix(err, "setattr \"%s\"", path);
		goto out;
	}
	if (cur.trashed) {
		err_set(err, ERR_NOTFOUND, "setattr \"%s\": the file is in the trash", path);
		goto out;
	}
	if (!(attr->set & BE_ATTR_MTIME)) {
		entry_of(d, &cur, path, out);
		rc = 0;
		goto out;
	}
	if (ver->gen > 0 && cur.version != ver->gen) {
		/* Our own earlier attempt, its reply lost? */
		if (cur.mtime.tv_sec == attr->mtime.tv_sec &&
		    cur.mtime.tv_nsec / 1000000 == attr->mtime.tv_nsec / 1000000) {
			entry_of(d, &cur, path, out);
			rc = 0;
			goto out;
		}
		conflict(d, &cur, path, "setattr", out, err);
		goto out;
	}
	fmt_time(&attr->mtime, t, sizeof(t));
	snprintf(body, sizeof(body), "{\"modifiedTime\":\"%s\"}", t);
	url = file_url(d, ver->id, NULL, err);
	if (!url)
		goto out;
	if (call(d, "PATCH", url, body, 1, HTTP_RETRY_SAFE, &resp, err) < 0 ||
	    drive_parse_file(resp.body, resp.body_len, &res, err) < 0) {
		err_prefix(err, "setattr \"%s\"", path);
		goto out;
	}
	cache_upsert(d, res.parent, &res);
	entry_of(d, &res, path, out);
	rc = 0;
out:
	http_resp_release(&resp);
	drive_file_release(&cur);
	drive_file_release(&res);
	free(url);
	return rc;
}

/* --- purge ------------------------------------------------------------------------ */

struct purge_col {
	char **ids;
	uint64_t *sizes;
	size_t n, cap;
	int oom;
};

static int purge_add(void *ud, const struct drive_file *f)
{
	struct purge_col *p = ud;
	char **ni;
	uint64_t *ns;

	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 256;
		ni = realloc(p->ids, p->cap * sizeof(*ni));
		if (ni)
			p->ids = ni;
		ns = realloc(p->sizes, p->cap * sizeof(*ns));
		if (ns)
			p->sizes = ns;
		if (!ni || !ns) {
			p->oom = 1;
			return 1;
		}
	}
	p->ids[p->n] = strdup(f->id);
	if (!p->ids[p->n]) {
		p->oom = 1;
		return 1;
	}
	p->sizes[p->n++] = f->has_size ? f->size : 0;
	return 0;
}

struct folder_col {
	char **v;
	size_t n, cap;
	int oom;
};

static int folder_add(void *ud, const struct drive_file *f)
{
	struct folder_col *c = ud;
	char **nv;

	if (!f->mime || strcmp(f->mime, DRIVE_MIME_FOLDER) != 0)
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		nv = realloc(c->v, c->cap * sizeof(*nv));
		if (!nv) {
			c->oom = 1;
			return 1;
		}
		c->v = nv;
	}
	if (!(c->v[c->n] = strdup(f->id))) {
		c->oom = 1;
		return 1;
	}
	c->n++;
	return 0;
}

struct purge_prog {
	be_progress_fn fn;
	void *ud;
};

static int purge_progress(void *ud, uint64_t done, uint64_t bytes, uint64_t failed)
{
	struct purge_prog *p = ud;

	(void)failed;
	return p->fn ? p->fn(p->ud, done, bytes) : 0;
}

static int drive_purge(struct be *b, const char *dir, be_progress_fn progress, void *ud,
		       struct err *err)
{
	struct drive *d = D(b);
	struct purge_col pc = { 0 };
	struct folder_col fc = { 0 };
	struct purge_prog pp = { progress, ud };
	char folder[BE_ID_MAX], *q = NULL;
	size_t i;
	int top, rc = -1;

	if (resolve_dir(d, dir, folder, err) < 0) {
		err_prefix(err, "purge \"%s\"", dir);
		goto out;
	}
	pthread_mutex_lock(&d->root_mu);
	top = d->root_is_top && !*dir;
	pthread_mutex_unlock(&d->root_mu);
	if (top) {
		if (drive_trash_list(b, purge_add, &pc, err) < 0)
			goto collect_failed;
	} else {
		/* Trashed items in folder and every live folder below it. */
		if (folder_add(&fc, &(struct drive_file){ .id = folder,
					.mime = (char *)DRIVE_MIME_FOLDER }) != 0) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		for (i = 0; i < fc.n; i++) {
			free(q);
			q = q_children(fc.v[i], "true", NULL, err);
			if (!q || drive_list_q(d, q, d->page_size, 1, purge_add, &pc, err) < 0)
				goto collect_failed;
			free(q);
			q = q_children(fc.v[i], "false", "mimeType = '" DRIVE_MIME_FOLDER "'", err);
			if (!q || drive_list_q(d, q, d->page_size, 1, folder_add, &fc, err) < 0)
				goto collect_failed;
		}
	}
	if (pc.n == 0) {
		rc = 0;
		goto out;
	}
	rc = drive_delete_ids(b, (const char *const *)pc.ids, pc.sizes, pc.n, 0, purge_progress,
			      &pp, NULL, NULL, err);
	if (rc < 0)
		err_prefix(err, "purge \"%s\"", dir);
	else
		log_info(TAG, "purged %zu trashed items under \"%s\"", pc.n, dir);
	goto out;
collect_failed:
	if (pc.oom || fc.oom)
		err_set(err, ERR_NOMEM, "out of memory");
	err_prefix(err, "purge \"%s\": listing the trash", dir);
out:
	for (i = 0; i < pc.n; i++)
		free(pc.ids[i]);
	free(pc.ids);
	free(pc.sizes);
	for (i = 0; i < fc.n; i++)
		free(fc.v[i]);
	free(fc.v);
	free(q);
	return rc;
}

/* --- instance -------------------------------------------------------------------- */

static void drive_free(struct be *b)
{
	struct drive *d = D(b);
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->nmaps; i++)
		map_free(d->maps[i]);
	free(d->maps);
	for (i = 0; i < d->nids; i++)
		free(d->ids[i]);
	pthread_mutex_destroy(&d->root_mu);
	pthread_mutex_destroy(&d->pace_mu);
	pthread_mutex_destroy(&d->ids_mu);
	pthread_mutex_destroy(&d->cache_mu);
	pthread_mutex_destroy(&d->exp_mu);
	drive_source_release(&d->src);
	free(d->ep);
	free(d->api);
	free(d->upl);
	free(d->batch);
	free(d);
}

/* --- changes ---------------------------------------------------------------- */

#define CHG_DEPTH 64                   /* folders walked up from an item */
#define CHG_MEMO 256                   /* folder paths remembered per poll */

/* Folder id -> mount path ("" the root; NULL outside the mount), for one
 * be_changes call. */
struct chg_memo {
	char id[CHG_MEMO][BE_ID_MAX];
	char *path[CHG_MEMO];
	int outside[CHG_MEMO];
	size_t n, next;
};

static void memo_free(struct chg_memo *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		free(m->path[i]);
	m->n = m->next = 0;
}

static int memo_find(const struct chg_memo *m, const char *id, const char **path)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		if (strcmp(m->id[i], id) == 0) {
			*path = m->outside[i] ? NULL : m->path[i];
			return 1;
		}
	}
	return 0;
}

/* Remember id's path (NULL: outside). -1 when out of memory. */
static int memo_put(struct chg_memo *m, const char *id, const char *path)
{
	char *p = NULL;
	size_t i;

	if (path && !(p = strdup(path)))
		return -1;
	if (m->n < CHG_MEMO) {
		i = m->n++;
	} else {
		i = m->next++ % CHG_MEMO;
		free(m->path[i]);
	}
	m->path[i] = p;
	m->outside[i] = !p;
	snprintf(m->id[i], BE_ID_MAX, "%s", id);
	return 0;
}

/* Prepend component comp to the path in b (built from the leaf up). */
static int path_prepend(char *b, size_t cap, const char *comp)
{
	size_t a = strlen(b), c = strlen(comp), extra = a ? c + 1 : c;

	if (a + extra + 1 > cap)
		return -1;
	memmove(b + extra, b, a + 1);
	memcpy(b, comp, c);
	if (a)
		b[c] = '/';
	return 0;
}

/* Where the folder maps show item id: its path under root into buf (1),
 * 0 when the maps do not know it (or only outside root). Walks up through
 * the cached maps, stale ones included (they show where the item was). */
static int cached_path(struct drive *d, const char *id, const char *root, char *buf,
		       size_t cap)
{
	char cur[BE_ID_MAX];
	size_t i, k;
	int depth, found;

	buf[0] = '\0';
	snprintf(cur, sizeof(cur), "%s", id);
	pthread_mutex_lock(&d->cache_mu);
	for (depth = 0; depth < CHG_DEPTH; depth++) {
		if (strcmp(cur, root) == 0) {
			pthread_mutex_unlock(&d->cache_mu);
			return 1;
		}
		found = 0;
		for (i = 0; i < d->nmaps && !found; i++) {
			struct drive_map *m = d->maps[i];

			pthread_rwlock_rdlock(&m->lock);
			for (k = 0; k < m->n; k++) {
				if (strcmp(m->v[k].f.id, cur) != 0)
					continue;
				if (path_prepend(buf, cap, m->v[k].name) == 0) {
					snprintf(cur, sizeof(cur), "%s", m->folder_id);
					found = 1;
				}
				break;
			}
			pthread_rwlock_unlock(&m->lock);
		}
		if (!found)
			break;
	}
	pthread_mutex_unlock(&d->cache_mu);
	buf[0] = '\0';
	return 0;
}

/* The name folder f is shown by in its parent's listing: 1 with *name
 * (malloc'd), 0 when that listing does not show it, -1 with *err. Agrees
 * with the listing in every case: the plain name when Drive holds no other
 * item of that name there (asked with one name query), else (a duplicate
 * shown with its suffix, a real item named like a suffix, a name a Docs
 * export could also take) the parent's folder map decides, built afresh
 * (and cached) when the cached one does not show f. */
static int shown_in_parent(struct drive *d, const struct drive_file *f, char **name,
			   struct err *err)
{
	struct drive_file *v = NULL;
	struct drive_map *m = NULL;
	char *enc = NULL;
	size_t n = 0, i, k;
	int oom = 0, others = 0, pass, rc = -1;

	*name = NULL;
	enc = drive_name_encode(f->name, f->name_len, &oom);
	if (!enc) {
		if (oom)
			return err_set(err, ERR_NOMEM, "out of memory");
		return 0;               /* not showable: the listing skips it */
	}
	if (!strchr(enc, '.') && !memchr(f->name, '\0', f->name_len)) {
		if (list_named(d, f->parent, f->name, &v, &n, err) < 0)
			goto out;
		for (i = 0; i < n; i++)
			if (strcmp(v[i].id, f->id) != 0)
				others++;   /* any other match (even a loose one) */
		if (!others) {
			*name = enc;
			enc = NULL;
			rc = 1;
			goto out;
		}
	}
	for (pass = 0; pass < 2 && !*name; pass++) {
		if (map_get(d, f->parent, pass, &m, err) < 0)
			goto out;
		pthread_rwlock_rdlock(&m->lock);
		for (k = 0; k < m->n; k++) {
			if (strcmp(m->v[k].f.id, f->id) == 0) {
				*name = strdup(m->v[k].name);
				oom = !*name;
				break;
			}
		}
		pthread_rwlock_unlock(&m->lock);
		map_release(d, m);
		m = NULL;
		if (oom) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	rc = *name ? 1 : 0;
out:
	for (i = 0; i < n; i++)
		drive_file_release(&v[i]);
	free(v);
	free(enc);
	return rc;
}

/* The mount path of folder id (from the maps, the memo, else asking Drive
 * for each folder up to the root, then for the name each is shown by): 0
 * with *path (borrowed from the memo; NULL when the folder is outside the
 * mount, gone or in the trash), or -1 with *err (a request failing: the
 * caller retries the whole poll). Names are the listings' (duplicates
 * with their suffix, see shown_in_parent). */
static int folder_path(struct drive *d, const char *id, const char *root, struct chg_memo *memo,
		       const char **path, struct err *err)
{
	char buf[4096], up[4096], cur[BE_ID_MAX];
	struct drive_file *chain = NULL;
	char *name = NULL;
	int depth, i, top = 0, r, rc = -1;

	*path = NULL;
	if (memo_find(memo, id, path))
		return 0;
	if (cached_path(d, id, root, buf, sizeof(buf))) {
		if (memo_put(memo, id, buf) < 0)
			return err_set(err, ERR_NOMEM, "out of memory");
		memo_find(memo, id, path);
		return 0;
	}
	chain = calloc(CHG_DEPTH, sizeof(*chain));
	if (!chain)
		return err_set(err, ERR_NOMEM, "out of memory");
	/* Up to the root (or to a folder the maps know) by ids first: a folder
	 * outside the mount costs no name lookups. */
	up[0] = '\0';
	snprintf(cur, sizeof(cur), "%s", id);
	for (depth = 0; depth < CHG_DEPTH; depth++) {
		if (strcmp(cur, root) == 0)
			break;
		if (depth > 0 && cached_path(d, cur, root, up, sizeof(up)))
			break;
		if (get_file(d, cur, &chain[depth], err) < 0) {
			if (err->code != ERR_NOTFOUND && err->code != ERR_PERM)
				goto out;
			err_clear(err);
			goto outside;
		}
		top = depth + 1;
		if (chain[depth].trashed || !chain[depth].parent ||
		    file_kind(d, &chain[depth]) != K_DIR)
			goto outside;
		snprintf(cur, sizeof(cur), "%s", chain[depth].parent);
	}
	if (depth == CHG_DEPTH)
		goto outside;
	/* Then each folder by the name its parent's listing shows (built
	 * from the leaf up). */
	buf[0] = '\0';
	for (i = 0; i < top; i++) {
		r = shown_in_parent(d, &chain[i], &name, err);
		if (r < 0) {
			if (err->code != ERR_NOTFOUND && err->code != ERR_PERM)
				goto out;
			err_clear(err);
			goto outside;
		}
		if (r == 0 || path_prepend(buf, sizeof(buf), name) < 0)
			goto outside;
		free(name);
		name = NULL;
	}
	if (up[0] && path_prepend(buf, sizeof(buf), up) < 0)
		goto outside;
	if (memo_put(memo, id, buf) < 0) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	memo_find(memo, id, path);
	rc = 0;
	goto out;
outside:
	if (memo_put(memo, id, NULL) < 0)
		err_set(err, ERR_NOMEM, "out of memory");
	else
		rc = 0;
out:
	free(name);
	if (chain)
		for (i = 0; i < CHG_DEPTH; i++)
			drive_file_release(&chain[i]);
	free(chain);
	return rc;
}

/* Forget what the folder maps hold about a changed item: its old folder's
 * and its new folder's maps (shown names may shift) and, for a folder, its
 * own map. */
static void chg_forget(struct drive *d, const char *id, const char *new_parent)
{
	size_t i, k;

	pthread_mutex_lock(&d->cache_mu);
	for (i = 0; i < d->nmaps; i++) {
		struct drive_map *m = d->maps[i];
		int hit = strcmp(m->folder_id, id) == 0 ||
			  (new_parent && strcmp(m->folder_id, new_parent) == 0);

		pthread_rwlock_wrlock(&m->lock);
		for (k = 0; !hit && k < m->n; k++)
			if (strcmp(m->v[k].f.id, id) == 0 ||
			    (m->v[k].t.id && strcmp(m->v[k].t.id, id) == 0))
				hit = 1;
		if (hit)
			map_stale(m);
		pthread_rwlock_unlock(&m->lock);
	}
	pthread_mutex_unlock(&d->cache_mu);
}

static enum be_type kind_type(int k)
{
	switch (k) {
	case K_DIR:
		return BE_DIR;
	case K_LINK:
		return BE_SYMLINK;
	case K_FILE:
	case K_DOC:
		return BE_FILE;
	default:
		return BE_NONE;
	}
}

/* 1 when an item of drive_id (NULL or "": My Drive) can be below the
 * root. */
static int same_drive(struct drive *d, const char *drive_id)
{
	int same;

	pthread_mutex_lock(&d->root_mu);
	same = strcmp(d->drive_id, drive_id ? drive_id : "") == 0;
	pthread_mutex_unlock(&d->root_mu);
	return same;
}

/* Report one change of the feed (see be_change). */
static int chg_report(struct drive *d, const struct drive_change *c, const char *root,
		      struct chg_memo *memo, be_change_fn fn, void *ud, struct err *err)
{
	struct be_change bc;
	char old[4096];
	const char *dir = NULL;
	char *name = NULL;
	int k = K_HIDE, rc = -1;

	memset(&bc, 0, sizeof(bc));
	if (strcmp(c->file_id, root) == 0)
		return 0;               /* the root itself (renamed, touched) */
	bc.id = c->file_id;
	if (c->has_file)
		k = file_kind(d, &c->file);
	if (cached_path(d, c->file_id, root, old, sizeof(old)) && old[0]) {
		bc.old_path = old;
	} else if (c->has_file && c->file.trashed && c->file.parent && k != K_HIDE &&
		   same_drive(d, c->file.drive_id)) {
		/* Not in our folder maps (a remount): a trashed item keeps its
		 * parent, which tells where the mount showed it. */
		if (folder_path(d, c->file.parent, root, memo, &dir, err) < 0)
			goto out;
		if (dir && !(name = shown_base(d, &c->file))) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		if (dir && snprintf(old, sizeof(old), "%s%s%s", dir, *dir ? "/" : "", name) <
		    (int)sizeof(old))
			bc.old_path = old;
		free(name);
		name = NULL;
		dir = NULL;
	}
	if (c->has_file && !c->file.trashed && c->file.parent) {
		/* Another drive's item is outside the mount: no walk. */
		if (same_drive(d, c->file.drive_id) &&
		    folder_path(d, c->file.parent, root, memo, &dir, err) < 0)
			goto out;
		if (dir && k != K_HIDE && strcmp(c->file.mime, DRIVE_MIME_SHORTCUT) != 0) {
			name = shown_base(d, &c->file);
			if (!name) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
		}
	}
	bc.new_dir = dir;
	bc.new_name = dir ? name : NULL;
	if (dir) {
		snprintf(bc.ver.id, sizeof(bc.ver.id), "%s", c->file_id);
		bc.ver.gen = c->file.version;
	}
	bc.gone = !dir;
	bc.type = kind_type(k);
	chg_forget(d, c->file_id, c->has_file ? c->file.parent : NULL);
	if (c->has_file && !c->file.trashed && k == K_DIR && !dir &&
	    memo_put(memo, c->file_id, NULL) < 0) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Deleted for good (Drive names only the id), or trashed or moved out
	 * of the root from a place no folder map knows (a remount): reported
	 * by id alone, the mount looks for it in its stored listings. Only
	 * another drive's items are left out. */
	if (!bc.old_path && !bc.new_dir && c->has_file && !same_drive(d, c->file.drive_id)) {
		rc = 0;
		goto out;
	}
	log_debug(TAG, "change %s: %s%s%s -> %s%s%s", c->file_id,
		  bc.old_path ? "\"" : "", bc.old_path ? bc.old_path : "(unknown)",
		  bc.old_path ? "\"" : "", bc.gone ? "gone" : "in \"", bc.gone ? "" : bc.new_dir,
		  bc.gone ? "" : "\"");
	if (fn(ud, &bc) != 0) {
		err_set(err, ERR_CANCELED, "change feed stopped by the caller");
		goto out;
	}
	rc = 0;
out:
	free(name);
	return rc;
}

/* Add the parameters that pick the root's corpus to a changes URL. */
static void chg_params(struct drive *d, struct drive_sb *u)
{
	drive_sb_add(u, "supportsAllDrives=true");
	pthread_mutex_lock(&d->root_mu);
	if (d->drive_id[0]) {
		drive_sb_add(u, "&driveId=");
		drive_sb_enc(u, d->drive_id);
	}
	pthread_mutex_unlock(&d->root_mu);
}

static int drive_changes(struct be *b, const char *token, be_change_fn fn, void *ud,
			 char **new_token, struct err *err)
{
	struct drive *d = D(b);
	struct drive_changes_page pg;
	struct http_resp resp = { 0 };
	struct drive_sb u = { 0 };
	struct chg_memo *memo = NULL;
	char root[BE_ID_MAX], *url = NULL, *tok = NULL;
	size_t i, page = 0, total = 0;
	int rc = -1;

	memset(&pg, 0, sizeof(pg));
	*new_token = NULL;
	if (drive_root(d, root, err) < 0)
		goto out;
	if (!token || !*token) {
		drive_sb_add(&u, d->api);
		drive_sb_add(&u, "/changes/startPageToken?");
		chg_params(d, &u);
		url = drive_sb_take(&u, NULL, err);
		if (!url || call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
			goto out;
		*new_token = drive_parse_start_token(resp.body, resp.body_len, err);
		if (!*new_token)
			goto out;
		rc = 0;
		goto out;
	}
	memo = calloc(1, sizeof(*memo));
	tok = strdup(token);
	if (!memo || !tok) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		page++;
		drive_sb_add(&u, d->api);
		drive_sb_add(&u, "/changes?pageToken=");
		drive_sb_enc(&u, tok);
		drive_sb_addf(&u, "&pageSize=%ld&includeRemoved=true&"
			      "includeItemsFromAllDrives=true&", d->page_size);
		chg_params(d, &u);
		drive_sb_add(&u, "&fields=");
		drive_sb_enc(&u, "nextPageToken,newStartPageToken,changes(fileId,removed,file("
			     DRIVE_FILE_FIELDS "))");
		free(url);
		url = drive_sb_take(&u, NULL, err);
		http_resp_release(&resp);
		memset(&resp, 0, sizeof(resp));
		if (!url || call(d, "GET", url, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0 ||
		    drive_parse_changes_page(resp.body, resp.body_len, &pg, err) < 0) {
			err_prefix(err, "changes page %zu", page);
			goto out;
		}
		for (i = 0; i < pg.n; i++)
			if (chg_report(d, &pg.v[i], root, memo, fn, ud, err) < 0)
				goto out;
		total += pg.n;
		if (pg.new_start) {
			*new_token = pg.new_start;
			pg.new_start = NULL;
			break;
		}
		if (strcmp(pg.next_token, tok) == 0) {
			err_set(err, ERR_PARSE, "changes page %zu: the server repeated its page token",
				page);
			goto out;
		}
		free(tok);
		tok = pg.next_token;
		pg.next_token = NULL;
		drive_changes_page_release(&pg);
	}
	log_debug(TAG, "changes since %s: %zu in %zu page%s", token, total, page,
		  page == 1 ? "" : "s");
	rc = 0;
out:
	drive_changes_page_release(&pg);
	http_resp_release(&resp);
	if (memo) {
		memo_free(memo);
		free(memo);
	}
	free(url);
	free(tok);
	return rc;
}

static const struct be_ops drive_ops = {
	.name = "drive",
	.caps = BE_CAP_TRASH | BE_CAP_DIR_RENAME_ATOMIC | BE_CAP_SETATTR | BE_CAP_RMDIR_TREE,
	.symlink_max = DRIVE_SYMLINK_MAX,
	.check = drive_check,
	.list = drive_list,
	.stat = drive_stat,
	.read = drive_read,
	.put = drive_put,
	.symlink = drive_symlink,
	.upload_begin = drive_upload_begin,
	.upload_chunk = drive_upload_chunk,
	.upload_query = drive_upload_query,
	.upload_cancel = drive_upload_cancel,
	.mkdir = drive_mkdir,
	.rmdir = drive_rmdir,
	.rmdir_tree = drive_rmdir_tree,
	.rename = drive_rename,
	.rename_dir = drive_rename_dir,
	.remove = drive_remove,
	.purge = drive_purge,
	.compose = NULL,
	.setattr = drive_setattr,
	.free = drive_free,
	.changes = drive_changes,
};

static long dflt(long v, long def)
{
	return v > 0 ? v : def;
}

int drive_new(const struct drive_opts *o, struct be **out, struct err *err)
{
	struct drive *d = NULL;
	char ep[4200];
	int rc = -1;

	*out = NULL;
	if (!o->http) {
		err_set(err, ERR_INVAL, "drive: no HTTP client");
		goto out;
	}
	if (o->chunk_size && !be_chunk_size_valid(o->chunk_size)) {
		err_set(err, ERR_INVAL, "drive: chunk size %" PRIu64 " is not a multiple of 256 KiB",
			o->chunk_size);
		goto out;
	}
	if (o->page_size < 0 || o->page_size > 1000) {
		err_set(err, ERR_INVAL, "drive: page size %ld out of 1..1000", o->page_size);
		goto out;
	}
	if (o->docs != DRIVE_DOCS_EXPORT && o->docs != DRIVE_DOCS_HIDE) {
		err_set(err, ERR_INVAL, "drive: docs mode %d unknown", o->docs);
		goto out;
	}
	if (o->delete_mode != DRIVE_DELETE_TRASH && o->delete_mode != DRIVE_DELETE_PERMANENT) {
		err_set(err, ERR_INVAL, "drive: delete mode %d unknown", o->delete_mode);
		goto out;
	}
	if (drive_endpoint(o->endpoint, ep, sizeof(ep), NULL, err) < 0)
		goto out;
	d = calloc(1, sizeof(*d));
	if (!d)
		goto nomem;
	pthread_mutex_init(&d->root_mu, NULL);
	pthread_mutex_init(&d->pace_mu, NULL);
	pthread_mutex_init(&d->ids_mu, NULL);
	pthread_mutex_init(&d->cache_mu, NULL);
	pthread_mutex_init(&d->exp_mu, NULL);
	d->base.ops = &drive_ops;
	d->http = o->http;
	if (drive_parse_source(o->source, &d->src, err) < 0)
		goto out;
	if (asprintf(&d->ep, "%s", ep) < 0 || asprintf(&d->api, "%s/drive/v3", ep) < 0 ||
	    asprintf(&d->upl, "%s/upload/drive/v3", ep) < 0 ||
	    asprintf(&d->batch, "%s/batch/drive/v3", ep) < 0) {
		d->ep = d->api = d->upl = d->batch = NULL;
		goto nomem;
	}
	d->docs = o->docs;
	d->delete_mode = o->delete_mode;
	d->chunk = o->chunk_size ? o->chunk_size : DRIVE_DEFAULT_CHUNK;
	d->page_size = o->page_size ? o->page_size : 1000;
	d->ttl_ms = o->cache_ttl_ms < 0 ? -1 : dflt(o->cache_ttl_ms, 10000);
	d->max_fail = o->chunk_max_failures > 0 ? o->chunk_max_failures : 10;
	d->retry_base_ms = dflt(o->retry_base_ms, 500);
	d->rate_max = o->rate_max_retries > 0 ? o->rate_max_retries : 12;
	d->batch_threads = o->batch_threads > 0 ? o->batch_threads : 4;
	d->pace_backoff = dflt(o->pace_backoff_ms, 1000);
	d->pace_backoff_max = dflt(o->pace_backoff_max_ms, 32000);
	d->pace_interval = dflt(o->pace_interval_ms, 250);
	d->pace_interval_max = dflt(o->pace_interval_max_ms, 4000);
	d->pace_recover = dflt(o->pace_recover_ms, 20000);
	*out = &d->base;
	d = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "drive: out of memory");
out:
	if (d)
		drive_free(&d->base);
	return rc;
}
