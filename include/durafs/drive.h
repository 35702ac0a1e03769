/* Google Drive backend (sync/drive*.c): fills the backend interface
 * (backend.h) over Drive v3, and exposes its pure parts (source, endpoint,
 * the name mapping, query quoting, reply parsers, the batch format) and the
 * trash tools `durafs trash` is built on. */
#ifndef DURAFS_DRIVE_H
#define DURAFS_DRIVE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "durafs/backend.h"
#include "durafs/err.h"
#include "durafs/http.h"

#define DRIVE_DEFAULT_ENDPOINT "https://www.googleapis.com"
/* The emulator convention (like STORAGE_EMULATOR_HOST): the base URL that
 * replaces DRIVE_DEFAULT_ENDPOINT; clients then send no credentials. */
#define DRIVE_ENV_ENDPOINT "DURAFS_DRIVE_ENDPOINT"
#define DRIVE_DEFAULT_CHUNK (8u * 1024u * 1024u)
/* Files below this size go up in one multipart request (Google: 5 MB). */
#define DRIVE_SMALL_MAX (5u * 1024u * 1024u)
/* Export downloads are capped by Google at 10 MB; we accept a bit more. */
#define DRIVE_EXPORT_MAX (16u * 1024u * 1024u)
/* Batch requests carry at most this many calls (Google's limit). */
#define DRIVE_BATCH_MAX 100

#define DRIVE_MIME_FOLDER "application/vnd.google-apps.folder"
#define DRIVE_MIME_SHORTCUT "application/vnd.google-apps.shortcut"
#define DRIVE_MIME_APPS "application/vnd.google-apps."
/* appProperties key marking a symbolic link (its value is the target; the
 * content holds the target too, as on GCS). */
#define DRIVE_PROP_SYMLINK "durafsSymlinkTarget"
/* Drive takes at most 124 bytes per app property, key and value together
 * (UTF-8): the longest symlink target it stores. */
#define DRIVE_PROP_MAX 124
#define DRIVE_SYMLINK_MAX (DRIVE_PROP_MAX - (sizeof(DRIVE_PROP_SYMLINK) - 1))

/* --- the source: which folder is the mount's root -------------------------
 *
 *   drive:                      My Drive
 *   drive:PATH                  a folder under My Drive (mapped names)
 *   drive:id=FOLDER_ID[/PATH]   a folder by id (any drive), then PATH
 *   drive:shared=NAME[/PATH]    a shared drive by name (resolved through
 *                               GET /drives; several of that name: error)
 *   drive:shared_id=ID[/PATH]   a shared drive by id
 *
 * PATH uses the names the mount shows (see the name mapping below), so
 * "drive:a／b" is the folder Drive calls "a/b". A shared drive NAME may
 * not contain '/' (write it as '／'). */
enum drive_root_kind {
	DRIVE_ROOT_MY = 0,
	DRIVE_ROOT_ID = 1,
	DRIVE_ROOT_SHARED_NAME = 2,
	DRIVE_ROOT_SHARED_ID = 3,
};
struct drive_source {
	int kind;                 /* enum drive_root_kind */
	char *ref;                /* folder id, shared drive name or id; NULL
				   * for DRIVE_ROOT_MY */
	char *path;               /* "" or a valid backend path under it */
};
/* Parse src into *out (zeroed first; release it whatever the result).
 * ERR_INVAL naming the problem when malformed. */
int drive_parse_source(const char *src, struct drive_source *out, struct err *err);
void drive_source_release(struct drive_source *s);

/* The endpoint to use: explicit when non-NULL and non-empty, else
 * $DURAFS_DRIVE_ENDPOINT (with "http://" added when it has no scheme), else
 * DRIVE_DEFAULT_ENDPOINT; trailing '/' removed. *emulated (may be NULL) = 1
 * when it came from the environment (clients then skip auth). */
int drive_endpoint(const char *explicit_ep, char *out, size_t len, int *emulated,
		   struct err *err);

/* --- names ------------------------------------------------------------------
 *
 * Drive names may contain '/', may be "." or "..", and one folder may hold
 * several items of one name. The mount shows every valid item under a
 * distinct POSIX name, and maps each shown name back to exactly one item:
 *
 *   Drive name              shown as
 *   "a/b"                   "a／b"        (U+FF0F FULLWIDTH SOLIDUS)
 *   "." / ".."              "．" / "．．"  (U+FF0E FULLWIDTH FULL STOP)
 *   "a／b" (literal U+FF0F) "a‛／b"       (U+201B marks a literal)
 *   "x‛y" (literal U+201B)  "x‛‛y"
 *   "．" / "．．" (literal)  "‛．" / "‛．‛．"
 *
 * drive_name_decode is the exact inverse. A shown name in which U+201B is
 * not followed by U+201B or U+FF0F (outside the two whole-name forms
 * above) is not the image of any Drive name: creating it fails with
 * ERR_INVAL (EINVAL). Drive names that are empty, hold a NUL, or whose
 * shown form exceeds 255 bytes are skipped with a warning.
 *
 * Then, in one folder, items whose shown names are equal (duplicates, and
 * a Google Doc "r" shown as "r.docx" next to a file "r.docx"): the oldest
 * (createdTime, then id) keeps the plain name, each other one gets the
 * suffix " (h)" before its extension (files) or at the end (folders),
 * where h is the first 6 hex digits of the MD5 of its file id: "r.docx",
 * "r (1a2b3c).docx". A suffixed name that would collide with another shown
 * name takes 2 more digits until it is unique. The result depends only on
 * the folder's content, so it is stable across listings.
 */

/* Drive name (len bytes) -> shown name (malloc'd), or NULL when it cannot be
 * shown (empty, NUL, result over 255 bytes) or out of memory (*oom = 1;
 * oom may be NULL). */
char *drive_name_encode(const char *name, size_t len, int *oom);
/* Shown name -> Drive name (malloc'd), or NULL when name is not a valid
 * POSIX name or not the image of a Drive name (see above), or out of
 * memory (*oom = 1). */
char *drive_name_decode(const char *name, size_t len, int *oom);

/* One item of a folder for drive_names_assign. */
struct drive_name_in {
	const char *name;         /* Drive name */
	size_t name_len;
	const char *id;           /* file id */
	const char *ext;          /* export extension appended (".docx"), or NULL */
	int is_dir;
	struct timespec ctime;    /* createdTime */
};
/* Shown names of the n items of one folder: out[i] is malloc'd, or NULL when
 * item i cannot be shown (counted in *skipped, logged). bases (may be NULL)
 * receives each item's shown name before de-duplication (malloc'd or NULL).
 * Returns 0, or -1 (ERR_NOMEM; nothing allocated remains). Pure apart from
 * warnings. */
int drive_names_assign(const struct drive_name_in *in, size_t n, char **out, char **bases,
		       size_t *skipped, struct err *err);
/* The suffixed form of a shown name base: "name (HEX).ext" with the first
 * digits hex digits of MD5(id) (2..32). malloc'd, NULL when out of memory or
 * longer than 255 bytes. */
char *drive_name_suffixed(const char *base, const char *id, int is_dir, int digits);

/* Google Docs types shown as exports. */
struct drive_export {
	const char *mime;         /* application/vnd.google-apps.document ... */
	const char *ext;          /* ".docx" */
	const char *export_mime;  /* what files.export is asked for */
};
/* The export of a Google Docs type, or NULL (not exportable, or not a Docs
 * type). */
const struct drive_export *drive_export_for(const char *mime);

/* A string literal for a files.list query: s between single quotes with
 * '\' and '\'' escaped by '\'. malloc'd, NULL when out of memory. */
char *drive_q_quote(const char *s);

/* --- reply parsing (pure; fuzzed by tests/fuzz/fuzz_drive_parse.c) ---------- */

/* A file resource as Drive describes it. Strings are malloc'd. */
struct drive_file {
	char *id;                 /* required: 1-127 bytes of [A-Za-z0-9_-.] */
	char *name;               /* may hold NULs (name_len) */
	size_t name_len;
	char *mime;               /* required */
	char *parent;             /* first of parents[], or NULL */
	char *drive_id;           /* shared drive, or NULL */
	int has_size;
	uint64_t size;
	int has_md5;
	unsigned char md5[16];    /* md5Checksum (hex on the wire) */
	int64_t version;          /* 0 when absent */
	struct timespec mtime;    /* modifiedTime; 0 when absent */
	struct timespec ctime;    /* createdTime; 0 when absent */
	struct timespec ttime;    /* trashedTime; 0 when absent */
	int trashed;
	int explicitly_trashed;
	char *target_id;          /* shortcutDetails.targetId, or NULL */
	char *target_mime;        /* shortcutDetails.targetMimeType, or NULL */
	char *symlink_target;     /* appProperties[DRIVE_PROP_SYMLINK], or NULL */
};
void drive_file_release(struct drive_file *f);
/* Deep copy (dst zeroed first). 0, or -1 (ERR_NOMEM). */
int drive_file_copy(struct drive_file *dst, const struct drive_file *src, struct err *err);
/* Fill *out (zeroed first) from a file resource. Required: id, mimeType;
 * everything else optional but type-checked (size and version as int64
 * strings or numbers, md5Checksum as 32 hex digits, times RFC 3339).
 * ERR_PARSE naming the field on anything malformed. */
int drive_file_from_json(const json_t *j, struct drive_file *out, struct err *err);
/* Same from a reply body. */
int drive_parse_file(const char *buf, size_t len, struct drive_file *out, struct err *err);

/* One page of files.list. */
struct drive_page {
	struct drive_file *files;
	size_t n;
	char *next_token;         /* NULL on the last page */
	int incomplete;           /* incompleteSearch was true */
};
void drive_page_release(struct drive_page *p);
/* Parse a list reply (zeroes *out first; on failure *out is empty). An
 * empty page with a token is valid. */
int drive_parse_list_page(const char *buf, size_t len, struct drive_page *out,
			  struct err *err);

/* One change of changes.list. */
struct drive_change {
	char *file_id;            /* required */
	int removed;              /* removed for good (or no longer visible) */
	int has_file;
	struct drive_file file;   /* its latest state (has_file) */
};
/* One page of changes.list: either next_token (more pages follow) or
 * new_start (the last page: where the next poll starts) is set. */
struct drive_changes_page {
	struct drive_change *v;
	size_t n;
	char *next_token;
	char *new_start;
};
void drive_changes_page_release(struct drive_changes_page *p);
/* Parse a changes.list reply (zeroes *out first; on failure *out is
 * empty). ERR_PARSE when malformed: a change without fileId, a file that
 * does not parse, neither or both of nextPageToken / newStartPageToken. */
int drive_parse_changes_page(const char *buf, size_t len, struct drive_changes_page *out,
			     struct err *err);
/* changes.getStartPageToken reply: the token, malloc'd, or NULL with *err. */
char *drive_parse_start_token(const char *buf, size_t len, struct err *err);

/* files.generateIds reply: up to max ids (each valid as a file id) into
 * ids[] (malloc'd each). Returns the count, or -1 with *err. */
int drive_parse_ids(const char *buf, size_t len, char **ids, size_t max, struct err *err);

/* --- batch requests (multipart/mixed) -------------------------------------- */

/* Build the body of a batch of n DELETE calls (n <= DRIVE_BATCH_MAX) on the
 * file ids ids[0..n), with Content-ID "<item-i>" for call i, boundary
 * boundary. api_path is the API's path ("/drive/v3"). Returns a malloc'd
 * body (*len bytes) or NULL (out of memory, or an id that is not a valid
 * file id: ERR_INVAL). */
char *drive_batch_delete_body(const char *boundary, const char *api_path,
			      const char *const *ids, size_t n, size_t *len, struct err *err);

/* One call's answer in a batch reply. */
struct drive_batch_part {
	long index;               /* i of "<response-item-i>", -1 when unknown */
	long status;              /* HTTP status of the call */
	char reason[64];          /* Google's errors[0].reason, "" when none */
};
/* Parse a multipart/mixed batch reply whose Content-Type header value is
 * ctype (the boundary comes from it). Parts may come in any order; each
 * part's Content-ID "<response-item-N>" gives N. Fills parts[0..max) and
 * *n. Returns 0, or -1 with ERR_PARSE when the body or a part is malformed
 * (no boundary, no closing delimiter, a part without an HTTP status line,
 * more parts than max). */
int drive_parse_batch_reply(const char *ctype, const char *body, size_t len,
			    struct drive_batch_part *parts, size_t max, size_t *n,
			    struct err *err);

/* --- the backend --------------------------------------------------------- */

enum drive_docs_mode {
	DRIVE_DOCS_EXPORT = 0,    /* Google Docs shown read-only as exports */
	DRIVE_DOCS_HIDE = 1,      /* not shown */
};
enum drive_delete_mode {
	DRIVE_DELETE_TRASH = 0,   /* remove/rmdir move to the trash */
	DRIVE_DELETE_PERMANENT = 1, /* DELETE for good */
};

struct drive_opts {
	const char *source;       /* "drive:..." (drive_parse_source); required */
	const char *endpoint;     /* NULL: drive_endpoint() rules */
	struct http *http;        /* borrowed: must outlive the backend */
	int docs;                 /* enum drive_docs_mode (-o docs=) */
	int delete_mode;          /* enum drive_delete_mode (-o delete=) */
	uint64_t chunk_size;      /* resumable chunk; 0: 8 MiB; else a multiple
				   * of 256 KiB */
	long page_size;           /* files.list pageSize; 0: 1000 (1..1000) */
	long cache_ttl_ms;        /* how long a folder's listing answers path
				   * lookups (stat, resolution); 0: 10000,
				   * < 0: never cached */
	int chunk_max_failures;   /* as gcs_opts; 0: 10 */
	long retry_base_ms;       /* first pause after a failed chunk; 0: 500 */
	/* Rate pacing of writes (see drive_pace_stats). After a rate-limit reply
	 * (403 rateLimitExceeded/userRateLimitExceeded, 429) every write of this
	 * backend waits: first until the backoff of that reply is over
	 * (Retry-After, else pace_backoff_ms doubled per consecutive hit up to
	 * pace_backoff_max_ms, with jitter), then writes start at most one per
	 * interval (a batch request counts as one write). The interval starts
	 * at pace_interval_ms, doubles per refused request up to
	 * pace_interval_max_ms, shrinks by 10% per request that went through
	 * and halves after each pace_recover_ms without a refusal; below half
	 * of pace_interval_ms it is dropped (unpaced). Calls refused inside a
	 * batch reply pace drive_delete_ids itself (see there). */
	long pace_backoff_ms;     /* 0: 1000 */
	long pace_backoff_max_ms; /* 0: 32000 */
	long pace_interval_ms;    /* 0: 250 */
	long pace_interval_max_ms; /* 0: 4000 */
	long pace_recover_ms;     /* 0: 20000 */
	int rate_max_retries;     /* rate-limit replies a write absorbs before
				   * failing with ERR_RATE; 0: 12 */
	int batch_threads;        /* purge: batches in flight; 0: 4 */
};

/* Create a Drive backend. Copies what it needs from o (not http). Returns 0
 * and *out, or -1 with *err (ERR_INVAL for a bad source, option or
 * endpoint). Makes no request: the root is resolved by the first call
 * (be_check does it first). */
int drive_new(const struct drive_opts *o, struct be **out, struct err *err);

/* The resolved root folder id ("" before the first successful resolution)
 * into buf. b must be a Drive backend. */
void drive_root_id(struct be *b, char *buf, size_t len);

/* The shared drive the resolved root is on ("" on My Drive or before the
 * first resolution) into buf. b must be a Drive backend. */
void drive_root_drive_id(struct be *b, char *buf, size_t len);

/* Give b the root a previous mount of the same source resolved (its
 * drive_root_id and drive_root_drive_id; drive_id may be NULL or ""), so
 * that it starts without asking the remote (a remount while the remote is
 * unreachable). A root already resolved is kept. ERR_INVAL when an id is
 * malformed. Thread-safe. */
int drive_root_restore(struct be *b, const char *root_id, const char *drive_id,
		       struct err *err);

/* Pacing counters of a Drive backend. */
struct drive_pace_stats {
	uint64_t rate_hits;       /* rate-limit replies seen by writes */
	uint64_t paced_writes;    /* writes that had to wait for the pacer */
	uint64_t paced_ms;        /* total time writes waited */
	long interval_ms;         /* current spacing between writes, 0 = none */
};
void drive_pace_stats(struct be *b, struct drive_pace_stats *out);

/* --- trash ------------------------------------------------------------------ */

/* Receives each trashed item of a listing. Return 0 to go on, non-zero to
 * stop (drive_trash_list then fails with ERR_CANCELED). f is borrowed for
 * the call. */
typedef int (*drive_file_fn)(void *ud, const struct drive_file *f);

/* Every trashed item visible from the backend's drive (My Drive, or the
 * shared drive of the root), through every page. 0 or -1 with *err (a page
 * failing after retries fails the whole listing). */
int drive_trash_list(struct be *b, drive_file_fn fn, void *ud, struct err *err);

/* Progress of drive_delete_ids: items done (deleted or already gone),
 * bytes freed, failures so far. Called from the calling thread. Return
 * non-zero to stop (ERR_CANCELED; batches in flight finish). */
typedef int (*drive_del_progress_fn)(void *ud, uint64_t done, uint64_t bytes,
				     uint64_t failed);

/* Permanently delete the n items ids[] (sizes[] bytes each, may be NULL)
 * through batch requests of up to DRIVE_BATCH_MAX calls, `threads` batches
 * in flight (0: the backend's batch_threads). A call answered 404 counts as
 * done (already gone). A call answered by a rate limit (403/429) is retried
 * in a later batch, and the deletes pace themselves: batches shrink to what
 * the server took, and are spaced to a calls-per-second budget that falls
 * by a quarter after each batch with refused calls and rises by a tenth
 * after each clean one (the first budget: what the server took per second
 * so far). A whole batch refused or failing transiently is retried (the
 * backend's pacer handles a refused request). status[] (may be NULL) receives each item's
 * final HTTP status (204/200 deleted, 404 gone, else the failure) and
 * reasons[] (may be NULL; 64 bytes each) Google's reason. Returns 0 when
 * every item is gone, -1 with *err otherwise (the failures counted in
 * *err's message; the others are done). */
int drive_delete_ids(struct be *b, const char *const *ids, const uint64_t *sizes, size_t n,
		     int threads, drive_del_progress_fn progress, void *ud, long *status,
		     char (*reasons)[64], struct err *err);

/* DELETE /files/trash (emptyTrash; the root's shared drive when on one).
 * Google empties in the background: list the trash to see it go. */
int drive_empty_trash(struct be *b, struct err *err);

#endif
