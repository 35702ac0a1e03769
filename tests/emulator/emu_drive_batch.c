/* durafs-emulator Drive batch parser and reply builder (emu_drive_batch.h).
 * Reads untrusted input: every scan is bounded by the body's length, parts
 * and headers are capped, nothing recurses. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu_drive_batch.h"

static void set_why(char *why, size_t whysz, const char *msg)
{
	if (why && whysz)
		snprintf(why, whysz, "%s", msg);
}

static void part_release(struct dbatch_part *p)
{
	size_t i;

	free(p->content_id);
	free(p->method);
	free(p->target);
	for (i = 0; i < p->nh; i++) {
		free(p->h[i].name);
		free(p->h[i].value);
	}
	free(p->h);
	free(p->body);
	memset(p, 0, sizeof(*p));
}

void dbatch_release(struct dbatch *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->nparts; i++)
		part_release(&b->parts[i]);
	free(b->parts);
	b->parts = NULL;
	b->nparts = 0;
}

/* The line starting at *pos in [s, end): its length without CR/LF; *pos
 * moves past the line end. Returns -1 at the end of input. */
static long line_at(const char *s, size_t end, size_t *pos, const char **line)
{
	size_t p = *pos, q;

	if (p >= end)
		return -1;
	q = p;
	while (q < end && s[q] != '\n')
		q++;
	*line = s + p;
	*pos = q < end ? q + 1 : end;
	if (q > p && s[q - 1] == '\r')
		q--;
	return (long)(q - p);
}

static char *trimmed_dup(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return strndup(s, n);
}

/* Header lines from *pos up to an empty line (consumed) or end. Returns 0,
 * or -1 on a malformed line, too many headers or ENOMEM. */
static int parse_headers(const char *s, size_t end, size_t *pos, struct dbatch_hdr **hv,
			 size_t *nh, char *why, size_t whysz)
{
	const char *line;
	long n;

	*hv = NULL;
	*nh = 0;
	while ((n = line_at(s, end, pos, &line)) >= 0) {
		const char *colon;
		struct dbatch_hdr *grown;

		if (n == 0)
			return 0;
		colon = memchr(line, ':', (size_t)n);
		if (!colon || colon == line) {
			set_why(why, whysz, "a header line has no name or no ':'");
			return -1;
		}
		if (*nh >= DBATCH_MAX_HEADERS) {
			set_why(why, whysz, "too many headers in a part");
			return -1;
		}
		grown = realloc(*hv, (*nh + 1) * sizeof(**hv));
		if (!grown)
			goto nomem;
		*hv = grown;
		(*hv)[*nh].name = trimmed_dup(line, (size_t)(colon - line));
		(*hv)[*nh].value = trimmed_dup(colon + 1, (size_t)(line + n - colon - 1));
		if (!(*hv)[*nh].name || !(*hv)[*nh].value) {
			free((*hv)[*nh].name);
			free((*hv)[*nh].value);
			goto nomem;
		}
		(*nh)++;
	}
	return 0;
nomem:
	set_why(why, whysz, "out of memory");
	return -1;
}

static void headers_free(struct dbatch_hdr *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
}

static const char *hdr_get(const struct dbatch_hdr *h, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcasecmp(h[i].name, name))
			return h[i].value;
	return NULL;
}

const char *dbatch_header(const struct dbatch_part *p, const char *name)
{
	return hdr_get(p->h, p->nh, name);
}

/* Parse one part's bytes [s, s+len) into p. */
static int parse_part(const char *s, size_t len, struct dbatch_part *p, char *why, size_t whysz)
{
	struct dbatch_hdr *mime = NULL;
	size_t nmime = 0, pos = 0;
	const char *line, *v, *sp1, *sp2, *end;
	long n;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	if (parse_headers(s, len, &pos, &mime, &nmime, why, whysz) < 0)
		goto out;
	v = hdr_get(mime, nmime, "Content-Type");
	if (!v || strncasecmp(v, "application/http", 16) != 0) {
		set_why(why, whysz, "each part must have Content-Type: application/http");
		goto out;
	}
	v = hdr_get(mime, nmime, "Content-Transfer-Encoding");
	if (v && strcasecmp(v, "binary") && strcasecmp(v, "7bit") && strcasecmp(v, "8bit")) {
		set_why(why, whysz, "unsupported Content-Transfer-Encoding in a part");
		goto out;
	}
	v = hdr_get(mime, nmime, "Content-ID");
	if (v && !(p->content_id = strdup(v)))
		goto nomem;
	/* skip blank lines before the request line */
	do {
		n = line_at(s, len, &pos, &line);
	} while (n == 0);
	if (n < 0) {
		set_why(why, whysz, "a part has no request line");
		goto out;
	}
	end = line + n;
	sp1 = memchr(line, ' ', (size_t)n);
	if (!sp1 || sp1 == line) {
		set_why(why, whysz, "malformed request line in a part");
		goto out;
	}
	while (sp1 + 1 < end && sp1[1] == ' ')
		sp1++;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (!sp2)
		sp2 = end;
	if (sp2 == sp1 + 1) {
		set_why(why, whysz, "a request line has no target");
		goto out;
	}
	if (sp2 < end) {
		const char *ver = sp2 + 1;

		while (ver < end && *ver == ' ')
			ver++;
		if ((size_t)(end - ver) < 5 || strncmp(ver, "HTTP/", 5) != 0) {
			set_why(why, whysz, "malformed HTTP version in a part's request line");
			goto out;
		}
	}
	{
		const char *m = line;
		size_t ml = 0;

		while (line + ml < end && line[ml] != ' ')
			ml++;
		if (ml > 16) {
			set_why(why, whysz, "a request method is too long");
			goto out;
		}
		for (size_t i = 0; i < ml; i++)
			if (m[i] < 'A' || m[i] > 'Z') {
				set_why(why, whysz, "a request method must be upper-case letters");
				goto out;
			}
		p->method = strndup(m, ml);
	}
	p->target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (!p->method || !p->target)
		goto nomem;
	if (memchr(line, '\0', (size_t)n) || strchr(p->target, '\t')) {
		set_why(why, whysz, "malformed request target in a part");
		goto out;
	}
	if (parse_headers(s, len, &pos, &p->h, &p->nh, why, whysz) < 0)
		goto out;
	p->body_len = len - pos;
	p->body = malloc(p->body_len + 1);
	if (!p->body)
		goto nomem;
	memcpy(p->body, s + pos, p->body_len);
	p->body[p->body_len] = '\0';
	rc = 0;
	goto out;
nomem:
	set_why(why, whysz, "out of memory");
out:
	headers_free(mime, nmime);
	if (rc < 0)
		part_release(p);
	return rc;
}

/* Position of the next delimiter line "--boundary" at or after from, at the
 * start of a line; len when none. */
static size_t find_delim(const char *s, size_t len, size_t from, const char *dl, size_t dlen)
{
	size_t p = from;

	while (p + dlen <= len) {
		const char *hit = memmem(s + p, len - p, dl, dlen);

		if (!hit)
			return len;
		p = (size_t)(hit - s);
		if (p == 0 || s[p - 1] == '\n')
			return p;
		p++;
	}
	return len;
}

int dbatch_parse(const char *body, size_t len, const char *boundary, size_t max_parts,
		 struct dbatch *out, char *why, size_t whysz)
{
	char dl[80];
	size_t dlen, pos, cap = 0;
	struct dbatch b = { 0 };
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (!boundary || !*boundary || strlen(boundary) > 70) {
		set_why(why, whysz, "missing or invalid multipart boundary");
		return -1;
	}
	dlen = (size_t)snprintf(dl, sizeof(dl), "--%s", boundary);
	pos = find_delim(body, len, 0, dl, dlen);
	if (pos >= len) {
		set_why(why, whysz, "the body has no multipart delimiter");
		return -1;
	}
	for (;;) {
		size_t start, next, end;

		pos += dlen;
		if (pos + 2 <= len && body[pos] == '-' && body[pos + 1] == '-')
			break;  /* close delimiter */
		while (pos < len && (body[pos] == ' ' || body[pos] == '\t'))
			pos++;
		if (pos < len && body[pos] == '\r')
			pos++;
		if (pos >= len || body[pos] != '\n') {
			set_why(why, whysz, "a multipart delimiter is not followed by a line end");
			goto out;
		}
		start = pos + 1;
		next = find_delim(body, len, start, dl, dlen);
		if (next >= len) {
			set_why(why, whysz, "the multipart body has no close delimiter");
			goto out;
		}
		/* the line end before the delimiter belongs to it */
		end = next;
		if (end > start && body[end - 1] == '\n')
			end--;
		if (end > start && body[end - 1] == '\r')
			end--;
		if (b.nparts >= max_parts) {
			dbatch_release(&b);
			out->nparts = max_parts + 1;
			set_why(why, whysz, "too many parts");
			return -2;
		}
		if (b.nparts == cap) {
			struct dbatch_part *grown;

			cap = cap ? cap * 2 : 16;
			grown = realloc(b.parts, cap * sizeof(*grown));
			if (!grown) {
				set_why(why, whysz, "out of memory");
				goto out;
			}
			b.parts = grown;
		}
		if (parse_part(body + start, end - start, &b.parts[b.nparts], why, whysz) < 0)
			goto out;
		b.nparts++;
		pos = next;
	}
	if (b.nparts == 0) {
		set_why(why, whysz, "the batch has no parts");
		goto out;
	}
	*out = b;
	memset(&b, 0, sizeof(b));
	rc = 0;
out:
	dbatch_release(&b);
	return rc;
}

char *dbatch_response_id(const char *cid)
{
	char *r = NULL;
	size_t n;

	if (!cid || !*cid)
		return NULL;
	n = strlen(cid);
	if (cid[0] == '<' && n >= 2 && cid[n - 1] == '>') {
		if (asprintf(&r, "<response-%.*s>", (int)(n - 2), cid + 1) < 0)
			return NULL;
	} else if (asprintf(&r, "response-%s", cid) < 0) {
		return NULL;
	}
	return r;
}

void dbuf_add(struct dbuf *b, const void *data, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void dbuf_addf(struct dbuf *b, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = 1;
		return;
	}
	dbuf_add(b, s, (size_t)n);
	free(s);
}

const char *dbatch_reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 308: return "Resume Incomplete";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 416: return "Requested Range Not Satisfiable";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return status < 300 ? "OK" : status < 500 ? "Error" : "Server Error";
	}
}

void dbatch_add_response(struct dbuf *b, const char *boundary, const char *response_id,
			 int status, const char *const *names, const char *const *values,
			 size_t nh, const char *body, size_t body_len)
{
	size_t i;

	dbuf_addf(b, "--%s\r\nContent-Type: application/http\r\n", boundary);
	if (response_id)
		dbuf_addf(b, "Content-ID: %s\r\n", response_id);
	dbuf_addf(b, "\r\nHTTP/1.1 %d %s\r\n", status, dbatch_reason_phrase(status));
	for (i = 0; i < nh; i++)
		dbuf_addf(b, "%s: %s\r\n", names[i], values[i]);
	dbuf_addf(b, "Content-Length: %zu\r\n\r\n", body_len);
	dbuf_add(b, body, body_len);
	dbuf_add(b, "\r\n", 2);
}

void dbatch_finish(struct dbuf *b, const char *boundary)
{
	dbuf_addf(b, "--%s--\r\n", boundary);
}
