/* Unit tests for the emulator's pure pieces: the fault-rule parser and
 * matcher (emu_core_fault.c), form/query decoding and reply helpers
 * (emu_core.c), and JWT parsing, claim checks and RS256 verification
 * (emu_oauth.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "durafs/enc.h"
#include "emu.h"
#include "emu_core_fault.h"
#include "emu_oauth.h"

/* --- glob ----------------------------------------------------------------- */

static void test_glob(void **state)
{
	(void)state;
	assert_true(emu_glob_match("", ""));
	assert_true(emu_glob_match("*", ""));
	assert_true(emu_glob_match("*", "/a/b"));
	assert_true(emu_glob_match("/upload/*", "/upload/storage/v1/b/x/o"));
	assert_false(emu_glob_match("/upload/*", "/storage/v1/upload/"));
	assert_true(emu_glob_match("/storage/*/o/*%2F*", "/storage/v1/b/bk/o/a%2Fb"));
	assert_false(emu_glob_match("/storage/*/o/*%2F*", "/storage/v1/b/bk/o/a/b"));
	assert_true(emu_glob_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
	assert_false(emu_glob_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	assert_true(emu_glob_match("/token", "/token"));
	assert_false(emu_glob_match("/token", "/token2"));
	assert_false(emu_glob_match("/token", "/toke"));
	assert_true(emu_glob_match("**x", "x"));
}

/* --- fault rules --------------------------------------------------------- */

static json_t *J(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	assert_non_null(j);
	return j;
}

static void test_fault_parse_ok(void **state)
{
	struct emu_fault_rule *r = NULL;
	size_t n = 0;
	char why[256];
	json_t *a = J("[{\"kind\":\"status\",\"method\":\"PUT\",\"path\":\"/upload/*\","
		      "\"count\":2,\"status\":503,\"reason\":\"backendError\",\"retry_after\":1},"
		      "{\"kind\":\"cut\",\"after_bytes\":1000,\"fraction\":0.5},"
		      "{\"kind\":\"cut_response\",\"after_bytes\":0},"
		      "{\"kind\":\"latency\",\"ms\":20,\"query\":\"uploadType=resumable\"},"
		      "{\"kind\":\"short308\",\"persist_less\":262144},"
		      "{\"kind\":\"page_cap\",\"max\":100},"
		      "{\"kind\":\"expire_session\"}]");

	(void)state;
	assert_int_equal(emu_fault_parse_rules(a, &r, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 7);
	assert_int_equal(r[0].kind, EMU_FAULT_STATUS);
	assert_string_equal(r[0].method, "PUT");
	assert_string_equal(r[0].path, "/upload/*");
	assert_int_equal(r[0].count, 2);
	assert_int_equal(r[0].status, 503);
	assert_string_equal(r[0].reason, "backendError");
	assert_int_equal(r[0].retry_after, 1);
	assert_int_equal(r[1].kind, EMU_FAULT_CUT);
	assert_int_equal(r[1].after_bytes, 1000);
	assert_true(r[1].fraction == 0.5);
	assert_int_equal(r[1].count, EMU_FAULT_UNLIMITED);
	assert_int_equal(r[2].kind, EMU_FAULT_CUT_RESPONSE);
	assert_int_equal(r[3].ms, 20);
	assert_string_equal(r[3].query, "uploadType=resumable");
	assert_int_equal(r[4].persist_less, 262144);
	assert_int_equal(r[5].max, 100);
	assert_int_equal(r[6].kind, EMU_FAULT_EXPIRE_SESSION);
	assert_string_equal(emu_fault_kind_name(r[6].kind), "expire_session");
	assert_string_equal(emu_fault_kind_name(99), "?");
	free(r);
	json_decref(a);
}

static void test_fault_parse_errors(void **state)
{
	static const char *const bad[] = {
		"{}",
		"[1]",
		"[{}]",
		"[{\"kind\":7}]",
		"[{\"kind\":\"explode\"}]",
		"[{\"kind\":\"status\"}]",
		"[{\"kind\":\"status\",\"status\":700}]",
		"[{\"kind\":\"status\",\"status\":500,\"count\":0}]",
		"[{\"kind\":\"status\",\"status\":500,\"fraction\":0}]",
		"[{\"kind\":\"status\",\"status\":500,\"fraction\":1.5}]",
		"[{\"kind\":\"status\",\"status\":500,\"after_bytes\":3}]",
		"[{\"kind\":\"cut\"}]",
		"[{\"kind\":\"cut\",\"after_bytes\":-1}]",
		"[{\"kind\":\"latency\"}]",
		"[{\"kind\":\"latency\",\"ms\":1,\"method\":\"AVERYLONGMETHODNAME\"}]",
		"[{\"kind\":\"short308\"}]",
		"[{\"kind\":\"page_cap\",\"max\":0}]",
		"[{\"kind\":\"status\",\"status\":500,\"reason\":null}]",
	};
	struct emu_fault_rule *r = NULL;
	size_t i, n;
	char why[256];

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *a = J(bad[i]);

		why[0] = '\0';
		assert_int_equal(emu_fault_parse_rules(a, &r, &n, why, sizeof(why)), -1);
		assert_null(r);
		assert_true(strlen(why) > 5);
		json_decref(a);
	}
}

static void test_fault_take_count_and_match(void **state)
{
	struct emu_faults f;
	struct emu_fault_rule out;
	char why[256];
	json_t *b = J("{\"rules\":[{\"kind\":\"status\",\"method\":\"PUT\","
		      "\"path\":\"/upload/*\",\"count\":2,\"status\":503},"
		      "{\"kind\":\"status\",\"path\":\"/upload/*\",\"query\":\"upload_id=\","
		      "\"status\":410}]}");

	(void)state;
	assert_int_equal(emu_faults_init(&f, 1), 0);
	assert_int_equal(emu_faults_apply(&f, b, why, sizeof(why)), 0);
	/* wrong method / path: no match */
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_STATUS, "GET", "/upload/x", "",
					 UINT64_MAX, &out), 0);
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_STATUS, "PUT", "/storage/x", "",
					 UINT64_MAX, &out), 0);
	/* another kind: no match */
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_LATENCY, "PUT", "/upload/x", "",
					 UINT64_MAX, &out), 0);
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_STATUS, "PUT", "/upload/x", "",
					 UINT64_MAX, &out), 1);
	assert_int_equal(out.status, 503);
	assert_int_equal(out.count, 1);
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_STATUS, "PUT", "/upload/x", NULL,
					 UINT64_MAX, &out), 1);
	/* used up; the query rule needs its substring */
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_STATUS, "PUT", "/upload/x", "",
					 UINT64_MAX, &out), 0);
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_STATUS, "PUT", "/upload/x",
					 "uploadType=resumable&upload_id=7", UINT64_MAX, &out), 1);
	assert_int_equal(out.status, 410);
	json_decref(b);
	/* "add" appends, "rules" replaces */
	b = J("{\"add\":[{\"kind\":\"latency\",\"ms\":5}]}");
	assert_int_equal(emu_faults_apply(&f, b, why, sizeof(why)), 0);
	json_decref(b);
	assert_int_equal(f.n, 3);
	b = J("{\"rules\":[]}");
	assert_int_equal(emu_faults_apply(&f, b, why, sizeof(why)), 0);
	json_decref(b);
	assert_int_equal(f.n, 0);
	/* an invalid body changes nothing */
	b = J("{\"add\":[{\"kind\":\"latency\",\"ms\":5}],\"rules\":[{\"kind\":\"x\"}]}");
	assert_int_equal(emu_faults_apply(&f, b, why, sizeof(why)), -1);
	json_decref(b);
	assert_int_equal(f.n, 0);
	emu_faults_release(&f);
}

static void test_fault_cut_avail(void **state)
{
	struct emu_faults f;
	struct emu_fault_rule out;
	char why[256];
	json_t *b = J("{\"rules\":[{\"kind\":\"cut\",\"after_bytes\":100}]}");

	(void)state;
	assert_int_equal(emu_faults_init(&f, 1), 0);
	assert_int_equal(emu_faults_apply(&f, b, why, sizeof(why)), 0);
	/* a body of 100 bytes or fewer cannot be cut after 100 */
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_CUT, "PUT", "/x", "", 100, &out), 0);
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_CUT, "PUT", "/x", "", 101, &out), 1);
	assert_int_equal(out.after_bytes, 100);
	assert_int_equal(emu_faults_take(&f, EMU_FAULT_CUT, "PUT", "/x", "", UINT64_MAX,
					 &out), 1);
	json_decref(b);
	emu_faults_release(&f);
}

static int draw_sequence(struct emu_faults *f, int *seq, int n)
{
	int i, hits = 0;

	for (i = 0; i < n; i++) {
		seq[i] = emu_faults_take(f, EMU_FAULT_STATUS, "GET", "/a", "", UINT64_MAX, NULL);
		hits += seq[i];
	}
	return hits;
}

static void test_fault_fraction_seeded(void **state)
{
	struct emu_faults f;
	char why[256];
	int a[2000], b[2000], hits;
	json_t *body = J("{\"seed\":99,\"rules\":[{\"kind\":\"status\",\"status\":500,"
			 "\"fraction\":0.25}]}");
	json_t *list;

	(void)state;
	assert_int_equal(emu_faults_init(&f, 5), 0);
	assert_int_equal(emu_faults_apply(&f, body, why, sizeof(why)), 0);
	hits = draw_sequence(&f, a, 2000);
	assert_in_range(hits, 400, 600);
	assert_int_equal(emu_faults_apply(&f, body, why, sizeof(why)), 0);
	draw_sequence(&f, b, 2000);
	assert_memory_equal(a, b, sizeof(a));
	list = emu_faults_list(&f);
	assert_int_equal(json_integer_value(json_object_get(list, "seed")), 99);
	assert_true(json_is_null(json_object_get(json_array_get(json_object_get(list,
		"rules"), 0), "remaining")));
	json_decref(list);
	emu_faults_clear(&f);
	assert_int_equal(f.n, 0);
	assert_int_equal(f.fired[EMU_FAULT_STATUS], 0);
	json_decref(body);
	emu_faults_release(&f);
}

/* --- form / percent decoding --------------------------------------------- */

static void test_form_parse(void **state)
{
	struct emu_kv *kv = NULL;
	size_t n = 0;
	const char *s = "a=1&b=x+y%21&&flag&name=dir%2Ffile.txt&a=2&empty=";

	(void)state;
	assert_int_equal(emu_form_parse(s, strlen(s), &kv, &n), 0);
	assert_int_equal(n, 6);
	assert_string_equal(emu_kv_get(kv, n, "a"), "1");
	assert_string_equal(emu_kv_get(kv, n, "b"), "x y!");
	assert_string_equal(emu_kv_get(kv, n, "flag"), "");
	assert_string_equal(emu_kv_get(kv, n, "name"), "dir/file.txt");
	assert_string_equal(emu_kv_get(kv, n, "empty"), "");
	assert_null(emu_kv_get(kv, n, "missing"));
	emu_kv_free(kv, n);

	assert_int_equal(emu_form_parse("", 0, &kv, &n), 0);
	assert_int_equal(n, 0);
	emu_kv_free(kv, n);
	assert_int_equal(emu_form_parse("a=%zz", 5, &kv, &n), -1);
	assert_null(kv);
	assert_int_equal(emu_form_parse("a=%00", 5, &kv, &n), -1);
	assert_int_equal(emu_form_parse("a=%4", 4, &kv, &n), -1);
	/* n bounds the input: the part after it is not read */
	assert_int_equal(emu_form_parse("k=v&zz=%", 3, &kv, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(emu_kv_get(kv, n, "k"), "v");
	emu_kv_free(kv, n);
}

static void test_pct_decode(void **state)
{
	char *s;

	(void)state;
	s = emu_pct_decode("a%2Fb+c%20d", 11);
	assert_string_equal(s, "a/b+c d");
	free(s);
	assert_null(emu_pct_decode("bad%2", 5));
	assert_null(emu_pct_decode("nul%00", 6));
}

/* --- reply helpers and requests ------------------------------------------ */

static void resp_free(struct emu_resp *r)
{
	int i;

	free(r->body);
	for (i = 0; i < r->nheaders; i++) {
		free(r->hname[i]);
		free(r->hvalue[i]);
	}
}

static void test_resp_error_shape(void **state)
{
	struct emu_resp r;
	json_t *j, *e;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.fd = -1;
	emu_resp_error(&r, 412, "conditionNotMet", "generation %d", 7);
	assert_int_equal(r.status, 412);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	assert_non_null(j);
	e = json_object_get(j, "error");
	assert_int_equal(json_integer_value(json_object_get(e, "code")), 412);
	assert_string_equal(json_string_value(json_object_get(e, "message")), "generation 7");
	e = json_array_get(json_object_get(e, "errors"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "reason")), "conditionNotMet");
	assert_string_equal(json_string_value(json_object_get(e, "domain")), "global");
	json_decref(j);
	/* replacing the body frees the old one (ASan checks) */
	emu_resp_text(&r, 200, "text/plain", "ok", 2);
	assert_int_equal(r.body_len, 2);
	assert_string_equal(r.body, "ok");
	emu_resp_header(&r, "X-A", "%d", 1);
	emu_resp_header(&r, "x-a", "%s", "two");
	emu_resp_header(&r, "X-B", "b");
	assert_int_equal(r.nheaders, 2);
	assert_string_equal(r.hvalue[0], "two");
	resp_free(&r);
	/* resumable "resume incomplete": 308 + Range, or the Go client's 200
	 * with an override header; no Range when nothing is persisted */
	memset(&r, 0, sizeof(r));
	r.fd = -1;
	emu_resp_incomplete(&r, NULL, 512);
	assert_int_equal(r.status, 308);
	assert_int_equal(r.nheaders, 1);
	assert_string_equal(r.hname[0], "Range");
	assert_string_equal(r.hvalue[0], "bytes=0-511");
	resp_free(&r);
	memset(&r, 0, sizeof(r));
	r.fd = -1;
	emu_resp_incomplete(&r, "Yes", 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.nheaders, 1);
	assert_string_equal(r.hname[0], "X-HTTP-Status-Code-Override");
	assert_string_equal(r.hvalue[0], "308");
	resp_free(&r);
}

static void test_take_body_without_conn(void **state)
{
	struct emu_req req;
	char *b;

	(void)state;
	memset(&req, 0, sizeof(req));
	req.body = "hello";
	req.body_len = 5;
	b = emu_req_take_body(&req);
	assert_string_equal(b, "hello");
	free(b);
	assert_null(emu_req_query(&req, "x"));
	assert_null(emu_req_header(&req, "Host"));
}

/* --- JWT ------------------------------------------------------------------ */

static EVP_PKEY *test_key(void)
{
	static EVP_PKEY *k;

	if (!k)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_non_null(k);
	return k;
}

static char *b64url_str(const char *s)
{
	char *out = malloc(enc_b64_len(strlen(s)) + 1);

	assert_non_null(out);
	assert_true(enc_b64(s, strlen(s), out, enc_b64_len(strlen(s)) + 1, 1) > 0);
	return out;
}

/* Build "h.c.sig" signed with key (RS256). */
static char *make_jwt(EVP_PKEY *key, const char *header, const char *claims)
{
	char *h = b64url_str(header), *c = b64url_str(claims), *signing = NULL, *out;
	unsigned char sig[512];
	size_t siglen = sizeof(sig);
	char sig64[1024];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	assert_true(asprintf(&signing, "%s.%s", h, c) > 0);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)signing,
					strlen(signing)), 1);
	EVP_MD_CTX_free(ctx);
	assert_true(enc_b64(sig, siglen, sig64, sizeof(sig64), 1) > 0);
	assert_true(asprintf(&out, "%s.%s", signing, sig64) > 0);
	free(h);
	free(c);
	free(signing);
	return out;
}

static void test_jwt_parse_and_verify(void **state)
{
	struct emu_jwt j;
	char why[256], claims[512], *jwt;
	const char *auds[] = { "http://127.0.0.1:1/token", NULL };
	long long now = 1700000000;
	EVP_PKEY *other;

	(void)state;
	snprintf(claims, sizeof(claims), "{\"iss\":\"sa@p.iam\",\"scope\":\"s1 s2\","
		 "\"aud\":\"%s\",\"iat\":%lld,\"exp\":%lld}", auds[0], now, now + 3600);
	jwt = make_jwt(test_key(), "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}", claims);
	assert_int_equal(emu_jwt_parse(jwt, strlen(jwt), &j, why, sizeof(why)), 0);
	assert_string_equal(j.alg, "RS256");
	assert_string_equal(j.kid, "k1");
	assert_string_equal(j.iss, "sa@p.iam");
	assert_string_equal(j.scope, "s1 s2");
	assert_null(j.sub);
	assert_int_equal(emu_jwt_verify_rs256(&j, test_key()), 1);
	assert_int_equal(emu_jwt_check_claims(&j, now + 10, auds, why, sizeof(why)), 0);
	/* expired, future, wrong audience */
	assert_int_equal(emu_jwt_check_claims(&j, now + 3600 + EMU_JWT_SKEW + 1, auds, why,
					      sizeof(why)), -1);
	assert_non_null(strstr(why, "expired"));
	assert_int_equal(emu_jwt_check_claims(&j, now - EMU_JWT_SKEW - 1, auds, why,
					      sizeof(why)), -1);
	assert_non_null(strstr(why, "future"));
	{
		const char *other_aud[] = { "https://oauth2.googleapis.com/token", NULL };

		assert_int_equal(emu_jwt_check_claims(&j, now, other_aud, why, sizeof(why)), -1);
		assert_non_null(strstr(why, "audience"));
	}
	other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_int_equal(emu_jwt_verify_rs256(&j, other), 0);
	EVP_PKEY_free(other);
	emu_jwt_release(&j);
	/* a flipped signature byte fails */
	jwt[strlen(jwt) - 3] = jwt[strlen(jwt) - 3] == 'A' ? 'B' : 'A';
	assert_int_equal(emu_jwt_parse(jwt, strlen(jwt), &j, why, sizeof(why)), 0);
	assert_int_equal(emu_jwt_verify_rs256(&j, test_key()), 0);
	emu_jwt_release(&j);
	free(jwt);
}

static void test_jwt_claim_errors(void **state)
{
	static const struct { const char *claims; const char *expect; } cases[] = {
		{ "{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"A\",\"iat\":0,\"exp\":7200}", "short-lived" },
		{ "{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"A\",\"iat\":10,\"exp\":10}", "short-lived" },
		{ "{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"A\",\"iat\":\"0\",\"exp\":60}", "numbers" },
		{ "{\"iss\":\"a\",\"aud\":\"A\",\"iat\":0,\"exp\":60}", "scope" },
		{ "{\"iss\":\"a\",\"scope\":\"\",\"aud\":\"A\",\"iat\":0,\"exp\":60}", "scope" },
		{ "{\"iss\":\"a\",\"scope\":\"s\",\"iat\":0,\"exp\":60}", "aud" },
	};
	const char *auds[] = { "A", NULL };
	struct emu_jwt j;
	char why[256], *jwt;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		jwt = make_jwt(test_key(), "{\"alg\":\"RS256\"}", cases[i].claims);
		assert_int_equal(emu_jwt_parse(jwt, strlen(jwt), &j, why, sizeof(why)), 0);
		assert_int_equal(emu_jwt_check_claims(&j, 30, auds, why, sizeof(why)), -1);
		assert_non_null(strstr(why, cases[i].expect));
		emu_jwt_release(&j);
		free(jwt);
	}
	jwt = make_jwt(test_key(), "{\"alg\":\"HS256\"}",
		       "{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"A\",\"iat\":0,\"exp\":60}");
	assert_int_equal(emu_jwt_parse(jwt, strlen(jwt), &j, why, sizeof(why)), 0);
	assert_int_equal(emu_jwt_check_claims(&j, 30, auds, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "RS256"));
	emu_jwt_release(&j);
	free(jwt);
}

static void test_jwt_parse_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"abc",
		"a.b",
		"a.b.c.d",
		"!!.e30.AA",
		"e30=.e30.AA",                           /* padding is not JWT */
		"bm90IGpzb24.e30.AA",                    /* "not json" */
		"W10.e30.AA",                            /* header [] */
		"e30.e30.AA",                            /* no alg */
		"eyJhbGciOjF9.e30.AA",                   /* alg 1 */
		"eyJhbGciOiJSUzI1NiJ9.e30.AA",           /* no iss */
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9.AA",  /* iss 1 */
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhIn0.A", /* bad signature length */
	};
	struct emu_jwt j;
	char why[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(emu_jwt_parse(bad[i], strlen(bad[i]), &j, why, sizeof(why)), -1);
		assert_non_null(strstr(why, "JWT"));
		assert_null(j.header);
	}
}

static void test_pem_public_key(void **state)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data = NULL;
	long n;
	EVP_PKEY *k;

	(void)state;
	assert_int_equal(PEM_write_bio_PUBKEY(b, test_key()), 1);
	n = BIO_get_mem_data(b, &data);
	k = emu_pem_public_key(data, (size_t)n);
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_eq(k, test_key()), 1);
	EVP_PKEY_free(k);
	BIO_free(b);
	assert_null(emu_pem_public_key("junk", 4));
	assert_null(emu_pem_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
				       58));
}

static int teardown_all(void **state)
{
	(void)state;
	EVP_PKEY_free(test_key());
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_fault_parse_ok),
		cmocka_unit_test(test_fault_parse_errors),
		cmocka_unit_test(test_fault_take_count_and_match),
		cmocka_unit_test(test_fault_cut_avail),
		cmocka_unit_test(test_fault_fraction_seeded),
		cmocka_unit_test(test_form_parse),
		cmocka_unit_test(test_pct_decode),
		cmocka_unit_test(test_resp_error_shape),
		cmocka_unit_test(test_take_body_without_conn),
		cmocka_unit_test(test_jwt_parse_and_verify),
		cmocka_unit_test(test_jwt_claim_errors),
		cmocka_unit_test(test_jwt_parse_errors),
		cmocka_unit_test(test_pem_public_key),
	};

	return cmocka_run_group_tests(tests, NULL, teardown_all);
}
