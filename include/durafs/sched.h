/* durafs scheduler (sync/sched.c): the worker pool that takes operations
 * from the journal and carries them out on the backend, with retries,
 * conflict handling, and the waits behind fsync and `sync --flush`. It runs
 * in the mount daemon, and alone for `durafs sync --flush --cache-dir`. */
#ifndef DURAFS_SCHED_H
#define DURAFS_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "durafs/backend.h"
#include "durafs/err.h"
#include "durafs/journal.h"

/*
 * What the workers do with each op kind
 * -------------------------------------
 * - WRITE: uploads the fid's cache file (files_dir/cache_name) to op.path,
 *   guarded by op.base (BE_PRE_MATCH) or "must not exist" (base NULL, ""
 *   or a zero version). Files below small_max go in one request; larger
 *   ones through a resumable session whose URI and acknowledged offsets
 *   are recorded in the journal (jnl_upload_begin/progress), so a stopped
 *   or crashed upload resumes from the server's persisted offset when the
 *   op is claimed again and the content (sess_version and checksums) is
 *   unchanged; otherwise the session is dropped and a new one started. If
 *   the content changes while it uploads (the fid's version moves past the
 *   claimed one), the upload is abandoned at the next chunk and the op
 *   requeued to send the newest content; from the op's 4th attempt on, the
 *   upload instead finishes the snapshot it began (a file that never stops
 *   changing is still uploaded; a torn read fails the server's checksum
 *   check and is retried). A finished upload is completed even if the file
 *   changed meanwhile: the server verified that it holds exactly the
 *   checksummed snapshot, and the journal keeps the fid dirty so that its
 *   later write op sends the rest.
 *   On a backend with BE_CAP_SUMS_LATE (GCS), a file of at least small_max
 *   starts its session without a checksum pass: the sums are computed
 *   while the chunks go out and sent with the final request (see
 *   be_upload_file); a session stored that way resumes the same way.
 *   Appends (backends with an append op, GCS): see sch_note_write. An
 *   upload of a file open for writing is a snapshot (sch_set_open_fn),
 *   sent from a consistent copy when the filesystem can take one
 *   (sch_set_freeze_fn).
 *   Streaming (backends with BE_CAP_STREAM, GCS; off with no_stream): a
 *   file written sequentially from offset 0 has its full chunks sent
 *   into a resumable session while it is written (sync/stream.c, fed by
 *   sch_note_write/_end; the session is recorded in the journal). Its
 *   write op takes that session over when the path, guard and content
 *   still fit, and sends only the rest with the final size and the whole
 *   file's checksums (the streamed part's computed as it was sent), which
 *   the server verifies; if it refuses them, the op is requeued and
 *   uploads the file whole. The committed object's mtime is then set to
 *   the op's (the session began with an earlier one).
 * - MKDIR, SYMLINK: created remotely (mkdir is idempotent).
 * - UNLINK (guarded by base; already gone = done), RMDIR (gone = done).
 * - RENAME: a file or symlink with be_rename (source guarded by base, the
 *   destination by base2 or "must not exist"); a directory with
 *   be_rename_dir (idempotent: an interrupted one finishes when rerun). A
 *   file that never reached the remote (base NULL) has nothing to move.
 * - SETATTR (mtime): the backend interface has no metadata update yet, so
 *   the mtime is sent by uploading the content again, only when the file
 *   is clean and its cache file holds exactly the remote content (same
 *   size, crc32c and md5 as a fresh stat of the remote, same version as
 *   base). Otherwise it completes without a remote effect (debug log): a
 *   dirty file's pending write carries its mtime.
 *
 * Errors
 * ------
 * - Google's reasons a user can act on (be_reason_advice: rate limits,
 *   quotas, storageQuotaExceeded) get a message saying what happened and
 *   what to do (be_err_advise), kept with the op for `durafs status`; it is
 *   logged once per op and kind of error like any other.
 * - Transient (ERR_NET, ERR_TIMEOUT, ERR_RATE, ERR_GONE, ERR_QUOTA,
 *   ERR_NOMEM, ERR_HTTP with a 5xx/408/429 or no status, ERR_AUTH: the
 *   user can fix the credentials; ERR_PARSE for the first 3 attempts): the
 *   op goes back to pending (jnl_retry_later) with an exponential, jittered
 *   backoff per op (retry_initial_ms doubling up to retry_max_ms; ERR_AUTH
 *   and ERR_QUOTA wait retry_max_ms). Logged once per op and error kind,
 *   not per attempt. Such an op is never marked failed: it stays queued
 *   until the remote takes it.
 * - Permanent (anything else: ERR_INVAL, ERR_PERM, ERR_NOSPC, ERR_EXISTS,
 *   a missing cache file...): jnl_fail with a message naming the path and
 *   Google's reason, logged at error, SCHED_EV_FAILED. The op and its data
 *   stay; jnl_retry sends it back to the queue.
 *
 * Conflicts
 * ---------
 * - A WRITE (or SYMLINK) whose guard fails, with keep-both (default): the
 *   local version is committed beside it as `NAME.conflict-<UTC
 *   yyyymmddThhmmssZ>` (then `-2`, `-3`... if that exists), guarded by
 *   "must not exist", and the op is recorded with jnl_conflict(copy path,
 *   new_base = the remote's current version): the path now shows the
 *   remote's version, the fid is clean, and SCHED_EV_CONFLICT tells the
 *   filesystem to drop what it caches for the path. If the remote file was
 *   deleted instead, there is nothing to clobber: the local version is
 *   uploaded again at its path (guard "must not exist"), with a warning.
 *   With conflict_fail: jnl_fail with ERR_CONFLICT (the data stays in the
 *   cache and the journal).
 * - UNLINK, RENAME and RMDIR whose remote side changed (ERR_CONFLICT), or
 *   RMDIR of a remote directory that has entries we do not know of
 *   (ERR_NOTEMPTY): nothing remote is destroyed; the op is failed with
 *   that code and a message saying the remote version was kept. Status
 *   shows it; jnl_resolve drops it (the local change is abandoned), and
 *   later ops of the same paths wait until then. A RENAME whose source
 *   vanished remotely fails with ERR_NOTFOUND unless its destination
 *   already holds the moved file (an earlier attempt of ours finished).
 *
 * Lifetime: sch_new -> [sch_set_event_fn] -> sch_start -> ... -> sch_stop
 * -> sch_free. The journal and the backend must outlive the scheduler;
 * call sch_stop before jnl_close. Every function is thread-safe.
 *
 * Promptness of sch_stop: idle workers leave at once (they wait in
 * jnl_claim_wait without a timeout; sch_stop wakes them with
 * jnl_wake_claimers). A worker inside an HTTP request: with
 * sched_opts.http set (the client the backend uses), sch_stop calls
 * http_cancel_all on it, so a request waiting to retry gives up at once and
 * one in a transfer within about a second; the op goes back to pending
 * (an interrupted upload keeps its session and resumes from the server's
 * offset), never to failed. sch_stop undoes that cancel (http_uncancel)
 * once the workers have left; while it runs, every other user of the same
 * client also gets ERR_CANCELED. Without sched_opts.http, uploads stop at
 * the next chunk boundary and other ops finish their current request, its
 * retries and backoff included. Either way a backend's own retry pauses
 * between requests (e.g. the GCS chunk recovery loop) are waited out
 * unless the backend sleeps with http_pause.
 */

struct sched;
struct http;

struct sched_opts {
	int workers;                /* upload workers; 0: 8 (at most 256) */
	uint64_t chunk_size;        /* resumable chunk bytes; 0: the backend's
				     * default (GCS 16 MiB); else a multiple
				     * of 256 KiB */
	uint64_t small_max;         /* files smaller go in one request; 0: 8 MiB */
	const char *files_dir;      /* directory holding the journal's cache
				     * files (op.cache_name is relative to it);
				     * required; copied */
	int conflict_fail;          /* 0: keep-both (default), 1: fail the op */
	int64_t retry_initial_ms;   /* backoff between attempts of one op; 0: 1000 */
	int64_t retry_max_ms;       /* 0: 60000 */
	/* Added: */
	int64_t renew_ms;           /* renew the lease of every op in flight this
				     * often; 0: 60000 (keep it well below the
				     * journal's lease_ms) */
	int64_t housekeeping_ms;    /* expire stale leases and collect unlinked
				     * files' cache files this often; 0: 5000 */
	int no_stream;              /* 1: never start an upload while its file
				     * is written (see below); 0 (default):
				     * stream sequentially written files on
				     * backends with BE_CAP_STREAM */
	uint64_t stream_lead;       /* streaming sends a chunk once this many
				     * bytes follow it; 0: one chunk, at least
				     * 1 MiB (include/durafs/stream.h) */
	struct http *http;          /* optional (NULL: none): the HTTP client
				     * the backend uses; sch_stop cancels its
				     * requests (http_cancel_all) so that
				     * workers stuck on an unreachable remote
				     * leave within about a second, and
				     * re-arms it (http_uncancel) after.
				     * Borrowed: it must outlive the
				     * scheduler. */
};

/* Something the filesystem must know: a path's remote content changed under
 * it because of us (a conflict copy was made, a conflict left the remote
 * version in place). The callback runs on a worker thread, with no journal
 * or scheduler lock held; it must not block for long, and may call into
 * the journal but not sch_stop/sch_free. */
enum sched_event_kind {
	SCHED_EV_COMMITTED = 1,     /* an op committed (path, fid; a rename: path
				     * is the source, path2 the destination) */
	SCHED_EV_CONFLICT = 2,      /* path's local version went to path2; path
				     * now shows the remote's version: drop
				     * cached pages and data of path */
	SCHED_EV_FAILED = 3,        /* an op failed permanently */
};
struct sched_event {
	int kind;
	int op_kind;                /* enum jnl_kind of the op (added) */
	uint64_t seq;
	uint64_t fid;
	const char *path;
	const char *path2;          /* conflict copy path, rename destination,
				     * or NULL */
	const struct err *err;      /* FAILED / CONFLICT cause, or NULL */
};
typedef void (*sched_event_fn)(void *ud, const struct sched_event *ev);

/* Create a scheduler over a journal and a backend (both borrowed; they must
 * outlive it). Nothing runs until sch_start. ERR_INVAL for bad options
 * (no files_dir, a chunk size that is not a multiple of 256 KiB...). */
int sch_new(struct jnl *j, struct be *b, const struct sched_opts *o,
	    struct sched **out, struct err *err);
/* Set (or clear, fn NULL) the event callback; takes effect for the next
 * event. */
void sch_set_event_fn(struct sched *s, sched_event_fn fn, void *ud);

/* Start the workers (and a housekeeping thread: lease expiry and renewal,
 * collection of unlinked files' cache files). The threads block every
 * signal. ERR_INVAL when already running; may be called again after
 * sch_stop. */
int sch_start(struct sched *s, struct err *err);

/* Stop: workers finish or abandon their current op, leaving it resumable
 * (an interrupted upload keeps its session in the journal and goes back
 * to pending), and exit; then they are joined. Idle workers leave at once;
 * busy ones as "Promptness of sch_stop" above says. Does not flush.
 * Idempotent; safe to call from several threads. */
void sch_stop(struct sched *s);
/* Stop if needed, then free. NULL is a no-op. */
void sch_free(struct sched *s);

/* fsync: make every op of fid appended so far claimable now (ignoring the
 * writeback delay) and wait until they are committed. 0, or -1 with the
 * op's error (ERR_CONFLICT, the permanent error) or ERR_TIMEOUT after
 * timeout_ms (< 0: none). Transient failures are retried meanwhile; the
 * ops stay queued whatever the result. */
int sch_wait_fid(struct sched *s, uint64_t fid, int64_t timeout_ms, struct err *err);

/* Progress of a flush, reported about every 200 ms and once at the end. */
typedef void (*sched_progress_fn)(void *ud, const struct jnl_progress *p);

/* `sync --flush`: the same for every op appended before the call. With
 * JNL_WAIT_SETTLE semantics: returns when everything is committed (0) or
 * nothing more can progress (-1 with the first failure; list the failed
 * and conflicting ops with jnl_list_ops), or ERR_TIMEOUT after timeout_ms
 * (< 0: none). fn may be NULL. */
int sch_flush(struct sched *s, int64_t timeout_ms, sched_progress_fn fn, void *ud,
	      struct err *err);

/* Whether fid is open for writing in the filesystem now (a long-running
 * writer: its uploads are snapshots, see sch_set_open_fn). Called on a
 * worker thread with no scheduler or journal lock held; must not block. */
typedef int (*sched_open_fn)(void *ud, uint64_t fid);
/* The filesystem is about to change fid's cache file from byte `off` on (a
 * write at off, a truncate to off). Feeds the append rule of WRITE ops:
 * a file none of whose bytes below its committed size changed since our
 * last commit of it (in this run) is sent as a tail appended to the
 * committed version, when the backend can append (GCS compose) and the
 * committed size is at least 256 KiB; anything else, and any failure of
 * the append, uploads the whole file. Cheap; thread-safe; unknown fids are
 * ignored. */
void sch_note_write(struct sched *s, uint64_t fid, uint64_t off);
/* The change sch_note_write announced (same fid and off) is made, or
 * failed. Every sch_note_write must be followed by one: streaming (see
 * above) reads no part of the file a change under way may touch. */
void sch_note_write_end(struct sched *s, uint64_t fid, uint64_t off);

/* Set (or clear, fn NULL) the open-file test. A write op of a file open
 * for writing is uploaded as a snapshot: the upload is not abandoned
 * when the file changes meanwhile (the server's checksum check, over the
 * content read when the upload began, refuses a torn copy, which is then
 * retried), and `durafs status` labels it. Takes effect for the next
 * claimed op. */
void sch_set_open_fn(struct sched *s, sched_open_fn fn, void *ud);

/* Copy fid's current content into dst (an empty file open for reading and
 * writing) as it is at one moment: no write of the filesystem may land in
 * the copy partly (the filesystem holds fid's writes for as long as that
 * takes). Returns 1 when copied, 0 when there is nothing to copy (fid is
 * no longer open for writing, or there is not enough free space for a
 * copy), -1 with err on failure. Called on a worker thread with no
 * scheduler or journal lock held. */
typedef int (*sched_freeze_fn)(void *ud, uint64_t fid, int dst, struct err *err);
/* Set (or clear, fn NULL) the snapshot copy. With it, a write op of a file
 * open for writing (sch_set_open_fn) is uploaded from a copy that fn takes
 * when the op is claimed (an unlinked temporary file in files_dir, removed
 * when the upload ends): a file rewritten in place faster than it uploads
 * (a checkpoint) still reaches the remote, whole and untorn, and writes
 * made meanwhile stay for the next upload (the journal keeps the file
 * dirty). When fn returns 0 or fails, the cache file itself is uploaded and
 * the server's checksum check refuses a torn copy, as without fn. Takes
 * effect for the next claimed op. */
void sch_set_freeze_fn(struct sched *s, sched_freeze_fn fn, void *ud);

/* One upload in flight, for `durafs status`. */
struct sched_upload {
	uint64_t seq;
	char *path;
	uint64_t total;
	uint64_t persisted;
	uint32_t attempts;
	int snapshot;               /* 1: a snapshot of a file open for writing
				     * (JSON key "snapshot") */
};
void sch_uploads_free(struct sched_upload *v, size_t n);
/* The uploads running now, in no particular order (*v NULL when n is 0;
 * free with sch_uploads_free). 0, or -1 (ERR_NOMEM). */
int sch_uploads(struct sched *s, struct sched_upload **v, size_t *n, struct err *err);

struct sched_stats {
	uint64_t ops_done;
	uint64_t bytes_uploaded;    /* content bytes of committed writes */
	uint64_t retries;           /* transient failures retried */
	uint64_t conflicts;
	uint64_t failures;
	uint64_t sessions_resumed;  /* uploads continued from a stored session */
	uint64_t sessions_restarted;/* sessions abandoned and begun again */
	uint64_t appends;           /* writes sent as a tail appended to the
				     * committed version (GCS compose) */
	uint64_t snapshot_copies;   /* snapshots uploaded from a copy taken by
				     * the sched_freeze_fn (added) */
	uint64_t streamed;          /* writes that finished a session streamed
				     * while the file was written */
	uint64_t streamed_bytes;    /* bytes of those sessions sent before the
				     * write op began */
};
/* Counters since sch_new. */
void sch_get_stats(struct sched *s, struct sched_stats *out);

#endif
