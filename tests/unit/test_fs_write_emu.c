/* The filesystem core's write path (fs_of_write, fs_of_write_pipe in
 * fs/fs_file.c) against a real durafs-emulator: bytes in a pipe (FUSE's
 * splice read) land in the cache file at the write's offset and drain the
 * pipe exactly; a pipe holding fewer bytes than the write is an error, not
 * a hang; a cache file that cannot take a splice gets the bytes read and
 * written; memory writes keep working beside them. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/journal.h"
#include "emu_harness.h"
#include "fs_fixture.h"
#include "unit_util.h"
#include "../../fs/fs_i.h"

#define BKT "fswr"

static struct emuh *emu;
static struct http *http;

static int group_setup(void **state)
{
	(void)state;
	return ffx_group_start("test_fs_write_emu", BKT, &emu, &http);
}

static int group_teardown(void **state)
{
	(void)state;
	ffx_group_stop(emu, http);
	return 0;
}

static int setup(void **state)
{
	*state = ffx_new(emu, http, BKT, "/tmp/fswremu.XXXXXX");
	return 0;
}

static int teardown(void **state)
{
	ffx_free(*state, http);
	return 0;
}

/* Object name on the remote, opened for writing with O_TRUNC as inode ino:
 * the open file (release with fs_of_put). */
static struct fs_ofile *open_trunc(struct fs_fx *f, const char *name, uint64_t ino)
{
	struct fs_ofile *of = NULL;
	struct fs_info in;

	UT_OK(emuh_gcs_put(emu, BKT, name, "old", 3, &e_));
	assert_int_equal(fs_resolve(f->fs, name, &in), 0);
	assert_int_equal(fs_of_get(f->fs, ino, name, 1, 1, &of), 0);
	assert_true(of->whole);
	return of;
}

/* A non-blocking pipe (as libfuse's) of at least cap bytes holding data. */
static void pipe_with(int p[2], size_t cap, const unsigned char *data, size_t len)
{
	size_t done = 0;
	ssize_t n;

	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	assert_true(fcntl(p[0], F_SETPIPE_SZ, (int)cap) >= (int)cap);
	while (done < len) {
		n = write(p[1], data + done, len - done);
		assert_true(n > 0);
		done += (size_t)n;
	}
}

/* The pipe holds nothing more. */
static void assert_drained(int fd)
{
	char c;

	assert_int_equal(read(fd, &c, 1), -1);
	assert_int_equal(errno, EAGAIN);
}

/* [off, off+len) of fd is data. */
static void assert_content(int fd, off_t off, const unsigned char *data, size_t len)
{
	unsigned char *got = malloc(len);

	assert_non_null(got);
	assert_int_equal(pread(fd, got, len, off), (ssize_t)len);
	assert_memory_equal(got, data, len);
	free(got);
}

/* A write spliced from a pipe lands at its offset (a hole before it
 * reads as zeros), drains the pipe, counts as spliced and marks the file
 * modified; a memory write beside it overwrites part of it. */
static void test_pipe_write(void **state)
{
	struct fs_fx *f = *state;
	enum { LEN = 300 * 1024, OFF = 5000 };
	unsigned char *data = ut_pattern(LEN, 1), zero[OFF];
	struct fs_ofile *of = open_trunc(f, "w", 100);
	uint64_t sp = atomic_load(&f->fs->wr_spliced), cp = atomic_load(&f->fs->wr_copied);
	struct stat st;
	int p[2];

	pipe_with(p, 512 * 1024, data, LEN);
	pthread_mutex_lock(&of->mu);
	of->modified = 0;
	pthread_mutex_unlock(&of->mu);
	assert_int_equal(fs_of_write_pipe(f->fs, of, p[0], LEN, OFF), LEN);
	assert_drained(p[0]);
	assert_true(of->modified);
	assert_int_equal(atomic_load(&f->fs->wr_spliced), sp + 1);
	assert_int_equal(fstat(of->fd, &st), 0);
	assert_int_equal(st.st_size, OFF + LEN);
	memset(zero, 0, sizeof(zero));
	assert_content(of->fd, 0, zero, OFF);
	assert_content(of->fd, OFF, data, LEN);

	assert_int_equal(fs_of_write(f->fs, of, "XYZ", 3, OFF + 10), 3);
	assert_int_equal(atomic_load(&f->fs->wr_copied), cp + 1);
	assert_content(of->fd, OFF + 10, (const unsigned char *)"XYZ", 3);
	assert_content(of->fd, OFF + 13, data + 13, LEN - 13);
	close(p[0]);
	close(p[1]);
	fs_of_put(f->fs, of);
	free(data);
}

/* A pipe holding fewer bytes than the write's size: -EIO at once (the
 * pipe is non-blocking), what there was is in the cache file. */
static void test_short_pipe(void **state)
{
	struct fs_fx *f = *state;
	unsigned char *data = ut_pattern(1000, 2);
	struct fs_ofile *of = open_trunc(f, "s", 101);
	int p[2];

	pipe_with(p, 64 * 1024, data, 1000);
	assert_int_equal(fs_of_write_pipe(f->fs, of, p[0], 4000, 0), -EIO);
	assert_drained(p[0]);
	assert_content(of->fd, 0, data, 1000);
	close(p[0]);
	close(p[1]);
	fs_of_put(f->fs, of);
	free(data);
}

/* A cache file splice refuses (here: opened O_APPEND, splice gives
 * EINVAL): the pipe is read into memory and written from there, drained,
 * the bytes right. */
static void test_no_splice_fallback(void **state)
{
	struct fs_fx *f = *state;
	enum { LEN = 200 * 1024 };
	unsigned char *data = ut_pattern(LEN, 3);
	struct fs_ofile *of = open_trunc(f, "a", 102);
	char path[256];
	int p[2], fd, saved;

	assert_int_equal(fs_cache_path(f->fs, of->cache_name, path, sizeof(path)), 0);
	fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	saved = of->fd;
	of->fd = fd;
	pipe_with(p, 256 * 1024, data, LEN);
	assert_int_equal(fs_of_write_pipe(f->fs, of, p[0], LEN, 0), LEN);
	assert_drained(p[0]);
	of->fd = saved;
	close(fd);
	assert_content(of->fd, 0, data, LEN);
	close(p[0]);
	close(p[1]);
	fs_of_put(f->fs, of);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pipe_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_pipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_splice_fallback, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
