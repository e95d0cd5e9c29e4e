# mcptrail — two commands on a fresh Debian machine with Go:
#   make run    the gateway with the demo config and a local ClickHouse
#   make test   install what tests need and run them all (-race)

GO ?= go

.PHONY: run test build setup bench fuzz clean

run:
	bash scripts/run-demo.sh

test:
	bash scripts/test.sh

build:
	mkdir -p bin
	$(GO) build -o bin/mcptrail ./cmd/mcptrail

setup:
	bash scripts/setup.sh

# Go benchmarks of the hot path, the recorder and ClickHouse writes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./proxy/... ./recorder/...

# A short fuzzing pass over the parsers (the seeds also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./proxy/jsonrpc
	$(GO) test -run '^$$' -fuzz FuzzHandler -fuzztime 30s ./proxy

clean:
	rm -rf bin .mcptrail
