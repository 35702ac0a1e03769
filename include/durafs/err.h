/* durafs error values: the small error struct that sync/ and auth/ carry
 * where errno is too poor (HTTP status, Google's reason, a message), and the
 * one table that maps it to a negative errno at the filesystem boundary. */
#ifndef DURAFS_ERR_H
#define DURAFS_ERR_H

#include <stddef.h>

#define ERR_MSG_MAX 512

/* Error codes. Append only: never renumber, never reuse. */
enum err_code {
	ERR_OK = 0,
	ERR_NOMEM = 1,     /* allocation failed */
	ERR_INVAL = 2,     /* bad argument, option or configuration */
	ERR_IO = 3,        /* local I/O error (errno saved in sys_errno) */
	ERR_NET = 4,       /* transport: connect, reset, timeout, TLS */
	ERR_HTTP = 5,      /* the remote answered an error not covered below */
	ERR_PARSE = 6,     /* malformed or unexpected remote reply or file */
	ERR_AUTH = 7,      /* no credentials, refused grant, 401/403 auth */
	ERR_NOTFOUND = 8,  /* 404 or a missing local file */
	ERR_CONFLICT = 9,  /* precondition failed: remote changed (412/409) */
	ERR_QUOTA = 10,    /* a quota that clears with time (EDQUOT) */
	ERR_NOSPC = 11,    /* storage quota exceeded / disk full (ENOSPC) */
	ERR_RATE = 12,     /* rate limited after all retries (429, 403 rate) */
	ERR_GONE = 13,     /* resumable session expired or cancelled (404/410) */
	ERR_TIMEOUT = 14,  /* a deadline of ours expired */
	ERR_CANCELED = 15, /* the operation was cancelled by us */
	ERR_PERM = 16,     /* 403 forbidden that is not auth or quota */
	ERR_EXISTS = 17,   /* already exists */
	ERR_NOTEMPTY = 18, /* directory not empty */
	ERR_RANGE = 19,    /* 416 range not satisfiable */
};

/* An error as seen by sync/ and auth/. Zero-initialised means "no error".
 * msg never holds a token, key, refresh token or JWT. */
struct err {
	int code;          /* enum err_code */
	int sys_errno;     /* saved errno for ERR_IO, else 0 */
	long http_status;  /* HTTP status of the failing reply, else 0 */
	char reason[64];   /* Google's errors[0].reason or OAuth "error" */
	char msg[ERR_MSG_MAX]; /* human-readable, one line */
};

/* Clear *e to "no error". e may be NULL. */
void err_clear(struct err *e);

/* Set code and a printf-style message; returns -1 so callers can write
 * `return err_set(e, ERR_INVAL, "...")`. e may be NULL (then only -1). */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like err_set for a failed system call: saves errno first, appends
 * strerror. Returns -1. */
int err_sys(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prefix the existing message with context ("gcs upload a/b: ..."). */
void err_prefix(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The code's short name ("conflict", "rate-limited" ...). Never NULL. */
const char *err_code_name(int code);

/* The one mapping to a negative errno: NOTFOUND -ENOENT, AUTH/PERM -EACCES,
 * QUOTA -EDQUOT, NOSPC -ENOSPC, EXISTS -EEXIST, NOTEMPTY -ENOTEMPTY,
 * INVAL -EINVAL, NOMEM -ENOMEM, TIMEOUT -ETIMEDOUT, IO sys_errno,
 * everything else (NET, HTTP, PARSE, CONFLICT, RATE, GONE) -EIO. */
int err_to_errno(const struct err *e);

#endif
