package clickhouse

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// benchEvents makes n events of ~1 KB: requests of 4 hops, payloads on the
// inbound and response hops.
func benchEvents(prefix string, n int, base time.Time) []recorder.Event {
	params := []byte(`{"name":"crm.search","arguments":{"q":"` + strings.Repeat("a", 200) + `"}}`)
	result := []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("b", 400) + `"}]}`)
	hops := []recorder.Hop{recorder.HopInbound, recorder.HopAuth, recorder.HopUpstream, recorder.HopResponse}
	evs := make([]recorder.Event, n)
	for i := range evs {
		req := i / 4
		e := recorder.Event{
			EventID: fmt.Sprintf("%s-%08d", prefix, i), RequestID: fmt.Sprintf("%s-req-%07d", prefix, req),
			SessionID: fmt.Sprintf("%s-sess-%d", prefix, req%50), TraceID: fmt.Sprintf("%032x", req), SpanID: fmt.Sprintf("%016x", i),
			Hop: hops[i%4], Seq: uint32(i % 4), TimeNs: base.Add(time.Duration(i) * time.Millisecond).UnixNano(),
			DurationUs: 1234, Method: "tools/call", Server: "crm", Target: "crm.search", RPCID: fmt.Sprint(req),
			Principal: "alice", AuthDecision: "allowed", AuthRule: "token:alice", Backend: "crm-a", Attempt: 1,
			ClientName: "claude", ClientVersion: "1.2", ProtocolVersion: "2025-06-18", GatewayInstance: "gw-1",
			GatewayVersion: "0.1.0", ConfigHash: "abc123", Attrs: []recorder.Attr{{Key: "region", Value: "eu"}},
		}
		if e.Hop == recorder.HopInbound {
			e.Params, e.ParamsSHA256 = params, "aa"
		}
		if e.Hop == recorder.HopResponse {
			e.Result, e.ResultSHA256 = result, "bb"
		}
		evs[i] = e
	}
	return evs
}

// BenchmarkWriteBatch inserts 10k-event batches into the local server,
// on the current schema (request_index derived by the server) and on a v2
// schema (the writer sends request_index rows itself, as before 0003), and
// 50k-event batches, which the server writes for much less per event. It
// reports, besides events/s, the CPU each event costs the client (this
// process, measured around WriteBatch only) and the server (the local
// clickhouse-server process, including its background merges).
func BenchmarkWriteBatch(b *testing.B) {
	for _, bc := range []struct {
		name    string
		version uint32
		batch   int
	}{
		{"schema=latest/batch=10k", ^uint32(0), 10000},
		{"schema=v2/batch=10k", 2, 10000},
		{"schema=latest/batch=50k", ^uint32(0), 50000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, DefaultRetention())
			if err := s.migrateTo(ctx, bc.version); err != nil {
				b.Fatal(err)
			}
			benchWrite(b, s, bc.batch)
		})
	}
}

// clientCPU runs write with the benchmark's timer on (the caller stopped
// it) and returns the CPU this process spent meanwhile; the timer is
// stopped again on return.
func clientCPU(b *testing.B, write func()) time.Duration {
	c0 := selfCPU(b)
	b.StartTimer()
	write()
	b.StopTimer()
	return selfCPU(b) - c0
}

func benchWrite(b *testing.B, s *Store, batch int) {
	ctx := context.Background()
	pid := chtest.Shared(b).PID()
	base := time.Now().Add(-time.Hour)
	b.ReportAllocs()
	i := 0
	var client time.Duration
	server0 := procCPU(b, pid)
	for b.Loop() {
		b.StopTimer()
		evs := benchEvents(fmt.Sprintf("b%d", i), batch, base)
		client += clientCPU(b, func() {
			if err := s.WriteBatch(ctx, fmt.Sprintf("tok-%d", i), evs); err != nil {
				b.Fatal(err)
			}
		})
		b.StartTimer()
		i++
	}
	b.StopTimer()
	server := procCPU(b, pid) - server0
	db := s.cfg.Database
	if n := count(b, s, "SELECT count() FROM "+db+".hops"); n != uint64(i*batch) {
		b.Fatalf("hops rows = %d, want %d", n, i*batch)
	}
	// Three ids (request, trace, session) per request of 4 hops.
	if n := count(b, s, "SELECT count() FROM "+db+".request_index"); n != uint64(i*batch/4*3) {
		b.Fatalf("request_index rows = %d, want %d", n, i*batch/4*3)
	}
	events := float64(i * batch)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(client.Microseconds())/events, "client-µs/event")
	b.ReportMetric(float64(server.Microseconds())/events, "server-µs/event")
}

// BenchmarkWriteChunksPieces writes 20k-event segments with WriteChunks,
// handed over in pieces of 250 events (~256 KiB of these ~1 KB events,
// the recorder's streamed piece) or 2,000 (~2 MiB): one INSERT per table
// either way, sent a block per piece. It reports what a piece's block
// costs the client and the server per event.
func BenchmarkWriteChunksPieces(b *testing.B) {
	for _, piece := range []int{250, 2000} {
		b.Run(fmt.Sprintf("piece=%d", piece), func(b *testing.B) {
			ctx := context.Background()
			s := migratedStore(b)
			pid := chtest.Shared(b).PID()
			base := time.Now().Add(-time.Hour)
			const segment = 20000
			i := 0
			var client time.Duration
			server0 := procCPU(b, pid)
			for b.Loop() {
				b.StopTimer()
				evs := benchEvents(fmt.Sprintf("p%d", i), segment, base)
				client += clientCPU(b, func() {
					err := s.WriteChunks(ctx, fmt.Sprintf("tok-%d", i), func(yield func([]recorder.Event) error) error {
						for from := 0; from < len(evs); from += piece {
							if err := yield(evs[from:min(from+piece, len(evs))]); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				})
				b.StartTimer()
				i++
			}
			b.StopTimer()
			server := procCPU(b, pid) - server0
			if n := count(b, s, "SELECT count() FROM "+s.cfg.Database+".hops"); n != uint64(i*segment) {
				b.Fatalf("hops rows = %d, want %d", n, i*segment)
			}
			events := float64(i * segment)
			b.ReportMetric(float64(client.Microseconds())/events, "client-µs/event")
			b.ReportMetric(float64(server.Microseconds())/events, "server-µs/event")
		})
	}
}

// selfCPU is the user+system CPU time this process has used.
func selfCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user+system CPU time process pid has used, from
// /proc/pid/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(tb testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("reading server CPU time: %v", err)
	}
	// The command name (field 2) may hold spaces; fields count from ')'.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+2:])
	f := strings.Fields(rest)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("parsing /proc/%d/stat: %q", pid, rest)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkTrace reads one request (4 hops with payloads) out of 200k events.
func BenchmarkTrace(b *testing.B) {
	ctx := context.Background()
	s := migratedStore(b)
	base := time.Now().Add(-time.Hour)
	for k := range 20 {
		if err := s.WriteBatch(ctx, fmt.Sprint(k), benchEvents(fmt.Sprintf("t%d", k), 10000, base)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		evs, err := s.Trace(ctx, fmt.Sprintf("t%d-req-%07d", n%20, (n*37)%2500), WithPayloads())
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) != 4 || evs[0].Params == nil {
			b.Fatalf("Trace returned %d events (params %v), want 4 with params", len(evs), evs[0].Params != nil)
		}
		n++
	}
}

// BenchmarkInsertServerCPU inserts 10k-event batches into one table at a
// time, each into a fresh database, and reports the local server's CPU per
// event for that table alone (hops includes the request_index view it
// feeds), including the merges of the 5 s after the last insert. Run it
// with a fixed count (-benchtime 20x) so that every table gets as many
// parts to merge.
func BenchmarkInsertServerCPU(b *testing.B) {
	for _, in := range []tableInsert{
		{"hops", hopsColumns, inBlocks(appendHops)},
		{"payloads", payloadColumns, inBlocks(appendPayloads)},
		{"audit", auditRolesColumns, appendAuditRoles},
	} {
		b.Run(in.table, func(b *testing.B) {
			ctx := context.Background()
			s := migratedStore(b)
			pid := chtest.Shared(b).PID()
			base := time.Now().Add(-time.Hour)
			time.Sleep(time.Second) // the migration's own work
			server0 := procCPU(b, pid)
			i := 0
			for b.Loop() {
				b.StopTimer()
				evs := benchEvents(fmt.Sprintf("s%d", i), 10000, base)
				b.StartTimer()
				if _, err := s.insert(ctx, "", in.table, in.columns, func(yield func([]recorder.Event) error) error { return yield(evs) }, in.fill); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			time.Sleep(5 * time.Second)
			b.ReportMetric(float64((procCPU(b, pid)-server0).Microseconds())/float64(i*10000), "server-µs/event")
		})
	}
}

// BenchmarkSustainedRecording is the recorder end to end at its default
// settings (1 s or 64 MiB segments, 10k-event chunks): the pipeline
// (queue, spool on disk, writer) into the local server, recording calls of
// three hops (inbound with its arguments, upstream, response with its
// result, 200 and 400 bytes) as fast as it takes them, 20k calls per
// iteration; then everything is flushed. It reports calls/s from the first
// event to the last one written, the server's CPU per call and this
// process's (the recorder, the events built and Go's GC); it fails
// if an event is dropped, missing or stored twice.
func BenchmarkSustainedRecording(b *testing.B) {
	ctx := context.Background()
	s := migratedStore(b)
	pid := chtest.Shared(b).PID()
	p, err := recorder.NewPipeline(recorder.Config{Dir: b.TempDir()}, s, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	const calls = 20000
	hops := []recorder.Hop{recorder.HopInbound, recorder.HopUpstream, recorder.HopResponse}
	params := []byte(`{"name":"crm.search","arguments":{"q":"` + strings.Repeat("a", 200) + `"}}`)
	result := []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("b", 400) + `"}]}`)
	queueCap := recorder.DefaultQueueSize
	total := 0
	server0, client0 := procCPU(b, pid), selfCPU(b)
	start := time.Now()
	for b.Loop() {
		for c := range calls {
			if c%256 == 0 {
				// Pace to what the pipeline takes: never drop.
				for p.Stats().QueueLen > queueCap/2 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			req := fmt.Sprintf("sus-%d-%d", total, c)
			for i, h := range hops {
				e := &recorder.Event{RequestID: req, SessionID: "S1", Hop: h, Seq: uint32(i), TimeNs: time.Now().UnixNano(),
					DurationUs: 1500, Method: "tools/call", Server: "crm", Target: "crm.search", Principal: "alice",
					AuthDecision: "allowed", ClientName: "bench", GatewayInstance: "gw-1"}
				switch h {
				case recorder.HopInbound:
					e.Params = params
				case recorder.HopResponse:
					e.Result = result
				}
				if err := p.Record(e); err != nil {
					b.Fatal(err)
				}
			}
		}
		total += calls
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	server, client := procCPU(b, pid)-server0, selfCPU(b)-client0
	if st := p.Stats(); st.Written != uint64(total*3) || st.Dropped != 0 || st.Quarantined != 0 {
		b.Fatalf("stats %+v, want %d written, none dropped", st, total*3)
	}
	db := s.cfg.Database
	if n := count(b, s, "SELECT uniqExact(event_id) FROM "+db+".hops"); n != uint64(total*3) {
		b.Fatalf("%d distinct hops stored, want %d", n, total*3)
	}
	if n := count(b, s, "SELECT count() FROM "+db+".hops FINAL"); n != uint64(total*3) {
		b.Fatalf("%d hops read with FINAL, want %d", n, total*3)
	}
	if n := count(b, s, "SELECT count() FROM "+db+".audit FINAL"); n != uint64(total) {
		b.Fatalf("%d audit rows, want %d", n, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(server.Microseconds())/float64(total), "server-µs/call")
	b.ReportMetric(float64(client.Microseconds())/float64(total), "client-µs/call")
}
