/* durafs filesystem core: the low-level FUSE operations. Each handler maps
 * an inode to a path (inode table), resolves it through the merged view,
 * hands mutations to the journal and answers exactly once, with a positive
 * errno at the FUSE boundary. Contract in durafs/fs.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"
#include "durafs/fs_poll.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"

/* A file handle is the shared open file's address with bit 0 set when
 * this open may write (nothing to allocate, so nothing to leak when the
 * kernel never releases it). */
static uint64_t fh_make(struct fs_ofile *of, int writable)
{
	return (uint64_t)(uintptr_t)of | (writable ? 1u : 0u);
}

static struct fs_ofile *fh_of(const struct fuse_file_info *fi)
{
	return (struct fs_ofile *)(uintptr_t)(fi->fh & ~(uint64_t)1);
}

static int fh_writable(const struct fuse_file_info *fi)
{
	return (int)(fi->fh & 1);
}

/* A directory handle: the merged listing taken at opendir (and again at
 * offset 0 once read), so offsets stay stable while it is read. Handles
 * are listed in the fs so that those the kernel never released are freed
 * with it. */
struct fs_dh {
	struct fs_dh *prev, *next;  /* protected by fs->dh_lock */
	struct fs_dsnap_ent *v;
	size_t n;
	char *names;
	char *path;
	int served;
};

static const char XA_STATE[] = "user.durafs.state";
static const char XA_GEN[] = "user.durafs.generation";
static const char XA_MD5[] = "user.durafs.md5";
static const char XA_CTL[] = "user.durafs.ctl";
static const char XA_PREFIX[] = "user.durafs.";

/* ---- helpers --------------------------------------------------------------- */

int64_t fs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t fs_now_ms(void)
{
	return fs_now_ns() / 1000000;
}

int fs_errno(const struct err *e)
{
	int r = err_to_errno(e);

	return r < 0 ? r : -EIO;
}

uint64_t fs_content_tag(const char *remote, uint64_t fid)
{
	uint64_t h = fs_str_hash("");

	if (remote && *remote) {
		h = fs_str_hash(remote);
	} else {
		h ^= fid * 0x9e3779b97f4a7c15ULL;
		h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ULL;
		h ^= 0x5bd1e995;
	}
	return h | 1;
}

static struct fs *get_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct timespec ns_ts(int64_t ns)
{
	struct timespec ts;

	if (ns < 0)
		ns = 0;
	ts.tv_sec = ns / 1000000000LL;
	ts.tv_nsec = ns % 1000000000LL;
	return ts;
}

/* ---- directory times and ctimes ---------------------------------------------- */

/* Directory ino's entries changed, or utimensat set its time: its mtime
 * is ns, its ctime now (kept on the inode, ino_set_times). */
static void dmt_set(struct fs *fs, uint64_t ino, int64_t ns)
{
	ino_set_times(fs->ino, ino, ns, fs_now_ns());
}

/* Inode ino was renamed or its attributes set: its ctime is now. */
static void ctm_set(struct fs *fs, uint64_t ino)
{
	ino_set_times(fs->ino, ino, 0, fs_now_ns());
}

void fs_fill_attr(struct fs *fs, uint64_t ino, const struct fs_info *in, struct stat *st)
{
	uint64_t size = in->size;
	int64_t mtime = in->mtime_ns, dm = 0, dc = 0;
	struct fs_ofile *of;

	memset(st, 0, sizeof(*st));
	if (in->type == JNL_FILE) {
		of = fs_of_find(fs, ino);
		if (of) {
			if (!fs_of_attr(of, &size, &mtime)) {
				size = in->size;
				mtime = in->mtime_ns;
			}
			fs_of_put(fs, of);
		}
	}
	ino_get_times(fs->ino, ino, &dm, &dc);
	if (in->type == JNL_DIR && dm)
		mtime = dm;
	else if (in->type == JNL_DIR && mtime == 0)
		mtime = fs->mount_ns;       /* a prefix directory has no time */
	st->st_ino = (ino_t)ino;
	switch (in->type) {
	case JNL_DIR:
		st->st_mode = S_IFDIR | (fs->dir_mode & 07777);
		st->st_nlink = 2;
		break;
	case JNL_SYMLINK:
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		break;
	default:
		st->st_mode = S_IFREG | (fs->file_mode & 07777);
		if (in->flags & BE_EF_READONLY)
			st->st_mode &= ~(mode_t)0222;
		st->st_nlink = 1;
		break;
	}
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)size;
	st->st_blksize = 65536;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_mtim = ns_ts(mtime);
	st->st_ctim = ns_ts(dc > mtime ? dc : mtime);
	st->st_atim = st->st_mtim;
}

static int name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len > FS_NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0 || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return -EINVAL;
	return 0;
}

/* Whether the remote can store a new entry `name` at `path` (a directory
 * when dir), so that nothing is journaled that would fail to upload
 * forever: 0, -EILSEQ (not valid UTF-8), -EINVAL (a character the backend
 * refuses: CR or LF on GCS), -ENAMETOOLONG (the remote name would be
 * longer than the backend allows: 1,024 bytes on GCS, prefix included). */
static int new_name_ok(struct fs *fs, const char *name, const char *path, int dir)
{
	if (!jsonh_utf8_valid(name))
		return -EILSEQ;
	switch (be_path_check(fs->be, path, dir)) {
	case BE_PATH_OK:
		return 0;
	case BE_PATH_LONG:
		return -ENAMETOOLONG;
	default:
		return -EINVAL;
	}
}

/* ino_path / ino_child_path errors as seen by the user. */
static int path_err(int rc)
{
	return rc == -ESTALE ? -ENOENT : rc;
}

/* Reply with an entry for parent/name (counting the lookup). */
static void reply_entry(fuse_req_t req, struct fs *fs, uint64_t parent, const char *name,
			const struct fs_info *info)
{
	struct fuse_entry_param e;
	uint64_t ino, gen;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = ino_get(fs->ino, parent, name, &ino, &gen);
	if (rc < 0) {
		fuse_reply_err(req, -path_err(rc));
		return;
	}
	e.ino = ino;
	e.generation = gen;
	fs_fill_attr(fs, ino, info, &e.attr);
	e.attr_timeout = fs->attr_timeout;
	e.entry_timeout = fs->attr_timeout;
	if (fuse_reply_entry(req, &e) != 0)
		ino_forget(fs->ino, ino, 1);
}

/* Make sure the journal tracks path (a fid; remote entries get one with
 * their remote version as base) and that a clean fid mirrors the version
 * the view shows. */
static int track(struct fs *fs, const char *path, const struct fs_info *info, uint64_t *fid)
{
	struct jnl_file jf;
	struct err e;
	int rc = 0;

	*fid = info->fid;
	if (!*fid) {
		if (jnl_file_new(fs->jnl, path, info->type, NULL,
				 info->remote[0] || info->type == JNL_DIR ? info->remote : NULL,
				 info->size, info->mtime_ns, fid, &e) < 0 && e.code != ERR_EXISTS)
			return fs_errno(&e);
		return 0;
	}
	if (info->local || !info->remote[0])
		return 0;
	memset(&jf, 0, sizeof(jf));
	if (jnl_file_get(fs->jnl, *fid, &jf, &e) < 0)
		return fs_errno(&e);
	if (!jf.dirty && jf.base && strcmp(jf.base, info->remote) &&
	    jnl_file_set_base(fs->jnl, *fid, info->remote, &e) < 0)
		log_debug(FS_TAG, "re-base \"%s\": %s", path, e.msg);
	jnl_file_release(&jf);
	return rc;
}

/* Record in the stored listing what the remote will have at path once the
 * journal's op is done: nothing (del), or a placeholder entry without a
 * remote version (the commit replaces it with the real one). This keeps
 * the view steady between the commit and its event. */
static void note_expected(struct fs *fs, const char *path, int del, int type, uint64_t size,
			  int64_t mtime_ns, unsigned flags)
{
	struct jnl_entry e;
	char *dir = NULL;
	const char *name;

	if (view_split(path, &dir, &name) < 0)
		return;
	memset(&e, 0, sizeof(e));
	e.name = (char *)name;
	e.type = type;
	e.size = size;
	e.mtime_ns = mtime_ns;
	e.flags = flags;
	fs_dir_note(fs, dir, name, del ? NULL : &e);
	free(dir);
}

/* errno of a failed wait for commits (fsync, sync_on_close, fsyncdir):
 * quota and full storage keep their errno, the rest (conflict, permanent
 * failure, timeout) is EIO. */
static int wait_errno(const struct err *e)
{
	switch (e->code) {
	case ERR_NOSPC:
		return -ENOSPC;
	case ERR_QUOTA:
		return -EDQUOT;
	default:
		return -EIO;
	}
}

static int wait_fid(struct fs *fs, uint64_t fid, int64_t timeout_ms)
{
	struct err e;

	if (!fid)
		return 0;
	if (sch_wait_fid(fs->sched, fid, timeout_ms, &e) == 0)
		return 0;
	log_info(FS_TAG, "waiting for commit: %s", e.msg);
	return wait_errno(&e);
}

/* ---- init / destroy ---------------------------------------------------------- */

/* The largest write the kernel sends in one request: FS_MAX_WRITE, or
 * just under it when that lets the request be spliced. libfuse splices a
 * request from /dev/fuse into a pipe only when the pipe holds max_write
 * plus a page of headers, and a process without CAP_SYS_RESOURCE cannot
 * grow a pipe past /proc/sys/fs/pipe-max-size (1 MiB by default): then a
 * 1 MiB pipe and FS_MAX_WRITE - 4 KiB (a 1 MiB write comes as 1020 KiB +
 * 4 KiB, both spliced), else FS_MAX_WRITE read into memory. Found by
 * trying on a pipe of this process, as libfuse will. */
static unsigned splice_max_write(const struct fuse_conn_info *conn)
{
	enum { HDR = 4096 };
	int p[2] = { -1, -1 };
	unsigned mw = FS_MAX_WRITE;

	if (!(conn->capable & FUSE_CAP_SPLICE_READ) || pipe2(p, O_CLOEXEC) < 0)
		return mw;
	if (fcntl(p[0], F_SETPIPE_SZ, FS_MAX_WRITE + HDR) < 0 &&
	    fcntl(p[0], F_SETPIPE_SZ, FS_MAX_WRITE) == FS_MAX_WRITE)
		mw = FS_MAX_WRITE - HDR;
	close(p[0]);
	close(p[1]);
	return mw;
}

static void op_init(void *ud, struct fuse_conn_info *conn)
{
	struct fs *fs = ud;

	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* Always readdirplus: `ls -l` of a big directory gets its attributes
	 * with the names, from the stored listing. */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	/* Write-through: the kernel's page cache never holds data the cache
	 * file does not have, so mtime/size stay ours and a close really has
	 * everything. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* -o splice_writes: large writes arrive in a pipe (op_write_buf
	 * splices them on; libfuse reads into memory when it cannot grow the
	 * pipe). Off by default: libfuse then splices every request, and
	 * each small one (getattr, open, a small write) costs a second
	 * system call, which slows reading many small files. */
	if (fs->mo->splice_writes && (conn->capable & FUSE_CAP_SPLICE_READ)) {
		conn->want |= FUSE_CAP_SPLICE_READ;
		conn->max_write = splice_max_write(conn);
	} else {
		conn->want &= ~FUSE_CAP_SPLICE_READ;
		conn->max_write = FS_MAX_WRITE;
	}
	if (conn->max_background < 32)
		conn->max_background = 32;
	log_debug(FS_TAG, "FUSE protocol %u.%u, max_readahead %u, max_write %u, capable %#x, "
		  "want %#x", conn->proto_major, conn->proto_minor, conn->max_readahead,
		  conn->max_write, conn->capable, conn->want);
}

static void op_destroy(void *ud)
{
	fs_bg_stop(ud);
}

/* ---- names ---------------------------------------------------------------------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = get_fs(req);
	struct fs_info info;
	char *path = NULL;
	int rc;

	rc = name_ok(name);
	if (rc == -EINVAL)
		rc = -ENOENT;
	if (rc == 0)
		rc = path_err(ino_child_path(fs->ino, parent, name, &path));
	if (rc == 0)
		rc = fs_resolve(fs, path, &info);
	free(path);
	if (rc == -ENOENT) {
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->attr_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, fs, parent, name, &info);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ino_forget(get_fs(req)->ino, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = get_fs(req);
	size_t i;

	for (i = 0; i < count; i++)
		ino_forget(fs->ino, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* Attributes of ino: an open file with local content answers itself. */
static int stat_ino(struct fs *fs, uint64_t ino, struct stat *st)
{
	struct fs_info info;
	struct fs_ofile *of;
	char *path = NULL;
	int rc;

	rc = ino_path(fs->ino, ino, &path);
	if (rc == -ESTALE) {
		/* Unlinked but still open. */
		of = fs_of_find(fs, ino);
		if (!of)
			return -ENOENT;
		memset(&info, 0, sizeof(info));
		info.type = JNL_FILE;
		pthread_mutex_lock(&of->mu);
		info.size = of->rsize;
		info.mtime_ns = of->mtime_ns;
		pthread_mutex_unlock(&of->mu);
		fs_of_put(fs, of);
		fs_fill_attr(fs, ino, &info, st);
		st->st_nlink = 0;           /* no name left */
		return 0;
	}
	if (rc < 0)
		return rc;
	rc = fs_resolve(fs, path, &info);
	free(path);
	if (rc < 0)
		return rc;
	fs_fill_attr(fs, ino, &info, st);
	return 0;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct stat st;
	int rc;

	(void)fi;
	rc = stat_ino(fs, ino, &st);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->attr_timeout);
}

static int set_mtime(struct fs *fs, uint64_t ino, struct fs_ofile *held, int64_t t)
{
	struct fs_ofile *of = held ? held : fs_of_find(fs, ino);
	struct fs_info info;
	struct err e;
	char *path = NULL;
	uint64_t fid;
	int rc = 0, local = 0, modified = 0;

	memset(&info, 0, sizeof(info));

	if (of) {
		pthread_mutex_lock(&of->mu);
		local = of->local;
		modified = of->modified;
		if (local)
			of->mtime_ns = t;
		fid = of->fid;
		pthread_mutex_unlock(&of->mu);
		if (!held)
			fs_of_put(fs, of);
		if (local) {
			/* A pending commit carries it; else tell the journal. */
			if (!modified && jnl_setattr(fs->jnl, fid, t, NULL, &e) < 0)
				rc = fs_errno(&e);
			return rc;
		}
	}
	rc = path_err(ino_path(fs->ino, ino, &path));
	if (rc == 0)
		rc = fs_resolve(fs, path, &info);
	if (rc == 0 && info.type == JNL_FILE) {
		rc = track(fs, path, &info, &fid);
		if (rc == 0 && jnl_setattr(fs->jnl, fid, t, NULL, &e) < 0)
			rc = fs_errno(&e);
	}
	/* Directories: kept on the inode (dmt_set), not stored remotely;
	 * symlinks: accepted, not kept. */
	if (rc == 0 && info.type == JNL_DIR)
		dmt_set(fs, ino, t);
	free(path);
	return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_ofile *held = fi && fi->fh ? fh_of(fi) : NULL;
	struct fs_ofile *of = NULL;
	struct stat st;
	char *path = NULL;
	int rc = 0;

	if (fs->ro) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* chmod and chown are accepted and ignored: modes come from
	 * file_mode/dir_mode, owners from uid/gid. atime is not kept. */
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (held) {
			of = held;
		} else {
			rc = path_err(ino_path(fs->ino, ino, &path));
			if (rc == 0)
				rc = fs_of_get(fs, ino, path, 0, 0, &of);
		}
		if (rc == 0)
			rc = fs_of_truncate(fs, of, (uint64_t)attr->st_size);
		if (!held && of) {
			if (rc == 0)
				rc = fs_of_commit(fs, of, -1);
			fs_of_put(fs, of);
		}
		free(path);
		path = NULL;
	}
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
		int64_t t = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? fs_now_ns()
			: (int64_t)attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec;

		rc = set_mtime(fs, ino, held, t);
	}
	if (rc == 0) {
		ctm_set(fs, ino);
		rc = stat_ino(fs, ino, &st);
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->attr_timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = get_fs(req);
	struct fs_info info;
	struct jnl_file jf;
	struct be_entry be;
	char *path = NULL, *rpath = NULL, *target = NULL;
	struct err e;
	int rc;

	memset(&jf, 0, sizeof(jf));
	memset(&be, 0, sizeof(be));
	rc = path_err(ino_path(fs->ino, ino, &path));
	if (rc == 0)
		rc = fs_resolve(fs, path, &info);
	if (rc < 0)
		goto out;
	if (info.type != JNL_SYMLINK) {
		rc = -EINVAL;
		goto out;
	}
	if (info.fid && jnl_file_get(fs->jnl, info.fid, &jf, &e) == 0 && jf.target) {
		target = strdup(jf.target);
		rc = target ? 0 : -ENOMEM;
		goto out;
	}
	rpath = fs_remote_path(fs, path);
	if (!rpath) {
		rc = -ENOMEM;
		goto out;
	}
	if (be_stat(fs->be, rpath, &be, &e) < 0) {
		log_warn(FS_TAG, "readlink \"%s\": %s", path, e.msg);
		rc = e.code == ERR_NOTFOUND ? -ENOENT : -EIO;
		goto out;
	}
	if (be.symlink_target) {
		target = strdup(be.symlink_target);
		rc = target ? 0 : -ENOMEM;
	} else {
		log_warn(FS_TAG, "readlink \"%s\": the remote entry carries no target", path);
		rc = -EIO;
	}
out:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
	free(target);
	free(rpath);
	free(path);
	be_entry_release(&be);
	jnl_file_release(&jf);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, get_fs(req)->ro ? EROFS : EPERM);
}

/* Common start of a namespace mutation: checks, ns_lock taken, *path set.
 * Returns 0 with the lock held, or a negative errno without it. */
static int ns_begin(struct fs *fs, uint64_t parent, const char *name, char **path)
{
	int rc;

	*path = NULL;
	if (fs->ro)
		return -EROFS;
	rc = name_ok(name);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->ns_lock);
	rc = path_err(ino_child_path(fs->ino, parent, name, path));
	/* A directory the backend's layout fixes (layout=colab's root and
	 * Shareddrives/): nothing is created or removed there. */
	if (rc == 0 && be_ns_check(fs->be, *path, NULL) == BE_NS_FIXED) {
		free(*path);
		*path = NULL;
		rc = -EPERM;
	}
	if (rc < 0)
		pthread_mutex_unlock(&fs->ns_lock);
	return rc;
}

/* The journal side of mkdir and rmdir, run by fs_dir_change. */
struct dir_change {
	struct fs *fs;
	const char *path;
	int64_t mtime_ns;
	uint64_t fid;
	uint64_t *out_fid;
};

static int mkdir_change(void *ud, struct err *err)
{
	struct dir_change *c = ud;

	return jnl_mkdir(c->fs->jnl, c->path, c->mtime_ns, c->out_fid, NULL, err);
}

/* Drive: the folder goes with what it holds, in one call. */
static int rmdir_change(void *ud, struct err *err)
{
	struct dir_change *c = ud;

	if (be_caps(c->fs->be) & BE_CAP_RMDIR_TREE)
		return jnl_rmdir_tree(c->fs->jnl, c->fid, NULL, err);
	return jnl_rmdir(c->fs->jnl, c->fid, NULL, err);
}

/* Create the cache file and the journal entry of a new, empty regular file
 * `path` (ns_lock held, the name checked and free): on success *fid is its
 * journal id, *fd its open cache file (the caller's; cname and cpath name
 * it) and the view expects it. On failure a negative errno; *fd stays open
 * when the cache file was made (the caller closes and unlinks it). */
static int new_file(struct fs *fs, const char *path, int64_t now, char *cname, size_t ncname,
		    char *cpath, size_t ncpath, uint64_t *fid, int *fd)
{
	struct err e;
	int rc;

	fs_cache_name_new(cname, ncname);
	rc = fs_cache_path(fs, cname, cpath, ncpath);
	if (rc < 0)
		return rc;
	*fd = open(cpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (*fd < 0) {
		rc = -errno;
		log_warn(FS_TAG, "creating a cache file for \"%s\": %s", path, strerror(-rc));
		return rc;
	}
	if (jnl_file_new(fs->jnl, path, JNL_FILE, cname, NULL, 0, now, fid, &e) < 0) {
		if (e.code != ERR_EXISTS)
			return fs_errno(&e);
		/* A journal file the view hides (removed remotely): it
		 * becomes this new file. */
		if (jnl_file_set_base(fs->jnl, *fid, NULL, &e) < 0 ||
		    jnl_file_set_cache(fs->jnl, *fid, cname, &e) < 0 ||
		    jnl_file_dirty(fs->jnl, *fid, NULL, &e) < 0)
			return fs_errno(&e);
	}
	note_expected(fs, path, 0, JNL_FILE, 0, now, 0);
	return 0;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct fs *fs = get_fs(req);
	struct fs_info info;
	char *path = NULL, cname[64], cpath[4096];
	uint64_t fid = 0, seq;
	struct err e;
	int64_t now = fs_now_ns();
	int rc, fd = -1;

	(void)rdev;
	/* A regular file is made empty (as create does, without opening
	 * it); nothing else is stored: EPERM for fifos, sockets, devices. */
	rc = ns_begin(fs, parent, name, &path);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = fs_resolve(fs, path, &info);
	if (rc == 0)
		rc = -EEXIST;
	else if (rc == -ENOENT)
		rc = S_ISREG(mode) ? new_name_ok(fs, name, path, 0) : -EPERM;
	if (rc == 0) {
		rc = new_file(fs, path, now, cname, sizeof(cname), cpath, sizeof(cpath), &fid, &fd);
		if (rc < 0 && fd >= 0)
			unlink(cpath);
	}
	/* queued like a closed empty file */
	if (rc == 0 && jnl_write(fs->jnl, fid, 0, now, fs->mo->writeback_delay_ms, &seq, &e) < 0)
		rc = fs_errno(&e);
	if (rc == 0) {
		memset(&info, 0, sizeof(info));
		info.type = JNL_FILE;
		info.mtime_ns = now;
		info.fid = fid;
		info.local = 1;
		dmt_set(fs, parent, now);
		reply_entry(req, fs, parent, name, &info);
	} else {
		fuse_reply_err(req, -rc);
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&fs->ns_lock);
	free(path);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = get_fs(req);
	struct dir_change mk = { 0 };
	struct fs_info info;
	char *path = NULL;
	struct err e;
	uint64_t fid;
	int rc;

	(void)mode;
	rc = ns_begin(fs, parent, name, &path);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = fs_resolve(fs, path, &info);
	if (rc == 0)
		rc = -EEXIST;
	else if (rc == -ENOENT)
		rc = new_name_ok(fs, name, path, 1);
	memset(&info, 0, sizeof(info));
	info.type = JNL_DIR;
	info.mtime_ns = fs_now_ns();
	info.local = 1;
	mk.fs = fs;
	mk.path = path;
	mk.mtime_ns = info.mtime_ns;
	mk.out_fid = &fid;
	if (rc == 0 && fs_dir_change(fs, path, mkdir_change, &mk, &e) < 0)
		rc = fs_errno(&e);
	if (rc == 0) {
		info.fid = fid;
		note_expected(fs, path, 0, JNL_DIR, 0, info.mtime_ns, 0);
		dmt_set(fs, parent, info.mtime_ns);
		reply_entry(req, fs, parent, name, &info);
	} else {
		fuse_reply_err(req, -rc);
	}
	pthread_mutex_unlock(&fs->ns_lock);
	free(path);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs *fs = get_fs(req);
	struct fs_info info;
	char *path = NULL;
	struct err e;
	uint64_t fid;
	int rc;

	rc = ns_begin(fs, parent, name, &path);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = fs_resolve(fs, path, &info);
	if (rc == 0)
		rc = -EEXIST;
	else if (rc == -ENOENT)
		rc = *link ? new_name_ok(fs, name, path, 0) : -ENOENT;
	/* the target is stored as remote metadata: UTF-8, within the
	 * backend's size limit (Drive: 105 bytes) */
	if (rc == 0 && !jsonh_utf8_valid(link))
		rc = -EILSEQ;
	if (rc == 0 && be_symlink_max(fs->be) && strlen(link) > be_symlink_max(fs->be))
		rc = -ENAMETOOLONG;
	memset(&info, 0, sizeof(info));
	info.type = JNL_SYMLINK;
	info.size = strlen(link);
	info.mtime_ns = fs_now_ns();
	info.local = 1;
	if (rc == 0 && jnl_symlink(fs->jnl, path, link, info.mtime_ns, &fid, NULL, &e) < 0)
		rc = fs_errno(&e);
	if (rc == 0) {
		info.fid = fid;
		note_expected(fs, path, 0, JNL_SYMLINK, info.size, info.mtime_ns, 0);
		dmt_set(fs, parent, info.mtime_ns);
		reply_entry(req, fs, parent, name, &info);
	} else {
		fuse_reply_err(req, -rc);
	}
	pthread_mutex_unlock(&fs->ns_lock);
	free(path);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = get_fs(req);
	struct fs_info info;
	char *path = NULL;
	struct err e;
	uint64_t fid;
	int rc;

	rc = ns_begin(fs, parent, name, &path);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = fs_resolve(fs, path, &info);
	if (rc == 0 && info.type == JNL_DIR)
		rc = -EISDIR;
	if (rc == 0)
		rc = track(fs, path, &info, &fid);
	if (rc == 0 && jnl_unlink(fs->jnl, fid, NULL, &e) < 0)
		rc = fs_errno(&e);
	if (rc == 0) {
		note_expected(fs, path, 1, 0, 0, 0, 0);
		ino_detach(fs->ino, parent, name);
		dmt_set(fs, parent, fs_now_ns());
	}
	pthread_mutex_unlock(&fs->ns_lock);
	fuse_reply_err(req, -rc);
	free(path);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = get_fs(req);
	struct dir_change rm = { 0 };
	struct fs_dsnap_ent *v = NULL;
	struct fs_info info;
	char *path = NULL, *names = NULL;
	size_t n = 0;
	struct err e;
	uint64_t fid = 0;
	int rc;

	rc = ns_begin(fs, parent, name, &path);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = fs_resolve(fs, path, &info);
	if (rc == 0 && info.type != JNL_DIR)
		rc = -ENOTDIR;
	if (rc == 0)
		rc = fs_dir_list(fs, path, &v, &n, &names);
	if (rc == 0 && n > 0)
		rc = -ENOTEMPTY;
	if (rc == 0)
		rc = track(fs, path, &info, &fid);
	rm.fs = fs;
	rm.fid = fid;
	if (rc == 0 && fs_dir_change(fs, path, rmdir_change, &rm, &e) < 0)
		rc = fs_errno(&e);
	if (rc == 0) {
		note_expected(fs, path, 1, 0, 0, 0, 0);
		ino_detach(fs->ino, parent, name);
		dmt_set(fs, parent, fs_now_ns());
	}
	pthread_mutex_unlock(&fs->ns_lock);
	fuse_reply_err(req, -rc);
	free(v);
	free(names);
	free(path);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct fs *fs = get_fs(req);
	struct fs_info src, dst;
	struct fs_dsnap_ent *v = NULL;
	struct jnl_entry *l = NULL;
	struct jnl_file jf;
	char *from = NULL, *to = NULL, *names = NULL;
	size_t n = 0, nl = 0;
	int64_t fetched = 0;
	int complete = 0, have_list = 0, exists, rc;
	struct err e;
	uint64_t fid, dfid, seq = 0;

	memset(&jf, 0, sizeof(jf));
	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		/* RENAME_EXCHANGE and RENAME_WHITEOUT cannot be done on the
		 * remote atomically. */
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = name_ok(newname);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = ns_begin(fs, parent, name, &from);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = path_err(ino_child_path(fs->ino, newparent, newname, &to));
	if (rc == 0) {
		int ns = be_ns_check(fs->be, from, to);

		rc = ns == BE_NS_FIXED ? -EPERM : ns == BE_NS_XDEV ? -EXDEV : 0;
	}
	if (rc == 0)
		rc = fs_resolve(fs, from, &src);
	if (rc < 0)
		goto out;
	if (!strcmp(from, to))
		goto out;
	rc = new_name_ok(fs, newname, to, src.type == JNL_DIR);
	if (rc < 0)
		goto out;
	if (src.type == JNL_DIR && view_path_within(to, from)) {
		rc = -EINVAL;
		goto out;
	}
	rc = fs_resolve(fs, to, &dst);
	if (rc < 0 && rc != -ENOENT)
		goto out;
	exists = rc == 0;
	rc = 0;
	if (exists) {
		if (flags & RENAME_NOREPLACE) {
			rc = -EEXIST;
			goto out;
		}
		if (src.type == JNL_DIR && dst.type != JNL_DIR) {
			rc = -ENOTDIR;
			goto out;
		}
		if (src.type != JNL_DIR && dst.type == JNL_DIR) {
			rc = -EISDIR;
			goto out;
		}
		if (dst.type == JNL_DIR) {
			rc = fs_dir_list(fs, to, &v, &n, &names);
			if (rc == 0 && n > 0)
				rc = -ENOTEMPTY;
			if (rc < 0)
				goto out;
		}
		rc = track(fs, to, &dst, &dfid);
		if (rc < 0)
			goto out;
	}
	rc = track(fs, from, &src, &fid);
	if (rc < 0)
		goto out;
	if (src.type == JNL_DIR && jnl_dir_get(fs->jnl, from, &l, &nl, &fetched, &complete,
					       NULL) == 0 && complete)
		have_list = 1;
	if (jnl_rename(fs->jnl, fid, to, exists ? JNL_RENAME_REPLACE : 0, &seq, &e) < 0) {
		rc = fs_errno(&e);
		goto out;
	}
	/* While the remote has not done it, reads and listings of `to` go
	 * to `from`. */
	if (seq && jnl_file_get(fs->jnl, fid, &jf, NULL) == 0 && jf.base) {
		rc = fs_ren_add(fs, seq, fid, from, to);
		if (rc < 0)
			log_warn(FS_TAG, "remembering the rename of \"%s\": %s", from,
				 strerror(-rc));
		rc = 0;
	}
	note_expected(fs, from, 1, 0, 0, 0, 0);
	/* a renamed Docs export stays read-only */
	note_expected(fs, to, 0, src.type, src.size, src.mtime_ns, src.flags);
	if (src.type == JNL_DIR) {
		/* each forget with its in-memory state in one step: no fetch begun
		 * before it stores, no access loads what it removes */
		if (fs_dir_forget(fs, to, &e) < 0)
			log_debug(FS_TAG, "forget listings under \"%s\": %s", to, e.msg);
		if (have_list && jnl_dir_put(fs->jnl, to, l, nl, fetched, &e) < 0)
			log_debug(FS_TAG, "carry the listing of \"%s\": %s", from, e.msg);
		if (fs_dir_forget(fs, from, &e) < 0)
			log_debug(FS_TAG, "forget listings under \"%s\": %s", from, e.msg);
	}
	rc = ino_rename(fs->ino, parent, name, newparent, newname);
	if (rc < 0) {
		log_warn(FS_TAG, "rename \"%s\": inode table: %s", from, strerror(-rc));
		rc = 0;
	}
	{
		int64_t now = fs_now_ns();
		uint64_t moved;

		dmt_set(fs, parent, now);
		if (newparent != parent)
			dmt_set(fs, newparent, now);
		if (ino_find(fs->ino, newparent, newname, &moved) == 0)
			ctm_set(fs, moved);
	}
out:
	pthread_mutex_unlock(&fs->ns_lock);
	fuse_reply_err(req, -rc);
	jnl_file_release(&jf);
	jnl_entries_free(l, nl);
	free(v);
	free(names);
	free(from);
	free(to);
}

/* ---- files -------------------------------------------------------------------- */

static void set_keep_cache(struct fs *fs, uint64_t ino, struct fs_ofile *of,
			   struct fuse_file_info *fi, int trunc)
{
	uint64_t tag;

	pthread_mutex_lock(&of->mu);
	tag = fs_content_tag(of->local ? NULL : of->remote, of->fid);
	pthread_mutex_unlock(&of->mu);
	fi->keep_cache = !trunc && ino_get_tag(fs->ino, ino) == tag;
	ino_set_tag(fs->ino, ino, tag);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	int writable = (fi->flags & O_ACCMODE) != O_RDONLY;
	int trunc = writable && (fi->flags & O_TRUNC);
	struct fs_ofile *of = NULL;
	char *path = NULL;
	int rc;

	if (fs->ro && (writable || (fi->flags & O_TRUNC))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	rc = ino_path(fs->ino, ino, &path);
	if (rc < 0 && rc != -ESTALE) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = fs_of_get(fs, ino, path, writable, trunc, &of);
	free(path);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	set_keep_cache(fs, ino, of, fi, trunc);
	pthread_mutex_lock(&of->mu);
	if (of->flags & BE_EF_SIZE_UNKNOWN) {
		/* An export: its size is known once read; the kernel must
		 * not cut reads at the size it was shown. */
		fi->direct_io = 1;
		fi->keep_cache = 0;
	}
	pthread_mutex_unlock(&of->mu);
	/* A read-only handle has nothing to flush: spare the kernel the
	 * FLUSH round trip on every close (op_flush is a no-op for it). */
	fi->noflush = !writable;
	fi->fh = fh_make(of, writable);
	if (writable)
		fs_of_writer(of, 1);
	if (fuse_reply_open(req, fi) != 0) {
		if (writable)
			fs_of_writer(of, -1);
		fs_of_put(fs, of);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fuse_entry_param ep;
	struct fs_info info;
	struct fs_ofile *of = NULL;
	char *path = NULL, cname[64], cpath[4096];
	uint64_t ino = 0, gen, fid = 0;
	int rc, fd = -1, locked = 0, counted = 0;

	(void)mode;
	memset(&ep, 0, sizeof(ep));
	gen = 0;
	cpath[0] = '\0';
	rc = ns_begin(fs, parent, name, &path);
	if (rc < 0)
		goto out;
	locked = 1;
	rc = fs_resolve(fs, path, &info);
	if (rc == 0) {
		/* It exists after all (another client, or the kernel's
		 * negative entry was stale). */
		if (fi->flags & O_EXCL) {
			rc = -EEXIST;
			goto out;
		}
		if (info.type == JNL_DIR) {
			rc = -EISDIR;
			goto out;
		}
		pthread_mutex_unlock(&fs->ns_lock);
		locked = 0;
		rc = ino_get(fs->ino, parent, name, &ino, &gen);
		if (rc < 0)
			goto out;
		counted = 1;
		rc = fs_of_get(fs, ino, path, 1, (fi->flags & O_TRUNC) != 0, &of);
		if (rc < 0)
			goto out;
		rc = stat_ino(fs, ino, &ep.attr);
		if (rc < 0)
			goto out;
	} else if (rc == -ENOENT) {
		int64_t now = fs_now_ns();

		rc = new_name_ok(fs, name, path, 0);
		if (rc == 0)
			rc = new_file(fs, path, now, cname, sizeof(cname), cpath, sizeof(cpath),
				      &fid, &fd);
		if (rc < 0)
			goto out;
		dmt_set(fs, parent, now);
		rc = ino_get(fs->ino, parent, name, &ino, &gen);
		if (rc < 0)
			goto out;
		counted = 1;
		rc = fs_of_new(fs, ino, fid, fd, cname, now, &of);
		fd = -1;
		if (rc < 0)
			goto out;
		memset(&info, 0, sizeof(info));
		info.type = JNL_FILE;
		info.mtime_ns = now;
		info.fid = fid;
		info.local = 1;
		fs_fill_attr(fs, ino, &info, &ep.attr);
	} else {
		goto out;
	}
	set_keep_cache(fs, ino, of, fi, 1);
	ep.ino = ino;
	ep.generation = gen;
	ep.attr_timeout = fs->attr_timeout;
	ep.entry_timeout = fs->attr_timeout;
	fi->fh = fh_make(of, (fi->flags & O_ACCMODE) != O_RDONLY);
	if (fh_writable(fi))
		fs_of_writer(of, 1);
	if (locked) {
		pthread_mutex_unlock(&fs->ns_lock);
		locked = 0;
	}
	if (fuse_reply_create(req, &ep, fi) != 0) {
		/* The kernel never saw it: no lookup, no release. */
		if (fh_writable(fi))
			fs_of_writer(of, -1);
		ino_forget(fs->ino, ino, 1);
		fs_of_put(fs, of);
	}
	free(path);
	return;
out:
	if (locked)
		pthread_mutex_unlock(&fs->ns_lock);
	if (fd >= 0) {
		close(fd);
		unlink(cpath);
	}
	if (of)
		fs_of_put(fs, of);
	if (counted)
		ino_forget(fs->ino, ino, 1);
	free(path);
	fuse_reply_err(req, -rc);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_ofile *of = fh_of(fi);
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	char *mem = NULL;
	ssize_t n;

	n = fs_of_read(fs, of, size, off, &mem);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	if (mem) {
		fuse_reply_buf(req, mem, (size_t)n);
		free(mem);
		return;
	}
	/* Straight from the cache file (spliced when the kernel allows). */
	bv.buf[0].size = (size_t)n;
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = of->fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	/* The reader has its bytes: fetch ahead of it on this thread. */
	fs_of_readahead(fs, ino);
}

/* libfuse hands a write's bytes in memory, or (FUSE_CAP_SPLICE_READ, a
 * request larger than a page, a pipe big enough for max_write) still in
 * the pipe it spliced /dev/fuse into: those are spliced on into the cache
 * file without a copy through user space. A pipe left undrained (error)
 * is reset by libfuse (bufv->idx < bufv->count). */
static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
			 struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fuse_bufvec mem = FUSE_BUFVEC_INIT(0);
	const struct fuse_buf *b;
	size_t size = 0, i;
	char *tmp = NULL;
	ssize_t n;

	(void)ino;
	for (i = bufv->idx; i < bufv->count; i++)
		size += bufv->buf[i].size - (i == bufv->idx ? bufv->off : 0);
	/* Writes from the page cache (writepage) may come through any
	 * handle; the kernel checked the open mode already. */
	if (fs->ro) {
		fuse_reply_err(req, EROFS);
		return;
	}
	b = bufv->idx < bufv->count ? &bufv->buf[bufv->idx] : NULL;
	if (b && bufv->count - bufv->idx == 1 && bufv->off == 0 &&
	    (b->flags & FUSE_BUF_IS_FD) && !(b->flags & FUSE_BUF_FD_SEEK)) {
		n = fs_of_write_pipe(fs, fh_of(fi), b->fd, size, off);
		if (n >= 0) {
			bufv->idx = bufv->count;  /* drained */
			bufv->off = 0;
		}
	} else if (b && bufv->count - bufv->idx == 1 && !(b->flags & FUSE_BUF_IS_FD)) {
		n = fs_of_write(fs, fh_of(fi), (const char *)b->mem + bufv->off, size, off);
	} else {
		/* Any other shape (libfuse 3.14 gives none): gathered in memory. */
		tmp = malloc(size ? size : 1);
		if (!tmp) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		mem.buf[0].mem = tmp;
		mem.buf[0].size = size;
		n = fuse_buf_copy(&mem, bufv, 0);
		if (n >= 0 && (size_t)n != size)
			n = -EIO;
		if (n >= 0)
			n = fs_of_write(fs, fh_of(fi), tmp, size, off);
		free(tmp);
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	int rc;

	(void)ino;
	if (fs->ro)
		rc = -EROFS;
	else if (off < 0 || len <= 0)
		rc = -EINVAL;
	else
		rc = fs_of_fallocate(fs, fh_of(fi), mode, (uint64_t)off, (uint64_t)len);
	fuse_reply_err(req, -rc);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_ofile *of = fh_of(fi);
	int rc = 0;

	(void)ino;
	if (fh_writable(fi)) {
		rc = fs_of_commit(fs, of, -1);
		if (rc == 0 && fs->mo->sync_on_close)
			rc = wait_fid(fs, of->fid, fs->mo->fsync_timeout_ms);
	}
	fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_ofile *of = fh_of(fi);

	(void)ino;
	/* Writes through a shared mapping may arrive after the last flush. A
	 * failure here was logged and is retried in the background. */
	if (fh_writable(fi)) {
		fs_of_commit(fs, of, -1);
		fs_of_writer(of, -1);
	}
	fs_of_put(fs, of);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_ofile *of = fh_of(fi);
	int rc;

	(void)ino;
	(void)datasync;
	rc = fs_of_commit(fs, of, 0);
	if (rc == 0)
		rc = wait_fid(fs, of->fid, fs->mo->fsync_timeout_ms);
	fuse_reply_err(req, -rc);
}

/* ---- directories -------------------------------------------------------------- */

/* Take dh out of the fs's list and free it. */
static void dh_free(struct fs *fs, struct fs_dh *dh)
{
	size_t n;

	if (!dh)
		return;
	pthread_mutex_lock(&fs->dh_lock);
	if (dh->prev)
		dh->prev->next = dh->next;
	else if (fs->dh_head == dh)
		fs->dh_head = dh->next;
	if (dh->next)
		dh->next->prev = dh->prev;
	pthread_mutex_unlock(&fs->dh_lock);
	n = dh->n;
	free(dh->v);
	free(dh->names);
	free(dh->path);
	free(dh);
	if (n > FS_BIG_DIR)
		malloc_trim(0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_info info;
	struct fs_dh *dh = NULL;
	int rc;

	dh = calloc(1, sizeof(*dh));
	if (!dh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = path_err(ino_path(fs->ino, ino, &dh->path));
	if (rc == 0)
		rc = fs_resolve(fs, dh->path, &info);
	if (rc == 0 && info.type != JNL_DIR)
		rc = -ENOTDIR;
	if (rc == 0)
		rc = fs_dir_list(fs, dh->path, &dh->v, &dh->n, &dh->names);
	pthread_mutex_lock(&fs->dh_lock);
	dh->next = fs->dh_head;
	if (fs->dh_head)
		fs->dh_head->prev = dh;
	fs->dh_head = dh;
	pthread_mutex_unlock(&fs->dh_lock);
	if (rc < 0) {
		dh_free(fs, dh);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)dh;
	/* The kernel caches what it reads (a warm `ls -l` of a huge
	 * directory then never comes here); it keeps that cache only while
	 * this very listing is what it holds. */
	fi->cache_readdir = 1;
	fi->keep_cache = (unsigned)fs_dir_kcache(fs, dh->path, dh->v, dh->n, dh->names);
	if (fuse_reply_open(req, fi) != 0)
		dh_free(fs, dh);
}

static mode_t type_mode(int type)
{
	return type == JNL_DIR ? S_IFDIR : type == JNL_SYMLINK ? S_IFLNK : S_IFREG;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct fs *fs = get_fs(req);
	struct fs_dh *dh = (struct fs_dh *)(uintptr_t)fi->fh;
	char *buf = NULL;
	size_t pos = 0, i;
	int rc;

	if (off == 0 && dh->served) {
		/* rewinddir: a fresh listing. */
		struct fs_dsnap_ent *v = NULL;
		char *names = NULL;
		size_t n = 0;

		rc = fs_dir_list(fs, dh->path, &v, &n, &names);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		free(dh->v);
		free(dh->names);
		dh->v = v;
		dh->n = n;
		dh->names = names;
	}
	dh->served = 1;
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (i = (size_t)off; i < dh->n + 2; i++) {
		struct fuse_entry_param e;
		const char *name;
		size_t need;
		uint64_t eino = 0;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			uint64_t pino = INO_ROOT;

			/* No lookup is counted for these (e.ino 0), but d_ino
			 * must not be 0: libc skips such entries. */
			if (i == 1 && ino != INO_ROOT && ino_parent(fs->ino, ino, &pino, NULL) < 0)
				pino = INO_ROOT;
			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino : pino;
			e.attr.st_mode = S_IFDIR;
		} else {
			const struct fs_dsnap_ent *d = &dh->v[i - 2];
			struct fs_info info;

			name = dh->names + d->name_off;
			if (plus) {
				rc = ino_get(fs->ino, ino, name, &eino, &e.generation);
				if (rc < 0)
					break;
				memset(&info, 0, sizeof(info));
				info.type = d->type;
				info.size = d->size;
				info.mtime_ns = d->mtime_ns;
				info.fid = d->fid;
				info.local = d->local;
				info.flags = d->flags;
				fs_fill_attr(fs, eino, &info, &e.attr);
				e.ino = eino;
				e.attr_timeout = fs->attr_timeout;
				e.entry_timeout = fs->attr_timeout;
			} else {
				/* d_ino: the node's inode when the kernel knows
				 * it, else a stable stand-in (never 0). */
				if (ino_find(fs->ino, ino, name, &eino) < 0)
					eino = fs_content_tag(name, ino) | (1ull << 63);
				e.attr.st_ino = (ino_t)eino;
				e.attr.st_mode = type_mode(d->type);
			}
		}
		if (plus)
			need = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e,
						      (off_t)i + 1);
		else
			need = fuse_add_direntry(req, buf + pos, size - pos, name, &e.attr,
						 (off_t)i + 1);
		if (need > size - pos) {
			if (plus && e.ino)
				ino_forget(fs->ino, e.ino, 1);
			break;
		}
		pos += need;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dh_free(get_fs(req), (struct fs_dh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = get_fs(req);
	struct fs_dh *dh = (struct fs_dh *)(uintptr_t)fi->fh;
	struct jnl_file *jv = NULL;
	struct fs_info info;
	int64_t deadline = fs_now_ms() + fs->mo->fsync_timeout_ms, left;
	size_t nj = 0, i;
	struct err e;
	int rc;

	(void)ino;
	(void)datasync;
	/* The directory's own ops (mkdir, rename) and those of the entries
	 * it shows (creations, renames into it). */
	rc = fs_resolve(fs, dh->path, &info);
	if (rc == 0)
		rc = wait_fid(fs, info.fid, fs->mo->fsync_timeout_ms);
	if (rc == 0 && jnl_children(fs->jnl, dh->path, &jv, &nj, &e) < 0)
		rc = fs_errno(&e);
	for (i = 0; rc == 0 && i < nj; i++) {
		left = deadline - fs_now_ms();
		rc = wait_fid(fs, jv[i].fid, left > 0 ? left : 0);
	}
	jnl_files_free(jv, nj);
	fuse_reply_err(req, -rc);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = get_fs(req);
	struct statvfs sv, out;

	(void)ino;
	/* What a user can still write is what the cache file system can
	 * hold: its sizes are reported; names follow POSIX limits. */
	memset(&out, 0, sizeof(out));
	if (statvfs(fs->files_dir, &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	out.f_bsize = sv.f_bsize;
	out.f_frsize = sv.f_frsize;
	out.f_blocks = sv.f_blocks;
	out.f_bfree = sv.f_bfree;
	out.f_bavail = sv.f_bavail;
	out.f_files = 1ull << 32;
	out.f_ffree = (1ull << 32) - 1;
	out.f_favail = out.f_ffree;
	out.f_namemax = FS_NAME_MAX;
	fuse_reply_statfs(req, &out);
}

/* ---- extended attributes -------------------------------------------------------- */

static const char *state_name(struct fs *fs, const struct fs_info *info)
{
	struct jnl_file jf;
	struct jnl_op *ops = NULL;
	size_t n = 0, i;
	struct err e;
	const char *st = "clean";
	int rc;

	if (!info->fid)
		return "clean";
	memset(&jf, 0, sizeof(jf));
	if (jnl_file_get(fs->jnl, info->fid, &jf, &e) < 0)
		return "clean";
	rc = jnl_wait_fid(fs->jnl, info->fid, jnl_last_seq(fs->jnl), 0, 0, &e);
	if (rc == 0) {
		st = jf.dirty ? "dirty" : jf.version > 0 ? "committed" : "clean";
	} else if (e.code == ERR_TIMEOUT) {
		st = "dirty";
		if (jnl_list_ops(fs->jnl, JNL_MASK(JNL_IN_PROGRESS), 0, &ops, &n, &e) == 0) {
			for (i = 0; i < n; i++)
				if (ops[i].fid == info->fid)
					st = "uploading";
			jnl_ops_free(ops, n);
		}
	} else if (e.code == ERR_CONFLICT) {
		st = "conflict";
	} else {
		st = "error";
	}
	jnl_file_release(&jf);
	return st;
}

/* The value of xattr name of ino into buf (NUL-free text, *len bytes):
 * 0, -ENODATA, or another negative errno. */
static int xattr_value(struct fs *fs, uint64_t ino, const char *name, char *buf, size_t cap,
		       size_t *len)
{
	struct fs_info info;
	struct be_version ver;
	struct be_entry be;
	char *path = NULL, *rpath = NULL;
	struct err e;
	int rc, i;

	memset(&be, 0, sizeof(be));
	if (!strcmp(name, XA_CTL)) {
		if (ino != INO_ROOT || !fs->ctl_path)
			return -ENODATA;
		*len = (size_t)snprintf(buf, cap, "%s", fs->ctl_path);
		return 0;
	}
	if (strcmp(name, XA_STATE) && strcmp(name, XA_GEN) && strcmp(name, XA_MD5))
		/* Only the user namespace exists here: ENOTSUP for security.*,
		 * system.* ... tells ls(1) to stop asking for SELinux labels and
		 * ACLs on every entry (two round trips each otherwise). */
		return strncmp(name, "user.", 5) ? -ENOTSUP : -ENODATA;
	rc = path_err(ino_path(fs->ino, ino, &path));
	if (rc == 0)
		rc = fs_resolve(fs, path, &info);
	if (rc < 0)
		goto out;
	if (!strcmp(name, XA_STATE)) {
		*len = (size_t)snprintf(buf, cap, "%s", state_name(fs, &info));
	} else if (!strcmp(name, XA_GEN)) {
		if (!info.remote[0] || be_version_parse(info.remote, &ver) < 0 || !ver.gen) {
			rc = -ENODATA;
			goto out;
		}
		*len = (size_t)snprintf(buf, cap, "%" PRId64, ver.gen);
	} else {
		if (info.type != JNL_FILE || !info.remote[0]) {
			rc = -ENODATA;
			goto out;
		}
		rpath = fs_remote_path(fs, path);
		if (!rpath) {
			rc = -ENOMEM;
			goto out;
		}
		if (be_stat(fs->be, rpath, &be, &e) < 0) {
			rc = e.code == ERR_NOTFOUND ? -ENODATA : -EIO;
			goto out;
		}
		if (!be.has_md5) {
			rc = -ENODATA;
			goto out;
		}
		for (i = 0; i < 16 && (size_t)(2 * i + 2) < cap; i++)
			snprintf(buf + 2 * i, 3, "%02x", be.md5[i]);
		*len = 32;
	}
	rc = 0;
out:
	be_entry_release(&be);
	free(rpath);
	free(path);
	return rc;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char buf[4200];
	size_t len = 0;
	int rc = xattr_value(get_fs(req), ino, name, buf, sizeof(buf), &len);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = get_fs(req);
	char buf[256];
	size_t len = 0;

	if (ino == INO_ROOT) {
		if (fs->ctl_path) {
			memcpy(buf, XA_CTL, sizeof(XA_CTL));
			len = sizeof(XA_CTL);
		}
	} else {
		memcpy(buf, XA_STATE, sizeof(XA_STATE));
		len = sizeof(XA_STATE);
		memcpy(buf + len, XA_GEN, sizeof(XA_GEN));
		len += sizeof(XA_GEN);
		memcpy(buf + len, XA_MD5, sizeof(XA_MD5));
		len += sizeof(XA_MD5);
	}
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, !strncmp(name, XA_PREFIX, sizeof(XA_PREFIX) - 1) ? EPERM : ENOTSUP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	fuse_reply_err(req, !strncmp(name, XA_PREFIX, sizeof(XA_PREFIX) - 1) ? EPERM : ENOTSUP);
}

/* ---- the table and the lifecycle ----------------------------------------------------- */

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
};

const struct fuse_lowlevel_ops *fs_lowlevel_ops(void)
{
	return &ops;
}

int fs_new(const struct fs_config *cfg, struct fs **out, struct err *err)
{
	struct fs *fs = NULL;
	uint64_t usage = 0, nfiles = 0;
	struct err e;
	int rc = -1, inited = 0;

	*out = NULL;
	if (!cfg || !cfg->be || !cfg->jnl || !cfg->sched || !cfg->mo || !cfg->files_dir)
		return err_set(err, ERR_INVAL, "fs: incomplete configuration");
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return err_set(err, ERR_NOMEM, "fs: out of memory");
	fs->be = cfg->be;
	fs->jnl = cfg->jnl;
	fs->sched = cfg->sched;
	fs->mo = cfg->mo;
	fs->files_dir = strdup(cfg->files_dir);
	fs->ctl_path = cfg->ctl_path ? strdup(cfg->ctl_path) : NULL;
	if (!fs->files_dir || (cfg->ctl_path && !fs->ctl_path)) {
		err_set(err, ERR_NOMEM, "fs: out of memory");
		goto out;
	}
	if (ino_table_new(&fs->ino) < 0) {
		err_set(err, ERR_NOMEM, "fs: out of memory");
		goto out;
	}
	if (pthread_mutex_init(&fs->ns_lock, NULL) || pthread_mutex_init(&fs->of_lock, NULL) ||
	    pthread_mutex_init(&fs->cache_lock, NULL) || pthread_mutex_init(&fs->dir_lock, NULL) ||
	    pthread_cond_init(&fs->dir_cv, NULL) || pthread_mutex_init(&fs->ren_lock, NULL) ||
	    pthread_mutex_init(&fs->bg_lock, NULL) || pthread_cond_init(&fs->bg_cv, NULL) ||
	    pthread_mutex_init(&fs->dh_lock, NULL)) {
		err_set(err, ERR_NOMEM, "fs: cannot initialise locks");
		goto out;
	}
	inited = 1;
	if (fs_rc_new(&fs->rc) < 0) {
		err_set(err, ERR_NOMEM, "fs: out of memory");
		goto out;
	}
	fs->uid = cfg->mo->has_uid ? cfg->mo->uid : getuid();
	fs->gid = cfg->mo->has_gid ? cfg->mo->gid : getgid();
	fs->file_mode = cfg->mo->file_mode ? cfg->mo->file_mode : 0644;
	fs->dir_mode = cfg->mo->dir_mode ? cfg->mo->dir_mode : 0755;
	fs->ro = cfg->mo->ro;
	fs->ttl_ms = cfg->mo->dir_cache_ttl_ms;
	/* The kernel may keep names and attributes as long as we keep the
	 * listing they come from; our own changes go through the kernel, and
	 * remote ones found by a refetch are invalidated explicitly. */
	fs->attr_timeout = fs->ttl_ms > 0 ? (double)fs->ttl_ms / 1000.0 : 0.0;
	if (fs->attr_timeout > 3600.0)
		fs->attr_timeout = 3600.0;
	fs->mount_ns = fs_now_ns();
	fc_params_default(&fs->fcp, cfg->mo->chunk_size);
	if (jnl_cache_usage(fs->jnl, &usage, &nfiles, &e) == 0)
		atomic_store(&fs->cache_bytes, usage);
	if (fs_ren_load(fs) < 0) {
		err_set(err, ERR_IO, "fs: cannot read the pending renames from the journal");
		goto out;
	}
	if (fs_bg_start(fs) < 0) {
		err_set(err, ERR_NOMEM, "fs: cannot start background threads");
		goto out;
	}
	sch_set_event_fn(fs->sched, fs_on_event, fs);
	if (cfg->mo->poll_interval_ms > 0 && be_has_changes(fs->be) &&
	    fs_poll_start(fs, cfg->mo->poll_interval_ms, &fs->poll, &e) < 0)
		log_warn(FS_TAG, "remote changes are not polled: %s", e.msg);
	if (ctl_route_add("cache", fs_cache_ctl, fs) < 0)
		log_warn(FS_TAG, "`durafs cache` is not served: the control command is taken");
	*out = fs;
	fs = NULL;
	rc = 0;
out:
	if (fs) {
		if (inited) {
			fs->nbg = 0;
			fs_free(fs);
		} else {
			ino_table_free(fs->ino);
			free(fs->files_dir);
			free(fs->ctl_path);
			free(fs);
		}
	}
	return rc;
}

void fs_set_session(struct fs *fs, struct fuse_session *se)
{
	atomic_store(&fs->se, se);
}

void fs_free(struct fs *fs)
{
	size_t b, i;

	if (!fs)
		return;
	fs_poll_stop(fs->poll);
	fs->poll = NULL;
	ctl_route_remove("cache", fs);
	sch_set_event_fn(fs->sched, NULL, NULL);
	fs_bg_stop(fs);
	atomic_store(&fs->se, NULL);
	for (b = 0; b < FS_OF_BUCKETS; b++) {
		struct fs_ofile *of, *next;

		for (of = fs->of[b]; of; of = next) {
			next = of->next;
			if (of->modified)
				log_warn(FS_TAG, "cache file %s still open at unmount with "
					 "unjournaled changes (journal recovery will queue them)",
					 of->cache_name ? of->cache_name : "?");
			if (of->fd >= 0)
				close(of->fd);
			free(of->cache_name);
			free(of->rpath);
			pthread_cond_destroy(&of->cv);
			pthread_mutex_destroy(&of->mu);
			free(of);
		}
	}
	while (fs->dh_head)
		dh_free(fs, fs->dh_head);
	fs_dirs_free(fs);
	log_debug(FS_TAG, "writes: %" PRIu64 " spliced from a pipe, %" PRIu64 " from memory",
		  atomic_load(&fs->wr_spliced), atomic_load(&fs->wr_copied));
	if (fs->rc)
		log_debug(FS_TAG, "resolve cache: %" PRIu64 " hits, %" PRIu64 " misses",
			  atomic_load(&fs->rc->hits), atomic_load(&fs->rc->misses));
	fs_rc_free(fs->rc);
	for (i = 0; i < fs->nren; i++) {
		free(fs->ren[i].from);
		free(fs->ren[i].to);
	}
	free(fs->ren);
	for (i = 0; i < FS_REN_RECENT; i++)
		free(fs->recent[i].to);
	free(fs->rewrite);
	ino_table_free(fs->ino);
	pthread_mutex_destroy(&fs->ns_lock);
	pthread_mutex_destroy(&fs->of_lock);
	pthread_mutex_destroy(&fs->cache_lock);
	pthread_mutex_destroy(&fs->dir_lock);
	pthread_cond_destroy(&fs->dir_cv);
	pthread_mutex_destroy(&fs->ren_lock);
	pthread_mutex_destroy(&fs->bg_lock);
	pthread_cond_destroy(&fs->bg_cv);
	pthread_mutex_destroy(&fs->dh_lock);
	free(fs->files_dir);
	free(fs->ctl_path);
	free(fs);
}

void fs_cache_stats(struct fs *fs, struct fs_cache_stats *out)
{
	struct jnl_file *v = NULL;
	uint64_t bytes = 0, files = 0;
	size_t n = 0, i;
	struct err e;

	memset(out, 0, sizeof(*out));
	if (jnl_cache_usage(fs->jnl, &bytes, &files, &e) == 0) {
		out->clean_bytes = bytes;
		out->clean_files = files;
	}
	if (jnl_dirty_files(fs->jnl, &v, &n, &e) == 0) {
		out->dirty_files = n;
		for (i = 0; i < n; i++)
			out->dirty_bytes += v[i].size;
		jnl_files_free(v, n);
	}
	out->limit = fs->mo->cache_size;
	out->evicted_bytes = atomic_load(&fs->evicted_bytes);
}
