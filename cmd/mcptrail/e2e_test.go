package main

// End-to-end tests of recording: the real mcptrail binary (built once with
// -race) serving proxy/testbackend, recording into a real local ClickHouse
// (recorder/chlocal), read back with the real CLI.

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/recfmt"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	chtest.StopShared()
	removeBin()
	removeFastBin()
	httpc.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func randAlnum(n int) string {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(abc))))
		b[i] = abc[k.Int64()]
	}
	return string(b)
}

// newEnv prepares the environment of testdata/e2e/gateway.yaml: its own
// database on addr, its own spool, a running testbackend and a dead port.
func newEnv(t *testing.T, chAddr string) e2eEnv {
	t.Helper()
	_, tbURL := startTestBackend(t)
	return e2eEnv{
		CHAddr: chAddr, CHDB: chtest.Database(t, chAddr), SpoolDir: t.TempDir(),
		TBURL:        tbURL,
		DeadURL:      "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/mcp",
		FullToken:    "tok-full-" + randAlnum(24),
		LimitedToken: "tok-limited-" + randAlnum(24),
		HeaderSecret: "hdr-" + randAlnum(24),
		RedactKey:    randAlnum(32),
	}
}

// TestE2ERecording drives a scenario of calls through `mcptrail serve` and
// checks what `mcptrail trace`, `calls`, `audit`, `status` and `migrate`
// say about it.
func TestE2ERecording(t *testing.T) {
	srv := chtest.Shared(t)
	env := newEnv(t, srv.Addr())
	gw := startGateway(t, env)
	full := dial(t, gw.url, env.FullToken)
	limited := dial(t, gw.url, env.LimitedToken)

	type hopWant struct {
		hop     recorder.Hop
		outcome recorder.Outcome
	}
	tests := []struct {
		name     string
		client   *mcpClient
		tool     string
		args     map[string]any
		wantRPC  bool // a JSON-RPC error answer (else a result)
		wantHops []hopWant
		noHops   []recorder.Hop
		failed   bool
	}{
		{name: "success", client: full, tool: "tb.echo", args: map[string]any{"message": "hello"},
			wantHops: []hopWant{{recorder.HopInbound, recorder.OutcomeOK}, {recorder.HopAuth, recorder.OutcomeOK},
				{recorder.HopUpstream, recorder.OutcomeOK}, {recorder.HopResponse, recorder.OutcomeOK}},
			noHops: []recorder.Hop{recorder.HopRoute}},
		{name: "tool error", client: full, tool: "tb.fail", args: map[string]any{}, failed: true,
			wantHops: []hopWant{{recorder.HopUpstream, recorder.OutcomeToolError}, {recorder.HopResponse, recorder.OutcomeToolError}}},
		{name: "jsonrpc error", client: full, tool: "tb.no_such_tool", args: map[string]any{}, failed: true, wantRPC: true,
			wantHops: []hopWant{{recorder.HopUpstream, recorder.OutcomeJSONRPCError}, {recorder.HopResponse, recorder.OutcomeJSONRPCError}}},
		{name: "timeout", client: full, tool: "tb.slow", args: map[string]any{"steps": 40, "delay_ms": 100}, failed: true, wantRPC: true,
			wantHops: []hopWant{{recorder.HopUpstream, recorder.OutcomeTransportError}, {recorder.HopResponse, recorder.OutcomeTransportError}}},
		{name: "denied", client: limited, tool: "tb.fail", args: map[string]any{}, failed: true, wantRPC: true,
			wantHops: []hopWant{{recorder.HopAuth, recorder.OutcomeDenied}, {recorder.HopResponse, recorder.OutcomeDenied}},
			noHops:   []recorder.Hop{recorder.HopRoute, recorder.HopUpstream}},
		{name: "backend down", client: full, tool: "dead.anything", args: map[string]any{}, failed: true, wantRPC: true,
			wantHops: []hopWant{{recorder.HopInbound, recorder.OutcomeOK}, {recorder.HopResponse, recorder.OutcomeTransportError}}},
	}
	ids := make([]string, len(tests))
	var failedIDs []string
	for i, tt := range tests {
		resp, id := tt.client.callTool(t, tt.tool, tt.args)
		if got := resp.Error != nil; got != tt.wantRPC {
			t.Fatalf("%s: tools/call %s: JSON-RPC error = %+v, want error %v (result %s)", tt.name, tt.tool, resp.Error, tt.wantRPC, resp.Result)
		}
		ids[i] = id
		if tt.failed {
			failedIDs = append(failedIDs, id)
		}
	}
	st := gw.waitWritten(t)
	if st.Dropped != 0 {
		t.Errorf("recorder dropped %d events", st.Dropped)
	}
	db := []string{"--clickhouse", env.CHAddr, "--database", env.CHDB}

	for i, tt := range tests {
		t.Run("trace/"+tt.name, func(t *testing.T) {
			out, stderr, code := runCLI(t, append([]string{"trace", ids[i], "--json"}, db...)...)
			if code != 0 {
				t.Fatalf("mcptrail trace %s --json: exit %d: %s", ids[i], code, stderr)
			}
			var hops []traceHopJSON
			if err := json.Unmarshal([]byte(out), &hops); err != nil {
				t.Fatalf("decoding trace JSON: %v\n%s", err, out)
			}
			got := map[string][]string{}
			for _, h := range hops {
				if h.RequestID != ids[i] {
					t.Errorf("hop %s has request_id %s, want %s", h.Hop, h.RequestID, ids[i])
				}
				got[h.Hop] = append(got[h.Hop], h.Outcome)
			}
			for _, w := range tt.wantHops {
				if !slices.Contains(got[w.hop.String()], w.outcome.String()) {
					t.Errorf("trace %s: hop %s outcomes = %v, want %s (all: %v)", tt.name, w.hop, got[w.hop.String()], w.outcome, got)
				}
			}
			for _, h := range tt.noHops {
				if len(got[h.String()]) > 0 {
					t.Errorf("trace %s: has hop %s, want none (all: %v)", tt.name, h, got)
				}
			}
			if n := len(got["response"]); n != 1 {
				t.Errorf("trace %s: %d response hops, want 1", tt.name, n)
			}
			// The text rendering names every hop and the final outcome.
			text, stderr, code := runCLI(t, append([]string{"trace", ids[i]}, db...)...)
			if code != 0 {
				t.Fatalf("mcptrail trace %s: exit %d: %s", ids[i], code, stderr)
			}
			t.Logf("mcptrail trace %s:\n%s", ids[i], text)
			last := tt.wantHops[len(tt.wantHops)-1]
			for _, want := range []string{"request " + ids[i], "outcome " + last.outcome.String(), tt.tool} {
				if !strings.Contains(text, want) {
					t.Errorf("trace text lacks %q:\n%s", want, text)
				}
			}
		})
	}

	t.Run("trace by session", func(t *testing.T) {
		out, stderr, code := runCLI(t, append([]string{"trace", limited.sid, "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("mcptrail trace <session> --json: exit %d: %s", code, stderr)
		}
		var hops []traceHopJSON
		if err := json.Unmarshal([]byte(out), &hops); err != nil {
			t.Fatal(err)
		}
		var methods []string
		for _, h := range hops {
			if h.SessionID != limited.sid {
				t.Errorf("hop %s of %s has session %q, want %q", h.Hop, h.RequestID, h.SessionID, limited.sid)
			}
			if h.Hop == "response" {
				methods = append(methods, h.Method+" "+h.Target)
			}
		}
		// initialize, then the denied call; the initialized notification
		// has no response hop.
		if want := []string{"initialize ", "tools/call tb.fail"}; !slices.Equal(methods, want) {
			t.Errorf("responses in session = %q, want %q", methods, want)
		}
	})
	t.Run("calls --failed", func(t *testing.T) {
		out, stderr, code := runCLI(t, append([]string{"calls", "--since", "1h", "--failed", "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		got := requestIDs(t, out)
		want := slices.Clone(failedIDs)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("calls --failed = %v, want exactly %v", got, want)
		}
		table, _, _ := runCLI(t, append([]string{"calls", "--since", "1h", "--failed"}, db...)...)
		for _, id := range failedIDs {
			if !strings.Contains(table, id) {
				t.Errorf("calls table lacks %s:\n%s", id, table)
			}
		}
	})
	t.Run("calls filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--principal", "bob", "--tool", "tb.*"}, []string{ids[4]}},
			{[]string{"--server", "dead"}, []string{ids[5]}},
			{[]string{"--tool", "tb.echo"}, []string{ids[0]}},
		} {
			out, stderr, code := runCLI(t, append(append([]string{"calls", "--json"}, tc.args...), db...)...)
			if code != 0 {
				t.Fatalf("calls %v: exit %d: %s", tc.args, code, stderr)
			}
			if got := requestIDs(t, out); !slices.Equal(got, tc.want) {
				t.Errorf("calls %v = %v, want %v", tc.args, got, tc.want)
			}
		}
	})
	t.Run("audit csv", func(t *testing.T) {
		out, stderr, code := runCLI(t, append([]string{"audit", "--principal", "bob", "--since", "90d", "--decision", "denied", "--format", "csv"}, db...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("audit CSV: %v\n%s", err, out)
		}
		if len(recs) != 2 || recs[1][1] != "bob" || recs[1][3] != "tb.fail" || recs[1][5] != "denied" || recs[1][9] != ids[4] {
			t.Errorf("audit --principal bob --decision denied = %q, want the header and the denied tb.fail call %s", recs, ids[4])
		}
	})
	t.Run("status", func(t *testing.T) {
		out, stderr, code := runCLI(t, "status", "--url", gw.admin)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, re := range []string{`enqueued \d+`, `written \d+`, `dropped 0`, `(?m)^tb\s+http\s+ready`, `(?m)^dead\s+http\s+down`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("status output does not match %s:\n%s", re, out)
			}
		}
	})
	t.Run("migrate", func(t *testing.T) {
		out, stderr, code := runCLI(t, append([]string{"migrate"}, db...)...)
		if code != 0 || !regexp.MustCompile(`^schema version [1-9]\d* \(up to date\) in database `+env.CHDB).MatchString(out) {
			t.Errorf("migrate on a migrated database: exit %d, %q %s", code, out, stderr)
		}
		fresh := chtest.Database(t, env.CHAddr)
		out, stderr, code = runCLI(t, "migrate", "--clickhouse", env.CHAddr, "--database", fresh)
		if code != 0 || !strings.Contains(out, "migrated from version 0") {
			t.Errorf("migrate on a fresh database: exit %d, %q %s", code, out, stderr)
		}
	})
	t.Run("errors", func(t *testing.T) {
		dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
		for _, tc := range []struct {
			args []string
			want string
		}{
			{append([]string{"trace", "01JZZZZZZZZZZZZZZZZZZZZZZZ"}, db...), `no recorded request, trace or session "01JZZZZZZZZZZZZZZZZZZZZZZZ"`},
			{[]string{"trace", "x", "--clickhouse", dead}, "ClickHouse at " + dead + " (from --clickhouse) is unreachable"},
			{[]string{"calls", "--since", "3x", "--clickhouse", dead}, `--since "3x"`},
			{[]string{"calls", "--since", "1h", "--until", "2h", "--clickhouse", dead}, "is not after --since"},
			{[]string{"calls", "--clickhouse", env.CHAddr, "--database", "no_such_db"}, "run `mcptrail migrate"},
			{[]string{"status", "--url", "http://" + dead}, "is `mcptrail serve` running there?"},
		} {
			_, stderr, code := runCLI(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("mcptrail %s: exit %d, stderr %q, want a failure saying %q", strings.Join(tc.args, " "), code, stderr, tc.want)
			}
		}
	})
}

func requestIDs(t *testing.T, jsonl string) []string {
	t.Helper()
	var ids []string
	dec := json.NewDecoder(strings.NewReader(jsonl))
	for dec.More() {
		var c recfmt.CallJSON
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("decoding calls JSON: %v\n%s", err, jsonl)
		}
		if c.Method == "tools/call" {
			ids = append(ids, c.RequestID)
		}
	}
	sort.Strings(ids)
	return ids
}

// load makes n tools/call echo calls spread over the clients and returns how
// many were answered with a result.
func load(t *testing.T, clients []*mcpClient, n int) int {
	t.Helper()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for ci, c := range clients {
		wg.Go(func() {
			for i := ci; i < n; i += len(clients) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, _, err := c.request(ctx, "tools/call", map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": "m" + strconv.Itoa(i)}})
				cancel()
				if err == nil && resp.Error == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return ok
}

// TestE2ELoss kills ClickHouse under load, then the gateway with events
// only in its spool, and checks that every acknowledged event ends up in
// ClickHouse exactly once.
func TestE2ELoss(t *testing.T) {
	srv := chtest.StartForTest(t) // its own server: this test kills it
	env := newEnv(t, srv.Addr())
	conn := chConn(t, srv.Addr())
	gw := startGateway(t, env)
	clients := []*mcpClient{dial(t, gw.url, env.FullToken), dial(t, gw.url, env.FullToken), dial(t, gw.url, env.FullToken)}
	ctx := context.Background()

	calls := load(t, clients, 90)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	calls += load(t, clients, 150) // ClickHouse is down: the spool holds these
	mid := gw.stats(t)
	if mid.Spooled <= mid.Written {
		t.Logf("note: with ClickHouse down, spooled %d written %d", mid.Spooled, mid.Written)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	calls += load(t, clients, 90)
	if calls != 330 {
		t.Fatalf("%d of 330 calls answered with a result, want all: the hot path must not depend on ClickHouse", calls)
	}
	st := gw.waitWritten(t)
	if st.Dropped != 0 {
		t.Errorf("dropped %d events", st.Dropped)
	}
	if st.Retried == 0 {
		t.Errorf("retried = 0: the writer never saw ClickHouse down, so the test proved nothing (stats %+v)", st)
	}
	checkExactlyOnce(t, conn, env.CHDB, st.Spooled, uint64(calls))

	// Gateway crash with events only in its spool.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	calls2 := load(t, clients, 60)
	var before recorder.Stats
	waitFor(t, "every event acknowledged", 30*time.Second, gw.proc, func() (bool, error) {
		before = gw.stats(t)
		return before.QueueLen == 0 && before.Spooled == before.Enqueued, fmt.Errorf("%+v", before)
	})
	gw.kill()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	gw2 := startGateway(t, env) // same spool dir
	leftover := before.Spooled - st.Spooled
	waitFor(t, fmt.Sprintf("the restarted gateway to write the %d events left in the spool", leftover), 60*time.Second, gw2.proc, func() (bool, error) {
		s := gw2.stats(t)
		return s.Written >= leftover, fmt.Errorf("%+v", s)
	})
	after := gw2.waitWritten(t)
	checkExactlyOnce(t, conn, env.CHDB, before.Spooled+after.Spooled, uint64(calls+calls2))
	t.Logf("ClickHouse kill: %d calls, %d events acknowledged, %d retried batches; gateway kill: %d more calls, %d events replayed from the spool",
		calls, st.Spooled, st.Retried, calls2, after.Written)
}

// TestE2ELocalClickHouse runs the gateway with no ClickHouse address, so
// that it starts its own, and checks that the CLI finds that server through
// the config's local_dir, and says how to start it when it is gone.
func TestE2ELocalClickHouse(t *testing.T) {
	_, tbURL := startTestBackend(t)
	cfg, err := filepath.Abs("../../testdata/e2e/gateway-local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := e2eEnv{Config: cfg, TBURL: tbURL, LocalDir: filepath.Join(t.TempDir(), "clickhouse"), SpoolDir: t.TempDir()}
	gw := startGateway(t, env)
	c := dial(t, gw.url, "")
	_, id := c.callTool(t, "tb.echo", map[string]any{"message": "local"})
	gw.waitWritten(t)

	out, stderr, code := runCLIEnv(t, env.list(), "trace", id, "--config", cfg)
	if code != 0 || !strings.Contains(out, "request "+id) || !strings.Contains(out, "outcome ok") {
		t.Errorf("trace through the local server: exit %d\n%s%s", code, out, stderr)
	}
	gw.stop(t) // stops its ClickHouse too
	_, stderr, code = runCLIEnv(t, env.list(), "calls", "--config", cfg)
	if code == 0 || !strings.Contains(stderr, "is unreachable") || !strings.Contains(stderr, "it runs only while `mcptrail serve` runs") {
		t.Errorf("calls with the gateway stopped: exit %d, stderr %q, want the unreachable address and how to start it", code, stderr)
	}
}

// checkExactlyOnce compares ClickHouse with what the gateway acknowledged:
// every acknowledged event present once (distinct ids, and rows read with
// FINAL), and one audit row per answered call.
func checkExactlyOnce(t *testing.T, conn driver.Conn, db string, events, calls uint64) {
	t.Helper()
	distinct := queryUint(t, conn, "SELECT uniqExact(event_id) FROM "+db+".hops")
	final := queryUint(t, conn, "SELECT count() FROM "+db+".hops FINAL")
	raw := queryUint(t, conn, "SELECT count() FROM "+db+".hops")
	if distinct != events || final != events {
		t.Errorf("hops: %d distinct event ids, %d rows with FINAL, want both = %d acknowledged events (%d raw rows)", distinct, final, events, raw)
	}
	answered := queryUint(t, conn, "SELECT uniqExact(request_id) FROM "+db+".audit WHERE method = 'tools/call'")
	if answered != calls {
		t.Errorf("audit: %d tools/call requests, want %d answered calls", answered, calls)
	}
	if raw != distinct {
		t.Logf("note: %d raw hop rows for %d events (duplicates collapse with FINAL)", raw, distinct)
	}
}

// TestE2ERedaction puts canary secrets in arguments, results, backend
// headers, the bearer token and error messages, and checks that none of
// them reaches any String column of any table or the gateway's log, and
// that equal secrets get equal placeholders.
func TestE2ERedaction(t *testing.T) {
	srv := chtest.Shared(t)
	env := newEnv(t, srv.Addr())
	github := "ghp_" + randAlnum(36)               // built-in pattern github_token
	stripe := "sk_live_" + randAlnum(24)           // built-in pattern stripe_key
	aws := "AKIA" + strings.ToUpper(randAlnum(16)) // built-in pattern aws_access_key_id
	password := "pw-" + randAlnum(20)              // key rule "password"
	env.DeadURL += "?api_key=" + aws               // in the "backend unavailable" error message
	canaries := map[string]string{"github": github, "stripe": stripe, "aws": aws, "password": password,
		"header": env.HeaderSecret, "token": env.FullToken}
	gw := startGateway(t, env)
	c := dial(t, gw.url, env.FullToken)

	// marker is no secret: finding it proves that the scan below can find.
	marker := "marker-" + randAlnum(16)
	for _, msg := range []string{"key " + github + " " + marker, "again " + github + " and " + stripe} {
		resp, _ := c.callTool(t, "tb.echo", map[string]any{"message": msg, "password": password})
		if resp.Error != nil || !strings.Contains(string(resp.Result), github) {
			t.Fatalf("echo did not return the canary: %s %+v", resp.Result, resp.Error)
		}
	}
	resp, errID := c.callTool(t, "dead.x", map[string]any{"password": password})
	if resp.Error == nil {
		t.Fatalf("dead.x answered %s, want an error", resp.Result)
	}
	gw.waitWritten(t)
	conn := chConn(t, env.CHAddr)
	ctx := context.Background()

	// Every String-typed column of every table, searched for every canary.
	cols := stringColumns(t, conn, env.CHDB)
	markerRows := uint64(0)
	for _, c := range cols {
		expr := "position(" + c.name + ", ?) > 0"
		if strings.HasPrefix(c.typ, "Array(") {
			expr = "arrayExists(x -> position(x, ?) > 0, " + c.name + ")"
		}
		q := "SELECT count() FROM " + env.CHDB + "." + c.table + " WHERE " + expr
		for what, canary := range canaries {
			if n := queryUint(t, conn, q, canary); n > 0 {
				t.Errorf("%s canary found in %d rows of %s.%s", what, n, c.table, c.name)
			}
		}
		markerRows += queryUint(t, conn, q, marker)
	}
	if markerRows == 0 {
		t.Errorf("the scan did not find the non-secret marker %s echoed in the same call: it cannot find canaries either", marker)
	}
	logs := gw.output(t)
	for what, canary := range canaries {
		if strings.Contains(logs, canary) {
			t.Errorf("%s canary found in the gateway log", what)
		}
	}

	// Equal secrets, equal placeholders; different secrets, different ones.
	byRule := map[string]map[string]bool{}
	prow, err := conn.Query(ctx, "SELECT params, result FROM "+env.CHDB+".payloads")
	if err != nil {
		t.Fatal(err)
	}
	for prow.Next() {
		var p, r string
		if err := prow.Scan(&p, &r); err != nil {
			t.Fatal(err)
		}
		for _, ph := range redact.FindPlaceholders([]byte(p + r)) {
			if byRule[ph.Rule] == nil {
				byRule[ph.Rule] = map[string]bool{}
			}
			byRule[ph.Rule][ph.HMAC] = true
		}
	}
	prow.Close()
	for _, rule := range []string{"github_token", "stripe_key", "password"} {
		if len(byRule[rule]) != 1 {
			t.Errorf("placeholders of rule %s carry %d distinct HMACs %v, want exactly 1 (equal secrets, equal tokens)", rule, len(byRule[rule]), byRule[rule])
		}
	}
	for g := range byRule["github_token"] {
		if byRule["stripe_key"][g] {
			t.Errorf("github and stripe canaries share the HMAC %s", g)
		}
	}
	// The error message was recorded, not dropped; the gateway elides a
	// backend URL's query (where the key was) before any error is built,
	// so the scan above finding no canary covers it.
	var msg string
	if err := conn.QueryRow(ctx, "SELECT error_message FROM "+env.CHDB+".hops WHERE request_id = ? AND hop = 'response'", errID).Scan(&msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "backend dead") || !strings.Contains(msg, "/mcp?…") {
		t.Errorf("error message of the dead backend = %q, want it recorded with the URL's query elided", msg)
	}
}
