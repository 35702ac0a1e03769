/* Pure parsers of the Drive backend (include/durafs/drive.h): file
 * resources, files.list pages, generateIds replies, and the batch format
 * (building a multipart/mixed body of DELETE calls, parsing the
 * multipart/mixed reply whose parts come in any order). Every malformed
 * input gives ERR_PARSE naming what is wrong; fuzzed by
 * tests/fuzz/fuzz_drive_parse.c. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "durafs/backend.h"
#include "durafs/drive.h"
#include "durafs/http.h"
#include "durafs/jsonh.h"
#include "drive_i.h"

/* --- file resources ----------------------------------------------------------- */

void drive_file_release(struct drive_file *f)
{
	if (!f)
		return;
	free(f->id);
	free(f->name);
	free(f->mime);
	free(f->parent);
	free(f->drive_id);
	free(f->target_id);
	free(f->target_mime);
	free(f->symlink_target);
	memset(f, 0, sizeof(*f));
}

static int dup_field(char **dst, const char *src, size_t len)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = malloc(len + 1);
	if (!*dst)
		return -1;
	memcpy(*dst, src, len);
	(*dst)[len] = '\0';
	return 0;
}

int drive_file_copy(struct drive_file *dst, const struct drive_file *src, struct err *err)
{
	*dst = *src;
	dst->id = dst->name = dst->mime = dst->parent = dst->drive_id = NULL;
	dst->target_id = dst->target_mime = dst->symlink_target = NULL;
	if (dup_field(&dst->id, src->id, src->id ? strlen(src->id) : 0) < 0 ||
	    dup_field(&dst->name, src->name, src->name_len) < 0 ||
	    dup_field(&dst->mime, src->mime, src->mime ? strlen(src->mime) : 0) < 0 ||
	    dup_field(&dst->parent, src->parent, src->parent ? strlen(src->parent) : 0) < 0 ||
	    dup_field(&dst->drive_id, src->drive_id, src->drive_id ? strlen(src->drive_id) : 0) < 0 ||
	    dup_field(&dst->target_id, src->target_id, src->target_id ? strlen(src->target_id) : 0) < 0 ||
	    dup_field(&dst->target_mime, src->target_mime,
		      src->target_mime ? strlen(src->target_mime) : 0) < 0 ||
	    dup_field(&dst->symlink_target, src->symlink_target,
		      src->symlink_target ? strlen(src->symlink_target) : 0) < 0) {
		drive_file_release(dst);
		return err_set(err, ERR_NOMEM, "out of memory");
	}
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_md5_hex(const char *s, unsigned char out[16])
{
	int i, a, b;

	if (strlen(s) != 32)
		return -1;
	for (i = 0; i < 16; i++) {
		a = hexval(s[2 * i]);
		b = hexval(s[2 * i + 1]);
		if (a < 0 || b < 0)
			return -1;
		out[i] = (unsigned char)(a * 16 + b);
	}
	return 0;
}

/* An optional RFC 3339 time member. */
static int opt_time(const json_t *j, const char *key, struct timespec *out, struct err *err)
{
	const char *s = NULL;

	if (jsonh_opt_str(j, key, &s, err) < 0)
		return -1;
	if (s && be_parse_rfc3339(s, out) < 0)
		return err_set(err, ERR_PARSE, "field \"%s\": not an RFC 3339 time", key);
	return 0;
}

/* An optional id member (validated). */
static int opt_id(const json_t *j, const char *key, char **out, struct err *err)
{
	const char *s = NULL;

	*out = NULL;
	if (jsonh_opt_str(j, key, &s, err) < 0)
		return -1;
	if (!s)
		return 0;
	if (!drive_id_valid(s, strlen(s)))
		return err_set(err, ERR_PARSE, "field \"%s\": not a valid Drive id", key);
	*out = strdup(s);
	return *out ? 0 : err_set(err, ERR_NOMEM, "out of memory");
}

int drive_file_from_json(const json_t *j, struct drive_file *out, struct err *err)
{
	struct drive_file f;
	const char *s = NULL, *name = NULL;
	json_t *arr = NULL, *sd = NULL, *ap = NULL, *v;
	size_t nlen = 0;
	int rc = -1;

	memset(&f, 0, sizeof(f));
	memset(out, 0, sizeof(*out));
	if (!json_is_object(j)) {
		err_set(err, ERR_PARSE, "file resource: expected an object, got %s",
			jsonh_type_name(j));
		goto out;
	}
	if (jsonh_get_str(j, "id", &s, err) < 0)
		goto out;
	if (!drive_id_valid(s, strlen(s))) {
		err_set(err, ERR_PARSE, "file resource: \"id\" is not a valid Drive id");
		goto out;
	}
	if (!(f.id = strdup(s)))
		goto nomem;
	if (jsonh_get_strn(j, "name", &name, &nlen, err) < 0)
		goto out;
	if (dup_field(&f.name, name, nlen) < 0)
		goto nomem;
	f.name_len = nlen;
	if (jsonh_get_strdup(j, "mimeType", &f.mime, err) < 0)
		goto out;
	if (jsonh_opt_array(j, "parents", &arr, err) < 0)
		goto out;
	if (json_array_size(arr) > 0) {
		if (jsonh_elem_str(arr, 0, "parents", &s, err) < 0)
			goto out;
		if (!drive_id_valid(s, strlen(s))) {
			err_set(err, ERR_PARSE, "field \"parents\": not a valid Drive id");
			goto out;
		}
		if (!(f.parent = strdup(s)))
			goto nomem;
	}
	if (opt_id(j, "driveId", &f.drive_id, err) < 0)
		goto out;
	v = json_object_get(j, "size");
	if (v && !json_is_null(v)) {
		if (jsonh_get_uint64(j, "size", &f.size, err) < 0)
			goto out;
		f.has_size = 1;
	}
	if (jsonh_opt_str(j, "md5Checksum", &s, err) < 0)
		goto out;
	if (s) {
		if (parse_md5_hex(s, f.md5) < 0) {
			err_set(err, ERR_PARSE, "field \"md5Checksum\": not 32 hex digits");
			goto out;
		}
		f.has_md5 = 1;
	}
	if (jsonh_opt_int64(j, "version", 0, &f.version, err) < 0)
		goto out;
	if (f.version < 0) {
		err_set(err, ERR_PARSE, "field \"version\": negative");
		goto out;
	}
	if (opt_time(j, "modifiedTime", &f.mtime, err) < 0 ||
	    opt_time(j, "createdTime", &f.ctime, err) < 0 ||
	    opt_time(j, "trashedTime", &f.ttime, err) < 0)
		goto out;
	if (jsonh_opt_bool(j, "trashed", 0, &f.trashed, err) < 0 ||
	    jsonh_opt_bool(j, "explicitlyTrashed", 0, &f.explicitly_trashed, err) < 0)
		goto out;
	if (jsonh_opt_object(j, "shortcutDetails", &sd, err) < 0)
		goto out;
	if (sd) {
		if (jsonh_get_str(sd, "targetId", &s, err) < 0) {
			err_prefix(err, "shortcutDetails");
			goto out;
		}
		if (!drive_id_valid(s, strlen(s))) {
			err_set(err, ERR_PARSE, "field \"shortcutDetails.targetId\": not a valid "
				"Drive id");
			goto out;
		}
		if (!(f.target_id = strdup(s)))
			goto nomem;
		if (jsonh_opt_strdup(sd, "targetMimeType", &f.target_mime, err) < 0) {
			err_prefix(err, "shortcutDetails");
			goto out;
		}
	}
	if (jsonh_opt_object(j, "appProperties", &ap, err) < 0)
		goto out;
	if (ap) {
		/* Written by anyone with access: a wrong type is ignored. */
		v = json_object_get(ap, DRIVE_PROP_SYMLINK);
		if (v && json_is_string(v) && json_string_length(v) > 0 &&
		    strlen(json_string_value(v)) == json_string_length(v) &&
		    json_string_length(v) < 4096) {
			if (!(f.symlink_target = strdup(json_string_value(v))))
				goto nomem;
		}
	}
	*out = f;
	memset(&f, 0, sizeof(f));
	rc = 0;
	goto out;
nomem:
	err_set(err, ERR_NOMEM, "out of memory");
out:
	drive_file_release(&f);
	return rc;
}

int drive_parse_file(const char *buf, size_t len, struct drive_file *out, struct err *err)
{
	json_t *j = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (jsonh_parse_object(buf, len, "Drive file", &j, err) < 0)
		return -1;
	rc = drive_file_from_json(j, out, err);
	json_decref(j);
	return rc;
}

void drive_page_release(struct drive_page *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->n; i++)
		drive_file_release(&p->files[i]);
	free(p->files);
	free(p->next_token);
	memset(p, 0, sizeof(*p));
}

int drive_parse_list_page(const char *buf, size_t len, struct drive_page *out,
			  struct err *err)
{
	struct drive_page pg;
	json_t *j = NULL, *files = NULL, *it = NULL;
	const char *tok = NULL;
	size_t i, n;
	int rc = -1;

	memset(&pg, 0, sizeof(pg));
	memset(out, 0, sizeof(*out));
	if (jsonh_parse_object(buf, len, "Drive file list", &j, err) < 0)
		goto out;
	if (jsonh_opt_array(j, "files", &files, err) < 0 ||
	    jsonh_opt_str(j, "nextPageToken", &tok, err) < 0 ||
	    jsonh_opt_bool(j, "incompleteSearch", 0, &pg.incomplete, err) < 0)
		goto out;
	n = json_array_size(files);
	if (n) {
		pg.files = calloc(n, sizeof(*pg.files));
		if (!pg.files) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (jsonh_elem_object(files, i, "files", &it, err) < 0)
			goto out;
		if (drive_file_from_json(it, &pg.files[i], err) < 0) {
			err_prefix(err, "files[%zu]", i);
			goto out;
		}
		pg.n++;
	}
	if (tok && *tok) {
		pg.next_token = strdup(tok);
		if (!pg.next_token) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	*out = pg;
	memset(&pg, 0, sizeof(pg));
	rc = 0;
out:
	drive_page_release(&pg);
	json_decref(j);
	return rc;
}

void drive_changes_page_release(struct drive_changes_page *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->n; i++) {
		free(p->v[i].file_id);
		drive_file_release(&p->v[i].file);
	}
	free(p->v);
	free(p->next_token);
	free(p->new_start);
	memset(p, 0, sizeof(*p));
}

/* A page token: a non-empty string without control characters. */
static int token_dup(const char *tok, const char *what, char **out, struct err *err)
{
	const char *c;

	for (c = tok; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return err_set(err, ERR_PARSE, "%s holds a control character", what);
	if (!*tok)
		return err_set(err, ERR_PARSE, "%s is empty", what);
	*out = strdup(tok);
	if (!*out)
		return err_set(err, ERR_NOMEM, "out of memory");
	return 0;
}

int drive_parse_changes_page(const char *buf, size_t len, struct drive_changes_page *out,
			     struct err *err)
{
	struct drive_changes_page pg;
	json_t *j = NULL, *arr = NULL, *it = NULL, *file = NULL;
	const char *next = NULL, *start = NULL, *id = NULL;
	size_t i, n;
	int rc = -1;

	memset(&pg, 0, sizeof(pg));
	memset(out, 0, sizeof(*out));
	if (jsonh_parse_object(buf, len, "Drive change list", &j, err) < 0)
		goto out;
	if (jsonh_opt_array(j, "changes", &arr, err) < 0 ||
	    jsonh_opt_str(j, "nextPageToken", &next, err) < 0 ||
	    jsonh_opt_str(j, "newStartPageToken", &start, err) < 0)
		goto out;
	if (!next == !start) {
		err_set(err, ERR_PARSE, "Drive change list: %s", next ?
			"both nextPageToken and newStartPageToken" :
			"neither nextPageToken nor newStartPageToken");
		goto out;
	}
	n = json_array_size(arr);
	if (n) {
		pg.v = calloc(n, sizeof(*pg.v));
		if (!pg.v) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		struct drive_change *c = &pg.v[i];

		if (jsonh_elem_object(arr, i, "changes", &it, err) < 0)
			goto out;
		pg.n++;
		if (jsonh_get_str(it, "fileId", &id, err) < 0 ||
		    jsonh_opt_bool(it, "removed", 0, &c->removed, err) < 0 ||
		    jsonh_opt_object(it, "file", &file, err) < 0) {
			err_prefix(err, "changes[%zu]", i);
			goto out;
		}
		if (!drive_id_valid(id, strlen(id))) {
			err_set(err, ERR_PARSE, "changes[%zu]: fileId is not a valid id", i);
			goto out;
		}
		c->file_id = strdup(id);
		if (!c->file_id) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		if (file && !c->removed) {
			if (drive_file_from_json(file, &c->file, err) < 0) {
				err_prefix(err, "changes[%zu].file", i);
				goto out;
			}
			c->has_file = 1;
			if (strcmp(c->file.id, c->file_id) != 0) {
				err_set(err, ERR_PARSE, "changes[%zu]: file.id differs from fileId", i);
				goto out;
			}
		}
	}
	if (next && token_dup(next, "nextPageToken", &pg.next_token, err) < 0)
		goto out;
	if (start && token_dup(start, "newStartPageToken", &pg.new_start, err) < 0)
		goto out;
	*out = pg;
	memset(&pg, 0, sizeof(pg));
	rc = 0;
out:
	drive_changes_page_release(&pg);
	json_decref(j);
	return rc;
}

char *drive_parse_start_token(const char *buf, size_t len, struct err *err)
{
	json_t *j = NULL;
	const char *tok = NULL;
	char *out = NULL;

	if (jsonh_parse_object(buf, len, "Drive start page token", &j, err) < 0)
		return NULL;
	if (jsonh_get_str(j, "startPageToken", &tok, err) == 0)
		token_dup(tok, "startPageToken", &out, err);
	json_decref(j);
	return out;
}

int drive_parse_ids(const char *buf, size_t len, char **ids, size_t max, struct err *err)
{
	json_t *j = NULL, *arr = NULL;
	const char *s;
	size_t i, n, got = 0;
	int rc = -1;

	if (jsonh_parse_object(buf, len, "Drive generated ids", &j, err) < 0)
		return -1;
	if (jsonh_get_array(j, "ids", &arr, err) < 0)
		goto out;
	n = json_array_size(arr);
	if (n == 0) {
		err_set(err, ERR_PARSE, "Drive generated ids: \"ids\" is empty");
		goto out;
	}
	for (i = 0; i < n && got < max; i++) {
		if (jsonh_elem_str(arr, i, "ids", &s, err) < 0)
			goto out;
		if (!drive_id_valid(s, strlen(s))) {
			err_set(err, ERR_PARSE, "Drive generated ids: ids[%zu] is not a valid id", i);
			goto out;
		}
		ids[got] = strdup(s);
		if (!ids[got]) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		got++;
	}
	rc = (int)got;
out:
	if (rc < 0)
		for (i = 0; i < got; i++) {
			free(ids[i]);
			ids[i] = NULL;
		}
	json_decref(j);
	return rc;
}

/* --- batch ----------------------------------------------------------------------- */

char *drive_batch_delete_body(const char *boundary, const char *api_path,
			      const char *const *ids, size_t n, size_t *len, struct err *err)
{
	struct drive_sb b = { 0 };
	size_t i;

	if (n == 0 || n > DRIVE_BATCH_MAX) {
		err_set(err, ERR_INVAL, "batch: %zu calls (1 to %d)", n, DRIVE_BATCH_MAX);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (!drive_id_valid(ids[i], strlen(ids[i]))) {
			err_set(err, ERR_INVAL, "batch: \"%s\" is not a valid Drive id", ids[i]);
			return NULL;
		}
		drive_sb_addf(&b, "--%s\r\nContent-Type: application/http\r\n"
			      "Content-ID: <item-%zu>\r\n\r\n", boundary, i);
		drive_sb_addf(&b, "DELETE %s/files/", api_path);
		drive_sb_add(&b, ids[i]);
		drive_sb_add(&b, "?supportsAllDrives=true HTTP/1.1\r\n\r\n\r\n");
	}
	drive_sb_addf(&b, "--%s--\r\n", boundary);
	return drive_sb_take(&b, len, err);
}

/* The boundary parameter of a multipart Content-Type (quoted or not), into
 * out. */
static int ctype_boundary(const char *ctype, char *out, size_t outsz)
{
	const char *p = ctype, *end;
	size_t n;

	if (!p)
		return -1;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "multipart/", 10) != 0)
		return -1;
	for (;;) {
		p = strchr(p, ';');
		if (!p)
			return -1;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "boundary=", 9) == 0)
			break;
	}
	p += 9;
	if (*p == '"') {
		p++;
		end = strchr(p, '"');
		if (!end)
			return -1;
	} else {
		end = p + strcspn(p, "; \t");
	}
	n = (size_t)(end - p);
	if (n == 0 || n > 70 || n >= outsz)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* Find needle (nlen bytes) in hay[0..hlen). */
static const char *find_mem(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	size_t i;

	if (nlen == 0 || hlen < nlen)
		return NULL;
	for (i = 0; i + nlen <= hlen; i++)
		if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
			return hay + i;
	return NULL;
}

/* Next line of [*p, end): its bounds without the line break; *p moves past
 * it. Returns 0, or -1 at the end. */
static int next_line(const char **p, const char *end, const char **ls, size_t *ll)
{
	const char *nl;

	if (*p >= end)
		return -1;
	nl = memchr(*p, '\n', (size_t)(end - *p));
	*ls = *p;
	if (!nl) {
		*ll = (size_t)(end - *p);
		*p = end;
	} else {
		*ll = (size_t)(nl - *p);
		*p = nl + 1;
	}
	if (*ll > 0 && (*ls)[*ll - 1] == '\r')
		(*ll)--;
	return 0;
}

/* "<response-item-N>" (angle brackets optional; any prefix before
 * "item-") -> N. */
static long content_id_index(const char *v, size_t len)
{
	const char *p = find_mem(v, len, "item-", 5);
	long n = 0;
	size_t i;

	if (!p)
		return -1;
	i = (size_t)(p - v) + 5;
	if (i >= len || v[i] < '0' || v[i] > '9')
		return -1;
	for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
		if (n > 100000000)
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	if (i < len && v[i] != '>' && v[i] != ' ')
		return -1;
	return n;
}

/* One part [p, end): outer headers, the HTTP status line, inner headers,
 * body. */
static int parse_part(const char *p, const char *end, struct drive_batch_part *out,
		      size_t idx, struct err *err)
{
	const char *ls, *colon;
	size_t ll;
	long status = 0;
	struct err e;
	char *endp;

	memset(out, 0, sizeof(*out));
	out->index = -1;
	/* Outer headers until the blank line. */
	for (;;) {
		if (next_line(&p, end, &ls, &ll) < 0)
			return err_set(err, ERR_PARSE, "batch reply: part %zu ends in its headers",
				       idx);
		if (ll == 0)
			break;
		colon = memchr(ls, ':', ll);
		if (!colon)
			return err_set(err, ERR_PARSE, "batch reply: part %zu has a malformed "
				       "header", idx);
		if ((size_t)(colon - ls) == 10 && strncasecmp(ls, "Content-ID", 10) == 0)
			out->index = content_id_index(colon + 1, ll - (size_t)(colon + 1 - ls));
	}
	/* The HTTP response: skip blank lines before the status line. */
	do {
		if (next_line(&p, end, &ls, &ll) < 0)
			return err_set(err, ERR_PARSE, "batch reply: part %zu has no HTTP status "
				       "line", idx);
	} while (ll == 0);
	if (ll < 12 || strncmp(ls, "HTTP/", 5) != 0)
		return err_set(err, ERR_PARSE, "batch reply: part %zu has no HTTP status line",
			       idx);
	{
		char line[32];
		const char *sp = memchr(ls, ' ', ll);

		if (!sp || (size_t)(ls + ll - sp) < 4)
			return err_set(err, ERR_PARSE, "batch reply: part %zu: bad status line",
				       idx);
		memcpy(line, sp + 1, 3);
		line[3] = '\0';
		if (!isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]))
			return err_set(err, ERR_PARSE, "batch reply: part %zu: bad status line",
				       idx);
		status = strtol(line, &endp, 10);
		if (status < 100 || status > 599)
			return err_set(err, ERR_PARSE, "batch reply: part %zu: bad status %ld",
				       idx, status);
	}
	out->status = status;
	/* Inner headers, then the body (a Google error for failures). */
	for (;;) {
		if (next_line(&p, end, &ls, &ll) < 0 || ll == 0)
			break;
	}
	if (status >= 300) {
		err_clear(&e);
		http_status_to_err(status, p < end ? p : NULL, p < end ? (size_t)(end - p) : 0, &e);
		snprintf(out->reason, sizeof(out->reason), "%s", e.reason);
	}
	return 0;
}

int drive_parse_batch_reply(const char *ctype, const char *body, size_t len,
			    struct drive_batch_part *parts, size_t max, size_t *n,
			    struct err *err)
{
	char bnd[80], delim[84];
	const char *p, *end, *q, *start;
	size_t dlen, count = 0;

	*n = 0;
	if (ctype_boundary(ctype, bnd, sizeof(bnd)) < 0)
		return err_set(err, ERR_PARSE, "batch reply: no multipart boundary in Content-Type "
			       "\"%.100s\"", ctype ? ctype : "");
	if (!body)
		return err_set(err, ERR_PARSE, "batch reply: empty body");
	end = body + len;
	dlen = (size_t)snprintf(delim, sizeof(delim), "--%s", bnd);
	/* The first delimiter starts the body or a line. */
	p = find_mem(body, len, delim, dlen);
	if (!p || (p != body && p[-1] != '\n'))
		return err_set(err, ERR_PARSE, "batch reply: no opening delimiter");
	for (;;) {
		p += dlen;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			break;  /* closing delimiter */
		/* Rest of the delimiter line (transport padding). */
		q = memchr(p, '\n', (size_t)(end - p));
		if (!q)
			return err_set(err, ERR_PARSE, "batch reply: no closing delimiter");
		start = q + 1;
		/* The part ends at the next delimiter at a line start. */
		q = start;
		for (;;) {
			q = find_mem(q, (size_t)(end - q), delim, dlen);
			if (!q)
				return err_set(err, ERR_PARSE, "batch reply: no closing delimiter");
			if (q[-1] == '\n')
				break;
			q++;
		}
		if (count >= max)
			return err_set(err, ERR_PARSE, "batch reply: more than %zu parts", max);
		/* Part content excludes the line break before the delimiter. */
		{
			const char *pe = q - 1;

			if (pe > start && pe[-1] == '\r')
				pe--;
			if (parse_part(start, pe, &parts[count], count, err) < 0)
				return -1;
		}
		count++;
		p = q;
	}
	*n = count;
	return 0;
}
