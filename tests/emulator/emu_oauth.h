/* durafs-emulator OAuth2 service: the pure pieces of the JWT-bearer grant
 * (compact JWS parsing, claim checks, RS256 verification), exposed for unit
 * tests and the libFuzzer target tests/fuzz/fuzz_emu_jwt.c. */
#ifndef DURAFS_EMU_OAUTH_H
#define DURAFS_EMU_OAUTH_H

#include <stddef.h>
#include <jansson.h>
#include <openssl/evp.h>

#define EMU_JWT_MAX_LEN (64 * 1024)     /* longer assertions are refused */
#define EMU_JWT_MAX_LIFETIME 3600       /* exp - iat */
#define EMU_JWT_SKEW 300                /* seconds of clock skew allowed */

/* A parsed compact JWS "b64url(header).b64url(claims).b64url(sig)". */
struct emu_jwt {
	json_t *header;            /* owned */
	json_t *claims;            /* owned */
	unsigned char *sig;        /* owned */
	size_t siglen;
	char *signed_part;         /* owned copy of "header.claims" */
	size_t signed_len;
	const char *alg;           /* borrowed from header */
	const char *kid;           /* borrowed from header, NULL if absent */
	const char *iss;           /* borrowed from claims */
	const char *sub;           /* borrowed from claims, NULL if absent */
	const char *scope;         /* borrowed from claims, NULL if absent */
	const char *aud;           /* borrowed from claims, NULL if absent */
};

/* Parse n bytes of a compact JWS. Checks structure only: three base64url
 * parts, JSON objects, "alg" a string, "iss" a string. Returns 0 (release
 * *j with emu_jwt_release), or -1 with a one-line reason in why (never the
 * JWT itself). Pure, thread-safe. */
int emu_jwt_parse(const char *s, size_t n, struct emu_jwt *j, char *why, size_t whysz);
void emu_jwt_release(struct emu_jwt *j);

/* Check a jwt-bearer grant's claims at time now (seconds since the epoch):
 * alg RS256; aud equal to one of the NULL-terminated auds; numeric iat and
 * exp with iat < exp, exp - iat <= EMU_JWT_MAX_LIFETIME, iat not in the
 * future and exp not past (EMU_JWT_SKEW allowed); non-empty scope. Returns
 * 0 or -1 with a precise reason. Pure. */
int emu_jwt_check_claims(const struct emu_jwt *j, long long now,
			 const char *const *auds, char *why, size_t whysz);

/* 1 when j's RS256 signature verifies with key (an RSA public key), else 0. */
int emu_jwt_verify_rs256(const struct emu_jwt *j, EVP_PKEY *key);

/* Read a public key from PEM text: "PUBLIC KEY" (SubjectPublicKeyInfo), a
 * "CERTIFICATE", or an unencrypted private key (its public half is used).
 * NULL when none parses. */
EVP_PKEY *emu_pem_public_key(const char *pem, size_t n);

#endif
