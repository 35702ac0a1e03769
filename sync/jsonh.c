/* JSON helpers over Jansson (include/durafs/jsonh.h): strict parsing of
 * remote replies and typed field access that turns every surprise into an
 * ERR_PARSE naming the field and the expected type. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/jsonh.h"
#include "durafs/log.h"

const char *jsonh_type_name(const json_t *v)
{
	if (!v)
		return "nothing";
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "real";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

/* err_set, then mask anything secret that slipped into the message. */
static int jsonh_fail(struct err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int jsonh_fail(struct err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err_clear(err);
	err->code = ERR_PARSE;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	log_redact(err->msg);
	return -1;
}

int jsonh_parse_object(const char *buf, size_t len, const char *what,
		       json_t **out, struct err *err)
{
	json_error_t jerr;
	json_t *v = NULL;
	int rc = -1;

	if (!what)
		what = "reply";
	if (!buf || len == 0) {
		jsonh_fail(err, "%s: empty, expected a JSON object", what);
		goto out;
	}
	v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL |
		       JSON_DECODE_ANY, &jerr);
	if (!v) {
		jsonh_fail(err, "%s: malformed JSON at line %d column %d: %s",
			   what, jerr.line, jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_object(v)) {
		jsonh_fail(err, "%s: expected a JSON object, got %s", what,
			   jsonh_type_name(v));
		goto out;
	}
	*out = v;
	v = NULL;
	rc = 0;
out:
	json_decref(v);
	return rc;
}

/* The member, or NULL when absent or null (then *absent = 1). Fails when
 * obj is not an object. */
static int jsonh_member(const json_t *obj, const char *key, json_t **out,
			struct err *err)
{
	json_t *v;

	if (!json_is_object(obj))
		return jsonh_fail(err, "field \"%s\" looked up in %s, not an object",
				  key, jsonh_type_name(obj));
	v = json_object_get(obj, key);
	*out = json_is_null(v) ? NULL : v;
	return 0;
}

static int jsonh_missing(const char *key, struct err *err)
{
	return jsonh_fail(err, "field \"%s\" missing", key);
}

static int jsonh_wrong(const char *key, const char *want, const json_t *v,
		       struct err *err)
{
	return jsonh_fail(err, "field \"%s\" must be %s, got %s", key, want,
			  jsonh_type_name(v));
}

/* Common core of the string getters. required: absent is an error. nul_ok:
 * embedded NULs accepted. */
static int jsonh_str(const json_t *obj, const char *key, int required,
		     int nul_ok, const char **out, size_t *len, struct err *err)
{
	json_t *v = NULL;
	const char *s;
	size_t n;

	if (jsonh_member(obj, key, &v, err))
		return -1;
	if (!v) {
		if (required)
			return jsonh_missing(key, err);
		*out = NULL;
		if (len)
			*len = 0;
		return 0;
	}
	if (!json_is_string(v))
		return jsonh_wrong(key, "a string", v, err);
	s = json_string_value(v);
	n = json_string_length(v);
	if (!nul_ok && strlen(s) != n)
		return jsonh_fail(err, "field \"%s\" contains a NUL byte", key);
	*out = s;
	if (len)
		*len = n;
	return 0;
}

int jsonh_get_str(const json_t *obj, const char *key, const char **out,
		  struct err *err)
{
	return jsonh_str(obj, key, 1, 0, out, NULL, err);
}

int jsonh_opt_str(const json_t *obj, const char *key, const char **out,
		  struct err *err)
{
	return jsonh_str(obj, key, 0, 0, out, NULL, err);
}

int jsonh_get_strn(const json_t *obj, const char *key, const char **out,
		   size_t *len, struct err *err)
{
	return jsonh_str(obj, key, 1, 1, out, len, err);
}

static int jsonh_strbuf(const json_t *obj, const char *key, int required,
			char *buf, size_t bufsz, struct err *err)
{
	const char *s = NULL;
	size_t n;

	if (!buf || bufsz == 0)
		return err_set(err, ERR_INVAL, "field \"%s\": no buffer", key);
	if (jsonh_str(obj, key, required, 0, &s, &n, err))
		return -1;
	if (!s) {
		buf[0] = '\0';
		return 0;
	}
	if (n >= bufsz)
		return jsonh_fail(err, "field \"%s\" too long (%zu bytes, at most %zu)",
				  key, n, bufsz - 1);
	memcpy(buf, s, n + 1);
	return 0;
}

int jsonh_get_strbuf(const json_t *obj, const char *key, char *buf,
		     size_t bufsz, struct err *err)
{
	return jsonh_strbuf(obj, key, 1, buf, bufsz, err);
}

int jsonh_opt_strbuf(const json_t *obj, const char *key, char *buf,
		     size_t bufsz, struct err *err)
{
	return jsonh_strbuf(obj, key, 0, buf, bufsz, err);
}

static int jsonh_strdup(const json_t *obj, const char *key, int required,
			char **out, struct err *err)
{
	const char *s = NULL;
	char *copy = NULL;

	if (jsonh_str(obj, key, required, 0, &s, NULL, err))
		return -1;
	if (s) {
		copy = strdup(s);
		if (!copy)
			return err_set(err, ERR_NOMEM, "field \"%s\": out of memory", key);
	}
	*out = copy;
	return 0;
}

int jsonh_get_strdup(const json_t *obj, const char *key, char **out,
		     struct err *err)
{
	return jsonh_strdup(obj, key, 1, out, err);
}

int jsonh_opt_strdup(const json_t *obj, const char *key, char **out,
		     struct err *err)
{
	return jsonh_strdup(obj, key, 0, out, err);
}

static int jsonh_bool(const json_t *obj, const char *key, int required,
		      int def, int *out, struct err *err)
{
	json_t *v = NULL;

	if (jsonh_member(obj, key, &v, err))
		return -1;
	if (!v) {
		if (required)
			return jsonh_missing(key, err);
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return jsonh_wrong(key, "a boolean", v, err);
	*out = json_is_true(v);
	return 0;
}

int jsonh_get_bool(const json_t *obj, const char *key, int *out,
		   struct err *err)
{
	return jsonh_bool(obj, key, 1, 0, out, err);
}

int jsonh_opt_bool(const json_t *obj, const char *key, int def, int *out,
		   struct err *err)
{
	return jsonh_bool(obj, key, 0, def, out, err);
}

/* Strict decimal int64: -?(0|[1-9][0-9]*), in range. 0 or -1. */
static int jsonh_decimal(const char *s, size_t n, int64_t *out)
{
	uint64_t v = 0, lim;
	size_t i = 0;
	int neg = 0;

	if (n > 0 && s[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == n)
		return -1;
	if (s[i] == '0' && (n - i > 1 || neg))
		return -1;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (lim - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (neg)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return 0;
}

/* A short printable excerpt of s for messages (cut, control chars as '?'). */
static void jsonh_excerpt(const char *s, size_t n, char *buf, size_t bufsz)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < bufsz; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (i < n && o + 3 < bufsz) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

int jsonh_parse_int64(const char *s, const char *what, int64_t *out,
		      struct err *err)
{
	char ex[32];

	if (!s)
		return jsonh_fail(err, "%s missing", what ? what : "value");
	if (jsonh_decimal(s, strlen(s), out) == 0)
		return 0;
	jsonh_excerpt(s, strlen(s), ex, sizeof(ex));
	return jsonh_fail(err, "%s must be a decimal int64, got \"%s\"",
			  what ? what : "value", ex);
}

static int jsonh_int64(const json_t *obj, const char *key, int required,
		       int64_t def, int64_t *out, struct err *err)
{
	static const char want[] = "an int64 (number or decimal string)";
	json_t *v = NULL;
	char ex[32];
	int64_t x;

	if (jsonh_member(obj, key, &v, err))
		return -1;
	if (!v) {
		if (required)
			return jsonh_missing(key, err);
		*out = def;
		return 0;
	}
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return jsonh_wrong(key, want, v, err);
	if (jsonh_decimal(json_string_value(v), json_string_length(v), &x) == 0) {
		*out = x;
		return 0;
	}
	jsonh_excerpt(json_string_value(v), json_string_length(v), ex, sizeof(ex));
	return jsonh_fail(err, "field \"%s\" must be %s, got string \"%s\"", key,
			  want, ex);
}

int jsonh_get_int64(const json_t *obj, const char *key, int64_t *out,
		    struct err *err)
{
	return jsonh_int64(obj, key, 1, 0, out, err);
}

int jsonh_opt_int64(const json_t *obj, const char *key, int64_t def,
		    int64_t *out, struct err *err)
{
	return jsonh_int64(obj, key, 0, def, out, err);
}

static int jsonh_uint64(const json_t *obj, const char *key, int required,
			uint64_t def, uint64_t *out, struct err *err)
{
	int64_t v = 0;
	json_t *m = NULL;

	if (jsonh_member(obj, key, &m, err))
		return -1;
	if (!m && !required) {
		*out = def;
		return 0;
	}
	if (jsonh_int64(obj, key, 1, 0, &v, err))
		return -1;
	if (v < 0)
		return jsonh_fail(err, "field \"%s\" must be a non-negative int64, "
				  "got %" PRId64, key, v);
	*out = (uint64_t)v;
	return 0;
}

int jsonh_get_uint64(const json_t *obj, const char *key, uint64_t *out,
		     struct err *err)
{
	return jsonh_uint64(obj, key, 1, 0, out, err);
}

int jsonh_opt_uint64(const json_t *obj, const char *key, uint64_t def,
		     uint64_t *out, struct err *err)
{
	return jsonh_uint64(obj, key, 0, def, out, err);
}

static int jsonh_typed(const json_t *obj, const char *key, int required,
		       int type, json_t **out, struct err *err)
{
	json_t *v = NULL;

	if (jsonh_member(obj, key, &v, err))
		return -1;
	if (!v) {
		if (required)
			return jsonh_missing(key, err);
		*out = NULL;
		return 0;
	}
	if ((int)json_typeof(v) != type)
		return jsonh_wrong(key, type == JSON_ARRAY ? "an array" : "an object",
				   v, err);
	*out = v;
	return 0;
}

int jsonh_get_array(const json_t *obj, const char *key, json_t **out,
		    struct err *err)
{
	return jsonh_typed(obj, key, 1, JSON_ARRAY, out, err);
}

int jsonh_opt_array(const json_t *obj, const char *key, json_t **out,
		    struct err *err)
{
	return jsonh_typed(obj, key, 0, JSON_ARRAY, out, err);
}

int jsonh_get_object(const json_t *obj, const char *key, json_t **out,
		     struct err *err)
{
	return jsonh_typed(obj, key, 1, JSON_OBJECT, out, err);
}

int jsonh_opt_object(const json_t *obj, const char *key, json_t **out,
		     struct err *err)
{
	return jsonh_typed(obj, key, 0, JSON_OBJECT, out, err);
}

/* Element i of arr (bounds and type checked by the callers below). */
static int jsonh_elem(const json_t *arr, size_t i, const char *name,
		      json_t **out, struct err *err)
{
	if (!name)
		name = "array";
	if (!json_is_array(arr))
		return jsonh_fail(err, "%s must be an array, got %s", name,
				  jsonh_type_name(arr));
	if (i >= json_array_size(arr))
		return jsonh_fail(err, "element %s[%zu] missing (array of %zu)",
				  name, i, json_array_size(arr));
	*out = json_array_get(arr, i);
	return 0;
}

int jsonh_elem_object(const json_t *arr, size_t i, const char *name,
		      json_t **out, struct err *err)
{
	json_t *v = NULL;

	if (jsonh_elem(arr, i, name, &v, err))
		return -1;
	if (!json_is_object(v))
		return jsonh_fail(err, "element %s[%zu] must be an object, got %s",
				  name ? name : "array", i, jsonh_type_name(v));
	*out = v;
	return 0;
}

int jsonh_elem_str(const json_t *arr, size_t i, const char *name,
		   const char **out, struct err *err)
{
	json_t *v = NULL;

	if (jsonh_elem(arr, i, name, &v, err))
		return -1;
	if (!json_is_string(v))
		return jsonh_fail(err, "element %s[%zu] must be a string, got %s",
				  name ? name : "array", i, jsonh_type_name(v));
	if (strlen(json_string_value(v)) != json_string_length(v))
		return jsonh_fail(err, "element %s[%zu] contains a NUL byte",
				  name ? name : "array", i);
	*out = json_string_value(v);
	return 0;
}

/* Length (2-4) of the valid UTF-8 sequence of a non-ASCII lead at p, or 0. */
static int utf8_seq(const unsigned char *p)
{
	uint32_t c;
	int n, i;

	if (*p >= 0xc2 && *p <= 0xdf) {
		n = 1;
		c = *p & 0x1f;
	} else if (*p >= 0xe0 && *p <= 0xef) {
		n = 2;
		c = *p & 0x0f;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 3;
		c = *p & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && c < 0x800) || (n == 3 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n + 1;
}

int jsonh_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int n;

	while (*p) {
		if (*p < 0x80) {
			p++;
			continue;
		}
		n = utf8_seq(p);
		if (!n)
			return 0;
		p += n;
	}
	return 1;
}

json_t *jsonh_string_lossy(const char *s)
{
	const unsigned char *p;
	json_t *v = NULL;
	char *buf = NULL, *q;
	int n;

	if (!s)
		s = "";
	if (jsonh_utf8_valid(s))
		return json_string(s);
	buf = malloc(strlen(s) * 3 + 1);    /* a bad byte becomes 3 */
	if (!buf)
		return NULL;
	q = buf;
	for (p = (const unsigned char *)s; *p;) {
		if (*p < 0x80) {
			*q++ = (char)*p++;
			continue;
		}
		n = utf8_seq(p);
		if (n) {
			memcpy(q, p, (size_t)n);
			q += n;
			p += n;
		} else {
			memcpy(q, "\xef\xbf\xbd", 3);
			q += 3;
			p++;
		}
	}
	*q = 0;
	v = json_string(buf);
	free(buf);
	return v;
}

char *jsonh_dumps(const json_t *v, struct err *err)
{
	char *s;

	if (!v) {
		err_set(err, ERR_INVAL, "JSON serialization of nothing");
		return NULL;
	}
	s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	if (!s)
		err_set(err, ERR_NOMEM, "JSON serialization failed (out of memory)");
	return s;
}
