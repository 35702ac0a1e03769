/* The resolve cache of the filesystem core (fs/fs_rc.c, used by
 * fs_resolve in fs/fs_dir.c) against a real durafs-emulator: a path
 * resolved again is answered from the cache, and a journal mutation, a
 * bump of its directory's epoch (forget, invalidation, stale mark) or the
 * directory passing its TTL each make the next resolve read the journal. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/journal.h"
#include "durafs/mopts.h"
#include "emu_harness.h"
#include "fs_fixture.h"
#include "unit_util.h"
#include "../../fs/fs_i.h"

#define BKT "fsrc"

static struct emuh *emu;
static struct http *http;

static int group_setup(void **state)
{
	(void)state;
	return ffx_group_start("test_fs_rc_emu", BKT, &emu, &http);
}

static int group_teardown(void **state)
{
	(void)state;
	ffx_group_stop(emu, http);
	return 0;
}

static int setup(void **state)
{
	*state = ffx_new(emu, http, BKT, "/tmp/fsrcemu.XXXXXX");
	return 0;
}

static int teardown(void **state)
{
	ffx_free(*state, http);
	return 0;
}

static void put(const char *name, const char *data)
{
	UT_OK(emuh_gcs_put(emu, BKT, name, data, strlen(data), &e_));
}

static uint64_t hits(struct fs_fx *f)
{
	return atomic_load(&f->fs->rc->hits);
}

static uint64_t misses(struct fs_fx *f)
{
	return atomic_load(&f->fs->rc->misses);
}

/* Resolve path (it must exist): its size, and whether the cache answered. */
static uint64_t resolve(struct fs_fx *f, const char *path, int *hit)
{
	struct fs_info in;
	uint64_t h = hits(f), m = misses(f);

	assert_int_equal(fs_resolve(f->fs, path, &in), 0);
	assert_int_equal(in.type, JNL_FILE);
	assert_int_equal(hits(f) + misses(f), h + m + 1);
	*hit = hits(f) == h + 1;
	return in.size;
}

/* Resolve path until the cache answers: the resolve that fetched the
 * listing stored it in the journal after taking the generation, so the
 * next one reads the journal again and stores a current entry. */
static void warm(struct fs_fx *f, const char *path)
{
	int hit, i;

	for (i = 0; i < 3; i++) {
		resolve(f, path, &hit);
		if (hit)
			return;
	}
	fail_msg("%s: no cache hit after 3 resolves", path);
}

/* The in-memory state of dir (it must exist). */
static struct fs_dstate *dstate_of(struct fs_fx *f, const char *dir)
{
	struct fs_dstate *d, *found = NULL;
	size_t i;

	pthread_mutex_lock(&f->fs->dir_lock);
	for (i = 0; f->fs->dirs && i < f->fs->dir_cap; i++)
		for (d = f->fs->dirs[i]; d; d = d->next)
			if (!strcmp(d->path, dir))
				found = d;
	pthread_mutex_unlock(&f->fs->dir_lock);
	assert_non_null(found);
	return found;
}

/* A second resolve is a hit with the same answer; a missing path is not
 * cached. */
static void test_hit(void **state)
{
	struct fs_fx *f = *state;
	struct fs_info in;
	int hit;

	put("d/a", "abc");
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_false(hit);
	/* The listing was fetched (stored) by that resolve: one more reads
	 * the journal, then the cache answers. */
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_false(hit);
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_true(hit);
	assert_int_equal(fs_resolve(f->fs, "d/none", &in), -ENOENT);
	assert_int_equal(fs_resolve(f->fs, "d/none", &in), -ENOENT);
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_true(hit);
}

/* Any journal mutation, even of another path, makes the next resolve read
 * the journal; a local change of the path itself is then seen. */
static void test_journal_change_misses(void **state)
{
	struct fs_fx *f = *state;
	uint64_t fid = 0, seq = 0;
	struct fs_info in;
	int hit;

	put("d/a", "abc");
	warm(f, "d/a");
	UT_OK(jnl_file_new(f->j, "d/other", JNL_FILE, "cn-other", NULL, 0, 1, &fid, &e_));
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_false(hit);
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_true(hit);
	/* The path's own journal row changes: the new mtime shows. */
	assert_int_equal(fs_resolve(f->fs, "d/other", &in), 0);
	assert_int_equal(in.mtime_ns, 1);
	UT_OK(jnl_setattr(f->j, fid, 7000000000LL, &seq, &e_));
	assert_int_equal(fs_resolve(f->fs, "d/other", &in), 0);
	assert_int_equal(in.mtime_ns, 7000000000LL);
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	assert_false(hit);
}

/* A bump of the directory's epoch alone makes the next resolve miss. */
static void test_dir_epoch_misses(void **state)
{
	struct fs_fx *f = *state;
	struct fs_dstate *d;
	int hit;

	put("d/a", "abc");
	warm(f, "d/a");
	d = dstate_of(f, "d");
	pthread_mutex_lock(&f->fs->dir_lock);
	d->epoch++;
	pthread_mutex_unlock(&f->fs->dir_lock);
	resolve(f, "d/a", &hit);
	assert_false(hit);
	resolve(f, "d/a", &hit);
	assert_true(hit);
}

/* The change poller's invalidation: the remote's new version is seen at
 * once, not the cached one. */
static void test_invalidate_shows_remote_change(void **state)
{
	struct fs_fx *f = *state;
	int hit;

	put("d/a", "abc");
	warm(f, "d/a");
	put("d/a", "abcdefg");
	/* Not yet known to the mount: the stored listing answers. */
	assert_int_equal(resolve(f, "d/a", &hit), 3);
	fs_dir_invalidate(f->fs, "d");
	assert_int_equal(resolve(f, "d/a", &hit), 7);
	assert_false(hit);
	/* A forget (a committed rename or rmdir) too. */
	warm(f, "d/a");
	UT_OK(fs_dir_forget(f->fs, "d", &e_));
	resolve(f, "d/a", &hit);
	assert_false(hit);
}

/* A directory past its TTL is refetched by the next resolve (which sees
 * the remote's change), never answered from the cache. */
static void test_ttl_misses(void **state)
{
	struct fs_fx *f = *state;
	struct fs_dstate *d;
	int hit;

	put("d/a", "abc");
	warm(f, "d/a");
	put("d/a", "abcd");
	d = dstate_of(f, "d");
	pthread_mutex_lock(&f->fs->dir_lock);
	d->fetched_ms = fs_now_ms() - f->fs->ttl_ms - 1;
	pthread_mutex_unlock(&f->fs->dir_lock);
	assert_int_equal(resolve(f, "d/a", &hit), 4);
	assert_false(hit);
	warm(f, "d/a");
}

/* jnl_gen: reads leave it, a mutation changes it. */
static void test_gen(void **state)
{
	struct fs_fx *f = *state;
	uint64_t g, fid = 0;
	struct err e;

	g = jnl_gen(f->j);
	assert_int_equal(jnl_file_lookup(f->j, "x", &fid, &e), -1);
	assert_int_equal(jnl_gen(f->j), g);
	UT_OK(jnl_file_new(f->j, "x", JNL_FILE, "cn-x", NULL, 0, 1, &fid, &e_));
	assert_true(jnl_gen(f->j) != g);
}

/* Open inode ino of path read-only and read it whole: its size; *whole
 * says whether the open found the content whole in the cache. */
static size_t open_read(struct fs_fx *f, uint64_t ino, const char *path, int *whole)
{
	struct fs_ofile *of = NULL;
	char buf[64], *mem = NULL;
	ssize_t n;
	size_t got = 0;

	assert_int_equal(fs_of_get(f->fs, ino, path, 0, 0, &of), 0);
	pthread_mutex_lock(&of->mu);
	*whole = of->whole;
	pthread_mutex_unlock(&of->mu);
	for (;;) {
		n = fs_of_read(f->fs, of, sizeof(buf), (off_t)got, &mem);
		assert_true(n >= 0);
		if (n == 0)
			break;
		if (mem) {
			memcpy(buf, mem, (size_t)n);
			free(mem);
			mem = NULL;
		} else {
			assert_int_equal(pread(of->fd, buf, (size_t)n, (off_t)got), n);
		}
		assert_memory_equal(buf, "abcdefgh" + got, (size_t)n);
		got += (size_t)n;
	}
	fs_of_put(f->fs, of);
	return got;
}

/* An open of a clean file found whole before, the journal unchanged since,
 * skips its row and the cache map; dropping the cached copy (a journal
 * change) makes the next open look again, and it fetches. */
static void test_open_whole(void **state)
{
	struct fs_fx *f = *state;
	struct fs_info in;
	uint64_t w;
	int whole;

	put("d/w", "abcdefgh");
	warm(f, "d/w");
	assert_int_equal(open_read(f, 100, "d/w", &whole), 8);
	assert_false(whole);
	/* The fetch changed the journal; the next open finds the content
	 * whole in the map and notes it. */
	warm(f, "d/w");
	w = atomic_load(&f->fs->rc->whole_hits);
	assert_int_equal(open_read(f, 100, "d/w", &whole), 8);
	assert_true(whole);
	assert_int_equal(atomic_load(&f->fs->rc->whole_hits), w);
	assert_int_equal(open_read(f, 100, "d/w", &whole), 8);
	assert_true(whole);
	assert_int_equal(atomic_load(&f->fs->rc->whole_hits), w + 1);
	/* Dropped from the cache: not whole, fetched again. */
	assert_int_equal(fs_resolve(f->fs, "d/w", &in), 0);
	assert_true(in.fid != 0);
	{
		struct jnl_file jf;

		memset(&jf, 0, sizeof(jf));
		UT_OK(jnl_file_get(f->j, in.fid, &jf, &e_));
		assert_int_equal(fs_cache_drop_one(f->fs, in.fid, jf.cache_name, 8), 0);
		jnl_file_release(&jf);
	}
	assert_int_equal(open_read(f, 100, "d/w", &whole), 8);
	assert_false(whole);
	assert_int_equal(atomic_load(&f->fs->rc->whole_hits), w + 1);
}

/* The table alone: an entry of another generation is dropped; beyond its
 * size the table starts over. */
static void test_table(void **state)
{
	struct fs_rc *rc = NULL;
	struct fs_info in, out;
	struct fs_dstate *d = NULL, dd;
	uint64_t ep = 0;
	char path[32];
	int i;

	(void)state;
	assert_int_equal(fs_rc_new(&rc), 0);
	memset(&in, 0, sizeof(in));
	memset(&dd, 0, sizeof(dd));
	in.size = 5;
	snprintf(in.remote, sizeof(in.remote), "g1.1:x");
	fs_rc_put(rc, "a/b", 10, &in, &dd, 3);
	assert_int_equal(fs_rc_get(rc, "a/b", 10, &out, &d, &ep), 1);
	assert_int_equal(out.size, 5);
	assert_string_equal(out.remote, "g1.1:x");
	assert_ptr_equal(d, &dd);
	assert_int_equal(ep, 3);
	assert_int_equal(fs_rc_get(rc, "a/c", 10, &out, &d, &ep), 0);
	assert_int_equal(fs_rc_get(rc, "a/b", 11, &out, &d, &ep), 0);
	assert_int_equal(rc->n, 0);
	assert_int_equal(fs_rc_get(rc, "a/b", 10, &out, &d, &ep), 0);
	for (i = 0; i < 20000; i++) {
		snprintf(path, sizeof(path), "f%d", i);
		fs_rc_put(rc, path, 1, &in, &dd, 0);
	}
	assert_true(rc->n > 0 && rc->n <= 16384);
	assert_int_equal(fs_rc_get(rc, "f19999", 1, &out, &d, &ep), 1);
	fs_rc_free(rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test_setup_teardown(test_gen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_change_misses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_epoch_misses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_shows_remote_change, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ttl_misses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_whole, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
