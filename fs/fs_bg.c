/* durafs filesystem core: background work and scheduler events. Two
 * threads run queued tasks (kernel cache invalidations, which must never
 * be sent from inside a FUSE request; listing refreshes; eviction) and
 * periodic housekeeping; scheduler events update the stored listings and
 * the read cache and queue the invalidations. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs_i.h"
#include "durafs/log.h"

#define HOUSEKEEP_MS 5000

static void push(struct fs *fs, struct fs_task *t, int first)
{
	pthread_mutex_lock(&fs->bg_lock);
	if (fs->bg_stop) {
		pthread_mutex_unlock(&fs->bg_lock);
		free(t->name);
		free(t);
		return;
	}
	t->next = NULL;
	if (first) {
		t->next = fs->tq_head;
		fs->tq_head = t;
		if (!fs->tq_tail)
			fs->tq_tail = t;
	} else if (fs->tq_tail) {
		fs->tq_tail->next = t;
		fs->tq_tail = t;
	} else {
		fs->tq_head = fs->tq_tail = t;
	}
	pthread_cond_signal(&fs->bg_cv);
	pthread_mutex_unlock(&fs->bg_lock);
}

static void queue(struct fs *fs, int kind, uint64_t ino, const char *name, int first)
{
	struct fs_task *t = calloc(1, sizeof(*t));

	if (!t)
		return;
	t->kind = kind;
	t->ino = ino;
	if (name) {
		t->name = strdup(name);
		if (!t->name) {
			free(t);
			return;
		}
	}
	push(fs, t, first);
}

void fs_bg_inval_inode(struct fs *fs, uint64_t ino)
{
	queue(fs, FS_T_INVAL_INODE, ino, NULL, 0);
}

void fs_bg_inval_entry(struct fs *fs, uint64_t parent, const char *name)
{
	queue(fs, FS_T_INVAL_ENTRY, parent, name, 0);
}

void fs_bg_inval_path(struct fs *fs, const char *path)
{
	char *dir = NULL;
	const char *name;
	uint64_t dino, ino;

	if (!*path || view_split(path, &dir, &name) < 0)
		return;
	if (fs_path_ino(fs, dir, &dino) == 0) {
		fs_bg_inval_entry(fs, dino, name);
		if (ino_find(fs->ino, dino, name, &ino) == 0) {
			ino_set_tag(fs->ino, ino, 0);
			fs_bg_inval_inode(fs, ino);
		}
	}
	free(dir);
}

void fs_bg_refresh(struct fs *fs, const char *dir)
{
	queue(fs, FS_T_REFRESH, 0, dir, 0);
}

void fs_bg_refresh_first(struct fs *fs, const char *dir)
{
	queue(fs, FS_T_REFRESH, 0, dir, 1);
}

void fs_bg_evict(struct fs *fs)
{
	pthread_mutex_lock(&fs->bg_lock);
	if (fs->evict_queued) {
		pthread_mutex_unlock(&fs->bg_lock);
		return;
	}
	fs->evict_queued = 1;
	pthread_mutex_unlock(&fs->bg_lock);
	queue(fs, FS_T_EVICT, 0, NULL, 0);
}

void fs_bg_rewrite(struct fs *fs, uint64_t fid)
{
	size_t i;

	pthread_mutex_lock(&fs->bg_lock);
	for (i = 0; i < fs->nrewrite; i++)
		if (fs->rewrite[i] == fid)
			goto out;
	if (fs->nrewrite == fs->caprewrite) {
		size_t cap = fs->caprewrite ? fs->caprewrite * 2 : 16;
		uint64_t *nv = realloc(fs->rewrite, cap * sizeof(*nv));

		if (!nv)
			goto out;
		fs->rewrite = nv;
		fs->caprewrite = cap;
	}
	fs->rewrite[fs->nrewrite++] = fid;
out:
	pthread_mutex_unlock(&fs->bg_lock);
}

/* Journal the content of dirty files whose jnl_write failed earlier (the
 * journal's disk was full); open files are left to their own release. */
static void retry_rewrites(struct fs *fs)
{
	uint64_t fid;
	struct jnl_file jf;
	struct stat st;
	char cpath[4096];
	struct err e;

	for (;;) {
		pthread_mutex_lock(&fs->bg_lock);
		if (!fs->nrewrite) {
			pthread_mutex_unlock(&fs->bg_lock);
			return;
		}
		fid = fs->rewrite[--fs->nrewrite];
		pthread_mutex_unlock(&fs->bg_lock);
		memset(&jf, 0, sizeof(jf));
		if (jnl_file_get(fs->jnl, fid, &jf, &e) < 0 || !jf.path || !jf.dirty ||
		    !jf.cache_name ||
		    fs_cache_path(fs, jf.cache_name, cpath, sizeof(cpath)) < 0 ||
		    stat(cpath, &st) < 0) {
			jnl_file_release(&jf);
			continue;
		}
		if (jnl_write(fs->jnl, fid, (uint64_t)st.st_size, jf.mtime_ns, 0, NULL, &e) < 0) {
			fs_bg_rewrite(fs, fid);
			jnl_file_release(&jf);
			return;         /* still failing: next round */
		}
		log_info(FS_TAG, "\"%s\" journaled for upload after an earlier failure", jf.path);
		jnl_file_release(&jf);
	}
}

static void writing_cb(struct fs *fs, struct fs_ofile *of, void *ud)
{
	int *r = ud;

	(void)fs;
	pthread_mutex_lock(&of->mu);
	if (of->writers > 0)
		*r = 1;
	pthread_mutex_unlock(&of->mu);
}

/* sched_open_fn: 1 when fid has a handle open for writing. */
static int bg_fid_writing(void *ud, uint64_t fid)
{
	int r = 0;

	fs_of_each_fid(ud, fid, writing_cb, &r);
	return r;
}

/* A file open for writing whose content was journaled with the writeback
 * delay by a FLUSH while it stays open (every close(2) of a descriptor
 * sends one: a dup, or the copy a forked child closes at exec), and not
 * written since: make its queued write claimable now. */
static void hurry_flushed(struct fs *fs, struct fs_ofile *of)
{
	struct jnl_file f;
	struct err e;

	memset(&f, 0, sizeof(f));
	if (jnl_file_get(fs->jnl, of->fid, &f, &e) == 0 && f.dirty) {
		if (jnl_expedite(fs->jnl, of->fid, jnl_last_seq(fs->jnl), &e) < 0)
			log_warn(FS_TAG, "snapshot of open file %s: %s (next interval tries "
				 "again)", of->cache_name, e.msg);
		else
			log_debug(FS_TAG, "snapshot of open file %s (fid %" PRIu64 "): its "
				  "flushed content released for upload", of->cache_name, of->fid);
	}
	jnl_file_release(&f);
}

/* open_upload_interval: journal the current content of every file that is
 * open for writing and was written since its last jnl_write, to be
 * uploaded at once (a snapshot; see sch_set_open_fn); a dirty one that
 * was journaled by a flush instead is uploaded at once too. */
static void snapshot_open_files(struct fs *fs)
{
	struct fs_ofile **v = NULL, *of;
	size_t n = 0, i, b;
	int take, hurry, rc;

	pthread_mutex_lock(&fs->of_lock);
	if (fs->of_count)
		v = calloc(fs->of_count, sizeof(*v));
	for (b = 0; v && b < FS_OF_BUCKETS; b++)
		for (of = fs->of[b]; of; of = of->next)
			if (of->state == 1 && n < fs->of_count) {
				of->refs++;
				v[n++] = of;
			}
	pthread_mutex_unlock(&fs->of_lock);
	for (i = 0; i < n; i++) {
		of = v[i];
		pthread_mutex_lock(&of->mu);
		take = of->writers > 0 && of->modified;
		hurry = of->writers > 0 && !of->modified && of->local;
		pthread_mutex_unlock(&of->mu);
		if (hurry)
			hurry_flushed(fs, of);
		if (take) {
			rc = fs_of_commit(fs, of, 0);
			if (rc < 0)
				log_warn(FS_TAG, "snapshot of open file %s: %s (next interval "
					 "tries again)", of->cache_name, strerror(-rc));
			else
				log_debug(FS_TAG, "snapshot of open file %s (fid %" PRIu64
					  ") queued for upload", of->cache_name, of->fid);
		}
		fs_of_put(fs, of);
	}
	free(v);
}

static void run(struct fs *fs, struct fs_task *t)
{
	struct fuse_session *se = atomic_load(&fs->se);
	int rc;

	switch (t->kind) {
	case FS_T_INVAL_INODE:
		if (se) {
			rc = fuse_lowlevel_notify_inval_inode(se, t->ino, 0, 0);
			if (rc < 0 && rc != -ENOENT)
				log_debug(FS_TAG, "invalidate inode %" PRIu64 ": %s", t->ino,
					  strerror(-rc));
		}
		break;
	case FS_T_INVAL_ENTRY:
		if (se) {
			rc = fuse_lowlevel_notify_inval_entry(se, t->ino, t->name, strlen(t->name));
			if (rc < 0 && rc != -ENOENT)
				log_debug(FS_TAG, "invalidate entry \"%s\": %s", t->name,
					  strerror(-rc));
		}
		break;
	case FS_T_REFRESH:
		rc = fs_dir_refresh(fs, t->name);
		if (rc < 0)
			log_debug(FS_TAG, "refreshing \"%s\": %s (the stored listing still "
				  "answers)", t->name, strerror(-rc));
		break;
	case FS_T_EVICT:
		pthread_mutex_lock(&fs->bg_lock);
		fs->evict_queued = 0;
		pthread_mutex_unlock(&fs->bg_lock);
		fs_cache_evict(fs, 0);
		break;
	default:
		break;
	}
}

static void *bg_main(void *arg)
{
	struct fs_bg_arg *a = arg;
	struct fs *fs = a->fs;
	int64_t next = fs_now_ms() + HOUSEKEEP_MS, evict_next = fs_now_ms() + 6 * HOUSEKEEP_MS;
	int64_t snap_ms = fs->mo->open_upload_interval_ms;
	int64_t snap_next = snap_ms > 0 ? fs_now_ms() + snap_ms : INT64_MAX;
	struct fs_task *t;
	struct timespec ts;

	for (;;) {
		pthread_mutex_lock(&fs->bg_lock);
		while (!fs->bg_stop && !fs->tq_head) {
			if (a->housekeeper && (fs_now_ms() >= next || fs_now_ms() >= snap_next))
				break;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&fs->bg_cv, &fs->bg_lock, &ts);
		}
		if (fs->bg_stop) {
			pthread_mutex_unlock(&fs->bg_lock);
			break;
		}
		t = fs->tq_head;
		if (t) {
			fs->tq_head = t->next;
			if (!fs->tq_head)
				fs->tq_tail = NULL;
		}
		pthread_mutex_unlock(&fs->bg_lock);
		if (t) {
			run(fs, t);
			free(t->name);
			free(t);
		}
		if (a->housekeeper && fs_now_ms() >= snap_next) {
			snapshot_open_files(fs);
			snap_next = fs_now_ms() + snap_ms;
		}
		if (a->housekeeper && fs_now_ms() >= next) {
			retry_rewrites(fs);
			fs_ren_reconcile(fs);
			if (fs_now_ms() >= evict_next) {
				fs_bg_evict(fs);
				evict_next = fs_now_ms() + 6 * HOUSEKEEP_MS;
			}
			next = fs_now_ms() + HOUSEKEEP_MS;
		}
	}
	return NULL;
}

int fs_bg_start(struct fs *fs)
{
	int i, rc;

	if (fs->sched) {
		sch_set_open_fn(fs->sched, bg_fid_writing, fs);
		sch_set_freeze_fn(fs->sched, fs_of_freeze, fs);
	}
	for (i = 0; i < 2; i++) {
		fs->bgarg[i].fs = fs;
		fs->bgarg[i].housekeeper = i == 0;
		rc = pthread_create(&fs->bg[i], NULL, bg_main, &fs->bgarg[i]);
		if (rc != 0) {
			fs_bg_stop(fs);
			return -rc;
		}
		fs->nbg++;
	}
	return 0;
}

void fs_bg_stop(struct fs *fs)
{
	struct fs_task *t, *next;
	int i;

	if (fs->sched) {
		sch_set_open_fn(fs->sched, NULL, NULL);
		sch_set_freeze_fn(fs->sched, NULL, NULL);
	}
	pthread_mutex_lock(&fs->bg_lock);
	fs->bg_stop = 1;
	pthread_cond_broadcast(&fs->bg_cv);
	pthread_mutex_unlock(&fs->bg_lock);
	for (i = 0; i < fs->nbg; i++)
		pthread_join(fs->bg[i], NULL);
	fs->nbg = 0;
	pthread_mutex_lock(&fs->bg_lock);
	for (t = fs->tq_head; t; t = next) {
		next = t->next;
		free(t->name);
		free(t);
	}
	fs->tq_head = fs->tq_tail = NULL;
	pthread_mutex_unlock(&fs->bg_lock);
}

/* ---- scheduler events ---------------------------------------------------------- */

/* The stored-listing entry for what f now is remotely. */
static void entry_of(const struct jnl_file *f, const char *name, struct jnl_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->name = (char *)name;
	e->type = f->type;
	e->size = f->type == JNL_SYMLINK && f->target ? strlen(f->target) : f->size;
	e->mtime_ns = f->mtime_ns;
	e->remote = f->base && *f->base ? f->base : NULL;
}

/* f (live, clean) is now on the remote at `path`: record it. */
static void note_present(struct fs *fs, const struct jnl_file *f, const char *path)
{
	struct jnl_entry e;
	char *dir = NULL;
	const char *name;
	uint64_t dino, ino;

	if (!f->path || strcmp(f->path, path) || !f->base || (f->type == JNL_FILE && f->dirty))
		return;
	if (view_split(path, &dir, &name) < 0)
		return;
	entry_of(f, name, &e);
	fs_dir_note(fs, dir, name, &e);
	/* The kernel's pages of our local content are the committed ones. */
	if (f->type == JNL_FILE && fs_path_ino(fs, dir, &dino) == 0 &&
	    ino_find(fs->ino, dino, name, &ino) == 0 &&
	    ino_get_tag(fs->ino, ino) == fs_content_tag(NULL, f->fid))
		ino_set_tag(fs->ino, ino, fs_content_tag(f->base, f->fid));
	free(dir);
}

static void note_gone(struct fs *fs, const char *path)
{
	char *dir = NULL;
	const char *name;

	if (!path || view_split(path, &dir, &name) < 0)
		return;
	fs_dir_note(fs, dir, name, NULL);
	free(dir);
}

void fs_on_event(void *ud, const struct sched_event *ev)
{
	struct fs *fs = ud;
	struct jnl_file f;
	struct err e;
	int have;

	memset(&f, 0, sizeof(f));
	have = jnl_file_get(fs->jnl, ev->fid, &f, &e) == 0;
	switch (ev->kind) {
	case SCHED_EV_COMMITTED:
		switch (ev->op_kind) {
		case JNL_OP_WRITE:
			if (have) {
				note_present(fs, &f, ev->path);
				fs_cache_committed(fs, &f);
			}
			break;
		case JNL_OP_MKDIR:
		case JNL_OP_SYMLINK:
		case JNL_OP_SETATTR:
			if (have)
				note_present(fs, &f, ev->path);
			break;
		case JNL_OP_RENAME:
			fs_ren_drop(fs, ev->seq);
			note_gone(fs, ev->path);
			if (have && ev->path2)
				note_present(fs, &f, ev->path2);
			if (have && f.type == JNL_DIR && ev->path2) {
				/* Every object below got a new remote version:
				 * list them again. */
				if (fs_dir_forget(fs, ev->path2, &e) < 0)
					log_debug(FS_TAG, "forget listings under \"%s\": %s",
						  ev->path2, e.msg);
			}
			break;
		case JNL_OP_UNLINK:
			note_gone(fs, ev->path);
			break;
		case JNL_OP_RMDIR:
			note_gone(fs, ev->path);
			if (fs_dir_forget(fs, ev->path, &e) < 0)
				log_debug(FS_TAG, "forget listings under \"%s\": %s", ev->path,
					  e.msg);
			break;
		default:
			break;
		}
		break;
	case SCHED_EV_CONFLICT:
		if (have)
			fs_cache_conflict(fs, &f);
		if (ev->path) {
			char *dir = NULL;
			const char *name;

			if (view_split(ev->path, &dir, &name) == 0) {
				uint64_t dino;

				fs_dir_invalidate(fs, dir);
				if (ev->path2 && fs_path_ino(fs, dir, &dino) == 0)
					fs_bg_inval_entry(fs, dino, be_basename(ev->path2));
			}
			free(dir);
			fs_bg_inval_path(fs, ev->path);
		}
		break;
	default:
		break;
	}
	jnl_file_release(&f);
}
