/* CLI side of a running mount (fs/mount_cli.c): what `sync --flush`,
 * `status` and `unmount` share -- finding a mount's daemon from its
 * mountpoint, one-shot requests, a flush shown with progress, and the
 * report of what failed. Messages are written for the user. */
#ifndef DURAFS_MOUNT_CLI_H
#define DURAFS_MOUNT_CLI_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "durafs/ctl.h"
#include "durafs/err.h"

/* Find the daemon of mountpoint (root xattr user.durafs.ctl) and connect.
 * ERR_NOTFOUND: not a durafs mount; ERR_IO with sys_errno ENOTCONN: the
 * daemon is gone (the kernel mount is left over). */
int mcli_connect(const char *mountpoint, struct ctl_client *c, struct err *err);

/* The cache dir of the dead durafs mount at mountpoint (its daemon gone,
 * the kernel mount left over), for a hint to the user: the default cache
 * dir of the source /proc/self/mountinfo records for it, when that
 * directory holds a journal. malloc'd, or NULL when not found (a mount
 * made with --cache-dir, another mount namespace, no HOME, ENOMEM). */
char *mcli_dead_cache_dir(const char *mountpoint);

/* Send req and read until the final line (the one with "result"); lines
 * before it are ignored. *reply: new reference. ERR_IO/ERR_TIMEOUT, or the
 * daemon's error (ERR_HTTP-free: code ERR_INVAL with its message) when
 * "result" is "error" -- *reply is still set then. */
int mcli_call(struct ctl_client *c, const json_t *req, int64_t timeout_ms, json_t **reply,
	      struct err *err);

/* Ask for a flush over c (timeout_ms < 0: none; retry: send failed ops back
 * to the queue first) and show it: a progress display on `out` (see
 * progress.h; json selects JSON lines, and the final reply is printed as
 * one JSON line on `out`), then, on failure, every file not committed and
 * why on stderr, each line prefixed with `prog`. Returns the exit status:
 * CLI_OK only when everything is committed. */
int mcli_flush(struct ctl_client *c, const char *prog, int64_t timeout_ms, int retry,
	       int json, FILE *out);

/* Print the failed/conflict ops of a flush reply (array of objects as
 * mnt_flush describes) on out, one line each, prefixed with indent. */
void mcli_print_failed(FILE *out, const char *indent, const json_t *failed);

/* Parse a --timeout value in seconds (decimals allowed) into ms. 0, or -1
 * when malformed or negative. */
int mcli_parse_timeout(const char *s, int64_t *ms);

#endif
