/* libFuzzer target for the JSON helpers every reply parser uses
 * (sync/jsonh.c): parse any bytes as an object, then read every member
 * with every accessor (strings into small and large buffers, int64 as
 * numbers and decimal strings, bools, arrays and their elements, nested
 * objects), serialize and parse back. Checks the contract besides memory
 * safety: outputs are untouched on failure, errors carry ERR_PARSE (or
 * ERR_NOMEM), an accepted decimal string prints back identically, and a
 * serialized document parses back equal. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/jsonh.h"
#include "durafs/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(int rc, const struct err *e)
{
	if (rc == 0)
		return;
	if (rc != -1 || (e->code != ERR_PARSE && e->code != ERR_NOMEM))
		abort();
	if (strnlen(e->msg, sizeof(e->msg)) == sizeof(e->msg))
		abort();
}

/* Every accessor on member key of obj. */
static void read_member(const json_t *obj, const char *key, int depth)
{
	const char *str = (const char *)1, *strn = NULL;
	char small[8], big[256], *dup = NULL;
	json_t *arr = (json_t *)1, *sub = NULL, *v = json_object_get(obj, key);
	int64_t i64 = 7;
	uint64_t u64 = 7;
	size_t len = 0, i;
	struct err e;
	int b = 3, rc;

	rc = jsonh_get_str(obj, key, &str, &e);
	check_err(rc, &e);
	if (rc == 0 && strlen(str) != json_string_length(v))
		abort();  /* a C string without a hidden NUL */
	if (rc < 0 && str != (const char *)1)
		abort();  /* untouched on failure */
	check_err(jsonh_opt_str(obj, key, &str, &e), &e);
	rc = jsonh_get_strn(obj, key, &strn, &len, &e);
	check_err(rc, &e);
	if (rc == 0 && (len != json_string_length(v) || memcmp(strn, json_string_value(v), len)))
		abort();
	rc = jsonh_get_strbuf(obj, key, small, sizeof(small), &e);
	check_err(rc, &e);
	if (rc == 0 && strlen(small) >= sizeof(small))
		abort();
	check_err(jsonh_opt_strbuf(obj, key, big, sizeof(big), &e), &e);
	if (jsonh_get_strdup(obj, key, &dup, &e) == 0)
		free(dup);
	dup = NULL;
	if (jsonh_opt_strdup(obj, key, &dup, &e) == 0)
		free(dup);
	check_err(jsonh_get_bool(obj, key, &b, &e), &e);
	check_err(jsonh_opt_bool(obj, key, 1, &b, &e), &e);
	rc = jsonh_get_int64(obj, key, &i64, &e);
	check_err(rc, &e);
	if (rc == 0 && json_is_string(v)) {
		char back[32];

		snprintf(back, sizeof(back), "%" PRId64, i64);
		if (strcmp(back, json_string_value(v)) != 0)
			abort();  /* only canonical decimals are accepted */
	}
	check_err(jsonh_opt_int64(obj, key, -1, &i64, &e), &e);
	rc = jsonh_get_uint64(obj, key, &u64, &e);
	check_err(rc, &e);
	if (rc == 0 && u64 > (uint64_t)INT64_MAX)
		abort();
	check_err(jsonh_opt_uint64(obj, key, 0, &u64, &e), &e);
	rc = jsonh_get_array(obj, key, &arr, &e);
	check_err(rc, &e);
	if (rc < 0 && arr != (json_t *)1)
		abort();
	check_err(jsonh_opt_array(obj, key, &arr, &e), &e);
	if (rc == 0) {
		for (i = 0; i <= json_array_size(arr) && i < 64; i++) {
			json_t *el = NULL;
			const char *es = NULL;

			check_err(jsonh_elem_object(arr, i, key, &el, &e), &e);
			check_err(jsonh_elem_str(arr, i, key, &es, &e), &e);
			if (el && depth < 4) {
				const char *k;
				json_t *x;

				json_object_foreach(el, k, x)
					read_member(el, k, depth + 1);
			}
		}
	}
	check_err(jsonh_get_object(obj, key, &sub, &e), &e);
	check_err(jsonh_opt_object(obj, key, &sub, &e), &e);
	if (sub && depth < 4) {
		const char *k;
		json_t *x;

		json_object_foreach(sub, k, x)
			read_member(sub, k, depth + 1);
	}
	(void)jsonh_type_name(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	json_t *obj = NULL, *back = NULL;
	const char *key;
	json_t *v;
	struct err e;
	char *dump, *s;
	int64_t x;
	int rc;

	if (!quiet) {
		log_set_level(LOG_LVL_ERROR);
		quiet = 1;
	}
	rc = jsonh_parse_object((const char *)data, size, "fuzz reply", &obj, &e);
	check_err(rc, &e);
	if (rc == 0) {
		if (!json_is_object(obj))
			abort();
		json_object_foreach(obj, key, v)
			read_member(obj, key, 0);
		read_member(obj, "absent-member", 0);
		dump = jsonh_dumps(obj, &e);
		if (dump) {
			if (jsonh_parse_object(dump, strlen(dump), "dump", &back, &e) != 0 ||
			    !json_equal(obj, back))
				abort();  /* what we serialize parses back the same */
			json_decref(back);
			free(dump);
		}
		json_decref(obj);
	}
	/* Header-style decimal parsing of the raw bytes as a C string. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	rc = jsonh_parse_int64(s, "x-goog-generation", &x, &e);
	check_err(rc, &e);
	if (rc == 0) {
		char buf[32];

		snprintf(buf, sizeof(buf), "%" PRId64, x);
		if (strcmp(buf, s) != 0)
			abort();
	}
	free(s);
	return 0;
}
