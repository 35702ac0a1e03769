/* Unit tests for sync/cksum.c: CRC-32C known vectors (hardware and table
 * paths agree), chaining, GCS base64 forms, MD5 vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "durafs/cksum.h"

static void test_crc32c_vectors(void **state)
{
	unsigned char zeros[32] = { 0 }, ones[32], inc[32], dec[32];
	int i;

	(void)state;
	for (i = 0; i < 32; i++) {
		ones[i] = 0xff;
		inc[i] = (unsigned char)i;
		dec[i] = (unsigned char)(31 - i);
	}
	/* RFC 3720 B.4 test vectors */
	assert_int_equal(ck_crc32c(0, zeros, 32), 0x8A9136AA);
	assert_int_equal(ck_crc32c(0, ones, 32), 0x62A8AB43);
	assert_int_equal(ck_crc32c(0, inc, 32), 0x46DD794E);
	assert_int_equal(ck_crc32c(0, dec, 32), 0x113FDB5C);
	assert_int_equal(ck_crc32c(0, "123456789", 9), 0xE3069283);
	assert_int_equal(ck_crc32c(0, "", 0), 0);
	assert_int_equal(ck_crc32c_portable(0, inc, 32), 0x46DD794E);
	assert_int_equal(ck_crc32c_portable(0, "123456789", 9), 0xE3069283);
}

static void test_crc32c_chain_and_alignment(void **state)
{
	size_t n = 100003, cut, off;
	unsigned char *buf = malloc(n + 8);
	uint32_t whole, c;

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < n + 8; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	whole = ck_crc32c(0, buf, n);
	assert_int_equal(ck_crc32c_portable(0, buf, n), whole);
	assert_int_equal(ck_crc32c_portable(0, buf + 3, n - 3), ck_crc32c(0, buf + 3, n - 3));
	for (cut = 0; cut < 20; cut++) {
		c = ck_crc32c(0, buf, cut * 997);
		c = ck_crc32c(c, buf + cut * 997, n - cut * 997);
		assert_int_equal(c, whole);
	}
	/* Misaligned starts give the same result as an aligned copy. */
	for (off = 1; off < 8; off++) {
		unsigned char *cp = malloc(1000);
		assert_non_null(cp);
		memcpy(cp, buf + off, 1000);
		assert_int_equal(ck_crc32c(0, buf + off, 1000), ck_crc32c(0, cp, 1000));
		free(cp);
	}
	free(buf);
}

static void test_crc32c_b64(void **state)
{
	char b64[9];
	uint32_t c = 0;

	(void)state;
	/* GCS documents crc32c of "hello world" ... check round trip and a fixed form. */
	ck_crc32c_b64(0xE3069283, b64);
	assert_string_equal(b64, "4waSgw==");
	assert_int_equal(ck_crc32c_from_b64(b64, &c), 0);
	assert_int_equal(c, 0xE3069283);
	ck_crc32c_b64(0, b64);
	assert_string_equal(b64, "AAAAAA==");
	assert_int_equal(ck_crc32c_from_b64("AAAA", &c), -1);
	assert_int_equal(ck_crc32c_from_b64("!!!!!!==", &c), -1);
	assert_int_equal(ck_crc32c_from_b64(NULL, &c), -1);
}

static void test_md5(void **state)
{
	unsigned char d[16];
	char hex[33], b64[25];
	struct ck_md5 m;

	(void)state;
	ck_md5("", 0, d);
	ck_md5_hex(d, hex);
	assert_string_equal(hex, "d41d8cd98f00b204e9800998ecf8427e");
	ck_md5_b64(d, b64);
	assert_string_equal(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
	assert_int_equal(ck_md5_init(&m), 0);
	ck_md5_update(&m, "The quick brown fox ", 20);
	ck_md5_update(&m, "jumps over the lazy dog", 23);
	ck_md5_final(&m, d);
	ck_md5_hex(d, hex);
	assert_string_equal(hex, "9e107d9d372bb6826bd81d3542a419d6");
	assert_null(m.ctx);
	ck_md5_release(&m);
	assert_int_equal(ck_md5_init(&m), 0);
	ck_md5_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors),
		cmocka_unit_test(test_crc32c_chain_and_alignment),
		cmocka_unit_test(test_crc32c_b64),
		cmocka_unit_test(test_md5),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
