#!/bin/sh
# make demo: start the bundled Google emulator on 127.0.0.1, mount a bucket
# from it with durafs, and show the promises at work: a file written and
# fsynced is on the remote when fsync returns; files closed without fsync
# are committed by `durafs sync --flush`; `durafs status` says what is
# pending. Nothing here talks to a real Google host.
set -eu
B=${DURAFS_BUILD:-build}
work=$(mktemp -d /tmp/durafs-demo.XXXXXX)
mnt="$work/mnt"
emu_pid=""
cleanup() {
	if grep -qs " $mnt " /proc/mounts; then
		"$B/durafs" unmount --no-flush "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null ||
			fusermount3 -u -z "$mnt" 2>/dev/null || true
	fi
	[ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
remote_md5() {
	curl -sf "$URL/storage/v1/b/demo/o/$1?alt=media" | md5sum | cut -d' ' -f1
}
remote_list() {
	curl -sf "$URL/storage/v1/b/demo/o?fields=items(name,size)" |
		tr '{' '\n' | sed -n 's/.*"name": *"\([^"]*\)".*"size": *"\([0-9]*\)".*/  \1  (\2 bytes)/p'
}

step "Starting durafs-emulator (Cloud Storage + OAuth + metadata) on 127.0.0.1"
"$B/durafs-emulator" --listen 127.0.0.1:0 --ready-file "$work/ready" --no-auth \
	>"$work/emulator.log" 2>&1 &
emu_pid=$!
i=0
while [ ! -s "$work/ready" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "emulator did not start"; cat "$work/emulator.log"; exit 1; }
	sleep 0.05
done
URL=$(cat "$work/ready")
export STORAGE_EMULATOR_HOST="$URL"
echo "emulator at $URL (STORAGE_EMULATOR_HOST: no credentials needed)"

step "Creating bucket 'demo'"
curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"demo"}' "$URL/storage/v1/b?project=demo" >/dev/null
echo ok

step "durafs mount gs://demo $mnt"
mkdir -p "$mnt"
"$B/durafs" mount gs://demo "$mnt" --cache-dir "$work/cache" -o writeback_delay=30s
grep " $mnt " /proc/mounts

step "Write 5 MiB and fsync: when fsync returns, the object is committed remotely"
head -c 5242880 /dev/urandom > "$work/report.bin"
dd if="$work/report.bin" of="$mnt/report.bin" bs=1M conv=fsync status=none
echo "local md5:  $(md5sum < "$work/report.bin" | cut -d' ' -f1)"
echo "remote md5: $(remote_md5 report.bin)   (read from the emulator, no unmount)"
echo "user.durafs.state = $(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.durafs.state").decode())' "$mnt/report.bin" 2>/dev/null || echo '?')"

step "Write three files and just close them (uploads wait for writeback_delay=30s)"
mkdir -p "$mnt/notes"
for n in 1 2 3; do echo "note $n, $(date)" > "$mnt/notes/note$n.txt"; done
ls -l "$mnt/notes"
echo "on the remote so far:"; remote_list

step "durafs status $mnt"
"$B/durafs" status "$mnt"

step "durafs sync --flush $mnt: returns when every change is committed"
"$B/durafs" sync --flush "$mnt"
echo "on the remote now:"; remote_list

step "durafs status $mnt"
"$B/durafs" status "$mnt"

step "durafs unmount $mnt"
"$B/durafs" unmount "$mnt"
grep -qs " $mnt " /proc/mounts && echo "still mounted?" || echo "unmounted; the daemon has exited"

step "Emulator statistics"
curl -sf "$URL/_emulator/stats"; echo

step "Next"
echo "Run these commands yourself against the emulator: README.md, section \"The emulator\"."
