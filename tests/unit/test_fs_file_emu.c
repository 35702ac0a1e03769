/* Unit tests of the open-file layer's fallocate (fs_of_fallocate,
 * fs/fs_file.c) on a real struct fs over the emulator (tests/unit/
 * fs_fixture): the modes kept, the ones refused, a remote file made whole
 * first, and the change handed to the journal like a write. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/journal.h"
#include "emu_harness.h"
#include "fs_fixture.h"
#include "unit_util.h"
#include "../../fs/fs_i.h"

#define BKT "fsfile"

static struct emuh *emu;
static struct http *http;

static int group_setup(void **state)
{
	(void)state;
	return ffx_group_start("test_fs_file_emu", BKT, &emu, &http);
}

static int group_teardown(void **state)
{
	(void)state;
	ffx_group_stop(emu, http);
	return 0;
}

static int setup(void **state)
{
	*state = ffx_new(emu, http, BKT, "/tmp/fsfileemu.XXXXXX");
	return 0;
}

static int teardown(void **state)
{
	ffx_free(*state, http);
	return 0;
}

static uint64_t fd_size(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return (uint64_t)st.st_size;
}

static int modified(struct fs_ofile *of)
{
	int m;

	pthread_mutex_lock(&of->mu);
	m = of->modified;
	pthread_mutex_unlock(&of->mu);
	return m;
}

/* A remote file opened read-only (content not local yet): KEEP_SIZE changes
 * nothing, mode 0 extends with zeros, PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE
 * zero their range; the content is fetched whole first and the change is
 * journaled at commit. Unknown modes and empty ranges are refused. */
static void test_fallocate_modes(void **state)
{
	struct fs_fx *f = *state;
	struct fs_ofile *of = NULL;
	struct jnl_file jf;
	char buf[64], want[64];
	const char *data = "abcdefghijklmnopqrstuvwxyz";

	UT_OK(emuh_gcs_put(emu, BKT, "d/f", data, strlen(data), &e_));
	assert_int_equal(fs_of_get(f->fs, 100, "d/f", 0, 0, &of), 0);
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
	assert_false(modified(of));
	assert_int_equal(fd_size(of->fd), 26);

	assert_int_equal(fs_of_fallocate(f->fs, of, 0, 20, 20), 0);
	assert_true(modified(of));
	assert_int_equal(fd_size(of->fd), 40);
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					 2, 3), 0);
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_ZERO_RANGE, 38, 4), 0);
	assert_int_equal(fd_size(of->fd), 42);
	memset(want, 0, sizeof(want));
	memcpy(want, data, 26);
	memset(want + 2, 0, 3);
	assert_int_equal(pread(of->fd, buf, sizeof(buf), 0), 42);
	assert_memory_equal(buf, want, 42);

	/* refused: collapse, insert, punch without KEEP_SIZE, punch with
	 * zero range, an empty or overflowing range */
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_COLLAPSE_RANGE, 0, 4096),
			 -EOPNOTSUPP);
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_INSERT_RANGE, 0, 4096),
			 -EOPNOTSUPP);
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_PUNCH_HOLE, 0, 1), -EOPNOTSUPP);
	assert_int_equal(fs_of_fallocate(f->fs, of, FALLOC_FL_PUNCH_HOLE |
					 FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 1),
			 -EOPNOTSUPP);
	assert_int_equal(fs_of_fallocate(f->fs, of, 0, 0, 0), -EINVAL);
	assert_int_equal(fs_of_fallocate(f->fs, of, 0, INT64_MAX, 2), -EINVAL);
	assert_int_equal(fd_size(of->fd), 42);

	/* handed to the journal like a write: the file is dirty at 42 bytes */
	assert_int_equal(fs_of_commit(f->fs, of, 60000), 0);
	assert_false(modified(of));
	memset(&jf, 0, sizeof(jf));
	UT_OK(jnl_file_get(f->j, of->fid, &jf, &e_));
	assert_true(jf.dirty);
	assert_int_equal(jf.size, 42);
	jnl_file_release(&jf);
	fs_of_put(f->fs, of);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fallocate_modes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
