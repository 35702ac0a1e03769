/* The filesystem-core tests' shared fixture: an emulator-backed GCS world
 * with a journal, a scheduler and a struct fs per test. Contract:
 * tests/unit/fs_fixture.h. */
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
#include "fs_fixture.h"
#include "unit_util.h"
#include "../../fs/fs_i.h"

int ffx_group_start(const char *name, const char *bucket, struct emuh **emu,
		    struct http **http)
{
	struct emuh_opts eo;
	struct http_opts ho;
	struct err e;

	memset(&eo, 0, sizeof(eo));
	eo.no_auth = 1;
	memset(&ho, 0, sizeof(ho));
	ho.max_retries = 2;
	ho.backoff_initial_ms = 2;
	ho.backoff_max_ms = 10;
	if (emuh_test_start(name, &eo, &ho, emu, http) < 0)
		return -1;
	if (emuh_gcs_bucket(*emu, bucket, 0, &e) < 0) {
		fprintf(stderr, "%s: setup: %s\n", name, e.msg);
		return -1;
	}
	return 0;
}

void ffx_group_stop(struct emuh *emu, struct http *http)
{
	emuh_test_stop(emu, http);
}

struct fs_fx *ffx_new(struct emuh *emu, struct http *http, const char *bucket,
		      const char *tmpl)
{
	struct fs_fx *f = calloc(1, sizeof(*f));
	struct gcs_opts go;
	struct sched_opts so;
	struct fs_config cfg;
	char jpath[256];

	assert_non_null(f);
	UT_OK(emuh_reset(emu, &e_));
	UT_OK(emuh_gcs_bucket(emu, bucket, 0, &e_));
	snprintf(f->dir, sizeof(f->dir), "%s", tmpl);
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->files, sizeof(f->files), "%s/files", f->dir);
	assert_int_equal(mkdir(f->files, 0700), 0);
	snprintf(jpath, sizeof(jpath), "%s/journal.db", f->dir);
	memset(&go, 0, sizeof(go));
	go.bucket = bucket;
	go.endpoint = emuh_url(emu);
	go.http = http;
	UT_OK(gcs_new(&go, &f->be, &e_));
	UT_OK(jnl_open(jpath, NULL, &f->j, NULL, &e_));
	memset(&so, 0, sizeof(so));
	so.files_dir = f->files;
	so.http = http;
	UT_OK(sch_new(f->j, f->be, &so, &f->s, &e_));
	mopts_defaults(&f->mo);
	f->mo.dir_cache_ttl_ms = 60000;
	f->mo.poll_interval_ms = 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = f->be;
	cfg.jnl = f->j;
	cfg.sched = f->s;
	cfg.mo = &f->mo;
	cfg.files_dir = f->files;
	UT_OK(fs_new(&cfg, &f->fs, &e_));
	return f;
}

void ffx_free(struct fs_fx *f, struct http *http)
{
	char cmd[256];

	/* A background fetch held by a latency fault ends at once. */
	http_cancel_all(http);
	fs_free(f->fs);
	sch_free(f->s);
	http_uncancel(http);
	jnl_close(f->j);
	be_free(f->be);
	mopts_release(&f->mo);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
}
