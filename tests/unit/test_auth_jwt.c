/* Unit tests for auth/jwt.c and the service-account source's assertion:
 * header and claims for a fixed key and clock, checked against a JWT made
 * independently with the openssl command line and verified with the public
 * key; key loading errors that never quote the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/pem.h>

#include "durafs/auth_jwt.h"
#include "durafs/auth_sa.h"
#include "durafs/enc.h"
#include "unit_util.h"

/* The public half of ut_rsa_key_pem (unit_util.c). */
static const char pub_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCgAtFDc+1PlPIb2Aqr47tdw4fh\n"
	"BPJZikptKQVlWsjwlcd0SDdg7IQLZf7kyYSSf/Ly6kNjI/VsulySysLtI3wGUKTg\n"
	"lu3yczID6aqpBQQWQFUJOWnmQnZj/sH/Yao4/EdBK2075VC85BV1A5XaBMc9Q+Np\n"
	"BZ4WrVWKL2dccrM9eQIDAQAB\n"
	"-----END PUBLIC KEY-----\n";

static const char ec_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3Lmrgk1BTD18IUhb\n"
	"ccz7Y+4SqX9xa/J0cc7SAQW3bJmhRANCAASFpyqBh2riRcRZd4eQlG5TgO2yI/fu\n"
	"f+NxzYszI7RyMk7OWUyKMLQiBWKO+e6DdGONcVk+TK4DHrG4oLUstTzU\n"
	"-----END PRIVATE KEY-----\n";


/* Made with: printf '%s' "$b64url_header.$b64url_claims" |
 * openssl dgst -sha256 -sign key.pem, base64url-encoded without padding. */
static const char expected_jwt[] =
	"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0."
	"eyJpc3MiOiJzYUBwLmlhbS5nc2VydmljZWFjY291bnQuY29tIiwic2NvcGUiOiJodHRwczovL3d3dy5n"
	"b29nbGVhcGlzLmNvbS9hdXRoL2RldnN0b3JhZ2UucmVhZF93cml0ZSIsImF1ZCI6Imh0dHBzOi8vb2F1"
	"dGgyLmdvb2dsZWFwaXMuY29tL3Rva2VuIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9."
	"jxKvjr8tebYaWueUVLDD5QJ5zLa8j-wOO8AKpEC13h_nhAUo3dIR4YdDPNUa85S0KF14O3hmHvNszYhc"
	"7GJpARN2Ug5Rx2Vkr6ulVnI-rG4cFkxf8OXRNS2yxHVHlgPZHb-ZPj35fAQ9cZsQzSZPTPH9Xd-ABxVT"
	"DMpgwQ5Vj60";

#define ISS "sa@p.iam.gserviceaccount.com"
#define SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define AUD "https://oauth2.googleapis.com/token"

/* Decode base64url part [p, p+n) into a malloc'd NUL-terminated buffer. */
static char *b64dec(const char *p, size_t n, size_t *outlen)
{
	char *buf = malloc(n + 4);

	assert_non_null(buf);
	assert_int_equal(enc_b64_decode(p, n, buf, n + 3, outlen), 0);
	buf[*outlen] = '\0';
	return buf;
}

/* Verify jwt's RS256 signature with the test public key. */
static int verify(const char *jwt)
{
	const char *d2 = strrchr(jwt, '.');
	BIO *bio = BIO_new_mem_buf(pub_pem, -1);
	EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char *sig;
	size_t siglen;
	int ok;

	assert_non_null(pub);
	sig = b64dec(d2 + 1, strlen(d2 + 1), &siglen);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
	ok = EVP_DigestVerify(md, (unsigned char *)sig, siglen, (const unsigned char *)jwt,
			      (size_t)(d2 - jwt)) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pub);
	BIO_free(bio);
	free(sig);
	return ok;
}

static void test_claims_exact(void **state)
{
	char *c;

	(void)state;
	c = auth_jwt_sa_claims(ISS, SCOPE, AUD, NULL, 1700000000, 3600);
	assert_non_null(c);
	assert_string_equal(c, "{\"iss\":\"" ISS "\",\"scope\":\"" SCOPE "\",\"aud\":\"" AUD
			    "\",\"iat\":1700000000,\"exp\":1700003600}");
	free(c);
	c = auth_jwt_sa_claims(ISS, SCOPE, AUD, "user@example.com", 5, 60);
	assert_non_null(c);
	assert_non_null(strstr(c, "\"iat\":5,\"exp\":65,\"sub\":\"user@example.com\"}"));
	free(c);
}

static void test_sign_fixed_vector(void **state)
{
	EVP_PKEY *key = NULL;
	struct err err;
	char *claims, *jwt = NULL, *part;
	const char *d1, *d2;
	size_t n;
	json_t *h;
	json_error_t jerr;

	(void)state;
	assert_int_equal(auth_jwt_load_key(ut_rsa_key_pem, "test key", &key, &err), 0);
	claims = auth_jwt_sa_claims(ISS, SCOPE, AUD, NULL, 1700000000, AUTH_JWT_LIFETIME);
	assert_int_equal(auth_jwt_sign(key, "k1", claims, &jwt, &err), 0);
	/* PKCS#1 v1.5 is deterministic: the same bytes as openssl dgst -sign. */
	assert_string_equal(jwt, expected_jwt);
	assert_true(verify(jwt));
	/* Header members as Google expects them. */
	d1 = strchr(jwt, '.');
	d2 = strrchr(jwt, '.');
	part = b64dec(jwt, (size_t)(d1 - jwt), &n);
	h = json_loads(part, 0, &jerr);
	assert_non_null(h);
	assert_string_equal(json_string_value(json_object_get(h, "alg")), "RS256");
	assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
	assert_string_equal(json_string_value(json_object_get(h, "kid")), "k1");
	json_decref(h);
	free(part);
	part = b64dec(d1 + 1, (size_t)(d2 - d1 - 1), &n);
	assert_string_equal(part, claims);
	free(part);
	/* No padding, URL-safe alphabet only. */
	assert_null(strpbrk(jwt, "=+/"));
	/* A flipped signature byte no longer verifies. */
	jwt[strlen(jwt) - 3] = jwt[strlen(jwt) - 3] == 'A' ? 'B' : 'A';
	assert_false(verify(jwt));
	free(jwt);
	/* Without a kid the header has none. */
	assert_int_equal(auth_jwt_sign(key, NULL, claims, &jwt, &err), 0);
	d1 = strchr(jwt, '.');
	part = b64dec(jwt, (size_t)(d1 - jwt), &n);
	assert_string_equal(part, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
	assert_true(verify(jwt));
	free(part);
	free(jwt);
	free(claims);
	EVP_PKEY_free(key);
}

static void test_load_key_errors(void **state)
{
	EVP_PKEY *key = NULL;
	struct err err;
	char damaged[2048];
	size_t klen = strlen(ut_rsa_key_pem) + 1;

	(void)state;
	assert_true(klen <= sizeof(damaged));
	assert_int_equal(auth_jwt_load_key("not a key", "/x/sa.json: field \"private_key\"",
					   &key, &err), -1);
	assert_int_equal(err.code, ERR_PARSE);
	assert_non_null(strstr(err.msg, "/x/sa.json: field \"private_key\" is not a PEM"));
	assert_null(key);

	/* Damage the base64 body: parse fails, the message quotes nothing. */
	memcpy(damaged, ut_rsa_key_pem, klen);
	memset(damaged + 40, '!', 20);
	assert_int_equal(auth_jwt_load_key(damaged, "k", &key, &err), -1);
	assert_non_null(strstr(err.msg, "not a valid PEM private key"));
	assert_null(strstr(err.msg, "MII"));
	/* Truncated. */
	memcpy(damaged, ut_rsa_key_pem, klen);
	damaged[200] = '\0';
	assert_int_equal(auth_jwt_load_key(damaged, "k", &key, &err), -1);

	assert_int_equal(auth_jwt_load_key(ec_pem, "k", &key, &err), -1);
	assert_non_null(strstr(err.msg, "not an RSA key"));
	assert_null(key);
}

static void test_sa_assertion(void **state)
{
	struct auth_source *src = NULL;
	struct err err;
	json_t *obj;
	char *jwt = NULL, *part;
	const char *d1, *d2;
	size_t n;
	json_t *c;
	json_error_t jerr;

	(void)state;
	obj = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "service_account",
			"client_email", ISS, "private_key", ut_rsa_key_pem, "private_key_id", "k1",
			"token_uri", "http://127.0.0.1:9/token");
	assert_non_null(obj);
	assert_int_equal(auth_sa_new(obj, "/x/sa.json", SCOPE " " "https://www.googleapis.com/"
				     "auth/drive", "boss@example.com", "test", &src, &err), 0);
	assert_string_equal(src->ops->kind, "service_account");
	assert_string_equal(src->account, "boss@example.com");
	assert_int_equal(auth_sa_assertion(src, 1700000000, &jwt, &err), 0);
	assert_true(verify(jwt));
	d1 = strchr(jwt, '.');
	d2 = strrchr(jwt, '.');
	part = b64dec(d1 + 1, (size_t)(d2 - d1 - 1), &n);
	c = json_loads(part, 0, &jerr);
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "iss")), ISS);
	assert_string_equal(json_string_value(json_object_get(c, "aud")),
			    "http://127.0.0.1:9/token");
	assert_string_equal(json_string_value(json_object_get(c, "scope")),
			    SCOPE " https://www.googleapis.com/auth/drive");
	assert_string_equal(json_string_value(json_object_get(c, "sub")), "boss@example.com");
	assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1700000000);
	assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1700003600);
	json_decref(c);
	free(part);
	free(jwt);
	auth_source_free(src);
	json_decref(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claims_exact),
		cmocka_unit_test(test_sign_fixed_vector),
		cmocka_unit_test(test_load_key_errors),
		cmocka_unit_test(test_sa_assertion),
	};

	return cmocka_run_group_tests_name("auth_jwt", tests, NULL, NULL);
}
