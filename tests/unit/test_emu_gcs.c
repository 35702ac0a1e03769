/* Unit tests for tests/emulator/emu_gcs.c, the GCS service, run in-process:
 * an emulator is created with emu_new/emu_start on a loopback port and
 * driven with libcurl, so the sanitizers see the service's own code paths
 * (routing, uploads, the resumable protocol with a cut connection, listing
 * under concurrent writers, restart from a data dir, malformed requests). */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>

#include "emu.h"

struct hres {
	long status;
	char *body;
	size_t len;
	char hdrs[4096];
	size_t hlen;
	CURLcode cc;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct hres *r = ud;
	char *nb = realloc(r->body, r->len + sz * n + 1);

	if (!nb)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct hres *r = ud;
	size_t k = sz * n;

	if (r->hlen + k < sizeof(r->hdrs)) {
		memcpy(r->hdrs + r->hlen, p, k);
		r->hlen += k;
		r->hdrs[r->hlen] = '\0';
	}
	return k;
}

/* One request; hdrs is a NULL-terminated list of "Name: value". */
static struct hres req(const char *method, const char *url, const void *body, size_t len,
		       const char *const *hdrs)
{
	struct hres r;
	CURL *c = curl_easy_init();
	struct curl_slist *sl = NULL;

	memset(&r, 0, sizeof(r));
	assert_non_null(c);
	for (; hdrs && *hdrs; hdrs++)
		sl = curl_slist_append(sl, *hdrs);
	sl = curl_slist_append(sl, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	r.cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(sl);
	curl_easy_cleanup(c);
	return r;
}

static int has_header(const struct hres *r, const char *line)
{
	return strcasestr(r->hdrs, line) != NULL;
}

static struct emu *start(const char *data_dir, const char *faults)
{
	struct emu_opts o;
	char err[512];
	struct emu *e;

	memset(&o, 0, sizeof(o));
	o.listen = "127.0.0.1:0";
	o.data_dir = data_dir;
	o.faults = faults;
	o.no_auth = 1;
	e = emu_new(&o, err, sizeof(err));
	if (!e)
		print_error("emu_new: %s\n", err);
	assert_non_null(e);
	assert_int_equal(emu_start(e, err, sizeof(err)), 0);
	return e;
}

static char *url(struct emu *e, const char *path)
{
	char *u = NULL;

	assert_true(asprintf(&u, "%s%s", emu_base_url(e), path) > 0);
	return u;
}

static struct hres call(struct emu *e, const char *method, const char *path, const void *body,
			size_t len, const char *const *hdrs)
{
	char *u = url(e, path);
	struct hres r = req(method, u, body, len, hdrs);

	free(u);
	return r;
}

static void mkbucket(struct emu *e, const char *name)
{
	char body[128];
	static const char *const h[] = { "Content-Type: application/json", NULL };
	struct hres r;

	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	r = call(e, "POST", "/storage/v1/b?project=p", body, strlen(body), h);
	assert_int_equal(r.status, 200);
	free(r.body);
}

static json_t *as_json(const struct hres *r)
{
	json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);

	assert_non_null(j);
	return j;
}

static void test_roundtrip(void **state)
{
	struct emu *e = start(NULL, NULL);
	struct hres r;
	json_t *j;

	(void)state;
	mkbucket(e, "bkt");
	r = call(e, "POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=a%2Fb", "hello", 5,
		 NULL);
	assert_int_equal(r.status, 200);
	j = as_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "crc32c")), "mnG7TA==");
	assert_string_equal(json_string_value(json_object_get(j, "md5Hash")),
			    "XUFAKrxLKna5cZ2REBfFkg==");
	json_decref(j);
	free(r.body);
	r = call(e, "GET", "/storage/v1/b/bkt/o/a%2Fb?alt=media", NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 5);
	assert_memory_equal(r.body, "hello", 5);
	assert_true(has_header(&r, "x-goog-hash: crc32c=mnG7TA==,md5=XUFAKrxLKna5cZ2REBfFkg=="));
	free(r.body);
	r = call(e, "HEAD", "/storage/v1/b/bkt/o/a%2Fb?alt=media", NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_true(has_header(&r, "Content-Length: 5"));
	free(r.body);
	r = call(e, "GET", "/b/bkt/o?delimiter=%2F", NULL, 0, NULL);  /* the /b alias */
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"prefixes\":[\"a/\"]"));
	free(r.body);
	r = call(e, "DELETE", "/storage/v1/b/bkt/o/a%2Fb", NULL, 0, NULL);
	assert_int_equal(r.status, 204);
	free(r.body);
	r = call(e, "GET", "/storage/v1/b/bkt/o/a%2Fb", NULL, 0, NULL);
	assert_int_equal(r.status, 404);
	free(r.body);
	emu_free(e);
}

static char *session(struct emu *e, const char *bucket, const char *name)
{
	char path[256], *loc, *end;
	struct hres r;

	snprintf(path, sizeof(path), "/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s",
		 bucket, name);
	r = call(e, "POST", path, "{}", 2, NULL);
	assert_int_equal(r.status, 200);
	loc = strcasestr(r.hdrs, "Location: ");
	assert_non_null(loc);
	loc = strdup(loc + 10);
	end = strpbrk(loc, "\r\n");
	if (end)
		*end = '\0';
	free(r.body);
	return loc;
}

static struct hres put_range(const char *sess, const char *data, size_t len, const char *range)
{
	char h[128];
	const char *hdrs[] = { h, NULL };

	snprintf(h, sizeof(h), "Content-Range: %s", range);
	return req("PUT", sess, data, len, hdrs);
}

static void test_resumable_cut(void **state)
{
	/* the first chunk PUT is cut after 300000 bytes */
	struct emu *e = start(NULL, "[{\"kind\":\"cut\",\"method\":\"PUT\","
				    "\"path\":\"/upload/*\",\"after_bytes\":300000,\"count\":1}]");
	size_t n = 3 * 262144 + 17, i;
	char *data = malloc(n), *sess, range[64];
	struct hres r;

	(void)state;
	for (i = 0; i < n; i++)
		data[i] = (char)(i * 31 + 7);
	mkbucket(e, "bkt");
	sess = session(e, "bkt", "obj");
	snprintf(range, sizeof(range), "bytes 0-%zu/%zu", n - 1, n);
	r = put_range(sess, data, n, range);
	assert_true(r.cc != CURLE_OK || r.status == 0);
	free(r.body);
	r = put_range(sess, NULL, 0, "bytes */*");
	assert_int_equal(r.status, 308);
	assert_true(has_header(&r, "Range: bytes=0-262143"));
	free(r.body);
	snprintf(range, sizeof(range), "bytes 262144-%zu/%zu", n - 1, n);
	r = put_range(sess, data + 262144, n - 262144, range);
	assert_int_equal(r.status, 200);
	free(r.body);
	r = call(e, "GET", "/storage/v1/b/bkt/o/obj?alt=media", NULL, 0, NULL);
	assert_int_equal(r.len, n);
	assert_memory_equal(r.body, data, n);
	free(r.body);
	/* malformed Content-Range and an unknown session */
	r = put_range(sess, NULL, 0, "bytes x-y/z");
	assert_int_equal(r.status, 200);  /* the session is complete: it answers the object */
	free(r.body);
	free(sess);
	sess = session(e, "bkt", "obj2");
	r = put_range(sess, NULL, 0, "bytes x-y/z");
	assert_int_equal(r.status, 400);
	free(r.body);
	r = call(e, "PUT", "/upload/storage/v1/b/bkt/o?uploadType=resumable&upload_id=zz", "", 0,
		 NULL);
	assert_int_equal(r.status, 404);
	free(r.body);
	free(sess);
	free(data);
	emu_free(e);
}

struct worker {
	struct emu *e;
	int id;
	int ok;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	size_t n = 700000 + (size_t)w->id, i;
	char *data = malloc(n), path[128];
	struct hres r;
	int round;

	w->ok = 1;
	for (i = 0; i < n; i++)
		data[i] = (char)(i ^ (size_t)w->id);
	for (round = 0; round < 3; round++) {
		snprintf(path, sizeof(path), "/upload/storage/v1/b/bkt/o?uploadType=media&name=w%d/%d",
			 w->id, round);
		r = call(w->e, "POST", path, data, n, NULL);
		w->ok &= r.status == 200;
		free(r.body);
		snprintf(path, sizeof(path), "/storage/v1/b/bkt/o/w%d%%2F%d?alt=media", w->id, round);
		r = call(w->e, "GET", path, NULL, 0, NULL);
		w->ok &= r.status == 200 && r.len == n && !memcmp(r.body, data, n);
		free(r.body);
		r = call(w->e, "GET", "/storage/v1/b/bkt/o?maxResults=3", NULL, 0, NULL);
		w->ok &= r.status == 200;
		free(r.body);
		if (round == 1) {  /* delete while others read and list */
			snprintf(path, sizeof(path), "/storage/v1/b/bkt/o/w%d%%2F0", w->id);
			r = call(w->e, "DELETE", path, NULL, 0, NULL);
			w->ok &= r.status == 204;
			free(r.body);
		}
	}
	free(data);
	return NULL;
}

static void test_parallel(void **state)
{
	struct emu *e = start(NULL, NULL);
	struct worker w[8];
	pthread_t t[8];
	struct hres r;
	json_t *j;
	int i;

	(void)state;
	mkbucket(e, "bkt");
	for (i = 0; i < 8; i++) {
		w[i].e = e;
		w[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_true(w[i].ok);
	}
	r = call(e, "GET", "/storage/v1/b/bkt/o?fields=items(name)", NULL, 0, NULL);
	j = as_json(&r);
	assert_int_equal(json_array_size(json_object_get(j, "items")), 16);
	json_decref(j);
	free(r.body);
	emu_free(e);
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char sub[1024];

	if (!d) {
		unlink(path);
		return;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		rm_rf(sub);
	}
	closedir(d);
	rmdir(path);
}

static void test_restart(void **state)
{
	char tmpl[] = "/tmp/test-emu-gcs-svc-XXXXXX";
	char *dir = mkdtemp(tmpl), *sess, *chunk = calloc(1, 262144 + 10);
	struct emu *e;
	struct hres r;

	(void)state;
	assert_non_null(dir);
	memset(chunk, 'c', 262144 + 10);
	e = start(dir, NULL);
	mkbucket(e, "bkt");
	r = call(e, "POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=kept", "kept", 4, NULL);
	assert_int_equal(r.status, 200);
	free(r.body);
	sess = session(e, "bkt", "half");
	r = put_range(sess, chunk, 262144, "bytes 0-262143/*");
	assert_int_equal(r.status, 308);
	free(r.body);
	emu_free(e);

	e = start(dir, NULL);
	r = call(e, "GET", "/storage/v1/b/bkt/o/kept?alt=media", NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "kept", 4);
	free(r.body);
	/* the session URI names the old port: reach it on the new one */
	{
		const char *q = strstr(sess, "/upload/");
		char *u = url(e, q);

		r = put_range(u, chunk + 262144, 10, "bytes 262144-262153/262154");
		assert_int_equal(r.status, 200);
		free(r.body);
		free(u);
	}
	r = call(e, "GET", "/storage/v1/b/bkt/o/half?alt=media", NULL, 0, NULL);
	assert_int_equal(r.len, 262154);
	assert_memory_equal(r.body, chunk, 262154);
	free(r.body);
	emu_free(e);
	free(sess);
	free(chunk);
	rm_rf(dir);
}

static void test_bad_requests(void **state)
{
	static const struct { const char *method, *path, *body; long status; } cases[] = {
		{ "GET", "/storage/v1/b/bkt/o/%zz", NULL, 404 },
		{ "GET", "/storage/v1/b/%zz/o", NULL, 404 },
		{ "GET", "/storage/v1/bx", NULL, 404 },
		{ "GET", "/storage/v1/b/bkt/o/x/copyTo/b/", NULL, 404 },
		{ "POST", "/storage/v1/b/bkt/o/x/rewriteTo/b/bkt/o/", NULL, 404 },
		{ "POST", "/storage/v1/b?project=p", "{\"name\":", 400 },
		{ "PATCH", "/storage/v1/b/bkt", "{\"versioning\":{\"enabled\":3}}", 400 },
		{ "GET", "/storage/v1/b/bkt/o?fields=a(", NULL, 400 },
		{ "GET", "/storage/v1/b/bkt/o?pageToken=AAAA", NULL, 400 },
		{ "POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", "--x--", 400 },
		{ "POST", "/upload/storage/v1/b/bkt/o/extra", "x", 404 },
		{ "PUT", "/upload/storage/v1/b/bkt/o?upload_id=nope", "x", 404 },
		{ "POST", "/storage/v1/b/bkt/o/d/compose", "{\"sourceObjects\":[{\"name\":5}]}", 400 },
		{ "POST", "/storage/v1/b/bkt/o/s/copyTo/b/bkt/o/d?ifGenerationMatch=-1", NULL, 400 },
		{ "POST", "/_emulator/gcs/rewrite_max_bytes", "{\"bytes\":\"x\"}", 400 },
	};
	struct emu *e = start(NULL, NULL);
	struct hres r;
	size_t i;

	(void)state;
	mkbucket(e, "bkt");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = call(e, cases[i].method, cases[i].path, cases[i].body,
			 cases[i].body ? strlen(cases[i].body) : 0, NULL);
		if (r.status != cases[i].status)
			print_error("%s %s -> %ld %s\n", cases[i].method, cases[i].path, r.status,
				    r.body ? r.body : "");
		assert_int_equal(r.status, cases[i].status);
		assert_non_null(r.body);
		assert_non_null(strstr(r.body, "\"error\""));
		free(r.body);
	}
	emu_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_resumable_cut),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_bad_requests),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_ALL);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
