/* durafs journal (sync/journal.c): the durable record, in one SQLite database
 * per mount, of every local change not yet committed remotely, plus the
 * stored listings and the read-cache map. The full spec (schema, op states,
 * invariants, recovery) opens sync/journal.c; this header is the contract. */
#ifndef DURAFS_JOURNAL_H
#define DURAFS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "durafs/err.h"

/*
 * Calling conventions for every function below
 * --------------------------------------------
 * - Thread-safety: a `struct jnl` is shared by every thread of the daemon
 *   (FUSE workers append, upload workers claim and complete, fsync and flush
 *   wait). Every function may be called concurrently; one mutex guards the
 *   one SQLite connection, and no call holds it while waiting.
 * - Results: 0 on success, -1 with *err set (err may be NULL). A call that
 *   fails changed nothing (each mutation is one SQLite transaction). A full
 *   disk gives ERR_NOSPC (err_to_errno: -ENOSPC) and the journal then folds
 *   its WAL into the database to give space back, so a later call may
 *   succeed; other SQLite failures give ERR_IO with SQLite's message; a bad
 *   argument ERR_INVAL.
 * - Paths are relative to the mount's root: no leading or trailing '/',
 *   components separated by one '/', no "." or ".." component, not "" (the
 *   root is never the subject of an operation). Anything else is ERR_INVAL.
 * - Strings returned inside structs are owned by the struct and freed by its
 *   _release/_free function; strings passed in are copied (borrowed).
 * - Nothing here ever logs; messages never contain a session URI (it is a
 *   credential for the upload) nor any other secret.
 */

struct jnl;

/* Types of local files; the values match enum be_type. */
enum jnl_type {
	JNL_FILE = 1,
	JNL_DIR = 2,
	JNL_SYMLINK = 3,
};

/* Operation kinds. Values are stored in the database: append only. */
enum jnl_kind {
	JNL_OP_WRITE = 1,    /* create or replace content: upload the fid's
			      * cache file (whatever it holds when read; its
			      * version is at least op.version) */
	JNL_OP_MKDIR = 2,
	JNL_OP_RENAME = 3,   /* path -> path2 */
	JNL_OP_UNLINK = 4,   /* a file or symlink */
	JNL_OP_RMDIR = 5,
	JNL_OP_SETATTR = 6,  /* mtime */
	JNL_OP_SYMLINK = 7,  /* path -> target */
};

/* Operation states. Committed ops are deleted, so they have no state.
 * Values are stored in the database: append only. */
enum jnl_state {
	JNL_PENDING = 0,     /* waiting for its dependencies, its time, a worker */
	JNL_IN_PROGRESS = 1, /* claimed by a worker, under a lease */
	JNL_FAILED = 2,      /* permanent error: kept, blocks later related ops
			      * until jnl_retry or jnl_resolve */
	JNL_CONFLICT = 3,    /* remote changed: the local version was kept under
			      * conflict_name; done for ordering, kept for
			      * status until jnl_resolve */
};

/* Masks for jnl_list_ops. */
#define JNL_MASK(state) (1u << (state))
#define JNL_MASK_ALL 0xfu

/* Options of jnl_open; a zeroed struct (or NULL) gives the defaults. */
struct jnl_opts {
	int sync_full;          /* 1: synchronous=FULL (every commit fsyncs the
				 * WAL, so journaled changes survive a power
				 * loss too; ~10x slower, depending on the
				 * disk). 0: NORMAL (survives any process
				 * crash; the spec says why that is what we
				 * promise) */
	int64_t lease_ms;       /* claim lease; default 600000 (10 min) */
	int64_t max_defer_ms;   /* a write op rewritten again and again is
				 * still run at most this long after it was
				 * first appended; default 60000 */
	int busy_timeout_ms;    /* default 5000 */
	/* Wall clock in milliseconds since the epoch (tests inject one);
	 * NULL: CLOCK_REALTIME. Called with the journal's mutex held: it must
	 * not call into the journal. */
	int64_t (*clock)(void *arg);
	void *clock_arg;
};

/* What jnl_open found and did (for the log). */
struct jnl_recovery {
	int created;            /* 1: a new, empty journal was created */
	uint64_t requeued;      /* in_progress claims returned to pending */
	uint64_t redirtied;     /* dirty files given a new write op */
	uint64_t pending;       /* unfinished ops (pending) after recovery */
	uint64_t failed;        /* ops in JNL_FAILED */
	uint64_t conflicts;     /* ops in JNL_CONFLICT */
};

/* Open (creating if absent, mode 0600) the journal database at `path`,
 * whose directory must exist (the cache dir, 0700, is the caller's). Takes
 * an exclusive lock (`path`.lock, flock): a second opener, in this or any
 * process, fails with ERR_IO (sys_errno EBUSY) "in use". Runs recovery
 * (spec, "Recovery") and fills *rec (may be NULL). Refuses a journal of a
 * newer schema version, or a file that is not a durafs journal, with a
 * clear ERR_INVAL message. On success *out owns everything; on failure
 * *out is NULL and nothing is left open. */
int jnl_open(const char *path, const struct jnl_opts *opts, struct jnl **out,
	     struct jnl_recovery *rec, struct err *err);

/* Close: wakes every waiter (they return ERR_CANCELED) and waits until they
 * have left, checkpoints the WAL, releases the lock, frees j. No other call
 * may start on j once jnl_close has begun. NULL is a no-op. */
void jnl_close(struct jnl *j);

/* Wake every jnl_claim_wait / jnl_wait_* caller and make them return
 * (ERR_CANCELED) now and on every later call: used before unmount so that
 * workers leave. Idempotent. */
void jnl_shutdown(struct jnl *j);

/* Make every thread sleeping in jnl_claim_wait now return 0 (nothing
 * claimed) at once, without claiming; claim_wait calls that start after
 * this one returns wait as usual (nothing sticks, unlike jnl_shutdown).
 * Used by a scheduler to stop idle workers without shutting the journal
 * down. A claimer that was about to enter jnl_claim_wait when this ran is
 * not woken: the caller checks its own stop flag before each wait and,
 * having set it, repeats this call until its claimers have left. NULL is
 * a no-op. Thread-safe. */
void jnl_wake_claimers(struct jnl *j);

/* ---------------------------------------------------------------------- */
/* Files: the stable local identity (fid) of everything the journal touches */

/* One row of the files table (see the spec). */
struct jnl_file {
	uint64_t fid;
	char *path;             /* current path; NULL once unlinked */
	int type;               /* enum jnl_type */
	char *cache_name;       /* file name in the cache dir, or NULL */
	char *target;           /* JNL_SYMLINK: the target, else NULL */
	uint64_t version;       /* content version: grows on every change */
	char *base;             /* remote version this content replaces
				 * (be_version_format), NULL: none (new) */
	int dirty;              /* 1: the cache holds content not committed */
	uint64_t size;          /* size given by the last jnl_write / new */
	int64_t mtime_ns;
};

/* Free the strings of f and zero it. NULL or zeroed: no-op. */
void jnl_file_release(struct jnl_file *f);
void jnl_files_free(struct jnl_file *v, size_t n);

/* Give `path` a fid (a new row, no op). A new local regular file is
 * created with base NULL and is dirty (jnl_write then uploads it); a remote
 * entry the mount starts to track is created with its remote version as
 * base ("" when it has none, e.g. a GCS prefix directory) and is clean.
 * New local directories and symlinks use jnl_mkdir / jnl_symlink instead:
 * a directory or symlink row with base NULL means "not on the remote" and
 * has no op to put it there. cache_name may be NULL. If a live file
 * already has this path: ERR_EXISTS with *fid set to it. */
int jnl_file_new(struct jnl *j, const char *path, int type,
		 const char *cache_name, const char *base, uint64_t size,
		 int64_t mtime_ns, uint64_t *fid /* OUT */, struct err *err);

/* The live fid at path: 0, or -1 with ERR_NOTFOUND. */
int jnl_file_lookup(struct jnl *j, const char *path, uint64_t *fid /* OUT */,
		    struct err *err);

/* Row of fid (live or unlinked) into *out (release with jnl_file_release).
 * ERR_NOTFOUND if the fid is unknown (never was, or was collected). */
int jnl_file_get(struct jnl *j, uint64_t fid, struct jnl_file *out,
		 struct err *err);

/* Set the cache file name of fid (NULL clears it). */
int jnl_file_set_cache(struct jnl *j, uint64_t fid, const char *cache_name,
		       struct err *err);

/* Record the remote version fid now corresponds to: the mount refreshed a
 * clean file, or the scheduler learnt the new versions of the files below a
 * directory whose rename it committed (on GCS a rename rewrites every
 * object). It becomes the guard of fid's next remote write. ERR_INVAL while
 * an op of fid is in progress (its worker holds the old guard). */
int jnl_file_set_base(struct jnl *j, uint64_t fid, const char *base,
		      struct err *err);

/* The mount is about to change fid's cache content: mark it dirty and, when
 * the current version is clean or has already been handed to an upload,
 * increment it (so a running upload is known to be stale and recovery knows
 * the cache holds unjournaled content). Call it before every write to the
 * cache file; when nothing needs to change it costs one indexed read.
 * *version (may be NULL) gets the version after the call. */
int jnl_file_dirty(struct jnl *j, uint64_t fid, uint64_t *version /* OUT */,
		   struct err *err);

/* Live files whose parent directory is dir ("" for the root), sorted by
 * path. *v is NULL when n is 0; free with jnl_files_free. */
int jnl_children(struct jnl *j, const char *dir, struct jnl_file **v /* OUT */,
		 size_t *n /* OUT */, struct err *err);

/* Live dirty files (recovery, status), sorted by path. */
int jnl_dirty_files(struct jnl *j, struct jnl_file **v /* OUT */,
		    size_t *n /* OUT */, struct err *err);

/* Names (last components, sorted, unique) of entries of dir that were
 * removed or renamed away locally by an unfinished op and have no live file
 * now: the listing hides them even though the remote still shows them.
 * Free with jnl_names_free. */
int jnl_removed_children(struct jnl *j, const char *dir, char ***names /* OUT */,
			 size_t *n /* OUT */, struct err *err);
void jnl_names_free(char **names, size_t n);

/* Delete the rows of unlinked files that no op references any more and
 * hand back their cache names (NULL entries skipped), so the caller can
 * delete those cache files. Free with jnl_names_free. */
int jnl_gc(struct jnl *j, char ***cache_names /* OUT */, size_t *n /* OUT */,
	   struct err *err);

/* ---------------------------------------------------------------------- */
/* Appending operations. Each returns the op's seq in *seq (may be NULL), or
 * 0 when coalescing means nothing needs to reach the remote (spec,
 * "Coalescing"). The seq returned is the one to wait for; when a write is
 * coalesced into an earlier op that earlier seq is returned. */

/* The content of fid (a file) changed and must be uploaded: increments
 * version, marks dirty, records size and mtime, and supersedes a write of
 * fid that no worker has started yet (that op is updated: same seq), else
 * appends a new one. The op may not be claimed before now + delay_ms (the
 * writeback delay; 0: at once), and a superseded op no later than
 * max_defer_ms after it was first appended. An unlinked fid: 0 and *seq 0
 * (nothing to upload). ERR_INVAL for a directory. */
int jnl_write(struct jnl *j, uint64_t fid, uint64_t size, int64_t mtime_ns,
	      int64_t delay_ms, uint64_t *seq /* OUT */, struct err *err);

/* New directory at path: a fid (base NULL) and a mkdir op. ERR_EXISTS (with
 * *fid set) if a live file has the path. */
int jnl_mkdir(struct jnl *j, const char *path, int64_t mtime_ns,
	      uint64_t *fid /* OUT */, uint64_t *seq /* OUT */, struct err *err);

/* New symlink at path pointing to target (any non-empty string). */
int jnl_symlink(struct jnl *j, const char *path, const char *target,
		int64_t mtime_ns, uint64_t *fid /* OUT */, uint64_t *seq /* OUT */,
		struct err *err);

/* Flags of jnl_rename. */
#define JNL_RENAME_REPLACE 1u   /* a live file at `to` is replaced (it is
				 * unlinked in the same transaction) */

/* Move fid (and, for a directory, every live file below it) to `to`.
 * ERR_EXISTS if a live file has `to` and JNL_RENAME_REPLACE is not given;
 * replacing a non-empty directory: ERR_NOTEMPTY; a directory into itself:
 * ERR_INVAL. Renaming to the current path: 0, *seq 0. */
int jnl_rename(struct jnl *j, uint64_t fid, const char *to, unsigned flags,
	       uint64_t *seq /* OUT */, struct err *err);

/* Remove a file or symlink (jnl_unlink) or an empty directory (jnl_rmdir:
 * ERR_NOTEMPTY while a live file is below it). The fid loses its path and
 * its dirty flag. If nothing of the fid ever reached the remote and no op of
 * it started (nor, for a directory, any op below it), all its ops are
 * dropped and *seq is 0; else an op is appended, and if the fid exists
 * remotely (base set) its writes and setattrs that no worker started are
 * dropped first. Wrong type: ERR_INVAL. Already unlinked: ERR_NOTFOUND. */
int jnl_unlink(struct jnl *j, uint64_t fid, uint64_t *seq /* OUT */,
	       struct err *err);
int jnl_rmdir(struct jnl *j, uint64_t fid, uint64_t *seq /* OUT */,
	      struct err *err);

/* jnl_rmdir for backends where deleting a folder deletes (trashes) what
 * is in it (Drive): the unlinks and rmdirs below the directory that no
 * worker started are dropped, and the rmdir is flagged JNL_OPF_TREE when
 * it absorbed any, so an `rm -rf` becomes one remote call. The backend
 * must then delete the folder with its contents. */
int jnl_rmdir_tree(struct jnl *j, uint64_t fid, uint64_t *seq /* OUT */,
		   struct err *err);

/* Set fid's mtime remotely. Folded into a not-started write or setattr of
 * fid when there is one (that op's seq is returned). */
int jnl_setattr(struct jnl *j, uint64_t fid, int64_t mtime_ns,
		uint64_t *seq /* OUT */, struct err *err);

/* The highest seq ever assigned (0 for a new journal). Monotonic across
 * restarts: what fsync and `sync --flush` take as up_to_seq. */
uint64_t jnl_last_seq(struct jnl *j);

/* A number that changes whenever the journal's rows may have changed:
 * the rows written so far by the journal's one connection (every
 * mutation, also one rolled back), except the stored access times of
 * cache files (LRU hints, batched by jnl_cache_missing). Equal values
 * taken before and after reads of anything else mean the reads saw one
 * unchanged state. Thread-safe. */
uint64_t jnl_gen(struct jnl *j);

/* ---------------------------------------------------------------------- */
/* Workers: claim, report progress, complete */

/* An op as a worker (claim) or status (list) sees it. */
struct jnl_op {
	uint64_t seq;
	int kind;               /* enum jnl_kind */
	int state;              /* enum jnl_state */
	uint64_t fid;
	int type;               /* the fid's enum jnl_type */
	char *path;             /* where the op acts (rename: from) */
	char *path2;            /* rename: to; else NULL */
	char *target;           /* symlink: the target; else NULL */
	char *cache_name;       /* the fid's cache file, or NULL */
	char *base;             /* the fid's remote version (guard), NULL: the
				 * remote must not exist (new) */
	char *base2;            /* rename with replace: the replaced file's
				 * remote version; NULL: `to` must not exist */
	uint64_t version;       /* write: content version uploaded (set at
				 * claim to the fid's current version) */
	uint64_t size;          /* write: size when appended */
	int64_t mtime_ns;
	uint32_t attempts;      /* claims so far, this one included */
	uint64_t claim;         /* claim token: pass it back to every call */
	int64_t created_ms;
	int64_t not_before_ms;
	/* Upload session (write ops), kept across claims and restarts. */
	char *session;          /* resumable session URI or NULL: a secret,
				 * never to be logged */
	uint64_t total;         /* bytes of the session's content */
	uint64_t persisted;     /* last offset the server acknowledged */
	uint64_t sess_version;  /* content version the session started with */
	uint32_t crc32c;        /* checksums the session started with */
	unsigned char md5[16];
	int has_sums;           /* 1: crc32c and md5 are set */
	/* Last error (retry later, failed, conflict). */
	int err_code;           /* enum err_code, 0 if none */
	char *err_msg;
	char *conflict_name;    /* JNL_CONFLICT: where the local version went */
	unsigned flags;         /* JNL_OPF_* */
};

/* jnl_op.flags */
#define JNL_OPF_TREE 1u         /* rmdir that absorbed the removals below it:
				 * delete the folder with its contents */

void jnl_op_release(struct jnl_op *op);
void jnl_ops_free(struct jnl_op *v, size_t n);

/* Claim the next op whose dependencies are all done (spec, "Ordering") and
 * whose not_before has passed -- the earliest due first, then journal
 * order: marks it in_progress under a lease of opts.lease_ms, fills *op
 * (release it with jnl_op_release). For a write, op->version is the fid's
 * version now: upload what the cache holds and complete with that claim.
 * Returns 1 when an op was claimed, 0 when none is ready, -1 on error. */
int jnl_claim_next(struct jnl *j, struct jnl_op *op /* OUT */, struct err *err);

/* Like jnl_claim_next but waits up to timeout_ms (< 0: forever) for an op
 * to become ready (an append, a completion, a not_before passing). Returns
 * 1 claimed, 0 timed out or woken by jnl_wake_claimers, -1 error
 * (ERR_CANCELED after jnl_shutdown). */
int jnl_claim_wait(struct jnl *j, int64_t timeout_ms, struct jnl_op *op /* OUT */,
		   struct err *err);

/* The calls below take the seq and claim token of an op the caller claimed.
 * If the claim is no longer the caller's (lease expired and the op was
 * requeued, the op was resolved) they fail with ERR_CANCELED and change
 * nothing: the caller drops its work. jnl_renew, jnl_upload_begin and
 * jnl_upload_progress also extend the lease. */

/* Extend the lease. */
int jnl_renew(struct jnl *j, uint64_t seq, uint64_t claim, struct err *err);

/* A resumable session was started for the op's content: record its URI,
 * total size, the content version and checksums it was started with. */
int jnl_upload_begin(struct jnl *j, uint64_t seq, uint64_t claim,
		     const char *session, uint64_t total, uint64_t version,
		     uint32_t crc32c, const unsigned char md5[16],
		     struct err *err);

/* The server acknowledged `persisted` bytes (may be lower than before: the
 * server is the authority). ERR_INVAL if above the session total or no
 * session was begun. */
int jnl_upload_progress(struct jnl *j, uint64_t seq, uint64_t claim,
			uint64_t persisted, struct err *err);

/* Forget the op's session (expired, content changed): the next attempt
 * starts a new one. */
int jnl_upload_reset(struct jnl *j, uint64_t seq, uint64_t claim,
		     struct err *err);

/* The op is committed remotely; it is deleted. new_base: the remote version
 * now at the op's destination (write, mkdir, symlink, rename; NULL keeps the
 * old one for rename/setattr, "" for a creation whose backend has none).
 * For a write, the fid becomes clean unless it changed after the claim, and
 * later not-started writes of it that this upload covered are dropped. */
int jnl_complete(struct jnl *j, uint64_t seq, uint64_t claim,
		 const char *new_base, struct err *err);

/* Transient failure: back to pending, not claimable for delay_ms, the
 * error kept for status (cause may be NULL). */
int jnl_retry_later(struct jnl *j, uint64_t seq, uint64_t claim,
		    int64_t delay_ms, const struct err *cause, struct err *err);

/* Permanent failure: state failed with cause's code and message. The op
 * and its data stay; later related ops wait; waiters get the error. */
int jnl_fail(struct jnl *j, uint64_t seq, uint64_t claim,
	     const struct err *cause, struct err *err);

/* The remote changed under the op and the local version was committed as
 * conflict_name (non-empty). State conflict; later ops may run; waiters get
 * ERR_CONFLICT. new_base (may be NULL) is the remote version now at the
 * op's path, which later writes of the fid replace. */
int jnl_conflict(struct jnl *j, uint64_t seq, uint64_t claim,
		 const char *conflict_name, const char *new_base,
		 struct err *err);

/* Requeue in_progress ops whose lease expired; *n (may be NULL) gets how
 * many. The scheduler calls it now and then. */
int jnl_expire_leases(struct jnl *j, uint64_t *n /* OUT */, struct err *err);

/* ---------------------------------------------------------------------- */
/* Users and the scheduler: retry, resolve, expedite, wait */

/* A failed op back to pending (its error is cleared). ERR_INVAL unless it
 * is failed. */
int jnl_retry(struct jnl *j, uint64_t seq, struct err *err);

/* Drop a failed or conflict op (the user gave up on it or acknowledged
 * it); later ops it held back may run. ERR_INVAL in another state. */
int jnl_resolve(struct jnl *j, uint64_t seq, struct err *err);

/* From now on, the unlink and rmdir ops of paths inside a directory (not
 * at the top level) are appended claimable only delay_ms later (0, the
 * default: at once), so that the rmdir of an `rm -rf` on a backend that
 * deletes a folder with its contents can still fold them
 * (jnl_rmdir_tree). jnl_expedite (fsync, flush) lifts the delay. Not kept
 * across jnl_open. Thread-safe. */
void jnl_set_removal_delay(struct jnl *j, int64_t delay_ms);

/* Make the not-yet-attempted ops that fsync (fid != 0) or a flush (fid 0)
 * will wait for claimable now: those of fid (or all) with seq <= up_to_seq
 * and every op they depend on, ignoring the writeback delay. Retry backoff
 * is not shortened. */
int jnl_expedite(struct jnl *j, uint64_t fid, uint64_t up_to_seq,
		 struct err *err);

/* Flags of the waits. */
#define JNL_WAIT_SETTLE 1u  /* do not return at the first failure: wait
			     * until every target op is committed, failed,
			     * conflicted, or held back by a failed op */

/* Block until every op of fid (jnl_wait_fid) or every op (jnl_wait_all)
 * with seq <= up_to_seq is committed: 0. If one of them is failed or in
 * conflict, or held back (directly or not) by a failed op, returns -1 with
 * that op's error (code ERR_CONFLICT for a conflict; the message names the
 * path) -- at once, or with JNL_WAIT_SETTLE once nothing else can progress.
 * timeout_ms < 0: no timeout; else ERR_TIMEOUT when it expires. After
 * jnl_shutdown: ERR_CANCELED. */
int jnl_wait_fid(struct jnl *j, uint64_t fid, uint64_t up_to_seq,
		 int64_t timeout_ms, unsigned flags, struct err *err);
int jnl_wait_all(struct jnl *j, uint64_t up_to_seq, int64_t timeout_ms,
		 unsigned flags, struct err *err);

/* Progress of a flush: what remains among ops with seq <= up_to_seq. */
struct jnl_progress {
	uint64_t ops_left;      /* not committed: pending, running, failed */
	uint64_t bytes_left;    /* their write ops: size (or session total)
				 * minus persisted */
	uint64_t failed;        /* of ops_left, failed */
	uint64_t conflicts;     /* ops in conflict (their content went to a
				 * conflict copy; not in ops_left) */
	uint64_t committed_ops;   /* since jnl_open, all seqs */
	uint64_t committed_bytes; /* since jnl_open, write ops */
};
int jnl_progress(struct jnl *j, uint64_t up_to_seq, struct jnl_progress *p /* OUT */,
		 struct err *err);

/* ---------------------------------------------------------------------- */
/* Status */

struct jnl_stats {
	uint64_t pending_ops;     /* state pending (retrying ones included) */
	uint64_t pending_bytes;   /* their write bytes not yet persisted */
	uint64_t retrying_ops;    /* pending after a failed attempt */
	uint64_t inflight_ops;    /* in_progress */
	uint64_t inflight_bytes;  /* their sizes (session totals) */
	uint64_t inflight_persisted; /* of which the server has persisted */
	uint64_t failed_ops;
	uint64_t conflict_ops;
	uint64_t dirty_files;
	uint64_t last_seq;
	uint64_t committed_ops;   /* since jnl_open */
	uint64_t committed_bytes;
};
int jnl_stats(struct jnl *j, struct jnl_stats *s /* OUT */, struct err *err);

/* Ops whose state is in mask (JNL_MASK(JNL_FAILED) | ...), in seq order, at
 * most limit (0: no limit). *v is NULL when n is 0; free with
 * jnl_ops_free. session is never filled here (status must not show it). */
int jnl_list_ops(struct jnl *j, unsigned mask, size_t limit,
		 struct jnl_op **v /* OUT */, size_t *n /* OUT */, struct err *err);

/* Check the database (SQLite integrity_check) and the spec's invariants
 * (dependency counts, order, paths). 0 when sound, else ERR_IO naming the
 * first violation. Reads everything: for tests and `status --check`. */
int jnl_check(struct jnl *j, struct err *err);

/* ---------------------------------------------------------------------- */
/* Stored listings and attributes (survive remounts) */

/* One stored directory entry. */
struct jnl_entry {
	char *name;             /* last component */
	int type;               /* enum jnl_type */
	uint64_t size;
	int64_t mtime_ns;
	char *remote;           /* remote version (be_version_format) or NULL */
	unsigned flags;         /* the remote entry's BE_EF_* (read-only Docs
				 * exports, size unknown) */
};
void jnl_entry_release(struct jnl_entry *e);
void jnl_entries_free(struct jnl_entry *v, size_t n);

/* Replace the stored listing of dir ("" = root) by v[0..n) in one
 * transaction and mark it complete, fetched at fetched_ms. Only the rows
 * that differ are written (a listing refetched unchanged costs no entry
 * writes). Names must be unique and valid path components (ERR_INVAL,
 * nothing stored). */
int jnl_dir_put(struct jnl *j, const char *dir, const struct jnl_entry *v,
		size_t n, int64_t fetched_ms, struct err *err);

/* The stored listing of dir sorted by name. ERR_NOTFOUND if none was ever
 * stored. *complete is 0 after jnl_dir_invalidate (the entries are then
 * still returned, for a stale-but-fast answer). */
int jnl_dir_get(struct jnl *j, const char *dir, struct jnl_entry **v /* OUT */,
		size_t *n /* OUT */, int64_t *fetched_ms /* OUT */,
		int *complete /* OUT */, struct err *err);

/* What jnl_dir_get would say about dir without reading its entries: their
 * number, when it was fetched and whether it is complete. ERR_NOTFOUND if
 * no listing was ever stored (outputs then 0). Thread-safe like the rest. */
int jnl_dir_info(struct jnl *j, const char *dir, size_t *n /* OUT */,
		 int64_t *fetched_ms /* OUT */, int *complete /* OUT */,
		 struct err *err);

/* Mark dir's listing incomplete (must be refetched); entries are kept. */
int jnl_dir_invalidate(struct jnl *j, const char *dir, struct err *err);

/* Mark dir's listing stale (fetched_ms 0: older than any TTL) but still
 * complete: its entries keep answering while a refetch is tried.
 * ERR_NOTFOUND when no listing of dir is stored. */
int jnl_dir_stale(struct jnl *j, const char *dir, struct err *err);

/* Forget the stored listings of dir and of everything below it. */
int jnl_dir_forget(struct jnl *j, const char *dir, struct err *err);

/* One entry (a stat result), inserted or replaced; the directory's complete
 * flag is unchanged. */
int jnl_entry_put(struct jnl *j, const char *dir, const struct jnl_entry *e,
		  struct err *err);
/* ERR_NOTFOUND if not stored. */
int jnl_entry_get(struct jnl *j, const char *dir, const char *name,
		  struct jnl_entry *e /* OUT */, struct err *err);
/* Not stored: 0 anyway. */
int jnl_entry_del(struct jnl *j, const char *dir, const char *name,
		  struct err *err);

/* Where the stored listings show the remote item whose version id is id
 * (the part after ':' of an entry's remote, see be_version_format): each
 * place's path ("dir/name", "" dir: name) and enum jnl_type into *out
 * (malloc'd array of *n, in (dir, name) order; free with jnl_places_free; none:
 * NULL and 0). Each id is looked up in an index of the stored entries'
 * ids (schema version 3), so the cost grows with the number of ids and
 * places found, not with the number of stored entries: meant for events
 * such as an item deleted for good whose folder the backend no longer
 * knows. -1 with *err (database failure, out of memory; outputs then NULL
 * and 0). */
struct jnl_place {
	char *path;
	int type;
};
int jnl_entries_by_id(struct jnl *j, const char *id, struct jnl_place **out, size_t *n,
		      struct err *err);
/* The same for any of ids[0..nids) in one query (the places of all of
 * them, in (dir, name) order). ERR_INVAL for an empty id or one that is not
 * valid UTF-8. */
int jnl_entries_by_ids(struct jnl *j, const char *const *ids, size_t nids,
		       struct jnl_place **out, size_t *n, struct err *err);
/* The query plan SQLite chooses for jnl_entries_by_ids (the detail column
 * of EXPLAIN QUERY PLAN, one line each, e.g. "SEARCH entries USING INDEX
 * entries_id (<expr>=?)"): for tests and diagnostics, to show the lookup
 * is indexed. *plan is malloc'd (the caller frees it). Thread-safe like
 * every call. -1 with *err (database failure, out of memory; *plan NULL). */
int jnl_entries_by_ids_plan(struct jnl *j, char **plan, struct err *err);
void jnl_places_free(struct jnl_place *v, size_t n);

/* A small key/value store for the mount (Drive changes token, mount id,
 * streamed upload sessions: sync/stream.c). jnl_meta_set with value NULL
 * removes the key (absent already: 0). jnl_meta_get: *value is malloc'd,
 * or NULL when the key is absent (0). */
int jnl_meta_set(struct jnl *j, const char *key, const char *value,
		 struct err *err);
int jnl_meta_get(struct jnl *j, const char *key, char **value /* OUT */,
		 struct err *err);

/* ---------------------------------------------------------------------- */
/* Read-cache map: which byte ranges of a clean file's cache file are present */

/* [off, off+len) of cache file `name`, holding remote version `remote`, is
 * now present. Ranges are merged. If the stored remote version differs, the
 * old ranges are dropped first (the content changed). Updates the access
 * time. len 0: no-op. */
int jnl_cache_add(struct jnl *j, const char *name, const char *remote,
		  uint64_t off, uint64_t len, struct err *err);

/* The first part of [off, off+len) not present for remote version `remote`
 * (everything if the stored version differs or nothing is stored): *moff,
 * *mlen; *mlen is 0 when the whole range is present. Updates the access
 * time when something is present: kept in memory and stored in one
 * transaction per 256 files, before jnl_cache_lru and at jnl_close (a
 * read costs no write; a crash loses only these LRU hints). */
int jnl_cache_missing(struct jnl *j, const char *name, const char *remote,
		      uint64_t off, uint64_t len, uint64_t *moff /* OUT */,
		      uint64_t *mlen /* OUT */, struct err *err);

/* Cache file name was read now: its access time (an LRU hint) is noted
 * as jnl_cache_missing notes it for a range found present. Thread-safe;
 * out of memory the hint is lost. */
void jnl_cache_touch(struct jnl *j, const char *name);

/* One cache file in LRU order. */
struct jnl_cache_file {
	char *name;
	char *remote;
	uint64_t bytes;         /* present bytes */
	int64_t atime_ms;
};
void jnl_cache_files_free(struct jnl_cache_file *v, size_t n);

/* Up to limit (0: all) cache files, least recently used first, excluding
 * any that is the cache file of a dirty file or of an unfinished write op:
 * dirty data is never evicted. */
int jnl_cache_lru(struct jnl *j, size_t limit, struct jnl_cache_file **v /* OUT */,
		  size_t *n /* OUT */, struct err *err);

/* Forget every range of name (after the caller deleted or punched it). */
int jnl_cache_drop(struct jnl *j, const char *name, struct err *err);

/* Total present bytes and number of cache files in the map. */
int jnl_cache_usage(struct jnl *j, uint64_t *bytes /* OUT */,
		    uint64_t *files /* OUT */, struct err *err);

#endif
