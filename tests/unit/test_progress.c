/* Unit tests for fs/progress.c: byte and duration formats, the progress
 * line and bar, totals growing with new work, rate and ETA, and what each
 * mode prints (plain lines throttled, JSON lines, \r-updated bar). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "durafs/progress.h"

static void test_bytes(void **state)
{
	char b[32];

	(void)state;
	prog_fmt_bytes(0, b, sizeof(b));
	assert_string_equal(b, "0 B");
	prog_fmt_bytes(1023, b, sizeof(b));
	assert_string_equal(b, "1023 B");
	prog_fmt_bytes(1024, b, sizeof(b));
	assert_string_equal(b, "1.00 KiB");
	prog_fmt_bytes(1536, b, sizeof(b));
	assert_string_equal(b, "1.50 KiB");
	prog_fmt_bytes(15 * 1024 * 1024 + 300 * 1024, b, sizeof(b));
	assert_string_equal(b, "15.3 MiB");
	prog_fmt_bytes(100ull << 20, b, sizeof(b));
	assert_string_equal(b, "100 MiB");
	prog_fmt_bytes(2ull << 30, b, sizeof(b));
	assert_string_equal(b, "2.00 GiB");
	prog_fmt_bytes(UINT64_MAX, b, sizeof(b));
	assert_string_equal(b, "16.0 EiB");
	prog_fmt_bytes(1ull << 40, b, 4);  /* cut, still terminated */
	assert_int_equal(strlen(b), 3);
}

static void test_durations(void **state)
{
	char b[32];

	(void)state;
	prog_fmt_duration(-1, b, sizeof(b));
	assert_string_equal(b, "--");
	prog_fmt_duration(0, b, sizeof(b));
	assert_string_equal(b, "0s");
	prog_fmt_duration(59, b, sizeof(b));
	assert_string_equal(b, "59s");
	prog_fmt_duration(185, b, sizeof(b));
	assert_string_equal(b, "3m05s");
	prog_fmt_duration(7440, b, sizeof(b));
	assert_string_equal(b, "2h04m");
}

static void test_format(void **state)
{
	struct prog_snap s;
	char b[256];
	size_t n;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.eta_s = -1;
	n = prog_format(&s, "flush", 0, b, sizeof(b));
	assert_string_equal(b, "flush: nothing pending");
	assert_int_equal(n, strlen(b));
	s.files_done = 3;
	s.files_total = 12;
	s.bytes_done = 1ull << 30;
	s.bytes_total = 4ull << 30;
	s.rate = 50.0 * 1024 * 1024;
	s.eta_s = 61;
	prog_format(&s, "flush", 0, b, sizeof(b));
	assert_string_equal(b, "flush: 3/12 files, 1.00 GiB/4.00 GiB, 50.0 MiB/s, ETA 1m01s");
	prog_format(&s, "flush", 8, b, sizeof(b));
	assert_string_equal(b, "[##......] flush: 3/12 files, 1.00 GiB/4.00 GiB, 50.0 MiB/s, ETA 1m01s");
	s.failed = 2;
	s.rate = 0;
	s.eta_s = -1;
	prog_format(&s, NULL, 0, b, sizeof(b));
	assert_string_equal(b, "3/12 files, 1.00 GiB/4.00 GiB, -- B/s, ETA --, FAILED 2");
	/* cut to the buffer */
	n = prog_format(&s, "flush", 0, b, 10);
	assert_int_equal(n, 9);
	assert_int_equal(strlen(b), 9);
	/* bar by files when no bytes */
	memset(&s, 0, sizeof(s));
	s.files_done = 1;
	s.files_total = 2;
	s.eta_s = -1;
	prog_format(&s, "", 4, b, sizeof(b));
	assert_int_equal(strncmp(b, "[##..] 1/2 files", 16), 0);
}

static char *run(int mode, void (*fn)(struct prog *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct prog p;

	assert_non_null(f);
	prog_init(&p, f, mode, "flush");
	fn(&p);
	fclose(f);
	return buf;
}

/* 10 files, 100 MiB, committed over 10 s in 0.25 s steps. */
static void feed(struct prog *p)
{
	int64_t t;
	uint64_t mib = 1024 * 1024;

	p->start_ms = 0;
	p->last_ms = 0;
	for (t = 0; t <= 10000; t += 250) {
		uint64_t done = (uint64_t)t * 10 * mib / 1000;   /* 10 MiB/s */

		prog_update_at(p, t, 10 - done / (10 * mib), 100 * mib - done, 0);
	}
	/* what a snapshot says at the end */
	assert_int_equal(p->snap.files_total, 10);
	assert_int_equal(p->snap.files_done, 10);
	assert_int_equal(p->snap.bytes_total, 100 * mib);
	assert_int_equal(p->snap.bytes_done, 100 * mib);
	assert_int_equal(p->snap.eta_s, 0);
	assert_true(p->snap.rate > 9.5 * mib && p->snap.rate < 10.5 * mib);
	prog_finish(p);
}

static void test_lines_mode(void **state)
{
	char *out = run(PROG_LINES, feed);
	int lines = 0;
	const char *p;

	(void)state;
	for (p = out; *p; p++)
		lines += *p == '\n';
	/* the first sample, one every 2 s (t = 2,4,6,8,10 s), the final one
	 * only when it differs from the last printed */
	assert_int_equal(lines, 6);
	assert_non_null(strstr(out, "flush: 0/10 files, 0 B/100 MiB"));
	assert_non_null(strstr(out, "flush: 10/10 files, 100 MiB/100 MiB, 10.0 MiB/s, ETA 0s\n"));
	assert_null(strchr(out, '\r'));
	free(out);
}

static void test_tty_mode(void **state)
{
	char *out = run(PROG_TTY, feed);

	(void)state;
	assert_int_equal(out[0], '\r');
	assert_non_null(strstr(out, "\033[K"));
	assert_non_null(strstr(out, "[########################] flush: 10/10 files"));
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_true(strchr(out, '\n') == out + strlen(out) - 1);  /* one line, ended once */
	free(out);
}

static void test_json_mode(void **state)
{
	char *out = run(PROG_JSON, feed), *line, *save = NULL;
	json_t *j, *p;
	int n = 0;

	(void)state;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		j = json_loads(line, 0, NULL);
		assert_non_null(j);
		p = json_object_get(j, "progress");
		assert_non_null(p);
		assert_int_equal(json_integer_value(json_object_get(p, "files_total")), 10);
		assert_non_null(json_object_get(p, "eta_s"));
		assert_non_null(json_object_get(p, "rate"));
		json_decref(j);
		n++;
	}
	/* every 500 ms over 10 s, plus the final line */
	assert_true(n >= 20 && n <= 23);
	free(out);
}

/* Work appearing during the flush grows the totals; done never goes back. */
static void growing(struct prog *p)
{
	prog_update_at(p, 0, 2, 200, 0);
	prog_update_at(p, 100, 1, 100, 0);
	assert_int_equal(p->snap.files_done, 1);
	prog_update_at(p, 200, 3, 300, 0);   /* two new ops */
	assert_int_equal(p->snap.files_total, 4);
	assert_int_equal(p->snap.files_done, 1);
	assert_int_equal(p->snap.bytes_total, 400);
	prog_update_at(p, 300, 0, 0, 1);
	assert_int_equal(p->snap.files_done, 4);
	assert_int_equal(p->snap.failed, 1);
}

static void test_growing_totals(void **state)
{
	char *out = run(PROG_QUIET, growing);

	(void)state;
	assert_string_equal(out, "");
	free(out);
}

static void test_finish_without_update(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct prog p;

	(void)state;
	prog_init(&p, f, PROG_LINES, "x");
	prog_finish(&p);
	fclose(f);
	assert_string_equal(buf, "");
	free(buf);
	assert_int_equal(prog_mode_for(stdout, 1), PROG_JSON);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_lines_mode),
		cmocka_unit_test(test_tty_mode),
		cmocka_unit_test(test_json_mode),
		cmocka_unit_test(test_growing_totals),
		cmocka_unit_test(test_finish_without_update),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
