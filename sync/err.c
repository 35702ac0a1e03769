/* The error struct of sync/ and auth/ (include/durafs/err.h): setting,
 * prefixing, naming, and the one table that maps it to errno. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "durafs/err.h"

static const struct {
	int code;
	const char *name;
	int errnum;  /* positive errno; 0 = use sys_errno */
} err_table[] = {
	{ ERR_OK, "ok", 0 },
	{ ERR_NOMEM, "out-of-memory", ENOMEM },
	{ ERR_INVAL, "invalid", EINVAL },
	{ ERR_IO, "io", 0 },
	{ ERR_NET, "network", EIO },
	{ ERR_HTTP, "http", EIO },
	{ ERR_PARSE, "bad-reply", EIO },
	{ ERR_AUTH, "auth", EACCES },
	{ ERR_NOTFOUND, "not-found", ENOENT },
	{ ERR_CONFLICT, "conflict", EIO },
	{ ERR_QUOTA, "quota", EDQUOT },
	{ ERR_NOSPC, "no-space", ENOSPC },
	{ ERR_RATE, "rate-limited", EIO },
	{ ERR_GONE, "gone", EIO },
	{ ERR_TIMEOUT, "timeout", ETIMEDOUT },
	{ ERR_CANCELED, "canceled", ECANCELED },
	{ ERR_PERM, "forbidden", EACCES },
	{ ERR_EXISTS, "exists", EEXIST },
	{ ERR_NOTEMPTY, "not-empty", ENOTEMPTY },
	{ ERR_RANGE, "range", EINVAL },
};

#define ERR_TABLE_LEN (sizeof(err_table) / sizeof(err_table[0]))

void err_clear(struct err *e)
{
	if (e)
		memset(e, 0, sizeof(*e));
}

static void err_vset(struct err *e, int code, const char *fmt, va_list ap)
{
	e->code = code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int err_set(struct err *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return -1;
	err_clear(e);
	va_start(ap, fmt);
	err_vset(e, code, fmt, ap);
	va_end(ap);
	return -1;
}

int err_sys(struct err *e, const char *fmt, ...)
{
	int saved = errno;
	size_t n;
	va_list ap;

	if (!e)
		return -1;
	err_clear(e);
	va_start(ap, fmt);
	err_vset(e, ERR_IO, fmt, ap);
	va_end(ap);
	e->sys_errno = saved;
	if (saved == ENOSPC || saved == EDQUOT)
		e->code = ERR_NOSPC;
	n = strlen(e->msg);
	snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(saved));
	errno = saved;
	return -1;
}

void err_prefix(struct err *e, const char *fmt, ...)
{
	char pre[256], old[ERR_MSG_MAX];
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	snprintf(e->msg, sizeof(e->msg), "%s: %s", pre, old);
}

const char *err_code_name(int code)
{
	size_t i;

	for (i = 0; i < ERR_TABLE_LEN; i++)
		if (err_table[i].code == code)
			return err_table[i].name;
	return "unknown";
}

int err_to_errno(const struct err *e)
{
	size_t i;

	if (!e || e->code == ERR_OK)
		return 0;
	for (i = 0; i < ERR_TABLE_LEN; i++) {
		if (err_table[i].code != e->code)
			continue;
		if (err_table[i].errnum)
			return -err_table[i].errnum;
		return e->sys_errno ? -e->sys_errno : -EIO;
	}
	return -EIO;
}
