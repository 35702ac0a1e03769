/* Google Cloud Storage backend (sync/gcs.c): fills the backend interface
 * (backend.h) over the GCS JSON API through the HTTP layer, and exposes its
 * pure parts (source and endpoint parsing, reply parsers, list merging,
 * header parsing) for unit tests and the fuzzer. */
#ifndef DURAFS_GCS_H
#define DURAFS_GCS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "durafs/backend.h"
#include "durafs/err.h"
#include "durafs/http.h"

#define GCS_DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define GCS_DEFAULT_CHUNK (16u * 1024u * 1024u)
/* Longest object name GCS takes, in bytes. */
#define GCS_NAME_MAX 1024

/* Custom metadata keys. mtime: seconds since the epoch as a decimal string
 * (gsutil's convention). A symlink is an object whose content is the target
 * and whose metadata carries the target under GCS_META_SYMLINK (gcsfuse's
 * key GCS_META_SYMLINK_GCSFUSE is recognised too, with any content). */
#define GCS_META_MTIME "goog-reserved-file-mtime"
#define GCS_META_SYMLINK "durafs-symlink-target"
#define GCS_META_SYMLINK_GCSFUSE "gcsfuse_symlink_target"

struct gcs_opts {
	const char *bucket;       /* required */
	const char *prefix;       /* NULL or "" = the whole bucket; else a valid
				   * path ("data/run1"), the mount's root */
	const char *endpoint;     /* NULL: gcs_endpoint() rules */
	struct http *http;        /* borrowed: must outlive the backend */
	uint64_t chunk_size;      /* resumable chunk; 0: 16 MiB; else a
				   * multiple of 256 KiB */
	long page_size;           /* list maxResults; 0: 1000 (1..1000) */
	int chunk_max_failures;   /* consecutive chunk failures without progress
				   * before upload_chunk gives up; 0: 10 */
	long retry_base_ms;       /* first pause after a failed chunk, doubled
				   * each time up to 32x; 0: 500 */
	long rewrite_max_bytes_per_call; /* 0: server default; else a multiple
					  * of 1 MiB (maxBytesRewrittenPerCall) */
};

/* Create a GCS backend. Copies what it needs from o (not http). Returns 0
 * and *out, or -1 with *err (ERR_INVAL for a bad bucket, prefix, chunk
 * size or endpoint). Makes no request (be_check does). */
int gcs_new(const struct gcs_opts *o, struct be **out, struct err *err);

/* Parse "gs://bucket[/prefix[/]]" into malloc'd *bucket and *prefix
 * ("" when none; no leading or trailing '/'). The bucket must follow GCS's
 * naming rules; the prefix must be a valid backend path. */
int gcs_parse_source(const char *src, char **bucket, char **prefix, struct err *err);

/* 1 when name is a valid GCS bucket name. */
int gcs_bucket_valid(const char *name);

/* The endpoint to use: explicit when non-NULL and non-empty, else
 * $STORAGE_EMULATOR_HOST (with "http://" added when it has no scheme),
 * else GCS_DEFAULT_ENDPOINT; trailing '/' removed. *emulated (may be NULL)
 * = 1 when it came from STORAGE_EMULATOR_HOST (clients then skip auth).
 * Returns 0, or -1 with *err when it does not fit or has a bad scheme. */
int gcs_endpoint(const char *explicit_ep, char *out, size_t len, int *emulated,
		 struct err *err);

/* Object name of a mount path: prefix + '/' + path (path when no prefix;
 * the prefix alone for the root), plus a trailing '/' when dir != 0 (a
 * directory's marker or list prefix; the root of an unprefixed mount is "").
 * malloc'd, NULL when out of memory. */
char *gcs_object_name(const char *prefix, const char *path, int dir);

/* --- reply parsing (pure; fuzzed by tests/fuzz/fuzz_gcs_parse.c) ---------- */

/* An object resource as GCS describes it. Strings are malloc'd. */
struct gcs_obj {
	char *name;               /* full object name (may hold NULs: name_len) */
	size_t name_len;
	uint64_t size;
	int64_t generation;
	int64_t metageneration;
	int has_crc32c;
	uint32_t crc32c;
	int has_md5;
	unsigned char md5[16];
	char *content_type;
	struct timespec mtime;    /* metadata mtime, else updated, else 0 */
	char *symlink_target;     /* from metadata, or NULL */
	int noncurrent;           /* timeDeleted present (versions=true lists) */
};
void gcs_obj_release(struct gcs_obj *o);

/* Fill *out (zeroed first) from an object resource. Required: name,
 * generation; everything else optional but type-checked (size and
 * generations as int64 strings or numbers; crc32c and md5Hash as base64 of
 * 4 and 16 bytes). ERR_PARSE naming the field on anything malformed. */
int gcs_obj_from_json(const json_t *j, struct gcs_obj *out, struct err *err);
/* Same from a reply body. */
int gcs_parse_object(const char *buf, size_t len, struct gcs_obj *out,
		     struct err *err);

/* One page of objects.list. */
struct gcs_page {
	struct gcs_obj *items;
	size_t nitems;
	char **prefixes;          /* NUL-free strings (a prefix with a NUL is
				   * counted in bad_prefixes and left out) */
	size_t nprefixes;
	size_t bad_prefixes;
	char *next_token;         /* NULL on the last page */
};
void gcs_page_release(struct gcs_page *p);
/* Parse a list reply (zeroes *out first; on failure *out is empty). An
 * empty page with a token is valid. */
int gcs_parse_list_page(const char *buf, size_t len, struct gcs_page *out,
			struct err *err);

/* Add a page's entries directly under dirprefix (the listed prefix, "" or
 * ending with '/') to l: objects as files/symlinks, "x/" markers as
 * explicit directories, prefixes as implicit ones. The directory's own
 * marker (dirprefix itself) is left out. Names that are not valid POSIX
 * names (empty segment, ".", "..", NUL, > 255 bytes, a '/' inside) are
 * skipped with a warning and counted in l->skipped_invalid. Returns 0, or
 * -1 (ERR_NOMEM). Call be_list_finish when every page is in. */
int gcs_list_add_page(struct be_list *l, const char *dirprefix,
		      const struct gcs_page *pg, struct err *err);

/* Fill a backend entry (zeroed first) from an object, named name. */
int gcs_obj_to_entry(const struct gcs_obj *o, const char *name, size_t name_len,
		     struct be_entry *e, struct err *err);

/* x-goog-hash values ("crc32c=AAAAAA==,md5=..."; call once per header
 * occurrence, results accumulate). Returns 0, or -1 when malformed. */
int gcs_parse_goog_hash(const char *value, int *has_crc32c, uint32_t *crc32c,
			int *has_md5, unsigned char md5[16]);

/* Whether a failed call's error is worth another try after a status query
 * (transport failures, 408, 429, 5xx). */
int gcs_err_transient(const struct err *e);

#endif
