/* durafs-emulator Cloud Storage state: buckets, objects with all their
 * generations, resumable upload sessions, and their persistence under the
 * data dir. No HTTP here: emu_gcs.c turns requests into these calls.
 *
 * Threading: one store-wide rwlock guards buckets, object indexes and the
 * session table; each session has its own mutex for its bytes. Lock order:
 * session mutex, then store lock, then the journal mutex. Objects and blobs
 * are immutable once published and reference counted, so a caller may
 * render or send one after the store lock is released. */
#ifndef DURAFS_EMU_GCS_STORE_H
#define DURAFS_EMU_GCS_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "durafs/cksum.h"

/* Results of store calls (the HTTP layer maps them to statuses). */
enum gst_rc {
	GST_OK = 0,
	GST_ENOBUCKET,   /* 404 */
	GST_ENOOBJ,      /* 404 */
	GST_EPRECOND,    /* 412 conditionNotMet */
	GST_ENOTMOD,     /* a *NotMatch precondition failed: 304 on reads, else 412 */
	GST_EEXIST,      /* 409 */
	GST_ENOTEMPTY,   /* 409 */
	GST_EINVAL,      /* 400 */
	GST_ENOMEM,      /* 500 */
	GST_EIO,         /* 500: data dir write failed */
};

/* Immutable bytes shared by object versions and in-flight downloads. */
struct gst_blob {
	atomic_long refs;
	int links;           /* store versions using it; protected by the store lock */
	int unlinked;        /* its file was deleted (links fell to 0); store lock */
	uint64_t id;         /* file blobs/<id> in the data dir; 0 = none */
	char *path;          /* that file, or NULL */
	char *data;          /* len bytes (malloc'd or mmapped); NULL when len 0 */
	uint64_t len;
	int mapped;
	int missing;         /* recovery only: its file was not found */
	uint32_t crc32c;
	unsigned char md5[16];
};

void gst_blob_ref(struct gst_blob *b);
/* Drop a reference; frees (and unmaps) at zero. b may be NULL. Safe as a
 * emu_resp body_free callback (takes void *). */
void gst_blob_unref(void *b);

/* Object string attributes a client may set (JSON keys in this order). */
enum gst_attr {
	GST_CONTENT_TYPE, GST_CACHE_CONTROL, GST_CONTENT_ENCODING,
	GST_CONTENT_DISPOSITION, GST_CONTENT_LANGUAGE, GST_CUSTOM_TIME,
	GST_STORAGE_CLASS, GST_NATTR
};
extern const char *const gst_attr_key[GST_NATTR];

/* What a write sets besides the bytes. */
struct gst_spec {
	char *attr[GST_NATTR];   /* owned, NULL = unset */
	json_t *metadata;        /* owned object or NULL */
	int component_count;     /* > 0 for compose results */
};
/* Read the settable fields of an object resource (client JSON). Returns 0,
 * or -1 with why when a field has the wrong type. Fields already in *sp are
 * replaced only where res names them. */
int gst_spec_from_json(struct gst_spec *sp, const json_t *res, char *why, size_t whysz);
void gst_spec_release(struct gst_spec *sp);

/* One generation of one object. Immutable after publication. */
struct gst_obj {
	atomic_long refs;
	char *bucket;
	char *name;
	int64_t generation;
	int64_t metageneration;
	struct gst_blob *blob;
	char *attr[GST_NATTR];
	json_t *metadata;        /* object or NULL; never mutated once published */
	int component_count;
	int64_t created_ms, updated_ms;
	int64_t deleted_ms;      /* 0 = live; else when it became noncurrent */
};
void gst_obj_ref(struct gst_obj *o);
void gst_obj_unref(struct gst_obj *o);  /* o may be NULL */

/* Preconditions; a flag says whether each is present. */
struct gst_cond {
	int has_gen, has_not_gen, has_meta, has_not_meta;
	int64_t gen, not_gen, meta, not_meta;
};

struct gst_bucket_info {
	char name[224];
	int versioning;
	int64_t created_ms, updated_ms;
	int64_t metageneration;
};

struct gst;

/* Open the store. dir: the data dir for GCS (created if missing; state
 * replayed from it, then its journal compacted) or NULL for memory only.
 * Returns NULL with why on failure (unreadable dir, unwritable journal). */
struct gst *gst_open(const char *dir, char *why, size_t whysz);
/* Close: frees memory; never deletes persisted files. No call may be in
 * progress; in-flight blob/object references stay valid until dropped. */
void gst_close(struct gst *s);
/* Drop every bucket, object and session (and their files). */
void gst_reset(struct gst *s);

/* --- buckets ---------------------------------------------------------- */
int gst_bucket_create(struct gst *s, const char *name, int versioning,
		      struct gst_bucket_info *out);
int gst_bucket_get(struct gst *s, const char *name, struct gst_bucket_info *out);
/* versioning < 0 keeps the flag. */
int gst_bucket_patch(struct gst *s, const char *name, int versioning,
		     const struct gst_cond *c, struct gst_bucket_info *out);
/* GST_ENOTEMPTY while any generation of any object remains. */
int gst_bucket_delete(struct gst *s, const char *name, const struct gst_cond *c);
/* A malloc'd array of every bucket, sorted by name (caller frees). */
int gst_bucket_list(struct gst *s, struct gst_bucket_info **out, size_t *n);

/* --- blobs ------------------------------------------------------------ */
/* New blob holding a copy of len bytes (written to the data dir first when
 * there is one); checksums computed. Returns NULL on ENOMEM / I/O error. */
struct gst_blob *gst_blob_copy(struct gst *s, const void *data, uint64_t len);
/* Like gst_blob_copy, but takes ownership of the malloc'd buffer data
 * (freed on failure too): no copy when the store lives in memory. */
struct gst_blob *gst_blob_take(struct gst *s, char *data, uint64_t len);
/* Concatenation of n blobs (compose). */
struct gst_blob *gst_blob_concat(struct gst *s, struct gst_blob *const *parts, size_t n);
/* Drop a blob that was never published (deletes its data-dir file). */
void gst_blob_discard(struct gst_blob *b);

/* --- objects ---------------------------------------------------------- */
/* Look up the live generation (gen == 0) or generation gen. On GST_OK *out
 * is a new reference. */
int gst_obj_get(struct gst *s, const char *bucket, const char *name, int64_t gen,
		const struct gst_cond *c, struct gst_obj **out);
/* Publish a new live generation with blob (borrowed; referenced) and spec
 * (its contents are stolen, even on failure). Preconditions are checked
 * atomically against the current live generation (absent = generation 0).
 * The previous live generation becomes noncurrent when the bucket keeps
 * versions, else it is dropped. *out (may be NULL) gets a new reference. */
int gst_obj_put(struct gst *s, const char *bucket, const char *name,
		struct gst_blob *blob, struct gst_spec *spec,
		const struct gst_cond *c, struct gst_obj **out);
/* Delete the live generation (gen == 0: it becomes noncurrent in a
 * versioned bucket) or remove generation gen for good. */
int gst_obj_delete(struct gst *s, const char *bucket, const char *name, int64_t gen,
		   const struct gst_cond *c);
/* Patch metadata of the live generation or generation gen: attributes set
 * or removed (JSON null), `metadata` keys merged (null removes). With
 * replace (objects.update), attributes and metadata the body does not name
 * are removed. Bumps the metageneration. GST_EINVAL with why on a bad body. */
int gst_obj_patch(struct gst *s, const char *bucket, const char *name, int64_t gen,
		  const json_t *patch, int replace, const struct gst_cond *c,
		  struct gst_obj **out, char *why, size_t whysz);

/* --- listing ---------------------------------------------------------- */
struct gst_list_args {
	const char *prefix;          /* "" for all */
	const char *delimiter;       /* NULL or "" for none */
	const char *start_offset;    /* NULL: none */
	const char *end_offset;      /* NULL: none */
	int versions;
	int include_trailing_delimiter;
	long max;                    /* items + prefixes on this page, >= 1 */
	const char *token_key;       /* resume point (see emu_page_token_make), or NULL */
	size_t token_keylen;
	int64_t token_gen;
};
struct gst_list_page {
	struct gst_obj **items;      /* new references */
	size_t nitems;
	char **prefixes;             /* sorted, distinct */
	size_t nprefixes;
	int more;                    /* 1: next_key/next_gen say where to resume */
	char *next_key;
	size_t next_keylen;
	int64_t next_gen;
};
int gst_list(struct gst *s, const char *bucket, const struct gst_list_args *a,
	     struct gst_list_page *page);
void gst_list_page_release(struct gst_list_page *page);

/* --- resumable sessions ----------------------------------------------- */
enum gst_sess_state { GST_SESS_ACTIVE, GST_SESS_DONE, GST_SESS_CANCELLED,
		      GST_SESS_FAILED, GST_SESS_EXPIRED };

/* One chunk waiting for a session's hashing thread. */
struct gst_hjob {
	struct gst_hjob *next;
	char *buf;                   /* owned; freed once hashed */
	const char *data;            /* the bytes to hash, inside buf */
	size_t len;
};

struct gst_sess {
	atomic_long refs;
	pthread_mutex_t mu;          /* guards everything below that changes */
	char id[33];
	char *bucket, *name;         /* immutable */
	json_t *meta;                /* initiating metadata (immutable) */
	struct gst_cond cond;        /* immutable */
	char *upload_ctype;          /* X-Upload-Content-Type, or NULL */
	int64_t declared_total;      /* X-Upload-Content-Length or -1 */
	int64_t total;               /* known total (declared or from a chunk), -1 */
	int64_t created_ms;
	int64_t ended_ms;            /* when it left ACTIVE (0 while active) */
	int state;                   /* enum gst_sess_state */
	uint64_t persisted;
	int interrupted;             /* next request counts as a resume */
	int64_t result_gen;          /* DONE: the generation it created */
	char fail_msg[160];          /* FAILED: why */
	/* bytes: memory buffer, or an append-only file in the data dir */
	char *buf;
	size_t cap;
	int fd;
	char *path;
	/* Checksums of the persisted bytes. crc, md5 and md5_ok belong to
	 * the hashing thread while it runs (see gst_sess_append_owned);
	 * everyone else reads or changes them only with ss->mu held and after
	 * sess_hash_drain (take_blob, set_state and unref do that). */
	uint32_t crc;
	struct ck_md5 md5;
	int md5_ok;
	/* The hashing thread (at most one per session; it exits when its
	 * queue is empty and is started again by the next append). hth and
	 * hjoin are changed only with ss->mu held (or by the last unref). */
	pthread_mutex_t hmu;         /* guards the queue fields below */
	pthread_cond_t hcv;          /* queue shrank / thread finished */
	struct gst_hjob *hhead, *htail;
	uint64_t hqueued;            /* bytes queued or being hashed */
	int hrunning;                /* the thread has not finished its queue */
	int hdiscard;                /* drop queued chunks unhashed (session over) */
	int hjoin;                   /* hth must be joined */
	pthread_t hth;
	struct gst_sess *hnext;      /* store hash chain; store lock */
};

/* Create a session (a new reference in *out). meta is referenced. Sessions
 * that ended (done, cancelled, failed, expired) more than a minute ago are
 * forgotten once there are many (they then answer 404, as Google's do
 * eventually). */
int gst_sess_create(struct gst *s, const char *bucket, const char *name, json_t *meta,
		    const struct gst_cond *c, const char *upload_ctype,
		    int64_t declared_total, struct gst_sess **out);
/* Find by id: a new reference, or NULL. */
struct gst_sess *gst_sess_find(struct gst *s, const char *id);
void gst_sess_unref(struct gst_sess *ss);
/* With ss->mu held: append len bytes at ss->persisted (persisting them in
 * the data dir first) and fold them into the checksums before returning.
 * Returns GST_OK, GST_ENOMEM or GST_EIO. */
int gst_sess_append(struct gst *s, struct gst_sess *ss, const void *data, size_t len);
/* Like gst_sess_append for len bytes at buf + off, but the checksums are
 * computed off the caller's path: the bytes are stored (data-dir file or
 * memory buffer) and ss->persisted advanced before it returns, and the
 * chunk is queued, in order, for the session's hashing thread, which
 * frees buf when done. Takes ownership of buf (a malloc'd request body),
 * also on failure. The queue is bounded (64 MiB per session): an append
 * beyond that waits for the thread to catch up. Whoever needs the
 * checksums (gst_sess_take_blob) waits for the queue to drain; when the
 * session ends (gst_sess_set_state to anything but ACTIVE) queued chunks
 * are dropped unhashed. If the thread cannot be started the chunk is
 * hashed inline. Returns GST_OK, GST_ENOMEM or GST_EIO (nothing appended). */
int gst_sess_append_owned(struct gst *s, struct gst_sess *ss, char *buf, size_t off,
			  size_t len);
/* With ss->mu held: record a state change (DONE with result_gen, CANCELLED,
 * FAILED, EXPIRED) and free the bytes of a session that is over. */
void gst_sess_set_state(struct gst *s, struct gst_sess *ss, int state);
/* With ss->mu held: turn the persisted bytes into a blob (the session
 * keeps no bytes afterwards), after every queued chunk was hashed. NULL on
 * ENOMEM / I/O error. */
struct gst_blob *gst_sess_take_blob(struct gst *s, struct gst_sess *ss);
/* Expire every active session (control call); returns how many. */
int gst_sess_expire_all(struct gst *s);

/* Current time in ms since the epoch (for rendering and tests). */
int64_t gst_now_ms(void);

#endif
