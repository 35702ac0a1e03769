/* durafs-emulator: the Cloud Storage JSON API service (emu_gcs_service).
 * Routes /storage/v1, /upload/storage/v1 and /download/storage/v1 requests
 * to the store (emu_gcs_store.c), renders Google-shaped JSON and headers,
 * and runs the resumable upload protocol with its faults and counters. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "durafs/cksum.h"
#include "durafs/enc.h"
#include "emu.h"
#include "emu_gcs_store.h"
#include "emu_parse.h"

#define GCS_CHUNK (256 * 1024)
#define GCS_MAX_RESULTS 1000
#define GCS_DEFAULT_REWRITE_MAX ((int64_t)8 << 20)
#define GCS_MAX_COMPOSE 32

struct gcs {
	struct gst *store;
	atomic_llong rewrite_max;    /* bytes per rewrite call */
};

enum api { API_JSON, API_UPLOAD, API_DOWNLOAD };
enum rkind { R_BUCKETS, R_BUCKET, R_OBJECTS, R_OBJECT, R_COPY, R_REWRITE, R_COMPOSE };

/* A parsed request path; strings are decoded and owned. */
struct route {
	int api;
	int kind;
	char *bucket, *name;      /* source for copy/rewrite */
	char *dbucket, *dname;    /* destination for copy/rewrite */
};

/* "/b" too: clients that take STORAGE_EMULATOR_HOST as their JSON API base
 * (Google's Node client) send /b/BUCKET/o... without /storage/v1. */
static const char *const gcs_prefixes[] = {
	"/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/", "/b", NULL,
};

/* --- small helpers ---------------------------------------------------- */

static void route_release(struct route *rt)
{
	free(rt->bucket);
	free(rt->name);
	free(rt->dbucket);
	free(rt->dname);
	memset(rt, 0, sizeof(*rt));
}

/* Decode [s, s+n) into *out; -1 on a malformed escape. */
static int seg(const char *s, size_t n, char **out)
{
	*out = emu_pct_decode(s, n);
	return *out ? 0 : -1;
}

/* "B/o/NAME" after a copyTo/rewriteTo marker. */
static int dest_seg(const char *p, struct route *rt)
{
	const char *o = strstr(p, "/o/");

	if (!o || o == p || !o[3])
		return -1;
	if (seg(p, (size_t)(o - p), &rt->dbucket) < 0)
		return -1;
	return seg(o + 3, strlen(o + 3), &rt->dname);
}

/* Returns 0, or -1 when the path is not a GCS resource path. */
static int route_parse(const char *path, struct route *rt)
{
	const char *p, *slash, *mark;

	memset(rt, 0, sizeof(*rt));
	if (!strncmp(path, "/storage/v1/", 12)) {
		rt->api = API_JSON;
		p = path + 11;
	} else if (!strncmp(path, "/upload/storage/v1/", 19)) {
		rt->api = API_UPLOAD;
		p = path + 18;
	} else if (!strncmp(path, "/download/storage/v1/", 21)) {
		rt->api = API_DOWNLOAD;
		p = path + 20;
	} else if (!strncmp(path, "/b", 2)) {
		rt->api = API_JSON;
		p = path;
	} else {
		return -1;
	}
	/* p = "/b..." */
	if (strncmp(p, "/b", 2) != 0 || (p[2] && p[2] != '/'))
		return -1;
	p += 2;
	if (!*p || !strcmp(p, "/")) {
		rt->kind = R_BUCKETS;
		return 0;
	}
	p++;
	slash = strchr(p, '/');
	if (!slash) {
		rt->kind = R_BUCKET;
		return seg(p, strlen(p), &rt->bucket) < 0 || !*rt->bucket ? -1 : 0;
	}
	if (seg(p, (size_t)(slash - p), &rt->bucket) < 0 || !*rt->bucket)
		return -1;
	p = slash;
	if (strncmp(p, "/o", 2) != 0 || (p[2] && p[2] != '/'))
		return -1;
	p += 2;
	if (!*p || !strcmp(p, "/")) {
		rt->kind = R_OBJECTS;
		return 0;
	}
	p++;
	if ((mark = strstr(p, "/copyTo/b/"))) {
		rt->kind = R_COPY;
		if (seg(p, (size_t)(mark - p), &rt->name) < 0)
			return -1;
		return dest_seg(mark + 10, rt);
	}
	if ((mark = strstr(p, "/rewriteTo/b/"))) {
		rt->kind = R_REWRITE;
		if (seg(p, (size_t)(mark - p), &rt->name) < 0)
			return -1;
		return dest_seg(mark + 13, rt);
	}
	{
		size_t n = strlen(p);

		if (n > 8 && !strcmp(p + n - 8, "/compose")) {
			rt->kind = R_COMPOSE;
			return seg(p, n - 8, &rt->name);
		}
		rt->kind = R_OBJECT;
		return seg(p, n, &rt->name);
	}
}

static int is_method(const struct emu_req *req, const char *m)
{
	return !strcmp(req->method, m);
}

static int is_read(const struct emu_req *req)
{
	return is_method(req, "GET") || is_method(req, "HEAD");
}

static int query_bool(const struct emu_req *req, const char *name)
{
	const char *v = emu_req_query(req, name);

	return v && (!strcasecmp(v, "true") || !strcmp(v, "1"));
}

/* Google's object name rules: 1..1024 bytes, no CR/LF, not "." or "..". */
static const char *bad_object_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0)
		return "Required: the object name is empty";
	if (n > 1024)
		return "The object name is longer than 1024 bytes";
	if (strpbrk(name, "\r\n"))
		return "The object name contains a carriage return or line feed";
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return "The object name cannot be '.' or '..'";
	return NULL;
}

static const char *bad_bucket_name(const char *name)
{
	size_t n = strlen(name), i;

	if (n < 3 || n > 63)
		return "Invalid bucket name: must be 3 to 63 characters";
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '_' || c == '.'))
			return "Invalid bucket name: use lower-case letters, digits, '-', '_' and '.'";
	}
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')) ||
	    !((name[n - 1] >= 'a' && name[n - 1] <= 'z') ||
	      (name[n - 1] >= '0' && name[n - 1] <= '9')))
		return "Invalid bucket name: must start and end with a letter or digit";
	return NULL;
}

static void fmt_time(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static void fmt_http_date(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void fmt_i64(int64_t v, char out[24])
{
	snprintf(out, 24, "%" PRId64, v);
}

/* Opaque etag from generation and metageneration. */
static void fmt_etag(int64_t gen, int64_t mgen, char out[48])
{
	unsigned char raw[16];
	int i;

	for (i = 0; i < 8; i++) {
		raw[i] = (unsigned char)((uint64_t)gen >> (56 - 8 * i));
		raw[8 + i] = (unsigned char)((uint64_t)mgen >> (56 - 8 * i));
	}
	if (enc_b64(raw, sizeof(raw), out, 48, 0) == 0)
		snprintf(out, 48, "%" PRIx64, (uint64_t)gen);
}

/* Int64 from JSON: a number or a decimal string (Google's int64 form). */
static int json_i64(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (json_is_string(v))
		return emu_parse_i64(json_string_value(v), out);
	return -1;
}

/* The object name of an insert (?name=, else the resource's "name") and
 * the attributes of its resource (NULL: none) into *spec. NULL after
 * answering 400 when the name is missing or invalid or the resource is. */
static const char *insert_name_spec(const struct emu_req *req, const json_t *res,
				    struct gst_spec *spec, struct emu_resp *r)
{
	const char *name, *bad;
	char why[160];

	name = emu_req_query(req, "name");
	if (!name)
		name = json_string_value(json_object_get(res, "name"));
	if (!name) {
		emu_resp_error(r, 400, "required", "Required: the object name");
		return NULL;
	}
	if ((bad = bad_object_name(name))) {
		emu_resp_error(r, 400, "invalid", "%s", bad);
		return NULL;
	}
	if (gst_spec_from_json(spec, res, why, sizeof(why)) < 0) {
		emu_resp_error(r, 400, "invalid", "%s", why);
		return NULL;
	}
	return name;
}

/* Parse a JSON request body (empty = NULL with no error). Returns 0, or -1
 * having answered 400. */
static int body_json(const struct emu_req *req, struct emu_resp *r, json_t **out)
{
	json_error_t jerr;

	*out = NULL;
	if (req->body_len == 0)
		return 0;
	*out = json_loadb(req->body, req->body_len, 0, &jerr);
	if (!*out) {
		emu_resp_error(r, 400, "parseError", "Parse Error: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		emu_resp_error(r, 400, "invalid", "The request body must be a JSON object");
		return -1;
	}
	return 0;
}

/* Preconditions from the query: prefix "if" or "ifSource". Returns 0, or -1
 * having answered 400. */
static int cond_from_query(const struct emu_req *req, const char *pfx, struct gst_cond *c,
			   struct emu_resp *r)
{
	static const char *const names[4] = {
		"GenerationMatch", "GenerationNotMatch", "MetagenerationMatch",
		"MetagenerationNotMatch",
	};
	int *has[4] = { &c->has_gen, &c->has_not_gen, &c->has_meta, &c->has_not_meta };
	int64_t *val[4] = { &c->gen, &c->not_gen, &c->meta, &c->not_meta };
	char key[64];
	int i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < 4; i++) {
		const char *v;

		snprintf(key, sizeof(key), "%s%s", pfx, names[i]);
		v = emu_req_query(req, key);
		if (!v)
			continue;
		if (emu_parse_i64(v, val[i]) < 0 || *val[i] < 0) {
			emu_resp_error(r, 400, "invalid", "Invalid value for %s: %s", key, v);
			return -1;
		}
		*has[i] = 1;
	}
	return 0;
}

/* generation= (or another name): 0 when absent. -1 having answered 400. */
static int query_gen(const struct emu_req *req, const char *name, int64_t *gen,
		     struct emu_resp *r)
{
	const char *v = emu_req_query(req, name);

	*gen = 0;
	if (!v)
		return 0;
	if (emu_parse_i64(v, gen) < 0 || *gen <= 0) {
		emu_resp_error(r, 400, "invalid", "Invalid value for %s: %s", name, v);
		return -1;
	}
	return 0;
}

/* Answer a store result that is not GST_OK. read: a *NotMatch failure on a
 * read is 304 Not Modified. */
static void store_error(struct emu_resp *r, int rc, int read, const char *bucket,
			const char *name)
{
	switch (rc) {
	case GST_ENOBUCKET:
		emu_resp_error(r, 404, "notFound", "The specified bucket does not exist.");
		break;
	case GST_ENOOBJ:
		emu_resp_error(r, 404, "notFound", "No such object: %s/%s", bucket,
			       name ? name : "");
		break;
	case GST_ENOTMOD:
		if (read) {
			emu_resp_text(r, 304, "text/plain", "", 0);
			break;
		}
		/* fall through */
	case GST_EPRECOND:
		emu_resp_error(r, 412, "conditionNotMet",
			       "At least one of the pre-conditions you specified did not hold.");
		break;
	case GST_EEXIST:
		emu_resp_error(r, 409, "conflict",
			       "Your previous request to create the named bucket succeeded and you already own it.");
		break;
	case GST_ENOTEMPTY:
		emu_resp_error(r, 409, "conflict", "The bucket you tried to delete is not empty.");
		break;
	case GST_EINVAL:
		emu_resp_error(r, 400, "invalid", "Invalid argument.");
		break;
	case GST_EIO:
		emu_resp_error(r, 500, "backendError", "The emulator could not write its data dir.");
		break;
	default:
		emu_resp_error(r, 500, "backendError", "Out of memory.");
		break;
	}
}

/* Reply with j after applying the request's `fields` selector (already
 * validated by the dispatcher). Steals j. */
static void reply_json(const struct emu_req *req, struct emu_resp *r, int status, json_t *j)
{
	int bad = 0;
	struct emu_fields *f = emu_fields_parse(emu_req_query(req, "fields"), &bad);

	emu_fields_apply(f, j);
	emu_fields_free(f);
	emu_resp_json(r, status, j);
}

/* --- rendering -------------------------------------------------------- */

static json_t *obj_json(struct emu *e, const struct gst_obj *o)
{
	char gen[24], mgen[24], size[24], crc[9], md5[25], tc[32], upd[32], etag[48];
	char *enc = enc_url(o->name);
	char *self = NULL, *media = NULL, *id = NULL;
	json_t *j = NULL;
	int i;

	if (!enc)
		return NULL;
	fmt_i64(o->generation, gen);
	fmt_i64(o->metageneration, mgen);
	fmt_i64((int64_t)o->blob->len, size);
	ck_crc32c_b64(o->blob->crc32c, crc);
	ck_md5_b64(o->blob->md5, md5);
	fmt_time(o->created_ms, tc);
	fmt_time(o->updated_ms, upd);
	fmt_etag(o->generation, o->metageneration, etag);
	if (asprintf(&self, "%s/storage/v1/b/%s/o/%s", emu_base_url(e), o->bucket, enc) < 0)
		self = NULL;
	if (asprintf(&media, "%s/download/storage/v1/b/%s/o/%s?generation=%s&alt=media",
		     emu_base_url(e), o->bucket, enc, gen) < 0)
		media = NULL;
	if (asprintf(&id, "%s/%s/%s", o->bucket, o->name, gen) < 0)
		id = NULL;
	if (!self || !media || !id)
		goto out;
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
		      "kind", "storage#object", "id", id, "selfLink", self,
		      "mediaLink", media, "name", o->name, "bucket", o->bucket,
		      "generation", gen, "metageneration", mgen, "size", size,
		      "crc32c", crc, "etag", etag, "timeCreated", tc, "updated", upd,
		      "timeStorageClassUpdated", tc, "timeFinalized", tc);
	if (!j)
		goto out;
	json_object_set_new(j, "contentType", json_string(o->attr[GST_CONTENT_TYPE]
							    ? o->attr[GST_CONTENT_TYPE]
							    : "application/octet-stream"));
	json_object_set_new(j, "storageClass", json_string(o->attr[GST_STORAGE_CLASS]
							     ? o->attr[GST_STORAGE_CLASS]
							     : "STANDARD"));
	for (i = 0; i < GST_NATTR; i++)
		if (i != GST_CONTENT_TYPE && i != GST_STORAGE_CLASS && o->attr[i])
			json_object_set_new(j, gst_attr_key[i], json_string(o->attr[i]));
	if (o->component_count)
		json_object_set_new(j, "componentCount", json_integer(o->component_count));
	else
		json_object_set_new(j, "md5Hash", json_string(md5));
	if (o->metadata)
		json_object_set_new(j, "metadata", json_deep_copy(o->metadata));
	if (o->deleted_ms) {
		char td[32];

		fmt_time(o->deleted_ms, td);
		json_object_set_new(j, "timeDeleted", json_string(td));
	}
out:
	free(enc);
	free(self);
	free(media);
	free(id);
	return j;
}

static json_t *bucket_json(struct emu *e, const struct gst_bucket_info *b)
{
	char tc[32], upd[32], mg[24], etag[48];
	char *self = NULL;
	json_t *j;

	fmt_time(b->created_ms, tc);
	fmt_time(b->updated_ms, upd);
	fmt_i64(b->metageneration, mg);
	fmt_etag(0, b->metageneration, etag);
	if (asprintf(&self, "%s/storage/v1/b/%s", emu_base_url(e), b->name) < 0)
		return NULL;
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:b}}",
		      "kind", "storage#bucket", "id", b->name, "selfLink", self,
		      "projectNumber", "0", "name", b->name, "timeCreated", tc,
		      "updated", upd, "metageneration", mg, "location", "US",
		      "locationType", "multi-region", "storageClass", "STANDARD",
		      "etag", etag, "versioning", "enabled", b->versioning);
	free(self);
	return j;
}

/* Headers every object reply carries (metadata and media). */
static void obj_headers(struct emu_resp *r, const struct gst_obj *o)
{
	char crc[9], md5[25], etag[48];

	ck_crc32c_b64(o->blob->crc32c, crc);
	ck_md5_b64(o->blob->md5, md5);
	fmt_etag(o->generation, o->metageneration, etag);
	if (o->component_count)
		emu_resp_header(r, "x-goog-hash", "crc32c=%s", crc);
	else
		emu_resp_header(r, "x-goog-hash", "crc32c=%s,md5=%s", crc, md5);
	emu_resp_header(r, "x-goog-generation", "%" PRId64, o->generation);
	emu_resp_header(r, "x-goog-metageneration", "%" PRId64, o->metageneration);
	emu_resp_header(r, "x-goog-stored-content-length", "%" PRIu64, o->blob->len);
	emu_resp_header(r, "x-goog-stored-content-encoding", "%s",
			o->attr[GST_CONTENT_ENCODING] ? o->attr[GST_CONTENT_ENCODING]
						      : "identity");
	emu_resp_header(r, "ETag", "\"%s\"", etag);
}

/* Reply with the object resource (and its headers). */
static void reply_obj(struct emu *e, const struct emu_req *req, struct emu_resp *r,
		      int status, const struct gst_obj *o)
{
	json_t *j = obj_json(e, o);

	if (!j) {
		emu_resp_error(r, 500, "backendError", "Out of memory.");
		return;
	}
	obj_headers(r, o);
	reply_json(req, r, status, j);
}

/* --- checksums -------------------------------------------------------- */

/* Compare client-supplied checksums (base64; NULL/"" = not given) with the
 * blob's. Returns 0, or -1 having answered 400. */
static int check_sums(struct emu_resp *r, const struct gst_blob *b, const char *crc,
		      const char *md5)
{
	char have[25];

	if (crc && *crc) {
		uint32_t want;

		if (ck_crc32c_from_b64(crc, &want) < 0) {
			emu_resp_error(r, 400, "invalid", "Invalid crc32c value: \"%.40s\"", crc);
			return -1;
		}
		if (want != b->crc32c) {
			ck_crc32c_b64(b->crc32c, have);
			emu_resp_error(r, 400, "invalid",
				       "Provided CRC32C \"%.40s\" doesn't match calculated CRC32C \"%s\".",
				       crc, have);
			return -1;
		}
	}
	if (md5 && *md5) {
		unsigned char want[16];
		size_t n = 0;

		if (enc_b64_decode(md5, strlen(md5), want, sizeof(want), &n) < 0 || n != 16) {
			emu_resp_error(r, 400, "invalid", "Invalid md5Hash value: \"%.40s\"", md5);
			return -1;
		}
		if (memcmp(want, b->md5, 16) != 0) {
			ck_md5_b64(b->md5, have);
			emu_resp_error(r, 400, "invalid",
				       "Provided MD5 hash \"%.40s\" doesn't match calculated MD5 hash \"%s\".",
				       md5, have);
			return -1;
		}
	}
	return 0;
}

/* Checksums a resource names ("crc32c", "md5Hash"); wrong types answered. */
static int sums_from_json(struct emu_resp *r, const json_t *res, const char **crc,
			  const char **md5)
{
	json_t *c = json_object_get(res, "crc32c"), *m = json_object_get(res, "md5Hash");

	*crc = NULL;
	*md5 = NULL;
	if ((c && !json_is_string(c)) || (m && !json_is_string(m))) {
		emu_resp_error(r, 400, "invalid", "crc32c and md5Hash must be strings");
		return -1;
	}
	*crc = json_string_value(c);
	*md5 = json_string_value(m);
	return 0;
}

/* --- buckets ---------------------------------------------------------- */

static void buckets_list(struct gcs *g, struct emu *e, const struct emu_req *req,
			 struct emu_resp *r)
{
	struct gst_bucket_info *v = NULL;
	size_t n = 0, i;
	const char *prefix = emu_req_query(req, "prefix");
	json_t *items, *j;

	r->kind = "gcs.buckets.list";
	if (gst_bucket_list(g->store, &v, &n) != GST_OK) {
		store_error(r, GST_ENOMEM, 0, "", NULL);
		return;
	}
	items = json_array();
	for (i = 0; i < n; i++)
		if (!prefix || !strncmp(v[i].name, prefix, strlen(prefix)))
			json_array_append_new(items, bucket_json(e, &v[i]));
	free(v);
	j = json_pack("{s:s}", "kind", "storage#buckets");
	if (json_array_size(items))
		json_object_set_new(j, "items", items);
	else
		json_decref(items);
	reply_json(req, r, 200, j);
}

static void buckets_insert(struct gcs *g, struct emu *e, const struct emu_req *req,
			   struct emu_resp *r)
{
	json_t *body = NULL, *ver;
	const char *name, *bad;
	struct gst_bucket_info bi;
	int rc;

	r->kind = "gcs.buckets.insert";
	if (body_json(req, r, &body) < 0)
		return;
	name = json_string_value(json_object_get(body, "name"));
	if (!name) {
		emu_resp_error(r, 400, "required", "Required: bucket name");
		goto out;
	}
	if ((bad = bad_bucket_name(name))) {
		emu_resp_error(r, 400, "invalid", "%s", bad);
		goto out;
	}
	ver = json_object_get(json_object_get(body, "versioning"), "enabled");
	rc = gst_bucket_create(g->store, name, json_is_true(ver), &bi);
	if (rc)
		store_error(r, rc, 0, name, NULL);
	else
		reply_json(req, r, 200, bucket_json(e, &bi));
out:
	json_decref(body);
}

static void bucket_one(struct gcs *g, struct emu *e, const struct emu_req *req,
		       struct emu_resp *r, const char *bucket)
{
	struct gst_bucket_info bi;
	struct gst_cond c;
	int rc;

	if (is_read(req)) {
		r->kind = "gcs.buckets.get";
		if (cond_from_query(req, "if", &c, r) < 0)
			return;
		rc = gst_bucket_get(g->store, bucket, &bi);
		if (!rc && c.has_meta && c.meta != bi.metageneration)
			rc = GST_EPRECOND;
		if (!rc && c.has_not_meta && c.not_meta == bi.metageneration)
			rc = GST_ENOTMOD;
		if (rc)
			store_error(r, rc, 1, bucket, NULL);
		else
			reply_json(req, r, 200, bucket_json(e, &bi));
	} else if (is_method(req, "PATCH") || is_method(req, "PUT")) {
		json_t *body = NULL, *ver;
		int v = -1;

		r->kind = "gcs.buckets.patch";
		if (cond_from_query(req, "if", &c, r) < 0 || body_json(req, r, &body) < 0)
			return;
		ver = json_object_get(body, "versioning");
		if (ver && !json_is_null(ver)) {
			json_t *en = json_object_get(ver, "enabled");

			if (!json_is_object(ver) || (en && !json_is_boolean(en))) {
				emu_resp_error(r, 400, "invalid", "versioning.enabled must be a boolean");
				json_decref(body);
				return;
			}
			v = json_is_true(en);
		} else if (ver || is_method(req, "PUT")) {
			v = 0;
		}
		json_decref(body);
		rc = gst_bucket_patch(g->store, bucket, v, &c, &bi);
		if (rc)
			store_error(r, rc, 0, bucket, NULL);
		else
			reply_json(req, r, 200, bucket_json(e, &bi));
	} else if (is_method(req, "DELETE")) {
		r->kind = "gcs.buckets.delete";
		if (cond_from_query(req, "if", &c, r) < 0)
			return;
		rc = gst_bucket_delete(g->store, bucket, &c);
		if (rc)
			store_error(r, rc, 0, bucket, NULL);
		else
			emu_resp_text(r, 204, "text/plain", "", 0);
	} else {
		r->kind = "gcs.bad_request";
		emu_resp_error(r, 405, "methodNotAllowed", "Method %s not allowed on a bucket",
			       req->method);
	}
}

/* --- objects: read ---------------------------------------------------- */

static void send_media(struct emu *e, const struct emu_req *req, struct emu_resp *r,
		       struct gst_obj *o)
{
	uint64_t first = 0, last = 0, len;
	int kind = emu_parse_range(emu_req_header(req, "Range"), o->blob->len, &first, &last);
	char date[40];

	r->kind = "gcs.objects.get.media";
	if (kind == EMU_RANGE_UNSAT) {
		emu_resp_error(r, 416, "requestedRangeNotSatisfiable",
			       "The requested range cannot be satisfied.");
		emu_resp_header(r, "Content-Range", "bytes */%" PRIu64, o->blob->len);
		return;
	}
	if (kind == EMU_RANGE_WHOLE) {
		first = 0;
		len = o->blob->len;
	} else {
		len = last - first + 1;
	}
	obj_headers(r, o);
	emu_resp_header(r, "Content-Type", "%s", o->attr[GST_CONTENT_TYPE]
						     ? o->attr[GST_CONTENT_TYPE]
						     : "application/octet-stream");
	emu_resp_header(r, "Accept-Ranges", "bytes");
	fmt_http_date(o->updated_ms, date);
	emu_resp_header(r, "Last-Modified", "%s", date);
	if (o->attr[GST_CACHE_CONTROL])
		emu_resp_header(r, "Cache-Control", "%s", o->attr[GST_CACHE_CONTROL]);
	if (o->attr[GST_CONTENT_DISPOSITION])
		emu_resp_header(r, "Content-Disposition", "%s", o->attr[GST_CONTENT_DISPOSITION]);
	if (o->attr[GST_CONTENT_LANGUAGE])
		emu_resp_header(r, "Content-Language", "%s", o->attr[GST_CONTENT_LANGUAGE]);
	if (kind == EMU_RANGE_PART)
		emu_resp_header(r, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
				first, last, o->blob->len);
	r->status = kind == EMU_RANGE_PART ? 206 : 200;
	/* zero copy: the reply holds a blob reference until it is sent */
	gst_blob_ref(o->blob);
	r->body = len ? o->blob->data + first : NULL;
	r->body_len = (size_t)len;
	r->body_free = gst_blob_unref;
	r->body_ud = o->blob;
	emu_stat_add(e, "gcs.media_requests", 1);
	if (!is_method(req, "HEAD"))
		emu_stat_add(e, "gcs.media_bytes_sent", (int64_t)len);
}

static void object_get(struct gcs *g, struct emu *e, const struct emu_req *req,
		       struct emu_resp *r, const struct route *rt, int media)
{
	struct gst_cond c;
	struct gst_obj *o = NULL;
	int64_t gen;
	int rc;

	r->kind = media ? "gcs.objects.get.media" : "gcs.objects.get";
	if (cond_from_query(req, "if", &c, r) < 0 || query_gen(req, "generation", &gen, r) < 0)
		return;
	rc = gst_obj_get(g->store, rt->bucket, rt->name, gen, &c, &o);
	if (rc) {
		store_error(r, rc, 1, rt->bucket, rt->name);
		return;
	}
	if (media)
		send_media(e, req, r, o);
	else
		reply_obj(e, req, r, 200, o);
	gst_obj_unref(o);
}

/* --- objects: list ---------------------------------------------------- */

static void objects_list(struct gcs *g, struct emu *e, const struct emu_req *req,
			 struct emu_resp *r, const char *bucket)
{
	struct gst_list_args a;
	struct gst_list_page page;
	const char *v, *tok = emu_req_query(req, "pageToken");
	char *tkey = NULL;
	int64_t max = GCS_MAX_RESULTS;
	long cap = 0;
	json_t *j = NULL, *items = NULL, *pfx = NULL;
	size_t i;
	int rc;

	r->kind = "gcs.objects.list";
	memset(&a, 0, sizeof(a));
	memset(&page, 0, sizeof(page));
	if ((v = emu_req_query(req, "maxResults"))) {
		if (emu_parse_i64(v, &max) < 0 || max < 0) {
			emu_resp_error(r, 400, "invalid", "Invalid value for maxResults: %s", v);
			return;
		}
		if (max == 0 || max > GCS_MAX_RESULTS)
			max = GCS_MAX_RESULTS;
	}
	if (emu_fault_page_cap(e, req, &cap) && cap >= 1 && cap < max)
		max = cap;
	if (tok && *tok) {
		if (emu_page_token_parse(tok, &tkey, &a.token_keylen, &a.token_gen) < 0) {
			emu_resp_error(r, 400, "invalid", "Invalid pageToken");
			return;
		}
		a.token_key = tkey;
	}
	a.prefix = emu_req_query(req, "prefix");
	a.delimiter = emu_req_query(req, "delimiter");
	a.start_offset = emu_req_query(req, "startOffset");
	a.end_offset = emu_req_query(req, "endOffset");
	if (a.end_offset && !*a.end_offset)
		a.end_offset = NULL;
	a.versions = query_bool(req, "versions");
	a.include_trailing_delimiter = query_bool(req, "includeTrailingDelimiter");
	if (emu_req_query(req, "matchGlob")) {
		emu_resp_error(r, 400, "invalid", "matchGlob is not supported by this emulator");
		goto out;
	}
	a.max = (long)max;
	rc = gst_list(g->store, bucket, &a, &page);
	if (rc) {
		store_error(r, rc, 0, bucket, NULL);
		goto out;
	}
	j = json_pack("{s:s}", "kind", "storage#objects");
	if (page.nprefixes) {
		pfx = json_array();
		for (i = 0; i < page.nprefixes; i++)
			json_array_append_new(pfx, json_string(page.prefixes[i]));
		json_object_set_new(j, "prefixes", pfx);
	}
	if (page.nitems) {
		items = json_array();
		for (i = 0; i < page.nitems; i++)
			json_array_append_new(items, obj_json(e, page.items[i]));
		json_object_set_new(j, "items", items);
	}
	if (page.more) {
		char *t = emu_page_token_make(page.next_key, page.next_keylen, page.next_gen);

		if (t)
			json_object_set_new(j, "nextPageToken", json_string(t));
		free(t);
	}
	reply_json(req, r, 200, j);
out:
	gst_list_page_release(&page);
	free(tkey);
}

/* --- objects: patch, delete ------------------------------------------- */

static void object_patch(struct gcs *g, struct emu *e, const struct emu_req *req,
			 struct emu_resp *r, const struct route *rt)
{
	struct gst_cond c;
	struct gst_obj *o = NULL;
	json_t *body = NULL;
	int64_t gen;
	char why[160] = "";
	int rc, replace = is_method(req, "PUT");

	r->kind = replace ? "gcs.objects.update" : "gcs.objects.patch";
	if (cond_from_query(req, "if", &c, r) < 0 || query_gen(req, "generation", &gen, r) < 0 ||
	    body_json(req, r, &body) < 0)
		return;
	if (!body)
		body = json_object();
	rc = gst_obj_patch(g->store, rt->bucket, rt->name, gen, body, replace, &c, &o,
			   why, sizeof(why));
	json_decref(body);
	if (rc == GST_EINVAL)
		emu_resp_error(r, 400, "invalid", "%s", why);
	else if (rc)
		store_error(r, rc, 0, rt->bucket, rt->name);
	else
		reply_obj(e, req, r, 200, o);
	gst_obj_unref(o);
}

static void object_delete(struct gcs *g, const struct emu_req *req, struct emu_resp *r,
			  const struct route *rt)
{
	struct gst_cond c;
	int64_t gen;
	int rc;

	r->kind = "gcs.objects.delete";
	if (cond_from_query(req, "if", &c, r) < 0 || query_gen(req, "generation", &gen, r) < 0)
		return;
	rc = gst_obj_delete(g->store, rt->bucket, rt->name, gen, &c);
	if (rc)
		store_error(r, rc, 0, rt->bucket, rt->name);
	else
		emu_resp_text(r, 204, "text/plain", "", 0);
}

/* --- objects: uploads (media, multipart, metadata-only) ---------------- */

/* Publish blob (consumed) as bucket/name with spec (consumed); answer. */
static void publish(struct gcs *g, struct emu *e, const struct emu_req *req,
		    struct emu_resp *r, const char *bucket, const char *name,
		    struct gst_blob *blob, struct gst_spec *spec, const struct gst_cond *c)
{
	struct gst_obj *o = NULL;
	int rc;

	if (!spec->attr[GST_CONTENT_TYPE])
		spec->attr[GST_CONTENT_TYPE] = strdup("application/octet-stream");
	rc = gst_obj_put(g->store, bucket, name, blob, spec, c, &o);
	if (rc) {
		store_error(r, rc, 0, bucket, name);
		gst_blob_discard(blob);
		return;
	}
	emu_stat_add(e, "gcs.upload_bytes_persisted", (int64_t)blob->len);
	gst_blob_unref(blob);
	reply_obj(e, req, r, 200, o);
	gst_obj_unref(o);
}

static void insert_media(struct gcs *g, struct emu *e, const struct emu_req *req,
			 struct emu_resp *r, const char *bucket, const struct gst_cond *c)
{
	const char *name = emu_req_query(req, "name"), *bad;
	const char *ctype = emu_req_header(req, "Content-Type");
	char crc[64], md5[64];
	struct gst_spec spec = { 0 };
	struct gst_blob *blob;
	char *data;

	r->kind = "gcs.objects.insert.media";
	if (!name) {
		emu_resp_error(r, 400, "required", "Required: the name query parameter");
		return;
	}
	if ((bad = bad_object_name(name))) {
		emu_resp_error(r, 400, "invalid", "%s", bad);
		return;
	}
	if (emu_parse_goog_hash(emu_req_header(req, "x-goog-hash"), crc, sizeof(crc), md5,
				sizeof(md5)) < 0) {
		emu_resp_error(r, 400, "invalid", "Malformed x-goog-hash header");
		return;
	}
	data = emu_req_take_body(req);
	if (!data) {
		emu_resp_error(r, 500, "backendError", "Out of memory.");
		return;
	}
	blob = gst_blob_take(g->store, data, req->body_len);
	if (!blob) {
		emu_resp_error(r, 500, "backendError", "The emulator could not store the data.");
		return;
	}
	if (check_sums(r, blob, crc, md5) < 0) {
		gst_blob_discard(blob);
		return;
	}
	if (ctype && *ctype)
		spec.attr[GST_CONTENT_TYPE] = strdup(ctype);
	if ((ctype = emu_req_query(req, "contentEncoding")))
		spec.attr[GST_CONTENT_ENCODING] = strdup(ctype);
	publish(g, e, req, r, bucket, name, blob, &spec, c);
}

static void insert_multipart(struct gcs *g, struct emu *e, const struct emu_req *req,
			     struct emu_resp *r, const char *bucket, const struct gst_cond *c)
{
	char boundary[80], why[160], hcrc[64], hmd5[64];
	struct emu_multipart mp;
	struct gst_spec spec = { 0 };
	struct gst_blob *blob = NULL;
	json_t *meta = NULL;
	json_error_t jerr;
	const char *name, *crc, *md5;

	r->kind = "gcs.objects.insert.multipart";
	if (emu_parse_boundary(emu_req_header(req, "Content-Type"), boundary,
			       sizeof(boundary)) < 0) {
		emu_resp_error(r, 400, "invalid",
			       "Multipart upload needs Content-Type multipart/related with a boundary");
		return;
	}
	if (emu_parse_multipart(req->body, req->body_len, boundary, &mp, why, sizeof(why)) < 0) {
		emu_resp_error(r, 400, "invalid", "Malformed multipart body: %s", why);
		return;
	}
	if (mp.nparts != 2) {
		emu_resp_error(r, 400, "invalid",
			       "Multipart upload needs exactly 2 parts (metadata, data), got %d",
			       mp.nparts);
		return;
	}
	meta = json_loadb(mp.part[0].data, mp.part[0].len, 0, &jerr);
	if (!json_is_object(meta)) {
		emu_resp_error(r, 400, "parseError", "Metadata part is not a JSON object");
		goto out;
	}
	name = insert_name_spec(req, meta, &spec, r);
	if (!name)
		goto out;
	if (!spec.attr[GST_CONTENT_TYPE] && mp.part[1].ctype_len)
		spec.attr[GST_CONTENT_TYPE] = strndup(mp.part[1].ctype, mp.part[1].ctype_len);
	if (sums_from_json(r, meta, &crc, &md5) < 0)
		goto out;
	if (emu_parse_goog_hash(emu_req_header(req, "x-goog-hash"), hcrc, sizeof(hcrc), hmd5,
				sizeof(hmd5)) < 0) {
		emu_resp_error(r, 400, "invalid", "Malformed x-goog-hash header");
		goto out;
	}
	blob = gst_blob_copy(g->store, mp.part[1].data, mp.part[1].len);
	if (!blob) {
		emu_resp_error(r, 500, "backendError", "The emulator could not store the data.");
		goto out;
	}
	if (check_sums(r, blob, crc, md5) < 0 || check_sums(r, blob, hcrc, hmd5) < 0) {
		gst_blob_discard(blob);
		goto out;
	}
	publish(g, e, req, r, bucket, name, blob, &spec, c);
out:
	gst_spec_release(&spec);
	json_decref(meta);
}

/* objects.insert without media (POST /storage/v1/b/B/o): an empty object
 * described by the JSON body. */
static void insert_metadata_only(struct gcs *g, struct emu *e, const struct emu_req *req,
				 struct emu_resp *r, const char *bucket)
{
	struct gst_cond c;
	struct gst_spec spec = { 0 };
	struct gst_blob *blob;
	json_t *body = NULL;
	const char *name;

	r->kind = "gcs.objects.insert.metadata";
	if (cond_from_query(req, "if", &c, r) < 0 || body_json(req, r, &body) < 0)
		return;
	name = insert_name_spec(req, body, &spec, r);
	if (!name)
		goto out;
	blob = gst_blob_copy(g->store, "", 0);
	if (!blob) {
		emu_resp_error(r, 500, "backendError", "Out of memory.");
		goto out;
	}
	publish(g, e, req, r, bucket, name, blob, &spec, &c);
out:
	gst_spec_release(&spec);
	json_decref(body);
}

/* --- resumable uploads ------------------------------------------------ */

/* Preconditions on a destination checked without writing: a dry run for
 * a resumable upload when it starts and for the calls of a rewrite that do
 * not complete yet (the write itself checks them again, atomically). */
static int dest_cond_ok(struct gcs *g, const char *bucket, const char *name,
			const struct gst_cond *c)
{
	struct gst_obj *o = NULL;
	int rc = gst_obj_get(g->store, bucket, name, 0, NULL, &o);
	int64_t gen = o ? o->generation : 0;
	int ok = 1;

	if (rc == GST_ENOBUCKET)
		return GST_ENOBUCKET;
	if (c->has_gen && c->gen != gen)
		ok = 0;
	if (c->has_meta && (!o || c->meta != o->metageneration))
		ok = 0;
	if (c->has_not_gen && c->not_gen == gen)
		ok = 0;
	if (c->has_not_meta && o && c->not_meta == o->metageneration)
		ok = 0;
	gst_obj_unref(o);
	return ok ? GST_OK : GST_EPRECOND;
}

static void resumable_start(struct gcs *g, struct emu *e, const struct emu_req *req,
			    struct emu_resp *r, const char *bucket, const struct gst_cond *c)
{
	json_t *meta = NULL;
	struct gst_spec scratch = { 0 };
	struct gst_sess *ss = NULL;
	const char *name, *v, *crc, *md5;
	int64_t declared = -1;
	int rc;

	r->kind = "gcs.objects.insert.resumable";
	if (body_json(req, r, &meta) < 0)
		return;
	name = insert_name_spec(req, meta, &scratch, r);
	if (!name)
		goto out;
	if (meta && sums_from_json(r, meta, &crc, &md5) < 0)
		goto out;
	if ((v = emu_req_header(req, "X-Upload-Content-Length")) && *v) {
		if (emu_parse_i64(v, &declared) < 0 || declared < 0) {
			emu_resp_error(r, 400, "invalid", "Invalid X-Upload-Content-Length: %s", v);
			goto out;
		}
	}
	/* preconditions are checked now and again when the upload completes */
	rc = dest_cond_ok(g, bucket, name, c);
	if (rc) {
		store_error(r, rc, 0, bucket, name);
		goto out;
	}
	if (!meta)
		meta = json_object();
	if (!json_object_get(meta, "name"))
		json_object_set_new(meta, "name", json_string(name));
	rc = gst_sess_create(g->store, bucket, name, meta, c,
			     emu_req_header(req, "X-Upload-Content-Type"), declared, &ss);
	if (rc) {
		store_error(r, rc, 0, bucket, name);
		goto out;
	}
	emu_stat_add(e, "gcs.upload_sessions_started", 1);
	emu_resp_text(r, 200, "text/plain", "", 0);
	emu_resp_header(r, "Location", "%s/upload/storage/v1/b/%s/o?uploadType=resumable&upload_id=%s",
			emu_base_url(e), bucket, ss->id);
	emu_resp_header(r, "X-GUploader-UploadID", "%s", ss->id);
	gst_sess_unref(ss);
out:
	gst_spec_release(&scratch);
	json_decref(meta);
}

/* 308 "resume incomplete" with the persisted range (Go clients ask for a
 * 200 with an override header instead: X-GUploader-No-308). */
static void reply_incomplete(const struct emu_req *req, struct emu_resp *r, uint64_t persisted)
{
	emu_resp_incomplete(r, emu_req_header(req, "X-GUploader-No-308"), persisted);
}

/* The object a completed session made (200), or a minimal resource when it
 * has since gone. ss->mu held. */
static void reply_done(struct gcs *g, struct emu *e, const struct emu_req *req,
		       struct emu_resp *r, struct gst_sess *ss)
{
	struct gst_obj *o = NULL;
	char gen[24];

	if (gst_obj_get(g->store, ss->bucket, ss->name, ss->result_gen, NULL, &o) == GST_OK) {
		reply_obj(e, req, r, 200, o);
		gst_obj_unref(o);
		return;
	}
	fmt_i64(ss->result_gen, gen);
	reply_json(req, r, 200, json_pack("{s:s, s:s, s:s, s:s}", "kind", "storage#object",
					  "bucket", ss->bucket, "name", ss->name,
					  "generation", gen));
}

/* All bytes are in: verify and publish. ss->mu held. */
static void sess_commit(struct gcs *g, struct emu *e, const struct emu_req *req,
			struct emu_resp *r, struct gst_sess *ss)
{
	struct gst_spec spec = { 0 };
	struct gst_blob *blob = NULL;
	struct gst_obj *o = NULL;
	const char *crc = NULL, *md5 = NULL;
	char why[160], hcrc[64], hmd5[64];
	int rc;

	if (ss->meta && (gst_spec_from_json(&spec, ss->meta, why, sizeof(why)) < 0 ||
			 sums_from_json(r, ss->meta, &crc, &md5) < 0)) {
		/* validated when the session started; only memory can fail here */
		emu_resp_error(r, 500, "backendError", "Out of memory.");
		goto out;
	}
	/* the final request may carry the whole object's checksums too (the
	 * Node client sends them there); a malformed header fails only this
	 * request: the session and its bytes stay */
	if (emu_parse_goog_hash(emu_req_header(req, "x-goog-hash"), hcrc, sizeof(hcrc), hmd5,
				sizeof(hmd5)) < 0) {
		emu_resp_error(r, 400, "invalid", "Malformed x-goog-hash header");
		goto out;
	}
	if (!spec.attr[GST_CONTENT_TYPE])
		spec.attr[GST_CONTENT_TYPE] = strdup(ss->upload_ctype ? ss->upload_ctype
								      : "application/octet-stream");
	blob = gst_sess_take_blob(g->store, ss);
	if (!blob) {
		emu_resp_error(r, 500, "backendError", "The emulator could not store the data.");
		snprintf(ss->fail_msg, sizeof(ss->fail_msg), "storing the data failed");
		gst_sess_set_state(g->store, ss, GST_SESS_FAILED);
		goto out;
	}
	if (check_sums(r, blob, crc, md5) < 0 || check_sums(r, blob, hcrc, hmd5) < 0) {
		snprintf(ss->fail_msg, sizeof(ss->fail_msg), "checksum mismatch");
		gst_sess_set_state(g->store, ss, GST_SESS_FAILED);
		gst_blob_discard(blob);
		goto out;
	}
	rc = gst_obj_put(g->store, ss->bucket, ss->name, blob, &spec, &ss->cond, &o);
	if (rc) {
		store_error(r, rc, 0, ss->bucket, ss->name);
		snprintf(ss->fail_msg, sizeof(ss->fail_msg), "%s",
			 rc == GST_EPRECOND ? "precondition failed" : "publishing failed");
		gst_sess_set_state(g->store, ss, GST_SESS_FAILED);
		gst_blob_discard(blob);
		goto out;
	}
	gst_blob_unref(blob);
	ss->result_gen = o->generation;
	gst_sess_set_state(g->store, ss, GST_SESS_DONE);
	reply_obj(e, req, r, 200, o);
	gst_obj_unref(o);
out:
	gst_spec_release(&spec);
}

/* PUT/POST on a session URI: a chunk, a status query, or the final request.
 * ss->mu held. */
static void sess_put(struct gcs *g, struct emu *e, const struct emu_req *req,
		     struct emu_resp *r, struct gst_sess *ss)
{
	const char *hdr = emu_req_header(req, "Content-Range");
	struct emu_crange cr;
	uint64_t p = ss->persisted, end, target, less = 0;
	int64_t total;
	int final = 0, resumed = 0;

	if (ss->interrupted) {
		emu_stat_add(e, "gcs.upload_sessions_resumed", 1);
		ss->interrupted = 0;
		resumed = 1;
	}
	if (!hdr) {
		/* a single-request upload: the body is the whole object */
		memset(&cr, 0, sizeof(cr));
		cr.has_total = 1;
		cr.total = req->body_len;
		if (req->body_len) {
			cr.has_range = 1;
			cr.last = req->body_len - 1;
		}
	} else if (emu_parse_content_range(hdr, &cr) < 0) {
		r->kind = "gcs.upload.chunk";
		emu_resp_error(r, 400, "invalid", "Failed to parse Content-Range header.");
		return;
	}
	total = cr.has_total ? (int64_t)cr.total : -1;
	if (total >= 0 && ss->total >= 0 && total != ss->total) {
		r->kind = "gcs.upload.chunk";
		emu_resp_error(r, 400, "invalid",
			       "The total size %" PRId64 " differs from the %" PRId64 " given before.",
			       total, ss->total);
		return;
	}
	if (total >= 0 && (uint64_t)total < p) {
		r->kind = "gcs.upload.chunk";
		emu_resp_error(r, 400, "invalid",
			       "The total size %" PRId64 " is less than the %" PRIu64
			       " bytes already persisted.", total, p);
		return;
	}
	if (!cr.has_range) {
		r->kind = "gcs.upload.status";
		if (req->body_len && !req->truncated) {
			emu_resp_error(r, 400, "invalid",
				       "A status query (Content-Range: bytes */N) must have no body.");
			return;
		}
		if (total >= 0)
			ss->total = total;
		if (total >= 0 && (uint64_t)total == p) {
			sess_commit(g, e, req, r, ss);
			return;
		}
		if (!resumed)
			ss->interrupted = 1;  /* the client is resuming: count its next request */
		reply_incomplete(req, r, p);
		return;
	}
	r->kind = "gcs.upload.chunk";
	if (cr.open_end || req->truncated) {
		end = cr.first + req->body_len;
	} else {
		end = cr.last + 1;
		if (end - cr.first != req->body_len) {
			emu_resp_error(r, 400, "invalid",
				       "Content-Range covers %" PRIu64 " bytes but the body has %zu.",
				       end - cr.first, req->body_len);
			return;
		}
	}
	if (cr.first > p) {
		emu_resp_error(r, 400, "invalid",
			       "Invalid request. According to the Content-Range header, the upload "
			       "offset is %" PRIu64 " byte(s), which exceeds already uploaded size of %"
			       PRIu64 " byte(s).", cr.first, p);
		return;
	}
	if (total >= 0 && end > (uint64_t)total) {
		emu_resp_error(r, 400, "invalid", "The chunk ends beyond the total size.");
		return;
	}
	if (!req->truncated) {
		if (total < 0 && cr.open_end)
			total = (int64_t)end;  /* open end, unknown total: the body is the rest */
		if (total >= 0) {
			ss->total = total;
			final = end == (uint64_t)total;
		}
	}
	/* what to keep: everything when final, else whole 256 KiB units */
	target = final ? end : end / GCS_CHUNK * GCS_CHUNK;
	if (!req->truncated && emu_fault_short308(e, req, &less)) {
		uint64_t t = end > less ? end - less : 0;

		t = t / GCS_CHUNK * GCS_CHUNK;
		if (t < target)
			target = t;
		final = 0;
	}
	if (target > p) {
		/* The checksums are computed by the session's hashing thread
		 * while we answer and the client sends its next chunk (MD5 is
		 * what bounds an upload's speed here); the body moves there
		 * without a copy. */
		char *body = emu_req_take_body(req);
		int rc = body ? gst_sess_append_owned(g->store, ss, body,
						      (size_t)(p - cr.first),
						      (size_t)(target - p))
			      : gst_sess_append(g->store, ss, req->body + (p - cr.first),
						(size_t)(target - p));

		if (rc) {
			store_error(r, rc, 0, ss->bucket, ss->name);
			return;
		}
		emu_stat_add(e, "gcs.upload_bytes_persisted", (int64_t)(target - p));
		p = target;
	}
	if (req->truncated) {
		ss->interrupted = 1;
		emu_resp_text(r, 503, "text/plain", "", 0);  /* discarded by the core */
		return;
	}
	if (final && p == end) {
		sess_commit(g, e, req, r, ss);
		return;
	}
	reply_incomplete(req, r, p);
}

static void upload_session(struct gcs *g, struct emu *e, const struct emu_req *req,
			   struct emu_resp *r, const char *id)
{
	struct gst_sess *ss = gst_sess_find(g->store, id);
	int del = is_method(req, "DELETE");

	r->kind = del ? "gcs.upload.cancel" : "gcs.upload.chunk";
	emu_stat_add(e, "gcs.upload_bytes_received", (int64_t)req->body_len);
	if (!ss) {
		emu_resp_error(r, 404, "notFound", "No such upload session: %.64s", id);
		return;
	}
	pthread_mutex_lock(&ss->mu);
	if (ss->state == GST_SESS_ACTIVE && emu_fault_expire_session(e, req))
		gst_sess_set_state(g->store, ss, GST_SESS_EXPIRED);
	switch (ss->state) {
	case GST_SESS_EXPIRED:
		emu_resp_error(r, 404, "notFound", "The upload session has expired.");
		break;
	case GST_SESS_CANCELLED:
		if (del)
			emu_resp_error(r, 499, "clientClosedRequest", "The upload was cancelled.");
		else
			emu_resp_error(r, 410, "gone", "The upload session was cancelled.");
		break;
	case GST_SESS_FAILED:
		emu_resp_error(r, 410, "gone", "The upload session failed earlier: %s",
			       ss->fail_msg);
		break;
	case GST_SESS_DONE:
		if (del)
			emu_resp_error(r, 410, "gone", "The upload is already complete.");
		else
			reply_done(g, e, req, r, ss);
		break;
	default:
		if (del) {
			gst_sess_set_state(g->store, ss, GST_SESS_CANCELLED);
			emu_resp_error(r, 499, "clientClosedRequest", "The upload was cancelled.");
		} else if (!is_method(req, "PUT") && !is_method(req, "POST")) {
			emu_resp_error(r, 405, "methodNotAllowed",
				       "Use PUT to send data to an upload session");
		} else {
			sess_put(g, e, req, r, ss);
		}
		break;
	}
	pthread_mutex_unlock(&ss->mu);
	gst_sess_unref(ss);
}

static void upload_dispatch(struct gcs *g, struct emu *e, const struct emu_req *req,
			    struct emu_resp *r, const struct route *rt)
{
	const char *id = emu_req_query(req, "upload_id");
	const char *type = emu_req_query(req, "uploadType");
	struct gst_cond c;

	if (rt->kind != R_OBJECTS) {
		r->kind = "gcs.bad_request";
		emu_resp_error(r, 404, "notFound", "Not Found: %s %s", req->method, req->path);
		return;
	}
	if (id) {
		upload_session(g, e, req, r, id);
		return;
	}
	emu_stat_add(e, "gcs.upload_bytes_received", (int64_t)req->body_len);
	if (!is_method(req, "POST")) {
		r->kind = "gcs.bad_request";
		emu_resp_error(r, 405, "methodNotAllowed", "Uploads start with POST");
		return;
	}
	if (cond_from_query(req, "if", &c, r) < 0) {
		r->kind = "gcs.bad_request";
		return;
	}
	if (!type) {
		/* Google infers multipart from the Content-Type */
		const char *ct = emu_req_header(req, "Content-Type");

		type = ct && !strncasecmp(ct, "multipart/", 10) ? "multipart" : "media";
	}
	if (!strcmp(type, "media")) {
		insert_media(g, e, req, r, rt->bucket, &c);
	} else if (!strcmp(type, "multipart")) {
		insert_multipart(g, e, req, r, rt->bucket, &c);
	} else if (!strcmp(type, "resumable")) {
		resumable_start(g, e, req, r, rt->bucket, &c);
	} else {
		r->kind = "gcs.bad_request";
		emu_resp_error(r, 400, "invalid", "Invalid uploadType: %.32s", type);
	}
}

/* --- copy, rewrite, compose ------------------------------------------- */

/* The spec of a copy: the source's settable fields, overridden by what the
 * request body names. */
static int copy_spec(const struct gst_obj *src, const json_t *body, struct gst_spec *sp,
		     struct emu_resp *r)
{
	char why[160];
	int i;

	memset(sp, 0, sizeof(*sp));
	for (i = 0; i < GST_NATTR; i++)
		if (src->attr[i])
			sp->attr[i] = strdup(src->attr[i]);
	if (src->metadata)
		sp->metadata = json_deep_copy(src->metadata);
	if (body && gst_spec_from_json(sp, body, why, sizeof(why)) < 0) {
		emu_resp_error(r, 400, "invalid", "%s", why);
		gst_spec_release(sp);
		return -1;
	}
	sp->component_count = src->component_count;
	return 0;
}

static void copy_or_rewrite(struct gcs *g, struct emu *e, const struct emu_req *req,
			    struct emu_resp *r, const struct route *rt, int rewrite)
{
	struct gst_cond dc, sc;
	struct gst_obj *src = NULL, *dst = NULL;
	struct gst_spec spec;
	json_t *body = NULL, *tokj = NULL;
	const char *tok = emu_req_query(req, "rewriteToken"), *bad, *v;
	int64_t sgen, done = 0, limit = atomic_load(&g->rewrite_max), per;
	char *raw = NULL;
	size_t rawlen = 0;
	int rc;

	r->kind = rewrite ? "gcs.objects.rewrite" : "gcs.objects.copy";
	if (!is_method(req, "POST")) {
		emu_resp_error(r, 405, "methodNotAllowed", "Use POST");
		return;
	}
	if (cond_from_query(req, "if", &dc, r) < 0 || cond_from_query(req, "ifSource", &sc, r) < 0 ||
	    query_gen(req, "sourceGeneration", &sgen, r) < 0 || body_json(req, r, &body) < 0)
		return;
	if ((bad = bad_object_name(rt->dname))) {
		emu_resp_error(r, 400, "invalid", "%s", bad);
		goto out;
	}
	if (rewrite && (v = emu_req_query(req, "maxBytesRewrittenPerCall"))) {
		if (emu_parse_i64(v, &per) < 0 || per <= 0 || per % (1 << 20)) {
			emu_resp_error(r, 400, "invalid",
				       "maxBytesRewrittenPerCall must be a positive multiple of 1 MiB");
			goto out;
		}
		if (per < limit)
			limit = per;
	}
	if (rewrite && tok && *tok) {
		/* {"sb","sn","sg","db","dn","done"}: must name this very rewrite */
		json_error_t jerr;

		raw = emu_token_decode(tok, &rawlen);
		tokj = raw ? json_loadb(raw, rawlen, 0, &jerr) : NULL;
		if (!tokj || json_i64(json_object_get(tokj, "sg"), &sgen) < 0 ||
		    json_i64(json_object_get(tokj, "done"), &done) < 0 ||
		    !json_is_string(json_object_get(tokj, "sb")) ||
		    strcmp(json_string_value(json_object_get(tokj, "sb")), rt->bucket) ||
		    !json_is_string(json_object_get(tokj, "sn")) ||
		    strcmp(json_string_value(json_object_get(tokj, "sn")), rt->name) ||
		    !json_is_string(json_object_get(tokj, "db")) ||
		    strcmp(json_string_value(json_object_get(tokj, "db")), rt->dbucket) ||
		    !json_is_string(json_object_get(tokj, "dn")) ||
		    strcmp(json_string_value(json_object_get(tokj, "dn")), rt->dname) || done < 0) {
			emu_resp_error(r, 400, "invalid", "Invalid rewriteToken.");
			goto out;
		}
	}
	rc = gst_obj_get(g->store, rt->bucket, rt->name, sgen, &sc, &src);
	if (rc) {
		store_error(r, rc == GST_ENOTMOD ? GST_EPRECOND : rc, 0, rt->bucket, rt->name);
		goto out;
	}
	if (rewrite && (uint64_t)limit < (src->blob->len > (uint64_t)done
					   ? src->blob->len - (uint64_t)done : 0)) {
		char gen[24], dstr[24];
		json_t *t;
		char *ts, *enc;

		rc = dest_cond_ok(g, rt->dbucket, rt->dname, &dc);
		if (rc) {
			store_error(r, rc, 0, rt->dbucket, rt->dname);
			goto out;
		}
		done += limit;
		t = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I}", "sb", rt->bucket, "sn", rt->name,
			      "sg", (json_int_t)src->generation, "db", rt->dbucket,
			      "dn", rt->dname, "done", (json_int_t)done);
		ts = t ? json_dumps(t, JSON_COMPACT) : NULL;
		json_decref(t);
		enc = ts ? emu_token_encode(ts, strlen(ts)) : NULL;
		free(ts);
		if (!enc) {
			emu_resp_error(r, 500, "backendError", "Out of memory.");
			goto out;
		}
		fmt_i64((int64_t)src->blob->len, gen);
		fmt_i64(done, dstr);
		reply_json(req, r, 200, json_pack("{s:s, s:s, s:s, s:b, s:s}",
						  "kind", "storage#rewriteResponse",
						  "totalBytesRewritten", dstr, "objectSize", gen,
						  "done", 0, "rewriteToken", enc));
		free(enc);
		goto out;
	}
	if (copy_spec(src, body, &spec, r) < 0)
		goto out;
	rc = gst_obj_put(g->store, rt->dbucket, rt->dname, src->blob, &spec, &dc, &dst);
	if (rc) {
		store_error(r, rc, 0, rt->dbucket, rt->dname);
		goto out;
	}
	if (rewrite) {
		char size[24];
		json_t *res = obj_json(e, dst);

		fmt_i64((int64_t)dst->blob->len, size);
		reply_json(req, r, 200, json_pack("{s:s, s:s, s:s, s:b, s:o}",
						  "kind", "storage#rewriteResponse",
						  "totalBytesRewritten", size, "objectSize", size,
						  "done", 1, "resource", res ? res : json_object()));
	} else {
		reply_obj(e, req, r, 200, dst);
	}
out:
	gst_obj_unref(src);
	gst_obj_unref(dst);
	json_decref(body);
	json_decref(tokj);
	free(raw);
}

static void compose(struct gcs *g, struct emu *e, const struct emu_req *req,
		    struct emu_resp *r, const struct route *rt)
{
	struct gst_cond dc;
	struct gst_obj *srcs[GCS_MAX_COMPOSE] = { 0 }, *dst = NULL;
	struct gst_blob *parts[GCS_MAX_COMPOSE], *blob = NULL;
	struct gst_spec spec = { 0 };
	json_t *body = NULL, *list, *dest, *el;
	size_t n = 0, i;
	int comps = 0, rc;
	char why[160];
	const char *bad;

	r->kind = "gcs.objects.compose";
	if (!is_method(req, "POST")) {
		emu_resp_error(r, 405, "methodNotAllowed", "Use POST");
		return;
	}
	if (cond_from_query(req, "if", &dc, r) < 0 || body_json(req, r, &body) < 0)
		return;
	if ((bad = bad_object_name(rt->name))) {
		emu_resp_error(r, 400, "invalid", "%s", bad);
		goto out;
	}
	list = json_object_get(body, "sourceObjects");
	if (!json_is_array(list) || json_array_size(list) < 1 ||
	    json_array_size(list) > GCS_MAX_COMPOSE) {
		emu_resp_error(r, 400, "invalid",
			       "sourceObjects must list between 1 and %d objects", GCS_MAX_COMPOSE);
		goto out;
	}
	json_array_foreach(list, i, el) {
		const char *sname = json_string_value(json_object_get(el, "name"));
		json_t *gv = json_object_get(el, "generation");
		json_t *pre = json_object_get(json_object_get(el, "objectPreconditions"),
					      "ifGenerationMatch");
		struct gst_cond sc = { 0 };
		int64_t gen = 0;

		if (!sname || (gv && json_i64(gv, &gen) < 0) || gen < 0 ||
		    (pre && json_i64(pre, &sc.gen) < 0)) {
			emu_resp_error(r, 400, "invalid", "sourceObjects[%zu] is malformed", i);
			goto out;
		}
		sc.has_gen = pre != NULL;
		rc = gst_obj_get(g->store, rt->bucket, sname, gen, &sc, &srcs[n]);
		if (rc) {
			store_error(r, rc == GST_ENOTMOD ? GST_EPRECOND : rc, 0, rt->bucket, sname);
			goto out;
		}
		parts[n] = srcs[n]->blob;
		comps += srcs[n]->component_count ? srcs[n]->component_count : 1;
		n++;
	}
	if (comps > 1024) {
		emu_resp_error(r, 400, "invalid", "The composite would have more than 1024 components");
		goto out;
	}
	dest = json_object_get(body, "destination");
	if (dest && gst_spec_from_json(&spec, dest, why, sizeof(why)) < 0) {
		emu_resp_error(r, 400, "invalid", "%s", why);
		goto out;
	}
	if (!spec.attr[GST_CONTENT_TYPE] && srcs[0]->attr[GST_CONTENT_TYPE])
		spec.attr[GST_CONTENT_TYPE] = strdup(srcs[0]->attr[GST_CONTENT_TYPE]);
	spec.component_count = comps;
	blob = gst_blob_concat(g->store, parts, n);
	if (!blob) {
		emu_resp_error(r, 500, "backendError", "The emulator could not store the data.");
		goto out;
	}
	rc = gst_obj_put(g->store, rt->bucket, rt->name, blob, &spec, &dc, &dst);
	if (rc) {
		store_error(r, rc, 0, rt->bucket, rt->name);
		gst_blob_discard(blob);
		blob = NULL;
		goto out;
	}
	reply_obj(e, req, r, 200, dst);
out:
	for (i = 0; i < n; i++)
		gst_obj_unref(srcs[i]);
	gst_obj_unref(dst);
	gst_blob_unref(blob);
	gst_spec_release(&spec);
	json_decref(body);
}

/* --- the service ------------------------------------------------------ */

static int gcs_handle(struct emu *e, void *state, const struct emu_req *req,
		      struct emu_resp *r)
{
	struct gcs *g = state;
	struct route rt;
	const char *fields = emu_req_query(req, "fields");
	const char *alt = emu_req_query(req, "alt");
	int bad = 0;
	struct emu_fields *f;

	if (route_parse(req->path, &rt) < 0) {
		route_release(&rt);
		r->kind = "gcs.bad_request";
		emu_resp_error(r, 404, "notFound", "Not Found: %s %s", req->method, req->path);
		return 0;
	}
	f = emu_fields_parse(fields, &bad);
	emu_fields_free(f);
	if (bad) {
		r->kind = "gcs.bad_request";
		emu_resp_error(r, 400, "invalidParameter", "Invalid field selection %.100s", fields);
		goto out;
	}
	if (req->truncated && !(rt.api == API_UPLOAD && emu_req_query(req, "upload_id"))) {
		/* a request cut mid-body never happened, except for the bytes of
		 * a resumable chunk (persisted as Google does); nobody sees this
		 * reply */
		if (rt.api == API_UPLOAD)
			emu_stat_add(e, "gcs.upload_bytes_received", (int64_t)req->body_len);
		r->kind = "gcs.cut";
		emu_resp_text(r, 503, "text/plain", "", 0);
		goto out;
	}
	if (rt.api == API_UPLOAD) {
		upload_dispatch(g, e, req, r, &rt);
		goto out;
	}
	if (rt.api == API_DOWNLOAD) {
		if (rt.kind != R_OBJECT || !is_read(req)) {
			r->kind = "gcs.bad_request";
			emu_resp_error(r, 404, "notFound", "Not Found: %s %s", req->method, req->path);
		} else {
			object_get(g, e, req, r, &rt, 1);
		}
		goto out;
	}
	switch (rt.kind) {
	case R_BUCKETS:
		if (is_read(req))
			buckets_list(g, e, req, r);
		else if (is_method(req, "POST"))
			buckets_insert(g, e, req, r);
		else
			emu_resp_error(r, 405, "methodNotAllowed", "Use GET or POST");
		break;
	case R_BUCKET:
		bucket_one(g, e, req, r, rt.bucket);
		break;
	case R_OBJECTS:
		if (is_read(req))
			objects_list(g, e, req, r, rt.bucket);
		else if (is_method(req, "POST"))
			insert_metadata_only(g, e, req, r, rt.bucket);
		else
			emu_resp_error(r, 405, "methodNotAllowed", "Use GET or POST");
		break;
	case R_OBJECT:
		if (is_read(req))
			object_get(g, e, req, r, &rt, alt && !strcmp(alt, "media"));
		else if (is_method(req, "PATCH") || is_method(req, "PUT"))
			object_patch(g, e, req, r, &rt);
		else if (is_method(req, "DELETE"))
			object_delete(g, req, r, &rt);
		else
			emu_resp_error(r, 405, "methodNotAllowed", "Method %s not allowed on an object",
				       req->method);
		break;
	case R_COPY:
		copy_or_rewrite(g, e, req, r, &rt, 0);
		break;
	case R_REWRITE:
		copy_or_rewrite(g, e, req, r, &rt, 1);
		break;
	case R_COMPOSE:
		compose(g, e, req, r, &rt);
		break;
	}
	if (!r->kind)
		r->kind = "gcs.bad_request";
out:
	route_release(&rt);
	return 0;
}

static int gcs_control(struct emu *e, void *state, const char *sub,
		       const struct emu_req *req, struct emu_resp *r)
{
	struct gcs *g = state;
	json_t *body = NULL;
	int64_t n;

	(void)e;
	r->kind = "control";
	if (!strcmp(sub, "rewrite_max_bytes")) {
		if (body_json(req, r, &body) < 0)
			return 0;
		if (json_i64(json_object_get(body, "bytes"), &n) < 0 || n < 1) {
			emu_resp_error(r, 400, "invalid", "expected {\"bytes\": N} with N >= 1");
		} else {
			atomic_store(&g->rewrite_max, n);
			emu_resp_json(r, 200, json_pack("{s:I}", "bytes", (json_int_t)n));
		}
		json_decref(body);
		return 0;
	}
	if (!strcmp(sub, "expire_sessions")) {
		int cnt = gst_sess_expire_all(g->store);

		emu_resp_json(r, 200, json_pack("{s:i}", "expired", cnt));
		return 0;
	}
	return -1;
}

static int gcs_init(struct emu *e, void **state)
{
	struct gcs *g = calloc(1, sizeof(*g));
	const char *dd = emu_data_dir(e);
	char *dir = NULL;
	char why[512] = "";

	if (!g)
		return -1;
	atomic_init(&g->rewrite_max, GCS_DEFAULT_REWRITE_MAX);
	if (dd && asprintf(&dir, "%s/gcs", dd) < 0) {
		free(g);
		return -1;
	}
	g->store = gst_open(dir, why, sizeof(why));
	free(dir);
	if (!g->store) {
		emu_log(e, "gcs: %s", why);
		free(g);
		return -1;
	}
	*state = g;
	return 0;
}

static void gcs_reset(struct emu *e, void *state)
{
	struct gcs *g = state;

	(void)e;
	gst_reset(g->store);
	atomic_store(&g->rewrite_max, GCS_DEFAULT_REWRITE_MAX);
}

static void gcs_fini(struct emu *e, void *state)
{
	struct gcs *g = state;

	(void)e;
	if (!g)
		return;
	gst_close(g->store);
	free(g);
}

const struct emu_service emu_gcs_service = {
	.name = "gcs",
	.prefixes = gcs_prefixes,
	.needs_auth = 1,
	.init = gcs_init,
	.handle = gcs_handle,
	.control = gcs_control,
	.reset = gcs_reset,
	.fini = gcs_fini,
};
