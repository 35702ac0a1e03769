#!/bin/sh
# make lint: the banned-function check, then cppcheck over all C sources.
set -eu
status=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find fs sync auth include tests -name '*.[ch]')
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|strtok)[[:space:]]*\('
if grep -nE "$banned" $files | grep -v 'lint: allow'; then
	echo "lint: banned functions used above (use snprintf, strtol, strtok_r ...)" >&2
	status=1
fi
if command -v cppcheck >/dev/null 2>&1; then
	cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
		--enable=warning,portability --suppress=missingIncludeSystem --suppress=unknownMacro \
		-D__GNUC__ -DDURAFS_VERSION='"lint"' -Iinclude -Itests/emulator -Itests/unit \
		fs sync auth tests/emulator tests/unit tests/fuzz || status=1
else
	echo "lint: cppcheck not installed (apt-get install cppcheck)" >&2
	status=1
fi
[ "$status" -eq 0 ] && echo "lint: ok"
exit "$status"
