/* durafs filesystem core: `durafs cache` served inside the daemon, as the
 * control-socket command "cache" -- warm (fetch the files of trees into the
 * read cache with prefetch_workers parallel downloads, progress streamed),
 * status (how much of a tree is local, cache totals) and drop (evict the
 * clean cached data of a tree; dirty data is kept). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "fs_i.h"
#include "durafs/clock.h"
#include "durafs/ctl.h"
#include "durafs/log.h"

#define CC_TAG "cache"
#define CC_TICK_MS 250          /* progress lines while warming */
#define CC_ERRORS_MAX 20        /* per-file errors listed in a reply */
#define CC_WORKERS_MAX 64

/* ---- the files of a tree ------------------------------------------------------ */

struct cc_item {
	char *path;
	uint64_t size;
	int state;                  /* enum cc_state, filled by cc_classify */
	uint64_t present;           /* bytes already local */
	uint64_t fid;               /* 0: untracked */
	char *cache_name;           /* NULL: none */
};

enum cc_state {
	CC_NONE = 0,                /* nothing cached */
	CC_PARTIAL = 1,             /* some ranges cached */
	CC_FULL = 2,                /* the whole current version is cached */
	CC_LOCAL = 3,               /* the content is local (dirty or new) */
};

struct cc_tree {
	struct cc_item *v;
	size_t n, cap;
	uint64_t dirs;
};

static void cc_tree_free(struct cc_tree *t)
{
	size_t i;

	for (i = 0; i < t->n; i++) {
		free(t->v[i].path);
		free(t->v[i].cache_name);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static int cc_add(struct cc_tree *t, char *path, uint64_t size)
{
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 256;
		struct cc_item *nv = realloc(t->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		t->v = nv;
		t->cap = ncap;
	}
	memset(&t->v[t->n], 0, sizeof(t->v[t->n]));
	t->v[t->n].path = path;
	t->v[t->n].size = size;
	t->n++;
	return 0;
}

static char *cc_join(const char *dir, const char *name)
{
	char *p = NULL;

	if (!*dir)
		return strdup(name);
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* Append every regular file at or below `root` (mount-relative) to t,
 * listing each directory through the merged view (every page). 0, or a
 * negative errno with *bad naming the directory that failed (malloc'd). */
static int cc_walk(struct fs *fs, struct ctl_conn *c, const char *root, struct cc_tree *t,
		   char **bad)
{
	struct fs_info info;
	char **stack = NULL, *dir = NULL, *names = NULL, *p;
	struct fs_dsnap_ent *v = NULL;
	size_t ns = 0, caps = 0, n = 0, i;
	int rc;

	*bad = NULL;
	rc = fs_resolve(fs, root, &info);
	if (rc < 0) {
		*bad = strdup(root);
		return rc;
	}
	if (info.type == JNL_FILE) {
		p = strdup(root);
		if (!p)
			return -ENOMEM;
		rc = cc_add(t, p, info.size);
		if (rc < 0)
			free(p);
		return rc;
	}
	if (info.type != JNL_DIR)
		return 0;
	stack = malloc(16 * sizeof(*stack));
	if (!stack)
		return -ENOMEM;
	caps = 16;
	stack[ns] = strdup(root);
	if (!stack[ns]) {
		rc = -ENOMEM;
		goto out;
	}
	ns++;
	while (ns) {
		dir = stack[--ns];
		if (c && ctl_cancelled(c)) {
			rc = -ECANCELED;
			goto out;
		}
		rc = fs_dir_list(fs, dir, &v, &n, &names);
		if (rc < 0) {
			*bad = dir;
			dir = NULL;
			goto out;
		}
		t->dirs++;
		for (i = 0; i < n; i++) {
			if (v[i].type != JNL_FILE && v[i].type != JNL_DIR)
				continue;
			p = cc_join(dir, names + v[i].name_off);
			if (!p) {
				rc = -ENOMEM;
				goto out;
			}
			if (v[i].type == JNL_FILE) {
				rc = cc_add(t, p, v[i].size);
				if (rc < 0) {
					free(p);
					goto out;
				}
				continue;
			}
			if (ns == caps) {
				char **nst = realloc(stack, caps * 2 * sizeof(*nst));

				if (!nst) {
					free(p);
					rc = -ENOMEM;
					goto out;
				}
				stack = nst;
				caps *= 2;
			}
			stack[ns++] = p;
		}
		free(v);
		free(names);
		v = NULL;
		names = NULL;
		free(dir);
		dir = NULL;
	}
	rc = 0;
out:
	free(v);
	free(names);
	free(dir);
	while (ns)
		free(stack[--ns]);
	free(stack);
	return rc;
}

/* ---- what is local ---------------------------------------------------------------- */

static int cc_pm_cmp(const void *a, const void *b)
{
	const struct jnl_cache_file *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* The read-cache map, sorted by name for lookups. */
struct cc_present {
	struct jnl_cache_file *v;
	size_t n;
};

static int cc_present_load(struct fs *fs, struct cc_present *pm, struct err *e)
{
	pm->v = NULL;
	pm->n = 0;
	if (jnl_cache_lru(fs->jnl, 0, &pm->v, &pm->n, e) < 0)
		return -1;
	if (pm->n)
		qsort(pm->v, pm->n, sizeof(*pm->v), cc_pm_cmp);
	return 0;
}

static const struct jnl_cache_file *cc_present_find(const struct cc_present *pm,
						     const char *name)
{
	struct jnl_cache_file key;

	memset(&key, 0, sizeof(key));
	key.name = (char *)name;
	if (!pm->n)
		return NULL;
	return bsearch(&key, pm->v, pm->n, sizeof(*pm->v), cc_pm_cmp);
}

/* Fill it->state, present, fid, cache_name from the view, the journal and
 * the map. Never touches the network (the listings are already loaded) and
 * never updates the map's access times. 0 or a negative errno. */
static int cc_classify(struct fs *fs, const struct cc_present *pm, struct cc_item *it)
{
	const struct jnl_cache_file *cf;
	struct fs_info info;
	struct jnl_file jf;
	const char *remote;
	char cpath[4096];
	struct stat st;
	struct err e;
	uint64_t fid = 0;
	int rc;

	memset(&jf, 0, sizeof(jf));
	it->state = CC_NONE;
	it->present = 0;
	rc = fs_resolve(fs, it->path, &info);
	if (rc < 0)
		return rc;
	if (info.type != JNL_FILE)
		return -EISDIR;
	it->size = info.size;
	fid = info.fid;
	if (!fid && jnl_file_lookup(fs->jnl, it->path, &fid, &e) < 0)
		fid = 0;
	if (!fid) {
		if (!it->size)
			it->state = CC_FULL;
		return 0;
	}
	it->fid = fid;
	if (jnl_file_get(fs->jnl, fid, &jf, &e) < 0)
		return e.code == ERR_NOTFOUND ? 0 : fs_errno(&e);
	if (jf.dirty || !jf.base) {
		it->state = CC_LOCAL;
		it->present = it->size;
		goto out;
	}
	if (jf.cache_name) {
		it->cache_name = strdup(jf.cache_name);
		if (!it->cache_name) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (!it->size) {
		it->state = CC_FULL;
		goto out;
	}
	remote = info.local || !info.remote[0] ? jf.base : info.remote;
	cf = jf.cache_name ? cc_present_find(pm, jf.cache_name) : NULL;
	if (!cf || !cf->remote || strcmp(cf->remote, remote) || !cf->bytes)
		goto out;
	it->present = cf->bytes < it->size ? cf->bytes : it->size;
	it->state = CC_PARTIAL;
	if (cf->bytes >= it->size && fs_cache_path(fs, jf.cache_name, cpath, sizeof(cpath)) == 0 &&
	    stat(cpath, &st) == 0 && (uint64_t)st.st_size >= it->size)
		it->state = CC_FULL;
out:
	jnl_file_release(&jf);
	return rc;
}

/* ---- requests ------------------------------------------------------------------------ */

static void cc_reply(struct ctl_conn *c, json_t *r)
{
	if (!r) {
		ctl_send_error(c, "out of memory");
		return;
	}
	ctl_send(c, r);
	json_decref(r);
}

/* A path as the request gives it: mount-relative, no leading or trailing
 * slash, no empty, "." or ".." component ("" is the root). */
static int cc_path_ok(const char *p)
{
	const char *s = p;

	if (!*p)
		return 1;
	if (*p == '/' || p[strlen(p) - 1] == '/')
		return 0;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (l == 0 || l > FS_NAME_MAX || (l == 1 && s[0] == '.') ||
		    (l == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		s = e ? e + 1 : s + l;
	}
	return 1;
}

/* Collect and classify the files of every path of the request. 0, or -1
 * after an error reply was sent. */
static int cc_collect(struct fs *fs, struct ctl_conn *c, const json_t *req, struct cc_tree *t,
		      struct cc_present *pm)
{
	const json_t *paths = json_object_get(req, "paths");
	char msg[600], *bad = NULL;
	struct err e;
	size_t i;
	int rc;

	if (!json_is_array(paths) || !json_array_size(paths)) {
		ctl_send_error(c, "cache: \"paths\" must be a non-empty array of mount paths");
		return -1;
	}
	for (i = 0; i < json_array_size(paths); i++) {
		const char *p = json_string_value(json_array_get(paths, i));

		if (!p || !cc_path_ok(p)) {
			snprintf(msg, sizeof(msg), "cache: bad path \"%.400s\"", p ? p : "(not a string)");
			ctl_send_error(c, msg);
			return -1;
		}
		rc = cc_walk(fs, c, p, t, &bad);
		if (rc < 0) {
			if (rc == -ENOENT && bad && !strcmp(bad, p))
				snprintf(msg, sizeof(msg), "/%.400s: no such file or directory in the mount",
					 p);
			else
				snprintf(msg, sizeof(msg), "listing /%.400s: %s", bad ? bad : p,
					 strerror(-rc));
			free(bad);
			ctl_send_error(c, msg);
			return -1;
		}
	}
	if (cc_present_load(fs, pm, &e) < 0) {
		snprintf(msg, sizeof(msg), "read cache map: %s", e.msg);
		ctl_send_error(c, msg);
		return -1;
	}
	for (i = 0; i < t->n; i++) {
		rc = cc_classify(fs, pm, &t->v[i]);
		if (rc == -ENOMEM) {
			ctl_send_error(c, "out of memory");
			return -1;
		}
		/* Gone or replaced since it was listed: counted as not cached. */
	}
	return 0;
}

static json_t *cc_totals(struct fs *fs)
{
	struct fs_cache_stats cs;
	struct statvfs sv;
	uint64_t fs_free = 0;

	fs_cache_stats(fs, &cs);
	if (statvfs(fs->files_dir, &sv) == 0)
		fs_free = (uint64_t)sv.f_bavail * sv.f_frsize;
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "clean_bytes", (json_int_t)cs.clean_bytes,
			 "clean_files", (json_int_t)cs.clean_files,
			 "dirty_bytes", (json_int_t)cs.dirty_bytes,
			 "dirty_files", (json_int_t)cs.dirty_files,
			 "limit", (json_int_t)cs.limit,
			 "min_free", (json_int_t)fs->mo->min_free_space,
			 "fs_free", (json_int_t)fs_free,
			 "evicted_bytes", (json_int_t)cs.evicted_bytes);
}

static void cc_status(struct fs *fs, struct ctl_conn *c, const json_t *req)
{
	struct cc_tree t;
	struct cc_present pm = { NULL, 0 };
	uint64_t cnt[4] = { 0, 0, 0, 0 }, bytes_total = 0, bytes_local = 0;
	json_t *tree = NULL, *tot = NULL;
	size_t i;

	memset(&t, 0, sizeof(t));
	if (json_array_size(json_object_get(req, "paths"))) {
		if (cc_collect(fs, c, req, &t, &pm) < 0)
			goto out;
		for (i = 0; i < t.n; i++) {
			cnt[t.v[i].state]++;
			bytes_total += t.v[i].size;
			bytes_local += t.v[i].present;
		}
		tree = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				 "files", (json_int_t)t.n,
				 "dirs", (json_int_t)t.dirs,
				 "full", (json_int_t)cnt[CC_FULL],
				 "partial", (json_int_t)cnt[CC_PARTIAL],
				 "none", (json_int_t)cnt[CC_NONE],
				 "local", (json_int_t)cnt[CC_LOCAL],
				 "bytes", (json_int_t)bytes_total,
				 "bytes_local", (json_int_t)bytes_local);
		if (!tree) {
			ctl_send_error(c, "out of memory");
			goto out;
		}
	}
	tot = cc_totals(fs);
	if (!tot) {
		ctl_send_error(c, "out of memory");
		goto out;
	}
	if (tree)
		cc_reply(c, json_pack("{s:s, s:o, s:o}", "result", "ok", "tree", tree, "cache", tot));
	else
		cc_reply(c, json_pack("{s:s, s:o}", "result", "ok", "cache", tot));
	tree = tot = NULL;
out:
	json_decref(tree);
	json_decref(tot);
	jnl_cache_files_free(pm.v, pm.n);
	cc_tree_free(&t);
}

static void cc_drop(struct fs *fs, struct ctl_conn *c, const json_t *req)
{
	struct cc_tree t;
	struct cc_present pm = { NULL, 0 };
	uint64_t dropped = 0, freed = 0, kept_dirty = 0, kept_open = 0, ino;
	json_t *kept = NULL;
	size_t i;
	int rc;

	memset(&t, 0, sizeof(t));
	if (cc_collect(fs, c, req, &t, &pm) < 0)
		goto out;
	kept = json_array();
	if (!kept) {
		ctl_send_error(c, "out of memory");
		goto out;
	}
	for (i = 0; i < t.n; i++) {
		struct cc_item *it = &t.v[i];
		const struct jnl_cache_file *cf;

		if (it->state == CC_LOCAL) {
			kept_dirty++;
			if (json_array_size(kept) < CC_ERRORS_MAX)
				json_array_append_new(kept, json_pack("{s:s, s:s}", "path", it->path,
								      "why", "dirty"));
			continue;
		}
		if (!it->fid || !it->cache_name)
			continue;
		cf = cc_present_find(&pm, it->cache_name);
		rc = fs_cache_drop_one(fs, it->fid, it->cache_name, cf ? cf->bytes : 0);
		if (rc == -EBUSY || rc == -EAGAIN) {
			if (rc == -EBUSY)
				kept_open++;
			else
				kept_dirty++;
			if (json_array_size(kept) < CC_ERRORS_MAX)
				json_array_append_new(kept, json_pack("{s:s, s:s}", "path", it->path,
								      "why", rc == -EBUSY ? "open" : "dirty"));
			continue;
		}
		if (rc < 0) {
			log_warn(CC_TAG, "dropping the cached data of \"%s\": %s", it->path,
				 strerror(-rc));
			continue;
		}
		if (cf && cf->bytes) {
			dropped++;
			freed += cf->bytes;
		}
		if (fs_path_ino(fs, it->path, &ino) == 0)
			fs_bg_inval_inode(fs, ino);
	}
	log_info(CC_TAG, "cache drop: %" PRIu64 " files, %" PRIu64 " bytes evicted; %" PRIu64
		 " dirty and %" PRIu64 " open files kept", dropped, freed, kept_dirty, kept_open);
	cc_reply(c, json_pack("{s:s, s:{s:I, s:I, s:I, s:I, s:I, s:o}}", "result", "ok", "drop",
			      "files", (json_int_t)t.n,
			      "dropped_files", (json_int_t)dropped,
			      "dropped_bytes", (json_int_t)freed,
			      "kept_dirty", (json_int_t)kept_dirty,
			      "kept_open", (json_int_t)kept_open,
			      "kept", kept));
	kept = NULL;
out:
	json_decref(kept);
	jnl_cache_files_free(pm.v, pm.n);
	cc_tree_free(&t);
}

/* ---- warm ---------------------------------------------------------------------------- */

struct cc_warm {
	struct fs *fs;
	struct cc_item **todo;
	size_t ntodo;
	atomic_size_t next;
	atomic_int stop;
	_Atomic uint64_t files_done, bytes_done, failed;
	pthread_mutex_t mu;
	json_t *errors;             /* protected by mu */
	int quota;                  /* protected by mu: a download quota hit */
};

/* Fetch the whole file at path through the open-file table (so a reader or
 * writer of the same file shares the fetch, and eviction leaves it alone
 * while it runs). The inode nodes of the path are held (looked up) during
 * the fetch and released after. 0 or a negative errno. */
static int cc_fetch_one(struct fs *fs, const char *path)
{
	uint64_t *inos = NULL, cur = INO_ROOT;
	struct fs_ofile *of = NULL;
	size_t depth = 1, held = 0, i;
	char comp[FS_NAME_MAX + 1];
	const char *p;
	int rc = 0;

	for (p = path; *p; p++)
		depth += *p == '/';
	inos = calloc(depth, sizeof(*inos));
	if (!inos)
		return -ENOMEM;
	for (p = path; *p;) {
		const char *s = strchr(p, '/');
		size_t l = s ? (size_t)(s - p) : strlen(p);

		if (l == 0 || l > FS_NAME_MAX) {
			rc = -ENOENT;
			goto out;
		}
		memcpy(comp, p, l);
		comp[l] = '\0';
		rc = ino_get(fs->ino, cur, comp, &cur, NULL);
		if (rc < 0)
			goto out;
		inos[held++] = cur;
		p = s ? s + 1 : p + l;
	}
	if (!held) {
		rc = -EISDIR;
		goto out;
	}
	/* writable=1 makes the content whole (fetches what is missing); it
	 * does not count a writer, so nothing is marked dirty. */
	rc = fs_of_get(fs, cur, path, 1, 0, &of);
	if (rc == 0)
		fs_of_put(fs, of);
out:
	for (i = held; i > 0; i--)
		ino_forget(fs->ino, inos[i - 1], 1);
	free(inos);
	return rc;
}

static void *cc_warm_main(void *arg)
{
	struct cc_warm *w = arg;

	for (;;) {
		size_t k = atomic_fetch_add(&w->next, 1);
		struct cc_item *it;
		int rc;

		if (k >= w->ntodo || atomic_load(&w->stop))
			break;
		it = w->todo[k];
		rc = cc_fetch_one(w->fs, it->path);
		if (rc == 0) {
			atomic_fetch_add(&w->bytes_done, it->size - it->present);
			atomic_fetch_add(&w->files_done, 1);
			continue;
		}
		atomic_fetch_add(&w->failed, 1);
		log_warn(CC_TAG, "cache warm: \"%s\": %s", it->path, strerror(-rc));
		pthread_mutex_lock(&w->mu);
		if (json_array_size(w->errors) < CC_ERRORS_MAX)
			json_array_append_new(w->errors, json_pack("{s:s, s:s}", "path", it->path,
								   "error", strerror(-rc)));
		if (rc == -EDQUOT) {
			/* Google refuses downloads for a while: asking for
			 * more only extends it. */
			w->quota = 1;
			atomic_store(&w->stop, 1);
		}
		pthread_mutex_unlock(&w->mu);
	}
	return NULL;
}

static int cc_send_progress(struct ctl_conn *c, struct cc_warm *w, uint64_t bytes_total)
{
	json_t *j = json_pack("{s:{s:I, s:I, s:I, s:I, s:I}}", "progress",
			      "files_total", (json_int_t)w->ntodo,
			      "files_done", (json_int_t)atomic_load(&w->files_done),
			      "bytes_total", (json_int_t)bytes_total,
			      "bytes_done", (json_int_t)atomic_load(&w->bytes_done),
			      "failed", (json_int_t)atomic_load(&w->failed));
	int rc = -1;

	if (j) {
		rc = ctl_send(c, j);
		json_decref(j);
	}
	return rc;
}

static void cc_warm(struct fs *fs, struct ctl_conn *c, const json_t *req)
{
	struct cc_tree t;
	struct cc_present pm = { NULL, 0 };
	struct cc_warm w;
	pthread_t th[CC_WORKERS_MAX];
	const json_t *jm = json_object_get(req, "max_size");
	uint64_t max_size = 0, big = 0, big_bytes = 0, cached = 0, cached_bytes = 0;
	uint64_t local = 0, want = 0;
	int64_t t0 = clk_mono_ms(), last = 0;
	size_t i, nth = 0, workers;
	int mu_ok = 0, interrupted = 0;

	memset(&t, 0, sizeof(t));
	memset(&w, 0, sizeof(w));
	w.fs = fs;
	if (jm && !json_is_null(jm)) {
		if (!json_is_integer(jm) || json_integer_value(jm) < 0) {
			ctl_send_error(c, "cache warm: max_size must be a non-negative integer");
			return;
		}
		max_size = (uint64_t)json_integer_value(jm);
	}
	if (cc_collect(fs, c, req, &t, &pm) < 0)
		goto out;
	w.todo = t.n ? calloc(t.n, sizeof(*w.todo)) : NULL;
	w.errors = json_array();
	if ((t.n && !w.todo) || !w.errors || pthread_mutex_init(&w.mu, NULL)) {
		ctl_send_error(c, "out of memory");
		goto out;
	}
	mu_ok = 1;
	for (i = 0; i < t.n; i++) {
		struct cc_item *it = &t.v[i];

		if (it->state == CC_LOCAL) {
			local++;
		} else if (it->state == CC_FULL) {
			cached++;
			cached_bytes += it->size;
		} else if (max_size && it->size > max_size) {
			big++;
			big_bytes += it->size;
		} else {
			w.todo[w.ntodo++] = it;
			want += it->size - it->present;
		}
	}
	workers = fs->mo->prefetch_workers > 0 ? (size_t)fs->mo->prefetch_workers : 16;
	if (workers > CC_WORKERS_MAX)
		workers = CC_WORKERS_MAX;
	if (workers > w.ntodo)
		workers = w.ntodo;
	log_info(CC_TAG, "cache warm: %zu files, %" PRIu64 " already cached, %" PRIu64
		 " local, %" PRIu64 " over the size limit; fetching %zu (%" PRIu64 " bytes) with %zu "
		 "workers", t.n, cached, local, big, w.ntodo, want, workers);
	for (nth = 0; nth < workers; nth++)
		if (pthread_create(&th[nth], NULL, cc_warm_main, &w) != 0)
			break;
	if (w.ntodo && !nth) {
		ctl_send_error(c, "cache warm: cannot start a thread");
		goto out;
	}
	/* Progress until the workers are through (or the peer left). */
	for (;;) {
		int64_t now = clk_mono_ms();
		int done = atomic_load(&w.files_done) + atomic_load(&w.failed) >= w.ntodo;

		if (!atomic_load(&w.stop) && ctl_cancelled(c)) {
			atomic_store(&w.stop, 1);
			interrupted = 1;
		}
		if (done || atomic_load(&w.stop))
			break;
		if (now - last >= CC_TICK_MS) {
			if (cc_send_progress(c, &w, want) < 0) {
				atomic_store(&w.stop, 1);
				interrupted = 1;
				break;
			}
			last = now;
		}
		{
			struct timespec ts = { 0, 50 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	nth = 0;
	if (interrupted)
		log_info(CC_TAG, "cache warm interrupted after %" PRIu64 " files; a rerun "
			 "continues", atomic_load(&w.files_done));
	else
		log_info(CC_TAG, "cache warm: %" PRIu64 " files (%" PRIu64 " bytes) fetched, %"
			 PRIu64 " failed, in %.1f s", atomic_load(&w.files_done),
			 atomic_load(&w.bytes_done), atomic_load(&w.failed),
			 (double)(clk_mono_ms() - t0) / 1000.0);
	if (interrupted)
		goto out;
	cc_send_progress(c, &w, want);
	cc_reply(c, json_pack("{s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			      "s:b, s:O, s:I, s:I}}", "result", "ok", "warm",
			      "files", (json_int_t)t.n,
			      "fetched_files", (json_int_t)atomic_load(&w.files_done),
			      "fetched_bytes", (json_int_t)atomic_load(&w.bytes_done),
			      "cached_files", (json_int_t)cached,
			      "cached_bytes", (json_int_t)cached_bytes,
			      "local_files", (json_int_t)local,
			      "skipped_large", (json_int_t)big,
			      "skipped_large_bytes", (json_int_t)big_bytes,
			      "failed", (json_int_t)atomic_load(&w.failed),
			      "not_tried", (json_int_t)(w.ntodo - atomic_load(&w.files_done) -
							atomic_load(&w.failed)),
			      "elapsed_ms", (json_int_t)(clk_mono_ms() - t0),
			      "quota", w.quota,
			      "errors", w.errors,
			      "cache_limit", (json_int_t)fs->mo->cache_size,
			      "wanted_bytes", (json_int_t)want));
out:
	atomic_store(&w.stop, 1);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	if (mu_ok)
		pthread_mutex_destroy(&w.mu);
	json_decref(w.errors);
	free(w.todo);
	jnl_cache_files_free(pm.v, pm.n);
	cc_tree_free(&t);
}

void fs_cache_ctl(void *ud, struct ctl_conn *c, const json_t *req)
{
	struct fs *fs = ud;
	const char *op = json_string_value(json_object_get(req, "op"));

	if (!op) {
		ctl_send_error(c, "cache: no \"op\" (warm, status or drop)");
		return;
	}
	if (!strcmp(op, "warm"))
		cc_warm(fs, c, req);
	else if (!strcmp(op, "status"))
		cc_status(fs, c, req);
	else if (!strcmp(op, "drop"))
		cc_drop(fs, c, req);
	else
		ctl_send_error(c, "cache: unknown op (warm, status or drop)");
}
