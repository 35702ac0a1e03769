/* durafs scheduler: upload workers that claim journal ops and carry them
 * out on the backend (resumable uploads, names, directories, conflicts,
 * retries), a housekeeping thread, and the waits behind fsync and
 * `sync --flush`. Contract and policies: include/durafs/sched.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durafs/backend.h"
#include "durafs/clock.h"
#include "durafs/http.h"
#include "durafs/journal.h"
#include "durafs/log.h"
#include "durafs/sched.h"
#include "durafs/stream.h"

#define TAG "sched"

#define SCH_DEFAULT_WORKERS 8
#define SCH_MAX_WORKERS 256
#define SCH_DEFAULT_SMALL_MAX (8u * 1024u * 1024u)
#define SCH_CLAIM_RETRY_MS 1000    /* pause after the journal failed a claim */
#define SCH_STOP_WAKE_MS 20        /* sch_stop repeats its wake-up this often
				    * until every worker has left */
#define SCH_MAX_RESTARTS 3         /* expired sessions restarted per attempt */
#define SCH_PARSE_ATTEMPTS 3       /* ERR_PARSE is retried for this many claims */
#define SCH_STALE_ABORTS 3         /* claims on which a change of the content
				    * abandons the upload; later ones finish
				    * the snapshot they began (a file that
				    * keeps growing still gets uploaded) */
#define SNAP_PREFIX ".snapshot-"   /* tmp_file's names without O_TMPFILE */
#define SCH_CONFLICT_TRIES 100     /* NAME.conflict-T, -2 ... -100 */
#define SCH_FLUSH_TICK_MS 200      /* progress report period of sch_flush */
#define SCH_GC_EVERY 2             /* gc every this many housekeeping rounds */
#define SCH_VER_MAX (BE_ID_MAX + 64)
#define SCH_TRACK_MAX 4096         /* slots of files whose writes are tracked for
				    * appends (a power of 2, at most 4096) */
#define SCH_APPEND_MIN (256u * 1024u) /* committed size from which growth is sent
				    * as an append (compose) rather than whole */
#define SCH_UPDATE_GAP_MS 1000     /* GCS: one update per second per object */
#define SCH_NAME_MAX 255

/* One worker thread and what it is doing (for status and lease renewal). */
struct sch_worker {
	struct sched *s;
	pthread_t th;
	int started;
	unsigned rng;               /* jitter seed; only the worker touches it */
	/* protected by s->mu */
	int busy;                   /* an op is claimed */
	int uploading;              /* it is a write being uploaded */
	uint64_t seq, claim;
	uint32_t attempts;
	char *path;                 /* malloc'd copy while busy */
	uint64_t total, persisted;
	int snapshot;               /* the file is open for writing */
};

/* What the scheduler knows of one file's writes since its last commit
 * (sch_note_write), to tell when its new content only grew. In memory: a
 * restart forgets it, and the next upload is whole. */
struct sch_track {
	uint64_t fid;
	int anchored;               /* a commit of ours happened in this run */
	int claimed;                /* a write of it is being uploaded */
	uint64_t low;               /* lowest offset changed since the content
				     * of the last commit was read (UINT64_MAX:
				     * none) */
	uint64_t low_after;         /* the same since the running upload began */
	int64_t last_update_ms;     /* last remote update of it (monotonic) */
};

struct sched {
	struct jnl *j;
	struct be *b;
	struct sched_opts o;        /* defaults applied; files_dir points to dir */
	char *dir;                  /* files_dir copy */
	atomic_int stopping;        /* workers poll it in upload callbacks */
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* housekeeping sleeps here; stop signals */
	/* protected by mu */
	sched_event_fn ev_fn;
	void *ev_ud;
	sched_open_fn open_fn;
	void *open_ud;
	sched_freeze_fn freeze_fn;
	void *freeze_ud;
	struct sch_track *trk;      /* SCH_TRACK_MAX slots, fid 0 = free */
	int running;                /* threads exist */
	int joining;                /* one sch_stop is joining them */
	int alive;                  /* workers between start and exit */
	struct sched_stats st;
	/* the threads (set up by sch_start, joined by sch_stop) */
	struct sch_worker *w;
	int nw;
	pthread_t hk;
	int hk_started;
	struct stm *stm;            /* streamed uploads, or NULL (no_stream) */
};

/* --- small helpers ---------------------------------------------------------- */

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	if (ts.tv_nsec < 0) {
		ts.tv_nsec += 1000000000L;
		ts.tv_sec--;
	}
	return ts;
}

static int stopping(struct sched *s)
{
	return atomic_load(&s->stopping) != 0;
}

static const char *kind_verb(int kind)
{
	switch (kind) {
	case JNL_OP_WRITE: return "upload";
	case JNL_OP_MKDIR: return "mkdir";
	case JNL_OP_RENAME: return "rename";
	case JNL_OP_UNLINK: return "unlink";
	case JNL_OP_RMDIR: return "rmdir";
	case JNL_OP_SETATTR: return "setattr";
	case JNL_OP_SYMLINK: return "symlink";
	default: return "op";
	}
}

/* A remote version in the journal's text form: "" for "none" (a zero
 * version), else be_version_format. */
static void ver_text(const struct be_version *v, char *buf, size_t len)
{
	if (v->gen == 0 && !v->id[0]) {
		buf[0] = '\0';
		return;
	}
	if (be_version_format(v, buf, len) < 0)
		buf[0] = '\0';
}

/* The version a journal base names. 1: a remote version, 0: none (NULL,
 * "" or a zero version), -1: malformed (ERR_PARSE). */
static int base_version(const char *base, struct be_version *v, struct err *err)
{
	memset(v, 0, sizeof(*v));
	if (!base || !*base)
		return 0;
	if (be_version_parse(base, v) < 0)
		return err_set(err, ERR_PARSE, "the journal holds a malformed remote "
			       "version \"%.100s\"", base);
	return v->gen == 0 && !v->id[0] ? 0 : 1;
}

/* The write guard for a journal base. */
static int guard_for(const char *base, struct be_pre *pre, struct err *err)
{
	int r;

	memset(pre, 0, sizeof(*pre));
	r = base_version(base, &pre->ver, err);
	if (r < 0)
		return -1;
	pre->kind = r ? BE_PRE_MATCH : BE_PRE_ABSENT;
	return 0;
}

/* Whether an error is worth another attempt later (see sched.h). */
static int err_transient(const struct err *e, uint32_t attempts)
{
	switch (e->code) {
	case ERR_NET:
	case ERR_TIMEOUT:
	case ERR_RATE:
	case ERR_GONE:
	case ERR_AUTH:
	case ERR_QUOTA:
	case ERR_NOMEM:
		return 1;
	case ERR_HTTP:
		return e->http_status == 0 || e->http_status >= 500 ||
		       e->http_status == 408 || e->http_status == 429;
	case ERR_PARSE:
		return attempts < SCH_PARSE_ATTEMPTS;
	default:
		return 0;
	}
}

/* *dst = *src with "<verb> \"<path>\": " in front unless the message names
 * the path already, and Google's reason appended when the message lacks it. */
static void make_cause(struct err *dst, const struct err *src, const char *verb,
		       const char *path)
{
	char msg[sizeof(dst->msg)];

	*dst = *src;
	if (!dst->code)
		dst->code = ERR_IO;
	/* Quota and rate reasons: what happened and what to do, in words. */
	if (be_err_advise(dst, src, verb, path))
		return;
	if (path && !strstr(dst->msg, path))
		err_prefix(dst, "%s \"%s\"", verb, path);
	if (dst->reason[0] && !strstr(dst->msg, dst->reason)) {
		snprintf(msg, sizeof(msg), "%s (reason: %s)", dst->msg, dst->reason);
		memcpy(dst->msg, msg, sizeof(msg));
	}
}

/* --- outcome of one attempt ----------------------------------------------- */

enum sch_res {
	R_DONE = 1,       /* committed: jnl_complete */
	R_RETRY,          /* transient failure: jnl_retry_later with backoff */
	R_FAIL,           /* permanent failure: jnl_fail */
	R_CONFLICT,       /* conflict copy made: jnl_conflict */
	R_REQUEUE,        /* back to pending now, not an error (stop, stale) */
	R_LOST,           /* the claim is no longer ours: drop the work */
};

struct sch_out {
	int res;
	struct err cause;           /* R_RETRY, R_FAIL: why (message final) */
	char base[SCH_VER_MAX];     /* R_DONE, R_CONFLICT: new remote version */
	int has_base;               /* 0: pass NULL */
	char copy[4096];            /* R_CONFLICT: the conflict copy's path */
	uint64_t bytes;             /* R_DONE of a write: bytes committed */
	int noop;                   /* R_DONE without a remote effect */
};

static void out_done(struct sch_out *out, const struct be_version *v)
{
	out->res = R_DONE;
	out->has_base = 0;
	if (v) {
		ver_text(v, out->base, sizeof(out->base));
		out->has_base = 1;
	}
}

/* A failed remote call: transient or permanent, message completed. */
static void out_error(struct sch_out *out, const struct jnl_op *op, const struct err *e)
{
	out->res = err_transient(e, op->attempts) ? R_RETRY : R_FAIL;
	make_cause(&out->cause, e, kind_verb(op->kind), op->path);
}

/* A permanent failure explained: "<verb> \"<path>\": <why> (<e's message>)",
 * with e's code and reason. */
static void out_fail_why(struct sch_out *out, const struct jnl_op *op, const struct err *e,
			 const char *why)
{
	char detail[sizeof(e->msg)];

	memcpy(detail, e->msg, sizeof(detail));
	out->res = R_FAIL;
	out->cause = *e;
	snprintf(out->cause.msg, sizeof(out->cause.msg), "%s \"%s\": %s (%s)",
		 kind_verb(op->kind), op->path, why, detail);
}

/* An error the journal returned while we worked on a claimed op. */
static void out_journal_error(struct sch_out *out, const struct err *e)
{
	if (e->code == ERR_CANCELED) {
		out->res = R_LOST;
		return;
	}
	out->res = R_RETRY;
	out->cause = *e;
	err_prefix(&out->cause, "journal");
}

/* --- the worker's visible state ------------------------------------------- */

static void worker_set(struct sch_worker *w, const struct jnl_op *op)
{
	char *p = op->path ? strdup(op->path) : NULL;
	sched_open_fn fn;
	void *ud;
	int snap = 0;

	pthread_mutex_lock(&w->s->mu);
	fn = w->s->open_fn;
	ud = w->s->open_ud;
	pthread_mutex_unlock(&w->s->mu);
	if (fn && op->kind == JNL_OP_WRITE)
		snap = fn(ud, op->fid) ? 1 : 0;
	pthread_mutex_lock(&w->s->mu);
	w->snapshot = snap;
	w->busy = 1;
	w->uploading = 0;
	w->seq = op->seq;
	w->claim = op->claim;
	w->attempts = op->attempts;
	free(w->path);
	w->path = p;
	w->total = op->total ? op->total : op->size;
	w->persisted = op->persisted;
	pthread_mutex_unlock(&w->s->mu);
}

static void worker_upload(struct sch_worker *w, uint64_t total, uint64_t persisted)
{
	pthread_mutex_lock(&w->s->mu);
	w->uploading = 1;
	w->total = total;
	w->persisted = persisted;
	pthread_mutex_unlock(&w->s->mu);
}

static void worker_clear(struct sch_worker *w)
{
	pthread_mutex_lock(&w->s->mu);
	w->busy = 0;
	w->uploading = 0;
	free(w->path);
	w->path = NULL;
	pthread_mutex_unlock(&w->s->mu);
}

static void stat_add(struct sched *s, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&s->mu);
	*field += n;
	pthread_mutex_unlock(&s->mu);
}

static void emit(struct sched *s, int kind, const struct jnl_op *op, const char *path2,
		 const struct err *e)
{
	struct sched_event ev;
	sched_event_fn fn;
	void *ud;

	pthread_mutex_lock(&s->mu);
	fn = s->ev_fn;
	ud = s->ev_ud;
	pthread_mutex_unlock(&s->mu);
	if (!fn)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.op_kind = op->kind;
	ev.seq = op->seq;
	ev.fid = op->fid;
	ev.path = op->path;
	ev.path2 = path2;
	ev.err = e;
	fn(ud, &ev);
}

/* 1 when fid's content version moved past `version` (for a write, the
 * version its claim took). */
static int content_moved(struct sched *s, uint64_t fid, uint64_t version)
{
	struct jnl_file f;
	struct err e;
	int moved = 0;

	memset(&f, 0, sizeof(f));
	if (jnl_file_get(s->j, fid, &f, &e) == 0)
		moved = f.version > version;
	jnl_file_release(&f);
	return moved;
}

/* --- append tracking ----------------------------------------------------------- */

/* fid's slot (mu held), or NULL. The table is direct-mapped (O(1) on every
 * write): with `create`, fid takes its slot from whatever file held it,
 * unless an upload holds that one (NULL: not tracked, which only costs a
 * whole upload later). */
static struct sch_track *trk_find(struct sched *s, uint64_t fid, int create)
{
	struct sch_track *t;

	if (!s->trk || !fid)
		return NULL;
	t = &s->trk[(fid * 0x9e3779b97f4a7c15ULL) >> 52 & (SCH_TRACK_MAX - 1)];
	if (t->fid == fid)
		return t;
	if (!create || (t->fid && t->claimed))
		return NULL;
	memset(t, 0, sizeof(*t));
	t->fid = fid;
	t->low = UINT64_MAX;
	t->low_after = UINT64_MAX;
	return t;
}

void sch_note_write(struct sched *s, uint64_t fid, uint64_t off)
{
	struct sch_track *t;

	pthread_mutex_lock(&s->mu);
	t = trk_find(s, fid, 0);
	if (t) {
		if (off < t->low)
			t->low = off;
		if (t->claimed && off < t->low_after)
			t->low_after = off;
	}
	pthread_mutex_unlock(&s->mu);
	stm_note_write(s->stm, fid, off);
}

void sch_note_write_end(struct sched *s, uint64_t fid, uint64_t off)
{
	stm_note_write_end(s->stm, fid, off);
}

/* A write of fid is about to read its content: later changes count for
 * the next commit. *low = changes since the last commit (UINT64_MAX: none,
 * 0 also when nothing is known), *last_ms its time. */
static void trk_claim(struct sched *s, uint64_t fid, uint64_t *low, int64_t *last_ms)
{
	struct sch_track *t;

	pthread_mutex_lock(&s->mu);
	t = trk_find(s, fid, 1);
	*low = 0;
	*last_ms = 0;
	if (t) {
		t->claimed = 1;
		t->low_after = UINT64_MAX;
		if (t->anchored)
			*low = t->low;
		*last_ms = t->last_update_ms;
	}
	pthread_mutex_unlock(&s->mu);
}

/* The write's attempt ended: committed (res R_DONE), conflicted (the
 * remote now holds another version) or not. */
static void trk_done(struct sched *s, uint64_t fid, int res)
{
	struct sch_track *t;

	pthread_mutex_lock(&s->mu);
	t = trk_find(s, fid, 0);
	if (t && t->claimed) {
		t->claimed = 0;
		if (res == R_DONE) {
			t->anchored = 1;
			t->low = t->low_after;
			t->last_update_ms = clk_mono_ms();
		} else if (res == R_CONFLICT) {
			t->anchored = 0;
			t->low = UINT64_MAX;
		}
	}
	pthread_mutex_unlock(&s->mu);
}

/* --- uploads ----------------------------------------------------------------- */

struct upl_ctx {
	struct sch_worker *w;
	const struct jnl_op *op;
	int persist;                /* record the session in the journal */
	uint64_t version;           /* content version being sent */
	char session[BE_SESSION_MAX];  /* the session the journal holds */
	uint64_t recorded;          /* the offset the journal holds */
	int resuming;               /* started from the stored session */
	int resumed;                /* ...and the server still had it */
	int stopped;                /* sch_stop asked us to leave */
	int stale;                  /* the content changed meanwhile */
	int streamed;               /* finishing a session streamed while the
				     * file was written */
	struct err jerr;            /* a journal error stopped us */
};

static void upl_ctx_init(struct upl_ctx *c, struct sch_worker *w, const struct jnl_op *op,
			 int persist)
{
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->op = op;
	c->persist = persist;
	c->version = op->version;
}

/* be_upload_file's on_state: persist the session and offsets, publish
 * progress, and stop at a chunk boundary on sch_stop or changed content.
 * A finished upload is never stopped (it is committed). */
static int upl_on_state(void *ud, const struct be_upload *up)
{
	struct upl_ctx *c = ud;
	struct sched *s = c->w->s;
	const struct jnl_op *op = c->op;
	struct err e;

	err_clear(&e);
	if (c->persist && up->session[0] && strcmp(up->session, c->session) != 0) {
		if (jnl_upload_begin(s->j, op->seq, op->claim, up->session, up->meta.size,
				     op->version, up->meta.crc32c, up->meta.md5, &e) < 0) {
			c->jerr = e;
			return up->done ? 0 : 1;
		}
		snprintf(c->session, sizeof(c->session), "%s", up->session);
		c->recorded = 0;
	}
	if (c->resuming && !c->resumed && up->session[0] && op->session &&
	    strcmp(up->session, op->session) == 0) {
		c->resumed = 1;
		stat_add(s, &s->st.sessions_resumed, 1);
		log_debug(TAG, "upload \"%s\": resuming its session at %" PRIu64 " of %"
			  PRIu64 " bytes", op->path, up->persisted, up->meta.size);
	}
	if (c->persist && up->session[0] && !up->done && up->persisted != c->recorded) {
		if (jnl_upload_progress(s->j, op->seq, op->claim, up->persisted, &e) < 0) {
			c->jerr = e;
			return 1;
		}
		c->recorded = up->persisted;
	}
	worker_upload(c->w, up->meta.size, up->persisted);
	if (up->done)
		return 0;
	if (stopping(s)) {
		c->stopped = 1;
		return 1;
	}
	if (op->attempts <= SCH_STALE_ABORTS && !c->w->snapshot &&
	    content_moved(s, op->fid, c->version)) {
		c->stale = 1;
		return 1;
	}
	return 0;
}

/* Forget the op's session in the journal, cancelling it remotely first
 * when `cancel` (best effort). -1 when the journal refused (out set). */
static int drop_session(struct sched *s, const struct jnl_op *op, const char *session,
			int cancel, struct sch_out *out)
{
	struct be_upload up;
	struct err e;

	err_clear(&e);
	if (cancel && session && *session && strlen(session) < sizeof(up.session)) {
		memset(&up, 0, sizeof(up));
		memcpy(up.session, session, strlen(session) + 1);
		snprintf(up.path, sizeof(up.path), "%s", op->path);
		if (be_upload_cancel(s->b, &up, &e) < 0)
			log_debug(TAG, "upload \"%s\": cancelling the abandoned session: %s",
				  op->path, e.msg);
		err_clear(&e);
	}
	if (jnl_upload_reset(s->j, op->seq, op->claim, &e) < 0) {
		out_journal_error(out, &e);
		return -1;
	}
	return 0;
}

/* Open the op's cache file read-only. -1 with out set (a missing file is
 * permanent: nothing else can bring the content back). */
static int open_cache(struct sched *s, const struct jnl_op *op, struct sch_out *out)
{
	char path[4096 + 512];
	struct err e;
	int fd;

	err_clear(&e);
	if (!op->cache_name || !*op->cache_name) {
		err_set(&e, ERR_NOTFOUND, "the journal has no cache file for it");
		goto fail;
	}
	if (strchr(op->cache_name, '/') || strcmp(op->cache_name, ".") == 0 ||
	    strcmp(op->cache_name, "..") == 0) {
		err_set(&e, ERR_INVAL, "bad cache file name \"%.200s\" in the journal",
			op->cache_name);
		goto fail;
	}
	if (snprintf(path, sizeof(path), "%s/%s", s->dir, op->cache_name) >= (int)sizeof(path)) {
		err_set(&e, ERR_INVAL, "cache file path too long");
		goto fail;
	}
	do {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	} while (fd < 0 && errno == EINTR);
	if (fd >= 0)
		return fd;
	if (errno == ENOENT) {
		err_set(&e, ERR_NOTFOUND, "its cache file %s is missing", path);
	} else {
		err_sys(&e, "cannot open its cache file %s", path);
		if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
			out->res = R_RETRY;
			make_cause(&out->cause, &e, "upload", op->path);
			return -1;
		}
	}
fail:
	out->res = R_FAIL;
	make_cause(&out->cause, &e, "upload", op->path);
	return -1;
}

/* After a failed be_upload_file of the op's own upload (not a conflict):
 * sort out why. `up` is the state it left. */
static void upload_failed(struct sched *s, const struct jnl_op *op, struct upl_ctx *c,
			  const struct be_upload *up, const struct err *e, struct sch_out *out)
{
	if (c->jerr.code) {
		out_journal_error(out, &c->jerr);
		return;
	}
	if (c->stale || (!c->stopped && (e->code == ERR_INVAL || e->code == ERR_PARSE ||
					 e->code == ERR_IO) &&
			 content_moved(s, op->fid, c->version))) {
		/* The content changed under the upload (the server's checksum
		 * refusal or a short read says so): start over with the new one.
		 * Transient failures are retried as such: the next claim sees
		 * the new content and starts a new session then. */
		log_debug(TAG, "upload \"%s\": the file changed while it was uploaded; "
			  "starting again with the new content", op->path);
		if (drop_session(s, op, up->session, !up->done, out) < 0)
			return;
		if (c->session[0])
			stat_add(s, &s->st.sessions_restarted, 1);
		out->res = R_REQUEUE;
		return;
	}
	if (c->stopped && e->code == ERR_CANCELED) {
		out->res = R_REQUEUE;  /* the session stays for the next claim */
		return;
	}
	if (c->streamed && (e->code == ERR_PARSE || e->code == ERR_INVAL)) {
		/* The server refused the streamed bytes with the file's sums
		 * (they differ: a change streaming did not see): upload the
		 * file whole on the next claim. */
		log_info(TAG, "upload \"%s\": the streamed part differs from the file (%s); "
			 "uploading it whole", op->path, e->msg);
		if (drop_session(s, op, up->session, !up->done, out) < 0)
			return;
		stat_add(s, &s->st.sessions_restarted, 1);
		out->res = R_REQUEUE;
		return;
	}
	if (e->code == ERR_GONE || e->code == ERR_PARSE || e->code == ERR_INVAL) {
		/* The session is dead or its content refused: a new one next time. */
		if (drop_session(s, op, NULL, 0, out) < 0)
			return;
	}
	out_error(out, op, e);
}

/* Upload the op's cache file (fd, meta) to `path` guarded by pre with a
 * fresh be_upload. persist: record the session as the op's. Returns 0
 * (committed, *ent = the new entry), or -1 with *e and c's flags. */
static int upload_to(struct sch_worker *w, const struct jnl_op *op, const char *path,
		     int fd, const struct be_meta *meta, const struct be_pre *pre,
		     int persist, uint64_t version, struct upl_ctx *c, struct be_upload *up,
		     struct be_entry *ent, struct err *e)
{
	struct sched *s = w->s;

	upl_ctx_init(c, w, op, persist);
	c->version = version;
	memset(up, 0, sizeof(*up));
	up->chunk_size = s->o.chunk_size;
	be_entry_release(ent);
	err_clear(e);
	worker_upload(w, meta->size, 0);
	return be_upload_file(s->b, path, fd, meta, pre, s->o.small_max, SCH_MAX_RESTARTS,
			      up, upl_on_state, c, ent, e);
}

/* `path` with ".conflict-<stamp>" (and "-n" when n > 1) appended to its
 * last component, cut so that component stays within 255 bytes (never in
 * the middle of a UTF-8 sequence). */
static int conflict_path(const char *path, const char *stamp, int n, char *buf, size_t len)
{
	const char *base = be_basename(path);
	size_t dirlen = (size_t)(base - path), blen = strlen(base), slen;
	char suffix[64];

	if (n > 1)
		snprintf(suffix, sizeof(suffix), ".conflict-%s-%d", stamp, n);
	else
		snprintf(suffix, sizeof(suffix), ".conflict-%s", stamp);
	slen = strlen(suffix);
	if (blen + slen > SCH_NAME_MAX) {
		blen = SCH_NAME_MAX - slen;
		while (blen > 0 && ((unsigned char)base[blen] & 0xC0) == 0x80)
			blen--;
	}
	if (dirlen + blen + slen + 1 > len)
		return -1;
	memcpy(buf, path, dirlen);
	memcpy(buf + dirlen, base, blen);
	memcpy(buf + dirlen + blen, suffix, slen + 1);
	return 0;
}

static void utc_stamp(char *buf, size_t len)
{
	struct tm tm;
	time_t now = time(NULL);

	gmtime_r(&now, &tm);
	strftime(buf, len, "%Y%m%dT%H%M%SZ", &tm);
}

/* Creates one candidate conflict copy: 0, or -1 with *e (ERR_CONFLICT:
 * the name is taken). */
typedef int (*copy_fn)(struct sch_worker *w, const struct jnl_op *op, const char *path,
		       void *ud, struct err *e);

struct file_copy {
	int fd;
	const struct be_meta *meta;
	struct upl_ctx c;
	struct be_upload up;
};

static int copy_file(struct sch_worker *w, const struct jnl_op *op, const char *path,
		     void *ud, struct err *e)
{
	struct file_copy *fc = ud;
	struct be_pre pre;
	struct be_entry ent;
	int rc;

	memset(&pre, 0, sizeof(pre));
	memset(&ent, 0, sizeof(ent));
	pre.kind = BE_PRE_ABSENT;
	rc = upload_to(w, op, path, fc->fd, fc->meta, &pre, 0, op->version, &fc->c, &fc->up,
		       &ent, e);
	be_entry_release(&ent);
	return rc;
}

static int copy_symlink(struct sch_worker *w, const struct jnl_op *op, const char *path,
			void *ud, struct err *e)
{
	struct be_pre pre;
	struct timespec mt = ns_to_ts(op->mtime_ns);
	int rc;

	(void)ud;
	memset(&pre, 0, sizeof(pre));
	pre.kind = BE_PRE_ABSENT;
	err_clear(e);
	rc = be_symlink(w->s->b, path, op->target, &mt, &pre, NULL, e);
	return rc;
}

/* Keep-both: commit the local version under a free conflict name and
 * record the conflict with the remote's current version `cur`. */
static void keep_both(struct sch_worker *w, const struct jnl_op *op,
		      const struct be_entry *cur, copy_fn fn, void *ud, struct sch_out *out)
{
	struct sched *s = w->s;
	char stamp[32], remote[SCH_VER_MAX];
	struct err e;
	int n;

	utc_stamp(stamp, sizeof(stamp));
	for (n = 1; n <= SCH_CONFLICT_TRIES; n++) {
		if (conflict_path(op->path, stamp, n, out->copy, sizeof(out->copy)) < 0) {
			err_set(&e, ERR_INVAL, "no room for a conflict copy name");
			out_error(out, op, &e);
			return;
		}
		if (fn(w, op, out->copy, ud, &e) == 0)
			break;
		if (e.code == ERR_CONFLICT)
			continue;
		if (e.code == ERR_CANCELED && stopping(s)) {
			out->res = R_REQUEUE;
			return;
		}
		if (e.code == ERR_CANCELED && ud && ((struct file_copy *)ud)->c.stale) {
			out->res = R_REQUEUE;  /* changed again: redo it all */
			return;
		}
		err_prefix(&e, "conflict copy \"%s\"", out->copy);
		out_error(out, op, &e);
		return;
	}
	if (n > SCH_CONFLICT_TRIES) {
		err_set(&e, ERR_EXISTS, "%d conflict copies of it exist already", SCH_CONFLICT_TRIES);
		out_error(out, op, &e);
		return;
	}
	ver_text(&cur->ver, remote, sizeof(remote));
	memcpy(out->base, remote, sizeof(remote));
	out->has_base = 1;
	out->res = R_CONFLICT;
}

/* The current remote entry at path when the conflict report had none
 * (type BE_NONE may also mean "unknown"). 1: exists (*cur), 0: absent,
 * -1: could not tell (out set). */
static int remote_now(struct sched *s, const struct jnl_op *op, struct be_entry *cur,
		      struct sch_out *out)
{
	struct err e;

	if (cur->type != BE_NONE)
		return 1;
	be_entry_release(cur);
	err_clear(&e);
	if (be_stat(s->b, op->path, cur, &e) == 0)
		return 1;
	if (e.code == ERR_NOTFOUND)
		return 0;
	out_error(out, op, &e);
	return -1;
}

/* A write's guard failed: *cur is the remote entry the backend reported. */
static void write_conflict(struct sch_worker *w, const struct jnl_op *op, int fd,
			   const struct be_meta *meta, struct be_entry *cur,
			   const struct err *e, struct sch_out *out)
{
	struct sched *s = w->s;
	struct file_copy fc;
	struct be_pre pre;
	struct be_entry ent;
	struct err e2;
	int r, round;

	memset(&ent, 0, sizeof(ent));
	if (s->o.conflict_fail) {
		out_fail_why(out, op, e, "not uploaded: it changed remotely since this mount "
			     "saw it (conflict=fail: the local version stays in the cache)");
		return;
	}
	/* The op's session (if any) belonged to the refused write. */
	if (drop_session(s, op, NULL, 0, out) < 0)
		return;
	for (round = 0; round < 2; round++) {
		r = remote_now(s, op, cur, out);
		if (r < 0)
			goto done;
		if (r == 1)
			break;
		/* Deleted remotely: nothing to clobber, put ours back. */
		log_warn(TAG, "\"%s\" was deleted remotely while it had local changes; "
			 "uploading the local version again", op->path);
		memset(&pre, 0, sizeof(pre));
		pre.kind = BE_PRE_ABSENT;
		if (upload_to(w, op, op->path, fd, meta, &pre, 1, op->version, &fc.c, &fc.up, &ent,
			      &e2) == 0) {
			out_done(out, &ent.ver);
			out->bytes = meta->size;
			goto done;
		}
		if (e2.code != ERR_CONFLICT) {
			upload_failed(s, op, &fc.c, &fc.up, &e2, out);
			goto done;
		}
		be_entry_release(cur);
		*cur = ent;
		memset(&ent, 0, sizeof(ent));
		if (drop_session(s, op, NULL, 0, out) < 0)
			goto done;
	}
	if (round == 2) {
		/* Created and deleted again under us: look again later. */
		out->res = R_RETRY;
		err_set(&out->cause, ERR_CONFLICT, "upload \"%s\": the remote file keeps "
			"appearing and disappearing", op->path);
		goto done;
	}
	memset(&fc, 0, sizeof(fc));
	fc.fd = fd;
	fc.meta = meta;
	keep_both(w, op, cur, copy_file, &fc, out);
	if (out->res == R_CONFLICT)
		out->bytes = meta->size;
done:
	be_entry_release(&ent);
}

/* Sleep up to ms unless the scheduler stops. */
static void nap(struct sched *s, int64_t ms)
{
	struct timespec ts = clk_mono_after(ms);

	pthread_mutex_lock(&s->mu);
	while (!stopping(s) && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
		;
	pthread_mutex_unlock(&s->mu);
}

/* Append-only growth of a committed file (see sched.h): when the remote
 * still holds the version the op replaces, nothing below its size changed
 * since our last commit of it (sch_note_write) and the local prefix has its
 * crc32c, send only the tail (be_append). Computes *meta (*have_meta = 1)
 * when it gets that far. Returns 1 when the op is settled (out set), 0 to
 * upload the whole file, 2 to upload it guarded by *over (a composite that
 * came out wrong is replaced). */
static int try_append(struct sch_worker *w, const struct jnl_op *op, int fd, uint64_t low,
		      int64_t last_ms, struct be_meta *meta, int *have_meta,
		      struct be_version *over, struct sch_out *out)
{
	struct sched *s = w->s;
	struct be_version base;
	struct be_entry cur, ent;
	uint32_t pcrc = 0, tcrc = 0;
	int64_t gap;
	struct err e;
	int r, rc = 0;

	memset(&cur, 0, sizeof(cur));
	memset(&ent, 0, sizeof(ent));
	err_clear(&e);
	if (!be_can_append(s->b) || op->session || low < SCH_APPEND_MIN ||
	    base_version(op->base, &base, &e) != 1 || base.gen <= 0)
		return 0;
	if (be_stat(s->b, op->path, &cur, &e) < 0 || cur.type != BE_FILE ||
	    !be_version_equal(&cur.ver, &base) || cur.size < SCH_APPEND_MIN ||
	    low < cur.size || !cur.has_crc32c)
		goto out;
	if (be_meta_split_from_fd(fd, cur.size, meta, &pcrc, &tcrc, &e) < 0) {
		out_error(out, op, &e);
		rc = 1;
		goto out;
	}
	*have_meta = 1;
	meta->mtime = ns_to_ts(op->mtime_ns);
	if (meta->size <= cur.size || pcrc != cur.crc32c) {
		log_debug(TAG, "upload \"%s\": not an append of the committed version "
			  "(%" PRIu64 " -> %" PRIu64 " bytes%s); sending it whole", op->path,
			  cur.size, meta->size, pcrc != cur.crc32c ? ", prefix differs" : "");
		goto out;
	}
	gap = last_ms ? last_ms + SCH_UPDATE_GAP_MS - clk_mono_ms() : 0;
	if (gap > 0)
		nap(s, gap);   /* one update per second per object */
	if (stopping(s)) {
		out->res = R_REQUEUE;
		rc = 1;
		goto out;
	}
	worker_upload(w, meta->size - cur.size, 0);
	r = be_append(s->b, op->path, &base, cur.size, tcrc, fd, meta, &ent, &e);
	if (r == 0) {
		log_debug(TAG, "upload \"%s\": appended %" PRIu64 " bytes to the committed %"
			  PRIu64 " (compose)", op->path, meta->size - cur.size, cur.size);
		out_done(out, &ent.ver);
		out->bytes = meta->size - cur.size;
		stat_add(s, &s->st.appends, 1);
		rc = 1;
		goto out;
	}
	if (e.code == ERR_CANCELED && stopping(s)) {
		out->res = R_REQUEUE;
		rc = 1;
		goto out;
	}
	if (e.code == ERR_PARSE && ent.ver.gen > 0) {
		log_warn(TAG, "upload \"%s\": the composed object differs from the local file "
			 "(%s); replacing it with the whole file", op->path, e.msg);
		*over = ent.ver;
		rc = 2;
		goto out;
	}
	log_info(TAG, "upload \"%s\": appending the new tail failed (%s); sending the whole "
		 "file instead", op->path, e.msg);
out:
	be_entry_release(&cur);
	be_entry_release(&ent);
	return rc;
}

/* Remove what a crash left of tmp_file's fallback in dir: a snapshot copy
 * is unlinked as soon as it is created, so a name with SNAP_PREFIX is never
 * anyone's data. Failures are logged, never fatal. */
static void sweep_snapshots(const char *dir)
{
	char path[4096 + 64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	d = opendir(dir);
	if (!d) {
		if (errno != ENOENT)
			log_warn(TAG, "cache dir %s: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, SNAP_PREFIX, strlen(SNAP_PREFIX)))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		if (unlink(path) == 0)
			n++;
		else if (errno != ENOENT)
			log_warn(TAG, "removing the leftover snapshot copy %s: %s", path,
				 strerror(errno));
	}
	closedir(d);
	if (n)
		log_info(TAG, "removed %d snapshot cop%s left by an earlier run in %s", n,
			 n == 1 ? "y" : "ies", dir);
}

/* An unlinked temporary file in dir, open for reading and writing, or -1
 * with errno set. */
static int tmp_file(const char *dir)
{
	char path[4096 + 64];
	int fd;

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	/* A file system without O_TMPFILE: create and unlink at once. */
	if (snprintf(path, sizeof(path), "%s/" SNAP_PREFIX "XXXXXX", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* A snapshot of a file open for writing: replace *fd (its cache file) by a
 * copy of one moment of it that the sched_freeze_fn takes, so that a file
 * rewritten in place while it uploads is still sent whole and untorn (the
 * copy is ours: nothing changes it). Called after trk_claim, so writes
 * during the copy count as changes since the upload began. *fd is left
 * alone when there is no freeze function, the file was
 * closed meanwhile, there is no room for a copy, or the copy failed (the
 * cache file itself is sent then: a torn read fails the server's checksum
 * check and is retried). */
static void snapshot_copy(struct sch_worker *w, const struct jnl_op *op, int *fd)
{
	struct sched *s = w->s;
	sched_freeze_fn fn;
	void *ud;
	struct err e;
	int tmp = -1, r;

	pthread_mutex_lock(&s->mu);
	fn = s->freeze_fn;
	ud = s->freeze_ud;
	pthread_mutex_unlock(&s->mu);
	if (!fn)
		return;
	err_clear(&e);
	tmp = tmp_file(s->dir);
	if (tmp < 0) {
		log_warn(TAG, "upload \"%s\": no temporary file for its snapshot (%s); sending "
			 "the open file itself", op->path, strerror(errno));
		return;
	}
	r = fn(ud, op->fid, tmp, &e);
	if (r == 1) {
		close(*fd);
		*fd = tmp;
		stat_add(s, &s->st.snapshot_copies, 1);
		log_debug(TAG, "upload \"%s\": sending a copy of the open file", op->path);
		return;
	}
	if (r < 0)
		log_warn(TAG, "upload \"%s\": copying the open file for its snapshot: %s; "
			 "sending the file itself", op->path, e.msg);
	close(tmp);
}

/* A streamed upload committed with the mtime its session began with: set
 * the op's (best effort: the content is committed either way). */
static void streamed_mtime(struct sched *s, const struct jnl_op *op, const struct be_meta *meta,
			   struct be_entry *ent)
{
	struct be_entry ent2;
	struct be_attr attr;
	struct err e;

	if (ent->mtime.tv_sec == meta->mtime.tv_sec || !(be_caps(s->b) & BE_CAP_SETATTR))
		return;
	memset(&ent2, 0, sizeof(ent2));
	memset(&attr, 0, sizeof(attr));
	attr.set = BE_ATTR_MTIME;
	attr.mtime = meta->mtime;
	if (be_setattr(s->b, op->path, &ent->ver, &attr, &ent2, &e) < 0) {
		log_info(TAG, "upload \"%s\": setting the mtime of the streamed upload: %s",
			 op->path, e.msg);
		be_entry_release(&ent2);
		return;
	}
	be_entry_release(ent);
	*ent = ent2;
}

/* A session streamed while the op's file was written (stm_take gave it,
 * for size bytes): ask the server what it holds -- without a total, which
 * could complete it unchecked -- and keep it only when less than the file
 * is persisted; then record it as the op's session. 1: *sup is ready to
 * go on with the final size; 0: it was given up (cancelled), upload as
 * usual. */
static int take_stream(struct sched *s, const struct jnl_op *op, uint64_t size,
		       struct be_upload *sup)
{
	static const unsigned char zero[16];
	struct err e;
	int r;

	err_clear(&e);
	memset(&sup->meta, 0, sizeof(sup->meta));
	sup->meta.size = size;
	sup->meta.flags = BE_META_SUMS_LATE | BE_META_SIZE_UNKNOWN;
	r = be_upload_query(s->b, sup, NULL, &e);
	if (r != 0 || sup->persisted >= size) {
		log_debug(TAG, "upload \"%s\": its streamed session cannot be finished (%s); "
			  "uploading it whole", op->path, r < 0 ? e.msg : "not open");
		goto drop;
	}
	sup->meta.flags &= ~(unsigned)BE_META_SIZE_UNKNOWN;
	if (jnl_upload_begin(s->j, op->seq, op->claim, sup->session, size, op->version, 0,
			     zero, &e) < 0) {
		log_debug(TAG, "upload \"%s\": recording its streamed session: %s", op->path,
			  e.msg);
		goto drop;
	}
	return 1;
drop:
	if (r != 1) {
		err_clear(&e);
		be_upload_cancel(s->b, sup, &e);
	}
	memset(sup, 0, sizeof(*sup));
	return 0;
}

static void run_write(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct sched *s = w->s;
	struct be_upload up, sup;
	struct be_sums_prefix seed;
	struct be_meta meta;
	struct be_entry ent;
	struct be_pre pre;
	struct be_version over;
	struct upl_ctx c;
	struct err e;
	uint64_t low;
	int64_t last_ms;
	struct stat st;
	int fd = -1, have_meta = 0, ap = 0, streamed = 0;

	memset(&meta, 0, sizeof(meta));
	memset(&sup, 0, sizeof(sup));
	memset(&seed, 0, sizeof(seed));
	memset(&ent, 0, sizeof(ent));
	memset(&up, 0, sizeof(up));
	memset(&over, 0, sizeof(over));
	err_clear(&e);
	trk_claim(s, op->fid, &low, &last_ms);
	fd = open_cache(s, op, out);
	if (fd < 0)
		goto out;
	if (w->snapshot)
		snapshot_copy(w, op, &fd);
	if (s->stm && op->session) {
		/* The op has a session of its own: a stream is not needed. */
		stm_take(s->stm, op->fid, op->path, op->base, 0, NULL, NULL);
	} else if (s->stm && fstat(fd, &st) == 0 &&
		   stm_take(s->stm, op->fid, op->path, op->base, (uint64_t)st.st_size,
			    &sup, &seed) == 1) {
		/* Finish the session streamed while it was written. */
		streamed = take_stream(s, op, (uint64_t)st.st_size, &sup);
		if (streamed) {
			meta.size = (uint64_t)st.st_size;
			meta.flags = BE_META_SUMS_LATE;
			have_meta = 1;
		}
	}
	if (!streamed)
		ap = try_append(w, op, fd, low, last_ms, &meta, &have_meta, &over, out);
	if (ap == 1)
		goto out;
	if (!have_meta && (be_caps(s->b) & BE_CAP_SUMS_LATE) && fstat(fd, &st) == 0 &&
	    (uint64_t)st.st_size >= s->o.small_max) {
		/* Large: checksums computed while the chunks go out (no pass
		 * over the file before the first byte is sent). */
		meta.size = (uint64_t)st.st_size;
		meta.flags = BE_META_SUMS_LATE;
		have_meta = 1;
	}
	if (!have_meta && be_meta_from_fd(fd, &meta, &e) < 0) {
		out_error(out, op, &e);
		goto out;
	}
	meta.mtime = ns_to_ts(op->mtime_ns);
	if (guard_for(op->base, &pre, &e) < 0) {
		out_error(out, op, &e);
		goto out;
	}
	if (ap == 2) {
		pre.kind = BE_PRE_MATCH;
		pre.ver = over;
	}
	upl_ctx_init(&c, w, op, 1);
	up.chunk_size = s->o.chunk_size;
	if (streamed) {
		up = sup;
		up.meta = meta;
		c.streamed = 1;
		memcpy(c.session, up.session, sizeof(c.session));
		c.recorded = up.persisted;
		log_debug(TAG, "upload \"%s\": finishing its streamed session at %" PRIu64
			  " of %" PRIu64 " bytes (checksums known up to %" PRIu64 ")", op->path,
			  up.persisted, meta.size, seed.md5.ctx ? seed.off : 0);
	} else if (op->session) {
		if (op->has_sums && op->sess_version == op->version && op->total == meta.size &&
		    op->crc32c == meta.crc32c && memcmp(op->md5, meta.md5, 16) == 0 &&
		    strlen(op->session) < sizeof(up.session) &&
		    strlen(op->path) < sizeof(up.path)) {
			memcpy(up.session, op->session, strlen(op->session) + 1);
			memcpy(up.path, op->path, strlen(op->path) + 1);
			up.meta = meta;
			up.persisted = op->persisted;
			memcpy(c.session, up.session, sizeof(c.session));
			c.recorded = op->persisted;
			c.resuming = 1;
		} else {
			log_debug(TAG, "upload \"%s\": the content changed since its session "
				  "began; starting a new one", op->path);
			if (drop_session(s, op, NULL, 0, out) < 0)
				goto out;
			stat_add(s, &s->st.sessions_restarted, 1);
		}
	}
	worker_upload(w, meta.size, c.resuming ? op->persisted : up.persisted);
	if (be_upload_file_seeded(s->b, op->path, fd, &meta, &pre, s->o.small_max,
				  SCH_MAX_RESTARTS, &up, upl_on_state, &c, &ent,
				  streamed ? &seed : NULL, &e) == 0) {
		if (streamed) {
			streamed_mtime(s, op, &meta, &ent);
			stat_add(s, &s->st.streamed, 1);
			stat_add(s, &s->st.streamed_bytes, sup.persisted);
		}
		out_done(out, &ent.ver);
		out->bytes = meta.size;
		goto out;
	}
	if (e.code == ERR_CONFLICT && !c.jerr.code) {
		write_conflict(w, op, fd, &meta, &ent, &e, out);
		goto out;
	}
	upload_failed(s, op, &c, &up, &e, out);
out:
	be_sums_prefix_release(&seed);
	trk_done(s, op->fid, out->res);
	be_entry_release(&ent);
	if (fd >= 0)
		close(fd);
}

/* --- the other kinds -------------------------------------------------------- */

static void run_mkdir(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct be_entry ent;
	struct err e;

	memset(&ent, 0, sizeof(ent));
	err_clear(&e);
	if (be_mkdir(w->s->b, op->path, &ent, &e) == 0)
		out_done(out, &ent.ver);
	else if (e.code == ERR_EXISTS)
		out_fail_why(out, op, &e, "a file of that name exists remotely");
	else
		out_error(out, op, &e);
	be_entry_release(&ent);
}

static void run_rmdir(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct err e;
	int rc;

	err_clear(&e);
	/* JNL_OPF_TREE: the unlinks below were folded into this rmdir; the
	 * backend removes the folder with its contents in one call. */
	if ((op->flags & JNL_OPF_TREE) && (be_caps(w->s->b) & BE_CAP_RMDIR_TREE))
		rc = be_rmdir_tree(w->s->b, op->path, &e);
	else
		rc = be_rmdir(w->s->b, op->path, &e);
	if (rc == 0 || e.code == ERR_NOTFOUND) {
		out_done(out, NULL);
		return;
	}
	if (e.code == ERR_NOTEMPTY || e.code == ERR_CONFLICT) {
		out_fail_why(out, op, &e, "not removed: the remote directory changed or holds "
			     "entries this mount does not know of; they were kept");
		return;
	}
	out_error(out, op, &e);
}

static void run_unlink(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct be_version v;
	struct be_entry cur;
	struct err e;
	int r;

	memset(&cur, 0, sizeof(cur));
	err_clear(&e);
	r = base_version(op->base, &v, &e);
	if (r < 0) {
		out_error(out, op, &e);
		return;
	}
	if (r == 0) {
		/* Nothing of it reached the remote. */
		log_debug(TAG, "unlink \"%s\": never uploaded; nothing to delete", op->path);
		out_done(out, NULL);
		out->noop = 1;
		return;
	}
	if (be_remove(w->s->b, op->path, &v, &cur, &e) == 0 || e.code == ERR_NOTFOUND) {
		out_done(out, NULL);
	} else if (e.code == ERR_CONFLICT) {
		out_fail_why(out, op, &e, "not deleted: it changed remotely since this mount "
			     "saw it; the remote version was kept");
	} else {
		out_error(out, op, &e);
	}
	be_entry_release(&cur);
}

struct dir_prog {
	struct sched *s;
};

static int rename_dir_progress(void *ud, uint64_t items, uint64_t bytes)
{
	struct dir_prog *p = ud;

	(void)items;
	(void)bytes;
	return stopping(p->s) ? 1 : 0;
}

/* Rebase one journal directory's tracked children on what the remote lists
 * there now; directories among them are pushed on *stack. */
static int rebase_dir(struct sched *s, const struct jnl_op *op, const char *dir,
		      char ***stack, size_t *nstack, size_t *cap, struct sch_out *out)
{
	struct jnl_file *v = NULL;
	struct be_list l = { 0 };
	const struct be_entry *ent;
	char ver[SCH_VER_MAX], **ns;
	struct err e;
	size_t n = 0, i;
	int rc = -1;

	err_clear(&e);
	if (jnl_children(s->j, dir, &v, &n, &e) < 0) {
		out_journal_error(out, &e);
		goto out;
	}
	if (n == 0) {
		rc = 0;
		goto out;
	}
	if (be_list(s->b, dir, &l, &e) < 0) {
		if (e.code == ERR_NOTFOUND) {
			rc = 0;
			goto out;
		}
		out_error(out, op, &e);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (v[i].type == JNL_DIR) {
			if (*nstack == *cap) {
				*cap = *cap ? *cap * 2 : 16;
				ns = realloc(*stack, *cap * sizeof(*ns));
				if (!ns)
					goto nomem;
				*stack = ns;
			}
			(*stack)[*nstack] = strdup(v[i].path);
			if (!(*stack)[*nstack])
				goto nomem;
			(*nstack)++;
		}
		if (!v[i].base || !*v[i].base)
			continue;  /* never reached the remote: nothing moved */
		ent = be_list_find(&l, be_basename(v[i].path));
		if (!ent || (ent->ver.gen == 0 && !ent->ver.id[0]))
			continue;
		ver_text(&ent->ver, ver, sizeof(ver));
		if (strcmp(ver, v[i].base) == 0)
			continue;
		if (jnl_file_set_base(s->j, v[i].fid, ver, &e) < 0) {
			if (e.code == ERR_CANCELED || e.code == ERR_IO || e.code == ERR_NOSPC) {
				out_journal_error(out, &e);
				goto out;
			}
			log_warn(TAG, "rename \"%s\": cannot record the new remote version of "
				 "\"%s\": %s", op->path, v[i].path, e.msg);
		}
	}
	rc = 0;
	goto out;
nomem:
	err_set(&e, ERR_NOMEM, "out of memory");
	out_error(out, op, &e);
out:
	be_list_release(&l);
	jnl_files_free(v, n);
	return rc;
}

/* After a directory rename on a backend where a rename rewrites every
 * object (GCS): the tracked files below the destination get the versions
 * the remote now lists, so their next writes are guarded by the copies
 * rather than by versions that no longer exist. Their ops cannot be in
 * progress: they wait for this rename. */
static int rebase_below(struct sched *s, const struct jnl_op *op, struct sch_out *out)
{
	char **stack = NULL, *dir;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!(be_caps(s->b) & BE_CAP_IDS_ARE_PATHS))
		return 0;
	stack = malloc(sizeof(*stack));
	if (!stack || !(stack[0] = strdup(op->path2))) {
		struct err e;

		free(stack);
		err_set(&e, ERR_NOMEM, "out of memory");
		out_error(out, op, &e);
		return -1;
	}
	n = cap = 1;
	while (n > 0 && rc == 0) {
		dir = stack[--n];
		rc = rebase_dir(s, op, dir, &stack, &n, &cap, out);
		free(dir);
	}
	while (n > 0)
		free(stack[--n]);
	free(stack);
	return rc;
}

/* 0 when fid is clean and its size differs from `size` (so a remote file
 * of that size cannot be its content), else 1. */
static int same_size_if_clean(struct sched *s, uint64_t fid, uint64_t size)
{
	struct jnl_file f;
	int r = 1;

	memset(&f, 0, sizeof(f));
	if (jnl_file_get(s->j, fid, &f, NULL) == 0 && !f.dirty && f.size != size)
		r = 0;
	jnl_file_release(&f);
	return r;
}

static void run_rename(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct sched *s = w->s;
	struct be_version from;
	struct be_entry ent, st;
	struct be_pre to_pre;
	struct dir_prog dp;
	struct err e, e2;
	int r;

	memset(&ent, 0, sizeof(ent));
	memset(&st, 0, sizeof(st));
	err_clear(&e);
	if (!op->path2) {
		err_set(&e, ERR_INVAL, "the journal's rename has no destination");
		out_error(out, op, &e);
		return;
	}
	if (op->type == JNL_DIR) {
		dp.s = s;
		if (be_rename_dir(s->b, op->path, op->path2, rename_dir_progress, &dp, &e) == 0) {
			if (rebase_below(s, op, out) < 0)
				return;  /* rerunning the rename is idempotent */
			if (be_stat(s->b, op->path2, &st, &e2) == 0 && st.type == BE_DIR &&
			    !st.implicit)
				out_done(out, &st.ver);
			else
				out_done(out, NULL);
			be_entry_release(&st);
		} else if (e.code == ERR_CANCELED && stopping(s)) {
			out->res = R_REQUEUE;  /* rerunning it finishes the job */
		} else if (e.code == ERR_NOTFOUND) {
			log_warn(TAG, "rename \"%s\" to \"%s\": the directory is gone remotely; "
				 "nothing to move", op->path, op->path2);
			out_done(out, NULL);
			out->noop = 1;
		} else {
			out_error(out, op, &e);
		}
		return;
	}
	r = base_version(op->base, &from, &e);
	if (r < 0 || guard_for(op->base2, &to_pre, &e) < 0) {
		out_error(out, op, &e);
		return;
	}
	if (r == 0) {
		log_debug(TAG, "rename \"%s\": never uploaded; nothing to move remotely",
			  op->path);
		out_done(out, NULL);
		out->noop = 1;
		return;
	}
	if (be_rename(s->b, op->path, &from, op->path2, &to_pre, &ent, &e) == 0) {
		out_done(out, &ent.ver);
		goto out;
	}
	if (e.code == ERR_NOTFOUND) {
		/* Source gone: an earlier attempt of ours may have moved it (the
		 * destination then is not the version the rename replaces). */
		err_clear(&e2);
		if (be_stat(s->b, op->path2, &st, &e2) == 0 && st.type != BE_DIR &&
		    !(to_pre.kind == BE_PRE_MATCH && be_version_equal(&st.ver, &to_pre.ver)) &&
		    same_size_if_clean(s, op->fid, st.size)) {
			log_info(TAG, "rename \"%s\" to \"%s\": already done", op->path, op->path2);
			out_done(out, &st.ver);
			goto out;
		}
		if (e2.code && e2.code != ERR_NOTFOUND) {
			out_error(out, op, &e2);
			goto out;
		}
		out_fail_why(out, op, &e, "not moved: the source was deleted remotely");
		goto out;
	}
	if (e.code == ERR_CONFLICT) {
		char why[4200];

		snprintf(why, sizeof(why), "not moved to \"%s\": a side changed remotely "
			 "since this mount saw it; the remote versions were kept", op->path2);
		out_fail_why(out, op, &e, why);
		goto out;
	}
	out_error(out, op, &e);
out:
	be_entry_release(&ent);
	be_entry_release(&st);
}

static void run_symlink(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct sched *s = w->s;
	struct timespec mt = ns_to_ts(op->mtime_ns);
	struct be_entry ent;
	struct be_pre pre;
	struct err e;
	int r;

	memset(&ent, 0, sizeof(ent));
	err_clear(&e);
	if (!op->target || !*op->target) {
		err_set(&e, ERR_INVAL, "the journal's symlink has no target");
		out_error(out, op, &e);
		return;
	}
	if (guard_for(op->base, &pre, &e) < 0) {
		out_error(out, op, &e);
		return;
	}
	if (be_symlink(s->b, op->path, op->target, &mt, &pre, &ent, &e) == 0) {
		out_done(out, &ent.ver);
		goto out;
	}
	if (e.code != ERR_CONFLICT) {
		out_error(out, op, &e);
		goto out;
	}
	if (s->o.conflict_fail) {
		out_fail_why(out, op, &e, "not created: something exists there remotely "
			     "(conflict=fail)");
		goto out;
	}
	r = remote_now(s, op, &ent, out);
	if (r < 0)
		goto out;
	if (r == 0) {
		/* Whatever was there went away: create it plainly next time. */
		err_set(&e, ERR_HTTP, "symlink \"%s\": the remote changed while it was "
			"created", op->path);
		out->res = R_RETRY;
		out->cause = e;
		goto out;
	}
	keep_both(w, op, &ent, copy_symlink, NULL, out);
out:
	be_entry_release(&ent);
}

/* mtime: the backend's setattr when it has one, else re-upload identical
 * content (see sched.h). */
static void run_setattr(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct sched *s = w->s;
	struct jnl_file f;
	struct be_entry cur, ent;
	struct be_meta meta;
	struct be_version v;
	struct be_pre pre;
	struct upl_ctx c;
	struct be_upload up;
	struct sch_out tmp;
	const char *why = NULL;
	struct err e;
	int fd = -1, r;

	memset(&f, 0, sizeof(f));
	memset(&cur, 0, sizeof(cur));
	memset(&ent, 0, sizeof(ent));
	memset(&meta, 0, sizeof(meta));
	memset(&tmp, 0, sizeof(tmp));
	err_clear(&e);
	if (op->type != JNL_FILE) {
		why = "not a regular file";
		goto noop;
	}
	if (jnl_file_get(s->j, op->fid, &f, &e) < 0) {
		out_journal_error(out, &e);
		goto out;
	}
	r = base_version(op->base, &v, &e);
	if (r < 0) {
		out_error(out, op, &e);
		goto out;
	}
	if (r == 0 || f.dirty || !f.path) {
		why = "its content is not on the remote yet, or a pending write carries it";
		goto noop;
	}
	if (be_caps(s->b) & BE_CAP_SETATTR) {
		struct be_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.set = BE_ATTR_MTIME;
		attr.mtime = ns_to_ts(op->mtime_ns);
		if (be_setattr(s->b, op->path, &v, &attr, &ent, &e) == 0) {
			out_done(out, &ent.ver);
			goto out;
		}
		if (e.code == ERR_CONFLICT) {
			why = "the remote file changed since this mount saw it";
			goto noop;
		}
		if (e.code == ERR_NOTFOUND) {
			why = "the remote file is gone";
			goto noop;
		}
		out_error(out, op, &e);
		goto out;
	}
	if (be_stat(s->b, op->path, &cur, &e) < 0) {
		if (e.code == ERR_NOTFOUND) {
			why = "the remote file is gone";
			goto noop;
		}
		out_error(out, op, &e);
		goto out;
	}
	if (!be_version_equal(&cur.ver, &v)) {
		why = "the remote file changed since this mount saw it";
		goto noop;
	}
	fd = open_cache(s, op, &tmp);
	if (fd < 0) {
		why = "its content is not in the cache";
		goto noop;
	}
	if (be_meta_from_fd(fd, &meta, &e) < 0) {
		out_error(out, op, &e);
		goto out;
	}
	if (meta.size != cur.size || !cur.has_crc32c || meta.crc32c != cur.crc32c ||
	    (cur.has_md5 && memcmp(meta.md5, cur.md5, 16) != 0)) {
		why = "the cache does not hold the whole remote content";
		goto noop;
	}
	meta.mtime = ns_to_ts(op->mtime_ns);
	pre.kind = BE_PRE_MATCH;
	pre.ver = v;
	if (upload_to(w, op, op->path, fd, &meta, &pre, 0, f.version, &c, &up, &ent, &e) == 0) {
		out_done(out, &ent.ver);
		goto out;
	}
	if (e.code == ERR_CONFLICT) {
		why = "the remote file changed meanwhile";
		goto noop;
	}
	if (c.stale) {
		why = "the file changed meanwhile; its write carries the mtime";
		goto noop;
	}
	if (e.code == ERR_CANCELED && c.stopped) {
		out->res = R_REQUEUE;
		goto out;
	}
	out_error(out, op, &e);
	goto out;
noop:
	log_debug(TAG, "setattr \"%s\": mtime not sent (%s)", op->path ? op->path : "?", why);
	out_done(out, NULL);
	out->noop = 1;
out:
	if (fd >= 0)
		close(fd);
	jnl_file_release(&f);
	be_entry_release(&cur);
	be_entry_release(&ent);
}

/* --- one op from claim to journal ----------------------------------------- */

static int64_t backoff_ms(struct sch_worker *w, const struct jnl_op *op, int code)
{
	const struct sched_opts *o = &w->s->o;
	int64_t d = o->retry_initial_ms;
	uint32_t n = op->attempts > 0 ? op->attempts - 1 : 0;

	while (n-- > 0 && d < o->retry_max_ms)
		d *= 2;
	if (code == ERR_AUTH || code == ERR_QUOTA || d > o->retry_max_ms)
		d = o->retry_max_ms;
	/* Full range jitter over the upper half: [d/2, d]. */
	return d / 2 + (int64_t)(rand_r(&w->rng) % (unsigned)(d / 2 + 1));
}

/* Add (sign 1) or take back (sign -1) one result in *counter and its
 * committed bytes. */
static void count_result(struct sched *s, uint64_t *counter, uint64_t bytes, int sign)
{
	pthread_mutex_lock(&s->mu);
	if (sign > 0) {
		(*counter)++;
		s->st.bytes_uploaded += bytes;
	} else {
		(*counter)--;
		s->st.bytes_uploaded -= bytes;
	}
	pthread_mutex_unlock(&s->mu);
}

static void finish(struct sch_worker *w, const struct jnl_op *op, struct sch_out *out)
{
	struct sched *s = w->s;
	const char *verb = kind_verb(op->kind);
	struct err e;
	int64_t delay;
	int rc = 0;

	err_clear(&e);
	if ((out->res == R_FAIL || out->res == R_RETRY) && out->cause.code == ERR_CANCELED &&
	    stopping(s)) {
		/* sch_stop cancelled the HTTP call: the outcome is unknown, the
		 * op is not at fault. Back to pending, resumable. */
		log_debug(TAG, "%s \"%s\": interrupted by the stop; back to the queue", verb,
			  op->path);
		out->res = R_REQUEUE;
	}
	switch (out->res) {
	case R_DONE:
		/* Counters move before the journal wakes the waiters, so that a
		 * waiter reading them sees its op counted; undone on failure. */
		count_result(s, &s->st.ops_done, out->bytes, 1);
		rc = jnl_complete(s->j, op->seq, op->claim, out->has_base ? out->base : NULL, &e);
		if (rc < 0) {
			count_result(s, &s->st.ops_done, out->bytes, -1);
			break;
		}
		if (op->err_code)
			log_info(TAG, "%s \"%s\": committed after %" PRIu32 " attempts", verb,
				 op->path, op->attempts);
		else
			log_debug(TAG, "%s \"%s\"%s%s: committed%s", verb, op->path,
				  op->path2 ? " to " : "", op->path2 ? op->path2 : "",
				  out->noop ? " (nothing to do remotely)" : "");
		emit(s, SCHED_EV_COMMITTED, op, op->kind == JNL_OP_RENAME ? op->path2 : NULL,
		     NULL);
		break;
	case R_RETRY:
		delay = backoff_ms(w, op, out->cause.code);
		if (op->err_code != out->cause.code) {
			/* Once per op and kind of error, not per attempt. */
			log_msg(out->cause.code == ERR_AUTH || out->cause.code == ERR_QUOTA ||
				out->cause.code == ERR_RATE ? LOG_LVL_WARN : LOG_LVL_INFO, TAG,
				"%s; will retry (the change stays queued until the remote "
				"takes it)", out->cause.msg);
		} else {
			log_debug(TAG, "%s; retry in %" PRId64 " ms (attempt %" PRIu32 ")",
				  out->cause.msg, delay, op->attempts);
		}
		stat_add(s, &s->st.retries, 1);
		rc = jnl_retry_later(s->j, op->seq, op->claim, delay, &out->cause, &e);
		break;
	case R_REQUEUE:
		rc = jnl_retry_later(s->j, op->seq, op->claim, 0, NULL, &e);
		break;
	case R_FAIL:
		log_error(TAG, "%s failed: %s; the change stays in the journal (see `durafs "
			  "status`)%s", verb, out->cause.msg,
			  op->kind == JNL_OP_WRITE ? " and its data in the cache" : "");
		count_result(s, &s->st.failures, 0, 1);
		rc = jnl_fail(s->j, op->seq, op->claim, &out->cause, &e);
		if (rc < 0) {
			count_result(s, &s->st.failures, 0, -1);
			break;
		}
		emit(s, SCHED_EV_FAILED, op, NULL, &out->cause);
		break;
	case R_CONFLICT:
		count_result(s, &s->st.conflicts, out->bytes, 1);
		rc = jnl_conflict(s->j, op->seq, op->claim, out->copy,
				  out->has_base ? out->base : NULL, &e);
		if (rc < 0) {
			count_result(s, &s->st.conflicts, out->bytes, -1);
			break;
		}
		log_warn(TAG, "conflict: \"%s\" changed remotely since this mount saw it; the "
			 "remote version stays there and the local version was saved as \"%s\"",
			 op->path, out->copy);
		err_set(&e, ERR_CONFLICT, "%s: changed remotely; local version kept as %s",
			op->path, out->copy);
		emit(s, SCHED_EV_CONFLICT, op, out->copy, &e);
		break;
	case R_LOST:
	default:
		log_debug(TAG, "%s \"%s\": the claim was lost (lease expired or op resolved); "
			  "dropping this attempt", verb, op->path);
		return;
	}
	if (rc < 0) {
		if (e.code == ERR_CANCELED)
			log_debug(TAG, "%s \"%s\": the claim was lost before the result was "
				  "recorded", verb, op->path);
		else
			log_error(TAG, "%s \"%s\": recording the result in the journal failed: "
				  "%s (the op will run again once its lease expires)", verb,
				  op->path, e.msg);
	}
}

static void run_op(struct sch_worker *w, const struct jnl_op *op)
{
	struct sched *s = w->s;
	struct sch_out *out;
	struct err e;

	out = calloc(1, sizeof(*out));
	if (!out) {
		err_set(&e, ERR_NOMEM, "out of memory");
		jnl_retry_later(s->j, op->seq, op->claim, s->o.retry_initial_ms, &e, NULL);
		return;
	}
	worker_set(w, op);
	if (stopping(s)) {
		out->res = R_REQUEUE;
	} else if (!op->path) {
		err_set(&e, ERR_INVAL, "op %" PRIu64 " has no path", op->seq);
		out->res = R_FAIL;
		out->cause = e;
	} else {
		switch (op->kind) {
		case JNL_OP_WRITE:
			run_write(w, op, out);
			break;
		case JNL_OP_MKDIR:
			run_mkdir(w, op, out);
			break;
		case JNL_OP_RENAME:
			run_rename(w, op, out);
			break;
		case JNL_OP_UNLINK:
			run_unlink(w, op, out);
			break;
		case JNL_OP_RMDIR:
			run_rmdir(w, op, out);
			break;
		case JNL_OP_SETATTR:
			run_setattr(w, op, out);
			break;
		case JNL_OP_SYMLINK:
			run_symlink(w, op, out);
			break;
		default:
			err_set(&out->cause, ERR_INVAL, "\"%s\": unknown op kind %d (written by "
				"a newer durafs?)", op->path, op->kind);
			out->res = R_FAIL;
			break;
		}
	}
	finish(w, op, out);
	worker_clear(w);
	free(out);
}

static void *worker_main(void *arg)
{
	struct sch_worker *w = arg;
	struct sched *s = w->s;
	struct jnl_op op;
	struct err e;
	int r, complained = 0;

	pthread_mutex_lock(&s->mu);
	s->alive++;
	pthread_mutex_unlock(&s->mu);
	/* No timeout: appends, completions and due times wake the wait, and
	 * sch_stop wakes it with jnl_wake_claimers (r == 0). */
	while (!stopping(s)) {
		err_clear(&e);
		r = jnl_claim_wait(s->j, -1, &op, &e);
		if (r < 0) {
			if (e.code == ERR_CANCELED)
				break;  /* the journal was shut down */
			if (!complained)
				log_error(TAG, "claiming the next operation: %s", e.msg);
			complained = 1;
			pthread_mutex_lock(&s->mu);
			if (!stopping(s)) {
				struct timespec ts = clk_mono_after(SCH_CLAIM_RETRY_MS);

				pthread_cond_timedwait(&s->cv, &s->mu, &ts);
			}
			pthread_mutex_unlock(&s->mu);
			continue;
		}
		complained = 0;
		if (r == 0)
			continue;
		run_op(w, &op);
		jnl_op_release(&op);
	}
	pthread_mutex_lock(&s->mu);
	s->alive--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* --- housekeeping -------------------------------------------------------- */

static void collect_garbage(struct sched *s)
{
	char **names = NULL, path[4096 + 512];
	size_t n = 0, i;
	struct err e;

	err_clear(&e);
	if (jnl_gc(s->j, &names, &n, &e) < 0) {
		log_warn(TAG, "collecting unlinked files: %s", e.msg);
		return;
	}
	for (i = 0; i < n; i++) {
		if (!names[i] || !*names[i] || strchr(names[i], '/') ||
		    strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", s->dir, names[i]) >= (int)sizeof(path))
			continue;
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn(TAG, "removing cache file %s: %s", path, strerror(errno));
	}
	jnl_names_free(names, n);
}

/* Renew the lease of every op in flight (workers may sit in one long HTTP
 * call, retries included, for longer than a chunk takes). */
static void renew_leases(struct sched *s)
{
	uint64_t seqs[SCH_MAX_WORKERS], claims[SCH_MAX_WORKERS];
	struct err e;
	int i, n = 0;

	pthread_mutex_lock(&s->mu);
	for (i = 0; i < s->nw; i++)
		if (s->w[i].busy) {
			seqs[n] = s->w[i].seq;
			claims[n] = s->w[i].claim;
			n++;
		}
	pthread_mutex_unlock(&s->mu);
	for (i = 0; i < n; i++) {
		err_clear(&e);
		if (jnl_renew(s->j, seqs[i], claims[i], &e) < 0 && e.code != ERR_CANCELED)
			log_debug(TAG, "renewing the lease of op %" PRIu64 ": %s", seqs[i], e.msg);
	}
}

static void *hk_main(void *arg)
{
	struct sched *s = arg;
	int64_t next_renew = clk_mono_ms() + s->o.renew_ms;
	uint64_t requeued;
	struct timespec ts;
	struct err e;
	unsigned round = 0;

	pthread_mutex_lock(&s->mu);
	while (!stopping(s)) {
		ts = clk_mono_after(s->o.housekeeping_ms < s->o.renew_ms ? s->o.housekeeping_ms :
				s->o.renew_ms);
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		if (stopping(s))
			break;
		pthread_mutex_unlock(&s->mu);
		if (clk_mono_ms() >= next_renew) {
			renew_leases(s);
			next_renew = clk_mono_ms() + s->o.renew_ms;
		}
		err_clear(&e);
		if (jnl_expire_leases(s->j, &requeued, &e) < 0)
			log_warn(TAG, "expiring leases: %s", e.msg);
		else if (requeued)
			log_info(TAG, "%" PRIu64 " operations whose worker vanished went back "
				 "to the queue", requeued);
		if (++round % SCH_GC_EVERY == 0)
			collect_garbage(s);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* --- public API ---------------------------------------------------------- */

int sch_new(struct jnl *j, struct be *b, const struct sched_opts *o,
	    struct sched **out, struct err *err)
{
	struct sched *s = NULL;

	*out = NULL;
	if (!j || !b || !o)
		return err_set(err, ERR_INVAL, "scheduler: journal, backend and options "
			       "are required");
	if (!o->files_dir || !*o->files_dir)
		return err_set(err, ERR_INVAL, "scheduler: no cache files directory");
	if (o->workers < 0 || o->workers > SCH_MAX_WORKERS)
		return err_set(err, ERR_INVAL, "scheduler: upload_workers must be 1..%d",
			       SCH_MAX_WORKERS);
	if (o->chunk_size && !be_chunk_size_valid(o->chunk_size))
		return err_set(err, ERR_INVAL, "scheduler: chunk size %" PRIu64 " is not a "
			       "multiple of 256 KiB", o->chunk_size);
	if (o->retry_initial_ms < 0 || o->retry_max_ms < 0 || o->renew_ms < 0 ||
	    o->housekeeping_ms < 0)
		return err_set(err, ERR_INVAL, "scheduler: negative interval");
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, ERR_NOMEM, "scheduler: out of memory");
	s->dir = strdup(o->files_dir);
	s->trk = calloc(SCH_TRACK_MAX, sizeof(*s->trk));
	if (!s->dir || !s->trk) {
		free(s->dir);
		free(s->trk);
		free(s);
		return err_set(err, ERR_NOMEM, "scheduler: out of memory");
	}
	s->j = j;
	s->b = b;
	s->o = *o;
	s->o.files_dir = s->dir;
	sweep_snapshots(s->dir);
	if (!s->o.workers)
		s->o.workers = SCH_DEFAULT_WORKERS;
	if (!s->o.small_max)
		s->o.small_max = SCH_DEFAULT_SMALL_MAX;
	if (!s->o.retry_initial_ms)
		s->o.retry_initial_ms = 1000;
	if (!s->o.retry_max_ms)
		s->o.retry_max_ms = 60000;
	if (s->o.retry_max_ms < s->o.retry_initial_ms)
		s->o.retry_max_ms = s->o.retry_initial_ms;
	if (!s->o.renew_ms)
		s->o.renew_ms = 60000;
	if (!s->o.housekeeping_ms)
		s->o.housekeeping_ms = 5000;
	if (!s->o.no_stream && (be_caps(b) & BE_CAP_STREAM)) {
		struct stm_opts so;

		memset(&so, 0, sizeof(so));
		so.chunk_size = s->o.chunk_size;   /* 0: 16 MiB, as the backends */
		so.lead = s->o.stream_lead;
		so.files_dir = s->dir;
		if (stm_new(j, b, &so, &s->stm, err) < 0) {
			free(s->dir);
			free(s->trk);
			free(s);
			return -1;
		}
	}
	atomic_init(&s->stopping, 0);
	pthread_mutex_init(&s->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	*out = s;
	return 0;
}

void sch_set_open_fn(struct sched *s, sched_open_fn fn, void *ud)
{
	pthread_mutex_lock(&s->mu);
	s->open_fn = fn;
	s->open_ud = ud;
	pthread_mutex_unlock(&s->mu);
}

void sch_set_freeze_fn(struct sched *s, sched_freeze_fn fn, void *ud)
{
	pthread_mutex_lock(&s->mu);
	s->freeze_fn = fn;
	s->freeze_ud = ud;
	pthread_mutex_unlock(&s->mu);
}

void sch_set_event_fn(struct sched *s, sched_event_fn fn, void *ud)
{
	pthread_mutex_lock(&s->mu);
	s->ev_fn = fn;
	s->ev_ud = ud;
	pthread_mutex_unlock(&s->mu);
}

/* Join every thread sch_start created (s->w, s->hk) and free the workers. */
static void join_all(struct sched *s)
{
	struct sch_worker *w = s->w;
	int i, n = s->nw;

	for (i = 0; i < n; i++)
		if (w[i].started)
			pthread_join(w[i].th, NULL);
	if (s->hk_started)
		pthread_join(s->hk, NULL);
	s->hk_started = 0;
	/* sch_uploads may be reading the array: take it away under mu. */
	pthread_mutex_lock(&s->mu);
	s->w = NULL;
	s->nw = 0;
	pthread_mutex_unlock(&s->mu);
	for (i = 0; i < n; i++)
		free(w[i].path);
	free(w);
}

/* With `stopping` set (and s->joining ours): get every thread out and
 * joined. Requests in flight and retry waits give up (ERR_CANCELED: the op
 * goes back to pending, see finish); idle workers are woken from
 * jnl_claim_wait. One that saw `stopping` clear just before it was set may
 * enter the wait after a wake-up: the wake-up is repeated until every
 * worker has left. The HTTP client is re-armed once they are joined. */
static void halt_workers(struct sched *s)
{
	struct timespec ts;

	if (s->o.http)
		http_cancel_all(s->o.http);
	stm_stop(s->stm);
	pthread_mutex_lock(&s->mu);
	while (s->alive > 0) {
		pthread_mutex_unlock(&s->mu);
		jnl_wake_claimers(s->j);
		pthread_mutex_lock(&s->mu);
		if (s->alive == 0)
			break;
		ts = clk_mono_after(SCH_STOP_WAKE_MS);
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	join_all(s);
	if (s->o.http)
		http_uncancel(s->o.http);
}

int sch_start(struct sched *s, struct err *err)
{
	struct sch_worker *w = NULL;
	sigset_t all, old;
	struct err se;
	int i, rc = 0, n = s->o.workers;

	pthread_mutex_lock(&s->mu);
	if (s->running || s->joining) {
		pthread_mutex_unlock(&s->mu);
		return err_set(err, ERR_INVAL, "scheduler: already running");
	}
	w = calloc((size_t)n, sizeof(*w));
	if (!w) {
		pthread_mutex_unlock(&s->mu);
		return err_set(err, ERR_NOMEM, "scheduler: out of memory");
	}
	atomic_store(&s->stopping, 0);
	s->w = w;
	s->nw = n;
	s->running = 1;
	pthread_mutex_unlock(&s->mu);

	/* The threads inherit a mask that blocks every signal: the daemon's
	 * main thread handles them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < n; i++) {
		w[i].s = s;
		w[i].rng = (unsigned)time(NULL) ^ (unsigned)(i * 2654435761u) ^
			   (unsigned)(uintptr_t)&w[i];
		rc = pthread_create(&w[i].th, NULL, worker_main, &w[i]);
		if (rc != 0)
			break;
		w[i].started = 1;
	}
	if (i == n) {
		rc = pthread_create(&s->hk, NULL, hk_main, s);
		if (rc == 0)
			s->hk_started = 1;
	}
	if (rc == 0 && stm_start(s->stm, &se) < 0) {
		/* Only an optimisation: uploads start at fsync/close instead. */
		log_warn(TAG, "%s", se.msg);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pthread_mutex_lock(&s->mu);
		atomic_store(&s->stopping, 1);
		s->joining = 1;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		halt_workers(s);
		pthread_mutex_lock(&s->mu);
		s->running = 0;
		s->joining = 0;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		errno = rc;
		return err_sys(err, "scheduler: starting a thread");
	}
	log_info(TAG, "started %d upload workers", n);
	return 0;
}

void sch_stop(struct sched *s)
{
	int64_t t0 = clk_mono_ms();

	pthread_mutex_lock(&s->mu);
	if (!s->running) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (s->joining) {
		/* Another thread is stopping it: wait for it to finish. */
		while (s->running)
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
		return;
	}
	s->joining = 1;
	atomic_store(&s->stopping, 1);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);

	halt_workers(s);

	pthread_mutex_lock(&s->mu);
	s->running = 0;
	s->joining = 0;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	log_info(TAG, "upload workers stopped in %" PRId64 " ms", clk_mono_ms() - t0);
}

void sch_free(struct sched *s)
{
	if (!s)
		return;
	sch_stop(s);
	stm_free(s->stm);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->dir);
	free(s->trk);
	free(s);
}

int sch_wait_fid(struct sched *s, uint64_t fid, int64_t timeout_ms, struct err *err)
{
	uint64_t up_to = jnl_last_seq(s->j);

	if (jnl_expedite(s->j, fid, up_to, err) < 0)
		return -1;
	return jnl_wait_fid(s->j, fid, up_to, timeout_ms, 0, err);
}

int sch_flush(struct sched *s, int64_t timeout_ms, sched_progress_fn fn, void *ud,
	      struct err *err)
{
	uint64_t up_to = jnl_last_seq(s->j);
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : clk_mono_ms() + timeout_ms;
	int64_t slice, left;
	struct jnl_progress p;
	struct err e;
	int rc;

	/* the first sample before the queue is released: the totals */
	if (fn && jnl_progress(s->j, up_to, &p, NULL) == 0)
		fn(ud, &p);
	if (jnl_expedite(s->j, 0, up_to, err) < 0)
		return -1;
	for (;;) {
		left = deadline == INT64_MAX ? INT64_MAX : deadline - clk_mono_ms();
		if (left < 0)
			left = 0;
		slice = fn && left > SCH_FLUSH_TICK_MS ? SCH_FLUSH_TICK_MS : left;
		if (slice == INT64_MAX)
			slice = -1;
		err_clear(&e);
		rc = jnl_wait_all(s->j, up_to, slice, JNL_WAIT_SETTLE, &e);
		if (rc == 0 || e.code != ERR_TIMEOUT || slice == left || left == 0)
			break;
		if (fn && jnl_progress(s->j, up_to, &p, NULL) == 0)
			fn(ud, &p);
	}
	if (fn && jnl_progress(s->j, up_to, &p, NULL) == 0)
		fn(ud, &p);
	if (rc < 0) {
		if (e.code == ERR_TIMEOUT)
			err_set(&e, ERR_TIMEOUT, "flush: timed out after %" PRId64 " ms; the "
				"changes stay queued", timeout_ms);
		if (err)
			*err = e;
		return -1;
	}
	return 0;
}

void sch_uploads_free(struct sched_upload *v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++)
		free(v[i].path);
	free(v);
}

int sch_uploads(struct sched *s, struct sched_upload **v, size_t *n, struct err *err)
{
	struct sched_upload *r = NULL;
	size_t k = 0;
	int i, cnt = 0, rc = -1;

	*v = NULL;
	*n = 0;
	pthread_mutex_lock(&s->mu);
	for (i = 0; i < s->nw; i++)
		cnt += s->w[i].busy && s->w[i].uploading;
	if (cnt == 0) {
		rc = 0;
		goto out;
	}
	r = calloc((size_t)cnt, sizeof(*r));
	if (!r)
		goto nomem;
	for (i = 0; i < s->nw; i++) {
		if (!s->w[i].busy || !s->w[i].uploading)
			continue;
		r[k].seq = s->w[i].seq;
		r[k].total = s->w[i].total;
		r[k].persisted = s->w[i].persisted;
		r[k].attempts = s->w[i].attempts;
		r[k].snapshot = s->w[i].snapshot;
		r[k].path = strdup(s->w[i].path ? s->w[i].path : "");
		k++;
		if (!r[k - 1].path)
			goto nomem;
	}
	*v = r;
	*n = k;
	r = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "scheduler: out of memory");
out:
	pthread_mutex_unlock(&s->mu);
	sch_uploads_free(r, k);
	return rc;
}

void sch_get_stats(struct sched *s, struct sched_stats *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	pthread_mutex_unlock(&s->mu);
}
