/* durafs control socket (fs/ctl.c): the Unix stream socket a running mount
 * listens on (cache_dir/ctl.sock, 0600, peer uid checked) and the client
 * side the CLI uses, speaking line-delimited JSON.
 *
 * Protocol: the client sends one JSON object per line ({"cmd":...}); for
 * each request the server sends zero or more intermediate lines (e.g.
 * {"progress":{...}}) and exactly one final line holding a "result" member
 * ("ok" or "error", with "error": message on failure). A connection may
 * carry several requests in turn. Lines are at most CTL_LINE_MAX bytes.
 * The commands themselves (flush, status, unmount) are the mount's
 * business (fs/mount.c); this module only moves lines. */
#ifndef DURAFS_CTL_H
#define DURAFS_CTL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "durafs/err.h"

#define CTL_LINE_MAX (1024 * 1024)
#define CTL_XATTR "user.durafs.ctl"   /* the root's xattr naming the socket */
#define CTL_SOCK_NAME "ctl.sock"

/* ---- server ------------------------------------------------------------- */

struct ctl_conn;

/* Called once per request on the connection's own thread, with every signal
 * blocked. req is the parsed request object (borrowed; "cmd" is not checked
 * here). The handler sends its lines with ctl_send and must end with one
 * line holding "result". A long handler polls ctl_cancelled and returns
 * soon once it says 1 (the peer left or the server is stopping). */
typedef void (*ctl_handler_fn)(void *ud, struct ctl_conn *c, const json_t *req);

/* Send one line (msg borrowed, dumped compact). 0, or -1 when the peer is
 * gone (EPIPE is never raised as a signal). Only the handler's thread may
 * call it for its connection. */
int ctl_send(struct ctl_conn *c, const json_t *msg);

/* Send {"result":"error","error":msg}. Same result as ctl_send. */
int ctl_send_error(struct ctl_conn *c, const char *msg);

/* 1 when the handler should stop: the server is stopping, or the peer hung
 * up (half-closed or closed its end). Never blocks. */
int ctl_cancelled(struct ctl_conn *c);

/* Peer's uid (SO_PEERCRED), or (uid_t)-1 when unknown. */
long ctl_peer_uid(struct ctl_conn *c);

/* Serve one connected socket fd until the peer closes it, a line is too
 * long or unreadable, or *stop becomes non-zero (stop may be NULL): reads
 * requests and calls fn for each; a line that is not a JSON object gets an
 * error reply and the connection goes on. Does not close fd. Used by the
 * server for each client, and by tests over a socketpair. */
void ctl_serve_fd(int fd, ctl_handler_fn fn, void *ud, const atomic_int *stop);

/* Extra commands served by another part of the process than the server's
 * handler (the filesystem core adds "cache"): a request whose "cmd" equals
 * cmd goes to fn(ud, ...) instead, on every connection of every server of
 * the process (and ctl_serve_fd). At most 8 routes; 0, or -1 when the
 * table is full or cmd is already routed. ctl_route_remove waits for
 * nothing: the caller removes its route before freeing ud, after every
 * server that could call it has stopped (ctl_server_stop joins the
 * handlers). Thread-safe. */
int ctl_route_add(const char *cmd, ctl_handler_fn fn, void *ud);
void ctl_route_remove(const char *cmd, void *ud);

struct ctl_server;

/* Listen on path (an existing socket file is replaced: the caller holds the
 * cache dir's lock; a long path is handled through /proc/self/fd), mode
 * 0600, and serve every client on its own thread (at most 32 at once; more
 * get an error line). Peers whose uid is neither ours nor root are refused
 * with an error line. fn runs as described above. 0, or -1 with *err. */
int ctl_server_start(const char *path, ctl_handler_fn fn, void *ud,
		     struct ctl_server **out, struct err *err);

/* Stop accepting, make every handler's ctl_cancelled return 1, wait for the
 * client threads to leave, remove the socket file. Idempotent. */
void ctl_server_stop(struct ctl_server *s);

/* Stop if needed, then free. NULL is a no-op. */
void ctl_server_free(struct ctl_server *s);

/* ---- client --------------------------------------------------------------- */

/* The control socket path of the durafs mount at mountpoint, read from the
 * root's CTL_XATTR: *path malloc'd. ERR_NOTFOUND "not a durafs mount" when
 * the attribute is absent (naming the durafs mount mountpoint lies inside,
 * if any); ERR_IO (sys_errno ENOTCONN) when the mount's
 * daemon is gone; other ERR_IO with errno. */
int ctl_find(const char *mountpoint, char **path, struct err *err);

struct ctl_client {
	int fd;
	char *buf;                  /* received bytes not yet returned */
	size_t len, cap;
};

/* Connect to the socket at path. c is initialised (fd -1 on failure, safe
 * to close). ERR_IO with errno (ECONNREFUSED / ENOENT: no daemon). */
int ctl_client_open(struct ctl_client *c, const char *path, struct err *err);

/* Send one request (one line). 0, or -1 ERR_IO. */
int ctl_client_send(struct ctl_client *c, const json_t *req, struct err *err);

/* Receive the next line as a JSON value (*msg, new reference): 1; 0 at end
 * of stream (the daemon went away); -1 with ERR_TIMEOUT after timeout_ms
 * (< 0: no limit), ERR_PARSE for a malformed or overlong line, ERR_IO. */
int ctl_client_recv(struct ctl_client *c, int64_t timeout_ms, json_t **msg,
		    struct err *err);

/* Close and free; the struct may be reopened. */
void ctl_client_close(struct ctl_client *c);

#endif
