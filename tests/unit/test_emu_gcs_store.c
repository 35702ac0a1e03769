/* Unit tests for tests/emulator/emu_gcs_store.c: buckets, generations and
 * preconditions, versioning, listing order/paging/prefixes, patches,
 * resumable session bytes, and recovery from the data dir (including a
 * torn journal line and orphan files). */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/cksum.h"
#include "emu_gcs_store.h"
#include "emu_parse.h"

static struct gst *open_mem(void)
{
	char why[256];
	struct gst *s = gst_open(NULL, why, sizeof(why));

	assert_non_null(s);
	return s;
}

static struct gst_obj *put(struct gst *s, const char *b, const char *name, const char *data,
			   const struct gst_cond *c, int expect)
{
	struct gst_blob *blob = gst_blob_copy(s, data, strlen(data));
	struct gst_spec sp = { 0 };
	struct gst_obj *o = NULL;

	assert_non_null(blob);
	sp.attr[GST_CONTENT_TYPE] = strdup("text/plain");
	assert_int_equal(gst_obj_put(s, b, name, blob, &sp, c, &o), expect);
	gst_blob_unref(blob);
	return o;
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

static void test_buckets(void **state)
{
	struct gst *s = open_mem();
	struct gst_bucket_info bi, *all = NULL;
	struct gst_cond c = { 0 };
	size_t n = 0;

	(void)state;
	assert_int_equal(gst_bucket_create(s, "b2", 0, &bi), GST_OK);
	assert_int_equal(gst_bucket_create(s, "b1", 1, &bi), GST_OK);
	assert_int_equal(bi.versioning, 1);
	assert_int_equal(bi.metageneration, 1);
	assert_int_equal(gst_bucket_create(s, "b1", 0, NULL), GST_EEXIST);
	assert_int_equal(gst_bucket_list(s, &all, &n), GST_OK);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].name, "b1");
	free(all);
	c.has_meta = 1;
	c.meta = 7;
	assert_int_equal(gst_bucket_patch(s, "b1", 0, &c, &bi), GST_EPRECOND);
	c.meta = 1;
	assert_int_equal(gst_bucket_patch(s, "b1", 0, &c, &bi), GST_OK);
	assert_int_equal(bi.versioning, 0);
	assert_int_equal(bi.metageneration, 2);
	gst_obj_unref(put(s, "b1", "x", "data", NULL, GST_OK));
	assert_int_equal(gst_bucket_delete(s, "b1", NULL), GST_ENOTEMPTY);
	assert_int_equal(gst_obj_delete(s, "b1", "x", 0, NULL), GST_OK);
	assert_int_equal(gst_bucket_delete(s, "b1", NULL), GST_OK);
	assert_int_equal(gst_bucket_get(s, "b1", &bi), GST_ENOBUCKET);
	assert_int_equal(gst_bucket_delete(s, "nope", NULL), GST_ENOBUCKET);
	gst_close(s);
}

static void test_generations_and_preconditions(void **state)
{
	struct gst *s = open_mem();
	struct gst_obj *a, *b, *got = NULL;
	struct gst_cond c = { 0 };
	unsigned char md5[16];

	(void)state;
	gst_bucket_create(s, "b", 0, NULL);
	c.has_gen = 1;
	c.gen = 0;  /* only if absent */
	a = put(s, "b", "o", "one", &c, GST_OK);
	assert_non_null(a);
	assert_int_equal(a->metageneration, 1);
	assert_int_equal(a->blob->crc32c, ck_crc32c(0, "one", 3));
	ck_md5("one", 3, md5);
	assert_memory_equal(a->blob->md5, md5, 16);
	assert_null(put(s, "b", "o", "two", &c, GST_EPRECOND));
	c.gen = a->generation;
	b = put(s, "b", "o", "two", &c, GST_OK);
	assert_true(b->generation > a->generation);
	/* nonversioned: the old generation is gone */
	assert_int_equal(gst_obj_get(s, "b", "o", a->generation, NULL, &got), GST_ENOOBJ);
	memset(&c, 0, sizeof(c));
	c.has_not_gen = 1;
	c.not_gen = b->generation;
	assert_int_equal(gst_obj_get(s, "b", "o", 0, &c, &got), GST_ENOTMOD);
	assert_int_equal(gst_obj_delete(s, "b", "o", 0, &c), GST_EPRECOND);
	memset(&c, 0, sizeof(c));
	c.has_meta = 1;
	c.meta = 2;
	assert_int_equal(gst_obj_get(s, "b", "o", 0, &c, &got), GST_EPRECOND);
	c.meta = 1;
	assert_int_equal(gst_obj_get(s, "b", "o", 0, &c, &got), GST_OK);
	assert_ptr_equal(got, b);
	gst_obj_unref(got);
	/* metageneration match on an absent object fails a write */
	assert_null(put(s, "b", "absent", "x", &c, GST_EPRECOND));
	assert_null(put(s, "nobucket", "o", "x", NULL, GST_ENOBUCKET));
	assert_int_equal(gst_obj_get(s, "b", "absent", 0, NULL, &got), GST_ENOOBJ);
	/* a reference outlives the store's copy */
	assert_int_equal(gst_obj_delete(s, "b", "o", 0, NULL), GST_OK);
	assert_memory_equal(b->blob->data, "two", 3);
	gst_obj_unref(a);
	gst_obj_unref(b);
	gst_close(s);
}

static void test_versioning(void **state)
{
	struct gst *s = open_mem();
	struct gst_obj *v1, *v2, *got = NULL;
	struct gst_list_args la = { 0 };
	struct gst_list_page pg;

	(void)state;
	gst_bucket_create(s, "v", 1, NULL);
	v1 = put(s, "v", "f", "1", NULL, GST_OK);
	v2 = put(s, "v", "f", "22", NULL, GST_OK);
	assert_int_equal(gst_obj_get(s, "v", "f", v1->generation, NULL, &got), GST_OK);
	assert_true(got->deleted_ms > 0);
	assert_memory_equal(got->blob->data, "1", 1);
	gst_obj_unref(got);
	/* delete live: it becomes noncurrent */
	assert_int_equal(gst_obj_delete(s, "v", "f", 0, NULL), GST_OK);
	assert_int_equal(gst_obj_get(s, "v", "f", 0, NULL, &got), GST_ENOOBJ);
	la.max = 100;
	assert_int_equal(gst_list(s, "v", &la, &pg), GST_OK);
	assert_int_equal(pg.nitems, 0);
	gst_list_page_release(&pg);
	la.versions = 1;
	assert_int_equal(gst_list(s, "v", &la, &pg), GST_OK);
	assert_int_equal(pg.nitems, 2);
	assert_true(pg.items[0]->generation == v1->generation);
	assert_true(pg.items[1]->generation == v2->generation);
	gst_list_page_release(&pg);
	/* bucket not empty while noncurrent generations remain */
	assert_int_equal(gst_bucket_delete(s, "v", NULL), GST_ENOTEMPTY);
	assert_int_equal(gst_obj_delete(s, "v", "f", v1->generation, NULL), GST_OK);
	assert_int_equal(gst_obj_delete(s, "v", "f", v2->generation, NULL), GST_OK);
	assert_int_equal(gst_obj_delete(s, "v", "f", v2->generation, NULL), GST_ENOOBJ);
	assert_int_equal(gst_bucket_delete(s, "v", NULL), GST_OK);
	gst_obj_unref(v1);
	gst_obj_unref(v2);
	gst_close(s);
}

static void test_patch(void **state)
{
	struct gst *s = open_mem();
	struct gst_obj *o, *p = NULL;
	json_t *patch;
	char why[128];
	struct gst_cond c = { 0 };

	(void)state;
	gst_bucket_create(s, "b", 0, NULL);
	o = put(s, "b", "o", "x", NULL, GST_OK);
	patch = json_pack("{s:s, s:{s:s, s:s}}", "cacheControl", "no-cache", "metadata",
			  "goog-reserved-file-mtime", "1700000000", "k", "v");
	c.has_meta = 1;
	c.meta = 1;
	assert_int_equal(gst_obj_patch(s, "b", "o", 0, patch, 0, &c, &p, why, sizeof(why)), GST_OK);
	json_decref(patch);
	assert_int_equal(p->metageneration, 2);
	assert_true(p->generation == o->generation);
	assert_string_equal(p->attr[GST_CACHE_CONTROL], "no-cache");
	assert_string_equal(p->attr[GST_CONTENT_TYPE], "text/plain");
	assert_string_equal(json_string_value(json_object_get(p->metadata, "k")), "v");
	gst_obj_unref(p);
	/* merge: null removes one key */
	patch = json_pack("{s:{s:n}}", "metadata", "k");
	assert_int_equal(gst_obj_patch(s, "b", "o", 0, patch, 0, &c, &p, why, sizeof(why)),
			 GST_EPRECOND);
	assert_int_equal(gst_obj_patch(s, "b", "o", 0, patch, 0, NULL, &p, why, sizeof(why)),
			 GST_OK);
	json_decref(patch);
	assert_null(json_object_get(p->metadata, "k"));
	assert_non_null(json_object_get(p->metadata, "goog-reserved-file-mtime"));
	gst_obj_unref(p);
	/* replace (update): unnamed fields go */
	patch = json_pack("{s:s}", "contentType", "a/b");
	assert_int_equal(gst_obj_patch(s, "b", "o", 0, patch, 1, NULL, &p, why, sizeof(why)),
			 GST_OK);
	json_decref(patch);
	assert_null(p->metadata);
	assert_null(p->attr[GST_CACHE_CONTROL]);
	assert_string_equal(p->attr[GST_CONTENT_TYPE], "a/b");
	assert_int_equal(p->metageneration, 4);
	gst_obj_unref(p);
	/* bad patches */
	patch = json_pack("{s:i}", "contentType", 5);
	assert_int_equal(gst_obj_patch(s, "b", "o", 0, patch, 0, NULL, &p, why, sizeof(why)),
			 GST_EINVAL);
	json_decref(patch);
	patch = json_pack("{s:{s:i}}", "metadata", "k", 1);
	assert_int_equal(gst_obj_patch(s, "b", "o", 0, patch, 0, NULL, &p, why, sizeof(why)),
			 GST_EINVAL);
	assert_non_null(strstr(why, "metadata"));
	json_decref(patch);
	gst_obj_unref(o);
	gst_close(s);
}

/* Every page of a listing, following the tokens; returns the names and
 * prefixes in order, one per line. */
static char *list_all(struct gst *s, const char *bucket, struct gst_list_args a, long max,
		      int *pages)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	char *key = NULL;
	struct gst_list_page pg;
	size_t i;

	*pages = 0;
	a.max = max;
	for (;;) {
		assert_int_equal(gst_list(s, bucket, &a, &pg), GST_OK);
		(*pages)++;
		assert_true((long)(pg.nitems + pg.nprefixes) <= max + 1);
		for (i = 0; i < pg.nprefixes + pg.nitems; i++) {
			const char *nm = i < pg.nprefixes ? pg.prefixes[i]
							  : pg.items[i - pg.nprefixes]->name;
			size_t n = strlen(nm);

			while (len + n + 4 > cap) {
				char *grown = realloc(out, cap * 2);

				assert_non_null(grown);
				out = grown;
				cap *= 2;
			}
			out[len++] = i < pg.nprefixes ? 'P' : 'O';
			memcpy(out + len, nm, n);
			len += n;
			out[len++] = '\n';
		}
		free(key);
		key = NULL;
		if (!pg.more) {
			gst_list_page_release(&pg);
			break;
		}
		/* round-trip through the opaque token, as a client would */
		{
			char *tok = emu_page_token_make(pg.next_key, pg.next_keylen, pg.next_gen);

			assert_non_null(tok);
			assert_int_equal(emu_page_token_parse(tok, &key, &a.token_keylen,
							      &a.token_gen), 0);
			a.token_key = key;
			free(tok);
		}
		gst_list_page_release(&pg);
	}
	out[len] = '\0';
	return out;
}

static void test_list_paging(void **state)
{
	struct gst *s = open_mem();
	struct gst_list_args a = { 0 };
	char name[64], *all, *paged, *want;
	int i, pages = 0, order[600];
	size_t wl = 0;

	(void)state;
	gst_bucket_create(s, "b", 0, NULL);
	/* insert in a scrambled order: the index must sort */
	for (i = 0; i < 600; i++)
		order[i] = (i * 337) % 600;
	for (i = 0; i < 600; i++) {
		int k = order[i];

		if (k < 400)
			snprintf(name, sizeof(name), "f%03d", k);
		else if (k < 500)
			snprintf(name, sizeof(name), "d%02d/x", (k - 400) / 10);  /* 10 dirs */
		else
			snprintf(name, sizeof(name), "d%02d/y%02d", (k - 500) / 10, k % 10);
		if (k < 500 || (k - 500) / 10 < 10)
			gst_obj_unref(put(s, "b", name, "z", NULL, GST_OK));
	}
	gst_obj_unref(put(s, "b", "d03/", "", NULL, GST_OK));  /* a directory marker */

	/* flat listing: every object, sorted, the same whatever the page size */
	all = list_all(s, "b", a, 1000, &pages);
	assert_int_equal(pages, 1);
	paged = list_all(s, "b", a, 7, &pages);
	assert_string_equal(all, paged);
	assert_true(pages > 60);
	assert_non_null(strstr(all, "Od00/x\nOd00/y00\n"));
	assert_non_null(strstr(all, "Od03/\nOd03/x\n"));
	assert_non_null(strstr(all, "Of399\n"));
	free(paged);
	free(all);

	/* delimiter: 10 prefixes (each exactly once) then f000..f399 */
	a.delimiter = "/";
	all = list_all(s, "b", a, 1000, &pages);
	want = malloc(16 * 420);
	for (i = 0; i < 10; i++)
		wl += (size_t)snprintf(want + wl, 16 * 420 - wl, "Pd%02d/\n", i);
	for (i = 0; i < 400; i++)
		wl += (size_t)snprintf(want + wl, 16 * 420 - wl, "Of%03d\n", i);
	assert_string_equal(all, want);
	free(all);
	for (i = 1; i <= 11; i += 5) {
		paged = list_all(s, "b", a, i, &pages);
		assert_string_equal(paged, want);
		free(paged);
	}
	free(want);

	/* prefix + delimiter + includeTrailingDelimiter */
	a.prefix = "d0";
	a.include_trailing_delimiter = 1;
	all = list_all(s, "b", a, 3, &pages);
	assert_non_null(strstr(all, "Pd03/\n"));
	assert_non_null(strstr(all, "Od03/\n"));
	assert_null(strstr(all, "Od03/x"));
	free(all);
	a.include_trailing_delimiter = 0;

	/* startOffset / endOffset */
	memset(&a, 0, sizeof(a));
	a.start_offset = "f100";
	a.end_offset = "f103";
	all = list_all(s, "b", a, 2, &pages);
	assert_string_equal(all, "Of100\nOf101\nOf102\n");
	free(all);
	a.start_offset = NULL;
	a.end_offset = NULL;
	a.prefix = "nothing";
	all = list_all(s, "b", a, 10, &pages);
	assert_string_equal(all, "");
	free(all);
	gst_close(s);
}

static void test_list_versions_paging(void **state)
{
	struct gst *s = open_mem();
	struct gst_list_args a = { 0 };
	char *all, *paged;
	int i, pages;

	(void)state;
	gst_bucket_create(s, "v", 1, NULL);
	for (i = 0; i < 5; i++) {
		gst_obj_unref(put(s, "v", "a", "x", NULL, GST_OK));
		gst_obj_unref(put(s, "v", "b", "y", NULL, GST_OK));
	}
	gst_obj_delete(s, "v", "b", 0, NULL);
	a.versions = 1;
	all = list_all(s, "v", a, 1000, &pages);
	assert_string_equal(all, "Oa\nOa\nOa\nOa\nOa\nOb\nOb\nOb\nOb\nOb\n");
	for (i = 1; i < 5; i++) {
		paged = list_all(s, "v", a, i, &pages);
		assert_string_equal(paged, all);
		free(paged);
	}
	free(all);
	a.versions = 0;
	all = list_all(s, "v", a, 1, &pages);
	assert_string_equal(all, "Oa\n");
	free(all);
	gst_close(s);
}

static void test_sessions_memory(void **state)
{
	struct gst *s = open_mem();
	struct gst_sess *ss = NULL, *again;
	struct gst_blob *b;
	char *data = malloc(600000);
	unsigned char md5[16];
	json_t *meta = json_pack("{s:s}", "name", "big");
	int i;

	(void)state;
	for (i = 0; i < 600000; i++)
		data[i] = (char)(i * 7);
	gst_bucket_create(s, "b", 0, NULL);
	assert_int_equal(gst_sess_create(s, "nob", "x", meta, NULL, NULL, -1, &ss), GST_ENOBUCKET);
	assert_int_equal(gst_sess_create(s, "b", "big", meta, NULL, "a/b", -1, &ss), GST_OK);
	json_decref(meta);
	assert_int_equal(strlen(ss->id), 32);
	again = gst_sess_find(s, ss->id);
	assert_ptr_equal(again, ss);
	gst_sess_unref(again);
	assert_null(gst_sess_find(s, "00000000000000000000000000000000"));
	pthread_mutex_lock(&ss->mu);
	assert_int_equal(gst_sess_append(s, ss, data, 262144), GST_OK);
	assert_int_equal(gst_sess_append(s, ss, data + 262144, 600000 - 262144), GST_OK);
	assert_int_equal(ss->persisted, 600000);
	b = gst_sess_take_blob(s, ss);
	assert_non_null(b);
	assert_int_equal(b->len, 600000);
	assert_memory_equal(b->data, data, 600000);
	assert_int_equal(b->crc32c, ck_crc32c(0, data, 600000));
	ck_md5(data, 600000, md5);
	assert_memory_equal(b->md5, md5, 16);
	gst_sess_set_state(s, ss, GST_SESS_DONE);
	pthread_mutex_unlock(&ss->mu);
	gst_blob_unref(b);
	gst_sess_unref(ss);
	free(data);
	gst_close(s);
}

static void test_sessions_pruned(void **state)
{
	struct gst *s = open_mem();
	struct gst_sess *ss[1025], *more = NULL, *found;
	char old_id[33], live_id[33];
	int i;

	(void)state;
	gst_bucket_create(s, "b", 0, NULL);
	for (i = 0; i < 1024; i++) {
		assert_int_equal(gst_sess_create(s, "b", "o", NULL, NULL, NULL, -1, &ss[i]), GST_OK);
		if (i < 1000) {
			pthread_mutex_lock(&ss[i]->mu);
			gst_sess_set_state(s, ss[i], GST_SESS_DONE);
			ss[i]->ended_ms -= 2 * 60 * 1000;  /* ended two minutes ago */
			pthread_mutex_unlock(&ss[i]->mu);
		}
	}
	snprintf(old_id, sizeof(old_id), "%s", ss[0]->id);
	snprintf(live_id, sizeof(live_id), "%s", ss[1010]->id);
	for (i = 0; i < 1024; i++)
		gst_sess_unref(ss[i]);
	assert_int_equal(gst_sess_create(s, "b", "o", NULL, NULL, NULL, -1, &more), GST_OK);
	gst_sess_unref(more);
	assert_null(gst_sess_find(s, old_id));
	found = gst_sess_find(s, live_id);
	assert_non_null(found);
	gst_sess_unref(found);
	gst_close(s);
}

static void test_concat_and_reset(void **state)
{
	struct gst *s = open_mem();
	struct gst_blob *p[3], *c;
	struct gst_bucket_info bi;
	struct gst_sess *ss = NULL;

	(void)state;
	p[0] = gst_blob_copy(s, "ab", 2);
	p[1] = gst_blob_copy(s, "", 0);
	p[2] = gst_blob_copy(s, "cde", 3);
	c = gst_blob_concat(s, p, 3);
	assert_int_equal(c->len, 5);
	assert_memory_equal(c->data, "abcde", 5);
	assert_int_equal(c->crc32c, ck_crc32c(0, "abcde", 5));
	gst_blob_unref(c);
	gst_blob_unref(p[0]);
	gst_blob_unref(p[1]);
	gst_blob_unref(p[2]);
	c = gst_blob_take(s, strdup("owned"), 5);
	assert_memory_equal(c->data, "owned", 5);
	gst_blob_discard(c);

	gst_bucket_create(s, "b", 0, NULL);
	gst_obj_unref(put(s, "b", "o", "x", NULL, GST_OK));
	assert_int_equal(gst_sess_create(s, "b", "o", NULL, NULL, NULL, 10, &ss), GST_OK);
	gst_reset(s);
	assert_int_equal(gst_bucket_get(s, "b", &bi), GST_ENOBUCKET);
	assert_null(gst_sess_find(s, ss->id));
	assert_int_equal(ss->state, GST_SESS_EXPIRED);
	gst_sess_unref(ss);
	gst_close(s);
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_persistence(void **state)
{
	char tmpl[] = "/tmp/test-emu-gcs-XXXXXX";
	char *root = mkdtemp(tmpl), dir[512], p[600], why[256], sid[33];
	struct gst *s;
	struct gst_obj *o, *got = NULL, *p1 = NULL;
	struct gst_sess *ss = NULL;
	struct gst_bucket_info bi;
	struct gst_blob *blob;
	struct gst_spec sp = { 0 };
	char *chunk = calloc(1, 300000);
	json_t *patch;
	int64_t g1, gv;
	int fd;

	(void)state;
	assert_non_null(root);
	snprintf(dir, sizeof(dir), "%s/gcs", root);
	s = gst_open(dir, why, sizeof(why));
	assert_non_null(s);
	gst_bucket_create(s, "b", 0, NULL);
	gst_bucket_create(s, "v", 1, NULL);
	o = put(s, "b", "keep", "kept bytes", NULL, GST_OK);
	g1 = o->generation;
	gst_obj_unref(o);
	gst_obj_unref(put(s, "b", "gone", "x", NULL, GST_OK));
	gst_obj_delete(s, "b", "gone", 0, NULL);
	o = put(s, "v", "f", "old", NULL, GST_OK);
	gv = o->generation;
	gst_obj_unref(o);
	gst_obj_unref(put(s, "v", "f", "new", NULL, GST_OK));
	/* a copy shares the blob of "keep" */
	assert_int_equal(gst_obj_get(s, "b", "keep", 0, NULL, &got), GST_OK);
	assert_int_equal(gst_obj_put(s, "b", "copy", got->blob, &sp, NULL, NULL), GST_OK);
	gst_obj_unref(got);
	patch = json_pack("{s:{s:s}}", "metadata", "m", "1");
	assert_int_equal(gst_obj_patch(s, "b", "keep", 0, patch, 0, NULL, &p1, why, sizeof(why)),
			 GST_OK);
	json_decref(patch);
	gst_obj_unref(p1);
	/* a half-done session: 262144 bytes acknowledged, 37856 more written */
	assert_int_equal(gst_sess_create(s, "b", "up", NULL, NULL, "x/y", 900000, &ss), GST_OK);
	snprintf(sid, sizeof(sid), "%s", ss->id);
	memset(chunk, 'q', 300000);
	pthread_mutex_lock(&ss->mu);
	assert_int_equal(gst_sess_append(s, ss, chunk, 300000), GST_OK);
	pthread_mutex_unlock(&ss->mu);
	gst_sess_unref(ss);
	/* an orphan blob file (killed before journaling) */
	snprintf(p, sizeof(p), "%s/blobs/00000000000fffff", dir);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	gst_close(s);

	/* a torn last journal line, as a SIGKILL mid-write leaves */
	snprintf(p, sizeof(p), "%s/journal", dir);
	fd = open(p, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"t\":\"bucket_del\",\"n\":\"b", 24), 24);
	close(fd);

	s = gst_open(dir, why, sizeof(why));
	assert_non_null(s);
	assert_int_equal(gst_bucket_get(s, "b", &bi), GST_OK);
	assert_int_equal(gst_bucket_get(s, "v", &bi), GST_OK);
	assert_int_equal(bi.versioning, 1);
	assert_int_equal(gst_obj_get(s, "b", "keep", 0, NULL, &got), GST_OK);
	assert_true(got->generation == g1);
	assert_int_equal(got->metageneration, 2);
	assert_string_equal(json_string_value(json_object_get(got->metadata, "m")), "1");
	assert_memory_equal(got->blob->data, "kept bytes", 10);
	assert_int_equal(got->blob->crc32c, ck_crc32c(0, "kept bytes", 10));
	gst_obj_unref(got);
	assert_int_equal(gst_obj_get(s, "b", "copy", 0, NULL, &got), GST_OK);
	assert_memory_equal(got->blob->data, "kept bytes", 10);
	gst_obj_unref(got);
	assert_int_equal(gst_obj_get(s, "b", "gone", 0, NULL, &got), GST_ENOOBJ);
	assert_int_equal(gst_obj_get(s, "v", "f", gv, NULL, &got), GST_OK);
	assert_memory_equal(got->blob->data, "old", 3);
	gst_obj_unref(got);
	/* 3 blobs in use (keep+copy share one; f old, f new); the orphan went */
	snprintf(p, sizeof(p), "%s/blobs", dir);
	assert_int_equal(count_files(p), 3);
	/* the session is back with its acknowledged bytes only */
	ss = gst_sess_find(s, sid);
	assert_non_null(ss);
	pthread_mutex_lock(&ss->mu);
	assert_int_equal(ss->state, GST_SESS_ACTIVE);
	assert_int_equal(ss->persisted, 262144);
	assert_int_equal(ss->declared_total, 900000);
	assert_string_equal(ss->upload_ctype, "x/y");
	assert_int_equal(ss->interrupted, 1);
	assert_int_equal(gst_sess_append(s, ss, chunk, 100), GST_OK);
	blob = gst_sess_take_blob(s, ss);
	assert_non_null(blob);
	assert_int_equal(blob->len, 262244);
	assert_int_equal(blob->crc32c, ck_crc32c(0, chunk, 262244 > 300000 ? 0 : 262244));
	memset(&sp, 0, sizeof(sp));
	assert_int_equal(gst_obj_put(s, "b", "up", blob, &sp, NULL, &o), GST_OK);
	gst_blob_unref(blob);
	ss->result_gen = o->generation;
	gst_sess_set_state(s, ss, GST_SESS_DONE);
	pthread_mutex_unlock(&ss->mu);
	gst_sess_unref(ss);
	gst_obj_unref(o);
	gst_close(s);

	/* reopen once more: the completed upload is an object; reset clears */
	s = gst_open(dir, why, sizeof(why));
	assert_non_null(s);
	assert_int_equal(gst_obj_get(s, "b", "up", 0, NULL, &got), GST_OK);
	assert_int_equal(got->blob->len, 262244);
	gst_obj_unref(got);
	ss = gst_sess_find(s, sid);
	assert_non_null(ss);
	assert_int_equal(ss->state, GST_SESS_DONE);
	gst_sess_unref(ss);
	gst_reset(s);
	gst_close(s);
	s = gst_open(dir, why, sizeof(why));
	assert_non_null(s);
	assert_int_equal(gst_bucket_get(s, "b", &bi), GST_ENOBUCKET);
	snprintf(p, sizeof(p), "%s/blobs", dir);
	assert_int_equal(count_files(p), 0);
	gst_close(s);
	free(chunk);
	rm_rf(root);
}

static void test_lost_blob_file(void **state)
{
	char tmpl[] = "/tmp/test-emu-gcs-lost-XXXXXX";
	char *root = mkdtemp(tmpl), dir[512], p[600], why[256];
	struct gst *s;
	struct gst_obj *a, *b, *got = NULL;

	(void)state;
	assert_non_null(root);
	snprintf(dir, sizeof(dir), "%s/gcs", root);
	s = gst_open(dir, why, sizeof(why));
	assert_non_null(s);
	gst_bucket_create(s, "b", 0, NULL);
	a = put(s, "b", "a", "aaa", NULL, GST_OK);
	b = put(s, "b", "b", "bbb", NULL, GST_OK);
	snprintf(p, sizeof(p), "%s", a->blob->path);
	gst_obj_unref(a);
	gst_obj_unref(b);
	gst_close(s);
	assert_int_equal(unlink(p), 0);  /* someone deleted a data file */
	s = gst_open(dir, why, sizeof(why));
	assert_non_null(s);
	assert_int_equal(gst_obj_get(s, "b", "a", 0, NULL, &got), GST_ENOOBJ);
	assert_int_equal(gst_obj_get(s, "b", "b", 0, NULL, &got), GST_OK);
	assert_memory_equal(got->blob->data, "bbb", 3);
	gst_obj_unref(got);
	gst_close(s);
	rm_rf(root);
}

static void test_bad_data_dir(void **state)
{
	char why[256] = "";

	(void)state;
	assert_null(gst_open("/proc/no/such/dir", why, sizeof(why)));
	assert_true(why[0] != '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_generations_and_preconditions),
		cmocka_unit_test(test_versioning),
		cmocka_unit_test(test_patch),
		cmocka_unit_test(test_list_paging),
		cmocka_unit_test(test_list_versions_paging),
		cmocka_unit_test(test_sessions_memory),
		cmocka_unit_test(test_sessions_pruned),
		cmocka_unit_test(test_concat_and_reset),
		cmocka_unit_test(test_persistence),
		cmocka_unit_test(test_lost_blob_file),
		cmocka_unit_test(test_bad_data_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
