/* durafs filesystem core, private: the state shared by fs/fs.c (FUSE
 * operations), fs/fs_dir.c (listings, the merged view, pending renames),
 * fs/fs_file.c (open files, the read cache, eviction) and fs/fs_bg.c
 * (background tasks, scheduler events). Not a public interface. */
#ifndef DURAFS_FS_I_H
#define DURAFS_FS_I_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "durafs/ctl.h"
#include "durafs/fcache.h"
#include "durafs/fs.h"
#include "durafs/inode.h"
#include "durafs/view.h"

#define FS_TAG "fs"
#define FS_NAME_MAX 255
#define FS_REMOTE_MAX 256       /* be_version_format text: "g<gen>.<mg>:<id>" */
#define FS_OF_BUCKETS 256
#define FS_MAX_WRITE (1024 * 1024)  /* largest write request (max_write) */
#define FS_BIG_DIR 1000         /* entries: more than one listing page */
#define FS_BIG_NOTIFY 10000     /* refetches compare at most this many */
#define FS_STALE_WAIT_MS 2000   /* a stale listing's refetch is waited for
				 * at most this long before the stored
				 * listing answers */
#define FS_FETCH_TRIES 4        /* fetches overtaken by a forget, at most */
#define FS_STALE_RETRY_MS 5000  /* a stale listing whose refetch failed is
				 * refetched on access after this (or the
				 * TTL when shorter) */

/* What a path is in the merged view (a self-contained copy of a
 * view_ent). */
struct fs_info {
	int type;                   /* enum jnl_type */
	uint64_t size;
	int64_t mtime_ns;
	uint64_t fid;               /* 0: untracked */
	int local;                  /* attributes from the journal */
	char remote[FS_REMOTE_MAX]; /* "" when none */
	unsigned flags;             /* BE_EF_* of the remote entry shown */
};

/* In-memory state of one directory's stored listing. */
struct fs_dstate {
	struct fs_dstate *next;     /* hash chain, protected by fs->dir_lock */
	char *path;
	int known;                  /* complete/fetched_ms loaded */
	int inherited;              /* the listing was stored by an earlier
				     * mount: once stale it still answers
				     * while a background refresh runs (a
				     * listing of this mount is refetched
				     * on access after the TTL, unless it is
				     * bigger than FS_BIG_DIR) */
	int complete;
	int64_t fetched_ms;
	size_t count;               /* entries of the last listing */
	int fetching;               /* a foreground fetch runs; others wait
				     * on dir_cv */
	int collecting;             /* fetches in flight (fixups are kept) */
	int refresh_queued;
	/* Bumped by every forget, invalidation or stale mark of this
	 * listing: a fetch that began under another epoch may predate the
	 * change and is neither stored nor taken as complete. */
	uint64_t epoch;
	/* Commits that landed while a fetch ran: re-applied after it stores
	 * its (possibly older) listing. */
	struct fs_fixup *fixups;
	/* The kernel's readdir cache of this directory (fs_dir_kcache): a
	 * hash of the listing it was last filled from, 0 for none, and when
	 * (its entries' timeouts run from then). */
	uint64_t kc_hash;
	int64_t kc_ms;
};

/* The resolve cache (fs_rc.c): fs_resolve's answer per path. */
struct fs_rc_ent;
struct fs_rc {
	pthread_mutex_t mu;
	struct fs_rc_ent **b;       /* hash by path, protected by mu */
	size_t n;                   /* protected by mu */
	_Atomic uint64_t hits, misses;  /* fs_resolve's use of it */
	_Atomic uint64_t whole_hits;    /* opens answered by fs_rc_whole */
};

struct fs_fixup {
	struct fs_fixup *next;
	char *name;
	int del;                    /* 1: entry removed, else e */
	struct jnl_entry e;         /* owned strings */
};

/* A rename the remote has done (for FS_REN_RECENT_MS after its commit). */
#define FS_REN_RECENT 64
#define FS_REN_RECENT_MS 60000
struct fs_ren_done {
	char *to;
	int64_t at;                 /* fs_now_ms() of the commit */
};

/* One pending remote rename (the remote has `from` what we show at `to`). */
struct fs_ren {
	uint64_t seq;
	uint64_t fid;
	char *from;
	char *to;
};

/* One open regular file: shared by every handle of the inode. */
struct fs_ofile {
	struct fs_ofile *next;      /* bucket chain, protected by fs->of_lock */
	uint64_t ino;
	unsigned refs;              /* protected by fs->of_lock */
	pthread_rwlock_t wlock;     /* writes and truncates of the content hold
				     * it shared, a snapshot copy exclusive
				     * (fs_of_freeze); never taken with mu */
	pthread_mutex_t mu;         /* guards everything below */
	pthread_cond_t cv;          /* init done, fetch progress */
	int state;                  /* 0 initialising, 1 ready, < 0 -errno */
	uint64_t fid;
	int fd;                     /* the cache file, O_RDWR */
	char *cache_name;
	int whole;                  /* fd holds the complete current content */
	int local;                  /* the content is local (dirty or new):
				     * size comes from the cache file */
	int modified;               /* written since the last jnl_write */
	unsigned flags;             /* BE_EF_* of the remote entry at open:
				     * READONLY refuses writes, SIZE_UNKNOWN
				     * (an export) is read whole at open */
	unsigned writers;           /* handles open for writing */
	int copying;                /* fs_of_freeze's first pass runs: */
	uint64_t cp_lo, cp_hi;      /* the range changed meanwhile */
	int64_t mtime_ns;
	char remote[FS_REMOTE_MAX]; /* version being read ("" when local) */
	char *rpath;                /* remote path to read from */
	uint64_t rsize;             /* remote size */
	struct fc_ra ra;
	int map_empty;              /* the read-cache map holds nothing for
				     * cache_name (a name this open made, no
				     * fetch yet): reads skip the map lookups */
	uint64_t p_off, p_end;      /* a range known present in the cache
				     * file (no map lookup needed) */
	int fetching;               /* one fetch at a time */
	uint64_t f_off, f_end, f_done;
	uint64_t f_want;            /* smallest end a waiting reader needs */
};

/* A queued background task. */
enum fs_task_kind {
	FS_T_INVAL_INODE = 1,       /* ino */
	FS_T_INVAL_ENTRY = 2,       /* parent ino + name */
	FS_T_REFRESH = 3,           /* path: refetch a stale listing */
	FS_T_EVICT = 4,             /* bring the cache within its limits */
};
struct fs_task {
	struct fs_task *next;
	int kind;
	uint64_t ino;
	char *name;                 /* entry name or directory path */
};

struct fs_bg_arg {
	struct fs *fs;
	int housekeeper;            /* runs the periodic work too */
};

struct fs {
	struct be *be;
	struct jnl *jnl;
	struct sched *sched;
	const struct mopts *mo;
	char *files_dir;
	char *ctl_path;
	struct ino_table *ino;
	struct fuse_session *_Atomic se;
	uid_t uid;
	gid_t gid;
	mode_t file_mode, dir_mode;
	int ro;
	int64_t ttl_ms;
	double attr_timeout;        /* entry/attr timeout for the kernel (s) */
	int64_t mount_ns;           /* the root's times */
	struct fc_params fcp;

	/* Namespace mutations (create, mkdir, unlink, rmdir, rename,
	 * symlink) run one at a time: check + journal + inode update. */
	pthread_mutex_t ns_lock;

	pthread_mutex_t of_lock;
	struct fs_ofile *of[FS_OF_BUCKETS];  /* protected by of_lock */
	size_t of_count;                     /* protected by of_lock */

	/* Held by file opens while they decide what their cache file holds,
	 * and by eviction while it picks and deletes unused cache files. */
	pthread_mutex_t cache_lock;

	pthread_mutex_t dir_lock;
	pthread_cond_t dir_cv;
	struct fs_dstate **dirs;    /* hash by path, protected by dir_lock */
	size_t dir_cap, dir_count;
	int64_t list_fail_ms;       /* when a listing last failed or a stale
				     * one's refetch took longer than
				     * FS_STALE_WAIT_MS (0: the last one
				     * worked): stale listings then answer
				     * at once; protected by dir_lock */

	pthread_mutex_t ren_lock;
	struct fs_ren *ren;         /* seq order, protected by ren_lock */
	size_t nren, capren;
	struct fs_ren_done recent[FS_REN_RECENT];  /* protected by ren_lock */

	/* Background workers. */
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_cv;
	struct fs_task *tq_head, *tq_tail;   /* protected by bg_lock */
	int bg_stop;                         /* protected by bg_lock */
	int evict_queued;                    /* protected by bg_lock */
	uint64_t *rewrite;                   /* fids whose jnl_write failed */
	size_t nrewrite, caprewrite;         /* protected by bg_lock */
	pthread_t bg[2];
	struct fs_bg_arg bgarg[2];
	int nbg;

	/* Open directory handles (struct fs_dh in fs.c). */
	pthread_mutex_t dh_lock;
	struct fs_dh *dh_head;               /* protected by dh_lock */


	/* fs_resolve's answers (fs_rc.c); NULL: every resolve reads the
	 * journal. */
	struct fs_rc *rc;

	/* Remote change polling (fs_poll.c), NULL when off. */
	struct fs_poll *poll;

	/* Read-cache accounting (approximate between recounts). */
	_Atomic uint64_t cache_bytes;
	_Atomic uint64_t evicted_bytes;
	_Atomic uint64_t fetched_since_check;

	/* Writes taken from memory and spliced from a pipe (logged at
	 * debug level at unmount). */
	_Atomic uint64_t wr_copied;
	_Atomic uint64_t wr_spliced;
};

/* ---- fs.c ---------------------------------------------------------------- */
int64_t fs_now_ns(void);
int64_t fs_now_ms(void);
/* Negative errno for a struct err at the FUSE boundary (never 0). */
int fs_errno(const struct err *e);
/* The stat of a view entry for inode ino (an open file's live size and
 * mtime win). */
void fs_fill_attr(struct fs *fs, uint64_t ino, const struct fs_info *in, struct stat *st);
/* Tag of the content the kernel may cache for a file (keep_cache): the
 * remote version when the content is the remote's, else the fid. */
uint64_t fs_content_tag(const char *remote, uint64_t fid);
/* FNV-1a of a string (the hash of the directory-state and resolve-cache
 * tables). */
uint64_t fs_str_hash(const char *s);

/* ---- fs_dir.c ------------------------------------------------------------ */
/* Resolve a mount path through the merged view: 0 and *out, -ENOENT, or
 * another negative errno (-EIO when a listing cannot be fetched). The root
 * ("") is a directory. */
int fs_resolve(struct fs *fs, const char *path, struct fs_info *out);
/* Make sure dir's stored listing can answer (fetching it when missing or
 * incomplete; a stale one answers and is refreshed in the background). */
int fs_dir_ensure(struct fs *fs, const char *dir);
/* Refetch dir's listing now (background refresh); notifies the kernel of
 * entries that changed. */
int fs_dir_refresh(struct fs *fs, const char *dir);
/* A journal change below a directory: 0, or -1 and *err. */
typedef int (*fs_dir_change_fn)(void *ud, struct err *err);
/* Run change and forget the in-memory state of dir and everything below
 * it as one step (under dir_lock): a listing fetched before the change is
 * never stored after it (fetches in flight there are not stored). The
 * state is dropped whatever change returns; its result is returned. */
int fs_dir_change(struct fs *fs, const char *dir, fs_dir_change_fn change, void *ud,
		  struct err *err);
/* fs_dir_change with jnl_dir_forget: no fetch stores, and no access
 * loads, a listing below dir in between. 0, or -1 and *err when the
 * journal failed (the in-memory state is dropped anyway). */
int fs_dir_forget(struct fs *fs, const char *dir, struct err *err);
/* Mark dir's stored listing stale (the remote changed it): the next access
 * refetches it like a listing past its TTL, and while that fails the
 * stored entries still answer. A fetch in flight is not stored. */
void fs_dir_invalidate(struct fs *fs, const char *dir);
/* Record a committed remote change of dir/name in the stored listing (and
 * for a fetch in flight). e NULL: the entry is gone. */
void fs_dir_note(struct fs *fs, const char *dir, const char *name,
		 const struct jnl_entry *e);
/* The merged listing of dir: *v (malloc'd, sorted) with strings in *names
 * (one malloc'd block); free both. */
struct fs_dsnap_ent {
	size_t name_off;
	int type;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t fid;
	int local;
	unsigned flags;             /* BE_EF_* of the remote entry shown */
};
int fs_dir_list(struct fs *fs, const char *dir, struct fs_dsnap_ent **v, size_t *n,
		char **names);
/* Whether the kernel may keep its readdir cache of dir for a handle that
 * shows v[0..n) (strings in names): 1 when that cache was filled from the
 * very same listing and the entries it handed out are still within their
 * timeout; else 0, and the handle (opened without keep_cache, so the
 * kernel drops its cache) is noted as the one that refills it.
 * Thread-safe. */
int fs_dir_kcache(struct fs *fs, const char *dir, const struct fs_dsnap_ent *v, size_t n,
		  const char *names);
/* Pending renames: add one, drop one by seq, translate a path. */
int fs_ren_add(struct fs *fs, uint64_t seq, uint64_t fid, const char *from, const char *to);
void fs_ren_drop(struct fs *fs, uint64_t seq);
char *fs_remote_path(struct fs *fs, const char *path);
/* 1 when path lies at or below the destination of one of our renames that
 * is pending or committed within the last FS_REN_RECENT_MS: its remote
 * objects were (or are being) rewritten by us, so a remote version that
 * vanished there moved, with the same content. */
int fs_ren_recent(struct fs *fs, const char *path);
/* Load the pending renames from the journal (mount). */
int fs_ren_load(struct fs *fs);
/* Drop renames whose op is gone from the journal (resolved). */
void fs_ren_reconcile(struct fs *fs);
/* Whether clean fid f still has unfinished ops (view_active_fn). */
int fs_active(void *ud, const struct jnl_file *f);
void fs_dirs_free(struct fs *fs);
/* The inode the kernel knows for path: 0 and *ino, or -ENOENT. */
int fs_path_ino(struct fs *fs, const char *path, uint64_t *ino);

/* ---- fs_file.c ----------------------------------------------------------- */
/* A handle on inode ino's open file, initialised from path on first use
 * (path may be NULL when the file is known to be open already). writable:
 * the content is made whole locally (fetched) before returning. trunc:
 * O_TRUNC. 0 and *out (release with fs_of_put), or a negative errno. */
int fs_of_get(struct fs *fs, uint64_t ino, const char *path, int writable, int trunc,
	      struct fs_ofile **out);
/* A new local file just created at path with fid and fd (ownership of fd
 * moves to the open file). */
int fs_of_new(struct fs *fs, uint64_t ino, uint64_t fid, int fd, const char *cache_name,
	      int64_t mtime_ns, struct fs_ofile **out);
/* The open file of ino if any, with a reference; NULL otherwise. */
struct fs_ofile *fs_of_find(struct fs *fs, uint64_t ino);
void fs_of_put(struct fs *fs, struct fs_ofile *of);
/* Count a handle open for writing in (+1) or out (-1). */
void fs_of_writer(struct fs_ofile *of, int delta);
/* Call every open file of fid (a reference held during fn). */
void fs_of_each_fid(struct fs *fs, uint64_t fid, void (*fn)(struct fs *, struct fs_ofile *, void *),
		    void *ud);
/* Make [off, off+size) readable: returns how many bytes the read gets
 * (0 at the end), found in the cache file at off, or (cache file system
 * full) in a malloc'd *mem the caller frees; or a negative errno. */
ssize_t fs_of_read(struct fs *fs, struct fs_ofile *of, size_t size, off_t off, char **mem);
/* Background read-ahead, called by a FUSE thread after it answered a read
 * of inode ino: when the open file is read sequentially and the reader is
 * within one read-ahead window of the end of what is local, fetch the next
 * window now (on this thread), so the reader finds it local. Failures are
 * left to the reader's own fetch. Thread-safe. */
void fs_of_readahead(struct fs *fs, uint64_t ino);
/* Write size bytes of buf at off: bytes written (size) or a negative
 * errno. Thread-safe. */
ssize_t fs_of_write(struct fs *fs, struct fs_ofile *of, const char *buf, size_t size,
		    off_t off);
/* The same write with its size bytes in a pipe (FUSE's splice read):
 * spliced into the cache file (read and written where the cache file
 * system cannot splice). size, the pipe drained of exactly size bytes; or
 * a negative errno, the pipe left holding an unknown part of them (the
 * caller discards it). Thread-safe. */
ssize_t fs_of_write_pipe(struct fs *fs, struct fs_ofile *of, int pipe, size_t size, off_t off);
/* Truncate to size. */
int fs_of_truncate(struct fs *fs, struct fs_ofile *of, uint64_t size);
/* fallocate(2) on the open file's content, done on its cache file: mode 0
 * (allocate, extending the size with zeros), FALLOC_FL_KEEP_SIZE (allocate
 * only: the content is unchanged), FALLOC_FL_PUNCH_HOLE|KEEP_SIZE and
 * FALLOC_FL_ZERO_RANGE (the range reads as zeros: a change uploaded like a
 * write). Anything else -EOPNOTSUPP. 0 or a negative errno (the cache
 * file system's, e.g. ENOSPC). Thread-safe. */
int fs_of_fallocate(struct fs *fs, struct fs_ofile *of, int mode, uint64_t off, uint64_t len);
/* sched_freeze_fn: copy fid's content into dst as it is at one moment, the
 * writes of fid's open files held only while what changed during a first
 * unlocked pass is copied again (see sch_set_freeze_fn). 1 copied, 0
 * nothing to copy (fid not open for writing, its content not whole in the
 * cache, or a copy would leave less than min_free_space free on the cache
 * file system), -1 with err. Thread-safe; never called with of->mu held. */
int fs_of_freeze(void *fs, uint64_t fid, int dst, struct err *err);
/* Hand modified content to the journal (jnl_write, writeback delay or
 * delay_ms when >= 0). 0 or a negative errno. */
int fs_of_commit(struct fs *fs, struct fs_ofile *of, int64_t delay_ms);
/* Live size and mtime of an open file when its content is local: 1 and
 * the values, 0 when the attributes come from the view. */
int fs_of_attr(struct fs_ofile *of, uint64_t *size, int64_t *mtime_ns);
/* New cache file name (random) into buf. */
void fs_cache_name_new(char *buf, size_t len);
/* Evict clean cached data until `need` bytes were freed (0: as the limits
 * require). Returns bytes freed. */
uint64_t fs_cache_evict(struct fs *fs, uint64_t need);
/* A fid's content now equals remote version `base`: the cache file is
 * entered in the read-cache map (commit of an upload). */
void fs_cache_committed(struct fs *fs, const struct jnl_file *f);
/* A conflict left the remote version at f's path: drop the local copy of
 * the content so reads see the remote. */
void fs_cache_conflict(struct fs *fs, const struct jnl_file *f);
int fs_cache_path(struct fs *fs, const char *name, char *buf, size_t len);
/* Drop the clean cached data of fid (cache file `name`, `bytes` present by
 * the map) now: the file is deleted and its map forgotten. -EBUSY when an
 * open file uses it, -EAGAIN when fid is dirty or has no remote base
 * (dirty data is never dropped); 0 otherwise (also when nothing was
 * there). Thread-safe (takes cache_lock). */
int fs_cache_drop_one(struct fs *fs, uint64_t fid, const char *name, uint64_t bytes);

/* ---- fs_cache.c ---------------------------------------------------------- */
/* The control-socket command "cache" (ctl_handler_fn; ud is the struct fs):
 * op "warm" | "status" | "drop" over "paths" (mount-relative). Routed by
 * fs_new (ctl_route_add) and unrouted by fs_free. */
void fs_cache_ctl(void *ud, struct ctl_conn *c, const json_t *req);

/* ---- fs_rc.c ------------------------------------------------------------- */
/* An empty resolve cache: 0 and *out (free with fs_rc_free), or -ENOMEM. */
int fs_rc_new(struct fs_rc **out);
void fs_rc_free(struct fs_rc *rc);
/* path's entry when it was stored under journal generation gen: 1 and the
 * info, the directory state and the epoch it was stored with; else 0 (an
 * entry of another generation is dropped). Whether that directory state
 * still answers unchanged is the caller's check. Thread-safe. */
int fs_rc_get(struct fs_rc *rc, const char *path, uint64_t gen, struct fs_info *info,
	      struct fs_dstate **d, uint64_t *ep);
/* Store what fs_resolve found for path after reading it under journal
 * generation gen (taken before the reads) from directory state d at epoch
 * ep. Beyond FS_RC_MAX entries the cache is emptied first; out of memory,
 * nothing is stored. Thread-safe. */
void fs_rc_put(struct fs_rc *rc, const char *path, uint64_t gen, const struct fs_info *info,
	       struct fs_dstate *d, uint64_t ep);
/* Note on path's entry (if it still shows fid at remote version remote)
 * that the clean file fid, version remote of size bytes, was found whole
 * in cache file cache_name by reads under journal generation gen (taken
 * before them). Thread-safe; out of memory nothing is noted. */
void fs_rc_note_whole(struct fs_rc *rc, const char *path, uint64_t gen, uint64_t fid,
		      const char *cache_name, const char *remote, uint64_t size);
/* 1 and the cache file's name in name[len] when such a note for fid,
 * remote and size was made under journal generation gen; else 0.
 * Thread-safe. */
int fs_rc_whole(struct fs_rc *rc, const char *path, uint64_t gen, uint64_t fid,
		const char *remote, uint64_t size, char *name, size_t len);

/* ---- fs_bg.c ------------------------------------------------------------- */
int fs_bg_start(struct fs *fs);
void fs_bg_stop(struct fs *fs);
void fs_bg_inval_inode(struct fs *fs, uint64_t ino);
void fs_bg_inval_entry(struct fs *fs, uint64_t parent, const char *name);
/* Invalidate what the kernel caches about path (entry and inode). */
void fs_bg_inval_path(struct fs *fs, const char *path);
void fs_bg_refresh(struct fs *fs, const char *dir);
/* fs_bg_refresh ahead of the queued tasks (a user waits for it). */
void fs_bg_refresh_first(struct fs *fs, const char *dir);
void fs_bg_evict(struct fs *fs);
/* A jnl_write that failed (ENOSPC on the journal): retried later. */
void fs_bg_rewrite(struct fs *fs, uint64_t fid);
/* Scheduler events (sched_event_fn). */
void fs_on_event(void *ud, const struct sched_event *ev);

#endif
