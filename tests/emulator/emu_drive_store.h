/* durafs-emulator Google Drive state: files and folders (an id table, each
 * folder's children in creation order, a global creation-order index),
 * shared drives, generated ids, the changes log, resumable upload sessions,
 * and their persistence under the data dir. No HTTP here: emu_drive.c turns
 * requests into these calls; failures come back as Google-shaped errors
 * (status, reason, message) for it to render.
 *
 * Threading: one store-wide rwlock guards every file, drive, id and change;
 * each session has its own mutex for its bytes. Lock order: session mutex,
 * then the store lock, then the journal mutex. Blobs (file contents) are
 * immutable and reference counted, so a reply can send one after the store
 * lock is released. */
#ifndef DURAFS_EMU_DRIVE_STORE_H
#define DURAFS_EMU_DRIVE_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "durafs/cksum.h"
#include "emu_drive_q.h"

#define DST_ID_MAX 64
#define DST_FOLDER "application/vnd.google-apps.folder"
#define DST_SHORTCUT "application/vnd.google-apps.shortcut"
#define DST_APPS_PREFIX "application/vnd.google-apps."
#define DST_USER_EMAIL "user@durafs.emulator"

/* A Google-shaped failure: the HTTP layer renders it as
 * {"error":{"code":status,"message":msg,"errors":[{"domain","reason",
 *  "message","location"?,"locationType"?}]}}. */
struct dst_err {
	int status;
	char reason[48];
	char domain[24];        /* "" = "global" */
	char location[32];      /* "" = none */
	char msg[320];
};

/* Immutable bytes of one file version. */
struct dst_blob {
	atomic_long refs;
	int links;               /* files using it; store lock */
	uint64_t id;             /* blobs/<id> in the data dir; 0 = none */
	char *path;
	char *data;              /* len bytes, malloc'd or mmapped; NULL when 0 */
	uint64_t len;
	int mapped;
	unsigned char md5[16];
	unsigned char sha256[32];
};
void dst_blob_ref(struct dst_blob *b);
/* Drop a reference (frees at zero). Takes void * to serve as an emu_resp
 * body_free callback. b may be NULL. */
void dst_blob_unref(void *b);

struct dst;

/* Open the store (dir: the Drive data dir, created if missing, state
 * replayed then the journal compacted; NULL: memory only). NULL with why on
 * failure. */
struct dst *dst_open(const char *dir, char *why, size_t whysz);
/* Free everything (persisted files are kept). No call may be in progress. */
void dst_close(struct dst *s);
/* Drop every file, drive, id, change and session (and their files); a new
 * My Drive root is made. */
void dst_reset(struct dst *s);

/* My Drive's root folder id into out. */
void dst_root_id(struct dst *s, char out[DST_ID_MAX]);

/* --- blobs -------------------------------------------------------------- */
/* New blob adopting the malloc'd buffer data (freed on failure too), or
 * holding a copy of len bytes; written to the data dir first when there is
 * one; md5 and sha256 computed. NULL on ENOMEM / I/O error. */
struct dst_blob *dst_blob_take(struct dst *s, char *data, uint64_t len);
struct dst_blob *dst_blob_copy(struct dst *s, const void *data, uint64_t len);
/* Drop an unpublished blob (its data-dir file is deleted). */
void dst_blob_discard(struct dst_blob *b);

/* --- files -------------------------------------------------------------- */
/* What to create. meta: the client's resource JSON (name, mimeType,
 * parents, id, modifiedTime, createdTime, description, starred,
 * appProperties, properties, shortcutDetails.targetId, originalFilename;
 * with control also trashed, exportSize). */
struct dst_new {
	const json_t *meta;
	struct dst_blob *blob;     /* content (borrowed; referenced on success) or NULL */
	const char *default_mime;  /* when meta has no mimeType (upload Content-Type) */
	int all_drives;            /* supportsAllDrives=true */
	int control;               /* a test's control call: any id, trashed, docs
				    * content, no storage quota check */
};

/* A snapshot of one file, taken under the store lock. */
struct dst_view {
	json_t *res;               /* the full resource (new reference) */
	struct dst_blob *blob;     /* content (new reference), NULL for folders */
	int64_t export_size;       /* Docs: forced export size, 0 = natural */
	int is_folder, is_doc, is_shortcut;
};
void dst_view_release(struct dst_view *v);

/* files.create: 0 with *out, or -1 with *err (404 parent, 400 bad field,
 * 409 id taken, 400 id not generated, 403 storageQuotaExceeded...). */
int dst_create(struct dst *s, const struct dst_new *n, struct dst_view *out,
	       struct dst_err *err);
/* files.get ("root" accepted). */
int dst_get(struct dst *s, const char *id, int all_drives, struct dst_view *out,
	    struct dst_err *err);
/* files.update: patch (name, mimeType, modifiedTime, description, starred,
 * trashed, appProperties/properties merged with null deleting; `parents`
 * refused), addParents/removeParents (comma-separated, may be NULL), and new
 * content (blob, may be NULL). */
int dst_update(struct dst *s, const char *id, const json_t *patch, const char *add_parents,
	       const char *remove_parents, struct dst_blob *blob, int all_drives,
	       struct dst_view *out, struct dst_err *err);
/* files.delete: the file and, for a folder, every descendant. */
int dst_delete(struct dst *s, const char *id, int all_drives, struct dst_err *err);
/* files.emptyTrash of My Drive (drive_id NULL) or a shared drive. Returns
 * the number of files removed (descendants included), or -1 with *err. */
long dst_empty_trash(struct dst *s, const char *drive_id, struct dst_err *err);
/* files.generateIds: n (1..1000) fresh ids into a new JSON array. */
json_t *dst_generate_ids(struct dst *s, int n);

/* Usage of the whole store, in bytes (binary content of every file). */
struct dst_usage {
	int64_t limit;             /* 0: unlimited */
	int64_t usage, usage_trash;
};
void dst_usage(struct dst *s, struct dst_usage *u);
/* Set the storage limit (0 = unlimited); persisted. */
void dst_set_quota(struct dst *s, int64_t limit);

/* --- listing ------------------------------------------------------------ */
/* Which keys of a file resource a listing renders (the rest would be cut by
 * the `fields` selector anyway; rendering 1000 full resources per page is
 * what makes listing slow). all = 1: every key. */
#define DST_MAX_KEYS 48
struct dst_keys {
	int all;
	int n;
	char k[DST_MAX_KEYS][40];
};
int dst_keys_want(const struct dst_keys *k, const char *key);

enum { DST_CORPUS_USER, DST_CORPUS_DRIVE, DST_CORPUS_ALL };
struct dst_list_args {
	const struct dq_node *q;   /* NULL: everything */
	const char *order_by;      /* NULL: creation order */
	long max;                  /* 1..1000 */
	const char *token;         /* pageToken or NULL */
	int corpus;
	const char *drive_id;      /* DST_CORPUS_DRIVE */
	int include_all;           /* includeItemsFromAllDrives */
	const struct dst_keys *keys;  /* NULL: every key */
};
/* One page: *files a new JSON array of full resources, *next a malloc'd
 * token or NULL on the last page. -1 with *err (bad orderBy/token). */
int dst_list(struct dst *s, const struct dst_list_args *a, json_t **files, char **next,
	     struct dst_err *err);

/* --- changes ------------------------------------------------------------ */
/* The token of the next change (changes.getStartPageToken). */
int64_t dst_changes_start(struct dst *s);
/* Changes from token on (at most max, the latest state per file, oldest
 * first): a new JSON array of {"fileId","removed","time","seq",
 * "driveId"?, "file"? (full resource)}; *more and *next say where to go on,
 * else *next is the new start token. drive_id restricts to one shared
 * drive; otherwise include_all adds shared-drive changes to My Drive's. */
json_t *dst_changes_list(struct dst *s, int64_t token, long max, const char *drive_id,
			 int include_all, int *more, int64_t *next);

/* --- shared drives ------------------------------------------------------ */
/* Create a shared drive named name (id NULL: a fresh id; request_id: a
 * drives.create idempotency key, or NULL). *out: the drive resource. */
int dst_drive_create(struct dst *s, const char *name, const char *id, const char *request_id,
		     json_t **out, struct dst_err *err);
int dst_drive_get(struct dst *s, const char *id, json_t **out, struct dst_err *err);
/* All drives (sorted by creation), *next token when more than max. */
int dst_drive_list(struct dst *s, long max, const char *token, json_t **out, char **next,
		   struct dst_err *err);
/* Only an empty drive can be deleted (403 cannotDeleteSharedDrive... as
 * Google: "The shared drive cannot be deleted because it contains items"). */
int dst_drive_delete(struct dst *s, const char *id, struct dst_err *err);

/* --- bulk creation (tests) ---------------------------------------------- */
/* count files named printf(name_fmt-like) prefix + zero-padded index +
 * suffix in parent, all sharing blob (may be NULL: empty files) and mime.
 * One journal write for all. Returns 0 or -1 with *err. */
int dst_bulk(struct dst *s, const char *parent, long count, const char *prefix,
	     const char *suffix, int width, const char *mime, struct dst_blob *blob,
	     int trashed, struct dst_err *err);

/* --- resumable sessions ------------------------------------------------- */
enum dst_sess_state { DST_SESS_ACTIVE, DST_SESS_DONE, DST_SESS_CANCELLED,
		      DST_SESS_FAILED, DST_SESS_EXPIRED };

struct dst_sess {
	atomic_long refs;
	pthread_mutex_t mu;          /* guards what changes below */
	char id[40];
	int update;                  /* 0: files.create, 1: files.update (immutable) */
	char file_id[DST_ID_MAX];    /* update: the target; create: result once done */
	json_t *meta;                /* initiating metadata (immutable) */
	char *add_parents, *remove_parents;  /* update only (immutable) */
	int all_drives;              /* immutable */
	char *upload_ctype;          /* X-Upload-Content-Type or NULL */
	int64_t declared_total;      /* X-Upload-Content-Length or -1 */
	int64_t total;               /* known total, -1 */
	int64_t created_ms, ended_ms;
	int state;
	uint64_t persisted;
	int interrupted;             /* the next request counts as a resume */
	char fail_msg[160];
	char *buf;                   /* memory mode */
	size_t cap;
	int fd;                      /* data dir mode: append-only session file */
	char *path;
	struct ck_md5 md5;
	void *sha;                   /* EVP_MD_CTX for sha256 */
	int sums_ok;
	struct dst_sess *hnext;      /* store lock */
};

/* New session (reference in *out); meta referenced. */
int dst_sess_create(struct dst *s, int update, const char *file_id, json_t *meta,
		    const char *add_parents, const char *remove_parents, int all_drives,
		    const char *upload_ctype, int64_t declared_total, struct dst_sess **out);
struct dst_sess *dst_sess_find(struct dst *s, const char *id);
void dst_sess_unref(struct dst_sess *ss);
/* With ss->mu held: append len bytes at ss->persisted (persisted to the
 * data dir first). 0, or -1 (ENOMEM / I/O). */
int dst_sess_append(struct dst *s, struct dst_sess *ss, const void *data, size_t len);
/* With ss->mu held: record a state change (the result file id in
 * ss->file_id for DONE) and free the bytes of a session that is over. */
void dst_sess_set_state(struct dst *s, struct dst_sess *ss, int state);
/* With ss->mu held: the persisted bytes as a blob (checksums from the
 * running sums). NULL on ENOMEM / I/O. */
struct dst_blob *dst_sess_take_blob(struct dst *s, struct dst_sess *ss);
/* Expire every active session; returns how many. */
int dst_sess_expire_all(struct dst *s);

/* ms since the epoch; RFC 3339 with milliseconds into out. */
int64_t dst_now_ms(void);
void dst_fmt_time(int64_t ms, char out[32]);

#endif
