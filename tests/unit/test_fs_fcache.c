/* Unit tests for fs/fcache.c: sequential detection and window growth,
 * fetch spans (small files whole, random floor, clipping), and eviction
 * amounts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/fcache.h"

#define KiB 1024ull
#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static void test_defaults(void **state)
{
	struct fc_params p;

	(void)state;
	fc_params_default(&p, 0);
	assert_int_equal(p.whole_below, 16 * MiB);
	assert_int_equal(p.max_window, 16 * MiB);
	fc_params_default(&p, 8 * MiB);
	assert_int_equal(p.whole_below, 8 * MiB);
}

static void test_sequential_window_grows_and_caps(void **state)
{
	struct fc_params p;
	struct fc_ra ra = { 0, 0, 0, 0 };
	uint64_t off = 0;
	int i;

	(void)state;
	fc_params_default(&p, 0);
	fc_ra_note(&ra, 0, 128 * KiB, &p);
	assert_int_equal(ra.window, 0);            /* one read is not a stream */
	off = 128 * KiB;
	fc_ra_note(&ra, off, 128 * KiB, &p);
	assert_int_equal(ra.window, 1 * MiB);
	off += 128 * KiB;
	fc_ra_note(&ra, off, 128 * KiB, &p);
	assert_int_equal(ra.window, 2 * MiB);
	for (i = 0; i < 20; i++) {
		off += 128 * KiB;
		fc_ra_note(&ra, off, 128 * KiB, &p);
	}
	assert_int_equal(ra.window, 16 * MiB);
	/* Slightly out of order (threads): still sequential. */
	fc_ra_note(&ra, off + 3 * 128 * KiB, 128 * KiB, &p);
	assert_int_equal(ra.window, 16 * MiB);
	fc_ra_note(&ra, off + 2 * 128 * KiB, 128 * KiB, &p);
	assert_int_equal(ra.window, 16 * MiB);
	/* A jump far away resets. */
	fc_ra_note(&ra, 900 * MiB, 4 * KiB, &p);
	assert_int_equal(ra.window, 0);
	assert_int_equal(ra.next, 900 * MiB + 4 * KiB);
}

static void test_fetch_end(void **state)
{
	struct fc_params p;
	struct fc_ra ra = { 0, 0, 0, 0 };

	(void)state;
	fc_params_default(&p, 16 * MiB);
	/* Small file: the whole of it, wherever the read is. */
	assert_int_equal(fc_fetch_end(&ra, 4 * KiB, 4 * KiB, 3 * MiB, &p), 3 * MiB);
	/* Large file, random read: the floor. */
	assert_int_equal(fc_fetch_end(&ra, 100 * MiB, 4 * KiB, GiB, &p), 100 * MiB + 256 * KiB);
	/* A read bigger than the floor is fetched whole. */
	assert_int_equal(fc_fetch_end(&ra, 0, 1 * MiB, GiB, &p), 1 * MiB);
	/* Sequential: the window. */
	ra.window = 8 * MiB;
	assert_int_equal(fc_fetch_end(&ra, 10 * MiB, 128 * KiB, GiB, &p), 18 * MiB);
	/* Clipped to the end of the file. */
	assert_int_equal(fc_fetch_end(&ra, GiB - 1 * MiB, 128 * KiB, GiB, &p), GiB);
	/* At or past the end: nothing more. */
	assert_int_equal(fc_fetch_end(&ra, GiB, 4 * KiB, GiB, &p), GiB);
	assert_int_equal(fc_fetch_end(&ra, 2 * GiB, 4 * KiB, GiB, &p), GiB);
	/* Empty file. */
	assert_int_equal(fc_fetch_end(&ra, 0, 4 * KiB, 0, &p), 0);
}

static void test_random_reads_fetch_small(void **state)
{
	struct fc_params p;
	struct fc_ra ra = { 0, 0, 0, 0 };

	(void)state;
	fc_params_default(&p, 16 * MiB);
	assert_int_equal(p.rand_align, 16 * KiB);
	/* The first read at 0 is the likely start of a stream: the floor. */
	fc_ra_note(&ra, 0, 4 * KiB, &p);
	assert_int_equal(ra.random, 0);
	assert_int_equal(fc_fetch_end(&ra, 0, 4 * KiB, GiB, &p), 256 * KiB);
	/* A jump: random; the request rounded up to 16 KiB. */
	fc_ra_note(&ra, 500 * MiB + 4 * KiB, 4 * KiB, &p);
	assert_int_equal(ra.random, 1);
	assert_int_equal(ra.window, 0);
	assert_int_equal(fc_fetch_end(&ra, 500 * MiB + 4 * KiB, 4 * KiB, GiB, &p), 500 * MiB + 16 * KiB);
	/* On a boundary already: exactly the request. */
	fc_ra_note(&ra, 7 * MiB + 12 * KiB, 4 * KiB, &p);
	assert_int_equal(fc_fetch_end(&ra, 7 * MiB + 12 * KiB, 4 * KiB, GiB, &p), 7 * MiB + 16 * KiB);
	/* Straddling a boundary: up to the next one. */
	fc_ra_note(&ra, 3 * MiB + 14 * KiB, 4 * KiB, &p);
	assert_int_equal(fc_fetch_end(&ra, 3 * MiB + 14 * KiB, 4 * KiB, GiB, &p), 3 * MiB + 32 * KiB);
	/* A large random read: the read itself. */
	fc_ra_note(&ra, 100 * MiB, 1 * MiB, &p);
	assert_int_equal(fc_fetch_end(&ra, 100 * MiB, 1 * MiB, GiB, &p), 101 * MiB);
	/* Clipped at the end of the file. */
	fc_ra_note(&ra, GiB - 2 * KiB, 4 * KiB, &p);
	assert_int_equal(fc_fetch_end(&ra, GiB - 2 * KiB, 4 * KiB, GiB, &p), GiB);
	/* The first read somewhere else than 0 is random too. */
	memset(&ra, 0, sizeof(ra));
	fc_ra_note(&ra, 64 * MiB, 4 * KiB, &p);
	assert_int_equal(ra.random, 1);
	assert_int_equal(fc_fetch_end(&ra, 64 * MiB, 4 * KiB, GiB, &p), 64 * MiB + 16 * KiB);
	/* Becoming sequential ends random mode and opens a window. */
	fc_ra_note(&ra, 64 * MiB + 4 * KiB, 4 * KiB, &p);
	assert_int_equal(ra.random, 0);
	assert_int_equal(ra.window, 1 * MiB);
	assert_int_equal(fc_fetch_end(&ra, 64 * MiB + 4 * KiB, 4 * KiB, GiB, &p), 65 * MiB + 4 * KiB);
	/* Small files stay whole whatever the pattern. */
	fc_ra_note(&ra, 1 * MiB, 4 * KiB, &p);
	assert_int_equal(fc_fetch_end(&ra, 1 * MiB, 4 * KiB, 3 * MiB, &p), 3 * MiB);
}

static void test_prefetch(void **state)
{
	struct fc_params p;
	struct fc_ra ra = { 0, 0, 0, 0 };
	uint64_t end = 0;

	(void)state;
	fc_params_default(&p, 16 * MiB);
	/* Not sequential: never. */
	assert_int_equal(fc_prefetch(&ra, 0, 1 * MiB, GiB, &p, &end), 0);
	ra.window = 4 * MiB;
	ra.started = 1;
	/* Far behind what is local: not yet. */
	assert_int_equal(fc_prefetch(&ra, 0, 10 * MiB, GiB, &p, &end), 0);
	/* Within one window of it: the next window. */
	assert_int_equal(fc_prefetch(&ra, 7 * MiB, 10 * MiB, GiB, &p, &end), 1);
	assert_int_equal(end, 14 * MiB);
	/* Right at the edge. */
	assert_int_equal(fc_prefetch(&ra, 10 * MiB, 10 * MiB, GiB, &p, &end), 1);
	assert_int_equal(end, 14 * MiB);
	/* Past what is local (a gap): the reader's own fetch handles it. */
	assert_int_equal(fc_prefetch(&ra, 11 * MiB, 10 * MiB, GiB, &p, &end), 0);
	/* Clipped at the end; nothing once everything is local. */
	assert_int_equal(fc_prefetch(&ra, GiB - 2 * MiB, GiB - 1 * MiB, GiB, &p, &end), 1);
	assert_int_equal(end, GiB);
	assert_int_equal(fc_prefetch(&ra, GiB - 2 * MiB, GiB, GiB, &p, &end), 0);
	/* Never more than max_window ahead. */
	ra.window = 64 * MiB;
	assert_int_equal(fc_prefetch(&ra, 0, 1 * MiB, GiB, &p, &end), 1);
	assert_int_equal(end, 17 * MiB);
}

static void test_evict_need(void **state)
{
	(void)state;
	assert_int_equal(fc_evict_need(5 * GiB, 10 * GiB, 100 * GiB, 1 * GiB), 0);
	assert_int_equal(fc_evict_need(12 * GiB, 10 * GiB, 100 * GiB, 1 * GiB), 2 * GiB);
	/* Free space is the tighter limit. */
	assert_int_equal(fc_evict_need(5 * GiB, 10 * GiB, 256 * MiB, 1 * GiB), 768 * MiB);
	/* Both: the larger. */
	assert_int_equal(fc_evict_need(11 * GiB, 10 * GiB, 0, 3 * GiB), 3 * GiB);
	/* Never more than what is cached. */
	assert_int_equal(fc_evict_need(100 * MiB, 10 * GiB, 0, 1 * GiB), 100 * MiB);
	assert_int_equal(fc_evict_need(0, 0, 0, 1 * GiB), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_sequential_window_grows_and_caps),
		cmocka_unit_test(test_fetch_end),
		cmocka_unit_test(test_random_reads_fetch_small),
		cmocka_unit_test(test_prefetch),
		cmocka_unit_test(test_evict_need),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
