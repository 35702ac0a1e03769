/* durafs daemon plumbing (fs/daemon.c): going to the background with a
 * readiness pipe (the parent returns only once the mount answers), and the
 * multithreaded FUSE loop configured for durafs (many threads may block in
 * fsync at once). */
#ifndef DURAFS_DAEMON_H
#define DURAFS_DAEMON_H

#include "durafs/err.h"

struct fuse_session;

/* Fork. In the parent, never returns: waits for the child's dmn_notify,
 * then, on success, checks that mountpoint is a FUSE mount that answers a
 * stat and exits 0; otherwise prints "durafs mount: <child's message>" on
 * stderr and exits with the child's status (1 when the child died without
 * a word, naming log_hint). In the child (a new session leader): returns 0
 * with *notify_fd set, or -1 with *err when fork failed (in the caller's
 * process, nothing forked). */
int dmn_fork(const char *mountpoint, const char *log_hint, int *notify_fd, struct err *err);

/* Tell the waiting parent the outcome and close *notify_fd (set to -1).
 * ok: the mount is up; else exit_code (1 or 2) and the one-line message.
 * A no-op when *notify_fd < 0 (foreground). Async-signal-unsafe; call from
 * the main thread. */
void dmn_notify(int *notify_fd, int ok, int exit_code, const char *msg);

/* Detach from the terminal once up: stdin and stdout to /dev/null, stderr
 * to log_fd when >= 0 (else /dev/null), cwd "/". */
void dmn_detach(int log_fd);

/* Run the session's multithreaded loop: up to max_threads FUSE worker
 * threads (idle ones above max_idle exit), one /dev/fuse clone per thread
 * when clone_fd. Returns like fuse_session_loop_mt (0, -errno, or the
 * signal that ended it). */
int dmn_session_loop(struct fuse_session *se, unsigned max_threads, unsigned max_idle,
		     int clone_fd);

/* 1 when path is the root of a FUSE mount (statfs magic, and a device
 * other than its parent's). */
int dmn_is_fuse_mount(const char *path);

#endif
