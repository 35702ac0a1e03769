#!/bin/sh
# Run every built libFuzzer target in DIR for SECONDS each (a smoke run that
# keeps the targets from rotting; real fuzzing runs longer by hand). Inputs
# that once failed live in tests/fuzz/regress/TARGET/ and are replayed first.
set -eu
dir=${1:-build/fuzz}
secs=${2:-10}
n=0
for f in "$dir"/fuzz_*; do
	[ -x "$f" ] || continue
	name=$(basename "$f")
	f=$(cd "$(dirname "$f")" && pwd)/$name
	work=$(mktemp -d)
	regress=$(cd "$(dirname "$0")" && pwd)/regress/$name
	if [ -d "$regress" ] && ! (cd "$work" && "$f" -runs=0 "$regress"/* >log 2>&1); then
		echo "fuzz: $name FAILED on a regression input" >&2
		tail -40 "$work/log" >&2
		exit 1
	fi
	if ! (cd "$work" && "$f" -max_total_time="$secs" -rss_limit_mb=2048 >log 2>&1); then
		echo "fuzz: $name FAILED" >&2
		tail -40 "$work/log" >&2
		exit 1
	fi
	echo "fuzz: $name ok ($(grep -o 'Done [0-9]* runs' "$work/log" || echo 'ran'))"
	rm -rf "$work"
	n=$((n + 1))
done
echo "fuzz: $n passed, 0 failed"
