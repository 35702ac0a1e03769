/* The emulator's file helpers (tests/emulator/emu_file.c): full writes at a
 * position and appended, full reads and EIO at end of file, path joins,
 * mkdir -p over existing and new parents, read-only mappings, growing
 * buffers (kept on failure). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "emu_file.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/durafs-test-emu-file-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_read_write(void **state)
{
	char *path = emf_path_join(dir, "f", NULL), buf[16], *m;
	int fd;

	(void)state;
	assert_non_null(path);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(emf_write_all(fd, "hello", 5, 0, 0), 0);
	assert_int_equal(emf_write_all(fd, " world", 6, 0, 0), 0);
	assert_int_equal(emf_write_all(fd, "W", 1, 6, 1), 0);
	assert_int_equal(emf_read_all(fd, buf, 11, 0), 0);
	assert_memory_equal(buf, "hello World", 11);
	assert_int_equal(emf_read_all(fd, buf, 4, 2), 0);
	assert_memory_equal(buf, "llo ", 4);
	errno = 0;
	assert_int_equal(emf_read_all(fd, buf, 12, 0), -1);
	assert_int_equal(errno, EIO);
	close(fd);
	m = emf_map_ro(path, 11);
	assert_non_null(m);
	assert_memory_equal(m, "hello World", 11);
	munmap(m, 11);
	assert_null(emf_map_ro("/nonexistent/durafs-emu-file", 1));
	free(path);
}

static void test_paths(void **state)
{
	char *p = emf_path_join("/d", "sub", "leaf"), *q = emf_path_join("/d", "sub", NULL);
	char *deep = emf_path_join(dir, "a/b/c", NULL);
	struct stat st;

	(void)state;
	assert_string_equal(p, "/d/sub/leaf");
	assert_string_equal(q, "/d/sub");
	assert_int_equal(emf_mkdir_p(deep), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(emf_mkdir_p(deep), 0);
	assert_int_equal(emf_mkdir_p("/proc/durafs-no/such"), -1);
	free(p);
	free(q);
	free(deep);
}

static void test_buf_reserve(void **state)
{
	char *buf = NULL;
	size_t cap = 0;

	(void)state;
	assert_int_equal(emf_buf_reserve(&buf, &cap, 10, 16), 0);
	assert_non_null(buf);
	assert_int_equal(cap, 16);
	memcpy(buf, "0123456789", 10);
	assert_int_equal(emf_buf_reserve(&buf, &cap, 16, 16), 0);
	assert_int_equal(cap, 16);
	assert_int_equal(emf_buf_reserve(&buf, &cap, 40, 16), 0);
	assert_int_equal(cap, 64);
	assert_memory_equal(buf, "0123456789", 10);
	assert_int_equal(emf_buf_reserve(&buf, &cap, SIZE_MAX / 2 + 2, 16), -1);
	assert_int_equal(cap, 64);
	assert_memory_equal(buf, "0123456789", 10);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_buf_reserve),
	};

	return cmocka_run_group_tests_name("emu_file", tests, setup, teardown);
}
