/* durafs-emulator Drive v3 `q` parser and evaluator (emu_drive_q.h).
 * Grammar (keywords case-insensitive, whitespace anywhere between tokens):
 *   query := and ("or" and)*
 *   and   := unary ("and" unary)*
 *   unary := "not" unary | "(" query ")" | term
 *   term  := STRING "in" (parents|owners|writers|readers)
 *          | FIELD OP VALUE
 *          | (properties|appProperties) "has" "{" key = STRING and value = STRING "}"
 *          | sharedWithMe
 * STRING is single-quoted; inside it \' and \\ are the only escapes.
 * Reads untrusted input: bounded length, depth and term count. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "emu_drive_q.h"

enum tok { T_END, T_LP, T_RP, T_LB, T_RB, T_STR, T_WORD, T_OP, T_BAD };

struct lex {
	const char *s;
	size_t len, pos;
	int tok;             /* current token */
	size_t tstart, tlen; /* its text (T_WORD, T_OP) */
	char *str;           /* T_STR: unescaped, owned */
	int depth;
	int terms;
	char *why;
	size_t whysz;
	int failed;
};

static void fail(struct lex *l, const char *fmt, const char *arg)
{
	if (l->failed)
		return;
	l->failed = 1;
	if (l->why && l->whysz)
		snprintf(l->why, l->whysz, fmt, arg ? arg : "");
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static int is_word(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == ':';
}

/* Advance to the next token. */
static void next(struct lex *l)
{
	const char *s = l->s;
	size_t p = l->pos;

	free(l->str);
	l->str = NULL;
	while (p < l->len && is_space(s[p]))
		p++;
	l->tstart = p;
	l->tlen = 0;
	if (p >= l->len) {
		l->tok = T_END;
		l->pos = p;
		return;
	}
	switch (s[p]) {
	case '(': l->tok = T_LP; l->pos = p + 1; return;
	case ')': l->tok = T_RP; l->pos = p + 1; return;
	case '{': l->tok = T_LB; l->pos = p + 1; return;
	case '}': l->tok = T_RB; l->pos = p + 1; return;
	case '=':
		l->tok = T_OP;
		l->tlen = 1;
		l->pos = p + 1;
		return;
	case '!':
	case '<':
	case '>':
		l->tok = T_OP;
		l->tlen = (p + 1 < l->len && s[p + 1] == '=') ? 2 : 1;
		if (s[p] == '!' && l->tlen != 2) {
			l->tok = T_BAD;
			fail(l, "'!' must be followed by '='", NULL);
		}
		l->pos = p + l->tlen;
		return;
	case '\'': {
		size_t q = p + 1, n = 0;
		char *out = malloc(l->len - p + 1);

		if (!out) {
			l->tok = T_BAD;
			l->failed = 1;
			if (l->why && l->whysz)
				l->why[0] = '\0';
			return;
		}
		while (q < l->len && s[q] != '\'') {
			if (s[q] == '\\') {
				if (q + 1 >= l->len || (s[q + 1] != '\'' && s[q + 1] != '\\')) {
					free(out);
					l->tok = T_BAD;
					fail(l, "invalid escape in a string: only \\' and \\\\ are allowed",
					     NULL);
					return;
				}
				q++;
			}
			if (s[q] == '\0') {
				free(out);
				l->tok = T_BAD;
				fail(l, "a string contains a NUL byte", NULL);
				return;
			}
			out[n++] = s[q++];
		}
		if (q >= l->len) {
			free(out);
			l->tok = T_BAD;
			fail(l, "unterminated string", NULL);
			return;
		}
		out[n] = '\0';
		l->str = out;
		l->tok = T_STR;
		l->pos = q + 1;
		return;
	}
	default:
		break;
	}
	if (is_word(s[p])) {
		size_t q = p;

		while (q < l->len && is_word(s[q]))
			q++;
		l->tok = T_WORD;
		l->tlen = q - p;
		l->pos = q;
		return;
	}
	l->tok = T_BAD;
	{
		char c[2] = { s[p], '\0' };

		if ((unsigned char)s[p] < 0x20 || (unsigned char)s[p] >= 0x7f)
			fail(l, "unexpected byte in the query", NULL);
		else
			fail(l, "unexpected character '%s'", c);
	}
}

static int word_is(const struct lex *l, const char *w)
{
	return l->tok == T_WORD && l->tlen == strlen(w) &&
	       !strncasecmp(l->s + l->tstart, w, l->tlen);
}

static int word_is_exact(const struct lex *l, const char *w)
{
	return l->tok == T_WORD && l->tlen == strlen(w) && !strncmp(l->s + l->tstart, w, l->tlen);
}

static struct dq_node *node_new(int kind)
{
	struct dq_node *n = calloc(1, sizeof(*n));

	if (n)
		n->kind = kind;
	return n;
}

void dq_free(struct dq_node *n)
{
	while (n) {
		struct dq_node *b = n->b;

		dq_free(n->a);
		free(n->str);
		free(n->val);
		free(n);
		n = b;  /* iterate down the right spine (long and/or chains) */
	}
}

/* --- dates ------------------------------------------------------------- */

static int digits(const char *s, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int64_t days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int dq_parse_time(const char *s, int64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, oh = 0, om = 0, sign = 0;
	const char *p;
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (!s || strlen(s) < 10 || digits(s, 4, &y) < 0 || s[4] != '-' ||
	    digits(s + 5, 2, &mo) < 0 || s[7] != '-' || digits(s + 8, 2, &d) < 0)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
		return -1;
	p = s + 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		if (digits(p + 1, 2, &h) < 0 || p[3] != ':' || digits(p + 4, 2, &mi) < 0)
			return -1;
		p += 6;
		if (*p == ':') {
			if (digits(p + 1, 2, &sec) < 0)
				return -1;
			p += 3;
			if (*p == '.') {
				int nd = 0;

				p++;
				while (*p >= '0' && *p <= '9') {
					if (nd < 3)
						frac = frac * 10 + (*p - '0');
					nd++;
					p++;
				}
				if (nd == 0 || nd > 9)
					return -1;
				while (nd < 3) {
					frac *= 10;
					nd++;
				}
			}
		}
		if (h > 23 || mi > 59 || sec > 60)
			return -1;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p == '-' ? -1 : 1;
			if (digits(p + 1, 2, &oh) < 0 || p[3] != ':' || digits(p + 4, 2, &om) < 0 ||
			    oh > 23 || om > 59)
				return -1;
			p += 6;
		}
	}
	if (*p)
		return -1;
	*ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
	       (int64_t)sign * (oh * 3600 + om * 60)) * 1000 + frac;
	return 0;
}

/* --- parser ------------------------------------------------------------ */

static struct dq_node *parse_or(struct lex *l);

struct field_def {
	const char *name;
	int field;
	int type;  /* 's' string, 't' time, 'b' boolean */
};

static const struct field_def fields[] = {
	{ "name", DQ_F_NAME, 's' },
	{ "title", DQ_F_NAME, 's' },  /* v2 spelling, still accepted */
	{ "fullText", DQ_F_FULLTEXT, 's' },
	{ "mimeType", DQ_F_MIME, 's' },
	{ "modifiedTime", DQ_F_MODIFIED, 't' },
	{ "createdTime", DQ_F_CREATED, 't' },
	{ "viewedByMeTime", DQ_F_VIEWED, 't' },
	{ "trashed", DQ_F_TRASHED, 'b' },
	{ "starred", DQ_F_STARRED, 'b' },
	{ "hidden", DQ_F_HIDDEN, 'b' },
	{ "visibility", DQ_F_VISIBILITY, 's' },
	{ "shortcutDetails.targetId", DQ_F_SHORTCUT_TARGET, 's' },
	{ "sharedWithMe", DQ_F_SHARED_WITH_ME, 'b' },
};

static int parse_op(struct lex *l, int *cmp)
{
	const char *o = l->s + l->tstart;

	if (l->tok == T_OP) {
		if (l->tlen == 1 && o[0] == '=')
			*cmp = DQ_EQ;
		else if (l->tlen == 2 && o[0] == '!')
			*cmp = DQ_NE;
		else if (l->tlen == 1 && o[0] == '<')
			*cmp = DQ_LT;
		else if (l->tlen == 2 && o[0] == '<')
			*cmp = DQ_LE;
		else if (l->tlen == 1 && o[0] == '>')
			*cmp = DQ_GT;
		else if (l->tlen == 2 && o[0] == '>')
			*cmp = DQ_GE;
		else
			return -1;
		return 0;
	}
	if (word_is(l, "contains")) {
		*cmp = DQ_CONTAINS;
		return 0;
	}
	return -1;
}

/* properties has { key='k' and value='v' } after the field word. */
static struct dq_node *parse_has(struct lex *l, int field)
{
	struct dq_node *n = NULL;

	next(l);
	if (!word_is(l, "has")) {
		fail(l, "expected 'has' after a properties field", NULL);
		return NULL;
	}
	next(l);
	if (l->tok != T_LB) {
		fail(l, "expected '{' after 'has'", NULL);
		return NULL;
	}
	n = node_new(DQ_TERM);
	if (!n) {
		l->failed = 1;
		return NULL;
	}
	n->field = field;
	n->cmp = DQ_HAS;
	next(l);
	if (!word_is(l, "key"))
		goto bad;
	next(l);
	if (l->tok != T_OP || l->tlen != 1 || l->s[l->tstart] != '=')
		goto bad;
	next(l);
	if (l->tok != T_STR)
		goto bad;
	n->str = l->str;
	l->str = NULL;
	next(l);
	if (!word_is(l, "and"))
		goto bad;
	next(l);
	if (!word_is(l, "value"))
		goto bad;
	next(l);
	if (l->tok != T_OP || l->tlen != 1 || l->s[l->tstart] != '=')
		goto bad;
	next(l);
	if (l->tok != T_STR)
		goto bad;
	n->val = l->str;
	l->str = NULL;
	next(l);
	if (l->tok != T_RB)
		goto bad;
	next(l);
	return n;
bad:
	fail(l, "expected { key='...' and value='...' }", NULL);
	dq_free(n);
	return NULL;
}

static struct dq_node *parse_term(struct lex *l)
{
	struct dq_node *n = NULL;
	const struct field_def *fd = NULL;
	size_t i;
	int cmp;

	if (++l->terms > DQ_MAX_TERMS) {
		fail(l, "too many terms in the query", NULL);
		return NULL;
	}
	if (l->tok == T_STR) {
		char *val = l->str;

		l->str = NULL;
		next(l);
		if (!word_is(l, "in")) {
			free(val);
			fail(l, "expected 'in' after a string", NULL);
			return NULL;
		}
		next(l);
		n = node_new(DQ_TERM);
		if (!n) {
			free(val);
			l->failed = 1;
			return NULL;
		}
		n->cmp = DQ_IN;
		n->str = val;
		if (word_is_exact(l, "parents"))
			n->field = DQ_F_PARENTS;
		else if (word_is_exact(l, "owners"))
			n->field = DQ_F_OWNERS;
		else if (word_is_exact(l, "writers"))
			n->field = DQ_F_WRITERS;
		else if (word_is_exact(l, "readers"))
			n->field = DQ_F_READERS;
		else {
			dq_free(n);
			fail(l, "expected parents, owners, writers or readers after 'in'", NULL);
			return NULL;
		}
		next(l);
		return n;
	}
	if (l->tok != T_WORD) {
		fail(l, "expected a query term", NULL);
		return NULL;
	}
	if (word_is_exact(l, "properties") || word_is_exact(l, "appProperties"))
		return parse_has(l, word_is_exact(l, "properties") ? DQ_F_PROPERTIES
								    : DQ_F_APP_PROPERTIES);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (word_is_exact(l, fields[i].name))
			fd = &fields[i];
	if (!fd) {
		char w[64];
		size_t n2 = l->tlen < sizeof(w) - 1 ? l->tlen : sizeof(w) - 1;

		memcpy(w, l->s + l->tstart, n2);
		w[n2] = '\0';
		fail(l, "unknown query field '%s'", w);
		return NULL;
	}
	n = node_new(DQ_TERM);
	if (!n) {
		l->failed = 1;
		return NULL;
	}
	n->field = fd->field;
	next(l);
	if (fd->field == DQ_F_SHARED_WITH_ME && parse_op(l, &cmp) < 0) {
		/* the bare form: sharedWithMe */
		n->cmp = DQ_EQ;
		n->boolean = 1;
		return n;
	}
	if (parse_op(l, &cmp) < 0) {
		fail(l, "expected an operator after the field", NULL);
		goto bad;
	}
	n->cmp = cmp;
	next(l);
	switch (fd->type) {
	case 's':
		if (cmp != DQ_EQ && cmp != DQ_NE && cmp != DQ_CONTAINS) {
			fail(l, "this operator cannot be used with a string field", NULL);
			goto bad;
		}
		if (cmp == DQ_CONTAINS && fd->field != DQ_F_NAME && fd->field != DQ_F_FULLTEXT &&
		    fd->field != DQ_F_MIME) {
			fail(l, "'contains' is not supported for this field", NULL);
			goto bad;
		}
		if (fd->field == DQ_F_FULLTEXT && cmp != DQ_CONTAINS) {
			fail(l, "fullText supports only 'contains'", NULL);
			goto bad;
		}
		if (l->tok != T_STR) {
			fail(l, "expected a quoted string value", NULL);
			goto bad;
		}
		n->str = l->str;
		l->str = NULL;
		break;
	case 't':
		if (cmp == DQ_CONTAINS) {
			fail(l, "'contains' cannot be used with a date field", NULL);
			goto bad;
		}
		if (l->tok != T_STR || dq_parse_time(l->str, &n->ms) < 0) {
			fail(l, "expected an RFC 3339 date-time in quotes", NULL);
			goto bad;
		}
		break;
	default:
		if (cmp != DQ_EQ && cmp != DQ_NE) {
			fail(l, "a boolean field takes only = or !=", NULL);
			goto bad;
		}
		if (word_is(l, "true"))
			n->boolean = 1;
		else if (word_is(l, "false"))
			n->boolean = 0;
		else {
			fail(l, "expected true or false", NULL);
			goto bad;
		}
		break;
	}
	next(l);
	return n;
bad:
	dq_free(n);
	return NULL;
}

static struct dq_node *parse_unary(struct lex *l)
{
	struct dq_node *n = NULL, *inner;

	if (l->failed)
		return NULL;
	if (++l->depth > DQ_MAX_DEPTH) {
		fail(l, "the query is nested too deeply", NULL);
		return NULL;
	}
	if (word_is(l, "not")) {
		next(l);
		inner = parse_unary(l);
		if (!inner)
			goto out;
		n = node_new(DQ_NOT);
		if (!n) {
			dq_free(inner);
			l->failed = 1;
			goto out;
		}
		n->a = inner;
	} else if (l->tok == T_LP) {
		next(l);
		n = parse_or(l);
		if (!n)
			goto out;
		if (l->tok != T_RP) {
			fail(l, "missing ')'", NULL);
			dq_free(n);
			n = NULL;
			goto out;
		}
		next(l);
	} else {
		n = parse_term(l);
	}
out:
	l->depth--;
	return n;
}

/* Left-associative chains, built so that the tree's right spine carries
 * the chain (dq_free iterates over b). */
static struct dq_node *parse_chain(struct lex *l, int kind)
{
	struct dq_node *head = NULL, *tail = NULL, *n, *j;
	const char *kw = kind == DQ_OR ? "or" : "and";

	n = kind == DQ_OR ? parse_chain(l, DQ_AND) : parse_unary(l);
	if (!n)
		return NULL;
	if (!word_is(l, kw))
		return n;
	while (word_is(l, kw)) {
		next(l);
		j = node_new(kind);
		if (!j) {
			l->failed = 1;
			dq_free(n);
			dq_free(head);
			return NULL;
		}
		j->a = n;
		if (!head)
			head = j;
		else
			tail->b = j;
		tail = j;
		n = kind == DQ_OR ? parse_chain(l, DQ_AND) : parse_unary(l);
		if (!n) {
			dq_free(head);
			return NULL;
		}
	}
	/* the last operand closes the chain: a1 op (a2 op (... op an)) */
	tail->b = n;
	return head;
}

static struct dq_node *parse_or(struct lex *l)
{
	return parse_chain(l, DQ_OR);
}

struct dq_node *dq_parse(const char *q, size_t len, int *empty, char *why, size_t whysz)
{
	struct lex l;
	struct dq_node *n;
	size_t i;

	if (empty)
		*empty = 0;
	if (why && whysz)
		why[0] = '\0';
	if (len > DQ_MAX_LEN) {
		if (why && whysz)
			snprintf(why, whysz, "the query is longer than %d bytes", DQ_MAX_LEN);
		return NULL;
	}
	for (i = 0; i < len && is_space(q[i]); i++)
		;
	if (i == len) {
		if (empty)
			*empty = 1;
		return NULL;
	}
	memset(&l, 0, sizeof(l));
	l.s = q;
	l.len = len;
	l.why = why;
	l.whysz = whysz;
	next(&l);
	n = parse_or(&l);
	if (n && l.tok != T_END) {
		fail(&l, "unexpected text after the end of the query", NULL);
		dq_free(n);
		n = NULL;
	}
	if (!n && !l.failed && why && whysz)
		snprintf(why, whysz, "malformed query");
	free(l.str);
	return n;
}

/* --- evaluation -------------------------------------------------------- */

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive: does needle occur in hay at position i? */
static int starts_ci(const char *hay, size_t hlen, size_t i, const char *needle, size_t nlen)
{
	size_t k;

	if (i + nlen > hlen)
		return 0;
	for (k = 0; k < nlen; k++)
		if (ascii_lower((unsigned char)hay[i + k]) != ascii_lower((unsigned char)needle[k]))
			return 0;
	return 1;
}

/* `name contains 'x'`: Google matches x as a prefix of the name or of a
 * word inside it (a position after a non-alphanumeric character, or a
 * lower-to-upper case change), case-insensitively. */
static int name_contains(const char *name, const char *needle)
{
	size_t hl = strlen(name), nl = strlen(needle), i;

	if (nl == 0)
		return 1;
	for (i = 0; i + nl <= hl; i++) {
		int boundary = i == 0 || !isalnum((unsigned char)name[i - 1]) ||
			       !isalnum((unsigned char)name[i]) ||
			       (islower((unsigned char)name[i - 1]) && isupper((unsigned char)name[i])) ||
			       (isdigit((unsigned char)name[i - 1]) != isdigit((unsigned char)name[i]));

		if (boundary && starts_ci(name, hl, i, needle, nl))
			return 1;
	}
	return 0;
}

static int substr_ci(const char *hay, size_t hl, const char *needle)
{
	size_t nl = strlen(needle), i;

	if (nl == 0)
		return 1;
	for (i = 0; i + nl <= hl; i++)
		if (starts_ci(hay, hl, i, needle, nl))
			return 1;
	return 0;
}

static int cmp_i64(int64_t a, int64_t b, int cmp)
{
	switch (cmp) {
	case DQ_EQ: return a == b;
	case DQ_NE: return a != b;
	case DQ_LT: return a < b;
	case DQ_LE: return a <= b;
	case DQ_GT: return a > b;
	case DQ_GE: return a >= b;
	default: return 0;
	}
}

static int str_eq(const char *a, const char *b, int cmp)
{
	int eq = a && b && !strcmp(a, b);

	return cmp == DQ_NE ? !eq : eq;
}

static int eval_term(const struct dq_node *n, const struct dq_file *f, const char *root_id,
		     const char *me)
{
	const json_t *props, *v;
	const char *want;

	switch (n->field) {
	case DQ_F_NAME:
		if (n->cmp == DQ_CONTAINS)
			return f->name && name_contains(f->name, n->str);
		return str_eq(f->name, n->str, n->cmp);
	case DQ_F_FULLTEXT:
		return (f->name && substr_ci(f->name, strlen(f->name), n->str)) ||
		       (f->text && substr_ci(f->text, f->text_len, n->str));
	case DQ_F_MIME:
		if (n->cmp == DQ_CONTAINS)
			return f->mime && substr_ci(f->mime, strlen(f->mime), n->str);
		return str_eq(f->mime, n->str, n->cmp);
	case DQ_F_MODIFIED:
		return cmp_i64(f->modified_ms, n->ms, n->cmp);
	case DQ_F_CREATED:
		return cmp_i64(f->created_ms, n->ms, n->cmp);
	case DQ_F_VIEWED:
		return cmp_i64(f->viewed_ms, n->ms, n->cmp);
	case DQ_F_TRASHED:
		return (!!f->trashed == n->boolean) == (n->cmp == DQ_EQ);
	case DQ_F_STARRED:
		return (!!f->starred == n->boolean) == (n->cmp == DQ_EQ);
	case DQ_F_HIDDEN:
		return (0 == n->boolean) == (n->cmp == DQ_EQ);
	case DQ_F_SHARED_WITH_ME:
		return (0 == n->boolean) == (n->cmp == DQ_EQ);
	case DQ_F_VISIBILITY:
		return str_eq("limited", n->str, n->cmp);
	case DQ_F_SHORTCUT_TARGET:
		return str_eq(f->target_id, n->str, n->cmp);
	case DQ_F_PARENTS:
		want = !strcmp(n->str, "root") && root_id ? root_id : n->str;
		return f->parent && !strcmp(f->parent, want);
	case DQ_F_OWNERS:
	case DQ_F_WRITERS:
	case DQ_F_READERS:
		return f->owned_by_me &&
		       (!strcmp(n->str, "me") || (me && !strcasecmp(n->str, me)));
	case DQ_F_PROPERTIES:
	case DQ_F_APP_PROPERTIES:
		props = n->field == DQ_F_PROPERTIES ? f->properties : f->app_properties;
		v = props ? json_object_get(props, n->str) : NULL;
		return json_is_string(v) && !strcmp(json_string_value(v), n->val);
	default:
		return 0;
	}
}

int dq_eval(const struct dq_node *n, const struct dq_file *f, const char *root_id,
	    const char *me)
{
	/* and/or chains run down the right spine: iterate, recurse on the left */
	while (n) {
		switch (n->kind) {
		case DQ_AND:
			if (!dq_eval(n->a, f, root_id, me))
				return 0;
			n = n->b;
			break;
		case DQ_OR:
			if (dq_eval(n->a, f, root_id, me))
				return 1;
			n = n->b;
			break;
		case DQ_NOT:
			return !dq_eval(n->a, f, root_id, me);
		default:
			return eval_term(n, f, root_id, me);
		}
	}
	return 1;
}

const char *dq_parent_hint(const struct dq_node *n)
{
	while (n) {
		if (n->kind == DQ_TERM)
			return n->field == DQ_F_PARENTS && n->cmp == DQ_IN ? n->str : NULL;
		if (n->kind != DQ_AND)
			return NULL;
		if (n->a && n->a->kind == DQ_TERM && n->a->field == DQ_F_PARENTS)
			return n->a->str;
		if (n->a && n->a->kind == DQ_AND) {
			const char *h = dq_parent_hint(n->a);

			if (h)
				return h;
		}
		n = n->b;
	}
	return NULL;
}

int dq_has_fulltext(const struct dq_node *n)
{
	while (n) {
		if (n->kind == DQ_TERM)
			return n->field == DQ_F_FULLTEXT;
		if (dq_has_fulltext(n->a))
			return 1;
		n = n->b;
	}
	return 0;
}
