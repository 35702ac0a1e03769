/* CRC-32C (Castagnoli) and MD5 as Google's APIs verify them: crc32c with the
 * SSE4.2 instruction when the CPU has it (a slicing-by-8 table otherwise),
 * MD5 through OpenSSL EVP, and their base64/hex wire forms. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "durafs/cksum.h"
#include "durafs/enc.h"

#define CRC32C_POLY 0x82F63B78u  /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];
static int crc_use_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			crc_table[j][i] = (crc_table[j - 1][i] >> 8) ^
					  crc_table[0][crc_table[j - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t w;

	while (n && ((uintptr_t)p & 7)) {
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		n--;
	}
	while (n >= 8) {
		memcpy(&w, p, 8);
		w ^= c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t c64, w;

	while (n && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi(c, *p++);
		n--;
	}
	c64 = c;
	while (n >= 8) {
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

uint32_t ck_crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;

	pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
	if (crc_use_hw)
		return ~crc_hw(c, buf, len);
#endif
	return ~crc_sw(c, buf, len);
}

uint32_t ck_crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_sw(~crc, buf, len);
}

int ck_crc32c_hw(void)
{
	pthread_once(&crc_once, crc_init);
	return crc_use_hw;
}

void ck_crc32c_b64(uint32_t crc, char out[9])
{
	unsigned char be[4] = { crc >> 24, crc >> 16, crc >> 8, crc };

	enc_b64(be, 4, out, 9, 0);
}

int ck_crc32c_from_b64(const char *b64, uint32_t *crc)
{
	unsigned char be[4];
	size_t n = 0;

	if (!b64 || enc_b64_decode(b64, strlen(b64), be, sizeof(be), &n) || n != 4)
		return -1;
	*crc = (uint32_t)be[0] << 24 | (uint32_t)be[1] << 16 | (uint32_t)be[2] << 8 | be[3];
	return 0;
}

int ck_md5_init(struct ck_md5 *m)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	m->ctx = NULL;
	if (!ctx)
		return -1;
	if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -1;
	}
	m->ctx = ctx;
	return 0;
}

void ck_md5_update(struct ck_md5 *m, const void *buf, size_t len)
{
	if (m->ctx && len)
		EVP_DigestUpdate(m->ctx, buf, len);
}

void ck_md5_final(struct ck_md5 *m, unsigned char out[16])
{
	unsigned int n = 16;

	memset(out, 0, 16);
	if (m->ctx)
		EVP_DigestFinal_ex(m->ctx, out, &n);
	ck_md5_release(m);
}

void ck_md5_release(struct ck_md5 *m)
{
	EVP_MD_CTX_free(m->ctx);
	m->ctx = NULL;
}

void ck_md5(const void *buf, size_t len, unsigned char out[16])
{
	unsigned int n = 16;

	memset(out, 0, 16);
	EVP_Digest(buf, len, out, &n, EVP_md5(), NULL);
}

void ck_md5_b64(const unsigned char md5[16], char out[25])
{
	enc_b64(md5, 16, out, 25, 0);
}

void ck_md5_hex(const unsigned char md5[16], char out[33])
{
	enc_hex(md5, 16, out);
}
