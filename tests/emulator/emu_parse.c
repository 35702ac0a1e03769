/* durafs-emulator request parsers (emu_parse.h): Content-Range, Range,
 * multipart/related, x-goog-hash, `fields` selectors and opaque tokens.
 * Everything here reads untrusted client input: bounds first, no recursion
 * without a depth limit, no allocation proportional to anything but input. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/enc.h"
#include "emu_parse.h"

int emu_parse_i64(const char *s, int64_t *out)
{
	const char *p = s;
	int neg = 0;
	uint64_t v = 0;

	if (!s || !*s)
		return -1;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (!*p)
		return -1;
	for (; *p; p++) {
		unsigned d;

		if (*p < '0' || *p > '9')
			return -1;
		d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
			return -1;
	}
	if (neg)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return 0;
}

/* Unsigned decimal at *p (at least one digit, no sign); advances *p. */
static int parse_u64(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		s++;
	}
	*p = s;
	*out = v;
	return 0;
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int emu_parse_content_range(const char *s, struct emu_crange *out)
{
	const char *p;
	struct emu_crange r;

	memset(&r, 0, sizeof(r));
	if (!s)
		return -1;
	p = skip_ws(s);
	if (strncasecmp(p, "bytes", 5) != 0)
		return -1;
	p += 5;
	if (*p != ' ' && *p != '\t' && *p != '=')
		return -1;
	p = skip_ws(p + (*p == '=' ? 1 : 0));
	if (*p == '*') {
		p++;
	} else {
		if (parse_u64(&p, &r.first) < 0 || *p != '-')
			return -1;
		p++;
		r.has_range = 1;
		if (*p == '*') {
			r.open_end = 1;
			p++;
		} else if (parse_u64(&p, &r.last) < 0 || r.last < r.first) {
			return -1;
		}
	}
	if (*p != '/')
		return -1;
	p++;
	if (*p == '*') {
		p++;
	} else {
		if (parse_u64(&p, &r.total) < 0)
			return -1;
		r.has_total = 1;
	}
	p = skip_ws(p);
	if (*p)
		return -1;
	/* offsets are int64 on the wire: refuse what no object can reach */
	if (r.first > INT64_MAX || r.last >= INT64_MAX || r.total > INT64_MAX)
		return -1;
	if (r.has_range && r.has_total) {
		if (!r.open_end && r.last >= r.total)
			return -1;
		if (r.open_end && r.first > r.total)
			return -1;
	}
	*out = r;
	return 0;
}

int emu_parse_range(const char *s, uint64_t size, uint64_t *first, uint64_t *last)
{
	const char *p;
	uint64_t a = 0, b = 0;
	int has_a = 0, has_b = 0;

	if (!s)
		return EMU_RANGE_WHOLE;
	p = skip_ws(s);
	if (strncasecmp(p, "bytes", 5) != 0)
		return EMU_RANGE_WHOLE;
	p = skip_ws(p + 5);
	if (*p != '=')
		return EMU_RANGE_WHOLE;
	p = skip_ws(p + 1);
	if (*p >= '0' && *p <= '9') {
		if (parse_u64(&p, &a) < 0)
			return EMU_RANGE_WHOLE;
		has_a = 1;
	}
	if (*p != '-')
		return EMU_RANGE_WHOLE;
	p++;
	if (*p >= '0' && *p <= '9') {
		if (parse_u64(&p, &b) < 0)
			return EMU_RANGE_WHOLE;
		has_b = 1;
	}
	p = skip_ws(p);
	if (*p)  /* several ranges or junk: ignore the header */
		return EMU_RANGE_WHOLE;
	if (!has_a && !has_b)
		return EMU_RANGE_WHOLE;
	if (has_a && has_b && b < a)
		return EMU_RANGE_WHOLE;  /* invalid spec: ignored per RFC 9110 */
	if (!has_a) {  /* suffix: the last b bytes */
		if (b == 0 || size == 0)
			return EMU_RANGE_UNSAT;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return EMU_RANGE_PART;
	}
	if (a >= size)
		return EMU_RANGE_UNSAT;
	*first = a;
	*last = has_b && b < size ? b : size - 1;
	return EMU_RANGE_PART;
}

int emu_parse_boundary(const char *ctype, char *out, size_t outsz)
{
	const char *p;
	size_t n = 0;

	if (!ctype || outsz < 2)
		return -1;
	p = skip_ws(ctype);
	if (strncasecmp(p, "multipart/", 10) != 0)
		return -1;
	for (;;) {
		p = strchr(p, ';');
		if (!p)
			return -1;
		p = skip_ws(p + 1);
		if (strncasecmp(p, "boundary", 8) == 0) {
			const char *q = skip_ws(p + 8);

			if (*q == '=') {
				p = skip_ws(q + 1);
				break;
			}
		}
	}
	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 >= outsz)
				return -1;
			out[n++] = *p++;
		}
		if (*p != '"')
			return -1;
	} else {
		while (*p && *p != ';' && *p != ' ' && *p != '\t') {
			if (n + 1 >= outsz)
				return -1;
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
	if (n < 1 || n > 70)
		return -1;
	return 0;
}

static void set_why(char *why, size_t whysz, const char *msg)
{
	if (why && whysz)
		snprintf(why, whysz, "%s", msg);
}

/* Position just after the delimiter line that starts at d ("--B"), or NULL
 * when d is not a delimiter line. *close = 1 for the close delimiter. */
static const char *after_delimiter(const char *d, const char *end, size_t blen, int *close)
{
	const char *p = d + 2 + blen;

	*close = 0;
	if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
		*close = 1;
		return p + 2;
	}
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
		return p + 2;
	if (p < end && *p == '\n')
		return p + 1;
	return NULL;
}

/* Next delimiter at or after from: "--B" at the very start of the body or
 * preceded by a line break. Returns its position and in *cut where the
 * previous part's content ends (the CRLF/LF before it belongs to it). */
static const char *find_delimiter(const char *body, const char *from, const char *end,
				  const char *bnd, size_t blen, const char **cut)
{
	const char *p = from;
	char pat[80];

	pat[0] = '-';
	pat[1] = '-';
	memcpy(pat + 2, bnd, blen);
	while (p < end) {
		const char *d = memmem(p, (size_t)(end - p), pat, blen + 2);

		if (!d)
			return NULL;
		if (d == body) {
			*cut = d;
			return d;
		}
		if (d[-1] == '\n') {
			*cut = (d - 1 > body && d[-2] == '\r') ? d - 2 : d - 1;
			if (*cut < from)
				*cut = from;
			return d;
		}
		p = d + 1;
	}
	return NULL;
}

/* Parse one part's header block at p (ends at an empty line); returns the
 * start of the content, or NULL. */
static const char *part_headers(const char *p, const char *end, struct emu_part *part,
				char *why, size_t whysz)
{
	part->ctype = NULL;
	part->ctype_len = 0;
	for (;;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le, *colon, *v, *ve;
		size_t nlen;

		if (!eol) {
			set_why(why, whysz, "multipart part headers are not terminated");
			return NULL;
		}
		le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		if (le == p)  /* empty line: content follows */
			return eol + 1;
		colon = memchr(p, ':', (size_t)(le - p));
		if (!colon) {
			set_why(why, whysz, "malformed multipart part header");
			return NULL;
		}
		nlen = (size_t)(colon - p);
		v = colon + 1;
		while (v < le && (*v == ' ' || *v == '\t'))
			v++;
		ve = le;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
			part->ctype = v;
			part->ctype_len = (size_t)(ve - v);
		} else if (nlen == 25 && strncasecmp(p, "Content-Transfer-Encoding", 25) == 0) {
			size_t vl = (size_t)(ve - v);

			if (!((vl == 6 && strncasecmp(v, "binary", 6) == 0) ||
			      (vl == 4 && strncasecmp(v, "7bit", 4) == 0) ||
			      (vl == 4 && strncasecmp(v, "8bit", 4) == 0))) {
				set_why(why, whysz, "unsupported Content-Transfer-Encoding in multipart part");
				return NULL;
			}
		}
		p = eol + 1;
	}
}

int emu_parse_multipart(const char *body, size_t len, const char *boundary,
			struct emu_multipart *mp, char *why, size_t whysz)
{
	const char *end, *d, *cut = NULL, *p;
	size_t blen;
	int close = 0;

	memset(mp, 0, sizeof(*mp));
	if (!body || !boundary)
		goto bad_delim;
	end = body + len;
	blen = strlen(boundary);
	if (blen < 1 || blen > 70)
		goto bad_delim;
	d = find_delimiter(body, body, end, boundary, blen, &cut);
	if (!d)
		goto bad_delim;
	p = after_delimiter(d, end, blen, &close);
	if (!p || close)
		goto bad_delim;
	for (;;) {
		struct emu_part part;
		const char *content;

		content = part_headers(p, end, &part, why, whysz);
		if (!content)
			return -1;
		d = NULL;
		for (const char *from = content; from < end; ) {
			d = find_delimiter(body, from, end, boundary, blen, &cut);
			if (!d)
				break;
			p = after_delimiter(d, end, blen, &close);
			if (p)
				break;
			from = d + 1;
			d = NULL;
		}
		if (!d) {
			set_why(why, whysz, "multipart body has no closing boundary");
			return -1;
		}
		if (mp->nparts == EMU_MP_MAX_PARTS) {
			set_why(why, whysz, "too many multipart parts");
			return -1;
		}
		part.data = content;
		part.len = (size_t)(cut - content);
		mp->part[mp->nparts++] = part;
		if (close)
			return 0;
	}
bad_delim:
	set_why(why, whysz, "multipart body does not start with its boundary");
	return -1;
}

int emu_parse_goog_hash(const char *s, char *crc, size_t crcsz, char *md5, size_t md5sz)
{
	const char *p = s;

	if (crcsz)
		crc[0] = '\0';
	if (md5sz)
		md5[0] = '\0';
	if (!s)
		return 0;
	while (*p) {
		const char *tok, *eq, *v, *ve;
		size_t n;

		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (!*p)
			break;
		tok = p;
		while (*p && *p != ',')
			p++;
		ve = p;
		while (ve > tok && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		eq = memchr(tok, '=', (size_t)(ve - tok));
		if (!eq || eq == tok)
			return -1;
		v = eq + 1;
		n = (size_t)(ve - v);
		if (n == 0)
			return -1;
		if ((size_t)(eq - tok) == 6 && strncasecmp(tok, "crc32c", 6) == 0) {
			if (n + 1 > crcsz)
				return -1;
			memcpy(crc, v, n);
			crc[n] = '\0';
		} else if ((size_t)(eq - tok) == 3 && strncasecmp(tok, "md5", 3) == 0) {
			if (n + 1 > md5sz)
				return -1;
			memcpy(md5, v, n);
			md5[n] = '\0';
		}
	}
	return 0;
}

/* --- fields ----------------------------------------------------------- */

#define FIELDS_MAX_DEPTH 16
#define FIELDS_MAX_NODES 256

struct emu_fields {
	char *name;                 /* NULL for the root */
	int whole;                  /* selected entirely (no sub-selection) */
	struct emu_fields *kids;    /* first child */
	struct emu_fields *next;    /* next sibling */
};

struct fparse {
	const char *p;
	int nodes;
};

static struct emu_fields *fields_child(struct fparse *fp, struct emu_fields *parent,
				       const char *name, size_t n)
{
	struct emu_fields *k;

	for (k = parent->kids; k; k = k->next)
		if (strlen(k->name) == n && memcmp(k->name, name, n) == 0)
			return k;
	if (++fp->nodes > FIELDS_MAX_NODES)
		return NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->name = strndup(name, n);
	if (!k->name) {
		free(k);
		return NULL;
	}
	k->next = parent->kids;
	parent->kids = k;
	return k;
}

static int is_ident(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '*' || c == '-' || c == '.' ||
	       c == '@' || c == '$';
}

static int fields_list(struct fparse *fp, struct emu_fields *parent, int depth);

/* field := ident ('/' ident)* ['(' list ')'] */
static int fields_one(struct fparse *fp, struct emu_fields *parent, int depth)
{
	struct emu_fields *node = parent;

	for (;;) {
		const char *s;

		fp->p = skip_ws(fp->p);
		s = fp->p;
		while (is_ident(*fp->p))
			fp->p++;
		if (fp->p == s)
			return -1;
		node = fields_child(fp, node, s, (size_t)(fp->p - s));
		if (!node)
			return -1;
		if (*fp->p != '/')
			break;
		fp->p++;
		if (++depth > FIELDS_MAX_DEPTH)
			return -1;
	}
	fp->p = skip_ws(fp->p);
	if (*fp->p == '(') {
		fp->p++;
		if (depth + 1 > FIELDS_MAX_DEPTH)
			return -1;
		if (fields_list(fp, node, depth + 1) < 0)
			return -1;
		fp->p = skip_ws(fp->p);
		if (*fp->p != ')')
			return -1;
		fp->p++;
	} else {
		node->whole = 1;
	}
	return 0;
}

static int fields_list(struct fparse *fp, struct emu_fields *parent, int depth)
{
	for (;;) {
		if (fields_one(fp, parent, depth) < 0)
			return -1;
		fp->p = skip_ws(fp->p);
		if (*fp->p != ',')
			return 0;
		fp->p++;
	}
}

void emu_fields_free(struct emu_fields *f)
{
	while (f) {
		struct emu_fields *next = f->next;

		emu_fields_free(f->kids);
		free(f->name);
		free(f);
		f = next;
	}
}

struct emu_fields *emu_fields_parse(const char *s, int *bad)
{
	struct emu_fields *root = NULL;
	struct fparse fp;

	*bad = 0;
	if (!s || !*skip_ws(s))
		return NULL;
	root = calloc(1, sizeof(*root));
	if (!root)
		goto fail;
	fp.p = s;
	fp.nodes = 0;
	if (fields_list(&fp, root, 0) < 0)
		goto fail;
	if (*skip_ws(fp.p))
		goto fail;
	return root;
fail:
	emu_fields_free(root);
	*bad = 1;
	return NULL;
}

static const struct emu_fields *fields_find(const struct emu_fields *f, const char *key)
{
	const struct emu_fields *k, *star = NULL;

	for (k = f->kids; k; k = k->next) {
		if (strcmp(k->name, key) == 0)
			return k;
		if (strcmp(k->name, "*") == 0)
			star = k;
	}
	return star;
}

static void fields_filter(const struct emu_fields *f, json_t *j);

static void fields_filter_value(const struct emu_fields *sel, json_t *v)
{
	size_t i;
	json_t *el;

	if (sel->whole)
		return;
	if (json_is_object(v)) {
		fields_filter(sel, v);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, el)
			if (json_is_object(el))
				fields_filter(sel, el);
	}
}

static void fields_filter(const struct emu_fields *f, json_t *j)
{
	const char *key;
	json_t *v;
	void *tmp;

	json_object_foreach_safe(j, tmp, key, v) {
		const struct emu_fields *sel = fields_find(f, key);

		if (!sel)
			json_object_del(j, key);
		else
			fields_filter_value(sel, v);
	}
}

void emu_fields_apply(const struct emu_fields *f, json_t *j)
{
	if (!f || !j)
		return;
	if (json_is_object(j))
		fields_filter(f, j);
}

/* --- tokens ----------------------------------------------------------- */

char *emu_token_encode(const void *data, size_t len)
{
	size_t cap = enc_b64_len(len) + 1;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	if (enc_b64(data, len, out, cap, 1) == 0 && len > 0) {
		free(out);
		return NULL;
	}
	if (len == 0)
		out[0] = '\0';
	return out;
}

char *emu_token_decode(const char *tok, size_t *len)
{
	size_t n, cap, got = 0;
	char *out;

	if (!tok)
		return NULL;
	n = strlen(tok);
	if (n > 65536)
		return NULL;
	cap = n * 3 / 4 + 4;
	out = malloc(cap + 1);
	if (!out)
		return NULL;
	if (n > 0 && enc_b64_decode(tok, n, out, cap, &got) < 0) {
		free(out);
		return NULL;
	}
	out[got] = '\0';
	*len = got;
	return out;
}

char *emu_page_token_make(const char *key, size_t keylen, int64_t gen)
{
	char head[40];
	char *buf, *tok;
	int hn;

	hn = snprintf(head, sizeof(head), "1:%" PRId64 ":", gen);
	buf = malloc((size_t)hn + keylen + 1);
	if (!buf)
		return NULL;
	memcpy(buf, head, (size_t)hn);
	memcpy(buf + hn, key, keylen);
	tok = emu_token_encode(buf, (size_t)hn + keylen);
	free(buf);
	return tok;
}

int emu_page_token_parse(const char *tok, char **key, size_t *keylen, int64_t *gen)
{
	size_t n = 0;
	char *raw = emu_token_decode(tok, &n);
	char *colon, *k = NULL;
	int rc = -1;

	if (!raw || n < 4 || raw[0] != '1' || raw[1] != ':')
		goto out;
	colon = memchr(raw + 2, ':', n - 2);
	if (!colon)
		goto out;
	*colon = '\0';
	if (emu_parse_i64(raw + 2, gen) < 0 || *gen < -1)
		goto out;
	*keylen = n - (size_t)(colon + 1 - raw);
	if (memchr(colon + 1, '\0', *keylen))
		goto out;
	k = malloc(*keylen + 1);
	if (!k)
		goto out;
	memcpy(k, colon + 1, *keylen);
	k[*keylen] = '\0';
	*key = k;
	rc = 0;
out:
	free(raw);
	return rc;
}
