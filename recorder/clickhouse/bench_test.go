package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
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

// BenchmarkWriteBatch inserts 10k-event batches into the local server.
func BenchmarkWriteBatch(b *testing.B) {
	ctx := context.Background()
	s := migratedStore(b)
	const batch = 10000
	base := time.Now().Add(-time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		evs := benchEvents(fmt.Sprintf("b%d", i), batch, base)
		b.StartTimer()
		if err := s.WriteBatch(ctx, fmt.Sprintf("tok-%d", i), evs); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if n := count(b, s, "SELECT count() FROM "+s.cfg.Database+".hops"); n != uint64(i*batch) {
		b.Fatalf("hops rows = %d, want %d", n, i*batch)
	}
	b.ReportMetric(float64(i*batch)/b.Elapsed().Seconds(), "events/s")
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
