#!/usr/bin/env bash
# Installs everything mcptrail's run and test commands need on a fresh
# Debian machine with Go: the local ClickHouse server, the pinned Node MCP
# peers (npm ci from testdata/npm/package-lock.json) and the Go modules.
# Idempotent; safe to run on every `make run` / `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

sh scripts/install-clickhouse.sh

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	say "installing Node.js and npm (Debian packages)"
	export DEBIAN_FRONTEND=noninteractive
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq nodejs npm >/dev/null
fi

# Prometheus: TestE2EMetrics evaluates every query of the metrics dashboard
# in a real Prometheus scraping the gateway (Debian's package; its service is
# not started here, the test runs its own server on a free port).
if ! command -v prometheus >/dev/null 2>&1; then
	say "installing Prometheus (Debian package)"
	export DEBIAN_FRONTEND=noninteractive
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# ZooKeeper: the ClickHouse-cluster tests (chtest.StartCluster) run it
# standalone from a temp dir with their own zoo.cfg (java -cp
# /usr/share/java/zookeeper.jar ...); the package's service is not used.
# It pulls a JRE (default-jre, about 200 MB installed).
if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
	say "installing ZooKeeper (Debian package)"
	export DEBIAN_FRONTEND=noninteractive
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
fi

# Redis and HAProxy: the replica tests run two gateways behind HAProxy
# sharing rate limits and the cache through Redis (Debian's packages; their
# services are not started here, the tests run their own on free ports).
if ! command -v redis-server >/dev/null 2>&1 || ! { command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; }; then
	say "installing redis-server and haproxy (Debian packages)"
	export DEBIAN_FRONTEND=noninteractive
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends redis-server haproxy >/dev/null
fi

# Chromium: TestConsoleBrowser drives the web console in Debian's chromium,
# headless, with playwright-core (npm, pinned below); /usr/bin/chromium.
if [ ! -x /usr/bin/chromium ]; then
	say "installing Chromium (Debian package)"
	export DEBIAN_FRONTEND=noninteractive
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# npm ci only when the lock changed since the last install.
stamp=testdata/npm/node_modules/.mcptrail-lock.sha256
want=$(sha256sum testdata/npm/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	say "installing the Node MCP peers (npm ci)"
	# Twice at most: an npm ci racing another one on the shared npm cache
	# was seen to exit 0 without a node_modules.
	for attempt in 1 2; do
		if npm ci --prefix testdata/npm --no-audit --no-fund --loglevel=error >/dev/null &&
			[ -d testdata/npm/node_modules ]; then
			break
		fi
		[ "$attempt" = 2 ] && { say "npm ci failed"; exit 1; }
		say "npm ci left no node_modules; again"
	done
	echo "$want" > "$stamp"
fi

go mod download

# Go programs the chart tests run (deploy/helm): helm and kubeconform, at
# pinned versions, installed with go install when missing or different.
gobin=$(go env GOBIN); [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
goinstall() { # package module version
	bin="$gobin/$(basename "$1")"
	if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$2[[:space:]]+$3([[:space:]]|$)"; then
		return
	fi
	say "installing $1@$3 (go install; helm takes a few minutes to build)"
	go install "$1@$3"
}
goinstall helm.sh/helm/v4/cmd/helm helm.sh/helm/v4 v4.3.2
goinstall github.com/yannh/kubeconform/cmd/kubeconform github.com/yannh/kubeconform v0.8.0

# Ory Hydra: the real OAuth 2.1 / OIDC provider TestOAuthHydra gets JWT
# access tokens from (client credentials, in-memory store). Its go.mod has
# replace directives, so `go install …@version` refuses it: it is built from
# the pinned tool module scripts/tools/hydra (go.mod/go.sum), with SQLite
# (cgo) for its in-memory store. Skipped when that version is installed.
hydra_version=v2.3.0
if ! { [ -x "$gobin/hydra" ] && go version -m "$gobin/hydra" 2>/dev/null | grep -Eq "github.com/ory/hydra/v2[[:space:]]+$hydra_version([[:space:]]|$)"; }; then
	if ! command -v gcc >/dev/null 2>&1; then
		say "installing gcc (Debian package; Hydra's SQLite needs cgo)"
		export DEBIAN_FRONTEND=noninteractive
		SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
		$SUDO apt-get update -qq
		$SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
	fi
	say "building Ory Hydra $hydra_version (a few minutes)"
	(cd scripts/tools/hydra && CGO_ENABLED=1 go build -tags sqlite,sqlite_omit_load_extension -o "$gobin/hydra" github.com/ory/hydra/v2)
fi
