/* The scheduler tests' shared fixture: an emulator with a GCS backend for
 * the group (test_sched.c, test_sched_writers.c, test_stream.c), and per
 * test a cache dir with files/ and journal.db, a journal, a scheduler and
 * the events it emitted (test_sched.c, test_stream.c). Linked into every
 * unit test (Makefile UNIT_EXTRA). */
#ifndef DURAFS_SCHED_FIXTURE_H
#define DURAFS_SCHED_FIXTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "durafs/backend.h"
#include "durafs/http.h"
#include "durafs/journal.h"
#include "durafs/sched.h"
#include "emu_harness.h"

/* One test's world. The event fields are written by sfx_on_event under mu. */
struct sfx {
	char dir[64];
	char files[96];
	char db[96];
	struct jnl *j;
	struct sched *s;
	struct sched_opts so;
	unsigned next_cache;
	pthread_mutex_t mu;
	int ev_committed, ev_conflict, ev_failed;
	char conflict_path[4096];
	char conflict_copy[4096];
};

/* How the group's HTTP client retries (backoff from 2 ms up to
 * backoff_max_ms, plus up to jitter_ms) and its chunk size. */
struct sfx_group_opts {
	int max_retries;
	long backoff_max_ms;
	long jitter_ms;
	uint64_t chunk_size;        /* GCS chunk size; 0: the backend's default */
};

/* The group setup: an emulator (no auth; with a data dir when persistent),
 * an HTTP client retrying as *o says (1 s connect timeout, 5 s low-speed
 * limit), and a GCS backend on bucket (retry_base_ms 2, chunk_max_failures
 * 30). 0 with *emu, *http and *be, or -1 with the reason on stderr
 * (prefixed by who). */
int sfx_group_start(const char *who, const char *bucket, int persistent,
		    const struct sfx_group_opts *o, struct emuh **emu, struct http **http,
		    struct be **be);
/* The group teardown's counterpart; NULLs are fine. */
void sfx_group_stop(struct emuh *emu, struct http *http, struct be *be);

/* The options every scheduler test starts from: 4 workers, 256 KiB chunks
 * and small files, quick retries and housekeeping, files_dir and http (as
 * the mount does: sch_stop cancels it). */
void sfx_default_opts(struct sched_opts *o, const char *files_dir, struct http *http);

/* Per-test setup: *f zeroed, a fresh temporary cache dir, the emulator
 * reset with bucket created, the journal opened and f->so the defaults.
 * 0, or -1 with the reason on stderr (prefixed by who). */
int sfx_setup(struct sfx *f, const char *who, struct emuh *emu, const char *bucket,
	      struct http *http);
/* Per-test teardown: the emulator's faults cleared (fails the test on
 * error), the scheduler and journal closed, the cache dir removed. 0, or
 * -1 when it could not be removed. */
int sfx_teardown(struct sfx *f, struct emuh *emu);

/* Count an event in f (ud is the struct sfx); suits sch_set_event_fn. */
void sfx_on_event(void *ud, const struct sched_event *ev);
/* Create and start f->s on be with f->so and sfx_on_event; fails the test
 * on error. */
void sfx_start(struct sfx *f, struct be *be);

/* The path of cache file name in f's files dir (truncated to len). */
void sfx_cache_path(const struct sfx *f, const char *name, char *buf, size_t len);
/* A new local file at path holding data: a cache file, a fid and a write
 * op (delay_ms of writeback delay). Returns the fid; fails the test on
 * error. */
uint64_t sfx_new_file(struct sfx *f, const char *path, const void *data, size_t n,
		      int64_t delay_ms);
/* 1 when path exists on be, 0 when not found; fails the test on any other
 * error. */
int sfx_remote_exists(struct be *be, const char *path);

#endif
