/* The project's logger (include/durafs/log.h): leveled, timestamped lines to
 * stderr or a file, one write(2) per line under a mutex, with every line
 * passed through log_redact so no token, key or secret is ever printed. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "durafs/log.h"

#define LOG_LINE_MAX 4096

/* The destination fd; -1 means stderr. Protected by log_lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
/* Read and written with __atomic builtins only. */
static int log_level = LOG_LVL_INFO;

static const char *const log_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

static int log_clamp(int level)
{
	if (level < LOG_LVL_ERROR)
		return LOG_LVL_ERROR;
	if (level > LOG_LVL_DEBUG)
		return LOG_LVL_DEBUG;
	return level;
}

int log_open(const char *path, struct err *err)
{
	int fd = -1, old;

	if (!path || !*path)
		return err_set(err, ERR_INVAL, "log file: empty path");
	do {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return err_sys(err, "open log file %s", path);
	pthread_mutex_lock(&log_lock);
	old = log_fd;
	log_fd = fd;
	pthread_mutex_unlock(&log_lock);
	if (old >= 0)
		close(old);
	return 0;
}

void log_close(void)
{
	int old;

	pthread_mutex_lock(&log_lock);
	old = log_fd;
	log_fd = -1;
	pthread_mutex_unlock(&log_lock);
	if (old >= 0)
		close(old);
}

void log_set_level(int level)
{
	__atomic_store_n(&log_level, log_clamp(level), __ATOMIC_RELAXED);
}

int log_get_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int log_enabled(int level)
{
	return level <= log_get_level();
}

int log_level_parse(const char *s, int *level)
{
	static const struct { const char *name; int level; } names[] = {
		{ "error", LOG_LVL_ERROR }, { "warn", LOG_LVL_WARN },
		{ "warning", LOG_LVL_WARN }, { "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG },
	};
	size_t i;

	if (!s)
		return -1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*level = names[i].level;
			return 0;
		}
	}
	return -1;
}

const char *log_level_name(int level)
{
	return log_names[log_clamp(level)];
}

/* Write all of buf to fd, retrying short writes and EINTR; errors dropped. */
static void log_write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

void log_msg(int level, const char *tag, const char *fmt, ...)
{
	char line[LOG_LINE_MAX + 128];
	struct timespec ts;
	struct tm tm;
	size_t pre, len, i;
	int saved = errno, n, fd;
	va_list ap;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %.32s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
		     log_level_name(level), tag ? tag : "-");
	if (n < 0)
		goto out;
	pre = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	va_start(ap, fmt);
	n = vsnprintf(line + pre, LOG_LINE_MAX, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto out;
	len = pre + ((size_t)n < LOG_LINE_MAX ? (size_t)n : LOG_LINE_MAX - 1);
	if ((size_t)n >= LOG_LINE_MAX)
		memcpy(line + len - 3, "...", 3);
	/* One call, one line: no forged lines from remote text. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			line[i] = ' ';
	}
	line[len] = '\0';
	len = log_redact(line) ? strlen(line) : len;
	line[len++] = '\n';
	pthread_mutex_lock(&log_lock);
	fd = log_fd >= 0 ? log_fd : STDERR_FILENO;
	log_write_all(fd, line, len);
	pthread_mutex_unlock(&log_lock);
out:
	errno = saved;
}

/* --- redaction ----------------------------------------------------------- */

/* Keys whose value is secret in any form (k=v, k: v, "k": "v"). */
static const char *const redact_keys[] = {
	"access_token", "refresh_token", "id_token", "assertion",
	"client_secret", "private_key", "private_key_id", "code_verifier",
	"upload_id", "token", "password", "x-goog-signature", "signature",
	"authorization",
};
/* Keys masked only in k=v form. */
static const char *const redact_eq_keys[] = { "code", "key" };

static int redact_ident(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Characters a bearer token or JWT is made of. */
static int redact_tokchar(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-' ||
	       c == '~' || c == '+' || c == '/' || c == '=';
}

/* Replace s[a..b) by the mask; returns the index just after the mask. */
static size_t redact_mask(char *s, size_t a, size_t b)
{
	size_t len = b - a, mlen = len < 3 ? len : 3;

	memset(s + a, '*', mlen);
	if (mlen < len)
		memmove(s + a + mlen, s + b, strlen(s + b) + 1);
	return a + mlen;
}

/* Length of the case-insensitive prefix word w at s, or 0. */
static size_t redact_word(const char *s, const char *w)
{
	size_t n = strlen(w);

	return strncasecmp(s, w, n) == 0 ? n : 0;
}

/* If a secret value starts at or after key end k, return its [a, b) in *a,
 * *b and 1. eq_only: accept only '='. to_eol: an unquoted value runs to the
 * end of the line (Authorization: Bearer x). */
static int redact_value(const char *s, size_t k, int eq_only, int to_eol,
			size_t *a, size_t *b)
{
	size_t i = k;
	int quoted = 0;

	while (s[i] == '\\' || s[i] == '"')
		i++;
	while (s[i] == ' ' || s[i] == '\t')
		i++;
	if (s[i] == '=' || (s[i] == ':' && !eq_only)) {
		i++;
		while (s[i] == ' ' || s[i] == '\t')
			i++;
		if (s[i] == '\\' && s[i + 1] == '"') {
			quoted = 2;  /* \"value\": JSON quoted inside a string */
			i += 2;
		} else if (s[i] == '"') {
			quoted = 1;
			i++;
		}
	} else {
		return 0;
	}
	*a = i;
	if (quoted == 1) {
		while (s[i] && s[i] != '"') {
			if (s[i] == '\\' && s[i + 1])
				i++;
			i++;
		}
	} else if (quoted == 2) {
		while (s[i] && s[i] != '"' && !(s[i] == '\\' && s[i + 1] == '"'))
			i++;
	} else if (to_eol) {
		while (s[i] && s[i] != '\r' && s[i] != '\n' && s[i] != '"' &&
		       s[i] != '\'')
			i++;
	} else {
		while (s[i] && !strchr("&;, \t\r\n\"'<>)]}", s[i]))
			i++;
	}
	*b = i;
	return *b > *a;
}

/* A JWT-shaped run at s[i]: "eyJ" base64url "." base64url "." base64url. */
static size_t redact_jwt_len(const char *s, size_t i)
{
	size_t j = i, dots = 0;

	if (strncmp(s + i, "eyJ", 3) != 0)
		return 0;
	while (redact_tokchar(s[j])) {
		if (s[j] == '.')
			dots++;
		j++;
	}
	return dots >= 2 ? j - i : 0;
}

size_t log_redact(char *s)
{
	size_t i = 0, n = 0, k, a, b, t;
	const char *end;

	if (!s)
		return 0;
	while (s[i]) {
		int word_start = i == 0 || !redact_ident(s[i - 1]);

		/* PEM private keys, with literal or escaped newlines. */
		if (s[i] == '-' && strncmp(s + i, "-----BEGIN ", 11) == 0) {
			end = strstr(s + i + 11, "-----");
			if (end && memmem(s + i, (size_t)(end - (s + i)),
					  "PRIVATE KEY", 11)) {
				a = (size_t)(end - s) + 5;
				end = strstr(s + a, "-----END");
				b = end ? (size_t)(end - s) : strlen(s);
				if (b > a) {
					i = redact_mask(s, a, b);
					n++;
					if (end)
						i += 8;
					continue;
				}
			}
		}
		if (word_start) {
			/* Scheme credentials: Bearer x, Basic x. */
			k = redact_word(s + i, "bearer ");
			if (!k)
				k = redact_word(s + i, "basic ");
			if (k) {
				a = i + k;
				while (s[a] == ' ')
					a++;
				b = a;
				while (redact_tokchar(s[b]))
					b++;
				if (b > a) {
					i = redact_mask(s, a, b);
					n++;
					continue;
				}
			}
			/* Google access tokens and JWTs, wherever they are. */
			t = redact_word(s + i, "ya29.") ? 5 : 0;
			if (t) {
				b = i + t;
				while (redact_tokchar(s[b]))
					b++;
				i = redact_mask(s, i, b);
				n++;
				continue;
			}
			t = redact_jwt_len(s, i);
			if (t) {
				i = redact_mask(s, i, i + t);
				n++;
				continue;
			}
			/* key=value, key: value, "key": "value". */
			for (t = 0; t < sizeof(redact_keys) / sizeof(redact_keys[0]) +
				     sizeof(redact_eq_keys) / sizeof(redact_eq_keys[0]); t++) {
				int eq_only = t >= sizeof(redact_keys) / sizeof(redact_keys[0]);
				const char *key = eq_only ?
					redact_eq_keys[t - sizeof(redact_keys) / sizeof(redact_keys[0])] :
					redact_keys[t];

				k = redact_word(s + i, key);
				if (!k || redact_ident(s[i + k]) || s[i + k] == '-')
					continue;
				if (redact_value(s, i + k, eq_only,
						 strcmp(key, "authorization") == 0, &a, &b)) {
					i = redact_mask(s, a, b);
					n++;
					goto next;
				}
			}
		}
		i++;
next:
		;
	}
	return n;
}
