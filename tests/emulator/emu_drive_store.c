/* durafs-emulator Google Drive state (emu_drive_store.h): files in an id
 * table, each folder's children in creation order, a global creation-order
 * index, shared drives, generated ids, the changes log, resumable sessions,
 * and the data-dir persistence.
 *
 * Indexes. Every file has a place in `all` (global creation order) and in
 * its parent's `kids` (order of arrival in that folder): arrays of
 * (seq, file) sorted by seq, where a removed entry keeps its seq with a
 * NULL file until the array is compacted, so a page token (a seq) stays
 * valid and a page starts with a binary search: listing a folder of 100,000
 * files never scans files outside the page. The changes log is an array of
 * the same kind holding, per file id, only its latest change (Google
 * reports each changed file once, in its latest state).
 *
 * Trash: a file is explicitly trashed (its own flag) or trashed through an
 * ancestor; `trashed` is computed by walking the parent chain.
 *
 * Persistence (with a data dir DIR = <data>/drive):
 *   DIR/blobs/<16 hex>  the bytes of one content, written before it is
 *                       published, never modified, mmapped; deleted when no
 *                       file uses it.
 *   DIR/sessions/<id>   the persisted bytes of an active resumable session,
 *                       written before the 308 that acknowledges them;
 *                       renamed into blobs/ when the upload completes.
 *   DIR/journal         JSON lines appended (before the reply) in the order
 *                       the store lock serialised the changes:
 *     {"t":"f",...}       a file created or changed (full record)
 *     {"t":"d","id","v","dv","tm"}  a file removed (change seq v)
 *     {"t":"drv",...} / {"t":"drvd","id"}  a shared drive made / removed
 *     {"t":"ids","a":[..]} / {"t":"idu","a":[..]}  ids generated / used
 *     {"t":"quota","limit"}  the storage limit
 *     {"t":"s",...} / {"t":"sd","id"}  a session made or changed / forgotten
 *     {"t":"reset"}       everything dropped
 * Recovery (dst_open): replay (a torn last line is ignored, other bad lines
 * skipped with a warning), trim each active session file to the 256 KiB
 * multiple it acknowledged and recompute its sums, write a compacted journal
 * (journal.new, fsync, rename; parents before children), delete blob and
 * session files nothing refers to. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "durafs/enc.h"
#include "emu_drive_store.h"
#include "emu_file.h"
#include "emu_parse.h"

#define CHUNK_ALIGN (256 * 1024)
#define SESS_PRUNE_MIN 1024
#define SESS_PRUNE_AGE_MS (60 * 1000)
#define MAX_SORT_KEYS 8

/* --- small containers ------------------------------------------------- */

struct ent {
	int64_t seq;
	void *p;       /* NULL: removed */
};

/* Entries sorted by seq, with tombstones. */
struct dvec {
	struct ent *v;
	size_t n, cap, dead;
};

static int dvec_push(struct dvec *d, int64_t seq, void *p)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct ent *g = realloc(d->v, cap * sizeof(*g));

		if (!g)
			return -1;
		d->v = g;
		d->cap = cap;
	}
	d->v[d->n].seq = seq;
	d->v[d->n].p = p;
	d->n++;
	return 0;
}

/* First index with seq >= want. */
static size_t dvec_lower(const struct dvec *d, int64_t want)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (d->v[mid].seq < want)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void dvec_compact(struct dvec *d)
{
	size_t i, j = 0;

	for (i = 0; i < d->n; i++)
		if (d->v[i].p)
			d->v[j++] = d->v[i];
	d->n = j;
	d->dead = 0;
}

static void dvec_kill(struct dvec *d, int64_t seq)
{
	size_t i = dvec_lower(d, seq);

	if (i < d->n && d->v[i].seq == seq && d->v[i].p) {
		d->v[i].p = NULL;
		d->dead++;
		if (d->dead > 1024 && d->dead > d->n / 2)
			dvec_compact(d);
	}
}

static void dvec_free(struct dvec *d)
{
	free(d->v);
	memset(d, 0, sizeof(*d));
}

/* String-keyed hash map (chained). Keys are borrowed unless own. */
struct dnode {
	const char *key;
	void *val;
	struct dnode *next;
};
struct dmap {
	struct dnode **b;
	size_t nb, n;
	int own;
};

static uint64_t hstr(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static struct dnode **dmap_slot(const struct dmap *m, const char *key)
{
	struct dnode **pp;

	if (!m->nb)
		return NULL;
	pp = &m->b[hstr(key) & (m->nb - 1)];
	while (*pp && strcmp((*pp)->key, key))
		pp = &(*pp)->next;
	return pp;
}

static void *dmap_get(const struct dmap *m, const char *key)
{
	struct dnode **pp = dmap_slot(m, key);

	return pp && *pp ? (*pp)->val : NULL;
}

static int dmap_grow(struct dmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 1024, i;
	struct dnode **b = calloc(nb, sizeof(*b));

	if (!b)
		return -1;
	for (i = 0; i < m->nb; i++) {
		struct dnode *n = m->b[i], *nx;

		for (; n; n = nx) {
			size_t h = hstr(n->key) & (nb - 1);

			nx = n->next;
			n->next = b[h];
			b[h] = n;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return 0;
}

/* Insert or replace; key copied when the map owns keys. */
static int dmap_put(struct dmap *m, const char *key, void *val)
{
	struct dnode **pp, *n;

	if (m->n + 1 > m->nb && dmap_grow(m) < 0)
		return -1;
	pp = dmap_slot(m, key);
	if (*pp) {
		(*pp)->val = val;
		return 0;
	}
	n = malloc(sizeof(*n));
	if (!n)
		return -1;
	n->key = m->own ? strdup(key) : key;
	if (!n->key) {
		free(n);
		return -1;
	}
	n->val = val;
	n->next = NULL;
	*pp = n;
	m->n++;
	return 0;
}

static void dmap_del(struct dmap *m, const char *key)
{
	struct dnode **pp = dmap_slot(m, key), *n;

	if (!pp || !*pp)
		return;
	n = *pp;
	*pp = n->next;
	if (m->own)
		free((char *)n->key);
	free(n);
	m->n--;
}

static void dmap_clear(struct dmap *m)
{
	size_t i;

	for (i = 0; i < m->nb; i++) {
		struct dnode *n = m->b[i], *nx;

		for (; n; n = nx) {
			nx = n->next;
			if (m->own)
				free((char *)n->key);
			free(n);
		}
	}
	free(m->b);
	m->b = NULL;
	m->nb = 0;
	m->n = 0;
}

/* --- the store -------------------------------------------------------- */

struct dfile {
	char id[DST_ID_MAX];
	char *name, *mime, *description, *orig_name, *target_id, *target_mime;
	char *drive_id;              /* shared drive, or NULL (My Drive) */
	struct dfile *pp;            /* parent, NULL for roots */
	int is_root;
	int starred;
	int xtrashed;                /* explicitly trashed */
	int64_t trashed_ms;
	int64_t created_ms, modified_ms, viewed_ms;
	int64_t version;             /* seq of its latest change */
	int64_t rev;                 /* content revision */
	struct dst_blob *blob;
	int64_t export_size;
	json_t *props, *app_props;   /* objects or NULL */
	struct dvec kids;            /* folders */
	int64_t gseq, cseq;          /* places in s->all and pp->kids */
};

struct dchg {
	char id[DST_ID_MAX];
	char *drive_id;
	int removed;
	int64_t time_ms;
	int64_t seq;
};

struct ddrive {
	char id[DST_ID_MAX];
	char *name;
	char *request_id;
	int64_t created_ms;
};

struct dst {
	pthread_rwlock_t lock;
	struct dmap files;           /* id -> dfile; lock */
	struct dvec all;             /* lock */
	int64_t next_seq;            /* index seqs; lock */
	int64_t last_change;         /* lock */
	struct dvec changes;         /* dchg, by seq; lock */
	struct dmap chg_by_id;       /* id -> dchg; lock */
	struct dmap ids;             /* generated ids (owned keys) -> 1 reserved, 2 used */
	struct ddrive **drives;      /* lock */
	size_t ndrives;
	struct dfile *root;          /* My Drive root; lock */
	int64_t usage;               /* bytes of binary content; lock */
	int64_t quota_limit;         /* lock */
	struct dmap sess;            /* id -> dst_sess; lock */
	atomic_uint_fast64_t next_blob;
	char *dir;
	pthread_mutex_t jmu;
	int jfd;                     /* jmu */
	int jwarned;                 /* jmu */
	int jbatch;                  /* lock (write): buffer journal lines */
	char *jb;                    /* lock (write) */
	size_t jblen, jbcap;
	int replaying;
};

int64_t dst_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dst_fmt_time(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;
	size_t n;
	int frac = (int)(ms - (int64_t)t * 1000);

	gmtime_r(&t, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", frac);
}

static void set_err(struct dst_err *e, int status, const char *reason, const char *location,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_err(struct dst_err *e, int status, const char *reason, const char *location,
		    const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	memset(e, 0, sizeof(*e));
	e->status = status;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	snprintf(e->location, sizeof(e->location), "%s", location ? location : "");
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

static void err_nomem(struct dst_err *e)
{
	set_err(e, 500, "backendError", NULL, "The emulator ran out of memory.");
}

static void err_notfound(struct dst_err *e, const char *id)
{
	set_err(e, 404, "notFound", "fileId", "File not found: %.80s.", id);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "durafs-emulator: drive: ");
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(buf);
	buf[n++] = '\n';
	if (emf_write_all(STDERR_FILENO, buf, (size_t)n, 0, 0) < 0)
		return;
}

/* Random characters of Google's id alphabet. */
static void random_chars(char *out, size_t n)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[64];
	size_t i, got = 0;

	while (got < n) {
		size_t want = n - got > sizeof(raw) ? sizeof(raw) : n - got;
		ssize_t r = getrandom(raw, want, 0);

		if (r <= 0) {
			/* no entropy source: still unique enough for tests */
			for (i = 0; i < want; i++)
				raw[i] = (unsigned char)(rand() & 0xff);
			r = (ssize_t)want;
		}
		for (i = 0; i < (size_t)r; i++)
			out[got + i] = abc[raw[i] & 63];
		got += (size_t)r;
	}
	out[n] = '\0';
}

/* A file id like Google's: 33 URL-safe characters starting with '1'. */
static void new_file_id(char out[DST_ID_MAX])
{
	out[0] = '1';
	random_chars(out + 1, 32);
}

static int is_id_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static int valid_id(const char *id)
{
	size_t n = 0;

	if (!id)
		return 0;
	for (; id[n]; n++)
		if (!is_id_char(id[n]))
			return 0;
	return n >= 1 && n < DST_ID_MAX;
}

/* --- hashing ---------------------------------------------------------- */

static void sha256_of(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	memset(out, 0, 32);
	if (!c)
		return;
	if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(c, data, len) != 1 || EVP_DigestFinal_ex(c, out, &n) != 1)
		memset(out, 0, 32);
	EVP_MD_CTX_free(c);
}

static int hex_to_bytes(const char *hex, unsigned char *out, size_t n)
{
	size_t i;

	if (!hex || strlen(hex) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned v = 0;
		int k;

		for (k = 0; k < 2; k++) {
			char c = hex[2 * i + k];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				v |= (unsigned)(c - 'A' + 10);
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* --- blobs ------------------------------------------------------------ */

void dst_blob_ref(struct dst_blob *b)
{
	if (b)
		atomic_fetch_add(&b->refs, 1);
}

void dst_blob_unref(void *p)
{
	struct dst_blob *b = p;

	if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	if (b->mapped && b->data)
		munmap(b->data, (size_t)b->len);
	else
		free(b->data);
	free(b->path);
	free(b);
}

static struct dst_blob *blob_new(void)
{
	struct dst_blob *b = calloc(1, sizeof(*b));

	if (b)
		atomic_init(&b->refs, 1);
	return b;
}

static int blob_map(struct dst_blob *b)
{
	char *m;

	if (b->len == 0)
		return 0;
	m = emf_map_ro(b->path, (size_t)b->len);
	if (!m)
		return -1;
	b->data = m;
	b->mapped = 1;
	return 0;
}

static int blob_assign_path(struct dst *s, struct dst_blob *b)
{
	char leaf[24];

	b->id = atomic_fetch_add(&s->next_blob, 1);
	snprintf(leaf, sizeof(leaf), "%016" PRIx64, b->id);
	b->path = emf_path_join(s->dir, "blobs", leaf);
	return b->path ? 0 : -1;
}

struct dst_blob *dst_blob_take(struct dst *s, char *data, uint64_t len)
{
	struct dst_blob *b = blob_new();
	int fd = -1;

	if (!b) {
		free(data);
		return NULL;
	}
	b->len = len;
	ck_md5(data ? data : "", (size_t)len, b->md5);
	sha256_of(data ? data : "", (size_t)len, b->sha256);
	if (!s->dir || len == 0) {
		if (len == 0) {
			free(data);
			data = NULL;
		}
		b->data = data;
		return b;
	}
	if (blob_assign_path(s, b) < 0)
		goto fail;
	fd = open(b->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || emf_write_all(fd, data, (size_t)len, 0, 1) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	free(data);
	data = NULL;
	if (blob_map(b) < 0)
		goto fail;
	return b;
fail:
	if (fd >= 0)
		close(fd);
	if (b->path)
		unlink(b->path);
	free(data);
	dst_blob_unref(b);
	return NULL;
}

struct dst_blob *dst_blob_copy(struct dst *s, const void *data, uint64_t len)
{
	char *copy = malloc(len ? (size_t)len : 1);

	if (!copy)
		return NULL;
	if (len)
		memcpy(copy, data, (size_t)len);
	return dst_blob_take(s, copy, len);
}

void dst_blob_discard(struct dst_blob *b)
{
	if (!b)
		return;
	if (b->path && b->links == 0)
		unlink(b->path);
	dst_blob_unref(b);
}

/* A file starts or stops using b (store lock held for writing). */
static void blob_link(struct dst_blob *b)
{
	if (!b)
		return;
	dst_blob_ref(b);
	b->links++;
}

static void blob_unlink(struct dst *s, struct dst_blob *b)
{
	if (!b)
		return;
	if (--b->links == 0 && b->path && !s->replaying)
		unlink(b->path);
	dst_blob_unref(b);
}

/* --- journal ---------------------------------------------------------- */

static void jflush_buf(struct dst *s, const char *buf, size_t len)
{
	pthread_mutex_lock(&s->jmu);
	if (s->jfd >= 0 && emf_write_all(s->jfd, buf, len, 0, 0) < 0 && !s->jwarned) {
		s->jwarned = 1;
		warn("cannot append to the journal: %s", strerror(errno));
	}
	pthread_mutex_unlock(&s->jmu);
}

/* Append a record (stolen). Store lock held for writing. */
static void jwrite(struct dst *s, json_t *rec)
{
	char *line;
	size_t n;

	if (!rec)
		return;
	if (!s->dir || s->replaying) {
		json_decref(rec);
		return;
	}
	line = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	if (!line)
		return;
	n = strlen(line);
	if (s->jbatch) {
		if (s->jblen + n + 1 > s->jbcap) {
			size_t cap = s->jbcap ? s->jbcap : 65536;
			char *g;

			while (cap < s->jblen + n + 1)
				cap *= 2;
			g = realloc(s->jb, cap);
			if (!g) {
				free(line);
				return;
			}
			s->jb = g;
			s->jbcap = cap;
		}
		memcpy(s->jb + s->jblen, line, n);
		s->jb[s->jblen + n] = '\n';
		s->jblen += n + 1;
		free(line);
		return;
	}
	line[n] = '\n';  /* json_dumps leaves room: reuse the NUL */
	jflush_buf(s, line, n + 1);
	free(line);
}

static void jbegin(struct dst *s)
{
	s->jbatch++;
}

static void jend(struct dst *s)
{
	if (--s->jbatch > 0)
		return;
	if (s->jblen)
		jflush_buf(s, s->jb, s->jblen);
	s->jblen = 0;
}

/* --- files: helpers --------------------------------------------------- */

static int is_folder(const struct dfile *f)
{
	return !strcmp(f->mime, DST_FOLDER);
}

static int is_shortcut(const struct dfile *f)
{
	return !strcmp(f->mime, DST_SHORTCUT);
}

static int is_apps(const char *mime)
{
	return !strncmp(mime, DST_APPS_PREFIX, strlen(DST_APPS_PREFIX));
}

/* Google Docs types and other apps types without binary content. */
static int is_doc(const struct dfile *f)
{
	return is_apps(f->mime) && !is_folder(f) && !is_shortcut(f);
}

static int has_content(const struct dfile *f)
{
	return !is_apps(f->mime);
}

static int64_t content_size(const struct dfile *f)
{
	return has_content(f) && f->blob ? (int64_t)f->blob->len : 0;
}

/* Effective trash state; *when gets the trashing ancestor's time. */
static int eff_trashed(const struct dfile *f, int64_t *when)
{
	for (; f; f = f->pp) {
		if (f->xtrashed) {
			if (when)
				*when = f->trashed_ms;
			return 1;
		}
	}
	return 0;
}

static struct dfile *lookup(struct dst *s, const char *id)
{
	if (!id)
		return NULL;
	if (!strcmp(id, "root"))
		return s->root;
	return dmap_get(&s->files, id);
}

/* Visible to this request: shared-drive items need supportsAllDrives. */
static struct dfile *lookup_visible(struct dst *s, const char *id, int all_drives)
{
	struct dfile *f = lookup(s, id);

	if (f && f->drive_id && !all_drives)
		return NULL;
	return f;
}

static int is_ancestor(const struct dfile *a, const struct dfile *f)
{
	for (; f; f = f->pp)
		if (f == a)
			return 1;
	return 0;
}

static void file_free(struct dfile *f)
{
	if (!f)
		return;
	free(f->name);
	free(f->mime);
	free(f->description);
	free(f->orig_name);
	free(f->target_id);
	free(f->target_mime);
	free(f->drive_id);
	json_decref(f->props);
	json_decref(f->app_props);
	dvec_free(&f->kids);
	free(f);
}

static int set_str(char **dst, const char *v)
{
	char *c = v ? strdup(v) : NULL;

	if (v && !c)
		return -1;
	free(*dst);
	*dst = c;
	return 0;
}

static const char *ext_of(const char *name, int full)
{
	const char *dot = full ? strchr(name, '.') : strrchr(name, '.');

	if (!dot || dot == name || !dot[1])
		return NULL;
	return dot + 1;
}

/* Export formats per Docs type (first is the natural one). */
static const char *const doc_exports[][8] = {
	{ "application/vnd.google-apps.document",
	  "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	  "text/plain", "application/pdf", "text/html", "application/rtf",
	  "application/vnd.oasis.opendocument.text" },
	{ "application/vnd.google-apps.spreadsheet",
	  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	  "text/csv", "application/pdf", "application/x-vnd.oasis.opendocument.spreadsheet",
	  "text/tab-separated-values", "application/zip" },
	{ "application/vnd.google-apps.presentation",
	  "application/vnd.openxmlformats-officedocument.presentationml.presentation",
	  "application/pdf", "text/plain", "application/vnd.oasis.opendocument.presentation" },
	{ "application/vnd.google-apps.drawing", "application/pdf", "image/png", "image/jpeg",
	  "image/svg+xml" },
	{ "application/vnd.google-apps.script", "application/vnd.google-apps.script+json" },
	{ "application/vnd.google-apps.jam", "application/pdf" },
};

/* --- rendering -------------------------------------------------------- */

int dst_keys_want(const struct dst_keys *k, const char *key)
{
	int i;

	if (!k || k->all)
		return 1;
	for (i = 0; i < k->n; i++)
		if (!strcmp(k->k[i], key))
			return 1;
	return 0;
}

#define W(key) dst_keys_want(keys, key)

static json_t *render_keys(struct dst *s, const struct dfile *f, const struct dst_keys *keys);

static json_t *render(struct dst *s, const struct dfile *f)
{
	return render_keys(s, f, NULL);
}

static json_t *render_keys(struct dst *s, const struct dfile *f, const struct dst_keys *keys)
{
	char t[32], v[24];
	int64_t tms = 0;
	int trashed = eff_trashed(f, &tms);
	int folder = is_folder(f);
	json_t *j = json_object(), *caps;

	(void)s;
	if (!j)
		return NULL;
	if (W("kind"))
		json_object_set_new(j, "kind", json_string("drive#file"));
	if (W("id"))
		json_object_set_new(j, "id", json_string(f->id));
	if (W("name"))
		json_object_set_new(j, "name", json_string(f->name));
	if (W("mimeType"))
		json_object_set_new(j, "mimeType", json_string(f->mime));
	if (f->pp && W("parents"))
		json_object_set_new(j, "parents", json_pack("[s]", f->pp->id));
	if (W("starred"))
		json_object_set_new(j, "starred", json_boolean(f->starred));
	if (W("trashed"))
		json_object_set_new(j, "trashed", json_boolean(trashed));
	if (W("explicitlyTrashed"))
		json_object_set_new(j, "explicitlyTrashed", json_boolean(f->xtrashed));
	if (trashed && W("trashedTime")) {
		dst_fmt_time(tms, t);
		json_object_set_new(j, "trashedTime", json_string(t));
	}
	if (W("spaces"))
		json_object_set_new(j, "spaces", json_pack("[s]", "drive"));
	if (W("version")) {
		snprintf(v, sizeof(v), "%" PRId64, f->version);
		json_object_set_new(j, "version", json_string(v));
	}
	if (W("createdTime")) {
		dst_fmt_time(f->created_ms, t);
		json_object_set_new(j, "createdTime", json_string(t));
	}
	if (W("modifiedTime") || W("modifiedByMeTime")) {
		dst_fmt_time(f->modified_ms, t);
		json_object_set_new(j, "modifiedTime", json_string(t));
		json_object_set_new(j, "modifiedByMeTime", json_string(t));
	}
	if (W("modifiedByMe"))
		json_object_set_new(j, "modifiedByMe", json_true());
	if (W("viewedByMeTime")) {
		dst_fmt_time(f->viewed_ms, t);
		json_object_set_new(j, "viewedByMeTime", json_string(t));
	}
	if (W("viewedByMe"))
		json_object_set_new(j, "viewedByMe", json_true());
	if (f->drive_id) {
		if (W("driveId"))
			json_object_set_new(j, "driveId", json_string(f->drive_id));
		if (W("teamDriveId"))
			json_object_set_new(j, "teamDriveId", json_string(f->drive_id));
	} else {
		if (W("ownedByMe"))
			json_object_set_new(j, "ownedByMe", json_true());
		if (W("owners"))
			json_object_set_new(j, "owners", json_pack("[{s:s, s:s, s:b, s:s}]", "kind",
								   "drive#user", "displayName",
								   "Emulated User", "me", 1,
								   "emailAddress", DST_USER_EMAIL));
	}
	if (f->description && W("description"))
		json_object_set_new(j, "description", json_string(f->description));
	if (f->orig_name && W("originalFilename"))
		json_object_set_new(j, "originalFilename", json_string(f->orig_name));
	if (has_content(f)) {
		char sz[24], md5[33], sha[65];
		const char *e;

		snprintf(sz, sizeof(sz), "%" PRId64, content_size(f));
		if (W("size"))
			json_object_set_new(j, "size", json_string(sz));
		if (W("quotaBytesUsed"))
			json_object_set_new(j, "quotaBytesUsed", json_string(sz));
		if (f->blob && W("md5Checksum")) {
			ck_md5_hex(f->blob->md5, md5);
			json_object_set_new(j, "md5Checksum", json_string(md5));
		}
		if (f->blob && W("sha256Checksum")) {
			enc_hex(f->blob->sha256, 32, sha);
			json_object_set_new(j, "sha256Checksum", json_string(sha));
		}
		if (W("headRevisionId")) {
			snprintf(sz, sizeof(sz), "0B%.8sr%" PRId64, f->id + 1, f->rev);
			json_object_set_new(j, "headRevisionId", json_string(sz));
		}
		if ((e = ext_of(f->name, 0)) && W("fileExtension"))
			json_object_set_new(j, "fileExtension", json_string(e));
		if ((e = ext_of(f->name, 1)) && W("fullFileExtension"))
			json_object_set_new(j, "fullFileExtension", json_string(e));
	} else if (W("quotaBytesUsed")) {
		json_object_set_new(j, "quotaBytesUsed", json_string("0"));
	}
	if (is_shortcut(f) && W("shortcutDetails"))
		json_object_set_new(j, "shortcutDetails", json_pack("{s:s, s:s}",
			"targetId", f->target_id ? f->target_id : "",
			"targetMimeType", f->target_mime ? f->target_mime : ""));
	if (is_doc(f) && W("exportLinks")) {
		json_t *links = json_object();
		size_t i, k;

		for (i = 0; i < sizeof(doc_exports) / sizeof(doc_exports[0]); i++) {
			if (strcmp(doc_exports[i][0], f->mime))
				continue;
			for (k = 1; k < 8 && doc_exports[i][k]; k++) {
				char *enc = enc_url(doc_exports[i][k]), *url = NULL;

				if (enc && asprintf(&url, "/drive/v3/files/%s/export?mimeType=%s",
						    f->id, enc) >= 0)
					json_object_set_new(links, doc_exports[i][k], json_string(url));
				free(enc);
				free(url);
			}
		}
		json_object_set_new(j, "exportLinks", links);
	}
	if (f->props && json_object_size(f->props) && W("properties"))
		json_object_set_new(j, "properties", json_deep_copy(f->props));
	if (f->app_props && json_object_size(f->app_props) && W("appProperties"))
		json_object_set_new(j, "appProperties", json_deep_copy(f->app_props));
	if (W("capabilities")) {
		caps = json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b}",
				 "canEdit", 1, "canDownload", !folder, "canTrash", !f->is_root,
				 "canUntrash", !f->is_root, "canDelete", !f->is_root,
				 "canRename", !f->is_root, "canAddChildren", folder,
				 "canListChildren", folder, "canRemoveChildren", folder,
				 "canMoveItemWithinDrive", !f->is_root,
				 "canModifyContent", has_content(f), "canReadRevisions",
				 has_content(f));
		json_object_set_new(j, "capabilities", caps);
	}
	return j;
}

#undef W

static void view_fill(struct dst *s, const struct dfile *f, struct dst_view *out)
{
	memset(out, 0, sizeof(*out));
	out->res = render(s, f);
	out->is_folder = is_folder(f);
	out->is_shortcut = is_shortcut(f);
	out->is_doc = is_doc(f);
	out->export_size = f->export_size;
	if (f->blob) {
		dst_blob_ref(f->blob);
		out->blob = f->blob;
	}
}

void dst_view_release(struct dst_view *v)
{
	if (!v)
		return;
	json_decref(v->res);
	dst_blob_unref(v->blob);
	memset(v, 0, sizeof(*v));
}

/* --- journal records -------------------------------------------------- */

static json_t *file_rec(const struct dfile *f)
{
	json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:I, s:I}",
			      "t", "f", "id", f->id, "n", f->name, "m", f->mime,
			      "c", (json_int_t)f->created_ms, "mo", (json_int_t)f->modified_ms,
			      "vw", (json_int_t)f->viewed_ms, "v", (json_int_t)f->version,
			      "r", (json_int_t)f->rev, "st", f->starred, "x", f->xtrashed,
			      "xt", (json_int_t)f->trashed_ms, "es", (json_int_t)f->export_size);

	if (!r)
		return NULL;
	if (f->pp)
		json_object_set_new(r, "p", json_string(f->pp->id));
	if (f->is_root)
		json_object_set_new(r, "rt", json_true());
	if (f->drive_id)
		json_object_set_new(r, "dv", json_string(f->drive_id));
	if (f->description)
		json_object_set_new(r, "ds", json_string(f->description));
	if (f->orig_name)
		json_object_set_new(r, "of", json_string(f->orig_name));
	if (f->target_id)
		json_object_set_new(r, "ti", json_string(f->target_id));
	if (f->target_mime)
		json_object_set_new(r, "tm", json_string(f->target_mime));
	if (f->props)
		json_object_set_new(r, "pr", json_deep_copy(f->props));
	if (f->app_props)
		json_object_set_new(r, "ap", json_deep_copy(f->app_props));
	if (f->blob) {
		char md5[33], sha[65];

		ck_md5_hex(f->blob->md5, md5);
		enc_hex(f->blob->sha256, 32, sha);
		json_object_set_new(r, "b", json_integer((json_int_t)f->blob->id));
		json_object_set_new(r, "bl", json_integer((json_int_t)f->blob->len));
		json_object_set_new(r, "md5", json_string(md5));
		json_object_set_new(r, "sha", json_string(sha));
	}
	return r;
}

static json_t *sess_rec(const struct dst_sess *ss)
{
	json_t *r = json_pack("{s:s, s:s, s:b, s:s, s:O, s:b, s:I, s:I, s:i, s:I, s:I}",
			      "t", "s", "id", ss->id, "u", ss->update, "fid", ss->file_id,
			      "meta", ss->meta ? ss->meta : json_null(),
			      "ad", ss->all_drives, "dl", (json_int_t)ss->declared_total,
			      "tot", (json_int_t)ss->total, "st", ss->state,
			      "c", (json_int_t)ss->created_ms, "e", (json_int_t)ss->ended_ms);

	if (!r)
		return NULL;
	if (ss->upload_ctype)
		json_object_set_new(r, "ct", json_string(ss->upload_ctype));
	if (ss->add_parents)
		json_object_set_new(r, "ap", json_string(ss->add_parents));
	if (ss->remove_parents)
		json_object_set_new(r, "rp", json_string(ss->remove_parents));
	return r;
}

/* --- changes ---------------------------------------------------------- */

/* Record the latest change of file id (removed or not). Store lock held
 * for writing. Returns the change seq. */
static int64_t note_change(struct dst *s, const char *id, const char *drive_id, int removed,
			   int64_t seq)
{
	struct dchg *old = dmap_get(&s->chg_by_id, id), *c;

	if (seq <= 0)
		seq = ++s->last_change;
	else if (seq > s->last_change)
		s->last_change = seq;
	if (old) {
		dmap_del(&s->chg_by_id, id);
		if (!s->replaying)
			dvec_kill(&s->changes, old->seq);
		free(old->drive_id);
		free(old);
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return seq;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->drive_id = drive_id ? strdup(drive_id) : NULL;
	c->removed = removed;
	c->time_ms = dst_now_ms();
	c->seq = seq;
	if (s->replaying) {
		/* journal order is not seq order (compaction writes trees): the
		 * log is rebuilt from the map, sorted, once replay ends */
		if (dmap_put(&s->chg_by_id, c->id, c) < 0) {
			free(c->drive_id);
			free(c);
		}
		return seq;
	}
	if (dvec_push(&s->changes, seq, c) < 0 || dmap_put(&s->chg_by_id, c->id, c) < 0) {
		/* out of memory: the change is lost from the feed, state is fine */
		dvec_kill(&s->changes, seq);
		dmap_del(&s->chg_by_id, c->id);
		free(c->drive_id);
		free(c);
	}
	return seq;
}

/* A file changed: new version, a change entry, a journal record. */
static void touch(struct dst *s, struct dfile *f)
{
	f->version = note_change(s, f->id, f->drive_id, 0, 0);
	jwrite(s, file_rec(f));
}

/* --- files: linking --------------------------------------------------- */

static int link_file(struct dst *s, struct dfile *f, struct dfile *parent)
{
	f->gseq = ++s->next_seq;
	if (dvec_push(&s->all, f->gseq, f) < 0)
		return -1;
	if (dmap_put(&s->files, f->id, f) < 0) {
		dvec_kill(&s->all, f->gseq);
		return -1;
	}
	f->pp = parent;
	if (parent) {
		f->cseq = ++s->next_seq;
		if (dvec_push(&parent->kids, f->cseq, f) < 0) {
			dmap_del(&s->files, f->id);
			dvec_kill(&s->all, f->gseq);
			f->pp = NULL;
			return -1;
		}
	}
	return 0;
}

static int move_file(struct dst *s, struct dfile *f, struct dfile *np)
{
	int64_t seq = ++s->next_seq;

	if (dvec_push(&np->kids, seq, f) < 0)
		return -1;
	if (f->pp)
		dvec_kill(&f->pp->kids, f->cseq);
	f->pp = np;
	f->cseq = seq;
	return 0;
}

/* Free f after taking it out of every index. */
static void remove_one(struct dst *s, struct dfile *f)
{
	if (f->pp)
		dvec_kill(&f->pp->kids, f->cseq);
	dvec_kill(&s->all, f->gseq);
	dmap_del(&s->files, f->id);
	if (has_content(f))
		s->usage -= content_size(f);
	blob_unlink(s, f->blob);
	f->blob = NULL;
	file_free(f);
}

/* Every file of the subtree rooted at f, parents before children. A new
 * array (free it), NULL on ENOMEM. */
static struct dfile **subtree(struct dfile *f, size_t *count)
{
	struct dfile **v = NULL, **g;
	size_t n = 0, cap = 0, i, k;

	*count = 0;
	cap = 16;
	v = malloc(cap * sizeof(*v));
	if (!v)
		return NULL;
	v[n++] = f;
	for (i = 0; i < n; i++) {
		struct dfile *d = v[i];

		for (k = 0; k < d->kids.n; k++) {
			if (!d->kids.v[k].p)
				continue;
			if (n == cap) {
				cap *= 2;
				g = realloc(v, cap * sizeof(*v));
				if (!g) {
					free(v);
					return NULL;
				}
				v = g;
			}
			v[n++] = d->kids.v[k].p;
		}
	}
	*count = n;
	return v;
}

/* Remove f and its descendants for good (changes + journal). */
static int remove_tree(struct dst *s, struct dfile *f, long *removed)
{
	size_t n = 0, i;
	struct dfile **v = subtree(f, &n);

	if (!v)
		return -1;
	jbegin(s);
	for (i = n; i-- > 0;) {
		struct dfile *d = v[i];
		int64_t seq = note_change(s, d->id, d->drive_id, 1, 0);
		json_t *rec = json_pack("{s:s, s:s, s:I}", "t", "d", "id", d->id, "v",
					(json_int_t)seq);

		if (rec && d->drive_id)
			json_object_set_new(rec, "dv", json_string(d->drive_id));
		jwrite(s, rec);
		remove_one(s, d);
	}
	jend(s);
	free(v);
	if (removed)
		*removed += (long)n;
	return 0;
}

/* --- files: metadata from JSON ---------------------------------------- */

static int json_time(const json_t *v, int64_t *ms)
{
	return json_is_string(v) ? dq_parse_time(json_string_value(v), ms) : -1;
}

/* properties / appProperties: merge src into *dst (null deletes). */
static int merge_props(json_t **dst, const json_t *src, const char *which, struct dst_err *err)
{
	const char *k;
	json_t *v;

	if (!src || json_is_null(src))
		return 0;
	if (!json_is_object(src)) {
		set_err(err, 400, "invalid", which, "Invalid value for %s: an object is expected.",
			which);
		return -1;
	}
	json_object_foreach((json_t *)src, k, v) {
		if (!json_is_string(v) && !json_is_null(v)) {
			set_err(err, 400, "invalid", which,
				"Invalid value for %s.%s: property values are strings.", which, k);
			return -1;
		}
		if (strlen(k) + (json_is_string(v) ? strlen(json_string_value(v)) : 0) > 124) {
			set_err(err, 400, "invalid", which,
				"The property %s exceeds the maximum size of 124 bytes.", k);
			return -1;
		}
	}
	if (!*dst && !(*dst = json_object())) {
		err_nomem(err);
		return -1;
	}
	json_object_foreach((json_t *)src, k, v) {
		if (json_is_null(v))
			json_object_del(*dst, k);
		else
			json_object_set_new(*dst, k, json_string(json_string_value(v)));
	}
	return 0;
}

static int check_name(const json_t *v, struct dst_err *err)
{
	if (!json_is_string(v)) {
		set_err(err, 400, "invalid", "name", "Invalid value for name: a string is expected.");
		return -1;
	}
	if (strlen(json_string_value(v)) > 32767) {
		set_err(err, 400, "invalid", "name", "The name is too long.");
		return -1;
	}
	return 0;
}

static int check_string_field(const json_t *meta, const char *key, struct dst_err *err)
{
	const json_t *v = json_object_get(meta, key);

	if (v && !json_is_string(v) && !json_is_null(v)) {
		set_err(err, 400, "invalid", key, "Invalid value for %s: a string is expected.",
			key);
		return -1;
	}
	return 0;
}

/* --- files: create ---------------------------------------------------- */

static int id_state(struct dst *s, const char *id)
{
	return (int)(intptr_t)dmap_get(&s->ids, id);
}

static void id_mark_used(struct dst *s, const char *id)
{
	json_t *rec;

	if (dmap_put(&s->ids, id, (void *)(intptr_t)2) < 0)
		return;
	rec = json_pack("{s:s, s:[s]}", "t", "idu", "a", id);
	jwrite(s, rec);
}

int dst_create(struct dst *s, const struct dst_new *n, struct dst_view *out,
	       struct dst_err *err)
{
	const json_t *meta = n->meta;
	const json_t *v, *parents = json_object_get(meta, "parents");
	const char *name = NULL, *mime = NULL, *pid = "root", *id = NULL;
	struct dfile *f = NULL, *parent, *target = NULL;
	int64_t now = dst_now_ms(), t;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (meta && !json_is_object(meta)) {
		set_err(err, 400, "invalid", NULL, "The request body must be a JSON object.");
		return -1;
	}
	if ((v = json_object_get(meta, "name")) && !json_is_null(v)) {
		if (check_name(v, err) < 0)
			return -1;
		name = json_string_value(v);
	}
	if (check_string_field(meta, "mimeType", err) < 0 ||
	    check_string_field(meta, "description", err) < 0 ||
	    check_string_field(meta, "originalFilename", err) < 0 ||
	    check_string_field(meta, "id", err) < 0)
		return -1;
	mime = json_string_value(json_object_get(meta, "mimeType"));
	if (!mime || !*mime)
		mime = n->default_mime && *n->default_mime ? n->default_mime
							   : (n->blob ? "application/octet-stream"
								      : "application/octet-stream");
	if (parents && !json_is_null(parents)) {
		if (!json_is_array(parents) || json_array_size(parents) > 1 ||
		    (json_array_size(parents) == 1 &&
		     !json_is_string(json_array_get(parents, 0)))) {
			set_err(err, 403, "cannotAddParent", "parents",
				"Increasing the number of parents is not allowed. A file can have only one parent.");
			return -1;
		}
		if (json_array_size(parents) == 1)
			pid = json_string_value(json_array_get(parents, 0));
	}
	id = json_string_value(json_object_get(meta, "id"));
	if (id && !valid_id(id)) {
		set_err(err, 400, "invalid", "id", "The provided file ID is not usable.");
		return -1;
	}

	pthread_rwlock_wrlock(&s->lock);
	parent = lookup_visible(s, pid, n->all_drives || n->control);
	if (!parent) {
		set_err(err, 404, "notFound", "fileId", "File not found: %.80s.", pid);
		goto out;
	}
	if (!is_folder(parent)) {
		set_err(err, 400, "invalid", "parents",
			"The specified parent is not a folder: %.80s.", pid);
		goto out;
	}
	if (id) {
		if (lookup(s, id) || id_state(s, id) == 2) {
			set_err(err, 409, "duplicate", "id",
				"A file already exists with the provided ID.");
			goto out;
		}
		if (!n->control && id_state(s, id) != 1) {
			set_err(err, 400, "invalid", "id",
				"The provided file ID is not usable.");
			goto out;
		}
	}
	if (!strcmp(mime, DST_SHORTCUT)) {
		const char *tid = json_string_value(json_object_get(
			json_object_get(meta, "shortcutDetails"), "targetId"));

		if (!tid) {
			set_err(err, 400, "invalid", "shortcutDetails.targetId",
				"A shortcut needs shortcutDetails.targetId.");
			goto out;
		}
		target = lookup(s, tid);
		if (!target && !n->control) {
			set_err(err, 404, "notFound", "shortcutDetails.targetId",
				"File not found: %.80s.", tid);
			goto out;
		}
		if (n->blob && n->blob->len) {
			set_err(err, 400, "badContent", NULL, "A shortcut cannot have content.");
			goto out;
		}
	}
	if (n->blob && n->blob->len && !strcmp(mime, DST_FOLDER)) {
		set_err(err, 400, "badContent", NULL, "A folder cannot have content.");
		goto out;
	}
	if (n->blob && !is_apps(mime) && !n->control &&
	    s->quota_limit > 0 && s->usage + (int64_t)n->blob->len > s->quota_limit) {
		set_err(err, 403, "storageQuotaExceeded", NULL,
			"The user's Drive storage quota has been exceeded.");
		goto out;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		err_nomem(err);
		goto out;
	}
	if (id)
		snprintf(f->id, sizeof(f->id), "%s", id);
	else
		do
			new_file_id(f->id);
		while (lookup(s, f->id));
	if (set_str(&f->name, name ? name : "Untitled") < 0 || set_str(&f->mime, mime) < 0 ||
	    set_str(&f->description, json_string_value(json_object_get(meta, "description"))) < 0 ||
	    set_str(&f->orig_name, json_string_value(json_object_get(meta, "originalFilename"))) < 0 ||
	    set_str(&f->drive_id, parent->drive_id) < 0) {
		err_nomem(err);
		goto out;
	}
	if (target || !strcmp(mime, DST_SHORTCUT)) {
		const char *tid = json_string_value(json_object_get(
			json_object_get(meta, "shortcutDetails"), "targetId"));

		if (set_str(&f->target_id, tid) < 0 ||
		    set_str(&f->target_mime, target ? target->mime : "application/octet-stream") < 0) {
			err_nomem(err);
			goto out;
		}
	}
	f->created_ms = f->modified_ms = f->viewed_ms = now;
	if ((v = json_object_get(meta, "createdTime")) && !json_is_null(v)) {
		if (json_time(v, &t) < 0) {
			set_err(err, 400, "invalid", "createdTime", "Invalid value for createdTime.");
			goto out;
		}
		f->created_ms = t;
	}
	if ((v = json_object_get(meta, "modifiedTime")) && !json_is_null(v)) {
		if (json_time(v, &t) < 0) {
			set_err(err, 400, "invalid", "modifiedTime", "Invalid value for modifiedTime.");
			goto out;
		}
		f->modified_ms = t;
	}
	if ((v = json_object_get(meta, "starred")))
		f->starred = json_is_true(v);
	if (merge_props(&f->props, json_object_get(meta, "properties"), "properties", err) < 0 ||
	    merge_props(&f->app_props, json_object_get(meta, "appProperties"), "appProperties",
			err) < 0)
		goto out;
	if (n->control) {
		if (json_is_true(json_object_get(meta, "trashed"))) {
			f->xtrashed = 1;
			f->trashed_ms = now;
		}
		if ((v = json_object_get(meta, "exportSize")) && json_is_integer(v))
			f->export_size = json_integer_value(v);
	}
	if (n->blob)
		blob_link(n->blob);
	f->blob = n->blob;
	if (!f->blob && has_content(f)) {
		f->blob = dst_blob_copy(s, "", 0);
		if (!f->blob) {
			err_nomem(err);
			goto out;
		}
		f->blob->links = 1;
	}
	f->rev = 1;
	if (link_file(s, f, parent) < 0) {
		blob_unlink(s, f->blob);
		f->blob = NULL;
		err_nomem(err);
		goto out;
	}
	if (has_content(f))
		s->usage += content_size(f);
	if (id)
		id_mark_used(s, id);
	touch(s, f);
	view_fill(s, f, out);
	f = NULL;
	rc = 0;
out:
	pthread_rwlock_unlock(&s->lock);
	if (f) {
		blob_unlink(s, f->blob);
		f->blob = NULL;
		file_free(f);
	}
	return rc;
}

int dst_get(struct dst *s, const char *id, int all_drives, struct dst_view *out,
	    struct dst_err *err)
{
	struct dfile *f;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->lock);
	f = lookup_visible(s, id, all_drives);
	if (!f) {
		err_notfound(err, id);
	} else {
		view_fill(s, f, out);
		rc = out->res ? 0 : -1;
		if (rc < 0)
			err_nomem(err);
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

/* Set f's explicit trash flag; f and its descendants change. */
static int set_trashed(struct dst *s, struct dfile *f, int on)
{
	size_t n = 0, i;
	struct dfile **v;

	if (!!f->xtrashed == !!on)
		return 0;
	f->xtrashed = on;
	f->trashed_ms = on ? dst_now_ms() : 0;
	v = subtree(f, &n);
	if (!v)
		return -1;
	jbegin(s);
	for (i = 1; i < n; i++)
		touch(s, v[i]);
	jend(s);
	free(v);
	return 0;
}

/* Give a moved subtree its new drive. */
static int set_drive_tree(struct dst *s, struct dfile *f, const char *drive_id)
{
	size_t n = 0, i;
	struct dfile **v = subtree(f, &n);

	if (!v)
		return -1;
	jbegin(s);
	for (i = 0; i < n; i++) {
		if (set_str(&v[i]->drive_id, drive_id) < 0) {
			jend(s);
			free(v);
			return -1;
		}
		if (i > 0)
			touch(s, v[i]);
	}
	jend(s);
	free(v);
	return 0;
}

/* The single id in a comma-separated list (whitespace allowed); "" when
 * empty; -1 when there are several. */
static int one_id(const char *list, char out[DST_ID_MAX])
{
	const char *p = list, *e;
	int count = 0;

	out[0] = '\0';
	if (!list)
		return 0;
	while (*p) {
		while (*p == ',' || *p == ' ')
			p++;
		if (!*p)
			break;
		e = p;
		while (*e && *e != ',' && *e != ' ')
			e++;
		if (++count > 1)
			return -1;
		snprintf(out, DST_ID_MAX, "%.*s", (int)(e - p), p);
		p = e;
	}
	return 0;
}

int dst_update(struct dst *s, const char *id, const json_t *patch, const char *add_parents,
	       const char *remove_parents, struct dst_blob *blob, int all_drives,
	       struct dst_view *out, struct dst_err *err)
{
	struct dfile *f, *np = NULL;
	const json_t *v;
	char add[DST_ID_MAX], rem[DST_ID_MAX];
	int64_t mtime = -1;
	int rc = -1, trash = -1, renamed = 0;
	json_t *props = NULL, *aprops = NULL;

	memset(out, 0, sizeof(*out));
	if (patch && !json_is_object(patch)) {
		set_err(err, 400, "invalid", NULL, "The request body must be a JSON object.");
		return -1;
	}
	if (json_object_get(patch, "parents")) {
		set_err(err, 403, "fieldNotWritable", NULL,
			"The resource body includes fields which are not directly writable: parents. Use addParents and removeParents.");
		return -1;
	}
	if (json_object_get(patch, "id") &&
	    !(json_is_string(json_object_get(patch, "id")) &&
	      !strcmp(json_string_value(json_object_get(patch, "id")), id))) {
		set_err(err, 403, "fieldNotWritable", NULL,
			"The resource body includes fields which are not directly writable: id.");
		return -1;
	}
	if (one_id(add_parents, add) < 0 || one_id(remove_parents, rem) < 0) {
		set_err(err, 403, "cannotAddParent", "addParents",
			"Increasing the number of parents is not allowed. A file can have only one parent.");
		return -1;
	}
	if ((v = json_object_get(patch, "name")) && !json_is_null(v) && check_name(v, err) < 0)
		return -1;
	if (check_string_field(patch, "mimeType", err) < 0 ||
	    check_string_field(patch, "description", err) < 0 ||
	    check_string_field(patch, "originalFilename", err) < 0)
		return -1;
	if ((v = json_object_get(patch, "modifiedTime")) && !json_is_null(v)) {
		if (json_time(v, &mtime) < 0) {
			set_err(err, 400, "invalid", "modifiedTime", "Invalid value for modifiedTime.");
			return -1;
		}
	}
	if ((v = json_object_get(patch, "trashed")) && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			set_err(err, 400, "invalid", "trashed", "Invalid value for trashed.");
			return -1;
		}
		trash = json_is_true(v);
	}

	pthread_rwlock_wrlock(&s->lock);
	f = lookup_visible(s, id, all_drives);
	if (!f) {
		err_notfound(err, id);
		goto out;
	}
	if (f->is_root && (add[0] || rem[0] || trash == 1 || json_object_get(patch, "name"))) {
		set_err(err, 403, "insufficientFilePermissions", NULL,
			"The user does not have sufficient permissions for this file.");
		goto out;
	}
	if (add[0]) {
		np = lookup_visible(s, add, all_drives);
		if (!np) {
			set_err(err, 404, "notFound", "addParents", "File not found: %.80s.", add);
			goto out;
		}
		if (!is_folder(np)) {
			set_err(err, 400, "invalid", "addParents",
				"The specified parent is not a folder: %.80s.", add);
			goto out;
		}
		if (np == f->pp) {
			np = NULL;  /* already there */
		} else {
			struct dfile *rp = rem[0] ? lookup(s, rem) : NULL;

			if (!rp || rp != f->pp) {
				set_err(err, 403, "cannotAddParent", "addParents",
					"Increasing the number of parents is not allowed. Remove the current parent with removeParents.");
				goto out;
			}
			if (is_ancestor(f, np)) {
				set_err(err, 400, "badRequest", "addParents",
					"The parent would create a cycle in the folder graph.");
				goto out;
			}
		}
	} else if (rem[0]) {
		struct dfile *rp = lookup(s, rem);

		if (rp && rp == f->pp) {
			set_err(err, 403, "cannotRemoveParent", "removeParents",
				"A file must keep one parent; add another with addParents.");
			goto out;
		}
	}
	if (blob && !has_content(f)) {
		set_err(err, 400, "badContent", NULL,
			"Content cannot be uploaded to a file of type %.80s.", f->mime);
		goto out;
	}
	if ((v = json_object_get(patch, "mimeType")) && json_is_string(v) &&
	    strcmp(json_string_value(v), f->mime) &&
	    (is_apps(json_string_value(v)) || is_apps(f->mime))) {
		set_err(err, 403, "fieldNotWritable", "mimeType",
			"The mimeType of this file cannot be changed to or from a Google type.");
		goto out;
	}
	if (blob && s->quota_limit > 0 &&
	    s->usage - content_size(f) + (int64_t)blob->len > s->quota_limit) {
		set_err(err, 403, "storageQuotaExceeded", NULL,
			"The user's Drive storage quota has been exceeded.");
		goto out;
	}
	/* properties are validated into copies before anything changes */
	if (f->props && !(props = json_deep_copy(f->props))) {
		err_nomem(err);
		goto out;
	}
	if (f->app_props && !(aprops = json_deep_copy(f->app_props))) {
		err_nomem(err);
		goto out;
	}
	if (merge_props(&props, json_object_get(patch, "properties"), "properties", err) < 0 ||
	    merge_props(&aprops, json_object_get(patch, "appProperties"), "appProperties", err) < 0)
		goto out;
	if ((v = json_object_get(patch, "name")) && json_is_string(v) &&
	    strcmp(json_string_value(v), f->name)) {
		if (set_str(&f->name, json_string_value(v)) < 0)
			goto nomem;
		renamed = 1;
	}
	if ((v = json_object_get(patch, "mimeType")) && json_is_string(v) &&
	    set_str(&f->mime, json_string_value(v)) < 0)
		goto nomem;
	if ((v = json_object_get(patch, "description")) &&
	    set_str(&f->description, json_string_value(v)) < 0)
		goto nomem;
	if ((v = json_object_get(patch, "originalFilename")) &&
	    set_str(&f->orig_name, json_string_value(v)) < 0)
		goto nomem;
	if ((v = json_object_get(patch, "starred")) && json_is_boolean(v))
		f->starred = json_is_true(v);
	json_decref(f->props);
	f->props = props;
	props = NULL;
	json_decref(f->app_props);
	f->app_props = aprops;
	aprops = NULL;
	jbegin(s);
	if (np) {
		if (move_file(s, f, np) < 0) {
			jend(s);
			goto nomem;
		}
		if ((f->drive_id || np->drive_id) &&
		    (!f->drive_id || !np->drive_id || strcmp(f->drive_id, np->drive_id)))
			set_drive_tree(s, f, np->drive_id);
	}
	if (blob) {
		if (has_content(f))
			s->usage -= content_size(f);
		blob_link(blob);
		blob_unlink(s, f->blob);
		f->blob = blob;
		s->usage += (int64_t)blob->len;
		f->rev++;
		f->modified_ms = dst_now_ms();
	} else if (renamed) {
		f->modified_ms = dst_now_ms();
	}
	if (mtime >= 0)
		f->modified_ms = mtime;
	if (trash >= 0)
		set_trashed(s, f, trash);
	touch(s, f);
	jend(s);
	view_fill(s, f, out);
	rc = 0;
	goto out;
nomem:
	err_nomem(err);
out:
	pthread_rwlock_unlock(&s->lock);
	json_decref(props);
	json_decref(aprops);
	return rc;
}

int dst_delete(struct dst *s, const char *id, int all_drives, struct dst_err *err)
{
	struct dfile *f;
	int rc = -1;

	pthread_rwlock_wrlock(&s->lock);
	f = lookup_visible(s, id, all_drives);
	if (!f) {
		err_notfound(err, id);
	} else if (f->is_root) {
		set_err(err, 403, "cannotDeleteRootFolder", NULL,
			"The root folder of a drive cannot be deleted.");
	} else if (remove_tree(s, f, NULL) < 0) {
		err_nomem(err);
	} else {
		rc = 0;
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

long dst_empty_trash(struct dst *s, const char *drive_id, struct dst_err *err)
{
	char (*ids)[DST_ID_MAX] = NULL;
	size_t n = 0, cap = 0, i;
	long removed = 0;

	pthread_rwlock_wrlock(&s->lock);
	if (drive_id) {
		struct dfile *d = lookup(s, drive_id);

		if (!d || !d->is_root || !d->drive_id) {
			set_err(err, 404, "notFound", "driveId", "Shared drive not found: %.80s",
				drive_id);
			removed = -1;
			goto out;
		}
	}
	for (i = 0; i < s->all.n; i++) {
		struct dfile *f = s->all.v[i].p;

		if (!f || !f->xtrashed)
			continue;
		if (drive_id ? !f->drive_id || strcmp(f->drive_id, drive_id) : f->drive_id != NULL)
			continue;
		if (n == cap) {
			void *g;

			cap = cap ? cap * 2 : 64;
			g = realloc(ids, cap * sizeof(*ids));
			if (!g) {
				err_nomem(err);
				removed = -1;
				goto out;
			}
			ids = g;
		}
		memcpy(ids[n++], f->id, DST_ID_MAX);
	}
	jbegin(s);
	for (i = 0; i < n; i++) {
		struct dfile *f = lookup(s, ids[i]);

		if (f && remove_tree(s, f, &removed) < 0) {
			err_nomem(err);
			removed = -1;
			break;
		}
	}
	jend(s);
out:
	pthread_rwlock_unlock(&s->lock);
	free(ids);
	return removed;
}

json_t *dst_generate_ids(struct dst *s, int n)
{
	json_t *arr = json_array(), *rec = json_pack("{s:s, s:[]}", "t", "ids", "a");
	char id[DST_ID_MAX];
	int i;

	if (!arr || !rec) {
		json_decref(arr);
		json_decref(rec);
		return NULL;
	}
	pthread_rwlock_wrlock(&s->lock);
	for (i = 0; i < n; i++) {
		do
			new_file_id(id);
		while (lookup(s, id) || id_state(s, id));
		if (dmap_put(&s->ids, id, (void *)(intptr_t)1) < 0)
			break;
		json_array_append_new(arr, json_string(id));
		json_array_append_new(json_object_get(rec, "a"), json_string(id));
	}
	jwrite(s, rec);
	pthread_rwlock_unlock(&s->lock);
	if ((int)json_array_size(arr) != n) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

void dst_usage(struct dst *s, struct dst_usage *u)
{
	size_t i;

	memset(u, 0, sizeof(*u));
	pthread_rwlock_rdlock(&s->lock);
	u->limit = s->quota_limit;
	u->usage = s->usage;
	for (i = 0; i < s->all.n; i++) {
		struct dfile *f = s->all.v[i].p;

		if (f && has_content(f) && eff_trashed(f, NULL))
			u->usage_trash += content_size(f);
	}
	pthread_rwlock_unlock(&s->lock);
}

void dst_set_quota(struct dst *s, int64_t limit)
{
	pthread_rwlock_wrlock(&s->lock);
	s->quota_limit = limit > 0 ? limit : 0;
	jwrite(s, json_pack("{s:s, s:I}", "t", "quota", "limit", (json_int_t)s->quota_limit));
	pthread_rwlock_unlock(&s->lock);
}

void dst_root_id(struct dst *s, char out[DST_ID_MAX])
{
	pthread_rwlock_rdlock(&s->lock);
	snprintf(out, DST_ID_MAX, "%s", s->root ? s->root->id : "");
	pthread_rwlock_unlock(&s->lock);
}

/* --- listing ---------------------------------------------------------- */

enum skey_kind { SK_FOLDER, SK_NAME, SK_MODIFIED, SK_CREATED, SK_VIEWED, SK_SIZE,
		 SK_STARRED };

struct sort_spec {
	int kind[MAX_SORT_KEYS];
	int desc[MAX_SORT_KEYS];
	int n;
};

/* The sort key of one file (or of a page token's cursor). */
struct skey {
	const char *name;
	const char *id;
	int64_t modified, created, viewed, size;
	int folder, starred;
	struct dfile *f;
};

static int parse_order(const char *s, struct sort_spec *sp, struct dst_err *err)
{
	static const struct { const char *name; int kind; } keys[] = {
		{ "folder", SK_FOLDER }, { "name", SK_NAME }, { "name_natural", SK_NAME },
		{ "title", SK_NAME }, { "modifiedTime", SK_MODIFIED },
		{ "modifiedByMeTime", SK_MODIFIED }, { "recency", SK_MODIFIED },
		{ "createdTime", SK_CREATED }, { "viewedByMeTime", SK_VIEWED },
		{ "sharedWithMeTime", SK_CREATED }, { "quotaBytesUsed", SK_SIZE },
		{ "starred", SK_STARRED },
	};
	const char *p = s;

	memset(sp, 0, sizeof(*sp));
	while (*p) {
		const char *e, *w;
		size_t wl, i;
		int found = -1, desc = 0;

		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		e = p;
		while (*e && *e != ',')
			e++;
		/* "key" or "key desc" / "key asc" */
		w = p;
		wl = 0;
		while (w + wl < e && w[wl] != ' ')
			wl++;
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (strlen(keys[i].name) == wl && !strncmp(keys[i].name, w, wl))
				found = keys[i].kind;
		if (found < 0 || sp->n >= MAX_SORT_KEYS)
			goto bad;
		{
			const char *r = w + wl;

			while (r < e && *r == ' ')
				r++;
			if (r < e) {
				size_t rl = 0;

				while (r + rl < e && r[rl] != ' ')
					rl++;
				if (rl == 4 && !strncasecmp(r, "desc", 4))
					desc = 1;
				else if (!(rl == 3 && !strncasecmp(r, "asc", 3)))
					goto bad;
				r += rl;
				while (r < e && *r == ' ')
					r++;
				if (r < e)
					goto bad;
			}
		}
		sp->kind[sp->n] = found;
		sp->desc[sp->n] = desc;
		sp->n++;
		p = e;
	}
	return 0;
bad:
	set_err(err, 400, "invalid", "orderBy", "Invalid Value: invalid sort key in orderBy: %.100s",
		s);
	return -1;
}

static int cmp_i(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int skey_cmp(const struct skey *a, const struct skey *b, const struct sort_spec *sp)
{
	int i, c = 0;

	for (i = 0; i < sp->n && !c; i++) {
		switch (sp->kind[i]) {
		case SK_FOLDER: c = cmp_i(b->folder, a->folder); break;  /* folders first */
		case SK_NAME: c = strcasecmp(a->name, b->name);
			if (!c)
				c = strcmp(a->name, b->name);
			break;
		case SK_MODIFIED: c = cmp_i(a->modified, b->modified); break;
		case SK_CREATED: c = cmp_i(a->created, b->created); break;
		case SK_VIEWED: c = cmp_i(a->viewed, b->viewed); break;
		case SK_SIZE: c = cmp_i(a->size, b->size); break;
		case SK_STARRED: c = cmp_i(b->starred, a->starred); break;
		}
		if (sp->desc[i])
			c = -c;
	}
	return c ? c : strcmp(a->id, b->id);
}

static int skey_qcmp(const void *x, const void *y, void *sp)
{
	return skey_cmp(x, y, sp);
}

static void skey_of(const struct dfile *f, struct skey *k)
{
	k->name = f->name;
	k->id = f->id;
	k->modified = f->modified_ms;
	k->created = f->created_ms;
	k->viewed = f->viewed_ms;
	k->size = content_size(f);
	k->folder = is_folder(f);
	k->starred = f->starred;
	k->f = (struct dfile *)f;
}

static int corpus_ok(const struct dst_list_args *a, const struct dfile *f)
{
	if (f->is_root)
		return 0;
	if (a->corpus == DST_CORPUS_DRIVE)
		return f->drive_id && a->drive_id && !strcmp(f->drive_id, a->drive_id);
	if (a->corpus == DST_CORPUS_ALL)
		return 1;
	return !f->drive_id || a->include_all;
}

static int matches(struct dst *s, const struct dst_list_args *a, const struct dfile *f)
{
	struct dq_file qf;

	if (!corpus_ok(a, f))
		return 0;
	if (!a->q)
		return 1;
	memset(&qf, 0, sizeof(qf));
	qf.id = f->id;
	qf.name = f->name;
	qf.mime = f->mime;
	qf.parent = f->pp ? f->pp->id : NULL;
	qf.trashed = eff_trashed(f, NULL);
	qf.starred = f->starred;
	qf.owned_by_me = f->drive_id == NULL;
	qf.modified_ms = f->modified_ms;
	qf.created_ms = f->created_ms;
	qf.viewed_ms = f->viewed_ms;
	qf.properties = f->props;
	qf.app_properties = f->app_props;
	qf.target_id = f->target_id;
	if (f->blob && f->blob->len <= 65536 && (is_doc(f) || !strncmp(f->mime, "text/", 5))) {
		qf.text = f->blob->data;
		qf.text_len = (size_t)f->blob->len;
	}
	return dq_eval(a->q, &qf, s->root ? s->root->id : NULL, DST_USER_EMAIL);
}

static char *token_json(json_t *t)
{
	char *raw = t ? json_dumps(t, JSON_COMPACT) : NULL;
	char *tok = raw ? emu_token_encode(raw, strlen(raw)) : NULL;

	json_decref(t);
	free(raw);
	return tok;
}

static json_t *token_parse(const char *tok)
{
	size_t n = 0;
	char *raw = emu_token_decode(tok, &n);
	json_error_t jerr;
	json_t *j = raw ? json_loadb(raw, n, 0, &jerr) : NULL;

	free(raw);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static int list_sorted(struct dst *s, const struct dst_list_args *a, const struct dvec *src,
		       json_t *files, char **next, struct dst_err *err)
{
	struct sort_spec sp;
	struct skey *keys = NULL, cur;
	json_t *tok = NULL;
	size_t n = 0, i, start = 0;
	int has_cur = 0, rc = -1;

	if (parse_order(a->order_by, &sp, err) < 0)
		return -1;
	memset(&cur, 0, sizeof(cur));
	if (a->token) {
		json_t *jo;

		tok = token_parse(a->token);
		jo = json_object_get(tok, "o");
		if (!tok || !json_is_string(jo) || strcmp(json_string_value(jo), a->order_by) ||
		    !json_is_string(json_object_get(tok, "n")) ||
		    !json_is_string(json_object_get(tok, "i"))) {
			set_err(err, 400, "invalid", "pageToken", "Invalid Value: pageToken");
			goto out;
		}
		cur.name = json_string_value(json_object_get(tok, "n"));
		cur.id = json_string_value(json_object_get(tok, "i"));
		cur.modified = json_integer_value(json_object_get(tok, "m"));
		cur.created = json_integer_value(json_object_get(tok, "c"));
		cur.viewed = json_integer_value(json_object_get(tok, "w"));
		cur.size = json_integer_value(json_object_get(tok, "z"));
		cur.folder = (int)json_integer_value(json_object_get(tok, "f"));
		cur.starred = (int)json_integer_value(json_object_get(tok, "s"));
		has_cur = 1;
	}
	keys = malloc((src->n ? src->n : 1) * sizeof(*keys));
	if (!keys) {
		err_nomem(err);
		goto out;
	}
	for (i = 0; i < src->n; i++) {
		struct dfile *f = src->v[i].p;

		if (f && matches(s, a, f))
			skey_of(f, &keys[n++]);
	}
	qsort_r(keys, n, sizeof(*keys), skey_qcmp, &sp);
	if (has_cur) {
		size_t lo = 0, hi = n;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (skey_cmp(&keys[mid], &cur, &sp) <= 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		start = lo;
	}
	for (i = start; i < n && (long)(i - start) < a->max; i++) {
		json_t *r = render_keys(s, keys[i].f, a->keys);

		if (!r || json_array_append_new(files, r) < 0) {
			err_nomem(err);
			goto out;
		}
	}
	if (i < n && i > start) {
		const struct skey *k = &keys[i - 1];

		*next = token_json(json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i}",
					     "o", a->order_by, "n", k->name, "i", k->id,
					     "m", (json_int_t)k->modified, "c", (json_int_t)k->created,
					     "w", (json_int_t)k->viewed, "z", (json_int_t)k->size,
					     "f", k->folder, "s", k->starred));
		if (!*next) {
			err_nomem(err);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(tok);
	free(keys);
	return rc;
}

int dst_list(struct dst *s, const struct dst_list_args *a, json_t **files, char **next,
	     struct dst_err *err)
{
	const struct dvec *src;
	const char *hint = dq_parent_hint(a->q);
	static const struct dvec empty;
	json_t *arr = json_array();
	int rc = -1;

	*files = NULL;
	*next = NULL;
	if (!arr) {
		err_nomem(err);
		return -1;
	}
	pthread_rwlock_rdlock(&s->lock);
	src = &s->all;
	if (hint) {
		struct dfile *p = lookup(s, hint);

		src = p ? &p->kids : &empty;
	}
	if (a->order_by && *a->order_by) {
		rc = list_sorted(s, a, src, arr, next, err);
	} else {
		int64_t from = 0;
		size_t i;
		long got = 0;

		if (a->token) {
			json_t *t = token_parse(a->token);
			json_t *sv = json_object_get(t, "q");

			if (!t || !json_is_integer(sv) || json_integer_value(sv) < 0) {
				json_decref(t);
				set_err(err, 400, "invalid", "pageToken", "Invalid Value: pageToken");
				goto out;
			}
			from = json_integer_value(sv);
			json_decref(t);
		}
		for (i = dvec_lower(src, from); i < src->n; i++) {
			struct dfile *f = src->v[i].p;

			if (!f || !matches(s, a, f))
				continue;
			if (got == a->max) {
				*next = token_json(json_pack("{s:I}", "q", (json_int_t)src->v[i].seq));
				if (!*next) {
					err_nomem(err);
					goto out;
				}
				break;
			}
			if (json_array_append_new(arr, render_keys(s, f, a->keys)) < 0) {
				err_nomem(err);
				goto out;
			}
			got++;
		}
		rc = 0;
	}
out:
	pthread_rwlock_unlock(&s->lock);
	if (rc < 0) {
		json_decref(arr);
		free(*next);
		*next = NULL;
		return -1;
	}
	*files = arr;
	return 0;
}

/* --- changes ---------------------------------------------------------- */

int64_t dst_changes_start(struct dst *s)
{
	int64_t t;

	pthread_rwlock_rdlock(&s->lock);
	t = s->last_change + 1;
	pthread_rwlock_unlock(&s->lock);
	return t;
}

static int change_visible(const struct dchg *c, const char *drive_id, int include_all)
{
	if (drive_id)
		return c->drive_id && !strcmp(c->drive_id, drive_id);
	return !c->drive_id || include_all;
}

json_t *dst_changes_list(struct dst *s, int64_t token, long max, const char *drive_id,
			 int include_all, int *more, int64_t *next)
{
	json_t *arr = json_array();
	size_t i;
	long got = 0;
	char t[32];

	*more = 0;
	if (!arr)
		return NULL;
	pthread_rwlock_rdlock(&s->lock);
	*next = s->last_change + 1;
	for (i = dvec_lower(&s->changes, token); i < s->changes.n; i++) {
		struct dchg *c = s->changes.v[i].p;
		json_t *o;

		if (!c || !change_visible(c, drive_id, include_all))
			continue;
		if (!c->removed) {
			struct dfile *rf = lookup(s, c->id);

			if (rf && rf->is_root)
				continue;  /* drive roots are not reported */
		}
		if (got == max) {
			*more = 1;
			*next = c->seq;
			break;
		}
		dst_fmt_time(c->time_ms, t);
		o = json_pack("{s:s, s:b, s:s, s:I}", "fileId", c->id, "removed", c->removed,
			      "time", t, "seq", (json_int_t)c->seq);
		if (o && c->drive_id)
			json_object_set_new(o, "driveId", json_string(c->drive_id));
		if (o && !c->removed) {
			struct dfile *f = lookup(s, c->id);

			if (f)
				json_object_set_new(o, "file", render(s, f));
		}
		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			arr = NULL;
			break;
		}
		got++;
	}
	pthread_rwlock_unlock(&s->lock);
	return arr;
}

/* --- shared drives ---------------------------------------------------- */

static json_t *drive_json(const struct ddrive *d)
{
	char t[32];

	dst_fmt_time(d->created_ms, t);
	return json_pack("{s:s, s:s, s:s, s:s, s:b, s:{s:b, s:b, s:b, s:b, s:b}}",
			 "kind", "drive#drive", "id", d->id, "name", d->name, "createdTime", t,
			 "hidden", 0, "capabilities", "canAddChildren", 1, "canDeleteDrive", 1,
			 "canListChildren", 1, "canRenameDrive", 1, "canTrashChildren", 1);
}

static struct ddrive *drive_find(struct dst *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->ndrives; i++)
		if (!strcmp(s->drives[i]->id, id))
			return s->drives[i];
	return NULL;
}

/* Make a drive and its root folder (store lock held for writing). */
static struct ddrive *drive_add(struct dst *s, const char *id, const char *name,
				const char *request_id, int64_t created, int journal)
{
	struct ddrive *d = calloc(1, sizeof(*d)), **g;
	struct dfile *root = calloc(1, sizeof(*root));

	if (!d || !root)
		goto fail;
	snprintf(d->id, sizeof(d->id), "%s", id);
	d->name = strdup(name);
	d->request_id = request_id ? strdup(request_id) : NULL;
	d->created_ms = created;
	if (!d->name || (request_id && !d->request_id))
		goto fail;
	g = realloc(s->drives, (s->ndrives + 1) * sizeof(*g));
	if (!g)
		goto fail;
	s->drives = g;
	snprintf(root->id, sizeof(root->id), "%s", id);
	if (set_str(&root->name, name) < 0 || set_str(&root->mime, DST_FOLDER) < 0 ||
	    set_str(&root->drive_id, id) < 0)
		goto fail;
	root->is_root = 1;
	root->created_ms = root->modified_ms = root->viewed_ms = created;
	if (link_file(s, root, NULL) < 0)
		goto fail;
	s->drives[s->ndrives++] = d;
	if (journal) {
		json_t *r = json_pack("{s:s, s:s, s:s, s:I}", "t", "drv", "id", id, "n", name, "c",
				      (json_int_t)created);

		if (r && request_id)
			json_object_set_new(r, "rq", json_string(request_id));
		jwrite(s, r);
		touch(s, root);
	}
	return d;
fail:
	if (d) {
		free(d->name);
		free(d->request_id);
		free(d);
	}
	file_free(root);
	return NULL;
}

int dst_drive_create(struct dst *s, const char *name, const char *id, const char *request_id,
		     json_t **out, struct dst_err *err)
{
	char nid[DST_ID_MAX];
	struct ddrive *d;
	size_t i;
	int rc = -1;

	*out = NULL;
	if (!name || !*name) {
		set_err(err, 400, "required", "name", "Required: the shared drive's name.");
		return -1;
	}
	if (id && !valid_id(id)) {
		set_err(err, 400, "invalid", "id", "Invalid shared drive id.");
		return -1;
	}
	pthread_rwlock_wrlock(&s->lock);
	if (request_id) {
		for (i = 0; i < s->ndrives; i++) {
			if (s->drives[i]->request_id && !strcmp(s->drives[i]->request_id, request_id)) {
				if (strcmp(s->drives[i]->name, name)) {
					set_err(err, 409, "duplicate", "requestId",
						"A shared drive with this requestId exists with another name.");
					goto out;
				}
				*out = drive_json(s->drives[i]);
				rc = 0;
				goto out;
			}
		}
	}
	if (id) {
		if (lookup(s, id)) {
			set_err(err, 409, "duplicate", "id", "The id is already in use.");
			goto out;
		}
		snprintf(nid, sizeof(nid), "%s", id);
	} else {
		do {
			nid[0] = '0';
			nid[1] = 'A';
			random_chars(nid + 2, 17);
		} while (lookup(s, nid));
	}
	d = drive_add(s, nid, name, request_id, dst_now_ms(), 1);
	if (!d) {
		err_nomem(err);
		goto out;
	}
	*out = drive_json(d);
	rc = 0;
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int dst_drive_get(struct dst *s, const char *id, json_t **out, struct dst_err *err)
{
	struct ddrive *d;

	pthread_rwlock_rdlock(&s->lock);
	d = drive_find(s, id);
	*out = d ? drive_json(d) : NULL;
	pthread_rwlock_unlock(&s->lock);
	if (!d) {
		set_err(err, 404, "notFound", "driveId", "Shared drive not found: %.80s", id);
		return -1;
	}
	return 0;
}

int dst_drive_list(struct dst *s, long max, const char *token, json_t **out, char **next,
		   struct dst_err *err)
{
	int64_t from = 0;
	size_t i;
	json_t *arr = json_array();

	*next = NULL;
	*out = NULL;
	if (token) {
		json_t *t = token_parse(token);

		if (!t || !json_is_integer(json_object_get(t, "d"))) {
			json_decref(t);
			json_decref(arr);
			set_err(err, 400, "invalid", "pageToken", "Invalid Value: pageToken");
			return -1;
		}
		from = json_integer_value(json_object_get(t, "d"));
		json_decref(t);
	}
	pthread_rwlock_rdlock(&s->lock);
	for (i = from > 0 ? (size_t)from : 0; i < s->ndrives; i++) {
		if ((long)json_array_size(arr) == max) {
			*next = token_json(json_pack("{s:I}", "d", (json_int_t)i));
			break;
		}
		json_array_append_new(arr, drive_json(s->drives[i]));
	}
	pthread_rwlock_unlock(&s->lock);
	*out = arr;
	return 0;
}

int dst_drive_delete(struct dst *s, const char *id, struct dst_err *err)
{
	struct dfile *root;
	size_t i, k;
	int rc = -1;

	pthread_rwlock_wrlock(&s->lock);
	for (i = 0; i < s->ndrives && strcmp(s->drives[i]->id, id); i++)
		;
	root = lookup(s, id);
	if (i == s->ndrives || !root) {
		set_err(err, 404, "notFound", "driveId", "Shared drive not found: %.80s", id);
		goto out;
	}
	for (k = 0; k < root->kids.n; k++) {
		if (root->kids.v[k].p) {
			set_err(err, 403, "cannotDeleteSharedDrive", NULL,
				"The shared drive cannot be deleted because it contains items.");
			goto out;
		}
	}
	remove_tree(s, root, NULL);
	free(s->drives[i]->name);
	free(s->drives[i]->request_id);
	free(s->drives[i]);
	memmove(&s->drives[i], &s->drives[i + 1], (s->ndrives - i - 1) * sizeof(*s->drives));
	s->ndrives--;
	jwrite(s, json_pack("{s:s, s:s}", "t", "drvd", "id", id));
	rc = 0;
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

/* --- bulk ------------------------------------------------------------- */

int dst_bulk(struct dst *s, const char *parent, long count, const char *prefix,
	     const char *suffix, int width, const char *mime, struct dst_blob *blob,
	     int trashed, struct dst_err *err)
{
	struct dfile *p;
	struct dst_blob *own = NULL;
	long i;
	int rc = -1;
	int64_t now = dst_now_ms();

	pthread_rwlock_wrlock(&s->lock);
	p = lookup(s, parent);
	if (!p || !is_folder(p)) {
		set_err(err, 404, "notFound", "parent", "Folder not found: %.80s.", parent);
		goto out;
	}
	if (!blob && !is_apps(mime)) {
		own = dst_blob_copy(s, "", 0);
		if (!own) {
			err_nomem(err);
			goto out;
		}
		blob = own;
	}
	jbegin(s);
	for (i = 0; i < count; i++) {
		struct dfile *f = calloc(1, sizeof(*f));
		char *name = NULL;

		if (!f || asprintf(&name, "%s%0*ld%s", prefix, width, i, suffix) < 0) {
			free(f);
			err_nomem(err);
			jend(s);
			goto out;
		}
		do
			new_file_id(f->id);
		while (lookup(s, f->id));
		f->name = name;
		if (set_str(&f->mime, mime) < 0 || set_str(&f->drive_id, p->drive_id) < 0) {
			file_free(f);
			err_nomem(err);
			jend(s);
			goto out;
		}
		f->created_ms = f->modified_ms = f->viewed_ms = now;
		f->rev = 1;
		if (trashed) {
			f->xtrashed = 1;
			f->trashed_ms = now;
		}
		if (has_content(f)) {
			blob_link(blob);
			f->blob = blob;
		}
		if (link_file(s, f, p) < 0) {
			blob_unlink(s, f->blob);
			f->blob = NULL;
			file_free(f);
			err_nomem(err);
			jend(s);
			goto out;
		}
		s->usage += content_size(f);
		touch(s, f);
	}
	jend(s);
	rc = 0;
out:
	pthread_rwlock_unlock(&s->lock);
	dst_blob_unref(own);
	return rc;
}

/* --- sessions --------------------------------------------------------- */

static void sess_free_bytes(struct dst_sess *ss)
{
	free(ss->buf);
	ss->buf = NULL;
	ss->cap = 0;
	if (ss->fd >= 0)
		close(ss->fd);
	ss->fd = -1;
	ck_md5_release(&ss->md5);
	if (ss->sha)
		EVP_MD_CTX_free(ss->sha);
	ss->sha = NULL;
	ss->sums_ok = 0;
}

void dst_sess_unref(struct dst_sess *ss)
{
	if (!ss || atomic_fetch_sub(&ss->refs, 1) != 1)
		return;
	sess_free_bytes(ss);
	json_decref(ss->meta);
	free(ss->add_parents);
	free(ss->remove_parents);
	free(ss->upload_ctype);
	free(ss->path);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

static int sess_sums_init(struct dst_sess *ss)
{
	ss->sums_ok = 0;
	if (ck_md5_init(&ss->md5) < 0)
		return -1;
	ss->sha = EVP_MD_CTX_new();
	if (!ss->sha || EVP_DigestInit_ex(ss->sha, EVP_sha256(), NULL) != 1)
		return -1;
	ss->sums_ok = 1;
	return 0;
}

static void sess_sums_update(struct dst_sess *ss, const void *data, size_t len)
{
	if (!ss->sums_ok)
		return;
	ck_md5_update(&ss->md5, data, len);
	if (EVP_DigestUpdate(ss->sha, data, len) != 1)
		ss->sums_ok = 0;
}

static struct dst_sess *sess_alloc(const char *id)
{
	struct dst_sess *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	atomic_init(&ss->refs, 1);
	pthread_mutex_init(&ss->mu, NULL);
	snprintf(ss->id, sizeof(ss->id), "%s", id);
	ss->fd = -1;
	ss->total = -1;
	ss->declared_total = -1;
	return ss;
}

static int sess_open_file(struct dst *s, struct dst_sess *ss)
{
	if (!s->dir)
		return 0;
	ss->path = emf_path_join(s->dir, "sessions", ss->id);
	if (!ss->path)
		return -1;
	ss->fd = open(ss->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	return ss->fd < 0 ? -1 : 0;
}

/* Forget ended sessions once there are many (store lock held, writing). */
static void sess_prune(struct dst *s)
{
	int64_t now = dst_now_ms();
	size_t i;

	if (s->sess.n < SESS_PRUNE_MIN)
		return;
	for (i = 0; i < s->sess.nb; i++) {
		struct dnode *n = s->sess.b[i], *nx;

		for (; n; n = nx) {
			struct dst_sess *ss = n->val;

			nx = n->next;
			if (ss->ended_ms && now - ss->ended_ms > SESS_PRUNE_AGE_MS) {
				jwrite(s, json_pack("{s:s, s:s}", "t", "sd", "id", ss->id));
				dmap_del(&s->sess, ss->id);
				dst_sess_unref(ss);
			}
		}
	}
}

int dst_sess_create(struct dst *s, int update, const char *file_id, json_t *meta,
		    const char *add_parents, const char *remove_parents, int all_drives,
		    const char *upload_ctype, int64_t declared_total, struct dst_sess **out)
{
	char id[40];
	struct dst_sess *ss;

	*out = NULL;
	id[0] = 'D';
	random_chars(id + 1, 31);
	ss = sess_alloc(id);
	if (!ss)
		return -1;
	ss->update = update;
	snprintf(ss->file_id, sizeof(ss->file_id), "%s", file_id ? file_id : "");
	ss->meta = meta ? json_incref(meta) : NULL;
	ss->add_parents = add_parents ? strdup(add_parents) : NULL;
	ss->remove_parents = remove_parents ? strdup(remove_parents) : NULL;
	ss->all_drives = all_drives;
	ss->upload_ctype = upload_ctype && *upload_ctype ? strdup(upload_ctype) : NULL;
	ss->declared_total = declared_total;
	ss->total = declared_total;
	ss->created_ms = dst_now_ms();
	ss->state = DST_SESS_ACTIVE;
	if (sess_sums_init(ss) < 0 || sess_open_file(s, ss) < 0) {
		dst_sess_unref(ss);
		return -1;
	}
	pthread_rwlock_wrlock(&s->lock);
	sess_prune(s);
	if (dmap_put(&s->sess, ss->id, ss) < 0) {
		pthread_rwlock_unlock(&s->lock);
		if (ss->path)
			unlink(ss->path);
		dst_sess_unref(ss);
		return -1;
	}
	jwrite(s, sess_rec(ss));
	atomic_fetch_add(&ss->refs, 1);
	pthread_rwlock_unlock(&s->lock);
	*out = ss;
	return 0;
}

struct dst_sess *dst_sess_find(struct dst *s, const char *id)
{
	struct dst_sess *ss;

	pthread_rwlock_rdlock(&s->lock);
	ss = dmap_get(&s->sess, id);
	if (ss)
		atomic_fetch_add(&ss->refs, 1);
	pthread_rwlock_unlock(&s->lock);
	return ss;
}

int dst_sess_append(struct dst *s, struct dst_sess *ss, const void *data, size_t len)
{
	(void)s;
	if (ss->fd >= 0) {
		if (emf_write_all(ss->fd, data, len, (off_t)ss->persisted, 1) < 0)
			return -1;
	} else {
		if (emf_buf_reserve(&ss->buf, &ss->cap, ss->persisted + len + 1, CHUNK_ALIGN) < 0)
			return -1;
		memcpy(ss->buf + ss->persisted, data, len);
	}
	sess_sums_update(ss, data, len);
	ss->persisted += len;
	return 0;
}

void dst_sess_set_state(struct dst *s, struct dst_sess *ss, int state)
{
	ss->state = state;
	if (state != DST_SESS_ACTIVE) {
		ss->ended_ms = dst_now_ms();
		sess_free_bytes(ss);
		if (ss->path && state != DST_SESS_DONE)
			unlink(ss->path);
	}
	pthread_rwlock_wrlock(&s->lock);
	jwrite(s, sess_rec(ss));
	pthread_rwlock_unlock(&s->lock);
}

struct dst_blob *dst_sess_take_blob(struct dst *s, struct dst_sess *ss)
{
	struct dst_blob *b = blob_new();
	unsigned int n = 32;
	int have_sums = ss->sums_ok;

	if (!b)
		return NULL;
	b->len = ss->persisted;
	if (ss->sums_ok) {
		ck_md5_final(&ss->md5, b->md5);
		if (EVP_DigestFinal_ex(ss->sha, b->sha256, &n) != 1)
			memset(b->sha256, 0, 32);
		EVP_MD_CTX_free(ss->sha);
		ss->sha = NULL;
		ss->sums_ok = 0;
	}
	if (ss->fd < 0) {
		if (b->len == 0) {
			free(ss->buf);
		} else {
			b->data = ss->buf;
		}
		if (!have_sums && b->len) {
			ck_md5(b->data, (size_t)b->len, b->md5);
			sha256_of(b->data, (size_t)b->len, b->sha256);
		}
		ss->buf = NULL;
		ss->cap = 0;
		return b;
	}
	close(ss->fd);
	ss->fd = -1;
	if (b->len == 0) {
		unlink(ss->path);
		return b;
	}
	if (blob_assign_path(s, b) < 0 || rename(ss->path, b->path) < 0 || blob_map(b) < 0) {
		dst_blob_unref(b);
		return NULL;
	}
	return b;
}

int dst_sess_expire_all(struct dst *s)
{
	struct dst_sess **v = NULL;
	size_t n = 0, i;
	int count = 0;

	pthread_rwlock_rdlock(&s->lock);
	v = calloc(s->sess.n + 1, sizeof(*v));
	if (v) {
		for (i = 0; i < s->sess.nb; i++) {
			struct dnode *nd;

			for (nd = s->sess.b[i]; nd; nd = nd->next) {
				v[n] = nd->val;
				atomic_fetch_add(&v[n]->refs, 1);
				n++;
			}
		}
	}
	pthread_rwlock_unlock(&s->lock);
	for (i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->mu);
		if (v[i]->state == DST_SESS_ACTIVE) {
			dst_sess_set_state(s, v[i], DST_SESS_EXPIRED);
			count++;
		}
		pthread_mutex_unlock(&v[i]->mu);
		dst_sess_unref(v[i]);
	}
	free(v);
	return count;
}

/* --- open, reset, close ----------------------------------------------- */

static void drop_all(struct dst *s, int unlink_files)
{
	size_t i;

	for (i = 0; i < s->all.n; i++) {
		struct dfile *f = s->all.v[i].p;

		if (!f)
			continue;
		if (f->blob) {
			f->blob->links--;
			if (unlink_files && f->blob->links == 0 && f->blob->path)
				unlink(f->blob->path);
			dst_blob_unref(f->blob);
			f->blob = NULL;
		}
		file_free(f);
	}
	dvec_free(&s->all);
	dmap_clear(&s->files);
	/* every live change entry is in the map (the log may not hold them
	 * yet while replaying) */
	for (i = 0; i < s->chg_by_id.nb; i++) {
		struct dnode *n;

		for (n = s->chg_by_id.b[i]; n; n = n->next) {
			struct dchg *c = n->val;

			free(c->drive_id);
			free(c);
		}
	}
	dvec_free(&s->changes);
	dmap_clear(&s->chg_by_id);
	dmap_clear(&s->ids);
	for (i = 0; i < s->ndrives; i++) {
		free(s->drives[i]->name);
		free(s->drives[i]->request_id);
		free(s->drives[i]);
	}
	free(s->drives);
	s->drives = NULL;
	s->ndrives = 0;
	for (i = 0; i < s->sess.nb; i++) {
		struct dnode *n;

		for (n = s->sess.b[i]; n; n = n->next) {
			struct dst_sess *ss = n->val;

			if (unlink_files && ss->path && ss->state == DST_SESS_ACTIVE)
				unlink(ss->path);
			dst_sess_unref(ss);
		}
	}
	dmap_clear(&s->sess);
	s->root = NULL;
	s->usage = 0;
	s->quota_limit = 0;
	s->last_change = 0;
	s->next_seq = 0;
}

/* My Drive's root folder (store lock held for writing). */
static struct dfile *make_root(struct dst *s, const char *id, int64_t created)
{
	struct dfile *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	if (id)
		snprintf(f->id, sizeof(f->id), "%s", id);
	else
		new_file_id(f->id);
	if (set_str(&f->name, "My Drive") < 0 || set_str(&f->mime, DST_FOLDER) < 0 ||
	    link_file(s, f, NULL) < 0) {
		file_free(f);
		return NULL;
	}
	f->is_root = 1;
	f->created_ms = f->modified_ms = f->viewed_ms = created;
	s->root = f;
	return f;
}

void dst_reset(struct dst *s)
{
	pthread_rwlock_wrlock(&s->lock);
	drop_all(s, 1);
	/* nothing before a reset matters: start the journal afresh (records of
	 * deleted blobs would only make the next start complain) */
	pthread_mutex_lock(&s->jmu);
	if (s->jfd >= 0 && ftruncate(s->jfd, 0) < 0 && !s->jwarned) {
		s->jwarned = 1;
		warn("cannot truncate the journal: %s", strerror(errno));
	}
	pthread_mutex_unlock(&s->jmu);
	jwrite(s, json_pack("{s:s}", "t", "reset"));
	if (make_root(s, NULL, dst_now_ms()))
		touch(s, s->root);
	pthread_rwlock_unlock(&s->lock);
}

void dst_close(struct dst *s)
{
	if (!s)
		return;
	drop_all(s, 0);
	if (s->jfd >= 0)
		close(s->jfd);
	free(s->jb);
	free(s->dir);
	pthread_rwlock_destroy(&s->lock);
	pthread_mutex_destroy(&s->jmu);
	free(s);
}

/* --- recovery --------------------------------------------------------- */

struct blobmap {
	struct dst_blob **v;
	size_t n, cap;
};

static struct dst_blob *blobmap_get(struct blobmap *m, uint64_t id)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (m->v[i]->id == id)
			return m->v[i];
	return NULL;
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int64_t jint(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* The blob a file record names, shared by id (a map hashed by nothing but
 * a linear list sorted as it comes: bulk files share one blob). */
static struct dst_blob *replay_blob(struct dst *s, struct blobmap *bm, const json_t *r)
{
	json_t *bid = json_object_get(r, "b");
	uint64_t id, len;
	struct dst_blob *b;
	struct stat st;
	char leaf[24];

	if (!json_is_integer(bid))
		return NULL;
	id = (uint64_t)json_integer_value(bid);
	len = (uint64_t)jint(r, "bl");
	if (bm->n && bm->v[bm->n - 1]->id == id)
		return bm->v[bm->n - 1];
	if ((b = blobmap_get(bm, id)))
		return b;
	b = blob_new();
	if (!b)
		return NULL;
	b->id = id;
	b->len = len;
	if (hex_to_bytes(jstr(r, "md5"), b->md5, 16) < 0 ||
	    hex_to_bytes(jstr(r, "sha"), b->sha256, 32) < 0) {
		dst_blob_unref(b);
		return NULL;
	}
	if (id && len) {
		snprintf(leaf, sizeof(leaf), "%016" PRIx64, id);
		b->path = emf_path_join(s->dir, "blobs", leaf);
		if (!b->path || stat(b->path, &st) < 0 || (uint64_t)st.st_size != len ||
		    blob_map(b) < 0) {
			warn("blob %s is missing or damaged; its file is dropped", leaf);
			dst_blob_unref(b);
			return NULL;
		}
		if (id >= atomic_load(&s->next_blob))
			atomic_store(&s->next_blob, id + 1);
	}
	if (bm->n == bm->cap) {
		size_t cap = bm->cap ? bm->cap * 2 : 64;
		struct dst_blob **g = realloc(bm->v, cap * sizeof(*g));

		if (!g) {
			dst_blob_unref(b);
			return NULL;
		}
		bm->v = g;
		bm->cap = cap;
	}
	bm->v[bm->n++] = b;  /* the map's reference */
	return b;
}

static int replay_file(struct dst *s, struct blobmap *bm, const json_t *r)
{
	const char *id = jstr(r, "id"), *pid = jstr(r, "p");
	struct dfile *f, *parent = NULL;
	struct dst_blob *b = NULL;
	int fresh = 0;

	if (!id || !jstr(r, "n") || !jstr(r, "m") || !valid_id(id))
		return -1;
	if (pid) {
		parent = lookup(s, pid);
		if (!parent)
			return -1;
	}
	if (json_object_get(r, "b")) {
		b = replay_blob(s, bm, r);
		if (!b)
			return -1;
	}
	f = lookup(s, id);
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return -1;
		snprintf(f->id, sizeof(f->id), "%s", id);
		fresh = 1;
	}
	if (set_str(&f->name, jstr(r, "n")) < 0 || set_str(&f->mime, jstr(r, "m")) < 0 ||
	    set_str(&f->drive_id, jstr(r, "dv")) < 0 ||
	    set_str(&f->description, jstr(r, "ds")) < 0 ||
	    set_str(&f->orig_name, jstr(r, "of")) < 0 ||
	    set_str(&f->target_id, jstr(r, "ti")) < 0 ||
	    set_str(&f->target_mime, jstr(r, "tm")) < 0)
		goto fail;
	f->created_ms = jint(r, "c");
	f->modified_ms = jint(r, "mo");
	f->viewed_ms = jint(r, "vw");
	f->rev = jint(r, "r");
	f->starred = json_is_true(json_object_get(r, "st"));
	f->xtrashed = json_is_true(json_object_get(r, "x"));
	f->trashed_ms = jint(r, "xt");
	f->export_size = jint(r, "es");
	f->is_root = json_is_true(json_object_get(r, "rt"));
	json_decref(f->props);
	json_decref(f->app_props);
	f->props = json_is_object(json_object_get(r, "pr")) ? json_deep_copy(json_object_get(r, "pr")) : NULL;
	f->app_props = json_is_object(json_object_get(r, "ap")) ? json_deep_copy(json_object_get(r, "ap")) : NULL;
	if (!fresh && has_content(f))
		s->usage -= content_size(f);
	if (b != f->blob) {
		blob_link(b);
		blob_unlink(s, f->blob);
		f->blob = b;
	}
	if (fresh) {
		if (link_file(s, f, parent) < 0)
			goto fail;
	} else if (parent && parent != f->pp) {
		if (move_file(s, f, parent) < 0)
			return -1;
	}
	if (has_content(f))
		s->usage += content_size(f);
	if (f->is_root && !f->drive_id)
		s->root = f;
	f->version = note_change(s, f->id, f->drive_id, 0, jint(r, "v"));
	return 0;
fail:
	if (fresh) {
		blob_unlink(s, f->blob);
		f->blob = NULL;
		file_free(f);
	}
	return -1;
}

static int replay_sess(struct dst *s, const json_t *r)
{
	const char *id = jstr(r, "id");
	struct dst_sess *ss;
	int fresh = 0;

	if (!id || strlen(id) >= sizeof(ss->id) || strchr(id, '/') || id[0] == '.')
		return -1;
	ss = dmap_get(&s->sess, id);
	if (!ss) {
		ss = sess_alloc(id);
		if (!ss)
			return -1;
		fresh = 1;
		ss->update = json_is_true(json_object_get(r, "u"));
		snprintf(ss->file_id, sizeof(ss->file_id), "%s", jstr(r, "fid") ? jstr(r, "fid") : "");
		if (json_is_object(json_object_get(r, "meta")))
			ss->meta = json_deep_copy(json_object_get(r, "meta"));
		ss->add_parents = jstr(r, "ap") ? strdup(jstr(r, "ap")) : NULL;
		ss->remove_parents = jstr(r, "rp") ? strdup(jstr(r, "rp")) : NULL;
		ss->upload_ctype = jstr(r, "ct") ? strdup(jstr(r, "ct")) : NULL;
		ss->all_drives = json_is_true(json_object_get(r, "ad"));
		ss->declared_total = jint(r, "dl");
		ss->created_ms = jint(r, "c");
	}
	snprintf(ss->file_id, sizeof(ss->file_id), "%s", jstr(r, "fid") ? jstr(r, "fid") : "");
	ss->total = jint(r, "tot");
	ss->state = (int)jint(r, "st");
	ss->ended_ms = jint(r, "e");
	if (fresh && dmap_put(&s->sess, ss->id, ss) < 0) {
		dst_sess_unref(ss);
		return -1;
	}
	return 0;
}

/* Active sessions get their bytes back: trimmed to the acknowledged 256 KiB
 * multiple, sums recomputed. */
static void restore_session_bytes(struct dst *s, struct dst_sess *ss)
{
	struct stat st;
	off_t keep, off = 0;
	char *buf = NULL;

	ss->path = emf_path_join(s->dir, "sessions", ss->id);
	if (!ss->path)
		goto expire;
	ss->fd = open(ss->path, O_RDWR | O_CLOEXEC);
	if (ss->fd < 0 || fstat(ss->fd, &st) < 0)
		goto expire;
	keep = st.st_size / CHUNK_ALIGN * CHUNK_ALIGN;
	if (keep != st.st_size && ftruncate(ss->fd, keep) < 0)
		goto expire;
	if (sess_sums_init(ss) < 0)
		goto expire;
	buf = malloc(1 << 20);
	if (!buf)
		goto expire;
	while (off < keep) {
		size_t n = keep - off > (1 << 20) ? (1 << 20) : (size_t)(keep - off);

		if (emf_read_all(ss->fd, buf, n, off) < 0)
			goto expire;
		sess_sums_update(ss, buf, n);
		off += (off_t)n;
	}
	free(buf);
	ss->persisted = (uint64_t)keep;
	ss->interrupted = 1;
	return;
expire:
	free(buf);
	warn("session %s lost its bytes; it is expired", ss->id);
	sess_free_bytes(ss);
	ss->state = DST_SESS_EXPIRED;
	ss->ended_ms = dst_now_ms();
}

static int replay_line(struct dst *s, struct blobmap *bm, const char *line)
{
	json_error_t jerr;
	json_t *r = json_loads(line, 0, &jerr), *a, *x;
	const char *t = jstr(r, "t");
	size_t i;
	int rc = 0;

	if (!r || !t) {
		json_decref(r);
		return -1;
	}
	if (!strcmp(t, "f")) {
		rc = replay_file(s, bm, r);
	} else if (!strcmp(t, "d")) {
		struct dfile *f = lookup(s, jstr(r, "id") ? jstr(r, "id") : "");

		if (f && !f->is_root)
			remove_one(s, f);
		if (jstr(r, "id"))
			note_change(s, jstr(r, "id"), jstr(r, "dv"), 1, jint(r, "v"));
	} else if (!strcmp(t, "drv")) {
		if (!jstr(r, "id") || !jstr(r, "n") || drive_find(s, jstr(r, "id")))
			rc = -1;
		else if (!lookup(s, jstr(r, "id")))
			rc = drive_add(s, jstr(r, "id"), jstr(r, "n"), jstr(r, "rq"), jint(r, "c"),
				       0) ? 0 : -1;
		else
			rc = -1;
	} else if (!strcmp(t, "drvd")) {
		for (i = 0; i < s->ndrives; i++) {
			if (jstr(r, "id") && !strcmp(s->drives[i]->id, jstr(r, "id"))) {
				free(s->drives[i]->name);
				free(s->drives[i]->request_id);
				free(s->drives[i]);
				memmove(&s->drives[i], &s->drives[i + 1],
					(s->ndrives - i - 1) * sizeof(*s->drives));
				s->ndrives--;
				break;
			}
		}
	} else if (!strcmp(t, "ids") || !strcmp(t, "idu")) {
		a = json_object_get(r, "a");
		json_array_foreach(a, i, x)
			if (json_is_string(x))
				dmap_put(&s->ids, json_string_value(x),
					 (void *)(intptr_t)(t[2] == 'u' ? 2 : 1));
	} else if (!strcmp(t, "quota")) {
		s->quota_limit = jint(r, "limit");
	} else if (!strcmp(t, "s")) {
		rc = replay_sess(s, r);
	} else if (!strcmp(t, "sd")) {
		struct dst_sess *ss = jstr(r, "id") ? dmap_get(&s->sess, jstr(r, "id")) : NULL;

		if (ss) {
			dmap_del(&s->sess, ss->id);
			dst_sess_unref(ss);
		}
	} else if (!strcmp(t, "reset")) {
		drop_all(s, 0);
	} else {
		rc = -1;
	}
	json_decref(r);
	return rc;
}

static int ent_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct ent *)a)->seq, y = ((const struct ent *)b)->seq;

	return x < y ? -1 : x > y;
}

/* The changes log from the per-id map, sorted by seq. */
static int rebuild_changes(struct dst *s)
{
	size_t i;

	dvec_free(&s->changes);
	for (i = 0; i < s->chg_by_id.nb; i++) {
		struct dnode *n;

		for (n = s->chg_by_id.b[i]; n; n = n->next) {
			struct dchg *c = n->val;

			if (dvec_push(&s->changes, c->seq, c) < 0)
				return -1;
		}
	}
	if (s->changes.n)
		qsort(s->changes.v, s->changes.n, sizeof(struct ent), ent_cmp);
	return 0;
}

static int replay(struct dst *s, const char *jpath, char *why, size_t whysz)
{
	FILE *fp = fopen(jpath, "r");
	struct blobmap bm = { 0 };
	char *line = NULL;
	size_t cap = 0, i;
	ssize_t n;
	long lineno = 0, bad = 0;

	if (!fp) {
		if (errno == ENOENT)
			return 0;
		snprintf(why, whysz, "cannot read %s: %s", jpath, strerror(errno));
		return -1;
	}
	s->replaying = 1;
	while ((n = getline(&line, &cap, fp)) > 0) {
		int torn = line[n - 1] != '\n';

		lineno++;
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		if (!line[0])
			continue;
		if (replay_line(s, &bm, line) < 0) {
			if (torn)
				break;  /* the last line, cut by a crash: ignored */
			if (bad++ < 5)
				warn("journal line %ld is not understood; skipped", lineno);
		}
	}
	s->replaying = 0;
	free(line);
	fclose(fp);
	if (rebuild_changes(s) < 0) {
		snprintf(why, whysz, "out of memory");
		for (i = 0; i < bm.n; i++)
			dst_blob_unref(bm.v[i]);
		free(bm.v);
		return -1;
	}
	for (i = 0; i < bm.n; i++)
		dst_blob_unref(bm.v[i]);
	free(bm.v);
	return 0;
}

/* Write the whole state as a fresh journal: parents before children. */
static int compact(struct dst *s, const char *jpath, char *why, size_t whysz)
{
	char *tmp = NULL;
	size_t i, k;
	int rc = -1;
	json_t *ids = json_array(), *used = json_array();
	struct dfile **roots = NULL;
	size_t nroots = 0;

	if (asprintf(&tmp, "%s.new", jpath) < 0 || !ids || !used)
		goto out;
	s->jfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->jfd < 0) {
		snprintf(why, whysz, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	jbegin(s);
	if (s->quota_limit)
		jwrite(s, json_pack("{s:s, s:I}", "t", "quota", "limit", (json_int_t)s->quota_limit));
	for (i = 0; i < s->ndrives; i++) {
		json_t *r = json_pack("{s:s, s:s, s:s, s:I}", "t", "drv", "id", s->drives[i]->id,
				      "n", s->drives[i]->name, "c",
				      (json_int_t)s->drives[i]->created_ms);

		if (r && s->drives[i]->request_id)
			json_object_set_new(r, "rq", json_string(s->drives[i]->request_id));
		jwrite(s, r);
	}
	roots = calloc(s->ndrives + 1, sizeof(*roots));
	if (!roots)
		goto out_j;
	if (s->root)
		roots[nroots++] = s->root;
	for (i = 0; i < s->ndrives; i++) {
		struct dfile *r = lookup(s, s->drives[i]->id);

		if (r)
			roots[nroots++] = r;
	}
	for (k = 0; k < nroots; k++) {
		size_t n = 0;
		struct dfile **v = subtree(roots[k], &n);

		if (!v)
			goto out_j;
		for (i = 0; i < n; i++)
			jwrite(s, file_rec(v[i]));
		free(v);
	}
	/* removed files still in the changes feed */
	for (i = 0; i < s->changes.n; i++) {
		struct dchg *c = s->changes.v[i].p;
		json_t *r;

		if (!c || !c->removed)
			continue;
		r = json_pack("{s:s, s:s, s:I}", "t", "d", "id", c->id, "v", (json_int_t)c->seq);
		if (r && c->drive_id)
			json_object_set_new(r, "dv", json_string(c->drive_id));
		jwrite(s, r);
	}
	for (i = 0; i < s->ids.nb; i++) {
		struct dnode *nd;

		for (nd = s->ids.b[i]; nd; nd = nd->next)
			json_array_append_new((intptr_t)nd->val == 2 ? used : ids,
					      json_string(nd->key));
	}
	jwrite(s, json_pack("{s:s, s:O}", "t", "ids", "a", ids));
	jwrite(s, json_pack("{s:s, s:O}", "t", "idu", "a", used));
	for (i = 0; i < s->sess.nb; i++) {
		struct dnode *nd;

		for (nd = s->sess.b[i]; nd; nd = nd->next)
			jwrite(s, sess_rec(nd->val));
	}
	rc = 0;
out_j:
	jend(s);
	if (rc == 0 && (fsync(s->jfd) < 0 || rename(tmp, jpath) < 0)) {
		snprintf(why, whysz, "cannot replace %s: %s", jpath, strerror(errno));
		rc = -1;
	}
	close(s->jfd);
	s->jfd = -1;
	if (rc == 0) {
		s->jfd = open(jpath, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (s->jfd < 0) {
			snprintf(why, whysz, "cannot open %s: %s", jpath, strerror(errno));
			rc = -1;
		}
	}
out:
	free(roots);
	json_decref(ids);
	json_decref(used);
	free(tmp);
	return rc;
}

/* Delete blob and session files that nothing refers to. */
static void collect_garbage(struct dst *s)
{
	char *bdir = emf_path_join(s->dir, "blobs", NULL);
	char *sdir = emf_path_join(s->dir, "sessions", NULL);
	DIR *d;
	struct dirent *de;
	size_t i;
	uint64_t *live = NULL;
	size_t nlive = 0;

	live = malloc((s->all.n + 1) * sizeof(*live));
	if (live)
		for (i = 0; i < s->all.n; i++) {
			struct dfile *f = s->all.v[i].p;

			if (f && f->blob && f->blob->id)
				live[nlive++] = f->blob->id;
		}
	if (bdir && live && (d = opendir(bdir))) {
		while ((de = readdir(d))) {
			char *end = NULL;
			uint64_t id;
			int used = 0;

			if (de->d_name[0] == '.')
				continue;
			id = strtoull(de->d_name, &end, 16);
			for (i = 0; i < nlive && !used; i++)
				used = live[i] == id;
			if (!used || !end || *end) {
				char *p = emf_path_join(bdir, de->d_name, NULL);

				if (p)
					unlink(p);
				free(p);
			}
		}
		closedir(d);
	}
	if (sdir && (d = opendir(sdir))) {
		while ((de = readdir(d))) {
			struct dst_sess *ss;

			if (de->d_name[0] == '.')
				continue;
			ss = dmap_get(&s->sess, de->d_name);
			if (!ss || ss->state != DST_SESS_ACTIVE) {
				char *p = emf_path_join(sdir, de->d_name, NULL);

				if (p)
					unlink(p);
				free(p);
			}
		}
		closedir(d);
	}
	free(live);
	free(bdir);
	free(sdir);
}

struct dst *dst_open(const char *dir, char *why, size_t whysz)
{
	struct dst *s = calloc(1, sizeof(*s));
	char *jpath = NULL, *sub = NULL;
	size_t i;

	if (!s) {
		snprintf(why, whysz, "out of memory");
		return NULL;
	}
	pthread_rwlock_init(&s->lock, NULL);
	pthread_mutex_init(&s->jmu, NULL);
	s->jfd = -1;
	s->ids.own = 1;
	atomic_init(&s->next_blob, 1);
	if (dir) {
		s->dir = strdup(dir);
		if (!s->dir || emf_mkdir_p(dir) < 0) {
			snprintf(why, whysz, "cannot create %s: %s", dir, strerror(errno));
			goto fail;
		}
		for (i = 0; i < 2; i++) {
			sub = emf_path_join(dir, i ? "sessions" : "blobs", NULL);
			if (!sub || emf_mkdir_p(sub) < 0) {
				snprintf(why, whysz, "cannot create %s: %s", sub ? sub : dir,
					 strerror(errno));
				goto fail;
			}
			free(sub);
			sub = NULL;
		}
		jpath = emf_path_join(dir, "journal", NULL);
		if (!jpath || replay(s, jpath, why, whysz) < 0)
			goto fail;
		for (i = 0; i < s->sess.nb; i++) {
			struct dnode *nd;

			for (nd = s->sess.b[i]; nd; nd = nd->next) {
				struct dst_sess *ss = nd->val;

				if (ss->state == DST_SESS_ACTIVE)
					restore_session_bytes(s, ss);
			}
		}
	}
	if (!s->root && !make_root(s, NULL, dst_now_ms())) {
		snprintf(why, whysz, "out of memory");
		goto fail;
	}
	if (!s->root->version)
		s->root->version = note_change(s, s->root->id, NULL, 0, 0);
	if (dir) {
		if (compact(s, jpath, why, whysz) < 0)
			goto fail;
		collect_garbage(s);
	}
	free(jpath);
	return s;
fail:
	free(sub);
	free(jpath);
	dst_close(s);
	return NULL;
}
