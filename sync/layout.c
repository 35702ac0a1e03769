/* durafs `-o layout=colab` (include/durafs/layout.h): a backend routing
 * MyDrive/ to a Drive backend of My Drive and Shareddrives/NAME/ to one
 * Drive backend per shared drive (created on first use, kept until the
 * layout is freed), with the root and Shareddrives/ as fixed directories.
 * Shared drives are listed with drives.list whenever Shareddrives/ is
 * listed or an unknown name is looked up. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "durafs/backend.h"
#include "durafs/clock.h"
#include "durafs/drive.h"
#include "durafs/enc.h"
#include "durafs/http.h"
#include "durafs/jsonh.h"
#include "durafs/layout.h"
#include "durafs/log.h"

#define TAG "layout"
#define LOOKUP_RELIST_MS 2000   /* an unknown name relists drives at most this often */

struct ldrive {
	char *id;
	char *name;                 /* shown name under Shareddrives/ */
	struct be *be;              /* created on first use; freed with the layout */
	int live;                   /* in the last drives.list (or stored) */
	int stored;                 /* known from layout_state_restore only:
				     * its backend's root is the stored id */
};

struct layout {
	struct be base;             /* must stay first */
	struct drive_opts o;        /* copy; source/endpoint point below */
	char *endpoint;             /* copy of o->endpoint, or NULL */
	char api[512];              /* endpoint + /drive/v3 */
	struct be *my;

	pthread_mutex_t mu;         /* protects sd, nsd, cap, listed_ms and each
				     * ldrive's fields */
	struct ldrive *sd;
	size_t nsd, cap;
	int64_t listed_ms;
};

static struct layout *L(struct be *b)
{
	return (struct layout *)b;
}

/* ---- tokens ------------------------------------------------------------------- */

char *layout_token_get(const char *combined, const char *id, int *oom)
{
	const char *p = combined, *eol, *eq;
	size_t idl = strlen(id);
	char *r;

	if (oom)
		*oom = 0;
	while (p && *p) {
		eol = strchr(p, '\n');
		if (!eol)
			eol = p + strlen(p);
		eq = memchr(p, '=', (size_t)(eol - p));
		if (eq && (size_t)(eq - p) == idl && memcmp(p, id, idl) == 0 && eq + 1 < eol) {
			r = strndup(eq + 1, (size_t)(eol - eq - 1));
			if (!r && oom)
				*oom = 1;
			return r;
		}
		p = *eol ? eol + 1 : eol;
	}
	return NULL;
}

/* ---- shared drives -------------------------------------------------------------- */

struct dpair {
	char *id, *name;
};

/* drives.list through every page into *v (n pairs, Drive names). */
static int drives_fetch(struct layout *l, struct dpair **v, size_t *n, struct err *err)
{
	struct http_resp resp;
	struct http_req req;
	json_t *j = NULL, *arr, *it;
	char url[2048], *tok = NULL, *tenc = NULL;
	const char *id, *name, *next;
	struct dpair *nv;
	size_t i, cap = 0, page = 0;
	int rc = -1;

	*v = NULL;
	*n = 0;
	do {
		page++;
		if (tok) {
			tenc = enc_url(tok);
			if (!tenc) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
		}
		snprintf(url, sizeof(url), "%s/drives?pageSize=100&fields=nextPageToken%%2C"
			 "drives(id%%2Cname)%s%s", l->api, tenc ? "&pageToken=" : "",
			 tenc ? tenc : "");
		free(tenc);
		tenc = NULL;
		memset(&req, 0, sizeof(req));
		memset(&resp, 0, sizeof(resp));
		req.method = "GET";
		req.url = url;
		req.body_fd = -1;
		req.retry = HTTP_RETRY_SAFE;
		if (http_do(l->o.http, &req, &resp, err) < 0) {
			http_resp_release(&resp);
			err_prefix(err, "listing shared drives (page %zu)", page);
			goto out;
		}
		json_decref(j);
		j = NULL;
		rc = jsonh_parse_object(resp.body, resp.body_len, "shared drive list", &j, err);
		http_resp_release(&resp);
		if (rc < 0 || jsonh_opt_array(j, "drives", &arr, err) < 0 ||
		    jsonh_opt_str(j, "nextPageToken", &next, err) < 0) {
			rc = -1;
			goto out;
		}
		rc = -1;
		for (i = 0; i < json_array_size(arr); i++) {
			if (jsonh_elem_object(arr, i, "drives", &it, err) < 0 ||
			    jsonh_get_str(it, "id", &id, err) < 0 ||
			    jsonh_get_str(it, "name", &name, err) < 0)
				goto out;
			if (*n == cap) {
				cap = cap ? cap * 2 : 16;
				nv = realloc(*v, cap * sizeof(*nv));
				if (!nv) {
					err_set(err, ERR_NOMEM, "out of memory");
					goto out;
				}
				*v = nv;
			}
			(*v)[*n].id = strdup(id);
			(*v)[*n].name = strdup(name);
			(*n)++;
			if (!(*v)[*n - 1].id || !(*v)[*n - 1].name) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
		}
		if (next && tok && strcmp(next, tok) == 0) {
			err_set(err, ERR_PARSE, "shared drive list: the server repeated its page token");
			goto out;
		}
		free(tok);
		tok = NULL;
		if (next && *next && !(tok = strdup(next))) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	} while (tok);
	rc = 0;
out:
	if (rc < 0) {
		for (i = 0; i < *n; i++) {
			free((*v)[i].id);
			free((*v)[i].name);
		}
		free(*v);
		*v = NULL;
		*n = 0;
	}
	json_decref(j);
	free(tok);
	return rc;
}

/* Relist the shared drives and update l->sd (names shown as the Drive name
 * mapping shows them; a repeated name gets the id suffix). */
static int drives_refresh(struct layout *l, struct err *err)
{
	struct dpair *v = NULL;
	struct ldrive *nv;
	char **shown = NULL;
	size_t n = 0, i, k;
	int rc = -1, oom = 0;

	if (drives_fetch(l, &v, &n, err) < 0)
		return -1;
	shown = calloc(n ? n : 1, sizeof(*shown));
	if (!shown)
		goto nomem;
	for (i = 0; i < n; i++) {
		shown[i] = drive_name_encode(v[i].name, strlen(v[i].name), &oom);
		if (!shown[i]) {
			if (oom)
				goto nomem;
			log_warn(TAG, "shared drive %s: its name cannot be shown", v[i].id);
			continue;
		}
		for (k = 0; k < i; k++) {
			if (shown[k] && strcmp(shown[k], shown[i]) == 0) {
				char *s = drive_name_suffixed(shown[i], v[i].id, 1, 6);

				if (!s)
					goto nomem;
				free(shown[i]);
				shown[i] = s;
				break;
			}
		}
	}
	pthread_mutex_lock(&l->mu);
	for (k = 0; k < l->nsd; k++)
		l->sd[k].live = 0;
	for (i = 0; i < n; i++) {
		if (!shown[i])
			continue;
		for (k = 0; k < l->nsd && strcmp(l->sd[k].id, v[i].id) != 0; k++)
			;
		if (k == l->nsd) {
			if (l->nsd == l->cap) {
				size_t cap = l->cap ? l->cap * 2 : 8;

				nv = realloc(l->sd, cap * sizeof(*nv));
				if (!nv) {
					pthread_mutex_unlock(&l->mu);
					goto nomem;
				}
				l->sd = nv;
				l->cap = cap;
			}
			memset(&l->sd[k], 0, sizeof(l->sd[k]));
			l->sd[k].id = v[i].id;
			v[i].id = NULL;
			l->nsd++;
		}
		free(l->sd[k].name);
		l->sd[k].name = shown[i];
		shown[i] = NULL;
		l->sd[k].live = 1;
		l->sd[k].stored = 0;
	}
	l->listed_ms = clk_mono_ms();
	pthread_mutex_unlock(&l->mu);
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	for (i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].name);
		if (shown)
			free(shown[i]);
	}
	free(v);
	free(shown);
	return rc;
}

/* The backend of live shared drive k (mu held), created on first use. */
static int drive_be(struct layout *l, size_t k, struct be **out, struct err *err)
{
	struct drive_opts o = l->o;
	char src[BE_ID_MAX + 32];

	if (!l->sd[k].be) {
		snprintf(src, sizeof(src), "drive:shared_id=%s", l->sd[k].id);
		o.source = src;
		if (drive_new(&o, &l->sd[k].be, err) < 0) {
			err_prefix(err, "shared drive \"%s\"", l->sd[k].name);
			return -1;
		}
		/* Known from a stored state: its root is the drive's id
		 * (what resolving it would give), no request needed. */
		if (l->sd[k].stored &&
		    drive_root_restore(l->sd[k].be, l->sd[k].id, l->sd[k].id, err) < 0) {
			be_free(l->sd[k].be);
			l->sd[k].be = NULL;
			return -1;
		}
	}
	*out = l->sd[k].be;
	return 0;
}

/* The backend of the shared drive shown as name (relisting the drives
 * when it is unknown). ERR_NOTFOUND when there is none. */
static int shared_be(struct layout *l, const char *name, size_t len, struct be **out,
		     struct err *err)
{
	size_t k;
	int pass, rc = -1;
	int64_t age;

	for (pass = 0; pass < 2; pass++) {
		pthread_mutex_lock(&l->mu);
		for (k = 0; k < l->nsd; k++) {
			if (l->sd[k].live && strlen(l->sd[k].name) == len &&
			    memcmp(l->sd[k].name, name, len) == 0) {
				rc = drive_be(l, k, out, err);
				pthread_mutex_unlock(&l->mu);
				return rc;
			}
		}
		age = clk_mono_ms() - l->listed_ms;
		pthread_mutex_unlock(&l->mu);
		if (pass == 1 || (l->listed_ms && age < LOOKUP_RELIST_MS))
			break;
		if (drives_refresh(l, err) < 0)
			return -1;
	}
	return err_set(err, ERR_NOTFOUND, "\"" LAYOUT_SHARED "/%.*s\": no such shared drive",
		       (int)len, name);
}

/* ---- routing -------------------------------------------------------------------- */

enum { RT_ROOT = 0, RT_SHARED = 1, RT_SUB = 2 };

struct route {
	int kind;
	struct be *be;              /* RT_SUB */
	const char *rest;           /* RT_SUB: the path inside that drive */
	size_t prefix_len;          /* RT_SUB: bytes of path before rest's
				     * component ("MyDrive", "Shareddrives/N") */
};

static int top_is(const char *path, const char *name, const char **after)
{
	size_t n = strlen(name);

	if (strncmp(path, name, n) != 0 || (path[n] != '\0' && path[n] != '/'))
		return 0;
	*after = path[n] ? path + n + 1 : path + n;
	return 1;
}

static int route(struct layout *l, const char *path, struct route *r, struct err *err)
{
	const char *after, *slash;
	size_t len;

	memset(r, 0, sizeof(*r));
	if (!be_path_valid(path))
		return err_set(err, ERR_INVAL, "\"%s\" is not a valid path", path ? path : "(null)");
	if (!*path) {
		r->kind = RT_ROOT;
		return 0;
	}
	if (top_is(path, LAYOUT_MY, &after)) {
		r->kind = RT_SUB;
		r->be = l->my;
		r->rest = after;
		r->prefix_len = strlen(LAYOUT_MY);
		return 0;
	}
	if (top_is(path, LAYOUT_SHARED, &after)) {
		if (!*after) {
			r->kind = RT_SHARED;
			return 0;
		}
		slash = strchr(after, '/');
		len = slash ? (size_t)(slash - after) : strlen(after);
		if (shared_be(l, after, len, &r->be, err) < 0)
			return -1;
		r->kind = RT_SUB;
		r->rest = slash ? slash + 1 : after + len;
		r->prefix_len = (size_t)(after - path) + len;
		return 0;
	}
	return err_set(err, ERR_NOTFOUND, "\"%s\": no such file or directory (layout=colab shows "
		       LAYOUT_MY " and " LAYOUT_SHARED " at the root)", path);
}

static int is_fixed(const char *p);

/* A path inside one drive (not a drive's top itself): for writes. */
static int route_inside(struct layout *l, const char *path, struct route *r, struct err *err)
{
	memset(r, 0, sizeof(*r));
	if (be_path_valid(path) && is_fixed(path))
		return err_set(err, ERR_PERM, "\"%s\": the root, " LAYOUT_MY " and " LAYOUT_SHARED
			       "/NAME are fixed by layout=colab", path);
	if (route(l, path, r, err) < 0)
		return -1;
	if (r->kind != RT_SUB || !*r->rest)
		return err_set(err, ERR_PERM, "\"%s\": the root, " LAYOUT_MY " and " LAYOUT_SHARED
			       "/NAME are fixed by layout=colab", path);
	return 0;
}

static int fixed_dir_entry(const char *name, struct be_entry *e, struct err *err)
{
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		return err_set(err, ERR_NOMEM, "out of memory");
	e->type = BE_DIR;
	return 0;
}

/* ---- the ops ------------------------------------------------------------------------ */

/* My Drive's check; the shared drives are listed too (a failure there is
 * only logged: they are listed again on use), so that layout_state_save
 * has them. */
static int lay_check(struct be *b, struct err *err)
{
	struct err e;

	if (be_check(L(b)->my, err) < 0)
		return -1;
	err_clear(&e);
	if (drives_refresh(L(b), &e) < 0)
		log_debug(TAG, "listing the shared drives: %s", e.msg);
	return 0;
}

static int lay_list(struct be *b, const char *dir, struct be_list *out, struct err *err)
{
	struct layout *l = L(b);
	struct be_list nl = { 0 };
	struct be_entry *e;
	struct route r;
	size_t k;

	if (route(l, dir, &r, err) < 0)
		return -1;
	if (r.kind == RT_SUB)
		return be_list(r.be, r.rest, out, err);
	if (r.kind == RT_ROOT) {
		if (!(e = be_list_add(&nl, LAYOUT_MY, strlen(LAYOUT_MY))))
			goto nomem;
		e->type = BE_DIR;
		if (!(e = be_list_add(&nl, LAYOUT_SHARED, strlen(LAYOUT_SHARED))))
			goto nomem;
		e->type = BE_DIR;
	} else {
		if (drives_refresh(l, err) < 0)
			return -1;
		pthread_mutex_lock(&l->mu);
		for (k = 0; k < l->nsd; k++) {
			if (!l->sd[k].live)
				continue;
			if (!(e = be_list_add(&nl, l->sd[k].name, strlen(l->sd[k].name)))) {
				pthread_mutex_unlock(&l->mu);
				goto nomem;
			}
			e->type = BE_DIR;
		}
		pthread_mutex_unlock(&l->mu);
	}
	be_list_finish(&nl);
	be_list_release(out);
	*out = nl;
	return 0;
nomem:
	be_list_release(&nl);
	return err_set(err, ERR_NOMEM, "out of memory");
}

static int lay_stat(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct route r;
	char *name;

	memset(out, 0, sizeof(*out));
	if (route(L(b), path, &r, err) < 0)
		return -1;
	if (r.kind == RT_ROOT)
		return fixed_dir_entry("", out, err);
	if (r.kind == RT_SHARED)
		return fixed_dir_entry(LAYOUT_SHARED, out, err);
	if (be_stat(r.be, r.rest, out, err) < 0)
		return -1;
	if (!*r.rest) {
		/* A drive's top: named as the layout shows it. */
		name = strdup(be_basename(path));
		if (!name) {
			be_entry_release(out);
			return err_set(err, ERR_NOMEM, "out of memory");
		}
		free(out->name);
		out->name = name;
	}
	return 0;
}

static int lay_read(struct be *b, const char *path, const struct be_version *ver,
		    uint64_t off, uint64_t len, be_sink_fn sink, void *ud, uint64_t *got,
		    struct err *err)
{
	struct route r;

	if (got)
		*got = 0;
	if (route(L(b), path, &r, err) < 0)
		return -1;
	if (r.kind != RT_SUB || !*r.rest)
		return err_set(err, ERR_INVAL, "read \"%s\": not a file", path);
	return be_read(r.be, r.rest, ver, off, len, sink, ud, got, err);
}

static int lay_put(struct be *b, const char *path, int fd, const struct be_meta *meta,
		   const struct be_pre *pre, struct be_entry *out, struct err *err)
{
	struct route r;

	if (out)
		memset(out, 0, sizeof(*out));
	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	return be_put(r.be, r.rest, fd, meta, pre, out, err);
}

static int lay_symlink(struct be *b, const char *path, const char *target,
		       const struct timespec *mtime, const struct be_pre *pre,
		       struct be_entry *out, struct err *err)
{
	struct route r;

	if (out)
		memset(out, 0, sizeof(*out));
	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	return be_symlink(r.be, r.rest, target, mtime, pre, out, err);
}

static int lay_upload_begin(struct be *b, const char *path, const struct be_meta *meta,
			    const struct be_pre *pre, struct be_upload *up, struct err *err)
{
	struct route r;

	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	if (be_upload_begin(r.be, r.rest, meta, pre, up, err) < 0)
		return -1;
	/* The state names the layout's path: chunks route by it. */
	snprintf(up->path, sizeof(up->path), "%s", path);
	return 0;
}

/* Run one upload call on the drive of up->path with the drive's path in
 * the state, then put the layout's path back. */
enum { UP_CHUNK, UP_QUERY, UP_CANCEL };
static int up_call(struct be *b, int what, struct be_upload *up, int fd, struct be_entry *out,
		   struct err *err)
{
	struct be_upload *tmp = NULL;
	struct route r;
	int rc = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (route_inside(L(b), up->path, &r, err) < 0)
		return -1;
	tmp = malloc(sizeof(*tmp));
	if (!tmp)
		return err_set(err, ERR_NOMEM, "out of memory");
	*tmp = *up;
	snprintf(tmp->path, sizeof(tmp->path), "%s", r.rest);
	switch (what) {
	case UP_CHUNK:
		rc = be_upload_chunk(r.be, tmp, fd, out, err);
		break;
	case UP_QUERY:
		rc = be_upload_query(r.be, tmp, out, err);
		break;
	default:
		rc = be_upload_cancel(r.be, tmp, err);
		break;
	}
	memcpy(tmp->path, up->path, sizeof(tmp->path));
	*up = *tmp;
	free(tmp);
	return rc;
}

static int lay_upload_chunk(struct be *b, struct be_upload *up, int fd, struct be_entry *out,
			    struct err *err)
{
	return up_call(b, UP_CHUNK, up, fd, out, err);
}

static int lay_upload_query(struct be *b, struct be_upload *up, struct be_entry *out,
			    struct err *err)
{
	return up_call(b, UP_QUERY, up, -1, out, err);
}

static int lay_upload_cancel(struct be *b, struct be_upload *up, struct err *err)
{
	return up_call(b, UP_CANCEL, up, -1, NULL, err);
}

static int lay_mkdir(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct route r;

	if (out)
		memset(out, 0, sizeof(*out));
	if (route(L(b), path, &r, err) < 0)
		return -1;
	if (r.kind != RT_SUB || !*r.rest) {
		/* The fixed directories exist already. */
		if (out)
			return lay_stat(b, path, out, err);
		return 0;
	}
	return be_mkdir(r.be, r.rest, out, err);
}

static int lay_rmdir(struct be *b, const char *path, struct err *err)
{
	struct route r;

	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	return be_rmdir(r.be, r.rest, err);
}

static int lay_rmdir_tree(struct be *b, const char *path, struct err *err)
{
	struct route r;

	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	return be_rmdir_tree(r.be, r.rest, err);
}

/* Both paths inside one drive: 0 with the routes, else -1. */
static int route_pair(struct layout *l, const char *from, const char *to, struct route *rf,
		      struct route *rt, struct err *err)
{
	if (route_inside(l, from, rf, err) < 0 || route_inside(l, to, rt, err) < 0)
		return -1;
	if (rf->be != rt->be)
		return err_set(err, ERR_INVAL, "\"%s\" -> \"%s\": a rename between two drives "
			       "(copy instead)", from, to);
	return 0;
}

static int lay_rename(struct be *b, const char *from, const struct be_version *from_ver,
		      const char *to, const struct be_pre *to_pre, struct be_entry *out,
		      struct err *err)
{
	struct route rf, rt;

	if (out)
		memset(out, 0, sizeof(*out));
	if (route_pair(L(b), from, to, &rf, &rt, err) < 0)
		return -1;
	return be_rename(rf.be, rf.rest, from_ver, rt.rest, to_pre, out, err);
}

static int lay_rename_dir(struct be *b, const char *from, const char *to,
			  be_progress_fn progress, void *ud, struct err *err)
{
	struct route rf, rt;

	if (route_pair(L(b), from, to, &rf, &rt, err) < 0)
		return -1;
	return be_rename_dir(rf.be, rf.rest, rt.rest, progress, ud, err);
}

static int lay_remove(struct be *b, const char *path, const struct be_version *ver,
		      struct be_entry *cur, struct err *err)
{
	struct route r;

	if (cur)
		memset(cur, 0, sizeof(*cur));
	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	return be_remove(r.be, r.rest, ver, cur, err);
}

static int lay_setattr(struct be *b, const char *path, const struct be_version *ver,
		       const struct be_attr *attr, struct be_entry *out, struct err *err)
{
	struct route r;

	if (out)
		memset(out, 0, sizeof(*out));
	if (route_inside(L(b), path, &r, err) < 0)
		return -1;
	return be_setattr(r.be, r.rest, ver, attr, out, err);
}

static int lay_purge(struct be *b, const char *dir, be_progress_fn progress, void *ud,
		     struct err *err)
{
	struct layout *l = L(b);
	struct be *sub;
	struct route r;
	size_t k, n;

	if (route(l, dir, &r, err) < 0)
		return -1;
	if (r.kind == RT_SUB)
		return be_purge(r.be, r.rest, progress, ud, err);
	if (r.kind == RT_ROOT && be_purge(l->my, "", progress, ud, err) < 0)
		return -1;
	if (drives_refresh(l, err) < 0)
		return -1;
	pthread_mutex_lock(&l->mu);
	n = l->nsd;
	pthread_mutex_unlock(&l->mu);
	for (k = 0; k < n; k++) {
		pthread_mutex_lock(&l->mu);
		if (!l->sd[k].live) {
			pthread_mutex_unlock(&l->mu);
			continue;
		}
		if (drive_be(l, k, &sub, err) < 0) {
			pthread_mutex_unlock(&l->mu);
			return -1;
		}
		pthread_mutex_unlock(&l->mu);
		if (be_purge(sub, "", progress, ud, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- changes ---------------------------------------------------------------------- */

struct wrap {
	be_change_fn fn;
	void *ud;
	const char *prefix;
};

static char *prefixed(const char *prefix, const char *p)
{
	size_t a = strlen(prefix), b = strlen(p);
	char *r = malloc(a + b + 2);

	if (!r)
		return NULL;
	memcpy(r, prefix, a);
	if (b) {
		r[a] = '/';
		memcpy(r + a + 1, p, b + 1);
	} else {
		r[a] = '\0';
	}
	return r;
}

static int wrap_fn(void *ud, const struct be_change *c)
{
	struct wrap *w = ud;
	struct be_change x = *c;
	char *old = NULL, *dir = NULL;
	int rc = 1;

	if (c->old_path && !(old = prefixed(w->prefix, c->old_path)))
		goto out;
	if (c->new_dir && !(dir = prefixed(w->prefix, c->new_dir)))
		goto out;
	x.old_path = old;
	x.new_dir = dir;
	rc = w->fn(w->ud, &x);
out:
	free(old);
	free(dir);
	return rc;
}

/* Append "id=token\n". */
static int tok_add(char **acc, size_t *len, const char *id, const char *tok)
{
	size_t a = strlen(id), b = strlen(tok);
	char *n = realloc(*acc, *len + a + b + 3);

	if (!n)
		return -1;
	*acc = n;
	memcpy(n + *len, id, a);
	n[*len + a] = '=';
	memcpy(n + *len + a + 1, tok, b);
	n[*len + a + 1 + b] = '\n';
	*len += a + b + 2;
	n[*len] = '\0';
	return 0;
}

/* One drive's part of a poll: its changes since its position in `token`
 * (or only its start position when it has none), appended to *acc. */
static int drive_part(struct be *sub, const char *id, const char *prefix, const char *token,
		      be_change_fn fn, void *ud, char **acc, size_t *len, int *added,
		      struct err *err)
{
	struct wrap w = { fn, ud, prefix };
	char *old = NULL, *next = NULL;
	int oom = 0, rc = -1;

	*added = 0;
	if (token && *token) {
		old = layout_token_get(token, id, &oom);
		if (oom)
			return err_set(err, ERR_NOMEM, "out of memory");
		*added = old == NULL;
	}
	if (be_changes(sub, old, wrap_fn, &w, &next, err) < 0) {
		err_prefix(err, "%s", prefix);
		goto out;
	}
	if (tok_add(acc, len, id, next) < 0) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	free(old);
	free(next);
	return rc;
}

static int lay_changes(struct be *b, const char *token, be_change_fn fn, void *ud,
		       char **new_token, struct err *err)
{
	struct layout *l = L(b);
	struct be *sub;
	struct be_change c;
	char *acc = NULL, *ids = NULL, prefix[512], id[BE_ID_MAX];
	size_t len = 0, k, n, idlen = 0;
	int added, any_new = 0, rc = -1, oom = 0;

	*new_token = NULL;
	if (drive_part(l->my, "my", LAYOUT_MY, token, fn, ud, &acc, &len, &added, err) < 0)
		goto out;
	if (drives_refresh(l, err) < 0)
		goto out;
	pthread_mutex_lock(&l->mu);
	n = l->nsd;
	pthread_mutex_unlock(&l->mu);
	for (k = 0; k < n; k++) {
		pthread_mutex_lock(&l->mu);
		if (!l->sd[k].live) {
			pthread_mutex_unlock(&l->mu);
			continue;
		}
		snprintf(prefix, sizeof(prefix), LAYOUT_SHARED "/%s", l->sd[k].name);
		snprintf(id, sizeof(id), "%s", l->sd[k].id);
		rc = drive_be(l, k, &sub, err);
		pthread_mutex_unlock(&l->mu);
		if (rc < 0)
			goto out;
		rc = -1;
		if (drive_part(sub, id, prefix, token, fn, ud, &acc, &len, &added, err) < 0)
			goto out;
		any_new |= added;
		if (tok_add(&ids, &idlen, id, "1") < 0)
			goto nomem;
	}
	/* A shared drive that appeared or went away: Shareddrives/ itself
	 * changed. */
	if (token && *token && !any_new) {
		const char *p = token, *eol, *eq;
		char *live;

		for (; *p && !any_new; p = *eol ? eol + 1 : eol) {
			eol = strchr(p, '\n');
			if (!eol)
				eol = p + strlen(p);
			eq = memchr(p, '=', (size_t)(eol - p));
			if (!eq || (eq - p == 2 && !memcmp(p, "my", 2)))
				continue;
			snprintf(id, sizeof(id), "%.*s", (int)(eq - p), p);
			live = ids ? layout_token_get(ids, id, &oom) : NULL;
			if (oom)
				goto nomem;
			any_new = live == NULL;
			free(live);
		}
	}
	if (token && *token && any_new) {
		memset(&c, 0, sizeof(c));
		c.id = LAYOUT_SHARED;
		c.new_dir = LAYOUT_SHARED;   /* its listing changed */
		c.type = BE_DIR;
		if (fn(ud, &c) != 0) {
			err_set(err, ERR_CANCELED, "change feed stopped by the caller");
			goto out;
		}
	}
	*new_token = acc;
	acc = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	free(acc);
	free(ids);
	return rc;
}

/* ---- stored state ---------------------------------------------------------------------- */

/* 1 when s can be a Drive id: 1-127 bytes of [A-Za-z0-9_.-]. */
static int id_ok(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");

	return n > 0 && n < 128 && s[n] == '\0';
}

char *layout_state_save(struct be *b)
{
	struct layout *l = L(b);
	json_t *o = NULL, *arr = NULL;
	char my[BE_ID_MAX], *r = NULL;
	size_t k;
	int bad = 0;

	drive_root_id(l->my, my, sizeof(my));
	if (!my[0])
		return NULL;
	o = json_object();
	arr = json_array();
	if (!o || !arr || json_object_set_new(o, "my_root", json_string(my)) < 0)
		goto out;
	pthread_mutex_lock(&l->mu);
	for (k = 0; k < l->nsd && !bad; k++) {
		if (!l->sd[k].live)
			continue;
		bad = json_array_append_new(arr, json_pack("{s:s,s:s}", "id", l->sd[k].id, "name",
							   l->sd[k].name)) < 0;
	}
	pthread_mutex_unlock(&l->mu);
	if (bad || json_object_set(o, "shared_drives", arr) < 0)
		goto out;
	r = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(arr);
	json_decref(o);
	return r;
}

int layout_state_restore(struct be *b, const char *state, struct err *err)
{
	struct layout *l = L(b);
	json_t *o = NULL, *arr = NULL, *it;
	struct ldrive *nv;
	const char *my, *id, *name;
	size_t i, k;
	int rc = -1;

	if (!state || jsonh_parse_object(state, strlen(state), "stored layout state", &o,
					 err) < 0)
		goto bad;
	if (jsonh_get_str(o, "my_root", &my, err) < 0 ||
	    jsonh_get_array(o, "shared_drives", &arr, err) < 0)
		goto bad;
	for (i = 0; i < json_array_size(arr); i++) {
		if (jsonh_elem_object(arr, i, "shared_drives", &it, err) < 0 ||
		    jsonh_get_str(it, "id", &id, err) < 0 || jsonh_get_str(it, "name", &name, err) < 0)
			goto bad;
		if (!id_ok(id) || !*name || strchr(name, '/') ||
		    strlen(name) > 255) {
			err_set(err, ERR_PARSE, "stored layout state: shared drive %zu is malformed",
				i);
			goto bad;
		}
	}
	if (drive_root_restore(l->my, my, "", err) < 0)
		goto bad;
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < json_array_size(arr); i++) {
		it = json_array_get(arr, i);
		id = json_string_value(json_object_get(it, "id"));
		name = json_string_value(json_object_get(it, "name"));
		for (k = 0; k < l->nsd && strcmp(l->sd[k].id, id) != 0; k++)
			;
		if (k < l->nsd)
			continue;       /* already listed: the live list wins */
		if (l->nsd == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 8;

			nv = realloc(l->sd, cap * sizeof(*nv));
			if (!nv)
				goto nomem;
			l->sd = nv;
			l->cap = cap;
		}
		memset(&l->sd[k], 0, sizeof(l->sd[k]));
		l->sd[k].id = strdup(id);
		l->sd[k].name = strdup(name);
		if (!l->sd[k].id || !l->sd[k].name) {
			free(l->sd[k].id);
			free(l->sd[k].name);
			goto nomem;
		}
		l->sd[k].live = 1;
		l->sd[k].stored = 1;
		l->nsd++;
	}
	pthread_mutex_unlock(&l->mu);
	log_debug(TAG, "stored state: My Drive root %s, %zu shared drive%s", my,
		  json_array_size(arr), json_array_size(arr) == 1 ? "" : "s");
	rc = 0;
	goto out;
nomem:
	pthread_mutex_unlock(&l->mu);
	err_set(err, ERR_NOMEM, "out of memory");
	goto out;
bad:
	err_prefix(err, "layout=colab");
out:
	json_decref(o);
	return rc;
}

/* ---- namespace ------------------------------------------------------------------------ */

/* Components of path (0 for ""). */
static int depth(const char *p)
{
	int d = *p ? 1 : 0;

	for (; *p; p++)
		d += *p == '/';
	return d;
}

static int is_fixed(const char *p)
{
	const char *after;

	return depth(p) <= 1 || (top_is(p, LAYOUT_SHARED, &after) && depth(p) == 2);
}

/* Length of the drive part of p ("MyDrive", "Shareddrives/NAME"). */
static size_t space_len(const char *p)
{
	const char *after, *s;

	if (top_is(p, LAYOUT_SHARED, &after)) {
		s = strchr(after, '/');
		return s ? (size_t)(s - p) : strlen(p);
	}
	s = strchr(p, '/');
	return s ? (size_t)(s - p) : strlen(p);
}

static int lay_ns_check(struct be *b, const char *path, const char *to)
{
	size_t a, c;

	(void)b;
	if (is_fixed(path) || (to && is_fixed(to)))
		return BE_NS_FIXED;
	if (!to)
		return BE_NS_OK;
	a = space_len(path);
	c = space_len(to);
	if (a != c || memcmp(path, to, a) != 0)
		return BE_NS_XDEV;
	return BE_NS_OK;
}

static void lay_free(struct be *b)
{
	struct layout *l = L(b);
	size_t k;

	be_free(l->my);
	for (k = 0; k < l->nsd; k++) {
		be_free(l->sd[k].be);
		free(l->sd[k].id);
		free(l->sd[k].name);
	}
	free(l->sd);
	free(l->endpoint);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static const struct be_ops layout_ops = {
	.name = "drive",
	.caps = BE_CAP_TRASH | BE_CAP_DIR_RENAME_ATOMIC | BE_CAP_SETATTR | BE_CAP_RMDIR_TREE,
	.symlink_max = DRIVE_SYMLINK_MAX,
	.check = lay_check,
	.list = lay_list,
	.stat = lay_stat,
	.read = lay_read,
	.put = lay_put,
	.symlink = lay_symlink,
	.upload_begin = lay_upload_begin,
	.upload_chunk = lay_upload_chunk,
	.upload_query = lay_upload_query,
	.upload_cancel = lay_upload_cancel,
	.mkdir = lay_mkdir,
	.rmdir = lay_rmdir,
	.rmdir_tree = lay_rmdir_tree,
	.rename = lay_rename,
	.rename_dir = lay_rename_dir,
	.remove = lay_remove,
	.purge = lay_purge,
	.compose = NULL,
	.setattr = lay_setattr,
	.free = lay_free,
	.changes = lay_changes,
	.ns_check = lay_ns_check,
};

int layout_colab_new(const struct drive_opts *o, struct be **out, struct err *err)
{
	struct layout *l = NULL;
	char ep[400];

	*out = NULL;
	if (!o || !o->source || strcmp(o->source, "drive:") != 0)
		return err_set(err, ERR_INVAL, "layout=colab needs the source \"drive:\" (it shows "
			       "My Drive and every shared drive), not \"%s\"",
			       o && o->source ? o->source : "");
	if (drive_endpoint(o->endpoint, ep, sizeof(ep), NULL, err) < 0)
		return -1;
	l = calloc(1, sizeof(*l));
	if (!l)
		return err_set(err, ERR_NOMEM, "out of memory");
	l->base.ops = &layout_ops;
	pthread_mutex_init(&l->mu, NULL);
	l->o = *o;
	if (o->endpoint && !(l->endpoint = strdup(o->endpoint))) {
		lay_free(&l->base);
		return err_set(err, ERR_NOMEM, "out of memory");
	}
	l->o.endpoint = l->endpoint;
	l->o.source = NULL;
	snprintf(l->api, sizeof(l->api), "%s/drive/v3", ep);
	if (drive_new(o, &l->my, err) < 0) {
		lay_free(&l->base);
		return -1;
	}
	*out = &l->base;
	return 0;
}
