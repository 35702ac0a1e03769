/* Unit tests for fs/mopts.c: sizes, durations, every -o option with its
 * validation, mount(8)/systemd pass-through options, positionals, and the
 * default cache dir. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/mopts.h"

#define END ((const char *)NULL)  /* typed sentinel of parse() */

static char tmpdir[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/durafs-mopts-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

/* Parse "mount SRC tmpdir <extra...>" (extra NULL-terminated). */
static int parse(struct mopts *o, struct err *e, const char *src, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	const char *a;

	argv[argc++] = "mount";
	if (src)
		argv[argc++] = (char *)src;
	argv[argc++] = tmpdir;
	va_start(ap, src);
	while ((a = va_arg(ap, const char *)) && argc < 31)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	err_clear(e);
	return mopts_parse(argc, argv, o, e);
}

static void test_sizes(void **state)
{
	uint64_t v = 0;

	(void)state;
	assert_int_equal(mopts_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(mopts_parse_size("512", &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(mopts_parse_size("256K", &v), 0);
	assert_int_equal(v, 256 * 1024);
	assert_int_equal(mopts_parse_size("16M", &v), 0);
	assert_int_equal(v, 16u << 20);
	assert_int_equal(mopts_parse_size("10G", &v), 0);
	assert_int_equal(v, 10ull << 30);
	assert_int_equal(mopts_parse_size("10GiB", &v), 0);
	assert_int_equal(v, 10ull << 30);
	assert_int_equal(mopts_parse_size("1.5G", &v), 0);
	assert_int_equal(v, 3ull << 29);
	assert_int_equal(mopts_parse_size("2t", &v), 0);
	assert_int_equal(v, 2ull << 40);
	assert_int_equal(mopts_parse_size("1kb", &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(mopts_parse_size("7B", &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(mopts_parse_size("", &v), -1);
	assert_int_equal(mopts_parse_size("K", &v), -1);
	assert_int_equal(mopts_parse_size("-1", &v), -1);
	assert_int_equal(mopts_parse_size("12X", &v), -1);
	assert_int_equal(mopts_parse_size("1MM", &v), -1);
	assert_int_equal(mopts_parse_size("1 M", &v), -1);
	assert_int_equal(mopts_parse_size("99999999999T", &v), -1);
	assert_int_equal(mopts_parse_size("99999999999999999999999", &v), -1);
	assert_int_equal(mopts_parse_size(NULL, &v), -1);
}

static void test_durations(void **state)
{
	int64_t ms = 0;

	(void)state;
	assert_int_equal(mopts_parse_duration("2", &ms), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(mopts_parse_duration("2s", &ms), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(mopts_parse_duration("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(mopts_parse_duration("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(mopts_parse_duration("1.5m", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(mopts_parse_duration("10min", &ms), 0);
	assert_int_equal(ms, 600000);
	assert_int_equal(mopts_parse_duration("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(mopts_parse_duration("0.5", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(mopts_parse_duration("", &ms), -1);
	assert_int_equal(mopts_parse_duration("s", &ms), -1);
	assert_int_equal(mopts_parse_duration("-1s", &ms), -1);
	assert_int_equal(mopts_parse_duration("3d", &ms), -1);
	assert_int_equal(mopts_parse_duration("10000h", &ms), -1);
	assert_int_equal(mopts_parse_duration("1e3", &ms), -1);
}

static void test_defaults(void **state)
{
	struct mopts o;
	struct err e;

	(void)state;
	assert_int_equal(parse(&o, &e, "gs://bucket-1", END), 0);
	assert_string_equal(o.source, "gs://bucket-1");
	assert_string_equal(o.mountpoint, tmpdir);
	assert_non_null(o.cache_dir);
	assert_int_equal(o.cache_dir[0], '/');
	assert_int_equal(o.upload_workers, 8);
	assert_int_equal(o.chunk_size, 16u << 20);
	assert_int_equal(o.writeback_delay_ms, 2000);
	assert_int_equal(o.dir_cache_ttl_ms, 60000);
	assert_int_equal(o.fsync_timeout_ms, 600000);
	assert_int_equal(o.cache_size, 10ull << 30);
	assert_int_equal(o.file_mode, 0644);
	assert_int_equal(o.dir_mode, 0755);
	assert_int_equal(o.conflict, MOPTS_CONFLICT_KEEP_BOTH);
	assert_int_equal(o.stream_uploads, MOPTS_STREAM_ON);
	assert_int_equal(o.splice_writes, 0);
	assert_int_equal(o.foreground, 0);
	assert_int_equal(o.ro, 0);
	assert_int_equal(o.has_uid, 0);
	assert_null(o.log_file);
	assert_null(o.endpoint);
	mopts_release(&o);
	assert_null(o.source);
}

static void test_every_option(void **state)
{
	struct mopts o;
	struct err e;

	(void)state;
	assert_int_equal(parse(&o, &e, "gs://bkt/a/b", "-o",
			       "cache_size=1G,min_free_space=100M,upload_workers=3,chunk_size=512K,"
			       "small_file_max=1M,writeback_delay=500ms,dir_cache_ttl=5s,sync_on_close,"
			       "ro,allow_other,uid=1000,gid=100,file_mode=0600,dir_mode=700,"
			       "conflict=fail,fsync_timeout=30s,retry_max=2s,log_file=rel.log,debug,"
			       "endpoint=http://127.0.0.1:9,token_file=/t/tok,credentials=c.json,"
			       "no_auth,stream_uploads=off,splice_writes",
			       "--cache-dir", "cachedir", "--foreground", END), 0);
	assert_int_equal(o.stream_uploads, MOPTS_STREAM_OFF);
	assert_int_equal(o.splice_writes, 1);
	assert_int_equal(o.cache_size, 1ull << 30);
	assert_int_equal(o.min_free_space, 100ull << 20);
	assert_int_equal(o.upload_workers, 3);
	assert_int_equal(o.chunk_size, 512 * 1024);
	assert_int_equal(o.small_max, 1u << 20);
	assert_int_equal(o.writeback_delay_ms, 500);
	assert_int_equal(o.dir_cache_ttl_ms, 5000);
	assert_int_equal(o.sync_on_close, 1);
	assert_int_equal(o.ro, 1);
	assert_int_equal(o.allow_other, 1);
	assert_int_equal(o.has_uid, 1);
	assert_int_equal(o.uid, 1000);
	assert_int_equal(o.has_gid, 1);
	assert_int_equal(o.gid, 100);
	assert_int_equal(o.file_mode, 0600);
	assert_int_equal(o.dir_mode, 0700);
	assert_int_equal(o.conflict, MOPTS_CONFLICT_FAIL);
	assert_int_equal(o.fsync_timeout_ms, 30000);
	assert_int_equal(o.retry_max_ms, 2000);
	assert_int_equal(o.debug, 1);
	assert_int_equal(o.no_auth, 1);
	assert_int_equal(o.foreground, 1);
	assert_string_equal(o.endpoint, "http://127.0.0.1:9");
	assert_string_equal(o.token_file, "/t/tok");
	/* relative paths become absolute */
	assert_int_equal(o.log_file[0], '/');
	assert_non_null(strstr(o.log_file, "/rel.log"));
	assert_int_equal(o.credentials[0], '/');
	assert_int_equal(o.cache_dir[0], '/');
	assert_non_null(strstr(o.cache_dir, "/cachedir"));
	mopts_release(&o);
}

static void test_forms_and_order(void **state)
{
	struct mopts o;
	struct err e;
	char *argv[8];

	(void)state;
	/* options before the positionals, -oX, --cache-dir=X, -f, rw after ro */
	argv[0] = "mount";
	argv[1] = "-oro,upload_workers=2";
	argv[2] = "--cache-dir=/var/tmp/x";
	argv[3] = "-f";
	argv[4] = "gs://bkt";
	argv[5] = tmpdir;
	argv[6] = "-orw";
	argv[7] = NULL;
	assert_int_equal(mopts_parse(7, argv, &o, &e), 0);
	assert_int_equal(o.ro, 0);
	assert_int_equal(o.upload_workers, 2);
	assert_string_equal(o.cache_dir, "/var/tmp/x");
	assert_int_equal(o.foreground, 1);
	mopts_release(&o);
	/* mount(8) / systemd options pass through; empty items are fine */
	assert_int_equal(parse(&o, &e, "gs://bkt", "-o",
			       "_netdev,noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=60,"
			       "comment=x,defaults,user,nosuid,nodev,noatime,,exec", END), 0);
	mopts_release(&o);
	assert_int_equal(parse(&o, &e, "drive:", END), 0);
	mopts_release(&o);
}

static void expect_bad(const char *opts, const char *needle)
{
	struct mopts o;
	struct err e;

	assert_int_equal(parse(&o, &e, "gs://bkt", "-o", opts, END), -1);
	assert_int_equal(e.code, ERR_INVAL);
	if (!strstr(e.msg, needle))
		fail_msg("'%s': message '%s' lacks '%s'", opts, e.msg, needle);
	assert_null(strchr(e.msg, '\n'));
	assert_null(o.source);  /* released */
}

static void test_bad_options(void **state)
{
	(void)state;
	expect_bad("bogus", "unknown mount option 'bogus'");
	expect_bad("cache_size=lots", "cache_size=lots");
	expect_bad("cache_size", "needs a value");
	expect_bad("cache_size=", "needs a value");
	expect_bad("chunk_size=100K", "multiple of 256K");
	expect_bad("chunk_size=0", "multiple of 256K");
	expect_bad("chunk_size=4G", "multiple of 256K");
	expect_bad("upload_workers=0", "upload_workers=0");
	expect_bad("upload_workers=257", "1 to 256");
	expect_bad("upload_workers=-3", "upload_workers");
	expect_bad("upload_workers=2x", "upload_workers");
	expect_bad("writeback_delay=soon", "not a duration");
	expect_bad("fsync_timeout=0", "more than 0");
	expect_bad("sync_on_close=1", "takes no value");
	expect_bad("ro=yes", "takes no value");
	expect_bad("uid=bob", "numeric id");
	expect_bad("file_mode=999", "octal");
	expect_bad("file_mode=010000", "octal");
	expect_bad("conflict=overwrite", "keep-both or fail");
	expect_bad("endpoint=ftp://x", "http://");
	expect_bad("log_file=", "needs a value");
	expect_bad("stream_uploads=maybe", "expected one of on|off");
}

static void test_bad_command_lines(void **state)
{
	struct mopts o;
	struct err e;
	char *argv[6];

	(void)state;
	assert_int_equal(parse(&o, &e, NULL, END), -1);  /* only the mountpoint */
	assert_non_null(strstr(e.msg, "missing MOUNTPOINT"));
	assert_int_equal(parse(&o, &e, "gs://UPPER", END), -1);
	assert_non_null(strstr(e.msg, "bad source"));
	assert_int_equal(parse(&o, &e, "s3://bkt", END), -1);
	assert_non_null(strstr(e.msg, "gs://BUCKET"));
	assert_int_equal(parse(&o, &e, "gs://bkt", "extra", END), -1);
	assert_non_null(strstr(e.msg, "unexpected argument 'extra'"));
	assert_int_equal(parse(&o, &e, "gs://bkt", "--bogus", END), -1);
	assert_non_null(strstr(e.msg, "unknown option '--bogus'"));
	assert_int_equal(parse(&o, &e, "gs://bkt", "-o", END), -1);
	assert_non_null(strstr(e.msg, "-o needs"));
	assert_int_equal(parse(&o, &e, "gs://bkt", "--cache-dir", END), -1);
	assert_int_equal(parse(&o, &e, "gs://bkt", "--cache-dir=", END), -1);
	argv[0] = "mount";
	argv[1] = "gs://bkt";
	argv[2] = "/nonexistent/durafs/mnt";
	argv[3] = NULL;
	assert_int_equal(mopts_parse(3, argv, &o, &e), -1);
	assert_non_null(strstr(e.msg, "mountpoint '/nonexistent/durafs/mnt'"));
	argv[2] = "/etc/hostname";
	assert_int_equal(mopts_parse(3, argv, &o, &e), -1);
	assert_non_null(strstr(e.msg, "not a directory"));
	argv[0] = "mount";
	assert_int_equal(mopts_parse(1, argv, &o, &e), -1);
	assert_non_null(strstr(e.msg, "missing SOURCE and MOUNTPOINT"));
}

static void test_default_cache_dir(void **state)
{
	char *a, *b, *c, *d;
	const char *old_xdg = getenv("XDG_CACHE_HOME");
	char *saved = old_xdg ? strdup(old_xdg) : NULL;

	(void)state;
	setenv("XDG_CACHE_HOME", "/x/cache", 1);
	a = mopts_default_cache_dir("gs://bkt/some prefix", "/mnt/a");
	b = mopts_default_cache_dir("gs://bkt/some prefix", "/mnt/b");
	c = mopts_default_cache_dir("gs://bkt/some prefix", "/mnt/a");
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(a, c);
	assert_string_not_equal(a, b);
	assert_int_equal(strncmp(a, "/x/cache/durafs/bkt_some_prefix-", 32), 0);
	assert_int_equal(strlen(a), 32 + 8);
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/home/u", 1);
	d = mopts_default_cache_dir("drive:", "/mnt/a");
	assert_non_null(d);
	assert_int_equal(strncmp(d, "/home/u/.cache/durafs/drive_-", 29), 0);
	assert_null(mopts_default_cache_dir(NULL, "/m"));
	free(a);
	free(b);
	free(c);
	free(d);
	if (saved)
		setenv("XDG_CACHE_HOME", saved, 1);
	free(saved);
}

/* Paths are made absolute against the current directory, not resolved. */
static void test_abs_path(void **state)
{
	char cwd[4096], want[4200], *p;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	p = mopts_abs_path("/a/../b");
	assert_string_equal(p, "/a/../b");
	free(p);
	p = mopts_abs_path("x/y");
	snprintf(want, sizeof(want), "%s/x/y", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(p, want);
	free(p);
	assert_int_equal(chdir("/"), 0);
	p = mopts_abs_path("c");
	assert_string_equal(p, "/c");
	free(p);
	assert_int_equal(chdir(cwd), 0);
}

static void test_help_lists_every_option(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	static const char *const names[] = {
		"cache_size=", "upload_workers=", "chunk_size=", "writeback_delay=",
		"dir_cache_ttl=", "sync_on_close", "ro ", "allow_other", "uid=", "gid=",
		"file_mode=", "dir_mode=", "conflict=", "fsync_timeout=", "log_file=", "debug",
		"endpoint=", "token_file=", "credentials=", "no_auth", "retry_max=",
	};
	size_t i;

	(void)state;
	assert_non_null(f);
	mopts_help(f);
	fclose(f);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strstr(buf, names[i]))
			fail_msg("--help lacks %s", names[i]);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_option),
		cmocka_unit_test(test_forms_and_order),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_bad_command_lines),
		cmocka_unit_test(test_default_cache_dir),
		cmocka_unit_test(test_abs_path),
		cmocka_unit_test(test_help_lists_every_option),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
