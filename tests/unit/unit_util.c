/* Helpers shared by the cmocka unit tests (unit_util.h): a test RSA key,
 * the clocks, temporary files with known content, a read sink and
 * preconditions.
 * Test-only code: every failure ends the current test through cmocka. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/clock.h"
#include "durafs/journal.h"
#include "unit_util.h"

const char ut_rsa_key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBAKAC0UNz7U+U8hvY\n"
	"Cqvju13Dh+EE8lmKSm0pBWVayPCVx3RIN2DshAtl/uTJhJJ/8vLqQ2Mj9Wy6XJLK\n"
	"wu0jfAZQpOCW7fJzMgPpqqkFBBZAVQk5aeZCdmP+wf9hqjj8R0ErbTvlULzkFXUD\n"
	"ldoExz1D42kFnhatVYovZ1xysz15AgMBAAECgYBZSXkwJI41rC11cBZ0WD2DUsqN\n"
	"u87oPAzP4OYL6p7Z8Ro9Ptb4FMKSAbY8QF7jyNXuyt4Tgks/ArcJim8/GF/p3Dvb\n"
	"Num3AQJsK/Sig8t83JKNkFQ+s4Vd3ThqtBBBadWstP0yRnv+YCLJUuoS11RuOtZj\n"
	"u7dCgrnATvpEDNRxyQJBANAThCj3ax77aHLWNp+Yw6n0db8DyTeCgRsfRGX3ToiC\n"
	"/AN013XbBNpUbi4upjxAYDi2td/2I1dIDHvqCrL1wOcCQQDE3U3LKHuwfrOrIVk7\n"
	"8xhmlV8GoTPZ77C/xz6Olf6ObhtjSpESRTNzt0zTDiWBxezMpNILqgHMftihLDwn\n"
	"CGKfAkAnC6J/NX6Kf87nzb7OUBJXcCIwR/uYSQsFFeb142R/RWUZGPHdkc3lUnai\n"
	"f+p93+6udcrHTh7vn/uHvTFox6j9AkBw8UIzXttvi5FKicxnH3WNTP8Cj7NuwhvW\n"
	"OtoB9b3gOv1NfrcyEy+MoMnbgA82n7XWRm0XMgbsKo3gEb/E6QOjAkB22FTgNWZk\n"
	"EdIphHpDG1b+jd2u/VErj53L+v4JCmbXBdvKE4a6VhBV/ipm/mPD79/5fHi7QdWt\n"
	"aQc6Sbh5X0xo\n"
	"-----END PRIVATE KEY-----\n";

int64_t ut_now_ms(void)
{
	return clk_mono_ms();
}

int64_t ut_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ut_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* mkstemp + unlink; fails the test on error. */
static int anon_file(void)
{
	char tmpl[] = "/tmp/durafs-unit-XXXXXX";
	int fd = mkstemp(tmpl);

	assert_true(fd >= 0);
	unlink(tmpl);
	return fd;
}

static void fill_meta(int fd, struct be_meta *m, long mtime)
{
	struct err e;

	memset(m, 0, sizeof(*m));
	if (be_meta_from_fd(fd, m, &e) < 0)
		fail_msg("meta: %s", e.msg);
	m->mtime.tv_sec = mtime;
}

unsigned char *ut_pattern(size_t n, unsigned seed)
{
	unsigned char *p = malloc(n ? n : 1);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 2654435761u + seed * 40503u) >> 11);
	return p;
}

void ut_write_at(const char *path, const void *data, size_t n, off_t off, int trunc)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (trunc ? O_TRUNC : 0), 0600);
	const char *p = data;
	ssize_t w;

	assert_true(fd >= 0);
	while (n) {
		w = pwrite(fd, p, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		assert_true(w > 0);
		p += w;
		off += w;
		n -= (size_t)w;
	}
	assert_int_equal(close(fd), 0);
}

int ut_pattern_file(size_t n, unsigned seed, struct be_meta *m)
{
	unsigned char *buf = ut_pattern(n, seed);
	int fd;

	fd = anon_file();
	assert_int_equal(pwrite(fd, buf, n, 0), (ssize_t)n);
	free(buf);
	fill_meta(fd, m, 1700000000L + (long)seed);
	return fd;
}

int ut_str_file(const char *s, struct be_meta *m)
{
	int fd = anon_file();

	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	fill_meta(fd, m, 1700000000L);
	return fd;
}

struct be_pre ut_pre_absent(void)
{
	struct be_pre p;

	memset(&p, 0, sizeof(p));
	p.kind = BE_PRE_ABSENT;
	return p;
}

struct be_pre ut_pre_match(const struct be_version *v)
{
	struct be_pre p;

	memset(&p, 0, sizeof(p));
	p.kind = BE_PRE_MATCH;
	p.ver = *v;
	return p;
}

void ut_put_str(struct be *b, const char *path, const char *s, struct be_entry *out)
{
	struct be_pre pre = ut_pre_absent();
	struct be_meta m;
	struct err e;
	int fd = ut_str_file(s, &m);

	if (be_put(b, path, fd, &m, &pre, out, &e) < 0)
		fail_msg("put %s: %s", path, e.msg);
	close(fd);
}

int ut_buf_sink(void *ud, const void *data, size_t len)
{
	struct ut_buf *b = ud;

	if (b->n + len + 1 > b->cap) {
		b->cap = (b->n + len + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, data, len);
	b->n += len;
	b->p[b->n] = '\0';
	return 0;
}

void ut_check_remote_fd(struct be *b, const char *path, const struct be_version *ver,
			int fd, size_t n)
{
	struct ut_buf got = { 0 };
	char *want = malloc(n ? n : 1);
	uint64_t g = 0;
	struct err e;

	assert_non_null(want);
	assert_int_equal(pread(fd, want, n, 0), (ssize_t)n);
	if (be_read(b, path, ver, 0, UINT64_MAX, ut_buf_sink, &got, &g, &e) < 0)
		fail_msg("read %s: %s", path, e.msg);
	assert_int_equal(got.n, n);
	assert_int_equal(g, n);
	if (n)
		assert_memory_equal(got.p, want, n);
	free(got.p);
	free(want);
}

void ut_check_remote_mem(struct be *b, const char *path, const void *data, size_t n)
{
	struct ut_buf got = { 0 };
	struct err e;

	if (be_read(b, path, NULL, 0, UINT64_MAX, ut_buf_sink, &got, NULL, &e) < 0)
		fail_msg("read %s: %s", path, e.msg);
	if (got.n != n)
		fail_msg("%s: remote has %zu bytes, want %zu", path, got.n, n);
	if (n && memcmp(got.p, data, n) != 0)
		fail_msg("%s: remote content differs", path);
	free(got.p);
}

void ut_ok_at(int rc, const struct err *e, const char *what, int line)
{
	if (rc != 0) {
		print_message("line %d: %s failed (%d): %s\n", line, what, rc, e->msg);
		fail();
	}
}

int ut_jnl_setup(void **state)
{
	struct ut_jnl_fx *f = calloc(1, sizeof(*f));
	struct err e;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/durafs-jnl.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/journal.db", f->dir);
	ut_ok_at(jnl_open(f->path, NULL, &f->j, NULL, &e), &e, "jnl_open", __LINE__);
	*state = f;
	return 0;
}

int ut_jnl_teardown(void **state)
{
	struct ut_jnl_fx *f = *state;
	char cmd[256];

	jnl_close(f->j);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}
