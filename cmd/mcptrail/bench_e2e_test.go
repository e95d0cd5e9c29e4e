package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

var fastBin struct {
	once sync.Once
	path string
	err  error
}

// benchBin is the binary built without -race, so that latencies measured
// by benchmarks are the product's, not the race detector's.
func benchBin(b testing.TB) string {
	b.Helper()
	fastBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "mcptrail-e2e-fastbin-")
		if err != nil {
			fastBin.err = err
			return
		}
		fastBin.path = filepath.Join(dir, "mcptrail")
		if out, err := exec.Command("go", "build", "-o", fastBin.path, ".").CombinedOutput(); err != nil {
			fastBin.err = fmt.Errorf("go build ./cmd/mcptrail: %v\n%s", err, out)
		}
	})
	if fastBin.err != nil {
		b.Fatal(fastBin.err)
	}
	return fastBin.path
}

func removeFastBin() {
	if fastBin.path != "" {
		_ = os.RemoveAll(filepath.Dir(fastBin.path))
	}
}

// BenchmarkE2ERecordToClickHouse measures events per second from
// Pipeline.Record to rows confirmed by the local ClickHouse: each op records
// a batch of hop events (with ~300-byte payloads) and waits for Flush.
func BenchmarkE2ERecordToClickHouse(b *testing.B) {
	for _, perOp := range []int{1000, 10000} {
		b.Run("events="+strconv.Itoa(perOp), func(b *testing.B) {
			srv := chtest.Shared(b)
			cfg := clickhouse.DefaultConfig()
			cfg.Addr, cfg.Database = []string{srv.Addr()}, chtest.Database(b, srv.Addr())
			ctx := context.Background()
			st, err := clickhouse.Open(ctx, cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			p, err := recorder.NewPipeline(recorder.Config{Dir: b.TempDir(), BatchSize: 10000, SegmentAge: 50 * time.Millisecond, QueueSize: 1 << 17}, st, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Start(ctx); err != nil {
				b.Fatal(err)
			}
			params := []byte(`{"name":"crm.search","arguments":{"query":"` + strings.Repeat("acme ", 40) + `"}}`)
			result := []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("row ", 40) + `"}]}`)
			var total uint64
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				for i := range perOp {
					req := "01JBENCH" + strconv.Itoa(int(total)+i/5)
					_ = p.Record(&recorder.Event{RequestID: req, Hop: recorder.Hop(1 + i%5), Seq: uint32(i % 5), TimeNs: time.Now().UnixNano(),
						DurationUs: 1500, Method: "tools/call", Server: "crm", Target: "crm.search", Principal: "alice",
						Params: slices.Clone(params), Result: slices.Clone(result)})
				}
				total += uint64(perOp)
				if err := p.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := p.Shutdown(sctx); err != nil {
				b.Fatal(err)
			}
			if s := p.Stats(); s.Written != total || s.Dropped != 0 {
				b.Fatalf("written %d dropped %d, want %d written", s.Written, s.Dropped, total)
			}
			conn := chConn(b, srv.Addr())
			if n := queryUint(b, conn, "SELECT count() FROM "+cfg.Database+".hops FINAL"); n != total {
				b.Fatalf("hops has %d rows, want %d", n, total)
			}
		})
	}
}

// BenchmarkE2EGatewayLatency measures one tools/call echo round trip
// straight to the backend, through the gateway without recording, and
// through the gateway recording into ClickHouse; the p50 difference is the
// latency the gateway (and recording) add. Uses the binary without -race.
func BenchmarkE2EGatewayLatency(b *testing.B) {
	srv := chtest.Shared(b)
	for _, mode := range []string{"direct", "gateway-norecord", "gateway-record"} {
		b.Run(mode, func(b *testing.B) {
			tb := newBenchEnv(b, srv.Addr())
			url := tb.TBURL
			token := ""
			if mode != "direct" {
				var args []string
				if mode == "gateway-norecord" {
					args = []string{"--no-record"}
				}
				gw := startGateway(b, tb, args...)
				url, token = gw.url+"/mcp", tb.FullToken
			}
			c := dial(b, strings.TrimSuffix(url, "/mcp"), token)
			name := "tb.echo"
			if mode == "direct" {
				name = "echo"
			}
			var lat []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				resp, _, err := c.request(context.Background(), "tools/call", map[string]any{"name": name, "arguments": map[string]any{"message": "hello"}})
				lat = append(lat, time.Since(t0))
				if err != nil || resp.Error != nil {
					b.Fatalf("echo: %v %+v", err, resp.Error)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
		})
	}
}

// newBenchEnv is newEnv for benchmarks.
func newBenchEnv(b *testing.B, chAddr string) e2eEnv {
	b.Helper()
	_, tbURL := startTestBackend(b)
	return e2eEnv{
		CHAddr: chAddr, CHDB: chtest.Database(b, chAddr), SpoolDir: b.TempDir(), TBURL: tbURL,
		DeadURL:   "http://127.0.0.1:" + strconv.Itoa(freePort(b)) + "/mcp",
		FullToken: "tok-full-bench", LimitedToken: "tok-limited-bench", HeaderSecret: "h", RedactKey: "k",
	}
}
