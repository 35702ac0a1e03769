/* The Drive backend's change feed (be_changes over changes.list) against a
 * real durafs-emulator: the start token, what each change reports (paths
 * under the mount root, old path of a move seen by another client, trashed
 * items gone (also when the folder was never listed), items deleted for
 * good reported by id alone when the folder was never listed, items
 * outside the root given no place, folders of one name reported by the names the
 * listing shows them by), paging through every page,
 * a failing page failing the whole call without losing a change, and the
 * reply parser on malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "durafs/backend.h"
#include "durafs/drive.h"
#include "durafs/http.h"
#include "durafs/log.h"
#include "emu_harness.h"
#include "unit_util.h"

static struct emuh *emu;
static struct http *http;
static struct be *mine;       /* drive:w, the "poller" (caches listings) */
static struct be *other;      /* drive:w, another client */

/* --- helpers --------------------------------------------------------------- */

static struct be *new_drive(const char *source)
{
	struct drive_opts o;
	struct be *b = NULL;
	struct err e;

	memset(&o, 0, sizeof(o));
	o.source = source;
	o.endpoint = emuh_url(emu);
	o.http = http;
	o.cache_ttl_ms = 60000;
	o.retry_base_ms = 2;
	o.pace_backoff_ms = 20;
	o.pace_interval_ms = 10;
	if (drive_new(&o, &b, &e) < 0)
		fail_msg("drive_new %s: %s", source, e.msg);
	return b;
}

static void list(struct be *b, const char *dir)
{
	struct be_list l = { 0 };

	UT_OK(be_list(b, dir, &l, &e_));
	be_list_release(&l);
}

/* The reports of one be_changes call. */
struct rec {
	char *id, *old_path, *new_dir, *new_name;
	int gone;
	enum be_type type;
	int64_t gen;
};
struct recs {
	struct rec v[256];
	size_t n;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int collect(void *ud, const struct be_change *c)
{
	struct recs *r = ud;
	struct rec *x;

	assert_true(r->n < 256);
	x = &r->v[r->n++];
	x->id = dup_or_null(c->id);
	x->old_path = dup_or_null(c->old_path);
	x->new_dir = dup_or_null(c->new_dir);
	x->new_name = dup_or_null(c->new_name);
	x->gone = c->gone;
	x->type = c->type;
	x->gen = c->ver.gen;
	return 0;
}

static void recs_free(struct recs *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		free(r->v[i].id);
		free(r->v[i].old_path);
		free(r->v[i].new_dir);
		free(r->v[i].new_name);
	}
	r->n = 0;
}

/* The last report whose new place is dir/name, or NULL. */
static const struct rec *find_new(const struct recs *r, const char *dir, const char *name)
{
	size_t i;

	for (i = r->n; i-- > 0;)
		if (r->v[i].new_dir && r->v[i].new_name && !strcmp(r->v[i].new_dir, dir) &&
		    !strcmp(r->v[i].new_name, name))
			return &r->v[i];
	return NULL;
}

static const struct rec *find_old(const struct recs *r, const char *path)
{
	size_t i;

	for (i = r->n; i-- > 0;)
		if (r->v[i].old_path && !strcmp(r->v[i].old_path, path))
			return &r->v[i];
	return NULL;
}

static char *start_token(struct be *b)
{
	char *tok = NULL;

	UT_OK(be_changes(b, NULL, collect, NULL, &tok, &e_));
	assert_non_null(tok);
	assert_true(*tok);
	return tok;
}

/* --- tests ----------------------------------------------------------------- */

static void test_start_token(void **state)
{
	char *t1, *t2;

	(void)state;
	assert_true(be_has_changes(mine));
	t1 = start_token(mine);
	ut_put_str(other, "start.txt", "x", NULL);
	t2 = start_token(mine);
	assert_string_not_equal(t1, t2);
	free(t1);
	free(t2);
}

static void test_reports(void **state)
{
	struct recs r = { .n = 0 };
	const struct rec *x;
	char *tok, *next = NULL, *next2 = NULL;
	struct err e;

	(void)state;
	UT_OK(be_mkdir(other, "sub", NULL, &e_));
	ut_put_str(other, "sub/moved.txt", "m", NULL);
	ut_put_str(other, "sub/trashed.txt", "t", NULL);
	list(mine, "");
	list(mine, "sub");
	tok = start_token(mine);
	/* Another client creates, overwrites nothing, moves, trashes; and
	 * something changes outside the mount's root. */
	ut_put_str(other, "new.txt", "hello", NULL);
	UT_OK(be_mkdir(other, "d2", NULL, &e_));
	ut_put_str(other, "d2/deep.bin", "deep", NULL);
	{
		struct be_entry ent;
		struct be_pre pre;

		memset(&pre, 0, sizeof(pre));
		pre.kind = BE_PRE_ABSENT;
		UT_OK(be_stat(other, "sub/moved.txt", &ent, &e_));
		UT_OK(be_rename(other, "sub/moved.txt", &ent.ver, "d2/renamed.txt", &pre, NULL, &e_));
		be_entry_release(&ent);
		UT_OK(be_stat(other, "sub/trashed.txt", &ent, &e_));
		UT_OK(be_remove(other, "sub/trashed.txt", &ent.ver, NULL, &e_));
		be_entry_release(&ent);
	}
	UT_OK(emuh_call(emu, "POST", "/_emulator/drive/files",
		     "{\"name\":\"outside.txt\",\"content\":\"o\"}", NULL, &e_));

	err_clear(&e);
	assert_int_equal(be_changes(mine, tok, collect, &r, &next, &e), 0);
	assert_non_null(next);
	assert_string_not_equal(next, tok);

	x = find_new(&r, "", "new.txt");
	assert_non_null(x);
	assert_int_equal(x->type, BE_FILE);
	assert_false(x->gone);
	assert_null(x->old_path);
	assert_true(x->gen > 0);
	x = find_new(&r, "", "d2");
	assert_non_null(x);
	assert_int_equal(x->type, BE_DIR);
	/* d2 was never listed by `mine`: its path came from Drive. */
	assert_non_null(find_new(&r, "d2", "deep.bin"));
	/* A move: the old place from mine's cached listing of "sub". */
	x = find_old(&r, "sub/moved.txt");
	assert_non_null(x);
	assert_false(x->gone);
	assert_string_equal(x->new_dir, "d2");
	assert_string_equal(x->new_name, "renamed.txt");
	/* Trashed: gone, at its old place. */
	x = find_old(&r, "sub/trashed.txt");
	assert_non_null(x);
	assert_true(x->gone);
	assert_null(x->new_dir);
	/* Outside the root: no place (by id alone at most). */
	assert_null(find_new(&r, "", "outside.txt"));
	print_message("    %zu changes reported\n", r.n);
	recs_free(&r);

	/* Nothing new since: no report, same position. */
	assert_int_equal(be_changes(mine, next, collect, &r, &next2, &e), 0);
	assert_int_equal(r.n, 0);
	assert_string_equal(next2, next);
	free(tok);
	free(next);
	free(next2);
}

/* A trash seen by an instance that never listed the folder (a remount):
 * the old place comes from the trashed item's parent. */
static void test_trash_without_cache(void **state)
{
	struct recs r = { .n = 0 };
	const struct rec *x;
	struct be_entry ent;
	struct be *fresh;
	char *tok, *next = NULL;

	(void)state;
	UT_OK(be_mkdir(other, "t2", NULL, &e_));
	ut_put_str(other, "t2/x.txt", "x", NULL);
	fresh = new_drive("drive:w");
	tok = start_token(fresh);
	UT_OK(be_stat(other, "t2/x.txt", &ent, &e_));
	UT_OK(be_remove(other, "t2/x.txt", &ent.ver, NULL, &e_));
	be_entry_release(&ent);
	UT_OK(be_changes(fresh, tok, collect, &r, &next, &e_));
	x = find_old(&r, "t2/x.txt");
	assert_non_null(x);
	assert_true(x->gone);
	assert_int_equal(x->type, BE_FILE);
	recs_free(&r);
	be_free(fresh);
	free(tok);
	free(next);
}

/* The report of id, or NULL. */
static const struct rec *find_id(const struct recs *r, const char *id)
{
	size_t i;

	for (i = r->n; i-- > 0;)
		if (r->v[i].id && !strcmp(r->v[i].id, id))
			return &r->v[i];
	return NULL;
}

/* Deleted for good (changes.list gives the id alone): an instance that
 * never listed the folder reports it by id, gone, with no place; one that
 * listed it names the old place. An item created outside the root is
 * reported by id alone too (the mount finds no stored place for it). */
static void test_delete_without_cache(void **state)
{
	struct recs r = { .n = 0 }, r2 = { .n = 0 };
	const struct rec *x;
	struct be_entry ent;
	struct be *fresh;
	char *tok, *next = NULL, *next2 = NULL, url[256];
	size_t i;

	(void)state;
	UT_OK(be_mkdir(other, "t3", NULL, &e_));
	ut_put_str(other, "t3/doomed.txt", "x", NULL);
	list(mine, "t3");
	fresh = new_drive("drive:w");
	tok = start_token(fresh);
	UT_OK(be_stat(other, "t3/doomed.txt", &ent, &e_));
	snprintf(url, sizeof(url), "/drive/v3/files/%s", ent.ver.id);
	UT_OK(emuh_call(emu, "DELETE", url, NULL, NULL, &e_));
	UT_OK(emuh_call(emu, "POST", "/_emulator/drive/files",
			"{\"name\":\"outside2.txt\",\"content\":\"o\"}", NULL, &e_));
	UT_OK(be_changes(fresh, tok, collect, &r, &next, &e_));
	x = find_id(&r, ent.ver.id);
	assert_non_null(x);
	assert_true(x->gone);
	assert_null(x->old_path);
	assert_null(x->new_dir);
	assert_null(x->new_name);
	/* outside2.txt (never inside): by id alone too */
	assert_int_equal(r.n, 2);
	for (i = 0; i < r.n; i++) {
		assert_null(r.v[i].old_path);
		assert_null(r.v[i].new_dir);
		assert_true(r.v[i].gone);
	}
	UT_OK(be_changes(mine, tok, collect, &r2, &next2, &e_));
	x = find_id(&r2, ent.ver.id);
	assert_non_null(x);
	assert_true(x->gone);
	assert_non_null(x->old_path);
	assert_string_equal(x->old_path, "t3/doomed.txt");
	recs_free(&r);
	recs_free(&r2);
	be_entry_release(&ent);
	be_free(fresh);
	free(tok);
	free(next);
	free(next2);
}

/* Create one item through the control API (spec: JSON fields without the
 * braces) under parent; its id into id[BE_ID_MAX]. */
static void make_item(const char *parent, const char *spec, char *id)
{
	char body[1024], *reply = NULL;
	json_t *j, *f;
	json_error_t je;

	snprintf(body, sizeof(body), "{\"parent\":\"%s\",%s}", parent, spec);
	UT_OK(emuh_call(emu, "POST", "/_emulator/drive/files", body, &reply, &e_));
	j = json_loads(reply, 0, &je);
	assert_non_null(j);
	f = json_array_get(json_object_get(j, "files"), 0);
	assert_non_null(f);
	assert_non_null(json_string_value(json_object_get(f, "id")));
	snprintf(id, BE_ID_MAX, "%s", json_string_value(json_object_get(f, "id")));
	json_decref(j);
	free(reply);
}

#define FOLDER_SPEC(name, year) "\"name\":\"" name "\",\"mimeType\":" \
	"\"application/vnd.google-apps.folder\",\"createdTime\":\"" year "-01-01T00:00:00Z\""

/* Folders of the same name (a duplicate shown with its id suffix) and a
 * folder literally named like that suffix (the duplicate's suffix then
 * grows): a change inside each, seen by an instance that never listed
 * their parent, is reported in the directory the listing shows, and the
 * paths resolve to the same folders. */
static void test_duplicate_folder_paths(void **state)
{
	struct recs r = { .n = 0 };
	struct be_list l = { 0 };
	struct be_entry ent;
	struct be *f2, *f3;
	char w[BE_ID_MAX], a[BE_ID_MAX], b[BE_ID_MAX], lit[BE_ID_MAX], x[BE_ID_MAX];
	char *b6 = NULL, *b8 = NULL, *tok, *next = NULL, spec[512], p[600];
	const struct rec *rx;
	size_t i, seen = 0;
	struct err e;

	(void)state;
	list(mine, "");
	drive_root_id(mine, w, sizeof(w));
	assert_true(w[0]);
	make_item(w, FOLDER_SPEC("dup", "2020"), a);
	make_item(w, FOLDER_SPEC("dup", "2021"), b);
	b6 = drive_name_suffixed("dup", b, 1, 6);
	b8 = drive_name_suffixed("dup", b, 1, 8);
	assert_non_null(b6);
	assert_non_null(b8);
	/* a real folder named like b's 6-digit suffix: b is shown with 8 */
	snprintf(spec, sizeof(spec), "\"name\":\"%s\",\"mimeType\":"
		 "\"application/vnd.google-apps.folder\",\"createdTime\":"
		 "\"2022-01-01T00:00:00Z\"", b6);
	make_item(w, spec, lit);
	f2 = new_drive("drive:w");
	tok = start_token(f2);
	make_item(a, "\"name\":\"in-a.txt\",\"content\":\"a\"", x);
	make_item(b, "\"name\":\"in-b.txt\",\"content\":\"b\"", x);
	make_item(lit, "\"name\":\"in-l.txt\",\"content\":\"l\"", x);
	UT_OK(be_changes(f2, tok, collect, &r, &next, &e_));
	rx = find_new(&r, "dup", "in-a.txt");
	assert_non_null(rx);
	rx = find_new(&r, b8, "in-b.txt");
	assert_non_null(rx);
	rx = find_new(&r, b6, "in-l.txt");
	assert_non_null(rx);
	/* the listing shows the same names; the paths resolve the same way */
	f3 = new_drive("drive:w");
	UT_OK(be_list(f3, "", &l, &e_));
	for (i = 0; i < l.n; i++) {
		const char *want = !strcmp(l.v[i].ver.id, a) ? "dup" : !strcmp(l.v[i].ver.id, b) ?
				   b8 : !strcmp(l.v[i].ver.id, lit) ? b6 : NULL;

		if (want) {
			assert_string_equal(l.v[i].name, want);
			seen++;
		}
	}
	assert_int_equal(seen, 3);
	be_list_release(&l);
	snprintf(p, sizeof(p), "%s/in-b.txt", b8);
	UT_OK(be_stat(f3, p, &ent, &e_));
	be_entry_release(&ent);
	snprintf(p, sizeof(p), "%s/in-l.txt", b6);
	UT_OK(be_stat(f3, p, &ent, &e_));
	be_entry_release(&ent);
	snprintf(p, sizeof(p), "%s/in-b.txt", b6);
	err_clear(&e);
	assert_int_equal(be_stat(f3, p, &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	UT_OK(be_stat(f3, "dup/in-a.txt", &ent, &e_));
	be_entry_release(&ent);
	recs_free(&r);
	be_free(f2);
	be_free(f3);
	free(b6);
	free(b8);
	free(tok);
	free(next);
}

/* Every page is read; a page that fails fails the call, and asking again
 * from the same token reports everything. */
static void test_pages_and_failure(void **state)
{
	struct recs r = { .n = 0 };
	char *tok, *next = NULL, rules[512], path[64];
	int64_t before, t;
	struct err e;
	int i;

	(void)state;
	UT_OK(be_mkdir(other, "pg", NULL, &e_));
	list(mine, "pg");
	tok = start_token(mine);
	for (i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "pg/f%d", i);
		ut_put_str(other, path, "p", NULL);
	}
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":2}]");
	before = emuh_must_requests(emu, "drive.changes.list", 0);
	err_clear(&e);
	assert_int_equal(be_changes(mine, tok, collect, &r, &next, &e), 0);
	assert_true(emuh_must_requests(emu, "drive.changes.list", 0) - before >= 4);
	for (i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "f%d", i);
		assert_non_null(find_new(&r, "pg", path));
	}
	recs_free(&r);
	free(next);
	next = NULL;

	/* The second page (its token is the third change's number) fails. */
	t = strtoll(tok, NULL, 10);
	assert_true(t > 0);
	snprintf(rules, sizeof(rules),
		 "[{\"kind\":\"page_cap\",\"max\":2},{\"kind\":\"status\",\"status\":503,"
		 "\"path\":\"/drive/v3/changes\",\"query\":\"pageToken=%lld&\"}]",
		 (long long)(t + 2));
	emuh_must_faults(emu, rules);
	err_clear(&e);
	assert_int_equal(be_changes(mine, tok, collect, &r, &next, &e), -1);
	assert_null(next);
	assert_non_null(strstr(e.msg, "changes page 2"));
	print_message("    error: %.160s\n", e.msg);
	recs_free(&r);
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":2}]");
	assert_int_equal(be_changes(mine, tok, collect, &r, &next, &e), 0);
	for (i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "f%d", i);
		assert_non_null(find_new(&r, "pg", path));
	}
	recs_free(&r);
	emuh_must_faults(emu, "[]");
	free(tok);
	free(next);
}

static void test_parse(void **state)
{
	static const char *const bad[] = {
		"[]",
		"{\"changes\":[]}",
		"{\"changes\":[],\"nextPageToken\":\"a\",\"newStartPageToken\":\"b\"}",
		"{\"changes\":[{\"removed\":true}],\"newStartPageToken\":\"5\"}",
		"{\"changes\":[{\"fileId\":\"a b\"}],\"newStartPageToken\":\"5\"}",
		"{\"changes\":[{\"fileId\":\"abc\",\"file\":{\"id\":\"abc\"}}],"
		"\"newStartPageToken\":\"5\"}",
		"{\"changes\":[{\"fileId\":\"abc\",\"file\":{\"id\":\"xyz\",\"mimeType\":\"a/b\"}}],"
		"\"newStartPageToken\":\"5\"}",
		"{\"changes\":[1],\"newStartPageToken\":\"5\"}",
		"{\"changes\":[],\"newStartPageToken\":\"\"}",
		"{\"changes\":[],\"newStartPageToken\":\"a\\nb\"}",
		"{\"changes\":[{\"fileId\":\"abc\",\"removed\":\"yes\"}],\"nextPageToken\":\"5\"}",
	};
	const char *good = "{\"changes\":[{\"fileId\":\"abc\",\"removed\":true},"
			   "{\"fileId\":\"def\",\"file\":{\"id\":\"def\",\"name\":\"n\","
			   "\"mimeType\":\"text/plain\",\"parents\":[\"p1\"],\"version\":\"7\"}}],"
			   "\"nextPageToken\":\"12\"}";
	struct drive_changes_page pg;
	struct err e;
	char *t;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err_clear(&e);
		if (drive_parse_changes_page(bad[i], strlen(bad[i]), &pg, &e) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(e.code, ERR_PARSE);
		assert_int_equal(pg.n, 0);
		assert_null(pg.v);
	}
	assert_int_equal(drive_parse_changes_page(good, strlen(good), &pg, &e), 0);
	assert_int_equal(pg.n, 2);
	assert_string_equal(pg.v[0].file_id, "abc");
	assert_true(pg.v[0].removed);
	assert_false(pg.v[0].has_file);
	assert_true(pg.v[1].has_file);
	assert_string_equal(pg.v[1].file.parent, "p1");
	assert_int_equal(pg.v[1].file.version, 7);
	assert_string_equal(pg.next_token, "12");
	assert_null(pg.new_start);
	drive_changes_page_release(&pg);
	t = drive_parse_start_token("{\"startPageToken\":\"42\"}",
				    strlen("{\"startPageToken\":\"42\"}"), &e);
	assert_non_null(t);
	assert_string_equal(t, "42");
	free(t);
	assert_null(drive_parse_start_token("{\"startPageToken\":42}",
					    strlen("{\"startPageToken\":42}"), &e));
	assert_int_equal(e.code, ERR_PARSE);
}

static int setup(void **state)
{
	struct be *top;
	struct err e;

	(void)state;
	if (emuh_test_start_noauth("test_drive_changes", 3, 20, &emu, &http) < 0)
		return -1;
	top = new_drive("drive:");
	if (be_mkdir(top, "w", NULL, &e) < 0) {
		fprintf(stderr, "test_drive_changes: mkdir w: %s\n", e.msg);
		return -1;
	}
	be_free(top);
	mine = new_drive("drive:w");
	other = new_drive("drive:w");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	be_free(mine);
	be_free(other);
	emuh_test_stop(emu, http);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_start_token),
		cmocka_unit_test(test_reports),
		cmocka_unit_test(test_trash_without_cache),
		cmocka_unit_test(test_delete_without_cache),
		cmocka_unit_test(test_duplicate_folder_paths),
		cmocka_unit_test(test_pages_and_failure),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
