/* libFuzzer target: the emulator's JWT-bearer grant parser, claim checks and
 * RS256 verification (emu_oauth.c), fed arbitrary assertions. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "emu_oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *key;
	static const char *const auds[] = { "http://127.0.0.1:1/token", NULL };
	struct emu_jwt j;
	char why[256];

	if (!key)
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	if (emu_jwt_parse((const char *)data, size, &j, why, sizeof(why)) < 0) {
		if (!why[0] || j.header || j.claims)
			__builtin_trap();
		return 0;
	}
	if (!j.alg || !j.iss || !j.signed_part)
		__builtin_trap();
	(void)emu_jwt_check_claims(&j, 1700000000LL, auds, why, sizeof(why));
	(void)emu_jwt_verify_rs256(&j, key);
	emu_jwt_release(&j);
	return 0;
}
