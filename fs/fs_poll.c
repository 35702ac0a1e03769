/* durafs remote change polling (include/durafs/fs_poll.h): one thread per
 * mount reads the backend's change feed every poll_interval, turns the
 * changes into a plan (directories to refetch, names to drop from the
 * kernel's caches, moved-away trees to forget) and applies it, then stores
 * the feed position in the journal. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"
#include "durafs/clock.h"
#include "durafs/fs_poll.h"
#include "durafs/log.h"

#define POLL_TAG "poll"
#define POLL_WARN_AFTER_MS (10 * 60 * 1000)   /* failing that long: a WARN */

/* ---- string sets ----------------------------------------------------------- */

/* Index of str in s, or where it would go (*found = 0). */
static size_t strset_pos(const struct fs_strset *s, const char *str, int *found)
{
	size_t lo = 0, hi = s->n, mid;
	int c;

	*found = 0;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(str, s->v[mid]);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

int fs_strset_add(struct fs_strset *s, const char *str)
{
	size_t pos;
	int found;
	char *c = NULL, **nv;

	pos = strset_pos(s, str, &found);
	if (found)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;

		nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	c = strdup(str);
	if (!c)
		return -1;
	memmove(&s->v[pos + 1], &s->v[pos], (s->n - pos) * sizeof(*s->v));
	s->v[pos] = c;
	s->n++;
	return 0;
}

int fs_strset_has(const struct fs_strset *s, const char *str)
{
	int found;

	strset_pos(s, str, &found);
	return found;
}

void fs_strset_release(struct fs_strset *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- the plan (pure) --------------------------------------------------------- */

/* The directory part of path ("" for a top-level name) into a new string. */
static char *parent_of(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? strndup(path, (size_t)(s - path)) : strdup("");
}

int fs_poll_plan_add(struct fs_poll_plan *p, const struct be_change *c)
{
	char *odir = NULL, *npath = NULL;
	int rc = -1, moved;

	p->changes++;
	if (c->new_dir && c->new_name) {
		npath = view_join(c->new_dir, c->new_name);
		if (!npath)
			goto out;
	}
	if (c->old_path && *c->old_path) {
		odir = parent_of(c->old_path);
		if (!odir || fs_strset_add(&p->refresh, odir) < 0)
			goto out;
		moved = c->gone || !npath || strcmp(npath, c->old_path) != 0;
		if (moved && (c->type == BE_DIR || c->type == BE_NONE) &&
		    fs_strset_add(&p->drop, c->old_path) < 0)
			goto out;
		/* The old name's kernel entry (a file changed in place, or a
		 * name that went away). */
		if (fs_strset_add(&p->names, c->old_path) < 0)
			goto out;
	}
	if (c->new_dir && !c->gone) {
		if (fs_strset_add(&p->refresh, c->new_dir) < 0)
			goto out;
		if (npath && fs_strset_add(&p->names, npath) < 0)
			goto out;
	}
	rc = 0;
out:
	free(odir);
	free(npath);
	return rc;
}

void fs_poll_plan_release(struct fs_poll_plan *p)
{
	fs_strset_release(&p->refresh);
	fs_strset_release(&p->names);
	fs_strset_release(&p->drop);
	p->changes = 0;
}

/* ---- the poller ---------------------------------------------------------------- */

struct fs_poll {
	struct fs *fs;
	int64_t interval_ms;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* CLOCK_MONOTONIC */
	int stop, kick;             /* protected by mu */
	struct fs_poll_stats st;    /* protected by mu */
	int failing;                /* the last poll failed (poller thread) */
	int warned;                 /* the failure was logged as a WARN */
	int64_t failing_since;      /* clk_mono_ms() of the first failure */
};

/* 1 when path is at or below one of the dropped trees. */
static int under_drop(const struct fs_poll_plan *pl, const char *path)
{
	size_t i;

	for (i = 0; i < pl->drop.n; i++)
		if (view_path_within(path, pl->drop.v[i]))
			return 1;
	return 0;
}

/* 1 when the journal holds local content of path not yet committed. */
static int is_dirty(struct fs *fs, const char *path)
{
	struct jnl_file jf;
	uint64_t fid;
	int dirty = 0;

	if (jnl_file_lookup(fs->jnl, path, &fid, NULL) < 0)
		return 0;
	memset(&jf, 0, sizeof(jf));
	if (jnl_file_get(fs->jnl, fid, &jf, NULL) == 0)
		dirty = jf.type == JNL_FILE && jf.dirty;
	jnl_file_release(&jf);
	return dirty;
}

/* 1 when the stored listing already shows c's item, at the same place and
 * version (typically our own upload coming back through the feed). */
static int already_known(struct fs *fs, const struct be_change *c)
{
	struct jnl_entry e;
	char ver[FS_REMOTE_MAX], *npath = NULL;
	int known = 0;

	if (c->gone || !c->new_dir || !c->new_name || (!c->ver.id[0] && !c->ver.gen))
		return 0;
	if (c->old_path) {
		npath = view_join(c->new_dir, c->new_name);
		if (!npath || strcmp(npath, c->old_path) != 0) {
			free(npath);
			return 0;
		}
		free(npath);
	}
	if (be_version_format(&c->ver, ver, sizeof(ver)) != 0)
		return 0;
	memset(&e, 0, sizeof(e));
	if (jnl_entry_get(fs->jnl, c->new_dir, c->new_name, &e, NULL) == 0)
		known = e.remote && strcmp(e.remote, ver) == 0 && e.type == (int)c->type;
	jnl_entry_release(&e);
	return known;
}

struct collect {
	struct fs *fs;
	struct fs_poll_plan *plan;
	struct fs_strset ids;       /* items whose earlier place the backend
				     * did not know (or that are gone) */
	struct fs_strset newpaths;  /* where the reported items are now */
	uint64_t seen, known;
	int oom;
};

static int on_change(void *ud, const struct be_change *c)
{
	struct collect *col = ud;

	col->seen++;
	if (already_known(col->fs, c)) {
		col->known++;
		return 0;
	}
	if (fs_poll_plan_add(col->plan, c) < 0)
		goto oom;
	if ((c->gone || !c->old_path) && c->id && *c->id && fs_strset_add(&col->ids, c->id) < 0)
		goto oom;
	if (!c->gone && c->new_dir && c->new_name) {
		char *np = view_join(c->new_dir, c->new_name);

		if (!np || fs_strset_add(&col->newpaths, np) < 0) {
			free(np);
			goto oom;
		}
		free(np);
	}
	return 0;
oom:
	col->oom = 1;
	return 1;
}

/* Add to the plan, as places the items left, every place the stored
 * listings show them at (found by id in one indexed query) other than where they
 * are now: for items gone (deleted for good, trashed, moved out) or whose
 * earlier place the backend did not know. Drive reports a permanent
 * deletion by id only, its folder maps do not survive a remount, and a
 * duplicate shown with a suffix is only found by id. 0, or -1 when out of
 * memory; a database failure is logged (the listings then refresh at
 * their TTL). */
static int add_stored_places(struct collect *col)
{
	struct jnl_place *v = NULL;
	struct be_change pc;
	size_t i, n = 0;
	struct err e;
	int rc = 0;

	if (!col->ids.n)
		return 0;
	if (jnl_entries_by_ids(col->fs->jnl, (const char *const *)col->ids.v, col->ids.n, &v,
			       &n, &e) < 0) {
		if (e.code == ERR_NOMEM)
			return -1;
		log_debug(POLL_TAG, "finding where %zu changed item%s were shown: %s", col->ids.n,
			  col->ids.n == 1 ? "" : "s", e.msg);
		return 0;
	}
	for (i = 0; i < n && rc == 0; i++) {
		if (fs_strset_has(&col->newpaths, v[i].path))
			continue;       /* still there */
		log_debug(POLL_TAG, "\"%s\" (stored listing) moved or gone remotely", v[i].path);
		memset(&pc, 0, sizeof(pc));
		pc.old_path = v[i].path;
		pc.gone = 1;
		pc.type = v[i].type == JNL_DIR ? BE_DIR : BE_FILE;
		rc = fs_poll_plan_add(col->plan, &pc);
		col->plan->changes--;   /* not a change of its own */
	}
	jnl_places_free(v, n);
	return rc;
}

/* Make the mount show what the plan says changed. Returns the number of
 * listings refetched or marked stale. */
static uint64_t apply(struct fs *fs, const struct fs_poll_plan *pl)
{
	uint64_t dino, n = 0;
	struct err e;
	size_t i;
	int rc;

	for (i = 0; i < pl->drop.n; i++) {
		const char *p = pl->drop.v[i];

		log_debug(POLL_TAG, "\"%s\" moved or gone remotely: its stored listings are "
			  "forgotten", p);
		if (!is_dirty(fs, p))
			fs_bg_inval_path(fs, p);
		if (fs_dir_forget(fs, p, &e) < 0)
			log_debug(POLL_TAG, "forget listings under \"%s\": %s", p, e.msg);
	}
	for (i = 0; i < pl->refresh.n; i++) {
		const char *d = pl->refresh.v[i];

		if (*d && under_drop(pl, d))
			continue;
		fs_dir_invalidate(fs, d);
		n++;
		if (fs_path_ino(fs, d, &dino) < 0) {
			log_debug(POLL_TAG, "listing of \"%s\" marked stale", *d ? d : "/");
			continue;
		}
		/* The kernel knows the directory: refetch now, which tells
		 * it which names changed. */
		rc = fs_dir_refresh(fs, d);
		if (rc < 0)
			log_debug(POLL_TAG, "refetching \"%s\": %s (refetched on next access)",
				  *d ? d : "/", strerror(-rc));
		else
			log_debug(POLL_TAG, "listing of \"%s\" refetched", *d ? d : "/");
		fs_bg_inval_inode(fs, dino);
	}
	for (i = 0; i < pl->names.n; i++) {
		const char *p = pl->names.v[i];

		if (under_drop(pl, p))
			continue;
		if (is_dirty(fs, p)) {
			log_debug(POLL_TAG, "\"%s\" changed remotely but is dirty here: kept "
				  "(the upload's conflict rule decides)", p);
			continue;
		}
		log_debug(POLL_TAG, "invalidating \"%s\" in the kernel", p);
		fs_bg_inval_path(fs, p);
	}
	return n;
}

/* Start the feed: the first poll of a cache dir (why NULL), or the service
 * refused our stored position (expired, or from another account or
 * server): what changed before cannot be known. A new position
 * is taken first, then every stored listing is forgotten (refetched on
 * next access, so they show at least what was there at that position),
 * then the position is stored. */
static int restart_feed(struct fs *fs, const struct err *why, struct err *err)
{
	struct err e;
	char *next = NULL;

	if (why)
		log_info(POLL_TAG, "the change feed refused its stored position (%s): every "
			 "stored listing is fetched again and the feed starts over", why->msg);
	if (be_changes(fs->be, NULL, on_change, NULL, &next, err) < 0) {
		err_prefix(err, "starting the change feed");
		return -1;
	}
	if (fs_dir_forget(fs, "", &e) < 0)
		log_warn(POLL_TAG, "forgetting the stored listings: %s", e.msg);
	else if (jnl_meta_set(fs->jnl, FS_POLL_META_TOKEN, next, &e) < 0)
		log_warn(POLL_TAG, "storing the change feed position: %s", e.msg);
	else if (!why)
		log_debug(POLL_TAG, "change feed starts at %s", next);
	fs_bg_inval_inode(fs, INO_ROOT);
	free(next);
	return 0;
}

/* One poll: 0, or -1 with *err (the stored position is unchanged). */
static int poll_once(struct fs_poll *p, struct err *err)
{
	struct fs *fs = p->fs;
	struct fs_poll_plan plan;
	struct collect col;
	char *token = NULL, *next = NULL;
	uint64_t refreshed = 0;
	struct err tmp;
	int rc = -1;

	memset(&plan, 0, sizeof(plan));
	memset(&col, 0, sizeof(col));
	col.fs = fs;
	col.plan = &plan;
	if (jnl_meta_get(fs->jnl, FS_POLL_META_TOKEN, &token, err) < 0)
		goto out;
	if (!token || !*token) {
		/* Listings fetched before the feed's start may miss changes
		 * made before it: they are fetched again. */
		rc = restart_feed(fs, NULL, err);
		goto out;
	}
	if (be_changes(fs->be, token, on_change, &col, &next, err) < 0) {
		if (col.oom)
			err_set(err, ERR_NOMEM, "out of memory");
		else if (err->http_status == 400 || err->http_status == 410)
			restart_feed(fs, err, &tmp);
		goto out;
	}
	if (add_stored_places(&col) < 0) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	refreshed = apply(fs, &plan);
	if (col.seen)
		log_debug(POLL_TAG, "%" PRIu64 " remote change%s (%" PRIu64 " already known), %"
			  PRIu64 " listing%s refreshed", col.seen, col.seen == 1 ? "" : "s",
			  col.known, refreshed, refreshed == 1 ? "" : "s");
	/* Stored after the plan is applied: a crash in between polls these
	 * changes again, never skips them. */
	if (strcmp(token, next) != 0 &&
	    jnl_meta_set(fs->jnl, FS_POLL_META_TOKEN, next, err) < 0)
		goto out;
	pthread_mutex_lock(&p->mu);
	p->st.polls++;
	p->st.changes += col.seen;
	p->st.refreshed += refreshed;
	p->st.last_ok_ms = clk_wall_ms();
	pthread_mutex_unlock(&p->mu);
	rc = 0;
out:
	fs_poll_plan_release(&plan);
	fs_strset_release(&col.ids);
	fs_strset_release(&col.newpaths);
	free(token);
	free(next);
	return rc;
}

static void *poll_main(void *arg)
{
	struct fs_poll *p = arg;
	struct timespec ts;
	struct err e;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		p->kick = 0;
		pthread_mutex_unlock(&p->mu);
		err_clear(&e);
		if (poll_once(p, &e) < 0) {
			int64_t now = clk_mono_ms();
			int level = LOG_LVL_DEBUG;

			pthread_mutex_lock(&p->mu);
			p->st.failures++;
			pthread_mutex_unlock(&p->mu);
			/* The listings keep answering meanwhile: a short outage is
			 * worth an INFO line, one that lasts a WARN (once). */
			if (!p->failing) {
				p->failing_since = now;
				level = e.code == ERR_CANCELED ? LOG_LVL_DEBUG : LOG_LVL_INFO;
			} else if (!p->warned && now - p->failing_since >= POLL_WARN_AFTER_MS) {
				p->warned = 1;
				level = LOG_LVL_WARN;
			}
			log_msg(level, POLL_TAG, "polling remote changes failed%s (tried again every %"
				PRId64 " ms; nothing is skipped): %s", p->warned && level ==
				LOG_LVL_WARN ? " for 10 minutes" : "", p->interval_ms, e.msg);
			p->failing = 1;
		} else if (p->failing) {
			log_info(POLL_TAG, "polling remote changes works again");
			p->failing = 0;
			p->warned = 0;
		}
		ts = clk_mono_after(p->interval_ms);
		pthread_mutex_lock(&p->mu);
		while (!p->stop && !p->kick &&
		       pthread_cond_timedwait(&p->cv, &p->mu, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

/* The first mount of a cache dir takes the feed's position before the
 * mount answers anything, so no listing of it can predate the position.
 * If that fails, the first poll does it (restart_feed). */
static void start_position(struct fs *fs)
{
	char *token = NULL, *next = NULL;
	struct err e;

	if (jnl_meta_get(fs->jnl, FS_POLL_META_TOKEN, &token, &e) < 0 || (token && *token)) {
		free(token);
		return;
	}
	free(token);
	if (be_changes(fs->be, NULL, on_change, NULL, &next, &e) < 0) {
		log_debug(POLL_TAG, "taking the change feed's position: %s (the first poll "
			  "does it)", e.msg);
		return;
	}
	if (jnl_meta_set(fs->jnl, FS_POLL_META_TOKEN, next, &e) < 0)
		log_debug(POLL_TAG, "storing the change feed's position: %s", e.msg);
	else
		log_debug(POLL_TAG, "change feed starts at %s", next);
	free(next);
}

int fs_poll_start(struct fs *fs, int64_t interval_ms, struct fs_poll **out, struct err *err)
{
	struct fs_poll *p = NULL;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (interval_ms <= 0)
		return err_set(err, ERR_INVAL, "poll interval must be positive");
	if (!be_has_changes(fs->be))
		return err_set(err, ERR_INVAL, "%s: no change feed to poll", be_name(fs->be));
	start_position(fs);
	p = calloc(1, sizeof(*p));
	if (!p)
		return err_set(err, ERR_NOMEM, "out of memory");
	p->fs = fs;
	p->interval_ms = interval_ms;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&p->th, NULL, poll_main, p);
	if (rc != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		errno = rc;
		return err_sys(err, "cannot start the change poller");
	}
	log_debug(POLL_TAG, "polling remote changes every %" PRId64 " ms", interval_ms);
	*out = p;
	return 0;
}

void fs_poll_kick(struct fs_poll *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->kick = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void fs_poll_get_stats(struct fs_poll *p, struct fs_poll_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	pthread_mutex_unlock(&p->mu);
}

void fs_poll_stats(struct fs *fs, struct fs_poll_stats *out)
{
	fs_poll_get_stats(fs ? fs->poll : NULL, out);
}

void fs_poll_stop(struct fs_poll *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->th, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
