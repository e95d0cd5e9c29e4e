package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/secrets"
)

func TestPacer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		speed float64
		at    []int64 // recorded times, seconds
		want  time.Duration
	}{
		{"as fast as possible", 0, []int64{10, 12, 20}, 0},
		{"recorded pacing", 1, []int64{10, 12, 20}, 10 * time.Second},
		{"twice as fast", 2, []int64{10, 12, 20}, 5 * time.Second},
		{"late requests do not wait", 1, []int64{10, 9, 10}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := pacer{speed: tt.speed}
				start := time.Now()
				for _, s := range tt.at {
					if err := p.wait(context.Background(), s*int64(time.Second)); err != nil {
						t.Fatal(err)
					}
				}
				if got := time.Since(start); got != tt.want {
					t.Errorf("paced %v, want %v", got, tt.want)
				}
			})
		})
	}
}

func TestRewriteParams(t *testing.T) {
	for _, tt := range []struct{ in, token, want string }{
		{`{"name":"a"}`, "t", `{"name":"a"}`},
		{`{"name":"a","_meta":{"traceparent":"00-x","mcptrail.dev/request-id":"R"}}`, "t", `{"name":"a"}`},
		{`{"name":"a","_meta":{"progressToken":1,"traceparent":"x","k":"v"}}`, "replay-1", `{"name":"a","_meta":{"progressToken":"replay-1","k":"v"}}`},
		{`{"_meta":{"progressToken":"p"}}`, "", `{"_meta":{"progressToken":"p"}}`},
		{`not json`, "t", `not json`},
		{``, "t", ``},
	} {
		if got := string(rewriteParams([]byte(tt.in), tt.token)); got != tt.want {
			t.Errorf("rewriteParams(%s, %q) = %s, want %s", tt.in, tt.token, got, tt.want)
		}
	}
}

func TestNormalizeAnswer(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"content":[],"_meta":{"mcptrail.dev/request-id":"R"}}`, `{"content":[]}`},
		{`{"content":[],"_meta":{"mcptrail.dev/request-id":"R","x":1}}`, `{"content":[],"_meta":{"x":1}}`},
		{`{"code":-32003,"message":"no","data":{"requestId":"R"}}`, `{"code":-32003,"message":"no"}`},
		{`{"code":-32003,"message":"no","data":{"requestId":"R","server":"s"}}`, `{"code":-32003,"message":"no","data":{"server":"s"}}`},
		{`{"data":{"requestId":"R"}}`, `{"data":{"requestId":"R"}}`}, // not an error object
		{`[1]`, `[1]`},
	} {
		if got := string(normalizeAnswer([]byte(tt.in))); got != tt.want {
			t.Errorf("normalizeAnswer(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzRewriteParams: rewriting never panics and keeps valid JSON valid.
func FuzzRewriteParams(f *testing.F) {
	for _, s := range []string{`{"name":"a","_meta":{"progressToken":1,"traceparent":"x"}}`, `{"_meta":null}`, `{"_meta":{}}`, `{}`, `[]`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := rewriteParams(b, "replay-1")
		if json.Valid(b) && !json.Valid(out) {
			t.Fatalf("rewriteParams(%s) = %s: invalid JSON", b, out)
		}
		n := normalizeAnswer(b)
		if json.Valid(b) && !json.Valid(n) {
			t.Fatalf("normalizeAnswer(%s) = %s: invalid JSON", b, n)
		}
	})
}

const testPlaceholder = "«redacted:password:hmac:0123456789abcdef»"

func mustParseSecrets(t *testing.T, lines string) *secrets.Secrets {
	t.Helper()
	s, err := secrets.Parse(strings.NewReader(lines), "test.env")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeGateway is a minimal streamable-HTTP MCP server that keeps every body
// it receives and answers requests with an empty result.
type fakeGateway struct {
	result string // answer to requests other than initialize; default {}
	mu     sync.Mutex
	bodies []string
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusOK)
		return
	}
	b, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.bodies = append(g.bodies, string(b))
	g.mu.Unlock()
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(b, &m)
	if m.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	res := `{}`
	if g.result != "" {
		res = g.result
	}
	if m.Method == "initialize" {
		res = `{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"fake","version":"1"}}`
		w.Header().Set("Mcp-Session-Id", "s-1")
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, res)
}

func (g *fakeGateway) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.bodies)
}

// A recorded initialize whose params keep an unresolved placeholder must not
// be sent: the session's requests are skipped, naming the variable to set.
func TestInitializeWithUnresolvedPlaceholderIsNotSent(t *testing.T) {
	initParams := `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"},"authToken":"` + testPlaceholder + `"}`
	reqs := []replay.Request{
		{RequestID: "r1", SessionID: "s", Method: "initialize",
			Inbound:  &recorder.Event{RequestID: "r1", SessionID: "s", Hop: recorder.HopInbound, Method: "initialize", Params: []byte(initParams)},
			Response: &recorder.Event{RequestID: "r1", SessionID: "s", Hop: recorder.HopResponse, Method: "initialize", Result: []byte(`{}`)}},
		{RequestID: "r2", SessionID: "s", Method: "ping",
			Inbound:  &recorder.Event{RequestID: "r2", SessionID: "s", Hop: recorder.HopInbound, Method: "ping", Params: []byte(`{}`)},
			Response: &recorder.Event{RequestID: "r2", SessionID: "s", Hop: recorder.HopResponse, Method: "ping", Result: []byte(`{}`)}},
	}
	for _, tt := range []struct {
		name    string
		secrets string
		want    report.Status
		sent    bool
	}{
		{"secret supplied", "password=hunter2", report.StatusIdentical, true},
		{"secret missing", "", report.StatusSkipped, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &fakeGateway{}
			srv := httptest.NewServer(g)
			defer srv.Close()
			cases, err := Replay(context.Background(), reqs, Options{Mode: ModeE2E, GatewayURL: srv.URL + "/mcp", Secrets: mustParseSecrets(t, tt.secrets)})
			if err != nil {
				t.Fatal(err)
			}
			if len(cases) != 1 || cases[0].Status != tt.want {
				t.Fatalf("cases = %+v, want one %s", cases, tt.want)
			}
			if tt.want == report.StatusSkipped && !strings.Contains(cases[0].Reason, "MCPTRAIL_SECRET_PASSWORD") {
				t.Errorf("reason %q does not name MCPTRAIL_SECRET_PASSWORD", cases[0].Reason)
			}
			var sentInit bool
			for _, b := range g.seen() {
				if strings.Contains(b, "redacted:") {
					t.Errorf("the gateway received a placeholder: %s", b)
				}
				if strings.Contains(b, `"initialize"`) {
					sentInit = true
					if !strings.Contains(b, "hunter2") {
						t.Errorf("initialize sent without the secret: %s", b)
					}
				}
			}
			if sentInit != tt.sent {
				t.Errorf("initialize sent = %v, want %v", sentInit, tt.sent)
			}
		})
	}
}

// Recorded client answers to a backend's requests (sampling, elicitation)
// go to a live backend: they are filled from the secrets, and one that would
// keep an unresolved placeholder is replaced by an error.
func TestRecordedServerAnswerFillsSecrets(t *testing.T) {
	r := &replay.Request{RequestID: "r1", Other: []recorder.Event{
		{Hop: recorder.HopServerRequest, Method: "elicitation/create", Outcome: recorder.OutcomeOK,
			Result: []byte(`{"action":"accept","content":{"password":"` + testPlaceholder + `"}}`)},
	}}
	req := transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(7)), Method: "elicitation/create"}
	for _, tt := range []struct {
		name    string
		fill    func([]byte) ([]byte, error)
		want    string // in the result
		wantErr bool
	}{
		{"mock mode keeps placeholders", nil, testPlaceholder, false},
		{"secret supplied", mustParseSecrets(t, "password=hunter2").FillAll, `"password":"hunter2"`, false},
		{"secret missing", mustParseSecrets(t, "").FillAll, "", true},
		{"no secrets at all", (*secrets.Secrets)(nil).FillAll, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := recordedServerAnswer(r, map[int]bool{}, req, tt.fill)
			b, _ := json.Marshal(resp)
			if tt.wantErr {
				if resp.Error == nil || strings.Contains(string(b), "redacted:") {
					t.Fatalf("recordedServerAnswer = %s, want an error without the placeholder", b)
				}
				return
			}
			if resp.Error != nil || !strings.Contains(string(resp.Result), tt.want) {
				t.Fatalf("recordedServerAnswer = %s, want a result containing %s", b, tt.want)
			}
		})
	}
	if !strings.Contains(string(r.Other[0].Result), testPlaceholder) {
		t.Errorf("the recording was modified: %s", r.Other[0].Result)
	}
}

// An interrupted run is an error, not a report of failed requests (which
// would exit 1 as if the gateway had regressed).
func TestCanceledReplayIsAnError(t *testing.T) {
	reqs := []replay.Request{{RequestID: "r1", SessionID: "s", Method: "ping",
		Inbound:  &recorder.Event{RequestID: "r1", SessionID: "s", Hop: recorder.HopInbound, Method: "ping", Params: []byte(`{}`)},
		Response: &recorder.Event{RequestID: "r1", SessionID: "s", Hop: recorder.HopResponse, Method: "ping", Result: []byte(`{}`)}}}
	srv := httptest.NewServer(&fakeGateway{})
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, mode := range []Mode{ModeE2E, ModeMock} {
		cases, err := Replay(ctx, reqs, Options{Mode: mode, GatewayURL: srv.URL + "/mcp"})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Replay(canceled) = %+v, %v; want context.Canceled", mode, cases, err)
		}
	}
}

// A secret filled in for the replay must not reach the report (or the
// replay results stored from it) when the answer changed around it.
func TestFilledSecretsStayOutOfTheReport(t *testing.T) {
	recordedText := `{"content":[{"type":"text","text":"Echo: ` + testPlaceholder + ` at 1"}]}`
	reqs := []replay.Request{{RequestID: "r1", SessionID: "s", Method: "tools/call", Target: "b.echo",
		Inbound: &recorder.Event{RequestID: "r1", SessionID: "s", Hop: recorder.HopInbound, Method: "tools/call",
			Params: []byte(`{"name":"b.echo","arguments":{"message":"` + testPlaceholder + `"}}`)},
		Response: &recorder.Event{RequestID: "r1", SessionID: "s", Hop: recorder.HopResponse, Method: "tools/call", Result: []byte(recordedText)}}}
	srv := httptest.NewServer(&fakeGateway{result: `{"content":[{"type":"text","text":"Echo: hunter2 at 2"}]}`})
	defer srv.Close()
	cases, err := Replay(context.Background(), reqs, Options{Mode: ModeE2E, GatewayURL: srv.URL + "/mcp", AllowWrites: true, Secrets: mustParseSecrets(t, "password=hunter2")})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 1 || cases[0].Status != report.StatusChanged {
		t.Fatalf("cases = %+v, want one changed", cases)
	}
	b, _ := json.Marshal(cases)
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("the report holds the secret: %s", b)
	}
	if !strings.Contains(string(b), `at 2`) {
		t.Errorf("the change itself is gone: %s", b)
	}
}

func TestHideSecretsKeepsJSONValid(t *testing.T) {
	s := mustParseSecrets(t, "odd='\"y\"}'\nword=hunter2\n")
	c := report.Case{Reason: `gateway said ":" and hunter2`, Diff: diff.Result{Changes: []diff.Change{
		{Path: "/a", Old: json.RawMessage(`{"x":"y"}`), New: json.RawMessage(`"hunter2 at 2"`)},
	}}}
	hideSecrets(s, &c)
	for _, ch := range c.Diff.Changes {
		if string(ch.Old) == `{"x":"y"}` {
			t.Errorf("Old = %s: the secret matching across JSON syntax was not withheld", ch.Old)
		}
		for _, v := range []json.RawMessage{ch.Old, ch.New} {
			if !json.Valid(v) || strings.Contains(string(v), "hunter2") {
				t.Errorf("masked value %s: want valid JSON without the secret", v)
			}
		}
	}
	if c.Diff.Changes[0].New == nil || string(c.Diff.Changes[0].New) != `"«secret:WORD» at 2"` {
		t.Errorf("New = %s", c.Diff.Changes[0].New)
	}
	if strings.Contains(c.Reason, "hunter2") {
		t.Errorf("Reason = %q", c.Reason)
	}
}
