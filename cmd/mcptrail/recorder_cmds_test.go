package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/e2e/golden")

const goldenDir = "../../testdata/e2e/golden"

// golden compares got with the named golden file; -update rewrites it.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (create it with go test ./cmd/mcptrail -run %s -update): %v", t.Name(), err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (if the change is intended: go test ./cmd/mcptrail -run %s -update)\ngot:\n%s\nwant:\n%s", path, t.Name(), got, want)
	}
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).UnixNano()

func hop(req string, seq uint32, h recorder.Hop, offUs, durUs int64, o recorder.Outcome, fill func(*recorder.Event)) recorder.Event {
	e := recorder.Event{
		EventID: req + "-" + h.String(), RequestID: req, SessionID: "sess-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		Hop: h, Seq: seq, TimeNs: t0 + offUs*1000, DurationUs: durUs, Outcome: o,
		Method: "tools/call", Target: "crm.search", Principal: "alice", AuthDecision: "allowed", AuthRule: "crm.*",
		ClientName: "claude-code", ClientVersion: "2.1", ProtocolVersion: "2025-11-25", GatewayInstance: "gw-1", GatewayVersion: "v0.3.0",
	}
	if h >= recorder.HopRoute {
		e.Server, e.Backend, e.RouteRule = "crm", "crm", "namespace:crm"
	}
	if fill != nil {
		fill(&e)
	}
	return e
}

func successTrace(req string, startUs int64) []recorder.Event {
	return []recorder.Event{
		hop(req, 0, recorder.HopInbound, startUs, 120, recorder.OutcomeOK, func(e *recorder.Event) {
			e.RPCID, e.RequestBytes = "7", 212
			e.Params = []byte(`{"name":"crm.search","arguments":{"query":"acme corp","api_key":"«redacted:api_key:hmac:0123456789abcdef»"}}`)
			e.RedactionCount = 1
		}),
		hop(req, 1, recorder.HopAuth, startUs+120, 15, recorder.OutcomeOK, nil),
		hop(req, 2, recorder.HopRoute, startUs+140, 0, recorder.OutcomeOK, nil),
		hop(req, 3, recorder.HopUpstream, startUs+150, 41_500, recorder.OutcomeOK, func(e *recorder.Event) {
			e.Attempt, e.UpstreamVersion, e.TTFBUs, e.ResponseBytes = 1, "2025-06-18", 39_800, 3400
			e.Result = []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("Acme Corp, 1 Infinite Loop; ", 8) + `"}],"isError":false}`)
		}),
		hop(req, 4, recorder.HopResponse, startUs, 41_900, recorder.OutcomeOK, func(e *recorder.Event) { e.ResponseBytes = 3400 }),
	}
}

func deniedTrace() []recorder.Event {
	deny := func(e *recorder.Event) {
		e.Principal, e.AuthDecision, e.AuthRule, e.Target = "bob", "denied", "", "crm.delete"
	}
	return []recorder.Event{
		hop("01JDENIED0000000000000000", 0, recorder.HopInbound, 0, 90, recorder.OutcomeOK, deny),
		hop("01JDENIED0000000000000000", 1, recorder.HopAuth, 90, 10, recorder.OutcomeDenied, deny),
		hop("01JDENIED0000000000000000", 2, recorder.HopResponse, 0, 130, recorder.OutcomeDenied, func(e *recorder.Event) {
			deny(e)
			e.ErrorCode, e.ErrorMessage = -32003, "tool crm.delete is not allowed for principal bob"
			e.Result = []byte(`{"code":-32003,"message":"tool crm.delete is not allowed for principal bob","data":{"request_id":"01JDENIED0000000000000000"}}`)
		}),
	}
}

func timeoutTrace() []recorder.Event {
	const req = "01JTIMEOUT000000000000000"
	return []recorder.Event{
		hop(req, 0, recorder.HopInbound, 0, 80, recorder.OutcomeOK, nil),
		hop(req, 1, recorder.HopAuth, 80, 12, recorder.OutcomeOK, nil),
		hop(req, 2, recorder.HopRoute, 95, 0, recorder.OutcomeOK, nil),
		hop(req, 3, recorder.HopNotification, 300_000, 0, recorder.OutcomeOK, func(e *recorder.Event) { e.Method = "notifications/progress" }),
		hop(req, 4, recorder.HopUpstream, 100, 600_000, recorder.OutcomeTransportError, func(e *recorder.Event) {
			e.Attempt, e.ErrorMessage = 1, "crm: request timed out after 600ms"
		}),
		hop(req, 5, recorder.HopResponse, 0, 600_400, recorder.OutcomeTransportError, func(e *recorder.Event) {
			e.ErrorCode, e.ErrorMessage = -32001, "mcptrail: crm did not answer within 600ms"
		}),
	}
}

func TestRenderTraceGolden(t *testing.T) {
	tests := []struct {
		name string
		evs  []recorder.Event
		opts traceOptions
	}{
		{"success", successTrace("01JSUCCESS000000000000000", 0), traceOptions{}},
		{"success_payloads", successTrace("01JSUCCESS000000000000000", 0), traceOptions{FullPayloads: true}},
		{"denied", deniedTrace(), traceOptions{}},
		{"timeout", timeoutTrace(), traceOptions{}},
		{"two_requests", append(successTrace("01JFIRST00000000000000000", 0), successTrace("01JSECOND0000000000000000", 50_000)...), traceOptions{BarWidth: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := renderTrace(&buf, tt.evs, tt.opts); err != nil {
				t.Fatal(err)
			}
			golden(t, "trace_"+tt.name+".txt", buf.Bytes())
		})
	}
}

func TestTraceJSONGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := writeTraceJSON(&buf, deniedTrace()); err != nil {
		t.Fatal(err)
	}
	golden(t, "trace_denied.json", buf.Bytes())
}

func TestBar(t *testing.T) {
	tests := []struct {
		off, dur, span int64
		width          int
		want           string
	}{
		{0, 100, 100, 4, "|████|"},
		{0, 0, 100, 4, "|│···|"},
		{50, 50, 100, 4, "|··██|"},
		{99, 1, 100, 4, "|···█|"},
		{0, 1, 100, 4, "|█···|"}, // at least one cell
		{0, 0, 0, 3, "|│··|"},    // instant request
		{120, 10, 100, 4, "|···█|"},
	}
	for _, tt := range tests {
		if got := bar(tt.off, tt.dur, tt.span, tt.width); got != tt.want {
			t.Errorf("bar(%d, %d, %d, %d) = %q, want %q", tt.off, tt.dur, tt.span, tt.width, got, tt.want)
		}
	}
}

func TestFmtDur(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0µs"}, {850 * time.Microsecond, "850µs"}, {1234 * time.Microsecond, "1.23ms"}, {41_900 * time.Microsecond, "41.9ms"},
		{600_400 * time.Microsecond, "600ms"}, {1250 * time.Millisecond, "1.25s"}, {90 * time.Second, "1m30s"},
	}
	for _, tt := range tests {
		if got := fmtDur(tt.d); got != tt.want {
			t.Errorf("fmtDur(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestPreview(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{`{ "a" : 1 }`, 20, `{"a":1}`},
		{"not\njson  at all", 40, "not json at all"},
		{`{"k":"ééééé"}`, 9, `{"k":"é… (18B)`}, // cut on a rune boundary
	}
	for _, tt := range tests {
		if got := preview([]byte(tt.in), tt.max); got != tt.want {
			t.Errorf("preview(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func sampleCalls() []clickhouse.Call {
	at := time.Unix(0, t0).UTC()
	return []clickhouse.Call{
		{Time: at.Add(2 * time.Second), RequestID: "01JTIMEOUT000000000000000", Principal: "alice", Method: "tools/call", Server: "crm", Target: "crm.search",
			Outcome: recorder.OutcomeTransportError, ErrorCode: -32001, ErrorMessage: "mcptrail: crm did not answer within 600ms", Duration: 600400 * time.Microsecond},
		{Time: at.Add(time.Second), RequestID: "01JDENIED0000000000000000", Principal: "bob", Method: "tools/call", Target: "crm.delete",
			Outcome: recorder.OutcomeDenied, ErrorCode: -32003, ErrorMessage: "tool crm.delete is not allowed for principal bob", Duration: 130 * time.Microsecond},
		{Time: at, RequestID: "01JSUCCESS000000000000000", Method: "initialize", Outcome: recorder.OutcomeOK, Duration: 900 * time.Microsecond},
	}
}

func TestRenderCallsGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := renderCalls(&buf, sampleCalls()); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("---\n")
	if err := renderCalls(&buf, nil); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("---\n")
	if err := writeCallsJSON(&buf, sampleCalls()); err != nil {
		t.Fatal(err)
	}
	golden(t, "calls.txt", buf.Bytes())
}

func TestAuditFormatsGolden(t *testing.T) {
	at := time.Unix(0, t0).UTC()
	rows := []clickhouse.AuditRow{
		{Time: at, Principal: "alice", Method: "tools/call", Target: "crm.search", Server: "crm", Decision: "allowed", Rule: "role:support/tools:crm.*",
			Roles: []string{"support", "oncall"}, Outcome: recorder.OutcomeOK, RequestID: "01JSUCCESS000000000000000", SessionID: "sess-1", ClientName: "claude-code", Duration: 41900 * time.Microsecond},
		{Time: at.Add(time.Second), Principal: "bob", Method: "tools/call", Target: "crm.delete, \"quoted\"", Decision: "denied",
			Outcome: recorder.OutcomeDenied, ErrorCode: -32003, RequestID: "01JDENIED0000000000000000", Duration: 130 * time.Microsecond},
	}
	for _, format := range []string{"table", "csv", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := newAuditWriter(&buf, format)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if err := w.write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.close(); err != nil {
				t.Fatal(err)
			}
			golden(t, "audit."+format, buf.Bytes())
		})
	}
	if _, err := newAuditWriter(&bytes.Buffer{}, "xml"); err == nil || !strings.Contains(err.Error(), `--format "xml"`) {
		t.Errorf("newAuditWriter(xml) error = %v, want one naming --format", err)
	}
}

const sampleStatusz = `{"version":"v0.3.0","instance":"gw-1","ready":true,"requests":1520,"errors":12,"denied":3,"dropped_stream_messages":0,"sessions":4,
"backends":[{"name":"crm","transport":"http","ready":true,"protocol_version":"2025-06-18","tools":12},
{"name":"files","transport":"stdio","ready":false,"tools":0,"last_error":"starting npx: exec: \"npx\": executable file not found in $PATH"}],
"recorder":{"healthy":false,"problems":["spool nearly full: events will be dropped","storage writes failing since 2026-11-24T11:58:00Z: writing batch: dial tcp 127.0.0.1:41234: connect: connection refused"],
"ready_when_degraded":true,"storage":{"addr":"127.0.0.1:41234","connected":true,
"local":{"dir":"/var/lib/mcptrail/clickhouse","running":true,"pid":4242,"restarts":1,"last_exit":"signal: killed","last_exit_at":"2026-11-24T11:58:00Z"}},
"pipeline":{"Enqueued":7600,"Spooled":7600,"Written":7420,"Retried":2,"Quarantined":100,"Dropped":0,"QueueLen":0,
"SpoolBytes":912680550,"SpoolSegments":14,"Fsyncs":310,"QuarantineFiles":1,"QuarantineBytes":20480,"Overflow":"drop","MaxDiskBytes":1073741824,
"SpoolGrowthPerSec":1048576,"SpoolFullIn":154000000000,"StorageFailing":true,"StorageFailingSince":"2026-11-24T11:58:00Z",
"WriteLatencyLast":18500000,"WriteLatencyAvg":21250000,"LastError":"writing batch: dial tcp 127.0.0.1:41234: connect: connection refused"}}}`

func TestRenderStatusGolden(t *testing.T) {
	tests := []struct{ name, raw string }{
		{"recording", sampleStatusz},
		{"no_recorder", `{"version":"dev","instance":"h","ready":false,"requests":0,"errors":0,"denied":0,"dropped_stream_messages":0,"sessions":0,"backends":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseStatus([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := renderStatus(&buf, "http://127.0.0.1:8080", st); err != nil {
				t.Fatal(err)
			}
			golden(t, "status_"+tt.name+".txt", buf.Bytes())
		})
	}
}

func TestParseWindow(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		since, until         string
		wantSince, wantUntil time.Time
		wantErr              string
	}{
		{since: "1h", wantSince: now.Add(-time.Hour)},
		{since: "90d", wantSince: now.Add(-90 * 24 * time.Hour)},
		{since: "1d12h", until: "1d", wantSince: now.Add(-36 * time.Hour), wantUntil: now.Add(-24 * time.Hour)},
		{since: "2026-11-01", until: "2026-11-02T06:00:00Z", wantSince: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), wantUntil: time.Date(2026, 11, 2, 6, 0, 0, 0, time.UTC)},
		{since: "", wantSince: time.Time{}},
		{since: "3x", wantErr: `--since "3x": want a duration`},
		{since: "-1h", wantErr: `--since "-1h"`},
		{since: "1h", until: "2h", wantErr: "is not after --since"},
		{since: "1h", until: "1h", wantErr: "is not after --since"},
		{since: "2026-12-01", wantErr: "is in the future"},
		{since: "1h", until: "yesterday", wantErr: `--until "yesterday"`},
	}
	for _, tt := range tests {
		s, u, err := parseWindow(tt.since, tt.until, now)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseWindow(%q, %q) error = %v, want %q", tt.since, tt.until, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !s.Equal(tt.wantSince) || !u.Equal(tt.wantUntil) {
			t.Errorf("parseWindow(%q, %q) = %v, %v, %v; want %v, %v", tt.since, tt.until, s, u, err, tt.wantSince, tt.wantUntil)
		}
	}
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"1h", "90d", "1d12h", "2026-11-01", "2026-11-02T06:00:00Z", "3x", "", "-1h", "36501d"} {
		f.Add(s, "")
		f.Add("100d", s)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, since, until string) {
		s, u, err := parseWindow(since, until, now)
		if err != nil {
			return
		}
		if s.After(now) {
			t.Errorf("parseWindow(%q, %q) accepted since %v after now", since, until, s)
		}
		if !u.IsZero() && !u.After(s) {
			t.Errorf("parseWindow(%q, %q) accepted until %v not after since %v", since, until, u, s)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(sampleStatusz))
	f.Add([]byte(`{"recorder":null}`))
	f.Add([]byte(`{"recorder":{"pipeline":{"Enqueued":-1}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := parseStatus(raw)
		if err != nil {
			return
		}
		if err := renderStatus(&bytes.Buffer{}, "http://x", st); err != nil {
			t.Errorf("renderStatus after a successful parse: %v", err)
		}
	})
}

func TestStoreFlagsResolve(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "ch")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, "config.xml"), []byte("<yandex>\n  <tcp_port>41234</tcp_port>\n</yandex>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The password that serve's supervised local server keeps next to its data.
	if err := os.WriteFile(filepath.Join(local, "password"), []byte("local-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	servers := "servers:\n  - name: tb\n    url: http://127.0.0.1:1/mcp\n"
	remote := write("remote.yaml", servers+"recorder:\n  clickhouse:\n    addr: [\"ch1:9000\", \"ch2:9000\"]\n    database: audit_db\n")
	localCfg := write("local.yaml", servers+"recorder:\n  clickhouse:\n    local_dir: "+local+"\n")
	tests := []struct {
		name      string
		f         storeFlags
		wantAddr  string
		wantDB    string
		wantErr   string
		wantSrcIn string
	}{
		{name: "flag wins", f: storeFlags{configPath: remote, configSet: true, addr: "db.internal", database: "x"}, wantAddr: "db.internal:9000", wantDB: "x", wantSrcIn: "--clickhouse"},
		{name: "config addr", f: storeFlags{configPath: remote, configSet: true}, wantAddr: "ch1:9000,ch2:9000", wantDB: "audit_db", wantSrcIn: "recorder.clickhouse.addr"},
		{name: "config local dir", f: storeFlags{configPath: localCfg, configSet: true}, wantAddr: "127.0.0.1:41234", wantDB: "mcptrail", wantSrcIn: local},
		{name: "missing explicit config", f: storeFlags{configPath: filepath.Join(dir, "nope.yaml"), configSet: true}, wantErr: "nope.yaml"},
		{name: "no local server", f: storeFlags{configPath: filepath.Join(dir, "nope.yaml")}, wantErr: "start the gateway with `mcptrail serve`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a := strings.Join(got.cfg.Addr, ","); a != tt.wantAddr || got.cfg.Database != tt.wantDB || !strings.Contains(got.source, tt.wantSrcIn) {
				t.Errorf("resolve() = %s %s (from %s), want %s %s (from …%s…)", a, got.cfg.Database, got.source, tt.wantAddr, tt.wantDB, tt.wantSrcIn)
			}
			if wantPW := tt.wantSrcIn == local; (got.cfg.Password == "local-secret") != wantPW {
				t.Errorf("resolve() password %q, want the local server's password only for the local server", got.cfg.Password)
			}
		})
	}
}

// TestRecorderRequeue: the command hands quarantined batches back to the
// spool, where a running or the next pipeline adopts them.
func TestRecorderRequeue(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, recorder.QuarantineDir)
	if err := os.MkdirAll(q, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(q, "01JSEG-3.seg"), []byte("batch"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		cmd := newRecorderCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"requeue", "--spool-dir", dir})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if out := run(); !strings.Contains(out, "requeued 1 of 1 quarantined batches") {
		t.Errorf("requeue said %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "01JSEG-3.requeued")); err != nil {
		t.Errorf("batch not handed back: %v", err)
	}
	if out := run(); !strings.Contains(out, "nothing to requeue") {
		t.Errorf("second requeue said %q", out)
	}
}
