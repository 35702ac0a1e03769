/* Crash loop for sync/journal.c, SQLite's crash-test idea done with real
 * processes: children run random journal workloads and are killed with
 * SIGKILL at random moments, many times over one database; after each kill
 * the parent reopens it (recovery) and checks it against a model of every
 * acknowledged call: nothing acknowledged is lost, nothing half-done shows,
 * the invariants hold, and draining it always ends empty.
 * ~25 s by default; DURAFS_SOAK=1 runs it for 5 minutes. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/journal.h"

/* ------------------------------------------------------------------------ */
/* The model: what every acknowledged call implies                           */

#define PLEN 256
#define BLEN 32

struct mfile {
	int known;              /* the fid was acknowledged */
	int live;               /* has a path */
	int type;
	char path[PLEN];
	uint64_t version;
	int dirty;
	int has_base;
	char base[BLEN];
};

struct msess {
	uint64_t seq, total, persisted, version;
	uint32_t crc;
};

struct model {
	struct mfile *f;        /* indexed by fid */
	size_t nf;
	struct msess *sess;
	size_t nsess;
	uint64_t *failed, *conflicts;
	size_t nfailed, nconflicts;
	uint64_t *livev;        /* live fids */
	size_t nlive;
	uint64_t acked_calls;   /* acknowledged calls over the whole run */
};

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		abort();
	return q;
}

static struct mfile *mf(struct model *m, uint64_t fid)
{
	if (fid >= m->nf) {
		size_t n = m->nf ? m->nf : 64;

		while (n <= fid)
			n *= 2;
		m->f = xrealloc(m->f, n * sizeof(*m->f));
		memset(m->f + m->nf, 0, (n - m->nf) * sizeof(*m->f));
		m->nf = n;
	}
	return &m->f[fid];
}

static struct msess *sess_find(struct model *m, uint64_t seq)
{
	for (size_t i = 0; i < m->nsess; i++)
		if (m->sess[i].seq == seq)
			return &m->sess[i];
	return NULL;
}

static void sess_del(struct model *m, uint64_t seq)
{
	struct msess *s = sess_find(m, seq);

	if (s)
		*s = m->sess[--m->nsess];
}

static void set_add(uint64_t **v, size_t *n, uint64_t x)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = x;
}

static void set_del(uint64_t *v, size_t *n, uint64_t x)
{
	for (size_t i = 0; i < *n; i++)
		if (v[i] == x) {
			v[i] = v[--(*n)];
			return;
		}
}

static int set_has(const uint64_t *v, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return 1;
	return 0;
}

static void model_free(struct model *m)
{
	free(m->f);
	free(m->sess);
	free(m->failed);
	free(m->conflicts);
	free(m->livev);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------------ */
/* The log the child leaves in shared memory                                 */

enum act {
	A_NEW = 1, A_MKDIR, A_WRITE, A_DIRTY, A_RENAME, A_UNLINK, A_RMDIR,
	A_SETATTR, A_CLAIM, A_UPL_BEGIN, A_UPL_PROGRESS, A_UPL_RESET,
	A_COMPLETE, A_FAIL, A_RETRY_LATER, A_CONFLICT, A_RETRY, A_RESOLVE,
	A_OPEN,
};

struct rec {
	uint32_t act;
	uint32_t acked;         /* 0: about to call, 1: the call returned 0 */
	uint32_t kind;          /* op kind (worker actions) */
	uint32_t crc;
	uint64_t fid, seq, version, a;
	char path[PLEN], path2[PLEN], base[BLEN];
};

#define LOG_MAX 8192

struct shlog {
	uint32_t n;             /* records fully written */
	uint32_t done;          /* the child finished its workload */
	struct rec r[LOG_MAX];
};

static struct shlog *shlog;

/* Append one record; the count moves only once the record is complete, so
 * a SIGKILL never leaves a torn record behind. */
static void log_rec(const struct rec *r)
{
	uint32_t n = shlog->n;

	if (n >= LOG_MAX)
		_exit(4);
	shlog->r[n] = *r;
	__atomic_store_n(&shlog->n, n + 1, __ATOMIC_RELEASE);
}

/* The model after an acknowledged call. */
static void apply(struct model *m, const struct rec *r)
{
	struct mfile *f = r->fid ? mf(m, r->fid) : NULL;
	struct msess *s;
	size_t plen;

	m->acked_calls++;
	switch (r->act) {
	case A_NEW:
	case A_MKDIR:
		memset(f, 0, sizeof(*f));
		f->known = 1;
		f->live = 1;
		f->type = r->act == A_NEW ? JNL_FILE : JNL_DIR;
		snprintf(f->path, PLEN, "%s", r->path);
		f->version = r->act == A_NEW ? 1 : 0;
		f->dirty = r->act == A_NEW;
		set_add(&m->livev, &m->nlive, r->fid);
		break;
	case A_WRITE:
		if (f->live) {
			f->version++;
			f->dirty = 1;
		}
		break;
	case A_DIRTY:
		f->version = r->version;
		if (f->live)
			f->dirty = 1;
		break;
	case A_RENAME:
		plen = strlen(r->path);
		if (f->type == JNL_DIR)
			for (size_t i = 0; i < m->nlive; i++) {
				struct mfile *c = &m->f[m->livev[i]];
				char tmp[PLEN];

				if (strncmp(c->path, r->path, plen) == 0 &&
				    c->path[plen] == '/') {
					snprintf(tmp, PLEN, "%s%s", r->path2,
						 c->path + plen);
					memcpy(c->path, tmp, PLEN);
				}
			}
		snprintf(f->path, PLEN, "%s", r->path2);
		break;
	case A_UNLINK:
	case A_RMDIR:
		if (f->live)
			set_del(m->livev, &m->nlive, r->fid);
		f->live = 0;
		f->path[0] = '\0';
		f->dirty = 0;
		break;
	case A_UPL_BEGIN:
		sess_del(m, r->seq);
		m->sess = xrealloc(m->sess, (m->nsess + 1) * sizeof(*m->sess));
		m->sess[m->nsess++] = (struct msess){ r->seq, r->a, 0, r->version,
						      r->crc };
		break;
	case A_UPL_PROGRESS:
		s = sess_find(m, r->seq);
		if (s)
			s->persisted = r->a;
		break;
	case A_UPL_RESET:
		sess_del(m, r->seq);
		break;
	case A_COMPLETE:
		switch (r->kind) {
		case JNL_OP_WRITE:
			if (f->version <= r->version)
				f->dirty = 0;
			/* fall through */
		case JNL_OP_MKDIR:
		case JNL_OP_SYMLINK:
		case JNL_OP_RENAME:
		case JNL_OP_SETATTR:
			f->has_base = 1;
			snprintf(f->base, BLEN, "%s", r->base);
			break;
		default:
			f->has_base = 0;
			f->base[0] = '\0';
		}
		sess_del(m, r->seq);
		break;
	case A_FAIL:
		set_add(&m->failed, &m->nfailed, r->seq);
		break;
	case A_CONFLICT:
		set_add(&m->conflicts, &m->nconflicts, r->seq);
		f->has_base = 1;
		snprintf(f->base, BLEN, "%s", r->base);
		if (r->kind == JNL_OP_WRITE && f->version <= r->version)
			f->dirty = 0;
		break;
	case A_RETRY:
		set_del(m->failed, &m->nfailed, r->seq);
		break;
	case A_RESOLVE:
		set_del(m->failed, &m->nfailed, r->seq);
		set_del(m->conflicts, &m->nconflicts, r->seq);
		sess_del(m, r->seq);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------------ */
/* The child: random calls, each logged before and after                     */

struct claimed {
	struct jnl_op op;
	int began;              /* upload session begun */
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t rnd_n(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* A random live fid of the given type (0: any), or 0. */
static uint64_t pick(struct model *m, int type)
{
	uint64_t cand[256];
	size_t n = 0;

	for (size_t i = 0; i < m->nlive && n < 256; i++)
		if (!type || m->f[m->livev[i]].type == type)
			cand[n++] = m->livev[i];
	if (n == 0)
		return 0;
	/* Favour recent fids (where most action is) but reach old ones too. */
	return cand[rnd_n(2) ? n - 1 - rnd_n(n < 8 ? n : 8) : rnd_n(n)];
}

/* A directory to put a new name in ("" root), from the live dirs. */
static void pick_parent(struct model *m, char *out, size_t len)
{
	uint64_t d = rnd_n(3) ? pick(m, JNL_DIR) : 0;

	if (d && strlen(m->f[d].path) < 100)
		snprintf(out, len, "%s/", m->f[d].path);
	else
		out[0] = '\0';
}

static int has_live_child(struct model *m, const char *dir)
{
	size_t n = strlen(dir);

	for (size_t i = 0; i < m->nlive; i++) {
		const char *p = m->f[m->livev[i]].path;

		if (strncmp(p, dir, n) == 0 && p[n] == '/')
			return 1;
	}
	return 0;
}

#define CHILD_FAIL(what) do { \
	fprintf(stderr, "child: %s failed: %s\n", (what), e.msg); \
	_exit(3); \
} while (0)

/* Log intent, run call, log the acknowledgement (with its outputs). */
#define CALL(rr, call, what) do { \
	(rr).acked = 0; \
	log_rec(&(rr)); \
	if ((call) != 0) \
		CHILD_FAIL(what); \
	(rr).acked = 1; \
	log_rec(&(rr)); \
	apply(m, &(rr)); \
} while (0)

static void child_step(struct jnl *j, struct model *m, struct claimed *cl,
		       size_t *ncl, unsigned iter, unsigned *counter)
{
	struct rec r;
	struct err e;
	uint64_t fid, seq = 0, v = 0;
	char parent[PLEN];
	unsigned dice = (unsigned)rnd_n(100);

	memset(&r, 0, sizeof(r));
	/* Keep the tree to a few hundred live names: past that, creations
	 * become removals. */
	if (m->nlive > 300 && dice < 18)
		dice = 53 + dice % 6;
	if (dice < 14) {                                   /* new file */
		pick_parent(m, parent, sizeof(parent));
		r.act = A_NEW;
		snprintf(r.path, PLEN, "%sf%u_%u", parent, iter, (*counter)++);
		r.acked = 0;
		log_rec(&r);
		if (jnl_file_new(j, r.path, JNL_FILE, NULL, NULL, 0, 1, &fid, &e))
			CHILD_FAIL("file_new");
		r.fid = fid;
		r.acked = 1;
		log_rec(&r);
		apply(m, &r);
	} else if (dice < 18) {                            /* mkdir */
		pick_parent(m, parent, sizeof(parent));
		r.act = A_MKDIR;
		snprintf(r.path, PLEN, "%sd%u_%u", parent, iter, (*counter)++);
		r.acked = 0;
		log_rec(&r);
		if (jnl_mkdir(j, r.path, 1, &fid, &seq, &e))
			CHILD_FAIL("mkdir");
		r.fid = fid;
		r.seq = seq;
		r.acked = 1;
		log_rec(&r);
		apply(m, &r);
	} else if (dice < 42) {                            /* write */
		r.act = A_WRITE;
		r.fid = pick(m, JNL_FILE);
		if (!r.fid)
			return;
		CALL(r, jnl_write(j, r.fid, 100 + rnd_n(5000), 1,
				  rnd_n(2) ? 0 : 50, &r.seq, &e), "write");
	} else if (dice < 46) {                            /* dirty */
		r.act = A_DIRTY;
		r.fid = pick(m, JNL_FILE);
		if (!r.fid)
			return;
		r.acked = 0;
		log_rec(&r);
		if (jnl_file_dirty(j, r.fid, &v, &e))
			CHILD_FAIL("dirty");
		r.version = v;
		r.acked = 1;
		log_rec(&r);
		apply(m, &r);
	} else if (dice < 53) {                            /* rename */
		r.act = A_RENAME;
		r.fid = pick(m, rnd_n(5) ? JNL_FILE : JNL_DIR);
		if (!r.fid)
			return;
		snprintf(r.path, PLEN, "%s", m->f[r.fid].path);
		/* Files move anywhere; directories to the root (never into
		 * themselves, and paths stay short). */
		pick_parent(m, parent, sizeof(parent));
		if (m->f[r.fid].type == JNL_DIR)
			parent[0] = '\0';
		snprintf(r.path2, PLEN, "%sr%u_%u", parent, iter, (*counter)++);
		CALL(r, jnl_rename(j, r.fid, r.path2, 0, &r.seq, &e), "rename");
	} else if (dice < 59) {                            /* unlink */
		r.act = A_UNLINK;
		r.fid = pick(m, JNL_FILE);
		if (!r.fid)
			return;
		CALL(r, jnl_unlink(j, r.fid, &r.seq, &e), "unlink");
	} else if (dice < 61) {                            /* rmdir */
		r.act = A_RMDIR;
		r.fid = pick(m, JNL_DIR);
		if (!r.fid || has_live_child(m, m->f[r.fid].path))
			return;
		CALL(r, rnd_n(2) ? jnl_rmdir(j, r.fid, &r.seq, &e) :
		     jnl_rmdir_tree(j, r.fid, &r.seq, &e), "rmdir");
	} else if (dice < 64) {                            /* setattr */
		r.act = A_SETATTR;
		r.fid = pick(m, 0);
		if (!r.fid)
			return;
		CALL(r, jnl_setattr(j, r.fid, (int64_t)rnd_n(1000), &r.seq, &e),
		     "setattr");
	} else if (dice < 66 && (m->nfailed || m->nconflicts)) {
		if (m->nfailed && rnd_n(2)) {
			r.act = rnd_n(3) ? A_RETRY : A_RESOLVE;
			r.seq = m->failed[rnd_n(m->nfailed)];
		} else if (m->nconflicts) {
			r.act = A_RESOLVE;
			r.seq = m->conflicts[rnd_n(m->nconflicts)];
		} else {
			return;
		}
		for (size_t i = 0; i < *ncl; i++)
			if (cl[i].op.seq == r.seq)
				return;
		if (r.act == A_RETRY)
			CALL(r, jnl_retry(j, r.seq, &e), "retry");
		else
			CALL(r, jnl_resolve(j, r.seq, &e), "resolve");
	} else if (*ncl < 4 && (*ncl == 0 || rnd_n(3) == 0)) {  /* claim */
		struct jnl_op op;
		int c;

		r.act = A_CLAIM;
		r.acked = 0;
		log_rec(&r);
		c = jnl_claim_next(j, &op, &e);
		if (c < 0)
			CHILD_FAIL("claim");
		if (c == 0)
			return;
		r.seq = op.seq;
		r.acked = 1;
		log_rec(&r);
		cl[*ncl].op = op;
		cl[*ncl].began = op.session != NULL;
		(*ncl)++;
	} else if (*ncl > 0) {                             /* advance a claim */
		size_t k = (size_t)rnd_n(*ncl);
		struct claimed *c = &cl[k];
		unsigned what = (unsigned)rnd_n(100);
		int finished = 1;

		r.seq = c->op.seq;
		r.kind = (uint32_t)c->op.kind;
		r.fid = c->op.fid;
		r.version = c->op.version;
		if (c->op.kind == JNL_OP_WRITE && what < 45) {
			static const unsigned char md5[16] = { 9 };

			finished = 0;
			if (!c->began || rnd_n(8) == 0) {
				char uri[64];

				r.act = A_UPL_BEGIN;
				r.a = 1000 + rnd_n(100000);
				r.crc = (uint32_t)rnd();
				snprintf(uri, sizeof(uri), "http://u/%llu",
					 (unsigned long long)r.seq);
				CALL(r, jnl_upload_begin(j, r.seq, c->op.claim, uri,
							 r.a, r.version, r.crc,
							 md5, &e), "upload_begin");
				c->began = 1;
				c->op.total = r.a;
			} else if (rnd_n(10) == 0) {
				r.act = A_UPL_RESET;
				CALL(r, jnl_upload_reset(j, r.seq, c->op.claim, &e),
				     "upload_reset");
				c->began = 0;
			} else {
				r.act = A_UPL_PROGRESS;
				r.a = rnd_n(c->op.total + 1);
				CALL(r, jnl_upload_progress(j, r.seq, c->op.claim,
							    r.a, &e),
				     "upload_progress");
			}
		} else if (what < 80) {
			r.act = A_COMPLETE;
			snprintf(r.base, BLEN, "g%llu_%u",
				 (unsigned long long)r.seq, (*counter)++);
			CALL(r, jnl_complete(j, r.seq, c->op.claim, r.base, &e),
			     "complete");
		} else if (what < 88) {
			struct err cause;

			r.act = A_RETRY_LATER;
			err_set(&cause, ERR_NET, "reset");
			CALL(r, jnl_retry_later(j, r.seq, c->op.claim,
						(int64_t)rnd_n(30), &cause, &e),
			     "retry_later");
		} else if (what < 95 || c->op.kind != JNL_OP_WRITE) {
			struct err cause;

			r.act = A_FAIL;
			err_set(&cause, ERR_PERM, "denied");
			CALL(r, jnl_fail(j, r.seq, c->op.claim, &cause, &e), "fail");
		} else {
			r.act = A_CONFLICT;
			snprintf(r.base, BLEN, "x%u", (*counter)++);
			CALL(r, jnl_conflict(j, r.seq, c->op.claim, "x.conflict",
					     r.base, &e), "conflict");
		}
		if (finished) {
			jnl_op_release(&c->op);
			cl[k] = cl[--(*ncl)];
		}
	}
}

static void child_main(const char *path, struct model *m, unsigned iter,
		       uint64_t seed, unsigned steps)
{
	struct jnl *j = NULL;
	struct jnl_opts o;
	struct claimed cl[4];
	size_t ncl = 0;
	struct err e;
	struct rec r;
	unsigned counter = 0;

	rng_state = seed | 1;
	memset(&o, 0, sizeof(o));
	memset(&r, 0, sizeof(r));
	r.act = A_OPEN;
	log_rec(&r);
	if (jnl_open(path, &o, &j, NULL, &e) != 0)
		CHILD_FAIL("open");
	for (unsigned i = 0; i < steps; i++)
		child_step(j, m, cl, &ncl, iter, &counter);
	shlog->done = 1;
	if (rnd_n(2)) {
		for (size_t i = 0; i < ncl; i++)
			jnl_op_release(&cl[i].op);
		jnl_close(j);
	}
	_exit(0);   /* half the time without closing: a crash at the end */
}

/* ------------------------------------------------------------------------ */
/* The parent: resolve the call in flight, then compare                      */

static struct jnl_op *find_op(struct jnl_op *v, size_t n, uint64_t seq)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].seq == seq)
			return &v[i];
	return NULL;
}

static int file_is(struct jnl *j, uint64_t fid, struct jnl_file *jf)
{
	struct err e;

	return jnl_file_get(j, fid, jf, &e) == 0;
}

/* The call in flight when the child died: did it take effect? Decided
 * from the journal; if it did, the model applies it. */
static void resolve_inflight(struct jnl *j, struct model *m, struct rec r,
			     struct jnl_op *ops, size_t nops)
{
	struct jnl_file jf;
	struct jnl_op *op = find_op(ops, nops, r.seq);
	struct err e;
	int took = 0;

	memset(&jf, 0, sizeof(jf));
	switch (r.act) {
	case A_NEW:
	case A_MKDIR:
		took = jnl_file_lookup(j, r.path, &r.fid, &e) == 0;
		break;
	case A_WRITE:
		took = file_is(j, r.fid, &jf) &&
		       jf.version == mf(m, r.fid)->version + 1;
		break;
	case A_DIRTY:
		took = file_is(j, r.fid, &jf) &&
		       jf.version == mf(m, r.fid)->version + 1;
		r.version = jf.version;
		break;
	case A_RENAME:
		took = file_is(j, r.fid, &jf) && jf.path &&
		       strcmp(jf.path, r.path2) == 0;
		break;
	case A_UNLINK:
	case A_RMDIR:
		took = file_is(j, r.fid, &jf) && jf.path == NULL;
		break;
	case A_UPL_BEGIN:
		took = op && op->total == r.a && op->persisted == 0 &&
		       op->sess_version == r.version && op->crc32c == r.crc;
		break;
	case A_UPL_PROGRESS:
		took = op && op->persisted == r.a;
		break;
	case A_UPL_RESET:
		took = op && !op->has_sums;
		break;
	case A_COMPLETE:
	case A_RESOLVE:
		took = op == NULL;
		break;
	case A_FAIL:
		took = op && op->state == JNL_FAILED;
		break;
	case A_CONFLICT:
		took = op && op->state == JNL_CONFLICT;
		break;
	case A_RETRY:
		took = op && op->state == JNL_PENDING;
		break;
	default:
		break;   /* claims, setattr, retry_later: no model effect */
	}
	jnl_file_release(&jf);
	if (took) {
		r.acked = 1;
		apply(m, &r);
	}
}

#define VFAIL(...) do { \
	print_message("crash loop, iteration %u: ", iter); \
	print_message(__VA_ARGS__); \
	print_message("\n"); \
	fail(); \
} while (0)

/* Every check of the header comment, on an open journal. */
static void verify(struct jnl *j, struct model *m, unsigned iter)
{
	struct jnl_op *ops = NULL, *op;
	struct jnl_file jf;
	struct err e;
	size_t nops = 0, live = 0, jlive = 0;
	char **stack = NULL;
	size_t nstack = 0;

	if (jnl_check(j, &e) != 0)
		VFAIL("jnl_check: %s", e.msg);
	if (jnl_list_ops(j, JNL_MASK_ALL, 0, &ops, &nops, &e) != 0)
		VFAIL("list: %s", e.msg);
	for (size_t i = 0; i < nops; i++)
		if (ops[i].state == JNL_IN_PROGRESS)
			VFAIL("op %llu still in progress after recovery",
			      (unsigned long long)ops[i].seq);
	for (size_t fid = 1; fid < m->nf; fid++) {
		struct mfile *f = &m->f[fid];

		if (!f->known)
			continue;
		if (!file_is(j, fid, &jf))
			VFAIL("fid %zu (%s) lost", fid, f->path);
		if (f->live != (jf.path != NULL) ||
		    (f->live && strcmp(f->path, jf.path) != 0))
			VFAIL("fid %zu: path %s, expected %s", fid,
			      jf.path ? jf.path : "(none)",
			      f->live ? f->path : "(none)");
		if (jf.version != f->version || jf.dirty != f->dirty)
			VFAIL("fid %zu (%s): version %llu dirty %d, expected "
			      "%llu %d", fid, f->path,
			      (unsigned long long)jf.version, jf.dirty,
			      (unsigned long long)f->version, f->dirty);
		if (f->has_base != (jf.base != NULL) ||
		    (f->has_base && strcmp(f->base, jf.base) != 0))
			VFAIL("fid %zu: base %s, expected %s", fid,
			      jf.base ? jf.base : "(none)",
			      f->has_base ? f->base : "(none)");
		if (f->live && f->dirty && f->type == JNL_FILE) {
			int covered = 0;

			for (size_t i = 0; i < nops; i++)
				if (ops[i].fid == fid &&
				    ops[i].kind == JNL_OP_WRITE &&
				    ops[i].state <= JNL_FAILED)
					covered = 1;
			if (!covered)
				VFAIL("dirty fid %zu (%s) has no write op", fid,
				      f->path);
		}
		live += f->live;
		jnl_file_release(&jf);
	}
	for (size_t i = 0; i < m->nsess; i++) {
		struct msess *s = &m->sess[i];

		op = find_op(ops, nops, s->seq);
		if (!op)
			VFAIL("op %llu with an upload session lost",
			      (unsigned long long)s->seq);
		if (op->total != s->total || op->persisted != s->persisted ||
		    op->sess_version != s->version || op->crc32c != s->crc ||
		    !op->has_sums)
			VFAIL("op %llu: session total %llu persisted %llu, "
			      "expected %llu %llu", (unsigned long long)s->seq,
			      (unsigned long long)op->total,
			      (unsigned long long)op->persisted,
			      (unsigned long long)s->total,
			      (unsigned long long)s->persisted);
	}
	for (size_t i = 0; i < m->nfailed; i++) {
		op = find_op(ops, nops, m->failed[i]);
		if (!op || op->state != JNL_FAILED)
			VFAIL("failed op %llu lost or changed",
			      (unsigned long long)m->failed[i]);
	}
	for (size_t i = 0; i < m->nconflicts; i++) {
		op = find_op(ops, nops, m->conflicts[i]);
		if (!op || op->state != JNL_CONFLICT)
			VFAIL("conflict op %llu lost or changed",
			      (unsigned long long)m->conflicts[i]);
	}
	for (size_t i = 0; i < nops; i++) {
		if (ops[i].state == JNL_FAILED &&
		    !set_has(m->failed, m->nfailed, ops[i].seq))
			VFAIL("op %llu failed but no failure was acknowledged",
			      (unsigned long long)ops[i].seq);
		if (ops[i].state == JNL_CONFLICT &&
		    !set_has(m->conflicts, m->nconflicts, ops[i].seq))
			VFAIL("op %llu in conflict unexpectedly",
			      (unsigned long long)ops[i].seq);
	}
	/* Live files: exactly the model's (walk the tree from the root). */
	stack = xrealloc(NULL, sizeof(char *));
	stack[nstack++] = strdup("");
	while (nstack) {
		char *dir = stack[--nstack];
		struct jnl_file *v = NULL;
		size_t n = 0;

		if (jnl_children(j, dir, &v, &n, &e) != 0)
			VFAIL("children of %s: %s", dir, e.msg);
		for (size_t i = 0; i < n; i++) {
			struct mfile *f = v[i].fid < m->nf ? &m->f[v[i].fid] : NULL;

			if (!f || !f->live || strcmp(f->path, v[i].path) != 0)
				VFAIL("unexpected live file %s (fid %llu)",
				      v[i].path, (unsigned long long)v[i].fid);
			jlive++;
			stack = xrealloc(stack, (nstack + 1) * sizeof(char *));
			stack[nstack++] = strdup(v[i].path);
		}
		jnl_files_free(v, n);
		free(dir);
	}
	free(stack);
	if (jlive != live)
		VFAIL("%zu live files in the journal, %zu in the model", jlive,
		      live);
	jnl_ops_free(ops, nops);
}

/* Run everything to completion in-process: retry failures, resolve
 * conflicts, claim and complete until nothing is left. Proves no op is
 * stuck (a leaked dependency would leave ops unclaimable forever). */
static void drain(struct jnl *j, struct model *m, unsigned iter)
{
	struct jnl_op *ops = NULL, op;
	struct err e;
	struct rec r;
	size_t nops = 0;
	int c, rounds = 0;

	for (;;) {
		if (jnl_list_ops(j, JNL_MASK(JNL_FAILED) | JNL_MASK(JNL_CONFLICT), 0,
				 &ops, &nops, &e) != 0)
			VFAIL("list: %s", e.msg);
		for (size_t i = 0; i < nops; i++) {
			memset(&r, 0, sizeof(r));
			r.seq = ops[i].seq;
			r.act = ops[i].state == JNL_FAILED ? A_RETRY : A_RESOLVE;
			if ((r.act == A_RETRY ? jnl_retry(j, r.seq, &e) :
			     jnl_resolve(j, r.seq, &e)) != 0)
				VFAIL("drain: %s", e.msg);
			apply(m, &r);
		}
		jnl_ops_free(ops, nops);
		while ((c = jnl_claim_next(j, &op, &e)) == 1) {
			memset(&r, 0, sizeof(r));
			r.act = A_COMPLETE;
			r.seq = op.seq;
			r.kind = (uint32_t)op.kind;
			r.fid = op.fid;
			r.version = op.version;
			snprintf(r.base, BLEN, "drain%llu",
				 (unsigned long long)op.seq);
			if (jnl_complete(j, op.seq, op.claim, r.base, &e) != 0)
				VFAIL("drain complete: %s", e.msg);
			apply(m, &r);
			jnl_op_release(&op);
		}
		if (c < 0)
			VFAIL("drain claim: %s", e.msg);
		if (jnl_list_ops(j, JNL_MASK_ALL, 0, &ops, &nops, &e) != 0)
			VFAIL("list: %s", e.msg);
		jnl_ops_free(ops, nops);
		if (nops == 0)
			break;
		/* Only ops waiting for a not_before (retry backoff) remain. */
		if (++rounds > 200)
			VFAIL("drain: %zu ops never became claimable", nops);
		usleep(20000);
	}
	for (size_t fid = 1; fid < m->nf; fid++)
		if (m->f[fid].known && m->f[fid].dirty)
			VFAIL("fid %zu still dirty after a drain", fid);
	verify(j, m, iter);
	/* Nothing references the unlinked files any more: collect them. */
	{
		char **names = NULL;
		size_t nn = 0;
		struct jnl_file jf;

		if (jnl_gc(j, &names, &nn, &e) != 0)
			VFAIL("gc: %s", e.msg);
		jnl_names_free(names, nn);
		for (size_t fid = 1; fid < m->nf; fid++) {
			if (!m->f[fid].known || m->f[fid].live)
				continue;
			if (jnl_file_get(j, fid, &jf, &e) == 0)
				VFAIL("unlinked fid %zu not collected", fid);
			m->f[fid].known = 0;
		}
	}
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_crash_loop(void **state)
{
	const char *soak = getenv("DURAFS_SOAK");
	double budget = soak && *soak && strcmp(soak, "0") != 0 ? 300.0 : 25.0;
	char dir[] = "/tmp/jnlcrash.XXXXXX", path[128], cmd[160];
	struct model m;
	struct jnl *j = NULL;
	struct jnl_recovery rec;
	struct err e;
	double t0 = mono_s();
	unsigned iter, kills = 0, finished = 0, inflight = 0;
	uint64_t requeued = 0, redirtied = 0, seed;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/journal.db", dir);
	shlog = mmap(NULL, sizeof(*shlog), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shlog != MAP_FAILED);
	seed = getenv("JNL_CRASH_SEED") ? strtoull(getenv("JNL_CRASH_SEED"),
						    NULL, 10) :
	       (uint64_t)time(NULL);
	print_message("crash loop: seed %llu (JNL_CRASH_SEED to replay), "
		      "budget %.0f s\n", (unsigned long long)seed, budget);
	rng_state = seed * 2654435761u + 1;
	for (iter = 0; mono_s() - t0 < budget && iter < 100000; iter++) {
		pid_t pid;
		int status;
		uint64_t cseed = rnd();
		unsigned steps = 100 + (unsigned)rnd_n(1500);
		/* Mostly kill within the workload; sometimes right at the
		 * start (recovery), sometimes never. */
		unsigned delay_us = rnd_n(10) == 0 ? (unsigned)rnd_n(3000) :
				    (unsigned)rnd_n(60000);

		shlog->n = 0;
		shlog->done = 0;
		fflush(NULL);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			child_main(path, &m, iter, cseed, steps);
		usleep(delay_us);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			kills++;
		if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			VFAIL("child exited with %d (see its message above)",
			      WEXITSTATUS(status));
		if (WIFEXITED(status))
			finished++;
		/* Replay what the child acknowledged. */
		if (jnl_open(path, NULL, &j, &rec, &e) != 0)
			VFAIL("reopen: %s", e.msg);
		requeued += rec.requeued;
		redirtied += rec.redirtied;
		{
			uint32_t n = __atomic_load_n(&shlog->n, __ATOMIC_ACQUIRE);
			struct jnl_op *ops = NULL;
			size_t nops = 0;

			for (uint32_t i = 0; i < n; i++)
				if (shlog->r[i].acked)
					apply(&m, &shlog->r[i]);
			if (n > 0 && !shlog->r[n - 1].acked &&
			    shlog->r[n - 1].act != A_OPEN &&
			    shlog->r[n - 1].act != A_CLAIM) {
				if (jnl_list_ops(j, JNL_MASK_ALL, 0, &ops, &nops,
						 &e) != 0)
					VFAIL("list: %s", e.msg);
				resolve_inflight(j, &m, shlog->r[n - 1], ops, nops);
				jnl_ops_free(ops, nops);
				inflight++;
			}
		}
		verify(j, &m, iter);
		if (iter % 12 == 11)
			drain(j, &m, iter);
		jnl_close(j);
		j = NULL;
	}
	/* The end: everything still drains to an empty journal. */
	assert_int_equal(jnl_open(path, NULL, &j, &rec, &e), 0);
	verify(j, &m, iter);
	drain(j, &m, iter);
	jnl_close(j);
	print_message("crash loop: %u runs in %.1f s, %u killed, %u finished, "
		      "%u calls in flight at the kill, %llu claims requeued, "
		      "%llu dirty files recovered, %llu calls acknowledged\n",
		      iter, mono_s() - t0, kills, finished, inflight,
		      (unsigned long long)requeued, (unsigned long long)redirtied,
		      (unsigned long long)m.acked_calls);
	assert_true(iter >= 20);
	munmap(shlog, sizeof(*shlog));
	model_free(&m);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_loop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
