/* durafs remote backends: the one interface that Cloud Storage (sync/gcs.c)
 * and Drive fill, a table of function pointers like curl's vtls, plus the
 * entry/list/version types and shared helpers (sync/backend.c). fs/ and the
 * scheduler talk to a `struct be` and never know which service is behind it. */
#ifndef DURAFS_BACKEND_H
#define DURAFS_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "durafs/cksum.h"
#include "durafs/err.h"

struct http;

/*
 * Conventions for every operation below
 * -------------------------------------
 * - Paths are relative to the mount's root: no leading or trailing '/',
 *   components separated by one '/', "" is the root. Every component is a
 *   valid POSIX name (be_name_valid); anything else fails with ERR_INVAL
 *   before a request is sent.
 * - Thread-safety: one `struct be` is shared by every worker thread; all
 *   operations may be called concurrently on it. A `struct be_upload` is
 *   owned by one caller at a time.
 * - Results: 0 on success, -1 with *err set (err may be NULL). Remote errors
 *   use the http.h mapping (NOTFOUND, PERM, RATE, QUOTA, NOSPC ...). No
 *   operation ever returns a partial result as success.
 * - Every write is guarded (struct be_pre): nothing is overwritten unless
 *   it is still the version the caller saw. When a guard fails the call
 *   fails with ERR_CONFLICT and, where the operation has an entry OUT
 *   parameter (`out` or `cur`), fills it with the current remote entry
 *   (type BE_NONE and version 0 when nothing exists there any more, or
 *   when it could not be fetched).
 * - Entry OUT parameters may be NULL; otherwise they are zeroed first and
 *   the caller releases them (be_entry_release) whatever the result.
 * - A write retried after a lost reply may find its own earlier attempt
 *   committed; backends recognise that (same size and checksums) and report
 *   success rather than a conflict.
 */

/* Entry types. */
enum be_type {
	BE_NONE = 0,     /* absent (conflict reports) */
	BE_FILE = 1,
	BE_DIR = 2,
	BE_SYMLINK = 3,
};

/* Opaque remote version of one entry, small and copyable, so fs/ and the
 * journal can store it (be_version_format/parse) without knowing the
 * backend. GCS: gen = generation, metagen = metageneration, id empty.
 * Drive: id = file id, gen = the file's version number, metagen 0.
 * gen == 0 with an empty id means "does not exist remotely". */
#define BE_ID_MAX 128
struct be_version {
	int64_t gen;
	int64_t metagen;
	char id[BE_ID_MAX];
};

/* One directory entry or stat result. Strings are owned by the entry
 * (be_entry_release frees them). */
struct be_entry {
	char *name;               /* last path component ("" for the root) */
	enum be_type type;
	uint64_t size;            /* bytes; a symlink's target length */
	struct timespec mtime;    /* goog-reserved-file-mtime, else updated */
	struct be_version ver;    /* directories known only as a prefix: 0 */
	int has_crc32c;
	uint32_t crc32c;
	int has_md5;
	unsigned char md5[16];
	char *content_type;       /* or NULL */
	char *symlink_target;     /* BE_SYMLINK: the target when the listing
				   * carries it, else NULL (read the content) */
	int implicit;             /* BE_DIR without a marker object (a GCS
				   * prefix): it vanishes with its last child */
	unsigned flags;           /* BE_EF_* */
};

/* Entry flags (be_entry.flags). GCS sets none. */
enum {
	BE_EF_READONLY = 1 << 0,      /* cannot be written (Drive: Docs exports) */
	BE_EF_SIZE_UNKNOWN = 1 << 1,  /* size is an estimate until read (exports);
				       * open with direct I/O */
};

/* A directory listing: complete, sorted by name (bytewise), names unique. */
struct be_list {
	struct be_entry *v;
	size_t n, cap;
	size_t skipped_invalid;   /* remote names not valid in POSIX (skipped) */
	size_t shadowed;          /* files hidden by a directory of the same
				   * name (see the backend's naming rule) */
};

/* Write guard. BE_PRE_ABSENT: only if nothing exists at the name
 * (GCS ifGenerationMatch=0). BE_PRE_MATCH: only if the remote is still
 * exactly `ver` (GCS ifGenerationMatch=ver.gen; Drive: id and version). */
enum be_pre_kind {
	BE_PRE_ABSENT = 0,
	BE_PRE_MATCH = 1,
};
struct be_pre {
	enum be_pre_kind kind;
	struct be_version ver;    /* BE_PRE_MATCH only */
};

/* What an upload writes besides the bytes. */
struct be_meta {
	uint64_t size;            /* content length in bytes */
	uint32_t crc32c;          /* of the whole content; sent so the server
				   * verifies (GCS) and checked after */
	unsigned char md5[16];
	struct timespec mtime;    /* stored as goog-reserved-file-mtime (GCS) */
	const char *content_type; /* NULL: application/octet-stream */
	unsigned flags;           /* BE_META_* */
};

/* be_meta.flags */
enum {
	BE_META_SUMS_LATE = 1u << 0,  /* crc32c and md5 are not known when the
				       * session begins: they are computed while
				       * the chunks go out and sent with the
				       * final request (be_upload_file; backends
				       * with BE_CAP_SUMS_LATE) */
	BE_META_SUMS_READY = 1u << 1, /* with SUMS_LATE: crc32c and md5 are set
				       * now (the final request carries them) */
	BE_META_SIZE_UNKNOWN = 1u << 2, /* (backends with BE_CAP_STREAM, with
				       * SUMS_LATE) the final size is not known
				       * yet: upload_begin announces none,
				       * upload_chunk sends only full chunks
				       * (meta.size = the bytes available; the
				       * chunk that would be the last one is
				       * refused, ERR_INVAL) and upload_query
				       * asks without a total, so nothing can
				       * complete the upload. A caller that
				       * learns the final size clears the flag
				       * and sets meta.size: the session then
				       * goes on as any other */
};

/* State of one resumable upload: a plain struct the caller may save (the
 * journal stores it) and restore in another process to resume. All fields
 * are plain data; nothing to free. */
#define BE_SESSION_MAX 2048
struct be_upload {
	char session[BE_SESSION_MAX]; /* session URI; "" = not started */
	char path[4096];          /* destination path (messages, conflicts) */
	struct be_meta meta;      /* copy; content_type is not kept (NULL) */
	uint64_t persisted;       /* bytes the server has persisted: the next
				   * chunk starts here */
	uint64_t chunk_size;      /* bytes per chunk (multiple of 256 KiB);
				   * 0 = the backend's default */
	int done;                 /* 1: committed (no more calls needed) */
};

/* Progress of long operations (directory rename, purge). Returns 0 to go
 * on, non-zero to stop (the operation then fails with ERR_CANCELED). Called
 * from the calling thread only. */
typedef int (*be_progress_fn)(void *ud, uint64_t done_items, uint64_t done_bytes);

/* Receives the bytes of a read in order. Returns 0 to go on, non-zero to
 * abort (the read then fails with ERR_CANCELED). */
typedef int (*be_sink_fn)(void *ud, const void *data, size_t len);

/* Capabilities (be_ops.caps). */
enum {
	BE_CAP_COMPOSE = 1 << 0,      /* compose op available (GCS) */
	BE_CAP_IDS_ARE_PATHS = 1 << 1, /* an entry's identity is its path
				       * (GCS): a rename changes identity */
	BE_CAP_DIR_MARKERS = 1 << 2,  /* directories may exist only as name
				       * prefixes (GCS) */
	BE_CAP_TRASH = 1 << 3,        /* delete moves to a trash (Drive) */
	BE_CAP_VERSIONS = 1 << 4,     /* purge removes noncurrent versions */
	BE_CAP_DIR_RENAME_ATOMIC = 1 << 5, /* rename_dir is one call (Drive) */
	BE_CAP_SETATTR = 1 << 6,      /* setattr op available (GCS, Drive) */
	BE_CAP_RMDIR_TREE = 1 << 7,   /* rmdir_tree op: deleting a folder deletes
				       * (trashes) its contents in one call
				       * (Drive) */
	BE_CAP_SUMS_LATE = 1 << 12,   /* resumable uploads may begin without
				       * checksums (BE_META_SUMS_LATE; GCS) */
	BE_CAP_STREAM = 1 << 13,      /* resumable uploads may begin before the
				       * final size is known
				       * (BE_META_SIZE_UNKNOWN; GCS) */
};

/* What setattr changes (be_attr.set): a set of BE_ATTR_* bits, so that more
 * metadata can be added later without changing the call. */
enum {
	BE_ATTR_MTIME = 1 << 0,       /* mtime (GCS: goog-reserved-file-mtime,
				       * whole seconds; Drive: modifiedTime, ms) */
};
struct be_attr {
	unsigned set;             /* BE_ATTR_* */
	struct timespec mtime;    /* BE_ATTR_MTIME */
};

struct be;

/* One remote change, as be_changes reports it. Paths follow the path
 * convention above; every string is borrowed for the callback only. */
struct be_change {
	const char *id;           /* the service's id of the item */
	const char *old_path;     /* where the mount showed the item before the
				   * change, when the backend knows (its
				   * listing cache; Drive: a trashed item's
				   * parent), else NULL */
	const char *new_dir;      /* the directory holding the item now, or
				   * NULL when it is gone, trashed, outside
				   * the mount or its place is unknown */
	const char *new_name;     /* its shown name there, before any
				   * duplicate suffix (NULL when new_dir is,
				   * or when the item is not shown) */
	int gone;                 /* removed, trashed, or moved out of the
				   * mount (Drive: an item deleted for good,
				   * trashed or moved out from a folder it
				   * has not cached -- or never inside --
				   * comes with id alone, old_path and
				   * new_dir NULL: the caller looks for it
				   * in what it stored) */
	enum be_type type;        /* BE_DIR, BE_FILE...; BE_NONE when unknown
				   * (removed items) */
	struct be_version ver;    /* its version now (as in a listing's
				   * entry), zero when gone */
};
/* Receives each change of be_changes in order. Return 0 to go on, non-zero
 * to stop (be_changes then fails with ERR_CANCELED). */
typedef int (*be_change_fn)(void *ud, const struct be_change *c);

/* The table each backend fills. Every function pointer is set except those
 * marked optional (NULL when the capability is absent). Call them through
 * the be_* wrappers below, which also guarantee the backend a non-NULL
 * err. */
struct be_ops {
	const char *name;         /* "gcs", "drive" */
	unsigned caps;

	/* Check that the remote is reachable with our credentials and the root
	 * (bucket, folder) exists. */
	int (*check)(struct be *b, struct err *err);

	/* Read the whole directory `dir` through every page into *out (which
	 * must be zeroed or released; it is filled only on success). A page
	 * failing after retries fails the call; invalid names are skipped with
	 * a warning and counted. ERR_NOTFOUND when `dir` does not exist. */
	int (*list)(struct be *b, const char *dir, struct be_list *out,
		    struct err *err);

	/* Stat one path into *out (zeroed first; caller releases). The root is
	 * a directory. ERR_NOTFOUND when absent. */
	int (*stat)(struct be *b, const char *path, struct be_entry *out,
		    struct err *err);

	/* Deliver bytes [off, off+len) of `path` at version `ver` (never
	 * another version: ERR_NOTFOUND if it is gone; ver NULL or gen 0 means
	 * the current one) to sink, stopping at the end of the object; len
	 * UINT64_MAX reads to the end. A transfer cut midway is continued from
	 * where it stopped. *got (may be NULL) = bytes delivered, also on
	 * failure. A read covering the whole object is verified against its
	 * checksum (ERR_PARSE "checksum mismatch" when it differs). Reading at
	 * or past the end delivers 0 bytes and succeeds. */
	int (*read)(struct be *b, const char *path, const struct be_version *ver,
		    uint64_t off, uint64_t len, be_sink_fn sink, void *ud,
		    uint64_t *got, struct err *err);

	/* Upload the `meta.size` bytes of fd (read with pread from offset 0)
	 * in one request. For small files (see the backend's threshold). On
	 * success *out (may be NULL) is the new entry; on ERR_CONFLICT it is
	 * the current remote entry. */
	int (*put)(struct be *b, const char *path, int fd, const struct be_meta *meta,
		   const struct be_pre *pre, struct be_entry *out, struct err *err);

	/* Create a symbolic link at path pointing to target, guarded by pre. */
	int (*symlink)(struct be *b, const char *path, const char *target,
		       const struct timespec *mtime, const struct be_pre *pre,
		       struct be_entry *out, struct err *err);

	/* Start a resumable upload: fills *up (session, path, meta, persisted
	 * = 0). up->chunk_size is read first: 0 selects the backend's default,
	 * anything else must be a multiple of 256 KiB (ERR_INVAL). The guard is
	 * evaluated when the upload completes (and may fail earlier, here:
	 * ERR_CONFLICT; be_stat then gives the current entry). */
	int (*upload_begin)(struct be *b, const char *path, const struct be_meta *meta,
			    const struct be_pre *pre, struct be_upload *up,
			    struct err *err);

	/* Send the next chunk (from up->persisted, read from fd with pread) and
	 * update up->persisted from the server's answer, which may be less than
	 * was sent. Transient failures (5xx, 429, cut connections) are retried
	 * inside after asking the server what it persisted, so nothing
	 * persisted is sent twice. Returns 1 when the upload is complete (up->
	 * done, *out filled with the new entry), 0 when more chunks remain, -1
	 * on error: ERR_GONE when the session expired or was cancelled (start a
	 * new one), ERR_CONFLICT when the guard failed (*out = current remote),
	 * ERR_PARSE when the server's checksums differ from meta's. */
	int (*upload_chunk)(struct be *b, struct be_upload *up, int fd,
			    struct be_entry *out, struct err *err);

	/* Ask the server what a session has persisted (resuming a session
	 * restored from the journal starts here). Updates up->persisted; returns
	 * 1 when the upload is already complete (*out filled), 0 otherwise,
	 * -1 on error (ERR_GONE: start over). */
	int (*upload_query)(struct be *b, struct be_upload *up, struct be_entry *out,
			    struct err *err);

	/* Cancel a session (best effort; a session already gone succeeds). */
	int (*upload_cancel)(struct be *b, struct be_upload *up, struct err *err);

	/* Create directory `path` (on *out: its entry). Idempotent: succeeds
	 * when the directory exists already (a journal replay, or two clients
	 * creating it), ERR_EXISTS when a file or symlink has that name. */
	int (*mkdir)(struct be *b, const char *path, struct be_entry *out,
		     struct err *err);

	/* Remove the empty directory `path`: ERR_NOTEMPTY when it has any
	 * child, ERR_NOTFOUND when it does not exist. */
	int (*rmdir)(struct be *b, const char *path, struct err *err);

	/* Rename the file or symlink `from` (which must still be `from_ver`)
	 * to `to`, guarded by to_pre (POSIX rename over an existing file: pass
	 * its version). On success *out is the entry at `to`; on ERR_CONFLICT
	 * *out is the current entry of whichever side changed. */
	int (*rename)(struct be *b, const char *from, const struct be_version *from_ver,
		      const char *to, const struct be_pre *to_pre, struct be_entry *out,
		      struct err *err);

	/* Rename directory `from` and everything under it to `to`. Not atomic
	 * on GCS, but idempotent: when interrupted (crash, error), calling it
	 * again with the same arguments finishes the job. Succeeds when `from`
	 * is already gone and `to` exists (a finished earlier run); ERR_NOTFOUND
	 * when neither exists. The caller checks that `to` may be replaced
	 * (POSIX ENOTEMPTY) before journaling the rename. */
	int (*rename_dir)(struct be *b, const char *from, const char *to,
			  be_progress_fn progress, void *ud, struct err *err);

	/* Delete the file or symlink `path` if it is still `ver`
	 * (ERR_CONFLICT otherwise, *cur = current; cur may be NULL).
	 * ERR_NOTFOUND when it is already gone (callers replaying a journal
	 * treat that as done). */
	int (*remove)(struct be *b, const char *path, const struct be_version *ver,
		      struct be_entry *cur, struct err *err);

	/* Permanently remove what the service keeps after deletes under `dir`
	 * ("" = everything): GCS noncurrent generations, Drive trash. */
	int (*purge)(struct be *b, const char *dir, be_progress_fn progress, void *ud,
		     struct err *err);

	/* Optional (BE_CAP_COMPOSE): concatenate the n source paths at their
	 * versions into `to`, guarded by to_pre (a source may be `to` itself:
	 * appending). The result's crc32c is known, its md5 is not. Sources
	 * with a version are guarded by it too (GCS objectPreconditions). When
	 * meta->size is set, the result's size and crc32c are checked against
	 * meta: ERR_PARSE on a mismatch, with *out the committed entry. */
	int (*compose)(struct be *b, const char *to, const struct be_pre *to_pre,
		       const char *const *srcs, const struct be_version *src_vers,
		       size_t n, const struct be_meta *meta, struct be_entry *out,
		       struct err *err);

	/* Optional (BE_CAP_SETATTR): change the metadata of the file or
	 * symlink `path` without re-uploading its content (today its mtime),
	 * if it is still `ver` (GCS: ifGenerationMatch=gen and, when metagen
	 * > 0, ifMetagenerationMatch=metagen; Drive: id and version, checked
	 * before the PATCH). attr->set == 0 changes nothing and reports the
	 * current entry. On success *out (may be NULL) is the new entry: its
	 * version changes (GCS metageneration, Drive version) and the caller
	 * keeps it as the new base. ERR_CONFLICT with *out = the current entry
	 * when the remote changed; ERR_NOTFOUND when it is gone. A retry after
	 * a lost reply that finds the change already made succeeds. Retried
	 * inside on transient failures (the guard makes it safe). */
	int (*setattr)(struct be *b, const char *path, const struct be_version *ver,
		       const struct be_attr *attr, struct be_entry *out, struct err *err);

	/* Free the instance (no call may be running). */
	void (*free)(struct be *b);

	/* Optional (NULL when the service has no change feed, as GCS): the
	 * remote changes since `token` (see be_changes). */
	int (*changes)(struct be *b, const char *token, be_change_fn fn, void *ud,
		       char **new_token, struct err *err);

	/* Optional (BE_CAP_RMDIR_TREE): remove directory `path` with
	 * everything below it in one call (Drive: into the trash, or for good
	 * with -o delete=permanent). ERR_NOTFOUND when it does not exist (a
	 * replay treats that as done); the root is refused (ERR_INVAL). */
	int (*rmdir_tree)(struct be *b, const char *path, struct err *err);

	/* Optional (BE_CAP_COMPOSE): the file `path`, still at version `ver`,
	 * holds exactly the first old_size bytes of fd; make it hold fd's
	 * meta->size bytes by sending only the tail [old_size, meta->size)
	 * (GCS: a temporary object composed onto it with generation
	 * preconditions on the destination and both sources, then deleted).
	 * tail_crc32c is the crc32c of the tail as the caller computed meta:
	 * a tail that reads differently now fails with ERR_INVAL before
	 * anything is sent. The result is checked against meta (size,
	 * crc32c; a composite has no md5). On success *out is the new entry.
	 * ERR_CONFLICT (*out = the current entry) when the remote changed;
	 * ERR_PARSE when the result differs from meta (*out = what was
	 * committed: the caller must upload the whole file guarded by it);
	 * ERR_INVAL when the service refuses to append here (e.g. too many
	 * components): the caller uploads the whole file instead. Nothing is
	 * left behind on failure except, after a crash, an orphaned temporary
	 * (see the backend's docs). */
	int (*append)(struct be *b, const char *path, const struct be_version *ver,
		      uint64_t old_size, uint32_t tail_crc32c, int fd,
		      const struct be_meta *meta, struct be_entry *out, struct err *err);

	/* Optional (NULL: everything allowed): see be_ns_check. */
	int (*ns_check)(struct be *b, const char *path, const char *to);

	/* Optional (NULL: any valid UTF-8 path): see be_path_check. */
	int (*path_check)(struct be *b, const char *path, int dir);

	/* Longest symlink target in bytes the backend stores (0: no limit of
	 * its own; the kernel's PATH_MAX applies). */
	size_t symlink_max;
};

/* The common head of every backend instance; each backend embeds it first
 * and keeps the rest private. */
struct be {
	const struct be_ops *ops;
};

/* --- dispatch: the only way fs/ and the scheduler call a backend --------- */
static inline unsigned be_caps(const struct be *b) { return b->ops->caps; }
static inline const char *be_name(const struct be *b) { return b->ops->name; }
int be_check(struct be *b, struct err *err);
int be_list(struct be *b, const char *dir, struct be_list *out, struct err *err);
int be_stat(struct be *b, const char *path, struct be_entry *out, struct err *err);
int be_read(struct be *b, const char *path, const struct be_version *ver,
	    uint64_t off, uint64_t len, be_sink_fn sink, void *ud, uint64_t *got,
	    struct err *err);
int be_put(struct be *b, const char *path, int fd, const struct be_meta *meta,
	   const struct be_pre *pre, struct be_entry *out, struct err *err);
int be_symlink(struct be *b, const char *path, const char *target,
	       const struct timespec *mtime, const struct be_pre *pre,
	       struct be_entry *out, struct err *err);
int be_upload_begin(struct be *b, const char *path, const struct be_meta *meta,
		    const struct be_pre *pre, struct be_upload *up, struct err *err);
int be_upload_chunk(struct be *b, struct be_upload *up, int fd, struct be_entry *out,
		    struct err *err);
int be_upload_query(struct be *b, struct be_upload *up, struct be_entry *out,
		    struct err *err);
int be_upload_cancel(struct be *b, struct be_upload *up, struct err *err);
int be_mkdir(struct be *b, const char *path, struct be_entry *out, struct err *err);
int be_rmdir(struct be *b, const char *path, struct err *err);
int be_rename(struct be *b, const char *from, const struct be_version *from_ver,
	      const char *to, const struct be_pre *to_pre, struct be_entry *out,
	      struct err *err);
int be_rename_dir(struct be *b, const char *from, const char *to,
		  be_progress_fn progress, void *ud, struct err *err);
int be_remove(struct be *b, const char *path, const struct be_version *ver,
	      struct be_entry *cur, struct err *err);
int be_purge(struct be *b, const char *dir, be_progress_fn progress, void *ud,
	     struct err *err);
/* ERR_INVAL "not supported" when the backend lacks BE_CAP_COMPOSE. */
int be_compose(struct be *b, const char *to, const struct be_pre *to_pre,
	       const char *const *srcs, const struct be_version *src_vers, size_t n,
	       const struct be_meta *meta, struct be_entry *out, struct err *err);
/* ERR_INVAL "not supported" when the backend lacks BE_CAP_SETATTR (test
 * be_caps() first to choose another way). */
int be_setattr(struct be *b, const char *path, const struct be_version *ver,
	       const struct be_attr *attr, struct be_entry *out, struct err *err);
/* ERR_INVAL "not supported" when the backend has no append op. */
int be_append(struct be *b, const char *path, const struct be_version *ver,
	      uint64_t old_size, uint32_t tail_crc32c, int fd, const struct be_meta *meta,
	      struct be_entry *out, struct err *err);
/* 1 when the backend can append a tail (be_append). */
int be_can_append(const struct be *b);
/* The remote changes since token, in order, through every page of the
 * service's feed: fn is called for each; on success *new_token (malloc'd)
 * is where the next call continues. token NULL or "": no change is
 * reported, *new_token is the feed's current position (a start token). A
 * page that fails (after retries) fails the whole call: the caller keeps
 * its old token and asks again later, so no change is ever skipped (some
 * may be reported twice; handling a change must be idempotent).
 * ERR_INVAL "not supported" when the backend has no change feed. */
int be_changes(struct be *b, const char *token, be_change_fn fn, void *ud, char **new_token,
	       struct err *err);
/* 1 when the backend has a change feed (be_changes works). */
int be_has_changes(const struct be *b);
/* The rmdir_tree op; ERR_INVAL "not supported" without BE_CAP_RMDIR_TREE. */
static inline int be_rmdir_tree(struct be *b, const char *path, struct err *err)
{
	struct err local;

	if (!b->ops->rmdir_tree)
		return err_set(err, ERR_INVAL, "%s: no rmdir of a whole tree", b->ops->name);
	return b->ops->rmdir_tree(b, path, err ? err : &local);
}
/* Whether the backend's namespace lets the mount create or remove the
 * entry `path` (to NULL), or rename `path` to `to`, before anything is
 * journaled: BE_NS_OK, BE_NS_FIXED when a directory involved is fixed by
 * the backend (layout=colab's root and Shareddrives/: EPERM), BE_NS_XDEV
 * when from and to lie in different spaces (two drives: EXDEV, so tools
 * copy instead). Pure and fast (no request); thread-safe. */
enum { BE_NS_OK = 0, BE_NS_FIXED = 1, BE_NS_XDEV = 2 };
int be_ns_check(struct be *b, const char *path, const char *to);
/* Whether the remote can store a new entry at `path` (a directory when
 * dir), checked before anything is journaled so that a name the remote
 * would refuse forever fails at once: BE_PATH_OK, BE_PATH_LONG (the remote
 * name would be longer than the backend allows: ENAMETOOLONG),
 * BE_PATH_CHAR (a character the backend refuses: EINVAL). Valid UTF-8 is
 * the caller's check (no backend takes anything else). Pure and fast (no
 * request); thread-safe. */
enum { BE_PATH_OK = 0, BE_PATH_LONG = 1, BE_PATH_CHAR = 2 };
int be_path_check(struct be *b, const char *path, int dir);
/* The longest symlink target b stores, in bytes (0: no limit of its own). */
static inline size_t be_symlink_max(const struct be *b) { return b->ops->symlink_max; }
/* Free b (NULL is fine). */
void be_free(struct be *b);

/* --- whole-file upload on top of the ops --------------------------------- */

/* Called after every step of be_upload_file with the current state, so the
 * caller can persist it (a new session, more bytes persisted). Returns 0 to
 * go on, non-zero to stop (ERR_CANCELED; the state stays resumable). */
typedef int (*be_upload_state_fn)(void *ud, const struct be_upload *up);

/* Upload meta->size bytes of fd to path, guarded by pre: one request when
 * size < small_max, else a resumable session in chunks of up->chunk_size
 * (or the backend's default when 0). If up->session is set (restored from
 * the journal), the session is resumed from the server's persisted offset.
 * A session that expired (ERR_GONE) is restarted from zero transparently,
 * at most `max_restarts` times, and on_state reports the new session. The
 * caller must keep fd's content unchanged meanwhile (if it changed, cancel
 * and start over with new meta). On success *out is the committed entry;
 * on ERR_CONFLICT the current remote one.
 * Hashing while uploading: with BE_META_SUMS_LATE in meta->flags (only
 * meta->size need be set) and a backend with BE_CAP_SUMS_LATE, a file of
 * at least small_max bytes starts its session (or resumes a restored one
 * whose up->meta has BE_META_SUMS_LATE) without checksums; a helper thread
 * computes crc32c and md5 of fd's first meta->size bytes while the chunks
 * go out, and the final request carries them, so the server refuses a
 * body that differs from them (GCS: HTTP 400, ERR_INVAL) and the
 * committed object is checked against them. up->meta then holds them
 * (BE_META_SUMS_READY). Otherwise (no capability, a smaller file) the
 * checksums are computed first, as without the flag. */
int be_upload_file(struct be *b, const char *path, int fd, const struct be_meta *meta,
		   const struct be_pre *pre, uint64_t small_max, int max_restarts,
		   struct be_upload *up, be_upload_state_fn on_state, void *ud,
		   struct be_entry *out, struct err *err);

/* Checksums of the first `off` bytes of a file, computed by the caller
 * (streamed uploads hash what they sent): crc32c and a running MD5 whose
 * context (cksum.h) the callee takes over. */
struct be_sums_prefix {
	uint64_t off;
	uint32_t crc32c;
	struct ck_md5 md5;        /* ctx NULL: none */
};
/* Release the MD5 context and zero *seed. NULL or zeroed: no-op. */
void be_sums_prefix_release(struct be_sums_prefix *seed);

/* be_upload_file whose SUMS_LATE checksums go on from seed (may be NULL)
 * instead of reading the file from 0: only [seed->off, size) is read. The
 * caller vouches that fd's first seed->off bytes are those the sums were
 * computed over (the server then checks the whole object against them).
 * seed is consumed (released) in every case; it is ignored without
 * BE_META_SUMS_LATE. */
int be_upload_file_seeded(struct be *b, const char *path, int fd, const struct be_meta *meta,
			  const struct be_pre *pre, uint64_t small_max, int max_restarts,
			  struct be_upload *up, be_upload_state_fn on_state, void *ud,
			  struct be_entry *out, struct be_sums_prefix *seed, struct err *err);

/* Compute size, crc32c and md5 of fd's whole content (pread from 0; EINTR
 * and short reads handled). Leaves mtime and content_type untouched; clears
 * the BE_META_SUMS_* flags (the sums are known). */
int be_meta_from_fd(int fd, struct be_meta *meta, struct err *err);
/* Like be_meta_from_fd, and in the same single pass the crc32c of the
 * first `split` bytes into *pcrc and of the rest into *tcrc (either may be
 * NULL; when the file is shorter than split, *pcrc is 0, the crc32c of
 * nothing: the caller compares sizes). */
int be_meta_split_from_fd(int fd, uint64_t split, struct be_meta *meta, uint32_t *pcrc,
			  uint32_t *tcrc, struct err *err);

/* --- entries, lists, names ------------------------------------------------ */

/* Free what an entry owns and zero it. Safe on a zeroed entry. */
void be_entry_release(struct be_entry *e);
/* Deep copy src into *dst (zeroed first). 0 or -1 (ERR_NOMEM). */
int be_entry_copy(struct be_entry *dst, const struct be_entry *src, struct err *err);

/* Append a new zeroed entry named name[0..len) to l; returns it, or NULL
 * (out of memory). The name is copied. */
struct be_entry *be_list_add(struct be_list *l, const char *name, size_t len);
/* Sort by name and merge duplicates: directory forms of one name (marker
 * object and prefix) become one entry, the marker's data kept and implicit
 * cleared; a file or symlink that has a directory of the same name is
 * dropped and counted in l->shadowed (the directory wins, as gcsfuse does:
 * the directory's children stay reachable; the hidden object is logged);
 * of two files with one name, one is kept. */
void be_list_finish(struct be_list *l);
/* Binary search of a finished list; NULL when absent. */
const struct be_entry *be_list_find(const struct be_list *l, const char *name);
/* Free every entry and the array; zero l. */
void be_list_release(struct be_list *l);

/* 1 when name[0..len) can be a POSIX directory entry: not empty, not "." or
 * "..", no '/' and no NUL, at most 255 bytes. */
int be_name_valid(const char *name, size_t len);
/* 1 when path follows the path convention above (every component valid,
 * no leading/trailing/double '/'; "" is valid). */
int be_path_valid(const char *path);
/* Pointer to the last component of path (path itself when it has none). */
const char *be_basename(const char *path);

/* Text form of a version for storage: "g<gen>.<metagen>" or "g<gen>.<metagen>:<id>"
 * (the id may contain anything but NUL). Returns 0, or -1 when buf is too
 * small. be_version_parse reverses it (-1 when malformed). */
int be_version_format(const struct be_version *v, char *buf, size_t len);
int be_version_parse(const char *s, struct be_version *v);
/* 1 when both name the same remote version. */
int be_version_equal(const struct be_version *a, const struct be_version *b);

/* RFC 3339 timestamp ("2024-05-01T12:34:56.789Z", offsets allowed) to a
 * timespec. 0, or -1 when malformed. */
int be_parse_rfc3339(const char *s, struct timespec *out);

/* Chunk arithmetic for resumable uploads. BE_CHUNK_ALIGN = 256 KiB. */
#define BE_CHUNK_ALIGN (256u * 1024u)
/* 1 when size is a positive multiple of BE_CHUNK_ALIGN. */
int be_chunk_size_valid(uint64_t size);
/* The next chunk of an upload of `total` bytes after `persisted`: its
 * length (0 when nothing remains) and whether it is the last one. Every
 * chunk but the last is exactly chunk_size (a multiple of 256 KiB). */
uint64_t be_chunk_next(uint64_t total, uint64_t persisted, uint64_t chunk_size,
		       int *last);

/* Fill the local half of up for a session just started (or found already
 * committed) by a backend: path, a copy of *meta with content_type NULL,
 * chunk_size = chunk; committed: persisted = meta->size and done = 1, else
 * persisted = 0 and done = 0. The session URI is left to the caller. */
void be_upload_started(struct be_upload *up, const char *path, const struct be_meta *meta,
		       uint64_t chunk, int committed);

/* A resumable session's 308 reply header "Range: bytes=0-L" (value only):
 * *persisted = L + 1; NULL (absent: nothing persisted yet) gives 0. -1 when
 * malformed, not starting at 0, or out of range. */
int be_range_persisted(const char *value, uint64_t *persisted);
/* A 206 reply's "Content-Range: bytes A-B/TOTAL" (value only): *first = A,
 * *last = B, *total = TOTAL, or UINT64_MAX for '*' (unknown length; a
 * caller that needs the length rejects it). -1 when NULL, malformed, B < A
 * or B >= TOTAL. */
int be_content_range_parse(const char *value, uint64_t *first, uint64_t *last,
			   uint64_t *total);
/* The request header of a resumable upload of total bytes that sends len
 * bytes at off: "Content-Range: bytes off-(off+len-1)/total"; when len is 0
 * (a status query, or a session's empty last step) '*' stands in place of
 * the byte range, and total UINT64_MAX (a size not known yet) is written
 * '*'. Written into buf (size >= 80 always suffices). */
void be_content_range_header(char *buf, size_t size, uint64_t off, uint64_t len,
			     uint64_t total);

/* A random number in [0, max] for retry and pacing jitter (OpenSSL's
 * generator; 0 when max <= 0 or it fails). Thread-safe. */
long be_jitter(long max);
/* Sleep before retry n (0-based) of a failed step: d = base_ms * 2^min(n, 5),
 * then d/2 + be_jitter(d/2) + 1 ms, through http_pause(h) so that a cancel
 * of h (unmount) ends it at once; the next request on h then fails with
 * ERR_CANCELED. Thread-safe. */
void be_backoff(struct http *h, long base_ms, int n);

/* The window of a ranged download (shared by the backends' read paths): the
 * bytes of one or more transfers, each starting at pos (a restart after a
 * cut starts at skip_to; a whole 200 reply starts at 0), are clipped to
 * [skip_to, end) and passed in order to the caller's sink. The backend
 * zeroes it, sets sink, ud, skip_to (the read's offset) and end, and sets
 * pos before each transfer; the rest is kept by be_rdwin_feed. */
struct be_rdwin {
	be_sink_fn sink;
	void *ud;
	uint64_t pos;             /* object offset of the next byte received */
	uint64_t end;             /* stop before this offset (UINT64_MAX: none) */
	uint64_t skip_to;         /* deliver only from this offset on */
	uint64_t delivered;       /* bytes passed to sink */
	int enough;               /* we stopped the transfer ourselves */
	int user_abort;           /* the sink returned non-zero */
};
/* Take len received bytes at w->pos: advance pos and deliver the part in
 * [skip_to, end) that was not delivered yet. Returns 0 to go on, or 1 to
 * stop the transfer: the window is full (enough = 1, also when more than
 * asked for arrived: a server ignoring Range) or the sink refused
 * (user_abort = 1). Suits http_req.sink directly. */
int be_rdwin_feed(struct be_rdwin *w, const char *data, size_t len);

/* Read exactly len bytes of fd at off into buf (short reads and EINTR
 * handled). -1 with *err on a read error, or ERR_IO when the file is
 * shorter (it changed during the upload). Thread-safe (pread). */
int be_pread_full(int fd, void *buf, size_t len, uint64_t off, struct err *err);
/* For a one-request upload of path: the whole file fd (meta->size bytes,
 * at most max) read into a new malloc'd *data (the caller frees it), and
 * checked against the checksum in meta (md5 when by_md5, else crc32c).
 * -1 with *err ("upload \"path\": ...") and *data NULL when it is too
 * large or changed since its checksum was computed (ERR_INVAL), out of
 * memory, or unreadable. */
int be_load_for_put(int fd, const struct be_meta *meta, uint64_t max, int by_md5,
		    const char *path, char **data, struct err *err);
/* The upload metadata of a symlink stored as an object whose content is its
 * target: *m zeroed, then size, crc32c and md5 of target, mtime (when not
 * NULL) and content_type (static text). -1 with ERR_INVAL ("symlink
 * \"path\": bad target") when target is NULL, empty or 4096 bytes or more. */
int be_symlink_meta(const char *path, const char *target, const struct timespec *mtime,
		    const char *content_type, struct be_meta *m, struct err *err);

/* --- errors a user can act on -------------------------------------------- */

/* Google's error reasons that a user can do something about
 * (userRateLimitExceeded, rateLimitExceeded, storageQuotaExceeded,
 * downloadQuotaExceeded, quotaExceeded, dailyLimitExceeded): what to do,
 * one sentence without a trailing period, or NULL for any other reason
 * (NULL or "" included). Static text; thread-safe. Used by the scheduler
 * (writes), the read path (reads) and `durafs status`, so the same reason
 * always gets the same advice. */
const char *be_reason_advice(const char *reason);
/* The first reason known to be_reason_advice that appears in text (a
 * journal error message, a log line) as a whole word, or NULL. Returns a
 * pointer to static text. */
const char *be_reason_find(const char *text);
/* Fill dst from src for a failure of `verb` ("upload", "read"...) on path
 * whose Google reason has advice: "<verb> \"<path>\": <what happened>
 * (Google's reason: <reason>); what to do: <advice>". Returns 1 when it
 * did (code, status and reason are kept), 0 (dst untouched) when src's
 * reason has no advice. dst may be src. */
int be_err_advise(struct err *dst, const struct err *src, const char *verb,
		  const char *path);

#endif
