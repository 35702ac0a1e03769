/* Mount assembly: credentials, HTTP client, backend, cache dir, journal and
 * scheduler built from the mount options; flush with progress, status, and
 * the control-socket commands, shared by the daemon and by `durafs sync
 * --flush --cache-dir`. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/clock.h"
#include "durafs/jsonh.h"
#include "durafs/drive.h"
#include "durafs/fs.h"
#include "durafs/gcs.h"
#include "durafs/fs_poll.h"
#include "durafs/http.h"
#include "durafs/layout.h"
#include "durafs/log.h"
#include "durafs/mount.h"

#define MNT_TAG "mount"
#define MNT_FLUSH_TICK_MS 200
#define MNT_LIST_MAX 200        /* failed/conflict ops listed in one reply */

const char *mnt_op_name(int kind)
{
	switch (kind) {
	case JNL_OP_WRITE: return "write";
	case JNL_OP_MKDIR: return "mkdir";
	case JNL_OP_RENAME: return "rename";
	case JNL_OP_UNLINK: return "unlink";
	case JNL_OP_RMDIR: return "rmdir";
	case JNL_OP_SETATTR: return "setattr";
	case JNL_OP_SYMLINK: return "symlink";
	default: return "op";
	}
}

/* ---- setup ------------------------------------------------------------------- */

int mnt_init(struct mnt *m, const struct mopts *mo, struct err *err)
{
	memset(m, 0, sizeof(*m));
	m->mo = mo;
	m->pid = getpid();
	m->started_ms = clk_wall_ms();
	if (!mo->cache_dir || mo->cache_dir[0] != '/')
		return err_set(err, ERR_INVAL, "the cache dir must be an absolute path");
	if (asprintf(&m->files_dir, "%s/files", mo->cache_dir) < 0) {
		m->files_dir = NULL;
		goto nomem;
	}
	if (asprintf(&m->journal_path, "%s/journal.db", mo->cache_dir) < 0) {
		m->journal_path = NULL;
		goto nomem;
	}
	if (asprintf(&m->ctl_path, "%s/" CTL_SOCK_NAME, mo->cache_dir) < 0) {
		m->ctl_path = NULL;
		goto nomem;
	}
	if (!strncmp(mo->source, "gs://", 5) &&
	    gcs_endpoint(mo->endpoint, m->endpoint, sizeof(m->endpoint), &m->emulated, err) < 0)
		return -1;
	if (!strncmp(mo->source, "drive:", 6)) {
		struct drive_source ds;
		int rc;

		/* Validate the source up front: a typo fails before any
		 * credentials are looked for. */
		rc = drive_parse_source(mo->source, &ds, err);
		drive_source_release(&ds);
		if (rc < 0)
			return -1;
		if (drive_endpoint(mo->endpoint, m->endpoint, sizeof(m->endpoint), &m->emulated,
				   err) < 0)
			return -1;
	}
	return 0;
nomem:
	return err_set(err, ERR_NOMEM, "out of memory");
}

/* mkdir -p with mode for every directory created. */
static int mkdirs(const char *path, mode_t mode, struct err *err)
{
	char buf[PATH_MAX];
	size_t i, n = strlen(path);

	if (n >= sizeof(buf))
		return err_set(err, ERR_INVAL, "path too long: %s", path);
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return err_sys(err, "cannot create %s", buf);
		buf[i] = path[i];
	}
	return 0;
}

int mnt_cache_dir_create(struct mnt *m, struct err *err)
{
	const char *dir = m->mo->cache_dir;
	struct stat st;

	if (mkdirs(dir, 0700, err) < 0)
		return -1;
	if (stat(dir, &st) < 0)
		return err_sys(err, "cache dir %s", dir);
	if (!S_ISDIR(st.st_mode))
		return err_set(err, ERR_INVAL, "cache dir %s is not a directory", dir);
	if (st.st_uid != geteuid())
		return err_set(err, ERR_PERM, "cache dir %s belongs to uid %ld, not to us", dir,
			       (long)st.st_uid);
	if ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) < 0)
		return err_sys(err, "cache dir %s: chmod 0700", dir);
	if (mkdir(m->files_dir, 0700) < 0 && errno != EEXIST)
		return err_sys(err, "cannot create %s", m->files_dir);
	return 0;
}

int mnt_remote_open(struct mnt *m, struct err *err)
{
	const struct mopts *mo = m->mo;
	struct auth_opts ao;
	struct http_opts ho;
	struct gcs_opts go;
	struct drive_opts dopt;
	struct auth_info info;
	char *bucket = NULL, *prefix = NULL, *trail = NULL;
	int rc = -1, drive = 0;

	if (!strncmp(mo->source, "drive:", 6)) {
		drive = 1;
	} else if (strncmp(mo->source, "gs://", 5)) {
		return err_set(err, ERR_INVAL, "unknown source '%s'", mo->source);
	} else if (mo->layout == MOPTS_LAYOUT_COLAB) {
		return err_set(err, ERR_INVAL, "-o layout=colab is for Google Drive (drive:); a "
			       "gs:// bucket is mounted as it is");
	} else if (gcs_parse_source(mo->source, &bucket, &prefix, err) < 0) {
		goto out;
	}
	m->no_auth = mo->no_auth || (m->emulated && !mo->token_file && !mo->credentials);
	if (m->no_auth) {
		m->auth_kind = strdup("none");
		log_info(MNT_TAG, "no credentials are sent (%s)", mo->no_auth ? "-o no_auth" :
			 drive ? DRIVE_ENV_ENDPOINT " is set" : "STORAGE_EMULATOR_HOST is set");
	} else {
		memset(&ao, 0, sizeof(ao));
		ao.token_file = mo->token_file;
		ao.credentials = mo->credentials;
		ao.scopes = drive ? AUTH_SCOPE_DRIVE : AUTH_SCOPE_GCS;
		if (auth_adc_open(&ao, &m->auth, &trail, err) < 0) {
			if (trail)
				log_info(MNT_TAG, "credential discovery: %s", trail);
			goto out;
		}
		auth_provider_info(m->auth, &info);
		m->auth_kind = strdup(info.kind ? info.kind : "?");
		log_info(MNT_TAG, "credentials: %s (%s)", info.kind ? info.kind : "?",
			 info.origin ? info.origin : "?");
	}
	memset(&ho, 0, sizeof(ho));
	ho.connect_timeout_ms = 10000;
	ho.low_speed_limit = 1;
	ho.low_speed_time_s = 60;
	/* Retries inside one request stay short (about 5 s in all): a listing
	 * or read the user waits for fails with EIO soon, and uploads are
	 * retried again by the scheduler with its own, longer backoff. */
	ho.max_retries = 4;
	ho.backoff_initial_ms = 250;
	ho.backoff_max_ms = 4000;
	ho.backoff_jitter_ms = 250;
	ho.debug = mo->debug;
	if (!m->no_auth) {
		ho.token = auth_provider_token_fn;
		ho.token_ud = m->auth;
	}
	if (http_new(&ho, &m->http, err) < 0)
		goto out;
	if (drive) {
		memset(&dopt, 0, sizeof(dopt));
		dopt.source = mo->source;
		dopt.endpoint = m->endpoint;
		dopt.http = m->http;
		dopt.docs = mo->docs == MOPTS_DOCS_HIDE ? DRIVE_DOCS_HIDE : DRIVE_DOCS_EXPORT;
		dopt.delete_mode = mo->delete_mode == MOPTS_DELETE_PERMANENT ?
				   DRIVE_DELETE_PERMANENT : DRIVE_DELETE_TRASH;
		dopt.chunk_size = mo->chunk_size;
		if ((mo->layout == MOPTS_LAYOUT_COLAB ? layout_colab_new(&dopt, &m->be, err)
						      : drive_new(&dopt, &m->be, err)) < 0)
			goto out;
		rc = 0;
		goto out;
	}
	memset(&go, 0, sizeof(go));
	go.bucket = bucket;
	go.prefix = prefix;
	go.endpoint = m->endpoint;
	go.http = m->http;
	go.chunk_size = mo->chunk_size;
	if (gcs_new(&go, &m->be, err) < 0)
		goto out;
	rc = 0;
out:
	free(trail);
	free(bucket);
	free(prefix);
	return rc;
}

int mnt_check(struct mnt *m, struct err *err)
{
	if (be_check(m->be, err) < 0) {
		if (err && err->code == ERR_AUTH && m->no_auth)
			err_prefix(err, "the server wants credentials and none are sent (%s; give "
				   "-o token_file=PATH or -o credentials=PATH)",
				   m->mo->no_auth ? "-o no_auth" :
				   !strncmp(m->mo->source, "drive:", 6) ?
				   "$DURAFS_DRIVE_ENDPOINT is set" : "$STORAGE_EMULATOR_HOST is set");
		else if (err && err->code == ERR_AUTH)
			err_prefix(err, "credentials refused (see `durafs auth whoami`)");
		else if (err && (err->code == ERR_NET || err->code == ERR_TIMEOUT))
			err_prefix(err, "cannot reach %s", m->endpoint);
		return -1;
	}
	return 0;
}

int mnt_unreachable(const struct err *e)
{
	if (!e)
		return 0;
	switch (e->code) {
	case ERR_NET:
	case ERR_TIMEOUT:
	case ERR_CANCELED:
		return 1;
	case ERR_HTTP:
		return e->http_status >= 500 && e->http_status <= 599;
	default:
		return 0;
	}
}

static int meta_set_u64(struct jnl *j, const char *key, uint64_t v, struct err *err)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return jnl_meta_set(j, key, buf, err);
}

/* Set key to value, or delete it (empty string) when value is NULL. */
static int meta_set_opt(struct jnl *j, const char *key, const char *value, struct err *err)
{
	return jnl_meta_set(j, key, value ? value : "", err);
}

static int record_meta(struct mnt *m, struct err *err)
{
	const struct mopts *mo = m->mo;

	if (jnl_meta_set(m->jnl, MNT_META_SOURCE, mo->source, err) < 0 ||
	    meta_set_opt(m->jnl, MNT_META_ENDPOINT, mo->endpoint, err) < 0 ||
	    meta_set_opt(m->jnl, MNT_META_TOKEN_FILE, mo->token_file, err) < 0 ||
	    meta_set_opt(m->jnl, MNT_META_CREDENTIALS, mo->credentials, err) < 0 ||
	    jnl_meta_set(m->jnl, MNT_META_NO_AUTH, mo->no_auth ? "1" : "0", err) < 0 ||
	    meta_set_u64(m->jnl, MNT_META_CHUNK, mo->chunk_size, err) < 0 ||
	    meta_set_u64(m->jnl, MNT_META_SMALL_MAX, mo->small_max, err) < 0 ||
	    meta_set_u64(m->jnl, MNT_META_WORKERS, (uint64_t)mo->upload_workers, err) < 0 ||
	    jnl_meta_set(m->jnl, MNT_META_CONFLICT,
			 mo->conflict == MOPTS_CONFLICT_FAIL ? "fail" : "keep-both", err) < 0 ||
	    jnl_meta_set(m->jnl, MNT_META_DOCS, mo->docs == MOPTS_DOCS_HIDE ? "hide" : "export",
			 err) < 0 ||
	    jnl_meta_set(m->jnl, MNT_META_DELETE, mo->delete_mode == MOPTS_DELETE_PERMANENT ?
			 "permanent" : "trash", err) < 0 ||
	    jnl_meta_set(m->jnl, MNT_META_LAYOUT, mo->layout == MOPTS_LAYOUT_COLAB ? "colab" :
			 "plain", err) < 0 ||
	    meta_set_opt(m->jnl, MNT_META_MOUNTPOINT, mo->mountpoint, err) < 0)
		return -1;
	return 0;
}

/* layout=colab: record My Drive's root id and the shared drives (ids and
 * names) the layout knows (nothing when not resolved yet: what is recorded
 * stays), or, offline, give the layout what an earlier mount recorded.
 * A malformed record is logged and ignored (resolved once the remote
 * answers). */
static int colab_meta_save(struct mnt *m, struct err *err)
{
	char *st = layout_state_save(m->be);
	int rc = st ? jnl_meta_set(m->jnl, MNT_META_COLAB, st, err) : 0;

	free(st);
	return rc;
}

static int colab_meta(struct mnt *m, struct err *err)
{
	char *st = NULL;
	struct err e;

	if (!m->offline)
		return colab_meta_save(m, err);
	if (jnl_meta_get(m->jnl, MNT_META_COLAB, &st, err) < 0)
		return -1;
	err_clear(&e);
	if (!st || !*st)
		log_info(MNT_TAG, "no stored drive ids: they are resolved once the remote answers");
	else if (layout_state_restore(m->be, st, &e) < 0)
		log_warn(MNT_TAG, "ignoring the stored drive ids (%s): they are resolved once the "
			 "remote answers", e.msg);
	free(st);
	return 0;
}

/* Drive (layout plain): record the root id mnt_check resolved, or, offline,
 * give the backend the one an earlier mount recorded. layout=colab: its
 * drives' ids (colab_meta). */
static int drive_root_meta(struct mnt *m, struct err *err)
{
	char root[BE_ID_MAX], shared[BE_ID_MAX];
	char *r = NULL, *sd = NULL;
	int rc = -1;

	if (m->be && !strncmp(m->mo->source, "drive:", 6) && m->mo->layout == MOPTS_LAYOUT_COLAB)
		return colab_meta(m, err);
	if (!m->be || strncmp(m->mo->source, "drive:", 6) || m->mo->layout != MOPTS_LAYOUT_PLAIN)
		return 0;
	if (!m->offline) {
		drive_root_id(m->be, root, sizeof(root));
		if (!root[0])
			return 0;   /* not resolved yet: keep what is recorded */
		drive_root_drive_id(m->be, shared, sizeof(shared));
		if (jnl_meta_set(m->jnl, MNT_META_DRIVE_ROOT, root, err) < 0 ||
		    jnl_meta_set(m->jnl, MNT_META_DRIVE_SHARED, shared, err) < 0)
			return -1;
		return 0;
	}
	if (jnl_meta_get(m->jnl, MNT_META_DRIVE_ROOT, &r, err) < 0 ||
	    jnl_meta_get(m->jnl, MNT_META_DRIVE_SHARED, &sd, err) < 0)
		goto out;
	if (!r || !*r)
		log_info(MNT_TAG, "no stored root folder id: it is resolved once the remote "
			 "answers");
	else if (drive_root_restore(m->be, r, sd, err) < 0)
		goto out;
	rc = 0;
out:
	free(r);
	free(sd);
	return rc;
}

int mnt_journal_open(struct mnt *m, int must_exist, struct err *err)
{
	const char *dir = m->mo->cache_dir;
	char *src = NULL;
	struct stat st;
	struct err e;
	int rc = -1;

	if (must_exist && stat(m->journal_path, &st) < 0)
		return err_set(err, ERR_NOTFOUND, "no durafs journal in %s (%s)", dir,
			       strerror(errno));
	if (m->offline && !must_exist && stat(m->journal_path, &st) < 0)
		return err_set(err, ERR_NOTFOUND, "nothing stored for %s in %s", m->mo->source,
			       dir);
	err_clear(&e);
	if (jnl_open(m->journal_path, NULL, &m->jnl, &m->rec, &e) < 0) {
		if (e.code == ERR_IO && e.sys_errno == EBUSY) {
			err_set(err, ERR_IO, "cache dir %s is in use by another mount", dir);
			if (err)
				err->sys_errno = EBUSY;
			return -1;
		}
		if (err)
			*err = e;
		err_prefix(err, "cache dir %s", dir);
		return -1;
	}
	if (jnl_meta_get(m->jnl, MNT_META_SOURCE, &src, err) < 0)
		goto out;
	if (!must_exist && src && *src && strcmp(src, m->mo->source)) {
		err_set(err, ERR_INVAL, "cache dir %s belongs to %s, not %s: give another "
			"--cache-dir", dir, src, m->mo->source);
		goto out;
	}
	if (m->offline && !must_exist && !(src && !strcmp(src, m->mo->source))) {
		err_set(err, ERR_NOTFOUND, "nothing stored for %s in %s", m->mo->source, dir);
		goto out;
	}
	if (!must_exist && (record_meta(m, err) < 0 || drive_root_meta(m, err) < 0))
		goto out;
	if (m->rec.requeued || m->rec.redirtied || m->rec.pending || m->rec.failed ||
	    m->rec.conflicts)
		log_info(MNT_TAG, "journal recovery: %" PRIu64 " ops pending (%" PRIu64
			 " interrupted, %" PRIu64 " files re-queued), %" PRIu64 " failed, %" PRIu64
			 " in conflict", m->rec.pending, m->rec.requeued, m->rec.redirtied,
			 m->rec.failed, m->rec.conflicts);
	rc = 0;
out:
	free(src);
	if (rc < 0) {
		jnl_close(m->jnl);
		m->jnl = NULL;
	}
	return rc;
}

static int meta_get_u64(struct jnl *j, const char *key, uint64_t *v, struct err *err)
{
	char *s = NULL, *end = NULL;
	unsigned long long x;

	if (jnl_meta_get(j, key, &s, err) < 0)
		return -1;
	if (s && *s) {
		errno = 0;
		x = strtoull(s, &end, 10);
		if (!errno && !*end)
			*v = x;
	}
	free(s);
	return 0;
}

static int meta_get_str(struct jnl *j, const char *key, char **v, struct err *err)
{
	char *s = NULL;

	if (jnl_meta_get(j, key, &s, err) < 0)
		return -1;
	if (s && !*s) {
		free(s);
		s = NULL;
	}
	if (s) {
		free(*v);
		*v = s;
	}
	return 0;
}

int mnt_meta_load(struct jnl *j, const char *cache_dir, struct mopts *mo, struct err *err)
{
	uint64_t v;
	char *s = NULL;

	mopts_defaults(mo);
	mo->cache_dir = strdup(cache_dir);
	if (!mo->cache_dir)
		return err_set(err, ERR_NOMEM, "out of memory");
	if (meta_get_str(j, MNT_META_SOURCE, &mo->source, err) < 0 ||
	    meta_get_str(j, MNT_META_ENDPOINT, &mo->endpoint, err) < 0 ||
	    meta_get_str(j, MNT_META_TOKEN_FILE, &mo->token_file, err) < 0 ||
	    meta_get_str(j, MNT_META_CREDENTIALS, &mo->credentials, err) < 0 ||
	    meta_get_str(j, MNT_META_MOUNTPOINT, &mo->mountpoint, err) < 0)
		goto fail;
	if (!mo->source) {
		err_set(err, ERR_INVAL, "the journal in %s records no source: it was never "
			"mounted by this version of durafs", cache_dir);
		goto fail;
	}
	v = mo->chunk_size;
	if (meta_get_u64(j, MNT_META_CHUNK, &v, err) < 0)
		goto fail;
	if (be_chunk_size_valid(v))
		mo->chunk_size = v;
	v = mo->small_max;
	if (meta_get_u64(j, MNT_META_SMALL_MAX, &v, err) < 0)
		goto fail;
	mo->small_max = v;
	v = (uint64_t)mo->upload_workers;
	if (meta_get_u64(j, MNT_META_WORKERS, &v, err) < 0)
		goto fail;
	if (v >= 1 && v <= 256)
		mo->upload_workers = (int)v;
	if (jnl_meta_get(j, MNT_META_NO_AUTH, &s, err) < 0)
		goto fail;
	mo->no_auth = s && !strcmp(s, "1");
	free(s);
	s = NULL;
	if (jnl_meta_get(j, MNT_META_CONFLICT, &s, err) < 0)
		goto fail;
	mo->conflict = s && !strcmp(s, "fail") ? MOPTS_CONFLICT_FAIL : MOPTS_CONFLICT_KEEP_BOTH;
	free(s);
	s = NULL;
	if (jnl_meta_get(j, MNT_META_DOCS, &s, err) < 0)
		goto fail;
	mo->docs = s && !strcmp(s, "hide") ? MOPTS_DOCS_HIDE : MOPTS_DOCS_EXPORT;
	free(s);
	s = NULL;
	/* A replayed unlink must delete the way the mount promised. */
	if (jnl_meta_get(j, MNT_META_DELETE, &s, err) < 0)
		goto fail;
	mo->delete_mode = s && !strcmp(s, "permanent") ? MOPTS_DELETE_PERMANENT
						       : MOPTS_DELETE_TRASH;
	free(s);
	s = NULL;
	/* Journaled paths are layout paths (MyDrive/...): replay the same way. */
	if (jnl_meta_get(j, MNT_META_LAYOUT, &s, err) < 0)
		goto fail;
	mo->layout = s && !strcmp(s, "colab") ? MOPTS_LAYOUT_COLAB : MOPTS_LAYOUT_PLAIN;
	free(s);
	return 0;
fail:
	mopts_release(mo);
	return -1;
}

int mnt_cache_dir_open(const char *dir, const char *busy_cmd, char **abs, struct jnl **j,
		       struct mopts *mo, struct err *err)
{
	char *jpath = NULL;
	struct stat st;
	int rc = -1;

	*j = NULL;
	*abs = mopts_abs_path(dir);
	if (!*abs || asprintf(&jpath, "%s/journal.db", *abs) < 0) {
		jpath = NULL;
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (stat(jpath, &st) < 0) {
		err_set(err, ERR_NOTFOUND, "no durafs journal in %s (%s)", *abs, strerror(errno));
		goto out;
	}
	if (jnl_open(jpath, NULL, j, NULL, err) < 0) {
		if (err->code == ERR_IO && err->sys_errno == EBUSY) {
			err_set(err, ERR_IO, "cache dir %s is in use by a running mount: use `%s`",
				*abs, busy_cmd);
			err->sys_errno = EBUSY;
		}
		goto out;
	}
	if (mnt_meta_load(*j, *abs, mo, err) < 0) {
		jnl_close(*j);
		*j = NULL;
		goto out;
	}
	rc = 0;
out:
	free(jpath);
	return rc;
}

int mnt_sched_start(struct mnt *m, struct err *err)
{
	struct sched_opts so;

	memset(&so, 0, sizeof(so));
	so.workers = m->mo->upload_workers;
	so.chunk_size = m->mo->chunk_size;
	so.small_max = m->mo->small_max;
	/* Drive takes one-request (multipart) uploads up to 5 MB only. */
	if (!strncmp(m->mo->source, "drive:", 6) && so.small_max > DRIVE_SMALL_MAX)
		so.small_max = DRIVE_SMALL_MAX;
	so.files_dir = m->files_dir;
	so.no_stream = m->mo->stream_uploads == MOPTS_STREAM_OFF;
	so.conflict_fail = m->mo->conflict == MOPTS_CONFLICT_FAIL;
	so.retry_initial_ms = m->mo->retry_max_ms < 1000 ? m->mo->retry_max_ms : 1000;
	so.retry_max_ms = m->mo->retry_max_ms;
	so.http = m->http;  /* sch_stop cancels its requests: unmount is prompt */
	/* Drive deletes a folder with its contents: removals inside folders
	 * wait the writeback delay, so an `rm -rf` becomes one call. */
	if (m->be && (be_caps(m->be) & BE_CAP_RMDIR_TREE))
		jnl_set_removal_delay(m->jnl, m->mo->writeback_delay_ms);
	if (sch_new(m->jnl, m->be, &so, &m->sched, err) < 0)
		return -1;
	return sch_start(m->sched, err);
}

void mnt_release(struct mnt *m)
{
	struct err e;

	if (!m)
		return;
	if (m->sched)
		sch_stop(m->sched);
	sch_free(m->sched);
	/* The shared drives may have been listed since the mount started. */
	if (m->jnl && m->be && m->mo && !strncmp(m->mo->source, "drive:", 6) &&
	    m->mo->layout == MOPTS_LAYOUT_COLAB && colab_meta_save(m, &e) < 0)
		log_debug(MNT_TAG, "recording the drive ids: %s", e.msg);
	jnl_close(m->jnl);
	be_free(m->be);
	http_free(m->http);
	if (m->auth)
		auth_provider_free(m->auth);
	free(m->auth_kind);
	free(m->files_dir);
	free(m->journal_path);
	free(m->ctl_path);
	memset(m, 0, sizeof(*m));
}

/* ---- flush ---------------------------------------------------------------------- */

static json_t *op_json(const struct jnl_op *op)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "seq", json_integer((json_int_t)op->seq));
	json_object_set_new(o, "op", json_string(mnt_op_name(op->kind)));
	json_object_set_new(o, "path", jsonh_string_lossy(op->path ? op->path : ""));
	if (op->path2)
		json_object_set_new(o, "path2", jsonh_string_lossy(op->path2));
	json_object_set_new(o, "state", json_string(op->state == JNL_CONFLICT ? "conflict" :
						    op->state == JNL_FAILED ? "failed" :
						    op->state == JNL_IN_PROGRESS ? "uploading" :
						    "pending"));
	json_object_set_new(o, "error", json_string(op->err_code ? err_code_name(op->err_code) :
						    ""));
	json_object_set_new(o, "reason", jsonh_string_lossy(op->err_msg ? op->err_msg : ""));
	json_object_set_new(o, "attempts", json_integer((json_int_t)op->attempts));
	if (op->conflict_name)
		json_object_set_new(o, "copy", jsonh_string_lossy(op->conflict_name));
	return o;
}

/* Failed and conflict ops with seq <= up_to (0: all), as a JSON array. */
static json_t *bad_ops(struct mnt *m, uint64_t up_to)
{
	struct jnl_op *v = NULL;
	size_t n = 0, i;
	json_t *a = json_array();
	struct err e;

	if (!a)
		return NULL;
	if (jnl_list_ops(m->jnl, JNL_MASK(JNL_FAILED) | JNL_MASK(JNL_CONFLICT), 0, &v, &n,
			 &e) < 0) {
		log_warn(MNT_TAG, "cannot list failed operations: %s", e.msg);
		return a;
	}
	for (i = 0; i < n && json_array_size(a) < MNT_LIST_MAX; i++) {
		if (up_to && v[i].seq > up_to)
			continue;
		json_array_append_new(a, op_json(&v[i]));
	}
	jnl_ops_free(v, n);
	return a;
}

/* Append to e's message what a timed-out flush still waits for: how many
 * ops, the first paths, and the last error of the first one retried (the
 * remote being down shows here). */
static void waiting_summary(struct mnt *m, uint64_t up_to, struct err *e)
{
	struct jnl_op *v = NULL;
	size_t n = 0, i, k = 0, len = strlen(e->msg);
	const struct jnl_op *why = NULL;

	if (jnl_list_ops(m->jnl, JNL_MASK(JNL_PENDING) | JNL_MASK(JNL_IN_PROGRESS), 0, &v, &n,
			 NULL) < 0)
		return;
	for (i = 0; i < n; i++) {
		if (up_to && v[i].seq > up_to)
			continue;
		if (k < 3 && len < sizeof(e->msg))
			len += (size_t)snprintf(e->msg + len, sizeof(e->msg) - len, "%s%s",
						k ? ", " : "; waiting: ", v[i].path ? v[i].path : "?");
		if (!why && v[i].err_msg && v[i].err_msg[0])
			why = &v[i];
		k++;
	}
	if (k > 3 && len < sizeof(e->msg))
		len += (size_t)snprintf(e->msg + len, sizeof(e->msg) - len, " and %zu more", k - 3);
	if (why && len < sizeof(e->msg))
		snprintf(e->msg + len, sizeof(e->msg) - len, " (last error: %s)", why->err_msg);
	jnl_ops_free(v, n);
}

int mnt_flush(struct mnt *m, int64_t timeout_ms, mnt_progress_fn fn, void *ud,
	      json_t **failed, struct err *err)
{
	uint64_t up_to = jnl_last_seq(m->jnl);
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : clk_mono_ms() + timeout_ms;
	struct jnl_progress p;
	struct err e;
	int rc, stop = 0;

	if (failed)
		*failed = NULL;
	/* The first sample, taken before the queue is released, gives the display
	 * its totals: a small file could otherwise commit before it is counted. */
	if (fn && jnl_progress(m->jnl, up_to, &p, NULL) == 0 && fn(ud, &p))
		stop = 1;
	if (jnl_expedite(m->jnl, 0, up_to, err) < 0)
		return -1;
	for (;;) {
		int64_t left = deadline == INT64_MAX ? INT64_MAX : deadline - clk_mono_ms();
		int64_t slice = left < MNT_FLUSH_TICK_MS ? left : MNT_FLUSH_TICK_MS;

		if (slice < 0)
			slice = 0;
		err_clear(&e);
		rc = jnl_wait_all(m->jnl, up_to, slice, JNL_WAIT_SETTLE, &e);
		if (rc == 0 || e.code != ERR_TIMEOUT)
			break;
		if (fn && jnl_progress(m->jnl, up_to, &p, NULL) == 0 && fn(ud, &p))
			stop = 1;
		if (stop || atomic_load(&m->stopping)) {
			err_set(&e, ERR_CANCELED, "flush interrupted; the changes stay queued");
			break;
		}
		if (left != INT64_MAX && left - slice <= 0) {
			err_set(&e, ERR_TIMEOUT, "flush timed out after %" PRId64 " ms; the changes "
				"stay queued", timeout_ms);
			waiting_summary(m, up_to, &e);
			break;
		}
	}
	if (fn && jnl_progress(m->jnl, up_to, &p, NULL) == 0)
		fn(ud, &p);
	if (rc == 0)
		return 0;
	if (failed && e.code != ERR_TIMEOUT && e.code != ERR_CANCELED)
		*failed = bad_ops(m, up_to);
	if (err)
		*err = e;
	return -1;
}

int mnt_retry_failed(struct mnt *m, uint64_t *retried, struct err *err)
{
	struct jnl_op *v = NULL;
	size_t n = 0, i;
	uint64_t k = 0;

	if (jnl_list_ops(m->jnl, JNL_MASK(JNL_FAILED), 0, &v, &n, err) < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (jnl_retry(m->jnl, v[i].seq, NULL) == 0)
			k++;
	jnl_ops_free(v, n);
	if (k)
		log_info(MNT_TAG, "%" PRIu64 " failed operations sent back to the queue", k);
	if (retried)
		*retried = k;
	return 0;
}

int mnt_ack_conflicts(struct mnt *m, uint64_t *resolved, struct err *err)
{
	struct jnl_op *v = NULL;
	size_t n = 0, i;
	uint64_t k = 0;

	if (jnl_list_ops(m->jnl, JNL_MASK(JNL_CONFLICT), 0, &v, &n, err) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (jnl_resolve(m->jnl, v[i].seq, NULL) == 0) {
			k++;
			log_info(MNT_TAG, "conflict of %s acknowledged (local version kept as %s)",
				 v[i].path ? v[i].path : "?",
				 v[i].conflict_name ? v[i].conflict_name : "?");
		}
	}
	jnl_ops_free(v, n);
	if (resolved)
		*resolved = k;
	return 0;
}

/* ---- status ------------------------------------------------------------------------ */

static void set_u64(json_t *o, const char *k, uint64_t v)
{
	json_object_set_new(o, k, json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX
					       : (json_int_t)v));
}

static json_t *status_ops(struct mnt *m, json_t *st)
{
	struct jnl_op *v = NULL;
	size_t n = 0, i;
	json_t *failed = json_array(), *conflicts = json_array(), *retrying = json_array();
	struct err e;

	if (!failed || !conflicts || !retrying)
		goto out;
	if (jnl_list_ops(m->jnl, JNL_MASK(JNL_FAILED) | JNL_MASK(JNL_CONFLICT) |
			 JNL_MASK(JNL_PENDING), 0, &v, &n, &e) < 0) {
		json_object_set_new(st, "journal_error", jsonh_string_lossy(e.msg));
		n = 0;
	}
	for (i = 0; i < n; i++) {
		json_t *target = v[i].state == JNL_FAILED ? failed :
				 v[i].state == JNL_CONFLICT ? conflicts :
				 v[i].err_code ? retrying : NULL;

		if (target && json_array_size(target) < MNT_LIST_MAX)
			json_array_append_new(target, op_json(&v[i]));
	}
	jnl_ops_free(v, n);
out:
	json_object_set_new(st, "failed", failed ? failed : json_array());
	json_object_set_new(st, "conflicts", conflicts ? conflicts : json_array());
	json_object_set_new(st, "retrying", retrying ? retrying : json_array());
	return st;
}

json_t *mnt_status(struct mnt *m)
{
	const struct mopts *mo = m->mo;
	json_t *st = json_object(), *o;
	struct jnl_stats js;
	struct sched_stats ss;
	struct sched_upload *up = NULL;
	size_t nup = 0, i;
	struct err e;
	char ts[64];
	time_t t = (time_t)(m->started_ms / 1000);
	struct tm tm;

	if (!st)
		return NULL;
	json_object_set_new(st, "version", json_string(DURAFS_VERSION));
	o = json_object();
	json_object_set_new(o, "source", jsonh_string_lossy(mo->source ? mo->source : ""));
	json_object_set_new(o, "mountpoint", mo->mountpoint && m->fs ? jsonh_string_lossy(mo->mountpoint)
								     : json_null());
	json_object_set_new(o, "cache_dir", jsonh_string_lossy(mo->cache_dir));
	if (!m->fs) {
		json_object_set_new(o, "log", json_null());
	} else if (mo->log_file || mo->foreground) {
		json_object_set_new(o, "log", jsonh_string_lossy(mo->log_file ? mo->log_file : "stderr"));
	} else {
		char *lp = NULL;

		if (asprintf(&lp, "%s/durafs.log", mo->cache_dir) < 0)
			lp = NULL;
		json_object_set_new(o, "log", lp ? jsonh_string_lossy(lp) : json_null());
		free(lp);
	}
	json_object_set_new(o, "backend", json_string(m->be ? be_name(m->be) : ""));
	json_object_set_new(o, "endpoint", json_string(m->endpoint));
	json_object_set_new(o, "auth", json_string(m->auth_kind ? m->auth_kind : ""));
	json_object_set_new(o, "pid", json_integer(m->pid));
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, "started", json_string(ts));
	json_object_set_new(o, "uptime_s", json_integer((clk_wall_ms() - m->started_ms) / 1000));
	json_object_set_new(o, "read_only", json_boolean(mo->ro));
	json_object_set_new(o, "daemon", json_boolean(m->fs != NULL));
	json_object_set_new(o, "started_offline", json_boolean(m->offline));
	json_object_set_new(st, "mount", o);

	memset(&js, 0, sizeof(js));
	if (jnl_stats(m->jnl, &js, &e) < 0)
		json_object_set_new(st, "journal_error", jsonh_string_lossy(e.msg));
	o = json_object();
	set_u64(o, "ops", js.pending_ops + js.inflight_ops);
	set_u64(o, "bytes", js.pending_bytes + (js.inflight_bytes - js.inflight_persisted));
	set_u64(o, "waiting_ops", js.pending_ops);
	set_u64(o, "retrying_ops", js.retrying_ops);
	set_u64(o, "dirty_files", js.dirty_files);
	json_object_set_new(st, "pending", o);

	o = json_array();
	if (m->sched && sch_uploads(m->sched, &up, &nup, &e) == 0) {
		for (i = 0; i < nup; i++) {
			json_t *u = json_object();

			json_object_set_new(u, "path", jsonh_string_lossy(up[i].path ? up[i].path : ""));
			set_u64(u, "seq", up[i].seq);
			set_u64(u, "total", up[i].total);
			set_u64(u, "persisted", up[i].persisted);
			set_u64(u, "attempts", up[i].attempts);
			json_object_set_new(u, "snapshot", json_boolean(up[i].snapshot));
			json_array_append_new(o, u);
		}
		sch_uploads_free(up, nup);
	}
	json_object_set_new(st, "uploads", o);
	o = json_object();
	set_u64(o, "ops", js.inflight_ops);
	set_u64(o, "bytes", js.inflight_bytes);
	set_u64(o, "persisted", js.inflight_persisted);
	json_object_set_new(st, "inflight", o);

	memset(&ss, 0, sizeof(ss));
	if (m->sched)
		sch_get_stats(m->sched, &ss);
	o = json_object();
	set_u64(o, "ops", ss.ops_done);
	set_u64(o, "bytes", ss.bytes_uploaded);
	json_object_set_new(st, "committed", o);
	set_u64(st, "retries", ss.retries);
	o = json_object();
	set_u64(o, "failures", ss.failures);
	set_u64(o, "conflicts", ss.conflicts);
	set_u64(o, "sessions_resumed", ss.sessions_resumed);
	set_u64(o, "sessions_restarted", ss.sessions_restarted);
	json_object_set_new(st, "events", o);

	status_ops(m, st);

	o = json_object();
	if (m->fs) {
		struct fs_cache_stats cs;

		fs_cache_stats(m->fs, &cs);
		set_u64(o, "clean_bytes", cs.clean_bytes);
		set_u64(o, "clean_files", cs.clean_files);
		set_u64(o, "dirty_bytes", cs.dirty_bytes);
		set_u64(o, "dirty_files", cs.dirty_files);
		set_u64(o, "limit", cs.limit);
		set_u64(o, "evicted_bytes", cs.evicted_bytes);
	} else {
		uint64_t b = 0, f = 0;

		if (jnl_cache_usage(m->jnl, &b, &f, NULL) == 0) {
			set_u64(o, "clean_bytes", b);
			set_u64(o, "clean_files", f);
		}
		set_u64(o, "dirty_files", js.dirty_files);
		set_u64(o, "limit", mo->cache_size);
	}
	json_object_set_new(st, "cache", o);

	if (m->fs && mo->poll_interval_ms > 0 && be_has_changes(m->be)) {
		struct fs_poll_stats ps;

		fs_poll_stats(m->fs, &ps);
		o = json_object();
		set_u64(o, "interval_ms", (uint64_t)mo->poll_interval_ms);
		set_u64(o, "polls", ps.polls);
		set_u64(o, "failures", ps.failures);
		set_u64(o, "changes", ps.changes);
		set_u64(o, "refreshed", ps.refreshed);
		set_u64(o, "last_ok_ms", ps.last_ok_ms > 0 ? (uint64_t)ps.last_ok_ms : 0);
		json_object_set_new(st, "remote_changes", o);
	}

	o = json_object();
	json_object_set_new(o, "path", jsonh_string_lossy(m->journal_path ? m->journal_path : ""));
	set_u64(o, "last_seq", js.last_seq);
	set_u64(o, "failed_ops", js.failed_ops);
	set_u64(o, "conflict_ops", js.conflict_ops);
	set_u64(o, "committed_ops", js.committed_ops);
	set_u64(o, "committed_bytes", js.committed_bytes);
	json_object_set_new(st, "journal", o);

	if (m->http) {
		struct http_stats hs;

		http_get_stats(m->http, &hs);
		o = json_object();
		set_u64(o, "requests", hs.requests);
		set_u64(o, "retries", hs.retries);
		set_u64(o, "bytes_up", hs.bytes_up);
		set_u64(o, "bytes_down", hs.bytes_down);
		json_object_set_new(st, "http", o);
	}
	return st;
}

/* ---- control commands ---------------------------------------------------------------- */

struct flush_ctx {
	struct ctl_conn *c;
};

static int flush_progress(void *ud, const struct jnl_progress *p)
{
	struct flush_ctx *fc = ud;
	json_t *j = json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I}}", "progress",
			      "ops_left", (json_int_t)p->ops_left,
			      "bytes_left", (json_int_t)p->bytes_left,
			      "failed", (json_int_t)p->failed,
			      "conflicts", (json_int_t)p->conflicts,
			      "committed_ops", (json_int_t)p->committed_ops,
			      "committed_bytes", (json_int_t)p->committed_bytes);
	int rc = 0;

	if (j) {
		rc = ctl_send(fc->c, j);
		json_decref(j);
	}
	return rc < 0 || ctl_cancelled(fc->c);
}

static void cmd_flush(struct mnt *m, struct ctl_conn *c, const json_t *req)
{
	json_t *jt = json_object_get(req, "timeout_ms"), *failed = NULL, *r = NULL;
	int64_t timeout = -1;
	struct flush_ctx fc = { c };
	struct err e;

	if (jt && !json_is_null(jt)) {
		if (!json_is_integer(jt) || json_integer_value(jt) < 0) {
			ctl_send_error(c, "flush: timeout_ms must be a non-negative integer");
			return;
		}
		timeout = json_integer_value(jt);
	}
	if (json_is_true(json_object_get(req, "retry"))) {
		uint64_t k = 0;

		if (mnt_retry_failed(m, &k, &e) < 0) {
			ctl_send_error(c, e.msg);
			return;
		}
	}
	err_clear(&e);
	if (mnt_flush(m, timeout, flush_progress, &fc, &failed, &e) == 0) {
		r = json_pack("{s:s}", "result", "ok");
	} else {
		r = json_pack("{s:s, s:s, s:s}", "result", "error", "error", e.msg,
			      "code", err_code_name(e.code));
		if (r && failed)
			json_object_set(r, "failed", failed);
		if (r && e.code == ERR_TIMEOUT)
			json_object_set_new(r, "timeout", json_true());
	}
	json_decref(failed);
	if (r) {
		ctl_send(c, r);
		json_decref(r);
	} else {
		ctl_send_error(c, "out of memory");
	}
}

void mnt_ctl_handler(void *ud, struct ctl_conn *c, const json_t *req)
{
	struct mnt *m = ud;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	json_t *r = NULL;
	struct err e;
	uint64_t k = 0;

	err_clear(&e);
	if (!cmd) {
		ctl_send_error(c, "bad request: no \"cmd\"");
		return;
	}
	if (atomic_load(&m->stopping) && strcmp(cmd, "ping")) {
		ctl_send_error(c, "the mount is shutting down");
		return;
	}
	if (!strcmp(cmd, "flush")) {
		cmd_flush(m, c, req);
		return;
	}
	if (!strcmp(cmd, "status")) {
		json_t *st = mnt_status(m);

		if (!st) {
			ctl_send_error(c, "out of memory");
			return;
		}
		r = json_pack("{s:s, s:o}", "result", "ok", "status", st);
	} else if (!strcmp(cmd, "ping")) {
		r = json_pack("{s:s, s:i}", "result", "ok", "pid", (int)m->pid);
	} else if (!strcmp(cmd, "retry")) {
		if (mnt_retry_failed(m, &k, &e) < 0) {
			ctl_send_error(c, e.msg);
			return;
		}
		r = json_pack("{s:s, s:I}", "result", "ok", "retried", (json_int_t)k);
	} else if (!strcmp(cmd, "ack_conflicts")) {
		if (mnt_ack_conflicts(m, &k, &e) < 0) {
			ctl_send_error(c, e.msg);
			return;
		}
		r = json_pack("{s:s, s:I}", "result", "ok", "resolved", (json_int_t)k);
	} else if (!strcmp(cmd, "unmount")) {
		if (!m->unmount_fn) {
			ctl_send_error(c, "unmount is not available here");
			return;
		}
		if (m->unmount_fn(m->unmount_ud, &e) < 0) {
			ctl_send_error(c, e.msg);
			return;
		}
		r = json_pack("{s:s}", "result", "ok");
	} else {
		char msg[160];

		snprintf(msg, sizeof(msg), "unknown command \"%.64s\"", cmd);
		ctl_send_error(c, msg);
		return;
	}
	if (r) {
		ctl_send(c, r);
		json_decref(r);
	} else {
		ctl_send_error(c, "out of memory");
	}
}
