/* durafs filesystem core (fs/fs.c and its helpers): the low-level FUSE
 * operations over the local view (remote listing + journal), the local cache
 * files, and the read path. It never speaks HTTP: it asks the backend for
 * listings and reads, and hands every mutation to the journal. */
#ifndef DURAFS_FS_H
#define DURAFS_FS_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "durafs/backend.h"
#include "durafs/err.h"
#include "durafs/journal.h"
#include "durafs/mopts.h"
#include "durafs/sched.h"

/*
 * What the mount shows and does (the user-visible contract)
 * ----------------------------------------------------------
 * - Names: every name a user passes is one path component of at most 255
 *   bytes (longer: ENAMETOOLONG). Regular files, directories and symbolic
 *   links exist; mknod and link give EPERM.
 * - Attributes: owner uid/gid options (default: the mounting user); modes
 *   file_mode / dir_mode (symlinks 0777). chmod and chown are accepted and
 *   ignored; atime is not kept; mtime is kept (remote metadata). st_nlink is
 *   1 for files, 2 for directories. The kernel may trust names and
 *   attributes for dir_cache_ttl (the life of the listing they came from);
 *   what this mount changes goes through the kernel, and remote changes
 *   found when a listing is fetched again are invalidated explicitly.
 * - Listings: the stored listing of a directory plus the journal's pending
 *   creations minus its pending removals. A directory's listing is fetched
 *   through every page on first use; after dir_cache_ttl (or once the
 *   change poller marked it stale) it is refetched in the background on
 *   access, the access waiting for that at most 2 s before the stored
 *   listing answers; one stored by an earlier mount, or with more than
 *   1000 entries, answers at once and is refreshed in the background. A
 *   listing that cannot be fetched gives EIO (never a short directory)
 *   unless a complete listing of that directory is stored: that one is
 *   then served whole and refetched in the background on access after
 *   another dir_cache_ttl (5 s when shorter); for one dir_cache_ttl after
 *   any failed listing (or a refetch not done within the 2 s), every
 *   stale complete listing answers at once. A
 *   fetch that a forget (a committed directory rename or rmdir) or an
 *   invalidation overtook is fetched again, never stored. The kernel may keep a
 *   directory's entries (FOPEN_CACHE_DIR) while the merged listing is
 *   unchanged, for at most half of dir_cache_ttl. With poll_interval, a
 *   Drive mount also follows the remote's change feed (fs_poll.h).
 * - Writes go to a whole local cache file at local-disk speed and are
 *   journaled on flush/release (uploaded after writeback_delay); opening an
 *   existing remote file for writing without O_TRUNC first fetches all of
 *   it (EIO if that fails). fsync waits until the file's ops are committed:
 *   0, or EIO (conflict, permanent failure, fsync_timeout; the change stays
 *   queued), ENOSPC / EDQUOT for the remote's quotas. sync_on_close makes
 *   close() wait the same way.
 * - Reads of clean remote files fetch ranges on demand into a sparse cache
 *   file, pinned to the version seen at open, with read-ahead growing to
 *   16 MiB for sequential reads; files below chunk_size come whole in one
 *   request. Clean cached data is evicted LRU within cache_size and
 *   min_free_space; dirty data never. A full cache file system gives ENOSPC
 *   to writers (what was journaled before stays).
 * - statfs reports the cache file system's blocks (what can still be
 *   written), a large inode count, and namemax 255.
 * - Extended attributes, read-only: user.durafs.state (clean, dirty,
 *   uploading, committed, conflict, error), user.durafs.generation,
 *   user.durafs.md5 (hex, asks the remote), and on the root user.durafs.ctl
 *   (the control socket). setxattr/removexattr: EPERM for user.durafs.*,
 *   ENOTSUP otherwise.
 * - rename supports RENAME_NOREPLACE; RENAME_EXCHANGE gives EINVAL.
 * - `ro` makes every mutation EROFS.
 */

struct fs;

struct fs_config {
	struct be *be;              /* borrowed: outlives the fs */
	struct jnl *jnl;            /* borrowed */
	struct sched *sched;        /* borrowed; its event fn is set by fs_new
				     * and cleared by fs_free */
	const struct mopts *mo;     /* borrowed */
	const char *files_dir;      /* cache files (cache_dir/files), 0700, exists */
	const char *ctl_path;       /* control socket path, shown as the root's
				     * xattr user.durafs.ctl so the CLI finds it */
};

/* Create the filesystem state (and its two background threads: kernel
 * cache invalidations, listing refreshes, eviction). Does not touch the
 * mountpoint. Returns 0 and *out, or -1 with *err. */
int fs_new(const struct fs_config *cfg, struct fs **out, struct err *err);

/* The operations table; pass the struct fs as userdata to
 * fuse_session_new. */
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);

/* The session, for kernel cache invalidation (notify_inval_*). Set after
 * fuse_session_new, before the loop starts. Thread-safe. */
void fs_set_session(struct fs *fs, struct fuse_session *se);

/* Free after the session loop has ended and the scheduler has stopped
 * (sch_stop: no event callback may still be running), before sch_free.
 * Stops the background threads; pending work stays in the journal. */
void fs_free(struct fs *fs);

/* Read-cache use, for `durafs status`. Thread-safe. */
struct fs_cache_stats {
	uint64_t clean_bytes;       /* present clean cached bytes */
	uint64_t clean_files;
	uint64_t dirty_bytes;       /* local content not yet committed */
	uint64_t dirty_files;
	uint64_t limit;             /* cache_size */
	uint64_t evicted_bytes;     /* since mount */
};
void fs_cache_stats(struct fs *fs, struct fs_cache_stats *out);

#endif
