/* The Cloud Storage backend (include/durafs/gcs.h): the backend interface
 * over the GCS JSON API. A directory is a name prefix ending in '/', shown
 * whether it exists as a "dir/" marker object or only as a prefix; every
 * write carries ifGenerationMatch; uploads are multipart or resumable. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/enc.h"
#include "durafs/gcs.h"
#include "durafs/http.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"

#define TAG "gcs"

/* Fields asked for: everything a be_entry needs, nothing more. */
#define OBJ_FIELDS "name,size,generation,metageneration,crc32c,md5Hash,updated,contentType,metadata"
#define LIST_FIELDS "nextPageToken,prefixes,items(" OBJ_FIELDS ")"
#define WALK_FIELDS "nextPageToken,items(name,size,generation,metageneration,crc32c,md5Hash,timeDeleted)"

struct gcs {
	struct be base;           /* must stay first */
	struct http *http;        /* borrowed */
	char *bucket;
	char *prefix;             /* "" for the whole bucket */
	char *ep;                 /* endpoint, no trailing '/' */
	char *api;                /* ep/storage/v1/b/BUCKET */
	char *upl;                /* ep/upload/storage/v1/b/BUCKET */
	uint64_t chunk;
	long page_size;
	int max_fail;
	long retry_base_ms;
	long rewrite_max;
	atomic_int swept;         /* leftover append temporaries looked for */
};

/* --- a growing string ------------------------------------------------------ */

struct sb {
	char *s;
	size_t n, cap;
	int oom;
};

static void sb_addn(struct sb *b, const char *s, size_t n)
{
	size_t ncap;
	char *ns;

	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		ncap = b->cap ? b->cap : 128;
		while (ncap < b->n + n + 1)
			ncap *= 2;
		ns = realloc(b->s, ncap);
		if (!ns) {
			b->oom = 1;
			return;
		}
		b->s = ns;
		b->cap = ncap;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static void sb_add(struct sb *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

static void sb_addf(struct sb *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sb_addf(struct sb *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = 1;
		return;
	}
	sb_addn(b, tmp, (size_t)n);
}

/* Percent-encoded s. */
static void sb_enc(struct sb *b, const char *s)
{
	char *e = enc_url(s);

	if (!e) {
		b->oom = 1;
		return;
	}
	sb_add(b, e);
	free(e);
}

/* Take the built string (NULL when out of memory, with *err set). */
static char *sb_take(struct sb *b, struct err *err)
{
	char *s = b->s;

	if (b->oom || !s) {
		free(b->s);
		memset(b, 0, sizeof(*b));
		err_set(err, ERR_NOMEM, "out of memory");
		return NULL;
	}
	memset(b, 0, sizeof(*b));
	return s;
}

/* --- pure helpers ------------------------------------------------------- */

int gcs_bucket_valid(const char *name)
{
	size_t len, i, comp = 0;
	int dotted = 0;
	char c;

	if (!name)
		return 0;
	len = strlen(name);
	if (len < 3 || len > 222)
		return 0;
	for (i = 0; i < len; i++) {
		c = name[i];
		if (c == '.') {
			dotted = 1;
			if (comp == 0 || comp > 63)
				return 0;
			comp = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
		comp++;
	}
	if (comp == 0 || comp > 63 || (!dotted && len > 63))
		return 0;
	c = name[0];
	if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
		return 0;
	c = name[len - 1];
	if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
		return 0;
	return 1;
}

int gcs_parse_source(const char *src, char **bucket, char **prefix, struct err *err)
{
	const char *p, *slash;
	char *b = NULL, *pre = NULL;
	size_t plen;
	int rc = -1;

	*bucket = NULL;
	*prefix = NULL;
	if (!src || strncmp(src, "gs://", 5) != 0) {
		err_set(err, ERR_INVAL, "source \"%s\": expected gs://BUCKET[/PREFIX]",
			src ? src : "");
		goto out;
	}
	p = src + 5;
	slash = strchr(p, '/');
	b = slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
	if (!b) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!gcs_bucket_valid(b)) {
		err_set(err, ERR_INVAL, "source \"%s\": \"%s\" is not a valid bucket name",
			src, b);
		goto out;
	}
	p = slash ? slash + 1 : "";
	plen = strlen(p);
	while (plen > 0 && p[plen - 1] == '/')
		plen--;
	pre = strndup(p, plen);
	if (!pre) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!be_path_valid(pre) || (plen == 0 && p[0] == '/')) {
		err_set(err, ERR_INVAL, "source \"%s\": prefix \"%s\" is not a valid path "
			"(empty, \".\" or \"..\" components)", src, pre);
		goto out;
	}
	*bucket = b;
	*prefix = pre;
	b = pre = NULL;
	rc = 0;
out:
	free(b);
	free(pre);
	return rc;
}

int gcs_endpoint(const char *explicit_ep, char *out, size_t len, int *emulated,
		 struct err *err)
{
	const char *src = explicit_ep, *env;
	const char *scheme = "";
	size_t n, skip = 0;
	int emu = 0, w;

	if (!src || !*src) {
		env = getenv("STORAGE_EMULATOR_HOST");
		if (env && *env) {
			src = env;
			emu = 1;
		} else {
			src = GCS_DEFAULT_ENDPOINT;
		}
	}
	if (strstr(src, "://")) {
		if (strncmp(src, "http://", 7) == 0)
			skip = 7;
		else if (strncmp(src, "https://", 8) == 0)
			skip = 8;
		else
			return err_set(err, ERR_INVAL, "endpoint \"%s\": only http:// and https:// "
				       "are supported", src);
	} else {
		scheme = "http://";
	}
	n = strlen(src);
	while (n > skip && src[n - 1] == '/')
		n--;
	if (n == skip || n > 4096 || src[skip] == '/')
		return err_set(err, ERR_INVAL, "endpoint \"%s\" has no host", src);
	w = snprintf(out, len, "%s%.*s", scheme, (int)n, src);
	if (w < 0 || (size_t)w >= len)
		return err_set(err, ERR_INVAL, "endpoint too long");
	if (emulated)
		*emulated = emu;
	return 0;
}

char *gcs_object_name(const char *prefix, const char *path, int dir)
{
	struct sb b = { 0 };

	if (prefix && *prefix) {
		sb_add(&b, prefix);
		if (*path) {
			sb_add(&b, "/");
			sb_add(&b, path);
		}
	} else {
		sb_add(&b, path);
	}
	if (dir && b.n > 0)
		sb_add(&b, "/");
	if (!b.oom && !b.s)
		sb_add(&b, "");
	return sb_take(&b, NULL);
}

void gcs_obj_release(struct gcs_obj *o)
{
	if (!o)
		return;
	free(o->name);
	free(o->content_type);
	free(o->symlink_target);
	memset(o, 0, sizeof(*o));
}

/* A string value of the custom metadata object, NULL when absent or not a
 * NUL-free string (metadata is written by anyone: never fatal). */
static const char *meta_str(const json_t *meta, const char *key)
{
	const json_t *v;
	const char *s;

	if (!meta)
		return NULL;
	v = json_object_get(meta, key);
	if (!v || !json_is_string(v))
		return NULL;
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return NULL;
	return s;
}

int gcs_obj_from_json(const json_t *j, struct gcs_obj *out, struct err *err)
{
	struct gcs_obj o;
	const char *name = NULL, *s = NULL, *target;
	json_t *meta = NULL;
	size_t nlen = 0, dlen = 0;
	int64_t mt;
	struct err tmp;
	int rc = -1;

	memset(&o, 0, sizeof(o));
	memset(out, 0, sizeof(*out));
	if (!json_is_object(j)) {
		err_set(err, ERR_PARSE, "object resource: expected an object, got %s",
			jsonh_type_name(j));
		goto out;
	}
	if (jsonh_get_strn(j, "name", &name, &nlen, err) < 0)
		goto out;
	if (nlen == 0) {
		err_set(err, ERR_PARSE, "object resource: empty name");
		goto out;
	}
	o.name = malloc(nlen + 1);
	if (!o.name) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(o.name, name, nlen);
	o.name[nlen] = '\0';
	o.name_len = nlen;
	if (jsonh_get_int64(j, "generation", &o.generation, err) < 0 ||
	    jsonh_opt_int64(j, "metageneration", 0, &o.metageneration, err) < 0 ||
	    jsonh_opt_uint64(j, "size", 0, &o.size, err) < 0)
		goto out;
	if (o.generation <= 0) {
		err_set(err, ERR_PARSE, "object resource: generation %" PRId64 " out of range",
			o.generation);
		goto out;
	}
	if (jsonh_opt_str(j, "crc32c", &s, err) < 0)
		goto out;
	if (s) {
		if (ck_crc32c_from_b64(s, &o.crc32c) < 0) {
			err_set(err, ERR_PARSE, "field \"crc32c\": not the base64 of 4 bytes");
			goto out;
		}
		o.has_crc32c = 1;
	}
	if (jsonh_opt_str(j, "md5Hash", &s, err) < 0)
		goto out;
	if (s) {
		if (enc_b64_decode(s, strlen(s), o.md5, sizeof(o.md5), &dlen) < 0 ||
		    dlen != sizeof(o.md5)) {
			err_set(err, ERR_PARSE, "field \"md5Hash\": not the base64 of 16 bytes");
			goto out;
		}
		o.has_md5 = 1;
	}
	if (jsonh_opt_strdup(j, "contentType", &o.content_type, err) < 0)
		goto out;
	if (jsonh_opt_str(j, "updated", &s, err) < 0)
		goto out;
	if (s && be_parse_rfc3339(s, &o.mtime) < 0) {
		err_set(err, ERR_PARSE, "field \"updated\": not an RFC 3339 time");
		goto out;
	}
	if (jsonh_opt_object(j, "metadata", &meta, err) < 0)
		goto out;
	s = meta_str(meta, GCS_META_MTIME);
	err_clear(&tmp);
	if (s && jsonh_parse_int64(s, GCS_META_MTIME, &mt, &tmp) == 0) {
		o.mtime.tv_sec = (time_t)mt;
		o.mtime.tv_nsec = 0;
	}
	target = meta_str(meta, GCS_META_SYMLINK);
	if (!target)
		target = meta_str(meta, GCS_META_SYMLINK_GCSFUSE);
	if (target && *target) {
		o.symlink_target = strdup(target);
		if (!o.symlink_target) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	{
		json_t *td = json_object_get(j, "timeDeleted");

		o.noncurrent = td && !json_is_null(td);
	}
	*out = o;
	memset(&o, 0, sizeof(o));
	rc = 0;
out:
	gcs_obj_release(&o);
	return rc;
}

int gcs_parse_object(const char *buf, size_t len, struct gcs_obj *out, struct err *err)
{
	json_t *j = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (jsonh_parse_object(buf, len, "GCS object", &j, err) < 0)
		return -1;
	rc = gcs_obj_from_json(j, out, err);
	json_decref(j);
	return rc;
}

void gcs_page_release(struct gcs_page *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->nitems; i++)
		gcs_obj_release(&p->items[i]);
	free(p->items);
	for (i = 0; i < p->nprefixes; i++)
		free(p->prefixes[i]);
	free(p->prefixes);
	free(p->next_token);
	memset(p, 0, sizeof(*p));
}

int gcs_parse_list_page(const char *buf, size_t len, struct gcs_page *out, struct err *err)
{
	struct gcs_page pg;
	json_t *j = NULL, *items = NULL, *prefixes = NULL, *it = NULL, *pv;
	const char *tok = NULL;
	size_t i, n;
	int rc = -1;

	memset(&pg, 0, sizeof(pg));
	memset(out, 0, sizeof(*out));
	if (jsonh_parse_object(buf, len, "GCS object list", &j, err) < 0)
		goto out;
	if (jsonh_opt_array(j, "items", &items, err) < 0 ||
	    jsonh_opt_array(j, "prefixes", &prefixes, err) < 0 ||
	    jsonh_opt_str(j, "nextPageToken", &tok, err) < 0)
		goto out;
	n = json_array_size(items);
	if (n) {
		pg.items = calloc(n, sizeof(*pg.items));
		if (!pg.items) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (jsonh_elem_object(items, i, "items", &it, err) < 0)
			goto out;
		if (gcs_obj_from_json(it, &pg.items[i], err) < 0) {
			err_prefix(err, "items[%zu]", i);
			goto out;
		}
		pg.nitems++;
	}
	n = json_array_size(prefixes);
	if (n) {
		pg.prefixes = calloc(n, sizeof(*pg.prefixes));
		if (!pg.prefixes) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		pv = json_array_get(prefixes, i);
		if (!json_is_string(pv)) {
			err_set(err, ERR_PARSE, "prefixes[%zu]: expected a string, got %s", i,
				jsonh_type_name(pv));
			goto out;
		}
		if (strlen(json_string_value(pv)) != json_string_length(pv)) {
			pg.bad_prefixes++;
			continue;
		}
		pg.prefixes[pg.nprefixes] = strdup(json_string_value(pv));
		if (!pg.prefixes[pg.nprefixes]) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		pg.nprefixes++;
	}
	if (tok && *tok) {
		pg.next_token = strdup(tok);
		if (!pg.next_token) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	*out = pg;
	memset(&pg, 0, sizeof(pg));
	rc = 0;
out:
	gcs_page_release(&pg);
	json_decref(j);
	return rc;
}

int gcs_obj_to_entry(const struct gcs_obj *o, const char *name, size_t name_len,
		     struct be_entry *e, struct err *err)
{
	memset(e, 0, sizeof(*e));
	e->name = strndup(name, name_len);
	if (!e->name)
		goto nomem;
	e->type = o->symlink_target ? BE_SYMLINK : BE_FILE;
	e->size = o->symlink_target ? strlen(o->symlink_target) : o->size;
	e->mtime = o->mtime;
	e->ver.gen = o->generation;
	e->ver.metagen = o->metageneration;
	e->has_crc32c = o->has_crc32c;
	e->crc32c = o->crc32c;
	e->has_md5 = o->has_md5;
	memcpy(e->md5, o->md5, sizeof(e->md5));
	if (o->content_type && !(e->content_type = strdup(o->content_type)))
		goto nomem;
	if (o->symlink_target && !(e->symlink_target = strdup(o->symlink_target)))
		goto nomem;
	return 0;
nomem:
	be_entry_release(e);
	return err_set(err, ERR_NOMEM, "out of memory");
}

static void warn_invalid(struct be_list *l, const char *what, const char *name, size_t len)
{
	l->skipped_invalid++;
	log_warn(TAG, "skipping %s \"%.*s\": not a valid file name here "
		 "(empty segment, \".\", \"..\", NUL or over 255 bytes)",
		 what, (int)(len > 512 ? 512 : len), name);
}

int gcs_list_add_page(struct be_list *l, const char *dirprefix,
		      const struct gcs_page *pg, struct err *err)
{
	size_t dlen = strlen(dirprefix), i, rlen;
	const struct gcs_obj *o;
	struct be_entry *e;
	const char *rel;
	int dir;

	for (i = 0; i < pg->nitems; i++) {
		o = &pg->items[i];
		if (o->name_len < dlen || memcmp(o->name, dirprefix, dlen) != 0) {
			warn_invalid(l, "object", o->name, o->name_len);
			continue;
		}
		rel = o->name + dlen;
		rlen = o->name_len - dlen;
		if (rlen == 0)
			continue;  /* the directory's own marker */
		dir = rel[rlen - 1] == '/';
		if (dir)
			rlen--;
		if (!be_name_valid(rel, rlen)) {
			warn_invalid(l, "object", o->name, o->name_len);
			continue;
		}
		e = be_list_add(l, rel, rlen);
		if (!e)
			return err_set(err, ERR_NOMEM, "out of memory");
		free(e->name);
		e->name = NULL;
		if (gcs_obj_to_entry(o, rel, rlen, e, err) < 0) {
			l->n--;
			return -1;
		}
		if (dir) {
			e->type = BE_DIR;
			e->size = 0;
			free(e->symlink_target);
			e->symlink_target = NULL;
		}
	}
	for (i = 0; i < pg->nprefixes; i++) {
		rel = pg->prefixes[i];
		rlen = strlen(rel);
		if (rlen <= dlen || memcmp(rel, dirprefix, dlen) != 0 || rel[rlen - 1] != '/') {
			warn_invalid(l, "prefix", rel, rlen);
			continue;
		}
		rel += dlen;
		rlen -= dlen + 1;
		if (!be_name_valid(rel, rlen)) {
			warn_invalid(l, "prefix", pg->prefixes[i], strlen(pg->prefixes[i]));
			continue;
		}
		e = be_list_add(l, rel, rlen);
		if (!e)
			return err_set(err, ERR_NOMEM, "out of memory");
		e->type = BE_DIR;
		e->implicit = 1;
	}
	if (pg->bad_prefixes) {
		l->skipped_invalid += pg->bad_prefixes;
		log_warn(TAG, "skipping %zu prefixes containing NUL under \"%s\"",
			 pg->bad_prefixes, dirprefix);
	}
	return 0;
}

int gcs_parse_goog_hash(const char *value, int *has_crc32c, uint32_t *crc32c,
			int *has_md5, unsigned char md5[16])
{
	const char *p = value, *end, *eq;
	char tok[128];
	size_t n, dl;

	while (p && *p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		end = strchr(p, ',');
		n = end ? (size_t)(end - p) : strlen(p);
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (n >= sizeof(tok))
			return -1;
		memcpy(tok, p, n);
		tok[n] = '\0';
		eq = strchr(tok, '=');
		if (!eq)
			return -1;
		if (strncmp(tok, "crc32c=", 7) == 0) {
			if (ck_crc32c_from_b64(tok + 7, crc32c) < 0)
				return -1;
			*has_crc32c = 1;
		} else if (strncmp(tok, "md5=", 4) == 0) {
			if (enc_b64_decode(tok + 4, strlen(tok + 4), md5, 16, &dl) < 0 || dl != 16)
				return -1;
			*has_md5 = 1;
		}
		p = end;
	}
	return 0;
}

int gcs_err_transient(const struct err *e)
{
	if (!e)
		return 0;
	if (e->code == ERR_NET || e->code == ERR_TIMEOUT || e->code == ERR_RATE)
		return 1;
	return e->http_status == 408 || e->http_status == 429 || e->http_status >= 500;
}

/* --- requests ------------------------------------------------------------ */

static struct gcs *G(struct be *b)
{
	return (struct gcs *)b;
}

static int call(struct gcs *g, const char *method, const char *url,
		const char *const *headers, const void *body, size_t blen,
		enum http_retry retry, struct http_resp *resp, struct err *err)
{
	struct http_req req;

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = headers;
	req.body = body;
	req.body_len = blen;
	req.body_fd = -1;
	req.retry = retry;
	return http_do(g->http, &req, resp, err);
}

/* Map a mount path to its object name (dir: with the trailing '/'). */
static char *path_name(struct gcs *g, const char *path, int dir, struct err *err)
{
	char *n;

	if (!be_path_valid(path)) {
		err_set(err, ERR_INVAL, "\"%s\" is not a valid path", path ? path : "(null)");
		return NULL;
	}
	n = gcs_object_name(g->prefix, path, dir);
	if (!n)
		err_set(err, ERR_NOMEM, "out of memory");
	return n;
}

/* GET an object's metadata. ERR_NOTFOUND when absent. */
static int get_obj(struct gcs *g, const char *name, int64_t gen, struct gcs_obj *out,
		   struct err *err)
{
	struct http_resp resp = { 0 };
	struct sb b = { 0 };
	char *url = NULL;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	sb_add(&b, g->api);
	sb_add(&b, "/o/");
	sb_enc(&b, name);
	sb_add(&b, "?fields=");
	sb_enc(&b, OBJ_FIELDS);
	if (gen > 0)
		sb_addf(&b, "&generation=%" PRId64, gen);
	url = sb_take(&b, err);
	if (!url)
		goto out;
	if (call(g, "GET", url, NULL, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
		goto out;
	rc = gcs_parse_object(resp.body, resp.body_len, out, err);
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* Fill *cur (may be NULL) with the current object at path: BE_NONE when
 * absent; left zeroed when it cannot be fetched. */
static void current_entry(struct gcs *g, const char *name, const char *path,
			  struct be_entry *cur)
{
	struct gcs_obj o;
	struct err tmp;
	const char *base;

	if (!cur)
		return;
	memset(cur, 0, sizeof(*cur));
	err_clear(&tmp);
	if (get_obj(g, name, 0, &o, &tmp) == 0) {
		base = be_basename(path);
		gcs_obj_to_entry(&o, base, strlen(base), cur, &tmp);
		gcs_obj_release(&o);
	}
}

static int same_content(const struct gcs_obj *o, uint64_t size, uint32_t crc,
			const unsigned char md5[16])
{
	if (o->size != size || !o->has_crc32c || o->crc32c != crc)
		return 0;
	return !o->has_md5 || memcmp(o->md5, md5, 16) == 0;
}

static int same_obj_content(const struct gcs_obj *a, const struct gcs_obj *b)
{
	if (a->size != b->size || !a->has_crc32c || !b->has_crc32c || a->crc32c != b->crc32c)
		return 0;
	if (a->has_md5 && b->has_md5 && memcmp(a->md5, b->md5, 16) != 0)
		return 0;
	return 1;
}

/* A write guarded by pre was refused (412). If the object now holds exactly
 * our content, an earlier attempt of ours committed it: success (*out = it,
 * returns 0). Otherwise ERR_CONFLICT with *out = the current entry. */
static int resolve_conflict(struct gcs *g, const char *name, const char *path,
			    uint64_t size, uint32_t crc, const unsigned char md5[16],
			    struct be_entry *out, struct err *err)
{
	struct gcs_obj o;
	struct err tmp;
	const char *base = be_basename(path);
	int rc = -1;

	err_clear(&tmp);
	if (out)
		memset(out, 0, sizeof(*out));
	if (get_obj(g, name, 0, &o, &tmp) < 0) {
		if (tmp.code == ERR_NOTFOUND)
			err_set(err, ERR_CONFLICT, "%s: precondition failed and the object is "
				"gone (generation 0)", path);
		else
			err_set(err, ERR_CONFLICT, "%s: precondition failed (current state "
				"unknown: %s)", path, tmp.msg);
		err->http_status = 412;
		return -1;
	}
	if (same_content(&o, size, crc, md5)) {
		log_debug(TAG, "%s: precondition failed but the remote is our content "
			  "(generation %" PRId64 "): an earlier attempt committed it",
			  path, o.generation);
		rc = out ? gcs_obj_to_entry(&o, base, strlen(base), out, err) : 0;
		goto done;
	}
	err_set(err, ERR_CONFLICT, "%s: changed remotely (now generation %" PRId64 ")",
		path, o.generation);
	err->http_status = 412;
	if (out)
		gcs_obj_to_entry(&o, base, strlen(base), out, &tmp);
done:
	gcs_obj_release(&o);
	return rc;
}

static int64_t pre_gen(const struct be_pre *pre)
{
	return pre->kind == BE_PRE_ABSENT ? 0 : pre->ver.gen;
}

static int check_pre(const struct be_pre *pre, const char *path, struct err *err)
{
	if (!pre)
		return err_set(err, ERR_INVAL, "%s: a write needs a precondition", path);
	if (pre->kind != BE_PRE_ABSENT && !(pre->kind == BE_PRE_MATCH && pre->ver.gen > 0))
		return err_set(err, ERR_INVAL, "%s: bad precondition (kind %d, generation %"
			       PRId64 ")", path, (int)pre->kind, pre->ver.gen);
	return 0;
}

/* --- check, list, stat ------------------------------------------------------ */

static int gcs_check(struct be *b, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	struct sb u = { 0 };
	char *url = NULL;
	int rc = -1;

	sb_add(&u, g->api);
	sb_add(&u, "?fields=name");
	url = sb_take(&u, err);
	if (!url)
		goto out;
	if (call(g, "GET", url, NULL, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0) {
		if (err && err->code == ERR_NOTFOUND)
			err_prefix(err, "bucket \"%s\" does not exist", g->bucket);
		else
			err_prefix(err, "bucket \"%s\"", g->bucket);
		goto out;
	}
	rc = 0;
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* Fetch one page of objects.list. delim: use '/' as delimiter. */
static int list_page(struct gcs *g, const char *prefix, int delim, long max,
		     int versions, const char *fields, const char *token,
		     struct gcs_page *pg, struct err *err)
{
	struct http_resp resp = { 0 };
	struct sb u = { 0 };
	char *url = NULL;
	int rc = -1;

	sb_add(&u, g->api);
	sb_add(&u, "/o?prefix=");
	sb_enc(&u, prefix);
	if (delim)
		sb_add(&u, "&delimiter=%2F&includeTrailingDelimiter=true");
	if (versions)
		sb_add(&u, "&versions=true");
	sb_addf(&u, "&maxResults=%ld", max);
	sb_add(&u, "&fields=");
	sb_enc(&u, fields);
	if (token) {
		sb_add(&u, "&pageToken=");
		sb_enc(&u, token);
	}
	url = sb_take(&u, err);
	if (!url)
		goto out;
	if (call(g, "GET", url, NULL, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
		goto out;
	rc = gcs_parse_list_page(resp.body, resp.body_len, pg, err);
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

/* Move page->next_token into *token, refusing a token that repeats. */
static int next_token(struct gcs_page *pg, char **token, const char *what, struct err *err)
{
	if (pg->next_token && *token && strcmp(pg->next_token, *token) == 0)
		return err_set(err, ERR_PARSE, "%s: the server repeated its page token", what);
	free(*token);
	*token = pg->next_token;
	pg->next_token = NULL;
	return 0;
}

/* Where append tails wait to be composed: a hidden directory at the mount's
 * root (its objects live about a second; one left by a crash can be
 * deleted). Listings of the root never show it. */
#define GCS_TMP_DIR ".durafs-tmp"

/* Drop the entry named GCS_TMP_DIR from a finished (sorted) list. */
static void hide_tmp_dir(struct be_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (!strcmp(l->v[i].name, GCS_TMP_DIR)) {
			be_entry_release(&l->v[i]);
			memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(l->v[0]));
			l->n--;
			return;
		}
	}
}

static int gcs_list(struct be *b, const char *dir, struct be_list *out, struct err *err)
{
	struct gcs *g = G(b);
	struct be_list l = { 0 };
	struct gcs_page pg = { 0 };
	char *dp = NULL, *token = NULL;
	size_t page = 0;
	int seen = 0, rc = -1;

	dp = path_name(g, dir, 1, err);
	if (!dp)
		goto out;
	do {
		page++;
		if (list_page(g, dp, 1, g->page_size, 0, LIST_FIELDS, token, &pg, err) < 0 ||
		    gcs_list_add_page(&l, dp, &pg, err) < 0) {
			err_prefix(err, "list \"%s\": page %zu", dir, page);
			goto out;
		}
		if (pg.nitems || pg.nprefixes || pg.bad_prefixes)
			seen = 1;
		if (next_token(&pg, &token, "list", err) < 0)
			goto out;
		gcs_page_release(&pg);
	} while (token);
	if (!seen && *dir) {
		err_set(err, ERR_NOTFOUND, "list \"%s\": no such directory", dir);
		goto out;
	}
	be_list_finish(&l);
	if (!*dir)
		hide_tmp_dir(&l);
	log_debug(TAG, "listed \"%s\": %zu entries in %zu pages", dir, l.n, page);
	be_list_release(out);
	*out = l;
	memset(&l, 0, sizeof(l));
	rc = 0;
out:
	gcs_page_release(&pg);
	be_list_release(&l);
	free(token);
	free(dp);
	return rc;
}

/* Look for anything under the directory prefix dp (with '/'). *kind: 0
 * nothing, 1 only other objects (implicit), 2 the marker exists (*marker
 * filled). With want_child, keep looking for a child other than the marker
 * (*child = 1 when found). */
static int probe_dir(struct gcs *g, const char *dp, int want_child, int *kind,
		     struct gcs_obj *marker, int *child, struct err *err)
{
	struct gcs_page pg = { 0 };
	char *token = NULL;
	size_t i, dlen = strlen(dp);
	int rc = -1;

	*kind = 0;
	if (child)
		*child = 0;
	memset(marker, 0, sizeof(*marker));
	do {
		if (list_page(g, dp, 0, want_child ? 2 : 1, 0, LIST_FIELDS, token, &pg, err) < 0)
			goto out;
		for (i = 0; i < pg.nitems; i++) {
			if (pg.items[i].name_len == dlen &&
			    memcmp(pg.items[i].name, dp, dlen) == 0) {
				*kind = 2;
				gcs_obj_release(marker);
				*marker = pg.items[i];
				memset(&pg.items[i], 0, sizeof(pg.items[i]));
				continue;
			}
			if (*kind == 0)
				*kind = 1;
			if (child)
				*child = 1;
		}
		if (next_token(&pg, &token, "list", err) < 0)
			goto out;
		gcs_page_release(&pg);
		if (*kind && (!want_child || (child && *child)))
			break;
	} while (token);
	rc = 0;
out:
	gcs_page_release(&pg);
	free(token);
	return rc;
}

static int gcs_stat(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj o = { 0 }, marker = { 0 };
	char *dp = NULL, *name = NULL;
	const char *base;
	int kind = 0, rc = -1;

	memset(out, 0, sizeof(*out));
	if (!be_path_valid(path))
		return err_set(err, ERR_INVAL, "\"%s\" is not a valid path", path ? path : "(null)");
	if (!*path) {
		out->name = strdup("");
		out->type = BE_DIR;
		out->implicit = 1;
		return out->name ? 0 : err_set(err, ERR_NOMEM, "out of memory");
	}
	base = be_basename(path);
	dp = path_name(g, path, 1, err);
	name = path_name(g, path, 0, err);
	if (!dp || !name)
		goto out;
	/* A directory wins over a file of the same name (as in listings). */
	if (probe_dir(g, dp, 0, &kind, &marker, NULL, err) < 0) {
		err_prefix(err, "stat \"%s\"", path);
		goto out;
	}
	if (kind == 2) {
		if (gcs_obj_to_entry(&marker, base, strlen(base), out, err) < 0)
			goto out;
		out->type = BE_DIR;
		out->size = 0;
		free(out->symlink_target);
		out->symlink_target = NULL;
		rc = 0;
		goto out;
	}
	if (kind == 1) {
		out->name = strdup(base);
		if (!out->name) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		out->type = BE_DIR;
		out->implicit = 1;
		rc = 0;
		goto out;
	}
	if (get_obj(g, name, 0, &o, err) < 0) {
		if (err->code == ERR_NOTFOUND)
			err_set(err, ERR_NOTFOUND, "stat \"%s\": no such file or directory", path);
		else
			err_prefix(err, "stat \"%s\"", path);
		goto out;
	}
	rc = gcs_obj_to_entry(&o, base, strlen(base), out, err);
out:
	gcs_obj_release(&o);
	gcs_obj_release(&marker);
	free(dp);
	free(name);
	return rc;
}

/* --- read ---------------------------------------------------------------- */

struct rd {
	struct be_rdwin w;
	uint32_t crc;             /* crc32c of [0, crc_pos) */
	uint64_t crc_pos;
	int crc_ok;               /* crc covers a contiguous run from 0 */
};

/* http sink: the crc32c of a run from 0, then the window. */
static int rd_sink(void *ud, const char *data, size_t len)
{
	struct rd *r = ud;

	if (r->crc_ok && r->w.pos == r->crc_pos) {
		r->crc = ck_crc32c(r->crc, data, len);
		r->crc_pos += len;
	}
	return be_rdwin_feed(&r->w, data, len);
}

static int gcs_read(struct be *b, const char *path, const struct be_version *ver,
		    uint64_t off, uint64_t len, be_sink_fn sink, void *ud,
		    uint64_t *got, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	struct http_req req;
	struct rd r;
	struct sb u = { 0 };
	char *base = NULL, *url = NULL, range[80];
	const char *hdrs[2] = { NULL, NULL }, *h;
	uint64_t total = UINT64_MAX, first, last, t, start;
	int has_crc = 0, has_md5 = 0, pieces = 0, rc = -1;
	uint32_t crc = 0;
	unsigned char md5[16];
	size_t i;

	if (got)
		*got = 0;
	memset(&r, 0, sizeof(r));
	r.w.sink = sink;
	r.w.ud = ud;
	r.w.end = (len == UINT64_MAX || off > UINT64_MAX - len) ? UINT64_MAX : off + len;
	r.w.skip_to = off;
	r.crc_ok = off == 0;
	if (len == 0)
		return 0;
	{
		char *name = path_name(g, path, 0, err);

		if (!name)
			goto out;
		sb_add(&u, g->api);
		sb_add(&u, "/o/");
		sb_enc(&u, name);
		free(name);
	}
	sb_add(&u, "?alt=media");
	if (ver && ver->gen > 0)
		sb_addf(&u, "&generation=%" PRId64, ver->gen);
	base = sb_take(&u, err);
	if (!base)
		goto out;
	url = base;
	for (;;) {
		start = r.w.skip_to;
		hdrs[0] = NULL;
		if (start > 0 || r.w.end != UINT64_MAX) {
			if (r.w.end == UINT64_MAX)
				snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-", start);
			else
				snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64,
					 start, r.w.end - 1);
			hdrs[0] = range;
		}
		/* A 206 starts at `start`, a 200 at 0 (see the 200 check below). */
		r.w.pos = start;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.url = url;
		req.headers = hdrs[0] ? hdrs : NULL;
		req.body_fd = -1;
		req.retry = HTTP_RETRY_SAFE;
		req.sink = rd_sink;
		req.sink_ud = &r;
		http_resp_release(&resp);
		if (http_do(g->http, &req, &resp, err) == 0)
			break;
		if (r.w.enough) {
			/* Stopped by us with everything asked for delivered. */
			err_clear(err);
			rc = 0;
			goto out;
		}
		if (r.w.user_abort) {
			err_set(err, ERR_CANCELED, "read \"%s\": stopped by the caller", path);
			goto out;
		}
		if (resp.status == 416) {
			/* At or past the end. */
			err_clear(err);
			rc = 0;
			goto out;
		}
		if (err && (err->code == ERR_NET || err->code == ERR_TIMEOUT) &&
		    resp.sink_bytes > 0 && ++pieces <= 100000) {
			log_debug(TAG, "read \"%s\": transfer cut after %" PRIu64 " bytes; "
				  "continuing at %" PRIu64, path, resp.sink_bytes, r.w.skip_to);
			continue;
		}
		err_prefix(err, "read \"%s\"", path);
		goto out;
	}
	if (resp.status == 206) {
		h = http_resp_header(&resp, "Content-Range", 0);
		if (be_content_range_parse(h, &first, &last, &t) < 0 || first != start) {
			err_set(err, ERR_PARSE, "read \"%s\": bad Content-Range \"%s\"", path,
				h ? h : "(none)");
			goto out;
		}
		total = t;
	} else if (resp.status == 200) {
		if (start > 0) {
			err_set(err, ERR_PARSE, "read \"%s\": the server ignored the Range "
				"header (the bytes delivered are not valid)", path);
			goto out;
		}
		total = r.w.pos;
	} else {
		err_set(err, ERR_PARSE, "read \"%s\": unexpected HTTP status %ld", path,
			resp.status);
		goto out;
	}
	/* Whole object received from offset 0: verify it. */
	if (r.crc_ok && total != UINT64_MAX && r.crc_pos == total) {
		for (i = 0; (h = http_resp_header(&resp, "x-goog-hash", i)); i++) {
			if (gcs_parse_goog_hash(h, &has_crc, &crc, &has_md5, md5) < 0) {
				err_set(err, ERR_PARSE, "read \"%s\": malformed x-goog-hash \"%s\"",
					path, h);
				goto out;
			}
		}
		if (has_crc && crc != r.crc) {
			err_set(err, ERR_PARSE, "read \"%s\": checksum mismatch (crc32c "
				"%08x received, %08x expected)", path, r.crc, crc);
			goto out;
		}
	}
	rc = 0;
out:
	if (got)
		*got = r.w.delivered;
	http_resp_release(&resp);
	free(base);
	return rc;
}

/* --- uploads --------------------------------------------------------------- */

/* The JSON metadata of an upload. */
static char *upload_meta_json(const char *name, const struct be_meta *m,
			      const char *symlink_target, struct err *err)
{
	json_t *j = NULL, *md = NULL;
	char crc[9], md5[25], mt[32];
	char *s = NULL;

	ck_crc32c_b64(m->crc32c, crc);
	ck_md5_b64(m->md5, md5);
	snprintf(mt, sizeof(mt), "%lld", (long long)m->mtime.tv_sec);
	md = json_object();
	j = json_object();
	if (!md || !j)
		goto nomem;
	if (json_object_set_new(md, GCS_META_MTIME, json_string(mt)) < 0)
		goto nomem;
	if (symlink_target &&
	    json_object_set_new(md, GCS_META_SYMLINK, json_string(symlink_target)) < 0) {
		err_set(err, ERR_INVAL, "symlink target is not valid UTF-8");
		goto out;
	}
	if (json_object_set_new(j, "name", json_string(name)) < 0) {
		err_set(err, ERR_INVAL, "object name \"%s\" is not valid UTF-8", name);
		goto out;
	}
	if (json_object_set_new(j, "contentType", json_string(m->content_type ?
				m->content_type : "application/octet-stream")) < 0 ||
	    json_object_set(j, "metadata", md) < 0)
		goto nomem;
	/* Sums not known yet: the final request carries them (x-goog-hash). */
	if ((!(m->flags & BE_META_SUMS_LATE) || (m->flags & BE_META_SUMS_READY)) &&
	    (json_object_set_new(j, "crc32c", json_string(crc)) < 0 ||
	     json_object_set_new(j, "md5Hash", json_string(md5)) < 0))
		goto nomem;
	s = jsonh_dumps(j, err);
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	json_decref(md);
	json_decref(j);
	return s;
}

/* Check a committed object against what we meant to upload. */
static int verify_committed(const struct gcs_obj *o, const struct be_meta *m,
			    const char *path, struct err *err)
{
	if (o->size != m->size)
		return err_set(err, ERR_PARSE, "upload \"%s\": committed size %" PRIu64
			       " differs from %" PRIu64, path, o->size, m->size);
	if ((m->flags & BE_META_SUMS_LATE) && !(m->flags & BE_META_SUMS_READY))
		return 0;   /* sums not known yet: the caller checks them */
	if (o->has_crc32c && o->crc32c != m->crc32c)
		return err_set(err, ERR_PARSE, "upload \"%s\": committed crc32c differs "
			       "(checksum mismatch)", path);
	if (o->has_md5 && memcmp(o->md5, m->md5, 16) != 0)
		return err_set(err, ERR_PARSE, "upload \"%s\": committed md5 differs "
			       "(checksum mismatch)", path);
	return 0;
}

/* POST one multipart upload of objname (data: m->size bytes) guarded by
 * ifGenerationMatch=gen; *res = the committed object. A 412 comes back as
 * ERR_CONFLICT for the caller to resolve. */
static int post_multipart(struct gcs *g, const char *objname, const char *data,
			  const struct be_meta *m, const char *symlink_target, int64_t gen,
			  struct gcs_obj *res, struct err *err)
{
	struct http_resp resp = { 0 };
	struct sb body = { 0 }, u = { 0 };
	unsigned char rnd[12];
	char boundary[64], ctype[128], *bodys = NULL, *url = NULL, *js = NULL;
	const char *hdrs[2];
	size_t blen;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	js = upload_meta_json(objname, m, symlink_target, err);
	if (!js)
		goto out;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		err_set(err, ERR_IO, "no randomness for a multipart boundary");
		goto out;
	}
	memcpy(boundary, "durafs_", 7);
	enc_hex(rnd, sizeof(rnd), boundary + 7);
	sb_addf(&body, "--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n", boundary);
	sb_add(&body, js);
	sb_addf(&body, "\r\n--%s\r\nContent-Type: ", boundary);
	sb_add(&body, m->content_type ? m->content_type : "application/octet-stream");
	sb_add(&body, "\r\n\r\n");
	sb_addn(&body, data, (size_t)m->size);
	sb_addf(&body, "\r\n--%s--\r\n", boundary);
	blen = body.n;
	bodys = sb_take(&body, err);
	if (!bodys)
		goto out;
	sb_add(&u, g->upl);
	sb_addf(&u, "/o?uploadType=multipart&ifGenerationMatch=%" PRId64, gen);
	sb_add(&u, "&fields=");
	sb_enc(&u, OBJ_FIELDS);
	url = sb_take(&u, err);
	if (!url)
		goto out;
	snprintf(ctype, sizeof(ctype), "Content-Type: multipart/related; boundary=%s", boundary);
	hdrs[0] = ctype;
	hdrs[1] = NULL;
	if (call(g, "POST", url, hdrs, bodys, blen, HTTP_RETRY_SAFE, &resp, err) < 0)
		goto out;
	rc = gcs_parse_object(resp.body, resp.body_len, res, err);
out:
	http_resp_release(&resp);
	free(bodys);
	free(url);
	free(js);
	return rc;
}

/* One multipart upload of path, guarded by pre, conflicts resolved. */
static int put_mem(struct gcs *g, const char *path, const char *data, const struct be_meta *m,
		   const char *symlink_target, const struct be_pre *pre,
		   struct be_entry *out, struct err *err)
{
	struct gcs_obj o = { 0 };
	char *name = NULL;
	const char *base = be_basename(path);
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (check_pre(pre, path, err) < 0)
		goto out;
	if (!*path) {
		err_set(err, ERR_INVAL, "cannot write the root");
		goto out;
	}
	name = path_name(g, path, 0, err);
	if (!name)
		goto out;
	if (post_multipart(g, name, data, m, symlink_target, pre_gen(pre), &o, err) < 0) {
		if (err && err->code == ERR_CONFLICT) {
			rc = resolve_conflict(g, name, path, m->size, m->crc32c, m->md5, out, err);
			goto out;
		}
		err_prefix(err, "upload \"%s\"", path);
		goto out;
	}
	if (verify_committed(&o, m, path, err) < 0)
		goto out;
	if (out && gcs_obj_to_entry(&o, base, strlen(base), out, err) < 0)
		goto out;
	rc = 0;
out:
	gcs_obj_release(&o);
	free(name);
	return rc;
}

static int gcs_put(struct be *b, const char *path, int fd, const struct be_meta *meta,
		   const struct be_pre *pre, struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	char *data = NULL;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (be_load_for_put(fd, meta, (uint64_t)1 << 31, 0, path, &data, err) < 0)
		goto out;
	rc = put_mem(g, path, data, meta, NULL, pre, out, err);
out:
	free(data);
	return rc;
}

static int gcs_symlink(struct be *b, const char *path, const char *target,
		       const struct timespec *mtime, const struct be_pre *pre,
		       struct be_entry *out, struct err *err)
{
	struct be_meta m;

	if (be_symlink_meta(path, target, mtime, "text/plain; charset=utf-8", &m, err) < 0)
		return -1;
	return put_mem(G(b), path, target, &m, target, pre, out, err);
}

static int gcs_upload_begin(struct be *b, const char *path, const struct be_meta *meta,
			    const struct be_pre *pre, struct be_upload *up, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	struct sb u = { 0 };
	char *name = NULL, *js = NULL, *url = NULL, xct[160], xlen[64];
	const char *hdrs[4], *loc;
	uint64_t chunk = up->chunk_size ? up->chunk_size : g->chunk;
	int rc = -1;

	if (!be_chunk_size_valid(chunk)) {
		err_set(err, ERR_INVAL, "upload \"%s\": chunk size %" PRIu64 " is not a "
			"multiple of 256 KiB", path, chunk);
		goto out;
	}
	if (check_pre(pre, path, err) < 0)
		goto out;
	if (strlen(path) >= sizeof(up->path) || !*path) {
		err_set(err, ERR_INVAL, "upload: bad path \"%s\"", path);
		goto out;
	}
	memset(up, 0, sizeof(*up));
	name = path_name(g, path, 0, err);
	if (!name)
		goto out;
	js = upload_meta_json(name, meta, NULL, err);
	if (!js)
		goto out;
	sb_add(&u, g->upl);
	sb_addf(&u, "/o?uploadType=resumable&ifGenerationMatch=%" PRId64, pre_gen(pre));
	sb_add(&u, "&fields=");
	sb_enc(&u, OBJ_FIELDS);
	url = sb_take(&u, err);
	if (!url)
		goto out;
	snprintf(xct, sizeof(xct), "X-Upload-Content-Type: %s",
		 meta->content_type ? meta->content_type : "application/octet-stream");
	snprintf(xlen, sizeof(xlen), "X-Upload-Content-Length: %" PRIu64, meta->size);
	hdrs[0] = "Content-Type: application/json; charset=UTF-8";
	hdrs[1] = xct;
	/* A size not known yet is not announced: the final chunk gives it. */
	hdrs[2] = (meta->flags & BE_META_SIZE_UNKNOWN) ? NULL : xlen;
	hdrs[3] = NULL;
	if (call(g, "POST", url, hdrs, js, strlen(js), HTTP_RETRY_SAFE, &resp, err) < 0) {
		if (err && err->code == ERR_CONFLICT) {
			struct be_entry cur;

			memset(&cur, 0, sizeof(cur));
			rc = resolve_conflict(g, name, path, meta->size, meta->crc32c, meta->md5,
					      &cur, err);
			be_entry_release(&cur);
			if (rc == 0) {
				/* Already committed by an earlier attempt. */
				be_upload_started(up, path, meta, chunk, 1);
			}
			goto out;
		}
		err_prefix(err, "upload \"%s\": starting a session", path);
		goto out;
	}
	loc = http_resp_header(&resp, "Location", 0);
	if (!loc || !*loc) {
		err_set(err, ERR_PARSE, "upload \"%s\": no Location in the session reply", path);
		goto out;
	}
	if (loc[0] == '/') {
		if (snprintf(up->session, sizeof(up->session), "%s%s", g->ep, loc) >=
		    (int)sizeof(up->session)) {
			err_set(err, ERR_PARSE, "upload \"%s\": session URI too long", path);
			goto out;
		}
	} else if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0) {
		if (strlen(loc) >= sizeof(up->session)) {
			err_set(err, ERR_PARSE, "upload \"%s\": session URI too long", path);
			goto out;
		}
		memcpy(up->session, loc, strlen(loc) + 1);
	} else {
		err_set(err, ERR_PARSE, "upload \"%s\": session URI is not a URL", path);
		goto out;
	}
	be_upload_started(up, path, meta, chunk, 0);
	rc = 0;
out:
	if (rc < 0)
		up->session[0] = '\0';
	http_resp_release(&resp);
	free(name);
	free(js);
	free(url);
	return rc;
}

/* The reply completing an upload (200/201): parse, verify, finish *up. */
static int upload_completed(struct gcs *g, struct be_upload *up, const struct http_resp *resp,
			    struct be_entry *out, struct err *err)
{
	struct gcs_obj o = { 0 };
	const char *base = be_basename(up->path);
	int rc = -1;

	(void)g;
	if (gcs_parse_object(resp->body, resp->body_len, &o, err) < 0) {
		err_prefix(err, "upload \"%s\": completing", up->path);
		goto out;
	}
	if (verify_committed(&o, &up->meta, up->path, err) < 0)
		goto out;
	if (out && gcs_obj_to_entry(&o, base, strlen(base), out, err) < 0)
		goto out;
	up->persisted = up->meta.size;
	up->done = 1;
	rc = 1;
out:
	gcs_obj_release(&o);
	return rc;
}

/* Interpret a failed session call. Returns -1 with *err final, or 1 when
 * the failure was a 412 that turns out to be our own commit (*out set). */
static int session_failed(struct gcs *g, struct be_upload *up, struct be_entry *out,
			  struct err *err)
{
	char *name;
	int rc;

	if (err && (err->code == ERR_GONE || err->code == ERR_NOTFOUND ||
		    err->http_status == 404 || err->http_status == 410)) {
		long st = err->http_status;

		err_set(err, ERR_GONE, "upload \"%s\": the session expired or was cancelled "
			"(HTTP %ld); start over", up->path, st);
		err->http_status = st;
		return -1;
	}
	if (err && err->code == ERR_CONFLICT) {
		name = path_name(g, up->path, 0, err);
		if (!name)
			return -1;
		rc = resolve_conflict(g, name, up->path, up->meta.size, up->meta.crc32c,
				      up->meta.md5, out, err);
		free(name);
		if (rc == 0) {
			up->persisted = up->meta.size;
			up->done = 1;
			return 1;
		}
		return -1;
	}
	err_prefix(err, "upload \"%s\"", up->path);
	return -1;
}

static int gcs_upload_query(struct be *b, struct be_upload *up, struct be_entry *out,
			    struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	char cr[96];
	const char *hdrs[2] = { cr, NULL };
	uint64_t p;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!up->session[0])
		return err_set(err, ERR_INVAL, "upload \"%s\": no session", up->path);
	/* Never "*\/N" for a size not known yet: N equal to what persisted
	 * would commit. */
	be_content_range_header(cr, sizeof(cr), 0, 0, up->meta.flags & BE_META_SIZE_UNKNOWN ?
				UINT64_MAX : up->meta.size);
	if (call(g, "PUT", up->session, hdrs, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0) {
		rc = session_failed(g, up, out, err);
		goto out;
	}
	if (resp.status == 200 || resp.status == 201) {
		rc = upload_completed(g, up, &resp, out, err);
		goto out;
	}
	if (resp.status != 308) {
		err_set(err, ERR_PARSE, "upload \"%s\": status query answered HTTP %ld",
			up->path, resp.status);
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

/* upload_chunk with the upload's byte 0 at fd offset base_off (0 for a
 * whole file; an append's tail starts further in). */
static int upload_chunk_at(struct be *b, struct be_upload *up, int fd, uint64_t base_off,
			   struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	struct http_req req;
	char cr[128], hash[96], crc[9], md5[25];
	const char *hdrs[3] = { cr, NULL, NULL };
	uint64_t len, p, before;
	int last, fails = 0, q, rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (up->done) {
		char *name = path_name(g, up->path, 0, err);

		if (!name)
			return -1;
		current_entry(g, name, up->path, out);
		free(name);
		return 1;
	}
	if (up->chunk_size == 0)
		up->chunk_size = g->chunk;  /* a state restored without it */
	if (!up->session[0] || !be_chunk_size_valid(up->chunk_size))
		return err_set(err, ERR_INVAL, "upload \"%s\": no session or bad chunk size",
			       up->path);
	for (;;) {
		before = up->persisted;
		len = be_chunk_next(up->meta.size, up->persisted, up->chunk_size, &last);
		if (up->meta.flags & BE_META_SIZE_UNKNOWN) {
			/* Streaming: full chunks of an open-ended upload only. */
			if (last || len == 0) {
				err_set(err, ERR_INVAL, "upload \"%s\": no full chunk to send "
					"while the size is unknown", up->path);
				goto out;
			}
			be_content_range_header(cr, sizeof(cr), up->persisted, len, UINT64_MAX);
		} else {
			be_content_range_header(cr, sizeof(cr), up->persisted, len, up->meta.size);
		}
		hdrs[1] = NULL;
		if (last && (up->meta.flags & BE_META_SUMS_LATE)) {
			/* The final request carries the sums the session began
			 * without; the server checks the whole object. */
			if (!(up->meta.flags & BE_META_SUMS_READY)) {
				err_set(err, ERR_INVAL, "upload \"%s\": final chunk without "
					"checksums", up->path);
				goto out;
			}
			ck_crc32c_b64(up->meta.crc32c, crc);
			ck_md5_b64(up->meta.md5, md5);
			snprintf(hash, sizeof(hash), "X-Goog-Hash: crc32c=%s,md5=%s", crc, md5);
			hdrs[1] = hash;
		}
		memset(&req, 0, sizeof(req));
		req.method = "PUT";
		req.url = up->session;
		req.headers = hdrs;
		req.body_fd = len ? fd : -1;
		req.body_off = (off_t)(base_off + up->persisted);
		req.body_len = (size_t)len;
		/* Never blindly re-sent: after a failure we ask what persisted. */
		req.retry = HTTP_RETRY_NONE;
		http_resp_release(&resp);
		if (http_do(g->http, &req, &resp, err) == 0) {
			if (resp.status == 200 || resp.status == 201) {
				rc = upload_completed(g, up, &resp, out, err);
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
			if (p > before) {
				if (p < before + len)
					log_debug(TAG, "upload \"%s\": server persisted %" PRIu64
						  " of %" PRIu64 " bytes sent", up->path,
						  p - before, len);
				rc = 0;
				goto out;
			}
			err_set(err, ERR_HTTP, "upload \"%s\": the server persisted nothing "
				"of a chunk", up->path);
		} else if (!gcs_err_transient(err)) {
			rc = session_failed(g, up, out, err);
			goto out;
		}
		/* Recover: ask the server what it persisted (never resend
		 * blindly), until it answers or we give up. */
		for (;;) {
			if (++fails > g->max_fail) {
				err_prefix(err, "upload \"%s\": giving up after %d failures",
					   up->path, fails - 1);
				goto out;
			}
			log_debug(TAG, "upload \"%s\": chunk at %" PRIu64 " failed (%s); "
				  "asking the server what it persisted", up->path, before,
				  err ? err->msg : "");
			be_backoff(g->http, g->retry_base_ms, fails - 1);
			q = gcs_upload_query(b, up, out, err);
			if (q == 1) {
				rc = 1;
				goto out;
			}
			if (q == 0)
				break;
			if (!gcs_err_transient(err))
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

static int gcs_upload_chunk(struct be *b, struct be_upload *up, int fd,
			    struct be_entry *out, struct err *err)
{
	return upload_chunk_at(b, up, fd, 0, out, err);
}

static int gcs_upload_cancel(struct be *b, struct be_upload *up, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	int rc = 0;

	if (!up->session[0] || up->done)
		return 0;
	if (call(g, "DELETE", up->session, NULL, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0) {
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

/* --- directories ----------------------------------------------------------- */

static int gcs_mkdir(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj o = { 0 };
	struct be_meta m;
	struct err tmp;
	char *name = NULL, *dp = NULL;
	const char *base = be_basename(path);
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!*path)
		return err_set(err, ERR_EXISTS, "mkdir: the root exists");
	name = path_name(g, path, 0, err);
	dp = name ? path_name(g, path, 1, err) : NULL;
	if (!dp)
		goto out;
	err_clear(&tmp);
	if (get_obj(g, name, 0, &o, &tmp) == 0) {
		err_set(err, ERR_EXISTS, "mkdir \"%s\": a file exists with that name", path);
		goto out;
	}
	if (tmp.code != ERR_NOTFOUND) {
		if (err)
			*err = tmp;
		err_prefix(err, "mkdir \"%s\"", path);
		goto out;
	}
	memset(&m, 0, sizeof(m));
	ck_md5("", 0, m.md5);
	clock_gettime(CLOCK_REALTIME, &m.mtime);
	m.content_type = "application/x-directory";
	if (post_multipart(g, dp, "", &m, NULL, 0, &o, err) < 0) {
		if (!err || err->code != ERR_CONFLICT) {
			err_prefix(err, "mkdir \"%s\"", path);
			goto out;
		}
		/* A marker exists already: the directory is there. */
		err_clear(err);
		if (get_obj(g, dp, 0, &o, err) < 0) {
			err_prefix(err, "mkdir \"%s\"", path);
			goto out;
		}
	}
	if (out) {
		if (gcs_obj_to_entry(&o, base, strlen(base), out, err) < 0)
			goto out;
		out->type = BE_DIR;
		out->size = 0;
		free(out->symlink_target);
		out->symlink_target = NULL;
	}
	rc = 0;
out:
	gcs_obj_release(&o);
	free(name);
	free(dp);
	return rc;
}

/* DELETE one object generation, guarded (ifGenerationMatch) or targeted
 * (generation=). */
static int delete_obj(struct gcs *g, const char *name, int64_t gen, int targeted,
		      struct err *err)
{
	struct http_resp resp = { 0 };
	struct sb u = { 0 };
	char *url = NULL;
	int rc = -1;

	sb_add(&u, g->api);
	sb_add(&u, "/o/");
	sb_enc(&u, name);
	sb_addf(&u, targeted ? "?generation=%" PRId64 : "?ifGenerationMatch=%" PRId64, gen);
	url = sb_take(&u, err);
	if (!url)
		goto out;
	rc = call(g, "DELETE", url, NULL, NULL, 0, HTTP_RETRY_SAFE, &resp, err);
out:
	http_resp_release(&resp);
	free(url);
	return rc;
}

static int gcs_rmdir(struct be *b, const char *path, struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj marker = { 0 };
	char *dp = NULL;
	int kind = 0, child = 0, rc = -1;

	if (!*path)
		return err_set(err, ERR_INVAL, "rmdir: cannot remove the root");
	dp = path_name(g, path, 1, err);
	if (!dp)
		goto out;
	if (probe_dir(g, dp, 1, &kind, &marker, &child, err) < 0) {
		err_prefix(err, "rmdir \"%s\"", path);
		goto out;
	}
	if (child) {
		err_set(err, ERR_NOTEMPTY, "rmdir \"%s\": directory not empty", path);
		goto out;
	}
	if (kind != 2) {
		err_set(err, ERR_NOTFOUND, "rmdir \"%s\": no such directory", path);
		goto out;
	}
	if (delete_obj(g, dp, marker.generation, 0, err) < 0) {
		if (err && err->code == ERR_CONFLICT)
			err_set(err, ERR_CONFLICT, "rmdir \"%s\": the directory marker changed "
				"meanwhile", path);
		else
			err_prefix(err, "rmdir \"%s\"", path);
		goto out;
	}
	rc = 0;
out:
	gcs_obj_release(&marker);
	free(dp);
	return rc;
}

/* --- rename, delete ------------------------------------------------------ */

/* Copy object src@sgen to dst guarded by dgen (0 = absent) with the
 * rewriteToken loop. On success *res = the new object. A 412 is returned
 * as ERR_CONFLICT for the caller to resolve. */
static int rewrite_obj(struct gcs *g, const char *src, int64_t sgen, const char *dst,
		       int64_t dgen, struct gcs_obj *res, struct err *err)
{
	struct http_resp resp = { 0 };
	json_t *j = NULL, *resource = NULL;
	struct sb u = { 0 };
	char *url = NULL, *token = NULL;
	const char *tok = NULL;
	int done = 0, rounds = 0, rc = -1;

	memset(res, 0, sizeof(*res));
	while (!done) {
		if (++rounds > 100000) {
			err_set(err, ERR_PARSE, "rewrite: the server never finished");
			goto out;
		}
		sb_add(&u, g->api);
		sb_add(&u, "/o/");
		sb_enc(&u, src);
		sb_add(&u, "/rewriteTo/b/");
		sb_enc(&u, g->bucket);
		sb_add(&u, "/o/");
		sb_enc(&u, dst);
		sb_addf(&u, "?ifGenerationMatch=%" PRId64 "&ifSourceGenerationMatch=%" PRId64,
			dgen, sgen);
		if (g->rewrite_max > 0)
			sb_addf(&u, "&maxBytesRewrittenPerCall=%ld", g->rewrite_max);
		if (token) {
			sb_add(&u, "&rewriteToken=");
			sb_enc(&u, token);
		}
		free(url);
		url = sb_take(&u, err);
		if (!url)
			goto out;
		http_resp_release(&resp);
		if (call(g, "POST", url, NULL, NULL, 0, HTTP_RETRY_SAFE, &resp, err) < 0)
			goto out;
		json_decref(j);
		j = NULL;
		if (jsonh_parse_object(resp.body, resp.body_len, "GCS rewrite", &j, err) < 0 ||
		    jsonh_get_bool(j, "done", &done, err) < 0 ||
		    jsonh_opt_str(j, "rewriteToken", &tok, err) < 0)
			goto out;
		if (!done) {
			if (!tok || !*tok) {
				err_set(err, ERR_PARSE, "rewrite: not done and no rewriteToken");
				goto out;
			}
			free(token);
			token = strdup(tok);
			if (!token) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
		}
	}
	if (jsonh_get_object(j, "resource", &resource, err) < 0 ||
	    gcs_obj_from_json(resource, res, err) < 0)
		goto out;
	rc = 0;
out:
	json_decref(j);
	http_resp_release(&resp);
	free(url);
	free(token);
	return rc;
}

/* Move object src (must be generation sgen) to dst (guard dgen; 0 =
 * absent). Recognises a copy left by an interrupted earlier move (dst holds
 * the same content) and finishes it. On ERR_CONFLICT, *cur (may be NULL)
 * = the side that changed, named cur_path's basename. */
static int move_obj(struct gcs *g, const char *src, int64_t sgen, const char *dst,
		    int64_t dgen, const char *src_path, const char *dst_path,
		    struct gcs_obj *res, struct be_entry *cur, struct err *err)
{
	struct gcs_obj so = { 0 }, dob = { 0 };
	struct err tmp;
	const char *b;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (rewrite_obj(g, src, sgen, dst, dgen, res, err) < 0) {
		if (err && err->code == ERR_NOTFOUND) {
			err_set(err, ERR_NOTFOUND, "rename \"%s\": source not found", src_path);
			goto out;
		}
		if (!err || err->code != ERR_CONFLICT) {
			err_prefix(err, "rename \"%s\" to \"%s\"", src_path, dst_path);
			goto out;
		}
		err_clear(&tmp);
		if (get_obj(g, src, 0, &so, &tmp) < 0) {
			if (tmp.code == ERR_NOTFOUND) {
				err_set(err, ERR_NOTFOUND, "rename \"%s\": source not found",
					src_path);
			} else {
				*err = tmp;
				err_prefix(err, "rename \"%s\"", src_path);
			}
			goto out;
		}
		if (so.generation != sgen) {
			err_set(err, ERR_CONFLICT, "rename \"%s\": source changed remotely (now "
				"generation %" PRId64 ")", src_path, so.generation);
			err->http_status = 412;
			if (cur) {
				b = be_basename(src_path);
				gcs_obj_to_entry(&so, b, strlen(b), cur, &tmp);
			}
			goto out;
		}
		if (get_obj(g, dst, 0, &dob, &tmp) < 0 || !same_obj_content(&so, &dob)) {
			err_set(err, ERR_CONFLICT, "rename \"%s\": destination \"%s\" changed "
				"remotely", src_path, dst_path);
			err->http_status = 412;
			if (cur && dob.name) {
				b = be_basename(dst_path);
				gcs_obj_to_entry(&dob, b, strlen(b), cur, &tmp);
			}
			goto out;
		}
		/* Our earlier copy: go on with the delete. */
		*res = dob;
		memset(&dob, 0, sizeof(dob));
	}
	err_clear(&tmp);
	if (delete_obj(g, src, sgen, 0, &tmp) < 0 && tmp.code != ERR_NOTFOUND) {
		if (tmp.code == ERR_CONFLICT) {
			err_set(err, ERR_CONFLICT, "rename \"%s\": copied, but the source changed "
				"remotely and was kept", src_path);
			err->http_status = 412;
			if (cur) {
				memset(cur, 0, sizeof(*cur));
				err_clear(&tmp);
				if (get_obj(g, src, 0, &so, &tmp) == 0) {
					b = be_basename(src_path);
					gcs_obj_to_entry(&so, b, strlen(b), cur, &tmp);
				}
			}
		} else {
			*err = tmp;
			err_prefix(err, "rename \"%s\": deleting the source", src_path);
		}
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		gcs_obj_release(res);
	gcs_obj_release(&so);
	gcs_obj_release(&dob);
	return rc;
}

static int gcs_rename(struct be *b, const char *from, const struct be_version *from_ver,
		      const char *to, const struct be_pre *to_pre, struct be_entry *out,
		      struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj res = { 0 };
	char *src = NULL, *dst = NULL;
	const char *base;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!from_ver || from_ver->gen <= 0) {
		err_set(err, ERR_INVAL, "rename \"%s\": the source generation is required", from);
		goto out;
	}
	if (check_pre(to_pre, to, err) < 0)
		goto out;
	if (!*from || !*to) {
		err_set(err, ERR_INVAL, "rename: cannot rename the root");
		goto out;
	}
	if (strcmp(from, to) == 0) {
		/* POSIX: renaming a file onto itself does nothing; the copy-then-
		 * delete below would delete it. */
		err_set(err, ERR_INVAL, "rename \"%s\" onto itself", from);
		goto out;
	}
	src = path_name(g, from, 0, err);
	dst = src ? path_name(g, to, 0, err) : NULL;
	if (!dst)
		goto out;
	if (move_obj(g, src, from_ver->gen, dst, pre_gen(to_pre), from, to, &res, out, err) < 0)
		goto out;
	base = be_basename(to);
	if (out && gcs_obj_to_entry(&res, base, strlen(base), out, err) < 0)
		goto out;
	rc = 0;
out:
	gcs_obj_release(&res);
	free(src);
	free(dst);
	return rc;
}

/* Every object under prefix p (no delimiter), all pages; versions: include
 * noncurrent generations. */
static int walk(struct gcs *g, const char *p, int versions, struct gcs_obj **out,
		size_t *nout, struct err *err)
{
	struct gcs_page pg = { 0 };
	struct gcs_obj *v = NULL, *nv;
	size_t n = 0, cap = 0, i;
	char *token = NULL;
	int rc = -1;

	do {
		if (list_page(g, p, 0, g->page_size, versions, WALK_FIELDS, token, &pg, err) < 0)
			goto out;
		if (n + pg.nitems > cap) {
			cap = (n + pg.nitems) * 2 + 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
			v = nv;
		}
		for (i = 0; i < pg.nitems; i++) {
			v[n++] = pg.items[i];
			memset(&pg.items[i], 0, sizeof(pg.items[i]));
		}
		if (next_token(&pg, &token, "list", err) < 0)
			goto out;
		gcs_page_release(&pg);
	} while (token);
	*out = v;
	*nout = n;
	v = NULL;
	n = 0;
	rc = 0;
out:
	for (i = 0; i < n; i++)
		gcs_obj_release(&v[i]);
	free(v);
	gcs_page_release(&pg);
	free(token);
	return rc;
}

static int gcs_rename_dir(struct be *b, const char *from, const char *to,
			  be_progress_fn progress, void *ud, struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj *objs = NULL, res = { 0 };
	struct be_entry st;
	struct err tmp;
	struct sb nb = { 0 };
	char *sp = NULL, *dp = NULL, *dname = NULL;
	size_t n = 0, i, splen, marker = SIZE_MAX;
	uint64_t items = 0, bytes = 0;
	int pass, rc = -1;

	memset(&st, 0, sizeof(st));
	if (!*from || !*to) {
		err_set(err, ERR_INVAL, "rename: cannot rename the root");
		goto out;
	}
	if (strcmp(from, to) == 0) {
		rc = 0;  /* POSIX: renaming a directory onto itself does nothing */
		goto out;
	}
	if (strncmp(to, from, strlen(from)) == 0 && to[strlen(from)] == '/') {
		err_set(err, ERR_INVAL, "rename \"%s\" into its own subdirectory", from);
		goto out;
	}
	sp = path_name(g, from, 1, err);
	dp = sp ? path_name(g, to, 1, err) : NULL;
	if (!dp)
		goto out;
	splen = strlen(sp);
	if (walk(g, sp, 0, &objs, &n, err) < 0) {
		err_prefix(err, "rename \"%s\"", from);
		goto out;
	}
	if (n == 0) {
		err_clear(&tmp);
		if (gcs_stat(b, to, &st, &tmp) == 0 && st.type == BE_DIR) {
			rc = 0;  /* finished by an earlier run */
			goto out;
		}
		err_set(err, ERR_NOTFOUND, "rename \"%s\": no such directory", from);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (objs[i].name_len == splen)
			marker = i;
	/* Pass 0: the marker is copied first so `to` is a directory at once;
	 * pass 1: everything else is moved; pass 2: the old marker goes. */
	for (pass = 0; pass < 3; pass++) {
		for (i = 0; i < n; i++) {
			if ((pass != 1) != (i == marker))
				continue;
			sb_add(&nb, dp);
			sb_addn(&nb, objs[i].name + splen, objs[i].name_len - splen);
			free(dname);
			dname = sb_take(&nb, err);
			if (!dname)
				goto out;
			if (pass == 0) {
				gcs_obj_release(&res);
				if (rewrite_obj(g, objs[i].name, objs[i].generation, dname, 0,
						&res, err) < 0 &&
				    !(err && err->code == ERR_CONFLICT)) {
					err_prefix(err, "rename \"%s\": marker", from);
					goto out;
				}
				err_clear(err);
				continue;
			}
			if (pass == 2) {
				err_clear(&tmp);
				if (delete_obj(g, objs[i].name, objs[i].generation, 0, &tmp) < 0 &&
				    tmp.code != ERR_NOTFOUND) {
					if (err)
						*err = tmp;
					err_prefix(err, "rename \"%s\": removing the old marker", from);
					goto out;
				}
				continue;
			}
			gcs_obj_release(&res);
			if (move_obj(g, objs[i].name, objs[i].generation, dname, 0,
				     objs[i].name, dname, &res, NULL, err) < 0) {
				err_prefix(err, "rename \"%s\"", from);
				goto out;
			}
			items++;
			bytes += objs[i].size;
			if (progress && progress(ud, items, bytes) != 0) {
				err_set(err, ERR_CANCELED, "rename \"%s\": stopped by the caller "
					"(run it again to finish)", from);
				goto out;
			}
		}
	}
	rc = 0;
out:
	for (i = 0; i < n; i++)
		gcs_obj_release(&objs[i]);
	free(objs);
	gcs_obj_release(&res);
	be_entry_release(&st);
	free(sb_take(&nb, NULL));
	free(sp);
	free(dp);
	free(dname);
	return rc;
}

static int gcs_remove(struct be *b, const char *path, const struct be_version *ver,
		      struct be_entry *cur, struct err *err)
{
	struct gcs *g = G(b);
	char *name = NULL;
	int rc = -1;

	if (cur)
		memset(cur, 0, sizeof(*cur));
	if (!ver || ver->gen <= 0) {
		err_set(err, ERR_INVAL, "delete \"%s\": the generation is required", path);
		goto out;
	}
	if (!*path) {
		err_set(err, ERR_INVAL, "delete: cannot delete the root");
		goto out;
	}
	name = path_name(g, path, 0, err);
	if (!name)
		goto out;
	if (delete_obj(g, name, ver->gen, 0, err) < 0) {
		if (err && err->code == ERR_CONFLICT) {
			current_entry(g, name, path, cur);
			err_set(err, ERR_CONFLICT, "delete \"%s\": changed remotely (generation "
				"%" PRId64 " is no longer current)", path, ver->gen);
			err->http_status = 412;
		} else if (err && err->code == ERR_NOTFOUND) {
			err_set(err, ERR_NOTFOUND, "delete \"%s\": already gone", path);
		} else {
			err_prefix(err, "delete \"%s\"", path);
		}
		goto out;
	}
	rc = 0;
out:
	free(name);
	return rc;
}

static int gcs_purge(struct be *b, const char *dir, be_progress_fn progress, void *ud,
		     struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj *objs = NULL;
	struct err tmp;
	char *p = NULL;
	size_t n = 0, i;
	uint64_t items = 0, bytes = 0;
	int rc = -1;

	p = path_name(g, dir, 1, err);
	if (!p)
		goto out;
	if (walk(g, p, 1, &objs, &n, err) < 0) {
		err_prefix(err, "purge \"%s\"", dir);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (!objs[i].noncurrent)
			continue;
		err_clear(&tmp);
		if (delete_obj(g, objs[i].name, objs[i].generation, 1, &tmp) < 0 &&
		    tmp.code != ERR_NOTFOUND) {
			if (err)
				*err = tmp;
			err_prefix(err, "purge \"%s\": generation %" PRId64 " of \"%s\"", dir,
				   objs[i].generation, objs[i].name);
			goto out;
		}
		items++;
		bytes += objs[i].size;
		if (progress && progress(ud, items, bytes) != 0) {
			err_set(err, ERR_CANCELED, "purge \"%s\": stopped by the caller", dir);
			goto out;
		}
	}
	log_info(TAG, "purged %" PRIu64 " noncurrent generations (%" PRIu64 " bytes) under "
		 "\"%s\"", items, bytes, dir);
	rc = 0;
out:
	for (i = 0; i < n; i++)
		gcs_obj_release(&objs[i]);
	free(objs);
	free(p);
	return rc;
}

static int gcs_compose(struct be *b, const char *to, const struct be_pre *to_pre,
		       const char *const *srcs, const struct be_version *src_vers, size_t n,
		       const struct be_meta *meta, struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	struct gcs_obj o = { 0 };
	struct sb u = { 0 };
	json_t *j = NULL, *arr = NULL, *dest = NULL, *md = NULL, *s = NULL;
	char *dst = NULL, *url = NULL, *body = NULL, *sn = NULL, mt[32];
	const char *hdrs[2] = { "Content-Type: application/json; charset=UTF-8", NULL };
	const char *base = be_basename(to);
	size_t i;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (n < 1 || n > 32) {
		err_set(err, ERR_INVAL, "compose \"%s\": 1 to 32 sources, not %zu", to, n);
		goto out;
	}
	if (check_pre(to_pre, to, err) < 0)
		goto out;
	dst = path_name(g, to, 0, err);
	if (!dst)
		goto out;
	j = json_object();
	arr = json_array();
	dest = json_object();
	md = json_object();
	if (!j || !arr || !dest || !md)
		goto nomem;
	for (i = 0; i < n; i++) {
		free(sn);
		sn = path_name(g, srcs[i], 0, err);
		if (!sn)
			goto out;
		s = json_object();
		if (!s || json_object_set_new(s, "name", json_string(sn)) < 0 ||
		    (src_vers && src_vers[i].gen > 0 &&
		     (json_object_set_new(s, "generation", json_integer(src_vers[i].gen)) < 0 ||
		      json_object_set_new(s, "objectPreconditions",
					  json_pack("{s:I}", "ifGenerationMatch",
						    (json_int_t)src_vers[i].gen)) < 0)) ||
		    json_array_append_new(arr, s) < 0) {
			s = NULL;
			goto nomem;
		}
		s = NULL;
	}
	snprintf(mt, sizeof(mt), "%lld", (long long)(meta ? meta->mtime.tv_sec : time(NULL)));
	if (json_object_set_new(md, GCS_META_MTIME, json_string(mt)) < 0 ||
	    json_object_set_new(dest, "contentType", json_string(meta && meta->content_type ?
				meta->content_type : "application/octet-stream")) < 0 ||
	    json_object_set(dest, "metadata", md) < 0 ||
	    json_object_set(j, "sourceObjects", arr) < 0 ||
	    json_object_set(j, "destination", dest) < 0)
		goto nomem;
	body = jsonh_dumps(j, err);
	if (!body)
		goto out;
	sb_add(&u, g->api);
	sb_add(&u, "/o/");
	sb_enc(&u, dst);
	sb_addf(&u, "/compose?ifGenerationMatch=%" PRId64 "&fields=", pre_gen(to_pre));
	sb_enc(&u, OBJ_FIELDS);
	url = sb_take(&u, err);
	if (!url)
		goto out;
	if (call(g, "POST", url, hdrs, body, strlen(body), HTTP_RETRY_SAFE, &resp, err) < 0) {
		if (err && err->code == ERR_CONFLICT) {
			struct be_entry cur;

			/* A retry after a lost reply finds our own result. */
			memset(&cur, 0, sizeof(cur));
			current_entry(g, dst, to, &cur);
			if (meta && meta->size && cur.type == BE_FILE && cur.size == meta->size &&
			    cur.has_crc32c && cur.crc32c == meta->crc32c &&
			    to_pre->kind == BE_PRE_MATCH && cur.ver.gen != to_pre->ver.gen) {
				err_clear(err);
				if (out)
					*out = cur;
				else
					be_entry_release(&cur);
				rc = 0;
				goto out;
			}
			if (out)
				*out = cur;
			else
				be_entry_release(&cur);
			err_set(err, ERR_CONFLICT, "compose \"%s\": changed remotely", to);
			err->http_status = 412;
		} else {
			err_prefix(err, "compose \"%s\"", to);
		}
		goto out;
	}
	if (gcs_parse_object(resp.body, resp.body_len, &o, err) < 0) {
		err_prefix(err, "compose \"%s\"", to);
		goto out;
	}
	/* On a mismatch *out still tells what was committed (the caller
	 * replaces it, guarded by its generation). */
	if (out && gcs_obj_to_entry(&o, base, strlen(base), out, err) < 0)
		goto out;
	if (meta && meta->size && o.size != meta->size) {
		err_set(err, ERR_PARSE, "compose \"%s\": result has %" PRIu64 " bytes, expected %"
			PRIu64, to, o.size, meta->size);
		goto out;
	}
	if (meta && meta->size && o.has_crc32c && o.crc32c != meta->crc32c) {
		err_set(err, ERR_PARSE, "compose \"%s\": checksum mismatch", to);
		goto out;
	}
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	json_decref(s);
	json_decref(j);
	json_decref(arr);
	json_decref(dest);
	json_decref(md);
	gcs_obj_release(&o);
	http_resp_release(&resp);
	free(dst);
	free(url);
	free(body);
	free(sn);
	return rc;
}


/* Checksums of fd's bytes [off, off+len) into *m (size, crc32c, md5). */
static int range_meta(int fd, uint64_t off, uint64_t len, struct be_meta *m, struct err *err)
{
	enum { BUFSZ = 1 << 20 };
	struct ck_md5 md5 = { 0 };
	char *buf = malloc(BUFSZ);
	uint64_t done = 0;
	uint32_t crc = 0;
	size_t n;
	int rc = -1;

	if (!buf || ck_md5_init(&md5) < 0) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	while (done < len) {
		n = len - done < BUFSZ ? (size_t)(len - done) : BUFSZ;
		if (be_pread_full(fd, buf, n, off + done, err) < 0)
			goto out;
		crc = ck_crc32c(crc, buf, n);
		ck_md5_update(&md5, buf, n);
		done += n;
	}
	ck_md5_final(&md5, m->md5);
	m->crc32c = crc;
	m->size = len;
	rc = 0;
out:
	ck_md5_release(&md5);
	free(buf);
	return rc;
}

/* Upload fd's bytes [off, off + m->size) as the new object at mount path
 * tmp (must not exist); *o = the committed object. */
static int put_tail(struct be *b, const char *tmp, int fd, uint64_t off,
		    const struct be_meta *m, struct gcs_obj *o, struct err *err)
{
	struct gcs *g = G(b);
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre;
	char *data = NULL, *name = NULL;
	int r, rc = -1;

	memset(&up, 0, sizeof(up));
	memset(&ent, 0, sizeof(ent));
	memset(&pre, 0, sizeof(pre));
	memset(o, 0, sizeof(*o));
	pre.kind = BE_PRE_ABSENT;
	if (m->size < g->chunk) {
		data = malloc(m->size ? (size_t)m->size : 1);
		name = path_name(g, tmp, 0, err);
		if (!data || !name) {
			if (!data)
				err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		if (be_pread_full(fd, data, (size_t)m->size, off, err) < 0)
			goto out;
		if (ck_crc32c(0, data, (size_t)m->size) != m->crc32c) {
			err_set(err, ERR_INVAL, "the file changed while its tail was sent");
			goto out;
		}
		if (post_multipart(g, name, data, m, NULL, 0, o, err) < 0)
			goto out;
		rc = verify_committed(o, m, tmp, err);
		goto out;
	}
	if (gcs_upload_begin(b, tmp, m, &pre, &up, err) < 0)
		goto out;
	for (;;) {
		be_entry_release(&ent);
		r = upload_chunk_at(b, &up, fd, off, &ent, err);
		if (r < 0) {
			struct err tmp_err;

			err_clear(&tmp_err);
			gcs_upload_cancel(b, &up, &tmp_err);
			goto out;
		}
		if (r == 1)
			break;
	}
	/* The object as a compose source needs its generation and sums. */
	name = path_name(g, tmp, 0, err);
	if (!name || get_obj(g, name, ent.ver.gen, o, err) < 0)
		goto out;
	rc = verify_committed(o, m, tmp, err);
out:
	be_entry_release(&ent);
	free(data);
	free(name);
	return rc;
}

/* Temporaries older than this are leftovers of a crash (a live one lives
 * about a second). */
#define GCS_TMP_MAX_AGE_S 3600

/* Once per backend instance: delete the append temporaries a crash left
 * behind (older than GCS_TMP_MAX_AGE_S; each guarded by its generation).
 * Best effort: failures are logged at debug level. */
static void sweep_tmp(struct be *b)
{
	struct gcs *g = G(b);
	struct be_list l = { 0 };
	char path[128], *name = NULL;
	time_t now = time(NULL);
	struct err e;
	size_t i;

	if (atomic_exchange(&g->swept, 1))
		return;
	err_clear(&e);
	if (gcs_list(b, GCS_TMP_DIR, &l, &e) < 0) {
		if (e.code != ERR_NOTFOUND)
			log_debug(TAG, "looking for leftover append temporaries: %s", e.msg);
		return;
	}
	for (i = 0; i < l.n; i++) {
		if (l.v[i].type != BE_FILE || l.v[i].mtime.tv_sec > now - GCS_TMP_MAX_AGE_S)
			continue;
		snprintf(path, sizeof(path), GCS_TMP_DIR "/%.64s", l.v[i].name);
		free(name);
		name = path_name(g, path, 0, &e);
		if (!name || delete_obj(g, name, l.v[i].ver.gen, 0, &e) < 0)
			log_debug(TAG, "deleting leftover %s: %s", path, e.msg);
		else
			log_info(TAG, "deleted %s, a temporary left by an interrupted append",
				 path);
	}
	free(name);
	be_list_release(&l);
}

static int gcs_append(struct be *b, const char *path, const struct be_version *ver,
		      uint64_t old_size, uint32_t tail_crc32c, int fd,
		      const struct be_meta *meta, struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	struct gcs_obj t = { 0 };
	struct be_meta tm;
	struct be_pre pre;
	struct be_version vers[2];
	unsigned char rnd[12];
	char tmp[64], hex[25];
	const char *srcs[2];
	struct err e2;
	char *tname = NULL;
	int rc = -1, have_tmp = 0;

	if (out)
		memset(out, 0, sizeof(*out));
	memset(&tm, 0, sizeof(tm));
	if (!ver || ver->gen <= 0 || old_size == 0 || meta->size <= old_size)
		return err_set(err, ERR_INVAL, "append \"%s\": nothing to append to (size %"
			       PRIu64 " after %" PRIu64 ")", path, meta->size, old_size);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return err_set(err, ERR_IO, "append \"%s\": no randomness for a temporary "
			       "name", path);
	enc_hex(rnd, sizeof(rnd), hex);
	snprintf(tmp, sizeof(tmp), GCS_TMP_DIR "/%s", hex);
	if (range_meta(fd, old_size, meta->size - old_size, &tm, err) < 0) {
		err_prefix(err, "append \"%s\"", path);
		goto out;
	}
	if (tm.crc32c != tail_crc32c) {
		err_set(err, ERR_INVAL, "append \"%s\": the file changed since its checksums "
			"were computed", path);
		goto out;
	}
	/* The temporary's mtime is its birth, for sweep_tmp. */
	tm.mtime.tv_sec = time(NULL);
	tm.content_type = meta->content_type;
	sweep_tmp(b);
	if (put_tail(b, tmp, fd, old_size, &tm, &t, err) < 0) {
		err_prefix(err, "append \"%s\": sending the tail", path);
		goto out;
	}
	have_tmp = 1;
	memset(&pre, 0, sizeof(pre));
	pre.kind = BE_PRE_MATCH;
	pre.ver = *ver;
	memset(vers, 0, sizeof(vers));
	vers[0] = *ver;
	vers[1].gen = t.generation;
	srcs[0] = path;
	srcs[1] = tmp;
	if (gcs_compose(b, path, &pre, srcs, vers, 2, meta, out, err) < 0) {
		if (err->code == ERR_CONFLICT)
			goto out;
		if (err->code == ERR_NOTFOUND) {
			/* Our source generation is gone: the file changed. */
			char *name = path_name(g, path, 0, &e2);

			if (name && out) {
				be_entry_release(out);
				current_entry(g, name, path, out);
			}
			free(name);
			err_set(err, ERR_CONFLICT, "append \"%s\": changed remotely", path);
			err->http_status = 412;
			goto out;
		}
		err_prefix(err, "append \"%s\"", path);
		goto out;
	}
	if (out && (out->size != meta->size || !out->has_crc32c ||
		    out->crc32c != meta->crc32c)) {
		/* gcs_compose checked it; an answer without a crc32c is not
		 * good enough to call the content verified. */
		err_set(err, ERR_PARSE, "append \"%s\": the composed object's checksum is "
			"missing or differs (checksum mismatch)", path);
		goto out;
	}
	rc = 0;
out:
	if (have_tmp) {
		err_clear(&e2);
		tname = path_name(g, tmp, 0, &e2);
		if (!tname || delete_obj(g, tname, t.generation, 0, &e2) < 0)
			log_warn(TAG, "append \"%s\": could not delete the temporary object %s "
				 "(%s); it can be deleted by hand", path, tmp, e2.msg);
	}
	free(tname);
	gcs_obj_release(&t);
	return rc;
}

static int gcs_setattr(struct be *b, const char *path, const struct be_version *ver,
		       const struct be_attr *attr, struct be_entry *out, struct err *err)
{
	struct gcs *g = G(b);
	struct http_resp resp = { 0 };
	struct gcs_obj o = { 0 };
	struct sb u = { 0 };
	struct err tmp;
	char *name = NULL, *url = NULL, body[160];
	const char *base = be_basename(path);
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!ver || ver->gen <= 0) {
		err_set(err, ERR_INVAL, "setattr \"%s\": the generation is required", path);
		goto out;
	}
	if (!*path) {
		err_set(err, ERR_INVAL, "setattr: not on the root");
		goto out;
	}
	name = path_name(g, path, 0, err);
	if (!name)
		goto out;
	if (!(attr->set & BE_ATTR_MTIME)) {
		if (get_obj(g, name, 0, &o, err) < 0) {
			err_prefix(err, "setattr \"%s\"", path);
			goto out;
		}
		rc = out ? gcs_obj_to_entry(&o, base, strlen(base), out, err) : 0;
		goto out;
	}
	snprintf(body, sizeof(body), "{\"metadata\":{\"" GCS_META_MTIME "\":\"%lld\"}}",
		 (long long)attr->mtime.tv_sec);
	sb_add(&u, g->api);
	sb_add(&u, "/o/");
	sb_enc(&u, name);
	sb_addf(&u, "?ifGenerationMatch=%" PRId64, ver->gen);
	if (ver->metagen > 0)
		sb_addf(&u, "&ifMetagenerationMatch=%" PRId64, ver->metagen);
	sb_add(&u, "&fields=");
	sb_enc(&u, OBJ_FIELDS);
	url = sb_take(&u, err);
	if (!url)
		goto out;
	{
		const char *hdrs[2] = { "Content-Type: application/json; charset=UTF-8", NULL };

		if (call(g, "PATCH", url, hdrs, body, strlen(body), HTTP_RETRY_SAFE, &resp,
			 err) == 0) {
			if (gcs_parse_object(resp.body, resp.body_len, &o, err) < 0) {
				err_prefix(err, "setattr \"%s\"", path);
				goto out;
			}
			rc = out ? gcs_obj_to_entry(&o, base, strlen(base), out, err) : 0;
			goto out;
		}
	}
	if (err->code == ERR_NOTFOUND) {
		err_set(err, ERR_NOTFOUND, "setattr \"%s\": no such object", path);
		goto out;
	}
	if (err->code != ERR_CONFLICT) {
		err_prefix(err, "setattr \"%s\"", path);
		goto out;
	}
	/* 412: our own earlier attempt (same generation, our mtime), or a
	 * change by someone else. */
	err_clear(&tmp);
	if (get_obj(g, name, 0, &o, &tmp) < 0) {
		err_set(err, tmp.code == ERR_NOTFOUND ? ERR_NOTFOUND : ERR_CONFLICT,
			"setattr \"%s\": changed remotely (%s)", path, tmp.msg);
		goto out;
	}
	if (o.generation == ver->gen && o.mtime.tv_sec == attr->mtime.tv_sec) {
		rc = out ? gcs_obj_to_entry(&o, base, strlen(base), out, err) : 0;
		goto out;
	}
	err_set(err, ERR_CONFLICT, "setattr \"%s\": changed remotely (now generation %" PRId64
		", metageneration %" PRId64 ")", path, o.generation, o.metageneration);
	err->http_status = 412;
	if (out)
		gcs_obj_to_entry(&o, base, strlen(base), out, &tmp);
out:
	gcs_obj_release(&o);
	http_resp_release(&resp);
	free(name);
	free(url);
	return rc;
}

static void gcs_free(struct be *b)
{
	struct gcs *g = G(b);

	if (!g)
		return;
	free(g->bucket);
	free(g->prefix);
	free(g->ep);
	free(g->api);
	free(g->upl);
	free(g);
}

/* GCS object names: at most 1,024 bytes (the prefix and a directory's
 * marker '/' included), no carriage return or line feed. */
static int gcs_path_check(struct be *b, const char *path, int dir)
{
	struct gcs *g = (struct gcs *)b;
	size_t plen = strlen(g->prefix), n = strlen(path);

	if (strpbrk(path, "\r\n"))
		return BE_PATH_CHAR;
	n += (plen && n ? plen + 1 : plen) + (dir ? 1 : 0);
	return n > GCS_NAME_MAX ? BE_PATH_LONG : BE_PATH_OK;
}

static const struct be_ops gcs_ops = {
	.name = "gcs",
	.caps = BE_CAP_COMPOSE | BE_CAP_IDS_ARE_PATHS | BE_CAP_DIR_MARKERS | BE_CAP_VERSIONS |
		BE_CAP_STREAM |
		BE_CAP_SETATTR | BE_CAP_SUMS_LATE,
	.check = gcs_check,
	.list = gcs_list,
	.stat = gcs_stat,
	.read = gcs_read,
	.put = gcs_put,
	.symlink = gcs_symlink,
	.upload_begin = gcs_upload_begin,
	.upload_chunk = gcs_upload_chunk,
	.upload_query = gcs_upload_query,
	.upload_cancel = gcs_upload_cancel,
	.mkdir = gcs_mkdir,
	.rmdir = gcs_rmdir,
	.rename = gcs_rename,
	.rename_dir = gcs_rename_dir,
	.remove = gcs_remove,
	.purge = gcs_purge,
	.compose = gcs_compose,
	.setattr = gcs_setattr,
	.append = gcs_append,
	.free = gcs_free,
	.path_check = gcs_path_check,
};

int gcs_new(const struct gcs_opts *o, struct be **out, struct err *err)
{
	struct gcs *g = NULL;
	struct sb u = { 0 };
	char ep[4200];
	int rc = -1;

	*out = NULL;
	if (!o->http) {
		err_set(err, ERR_INVAL, "gcs: no HTTP client");
		goto out;
	}
	if (!gcs_bucket_valid(o->bucket)) {
		err_set(err, ERR_INVAL, "gcs: \"%s\" is not a valid bucket name",
			o->bucket ? o->bucket : "");
		goto out;
	}
	if (o->prefix && !be_path_valid(o->prefix)) {
		err_set(err, ERR_INVAL, "gcs: prefix \"%s\" is not a valid path", o->prefix);
		goto out;
	}
	if (o->chunk_size && !be_chunk_size_valid(o->chunk_size)) {
		err_set(err, ERR_INVAL, "gcs: chunk size %" PRIu64 " is not a multiple of "
			"256 KiB", o->chunk_size);
		goto out;
	}
	if (o->page_size < 0 || o->page_size > 1000) {
		err_set(err, ERR_INVAL, "gcs: page size %ld out of 1..1000", o->page_size);
		goto out;
	}
	if (o->rewrite_max_bytes_per_call < 0 ||
	    o->rewrite_max_bytes_per_call % (1024 * 1024) != 0) {
		err_set(err, ERR_INVAL, "gcs: rewrite bytes per call %ld is not a multiple of "
			"1 MiB", o->rewrite_max_bytes_per_call);
		goto out;
	}
	if (gcs_endpoint(o->endpoint, ep, sizeof(ep), NULL, err) < 0)
		goto out;
	g = calloc(1, sizeof(*g));
	if (!g)
		goto nomem;
	g->base.ops = &gcs_ops;
	g->http = o->http;
	g->bucket = strdup(o->bucket);
	g->prefix = strdup(o->prefix ? o->prefix : "");
	g->ep = strdup(ep);
	if (!g->bucket || !g->prefix || !g->ep)
		goto nomem;
	sb_add(&u, ep);
	sb_add(&u, "/storage/v1/b/");
	sb_enc(&u, o->bucket);
	g->api = sb_take(&u, err);
	sb_add(&u, ep);
	sb_add(&u, "/upload/storage/v1/b/");
	sb_enc(&u, o->bucket);
	g->upl = sb_take(&u, err);
	if (!g->api || !g->upl)
		goto nomem;
	g->chunk = o->chunk_size ? o->chunk_size : GCS_DEFAULT_CHUNK;
	g->page_size = o->page_size ? o->page_size : 1000;
	g->max_fail = o->chunk_max_failures > 0 ? o->chunk_max_failures : 10;
	g->retry_base_ms = o->retry_base_ms > 0 ? o->retry_base_ms : 500;
	atomic_init(&g->swept, 0);
	g->rewrite_max = o->rewrite_max_bytes_per_call;
	*out = &g->base;
	g = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "gcs: out of memory");
out:
	if (g)
		gcs_free(&g->base);
	return rc;
}
