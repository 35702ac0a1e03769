/* Unit tests for sync/err.c: messages, prefixes, names and the errno map. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/err.h"

static void test_set_and_prefix(void **state)
{
	struct err e;

	(void)state;
	assert_int_equal(err_set(&e, ERR_NOTFOUND, "object %s", "a/b"), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_string_equal(e.msg, "object a/b");
	err_prefix(&e, "stat %d", 3);
	assert_string_equal(e.msg, "stat 3: object a/b");
	err_clear(&e);
	assert_int_equal(e.code, ERR_OK);
	assert_int_equal(err_to_errno(&e), 0);
	assert_int_equal(err_set(NULL, ERR_IO, "x"), -1);
}

static void test_sys_saves_errno(void **state)
{
	struct err e;

	(void)state;
	errno = ENOSPC;
	err_sys(&e, "write %s", "cache");
	assert_int_equal(e.code, ERR_NOSPC);
	assert_int_equal(e.sys_errno, ENOSPC);
	assert_int_equal(errno, ENOSPC);
	assert_non_null(strstr(e.msg, "write cache: "));
	errno = EACCES;
	err_sys(&e, "open");
	assert_int_equal(e.code, ERR_IO);
	assert_int_equal(err_to_errno(&e), -EACCES);
}

static void test_errno_map(void **state)
{
	static const struct { int code, neg; } m[] = {
		{ ERR_NOTFOUND, -ENOENT }, { ERR_AUTH, -EACCES }, { ERR_PERM, -EACCES },
		{ ERR_QUOTA, -EDQUOT }, { ERR_NOSPC, -ENOSPC }, { ERR_CONFLICT, -EIO },
		{ ERR_NET, -EIO }, { ERR_EXISTS, -EEXIST }, { ERR_NOTEMPTY, -ENOTEMPTY },
		{ ERR_TIMEOUT, -ETIMEDOUT }, { 999, -EIO },
	};
	struct err e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		err_set(&e, m[i].code, "x");
		assert_int_equal(err_to_errno(&e), m[i].neg);
	}
	assert_string_equal(err_code_name(ERR_CONFLICT), "conflict");
	assert_string_equal(err_code_name(12345), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_and_prefix),
		cmocka_unit_test(test_sys_saves_errno),
		cmocka_unit_test(test_errno_map),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
