package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/recfmt"
	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Println("goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// fixture: an ok call (r-ok) and a failed one (r-fail) whose upstream hop
// timed out, in one session, and a call denied by policy (r-deny).
func fixture(base time.Time) []recorder.Event {
	mk := func(req string, seq uint32, hop recorder.Hop, offMs, durMs int64, o recorder.Outcome) recorder.Event {
		return recorder.Event{EventID: fmt.Sprintf("%s-%d", req, seq), RequestID: req, SessionID: "sess-1", TraceID: traceID, Hop: hop, Seq: seq,
			TimeNs: base.UnixNano() + offMs*1e6, DurationUs: durMs * 1000, Outcome: o, Method: "tools/call", Server: "everything",
			Target: "everything.echo", Principal: "alice", GatewayInstance: "gw-test", GatewayVersion: "dev", ConfigHash: "cfg123"}
	}
	ok := []recorder.Event{
		mk("r-ok", 0, recorder.HopInbound, 0, 0, recorder.OutcomeOK),
		mk("r-ok", 1, recorder.HopAuth, 0, 0, recorder.OutcomeOK),
		mk("r-ok", 2, recorder.HopRoute, 0, 0, recorder.OutcomeOK),
		mk("r-ok", 3, recorder.HopUpstream, 1, 5, recorder.OutcomeOK),
		mk("r-ok", 4, recorder.HopResponse, 0, 7, recorder.OutcomeOK),
	}
	ok[0].Params = []byte(`{"name":"everything.echo","arguments":{"message":"hi","password":"«redacted:password:hmac:0011»"}}`)
	ok[1].AuthDecision, ok[1].AuthRule = "allowed", "tools:*"
	ok[3].Backend, ok[3].Result, ok[3].PayloadTruncated = "everything", []byte(`{"content":[{"type":"text","text":"Echo: hi"}]}`), true
	fail := []recorder.Event{
		mk("r-fail", 0, recorder.HopInbound, 100, 0, recorder.OutcomeOK),
		mk("r-fail", 1, recorder.HopAuth, 100, 0, recorder.OutcomeOK),
		mk("r-fail", 2, recorder.HopUpstream, 101, 600, recorder.OutcomeTransportError),
		mk("r-fail", 3, recorder.HopResponse, 100, 602, recorder.OutcomeTransportError),
	}
	fail[1].AuthDecision, fail[1].AuthRule = "allowed", "tools:*"
	fail[2].Backend, fail[2].ErrorMessage = "everything", "upstream timeout after 600ms"
	fail[3].ErrorCode, fail[3].ErrorMessage = -32001, "everything: upstream timeout after 600ms"
	deny := []recorder.Event{
		mk("r-deny", 0, recorder.HopInbound, 200, 0, recorder.OutcomeOK),
		mk("r-deny", 1, recorder.HopAuth, 200, 0, recorder.OutcomeDenied),
		mk("r-deny", 2, recorder.HopResponse, 200, 1, recorder.OutcomeDenied),
	}
	for i := range deny {
		deny[i].Principal, deny[i].SessionID = "bob", "sess-2"
	}
	deny[1].AuthDecision, deny[1].AuthRule = "denied", "tools:default-deny"
	deny[2].ErrorCode, deny[2].ErrorMessage = -32001, "denied by policy"
	return append(append(ok, fail...), deny...)
}

type env struct {
	srv   *httptest.Server
	store *clickhouse.Store
	con   *Console
}

// newEnv records the fixture and a replay run into a fresh database on the
// shared test ClickHouse and serves a console over it.
func newEnv(t *testing.T, cfg Config) env {
	t.Helper()
	ch := chtest.Shared(t)
	sc := clickhouse.DefaultConfig()
	sc.Addr, sc.Database = []string{ch.Addr()}, chtest.Database(t, ch.Addr())
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Add(-10 * time.Minute)
	if err := st.WriteBatch(ctx, "b1", fixture(base)); err != nil {
		t.Fatal(err)
	}
	run := clickhouse.ReplayRun{ID: "run-1", Started: base, Finished: base.Add(time.Second), Mode: "mock", Target: "gateway"}
	if err := st.WriteReplayRun(ctx, run, []clickhouse.ReplayResult{
		{RequestID: "r-ok", Tool: "everything.echo", Status: clickhouse.ReplayChanged,
			Diff: `[{"path":"/content/0/text","kind":"value_changed","risk":"medium","old":"Echo: hi","new":"Echo: HI"}]`},
		{RequestID: "r-fail", Tool: "everything.echo", Status: clickhouse.ReplayChanged,
			Diff: `[{"path":"","kind":"outcome_changed","risk":"high","old":{"outcome":"transport_error","code":-32001},"new":{"outcome":"ok"}}]`},
		{RequestID: "r-deny", Tool: "everything.echo", Status: clickhouse.ReplayIdentical, Diff: `[{"path":"/_meta/ts","kind":"noise","risk":"none"}]`},
	}); err != nil {
		t.Fatal(err)
	}
	lazy, err := clickhouse.NewLazy(sc, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lazy.Close() })
	cfg.Store = lazy
	con, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	return env{srv: srv, store: st, con: con}
}

func get(t *testing.T, u string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// inlineRe finds what the CSP would block: inline script, style
// attributes or elements, event handler attributes, javascript: URLs.
var inlineRe = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>[^<]|<style|\sstyle=|\son[a-z]+=|javascript:|https?://(?:[^1]|1[^2])`)

// TestPages renders every page over real recordings and checks what each
// must show, the CSP header, and that no page needs inline script or style.
func TestPages(t *testing.T) {
	e := newEnv(t, Config{TraceURL: func() string { return "http://jaeger.test/trace/{trace_id}" }, Version: "test"})
	tests := []struct {
		name, path string
		status     int
		want       []string
		notWant    []string
	}{
		{"root redirects", "/console/", http.StatusSeeOther, nil, nil},
		{"calls", "/console/calls", 200, []string{"r-ok", "r-fail", "r-deny", "transport_error"}, nil},
		{"calls failed", "/console/calls?outcome=failed", 200, []string{"r-fail", "r-deny"}, []string{">r-ok<"}},
		{"calls by outcome", "/console/calls?outcome=transport_error", 200, []string{"r-fail", "-32001 everything: upstream timeout"}, []string{">r-ok<", ">r-deny<"}},
		{"calls as the form sends them", "/console/calls?since=1h&until=&principal=alice&server=&tool=&outcome=failed&decision=&limit=100", 200, []string{"r-fail"}, []string{">r-ok<", ">r-deny<"}},
		{"calls by decision", "/console/calls?decision=denied", 200, []string{"r-deny"}, []string{">r-fail<"}},
		{"calls by principal", "/console/calls?principal=bob", 200, []string{"r-deny"}, []string{">r-fail<"}},
		{"calls bad window", "/console/calls?since=yesterday-ish", 400, []string{"since &#34;yesterday-ish&#34;"}, nil},
		{"calls bad outcome", "/console/calls?outcome=meh", 400, []string{"outcome &#34;meh&#34;"}, nil},
		{"find jumps", "/console/find?id=r-fail", http.StatusSeeOther, nil, nil},
		{"trace", "/console/trace/r-fail", 200, []string{"inbound", "auth", "upstream", "response", "upstream timeout after 600ms",
			"<code>r-fail</code>", "cfg123", "gw-test", `href="http://jaeger.test/trace/` + traceID + `"`, "(code -32001)"}, nil},
		{"trace bodies", "/console/trace/r-ok", 200, []string{"&#34;message&#34;: &#34;hi&#34;", "«redacted:password:hmac:0011»",
			"truncated at recorder.payloads.max_bytes", "Echo: hi"}, nil},
		{"trace of a session", "/console/trace/sess-1", 200, []string{"r-ok", "r-fail"}, []string{"r-deny"}},
		{"trace of an OTel trace ID", "/console/trace/" + traceID, 200, []string{"r-ok", "r-fail"}, nil},
		{"trace unknown", "/console/trace/nope", 404, []string{"Nothing recorded for nope"}, nil},
		{"audit", "/console/audit", 200, []string{"3 rows match", "r-deny", "tools:default-deny", `href="/console/audit.csv"`}, nil},
		{"audit keeps the filter in the download links", "/console/audit?principal=bob&since=2h", 200, []string{`href="/console/audit.csv?principal=bob&amp;since=2h"`, `href="/console/audit.jsonl?principal=bob&amp;since=2h"`}, nil},
		{"calls live tail keeps the filter", "/console/calls?outcome=failed&principal=alice", 200, []string{`data-src="/console/calls.json?outcome=failed&amp;principal=alice"`}, nil},
		{"audit by rule", "/console/audit?rule=tools%3Adefault-deny", 200, []string{"1 rows match", "r-deny"}, []string{">r-ok<"}},
		{"replay runs", "/console/replays", 200, []string{"run-1", "mock"}, nil},
		{"replay run", "/console/replays/run-1", 200, []string{"/content/0/text", "&#34;Echo: hi&#34;", "&#34;Echo: HI&#34;", "outcome changed", "medium", "st-noise", `<code class="noisepath">/_meta/ts</code>`, "Noise (set aside): <code>/_meta/ts</code>"}, nil},
		{"replay unknown", "/console/replays/nope", 404, nil, nil},
		{"health without a gateway", "/console/health", 200, []string{"reachable", "No gateway runs in this process"}, nil},
		{"static css", "/console/static/console.css", 200, []string{"--fg"}, nil},
		{"static js", "/console/static/console.js", 200, []string{"calls.json"}, nil},
		{"unknown", "/console/nope", 404, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := get(t, e.srv.URL+tt.path)
			if status != tt.status {
				t.Fatalf("GET %s = %d, want %d\n%s", tt.path, status, tt.status, body)
			}
			if got := hdr.Get("Content-Security-Policy"); got != CSP {
				t.Errorf("GET %s: CSP %q, want %q", tt.path, got, CSP)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: body lacks %q\n%s", tt.path, w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("GET %s: body has %q", tt.path, w)
				}
			}
			if strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
				if m := inlineRe.FindString(strings.ReplaceAll(body, "http://jaeger.test/", "")); m != "" {
					t.Errorf("GET %s: page needs something the CSP forbids or another origin: %q", tt.path, m)
				}
			}
		})
	}
	// The replay page lists the outcome change before the other change.
	_, _, body := get(t, e.srv.URL+"/console/replays/run-1")
	if i, j := strings.Index(body, `aria-label="Request r-fail"`), strings.Index(body, `aria-label="Request r-ok"`); i < 0 || j < 0 || i > j {
		t.Errorf("replay run: outcome change (r-fail at %d) not listed before the value change (r-ok at %d)", i, j)
	}
}

// TestHealthWithGateway: inside serve, the health page shows the
// gateway's /statusz: backends with their circuit breaker, the recorder.
func TestHealthWithGateway(t *testing.T) {
	st := proxy.Status{Version: "v9", Instance: "gw-7", Ready: true, Requests: 42, Sessions: 3,
		Backends: []proxy.BackendStatus{{Name: "crm", Transport: "http", Ready: false, LastError: "dial tcp: refused", Circuit: "open", CircuitOpens: 2, ToolsOpen: 1}},
		Recorder: &recorder.Status{Healthy: false, Problems: []string{"spool 91% full"}, Pipeline: recorder.Stats{Written: 1234, Dropped: 5, QueueLen: 7}}}
	e := newEnv(t, Config{Status: func() proxy.Status { return st }})
	status, _, body := get(t, e.srv.URL+"/console/health")
	if status != http.StatusOK {
		t.Fatalf("health = %d\n%s", status, body)
	}
	for _, w := range []string{"gw-7 v9", "42 (0 errors", "crm", "open (opened 2×, 1 tools open)", "dial tcp: refused", "spool 91% full", "1234 written", "5 dropped", "7 events"} {
		if !strings.Contains(body, w) {
			t.Errorf("health lacks %q\n%s", w, body)
		}
	}
}

// TestCallsJSON: the live tail's endpoint gives the filtered calls.
func TestCallsJSON(t *testing.T) {
	e := newEnv(t, Config{})
	status, hdr, body := get(t, e.srv.URL+"/console/calls.json?outcome=failed")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("calls.json = %d %s", status, hdr.Get("Content-Type"))
	}
	if !strings.Contains(body, `"request_id":"r-fail"`) || !strings.Contains(body, `"request_id":"r-deny"`) || strings.Contains(body, `"request_id":"r-ok"`) {
		t.Errorf("calls.json?outcome=failed = %s", body)
	}
}

// TestAuditExport: the download is byte for byte what the CLI writes for
// the same filter (both through recfmt, from Store.Audit).
func TestAuditExport(t *testing.T) {
	e := newEnv(t, Config{})
	for _, format := range recfmt.AuditFormats {
		for _, q := range []string{"", "principal=bob", "decision=allowed", "tool=everything.*&since=1h"} {
			status, hdr, body := get(t, e.srv.URL+"/console/audit."+format+"?"+q)
			if status != 200 || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") {
				t.Fatalf("audit.%s?%s = %d %v", format, q, status, hdr)
			}
			vals, _ := url.ParseQuery(q)
			aq := clickhouse.AuditQuery{Principal: vals.Get("principal"), Decision: vals.Get("decision"), Tool: vals.Get("tool")}
			aq.Since, _ = recfmt.ParseWhen("since", cmpOr(vals.Get("since"), "30d"), time.Now())
			var want bytes.Buffer
			aw, _ := recfmt.NewAuditWriter(&want, format)
			if err := e.store.Audit(context.Background(), aq, aw.Write); err != nil {
				t.Fatal(err)
			}
			_ = aw.Close()
			if body != want.String() {
				t.Errorf("audit.%s?%s =\n%s\nwant\n%s", format, q, body, want.String())
			}
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestClickHouseDown: a stopped ClickHouse and a hung one (SIGSTOP) give
// an error page that names the problem, within the query deadline, never
// a hung page. Fails before the fix: without the deadline the hung server
// held the page until the client gave up.
func TestClickHouseDown(t *testing.T) {
	ch := chtest.StartForTest(t)
	sc := clickhouse.DefaultConfig()
	sc.Addr, sc.Database, sc.DialTimeout = []string{ch.Addr()}, "mcptrail", time.Second
	lazy, err := clickhouse.NewLazy(sc, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lazy.Close() })
	con, err := New(Config{Store: lazy, QueryTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	if status, _, body := get(t, srv.URL+"/console/calls"); status != 200 {
		t.Fatalf("calls with ClickHouse up = %d\n%s", status, body)
	}

	pid := ch.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/console/calls", "/console/trace/r-x", "/console/audit", "/console/replays", "/console/audit.csv"} {
		status, _, body := get(t, srv.URL+path)
		if status != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer in time (the console waits 2s per page)") {
			t.Errorf("GET %s with ClickHouse hung = %d, want 504 naming the deadline\n%s", path, status, body)
		}
	}
	if status, _, body := get(t, srv.URL+"/console/calls.json"); status != http.StatusServiceUnavailable || !strings.Contains(body, "error") {
		t.Errorf("calls.json with ClickHouse hung = %d %s, want 503 with an error", status, body)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ch.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	lazy.Close() // drop the pooled connections of the live server
	for _, path := range []string{"/console/calls", "/console/audit", "/console/health"} {
		status, _, body := get(t, srv.URL+path)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, ch.Addr()) {
			t.Errorf("GET %s with ClickHouse stopped = %d, want 503 naming %s\n%s", path, status, ch.Addr(), body)
		}
	}
}

// TestRequireToken: `mcptrail console` with an admin token: nothing
// without it (a login form, 401), the token as bearer or as the cookie the
// login sets, a wrong cookie said to be rejected, static files open, and a
// login posted from another origin refused.
func TestRequireToken(t *testing.T) {
	con, err := New(Config{Store: failingStore{}})
	if err != nil {
		t.Fatal(err)
	}
	tok := "console-admin-token"
	srv := httptest.NewServer(RequireToken(proxySHA(tok), con))
	t.Cleanup(srv.Close)
	tests := []struct {
		name   string
		hdr    []string
		path   string
		status int
		want   string
	}{
		{"no token", nil, "/console/health", 401, `name="token"`},
		{"client token", []string{"Authorization", "Bearer client"}, "/console/health", 401, "Admin access needed"},
		{"wrong cookie", []string{"Cookie", proxy.AdminCookie + "=wrong"}, "/console/health", 401, "was not accepted"},
		{"bearer", []string{"Authorization", "Bearer " + tok}, "/console/health", 503, "unreachable"},
		{"cookie", []string{"Cookie", proxy.AdminCookie + "=" + tok}, "/console/health", 503, "unreachable"},
		{"static open", nil, "/console/static/console.css", 200, "--fg"},
	}
	for _, tt := range tests {
		status, hdr, body := get(t, srv.URL+tt.path, tt.hdr...)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s: GET %s = %d, want %d with %q\n%s", tt.name, tt.path, status, tt.status, tt.want, body)
		}
		if hdr.Get("Content-Security-Policy") != CSP {
			t.Errorf("%s: no CSP on the answer", tt.name)
		}
	}
	post := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/login", strings.NewReader(url.Values{"token": {tok}, "next": {"/console/audit?x=1"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := post(srv.URL)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/audit?x=1" {
		t.Errorf("login = %d to %q, want 303 to /console/audit?x=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := resp.Cookies()
	if len(c) != 1 || c[0].Name != proxy.AdminCookie || c[0].Value != tok || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Path != "/console/" {
		t.Errorf("login cookie = %+v, want HttpOnly SameSite=Strict on /console/", c)
	}
	if resp := post("https://evil.example"); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-origin login = %d with cookies %v, want 403 and none", resp.StatusCode, resp.Cookies())
	}
}

func TestSafeNext(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/console/audit?since=1d", "/console/audit?since=1d"},
		{"/console/trace/x", "/console/trace/x"},
		{"https://evil.example/console/", "/console/calls"},
		{"//evil.example/console/", "/console/calls"},
		{"/statusz", "/console/calls"},
		{"/console//evil", "/console/calls"},
		{"/console/login", "/console/calls"},
		{"", "/console/calls"},
	} {
		if got := safeNext(tt.in); got != tt.want {
			t.Errorf("safeNext(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

type failingStore struct{}

func (failingStore) Store(context.Context) (*clickhouse.Store, error) {
	return nil, fmt.Errorf("dial tcp 127.0.0.1:1: connect: connection refused")
}

// TestOpenConsoleRefusesRebinding: `mcptrail console` without a token (it
// then listens on loopback only) answers a request naming it by IP address
// or localhost, and refuses with 403 one whose Host is a DNS name: a web
// page whose name was rebound to 127.0.0.1 would otherwise read every
// recorded call same-origin (fails before the fix: 503 from the store, the
// page served).
func TestOpenConsoleRefusesRebinding(t *testing.T) {
	con, err := New(Config{Store: failingStore{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(RequireToken("", con))
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		host   string
		status int
		want   string
	}{
		{"", 503, "unreachable"}, // 127.0.0.1:<port>
		{"localhost:9091", 503, "unreachable"},
		{"[::1]:9091", 503, "unreachable"},
		{"evil.example:9091", 403, "answers only to an IP address or localhost"},
		{"evil.example.:9091", 403, "answers only to an IP address or localhost"},
		{"localhost.evil.example", 403, "answers only to an IP address or localhost"},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/audit.jsonl", nil)
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) {
			t.Errorf("Host %q: %d, want %d with %q\n%.300s", tt.host, resp.StatusCode, tt.status, tt.want, b)
		}
		if resp.Header.Get("Content-Security-Policy") != CSP {
			t.Errorf("Host %q: no CSP on the answer", tt.host)
		}
	}
}

// TestConsoleRequestID: every console answer carries X-Request-Id, and
// the log lines of that request (a failed query, a refused token) carry
// it as request_id; the error page shows it. Fails before the fix: the
// console's log lines had no request_id.
func TestConsoleRequestID(t *testing.T) {
	var logs bytes.Buffer
	con, err := New(Config{Store: failingStore{}, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		h       http.Handler
		status  int
		logLine string
	}{
		{"query failed", con, 503, "console query failed"},
		{"token refused", RequireToken(strings.Repeat("ab", 32), con), 401, "console request denied"},
		{"rebinding refused", RequireToken("", con), 403, "open admin request refused: Host is a DNS name (DNS rebinding)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			req := httptest.NewRequest(http.MethodGet, "/console/calls", nil)
			if tt.status == 403 {
				req.Host = "evil.example"
			}
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, req)
			id := rec.Header().Get(proxy.HeaderRequestID)
			if rec.Code != tt.status || id == "" {
				t.Fatalf("GET /console/calls = %d with X-Request-Id %q, want %d with one", rec.Code, id, tt.status)
			}
			if !strings.Contains(rec.Body.String(), id) {
				t.Errorf("the page does not show request ID %s:\n%.400s", id, rec.Body.String())
			}
			var found bool
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == tt.logLine {
					found = true
					if m["request_id"] != id {
						t.Errorf("log line %s: request_id %v, want %s", line, m["request_id"], id)
					}
				}
			}
			if !found {
				t.Errorf("no %q log line:\n%s", tt.logLine, logs.String())
			}
		})
	}
}
