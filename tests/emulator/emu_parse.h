/* durafs-emulator request parsers: the pieces of Google's upload and list
 * protocols that arrive as text (Content-Range, Range, multipart/related,
 * x-goog-hash, the `fields` partial-response syntax, opaque page tokens).
 * Pure functions over caller buffers: no I/O, no global state, fuzzed. */
#ifndef DURAFS_EMU_PARSE_H
#define DURAFS_EMU_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* Strict decimal int64: optional '-', digits only, no spaces, no overflow.
 * Returns 0 and *out, or -1. */
int emu_parse_i64(const char *s, int64_t *out);

/* Content-Range of a resumable upload request, "bytes RANGE/TOTAL" where
 * RANGE is "A-B", "A-*" (the Node client's open-ended form: the chunk ends
 * where the body ends) or "*" (a status query), and TOTAL is a number or
 * "*" (not known yet). */
struct emu_crange {
	int has_range;   /* 0 for the status-query form (RANGE "*") */
	int open_end;    /* 1 for "A-*": the chunk ends where the body ends */
	uint64_t first;  /* valid when has_range */
	uint64_t last;   /* valid when has_range && !open_end; last >= first */
	int has_total;   /* 0 when TOTAL is "*" */
	uint64_t total;  /* valid when has_total; last < total when both known */
};
/* Returns 0 and fills *out, or -1 when s is malformed or inconsistent. */
int emu_parse_content_range(const char *s, struct emu_crange *out);

/* A download's Range header against an object of size bytes.
 * Returns EMU_RANGE_WHOLE (no header, a malformed one or several ranges:
 * serve everything, as RFC 9110 allows), EMU_RANGE_PART (*first..*last,
 * inclusive) or EMU_RANGE_UNSAT (416). */
enum { EMU_RANGE_WHOLE = 0, EMU_RANGE_PART = 1, EMU_RANGE_UNSAT = 2 };
int emu_parse_range(const char *s, uint64_t size, uint64_t *first, uint64_t *last);

/* multipart/related. Parts point into the parsed body (borrowed: valid as
 * long as the body is). */
#define EMU_MP_MAX_PARTS 4
struct emu_part {
	const char *ctype;  /* Content-Type value, trimmed, not NUL-terminated */
	size_t ctype_len;   /* 0 when the part has none */
	const char *data;
	size_t len;
};
struct emu_multipart {
	struct emu_part part[EMU_MP_MAX_PARTS];
	int nparts;
};

/* The boundary parameter of a multipart Content-Type header (quoted or
 * not) into out (NUL-terminated). Returns 0, or -1 when ctype is not
 * multipart/... or carries no usable boundary (1..70 chars). */
int emu_parse_boundary(const char *ctype, char *out, size_t outsz);

/* Split body into parts. Accepts CRLF (and, leniently, bare LF) line ends;
 * refuses a part with Content-Transfer-Encoding other than binary/7bit/8bit,
 * a missing close delimiter, or more than EMU_MP_MAX_PARTS parts. Returns 0,
 * or -1 with a reason in why (why may be NULL). */
int emu_parse_multipart(const char *body, size_t len, const char *boundary,
			struct emu_multipart *mp, char *why, size_t whysz);

/* x-goog-hash: "crc32c=BASE64,md5=BASE64" (either, both, any order, spaces
 * allowed; the core may have joined repeated headers with ", "). Unknown
 * algorithms are ignored. Copies the values into crc (>= 16 bytes) and md5
 * (>= 32 bytes), "" when absent. Returns 0, or -1 when malformed. */
int emu_parse_goog_hash(const char *s, char *crc, size_t crcsz, char *md5, size_t md5sz);

/* The partial-response `fields` selector: "a,b/c,items(name,size),*".
 * A tree of selected keys; NULL means "everything". */
struct emu_fields;
/* Parse; returns a new tree (emu_fields_free), or NULL with *bad = 1 when
 * malformed (*bad = 0 and NULL for an empty selector: keep everything). */
struct emu_fields *emu_fields_parse(const char *s, int *bad);
/* Remove from j (in place, recursively through objects and arrays of
 * objects) every key the selector does not name. Keys it names that j
 * lacks are ignored. f == NULL keeps everything. */
void emu_fields_apply(const struct emu_fields *f, json_t *j);
void emu_fields_free(struct emu_fields *f);

/* Opaque tokens (page tokens, rewrite tokens): URL-safe base64 of a short
 * byte string, so a client can pass them in a query unescaped.
 * encode returns a malloc'd string (NULL on ENOMEM); decode returns a
 * malloc'd NUL-terminated copy of the bytes (length in *len), or NULL when
 * malformed. */
char *emu_token_encode(const void *data, size_t len);
char *emu_token_decode(const char *tok, size_t *len);

/* A list page token: resume with the first (name, generation) strictly
 * greater than (key, gen) in (bytewise name, ascending generation) order;
 * gen = -1 means "at key, all generations included". */
char *emu_page_token_make(const char *key, size_t keylen, int64_t gen);
/* Returns 0 with a malloc'd key (and its length) and gen, or -1. */
int emu_page_token_parse(const char *tok, char **key, size_t *keylen, int64_t *gen);

#endif
