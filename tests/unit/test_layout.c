/* The layout=colab backend (sync/layout.c) against a real durafs-emulator:
 * the fixed root and Shareddrives/ (listing, stat, writes refused), routing
 * of reads, writes and resumable uploads into My Drive and shared drives,
 * renames inside one drive and refused between drives, the namespace check,
 * duplicate shared drive names, the combined change feed and its token,
 * the state kept for an offline remount (layout_state_save/restore). */
#include <fcntl.h>
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
#include "durafs/layout.h"
#include "durafs/log.h"
#include "emu_harness.h"
#include "unit_util.h"

static struct emuh *emu;
static struct http *http;
static struct be *lay;
static char team_id[BE_ID_MAX];

static void opts(struct drive_opts *o, const char *source)
{
	memset(o, 0, sizeof(*o));
	o->source = source;
	o->endpoint = emuh_url(emu);
	o->http = http;
	o->chunk_size = 256 * 1024;
	o->retry_base_ms = 2;
	o->pace_interval_ms = 10;
}

static char *shared_drive(const char *name, char *id)
{
	char body[256], *reply = NULL;
	json_t *j, *v;
	struct err e;

	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	if (emuh_call(emu, "POST", "/_emulator/drive/shared_drives", body, &reply, &e) < 0)
		fail_msg("shared drive: %s", e.msg);
	j = json_loads(reply, 0, NULL);
	assert_non_null(j);
	v = json_object_get(j, "id");
	if (!v)
		v = json_object_get(json_object_get(j, "drive"), "id");
	assert_true(json_is_string(v));
	snprintf(id, BE_ID_MAX, "%s", json_string_value(v));
	json_decref(j);
	free(reply);
	return id;
}

static int tmp_file(const char *s, size_t n, struct be_meta *m)
{
	char tmpl[] = "/tmp/durafs-layout-XXXXXX";
	struct err e;
	int fd = mkstemp(tmpl);
	size_t i;

	assert_true(fd >= 0);
	unlink(tmpl);
	for (i = 0; i < n; i += strlen(s))
		assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	memset(m, 0, sizeof(*m));
	assert_int_equal(be_meta_from_fd(fd, m, &e), 0);
	m->mtime.tv_sec = 1700000000;
	return fd;
}

static int put(const char *path, const char *s, struct err *e)
{
	struct be_meta m;
	struct be_pre pre;
	int fd = ut_str_file(s, &m), rc;

	memset(&pre, 0, sizeof(pre));
	pre.kind = BE_PRE_ABSENT;
	rc = be_put(lay, path, fd, &m, &pre, NULL, e);
	close(fd);
	return rc;
}

struct sbuf {
	char b[4096];
	size_t n;
};

static int sink(void *ud, const void *data, size_t len)
{
	struct sbuf *s = ud;

	assert_true(s->n + len < sizeof(s->b));
	memcpy(s->b + s->n, data, len);
	s->n += len;
	s->b[s->n] = '\0';
	return 0;
}

static void assert_names(const char *dir, const char *const *want, size_t n)
{
	struct be_list l = { 0 };
	size_t i;

	UT_OK(be_list(lay, dir, &l, &e_));
	if (l.n != n) {
		for (i = 0; i < l.n; i++)
			print_message("    %s has \"%s\"\n", dir, l.v[i].name);
		fail_msg("\"%s\": %zu entries, want %zu", dir, l.n, n);
	}
	for (i = 0; i < n; i++)
		assert_string_equal(l.v[i].name, want[i]);
	be_list_release(&l);
}

/* --- tests ----------------------------------------------------------------- */

static void test_token_and_new(void **state)
{
	const char *tok = "my=12\nabc=7\nx=\n";
	struct drive_opts o;
	struct be *b = NULL;
	struct err e;
	char *t;
	int oom;

	(void)state;
	t = layout_token_get(tok, "my", &oom);
	assert_string_equal(t, "12");
	free(t);
	t = layout_token_get(tok, "abc", &oom);
	assert_string_equal(t, "7");
	free(t);
	assert_null(layout_token_get(tok, "ab", &oom));
	assert_null(layout_token_get(tok, "x", &oom));
	assert_null(layout_token_get("", "my", &oom));
	assert_null(layout_token_get("garbage", "my", &oom));
	assert_int_equal(oom, 0);
	opts(&o, "drive:sub");
	assert_int_equal(layout_colab_new(&o, &b, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_non_null(strstr(e.msg, "layout=colab"));
	assert_null(b);
}

static void test_ns_check(void **state)
{
	(void)state;
	assert_int_equal(be_ns_check(lay, "x", NULL), BE_NS_FIXED);
	assert_int_equal(be_ns_check(lay, "MyDrive", NULL), BE_NS_FIXED);
	assert_int_equal(be_ns_check(lay, "Shareddrives/Team", NULL), BE_NS_FIXED);
	assert_int_equal(be_ns_check(lay, "MyDrive/a", NULL), BE_NS_OK);
	assert_int_equal(be_ns_check(lay, "Shareddrives/Team/a", NULL), BE_NS_OK);
	assert_int_equal(be_ns_check(lay, "MyDrive/a", "MyDrive/b/c"), BE_NS_OK);
	assert_int_equal(be_ns_check(lay, "MyDrive/a", "Shareddrives/Team/a"), BE_NS_XDEV);
	assert_int_equal(be_ns_check(lay, "Shareddrives/Team/a", "Shareddrives/Tea/a"),
			 BE_NS_XDEV);
	assert_int_equal(be_ns_check(lay, "MyDrive/a", "MyDrive"), BE_NS_FIXED);
	assert_int_equal(be_ns_check(lay, "MyDrive/a", "top"), BE_NS_FIXED);
}

static void test_fixed_dirs(void **state)
{
	static const char *const top[] = { "MyDrive", "Shareddrives" };
	struct be_entry ent;
	struct err e;

	(void)state;
	assert_names("", top, 2);
	UT_OK(be_stat(lay, "", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	be_entry_release(&ent);
	UT_OK(be_stat(lay, "MyDrive", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	assert_string_equal(ent.name, "MyDrive");
	be_entry_release(&ent);
	UT_OK(be_stat(lay, "Shareddrives/Team", &ent, &e_));
	assert_int_equal(ent.type, BE_DIR);
	assert_string_equal(ent.name, "Team");
	be_entry_release(&ent);
	assert_int_equal(be_stat(lay, "Other", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(be_stat(lay, "Shareddrives/Nope", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	/* writes in the fixed places */
	assert_int_equal(put("top.txt", "x", &e), -1);
	assert_int_equal(e.code, ERR_PERM);
	assert_int_equal(put("Shareddrives/x", "x", &e), -1);
	assert_int_equal(e.code, ERR_PERM);
	assert_int_equal(be_rmdir(lay, "MyDrive", &e), -1);
	assert_int_equal(e.code, ERR_PERM);
	/* mkdir of a fixed directory: it exists */
	UT_OK(be_mkdir(lay, "MyDrive", NULL, &e_));
}

static void test_routing(void **state)
{
	static const char *const mine[] = { "a.txt", "big.bin", "d" };
	static const char *const team[] = { "t.txt" };
	struct be_list l = { 0 };
	struct be_upload up;
	struct be_entry ent;
	struct be_meta m;
	struct be_pre pre;
	struct sbuf sb = { .n = 0 };
	struct err e;
	uint64_t got = 0;
	int fd;

	(void)state;
	UT_OK(put("MyDrive/a.txt", "in my drive", &e_));
	UT_OK(put("Shareddrives/Team/t.txt", "in team", &e_));
	UT_OK(be_mkdir(lay, "MyDrive/d", NULL, &e_));
	/* a resumable upload (several chunks) into My Drive: the state names
	 * the layout's path throughout */
	fd = tmp_file("0123456789abcdef", 600 * 1024, &m);
	memset(&pre, 0, sizeof(pre));
	pre.kind = BE_PRE_ABSENT;
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(lay, "MyDrive/big.bin", fd, &m, &pre, 0, 1, &up, NULL, NULL, &ent,
			  &e_));
	assert_string_equal(up.path, "MyDrive/big.bin");
	assert_int_equal(ent.size, m.size);
	be_entry_release(&ent);
	close(fd);
	assert_names("MyDrive", mine, 3);
	assert_names("Shareddrives/Team", team, 1);
	UT_OK(be_read(lay, "Shareddrives/Team/t.txt", NULL, 0, UINT64_MAX, sink, &sb, &got, &e_));
	assert_string_equal(sb.b, "in team");
	/* the write went to the shared drive, not My Drive */
	{
		struct drive_opts o;
		struct be *team_be = NULL;
		char src[BE_ID_MAX + 32];

		snprintf(src, sizeof(src), "drive:shared_id=%s", team_id);
		opts(&o, src);
		UT_OK(drive_new(&o, &team_be, &e_));
		UT_OK(be_list(team_be, "", &l, &e_));
		assert_int_equal(l.n, 1);
		assert_string_equal(l.v[0].name, "t.txt");
		be_list_release(&l);
		be_free(team_be);
	}
	/* rename inside one drive; refused between drives */
	UT_OK(be_stat(lay, "MyDrive/a.txt", &ent, &e_));
	memset(&pre, 0, sizeof(pre));
	pre.kind = BE_PRE_ABSENT;
	UT_OK(be_rename(lay, "MyDrive/a.txt", &ent.ver, "MyDrive/d/a2.txt", &pre, NULL, &e_));
	assert_int_equal(be_rename(lay, "MyDrive/d/a2.txt", &ent.ver, "Shareddrives/Team/a.txt",
				   &pre, NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	be_entry_release(&ent);
	UT_OK(be_stat(lay, "MyDrive/d/a2.txt", &ent, &e_));
	be_entry_release(&ent);
}

static int on_change(void *ud, const struct be_change *c)
{
	json_t *arr = ud;

	json_array_append_new(arr, json_pack("{s:s?, s:s?, s:s?, s:b}", "old", c->old_path,
					     "dir", c->new_dir, "name", c->new_name, "gone",
					     c->gone));
	return 0;
}

static int has_change(json_t *arr, const char *dir, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach(arr, i, c) {
		const char *d = json_string_value(json_object_get(c, "dir"));
		const char *n = json_string_value(json_object_get(c, "name"));

		if (d && !strcmp(d, dir) && ((!n && !name) || (n && name && !strcmp(n, name))))
			return 1;
	}
	return 0;
}

static void test_changes(void **state)
{
	char *tok = NULL, *next = NULL, *t, id2[BE_ID_MAX];
	static const char *const drives[] = { "Team", "Team (", "Two" };
	json_t *arr = json_array();
	struct be_list l = { 0 };
	int oom;

	(void)state;
	UT_OK(be_changes(lay, NULL, on_change, arr, &tok, &e_));
	t = layout_token_get(tok, "my", &oom);
	assert_non_null(t);
	free(t);
	t = layout_token_get(tok, team_id, &oom);
	assert_non_null(t);
	free(t);
	UT_OK(put("MyDrive/c1.txt", "c1", &e_));
	UT_OK(put("Shareddrives/Team/c2.txt", "c2", &e_));
	shared_drive("Two", id2);
	shared_drive("Team", id2);   /* a second drive of that name */
	UT_OK(be_changes(lay, tok, on_change, arr, &next, &e_));
	assert_true(has_change(arr, "MyDrive", "c1.txt"));
	assert_true(has_change(arr, "Shareddrives/Team", "c2.txt"));
	assert_true(has_change(arr, "Shareddrives", NULL));
	t = layout_token_get(next, id2, &oom);
	assert_non_null(t);
	free(t);
	/* the duplicate name is suffixed by its id */
	UT_OK(be_list(lay, "Shareddrives", &l, &e_));
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, drives[0]);
	assert_memory_equal(l.v[1].name, drives[1], strlen(drives[1]));
	assert_string_equal(l.v[2].name, drives[2]);
	be_list_release(&l);
	json_decref(arr);
	free(tok);
	free(next);
}

/* layout_state_save / layout_state_restore: nothing before My Drive's
 * root is resolved; after a check, My Drive's root and the shared drives;
 * a new layout given that state routes Shareddrives/NAME without any
 * drives request (drives.list failing meanwhile) and writes land in the
 * right drive; malformed states are refused and change nothing. */
static void test_state(void **state)
{
	static const char *const bad[] = {
		"{", "[]", "{}", "{\"my_root\":\"r1\"}",
		"{\"my_root\":\"bad id/x\",\"shared_drives\":[]}",
		"{\"my_root\":\"r1\",\"shared_drives\":[{\"id\":\"a b\",\"name\":\"T\"}]}",
		"{\"my_root\":\"r1\",\"shared_drives\":[{\"id\":\"ab\",\"name\":\"a/b\"}]}",
		"{\"my_root\":\"r1\",\"shared_drives\":[{\"id\":\"ab\"}]}",
		"{\"my_root\":\"r1\",\"shared_drives\":[7]}",
	};
	struct drive_opts o;
	struct be *b1 = NULL, *b2 = NULL, *b3 = NULL;
	struct be_entry ent;
	char *st = NULL, *reply = NULL, *st2;
	const char *my_id;
	json_t *j, *root, *arr;
	int64_t lists0, lists1, gets0, gets1;
	size_t i, k;
	int found = 0;
	struct err e;

	(void)state;
	opts(&o, "drive:");
	UT_OK(layout_colab_new(&o, &b1, &e_));
	assert_null(layout_state_save(b1));
	UT_OK(be_check(b1, &e_));
	st = layout_state_save(b1);
	assert_non_null(st);
	UT_OK(emuh_call(emu, "GET", "/_emulator/drive/root", NULL, &reply, &e_));
	root = json_loads(reply, 0, NULL);
	my_id = json_string_value(json_object_get(root, "id"));
	assert_non_null(my_id);
	j = json_loads(st, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "my_root")), my_id);
	arr = json_object_get(j, "shared_drives");
	assert_true(json_array_size(arr) >= 1);
	for (k = 0; k < json_array_size(arr); k++)
		if (!strcmp(json_string_value(json_object_get(json_array_get(arr, k), "id")),
			    team_id)) {
			assert_string_equal(json_string_value(json_object_get(json_array_get(arr, k),
									      "name")), "Team");
			found = 1;
		}
	assert_true(found);
	json_decref(j);

	/* a new layout given the state: no drives request for Shareddrives/Team */
	UT_OK(layout_colab_new(&o, &b2, &e_));
	UT_OK(layout_state_restore(b2, st, &e_));
	st2 = layout_state_save(b2);
	assert_non_null(st2);
	free(st2);
	UT_OK(emuh_faults(emu, "[{\"kind\":\"status\",\"status\":503,"
			  "\"path\":\"/drive/v3/drives*\"}]", &e_));
	UT_OK(emuh_requests(emu, "drive.drives.list", 0, &lists0, &e_));
	UT_OK(emuh_requests(emu, "drive.drives.get", 0, &gets0, &e_));
	{
		struct be_meta m;
		struct be_pre pre;
		int fd = ut_str_file("stored route", &m);

		memset(&pre, 0, sizeof(pre));
		pre.kind = BE_PRE_ABSENT;
		UT_OK(be_put(b2, "Shareddrives/Team/state.txt", fd, &m, &pre, NULL, &e_));
		close(fd);
	}
	UT_OK(be_stat(b2, "Shareddrives/Team/state.txt", &ent, &e_));
	be_entry_release(&ent);
	UT_OK(be_stat(b2, "MyDrive", &ent, &e_));
	be_entry_release(&ent);
	UT_OK(emuh_requests(emu, "drive.drives.list", 0, &lists1, &e_));
	UT_OK(emuh_requests(emu, "drive.drives.get", 0, &gets1, &e_));
	assert_int_equal(lists1, lists0);
	assert_int_equal(gets1, gets0);
	UT_OK(emuh_faults(emu, "[]", &e_));
	/* the file is in the shared drive, seen through the first layout */
	UT_OK(be_stat(b1, "Shareddrives/Team/state.txt", &ent, &e_));
	be_entry_release(&ent);

	/* malformed states: refused, nothing restored */
	UT_OK(layout_colab_new(&o, &b3, &e_));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err_clear(&e);
		if (layout_state_restore(b3, bad[i], &e) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_true(e.code == ERR_PARSE || e.code == ERR_INVAL);
		assert_non_null(strstr(e.msg, "layout=colab"));
		assert_null(layout_state_save(b3));
	}
	err_clear(&e);
	assert_int_equal(layout_state_restore(b3, NULL, &e), -1);
	json_decref(root);
	free(reply);
	free(st);
	be_free(b1);
	be_free(b2);
	be_free(b3);
}

static int setup(void **state)
{
	struct drive_opts o;
	struct err e;

	(void)state;
	if (emuh_test_start_noauth("test_layout", 3, 20, &emu, &http) < 0)
		return -1;
	shared_drive("Team", team_id);
	opts(&o, "drive:");
	if (layout_colab_new(&o, &lay, &e) < 0) {
		fprintf(stderr, "test_layout: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	be_free(lay);
	emuh_test_stop(emu, http);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_and_new),
		cmocka_unit_test(test_ns_check),
		cmocka_unit_test(test_fixed_dirs),
		cmocka_unit_test(test_routing),
		cmocka_unit_test(test_changes),
		cmocka_unit_test(test_state),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
