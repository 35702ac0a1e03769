/* Unit tests for the remount-while-unreachable path of fs/mount.c (and the
 * Drive root reuse in sync/drive.c) against a real emulator: which check
 * failures count as "unreachable", an offline journal open (refused with
 * nothing created for a first mount, accepted for a source mounted before,
 * refused for another source), and the Drive root id stored by a good
 * mount and given back to the backend offline. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/drive.h"
#include "durafs/log.h"
#include "durafs/mount.h"
#include "emu_harness.h"

#define ALL_503 "[{\"kind\":\"status\",\"status\":503}]"

struct t {
	struct emuh *emu;
	char dir[PATH_MAX];
	int n;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));

	if (!t || emuh_mount_start("mntoff", &t->emu, t->dir, sizeof(t->dir)) < 0) {
		free(t);
		return -1;
	}
	setenv("DURAFS_DRIVE_ENDPOINT", emuh_url(t->emu), 1);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	emuh_mount_stop(t->emu, t->dir);
	free(t);
	return 0;
}

/* Options for source in cache dir number k under t->dir. */
static void opts(struct t *t, struct mopts *mo, const char *source, int k)
{
	char cd[PATH_MAX + 16];

	mopts_defaults(mo);
	snprintf(cd, sizeof(cd), "%s/c%d", t->dir, k);
	mo->source = strdup(source);
	mo->cache_dir = strdup(cd);
	mo->mountpoint = strdup("/mnt/x");
}

/* mnt_init .. mnt_remote_open; fails the test on error. */
static void prepare(struct mnt *m, const struct mopts *mo)
{
	struct err e;

	err_clear(&e);
	if (mnt_init(m, mo, &e) < 0 || mnt_cache_dir_create(m, &e) < 0 ||
	    mnt_remote_open(m, &e) < 0)
		fail_msg("prepare %s: %s", mo->source, e.msg);
}

static void test_unreachable_classes(void **state)
{
	struct err e;

	(void)state;
	err_clear(&e);
	assert_int_equal(mnt_unreachable(NULL), 0);
	err_set(&e, ERR_NET, "connection refused");
	assert_int_equal(mnt_unreachable(&e), 1);
	err_set(&e, ERR_TIMEOUT, "no answer");
	assert_int_equal(mnt_unreachable(&e), 1);
	err_set(&e, ERR_CANCELED, "given up");
	assert_int_equal(mnt_unreachable(&e), 1);
	err_set(&e, ERR_HTTP, "server error");
	e.http_status = 503;
	assert_int_equal(mnt_unreachable(&e), 1);
	e.http_status = 500;
	assert_int_equal(mnt_unreachable(&e), 1);
	e.http_status = 400;
	assert_int_equal(mnt_unreachable(&e), 0);
	e.http_status = 0;
	assert_int_equal(mnt_unreachable(&e), 0);
	err_set(&e, ERR_AUTH, "refused");
	assert_int_equal(mnt_unreachable(&e), 0);
	err_set(&e, ERR_NOTFOUND, "no such bucket");
	assert_int_equal(mnt_unreachable(&e), 0);
	err_set(&e, ERR_PERM, "forbidden");
	assert_int_equal(mnt_unreachable(&e), 0);
	err_set(&e, ERR_PARSE, "garbage");
	assert_int_equal(mnt_unreachable(&e), 0);
}

/* GCS: the check against an emulator answering 503 counts as unreachable;
 * an offline open of a fresh cache dir is refused and creates nothing;
 * after a good mount it is accepted and status says so; another source
 * is still refused. */
static void test_gcs_offline_open(void **state)
{
	struct t *t = *state;
	struct mopts mo, mo2;
	struct mnt m;
	struct err e;
	struct stat st;
	json_t *s;

	opts(t, &mo, "gs://bkt", t->n++);
	emuh_must_faults(t->emu, ALL_503);
	prepare(&m, &mo);
	err_clear(&e);
	assert_int_equal(mnt_check(&m, &e), -1);
	assert_int_equal(mnt_unreachable(&e), 1);
	m.offline = 1;
	err_clear(&e);
	assert_int_equal(mnt_journal_open(&m, 0, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "nothing stored for gs://bkt"));
	assert_int_equal(stat(m.journal_path, &st), -1);
	mnt_release(&m);

	/* a good mount records the source */
	emuh_must_faults(t->emu, "[]");
	prepare(&m, &mo);
	err_clear(&e);
	if (mnt_check(&m, &e) < 0 || mnt_journal_open(&m, 0, &e) < 0)
		fail_msg("online: %s", e.msg);
	mnt_release(&m);

	/* offline again: accepted, status says so */
	emuh_must_faults(t->emu, ALL_503);
	prepare(&m, &mo);
	m.offline = 1;
	err_clear(&e);
	if (mnt_journal_open(&m, 0, &e) < 0)
		fail_msg("offline open: %s", e.msg);
	s = mnt_status(&m);
	assert_non_null(s);
	assert_true(json_is_true(json_object_get(json_object_get(s, "mount"),
						 "started_offline")));
	json_decref(s);
	mnt_release(&m);

	/* another source in that cache dir: still "belongs to" */
	opts(t, &mo2, "gs://other", t->n - 1);
	prepare(&m, &mo2);
	m.offline = 1;
	err_clear(&e);
	assert_int_equal(mnt_journal_open(&m, 0, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_non_null(strstr(e.msg, "belongs to gs://bkt"));
	mnt_release(&m);
	emuh_must_faults(t->emu, "[]");
	mopts_release(&mo);
	mopts_release(&mo2);
}

/* Drive: a good mount stores the resolved root; offline, the backend gets
 * it back without a request (every request fails meanwhile). */
static void test_drive_root_reused(void **state)
{
	struct t *t = *state;
	struct mopts mo;
	struct mnt m;
	struct err e;
	char root[BE_ID_MAX], got[BE_ID_MAX];
	int64_t before;

	opts(t, &mo, "drive:", t->n++);
	emuh_must_faults(t->emu, "[]");
	prepare(&m, &mo);
	err_clear(&e);
	if (mnt_check(&m, &e) < 0 || mnt_journal_open(&m, 0, &e) < 0)
		fail_msg("online: %s", e.msg);
	drive_root_id(m.be, root, sizeof(root));
	assert_true(root[0] != '\0');
	mnt_release(&m);

	emuh_must_faults(t->emu, ALL_503);
	prepare(&m, &mo);
	drive_root_id(m.be, got, sizeof(got));
	assert_string_equal(got, "");
	before = emuh_must_requests(t->emu, "drive.fault", 503);
	m.offline = 1;
	err_clear(&e);
	if (mnt_journal_open(&m, 0, &e) < 0)
		fail_msg("offline open: %s", e.msg);
	drive_root_id(m.be, got, sizeof(got));
	assert_string_equal(got, root);
	drive_root_drive_id(m.be, got, sizeof(got));
	assert_string_equal(got, "");
	assert_int_equal(emuh_must_requests(t->emu, "drive.fault", 503), before);
	/* the counter is live: the check (a request) is refused and counted */
	err_clear(&e);
	assert_int_equal(mnt_check(&m, &e), -1);
	assert_int_equal(mnt_unreachable(&e), 1);
	assert_true(emuh_must_requests(t->emu, "drive.fault", 503) > before);
	mnt_release(&m);
	emuh_must_faults(t->emu, "[]");
	mopts_release(&mo);
}

/* drive_root_restore: malformed ids refused, a resolved root kept. */
static void test_drive_root_restore(void **state)
{
	struct t *t = *state;
	struct mopts mo;
	struct mnt m;
	struct err e;
	char got[BE_ID_MAX];

	opts(t, &mo, "drive:", t->n++);
	prepare(&m, &mo);
	err_clear(&e);
	assert_int_equal(drive_root_restore(m.be, "bad id/x", NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(drive_root_restore(m.be, "", NULL, &e), -1);
	assert_int_equal(drive_root_restore(m.be, "root1", "bad drive", &e), -1);
	drive_root_id(m.be, got, sizeof(got));
	assert_string_equal(got, "");
	assert_int_equal(drive_root_restore(m.be, "root1", "sd1", &e), 0);
	drive_root_id(m.be, got, sizeof(got));
	assert_string_equal(got, "root1");
	drive_root_drive_id(m.be, got, sizeof(got));
	assert_string_equal(got, "sd1");
	assert_int_equal(drive_root_restore(m.be, "root2", NULL, &e), 0);
	drive_root_id(m.be, got, sizeof(got));
	assert_string_equal(got, "root1");
	mnt_release(&m);
	mopts_release(&mo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unreachable_classes),
		cmocka_unit_test(test_gcs_offline_open),
		cmocka_unit_test(test_drive_root_reused),
		cmocka_unit_test(test_drive_root_restore),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
