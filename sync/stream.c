/* durafs streamed uploads: a thread that sends the full chunks of files
 * being written sequentially into resumable sessions recorded in the
 * journal, for their write ops to finish. Contract: include/durafs/stream.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/clock.h"
#include "durafs/journal.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"
#include "durafs/stream.h"

#define TAG "stream"

#define STM_DEFAULT_CHUNK (16u * 1024u * 1024u)
#define STM_MIN_LEAD (1024u * 1024u)
#define STM_MAX_ENTRIES 1024       /* candidates tracked at once */
#define STM_IDLE_DROP_MS 60000     /* a candidate without a session, not
				    * written for this long, is forgotten; one
				    * with a session is checked (still the
				    * same dirty file?) this often */
#define STM_KEY_MAX 48

enum stm_state {
	STM_ACTIVE = 1,
	STM_DEAD = 2,               /* abandoned: cancel and forget it */
};

struct stm_ent {
	struct stm_ent *next;
	uint64_t fid;
	int state;                  /* enum stm_state */
	int busy;                   /* the thread works on it, unlocked */
	int take;                   /* stm_take is waiting for it */
	uint64_t hi;                /* furthest offset noted */
	uint64_t wait_hi;           /* the file was too short when hi was this */
	uint64_t guard;             /* [0, guard) is sent or being sent */
	uint64_t persisted;         /* up->persisted, for readers holding mu */
	/* Sums of [0, hashed) of what was sent (the thread's; stm_take hands
	 * them over); hash_ok 0: unknown, the write op hashes the file. */
	uint64_t hashed;
	uint32_t crc;
	struct ck_md5 md5;
	int hash_ok;
	int wip_wait;               /* a change below the next chunk is under
				     * way: wait for its end */
	int64_t last_ms;            /* last note (monotonic) */
	int fd;                     /* the cache file, read-only, or -1 */
	char *path;                 /* the file's path when the stream began */
	char *base;                 /* its journal base then (NULL: none) */
	struct be_upload *up;       /* the session, NULL until begun */
};

/* A change of a cache file under way (between stm_note_write and
 * stm_note_write_end). */
struct stm_wip {
	uint64_t fid;
	uint64_t off;
};

struct stm {
	struct jnl *j;
	struct be *b;
	struct stm_opts o;          /* defaults applied; files_dir = dir */
	char *dir;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* protected by mu */
	struct stm_ent *list;
	size_t n;
	struct stm_wip *wip;        /* changes under way, any file */
	size_t nwip, capwip;
	size_t wip_lost;            /* changes that could not be recorded (out
				     * of memory): no stream reads meanwhile */
	int stop;
	int running;
	pthread_t th;
	struct stm_stats st;
};

static uint64_t slack(const struct stm *m)
{
	return m->o.chunk_size > STM_MIN_LEAD ? m->o.chunk_size : STM_MIN_LEAD;
}

static void key_of(uint64_t fid, char *buf, size_t len)
{
	snprintf(buf, len, "stream.%" PRIu64, fid);
}

static int same_base(const char *a, const char *b)
{
	if (!a)
		a = "";
	if (!b)
		b = "";
	return strcmp(a, b) == 0;
}

/* Free an entry that is out of the list (its fd closed, nothing remote). */
static void ent_free(struct stm_ent *e)
{
	if (!e)
		return;
	if (e->fd >= 0)
		close(e->fd);
	free(e->path);
	free(e->base);
	free(e->up);
	ck_md5_release(&e->md5);
	free(e);
}

/* Take e out of the list. mu held. */
static void ent_unlink(struct stm *m, struct stm_ent *e)
{
	struct stm_ent **pp;

	for (pp = &m->list; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			e->next = NULL;
			m->n--;
			return;
		}
	}
}

/* Whether a change of fid below `end` is under way. mu held. */
static int wip_below(const struct stm *m, uint64_t fid, uint64_t end)
{
	size_t i;

	if (m->wip_lost)
		return 1;
	for (i = 0; i < m->nwip; i++)
		if (m->wip[i].fid == fid && m->wip[i].off < end)
			return 1;
	return 0;
}

static struct stm_ent *ent_find(struct stm *m, uint64_t fid)
{
	struct stm_ent *e;

	for (e = m->list; e; e = e->next)
		if (e->fid == fid)
			return e;
	return NULL;
}

/* --- the journal record ---------------------------------------------------- */

/* Record e's session (path, guard, offset) as "stream.<fid>". */
static int rec_save(struct stm *m, const struct stm_ent *e, struct err *err)
{
	char key[STM_KEY_MAX];
	json_t *o = NULL;
	char *s = NULL;
	int rc = -1;

	key_of(e->fid, key, sizeof(key));
	o = json_pack("{s:i, s:s, s:s?, s:s, s:I, s:I}", "v", 1, "path", e->path, "base",
		      e->base, "session", e->up->session, "persisted",
		      (json_int_t)e->up->persisted, "chunk", (json_int_t)e->up->chunk_size);
	if (!o) {
		err_set(err, ERR_NOMEM, "stream: out of memory");
		goto out;
	}
	s = jsonh_dumps(o, err);
	if (!s)
		goto out;
	rc = jnl_meta_set(m->j, key, s, err);
out:
	json_decref(o);
	free(s);
	return rc;
}

static void rec_drop(struct stm *m, uint64_t fid)
{
	char key[STM_KEY_MAX];
	struct err e;

	key_of(fid, key, sizeof(key));
	if (jnl_meta_set(m->j, key, NULL, &e) < 0)
		log_warn(TAG, "forgetting the streamed session of file %" PRIu64 ": %s", fid,
			 e.msg);
}

/* Load fid's record into *up (path, session, persisted, chunk) and *base
 * (malloc'd or NULL). 1 found, 0 none, -1 unreadable (*err). */
static int rec_load(struct stm *m, uint64_t fid, struct be_upload *up, char **base,
		    struct err *err)
{
	char key[STM_KEY_MAX];
	char *s = NULL;
	json_t *o = NULL;
	uint64_t persisted, chunk;
	int rc = -1;

	*base = NULL;
	key_of(fid, key, sizeof(key));
	if (jnl_meta_get(m->j, key, &s, err) < 0)
		return -1;
	if (!s)
		return 0;
	memset(up, 0, sizeof(*up));
	if (jsonh_parse_object(s, strlen(s), "streamed session record", &o, err) < 0 ||
	    jsonh_get_strbuf(o, "path", up->path, sizeof(up->path), err) < 0 ||
	    jsonh_get_strbuf(o, "session", up->session, sizeof(up->session), err) < 0 ||
	    jsonh_opt_strdup(o, "base", base, err) < 0 ||
	    jsonh_get_uint64(o, "persisted", &persisted, err) < 0 ||
	    jsonh_get_uint64(o, "chunk", &chunk, err) < 0)
		goto out;
	if (!be_chunk_size_valid(chunk)) {
		err_set(err, ERR_PARSE, "streamed session record: bad chunk size");
		goto out;
	}
	up->persisted = persisted;
	up->chunk_size = chunk;
	rc = 1;
out:
	if (rc < 0) {
		free(*base);
		*base = NULL;
		memset(up, 0, sizeof(*up));
	}
	json_decref(o);
	free(s);
	return rc;
}

/* Best-effort cancel of a session we give up. */
static void cancel_session(struct stm *m, struct be_upload *up)
{
	struct err e;

	if (!up || !up->session[0])
		return;
	if (be_upload_cancel(m->b, up, &e) < 0)
		log_debug(TAG, "upload \"%s\": cancelling the abandoned stream: %s", up->path,
			  e.msg);
}

/* --- the thread ------------------------------------------------------------ */

/* Open e's cache file and note its path and guard. 0, or -1: not a file
 * to stream (gone, not dirty, unreadable). */
static int ent_open(struct stm *m, struct stm_ent *e)
{
	struct jnl_file f;
	char path[4096 + 512];
	struct err err;
	int rc = -1;

	memset(&f, 0, sizeof(f));
	if (jnl_file_get(m->j, e->fid, &f, &err) < 0) {
		log_debug(TAG, "file %" PRIu64 ": %s", e->fid, err.msg);
		goto out;
	}
	if (f.type != JNL_FILE || !f.path || !f.cache_name || !f.dirty ||
	    strchr(f.cache_name, '/') || !strcmp(f.cache_name, ".") ||
	    !strcmp(f.cache_name, "..") || strlen(f.path) >= sizeof(e->up->path))
		goto out;
	if (snprintf(path, sizeof(path), "%s/%s", m->dir, f.cache_name) >= (int)sizeof(path))
		goto out;
	do {
		e->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	} while (e->fd < 0 && errno == EINTR);
	if (e->fd < 0)
		goto out;
	e->path = f.path;
	f.path = NULL;
	e->base = f.base;
	f.base = NULL;
	rc = 0;
out:
	jnl_file_release(&f);
	return rc;
}

/* Begin e's session (the file's size now: size). 0 or -1 (*err). */
static int ent_begin(struct stm *m, struct stm_ent *e, uint64_t size, struct err *err)
{
	struct be_meta meta;
	struct be_pre pre;
	struct timespec now;

	memset(&pre, 0, sizeof(pre));
	pre.kind = BE_PRE_ABSENT;
	if (e->base && *e->base) {
		if (be_version_parse(e->base, &pre.ver) < 0)
			return err_set(err, ERR_PARSE, "malformed remote version in the journal");
		if (pre.ver.gen != 0 || pre.ver.id[0])
			pre.kind = BE_PRE_MATCH;
	}
	e->up = calloc(1, sizeof(*e->up));
	if (!e->up)
		return err_set(err, ERR_NOMEM, "stream: out of memory");
	memset(&meta, 0, sizeof(meta));
	meta.size = size;
	meta.flags = BE_META_SUMS_LATE | BE_META_SIZE_UNKNOWN;
	clock_gettime(CLOCK_REALTIME, &now);
	meta.mtime = now;   /* the write op sets the final one */
	e->up->chunk_size = m->o.chunk_size;
	if (be_upload_begin(m->b, e->path, &meta, &pre, e->up, err) < 0)
		goto fail;
	if (e->up->done) {
		/* Our guard says the object is new: nothing can be committed. */
		err_set(err, ERR_INVAL, "a streamed session was found complete");
		goto fail;
	}
	e->up->meta.flags |= BE_META_SIZE_UNKNOWN;
	e->hashed = 0;
	e->crc = 0;
	e->hash_ok = ck_md5_init(&e->md5) == 0;
	if (rec_save(m, e, err) < 0) {
		cancel_session(m, e->up);
		goto fail;
	}
	return 0;
fail:
	free(e->up);
	e->up = NULL;
	return -1;
}

/* Add [e->hashed, to) of the cache file to e's sums (read back from the
 * page cache: those bytes cannot change without abandoning the stream).
 * A failure only loses the sums (the write op then hashes the file). */
static void ent_hash(struct stm_ent *e, uint64_t to)
{
	enum { BUFSZ = 1 << 20 };
	char *buf;
	ssize_t n;
	size_t want;

	if (!e->hash_ok || to <= e->hashed)
		return;
	buf = malloc(BUFSZ);
	if (!buf)
		goto fail;
	while (e->hashed < to) {
		want = to - e->hashed < BUFSZ ? (size_t)(to - e->hashed) : BUFSZ;
		n = pread(e->fd, buf, want, (off_t)e->hashed);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		e->crc = ck_crc32c(e->crc, buf, (size_t)n);
		ck_md5_update(&e->md5, buf, (size_t)n);
		e->hashed += (uint64_t)n;
	}
	free(buf);
	return;
fail:
	free(buf);
	e->hash_ok = 0;
	ck_md5_release(&e->md5);
}

/* A stream not written for a while: 1 when its file is still the dirty
 * file at the path it streams to (its write op will come), else 0. */
static int ent_still_fits(struct stm *m, struct stm_ent *e)
{
	struct jnl_file f;
	struct err err;
	int ok;

	memset(&f, 0, sizeof(f));
	if (jnl_file_get(m->j, e->fid, &f, &err) < 0)
		return err.code == ERR_NOTFOUND ? 0 : 1;   /* ask again later */
	ok = f.path && f.dirty && e->path && strcmp(f.path, e->path) == 0 &&
	     same_base(f.base, e->base);
	jnl_file_release(&f);
	pthread_mutex_lock(&m->mu);
	e->last_ms = clk_mono_ms();
	pthread_mutex_unlock(&m->mu);
	return ok;
}

/* One step of e (busy, unlocked): clean up a dead stream, or send one
 * chunk when the file has it. Sets e->state to 0 when e is to be freed. */
static void ent_step(struct stm *m, struct stm_ent *e)
{
	struct stat st;
	struct err err;
	uint64_t p, size;
	int r, idle;

	err_clear(&err);
	pthread_mutex_lock(&m->mu);
	r = e->state;
	idle = clk_mono_ms() - e->last_ms > STM_IDLE_DROP_MS;
	pthread_mutex_unlock(&m->mu);
	if (r == STM_ACTIVE && idle && e->up && !ent_still_fits(m, e)) {
		log_debug(TAG, "upload \"%s\": the file went away or moved; the streamed "
			  "session is abandoned", e->path);
		goto drop;
	}
	if (r == STM_DEAD) {
		if (e->up)
			log_debug(TAG, "upload \"%s\": not written sequentially any more; "
				  "the streamed session is abandoned", e->path);
		goto drop;
	}
	if (e->fd < 0 && ent_open(m, e) < 0)
		goto drop;
	if (fstat(e->fd, &st) < 0)
		goto drop;
	size = (uint64_t)st.st_size;
	p = e->up ? e->up->persisted : 0;
	if (size < p + m->o.chunk_size + m->o.lead) {
		pthread_mutex_lock(&m->mu);
		e->wait_hi = e->hi;   /* look again when more is written */
		pthread_mutex_unlock(&m->mu);
		return;
	}
	if (!e->up) {
		if (ent_begin(m, e, size, &err) < 0) {
			log_debug(TAG, "upload \"%s\": not streamed: %s", e->path, err.msg);
			goto drop;
		}
		pthread_mutex_lock(&m->mu);
		m->st.sessions++;
		pthread_mutex_unlock(&m->mu);
		log_debug(TAG, "upload \"%s\": streaming while it is written", e->path);
	}
	pthread_mutex_lock(&m->mu);
	if (e->state != STM_ACTIVE || e->take || m->stop) {
		pthread_mutex_unlock(&m->mu);
		return;
	}
	if (wip_below(m, e->fid, p + m->o.chunk_size)) {
		/* Its bytes may be changing: read them once that is over. */
		e->wip_wait = 1;
		pthread_mutex_unlock(&m->mu);
		return;
	}
	/* From here on a change below this abandons the stream. */
	e->guard = p + m->o.chunk_size;
	pthread_mutex_unlock(&m->mu);
	e->up->meta.size = size;
	r = be_upload_chunk(m->b, e->up, e->fd, NULL, &err);
	if (r == 0 && e->up->persisted > p) {
		ent_hash(e, e->up->persisted);
		pthread_mutex_lock(&m->mu);
		m->st.chunks++;
		m->st.bytes += e->up->persisted - p;
		e->persisted = e->up->persisted;
		pthread_mutex_unlock(&m->mu);
		if (rec_save(m, e, &err) < 0) {
			log_debug(TAG, "upload \"%s\": not streamed further: %s", e->path, err.msg);
			goto drop;
		}
		return;
	}
	if (r == 1) {
		/* Cannot happen with an unknown size; never use such a session. */
		log_warn(TAG, "upload \"%s\": a streamed session completed early; abandoned",
			 e->path);
		goto drop;
	}
	pthread_mutex_lock(&m->mu);
	r = m->stop;
	pthread_mutex_unlock(&m->mu);
	if (r && err.code == ERR_CANCELED)
		return;   /* kept for a restart */
	log_debug(TAG, "upload \"%s\": streaming stopped: %s", e->path, err.msg);
drop:
	r = e->up != NULL;
	if (e->up) {
		cancel_session(m, e->up);
		rec_drop(m, e->fid);
	}
	pthread_mutex_lock(&m->mu);
	if (r || e->state == STM_DEAD)
		m->st.abandoned++;
	e->state = 0;
	free(e->up);
	e->up = NULL;
	pthread_mutex_unlock(&m->mu);
}

/* Whether the thread has something to do with e. mu held. */
static int ent_due(const struct stm *m, const struct stm_ent *e, int64_t now)
{
	if (e->busy || e->take)
		return 0;
	if (e->state == STM_DEAD)
		return 1;
	if (e->wip_wait)
		return 0;   /* stm_note_write_end clears it */
	if (now - e->last_ms > STM_IDLE_DROP_MS)
		return 1;   /* stm_main forgets it, or ent_step looks at it */
	return e->hi > e->wait_hi && e->hi >= e->persisted + m->o.chunk_size + m->o.lead;
}

static void *stm_main(void *arg)
{
	struct stm *m = arg;
	struct stm_ent *e, *next;
	struct timespec ts;
	int64_t now;
	int did;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		did = 0;
		now = clk_mono_ms();
		for (e = m->list; e && !m->stop; e = next) {
			next = e->next;
			if (!ent_due(m, e, now))
				continue;
			if (e->state == STM_ACTIVE && !e->up && now - e->last_ms > STM_IDLE_DROP_MS) {
				/* Written once, then left: not worth tracking. */
				ent_unlink(m, e);
				ent_free(e);
				did = 1;
				break;
			}
			e->busy = 1;
			pthread_mutex_unlock(&m->mu);
			ent_step(m, e);
			pthread_mutex_lock(&m->mu);
			e->busy = 0;
			pthread_cond_broadcast(&m->cv);
			if (e->state == 0 && !e->take) {
				ent_unlink(m, e);
				ent_free(e);
			}
			did = 1;
			break;   /* the list may have changed: start over */
		}
		if (did)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += m->o.idle_ms / 1000;
		ts.tv_nsec += (m->o.idle_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cv, &m->mu, &ts);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* --- the interface ----------------------------------------------------------- */

int stm_new(struct jnl *j, struct be *b, const struct stm_opts *o, struct stm **out,
	    struct err *err)
{
	struct stm *m;
	pthread_condattr_t ca;

	*out = NULL;
	if (!j || !b || !o || !o->files_dir || !*o->files_dir)
		return err_set(err, ERR_INVAL, "stream: journal, backend and files_dir are "
			       "required");
	if (o->chunk_size && !be_chunk_size_valid(o->chunk_size))
		return err_set(err, ERR_INVAL, "stream: chunk size %" PRIu64 " is not a "
			       "multiple of 256 KiB", o->chunk_size);
	m = calloc(1, sizeof(*m));
	if (!m)
		return err_set(err, ERR_NOMEM, "stream: out of memory");
	m->dir = strdup(o->files_dir);
	if (!m->dir) {
		free(m);
		return err_set(err, ERR_NOMEM, "stream: out of memory");
	}
	m->j = j;
	m->b = b;
	m->o = *o;
	m->o.files_dir = m->dir;
	if (!m->o.chunk_size)
		m->o.chunk_size = STM_DEFAULT_CHUNK;
	if (!m->o.lead)
		m->o.lead = slack(m);
	if (m->o.idle_ms <= 0)
		m->o.idle_ms = 100;
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	*out = m;
	return 0;
}

int stm_start(struct stm *m, struct err *err)
{
	int r;

	if (!m || !(be_caps(m->b) & BE_CAP_STREAM))
		return 0;
	pthread_mutex_lock(&m->mu);
	if (m->running) {
		pthread_mutex_unlock(&m->mu);
		return err_set(err, ERR_INVAL, "stream: already running");
	}
	m->stop = 0;
	r = pthread_create(&m->th, NULL, stm_main, m);
	if (r == 0)
		m->running = 1;
	pthread_mutex_unlock(&m->mu);
	if (r != 0) {
		errno = r;
		return err_sys(err, "stream: starting its thread");
	}
	return 0;
}

void stm_stop(struct stm *m)
{
	int join;

	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	join = m->running;
	m->running = 0;
	m->stop = 1;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (join)
		pthread_join(m->th, NULL);
}

void stm_free(struct stm *m)
{
	struct stm_ent *e;

	if (!m)
		return;
	stm_stop(m);
	while ((e = m->list) != NULL) {
		m->list = e->next;
		ent_free(e);
	}
	free(m->wip);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	free(m->dir);
	free(m);
}

void stm_note_write(struct stm *m, uint64_t fid, uint64_t off)
{
	struct stm_ent *e;

	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	if (m->nwip == m->capwip) {
		size_t cap = m->capwip ? m->capwip * 2 : 16;
		struct stm_wip *v = realloc(m->wip, cap * sizeof(*v));

		if (!v) {
			m->wip_lost++;
			goto entry;
		}
		m->wip = v;
		m->capwip = cap;
	}
	m->wip[m->nwip].fid = fid;
	m->wip[m->nwip].off = off;
	m->nwip++;
entry:
	if (!m->running)
		goto out;
	e = ent_find(m, fid);
	if (!e) {
		if (off != 0 || m->n >= STM_MAX_ENTRIES)
			goto out;
		e = calloc(1, sizeof(*e));
		if (!e)
			goto out;   /* only an optimisation is lost */
		e->fid = fid;
		e->fd = -1;
		e->state = STM_ACTIVE;
		e->last_ms = clk_mono_ms();
		e->next = m->list;
		m->list = e;
		m->n++;
		goto out;
	}
	if (e->state != STM_ACTIVE || e->take)
		goto out;
	e->last_ms = clk_mono_ms();
	if (off < e->guard || off + slack(m) < e->hi) {
		/* Not a sequential append: the write op sends the whole file. */
		e->state = STM_DEAD;
		pthread_cond_broadcast(&m->cv);
		goto out;
	}
	if (off > e->hi) {
		e->hi = off;
		if (e->hi > e->wait_hi && e->hi >= e->persisted + m->o.chunk_size + m->o.lead)
			pthread_cond_broadcast(&m->cv);
	}
out:
	pthread_mutex_unlock(&m->mu);
}

void stm_note_write_end(struct stm *m, uint64_t fid, uint64_t off)
{
	struct stm_ent *e;
	size_t i;

	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	for (i = 0; i < m->nwip; i++)
		if (m->wip[i].fid == fid && m->wip[i].off == off)
			break;
	if (i < m->nwip)
		m->wip[i] = m->wip[--m->nwip];
	else if (m->wip_lost > 0)
		m->wip_lost--;
	for (e = m->list; e; e = e->next) {
		if (e->wip_wait && (e->fid == fid || m->wip_lost == 0)) {
			e->wip_wait = 0;
			pthread_cond_broadcast(&m->cv);
		}
	}
	pthread_mutex_unlock(&m->mu);
}

int stm_take(struct stm *m, uint64_t fid, const char *path, const char *base, uint64_t size,
	     struct be_upload *up, struct be_sums_prefix *seed)
{
	struct be_upload *cand = NULL, loaded;
	struct stm_ent *e;
	char *cbase = NULL, *lbase = NULL;
	struct err err;
	int rc = 0, r, dead = 0;

	if (up)
		memset(up, 0, sizeof(*up));
	if (seed)
		memset(seed, 0, sizeof(*seed));
	if (!m)
		return 0;
	pthread_mutex_lock(&m->mu);
	e = ent_find(m, fid);
	if (e) {
		e->take = 1;
		while (e->busy)
			pthread_cond_wait(&m->cv, &m->mu);
		ent_unlink(m, e);
		dead = e->state != STM_ACTIVE;
		if (e->up)
			m->st.abandoned += dead;
	}
	pthread_mutex_unlock(&m->mu);
	if (e && e->up) {
		cand = e->up;
		cbase = e->base;
	} else {
		/* None in memory: one recorded by an earlier run, or a stale
		 * one a new stream (not begun yet) would have replaced. */
		r = rec_load(m, fid, &loaded, &lbase, &err);
		if (r < 0)
			log_warn(TAG, "file %" PRIu64 ": ignoring its streamed session: %s", fid,
				 err.msg);
		if (r == 1) {
			cand = &loaded;
			cbase = lbase;
		}
	}
	if (!cand)
		goto out;
	rec_drop(m, fid);
	if (!up || dead || strcmp(cand->path, path) != 0 || !same_base(cbase, base) ||
	    size <= cand->persisted) {
		if (up && !dead)
			log_debug(TAG, "upload \"%s\": its streamed session does not fit any "
				  "more; uploading it whole", path);
		cancel_session(m, cand);
		goto out;
	}
	memcpy(up->session, cand->session, sizeof(up->session));
	memcpy(up->path, cand->path, sizeof(up->path));
	up->persisted = cand->persisted;
	up->chunk_size = cand->chunk_size;
	if (seed && e && e->up == cand && e->hash_ok && e->hashed <= size) {
		/* The sums of what was sent: the write op reads only the rest. */
		seed->off = e->hashed;
		seed->crc32c = e->crc;
		seed->md5 = e->md5;
		e->md5.ctx = NULL;
	}
	pthread_mutex_lock(&m->mu);
	m->st.taken++;
	pthread_mutex_unlock(&m->mu);
	rc = 1;
out:
	free(lbase);
	ent_free(e);
	return rc;
}

void stm_get_stats(struct stm *m, struct stm_stats *out)
{
	pthread_mutex_lock(&m->mu);
	*out = m->st;
	pthread_mutex_unlock(&m->mu);
}
