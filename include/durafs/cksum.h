/* Checksums Google verifies: CRC-32C (Castagnoli; SSE4.2 when the CPU has it,
 * a portable table otherwise) and MD5 (OpenSSL EVP), with the base64 forms
 * that GCS's crc32c/md5Hash fields and x-goog-hash headers use. */
#ifndef DURAFS_CKSUM_H
#define DURAFS_CKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) over len bytes; chainable:
 * ck_crc32c(ck_crc32c(0, a, n), b, m) == crc of a||b. Thread-safe. */
uint32_t ck_crc32c(uint32_t crc, const void *buf, size_t len);

/* 1 when the hardware (SSE4.2) path is in use. */
int ck_crc32c_hw(void);
/* The portable table path, whatever the CPU (tests compare both). */
uint32_t ck_crc32c_portable(uint32_t crc, const void *buf, size_t len);

/* GCS form: base64 of the 4 bytes big-endian, e.g. "yZRlqg==". out[9]. */
void ck_crc32c_b64(uint32_t crc, char out[9]);
/* Parse that form; returns 0, or -1 when malformed. */
int ck_crc32c_from_b64(const char *b64, uint32_t *crc);

/* Streaming MD5. Not thread-safe per object. */
struct ck_md5 {
	void *ctx;  /* EVP_MD_CTX */
};
int ck_md5_init(struct ck_md5 *m);                      /* 0 or -1 (ENOMEM) */
void ck_md5_update(struct ck_md5 *m, const void *buf, size_t len);
void ck_md5_final(struct ck_md5 *m, unsigned char out[16]);  /* also releases */
void ck_md5_release(struct ck_md5 *m);                  /* abandon; idempotent */
/* One-shot helpers. */
void ck_md5(const void *buf, size_t len, unsigned char out[16]);
/* GCS md5Hash: base64 of the 16 bytes, out[25]; Drive md5Checksum: hex, out[33]. */
void ck_md5_b64(const unsigned char md5[16], char out[25]);
void ck_md5_hex(const unsigned char md5[16], char out[33]);

#endif
