/* durafs filesystem core: the resolve cache. What fs_resolve found for a
 * path, kept with the journal generation and the directory epoch it was
 * read under, so an unchanged path is answered again without SQLite. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

#define FS_RC_BUCKETS 16384  /* power of two */
#define FS_RC_MAX 16384      /* entries kept; the table is emptied beyond */

struct fs_rc_ent {
	struct fs_rc_ent *next;
	uint64_t hash;
	char *path;
	uint64_t gen;
	struct fs_dstate *d;
	uint64_t ep;
	struct fs_info info;
	/* fs_rc_note_whole: the clean file fid, remote version info.remote
	 * of wsize bytes, is whole in cache file wname (journal generation
	 * wgen); wname NULL when nothing is noted. */
	uint64_t wgen, wfid, wsize;
	char *wname;
};

int fs_rc_new(struct fs_rc **out)
{
	struct fs_rc *rc = NULL;

	*out = NULL;
	rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->b = calloc(FS_RC_BUCKETS, sizeof(*rc->b));
	if (!rc->b || pthread_mutex_init(&rc->mu, NULL)) {
		free(rc->b);
		free(rc);
		return -ENOMEM;
	}
	*out = rc;
	return 0;
}

static void ent_free(struct fs_rc_ent *e)
{
	free(e->wname);
	free(e->path);
	free(e);
}

/* Drop every entry; mu is held. */
static void clear_locked(struct fs_rc *rc)
{
	size_t i;

	for (i = 0; i < FS_RC_BUCKETS; i++) {
		struct fs_rc_ent *e, *next;

		for (e = rc->b[i]; e; e = next) {
			next = e->next;
			ent_free(e);
		}
		rc->b[i] = NULL;
	}
	rc->n = 0;
}

void fs_rc_free(struct fs_rc *rc)
{
	if (!rc)
		return;
	clear_locked(rc);
	free(rc->b);
	pthread_mutex_destroy(&rc->mu);
	free(rc);
}

/* The link pointing at path's entry (or at the NULL ending its chain);
 * mu is held. */
static struct fs_rc_ent **find_locked(struct fs_rc *rc, const char *path, uint64_t h)
{
	struct fs_rc_ent **pe = &rc->b[h & (FS_RC_BUCKETS - 1)];

	while (*pe && ((*pe)->hash != h || strcmp((*pe)->path, path)))
		pe = &(*pe)->next;
	return pe;
}

int fs_rc_get(struct fs_rc *rc, const char *path, uint64_t gen, struct fs_info *info,
	      struct fs_dstate **d, uint64_t *ep)
{
	struct fs_rc_ent **pe, *e;
	uint64_t h = fs_str_hash(path);
	int found = 0;

	pthread_mutex_lock(&rc->mu);
	pe = find_locked(rc, path, h);
	e = *pe;
	if (e && e->gen == gen) {
		*info = e->info;
		*d = e->d;
		*ep = e->ep;
		found = 1;
	} else if (e) {
		/* The journal changed since: never valid again. */
		*pe = e->next;
		rc->n--;
		ent_free(e);
	}
	pthread_mutex_unlock(&rc->mu);
	return found;
}

void fs_rc_put(struct fs_rc *rc, const char *path, uint64_t gen, const struct fs_info *info,
	       struct fs_dstate *d, uint64_t ep)
{
	struct fs_rc_ent **pe, *e;
	uint64_t h = fs_str_hash(path);

	pthread_mutex_lock(&rc->mu);
	pe = find_locked(rc, path, h);
	e = *pe;
	if (!e) {
		if (rc->n >= FS_RC_MAX) {
			clear_locked(rc);
			pe = find_locked(rc, path, h);
		}
		e = calloc(1, sizeof(*e));
		if (!e)
			goto out;
		e->path = strdup(path);
		if (!e->path) {
			free(e);
			goto out;
		}
		e->hash = h;
		*pe = e;
		rc->n++;
	}
	if (e->wname && strcmp(e->info.remote, info->remote)) {
		free(e->wname);
		e->wname = NULL;
	}
	e->gen = gen;
	e->d = d;
	e->ep = ep;
	e->info = *info;
out:
	pthread_mutex_unlock(&rc->mu);
}

void fs_rc_note_whole(struct fs_rc *rc, const char *path, uint64_t gen, uint64_t fid,
		      const char *cache_name, const char *remote, uint64_t size)
{
	struct fs_rc_ent *e;
	char *name;

	pthread_mutex_lock(&rc->mu);
	e = *find_locked(rc, path, fs_str_hash(path));
	/* Only for the version the entry shows. */
	if (e && e->info.fid == fid && !strcmp(e->info.remote, remote)) {
		name = strdup(cache_name);
		if (name) {
			free(e->wname);
			e->wname = name;
			e->wgen = gen;
			e->wfid = fid;
			e->wsize = size;
		}
	}
	pthread_mutex_unlock(&rc->mu);
}

int fs_rc_whole(struct fs_rc *rc, const char *path, uint64_t gen, uint64_t fid,
		const char *remote, uint64_t size, char *name, size_t len)
{
	struct fs_rc_ent *e;
	int found = 0;

	pthread_mutex_lock(&rc->mu);
	e = *find_locked(rc, path, fs_str_hash(path));
	if (e && e->wname && e->wgen == gen && e->wfid == fid && e->wsize == size &&
	    !strcmp(e->info.remote, remote) && strlen(e->wname) < len) {
		memcpy(name, e->wname, strlen(e->wname) + 1);
		found = 1;
		atomic_fetch_add(&rc->whole_hits, 1);
	}
	pthread_mutex_unlock(&rc->mu);
	return found;
}
