/* durafs-emulator fault rules: parsing the rule JSON (documented in
 * tests/emulator/README.md), matching rules against requests, and the
 * thread-safe rule set the core and the services consult. */
#ifndef DURAFS_EMU_CORE_FAULT_H
#define DURAFS_EMU_CORE_FAULT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum emu_fault_kind {
	EMU_FAULT_STATUS = 0,       /* answer with a status, service not run */
	EMU_FAULT_CUT,              /* close after after_bytes of request body */
	EMU_FAULT_CUT_RESPONSE,     /* close after after_bytes of response body */
	EMU_FAULT_LATENCY,          /* sleep ms before answering */
	EMU_FAULT_SHORT308,         /* service: persist persist_less fewer bytes */
	EMU_FAULT_PAGE_CAP,         /* service: at most max items per page */
	EMU_FAULT_EXPIRE_SESSION,   /* service: the upload session is gone */
	EMU_FAULT_NKINDS
};

#define EMU_FAULT_UNLIMITED (-1L)

/* One parsed rule. Strings are inline so a matched rule can be copied out
 * of the locked set. */
struct emu_fault_rule {
	int kind;                  /* enum emu_fault_kind */
	char method[16];           /* "" = any */
	char path[512];            /* glob with '*', "" = any */
	char query[256];           /* substring of the raw query, "" = any */
	long count;                /* remaining uses, EMU_FAULT_UNLIMITED */
	double fraction;           /* 0 = always; else probability per match */
	int status;                /* status */
	char reason[64];           /* status: Google reason ("" = by status) */
	char message[128];         /* status: error message ("" = default) */
	long retry_after;          /* status: Retry-After seconds, -1 = none */
	uint64_t after_bytes;      /* cut, cut_response */
	long ms;                   /* latency */
	uint64_t persist_less;     /* short308 */
	long max;                  /* page_cap */
	uint64_t hits;             /* times this rule fired */
};

/* The rule set of one emulator. All functions are thread-safe. */
struct emu_faults {
	pthread_mutex_t mu;
	struct emu_fault_rule *rules;  /* protected by mu */
	size_t n;                      /* protected by mu */
	uint64_t seed;                 /* protected by mu */
	uint64_t rng;                  /* protected by mu */
	uint64_t fired[EMU_FAULT_NKINDS]; /* protected by mu */
};

/* "status", "cut" ... for a kind; "?" when out of range. */
const char *emu_fault_kind_name(int kind);

/* Glob match: '*' matches any run of bytes ('/' included), every other
 * byte matches itself. Pure; linear-time backtracking. */
int emu_glob_match(const char *pattern, const char *s);

/* Parse a JSON array of rule objects into a new array (*out, caller frees
 * with free()). Unknown fields, wrong types and out-of-range values are
 * refused: returns -1 with a one-line reason in why. Pure. */
int emu_fault_parse_rules(const json_t *arr, struct emu_fault_rule **out,
			  size_t *n, char *why, size_t whysz);

/* One rule as JSON (for GET /_emulator/faults); new reference or NULL. */
json_t *emu_fault_rule_json(const struct emu_fault_rule *r);

int emu_faults_init(struct emu_faults *f, uint64_t seed);
void emu_faults_release(struct emu_faults *f);

/* Apply a control body: {"rules":[...]} replaces the set, {"add":[...]}
 * appends, "seed":N reseeds the PRNG (any combination). On error nothing
 * changes and why says what is wrong; returns -1. */
int emu_faults_apply(struct emu_faults *f, const json_t *body, char *why,
		     size_t whysz);
/* Remove every rule and zero the fired counters (the seed is kept). */
void emu_faults_clear(struct emu_faults *f);
/* {"rules":[... with "remaining" and "hits"], "seed":N, "fired":{...}}. */
json_t *emu_faults_list(struct emu_faults *f);
/* Fired counts by kind name, for stats; new reference. */
json_t *emu_faults_fired_json(struct emu_faults *f);

/* Find the first rule of kind matching method/path/query (query may be
 * NULL) that still has uses left and whose fraction draw succeeds; consume
 * one use, copy it to *out and return 1. Else 0. For cut and cut_response
 * a rule matches only when after_bytes < avail (pass UINT64_MAX when the
 * length is unknown); avail is ignored for other kinds. */
int emu_faults_take(struct emu_faults *f, int kind, const char *method,
		    const char *path, const char *query, uint64_t avail,
		    struct emu_fault_rule *out);

#endif
