/* durafs inode table: inode numbers <-> (parent, name) nodes with lookup
 * counts, generations and a per-node tag; two chained hash tables (by inode
 * number, by parent+name) under one mutex. Contract in durafs/inode.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/inode.h"

struct node {
	uint64_t ino;
	uint64_t parent;        /* 0: detached (or the root) */
	uint64_t nlookup;
	uint64_t gen;
	uint64_t tag;
	int64_t mtime_ns;       /* ino_set_times; 0: not set */
	int64_t ctime_ns;
	uint64_t children;      /* attached or detached nodes whose parent is us */
	uint64_t hash;          /* name hash, valid while attached */
	struct node *next_ino;
	struct node *next_name;
	int attached;           /* in the name table */
	char name[];            /* "" for the root and for detached nodes */
};

struct ino_table {
	pthread_mutex_t lock;
	/* protected by lock: */
	struct node **by_ino;
	size_t ino_cap;         /* power of two */
	struct node **by_name;
	size_t name_cap;        /* power of two */
	size_t count;           /* nodes in by_ino */
	size_t named;           /* nodes in by_name */
	uint64_t next_ino;
	uint64_t next_gen;
	struct node *root;
};

#define INIT_CAP 1024u

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t name_hash(uint64_t parent, const char *name)
{
	uint64_t h = 1469598103934665603ULL ^ mix64(parent);
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return mix64(h);
}

static struct node *find_ino(struct ino_table *t, uint64_t ino)
{
	struct node *n = t->by_ino[mix64(ino) & (t->ino_cap - 1)];

	while (n && n->ino != ino)
		n = n->next_ino;
	return n;
}

static struct node *find_name(struct ino_table *t, uint64_t parent, const char *name,
			      uint64_t h)
{
	struct node *n = t->by_name[h & (t->name_cap - 1)];

	while (n && !(n->hash == h && n->parent == parent && !strcmp(n->name, name)))
		n = n->next_name;
	return n;
}

/* Grow a chained table to twice its size; on allocation failure the table
 * stays as it is (only slower). */
static void grow_ino(struct ino_table *t)
{
	size_t cap = t->ino_cap * 2, i;
	struct node **v = calloc(cap, sizeof(*v));
	struct node *n, *next;

	if (!v)
		return;
	for (i = 0; i < t->ino_cap; i++) {
		for (n = t->by_ino[i]; n; n = next) {
			next = n->next_ino;
			n->next_ino = v[mix64(n->ino) & (cap - 1)];
			v[mix64(n->ino) & (cap - 1)] = n;
		}
	}
	free(t->by_ino);
	t->by_ino = v;
	t->ino_cap = cap;
}

static void grow_name(struct ino_table *t)
{
	size_t cap = t->name_cap * 2, i;
	struct node **v = calloc(cap, sizeof(*v));
	struct node *n, *next;

	if (!v)
		return;
	for (i = 0; i < t->name_cap; i++) {
		for (n = t->by_name[i]; n; n = next) {
			next = n->next_name;
			n->next_name = v[n->hash & (cap - 1)];
			v[n->hash & (cap - 1)] = n;
		}
	}
	free(t->by_name);
	t->by_name = v;
	t->name_cap = cap;
}

static void link_ino(struct ino_table *t, struct node *n)
{
	size_t b = mix64(n->ino) & (t->ino_cap - 1);

	n->next_ino = t->by_ino[b];
	t->by_ino[b] = n;
	t->count++;
	if (t->count > t->ino_cap)
		grow_ino(t);
}

static void unlink_ino(struct ino_table *t, struct node *n)
{
	struct node **pp = &t->by_ino[mix64(n->ino) & (t->ino_cap - 1)];

	while (*pp && *pp != n)
		pp = &(*pp)->next_ino;
	if (*pp) {
		*pp = n->next_ino;
		t->count--;
	}
	n->next_ino = NULL;
}

static void link_name(struct ino_table *t, struct node *n)
{
	size_t b;

	n->hash = name_hash(n->parent, n->name);
	b = n->hash & (t->name_cap - 1);
	n->next_name = t->by_name[b];
	t->by_name[b] = n;
	n->attached = 1;
	t->named++;
	if (t->named > t->name_cap)
		grow_name(t);
}

static void unlink_name(struct ino_table *t, struct node *n)
{
	struct node **pp;

	if (!n->attached)
		return;
	pp = &t->by_name[n->hash & (t->name_cap - 1)];
	while (*pp && *pp != n)
		pp = &(*pp)->next_name;
	if (*pp) {
		*pp = n->next_name;
		t->named--;
	}
	n->next_name = NULL;
	n->attached = 0;
}

/* Free n if nothing holds it any more, then its ancestors likewise. */
static void maybe_free(struct ino_table *t, struct node *n)
{
	while (n && n != t->root && n->nlookup == 0 && n->children == 0) {
		struct node *parent = n->parent ? find_ino(t, n->parent) : NULL;

		unlink_name(t, n);
		unlink_ino(t, n);
		free(n);
		if (!parent)
			break;
		parent->children--;
		n = parent;
	}
}

int ino_table_new(struct ino_table **out)
{
	struct ino_table *t = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		goto out;
	t->ino_cap = INIT_CAP;
	t->name_cap = INIT_CAP;
	t->by_ino = calloc(t->ino_cap, sizeof(*t->by_ino));
	t->by_name = calloc(t->name_cap, sizeof(*t->by_name));
	t->root = calloc(1, sizeof(*t->root) + 1);
	if (!t->by_ino || !t->by_name || !t->root)
		goto out;
	if (pthread_mutex_init(&t->lock, NULL) != 0)
		goto out;
	t->root->ino = INO_ROOT;
	t->root->gen = 1;
	t->root->attached = 0;
	t->next_ino = INO_ROOT + 1;
	t->next_gen = 2;
	link_ino(t, t->root);
	*out = t;
	t = NULL;
	rc = 0;
out:
	if (t) {
		free(t->by_ino);
		free(t->by_name);
		free(t->root);
		free(t);
	}
	return rc;
}

void ino_table_free(struct ino_table *t)
{
	size_t i;
	struct node *n, *next;

	if (!t)
		return;
	for (i = 0; i < t->ino_cap; i++) {
		for (n = t->by_ino[i]; n; n = next) {
			next = n->next_ino;
			free(n);
		}
	}
	free(t->by_ino);
	free(t->by_name);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* A node that can be a parent: the root, or an attached node whose chain of
 * parents reaches the root. */
static int reachable(struct ino_table *t, struct node *n)
{
	size_t depth = 0;

	while (n && n != t->root) {
		if (!n->attached || ++depth > 4096)
			return 0;
		n = find_ino(t, n->parent);
	}
	return n == t->root;
}

int ino_get(struct ino_table *t, uint64_t parent, const char *name, uint64_t *ino,
	    uint64_t *gen)
{
	struct node *p, *n;
	uint64_t h;
	size_t len;
	int rc = 0;

	if (!name || !*name)
		return -EINVAL;
	len = strlen(name);
	pthread_mutex_lock(&t->lock);
	p = find_ino(t, parent);
	if (!p || !reachable(t, p)) {
		rc = -ENOENT;
		goto out;
	}
	h = name_hash(parent, name);
	n = find_name(t, parent, name, h);
	if (!n) {
		n = calloc(1, sizeof(*n) + len + 1);
		if (!n) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(n->name, name, len + 1);
		n->ino = t->next_ino++;
		n->gen = t->next_gen++;
		n->parent = parent;
		link_ino(t, n);
		link_name(t, n);
		p->children++;
	}
	n->nlookup++;
	*ino = n->ino;
	if (gen)
		*gen = n->gen;
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int ino_find(struct ino_table *t, uint64_t parent, const char *name, uint64_t *ino)
{
	struct node *n;
	int rc = -ENOENT;

	if (!name || !*name)
		return -ENOENT;
	pthread_mutex_lock(&t->lock);
	n = find_name(t, parent, name, name_hash(parent, name));
	if (n) {
		*ino = n->ino;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int ino_exists(struct ino_table *t, uint64_t ino)
{
	int ok;

	pthread_mutex_lock(&t->lock);
	ok = find_ino(t, ino) != NULL;
	pthread_mutex_unlock(&t->lock);
	return ok;
}

void ino_forget(struct ino_table *t, uint64_t ino, uint64_t n)
{
	struct node *nd;

	pthread_mutex_lock(&t->lock);
	nd = find_ino(t, ino);
	if (nd && nd != t->root) {
		nd->nlookup = nd->nlookup > n ? nd->nlookup - n : 0;
		maybe_free(t, nd);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Build the path of n (plus "/child" when child is set) into a malloc'd
 * string; the lock is held. */
static int build_path(struct ino_table *t, struct node *n, const char *child, char **out)
{
	size_t len = 0, parts = 0, depth = 0, pos;
	struct node *c;
	char *s;

	if (child) {
		len += strlen(child);
		parts++;
	}
	for (c = n; c != t->root; c = find_ino(t, c->parent)) {
		if (!c || !c->attached || ++depth > 4096)
			return -ESTALE;
		len += strlen(c->name);
		parts++;
	}
	if (parts > 1)
		len += parts - 1;
	s = malloc(len + 1);
	if (!s)
		return -ENOMEM;
	pos = len;
	s[pos] = '\0';
	if (child) {
		size_t l = strlen(child);

		pos -= l;
		memcpy(s + pos, child, l);
	}
	for (c = n; c != t->root; c = find_ino(t, c->parent)) {
		size_t l = strlen(c->name);

		if (pos < len)
			s[--pos] = '/';
		pos -= l;
		memcpy(s + pos, c->name, l);
	}
	*out = s;
	return 0;
}

int ino_path(struct ino_table *t, uint64_t ino, char **path)
{
	struct node *n;
	int rc;

	*path = NULL;
	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	rc = n ? build_path(t, n, NULL, path) : -ENOENT;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int ino_child_path(struct ino_table *t, uint64_t parent, const char *name, char **path)
{
	struct node *n;
	int rc;

	*path = NULL;
	if (!name || !*name)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	n = find_ino(t, parent);
	rc = n ? build_path(t, n, name, path) : -ENOENT;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int ino_parent(struct ino_table *t, uint64_t ino, uint64_t *parent, char **name)
{
	struct node *n;
	int rc = 0;

	if (name)
		*name = NULL;
	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if (n == t->root) {
		rc = -EINVAL;
		goto out;
	}
	if (!n->attached) {
		rc = -ESTALE;
		goto out;
	}
	*parent = n->parent;
	if (name) {
		*name = strdup(n->name);
		if (!*name)
			rc = -ENOMEM;
	}
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* Take n out of the namespace; the lock is held. Its parent link is kept
 * (children count) until n is freed, so the parent outlives it. */
static void detach(struct ino_table *t, struct node *n)
{
	unlink_name(t, n);
	maybe_free(t, n);
}

int ino_rename(struct ino_table *t, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname)
{
	struct node *n, *dst, *np, *oldp, *moved;
	size_t len;
	int rc = 0;

	if (!name || !*name || !newname || !*newname)
		return -EINVAL;
	len = strlen(newname);
	pthread_mutex_lock(&t->lock);
	np = find_ino(t, newparent);
	if (!np || !reachable(t, np)) {
		rc = -ENOENT;
		goto out;
	}
	n = find_name(t, parent, name, name_hash(parent, name));
	dst = find_name(t, newparent, newname, name_hash(newparent, newname));
	if (n && n == dst)
		goto out;
	if (!n) {
		/* The kernel does not know the source; a node at the
		 * destination is replaced all the same. */
		if (dst)
			detach(t, dst);
		goto out;
	}
	/* Relink n under its new name: it may need a bigger allocation, so
	 * take it out of both tables first. */
	unlink_name(t, n);
	unlink_ino(t, n);
	moved = realloc(n, sizeof(*n) + len + 1);
	if (!moved) {
		/* Keep the old node where it was. */
		link_ino(t, n);
		link_name(t, n);
		rc = -ENOMEM;
		goto out;
	}
	n = moved;
	/* Count n in its new parent first, so that detaching the node it
	 * replaces cannot free that parent. */
	np->children++;
	oldp = find_ino(t, n->parent);
	if (dst)
		detach(t, dst);
	memcpy(n->name, newname, len + 1);
	n->parent = newparent;
	link_ino(t, n);
	link_name(t, n);
	if (oldp) {
		oldp->children--;
		maybe_free(t, oldp);
	}
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void ino_detach(struct ino_table *t, uint64_t parent, const char *name)
{
	struct node *n;

	if (!name || !*name)
		return;
	pthread_mutex_lock(&t->lock);
	n = find_name(t, parent, name, name_hash(parent, name));
	if (n)
		detach(t, n);
	pthread_mutex_unlock(&t->lock);
}

int ino_nlookup(struct ino_table *t, uint64_t ino, uint64_t *cnt)
{
	struct node *n;
	int rc = -ENOENT;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n) {
		*cnt = n->nlookup;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void ino_set_tag(struct ino_table *t, uint64_t ino, uint64_t tag)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n)
		n->tag = tag;
	pthread_mutex_unlock(&t->lock);
}

uint64_t ino_get_tag(struct ino_table *t, uint64_t ino)
{
	struct node *n;
	uint64_t tag = 0;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n)
		tag = n->tag;
	pthread_mutex_unlock(&t->lock);
	return tag;
}

void ino_set_times(struct ino_table *t, uint64_t ino, int64_t mtime_ns, int64_t ctime_ns)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n) {
		if (mtime_ns)
			n->mtime_ns = mtime_ns;
		n->ctime_ns = ctime_ns;
	}
	pthread_mutex_unlock(&t->lock);
}

void ino_get_times(struct ino_table *t, uint64_t ino, int64_t *mtime_ns, int64_t *ctime_ns)
{
	struct node *n;

	*mtime_ns = *ctime_ns = 0;
	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n) {
		*mtime_ns = n->mtime_ns;
		*ctime_ns = n->ctime_ns;
	}
	pthread_mutex_unlock(&t->lock);
}

size_t ino_count(struct ino_table *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
