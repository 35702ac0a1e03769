/* The filesystem-core tests' shared fixture (test_fs_dir_emu.c,
 * test_fs_rc_emu.c): an emulator with a GCS bucket for the group, and per
 * test a cache dir, a GCS backend, a journal, a scheduler and a struct fs
 * over them. Linked into every unit test (Makefile UNIT_EXTRA). */
#ifndef DURAFS_FS_FIXTURE_H
#define DURAFS_FS_FIXTURE_H

#include "durafs/backend.h"
#include "durafs/http.h"
#include "durafs/journal.h"
#include "durafs/mopts.h"
#include "durafs/sched.h"
#include "emu_harness.h"

struct fs;

/* One test's world; mo is what fs reads its options from (dir_cache_ttl
 * 60 s, polling off), so a test may change it after ffx_new. */
struct fs_fx {
	char dir[128];
	char files[192];
	struct be *be;
	struct jnl *j;
	struct sched *s;
	struct mopts mo;
	struct fs *fs;
};

/* Starts the no-auth emulator with bucket and a quick-retry HTTP client
 * for the test program name; 0, or -1 with a message on stderr. */
int ffx_group_start(const char *name, const char *bucket, struct emuh **emu,
		    struct http **http);
void ffx_group_stop(struct emuh *emu, struct http *http);

/* A fresh world (the emulator reset, bucket recreated) in a new temporary
 * dir named from tmpl (mkdtemp template); fails the test on any error. */
struct fs_fx *ffx_new(struct emuh *emu, struct http *http, const char *bucket,
		      const char *tmpl);
/* Cancels background fetches (http_cancel_all), frees everything,
 * removes the dir. */
void ffx_free(struct fs_fx *f, struct http *http);

#endif
