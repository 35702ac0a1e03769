/* libFuzzer target: the emulator's query-string / form-body decoder
 * (emu_form_parse), which every request's query and every OAuth token
 * request body goes through. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "emu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct emu_kv *kv = NULL;
	size_t n = 0, i;

	if (emu_form_parse((const char *)data, size, &kv, &n) == 0) {
		for (i = 0; i < n; i++) {
			/* every key and value is a NUL-terminated string */
			if (strlen(kv[i].key) > size || strlen(kv[i].value) > size)
				__builtin_trap();
			if (emu_kv_get(kv, n, kv[i].key) == NULL)
				__builtin_trap();
		}
		emu_kv_free(kv, n);
	} else if (kv != NULL || n != 0) {
		__builtin_trap();
	}
	return 0;
}
