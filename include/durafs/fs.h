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

struct fs;

struct fs_config {
	struct be *be;              /* borrowed: outlives the fs */
	struct jnl *jnl;            /* borrowed */
	struct sched *sched;        /* borrowed; its event fn is set by fs_new */
	const struct mopts *mo;     /* borrowed */
	const char *files_dir;      /* cache files (cache_dir/files), 0700, exists */
	const char *ctl_path;       /* control socket path, shown as the root's
				     * xattr user.durafs.ctl so the CLI finds it */
};

/* Create the filesystem state. Does not touch the mountpoint. */
int fs_new(const struct fs_config *cfg, struct fs **out, struct err *err);

/* The operations table; pass the struct fs as userdata to
 * fuse_session_new. */
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);

/* The session, for kernel cache invalidation (notify_inval_*). Set after
 * fuse_session_new, before the loop starts. */
void fs_set_session(struct fs *fs, struct fuse_session *se);

/* Free after the session loop has ended. */
void fs_free(struct fs *fs);

/* Read-cache use, for `durafs status`. */
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
