#!/bin/sh
# Installs the ClickHouse server and client that mcptrail's local storage and
# integration tests use, when they are missing. Idempotent and quiet.
#
# Debian/Ubuntu: the distribution's clickhouse-server/clickhouse-client
# packages via apt-get (as root, or through sudo). The package does not start
# a server; mcptrail (recorder/chlocal) runs its own in a private directory.
# Elsewhere: prints how to get the official single binary and fails.
set -eu

have_server() {
	command -v clickhouse >/dev/null 2>&1 ||
		command -v clickhouse-server >/dev/null 2>&1 ||
		[ -x /usr/bin/clickhouse ] || [ -x /usr/sbin/clickhouse-server ]
}

if have_server; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-clickhouse: no apt-get here; install the official single binary instead:" >&2
	echo "  curl https://clickhouse.com/ | sh && sudo install ./clickhouse /usr/local/bin/clickhouse" >&2
	exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo -n"
	else
		echo "install-clickhouse: run as root (or install sudo): apt-get install -y clickhouse-server clickhouse-client" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when the package is not known yet (fresh
# containers ship without lists).
if ! apt-cache show clickhouse-server >/dev/null 2>&1; then
	$SUDO apt-get update -qq >/dev/null
fi
$SUDO apt-get install -y -qq --no-install-recommends clickhouse-server clickhouse-client >/dev/null

if ! have_server; then
	echo "install-clickhouse: apt-get finished but no clickhouse server binary was found" >&2
	exit 1
fi
