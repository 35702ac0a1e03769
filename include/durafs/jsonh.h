/* JSON helpers over Jansson (sync/jsonh.c): parse a remote reply and read
 * its fields with type checks, so that a malformed or unexpected reply is
 * refused with a clear ERR_PARSE naming the field and the expected type,
 * never a crash or a guess. */
#ifndef DURAFS_JSONH_H
#define DURAFS_JSONH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "durafs/err.h"

/*
 * Conventions for every function below:
 * - Return 0 on success, -1 with *err set (ERR_PARSE, or ERR_NOMEM) on
 *   failure; outputs are left untouched on failure. err may be NULL.
 * - obj must be a JSON object (else ERR_PARSE); key names the member.
 *   Messages read: field "size" missing; field "size" must be an int64
 *   (number or decimal string), got string "12x" (string values are only
 *   quoted for int64 fields, cut short and passed through log_redact);
 *   callers add context with err_prefix ("GCS object a/b: ...").
 * - "get" = required: a missing member or JSON null is an error.
 *   "opt" = optional: a missing member or JSON null is fine (the output gets
 *   the default / NULL and 0 is returned); a member of the wrong type is still
 *   an error.
 * - Returned json_t and const char * are borrowed: valid as long as the
 *   parsed document lives. Nothing here takes or steals a reference.
 * - All functions are thread-safe on distinct documents (Jansson's reference
 *   counts are atomic; reading one document from many threads is fine).
 */

/* Parse len bytes (no NUL needed) that must hold exactly one JSON object
 * (trailing garbage, duplicate keys, and non-object tops refused; strings
 * may contain \u0000, see jsonh_get_strn). what names the reply in the
 * message ("GCS object", "token reply"). On success *out is a new reference:
 * json_decref it. */
int jsonh_parse_object(const char *buf, size_t len, const char *what,
		       json_t **out, struct err *err);

/* Strings. jsonh_get_str/opt_str refuse a string containing a NUL byte
 * (ERR_PARSE), so the result is a safe C string; jsonh_get_strn returns the
 * exact length and accepts embedded NULs (e.g. to skip and warn about an
 * object name that cannot be a POSIX name). opt_str gives *out = NULL when
 * absent or null. */
int jsonh_get_str(const json_t *obj, const char *key, const char **out,
		  struct err *err);
int jsonh_opt_str(const json_t *obj, const char *key, const char **out,
		  struct err *err);
int jsonh_get_strn(const json_t *obj, const char *key, const char **out,
		   size_t *len, struct err *err);

/* Copy a string member into buf (NUL-terminated). A value that does not fit
 * in bufsz (with its NUL) is ERR_PARSE ("too long"), never truncated. The
 * opt form writes "" when absent or null. */
int jsonh_get_strbuf(const json_t *obj, const char *key, char *buf,
		     size_t bufsz, struct err *err);
int jsonh_opt_strbuf(const json_t *obj, const char *key, char *buf,
		     size_t bufsz, struct err *err);

/* A malloc'd copy of a string member (free it); opt gives NULL when absent. */
int jsonh_get_strdup(const json_t *obj, const char *key, char **out,
		     struct err *err);
int jsonh_opt_strdup(const json_t *obj, const char *key, char **out,
		     struct err *err);

/* true/false only (not 0/1, not "true"). */
int jsonh_get_bool(const json_t *obj, const char *key, int *out,
		   struct err *err);
int jsonh_opt_bool(const json_t *obj, const char *key, int def, int *out,
		   struct err *err);

/* A signed 64-bit integer given as a JSON integer or as a string of decimal
 * digits with an optional leading '-' (GCS sends int64 fields as strings).
 * Refused: reals (1.0, 1e3), empty strings, spaces, '+', leading zeros
 * ("007"), hex, and anything out of int64 range. */
int jsonh_get_int64(const json_t *obj, const char *key, int64_t *out,
		    struct err *err);
int jsonh_opt_int64(const json_t *obj, const char *key, int64_t def,
		    int64_t *out, struct err *err);
/* Same, and refuses negative values (sizes, generations, offsets). */
int jsonh_get_uint64(const json_t *obj, const char *key, uint64_t *out,
		     struct err *err);
int jsonh_opt_uint64(const json_t *obj, const char *key, uint64_t def,
		     uint64_t *out, struct err *err);

/* Parse a string the way jsonh_get_int64 parses a string member (no JSON
 * involved: for headers such as x-goog-generation). what names it in the
 * message. */
int jsonh_parse_int64(const char *s, const char *what, int64_t *out,
		      struct err *err);

/* Arrays and objects (borrowed). opt gives *out = NULL when absent or null:
 * callers may then treat it as empty (json_array_size(NULL) is 0). */
int jsonh_get_array(const json_t *obj, const char *key, json_t **out,
		    struct err *err);
int jsonh_opt_array(const json_t *obj, const char *key, json_t **out,
		    struct err *err);
int jsonh_get_object(const json_t *obj, const char *key, json_t **out,
		     struct err *err);
int jsonh_opt_object(const json_t *obj, const char *key, json_t **out,
		     struct err *err);

/* Element i of an array that must be an object / a string (NUL-free).
 * name is the array's member name for the message (element items[3] must
 * be an object, got integer). i out of range is ERR_PARSE too. */
int jsonh_elem_object(const json_t *arr, size_t i, const char *name,
		      json_t **out, struct err *err);
int jsonh_elem_str(const json_t *arr, size_t i, const char *name,
		   const char **out, struct err *err);

/* Serialize v compactly (no spaces, keys in insertion order) into a
 * NUL-terminated malloc'd string; free it with free(). Returns NULL with
 * *err set (ERR_NOMEM, or ERR_INVAL for v == NULL). Does not consume v. */
char *jsonh_dumps(const json_t *v, struct err *err);

/* 1 when the NUL-terminated s is valid UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF), else 0: what JSON strings, GCS
 * object names and Drive names must be. */
int jsonh_utf8_valid(const char *s);

/* A new JSON string of s (NULL: ""), for output that must never fail on a
 * local name: each byte of s that is not part of valid UTF-8 becomes
 * U+FFFD. NULL only when out of memory. */
json_t *jsonh_string_lossy(const char *s);

/* Short name of a JSON value's type for messages: "object", "array",
 * "string", "integer", "real", "boolean", "null", or "nothing" for NULL. */
const char *jsonh_type_name(const json_t *v);

#endif
