/* The Drive backend (sync/drive*.c) against a real durafs-emulator started
 * by the harness: every operation, then every operation under 30% injected
 * faults, a 20,000-entry folder listed through pages capped at 100, a
 * failing page, resumable uploads cut and resumed (also from a saved state
 * in a new instance), duplicate and '/' names written and read back, Docs
 * exports, shortcuts, conflicts, rate-limit pacing, the storage quota,
 * purge and batch deletes. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/drive.h"
#include "durafs/enc.h"
#include "durafs/http.h"
#include "durafs/jsonh.h"
#include "durafs/log.h"
#include "emu_harness.h"
#include "unit_util.h"

#define CHUNK (256u * 1024u)
#define FS "\xef\xbc\x8f"   /* U+FF0F */
#define FD "\xef\xbc\x8e"   /* U+FF0E */
#define Q "\xe2\x80\x9b"    /* U+201B */

static struct emuh *emu;
static struct http *http;
static struct be *be;        /* drive:, cached listings */
static char root[BE_ID_MAX];

/* --- helpers ------------------------------------------------------------- */

/* Create files through the control API; returns the reply's "files" array
 * (a new reference). */
static json_t *mkfiles(const char *json)
{
	json_t *j = NULL, *files;
	char *reply = NULL;
	struct err e;

	if (emuh_call(emu, "POST", "/_emulator/drive/files", json, &reply, &e) < 0)
		fail_msg("create files: %s", e.msg);
	j = json_loads(reply, 0, NULL);
	assert_non_null(j);
	files = json_object_get(j, "files");
	assert_true(json_is_array(files));
	json_incref(files);
	json_decref(j);
	free(reply);
	return files;
}

static const char *file_id(json_t *files, size_t i)
{
	return json_string_value(json_object_get(json_array_get(files, i), "id"));
}

/* A file resource straight from the emulator's API (not through us). */
static json_t *api_get(const char *id)
{
	char path[256], *reply = NULL;
	json_t *j;
	struct err e;

	snprintf(path, sizeof(path), "/drive/v3/files/%s?fields=id,name,trashed,parents,version",
		 id);
	if (emuh_call(emu, "GET", path, NULL, &reply, &e) < 0) {
		free(reply);
		return NULL;
	}
	j = json_loads(reply, 0, NULL);
	free(reply);
	return j;
}

static struct be *new_drive(const char *source, int docs, int del, long ttl)
{
	struct drive_opts o;
	struct be *b = NULL;
	struct err e;

	memset(&o, 0, sizeof(o));
	o.source = source;
	o.endpoint = emuh_url(emu);
	o.http = http;
	o.docs = docs;
	o.delete_mode = del;
	o.chunk_size = CHUNK;
	o.cache_ttl_ms = ttl;
	o.retry_base_ms = 2;
	o.chunk_max_failures = 40;
	o.pace_backoff_ms = 20;
	o.pace_backoff_max_ms = 300;
	o.pace_interval_ms = 10;
	o.pace_interval_max_ms = 150;
	o.pace_recover_ms = 1000;
	o.rate_max_retries = 60;
	if (drive_new(&o, &b, &e) < 0)
		fail_msg("drive_new %s: %s", source, e.msg);
	return b;
}

/* Write s at path with pre; returns 0 or -1 (*err). */
static int put_str(struct be *b, const char *path, const char *s, const struct be_pre *pre,
		   struct be_entry *out, struct err *err)
{
	struct be_meta m;
	int fd = ut_str_file(s, &m), rc;

	rc = be_put(b, path, fd, &m, pre, out, err);
	close(fd);
	return rc;
}

/* The whole content of path (at ver when not NULL), as a C string. */
static char *read_all(struct be *b, const char *path, const struct be_version *ver)
{
	struct ut_buf got = { 0 };
	uint64_t g = 0;
	struct err e;

	if (be_read(b, path, ver, 0, UINT64_MAX, ut_buf_sink, &got, &g, &e) < 0)
		fail_msg("read %s: %s", path, e.msg);
	assert_int_equal(g, got.n);
	if (!got.p)
		got.p = strdup("");
	return got.p;
}

static void check_content(struct be *b, const char *path, const char *want)
{
	char *s = read_all(b, path, NULL);

	assert_string_equal(s, want);
	free(s);
}

static void stat_id(struct be *b, const char *path, char *id)
{
	struct be_entry e;

	UT_OK(be_stat(b, path, &e, &e_));
	snprintf(id, BE_ID_MAX, "%s", e.ver.id);
	be_entry_release(&e);
}

static int setup(void **state)
{
	char *reply = NULL;
	json_t *j;
	struct err e;

	(void)state;
	if (emuh_test_start_noauth("test_drive_emu", 12, 40, &emu, &http) < 0)
		return -1;
	if (emuh_call(emu, "POST", "/_emulator/drive/root", NULL, &reply, &e) < 0) {
		fprintf(stderr, "test_drive_emu: setup: %s\n", e.msg);
		return -1;
	}
	j = json_loads(reply, 0, NULL);
	free(reply);
	if (!j || !json_is_string(json_object_get(j, "id")))
		return -1;
	snprintf(root, sizeof(root), "%s", json_string_value(json_object_get(j, "id")));
	json_decref(j);
	be = new_drive("drive:", DRIVE_DOCS_EXPORT, DRIVE_DELETE_TRASH, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	be_free(be);
	emuh_test_stop(emu, http);
	return 0;
}

static int clear_faults(void **state)
{
	(void)state;
	emuh_must_faults(emu, "[]");
	emuh_must_post(emu, "/_emulator/drive/rate", "{\"writes_per_second\":0}");
	emuh_must_post(emu, "/_emulator/drive/storage_quota_exceeded", "{\"on\":false}");
	return 0;
}

/* The longest symlink target the backend reports is what Drive stores
 * (its app property holds 124 bytes with the key), one byte more is
 * refused; any name Drive takes passes the path check. */
static void test_symlink_max(void **state)
{
	char tgt[DRIVE_SYMLINK_MAX + 2];
	struct be_pre pre = ut_pre_absent();
	struct be_entry ent;
	struct err e;

	(void)state;
	assert_int_equal(be_symlink_max(be), 105);
	assert_int_equal(be_path_check(be, "line\nfeed", 0), BE_PATH_OK);
	memset(tgt, 't', sizeof(tgt) - 2);
	tgt[sizeof(tgt) - 2] = '\0';
	UT_OK(be_symlink(be, "ln-max", tgt, NULL, &pre, &ent, &e_));
	assert_string_equal(ent.symlink_target, tgt);
	tgt[sizeof(tgt) - 2] = 't';
	tgt[sizeof(tgt) - 1] = '\0';
	assert_int_equal(be_symlink(be, "ln-over", tgt, NULL, &pre, NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	UT_OK(be_remove(be, "ln-max", &ent.ver, NULL, &e_));
	be_entry_release(&ent);
}

/* --- check and roots ---------------------------------------------------- */

static void test_check(void **state)
{
	struct be_list l = { 0 };
	struct be_entry f;
	struct be *b;
	char got[BE_ID_MAX], src[BE_ID_MAX + 16], fid[BE_ID_MAX];
	struct err e;

	(void)state;
	UT_OK(be_check(be, &e_));
	drive_root_id(be, got, sizeof(got));
	assert_string_equal(got, root);
	assert_string_equal(be_name(be), "drive");
	assert_true(be_caps(be) & BE_CAP_TRASH);
	assert_true(be_caps(be) & BE_CAP_DIR_RENAME_ATOMIC);
	assert_true(be_caps(be) & BE_CAP_SETATTR);

	b = new_drive("drive:id=noSuchFolder123", 0, 0, 0);
	assert_int_equal(be_check(b, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	be_free(b);
	b = new_drive("drive:nope/deeper", 0, 0, 0);
	assert_int_equal(be_check(b, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	be_free(b);

	UT_OK(be_mkdir(be, "chk", NULL, &e_));
	ut_put_str(be, "chk/f", "x", &f);
	snprintf(fid, sizeof(fid), "%s", f.ver.id);
	be_entry_release(&f);
	snprintf(src, sizeof(src), "drive:id=%s", fid);
	b = new_drive(src, 0, 0, 0);
	assert_int_equal(be_check(b, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	be_free(b);
	/* A folder as the root: by path, and by id. */
	b = new_drive("drive:chk", 0, 0, 0);
	UT_OK(be_check(b, &e_));
	UT_OK(be_list(b, "", &l, &e_));
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].name, "f");
	be_list_release(&l);
	drive_root_id(b, got, sizeof(got));
	be_free(b);
	snprintf(src, sizeof(src), "drive:id=%s", got);
	b = new_drive(src, 0, 0, 0);
	check_content(b, "f", "x");
	be_free(b);
}

/* --- every operation once ---------------------------------------------- */

static void test_basic_ops(void **state)
{
	struct be_entry f1, f2, ent, cur, d1;
	struct be_list l = { 0 };
	struct ut_buf got = { 0 };
	struct be_pre pre;
	struct be_attr a;
	struct be_version stale;
	json_t *j;
	char oldid[BE_ID_MAX];
	uint64_t g;
	struct err e;

	(void)state;
	UT_OK(be_mkdir(be, "basic", &d1, &e_));
	assert_int_equal(d1.type, BE_DIR);
	assert_true(d1.ver.id[0]);
	UT_OK(be_mkdir(be, "basic", &ent, &e_));  /* idempotent: the same folder */
	assert_string_equal(ent.ver.id, d1.ver.id);
	be_entry_release(&ent);
	be_entry_release(&d1);

	ut_put_str(be, "basic/hello.txt", "hello, world\n", &f1);
	assert_int_equal(f1.type, BE_FILE);
	assert_int_equal(f1.size, 13);
	assert_true(f1.has_md5);
	assert_true(f1.ver.gen > 0);
	assert_int_equal(f1.mtime.tv_sec, 1700000000);
	assert_string_equal(f1.name, "hello.txt");
	UT_OK(be_stat(be, "basic/hello.txt", &ent, &e_));
	assert_true(be_version_equal(&ent.ver, &f1.ver));
	assert_memory_equal(ent.md5, f1.md5, 16);
	be_entry_release(&ent);

	/* Ranged reads: middle, past the end, at the end. */
	UT_OK(be_read(be, "basic/hello.txt", &f1.ver, 7, 5, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 5);
	assert_memory_equal(got.p, "world", 5);
	got.n = 0;
	UT_OK(be_read(be, "basic/hello.txt", &f1.ver, 10, 100, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 3);
	got.n = 0;
	UT_OK(be_read(be, "basic/hello.txt", NULL, 13, 10, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 0);
	free(got.p);

	/* mkdir on a file; a create over an existing name. */
	assert_int_equal(be_mkdir(be, "basic/hello.txt", NULL, &e), -1);
	assert_int_equal(e.code, ERR_EXISTS);
	pre = ut_pre_absent();
	assert_int_equal(put_str(be, "basic/hello.txt", "other", &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_true(be_version_equal(&cur.ver, &f1.ver));
	be_entry_release(&cur);
	/* The same content again: our own earlier commit, success. */
	UT_OK(put_str(be, "basic/hello.txt", "hello, world\n", &pre, &ent, &e_));
	assert_string_equal(ent.ver.id, f1.ver.id);
	be_entry_release(&ent);

	/* Replace (guarded), then the old version is gone for pinned reads. */
	pre = ut_pre_match(&f1.ver);
	UT_OK(put_str(be, "basic/hello.txt", "bonjour\n", &pre, &f2, &e_));
	assert_string_equal(f2.ver.id, f1.ver.id);
	assert_true(f2.ver.gen > f1.ver.gen);
	check_content(be, "basic/hello.txt", "bonjour\n");
	assert_int_equal(be_read(be, "basic/hello.txt", &f1.ver, 0, 10, ut_buf_sink, &got, &g, &e),
			 -1);
	assert_int_equal(e.code, ERR_NOTFOUND);

	/* Symlinks. */
	pre = ut_pre_absent();
	UT_OK(be_symlink(be, "basic/ln", "hello.txt", NULL, &pre, &ent, &e_));
	assert_int_equal(ent.type, BE_SYMLINK);
	be_entry_release(&ent);
	UT_OK(be_mkdir(be, "basic/sub", NULL, &e_));
	UT_OK(be_list(be, "basic", &l, &e_));
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "hello.txt");
	assert_string_equal(l.v[1].name, "ln");
	assert_int_equal(l.v[1].type, BE_SYMLINK);
	assert_string_equal(l.v[1].symlink_target, "hello.txt");
	assert_string_equal(l.v[2].name, "sub");
	assert_int_equal(l.v[2].type, BE_DIR);
	be_list_release(&l);

	/* setattr: mtime only, content untouched, version moves on. */
	memset(&a, 0, sizeof(a));
	a.set = BE_ATTR_MTIME;
	a.mtime.tv_sec = 1234567890;
	a.mtime.tv_nsec = 250000000;
	UT_OK(be_setattr(be, "basic/hello.txt", &f2.ver, &a, &ent, &e_));
	assert_int_equal(ent.mtime.tv_sec, 1234567890);
	assert_int_equal(ent.mtime.tv_nsec, 250000000);
	assert_true(ent.ver.gen > f2.ver.gen);
	assert_memory_equal(ent.md5, f2.md5, 16);
	stale = f2.ver;
	be_entry_release(&f2);
	f2 = ent;
	a.mtime.tv_sec = 1111111111;
	assert_int_equal(be_setattr(be, "basic/hello.txt", &stale, &a, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_true(be_version_equal(&cur.ver, &f2.ver));
	be_entry_release(&cur);

	/* Rename into a subfolder, then over an existing file. */
	pre = ut_pre_absent();
	UT_OK(be_rename(be, "basic/hello.txt", &f2.ver, "basic/sub/hi.txt", &pre, &ent, &e_));
	assert_string_equal(ent.name, "hi.txt");
	assert_string_equal(ent.ver.id, f2.ver.id);
	assert_int_equal(be_stat(be, "basic/hello.txt", &cur, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	check_content(be, "basic/sub/hi.txt", "bonjour\n");
	be_entry_release(&f2);
	f2 = ent;
	ut_put_str(be, "basic/sub/other.txt", "other\n", &ent);
	snprintf(oldid, sizeof(oldid), "%s", ent.ver.id);
	pre = ut_pre_match(&ent.ver);
	be_entry_release(&ent);
	UT_OK(be_rename(be, "basic/sub/hi.txt", &f2.ver, "basic/sub/other.txt", &pre, &ent, &e_));
	check_content(be, "basic/sub/other.txt", "bonjour\n");
	j = api_get(oldid);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "trashed")));  /* replaced: trashed */
	json_decref(j);
	be_entry_release(&f2);
	f2 = ent;

	/* Directory rename: one call. */
	{
		int64_t upd0 = emuh_must_requests(emu, "drive.files.update", 0);

		UT_OK(be_rename_dir(be, "basic/sub", "basic/sub2", NULL, NULL, &e_));
		assert_int_equal(emuh_must_requests(emu, "drive.files.update", 0) - upd0, 1);
	}
	check_content(be, "basic/sub2/other.txt", "bonjour\n");
	/* Interrupted-and-rerun is a success; neither side: not found. */
	UT_OK(be_rename_dir(be, "basic/sub", "basic/sub2", NULL, NULL, &e_));
	assert_int_equal(be_rename_dir(be, "basic/nope", "basic/nope2", NULL, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);

	/* rmdir refuses a non-empty folder; remove trashes; rmdir then works. */
	assert_int_equal(be_rmdir(be, "basic/sub2", &e), -1);
	assert_int_equal(e.code, ERR_NOTEMPTY);
	UT_OK(be_remove(be, "basic/sub2/other.txt", &f2.ver, NULL, &e_));
	j = api_get(f2.ver.id);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "trashed")));
	json_decref(j);
	assert_int_equal(be_remove(be, "basic/sub2/other.txt", &f2.ver, NULL, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	UT_OK(be_rmdir(be, "basic/sub2", &e_));
	assert_int_equal(be_stat(be, "basic/sub2", &cur, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_int_equal(be_rmdir(be, "basic/sub2", &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);

	/* rmdir_tree: a folder with its contents in one call, into the trash. */
	{
		struct be_entry t1, t2;
		char tid[BE_ID_MAX];
		int64_t upd0, del0;

		UT_OK(be_mkdir(be, "basic/tree", NULL, &e_));
		UT_OK(be_mkdir(be, "basic/tree/deep", NULL, &e_));
		ut_put_str(be, "basic/tree/a.txt", "a", &t1);
		ut_put_str(be, "basic/tree/deep/b.txt", "b", &t2);
		stat_id(be, "basic/tree", tid);
		assert_true(be_caps(be) & BE_CAP_RMDIR_TREE);
		upd0 = emuh_must_requests(emu, "drive.files.update", 0);
		del0 = emuh_must_requests(emu, "drive.files.delete", 0);
		UT_OK(be_rmdir_tree(be, "basic/tree", &e_));
		assert_int_equal(emuh_must_requests(emu, "drive.files.update", 0) - upd0, 1);
		assert_int_equal(emuh_must_requests(emu, "drive.files.delete", 0) - del0, 0);
		j = api_get(tid);
		assert_non_null(j);
		assert_true(json_is_true(json_object_get(j, "trashed")));
		json_decref(j);
		assert_int_equal(be_stat(be, "basic/tree", &cur, &e), -1);
		assert_int_equal(e.code, ERR_NOTFOUND);
		assert_int_equal(be_stat(be, "basic/tree/deep/b.txt", &cur, &e), -1);
		assert_int_equal(e.code, ERR_NOTFOUND);
		/* a replay finds it gone; the root is refused */
		assert_int_equal(be_rmdir_tree(be, "basic/tree", &e), -1);
		assert_int_equal(e.code, ERR_NOTFOUND);
		assert_int_equal(be_rmdir_tree(be, "", &e), -1);
		assert_int_equal(e.code, ERR_INVAL);
		be_entry_release(&t1);
		be_entry_release(&t2);
	}
	be_entry_release(&f1);
	be_entry_release(&f2);
}

static void test_upload_resumable(void **state)
{
	struct be_upload up;
	struct be_entry ent, ent2;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m, m2;
	size_t n = 5 * CHUNK / 2 + 7;
	int fd = ut_pattern_file(n, 1, &m), fd2 = ut_pattern_file(n + 100, 2, &m2);
	int64_t started = emuh_must_counter(emu, "drive.upload_sessions_started");

	(void)state;
	UT_OK(be_mkdir(be, "res", NULL, &e_));
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "res/big.bin", fd, &m, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	assert_true(up.done);
	assert_int_equal(ent.size, n);
	assert_memory_equal(ent.md5, m.md5, 16);
	assert_int_equal(emuh_must_counter(emu, "drive.upload_sessions_started") - started, 1);
	ut_check_remote_fd(be, "res/big.bin", &ent.ver, fd, n);
	/* Replace through a session (PATCH). */
	pre = ut_pre_match(&ent.ver);
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "res/big.bin", fd2, &m2, &pre, 1, 0, &up, NULL, NULL, &ent2, &e_));
	assert_string_equal(ent2.ver.id, ent.ver.id);
	ut_check_remote_fd(be, "res/big.bin", &ent2.ver, fd2, n + 100);
	/* A ranged read across chunk boundaries. */
	{
		struct ut_buf got = { 0 };
		char *want = malloc(1000);
		uint64_t g;

		assert_int_equal(pread(fd2, want, 1000, CHUNK - 500), 1000);
		UT_OK(be_read(be, "res/big.bin", &ent2.ver, CHUNK - 500, 1000, ut_buf_sink, &got, &g,
			   &e_));
		assert_int_equal(got.n, 1000);
		assert_memory_equal(got.p, want, 1000);
		free(got.p);
		free(want);
	}
	be_entry_release(&ent);
	be_entry_release(&ent2);
	close(fd);
	close(fd2);
}

/* --- everything under faults ------------------------------------------- */

static void test_everything_under_faults(void **state)
{
	struct be_entry ent, f;
	struct be_list l = { 0 };
	struct be_pre pre;
	struct be_upload up;
	struct be_meta m;
	struct be_attr a;
	char path[64];
	size_t n = 3 * CHUNK + 11;
	int fd = ut_pattern_file(n, 3, &m), i;
	struct drive_pace_stats ps;

	(void)state;
	UT_OK(be_mkdir(be, "flt", NULL, &e_));
	/* 20% 503 then 12.5% 429 of the rest: 30% of every request. */
	emuh_must_post(emu, "/_emulator/faults", "{\"seed\":7,\"rules\":[{\"kind\":\"status\",\"status\":503,"
	    "\"fraction\":0.2},{\"kind\":\"status\",\"status\":429,\"fraction\":0.125}]}");
	UT_OK(be_mkdir(be, "flt/d", NULL, &e_));
	for (i = 0; i < 8; i++) {
		snprintf(path, sizeof(path), "flt/d/f%d", i);
		ut_put_str(be, path, path, &ent);
		be_entry_release(&ent);
	}
	pre = ut_pre_absent();
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_file(be, "flt/big", fd, &m, &pre, 1, 0, &up, NULL, NULL, &f, &e_));
	ut_check_remote_fd(be, "flt/big", &f.ver, fd, n);
	UT_OK(be_list(be, "flt/d", &l, &e_));
	assert_int_equal(l.n, 8);
	be_list_release(&l);
	UT_OK(be_stat(be, "flt/d/f3", &ent, &e_));
	check_content(be, "flt/d/f3", "flt/d/f3");
	pre = ut_pre_absent();
	UT_OK(be_rename(be, "flt/d/f3", &ent.ver, "flt/d/g3", &pre, NULL, &e_));
	be_entry_release(&ent);
	UT_OK(be_stat(be, "flt/d/g3", &ent, &e_));
	memset(&a, 0, sizeof(a));
	a.set = BE_ATTR_MTIME;
	a.mtime.tv_sec = 1600000000;
	UT_OK(be_setattr(be, "flt/d/g3", &ent.ver, &a, NULL, &e_));
	be_entry_release(&ent);
	UT_OK(be_rename_dir(be, "flt/d", "flt/e", NULL, NULL, &e_));
	UT_OK(be_stat(be, "flt/e/g3", &ent, &e_));
	assert_int_equal(ent.mtime.tv_sec, 1600000000);
	UT_OK(be_remove(be, "flt/e/g3", &ent.ver, NULL, &e_));
	be_entry_release(&ent);
	pre = ut_pre_absent();
	UT_OK(be_symlink(be, "flt/e/ln", "f1", NULL, &pre, NULL, &e_));
	UT_OK(be_mkdir(be, "flt/empty", NULL, &e_));
	UT_OK(be_rmdir(be, "flt/empty", &e_));
	UT_OK(be_purge(be, "flt", NULL, NULL, &e_));
	emuh_must_faults(emu, "[]");
	UT_OK(be_list(be, "flt/e", &l, &e_));
	assert_int_equal(l.n, 8);  /* f0..f7 less f3, plus ln */
	be_list_release(&l);
	drive_pace_stats(be, &ps);
	print_message("    pacing: %" PRIu64 " rate hits, %" PRIu64 " writes waited %" PRIu64
		      " ms\n", ps.rate_hits, ps.paced_writes, ps.paced_ms);
	be_entry_release(&f);
	close(fd);
}

/* --- resumable uploads: cut, resumed, restored -------------------------------- */

static void test_upload_cut_resumes(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	size_t n = 4 * 1024 * 1024 + 99;
	int fd = ut_pattern_file(n, 4, &m);
	int64_t recv0 = emuh_must_counter(emu, "drive.upload_bytes_received");
	int64_t res0 = emuh_must_counter(emu, "drive.upload_sessions_resumed");
	int64_t recv, resent;
	struct be *b1;
	struct drive_opts o;
	struct err e;

	(void)state;
	UT_OK(be_mkdir(be, "cut", NULL, &e_));
	memset(&o, 0, sizeof(o));
	o.source = "drive:";
	o.endpoint = emuh_url(emu);
	o.http = http;
	o.chunk_size = 1024 * 1024;
	o.retry_base_ms = 2;
	if (drive_new(&o, &b1, &e) < 0)
		fail_msg("drive_new: %s", e.msg);
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(b1, "cut/file.bin", &m, &pre, &up, &e_));
	emuh_must_faults(emu, "[{\"kind\":\"cut\",\"method\":\"PUT\",\"path\":\"/upload/*\","
	       "\"query\":\"upload_id\",\"after_bytes\":600000,\"count\":1}]");
	assert_int_equal(be_upload_chunk(b1, &up, fd, &ent, NULL), 0);
	assert_int_equal(up.persisted, 524288);
	UT_OK(be_upload_file(b1, "cut/file.bin", fd, &m, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	recv = emuh_must_counter(emu, "drive.upload_bytes_received") - recv0;
	resent = recv - (int64_t)n;
	print_message("    %zu bytes uploaded, %" PRId64 " received, %" PRId64 " sent twice\n",
		      n, recv, resent);
	assert_in_range(resent, 0, 600000 - 524288 + 2048);
	assert_true(emuh_must_counter(emu, "drive.upload_sessions_resumed") - res0 >= 1);
	ut_check_remote_fd(b1, "cut/file.bin", &ent.ver, fd, n);
	be_entry_release(&ent);
	be_free(b1);
	close(fd);
}

struct saved {
	struct be_upload last;
	int calls, stop_after;
};

static int save_state(void *ud, const struct be_upload *up)
{
	struct saved *s = ud;

	s->last = *up;
	return ++s->calls >= s->stop_after;
}

static void test_resume_saved_state(void **state)
{
	struct be_upload up;
	struct be_entry ent;
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	struct saved sv;
	struct err e;
	size_t n = 6 * CHUNK + 3;
	int fd = ut_pattern_file(n, 5, &m);
	int64_t recv0, start0;
	struct be *b2;

	(void)state;
	UT_OK(be_mkdir(be, "resume", NULL, &e_));
	memset(&sv, 0, sizeof(sv));
	sv.stop_after = 3;  /* session started, 2 chunks persisted, then "crash" */
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_file(be, "resume/a.bin", fd, &m, &pre, 1, 0, &up, save_state,
					&sv, &ent, &e), -1);
	assert_int_equal(e.code, ERR_CANCELED);
	assert_int_equal(sv.last.persisted, 2 * CHUNK);
	recv0 = emuh_must_counter(emu, "drive.upload_bytes_received");
	start0 = emuh_must_counter(emu, "drive.upload_sessions_started");
	/* Another instance (another process) picks the saved state up. */
	b2 = new_drive("drive:", 0, 0, 0);
	up = sv.last;
	up.chunk_size = 0;
	UT_OK(be_upload_file(b2, "resume/a.bin", fd, &m, &pre, 1, 0, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(emuh_must_counter(emu, "drive.upload_bytes_received") - recv0, (int64_t)(n - 2 * CHUNK));
	assert_int_equal(emuh_must_counter(emu, "drive.upload_sessions_started") - start0, 0);
	ut_check_remote_fd(b2, "resume/a.bin", &ent.ver, fd, n);
	be_entry_release(&ent);
	/* An expired session restarts from zero, once. */
	memset(&sv, 0, sizeof(sv));
	sv.stop_after = 2;
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_file(b2, "resume/b.bin", fd, &m, &pre, 1, 0, &up, save_state,
					&sv, &ent, &e), -1);
	emuh_must_post(emu, "/_emulator/drive/expire_sessions", NULL);
	up = sv.last;
	start0 = emuh_must_counter(emu, "drive.upload_sessions_started");
	UT_OK(be_upload_file(b2, "resume/b.bin", fd, &m, &pre, 1, 2, &up, NULL, NULL, &ent, &e_));
	assert_int_equal(emuh_must_counter(emu, "drive.upload_sessions_started") - start0, 1);
	ut_check_remote_fd(b2, "resume/b.bin", &ent.ver, fd, n);
	be_entry_release(&ent);
	be_free(b2);
	close(fd);
}

/* --- listings -------------------------------------------------------------- */

static void test_list_20000(void **state)
{
	struct be_list l = { 0 };
	struct be_entry st;
	struct be *b;
	struct timespec t0, t1;
	char body[256], name[32], folder[BE_ID_MAX];
	int64_t pages0, pages;
	size_t i;

	(void)state;
	UT_OK(be_mkdir(be, "huge", NULL, &e_));
	stat_id(be, "huge", folder);
	snprintf(body, sizeof(body), "{\"parent\":\"%s\",\"count\":20000,\"prefix\":\"file-\","
		 "\"width\":6,\"content\":\"x\"}", folder);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	emuh_must_post(emu, "/_emulator/drive/bulk", body);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("    created 20000 files in %.2f s\n",
		      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":100}]");
	b = new_drive("drive:", 0, 0, 600000);  /* listings stay fresh: see the end */
	UT_OK(be_stat(b, "huge", &st, &e_));
	be_entry_release(&st);
	pages0 = emuh_must_requests(emu, "drive.files.list", 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	UT_OK(be_list(b, "huge", &l, &e_));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pages = emuh_must_requests(emu, "drive.files.list", 0) - pages0;
	print_message("    listed %zu entries in %" PRId64 " pages, %.2f s\n", l.n, pages,
		      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	assert_int_equal(l.n, 20000);
	assert_true(pages >= 200);
	for (i = 0; i < l.n; i++) {
		snprintf(name, sizeof(name), "file-%06zu", i);
		assert_string_equal(l.v[i].name, name);
		assert_int_equal(l.v[i].type, BE_FILE);
		assert_int_equal(l.v[i].size, 1);
	}
	be_list_release(&l);
	/* Lookups come from the cached listing: no new list request. */
	pages0 = emuh_must_requests(emu, "drive.files.list", 0);
	check_content(b, "huge/file-019999", "x");
	assert_int_equal(emuh_must_requests(emu, "drive.files.list", 0) - pages0, 0);
	be_free(b);
}

/* A listing whose 7th page fails after retries is an error, not 600 names. */
static void test_list_page_fails(void **state)
{
	struct be_list l = { 0 };
	char body[256], folder[BE_ID_MAX], path[1024], rules[1024], *reply = NULL;
	char *q = NULL, *qenc = NULL, *tok_enc = NULL, *fenc = NULL;
	const char *tok = NULL;
	json_t *j = NULL;
	struct err e;
	int page;

	(void)state;
	UT_OK(be_mkdir(be, "p7", NULL, &e_));
	stat_id(be, "p7", folder);
	snprintf(body, sizeof(body), "{\"parent\":\"%s\",\"count\":650,\"prefix\":\"f\"}", folder);
	emuh_must_post(emu, "/_emulator/drive/bulk", body);
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":100}]");
	/* Walk to the 7th page's token the way the backend asks. */
	assert_int_equal(asprintf(&q, "'%s' in parents and trashed = false", folder) > 0, 1);
	qenc = enc_url(q);
	fenc = enc_url("nextPageToken,incompleteSearch,files(id)");
	for (page = 1; page <= 6; page++) {
		snprintf(path, sizeof(path), "/drive/v3/files?q=%s&pageSize=1000&fields=%s%s%s",
			 qenc, fenc, tok_enc ? "&pageToken=" : "", tok_enc ? tok_enc : "");
		free(tok_enc);
		tok_enc = NULL;
		UT_OK(emuh_call(emu, "GET", path, NULL, &reply, &e_));
		assert_int_equal(jsonh_parse_object(reply, strlen(reply), "page", &j, &e), 0);
		assert_int_equal(jsonh_get_str(j, "nextPageToken", &tok, &e), 0);
		tok_enc = enc_url(tok);
		json_decref(j);
		free(reply);
	}
	snprintf(rules, sizeof(rules), "[{\"kind\":\"page_cap\",\"max\":100},"
		 "{\"kind\":\"status\",\"status\":503,\"method\":\"GET\",\"query\":\"pageToken=%s\"}]",
		 tok_enc);
	emuh_must_faults(emu, rules);
	assert_int_equal(be_list(be, "p7", &l, &e), -1);
	assert_int_equal(l.n, 0);
	assert_null(l.v);
	assert_non_null(strstr(e.msg, "page 7"));
	assert_int_equal(e.http_status, 503);
	print_message("    error: %.200s\n", e.msg);
	emuh_must_faults(emu, "[{\"kind\":\"page_cap\",\"max\":100}]");
	UT_OK(be_list(be, "p7", &l, &e_));
	assert_int_equal(l.n, 650);
	be_list_release(&l);
	free(q);
	free(qenc);
	free(fenc);
	free(tok_enc);
}

/* --- names ------------------------------------------------------------------ */

static void test_names_roundtrip(void **state)
{
	struct be_list l = { 0 };
	struct be_entry ent, cur;
	struct be_pre pre;
	char folder[BE_ID_MAX], body[2048], *sfx2 = NULL, *sfx3 = NULL;
	const char *dup_old, *dup_mid, *dup_new;
	json_t *files, *j;
	struct err e;
	size_t i;

	(void)state;
	UT_OK(be_mkdir(be, "names", NULL, &e_));
	stat_id(be, "names", folder);
	snprintf(body, sizeof(body), "{\"files\":["
		 "{\"name\":\"dup.txt\",\"parent\":\"%s\",\"content\":\"new\",\"createdTime\":\"2022-01-01T00:00:00Z\"},"
		 "{\"name\":\"dup.txt\",\"parent\":\"%s\",\"content\":\"old\",\"createdTime\":\"2020-01-01T00:00:00Z\"},"
		 "{\"name\":\"dup.txt\",\"parent\":\"%s\",\"content\":\"mid\",\"createdTime\":\"2021-01-01T00:00:00Z\"},"
		 "{\"name\":\"a/b\",\"parent\":\"%s\",\"content\":\"slash\"},"
		 "{\"name\":\".\",\"parent\":\"%s\",\"content\":\"dot\"},"
		 "{\"name\":\"..\",\"parent\":\"%s\",\"content\":\"dotdot\"},"
		 "{\"name\":\"x" FS "y\",\"parent\":\"%s\",\"content\":\"literal\"}]}",
		 folder, folder, folder, folder, folder, folder, folder);
	files = mkfiles(body);
	dup_new = file_id(files, 0);
	dup_old = file_id(files, 1);
	dup_mid = file_id(files, 2);
	sfx2 = drive_name_suffixed("dup.txt", dup_mid, 0, 6);
	sfx3 = drive_name_suffixed("dup.txt", dup_new, 0, 6);
	UT_OK(be_list(be, "names", &l, &e_));
	assert_int_equal(l.n, 7);
	for (i = 0; i < l.n; i++)
		print_message("    %s\n", l.v[i].name);
	assert_non_null(be_list_find(&l, "a" FS "b"));
	assert_non_null(be_list_find(&l, FD));
	assert_non_null(be_list_find(&l, FD FD));
	assert_non_null(be_list_find(&l, "x" Q FS "y"));
	assert_string_equal(be_list_find(&l, "dup.txt")->ver.id, dup_old);
	assert_string_equal(be_list_find(&l, sfx2)->ver.id, dup_mid);
	assert_string_equal(be_list_find(&l, sfx3)->ver.id, dup_new);
	be_list_release(&l);
	/* Each shown name reads its own file. */
	check_content(be, "names/dup.txt", "old");
	check_content(be, "names/a" FS "b", "slash");
	check_content(be, "names/" FD, "dot");
	check_content(be, "names/" FD FD, "dotdot");
	check_content(be, "names/x" Q FS "y", "literal");
	{
		char p[300];

		snprintf(p, sizeof(p), "names/%s", sfx2);
		check_content(be, p, "mid");
		/* Writing the suffixed name replaces that file only. */
		UT_OK(be_stat(be, p, &ent, &e_));
		pre = ut_pre_match(&ent.ver);
		be_entry_release(&ent);
		UT_OK(put_str(be, p, "mid v2", &pre, &ent, &e_));
		assert_string_equal(ent.ver.id, dup_mid);
		be_entry_release(&ent);
		check_content(be, p, "mid v2");
		check_content(be, "names/dup.txt", "old");
		/* Renamed to a unique name: the others keep theirs. */
		UT_OK(be_stat(be, p, &ent, &e_));
		pre = ut_pre_absent();
		UT_OK(be_rename(be, p, &ent.ver, "names/mid.txt", &pre, NULL, &e_));
		be_entry_release(&ent);
		check_content(be, "names/mid.txt", "mid v2");
		snprintf(p, sizeof(p), "names/%s", sfx3);
		check_content(be, p, "new");
	}
	/* New files with mapped names land under their Drive names. */
	ut_put_str(be, "names/c" FS "d", "created", &ent);
	j = api_get(ent.ver.id);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "c/d");
	json_decref(j);
	be_entry_release(&ent);
	ut_put_str(be, "names/q" Q FS, "lit", &ent);
	j = api_get(ent.ver.id);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "q" FS);
	json_decref(j);
	be_entry_release(&ent);
	check_content(be, "names/c" FS "d", "created");
	/* "." renamed to a plain name. */
	UT_OK(be_stat(be, "names/" FD, &ent, &e_));
	pre = ut_pre_absent();
	UT_OK(be_rename(be, "names/" FD, &ent.ver, "names/dot.txt", &pre, NULL, &e_));
	be_entry_release(&ent);
	check_content(be, "names/dot.txt", "dot");
	/* Duplicates of a name too long for any suffix: the oldest shows, the
	 * other is skipped (counted), the listing still works. */
	{
		char longname[256], spec[1024];

		memset(longname, 'L', 250);
		longname[250] = '\0';
		snprintf(spec, sizeof(spec), "{\"files\":["
			 "{\"name\":\"%s\",\"parent\":\"%s\",\"content\":\"1\",\"createdTime\":\"2020-01-01T00:00:00Z\"},"
			 "{\"name\":\"%s\",\"parent\":\"%s\",\"content\":\"2\",\"createdTime\":\"2021-01-01T00:00:00Z\"}]}",
			 longname, folder, longname, folder);
		json_decref(mkfiles(spec));
		UT_OK(be_list(be, "names", &l, &e_));
		assert_int_equal(l.skipped_invalid, 1);
		assert_non_null(be_list_find(&l, longname));
		be_list_release(&l);
		snprintf(spec, sizeof(spec), "names/%s", longname);
		check_content(be, spec, "1");
	}
	/* A name no Drive name maps to is refused. */
	pre = ut_pre_absent();
	assert_int_equal(put_str(be, "names/bad" Q "x", "no", &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(be_mkdir(be, "names/" Q, NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	json_decref(files);
	free(sfx2);
	free(sfx3);
}

/* --- Docs and shortcuts ----------------------------------------------------- */

static void test_docs_export(void **state)
{
	struct be_list l = { 0 };
	const struct be_entry *d;
	struct be_entry ent;
	struct be_pre pre;
	struct ut_buf got = { 0 };
	char folder[BE_ID_MAX], body[1024], *all;
	uint64_t g;
	struct be *hide;
	struct err e;
	json_t *files;

	(void)state;
	UT_OK(be_mkdir(be, "docs", NULL, &e_));
	stat_id(be, "docs", folder);
	snprintf(body, sizeof(body), "{\"files\":["
		 "{\"name\":\"Plan\",\"parent\":\"%s\",\"mimeType\":\"application/vnd.google-apps.document\",\"content\":\"the plan\"},"
		 "{\"name\":\"Budget\",\"parent\":\"%s\",\"mimeType\":\"application/vnd.google-apps.spreadsheet\",\"exportSize\":5000},"
		 "{\"name\":\"Sketch\",\"parent\":\"%s\",\"mimeType\":\"application/vnd.google-apps.drawing\"},"
		 "{\"name\":\"Form\",\"parent\":\"%s\",\"mimeType\":\"application/vnd.google-apps.form\"},"
		 "{\"name\":\"notes.txt\",\"parent\":\"%s\",\"content\":\"plain\"}]}",
		 folder, folder, folder, folder, folder);
	files = mkfiles(body);
	json_decref(files);
	UT_OK(be_list(be, "docs", &l, &e_));
	assert_int_equal(l.n, 4);  /* a Form has no export: not shown */
	d = be_list_find(&l, "Plan.docx");
	assert_non_null(d);
	assert_int_equal(d->type, BE_FILE);
	assert_int_equal(d->flags, BE_EF_READONLY | BE_EF_SIZE_UNKNOWN);
	assert_int_equal(d->size, 0);
	assert_non_null(be_list_find(&l, "Budget.xlsx"));
	assert_non_null(be_list_find(&l, "Sketch.pdf"));
	assert_int_equal(be_list_find(&l, "notes.txt")->flags, 0);
	be_list_release(&l);
	all = read_all(be, "docs/Plan.docx", NULL);
	assert_non_null(strstr(all, "the plan"));
	/* A slice of the export. */
	UT_OK(be_read(be, "docs/Plan.docx", NULL, 3, 10, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 10);
	assert_memory_equal(got.p, all + 3, 10);
	free(got.p);
	got.p = NULL;
	got.n = got.cap = 0;
	UT_OK(be_read(be, "docs/Budget.xlsx", NULL, 0, UINT64_MAX, ut_buf_sink, &got, &g, &e_));
	assert_int_equal(got.n, 5000);
	free(got.p);
	/* Once exported, the size shows. */
	UT_OK(be_list(be, "docs", &l, &e_));
	assert_int_equal(be_list_find(&l, "Plan.docx")->size, strlen(all));
	assert_int_equal(be_list_find(&l, "Budget.xlsx")->size, 5000);
	be_list_release(&l);
	/* Read-only. */
	UT_OK(be_stat(be, "docs/Plan.docx", &ent, &e_));
	pre = ut_pre_match(&ent.ver);
	assert_int_equal(put_str(be, "docs/Plan.docx", "overwrite", &pre, NULL, &e), -1);
	assert_int_equal(e.code, ERR_PERM);
	be_entry_release(&ent);
	free(all);
	/* -o docs=hide */
	hide = new_drive("drive:docs", DRIVE_DOCS_HIDE, 0, 0);
	UT_OK(be_list(hide, "", &l, &e_));
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].name, "notes.txt");
	be_list_release(&l);
	be_free(hide);
}

static void test_shortcuts(void **state)
{
	struct be_list l = { 0 };
	const struct be_entry *x;
	struct be_entry ent;
	char folder[BE_ID_MAX], body[2048], path[256];
	json_t *files, *t, *j;
	const char *tfile, *tdir, *gone;
	struct err e;

	(void)state;
	UT_OK(be_mkdir(be, "sc", NULL, &e_));
	UT_OK(be_mkdir(be, "sctargets", NULL, &e_));
	stat_id(be, "sctargets", folder);
	snprintf(body, sizeof(body), "{\"files\":["
		 "{\"name\":\"target.txt\",\"parent\":\"%s\",\"content\":\"target content\"},"
		 "{\"name\":\"tdir\",\"parent\":\"%s\",\"mimeType\":\"" DRIVE_MIME_FOLDER "\"},"
		 "{\"name\":\"inside\",\"parent_index\":1,\"content\":\"in\"},"
		 "{\"name\":\"doomed\",\"parent\":\"%s\",\"content\":\"bye\"}]}",
		 folder, folder, folder);
	t = mkfiles(body);
	tfile = file_id(t, 0);
	tdir = file_id(t, 1);
	gone = file_id(t, 3);
	stat_id(be, "sc", folder);
	snprintf(body, sizeof(body), "{\"files\":["
		 "{\"name\":\"to-file\",\"parent\":\"%s\",\"target\":\"%s\"},"
		 "{\"name\":\"to-dir\",\"parent\":\"%s\",\"target\":\"%s\"},"
		 "{\"name\":\"dangling\",\"parent\":\"%s\",\"target\":\"%s\"}]}",
		 folder, tfile, folder, tdir, folder, gone);
	files = mkfiles(body);
	snprintf(path, sizeof(path), "/drive/v3/files/%s", gone);
	UT_OK(emuh_call(emu, "DELETE", path, NULL, NULL, &e_));
	UT_OK(be_list(be, "sc", &l, &e_));
	assert_int_equal(l.n, 2);  /* the dangling one is hidden */
	x = be_list_find(&l, "to-file");
	assert_non_null(x);
	assert_int_equal(x->type, BE_FILE);
	assert_int_equal(x->size, strlen("target content"));
	assert_string_equal(x->ver.id, tfile);
	x = be_list_find(&l, "to-dir");
	assert_non_null(x);
	assert_int_equal(x->type, BE_DIR);
	be_list_release(&l);
	check_content(be, "sc/to-file", "target content");
	UT_OK(be_list(be, "sc/to-dir", &l, &e_));
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].name, "inside");
	be_list_release(&l);
	check_content(be, "sc/to-dir/inside", "in");
	/* Removing the shortcut trashes the shortcut, never its target. */
	UT_OK(be_stat(be, "sc/to-file", &ent, &e_));
	UT_OK(be_remove(be, "sc/to-file", &ent.ver, NULL, &e_));
	be_entry_release(&ent);
	j = api_get(tfile);
	assert_false(json_is_true(json_object_get(j, "trashed")));
	json_decref(j);
	j = api_get(file_id(files, 0));
	assert_true(json_is_true(json_object_get(j, "trashed")));
	json_decref(j);
	assert_int_equal(be_stat(be, "sc/to-file", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	json_decref(files);
	json_decref(t);
}

/* --- conflicts ------------------------------------------------------------------ */

static void test_conflicts(void **state)
{
	struct be_entry v1, v2, v3, cur;
	struct be_pre pre;
	struct be_upload up;
	struct be_meta m;
	struct be_attr a;
	struct be *other = new_drive("drive:", 0, 0, -1);
	size_t n = 3 * CHUNK;
	int fd = ut_pattern_file(n, 8, &m), r;
	struct err e;

	(void)state;
	UT_OK(be_mkdir(be, "conf", NULL, &e_));
	ut_put_str(be, "conf/f", "one", &v1);
	/* Someone else replaces it. */
	pre = ut_pre_match(&v1.ver);
	UT_OK(put_str(other, "conf/f", "two", &pre, &v2, &e_));
	/* Our writes guarded by the old version all conflict, reporting v2. */
	assert_int_equal(put_str(be, "conf/f", "mine", &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_true(be_version_equal(&cur.ver, &v2.ver));
	be_entry_release(&cur);
	assert_int_equal(be_remove(be, "conf/f", &v1.ver, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_true(be_version_equal(&cur.ver, &v2.ver));
	be_entry_release(&cur);
	pre = ut_pre_absent();
	assert_int_equal(be_rename(be, "conf/f", &v1.ver, "conf/g", &pre, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	be_entry_release(&cur);
	memset(&a, 0, sizeof(a));
	a.set = BE_ATTR_MTIME;
	a.mtime.tv_sec = 42;
	assert_int_equal(be_setattr(be, "conf/f", &v1.ver, &a, &cur, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	be_entry_release(&cur);
	pre = ut_pre_match(&v1.ver);
	memset(&up, 0, sizeof(up));
	assert_int_equal(be_upload_begin(be, "conf/f", &m, &pre, &up, &e), -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	check_content(be, "conf/f", "two");
	/* A change while a session runs: the last chunk is refused. */
	pre = ut_pre_match(&v2.ver);
	memset(&up, 0, sizeof(up));
	UT_OK(be_upload_begin(be, "conf/f", &m, &pre, &up, &e_));
	assert_int_equal(be_upload_chunk(be, &up, fd, &cur, &e), 0);
	pre = ut_pre_match(&v2.ver);
	UT_OK(put_str(other, "conf/f", "three", &pre, &v3, &e_));
	do {
		r = be_upload_chunk(be, &up, fd, &cur, &e);
		if (r == 0)
			be_entry_release(&cur);
	} while (r == 0);
	assert_int_equal(r, -1);
	assert_int_equal(e.code, ERR_CONFLICT);
	assert_true(be_version_equal(&cur.ver, &v3.ver));
	be_entry_release(&cur);
	check_content(be, "conf/f", "three");
	be_entry_release(&v1);
	be_entry_release(&v2);
	be_entry_release(&v3);
	be_free(other);
	close(fd);
}

/* --- rate limits and quota ---------------------------------------------------- */

struct writer {
	struct be *b;
	int id, n, failed;
	char msg[256];
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct be_pre pre = ut_pre_absent();
	struct be_entry ent;
	char path[64];
	struct err e;
	int i;

	for (i = 0; i < w->n; i++) {
		snprintf(path, sizeof(path), "rate/w%d-%d", w->id, i);
		if (put_str(w->b, path, path, &pre, &ent, &e) < 0) {
			w->failed++;
			snprintf(w->msg, sizeof(w->msg), "%s", e.msg);
			continue;
		}
		be_entry_release(&ent);
	}
	return NULL;
}

static void test_rate_pacing(void **state)
{
	struct writer w[8];
	pthread_t th[8];
	struct drive_pace_stats ps;
	struct be_list l = { 0 };
	struct be *b = new_drive("drive:", 0, 0, 0);
	int64_t limited0, limited, writes0, writes;
	struct timespec t0, t1;
	double secs;
	int i;

	(void)state;
	UT_OK(be_mkdir(b, "rate", NULL, &e_));
	limited0 = emuh_must_requests(emu, "drive.files.create.multipart", 403);
	writes0 = emuh_must_requests(emu, "drive.files.create.multipart", 200);
	emuh_must_post(emu, "/_emulator/drive/rate", "{\"writes_per_second\":40}");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 8; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].b = b;
		w[i].id = i;
		w[i].n = 15;
		assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	emuh_must_post(emu, "/_emulator/drive/rate", "{\"writes_per_second\":0}");
	secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	for (i = 0; i < 8; i++)
		if (w[i].failed)
			fail_msg("writer %d: %d failed: %s", i, w[i].failed, w[i].msg);
	drive_pace_stats(b, &ps);
	limited = emuh_must_requests(emu, "drive.files.create.multipart", 403) - limited0;
	writes = emuh_must_requests(emu, "drive.files.create.multipart", 200) - writes0;
	print_message("    120 creates in %.2f s: %" PRId64 " refused with 403, %" PRIu64
		      " rate hits, %" PRIu64 " writes paced (%" PRIu64 " ms), interval %ld ms\n",
		      secs, limited, ps.rate_hits, ps.paced_writes, ps.paced_ms, ps.interval_ms);
	assert_int_equal(writes, 120);
	assert_true(ps.rate_hits > 0);
	assert_true(ps.paced_writes > 0);
	/* Paced, the backend does not hammer: far fewer refusals than writes
	 * beyond the budget would cause unpaced (each write retried at once). */
	assert_true(limited < 120);
	UT_OK(be_list(b, "rate", &l, &e_));
	assert_int_equal(l.n, 120);
	be_list_release(&l);
	be_free(b);
}

static void test_storage_quota(void **state)
{
	struct be_pre pre = ut_pre_absent();
	struct be_upload up;
	struct be_meta m;
	int fd = ut_pattern_file(3 * CHUNK, 9, &m);
	int64_t before, after;
	struct err e;

	(void)state;
	UT_OK(be_mkdir(be, "quota", NULL, &e_));
	emuh_must_post(emu, "/_emulator/drive/storage_quota_exceeded", "{\"on\":true}");
	before = emuh_must_requests(emu, "drive.files.create.multipart", 0);
	assert_int_equal(put_str(be, "quota/f", "data", &pre, NULL, &e), -1);
	after = emuh_must_requests(emu, "drive.files.create.multipart", 0);
	assert_int_equal(e.code, ERR_NOSPC);
	assert_string_equal(e.reason, "storageQuotaExceeded");
	assert_int_equal(err_to_errno(&e), -ENOSPC);
	assert_int_equal(after - before, 1);  /* never retried */
	memset(&up, 0, sizeof(up));
	before = emuh_must_requests(emu, "drive.files.create.resumable", 0);
	assert_int_equal(be_upload_file(be, "quota/big", fd, &m, &pre, 1, 0, &up, NULL, NULL, NULL,
					&e), -1);
	assert_int_equal(e.code, ERR_NOSPC);
	assert_int_equal(emuh_must_requests(emu, "drive.files.create.resumable", 0) - before, 1);
	emuh_must_post(emu, "/_emulator/drive/storage_quota_exceeded", "{\"on\":false}");
	UT_OK(put_str(be, "quota/f", "data", &pre, NULL, &e_));
	/* A file downloaded too often: its own error, Google's reason kept. */
	emuh_must_faults(emu, "[{\"kind\":\"status\",\"status\":403,\"reason\":\"downloadQuotaExceeded\","
	       "\"query\":\"alt=media\"}]");
	before = emuh_must_requests(emu, "drive.fault", 0);
	{
		struct ut_buf got = { 0 };
		uint64_t g;

		assert_int_equal(be_read(be, "quota/f", NULL, 0, 10, ut_buf_sink, &got, &g, &e), -1);
		free(got.p);
	}
	assert_int_equal(e.code, ERR_QUOTA);
	assert_string_equal(e.reason, "downloadQuotaExceeded");
	assert_int_equal(err_to_errno(&e), -EDQUOT);
	assert_int_equal(emuh_must_requests(emu, "drive.fault", 0) - before, 1);  /* not retried */
	close(fd);
}

/* Shared drives by name and by id. */
static void test_shared_drives(void **state)
{
	struct be_list l = { 0 };
	struct be_entry ent;
	struct be *b;
	char *reply = NULL, src[BE_ID_MAX + 32], rid[BE_ID_MAX];
	json_t *j;
	struct err e;

	(void)state;
	UT_OK(emuh_call(emu, "POST", "/_emulator/drive/shared_drives", "{\"name\":\"Team A/B\"}",
		     &reply, &e_));
	j = json_loads(reply, 0, NULL);
	free(reply);
	assert_non_null(j);
	snprintf(src, sizeof(src), "drive:shared_id=%s",
		 json_string_value(json_object_get(j, "id")));
	b = new_drive("drive:shared=Team A" FS "B", 0, 0, 0);
	UT_OK(be_check(b, &e_));
	drive_root_id(b, rid, sizeof(rid));
	assert_string_equal(rid, json_string_value(json_object_get(j, "id")));
	UT_OK(be_mkdir(b, "proj", NULL, &e_));
	ut_put_str(b, "proj/f.txt", "shared bytes", &ent);
	be_entry_release(&ent);
	be_free(b);
	b = new_drive(src, 0, 0, 0);
	UT_OK(be_list(b, "proj", &l, &e_));
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].name, "f.txt");
	be_list_release(&l);
	check_content(b, "proj/f.txt", "shared bytes");
	UT_OK(be_stat(b, "proj/f.txt", &ent, &e_));
	UT_OK(be_remove(b, "proj/f.txt", &ent.ver, NULL, &e_));
	be_entry_release(&ent);
	UT_OK(be_purge(b, "", NULL, NULL, &e_));
	be_free(b);
	/* The shared drive's files are not in My Drive. */
	assert_int_equal(be_stat(be, "proj", &ent, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	/* Unknown, and ambiguous, names. */
	b = new_drive("drive:shared=Nobody", 0, 0, 0);
	assert_int_equal(be_check(b, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	be_free(b);
	emuh_must_post(emu, "/_emulator/drive/shared_drives", "{\"name\":\"Twin\"}");
	emuh_must_post(emu, "/_emulator/drive/shared_drives", "{\"name\":\"Twin\"}");
	b = new_drive("drive:shared=Twin", 0, 0, 0);
	assert_int_equal(be_check(b, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_non_null(strstr(e.msg, "shared_id"));
	be_free(b);
	json_decref(j);
}

/* --- purge and batch deletes --------------------------------------------------- */

static int count_trash(void *ud, const struct drive_file *f)
{
	(void)f;
	(*(size_t *)ud)++;
	return 0;
}

static void test_purge(void **state)
{
	struct be_entry a, b, c, x;
	size_t before = 0, after = 0;
	json_t *j;

	(void)state;
	UT_OK(be_mkdir(be, "pg", NULL, &e_));
	UT_OK(be_mkdir(be, "pg/sub", NULL, &e_));
	UT_OK(be_mkdir(be, "pgother", NULL, &e_));
	ut_put_str(be, "pg/a", "a", &a);
	ut_put_str(be, "pg/b", "b", &b);
	ut_put_str(be, "pg/sub/c", "c", &c);
	ut_put_str(be, "pgother/x", "x", &x);
	UT_OK(be_remove(be, "pg/a", &a.ver, NULL, &e_));
	UT_OK(be_remove(be, "pg/sub/c", &c.ver, NULL, &e_));
	UT_OK(be_remove(be, "pgother/x", &x.ver, NULL, &e_));
	UT_OK(drive_trash_list(be, count_trash, &before, &e_));
	UT_OK(be_purge(be, "pg", NULL, NULL, &e_));
	assert_null(api_get(a.ver.id));      /* gone for good */
	assert_null(api_get(c.ver.id));
	j = api_get(b.ver.id);              /* live: untouched */
	assert_non_null(j);
	assert_false(json_is_true(json_object_get(j, "trashed")));
	json_decref(j);
	j = api_get(x.ver.id);              /* trashed elsewhere: kept */
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "trashed")));
	json_decref(j);
	UT_OK(drive_trash_list(be, count_trash, &after, &e_));
	assert_int_equal(before - after, 2);
	/* The whole drive's trash. */
	UT_OK(be_purge(be, "", NULL, NULL, &e_));
	after = 0;
	UT_OK(drive_trash_list(be, count_trash, &after, &e_));
	assert_int_equal(after, 0);
	assert_null(api_get(x.ver.id));
	be_entry_release(&a);
	be_entry_release(&b);
	be_entry_release(&c);
	be_entry_release(&x);
}

struct idcol {
	char **ids;
	uint64_t *sizes;
	size_t n, cap;
};

static int collect_ids(void *ud, const struct drive_file *f)
{
	struct idcol *c = ud;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->ids = realloc(c->ids, c->cap * sizeof(*c->ids));
		c->sizes = realloc(c->sizes, c->cap * sizeof(*c->sizes));
		assert_non_null(c->ids);
		assert_non_null(c->sizes);
	}
	c->ids[c->n] = strdup(f->id);
	c->sizes[c->n++] = f->size;
	return 0;
}

struct progress_seen {
	uint64_t calls, last_done, last_bytes;
};

static int on_progress(void *ud, uint64_t done, uint64_t bytes, uint64_t failed)
{
	struct progress_seen *p = ud;

	assert_true(done >= p->last_done);
	assert_int_equal(failed, 0);
	p->calls++;
	p->last_done = done;
	p->last_bytes = bytes;
	return 0;
}

static void test_delete_ids_rate_limited(void **state)
{
	struct idcol c = { 0 };
	struct progress_seen ps = { 0 };
	struct drive_pace_stats st;
	char folder[BE_ID_MAX], body[256];
	long *status;
	size_t i, left = 0;
	int64_t limited0, parts0;

	(void)state;
	UT_OK(be_mkdir(be, "bulkdel", NULL, &e_));
	stat_id(be, "bulkdel", folder);
	UT_OK(be_purge(be, "", NULL, NULL, &e_));
	snprintf(body, sizeof(body), "{\"parent\":\"%s\",\"count\":700,\"prefix\":\"t\","
		 "\"content\":\"12345\",\"trashed\":true}", folder);
	emuh_must_post(emu, "/_emulator/drive/bulk", body);
	UT_OK(drive_trash_list(be, collect_ids, &c, &e_));
	assert_int_equal(c.n, 700);
	status = calloc(c.n, sizeof(*status));
	limited0 = emuh_must_requests(emu, "drive.batch", 0);
	parts0 = emuh_must_counter(emu, "drive.batch_parts");
	emuh_must_post(emu, "/_emulator/drive/rate", "{\"writes_per_second\":300}");
	UT_OK(drive_delete_ids(be, (const char *const *)c.ids, c.sizes, c.n, 4, on_progress, &ps,
			    status, NULL, &e_));
	emuh_must_post(emu, "/_emulator/drive/rate", "{\"writes_per_second\":0}");
	drive_pace_stats(be, &st);
	print_message("    700 deletes: %" PRId64 " batches, %" PRId64 " calls, %" PRIu64
		      " rate hits, %" PRIu64 " progress calls\n",
		      emuh_must_requests(emu, "drive.batch", 0) - limited0, emuh_must_counter(emu, "drive.batch_parts") - parts0,
		      st.rate_hits, ps.calls);
	assert_int_equal(ps.last_done, 700);
	assert_int_equal(ps.last_bytes, 3500);
	for (i = 0; i < c.n; i++)
		assert_true(status[i] == 204 || status[i] == 200 || status[i] == 404);
	assert_true(emuh_must_counter(emu, "drive.batch_parts") - parts0 > 700);  /* some were retried */
	UT_OK(drive_trash_list(be, count_trash, &left, &e_));
	assert_int_equal(left, 0);
	/* Deleting them again: all already gone, still a success. */
	UT_OK(drive_delete_ids(be, (const char *const *)c.ids, NULL, 50, 2, NULL, NULL, status, NULL,
			    &e_));
	assert_int_equal(status[0], 404);
	for (i = 0; i < c.n; i++)
		free(c.ids[i]);
	free(c.ids);
	free(c.sizes);
	free(status);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_check, clear_faults),
		cmocka_unit_test_teardown(test_symlink_max, clear_faults),
		cmocka_unit_test_teardown(test_basic_ops, clear_faults),
		cmocka_unit_test_teardown(test_upload_resumable, clear_faults),
		cmocka_unit_test_teardown(test_everything_under_faults, clear_faults),
		cmocka_unit_test_teardown(test_upload_cut_resumes, clear_faults),
		cmocka_unit_test_teardown(test_resume_saved_state, clear_faults),
		cmocka_unit_test_teardown(test_list_20000, clear_faults),
		cmocka_unit_test_teardown(test_list_page_fails, clear_faults),
		cmocka_unit_test_teardown(test_names_roundtrip, clear_faults),
		cmocka_unit_test_teardown(test_docs_export, clear_faults),
		cmocka_unit_test_teardown(test_shortcuts, clear_faults),
		cmocka_unit_test_teardown(test_conflicts, clear_faults),
		cmocka_unit_test_teardown(test_rate_pacing, clear_faults),
		cmocka_unit_test_teardown(test_storage_quota, clear_faults),
		cmocka_unit_test_teardown(test_shared_drives, clear_faults),
		cmocka_unit_test_teardown(test_purge, clear_faults),
		cmocka_unit_test_teardown(test_delete_ids_rate_limited, clear_faults),
	};

	return cmocka_run_group_tests_name("drive_emu", tests, setup, teardown);
}
