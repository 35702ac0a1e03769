/* Pure helpers of the Drive backend (include/durafs/drive.h): the name
 * mapping between Drive names and the POSIX names the mount shows (escapes,
 * duplicate suffixes), Docs export types, query quoting, source and
 * endpoint parsing, and the private string builder (sync/drive_i.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/drive.h"
#include "durafs/enc.h"
#include "durafs/log.h"
#include "drive_i.h"

#define TAG "drive"

/* UTF-8 of the characters the mapping uses. */
#define FW_SLASH "\xef\xbc\x8f"   /* U+FF0F FULLWIDTH SOLIDUS */
#define FW_DOT "\xef\xbc\x8e"     /* U+FF0E FULLWIDTH FULL STOP */
#define QUOTE "\xe2\x80\x9b"      /* U+201B SINGLE HIGH-REVERSED-9 QUOTATION MARK */
#define U3 3                      /* bytes of each */

/* --- string builder -------------------------------------------------------- */

void drive_sb_addn(struct drive_sb *b, const char *s, size_t n)
{
	size_t ncap;
	char *ns;

	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		ncap = b->cap ? b->cap : 128;
		while (ncap < b->n + n + 1)
			ncap *= 2;
		ns = realloc(b->s, ncap);
		if (!ns) {
			b->oom = 1;
			return;
		}
		b->s = ns;
		b->cap = ncap;
	}
	if (n)
		memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

void drive_sb_add(struct drive_sb *b, const char *s)
{
	drive_sb_addn(b, s, strlen(s));
}

void drive_sb_addf(struct drive_sb *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = 1;
		return;
	}
	drive_sb_addn(b, tmp, (size_t)n);
}

void drive_sb_enc(struct drive_sb *b, const char *s)
{
	char *e = enc_url(s);

	if (!e) {
		b->oom = 1;
		return;
	}
	drive_sb_add(b, e);
	free(e);
}

char *drive_sb_take(struct drive_sb *b, size_t *len, struct err *err)
{
	char *s;

	if (!b->oom && !b->s)
		drive_sb_addn(b, "", 0);
	s = b->s;
	if (b->oom || !s) {
		free(b->s);
		memset(b, 0, sizeof(*b));
		err_set(err, ERR_NOMEM, "out of memory");
		return NULL;
	}
	if (len)
		*len = b->n;
	memset(b, 0, sizeof(*b));
	return s;
}

int drive_id_valid(const char *s, size_t len)
{
	size_t i;
	char c;

	if (!s || len == 0 || len >= BE_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

/* --- name mapping ------------------------------------------------------------ */

static int is_at(const char *p, size_t left, const char *what)
{
	return left >= U3 && memcmp(p, what, U3) == 0;
}

static int equals(const char *s, size_t len, const char *what)
{
	return len == strlen(what) && memcmp(s, what, len) == 0;
}

static char *dup_or_oom(const char *s, int *oom)
{
	char *r = strdup(s);

	if (!r && oom)
		*oom = 1;
	return r;
}

char *drive_name_encode(const char *name, size_t len, int *oom)
{
	struct drive_sb b = { 0 };
	size_t i = 0;
	char *r;

	if (oom)
		*oom = 0;
	if (!name || len == 0 || memchr(name, '\0', len))
		return NULL;
	if (equals(name, len, "."))
		return dup_or_oom(FW_DOT, oom);
	if (equals(name, len, ".."))
		return dup_or_oom(FW_DOT FW_DOT, oom);
	if (equals(name, len, FW_DOT))
		return dup_or_oom(QUOTE FW_DOT, oom);
	if (equals(name, len, FW_DOT FW_DOT))
		return dup_or_oom(QUOTE FW_DOT QUOTE FW_DOT, oom);
	while (i < len) {
		if (name[i] == '/') {
			drive_sb_add(&b, FW_SLASH);
			i++;
		} else if (is_at(name + i, len - i, FW_SLASH)) {
			drive_sb_add(&b, QUOTE FW_SLASH);
			i += U3;
		} else if (is_at(name + i, len - i, QUOTE)) {
			drive_sb_add(&b, QUOTE QUOTE);
			i += U3;
		} else {
			drive_sb_addn(&b, name + i, 1);
			i++;
		}
	}
	if (b.oom) {
		free(b.s);
		if (oom)
			*oom = 1;
		return NULL;
	}
	if (b.n > 255) {
		free(b.s);
		return NULL;
	}
	r = b.s;
	return r;
}

char *drive_name_decode(const char *name, size_t len, int *oom)
{
	struct drive_sb b = { 0 };
	size_t i = 0;

	if (oom)
		*oom = 0;
	if (!name || !be_name_valid(name, len))
		return NULL;
	if (equals(name, len, FW_DOT))
		return dup_or_oom(".", oom);
	if (equals(name, len, FW_DOT FW_DOT))
		return dup_or_oom("..", oom);
	if (equals(name, len, QUOTE FW_DOT))
		return dup_or_oom(FW_DOT, oom);
	if (equals(name, len, QUOTE FW_DOT QUOTE FW_DOT))
		return dup_or_oom(FW_DOT FW_DOT, oom);
	while (i < len) {
		if (is_at(name + i, len - i, QUOTE)) {
			if (is_at(name + i + U3, len - i - U3, QUOTE))
				drive_sb_add(&b, QUOTE);
			else if (is_at(name + i + U3, len - i - U3, FW_SLASH))
				drive_sb_add(&b, FW_SLASH);
			else
				goto invalid;
			i += 2 * U3;
		} else if (is_at(name + i, len - i, FW_SLASH)) {
			drive_sb_add(&b, "/");
			i += U3;
		} else {
			drive_sb_addn(&b, name + i, 1);
			i++;
		}
	}
	if (b.oom) {
		free(b.s);
		if (oom)
			*oom = 1;
		return NULL;
	}
	return b.s;
invalid:
	free(b.s);
	return NULL;
}

char *drive_name_suffixed(const char *base, const char *id, int is_dir, int digits)
{
	unsigned char md5[16];
	char hex[33];
	const char *dot = NULL;
	size_t blen = strlen(base), stem;
	char *r;
	int n;

	if (digits < 2 || digits > 32)
		return NULL;
	ck_md5(id, strlen(id), md5);
	ck_md5_hex(md5, hex);
	hex[digits] = '\0';
	if (!is_dir) {
		dot = strrchr(base, '.');
		/* An extension: after the first character, not at the end. */
		if (dot && (dot == base || dot[1] == '\0'))
			dot = NULL;
	}
	stem = dot ? (size_t)(dot - base) : blen;
	if (blen + (size_t)digits + 3 > 255)
		return NULL;
	r = malloc(blen + (size_t)digits + 4);
	if (!r)
		return NULL;
	n = snprintf(r, blen + (size_t)digits + 4, "%.*s (%s)%s", (int)stem, base, hex,
		     dot ? dot : "");
	if (n < 0) {
		free(r);
		return NULL;
	}
	return r;
}

/* A set of strings (open addressing), for the collision checks. */
struct nset {
	const char **v;
	size_t cap;
};

static uint64_t nhash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

static int nset_init(struct nset *s, size_t n)
{
	s->cap = 16;
	while (s->cap < n * 2 + 16)
		s->cap *= 2;
	s->v = calloc(s->cap, sizeof(*s->v));
	return s->v ? 0 : -1;
}

static int nset_has(const struct nset *s, const char *k)
{
	size_t i = (size_t)nhash(k) & (s->cap - 1);

	while (s->v[i]) {
		if (strcmp(s->v[i], k) == 0)
			return 1;
		i = (i + 1) & (s->cap - 1);
	}
	return 0;
}

/* Add k (borrowed); the set never fills (sized for every name). */
static void nset_add(struct nset *s, const char *k)
{
	size_t i = (size_t)nhash(k) & (s->cap - 1);

	while (s->v[i]) {
		if (strcmp(s->v[i], k) == 0)
			return;
		i = (i + 1) & (s->cap - 1);
	}
	s->v[i] = k;
}

struct order {
	const struct drive_name_in *in;
	const char *base;
	size_t i;
};

static int order_cmp(const void *a, const void *b)
{
	const struct order *x = a, *y = b;
	int c = strcmp(x->base, y->base);

	if (c)
		return c;
	if (x->in->ctime.tv_sec != y->in->ctime.tv_sec)
		return x->in->ctime.tv_sec < y->in->ctime.tv_sec ? -1 : 1;
	if (x->in->ctime.tv_nsec != y->in->ctime.tv_nsec)
		return x->in->ctime.tv_nsec < y->in->ctime.tv_nsec ? -1 : 1;
	c = strcmp(x->in->id ? x->in->id : "", y->in->id ? y->in->id : "");
	if (c)
		return c;
	return x->i < y->i ? -1 : (x->i > y->i);
}

int drive_names_assign(const struct drive_name_in *in, size_t n, char **out, char **bases,
		       size_t *skipped, struct err *err)
{
	struct order *ord = NULL;
	struct nset set = { 0 };
	char **base = NULL, *enc = NULL, *cand;
	size_t i, k, no = 0, blen, elen;
	int oom = 0, digits, rc = -1;

	for (i = 0; i < n; i++)
		out[i] = NULL;
	if (bases)
		for (i = 0; i < n; i++)
			bases[i] = NULL;
	if (skipped)
		*skipped = 0;
	if (n == 0)
		return 0;
	base = calloc(n, sizeof(*base));
	ord = calloc(n, sizeof(*ord));
	if (!base || !ord || nset_init(&set, n) < 0)
		goto nomem;
	for (i = 0; i < n; i++) {
		enc = drive_name_encode(in[i].name, in[i].name_len, &oom);
		if (oom)
			goto nomem;
		if (enc && in[i].ext) {
			blen = strlen(enc);
			elen = strlen(in[i].ext);
			if (blen + elen > 255) {
				free(enc);
				enc = NULL;
			} else {
				cand = realloc(enc, blen + elen + 1);
				if (!cand)
					goto nomem;
				enc = cand;
				memcpy(enc + blen, in[i].ext, elen + 1);
			}
		}
		if (!enc) {
			if (skipped)
				(*skipped)++;
			log_warn(TAG, "skipping \"%.*s\" (id %s): its name cannot be shown as a "
				 "file name (empty, NUL, or over 255 bytes once mapped)",
				 (int)(in[i].name_len > 300 ? 300 : in[i].name_len),
				 in[i].name ? in[i].name : "", in[i].id ? in[i].id : "?");
			continue;
		}
		base[i] = enc;
		enc = NULL;
		ord[no].in = &in[i];
		ord[no].base = base[i];
		ord[no].i = i;
		no++;
	}
	qsort(ord, no, sizeof(*ord), order_cmp);
	/* The oldest of each group keeps the plain name. */
	for (k = 0; k < no; k++) {
		if (k > 0 && strcmp(ord[k].base, ord[k - 1].base) == 0)
			continue;
		out[ord[k].i] = strdup(ord[k].base);
		if (!out[ord[k].i])
			goto nomem;
		nset_add(&set, out[ord[k].i]);
	}
	/* The others, in the same order, get the shortest free suffix. */
	for (k = 0; k < no; k++) {
		if (out[ord[k].i])
			continue;
		for (digits = 6; digits <= 32; digits += 2) {
			cand = drive_name_suffixed(ord[k].base, ord[k].in->id ? ord[k].in->id : "",
						   ord[k].in->is_dir, digits);
			if (!cand)
				break;  /* too long (or out of memory: reported below) */
			if (!nset_has(&set, cand)) {
				out[ord[k].i] = cand;
				nset_add(&set, cand);
				break;
			}
			free(cand);
		}
		if (!out[ord[k].i]) {
			if (skipped)
				(*skipped)++;
			log_warn(TAG, "skipping a duplicate \"%s\" (id %s): no distinct name fits "
				 "in 255 bytes", ord[k].base, ord[k].in->id ? ord[k].in->id : "?");
		}
	}
	if (bases) {
		for (i = 0; i < n; i++) {
			bases[i] = base[i];
			base[i] = NULL;
		}
	}
	rc = 0;
	goto out;
nomem:
	for (i = 0; i < n; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	err_set(err, ERR_NOMEM, "out of memory");
out:
	if (base)
		for (i = 0; i < n; i++)
			free(base[i]);
	free(base);
	free(enc);
	free(ord);
	free(set.v);
	return rc;
}

/* --- exports, queries ----------------------------------------------------- */

static const struct drive_export exports[] = {
	{ "application/vnd.google-apps.document", ".docx",
	  "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
	{ "application/vnd.google-apps.spreadsheet", ".xlsx",
	  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
	{ "application/vnd.google-apps.presentation", ".pptx",
	  "application/vnd.openxmlformats-officedocument.presentationml.presentation" },
	{ "application/vnd.google-apps.drawing", ".pdf", "application/pdf" },
};

const struct drive_export *drive_export_for(const char *mime)
{
	size_t i;

	if (!mime)
		return NULL;
	for (i = 0; i < sizeof(exports) / sizeof(exports[0]); i++)
		if (strcmp(mime, exports[i].mime) == 0)
			return &exports[i];
	return NULL;
}

char *drive_q_quote(const char *s)
{
	struct drive_sb b = { 0 };

	drive_sb_add(&b, "'");
	for (; *s; s++) {
		if (*s == '\'' || *s == '\\')
			drive_sb_add(&b, "\\");
		drive_sb_addn(&b, s, 1);
	}
	drive_sb_add(&b, "'");
	return drive_sb_take(&b, NULL, NULL);
}

/* --- source, endpoint ---------------------------------------------------------- */

void drive_source_release(struct drive_source *s)
{
	if (!s)
		return;
	free(s->ref);
	free(s->path);
	memset(s, 0, sizeof(*s));
}

/* Split "REF[/PATH]" at the first '/'. */
static int split_ref(const char *p, char **ref, const char **rest)
{
	const char *slash = strchr(p, '/');

	*ref = slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
	*rest = slash ? slash + 1 : "";
	return *ref ? 0 : -1;
}

int drive_parse_source(const char *src, struct drive_source *out, struct err *err)
{
	const char *p, *rest = "";
	char *ref = NULL, *name = NULL;
	size_t plen;
	int oom = 0, rc = -1;

	memset(out, 0, sizeof(*out));
	if (!src || strncmp(src, "drive:", 6) != 0) {
		err_set(err, ERR_INVAL, "source \"%s\": expected drive:[PATH], drive:id=FOLDER_ID, "
			"drive:shared=NAME or drive:shared_id=ID", src ? src : "");
		goto out;
	}
	p = src + 6;
	if (strncmp(p, "id=", 3) == 0 || strncmp(p, "shared_id=", 10) == 0) {
		out->kind = p[0] == 'i' ? DRIVE_ROOT_ID : DRIVE_ROOT_SHARED_ID;
		if (split_ref(p + (p[0] == 'i' ? 3 : 10), &ref, &rest) < 0)
			goto nomem;
		if (!drive_id_valid(ref, strlen(ref))) {
			err_set(err, ERR_INVAL, "source \"%s\": \"%s\" is not a valid Drive id", src,
				ref);
			goto out;
		}
	} else if (strncmp(p, "shared=", 7) == 0) {
		out->kind = DRIVE_ROOT_SHARED_NAME;
		if (split_ref(p + 7, &name, &rest) < 0)
			goto nomem;
		ref = drive_name_decode(name, strlen(name), &oom);
		if (oom)
			goto nomem;
		if (!ref) {
			err_set(err, ERR_INVAL, "source \"%s\": \"%s\" is not a valid shared drive "
				"name", src, name);
			goto out;
		}
	} else {
		out->kind = DRIVE_ROOT_MY;
		rest = p;
		if (*rest == '/')
			rest++;  /* "drive:/id=x" is the folder named "id=x" */
	}
	plen = strlen(rest);
	while (plen > 0 && rest[plen - 1] == '/')
		plen--;
	out->path = strndup(rest, plen);
	if (!out->path)
		goto nomem;
	if (!be_path_valid(out->path)) {
		err_set(err, ERR_INVAL, "source \"%s\": \"%s\" is not a valid path (empty, \".\" or "
			"\"..\" components)", src, out->path);
		goto out;
	}
	out->ref = ref;
	ref = NULL;
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	if (rc < 0)
		drive_source_release(out);
	free(ref);
	free(name);
	return rc;
}

int drive_endpoint(const char *explicit_ep, char *out, size_t len, int *emulated,
		   struct err *err)
{
	const char *src = explicit_ep, *env;
	const char *scheme = "";
	size_t n, skip = 0;
	int emu = 0, w;

	if (!src || !*src) {
		env = getenv(DRIVE_ENV_ENDPOINT);
		if (env && *env) {
			src = env;
			emu = 1;
		} else {
			src = DRIVE_DEFAULT_ENDPOINT;
		}
	}
	if (strstr(src, "://")) {
		if (strncmp(src, "http://", 7) == 0)
			skip = 7;
		else if (strncmp(src, "https://", 8) == 0)
			skip = 8;
		else
			return err_set(err, ERR_INVAL, "endpoint \"%s\": only http:// and https:// "
				       "are supported", src);
	} else {
		scheme = "http://";
	}
	n = strlen(src);
	while (n > skip && src[n - 1] == '/')
		n--;
	if (n == skip || n > 4096 || src[skip] == '/')
		return err_set(err, ERR_INVAL, "endpoint \"%s\" has no host", src);
	w = snprintf(out, len, "%s%.*s", scheme, (int)n, src);
	if (w < 0 || (size_t)w >= len)
		return err_set(err, ERR_INVAL, "endpoint too long");
	if (emulated)
		*emulated = emu;
	return 0;
}
