/* Wire encodings: base64 (standard, and URL-safe without padding for JWTs),
 * lower-case hex, and percent-encoding of URL components. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/enc.h"

static const char b64_std[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t enc_b64_len(size_t n)
{
	return 4 * ((n + 2) / 3);
}

size_t enc_b64(const void *in, size_t n, char *out, size_t outsz, int url)
{
	const unsigned char *p = in;
	const char *al = url ? b64_url : b64_std;
	size_t i, o = 0;
	uint32_t v;

	if (outsz < enc_b64_len(n) + 1)
		return 0;
	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = al[v >> 18];
		out[o++] = al[(v >> 12) & 63];
		out[o++] = al[(v >> 6) & 63];
		out[o++] = al[v & 63];
	}
	if (i < n) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		out[o++] = al[v >> 18];
		out[o++] = al[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = al[(v >> 6) & 63];
		else if (!url)
			out[o++] = '=';
		if (!url)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int enc_b64_decode(const char *in, size_t n, void *out, size_t outsz, size_t *outlen)
{
	unsigned char *o = out;
	size_t i, k = 0, pad = 0;
	uint32_t acc = 0;
	int bits = 0, v;

	while (n && in[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (n % 4 == 1)
		return -1;
	if (pad && (n + pad) % 4)
		return -1;
	for (i = 0; i < n; i++) {
		v = b64_val((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (k >= outsz)
				return -1;
			o[k++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero (canonical encoding). */
	if (bits && (acc & ((1u << bits) - 1)))
		return -1;
	if (outlen)
		*outlen = k;
	return 0;
}

void enc_hex(const void *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	const unsigned char *p = in;
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hx[p[i] >> 4];
		out[2 * i + 1] = hx[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

char *enc_url(const char *s)
{
	static const char hx[] = "0123456789ABCDEF";
	size_t n = 0, i;
	const unsigned char *p = (const unsigned char *)s;
	char *out, *o;

	for (i = 0; p[i]; i++)
		n += unreserved(p[i]) ? 1 : 3;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (i = 0; p[i]; i++) {
		if (unreserved(p[i])) {
			*o++ = (char)p[i];
		} else {
			*o++ = '%';
			*o++ = hx[p[i] >> 4];
			*o++ = hx[p[i] & 15];
		}
	}
	*o = '\0';
	return out;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *enc_url_decode(const char *s, size_t n, int plus)
{
	char *out = malloc(n + 1);
	size_t i, k = 0;
	int hi, lo;

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		if (s[i] == '%') {
			if (i + 2 >= n)
				goto bad;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			out[k++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (s[i] == '+' && plus) {
			out[k++] = ' ';
		} else if (s[i] == '\0') {
			goto bad;
		} else {
			out[k++] = s[i];
		}
	}
	out[k] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}
