/* durafs logger (sync/log.c): one process-wide, thread-safe line logger to
 * stderr or a file, with levels, an ISO-8601 UTC timestamp, a module tag on
 * every line, and secret redaction applied to every line written. */
#ifndef DURAFS_LOG_H
#define DURAFS_LOG_H

#include <stddef.h>

#include "durafs/err.h"

/* Levels, most severe first. (Not LOG_INFO/LOG_DEBUG: those are syslog.h
 * macros.) A message is written when its level <= the current level. */
enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN = 1,
	LOG_LVL_INFO = 2,
	LOG_LVL_DEBUG = 3,
};

/* Send every later line to path (created 0600 if absent, appended to,
 * O_CLOEXEC); the previous file, if any, is closed. Returns 0, or -1 with
 * *err set (ERR_IO) and the destination unchanged. Thread-safe. */
int log_open(const char *path, struct err *err);

/* Back to stderr (the default); closes the file opened by log_open. */
void log_close(void);

/* Current level (default LOG_LVL_INFO; DURAFS_LOG_LEVEL in the environment
 * is NOT read here: the CLI decides). Values outside the enum are clamped.
 * Thread-safe (atomic). */
void log_set_level(int level);
int log_get_level(void);

/* 1 when a message of this level would be written: use it to skip building
 * expensive debug text. */
int log_enabled(int level);

/* Parse "error", "warn"/"warning", "info", "debug" (case-insensitive).
 * Returns 0 and *level, or -1 when unknown. */
int log_level_parse(const char *s, int *level);

/* Short upper-case name of a level ("ERROR", "WARN", "INFO", "DEBUG"). */
const char *log_level_name(int level);

/* Write one line: "2024-05-01T12:34:56.789Z WARN  tag: message\n".
 * tag is the module ("http", "gcs", "auth"...; NULL gives "-"). The message
 * is truncated to about 4 KiB, control characters (newlines included) become
 * spaces so one call is one line, and log_redact is applied, so a secret
 * passed by mistake is masked. One write(2) per line: lines from many threads
 * never interleave. Never fails visibly (a failed write is dropped). */
void log_msg(int level, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* log_debug evaluates its arguments only when debug is enabled: no side
 * effects in them. */
#define log_error(tag, ...) log_msg(LOG_LVL_ERROR, (tag), __VA_ARGS__)
#define log_warn(tag, ...)  log_msg(LOG_LVL_WARN, (tag), __VA_ARGS__)
#define log_info(tag, ...)  log_msg(LOG_LVL_INFO, (tag), __VA_ARGS__)
#define log_debug(tag, ...) \
	do { if (log_enabled(LOG_LVL_DEBUG)) \
		log_msg(LOG_LVL_DEBUG, (tag), __VA_ARGS__); } while (0)

/* Mask secrets in the NUL-terminated string s, in place (the string never
 * grows; a masked value becomes "***", or as many '*' as it had characters
 * when shorter). Returns how many values were masked. Masked:
 *   - the credential after "Bearer " / "Basic " (any case);
 *   - the whole value of an "Authorization:" header;
 *   - the value after these keys, whether written key=value (query strings,
 *     forms), key: value, or "key": "value" (JSON, escapes honoured):
 *     access_token, refresh_token, id_token, assertion, client_secret,
 *     private_key, private_key_id, code_verifier, upload_id, token,
 *     password, x-goog-signature, signature;
 *   - the value of "code" and "key" in key=value form only (OAuth
 *     authorization codes, API keys; JSON "code": 404 stays readable);
 *   - PEM blocks "-----BEGIN ... PRIVATE KEY-----" through their END line;
 *   - anything shaped like a Google OAuth token ("ya29." ...) or a JWT
 *     ("eyJ...".".").
 * Keys match case-insensitively and only as whole words ("key" does not
 * match "monkey", nor "pageToken"'s tail). Thread-safe (pure). */
size_t log_redact(char *s);

#endif
