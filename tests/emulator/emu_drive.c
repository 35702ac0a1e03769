/* durafs-emulator: the Google Drive v3 service (emu_drive_service).
 * Routes /drive/v3, /upload/drive/v3 and /batch/drive/v3 requests to the
 * store (emu_drive_store.c), renders Google-shaped JSON, runs the resumable
 * upload protocol (the same 308 rules as GCS), the batch endpoint, the
 * rate-limit and storage-quota faults, and the control calls tests use. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "durafs/cksum.h"
#include "durafs/enc.h"
#include "emu.h"
#include "emu_drive_batch.h"
#include "emu_drive_q.h"
#include "emu_drive_store.h"
#include "emu_parse.h"

#define DRIVE_CHUNK (256 * 1024)
#define DRIVE_MAX_PAGE 1000
#define DRIVE_DEFAULT_PAGE 100
#define DRIVE_BATCH_MAX 100
#define DRIVE_EXPORT_CAP ((int64_t)10 << 20)

struct drive {
	struct dst *store;
	pthread_mutex_t rate_mu;
	double rate;                 /* writes per second; 0: unlimited (rate_mu) */
	double tokens;               /* rate_mu */
	struct timespec last;        /* rate_mu */
	atomic_int quota_exceeded;   /* the storage_quota_exceeded fault */
};

/* One request, top-level or a batch part. */
struct dreq {
	struct emu *e;
	const char *method;
	const char *path;            /* raw, no query */
	const char *query;           /* raw, "" when none */
	struct emu_kv *kv;           /* decoded query */
	size_t nkv;
	const struct emu_req *outer; /* top level: headers and the body */
	const struct dbatch_part *part;  /* a batch part: its headers */
	const char *body;
	size_t body_len;
	int truncated;
	struct emu_req fr;           /* method/path/query for the fault hooks */
};

static const char *const drive_prefixes[] = {
	"/drive/v3/", "/upload/drive/v3/", "/batch/drive/v3", NULL,
};

/* --- request helpers -------------------------------------------------- */

static const char *qget(const struct dreq *q, const char *k)
{
	return emu_kv_get(q->kv, q->nkv, k);
}

static const char *hget(const struct dreq *q, const char *k)
{
	if (q->part)
		return dbatch_header(q->part, k);
	return q->outer ? emu_req_header(q->outer, k) : NULL;
}

static int qbool(const struct dreq *q, const char *k)
{
	const char *v = qget(q, k);

	return v && (!strcasecmp(v, "true") || !strcmp(v, "1"));
}

static int is_m(const struct dreq *q, const char *m)
{
	return !strcmp(q->method, m);
}

static int all_drives(const struct dreq *q)
{
	return qbool(q, "supportsAllDrives") || qbool(q, "supportsTeamDrives");
}

/* The request body as a malloc'd buffer (adopted from the core when
 * possible); NULL on ENOMEM. */
static char *take_body(const struct dreq *q)
{
	char *b;

	if (q->outer && !q->part)
		return emu_req_take_body(q->outer);
	b = malloc(q->body_len + 1);
	if (b) {
		memcpy(b, q->body, q->body_len);
		b[q->body_len] = '\0';
	}
	return b;
}

/* --- replies ---------------------------------------------------------- */

/* Google-shaped error JSON. msg may quote client input (an id from the
 * path): bytes that are not printable ASCII become '?' so the reply is
 * always valid JSON. */
static json_t *error_json(int status, const char *domain, const char *reason,
			  const char *location, const char *msg_in)
{
	char msg[600];
	size_t i;
	json_t *item;

	snprintf(msg, sizeof(msg), "%s", msg_in);
	for (i = 0; msg[i]; i++)
		if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f)
			msg[i] = '?';
	item = json_pack("{s:s, s:s, s:s}", "domain", domain && *domain ? domain : "global",
			 "reason", reason, "message", msg);

	if (item && location && *location) {
		json_object_set_new(item, "location", json_string(location));
		json_object_set_new(item, "locationType", json_string("parameter"));
	}
	return json_pack("{s:{s:i, s:s, s:[o]}}", "error", "code", status, "message", msg,
			 "errors", item ? item : json_object());
}

static void reply_err(struct emu_resp *r, const struct dst_err *e)
{
	emu_resp_json(r, e->status, error_json(e->status, e->domain, e->reason, e->location,
					       e->msg));
}

static void reply_error(struct emu_resp *r, int status, const char *reason,
			const char *location, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void reply_error(struct emu_resp *r, int status, const char *reason,
			const char *location, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emu_resp_json(r, status, error_json(status, "global", reason, location, msg));
}

/* Keep only what a reply shows without `fields`. */
static void default_file_fields(json_t *f)
{
	const char *k;
	json_t *v;
	void *tmp;

	if (!json_is_object(f))
		return;
	json_object_foreach_safe(f, tmp, k, v) {
		if (strcmp(k, "kind") && strcmp(k, "id") && strcmp(k, "name") &&
		    strcmp(k, "mimeType"))
			json_object_del(f, k);
	}
}

/* Reply with j after the `fields` selector (validated by the dispatcher),
 * or the default trimming def() when there is none. Steals j. */
static void reply_json(const struct dreq *q, struct emu_resp *r, int status, json_t *j,
		       void (*def)(json_t *))
{
	const char *fs = qget(q, "fields");
	int bad = 0;

	if (fs && *fs) {
		struct emu_fields *f = emu_fields_parse(fs, &bad);

		emu_fields_apply(f, j);
		emu_fields_free(f);
	} else if (def) {
		def(j);
	}
	emu_resp_json(r, status, j);
}

static void trim_list(json_t *j)
{
	size_t i;
	json_t *f;

	json_array_foreach(json_object_get(j, "files"), i, f)
		default_file_fields(f);
}

static void trim_changes(json_t *j)
{
	size_t i;
	json_t *c;

	json_array_foreach(json_object_get(j, "changes"), i, c)
		default_file_fields(json_object_get(c, "file"));
}

static void trim_drive(json_t *d)
{
	const char *k;
	json_t *v;
	void *tmp;

	json_object_foreach_safe(d, tmp, k, v) {
		if (strcmp(k, "kind") && strcmp(k, "id") && strcmp(k, "name"))
			json_object_del(d, k);
	}
}

static void trim_drives(json_t *j)
{
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(j, "drives"), i, d)
		trim_drive(d);
}

/* Parse a JSON object body (empty: NULL, no error). -1 having answered. */
static int body_json(const struct dreq *q, struct emu_resp *r, json_t **out)
{
	json_error_t jerr;

	*out = NULL;
	if (q->body_len == 0)
		return 0;
	*out = json_loadb(q->body, q->body_len, 0, &jerr);
	if (!*out) {
		reply_error(r, 400, "parseError", NULL, "Parse Error: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		reply_error(r, 400, "badRequest", NULL, "The request body must be a JSON object.");
		return -1;
	}
	return 0;
}

/* Integer query parameter within [lo, hi], default def. -1 having answered. */
static int qint(const struct dreq *q, struct emu_resp *r, const char *k, long lo, long hi,
		long def, long *out)
{
	const char *v = qget(q, k);
	int64_t n;

	*out = def;
	if (!v)
		return 0;
	if (emu_parse_i64(v, &n) < 0 || n < lo || n > hi) {
		reply_error(r, 400, "invalid", k,
			    "Invalid value '%.40s'. Values must be within the range: [%ld, %ld]", v,
			    lo, hi);
		return -1;
	}
	*out = (long)n;
	return 0;
}

/* --- rate limit and quota faults -------------------------------------- */

/* 1 when this write may go ahead; else answered 403 userRateLimitExceeded. */
static int rate_ok(struct drive *d, struct emu_resp *r)
{
	struct timespec now;
	double dt;
	int ok = 1;

	pthread_mutex_lock(&d->rate_mu);
	if (d->rate > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		dt = (double)(now.tv_sec - d->last.tv_sec) +
		     (double)(now.tv_nsec - d->last.tv_nsec) / 1e9;
		d->last = now;
		d->tokens += dt * d->rate;
		if (d->tokens > (d->rate < 1 ? 1 : d->rate))
			d->tokens = d->rate < 1 ? 1 : d->rate;
		if (d->tokens >= 1)
			d->tokens -= 1;
		else
			ok = 0;
	}
	pthread_mutex_unlock(&d->rate_mu);
	if (!ok)
		emu_resp_json(r, 403, error_json(403, "usageLimits", "userRateLimitExceeded", NULL,
			"User Rate Limit Exceeded. Rate of requests for user exceed configured project quota. You may consider re-evaluating expected per-user traffic to the API and adjust project quota limits accordingly."));
	return ok;
}

static int quota_fault(struct drive *d, struct emu_resp *r)
{
	if (!atomic_load(&d->quota_exceeded))
		return 0;
	reply_error(r, 403, "storageQuotaExceeded", NULL,
		    "The user's Drive storage quota has been exceeded.");
	return 1;
}

/* --- files: get, media, export ---------------------------------------- */

static void send_media(struct emu *e, const struct dreq *q, struct emu_resp *r,
		       struct dst_view *v)
{
	struct dst_blob *b = v->blob;
	uint64_t size = b ? b->len : 0, first = 0, last = 0, len;
	const char *range = hget(q, "Range");
	const char *mime = json_string_value(json_object_get(v->res, "mimeType"));
	char md5[25];
	int kind;

	r->kind = "drive.files.get.media";
	if (v->is_folder || v->is_doc || v->is_shortcut) {
		reply_error(r, 403, "fileNotDownloadable", "alt",
			    "Only files with binary content can be downloaded. Use Export with Docs Editors files.");
		return;
	}
	if (q->part) {
		reply_error(r, 400, "badRequest", "alt",
			    "Media downloads are not supported in batch requests.");
		return;
	}
	if (range && size == 0) {
		reply_error(r, 416, "requestedRangeNotSatisfiable", NULL,
			    "Request range not satisfiable");
		emu_resp_header(r, "Content-Range", "bytes */0");
		return;
	}
	kind = emu_parse_range(range, size, &first, &last);
	if (kind == EMU_RANGE_UNSAT) {
		reply_error(r, 416, "requestedRangeNotSatisfiable", NULL,
			    "Request range not satisfiable");
		emu_resp_header(r, "Content-Range", "bytes */%" PRIu64, size);
		return;
	}
	if (kind == EMU_RANGE_WHOLE) {
		first = 0;
		len = size;
	} else {
		len = last - first + 1;
		emu_resp_header(r, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
				last, size);
	}
	emu_resp_header(r, "Content-Type", "%s", mime ? mime : "application/octet-stream");
	emu_resp_header(r, "Accept-Ranges", "bytes");
	if (b) {
		ck_md5_b64(b->md5, md5);
		emu_resp_header(r, "X-Goog-Hash", "md5=%s", md5);
	}
	r->status = kind == EMU_RANGE_PART ? 206 : 200;
	if (len && b) {
		dst_blob_ref(b);
		r->body = b->data + first;
		r->body_len = (size_t)len;
		r->body_free = dst_blob_unref;
		r->body_ud = b;
	}
	emu_stat_add(e, "drive.media_requests", 1);
	emu_stat_add(e, "drive.media_bytes_sent", (int64_t)len);
}

static void files_get(struct drive *d, const struct dreq *q, struct emu_resp *r,
		      const char *id)
{
	struct dst_view v;
	struct dst_err err;
	const char *alt = qget(q, "alt");
	int media = alt && !strcmp(alt, "media");

	r->kind = media ? "drive.files.get.media" : "drive.files.get";
	if (dst_get(d->store, id, all_drives(q), &v, &err) < 0) {
		reply_err(r, &err);
		return;
	}
	if (media) {
		send_media(q->e, q, r, &v);
	} else {
		reply_json(q, r, 200, v.res, default_file_fields);
		v.res = NULL;
	}
	dst_view_release(&v);
}

/* Export formats a Docs type accepts. */
static int export_allowed(const char *doc, const char *want)
{
	static const char *const map[][8] = {
		{ "application/vnd.google-apps.document",
		  "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		  "text/plain", "application/pdf", "text/html", "application/rtf",
		  "application/vnd.oasis.opendocument.text", "application/epub+zip" },
		{ "application/vnd.google-apps.spreadsheet",
		  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		  "text/csv", "application/pdf", "application/x-vnd.oasis.opendocument.spreadsheet",
		  "text/tab-separated-values", "application/zip" },
		{ "application/vnd.google-apps.presentation",
		  "application/vnd.openxmlformats-officedocument.presentationml.presentation",
		  "application/pdf", "text/plain", "application/vnd.oasis.opendocument.presentation" },
		{ "application/vnd.google-apps.drawing", "application/pdf", "image/png",
		  "image/jpeg", "image/svg+xml" },
		{ "application/vnd.google-apps.script", "application/vnd.google-apps.script+json" },
		{ "application/vnd.google-apps.jam", "application/pdf" },
	};
	size_t i, k;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(map[i][0], doc))
			continue;
		for (k = 1; k < 8 && map[i][k]; k++)
			if (!strcmp(map[i][k], want))
				return 1;
	}
	return 0;
}

/* The bytes of an export: text formats carry the document's text as is;
 * the others a short header naming the conversion, then the text. With a
 * forced export size the output is padded (or cut) to it. */
static void files_export(struct drive *d, const struct dreq *q, struct emu_resp *r,
			 const char *id)
{
	struct dst_view v;
	struct dst_err err;
	const char *want = qget(q, "mimeType"), *doc;
	struct dbuf out = { 0 };
	const char *text = "";
	size_t tlen = 0;

	r->kind = "drive.files.export";
	if (!want || !*want) {
		reply_error(r, 400, "required", "mimeType", "Required parameter: mimeType");
		return;
	}
	if (dst_get(d->store, id, all_drives(q), &v, &err) < 0) {
		reply_err(r, &err);
		return;
	}
	doc = json_string_value(json_object_get(v.res, "mimeType"));
	if (!v.is_doc) {
		reply_error(r, 403, "fileNotExportable", "fileId",
			    "Export only supports Docs Editors files.");
		goto out;
	}
	if (!export_allowed(doc, want)) {
		reply_error(r, 400, "badRequest", "mimeType",
			    "The requested conversion is not supported.");
		goto out;
	}
	if (v.blob && v.blob->len) {
		text = v.blob->data;
		tlen = (size_t)v.blob->len;
	}
	if (v.export_size > DRIVE_EXPORT_CAP ||
	    (!v.export_size && (int64_t)tlen + 256 > DRIVE_EXPORT_CAP)) {
		reply_error(r, 403, "exportSizeLimitExceeded", NULL,
			    "This file is too large to be exported.");
		goto out;
	}
	if (strncmp(want, "text/", 5))
		dbuf_addf(&out, "durafs-emulator export of %s (%s) as %s\n\n", id, doc, want);
	dbuf_add(&out, text, tlen);
	if (v.export_size > 0) {
		while (!out.oom && out.len < (size_t)v.export_size)
			dbuf_add(&out, "durafs-emulator export padding\n",
				 (size_t)v.export_size - out.len < 31 ? (size_t)v.export_size - out.len : 31);
		if (out.len > (size_t)v.export_size)
			out.len = (size_t)v.export_size;
	}
	if (out.oom) {
		reply_error(r, 500, "backendError", NULL, "Out of memory.");
		goto out;
	}
	emu_resp_text(r, 200, "application/octet-stream", out.p ? out.p : "", out.len);
	emu_resp_header(r, "Content-Type", "%s", want);
	emu_stat_add(q->e, "drive.export_requests", 1);
out:
	free(out.p);
	dst_view_release(&v);
}

/* --- files: list ------------------------------------------------------ */

/* Call fn for each top-level item of a `fields` selector ("a,b(c,d),e/f"):
 * the item's name and what it selects inside (the text in its parentheses
 * or after its '/', NULL when none). Returns -1 when unbalanced. */
static int fields_items(const char *s, size_t len,
			void (*fn)(const char *name, size_t nlen, const char *in, size_t inlen,
				   void *ud), void *ud)
{
	size_t i = 0;

	while (i < len) {
		size_t st, end, nend;
		int depth = 0;

		while (i < len && (s[i] == ' ' || s[i] == ','))
			i++;
		if (i >= len)
			break;
		st = i;
		for (; i < len; i++) {
			if (s[i] == '(')
				depth++;
			else if (s[i] == ')' && --depth < 0)
				return -1;
			else if (s[i] == ',' && depth == 0)
				break;
		}
		if (depth)
			return -1;
		end = i;
		while (end > st && s[end - 1] == ' ')
			end--;
		for (nend = st; nend < end && s[nend] != '(' && s[nend] != '/'; nend++)
			;
		if (nend < end && s[nend] == '(') {
			if (end - nend < 2 || s[end - 1] != ')')
				return -1;
			fn(s + st, nend - st, s + nend + 1, end - nend - 2, ud);
		} else if (nend < end)
			fn(s + st, nend - st, s + nend + 1, end - nend - 1, ud);
		else
			fn(s + st, nend - st, NULL, 0, ud);
	}
	return 0;
}

static void key_add(const char *name, size_t nlen, const char *in, size_t inlen, void *ud)
{
	struct dst_keys *k = ud;

	(void)in;
	(void)inlen;
	if (nlen == 1 && name[0] == '*') {
		k->all = 1;
		return;
	}
	if (k->n >= DST_MAX_KEYS || nlen >= sizeof(k->k[0])) {
		k->all = 1;
		return;
	}
	memcpy(k->k[k->n], name, nlen);
	k->k[k->n][nlen] = '\0';
	k->n++;
}

static void files_item(const char *name, size_t nlen, const char *in, size_t inlen, void *ud)
{
	struct dst_keys *k = ud;

	if ((nlen == 1 && name[0] == '*') || (nlen == 5 && !strncmp(name, "files", 5) && !in)) {
		k->all = 1;
		return;
	}
	if (nlen == 5 && !strncmp(name, "files", 5) && fields_items(in, inlen, key_add, k) < 0)
		k->all = 1;
}

/* The keys a listing must render for its `fields` (validated already). */
static void list_keys(const char *fields, struct dst_keys *k)
{
	static const char *const def[] = { "kind", "id", "name", "mimeType" };
	size_t i;

	memset(k, 0, sizeof(*k));
	if (!fields || !*fields) {
		for (i = 0; i < 4; i++)
			snprintf(k->k[k->n++], sizeof(k->k[0]), "%s", def[i]);
		return;
	}
	if (fields_items(fields, strlen(fields), files_item, k) < 0)
		k->all = 1;
}

static void files_list(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	struct dst_list_args a;
	struct dst_keys keys;
	struct dst_err err;
	struct dq_node *tree = NULL;
	const char *qs = qget(q, "q"), *corpora = qget(q, "corpora"), *spaces = qget(q, "spaces");
	const char *drive_id = qget(q, "driveId");
	char why[200];
	int empty = 0;
	long max, cap = 0;
	json_t *files = NULL, *j;
	char *next = NULL;

	r->kind = "drive.files.list";
	memset(&a, 0, sizeof(a));
	if (qint(q, r, "pageSize", 1, DRIVE_MAX_PAGE, DRIVE_DEFAULT_PAGE, &max) < 0)
		return;
	if (qs) {
		tree = dq_parse(qs, strlen(qs), &empty, why, sizeof(why));
		if (!tree && !empty) {
			reply_error(r, 400, "invalid", "q", "Invalid Value: %s",
				    why[0] ? why : "out of memory");
			return;
		}
	}
	if (!drive_id)
		drive_id = qget(q, "teamDriveId");
	a.include_all = qbool(q, "includeItemsFromAllDrives") || qbool(q, "includeTeamDriveItems");
	a.corpus = DST_CORPUS_USER;
	if (corpora && (!strcmp(corpora, "drive") || !strcmp(corpora, "teamDrive")))
		a.corpus = DST_CORPUS_DRIVE;
	else if (corpora && !strcmp(corpora, "allDrives"))
		a.corpus = DST_CORPUS_ALL;
	else if (corpora && strcmp(corpora, "user") && strcmp(corpora, "domain")) {
		reply_error(r, 400, "invalid", "corpora", "Invalid Value: corpora");
		goto out;
	}
	if ((a.corpus == DST_CORPUS_DRIVE) != (drive_id != NULL)) {
		reply_error(r, 400, "invalid", "driveId",
			    "The driveId parameter must be specified if and only if corpora is set to drive.");
		goto out;
	}
	if (a.corpus != DST_CORPUS_USER && !a.include_all) {
		reply_error(r, 403, "teamDrivesParameterIncompatible", "includeItemsFromAllDrives",
			    "The includeItemsFromAllDrives parameter must be set to true when corpora is set to drive or allDrives.");
		goto out;
	}
	if (qget(q, "orderBy") && *qget(q, "orderBy") && dq_has_fulltext(tree)) {
		reply_error(r, 400, "badRequest", "orderBy",
			    "Sorting is not supported for queries with fullText terms. Results are always in descending relevance order.");
		goto out;
	}
	if (emu_fault_page_cap(q->e, &q->fr, &cap) && cap >= 1 && cap < max)
		max = cap;
	a.q = tree;
	a.order_by = qget(q, "orderBy");
	if (a.order_by && !*a.order_by)
		a.order_by = NULL;
	a.max = max;
	a.token = qget(q, "pageToken");
	if (a.token && !*a.token)
		a.token = NULL;
	a.drive_id = drive_id;
	list_keys(qget(q, "fields"), &keys);
	a.keys = &keys;
	if (spaces && !strstr(spaces, "drive")) {
		/* appDataFolder / photos: nothing lives there */
		files = json_array();
	} else if (dst_list(d->store, &a, &files, &next, &err) < 0) {
		reply_err(r, &err);
		goto out;
	}
	j = json_pack("{s:s, s:b, s:o}", "kind", "drive#fileList", "incompleteSearch", 0,
		      "files", files ? files : json_array());
	if (j && next)
		json_object_set_new(j, "nextPageToken", json_string(next));
	reply_json(q, r, 200, j, trim_list);
out:
	free(next);
	dq_free(tree);
}

/* --- files: create, update, delete ------------------------------------ */

static void files_create_meta(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	struct dst_new n;
	struct dst_view v;
	struct dst_err err;
	json_t *meta = NULL;

	r->kind = "drive.files.create";
	if (body_json(q, r, &meta) < 0 || !rate_ok(d, r))
		goto out;
	memset(&n, 0, sizeof(n));
	n.meta = meta;
	n.all_drives = all_drives(q);
	if (dst_create(d->store, &n, &v, &err) < 0) {
		reply_err(r, &err);
		goto out;
	}
	reply_json(q, r, 200, v.res, default_file_fields);
	v.res = NULL;
	dst_view_release(&v);
out:
	json_decref(meta);
}

static void files_update_meta(struct drive *d, const struct dreq *q, struct emu_resp *r,
			      const char *id)
{
	struct dst_view v;
	struct dst_err err;
	json_t *patch = NULL;

	r->kind = "drive.files.update";
	if (body_json(q, r, &patch) < 0 || !rate_ok(d, r))
		goto out;
	if (dst_update(d->store, id, patch, qget(q, "addParents"), qget(q, "removeParents"), NULL,
		       all_drives(q), &v, &err) < 0) {
		reply_err(r, &err);
		goto out;
	}
	reply_json(q, r, 200, v.res, default_file_fields);
	v.res = NULL;
	dst_view_release(&v);
out:
	json_decref(patch);
}

static void files_delete(struct drive *d, const struct dreq *q, struct emu_resp *r,
			 const char *id)
{
	struct dst_err err;

	r->kind = "drive.files.delete";
	if (!rate_ok(d, r))
		return;
	if (dst_delete(d->store, id, all_drives(q), &err) < 0)
		reply_err(r, &err);
	else
		emu_resp_text(r, 204, "text/plain", "", 0);
}

static void files_empty_trash(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	struct dst_err err;
	long n;

	r->kind = "drive.files.emptyTrash";
	if (!rate_ok(d, r))
		return;
	n = dst_empty_trash(d->store, qget(q, "driveId"), &err);
	if (n < 0) {
		reply_err(r, &err);
		return;
	}
	emu_stat_add(q->e, "drive.trash_files_purged", n);
	emu_resp_text(r, 204, "text/plain", "", 0);
}

static void files_generate_ids(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	const char *space = qget(q, "space");
	long count;
	json_t *ids;

	r->kind = "drive.files.generateIds";
	if (qint(q, r, "count", 1, 1000, 10, &count) < 0)
		return;
	if (space && strcmp(space, "drive") && strcmp(space, "appDataFolder")) {
		reply_error(r, 400, "invalid", "space", "Invalid Value: space");
		return;
	}
	ids = dst_generate_ids(d->store, (int)count);
	if (!ids) {
		reply_error(r, 500, "backendError", NULL, "Out of memory.");
		return;
	}
	reply_json(q, r, 200, json_pack("{s:s, s:s, s:o}", "kind", "drive#generatedIds",
					"space", space ? space : "drive", "ids", ids), NULL);
}

/* --- uploads ---------------------------------------------------------- */

/* Create or update with content (blob consumed). status: the success code. */
static void commit_upload(struct drive *d, const struct dreq *q, struct emu_resp *r,
			  const char *update_id, const json_t *meta, struct dst_blob *blob,
			  const char *default_mime, const char *add, const char *rem, int alld,
			  int status)
{
	struct dst_view v;
	struct dst_err err;
	int rc;

	if (update_id) {
		rc = dst_update(d->store, update_id, meta, add, rem, blob, alld, &v, &err);
	} else {
		struct dst_new n;

		memset(&n, 0, sizeof(n));
		n.meta = meta;
		n.blob = blob;
		n.default_mime = default_mime;
		n.all_drives = alld;
		rc = dst_create(d->store, &n, &v, &err);
	}
	if (rc < 0) {
		reply_err(r, &err);
		dst_blob_discard(blob);
		return;
	}
	emu_stat_add(q->e, "drive.upload_bytes_persisted", (int64_t)blob->len);
	dst_blob_unref(blob);
	reply_json(q, r, status, v.res, default_file_fields);
	v.res = NULL;
	dst_view_release(&v);
}

static void upload_media(struct drive *d, const struct dreq *q, struct emu_resp *r,
			 const char *update_id)
{
	struct dst_blob *blob;
	char *data;

	r->kind = update_id ? "drive.files.update.media" : "drive.files.create.media";
	if (!rate_ok(d, r) || quota_fault(d, r))
		return;
	data = take_body(q);
	if (!data) {
		reply_error(r, 500, "backendError", NULL, "Out of memory.");
		return;
	}
	blob = dst_blob_take(d->store, data, q->body_len);
	if (!blob) {
		reply_error(r, 500, "backendError", NULL, "The emulator could not store the data.");
		return;
	}
	commit_upload(d, q, r, update_id, NULL, blob, hget(q, "Content-Type"),
		      qget(q, "addParents"), qget(q, "removeParents"), all_drives(q), 200);
}

static void upload_multipart(struct drive *d, const struct dreq *q, struct emu_resp *r,
			     const char *update_id)
{
	char boundary[80], why[160];
	struct emu_multipart mp;
	json_t *meta = NULL;
	json_error_t jerr;
	struct dst_blob *blob;
	char *ctype = NULL;

	r->kind = update_id ? "drive.files.update.multipart" : "drive.files.create.multipart";
	if (emu_parse_boundary(hget(q, "Content-Type"), boundary, sizeof(boundary)) < 0) {
		reply_error(r, 400, "badContent", NULL,
			    "A multipart upload needs Content-Type multipart/related with a boundary.");
		return;
	}
	if (emu_parse_multipart(q->body, q->body_len, boundary, &mp, why, sizeof(why)) < 0) {
		reply_error(r, 400, "badContent", NULL, "Malformed multipart body: %s", why);
		return;
	}
	if (mp.nparts != 2) {
		reply_error(r, 400, "badContent", NULL,
			    "A multipart upload needs exactly 2 parts (metadata, media), got %d.",
			    mp.nparts);
		return;
	}
	if (mp.part[0].len) {
		meta = json_loadb(mp.part[0].data, mp.part[0].len, 0, &jerr);
		if (!json_is_object(meta)) {
			reply_error(r, 400, "parseError", NULL,
				    "The metadata part is not a JSON object.");
			goto out;
		}
	}
	if (!rate_ok(d, r) || quota_fault(d, r))
		goto out;
	if (mp.part[1].ctype_len)
		ctype = strndup(mp.part[1].ctype, mp.part[1].ctype_len);
	blob = dst_blob_copy(d->store, mp.part[1].data, mp.part[1].len);
	if (!blob) {
		reply_error(r, 500, "backendError", NULL, "The emulator could not store the data.");
		goto out;
	}
	commit_upload(d, q, r, update_id, meta, blob, ctype, qget(q, "addParents"),
		      qget(q, "removeParents"), all_drives(q), 200);
out:
	free(ctype);
	json_decref(meta);
}

static void upload_resumable_start(struct drive *d, const struct dreq *q, struct emu_resp *r,
				   const char *update_id)
{
	json_t *meta = NULL;
	struct dst_sess *ss = NULL;
	struct dst_view v;
	struct dst_err err;
	const char *h, *parent = "root";
	int64_t declared = -1;

	memset(&v, 0, sizeof(v));
	r->kind = update_id ? "drive.files.update.resumable" : "drive.files.create.resumable";
	if (body_json(q, r, &meta) < 0)
		return;
	if ((h = hget(q, "X-Upload-Content-Length")) && *h) {
		if (emu_parse_i64(h, &declared) < 0 || declared < 0) {
			reply_error(r, 400, "badRequest", NULL,
				    "Invalid X-Upload-Content-Length: %.40s", h);
			goto out;
		}
	}
	if (!rate_ok(d, r) || quota_fault(d, r))
		goto out;
	/* what can be checked now is checked now, as Google does */
	if (update_id) {
		if (dst_get(d->store, update_id, all_drives(q), &v, &err) < 0) {
			reply_err(r, &err);
			goto out;
		}
	} else {
		json_t *ps = json_object_get(meta, "parents");

		if (json_is_array(ps) && json_is_string(json_array_get(ps, 0)))
			parent = json_string_value(json_array_get(ps, 0));
		if (dst_get(d->store, parent, all_drives(q), &v, &err) < 0) {
			reply_err(r, &err);
			goto out;
		}
		if (!v.is_folder) {
			reply_error(r, 400, "invalid", "parents",
				    "The specified parent is not a folder: %.80s.", parent);
			goto out;
		}
	}
	if (dst_sess_create(d->store, update_id != NULL, update_id, meta, qget(q, "addParents"),
			    qget(q, "removeParents"), all_drives(q),
			    hget(q, "X-Upload-Content-Type"), declared, &ss) < 0) {
		reply_error(r, 500, "backendError", NULL, "The emulator could not start a session.");
		goto out;
	}
	emu_stat_add(q->e, "drive.upload_sessions_started", 1);
	emu_resp_text(r, 200, "text/plain", "", 0);
	emu_resp_header(r, "Location", "%s%s?%s%supload_id=%s", emu_base_url(q->e), q->path,
			q->query, q->query[0] ? "&" : "", ss->id);
	emu_resp_header(r, "X-GUploader-UploadID", "%s", ss->id);
	dst_sess_unref(ss);
out:
	dst_view_release(&v);
	json_decref(meta);
}

static void reply_incomplete(const struct dreq *q, struct emu_resp *r, uint64_t persisted)
{
	emu_resp_incomplete(r, hget(q, "X-GUploader-No-308"), persisted);
}

/* The file a finished session made (its current state). ss->mu held. */
static void reply_done(struct drive *d, const struct dreq *q, struct emu_resp *r,
		       struct dst_sess *ss)
{
	struct dst_view v;
	struct dst_err err;
	int status = ss->update ? 200 : 201;

	if (dst_get(d->store, ss->file_id, 1, &v, &err) == 0) {
		reply_json(q, r, status, v.res, default_file_fields);
		v.res = NULL;
		dst_view_release(&v);
		return;
	}
	reply_json(q, r, status, json_pack("{s:s, s:s}", "kind", "drive#file", "id", ss->file_id),
		   NULL);
}

/* All bytes are in: publish. ss->mu held. */
static void sess_commit(struct drive *d, const struct dreq *q, struct emu_resp *r,
			struct dst_sess *ss)
{
	struct dst_blob *blob;
	struct dst_view v;
	struct dst_err err;
	struct dst_new n;
	int rc;

	if (atomic_load(&d->quota_exceeded)) {
		quota_fault(d, r);
		snprintf(ss->fail_msg, sizeof(ss->fail_msg), "storage quota exceeded");
		dst_sess_set_state(d->store, ss, DST_SESS_FAILED);
		return;
	}
	blob = dst_sess_take_blob(d->store, ss);
	if (!blob) {
		reply_error(r, 500, "backendError", NULL, "The emulator could not store the data.");
		snprintf(ss->fail_msg, sizeof(ss->fail_msg), "storing the data failed");
		dst_sess_set_state(d->store, ss, DST_SESS_FAILED);
		return;
	}
	if (ss->update) {
		rc = dst_update(d->store, ss->file_id, ss->meta, ss->add_parents, ss->remove_parents,
				blob, ss->all_drives, &v, &err);
	} else {
		memset(&n, 0, sizeof(n));
		n.meta = ss->meta;
		n.blob = blob;
		n.default_mime = ss->upload_ctype;
		n.all_drives = ss->all_drives;
		rc = dst_create(d->store, &n, &v, &err);
	}
	if (rc < 0) {
		reply_err(r, &err);
		snprintf(ss->fail_msg, sizeof(ss->fail_msg), "%s", err.msg);
		dst_sess_set_state(d->store, ss, DST_SESS_FAILED);
		dst_blob_discard(blob);
		return;
	}
	dst_blob_unref(blob);
	snprintf(ss->file_id, sizeof(ss->file_id), "%s",
		 json_string_value(json_object_get(v.res, "id")));
	dst_sess_set_state(d->store, ss, DST_SESS_DONE);
	reply_json(q, r, ss->update ? 200 : 201, v.res, default_file_fields);
	v.res = NULL;
	dst_view_release(&v);
}

/* A chunk, a status query or the final request of a session. ss->mu held. */
static void sess_put(struct drive *d, const struct dreq *q, struct emu_resp *r,
		     struct dst_sess *ss)
{
	const char *hdr = hget(q, "Content-Range");
	struct emu_crange cr;
	uint64_t p = ss->persisted, end, target, less = 0;
	int64_t total;
	int final = 0, resumed = 0;

	if (ss->interrupted) {
		emu_stat_add(q->e, "drive.upload_sessions_resumed", 1);
		ss->interrupted = 0;
		resumed = 1;
	}
	if (!hdr) {
		memset(&cr, 0, sizeof(cr));
		cr.has_total = 1;
		cr.total = q->body_len;
		if (q->body_len) {
			cr.has_range = 1;
			cr.last = q->body_len - 1;
		}
		if (q->truncated)
			cr.has_total = 0;
	} else if (emu_parse_content_range(hdr, &cr) < 0) {
		reply_error(r, 400, "badRequest", NULL, "Failed to parse Content-Range header.");
		return;
	}
	total = cr.has_total ? (int64_t)cr.total : -1;
	if (total >= 0 && ss->total >= 0 && total != ss->total) {
		reply_error(r, 400, "badRequest", NULL,
			    "The total size %" PRId64 " differs from the %" PRId64 " given before.",
			    total, ss->total);
		return;
	}
	if (total >= 0 && (uint64_t)total < p) {
		reply_error(r, 400, "badRequest", NULL,
			    "The total size %" PRId64 " is less than the %" PRIu64
			    " bytes already persisted.", total, p);
		return;
	}
	if (!cr.has_range) {
		r->kind = "drive.upload.status";
		if (q->body_len && !q->truncated) {
			reply_error(r, 400, "badRequest", NULL,
				    "A status query (Content-Range: bytes */N) must have no body.");
			return;
		}
		if (total >= 0)
			ss->total = total;
		if (total >= 0 && (uint64_t)total == p) {
			sess_commit(d, q, r, ss);
			return;
		}
		if (!resumed)
			ss->interrupted = 1;
		reply_incomplete(q, r, p);
		return;
	}
	if (cr.open_end || q->truncated) {
		end = cr.first + q->body_len;
	} else {
		end = cr.last + 1;
		if (end - cr.first != q->body_len) {
			reply_error(r, 400, "badRequest", NULL,
				    "Content-Range covers %" PRIu64 " bytes but the body has %zu.",
				    end - cr.first, q->body_len);
			return;
		}
	}
	if (cr.first > p) {
		reply_error(r, 400, "badRequest", NULL,
			    "Invalid request. According to the Content-Range header, the upload "
			    "offset is %" PRIu64 " byte(s), which exceeds already uploaded size of %"
			    PRIu64 " byte(s).", cr.first, p);
		return;
	}
	if (total >= 0 && end > (uint64_t)total) {
		reply_error(r, 400, "badRequest", NULL, "The chunk ends beyond the total size.");
		return;
	}
	if (!q->truncated) {
		if (total < 0 && cr.open_end)
			total = (int64_t)end;
		if (total >= 0) {
			ss->total = total;
			final = end == (uint64_t)total;
		}
	}
	target = final ? end : end / DRIVE_CHUNK * DRIVE_CHUNK;
	if (!q->truncated && emu_fault_short308(q->e, &q->fr, &less)) {
		uint64_t t = end > less ? end - less : 0;

		t = t / DRIVE_CHUNK * DRIVE_CHUNK;
		if (t < target)
			target = t;
		final = 0;
	}
	if (target > p) {
		if (dst_sess_append(d->store, ss, q->body + (p - cr.first),
				    (size_t)(target - p)) < 0) {
			reply_error(r, 500, "backendError", NULL,
				    "The emulator could not persist the bytes.");
			return;
		}
		emu_stat_add(q->e, "drive.upload_bytes_persisted", (int64_t)(target - p));
		p = target;
	}
	if (q->truncated) {
		ss->interrupted = 1;
		emu_resp_text(r, 503, "text/plain", "", 0);  /* discarded by the core */
		return;
	}
	if (final && p == end) {
		if (quota_fault(d, r)) {
			snprintf(ss->fail_msg, sizeof(ss->fail_msg), "storage quota exceeded");
			dst_sess_set_state(d->store, ss, DST_SESS_FAILED);
			return;
		}
		sess_commit(d, q, r, ss);
		return;
	}
	reply_incomplete(q, r, p);
}

static void upload_session(struct drive *d, const struct dreq *q, struct emu_resp *r,
			   const char *id)
{
	struct dst_sess *ss = dst_sess_find(d->store, id);
	int del = is_m(q, "DELETE");
	const char *cr = hget(q, "Content-Range");
	struct emu_crange parsed;

	r->kind = del ? "drive.upload.cancel" : "drive.upload.chunk";
	if (!del && cr && emu_parse_content_range(cr, &parsed) == 0 && !parsed.has_range)
		r->kind = "drive.upload.status";
	emu_stat_add(q->e, "drive.upload_bytes_received", (int64_t)q->body_len);
	if (!ss) {
		reply_error(r, 404, "notFound", NULL, "No such upload session: %.64s", id);
		return;
	}
	pthread_mutex_lock(&ss->mu);
	if (ss->state == DST_SESS_ACTIVE && emu_fault_expire_session(q->e, &q->fr))
		dst_sess_set_state(d->store, ss, DST_SESS_EXPIRED);
	switch (ss->state) {
	case DST_SESS_EXPIRED:
		reply_error(r, 404, "notFound", NULL, "The upload session has expired.");
		break;
	case DST_SESS_CANCELLED:
		if (del)
			reply_error(r, 499, "clientClosedRequest", NULL, "The upload was cancelled.");
		else
			reply_error(r, 410, "gone", NULL, "The upload session was cancelled.");
		break;
	case DST_SESS_FAILED:
		reply_error(r, 410, "gone", NULL, "The upload session failed earlier: %s",
			    ss->fail_msg);
		break;
	case DST_SESS_DONE:
		if (del)
			reply_error(r, 410, "gone", NULL, "The upload is already complete.");
		else
			reply_done(d, q, r, ss);
		break;
	default:
		if (del) {
			dst_sess_set_state(d->store, ss, DST_SESS_CANCELLED);
			reply_error(r, 499, "clientClosedRequest", NULL, "The upload was cancelled.");
		} else if (!is_m(q, "PUT") && !is_m(q, "POST") && !is_m(q, "PATCH")) {
			reply_error(r, 405, "methodNotAllowed", NULL,
				    "Use PUT to send data to an upload session.");
		} else {
			sess_put(d, q, r, ss);
		}
		break;
	}
	pthread_mutex_unlock(&ss->mu);
	dst_sess_unref(ss);
}

static void upload_dispatch(struct drive *d, const struct dreq *q, struct emu_resp *r,
			    const char *update_id)
{
	const char *sid = qget(q, "upload_id"), *type = qget(q, "uploadType");

	if (sid) {
		upload_session(d, q, r, sid);
		return;
	}
	emu_stat_add(q->e, "drive.upload_bytes_received", (int64_t)q->body_len);
	if (update_id ? !is_m(q, "PATCH") && !is_m(q, "PUT") : !is_m(q, "POST")) {
		r->kind = "drive.bad_request";
		reply_error(r, 405, "methodNotAllowed", NULL,
			    update_id ? "Content updates use PATCH." : "Uploads start with POST.");
		return;
	}
	if (!type) {
		const char *ct = hget(q, "Content-Type");

		type = ct && !strncasecmp(ct, "multipart/", 10) ? "multipart" : "media";
	}
	if (!strcmp(type, "media"))
		upload_media(d, q, r, update_id);
	else if (!strcmp(type, "multipart"))
		upload_multipart(d, q, r, update_id);
	else if (!strcmp(type, "resumable"))
		upload_resumable_start(d, q, r, update_id);
	else {
		r->kind = "drive.bad_request";
		reply_error(r, 400, "invalid", "uploadType", "Invalid value for uploadType: %.32s",
			    type);
	}
}

/* --- about, changes, drives ------------------------------------------- */

static void about_get(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	struct dst_usage u;
	char lim[24], use[24], trash[24];
	json_t *sq, *j;
	const char *fs = qget(q, "fields");

	r->kind = "drive.about.get";
	if (!fs || !*fs) {
		reply_error(r, 400, "required", "fields",
			    "The 'fields' parameter is required for this method.");
		return;
	}
	dst_usage(d->store, &u);
	snprintf(lim, sizeof(lim), "%" PRId64, u.limit);
	snprintf(use, sizeof(use), "%" PRId64, u.usage);
	snprintf(trash, sizeof(trash), "%" PRId64, u.usage_trash);
	sq = json_pack("{s:s, s:s, s:s}", "usage", use, "usageInDrive", use,
		       "usageInDriveTrash", trash);
	if (sq && u.limit > 0)
		json_object_set_new(sq, "limit", json_string(lim));
	j = json_pack("{s:s, s:{s:s, s:s, s:s, s:b, s:s}, s:o, s:s, s:b, s:b}",
		      "kind", "drive#about",
		      "user", "kind", "drive#user", "displayName", "Emulated User",
		      "emailAddress", DST_USER_EMAIL, "me", 1, "permissionId", "00000000000000000001",
		      "storageQuota", sq ? sq : json_object(), "maxUploadSize", "5242880000000",
		      "appInstalled", 0, "canCreateDrives", 1);
	reply_json(q, r, 200, j, NULL);
}

static void changes_start(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	char t[24];

	r->kind = "drive.changes.getStartPageToken";
	snprintf(t, sizeof(t), "%" PRId64, dst_changes_start(d->store));
	reply_json(q, r, 200, json_pack("{s:s, s:s}", "kind", "drive#startPageToken",
					"startPageToken", t), NULL);
}

static void changes_list(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	const char *tok = qget(q, "pageToken"), *drive_id = qget(q, "driveId");
	int64_t token, next = 0;
	long max, cap = 0;
	int more = 0, include_removed = 1;
	json_t *arr, *out, *c;
	size_t i;
	char t[24];

	r->kind = "drive.changes.list";
	if (!tok || !*tok) {
		reply_error(r, 400, "required", "pageToken", "Required parameter: pageToken");
		return;
	}
	if (emu_parse_i64(tok, &token) < 0 || token < 1) {
		reply_error(r, 400, "invalid", "pageToken", "Invalid Value: pageToken");
		return;
	}
	if (qint(q, r, "pageSize", 1, DRIVE_MAX_PAGE, DRIVE_DEFAULT_PAGE, &max) < 0)
		return;
	if (qget(q, "includeRemoved") && !qbool(q, "includeRemoved"))
		include_removed = 0;
	if (emu_fault_page_cap(q->e, &q->fr, &cap) && cap >= 1 && cap < max)
		max = cap;
	if (!drive_id)
		drive_id = qget(q, "teamDriveId");
	arr = dst_changes_list(d->store, token, max, drive_id,
			       qbool(q, "includeItemsFromAllDrives") ||
			       qbool(q, "includeTeamDriveItems"), &more, &next);
	if (!arr) {
		reply_error(r, 500, "backendError", NULL, "Out of memory.");
		return;
	}
	out = json_array();
	json_array_foreach(arr, i, c) {
		json_t *o;

		if (!include_removed && json_is_true(json_object_get(c, "removed")))
			continue;
		o = json_pack("{s:s, s:s, s:O, s:O, s:O}", "kind", "drive#change", "changeType",
			      "file", "time", json_object_get(c, "time"), "removed",
			      json_object_get(c, "removed"), "fileId", json_object_get(c, "fileId"));
		if (!o)
			continue;
		if (json_object_get(c, "file"))
			json_object_set(o, "file", json_object_get(c, "file"));
		if (json_object_get(c, "driveId"))
			json_object_set(o, "driveId", json_object_get(c, "driveId"));
		json_array_append_new(out, o);
	}
	json_decref(arr);
	snprintf(t, sizeof(t), "%" PRId64, next);
	reply_json(q, r, 200, json_pack("{s:s, s:o, s:s}", "kind", "drive#changeList",
					"changes", out, more ? "nextPageToken" : "newStartPageToken",
					t), trim_changes);
}

static void drives_route(struct drive *d, const struct dreq *q, struct emu_resp *r,
			 const char *id)
{
	struct dst_err err;
	json_t *j = NULL, *body = NULL;
	char *next = NULL;
	long max;

	if (!id && (is_m(q, "GET") || is_m(q, "HEAD"))) {
		r->kind = "drive.drives.list";
		if (qint(q, r, "pageSize", 1, 100, 10, &max) < 0)
			return;
		if (dst_drive_list(d->store, max, qget(q, "pageToken"), &j, &next, &err) < 0) {
			reply_err(r, &err);
			return;
		}
		j = json_pack("{s:s, s:o}", "kind", "drive#driveList", "drives", j);
		if (j && next)
			json_object_set_new(j, "nextPageToken", json_string(next));
		free(next);
		reply_json(q, r, 200, j, trim_drives);
	} else if (!id && is_m(q, "POST")) {
		const char *rq = qget(q, "requestId");

		r->kind = "drive.drives.create";
		if (!rq || !*rq) {
			reply_error(r, 400, "required", "requestId", "Required parameter: requestId");
			return;
		}
		if (body_json(q, r, &body) < 0 || !rate_ok(d, r))
			goto out;
		if (dst_drive_create(d->store, json_string_value(json_object_get(body, "name")), NULL,
				     rq, &j, &err) < 0)
			reply_err(r, &err);
		else
			reply_json(q, r, 200, j, trim_drive);
	} else if (id && (is_m(q, "GET") || is_m(q, "HEAD"))) {
		r->kind = "drive.drives.get";
		if (dst_drive_get(d->store, id, &j, &err) < 0)
			reply_err(r, &err);
		else
			reply_json(q, r, 200, j, trim_drive);
	} else if (id && is_m(q, "DELETE")) {
		r->kind = "drive.drives.delete";
		if (!rate_ok(d, r))
			return;
		if (dst_drive_delete(d->store, id, &err) < 0)
			reply_err(r, &err);
		else
			emu_resp_text(r, 204, "text/plain", "", 0);
	} else {
		r->kind = "drive.bad_request";
		reply_error(r, 405, "methodNotAllowed", NULL, "Method %s not allowed here.",
			    q->method);
	}
out:
	json_decref(body);
}

/* --- routing ---------------------------------------------------------- */

static void dispatch(struct drive *d, const struct dreq *q, struct emu_resp *r);

/* Decode one path segment; NULL on a malformed escape or an empty one. */
static char *segment(const char *s, size_t n)
{
	char *v = emu_pct_decode(s, n);

	if (v && !*v) {
		free(v);
		return NULL;
	}
	return v;
}

static void files_route(struct drive *d, const struct dreq *q, struct emu_resp *r,
			const char *rest)
{
	const char *slash;
	char *id = NULL;

	if (!*rest || !strcmp(rest, "/")) {
		if (is_m(q, "GET") || is_m(q, "HEAD"))
			files_list(d, q, r);
		else if (is_m(q, "POST"))
			files_create_meta(d, q, r);
		else {
			r->kind = "drive.bad_request";
			reply_error(r, 405, "methodNotAllowed", NULL, "Use GET or POST on /files.");
		}
		return;
	}
	rest++;  /* past '/' */
	if (!strcmp(rest, "generateIds") && (is_m(q, "GET") || is_m(q, "POST"))) {
		files_generate_ids(d, q, r);
		return;
	}
	if (!strcmp(rest, "trash") && is_m(q, "DELETE")) {
		files_empty_trash(d, q, r);
		return;
	}
	slash = strchr(rest, '/');
	id = segment(rest, slash ? (size_t)(slash - rest) : strlen(rest));
	if (!id) {
		r->kind = "drive.bad_request";
		reply_error(r, 400, "invalid", "fileId", "Invalid file id in the path.");
		return;
	}
	if (slash && !strcmp(slash, "/export")) {
		if (is_m(q, "GET"))
			files_export(d, q, r, id);
		else {
			r->kind = "drive.bad_request";
			reply_error(r, 405, "methodNotAllowed", NULL, "Use GET for export.");
		}
	} else if (slash) {
		r->kind = "drive.bad_request";
		reply_error(r, 404, "notFound", NULL, "Not Found: %s %s", q->method, q->path);
	} else if (is_m(q, "GET") || is_m(q, "HEAD")) {
		files_get(d, q, r, id);
	} else if (is_m(q, "PATCH") || is_m(q, "PUT")) {
		files_update_meta(d, q, r, id);
	} else if (is_m(q, "DELETE")) {
		files_delete(d, q, r, id);
	} else {
		r->kind = "drive.bad_request";
		reply_error(r, 405, "methodNotAllowed", NULL, "Method %s not allowed on a file.",
			    q->method);
	}
	free(id);
}

/* Fisher-Yates with the kernel's randomness (batch replies come in any
 * order, as Google's do). */
static void shuffle(size_t *v, size_t n)
{
	size_t i;

	for (i = n; i > 1; i--) {
		unsigned int x = 0;
		size_t k, t;

		if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x))
			x = (unsigned int)rand();
		k = x % i;
		t = v[i - 1];
		v[i - 1] = v[k];
		v[k] = t;
	}
}

/* One batch part to a dreq: the target loses any scheme and host. */
static int part_request(struct emu *e, const struct dbatch_part *p, struct dreq *q,
			char **path)
{
	const char *t = p->target, *qm;

	memset(q, 0, sizeof(*q));
	if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
		t = strstr(t, "://") + 3;
		t = strchr(t, '/');
		if (!t)
			t = "/";
	}
	qm = strchr(t, '?');
	*path = qm ? strndup(t, (size_t)(qm - t)) : strdup(t);
	if (!*path)
		return -1;
	q->e = e;
	q->method = p->method;
	q->path = *path;
	q->query = qm ? qm + 1 : "";
	q->part = p;
	q->body = p->body;
	q->body_len = p->body_len;
	if (emu_form_parse(q->query, strlen(q->query), &q->kv, &q->nkv) < 0)
		return -2;
	q->fr.method = q->method;
	q->fr.path = q->path;
	q->fr.query = q->query;
	q->fr.body = q->body;
	q->fr.body_len = q->body_len;
	q->fr.service = "drive";
	return 0;
}

static void batch(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	char boundary[80], why[160], rb[48];
	struct dbatch b = { 0 };
	struct emu_resp *subs = NULL;
	size_t *order = NULL, i;
	struct dbuf out = { 0 };
	int rc;

	r->kind = "drive.batch";
	if (!is_m(q, "POST")) {
		reply_error(r, 405, "methodNotAllowed", NULL, "Batch requests use POST.");
		return;
	}
	if (emu_parse_boundary(hget(q, "Content-Type"), boundary, sizeof(boundary)) < 0) {
		reply_error(r, 400, "badRequest", NULL,
			    "A batch request needs Content-Type multipart/mixed with a boundary.");
		return;
	}
	rc = dbatch_parse(q->body, q->body_len, boundary, DRIVE_BATCH_MAX, &b, why, sizeof(why));
	if (rc == -2) {
		reply_error(r, 400, "badRequest", NULL,
			    "A batch request cannot contain more than %d requests.", DRIVE_BATCH_MAX);
		return;
	}
	if (rc < 0) {
		reply_error(r, 400, "badRequest", NULL, "Malformed batch request: %s", why);
		return;
	}
	subs = calloc(b.nparts, sizeof(*subs));
	order = calloc(b.nparts, sizeof(*order));
	if (!subs || !order) {
		reply_error(r, 500, "backendError", NULL, "Out of memory.");
		goto out;
	}
	emu_stat_add(q->e, "drive.batch_parts", (int64_t)b.nparts);
	for (i = 0; i < b.nparts; i++) {
		struct dreq sq;
		char *path = NULL;
		int prc;

		order[i] = i;
		subs[i].fd = -1;
		prc = part_request(q->e, &b.parts[i], &sq, &path);
		if (prc == -1) {
			reply_error(&subs[i], 500, "backendError", NULL, "Out of memory.");
		} else if (prc == -2) {
			reply_error(&subs[i], 400, "invalid", NULL, "Malformed query string.");
		} else if (strncmp(sq.path, "/drive/v3/", 10)) {
			reply_error(&subs[i], 400, "badRequest", NULL,
				    "Only /drive/v3/ calls can be batched here (no media uploads): %.100s",
				    sq.path);
		} else {
			dispatch(d, &sq, &subs[i]);
		}
		emu_kv_free(sq.kv, sq.nkv);
		free(path);
	}
	shuffle(order, b.nparts);
	memcpy(rb, "batch_", 6);
	{
		char tmp[25];

		for (i = 0; i < 24; i++) {
			unsigned char c = 0;

			if (getrandom(&c, 1, 0) != 1)
				c = (unsigned char)rand();
			tmp[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[c & 63];
		}
		tmp[24] = '\0';
		snprintf(rb + 6, sizeof(rb) - 6, "%s", tmp);
	}
	for (i = 0; i < b.nparts; i++) {
		struct emu_resp *s = &subs[order[i]];
		const char *names[EMU_MAX_HEADERS + 1], *values[EMU_MAX_HEADERS + 1];
		size_t nh = 0;
		int k, has_ct = 0;
		char *rid = dbatch_response_id(b.parts[order[i]].content_id);

		for (k = 0; k < s->nheaders; k++) {
			if (!strcasecmp(s->hname[k], "Content-Type"))
				has_ct = 1;
			names[nh] = s->hname[k];
			values[nh++] = s->hvalue[k];
		}
		if (!has_ct && s->status != 204) {
			names[nh] = "Content-Type";
			values[nh++] = s->content_type ? s->content_type
						       : "application/json; charset=UTF-8";
		}
		dbatch_add_response(&out, rb, rid, s->status ? s->status : 500, names, values, nh,
				    s->body ? s->body : "", s->body ? s->body_len : 0);
		free(rid);
	}
	dbatch_finish(&out, rb);
	if (out.oom) {
		reply_error(r, 500, "backendError", NULL, "Out of memory.");
		goto out;
	}
	r->status = 200;
	r->body = out.p;
	r->body_len = out.len;
	out.p = NULL;
	emu_resp_header(r, "Content-Type", "multipart/mixed; boundary=%s", rb);
out:
	if (subs) {
		for (i = 0; i < b.nparts; i++) {
			int k;

			if (subs[i].body_free)
				subs[i].body_free(subs[i].body_ud);
			else
				free(subs[i].body);
			for (k = 0; k < subs[i].nheaders; k++) {
				free(subs[i].hname[k]);
				free(subs[i].hvalue[k]);
			}
		}
	}
	free(subs);
	free(order);
	free(out.p);
	dbatch_release(&b);
}

/* Route one request (top level or a batch part). */
static void dispatch(struct drive *d, const struct dreq *q, struct emu_resp *r)
{
	const char *p = q->path, *fs = qget(q, "fields");
	int bad = 0;
	struct emu_fields *f;

	f = emu_fields_parse(fs, &bad);
	emu_fields_free(f);
	if (bad) {
		r->kind = "drive.bad_request";
		reply_error(r, 400, "invalidParameter", "fields", "Invalid field selection %.100s",
			    fs);
		return;
	}
	if (!strncmp(p, "/upload/drive/v3/files", 22)) {
		const char *rest = p + 22;
		char *id = NULL;

		if (q->part) {
			r->kind = "drive.bad_request";
			reply_error(r, 400, "badRequest", NULL,
				    "Media uploads are not supported in batch requests.");
			return;
		}
		if (*rest == '/' && rest[1]) {
			id = segment(rest + 1, strlen(rest + 1));
			if (!id || strchr(id, '/')) {
				free(id);
				r->kind = "drive.bad_request";
				reply_error(r, 404, "notFound", NULL, "Not Found: %s %s", q->method,
					    q->path);
				return;
			}
		} else if (*rest && strcmp(rest, "/")) {
			r->kind = "drive.bad_request";
			reply_error(r, 404, "notFound", NULL, "Not Found: %s %s", q->method, q->path);
			return;
		}
		upload_dispatch(d, q, r, id);
		free(id);
		return;
	}
	if (!strncmp(p, "/batch/drive/v3", 15) && (!p[15] || !strcmp(p + 15, "/"))) {
		if (q->part) {
			r->kind = "drive.bad_request";
			reply_error(r, 400, "badRequest", NULL, "Batches cannot be nested.");
			return;
		}
		batch(d, q, r);
		return;
	}
	if (strncmp(p, "/drive/v3/", 10)) {
		r->kind = "drive.bad_request";
		reply_error(r, 404, "notFound", NULL, "Not Found: %s %s", q->method, q->path);
		return;
	}
	p += 9;  /* "/files..." */
	if (!strncmp(p, "/files", 6) && (!p[6] || p[6] == '/')) {
		files_route(d, q, r, p + 6);
	} else if (!strcmp(p, "/about") && (is_m(q, "GET") || is_m(q, "HEAD"))) {
		about_get(d, q, r);
	} else if (!strcmp(p, "/changes/startPageToken") && is_m(q, "GET")) {
		changes_start(d, q, r);
	} else if (!strcmp(p, "/changes") && is_m(q, "GET")) {
		changes_list(d, q, r);
	} else if (!strcmp(p, "/drives") || !strcmp(p, "/drives/")) {
		drives_route(d, q, r, NULL);
	} else if (!strncmp(p, "/drives/", 8)) {
		char *id = segment(p + 8, strlen(p + 8));

		if (!id || strchr(id, '/')) {
			r->kind = "drive.bad_request";
			reply_error(r, 404, "notFound", NULL, "Not Found: %s %s", q->method, q->path);
		} else {
			drives_route(d, q, r, id);
		}
		free(id);
	} else {
		r->kind = "drive.bad_request";
		reply_error(r, 404, "notFound", NULL, "Not Found: %s %s", q->method, q->path);
	}
	if (!r->kind)
		r->kind = "drive.bad_request";
}

static int drive_handle(struct emu *e, void *state, const struct emu_req *req,
			struct emu_resp *r)
{
	struct drive *d = state;
	struct dreq q;

	memset(&q, 0, sizeof(q));
	q.e = e;
	q.method = req->method;
	q.path = req->path;
	q.query = req->query ? req->query : "";
	q.outer = req;
	q.body = req->body ? req->body : "";
	q.body_len = req->body_len;
	q.truncated = req->truncated;
	q.fr = *req;
	if (emu_form_parse(q.query, strlen(q.query), &q.kv, &q.nkv) < 0) {
		r->kind = "drive.bad_request";
		reply_error(r, 400, "invalid", NULL, "Malformed query string.");
		return 0;
	}
	dispatch(d, &q, r);
	emu_kv_free(q.kv, q.nkv);
	return 0;
}

/* --- control calls ---------------------------------------------------- */

/* {"name","parent"|"parent_index","mimeType","content"|"content_b64",
 *  "trashed","modifiedTime","createdTime","id","target","exportSize",
 *  "appProperties","properties","description","starred"} */
static json_t *control_one(struct drive *d, const json_t *spec, json_t *made, char *why,
			   size_t whysz)
{
	json_t *meta = NULL, *res = NULL, *v;
	struct dst_new n;
	struct dst_view view;
	struct dst_err err;
	struct dst_blob *blob = NULL;
	const char *content = json_string_value(json_object_get(spec, "content"));
	const char *b64 = json_string_value(json_object_get(spec, "content_b64"));
	const char *k;
	const char *parent = json_string_value(json_object_get(spec, "parent"));

	if (!json_is_object(spec)) {
		snprintf(why, whysz, "each file must be an object");
		return NULL;
	}
	meta = json_object();
	if (!meta)
		goto nomem;
	json_object_foreach((json_t *)spec, k, v) {
		if (!strcmp(k, "parent") || !strcmp(k, "parent_index") || !strcmp(k, "content") ||
		    !strcmp(k, "content_b64") || !strcmp(k, "target"))
			continue;
		if (strcmp(k, "name") && strcmp(k, "mimeType") && strcmp(k, "trashed") &&
		    strcmp(k, "modifiedTime") && strcmp(k, "createdTime") && strcmp(k, "id") &&
		    strcmp(k, "exportSize") && strcmp(k, "appProperties") &&
		    strcmp(k, "properties") && strcmp(k, "description") && strcmp(k, "starred") &&
		    strcmp(k, "shortcutDetails") && strcmp(k, "originalFilename")) {
			snprintf(why, whysz, "unknown field %.60s in a file", k);
			goto fail;
		}
		json_object_set(meta, k, v);
	}
	if ((v = json_object_get(spec, "parent_index"))) {
		json_t *p = json_array_get(made, (size_t)json_integer_value(v));

		if (!json_is_integer(v) || !p) {
			snprintf(why, whysz, "parent_index must name an earlier file of this call");
			goto fail;
		}
		parent = json_string_value(json_object_get(p, "id"));
	}
	if (parent)
		json_object_set_new(meta, "parents", json_pack("[s]", parent));
	if ((v = json_object_get(spec, "target"))) {
		if (!json_is_string(v)) {
			snprintf(why, whysz, "target must be a file id");
			goto fail;
		}
		json_object_set_new(meta, "shortcutDetails", json_pack("{s:O}", "targetId", v));
		if (!json_object_get(meta, "mimeType"))
			json_object_set_new(meta, "mimeType", json_string(DST_SHORTCUT));
	}
	if (b64) {
		size_t len = strlen(b64), got = 0;
		char *buf = malloc(len + 1);

		if (!buf)
			goto nomem;
		if (enc_b64_decode(b64, len, buf, len + 1, &got) < 0) {
			free(buf);
			snprintf(why, whysz, "content_b64 is not valid base64");
			goto fail;
		}
		blob = dst_blob_take(d->store, buf, got);
	} else if (content) {
		blob = dst_blob_copy(d->store, content, strlen(content));
	}
	if ((b64 || content) && !blob)
		goto nomem;
	memset(&n, 0, sizeof(n));
	n.meta = meta;
	n.blob = blob;
	n.control = 1;
	n.all_drives = 1;
	if (dst_create(d->store, &n, &view, &err) < 0) {
		snprintf(why, whysz, "%s (%d %s)", err.msg, err.status, err.reason);
		goto fail;
	}
	res = view.res;
	view.res = NULL;
	dst_view_release(&view);
	dst_blob_unref(blob);
	json_decref(meta);
	return res;
nomem:
	snprintf(why, whysz, "out of memory");
fail:
	dst_blob_discard(blob);
	json_decref(meta);
	return NULL;
}

static int body_obj(const struct emu_req *req, struct emu_resp *r, json_t **out)
{
	json_error_t jerr;

	*out = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : json_object();
	if (!*out) {
		emu_resp_error(r, 400, "parseError", "malformed JSON body: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		emu_resp_error(r, 400, "invalid", "the body must be a JSON object");
		return -1;
	}
	return 0;
}

static int drive_control(struct emu *e, void *state, const char *sub,
			 const struct emu_req *req, struct emu_resp *r)
{
	struct drive *d = state;
	json_t *body = NULL, *v;
	char why[400] = "";
	struct dst_err err;

	(void)e;
	r->kind = "control";
	if (!strcmp(sub, "root")) {
		char id[DST_ID_MAX];

		dst_root_id(d->store, id);
		emu_resp_json(r, 200, json_pack("{s:s}", "id", id));
		return 0;
	}
	if (!strcmp(sub, "expire_sessions")) {
		emu_resp_json(r, 200, json_pack("{s:i}", "expired", dst_sess_expire_all(d->store)));
		return 0;
	}
	if (strcmp(sub, "files") && strcmp(sub, "shared_drives") && strcmp(sub, "quota") &&
	    strcmp(sub, "rate") && strcmp(sub, "storage_quota_exceeded") && strcmp(sub, "bulk"))
		return -1;
	if (body_obj(req, r, &body) < 0)
		return 0;
	if (!strcmp(sub, "files")) {
		json_t *list = json_object_get(body, "files"), *made = json_array(), *spec;
		size_t i;

		if (!list) {
			list = json_array();
			json_array_append(list, body);
		} else {
			json_incref(list);
		}
		if (!json_is_array(list) || !made) {
			emu_resp_error(r, 400, "invalid", "expected {\"files\": [...]} or one file");
			json_decref(list);
			json_decref(made);
			goto out;
		}
		json_array_foreach(list, i, spec) {
			json_t *res = control_one(d, spec, made, why, sizeof(why));

			if (!res) {
				emu_resp_error(r, 400, "invalid", "files[%zu]: %s", i, why);
				json_decref(list);
				json_decref(made);
				goto out;
			}
			json_array_append_new(made, res);
		}
		json_decref(list);
		emu_resp_json(r, 200, json_pack("{s:o}", "files", made));
	} else if (!strcmp(sub, "shared_drives")) {
		const char *name = json_string_value(json_object_get(body, "name"));
		json_t *j = NULL;

		if (dst_drive_create(d->store, name, json_string_value(json_object_get(body, "id")),
				     NULL, &j, &err) < 0)
			emu_resp_error(r, err.status == 500 ? 500 : 400, err.reason, "%s", err.msg);
		else
			emu_resp_json(r, 200, j);
	} else if (!strcmp(sub, "quota")) {
		v = json_object_get(body, "limit");
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			emu_resp_error(r, 400, "invalid", "expected {\"limit\": N} with N >= 0 (0: unlimited)");
		} else {
			dst_set_quota(d->store, json_integer_value(v));
			emu_resp_json(r, 200, json_pack("{s:I}", "limit", json_integer_value(v)));
		}
	} else if (!strcmp(sub, "rate")) {
		v = json_object_get(body, "writes_per_second");
		if (!json_is_number(v) || json_number_value(v) < 0) {
			emu_resp_error(r, 400, "invalid",
				       "expected {\"writes_per_second\": N} with N >= 0 (0: unlimited)");
		} else {
			pthread_mutex_lock(&d->rate_mu);
			d->rate = json_number_value(v);
			d->tokens = d->rate < 1 ? 1 : d->rate;
			clock_gettime(CLOCK_MONOTONIC, &d->last);
			pthread_mutex_unlock(&d->rate_mu);
			emu_resp_json(r, 200, json_pack("{s:f}", "writes_per_second",
							json_number_value(v)));
		}
	} else if (!strcmp(sub, "storage_quota_exceeded")) {
		v = json_object_get(body, "on");
		if (!json_is_boolean(v)) {
			emu_resp_error(r, 400, "invalid", "expected {\"on\": true|false}");
		} else {
			atomic_store(&d->quota_exceeded, json_is_true(v));
			emu_resp_json(r, 200, json_pack("{s:b}", "on", json_is_true(v)));
		}
	} else {
		/* bulk: {"parent","count","prefix","suffix","width","mimeType","content","trashed"} */
		const char *parent = json_string_value(json_object_get(body, "parent"));
		const char *prefix = json_string_value(json_object_get(body, "prefix"));
		const char *suffix = json_string_value(json_object_get(body, "suffix"));
		const char *mime = json_string_value(json_object_get(body, "mimeType"));
		const char *content = json_string_value(json_object_get(body, "content"));
		json_t *cnt = json_object_get(body, "count"), *w = json_object_get(body, "width");
		struct dst_blob *blob = NULL;
		struct timespec t0, t1;

		if (!json_is_integer(cnt) || json_integer_value(cnt) < 0 ||
		    json_integer_value(cnt) > 2000000 || (w && (!json_is_integer(w) ||
		    json_integer_value(w) < 0 || json_integer_value(w) > 12))) {
			emu_resp_error(r, 400, "invalid",
				       "expected {\"count\": 0..2000000, \"parent\", \"prefix\", \"width\": 0..12, ...}");
			goto out;
		}
		blob = dst_blob_copy(d->store, content ? content : "", content ? strlen(content) : 0);
		if (!blob) {
			emu_resp_error(r, 500, "backendError", "out of memory");
			goto out;
		}
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (dst_bulk(d->store, parent ? parent : "root", (long)json_integer_value(cnt),
			     prefix ? prefix : "file-", suffix ? suffix : "",
			     w ? (int)json_integer_value(w) : 6,
			     mime ? mime : "application/octet-stream", blob,
			     json_is_true(json_object_get(body, "trashed")), &err) < 0) {
			emu_resp_error(r, err.status == 404 ? 404 : 500, err.reason, "%s", err.msg);
		} else {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			emu_resp_json(r, 200, json_pack("{s:I, s:f}", "created",
				json_integer_value(cnt), "seconds",
				(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
		}
		dst_blob_unref(blob);
	}
out:
	json_decref(body);
	return 0;
}

/* --- life cycle ------------------------------------------------------- */

static int drive_init(struct emu *e, void **state)
{
	struct drive *d = calloc(1, sizeof(*d));
	const char *dd = emu_data_dir(e);
	char *dir = NULL;
	char why[512] = "";

	if (!d)
		return -1;
	pthread_mutex_init(&d->rate_mu, NULL);
	atomic_init(&d->quota_exceeded, 0);
	if (dd && asprintf(&dir, "%s/drive", dd) < 0) {
		free(d);
		return -1;
	}
	d->store = dst_open(dir, why, sizeof(why));
	free(dir);
	if (!d->store) {
		emu_log(e, "drive: %s", why);
		pthread_mutex_destroy(&d->rate_mu);
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

static void drive_reset(struct emu *e, void *state)
{
	struct drive *d = state;

	(void)e;
	dst_reset(d->store);
	pthread_mutex_lock(&d->rate_mu);
	d->rate = 0;
	d->tokens = 0;
	pthread_mutex_unlock(&d->rate_mu);
	atomic_store(&d->quota_exceeded, 0);
}

static void drive_fini(struct emu *e, void *state)
{
	struct drive *d = state;

	(void)e;
	if (!d)
		return;
	dst_close(d->store);
	pthread_mutex_destroy(&d->rate_mu);
	free(d);
}

const struct emu_service emu_drive_service = {
	.name = "drive",
	.prefixes = drive_prefixes,
	.needs_auth = 1,
	.init = drive_init,
	.handle = drive_handle,
	.control = drive_control,
	.reset = drive_reset,
	.fini = drive_fini,
};
