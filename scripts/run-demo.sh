#!/usr/bin/env bash
# Runs the gateway with the demo config (deploy/demo.yaml): server-everything
# over stdio and over streamable HTTP, server-memory over stdio, recording to
# a local ClickHouse under ./.mcptrail. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
mkdir -p bin
go build -o bin/mcptrail ./cmd/mcptrail

export EVERYTHING_HTTP_PORT="${EVERYTHING_HTTP_PORT:-3001}"
# A fixed key for the demo only, so redacted values stay comparable across
# restarts; production sets its own secret.
export MCPTRAIL_REDACTION_KEY="${MCPTRAIL_REDACTION_KEY:-mcptrail-demo-key-not-secret}"
PORT="$EVERYTHING_HTTP_PORT" node testdata/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp \
	> .mcptrail-everything-http.log 2>&1 &
everything_pid=$!
trap 'kill $everything_pid 2>/dev/null || true' EXIT

bin/mcptrail serve --config deploy/demo.yaml "$@"
