/* durafs-emulator fault rules: the JSON rule parser, the request matcher
 * and the locked rule set (see emu_core_fault.h and the README's "Faults"
 * section for the rule format). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_core_fault.h"

static const char *const kind_names[EMU_FAULT_NKINDS] = {
	"status", "cut", "cut_response", "latency", "short308", "page_cap",
	"expire_session",
};

const char *emu_fault_kind_name(int kind)
{
	if (kind < 0 || kind >= EMU_FAULT_NKINDS)
		return "?";
	return kind_names[kind];
}

int emu_glob_match(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p == *s) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* splitmix64: small, seedable, good enough for fault draws. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static int copy_str(const json_t *v, const char *key, char *dst, size_t dstsz,
		    char *why, size_t whysz)
{
	const char *s;

	if (!json_is_string(v)) {
		snprintf(why, whysz, "\"%s\" must be a string", key);
		return -1;
	}
	s = json_string_value(v);
	if (strlen(s) >= dstsz || strlen(s) != json_string_length(v)) {
		snprintf(why, whysz, "\"%s\" is too long or holds a NUL", key);
		return -1;
	}
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int get_int(const json_t *v, const char *key, long long lo, long long hi,
		   long long *out, char *why, size_t whysz)
{
	if (!json_is_integer(v)) {
		snprintf(why, whysz, "\"%s\" must be an integer", key);
		return -1;
	}
	*out = json_integer_value(v);
	if (*out < lo || *out > hi) {
		snprintf(why, whysz, "\"%s\" must be between %lld and %lld", key, lo, hi);
		return -1;
	}
	return 0;
}

/* Fields each kind accepts besides the matching ones. */
static int field_allowed(int kind, const char *key)
{
	static const char *const common[] = { "kind", "method", "path", "query",
					      "count", "fraction", NULL };
	size_t i;

	for (i = 0; common[i]; i++)
		if (!strcmp(key, common[i]))
			return 1;
	switch (kind) {
	case EMU_FAULT_STATUS:
		return !strcmp(key, "status") || !strcmp(key, "reason") ||
		       !strcmp(key, "message") || !strcmp(key, "retry_after");
	case EMU_FAULT_CUT:
	case EMU_FAULT_CUT_RESPONSE:
		return !strcmp(key, "after_bytes");
	case EMU_FAULT_LATENCY:
		return !strcmp(key, "ms");
	case EMU_FAULT_SHORT308:
		return !strcmp(key, "persist_less");
	case EMU_FAULT_PAGE_CAP:
		return !strcmp(key, "max");
	default:
		return 0;
	}
}

static int parse_rule(const json_t *o, struct emu_fault_rule *r, char *why,
		      size_t whysz)
{
	const char *key;
	json_t *v;
	long long x;
	int k;
	char kbuf[32];

	memset(r, 0, sizeof(*r));
	r->count = EMU_FAULT_UNLIMITED;
	r->retry_after = -1;
	r->status = -1;
	r->max = -1;
	if (!json_is_object(o)) {
		snprintf(why, whysz, "a rule must be a JSON object");
		return -1;
	}
	v = json_object_get(o, "kind");
	if (!v) {
		snprintf(why, whysz, "a rule needs \"kind\"");
		return -1;
	}
	if (copy_str(v, "kind", kbuf, sizeof(kbuf), why, whysz) < 0)
		return -1;
	r->kind = -1;
	for (k = 0; k < EMU_FAULT_NKINDS; k++)
		if (!strcmp(kbuf, kind_names[k]))
			r->kind = k;
	if (r->kind < 0) {
		snprintf(why, whysz, "unknown fault kind \"%.32s\"", kbuf);
		return -1;
	}
	json_object_foreach((json_t *)o, key, v) {
		if (!field_allowed(r->kind, key)) {
			snprintf(why, whysz, "unknown field \"%.64s\" in a %s rule", key,
				 kind_names[r->kind]);
			return -1;
		}
		if (!strcmp(key, "kind")) {
			continue;
		} else if (!strcmp(key, "method")) {
			if (copy_str(v, key, r->method, sizeof(r->method), why, whysz) < 0)
				return -1;
		} else if (!strcmp(key, "path")) {
			if (copy_str(v, key, r->path, sizeof(r->path), why, whysz) < 0)
				return -1;
		} else if (!strcmp(key, "query")) {
			if (copy_str(v, key, r->query, sizeof(r->query), why, whysz) < 0)
				return -1;
		} else if (!strcmp(key, "count")) {
			if (get_int(v, key, 1, (long long)1 << 40, &x, why, whysz) < 0)
				return -1;
			r->count = (long)x;
		} else if (!strcmp(key, "fraction")) {
			if (!json_is_number(v) || !(json_number_value(v) > 0.0) ||
			    json_number_value(v) > 1.0) {
				snprintf(why, whysz, "\"fraction\" must be a number in (0, 1]");
				return -1;
			}
			r->fraction = json_number_value(v);
		} else if (!strcmp(key, "status")) {
			if (get_int(v, key, 200, 599, &x, why, whysz) < 0)
				return -1;
			r->status = (int)x;
		} else if (!strcmp(key, "reason")) {
			if (copy_str(v, key, r->reason, sizeof(r->reason), why, whysz) < 0)
				return -1;
		} else if (!strcmp(key, "message")) {
			if (copy_str(v, key, r->message, sizeof(r->message), why, whysz) < 0)
				return -1;
		} else if (!strcmp(key, "retry_after")) {
			if (get_int(v, key, 0, 86400, &x, why, whysz) < 0)
				return -1;
			r->retry_after = (long)x;
		} else if (!strcmp(key, "after_bytes")) {
			if (get_int(v, key, 0, (long long)1 << 50, &x, why, whysz) < 0)
				return -1;
			r->after_bytes = (uint64_t)x;
		} else if (!strcmp(key, "ms")) {
			if (get_int(v, key, 0, 600000, &x, why, whysz) < 0)
				return -1;
			r->ms = (long)x;
		} else if (!strcmp(key, "persist_less")) {
			if (get_int(v, key, 1, (long long)1 << 50, &x, why, whysz) < 0)
				return -1;
			r->persist_less = (uint64_t)x;
		} else if (!strcmp(key, "max")) {
			if (get_int(v, key, 1, 1000000, &x, why, whysz) < 0)
				return -1;
			r->max = (long)x;
		}
	}
	if (r->kind == EMU_FAULT_STATUS && r->status < 0) {
		snprintf(why, whysz, "a status rule needs \"status\"");
		return -1;
	}
	if ((r->kind == EMU_FAULT_CUT || r->kind == EMU_FAULT_CUT_RESPONSE) &&
	    !json_object_get(o, "after_bytes")) {
		snprintf(why, whysz, "a %s rule needs \"after_bytes\"", kind_names[r->kind]);
		return -1;
	}
	if (r->kind == EMU_FAULT_LATENCY && !json_object_get(o, "ms")) {
		snprintf(why, whysz, "a latency rule needs \"ms\"");
		return -1;
	}
	if (r->kind == EMU_FAULT_SHORT308 && !r->persist_less) {
		snprintf(why, whysz, "a short308 rule needs \"persist_less\"");
		return -1;
	}
	if (r->kind == EMU_FAULT_PAGE_CAP && r->max < 0) {
		snprintf(why, whysz, "a page_cap rule needs \"max\"");
		return -1;
	}
	return 0;
}

int emu_fault_parse_rules(const json_t *arr, struct emu_fault_rule **out,
			  size_t *n, char *why, size_t whysz)
{
	struct emu_fault_rule *rules = NULL;
	size_t i, cnt;
	char sub[200];
	int rc = -1;

	*out = NULL;
	*n = 0;
	if (!json_is_array(arr)) {
		snprintf(why, whysz, "rules must be a JSON array");
		goto out;
	}
	cnt = json_array_size(arr);
	if (cnt > 10000) {
		snprintf(why, whysz, "too many rules (%zu, at most 10000)", cnt);
		goto out;
	}
	if (cnt) {
		rules = calloc(cnt, sizeof(*rules));
		if (!rules) {
			snprintf(why, whysz, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < cnt; i++) {
		if (parse_rule(json_array_get(arr, i), &rules[i], sub, sizeof(sub)) < 0) {
			snprintf(why, whysz, "rule %zu: %s", i, sub);
			goto out;
		}
	}
	*out = rules;
	*n = cnt;
	rules = NULL;
	rc = 0;
out:
	free(rules);
	return rc;
}

json_t *emu_fault_rule_json(const struct emu_fault_rule *r)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "kind", json_string(emu_fault_kind_name(r->kind)));
	if (r->method[0])
		json_object_set_new(o, "method", json_string(r->method));
	if (r->path[0])
		json_object_set_new(o, "path", json_string(r->path));
	if (r->query[0])
		json_object_set_new(o, "query", json_string(r->query));
	if (r->fraction > 0)
		json_object_set_new(o, "fraction", json_real(r->fraction));
	switch (r->kind) {
	case EMU_FAULT_STATUS:
		json_object_set_new(o, "status", json_integer(r->status));
		if (r->reason[0])
			json_object_set_new(o, "reason", json_string(r->reason));
		if (r->message[0])
			json_object_set_new(o, "message", json_string(r->message));
		if (r->retry_after >= 0)
			json_object_set_new(o, "retry_after", json_integer(r->retry_after));
		break;
	case EMU_FAULT_CUT:
	case EMU_FAULT_CUT_RESPONSE:
		json_object_set_new(o, "after_bytes", json_integer((json_int_t)r->after_bytes));
		break;
	case EMU_FAULT_LATENCY:
		json_object_set_new(o, "ms", json_integer(r->ms));
		break;
	case EMU_FAULT_SHORT308:
		json_object_set_new(o, "persist_less", json_integer((json_int_t)r->persist_less));
		break;
	case EMU_FAULT_PAGE_CAP:
		json_object_set_new(o, "max", json_integer(r->max));
		break;
	default:
		break;
	}
	/* "remaining": null means unlimited. */
	json_object_set_new(o, "remaining", r->count == EMU_FAULT_UNLIMITED ?
			    json_null() : json_integer(r->count));
	json_object_set_new(o, "hits", json_integer((json_int_t)r->hits));
	return o;
}

int emu_faults_init(struct emu_faults *f, uint64_t seed)
{
	memset(f, 0, sizeof(*f));
	f->seed = seed;
	f->rng = seed;
	return pthread_mutex_init(&f->mu, NULL) ? -1 : 0;
}

void emu_faults_release(struct emu_faults *f)
{
	free(f->rules);
	f->rules = NULL;
	f->n = 0;
	pthread_mutex_destroy(&f->mu);
}

int emu_faults_apply(struct emu_faults *f, const json_t *body, char *why,
		     size_t whysz)
{
	struct emu_fault_rule *repl = NULL, *add = NULL, *merged = NULL;
	size_t nrepl = 0, nadd = 0, base;
	const json_t *jr, *ja, *js;
	const char *key;
	json_t *v;
	long long seed = 0;
	int rc = -1;

	if (!json_is_object(body)) {
		snprintf(why, whysz, "body must be a JSON object");
		goto out;
	}
	json_object_foreach((json_t *)body, key, v) {
		if (strcmp(key, "rules") && strcmp(key, "add") && strcmp(key, "seed")) {
			snprintf(why, whysz, "unknown field \"%.64s\" (expected rules, add, seed)",
				 key);
			goto out;
		}
	}
	jr = json_object_get(body, "rules");
	ja = json_object_get(body, "add");
	js = json_object_get(body, "seed");
	if (!jr && !ja && !js) {
		snprintf(why, whysz, "expected \"rules\", \"add\" or \"seed\"");
		goto out;
	}
	if (jr && emu_fault_parse_rules(jr, &repl, &nrepl, why, whysz) < 0)
		goto out;
	if (ja && emu_fault_parse_rules(ja, &add, &nadd, why, whysz) < 0)
		goto out;
	if (js && get_int(js, "seed", 0, INT64_MAX, &seed, why, whysz) < 0)
		goto out;

	pthread_mutex_lock(&f->mu);
	base = jr ? nrepl : f->n;
	if (base + nadd > 10000) {
		pthread_mutex_unlock(&f->mu);
		snprintf(why, whysz, "too many rules (at most 10000)");
		goto out;
	}
	if (base + nadd) {
		merged = calloc(base + nadd, sizeof(*merged));
		if (!merged) {
			pthread_mutex_unlock(&f->mu);
			snprintf(why, whysz, "out of memory");
			goto out;
		}
		if (base)
			memcpy(merged, jr ? repl : f->rules, base * sizeof(*merged));
		if (nadd)
			memcpy(merged + base, add, nadd * sizeof(*merged));
	}
	free(f->rules);
	f->rules = merged;
	f->n = base + nadd;
	merged = NULL;
	if (js) {
		f->seed = (uint64_t)seed;
		f->rng = (uint64_t)seed;
	}
	pthread_mutex_unlock(&f->mu);
	rc = 0;
out:
	free(repl);
	free(add);
	free(merged);
	return rc;
}

void emu_faults_clear(struct emu_faults *f)
{
	pthread_mutex_lock(&f->mu);
	free(f->rules);
	f->rules = NULL;
	f->n = 0;
	memset(f->fired, 0, sizeof(f->fired));
	f->rng = f->seed;
	pthread_mutex_unlock(&f->mu);
}

json_t *emu_faults_fired_json(struct emu_faults *f)
{
	json_t *o = json_object();
	int k;

	if (!o)
		return NULL;
	pthread_mutex_lock(&f->mu);
	for (k = 0; k < EMU_FAULT_NKINDS; k++)
		json_object_set_new(o, kind_names[k], json_integer((json_int_t)f->fired[k]));
	pthread_mutex_unlock(&f->mu);
	return o;
}

json_t *emu_faults_list(struct emu_faults *f)
{
	json_t *o = json_object(), *arr = json_array();
	size_t i;

	if (!o || !arr) {
		json_decref(o);
		json_decref(arr);
		return NULL;
	}
	pthread_mutex_lock(&f->mu);
	for (i = 0; i < f->n; i++)
		json_array_append_new(arr, emu_fault_rule_json(&f->rules[i]));
	json_object_set_new(o, "seed", json_integer((json_int_t)(f->seed & INT64_MAX)));
	pthread_mutex_unlock(&f->mu);
	json_object_set_new(o, "rules", arr);
	json_object_set_new(o, "fired", emu_faults_fired_json(f));
	return o;
}

static int rule_matches(const struct emu_fault_rule *r, int kind, const char *method,
			const char *path, const char *query, uint64_t avail)
{
	if (r->kind != kind || r->count == 0)
		return 0;
	if (r->method[0] && strcmp(r->method, method))
		return 0;
	if (r->path[0] && !emu_glob_match(r->path, path))
		return 0;
	if (r->query[0] && (!query || !strstr(query, r->query)))
		return 0;
	if ((kind == EMU_FAULT_CUT || kind == EMU_FAULT_CUT_RESPONSE) &&
	    r->after_bytes >= avail)
		return 0;
	return 1;
}

int emu_faults_take(struct emu_faults *f, int kind, const char *method,
		    const char *path, const char *query, uint64_t avail,
		    struct emu_fault_rule *out)
{
	size_t i;
	int hit = 0;

	pthread_mutex_lock(&f->mu);
	for (i = 0; i < f->n; i++) {
		struct emu_fault_rule *r = &f->rules[i];

		if (!rule_matches(r, kind, method, path, query, avail))
			continue;
		if (r->fraction > 0) {
			double u = (double)(rng_next(&f->rng) >> 11) * 0x1.0p-53;

			if (u >= r->fraction)
				continue;
		}
		if (r->count > 0)
			r->count--;
		r->hits++;
		f->fired[kind]++;
		if (out)
			*out = *r;
		hit = 1;
		break;
	}
	pthread_mutex_unlock(&f->mu);
	return hit;
}
