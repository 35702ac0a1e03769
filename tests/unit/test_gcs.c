/* Unit tests for the pure parts of sync/gcs.c: source and endpoint parsing,
 * object names and their URL encoding, object and list-page parsing on
 * real-shaped replies (and malformed ones), merging pages into one listing
 * with invalid names skipped, header parsing and error classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/enc.h"
#include "durafs/gcs.h"
#include "durafs/http.h"

static void test_parse_source(void **state)
{
	char *b = NULL, *p = NULL;
	struct err e;
	static const char *const bad[] = {
		"bucket", "gs:/bucket", "s3://bucket", "gs://", "gs://B", "gs://ab",
		"gs://-bucket", "gs://bucket-", "gs://bu..cket", "gs://bucket//x",
		"gs://bucket/a//b", "gs://bucket/./x", "gs://bucket/x/..", "gs://bu cket",
		NULL,
	};
	size_t i;

	(void)state;
	assert_int_equal(gcs_parse_source("gs://my-bucket", &b, &p, &e), 0);
	assert_string_equal(b, "my-bucket");
	assert_string_equal(p, "");
	free(b);
	free(p);
	assert_int_equal(gcs_parse_source("gs://my-bucket/", &b, &p, &e), 0);
	assert_string_equal(p, "");
	free(b);
	free(p);
	assert_int_equal(gcs_parse_source("gs://my_bucket.example.com/data/run 1/", &b, &p, &e), 0);
	assert_string_equal(b, "my_bucket.example.com");
	assert_string_equal(p, "data/run 1");
	free(b);
	free(p);
	for (i = 0; bad[i]; i++) {
		b = p = (char *)"untouched";
		assert_int_equal(gcs_parse_source(bad[i], &b, &p, &e), -1);
		assert_null(b);
		assert_null(p);
		assert_int_equal(e.code, ERR_INVAL);
		assert_non_null(strstr(e.msg, "source"));
	}
	assert_int_equal(gcs_parse_source(NULL, &b, &p, &e), -1);
}

static void test_bucket_names(void **state)
{
	char longname[80];

	(void)state;
	assert_true(gcs_bucket_valid("abc"));
	assert_true(gcs_bucket_valid("a-b_c.d"));
	assert_true(gcs_bucket_valid("123"));
	assert_false(gcs_bucket_valid("ab"));
	assert_false(gcs_bucket_valid("Abc"));
	assert_false(gcs_bucket_valid("abc."));
	assert_false(gcs_bucket_valid(".abc"));
	assert_false(gcs_bucket_valid("_abc"));
	assert_false(gcs_bucket_valid("a/b"));
	assert_false(gcs_bucket_valid(NULL));
	memset(longname, 'a', 64);
	longname[64] = '\0';
	assert_false(gcs_bucket_valid(longname));
	longname[63] = '\0';
	assert_true(gcs_bucket_valid(longname));
}

static void test_endpoint(void **state)
{
	char ep[256];
	struct err e;
	int emu = -1;

	(void)state;
	unsetenv("STORAGE_EMULATOR_HOST");
	assert_int_equal(gcs_endpoint(NULL, ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, "https://storage.googleapis.com");
	assert_int_equal(emu, 0);
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9023", 1);
	assert_int_equal(gcs_endpoint(NULL, ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, "http://127.0.0.1:9023");
	assert_int_equal(emu, 1);
	setenv("STORAGE_EMULATOR_HOST", "http://localhost:4443/", 1);
	assert_int_equal(gcs_endpoint("", ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, "http://localhost:4443");
	assert_int_equal(emu, 1);
	/* An explicit endpoint wins over the environment. */
	assert_int_equal(gcs_endpoint("https://gcs.example:8443//", ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, "https://gcs.example:8443");
	assert_int_equal(emu, 0);
	assert_int_equal(gcs_endpoint("ftp://x", ep, sizeof(ep), &emu, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(gcs_endpoint("http://", ep, sizeof(ep), &emu, &e), -1);
	assert_int_equal(gcs_endpoint("https:///x", ep, sizeof(ep), &emu, &e), -1);
	assert_int_equal(gcs_endpoint("http://averylonghostname.example", ep, 12, &emu, &e), -1);
	unsetenv("STORAGE_EMULATOR_HOST");
}

static void test_object_names(void **state)
{
	char *n, *u;

	(void)state;
	n = gcs_object_name("", "", 1);
	assert_string_equal(n, "");
	free(n);
	n = gcs_object_name(NULL, "a/b", 0);
	assert_string_equal(n, "a/b");
	free(n);
	n = gcs_object_name("", "a/b", 1);
	assert_string_equal(n, "a/b/");
	free(n);
	n = gcs_object_name("data/run1", "", 1);
	assert_string_equal(n, "data/run1/");
	free(n);
	n = gcs_object_name("data/run1", "x y/z", 0);
	assert_string_equal(n, "data/run1/x y/z");
	/* In a URL path an object name is one segment: '/' is %2F. */
	u = enc_url(n);
	assert_string_equal(u, "data%2Frun1%2Fx%20y%2Fz");
	free(u);
	free(n);
	u = enc_url("a+b&c=d?#%é~._-");
	assert_string_equal(u, "a%2Bb%26c%3Dd%3F%23%25%C3%A9~._-");
	free(u);
}

/* A first page as GCS shapes it (items trimmed by fields, plus a full
 * resource for the directory's own marker). */
static const char page1[] =
	"{\"kind\":\"storage#objects\",\"nextPageToken\":\"CgdkaXIvc3ViLw==\","
	"\"prefixes\":[\"dir/sub/\",\"dir//\",\"dir/./\",\"dir/both/\"],"
	"\"items\":["
	"{\"kind\":\"storage#object\",\"id\":\"bkt/dir//1714566896123456\","
	"\"selfLink\":\"https://www.googleapis.com/storage/v1/b/bkt/o/dir%2F\","
	"\"name\":\"dir/\",\"bucket\":\"bkt\",\"generation\":\"1714566896123456\","
	"\"metageneration\":\"1\",\"contentType\":\"application/x-directory\","
	"\"storageClass\":\"STANDARD\",\"size\":\"0\",\"md5Hash\":\"1B2M2Y8AsgTpgAmY7PhCfg==\","
	"\"crc32c\":\"AAAAAA==\",\"etag\":\"CMDq9Y3g4IYDEAE=\","
	"\"timeCreated\":\"2024-05-01T12:34:56.789Z\",\"updated\":\"2024-05-01T12:34:56.789Z\"},"
	"{\"name\":\"dir/a.txt\",\"generation\":\"1714566896000001\",\"metageneration\":\"2\","
	"\"size\":\"9\",\"crc32c\":\"4waSgw==\",\"md5Hash\":\"JfnnlDI7RTiF9RgfG2JNCw==\","
	"\"updated\":\"2024-05-01T12:34:56.789Z\",\"contentType\":\"text/plain\","
	"\"metadata\":{\"goog-reserved-file-mtime\":\"1700000000\",\"other\":\"x\"}},"
	"{\"name\":\"dir/sub/\",\"generation\":\"5\",\"size\":\"0\","
	"\"updated\":\"2024-05-01T12:00:00Z\"},"
	"{\"name\":\"dir/link\",\"generation\":\"6\",\"size\":\"5\","
	"\"metadata\":{\"durafs-symlink-target\":\"a.txt\"}},"
	"{\"name\":\"dir/both\",\"generation\":\"7\",\"size\":\"1\"},"
	"{\"name\":\"dir/..\",\"generation\":\"8\",\"size\":\"1\"},"
	"{\"name\":\"dir/x\\u0000y\",\"generation\":\"9\",\"size\":\"1\"}"
	"]}";

static const char page_empty[] = "{\"nextPageToken\":\"next-2\"}";
static const char page_last[] =
	"{\"items\":[{\"name\":\"dir/z\",\"generation\":12,\"size\":3,"
	"\"metadata\":{\"goog-reserved-file-mtime\":\"not-a-number\"},"
	"\"updated\":\"2024-05-01T12:34:56Z\"},"
	"{\"name\":\"dir/gcsfuse-link\",\"generation\":\"13\",\"size\":\"0\","
	"\"metadata\":{\"gcsfuse_symlink_target\":\"/abs/target\"}}]}";

static void test_list_pages_merge(void **state)
{
	struct gcs_page pg;
	struct be_list l = { 0 };
	const struct be_entry *e;
	struct err err;
	char longname[400];

	(void)state;
	assert_int_equal(gcs_parse_list_page(page1, strlen(page1), &pg, &err), 0);
	assert_int_equal(pg.nitems, 7);
	assert_int_equal(pg.nprefixes, 4);
	assert_string_equal(pg.next_token, "CgdkaXIvc3ViLw==");
	assert_int_equal(pg.items[6].name_len, 7);  /* "dir/x\0y" */
	assert_int_equal(gcs_list_add_page(&l, "dir/", &pg, &err), 0);
	gcs_page_release(&pg);
	assert_int_equal(gcs_parse_list_page(page_empty, strlen(page_empty), &pg, &err), 0);
	assert_int_equal(pg.nitems + pg.nprefixes, 0);
	assert_string_equal(pg.next_token, "next-2");
	assert_int_equal(gcs_list_add_page(&l, "dir/", &pg, &err), 0);
	gcs_page_release(&pg);
	assert_int_equal(gcs_parse_list_page(page_last, strlen(page_last), &pg, &err), 0);
	assert_null(pg.next_token);
	assert_int_equal(gcs_list_add_page(&l, "dir/", &pg, &err), 0);
	gcs_page_release(&pg);
	/* A 300-byte name and a name outside the listed prefix. */
	memset(longname, 'q', sizeof(longname));
	snprintf(longname, sizeof(longname), "{\"items\":[{\"name\":\"dir/%0300d\","
		 "\"generation\":\"1\"},{\"name\":\"other/x\",\"generation\":\"1\"}]}", 0);
	assert_int_equal(gcs_parse_list_page(longname, strlen(longname), &pg, &err), 0);
	assert_int_equal(gcs_list_add_page(&l, "dir/", &pg, &err), 0);
	gcs_page_release(&pg);
	be_list_finish(&l);

	/* dir/ (own marker) left out; "", ".", "..", x\0y, the long name
	 * and other/x skipped; "both" shown as a directory. */
	assert_int_equal(l.skipped_invalid, 6);
	assert_int_equal(l.shadowed, 1);
	assert_int_equal(l.n, 6);
	assert_string_equal(l.v[0].name, "a.txt");
	assert_string_equal(l.v[1].name, "both");
	assert_string_equal(l.v[2].name, "gcsfuse-link");
	assert_string_equal(l.v[3].name, "link");
	assert_string_equal(l.v[4].name, "sub");
	assert_string_equal(l.v[5].name, "z");

	e = be_list_find(&l, "a.txt");
	assert_int_equal(e->type, BE_FILE);
	assert_int_equal(e->size, 9);
	assert_int_equal(e->ver.gen, 1714566896000001LL);
	assert_int_equal(e->ver.metagen, 2);
	assert_true(e->has_crc32c);
	assert_int_equal(e->crc32c, 0xE3069283);
	assert_true(e->has_md5);
	assert_int_equal(e->md5[0], 0x25);
	assert_int_equal(e->mtime.tv_sec, 1700000000);  /* metadata wins */
	assert_string_equal(e->content_type, "text/plain");

	e = be_list_find(&l, "both");
	assert_int_equal(e->type, BE_DIR);
	assert_int_equal(e->implicit, 1);

	e = be_list_find(&l, "sub");
	assert_int_equal(e->type, BE_DIR);
	assert_int_equal(e->implicit, 0);  /* marker and prefix merged */
	assert_int_equal(e->ver.gen, 5);
	assert_int_equal(e->mtime.tv_sec, 1714564800);

	e = be_list_find(&l, "link");
	assert_int_equal(e->type, BE_SYMLINK);
	assert_string_equal(e->symlink_target, "a.txt");
	assert_int_equal(e->size, 5);

	e = be_list_find(&l, "gcsfuse-link");
	assert_int_equal(e->type, BE_SYMLINK);
	assert_string_equal(e->symlink_target, "/abs/target");
	assert_int_equal(e->size, 11);

	e = be_list_find(&l, "z");
	assert_int_equal(e->ver.gen, 12);
	assert_int_equal(e->mtime.tv_sec, 1714566896);  /* bad mtime ignored */
	be_list_release(&l);
}

static void test_list_root_prefixes(void **state)
{
	static const char pg_root[] =
		"{\"prefixes\":[\"a/\",\"b/\",\"/\"],\"items\":[{\"name\":\"top\","
		"\"generation\":\"3\",\"size\":\"1\"},{\"name\":\"b/\",\"generation\":\"4\"}]}";
	struct gcs_page pg;
	struct be_list l = { 0 };
	struct err err;

	(void)state;
	assert_int_equal(gcs_parse_list_page(pg_root, strlen(pg_root), &pg, &err), 0);
	assert_int_equal(gcs_list_add_page(&l, "", &pg, &err), 0);
	gcs_page_release(&pg);
	be_list_finish(&l);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "a");
	assert_string_equal(l.v[1].name, "b");
	assert_int_equal(l.v[1].implicit, 0);
	assert_string_equal(l.v[2].name, "top");
	assert_int_equal(l.skipped_invalid, 1);  /* "/" is an empty segment */
	be_list_release(&l);
}

static void test_parse_malformed(void **state)
{
	static const char *const bad_pages[] = {
		"",
		"not json",
		"[]",
		"{\"items\":{}}",
		"{\"items\":[1]}",
		"{\"items\":[{\"generation\":\"1\"}]}",
		"{\"items\":[{\"name\":\"a\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"abc\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"0\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"1\",\"size\":\"-1\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"1\",\"size\":1.5}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"1\",\"crc32c\":\"zz\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"1\",\"md5Hash\":\"AAAA\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"1\",\"updated\":\"yesterday\"}]}",
		"{\"items\":[{\"name\":\"\",\"generation\":\"1\"}]}",
		"{\"items\":[{\"name\":7,\"generation\":\"1\"}]}",
		"{\"items\":[{\"name\":\"a\",\"generation\":\"1\",\"metadata\":[]}]}",
		"{\"prefixes\":[1]}",
		"{\"prefixes\":\"a/\"}",
		"{\"nextPageToken\":5}",
		"{\"items\":[]} trailing",
		NULL,
	};
	struct gcs_page pg;
	struct gcs_obj o;
	struct err err;
	size_t i;

	(void)state;
	for (i = 0; bad_pages[i]; i++) {
		err_clear(&err);
		assert_int_equal(gcs_parse_list_page(bad_pages[i], strlen(bad_pages[i]), &pg,
						     &err), -1);
		assert_int_equal(err.code, ERR_PARSE);
		assert_int_equal(pg.nitems, 0);
		assert_null(pg.items);
		gcs_page_release(&pg);
	}
	assert_int_equal(gcs_parse_object("{\"name\":\"a\"}", 12, &o, &err), -1);
	assert_int_equal(err.code, ERR_PARSE);
	assert_non_null(strstr(err.msg, "generation"));
	{
		static const char od[] = "{\"name\":\"a/b\",\"generation\":2,"
			"\"timeDeleted\":\"2024-05-01T12:34:56Z\"}";

		assert_int_equal(gcs_parse_object(od, strlen(od), &o, &err), 0);
	}
	assert_string_equal(o.name, "a/b");
	assert_true(o.noncurrent);
	gcs_obj_release(&o);
	gcs_obj_release(&o);
}

static void test_headers(void **state)
{
	int hc = 0, hm = 0;
	uint32_t crc = 0;
	unsigned char md5[16];

	(void)state;
	assert_int_equal(gcs_parse_goog_hash("crc32c=4waSgw==,md5=JfnnlDI7RTiF9RgfG2JNCw==",
					     &hc, &crc, &hm, md5), 0);
	assert_true(hc && hm);
	assert_int_equal(crc, 0xE3069283);
	assert_int_equal(md5[15], 0x0b);
	hc = hm = 0;
	assert_int_equal(gcs_parse_goog_hash("crc32c=AAAAAA==", &hc, &crc, &hm, md5), 0);
	assert_int_equal(gcs_parse_goog_hash("md5=1B2M2Y8AsgTpgAmY7PhCfg==", &hc, &crc, &hm,
					     md5), 0);
	assert_true(hc && hm);
	assert_int_equal(crc, 0);
	assert_int_equal(gcs_parse_goog_hash("crc32c=!!", &hc, &crc, &hm, md5), -1);
	assert_int_equal(gcs_parse_goog_hash("garbage", &hc, &crc, &hm, md5), -1);
	assert_int_equal(gcs_parse_goog_hash("sha256=abc, crc32c=4waSgw==", &hc, &crc, &hm,
					     md5), 0);
}

static void test_error_mapping(void **state)
{
	static const struct {
		long status;
		const char *reason;
		int code;
		int transient;
	} m[] = {
		{ 412, "conditionNotMet", ERR_CONFLICT, 0 },
		{ 404, "notFound", ERR_NOTFOUND, 0 },
		{ 410, "gone", ERR_GONE, 0 },
		{ 429, "rateLimitExceeded", ERR_RATE, 1 },
		{ 403, "rateLimitExceeded", ERR_RATE, 1 },
		{ 403, "forbidden", ERR_PERM, 0 },
		{ 403, "storageQuotaExceeded", ERR_NOSPC, 0 },
		{ 400, "invalid", ERR_INVAL, 0 },
		{ 416, "requestedRangeNotSatisfiable", ERR_RANGE, 0 },
		{ 503, "backendError", ERR_HTTP, 1 },
		{ 500, "internalError", ERR_HTTP, 1 },
		{ 408, "requestTimeout", ERR_HTTP, 1 },
	};
	char body[256];
	struct err e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		snprintf(body, sizeof(body), "{\"error\":{\"code\":%ld,\"message\":\"msg %zu\","
			 "\"errors\":[{\"reason\":\"%s\",\"message\":\"x\",\"domain\":\"global\"}]}}",
			 m[i].status, i, m[i].reason);
		http_status_to_err(m[i].status, body, strlen(body), &e);
		if (m[i].status != 408)
			assert_int_equal(e.code, m[i].code);
		assert_int_equal(e.http_status, m[i].status);
		assert_int_equal(gcs_err_transient(&e), m[i].transient);
	}
	err_set(&e, ERR_NET, "connection reset");
	assert_true(gcs_err_transient(&e));
	err_set(&e, ERR_TIMEOUT, "stalled");
	assert_true(gcs_err_transient(&e));
	err_set(&e, ERR_PARSE, "bad reply");
	assert_false(gcs_err_transient(&e));
	assert_false(gcs_err_transient(NULL));
}

static void test_new_validates(void **state)
{
	struct http *h = NULL;
	struct be *b = NULL;
	struct gcs_opts o;
	struct err e;

	(void)state;
	assert_int_equal(http_new(&(struct http_opts){ 0 }, &h, &e), 0);
	memset(&o, 0, sizeof(o));
	o.http = h;
	o.bucket = "Bad_Bucket";
	assert_int_equal(gcs_new(&o, &b, &e), -1);
	assert_null(b);
	o.bucket = "good-bucket";
	o.prefix = "a//b";
	assert_int_equal(gcs_new(&o, &b, &e), -1);
	o.prefix = "a/b";
	o.chunk_size = 1000;
	assert_int_equal(gcs_new(&o, &b, &e), -1);
	assert_non_null(strstr(e.msg, "256 KiB"));
	o.chunk_size = 512 * 1024;
	o.page_size = 5000;
	assert_int_equal(gcs_new(&o, &b, &e), -1);
	o.page_size = 0;
	o.endpoint = "gopher://x";
	assert_int_equal(gcs_new(&o, &b, &e), -1);
	o.endpoint = "http://127.0.0.1:1";
	assert_int_equal(gcs_new(&o, &b, &e), 0);
	assert_non_null(b);
	assert_string_equal(be_name(b), "gcs");
	assert_true(be_caps(b) & BE_CAP_COMPOSE);
	assert_true(be_caps(b) & BE_CAP_IDS_ARE_PATHS);
	assert_false(be_caps(b) & BE_CAP_TRASH);
	/* Bad paths are refused before any request is sent. */
	{
		struct be_list l = { 0 };
		struct be_entry ent;

		assert_int_equal(be_list(b, "a//b", &l, &e), -1);
		assert_int_equal(e.code, ERR_INVAL);
		assert_int_equal(be_stat(b, "../x", &ent, &e), -1);
		assert_int_equal(e.code, ERR_INVAL);
		assert_int_equal(be_remove(b, "x", NULL, NULL, &e), -1);
		assert_int_equal(e.code, ERR_INVAL);
		assert_int_equal(be_mkdir(b, "/abs", NULL, NULL), -1);
	}
	/* Object names: 1,024 bytes with the prefix "a/b/" and a directory's
	 * '/', no CR or LF. */
	{
		char p[1021];

		memset(p, 'n', sizeof(p) - 1);
		p[sizeof(p) - 1] = '\0';
		assert_int_equal(be_path_check(b, p, 0), BE_PATH_OK);
		assert_int_equal(be_path_check(b, p, 1), BE_PATH_LONG);
		assert_int_equal(be_path_check(b, p + 1, 1), BE_PATH_OK);
		assert_int_equal(be_path_check(b, "x\ny", 0), BE_PATH_CHAR);
		assert_int_equal(be_path_check(b, "d/x\r", 1), BE_PATH_CHAR);
		assert_int_equal(be_symlink_max(b), 0);
	}
	be_free(b);
	be_free(NULL);
	http_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_source),
		cmocka_unit_test(test_bucket_names),
		cmocka_unit_test(test_endpoint),
		cmocka_unit_test(test_object_names),
		cmocka_unit_test(test_list_pages_merge),
		cmocka_unit_test(test_list_root_prefixes),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_error_mapping),
		cmocka_unit_test(test_new_validates),
	};

	return cmocka_run_group_tests_name("gcs", tests, NULL, NULL);
}
