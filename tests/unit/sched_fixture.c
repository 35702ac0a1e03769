/* The scheduler tests' shared fixture (sched_fixture.h): group and per-test
 * setup around a real emulator, GCS backend, journal and scheduler, plus
 * the helpers that make local files and check remote ones. Test-only code:
 * failures end the current test through cmocka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "durafs/gcs.h"
#include "sched_fixture.h"
#include "unit_util.h"

int sfx_group_start(const char *who, const char *bucket, int persistent,
		    const struct sfx_group_opts *o, struct emuh **emu, struct http **http,
		    struct be **be)
{
	struct emuh_opts eo;
	struct http_opts ho;
	struct gcs_opts go;
	struct err e;

	memset(&eo, 0, sizeof(eo));
	eo.no_auth = 1;
	eo.persistent = persistent;
	memset(&ho, 0, sizeof(ho));
	ho.max_retries = o->max_retries;
	ho.backoff_initial_ms = 2;
	ho.backoff_max_ms = o->backoff_max_ms;
	ho.backoff_jitter_ms = o->jitter_ms;
	ho.connect_timeout_ms = 1000;
	ho.low_speed_time_s = 5;
	if (emuh_test_start(who, &eo, &ho, emu, http) < 0)
		return -1;
	memset(&go, 0, sizeof(go));
	go.bucket = bucket;
	go.endpoint = emuh_url(*emu);
	go.http = *http;
	go.chunk_size = o->chunk_size;
	go.retry_base_ms = 2;
	go.chunk_max_failures = 30;
	if (gcs_new(&go, be, &e) < 0) {
		fprintf(stderr, "%s: gcs: %s\n", who, e.msg);
		return -1;
	}
	return 0;
}

void sfx_group_stop(struct emuh *emu, struct http *http, struct be *be)
{
	be_free(be);
	emuh_test_stop(emu, http);
}

void sfx_default_opts(struct sched_opts *o, const char *files_dir, struct http *http)
{
	memset(o, 0, sizeof(*o));
	o->workers = 4;
	o->chunk_size = 256 * 1024;
	o->small_max = 256 * 1024;
	o->files_dir = files_dir;
	o->retry_initial_ms = 30;
	o->retry_max_ms = 300;
	o->housekeeping_ms = 100;
	o->renew_ms = 500;
	o->http = http;
}

int sfx_setup(struct sfx *f, const char *who, struct emuh *emu, const char *bucket,
	      struct http *http)
{
	struct err e;

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	snprintf(f->dir, sizeof(f->dir), "/tmp/durafs-sfx-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->files, sizeof(f->files), "%s/files", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/journal.db", f->dir);
	if (mkdir(f->files, 0700) < 0)
		return -1;
	if (emuh_reset(emu, &e) < 0 || emuh_gcs_bucket(emu, bucket, 0, &e) < 0) {
		fprintf(stderr, "%s: reset: %s\n", who, e.msg);
		return -1;
	}
	if (jnl_open(f->db, NULL, &f->j, NULL, &e) < 0) {
		fprintf(stderr, "%s: journal: %s\n", who, e.msg);
		return -1;
	}
	sfx_default_opts(&f->so, f->files, http);
	return 0;
}

int sfx_teardown(struct sfx *f, struct emuh *emu)
{
	char cmd[128];

	emuh_must_faults(emu, "[]");
	sch_free(f->s);
	f->s = NULL;
	jnl_close(f->j);
	f->j = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	pthread_mutex_destroy(&f->mu);
	return 0;
}

void sfx_on_event(void *ud, const struct sched_event *ev)
{
	struct sfx *f = ud;

	pthread_mutex_lock(&f->mu);
	if (ev->kind == SCHED_EV_COMMITTED)
		f->ev_committed++;
	else if (ev->kind == SCHED_EV_FAILED)
		f->ev_failed++;
	else if (ev->kind == SCHED_EV_CONFLICT) {
		f->ev_conflict++;
		snprintf(f->conflict_path, sizeof(f->conflict_path), "%s", ev->path);
		snprintf(f->conflict_copy, sizeof(f->conflict_copy), "%s",
			 ev->path2 ? ev->path2 : "");
	}
	pthread_mutex_unlock(&f->mu);
}

void sfx_start(struct sfx *f, struct be *be)
{
	UT_OK(sch_new(f->j, be, &f->so, &f->s, &e_));
	sch_set_event_fn(f->s, sfx_on_event, f);
	UT_OK(sch_start(f->s, &e_));
}

void sfx_cache_path(const struct sfx *f, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->files, name);
}

uint64_t sfx_new_file(struct sfx *f, const char *path, const void *data, size_t n,
		      int64_t delay_ms)
{
	char name[32], cp[256];
	uint64_t fid = 0, seq = 0;
	int64_t mt = ut_wall_ns();

	snprintf(name, sizeof(name), "c%06u", ++f->next_cache);
	sfx_cache_path(f, name, cp, sizeof(cp));
	ut_write_at(cp, data, n, 0, 1);
	UT_OK(jnl_file_new(f->j, path, JNL_FILE, name, NULL, n, mt, &fid, &e_));
	UT_OK(jnl_write(f->j, fid, n, mt, delay_ms, &seq, &e_));
	assert_true(seq > 0);
	return fid;
}

int sfx_remote_exists(struct be *be, const char *path)
{
	struct be_entry ent;
	struct err e;
	int rc;

	memset(&ent, 0, sizeof(ent));
	rc = be_stat(be, path, &ent, &e);
	if (rc < 0 && e.code != ERR_NOTFOUND)
		fail_msg("stat %s: %s", path, e.msg);
	be_entry_release(&ent);
	return rc == 0;
}
