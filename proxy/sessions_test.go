package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`

// TestSessionCaps: beyond limits.max_sessions_per_principal a principal's
// initialize (or legacy GET /sse) gets 429, beyond limits.max_sessions
// anyone's gets 503, each with an error naming the limit; ending a session
// makes room again. Fails before the fix: sessions were unbounded.
func TestSessionCaps(t *testing.T) {
	cfg := oneBackend(t)
	cfg.Auth.Tokens = append(cfg.Auth.Tokens, config.Token{Name: "bob", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"*"}})
	cfg.Limits = config.Limits{MaxSessions: 3, MaxSessionsPerPrincipal: 2}
	e := startGateway(t, cfg)
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	bob := map[string]string{"Authorization": "Bearer bob-token"}

	initialize := func(hdr map[string]string) (int, string, string) {
		resp, b := post(t, e.url, initBody, hdr)
		return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(b)
	}
	var aliceSIDs []string
	for range 2 {
		status, sid, b := initialize(alice)
		if status != http.StatusOK {
			t.Fatalf("alice's initialize within the caps: %d %s", status, b)
		}
		aliceSIDs = append(aliceSIDs, sid)
	}
	if status, _, b := initialize(alice); status != http.StatusTooManyRequests || !strings.Contains(b, "limits.max_sessions_per_principal") {
		t.Errorf("alice's third session: %d %s, want 429 naming limits.max_sessions_per_principal", status, b)
	}
	req, _ := http.NewRequest(http.MethodGet, e.url+"/sse", nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("alice's legacy SSE session over her cap: %d %s, want 429", resp.StatusCode, b)
		}
	}
	if status, _, b := initialize(bob); status != http.StatusOK {
		t.Fatalf("bob's first session: %d %s", status, b)
	}
	if status, _, b := initialize(bob); status != http.StatusServiceUnavailable || !strings.Contains(b, "limits.max_sessions") {
		t.Errorf("a fourth session on the gateway: %d %s, want 503 naming limits.max_sessions", status, b)
	}
	if got := e.gw.Status().Sessions; got != 3 {
		t.Errorf("sessions = %d, want 3", got)
	}
	// Ending one makes room.
	del, _ := http.NewRequest(http.MethodDelete, e.url+"/mcp", nil)
	del.Header.Set("Authorization", "Bearer alice-token")
	del.Header.Set("Mcp-Session-Id", aliceSIDs[0])
	resp, err := http.DefaultClient.Do(del)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if status, _, b := initialize(bob); status != http.StatusOK {
		t.Errorf("bob's session after alice ended one: %d %s", status, b)
	}
}

// TestIdleSessionWithStreamExpires: a session with no request for
// limits.session_idle_timeout ends even while its GET stream is open (the
// stream is closed and the id is then unknown). Fails before the fix: an
// open stream kept a session forever.
func TestIdleSessionWithStreamExpires(t *testing.T) {
	cfg := oneBackend(t)
	cfg.Limits = config.Limits{SessionIdleTimeout: time.Second} // long enough for a loaded machine to open the stream first
	e := startGateway(t, cfg)
	hdr := map[string]string{"Authorization": "Bearer alice-token"}
	sid := initSession(t, e.url, hdr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // bounds a broken gateway only
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %d", resp.StatusCode)
	}
	// The gateway ends the stream when it expires the session.
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
	}
	if ctx.Err() != nil {
		t.Fatal("the idle session's GET stream was never closed")
	}
	r2, b := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, map[string]string{"Authorization": "Bearer alice-token", "Mcp-Session-Id": sid})
	if r2.StatusCode != http.StatusNotFound {
		t.Errorf("POST on the expired session: %d %s, want 404", r2.StatusCode, b)
	}
	if got := e.gw.Status().Sessions; got != 0 {
		t.Errorf("sessions = %d after expiry, want 0", got)
	}
}

// TestListenStreamCaps: subscriptions/listen streams (2026-07-28) are
// capped like sessions: beyond limits.max_sessions_per_principal a
// principal's next listen is refused with an error naming the limit, and
// one that ends makes room. Fails before the fix: listens were unbounded.
func TestListenStreamCaps(t *testing.T) {
	cfg := oneBackend(t)
	cfg.Limits = config.Limits{MaxSessions: 10, MaxSessionsPerPrincipal: 2}
	e := startGateway(t, cfg)
	open := func(id int) (*http.Response, context.CancelFunc) {
		body := modernBody(id, "subscriptions/listen", map[string]any{"notifications": map[string]any{"toolsListChanged": true}}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/mcp", strings.NewReader(body))
		for k, v := range modernHeaders("subscriptions/listen", "") {
			req.Header.Set(k, v)
		}
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, cancel
	}
	firstEvent := func(resp *http.Response) string {
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			b, _ := io.ReadAll(resp.Body) // a plain JSON answer
			return string(b)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				return d
			}
		}
		return ""
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range 2 {
		resp, cancel := open(i + 1)
		cancels = append(cancels, cancel)
		if ev := firstEvent(resp); !strings.Contains(ev, "notifications/subscriptions/acknowledged") {
			t.Fatalf("listen %d within the cap: first event %.200s, want the acknowledgement", i+1, ev)
		}
	}
	resp, cancel := open(3)
	ev := firstEvent(resp)
	cancel()
	if !strings.Contains(ev, `"error"`) || !strings.Contains(ev, "limits.max_sessions_per_principal") {
		t.Errorf("third listen over the cap: %.300s, want an error naming limits.max_sessions_per_principal", ev)
	}
	// Ending one makes room.
	cancels[0]()
	waitFor(t, "the ended listen to be released", func() bool { return e.gw.Status().Listens == 1 })
	resp, cancel = open(4)
	cancels = append(cancels, cancel)
	if ev := firstEvent(resp); !strings.Contains(ev, "notifications/subscriptions/acknowledged") {
		t.Errorf("listen after one ended: %.200s, want the acknowledgement", ev)
	}
}

// TestLegacySessionInflightCap: POST /message is answered 202 before the
// request is served, so a legacy SSE client could start requests without
// end on one session; beyond limits.max_inflight_per_session it gets 429
// (-32029, recorded) until an answer frees a place (fails before the fix:
// every POST started one more call).
func TestLegacySessionInflightCap(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.Limits.MaxInflightPerSession = 2
	e := startGateway(t, cfg)
	sse := openLegacySSE(t, e.url, nil)
	if st, _, b := sse.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`); st != http.StatusAccepted {
		t.Fatalf("initialize: %d %s", st, b)
	}
	sse.next()
	slow := `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":1,"delay_ms":600000}}}`
	for id := 2; id <= 3; id++ {
		if st, _, b := sse.post(fmt.Sprintf(slow, id)); st != http.StatusAccepted {
			t.Fatalf("slow call %d within the cap: %d %s", id, st, b)
		}
	}
	st, reqID, b := sse.post(fmt.Sprintf(slow, 4))
	var refusal struct {
		Error struct {
			Code int `json:"code"`
			Data struct {
				Limit string `json:"limit"`
			} `json:"data"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &refusal)
	if st != http.StatusTooManyRequests || refusal.Error.Code != -32029 || refusal.Error.Data.Limit != "max_inflight_per_session" {
		t.Fatalf("a third request in flight: %d %s, want 429 -32029 limit max_inflight_per_session", st, b)
	}
	waitFor(t, "the refusal recorded", func() bool { return len(e.rec.byRequest(reqID)) > 0 })
	// Notifications and answers are not requests: they still pass.
	for id := 2; id <= 3; id++ {
		if st, _, b := sse.post(fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%d}}`, id)); st != http.StatusAccepted {
			t.Fatalf("cancelling %d at the cap: %d %s", id, st, b)
		}
	}
	for range 2 {
		sse.next() // the cancelled calls' answers
	}
	if st, _, b := sse.post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"room again"}}}`); st != http.StatusAccepted {
		t.Fatalf("a request once the calls ended: %d %s, want 202", st, b)
	}
	if got := sse.next(); !strings.Contains(got, "room again") {
		t.Errorf("answer = %s, want the echo", got)
	}
}

// TestCancelMatchesEqualIDs: notifications/cancelled names the request by
// its JSON-RPC id, which JSON lets a client spell several ways (7 and 7.0,
// "7" and "\u0037"); the call is cancelled whichever spelling it uses, and
// a string never cancels a number (fails before the fix: ids were compared
// byte for byte).
func TestCancelMatchesEqualIDs(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	sse := openLegacySSE(t, e.url, nil)
	if st, _, b := sse.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`); st != http.StatusAccepted {
		t.Fatalf("initialize: %d %s", st, b)
	}
	sse.next()
	for _, tc := range []struct{ id, cancelAs string }{{`7`, `7.0`}, {`"7"`, `"\u0037"`}, {`8`, `80e-1`}} {
		if st, _, b := sse.post(`{"jsonrpc":"2.0","id":` + tc.id + `,"method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":1,"delay_ms":600000}}}`); st != http.StatusAccepted {
			t.Fatalf("slow call %s: %d %s", tc.id, st, b)
		}
		// A string that reads like the number is another id: not cancelled.
		if tc.id[0] != '"' {
			sse.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"` + tc.id + `","reason":"wrong"}}`)
		}
		sse.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + tc.cancelAs + `,"reason":"by equal id"}}`)
		got := sse.next()
		if !strings.Contains(got, "cancelled: by equal id") {
			t.Errorf("call %s cancelled as %s: answer %s, want it cancelled for the reason given", tc.id, tc.cancelAs, got)
		}
	}
}
