package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// benchGateway is a gateway in front of an in-process test backend.
func benchGateway(b *testing.B, rec proxy.Recorder, red proxy.Redactor, configure ...func(*config.Config)) (gwURL, sid string, stop func()) {
	b.Helper()
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	cfg := &config.Config{NamespaceSeparator: ".", MaxBodyBytes: 4 << 20, Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second}}}
	for _, f := range configure {
		f(cfg)
	}
	opts := proxy.Options{Config: cfg, HealthInterval: time.Minute}
	if rec != nil {
		opts.Recorder, opts.Redactor, opts.DeferRedactionBytes = rec, red, 8<<10
	}
	gw, err := proxy.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	_ = gw.Start(context.Background())
	gs := httptest.NewServer(gw.Handler())
	deadline := time.Now().Add(10 * time.Second)
	for !gw.Backend("alpha").Ready() {
		if time.Now().After(deadline) {
			b.Fatal("backend not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", gs.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	return gs.URL, resp.Header.Get("Mcp-Session-Id"), func() {
		gs.Close()
		_ = gw.Shutdown(context.Background())
		hs.Close()
	}
}

// BenchmarkToolsCall is one full tools/call through the gateway to an
// in-process backend over streamable HTTP: recording off; recording on into
// a recorder that discards (the gateway's own cost of building hop events);
// and recording on into the real pipeline (queue, redaction in the spooler
// goroutine, checksummed spool on disk, a writer that discards), which is
// what recording costs a call short of ClickHouse.
func BenchmarkToolsCall(b *testing.B) {
	for _, mode := range []string{"record-off", "record-discard", "record-pipeline"} {
		b.Run(mode, func(b *testing.B) {
			var rec proxy.Recorder
			var red proxy.Redactor = fakeRedactor{}
			switch mode {
			case "record-discard":
				rec = discardRecorder{}
			case "record-pipeline":
				r, err := redact.New(redact.Config{}, []byte("bench-key"))
				if err != nil {
					b.Fatal(err)
				}
				red = r
				p, err := recorder.NewPipeline(recorder.Config{
					Dir:     b.TempDir(),
					Prepare: func(e *recorder.Event) { proxy.RedactEvent(r, e) },
				}, recorder.Discard{}, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				defer func() {
					_ = p.Shutdown(context.Background())
					if st := p.Stats(); st.Dropped != 0 {
						b.Errorf("pipeline dropped %d events", st.Dropped)
					}
				}()
				rec = p
			}
			url, sid, stop := benchGateway(b, rec, red)
			defer stop()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			payload := strings.Repeat("p", 200)
			b.ReportAllocs()
			cpu0 := processCPU(b)
			i := 0
			for b.Loop() {
				i++
				msg := "m" + strconv.Itoa(i) + payload
				body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"` + msg + `"}}}`
				req, _ := http.NewRequest("POST", url+"/mcp", strings.NewReader(body))
				req.Header.Set("Mcp-Session-Id", sid)
				req.Header.Set("Accept", "application/json, text/event-stream")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Contains(out, []byte(msg)) {
					b.Fatalf("echo lost: %s", out)
				}
			}
			// CPU per call (client, gateway, backend and recorder, all in
			// this process) moves less than wall time on a shared machine.
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(i), "cpu-µs/op")
		})
	}
}

// processCPU is the user+system CPU this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discardRecorder struct{}

func (discardRecorder) Record(*recorder.Event) error { return nil }

// FuzzHandler throws arbitrary bodies at /mcp within a session: every answer
// is a well-formed HTTP response, JSON bodies parse, and the gateway keeps
// serving.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"hi"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha.nope"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"test://static/1"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","id":"x","result":{}}`,
		`{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"alpha.greet","arguments":{"name":"a"}}}`,
		`{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"alpha.greet"},"argument":{"name":"name","value":"a"}}}`,
		`{"jsonrpc":"2.0",`, `[]`, `{"jsonrpc":"2.0","id":{},"method":"x"}`,
	} {
		f.Add([]byte(s))
	}
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	defer hs.Close()
	cfg := &config.Config{NamespaceSeparator: ".", MaxBodyBytes: 1 << 16, Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 2 * time.Second}}}
	gw, err := proxy.New(proxy.Options{Config: cfg, Recorder: &memRecorder{}, Redactor: fakeRedactor{}})
	if err != nil {
		f.Fatal(err)
	}
	_ = gw.Start(context.Background())
	defer func() { _ = gw.Shutdown(context.Background()) }()
	for deadline := time.Now().Add(10 * time.Second); !gw.Backend("alpha").Ready(); {
		if time.Now().After(deadline) {
			f.Fatal("backend not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := gw.Handler()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("POST", "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}`)))
	sid := rr.Header().Get("Mcp-Session-Id")
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/mcp", bytes.NewReader(body))
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Accept", "application/json, text/event-stream")
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		switch rr.Code {
		case 200, 202, 400, 404, 413:
		default:
			t.Fatalf("status %d for %q", rr.Code, body)
		}
		if rr.Header().Get("X-Request-Id") == "" {
			t.Fatalf("no X-Request-Id for %q", body)
		}
		if ct := rr.Header().Get("Content-Type"); ct == "application/json" {
			if !json.Valid(rr.Body.Bytes()) {
				t.Fatalf("invalid JSON answer %q for %q", rr.Body.Bytes(), body)
			}
		}
	})
}

// BenchmarkCacheHit is a tools/call of a cached tool answered from the
// result cache, through the gateway over streamable HTTP (compare
// BenchmarkToolsCall/record-off, which goes to the backend).
func BenchmarkCacheHit(b *testing.B) {
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	defer hs.Close()
	cfg := &config.Config{NamespaceSeparator: ".", MaxBodyBytes: 4 << 20, Servers: []config.Server{{Name: "alpha", Transport: "http",
		URL: hs.URL + "/mcp", Timeout: 10 * time.Second,
		Tools: map[string]config.ToolSettings{"echo": {Cache: &config.ToolCache{TTL: time.Hour}}}}}}
	gw, err := proxy.New(proxy.Options{Config: cfg, HealthInterval: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	_ = gw.Start(context.Background())
	defer func() { _ = gw.Shutdown(context.Background()) }()
	gs := httptest.NewServer(gw.Handler())
	defer gs.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !gw.Backend("alpha").Ready() {
		if time.Now().After(deadline) {
			b.Fatal("backend not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ireq, _ := http.NewRequest("POST", gs.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}`))
	iresp, err := http.DefaultClient.Do(ireq)
	if err != nil {
		b.Fatal(err)
	}
	iresp.Body.Close()
	sid := iresp.Header.Get("Mcp-Session-Id")
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"cached"}}}`
	do := func() []byte { return benchPost(b, gs.URL, sid, body) }
	seen := tb.SeenTotal()
	do()
	if out := do(); !bytes.Contains(out, []byte(proxy.MetaCache)) {
		b.Fatalf("the second call was not answered from the cache: %s", out)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		do()
	}
	b.StopTimer()
	if n := tb.SeenTotal() - seen; n > 1 {
		b.Fatalf("the backend saw %d calls, want 1", n)
	}
}

// benchPost posts body to the gateway's /mcp in session sid and returns
// the answer.
func benchPost(b *testing.B, url, sid, body string) []byte {
	req, _ := http.NewRequest("POST", url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return out
}
