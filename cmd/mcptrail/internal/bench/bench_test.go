package bench

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunAgainstTestbackend(t *testing.T) {
	direct := testbackend.New(testbackend.Options{})
	other := testbackend.New(testbackend.Options{Variant: "v2"})
	ts1 := httptest.NewServer(direct.HTTPHandler())
	defer ts1.Close()
	ts2 := httptest.NewServer(other.HTTPHandler())
	defer ts2.Close()

	var out bytes.Buffer
	results, err := Run(context.Background(), Config{
		Targets:     []Target{{Name: "direct", URL: ts1.URL + "/mcp"}, {Name: "gateway", URL: ts2.URL + "/mcp"}},
		Concurrency: []int{1, 4},
		Duration:    300 * time.Millisecond,
	}, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("report:\n%s", out.String())
	if len(results) != 4 {
		t.Fatalf("got %d results, want 4 (2 targets x 2 levels)", len(results))
	}
	callsBy := map[string]int64{}
	for _, r := range results {
		if r.Errors != 0 || r.Calls == 0 {
			t.Errorf("%s c=%d: calls %d errors %d (%s), want calls > 0 and no errors", r.Target, r.Concurrency, r.Calls, r.Errors, r.FirstError)
		}
		if !(0 < r.P50 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max) {
			t.Errorf("%s c=%d: percentiles not ordered: p50 %s p90 %s p99 %s max %s", r.Target, r.Concurrency, r.P50, r.P90, r.P99, r.Max)
		}
		if r.CallsPerSec <= 0 || r.Elapsed < 300*time.Millisecond {
			t.Errorf("%s c=%d: calls/s %f elapsed %s", r.Target, r.Concurrency, r.CallsPerSec, r.Elapsed)
		}
		callsBy[r.Target] += r.Calls
	}
	// Every verified call reached the backend exactly once, each with its own payload.
	for name, b := range map[string]*testbackend.Backend{"direct": direct, "gateway": other} {
		var n, inits int64
		sessions := map[string]bool{}
		for _, s := range b.Seen() {
			switch s.Method {
			case "tools/call":
				n++
				sessions[s.SessionID] = true
			case "initialize":
				inits++
			}
		}
		if n != callsBy[name] {
			t.Errorf("%s backend saw %d tools/call, bench counted %d", name, n, callsBy[name])
		}
		if inits != 1+4 || len(sessions) > 1+4 || sessions[""] {
			t.Errorf("%s backend saw %d initialize and calls in sessions %v, want 5 initialize and calls only in sessions", name, inits, sessions)
		}
	}
	for _, want := range []string{"target", "calls/s", "direct", "gateway/direct c=1: throughput x", "gateway/direct c=4"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunCountsErrors(t *testing.T) {
	backend := testbackend.New(testbackend.Options{})
	tests := []struct {
		name    string
		handler http.Handler
		tool    string
		wantErr string
	}{
		{"unauthorized", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no token", http.StatusUnauthorized)
		}), "echo", "initializing: HTTP 401: no token"},
		{"tool error", backend.HTTPHandler(), "fail", "tool error: fail: this tool always fails"},
		{"unknown tool", backend.HTTPHandler(), "nope", "JSON-RPC error"},
		{"payload lost", backend.HTTPHandler(), "now", "payload did not come back"},
		{"not MCP", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>")
		}), "echo", `unexpected Content-Type "text/html"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			results, err := Run(context.Background(), Config{
				// 1ns: the run ends before any call could start; each session
				// still makes its one call, so the error is seen whatever the load.
				Targets: []Target{{URL: ts.URL}}, Concurrency: []int{2}, Duration: time.Nanosecond, Tool: tt.tool,
			}, io.Discard)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			r := results[0]
			if r.Calls != 0 || r.Errors == 0 || !strings.Contains(r.FirstError, tt.wantErr) {
				t.Errorf("calls %d errors %d first error %q, want 0 calls, errors, and %q", r.Calls, r.Errors, r.FirstError, tt.wantErr)
			}
		})
	}
}

func TestRunSendsToken(t *testing.T) {
	backend := testbackend.New(testbackend.Options{}).HTTPHandler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	defer ts.Close()
	results, err := Run(context.Background(), Config{
		Targets: []Target{{URL: ts.URL}}, Concurrency: []int{1}, Duration: 50 * time.Millisecond, Token: "s3cret",
	}, io.Discard)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r := results[0]; r.Calls == 0 || r.Errors != 0 {
		t.Errorf("calls %d errors %d (%s), want calls and no errors", r.Calls, r.Errors, r.FirstError)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []Target
		conc    []int
		wantErr string
	}{
		{"named targets", []string{"--url", "direct=http://a/mcp", "--url", "gw=http://b/mcp", "-c", "2,16"},
			[]Target{{Name: "direct", URL: "http://a/mcp"}, {Name: "gw", URL: "http://b/mcp"}}, []int{2, 16}, ""},
		{"bare url", []string{"--url", "http://a:9/mcp?x=1"}, []Target{{Name: "target1", URL: "http://a:9/mcp?x=1"}}, []int{1, 8, 64}, ""},
		{"no url", nil, nil, nil, "at least one --url"},
		{"bad level", []string{"--url", "http://a", "-c", "1,x"}, nil, nil, `-c "1,x"`},
		{"zero level", []string{"--url", "http://a", "-c", "0"}, nil, nil, "-c 0"},
		{"not http", []string{"--url", "ftp://a"}, nil, nil, "want an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseArgs(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseArgs(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.args, err)
			}
			if !equal(cfg.Targets, tt.want) || !equal(cfg.Concurrency, tt.conc) {
				t.Errorf("ParseArgs(%q) = %v %v, want %v %v", tt.args, cfg.Targets, cfg.Concurrency, tt.want, tt.conc)
			}
		})
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHistogram(t *testing.T) {
	tests := []struct {
		name    string
		values  []time.Duration
		q       float64
		want    time.Duration
		maxRel  float64
		wantMax time.Duration
	}{
		{"single", []time.Duration{1500 * time.Microsecond}, 0.5, 1500 * time.Microsecond, 0, 1500 * time.Microsecond},
		{"small exact", []time.Duration{1, 2, 3, 4}, 0.5, 2, 0, 4},
		{"p99 of 1..100ms", seq(100, time.Millisecond), 0.99, 99 * time.Millisecond, 1.0 / 32, 100 * time.Millisecond},
		{"p50 of 1..100ms", seq(100, time.Millisecond), 0.5, 50 * time.Millisecond, 1.0 / 32, 100 * time.Millisecond},
		{"p100 is max", seq(1000, time.Microsecond), 1, 1000 * time.Microsecond, 0, 1000 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			got := h.quantile(tt.q)
			if rel := float64(got-tt.want) / float64(tt.want); rel < 0 || rel > tt.maxRel {
				t.Errorf("quantile(%v) = %s, want %s (+%.1f%%)", tt.q, got, tt.want, tt.maxRel*100)
			}
			if time.Duration(h.max) != tt.wantMax {
				t.Errorf("max = %s, want %s", time.Duration(h.max), tt.wantMax)
			}
		})
	}
}

func seq(n int, unit time.Duration) []time.Duration {
	var out []time.Duration
	for i := 1; i <= n; i++ {
		out = append(out, time.Duration(i)*unit)
	}
	return out
}

// Every value lands in a bucket whose range contains it, and buckets are
// contiguous and increasing.
func TestBucketsContainTheirValues(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := int64(r.Uint64() >> (1 + r.UintN(63)))
		i := bucketOf(v)
		lo := int64(0)
		if i > 0 {
			lo = bucketUpper(i-1) + 1
		}
		if v < lo || v > bucketUpper(i) {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, bucketUpper(i))
		}
		if hi := bucketUpper(i); v >= 64 && float64(hi-lo+1)/float64(lo) > 1.0/32+1e-9 {
			t.Fatalf("bucket %d = [%d, %d] wider than 1/32 of its base", i, lo, hi)
		}
	}
}

func TestReadSSEResponse(t *testing.T) {
	tests := []struct {
		name, in, wantID, wantErr string
	}{
		{"single", "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n", "7", ""},
		{"after notification", "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
			"id: e1\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}\n\n", `"a"`, ""},
		{"multi-line data", "data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":3,\"result\":{}}\n\n", "3", ""},
		{"no blank line at end", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", "1", ""},
		{"comments and crlf-free keepalive", ": ping\n\ndata: {\"id\":2,\"result\":1}\n\n", "2", ""},
		{"priming event first", "id: p0\ndata: \n\nid: p1\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n", "8", ""},
		{"ends early", "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n", "", "ended without a response"},
		{"bad json", "data: {nope\n\n", "", "decoding SSE event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readSSEResponse(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readSSEResponse error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(r.ID) != tt.wantID {
				t.Errorf("readSSEResponse = id %s, %v; want id %s", r.ID, err, tt.wantID)
			}
		})
	}
}

func FuzzReadSSEResponse(f *testing.F) {
	f.Add("data: {\"id\":1,\"result\":{}}\n\n")
	f.Add("data: {\"method\":\"m\"}\n\ndata: {\"id\":\"x\",\"error\":{\"code\":1,\"message\":\"m\"}}\n\n")
	f.Add(": comment\nevent: e\nid: 1\ndata:\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := readSSEResponse(strings.NewReader(in))
		if err == nil && (len(r.ID) == 0 || r.Method != "") {
			t.Fatalf("accepted a non-response: %+v", r)
		}
	})
}

func TestMakePayloadUnique(t *testing.T) {
	seen := map[string]bool{}
	for w := range 3 {
		for s := range 1000 {
			p := makePayload(w, s, 200)
			if len(p) != 200 || seen[p] {
				t.Fatalf("makePayload(%d, %d) = %q (len %d, dup %v)", w, s, p, len(p), seen[p])
			}
			seen[p] = true
		}
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h histogram
	d := time.Duration(0)
	for b.Loop() {
		d += 997
		h.record(d % (50 * time.Millisecond))
	}
	if h.n == 0 {
		b.Fatal("nothing recorded")
	}
}

// BenchmarkCallTool measures one verified echo round trip against the
// in-process testbackend: the floor any gateway number is compared with.
func BenchmarkCallTool(b *testing.B) {
	ts := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
	defer ts.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	s := &session{hc: &http.Client{Transport: tr}, url: ts.URL, protocol: "2025-11-25"}
	ctx := context.Background()
	if err := s.initialize(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.close(ctx)
	b.ReportAllocs()
	var buf []byte
	n := 0
	for b.Loop() {
		var err error
		buf, err = s.callTool(ctx, buf[:0], "echo", makePayload(0, n, 200))
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n == 0 {
		b.Fatal("no calls")
	}
}
