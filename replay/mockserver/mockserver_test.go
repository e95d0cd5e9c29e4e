package mockserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoResult is deliberately not in the key order or spacing mcp-go would
// produce, so a byte comparison proves the result was relayed, not re-encoded.
const echoResult = `{"content":[{"type":"text","text":"Echo: hello"}],  "_meta":{"z":1,"a":2}}`

func recording(t testing.TB, withInitialize bool) *match.Store {
	t.Helper()
	s := match.NewStore(match.Config{})
	xs := []diff.Exchange{
		{Method: "tools/list", Server: "everything", Request: json.RawMessage(`{}`),
			Response: json.RawMessage(`{"tools":[{"name":"echo","description":"Echoes","inputSchema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"message":{"type":"string"}}}}]}`)},
		{Method: "tools/call", Server: "everything", ProtocolVersion: "2025-06-18",
			Request:  json.RawMessage(`{"name":"echo","arguments":{"message":"hello"},"_meta":{"progressToken":3}}`),
			Response: json.RawMessage(echoResult)},
		{Method: "tools/call", Server: "everything",
			Request:  json.RawMessage(`{"name":"fail","arguments":{}}`),
			Response: json.RawMessage(`{"code":-32602,"message":"bad args","data":{"why":"x"}}`), Outcome: recorder.OutcomeJSONRPCError, ErrorCode: -32602},
		{Method: "tools/call", Server: "everything",
			Request: json.RawMessage(`{"name":"down","arguments":{}}`), Outcome: recorder.OutcomeTransportError},
	}
	if withInitialize {
		xs = append([]diff.Exchange{{Method: "initialize", Server: "everything",
			Request:  json.RawMessage(`{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"gw","version":"1"}}`),
			Response: json.RawMessage(`{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"example-servers/everything","version":"1.0.0"}}`)}}, xs...)
	}
	for _, x := range xs {
		if err := s.Add(x); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func newClient(t *testing.T, url string) (*client.Client, transport.Interface) {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url)
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion("2025-11-25"))
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("starting client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, tr
}

func initialize(t *testing.T, c *client.Client) *mcp.InitializeResult {
	t.Helper()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = "2025-11-25"
	req.Params.ClientInfo = mcp.Implementation{Name: "replay-test", Version: "0"}
	res, err := c.Initialize(context.Background(), req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return res
}

func TestMCPGoClient(t *testing.T) {
	for _, withInit := range []bool{true, false} {
		name := map[bool]string{true: "recorded initialize", false: "synthesized initialize"}[withInit]
		t.Run(name, func(t *testing.T) {
			mock, err := New(recording(t, withInit), Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(mock)
			defer srv.Close()
			c, tr := newClient(t, srv.URL+"/everything/mcp")
			ctx := context.Background()

			ini := initialize(t, c)
			// Both the recording and the synthesized answer carry the recorded version.
			if ini.ProtocolVersion != "2025-06-18" {
				t.Errorf("initialize protocolVersion = %q, want 2025-06-18", ini.ProtocolVersion)
			}
			if ini.Capabilities.Tools == nil {
				t.Errorf("initialize capabilities lack tools: %+v", ini.Capabilities)
			}
			if c.GetSessionId() == "" {
				t.Error("no Mcp-Session-Id after initialize")
			}
			if err := c.Ping(ctx); err != nil {
				t.Errorf("ping: %v", err)
			}
			for i := 0; i < 2; i++ { // tools/list is reusable
				tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
				if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != "echo" {
					t.Fatalf("tools/list #%d = %+v, %v", i, tools, err)
				}
			}

			// The typed client path.
			var call mcp.CallToolRequest
			call.Params.Name = "echo"
			call.Params.Arguments = map[string]any{"message": "hello"}
			res, err := c.CallTool(ctx, call)
			if err != nil {
				t.Fatalf("tools/call echo: %v", err)
			}
			if txt, ok := res.Content[0].(mcp.TextContent); !ok || txt.Text != "Echo: hello" {
				t.Errorf("tools/call echo content = %+v", res.Content)
			}

			// The raw path: the result bytes are the recorded bytes.
			resp, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(99)), Method: "tools/call",
				Params: map[string]any{"name": "echo", "arguments": map[string]any{"message": "hello"}}})
			if err != nil {
				t.Fatalf("raw tools/call: %v", err)
			}
			if string(resp.Result) != echoResult {
				t.Errorf("raw result =\n%s\nwant byte-identical\n%s", resp.Result, echoResult)
			}

			// A recorded JSON-RPC error is relayed with its code and data.
			call.Params.Name, call.Params.Arguments = "fail", map[string]any{}
			if _, err := c.CallTool(ctx, call); err == nil || !strings.Contains(err.Error(), "bad args") {
				t.Errorf("tools/call fail err = %v, want the recorded bad args error", err)
			}
			resp, err = tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(100)), Method: "tools/call",
				Params: map[string]any{"name": "fail", "arguments": map[string]any{}}})
			if err != nil || resp.Error == nil || resp.Error.Code != -32602 {
				t.Errorf("raw tools/call fail = %+v, %v; want error -32602", resp, err)
			}

			// A miss names the closest recorded request.
			call.Params.Name, call.Params.Arguments = "echo", map[string]any{"message": "bye"}
			_, err = c.CallTool(ctx, call)
			if err == nil || !strings.Contains(err.Error(), "closest recorded: tools/call everything/echo") {
				t.Errorf("miss err = %v, want it to name the closest candidate", err)
			}
			st := mock.Stats()
			if st.Misses != 1 || st.Hits < 8 {
				t.Errorf("Stats = %+v, want 1 miss and at least 8 hits", st)
			}
		})
	}
}

func post(t *testing.T, url, sid, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHTTPEdges(t *testing.T) {
	mock, err := New(recording(t, true), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	u := srv.URL + "/everything/mcp"
	resp, _ := post(t, u, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("initialize without Mcp-Session-Id")
	}
	tests := []struct {
		name       string
		url, sid   string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"notification", u, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202, ""},
		{"client response", u, sid, `{"jsonrpc":"2.0","id":5,"result":{}}`, 202, ""},
		{"bad json", u, sid, `{`, 400, `"code":-32700`},
		{"batch", u, sid, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, 400, `"code":-32600`},
		{"unknown session", u, "nope", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 404, `unknown or ended session`},
		{"session of another server", srv.URL + "/other/mcp", sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 404, `unknown or ended session`},
		{"unknown server", srv.URL + "/other/mcp", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 404, `nothing was recorded for server \"other\"`},
		{"string id echoed", u, sid, `{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}`, 200,
			`{"jsonrpc":"2.0","id":"abc","result":` + echoResult + `}`},
		{"recorded transport error", u, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"down","arguments":{}}}`, 502, "recorded transport_error"},
		{"miss data", u, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}`, 200,
			`"data":{"method":"tools/call","server":"everything","name":"echo","closest":"tools/call everything/echo","changes":[{"path":"/arguments/message","kind":"value_changed","risk":"medium","old":"hello","new":"x"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, tt.url, tt.sid, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body = %s, want it to contain %s", body, tt.wantBody)
			}
		})
	}
	// GET has no stream; DELETE ends the session.
	r, _ := http.Get(u)
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET status = %d, want 405", r.StatusCode)
	}
	del := func() int {
		req, _ := http.NewRequest(http.MethodDelete, u, nil)
		req.Header.Set("Mcp-Session-Id", sid)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if got := del(); got != 200 {
		t.Errorf("DELETE = %d, want 200", got)
	}
	if got := del(); got != 404 {
		t.Errorf("second DELETE = %d, want 404", got)
	}
}

func TestForwardPolicy(t *testing.T) {
	var got []byte
	fwd := func(ctx context.Context, server string, req []byte) ([]byte, error) {
		got = bytes.Clone(req)
		if strings.Contains(string(req), "broken") {
			return nil, errors.New("dial tcp: refused")
		}
		return []byte(`{"jsonrpc":"2.0","id":7,"result":{"live":true}}`), nil
	}
	if _, err := New(match.NewStore(match.Config{}), Config{Miss: MissForward}, nil); err == nil {
		t.Error("New with forward policy and no Forward: nil error")
	}
	if _, err := New(match.NewStore(match.Config{}), Config{Miss: "maybe"}, nil); err == nil {
		t.Error("New with unknown policy: nil error")
	}
	mock, err := New(recording(t, true), Config{Miss: MissForward, Forward: fwd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	req := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"live","arguments":{}}}`
	_, body := post(t, srv.URL+"/everything/mcp", "", req)
	if body != `{"jsonrpc":"2.0","id":7,"result":{"live":true}}` || string(got) != req {
		t.Errorf("forward: body %s, forwarded %s", body, got)
	}
	_, body = post(t, srv.URL+"/everything/mcp", "", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"broken"}}`)
	if !strings.Contains(body, `"code":-32001`) || !strings.Contains(body, "refused") {
		t.Errorf("failed forward body = %s, want -32001 naming the cause", body)
	}
	if st := mock.Stats(); st.Forwarded != 2 {
		t.Errorf("Forwarded = %d, want 2", st.Forwarded)
	}
}

// Lists that were never recorded are answered empty (a gateway connecting to
// the mock fetches every list its capabilities allow); a recorded list is
// served as recorded.
func TestUnrecordedListsAreEmpty(t *testing.T) {
	mock, err := New(recording(t, true), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	url := srv.URL + "/everything/mcp"
	for _, tt := range []struct{ method, want string }{
		{"resources/templates/list", `"result":{"resourceTemplates":[]}`},
		{"prompts/list", `"result":{"prompts":[]}`},
		{"resources/list", `"result":{"resources":[]}`},
		{"ping", `"result":{}`},
		{"tools/list", `"name":"echo"`},
	} {
		_, body := post(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"`+tt.method+`","params":{}}`)
		if !strings.Contains(body, tt.want) {
			t.Errorf("%s = %s, want it to contain %s", tt.method, body, tt.want)
		}
	}
	if st := mock.Stats(); st.Misses != 0 {
		t.Errorf("Stats = %+v, want no misses", st)
	}
}

// TestAnswersTheRecordedRequestNamedInMeta: identical calls recorded in two
// requests are answered per request when the replayed call names its
// recorded request (as the gateway passes the client's request ID upstream
// in params._meta).
func TestAnswersTheRecordedRequestNamedInMeta(t *testing.T) {
	store := match.NewStore(match.Config{})
	for _, rec := range []struct{ id, text string }{{"REQ-A", "10:00"}, {"REQ-B", "10:05"}} {
		if err := store.Add(diff.Exchange{RequestID: rec.id, Method: "tools/call", Server: "clock",
			Request:  json.RawMessage(`{"name":"now","arguments":{}}`),
			Response: json.RawMessage(`{"content":[{"type":"text","text":"` + rec.text + `"}]}`)}); err != nil {
			t.Fatal(err)
		}
	}
	mock, err := New(store, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	u := srv.URL + "/clock/mcp"
	resp, _ := post(t, u, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	for _, tt := range []struct{ meta, want string }{
		{`{"mcptrail.dev/request-id":"REQ-B.replay"}`, "10:05"},
		{`{"mcptrail.dev/request-id":"REQ-A.replay"}`, "10:00"},
	} {
		_, body := post(t, u, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"now","arguments":{},"_meta":`+tt.meta+`}}`)
		if !strings.Contains(body, tt.want) {
			t.Errorf("call with _meta %s answered %s, want the answer recorded for that request (%s)", tt.meta, body, tt.want)
		}
	}
}

// TestRecordedServerRequests: a call whose recording holds requests the
// backend sent to the client (sampling, elicitation) sends them again, in
// order, each waiting for the client's answer, before the recorded result:
// a gateway in front of the mock meets the same round trips (for a
// 2026-07-28 client they become InputRequiredResults).
func TestRecordedServerRequests(t *testing.T) {
	s := match.NewStore(match.Config{})
	if err := s.Add(diff.Exchange{Method: "tools/call", Server: "everything",
		Request:  json.RawMessage(`{"name":"ask","arguments":{}}`),
		Response: json.RawMessage(`{"content":[{"type":"text","text":"asked twice"}]}`),
		ServerRequests: []diff.ServerRequest{
			{Method: "sampling/createMessage", Params: json.RawMessage(`{"messages":[],"maxTokens":5}`)},
			{Method: "elicitation/create", Params: json.RawMessage(`{"message":"name?","requestedSchema":{"type":"object"}}`)},
		}}); err != nil {
		t.Fatal(err)
	}
	mock, err := New(s, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	tr, err := transport.NewStreamableHTTP(srv.URL + "/everything/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	tr.SetRequestHandler(func(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
		b, _ := json.Marshal(req.Params)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, req.Method+" "+string(b))
		return transport.NewJSONRPCResultResponse(req.ID, json.RawMessage(`{"action":"decline"}`)), nil
	})
	ctx := context.Background()
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(1)), Method: "initialize",
		Params: map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "t", "version": "0"}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(2)), Method: "tools/call",
		Params: map[string]any{"name": "ask", "arguments": map[string]any{}}})
	if err != nil {
		t.Fatalf("tools/call ask: %v", err)
	}
	if want := `{"content":[{"type":"text","text":"asked twice"}]}`; string(resp.Result) != want {
		t.Errorf("result = %s, want %s", resp.Result, want)
	}
	want := []string{
		`sampling/createMessage {"maxTokens":5,"messages":[]}`,
		`elicitation/create {"message":"name?","requestedSchema":{"type":"object"}}`,
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests the client got =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestProfileLists: a connection is served the lists recorded for the
// client capability profile its initialize declares; a profile without its
// own recording gets the backend's merged lists.
func TestProfileLists(t *testing.T) {
	s := recording(t, true)
	s.AddProfileList("everything", match.ProfileKey(json.RawMessage(`{"sampling":{}}`)), "tools/list", json.RawMessage(`{"tools":[{"name":"echo"},{"name":"sample"}]}`))
	mock, err := New(s, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	u := srv.URL + "/everything/mcp"
	for _, tt := range []struct{ caps, want string }{
		{`{"sampling":{}}`, `{"tools":[{"name":"echo"},{"name":"sample"}]}`},
		{`{}`, `"name":"echo","description":"Echoes"`},
	} {
		resp, _ := post(t, u, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":`+tt.caps+`}}`)
		_, body := post(t, u, resp.Header.Get("Mcp-Session-Id"), `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`)
		if !strings.Contains(body, tt.want) {
			t.Errorf("tools/list for a client declaring %s = %s, want it to hold %s", tt.caps, body, tt.want)
		}
	}
}
