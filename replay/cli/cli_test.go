package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/spf13/cobra"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/bundle"
	"github.com/mcptrail/mcptrail/replay/cli"
	"github.com/mcptrail/mcptrail/replay/internal/recordtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/mark3labs/mcp-go/server.(*StreamableHTTPServer).startListeningPump.func1"),
	)
}

// fakeStore serves recorded events like clickhouse.Store.Select and keeps
// the replay runs written to it.
type fakeStore struct {
	events []recorder.Event
	mu     sync.Mutex
	runs   []clickhouse.ReplayRun
	res    [][]clickhouse.ReplayResult
}

func (f *fakeStore) Select(_ context.Context, sel clickhouse.Selection) ([]recorder.Event, error) {
	var out []recorder.Event
	for _, e := range f.events {
		if slices.Contains(sel.RequestIDs, e.RequestID) || sel.SessionID != "" && e.SessionID == sel.SessionID {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeStore) WriteReplayRun(_ context.Context, run clickhouse.ReplayRun, rs []clickhouse.ReplayResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs = append(f.runs, run)
	f.res = append(f.res, rs)
	return nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

type result struct {
	err            error
	stdout, stderr string
}

// run executes the command line with a fresh command tree.
func run(t *testing.T, st *fakeStore, stdin string, args ...string) result {
	t.Helper()
	return runEnv(t, nil, st, stdin, args...)
}

func runEnv(t *testing.T, mod func(*cli.Env), st *fakeStore, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Logger: slog.New(slog.DiscardHandler), Version: "test",
		OpenStore: func(context.Context, clickhouse.Config) (cli.Store, io.Closer, error) { return st, nopCloser{}, nil }}
	if mod != nil {
		mod(env)
	}
	root := &cobra.Command{Use: "mcptrail", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands(env)...)
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return result{err: err, stdout: out.String(), stderr: errb.String()}
}

// requestOf returns the id of the first recorded request calling target.
func requestOf(t *testing.T, events []recorder.Event, target string) string {
	t.Helper()
	for _, r := range replay.Requests(events) {
		if r.Target == target {
			return r.RequestID
		}
	}
	t.Fatalf("no recorded request for %s", target)
	return ""
}

// exportBundle exports the whole recorded session through the fake store.
func exportBundle(t *testing.T, st *fakeStore, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "incident.mcptrail")
	r := run(t, st, "", append([]string{"export", "--clickhouse", "fake:9000", "-o", path}, args...)...)
	if r.err != nil {
		t.Fatalf("export: %v\n%s", r.err, r.stderr)
	}
	return path
}

func TestExportAddsSessionSetup(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	st := &fakeStore{events: events}
	add := requestOf(t, events, "backend.add")
	path := exportBundle(t, st, "--request-id", add)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := bundle.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, r := range replay.Requests(b.Events) {
		methods = append(methods, r.Method+" "+r.Target)
	}
	want := []string{"initialize ", "tools/list ", "resources/list ", "prompts/list ", "tools/call backend.add"}
	if !slices.Equal(methods, want) {
		t.Errorf("bundle requests = %q, want %q", methods, want)
	}
	if b.ConfigHash != "cfg-hash-1" {
		t.Errorf("ConfigHash = %q", b.ConfigHash)
	}
	if !bytes.Contains(b.Tools["backend"], []byte(`"name":"write_note"`)) {
		t.Errorf("header tools of backend = %.200s", b.Tools["backend"])
	}
	if !slices.Equal(b.Selection.RequestIDs, []string{add}) {
		t.Errorf("selection = %+v", b.Selection)
	}
}

func TestReplayMockFromBundle(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	st := &fakeStore{events: events}
	path := exportBundle(t, st, "--session", events[0].SessionID)
	for _, terminal := range []bool{false, true} {
		r := runEnv(t, func(e *cli.Env) { e.StderrIsTerminal = terminal }, nil, "", "replay", "mock", "--bundle", path, "--baseline-twice")
		if r.err != nil {
			t.Fatalf("replay mock: %v\n%s%s", r.err, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "15 replayed: 15 identical, 0 changed, 0 failed, 0 skipped") {
			t.Errorf("report:\n%s", r.stdout)
		}
		// The progress bar is drawn only on a terminal.
		if bar := strings.Contains(r.stderr, "] 15/15"); bar != terminal {
			t.Errorf("terminal %v: progress bar drawn %v; stderr %q", terminal, bar, r.stderr)
		}
	}
}

func TestReplayUpstreamRegression(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	st := &fakeStore{events: events}
	_, v2 := recordtest.StartBackend(t, "v2")
	dir := t.TempDir()
	junit := filepath.Join(dir, "report.xml")
	r := run(t, st, "", "replay", "upstream", "--clickhouse", "fake:9000", "--session", events[0].SessionID,
		"--target", "backend="+v2, "--format", "json", "--junit", junit, "--ignore-path", "backend.now:/content/0/text")
	var re *cli.RegressionError
	if !errors.As(r.err, &re) || re.Count != 1 {
		t.Fatalf("err = %v, want a RegressionError with 1 regression\n%s", r.err, r.stdout)
	}
	var rep struct {
		Top []struct{ Tool, Path string } `json:"top_differences"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, r.stdout)
	}
	if len(rep.Top) == 0 || rep.Top[0].Tool != "backend.add" || !slices.ContainsFunc(rep.Top, func(d struct{ Tool, Path string }) bool { return d.Path == "/content/0/text" }) {
		t.Errorf("top differences = %+v", rep.Top)
	}
	x, err := os.ReadFile(junit)
	if err != nil || !bytes.Contains(x, []byte("<failure")) {
		t.Errorf("JUnit report (%v): %.300s", err, x)
	}
	if len(st.runs) != 1 || st.runs[0].Mode != "upstream" || len(st.res[0]) == 0 {
		t.Fatalf("stored runs = %+v", st.runs)
	}
	var statuses []string
	for _, res := range st.res[0] {
		if res.Status != clickhouse.ReplayIdentical {
			statuses = append(statuses, res.Tool+"="+string(res.Status))
		}
	}
	slices.Sort(statuses)
	// echo: its redacted secret was not supplied; no_such_tool: never
	// listed, so possibly a write; write_note: a write.
	want := []string{"backend.add=changed", "backend.echo=skipped", "backend.no_such_tool=skipped", "backend.write_note=skipped"}
	if !slices.Equal(statuses, want) {
		t.Errorf("stored non-identical results = %v, want %v", statuses, want)
	}
}

func TestAllowWritesAsks(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	st := &fakeStore{events: events}
	path := exportBundle(t, st, "--session", events[0].SessionID)
	for _, tt := range []struct {
		name      string
		stdin     string
		args      []string
		wantNotes int
	}{
		{"declined", "n\n", nil, 0},
		{"confirmed", "y\n", nil, 1},
		{"--yes", "", []string{"--yes"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, url := recordtest.StartBackend(t, "v1")
			args := append([]string{"replay", "upstream", "--bundle", path, "--target", "backend=" + url, "--allow-writes",
				"--ignore-path", "backend.now:/content/0/text", "--secrets", writeSecrets(t)}, tt.args...)
			r := run(t, nil, tt.stdin, args...)
			if tt.wantNotes == 0 {
				if r.err == nil || !strings.Contains(r.err.Error(), "aborted") || !strings.Contains(r.stderr, "backend.write_note (1)") {
					t.Errorf("err = %v, stderr %q; want an abort naming the write tool", r.err, r.stderr)
				}
			} else if r.err != nil {
				t.Errorf("err = %v\n%s", r.err, r.stdout)
			}
			if n := len(b.Notes()); n != tt.wantNotes {
				t.Errorf("backend stored %d notes, want %d", n, tt.wantNotes)
			}
		})
	}
}

// The confirmation lists the tools the replay would really call as writes:
// read-only hints from the bundle header count, as they do for the replay.
func TestAllowWritesAsksOnlyForWrites(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	var kept []recorder.Event
	for _, e := range events {
		if e.Method != "tools/list" {
			kept = append(kept, e)
		}
	}
	lists := replay.BackendLists(events, ".")
	path := filepath.Join(t.TempDir(), "nolist.mcptrail")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = bundle.Write(f, &bundle.Bundle{Header: bundle.Header{Tools: map[string]json.RawMessage{"backend": lists["backend"]["tools/list"]}}, Events: kept})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	_, url := recordtest.StartBackend(t, "v1")
	r := run(t, nil, "n\n", "replay", "upstream", "--bundle", path, "--target", "backend="+url, "--allow-writes")
	if r.err == nil || !strings.Contains(r.err.Error(), "aborted") {
		t.Fatalf("err = %v, want an abort", r.err)
	}
	if !strings.Contains(r.stderr, "backend.write_note (1)") || strings.Contains(r.stderr, "backend.add") || strings.Contains(r.stderr, "backend.echo") {
		t.Errorf("confirmation %q: want backend.write_note listed and the read-only add and echo not", r.stderr)
	}
}

func writeSecrets(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "secrets.env")
	if err := os.WriteFile(p, []byte("# test secrets\nbearer="+recordtest.SecretToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSelectionErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "mock", "--clickhouse", "x:9000"}, "select traffic with"},
		{[]string{"replay", "mock", "--session", "s"}, "no ClickHouse address"},
		{[]string{"replay", "mock", "--clickhouse", "x:9000", "--since", "yesterday"}, "--since"},
		{[]string{"replay", "upstream", "--bundle", "/nonexistent.mcptrail"}, "opening bundle"},
		{[]string{"replay", "upstream", "--bundle", "/nonexistent.mcptrail", "--session", "s"}, "--bundle is replayed whole"},
		{[]string{"export", "--bundle", "/nonexistent.mcptrail", "--tool", "crm.*", "-o", "/dev/null"}, "--bundle is replayed whole"},
		{[]string{"replay", "mock", "--bundle", "x", "--format", "yaml"}, "--format"},
		{[]string{"export", "--session", "s", "--clickhouse", "x:9000"}, "-o FILE"},
	} {
		r := run(t, &fakeStore{}, "", tt.args...)
		if r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tt.args, r.err, tt.want)
		}
	}
}

// TestMockCommand serves a bundle's backends with `mcptrail mock` and calls
// the recorded add tool on it.
func TestMockCommand(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	path := exportBundle(t, &fakeStore{events: events}, "--session", events[0].SessionID)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var out, errb syncBuffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Logger: slog.New(slog.DiscardHandler)}
	root := &cobra.Command{Use: "mcptrail", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands(env)...)
	root.SetArgs([]string{"mock", "--bundle", path, "--listen", addr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	p := dialMock(t, "http://"+addr+"/backend/mcp")
	resp := p.Tool("add", map[string]any{"a": 2, "b": 3})
	if resp.Error != nil || !bytes.Contains(resp.Result, []byte(`"text":"5"`)) {
		t.Errorf("recorded add = %s %v", resp.Result, resp.Error)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("mock: %v", err)
	}
	if s := errb.String(); !strings.Contains(s, "serving recorded backend at http://"+addr+"/backend/mcp") || !strings.Contains(s, "0 misses") {
		t.Errorf("stderr: %s", s)
	}
}

// dialMock connects once the mock listens.
func dialMock(t *testing.T, url string) *recordtest.Peer {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/backend/mcp"))
		if err == nil {
			c.Close()
			return recordtest.NewPeer(t, url, nil)
		}
		if time.Now().After(deadline) {
			t.Fatalf("mock never listened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Issue 9.9: a known, accepted change can be silenced — by an --accept file
// (ignore rules, the root included, and exclusions), or by --exclude — and
// a change the file does not name still fails the run.
func TestAcceptAndExclude(t *testing.T) {
	events := recordtest.RecordTestbackend(t)
	st := &fakeStore{events: events}
	_, v2 := recordtest.StartBackend(t, "v2")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"replay", "upstream", "--clickhouse", "fake:9000", "--session", events[0].SessionID, "--target", "backend=" + v2,
		"--no-store-results", "--ignore-path", "backend.now:/content/0/text"}
	tests := []struct {
		name    string
		args    []string
		regress int
	}{
		{"nothing accepted", nil, 1},
		{"accept file, whole answer", []string{"--accept", write("all.accept", "# v2 adds one more\nbackend.add:/**\n")}, 0},
		{"accept file, the changed paths", []string{"--accept", write("path.accept", "backend.add:/content/0/text  # reworded\nbackend.add:/structuredContent/sum\n")}, 0},
		{"accept file, another path", []string{"--accept", write("other.accept", "backend.add:/structuredContent\n")}, 1},
		{"accept file, exclude", []string{"--accept", write("excl.accept", "exclude backend.a*\n")}, 0},
		{"exclude by request id", []string{"--exclude", requestOf(t, events, "backend.add")}, 0},
		{"exclude another tool", []string{"--exclude", "backend.echo"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, st, "", append(slices.Clone(base), tt.args...)...)
			var re *cli.RegressionError
			switch {
			case tt.regress == 0 && r.err != nil:
				t.Errorf("err = %v, want exit 0\n%s", r.err, r.stdout)
			case tt.regress > 0 && (!errors.As(r.err, &re) || re.Count != tt.regress):
				t.Errorf("err = %v, want %d regression(s)\n%s", r.err, tt.regress, r.stdout)
			}
		})
	}
	if r := run(t, st, "", append(slices.Clone(base), "--accept", write("bad.accept", "no pointer here\n"))...); r.err == nil || !strings.Contains(r.err.Error(), "bad.accept:1") {
		t.Errorf("bad accept file: err = %v, want it named with its line", r.err)
	}
}

// Issue 9.10: backend stderr and in-process gateway logs stay out of the
// report (in a log file whose path is printed, unless --verbose), and an
// unreachable ClickHouse gets the same hint as `mcptrail calls`.
func TestReplayLogsGoToAFile(t *testing.T) {
	js, err := filepath.Abs("../../testdata/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	if err != nil {
		t.Fatal(err)
	}
	srv := config.Server{Name: "everything", Transport: "stdio", Command: "node", Args: []string{js, "stdio"}, Timeout: 30 * time.Second}
	gwURL, rec := recordtest.RecordingGateway(t, &config.Config{Servers: []config.Server{srv}})
	p := recordtest.NewPeer(t, gwURL, nil)
	p.Call("tools/list", map[string]any{})
	p.Tool("everything.echo", map[string]any{"message": "hi"})
	st := &fakeStore{events: rec.All()}
	bundle := exportBundle(t, st, "--session", rec.All()[0].SessionID)
	args := []string{"replay", "upstream", "--bundle", bundle, "--target", "everything=stdio:node " + js + " stdio"}
	r := run(t, st, "", args...)
	if r.err != nil {
		t.Fatalf("replay: %v\n%s\n%s", r.err, r.stdout, r.stderr)
	}
	const banner = "Starting default (STDIO) server" // server-everything's stderr
	_, logPath, ok := strings.Cut(r.stderr, "gateway and backend logs: ")
	logPath, _, _ = strings.Cut(logPath, " ")
	if !ok || strings.Contains(r.stdout+r.stderr, banner) {
		t.Fatalf("backend stderr not in a log file:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	t.Cleanup(func() { _ = os.Remove(logPath) })
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), banner) {
		t.Errorf("log file %s (%v) lacks the backend's stderr: %.300s", logPath, err, b)
	}
	if r := run(t, st, "", append(args, "--verbose")...); !strings.Contains(r.stderr, banner) {
		t.Errorf("--verbose: backend stderr not printed: %s", r.stderr)
	}

	r = runEnv(t, func(e *cli.Env) { e.OpenStore = nil }, st, "", "replay", "mock", "--clickhouse", "127.0.0.1:1", "--since", "1h")
	if r.err == nil || !strings.Contains(r.err.Error(), "ClickHouse at 127.0.0.1:1 (from --clickhouse) is unreachable") {
		t.Errorf("ClickHouse down: err = %v, want the address, its source and a hint", r.err)
	}
}

// TestLocalServerCredentials: with no address given, the commands use the
// local ClickHouse of a running `mcptrail serve`, with the password it keeps
// next to its data.
func TestLocalServerCredentials(t *testing.T) {
	var got clickhouse.Config
	r := runEnv(t, func(e *cli.Env) {
		e.LocalAddr = func(string) (string, error) { return "127.0.0.1:41234", nil }
		e.LocalPassword = func(string) (string, error) { return "local-secret", nil }
		e.OpenStore = func(_ context.Context, cfg clickhouse.Config) (cli.Store, io.Closer, error) {
			got = cfg
			return nil, nil, errors.New("stop here")
		}
	}, nil, "", "export", "--since", "1h", "-o", filepath.Join(t.TempDir(), "b.mcptrail"))
	if r.err == nil || !strings.Contains(r.err.Error(), "stop here") {
		t.Fatalf("export = %v, want it to reach OpenStore", r.err)
	}
	if strings.Join(got.Addr, ",") != "127.0.0.1:41234" || got.Username != "default" || got.Password != "local-secret" {
		t.Errorf("OpenStore got %v user %q password %q, want the local server with its password", got.Addr, got.Username, got.Password)
	}
}

// samplingClient answers sampling like an LLM client (client n).
func samplingClient(n int) transport.RequestHandler {
	return func(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
		if req.Method == "sampling/createMessage" {
			return transport.NewJSONRPCResultResponse(req.ID, json.RawMessage(fmt.Sprintf(
				`{"role":"assistant","content":{"type":"text","text":"sampled by client %d"},"model":"m","stopReason":"endTurn"}`, n))), nil
		}
		return transport.NewJSONRPCErrorResponse(req.ID, -32601, "not supported", nil), nil
	}
}

// Issue 9, done means: as the commands run in CI — a bundle recorded
// against server-everything 2026.8.31 exits 0 in every mode against the same
// version at the default concurrency, and 1 against 2026.1.26.
func TestUpgradeGateExitCodes(t *testing.T) {
	js := func(dir string) string {
		p, err := filepath.Abs("../../testdata/npm/node_modules/" + dir + "/dist/index.js")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	current, older := js("@modelcontextprotocol/server-everything"), js("server-everything-2026-1-26")
	// Argument validation off: the gate compares each version's own answer to
	// invalid arguments (2026.1.26 words get-sum's error differently), which
	// the gateway would otherwise give for every version alike.
	off := false
	srv := config.Server{Name: "everything", Transport: "stdio", Command: "node", Args: []string{current, "stdio"}, Timeout: 30 * time.Second, ValidateArguments: &off}
	gwURL, rec := recordtest.RecordingGateway(t, &config.Config{Servers: []config.Server{srv}})
	for n := 1; n <= 3; n++ {
		p := recordtest.NewPeer(t, gwURL, samplingClient(n))
		p.Call("tools/list", map[string]any{})
		p.Call("prompts/list", map[string]any{})
		p.Tool("everything.echo", map[string]any{"message": fmt.Sprint("hello ", n)})
		p.Tool("everything.get-sum", map[string]any{"a": "x"})
		p.Tool("everything.trigger-sampling-request", map[string]any{"prompt": "hi", "maxTokens": 5})
		p.Call("tools/call", map[string]any{"name": "everything.trigger-long-running-operation", "arguments": map[string]any{"duration": 0.2, "steps": 2},
			"_meta": map[string]any{"progressToken": n}})
	}
	dir := t.TempDir()
	day := filepath.Join(dir, "day.mcptrail") // every session
	var b bytes.Buffer
	if err := bundle.Write(&b, &bundle.Bundle{Events: rec.All()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(day, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("servers:\n  - name: everything\n    transport: stdio\n    command: node\n    args: [%q, stdio]\n    validate_arguments: false\n", current)), 0o644); err != nil {
		t.Fatal(err)
	}
	writes := []string{"--allow-writes", "--yes"}
	for _, tt := range []struct {
		name string
		args []string
		want int // regressions; 0 is exit 0
	}{
		{"mock", []string{"replay", "mock", "--bundle", day, "--config", cfg}, 0},
		{"upstream", append([]string{"replay", "upstream", "--bundle", day, "--target", "everything=stdio:node " + current + " stdio"}, writes...), 0},
		{"e2e", append([]string{"replay", "e2e", "--bundle", day, "--config", cfg}, writes...), 0},
		{"upstream 2026.1.26", append([]string{"replay", "upstream", "--bundle", day, "--target", "everything=stdio:node " + older + " stdio"}, writes...), 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, nil, "", tt.args...)
			var re *cli.RegressionError
			switch {
			case tt.want == 0 && r.err != nil:
				t.Errorf("%s: %v, want exit 0\n%s", strings.Join(tt.args, " "), r.err, r.stdout)
			case tt.want > 0 && (!errors.As(r.err, &re) || re.Count != tt.want):
				t.Errorf("%s: %v, want %d regressions\n%s", strings.Join(tt.args, " "), r.err, tt.want, r.stdout)
			}
		})
	}
}
