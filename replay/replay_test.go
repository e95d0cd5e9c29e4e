package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/bundle"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
	"github.com/mcptrail/mcptrail/replay/mockserver"
	"github.com/mcptrail/mcptrail/replay/report"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordedEvents is a small recorded session against server-everything: a
// tools/list, an echo call, and an add call whose first upstream attempt
// failed at the transport level and was retried.
func recordedEvents() []recorder.Event {
	t0 := int64(1764000000000000000)
	ev := func(req string, hop recorder.Hop, seq uint32, dt int64, method, target, params, result string) recorder.Event {
		e := recorder.Event{EventID: req + "-" + strconv.Itoa(int(seq)), RequestID: req, SessionID: "s1", Hop: hop, Seq: seq,
			TimeNs: t0 + dt, DurationUs: 1000 + dt/1000, Method: method, Server: "everything", Target: target, UpstreamVersion: "2025-06-18"}
		if params != "" {
			e.Params = []byte(params)
		}
		if result != "" {
			e.Result = []byte(result)
		}
		return e
	}
	tools := `{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"add","inputSchema":{"type":"object"}}]}`
	failed := ev("R3", recorder.HopUpstream, 1, 3_000_100, "tools/call", "everything.add", `{"name":"add","arguments":{"a":2,"b":3}}`, "")
	failed.Outcome = recorder.OutcomeTransportError
	return []recorder.Event{
		// Out of order on purpose: Requests and NewStore sort.
		ev("R2", recorder.HopResponse, 2, 2_000_900, "tools/call", "everything.echo", "", `{"content":[{"type":"text","text":"Echo: hi"}]}`),
		ev("R2", recorder.HopInbound, 0, 2_000_000, "tools/call", "everything.echo", `{"name":"everything.echo","arguments":{"message":"hi"}}`, ""),
		ev("R2", recorder.HopUpstream, 1, 2_000_100, "tools/call", "everything.echo", `{"name":"echo","arguments":{"message":"hi"},"_meta":{"traceparent":"00-1-2-01"}}`, `{"content":[{"type":"text","text":"Echo: hi"}]}`),
		ev("R1", recorder.HopInbound, 0, 1_000_000, "tools/list", "", `{}`, ""),
		ev("R1", recorder.HopUpstream, 1, 1_000_100, "tools/list", "", `{}`, tools),
		ev("R1", recorder.HopResponse, 2, 1_000_900, "tools/list", "", "", tools),
		ev("R3", recorder.HopInbound, 0, 3_000_000, "tools/call", "everything.add", `{"name":"everything.add","arguments":{"a":2,"b":3}}`, ""),
		failed,
		ev("R3", recorder.HopUpstream, 2, 3_000_500, "tools/call", "everything.add", `{"name":"add","arguments":{"a":2,"b":3}}`, `{"content":[{"type":"text","text":"The sum of 2 and 3 is 5."}]}`),
		ev("R3", recorder.HopResponse, 3, 3_000_900, "tools/call", "everything.add", "", `{"content":[{"type":"text","text":"The sum of 2 and 3 is 5."}]}`),
	}
}

func TestRequests(t *testing.T) {
	reqs := replay.Requests(recordedEvents())
	var got []string
	for _, r := range reqs {
		got = append(got, r.RequestID+":"+r.Method+":"+strconv.Itoa(len(r.Upstream)))
		if r.Inbound == nil || r.Response == nil {
			t.Errorf("%s: missing inbound or response", r.RequestID)
		}
	}
	if want := "R1:tools/list:1 R2:tools/call:1 R3:tools/call:2"; strings.Join(got, " ") != want {
		t.Errorf("Requests = %v, want %s", got, want)
	}
	if fu := reqs[2].FinalUpstream(); fu == nil || fu.Seq != 2 {
		t.Errorf("FinalUpstream of R3 = %+v, want seq 2", fu)
	}
	tl := replay.ToolsLists(recordedEvents())
	if len(tl) != 1 || !strings.Contains(string(tl["everything"]), `"add"`) {
		t.Errorf("ToolsLists = %s", tl)
	}
}

// TestBundleToMockToReport drives the building blocks the way
// `mcptrail replay mock` will: bundle → store → mock backend → real MCP
// client → compare with the recording → report.
func TestBundleToMockToReport(t *testing.T) {
	var buf bytes.Buffer
	events := recordedEvents()
	if err := bundle.Write(&buf, &bundle.Bundle{Header: bundle.Header{Tools: replay.ToolsLists(events)}, Events: events}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	store, err := replay.NewStore(b.Events, match.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mock, err := mockserver.New(store, mockserver.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()

	tr, err := transport.NewStreamableHTTP(srv.URL + "/everything/mcp")
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion("2025-11-25"))
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ini mcp.InitializeRequest
	ini.Params.ProtocolVersion = "2025-11-25"
	res, err := c.Initialize(ctx, ini)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtocolVersion != "2025-06-18" {
		t.Errorf("synthesized initialize version = %s, want the recorded 2025-06-18", res.ProtocolVersion)
	}

	var cases []report.Case
	for i, r := range replay.Requests(b.Events) {
		fu := r.FinalUpstream()
		recorded := replay.Exchange(fu)
		recorded.Target = r.Target
		var params map[string]any
		_ = json.Unmarshal(fu.Params, &params)
		// Send every upstream attempt, like the gateway's retry would.
		var replayed diff.Exchange
		var sendErr error
		for range r.Upstream {
			resp, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(i + 10)), Method: r.Method, Params: params})
			if err != nil {
				sendErr = err
				continue
			}
			sendErr = nil
			replayed = diff.Exchange{Response: resp.Result}
		}
		if sendErr != nil {
			cases = append(cases, report.Failed(recorded, sendErr))
			continue
		}
		cases = append(cases, report.Compared(recorded, replayed, nil))
	}
	rep := report.Build("mock", cases, 10)
	if rep.Total.Identical != 3 || rep.Regressions() != 0 {
		var text bytes.Buffer
		_ = report.WriteText(&text, rep)
		t.Errorf("replay against the mock is not identical:\n%s", text.String())
	}
}

// TestImports pins the dependency arrows. The replay core (root, diff,
// match, mockserver, bundle, secrets, report) may use proxy/jsonrpc but no
// other proxy package, and never a storage driver. runner drives this
// build's gateway and whatif runs its policy chain, so both may import
// proxy; only cli (the commands) talks to the store. Nothing imports cmd or
// dashboards.
func TestImports(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		gateway := dir == "runner" || dir == "whatif" || dir == "cli" || dir == "internal/recordtest"
		store := dir == "cli"
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case !gateway && strings.HasPrefix(p, "github.com/mcptrail/mcptrail/proxy") && p != "github.com/mcptrail/mcptrail/proxy/jsonrpc",
				strings.HasPrefix(p, "github.com/mcptrail/mcptrail/cmd"),
				strings.HasPrefix(p, "github.com/mcptrail/mcptrail/dashboards"),
				!store && strings.Contains(p, "clickhouse"):
				t.Errorf("%s imports %s", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
