/* durafs remote change polling (fs/fs_poll.c): a background thread that
 * asks the backend's change feed (Drive changes.list) every poll_interval
 * and makes the mount show what other clients changed: stored listings are
 * invalidated and refetched, the kernel's caches of clean entries dropped.
 * The feed position is kept in the journal's meta table, so a remount
 * continues where the last mount stopped. */
#ifndef DURAFS_FS_POLL_H
#define DURAFS_FS_POLL_H

#include <stddef.h>
#include <stdint.h>

#include "durafs/backend.h"
#include "durafs/err.h"

/* Journal meta key holding the feed position. */
#define FS_POLL_META_TOKEN "changes_token"

/* A sorted set of distinct strings (malloc'd each). */
struct fs_strset {
	char **v;
	size_t n, cap;
};
/* Add a copy of s (nothing when present). 0, or -1 when out of memory. */
int fs_strset_add(struct fs_strset *s, const char *str);
/* 1 when present. */
int fs_strset_has(const struct fs_strset *s, const char *str);
void fs_strset_release(struct fs_strset *s);

/* What the mount must do about a batch of changes (pure: built by
 * fs_poll_plan_add from be_change reports, applied by the poller).
 *   refresh: directories whose listing changed (refetched when the kernel
 *            knows them, else their stored listing is marked stale);
 *   names:   paths that may have appeared (the kernel's negative entry is
 *            dropped) or whose content changed;
 *   drop:    directories (or items of unknown type) that moved away or are
 *            gone: the stored listings at and below them are forgotten. */
struct fs_poll_plan {
	struct fs_strset refresh;
	struct fs_strset names;
	struct fs_strset drop;
	uint64_t changes;         /* reports added */
};
/* Add one change. 0, or -1 when out of memory (the plan may then be
 * partial: the caller polls again from the same position). */
int fs_poll_plan_add(struct fs_poll_plan *p, const struct be_change *c);
void fs_poll_plan_release(struct fs_poll_plan *p);

/* Counters for `durafs status`. */
struct fs_poll_stats {
	uint64_t polls;           /* successful polls */
	uint64_t failures;        /* polls that failed (retried next interval) */
	uint64_t changes;         /* changes reported by the feed */
	uint64_t refreshed;       /* listings refetched or marked stale */
	int64_t last_ok_ms;       /* CLOCK_REALTIME ms of the last good poll, 0 */
};

struct fs;
struct fs_poll;

/* Start polling fs's backend every interval_ms (> 0). Without a stored
 * position (the first mount of a cache dir) the feed's current position
 * is taken first, in the calling thread, before the mount answers
 * anything (one request; if it fails, the first poll takes it and every
 * stored listing is fetched again). The first poll runs at once: with a
 * stored position it brings in what changed while unmounted. A position
 * the service refuses (HTTP 400/410) restarts the feed the same way.
 * ERR_INVAL when the backend has no change feed. The thread uses fs's
 * backend, journal and background queue: stop it before fs_free. */
int fs_poll_start(struct fs *fs, int64_t interval_ms, struct fs_poll **out, struct err *err);
/* Ask for a poll now (the interval restarts). Thread-safe. */
void fs_poll_kick(struct fs_poll *p);
void fs_poll_get_stats(struct fs_poll *p, struct fs_poll_stats *out);
/* The counters of fs's poller (all zero when it does not poll), for
 * `durafs status`. Thread-safe while fs lives. */
void fs_poll_stats(struct fs *fs, struct fs_poll_stats *out);
/* Stop the thread (a poll in flight finishes its current request) and
 * free. NULL is fine. */
void fs_poll_stop(struct fs_poll *p);

#endif
