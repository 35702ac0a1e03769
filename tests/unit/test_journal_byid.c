/* Unit tests for jnl_entries_by_id (sync/journal.c): the places the stored
 * listings show one remote item at, found by the id part of the entries'
 * remote versions -- every listing holding it (a duplicate in two folders),
 * none for an unknown id or a prefix of one, entries without an id never
 * matched, forgotten listings gone, a reopen keeping them, bad input
 * refused; several ids in one query (jnl_entries_by_ids). The lookup goes
 * through the index entries_id (schema version 3): its query plan, results
 * identical to the full scan it replaced, and a version 2 journal upgraded
 * on open with its stored entries indexed; jnl_dir_put, which writes only
 * the rows that differ (the index makes every row written cost more),
 * leaving exactly the listing given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "durafs/journal.h"
#include "unit_util.h"

#define OK(expr) ut_ok_at((expr), &e, #expr, __LINE__)

static void put(struct jnl *j, const char *dir, const char *name, int type, const char *remote)
{
	struct jnl_entry en;
	struct err e;

	memset(&en, 0, sizeof(en));
	en.name = (char *)name;
	en.type = type;
	en.size = 1;
	en.remote = (char *)remote;
	OK(jnl_entry_put(j, dir, &en, &e));
}

/* The places of id as "path:type,..." into buf. */
static void places(struct jnl *j, const char *id, char *buf, size_t cap)
{
	struct jnl_place *v = NULL;
	size_t n = 99, i, at = 0;
	struct err e;

	OK(jnl_entries_by_id(j, id, &v, &n, &e));
	buf[0] = '\0';
	for (i = 0; i < n; i++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%s:%d", i ? "," : "", v[i].path,
				       v[i].type);
	if (n == 0)
		assert_null(v);
	jnl_places_free(v, n);
}

static void test_by_id(void **state)
{
	struct ut_jnl_fx *f = *state;
	struct jnl_entry lst[2];
	struct jnl_place *v = (struct jnl_place *)1;
	char got[512];
	size_t n = 7;
	struct err e;

	memset(lst, 0, sizeof(lst));
	lst[0].name = "a.txt";
	lst[0].type = JNL_FILE;
	lst[0].remote = "g3.0:ID-A";
	lst[1].name = "sub";
	lst[1].type = JNL_DIR;
	lst[1].remote = "g1.0:ID-SUB";
	OK(jnl_dir_put(f->j, "", lst, 2, 1, &e));
	put(f->j, "sub", "b (3f2a1c).txt", JNL_FILE, "g2.0:ID-B");
	put(f->j, "sub", "c", JNL_FILE, "g2.0");                 /* no id (GCS) */
	put(f->j, "sub/deeper", "again.txt", JNL_FILE, "g9.1:ID-A");
	put(f->j, "other", "ID-A", JNL_FILE, "g1.0:X");          /* the id as a name */
	put(f->j, "other", "prefix", JNL_FILE, "g1.0:ID-AB");

	places(f->j, "ID-A", got, sizeof(got));
	assert_string_equal(got, "a.txt:1,sub/deeper/again.txt:1");
	places(f->j, "ID-SUB", got, sizeof(got));
	assert_string_equal(got, "sub:2");
	places(f->j, "ID-B", got, sizeof(got));
	assert_string_equal(got, "sub/b (3f2a1c).txt:1");
	places(f->j, "ID", got, sizeof(got));
	assert_string_equal(got, "");
	places(f->j, "g2.0", got, sizeof(got));
	assert_string_equal(got, "");
	places(f->j, "unknown", got, sizeof(got));
	assert_string_equal(got, "");

	/* a forgotten subtree no longer shows it; a reopen keeps the rest */
	OK(jnl_dir_forget(f->j, "sub", &e));
	places(f->j, "ID-A", got, sizeof(got));
	assert_string_equal(got, "a.txt:1");
	jnl_close(f->j);
	f->j = NULL;
	OK(jnl_open(f->path, NULL, &f->j, NULL, &e));
	places(f->j, "ID-A", got, sizeof(got));
	assert_string_equal(got, "a.txt:1");
	places(f->j, "ID-SUB", got, sizeof(got));
	assert_string_equal(got, "sub:2");

	/* several ids in one query; ids JSON must escape; an unknown one */
	{
		const char *ids[] = { "ID-SUB", "q\"uo\\te", "nope", "ID-A" };
		struct jnl_place *pv = NULL;
		size_t pn = 0, i;

		put(f->j, "other", "quoted", JNL_FILE, "g1.0:q\"uo\\te");
		OK(jnl_entries_by_ids(f->j, ids, 4, &pv, &pn, &e));
		assert_int_equal(pn, 3);
		assert_string_equal(pv[0].path, "a.txt");
		assert_string_equal(pv[1].path, "sub");     /* (dir, name) order */
		assert_int_equal(pv[1].type, JNL_DIR);
		assert_string_equal(pv[2].path, "other/quoted");
		jnl_places_free(pv, pn);
		OK(jnl_entries_by_ids(f->j, ids, 0, &pv, &pn, &e));
		assert_null(pv);
		assert_int_equal(pn, 0);
		ids[1] = "bad\xff";
		assert_int_equal(jnl_entries_by_ids(f->j, ids, 4, &pv, &pn, &e), -1);
		assert_int_equal(e.code, ERR_INVAL);
		ids[1] = "";
		assert_int_equal(jnl_entries_by_ids(f->j, ids, 4, &pv, &pn, &e), -1);
		for (i = 0; i < pn; i++)
			fail();
	}

	/* bad input: refused, outputs cleared */
	assert_int_equal(jnl_entries_by_id(f->j, "", &v, &n, &e), -1);
	assert_int_equal(e.code, ERR_INVAL);
	assert_null(v);
	assert_int_equal(n, 0);
	assert_int_equal(jnl_entries_by_id(f->j, NULL, &v, &n, &e), -1);
	jnl_places_free(NULL, 0);
}

/* ---- the index (schema version 3) ------------------------------------- */

/* The statement jnl_entries_by_ids ran before schema version 3, forced to
 * scan (NOT INDEXED): the reference the indexed lookup must equal. */
static const char scan_sql[] =
	"SELECT dir,name,type FROM entries NOT INDEXED WHERE instr(remote,':')>0 "
	"AND substr(remote,instr(remote,':')+1) IN (SELECT value FROM "
	"json_each(?1)) ORDER BY dir,name";

/* The schema a version 2 journal has (as sync/journal.c created it before
 * version 3), for the upgrade test. */
static const char schema_v2_sql[] =
	"CREATE TABLE files( fid INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT,"
	" type INTEGER NOT NULL CHECK(type BETWEEN 1 AND 3), cache_name TEXT,"
	" target TEXT, version INTEGER NOT NULL DEFAULT 0,"
	" upl_version INTEGER NOT NULL DEFAULT 0, base TEXT,"
	" dirty INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,"
	" mtime_ns INTEGER NOT NULL DEFAULT 0);"
	"CREATE UNIQUE INDEX files_path ON files(path) WHERE path IS NOT NULL;"
	"CREATE INDEX files_dirty ON files(dirty) WHERE dirty=1;"
	"CREATE INDEX files_cache ON files(cache_name) WHERE cache_name IS NOT NULL;"
	"CREATE TABLE ops( seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" kind INTEGER NOT NULL CHECK(kind BETWEEN 1 AND 7), fid INTEGER NOT NULL,"
	" fid2 INTEGER, path TEXT NOT NULL, path2 TEXT, target TEXT,"
	" state INTEGER NOT NULL DEFAULT 0 CHECK(state BETWEEN 0 AND 3),"
	" ndeps INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 0,"
	" size INTEGER NOT NULL DEFAULT 0, mtime_ns INTEGER NOT NULL DEFAULT 0,"
	" created_ms INTEGER NOT NULL, not_before_ms INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0, claim INTEGER NOT NULL DEFAULT 0,"
	" lease_until_ms INTEGER NOT NULL DEFAULT 0, session TEXT, total INTEGER,"
	" persisted INTEGER NOT NULL DEFAULT 0, sess_version INTEGER,"
	" crc32c INTEGER, md5 BLOB, err_code INTEGER NOT NULL DEFAULT 0,"
	" err_msg TEXT, err_ms INTEGER, conflict_name TEXT,"
	" flags INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX ops_fid ON ops(fid,seq);"
	"CREATE INDEX ops_fid2 ON ops(fid2) WHERE fid2 IS NOT NULL;"
	"CREATE INDEX ops_path ON ops(path,seq);"
	"CREATE INDEX ops_path2 ON ops(path2,seq) WHERE path2 IS NOT NULL;"
	"CREATE INDEX ops_ready ON ops(state,ndeps,not_before_ms,seq);"
	"CREATE TABLE deps( seq INTEGER NOT NULL, dep INTEGER NOT NULL,"
	" PRIMARY KEY(seq,dep)) WITHOUT ROWID;"
	"CREATE INDEX deps_dep ON deps(dep);"
	"CREATE TRIGGER deps_ai AFTER INSERT ON deps BEGIN"
	" UPDATE ops SET ndeps=ndeps+1 WHERE seq=NEW.seq; END;"
	"CREATE TRIGGER deps_ad AFTER DELETE ON deps BEGIN"
	" UPDATE ops SET ndeps=ndeps-1 WHERE seq=OLD.seq; END;"
	"CREATE TABLE dirs( path TEXT PRIMARY KEY, complete INTEGER NOT NULL,"
	" fetched_ms INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE entries( dir TEXT NOT NULL, name TEXT NOT NULL,"
	" type INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
	" remote TEXT, flags INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(dir,name)) WITHOUT ROWID;"
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
	"CREATE TABLE cache_files( name TEXT PRIMARY KEY, remote TEXT,"
	" bytes INTEGER NOT NULL DEFAULT 0, atime_ms INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX cache_files_atime ON cache_files(atime_ms);"
	"CREATE TABLE cache_blocks( name TEXT NOT NULL, start INTEGER NOT NULL,"
	" end INTEGER NOT NULL, PRIMARY KEY(name,start)) WITHOUT ROWID;"
	"PRAGMA application_id=1685218931;"     /* 0x64726673 "drfs" */
	"PRAGMA user_version=2;";

/* A growing text buffer; fails the test when out of memory. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int need;
	char *np;

	for (;;) {
		va_start(ap, fmt);
		need = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		assert_true(need >= 0);
		if (b->p && b->len + (size_t)need < b->cap) {
			b->len += (size_t)need;
			return;
		}
		b->cap = (b->cap + (size_t)need + 1) * 2;
		np = realloc(b->p, b->cap);
		assert_non_null(np);
		b->p = np;
		if (b->len == 0)
			b->p[0] = '\0';
	}
}

/* Run sql on the database file path (no journal open on it); fails the
 * test on error. */
static void sql_on_file(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("sql: %s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* The first column of the first row of sql on path, as text into buf
 * ("" when no row). */
static void sql_text(const char *path, const char *sql, char *buf, size_t cap)
{
	sqlite3_stmt *s = NULL;
	sqlite3 *db = NULL;
	const unsigned char *t;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("sql: %s", sqlite3_errmsg(db));
	buf[0] = '\0';
	if (sqlite3_step(s) == SQLITE_ROW && (t = sqlite3_column_text(s, 0)))
		snprintf(buf, cap, "%s", (const char *)t);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* ids as the JSON array jnl_entries_by_ids binds (ids here need no
 * escaping but a quote or backslash, escaped). */
static void ids_json(const char *const *ids, size_t n, struct sbuf *b)
{
	size_t i;
	const char *c;

	sb_add(b, "[");
	for (i = 0; i < n; i++) {
		sb_add(b, "%s\"", i ? "," : "");
		for (c = ids[i]; *c; c++)
			sb_add(b, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
		sb_add(b, "\"");
	}
	sb_add(b, "]");
}

/* The places the full scan finds for ids, "path:type\n" each, appended to
 * out; db is the journal file opened directly (the journal closed). */
static void scan_places(sqlite3 *db, const char *const *ids, size_t n, struct sbuf *out)
{
	struct sbuf js = { 0 };
	sqlite3_stmt *s = NULL;
	const char *dir, *name;
	int r;

	ids_json(ids, n, &js);
	if (sqlite3_prepare_v2(db, scan_sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("sql: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(s, 1, js.p, -1, SQLITE_TRANSIENT);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		dir = (const char *)sqlite3_column_text(s, 0);
		name = (const char *)sqlite3_column_text(s, 1);
		sb_add(out, "%s%s%s:%d\n", dir, *dir ? "/" : "", name, sqlite3_column_int(s, 2));
	}
	assert_int_equal(r, SQLITE_DONE);
	sqlite3_finalize(s);
	free(js.p);
}

/* The same through jnl_entries_by_ids. */
static void jnl_places(struct jnl *j, const char *const *ids, size_t n, struct sbuf *out)
{
	struct jnl_place *v = NULL;
	size_t k = 0, i;
	struct err e;

	OK(jnl_entries_by_ids(j, ids, n, &v, &k, &e));
	for (i = 0; i < k; i++)
		sb_add(out, "%s:%d\n", v[i].path, v[i].type);
	jnl_places_free(v, k);
}

/* The plan of jnl_entries_by_ids must search entries through entries_id,
 * never scan the table. */
static void assert_plan_indexed(struct jnl *j)
{
	char *plan = NULL;
	struct err e;

	OK(jnl_entries_by_ids_plan(j, &plan, &e));
	assert_non_null(plan);
	if (!strstr(plan, "SEARCH entries USING INDEX entries_id") ||
	    strstr(plan, "SCAN entries"))
		fail_msg("the lookup by id is not indexed; plan:\n%s", plan);
	free(plan);
}

/* Deterministic pseudo-random numbers for the data sets. */
static unsigned rnd(unsigned *x)
{
	*x = *x * 1103515245u + 12345u;
	return (*x >> 16) & 0x7fff;
}

#define NPOOL 300      /* ids in use */
#define NDIRS 24

static const char *const dir_names[NDIRS] = {
	"", "a", "a/b", "a/b/c", "a b", "été", "x", "x/y", "x/y/z", "dup",
	"dup/one", "dup/two", "Z", "z", "0", "0/1", "d.d", "d-d", "long/er/path/here",
	"q", "q/r", "s", "s/t", "w",
};

/* The id of pool slot i: Drive-like, some sharing prefixes with others
 * ("1Id1" / "1Id10"), one holding ':' and one a quote. */
static void pool_id(unsigned i, char *buf, size_t cap)
{
	if (i == 7)
		snprintf(buf, cap, "co:lon%u", i);
	else if (i == 8)
		snprintf(buf, cap, "q\"uo\\te%u", i);
	else
		snprintf(buf, cap, "1Id%u", i);
}

/* Fill j with listings over dir_names: most entries carry a pool id (so
 * most ids show in two or three places), some a GCS version (no id), some
 * no remote, one an empty id ("g1.0:"). seed varies the data. */
static void fill(struct jnl *j, unsigned seed)
{
	struct jnl_entry v[100];
	char names[100][32], remotes[100][64], id[32];
	unsigned x = seed, r;
	size_t d, i, n;
	struct err e;

	for (d = 0; d < NDIRS; d++) {
		n = 20 + rnd(&x) % 60;
		for (i = 0; i < n; i++) {
			memset(&v[i], 0, sizeof(v[i]));
			snprintf(names[i], sizeof(names[i]), "%s%03zu", i % 5 ? "f" : "sub ", i);
			v[i].name = names[i];
			v[i].type = i % 5 ? JNL_FILE : JNL_DIR;
			v[i].size = i;
			r = rnd(&x) % 20;
			pool_id(rnd(&x) % NPOOL, id, sizeof(id));
			if (r == 0)
				v[i].remote = NULL;
			else if (r == 1)
				v[i].remote = "g5.1";
			else if (r == 2 && i == 3)
				v[i].remote = "g1.0:";
			else {
				snprintf(remotes[i], sizeof(remotes[i]), "g%u.0:%s", r, id);
				v[i].remote = remotes[i];
			}
		}
		OK(jnl_dir_put(j, dir_names[d], v, n, 1000, &e));
	}
}

/* The id lists asked: every pool id alone, ids never stored, a prefix of
 * stored ids, an entry's whole version text, and several mixed lists
 * (duplicates inside a list too). *nq lists into q[]/qn[]; the strings
 * live in store. */
#define NQ (NPOOL + 16)
struct queries {
	char store[NPOOL + 8][32];
	const char *q[NQ][NPOOL + 8];
	size_t qn[NQ];
	size_t nq;
};

static void make_queries(struct queries *qs)
{
	unsigned x = 99;
	size_t i, k, n;

	memset(qs, 0, sizeof(*qs));
	for (i = 0; i < NPOOL; i++)
		pool_id((unsigned)i, qs->store[i], sizeof(qs->store[i]));
	snprintf(qs->store[NPOOL], 32, "missing");
	snprintf(qs->store[NPOOL + 1], 32, "1Id");
	snprintf(qs->store[NPOOL + 2], 32, "g5.1");
	snprintf(qs->store[NPOOL + 3], 32, "lon7");
	snprintf(qs->store[NPOOL + 4], 32, "0:1Id3");
	for (i = 0; i < NPOOL + 5; i++) {
		qs->q[qs->nq][0] = qs->store[i];
		qs->qn[qs->nq++] = 1;
	}
	for (k = 0; k < 10; k++) {
		n = k == 9 ? NPOOL + 5 : 2 + rnd(&x) % 40;
		for (i = 0; i < n; i++)
			qs->q[qs->nq][i] = k == 9 ? qs->store[i] : qs->store[rnd(&x) % (NPOOL + 5)];
		qs->qn[qs->nq++] = n;
	}
	assert_true(qs->nq <= NQ);
}

/* Close f->j, compute every query's places by the full scan on the file,
 * reopen, and check jnl_entries_by_ids gives exactly those. Returns the
 * number of single ids found in two places or more. */
static size_t compare_with_scan(struct ut_jnl_fx *f, const char *path, const struct queries *qs)
{
	struct sbuf *want = calloc(qs->nq, sizeof(*want));
	struct sbuf got;
	sqlite3 *db = NULL;
	size_t i, shared = 0, lines;
	struct err e;
	const char *c;

	assert_non_null(want);
	jnl_close(f->j);
	f->j = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	for (i = 0; i < qs->nq; i++) {
		sb_add(&want[i], "%s", "");
		scan_places(db, qs->q[i], qs->qn[i], &want[i]);
	}
	sqlite3_close(db);
	OK(jnl_open(path, NULL, &f->j, NULL, &e));
	assert_plan_indexed(f->j);
	for (i = 0; i < qs->nq; i++) {
		memset(&got, 0, sizeof(got));
		sb_add(&got, "%s", "");
		jnl_places(f->j, qs->q[i], qs->qn[i], &got);
		if (strcmp(got.p, want[i].p))
			fail_msg("query %zu (%s, %zu ids): indexed\n%s\nscan\n%s", i, qs->q[i][0],
				 qs->qn[i], got.p, want[i].p);
		for (lines = 0, c = got.p; *c; c++)
			lines += *c == '\n';
		if (qs->qn[i] == 1 && lines >= 2)
			shared++;
		free(got.p);
		free(want[i].p);
	}
	free(want);
	return shared;
}

/* The lookup's plan uses the index: on an empty journal and on a full one. */
static void test_plan_indexed(void **state)
{
	struct ut_jnl_fx *f = *state;

	assert_plan_indexed(f->j);
	fill(f->j, 1);
	assert_plan_indexed(f->j);
}

/* Results identical to the full scan the index replaced, for every id
 * alone (most in two or three places: Drive shows an item with several
 * parents, or a duplicate, at each), ids never stored, prefixes, an id
 * holding ':' or a quote, and lists of many; again after listings were
 * replaced, entries deleted and a subtree forgotten. */
static void test_same_as_scan(void **state)
{
	struct ut_jnl_fx *f = *state;
	struct queries *qs = malloc(sizeof(*qs));
	struct jnl_entry one;
	struct err e;

	assert_non_null(qs);
	make_queries(qs);
	fill(f->j, 1);
	assert_true(compare_with_scan(f, f->path, qs) > 20);

	fill(f->j, 2);                           /* every listing replaced */
	OK(jnl_entry_del(f->j, "a", "f001", &e));
	OK(jnl_entry_del(f->j, "", "f002", &e));
	OK(jnl_dir_forget(f->j, "x", &e));
	memset(&one, 0, sizeof(one));
	one.name = "added";
	one.type = JNL_FILE;
	one.remote = "g9.0:1Id5";
	OK(jnl_entry_put(f->j, "new/dir", &one, &e));
	one.name = "f004";
	one.remote = "g9.0:1Id6";               /* an entry's id changed in place */
	OK(jnl_entry_put(f->j, "a b", &one, &e));
	assert_true(compare_with_scan(f, f->path, qs) > 20);
	OK(jnl_check(f->j, &e));
	free(qs);
}

/* A version 2 journal (no index; as the previous durafs left it, with
 * stored listings and an op) is upgraded on open: version 3, the index
 * built over the stored rows, lookups equal to the scan, the op kept; a
 * reopen changes nothing more. */
static void test_upgrade_v2(void **state)
{
	struct ut_jnl_fx *f = *state;
	struct queries *qs = malloc(sizeof(*qs));
	struct jnl_op *ops = NULL;
	struct sbuf ins = { 0 };
	char path[256], got[512], want[64];
	unsigned x = 5, r;
	size_t d, i, nops = 0;
	struct err e;
	char id[32];

	assert_non_null(qs);
	make_queries(qs);
	snprintf(path, sizeof(path), "%s/v2.db", f->dir);
	/* The v2 file, filled with SQL as a version 2 durafs stored it. */
	sb_add(&ins, "%sBEGIN;", schema_v2_sql);
	for (d = 0; d < NDIRS; d++) {
		sb_add(&ins, "INSERT INTO dirs VALUES('%s',1,1000);", dir_names[d]);
		for (i = 0; i < 40; i++) {
			r = rnd(&x) % 10;
			pool_id(rnd(&x) % NPOOL, id, sizeof(id));
			if (strchr(id, '"'))
				snprintf(id, sizeof(id), "1Id0");
			if (r == 0)
				sb_add(&ins, "INSERT INTO entries VALUES('%s','n%zu',1,1,0,NULL,0);",
				       dir_names[d], i);
			else if (r == 1)
				sb_add(&ins, "INSERT INTO entries VALUES('%s','n%zu',1,1,0,'g3.1',0);",
				       dir_names[d], i);
			else
				sb_add(&ins, "INSERT INTO entries VALUES('%s','n%zu',%d,1,0,"
				       "'g%u.0:%s',0);", dir_names[d], i, i % 4 ? 1 : 2, r, id);
		}
	}
	sb_add(&ins, "INSERT INTO files(path,type,cache_name,version,dirty,size) "
	       "VALUES('kept.txt',1,'c1',1,1,5);"
	       "INSERT INTO ops(kind,fid,path,version,size,created_ms) "
	       "VALUES(1,1,'kept.txt',1,5,1000);"
	       "INSERT INTO meta VALUES('changes_token','42');COMMIT;");
	sql_on_file(path, ins.p);
	free(ins.p);
	sql_text(path, "SELECT count(*) FROM sqlite_schema WHERE tbl_name='entries' AND "
		 "type='index' AND sql IS NOT NULL", got, sizeof(got));
	assert_string_equal(got, "0");

	/* Open: upgraded in place. */
	jnl_close(f->j);
	f->j = NULL;
	OK(jnl_open(path, NULL, &f->j, NULL, &e));
	assert_plan_indexed(f->j);
	OK(jnl_check(f->j, &e));
	OK(jnl_list_ops(f->j, JNL_MASK_ALL, 0, &ops, &nops, &e));
	assert_int_equal(nops, 1);
	assert_string_equal(ops[0].path, "kept.txt");
	jnl_ops_free(ops, nops);
	jnl_close(f->j);
	f->j = NULL;
	sql_text(path, "PRAGMA user_version", got, sizeof(got));
	assert_string_equal(got, "3");
	sql_text(path, "SELECT sql FROM sqlite_schema WHERE name='entries_id'", got,
		 sizeof(got));
	assert_non_null(strstr(got, "substr(remote,instr(remote,':')+1)"));
	/* the rows stored before the upgrade are in the index */
	sql_text(path, "SELECT count(*) FROM entries INDEXED BY entries_id WHERE "
		 "instr(remote,':')>0 AND substr(remote,instr(remote,':')+1)>''", got,
		 sizeof(got));
	sql_text(path, "SELECT count(*) FROM entries NOT INDEXED WHERE "
		 "instr(remote,':')>0 AND substr(remote,instr(remote,':')+1)>''", want,
		 sizeof(want));
	assert_string_equal(got, want);
	assert_true(strtol(got, NULL, 10) > 500);
	OK(jnl_open(path, NULL, &f->j, NULL, &e));
	assert_true(compare_with_scan(f, path, qs) > 10);
	jnl_close(f->j);
	f->j = NULL;
	sql_text(path, "PRAGMA user_version", got, sizeof(got));
	assert_string_equal(got, "3");
	/* A journal of a newer schema than this durafs knows stays refused
	 * (what a version 2 durafs does with this file). */
	sql_on_file(path, "PRAGMA user_version=4");
	assert_int_equal(jnl_open(path, NULL, &f->j, NULL, &e), -1);
	assert_non_null(strstr(e.msg, "newer durafs"));
	assert_null(f->j);
	sql_text(path, "SELECT count(*) FROM sqlite_schema WHERE name='entries_id'", got,
		 sizeof(got));
	assert_string_equal(got, "1");
	free(qs);
}

/* jnl_dir_put writes only what differs from the stored listing: after
 * every put of a random listing (names added, dropped, kept; each field
 * changed or not; remote set, changed, cleared; input in any order) the
 * stored listing is exactly the input, and the id lookup follows. */
static void test_dir_put_diff(void **state)
{
	struct ut_jnl_fx *f = *state;
	enum { POOL = 40, ROUNDS = 60 };
	struct jnl_entry in[POOL], *out = NULL, t;
	char names[POOL][16], remotes[POOL][32];
	const char *id = "1Id-diff";
	struct jnl_place *pl = NULL;
	unsigned x = 7;
	size_t n, i, k, m, npl, want_pl;
	int64_t fetched;
	int complete, round;
	struct err e;

	for (round = 0; round < ROUNDS; round++) {
		n = 0;
		want_pl = 0;
		for (i = 0; i < POOL; i++) {
			if (rnd(&x) % 3 == 0)
				continue;
			memset(&in[n], 0, sizeof(in[n]));
			snprintf(names[n], sizeof(names[n]), "n%02zu", i);
			in[n].name = names[n];
			in[n].type = rnd(&x) % 2 ? JNL_FILE : JNL_DIR;
			in[n].size = rnd(&x) % 3;
			in[n].mtime_ns = rnd(&x) % 3;
			in[n].flags = rnd(&x) % 2;
			switch (rnd(&x) % 4) {
			case 0:
				in[n].remote = NULL;
				break;
			case 1:
				in[n].remote = "g2.0";
				break;
			case 2:
				snprintf(remotes[n], sizeof(remotes[n]), "g%u.0:%s",
					 rnd(&x) % 2, id);
				in[n].remote = remotes[n];
				want_pl++;
				break;
			default:
				snprintf(remotes[n], sizeof(remotes[n]), "g1.0:%s%zu", id, i);
				in[n].remote = remotes[n];
			}
			n++;
		}
		for (i = n; i > 1; i--) {               /* any input order */
			k = rnd(&x) % i;
			t = in[i - 1];
			in[i - 1] = in[k];
			in[k] = t;
		}
		OK(jnl_dir_put(f->j, "d", in, n, round, &e));
		OK(jnl_dir_get(f->j, "d", &out, &m, &fetched, &complete, &e));
		assert_int_equal(m, n);
		assert_int_equal(fetched, round);
		for (i = 0; i < m; i++) {
			for (k = 0; k < n && strcmp(in[k].name, out[i].name); k++)
				;
			assert_true(k < n);
			if (i)
				assert_true(strcmp(out[i - 1].name, out[i].name) < 0);
			assert_int_equal(out[i].type, in[k].type);
			assert_int_equal(out[i].size, in[k].size);
			assert_int_equal(out[i].mtime_ns, in[k].mtime_ns);
			assert_int_equal(out[i].flags, in[k].flags);
			if (in[k].remote)
				assert_string_equal(out[i].remote, in[k].remote);
			else
				assert_null(out[i].remote);
		}
		jnl_entries_free(out, m);
		OK(jnl_entries_by_id(f->j, id, &pl, &npl, &e));
		assert_int_equal(npl, want_pl);
		jnl_places_free(pl, npl);
	}
	OK(jnl_dir_put(f->j, "d", in, 0, 1, &e));       /* emptied */
	OK(jnl_dir_get(f->j, "d", &out, &m, &fetched, &complete, &e));
	assert_int_equal(m, 0);
	jnl_entries_free(out, m);
	OK(jnl_check(f->j, &e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_by_id, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_plan_indexed, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_same_as_scan, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_v2, ut_jnl_setup, ut_jnl_teardown),
		cmocka_unit_test_setup_teardown(test_dir_put_diff, ut_jnl_setup, ut_jnl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
