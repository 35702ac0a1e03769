/* The backend interface's shared half (include/durafs/backend.h): dispatch
 * wrappers, entry lists (sorting, merging, lookup), POSIX name rules,
 * version text forms, chunk arithmetic, HTTP ranges and retry backoff, the
 * ranged-read window, reading an upload's file, and the whole-file upload
 * driver. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/http.h"
#include "durafs/log.h"

/* --- dispatch: backends always get a non-NULL err ------------------------- */

int be_check(struct be *b, struct err *err)
{
	struct err local;

	return b->ops->check(b, err ? err : &local);
}

int be_list(struct be *b, const char *dir, struct be_list *out, struct err *err)
{
	struct err local;

	return b->ops->list(b, dir, out, err ? err : &local);
}

int be_stat(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct err local;

	return b->ops->stat(b, path, out, err ? err : &local);
}

int be_read(struct be *b, const char *path, const struct be_version *ver,
	    uint64_t off, uint64_t len, be_sink_fn sink, void *ud, uint64_t *got,
	    struct err *err)
{
	struct err local;

	return b->ops->read(b, path, ver, off, len, sink, ud, got, err ? err : &local);
}

int be_put(struct be *b, const char *path, int fd, const struct be_meta *meta,
	   const struct be_pre *pre, struct be_entry *out, struct err *err)
{
	struct err local;

	return b->ops->put(b, path, fd, meta, pre, out, err ? err : &local);
}

int be_symlink(struct be *b, const char *path, const char *target,
	       const struct timespec *mtime, const struct be_pre *pre,
	       struct be_entry *out, struct err *err)
{
	struct err local;

	return b->ops->symlink(b, path, target, mtime, pre, out, err ? err : &local);
}

int be_upload_begin(struct be *b, const char *path, const struct be_meta *meta,
		    const struct be_pre *pre, struct be_upload *up, struct err *err)
{
	struct err local;

	return b->ops->upload_begin(b, path, meta, pre, up, err ? err : &local);
}

int be_upload_chunk(struct be *b, struct be_upload *up, int fd, struct be_entry *out,
		    struct err *err)
{
	struct err local;

	return b->ops->upload_chunk(b, up, fd, out, err ? err : &local);
}

int be_upload_query(struct be *b, struct be_upload *up, struct be_entry *out,
		    struct err *err)
{
	struct err local;

	return b->ops->upload_query(b, up, out, err ? err : &local);
}

int be_upload_cancel(struct be *b, struct be_upload *up, struct err *err)
{
	struct err local;

	return b->ops->upload_cancel(b, up, err ? err : &local);
}

int be_mkdir(struct be *b, const char *path, struct be_entry *out, struct err *err)
{
	struct err local;

	return b->ops->mkdir(b, path, out, err ? err : &local);
}

int be_rmdir(struct be *b, const char *path, struct err *err)
{
	struct err local;

	return b->ops->rmdir(b, path, err ? err : &local);
}

int be_rename(struct be *b, const char *from, const struct be_version *from_ver,
	      const char *to, const struct be_pre *to_pre, struct be_entry *out,
	      struct err *err)
{
	struct err local;

	return b->ops->rename(b, from, from_ver, to, to_pre, out, err ? err : &local);
}

int be_rename_dir(struct be *b, const char *from, const char *to,
		  be_progress_fn progress, void *ud, struct err *err)
{
	struct err local;

	return b->ops->rename_dir(b, from, to, progress, ud, err ? err : &local);
}

int be_remove(struct be *b, const char *path, const struct be_version *ver,
	      struct be_entry *cur, struct err *err)
{
	struct err local;

	return b->ops->remove(b, path, ver, cur, err ? err : &local);
}

int be_purge(struct be *b, const char *dir, be_progress_fn progress, void *ud,
	     struct err *err)
{
	struct err local;

	return b->ops->purge(b, dir, progress, ud, err ? err : &local);
}

int be_compose(struct be *b, const char *to, const struct be_pre *to_pre,
	       const char *const *srcs, const struct be_version *src_vers, size_t n,
	       const struct be_meta *meta, struct be_entry *out, struct err *err)
{
	struct err local;

	if (!(b->ops->caps & BE_CAP_COMPOSE) || !b->ops->compose)
		return err_set(err, ERR_INVAL, "%s: compose not supported", b->ops->name);
	return b->ops->compose(b, to, to_pre, srcs, src_vers, n, meta, out,
			       err ? err : &local);
}

int be_setattr(struct be *b, const char *path, const struct be_version *ver,
	       const struct be_attr *attr, struct be_entry *out, struct err *err)
{
	struct err local;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!(b->ops->caps & BE_CAP_SETATTR) || !b->ops->setattr)
		return err_set(err, ERR_INVAL, "%s: setattr not supported", b->ops->name);
	return b->ops->setattr(b, path, ver, attr, out, err ? err : &local);
}

int be_changes(struct be *b, const char *token, be_change_fn fn, void *ud, char **new_token,
	       struct err *err)
{
	struct err local;

	if (new_token)
		*new_token = NULL;
	if (!b->ops->changes || !new_token)
		return err_set(err, ERR_INVAL, "%s: no change feed", b->ops->name);
	return b->ops->changes(b, token, fn, ud, new_token, err ? err : &local);
}

int be_ns_check(struct be *b, const char *path, const char *to)
{
	return b->ops->ns_check ? b->ops->ns_check(b, path, to) : BE_NS_OK;
}

int be_path_check(struct be *b, const char *path, int dir)
{
	return b->ops->path_check ? b->ops->path_check(b, path, dir) : BE_PATH_OK;
}

int be_has_changes(const struct be *b)
{
	return b->ops->changes != NULL;
}

int be_append(struct be *b, const char *path, const struct be_version *ver,
	      uint64_t old_size, uint32_t tail_crc32c, int fd, const struct be_meta *meta,
	      struct be_entry *out, struct err *err)
{
	struct err local;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!b->ops->append)
		return err_set(err, ERR_INVAL, "%s: append not supported", b->ops->name);
	return b->ops->append(b, path, ver, old_size, tail_crc32c, fd, meta, out,
			      err ? err : &local);
}

int be_can_append(const struct be *b)
{
	return b->ops->append != NULL;
}

void be_free(struct be *b)
{
	if (b)
		b->ops->free(b);
}

/* --- whole-file upload ------------------------------------------------------ */

static int upload_same_content(const struct be_upload *up, const struct be_meta *meta)
{
	if ((up->meta.flags & BE_META_SUMS_LATE) || (meta->flags & BE_META_SUMS_LATE))
		/* Sums come at the end: the caller vouches for the content
		 * (same version); the server checks the sums. */
		return up->meta.size == meta->size &&
		       (up->meta.flags & BE_META_SUMS_LATE) && (meta->flags & BE_META_SUMS_LATE);
	return up->meta.size == meta->size && up->meta.crc32c == meta->crc32c &&
	       memcmp(up->meta.md5, meta->md5, sizeof(meta->md5)) == 0;
}

static int meta_core(int fd, uint64_t limit, uint64_t split, struct be_meta *meta,
		     uint32_t *pcrc, uint32_t *tcrc, atomic_int *stop,
		     struct be_sums_prefix *seed, struct err *err);

/* The checksums of a SUMS_LATE upload, computed by a helper thread. */
struct hasher {
	pthread_t th;
	int started;
	int fd;
	uint64_t size;
	atomic_int stop;            /* the upload gave up: leave early */
	struct be_sums_prefix *seed; /* sums of a prefix to go on from, or NULL */
	struct be_meta m;
	struct err err;
	int rc;
};

static void *hasher_main(void *arg)
{
	struct hasher *h = arg;

	err_clear(&h->err);
	h->rc = meta_core(h->fd, h->size, 0, &h->m, NULL, NULL, &h->stop, h->seed, &h->err);
	if (h->rc == 0 && h->m.size != h->size)
		h->rc = err_set(&h->err, ERR_INVAL, "the file is %" PRIu64 " bytes, not %" PRIu64
				" (changed during upload)", h->m.size, h->size);
	return NULL;
}

/* Wait for the hasher: 0 when its sums are ready (sums_apply), or -1
 * with its error. */
static int hasher_join(struct hasher *h, struct err *err)
{
	if (!h->started)
		return err_set(err, ERR_INVAL, "checksums were never computed");
	pthread_join(h->th, NULL);
	h->started = 0;
	if (h->rc < 0) {
		*err = h->err;
		return -1;
	}
	return 0;
}

static void sums_apply(const struct hasher *h, struct be_meta *m)
{
	m->crc32c = h->m.crc32c;
	memcpy(m->md5, h->m.md5, sizeof(m->md5));
	m->flags |= BE_META_SUMS_READY;
}

static int upload_file_core(struct be *b, const char *path, int fd, const struct be_meta *meta,
			    const struct be_pre *pre, uint64_t small_max, int max_restarts,
			    struct be_upload *up, be_upload_state_fn on_state, void *ud,
			    struct be_entry *out, struct hasher *h, struct err *err);

static int upload_report(const struct be_upload *up, be_upload_state_fn on_state,
			 void *ud, struct err *err)
{
	if (on_state && on_state(ud, up) != 0)
		return err_set(err, ERR_CANCELED, "upload %s: stopped by caller", up->path);
	return 0;
}

int be_upload_file(struct be *b, const char *path, int fd, const struct be_meta *meta,
		   const struct be_pre *pre, uint64_t small_max, int max_restarts,
		   struct be_upload *up, be_upload_state_fn on_state, void *ud,
		   struct be_entry *out, struct err *err)
{
	return be_upload_file_seeded(b, path, fd, meta, pre, small_max, max_restarts, up,
				     on_state, ud, out, NULL, err);
}

void be_sums_prefix_release(struct be_sums_prefix *seed)
{
	if (!seed)
		return;
	ck_md5_release(&seed->md5);
	memset(seed, 0, sizeof(*seed));
}

int be_upload_file_seeded(struct be *b, const char *path, int fd, const struct be_meta *meta,
			  const struct be_pre *pre, uint64_t small_max, int max_restarts,
			  struct be_upload *up, be_upload_state_fn on_state, void *ud,
			  struct be_entry *out, struct be_sums_prefix *seed, struct err *err)
{
	struct hasher *h = NULL;
	struct be_meta m;
	struct err local;
	int rc = -1, r;

	if (!err) {
		err_clear(&local);
		err = &local;
	}
	if (seed && (!(meta->flags & BE_META_SUMS_LATE) || seed->off > meta->size ||
		     !seed->md5.ctx))
		be_sums_prefix_release(seed);   /* not usable here */
	if (seed && !seed->md5.ctx)
		seed = NULL;
	if (!(meta->flags & BE_META_SUMS_LATE))
		return upload_file_core(b, path, fd, meta, pre, small_max, max_restarts, up,
					on_state, ud, out, NULL, err);
	m = *meta;
	m.flags &= ~BE_META_SUMS_READY;
	if (!(be_caps(b) & BE_CAP_SUMS_LATE) || (!up->session[0] && m.size < small_max)) {
		/* Checksums first, as usual. */
		m.flags = 0;
		if (meta_core(fd, m.size, 0, &m, NULL, NULL, NULL, seed, err) < 0) {
			be_sums_prefix_release(seed);
			return -1;
		}
		if (m.size != meta->size)
			return err_set(err, ERR_INVAL, "upload \"%s\": the file is %" PRIu64
				       " bytes, not %" PRIu64 " (changed)", path, m.size,
				       meta->size);
		return upload_file_core(b, path, fd, &m, pre, small_max, max_restarts, up,
					on_state, ud, out, NULL, err);
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		be_sums_prefix_release(seed);
		return err_set(err, ERR_NOMEM, "upload \"%s\": out of memory", path);
	}
	h->fd = fd;
	h->size = m.size;
	h->seed = seed;
	atomic_init(&h->stop, 0);
	r = pthread_create(&h->th, NULL, hasher_main, h);
	if (r != 0) {
		errno = r;
		err_sys(err, "upload \"%s\": starting the checksum thread", path);
		goto out;
	}
	h->started = 1;
	rc = upload_file_core(b, path, fd, &m, pre, small_max, max_restarts, up, on_state, ud,
			      out, h, err);
out:
	if (h && h->started) {
		atomic_store(&h->stop, 1);
		pthread_join(h->th, NULL);
	}
	be_sums_prefix_release(seed);
	free(h);
	return rc;
}

/* be_upload_file with meta final, or (h set) meta's sums coming from h:
 * they are put in up->meta before any request that may complete the
 * upload. */
static int upload_file_core(struct be *b, const char *path, int fd, const struct be_meta *meta,
			    const struct be_pre *pre, uint64_t small_max, int max_restarts,
			    struct be_upload *up, be_upload_state_fn on_state, void *ud,
			    struct be_entry *out, struct hasher *h, struct err *err)
{
	struct err tmp;
	uint64_t chunk = up->chunk_size;
	int restarts = 0, r, last, ready = 0;

	if (!up->session[0] && meta->size < small_max)
		return be_put(b, path, fd, meta, pre, out, err);

	if (up->session[0] && (!upload_same_content(up, meta) || strcmp(up->path, path) != 0)) {
		/* Content changed since the session began: abandon it. */
		err_clear(&tmp);
		be_upload_cancel(b, up, &tmp);
		memset(up, 0, sizeof(*up));
		up->chunk_size = chunk;
	}
	if (up->session[0]) {
		struct be_entry mine = { 0 };
		struct be_entry *q = out ? out : &mine;

		r = be_upload_query(b, up, q, err);
		if (r == 1 && h) {
			/* Found complete before our sums were known: the backend
			 * checked the size only; check the sums now. */
			if (hasher_join(h, err) < 0)
				r = -1;
			else
				sums_apply(h, &up->meta);
			if (r == 1 && (q->size != up->meta.size || !q->has_crc32c ||
				       q->crc32c != up->meta.crc32c ||
				       (q->has_md5 && memcmp(q->md5, up->meta.md5, 16) != 0))) {
				err_set(err, ERR_PARSE, "upload \"%s\": the committed object's "
					"checksums differ (checksum mismatch)", path);
				r = -1;
			}
			if (r < 0) {
				be_entry_release(&mine);
				return -1;
			}
		}
		be_entry_release(&mine);
		if (r == 1)
			return upload_report(up, on_state, ud, err);
		if (r < 0 && err->code != ERR_GONE)
			return -1;
		if (r < 0) {
			memset(up, 0, sizeof(*up));
			up->chunk_size = chunk;
		} else if (upload_report(up, on_state, ud, err) < 0) {
			return -1;
		}
	}
	for (;;) {
		if (!up->session[0]) {
			up->chunk_size = chunk;
			if (be_upload_begin(b, path, meta, pre, up, err) < 0) {
				if (err->code == ERR_CONFLICT && out) {
					/* Report the current remote entry. */
					tmp = *err;
					if (be_stat(b, path, out, NULL) < 0)
						memset(out, 0, sizeof(*out));
					*err = tmp;
				}
				return -1;
			}
			if (ready)
				sums_apply(h, &up->meta);
			if (upload_report(up, on_state, ud, err) < 0)
				return -1;
		}
		if (h && !ready) {
			be_chunk_next(up->meta.size, up->persisted,
				      up->chunk_size ? up->chunk_size : BE_CHUNK_ALIGN, &last);
			if (last) {
				if (hasher_join(h, err) < 0)
					return -1;
				sums_apply(h, &up->meta);
				ready = 1;
			}
		}
		r = be_upload_chunk(b, up, fd, out, err);
		if (r >= 0 && upload_report(up, on_state, ud, err) < 0)
			return -1;
		if (r == 1)
			return 0;
		if (r == 0)
			continue;
		if (err->code != ERR_GONE || restarts >= max_restarts)
			return -1;
		restarts++;
		log_info("backend", "upload \"%s\": session expired; starting over (%d/%d)",
			 path, restarts, max_restarts);
		memset(up, 0, sizeof(*up));
		up->chunk_size = chunk;
	}
}

int be_meta_from_fd(int fd, struct be_meta *meta, struct err *err)
{
	return be_meta_split_from_fd(fd, 0, meta, NULL, NULL, err);
}

int be_meta_split_from_fd(int fd, uint64_t split, struct be_meta *meta, uint32_t *pcrc,
			  uint32_t *tcrc, struct err *err)
{
	int rc = meta_core(fd, UINT64_MAX, split, meta, pcrc, tcrc, NULL, NULL, err);

	if (rc == 0)
		meta->flags &= ~(unsigned)(BE_META_SUMS_LATE | BE_META_SUMS_READY);
	return rc;
}

/* The checksum pass: at most limit bytes from offset 0, split as
 * be_meta_split_from_fd says; stop (may be NULL) aborts it (ERR_CANCELED).
 * seed (may be NULL; no split then): the sums of [0, seed->off) are known,
 * read from there on (its md5 context is taken: released in any case). */
static int meta_core(int fd, uint64_t limit, uint64_t split, struct be_meta *meta,
		     uint32_t *pcrc, uint32_t *tcrc, atomic_int *stop,
		     struct be_sums_prefix *seed, struct err *err)
{
	enum { BUFSZ = 1 << 20 };
	struct ck_md5 md5 = { 0 };
	char *buf = NULL;
	uint64_t off = 0;
	uint32_t crc = 0, tail = 0;
	size_t want;
	ssize_t n;
	int rc = -1, split_done = !pcrc && !tcrc;

	if (seed && seed->md5.ctx && !pcrc && !tcrc && seed->off <= limit) {
		md5 = seed->md5;
		seed->md5.ctx = NULL;
		off = seed->off;
		crc = seed->crc32c;
	}
	be_sums_prefix_release(seed);
	buf = malloc(BUFSZ);
	if (!buf || (!md5.ctx && ck_md5_init(&md5) < 0)) {
		err_set(err, ERR_NOMEM, "checksum: out of memory");
		goto out;
	}
	if (!split_done && split == 0) {
		if (pcrc)
			*pcrc = 0;
		split_done = 1;
	}
	for (;;) {
		want = BUFSZ;
		/* Stop a read at the split so the prefix sums can be taken. */
		if (!split_done && split - off < want)
			want = (size_t)(split - off);
		if (limit - off < want)
			want = (size_t)(limit - off);
		if (want == 0)
			break;
		if (stop && atomic_load(stop)) {
			err_set(err, ERR_CANCELED, "checksum: stopped");
			goto out;
		}
		n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys(err, "checksum: read at %" PRIu64, off);
			goto out;
		}
		if (n == 0)
			break;
		crc = ck_crc32c(crc, buf, (size_t)n);
		if (tcrc && off >= split)
			tail = ck_crc32c(tail, buf, (size_t)n);
		ck_md5_update(&md5, buf, (size_t)n);
		off += (uint64_t)n;
		if (!split_done && off == split) {
			if (pcrc)
				*pcrc = crc;
			split_done = 1;
		}
	}
	if (!split_done && pcrc)
		*pcrc = 0;      /* shorter than split: an empty prefix */
	if (tcrc)
		*tcrc = tail;
	ck_md5_final(&md5, meta->md5);
	meta->crc32c = crc;
	meta->size = off;
	rc = 0;
out:
	ck_md5_release(&md5);
	free(buf);
	return rc;
}

/* --- entries and lists -------------------------------------------------- */

void be_entry_release(struct be_entry *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->content_type);
	free(e->symlink_target);
	memset(e, 0, sizeof(*e));
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -1;
}

int be_entry_copy(struct be_entry *dst, const struct be_entry *src, struct err *err)
{
	*dst = *src;
	dst->name = NULL;
	dst->content_type = NULL;
	dst->symlink_target = NULL;
	if (dup_opt(&dst->name, src->name) < 0 ||
	    dup_opt(&dst->content_type, src->content_type) < 0 ||
	    dup_opt(&dst->symlink_target, src->symlink_target) < 0) {
		be_entry_release(dst);
		return err_set(err, ERR_NOMEM, "entry copy: out of memory");
	}
	return 0;
}

struct be_entry *be_list_add(struct be_list *l, const char *name, size_t len)
{
	struct be_entry *e, *nv;
	size_t ncap;
	char *copy;

	if (l->n == l->cap) {
		ncap = l->cap ? l->cap * 2 : 64;
		nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return NULL;
		l->v = nv;
		l->cap = ncap;
	}
	copy = malloc(len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, name, len);
	copy[len] = '\0';
	e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->name = copy;
	return e;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct be_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	/* Same name: directories first, explicit (marker) before implicit. */
	if ((x->type == BE_DIR) != (y->type == BE_DIR))
		return x->type == BE_DIR ? -1 : 1;
	if (x->implicit != y->implicit)
		return x->implicit ? 1 : -1;
	return 0;
}

void be_list_finish(struct be_list *l)
{
	size_t i, o;
	struct be_entry *keep;

	if (l->n == 0)
		return;
	/* qsort is not stable; entry_cmp orders every pair that matters. */
	qsort(l->v, l->n, sizeof(l->v[0]), entry_cmp);
	o = 0;
	for (i = 1; i < l->n; i++) {
		keep = &l->v[o];
		if (strcmp(keep->name, l->v[i].name) != 0) {
			l->v[++o] = l->v[i];
			continue;
		}
		/* keep sorts first: a directory if there is one, the marker
		 * before the bare prefix. */
		if (keep->type == BE_DIR && l->v[i].type != BE_DIR) {
			log_warn("backend", "object \"%s\" is hidden by a directory of the same name",
				 keep->name);
			l->shadowed++;
		}
		be_entry_release(&l->v[i]);
	}
	l->n = o + 1;
}

const struct be_entry *be_list_find(const struct be_list *l, const char *name)
{
	size_t lo = 0, hi = l->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(name, l->v[mid].name);
		if (c == 0)
			return &l->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void be_list_release(struct be_list *l)
{
	size_t i;

	if (!l)
		return;
	for (i = 0; i < l->n; i++)
		be_entry_release(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* --- names and paths ------------------------------------------------------- */

int be_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > 255)
		return 0;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return 0;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	return 1;
}

int be_path_valid(const char *path)
{
	const char *p = path, *slash;

	if (!path)
		return 0;
	if (*p == '\0')
		return 1;
	for (;;) {
		slash = strchr(p, '/');
		if (!slash)
			return be_name_valid(p, strlen(p));
		if (!be_name_valid(p, (size_t)(slash - p)))
			return 0;
		p = slash + 1;
	}
}

const char *be_basename(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* --- versions ------------------------------------------------------------ */

int be_version_format(const struct be_version *v, char *buf, size_t len)
{
	int n;

	if (v->id[0])
		n = snprintf(buf, len, "g%" PRId64 ".%" PRId64 ":%s", v->gen, v->metagen, v->id);
	else
		n = snprintf(buf, len, "g%" PRId64 ".%" PRId64, v->gen, v->metagen);
	return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

static int parse_i64(const char *s, char **end, int64_t *out)
{
	long long v;

	if (!(*s >= '0' && *s <= '9') && *s != '-')
		return -1;
	errno = 0;
	v = strtoll(s, end, 10);
	if (errno || *end == s)
		return -1;
	*out = (int64_t)v;
	return 0;
}

int be_version_parse(const char *s, struct be_version *v)
{
	struct be_version t;
	char *end = NULL;
	size_t idlen;

	memset(&t, 0, sizeof(t));
	if (!s || s[0] != 'g' || parse_i64(s + 1, &end, &t.gen) < 0 || *end != '.')
		return -1;
	if (parse_i64(end + 1, &end, &t.metagen) < 0)
		return -1;
	if (*end == ':') {
		idlen = strlen(end + 1);
		if (idlen == 0 || idlen >= sizeof(t.id))
			return -1;
		memcpy(t.id, end + 1, idlen + 1);
	} else if (*end != '\0') {
		return -1;
	}
	*v = t;
	return 0;
}

int be_version_equal(const struct be_version *a, const struct be_version *b)
{
	return a->gen == b->gen && a->metagen == b->metagen && strcmp(a->id, b->id) == 0;
}

/* --- time ------------------------------------------------------------------ */

static int digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int be_parse_rfc3339(const char *s, struct timespec *out)
{
	struct tm tm;
	int year, mon, day, hour, min, sec, oh, om, sign;
	long nsec = 0, scale = 100000000L;
	const char *p;
	time_t t;

	if (!s || strlen(s) < 20)
		return -1;
	if (digits(s, 4, &year) || s[4] != '-' || digits(s + 5, 2, &mon) || s[7] != '-' ||
	    digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits(s + 11, 2, &hour) || s[13] != ':' || digits(s + 14, 2, &min) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		return -1;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -1;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			nsec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec == 60 ? 59 : sec;
	t = timegm(&tm);
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) ||
		    oh > 23 || om > 59)
			return -1;
		t -= sign * (time_t)(oh * 3600 + om * 60);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	out->tv_sec = t;
	out->tv_nsec = nsec;
	return 0;
}

/* --- chunks ------------------------------------------------------------- */

int be_chunk_size_valid(uint64_t size)
{
	return size > 0 && size % BE_CHUNK_ALIGN == 0;
}

uint64_t be_chunk_next(uint64_t total, uint64_t persisted, uint64_t chunk_size,
		       int *last)
{
	uint64_t left = persisted < total ? total - persisted : 0;

	if (left <= chunk_size) {
		*last = 1;
		return left;
	}
	*last = 0;
	return chunk_size;
}

void be_upload_started(struct be_upload *up, const char *path, const struct be_meta *meta,
		       uint64_t chunk, int committed)
{
	snprintf(up->path, sizeof(up->path), "%s", path);
	up->meta = *meta;
	up->meta.content_type = NULL;
	up->chunk_size = chunk;
	up->persisted = committed ? meta->size : 0;
	up->done = committed ? 1 : 0;
}

/* --- HTTP ranges and retry pacing of the backends ------------------------ */

/* Decimal digits at *pp (at least one) into *out, advancing *pp; -1 on no
 * digit or overflow. */
static int parse_u64(const char **pp, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*pp = p;
	*out = v;
	return 0;
}

int be_range_persisted(const char *value, uint64_t *persisted)
{
	const char *p = value;
	uint64_t a, b;

	if (!value) {
		*persisted = 0;
		return 0;
	}
	if (strncmp(p, "bytes=", 6) != 0)
		return -1;
	p += 6;
	if (parse_u64(&p, &a) < 0 || *p++ != '-' || parse_u64(&p, &b) < 0 || *p != '\0')
		return -1;
	if (a != 0 || b == UINT64_MAX)
		return -1;
	*persisted = b + 1;
	return 0;
}

int be_content_range_parse(const char *value, uint64_t *first, uint64_t *last,
			   uint64_t *total)
{
	const char *p = value;
	uint64_t a, b, t;

	if (!p || strncmp(p, "bytes ", 6) != 0)
		return -1;
	p += 6;
	if (parse_u64(&p, &a) < 0 || *p++ != '-' || parse_u64(&p, &b) < 0 || *p++ != '/')
		return -1;
	if (*p == '*' && p[1] == '\0') {
		t = UINT64_MAX;
	} else {
		if (parse_u64(&p, &t) < 0 || *p != '\0' || b >= t)
			return -1;
	}
	if (b < a)
		return -1;
	*first = a;
	*last = b;
	*total = t;
	return 0;
}

void be_content_range_header(char *buf, size_t size, uint64_t off, uint64_t len,
			     uint64_t total)
{
	char range[48], tot[24];

	if (len == 0)
		snprintf(range, sizeof(range), "*");
	else
		snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
	if (total == UINT64_MAX)
		snprintf(tot, sizeof(tot), "*");
	else
		snprintf(tot, sizeof(tot), "%" PRIu64, total);
	snprintf(buf, size, "Content-Range: bytes %s/%s", range, tot);
}

long be_jitter(long max)
{
	unsigned char r[4];
	uint32_t v;

	if (max <= 0 || RAND_bytes(r, sizeof(r)) != 1)
		return 0;
	v = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
	return (long)(v % (uint32_t)(max + 1));
}

void be_backoff(struct http *h, long base_ms, int n)
{
	long ms = base_ms;

	if (n > 5)
		n = 5;
	if (n > 0)
		ms <<= n;
	http_pause(h, ms / 2 + be_jitter(ms / 2) + 1, NULL);
}

int be_rdwin_feed(struct be_rdwin *w, const char *data, size_t len)
{
	uint64_t a, b, n;

	a = w->pos;
	b = w->pos + len;
	w->pos = b;
	if (b <= w->skip_to)
		return 0;
	if (a < w->skip_to) {
		data += w->skip_to - a;
		a = w->skip_to;
	}
	if (a >= w->end) {
		w->enough = 1;
		return 1;
	}
	n = (b > w->end ? w->end : b) - a;
	if (n && w->sink(w->ud, data, (size_t)n) != 0) {
		w->user_abort = 1;
		return 1;
	}
	w->delivered += n;
	w->skip_to = a + n;
	if (b > w->end) {
		/* More than asked for (a server ignoring Range): stop here. */
		w->enough = 1;
		return 1;
	}
	return 0;
}

int be_pread_full(int fd, void *buf, size_t len, uint64_t off, struct err *err)
{
	char *p = buf;
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(err, "read at %" PRIu64, off + done);
		if (n == 0)
			return err_set(err, ERR_IO, "file shorter than %" PRIu64 " bytes "
				       "(changed during upload)", off + len);
		done += (size_t)n;
	}
	return 0;
}

int be_load_for_put(int fd, const struct be_meta *meta, uint64_t max, int by_md5,
		    const char *path, char **data, struct err *err)
{
	unsigned char md5[16];
	char *buf = NULL;
	int changed, rc = -1;

	*data = NULL;
	if (meta->size > max) {
		err_set(err, ERR_INVAL, "upload \"%s\": %" PRIu64 " bytes is too large for one "
			"request (use a resumable upload)", path, meta->size);
		goto out;
	}
	buf = malloc(meta->size ? (size_t)meta->size : 1);
	if (!buf) {
		err_set(err, ERR_NOMEM, "upload \"%s\": out of memory", path);
		goto out;
	}
	if (be_pread_full(fd, buf, (size_t)meta->size, 0, err) < 0) {
		err_prefix(err, "upload \"%s\"", path);
		goto out;
	}
	if (by_md5) {
		ck_md5(buf, (size_t)meta->size, md5);
		changed = memcmp(md5, meta->md5, 16) != 0;
	} else {
		changed = ck_crc32c(0, buf, (size_t)meta->size) != meta->crc32c;
	}
	if (changed) {
		err_set(err, ERR_INVAL, "upload \"%s\": content changed since its checksum was "
			"computed", path);
		goto out;
	}
	*data = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	return rc;
}

int be_symlink_meta(const char *path, const char *target, const struct timespec *mtime,
		    const char *content_type, struct be_meta *m, struct err *err)
{
	memset(m, 0, sizeof(*m));
	if (!target || !*target || strlen(target) >= 4096)
		return err_set(err, ERR_INVAL, "symlink \"%s\": bad target", path);
	m->size = strlen(target);
	m->crc32c = ck_crc32c(0, target, (size_t)m->size);
	ck_md5(target, (size_t)m->size, m->md5);
	if (mtime)
		m->mtime = *mtime;
	m->content_type = content_type;
	return 0;
}

/* --- errors a user can act on ----------------------------------------------- */

struct be_advice {
	const char *reason;
	const char *what;       /* what happened, in words */
	const char *advice;     /* what to do */
};

static const struct be_advice be_advices[] = {
	{ "storageQuotaExceeded", "the storage quota is full",
	  "free space (delete files, empty the Drive trash with `durafs trash purge`) or "
	  "raise the quota, then run `durafs sync --flush --retry-failed MOUNTPOINT` "
	  "(nothing is lost meanwhile)" },
	{ "userRateLimitExceeded", "Google is limiting this user's request rate",
	  "nothing to lose: the change stays queued and is retried with backoff; if it "
	  "lasts, use fewer -o upload_workers or raise the per-user quota of the project" },
	{ "rateLimitExceeded", "Google is limiting the request rate",
	  "nothing to lose: the change stays queued and is retried with backoff (GCS allows "
	  "one update per second to one object; a project quota may also be exhausted)" },
	{ "downloadQuotaExceeded", "the file's download quota is exhausted",
	  "wait until Google lifts the limit (up to 24 hours), or read a copy of the file "
	  "(a new file id has its own quota)" },
	{ "quotaExceeded", "a quota of the project is exhausted",
	  "the change stays queued and is retried; check the project's quotas in the "
	  "Google Cloud console" },
	{ "dailyLimitExceeded", "the project's daily limit is exhausted",
	  "the change stays queued and is retried; the limit resets daily, or raise it in "
	  "the Google Cloud console" },
};

static const struct be_advice *advice_of(const char *reason)
{
	size_t i;

	if (!reason || !*reason)
		return NULL;
	for (i = 0; i < sizeof(be_advices) / sizeof(be_advices[0]); i++)
		if (strcmp(reason, be_advices[i].reason) == 0)
			return &be_advices[i];
	return NULL;
}

const char *be_reason_advice(const char *reason)
{
	const struct be_advice *a = advice_of(reason);

	return a ? a->advice : NULL;
}

static int word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

const char *be_reason_find(const char *text)
{
	const char *best = NULL, *p;
	size_t i, n;

	if (!text)
		return NULL;
	for (i = 0; i < sizeof(be_advices) / sizeof(be_advices[0]); i++) {
		n = strlen(be_advices[i].reason);
		for (p = strstr(text, be_advices[i].reason); p;
		     p = strstr(p + 1, be_advices[i].reason)) {
			if ((p == text || !word_char(p[-1])) && !word_char(p[n])) {
				if (!best || p < best)
					best = p;
				break;
			}
		}
	}
	if (!best)
		return NULL;
	for (i = 0; i < sizeof(be_advices) / sizeof(be_advices[0]); i++) {
		n = strlen(be_advices[i].reason);
		if (strncmp(best, be_advices[i].reason, n) == 0 && !word_char(best[n]))
			return be_advices[i].reason;
	}
	return NULL;
}

int be_err_advise(struct err *dst, const struct err *src, const char *verb,
		  const char *path)
{
	const struct be_advice *a = advice_of(src->reason);
	char msg[ERR_MSG_MAX];
	size_t plen;

	if (!a)
		return 0;
	plen = path ? strlen(path) : 0;
	/* A long path is shortened so that the advice always fits. */
	snprintf(msg, sizeof(msg), "%s \"%.*s%s\": %s (Google's reason: %s); what to do: %s",
		 verb ? verb : "request", plen > 120 ? 117 : (int)plen, path ? path : "",
		 plen > 120 ? "..." : "", a->what, a->reason, a->advice);
	if (dst != src)
		*dst = *src;
	memcpy(dst->msg, msg, sizeof(msg));
	return 1;
}
