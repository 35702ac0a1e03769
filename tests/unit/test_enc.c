/* Unit tests for sync/enc.c: base64 (RFC 4648 vectors, URL-safe, strict
 * decoding), hex, percent-encoding and decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/enc.h"

static void test_b64_vectors(void **state)
{
	static const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *std[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	static const char *url[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
	char out[32], dec[32];
	size_t i, n;

	(void)state;
	for (i = 0; i < 7; i++) {
		assert_int_equal(enc_b64(in[i], strlen(in[i]), out, sizeof(out), 0), strlen(std[i]));
		assert_string_equal(out, std[i]);
		enc_b64(in[i], strlen(in[i]), out, sizeof(out), 1);
		assert_string_equal(out, url[i]);
		assert_int_equal(enc_b64_decode(std[i], strlen(std[i]), dec, sizeof(dec), &n), 0);
		assert_int_equal(n, strlen(in[i]));
		assert_memory_equal(dec, in[i], n);
		assert_int_equal(enc_b64_decode(url[i], strlen(url[i]), dec, sizeof(dec), &n), 0);
		assert_int_equal(n, strlen(in[i]));
	}
	/* URL-safe alphabet */
	enc_b64("\xfb\xff", 2, out, sizeof(out), 1);
	assert_string_equal(out, "-_8");
	enc_b64("\xfb\xff", 2, out, sizeof(out), 0);
	assert_string_equal(out, "+/8=");
	/* too small an output buffer */
	assert_int_equal(enc_b64("foo", 3, out, 4, 0), 0);
}

static void test_b64_malformed(void **state)
{
	char dec[8];
	size_t n;

	(void)state;
	assert_int_equal(enc_b64_decode("Zm9v!", 5, dec, sizeof(dec), &n), -1);
	assert_int_equal(enc_b64_decode("Z", 1, dec, sizeof(dec), &n), -1);
	assert_int_equal(enc_b64_decode("Zm 9", 4, dec, sizeof(dec), &n), -1);
	assert_int_equal(enc_b64_decode("Zh==", 4, dec, sizeof(dec), &n), -1); /* non-canonical */
	assert_int_equal(enc_b64_decode("Zm9vYmFy", 8, dec, 5, &n), -1);       /* too small */
	assert_int_equal(enc_b64_decode("Zg=", 3, dec, sizeof(dec), &n), -1);   /* bad padding */
}

static void test_hex(void **state)
{
	char out[9];

	(void)state;
	enc_hex("\x00\x1f\xab\xff", 4, out);
	assert_string_equal(out, "001fabff");
}

static void test_url(void **state)
{
	char *s, *d;

	(void)state;
	s = enc_url("a/b c~-._é?&=%");
	assert_string_equal(s, "a%2Fb%20c~-._%C3%A9%3F%26%3D%25");
	d = enc_url_decode(s, strlen(s), 0);
	assert_string_equal(d, "a/b c~-._é?&=%");
	free(s);
	free(d);
	d = enc_url_decode("a+b%2b", 6, 1);
	assert_string_equal(d, "a b+");
	free(d);
	d = enc_url_decode("a+b", 3, 0);
	assert_string_equal(d, "a+b");
	free(d);
	assert_null(enc_url_decode("%4", 2, 0));
	assert_null(enc_url_decode("%zz", 3, 0));
	assert_null(enc_url_decode("a%00", 4, 0));
	assert_null(enc_url_decode("ab%", 3, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_vectors),
		cmocka_unit_test(test_b64_malformed),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
