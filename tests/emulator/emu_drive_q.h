/* durafs-emulator Drive v3 search queries: the `q` grammar of files.list
 * ("'ID' in parents and trashed = false", "name contains 'a\'b'", not/or,
 * parentheses, dates, properties has {...}) parsed into a tree, and that
 * tree evaluated against one file. Pure: no I/O, no global state, fuzzed. */
#ifndef DURAFS_EMU_DRIVE_Q_H
#define DURAFS_EMU_DRIVE_Q_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* Limits on untrusted input. */
#define DQ_MAX_LEN 65536   /* bytes of q */
#define DQ_MAX_DEPTH 64    /* nesting of parentheses and `not` */
#define DQ_MAX_TERMS 2000  /* terms in one query */

enum dq_field {
	DQ_F_NAME, DQ_F_FULLTEXT, DQ_F_MIME, DQ_F_MODIFIED, DQ_F_CREATED,
	DQ_F_VIEWED, DQ_F_TRASHED, DQ_F_STARRED, DQ_F_HIDDEN, DQ_F_PARENTS,
	DQ_F_OWNERS, DQ_F_WRITERS, DQ_F_READERS, DQ_F_SHARED_WITH_ME,
	DQ_F_PROPERTIES, DQ_F_APP_PROPERTIES, DQ_F_VISIBILITY,
	DQ_F_SHORTCUT_TARGET,
};
enum dq_cmp { DQ_EQ, DQ_NE, DQ_LT, DQ_LE, DQ_GT, DQ_GE, DQ_CONTAINS, DQ_IN, DQ_HAS };
enum dq_kind { DQ_AND, DQ_OR, DQ_NOT, DQ_TERM };

/* One node of a parsed query. Owned by its parent; the root is freed with
 * dq_free. */
struct dq_node {
	int kind;               /* enum dq_kind */
	struct dq_node *a, *b;  /* AND/OR: both; NOT: a */
	int field;              /* TERM: enum dq_field */
	int cmp;                /* TERM: enum dq_cmp */
	char *str;              /* TERM: unescaped string value (or property key) */
	char *val;              /* TERM with DQ_HAS: property value */
	int64_t ms;             /* TERM on a time field: ms since the epoch */
	int boolean;            /* TERM on a boolean field */
};

/* Parse len bytes of q. Returns the tree (dq_free), or NULL with a short
 * reason in why (why may be NULL; "" on ENOMEM). An empty or blank q is
 * "no filter": NULL with why = "" and *empty = 1. */
struct dq_node *dq_parse(const char *q, size_t len, int *empty, char *why, size_t whysz);
void dq_free(struct dq_node *n);

/* What a query sees of a file. Strings may be NULL (never match). */
struct dq_file {
	const char *id;
	const char *name;
	const char *mime;
	const char *parent;        /* the one parent id, or NULL */
	int trashed;               /* effective: itself or an ancestor */
	int starred;
	int owned_by_me;
	int64_t modified_ms, created_ms, viewed_ms;
	const json_t *properties;  /* objects of string values, or NULL */
	const json_t *app_properties;
	const char *target_id;     /* shortcuts */
	const char *text;          /* searchable text (fullText), may be NULL */
	size_t text_len;
};

/* 1 when f matches n (n == NULL matches everything). root_id is what the
 * alias 'root' means in `in parents`; me is the user's e-mail address,
 * matched (besides 'me') by `in owners|writers|readers`. Pure. */
int dq_eval(const struct dq_node *n, const struct dq_file *f, const char *root_id,
	    const char *me);

/* The parent named by a top-level `'ID' in parents` conjunct (not under
 * `or` or `not`), so a caller can list that folder's children only; NULL
 * when there is none. Borrowed from n. */
const char *dq_parent_hint(const struct dq_node *n);

/* 1 when n has a fullText term anywhere (sorting is then refused). */
int dq_has_fulltext(const struct dq_node *n);

/* RFC 3339 date-time ("2024-01-02T03:04:05.678Z", offset or none: UTC; a
 * bare date is midnight UTC) to ms since the epoch. 0 or -1. */
int dq_parse_time(const char *s, int64_t *ms);

#endif
