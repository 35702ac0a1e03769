/* libFuzzer target: the emulator's fault-rule JSON (POST /_emulator/faults
 * and --faults) through the parser, the rule set and the matcher. */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "emu_core_fault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct emu_faults f;
	struct emu_fault_rule r;
	char why[512];
	json_t *j, *list;
	int k;

	j = json_loadb((const char *)data, size, 0, NULL);
	if (!j)
		return 0;
	if (emu_faults_init(&f, 1) < 0) {
		json_decref(j);
		return 0;
	}
	if (emu_faults_apply(&f, j, why, sizeof(why)) == 0) {
		for (k = 0; k < EMU_FAULT_NKINDS; k++) {
			(void)emu_faults_take(&f, k, "PUT", "/upload/storage/v1/b/x/o",
					      "uploadType=resumable", 1000, &r);
			(void)emu_faults_take(&f, k, "GET", "/", "", UINT64_MAX, &r);
		}
		list = emu_faults_list(&f);
		json_decref(list);
	} else if (!why[0]) {
		__builtin_trap();
	}
	emu_faults_release(&f);
	json_decref(j);
	return 0;
}
