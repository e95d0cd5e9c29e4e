package proxy_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

const (
	sessKey1 = "1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	sessKey2 = "2 HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo="
)

// replicaPair starts two gateways in front of one backend, each with its
// own session keys file, sharing a clock the test moves.
func replicaPair(t *testing.T, keysA, keysB string, clock *atomic.Int64, opts ...func(*proxy.Options)) (a, b *env, readerB *sdkmetric.ManualReader) {
	t.Helper()
	readerB = sdkmetric.NewManualReader()
	cfg := oneBackend(t)
	cfg.Auth.Tokens = append(cfg.Auth.Tokens, config.Token{Name: "bob", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"*"}})
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	start := func(keys string, measured bool) *env {
		c := *cfg
		c.Sessions.Lifetime = time.Hour
		if keys != "" {
			c.Sessions.KeysFile = filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(c.Sessions.KeysFile, []byte(keys), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return startGateway(t, &c, append([]func(*proxy.Options){func(o *proxy.Options) {
			o.Now = now
			if measured {
				o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(readerB))
			}
		}}, opts...)...)
	}
	return start(keysA, false), start(keysB, true), readerB
}

func sessionHeaders(token, sid string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
}

// TestSealedSessionMovesBetweenReplicas: with shared session keys, a
// session opened on one replica is served by another that never saw it,
// with the client's negotiated version and info, and is recorded under one
// short id on both. Fails before the fix: the second replica answered 404.
func TestSealedSessionMovesBetweenReplicas(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	a, b, readerB := replicaPair(t, sessKey1, sessKey2+"\n"+sessKey1, &clock) // b rotated: seals with 2, opens 1
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	sid := initSession(t, a.url, alice)
	if !strings.HasPrefix(sid, "m1") {
		t.Fatalf("session id %q is not sealed", sid)
	}
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"hi"}}}`
	for i, e := range []*env{b, a, b} {
		resp, body := post(t, e.url, call, sessionHeaders("alice-token", sid))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hi") {
			t.Fatalf("call %d: %d %s, want 200 with the echo", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Mcp-Session-Id"); got != sid {
			t.Errorf("call %d: answered with session id %q, want the one sent", i, got)
		}
	}
	if got := b.gw.Status().SessionsResumed; got != 1 {
		t.Errorf("replica b resumed %d sessions, want 1", got)
	}
	if got := a.gw.Status().SessionsResumed; got != 0 {
		t.Errorf("replica a resumed %d sessions, want 0", got)
	}
	if got := collect(t, readerB, "mcptrail.sessions.resumed")[""]; got != 1 {
		t.Errorf("replica b's mcptrail.sessions.resumed = %v, want 1", got)
	}
	// Both replicas record the session by its public handle, with the
	// client's info that b only knows from the sealed id.
	var handle string
	for _, e := range []*env{a, b} {
		for _, ev := range e.rec.snapshot() {
			if ev.Method != "tools/call" || ev.Hop != recorder.HopInbound {
				continue
			}
			if len(ev.SessionID) != 32 || strings.Contains(sid, ev.SessionID) {
				t.Errorf("recorded session id %q: want the 32-hex handle, not the token", ev.SessionID)
			}
			if handle == "" {
				handle = ev.SessionID
			}
			if ev.SessionID != handle || ev.ClientName != "raw" || ev.ProtocolVersion != "2025-06-18" {
				t.Errorf("recorded session %q client %q version %q, want %q raw 2025-06-18", ev.SessionID, ev.ClientName, ev.ProtocolVersion, handle)
			}
		}
	}
	if handle == "" {
		t.Fatal("no tools/call recorded")
	}

	// A session b opens (sealed with key 2) is refused by a, which holds
	// key 1 only, like any unknown session.
	sidB := initSession(t, b.url, alice)
	if resp, body := post(t, a.url, call, sessionHeaders("alice-token", sidB)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a session sealed with a key a lacks: %d %s, want 404", resp.StatusCode, body)
	}
}

// TestSealedSessionRefusals: what an attacker can do with a sealed id —
// present it as another principal, alter it, use it past its sealed
// expiry, reuse it after DELETE on that replica — all get 404, and the
// other principal's attempt is recorded as a session-owner denial.
func TestSealedSessionRefusals(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	a, b, _ := replicaPair(t, sessKey1, sessKey1, &clock)
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	sid := initSession(t, a.url, alice)
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`

	for _, e := range []*env{a, b} {
		if resp, body := post(t, e.url, list, sessionHeaders("bob-token", sid)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob with alice's sealed id: %d %s, want 404", resp.StatusCode, body)
		}
		denied := false
		for _, ev := range e.rec.snapshot() {
			if ev.AuthRule == "session-owner" && ev.Principal == "bob" && len(ev.SessionID) == 32 {
				denied = true
			}
		}
		if !denied {
			t.Error("bob's attempt is not recorded as a session-owner denial under the handle")
		}
	}
	// Alter one character anywhere after the prefix.
	for _, i := range []int{2, 10, 30, len(sid) / 2, len(sid) - 2} {
		c := byte('A')
		if sid[i] == 'A' {
			c = 'B'
		}
		bad := sid[:i] + string(c) + sid[i+1:]
		if resp, body := post(t, b.url, list, sessionHeaders("alice-token", bad)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("altered at %d: %d %s, want 404", i, resp.StatusCode, body)
		}
	}
	// DELETE on b ends it on b.
	if resp, _ := post(t, b.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice on b: %d", resp.StatusCode)
	}
	if status := deleteSession(t, b.url, sessionHeaders("alice-token", sid)); status != http.StatusNoContent {
		t.Fatalf("DELETE on b: %d, want 204", status)
	}
	if resp, body := post(t, b.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after DELETE on b: %d %s, want 404", resp.StatusCode, body)
	}
	// Past the sealed lifetime (1h) the id is refused everywhere, also by
	// a, which holds the session and saw it used a moment ago.
	sid2 := initSession(t, a.url, alice)
	if resp, _ := post(t, a.url, list, sessionHeaders("alice-token", sid2)); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh session: %d", resp.StatusCode)
	}
	clock.Add(int64(time.Hour + time.Second))
	for name, e := range map[string]*env{"a": a, "b": b} {
		if resp, body := post(t, e.url, list, sessionHeaders("alice-token", sid2)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s past the sealed expiry: %d %s, want 404", name, resp.StatusCode, body)
		}
	}
}

// TestUnsealedSessionsStayLocal: without keys, ids are random and another
// replica does not know them (the default, as before).
func TestUnsealedSessionsStayLocal(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	a, b, _ := replicaPair(t, "", sessKey1, &clock)
	sid := initSession(t, a.url, map[string]string{"Authorization": "Bearer alice-token"})
	if len(sid) != 32 {
		t.Errorf("unsealed session id %q, want 32 hex", sid)
	}
	if resp, _ := post(t, b.url, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another replica with an unsealed id: %d, want 404", resp.StatusCode)
	}
	var st proxy.Status
	b2, _ := json.Marshal(a.gw.Status())
	_ = json.Unmarshal(b2, &st)
	if st.SessionsResumed != 0 {
		t.Errorf("resumed = %d", st.SessionsResumed)
	}
}

func (m *memRecorder) snapshot() []recorder.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]recorder.Event(nil), m.events...)
}

// deleteSession sends DELETE /mcp with hdr and returns the status.
func deleteSession(t *testing.T, url string, hdr map[string]string) int {
	t.Helper()
	del, _ := http.NewRequest(http.MethodDelete, url+"/mcp", nil)
	for k, v := range hdr {
		del.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(del)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSealedSessionIDNotLogged: a sealed session id is a bearer credential:
// through its whole life (created, resumed on another replica, used with a
// client answer nobody waits for, presented by another principal, DELETEd,
// expired) neither replica's log nor any recorded event carries it; both
// name it by its handle. Fails before the fix: "answer to an unknown
// server request" logged the id.
func TestSealedSessionIDNotLogged(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	logs := &syncWriter{w: &bytes.Buffer{}}
	a, b, _ := replicaPair(t, sessKey1, sessKey1, &clock, func(o *proxy.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	sid := initSession(t, a.url, alice)
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	for _, e := range []*env{a, b} { // used on a, resumed on b
		if resp, _ := post(t, e.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusOK {
			t.Fatalf("tools/list: %d", resp.StatusCode)
		}
		// An answer to a server request nobody sent.
		if resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":"nobody","result":{}}`, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("client answer: %d", resp.StatusCode)
		}
		if resp, _ := post(t, e.url, list, sessionHeaders("bob-token", sid)); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("bob with alice's id: %d", resp.StatusCode)
		}
	}
	if status := deleteSession(t, b.url, sessionHeaders("alice-token", sid)); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d", status)
	}
	post(t, b.url, list, sessionHeaders("alice-token", sid))
	sid2 := initSession(t, a.url, alice)
	clock.Add(int64(time.Hour + time.Second))
	for _, e := range []*env{a, b} {
		post(t, e.url, list, sessionHeaders("alice-token", sid2))
	}
	for _, id := range []string{sid, sid2} {
		secret := id[len(id)-32:] // any long stretch of the sealed id will do
		if out := logs.String(); strings.Contains(out, secret) {
			t.Errorf("the log carries the sealed session id:\n%s", out)
		}
		for _, e := range []*env{a, b} {
			for _, ev := range e.rec.snapshot() {
				if j, _ := json.Marshal(ev); strings.Contains(string(j), secret) {
					t.Errorf("a recorded event carries the sealed session id: %s", j)
				}
			}
		}
	}
}
