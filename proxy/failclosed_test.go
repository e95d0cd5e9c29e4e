package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/recordertest"
)

// TestFailClosedAdmittedCallsKeepEveryHop drives concurrent calls through a
// gateway whose real recorder pipeline (overflow: fail_closed) fills up
// with storage down. Calls may be refused, but a call that was admitted
// (answered with its result) must have every hop recorded (no auth hop:
// no tokens are configured): before, a call
// admitted just before the spool filled lost its later hops.
func TestFailClosedAdmittedCallsKeepEveryHop(t *testing.T) {
	cfg, _ := twoBackends(t)
	w := recordertest.NewMemoryWriter()
	w.FailNext(-1, nil) // storage is down
	p, err := recorder.NewPipeline(recorder.Config{
		Dir: filepath.Join(t.TempDir(), "spool"), Overflow: recorder.OverflowFailClosed,
		QueueSize: 32, MaxDiskBytes: 24 << 10, SegmentBytes: 2 << 10, SegmentAge: 10 * time.Millisecond,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
	}, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	e := startGateway(t, cfg, func(o *proxy.Options) { o.Recorder = p })
	sid := initSession(t, e.url, nil)

	const workers, perWorker = 6, 60
	var (
		mu                sync.Mutex
		admitted, refused []string
		wg                sync.WaitGroup
	)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"m-%d-%d"}}}`, k*1000+i, k, i)
				resp, b := post(t, e.url, body, map[string]string{"Mcp-Session-Id": sid})
				id := resp.Header.Get("X-Request-Id")
				r := decodeResp(t, b)
				mu.Lock()
				switch {
				case r.Error == nil:
					admitted = append(admitted, id)
				case strings.Contains(r.Error.Message, "fail_closed"):
					refused = append(refused, id)
				default:
					t.Errorf("call answered %s", b)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(refused) == 0 || len(admitted) == 0 {
		t.Fatalf("%d admitted, %d refused: the spool never filled, the test proves nothing", len(admitted), len(refused))
	}
	w.FailNext(0, nil) // storage is back
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	hops := map[string]map[recorder.Hop]int{}
	for _, ev := range w.Events() {
		if hops[ev.RequestID] == nil {
			hops[ev.RequestID] = map[recorder.Hop]int{}
		}
		hops[ev.RequestID][ev.Hop]++
	}
	lost := 0
	for _, id := range admitted {
		h := hops[id]
		for _, want := range []recorder.Hop{recorder.HopInbound, recorder.HopUpstream, recorder.HopResponse} {
			if h[want] != 1 {
				lost++
				t.Errorf("admitted call %s: %d %s hops recorded, want 1 (hops %v)", id, h[want], want, h)
				break
			}
		}
	}
	t.Logf("%d calls admitted, %d refused, %d admitted calls missing a hop", len(admitted), len(refused), lost)
}

// statusRecorder is a recorder that reports a fixed health.
type statusRecorder struct {
	memRecorder
	st recorder.Status
}

func (s *statusRecorder) RecorderStatus() recorder.Status { return s.st }

// TestReadyzReportsRecorderHealth: /readyz and /statusz report a degraded
// recorder; whether the gateway stays ready is the recorder's
// ready_when_degraded.
func TestReadyzReportsRecorderHealth(t *testing.T) {
	tests := []struct {
		name     string
		st       recorder.Status
		wantCode int
		wantBody string
	}{
		{"healthy", recorder.Status{Healthy: true}, 200, "ready\n"},
		{"degraded, ready by choice", recorder.Status{Problems: []string{"ClickHouse not connected yet"}, ReadyWhenDegraded: true}, 200, "ready; recorder degraded: ClickHouse not connected yet\n"},
		{"degraded, not ready", recorder.Status{Problems: []string{"local ClickHouse is down"}}, 503, "recorder degraded: local ClickHouse is down\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := twoBackends(t)
			rec := &statusRecorder{st: tt.st}
			e := startGatewayUnready(t, cfg, func(o *proxy.Options) { o.Recorder = rec })
			waitFor(t, "backends ready", func() bool { return allReady(e.gw, cfg) })
			resp, err := http.Get(e.url + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body := resp.StatusCode, string(b)
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("/readyz = %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
			if st := e.gw.Status(); st.Recorder == nil || st.Recorder.Healthy != tt.st.Healthy {
				t.Errorf("/statusz recorder = %+v, want %+v", st.Recorder, tt.st)
			}
		})
	}
}
