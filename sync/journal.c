/* durafs journal: the durable record, in one SQLite database per mount, of
 * every local change not yet committed remotely, with the stored listings
 * and the read-cache map beside it. Contract: include/durafs/journal.h. */

/*
** THE JOURNAL: SPECIFICATION
** ==========================
**
** 1. What it is
** -------------
** One SQLite database per mount, `journal.db` in the mount's cache dir.
** Every change a user makes (a file's content, mkdir, rename, unlink,
** rmdir, mtime, symlink) is appended here, in the same call that makes the
** change visible locally, before the FUSE request is answered. Upload
** workers claim ops, perform them remotely, and delete them once the remote
** has them. Whatever is in the journal survives a crash of the daemon and
** is carried out after the next mount (or by `sync --flush --cache-dir`).
** The same database stores the remote listings and attributes the mount
** has seen (tables `dirs`, `entries`, `meta`) and the map of the read
** cache (`cache_files`, `cache_blocks`), so a remount answers at once.
**
** 2. Durability and locking
** -------------------------
** - journal_mode=WAL, locking_mode=EXCLUSIVE: the daemon is the only user of
**   the database. With EXCLUSIVE, SQLite keeps the WAL index in heap memory
**   (no -shm file, no shared mmap that a full disk could turn into SIGBUS)
**   and takes its lock once. A second process is refused up front by a
**   flock(2) on `journal.db.lock`, with a clear "in use" message.
** - synchronous=NORMAL by default, FULL on request (jnl_opts.sync_full).
**   Why NORMAL is the right default: in WAL mode, NORMAL writes every
**   committed transaction into the WAL with write(2) before sqlite3_step
**   returns; only the fsync is deferred to checkpoints. A killed daemon
**   (SIGKILL, crash, OOM kill) therefore loses no committed transaction:
**   the data is in the kernel's page cache and the next open replays the
**   WAL. That is the failure durafs promises to survive, and the crash loop
**   (tests/unit/test_journal_crash.c) checks it with real SIGKILLs. Against
**   power loss, NORMAL may lose the last transactions but never corrupts
**   the database (SQLite's guarantee for WAL+NORMAL); FULL would not make
**   durafs power-safe anyway, because the cache files themselves are not
**   fsynced on close (writes run at local-disk speed by design). What must
**   survive a power loss is already on the remote: fsync(2) and `sync
**   --flush` return only once the remote has committed the bytes, so a lost
**   journal tail after a power cut can only repeat work (an op redone),
**   which the backends recognise (same size and checksums: success, not a
**   conflict). FULL costs an fsync per commit (measured ~10-15x slower
**   here); it is there for disks where even that is wanted.
** - The database file is created 0600 (an existing file with a wider mode
**   is narrowed); SQLite creates the WAL with the database's mode. Session
**   URIs are stored here: they are credentials for their upload.
** - Every public mutation is one transaction (BEGIN IMMEDIATE ... COMMIT):
**   it happens completely or not at all. On failure the transaction is
**   rolled back and the call reports the error; SQLITE_FULL (or an I/O
**   error whose errno is ENOSPC/EDQUOT) is ERR_NOSPC, so the FUSE layer
**   returns ENOSPC and nothing previously journaled is lost. After a
**   NOSPC the journal runs a TRUNCATE checkpoint, which folds the WAL into
**   the database and gives the WAL's space back when the database has room
**   for it; a later call may then succeed.
** - page_size=2048 (new databases): a commit writes every page it
**   touched to the WAL, and the journal's rows are small, so smaller pages
**   mean fewer bytes per commit (measured here: ~15% less CPU than 4096
**   for the 10,000-file test) while rows with long paths still fit in a
**   page without overflow.
** - wal_autocheckpoint=10000 pages (a WAL of up to ~20 MB between
**   checkpoints; journal_size_limit truncates it back to 4 MB after each):
**   checkpoints are where NORMAL fsyncs (WAL and database), so they come
**   once per ~1000 small transactions rather than ~100, keeping fsyncs off
**   the FUSE write path; replaying 20 MB at the next open takes
**   milliseconds. jnl_open and jnl_close fold the WAL in completely.
**
** 3. Schema (PRAGMA user_version = 3, application_id = 0x64726673 "drfs")
** ----------------------------------------------------------------------
**   files(fid INTEGER PRIMARY KEY AUTOINCREMENT,   -- stable identity
**         path TEXT,            -- current path; NULL once unlinked
**         type INTEGER,         -- 1 file, 2 dir, 3 symlink
**         cache_name TEXT, target TEXT,
**         version INTEGER,      -- content version, grows on every change
**         upl_version INTEGER,  -- highest version handed to an upload
**         base TEXT,            -- remote version replaced; NULL: none yet
**         dirty INTEGER, size INTEGER, mtime_ns INTEGER)
**     UNIQUE(path) WHERE path IS NOT NULL; INDEX(dirty) WHERE dirty=1;
**     INDEX(cache_name)
**   A remote entry tracked without a version (a GCS prefix directory) has
**   base "" (it exists); NULL means it does not exist remotely.
**   ops(seq INTEGER PRIMARY KEY AUTOINCREMENT,     -- journal order
**       kind, fid, fid2,        -- fid2: file replaced by a rename
**       path, path2, target,    -- path2: rename destination
**       state, ndeps,           -- ndeps = rows in deps for this op
**       version, size, mtime_ns, created_ms, not_before_ms,
**       attempts, claim, lease_until_ms,
**       session, total, persisted, sess_version, crc32c, md5,  -- upload
**       err_code, err_msg, err_ms, conflict_name,
**       flags)                  -- JNL_OPF_TREE: rmdir of a whole tree
**     INDEX(fid,seq) (path,seq) (path2,seq) (fid2)
**     INDEX(state,ndeps,not_before_ms,seq)        -- the claim order
**   deps(seq, dep) PRIMARY KEY(seq,dep), INDEX(dep)  -- seq waits for dep
**     triggers keep ops.ndeps = count of its deps rows
**   dirs(path PRIMARY KEY, complete, fetched_ms)
**   entries(dir, name, type, size, mtime_ns, remote,
**           flags)              -- BE_EF_* of the remote entry (version 2)
**     PRIMARY KEY(dir,name)
**     INDEX entries_id(substr(remote,instr(remote,':')+1))
**       WHERE instr(remote,':')>0        -- version 3
**   meta(key PRIMARY KEY, value)
**   cache_files(name PRIMARY KEY, remote, bytes, atime_ms) INDEX(atime_ms)
**   cache_blocks(name, start, end) PRIMARY KEY(name,start)
** AUTOINCREMENT makes seq and fid never reused, even after deletions and
** restarts; jnl_last_seq() is therefore a valid "everything up to now" mark.
** entries_id indexes the remote id of a stored entry (the text after the
** first ':' of `remote`, see be_version_format; only Drive entries have
** one, so GCS listings add nothing to it): jnl_entries_by_ids looks each
** id up there instead of scanning every entry (the Drive change feed
** names a deleted or moved item by id only). Its statement must spell the
** expression and the WHERE term as the index does (ENT_ID, ENT_HAS_ID),
** or SQLite does not use it; a unit test checks the query plan.
**
** 4. Files and versions
** ---------------------
** A fid names one local file, directory or symlink for its whole life;
** renames change its path, not its fid. `version` grows whenever the
** content changes: jnl_write increments it; jnl_file_dirty (called before
** every write to the cache file) increments it when the file was clean or
** when the current version was handed to an upload (upl_version), so an
** upload knows it is stale and recovery knows the cache holds changes not
** yet journaled as an op. `base` is the remote version the local content
** replaces: the guard of the next remote write (NULL: must not exist).
** Completing a write sets base to the new remote version and clears dirty
** if version has not moved since the claim. An unlinked fid keeps its row
** (path NULL) while ops reference it; jnl_gc deletes it afterwards and
** hands its cache file name back for deletion.
**
** 5. An op's life
** ---------------
**        append            claim (deps done, not_before passed)
**   (new) -----> PENDING -------------------------------> IN_PROGRESS
**                 ^  ^  |                                  |  |  |  |
**                 |  |  +-- coalesced / cancelled:         |  |  |  +-- complete:
**                 |  |      deleted                        |  |  |      deleted
**                 |  +-- retry_later, lease expired, ------+  |  |      (committed)
**                 |      recovery after a crash               |  +-- fail ----> FAILED
**                 +------------- retry (user) <---------------|---------------- |
**                                                              +-- conflict --> CONFLICT
**   FAILED and CONFLICT rows stay (status shows them) until jnl_resolve
**   deletes them; jnl_retry sends FAILED back to PENDING.
** Every claim takes a new claim token and a lease (lease_until_ms); calls
** for the op must present the token, so a worker whose lease expired and
** whose op was requeued cannot complete it by mistake.
**
** 6. Ordering (the scheduler's dependency rule)
** ---------------------------------------------
** Op Y must wait for an earlier op X ("X is a dependency of Y") when X is
** unfinished (PENDING, IN_PROGRESS or FAILED) and
**   - X and Y concern the same fid, or
**   - a path X touches and a path Y touches are equal, or one is an
**     ancestor directory of the other ("a" vs "a/b/c").
** An op touches its path, and a rename also its destination. Ops with no
** such relation run in parallel. A CONFLICT op counts as finished (its
** local version went to the conflict copy; nothing else waits on it).
** Representation: when Y is appended, rows deps(Y, X) are written for
**   - the latest unfinished op of the same fid,
**   - for each path p of Y and each ancestor a of p: the latest unfinished
**     op touching exactly p or a,
**   - every unfinished op touching a path strictly below p.
** The latest op at one exact path (or of one fid) itself depends on the
** one before it, so the rows give the whole relation transitively. When an
** op finishes, rows deps(*, it) go; when an op is deleted unfinished
** (coalescing) its dependents inherit its own deps (splice), which keeps
** the transitive relation. ndeps counts an op's rows (triggers), and the
** claimable ops are exactly state=PENDING AND ndeps=0 AND not_before_ms
** <= now, taken in (not_before_ms, seq) order from one index.
**
** 7. Coalescing
** -------------
** An op is "started" once it has been claimed (attempts > 0): from then on
** it may have had an effect remotely, even if it is pending again.
**   a. jnl_write of fid F when F has a PENDING write not yet started: that
**      op is updated (version, size, mtime, not_before) and keeps its seq.
**      It is the right place: only ops of F can depend on F's content, and
**      they all come after it (fid chain). Pending not-started setattrs of
**      F are dropped (the write carries the mtime). not_before becomes
**      now+delay but never later than created+max_defer, so a file that is
**      rewritten without pause is still uploaded.
**   b. jnl_setattr folds into a not-started write or setattr of F.
**   c. A write W completing with uploaded version U drops the not-started
**      writes of F with version <= U: the content W sent includes theirs.
**   d. Cancel: unlinking (or rmdir of) F when F never reached the remote
**      (base IS NULL), none of its ops started, none of them carries a
**      replaced file (fid2), and (directories) no unfinished op touches a
**      path below any path F had: every op of F is deleted and nothing is
**      appended. A file created and deleted before upload never reaches
**      the remote.
**   e. Unlinking F otherwise: when base is set, F's not-started writes and
**      setattrs are dropped (the remote copy is going away), then the
**      unlink is appended. An unlink of a file whose create was committed
**      always stays.
**   f. rename with JNL_RENAME_REPLACE unlinks the target T in the same
**      transaction by rule d or e, except that no unlink op is appended:
**      the rename carries T as fid2 and overwrites it remotely, guarded by
**      T's base at claim time.
**   g. jnl_rmdir_tree (Drive: deleting a folder trashes what is in it)
**      also drops the not-started unlinks and rmdirs strictly below the
**      directory and flags the rmdir JNL_OPF_TREE when it folded any: an
**      `rm -rf` becomes one remote call on the folder.
** An in-progress op is never changed by coalescing: it finishes, or the
** scheduler abandons it (jnl_upload_reset + jnl_retry_later) and it runs
** again with the newest content.
**
** 8. Uploads
** ----------
** A write op's claim records the fid's current version as op.version (and
** upl_version). A resumable session is recorded with jnl_upload_begin
** (URI, total, the content version and crc32c/md5 it was started with)
** before the first chunk; jnl_upload_progress records each offset the
** server acknowledged. Both survive requeueing and restarts. On the next
** claim the worker resumes when sess_version == version and the cache
** file's checksums still match (it queries the server's persisted offset
** first), and otherwise resets the session and starts again.
**
** 9. Waiting
** ----------
** jnl_wait_fid / jnl_wait_all sleep on a condition variable that every
** completion, failure, conflict, drop and resolve broadcasts. Success:
** no op of the fid (of the journal) with seq <= up_to_seq is left. An
** error: such an op is FAILED or CONFLICT, or is held back transitively
** (deps rows) by a FAILED op; the waiter returns it at once, or with
** JNL_WAIT_SETTLE (a flush that wants every outcome) once nothing it
** waits for can still progress. Claimers sleep on a second condition
** variable, broadcast by appends and by anything that can make an op
** ready, with a timeout at the next not_before.
**
** 10. Invariants (checked by jnl_check and by the crash loop)
** -----------------------------------------------------------
**   I1. SQLite integrity_check is "ok".
**   I2. ops.ndeps = number of deps rows of the op; every deps row (Y, X)
**       has X.seq < Y.seq, X unfinished (state 0-2) and Y PENDING.
**   I3. If X and Y are unfinished, X.seq < Y.seq and they are related
**       (section 6), Y depends on X transitively.
**   I4. IN_PROGRESS ops have a claim token; no op is IN_PROGRESS right after
**       open (recovery).
**   I5. Live paths are unique and valid; every op's fid exists in files.
**   I6. seq and fid are never reused (sqlite_sequence >= every row).
**   I7. After recovery every dirty live regular file has an unfinished
**       write op; no acknowledged change is missing (crash loop).
**
** 11. Recovery (run by jnl_open, in one transaction)
** --------------------------------------------------
**   1. Check application_id and user_version: a newer schema is refused
**      ("written by a newer durafs"), a foreign database too; an older one
**      is upgraded in place, in the same transaction (version 1 -> 2: the
**      column entries.flags, 0 for the stored rows; 2 -> 3: the index
**      entries_id, built over the stored rows).
**   2. SQLite replays its WAL (committed transactions only).
**   3. IN_PROGRESS ops go back to PENDING with their claim and lease
**      cleared; attempts, error and upload session are kept, so an
**      interrupted resumable upload continues from the server's offset.
**   4. Every live dirty regular file with no unfinished write op gets one
**      (the daemon died while the file was open and changing): what is in
**      the cache is uploaded rather than forgotten.
**   5. Counts are reported (struct jnl_recovery) for the log.
**   6. The WAL is folded into the database (TRUNCATE checkpoint).
** A crash during recovery is harmless: it is one transaction, redone in
** full by the next open.
**
** 12. Threading
** -------------
** One connection (SQLITE_OPEN_NOMUTEX) guarded by j->mu; prepared
** statements are cached in j->st for the life of the connection. Calls are
** short (a handful of indexed statements); waits release the mutex while
** they sleep. j->mu guards everything in struct jnl below it.
*/

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "durafs/clock.h"
#include "durafs/journal.h"

#define JNL_SCHEMA_VERSION 3
#define JNL_APP_ID 0x64726673 /* "drfs" */
#define JNL_PATH_MAX 4096

/* The remote id of an entry (the text after the first ':' of its remote
 * version) and the condition for having one: the expression and WHERE term
 * of the index entries_id; ENT_BY_IDS must use them verbatim. */
#define ENT_ID "substr(remote,instr(remote,':')+1)"
#define ENT_HAS_ID "instr(remote,':')>0"
#define ENT_ID_INDEX "CREATE INDEX IF NOT EXISTS entries_id ON entries(" ENT_ID ") " \
	"WHERE " ENT_HAS_ID

/* Column lists shared by several statements. */
#define OPCOLS \
	"o.seq,o.kind,o.state,o.fid,f.type,o.path,o.path2,o.target," \
	"f.cache_name,f.base,f2.base,o.version,o.size,o.mtime_ns,o.attempts," \
	"o.claim,o.created_ms,o.not_before_ms,o.session,o.total,o.persisted," \
	"o.sess_version,o.crc32c,o.md5,o.err_code,o.err_msg,o.conflict_name," \
	"o.flags " \
	"FROM ops o LEFT JOIN files f ON f.fid=o.fid " \
	"LEFT JOIN files f2 ON f2.fid=o.fid2 "
#define FILECOLS "fid,path,type,cache_name,target,version,base,dirty,size,mtime_ns"
/* Unfinished: pending, in progress, failed. */
#define UNFIN "state<=2"

/* Every statement, prepared once per connection (X-macro: name, SQL). */
#define JNL_STMTS(X) \
	X(BEGIN, "BEGIN IMMEDIATE") \
	X(COMMIT, "COMMIT") \
	X(ROLLBACK, "ROLLBACK") \
	X(FILE_INSERT, "INSERT INTO files(path,type,cache_name,target,version," \
	  "base,dirty,size,mtime_ns) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)") \
	X(FILE_BY_PATH, "SELECT fid FROM files WHERE path=?1") \
	X(FILE_GET, "SELECT " FILECOLS ",upl_version FROM files WHERE fid=?1") \
	X(FILE_SET_CACHE, "UPDATE files SET cache_name=?2 WHERE fid=?1") \
	X(FILE_SET_BASE, "UPDATE files SET base=?2 WHERE fid=?1") \
	X(FILE_BUMP, "UPDATE files SET dirty=1,version=version+1 WHERE fid=?1") \
	X(FILE_WRITE, "UPDATE files SET version=version+1,dirty=1,size=?2 " \
	  "WHERE fid=?1") \
	X(FILE_MTIME, "UPDATE files SET mtime_ns=?2 WHERE fid=?1") \
	X(FILE_RUNNING, "SELECT 1 FROM ops WHERE fid=?1 AND +state=1 LIMIT 1") \
	X(FILE_CLEAN_IF, "UPDATE files SET dirty=0 WHERE fid=?1 AND version<=?2") \
	X(FILE_MOVE, "UPDATE files SET path=?2 WHERE fid=?1") \
	X(FILE_MOVE_SUB, "UPDATE files SET path=?1||substr(path,?2) " \
	  "WHERE path>?3 AND path<?4") \
	X(FILE_UNLINK, "UPDATE files SET path=NULL,dirty=0 WHERE fid=?1") \
	X(FILE_ANY_BELOW, "SELECT 1 FROM files WHERE path>?1 AND path<?2 LIMIT 1") \
	X(FILE_CHILDREN, "SELECT " FILECOLS " FROM files WHERE path>?1 AND " \
	  "path<?2 AND instr(substr(path,?3),'/')=0 ORDER BY path") \
	X(FILE_DIRTY_LIST, "SELECT " FILECOLS " FROM files WHERE dirty=1 AND " \
	  "path IS NOT NULL ORDER BY path") \
	X(FILE_UPL, "UPDATE files SET upl_version=version WHERE fid=?1") \
	X(FILE_GC_LIST, "SELECT fid,cache_name FROM files WHERE path IS NULL " \
	  "AND NOT EXISTS(SELECT 1 FROM ops WHERE ops.fid=files.fid) " \
	  "AND NOT EXISTS(SELECT 1 FROM ops WHERE ops.fid2=files.fid)") \
	X(FILE_DELETE, "DELETE FROM files WHERE fid=?1") \
	X(FILE_NEED_WRITE, "SELECT fid,version,size,mtime_ns,path FROM files " \
	  "WHERE dirty=1 AND path IS NOT NULL AND type=1 AND NOT EXISTS(" \
	  "SELECT 1 FROM ops WHERE ops.fid=files.fid AND ops.kind=1 AND " \
	  "ops." UNFIN ")") \
	X(OP_INSERT, "INSERT INTO ops(kind,fid,fid2,path,path2,target,version," \
	  "size,mtime_ns,created_ms,not_before_ms) " \
	  "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)") \
	X(DEP_FID, "SELECT max(seq) FROM ops WHERE fid=?1 AND seq<?2 AND " UNFIN) \
	X(DEP_EXACT, "SELECT max(s) FROM (" \
	  "SELECT max(seq) AS s FROM ops WHERE path=?1 AND seq<?2 AND " UNFIN \
	  " UNION ALL SELECT max(seq) FROM ops WHERE path2=?1 AND seq<?2 AND " \
	  UNFIN ")") \
	X(DEP_BELOW, "SELECT seq FROM ops WHERE path>?1 AND path<?2 AND " \
	  "seq<?3 AND " UNFIN " UNION SELECT seq FROM ops WHERE path2>?1 AND " \
	  "path2<?2 AND seq<?3 AND " UNFIN) \
	X(DEP_ADD, "INSERT OR IGNORE INTO deps(seq,dep) VALUES(?1,?2)") \
	X(DEP_SPLICE, "INSERT OR IGNORE INTO deps(seq,dep) SELECT a.seq,b.dep " \
	  "FROM deps a JOIN deps b ON b.seq=a.dep WHERE a.dep=?1") \
	X(DEP_DEL_OF, "DELETE FROM deps WHERE dep=?1") \
	X(DEP_DEL_SELF, "DELETE FROM deps WHERE seq=?1") \
	X(OP_DELETE, "DELETE FROM ops WHERE seq=?1") \
	X(OP_UNSTARTED, "SELECT seq FROM ops WHERE fid=?1 AND kind=?2 AND " \
	  "+state=0 AND attempts=0 ORDER BY seq DESC LIMIT 1") \
	X(OP_UNSTARTED_ALL, "SELECT seq FROM ops WHERE fid=?1 AND kind=?2 AND " \
	  "+state=0 AND attempts=0") \
	X(OP_COALESCE_WRITE, "UPDATE ops SET version=?2,size=?3,mtime_ns=?4," \
	  "not_before_ms=min(?5,created_ms+?6) WHERE seq=?1") \
	X(OP_SET_MTIME, "UPDATE ops SET mtime_ns=?2 WHERE seq=?1") \
	X(OP_SET_FLAGS, "UPDATE ops SET flags=?2 WHERE seq=?1") \
	X(OP_DEFER, "UPDATE ops SET not_before_ms=max(not_before_ms,?2) WHERE " \
	  "seq=?1 AND state=0 AND attempts=0") \
	X(OP_REMOVALS_BELOW, "SELECT seq FROM ops WHERE path>?1 AND path<?2 " \
	  "AND kind IN (4,5) AND +state=0 AND attempts=0") \
	X(OP_OF_FID, "SELECT seq,state,attempts,fid2,path,path2 FROM ops " \
	  "WHERE fid=?1 ORDER BY seq") \
	X(OP_COVERED, "SELECT seq FROM ops WHERE fid=?1 AND kind=1 AND " \
	  "+state=0 AND attempts=0 AND version<=?2 AND seq<>?3") \
	X(OP_GET, "SELECT " OPCOLS "WHERE o.seq=?1") \
	X(OP_LIST, "SELECT " OPCOLS "WHERE ((1<<o.state)&?1)<>0 ORDER BY o.seq " \
	  "LIMIT ?2") \
	X(OP_CLAIMED, "SELECT kind,fid,version,size,total,session IS NOT NULL " \
	  "FROM ops WHERE seq=?1 AND state=1 AND claim=?2") \
	X(OP_STATE, "SELECT state FROM ops WHERE seq=?1") \
	X(CLAIM_PICK, "SELECT seq,kind,fid FROM ops WHERE state=0 AND ndeps=0 " \
	  "AND not_before_ms<=?1 ORDER BY not_before_ms,seq LIMIT 1") \
	X(CLAIM_SET, "UPDATE ops SET state=1,attempts=attempts+1,claim=?2," \
	  "lease_until_ms=?3 WHERE seq=?1") \
	X(CLAIM_VERSION, "UPDATE ops SET version=(SELECT version FROM files " \
	  "WHERE files.fid=ops.fid) WHERE seq=?1") \
	X(NEXT_DUE, "SELECT min(not_before_ms) FROM ops WHERE state=0 AND " \
	  "ndeps=0") \
	X(RENEW, "UPDATE ops SET lease_until_ms=?2 WHERE seq=?1") \
	X(UPL_BEGIN, "UPDATE ops SET session=?2,total=?3,sess_version=?4," \
	  "crc32c=?5,md5=?6,persisted=0,lease_until_ms=?7 WHERE seq=?1") \
	X(UPL_PROGRESS, "UPDATE ops SET persisted=?2,lease_until_ms=?3 " \
	  "WHERE seq=?1") \
	X(UPL_RESET, "UPDATE ops SET session=NULL,total=NULL,sess_version=NULL," \
	  "crc32c=NULL,md5=NULL,persisted=0 WHERE seq=?1") \
	X(RETRY_LATER, "UPDATE ops SET state=0,claim=0,lease_until_ms=0," \
	  "not_before_ms=?2,err_code=?3,err_msg=?4,err_ms=?5 WHERE seq=?1") \
	X(FAIL, "UPDATE ops SET state=2,claim=0,lease_until_ms=0,err_code=?2," \
	  "err_msg=?3,err_ms=?4 WHERE seq=?1") \
	X(CONFLICT, "UPDATE ops SET state=3,claim=0,lease_until_ms=0," \
	  "err_code=?2,err_msg=?3,err_ms=?4,conflict_name=?5 WHERE seq=?1") \
	X(EXPIRE, "UPDATE ops SET state=0,claim=0,lease_until_ms=0 WHERE " \
	  "state=1 AND lease_until_ms<?1") \
	X(REQUEUE_ALL, "UPDATE ops SET state=0,claim=0,lease_until_ms=0 WHERE " \
	  "state=1") \
	X(RETRY, "UPDATE ops SET state=0,err_code=0,err_msg=NULL,err_ms=NULL," \
	  "not_before_ms=?2 WHERE seq=?1 AND state=2") \
	X(EXPEDITE_FID, "WITH RECURSIVE need(s) AS (SELECT seq FROM ops WHERE " \
	  "fid=?1 AND seq<=?2 UNION SELECT d.dep FROM deps d JOIN need ON " \
	  "d.seq=need.s) UPDATE ops SET not_before_ms=0 WHERE seq IN " \
	  "(SELECT s FROM need) AND +state=0 AND attempts=0 AND " \
	  "not_before_ms>0") \
	X(EXPEDITE_ALL, "UPDATE ops SET not_before_ms=0 WHERE seq<=?1 AND " \
	  "+state=0 AND attempts=0 AND not_before_ms>0") \
	X(W_BAD_FID, "SELECT seq,state,err_code,err_msg,path,conflict_name " \
	  "FROM ops WHERE fid=?1 AND seq<=?2 AND +state>=2 ORDER BY seq " \
	  "LIMIT 1") \
	X(W_BAD_ALL, "SELECT seq,state,err_code,err_msg,path,conflict_name " \
	  "FROM ops WHERE state IN (2,3) AND +seq<=?2 AND ?1=0 ORDER BY +seq " \
	  "LIMIT 1") \
	X(W_ANY, "SELECT 1 FROM ops WHERE ?1=0 AND seq<=?2 AND +state<=1 " \
	  "LIMIT 1") \
	X(W_ANY_FID, "SELECT 1 FROM ops WHERE fid=?1 AND seq<=?2 AND " \
	  "+state<=1 LIMIT 1") \
	X(HAS_FAILED, "SELECT 1 FROM ops WHERE state=2 LIMIT 1") \
	X(W_STUCK, "WITH RECURSIVE stuck(s,cause) AS (SELECT seq,seq FROM ops " \
	  "WHERE state=2 UNION SELECT d.seq,stuck.cause FROM deps d JOIN stuck " \
	  "ON d.dep=stuck.s) SELECT o.path,c.err_code,c.err_msg,c.path FROM " \
	  "stuck JOIN ops o ON o.seq=stuck.s JOIN ops c ON c.seq=stuck.cause " \
	  "WHERE (?1=0 OR o.fid=?1) AND o.seq<=?2 AND o.state<=1 " \
	  "ORDER BY o.seq,c.seq LIMIT 1") \
	X(W_RUNNABLE, "WITH RECURSIVE stuck(s) AS (SELECT seq FROM ops WHERE " \
	  "state=2 UNION SELECT d.seq FROM deps d JOIN stuck ON d.dep=stuck.s) " \
	  "SELECT 1 FROM ops WHERE (?1=0 OR fid=?1) AND seq<=?2 AND state<=1 " \
	  "AND seq NOT IN (SELECT s FROM stuck) LIMIT 1") \
	X(PROGRESS, "SELECT total(state<=2),total(CASE WHEN kind=1 AND " \
	  "state<=2 THEN max(coalesce(total,size)-persisted,0) ELSE 0 END)," \
	  "total(state=2),total(state=3) FROM ops WHERE seq<=?1") \
	X(STATS, "SELECT total(state=0),total(CASE WHEN state=0 AND kind=1 THEN " \
	  "max(coalesce(total,size)-persisted,0) ELSE 0 END)," \
	  "total(state=0 AND attempts>0),total(state=1),total(CASE WHEN " \
	  "state=1 AND kind=1 THEN coalesce(total,size) ELSE 0 END)," \
	  "total(CASE WHEN state=1 AND kind=1 THEN persisted ELSE 0 END)," \
	  "total(state=2),total(state=3) FROM ops") \
	X(DIRTY_COUNT, "SELECT count(*) FROM files WHERE dirty=1 AND path IS " \
	  "NOT NULL") \
	X(REMOVED, "SELECT DISTINCT substr(o.path,?3) FROM ops o WHERE " \
	  "o.path>?1 AND o.path<?2 AND instr(substr(o.path,?3),'/')=0 AND " \
	  "o.state<=2 AND o.kind IN (3,4,5) AND NOT EXISTS(SELECT 1 FROM files " \
	  "WHERE files.path=o.path) ORDER BY 1") \
	X(DIR_SET, "INSERT OR REPLACE INTO dirs(path,complete,fetched_ms) " \
	  "VALUES(?1,?2,?3)") \
	X(DIR_GET, "SELECT complete,fetched_ms FROM dirs WHERE path=?1") \
	X(DIR_INVALIDATE, "UPDATE dirs SET complete=0 WHERE path=?1") \
	X(DIR_STALE, "UPDATE dirs SET fetched_ms=0 WHERE path=?1") \
	X(DIR_FORGET, "DELETE FROM dirs WHERE path=?1 OR (path>?2 AND path<?3)") \
	X(DIR_FORGET_ENT, "DELETE FROM entries WHERE dir=?1 OR (dir>?2 AND " \
	  "dir<?3)") \
	X(ENT_PUT, "INSERT OR REPLACE INTO entries(dir,name,type,size,mtime_ns," \
	  "remote,flags) VALUES(?1,?2,?3,?4,?5,?6,?7)") \
	X(ENT_GET, "SELECT name,type,size,mtime_ns,remote,flags FROM entries " \
	  "WHERE dir=?1 AND name=?2") \
	X(ENT_LIST, "SELECT name,type,size,mtime_ns,remote,flags FROM entries " \
	  "WHERE dir=?1 ORDER BY name") \
	X(ENT_DEL, "DELETE FROM entries WHERE dir=?1 AND name=?2") \
	X(ENT_COUNT, "SELECT count(*) FROM entries WHERE dir=?1") \
	X(ENT_BY_IDS, "SELECT dir,name,type FROM entries WHERE " ENT_HAS_ID " AND " \
	  ENT_ID " IN (SELECT value FROM json_each(?1)) ORDER BY dir,name") \
	X(META_SET, "INSERT OR REPLACE INTO meta(key,value) VALUES(?1,?2)") \
	X(META_GET, "SELECT value FROM meta WHERE key=?1") \
	X(META_DEL, "DELETE FROM meta WHERE key=?1") \
	X(CF_GET, "SELECT remote FROM cache_files WHERE name=?1") \
	X(CF_INSERT, "INSERT INTO cache_files(name,remote,bytes,atime_ms) " \
	  "VALUES(?1,?2,0,?3)") \
	X(CF_RESET, "UPDATE cache_files SET remote=?2,bytes=0 WHERE name=?1") \
	X(CF_ADD, "UPDATE cache_files SET bytes=bytes+?2,atime_ms=?3 WHERE " \
	  "name=?1") \
	X(CF_TOUCH, "UPDATE cache_files SET atime_ms=?2 WHERE name=?1") \
	X(CF_TOUCH_MAX, "UPDATE cache_files SET atime_ms=max(atime_ms,?2) WHERE name=?1") \
	X(CF_DROP, "DELETE FROM cache_files WHERE name=?1") \
	X(CF_LRU, "SELECT name,remote,bytes,atime_ms FROM cache_files c WHERE " \
	  "NOT EXISTS(SELECT 1 FROM files f WHERE f.cache_name=c.name AND " \
	  "(f.dirty=1 OR EXISTS(SELECT 1 FROM ops WHERE ops.fid=f.fid AND " \
	  "ops.kind=1))) ORDER BY atime_ms,name LIMIT ?1") \
	X(CF_USAGE, "SELECT total(bytes),count(*) FROM cache_files") \
	X(CB_BEFORE, "SELECT start,end FROM cache_blocks WHERE name=?1 AND " \
	  "start<?2 ORDER BY start DESC LIMIT 1") \
	X(CB_AT_OR_BEFORE, "SELECT start,end FROM cache_blocks WHERE name=?1 " \
	  "AND start<=?2 ORDER BY start DESC LIMIT 1") \
	X(CB_FROM, "SELECT start,end FROM cache_blocks WHERE name=?1 AND " \
	  "start>=?2 AND start<=?3 ORDER BY start") \
	X(CB_NEXT, "SELECT start FROM cache_blocks WHERE name=?1 AND start>?2 " \
	  "ORDER BY start LIMIT 1") \
	X(CB_DEL, "DELETE FROM cache_blocks WHERE name=?1 AND start=?2") \
	X(CB_INSERT, "INSERT INTO cache_blocks(name,start,end) VALUES(?1,?2,?3)") \
	X(CB_DROP, "DELETE FROM cache_blocks WHERE name=?1")

enum {
#define X(name, sql) ST_##name,
	JNL_STMTS(X)
#undef X
	ST_COUNT
};

static const char *const st_sql[ST_COUNT] = {
#define X(name, sql) sql,
	JNL_STMTS(X)
#undef X
};

/* The schema of version JNL_SCHEMA_VERSION, created in one transaction. */
static const char schema_sql[] =
	"CREATE TABLE files("
	" fid INTEGER PRIMARY KEY AUTOINCREMENT,"
	" path TEXT,"
	" type INTEGER NOT NULL CHECK(type BETWEEN 1 AND 3),"
	" cache_name TEXT,"
	" target TEXT,"
	" version INTEGER NOT NULL DEFAULT 0,"
	" upl_version INTEGER NOT NULL DEFAULT 0,"
	" base TEXT,"
	" dirty INTEGER NOT NULL DEFAULT 0,"
	" size INTEGER NOT NULL DEFAULT 0,"
	" mtime_ns INTEGER NOT NULL DEFAULT 0);"
	"CREATE UNIQUE INDEX files_path ON files(path) WHERE path IS NOT NULL;"
	"CREATE INDEX files_dirty ON files(dirty) WHERE dirty=1;"
	"CREATE INDEX files_cache ON files(cache_name) WHERE cache_name IS NOT NULL;"
	"CREATE TABLE ops("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" kind INTEGER NOT NULL CHECK(kind BETWEEN 1 AND 7),"
	" fid INTEGER NOT NULL,"
	" fid2 INTEGER,"
	" path TEXT NOT NULL,"
	" path2 TEXT,"
	" target TEXT,"
	" state INTEGER NOT NULL DEFAULT 0 CHECK(state BETWEEN 0 AND 3),"
	" ndeps INTEGER NOT NULL DEFAULT 0,"
	" version INTEGER NOT NULL DEFAULT 0,"
	" size INTEGER NOT NULL DEFAULT 0,"
	" mtime_ns INTEGER NOT NULL DEFAULT 0,"
	" created_ms INTEGER NOT NULL,"
	" not_before_ms INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" claim INTEGER NOT NULL DEFAULT 0,"
	" lease_until_ms INTEGER NOT NULL DEFAULT 0,"
	" session TEXT,"
	" total INTEGER,"
	" persisted INTEGER NOT NULL DEFAULT 0,"
	" sess_version INTEGER,"
	" crc32c INTEGER,"
	" md5 BLOB,"
	" err_code INTEGER NOT NULL DEFAULT 0,"
	" err_msg TEXT,"
	" err_ms INTEGER,"
	" conflict_name TEXT,"
	" flags INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX ops_fid ON ops(fid,seq);"
	"CREATE INDEX ops_fid2 ON ops(fid2) WHERE fid2 IS NOT NULL;"
	"CREATE INDEX ops_path ON ops(path,seq);"
	"CREATE INDEX ops_path2 ON ops(path2,seq) WHERE path2 IS NOT NULL;"
	"CREATE INDEX ops_ready ON ops(state,ndeps,not_before_ms,seq);"
	"CREATE TABLE deps("
	" seq INTEGER NOT NULL,"
	" dep INTEGER NOT NULL,"
	" PRIMARY KEY(seq,dep)) WITHOUT ROWID;"
	"CREATE INDEX deps_dep ON deps(dep);"
	"CREATE TRIGGER deps_ai AFTER INSERT ON deps BEGIN"
	" UPDATE ops SET ndeps=ndeps+1 WHERE seq=NEW.seq; END;"
	"CREATE TRIGGER deps_ad AFTER DELETE ON deps BEGIN"
	" UPDATE ops SET ndeps=ndeps-1 WHERE seq=OLD.seq; END;"
	"CREATE TABLE dirs("
	" path TEXT PRIMARY KEY,"
	" complete INTEGER NOT NULL,"
	" fetched_ms INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE entries("
	" dir TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" type INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" mtime_ns INTEGER NOT NULL,"
	" remote TEXT,"
	" flags INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(dir,name)) WITHOUT ROWID;"
	ENT_ID_INDEX ";"
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
	"CREATE TABLE cache_files("
	" name TEXT PRIMARY KEY,"
	" remote TEXT,"
	" bytes INTEGER NOT NULL DEFAULT 0,"
	" atime_ms INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX cache_files_atime ON cache_files(atime_ms);"
	"CREATE TABLE cache_blocks("
	" name TEXT NOT NULL,"
	" start INTEGER NOT NULL,"
	" end INTEGER NOT NULL,"
	" PRIMARY KEY(name,start)) WITHOUT ROWID;";

#define JNL_TOUCH_MAX 256

struct jnl_touch {
	char *name;
	int64_t at;
};

struct jnl {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;  /* an op may have become claimable */
	pthread_cond_t done_cv;  /* an op finished, failed, was dropped */
	pthread_cond_t idle_cv;  /* the last waiter left (jnl_close) */
	struct jnl_opts opts;    /* read-only after open */
	char *path;              /* read-only after open */
	int lock_fd;             /* read-only after open */
	/* Everything below is protected by mu. */
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	uint64_t last_seq;
	uint64_t next_claim;
	uint64_t committed_ops;
	uint64_t committed_bytes;
	int waiters;             /* threads sleeping in a wait or claim_wait */
	int shutdown;
	uint64_t claim_wakes;    /* bumped by jnl_wake_claimers */
	int nospc;               /* the last failure was a full disk */
	int ckpt_freed;          /* ... and the checkpoint after it worked */
	int64_t removal_delay_ms; /* jnl_set_removal_delay */
	/* Access times of cache files read by jnl_cache_missing, not yet
	 * stored: written in one transaction once JNL_TOUCH_MAX gather, before
	 * jnl_cache_lru reads the order, and at close (a read then costs no
	 * write transaction; a crash loses only these LRU hints). */
	struct jnl_touch *touch;
	size_t ntouch, captouch;
	/* Rows written by touch_flush (access times, LRU hints only): not
	 * counted by jnl_gen. */
	uint64_t gen_skip;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static int64_t now_ms(struct jnl *j)
{
	if (j->opts.clock)
		return j->opts.clock(j->opts.clock_arg);
	return clk_wall_ms();
}

/* "p" + suffix, malloc'd (NULL on ENOMEM). */
static char *str_cat2(const char *p, size_t plen, const char *suffix)
{
	size_t slen = strlen(suffix);
	char *s = malloc(plen + slen + 1);

	if (!s)
		return NULL;
	memcpy(s, p, plen);
	memcpy(s + plen, suffix, slen + 1);
	return s;
}

/* 1 when p is a valid non-root path (journal.h conventions). */
static int path_valid(const char *p)
{
	const char *c, *seg;
	size_t n;

	if (!p || !*p || strlen(p) >= JNL_PATH_MAX)
		return 0;
	seg = p;
	for (c = p;; c++) {
		if (*c == '/' || *c == '\0') {
			n = (size_t)(c - seg);
			if (n == 0 || (n == 1 && seg[0] == '.') ||
			    (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return 0;
			if (*c == '\0')
				return 1;
			seg = c + 1;
		}
	}
}

/* 1 when name is a valid single component. */
static int name_valid(const char *name)
{
	return path_valid(name) && !strchr(name, '/');
}

/* Bounds of the paths strictly below dir ("" = root): every such path q
 * satisfies lo < q < hi bytewise. *lo and *hi are malloc'd. '0' follows '/'
 * in ASCII and 0xFF never occurs in UTF-8. start is the 1-based offset of
 * the part below dir (for substr). */
static int below_bounds(const char *dir, char **lo, char **hi, int *start)
{
	size_t n = strlen(dir);

	*lo = NULL;
	*hi = NULL;
	if (n == 0) {
		*lo = strdup("");
		*hi = strdup("\xff");
		*start = 1;
	} else {
		*lo = str_cat2(dir, n, "/");
		*hi = str_cat2(dir, n, "0");
		*start = (int)n + 2;
	}
	if (!*lo || !*hi) {
		free(*lo);
		free(*hi);
		*lo = NULL;
		*hi = NULL;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* SQLite plumbing                                                           */

/* Describe a SQLite failure rc of `what` in *err. SQLITE_FULL and an I/O
 * error whose errno is ENOSPC/EDQUOT give ERR_NOSPC. Returns -1. */
static int db_fail(struct jnl *j, int rc, const char *what, struct err *err)
{
	int sys = j->db ? sqlite3_system_errno(j->db) : 0;
	int prim = rc & 0xff;
	const char *msg = j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc);
	int code = ERR_IO;

	if (prim == SQLITE_FULL || (prim == SQLITE_IOERR &&
				    (sys == ENOSPC || sys == EDQUOT)))
		code = ERR_NOSPC;
	else if (prim == SQLITE_NOMEM)
		code = ERR_NOMEM;
	else if (prim == SQLITE_CONSTRAINT)
		code = ERR_INVAL;
	if (!msg || !*msg)
		msg = sqlite3_errstr(rc);
	err_set(err, code, "journal: %s: %s", what, msg);
	if (err && code == ERR_IO)
		err->sys_errno = sys;
	if (code == ERR_NOSPC) {
		j->nospc = 1;
		if (err)
			err->sys_errno = ENOSPC;
	}
	return -1;
}

static int oom(struct err *err)
{
	return err_set(err, ERR_NOMEM, "journal: out of memory");
}

/* The cached statement id, prepared on first use; reset and unbound. */
static sqlite3_stmt *stmt(struct jnl *j, int id, struct err *err)
{
	int rc;

	if (j->st[id])
		return j->st[id];
	rc = sqlite3_prepare_v3(j->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
				&j->st[id], NULL);
	if (rc != SQLITE_OK) {
		db_fail(j, rc, "prepare", err);
		j->st[id] = NULL;
		return NULL;
	}
	return j->st[id];
}

static void st_reset(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

static void bind_i64(sqlite3_stmt *s, int i, int64_t v)
{
	sqlite3_bind_int64(s, i, (sqlite3_int64)v);
}

/* Run statement s to completion (no rows expected); resets it. */
static int st_exec(struct jnl *j, sqlite3_stmt *s, const char *what,
		   struct err *err)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW) {
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			;
	}
	if (rc != SQLITE_DONE) {
		db_fail(j, rc, what, err);
		st_reset(s);
		return -1;
	}
	st_reset(s);
	return 0;
}

/* Step s once: 1 row (caller reads then resets), 0 done (reset here), -1
 * error (reset here). */
static int st_row(struct jnl *j, sqlite3_stmt *s, const char *what,
		  struct err *err)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	st_reset(s);
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(j, rc, what, err);
}

/* A single integer result: *found (may be NULL) 1 when a non-NULL value
 * was returned, *v set (0 otherwise). */
static int st_int(struct jnl *j, sqlite3_stmt *s, const char *what,
		  int64_t *v, int *found, struct err *err)
{
	int r = st_row(j, s, what, err);

	*v = 0;
	if (found)
		*found = 0;
	if (r < 0)
		return -1;
	if (r == 1) {
		if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
			*v = (int64_t)sqlite3_column_int64(s, 0);
			if (found)
				*found = 1;
		}
		st_reset(s);
	}
	return 0;
}

/* Copy column i (text or NULL) into *dst. -1 on ENOMEM. */
static int col_str(sqlite3_stmt *s, int i, char **dst)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	*dst = NULL;
	if (!t)
		return 0;
	*dst = strdup((const char *)t);
	return *dst ? 0 : -1;
}

static int exec_sql(struct jnl *j, const char *sql, const char *what,
		    struct err *err)
{
	int rc = sqlite3_exec(j->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return db_fail(j, rc, what, err);
	return 0;
}

static int tx_begin(struct jnl *j, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_BEGIN, err);

	if (!s)
		return -1;
	return st_exec(j, s, "begin", err);
}

/* Roll back if a transaction is open. When the failure was a full disk,
 * fold the WAL into the database and truncate it, which gives its space
 * back when the database has room (ckpt_freed records whether it did). */
static void tx_abort(struct jnl *j)
{
	sqlite3_stmt *s;

	if (!sqlite3_get_autocommit(j->db)) {
		s = stmt(j, ST_ROLLBACK, NULL);
		if (s)
			st_exec(j, s, "rollback", NULL);
		if (!sqlite3_get_autocommit(j->db))
			sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
	}
	if (j->nospc)
		j->ckpt_freed = sqlite3_wal_checkpoint_v2(j->db, NULL,
			SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) == SQLITE_OK;
}

/* After a failed mutation: 1 when it failed for want of disk space, it was
 * the first attempt and the checkpoint gave space back, so the caller runs
 * the whole transaction once more (a full WAL is not a full journal). */
static int tx_retry(struct jnl *j, int *tries)
{
	int again = j->nospc && j->ckpt_freed && *tries == 0;

	(*tries)++;
	j->nospc = 0;
	j->ckpt_freed = 0;
	return again;
}

static int tx_commit(struct jnl *j, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_COMMIT, err);

	if (!s)
		return -1;
	return st_exec(j, s, "commit", err);
}

/* End a mutation: commit when rc is 0, else roll back. Returns 0 or -1. */
static int tx_end(struct jnl *j, int rc, struct err *err)
{
	if (rc == 0 && tx_commit(j, err) == 0)
		return 0;
	tx_abort(j);
	return -1;
}

static void lock(struct jnl *j)
{
	pthread_mutex_lock(&j->mu);
}

static void unlock(struct jnl *j)
{
	pthread_mutex_unlock(&j->mu);
}

/* Something finished or changed state: wake waiters and claimers. */
static void wake_all(struct jnl *j)
{
	pthread_cond_broadcast(&j->done_cv);
	pthread_cond_broadcast(&j->work_cv);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

void jnl_file_release(struct jnl_file *f)
{
	if (!f)
		return;
	free(f->path);
	free(f->cache_name);
	free(f->target);
	free(f->base);
	memset(f, 0, sizeof(*f));
}

void jnl_files_free(struct jnl_file *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		jnl_file_release(&v[i]);
	free(v);
}

/* Fill f from a row in FILECOLS order. -1 on ENOMEM (f released). */
static int file_from_row(sqlite3_stmt *s, struct jnl_file *f)
{
	memset(f, 0, sizeof(*f));
	f->fid = (uint64_t)sqlite3_column_int64(s, 0);
	f->type = sqlite3_column_int(s, 2);
	f->version = (uint64_t)sqlite3_column_int64(s, 5);
	f->dirty = sqlite3_column_int(s, 7);
	f->size = (uint64_t)sqlite3_column_int64(s, 8);
	f->mtime_ns = (int64_t)sqlite3_column_int64(s, 9);
	if (col_str(s, 1, &f->path) || col_str(s, 3, &f->cache_name) ||
	    col_str(s, 4, &f->target) || col_str(s, 6, &f->base)) {
		jnl_file_release(f);
		return -1;
	}
	return 0;
}

/* The row of fid; ERR_NOTFOUND when absent. *upl (may be NULL) gets
 * upl_version. Caller holds mu. */
static int file_get_locked(struct jnl *j, uint64_t fid, struct jnl_file *f,
			   uint64_t *upl, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_FILE_GET, err);
	int r;

	memset(f, 0, sizeof(*f));
	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	r = st_row(j, s, "read file", err);
	if (r < 0)
		return -1;
	if (r == 0)
		return err_set(err, ERR_NOTFOUND, "journal: no file with fid %llu",
			       (unsigned long long)fid);
	if (upl)
		*upl = (uint64_t)sqlite3_column_int64(s, 10);
	r = file_from_row(s, f);
	st_reset(s);
	if (r)
		return oom(err);
	return 0;
}

/* The live fid at path: 1 found (*fid), 0 none, -1 error. */
static int file_at(struct jnl *j, const char *path, uint64_t *fid,
		   struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_FILE_BY_PATH, err);
	int64_t v;
	int found;

	if (!s)
		return -1;
	bind_text(s, 1, path);
	if (st_int(j, s, "look up path", &v, &found, err))
		return -1;
	*fid = (uint64_t)v;
	return found;
}

/* 1 when a live file lies strictly below path, 0 not, -1 error. */
static int file_any_below(struct jnl *j, const char *path, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_FILE_ANY_BELOW, err);
	char *lo = NULL, *hi = NULL;
	int64_t v;
	int found = 0, start, rc = -1;

	if (!s)
		return -1;
	if (below_bounds(path, &lo, &hi, &start)) {
		oom(err);
		goto out;
	}
	bind_text(s, 1, lo);
	bind_text(s, 2, hi);
	if (st_int(j, s, "look up children", &v, &found, err))
		goto out;
	rc = found;
out:
	free(lo);
	free(hi);
	return rc;
}

/* Insert a files row; *fid gets its id. */
static int file_insert(struct jnl *j, const char *path, int type,
		       const char *cache_name, const char *target,
		       const char *base, int dirty, uint64_t size,
		       int64_t mtime_ns, uint64_t *fid, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_FILE_INSERT, err);

	if (!s)
		return -1;
	bind_text(s, 1, path);
	sqlite3_bind_int(s, 2, type);
	bind_text(s, 3, cache_name);
	bind_text(s, 4, target);
	bind_i64(s, 5, dirty ? 1 : 0);
	bind_text(s, 6, base);
	sqlite3_bind_int(s, 7, dirty ? 1 : 0);
	bind_i64(s, 8, (int64_t)size);
	bind_i64(s, 9, mtime_ns);
	if (st_exec(j, s, "insert file", err))
		return -1;
	*fid = (uint64_t)sqlite3_last_insert_rowid(j->db);
	return 0;
}

/* Run a statement taking (?1 = fid, ?2 = int64). */
static int exec_fid_i64(struct jnl *j, int id, uint64_t fid, int64_t v,
			const char *what, struct err *err)
{
	sqlite3_stmt *s = stmt(j, id, err);

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	bind_i64(s, 2, v);
	return st_exec(j, s, what, err);
}

/* Run a statement taking (?1 = id) only. */
static int exec_id(struct jnl *j, int id, uint64_t v, const char *what,
		   struct err *err)
{
	sqlite3_stmt *s = stmt(j, id, err);

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)v);
	return st_exec(j, s, what, err);
}

int jnl_file_new(struct jnl *j, const char *path, int type,
		 const char *cache_name, const char *base, uint64_t size,
		 int64_t mtime_ns, uint64_t *fid, struct err *err)
{
	int tries = 0;
	uint64_t id = 0;
	int rc = -1, r;

	*fid = 0;
	if (!path_valid(path))
		return err_set(err, ERR_INVAL, "journal: invalid path");
	if (type < JNL_FILE || type > JNL_SYMLINK)
		return err_set(err, ERR_INVAL, "journal: invalid file type %d", type);
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	r = file_at(j, path, &id, err);
	if (r < 0)
		goto done;
	if (r == 1) {
		*fid = id;
		err_set(err, ERR_EXISTS, "journal: %s already exists", path);
		goto done;
	}
	/* A new local file (no base) is dirty: its content must be uploaded. */
	if (file_insert(j, path, type, cache_name, NULL, base,
			base == NULL && type == JNL_FILE, size, mtime_ns, &id, err))
		goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		*fid = id;
out:
	unlock(j);
	return rc;
}

int jnl_file_lookup(struct jnl *j, const char *path, uint64_t *fid,
		    struct err *err)
{
	int r;

	*fid = 0;
	if (!path_valid(path))
		return err_set(err, ERR_INVAL, "journal: invalid path");
	lock(j);
	r = file_at(j, path, fid, err);
	unlock(j);
	if (r < 0)
		return -1;
	if (r == 0)
		return err_set(err, ERR_NOTFOUND, "journal: no file at %s", path);
	return 0;
}

int jnl_file_get(struct jnl *j, uint64_t fid, struct jnl_file *out,
		 struct err *err)
{
	int rc;

	lock(j);
	rc = file_get_locked(j, fid, out, NULL, err);
	unlock(j);
	return rc;
}

int jnl_file_set_cache(struct jnl *j, uint64_t fid, const char *cache_name,
		       struct err *err)
{
	struct jnl_file f;
	sqlite3_stmt *s;
	int rc = -1;

	lock(j);
	if (file_get_locked(j, fid, &f, NULL, err))
		goto out;
	jnl_file_release(&f);
	s = stmt(j, ST_FILE_SET_CACHE, err);
	if (!s)
		goto out;
	bind_i64(s, 1, (int64_t)fid);
	bind_text(s, 2, cache_name);
	rc = st_exec(j, s, "set cache name", err);
out:
	unlock(j);
	return rc;
}

int jnl_file_set_base(struct jnl *j, uint64_t fid, const char *base,
		      struct err *err)
{
	int tries = 0;
	struct jnl_file f;
	sqlite3_stmt *s;
	int64_t v;
	int rc = -1, found;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (file_get_locked(j, fid, &f, NULL, err))
		goto done;
	jnl_file_release(&f);
	s = stmt(j, ST_FILE_RUNNING, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)fid);
	if (st_int(j, s, "look up ops", &v, &found, err))
		goto done;
	if (found) {
		err_set(err, ERR_INVAL, "journal: file %llu has an op in "
			"progress", (unsigned long long)fid);
		goto done;
	}
	s = stmt(j, ST_FILE_SET_BASE, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)fid);
	bind_text(s, 2, base);
	rc = st_exec(j, s, "set base", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	return rc;
}

int jnl_file_dirty(struct jnl *j, uint64_t fid, uint64_t *version,
		   struct err *err)
{
	struct jnl_file f;
	uint64_t upl = 0;
	int rc = -1, need, tries = 0;

	memset(&f, 0, sizeof(f));
	lock(j);
	if (file_get_locked(j, fid, &f, &upl, err))
		goto out;
	need = f.path && (!f.dirty || f.version <= upl);
	if (!need) {
		if (version)
			*version = f.version;
		rc = 0;
		goto out;
	}
again:
	if (tx_begin(j, err))
		goto out;
	rc = exec_id(j, ST_FILE_BUMP, fid, "mark dirty", err);
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries))
		goto again;
	if (rc == 0 && version)
		*version = f.version + 1;
out:
	jnl_file_release(&f);
	unlock(j);
	return rc;
}

/* Collect the rows of a FILECOLS statement already bound. */
static int files_collect(struct jnl *j, sqlite3_stmt *s, struct jnl_file **v,
			 size_t *n, struct err *err)
{
	struct jnl_file *arr = NULL, *tmp;
	size_t cnt = 0, cap = 0;
	int r;

	for (;;) {
		r = st_row(j, s, "list files", err);
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			tmp = realloc(arr, cap * sizeof(*arr));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto fail;
			}
			arr = tmp;
		}
		if (file_from_row(s, &arr[cnt])) {
			st_reset(s);
			oom(err);
			goto fail;
		}
		cnt++;
	}
	*v = arr;
	*n = cnt;
	return 0;
fail:
	jnl_files_free(arr, cnt);
	return -1;
}

int jnl_children(struct jnl *j, const char *dir, struct jnl_file **v,
		 size_t *n, struct err *err)
{
	sqlite3_stmt *s;
	char *lo = NULL, *hi = NULL;
	int start, rc = -1;

	*v = NULL;
	*n = 0;
	if (!dir || (*dir && !path_valid(dir)))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	if (below_bounds(dir, &lo, &hi, &start))
		return oom(err);
	lock(j);
	s = stmt(j, ST_FILE_CHILDREN, err);
	if (!s)
		goto out;
	bind_text(s, 1, lo);
	bind_text(s, 2, hi);
	sqlite3_bind_int(s, 3, start);
	rc = files_collect(j, s, v, n, err);
out:
	unlock(j);
	free(lo);
	free(hi);
	return rc;
}

int jnl_dirty_files(struct jnl *j, struct jnl_file **v, size_t *n,
		    struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1;

	*v = NULL;
	*n = 0;
	lock(j);
	s = stmt(j, ST_FILE_DIRTY_LIST, err);
	if (s)
		rc = files_collect(j, s, v, n, err);
	unlock(j);
	return rc;
}

void jnl_names_free(char **names, size_t n)
{
	size_t i;

	if (!names)
		return;
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Append a copy of s to a growing string array. */
static int names_push(char ***v, size_t *n, size_t *cap, const char *s)
{
	char **tmp;

	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		tmp = realloc(*v, *cap * sizeof(**v));
		if (!tmp)
			return -1;
		*v = tmp;
	}
	(*v)[*n] = strdup(s);
	if (!(*v)[*n])
		return -1;
	(*n)++;
	return 0;
}

int jnl_removed_children(struct jnl *j, const char *dir, char ***names,
			 size_t *n, struct err *err)
{
	sqlite3_stmt *s;
	char *lo = NULL, *hi = NULL, **v = NULL;
	size_t cnt = 0, cap = 0;
	int start, rc = -1, r;

	*names = NULL;
	*n = 0;
	if (!dir || (*dir && !path_valid(dir)))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	if (below_bounds(dir, &lo, &hi, &start))
		return oom(err);
	lock(j);
	s = stmt(j, ST_REMOVED, err);
	if (!s)
		goto out;
	bind_text(s, 1, lo);
	bind_text(s, 2, hi);
	sqlite3_bind_int(s, 3, start);
	for (;;) {
		r = st_row(j, s, "list removed", err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		if (names_push(&v, &cnt, &cap,
			       (const char *)sqlite3_column_text(s, 0))) {
			st_reset(s);
			oom(err);
			goto out;
		}
	}
	*names = v;
	*n = cnt;
	v = NULL;
	rc = 0;
out:
	unlock(j);
	jnl_names_free(v, cnt);
	free(lo);
	free(hi);
	return rc;
}

int jnl_gc(struct jnl *j, char ***cache_names, size_t *n, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	char **v = NULL;
	uint64_t *fids = NULL, *tmp;
	size_t cnt = 0, cap = 0, nf = 0, fcap = 0, i;
	int rc = -1, r;

	*cache_names = NULL;
	*n = 0;
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	s = stmt(j, ST_FILE_GC_LIST, err);
	if (!s)
		goto done;
	for (;;) {
		r = st_row(j, s, "list garbage", err);
		if (r < 0)
			goto done;
		if (r == 0)
			break;
		if (nf == fcap) {
			fcap = fcap ? fcap * 2 : 16;
			tmp = realloc(fids, fcap * sizeof(*fids));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto done;
			}
			fids = tmp;
		}
		fids[nf++] = (uint64_t)sqlite3_column_int64(s, 0);
		if (sqlite3_column_type(s, 1) != SQLITE_NULL &&
		    names_push(&v, &cnt, &cap,
			       (const char *)sqlite3_column_text(s, 1))) {
			st_reset(s);
			oom(err);
			goto done;
		}
	}
	for (i = 0; i < nf; i++)
		if (exec_id(j, ST_FILE_DELETE, fids[i], "delete file", err))
			goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		jnl_names_free(v, cnt);
		v = NULL;
		cnt = cap = nf = 0;
		goto again;
	}
	if (rc == 0) {
		*cache_names = v;
		*n = cnt;
		v = NULL;
	}
out:
	unlock(j);
	jnl_names_free(v, cnt);
	free(fids);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Ops: insertion with dependencies, deletion with splicing                  */

/* deps(seq, dep) when dep is non-zero. */
static int dep_add(struct jnl *j, uint64_t seq, int64_t dep, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_DEP_ADD, err);

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)seq);
	bind_i64(s, 2, dep);
	return st_exec(j, s, "add dependency", err);
}

/* Dependency on the latest unfinished op touching exactly p[0..len). */
static int dep_exact(struct jnl *j, uint64_t seq, const char *p, size_t len,
		     struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_DEP_EXACT, err);
	int64_t v;
	int found;

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, p, (int)len, SQLITE_TRANSIENT);
	bind_i64(s, 2, (int64_t)seq);
	if (st_int(j, s, "find dependencies", &v, &found, err))
		return -1;
	return found ? dep_add(j, seq, v, err) : 0;
}

/* Dependencies of op seq for one path it touches (spec, section 6). */
static int deps_for_path(struct jnl *j, uint64_t seq, const char *p,
			 struct err *err)
{
	sqlite3_stmt *s;
	int64_t *below = NULL, *tmp;
	size_t nb = 0, cap = 0, i, len = strlen(p);
	char *lo = NULL, *hi = NULL;
	int start, rc = -1, r;

	if (dep_exact(j, seq, p, len, err))
		return -1;
	for (i = 0; i < len; i++)
		if (p[i] == '/' && dep_exact(j, seq, p, i, err))
			return -1;
	if (below_bounds(p, &lo, &hi, &start))
		return oom(err);
	s = stmt(j, ST_DEP_BELOW, err);
	if (!s)
		goto out;
	bind_text(s, 1, lo);
	bind_text(s, 2, hi);
	bind_i64(s, 3, (int64_t)seq);
	/* Collect first: inserting into deps while the select runs would work
	 * in SQLite, but a plain list keeps the statements independent. */
	for (;;) {
		r = st_row(j, s, "find dependencies below", err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		if (nb == cap) {
			cap = cap ? cap * 2 : 16;
			tmp = realloc(below, cap * sizeof(*below));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto out;
			}
			below = tmp;
		}
		below[nb++] = (int64_t)sqlite3_column_int64(s, 0);
	}
	for (i = 0; i < nb; i++)
		if (dep_add(j, seq, below[i], err))
			goto out;
	rc = 0;
out:
	free(below);
	free(lo);
	free(hi);
	return rc;
}

/* Append an op and its dependencies; *seq gets its number. Caller holds mu
 * inside a transaction. */
static int op_insert(struct jnl *j, int kind, uint64_t fid, uint64_t fid2,
		     const char *path, const char *path2, const char *target,
		     uint64_t version, uint64_t size, int64_t mtime_ns,
		     int64_t delay_ms, uint64_t *seq, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_INSERT, err);
	int64_t now = now_ms(j), v;
	uint64_t id;
	int found;

	if (!s)
		return -1;
	sqlite3_bind_int(s, 1, kind);
	bind_i64(s, 2, (int64_t)fid);
	if (fid2)
		bind_i64(s, 3, (int64_t)fid2);
	else
		sqlite3_bind_null(s, 3);
	bind_text(s, 4, path);
	bind_text(s, 5, path2);
	bind_text(s, 6, target);
	bind_i64(s, 7, (int64_t)version);
	bind_i64(s, 8, (int64_t)size);
	bind_i64(s, 9, mtime_ns);
	bind_i64(s, 10, now);
	bind_i64(s, 11, now + (delay_ms > 0 ? delay_ms : 0));
	if (st_exec(j, s, "append op", err))
		return -1;
	id = (uint64_t)sqlite3_last_insert_rowid(j->db);
	s = stmt(j, ST_DEP_FID, err);
	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	bind_i64(s, 2, (int64_t)id);
	if (st_int(j, s, "find dependencies", &v, &found, err))
		return -1;
	if (found && dep_add(j, id, v, err))
		return -1;
	if (deps_for_path(j, id, path, err))
		return -1;
	if (path2 && deps_for_path(j, id, path2, err))
		return -1;
	*seq = id;
	return 0;
}

/* Delete an unfinished op; its dependents inherit its dependencies. */
static int op_drop(struct jnl *j, uint64_t seq, struct err *err)
{
	if (exec_id(j, ST_DEP_SPLICE, seq, "splice dependencies", err) ||
	    exec_id(j, ST_DEP_DEL_OF, seq, "drop dependencies", err) ||
	    exec_id(j, ST_DEP_DEL_SELF, seq, "drop dependencies", err) ||
	    exec_id(j, ST_OP_DELETE, seq, "drop op", err))
		return -1;
	return 0;
}

/* Delete a finished op (committed or resolved): what waited on it may go. */
static int op_finish(struct jnl *j, uint64_t seq, struct err *err)
{
	if (exec_id(j, ST_DEP_DEL_OF, seq, "release dependencies", err) ||
	    exec_id(j, ST_DEP_DEL_SELF, seq, "drop dependencies", err) ||
	    exec_id(j, ST_OP_DELETE, seq, "delete op", err))
		return -1;
	return 0;
}

/* The seqs of a statement's first column, bound by the caller. */
static int seqs_collect(struct jnl *j, sqlite3_stmt *s, uint64_t **v,
			size_t *n, struct err *err)
{
	uint64_t *arr = NULL, *tmp;
	size_t cnt = 0, cap = 0;
	int r;

	for (;;) {
		r = st_row(j, s, "list ops", err);
		if (r < 0) {
			free(arr);
			return -1;
		}
		if (r == 0)
			break;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			tmp = realloc(arr, cap * sizeof(*arr));
			if (!tmp) {
				st_reset(s);
				free(arr);
				return oom(err);
			}
			arr = tmp;
		}
		arr[cnt++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	*v = arr;
	*n = cnt;
	return 0;
}

/* Drop every not-started pending op of fid of the given kind. */
static int drop_unstarted(struct jnl *j, uint64_t fid, int kind,
			  struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_UNSTARTED_ALL, err);
	uint64_t *v = NULL;
	size_t n = 0, i;
	int rc = -1;

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	sqlite3_bind_int(s, 2, kind);
	if (seqs_collect(j, s, &v, &n, err))
		return -1;
	for (i = 0; i < n; i++)
		if (op_drop(j, v[i], err))
			goto out;
	rc = 0;
out:
	free(v);
	return rc;
}

/* The latest not-started pending op of fid of a kind: 1 (*seq), 0, -1. */
static int find_unstarted(struct jnl *j, uint64_t fid, int kind,
			  uint64_t *seq, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_UNSTARTED, err);
	int64_t v;
	int found;

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	sqlite3_bind_int(s, 2, kind);
	if (st_int(j, s, "find op", &v, &found, err))
		return -1;
	*seq = (uint64_t)v;
	return found;
}

/* 1 when an unfinished op touches a path strictly below p, 0 not, -1
 * error. (A directory's own ops never do: it cannot move into itself.) */
static int ops_below(struct jnl *j, const char *p, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_DEP_BELOW, err);
	char *lo = NULL, *hi = NULL;
	int start, r;

	if (!s)
		return -1;
	if (below_bounds(p, &lo, &hi, &start))
		return oom(err);
	bind_text(s, 1, lo);
	bind_text(s, 2, hi);
	bind_i64(s, 3, INT64_MAX);
	r = st_row(j, s, "find ops below", err);
	if (r == 1)
		st_reset(s);
	free(lo);
	free(hi);
	return r;
}

/* Remove live fid f (jnl_unlink, jnl_rmdir, the target of a replacing
 * rename). kind: JNL_OP_UNLINK or JNL_OP_RMDIR; with_op 0 appends nothing
 * (the rename overwrites). *seq gets the appended op (0 if none); *remote
 * (may be NULL) 1 when f may still exist remotely (not cancelled). Caller
 * holds mu inside a transaction; f is the file's row. */
static int remove_fid(struct jnl *j, const struct jnl_file *f, int kind,
		      int with_op, uint64_t *seq, int *remote, struct err *err)
{
	sqlite3_stmt *s;
	uint64_t *v = NULL, *tmp;
	char **paths = NULL;
	size_t n = 0, cap = 0, np = 0, pcap = 0, i;
	int cancel = f->base == NULL, r, rc = -1;

	*seq = 0;
	if (remote)
		*remote = 0;
	/* Rule d needs every op of f unstarted and without fid2. */
	s = stmt(j, ST_OP_OF_FID, err);
	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)f->fid);
	for (;;) {
		r = st_row(j, s, "list ops of file", err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		if (sqlite3_column_int(s, 1) != JNL_PENDING ||
		    sqlite3_column_int(s, 2) != 0 ||
		    sqlite3_column_type(s, 3) != SQLITE_NULL)
			cancel = 0;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			tmp = realloc(v, cap * sizeof(*v));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto out;
			}
			v = tmp;
		}
		v[n++] = (uint64_t)sqlite3_column_int64(s, 0);
		if (f->type == JNL_DIR &&
		    (names_push(&paths, &np, &pcap,
				(const char *)sqlite3_column_text(s, 4)) ||
		     (sqlite3_column_type(s, 5) != SQLITE_NULL &&
		      names_push(&paths, &np, &pcap,
				 (const char *)sqlite3_column_text(s, 5))))) {
			st_reset(s);
			oom(err);
			goto out;
		}
	}
	/* A directory stays if any other op still works below a path it had
	 * (a child renamed out of it needs the folder to exist first). */
	if (cancel && f->type == JNL_DIR) {
		if (names_push(&paths, &np, &pcap, f->path)) {
			oom(err);
			goto out;
		}
		for (i = 0; i < np && cancel; i++) {
			r = ops_below(j, paths[i], err);
			if (r < 0)
				goto out;
			if (r)
				cancel = 0;
		}
	}
	if (cancel) {
		for (i = n; i > 0; i--)
			if (op_drop(j, v[i - 1], err))
				goto out;
	} else {
		if (f->base && (drop_unstarted(j, f->fid, JNL_OP_WRITE, err) ||
				drop_unstarted(j, f->fid, JNL_OP_SETATTR, err)))
			goto out;
		if (with_op && op_insert(j, kind, f->fid, 0, f->path, NULL, NULL,
					 0, 0, f->mtime_ns, 0, seq, err))
			goto out;
		if (remote)
			*remote = 1;
	}
	if (exec_id(j, ST_FILE_UNLINK, f->fid, "unlink file", err))
		goto out;
	rc = 0;
out:
	free(v);
	jnl_names_free(paths, np);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Appending operations                                                      */

int jnl_write(struct jnl *j, uint64_t fid, uint64_t size, int64_t mtime_ns,
	      int64_t delay_ms, uint64_t *seq, struct err *err)
{
	int tries = 0;
	struct jnl_file f;
	sqlite3_stmt *s;
	uint64_t id = 0;
	int rc = -1, r;

	memset(&f, 0, sizeof(f));
	if (seq)
		*seq = 0;
	if (delay_ms < 0)
		delay_ms = 0;
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (file_get_locked(j, fid, &f, NULL, err))
		goto done;
	if (f.type != JNL_FILE) {
		err_set(err, ERR_INVAL, "journal: %s is not a regular file",
			f.path ? f.path : "(unlinked)");
		goto done;
	}
	if (!f.path) {
		rc = 0;  /* unlinked: nothing to upload */
		goto done;
	}
	if (exec_fid_i64(j, ST_FILE_WRITE, fid, (int64_t)size, "record write",
			 err))
		goto done;
	s = stmt(j, ST_FILE_MTIME, err);
	if (!s || (bind_i64(s, 1, (int64_t)fid), bind_i64(s, 2, mtime_ns),
		   st_exec(j, s, "record mtime", err)))
		goto done;
	if (drop_unstarted(j, fid, JNL_OP_SETATTR, err))
		goto done;
	r = find_unstarted(j, fid, JNL_OP_WRITE, &id, err);
	if (r < 0)
		goto done;
	if (r == 1) {
		int64_t now = now_ms(j);

		s = stmt(j, ST_OP_COALESCE_WRITE, err);
		if (!s)
			goto done;
		bind_i64(s, 1, (int64_t)id);
		bind_i64(s, 2, (int64_t)(f.version + 1));
		bind_i64(s, 3, (int64_t)size);
		bind_i64(s, 4, mtime_ns);
		bind_i64(s, 5, now + delay_ms);
		bind_i64(s, 6, j->opts.max_defer_ms);
		if (st_exec(j, s, "coalesce write", err))
			goto done;
	} else if (op_insert(j, JNL_OP_WRITE, fid, 0, f.path, NULL, NULL,
			     f.version + 1, size, mtime_ns, delay_ms, &id, err)) {
		goto done;
	}
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		jnl_file_release(&f);
		id = 0;
		goto again;
	}
	if (rc == 0) {
		if (seq)
			*seq = id;
		if (id) {
			if (id > j->last_seq)
				j->last_seq = id;
			pthread_cond_broadcast(&j->work_cv);
		}
	}
out:
	jnl_file_release(&f);
	unlock(j);
	return rc;
}

/* New fid plus its creating op (mkdir, symlink). */
static int create_with_op(struct jnl *j, const char *path, int type, int kind,
			  const char *target, int64_t mtime_ns, uint64_t *fid,
			  uint64_t *seq, struct err *err)
{
	int tries = 0;
	uint64_t id = 0, s = 0;
	int rc = -1, r;

	if (fid)
		*fid = 0;
	if (seq)
		*seq = 0;
	if (!path_valid(path))
		return err_set(err, ERR_INVAL, "journal: invalid path");
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	r = file_at(j, path, &id, err);
	if (r < 0)
		goto done;
	if (r == 1) {
		if (fid)
			*fid = id;
		err_set(err, ERR_EXISTS, "journal: %s already exists", path);
		goto done;
	}
	if (file_insert(j, path, type, NULL, target, NULL, 0, 0, mtime_ns, &id,
			err) ||
	    op_insert(j, kind, id, 0, path, NULL, target, 0, 0, mtime_ns, 0, &s,
		      err))
		goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		id = s = 0;
		goto again;
	}
	if (rc == 0) {
		if (fid)
			*fid = id;
		if (seq)
			*seq = s;
		if (s > j->last_seq)
			j->last_seq = s;
		pthread_cond_broadcast(&j->work_cv);
	}
out:
	unlock(j);
	return rc;
}

int jnl_mkdir(struct jnl *j, const char *path, int64_t mtime_ns, uint64_t *fid,
	      uint64_t *seq, struct err *err)
{
	return create_with_op(j, path, JNL_DIR, JNL_OP_MKDIR, NULL, mtime_ns, fid,
			      seq, err);
}

int jnl_symlink(struct jnl *j, const char *path, const char *target,
		int64_t mtime_ns, uint64_t *fid, uint64_t *seq, struct err *err)
{
	if (!target || !*target) {
		if (fid)
			*fid = 0;
		if (seq)
			*seq = 0;
		return err_set(err, ERR_INVAL, "journal: empty symlink target");
	}
	return create_with_op(j, path, JNL_SYMLINK, JNL_OP_SYMLINK, target,
			      mtime_ns, fid, seq, err);
}

int jnl_rename(struct jnl *j, uint64_t fid, const char *to, unsigned flags,
	       uint64_t *seq, struct err *err)
{
	int tries = 0;
	struct jnl_file f, t;
	sqlite3_stmt *s;
	char *lo = NULL, *hi = NULL;
	uint64_t tfid = 0, fid2 = 0, id = 0;
	size_t flen;
	int rc = -1, r, start, remote = 0;

	memset(&f, 0, sizeof(f));
	memset(&t, 0, sizeof(t));
	if (seq)
		*seq = 0;
	if (!path_valid(to))
		return err_set(err, ERR_INVAL, "journal: invalid path");
	if (flags & ~JNL_RENAME_REPLACE)
		return err_set(err, ERR_INVAL, "journal: unsupported rename flags");
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (file_get_locked(j, fid, &f, NULL, err))
		goto done;
	if (!f.path) {
		err_set(err, ERR_NOTFOUND, "journal: file %llu was unlinked",
			(unsigned long long)fid);
		goto done;
	}
	if (strcmp(f.path, to) == 0) {
		rc = 0;
		goto done;
	}
	flen = strlen(f.path);
	if (strncmp(to, f.path, flen) == 0 && to[flen] == '/') {
		err_set(err, ERR_INVAL, "journal: cannot move %s into itself",
			f.path);
		goto done;
	}
	r = file_at(j, to, &tfid, err);
	if (r < 0)
		goto done;
	if (r == 1) {
		if (!(flags & JNL_RENAME_REPLACE)) {
			err_set(err, ERR_EXISTS, "journal: %s already exists", to);
			goto done;
		}
		if (file_get_locked(j, tfid, &t, NULL, err))
			goto done;
	}
	/* Replacing a directory (tracked or not) that has live files below. */
	r = file_any_below(j, to, err);
	if (r < 0)
		goto done;
	if (r) {
		err_set(err, ERR_NOTEMPTY, "journal: %s is not empty", to);
		goto done;
	}
	if (t.fid) {
		if (t.type == JNL_DIR && f.type != JNL_DIR) {
			err_set(err, ERR_INVAL, "journal: %s is a directory", to);
			goto done;
		}
		if (t.type != JNL_DIR && f.type == JNL_DIR) {
			err_set(err, ERR_INVAL, "journal: %s is not a directory", to);
			goto done;
		}
		if (remove_fid(j, &t, 0, 0, &id, &remote, err))
			goto done;
		if (remote)
			fid2 = t.fid;
	}
	/* Move fid, then everything below it. */
	s = stmt(j, ST_FILE_MOVE, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)fid);
	bind_text(s, 2, to);
	if (st_exec(j, s, "move file", err))
		goto done;
	if (f.type == JNL_DIR) {
		if (below_bounds(f.path, &lo, &hi, &start)) {
			oom(err);
			goto done;
		}
		s = stmt(j, ST_FILE_MOVE_SUB, err);
		if (!s)
			goto done;
		bind_text(s, 1, to);
		sqlite3_bind_int(s, 2, (int)flen + 1);
		bind_text(s, 3, lo);
		bind_text(s, 4, hi);
		if (st_exec(j, s, "move children", err))
			goto done;
	}
	if (op_insert(j, JNL_OP_RENAME, fid, fid2, f.path, to, NULL, 0, 0,
		      f.mtime_ns, 0, &id, err))
		goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		jnl_file_release(&f);
		jnl_file_release(&t);
		free(lo);
		free(hi);
		lo = hi = NULL;
		tfid = fid2 = id = 0;
		remote = 0;
		goto again;
	}
	if (rc == 0 && id) {
		if (seq)
			*seq = id;
		if (id > j->last_seq)
			j->last_seq = id;
		wake_all(j);
	}
out:
	unlock(j);
	jnl_file_release(&f);
	jnl_file_release(&t);
	free(lo);
	free(hi);
	return rc;
}

/* Drop the not-started unlinks and rmdirs strictly below path (folded
 * into a tree rmdir); *n gets how many. */
static int fold_removals_below(struct jnl *j, const char *path, size_t *n,
			       struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_REMOVALS_BELOW, err);
	char *lo = NULL, *hi = NULL;
	uint64_t *v = NULL;
	size_t i;
	int start, rc = -1;

	*n = 0;
	if (!s)
		return -1;
	if (below_bounds(path, &lo, &hi, &start))
		return oom(err);
	bind_text(s, 1, lo);
	bind_text(s, 2, hi);
	if (seqs_collect(j, s, &v, n, err))
		goto out;
	for (i = 0; i < *n; i++)
		if (op_drop(j, v[i], err))
			goto out;
	rc = 0;
out:
	free(v);
	free(lo);
	free(hi);
	return rc;
}

/* jnl_unlink, jnl_rmdir and jnl_rmdir_tree. */
static int remove_common(struct jnl *j, uint64_t fid, int kind, int tree,
			 uint64_t *seq, struct err *err)
{
	int tries = 0;
	struct jnl_file f;
	uint64_t id = 0;
	size_t folded = 0;
	int rc = -1, r;

	memset(&f, 0, sizeof(f));
	if (seq)
		*seq = 0;
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (file_get_locked(j, fid, &f, NULL, err))
		goto done;
	if (!f.path) {
		err_set(err, ERR_NOTFOUND, "journal: file %llu was unlinked",
			(unsigned long long)fid);
		goto done;
	}
	if ((kind == JNL_OP_RMDIR) != (f.type == JNL_DIR)) {
		err_set(err, ERR_INVAL, kind == JNL_OP_RMDIR ?
			"journal: %s is not a directory" :
			"journal: %s is a directory", f.path);
		goto done;
	}
	if (kind == JNL_OP_RMDIR) {
		r = file_any_below(j, f.path, err);
		if (r < 0)
			goto done;
		if (r) {
			err_set(err, ERR_NOTEMPTY, "journal: %s is not empty",
				f.path);
			goto done;
		}
	}
	if (tree && fold_removals_below(j, f.path, &folded, err))
		goto done;
	if (remove_fid(j, &f, kind, 1, &id, NULL, err))
		goto done;
	if (id && folded &&
	    exec_fid_i64(j, ST_OP_SET_FLAGS, id, JNL_OPF_TREE, "flag op", err))
		goto done;
	/* In the same transaction, so no worker claims it before. */
	if (id && j->removal_delay_ms > 0 && strchr(f.path, '/') &&
	    exec_fid_i64(j, ST_OP_DEFER, id, now_ms(j) + j->removal_delay_ms,
			 "defer removal", err))
		goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		jnl_file_release(&f);
		id = 0;
		folded = 0;
		goto again;
	}
	if (rc == 0) {
		if (seq)
			*seq = id;
		if (id > j->last_seq)
			j->last_seq = id;
		wake_all(j);  /* ops may have been dropped */
	}
out:
	unlock(j);
	jnl_file_release(&f);
	return rc;
}

int jnl_unlink(struct jnl *j, uint64_t fid, uint64_t *seq, struct err *err)
{
	return remove_common(j, fid, JNL_OP_UNLINK, 0, seq, err);
}

int jnl_rmdir(struct jnl *j, uint64_t fid, uint64_t *seq, struct err *err)
{
	return remove_common(j, fid, JNL_OP_RMDIR, 0, seq, err);
}

int jnl_rmdir_tree(struct jnl *j, uint64_t fid, uint64_t *seq, struct err *err)
{
	return remove_common(j, fid, JNL_OP_RMDIR, 1, seq, err);
}

int jnl_setattr(struct jnl *j, uint64_t fid, int64_t mtime_ns, uint64_t *seq,
		struct err *err)
{
	int tries = 0;
	struct jnl_file f;
	sqlite3_stmt *s;
	uint64_t id = 0;
	int rc = -1, r;

	memset(&f, 0, sizeof(f));
	if (seq)
		*seq = 0;
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (file_get_locked(j, fid, &f, NULL, err))
		goto done;
	if (!f.path) {
		err_set(err, ERR_NOTFOUND, "journal: file %llu was unlinked",
			(unsigned long long)fid);
		goto done;
	}
	if (exec_fid_i64(j, ST_FILE_MTIME, fid, mtime_ns, "record mtime", err))
		goto done;
	r = find_unstarted(j, fid, JNL_OP_WRITE, &id, err);
	if (r == 0)
		r = find_unstarted(j, fid, JNL_OP_SETATTR, &id, err);
	if (r < 0)
		goto done;
	if (r == 1) {
		s = stmt(j, ST_OP_SET_MTIME, err);
		if (!s)
			goto done;
		bind_i64(s, 1, (int64_t)id);
		bind_i64(s, 2, mtime_ns);
		if (st_exec(j, s, "fold setattr", err))
			goto done;
	} else if (op_insert(j, JNL_OP_SETATTR, fid, 0, f.path, NULL, NULL, 0, 0,
			     mtime_ns, 0, &id, err)) {
		goto done;
	}
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		jnl_file_release(&f);
		id = 0;
		goto again;
	}
	if (rc == 0) {
		if (seq)
			*seq = id;
		if (id > j->last_seq)
			j->last_seq = id;
		pthread_cond_broadcast(&j->work_cv);
	}
out:
	unlock(j);
	jnl_file_release(&f);
	return rc;
}

uint64_t jnl_last_seq(struct jnl *j)
{
	uint64_t v;

	lock(j);
	v = j->last_seq;
	unlock(j);
	return v;
}

uint64_t jnl_gen(struct jnl *j)
{
	uint64_t v;

	/* The journal holds the database exclusively (flock + EXCLUSIVE
	 * locking mode) through this one connection, so its count of rows
	 * inserted, updated or deleted (triggers included) sees every
	 * change. */
	lock(j);
	v = (uint64_t)sqlite3_total_changes64(j->db) - j->gen_skip;
	unlock(j);
	return v;
}

/* ------------------------------------------------------------------------ */
/* Claims and completions                                                    */

void jnl_op_release(struct jnl_op *op)
{
	if (!op)
		return;
	free(op->path);
	free(op->path2);
	free(op->target);
	free(op->cache_name);
	free(op->base);
	free(op->base2);
	free(op->session);
	free(op->err_msg);
	free(op->conflict_name);
	memset(op, 0, sizeof(*op));
}

void jnl_ops_free(struct jnl_op *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		jnl_op_release(&v[i]);
	free(v);
}

/* Fill op from a row in OPCOLS order. -1 on ENOMEM (op released). */
static int op_from_row(sqlite3_stmt *s, struct jnl_op *op, int with_session)
{
	const void *md5;

	memset(op, 0, sizeof(*op));
	op->seq = (uint64_t)sqlite3_column_int64(s, 0);
	op->kind = sqlite3_column_int(s, 1);
	op->state = sqlite3_column_int(s, 2);
	op->fid = (uint64_t)sqlite3_column_int64(s, 3);
	op->type = sqlite3_column_int(s, 4);
	op->version = (uint64_t)sqlite3_column_int64(s, 11);
	op->size = (uint64_t)sqlite3_column_int64(s, 12);
	op->mtime_ns = (int64_t)sqlite3_column_int64(s, 13);
	op->attempts = (uint32_t)sqlite3_column_int64(s, 14);
	op->claim = (uint64_t)sqlite3_column_int64(s, 15);
	op->created_ms = (int64_t)sqlite3_column_int64(s, 16);
	op->not_before_ms = (int64_t)sqlite3_column_int64(s, 17);
	op->total = (uint64_t)sqlite3_column_int64(s, 19);
	op->persisted = (uint64_t)sqlite3_column_int64(s, 20);
	op->sess_version = (uint64_t)sqlite3_column_int64(s, 21);
	op->crc32c = (uint32_t)sqlite3_column_int64(s, 22);
	md5 = sqlite3_column_blob(s, 23);
	if (md5 && sqlite3_column_bytes(s, 23) == 16 &&
	    sqlite3_column_type(s, 22) != SQLITE_NULL) {
		memcpy(op->md5, md5, 16);
		op->has_sums = 1;
	}
	op->err_code = sqlite3_column_int(s, 24);
	op->flags = (unsigned)sqlite3_column_int(s, 27);
	if (col_str(s, 5, &op->path) || col_str(s, 6, &op->path2) ||
	    col_str(s, 7, &op->target) || col_str(s, 8, &op->cache_name) ||
	    col_str(s, 9, &op->base) || col_str(s, 10, &op->base2) ||
	    (with_session && col_str(s, 18, &op->session)) ||
	    col_str(s, 25, &op->err_msg) || col_str(s, 26, &op->conflict_name)) {
		jnl_op_release(op);
		return -1;
	}
	return 0;
}

static int op_load(struct jnl *j, uint64_t seq, struct jnl_op *op,
		   struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_GET, err);
	int r;

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)seq);
	r = st_row(j, s, "read op", err);
	if (r < 0)
		return -1;
	if (r == 0)
		return err_set(err, ERR_NOTFOUND, "journal: no op %llu",
			       (unsigned long long)seq);
	r = op_from_row(s, op, 1);
	st_reset(s);
	return r ? oom(err) : 0;
}

/* Claim one ready op; 1 claimed, 0 none, -1 error. Caller holds mu. */
static int claim_locked(struct jnl *j, struct jnl_op *op, struct err *err)
{
	sqlite3_stmt *s;
	int64_t now = now_ms(j);
	uint64_t seq, fid, claim;
	int kind, r, rc, tries = 0;

again:
	rc = -1;
	memset(op, 0, sizeof(*op));
	if (tx_begin(j, err))
		return -1;
	s = stmt(j, ST_CLAIM_PICK, err);
	if (!s)
		goto done;
	bind_i64(s, 1, now);
	r = st_row(j, s, "pick op", err);
	if (r < 0)
		goto done;
	if (r == 0) {
		rc = 0;
		goto done;
	}
	seq = (uint64_t)sqlite3_column_int64(s, 0);
	kind = sqlite3_column_int(s, 1);
	fid = (uint64_t)sqlite3_column_int64(s, 2);
	st_reset(s);
	claim = ++j->next_claim;
	s = stmt(j, ST_CLAIM_SET, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)seq);
	bind_i64(s, 2, (int64_t)claim);
	bind_i64(s, 3, now + j->opts.lease_ms);
	if (st_exec(j, s, "claim op", err))
		goto done;
	if (kind == JNL_OP_WRITE &&
	    (exec_id(j, ST_CLAIM_VERSION, seq, "claim version", err) ||
	     exec_id(j, ST_FILE_UPL, fid, "claim version", err)))
		goto done;
	if (op_load(j, seq, op, err))
		goto done;
	rc = 1;
done:
	if (rc >= 0 && tx_commit(j, err) == 0)
		return rc;
	tx_abort(j);
	jnl_op_release(op);
	if (tx_retry(j, &tries))
		goto again;
	return -1;
}

int jnl_claim_next(struct jnl *j, struct jnl_op *op, struct err *err)
{
	int rc;

	lock(j);
	if (j->shutdown) {
		memset(op, 0, sizeof(*op));
		rc = err_set(err, ERR_CANCELED, "journal: shut down");
	} else {
		rc = claim_locked(j, op, err);
	}
	unlock(j);
	return rc;
}

/* One waiter leaves; the last one after shutdown lets jnl_close go on. */
static void waiter_leave(struct jnl *j)
{
	j->waiters--;
	if (j->shutdown && j->waiters == 0)
		pthread_cond_broadcast(&j->idle_cv);
}

int jnl_claim_wait(struct jnl *j, int64_t timeout_ms, struct jnl_op *op,
		   struct err *err)
{
	sqlite3_stmt *s;
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : clk_mono_ms() + timeout_ms;
	int64_t due, left, sleep_ms;
	struct timespec ts;
	uint64_t wakes;
	int rc, found;

	memset(op, 0, sizeof(*op));
	lock(j);
	j->waiters++;
	wakes = j->claim_wakes;
	for (;;) {
		if (j->shutdown) {
			rc = err_set(err, ERR_CANCELED, "journal: shut down");
			break;
		}
		if (j->claim_wakes != wakes) {
			rc = 0;  /* jnl_wake_claimers: leave empty-handed */
			break;
		}
		rc = claim_locked(j, op, err);
		if (rc != 0)
			break;
		left = deadline == INT64_MAX ? INT64_MAX : deadline - clk_mono_ms();
		if (left <= 0)
			break;
		sleep_ms = left;
		s = stmt(j, ST_NEXT_DUE, err);
		if (!s) {
			rc = -1;
			break;
		}
		if (st_int(j, s, "next due", &due, &found, err)) {
			rc = -1;
			break;
		}
		if (found) {
			due -= now_ms(j);
			if (due < 1)
				due = 1;
			if (due < sleep_ms)
				sleep_ms = due;
		}
		if (sleep_ms == INT64_MAX) {
			pthread_cond_wait(&j->work_cv, &j->mu);
		} else {
			ts = clk_mono_after(sleep_ms);
			pthread_cond_timedwait(&j->work_cv, &j->mu, &ts);
		}
	}
	waiter_leave(j);
	unlock(j);
	return rc;
}

/* Check that (seq, claim) is the caller's live claim. *kind, *fid,
 * *version, *size, *total, *has_session (each may be NULL) are filled. */
static int claim_check(struct jnl *j, uint64_t seq, uint64_t claim, int *kind,
		       uint64_t *fid, uint64_t *version, uint64_t *bytes,
		       int *has_session, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_CLAIMED, err);
	int r;

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)seq);
	bind_i64(s, 2, (int64_t)claim);
	r = st_row(j, s, "check claim", err);
	if (r < 0)
		return -1;
	if (r == 0)
		return err_set(err, ERR_CANCELED,
			       "journal: op %llu is no longer claimed by this "
			       "worker", (unsigned long long)seq);
	if (kind)
		*kind = sqlite3_column_int(s, 0);
	if (fid)
		*fid = (uint64_t)sqlite3_column_int64(s, 1);
	if (version)
		*version = (uint64_t)sqlite3_column_int64(s, 2);
	if (bytes)
		*bytes = sqlite3_column_type(s, 4) != SQLITE_NULL ?
			(uint64_t)sqlite3_column_int64(s, 4) :
			(uint64_t)sqlite3_column_int64(s, 3);
	if (has_session)
		*has_session = sqlite3_column_int(s, 5);
	st_reset(s);
	return 0;
}

int jnl_renew(struct jnl *j, uint64_t seq, uint64_t claim, struct err *err)
{
	int tries = 0;
	int rc = -1;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, NULL, NULL, NULL, NULL, NULL, err) == 0)
		rc = exec_fid_i64(j, ST_RENEW, seq, now_ms(j) + j->opts.lease_ms,
				  "renew lease", err);
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	return rc;
}

int jnl_upload_begin(struct jnl *j, uint64_t seq, uint64_t claim,
		     const char *session, uint64_t total, uint64_t version,
		     uint32_t crc32c, const unsigned char md5[16],
		     struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	int rc = -1, kind = 0;

	if (!session || !*session || !md5)
		return err_set(err, ERR_INVAL, "journal: upload session missing");
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, &kind, NULL, NULL, NULL, NULL, err))
		goto done;
	if (kind != JNL_OP_WRITE) {
		err_set(err, ERR_INVAL, "journal: op %llu is not a write",
			(unsigned long long)seq);
		goto done;
	}
	s = stmt(j, ST_UPL_BEGIN, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)seq);
	bind_text(s, 2, session);
	bind_i64(s, 3, (int64_t)total);
	bind_i64(s, 4, (int64_t)version);
	bind_i64(s, 5, (int64_t)crc32c);
	sqlite3_bind_blob(s, 6, md5, 16, SQLITE_TRANSIENT);
	bind_i64(s, 7, now_ms(j) + j->opts.lease_ms);
	rc = st_exec(j, s, "record session", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	return rc;
}

int jnl_upload_progress(struct jnl *j, uint64_t seq, uint64_t claim,
			uint64_t persisted, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	uint64_t total = 0;
	int rc = -1, has = 0;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, NULL, NULL, NULL, &total, &has, err))
		goto done;
	if (!has) {
		err_set(err, ERR_INVAL, "journal: op %llu has no upload session",
			(unsigned long long)seq);
		goto done;
	}
	if (persisted > total) {
		err_set(err, ERR_INVAL, "journal: op %llu: offset %llu beyond "
			"total %llu", (unsigned long long)seq,
			(unsigned long long)persisted, (unsigned long long)total);
		goto done;
	}
	s = stmt(j, ST_UPL_PROGRESS, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)seq);
	bind_i64(s, 2, (int64_t)persisted);
	bind_i64(s, 3, now_ms(j) + j->opts.lease_ms);
	rc = st_exec(j, s, "record offset", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	return rc;
}

int jnl_upload_reset(struct jnl *j, uint64_t seq, uint64_t claim,
		     struct err *err)
{
	int tries = 0;
	int rc = -1;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, NULL, NULL, NULL, NULL, NULL, err) == 0)
		rc = exec_id(j, ST_UPL_RESET, seq, "reset session", err);
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	return rc;
}

int jnl_complete(struct jnl *j, uint64_t seq, uint64_t claim,
		 const char *new_base, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	uint64_t fid = 0, version = 0, bytes = 0, *cov = NULL;
	size_t ncov = 0, i;
	int rc = -1, kind = 0, set_base = 0;
	const char *base = new_base;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, &kind, &fid, &version, &bytes, NULL, err))
		goto done;
	switch (kind) {
	case JNL_OP_WRITE:
	case JNL_OP_MKDIR:
	case JNL_OP_SYMLINK:
		set_base = 1;
		if (!base)
			base = "";
		break;
	case JNL_OP_RENAME:
	case JNL_OP_SETATTR:
		set_base = base != NULL;
		break;
	default:  /* unlink, rmdir: the remote object is gone */
		set_base = 1;
		base = NULL;
		break;
	}
	if (set_base) {
		s = stmt(j, ST_FILE_SET_BASE, err);
		if (!s)
			goto done;
		bind_i64(s, 1, (int64_t)fid);
		bind_text(s, 2, base);
		if (st_exec(j, s, "record remote version", err))
			goto done;
	}
	if (kind == JNL_OP_WRITE) {
		if (exec_fid_i64(j, ST_FILE_CLEAN_IF, fid, (int64_t)version,
				 "mark clean", err))
			goto done;
		s = stmt(j, ST_OP_COVERED, err);
		if (!s)
			goto done;
		bind_i64(s, 1, (int64_t)fid);
		bind_i64(s, 2, (int64_t)version);
		bind_i64(s, 3, (int64_t)seq);
		if (seqs_collect(j, s, &cov, &ncov, err))
			goto done;
		for (i = 0; i < ncov; i++)
			if (op_drop(j, cov[i], err))
				goto done;
	}
	if (op_finish(j, seq, err))
		goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		free(cov);
		cov = NULL;
		ncov = 0;
		set_base = 0;
		base = new_base;
		goto again;
	}
	if (rc == 0) {
		j->committed_ops++;
		if (kind == JNL_OP_WRITE)
			j->committed_bytes += bytes;
		wake_all(j);
	}
out:
	unlock(j);
	free(cov);
	return rc;
}

/* The message of an error cause for the database (never NULL). */
static const char *cause_msg(const struct err *cause)
{
	if (!cause || !cause->msg[0])
		return cause ? err_code_name(cause->code) : "unknown error";
	return cause->msg;
}

int jnl_retry_later(struct jnl *j, uint64_t seq, uint64_t claim,
		    int64_t delay_ms, const struct err *cause, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	int64_t now;
	int rc = -1;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, NULL, NULL, NULL, NULL, NULL, err))
		goto done;
	s = stmt(j, ST_RETRY_LATER, err);
	if (!s)
		goto done;
	now = now_ms(j);
	bind_i64(s, 1, (int64_t)seq);
	bind_i64(s, 2, now + (delay_ms > 0 ? delay_ms : 0));
	sqlite3_bind_int(s, 3, cause ? cause->code : 0);
	if (cause)
		bind_text(s, 4, cause_msg(cause));
	else
		sqlite3_bind_null(s, 4);
	bind_i64(s, 5, now);
	rc = st_exec(j, s, "requeue op", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		pthread_cond_broadcast(&j->work_cv);
out:
	unlock(j);
	return rc;
}

int jnl_fail(struct jnl *j, uint64_t seq, uint64_t claim,
	     const struct err *cause, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	int rc = -1;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, NULL, NULL, NULL, NULL, NULL, err))
		goto done;
	s = stmt(j, ST_FAIL, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)seq);
	sqlite3_bind_int(s, 2, cause && cause->code ? cause->code : ERR_IO);
	bind_text(s, 3, cause_msg(cause));
	bind_i64(s, 4, now_ms(j));
	rc = st_exec(j, s, "mark failed", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		wake_all(j);
out:
	unlock(j);
	return rc;
}

int jnl_conflict(struct jnl *j, uint64_t seq, uint64_t claim,
		 const char *conflict_name, const char *new_base,
		 struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	uint64_t fid = 0, version = 0;
	char msg[600];
	int rc = -1, kind = 0;

	if (!conflict_name || !*conflict_name)
		return err_set(err, ERR_INVAL, "journal: conflict name missing");
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (claim_check(j, seq, claim, &kind, &fid, &version, NULL, NULL, err))
		goto done;
	snprintf(msg, sizeof(msg), "changed remotely; local version kept as %s",
		 conflict_name);
	s = stmt(j, ST_CONFLICT, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)seq);
	sqlite3_bind_int(s, 2, ERR_CONFLICT);
	bind_text(s, 3, msg);
	bind_i64(s, 4, now_ms(j));
	bind_text(s, 5, conflict_name);
	if (st_exec(j, s, "mark conflict", err))
		goto done;
	/* Done for ordering: what waited on it may run. */
	if (exec_id(j, ST_DEP_DEL_OF, seq, "release dependencies", err))
		goto done;
	if (new_base) {
		s = stmt(j, ST_FILE_SET_BASE, err);
		if (!s)
			goto done;
		bind_i64(s, 1, (int64_t)fid);
		bind_text(s, 2, new_base);
		if (st_exec(j, s, "record remote version", err))
			goto done;
	}
	if (kind == JNL_OP_WRITE &&
	    exec_fid_i64(j, ST_FILE_CLEAN_IF, fid, (int64_t)version,
			 "mark clean", err))
		goto done;
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		wake_all(j);
out:
	unlock(j);
	return rc;
}

int jnl_expire_leases(struct jnl *j, uint64_t *n, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	int rc = -1, changed = 0;

	if (n)
		*n = 0;
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	s = stmt(j, ST_EXPIRE, err);
	if (!s)
		goto done;
	bind_i64(s, 1, now_ms(j));
	if (st_exec(j, s, "expire leases", err))
		goto done;
	changed = sqlite3_changes(j->db);
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0) {
		if (n)
			*n = (uint64_t)changed;
		if (changed)
			pthread_cond_broadcast(&j->work_cv);
	}
out:
	unlock(j);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Retry, resolve, expedite, wait                                            */

/* State of op seq: 1 found (*state), 0 absent, -1 error. */
static int op_state(struct jnl *j, uint64_t seq, int *state, struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_OP_STATE, err);
	int64_t v;
	int found;

	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)seq);
	if (st_int(j, s, "read op state", &v, &found, err))
		return -1;
	*state = (int)v;
	return found;
}

int jnl_retry(struct jnl *j, uint64_t seq, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	int rc = -1, r, state = 0;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	r = op_state(j, seq, &state, err);
	if (r < 0)
		goto done;
	if (r == 0 || state != JNL_FAILED) {
		err_set(err, ERR_INVAL, "journal: op %llu is not failed",
			(unsigned long long)seq);
		goto done;
	}
	s = stmt(j, ST_RETRY, err);
	if (!s)
		goto done;
	bind_i64(s, 1, (int64_t)seq);
	bind_i64(s, 2, now_ms(j));
	rc = st_exec(j, s, "retry op", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		wake_all(j);
out:
	unlock(j);
	return rc;
}

int jnl_resolve(struct jnl *j, uint64_t seq, struct err *err)
{
	int tries = 0;
	int rc = -1, r, state = 0;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	r = op_state(j, seq, &state, err);
	if (r < 0)
		goto done;
	if (r == 0 || (state != JNL_FAILED && state != JNL_CONFLICT)) {
		err_set(err, ERR_INVAL, "journal: op %llu is neither failed nor "
			"in conflict", (unsigned long long)seq);
		goto done;
	}
	rc = op_finish(j, seq, err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		wake_all(j);
out:
	unlock(j);
	return rc;
}

void jnl_set_removal_delay(struct jnl *j, int64_t delay_ms)
{
	lock(j);
	j->removal_delay_ms = delay_ms > 0 ? delay_ms : 0;
	unlock(j);
}

int jnl_expedite(struct jnl *j, uint64_t fid, uint64_t up_to_seq,
		 struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	int rc = -1;

	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	s = stmt(j, fid ? ST_EXPEDITE_FID : ST_EXPEDITE_ALL, err);
	if (!s)
		goto done;
	if (fid) {
		bind_i64(s, 1, (int64_t)fid);
		bind_i64(s, 2, (int64_t)up_to_seq);
	} else {
		bind_i64(s, 1, (int64_t)up_to_seq);
	}
	rc = st_exec(j, s, "expedite", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
	if (rc == 0)
		pthread_cond_broadcast(&j->work_cv);
out:
	unlock(j);
	return rc;
}

/* Set *err from a failed or conflict op row of W_BAD. */
static void err_from_bad(sqlite3_stmt *s, struct err *err)
{
	int state = sqlite3_column_int(s, 1);
	int code = sqlite3_column_int(s, 2);
	const char *msg = (const char *)sqlite3_column_text(s, 3);
	const char *path = (const char *)sqlite3_column_text(s, 4);

	if (state == JNL_CONFLICT)
		code = ERR_CONFLICT;
	else if (code == 0)
		code = ERR_IO;
	err_set(err, code, "%s: %s", path ? path : "?", msg ? msg : "failed");
}

/* One evaluation of a wait: 1 satisfied, 0 keep waiting, -1 error (an op's
 * error or a database error) in *err. Caller holds mu. */
static int wait_eval(struct jnl *j, uint64_t fid, uint64_t up_to,
		     unsigned flags, struct err *err)
{
	sqlite3_stmt *s;
	int64_t v;
	int found, has_failed, r;

	s = stmt(j, ST_HAS_FAILED, err);
	if (!s || st_int(j, s, "wait", &v, &has_failed, err))
		return -1;
	if (flags & JNL_WAIT_SETTLE) {
		/* Anything that can still progress? */
		s = stmt(j, has_failed ? ST_W_RUNNABLE :
			 (fid ? ST_W_ANY_FID : ST_W_ANY), err);
		if (!s)
			return -1;
		bind_i64(s, 1, (int64_t)fid);
		bind_i64(s, 2, (int64_t)up_to);
		if (st_int(j, s, "wait", &v, &found, err))
			return -1;
		if (found)
			return 0;
	}
	s = stmt(j, fid ? ST_W_BAD_FID : ST_W_BAD_ALL, err);
	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	bind_i64(s, 2, (int64_t)up_to);
	r = st_row(j, s, "wait", err);
	if (r < 0)
		return -1;
	if (r == 1) {
		err_from_bad(s, err);
		st_reset(s);
		return -1;
	}
	if (has_failed) {
		s = stmt(j, ST_W_STUCK, err);
		if (!s)
			return -1;
		bind_i64(s, 1, (int64_t)fid);
		bind_i64(s, 2, (int64_t)up_to);
		r = st_row(j, s, "wait", err);
		if (r < 0)
			return -1;
		if (r == 1) {
			const char *p = (const char *)sqlite3_column_text(s, 0);
			const char *m = (const char *)sqlite3_column_text(s, 2);
			const char *cp = (const char *)sqlite3_column_text(s, 3);
			int code = sqlite3_column_int(s, 1);

			err_set(err, code ? code : ERR_IO,
				"%s: waits for %s, which failed: %s",
				p ? p : "?", cp ? cp : "?", m ? m : "failed");
			st_reset(s);
			return -1;
		}
	}
	s = stmt(j, fid ? ST_W_ANY_FID : ST_W_ANY, err);
	if (!s)
		return -1;
	bind_i64(s, 1, (int64_t)fid);
	bind_i64(s, 2, (int64_t)up_to);
	if (st_int(j, s, "wait", &v, &found, err))
		return -1;
	return found ? 0 : 1;
}

static int wait_common(struct jnl *j, uint64_t fid, uint64_t up_to_seq,
		       int64_t timeout_ms, unsigned flags, struct err *err)
{
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : clk_mono_ms() + timeout_ms;
	int64_t left;
	struct timespec ts;
	int rc;

	lock(j);
	j->waiters++;
	for (;;) {
		if (j->shutdown) {
			rc = err_set(err, ERR_CANCELED, "journal: shut down");
			break;
		}
		rc = wait_eval(j, fid, up_to_seq, flags, err);
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (rc < 0)
			break;
		if (deadline == INT64_MAX) {
			pthread_cond_wait(&j->done_cv, &j->mu);
			continue;
		}
		left = deadline - clk_mono_ms();
		if (left <= 0) {
			rc = err_set(err, ERR_TIMEOUT, "journal: timed out after "
				     "%lld ms waiting for commits",
				     (long long)timeout_ms);
			break;
		}
		ts = clk_mono_after(left);
		pthread_cond_timedwait(&j->done_cv, &j->mu, &ts);
	}
	waiter_leave(j);
	unlock(j);
	return rc;
}

int jnl_wait_fid(struct jnl *j, uint64_t fid, uint64_t up_to_seq,
		 int64_t timeout_ms, unsigned flags, struct err *err)
{
	if (fid == 0)
		return err_set(err, ERR_INVAL, "journal: fid 0");
	return wait_common(j, fid, up_to_seq, timeout_ms, flags, err);
}

int jnl_wait_all(struct jnl *j, uint64_t up_to_seq, int64_t timeout_ms,
		 unsigned flags, struct err *err)
{
	return wait_common(j, 0, up_to_seq, timeout_ms, flags, err);
}

int jnl_progress(struct jnl *j, uint64_t up_to_seq, struct jnl_progress *p,
		 struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1, r;

	memset(p, 0, sizeof(*p));
	lock(j);
	s = stmt(j, ST_PROGRESS, err);
	if (!s)
		goto out;
	bind_i64(s, 1, (int64_t)up_to_seq);
	r = st_row(j, s, "progress", err);
	if (r < 0)
		goto out;
	if (r == 1) {
		p->ops_left = (uint64_t)sqlite3_column_double(s, 0);
		p->bytes_left = (uint64_t)sqlite3_column_double(s, 1);
		p->failed = (uint64_t)sqlite3_column_double(s, 2);
		p->conflicts = (uint64_t)sqlite3_column_double(s, 3);
		st_reset(s);
	}
	p->committed_ops = j->committed_ops;
	p->committed_bytes = j->committed_bytes;
	rc = 0;
out:
	unlock(j);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Status                                                                    */

int jnl_stats(struct jnl *j, struct jnl_stats *st, struct err *err)
{
	sqlite3_stmt *s;
	int64_t v;
	int rc = -1, r;

	memset(st, 0, sizeof(*st));
	lock(j);
	s = stmt(j, ST_STATS, err);
	if (!s)
		goto out;
	r = st_row(j, s, "status", err);
	if (r < 0)
		goto out;
	if (r == 1) {
		st->pending_ops = (uint64_t)sqlite3_column_double(s, 0);
		st->pending_bytes = (uint64_t)sqlite3_column_double(s, 1);
		st->retrying_ops = (uint64_t)sqlite3_column_double(s, 2);
		st->inflight_ops = (uint64_t)sqlite3_column_double(s, 3);
		st->inflight_bytes = (uint64_t)sqlite3_column_double(s, 4);
		st->inflight_persisted = (uint64_t)sqlite3_column_double(s, 5);
		st->failed_ops = (uint64_t)sqlite3_column_double(s, 6);
		st->conflict_ops = (uint64_t)sqlite3_column_double(s, 7);
		st_reset(s);
	}
	s = stmt(j, ST_DIRTY_COUNT, err);
	if (!s || st_int(j, s, "status", &v, NULL, err))
		goto out;
	st->dirty_files = (uint64_t)v;
	st->last_seq = j->last_seq;
	st->committed_ops = j->committed_ops;
	st->committed_bytes = j->committed_bytes;
	rc = 0;
out:
	unlock(j);
	return rc;
}

int jnl_list_ops(struct jnl *j, unsigned mask, size_t limit, struct jnl_op **v,
		 size_t *n, struct err *err)
{
	sqlite3_stmt *s;
	struct jnl_op *arr = NULL, *tmp;
	size_t cnt = 0, cap = 0;
	int rc = -1, r;

	*v = NULL;
	*n = 0;
	lock(j);
	s = stmt(j, ST_OP_LIST, err);
	if (!s)
		goto out;
	bind_i64(s, 1, (int64_t)(mask & JNL_MASK_ALL));
	bind_i64(s, 2, limit ? (int64_t)limit : -1);
	for (;;) {
		r = st_row(j, s, "list ops", err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			tmp = realloc(arr, cap * sizeof(*arr));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto out;
			}
			arr = tmp;
		}
		if (op_from_row(s, &arr[cnt], 0)) {
			st_reset(s);
			oom(err);
			goto out;
		}
		cnt++;
	}
	*v = arr;
	*n = cnt;
	arr = NULL;
	rc = 0;
out:
	unlock(j);
	jnl_ops_free(arr, cnt);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* jnl_check: the invariants of section 10                                   */

/* Ops the closure check (I3) handles at most; above it is skipped. */
#define CHECK_MAX_OPS 4096

struct chk_op {
	uint64_t seq, fid;
	char *path, *path2;
	unsigned char *reach;  /* bitset over the index in the array */
};

/* 1 when a and b are equal or one is an ancestor directory of the other. */
static int paths_related(const char *a, const char *b)
{
	size_t la, lb;

	if (!a || !b)
		return 0;
	la = strlen(a);
	lb = strlen(b);
	if (la == lb)
		return strcmp(a, b) == 0;
	if (la < lb)
		return strncmp(a, b, la) == 0 && b[la] == '/';
	return strncmp(a, b, lb) == 0 && a[lb] == '/';
}

static int ops_related(const struct chk_op *x, const struct chk_op *y)
{
	return x->fid == y->fid || paths_related(x->path, y->path) ||
	       paths_related(x->path, y->path2) ||
	       paths_related(x->path2, y->path) ||
	       paths_related(x->path2, y->path2);
}

/* Index of seq in the sorted array, or -1. */
static long chk_find(const struct chk_op *v, size_t n, uint64_t seq)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].seq == seq)
			return (long)mid;
		if (v[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* I3: every related pair of unfinished ops is ordered through deps. */
static int check_closure(struct jnl *j, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct chk_op *v = NULL, *tmp;
	size_t n = 0, cap = 0, i, k, bytes;
	int rc = -1, r;
	long a, b;

	r = sqlite3_prepare_v2(j->db, "SELECT seq,fid,path,path2 FROM ops WHERE "
			       UNFIN " ORDER BY seq", -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "check", err);
		goto out;
	}
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == CHECK_MAX_OPS) {
			rc = 0;  /* too many to check pairwise */
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			tmp = realloc(v, cap * sizeof(*v));
			if (!tmp) {
				oom(err);
				goto out;
			}
			v = tmp;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].seq = (uint64_t)sqlite3_column_int64(s, 0);
		v[n].fid = (uint64_t)sqlite3_column_int64(s, 1);
		n++;
		if (col_str(s, 2, &v[n - 1].path) ||
		    col_str(s, 3, &v[n - 1].path2)) {
			oom(err);
			goto out;
		}
	}
	if (r != SQLITE_DONE) {
		db_fail(j, r, "check", err);
		goto out;
	}
	sqlite3_finalize(s);
	s = NULL;
	bytes = (n + 7) / 8;
	for (i = 0; i < n; i++) {
		v[i].reach = calloc(1, bytes ? bytes : 1);
		if (!v[i].reach) {
			oom(err);
			goto out;
		}
	}
	/* Direct deps, in seq order so each dep's reach set is complete. */
	r = sqlite3_prepare_v2(j->db, "SELECT seq,dep FROM deps ORDER BY seq",
			       -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "check", err);
		goto out;
	}
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		a = chk_find(v, n, (uint64_t)sqlite3_column_int64(s, 0));
		b = chk_find(v, n, (uint64_t)sqlite3_column_int64(s, 1));
		if (a < 0 || b < 0) {
			err_set(err, ERR_IO, "journal check: deps row (%lld, %lld) "
				"names a finished or missing op",
				(long long)sqlite3_column_int64(s, 0),
				(long long)sqlite3_column_int64(s, 1));
			goto out;
		}
		v[a].reach[b / 8] |= (unsigned char)(1u << (b % 8));
		for (k = 0; k < bytes; k++)
			v[a].reach[k] |= v[b].reach[k];
	}
	if (r != SQLITE_DONE) {
		db_fail(j, r, "check", err);
		goto out;
	}
	for (i = 0; i < n; i++)
		for (k = 0; k < i; k++)
			if (ops_related(&v[k], &v[i]) &&
			    !(v[i].reach[k / 8] & (1u << (k % 8)))) {
				err_set(err, ERR_IO, "journal check: op %llu does "
					"not wait for related op %llu",
					(unsigned long long)v[i].seq,
					(unsigned long long)v[k].seq);
				goto out;
			}
	rc = 0;
out:
	sqlite3_finalize(s);
	for (i = 0; i < n; i++) {
		free(v[i].path);
		free(v[i].path2);
		free(v[i].reach);
	}
	free(v);
	return rc;
}

/* Run a query that must return no row; a row is violation `what`. */
static int check_none(struct jnl *j, const char *sql, const char *what,
		      struct err *err)
{
	sqlite3_stmt *s = NULL;
	int r, rc = -1;

	r = sqlite3_prepare_v2(j->db, sql, -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "check", err);
		goto out;
	}
	r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		err_set(err, ERR_IO, "journal check: %s (%s)", what,
			sqlite3_column_text(s, 0) ?
			(const char *)sqlite3_column_text(s, 0) : "?");
		goto out;
	}
	if (r != SQLITE_DONE) {
		db_fail(j, r, "check", err);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

/* I5: every live path valid (paths_valid in C). */
static int check_paths(struct jnl *j, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int r, rc = -1;
	const char *p;

	r = sqlite3_prepare_v2(j->db, "SELECT path FROM files WHERE path IS NOT "
			       "NULL UNION ALL SELECT path FROM ops UNION ALL "
			       "SELECT path2 FROM ops WHERE path2 IS NOT NULL",
			       -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "check", err);
		goto out;
	}
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		p = (const char *)sqlite3_column_text(s, 0);
		if (!path_valid(p)) {
			err_set(err, ERR_IO, "journal check: invalid path stored");
			goto out;
		}
	}
	if (r != SQLITE_DONE) {
		db_fail(j, r, "check", err);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

int jnl_check(struct jnl *j, struct err *err)
{
	sqlite3_stmt *s = NULL;
	const char *res;
	int r, rc = -1;

	lock(j);
	r = sqlite3_prepare_v2(j->db, "PRAGMA integrity_check", -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "integrity check", err);
		goto out;
	}
	r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		db_fail(j, r, "integrity check", err);
		goto out;
	}
	res = (const char *)sqlite3_column_text(s, 0);
	if (!res || strcmp(res, "ok") != 0) {
		err_set(err, ERR_IO, "journal check: integrity: %s",
			res ? res : "?");
		goto out;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (check_none(j, "SELECT seq FROM ops o WHERE ndeps<>(SELECT count(*) "
		       "FROM deps WHERE deps.seq=o.seq)", "ndeps wrong", err) ||
	    check_none(j, "SELECT d.seq FROM deps d LEFT JOIN ops a ON "
		       "a.seq=d.seq LEFT JOIN ops b ON b.seq=d.dep WHERE "
		       "a.seq IS NULL OR b.seq IS NULL OR b.seq>=a.seq OR "
		       "b.state>2 OR a.state<>0", "bad deps row", err) ||
	    check_none(j, "SELECT seq FROM ops WHERE state=1 AND claim=0",
		       "in progress without claim", err) ||
	    check_none(j, "SELECT seq FROM ops o WHERE NOT EXISTS(SELECT 1 FROM "
		       "files f WHERE f.fid=o.fid) OR (fid2 IS NOT NULL AND NOT "
		       "EXISTS(SELECT 1 FROM files f WHERE f.fid=o.fid2))",
		       "op of unknown file", err) ||
	    check_none(j, "SELECT seq FROM ops WHERE kind=3 AND path2 IS NULL",
		       "rename without destination", err) ||
	    check_none(j, "SELECT 'ops' WHERE (SELECT max(seq) FROM ops) > "
		       "coalesce((SELECT seq FROM sqlite_sequence WHERE "
		       "name='ops'),0) UNION ALL SELECT 'files' WHERE (SELECT "
		       "max(fid) FROM files) > coalesce((SELECT seq FROM "
		       "sqlite_sequence WHERE name='files'),0)",
		       "sequence behind rows", err) ||
	    check_none(j, "SELECT name FROM cache_blocks a WHERE end<=start OR "
		       "EXISTS(SELECT 1 FROM cache_blocks b WHERE b.name=a.name "
		       "AND b.start>a.start AND b.start<=a.end)",
		       "cache ranges overlap", err) ||
	    check_paths(j, err) || check_closure(j, err))
		goto out;
	rc = 0;
out:
	sqlite3_finalize(s);
	unlock(j);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Stored listings and attributes                                            */

void jnl_entry_release(struct jnl_entry *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->remote);
	memset(e, 0, sizeof(*e));
}

void jnl_entries_free(struct jnl_entry *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		jnl_entry_release(&v[i]);
	free(v);
}

static int dir_valid(const char *dir)
{
	return dir && (*dir == '\0' || path_valid(dir));
}

static void bind_entry(sqlite3_stmt *s, const char *dir,
		       const struct jnl_entry *e)
{
	bind_text(s, 1, dir);
	bind_text(s, 2, e->name);
	sqlite3_bind_int(s, 3, e->type);
	bind_i64(s, 4, (int64_t)e->size);
	bind_i64(s, 5, e->mtime_ns);
	bind_text(s, 6, e->remote);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)e->flags);
}

static int entry_from_row(sqlite3_stmt *s, struct jnl_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->type = sqlite3_column_int(s, 1);
	e->size = (uint64_t)sqlite3_column_int64(s, 2);
	e->mtime_ns = (int64_t)sqlite3_column_int64(s, 3);
	e->flags = (unsigned)sqlite3_column_int64(s, 5);
	if (col_str(s, 0, &e->name) || col_str(s, 4, &e->remote)) {
		jnl_entry_release(e);
		return -1;
	}
	return 0;
}

/* qsort order of entry pointers by name (strcmp: SQLite's BINARY order). */
static int entry_ptr_cmp(const void *a, const void *b)
{
	const struct jnl_entry *x = *(const struct jnl_entry *const *)a;
	const struct jnl_entry *y = *(const struct jnl_entry *const *)b;

	return strcmp(x->name, y->name);
}

/* 1 when the ENT_LIST row s stores exactly what bind_entry would store
 * for e (name aside). */
static int entry_row_same(sqlite3_stmt *s, const struct jnl_entry *e)
{
	const unsigned char *r;

	if (sqlite3_column_int(s, 1) != e->type ||
	    sqlite3_column_int64(s, 2) != (sqlite3_int64)(int64_t)e->size ||
	    sqlite3_column_int64(s, 3) != (sqlite3_int64)e->mtime_ns ||
	    sqlite3_column_int64(s, 5) != (sqlite3_int64)e->flags)
		return 0;
	if (sqlite3_column_type(s, 4) == SQLITE_NULL)
		return e->remote == NULL;
	r = sqlite3_column_text(s, 4);
	return e->remote && r && !strcmp((const char *)r, e->remote);
}

static void names_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Inside the caller's transaction: compare the stored listing of dir with
 * ord[0..n) (sorted by name, unique) and write only the difference --
 * rows of names no longer listed deleted, new or changed entries stored,
 * identical rows left alone (a refetched listing that did not change
 * writes no page of entries or of its index). 0 or -1 with *err. */
static int dir_put_diff(struct jnl *j, const char *dir, const struct jnl_entry *const *ord,
			size_t n, struct err *err)
{
	const unsigned char *name;
	char **gone = NULL, **ng;
	size_t ngone = 0, capgone = 0, i = 0, k;
	unsigned char *put = NULL;
	sqlite3_stmt *s;
	int rc = -1, r, c;

	if (n && !(put = calloc(n, 1)))
		return oom(err);
	s = stmt(j, ST_ENT_LIST, err);
	if (!s)
		goto out;
	bind_text(s, 1, dir);
	while ((r = st_row(j, s, "read listing", err)) == 1) {
		name = sqlite3_column_text(s, 0);
		if (!name) {
			st_reset(s);
			oom(err);
			goto out;
		}
		c = 1;
		while (i < n && (c = strcmp(ord[i]->name, (const char *)name)) < 0)
			put[i++] = 1;                   /* new */
		if (i < n && c == 0) {
			put[i] = !entry_row_same(s, ord[i]);
			i++;
			continue;
		}
		if (ngone == capgone) {                 /* no longer listed */
			capgone = capgone ? capgone * 2 : 8;
			ng = realloc(gone, capgone * sizeof(*gone));
			if (!ng) {
				st_reset(s);
				oom(err);
				goto out;
			}
			gone = ng;
		}
		if (!(gone[ngone] = strdup((const char *)name))) {
			st_reset(s);
			oom(err);
			goto out;
		}
		ngone++;
	}
	if (r < 0)
		goto out;
	while (i < n)
		put[i++] = 1;
	for (k = 0; k < ngone; k++) {
		if (!(s = stmt(j, ST_ENT_DEL, err)))
			goto out;
		bind_text(s, 1, dir);
		bind_text(s, 2, gone[k]);
		if (st_exec(j, s, "drop entry", err))
			goto out;
	}
	for (k = 0; k < n; k++) {
		if (!put[k])
			continue;
		if (!(s = stmt(j, ST_ENT_PUT, err)))
			goto out;
		bind_entry(s, dir, ord[k]);
		if (st_exec(j, s, "store entry", err))
			goto out;
	}
	rc = 0;
out:
	names_free(gone, ngone);
	free(put);
	return rc;
}

int jnl_dir_put(struct jnl *j, const char *dir, const struct jnl_entry *v,
		size_t n, int64_t fetched_ms, struct err *err)
{
	const struct jnl_entry **ord = NULL;
	int tries = 0;
	sqlite3_stmt *s;
	size_t i;
	int rc = -1;

	if (!dir_valid(dir))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	for (i = 0; i < n; i++)
		if (!name_valid(v[i].name))
			return err_set(err, ERR_INVAL, "journal: invalid entry "
				       "name in listing of %s", *dir ? dir : "/");
	if (n && !(ord = malloc(n * sizeof(*ord))))
		return oom(err);
	for (i = 0; i < n; i++)
		ord[i] = &v[i];
	if (n > 1)
		qsort(ord, n, sizeof(*ord), entry_ptr_cmp);
	for (i = 1; i < n; i++)
		if (!strcmp(ord[i - 1]->name, ord[i]->name)) {
			free(ord);
			return err_set(err, ERR_INVAL, "journal: duplicate entry name in "
				       "listing of %s", *dir ? dir : "/");
		}
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	if (dir_put_diff(j, dir, ord, n, err))
		goto done;
	s = stmt(j, ST_DIR_SET, err);
	if (!s)
		goto done;
	bind_text(s, 1, dir);
	sqlite3_bind_int(s, 2, 1);
	bind_i64(s, 3, fetched_ms);
	rc = st_exec(j, s, "store listing", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	free(ord);
	return rc;
}

/* The stored listing's flag and fetch time (ST_DIR_GET), inside the
 * caller's locked read transaction. 0, or -1 with *err (ERR_NOTFOUND when
 * nothing is stored for dir). */
static int dir_head(struct jnl *j, const char *dir, int64_t *fetched_ms, int *complete,
		    struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_DIR_GET, err);
	int r;

	if (!s)
		return -1;
	bind_text(s, 1, dir);
	r = st_row(j, s, "read listing", err);
	if (r < 0)
		return -1;
	if (r == 0)
		return err_set(err, ERR_NOTFOUND, "journal: no stored listing of %s",
			       *dir ? dir : "/");
	*complete = sqlite3_column_int(s, 0);
	*fetched_ms = (int64_t)sqlite3_column_int64(s, 1);
	st_reset(s);
	return 0;
}

int jnl_dir_get(struct jnl *j, const char *dir, struct jnl_entry **v,
		size_t *n, int64_t *fetched_ms, int *complete, struct err *err)
{
	sqlite3_stmt *s;
	struct jnl_entry *arr = NULL, *tmp;
	size_t cnt = 0, cap = 0;
	int rc = -1, r;

	*v = NULL;
	*n = 0;
	*fetched_ms = 0;
	*complete = 0;
	if (!dir_valid(dir))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	lock(j);
	/* One read transaction, so the flag and the entries agree. */
	if (exec_sql(j, "BEGIN", "begin", err))
		goto out;
	if (dir_head(j, dir, fetched_ms, complete, err) < 0)
		goto done;
	s = stmt(j, ST_ENT_LIST, err);
	if (!s)
		goto done;
	bind_text(s, 1, dir);
	for (;;) {
		r = st_row(j, s, "read listing", err);
		if (r < 0)
			goto done;
		if (r == 0)
			break;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 64;
			tmp = realloc(arr, cap * sizeof(*arr));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto done;
			}
			arr = tmp;
		}
		if (entry_from_row(s, &arr[cnt])) {
			st_reset(s);
			oom(err);
			goto done;
		}
		cnt++;
	}
	rc = 0;
done:
	tx_abort(j);  /* read only: end the transaction */
	if (rc == 0) {
		*v = arr;
		*n = cnt;
		arr = NULL;
	} else {
		*complete = 0;
		*fetched_ms = 0;
	}
out:
	unlock(j);
	jnl_entries_free(arr, cnt);
	return rc;
}

int jnl_dir_info(struct jnl *j, const char *dir, size_t *n, int64_t *fetched_ms,
		 int *complete, struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1, r;

	*n = 0;
	*fetched_ms = 0;
	*complete = 0;
	if (!dir_valid(dir))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	lock(j);
	/* One read transaction, so the flag and the count agree. */
	if (exec_sql(j, "BEGIN", "begin", err))
		goto out;
	if (dir_head(j, dir, fetched_ms, complete, err) < 0)
		goto done;
	s = stmt(j, ST_ENT_COUNT, err);
	if (!s)
		goto done;
	bind_text(s, 1, dir);
	r = st_row(j, s, "count listing", err);
	if (r < 0)
		goto done;
	*n = r > 0 ? (size_t)sqlite3_column_int64(s, 0) : 0;
	st_reset(s);
	rc = 0;
done:
	tx_abort(j);  /* read only: end the transaction */
	if (rc < 0) {
		*n = 0;
		*complete = 0;
		*fetched_ms = 0;
	}
out:
	unlock(j);
	return rc;
}

int jnl_dir_invalidate(struct jnl *j, const char *dir, struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1;

	if (!dir_valid(dir))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	lock(j);
	s = stmt(j, ST_DIR_INVALIDATE, err);
	if (s) {
		bind_text(s, 1, dir);
		rc = st_exec(j, s, "invalidate listing", err);
	}
	unlock(j);
	return rc;
}

int jnl_dir_stale(struct jnl *j, const char *dir, struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1;

	if (!dir_valid(dir))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	lock(j);
	s = stmt(j, ST_DIR_STALE, err);
	if (s) {
		bind_text(s, 1, dir);
		rc = st_exec(j, s, "mark listing stale", err);
		if (rc == 0 && sqlite3_changes(j->db) == 0)
			rc = err_set(err, ERR_NOTFOUND, "journal: no stored listing of %s",
				     *dir ? dir : "/");
	}
	unlock(j);
	return rc;
}

int jnl_dir_forget(struct jnl *j, const char *dir, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	char *lo = NULL, *hi = NULL;
	int start, rc = -1, i;

	if (!dir_valid(dir))
		return err_set(err, ERR_INVAL, "journal: invalid directory");
	if (below_bounds(dir, &lo, &hi, &start))
		return oom(err);
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	for (i = 0; i < 2; i++) {
		s = stmt(j, i ? ST_DIR_FORGET_ENT : ST_DIR_FORGET, err);
		if (!s)
			goto done;
		bind_text(s, 1, dir);
		bind_text(s, 2, lo);
		bind_text(s, 3, hi);
		if (st_exec(j, s, "forget listings", err))
			goto done;
	}
	rc = 0;
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	free(lo);
	free(hi);
	return rc;
}

int jnl_entry_put(struct jnl *j, const char *dir, const struct jnl_entry *e,
		  struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1;

	if (!dir_valid(dir) || !e || !name_valid(e->name))
		return err_set(err, ERR_INVAL, "journal: invalid entry");
	lock(j);
	s = stmt(j, ST_ENT_PUT, err);
	if (s) {
		bind_entry(s, dir, e);
		rc = st_exec(j, s, "store entry", err);
	}
	unlock(j);
	return rc;
}

int jnl_entry_get(struct jnl *j, const char *dir, const char *name,
		  struct jnl_entry *e, struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1, r;

	memset(e, 0, sizeof(*e));
	if (!dir_valid(dir) || !name_valid(name))
		return err_set(err, ERR_INVAL, "journal: invalid entry");
	lock(j);
	s = stmt(j, ST_ENT_GET, err);
	if (!s)
		goto out;
	bind_text(s, 1, dir);
	bind_text(s, 2, name);
	r = st_row(j, s, "read entry", err);
	if (r < 0)
		goto out;
	if (r == 0) {
		err_set(err, ERR_NOTFOUND, "journal: no stored entry %s in %s",
			name, *dir ? dir : "/");
		goto out;
	}
	r = entry_from_row(s, e);
	st_reset(s);
	rc = r ? oom(err) : 0;
out:
	unlock(j);
	return rc;
}

int jnl_entry_del(struct jnl *j, const char *dir, const char *name,
		  struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1;

	if (!dir_valid(dir) || !name_valid(name))
		return err_set(err, ERR_INVAL, "journal: invalid entry");
	lock(j);
	s = stmt(j, ST_ENT_DEL, err);
	if (s) {
		bind_text(s, 1, dir);
		bind_text(s, 2, name);
		rc = st_exec(j, s, "delete entry", err);
	}
	unlock(j);
	return rc;
}

void jnl_places_free(struct jnl_place *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

int jnl_entries_by_id(struct jnl *j, const char *id, struct jnl_place **out, size_t *n,
		      struct err *err)
{
	return jnl_entries_by_ids(j, &id, 1, out, n, err);
}

int jnl_entries_by_ids(struct jnl *j, const char *const *ids, size_t nids,
		       struct jnl_place **out, size_t *n, struct err *err)
{
	struct jnl_place *v = NULL, *nv;
	const unsigned char *dir, *name;
	size_t cap = 0, k = 0, a, b, i;
	json_t *arr = NULL;
	char *list = NULL;
	sqlite3_stmt *s;
	int rc = -1, r;

	*out = NULL;
	*n = 0;
	for (i = 0; i < nids; i++)
		if (!ids[i] || !*ids[i])
			return err_set(err, ERR_INVAL, "journal: empty remote id");
	if (nids == 0)
		return 0;
	arr = json_array();
	for (i = 0; arr && i < nids; i++)
		if (json_array_append_new(arr, json_string(ids[i])) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	list = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	if (!list)
		return err_set(err, ERR_INVAL, "journal: remote ids not valid UTF-8 (or out of "
			       "memory)");
	lock(j);
	s = stmt(j, ST_ENT_BY_IDS, err);
	if (!s)
		goto out;
	bind_text(s, 1, list);
	while ((r = st_row(j, s, "find entries by id", err)) == 1) {
		dir = sqlite3_column_text(s, 0);
		name = sqlite3_column_text(s, 1);
		if (!dir || !name)
			continue;
		if (k == cap) {
			cap = cap ? cap * 2 : 4;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				goto nomem;
			v = nv;
		}
		a = strlen((const char *)dir);
		b = strlen((const char *)name);
		v[k].type = sqlite3_column_int(s, 2);
		v[k].path = malloc(a + b + 2);
		if (!v[k].path)
			goto nomem;
		if (a) {
			memcpy(v[k].path, dir, a);
			v[k].path[a] = '/';
			memcpy(v[k].path + a + 1, name, b + 1);
		} else {
			memcpy(v[k].path, name, b + 1);
		}
		k++;
	}
	if (r < 0)
		goto out;
	*out = v;
	*n = k;
	v = NULL;
	k = 0;
	rc = 0;
	goto out;
nomem:
	st_reset(s);
	oom(err);
out:
	unlock(j);
	jnl_places_free(v, k);
	free(list);
	return rc;
}

int jnl_entries_by_ids_plan(struct jnl *j, char **plan, struct err *err)
{
	static const char pre[] = "EXPLAIN QUERY PLAN ";
	const unsigned char *detail;
	sqlite3_stmt *s = NULL;
	size_t len = 0, cap = 0, dl;
	char *sql = NULL, *buf = NULL, *nb;
	int rc = -1, r;

	*plan = NULL;
	dl = strlen(st_sql[ST_ENT_BY_IDS]);
	sql = malloc(sizeof(pre) + dl);
	if (!sql)
		return oom(err);
	memcpy(sql, pre, sizeof(pre) - 1);
	memcpy(sql + sizeof(pre) - 1, st_sql[ST_ENT_BY_IDS], dl + 1);
	lock(j);
	r = sqlite3_prepare_v2(j->db, sql, -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "explain find by id", err);
		goto out;
	}
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		detail = sqlite3_column_text(s, 3);
		dl = detail ? strlen((const char *)detail) : 0;
		if (len + dl + 2 > cap) {
			cap = (len + dl + 2) * 2;
			nb = realloc(buf, cap);
			if (!nb) {
				oom(err);
				goto out;
			}
			buf = nb;
		}
		if (dl)
			memcpy(buf + len, detail, dl);
		len += dl;
		buf[len++] = '\n';
		buf[len] = '\0';
	}
	if (r != SQLITE_DONE) {
		db_fail(j, r, "explain find by id", err);
		goto out;
	}
	if (!buf && !(buf = strdup(""))) {
		oom(err);
		goto out;
	}
	*plan = buf;
	buf = NULL;
	rc = 0;
out:
	sqlite3_finalize(s);
	unlock(j);
	free(buf);
	free(sql);
	return rc;
}

int jnl_meta_set(struct jnl *j, const char *key, const char *value,
		 struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1;

	if (!key || !*key)
		return err_set(err, ERR_INVAL, "journal: empty key");
	lock(j);
	s = stmt(j, value ? ST_META_SET : ST_META_DEL, err);
	if (s) {
		bind_text(s, 1, key);
		if (value)
			bind_text(s, 2, value);
		rc = st_exec(j, s, "store meta", err);
	}
	unlock(j);
	return rc;
}

int jnl_meta_get(struct jnl *j, const char *key, char **value,
		 struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1, r;

	*value = NULL;
	if (!key || !*key)
		return err_set(err, ERR_INVAL, "journal: empty key");
	lock(j);
	s = stmt(j, ST_META_GET, err);
	if (!s)
		goto out;
	bind_text(s, 1, key);
	r = st_row(j, s, "read meta", err);
	if (r < 0)
		goto out;
	rc = 0;
	if (r == 1) {
		if (col_str(s, 0, value))
			rc = oom(err);
		st_reset(s);
	}
out:
	unlock(j);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Read-cache map                                                            */

void jnl_cache_files_free(struct jnl_cache_file *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].remote);
	}
	free(v);
}

/* The stored remote version of cache file name: 1 known (*remote malloc'd
 * or NULL), 0 not in the map, -1 error. */
static int cf_remote(struct jnl *j, const char *name, char **remote,
		     struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_CF_GET, err);
	int r;

	*remote = NULL;
	if (!s)
		return -1;
	bind_text(s, 1, name);
	r = st_row(j, s, "read cache map", err);
	if (r != 1)
		return r;
	r = col_str(s, 0, remote);
	st_reset(s);
	return r ? oom(err) : 1;
}

static int same_remote(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* A range row (start, end) from statement s: 1 (*a, *b), 0 none, -1. */
static int range_row(struct jnl *j, sqlite3_stmt *s, uint64_t *a, uint64_t *b,
		     struct err *err)
{
	int r = st_row(j, s, "read cache ranges", err);

	if (r != 1)
		return r;
	*a = (uint64_t)sqlite3_column_int64(s, 0);
	*b = (uint64_t)sqlite3_column_int64(s, 1);
	st_reset(s);
	return 1;
}

/* Run statement id with ?1 = name. */
static int exec_sql_name(struct jnl *j, int id, const char *name,
			 struct err *err)
{
	sqlite3_stmt *s = stmt(j, id, err);

	if (!s)
		return -1;
	bind_text(s, 1, name);
	return st_exec(j, s, "update cache map", err);
}

/* Delete the range of name starting at start. */
static int exec_range_del(struct jnl *j, const char *name, uint64_t start,
			  struct err *err)
{
	sqlite3_stmt *s = stmt(j, ST_CB_DEL, err);

	if (!s)
		return -1;
	bind_text(s, 1, name);
	bind_i64(s, 2, (int64_t)start);
	return st_exec(j, s, "merge cache ranges", err);
}

/* Store the pending access times (one transaction; an access time never
 * moves back). They are only LRU hints: when storing fails they are
 * dropped. j->mu held. */
static void touch_flush(struct jnl *j)
{
	sqlite3_stmt *s;
	struct err e;
	size_t i = 0;
	uint64_t before;

	if (!j->ntouch)
		return;
	before = (uint64_t)sqlite3_total_changes64(j->db);
	if (tx_begin(j, &e))
		goto out;
	for (i = 0; i < j->ntouch; i++) {
		s = stmt(j, ST_CF_TOUCH_MAX, &e);
		if (!s)
			break;
		bind_text(s, 1, j->touch[i].name);
		bind_i64(s, 2, j->touch[i].at);
		if (st_exec(j, s, "touch cache file", &e))
			break;
	}
	(void)tx_end(j, i == j->ntouch ? 0 : -1, &e);
out:
	j->gen_skip += (uint64_t)sqlite3_total_changes64(j->db) - before;
	for (i = 0; i < j->ntouch; i++)
		free(j->touch[i].name);
	j->ntouch = 0;
}

/* Cache file name was read at `at`: remember it (stored by touch_flush).
 * j->mu held. */
static void touch_note(struct jnl *j, const char *name, int64_t at)
{
	struct jnl_touch *nv;
	size_t i;

	for (i = 0; i < j->ntouch; i++) {
		if (!strcmp(j->touch[i].name, name)) {
			if (at > j->touch[i].at)
				j->touch[i].at = at;
			return;
		}
	}
	if (j->ntouch == j->captouch) {
		nv = realloc(j->touch, (j->captouch ? j->captouch * 2 : 32) * sizeof(*nv));
		if (!nv)
			return;         /* a lost LRU hint */
		j->touch = nv;
		j->captouch = j->captouch ? j->captouch * 2 : 32;
	}
	j->touch[j->ntouch].name = strdup(name);
	if (!j->touch[j->ntouch].name)
		return;
	j->touch[j->ntouch++].at = at;
	if (j->ntouch >= JNL_TOUCH_MAX)
		touch_flush(j);
}

int jnl_cache_add(struct jnl *j, const char *name, const char *remote,
		  uint64_t off, uint64_t len, struct err *err)
{
	int tries = 0;
	sqlite3_stmt *s;
	char *cur = NULL;
	uint64_t start = off, end = off + len, a, b, removed = 0;
	uint64_t *starts = NULL, *tmp;
	size_t ns = 0, cap = 0, i;
	int64_t now;
	int rc = -1, r;

	if (!name || !*name)
		return err_set(err, ERR_INVAL, "journal: empty cache name");
	if (len == 0)
		return 0;
	if (end < off || end > (uint64_t)INT64_MAX)
		return err_set(err, ERR_INVAL, "journal: cache range overflows");
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	now = now_ms(j);
	r = cf_remote(j, name, &cur, err);
	if (r < 0)
		goto done;
	if (r == 0) {
		s = stmt(j, ST_CF_INSERT, err);
		if (!s)
			goto done;
		bind_text(s, 1, name);
		bind_text(s, 2, remote);
		bind_i64(s, 3, now);
		if (st_exec(j, s, "add cache file", err))
			goto done;
	} else if (!same_remote(cur, remote)) {
		if (exec_sql_name(j, ST_CB_DROP, name, err))
			goto done;
		s = stmt(j, ST_CF_RESET, err);
		if (!s)
			goto done;
		bind_text(s, 1, name);
		bind_text(s, 2, remote);
		if (st_exec(j, s, "reset cache file", err))
			goto done;
	}
	/* Merge with the range before (if it reaches start) and every range
	 * starting inside [start, end]. */
	s = stmt(j, ST_CB_BEFORE, err);
	if (!s)
		goto done;
	bind_text(s, 1, name);
	bind_i64(s, 2, (int64_t)start);
	r = range_row(j, s, &a, &b, err);
	if (r < 0)
		goto done;
	if (r == 1 && b >= start) {
		if (b >= end) {
			rc = 0;  /* already present */
			s = stmt(j, ST_CF_TOUCH, err);
			if (!s || (bind_text(s, 1, name), bind_i64(s, 2, now),
				   st_exec(j, s, "touch cache file", err)))
				rc = -1;
			goto done;
		}
		start = a;
		if (exec_range_del(j, name, a, err))
			goto done;
		removed += b - a;
	}
	s = stmt(j, ST_CB_FROM, err);
	if (!s)
		goto done;
	bind_text(s, 1, name);
	bind_i64(s, 2, (int64_t)start);
	bind_i64(s, 3, (int64_t)end);
	for (;;) {
		r = st_row(j, s, "read cache ranges", err);
		if (r < 0)
			goto done;
		if (r == 0)
			break;
		a = (uint64_t)sqlite3_column_int64(s, 0);
		b = (uint64_t)sqlite3_column_int64(s, 1);
		if (b > end)
			end = b;
		removed += b - a;
		if (ns == cap) {
			cap = cap ? cap * 2 : 8;
			tmp = realloc(starts, cap * sizeof(*starts));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto done;
			}
			starts = tmp;
		}
		starts[ns++] = a;
	}
	for (i = 0; i < ns; i++)
		if (exec_range_del(j, name, starts[i], err))
			goto done;
	s = stmt(j, ST_CB_INSERT, err);
	if (!s)
		goto done;
	bind_text(s, 1, name);
	bind_i64(s, 2, (int64_t)start);
	bind_i64(s, 3, (int64_t)end);
	if (st_exec(j, s, "add cache range", err))
		goto done;
	s = stmt(j, ST_CF_ADD, err);
	if (!s)
		goto done;
	bind_text(s, 1, name);
	bind_i64(s, 2, (int64_t)((end - start) - removed));
	bind_i64(s, 3, now);
	rc = st_exec(j, s, "count cache bytes", err);
done:
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		free(cur);
		cur = NULL;
		free(starts);
		starts = NULL;
		ns = cap = 0;
		start = off;
		end = off + len;
		removed = 0;
		goto again;
	}
out:
	unlock(j);
	free(cur);
	free(starts);
	return rc;
}

int jnl_cache_missing(struct jnl *j, const char *name, const char *remote,
		      uint64_t off, uint64_t len, uint64_t *moff, uint64_t *mlen,
		      struct err *err)
{
	sqlite3_stmt *s;
	char *cur = NULL;
	uint64_t end = off + len, pos = off, a, b;
	int64_t next;
	int rc = -1, r, found;

	*moff = off;
	*mlen = len;
	if (!name || !*name)
		return err_set(err, ERR_INVAL, "journal: empty cache name");
	if (end < off)
		return err_set(err, ERR_INVAL, "journal: cache range overflows");
	if (len == 0)
		return 0;
	lock(j);
	r = cf_remote(j, name, &cur, err);
	if (r < 0)
		goto out;
	if (r == 0 || !same_remote(cur, remote)) {
		rc = 0;  /* nothing valid is present */
		goto out;
	}
	s = stmt(j, ST_CB_AT_OR_BEFORE, err);
	if (!s)
		goto out;
	bind_text(s, 1, name);
	bind_i64(s, 2, (int64_t)off);
	r = range_row(j, s, &a, &b, err);
	if (r < 0)
		goto out;
	/* Ranges are merged, so the one covering off (if any) is followed by
	 * a gap: the missing part starts at its end. */
	if (r == 1 && b > off)
		pos = b;
	if (pos >= end) {
		*moff = end;
		*mlen = 0;
	} else {
		s = stmt(j, ST_CB_NEXT, err);
		if (!s)
			goto out;
		bind_text(s, 1, name);
		bind_i64(s, 2, (int64_t)pos);
		if (st_int(j, s, "read cache ranges", &next, &found, err))
			goto out;
		*moff = pos;
		*mlen = (found && (uint64_t)next < end ? (uint64_t)next : end) - pos;
	}
	if (pos > off)
		touch_note(j, name, now_ms(j));
	rc = 0;
out:
	unlock(j);
	free(cur);
	return rc;
}

void jnl_cache_touch(struct jnl *j, const char *name)
{
	if (!name || !*name)
		return;
	lock(j);
	touch_note(j, name, now_ms(j));
	unlock(j);
}

int jnl_cache_lru(struct jnl *j, size_t limit, struct jnl_cache_file **v,
		  size_t *n, struct err *err)
{
	sqlite3_stmt *s;
	struct jnl_cache_file *arr = NULL, *tmp;
	size_t cnt = 0, cap = 0;
	int rc = -1, r;

	*v = NULL;
	*n = 0;
	lock(j);
	touch_flush(j);
	s = stmt(j, ST_CF_LRU, err);
	if (!s)
		goto out;
	bind_i64(s, 1, limit ? (int64_t)limit : -1);
	for (;;) {
		r = st_row(j, s, "list cache files", err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			tmp = realloc(arr, cap * sizeof(*arr));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto out;
			}
			arr = tmp;
		}
		memset(&arr[cnt], 0, sizeof(arr[cnt]));
		arr[cnt].bytes = (uint64_t)sqlite3_column_int64(s, 2);
		arr[cnt].atime_ms = (int64_t)sqlite3_column_int64(s, 3);
		cnt++;
		if (col_str(s, 0, &arr[cnt - 1].name) ||
		    col_str(s, 1, &arr[cnt - 1].remote)) {
			st_reset(s);
			oom(err);
			goto out;
		}
	}
	*v = arr;
	*n = cnt;
	arr = NULL;
	rc = 0;
out:
	unlock(j);
	jnl_cache_files_free(arr, cnt);
	return rc;
}

int jnl_cache_drop(struct jnl *j, const char *name, struct err *err)
{
	int tries = 0;
	int rc = -1;

	if (!name || !*name)
		return err_set(err, ERR_INVAL, "journal: empty cache name");
	lock(j);
again:
	if (tx_begin(j, err))
		goto out;
	rc = exec_sql_name(j, ST_CB_DROP, name, err);
	if (rc == 0)
		rc = exec_sql_name(j, ST_CF_DROP, name, err);
	rc = tx_end(j, rc, err);
	if (rc && tx_retry(j, &tries)) {
		goto again;
	}
out:
	unlock(j);
	return rc;
}

int jnl_cache_usage(struct jnl *j, uint64_t *bytes, uint64_t *files,
		    struct err *err)
{
	sqlite3_stmt *s;
	int rc = -1, r;

	*bytes = 0;
	*files = 0;
	lock(j);
	s = stmt(j, ST_CF_USAGE, err);
	if (!s)
		goto out;
	r = st_row(j, s, "cache usage", err);
	if (r < 0)
		goto out;
	if (r == 1) {
		*bytes = (uint64_t)sqlite3_column_double(s, 0);
		*files = (uint64_t)sqlite3_column_int64(s, 1);
		st_reset(s);
	}
	rc = 0;
out:
	unlock(j);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Open, recovery, close                                                     */

/* Create the database file 0600 if absent; narrow a wider mode. The file
 * is closed again before SQLite opens it (no POSIX lock is held yet). */
static int prepare_file(const char *path, struct err *err)
{
	struct stat st;
	int fd, rc = -1;

	do {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return err_sys(err, "journal: open %s", path);
	if (fstat(fd, &st) != 0) {
		err_sys(err, "journal: stat %s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, ERR_INVAL, "journal: %s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) != 0) {
		err_sys(err, "journal: chmod %s", path);
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Take the exclusive lock file; *fd gets it. */
static int take_lock(const char *path, int *fd, struct err *err)
{
	char *lp = str_cat2(path, strlen(path), ".lock");
	int r;

	*fd = -1;
	if (!lp)
		return oom(err);
	do {
		*fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	} while (*fd < 0 && errno == EINTR);
	if (*fd < 0) {
		err_sys(err, "journal: open %s", lp);
		free(lp);
		return -1;
	}
	do {
		r = flock(*fd, LOCK_EX | LOCK_NB);
	} while (r != 0 && errno == EINTR);
	if (r != 0) {
		if (errno == EWOULDBLOCK) {
			err_set(err, ERR_IO, "journal: %s is in use by another "
				"durafs process (or another mount of this cache)",
				path);
			if (err)
				err->sys_errno = EBUSY;
		} else {
			err_sys(err, "journal: lock %s", lp);
		}
		close(*fd);
		*fd = -1;
		free(lp);
		return -1;
	}
	free(lp);
	return 0;
}

/* A single integer from a pragma or query. */
static int query_int(struct jnl *j, const char *sql, int64_t *v,
		     struct err *err)
{
	sqlite3_stmt *s = NULL;
	int r, rc = -1;

	*v = 0;
	r = sqlite3_prepare_v2(j->db, sql, -1, &s, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "open", err);
		goto out;
	}
	r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		*v = (int64_t)sqlite3_column_int64(s, 0);
	else if (r != SQLITE_DONE) {
		db_fail(j, r, "open", err);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

/* Upgrade a journal of schema version `from` to JNL_SCHEMA_VERSION, one
 * step after the other, inside the caller's transaction (a crash leaves
 * the old version whole). 0 or -1 with *err. */
static int schema_upgrade(struct jnl *j, int64_t from, struct err *err)
{
	static const char *const steps[] = {
		/* 1 -> 2: entry flags (BE_EF_*: read-only, size unknown) */
		"ALTER TABLE entries ADD COLUMN flags INTEGER NOT NULL DEFAULT 0",
		/* 2 -> 3: entries found by remote id through an index */
		ENT_ID_INDEX,
	};
	char sql[64];
	int64_t v;

	for (v = from; v < JNL_SCHEMA_VERSION; v++) {
		if (v < 1 || v - 1 >= (int64_t)(sizeof(steps) / sizeof(steps[0])))
			return err_set(err, ERR_INVAL, "journal: no upgrade from schema "
				       "version %lld", (long long)v);
		if (exec_sql(j, steps[v - 1], "upgrade schema", err))
			return -1;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", JNL_SCHEMA_VERSION);
	return exec_sql(j, sql, "upgrade schema", err) ? -1 : 0;
}

/* Check or create the schema (spec, section 11, step 1). */
static int schema_setup(struct jnl *j, int *created, struct err *err)
{
	int64_t app = 0, ver = 0, ntab = 0;
	char sql[96];
	int rc = -1;

	*created = 0;
	if (tx_begin(j, err))
		return -1;
	if (query_int(j, "PRAGMA application_id", &app, err) ||
	    query_int(j, "PRAGMA user_version", &ver, err) ||
	    query_int(j, "SELECT count(*) FROM sqlite_schema", &ntab, err))
		goto done;
	if (app == 0 && ver == 0 && ntab == 0) {
		snprintf(sql, sizeof(sql), "PRAGMA application_id=%d;"
			 "PRAGMA user_version=%d", JNL_APP_ID, JNL_SCHEMA_VERSION);
		if (exec_sql(j, schema_sql, "create schema", err) ||
		    exec_sql(j, sql, "create schema", err))
			goto done;
		*created = 1;
		rc = 0;
		goto done;
	}
	if (app != JNL_APP_ID) {
		err_set(err, ERR_INVAL, "journal: %s is not a durafs journal "
			"(application id %lld)", j->path, (long long)app);
		goto done;
	}
	if (ver > JNL_SCHEMA_VERSION) {
		err_set(err, ERR_INVAL, "journal: %s has schema version %lld, "
			"written by a newer durafs; this one understands up to "
			"version %d: upgrade durafs (the journal was left "
			"untouched)", j->path, (long long)ver, JNL_SCHEMA_VERSION);
		goto done;
	}
	if (ver < 1) {
		err_set(err, ERR_INVAL, "journal: %s has an invalid schema "
			"version %lld", j->path, (long long)ver);
		goto done;
	}
	if (ver < JNL_SCHEMA_VERSION && schema_upgrade(j, ver, err))
		goto done;
	rc = 0;
done:
	return tx_end(j, rc, err);
}

/* Recovery steps 3-5 in one transaction. */
static int recover(struct jnl *j, struct jnl_recovery *rec, struct err *err)
{
	sqlite3_stmt *s;
	struct {
		uint64_t fid, version, size;
		int64_t mtime_ns;
		char *path;
	} *need = NULL, *tmp;
	size_t n = 0, cap = 0, i;
	uint64_t seq;
	int64_t v;
	int rc = -1, r;

	if (tx_begin(j, err))
		return -1;
	s = stmt(j, ST_REQUEUE_ALL, err);
	if (!s || st_exec(j, s, "requeue claims", err))
		goto done;
	rec->requeued = (uint64_t)sqlite3_changes(j->db);
	s = stmt(j, ST_FILE_NEED_WRITE, err);
	if (!s)
		goto done;
	for (;;) {
		r = st_row(j, s, "find dirty files", err);
		if (r < 0)
			goto done;
		if (r == 0)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			tmp = realloc(need, cap * sizeof(*need));
			if (!tmp) {
				st_reset(s);
				oom(err);
				goto done;
			}
			need = (void *)tmp;
		}
		need[n].fid = (uint64_t)sqlite3_column_int64(s, 0);
		need[n].version = (uint64_t)sqlite3_column_int64(s, 1);
		need[n].size = (uint64_t)sqlite3_column_int64(s, 2);
		need[n].mtime_ns = (int64_t)sqlite3_column_int64(s, 3);
		need[n].path = strdup((const char *)sqlite3_column_text(s, 4));
		n++;
		if (!need[n - 1].path) {
			st_reset(s);
			oom(err);
			goto done;
		}
	}
	for (i = 0; i < n; i++)
		if (op_insert(j, JNL_OP_WRITE, need[i].fid, 0, need[i].path, NULL,
			      NULL, need[i].version, need[i].size,
			      need[i].mtime_ns, 0, &seq, err))
			goto done;
	rec->redirtied = n;
	if (query_int(j, "SELECT count(*) FROM ops WHERE state=0", &v, err))
		goto done;
	rec->pending = (uint64_t)v;
	if (query_int(j, "SELECT count(*) FROM ops WHERE state=2", &v, err))
		goto done;
	rec->failed = (uint64_t)v;
	if (query_int(j, "SELECT count(*) FROM ops WHERE state=3", &v, err))
		goto done;
	rec->conflicts = (uint64_t)v;
	if (query_int(j, "SELECT coalesce((SELECT seq FROM sqlite_sequence "
		      "WHERE name='ops'),0)", &v, err))
		goto done;
	j->last_seq = (uint64_t)v;
	rc = 0;
done:
	for (i = 0; i < n; i++)
		free(need[i].path);
	free(need);
	return tx_end(j, rc, err);
}

static void jnl_free(struct jnl *j)
{
	int i;

	if (!j)
		return;
	for (i = 0; i < (int)j->ntouch; i++)
		free(j->touch[i].name);
	free(j->touch);
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(j->st[i]);
	if (j->db)
		sqlite3_close(j->db);
	if (j->lock_fd >= 0)
		close(j->lock_fd);
	pthread_cond_destroy(&j->work_cv);
	pthread_cond_destroy(&j->done_cv);
	pthread_cond_destroy(&j->idle_cv);
	pthread_mutex_destroy(&j->mu);
	free(j->path);
	free(j);
}

/* Connection settings (spec, section 2), in this order. */
static const char *const open_pragmas[] = {
	"PRAGMA page_size=2048",
	"PRAGMA locking_mode=EXCLUSIVE",
	"PRAGMA temp_store=MEMORY",
	"PRAGMA journal_size_limit=4194304",
	"PRAGMA foreign_keys=OFF",
	"PRAGMA wal_autocheckpoint=10000",
};

int jnl_open(const char *path, const struct jnl_opts *opts, struct jnl **out,
	     struct jnl_recovery *rec, struct err *err)
{
	struct jnl *j = NULL;
	struct jnl_recovery r0;
	pthread_condattr_t ca;
	int rc = -1, r, created = 0;

	*out = NULL;
	memset(&r0, 0, sizeof(r0));
	if (!rec)
		rec = &r0;
	memset(rec, 0, sizeof(*rec));
	if (!path || !*path)
		return err_set(err, ERR_INVAL, "journal: no path");
	j = calloc(1, sizeof(*j));
	if (!j)
		return oom(err);
	j->lock_fd = -1;
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->work_cv, &ca);
	pthread_cond_init(&j->done_cv, &ca);
	pthread_cond_init(&j->idle_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (opts)
		j->opts = *opts;
	if (j->opts.lease_ms <= 0)
		j->opts.lease_ms = 600000;
	if (j->opts.max_defer_ms <= 0)
		j->opts.max_defer_ms = 60000;
	if (j->opts.busy_timeout_ms <= 0)
		j->opts.busy_timeout_ms = 5000;
	j->path = strdup(path);
	if (!j->path) {
		oom(err);
		goto out;
	}
	if (take_lock(path, &j->lock_fd, err) || prepare_file(path, err))
		goto out;
	r = sqlite3_open_v2(path, &j->db, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_NOMUTEX, NULL);
	if (r != SQLITE_OK) {
		db_fail(j, r, "open", err);
		goto out;
	}
	sqlite3_extended_result_codes(j->db, 1);
	sqlite3_busy_timeout(j->db, j->opts.busy_timeout_ms);
	/* EXCLUSIVE before WAL: the WAL index then lives in heap memory. */
	for (size_t i = 0; i < sizeof(open_pragmas) / sizeof(open_pragmas[0]); i++)
		if (exec_sql(j, open_pragmas[i], "configure", err))
			goto out;
	if (exec_sql(j, j->opts.sync_full ? "PRAGMA synchronous=FULL" :
		     "PRAGMA synchronous=NORMAL", "configure", err))
		goto out;
	{
		sqlite3_stmt *s = NULL;
		const char *mode;

		r = sqlite3_prepare_v2(j->db, "PRAGMA journal_mode=WAL", -1, &s,
				       NULL);
		if (r == SQLITE_OK)
			r = sqlite3_step(s);
		if (r != SQLITE_ROW) {
			sqlite3_finalize(s);
			if ((r & 0xff) == SQLITE_NOTADB)
				err_set(err, ERR_INVAL, "journal: %s is not a "
					"durafs journal (not a database)", path);
			else
				db_fail(j, r, "enable WAL", err);
			goto out;
		}
		mode = (const char *)sqlite3_column_text(s, 0);
		if (!mode || strcmp(mode, "wal") != 0) {
			err_set(err, ERR_IO, "journal: %s: cannot enable WAL "
				"mode (got %s)", path, mode ? mode : "?");
			sqlite3_finalize(s);
			goto out;
		}
		sqlite3_finalize(s);
	}
	if (schema_setup(j, &created, err) || recover(j, rec, err))
		goto out;
	rec->created = created;
	j->next_claim = 0;
	/* Start with the WAL folded into the database: a small WAL, and the
	 * most space free for the next transactions (best effort). */
	sqlite3_exec(j->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	rc = 0;
out:
	if (rc) {
		if (err && j && j->db && err->code == ERR_IO &&
		    (sqlite3_errcode(j->db) & 0xff) == SQLITE_NOTADB)
			err_set(err, ERR_INVAL, "journal: %s is not a durafs "
				"journal (not a database)", path);
		jnl_free(j);
		return -1;
	}
	*out = j;
	return 0;
}

void jnl_shutdown(struct jnl *j)
{
	if (!j)
		return;
	lock(j);
	j->shutdown = 1;
	wake_all(j);
	unlock(j);
}

void jnl_wake_claimers(struct jnl *j)
{
	if (!j)
		return;
	lock(j);
	j->claim_wakes++;
	pthread_cond_broadcast(&j->work_cv);
	unlock(j);
}

void jnl_close(struct jnl *j)
{
	if (!j)
		return;
	lock(j);
	j->shutdown = 1;
	wake_all(j);
	while (j->waiters > 0)
		pthread_cond_wait(&j->idle_cv, &j->mu);
	touch_flush(j);
	/* Best effort: fold the WAL into the database and truncate it. */
	sqlite3_exec(j->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	unlock(j);
	jnl_free(j);
}
