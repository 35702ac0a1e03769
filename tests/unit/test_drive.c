/* Unit tests for the pure parts of the Drive backend (sync/drive_names.c,
 * sync/drive_parse.c): source and endpoint parsing, the name mapping (its
 * exact inverse, checked on every string of a small alphabet and on random
 * ones), duplicate suffixes, query quoting, file / list / ids parsing on
 * real-shaped replies and malformed ones, and the batch format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/backend.h"
#include "durafs/cksum.h"
#include "durafs/drive.h"
#include "durafs/log.h"

#define FS "\xef\xbc\x8f"   /* U+FF0F */
#define FD "\xef\xbc\x8e"   /* U+FF0E */
#define Q "\xe2\x80\x9b"    /* U+201B */

/* --- source, endpoint ------------------------------------------------------ */

static void test_parse_source(void **state)
{
	struct drive_source s;
	struct err e;
	static const char *const bad[] = {
		"drive", "gs://b", "drive:id=", "drive:id=a b", "drive:id=x/../y",
		"drive:shared=", "drive:shared_id=", "drive:shared_id=a%b", "drive:a//b",
		"drive:./x", "drive:x/..", "drive:shared=" Q "x", NULL,
	};
	size_t i;

	(void)state;
	assert_int_equal(drive_parse_source("drive:", &s, &e), 0);
	assert_int_equal(s.kind, DRIVE_ROOT_MY);
	assert_null(s.ref);
	assert_string_equal(s.path, "");
	drive_source_release(&s);

	assert_int_equal(drive_parse_source("drive:Projects/a" FS "b/", &s, &e), 0);
	assert_int_equal(s.kind, DRIVE_ROOT_MY);
	assert_string_equal(s.path, "Projects/a" FS "b");
	drive_source_release(&s);

	/* A leading '/' makes "id=x" a folder name. */
	assert_int_equal(drive_parse_source("drive:/id=x", &s, &e), 0);
	assert_int_equal(s.kind, DRIVE_ROOT_MY);
	assert_string_equal(s.path, "id=x");
	drive_source_release(&s);

	assert_int_equal(drive_parse_source("drive:id=1AbC_d-9/sub/dir", &s, &e), 0);
	assert_int_equal(s.kind, DRIVE_ROOT_ID);
	assert_string_equal(s.ref, "1AbC_d-9");
	assert_string_equal(s.path, "sub/dir");
	drive_source_release(&s);

	assert_int_equal(drive_parse_source("drive:shared=Team A" FS "B/x", &s, &e), 0);
	assert_int_equal(s.kind, DRIVE_ROOT_SHARED_NAME);
	assert_string_equal(s.ref, "Team A/B");
	assert_string_equal(s.path, "x");
	drive_source_release(&s);

	assert_int_equal(drive_parse_source("drive:shared_id=0ABCdef", &s, &e), 0);
	assert_int_equal(s.kind, DRIVE_ROOT_SHARED_ID);
	assert_string_equal(s.ref, "0ABCdef");
	assert_string_equal(s.path, "");
	drive_source_release(&s);

	for (i = 0; bad[i]; i++) {
		if (drive_parse_source(bad[i], &s, &e) == 0)
			fail_msg("accepted bad source %s", bad[i]);
		assert_int_equal(e.code, ERR_INVAL);
		assert_null(s.ref);
		assert_null(s.path);
	}
	assert_int_equal(drive_parse_source(NULL, &s, &e), -1);
}

static void test_endpoint(void **state)
{
	char ep[256];
	struct err e;
	int emu = -1;

	(void)state;
	unsetenv(DRIVE_ENV_ENDPOINT);
	assert_int_equal(drive_endpoint(NULL, ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, DRIVE_DEFAULT_ENDPOINT);
	assert_int_equal(emu, 0);
	setenv(DRIVE_ENV_ENDPOINT, "127.0.0.1:8080/", 1);
	assert_int_equal(drive_endpoint("", ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, "http://127.0.0.1:8080");
	assert_int_equal(emu, 1);
	assert_int_equal(drive_endpoint("https://example.com//", ep, sizeof(ep), &emu, &e), 0);
	assert_string_equal(ep, "https://example.com");
	assert_int_equal(emu, 0);
	assert_int_equal(drive_endpoint("ftp://x", ep, sizeof(ep), NULL, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_int_equal(drive_endpoint("http://", ep, sizeof(ep), NULL, &e), -1);
	assert_int_equal(drive_endpoint("http://x", ep, 5, NULL, &e), -1);
	unsetenv(DRIVE_ENV_ENDPOINT);
}

/* --- names ----------------------------------------------------------------- */

/* Append t to the NUL-terminated s of capacity cap. */
static void append(char *s, size_t cap, const char *t)
{
	size_t n = strlen(s), m = strlen(t);

	assert_true(n + m < cap);
	memcpy(s + n, t, m + 1);
}

static void check_pair(const char *remote, const char *shown)
{
	char *a, *b;
	int oom;

	a = drive_name_encode(remote, strlen(remote), &oom);
	if (!a || strcmp(a, shown) != 0)
		fail_msg("encode(\"%s\") = \"%s\", want \"%s\"", remote, a ? a : "(null)", shown);
	b = drive_name_decode(shown, strlen(shown), &oom);
	if (!b || strcmp(b, remote) != 0)
		fail_msg("decode(\"%s\") = \"%s\", want \"%s\"", shown, b ? b : "(null)", remote);
	free(a);
	free(b);
}

static void test_name_table(void **state)
{
	static const char *const undecodable[] = {
		Q, "a" Q, Q "a", "a" Q "b", Q FD "x", "x" Q FD, Q FD FD, FD Q FD, Q FD Q FD Q FD,
		".", "..", "", "a/b", NULL,
	};
	char big[300], *r;
	size_t i;
	int oom;

	(void)state;
	check_pair("plain.txt", "plain.txt");
	check_pair("a/b", "a" FS "b");
	check_pair("/", FS);
	check_pair("//x//", FS FS "x" FS FS);
	check_pair(".", FD);
	check_pair("..", FD FD);
	check_pair("...", "...");
	check_pair(".hidden", ".hidden");
	check_pair("a" FS "b", "a" Q FS "b");
	check_pair("x" Q "y", "x" Q Q "y");
	check_pair(Q, Q Q);
	check_pair(FD, Q FD);
	check_pair(FD FD, Q FD Q FD);
	check_pair(FD FD FD, FD FD FD);
	check_pair("a" FD, "a" FD);
	check_pair(Q FD, Q Q FD);
	check_pair(Q "/", Q Q FS);
	check_pair("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac");
	for (i = 0; undecodable[i]; i++) {
		r = drive_name_decode(undecodable[i], strlen(undecodable[i]), &oom);
		if (r)
			fail_msg("decode(\"%s\") accepted: \"%s\"", undecodable[i], r);
		assert_int_equal(oom, 0);
	}
	/* Not showable: empty, NUL, too long once mapped. */
	assert_null(drive_name_encode("", 0, &oom));
	assert_null(drive_name_encode("a\0b", 3, &oom));
	memset(big, 'x', 255);
	r = drive_name_encode(big, 255, &oom);
	assert_non_null(r);
	assert_int_equal(strlen(r), 255);
	free(r);
	big[0] = '/';
	assert_null(drive_name_encode(big, 255, &oom));  /* 257 bytes shown */
	assert_int_equal(oom, 0);
}

/* Every string of up to 4 symbols over an alphabet of the characters that
 * matter: decode(encode(x)) == x, and encode(decode(y)) == y whenever y
 * decodes. */
static void test_name_exhaustive(void **state)
{
	static const char *const sym[] = { "a", ".", "/", FS, FD, Q };
	const size_t ns = sizeof(sym) / sizeof(sym[0]);
	char s[64], *a, *b;
	size_t len, code, k, idx, checked = 0, decodable = 0;
	int oom;

	(void)state;
	for (len = 1; len <= 4; len++) {
		size_t total = 1;

		for (k = 0; k < len; k++)
			total *= ns;
		for (code = 0; code < total; code++) {
			s[0] = '\0';
			idx = code;
			for (k = 0; k < len; k++) {
				append(s, sizeof(s), sym[idx % ns]);
				idx /= ns;
			}
			a = drive_name_encode(s, strlen(s), &oom);
			assert_non_null(a);
			assert_true(be_name_valid(a, strlen(a)));
			b = drive_name_decode(a, strlen(a), &oom);
			if (!b || strcmp(b, s) != 0)
				fail_msg("decode(encode(\"%s\")) = \"%s\"", s, b ? b : "(null)");
			free(a);
			free(b);
			b = drive_name_decode(s, strlen(s), &oom);
			if (b) {
				decodable++;
				a = drive_name_encode(b, strlen(b), &oom);
				if (!a || strcmp(a, s) != 0)
					fail_msg("encode(decode(\"%s\")) = \"%s\"", s, a ? a : "(null)");
				free(a);
				free(b);
			}
			checked++;
		}
	}
	print_message("    %zu strings checked, %zu shown names decodable\n", checked, decodable);
	assert_true(decodable > 100);
}

static void test_name_random(void **state)
{
	static const char *const sym[] = { "a", "b", ".", "/", FS, FD, Q, "\xc3\xa9", " " };
	unsigned seed = 12345;
	char s[200], *a, *b;
	int i, k, n, oom;

	(void)state;
	for (i = 0; i < 20000; i++) {
		s[0] = '\0';
		n = 1 + (int)(rand_r(&seed) % 20);
		for (k = 0; k < n; k++)
			append(s, sizeof(s), sym[rand_r(&seed) % (sizeof(sym) / sizeof(sym[0]))]);
		a = drive_name_encode(s, strlen(s), &oom);
		assert_non_null(a);
		b = drive_name_decode(a, strlen(a), &oom);
		assert_non_null(b);
		assert_string_equal(b, s);
		free(a);
		free(b);
	}
}

struct item {
	const char *name, *id, *ext;
	int dir;
	long ctime;
};

/* Assign names to items and return them (caller frees each and the array). */
static char **assign(const struct item *it, size_t n, size_t *skipped)
{
	struct drive_name_in *in = calloc(n ? n : 1, sizeof(*in));
	char **out = calloc(n ? n : 1, sizeof(*out));
	struct err e;
	size_t i;

	assert_non_null(in);
	assert_non_null(out);
	for (i = 0; i < n; i++) {
		in[i].name = it[i].name;
		in[i].name_len = strlen(it[i].name);
		in[i].id = it[i].id;
		in[i].ext = it[i].ext;
		in[i].is_dir = it[i].dir;
		in[i].ctime.tv_sec = it[i].ctime;
	}
	assert_int_equal(drive_names_assign(in, n, out, NULL, skipped, &e), 0);
	free(in);
	return out;
}

static void free_names(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static char *sfx(const char *base, const char *id, int dir, int digits)
{
	char *s = drive_name_suffixed(base, id, dir, digits);

	assert_non_null(s);
	return s;
}

static void test_names_duplicates(void **state)
{
	struct item it[] = {
		{ "report.txt", "idB", NULL, 0, 200 },
		{ "report.txt", "idA", NULL, 0, 100 },   /* oldest: plain */
		{ "report.txt", "idC", NULL, 0, 200 },   /* same time as idB: id order */
		{ "a/b", "idS", NULL, 0, 5 },
		{ "Notes", "idD", ".docx", 0, 50 },      /* a Doc shown as Notes.docx */
		{ "Notes.docx", "idF", NULL, 0, 10 },    /* older: keeps the plain name */
		{ "dir", "idX", NULL, 1, 1 },
		{ "dir", "idY", NULL, 1, 2 },
		{ ".", "idDot", NULL, 0, 1 },
		{ "", "idEmpty", NULL, 0, 1 },
		{ ".bashrc", "idR1", NULL, 0, 1 },
		{ ".bashrc", "idR2", NULL, 0, 2 },
	};
	const size_t n = sizeof(it) / sizeof(it[0]);
	size_t skipped = 0, i, j;
	char **out, *s;

	(void)state;
	log_set_level(LOG_LVL_ERROR);
	out = assign(it, n, &skipped);
	assert_int_equal(skipped, 1);
	assert_null(out[9]);
	assert_string_equal(out[1], "report.txt");
	s = sfx("report.txt", "idB", 0, 6);
	assert_string_equal(out[0], s);
	assert_non_null(strstr(s, "report ("));
	assert_true(strlen(s) == strlen("report (123456).txt"));
	assert_string_equal(s + strlen(s) - 4, ".txt");
	free(s);
	s = sfx("report.txt", "idC", 0, 6);
	assert_string_equal(out[2], s);
	free(s);
	assert_string_equal(out[3], "a" FS "b");
	assert_string_equal(out[5], "Notes.docx");
	s = sfx("Notes.docx", "idD", 0, 6);
	assert_string_equal(out[4], s);
	free(s);
	assert_string_equal(out[6], "dir");
	s = sfx("dir", "idY", 1, 6);
	assert_string_equal(out[7], s);
	assert_int_equal(s[strlen(s) - 1], ')');  /* folders: suffix at the end */
	free(s);
	assert_string_equal(out[8], FD);
	assert_string_equal(out[10], ".bashrc");
	s = sfx(".bashrc", "idR2", 0, 6);
	assert_string_equal(out[11], s);  /* a leading dot is no extension */
	assert_int_equal(s[strlen(s) - 1], ')');
	free(s);
	/* All shown names are distinct and valid. */
	for (i = 0; i < n; i++) {
		if (!out[i])
			continue;
		assert_true(be_name_valid(out[i], strlen(out[i])));
		for (j = i + 1; j < n; j++)
			if (out[j])
				assert_string_not_equal(out[i], out[j]);
	}
	free_names(out, n);
}

/* The assignment does not depend on the listing order. */
static void test_names_stable(void **state)
{
	struct item it[40], perm[40];
	char names[40][16], ids[40][16], **a, **b;
	unsigned seed = 7;
	size_t i, j, skipped;
	int round;

	(void)state;
	for (i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu.dat", i % 7);
		snprintf(ids[i], sizeof(ids[i]), "id%02zu", i);
		it[i].name = names[i];
		it[i].id = ids[i];
		it[i].ext = NULL;
		it[i].dir = (int)(i % 11 == 0);
		it[i].ctime = (long)(i % 5);
	}
	a = assign(it, 40, &skipped);
	for (round = 0; round < 20; round++) {
		size_t map[40];

		for (i = 0; i < 40; i++)
			map[i] = i;
		for (i = 39; i > 0; i--) {
			size_t k = rand_r(&seed) % (i + 1), t = map[i];

			map[i] = map[k];
			map[k] = t;
		}
		for (i = 0; i < 40; i++)
			perm[i] = it[map[i]];
		b = assign(perm, 40, &skipped);
		for (i = 0; i < 40; i++)
			assert_string_equal(b[i], a[map[i]]);
		free_names(b, 40);
	}
	for (i = 0; i < 40; i++)
		for (j = i + 1; j < 40; j++)
			assert_string_not_equal(a[i], a[j]);
	free_names(a, 40);
}

/* A suffixed name taken by a literal name: the suffix grows. */
static void test_names_collision(void **state)
{
	struct item it[3];
	char *taken = sfx("x.bin", "idZ", 0, 6), *longer = sfx("x.bin", "idZ", 0, 8), **out;
	size_t skipped;

	(void)state;
	it[0] = (struct item){ "x.bin", "idA", NULL, 0, 1 };
	it[1] = (struct item){ "x.bin", "idZ", NULL, 0, 2 };
	it[2] = (struct item){ taken, "idL", NULL, 0, 3 };
	out = assign(it, 3, &skipped);
	assert_string_equal(out[0], "x.bin");
	assert_string_equal(out[2], taken);
	assert_string_equal(out[1], longer);
	free_names(out, 3);
	free(taken);
	free(longer);
	/* Digits out of range, or too long. */
	assert_null(drive_name_suffixed("a", "id", 0, 1));
	assert_null(drive_name_suffixed("a", "id", 0, 33));
}

static void test_exports_and_quote(void **state)
{
	const struct drive_export *x;
	char *q;

	(void)state;
	x = drive_export_for("application/vnd.google-apps.document");
	assert_non_null(x);
	assert_string_equal(x->ext, ".docx");
	assert_string_equal(drive_export_for("application/vnd.google-apps.spreadsheet")->ext,
			    ".xlsx");
	assert_string_equal(drive_export_for("application/vnd.google-apps.presentation")->ext,
			    ".pptx");
	x = drive_export_for("application/vnd.google-apps.drawing");
	assert_string_equal(x->ext, ".pdf");
	assert_string_equal(x->export_mime, "application/pdf");
	assert_null(drive_export_for("application/vnd.google-apps.form"));
	assert_null(drive_export_for(DRIVE_MIME_FOLDER));
	assert_null(drive_export_for(NULL));
	q = drive_q_quote("it's a \\ test");
	assert_string_equal(q, "'it\\'s a \\\\ test'");
	free(q);
	q = drive_q_quote("");
	assert_string_equal(q, "''");
	free(q);
}

/* --- parsers --------------------------------------------------------------- */

static const char file_json[] =
	"{\"kind\":\"drive#file\",\"id\":\"1aB-c_D\",\"name\":\"a/b.txt\","
	"\"mimeType\":\"text/plain\",\"parents\":[\"0root\"],\"size\":\"12\","
	"\"md5Checksum\":\"6f5902ac237024bdd0c176cb93063dc4\","
	"\"modifiedTime\":\"2024-05-01T12:34:56.789Z\",\"createdTime\":\"2024-05-01T00:00:00Z\","
	"\"version\":\"42\",\"trashed\":false,\"explicitlyTrashed\":false,"
	"\"appProperties\":{\"other\":\"x\"}}";

static void test_parse_file(void **state)
{
	struct drive_file f, c;
	unsigned char md5[16];
	struct err e;

	(void)state;
	assert_int_equal(drive_parse_file(file_json, strlen(file_json), &f, &e), 0);
	assert_string_equal(f.id, "1aB-c_D");
	assert_int_equal(f.name_len, 7);
	assert_string_equal(f.name, "a/b.txt");
	assert_string_equal(f.mime, "text/plain");
	assert_string_equal(f.parent, "0root");
	assert_true(f.has_size);
	assert_int_equal(f.size, 12);
	assert_true(f.has_md5);
	ck_md5("hello world\n", 12, md5);
	assert_memory_equal(f.md5, md5, 16);
	assert_int_equal(f.version, 42);
	assert_int_equal(f.mtime.tv_sec, 1714566896);
	assert_int_equal(f.mtime.tv_nsec, 789000000);
	assert_int_equal(f.ctime.tv_sec, 1714521600);
	assert_null(f.symlink_target);
	assert_int_equal(drive_file_copy(&c, &f, &e), 0);
	assert_string_equal(c.name, f.name);
	assert_ptr_not_equal(c.name, f.name);
	drive_file_release(&c);
	drive_file_release(&f);
}

static void test_parse_file_kinds(void **state)
{
	static const char sc[] = "{\"id\":\"s1\",\"name\":\"link\",\"mimeType\":"
		"\"application/vnd.google-apps.shortcut\",\"shortcutDetails\":{\"targetId\":\"t1\","
		"\"targetMimeType\":\"application/vnd.google-apps.folder\"}}";
	static const char doc[] = "{\"id\":\"d1\",\"name\":\"Doc\",\"mimeType\":"
		"\"application/vnd.google-apps.document\",\"version\":7}";
	static const char sym[] = "{\"id\":\"l1\",\"name\":\"ln\",\"mimeType\":\"text/plain\","
		"\"size\":3,\"appProperties\":{\"" DRIVE_PROP_SYMLINK "\":\"a/b\"}}";
	static const char symbad[] = "{\"id\":\"l1\",\"name\":\"ln\",\"mimeType\":\"text/plain\","
		"\"appProperties\":{\"" DRIVE_PROP_SYMLINK "\":7}}";
	static const char nul[] = "{\"id\":\"n1\",\"name\":\"a\\u0000b\",\"mimeType\":\"x/y\","
		"\"trashed\":true,\"trashedTime\":\"2024-01-01T00:00:00Z\"}";
	static const char shared[] = "{\"id\":\"n1\",\"name\":\"x\",\"mimeType\":\"x/y\","
		"\"driveId\":\"0AbC\"}";
	struct drive_file f;
	struct err e;

	(void)state;
	assert_int_equal(drive_parse_file(sc, strlen(sc), &f, &e), 0);
	assert_string_equal(f.target_id, "t1");
	assert_string_equal(f.target_mime, DRIVE_MIME_FOLDER);
	assert_false(f.has_size);
	drive_file_release(&f);
	assert_int_equal(drive_parse_file(doc, strlen(doc), &f, &e), 0);
	assert_int_equal(f.version, 7);
	assert_false(f.has_md5);
	drive_file_release(&f);
	assert_int_equal(drive_parse_file(sym, strlen(sym), &f, &e), 0);
	assert_string_equal(f.symlink_target, "a/b");
	drive_file_release(&f);
	assert_int_equal(drive_parse_file(symbad, strlen(symbad), &f, &e), 0);
	assert_null(f.symlink_target);  /* written by anyone: ignored */
	drive_file_release(&f);
	assert_int_equal(drive_parse_file(nul, strlen(nul), &f, &e), 0);
	assert_int_equal(f.name_len, 3);
	assert_int_equal(f.name[1], '\0');
	assert_true(f.trashed);
	assert_int_equal(f.ttime.tv_sec, 1704067200);
	drive_file_release(&f);
	assert_int_equal(drive_parse_file(shared, strlen(shared), &f, &e), 0);
	assert_string_equal(f.drive_id, "0AbC");
	drive_file_release(&f);
}

static void test_parse_file_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"{\"id\":\"x\",\"name\":\"n\"}",                                   /* no mimeType */
		"{\"name\":\"n\",\"mimeType\":\"m\"}",                             /* no id */
		"{\"id\":\"\",\"name\":\"n\",\"mimeType\":\"m\"}",
		"{\"id\":\"a/b\",\"name\":\"n\",\"mimeType\":\"m\"}",
		"{\"id\":\"x\",\"mimeType\":\"m\"}",                               /* no name */
		"{\"id\":\"x\",\"name\":5,\"mimeType\":\"m\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"size\":\"-1\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"size\":\"1x\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"size\":1.5}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"md5Checksum\":\"abc\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"md5Checksum\":"
		"\"zz5902ac237024bdd0c176cb93063dc4\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"version\":\"-3\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"modifiedTime\":\"yesterday\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"trashed\":\"no\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"parents\":\"p\"}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"parents\":[5]}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"parents\":[\"a b\"]}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"shortcutDetails\":{}}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"shortcutDetails\":"
		"{\"targetId\":\"../x\"}}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\",\"appProperties\":[]}",
		"{\"id\":\"x\",\"name\":\"n\",\"mimeType\":\"m\"} trailing",
		NULL,
	};
	struct drive_file f;
	struct err e;
	size_t i;

	(void)state;
	for (i = 0; bad[i]; i++) {
		err_clear(&e);
		if (drive_parse_file(bad[i], strlen(bad[i]), &f, &e) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_int_equal(e.code, ERR_PARSE);
		assert_null(f.id);
		assert_true(strlen(e.msg) > 0);
	}
}

static void test_parse_list_page(void **state)
{
	static const char page[] = "{\"nextPageToken\":\"tok2\",\"incompleteSearch\":false,"
		"\"files\":[{\"id\":\"a\",\"name\":\"A\",\"mimeType\":\"x/y\"},"
		"{\"id\":\"b\",\"name\":\"B\",\"mimeType\":\"application/vnd.google-apps.folder\"}]}";
	static const char empty_tok[] = "{\"nextPageToken\":\"t\",\"files\":[]}";
	static const char last[] = "{\"incompleteSearch\":true}";
	static const char *const bad[] = {
		"{\"files\":{}}", "{\"files\":[1]}", "{\"files\":[{\"id\":\"a\"}]}",
		"{\"nextPageToken\":5}", "{\"incompleteSearch\":1}", "null", NULL,
	};
	struct drive_page pg;
	struct err e;
	size_t i;

	(void)state;
	assert_int_equal(drive_parse_list_page(page, strlen(page), &pg, &e), 0);
	assert_int_equal(pg.n, 2);
	assert_string_equal(pg.next_token, "tok2");
	assert_string_equal(pg.files[1].mime, DRIVE_MIME_FOLDER);
	assert_int_equal(pg.incomplete, 0);
	drive_page_release(&pg);
	assert_int_equal(drive_parse_list_page(empty_tok, strlen(empty_tok), &pg, &e), 0);
	assert_int_equal(pg.n, 0);
	assert_string_equal(pg.next_token, "t");
	drive_page_release(&pg);
	assert_int_equal(drive_parse_list_page(last, strlen(last), &pg, &e), 0);
	assert_null(pg.next_token);
	assert_int_equal(pg.incomplete, 1);
	drive_page_release(&pg);
	for (i = 0; bad[i]; i++) {
		if (drive_parse_list_page(bad[i], strlen(bad[i]), &pg, &e) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_int_equal(e.code, ERR_PARSE);
		assert_int_equal(pg.n, 0);
	}
}

static void test_parse_ids(void **state)
{
	static const char ok[] = "{\"kind\":\"drive#generatedIds\",\"space\":\"drive\","
		"\"ids\":[\"id1\",\"id2\",\"id3\"]}";
	char *ids[2];
	struct err e;

	(void)state;
	assert_int_equal(drive_parse_ids(ok, strlen(ok), ids, 2, &e), 2);
	assert_string_equal(ids[0], "id1");
	assert_string_equal(ids[1], "id2");
	free(ids[0]);
	free(ids[1]);
	assert_int_equal(drive_parse_ids("{\"ids\":[]}", 10, ids, 2, &e), -1);
	assert_int_equal(drive_parse_ids("{\"ids\":[\"a b\"]}", 15, ids, 2, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
	assert_int_equal(drive_parse_ids("{}", 2, ids, 2, &e), -1);
}

/* --- batch ----------------------------------------------------------------- */

static void test_batch_body(void **state)
{
	const char *ids[3] = { "aa", "bb", "cc" };
	const char *bad[1] = { "a/b" };
	struct err e;
	size_t len;
	char *b;

	(void)state;
	b = drive_batch_delete_body("BND", "/drive/v3", ids, 3, &len, &e);
	assert_non_null(b);
	assert_int_equal(len, strlen(b));
	assert_non_null(strstr(b, "--BND\r\nContent-Type: application/http\r\nContent-ID: "
				  "<item-0>\r\n\r\nDELETE /drive/v3/files/aa?supportsAllDrives=true "
				  "HTTP/1.1\r\n"));
	assert_non_null(strstr(b, "<item-2>"));
	assert_non_null(strstr(b, "/files/cc?"));
	assert_string_equal(b + len - 9, "--BND--\r\n");
	free(b);
	assert_null(drive_batch_delete_body("BND", "/drive/v3", bad, 1, &len, &e));
	assert_int_equal(e.code, ERR_INVAL);
	assert_null(drive_batch_delete_body("BND", "/drive/v3", ids, 0, &len, &e));
}

static const char reply[] =
	"--batch_Xy\r\n"
	"Content-Type: application/http\r\n"
	"Content-ID: <response-item-2>\r\n"
	"\r\n"
	"HTTP/1.1 404 Not Found\r\n"
	"Content-Type: application/json; charset=UTF-8\r\n"
	"\r\n"
	"{\"error\":{\"code\":404,\"message\":\"File not found: cc.\",\"errors\":"
	"[{\"reason\":\"notFound\"}]}}\r\n"
	"--batch_Xy\r\n"
	"Content-Type: application/http\r\n"
	"Content-ID: <response-item-0>\r\n"
	"\r\n"
	"HTTP/1.1 204 No Content\r\n"
	"\r\n"
	"\r\n"
	"--batch_Xy\r\n"
	"Content-Type: application/http\r\n"
	"content-id: response-item-1\r\n"
	"\r\n"
	"HTTP/1.1 403 Forbidden\r\n"
	"Content-Type: application/json\r\n"
	"\r\n"
	"{\"error\":{\"code\":403,\"message\":\"User Rate Limit Exceeded\",\"errors\":"
	"[{\"reason\":\"userRateLimitExceeded\"}]}}\r\n"
	"--batch_Xy--\r\n";

static void test_batch_reply(void **state)
{
	struct drive_batch_part parts[4];
	struct err e;
	size_t n = 0;
	char lf[sizeof(reply)];
	size_t i, k = 0;

	(void)state;
	assert_int_equal(drive_parse_batch_reply("multipart/mixed; boundary=batch_Xy", reply,
						 strlen(reply), parts, 4, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(parts[0].index, 2);
	assert_int_equal(parts[0].status, 404);
	assert_string_equal(parts[0].reason, "notFound");
	assert_int_equal(parts[1].index, 0);
	assert_int_equal(parts[1].status, 204);
	assert_string_equal(parts[1].reason, "");
	assert_int_equal(parts[2].index, 1);
	assert_int_equal(parts[2].status, 403);
	assert_string_equal(parts[2].reason, "userRateLimitExceeded");
	/* Quoted boundary, bare LF line ends. */
	for (i = 0; reply[i]; i++)
		if (reply[i] != '\r')
			lf[k++] = reply[i];
	lf[k] = '\0';
	assert_int_equal(drive_parse_batch_reply("multipart/mixed; charset=x; boundary=\"batch_Xy\"",
						 lf, k, parts, 4, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(parts[2].status, 403);
	/* Too many parts for the array. */
	assert_int_equal(drive_parse_batch_reply("multipart/mixed; boundary=batch_Xy", reply,
						 strlen(reply), parts, 2, &n, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
}

static void test_batch_reply_bad(void **state)
{
	static const char *const bodies[] = {
		"",
		"no delimiter at all",
		"--B\r\nContent-ID: <response-item-0>\r\n\r\nHTTP/1.1 204\r\n\r\n",  /* unclosed */
		"--B\r\nContent-ID: <response-item-0>\r\n\r\nnot a status\r\n--B--\r\n",
		"--B\r\nContent-ID: <response-item-0>\r\n\r\nHTTP/1.1 9x4 No\r\n--B--\r\n",
		"--B\r\nContent-ID: <response-item-0>\r\nno blank line--B--",
		"--B\r\nbad header line\r\n\r\nHTTP/1.1 204 No Content\r\n--B--\r\n",
		"x--B\r\n\r\nHTTP/1.1 204 No Content\r\n--B--\r\n",
		NULL,
	};
	struct drive_batch_part parts[4];
	struct err e;
	size_t n, i;

	(void)state;
	for (i = 0; bodies[i]; i++) {
		if (drive_parse_batch_reply("multipart/mixed; boundary=B", bodies[i],
					    strlen(bodies[i]), parts, 4, &n, &e) == 0)
			fail_msg("accepted batch reply %zu", i);
		assert_int_equal(e.code, ERR_PARSE);
	}
	assert_int_equal(drive_parse_batch_reply("application/json", "--B--", 5, parts, 4, &n,
						 &e), -1);
	assert_int_equal(drive_parse_batch_reply(NULL, "--B--", 5, parts, 4, &n, &e), -1);
	assert_int_equal(drive_parse_batch_reply("multipart/mixed; boundary=", "--B--", 5, parts,
						 4, &n, &e), -1);
	/* An empty batch reply is well-formed. */
	assert_int_equal(drive_parse_batch_reply("multipart/mixed; boundary=B", "--B--\r\n", 7,
						 parts, 4, &n, &e), 0);
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_source),
		cmocka_unit_test(test_endpoint),
		cmocka_unit_test(test_name_table),
		cmocka_unit_test(test_name_exhaustive),
		cmocka_unit_test(test_name_random),
		cmocka_unit_test(test_names_duplicates),
		cmocka_unit_test(test_names_stable),
		cmocka_unit_test(test_names_collision),
		cmocka_unit_test(test_exports_and_quote),
		cmocka_unit_test(test_parse_file),
		cmocka_unit_test(test_parse_file_kinds),
		cmocka_unit_test(test_parse_file_bad),
		cmocka_unit_test(test_parse_list_page),
		cmocka_unit_test(test_parse_ids),
		cmocka_unit_test(test_batch_body),
		cmocka_unit_test(test_batch_reply),
		cmocka_unit_test(test_batch_reply_bad),
	};

	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests_name("drive", tests, NULL, NULL);
}
