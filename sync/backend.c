/* The backend interface's shared half (include/durafs/backend.h): dispatch
 * wrappers, entry lists (sorting, merging, lookup), POSIX name rules,
 * version text forms, chunk arithmetic and the whole-file upload driver. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
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

void be_free(struct be *b)
{
	if (b)
		b->ops->free(b);
}

/* --- whole-file upload ------------------------------------------------------ */

static int upload_same_content(const struct be_upload *up, const struct be_meta *meta)
{
	return up->meta.size == meta->size && up->meta.crc32c == meta->crc32c &&
	       memcmp(up->meta.md5, meta->md5, sizeof(meta->md5)) == 0;
}

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
	struct err tmp, local;
	uint64_t chunk = up->chunk_size;
	int restarts = 0, r;

	if (!err) {
		err_clear(&local);
		err = &local;
	}

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
		r = be_upload_query(b, up, out, err);
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
			if (upload_report(up, on_state, ud, err) < 0)
				return -1;
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
	enum { BUFSZ = 1 << 20 };
	struct ck_md5 md5 = { 0 };
	char *buf = NULL;
	uint64_t off = 0;
	uint32_t crc = 0;
	ssize_t n;
	int rc = -1;

	buf = malloc(BUFSZ);
	if (!buf || ck_md5_init(&md5) < 0) {
		err_set(err, ERR_NOMEM, "checksum: out of memory");
		goto out;
	}
	for (;;) {
		n = pread(fd, buf, BUFSZ, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys(err, "checksum: read at %" PRIu64, off);
			goto out;
		}
		if (n == 0)
			break;
		crc = ck_crc32c(crc, buf, (size_t)n);
		ck_md5_update(&md5, buf, (size_t)n);
		off += (uint64_t)n;
	}
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
