#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, then vets and
# runs every test with the race detector, fuzz seeds included.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './testdata/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 25m ./...
