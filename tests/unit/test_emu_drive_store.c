/* Unit tests for tests/emulator/emu_drive_store.c: files and folders,
 * paging (default and sorted orders, tokens stable under inserts), trash
 * through ancestors, subtree deletes, the changes log, generated ids,
 * sessions, and recovery from the data dir (journal replay, compaction,
 * torn lines, session bytes trimmed to what was acknowledged). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "emu_drive_store.h"

static json_t *meta(const char *name, const char *parent, const char *mime)
{
	json_t *m = json_pack("{s:s}", "name", name);

	if (parent)
		json_object_set_new(m, "parents", json_pack("[s]", parent));
	if (mime)
		json_object_set_new(m, "mimeType", json_string(mime));
	return m;
}

/* Create a file (content may be NULL); returns its id (static buffer
 * rotation avoided: the caller copies). */
static void mk(struct dst *s, const char *name, const char *parent, const char *mime,
	       const char *content, char out[DST_ID_MAX])
{
	struct dst_new n;
	struct dst_view v;
	struct dst_err err;
	json_t *m = meta(name, parent, mime);

	memset(&n, 0, sizeof(n));
	n.meta = m;
	n.blob = content ? dst_blob_copy(s, content, strlen(content)) : NULL;
	if (dst_create(s, &n, &v, &err) < 0)
		fail_msg("create %s: %d %s %s", name, err.status, err.reason, err.msg);
	snprintf(out, DST_ID_MAX, "%s", json_string_value(json_object_get(v.res, "id")));
	dst_view_release(&v);
	dst_blob_unref(n.blob);
	json_decref(m);
}

/* Names of every page of a listing, joined by ',' ; pages counted. */
static char *list_names(struct dst *s, const char *q, const char *order, long max, int *pages)
{
	struct dst_list_args a;
	struct dst_err err;
	struct dq_node *tree = NULL;
	char why[100], *tok = NULL, *out = calloc(1, 1 << 20);
	size_t len = 0;
	int empty;

	*pages = 0;
	if (q)
		tree = dq_parse(q, strlen(q), &empty, why, sizeof(why));
	do {
		json_t *files = NULL, *f;
		char *next = NULL;
		size_t i;

		memset(&a, 0, sizeof(a));
		a.q = tree;
		a.order_by = order;
		a.max = max;
		a.token = tok;
		if (dst_list(s, &a, &files, &next, &err) < 0)
			fail_msg("list: %s", err.msg);
		(*pages)++;
		json_array_foreach(files, i, f)
			len += (size_t)snprintf(out + len, (1 << 20) - len, "%s%s", len ? "," : "",
						json_string_value(json_object_get(f, "name")));
		json_decref(files);
		free(tok);
		tok = next;
	} while (tok);
	dq_free(tree);
	return out;
}

static void test_create_list_page(void **state)
{
	struct dst *s;
	char why[200], dir[DST_ID_MAX], id[DST_ID_MAX], q[128], *names;
	int pages, i;

	(void)state;
	s = dst_open(NULL, why, sizeof(why));
	assert_non_null(s);
	mk(s, "d", "root", DST_FOLDER, NULL, dir);
	for (i = 0; i < 25; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%02d", 24 - i);
		mk(s, name, dir, NULL, "x", id);
	}
	snprintf(q, sizeof(q), "'%s' in parents", dir);
	names = list_names(s, q, NULL, 10, &pages);
	assert_int_equal(pages, 3);
	assert_true(!strncmp(names, "f24,f23,f22", 11));
	free(names);
	names = list_names(s, q, "name", 7, &pages);
	assert_int_equal(pages, 4);
	assert_true(!strncmp(names, "f00,f01,f02", 11));
	free(names);
	names = list_names(s, q, "name desc", 100, &pages);
	assert_true(!strncmp(names, "f24,f23", 7));
	free(names);
	/* the whole store: the folder and its files, never the root */
	names = list_names(s, NULL, NULL, 1000, &pages);
	assert_true(!strncmp(names, "d,f24", 5));
	assert_null(strstr(names, "My Drive"));
	free(names);
	dst_close(s);
}

static void test_tokens_stable(void **state)
{
	struct dst *s;
	struct dst_list_args a;
	struct dst_err err;
	json_t *files = NULL;
	char why[200], dir[DST_ID_MAX], id[DST_ID_MAX], *next = NULL, *next2 = NULL;
	int i;

	(void)state;
	s = dst_open(NULL, why, sizeof(why));
	mk(s, "d", "root", DST_FOLDER, NULL, dir);
	for (i = 0; i < 10; i++) {
		char name[16];

		snprintf(name, sizeof(name), "n%d", i);
		mk(s, name, dir, NULL, NULL, id);
	}
	memset(&a, 0, sizeof(a));
	a.max = 5;
	a.order_by = "name";
	assert_int_equal(dst_list(s, &a, &files, &next, &err), 0);
	json_decref(files);
	assert_non_null(next);
	mk(s, "a-first", dir, NULL, NULL, id);  /* sorts before the cursor */
	a.token = next;
	assert_int_equal(dst_list(s, &a, &files, &next2, &err), 0);
	/* page 1 was a-? no: d,n0..n3 ; page 2 resumes after n3 whatever was added */
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "name")),
			    "n4");
	json_decref(files);
	free(next2);
	/* a token of another order is refused */
	a.order_by = "modifiedTime";
	assert_int_equal(dst_list(s, &a, &files, &next2, &err), -1);
	assert_int_equal(err.status, 400);
	a.order_by = NULL;
	assert_int_equal(dst_list(s, &a, &files, &next2, &err), -1);
	a.token = "%%%";
	assert_int_equal(dst_list(s, &a, &files, &next2, &err), -1);
	a.token = NULL;
	a.order_by = "size";
	assert_int_equal(dst_list(s, &a, &files, &next2, &err), -1);
	assert_string_equal(err.location, "orderBy");
	free(next);
	dst_close(s);
}

static void test_trash_delete_changes(void **state)
{
	struct dst *s;
	struct dst_view v;
	struct dst_err err;
	char why[200], dir[DST_ID_MAX], sub[DST_ID_MAX], a[DST_ID_MAX], b[DST_ID_MAX];
	json_t *patch, *ch;
	int64_t t0, next;
	int more, pages;
	char *names;
	struct dst_usage u;

	(void)state;
	s = dst_open(NULL, why, sizeof(why));
	t0 = dst_changes_start(s);
	mk(s, "d", "root", DST_FOLDER, NULL, dir);
	mk(s, "sub", dir, DST_FOLDER, NULL, sub);
	mk(s, "a", sub, NULL, "aaaa", a);
	mk(s, "b", "root", NULL, "bb", b);
	patch = json_pack("{s:b}", "trashed", 1);
	assert_int_equal(dst_update(s, dir, patch, NULL, NULL, NULL, 0, &v, &err), 0);
	dst_view_release(&v);
	json_decref(patch);
	assert_int_equal(dst_get(s, a, 0, &v, &err), 0);
	assert_true(json_is_true(json_object_get(v.res, "trashed")));
	assert_true(json_is_false(json_object_get(v.res, "explicitlyTrashed")));
	dst_view_release(&v);
	names = list_names(s, "trashed = true", "name", 100, &pages);
	assert_string_equal(names, "a,d,sub");
	free(names);
	dst_usage(s, &u);
	assert_true(u.usage == 6 && u.usage_trash == 4);
	/* one change per file, its latest state */
	ch = dst_changes_list(s, t0, 100, NULL, 0, &more, &next);
	assert_int_equal(json_array_size(ch), 4);
	assert_int_equal(more, 0);
	json_decref(ch);
	assert_int_equal(dst_empty_trash(s, NULL, &err), 3);
	assert_int_equal(dst_get(s, a, 0, &v, &err), -1);
	assert_int_equal(err.status, 404);
	assert_int_equal(dst_get(s, b, 0, &v, &err), 0);
	dst_view_release(&v);
	ch = dst_changes_list(s, t0, 2, NULL, 0, &more, &next);
	assert_int_equal(json_array_size(ch), 2);
	assert_int_equal(more, 1);
	json_decref(ch);
	ch = dst_changes_list(s, next, 100, NULL, 0, &more, &next);
	assert_int_equal(json_array_size(ch), 2);
	assert_true(json_is_true(json_object_get(json_array_get(ch, 1), "removed")));
	json_decref(ch);
	assert_int_equal(dst_delete(s, "root", 0, &err), -1);
	assert_int_equal(err.status, 403);
	assert_int_equal(dst_delete(s, b, 0, &err), 0);
	dst_usage(s, &u);
	assert_true(u.usage == 0);
	dst_close(s);
}

static void test_ids_and_moves(void **state)
{
	struct dst *s;
	struct dst_new n;
	struct dst_view v;
	struct dst_err err;
	char why[200], x[DST_ID_MAX], y[DST_ID_MAX], f[DST_ID_MAX];
	json_t *ids, *m;

	(void)state;
	s = dst_open(NULL, why, sizeof(why));
	ids = dst_generate_ids(s, 3);
	assert_int_equal(json_array_size(ids), 3);
	m = json_pack("{s:s, s:O}", "name", "g", "id", json_array_get(ids, 0));
	memset(&n, 0, sizeof(n));
	n.meta = m;
	assert_int_equal(dst_create(s, &n, &v, &err), 0);
	dst_view_release(&v);
	assert_int_equal(dst_create(s, &n, &v, &err), -1);
	assert_int_equal(err.status, 409);
	json_object_set_new(m, "id", json_string("1notgenerated"));
	assert_int_equal(dst_create(s, &n, &v, &err), -1);
	assert_int_equal(err.status, 400);
	json_decref(m);
	json_decref(ids);
	mk(s, "x", "root", DST_FOLDER, NULL, x);
	mk(s, "y", x, DST_FOLDER, NULL, y);
	mk(s, "f", x, NULL, "1", f);
	assert_int_equal(dst_update(s, f, NULL, y, x, NULL, 0, &v, &err), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(v.res, "parents"), 0)), y);
	dst_view_release(&v);
	assert_int_equal(dst_update(s, x, NULL, y, "root", NULL, 0, &v, &err), -1);
	assert_int_equal(err.status, 400);  /* cycle */
	assert_int_equal(dst_update(s, f, NULL, x, NULL, NULL, 0, &v, &err), -1);
	assert_int_equal(err.status, 403);  /* a second parent */
	assert_int_equal(dst_update(s, f, NULL, "a,b", y, NULL, 0, &v, &err), -1);
	dst_close(s);
}

static void write_file(const char *path, const char *s, size_t n)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, n), (ssize_t)n);
	close(fd);
}

static void test_persistence(void **state)
{
	char tmpl[] = "/tmp/durafs-drive-store-XXXXXX", why[300], path[400];
	char dir[DST_ID_MAX], f[DST_ID_MAX], root[DST_ID_MAX], root2[DST_ID_MAX];
	struct dst *s;
	struct dst_sess *ss = NULL, *ss2;
	struct dst_view v;
	struct dst_err err;
	char *names, *chunk;
	int pages;
	int64_t tok;
	char cmd[512];

	(void)state;
	assert_non_null(mkdtemp(tmpl));
	s = dst_open(tmpl, why, sizeof(why));
	assert_non_null(s);
	dst_root_id(s, root);
	mk(s, "dir", "root", DST_FOLDER, NULL, dir);
	mk(s, "f", dir, NULL, "hello", f);
	assert_int_equal(dst_bulk(s, dir, 30, "b", ".txt", 3, "text/plain", NULL, 0, &err), 0);
	assert_int_equal(dst_sess_create(s, 0, NULL, NULL, NULL, NULL, 0, NULL, -1, &ss), 0);
	chunk = malloc(300 * 1024);
	memset(chunk, 'z', 300 * 1024);
	pthread_mutex_lock(&ss->mu);
	assert_int_equal(dst_sess_append(s, ss, chunk, 256 * 1024), 0);
	pthread_mutex_unlock(&ss->mu);
	tok = dst_changes_start(s);
	dst_close(s);
	/* a torn last line and unacknowledged session bytes, as a crash leaves */
	snprintf(path, sizeof(path), "%s/journal", tmpl);
	write_file(path, "{\"t\":\"f\",\"id\":\"1tor", 19);
	snprintf(path, sizeof(path), "%s/sessions/%s", tmpl, ss->id);
	write_file(path, chunk, 1000);
	s = dst_open(tmpl, why, sizeof(why));
	assert_non_null(s);
	dst_root_id(s, root2);
	assert_string_equal(root, root2);
	snprintf(cmd, sizeof(cmd), "'%s' in parents", dir);
	names = list_names(s, cmd, "name", 1000, &pages);
	assert_true(!strncmp(names, "b000.txt,b001.txt", 17));
	assert_non_null(strstr(names, ",f"));
	free(names);
	assert_int_equal(dst_get(s, f, 0, &v, &err), 0);
	assert_string_equal(json_string_value(json_object_get(v.res, "md5Checksum")),
			    "5d41402abc4b2a76b9719d911017c592");
	assert_memory_equal(v.blob->data, "hello", 5);
	dst_view_release(&v);
	assert_true(dst_changes_start(s) == tok);
	ss2 = dst_sess_find(s, ss->id);
	assert_non_null(ss2);
	assert_int_equal(ss2->state, DST_SESS_ACTIVE);
	assert_true(ss2->persisted == 256 * 1024);
	dst_sess_unref(ss2);
	dst_sess_unref(ss);
	/* a corrupt line in the middle is skipped, not fatal */
	dst_close(s);
	snprintf(path, sizeof(path), "%s/journal", tmpl);
	write_file(path, "garbage\n{\"t\":\"quota\",\"limit\":5}\n", 32);
	s = dst_open(tmpl, why, sizeof(why));
	assert_non_null(s);
	{
		struct dst_usage u;

		dst_usage(s, &u);
		assert_true(u.limit == 5);
	}
	dst_reset(s);
	dst_close(s);
	s = dst_open(tmpl, why, sizeof(why));
	names = list_names(s, NULL, NULL, 1000, &pages);
	assert_string_equal(names, "");
	free(names);
	dst_close(s);
	free(chunk);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_list_page),
		cmocka_unit_test(test_tokens_stable),
		cmocka_unit_test(test_trash_delete_changes),
		cmocka_unit_test(test_ids_and_moves),
		cmocka_unit_test(test_persistence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
