#!/bin/sh
# make fuzz: build every tests/fuzz/fuzz_*.c as a libFuzzer target with clang
# (-fsanitize=fuzzer,address,undefined) against the library and emulator
# sources, into the given directory. Run one with e.g.
#   build/fuzz/fuzz_emu_parse -max_total_time=60 tests/fuzz/corpus/emu_parse
set -eu
out=${1:-build/fuzz}
mkdir -p "$out/obj"
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: clang not installed (apt-get install clang)" >&2; exit 1; }
pkgs="fuse3 libcurl openssl sqlite3 jansson libmicrohttpd"
cflags="-std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DDURAFS_VERSION=\"fuzz\" -DDURAFS_FUZZ=1 -g -O1 \
 -Iinclude -Itests/emulator $(pkg-config --cflags $pkgs) -fsanitize=fuzzer-no-link,address,undefined"
libs="$(pkg-config --libs $pkgs) -lm -pthread"
objs=""
for src in sync/*.c auth/*.c fs/*.c tests/emulator/*.c; do
	[ -f "$src" ] || continue
	case "$src" in fs/main.c|tests/emulator/emu_main.c) continue ;; esac
	o="$out/obj/$(echo "$src" | tr / _).o"
	$CC $cflags -c "$src" -o "$o"
	objs="$objs $o"
done
for t in tests/fuzz/fuzz_*.c; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .c)
	$CC $cflags -fsanitize=fuzzer,address,undefined "$t" $objs $libs -o "$out/$name"
	echo "  FUZZ    $out/$name"
done
