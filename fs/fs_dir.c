/* durafs filesystem core: directories. Stored listings (fetched with
 * be_list into the journal's tables, answered from there, refreshed after
 * the TTL), the merged view of a path or a whole directory, and the table
 * of pending renames that maps local paths to where the remote still has
 * them. */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"
#include "durafs/log.h"

/* ---- small helpers ------------------------------------------------------- */

uint64_t fs_str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The version text of a remote entry, or "" for none (a prefix dir). */
static void remote_text(const struct be_version *v, char *buf, size_t len)
{
	buf[0] = '\0';
	if (v->gen == 0 && v->id[0] == '\0')
		return;
	if (be_version_format(v, buf, len) != 0)
		buf[0] = '\0';
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* ---- directory states ----------------------------------------------------- */

/* The state of dir, created when absent; dir_lock is held. NULL: ENOMEM. */
static struct fs_dstate *dstate(struct fs *fs, const char *dir)
{
	struct fs_dstate *d, **nv;
	size_t b, i;

	if (!fs->dirs) {
		fs->dir_cap = 256;
		fs->dirs = calloc(fs->dir_cap, sizeof(*fs->dirs));
		if (!fs->dirs)
			return NULL;
	}
	b = fs_str_hash(dir) & (fs->dir_cap - 1);
	for (d = fs->dirs[b]; d; d = d->next)
		if (!strcmp(d->path, dir))
			return d;
	if (fs->dir_count >= fs->dir_cap) {
		size_t cap = fs->dir_cap * 2;

		nv = calloc(cap, sizeof(*nv));
		if (nv) {
			for (i = 0; i < fs->dir_cap; i++) {
				struct fs_dstate *n, *next;

				for (n = fs->dirs[i]; n; n = next) {
					next = n->next;
					n->next = nv[fs_str_hash(n->path) & (cap - 1)];
					nv[fs_str_hash(n->path) & (cap - 1)] = n;
				}
			}
			free(fs->dirs);
			fs->dirs = nv;
			fs->dir_cap = cap;
			b = fs_str_hash(dir) & (fs->dir_cap - 1);
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->path = strdup(dir);
	if (!d->path) {
		free(d);
		return NULL;
	}
	d->next = fs->dirs[b];
	fs->dirs[b] = d;
	fs->dir_count++;
	return d;
}

static void fixups_free(struct fs_fixup *f)
{
	while (f) {
		struct fs_fixup *next = f->next;

		free(f->name);
		jnl_entry_release(&f->e);
		free(f);
		f = next;
	}
}

void fs_dirs_free(struct fs *fs)
{
	size_t i;

	for (i = 0; fs->dirs && i < fs->dir_cap; i++) {
		struct fs_dstate *d, *next;

		for (d = fs->dirs[i]; d; d = next) {
			next = d->next;
			fixups_free(d->fixups);
			free(d->path);
			free(d);
		}
	}
	free(fs->dirs);
	fs->dirs = NULL;
}

/* Forget the in-memory state of dir and below; dir_lock is held. */
static void drop_locked(struct fs *fs, const char *dir)
{
	size_t i;

	for (i = 0; fs->dirs && i < fs->dir_cap; i++) {
		struct fs_dstate *d;

		for (d = fs->dirs[i]; d; d = d->next) {
			if (view_path_within(d->path, dir)) {
				d->known = 0;
				d->complete = 0;
				d->epoch++;
			}
		}
	}
}

int fs_dir_change(struct fs *fs, const char *dir, fs_dir_change_fn change, void *ud,
		  struct err *err)
{
	int rc;

	/* Under dir_lock: a fetch stores (and an access loads) a listing
	 * only under that lock after checking its epoch. */
	pthread_mutex_lock(&fs->dir_lock);
	rc = change(ud, err);
	drop_locked(fs, dir);
	pthread_mutex_unlock(&fs->dir_lock);
	return rc;
}

struct forget_ctx {
	struct fs *fs;
	const char *dir;
};

static int forget_change(void *ud, struct err *err)
{
	struct forget_ctx *c = ud;

	return jnl_dir_forget(c->fs->jnl, c->dir, err);
}

int fs_dir_forget(struct fs *fs, const char *dir, struct err *err)
{
	struct forget_ctx c = { fs, dir };

	return fs_dir_change(fs, dir, forget_change, &c, err);
}

void fs_dir_invalidate(struct fs *fs, const char *dir)
{
	struct fs_dstate *d;
	struct err e;

	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	if (d) {
		d->epoch++;
		d->fetched_ms = 0;
		d->inherited = 0;
	}
	if (jnl_dir_stale(fs->jnl, dir, &e) < 0 && e.code != ERR_NOTFOUND) {
		log_warn(FS_TAG, "marking the listing of \"%s\" stale: %s", *dir ? dir : "/",
			 e.msg);
		if (d)
			d->complete = 0;    /* then at least not taken as fresh */
	}
	pthread_mutex_unlock(&fs->dir_lock);
}

void fs_dir_note(struct fs *fs, const char *dir, const char *name,
		 const struct jnl_entry *e)
{
	struct fs_dstate *d;
	struct fs_fixup *f = NULL;
	struct jnl_entry old, keep;
	struct err err;
	int rc;

	/* A commit replacing the placeholder of a pending rename keeps the
	 * flags the placeholder carried (a renamed Docs export). */
	memset(&old, 0, sizeof(old));
	if (e && !e->flags && e->remote &&
	    jnl_entry_get(fs->jnl, dir, name, &old, &err) == 0 && old.flags && !old.remote &&
	    old.type == e->type) {
		keep = *e;
		keep.flags = old.flags;
		e = &keep;
	}
	jnl_entry_release(&old);
	rc = e ? jnl_entry_put(fs->jnl, dir, e, &err) : jnl_entry_del(fs->jnl, dir, name, &err);
	if (rc < 0)
		log_warn(FS_TAG, "record \"%s/%s\" in the stored listing: %s", dir, name, err.msg);
	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	if (d && d->collecting) {
		f = calloc(1, sizeof(*f));
		if (f) {
			f->name = strdup(name);
			f->del = e == NULL;
			if (e) {
				f->e.name = strdup(e->name);
				f->e.type = e->type;
				f->e.size = e->size;
				f->e.mtime_ns = e->mtime_ns;
				f->e.flags = e->flags;
				f->e.remote = e->remote ? strdup(e->remote) : NULL;
			}
			if (!f->name || (e && (!f->e.name || (e->remote && !f->e.remote)))) {
				fixups_free(f);
				f = NULL;
				/* Without the fixup the fetch could store an
				 * older listing: make the next access refetch. */
				d->complete = 0;
			} else {
				f->next = d->fixups;
				d->fixups = f;
			}
		}
	}
	pthread_mutex_unlock(&fs->dir_lock);
}

/* ---- fetching ------------------------------------------------------------- */

/* The node of path in the inode table, if the kernel knows it. */
int fs_path_ino(struct fs *fs, const char *path, uint64_t *ino)
{
	uint64_t cur = INO_ROOT;
	const char *p = path;
	char comp[FS_NAME_MAX + 1];

	while (*p) {
		const char *s = strchr(p, '/');
		size_t l = s ? (size_t)(s - p) : strlen(p);

		if (l == 0 || l > FS_NAME_MAX)
			return -ENOENT;
		memcpy(comp, p, l);
		comp[l] = '\0';
		if (ino_find(fs->ino, cur, comp, &cur) < 0)
			return -ENOENT;
		p = s ? s + 1 : p + l;
	}
	*ino = cur;
	return 0;
}

/* Tell the kernel about names of dir whose remote entry changed between
 * the old and the new listing (both sorted). */
static void notify_changes(struct fs *fs, const char *dir, const struct jnl_entry *o,
			   size_t no, const struct jnl_entry *n, size_t nn)
{
	uint64_t dino, ino;
	size_t i = 0, k = 0;

	if (fs_path_ino(fs, dir, &dino) < 0)
		return;
	while (i < no) {
		int c = k < nn ? strcmp(o[i].name, n[k].name) : -1;
		int changed;

		if (c > 0) {
			k++;
			continue;
		}
		changed = c < 0 || o[i].type != n[k].type || o[i].size != n[k].size ||
			  strcmp(o[i].remote ? o[i].remote : "", n[k].remote ? n[k].remote : "");
		if (changed && ino_find(fs->ino, dino, o[i].name, &ino) == 0) {
			fs_bg_inval_entry(fs, dino, o[i].name);
			fs_bg_inval_inode(fs, ino);
		}
		i++;
		if (c == 0)
			k++;
	}
}

static void apply_fixups(struct fs *fs, const char *dir, struct fs_fixup *f)
{
	struct err e;

	for (; f; f = f->next) {
		int rc = f->del ? jnl_entry_del(fs->jnl, dir, f->name, &e)
				: jnl_entry_put(fs->jnl, dir, &f->e, &e);

		if (rc < 0)
			log_warn(FS_TAG, "re-apply \"%s/%s\" to the stored listing: %s", dir,
				 f->name, e.msg);
	}
}

/* Add to bl (the listing of where the remote had dir) the entries already
 * at dir itself, for a directory rename in progress. 1 when dir exists
 * remotely, 0 when not, or a negative errno. */
static int add_moved(struct fs *fs, const char *dir, int bg, struct be_list *bl)
{
	struct be_list nl;
	const struct be_entry **extra = NULL;
	struct be_entry *ne;
	size_t i, n = 0;
	struct err e;
	int rc = 0;

	memset(&nl, 0, sizeof(nl));
	if (be_list(fs->be, dir, &nl, &e) < 0) {
		if (e.code == ERR_NOTFOUND)
			return 0;
		log_msg(bg ? LOG_LVL_INFO : LOG_LVL_WARN, FS_TAG, "listing \"%s\" failed: %s",
			dir, e.msg);
		return -EIO;
	}
	rc = 1;
	if (nl.n) {
		extra = calloc(nl.n, sizeof(*extra));
		if (!extra) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (i = 0; i < nl.n; i++)
		if (!be_list_find(bl, nl.v[i].name))
			extra[n++] = &nl.v[i];
	for (i = 0; i < n; i++) {
		ne = be_list_add(bl, extra[i]->name, strlen(extra[i]->name));
		if (!ne) {
			rc = -ENOMEM;
			goto out;
		}
		ne->type = extra[i]->type;
		ne->size = extra[i]->size;
		ne->mtime = extra[i]->mtime;
		ne->ver = extra[i]->ver;
		ne->implicit = extra[i]->implicit;
		ne->flags = extra[i]->flags;
	}
	if (n)
		be_list_finish(bl);
	rc = 1;
out:
	free(extra);
	be_list_release(&nl);
	return rc;
}

/* Fetch dir's listing from the remote and store it. notify: compare with
 * the stored one and invalidate the kernel's view of changed names.
 * *fetched gets the time it was taken and *epoch the epoch of dir it was
 * stored under. 0, 1 when dir was forgotten, invalidated or marked stale
 * meanwhile (the result may predate that: nothing was stored), or a
 * negative errno. */
static int dir_fetch(struct fs *fs, const char *dir, int notify, int bg, int64_t *fetched,
		     uint64_t *epoch)
{
	struct be_list bl;
	struct jnl_entry *v = NULL, *old = NULL;
	size_t i, nold = 0;
	struct jnl_file jf;
	struct fs_dstate *d;
	struct fs_fixup *fix = NULL;
	char *rpath = NULL;
	struct err e;
	uint64_t fid;
	int64_t t0 = fs_now_ms(), of_ms;
	int rc = 0, local_dir = 0, complete, found = 1;
	uint64_t e0 = 0;

	memset(&bl, 0, sizeof(bl));
	memset(&jf, 0, sizeof(jf));
	/* From now on, commits noted in dir are kept to be re-applied over
	 * what this fetch stores. */
	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	if (d) {
		d->collecting++;
		e0 = d->epoch;
	}
	pthread_mutex_unlock(&fs->dir_lock);
	if (!d)
		return -ENOMEM;
	if (*dir && jnl_file_lookup(fs->jnl, dir, &fid, NULL) == 0 &&
	    jnl_file_get(fs->jnl, fid, &jf, NULL) == 0) {
		local_dir = 1;
		if (jf.type == JNL_DIR && !jf.base) {
			/* Created here and not yet on the remote: nothing to
			 * list there. */
			goto store;
		}
	}
	rpath = fs_remote_path(fs, dir);
	if (!rpath) {
		rc = -ENOMEM;
		goto out;
	}
	if (be_list(fs->be, rpath, &bl, &e) < 0) {
		if (e.code != ERR_NOTFOUND) {
			pthread_mutex_lock(&fs->dir_lock);
			fs->list_fail_ms = fs_now_ms();
			pthread_mutex_unlock(&fs->dir_lock);
			/* A failed refresh is no error for the user: the stored
			 * listing keeps answering. */
			log_msg(bg ? LOG_LVL_INFO : LOG_LVL_WARN, FS_TAG,
				"listing \"%s\" failed%s: %s", *dir ? dir : "/",
				bg ? " (the stored listing still answers)" : "", e.msg);
			rc = -EIO;
			goto out;
		}
		found = 0;
	}
	pthread_mutex_lock(&fs->dir_lock);
	fs->list_fail_ms = 0;   /* the remote answered */
	pthread_mutex_unlock(&fs->dir_lock);
	if (strcmp(rpath, dir)) {
		/* A rename of this directory (or above) is pending and may be
		 * under way: what it already moved is at the new place. */
		rc = add_moved(fs, dir, bg, &bl);
		if (rc < 0)
			goto out;
		found |= rc;
		rc = 0;
	}
	if (!found && !local_dir) {
		rc = -ENOENT;
		goto out;
	}
	if (bl.n) {
		v = calloc(bl.n, sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (i = 0; i < bl.n; i++) {
		char ver[FS_REMOTE_MAX];

		remote_text(&bl.v[i].ver, ver, sizeof(ver));
		v[i].name = bl.v[i].name;      /* borrowed from bl */
		v[i].type = (int)bl.v[i].type;
		v[i].size = bl.v[i].size;
		v[i].mtime_ns = ts_ns(&bl.v[i].mtime);
		v[i].flags = bl.v[i].flags;
		v[i].remote = ver[0] ? strdup(ver) : NULL;
		if (ver[0] && !v[i].remote) {
			rc = -ENOMEM;
			goto out;
		}
	}
store:
	/* Tell the kernel what changed (bounded: a huge directory's entries
	 * expire with their timeouts, and open() checks the version). */
	if (notify && bl.n <= FS_BIG_NOTIFY &&
	    jnl_dir_get(fs->jnl, dir, &old, &nold, &of_ms, &complete, NULL) == 0)
		notify_changes(fs, dir, old, nold, v, bl.n);
	/* Stored only if nothing forgot or invalidated dir since the fetch
	 * began (fs_dir_forget changes the epoch and the journal under the
	 * same lock). */
	pthread_mutex_lock(&fs->dir_lock);
	if (d->epoch != e0) {
		pthread_mutex_unlock(&fs->dir_lock);
		log_debug(FS_TAG, "the listing of \"%s\" changed while it was fetched: not "
			  "stored", *dir ? dir : "/");
		rc = 1;
		goto out;
	}
	if (jnl_dir_put(fs->jnl, dir, v, bl.n, t0, &e) < 0) {
		pthread_mutex_unlock(&fs->dir_lock);
		log_warn(FS_TAG, "storing the listing of \"%s\": %s", *dir ? dir : "/", e.msg);
		rc = fs_errno(&e);
		goto out;
	}
	fix = d->fixups;
	d->count = bl.n;
	pthread_mutex_unlock(&fs->dir_lock);
	/* The nodes from fix on stay allocated while collecting > 0. */
	apply_fixups(fs, dir, fix);
	*fetched = t0;
	*epoch = e0;
	log_debug(FS_TAG, "listed \"%s\": %zu entries", *dir ? dir : "/", bl.n);
out:
	pthread_mutex_lock(&fs->dir_lock);
	if (--d->collecting == 0) {
		fix = d->fixups;
		d->fixups = NULL;
	} else {
		fix = NULL;
	}
	pthread_mutex_unlock(&fs->dir_lock);
	fixups_free(fix);
	for (i = 0; v && i < bl.n; i++)
		free(v[i].remote);
	free(v);
	jnl_entries_free(old, nold);
	if (bl.n > FS_BIG_DIR) {
		be_list_release(&bl);
		/* Give the listing's memory back to the system. */
		malloc_trim(0);
	}
	be_list_release(&bl);
	jnl_file_release(&jf);
	free(rpath);
	return rc;
}

/* dir_fetch, again while a forget or invalidation overtakes it (at most
 * FS_FETCH_TRIES times, then -EIO). 0 or a negative errno. */
static int dir_fetch_stable(struct fs *fs, const char *dir, int notify, int bg,
			    int64_t *fetched, uint64_t *epoch)
{
	int i, rc = 1;

	for (i = 0; i < FS_FETCH_TRIES && rc == 1; i++)
		rc = dir_fetch(fs, dir, notify, bg, fetched, epoch);
	if (rc == 1) {
		log_msg(bg ? LOG_LVL_INFO : LOG_LVL_WARN, FS_TAG, "listing \"%s\" failed: it "
			"changed on every one of %d fetches", *dir ? dir : "/", FS_FETCH_TRIES);
		rc = -EIO;
	}
	return rc;
}

/* Wait on dir_cv (dir_lock held) until woken or fs_now_ms() reaches
 * deadline_ms. */
static void dir_wait_until(struct fs *fs, int64_t deadline_ms)
{
	struct timespec ts;
	int64_t left = deadline_ms - fs_now_ms();

	if (left <= 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(left / 1000);
	ts.tv_nsec += (long)(left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&fs->dir_cv, &fs->dir_lock, &ts);
}

/* fs_dir_ensure, also giving the epoch of dir under which the stored
 * listing answers (a reader of the journal checks it did not change, see
 * dir_epoch_is). */
static int dir_ensure(struct fs *fs, const char *dir, uint64_t *epoch)
{
	struct fs_dstate *d;
	size_t n = 0;
	int64_t fetched = 0, deadline = 0;
	uint64_t ep = 0;
	int complete = 0, rc = 0, r;
	struct err e;

	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	if (!d) {
		pthread_mutex_unlock(&fs->dir_lock);
		return -ENOMEM;
	}
	for (;;) {
		if (d->fetching) {
			pthread_cond_wait(&fs->dir_cv, &fs->dir_lock);
			continue;
		}
		if (!d->known) {
			/* What the journal stored (a previous mount's listing
			 * answers at once; one marked stale, fetched 0, is
			 * refetched like a listing of this mount). Not taken
			 * when a forget came in between. */
			ep = d->epoch;
			pthread_mutex_unlock(&fs->dir_lock);
			r = jnl_dir_info(fs->jnl, dir, &n, &fetched, &complete, &e);
			pthread_mutex_lock(&fs->dir_lock);
			if (r < 0 && e.code != ERR_NOTFOUND) {
				rc = fs_errno(&e);
				break;
			}
			if (!d->known && !d->fetching && d->epoch == ep) {
				d->count = n;
				d->known = 1;
				d->complete = r == 0 && complete;
				d->fetched_ms = r == 0 ? fetched : 0;
				d->inherited = d->complete && d->fetched_ms != 0;
			}
			continue;
		}
		if (d->complete && fs_now_ms() - d->fetched_ms <= fs->ttl_ms) {
			rc = 0;
			break;
		}
		if (d->complete && (d->inherited || d->count > FS_BIG_DIR ||
				    (fs->list_fail_ms &&
				     fs_now_ms() - fs->list_fail_ms <= fs->ttl_ms))) {
			/* Stored by an earlier mount, too big to relist while
			 * the user waits, or the remote failed a listing
			 * lately: it answers at once and is revalidated in
			 * the background. */
			if (!d->refresh_queued) {
				d->refresh_queued = 1;
				fs_bg_refresh(fs, dir);
			}
			rc = 0;
			break;
		}
		if (d->complete) {
			/* Past the TTL (or marked stale by the change poller):
			 * refetched in the background, which tells the kernel
			 * what changed. The caller waits for it at most
			 * FS_STALE_WAIT_MS; then (or when it failed) the stored
			 * listing answers, and keeps answering at once until a
			 * refetch works. */
			int64_t now = fs_now_ms();

			if (!deadline)
				deadline = now + FS_STALE_WAIT_MS;
			if (!d->refresh_queued) {
				d->refresh_queued = 1;
				fs_bg_refresh_first(fs, dir);
			}
			if (now >= deadline) {
				/* The remote is slow or unreachable: like a
				 * failed listing, other stale listings answer
				 * at once until one works. */
				d->inherited = 1;
				fs->list_fail_ms = now;
				log_info(FS_TAG, "the stored listing of \"%s\" answers: the remote "
					 "did not list it within %d ms (refetched in the "
					 "background)", *dir ? dir : "/", FS_STALE_WAIT_MS);
				rc = 0;
				break;
			}
			dir_wait_until(fs, deadline);
			continue;
		}
		/* Never listed, or forgotten: nothing else can answer. */
		d->fetching = 1;
		pthread_mutex_unlock(&fs->dir_lock);
		rc = dir_fetch_stable(fs, dir, 0, 0, &fetched, &ep);
		pthread_mutex_lock(&fs->dir_lock);
		d->fetching = 0;
		pthread_cond_broadcast(&fs->dir_cv);
		if (rc == 0 && d->epoch != ep)
			continue;   /* forgotten since it was stored: again */
		if (rc == 0) {
			d->known = 1;
			d->complete = 1;
			d->inherited = 0;
			d->fetched_ms = fetched;
		}
		break;
	}
	if (rc == 0 && epoch)
		*epoch = d->epoch;
	pthread_mutex_unlock(&fs->dir_lock);
	return rc;
}

int fs_dir_ensure(struct fs *fs, const char *dir)
{
	return dir_ensure(fs, dir, NULL);
}

/* 1 when dir's epoch is still ep (what was read from its stored listing
 * since dir_ensure gave ep was not forgotten meanwhile). */
static int dir_epoch_is(struct fs *fs, const char *dir, uint64_t ep)
{
	struct fs_dstate *d;
	int same;

	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	same = d && d->epoch == ep;
	pthread_mutex_unlock(&fs->dir_lock);
	return same;
}

int fs_dir_refresh(struct fs *fs, const char *dir)
{
	struct fs_dstate *d;
	int64_t fetched = 0;
	uint64_t ep = 0;
	int rc;

	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	if (!d) {
		pthread_mutex_unlock(&fs->dir_lock);
		return -ENOMEM;
	}
	if (d->fetching || (d->known && d->complete &&
			    fs_now_ms() - d->fetched_ms <= fs->ttl_ms)) {
		/* Someone fetches it or fetched it meanwhile. */
		d->refresh_queued = 0;
		pthread_cond_broadcast(&fs->dir_cv);
		pthread_mutex_unlock(&fs->dir_lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->dir_lock);
	/* Lookups keep answering from the stored listing meanwhile. */
	rc = dir_fetch_stable(fs, dir, 1, 1, &fetched, &ep);
	pthread_mutex_lock(&fs->dir_lock);
	d->refresh_queued = 0;
	pthread_cond_broadcast(&fs->dir_cv);
	if (rc == 0) {
		/* Forgotten since it was stored: the next access fetches. */
		if (d->epoch == ep) {
			if (fetched > d->fetched_ms)
				d->fetched_ms = fetched;
			if (d->known)
				d->complete = 1;
			d->inherited = 0;
		}
	} else if (d->known) {
		/* Keep answering from the stored listing; an access tries
		 * again after another TTL, or FS_STALE_RETRY_MS when that is
		 * shorter (a change the poller reported is not reported
		 * twice). */
		int64_t again = fs->ttl_ms < FS_STALE_RETRY_MS ? fs->ttl_ms : FS_STALE_RETRY_MS;

		d->fetched_ms = fs_now_ms() - fs->ttl_ms + again;
	}
	pthread_mutex_unlock(&fs->dir_lock);
	return rc;
}

/* ---- the merged view -------------------------------------------------------- */

int fs_active(void *ud, const struct jnl_file *f)
{
	struct fs *fs = ud;
	struct err e;

	if (jnl_wait_fid(fs->jnl, f->fid, jnl_last_seq(fs->jnl), 0, JNL_WAIT_SETTLE, &e) == 0)
		return 0;
	switch (e.code) {
	case ERR_TIMEOUT:       /* unfinished ops */
		return 1;
	case ERR_CONFLICT:      /* only a settled conflict: the remote rules */
	case ERR_CANCELED:
		return 0;
	default:                /* a failed op: the local state stays */
		return 1;
	}
}

static void info_from(struct fs_info *out, const struct view_ent *v)
{
	memset(out, 0, sizeof(*out));
	out->type = v->type;
	out->size = v->size;
	out->mtime_ns = v->mtime_ns;
	out->fid = v->fid;
	out->local = (v->flags & VIEW_LOCAL) != 0;
	if (v->remote)
		snprintf(out->remote, sizeof(out->remote), "%s", v->remote);
}

/* 1 when directory state d, at epoch ep, answers now from its stored
 * listing without a fetch or a wait (dir_ensure's first answer): nothing
 * forgot, invalidated or marked it stale since, and it is within the TTL. */
static int dir_answers(struct fs *fs, struct fs_dstate *d, uint64_t ep)
{
	int ok;

	pthread_mutex_lock(&fs->dir_lock);
	ok = d->epoch == ep && d->known && d->complete && !d->fetching &&
	     fs_now_ms() - d->fetched_ms <= fs->ttl_ms;
	pthread_mutex_unlock(&fs->dir_lock);
	return ok;
}

/* dir's state (never freed before fs_free), or NULL out of memory. */
static struct fs_dstate *dir_state(struct fs *fs, const char *dir)
{
	struct fs_dstate *d;

	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	pthread_mutex_unlock(&fs->dir_lock);
	return d;
}

/* An answer of the resolve cache is what the journal reads below would
 * give: it was read from the same journal rows (the generation is the
 * same) and the same stored listing (its epoch is the same), and that
 * listing answers without a fetch now, as it did then. */
int fs_resolve(struct fs *fs, const char *path, struct fs_info *out)
{
	struct jnl_file jf;
	struct jnl_entry le;
	struct view_ent ve;
	struct fs_dstate *cd = NULL;
	char *dir = NULL, **rem = NULL;
	const char *name;
	size_t nrem = 0, i;
	struct err e;
	uint64_t fid, ep = 0, gen = 0, cep = 0;
	int rc, have_j, have_l, removed, tries = 0;

	memset(out, 0, sizeof(*out));
	if (!*path) {
		out->type = JNL_DIR;
		out->mtime_ns = fs->mount_ns;
		return 0;
	}
	if (fs->rc) {
		gen = jnl_gen(fs->jnl);
		if (fs_rc_get(fs->rc, path, gen, out, &cd, &cep) && dir_answers(fs, cd, cep)) {
			atomic_fetch_add(&fs->rc->hits, 1);
			return 0;
		}
		atomic_fetch_add(&fs->rc->misses, 1);
		memset(out, 0, sizeof(*out));
	}
	memset(&jf, 0, sizeof(jf));
	memset(&le, 0, sizeof(le));
	rc = view_split(path, &dir, &name);
	if (rc < 0)
		return rc;
again:
	have_j = have_l = removed = 0;
	rc = dir_ensure(fs, dir, &ep);
	if (rc < 0)
		goto out;
	if (jnl_file_lookup(fs->jnl, path, &fid, &e) == 0) {
		if (jnl_file_get(fs->jnl, fid, &jf, &e) < 0) {
			rc = fs_errno(&e);
			goto out;
		}
		have_j = 1;
	} else if (e.code != ERR_NOTFOUND) {
		rc = fs_errno(&e);
		goto out;
	}
	if (jnl_entry_get(fs->jnl, dir, name, &le, &e) == 0) {
		have_l = 1;
	} else if (e.code != ERR_NOTFOUND) {
		rc = fs_errno(&e);
		goto out;
	}
	if (have_l && !have_j) {
		if (jnl_removed_children(fs->jnl, dir, &rem, &nrem, &e) < 0) {
			rc = fs_errno(&e);
			goto out;
		}
		for (i = 0; i < nrem && !removed; i++)
			removed = !strcmp(rem[i], name);
	}
	rc = view_pick(have_l ? &le : NULL, have_j ? &jf : NULL, removed, fs_active, fs, &ve);
	if (rc < 0)
		goto out;
	if (!dir_epoch_is(fs, dir, ep) && ++tries < FS_FETCH_TRIES) {
		/* The listing was forgotten while read (a committed rename
		 * or rmdir): read the one that replaces it. */
		jnl_names_free(rem, nrem);
		rem = NULL;
		nrem = 0;
		jnl_file_release(&jf);
		jnl_entry_release(&le);
		memset(&jf, 0, sizeof(jf));
		memset(&le, 0, sizeof(le));
		goto again;
	}
	if (rc == 0) {
		rc = -ENOENT;
		goto out;
	}
	info_from(out, &ve);
	/* The remote entry's flags (a read-only export) go with it, also
	 * while it is the placeholder of our own pending rename. */
	if (have_l && (!le.remote || (!out->local && !strcmp(out->remote, le.remote))))
		out->flags = le.flags;
	if (fs->rc && (cd = dir_state(fs, dir)) != NULL)
		fs_rc_put(fs->rc, path, gen, out, cd, ep);
	rc = 0;
out:
	jnl_names_free(rem, nrem);
	jnl_file_release(&jf);
	jnl_entry_release(&le);
	free(dir);
	return rc;
}

int fs_dir_list(struct fs *fs, const char *dir, struct fs_dsnap_ent **vout, size_t *nout,
		char **names_out)
{
	struct jnl_entry *l = NULL;
	struct jnl_file *jv = NULL;
	struct view_ent *m = NULL;
	struct fs_dsnap_ent *v = NULL;
	char **rem = NULL, *names = NULL;
	size_t nl = 0, nj = 0, nrem = 0, n = 0, i, li, total = 0, pos = 0;
	int64_t fetched;
	uint64_t ep = 0;
	int complete, rc, tries = 0;
	struct err e;

	*vout = NULL;
	*nout = 0;
	*names_out = NULL;
again:
	rc = dir_ensure(fs, dir, &ep);
	if (rc < 0)
		goto out;
	if (jnl_dir_get(fs->jnl, dir, &l, &nl, &fetched, &complete, &e) < 0 &&
	    e.code != ERR_NOTFOUND) {
		rc = fs_errno(&e);
		goto out;
	}
	if (jnl_children(fs->jnl, dir, &jv, &nj, &e) < 0 ||
	    jnl_removed_children(fs->jnl, dir, &rem, &nrem, &e) < 0) {
		rc = fs_errno(&e);
		goto out;
	}
	rc = view_merge(l, nl, jv, nj, rem, nrem, fs_active, fs, &m, &n);
	if (rc < 0)
		goto out;
	if (!dir_epoch_is(fs, dir, ep) && ++tries < FS_FETCH_TRIES) {
		/* Forgotten while read: read the listing that replaces it. */
		free(m);
		m = NULL;
		n = 0;
		jnl_entries_free(l, nl);
		l = NULL;
		nl = 0;
		jnl_files_free(jv, nj);
		jv = NULL;
		nj = 0;
		jnl_names_free(rem, nrem);
		rem = NULL;
		nrem = 0;
		goto again;
	}
	for (i = 0; i < n; i++)
		total += strlen(m[i].name) + 1;
	if (n) {
		v = calloc(n, sizeof(*v));
		names = malloc(total);
		if (!v || !names) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (i = 0, li = 0; i < n; i++) {
		size_t len = strlen(m[i].name) + 1;

		/* Both sorted by name: the listing entry shown, if any,
		 * gives the flags. */
		while (li < nl && strcmp(l[li].name, m[i].name) < 0)
			li++;
		if (li < nl && !strcmp(l[li].name, m[i].name) &&
		    (!l[li].remote || (!(m[i].flags & VIEW_LOCAL) && m[i].remote &&
				       !strcmp(l[li].remote, m[i].remote))))
			v[i].flags = l[li].flags;
		memcpy(names + pos, m[i].name, len);
		v[i].name_off = pos;
		v[i].type = m[i].type;
		v[i].size = m[i].size;
		v[i].mtime_ns = m[i].mtime_ns;
		v[i].fid = m[i].fid;
		v[i].local = (m[i].flags & VIEW_LOCAL) != 0;
		pos += len;
	}
	*vout = v;
	*nout = n;
	*names_out = names;
	v = NULL;
	names = NULL;
	rc = 0;
out:
	free(m);
	free(v);
	free(names);
	jnl_entries_free(l, nl);
	jnl_files_free(jv, nj);
	jnl_names_free(rem, nrem);
	if (nl > FS_BIG_DIR)
		malloc_trim(0);     /* the big temporaries go back to the system */
	return rc;
}

/* FNV-1a over n bytes, continuing from h. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	return h;
}

int fs_dir_kcache(struct fs *fs, const char *dir, const struct fs_dsnap_ent *v, size_t n,
		  const char *names)
{
	struct fs_dstate *d;
	uint64_t h = 1469598103934665603ULL;
	int64_t now = fs_now_ms(), life = (int64_t)(fs->attr_timeout * 1000.0);
	size_t i;
	int keep = 0;

	/* Everything a cached dirent or the attributes handed out with it
	 * (readdirplus) carry. */
	h = hash_bytes(h, &n, sizeof(n));
	for (i = 0; i < n; i++) {
		const char *name = names + v[i].name_off;
		uint64_t a[5] = { (uint64_t)v[i].type, v[i].size, (uint64_t)v[i].mtime_ns,
				  (uint64_t)v[i].local, (uint64_t)v[i].flags };

		h = hash_bytes(h, name, strlen(name) + 1);
		h = hash_bytes(h, a, sizeof(a));
	}
	if (h == 0)
		h = 1;
	pthread_mutex_lock(&fs->dir_lock);
	d = dstate(fs, dir);
	if (d) {
		/* Keep a margin: entries must not expire while read from the
		 * cache (an expired one costs a lookup each). */
		keep = d->kc_hash == h && now - d->kc_ms < life / 2;
		if (!keep) {
			d->kc_hash = h;
			d->kc_ms = now;
		}
	}
	pthread_mutex_unlock(&fs->dir_lock);
	return keep;
}

/* ---- pending renames -------------------------------------------------------- */

int fs_ren_add(struct fs *fs, uint64_t seq, uint64_t fid, const char *from, const char *to)
{
	struct fs_ren r = { seq, fid, strdup(from), strdup(to) }, *nv;
	size_t i;
	int rc = 0;

	if (!r.from || !r.to) {
		rc = -ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&fs->ren_lock);
	for (i = 0; i < fs->nren; i++) {
		if (fs->ren[i].seq == seq) {
			pthread_mutex_unlock(&fs->ren_lock);
			goto fail;      /* already known */
		}
	}
	if (fs->nren == fs->capren) {
		size_t cap = fs->capren ? fs->capren * 2 : 16;

		nv = realloc(fs->ren, cap * sizeof(*nv));
		if (!nv) {
			pthread_mutex_unlock(&fs->ren_lock);
			rc = -ENOMEM;
			goto fail;
		}
		fs->ren = nv;
		fs->capren = cap;
	}
	/* Keep seq order (appends are nearly always in order). */
	i = fs->nren;
	while (i > 0 && fs->ren[i - 1].seq > seq) {
		fs->ren[i] = fs->ren[i - 1];
		i--;
	}
	fs->ren[i] = r;
	fs->nren++;
	pthread_mutex_unlock(&fs->ren_lock);
	return 0;
fail:
	free(r.from);
	free(r.to);
	return rc;
}

void fs_ren_drop(struct fs *fs, uint64_t seq)
{
	int64_t now = fs_now_ms();
	size_t i, k;

	pthread_mutex_lock(&fs->ren_lock);
	for (i = 0; i < fs->nren; i++) {
		if (fs->ren[i].seq != seq)
			continue;
		/* Remember where it went for a while (fs_ren_recent). */
		free(fs->ren[i].from);
		fs->ren[i].from = NULL;
		for (k = 0; k < FS_REN_RECENT; k++)
			if (!fs->recent[k].to || now - fs->recent[k].at > FS_REN_RECENT_MS)
				break;
		if (k == FS_REN_RECENT)
			k = (size_t)(seq % FS_REN_RECENT);
		free(fs->recent[k].to);
		fs->recent[k].to = fs->ren[i].to;
		fs->recent[k].at = now;
		memmove(&fs->ren[i], &fs->ren[i + 1], (fs->nren - i - 1) * sizeof(*fs->ren));
		fs->nren--;
		break;
	}
	pthread_mutex_unlock(&fs->ren_lock);
}

int fs_ren_recent(struct fs *fs, const char *path)
{
	int64_t now = fs_now_ms();
	size_t k;
	int hit = 0;

	pthread_mutex_lock(&fs->ren_lock);
	for (k = 0; k < FS_REN_RECENT && !hit; k++)
		hit = fs->recent[k].to && now - fs->recent[k].at <= FS_REN_RECENT_MS &&
		      view_path_within(path, fs->recent[k].to);
	for (k = 0; k < fs->nren && !hit; k++)
		hit = view_path_within(path, fs->ren[k].to);
	pthread_mutex_unlock(&fs->ren_lock);
	return hit;
}

/* view_keep_fn: a pending rename applies until its op has committed
 * (the journal forgets committed ops before the scheduler's event reaches
 * us, so ask the journal rather than trust the table). */
static int ren_pending(void *ud, const struct view_rename *r)
{
	struct fs *fs = ud;
	struct err e;

	if (jnl_wait_fid(fs->jnl, r->fid, r->seq, 0, 0, &e) == 0) {
		fs_ren_drop(fs, r->seq);
		return 0;
	}
	return 1;
}

char *fs_remote_path(struct fs *fs, const char *path)
{
	struct view_rename *v = NULL;
	char **strs = NULL;
	char *out = NULL;
	size_t i, n;

	pthread_mutex_lock(&fs->ren_lock);
	n = fs->nren;
	if (n == 0) {
		pthread_mutex_unlock(&fs->ren_lock);
		return strdup(path);
	}
	v = calloc(n, sizeof(*v));
	strs = calloc(2 * n, sizeof(*strs));
	for (i = 0; v && strs && i < n; i++) {
		v[i].seq = fs->ren[i].seq;
		v[i].fid = fs->ren[i].fid;
		strs[2 * i] = strdup(fs->ren[i].from);
		strs[2 * i + 1] = strdup(fs->ren[i].to);
		v[i].from = strs[2 * i];
		v[i].to = strs[2 * i + 1];
		if (!v[i].from || !v[i].to)
			break;
	}
	pthread_mutex_unlock(&fs->ren_lock);
	/* The table may change while the journal is asked: work on a copy. */
	if (v && strs && i == n)
		out = view_remote_path(v, n, path, ren_pending, fs);
	for (i = 0; strs && i < 2 * n; i++)
		free(strs[i]);
	free(strs);
	free(v);
	return out;
}

int fs_ren_load(struct fs *fs)
{
	struct jnl_op *ops = NULL;
	size_t n = 0, i;
	struct err e;
	int rc = 0;

	if (jnl_list_ops(fs->jnl, JNL_MASK_ALL, 0, &ops, &n, &e) < 0) {
		log_warn(FS_TAG, "reading pending renames: %s", e.msg);
		return fs_errno(&e);
	}
	for (i = 0; i < n && rc == 0; i++)
		if (ops[i].kind == JNL_OP_RENAME && ops[i].base && ops[i].path2 &&
		    ops[i].state != JNL_CONFLICT)
			rc = fs_ren_add(fs, ops[i].seq, ops[i].fid, ops[i].path, ops[i].path2);
	jnl_ops_free(ops, n);
	return rc;
}

void fs_ren_reconcile(struct fs *fs)
{
	struct jnl_op *ops = NULL;
	uint64_t *gone = NULL;
	size_t n = 0, i, k, ngone = 0, nren;
	struct err e;

	pthread_mutex_lock(&fs->ren_lock);
	nren = fs->nren;
	pthread_mutex_unlock(&fs->ren_lock);
	if (nren == 0)
		return;
	if (jnl_list_ops(fs->jnl, JNL_MASK_ALL, 0, &ops, &n, &e) < 0)
		return;
	pthread_mutex_lock(&fs->ren_lock);
	gone = calloc(fs->nren ? fs->nren : 1, sizeof(*gone));
	for (i = 0; gone && i < fs->nren; i++) {
		int found = 0;

		for (k = 0; k < n && !found; k++)
			found = ops[k].seq == fs->ren[i].seq && ops[k].state != JNL_CONFLICT;
		if (!found)
			gone[ngone++] = fs->ren[i].seq;
	}
	pthread_mutex_unlock(&fs->ren_lock);
	for (i = 0; i < ngone; i++)
		fs_ren_drop(fs, gone[i]);
	free(gone);
	jnl_ops_free(ops, n);
}
