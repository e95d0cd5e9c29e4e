package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/replay/bundle"
	"github.com/mcptrail/mcptrail/replay/cli"
)

// whatifConfig is a gateway config: alice's and bob's tool patterns, and
// the admin role's.
func whatifConfig(t testing.TB, alice, bob, admin string) string {
	t.Helper()
	body := fmt.Sprintf(`auth:
  tokens:
    - {name: alice, sha256: %s, tools: [%s]}
    - {name: bob, sha256: %s, tools: [%s]}
  oauth:
    issuer: https://idp.example.com/
    resource: https://mcp.example.com/mcp
    bindings:
      - {role: admin, groups: [ops]}
  roles:
    - {name: admin, tools: [%s]}
servers:
  - {name: crm, transport: http, url: "http://127.0.0.1:1/mcp"}
  - {name: git, transport: http, url: "http://127.0.0.1:1/mcp"}
`, auth.HashToken("a"), alice, auth.HashToken("b"), bob, admin)
	path := filepath.Join(t.TempDir(), "candidate.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// recordedCall is the hops a gateway records for one decided tool call.
func recordedCall(id, principal string, roles, target, decision, rule string, at time.Time) []recorder.Event {
	server, _, _ := strings.Cut(target, ".")
	a := recorder.Event{EventID: id + "-a", RequestID: id, Hop: recorder.HopAuth, TimeNs: at.UnixNano(), Method: "tools/call",
		Target: target, Server: server, Principal: principal, AuthDecision: decision, AuthRule: rule}
	if roles != "" {
		a.Attrs = []recorder.Attr{{Key: recorder.AttrAuthRoles, Value: roles}}
	}
	resp := recorder.Event{EventID: id + "-r", RequestID: id, Hop: recorder.HopResponse, TimeNs: at.Add(time.Millisecond).UnixNano(),
		Method: "tools/call", Target: target, Server: server, Principal: principal}
	if decision == "denied" {
		resp.Outcome, resp.ErrorCode = recorder.OutcomeDenied, -32003
	}
	return []recorder.Event{a, resp}
}

func whatifTraffic(at time.Time) []recorder.Event {
	var evs []recorder.Event
	for i := range 3 {
		evs = append(evs, recordedCall(fmt.Sprint("del", i), "alice", "", "crm.delete", "allowed", "tools:crm.*", at)...)
	}
	evs = append(evs, recordedCall("push", "bob", "", "git.push", "denied", "tools:default-deny", at)...)
	evs = append(evs, recordedCall("search", "alice", "", "crm.search", "allowed", "tools:crm.*", at)...)
	evs = append(evs, recordedCall("ops", "olga", "admin", "git.push", "allowed", "role:admin/tools:*", at)...)
	evs = append(evs, recordedCall("rate", "bob", "", "git.log", "denied", "rate:principal", at)...)
	return evs
}

type whatifJSON struct {
	Requests, Evaluated, Unchanged int
	NewlyDenied                    int            `json:"newly_denied"`
	NewlyAllowed                   int            `json:"newly_allowed"`
	NotEvaluated                   map[string]int `json:"not_evaluated"`
	Changes                        []struct {
		Kind, Principal, Target string
		Count                   int
		OldRule                 string `json:"old_rule"`
		NewRule                 string `json:"new_rule"`
	}
}

func runWhatif(t testing.TB, args ...string) (whatifJSON, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Logger: slog.New(slog.DiscardHandler), Version: "test"}
	root := &cobra.Command{Use: "mcptrail", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands(env)...)
	root.SetArgs(append([]string{"policy", "whatif"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	var rep whatifJSON
	if strings.Contains(strings.Join(args, " "), "json") && out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
			t.Fatalf("report is not JSON: %v\n%s", jerr, out.String())
		}
	}
	return rep, out.String() + errb.String(), err
}

// TestWhatifThroughClickHouse: recorded traffic in a real ClickHouse and
// in a bundle is re-decided under a candidate; what changes is reported by
// principal, target and rule, and the exit error says so; a candidate that
// changes nothing passes.
func TestWhatifThroughClickHouse(t *testing.T) {
	srv, db, store := migratedStore(t)
	ctx := context.Background()
	evs := whatifTraffic(time.Now().Add(-time.Hour))
	if err := store.WriteBatch(ctx, "whatif", evs); err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(t.TempDir(), "traffic.mcptrail")
	f, err := os.Create(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(f, &bundle.Bundle{Header: bundle.Header{Generator: "test"}, Events: evs}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// alice loses crm.delete, bob gains git.push, admin loses git.*.
	cand := whatifConfig(t, `"crm.search"`, `"git.*"`, `"crm.*"`)
	for _, from := range [][]string{
		{"--clickhouse", srv.Addr(), "--database", db, "--since", "2h"},
		{"--bundle", bundlePath},
	} {
		t.Run(from[0], func(t *testing.T) {
			rep, out, err := runWhatif(t, append([]string{"--config", cand, "--format", "json"}, from...)...)
			var pc *cli.PolicyChangedError
			if !errors.As(err, &pc) || pc.NewlyDenied != 4 || pc.NewlyAllowed != 1 {
				t.Fatalf("err = %v, want 4 newly denied and 1 newly allowed\n%s", err, out)
			}
			got := map[string]int{}
			for _, c := range rep.Changes {
				got[c.Kind+" "+c.Principal+" "+c.Target+" "+c.OldRule+" → "+c.NewRule] = c.Count
			}
			want := map[string]int{
				"newly_denied alice crm.delete tools:crm.* → tools:default-deny":     3,
				"newly_denied olga git.push role:admin/tools:* → tools:default-deny": 1,
				"newly_allowed bob git.push tools:default-deny → tools:git.*":        1,
				"rule_changed alice crm.search tools:crm.* → tools:crm.search":       1,
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || rep.Requests != 7 || rep.Evaluated != 6 || len(rep.NotEvaluated) != 1 {
				t.Errorf("changes %v (%d requests, %d evaluated, not evaluated %v)\nwant %v of 7, 6 evaluated, the rate limit apart\n%s",
					got, rep.Requests, rep.Evaluated, rep.NotEvaluated, want, out)
			}
		})
	}
	// The text report names them too.
	_, out, err := runWhatif(t, "--config", cand, "--clickhouse", srv.Addr(), "--database", db, "--since", "2h")
	for _, want := range []string{"NEWLY DENIED", "alice", "crm.delete", "NEWLY ALLOWED", "NOT RE-EVALUATED", "rate limit"} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("text report lacks %q (err %v):\n%s", want, err, out)
		}
	}
	// The config the traffic was recorded under changes nothing.
	same := whatifConfig(t, `"crm.*"`, `"git.log"`, `"*"`)
	if rep, out, err := runWhatif(t, "--config", same, "--format", "json", "--clickhouse", srv.Addr(), "--database", db, "--since", "2h"); err != nil || rep.NewlyDenied+rep.NewlyAllowed != 0 {
		t.Errorf("the recorded config: err %v, report %+v, want no change\n%s", err, rep, out)
	}
}

// BenchmarkWhatifClickHouse re-decides a million recorded calls generated
// in ClickHouse (INSERT ... SELECT FROM numbers()): 200 principals, a third
// of them with a role, 4 tools. One op reads and decides them all:
//
//	go test ./replay/cli -run '^$' -bench WhatifClickHouse -benchtime 1x
func BenchmarkWhatifClickHouse(b *testing.B) {
	const rows = 1_000_000
	srv, db, _ := migratedStore(b)
	ctx := context.Background()
	start := time.Now()
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	err = conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.audit (ts, ts_ns, event_id, request_id, principal, method, server, target, decision, rule, roles, outcome, duration_us)
		SELECT toDateTime(now() - 3600 + intDiv(number, 1000)), toUInt64(now() - 3600) * 1000000000 + number * 1000,
			concat('e', toString(number)), concat('r', toString(number)),
			if(number %% 3 = 0, concat('jwt', toString(number %% 200)), if(number %% 2 = 0, 'alice', 'bob')),
			'tools/call', arrayElement(['crm', 'git'], number %% 2 + 1),
			concat(arrayElement(['crm', 'git'], number %% 2 + 1), '.', arrayElement(['search', 'delete', 'log', 'push'], number %% 4 + 1)),
			'allowed', if(number %% 3 = 0, 'role:admin/tools:*', 'tools:*'), if(number %% 3 = 0, ['admin'], emptyArrayString()), 'ok', 1000
		FROM numbers(%d)`, db, rows))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d audit rows in %s", rows, time.Since(start).Round(time.Millisecond))
	cand := whatifConfig(b, `"crm.search", "git.*"`, `"*"`, `"crm.*"`)
	b.ResetTimer()
	for b.Loop() {
		rep, out, err := runWhatif(b, "--config", cand, "--format", "json", "--clickhouse", srv.Addr(), "--database", db, "--since", "3h")
		var pc *cli.PolicyChangedError
		if !errors.As(err, &pc) || rep.Requests != rows {
			b.Fatalf("err %v, %d requests, want %d and changes\n%.2000s", err, rep.Requests, rows, out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/request")
}

// migratedStore starts a ClickHouse for the test, with the schema migrated
// in a database of its own.
func migratedStore(t testing.TB) (srv *chlocal.Server, db string, store *clickhouse.Store) {
	t.Helper()
	srv = chtest.StartForTest(t)
	db = chtest.Database(t, srv.Addr())
	ctx := context.Background()
	store, err := clickhouse.Open(ctx, clickhouse.Config{Addr: []string{srv.Addr()}, Database: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, db, store
}
