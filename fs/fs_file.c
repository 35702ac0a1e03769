/* durafs filesystem core: open files and the read cache. One shared open
 * file per inode holds the cache file; clean remote content is fetched by
 * ranges on demand (with read-ahead, whole small files) into the sparse
 * cache file and recorded in the journal's cache map; written content is a
 * whole local file handed to the journal on flush/release. Eviction of
 * clean cached data lives here too. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"
#include "durafs/log.h"

/* ---- plain I/O ------------------------------------------------------------- */

static ssize_t pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, p + done, len - done, off + (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int fs_cache_path(struct fs *fs, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", fs->files_dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void fs_cache_name_new(char *buf, size_t len)
{
	static _Atomic uint64_t counter;
	uint64_t r[2] = { 0, 0 };
	ssize_t got = getrandom(r, sizeof(r), GRND_NONBLOCK);

	if (got != (ssize_t)sizeof(r)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		r[0] = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
		r[1] = atomic_fetch_add(&counter, 1);
	}
	snprintf(buf, len, "c%016" PRIx64 "%016" PRIx64, r[0], r[1]);
}

/* ---- the table of open files ------------------------------------------------ */

static size_t of_bucket(uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ULL) >> 56) & (FS_OF_BUCKETS - 1);
}

static struct fs_ofile *of_find_locked(struct fs *fs, uint64_t ino)
{
	struct fs_ofile *of;

	for (of = fs->of[of_bucket(ino)]; of; of = of->next)
		if (of->ino == ino)
			return of;
	return NULL;
}

static struct fs_ofile *of_alloc(uint64_t ino)
{
	struct fs_ofile *of = calloc(1, sizeof(*of));
	pthread_rwlockattr_t ra;
	int r;

	if (!of)
		return NULL;
	/* Writer preference: a stream of writes cannot starve a snapshot
	 * copy (fs_of_freeze). */
	if (pthread_rwlockattr_init(&ra) != 0) {
		free(of);
		return NULL;
	}
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	r = pthread_rwlock_init(&of->wlock, &ra);
	pthread_rwlockattr_destroy(&ra);
	if (r != 0) {
		free(of);
		return NULL;
	}
	if (pthread_mutex_init(&of->mu, NULL) != 0) {
		pthread_rwlock_destroy(&of->wlock);
		free(of);
		return NULL;
	}
	if (pthread_cond_init(&of->cv, NULL) != 0) {
		pthread_mutex_destroy(&of->mu);
		pthread_rwlock_destroy(&of->wlock);
		free(of);
		return NULL;
	}
	of->ino = ino;
	of->fd = -1;
	of->refs = 1;
	return of;
}

static void of_free(struct fs_ofile *of)
{
	if (of->fd >= 0)
		close(of->fd);
	free(of->cache_name);
	free(of->rpath);
	pthread_cond_destroy(&of->cv);
	pthread_mutex_destroy(&of->mu);
	pthread_rwlock_destroy(&of->wlock);
	free(of);
}

struct fs_ofile *fs_of_find(struct fs *fs, uint64_t ino)
{
	struct fs_ofile *of;

	pthread_mutex_lock(&fs->of_lock);
	of = fs->of_count ? of_find_locked(fs, ino) : NULL;
	if (of)
		of->refs++;
	pthread_mutex_unlock(&fs->of_lock);
	if (of) {
		int st;

		/* Never wait for an open that is still fetching. */
		pthread_mutex_lock(&of->mu);
		st = of->state;
		pthread_mutex_unlock(&of->mu);
		if (st != 1) {
			fs_of_put(fs, of);
			of = NULL;
		}
	}
	return of;
}

void fs_of_put(struct fs *fs, struct fs_ofile *of)
{
	struct fs_ofile **pp;
	int last = 0;

	if (!of)
		return;
	pthread_mutex_lock(&fs->of_lock);
	if (--of->refs == 0) {
		for (pp = &fs->of[of_bucket(of->ino)]; *pp; pp = &(*pp)->next) {
			if (*pp == of) {
				*pp = of->next;
				fs->of_count--;
				break;
			}
		}
		last = 1;
	}
	pthread_mutex_unlock(&fs->of_lock);
	if (last)
		of_free(of);
}

void fs_of_writer(struct fs_ofile *of, int delta)
{
	pthread_mutex_lock(&of->mu);
	if (delta > 0)
		of->writers++;
	else if (of->writers > 0)
		of->writers--;
	pthread_mutex_unlock(&of->mu);
}

void fs_of_each_fid(struct fs *fs, uint64_t fid, void (*fn)(struct fs *, struct fs_ofile *, void *),
		    void *ud)
{
	struct fs_ofile **v = NULL, *of;
	size_t n = 0, i, b;

	pthread_mutex_lock(&fs->of_lock);
	if (fs->of_count)
		v = calloc(fs->of_count, sizeof(*v));
	for (b = 0; v && b < FS_OF_BUCKETS; b++) {
		for (of = fs->of[b]; of; of = of->next) {
			if (of->fid == fid && of->state == 1 && n < fs->of_count) {
				of->refs++;
				v[n++] = of;
			}
		}
	}
	pthread_mutex_unlock(&fs->of_lock);
	for (i = 0; i < n; i++) {
		fn(fs, v[i], ud);
		fs_of_put(fs, v[i]);
	}
	free(v);
}

/* 1 when an open file uses cache file `name`; of_lock not held. */
static int cache_name_open(struct fs *fs, const char *name)
{
	struct fs_ofile *of;
	size_t b;
	int found = 0;

	pthread_mutex_lock(&fs->of_lock);
	for (b = 0; b < FS_OF_BUCKETS && !found; b++)
		for (of = fs->of[b]; of && !found; of = of->next)
			found = of->cache_name && !strcmp(of->cache_name, name);
	pthread_mutex_unlock(&fs->of_lock);
	return found;
}

/* ---- fetching ------------------------------------------------------------- */

/* Bytes received from the remote are gathered up to this much before they
 * are written to the cache file: one pwrite per 256 KiB rather than one
 * per network read (16 KiB), so the cache file system takes whole files
 * and large folios in one call (the dataset bench's cold epoch spent a
 * quarter of the daemon's CPU in small pwrites). */
#define FETCH_BUF (256 * 1024)

struct fetch_ctx {
	struct fs_ofile *of;
	uint64_t pos;                /* file offset of the next byte received */
	int err;                     /* negative errno of a failed write */
	uint64_t wpos;               /* file offset up to which bytes are written */
	char *buf;                   /* [wpos, pos) not yet written; NULL: none */
	size_t blen;
};

/* Write what is gathered (and wake readers waiting for it). 0 or a
 * negative errno (also kept in c->err). */
static int fetch_flush(struct fetch_ctx *c, const void *data, size_t len)
{
	ssize_t n;

	if (!len)
		return 0;
	n = pwrite_full(c->of->fd, data, len, (off_t)c->wpos);
	if (n < 0) {
		c->err = (int)n;
		return (int)n;
	}
	c->wpos += len;
	pthread_mutex_lock(&c->of->mu);
	c->of->f_done += len;
	/* Wake readers only once the one needing the least has its bytes. */
	if (c->of->f_off + c->of->f_done >= c->of->f_want) {
		c->of->f_want = UINT64_MAX;
		pthread_cond_broadcast(&c->of->cv);
	}
	pthread_mutex_unlock(&c->of->mu);
	return 0;
}

static int fetch_sink(void *ud, const void *data, size_t len)
{
	struct fetch_ctx *c = ud;

	if (!c->buf) {
		if (fetch_flush(c, data, len) < 0)
			return 1;
		c->pos += len;
		return 0;
	}
	while (len) {
		size_t n = len < FETCH_BUF - c->blen ? len : FETCH_BUF - c->blen;

		memcpy(c->buf + c->blen, data, n);
		c->blen += n;
		c->pos += n;
		data = (const char *)data + n;
		len -= n;
		if (c->blen == FETCH_BUF) {
			if (fetch_flush(c, c->buf, c->blen) < 0)
				return 1;
			c->blen = 0;
		}
	}
	return 0;
}

/* Start a fetch at file offset start: a gathering buffer when memory
 * allows (else every network read is written as it comes). */
static void fetch_begin(struct fetch_ctx *c, struct fs_ofile *of, uint64_t start)
{
	if (!c->buf)
		c->buf = malloc(FETCH_BUF);
	c->of = of;
	c->pos = c->wpos = start;
	c->blen = 0;
	c->err = 0;
}

/* End a fetch: write what is still gathered. *got (bytes the remote
 * delivered) is cut to what reached the cache file when a write failed.
 * 0 or the negative errno of a failed write. */
static int fetch_end(struct fetch_ctx *c, uint64_t start, uint64_t *got)
{
	if (c->blen && !c->err)
		(void)fetch_flush(c, c->buf, c->blen);
	c->blen = 0;
	if (c->err && *got > c->wpos - start)
		*got = c->wpos - start;
	return c->err;
}

/* 1 when the remote has a file at path whose version is `remote`. */
static int at_version(struct fs *fs, const char *path, const char *remote)
{
	struct be_entry be;
	char ver[FS_REMOTE_MAX];
	struct err e;
	int hit;

	memset(&be, 0, sizeof(be));
	hit = be_stat(fs->be, path, &be, &e) == 0 && be.type == BE_FILE &&
	      !be_version_format(&be.ver, ver, sizeof(ver)) && !strcmp(ver, remote);
	be_entry_release(&be);
	return hit;
}

/* After a remote read failed with NOTFOUND: if the file moved because of
 * one of our own renames (content unchanged), switch to where and what the
 * remote has now: the journal's new base after a rename of the file, or
 * the current version at the new remote path after a rename of a directory
 * above it (same size; fs_ren_recent). Another writer's change is never
 * followed: the read stays pinned and fails. 1 switched, 0 not. of->mu
 * held. */
static int of_rebase(struct fs *fs, struct fs_ofile *of)
{
	struct jnl_file jf;
	struct be_version ver;
	struct be_entry be;
	char *rp = NULL, remote[FS_REMOTE_MAX];
	struct err e;
	int rc = 0;

	memset(&jf, 0, sizeof(jf));
	memset(&be, 0, sizeof(be));
	if (jnl_file_get(fs->jnl, of->fid, &jf, NULL) < 0)
		return 0;
	if (!jf.path || jf.dirty || !jf.base)
		goto out;
	rp = fs_remote_path(fs, jf.path);
	if (!rp)
		goto out;
	if (strcmp(jf.base, of->remote)) {
		snprintf(remote, sizeof(remote), "%s", jf.base);
		/* A directory rename above re-bases its children on the copies
		 * before it is recorded as committed: while the mapping still
		 * says the old place, the new version is at the local path. */
		if (strcmp(rp, jf.path) && !at_version(fs, rp, remote) &&
		    at_version(fs, jf.path, remote)) {
			free(rp);
			rp = strdup(jf.path);
			if (!rp)
				goto out;
		}
	} else {
		/* Where our rename put it: the current mapping, or (a rename
		 * of a directory above still running) the local path. */
		if (!strcmp(rp, of->rpath)) {
			/* Same place: only a rename of ours that just put a
			 * copy there explains a vanished version. */
			if (!strcmp(jf.path, of->rpath) && !fs_ren_recent(fs, jf.path))
				goto out;
			free(rp);
			rp = strdup(jf.path);
			if (!rp)
				goto out;
		}
		if (be_stat(fs->be, rp, &be, &e) < 0 || be.type != BE_FILE ||
		    be.size != of->rsize || be_version_format(&be.ver, remote, sizeof(remote)))
			goto out;
		if (jnl_file_set_base(fs->jnl, of->fid, remote, &e) < 0)
			log_debug(FS_TAG, "re-base \"%s\": %s", jf.path, e.msg);
	}
	if (be_version_parse(remote, &ver) < 0)
		goto out;
	free(of->rpath);
	of->rpath = rp;
	rp = NULL;
	snprintf(of->remote, sizeof(of->remote), "%s", remote);
	of->p_off = of->p_end = 0;
	rc = 1;
out:
	free(rp);
	be_entry_release(&be);
	jnl_file_release(&jf);
	return rc;
}

/* Fetch [start, end) of the remote content into the cache file. of->mu is
 * held on entry and exit and no other fetch runs. 0 or a negative errno
 * (-ENOSPC when the cache file system is full). */
static int of_fetch(struct fs *fs, struct fs_ofile *of, uint64_t start, uint64_t end)
{
	struct fetch_ctx c = { of, start, 0, start, NULL, 0 };
	struct be_version ver;
	char *rpath = NULL, remote[FS_REMOTE_MAX];
	uint64_t got = 0;
	struct err e;
	int rc = 0, tries = 0;

again:
	if (be_version_parse(of->remote, &ver) < 0) {
		log_error(FS_TAG, "bad remote version \"%s\" for cache file %s", of->remote,
			  of->cache_name);
		free(c.buf);
		return -EIO;
	}
	rpath = strdup(of->rpath);
	if (!rpath) {
		free(c.buf);
		return -ENOMEM;
	}
	snprintf(remote, sizeof(remote), "%s", of->remote);
	of->fetching = 1;
	of->f_off = start;
	of->f_end = end;
	of->f_done = 0;
	of->f_want = UINT64_MAX;
	of->map_empty = 0;
	fetch_begin(&c, of, start);
	pthread_mutex_unlock(&of->mu);

	got = 0;
	rc = be_read(fs->be, rpath, &ver, start, end - start, fetch_sink, &c, &got, &e);
	if (fetch_end(&c, start, &got) < 0 && rc == 0)
		rc = -1;
	if (got > 0) {
		struct err e2;

		if (jnl_cache_add(fs->jnl, of->cache_name, remote, start, got, &e2) < 0)
			log_warn(FS_TAG, "recording cached range of \"%s\": %s", rpath, e2.msg);
		atomic_fetch_add(&fs->cache_bytes, got);
		atomic_fetch_add(&fs->fetched_since_check, got);
	}
	if (rc < 0) {
		if (c.err)
			rc = c.err;
		else if (e.code == ERR_NOTFOUND)
			rc = -ENOENT;
		else if (e.code == ERR_QUOTA || e.code == ERR_RATE)
			rc = -EDQUOT;
		else
			rc = -EIO;
		if (rc == -EDQUOT) {
			struct err adv;

			/* one wording for reads and writes (be_reason_advice) */
			if (be_err_advise(&adv, &e, "read", rpath))
				log_error(FS_TAG, "%s; the read fails with EDQUOT (\"Disk quota "
					  "exceeded\")", adv.msg);
			else
				log_error(FS_TAG, "read \"%s\": Google refuses the download (%s); "
					  "the read fails with EDQUOT (\"Disk quota exceeded\"); "
					  "what to do: wait and retry, rate limits lift within "
					  "minutes (%s)", rpath, e.code == ERR_RATE ? "rate limit" :
					  "quota", e.msg);
		} else if (rc != -ENOSPC && rc != -ENOENT)
			log_warn(FS_TAG, "reading \"%s\" [%" PRIu64 ", %" PRIu64 "): %s", rpath,
				 start, end, c.err ? strerror(-c.err) : e.msg);
	} else if (start + got < end && got == 0) {
		/* The remote object is shorter than the size we were shown. */
		log_warn(FS_TAG, "reading \"%s\": the remote object ended at %" PRIu64
			 " (expected %" PRIu64 " bytes)", rpath, start + got, of->rsize);
		rc = -EIO;
	}
	free(rpath);
	rpath = NULL;
	pthread_mutex_lock(&of->mu);
	of->fetching = 0;
	pthread_cond_broadcast(&of->cv);
	if (rc == -ENOENT && tries++ == 0 && of_rebase(fs, of))
		goto again;
	if (rc == -ENOENT) {
		log_warn(FS_TAG, "\"%s\": the remote version this file was opened at (%s) is "
			 "gone", of->rpath, of->remote);
		rc = -EIO;
	}
	if (atomic_load(&fs->fetched_since_check) > 64ull * 1024 * 1024 ||
	    atomic_load(&fs->cache_bytes) > fs->mo->cache_size)
		fs_bg_evict(fs);
	free(c.buf);
	return rc;
}

struct mem_ctx {
	char *buf;
	size_t len, pos;
};

static int mem_sink(void *ud, const void *data, size_t len)
{
	struct mem_ctx *m = ud;
	size_t n = len < m->len - m->pos ? len : m->len - m->pos;

	memcpy(m->buf + m->pos, data, n);
	m->pos += n;
	return 0;
}

/* The cache file system is full even after eviction: read straight from
 * the remote into buf without caching. */
static ssize_t read_direct(struct fs *fs, struct fs_ofile *of, char *buf, size_t size, off_t off)
{
	struct be_version ver;
	struct mem_ctx m = { buf, size, 0 };
	char *rpath = NULL;
	struct err e;
	int rc;

	pthread_mutex_lock(&of->mu);
	rc = be_version_parse(of->remote, &ver);
	rpath = strdup(of->rpath);
	pthread_mutex_unlock(&of->mu);
	if (rc < 0 || !rpath) {
		free(rpath);
		return -EIO;
	}
	rc = be_read(fs->be, rpath, &ver, (uint64_t)off, size, mem_sink, &m, NULL, &e);
	if (rc < 0)
		log_warn(FS_TAG, "reading \"%s\" (uncached): %s", rpath, e.msg);
	free(rpath);
	return rc < 0 ? -EIO : (ssize_t)m.pos;
}

/* Bytes of [off, off+size) a local (or whole) cache file holds. */
static ssize_t local_span(struct fs_ofile *of, size_t size, off_t off, uint64_t limit)
{
	struct stat st;
	uint64_t len;

	if (limit == UINT64_MAX) {
		if (fstat(of->fd, &st) < 0)
			return -errno;
		len = (uint64_t)st.st_size;
	} else {
		len = limit;
	}
	if ((uint64_t)off >= len)
		return 0;
	return (ssize_t)((uint64_t)off + size <= len ? size : len - (uint64_t)off);
}

/* Remember that [s, e) is present (merged with the known range when they
 * touch). of->mu held. */
static void note_present(struct fs_ofile *of, uint64_t s, uint64_t e)
{
	if (s <= of->p_end && e >= of->p_off && of->p_end > of->p_off) {
		if (s < of->p_off)
			of->p_off = s;
		if (e > of->p_end)
			of->p_end = e;
	} else {
		of->p_off = s;
		of->p_end = e;
	}
}

ssize_t fs_of_read(struct fs *fs, struct fs_ofile *of, size_t size, off_t off, char **mem)
{
	char remote[FS_REMOTE_MAX];
	uint64_t end, fend, moff, mlen;
	struct err e;
	ssize_t n;
	int rc, evicted = 0, empty;

	*mem = NULL;
	pthread_mutex_lock(&of->mu);
	fc_ra_note(&of->ra, (uint64_t)off, size, &fs->fcp);
	for (;;) {
		if (of->local) {
			pthread_mutex_unlock(&of->mu);
			return local_span(of, size, off, UINT64_MAX);
		}
		if (of->whole) {
			n = local_span(of, size, off, of->rsize);
			pthread_mutex_unlock(&of->mu);
			return n;
		}
		if ((uint64_t)off >= of->rsize) {
			pthread_mutex_unlock(&of->mu);
			return 0;
		}
		end = (uint64_t)off + size < of->rsize ? (uint64_t)off + size : of->rsize;
		if (of->p_off <= (uint64_t)off && of->p_end >= end) {
			/* Known present (fetched while this file is open). */
			pthread_mutex_unlock(&of->mu);
			return (ssize_t)(end - (uint64_t)off);
		}
		if (of->fetching) {
			if (of->f_off <= (uint64_t)off && of->f_end >= end) {
				while (of->fetching && of->f_off + of->f_done < end) {
					if (end < of->f_want)
						of->f_want = end;
					pthread_cond_wait(&of->cv, &of->mu);
				}
				if (of->f_off <= (uint64_t)off && of->f_off + of->f_done >= end) {
					pthread_mutex_unlock(&of->mu);
					return (ssize_t)(end - (uint64_t)off);
				}
				continue;
			}
			pthread_cond_wait(&of->cv, &of->mu);
			continue;
		}
		/* Nothing in flight: what is missing? The map is read without
		 * of->mu, under `fetching` (with an empty range, so nobody
		 * mistakes it for a fetch that covers them). */
		of->fetching = 1;
		of->f_off = of->f_end = of->f_done = 0;
		snprintf(remote, sizeof(remote), "%s", of->remote);
		fend = fc_fetch_end(&of->ra, (uint64_t)off, size, of->rsize, &fs->fcp);
		if (fend < end)
			fend = end;
		empty = of->map_empty;
		pthread_mutex_unlock(&of->mu);
		if (empty) {
			moff = (uint64_t)off;
			mlen = fend - moff;
			rc = 0;
		} else {
			rc = jnl_cache_missing(fs->jnl, of->cache_name, remote, (uint64_t)off,
					       end - (uint64_t)off, &moff, &mlen, &e);
			/* Fetch the first missing run from moff, up to fend. */
			if (rc == 0 && mlen)
				rc = jnl_cache_missing(fs->jnl, of->cache_name, remote, moff,
						       fend - moff, &moff, &mlen, &e);
		}
		pthread_mutex_lock(&of->mu);
		of->fetching = 0;
		pthread_cond_broadcast(&of->cv);
		if (rc < 0) {
			pthread_mutex_unlock(&of->mu);
			log_warn(FS_TAG, "read cache map: %s", e.msg);
			return fs_errno(&e);
		}
		if (mlen == 0) {
			if (!strcmp(remote, of->remote))
				note_present(of, (uint64_t)off, end);
			pthread_mutex_unlock(&of->mu);
			return (ssize_t)(end - (uint64_t)off);
		}
		rc = of_fetch(fs, of, moff, moff + mlen);
		if (rc == 0 && !strcmp(remote, of->remote))
			note_present(of, moff, moff + mlen);
		if (rc == -ENOSPC && !evicted) {
			pthread_mutex_unlock(&of->mu);
			fs_cache_evict(fs, mlen + fs->mo->min_free_space);
			evicted = 1;
			pthread_mutex_lock(&of->mu);
			continue;
		}
		if (rc == -ENOSPC) {
			pthread_mutex_unlock(&of->mu);
			*mem = malloc(end - (uint64_t)off);
			if (!*mem)
				return -ENOMEM;
			n = read_direct(fs, of, *mem, end - (uint64_t)off, off);
			if (n < 0) {
				free(*mem);
				*mem = NULL;
			}
			return n;
		}
		if (rc < 0) {
			pthread_mutex_unlock(&of->mu);
			return rc;
		}
	}
}

void fs_of_readahead(struct fs *fs, uint64_t ino)
{
	struct fs_ofile *of = fs_of_find(fs, ino);
	char remote[FS_REMOTE_MAX];
	uint64_t have, end, moff = 0, mlen = 0;
	struct err e;
	int rc;

	if (!of)
		return;
	pthread_mutex_lock(&of->mu);
	if (of->local || of->whole || of->fetching || of->p_end <= of->p_off ||
	    of->ra.next < of->p_off || of->ra.next > of->p_end)
		goto out;
	have = of->p_end;
	if (!fc_prefetch(&of->ra, of->ra.next, have, of->rsize, &fs->fcp, &end))
		goto out;
	/* What of [have, end) is missing (the map is read under `fetching`
	 * with an empty range, as in fs_of_read). */
	of->fetching = 1;
	of->f_off = of->f_end = of->f_done = 0;
	snprintf(remote, sizeof(remote), "%s", of->remote);
	pthread_mutex_unlock(&of->mu);
	rc = jnl_cache_missing(fs->jnl, of->cache_name, remote, have, end - have, &moff, &mlen, &e);
	pthread_mutex_lock(&of->mu);
	of->fetching = 0;
	pthread_cond_broadcast(&of->cv);
	if (rc < 0 || strcmp(remote, of->remote) || of->local || of->whole)
		goto out;
	if (mlen == 0) {
		note_present(of, have, end);
		goto out;
	}
	if (moff != have) {
		/* [have, moff) is there already: remember it, fetch the rest
		 * on the next read. */
		note_present(of, have, moff);
		goto out;
	}
	if (of->fetching)
		goto out;
	rc = of_fetch(fs, of, moff, moff + mlen);
	if (rc == 0 && !strcmp(remote, of->remote))
		note_present(of, moff, moff + mlen);
	else if (rc < 0)
		log_debug(FS_TAG, "read-ahead of cache file %s: %s", of->cache_name, strerror(-rc));
out:
	pthread_mutex_unlock(&of->mu);
	fs_of_put(fs, of);
}

/* Fetch everything still missing so the cache file holds the whole remote
 * content (before a write). of->mu held. */
static int of_make_whole(struct fs *fs, struct fs_ofile *of)
{
	uint64_t moff, mlen;
	struct err e;
	int rc, evicted = 0;

	while (!of->whole) {
		while (of->fetching)
			pthread_cond_wait(&of->cv, &of->mu);
		if (of->whole)
			break;
		rc = of->rsize ? jnl_cache_missing(fs->jnl, of->cache_name, of->remote, 0,
						    of->rsize, &moff, &mlen, &e) : 0;
		if (rc < 0)
			return fs_errno(&e);
		if (!of->rsize)
			mlen = 0;
		if (mlen == 0) {
			if (ftruncate(of->fd, (off_t)of->rsize) < 0)
				return -errno;
			of->whole = 1;
			break;
		}
		rc = of_fetch(fs, of, moff, moff + mlen);
		if (rc == -ENOSPC && !evicted) {
			pthread_mutex_unlock(&of->mu);
			fs_cache_evict(fs, of->rsize + fs->mo->min_free_space);
			pthread_mutex_lock(&of->mu);
			evicted = 1;
			continue;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- opening ----------------------------------------------------------------- */

/* An export was read whole: its stored entry shows the real size from now
 * on (stat, ls -l), until the next listing says otherwise. */
static void note_real_size(struct fs *fs, const char *path, const struct fs_ofile *of)
{
	struct jnl_entry le;
	struct err e;
	const char *name;
	char *dir = NULL;

	memset(&le, 0, sizeof(le));
	if (view_split(path, &dir, &name) < 0)
		return;
	if (jnl_entry_get(fs->jnl, dir, name, &le, &e) == 0 && le.remote &&
	    !strcmp(le.remote, of->remote) && le.size != of->rsize) {
		le.size = of->rsize;
		fs_dir_note(fs, dir, name, &le);
	}
	jnl_entry_release(&le);
	free(dir);
}

/* Read the whole remote content of an entry whose size is only known once
 * read (a Docs export) into the cache file: of->rsize becomes the real
 * size and the file is whole. of is initialising (no other user; of->mu
 * not held). 0 or a negative errno (-EIO when the read fails). */
static int of_load_whole(struct fs *fs, struct fs_ofile *of)
{
	struct fetch_ctx c = { of, 0, 0, 0, NULL, 0 };  /* written as received */
	struct be_version ver;
	uint64_t got = 0;
	struct err e;
	int tries = 0, r;

again:
	if (be_version_parse(of->remote, &ver) < 0)
		return -EIO;
	if (ftruncate(of->fd, 0) < 0)
		return -errno;
	of->f_want = UINT64_MAX;
	c.pos = c.wpos = 0;
	c.err = 0;
	got = 0;
	if (be_read(fs->be, of->rpath, &ver, 0, UINT64_MAX, fetch_sink, &c, &got, &e) < 0) {
		if (!c.err && e.code == ERR_NOTFOUND && tries++ == 0) {
			/* Our own rename committed meanwhile (a new version
			 * of the same document): follow it once. */
			pthread_mutex_lock(&of->mu);
			r = of_rebase(fs, of);
			pthread_mutex_unlock(&of->mu);
			if (r)
				goto again;
		}
		if (!c.err)
			log_warn(FS_TAG, "reading \"%s\": %s", of->rpath, e.msg);
		return c.err ? c.err : -EIO;
	}
	if (ftruncate(of->fd, (off_t)got) < 0)
		return -errno;
	if (got > 0 && jnl_cache_add(fs->jnl, of->cache_name, of->remote, 0, got, &e) < 0)
		log_debug(FS_TAG, "recording cached range of \"%s\": %s", of->rpath, e.msg);
	atomic_fetch_add(&fs->cache_bytes, got);
	of->rsize = got;
	of->whole = 1;
	return 0;
}

/* The remote side of a clean open file of path shown as info: its size,
 * flags and remote path (of->remote set). 0 or a negative errno. */
static int of_remote_init(struct fs *fs, struct fs_ofile *of, const char *path,
			  const struct fs_info *info)
{
	struct be_version ver;

	if (be_version_parse(of->remote, &ver) < 0) {
		log_error(FS_TAG, "\"%s\": bad remote version \"%s\"", path, of->remote);
		return -EIO;
	}
	of->rsize = info->size;
	of->flags = info->flags;
	of->rpath = fs_remote_path(fs, path);
	if (!of->rpath)
		return -ENOMEM;
	return 0;
}

/* Set up of (already in the table, state 0) for the file at path. */
static int of_init(struct fs *fs, struct fs_ofile *of, const char *path)
{
	struct fs_info info;
	struct jnl_file jf;
	struct stat st;
	char name[64], wname[64], cpath[4096];
	const char *cache_name;
	uint64_t fid, moff = 0, mlen = 1, gen = 0;
	struct err e;
	int rc, locked = 0, created = 0, fresh = 0, noted = 0;

	memset(&jf, 0, sizeof(jf));
	name[0] = '\0';
	if (!path)
		return -ESTALE;
	rc = fs_resolve(fs, path, &info);
	if (rc < 0)
		return rc;
	if (info.type == JNL_DIR)
		return -EISDIR;
	if (info.type != JNL_FILE)
		return -ELOOP;
	fid = info.fid;
	if (fid && fs->rc && !info.local && info.remote[0] && info.size > 0 &&
	    !(info.flags & BE_EF_SIZE_UNKNOWN)) {
		/* A clean file this mount found whole in its cache file, the
		 * journal unchanged since (checked under cache_lock, which
		 * eviction holds while it deletes): its row and the cache map
		 * are not read again. */
		pthread_mutex_lock(&fs->cache_lock);
		locked = 1;
		noted = fs_rc_whole(fs->rc, path, jnl_gen(fs->jnl), fid, info.remote, info.size,
				    wname, sizeof(wname));
		if (!noted) {
			pthread_mutex_unlock(&fs->cache_lock);
			locked = 0;
		}
	}
	if (noted) {
		cache_name = wname;
		of->fid = fid;
		snprintf(of->remote, sizeof(of->remote), "%s", info.remote);
		rc = of_remote_init(fs, of, path, &info);
		if (rc < 0)
			goto out;
		of->mtime_ns = info.mtime_ns;
		jnl_cache_touch(fs->jnl, cache_name);
		goto have_row;
	}
	if (fs->rc)
		gen = jnl_gen(fs->jnl);
	if (!fid) {
		if (!info.remote[0]) {
			log_error(FS_TAG, "\"%s\" has no remote version", path);
			return -EIO;
		}
		fs_cache_name_new(name, sizeof(name));
		if (jnl_file_new(fs->jnl, path, JNL_FILE, name, info.remote, info.size,
				 info.mtime_ns, &fid, &e) < 0 && e.code != ERR_EXISTS) {
			rc = fs_errno(&e);
			goto out;
		}
	}
	if (jnl_file_get(fs->jnl, fid, &jf, &e) < 0) {
		rc = fs_errno(&e);
		goto out;
	}
	if (!jf.path) {
		rc = -ENOENT;
		goto out;
	}
	cache_name = jf.cache_name;
	if (!cache_name) {
		fs_cache_name_new(name, sizeof(name));
		if (jnl_file_set_cache(fs->jnl, fid, name, &e) < 0) {
			rc = fs_errno(&e);
			goto out;
		}
		cache_name = name;
	}
	/* A cache name made just now (random) has nothing in the map. */
	fresh = name[0] && !strcmp(cache_name, name);
	of->fid = fid;
	of->local = jf.dirty || !jf.base;
	if (!of->local) {
		/* The view says which remote version shows; a clean file whose
		 * remote changed is re-based on it. */
		snprintf(of->remote, sizeof(of->remote), "%s",
			 info.local || !info.remote[0] ? jf.base : info.remote);
		if (strcmp(of->remote, jf.base) &&
		    jnl_file_set_base(fs->jnl, fid, of->remote, &e) < 0)
			log_debug(FS_TAG, "re-base \"%s\": %s", path, e.msg);
		rc = of_remote_init(fs, of, path, &info);
		if (rc < 0)
			goto out;
	}
	of->mtime_ns = info.local ? jf.mtime_ns : info.mtime_ns;
have_row:
	rc = fs_cache_path(fs, cache_name, cpath, sizeof(cpath));
	if (rc < 0)
		goto out;
	if (!locked) {
		pthread_mutex_lock(&fs->cache_lock);
		locked = 1;
	}
	of->cache_name = strdup(cache_name);
	if (!of->cache_name) {
		rc = -ENOMEM;
		goto out;
	}
	of->fd = open(cpath, O_RDWR | O_CLOEXEC);
	if (of->fd < 0 && errno == ENOENT) {
		of->fd = open(cpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		created = 1;
	}
	if (of->fd < 0) {
		rc = -errno;
		log_error(FS_TAG, "opening cache file of \"%s\": %s", path, strerror(errno));
		goto out;
	}
	if (fstat(of->fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (of->local) {
		if (created && jf.size > 0) {
			log_error(FS_TAG, "the cache file of \"%s\" (%s) is missing: its local "
				  "content is lost", path, cache_name);
			rc = -EIO;
			goto out;
		}
		of->whole = 1;
	} else if (of->flags & BE_EF_SIZE_UNKNOWN) {
		/* read whole below, without the cache lock */
	} else if (of->rsize == 0) {
		of->whole = 1;
	} else if (fresh) {
		of->map_empty = 1;
	} else if (noted && (uint64_t)st.st_size >= of->rsize) {
		of->whole = 1;
	} else {
		if (jnl_cache_missing(fs->jnl, of->cache_name, of->remote, 0, of->rsize,
				      &moff, &mlen, &e) < 0) {
			rc = fs_errno(&e);
			goto out;
		}
		if (mlen == 0 && (uint64_t)st.st_size >= of->rsize) {
			of->whole = 1;
			if (fs->rc && !noted && !created)
				fs_rc_note_whole(fs->rc, path, gen, fid, of->cache_name, of->remote,
						 of->rsize);
		} else if (mlen == 0) {
			/* The map says present but the file is short (deleted
			 * behind our back): forget the map. */
			log_warn(FS_TAG, "cache file %s shorter than its map; dropping it",
				 cache_name);
			if (jnl_cache_drop(fs->jnl, of->cache_name, &e) < 0) {
				rc = fs_errno(&e);
				goto out;
			}
		}
	}
	rc = 0;
out:
	if (locked)
		pthread_mutex_unlock(&fs->cache_lock);
	if (rc == 0 && !of->local && (of->flags & BE_EF_SIZE_UNKNOWN)) {
		rc = of_load_whole(fs, of);
		if (rc == 0)
			note_real_size(fs, path, of);
	}
	jnl_file_release(&jf);
	return rc;
}

int fs_of_get(struct fs *fs, uint64_t ino, const char *path, int writable, int trunc,
	      struct fs_ofile **out)
{
	struct fs_ofile *of;
	int rc, fresh = 0;

	*out = NULL;
	pthread_mutex_lock(&fs->of_lock);
	of = of_find_locked(fs, ino);
	if (of) {
		of->refs++;
	} else {
		of = of_alloc(ino);
		if (!of) {
			pthread_mutex_unlock(&fs->of_lock);
			return -ENOMEM;
		}
		of->next = fs->of[of_bucket(ino)];
		fs->of[of_bucket(ino)] = of;
		fs->of_count++;
		fresh = 1;
	}
	pthread_mutex_unlock(&fs->of_lock);
	if (fresh) {
		rc = of_init(fs, of, path);
		pthread_mutex_lock(&of->mu);
		of->state = rc < 0 ? rc : 1;
		pthread_cond_broadcast(&of->cv);
		pthread_mutex_unlock(&of->mu);
		if (rc < 0) {
			fs_of_put(fs, of);
			return rc;
		}
	}
	pthread_mutex_lock(&of->mu);
	while (of->state == 0)
		pthread_cond_wait(&of->cv, &of->mu);
	rc = of->state < 0 ? of->state : 0;
	if (rc == 0 && writable && (of->flags & BE_EF_READONLY))
		rc = -EACCES;       /* a Docs export */
	if (rc == 0 && writable && trunc) {
		pthread_mutex_unlock(&of->mu);
		rc = fs_of_truncate(fs, of, 0);
		pthread_mutex_lock(&of->mu);
	} else if (rc == 0 && writable) {
		rc = of_make_whole(fs, of);
	}
	pthread_mutex_unlock(&of->mu);
	if (rc < 0) {
		fs_of_put(fs, of);
		return rc;
	}
	*out = of;
	return 0;
}

int fs_of_new(struct fs *fs, uint64_t ino, uint64_t fid, int fd, const char *cache_name,
	      int64_t mtime_ns, struct fs_ofile **out)
{
	struct fs_ofile *of;

	*out = NULL;
	of = of_alloc(ino);
	if (!of) {
		close(fd);
		return -ENOMEM;
	}
	of->fd = fd;
	of->cache_name = strdup(cache_name);
	if (!of->cache_name) {
		of_free(of);
		return -ENOMEM;
	}
	of->fid = fid;
	of->whole = 1;
	of->local = 1;
	of->modified = 1;
	of->mtime_ns = mtime_ns;
	of->state = 1;
	pthread_mutex_lock(&fs->of_lock);
	if (of_find_locked(fs, ino)) {
		pthread_mutex_unlock(&fs->of_lock);
		of_free(of);
		return -EEXIST;
	}
	of->next = fs->of[of_bucket(ino)];
	fs->of[of_bucket(ino)] = of;
	fs->of_count++;
	pthread_mutex_unlock(&fs->of_lock);
	*out = of;
	return 0;
}

/* ---- writing -------------------------------------------------------------------- */

/* A write or truncate changed [lo, hi) of of's content (hi UINT64_MAX: to
 * the end): remembered while a snapshot copy is taken. Called with
 * of->wlock held shared. */
static void of_changed(struct fs_ofile *of, uint64_t lo, uint64_t hi)
{
	pthread_mutex_lock(&of->mu);
	if (of->copying) {
		if (lo < of->cp_lo)
			of->cp_lo = lo;
		if (hi > of->cp_hi)
			of->cp_hi = hi;
	}
	pthread_mutex_unlock(&of->mu);
}

/* Before changing the content: the journal knows it is dirty. */
static int of_dirty(struct fs *fs, struct fs_ofile *of)
{
	struct err e;
	int first;

	if (jnl_file_dirty(fs->jnl, of->fid, NULL, &e) < 0) {
		log_warn(FS_TAG, "marking cache file %s dirty: %s", of->cache_name, e.msg);
		return fs_errno(&e);
	}
	pthread_mutex_lock(&of->mu);
	first = !of->local;
	of->local = 1;
	pthread_mutex_unlock(&of->mu);
	if (first && jnl_cache_drop(fs->jnl, of->cache_name, &e) < 0)
		log_debug(FS_TAG, "dropping the cache map of %s: %s", of->cache_name, e.msg);
	return 0;
}

/* Where a write's bytes come from: memory (mem), or a pipe (pipe >= 0,
 * FUSE's splice read) that is drained as the bytes go into the cache file,
 * done counting what went in already (a retry goes on from there: the pipe
 * cannot give them again). own: mem when src_write had to read the pipe
 * into memory (freed by the caller). */
struct of_src {
	const char *mem;
	int pipe;
	size_t done;
	char *own;
};

/* Read the size - src->done bytes left in src's pipe into memory and make
 * src a memory source of the write's remainder. 0 or a negative errno
 * (-EIO: the pipe holds fewer bytes than the write). */
static int src_to_mem(struct of_src *src, size_t size)
{
	size_t got = 0, want = size - src->done;
	ssize_t n;

	src->own = malloc(want ? want : 1);
	if (!src->own)
		return -ENOMEM;
	while (got < want) {
		n = read(src->pipe, src->own + got, want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;  /* EAGAIN or EOF: fewer bytes than the write */
		got += (size_t)n;
	}
	src->mem = src->own;
	src->pipe = -1;
	return 0;
}

/* Put [off, off+size) of src into fd: size or a negative errno. Memory is
 * written whole each time (a retry rewrites it); a pipe is spliced from
 * where the last attempt stopped (short splices and EINTR go on); where the
 * cache file system cannot splice, what is left in the pipe is read into
 * memory and written from there. */
static ssize_t src_write(struct of_src *src, int fd, size_t size, off_t off)
{
	loff_t pos;
	ssize_t n;
	int rc;

	while (src->pipe >= 0 && src->done < size) {
		pos = (loff_t)off + (loff_t)src->done;
		n = splice(src->pipe, NULL, fd, &pos, size - src->done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
			rc = src_to_mem(src, size);
			if (rc < 0)
				return rc;
			break;
		}
		if (n < 0)
			return errno == EAGAIN ? -EIO : -errno;
		if (n == 0)
			return -EIO;  /* the pipe ended before the write's size */
		src->done += (size_t)n;
	}
	if (src->pipe >= 0)
		return (ssize_t)size;
	if (!src->mem)
		return -EINVAL;
	n = pwrite_full(fd, src->mem, size - src->done, off + (off_t)src->done);
	return n < 0 ? n : (ssize_t)size;
}

static ssize_t of_write(struct fs *fs, struct fs_ofile *of, struct of_src *src, size_t size,
			off_t off)
{
	ssize_t n;
	int rc;

	if (!of->whole)
		return -EBADF;
	rc = of_dirty(fs, of);
	if (rc < 0)
		return rc;
	if (fs->sched)
		sch_note_write(fs->sched, of->fid, (uint64_t)off);  /* append tracking */
	pthread_rwlock_rdlock(&of->wlock);
	n = src_write(src, of->fd, size, off);
	of_changed(of, (uint64_t)off, (uint64_t)off + size);
	pthread_rwlock_unlock(&of->wlock);
	if (n == -ENOSPC || n == -EDQUOT) {
		/* Make room by dropping clean cached data, then try once
		 * more; a full disk stays ENOSPC for the writer. */
		if (fs_cache_evict(fs, size + fs->mo->min_free_space) > 0) {
			pthread_rwlock_rdlock(&of->wlock);
			n = src_write(src, of->fd, size, off);
			of_changed(of, (uint64_t)off, (uint64_t)off + size);
			pthread_rwlock_unlock(&of->wlock);
		}
	}
	if (fs->sched)
		sch_note_write_end(fs->sched, of->fid, (uint64_t)off);
	pthread_mutex_lock(&of->mu);
	of->modified = 1;
	of->mtime_ns = fs_now_ns();
	pthread_mutex_unlock(&of->mu);
	return n;
}

ssize_t fs_of_write(struct fs *fs, struct fs_ofile *of, const char *buf, size_t size,
		    off_t off)
{
	struct of_src src = { .mem = buf, .pipe = -1, .done = 0, .own = NULL };

	atomic_fetch_add(&fs->wr_copied, 1);
	return of_write(fs, of, &src, size, off);
}

ssize_t fs_of_write_pipe(struct fs *fs, struct fs_ofile *of, int pipe, size_t size, off_t off)
{
	struct of_src src = { .mem = NULL, .pipe = pipe, .done = 0, .own = NULL };
	ssize_t n;

	atomic_fetch_add(&fs->wr_spliced, 1);
	n = of_write(fs, of, &src, size, off);
	free(src.own);
	return n;
}

int fs_of_truncate(struct fs *fs, struct fs_ofile *of, uint64_t size)
{
	int rc;

	pthread_mutex_lock(&of->mu);
	if (of->flags & BE_EF_READONLY)
		rc = -EACCES;       /* a Docs export */
	else if (!of->whole && size > 0)
		rc = of_make_whole(fs, of);
	else
		rc = 0;
	pthread_mutex_unlock(&of->mu);
	if (rc < 0)
		return rc;
	rc = of_dirty(fs, of);
	if (rc < 0)
		return rc;
	if (fs->sched)
		sch_note_write(fs->sched, of->fid, size);  /* append tracking */
	pthread_rwlock_rdlock(&of->wlock);
	rc = ftruncate(of->fd, (off_t)size) < 0 ? -errno : 0;
	of_changed(of, size, UINT64_MAX);
	pthread_rwlock_unlock(&of->wlock);
	if (fs->sched)
		sch_note_write_end(fs->sched, of->fid, size);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&of->mu);
	of->whole = 1;
	of->modified = 1;
	of->mtime_ns = fs_now_ns();
	pthread_mutex_unlock(&of->mu);
	return 0;
}

int fs_of_fallocate(struct fs *fs, struct fs_ofile *of, int mode, uint64_t off, uint64_t len)
{
	const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
	int rc, changes = mode != FALLOC_FL_KEEP_SIZE;

	if ((mode & ~known) || ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) ||
	    ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE)))
		return -EOPNOTSUPP;
	if (len == 0 || off > INT64_MAX || len > (uint64_t)INT64_MAX - off)
		return -EINVAL;
	pthread_mutex_lock(&of->mu);
	if (of->flags & BE_EF_READONLY)
		rc = -EACCES;       /* a Docs export */
	else if (!of->whole)
		rc = of_make_whole(fs, of);
	else
		rc = 0;
	pthread_mutex_unlock(&of->mu);
	if (rc < 0)
		return rc;
	if (changes) {
		rc = of_dirty(fs, of);
		if (rc < 0)
			return rc;
		if (fs->sched)
			sch_note_write(fs->sched, of->fid, off);  /* append tracking */
	}
	pthread_rwlock_rdlock(&of->wlock);
	rc = fallocate(of->fd, mode, (off_t)off, (off_t)len) < 0 ? -errno : 0;
	if (changes)
		of_changed(of, off, off + len);
	pthread_rwlock_unlock(&of->wlock);
	if (changes && fs->sched)
		sch_note_write_end(fs->sched, of->fid, off);
	if (rc < 0 || !changes)
		return rc;
	pthread_mutex_lock(&of->mu);
	of->modified = 1;
	of->mtime_ns = fs_now_ns();
	pthread_mutex_unlock(&of->mu);
	return 0;
}

/* Copy [off, off+len) of src to the same offsets of dst: copy_file_range
 * (a reflink or an in-kernel copy where the file system can), else read
 * and write. 0 or a negative errno. When src ends before off+len: 0 with
 * eof_ok (what there was is copied), -EIO otherwise. */
static int copy_range(int src, int dst, uint64_t off, uint64_t len, int eof_ok)
{
	enum { BUFSZ = 1 << 20 };
	char *buf = NULL;
	uint64_t done = 0;
	loff_t in = (loff_t)off, out = (loff_t)off;
	ssize_t n, w;
	int rc = 0, plain = 0;

	while (done < len && !plain) {
		n = copy_file_range(src, &in, dst, &out,
				    (size_t)(len - done > (1u << 30) ? (1u << 30) : len - done), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			      errno == EOPNOTSUPP || errno == EBADF)) {
			plain = 1;
			break;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return eof_ok ? 0 : -EIO;
		done += (uint64_t)n;
	}
	if (!plain)
		return 0;
	buf = malloc(BUFSZ);
	if (!buf)
		return -ENOMEM;
	while (done < len) {
		size_t want = len - done > BUFSZ ? BUFSZ : (size_t)(len - done);

		n = pread(src, buf, want, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : eof_ok ? 0 : -EIO;
			goto out;
		}
		w = pwrite_full(dst, buf, (size_t)n, (off_t)(off + done));
		if (w < 0) {
			rc = (int)w;
			goto out;
		}
		done += (uint64_t)n;
	}
out:
	free(buf);
	return rc;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(struct fs_ofile *const *)a;
	uintptr_t y = (uintptr_t)*(struct fs_ofile *const *)b;

	return x < y ? -1 : x > y;
}

/* The open files of fid (state ready), each with a reference: *v (free it
 * after fs_of_put of each), *n. -1 when out of memory. */
static int of_all_of_fid(struct fs *fs, uint64_t fid, struct fs_ofile ***v, size_t *n)
{
	struct fs_ofile *of;
	size_t b;
	int rc = 0;

	*v = NULL;
	*n = 0;
	pthread_mutex_lock(&fs->of_lock);
	if (fs->of_count) {
		*v = calloc(fs->of_count, sizeof(**v));
		rc = *v ? 0 : -1;
	}
	for (b = 0; *v && b < FS_OF_BUCKETS; b++)
		for (of = fs->of[b]; of; of = of->next)
			if (of->fid == fid && of->state == 1 && *n < fs->of_count) {
				of->refs++;
				(*v)[(*n)++] = of;
			}
	pthread_mutex_unlock(&fs->of_lock);
	if (*n > 1)
		qsort(*v, *n, sizeof(**v), cmp_ptr);
	return rc;
}

/* How the copy goes: the whole content is copied while the writer goes on,
 * with every change made meanwhile remembered (of_changed); then, with the
 * writes held, the remembered range is copied again and the size set. The
 * writer waits only for that second pass (the new tail of a growing log,
 * all of a file rewritten meanwhile). A second copy of the same file at
 * the same time (not expected: one upload per file at a time) holds the
 * writes for the whole copy instead. */
int fs_of_freeze(void *ud, uint64_t fid, int dst, struct err *err)
{
	struct fs *fs = ud;
	struct fs_ofile **v = NULL, *src = NULL;
	struct statvfs sv;
	struct stat st;
	uint64_t lo = UINT64_MAX, hi = 0, size;
	size_t n = 0, i, b;
	int rc = 0, r, mine = 0, locked = 0;

	if (of_all_of_fid(fs, fid, &v, &n) < 0)
		return err_set(err, ERR_NOMEM, "snapshot copy: out of memory");
	for (i = 0; i < n && !src; i++) {
		pthread_mutex_lock(&v[i]->mu);
		if (v[i]->writers > 0 && v[i]->whole && v[i]->fd >= 0)
			src = v[i];
		pthread_mutex_unlock(&v[i]->mu);
	}
	if (!src)
		goto out;
	if (fstat(src->fd, &st) < 0) {
		rc = err_sys(err, "snapshot copy of %s", src->cache_name);
		goto out;
	}
	if (statvfs(fs->files_dir, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < (uint64_t)st.st_size + fs->mo->min_free_space) {
		log_debug(FS_TAG, "snapshot of %s: no room for a copy of %lld bytes; the open "
			  "file is sent itself", src->cache_name, (long long)st.st_size);
		goto out;
	}
	/* First pass, the writer going on; the remembered ranges are ours
	 * only if no other copy of these files runs. */
	for (mine = 1, i = 0; i < n && mine; i++) {
		pthread_mutex_lock(&v[i]->mu);
		if (v[i]->copying) {
			mine = 0;
		} else {
			v[i]->copying = 1;
			v[i]->cp_lo = UINT64_MAX;
			v[i]->cp_hi = 0;
		}
		pthread_mutex_unlock(&v[i]->mu);
	}
	if (!mine) {
		for (b = 0; b + 1 < i; b++) {
			pthread_mutex_lock(&v[b]->mu);
			v[b]->copying = 0;
			pthread_mutex_unlock(&v[b]->mu);
		}
	}
	if (mine) {
		/* A truncate meanwhile is remembered: a short copy is fine. */
		r = copy_range(src->fd, dst, 0, (uint64_t)st.st_size, 1);
		if (r < 0) {
			errno = -r;
			rc = err_sys(err, "snapshot copy of %s", src->cache_name);
			goto out;
		}
	}
	/* Second pass with every write of fid held (locks taken in one
	 * order: no deadlock between two copies). */
	for (i = 0; i < n; i++)
		pthread_rwlock_wrlock(&v[i]->wlock);
	locked = 1;
	if (mine) {
		for (i = 0; i < n; i++) {
			pthread_mutex_lock(&v[i]->mu);
			if (v[i]->cp_lo < lo)
				lo = v[i]->cp_lo;
			if (v[i]->cp_hi > hi)
				hi = v[i]->cp_hi;
			pthread_mutex_unlock(&v[i]->mu);
		}
	} else {
		lo = 0;
		hi = UINT64_MAX;
	}
	if (fstat(src->fd, &st) < 0) {
		rc = err_sys(err, "snapshot copy of %s", src->cache_name);
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (ftruncate(dst, (off_t)size) < 0) {
		rc = err_sys(err, "snapshot copy of %s", src->cache_name);
		goto out;
	}
	if (hi > size)
		hi = size;
	if (lo < hi) {
		r = copy_range(src->fd, dst, lo, hi - lo, 0);
		if (r < 0) {
			errno = -r;
			rc = err_sys(err, "snapshot copy of %s", src->cache_name);
			goto out;
		}
	}
	rc = 1;
out:
	if (mine)
		for (i = 0; i < n; i++) {
			pthread_mutex_lock(&v[i]->mu);
			v[i]->copying = 0;
			pthread_mutex_unlock(&v[i]->mu);
		}
	for (i = n; locked && i > 0; i--)
		pthread_rwlock_unlock(&v[i - 1]->wlock);
	for (i = 0; i < n; i++)
		fs_of_put(fs, v[i]);
	free(v);
	return rc;
}

int fs_of_commit(struct fs *fs, struct fs_ofile *of, int64_t delay_ms)
{
	struct stat st;
	struct err e;
	int64_t mtime;
	uint64_t seq;

	pthread_mutex_lock(&of->mu);
	if (!of->modified) {
		pthread_mutex_unlock(&of->mu);
		return 0;
	}
	of->modified = 0;
	mtime = of->mtime_ns;
	pthread_mutex_unlock(&of->mu);
	if (fstat(of->fd, &st) < 0)
		goto fail_errno;
	if (jnl_write(fs->jnl, of->fid, (uint64_t)st.st_size, mtime,
		      delay_ms >= 0 ? delay_ms : fs->mo->writeback_delay_ms, &seq, &e) < 0) {
		log_warn(FS_TAG, "journaling cache file %s: %s (will retry)", of->cache_name,
			 e.msg);
		pthread_mutex_lock(&of->mu);
		of->modified = 1;
		pthread_mutex_unlock(&of->mu);
		fs_bg_rewrite(fs, of->fid);
		return fs_errno(&e);
	}
	return 0;
fail_errno:
	{
		int saved = errno;

		pthread_mutex_lock(&of->mu);
		of->modified = 1;
		pthread_mutex_unlock(&of->mu);
		return -saved;
	}
}

int fs_of_attr(struct fs_ofile *of, uint64_t *size, int64_t *mtime_ns)
{
	struct stat st;
	int local;

	pthread_mutex_lock(&of->mu);
	local = of->local;
	*mtime_ns = of->mtime_ns;
	pthread_mutex_unlock(&of->mu);
	if (!local || fstat(of->fd, &st) < 0)
		return 0;
	*size = (uint64_t)st.st_size;
	return 1;
}

/* ---- the cache after commits and conflicts ----------------------------------------- */

struct rebase_ctx {
	const struct jnl_file *f;
	const char *remote;
	uint64_t size;
	int drop;                   /* conflict: the local content is not it */
};

static void rebase_of(struct fs *fs, struct fs_ofile *of, void *ud)
{
	struct rebase_ctx *c = ud;
	char *rp = fs_remote_path(fs, c->f->path);

	pthread_mutex_lock(&of->mu);
	/* A conflict leaves an open writer on its own content: its next
	 * upload replaces the remote version (the journal's rule). */
	if (!of->modified && rp && !(c->drop && of->writers)) {
		of->local = 0;
		of->map_empty = 0;  /* the map is the one to ask now */
		if (c->drop) {
			of->whole = 0;
			of->p_off = of->p_end = 0;
		}
		snprintf(of->remote, sizeof(of->remote), "%s", c->remote);
		of->rsize = c->size;
		free(of->rpath);
		of->rpath = rp;
		rp = NULL;
	}
	pthread_mutex_unlock(&of->mu);
	free(rp);
}

void fs_cache_committed(struct fs *fs, const struct jnl_file *f)
{
	struct rebase_ctx c = { f, f->base, 0, 0 };
	char cpath[4096];
	struct stat st;
	struct err e;

	if (!f->path || f->dirty || !f->base || !f->cache_name || f->type != JNL_FILE)
		return;
	if (fs_cache_path(fs, f->cache_name, cpath, sizeof(cpath)) < 0 ||
	    stat(cpath, &st) < 0)
		return;
	c.size = (uint64_t)st.st_size;
	if (c.size > 0) {
		if (jnl_cache_add(fs->jnl, f->cache_name, f->base, 0, c.size, &e) < 0) {
			log_debug(FS_TAG, "caching committed %s: %s", f->path, e.msg);
			return;
		}
		atomic_fetch_add(&fs->cache_bytes, c.size);
	}
	fs_of_each_fid(fs, f->fid, rebase_of, &c);
}

void fs_cache_conflict(struct fs *fs, const struct jnl_file *f)
{
	struct rebase_ctx c = { f, f->base, 0, 1 };
	struct be_entry be;
	char cpath[4096], *rp = NULL;
	struct err e;
	int fd;

	memset(&be, 0, sizeof(be));
	if (!f->path || f->dirty || !f->base || !f->cache_name || f->type != JNL_FILE)
		return;
	if (jnl_cache_drop(fs->jnl, f->cache_name, &e) < 0)
		log_debug(FS_TAG, "dropping the cache map of %s: %s", f->path, e.msg);
	rp = fs_remote_path(fs, f->path);
	if (rp && be_stat(fs->be, rp, &be, &e) == 0)
		c.size = be.size;
	free(rp);
	be_entry_release(&be);
	fs_of_each_fid(fs, f->fid, rebase_of, &c);
	pthread_mutex_lock(&fs->cache_lock);
	if (!cache_name_open(fs, f->cache_name) &&
	    fs_cache_path(fs, f->cache_name, cpath, sizeof(cpath)) == 0) {
		fd = open(cpath, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
	}
	pthread_mutex_unlock(&fs->cache_lock);
}

/* ---- eviction ---------------------------------------------------------------------- */

int fs_cache_drop_one(struct fs *fs, uint64_t fid, const char *name, uint64_t bytes)
{
	struct jnl_file jf;
	char cpath[4096];
	struct err e;
	uint64_t cur;
	int rc = 0;

	memset(&jf, 0, sizeof(jf));
	pthread_mutex_lock(&fs->cache_lock);
	if (cache_name_open(fs, name)) {
		rc = -EBUSY;
		goto out;
	}
	/* Re-checked under cache_lock: a writer opens (and so shows in the
	 * table) before it dirties the file. */
	if (jnl_file_get(fs->jnl, fid, &jf, &e) < 0) {
		rc = e.code == ERR_NOTFOUND ? 0 : fs_errno(&e);
		goto out;
	}
	if (jf.dirty || !jf.base || !jf.cache_name || strcmp(jf.cache_name, name)) {
		rc = -EAGAIN;
		goto out;
	}
	rc = fs_cache_path(fs, name, cpath, sizeof(cpath));
	if (rc < 0)
		goto out;
	if (unlink(cpath) < 0 && errno != ENOENT) {
		rc = -errno;
		goto out;
	}
	if (jnl_cache_drop(fs->jnl, name, &e) < 0)
		log_warn(FS_TAG, "dropping the cache map of %s: %s", name, e.msg);
	cur = atomic_load(&fs->cache_bytes);
	while (!atomic_compare_exchange_weak(&fs->cache_bytes, &cur, cur > bytes ? cur - bytes : 0))
		;
out:
	pthread_mutex_unlock(&fs->cache_lock);
	jnl_file_release(&jf);
	return rc;
}

uint64_t fs_cache_evict(struct fs *fs, uint64_t need)
{
	struct jnl_cache_file *v = NULL;
	struct statvfs sv;
	uint64_t freed = 0, fs_free = UINT64_MAX, usage, cur, nfiles;
	size_t n = 0, i, limit;
	char cpath[4096];
	struct err e;
	int progress;

	if (need == 0) {
		if (jnl_cache_usage(fs->jnl, &usage, &nfiles, &e) == 0)
			atomic_store(&fs->cache_bytes, usage);
		usage = atomic_load(&fs->cache_bytes);
		if (statvfs(fs->files_dir, &sv) == 0)
			fs_free = (uint64_t)sv.f_bavail * sv.f_frsize;
		need = fc_evict_need(usage, fs->mo->cache_size, fs_free, fs->mo->min_free_space);
		atomic_store(&fs->fetched_since_check, 0);
	}
	while (freed < need) {
		pthread_mutex_lock(&fs->of_lock);
		limit = 64 + fs->of_count;
		pthread_mutex_unlock(&fs->of_lock);
		if (jnl_cache_lru(fs->jnl, limit, &v, &n, &e) < 0) {
			log_warn(FS_TAG, "eviction: %s", e.msg);
			break;
		}
		progress = 0;
		for (i = 0; i < n && freed < need; i++) {
			pthread_mutex_lock(&fs->cache_lock);
			if (cache_name_open(fs, v[i].name) ||
			    fs_cache_path(fs, v[i].name, cpath, sizeof(cpath)) < 0) {
				pthread_mutex_unlock(&fs->cache_lock);
				continue;
			}
			if (unlink(cpath) < 0 && errno != ENOENT) {
				log_warn(FS_TAG, "evicting %s: %s", v[i].name, strerror(errno));
				pthread_mutex_unlock(&fs->cache_lock);
				continue;
			}
			if (jnl_cache_drop(fs->jnl, v[i].name, &e) < 0)
				log_warn(FS_TAG, "evicting %s: %s", v[i].name, e.msg);
			pthread_mutex_unlock(&fs->cache_lock);
			freed += v[i].bytes;
			progress++;
		}
		jnl_cache_files_free(v, n);
		v = NULL;
		if (!progress)
			break;
	}
	if (freed) {
		cur = atomic_load(&fs->cache_bytes);
		while (!atomic_compare_exchange_weak(&fs->cache_bytes, &cur,
						     cur > freed ? cur - freed : 0))
			;
		atomic_fetch_add(&fs->evicted_bytes, freed);
		log_debug(FS_TAG, "evicted %" PRIu64 " bytes of clean cache", freed);
	}
	return freed;
}
