/* Encodings used on the wire: base64 (standard and URL-safe), hex, and
 * percent-encoding of URL components (object names, query values). */
#ifndef DURAFS_ENC_H
#define DURAFS_ENC_H

#include <stddef.h>

/* Base64 of n bytes into out (NUL-terminated). url != 0: URL-safe alphabet
 * without padding (JWT). Returns the length written, or 0 when outsz is
 * too small (need enc_b64_len(n) + 1). */
size_t enc_b64(const void *in, size_t n, char *out, size_t outsz, int url);
size_t enc_b64_len(size_t n);  /* with padding: 4 * ceil(n / 3) */

/* Decode standard or URL-safe base64, padding optional, whitespace refused.
 * Returns 0 and *outlen, or -1 when malformed or out is too small. */
int enc_b64_decode(const char *in, size_t n, void *out, size_t outsz, size_t *outlen);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void enc_hex(const void *in, size_t n, char *out);

/* Percent-encode every byte except unreserved A-Z a-z 0-9 - . _ ~
 * (so '/' becomes %2F, ' ' %20). Returns a malloc'd string or NULL. */
char *enc_url(const char *s);
/* Form encoding of a value for application/x-www-form-urlencoded bodies
 * (same as enc_url; ' ' as %20 is accepted by every server). */
#define enc_form(s) enc_url(s)

/* Decode %XX escapes (and '+' as ' ' when plus != 0). Returns a malloc'd
 * string, or NULL when malformed (bad escape or a decoded NUL). */
char *enc_url_decode(const char *s, size_t n, int plus);

#endif
