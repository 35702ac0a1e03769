/* Unit tests for sync/backend.c: POSIX name and path rules, list sorting and
 * merging (directory wins), version text forms, RFC 3339 times, chunk
 * arithmetic, HTTP range headers, backoff and checksumming a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/http.h"

static void test_name_valid(void **state)
{
	char n255[256], n256[257];

	(void)state;
	memset(n255, 'x', 255);
	n255[255] = '\0';
	memset(n256, 'x', 256);
	n256[256] = '\0';
	assert_true(be_name_valid("a", 1));
	assert_true(be_name_valid("...", 3));
	assert_true(be_name_valid(".hidden", 7));
	assert_true(be_name_valid("with space\tand tab", 18));
	assert_true(be_name_valid(n255, 255));
	assert_false(be_name_valid(n256, 256));
	assert_false(be_name_valid("", 0));
	assert_false(be_name_valid(".", 1));
	assert_false(be_name_valid("..", 2));
	assert_false(be_name_valid("a/b", 3));
	assert_false(be_name_valid("a\0b", 3));
	/* Only the first len bytes count. */
	assert_true(be_name_valid("ab/", 2));
}

static void test_path_valid(void **state)
{
	(void)state;
	assert_true(be_path_valid(""));
	assert_true(be_path_valid("a"));
	assert_true(be_path_valid("a/b/c.txt"));
	assert_true(be_path_valid("a/.../b"));
	assert_false(be_path_valid(NULL));
	assert_false(be_path_valid("/a"));
	assert_false(be_path_valid("a/"));
	assert_false(be_path_valid("a//b"));
	assert_false(be_path_valid("a/./b"));
	assert_false(be_path_valid("a/../b"));
	assert_false(be_path_valid(".."));
	assert_string_equal(be_basename("a/b/c"), "c");
	assert_string_equal(be_basename("c"), "c");
	assert_string_equal(be_basename(""), "");
}

static struct be_entry *add(struct be_list *l, const char *name, enum be_type t,
			    int implicit, int64_t gen)
{
	struct be_entry *e = be_list_add(l, name, strlen(name));

	assert_non_null(e);
	e->type = t;
	e->implicit = implicit;
	e->ver.gen = gen;
	return e;
}

static void test_list_merge(void **state)
{
	struct be_list l = { 0 };
	const struct be_entry *e;

	(void)state;
	add(&l, "zeta", BE_FILE, 0, 5);
	add(&l, "dir", BE_DIR, 1, 0);       /* prefix dir/ */
	add(&l, "both", BE_FILE, 0, 7);     /* file "both" and prefix "both/" */
	add(&l, "dir", BE_DIR, 0, 11);      /* marker dir/ (after the prefix) */
	add(&l, "alpha", BE_FILE, 0, 1);
	add(&l, "both", BE_DIR, 1, 0);
	add(&l, "only-prefix", BE_DIR, 1, 0);
	add(&l, "alpha", BE_FILE, 0, 2);    /* duplicate file: first kept */
	be_list_finish(&l);
	assert_int_equal(l.n, 5);
	assert_string_equal(l.v[0].name, "alpha");
	assert_string_equal(l.v[1].name, "both");
	assert_string_equal(l.v[2].name, "dir");
	assert_string_equal(l.v[3].name, "only-prefix");
	assert_string_equal(l.v[4].name, "zeta");
	/* The directory wins over the file of the same name. */
	assert_int_equal(l.v[1].type, BE_DIR);
	assert_int_equal(l.shadowed, 1);
	/* Marker and prefix merge into one explicit directory (marker data). */
	assert_int_equal(l.v[2].type, BE_DIR);
	assert_int_equal(l.v[2].implicit, 0);
	assert_int_equal(l.v[2].ver.gen, 11);
	assert_int_equal(l.v[3].implicit, 1);
	e = be_list_find(&l, "zeta");
	assert_non_null(e);
	assert_int_equal(e->ver.gen, 5);
	assert_null(be_list_find(&l, "nope"));
	assert_null(be_list_find(&l, ""));
	be_list_release(&l);
	assert_int_equal(l.n, 0);
	assert_null(l.v);
	/* Empty and released lists are fine. */
	be_list_finish(&l);
	assert_null(be_list_find(&l, "a"));
	be_list_release(&l);
}

static void test_list_large_sorted(void **state)
{
	struct be_list l = { 0 };
	char name[32];
	size_t i;

	(void)state;
	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "f%05zu", (i * 7919) % 5000);
		add(&l, name, BE_FILE, 0, (int64_t)i + 1);
	}
	be_list_finish(&l);
	assert_int_equal(l.n, 5000);
	for (i = 1; i < l.n; i++)
		assert_true(strcmp(l.v[i - 1].name, l.v[i].name) < 0);
	assert_non_null(be_list_find(&l, "f04999"));
	be_list_release(&l);
}

static void test_entry_copy(void **state)
{
	struct be_entry a, b;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.name = strdup("link");
	a.type = BE_SYMLINK;
	a.symlink_target = strdup("../target");
	a.content_type = NULL;
	a.ver.gen = 42;
	assert_int_equal(be_entry_copy(&b, &a, NULL), 0);
	assert_string_equal(b.name, "link");
	assert_string_equal(b.symlink_target, "../target");
	assert_null(b.content_type);
	assert_ptr_not_equal(a.name, b.name);
	assert_int_equal(b.ver.gen, 42);
	be_entry_release(&a);
	be_entry_release(&b);
	assert_null(b.name);
	be_entry_release(NULL);
}

static void test_version_text(void **state)
{
	struct be_version v, w;
	char buf[256];

	(void)state;
	memset(&v, 0, sizeof(v));
	v.gen = 1714566896123456;
	v.metagen = 3;
	assert_int_equal(be_version_format(&v, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "g1714566896123456.3");
	assert_int_equal(be_version_parse(buf, &w), 0);
	assert_true(be_version_equal(&v, &w));
	snprintf(v.id, sizeof(v.id), "1AbC-_xyz:with:colons");
	v.metagen = 0;
	assert_int_equal(be_version_format(&v, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "g1714566896123456.0:1AbC-_xyz:with:colons");
	assert_int_equal(be_version_parse(buf, &w), 0);
	assert_true(be_version_equal(&v, &w));
	assert_int_equal(be_version_format(&v, buf, 10), -1);
	w.gen = 99;
	assert_int_equal(be_version_parse("", &w), -1);
	assert_int_equal(be_version_parse("g", &w), -1);
	assert_int_equal(be_version_parse("g12", &w), -1);
	assert_int_equal(be_version_parse("g12.", &w), -1);
	assert_int_equal(be_version_parse("g12.3x", &w), -1);
	assert_int_equal(be_version_parse("g12.3:", &w), -1);
	assert_int_equal(be_version_parse("x12.3", &w), -1);
	assert_int_equal(be_version_parse("g99999999999999999999.1", &w), -1);
	assert_int_equal(w.gen, 99);  /* untouched on failure */
	v.gen = 1;
	w = v;
	w.metagen = 1;
	assert_false(be_version_equal(&v, &w));
}

static void test_rfc3339(void **state)
{
	struct timespec ts;

	(void)state;
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:34:56.789Z", &ts), 0);
	assert_int_equal(ts.tv_sec, 1714566896);
	assert_int_equal(ts.tv_nsec, 789000000);
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:34:56Z", &ts), 0);
	assert_int_equal(ts.tv_sec, 1714566896);
	assert_int_equal(ts.tv_nsec, 0);
	assert_int_equal(be_parse_rfc3339("2024-05-01T14:34:56.5+02:00", &ts), 0);
	assert_int_equal(ts.tv_sec, 1714566896);
	assert_int_equal(ts.tv_nsec, 500000000);
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:04:56-00:30", &ts), 0);
	assert_int_equal(ts.tv_sec, 1714566896);
	assert_int_equal(be_parse_rfc3339("1970-01-01T00:00:00.000000001Z", &ts), 0);
	assert_int_equal(ts.tv_sec, 0);
	assert_int_equal(ts.tv_nsec, 1);
	assert_int_equal(be_parse_rfc3339("2024-05-01 12:34:56Z", &ts), 0);
	assert_int_equal(be_parse_rfc3339(NULL, &ts), -1);
	assert_int_equal(be_parse_rfc3339("", &ts), -1);
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:34:56", &ts), -1);
	assert_int_equal(be_parse_rfc3339("2024-13-01T12:34:56Z", &ts), -1);
	assert_int_equal(be_parse_rfc3339("2024-05-01T25:34:56Z", &ts), -1);
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:34:56.Z", &ts), -1);
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:34:56Zjunk", &ts), -1);
	assert_int_equal(be_parse_rfc3339("2024-05-01T12:34:56+0200", &ts), -1);
	assert_int_equal(be_parse_rfc3339("yyyy-05-01T12:34:56Z", &ts), -1);
}

/* The sink behind test_rdwin: collects into a buffer; refuses once
 * refuse_at bytes were delivered (0: never). */
struct rdw_out {
	char b[64];
	size_t n, refuse_at;
};

static int rdw_sink(void *ud, const void *data, size_t len)
{
	struct rdw_out *o = ud;

	if (o->refuse_at && o->n >= o->refuse_at)
		return 1;
	assert_true(o->n + len <= sizeof(o->b));
	memcpy(o->b + o->n, data, len);
	o->n += len;
	return 0;
}

static void rdw_init(struct be_rdwin *w, struct rdw_out *o, uint64_t skip_to, uint64_t end)
{
	memset(w, 0, sizeof(*w));
	memset(o, 0, sizeof(*o));
	w->sink = rdw_sink;
	w->ud = o;
	w->skip_to = skip_to;
	w->end = end;
	w->pos = skip_to;
}

static void test_rdwin(void **state)
{
	const char *obj = "0123456789abcdefghij";
	struct be_rdwin w;
	struct rdw_out o;

	(void)state;
	/* [5, 15) in pieces; the transfer is cut after 7 and restarted at
	 * skip_to; the last piece runs past end: stop, deliver only up to end. */
	rdw_init(&w, &o, 5, 15);
	assert_int_equal(be_rdwin_feed(&w, obj + 5, 3), 0);
	assert_int_equal(be_rdwin_feed(&w, obj + 8, 4), 0);
	assert_int_equal(w.skip_to, 12);
	w.pos = w.skip_to;
	assert_int_equal(be_rdwin_feed(&w, obj + 12, 8), 1);
	assert_true(w.enough);
	assert_false(w.user_abort);
	assert_int_equal(w.delivered, 10);
	assert_int_equal(o.n, 10);
	assert_memory_equal(o.b, "56789abcde", 10);
	/* A whole 200 reply from 0 for a read at 5: the head is skipped. */
	rdw_init(&w, &o, 5, UINT64_MAX);
	w.pos = 0;
	assert_int_equal(be_rdwin_feed(&w, obj, 4), 0);
	assert_int_equal(o.n, 0);
	assert_int_equal(be_rdwin_feed(&w, obj + 4, 16), 0);
	assert_int_equal(w.pos, 20);
	assert_int_equal(w.delivered, 15);
	assert_memory_equal(o.b, obj + 5, 15);
	/* Bytes at or past end only: enough, nothing delivered. */
	rdw_init(&w, &o, 10, 10);
	assert_int_equal(be_rdwin_feed(&w, obj + 10, 2), 1);
	assert_true(w.enough);
	assert_int_equal(w.delivered, 0);
	/* The sink refuses: user_abort, and what it refused is not counted. */
	rdw_init(&w, &o, 0, UINT64_MAX);
	o.refuse_at = 4;
	assert_int_equal(be_rdwin_feed(&w, obj, 4), 0);
	assert_int_equal(be_rdwin_feed(&w, obj + 4, 4), 1);
	assert_true(w.user_abort);
	assert_false(w.enough);
	assert_int_equal(w.delivered, 4);
	assert_int_equal(w.skip_to, 4);
}

static void test_chunks(void **state)
{
	const uint64_t K256 = 256 * 1024, chunk = 16 * 1024 * 1024;
	uint64_t total = chunk * 3 + 1, p = 0, n, sent = 0;
	int last = -1, chunks = 0;

	(void)state;
	assert_true(be_chunk_size_valid(K256));
	assert_true(be_chunk_size_valid(chunk));
	assert_false(be_chunk_size_valid(0));
	assert_false(be_chunk_size_valid(K256 + 1));
	assert_false(be_chunk_size_valid(100000));
	for (;;) {
		n = be_chunk_next(total, p, chunk, &last);
		chunks++;
		if (!last)
			assert_int_equal(n % K256, 0);
		p += n;
		sent += n;
		if (last)
			break;
	}
	assert_int_equal(chunks, 4);
	assert_int_equal(sent, total);
	/* The last chunk: exactly 1 byte; a file of exactly one chunk is one
	 * last chunk; a server persisting less makes the next chunk start
	 * earlier, still chunk-sized. */
	assert_int_equal(be_chunk_next(total, chunk * 3, chunk, &last), 1);
	assert_int_equal(last, 1);
	assert_int_equal(be_chunk_next(chunk, 0, chunk, &last), chunk);
	assert_int_equal(last, 1);
	assert_int_equal(be_chunk_next(total, K256, chunk, &last), chunk);
	assert_int_equal(last, 0);
	assert_int_equal(be_chunk_next(0, 0, chunk, &last), 0);
	assert_int_equal(last, 1);
	assert_int_equal(be_chunk_next(10, 20, chunk, &last), 0);
	assert_int_equal(last, 1);
}

/* The resumable-upload and ranged-read headers both backends share: the
 * 308 Range, a 206's Content-Range and the Content-Range a chunk sends. */
static void test_http_ranges(void **state)
{
	uint64_t p = 99, a, b, t;
	char buf[96];

	(void)state;
	assert_int_equal(be_range_persisted(NULL, &p), 0);
	assert_int_equal(p, 0);
	assert_int_equal(be_range_persisted("bytes=0-262143", &p), 0);
	assert_int_equal(p, 262144);
	assert_int_equal(be_range_persisted("bytes=0-0", &p), 0);
	assert_int_equal(p, 1);
	assert_int_equal(be_range_persisted("bytes=5-10", &p), -1);
	assert_int_equal(be_range_persisted("bytes=0-", &p), -1);
	assert_int_equal(be_range_persisted("bytes 0-10", &p), -1);
	assert_int_equal(be_range_persisted("bytes=0-10x", &p), -1);
	assert_int_equal(be_range_persisted("bytes=0- 10", &p), -1);
	assert_int_equal(be_range_persisted("bytes=0--10", &p), -1);
	assert_int_equal(be_range_persisted("bytes=0-99999999999999999999999", &p), -1);
	assert_int_equal(be_range_persisted("bytes=0-18446744073709551615", &p), -1);

	assert_int_equal(be_content_range_parse("bytes 0-9/100", &a, &b, &t), 0);
	assert_true(a == 0 && b == 9 && t == 100);
	assert_int_equal(be_content_range_parse("bytes 10-19/*", &a, &b, &t), 0);
	assert_true(a == 10 && b == 19 && t == UINT64_MAX);
	assert_int_equal(be_content_range_parse("bytes 10-9/100", &a, &b, &t), -1);
	assert_int_equal(be_content_range_parse("bytes 0-100/100", &a, &b, &t), -1);
	assert_int_equal(be_content_range_parse("bytes */100", &a, &b, &t), -1);
	assert_int_equal(be_content_range_parse("bytes 0-9/100 ", &a, &b, &t), -1);
	assert_int_equal(be_content_range_parse("bytes 0-9/*x", &a, &b, &t), -1);
	assert_int_equal(be_content_range_parse(NULL, &a, &b, &t), -1);

	be_content_range_header(buf, sizeof(buf), 0, 0, 12345);
	assert_string_equal(buf, "Content-Range: bytes */12345");
	be_content_range_header(buf, sizeof(buf), 262144, 262144, 600000);
	assert_string_equal(buf, "Content-Range: bytes 262144-524287/600000");
	be_content_range_header(buf, sizeof(buf), 0, 1, 1);
	assert_string_equal(buf, "Content-Range: bytes 0-0/1");
	be_content_range_header(buf, sizeof(buf), UINT64_MAX - 2, 1, UINT64_MAX - 1);
	assert_string_equal(buf, "Content-Range: bytes 18446744073709551613-"
			    "18446744073709551613/18446744073709551614");
	/* a size not known yet (a streamed upload) */
	be_content_range_header(buf, sizeof(buf), 262144, 262144, UINT64_MAX);
	assert_string_equal(buf, "Content-Range: bytes 262144-524287/*");
	be_content_range_header(buf, sizeof(buf), 0, 0, UINT64_MAX);
	assert_string_equal(buf, "Content-Range: bytes */*");
}

/* Jitter stays within [0, max]; a backoff on a cancelled handle ends at once
 * (were it not cut short, this one would sleep about 24 minutes). */
static void test_jitter_backoff(void **state)
{
	struct http_opts ho;
	struct http *h = NULL;
	struct err e;
	long v;
	int i, seen_nonzero = 0;

	(void)state;
	assert_int_equal(be_jitter(0), 0);
	assert_int_equal(be_jitter(-5), 0);
	for (i = 0; i < 1000; i++) {
		v = be_jitter(7);
		assert_true(v >= 0 && v <= 7);
		seen_nonzero |= v != 0;
	}
	assert_true(seen_nonzero);
	memset(&ho, 0, sizeof(ho));
	assert_int_equal(http_new(&ho, &h, &e), 0);
	http_cancel_all(h);
	be_backoff(h, 60000, 9);
	assert_true(http_canceled(h));
	http_free(h);
}

/* be_pread_full, be_load_for_put (both checksums, too large, changed,
 * short file) and be_symlink_meta. */
static void test_upload_file_helpers(void **state)
{
	char tmpl[] = "/tmp/durafs-test-backend-XXXXXX";
	struct timespec mt = { 1700000000, 5 };
	struct be_meta m;
	struct err e;
	char buf[16], *data = NULL;
	int fd;

	(void)state;
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	assert_int_equal(write(fd, "123456789", 9), 9);
	assert_int_equal(be_pread_full(fd, buf, 4, 3, &e), 0);
	assert_memory_equal(buf, "4567", 4);
	assert_int_equal(be_pread_full(fd, buf, 8, 3, &e), -1);
	assert_int_equal(e.code, ERR_IO);
	memset(&m, 0, sizeof(m));
	assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	assert_int_equal(be_load_for_put(fd, &m, 9, 1, "a", &data, &e), 0);
	assert_memory_equal(data, "123456789", 9);
	free(data);
	assert_int_equal(be_load_for_put(fd, &m, 9, 0, "a", &data, &e), 0);
	free(data);
	assert_int_equal(be_load_for_put(fd, &m, 8, 0, "a", &data, &e), -1);
	assert_null(data);
	assert_int_equal(e.code, ERR_INVAL);
	assert_non_null(strstr(e.msg, "too large"));
	assert_int_equal(pwrite(fd, "X", 1, 0), 1);
	assert_int_equal(be_load_for_put(fd, &m, 9, 1, "a", &data, &e), -1);
	assert_non_null(strstr(e.msg, "content changed"));
	assert_int_equal(be_load_for_put(fd, &m, 9, 0, "a", &data, &e), -1);
	assert_non_null(strstr(e.msg, "content changed"));
	assert_int_equal(ftruncate(fd, 4), 0);
	assert_int_equal(be_load_for_put(fd, &m, 9, 0, "a", &data, &e), -1);
	assert_null(data);
	assert_int_equal(e.code, ERR_IO);
	close(fd);
	assert_int_equal(be_symlink_meta("l", "123456789", &mt, "text/plain", &m, &e), 0);
	assert_int_equal(m.size, 9);
	assert_int_equal(m.crc32c, 0xE3069283);
	assert_int_equal(m.mtime.tv_sec, 1700000000);
	assert_string_equal(m.content_type, "text/plain");
	assert_int_equal(be_symlink_meta("l", "", NULL, "text/plain", &m, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(be_symlink_meta("l", NULL, NULL, "text/plain", &m, &e), -1);
}

static void test_meta_from_fd(void **state)
{
	static const unsigned char md5_123[16] = {
		0x25, 0xf9, 0xe7, 0x94, 0x32, 0x3b, 0x45, 0x38,
		0x85, 0xf5, 0x18, 0x1f, 0x1b, 0x62, 0x4d, 0x0b,
	};
	char tmpl[] = "/tmp/durafs-test-backend-XXXXXX";
	struct be_meta m;
	struct err e;
	unsigned char *big;
	size_t bigsz = 3 * 1024 * 1024 + 17, i;
	unsigned char md5[16];
	int fd;

	(void)state;
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	memset(&m, 0, sizeof(m));
	assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	assert_int_equal(m.size, 0);
	assert_int_equal(m.crc32c, 0);
	assert_int_equal(write(fd, "123456789", 9), 9);
	assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	assert_int_equal(m.size, 9);
	assert_int_equal(m.crc32c, 0xE3069283);
	assert_memory_equal(m.md5, md5_123, 16);
	/* Larger than the internal buffer. */
	big = malloc(bigsz);
	assert_non_null(big);
	for (i = 0; i < bigsz; i++)
		big[i] = (unsigned char)(i * 31 + 7);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, big, bigsz, 0), (ssize_t)bigsz);
	assert_int_equal(be_meta_from_fd(fd, &m, &e), 0);
	assert_int_equal(m.size, bigsz);
	assert_int_equal(m.crc32c, ck_crc32c(0, big, bigsz));
	ck_md5(big, bigsz, md5);
	assert_memory_equal(m.md5, md5, 16);
	free(big);
	close(fd);
	/* A bad fd is an I/O error, not a crash. */
	assert_int_equal(be_meta_from_fd(-1, &m, &e), -1);
	assert_int_equal(e.code, ERR_IO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_path_valid),
		cmocka_unit_test(test_list_merge),
		cmocka_unit_test(test_list_large_sorted),
		cmocka_unit_test(test_entry_copy),
		cmocka_unit_test(test_version_text),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_http_ranges),
		cmocka_unit_test(test_jitter_backoff),
		cmocka_unit_test(test_rdwin),
		cmocka_unit_test(test_meta_from_fd),
		cmocka_unit_test(test_upload_file_helpers),
	};

	return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
