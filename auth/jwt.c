/* RS256 JWTs for the service-account grant (include/durafs/auth_jwt.h):
 * PEM key loading, claim building and signing with OpenSSL EVP. Keys,
 * assertions and OpenSSL's error strings never reach a message. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_jwt.h"
#include "durafs/enc.h"

int auth_jwt_load_key(const char *pem, const char *what, EVP_PKEY **out, struct err *err)
{
	BIO *bio = NULL;
	EVP_PKEY *key = NULL;
	int rc = -1;

	*out = NULL;
	if (!strstr(pem, "-----BEGIN") || !strstr(pem, "PRIVATE KEY-----")) {
		err_set(err, ERR_PARSE, "%s is not a PEM private key (no \"-----BEGIN "
			"PRIVATE KEY-----\" block)", what);
		goto out;
	}
	bio = BIO_new_mem_buf(pem, -1);
	if (!bio) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	/* An empty passphrase callback: an encrypted key fails rather than
	 * prompting on the terminal. */
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	if (!key) {
		err_set(err, ERR_PARSE, "%s is not a valid PEM private key (damaged, "
			"truncated or encrypted)", what);
		goto out;
	}
	if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
		err_set(err, ERR_PARSE, "%s is not an RSA key (RS256 needs RSA)", what);
		goto out;
	}
	*out = key;
	key = NULL;
	rc = 0;
out:
	/* Whatever OpenSSL queued may describe the key: drop it. */
	ERR_clear_error();
	EVP_PKEY_free(key);
	BIO_free(bio);
	return rc;
}

char *auth_jwt_sa_claims(const char *iss, const char *scope, const char *aud,
			 const char *sub, time_t iat, long lifetime)
{
	json_t *c = NULL;
	char *s = NULL;

	c = json_object();
	if (!c)
		goto out;
	if (json_object_set_new(c, "iss", json_string(iss)) ||
	    json_object_set_new(c, "scope", json_string(scope)) ||
	    json_object_set_new(c, "aud", json_string(aud)) ||
	    json_object_set_new(c, "iat", json_integer((json_int_t)iat)) ||
	    json_object_set_new(c, "exp", json_integer((json_int_t)iat + lifetime)))
		goto out;
	if (sub && json_object_set_new(c, "sub", json_string(sub)))
		goto out;
	s = json_dumps(c, JSON_COMPACT);
out:
	json_decref(c);
	return s;
}

/* base64url of n bytes, malloc'd, or NULL. */
static char *b64url(const void *in, size_t n)
{
	size_t cap = enc_b64_len(n) + 1;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	if (!enc_b64(in, n, out, cap, 1) && n) {
		free(out);
		return NULL;
	}
	return out;
}

int auth_jwt_sign(EVP_PKEY *key, const char *kid, const char *claims_json, char **out,
		  struct err *err)
{
	json_t *hdr = NULL;
	char *hjson = NULL, *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL, *jwt = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0, inlen, n;
	EVP_MD_CTX *md = NULL;
	int rc = -1;

	*out = NULL;
	hdr = json_object();
	if (!hdr || json_object_set_new(hdr, "alg", json_string("RS256")) ||
	    json_object_set_new(hdr, "typ", json_string("JWT")) ||
	    (kid && json_object_set_new(hdr, "kid", json_string(kid)))) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	hjson = json_dumps(hdr, JSON_COMPACT);
	if (!hjson) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	h64 = b64url(hjson, strlen(hjson));
	c64 = b64url(claims_json, strlen(claims_json));
	if (!h64 || !c64) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	inlen = strlen(h64) + 1 + strlen(c64);
	input = malloc(inlen + 1);
	if (!input) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(input, inlen + 1, "%s.%s", h64, c64);
	md = EVP_MD_CTX_new();
	if (!md) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	/* RSA keys default to PKCS#1 v1.5 padding: exactly RS256. */
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, inlen) != 1) {
		err_set(err, ERR_INVAL, "cannot sign the JWT with this key");
		goto out;
	}
	sig = malloc(siglen);
	if (!sig) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, inlen) != 1) {
		err_set(err, ERR_INVAL, "cannot sign the JWT with this key");
		goto out;
	}
	s64 = b64url(sig, siglen);
	if (!s64) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	n = inlen + 1 + strlen(s64) + 1;
	jwt = malloc(n);
	if (!jwt) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(jwt, n, "%s.%s", input, s64);
	*out = jwt;
	rc = 0;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	json_decref(hdr);
	free(hjson);
	free(h64);
	free(c64);
	free(s64);
	free(sig);
	free(input);
	return rc;
}
