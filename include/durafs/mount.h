/* durafs mount assembly (fs/mount.c): the pieces a mount is made of --
 * credentials, HTTP client, backend, cache dir, journal, scheduler -- built
 * from the mount options, plus what runs over them without the kernel:
 * flush (with progress and the list of what failed), status, and the
 * control-socket commands. Used by the daemon (`durafs mount`) and by
 * `durafs sync --flush --cache-dir` (no daemon). */
#ifndef DURAFS_MOUNT_H
#define DURAFS_MOUNT_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "durafs/backend.h"
#include "durafs/ctl.h"
#include "durafs/err.h"
#include "durafs/journal.h"
#include "durafs/mopts.h"
#include "durafs/sched.h"

struct auth_provider;
struct http;
struct fs;

/* Keys of the journal's meta table that a mount writes, so that `sync
 * --flush --cache-dir` can rebuild the backend without the daemon and a
 * cache dir cannot be reused for another source. */
#define MNT_META_SOURCE "mount.source"
#define MNT_META_ENDPOINT "mount.endpoint"       /* explicit -o endpoint, or absent */
#define MNT_META_TOKEN_FILE "mount.token_file"
#define MNT_META_CREDENTIALS "mount.credentials"
#define MNT_META_NO_AUTH "mount.no_auth"         /* "1" when -o no_auth */
#define MNT_META_CHUNK "mount.chunk_size"
#define MNT_META_SMALL_MAX "mount.small_file_max"
#define MNT_META_WORKERS "mount.upload_workers"
#define MNT_META_CONFLICT "mount.conflict"       /* "keep-both" | "fail" */
#define MNT_META_MOUNTPOINT "mount.mountpoint"   /* last mountpoint */
#define MNT_META_DOCS "mount.docs"               /* "export" | "hide" (Drive) */
#define MNT_META_DELETE "mount.delete"           /* "trash" | "permanent" (Drive) */
#define MNT_META_LAYOUT "mount.layout"           /* "plain" | "colab" (Drive) */
#define MNT_META_DRIVE_ROOT "mount.drive_root"   /* resolved root folder id (Drive) */
#define MNT_META_DRIVE_SHARED "mount.drive_root_drive" /* its shared drive, or "" */
#define MNT_META_COLAB "mount.colab_drives"     /* layout=colab: drive ids (layout_state_save) */

/* Every part of a mount. Fields are set by the calls below in order and
 * released by mnt_release in reverse; any may be NULL. Thread-safety: after
 * setup, the struct is only read, except `fs` (set once by the daemon
 * before the control socket starts) and `stopping`. */
struct mnt {
	const struct mopts *mo;     /* borrowed: outlives the mnt */
	char *files_dir;            /* cache_dir/files */
	char *journal_path;         /* cache_dir/journal.db */
	char *ctl_path;             /* cache_dir/ctl.sock */
	char endpoint[1024];        /* resolved API endpoint */
	int emulated;               /* endpoint from STORAGE_EMULATOR_HOST
				     * (gs://) or DURAFS_DRIVE_ENDPOINT (drive:) */
	int no_auth;                /* no Authorization header is sent */
	char *auth_kind;            /* token source kind ("none" when no_auth) */
	struct auth_provider *auth;
	struct http *http;
	struct be *be;
	struct jnl *jnl;
	struct jnl_recovery rec;
	struct sched *sched;
	struct fs *fs;              /* the daemon's filesystem, or NULL */
	pid_t pid;
	int64_t started_ms;         /* wall clock */
	/* Set by the caller before mnt_journal_open when mnt_check found the
	 * remote unreachable (mnt_unreachable): the mount then goes on from
	 * what an earlier mount of the same source stored. */
	int offline;
	atomic_int stopping;        /* the daemon is going down */
	/* What the control command "unmount" calls (the daemon sets it; NULL:
	 * the command is refused). Runs on a control thread. */
	int (*unmount_fn)(void *ud, struct err *err);
	void *unmount_ud;
};

/* Derive the paths (cache_dir/files, journal.db, ctl.sock) and the
 * endpoint from mo (borrowed): gcs_endpoint for gs://, drive_endpoint for
 * drive: (whose source is validated here: ERR_INVAL naming the problem).
 * Touches nothing on disk. */
int mnt_init(struct mnt *m, const struct mopts *mo, struct err *err);

/* Create the cache dir (and missing parents) 0700 and files/ in it; an
 * existing cache dir must be a directory owned by us (its mode is tightened
 * to 0700). */
int mnt_cache_dir_create(struct mnt *m, struct err *err);

/* Credentials (none when no_auth, or when the endpoint comes from
 * STORAGE_EMULATOR_HOST / DURAFS_DRIVE_ENDPOINT and neither token_file nor
 * credentials is given; scope devstorage for gs://, drive for drive:), the
 * HTTP client and the backend for mo->source (gcs_new or drive_new, with
 * -o docs= and delete=). Sends no request. ERR_AUTH names what was tried
 * when no credentials are found. */
int mnt_remote_open(struct mnt *m, struct err *err);

/* be_check: the remote answers, our credentials work, the bucket (or the
 * Drive root folder) exists.
 * The message says which of them failed, in one line. */
int mnt_check(struct mnt *m, struct err *err);

/* 1 when e (from mnt_check) says the remote could not be reached rather
 * than refused us: ERR_NET, ERR_TIMEOUT, ERR_CANCELED (a deadline of the
 * caller), or an HTTP 5xx after retries. 0 for everything else (ERR_AUTH,
 * ERR_NOTFOUND: a missing bucket or folder, ERR_PERM, a malformed reply). */
int mnt_unreachable(const struct err *e);

/* Open the journal (must_exist: it must be there already, for `sync
 * --flush --cache-dir`). A journal held by a running mount fails with
 * ERR_IO sys_errno EBUSY "cache dir ... is in use by another mount". For a
 * mount (!must_exist), a journal that recorded another source is refused
 * (ERR_INVAL) and the options are recorded in its meta table; on Drive
 * (layout plain) so is the root folder id once resolved (by mnt_check).
 * With m->offline, the journal must exist already and have recorded this
 * source (a mount of it reached the remote before): else ERR_NOTFOUND and
 * nothing is created or recorded; a stored Drive root id is given to the
 * backend (drive_root_restore), so nothing needs the remote to start. */
int mnt_journal_open(struct mnt *m, int must_exist, struct err *err);

/* Fill the options a journal recorded into *mo (defaults first, then the
 * recorded source, endpoint, credentials paths, chunk size, workers,
 * conflict mode, Drive docs and delete modes). mo->cache_dir is set to cache_dir. The journal must be
 * open (m->jnl) -- m->mo is not used. */
int mnt_meta_load(struct jnl *j, const char *cache_dir, struct mopts *mo, struct err *err);

/* For a command run on a cache dir rather than a mountpoint (`durafs status
 * DIR`, `durafs sync --flush --cache-dir DIR`): dir made absolute into
 * *abs (malloc'd), its journal opened into *j and the options its mounts
 * recorded loaded into *mo (mnt_meta_load; the caller zeroed *mo and
 * releases it, closes *j and frees *abs whatever the result). -1 with *err
 * and *j NULL when there is no journal in dir (ERR_NOTFOUND), a running
 * mount holds it (ERR_IO, sys_errno EBUSY, "... in use by a running mount:
 * use `busy_cmd`"), or it cannot be opened or read. err must not be NULL. */
int mnt_cache_dir_open(const char *dir, const char *busy_cmd, char **abs, struct jnl **j,
		       struct mopts *mo, struct err *err);

/* Create and start the scheduler over the journal and backend. */
int mnt_sched_start(struct mnt *m, struct err *err);

/* Flush progress: called about every 200 ms and once at the end. Returns
 * non-zero to stop waiting (the flush then fails with ERR_CANCELED; nothing
 * is lost, the changes stay queued). */
typedef int (*mnt_progress_fn)(void *ud, const struct jnl_progress *p);

/* Wait until every op appended before the call is committed (0), or until
 * nothing more can progress (-1, ERR_CONFLICT/the first failure), or
 * timeout_ms passes (< 0: none; ERR_TIMEOUT, the message naming the first
 * paths still waiting and the last error of one retried), or fn asks to stop
 * (ERR_CANCELED). On -1 with a failure, *failed (when not NULL) gets a new
 * JSON array describing every failed or conflicting op the flush covered:
 * {"seq","op","path","path2"?,"state":"failed"|"conflict","error":code name,
 * "reason":message,"copy"?: conflict copy path}. Ops stay queued whatever
 * the result. */
int mnt_flush(struct mnt *m, int64_t timeout_ms, mnt_progress_fn fn, void *ud,
	      json_t **failed, struct err *err);

/* The status object (`durafs status --json`; keys documented in
 * docs/mount.md). New reference, or NULL (out of memory). */
json_t *mnt_status(struct mnt *m);

/* Send failed ops back to the queue (jnl_retry) and drop acknowledged
 * conflicts (jnl_resolve of every op in conflict: their local version is
 * already committed as the conflict copy). Counts in *retried / *resolved
 * (may be NULL). */
int mnt_retry_failed(struct mnt *m, uint64_t *retried, struct err *err);
int mnt_ack_conflicts(struct mnt *m, uint64_t *resolved, struct err *err);

/* The control-socket handler (ctl_handler_fn) over m: commands "flush"
 * {"timeout_ms":N}, "status", "retry", "ack_conflicts", "unmount", "ping".
 * Replies are described in docs/mount.md. */
void mnt_ctl_handler(void *ud, struct ctl_conn *c, const json_t *req);

/* Stop the scheduler, close the journal, free the backend, the HTTP
 * client and the credentials; free the paths. The daemon frees its fs
 * first. Safe on a zeroed or partly built struct. */
void mnt_release(struct mnt *m);

/* Name of an op kind ("write", "mkdir", ...). */
const char *mnt_op_name(int kind);

#endif
