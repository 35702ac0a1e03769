/* Unit tests for sync/clock.c: the millisecond clocks agree with
 * clock_gettime and time(), the monotonic one never goes back, and a
 * monotonic deadline is normalised and lies the asked time ahead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "durafs/clock.h"

static int64_t ts_ms(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

static void test_mono(void **state)
{
	struct timespec ts;
	int64_t a, b, prev;
	int i;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	a = ts_ms(&ts);
	b = clk_mono_ms();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	assert_true(a <= b && b <= ts_ms(&ts));
	prev = clk_mono_ms();
	for (i = 0; i < 10000; i++) {
		b = clk_mono_ms();
		assert_true(b >= prev);
		prev = b;
	}
}

static void test_wall(void **state)
{
	time_t t0, t1;
	int64_t w;

	(void)state;
	t0 = time(NULL);
	w = clk_wall_ms();
	t1 = time(NULL);
	assert_true(w >= (int64_t)t0 * 1000 && w < ((int64_t)t1 + 1) * 1000);
}

static void test_mono_after(void **state)
{
	static const int64_t ms[] = { 0, 1, 999, 1000, 1500, 86400000 };
	struct timespec d;
	int64_t before, after;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		before = clk_mono_ms();
		d = clk_mono_after(ms[i]);
		after = clk_mono_ms();
		assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
		/* whole milliseconds of the deadline: between the two readings
		 * plus ms (the truncation of ns to ms loses under 1 ms) */
		assert_true(ts_ms(&d) >= before + ms[i]);
		assert_true(ts_ms(&d) <= after + ms[i]);
	}
	/* a negative delay is now */
	before = clk_mono_ms();
	d = clk_mono_after(-5000);
	assert_true(ts_ms(&d) >= before);
	assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mono),
		cmocka_unit_test(test_wall),
		cmocka_unit_test(test_mono_after),
	};

	return cmocka_run_group_tests_name("clock", tests, NULL, NULL);
}
