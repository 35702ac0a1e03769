#!/bin/sh
# Driver of `make bench` and `make bench-quick` (--quick): checks the
# binaries are built, then runs the scenarios (bench.py, Python 3 stdlib).
# Options are passed through: --quick, --runs N, --only large,small,... --keep
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${DURAFS_BUILD:=$here/../../build}"
export DURAFS_BUILD
for b in durafs durafs-emulator; do
	if [ ! -x "$DURAFS_BUILD/$b" ]; then
		echo "bench: $DURAFS_BUILD/$b is not built (run make first)" >&2
		exit 2
	fi
done
if [ ! -x /usr/bin/rclone ]; then
	echo "bench: /usr/bin/rclone is missing: the rclone columns will be empty (apt-get install rclone)" >&2
fi
PYTHON=${PYTHON:-/usr/bin/python3}
exec "$PYTHON" -B "$here/bench.py" "$@"
