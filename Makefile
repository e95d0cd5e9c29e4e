# mcptrail — two commands on a fresh Debian machine with Go:
#   make run    the gateway with the demo config and a local ClickHouse
#   make test   install what tests need and run them all (-race)

GO ?= go

.PHONY: run test build setup bench bench-compare fuzz clean

run:
	bash scripts/run-demo.sh

test:
	bash scripts/test.sh

build:
	mkdir -p bin
	$(GO) build -o bin/mcptrail ./cmd/mcptrail

setup:
	bash scripts/setup.sh

# Direct vs gateway (recording off) vs gateway (recording on, local ClickHouse)
# in one interleaved run; prints the README's performance table.
BENCH_ROUNDS ?= 3
BENCH_DURATION ?= 5s
bench-compare:
	$(GO) build -o bin/mcptrail ./cmd/mcptrail
	./bin/mcptrail bench --compare --rounds $(BENCH_ROUNDS) -d $(BENCH_DURATION) -c 1,64

# Go benchmarks of the hot path, the recorder and ClickHouse writes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./proxy/... ./recorder/...

# A short fuzzing pass over the parsers (the seeds also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./proxy/jsonrpc
	$(GO) test -run '^$$' -fuzz FuzzHandler -fuzztime 30s ./proxy
	$(GO) test -run '^$$' -fuzz FuzzAnswerFraming -fuzztime 30s ./proxy/h1
	$(GO) test -run '^$$' -fuzz FuzzPayloadMemo -fuzztime 30s -fuzzminimizetime 10x ./recorder/redact

clean:
	rm -rf bin .mcptrail
