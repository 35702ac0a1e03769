#!/bin/sh
# Install the Debian/Ubuntu packages durafs needs to build, test and run.
# --if-missing: do nothing when pkg-config and the test tools already find them.
set -eu

PKGS="build-essential pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev libssl-dev \
libsqlite3-dev libjansson-dev libmicrohttpd-dev libcmocka-dev python3 python3-pytest curl"

have_all() {
	command -v pkg-config >/dev/null 2>&1 || return 1
	pkg-config --exists fuse3 libcurl openssl sqlite3 jansson libmicrohttpd cmocka || return 1
	command -v fusermount3 >/dev/null 2>&1 || return 1
	[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import pytest' 2>/dev/null || return 1
	return 0
}

if [ "${1:-}" = "--if-missing" ] && have_all; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "durafs: missing build dependencies. Install them with:" >&2
	echo "  sudo apt-get install -y $PKGS" >&2
	exit 1
fi
echo "durafs: installing build dependencies with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
have_all || { echo "durafs: dependencies still missing after apt-get" >&2; exit 1; }
