/* libFuzzer target for the emulator's request parsers (emu_parse.c): the
 * first input byte picks the parser, the rest is what a client would send.
 * Build and run: make fuzz && build/fuzz/fuzz_emu_parse -max_total_time=60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emu_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy (the parsers take C strings, as headers are). */
static char *cstr(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		return NULL;
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void fuzz_multipart(const uint8_t *p, size_t n)
{
	const uint8_t *nl = memchr(p, '\n', n);
	char *ctype, why[128], bnd[80];
	struct emu_multipart mp;
	int i;

	if (!nl)
		return;
	ctype = cstr(p, (size_t)(nl - p));
	if (!ctype)
		return;
	if (emu_parse_boundary(ctype, bnd, sizeof(bnd)) == 0) {
		const char *body = (const char *)nl + 1;
		size_t blen = n - (size_t)(nl + 1 - p);

		if (emu_parse_multipart(body, blen, bnd, &mp, why, sizeof(why)) == 0) {
			for (i = 0; i < mp.nparts; i++) {
				/* every part lies inside the body */
				if (mp.part[i].data < body || mp.part[i].data + mp.part[i].len > body + blen)
					abort();
				if (mp.part[i].ctype_len &&
				    (mp.part[i].ctype < body ||
				     mp.part[i].ctype + mp.part[i].ctype_len > body + blen))
					abort();
			}
		}
	}
	free(ctype);
}

static void fuzz_fields(const char *s)
{
	static const char doc[] =
		"{\"kind\":\"storage#objects\",\"nextPageToken\":\"t\",\"prefixes\":[\"a/\"],"
		"\"items\":[{\"name\":\"x\",\"size\":\"1\",\"metadata\":{\"m\":\"1\"}},{\"name\":\"y\"},3]}";
	int bad = 0;
	struct emu_fields *f = emu_fields_parse(s, &bad);
	json_t *j;

	if (f && bad)
		abort();
	j = json_loads(doc, 0, NULL);
	emu_fields_apply(f, j);
	json_decref(j);
	emu_fields_free(f);
}

static void fuzz_tokens(const char *s, const uint8_t *raw, size_t n)
{
	char *key = NULL, *tok, *back;
	size_t klen = 0, blen = 0;
	int64_t gen = 0;

	if (emu_page_token_parse(s, &key, &klen, &gen) == 0) {
		/* what parses re-encodes to something that parses the same */
		tok = emu_page_token_make(key, klen, gen);
		if (tok) {
			char *k2 = NULL;
			size_t l2 = 0;
			int64_t g2 = 0;

			if (emu_page_token_parse(tok, &k2, &l2, &g2) != 0 || l2 != klen ||
			    g2 != gen || memcmp(k2, key, klen) != 0)
				abort();
			free(k2);
			free(tok);
		}
		free(key);
	}
	tok = emu_token_encode(raw, n);
	if (tok) {
		back = emu_token_decode(tok, &blen);
		if (!back || blen != n || memcmp(back, raw, n) != 0)
			abort();
		free(back);
		free(tok);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct emu_crange cr;
	uint64_t a = 0, b = 0, osize;
	char crc[32], md5[48];
	int64_t v;
	char *s;

	if (size < 1)
		return 0;
	s = cstr(data + 1, size - 1);
	if (!s)
		return 0;
	switch (data[0] % 7) {
	case 0:
		if (emu_parse_content_range(s, &cr) == 0) {
			if (cr.has_range && !cr.open_end && cr.last < cr.first)
				abort();
			if (cr.has_range && cr.has_total && !cr.open_end && cr.last >= cr.total)
				abort();
		}
		break;
	case 1:
		osize = size > 1 ? data[1] * 37u : 0;
		if (emu_parse_range(s, osize, &a, &b) == EMU_RANGE_PART && (a > b || b >= osize))
			abort();
		break;
	case 2:
		fuzz_multipart(data + 1, size - 1);
		break;
	case 3:
		emu_parse_goog_hash(s, crc, sizeof(crc), md5, sizeof(md5));
		break;
	case 4:
		fuzz_fields(s);
		break;
	case 5:
		fuzz_tokens(s, data + 1, size - 1);
		break;
	default:
		emu_parse_i64(s, &v);
		break;
	}
	free(s);
	return 0;
}
