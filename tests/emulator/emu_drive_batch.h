/* durafs-emulator Drive batch requests: a multipart/mixed body whose parts
 * are application/http requests ("DELETE /drive/v3/files/ID HTTP/1.1",
 * headers, optional body) split into parts, and the multipart/mixed reply
 * assembled. Pure: no I/O, no global state, fuzzed. */
#ifndef DURAFS_EMU_DRIVE_BATCH_H
#define DURAFS_EMU_DRIVE_BATCH_H

#include <stddef.h>

struct dbatch_hdr {
	char *name;
	char *value;
};

/* One embedded request; every string is owned (NUL-terminated). */
struct dbatch_part {
	char *content_id;          /* the part's Content-ID value, or NULL */
	char *method;              /* "GET", "DELETE", ... */
	char *target;              /* request target as sent (path?query or URL) */
	struct dbatch_hdr *h;      /* the embedded request's headers */
	size_t nh;
	char *body;                /* body_len bytes + NUL ("" when none) */
	size_t body_len;
};

struct dbatch {
	struct dbatch_part *parts;
	size_t nparts;
};

#define DBATCH_MAX_HEADERS 64  /* per part (MIME and HTTP headers each) */

/* Split len bytes of body (multipart/mixed with boundary) into requests.
 * Returns 0; -1 when malformed (reason in why); -2 when there are more than
 * max_parts parts (out->nparts is then the number found, capped at
 * max_parts + 1, and no parts are kept). Line ends may be CRLF or LF.
 * On any failure *out is empty. */
int dbatch_parse(const char *body, size_t len, const char *boundary, size_t max_parts,
		 struct dbatch *out, char *why, size_t whysz);
void dbatch_release(struct dbatch *b);

/* Case-insensitive header lookup in a part's embedded request; NULL when
 * absent. */
const char *dbatch_header(const struct dbatch_part *p, const char *name);

/* The Content-ID of the response to a part: "<response-X>" for "<X>",
 * "response-X" for a bare "X". Returns a malloc'd string, NULL when the part
 * had no Content-ID or memory ran out. */
char *dbatch_response_id(const char *content_id);

/* A growable byte buffer for assembling replies. */
struct dbuf {
	char *p;
	size_t len, cap;
	int oom;   /* an append failed: the buffer is incomplete */
};
void dbuf_add(struct dbuf *b, const void *data, size_t n);
void dbuf_addf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append one response part to b: the delimiter, the part's MIME headers
 * (Content-Type: application/http, Content-ID when response_id is
 * non-NULL), then "HTTP/1.1 STATUS REASON", the given headers
 * (names[i]: values[i]), Content-Length and the body. */
void dbatch_add_response(struct dbuf *b, const char *boundary, const char *response_id,
			 int status, const char *const *names, const char *const *values,
			 size_t nh, const char *body, size_t body_len);
/* Append the close delimiter. */
void dbatch_finish(struct dbuf *b, const char *boundary);

/* Standard reason phrase of an HTTP status ("OK", "No Content"...). */
const char *dbatch_reason_phrase(int status);

#endif
