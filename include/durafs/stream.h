/* durafs streamed uploads (sync/stream.c): while a file is written
 * sequentially, its full chunks go into a resumable upload session before
 * the file's write op exists; the write op then takes the session over and
 * sends only the rest (the scheduler, sync/sched.c, is the only user). */
#ifndef DURAFS_STREAM_H
#define DURAFS_STREAM_H

#include <stdint.h>

#include "durafs/backend.h"
#include "durafs/err.h"
#include "durafs/journal.h"

/*
 * How it works
 * ------------
 * - stm_note_write is told of every change of a file's cache file before
 *   it happens (the byte offset it starts at). A change at offset 0 of a
 *   file with no stream makes it a candidate. Its stream thread starts a
 *   resumable session for the file's path (backend with BE_CAP_STREAM:
 *   size unknown, checksums late, guarded by the file's journal base) once
 *   the writer has written beyond one chunk plus a lead (opts.lead), then
 *   sends full chunks whenever that many bytes follow the last one sent.
 *   The session can never complete: the final size is only given by the
 *   write op (see BE_META_SIZE_UNKNOWN), so the remote never shows a part.
 * - The session, its path, guard and persisted offset are recorded in the
 *   journal's meta store (key "stream.<fid>", JSON), before the first chunk
 *   and after each, so a restarted daemon's write op resumes it.
 * - A change below the bytes already sent or being sent, or more than one
 *   chunk (at least 1 MiB) below the furthest change seen (a seek back),
 *   abandons the stream: the session is cancelled and forgotten, and the
 *   write op uploads the file as usual. So does any failure of the stream
 *   (it never fails anything else; nothing waits for it).
 * - A chunk is read only while no change of the file below its end is
 *   under way (stm_note_write .. stm_note_write_end), and its bytes are
 *   added to the stream's checksums once the server has them: they cannot
 *   change afterwards without abandoning the stream, so the write op needs
 *   to read and hash only the rest of the file (stm_take hands the sums
 *   over; after a restart they are unknown and the whole file is hashed).
 * - The write op takes the session (stm_take) only for the same path, the
 *   same guard and a file larger than what was sent; it finishes it with
 *   the final size and the checksums of the whole file (the streamed part's
 *   as sent, the rest read at the end), which the server checks: a stream
 *   whose bytes differ from those sums is refused by the server instead of
 *   committed, and the op then uploads the file anew.
 *
 * Thread-safety: every function may be called from any thread, except
 * that stm_free must be the last call.
 */

struct stm;

struct stm_opts {
	uint64_t chunk_size;        /* bytes per chunk (multiple of 256 KiB);
				     * 0: 16 MiB */
	uint64_t lead;              /* a chunk is sent once this many bytes
				     * follow it (the write op's last chunk
				     * stays unsent); 0: one chunk, at least
				     * 1 MiB */
	const char *files_dir;      /* the journal's cache files; copied */
	int64_t idle_ms;            /* poll period when idle; 0: 100 */
};

struct stm_stats {
	uint64_t sessions;          /* streams that began a session */
	uint64_t chunks;            /* chunks sent */
	uint64_t bytes;             /* bytes the server persisted from them */
	uint64_t abandoned;         /* streams dropped (a non-sequential change,
				     * a failure) */
	uint64_t taken;             /* sessions handed to a write op */
};

/* Create (nothing runs until stm_start). j and b are borrowed and must
 * outlive it. ERR_INVAL for a bad chunk size or no files_dir; ERR_NOMEM. */
int stm_new(struct jnl *j, struct be *b, const struct stm_opts *o, struct stm **out,
	    struct err *err);

/* Start the stream thread (signals blocked as the caller's mask says).
 * A no-op when the backend lacks BE_CAP_STREAM, or m is NULL. ERR_INVAL
 * when running. stm_stop, stm_free, stm_note_write and stm_take accept a
 * NULL m too (nothing streamed). */
int stm_start(struct stm *m, struct err *err);

/* Stop the thread: a chunk in flight finishes or fails (cancel the HTTP
 * client first to cut it short); streams and their journal records are
 * kept, so a later stm_start or a restarted daemon goes on with them.
 * Idempotent. */
void stm_stop(struct stm *m);

/* Stop, then free everything (sessions stay recorded). NULL: no-op. */
void stm_free(struct stm *m);

/* fid's cache file is about to change from byte off on (a write at off,
 * a truncate to off). Each call must be followed by stm_note_write_end
 * with the same fid and off once the change is made (or failed): a stream
 * reads no chunk of fid reaching beyond off meanwhile. Cheap (no I/O). */
void stm_note_write(struct stm *m, uint64_t fid, uint64_t off);
void stm_note_write_end(struct stm *m, uint64_t fid, uint64_t off);

/* A write op of fid (at path, guarded by base: NULL or "" = must not exist)
 * is about to upload size bytes. Ends fid's stream (waiting for a chunk in
 * flight), in memory and in the journal. Returns 1 when its session can be
 * finished by the op: *up (zeroed first) holds the session, path,
 * persisted offset and chunk size; meta is the caller's. Ownership of the
 * session passes to the caller. 0 when there is none fit for it (a stale
 * one is cancelled) or up is NULL (the op has a session of its own). A
 * journal record that cannot be removed is only logged: a later take of it
 * finds it stale or finished (see above). seed (may be NULL; zeroed
 * first) gets, when known, the checksums of the first seed->off bytes as
 * they were sent (release it with be_sums_prefix_release unless passed to
 * be_upload_file_seeded). */
int stm_take(struct stm *m, uint64_t fid, const char *path, const char *base, uint64_t size,
	     struct be_upload *up, struct be_sums_prefix *seed);

/* Counters since stm_new. */
void stm_get_stats(struct stm *m, struct stm_stats *out);

#endif
