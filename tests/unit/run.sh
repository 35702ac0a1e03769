#!/bin/sh
# Run every cmocka unit-test binary given; print a summary line and fail if
# any binary fails.
passed=0; failed=0; failed_names=""
for t in "$@"; do
	if "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1)); failed_names="$failed_names $(basename "$t")"
	fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failing unit test programs:$failed_names" >&2; exit 1; }
