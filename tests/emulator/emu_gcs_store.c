/* durafs-emulator Cloud Storage state (emu_gcs_store.h): buckets with a
 * skip list of object names per bucket, every generation of every object,
 * resumable sessions, and the data-dir persistence.
 *
 * Persistence (only with a data dir; everything lives in DIR = <data>/gcs):
 *   DIR/blobs/<16 hex>   the bytes of one blob, written before it is
 *                        published, never modified, mmapped read-only;
 *                        unlinked when no stored generation uses it.
 *   DIR/sessions/<id>    the persisted bytes of an active resumable
 *                        session, appended before a 308 acknowledges them;
 *                        renamed into blobs/ when the upload completes.
 *   DIR/journal          JSON lines, appended (write(2), before the reply)
 *                        on every change, in the order the store lock
 *                        serialised them:
 *     {"t":"bucket",...}       bucket created or patched (full record)
 *     {"t":"bucket_del","n"}   bucket deleted
 *     {"t":"obj",...}          a generation stored or replaced (full record;
 *                              "d" > 0 marks a noncurrent generation)
 *     {"t":"obj_del","b","n","g"}  a generation removed
 *     {"t":"sess",...}         a session created or changed state
 *     {"t":"sess_del","id"}    an ended session forgotten
 *     {"t":"reset"}            everything dropped
 * Recovery (gst_open): replay the journal (a torn last line, as left by
 * SIGKILL mid-write, is ignored; other bad lines are skipped with a
 * warning), trim each active session file to a multiple of 256 KiB (what
 * was acknowledged is always such a multiple), recompute its checksums,
 * write a compacted journal (journal.new, fsync, rename), and delete blob
 * and session files nothing refers to. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "emu_file.h"
#include "emu_gcs_store.h"

#define SL_MAX 24
#define CHUNK_ALIGN (256 * 1024)
#define SESS_HASH 1024
#define SESS_PRUNE_MIN 1024          /* sessions kept before pruning */
#define SESS_PRUNE_AGE_MS (60 * 1000) /* ended this long ago: forgettable */
#define SESS_HASH_BACKLOG ((uint64_t)64 << 20) /* bytes queued for hashing
					      * before an append waits */

const char *const gst_attr_key[GST_NATTR] = {
	"contentType", "cacheControl", "contentEncoding", "contentDisposition",
	"contentLanguage", "customTime", "storageClass",
};

/* One object name in a bucket: its live generation and the noncurrent ones
 * (ascending generation). A skip-list node. */
struct gst_name {
	char *name;
	size_t len;
	struct gst_obj *live;
	struct gst_obj **old;
	size_t nold, capold;
	int level;
	struct gst_name *next[];
};

struct gst_bucket {
	struct gst_bucket_info info;
	struct gst_name *head;
	int level;
	uint64_t rng;
	size_t nnames;
	struct gst_bucket *next;   /* sorted by name */
};

struct gst {
	pthread_rwlock_t lock;
	struct gst_bucket *buckets;       /* lock */
	int64_t last_gen;                 /* lock (write) */
	struct gst_sess *sess[SESS_HASH]; /* lock */
	size_t nsess;                     /* lock */
	size_t sess_limit;                /* lock: prune when nsess passes it */
	atomic_uint_fast64_t next_blob;
	char *dir;                        /* NULL: memory only */
	pthread_mutex_t jmu;
	int jfd;                          /* jmu */
	int jwarned;                      /* jmu */
};

/* --- small helpers ---------------------------------------------------- */

int64_t gst_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int mkdir_one(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static void sum_bytes(const char *data, uint64_t len, uint32_t *crc, unsigned char md5[16])
{
	struct ck_md5 m;
	uint64_t off = 0;
	int ok = ck_md5_init(&m) == 0;

	*crc = 0;
	while (off < len) {
		size_t n = len - off > (1u << 20) ? (1u << 20) : (size_t)(len - off);

		*crc = ck_crc32c(*crc, data + off, n);
		if (ok)
			ck_md5_update(&m, data + off, n);
		off += n;
	}
	if (ok)
		ck_md5_final(&m, md5);
	else
		ck_md5(data, (size_t)len, md5);
}

/* --- blobs ------------------------------------------------------------ */

void gst_blob_ref(struct gst_blob *b)
{
	atomic_fetch_add(&b->refs, 1);
}

void gst_blob_unref(void *p)
{
	struct gst_blob *b = p;

	if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	if (b->mapped && b->data)
		munmap(b->data, (size_t)b->len);
	else
		free(b->data);
	free(b->path);
	free(b);
}

/* A stored generation starts or stops using b (store lock held, write).
 * The last stop deletes its file: in-flight mappings stay readable. */
static void blob_link(struct gst_blob *b)
{
	if (b->links++ == 0 && b->unlinked && b->path) {
		/* published again after its last user went (a copy racing a
		 * delete of its source): write the file back from the mapping */
		int fd = open(b->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || emf_write_all(fd, b->data, (size_t)b->len, 0, 1) < 0)
			fprintf(stderr, "gcs: cannot rewrite blob file %s: %s\n", b->path,
				strerror(errno));
		if (fd >= 0)
			close(fd);
		b->unlinked = 0;
	}
}

static void blob_unlink(struct gst_blob *b)
{
	if (--b->links == 0 && b->path) {
		unlink(b->path);
		b->unlinked = 1;
	}
}

static struct gst_blob *blob_new(void)
{
	struct gst_blob *b = calloc(1, sizeof(*b));

	if (b)
		atomic_init(&b->refs, 1);
	return b;
}

/* Map the blob's file (data dir); len already set. */
static int blob_map(struct gst_blob *b)
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

static int blob_assign_file(struct gst *s, struct gst_blob *b)
{
	char leaf[24];

	b->id = atomic_fetch_add(&s->next_blob, 1);
	snprintf(leaf, sizeof(leaf), "%016" PRIx64, b->id);
	b->path = emf_path_join(s->dir, "blobs", leaf);
	return b->path ? 0 : -1;
}

/* Write pieces into the blob's new file and map it. */
static int blob_write_file(struct gst *s, struct gst_blob *b, const char *const *data,
			   const uint64_t *lens, size_t n)
{
	int fd = -1, rc = -1;
	off_t off = 0;
	size_t i;

	if (blob_assign_file(s, b) < 0)
		goto out;
	fd = open(b->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (lens[i] && emf_write_all(fd, data[i], (size_t)lens[i], off, 1) < 0)
			goto out;
		off += (off_t)lens[i];
	}
	if (close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	rc = blob_map(b);
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && b->path)
		unlink(b->path);
	return rc;
}

struct gst_blob *gst_blob_copy(struct gst *s, const void *data, uint64_t len)
{
	struct gst_blob *b = blob_new();
	const char *pieces[1] = { data };
	uint64_t lens[1] = { len };

	if (!b)
		return NULL;
	b->len = len;
	sum_bytes(data, len, &b->crc32c, b->md5);
	if (s->dir) {
		if (blob_write_file(s, b, pieces, lens, 1) < 0)
			goto fail;
	} else if (len) {
		b->data = malloc((size_t)len);
		if (!b->data)
			goto fail;
		memcpy(b->data, data, (size_t)len);
	}
	return b;
fail:
	gst_blob_unref(b);
	return NULL;
}

struct gst_blob *gst_blob_take(struct gst *s, char *data, uint64_t len)
{
	struct gst_blob *b;

	if (s->dir) {
		b = gst_blob_copy(s, data, len);
		free(data);
		return b;
	}
	b = blob_new();
	if (!b) {
		free(data);
		return NULL;
	}
	b->len = len;
	sum_bytes(data, len, &b->crc32c, b->md5);
	if (len)
		b->data = data;
	else
		free(data);
	return b;
}

void gst_blob_discard(struct gst_blob *b)
{
	if (b && b->links == 0 && b->path && !b->unlinked) {
		unlink(b->path);
		b->unlinked = 1;
	}
	gst_blob_unref(b);
}

struct gst_blob *gst_blob_concat(struct gst *s, struct gst_blob *const *parts, size_t n)
{
	struct gst_blob *b = blob_new();
	const char **pieces = NULL;
	uint64_t *lens = NULL;
	struct ck_md5 m;
	int md5_ok = 0;
	size_t i;

	if (!b)
		return NULL;
	pieces = calloc(n ? n : 1, sizeof(*pieces));
	lens = calloc(n ? n : 1, sizeof(*lens));
	if (!pieces || !lens)
		goto fail;
	md5_ok = ck_md5_init(&m) == 0;
	if (!md5_ok)
		goto fail;
	for (i = 0; i < n; i++) {
		pieces[i] = parts[i]->data;
		lens[i] = parts[i]->len;
		b->len += parts[i]->len;
		b->crc32c = ck_crc32c(b->crc32c, parts[i]->data, (size_t)parts[i]->len);
		if (parts[i]->len)
			ck_md5_update(&m, parts[i]->data, (size_t)parts[i]->len);
	}
	ck_md5_final(&m, b->md5);
	md5_ok = 0;
	if (s->dir) {
		if (blob_write_file(s, b, pieces, lens, n) < 0)
			goto fail;
	} else if (b->len) {
		uint64_t off = 0;

		b->data = malloc((size_t)b->len);
		if (!b->data)
			goto fail;
		for (i = 0; i < n; i++) {
			if (lens[i])
				memcpy(b->data + off, pieces[i], (size_t)lens[i]);
			off += lens[i];
		}
	}
	free(pieces);
	free(lens);
	return b;
fail:
	if (md5_ok)
		ck_md5_release(&m);
	free(pieces);
	free(lens);
	gst_blob_unref(b);
	return NULL;
}

/* --- specs and objects ------------------------------------------------ */

void gst_spec_release(struct gst_spec *sp)
{
	int i;

	for (i = 0; i < GST_NATTR; i++) {
		free(sp->attr[i]);
		sp->attr[i] = NULL;
	}
	json_decref(sp->metadata);
	sp->metadata = NULL;
}

/* Custom metadata: an object of strings (null values allowed only in a
 * patch, where they delete a key). */
static int check_metadata(const json_t *m, int allow_null, char *why, size_t whysz)
{
	const char *k;
	json_t *v;

	if (!json_is_object(m)) {
		snprintf(why, whysz, "metadata must be an object of strings");
		return -1;
	}
	json_object_foreach((json_t *)m, k, v) {
		if (json_is_string(v) || (allow_null && json_is_null(v)))
			continue;
		snprintf(why, whysz, "metadata value of '%.64s' must be a string", k);
		return -1;
	}
	return 0;
}

int gst_spec_from_json(struct gst_spec *sp, const json_t *res, char *why, size_t whysz)
{
	int i;
	json_t *m;

	if (!res)
		return 0;
	if (!json_is_object(res)) {
		snprintf(why, whysz, "object resource must be a JSON object");
		return -1;
	}
	for (i = 0; i < GST_NATTR; i++) {
		json_t *v = json_object_get(res, gst_attr_key[i]);
		char *dup;

		if (!v)
			continue;
		if (json_is_null(v)) {
			free(sp->attr[i]);
			sp->attr[i] = NULL;
			continue;
		}
		if (!json_is_string(v)) {
			snprintf(why, whysz, "%s must be a string", gst_attr_key[i]);
			return -1;
		}
		dup = strdup(json_string_value(v));
		if (!dup) {
			snprintf(why, whysz, "out of memory");
			return -1;
		}
		free(sp->attr[i]);
		sp->attr[i] = dup;
	}
	m = json_object_get(res, "metadata");
	if (m && !json_is_null(m)) {
		json_t *copy;

		if (check_metadata(m, 0, why, whysz) < 0)
			return -1;
		copy = json_deep_copy(m);
		if (!copy) {
			snprintf(why, whysz, "out of memory");
			return -1;
		}
		json_decref(sp->metadata);
		sp->metadata = copy;
	} else if (m) {
		json_decref(sp->metadata);
		sp->metadata = NULL;
	}
	return 0;
}

void gst_obj_ref(struct gst_obj *o)
{
	atomic_fetch_add(&o->refs, 1);
}

void gst_obj_unref(struct gst_obj *o)
{
	int i;

	if (!o || atomic_fetch_sub(&o->refs, 1) != 1)
		return;
	gst_blob_unref(o->blob);
	for (i = 0; i < GST_NATTR; i++)
		free(o->attr[i]);
	json_decref(o->metadata);
	free(o->bucket);
	free(o->name);
	free(o);
}

static struct gst_obj *obj_new(const char *bucket, const char *name)
{
	struct gst_obj *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	atomic_init(&o->refs, 1);
	o->bucket = strdup(bucket);
	o->name = strdup(name);
	if (!o->bucket || !o->name) {
		gst_obj_unref(o);
		return NULL;
	}
	return o;
}

/* A private copy of o (to publish a changed version). */
static struct gst_obj *obj_clone(const struct gst_obj *o)
{
	struct gst_obj *c = obj_new(o->bucket, o->name);
	int i;

	if (!c)
		return NULL;
	c->generation = o->generation;
	c->metageneration = o->metageneration;
	c->blob = o->blob;
	gst_blob_ref(c->blob);
	for (i = 0; i < GST_NATTR; i++) {
		if (o->attr[i] && !(c->attr[i] = strdup(o->attr[i])))
			goto fail;
	}
	if (o->metadata && !(c->metadata = json_deep_copy(o->metadata)))
		goto fail;
	c->component_count = o->component_count;
	c->created_ms = o->created_ms;
	c->updated_ms = o->updated_ms;
	c->deleted_ms = o->deleted_ms;
	return c;
fail:
	gst_obj_unref(c);
	return NULL;
}

/* --- skip list of names ----------------------------------------------- */

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static struct gst_name *name_node_new(const char *name, size_t len, int level)
{
	struct gst_name *n = calloc(1, sizeof(*n) + (size_t)level * sizeof(n->next[0]));

	if (!n)
		return NULL;
	n->level = level;
	if (name) {
		n->name = malloc(len + 1);
		if (!n->name) {
			free(n);
			return NULL;
		}
		memcpy(n->name, name, len);
		n->name[len] = '\0';
		n->len = len;
	}
	return n;
}

static int sl_random_level(struct gst_bucket *b)
{
	int lvl = 1;

	/* xorshift64; two bits per level: p = 1/4 */
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	uint64_t r = b->rng;
	while (lvl < SL_MAX && (r & 3) == 0) {
		lvl++;
		r >>= 2;
	}
	return lvl;
}

/* First node with name >= key (or NULL); update[] gets the predecessors. */
static struct gst_name *sl_seek(struct gst_bucket *b, const char *key, size_t klen,
				struct gst_name **update)
{
	struct gst_name *x = b->head;
	int i;

	for (i = b->level - 1; i >= 0; i--) {
		while (x->next[i] && name_cmp(x->next[i]->name, x->next[i]->len, key, klen) < 0)
			x = x->next[i];
		if (update)
			update[i] = x;
	}
	return x->next[0];
}

static struct gst_name *sl_find(struct gst_bucket *b, const char *key)
{
	size_t klen = strlen(key);
	struct gst_name *n = sl_seek(b, key, klen, NULL);

	if (n && n->len == klen && memcmp(n->name, key, klen) == 0)
		return n;
	return NULL;
}

static struct gst_name *sl_insert(struct gst_bucket *b, const char *key)
{
	struct gst_name *update[SL_MAX];
	size_t klen = strlen(key);
	struct gst_name *n = sl_seek(b, key, klen, update);
	int lvl, i;

	if (n && n->len == klen && memcmp(n->name, key, klen) == 0)
		return n;
	lvl = sl_random_level(b);
	if (lvl > b->level) {
		for (i = b->level; i < lvl; i++)
			update[i] = b->head;
		b->level = lvl;
	}
	n = name_node_new(key, klen, lvl);
	if (!n)
		return NULL;
	for (i = 0; i < lvl; i++) {
		n->next[i] = update[i]->next[i];
		update[i]->next[i] = n;
	}
	b->nnames++;
	return n;
}

static void name_node_free(struct gst_name *n)
{
	free(n->old);
	free(n->name);
	free(n);
}

static void sl_remove(struct gst_bucket *b, struct gst_name *node)
{
	struct gst_name *update[SL_MAX];
	struct gst_name *n = sl_seek(b, node->name, node->len, update);
	int i;

	if (n != node)
		return;
	for (i = 0; i < b->level; i++) {
		if (update[i]->next[i] != n)
			break;
		update[i]->next[i] = n->next[i];
	}
	while (b->level > 1 && !b->head->next[b->level - 1])
		b->level--;
	b->nnames--;
	name_node_free(n);
}

/* Drop a node left with no generation. */
static void name_gc(struct gst_bucket *b, struct gst_name *n)
{
	if (!n->live && n->nold == 0)
		sl_remove(b, n);
}

static int name_add_old(struct gst_name *n, struct gst_obj *o)
{
	size_t i;

	if (n->nold == n->capold) {
		size_t cap = n->capold ? n->capold * 2 : 4;
		struct gst_obj **v = realloc(n->old, cap * sizeof(*v));

		if (!v)
			return -1;
		n->old = v;
		n->capold = cap;
	}
	i = n->nold;
	while (i > 0 && n->old[i - 1]->generation > o->generation) {
		n->old[i] = n->old[i - 1];
		i--;
	}
	n->old[i] = o;
	n->nold++;
	return 0;
}

static void name_drop_old(struct gst_name *n, size_t i)
{
	memmove(n->old + i, n->old + i + 1, (n->nold - i - 1) * sizeof(n->old[0]));
	n->nold--;
}

/* --- buckets ---------------------------------------------------------- */

static struct gst_bucket *bucket_find(struct gst *s, const char *name)
{
	struct gst_bucket *b;

	for (b = s->buckets; b; b = b->next)
		if (strcmp(b->info.name, name) == 0)
			return b;
	return NULL;
}

static void bucket_free(struct gst_bucket *b, int unlink_files)
{
	struct gst_name *n, *next;
	size_t i;

	if (!b)
		return;
	for (n = b->head ? b->head->next[0] : NULL; n; n = next) {
		next = n->next[0];
		if (n->live) {
			if (unlink_files)
				blob_unlink(n->live->blob);
			gst_obj_unref(n->live);
		}
		for (i = 0; i < n->nold; i++) {
			if (unlink_files)
				blob_unlink(n->old[i]->blob);
			gst_obj_unref(n->old[i]);
		}
		name_node_free(n);
	}
	if (b->head)
		name_node_free(b->head);
	free(b);
}

static struct gst_bucket *bucket_new(const char *name)
{
	struct gst_bucket *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	snprintf(b->info.name, sizeof(b->info.name), "%s", name);
	b->head = name_node_new(NULL, 0, SL_MAX);
	if (!b->head) {
		free(b);
		return NULL;
	}
	b->level = 1;
	b->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)b;
	return b;
}

static void bucket_link(struct gst *s, struct gst_bucket *nb)
{
	struct gst_bucket **pp = &s->buckets;

	while (*pp && strcmp((*pp)->info.name, nb->info.name) < 0)
		pp = &(*pp)->next;
	nb->next = *pp;
	*pp = nb;
}

/* --- journal ---------------------------------------------------------- */

static void jwrite(struct gst *s, json_t *rec)
{
	char *line;
	size_t len;

	if (!s->dir || !rec) {
		json_decref(rec);
		return;
	}
	line = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	pthread_mutex_lock(&s->jmu);
	if (!line || s->jfd < 0) {
		if (!s->jwarned)
			fprintf(stderr, "gcs: journal unavailable, state change not persisted\n");
		s->jwarned = 1;
		goto out;
	}
	len = strlen(line);
	line[len] = '\n';  /* json_dumps' NUL becomes the line end */
	if (emf_write_all(s->jfd, line, len + 1, 0, 0) < 0 && !s->jwarned) {
		fprintf(stderr, "gcs: journal write failed: %s\n", strerror(errno));
		s->jwarned = 1;
	}
out:
	pthread_mutex_unlock(&s->jmu);
	free(line);
}

static json_t *cond_to_json(const struct gst_cond *c)
{
	json_t *j = json_object();

	if (!j)
		return NULL;
	if (c->has_gen)
		json_object_set_new(j, "g", json_integer(c->gen));
	if (c->has_not_gen)
		json_object_set_new(j, "ng", json_integer(c->not_gen));
	if (c->has_meta)
		json_object_set_new(j, "m", json_integer(c->meta));
	if (c->has_not_meta)
		json_object_set_new(j, "nm", json_integer(c->not_meta));
	return j;
}

static void cond_from_json(struct gst_cond *c, const json_t *j)
{
	json_t *v;

	memset(c, 0, sizeof(*c));
	if ((v = json_object_get(j, "g")) && json_is_integer(v)) {
		c->has_gen = 1;
		c->gen = json_integer_value(v);
	}
	if ((v = json_object_get(j, "ng")) && json_is_integer(v)) {
		c->has_not_gen = 1;
		c->not_gen = json_integer_value(v);
	}
	if ((v = json_object_get(j, "m")) && json_is_integer(v)) {
		c->has_meta = 1;
		c->meta = json_integer_value(v);
	}
	if ((v = json_object_get(j, "nm")) && json_is_integer(v)) {
		c->has_not_meta = 1;
		c->not_meta = json_integer_value(v);
	}
}

static json_t *bucket_rec(const struct gst_bucket_info *bi)
{
	return json_pack("{s:s, s:s, s:b, s:I, s:I, s:I}", "t", "bucket", "n", bi->name,
			 "v", bi->versioning, "c", (json_int_t)bi->created_ms,
			 "u", (json_int_t)bi->updated_ms, "m", (json_int_t)bi->metageneration);
}

static json_t *obj_rec(const struct gst_obj *o)
{
	json_t *rec, *attrs;
	char id[24] = "", md5[33];
	int i;

	attrs = json_object();
	if (!attrs)
		return NULL;
	for (i = 0; i < GST_NATTR; i++)
		if (o->attr[i])
			json_object_set_new(attrs, gst_attr_key[i], json_string(o->attr[i]));
	if (o->blob->id)
		snprintf(id, sizeof(id), "%016" PRIx64, o->blob->id);
	ck_md5_hex(o->blob->md5, md5);
	rec = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:s, s:o, s:O?, s:i, s:I, s:I, s:I}",
			"t", "obj", "b", o->bucket, "n", o->name,
			"g", (json_int_t)o->generation, "m", (json_int_t)o->metageneration,
			"blob", id, "size", (json_int_t)o->blob->len,
			"crc", (json_int_t)o->blob->crc32c, "md5", md5, "a", attrs,
			"meta", o->metadata, "cc", o->component_count,
			"c", (json_int_t)o->created_ms, "u", (json_int_t)o->updated_ms,
			"d", (json_int_t)o->deleted_ms);
	return rec;
}

static json_t *obj_del_rec(const struct gst_obj *o)
{
	return json_pack("{s:s, s:s, s:s, s:I}", "t", "obj_del", "b", o->bucket,
			 "n", o->name, "g", (json_int_t)o->generation);
}

static json_t *sess_rec(const struct gst_sess *ss)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:O?, s:o, s:s?, s:I, s:I, s:i, s:I, s:s}",
			 "t", "sess", "id", ss->id, "b", ss->bucket, "n", ss->name,
			 "meta", ss->meta, "cond", cond_to_json(&ss->cond),
			 "uct", ss->upload_ctype, "dt", (json_int_t)ss->declared_total,
			 "c", (json_int_t)ss->created_ms, "st", ss->state,
			 "rg", (json_int_t)ss->result_gen, "fm", ss->fail_msg);
}

/* --- preconditions ---------------------------------------------------- */

/* o == NULL: the object does not exist (generation 0). */
static int cond_check(const struct gst_cond *c, const struct gst_obj *o)
{
	int64_t g = o ? o->generation : 0;

	if (!c)
		return GST_OK;
	if (c->has_gen && c->gen != g)
		return GST_EPRECOND;
	if (c->has_meta && (!o || c->meta != o->metageneration))
		return GST_EPRECOND;
	if (c->has_not_gen && c->not_gen == g)
		return GST_ENOTMOD;
	if (c->has_not_meta && o && c->not_meta == o->metageneration)
		return GST_ENOTMOD;
	return GST_OK;
}

static int64_t next_generation(struct gst *s)
{
	int64_t g = now_us();

	if (g <= s->last_gen)
		g = s->last_gen + 1;
	s->last_gen = g;
	return g;
}

/* --- bucket calls ----------------------------------------------------- */

int gst_bucket_create(struct gst *s, const char *name, int versioning,
		      struct gst_bucket_info *out)
{
	struct gst_bucket *b;
	int rc = GST_OK;

	if (strlen(name) >= sizeof(b->info.name))
		return GST_EINVAL;
	pthread_rwlock_wrlock(&s->lock);
	if (bucket_find(s, name)) {
		rc = GST_EEXIST;
		goto out;
	}
	b = bucket_new(name);
	if (!b) {
		rc = GST_ENOMEM;
		goto out;
	}
	b->info.versioning = versioning;
	b->info.created_ms = b->info.updated_ms = gst_now_ms();
	b->info.metageneration = 1;
	bucket_link(s, b);
	jwrite(s, bucket_rec(&b->info));
	if (out)
		*out = b->info;
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int gst_bucket_get(struct gst *s, const char *name, struct gst_bucket_info *out)
{
	struct gst_bucket *b;
	int rc = GST_OK;

	pthread_rwlock_rdlock(&s->lock);
	b = bucket_find(s, name);
	if (!b)
		rc = GST_ENOBUCKET;
	else if (out)
		*out = b->info;
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

static int bucket_cond(const struct gst_cond *c, const struct gst_bucket *b)
{
	if (!c)
		return GST_OK;
	if (c->has_meta && c->meta != b->info.metageneration)
		return GST_EPRECOND;
	if (c->has_not_meta && c->not_meta == b->info.metageneration)
		return GST_EPRECOND;
	return GST_OK;
}

int gst_bucket_patch(struct gst *s, const char *name, int versioning,
		     const struct gst_cond *c, struct gst_bucket_info *out)
{
	struct gst_bucket *b;
	int rc;

	pthread_rwlock_wrlock(&s->lock);
	b = bucket_find(s, name);
	if (!b) {
		rc = GST_ENOBUCKET;
		goto out;
	}
	rc = bucket_cond(c, b);
	if (rc)
		goto out;
	if (versioning >= 0)
		b->info.versioning = versioning;
	b->info.metageneration++;
	b->info.updated_ms = gst_now_ms();
	jwrite(s, bucket_rec(&b->info));
	if (out)
		*out = b->info;
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int gst_bucket_delete(struct gst *s, const char *name, const struct gst_cond *c)
{
	struct gst_bucket **pp, *b;
	int rc = GST_ENOBUCKET;

	pthread_rwlock_wrlock(&s->lock);
	for (pp = &s->buckets; *pp; pp = &(*pp)->next) {
		b = *pp;
		if (strcmp(b->info.name, name) != 0)
			continue;
		rc = bucket_cond(c, b);
		if (rc)
			break;
		if (b->nnames) {
			rc = GST_ENOTEMPTY;
			break;
		}
		*pp = b->next;
		jwrite(s, json_pack("{s:s, s:s}", "t", "bucket_del", "n", name));
		bucket_free(b, 1);
		rc = GST_OK;
		break;
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int gst_bucket_list(struct gst *s, struct gst_bucket_info **out, size_t *n)
{
	struct gst_bucket *b;
	size_t cnt = 0, i = 0;
	struct gst_bucket_info *v;
	int rc = GST_OK;

	pthread_rwlock_rdlock(&s->lock);
	for (b = s->buckets; b; b = b->next)
		cnt++;
	v = calloc(cnt ? cnt : 1, sizeof(*v));
	if (!v) {
		rc = GST_ENOMEM;
		goto out;
	}
	for (b = s->buckets; b; b = b->next)
		v[i++] = b->info;
	*out = v;
	*n = cnt;
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

/* --- object calls ----------------------------------------------------- */

static struct gst_obj *name_version(struct gst_name *n, int64_t gen, size_t *old_idx)
{
	size_t i;

	if (!n)
		return NULL;
	if (gen == 0 || (n->live && n->live->generation == gen)) {
		if (old_idx)
			*old_idx = (size_t)-1;
		return n->live;
	}
	for (i = 0; i < n->nold; i++) {
		if (n->old[i]->generation == gen) {
			if (old_idx)
				*old_idx = i;
			return n->old[i];
		}
	}
	return NULL;
}

int gst_obj_get(struct gst *s, const char *bucket, const char *name, int64_t gen,
		const struct gst_cond *c, struct gst_obj **out)
{
	struct gst_bucket *b;
	struct gst_obj *o;
	int rc;

	pthread_rwlock_rdlock(&s->lock);
	b = bucket_find(s, bucket);
	if (!b) {
		rc = GST_ENOBUCKET;
		goto out;
	}
	o = name_version(sl_find(b, name), gen, NULL);
	if (!o) {
		rc = GST_ENOOBJ;
		goto out;
	}
	rc = cond_check(c, o);
	if (rc)
		goto out;
	gst_obj_ref(o);
	*out = o;
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

/* Make the live generation of n noncurrent (versioned bucket) or drop it.
 * Store lock held (write). */
static int retire_live(struct gst *s, struct gst_bucket *b, struct gst_name *n, int64_t when)
{
	struct gst_obj *live = n->live, *old;

	if (!live)
		return 0;
	if (b->info.versioning) {
		old = obj_clone(live);
		if (!old || name_add_old(n, old) < 0) {
			gst_obj_unref(old);
			return -1;
		}
		old->deleted_ms = when;
		blob_link(old->blob);
		jwrite(s, obj_rec(old));
	} else {
		jwrite(s, obj_del_rec(live));
	}
	n->live = NULL;
	blob_unlink(live->blob);
	gst_obj_unref(live);
	return 0;
}

int gst_obj_put(struct gst *s, const char *bucket, const char *name,
		struct gst_blob *blob, struct gst_spec *spec,
		const struct gst_cond *c, struct gst_obj **out)
{
	struct gst_bucket *b;
	struct gst_name *n;
	struct gst_obj *o = NULL;
	int rc, i, created = 0;
	int64_t now;

	pthread_rwlock_wrlock(&s->lock);
	b = bucket_find(s, bucket);
	if (!b) {
		rc = GST_ENOBUCKET;
		goto out;
	}
	n = sl_find(b, name);
	rc = cond_check(c, n ? n->live : NULL);
	if (rc == GST_ENOTMOD)
		rc = GST_EPRECOND;
	if (rc)
		goto out;
	o = obj_new(bucket, name);
	if (!o) {
		rc = GST_ENOMEM;
		goto out;
	}
	if (!n) {
		n = sl_insert(b, name);
		if (!n) {
			rc = GST_ENOMEM;
			goto out;
		}
		created = 1;
	}
	now = gst_now_ms();
	o->generation = next_generation(s);
	o->metageneration = 1;
	o->blob = blob;
	gst_blob_ref(blob);
	for (i = 0; i < GST_NATTR; i++) {
		o->attr[i] = spec->attr[i];
		spec->attr[i] = NULL;
	}
	o->metadata = spec->metadata;
	spec->metadata = NULL;
	o->component_count = spec->component_count;
	o->created_ms = o->updated_ms = now;
	blob_link(blob);  /* before retiring: a copy onto itself shares the blob */
	if (retire_live(s, b, n, now) < 0) {
		blob_unlink(blob);
		rc = GST_ENOMEM;
		if (created)
			name_gc(b, n);
		goto out;
	}
	n->live = o;
	jwrite(s, obj_rec(o));
	if (out) {
		gst_obj_ref(o);
		*out = o;
	}
	o = NULL;
out:
	pthread_rwlock_unlock(&s->lock);
	gst_obj_unref(o);
	gst_spec_release(spec);
	return rc;
}

/* The version gen (0: the live one) of bucket/name for a change guarded by
 * c; store lock held for writing. Sets *b, *n, *o and *idx (as
 * name_version). GST_OK, or GST_ENOBUCKET, GST_ENOOBJ or the condition's
 * failure (a not-modified one counts as a failed precondition). */
static int find_for_write(struct gst *s, const char *bucket, const char *name, int64_t gen,
			  const struct gst_cond *c, struct gst_bucket **b, struct gst_name **n,
			  struct gst_obj **o, size_t *idx)
{
	int rc;

	*b = bucket_find(s, bucket);
	if (!*b)
		return GST_ENOBUCKET;
	*n = sl_find(*b, name);
	*o = name_version(*n, gen, idx);
	if (!*o)
		return GST_ENOOBJ;
	rc = cond_check(c, *o);
	return rc == GST_ENOTMOD ? GST_EPRECOND : rc;
}

int gst_obj_delete(struct gst *s, const char *bucket, const char *name, int64_t gen,
		   const struct gst_cond *c)
{
	struct gst_bucket *b;
	struct gst_name *n;
	struct gst_obj *o;
	size_t idx = 0;
	int rc;

	pthread_rwlock_wrlock(&s->lock);
	rc = find_for_write(s, bucket, name, gen, c, &b, &n, &o, &idx);
	if (rc)
		goto out;
	if (gen == 0) {
		if (retire_live(s, b, n, gst_now_ms()) < 0) {
			rc = GST_ENOMEM;
			goto out;
		}
	} else {
		jwrite(s, obj_del_rec(o));
		if (idx == (size_t)-1)
			n->live = NULL;
		else
			name_drop_old(n, idx);
		blob_unlink(o->blob);
		gst_obj_unref(o);
	}
	name_gc(b, n);
out:
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

/* Apply a patch resource to the clone c. */
static int apply_patch(struct gst_obj *c, const json_t *patch, int replace,
		       char *why, size_t whysz)
{
	int i;
	json_t *m;

	if (!json_is_object(patch)) {
		snprintf(why, whysz, "patch body must be a JSON object");
		return -1;
	}
	if (replace && !json_object_get(patch, "metadata")) {
		json_decref(c->metadata);
		c->metadata = NULL;
	}
	for (i = 0; i < GST_NATTR; i++) {
		json_t *v = json_object_get(patch, gst_attr_key[i]);

		if (!v && replace && i != GST_STORAGE_CLASS) {
			free(c->attr[i]);
			c->attr[i] = NULL;
		}
		if (!v)
			continue;
		if (!json_is_null(v) && !json_is_string(v)) {
			snprintf(why, whysz, "%s must be a string", gst_attr_key[i]);
			return -1;
		}
		free(c->attr[i]);
		c->attr[i] = NULL;
		if (json_is_string(v) && !(c->attr[i] = strdup(json_string_value(v)))) {
			snprintf(why, whysz, "out of memory");
			return -1;
		}
	}
	m = json_object_get(patch, "metadata");
	if (m && json_is_null(m)) {
		json_decref(c->metadata);
		c->metadata = NULL;
	} else if (m) {
		const char *k;
		json_t *v;

		if (check_metadata(m, 1, why, whysz) < 0)
			return -1;
		if (replace) {
			json_decref(c->metadata);
			c->metadata = NULL;
		}
		if (!c->metadata && !(c->metadata = json_object())) {
			snprintf(why, whysz, "out of memory");
			return -1;
		}
		json_object_foreach(m, k, v) {
			if (json_is_null(v))
				json_object_del(c->metadata, k);
			else
				json_object_set_new(c->metadata, k, json_string(json_string_value(v)));
		}
		if (json_object_size(c->metadata) == 0) {
			json_decref(c->metadata);
			c->metadata = NULL;
		}
	}
	return 0;
}

int gst_obj_patch(struct gst *s, const char *bucket, const char *name, int64_t gen,
		  const json_t *patch, int replace, const struct gst_cond *c,
		  struct gst_obj **out, char *why, size_t whysz)
{
	struct gst_bucket *b;
	struct gst_name *n;
	struct gst_obj *o, *nc = NULL;
	size_t idx = 0;
	int rc;

	pthread_rwlock_wrlock(&s->lock);
	rc = find_for_write(s, bucket, name, gen, c, &b, &n, &o, &idx);
	if (rc)
		goto out;
	nc = obj_clone(o);
	if (!nc) {
		rc = GST_ENOMEM;
		goto out;
	}
	if (apply_patch(nc, patch, replace, why, whysz) < 0) {
		rc = GST_EINVAL;
		goto out;
	}
	nc->metageneration++;
	nc->updated_ms = gst_now_ms();
	blob_link(nc->blob);
	if (idx == (size_t)-1)
		n->live = nc;
	else
		n->old[idx] = nc;
	blob_unlink(o->blob);
	gst_obj_unref(o);
	jwrite(s, obj_rec(nc));
	if (out) {
		gst_obj_ref(nc);
		*out = nc;
	}
	nc = NULL;
out:
	pthread_rwlock_unlock(&s->lock);
	gst_obj_unref(nc);
	return rc;
}

/* --- listing ---------------------------------------------------------- */

void gst_list_page_release(struct gst_list_page *p)
{
	size_t i;

	for (i = 0; i < p->nitems; i++)
		gst_obj_unref(p->items[i]);
	for (i = 0; i < p->nprefixes; i++)
		free(p->prefixes[i]);
	free(p->items);
	free(p->prefixes);
	free(p->next_key);
	memset(p, 0, sizeof(*p));
}

static int page_add_item(struct gst_list_page *p, size_t *cap, struct gst_obj *o)
{
	if (p->nitems == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct gst_obj **v = realloc(p->items, nc * sizeof(*v));

		if (!v)
			return -1;
		p->items = v;
		*cap = nc;
	}
	gst_obj_ref(o);
	p->items[p->nitems++] = o;
	return 0;
}

static int page_add_prefix(struct gst_list_page *p, size_t *cap, const char *s, size_t n)
{
	char *d;

	if (p->nprefixes == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		char **v = realloc(p->prefixes, nc * sizeof(*v));

		if (!v)
			return -1;
		p->prefixes = v;
		*cap = nc;
	}
	d = strndup(s, n);
	if (!d)
		return -1;
	p->prefixes[p->nprefixes++] = d;
	return 0;
}

static int page_set_next(struct gst_list_page *p, const char *key, size_t len, int64_t gen)
{
	p->next_key = malloc(len + 1);
	if (!p->next_key)
		return -1;
	memcpy(p->next_key, key, len);
	p->next_key[len] = '\0';
	p->next_keylen = len;
	p->next_gen = gen;
	p->more = 1;
	return 0;
}

/* (name, gen) > (key, kgen) in listing order. */
static int after_cursor(const char *name, size_t nlen, int64_t gen,
			const char *key, size_t klen, int64_t kgen)
{
	int c = name_cmp(name, nlen, key, klen);

	return c > 0 || (c == 0 && gen > kgen);
}

/* The smallest string greater than every string starting with p[0..n):
 * p with its last byte incremented (trailing 0xff bytes dropped). Returns
 * the new length, 0 when there is none (every byte 0xff). */
static size_t prefix_successor(char *p, size_t n)
{
	while (n > 0) {
		unsigned char c = (unsigned char)p[n - 1];

		if (c != 0xff) {
			p[n - 1] = (char)(c + 1);
			return n;
		}
		n--;
	}
	return 0;
}

int gst_list(struct gst *s, const char *bucket, const struct gst_list_args *a,
	     struct gst_list_page *page)
{
	struct gst_bucket *b;
	struct gst_name *n;
	const char *prefix = a->prefix ? a->prefix : "";
	size_t plen = strlen(prefix);
	const char *delim = a->delimiter && *a->delimiter ? a->delimiter : NULL;
	size_t dlen = delim ? strlen(delim) : 0;
	const char *ckey = prefix;
	size_t cklen = plen;
	int64_t cgen = -1;
	size_t icap = 0, pcap = 0;
	long count = 0;
	char *succ = NULL;
	int rc = GST_OK;

	memset(page, 0, sizeof(*page));
	if (a->start_offset && name_cmp(a->start_offset, strlen(a->start_offset), ckey, cklen) > 0) {
		ckey = a->start_offset;
		cklen = strlen(a->start_offset);
	}
	if (a->token_key && after_cursor(a->token_key, a->token_keylen, a->token_gen,
					 ckey, cklen, cgen)) {
		ckey = a->token_key;
		cklen = a->token_keylen;
		cgen = a->token_gen;
	}
	pthread_rwlock_rdlock(&s->lock);
	b = bucket_find(s, bucket);
	if (!b) {
		rc = GST_ENOBUCKET;
		goto out;
	}
	/* Each entry is emitted if it lies after the cursor; when the page is
	 * full, the token points just before the first entry left out. */
	n = sl_seek(b, ckey, cklen, NULL);
	while (n) {
		const char *hit;
		size_t i;

		if (n->len < plen || memcmp(n->name, prefix, plen) != 0)
			break;
		if (a->end_offset && name_cmp(n->name, n->len, a->end_offset,
					      strlen(a->end_offset)) >= 0)
			break;
		if (!n->live && !(a->versions && n->nold)) {
			n = n->next[0];
			continue;
		}
		hit = delim ? memmem(n->name + plen, n->len - plen, delim, dlen) : NULL;
		if (hit) {
			size_t pl = (size_t)(hit - n->name) + dlen;
			size_t sl;

			if (count >= a->max) {
				if (page_set_next(page, n->name, pl, -1) < 0)
					rc = GST_ENOMEM;
				goto out;
			}
			if (page_add_prefix(page, &pcap, n->name, pl) < 0) {
				rc = GST_ENOMEM;
				goto out;
			}
			count++;
			if (a->include_trailing_delimiter && pl == n->len && n->live) {
				if (page_add_item(page, &icap, n->live) < 0) {
					rc = GST_ENOMEM;
					goto out;
				}
				count++;
			}
			/* skip the whole group: continue at the prefix's successor */
			free(succ);
			succ = strndup(n->name, pl);
			if (!succ) {
				rc = GST_ENOMEM;
				goto out;
			}
			sl = prefix_successor(succ, pl);
			n = sl ? sl_seek(b, succ, sl, NULL) : NULL;
			continue;
		}
		for (i = 0; a->versions && i < n->nold; i++) {
			struct gst_obj *o = n->old[i];

			if (!after_cursor(n->name, n->len, o->generation, ckey, cklen, cgen))
				continue;
			if (count >= a->max) {
				if (page_set_next(page, n->name, n->len, o->generation - 1) < 0)
					rc = GST_ENOMEM;
				goto out;
			}
			if (page_add_item(page, &icap, o) < 0) {
				rc = GST_ENOMEM;
				goto out;
			}
			count++;
		}
		if (n->live && after_cursor(n->name, n->len,
					    a->versions ? n->live->generation : INT64_MAX,
					    ckey, cklen, cgen)) {
			if (count >= a->max) {
				if (page_set_next(page, n->name, n->len,
						  a->versions ? n->live->generation - 1 : -1) < 0)
					rc = GST_ENOMEM;
				goto out;
			}
			if (page_add_item(page, &icap, n->live) < 0) {
				rc = GST_ENOMEM;
				goto out;
			}
			count++;
		}
		n = n->next[0];
	}
out:
	pthread_rwlock_unlock(&s->lock);
	free(succ);
	if (rc)
		gst_list_page_release(page);
	return rc;
}

/* --- sessions --------------------------------------------------------- */

static unsigned sess_hash(const char *id)
{
	unsigned h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % SESS_HASH;
}

/* Fold len bytes into the session's checksums, 1 MiB at a time. */
static void sess_hash_bytes(struct gst_sess *ss, const char *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t n = len - off > (1u << 20) ? (1u << 20) : len - off;

		ss->crc = ck_crc32c(ss->crc, p + off, n);
		if (ss->md5_ok)
			ck_md5_update(&ss->md5, p + off, n);
		off += n;
	}
}

/* The hashing thread: hash (or, once the session is over, just drop)
 * queued chunks in order until the queue is empty, then leave. Touches
 * only ss's hashing fields; whoever frees ss drains it first. */
static void *sess_hasher(void *arg)
{
	struct gst_sess *ss = arg;
	struct gst_hjob *j;
	int discard;

	pthread_mutex_lock(&ss->hmu);
	while ((j = ss->hhead) != NULL) {
		ss->hhead = j->next;
		if (!ss->hhead)
			ss->htail = NULL;
		discard = ss->hdiscard;
		pthread_mutex_unlock(&ss->hmu);
		if (!discard)
			sess_hash_bytes(ss, j->data, j->len);
		free(j->buf);
		pthread_mutex_lock(&ss->hmu);
		ss->hqueued -= j->len;
		free(j);
		pthread_cond_broadcast(&ss->hcv);
	}
	ss->hrunning = 0;
	pthread_cond_broadcast(&ss->hcv);
	pthread_mutex_unlock(&ss->hmu);
	return NULL;
}

/* Wait until every queued chunk is hashed (discard: dropped instead) and
 * the hashing thread is joined. ss->mu held, or the last reference. */
static void sess_hash_drain(struct gst_sess *ss, int discard)
{
	pthread_mutex_lock(&ss->hmu);
	if (discard)
		ss->hdiscard = 1;
	while (ss->hrunning)
		pthread_cond_wait(&ss->hcv, &ss->hmu);
	pthread_mutex_unlock(&ss->hmu);
	if (ss->hjoin) {
		pthread_join(ss->hth, NULL);
		ss->hjoin = 0;
	}
}

static void sess_free_bytes(struct gst_sess *ss)
{
	sess_hash_drain(ss, 1);
	free(ss->buf);
	ss->buf = NULL;
	ss->cap = 0;
	if (ss->fd >= 0)
		close(ss->fd);
	ss->fd = -1;
	if (ss->md5_ok)
		ck_md5_release(&ss->md5);
	ss->md5_ok = 0;
}

void gst_sess_unref(struct gst_sess *ss)
{
	if (!ss || atomic_fetch_sub(&ss->refs, 1) != 1)
		return;
	sess_free_bytes(ss);
	free(ss->path);
	free(ss->bucket);
	free(ss->name);
	free(ss->upload_ctype);
	json_decref(ss->meta);
	pthread_cond_destroy(&ss->hcv);
	pthread_mutex_destroy(&ss->hmu);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

static struct gst_sess *sess_alloc(const char *id, const char *bucket, const char *name)
{
	struct gst_sess *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	atomic_init(&ss->refs, 1);
	pthread_mutex_init(&ss->mu, NULL);
	pthread_mutex_init(&ss->hmu, NULL);
	pthread_cond_init(&ss->hcv, NULL);
	ss->fd = -1;
	ss->total = -1;
	ss->declared_total = -1;
	snprintf(ss->id, sizeof(ss->id), "%s", id);
	ss->bucket = strdup(bucket);
	ss->name = strdup(name);
	if (!ss->bucket || !ss->name) {
		gst_sess_unref(ss);
		return NULL;
	}
	return ss;
}

/* Open (creating) the session's byte file in the data dir. */
static int sess_open_file(struct gst *s, struct gst_sess *ss)
{
	if (!s->dir)
		return 0;
	if (!ss->path && !(ss->path = emf_path_join(s->dir, "sessions", ss->id)))
		return -1;
	ss->fd = open(ss->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	return ss->fd < 0 ? -1 : 0;
}

static void sess_table_add(struct gst *s, struct gst_sess *ss)
{
	unsigned h = sess_hash(ss->id);

	ss->hnext = s->sess[h];
	s->sess[h] = ss;
	s->nsess++;
}

/* Forget sessions that ended a while ago (store lock held, write). A
 * session busy in another thread is skipped: its mutex is only tried, as
 * the lock order is session before store. */
static void sess_prune(struct gst *s)
{
	int64_t now = gst_now_ms();
	size_t i;

	for (i = 0; i < SESS_HASH; i++) {
		struct gst_sess **pp = &s->sess[i];

		while (*pp) {
			struct gst_sess *ss = *pp;
			int drop = 0;

			if (pthread_mutex_trylock(&ss->mu) == 0) {
				drop = ss->state != GST_SESS_ACTIVE && ss->ended_ms &&
				       now - ss->ended_ms >= SESS_PRUNE_AGE_MS;
				pthread_mutex_unlock(&ss->mu);
			}
			if (!drop) {
				pp = &ss->hnext;
				continue;
			}
			*pp = ss->hnext;
			s->nsess--;
			jwrite(s, json_pack("{s:s, s:s}", "t", "sess_del", "id", ss->id));
			gst_sess_unref(ss);
		}
	}
	s->sess_limit = s->nsess * 2 > SESS_PRUNE_MIN ? s->nsess * 2 : SESS_PRUNE_MIN;
}

static int random_id(char out[33])
{
	unsigned char raw[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	int i;

	if (fd < 0 || emf_read_all(fd, raw, sizeof(raw), 0) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

int gst_sess_create(struct gst *s, const char *bucket, const char *name, json_t *meta,
		    const struct gst_cond *c, const char *upload_ctype,
		    int64_t declared_total, struct gst_sess **out)
{
	struct gst_sess *ss = NULL;
	struct gst_bucket *b;
	char id[33];
	int rc = GST_OK;

	if (random_id(id) < 0)
		return GST_EIO;
	ss = sess_alloc(id, bucket, name);
	if (!ss)
		return GST_ENOMEM;
	if (meta)
		ss->meta = json_incref(meta);
	if (c)
		ss->cond = *c;
	if (upload_ctype && !(ss->upload_ctype = strdup(upload_ctype))) {
		gst_sess_unref(ss);
		return GST_ENOMEM;
	}
	ss->declared_total = declared_total;
	ss->total = declared_total;
	ss->created_ms = gst_now_ms();
	ss->state = GST_SESS_ACTIVE;
	ss->md5_ok = ck_md5_init(&ss->md5) == 0;
	if (!ss->md5_ok) {
		gst_sess_unref(ss);
		return GST_ENOMEM;
	}
	if (sess_open_file(s, ss) < 0) {
		gst_sess_unref(ss);
		return GST_EIO;
	}
	if (!s->dir && declared_total > 0 && declared_total <= ((int64_t)1 << 34)) {
		/* reserve once; pages are only touched as bytes arrive */
		ss->buf = malloc((size_t)declared_total);
		if (ss->buf)
			ss->cap = (size_t)declared_total;
	}
	pthread_rwlock_wrlock(&s->lock);
	b = bucket_find(s, bucket);
	if (!b) {
		rc = GST_ENOBUCKET;
		goto out;
	}
	if (s->nsess >= s->sess_limit)
		sess_prune(s);
	sess_table_add(s, ss);
	atomic_fetch_add(&ss->refs, 1);
	jwrite(s, sess_rec(ss));
	*out = ss;
	ss = NULL;
out:
	pthread_rwlock_unlock(&s->lock);
	if (ss) {
		if (ss->path)
			unlink(ss->path);
		gst_sess_unref(ss);
	}
	return rc;
}

struct gst_sess *gst_sess_find(struct gst *s, const char *id)
{
	struct gst_sess *ss;

	pthread_rwlock_rdlock(&s->lock);
	for (ss = s->sess[sess_hash(id)]; ss; ss = ss->hnext)
		if (strcmp(ss->id, id) == 0)
			break;
	if (ss)
		atomic_fetch_add(&ss->refs, 1);
	pthread_rwlock_unlock(&s->lock);
	return ss;
}

/* Store len bytes at ss->persisted (data-dir file or memory buffer)
 * without hashing them or moving ss->persisted. ss->mu held. */
static int sess_store(struct gst *s, struct gst_sess *ss, const void *data, size_t len)
{
	if (s->dir) {
		if (ss->fd < 0 && sess_open_file(s, ss) < 0)
			return GST_EIO;
		if (emf_write_all(ss->fd, data, len, (off_t)ss->persisted, 1) < 0)
			return GST_EIO;
		return GST_OK;
	}
	if (emf_buf_reserve(&ss->buf, &ss->cap, ss->persisted + len, CHUNK_ALIGN) < 0)
		return GST_ENOMEM;
	memcpy(ss->buf + ss->persisted, data, len);
	return GST_OK;
}

int gst_sess_append(struct gst *s, struct gst_sess *ss, const void *data, size_t len)
{
	int rc;

	if (len == 0)
		return GST_OK;
	sess_hash_drain(ss, 0);  /* chunks queued before this one come first */
	rc = sess_store(s, ss, data, len);
	if (rc)
		return rc;
	sess_hash_bytes(ss, data, len);
	ss->persisted += len;
	return GST_OK;
}

int gst_sess_append_owned(struct gst *s, struct gst_sess *ss, char *buf, size_t off,
			  size_t len)
{
	struct gst_hjob *j = NULL;
	int rc, start;

	if (len == 0) {
		free(buf);
		return GST_OK;
	}
	j = malloc(sizeof(*j));
	if (!j) {
		free(buf);
		return GST_ENOMEM;
	}
	rc = sess_store(s, ss, buf + off, len);
	if (rc) {
		free(buf);
		free(j);
		return rc;
	}
	j->next = NULL;
	j->buf = buf;
	j->data = buf + off;
	j->len = len;
	pthread_mutex_lock(&ss->hmu);
	while (ss->hrunning && ss->hqueued >= SESS_HASH_BACKLOG)
		pthread_cond_wait(&ss->hcv, &ss->hmu);
	if (ss->htail)
		ss->htail->next = j;
	else
		ss->hhead = j;
	ss->htail = j;
	ss->hqueued += len;
	start = !ss->hrunning;
	if (start)
		ss->hrunning = 1;
	pthread_mutex_unlock(&ss->hmu);
	if (start) {
		/* the previous thread has left its loop: reap it first */
		if (ss->hjoin) {
			pthread_join(ss->hth, NULL);
			ss->hjoin = 0;
		}
		if (pthread_create(&ss->hth, NULL, sess_hasher, ss) == 0)
			ss->hjoin = 1;
		else
			sess_hasher(ss);  /* no thread: hash here, in order */
	}
	ss->persisted += len;
	return GST_OK;
}

void gst_sess_set_state(struct gst *s, struct gst_sess *ss, int state)
{
	ss->state = state;
	ss->ended_ms = state == GST_SESS_ACTIVE ? 0 : gst_now_ms();
	if (state != GST_SESS_ACTIVE) {
		sess_free_bytes(ss);
		if (ss->path && state != GST_SESS_DONE)
			unlink(ss->path);
	}
	jwrite(s, sess_rec(ss));
}

struct gst_blob *gst_sess_take_blob(struct gst *s, struct gst_sess *ss)
{
	struct gst_blob *b = blob_new();

	if (!b)
		return NULL;
	sess_hash_drain(ss, 0);
	b->len = ss->persisted;
	b->crc32c = ss->crc;
	if (ss->md5_ok) {
		ck_md5_final(&ss->md5, b->md5);
		ss->md5_ok = 0;
	}
	if (s->dir) {
		/* a failed append may have left bytes past what was persisted */
		if (ss->fd >= 0 && ftruncate(ss->fd, (off_t)ss->persisted) < 0) {
			gst_blob_unref(b);
			return NULL;
		}
		if (ss->fd >= 0)
			close(ss->fd);
		ss->fd = -1;
		if (blob_assign_file(s, b) < 0 || rename(ss->path, b->path) < 0 ||
		    blob_map(b) < 0) {
			gst_blob_unref(b);
			return NULL;
		}
		if (!b->len) {
			unlink(b->path);
			free(b->path);
			b->path = NULL;
			b->id = 0;
		}
	} else {
		b->data = ss->buf;
		ss->buf = NULL;
		ss->cap = 0;
	}
	return b;
}

int gst_sess_expire_all(struct gst *s)
{
	struct gst_sess **all = NULL, *ss;
	size_t n = 0, cap = 0, i;
	int cnt = 0;

	pthread_rwlock_rdlock(&s->lock);
	for (i = 0; i < SESS_HASH; i++) {
		for (ss = s->sess[i]; ss; ss = ss->hnext) {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 32;
				struct gst_sess **v = realloc(all, nc * sizeof(*v));

				if (!v)
					break;
				all = v;
				cap = nc;
			}
			atomic_fetch_add(&ss->refs, 1);
			all[n++] = ss;
		}
	}
	pthread_rwlock_unlock(&s->lock);
	for (i = 0; i < n; i++) {
		pthread_mutex_lock(&all[i]->mu);
		if (all[i]->state == GST_SESS_ACTIVE) {
			gst_sess_set_state(s, all[i], GST_SESS_EXPIRED);
			cnt++;
		}
		pthread_mutex_unlock(&all[i]->mu);
		gst_sess_unref(all[i]);
	}
	free(all);
	return cnt;
}

/* --- open / close / reset / recovery ---------------------------------- */

static void drop_all(struct gst *s, int unlink_files)
{
	struct gst_bucket *b, *next;
	size_t i;

	for (b = s->buckets; b; b = next) {
		next = b->next;
		bucket_free(b, unlink_files);
	}
	s->buckets = NULL;
	for (i = 0; i < SESS_HASH; i++) {
		struct gst_sess *ss, *sn;

		for (ss = s->sess[i]; ss; ss = sn) {
			sn = ss->hnext;
			if (unlink_files) {
				pthread_mutex_lock(&ss->mu);
				if (ss->state == GST_SESS_ACTIVE)
					ss->state = GST_SESS_EXPIRED;
				sess_free_bytes(ss);
				if (ss->path)
					unlink(ss->path);
				pthread_mutex_unlock(&ss->mu);
			}
			gst_sess_unref(ss);
		}
		s->sess[i] = NULL;
	}
	s->nsess = 0;
}

void gst_reset(struct gst *s)
{
	pthread_rwlock_wrlock(&s->lock);
	drop_all(s, 1);
	jwrite(s, json_pack("{s:s}", "t", "reset"));
	pthread_rwlock_unlock(&s->lock);
}

void gst_close(struct gst *s)
{
	if (!s)
		return;
	drop_all(s, 0);
	if (s->jfd >= 0)
		close(s->jfd);
	pthread_rwlock_destroy(&s->lock);
	pthread_mutex_destroy(&s->jmu);
	free(s->dir);
	free(s);
}

/* Load-time map of blob id -> blob, so generations sharing a file share
 * one blob. */
struct blobmap {
	struct gst_blob **v;
	size_t n, cap;
};

static struct gst_blob *blobmap_get(struct blobmap *m, uint64_t id)
{
	size_t i;

	/* ids grow monotonically in the journal, so look from the end */
	for (i = m->n; i > 0; i--)
		if (m->v[i - 1]->id == id)
			return m->v[i - 1];
	return NULL;
}

static int blobmap_add(struct blobmap *m, struct gst_blob *b)
{
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 64;
		struct gst_blob **v = realloc(m->v, nc * sizeof(*v));

		if (!v)
			return -1;
		m->v = v;
		m->cap = nc;
	}
	m->v[m->n++] = b;
	return 0;
}

static void blobmap_release(struct blobmap *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		gst_blob_unref(m->v[i]);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int64_t jint(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static int replay_bucket(struct gst *s, const json_t *r)
{
	const char *name = jstr(r, "n");
	struct gst_bucket *b;

	if (!name || strlen(name) >= sizeof(b->info.name))
		return -1;
	b = bucket_find(s, name);
	if (!b) {
		b = bucket_new(name);
		if (!b)
			return -1;
		bucket_link(s, b);
	}
	b->info.versioning = json_is_true(json_object_get(r, "v"));
	b->info.created_ms = jint(r, "c");
	b->info.updated_ms = jint(r, "u");
	b->info.metageneration = jint(r, "m");
	return 0;
}

static int replay_bucket_del(struct gst *s, const json_t *r)
{
	const char *name = jstr(r, "n");
	struct gst_bucket **pp;

	if (!name)
		return -1;
	for (pp = &s->buckets; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->info.name, name) == 0) {
			struct gst_bucket *b = *pp;

			*pp = b->next;
			bucket_free(b, 0);
			return 0;
		}
	}
	return 0;
}

/* The blob a journaled generation names: shared, loaded from its file, or
 * the empty blob. NULL when the file is missing or has the wrong size. */
static struct gst_blob *replay_blob(struct gst *s, struct blobmap *bm, const json_t *r)
{
	const char *id = jstr(r, "blob"), *md5 = jstr(r, "md5");
	int64_t size = jint(r, "size");
	struct gst_blob *b;
	struct stat st;
	uint64_t bid = 0;
	char *end = NULL;
	size_t i;

	if (!id || !md5 || strlen(md5) != 32 || size < 0)
		return NULL;
	if (*id) {
		errno = 0;
		bid = strtoull(id, &end, 16);
		if (errno || *end || bid == 0)
			return NULL;
		b = blobmap_get(bm, bid);
		if (b)
			return b;
	}
	b = blob_new();
	if (!b)
		return NULL;
	b->len = (uint64_t)size;
	b->crc32c = (uint32_t)jint(r, "crc");
	for (i = 0; i < 16; i++) {
		unsigned v;

		if (sscanf(md5 + 2 * i, "%2x", &v) != 1)
			goto fail;
		b->md5[i] = (unsigned char)v;
	}
	if (bid) {
		b->id = bid;
		b->path = emf_path_join(s->dir, "blobs", id);
		if (!b->path)
			goto fail;
		/* A file deleted later in the journal's history is normal (the
		 * generation was deleted too); one missing at the end is not:
		 * drop_missing() reports and drops those. */
		if (stat(b->path, &st) < 0 || (uint64_t)st.st_size != b->len || blob_map(b) < 0)
			b->missing = 1;
		if (bid >= atomic_load(&s->next_blob))
			atomic_store(&s->next_blob, bid + 1);
	} else if (size != 0) {
		goto fail;
	}
	if (blobmap_add(bm, b) < 0)
		goto fail;
	return b;
fail:
	gst_blob_unref(b);
	return NULL;
}

static int replay_obj(struct gst *s, struct blobmap *bm, const json_t *r)
{
	const char *bucket = jstr(r, "b"), *name = jstr(r, "n");
	struct gst_bucket *b;
	struct gst_name *n;
	struct gst_obj *o = NULL, *prev;
	json_t *attrs, *meta;
	size_t idx;
	int i;

	if (!bucket || !name || !(b = bucket_find(s, bucket)))
		return -1;
	o = obj_new(bucket, name);
	if (!o)
		return -1;
	o->generation = jint(r, "g");
	o->metageneration = jint(r, "m");
	o->component_count = (int)jint(r, "cc");
	o->created_ms = jint(r, "c");
	o->updated_ms = jint(r, "u");
	o->deleted_ms = jint(r, "d");
	o->blob = replay_blob(s, bm, r);
	if (!o->blob || o->generation <= 0)
		goto fail;
	gst_blob_ref(o->blob);
	attrs = json_object_get(r, "a");
	for (i = 0; i < GST_NATTR; i++) {
		const char *v = jstr(attrs, gst_attr_key[i]);

		if (v && !(o->attr[i] = strdup(v)))
			goto fail;
	}
	meta = json_object_get(r, "meta");
	if (json_is_object(meta))
		o->metadata = json_incref(meta);
	n = sl_insert(b, name);
	if (!n)
		goto fail;
	if (o->generation > s->last_gen)
		s->last_gen = o->generation;
	blob_link(o->blob);  /* before dropping prev: they may share it */
	prev = name_version(n, o->generation, &idx);
	if (prev) {
		/* same generation again: patched or made noncurrent */
		if (idx == (size_t)-1)
			n->live = NULL;
		else
			name_drop_old(n, idx);
		blob_unlink(prev->blob);
		gst_obj_unref(prev);
	}
	if (o->deleted_ms) {
		if (name_add_old(n, o) < 0) {
			blob_unlink(o->blob);
			name_gc(b, n);
			goto fail;
		}
	} else {
		if (n->live) {  /* a live one the journal never retired */
			blob_unlink(n->live->blob);
			gst_obj_unref(n->live);
		}
		n->live = o;
	}
	return 0;
fail:
	gst_obj_unref(o);
	return -1;
}

static int replay_obj_del(struct gst *s, const json_t *r)
{
	const char *bucket = jstr(r, "b"), *name = jstr(r, "n");
	struct gst_bucket *b;
	struct gst_name *n;
	struct gst_obj *o;
	size_t idx;
	int64_t gen = jint(r, "g");

	if (!bucket || !name || gen <= 0 || !(b = bucket_find(s, bucket)))
		return -1;
	n = sl_find(b, name);
	o = name_version(n, gen, &idx);
	if (!o)
		return 0;
	if (idx == (size_t)-1)
		n->live = NULL;
	else
		name_drop_old(n, idx);
	blob_unlink(o->blob);
	gst_obj_unref(o);
	name_gc(b, n);
	return 0;
}

static void sess_forget(struct gst *s, const char *id)
{
	struct gst_sess **pp, *ss;

	for (pp = &s->sess[sess_hash(id)]; *pp; pp = &(*pp)->hnext) {
		if (strcmp((*pp)->id, id) == 0) {
			ss = *pp;
			*pp = ss->hnext;
			s->nsess--;
			gst_sess_unref(ss);
			return;
		}
	}
}

static int replay_sess(struct gst *s, const json_t *r)
{
	const char *id = jstr(r, "id"), *bucket = jstr(r, "b"), *name = jstr(r, "n");
	struct gst_sess *ss;
	json_t *meta;
	const char *uct, *fm;

	if (!id || strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32 || !bucket || !name)
		return -1;
	sess_forget(s, id);
	ss = sess_alloc(id, bucket, name);
	if (!ss)
		return -1;
	meta = json_object_get(r, "meta");
	if (json_is_object(meta))
		ss->meta = json_incref(meta);
	cond_from_json(&ss->cond, json_object_get(r, "cond"));
	uct = jstr(r, "uct");
	if (uct && !(ss->upload_ctype = strdup(uct))) {
		gst_sess_unref(ss);
		return -1;
	}
	ss->declared_total = jint(r, "dt");
	if (ss->declared_total < -1)
		ss->declared_total = -1;
	ss->total = ss->declared_total;
	ss->created_ms = jint(r, "c");
	ss->state = (int)jint(r, "st");
	if (ss->state < GST_SESS_ACTIVE || ss->state > GST_SESS_EXPIRED)
		ss->state = GST_SESS_EXPIRED;
	ss->result_gen = jint(r, "rg");
	if (ss->state != GST_SESS_ACTIVE)
		ss->ended_ms = gst_now_ms();  /* ages from the restart */
	fm = jstr(r, "fm");
	snprintf(ss->fail_msg, sizeof(ss->fail_msg), "%s", fm ? fm : "");
	ss->path = emf_path_join(s->dir, "sessions", id);
	if (!ss->path) {
		gst_sess_unref(ss);
		return -1;
	}
	sess_table_add(s, ss);
	return 0;
}

/* After replay: give each active session its bytes back from its file. */
static void restore_session_bytes(struct gst *s, struct gst_sess *ss)
{
	struct stat st;
	uint64_t keep;
	char *buf = NULL;
	uint64_t off = 0;

	if (ss->state != GST_SESS_ACTIVE)
		return;
	ss->interrupted = 1;
	ss->md5_ok = ck_md5_init(&ss->md5) == 0;
	if (!ss->md5_ok || sess_open_file(s, ss) < 0 || fstat(ss->fd, &st) < 0)
		goto gone;
	keep = (uint64_t)st.st_size / CHUNK_ALIGN * CHUNK_ALIGN;
	if ((uint64_t)st.st_size != keep && ftruncate(ss->fd, (off_t)keep) < 0)
		goto gone;
	buf = malloc(1u << 20);
	if (!buf)
		goto gone;
	while (off < keep) {
		size_t n = keep - off > (1u << 20) ? (1u << 20) : (size_t)(keep - off);

		if (emf_read_all(ss->fd, buf, n, (off_t)off) < 0)
			goto gone;
		ss->crc = ck_crc32c(ss->crc, buf, n);
		ck_md5_update(&ss->md5, buf, n);
		off += n;
	}
	ss->persisted = keep;
	free(buf);
	return;
gone:
	free(buf);
	fprintf(stderr, "gcs: resumable session %s could not be restored; it is expired\n", ss->id);
	ss->state = GST_SESS_EXPIRED;
	sess_free_bytes(ss);
}

/* After replay: drop generations whose data file is missing or damaged. */
static void drop_missing(struct gst *s)
{
	struct gst_bucket *b;

	for (b = s->buckets; b; b = b->next) {
		struct gst_name *n = b->head->next[0], *next;

		for (; n; n = next) {
			size_t i = 0;

			next = n->next[0];
			while (i < n->nold) {
				struct gst_obj *o = n->old[i];

				if (!o->blob->missing) {
					i++;
					continue;
				}
				fprintf(stderr, "gcs: %s/%s generation %" PRId64 " lost its data file;"
					" dropped\n", b->info.name, n->name, o->generation);
				name_drop_old(n, i);
				blob_unlink(o->blob);
				gst_obj_unref(o);
			}
			if (n->live && n->live->blob->missing) {
				fprintf(stderr, "gcs: %s/%s generation %" PRId64 " lost its data file;"
					" dropped\n", b->info.name, n->name, n->live->generation);
				blob_unlink(n->live->blob);
				gst_obj_unref(n->live);
				n->live = NULL;
			}
			name_gc(b, n);
		}
	}
}

static int replay_line(struct gst *s, struct blobmap *bm, const char *line)
{
	json_error_t jerr;
	json_t *r = json_loads(line, 0, &jerr);
	const char *t;
	int rc = -1;

	if (!r)
		return -1;
	t = jstr(r, "t");
	if (!t)
		rc = -1;
	else if (strcmp(t, "bucket") == 0)
		rc = replay_bucket(s, r);
	else if (strcmp(t, "bucket_del") == 0)
		rc = replay_bucket_del(s, r);
	else if (strcmp(t, "obj") == 0)
		rc = replay_obj(s, bm, r);
	else if (strcmp(t, "obj_del") == 0)
		rc = replay_obj_del(s, r);
	else if (strcmp(t, "sess") == 0)
		rc = replay_sess(s, r);
	else if (strcmp(t, "sess_del") == 0 && jstr(r, "id")) {
		sess_forget(s, jstr(r, "id"));
		rc = 0;
	}
	else if (strcmp(t, "reset") == 0) {
		drop_all(s, 0);
		rc = 0;
	}
	json_decref(r);
	return rc;
}

static int replay(struct gst *s, const char *jpath, char *why, size_t whysz)
{
	FILE *f = fopen(jpath, "re");
	struct blobmap bm = { 0 };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0, skipped = 0;

	if (!f) {
		if (errno == ENOENT)
			return 0;
		snprintf(why, whysz, "open %s: %s", jpath, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (line[n - 1] != '\n')
			break;  /* torn last line: never acknowledged */
		line[n - 1] = '\0';
		if (replay_line(s, &bm, line) < 0) {
			skipped++;
			if (skipped <= 5)
				fprintf(stderr, "gcs: journal line %ld unusable, skipped\n", lineno);
		}
	}
	free(line);
	fclose(f);
	blobmap_release(&bm);
	if (skipped)
		fprintf(stderr, "gcs: %ld journal lines skipped\n", skipped);
	return 0;
}

/* Write the whole state as a fresh journal and switch to it. */
static int compact(struct gst *s, const char *jpath, char *why, size_t whysz)
{
	char *tmp = NULL;
	int fd = -1, rc = -1;
	struct gst_bucket *b;
	size_t i;

	if (asprintf(&tmp, "%s.new", jpath) < 0) {
		tmp = NULL;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	s->jfd = fd;
	for (b = s->buckets; b; b = b->next) {
		struct gst_name *n;

		jwrite(s, bucket_rec(&b->info));
		for (n = b->head->next[0]; n; n = n->next[0]) {
			for (i = 0; i < n->nold; i++)
				jwrite(s, obj_rec(n->old[i]));
			if (n->live)
				jwrite(s, obj_rec(n->live));
		}
	}
	for (i = 0; i < SESS_HASH; i++) {
		struct gst_sess *ss;

		for (ss = s->sess[i]; ss; ss = ss->hnext)
			jwrite(s, sess_rec(ss));
	}
	s->jfd = -1;
	if (s->jwarned || fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, jpath) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		snprintf(why, whysz, "writing %s: %s", jpath, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(tmp);
	return rc;
}

/* Delete files nothing refers to (left by a kill between writing a file
 * and journaling it). */
static void collect_garbage(struct gst *s)
{
	char *d;
	DIR *dir;
	struct dirent *de;
	uint64_t *used = NULL;
	size_t nused = 0, capu = 0;
	struct gst_bucket *b;

	/* blobs: gather ids in use once (O(total generations)) */
	for (b = s->buckets; b; b = b->next) {
		struct gst_name *n;
		size_t i;

		for (n = b->head->next[0]; n; n = n->next[0]) {
			for (i = 0; i <= n->nold; i++) {
				struct gst_obj *o = i < n->nold ? n->old[i] : n->live;

				if (!o || !o->blob->id)
					continue;
				if (nused == capu) {
					size_t nc = capu ? capu * 2 : 256;
					uint64_t *v = realloc(used, nc * sizeof(*v));

					if (!v)
						goto sessions;
					used = v;
					capu = nc;
				}
				used[nused++] = o->blob->id;
			}
		}
	}
	d = emf_path_join(s->dir, "blobs", NULL);
	dir = d ? opendir(d) : NULL;
	while (dir && (de = readdir(dir))) {
		char *end = NULL;
		uint64_t id;
		size_t i;
		int found = 0;

		if (de->d_name[0] == '.')
			continue;
		errno = 0;
		id = strtoull(de->d_name, &end, 16);
		for (i = 0; !errno && *end == '\0' && i < nused && !found; i++)
			found = used[i] == id;
		if (!found) {
			char *p = emf_path_join(s->dir, "blobs", de->d_name);

			if (p)
				unlink(p);
			free(p);
		}
	}
	if (dir)
		closedir(dir);
	free(d);
sessions:
	free(used);
	d = emf_path_join(s->dir, "sessions", NULL);
	dir = d ? opendir(d) : NULL;
	while (dir && (de = readdir(dir))) {
		struct gst_sess *ss = NULL;

		if (de->d_name[0] == '.')
			continue;
		if (strlen(de->d_name) == 32)
			for (ss = s->sess[sess_hash(de->d_name)]; ss; ss = ss->hnext)
				if (strcmp(ss->id, de->d_name) == 0)
					break;
		if (!ss || ss->state != GST_SESS_ACTIVE) {
			char *p = emf_path_join(s->dir, "sessions", de->d_name);

			if (p)
				unlink(p);
			free(p);
		}
	}
	if (dir)
		closedir(dir);
	free(d);
}

struct gst *gst_open(const char *dir, char *why, size_t whysz)
{
	struct gst *s = calloc(1, sizeof(*s));
	char *jpath = NULL, *sub = NULL;
	size_t i;

	if (!s) {
		snprintf(why, whysz, "out of memory");
		return NULL;
	}
	pthread_rwlock_init(&s->lock, NULL);
	pthread_mutex_init(&s->jmu, NULL);
	s->jfd = -1;
	atomic_init(&s->next_blob, 1);
	s->sess_limit = SESS_PRUNE_MIN;
	if (!dir)
		return s;
	s->dir = strdup(dir);
	if (!s->dir || emf_mkdir_p(dir) < 0)
		goto sysfail;
	sub = emf_path_join(dir, "blobs", NULL);
	if (!sub || mkdir_one(sub) < 0)
		goto sysfail;
	free(sub);
	sub = emf_path_join(dir, "sessions", NULL);
	if (!sub || mkdir_one(sub) < 0)
		goto sysfail;
	jpath = emf_path_join(dir, "journal", NULL);
	if (!jpath)
		goto sysfail;
	if (replay(s, jpath, why, whysz) < 0)
		goto fail;
	drop_missing(s);
	for (i = 0; i < SESS_HASH; i++) {
		struct gst_sess *ss;

		for (ss = s->sess[i]; ss; ss = ss->hnext)
			restore_session_bytes(s, ss);
	}
	if (compact(s, jpath, why, whysz) < 0)
		goto fail;
	collect_garbage(s);
	s->jfd = open(jpath, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (s->jfd < 0)
		goto sysfail;
	free(sub);
	free(jpath);
	return s;
sysfail:
	snprintf(why, whysz, "data dir %s: %s", dir, strerror(errno));
fail:
	free(sub);
	free(jpath);
	gst_close(s);
	return NULL;
}
