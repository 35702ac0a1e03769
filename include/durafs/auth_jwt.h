/* JSON Web Tokens for service-account grants (auth/jwt.c): the RS256
 * signature (RSASSA-PKCS1-v1_5 with SHA-256, OpenSSL EVP) over
 * base64url(header) "." base64url(claims), as RFC 7515/7519 define. */
#ifndef DURAFS_AUTH_JWT_H
#define DURAFS_AUTH_JWT_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "durafs/err.h"

/* Lifetime Google allows for a JWT-bearer assertion (and the maximum). */
#define AUTH_JWT_LIFETIME 3600

/* Load a PEM private key (PKCS#8 "BEGIN PRIVATE KEY", or traditional
 * "BEGIN RSA PRIVATE KEY") that must be RSA. what names it in messages
 * ("/path/sa.json: field \"private_key\""). *out is a new key
 * (EVP_PKEY_free). Never quotes the key. */
int auth_jwt_load_key(const char *pem, const char *what, EVP_PKEY **out, struct err *err);

/* The claims of a service-account assertion as compact JSON, members in
 * this order: iss, scope, aud, iat, exp (= iat + lifetime), then sub when
 * sub is non-NULL. Returns a malloc'd string or NULL (ENOMEM). */
char *auth_jwt_sa_claims(const char *iss, const char *scope, const char *aud,
			 const char *sub, time_t iat, long lifetime);

/* Sign: header {"alg":"RS256","typ":"JWT"[,"kid":kid]} (kid omitted when
 * NULL), claims_json as given. *out is a malloc'd JWT (a secret: wipe it).
 * Returns 0 or -1 with *err. */
int auth_jwt_sign(EVP_PKEY *key, const char *kid, const char *claims_json, char **out,
		  struct err *err);

#endif
