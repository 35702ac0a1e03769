/* durafs local view: merging a stored listing with the journal's live and
 * removed names, and translating local paths through pending renames.
 * Pure functions; the rules are spelled out in durafs/view.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/backend.h"
#include "durafs/view.h"

/* Two remote versions name the same thing; NULL and "" both mean "none". */
static int remote_eq(const char *a, const char *b)
{
	if (!a)
		a = "";
	if (!b)
		b = "";
	return !strcmp(a, b);
}

/* 1 when remote version a is a later version of the same remote object
 * than b (versions grow: GCS generations, Drive version numbers). */
static int newer(const char *a, const char *b)
{
	struct be_version va, vb;

	if (!a || !b || be_version_parse(a, &va) < 0 || be_version_parse(b, &vb) < 0)
		return 0;
	return !strcmp(va.id, vb.id) && va.gen > vb.gen;
}

static const char *last_component(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static void from_journal(const struct jnl_file *jf, struct view_ent *out)
{
	out->name = last_component(jf->path);
	out->type = jf->type;
	out->size = jf->type == JNL_SYMLINK && jf->target ? strlen(jf->target) : jf->size;
	out->mtime_ns = jf->mtime_ns;
	out->fid = jf->fid;
	out->remote = jf->dirty ? NULL : jf->base;
	out->flags = VIEW_LOCAL;
}

static void from_listing(const struct jnl_entry *l, uint64_t fid, struct view_ent *out)
{
	out->name = l->name;
	out->type = l->type;
	out->size = l->size;
	out->mtime_ns = l->mtime_ns;
	out->fid = fid;
	out->remote = l->remote;
	out->flags = 0;
}

int view_pick(const struct jnl_entry *l, const struct jnl_file *jf, int removed,
	      view_active_fn active, void *ud, struct view_ent *out)
{
	int a;

	memset(out, 0, sizeof(*out));
	if (jf && jf->path) {
		if (jf->dirty || !jf->base) {
			from_journal(jf, out);
			return 1;
		}
		if (l && l->type == jf->type && remote_eq(l->remote, jf->base) &&
		    l->mtime_ns / 1000000000 == jf->mtime_ns / 1000000000) {
			from_listing(l, jf->fid, out);
			return 1;
		}
		a = active(ud, jf);
		if (a < 0)
			return a;
		if (a) {
			from_journal(jf, out);
			return 1;
		}
		if (!l)
			return 0;
		if ((remote_eq(l->remote, NULL) || newer(jf->base, l->remote)) &&
		    l->type == jf->type) {
			/* A placeholder the mount wrote for its own change
			 * before the remote version was known, or a listing
			 * older than our own commit. */
			from_journal(jf, out);
			out->flags = 0;
			return 1;
		}
		from_listing(l, jf->fid, out);
		return 1;
	}
	if (l && !removed) {
		from_listing(l, 0, out);
		return 1;
	}
	return 0;
}

static int grow(struct view_ent **v, size_t *cap, size_t need)
{
	struct view_ent *nv;
	size_t nc;

	if (need <= *cap)
		return 0;
	nc = *cap ? *cap * 2 : 64;
	while (nc < need)
		nc *= 2;
	nv = realloc(*v, nc * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = nc;
	return 0;
}

int view_merge(const struct jnl_entry *l, size_t nl, const struct jnl_file *jv,
	       size_t nj, char *const *removed, size_t nr, view_active_fn active,
	       void *ud, struct view_ent **out, size_t *n)
{
	struct view_ent *v = NULL;
	size_t cap = 0, cnt = 0, i = 0, k = 0, r = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	for (i = 1; i < nl; i++)
		if (strcmp(l[i - 1].name, l[i].name) >= 0)
			return -EINVAL;
	for (i = 1; i < nj; i++)
		if (!jv[i - 1].path || !jv[i].path ||
		    strcmp(last_component(jv[i - 1].path), last_component(jv[i].path)) >= 0)
			return -EINVAL;
	if (nj == 1 && !jv[0].path)
		return -EINVAL;
	rc = grow(&v, &cap, nl + nj);
	if (rc)
		goto out;
	i = 0;
	while (i < nl || k < nj) {
		const struct jnl_entry *le = NULL;
		const struct jnl_file *je = NULL;
		const char *name;
		int c, rem = 0, shown;

		if (i < nl && k < nj) {
			c = strcmp(l[i].name, last_component(jv[k].path));
			if (c <= 0)
				le = &l[i];
			if (c >= 0)
				je = &jv[k];
		} else if (i < nl) {
			le = &l[i];
		} else {
			je = &jv[k];
		}
		/* One of le, je is set. */
		name = le ? le->name : je ? last_component(je->path) : "";
		while (r < nr && strcmp(removed[r], name) < 0)
			r++;
		if (r < nr && !strcmp(removed[r], name))
			rem = 1;
		shown = view_pick(le, je, rem, active, ud, &v[cnt]);
		if (shown < 0) {
			rc = shown;
			goto out;
		}
		if (shown)
			cnt++;
		if (le)
			i++;
		if (je)
			k++;
	}
	if (cnt == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = cnt;
	v = NULL;
out:
	free(v);
	return rc;
}

int view_path_within(const char *path, const char *dir)
{
	size_t dl = strlen(dir);

	if (dl == 0)
		return 1;
	return !strncmp(path, dir, dl) && (path[dl] == '\0' || path[dl] == '/');
}

char *view_remote_path(const struct view_rename *v, size_t n, const char *path,
		       view_keep_fn keep, void *ud)
{
	char *cur = strdup(path);
	size_t i;

	if (!cur)
		return NULL;
	for (i = n; i-- > 0;) {
		size_t tl = strlen(v[i].to), fl, rl;
		char *next;

		if (!*v[i].to || !view_path_within(cur, v[i].to))
			continue;
		if (keep && !keep(ud, &v[i]))
			continue;
		fl = strlen(v[i].from);
		rl = strlen(cur + tl);
		next = malloc(fl + rl + 1);
		if (!next) {
			free(cur);
			return NULL;
		}
		memcpy(next, v[i].from, fl);
		memcpy(next + fl, cur + tl, rl + 1);
		free(cur);
		cur = next;
	}
	return cur;
}

int view_split(const char *path, char **dir, const char **name)
{
	const char *s;

	*dir = NULL;
	*name = NULL;
	if (!path || !*path)
		return -EINVAL;
	s = strrchr(path, '/');
	if (!s) {
		*dir = strdup("");
		*name = path;
	} else {
		*dir = strndup(path, (size_t)(s - path));
		*name = s + 1;
	}
	return *dir ? 0 : -ENOMEM;
}

char *view_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	char *s = malloc(dl + nl + 2);

	if (!s)
		return NULL;
	if (dl) {
		memcpy(s, dir, dl);
		s[dl] = '/';
		memcpy(s + dl + 1, name, nl + 1);
	} else {
		memcpy(s, name, nl + 1);
	}
	return s;
}
