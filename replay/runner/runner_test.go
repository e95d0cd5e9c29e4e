package runner_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/bundle"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
	"github.com/mcptrail/mcptrail/replay/mockserver"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/runner"
	"github.com/mcptrail/mcptrail/replay/secrets"
)

func mustSecrets(t testing.TB, lines string) *secrets.Secrets {
	t.Helper()
	s, err := secrets.Parse(strings.NewReader(lines), "test.env")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The recording itself is what the rest relies on: redacted payloads with
// placeholders, and the backend's lists recoverable from the client's.
func TestRecordingIsReplayable(t *testing.T) {
	events := recordTestbackend(t)
	var redacted bool
	for _, e := range events {
		if e.Hop == recorder.HopUpstream && bytes.Contains(e.Params, []byte("«redacted:bearer:")) {
			redacted = true
		}
		if bytes.Contains(e.Params, []byte(secretToken)) || bytes.Contains(e.Result, []byte(secretToken)) {
			t.Fatalf("secret recorded in clear: %s %s", e.Params, e.Result)
		}
	}
	if !redacted {
		t.Fatal("no upstream hop carries the bearer placeholder")
	}
	lists := replay.BackendLists(events, ".")
	ro := replay.ReadOnlyTools(lists)
	for tool, want := range map[string]bool{"echo": true, "add": true, "now": true, "write_note": false} {
		got, ok := ro["backend"][tool]
		if !ok || got != want {
			t.Errorf("ReadOnlyTools[backend][%s] = %v (known %v), want %v", tool, got, ok, want)
		}
	}
	if !bytes.Contains(lists["backend"]["resources/list"], []byte(`"uri":"test://static/1"`)) {
		t.Errorf("resources/list of backend = %s", lists["backend"]["resources/list"])
	}
}

func TestMockModeReplaysIdentically(t *testing.T) {
	events := recordTestbackend(t)
	reqs := replay.Requests(events)
	gw, _ := mockGateway(t, events, nil, nil)
	cases, err := runner.Replay(context.Background(), reqs, runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(reqs) - 1; len(cases) != want { // initialize only sets the session up
		t.Fatalf("got %d cases, want %d:\n%s", len(cases), want, summary(cases))
	}
	if st := byStatus(cases); st[report.StatusIdentical] != len(cases) {
		t.Fatalf("mock replay not identical: %v\n%s", st, summary(cases))
	}
}

// A gateway regression is caught by mock mode while no backend is touched:
// a policy that now denies a tool, a namespace separator that renames every
// tool.
func TestMockModeCatchesGatewayRegressions(t *testing.T) {
	events := recordTestbackend(t)
	reqs := replay.Requests(events)
	sum := sha256.Sum256([]byte("replay-token"))
	tests := []struct {
		name    string
		cfg     *config.Config
		tokens  map[string]string
		changed []string // tools whose case must change; every other case identical
	}{
		{
			name: "policy denies write_note",
			cfg: &config.Config{Servers: []config.Server{{Name: "backend"}}, Auth: config.Auth{Tokens: []config.Token{
				{Name: "ci", SHA256: hex.EncodeToString(sum[:]), Tools: []string{"backend.echo", "backend.add", "backend.now", "backend.fail", "backend.slow", "backend.no_such_tool"},
					Prompts: []string{"*"}, Resources: []string{"*"}, Completions: []string{"*"}},
			}}},
			tokens: map[string]string{"": "replay-token"},
			// tools/list is filtered by the policy too.
			changed: []string{"backend.write_note", "tools/list"},
		},
		{
			name:    "namespace separator changed",
			cfg:     &config.Config{NamespaceSeparator: "__", Servers: []config.Server{{Name: "backend"}}},
			changed: []string{"backend.echo", "backend.add", "backend.now", "backend.fail", "backend.write_note", "backend.slow", "backend.greet", "backend.no_such_tool", "tools/list", "prompts/list"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw, _ := mockGateway(t, events, tt.cfg, nil)
			cases, err := runner.Replay(context.Background(), reqs, runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true, Tokens: tt.tokens})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				want := report.StatusIdentical
				if slices.Contains(tt.changed, c.Tool()) {
					want = report.StatusChanged
				}
				if c.Status != want {
					t.Errorf("%s: %s, want %s\n%s", c.Tool(), c.Status, want, summary(cases))
				}
			}
			if tt.name == "policy denies write_note" {
				c := find(t, cases, "backend.write_note", 0)
				if !c.Diff.OutcomeChanged() || !strings.HasPrefix(string(c.Diff.Changes[0].New), `"jsonrpc_error -32003: `) {
					t.Errorf("write_note change = %v, want an outcome change to the policy error", c.Diff.Changes)
				}
			}
		})
	}
}

func TestUpstreamModeFindsBackendRegression(t *testing.T) {
	events := recordTestbackend(t)
	reqs := replay.Requests(events)
	v2, url := startBackend(t, "v2")
	rep, err := runner.Run(context.Background(), reqs, runner.RunOptions{
		Options: runner.Options{Mode: runner.ModeUpstream, Targets: map[string]config.Server{"backend": {Name: "backend", Transport: "http", URL: url}},
			Secrets: mustSecrets(t, "bearer="+secretToken)},
		BaselineTwice: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var changedTools []string
	for _, c := range rep.Cases {
		if c.Status == report.StatusChanged {
			changedTools = append(changedTools, c.Tool())
		}
	}
	if !slices.Equal(changedTools, []string{"backend.add"}) {
		t.Fatalf("changed = %v, want exactly backend.add\n%s", changedTools, summary(rep.Cases))
	}
	add := find(t, rep.Cases, "backend.add", 0)
	if !slices.ContainsFunc(add.Diff.Changes, func(c diff.Change) bool {
		return c.Path == "/content/0/text" && string(c.Old) == `"5"` && string(c.New) == `"6"`
	}) {
		t.Errorf("add changes = %v, want /content/0/text 5 → 6", add.Diff.Changes)
	}
	if rep.Regressions() == 0 {
		t.Error("Regressions() = 0, want the add regression to fail the run")
	}
	if c := find(t, rep.Cases, "backend.now", 0); c.Status != report.StatusNoise {
		t.Errorf("now: %s, want noise", c.Status)
	}
	// Write tools are skipped by default and never reach the backend.
	if c := find(t, rep.Cases, "backend.write_note", 0); c.Status != report.StatusSkipped || !strings.Contains(c.Reason, "--allow-writes") {
		t.Errorf("write_note: %s (%s), want skipped", c.Status, c.Reason)
	}
	if n := len(v2.Notes()); n != 0 {
		t.Errorf("backend stored %d notes, want 0", n)
	}
	// Gateway-served requests (lists, ping) have no upstream hop; the
	// backend's catalog is compared on its own (identical here).
	for _, c := range rep.Cases {
		if c.Method == "ping" || c.Method == "tools/list" && !strings.HasPrefix(c.RequestID, "catalog ") {
			t.Errorf("upstream mode replayed %s", c.Method)
		}
	}
	if c := find(t, rep.Cases, "tools/list backend", 0); c.RequestID != "catalog backend tools/list" || c.Status != report.StatusIdentical {
		t.Errorf("catalog case %s: %s\n%s", c.RequestID, c.Status, summary(rep.Cases))
	}
}

func TestUpstreamModeAllowWrites(t *testing.T) {
	events := recordTestbackend(t)
	b, url := startBackend(t, "v1")
	cases, err := runner.Replay(context.Background(), replay.Requests(events), runner.Options{Mode: runner.ModeUpstream,
		Targets: map[string]config.Server{"backend": {Name: "backend", URL: url, Transport: "http"}}, AllowWrites: true,
		Ignore: mustIgnore(t, "backend.now:/content/0/text"), Secrets: mustSecrets(t, "bearer="+secretToken)})
	if err != nil {
		t.Fatal(err)
	}
	if st := byStatus(cases); st[report.StatusIdentical] != len(cases) {
		t.Fatalf("statuses %v, want all identical\n%s", st, summary(cases))
	}
	if got := b.Notes(); !slices.Equal(got, []string{"remember"}) {
		t.Errorf("notes = %v, want [remember]", got)
	}
}

func mustIgnore(t testing.TB, rules ...string) diff.IgnoreRules {
	t.Helper()
	r, err := diff.ParseIgnoreRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSecrets(t *testing.T) {
	events := recordTestbackend(t)
	reqs := replay.Requests(events)
	for _, tt := range []struct {
		name    string
		secrets string
		want    report.Status
		sent    bool
	}{
		{"secret supplied", "bearer=" + secretToken, report.StatusIdentical, true},
		{"secret missing", "", report.StatusSkipped, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []runner.Mode{runner.ModeUpstream, runner.ModeE2E} {
				b, url := startBackend(t, "v1")
				o := runner.Options{Mode: mode, Secrets: mustSecrets(t, tt.secrets), Ignore: mustIgnore(t, "backend.now:/content/0/text")}
				srv := config.Server{Name: "backend", Transport: "http", URL: url}
				if mode == runner.ModeUpstream {
					o.Targets = map[string]config.Server{"backend": srv}
				} else {
					gw, err := runner.StartGateway(context.Background(), &config.Config{Servers: []config.Server{srv}}, 10*time.Second, nil)
					if err != nil {
						t.Fatal(err)
					}
					defer gw.Close()
					o.GatewayURL = gw.MCPURL
				}
				cases, err := runner.Replay(context.Background(), reqs, o)
				if err != nil {
					t.Fatal(err)
				}
				c := find(t, cases, "backend.echo", 1)
				if c.Status != tt.want {
					t.Errorf("%s: secret echo %s (%s), want %s\n%s", mode, c.Status, c.Reason, tt.want, summary(cases))
				}
				if tt.want == report.StatusSkipped && !strings.Contains(c.Reason, "MCPTRAIL_SECRET_BEARER") {
					t.Errorf("%s: reason %q does not say how to supply the secret", mode, c.Reason)
				}
				echoes := 0
				for _, s := range b.Seen() {
					if s.Tool == "echo" {
						echoes++
					}
				}
				if want := map[bool]int{true: 2, false: 1}[tt.sent]; echoes != want {
					t.Errorf("%s: backend saw %d echo calls, want %d", mode, echoes, want)
				}
			}
		})
	}
}

func TestE2EMode(t *testing.T) {
	events := recordTestbackend(t)
	_, url := startBackend(t, "v1")
	gw, err := runner.StartGateway(context.Background(), &config.Config{Servers: []config.Server{{Name: "backend", Transport: "http", URL: url}}}, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	rep, err := runner.Run(context.Background(), replay.Requests(events), runner.RunOptions{
		Options:       runner.Options{Mode: runner.ModeE2E, GatewayURL: gw.MCPURL, AllowWrites: true, Secrets: mustSecrets(t, "bearer="+secretToken)},
		BaselineTwice: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cases {
		want := report.StatusIdentical
		switch c.Tool() {
		case "backend.now":
			want = report.StatusNoise
		case "backend.write_note":
			// Pass one stores note 1 as recorded; pass two's "note 2" only
			// marks the path noisy, so the reported case stays identical.
		}
		if c.Status != want {
			t.Errorf("%s: %s, want %s\n%s", c.Tool(), c.Status, want, summary(rep.Cases))
		}
	}
	if rep.Regressions() != 0 {
		t.Errorf("Regressions() = %d, want 0", rep.Regressions())
	}
}

// A bundle file carries everything mock mode needs.
func TestMockModeFromBundle(t *testing.T) {
	events := recordTestbackend(t)
	var buf bytes.Buffer
	if err := bundle.Write(&buf, &bundle.Bundle{Header: bundle.Header{ConfigHash: "cfg-hash-1"}, Events: events}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := mockGateway(t, b.Events, nil, b.Tools)
	cases, err := runner.Replay(context.Background(), replay.Requests(b.Events), runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st := byStatus(cases); st[report.StatusIdentical] != len(cases) || len(cases) == 0 {
		t.Fatalf("statuses %v\n%s", st, summary(cases))
	}
}

func TestParseTarget(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    config.Server
		wantErr bool
	}{
		{in: "crm=http://127.0.0.1:3001/mcp", want: config.Server{Name: "crm", Transport: "http", URL: "http://127.0.0.1:3001/mcp"}},
		{in: "crm=sse:http://h/sse", want: config.Server{Name: "crm", Transport: "sse", URL: "http://h/sse"}},
		{in: "fs=stdio:node server.js --root /tmp", want: config.Server{Name: "fs", Transport: "stdio", Command: "node", Args: []string{"server.js", "--root", "/tmp"}}},
		{in: "fs=stdio:", wantErr: true},
		{in: "=http://x", wantErr: true},
		{in: "crm=ftp://x", wantErr: true},
		{in: "crm", wantErr: true},
	} {
		got, err := runner.ParseTarget(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTarget(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (got.Name != tt.want.Name || got.Transport != tt.want.Transport || got.URL != tt.want.URL ||
			got.Command != tt.want.Command || !slices.Equal(got.Args, tt.want.Args)) {
			t.Errorf("ParseTarget(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// BenchmarkMockReplay measures replay throughput in mock mode: recorded
// client requests through this build's gateway to the replay mock.
func BenchmarkMockReplay(b *testing.B) {
	_, url := startBackend(b, "v1")
	gwURL, rec := recordingGateway(b, &config.Config{Servers: []config.Server{{Name: "backend", Transport: "http", URL: url}}})
	const sessions, perSession = 4, 50
	for range sessions {
		p := newPeer(b, gwURL, nil)
		for i := range perSession {
			p.Tool("backend.add", map[string]any{"a": i, "b": 1})
		}
	}
	events := rec.All()
	reqs := replay.Requests(events)
	gw, store := mockGateway(b, events, nil, nil)
	o := runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true, Concurrency: sessions}
	b.ReportAllocs()
	n := 0
	start := time.Now()
	for b.Loop() {
		store.Reset()
		cases, err := runner.Replay(context.Background(), reqs, o)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range cases {
			if c.Status != report.StatusIdentical {
				b.Fatalf("%s: %s %s", c.Tool(), c.Status, c.Reason)
			}
		}
		n += len(cases)
	}
	if n == 0 {
		b.Fatal("nothing replayed")
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
}

// A candidate gateway whose config routes namespace alpha to beta's backend
// (here: beta's recording on `mcptrail mock`) is caught by mock mode with
// --gateway-url, while beta's own traffic stays identical.
func TestMockModeCatchesWrongRoute(t *testing.T) {
	_, alphaURL := startBackend(t, "v1")
	_, betaURL := startBackend(t, "v2")
	gwURL, rec := recordingGateway(t, &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: alphaURL}, {Name: "beta", Transport: "http", URL: betaURL}}})
	p := newPeer(t, gwURL, nil)
	p.Call("tools/list", map[string]any{})
	for _, ns := range []string{"alpha", "beta"} {
		p.Tool(ns+".add", map[string]any{"a": 2, "b": 3})
		p.Tool(ns+".echo", map[string]any{"message": "from " + ns})
	}
	events := rec.All()

	store, err := replay.NewMockStore(events, match.Config{}, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	mock, err := runner.StartMock(store, mockserver.Config{}, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mock.Close()
	candidate := &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: mock.URL + "/beta/mcp"}, // the bug
		{Name: "beta", Transport: "http", URL: mock.URL + "/beta/mcp"},
	}}
	gw, err := runner.StartGateway(context.Background(), candidate, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	cases, err := runner.Replay(context.Background(), replay.Requests(events), runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]report.Status{
		"tools/list": report.StatusIdentical, // both variants list the same tools
		"alpha.add":  report.StatusChanged, "alpha.echo": report.StatusChanged,
		"beta.add": report.StatusIdentical, "beta.echo": report.StatusIdentical,
	}
	for _, c := range cases {
		if c.Status != want[c.Tool()] {
			t.Errorf("%s: %s, want %s\n%s", c.Tool(), c.Status, want[c.Tool()], summary(cases))
		}
	}
	if c := find(t, cases, "alpha.add", 0); !slices.ContainsFunc(c.Diff.Changes, func(ch diff.Change) bool { return ch.Path == "/content/0/text" }) {
		t.Errorf("alpha.add changes = %v, want /content/0/text", c.Diff.Changes)
	}
}

// TestE2EModeSkipsWriteToolsByDefault: e2e reaches live backends, so like
// upstream mode it replays only tools annotated read-only unless
// AllowWrites; the skipped write never reaches the backend.
func TestE2EModeSkipsWriteToolsByDefault(t *testing.T) {
	events := recordTestbackend(t)
	b, url := startBackend(t, "v1")
	gw, err := runner.StartGateway(context.Background(), &config.Config{Servers: []config.Server{{Name: "backend", Transport: "http", URL: url}}}, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	cases, err := runner.Replay(context.Background(), replay.Requests(events), runner.Options{
		Mode: runner.ModeE2E, GatewayURL: gw.MCPURL, Secrets: mustSecrets(t, "bearer="+secretToken)})
	if err != nil {
		t.Fatal(err)
	}
	if c := find(t, cases, "backend.write_note", 0); c.Status != report.StatusSkipped || !strings.Contains(c.Reason, "--allow-writes") {
		t.Errorf("write_note: %s (%s), want skipped", c.Status, c.Reason)
	}
	if n := len(b.Notes()); n != 0 {
		t.Errorf("backend stored %d notes, want 0", n)
	}
	if c := find(t, cases, "backend.echo", 0); c.Status != report.StatusIdentical {
		t.Errorf("echo (read-only): %s (%s), want identical", c.Status, c.Reason)
	}
}

// Issue 8: with two backends, traffic that reaches the second one first made
// the mock gateway (without --config) list the second backend first, and
// every recorded tools/list came back as hundreds of positional changes.
// The mock gateway keeps the recorded catalog order.
func TestMockModeKeepsTheRecordedCatalogOrder(t *testing.T) {
	_, u1 := startBackend(t, "v1")
	_, u2 := startBackend(t, "v1")
	gwURL, rec := recordingGateway(t, &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: u1, Timeout: 10 * time.Second},
		{Name: "beta", Transport: "http", URL: u2, Timeout: 10 * time.Second},
	}})
	p := newPeer(t, gwURL, nil)
	p.Tool("beta.echo", map[string]any{"message": "first"})
	p.Tool("alpha.echo", map[string]any{"message": "second"})
	p.Call("tools/list", map[string]any{})
	p.Call("prompts/list", map[string]any{})
	events := rec.All()
	gw, _ := mockGateway(t, events, nil, nil)
	cases, err := runner.Replay(context.Background(), replay.Requests(events), runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := byStatus(cases); st[report.StatusIdentical] != len(cases) || len(cases) != 4 {
		t.Fatalf("mock replay of 4 requests: %v\n%s", st, summary(cases))
	}
}

// Issue 9.3: a call that timed out when recorded (-32004) replays in mock
// mode as the same timeout, not as -32001 "recorded transport_error".
func TestMockModeReproducesRecordedTimeouts(t *testing.T) {
	_, url := startBackend(t, "v1")
	gwURL, rec := recordingGateway(t, &config.Config{Servers: []config.Server{{Name: "backend", Transport: "http", URL: url, Timeout: 300 * time.Millisecond}}})
	p := newPeer(t, gwURL, nil)
	p.Tool("backend.echo", map[string]any{"message": "before"})
	if r := p.Tool("backend.slow", map[string]any{"steps": 4, "delay_ms": 250}); r.Error == nil || r.Error.Code != -32004 {
		t.Fatalf("recorded slow call = %+v, want a -32004 timeout", r)
	}
	p.Tool("backend.echo", map[string]any{"message": "after"})
	events := rec.All()
	gw, _ := mockGateway(t, events, nil, nil)
	cases, err := runner.Replay(context.Background(), replay.Requests(events), runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := byStatus(cases); st[report.StatusIdentical] != len(cases) || len(cases) != 3 {
		t.Fatalf("mock replay of a recorded timeout: %v\n%s", st, summary(cases))
	}
	// Labelled as calls and trace label it.
	if c := find(t, cases, "backend.slow", 0); c.Diff.OldOutcomeName != "transport_error" || c.Diff.NewOutcomeName != "transport_error" {
		t.Errorf("timeout labelled %s → %s, want transport_error as recorded", c.Diff.OldOutcomeName, c.Diff.NewOutcomeName)
	}
}

// TestMockConfigKeepsServerPolicy: the mock gateway changes how each backend
// is reached, not the policy it applies. A recording made with argument
// validation off (or with argument rules, output filters, no namespace)
// replayed through a mock that dropped them reported false regressions.
func TestMockConfigKeepsServerPolicy(t *testing.T) {
	off := false
	base := &config.Config{Servers: []config.Server{{
		Name: "everything", Transport: "stdio", Command: "node", Args: []string{"x.js"},
		Env: map[string]string{"TOKEN": "t"}, Headers: map[string]string{"A": "b"},
		NoNamespace: true, ValidateArguments: &off,
		Tools:  map[string]config.ToolSettings{"echo": {ValidateArguments: &off}},
		Output: config.OutputFilter{MaxBytes: 123},
	}}}
	got := runner.MockConfig(base, []string{"everything"}, "http://127.0.0.1:1/")
	s := got.Servers[0]
	if s.Transport != config.TransportHTTP || s.URL != "http://127.0.0.1:1/everything/mcp" {
		t.Errorf("mock server reached by %s %s, want http http://127.0.0.1:1/everything/mcp", s.Transport, s.URL)
	}
	if s.Command != "" || s.Args != nil || s.Env != nil || s.Headers != nil {
		t.Errorf("mock server keeps the real backend's launch or credentials: %+v", s)
	}
	if !s.NoNamespace || s.ValidateArguments == nil || *s.ValidateArguments || s.Tools["echo"].ValidateArguments == nil || s.Output.MaxBytes != 123 {
		t.Errorf("mock server lost the server's policy: %+v", s)
	}
	if base.Servers[0].Transport != "stdio" {
		t.Errorf("MockConfig changed its base config")
	}
}
