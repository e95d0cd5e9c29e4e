package main

// The session and stream rows of the security matrix (issue 7): through
// the real binary, three principals and two backends, every endpoint that
// takes a session id refuses another principal's session as if it did not
// exist, and every such refusal is recorded as a denied auth hop.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// secEnv is what testdata/e2e/security.yaml reads from the environment.
type secEnv struct {
	CHAddr, CHDB, SpoolDir, TBURL, RedactKey string
	Tokens                                   map[string]string // principal → bearer token
}

func (e secEnv) list(t testing.TB) []string {
	return []string{
		"E2E_CH_ADDR=" + e.CHAddr, "E2E_CH_DB=" + e.CHDB, "E2E_SPOOL_DIR=" + e.SpoolDir,
		"E2E_TB_URL=" + e.TBURL, "E2E_BIN=" + mcptrailBin(t), "E2E_REDACTION_KEY=" + e.RedactKey,
		"E2E_ALICE_SHA=" + sha256hex(e.Tokens["alice"]), "E2E_BOB_SHA=" + sha256hex(e.Tokens["bob"]),
		"E2E_CAROL_SHA=" + sha256hex(e.Tokens["carol"]),
	}
}

// startSecurityGateway runs `mcptrail serve` with testdata/e2e/security.yaml.
func startSecurityGateway(t *testing.T) (*gateway, secEnv) {
	t.Helper()
	srv := chtest.Shared(t)
	_, tbURL := startTestBackend(t)
	env := secEnv{
		CHAddr: srv.Addr(), CHDB: chtest.Database(t, srv.Addr()), SpoolDir: t.TempDir(),
		TBURL: tbURL, RedactKey: randAlnum(32),
		Tokens: map[string]string{
			"alice": "tok-alice-" + randAlnum(24), "bob": "tok-bob-" + randAlnum(24), "carol": "tok-carol-" + randAlnum(24),
		},
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "gateway", env.list(t), "serve", "--config", "../../testdata/e2e/security.yaml", "--listen", addr, "--admin-listen", admin, "--log-level", "debug")
	g := &gateway{proc: p, url: "http://" + addr, admin: "http://" + admin}
	waitReady(t, p, g.url, 90*time.Second)
	return g, env
}

// rawRequest sends one request with a bearer token and returns the status
// and body. Streams (200 text/event-stream) are not read: the body is
// closed at once.
func rawRequest(t *testing.T, method, url, token string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, "(stream)"
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// legacySSE opens GET /sse and returns the session id from the endpoint
// event; the stream stays open until the test ends.
func legacySSE(t *testing.T, base, token string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := httpc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /sse: %v", err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sse: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			_, sid, ok := strings.Cut(d, "sessionId=")
			if !ok {
				t.Fatalf("GET /sse: endpoint event %q has no sessionId", d)
			}
			return sid
		}
	}
	t.Fatalf("GET /sse: no endpoint event: %v", sc.Err())
	return ""
}

// TestSecuritySessions walks owner × intruder × endpoint: a session (and
// a legacy SSE session) of one principal, used by another principal on
// GET /mcp, DELETE /mcp, POST /mcp (a call on each backend, and a
// notifications/cancelled of the owner's call in flight) and POST
// /message, gets 404 as if it did not exist; each refusal is recorded as
// a denied auth hop (rule session-owner) under the intruder's name; the
// owner's session, call and stream are untouched. A second GET stream on
// one session is refused (409), so no message is split between two.
// Fails before the fix: all of these were served.
func TestSecuritySessions(t *testing.T) {
	gw, env := startSecurityGateway(t)
	principals := []string{"alice", "bob", "carol"}
	// What each principal may call, one tool per backend where allowed.
	ownTool := map[string]string{"alice": "tb.echo", "bob": "tb.echo", "carol": "tb2.echo"}
	slowTool := map[string]string{"alice": "tb.slow", "bob": "tb.slow", "carol": "tb2.slow"}

	type attempt struct{ owner, intruder, endpoint, sid string }
	var denied []attempt
	unauthorizedPasses := 0
	for _, owner := range principals {
		for _, intruder := range principals {
			if intruder == owner {
				continue
			}
			c := dial(t, gw.url, env.Tokens[owner])
			legacySID := legacySSE(t, gw.url, env.Tokens[owner])
			tok := env.Tokens[intruder]
			ownerSID := c.sid // read once: c.post below runs concurrently and sets c.sid
			hdr := map[string]string{"Mcp-Session-Id": ownerSID}

			// The owner's slow call is in flight while the intruder tries
			// to cancel it.
			var wg sync.WaitGroup
			var slowResp rpcResponse
			var slowErr error
			c.next++
			slowID := c.next
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				slowResp, _, _, slowErr = c.post(ctx, map[string]any{"jsonrpc": "2.0", "id": slowID, "method": "tools/call",
					"params": map[string]any{"name": slowTool[owner], "arguments": map[string]any{"steps": 10, "delay_ms": 50}}})
			}()

			rows := []struct {
				endpoint, method, url string
				hdr                   map[string]string
				body                  string
			}{
				{"GET /mcp", http.MethodGet, gw.url + "/mcp", map[string]string{"Mcp-Session-Id": ownerSID, "Accept": "text/event-stream"}, ""},
				{"DELETE /mcp", http.MethodDelete, gw.url + "/mcp", hdr, ""},
				{"POST /mcp tools/call tb", http.MethodPost, gw.url + "/mcp", hdr, `{"jsonrpc":"2.0","id":901,"method":"tools/call","params":{"name":"tb.echo","arguments":{"message":"x"}}}`},
				{"POST /mcp tools/call tb2", http.MethodPost, gw.url + "/mcp", hdr, `{"jsonrpc":"2.0","id":902,"method":"tools/call","params":{"name":"tb2.echo","arguments":{"message":"x"}}}`},
				{"POST /mcp tools/list", http.MethodPost, gw.url + "/mcp", hdr, `{"jsonrpc":"2.0","id":903,"method":"tools/list"}`},
				{"POST /mcp notifications/cancelled", http.MethodPost, gw.url + "/mcp", hdr,
					fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%d,"reason":"hijack"}}`, slowID)},
				{"POST /message tools/call", http.MethodPost, gw.url + "/message?sessionId=" + legacySID, nil, `{"jsonrpc":"2.0","id":904,"method":"tools/call","params":{"name":"tb.echo","arguments":{"message":"x"}}}`},
				{"POST /message notifications/cancelled", http.MethodPost, gw.url + "/message?sessionId=" + legacySID, nil, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`},
			}
			for _, row := range rows {
				status, body := rawRequest(t, row.method, row.url, tok, row.hdr, row.body)
				if status != http.StatusNotFound {
					unauthorizedPasses++
					t.Errorf("%s with %s's session as %s: HTTP %d %.200s, want 404", row.endpoint, owner, intruder, status, body)
				}
				sid := ownerSID
				if strings.HasPrefix(row.url, gw.url+"/message") {
					sid = legacySID
				}
				denied = append(denied, attempt{owner, intruder, row.endpoint, sid})
			}

			wg.Wait()
			if slowErr != nil || slowResp.Error != nil || strings.Contains(string(slowResp.Result), `"isError":true`) {
				t.Errorf("%s's %s after %s tried to cancel it: %v %+v %s, want a result", owner, slowTool[owner], intruder, slowErr, slowResp.Error, slowResp.Result)
			}
			// The session survived the intruder's DELETE.
			if resp, _ := c.callTool(t, ownTool[owner], map[string]any{"message": "still mine"}); resp.Error != nil {
				t.Errorf("%s's session after %s's DELETE: %+v", owner, intruder, resp.Error)
			}
			// One GET stream per session: the owner's first is served,
			// a second is refused.
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+"/mcp", nil)
			req.Header.Set("Authorization", "Bearer "+env.Tokens[owner])
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("Mcp-Session-Id", c.sid)
			first, err := httpc.Do(req)
			if err != nil || first.StatusCode != http.StatusOK {
				t.Fatalf("%s's own GET stream: %v %v", owner, err, first)
			}
			status, body := rawRequest(t, http.MethodGet, gw.url+"/mcp", env.Tokens[owner], map[string]string{"Mcp-Session-Id": c.sid, "Accept": "text/event-stream"}, "")
			if status != http.StatusConflict || !strings.Contains(body, "already has an open GET stream") {
				t.Errorf("second GET stream on %s's session: HTTP %d %.200s, want 409 naming the open stream", owner, status, body)
			}
			cancel()
			first.Body.Close()
			if status, body := rawRequest(t, http.MethodDelete, gw.url+"/mcp", env.Tokens[owner], map[string]string{"Mcp-Session-Id": c.sid}, ""); status != http.StatusNoContent {
				t.Errorf("%s's own DELETE: HTTP %d %s", owner, status, body)
			}
		}
	}
	t.Logf("session matrix: %d attempts on another principal's session, %d passed", len(denied), unauthorizedPasses)

	// Every refusal is a denied auth hop with the intruder's name and the
	// session it named.
	gw.waitWritten(t)
	conn := chConn(t, env.CHAddr)
	type key struct{ principal, sid, target string }
	got := map[key]int{}
	rows, err := conn.Query(context.Background(), fmt.Sprintf(
		"SELECT principal, session_id, target FROM %s.hops WHERE hop = 'auth' AND outcome = 'denied' AND auth_rule = 'session-owner'", env.CHDB))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.principal, &k.sid, &k.target); err != nil {
			t.Fatal(err)
		}
		got[k]++
	}
	rows.Close()
	want := map[key]int{}
	for _, a := range denied {
		method, path, _ := strings.Cut(a.endpoint, " ")
		path, _, _ = strings.Cut(path, " ")
		want[key{a.intruder, a.sid, method + " " + path}]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("recorded session-owner denials of %s on %s (%s) = %d, want %d", k.principal, k.target, k.sid, got[k], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("recorded denials %v, want exactly %v", got, want)
	}
	if body, _ := json.Marshal(got); len(denied) == 0 {
		t.Fatalf("no attempts made; recorded %s", body)
	}
}
