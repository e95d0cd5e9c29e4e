package whatif_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/whatif"
)

// candidate is the config under test: alice loses crm.delete, bob gains
// git.push, the support role loses crm.get_*, and cron's token is gone.
const candidate = `
auth:
  tokens:
    - {name: alice, sha256: %[1]s, tools: ["crm.search", "git.*"], resources: ["files:file:///srv/*"]}
    - {name: bob, sha256: %[2]s, tools: ["git.*"], methods: ["logging/setLevel"]}
  oauth:
    issuer: https://idp.example.com/
    resource: https://mcp.example.com/mcp
    bindings:
      - {role: support, groups: [support]}
  roles:
    - {name: support, tools: ["crm.search"]}
servers:
  - {name: crm, transport: http, url: "http://127.0.0.1:1/mcp"}
  - {name: git, transport: http, url: "http://127.0.0.1:1/mcp"}
  - {name: files, transport: http, url: "http://127.0.0.1:1/mcp", no_namespace: true}
`

func evaluator(t testing.TB) *proxy.PolicyEvaluator {
	t.Helper()
	path := filepath.Join(t.TempDir(), "candidate.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(candidate, auth.HashToken("a"), auth.HashToken("b"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pe, err := proxy.NewPolicyEvaluator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

func TestWhatif(t *testing.T) {
	tests := []struct {
		name string
		r    whatif.Request
		want string // the change, "unchanged", or "skip: <reason prefix>"
	}{
		{"still allowed", whatif.Request{Principal: "alice", Method: "tools/call", Target: "crm.search", Server: "crm", Decision: "allowed", Rule: "tools:crm.*"},
			"rule_changed tools:crm.* → tools:crm.search"},
		{"same rule", whatif.Request{Principal: "alice", Method: "tools/call", Target: "git.log", Server: "git", Decision: "allowed", Rule: "tools:git.*"}, "unchanged"},
		{"newly denied", whatif.Request{Principal: "alice", Method: "tools/call", Target: "crm.delete", Server: "crm", Decision: "allowed", Rule: "tools:crm.*"},
			"newly_denied tools:crm.* → tools:default-deny"},
		{"newly allowed", whatif.Request{Principal: "bob", Method: "tools/call", Target: "git.push", Server: "git", Decision: "denied", Rule: "tools:default-deny"},
			"newly_allowed tools:default-deny → tools:git.*"},
		{"still denied", whatif.Request{Principal: "bob", Method: "tools/call", Target: "crm.delete", Server: "crm", Decision: "denied", Rule: "tools:default-deny"}, "unchanged"},
		{"token gone", whatif.Request{Principal: "cron", Method: "tools/call", Target: "git.log", Server: "git", Decision: "allowed", Rule: "tools:*"},
			"newly_denied tools:* → tools:default-deny"},
		{"role lost a tool", whatif.Request{Principal: "sam", Roles: []string{"support"}, Method: "tools/call", Target: "crm.get_account", Server: "crm", Decision: "allowed", Rule: "role:support/tools:crm.*"},
			"newly_denied role:support/tools:crm.* → tools:default-deny"},
		{"role keeps a tool", whatif.Request{Principal: "sam", Roles: []string{"support"}, Method: "tools/call", Target: "crm.search", Server: "crm", Decision: "allowed", Rule: "role:support/tools:crm.*"},
			"rule_changed role:support/tools:crm.* → role:support/tools:crm.search"},
		{"no namespace", whatif.Request{Principal: "alice", Method: "resources/read", Target: "file:///srv/a.txt", Server: "files", Decision: "allowed", Rule: "resources:*"},
			"rule_changed resources:* → resources:files:file:///srv/*"},
		{"escaping path", whatif.Request{Principal: "alice", Method: "resources/read", Target: "file:///srv/../etc/passwd", Server: "files", Decision: "allowed", Rule: "resources:*"},
			"newly_denied resources:* → resources:default-deny"},
		{"other method", whatif.Request{Principal: "bob", Method: "logging/setLevel", Server: "git", Decision: "denied", Rule: "methods:default-deny"},
			"newly_allowed methods:default-deny → methods:logging/setLevel"},
		{"unknown tool", whatif.Request{Principal: "alice", Method: "tools/call", Target: "nope.x", Decision: "allowed", Rule: "tools:*"},
			"newly_denied tools:* → tools:default-deny"},
		{"rate limited, still allowed by rules", whatif.Request{Principal: "alice", Method: "tools/call", Target: "git.log", Server: "git", Decision: "denied", Rule: "rate:principal"},
			"skip: denied by a rate limit"},
		{"rate limited, denied by rules now", whatif.Request{Principal: "alice", Method: "tools/call", Target: "crm.delete", Server: "crm", Decision: "denied", Rule: "rate:tool"}, "unchanged"},
		{"schema", whatif.Request{Principal: "alice", Method: "tools/call", Target: "git.log", Server: "git", Decision: "denied", Rule: "arguments:input-schema"},
			"skip: denied by argument validation"},
		{"bad token", whatif.Request{Decision: "denied", Rule: "unknown bearer token"}, "skip: refused before policy"},
		{"list", whatif.Request{Principal: "alice", Method: "tools/list"}, "skip: not decided"},
		{"completion", whatif.Request{Principal: "alice", Method: "completion/complete", Decision: "allowed", Rule: "completions:*"}, "skip: completions"},
		{"reload", whatif.Request{Principal: "mcptrail", Method: proxy.MethodReload, Decision: "allowed", Rule: "reload:sighup"}, "skip: config reloads"},
	}
	pe := evaluator(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := whatif.New(pe)
			tt.r.RequestID = "r1"
			ev.Add(context.Background(), tt.r)
			rep := ev.Report()
			got := "unchanged"
			switch {
			case len(rep.Changes) == 1:
				c := rep.Changes[0]
				got = c.Kind + " " + c.OldRule + " → " + c.NewRule
			case len(rep.NotEvaluated) == 1:
				for reason := range rep.NotEvaluated {
					got = "skip: " + reason
				}
			case rep.Unchanged != 1:
				got = fmt.Sprintf("%+v", rep)
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("whatif(%+v) = %q, want %q", tt.r, got, tt.want)
			}
		})
	}
}

// TestWhatifGroupsAndCounts: the same change of many requests is one group
// with their count; Changed says whether any decision changed.
func TestWhatifGroupsAndCounts(t *testing.T) {
	ev := whatif.New(evaluator(t))
	ctx := context.Background()
	for i := range 5 {
		ev.Add(ctx, whatif.Request{RequestID: fmt.Sprint("d", i), Principal: "alice", Method: "tools/call", Target: "crm.delete", Server: "crm", Decision: "allowed", Rule: "tools:crm.*"})
	}
	ev.Add(ctx, whatif.Request{RequestID: "p", Principal: "bob", Method: "tools/call", Target: "git.push", Server: "git", Decision: "denied", Rule: "tools:default-deny"})
	ev.Add(ctx, whatif.Request{RequestID: "l", Principal: "bob", Method: "tools/list"})
	rep := ev.Report()
	want := []whatif.Change{
		{Kind: whatif.NewlyDenied, Principal: "alice", Method: "tools/call", Target: "crm.delete", OldRule: "tools:crm.*", NewRule: "tools:default-deny", Count: 5, Example: "d0"},
		{Kind: whatif.NewlyAllowed, Principal: "bob", Method: "tools/call", Target: "git.push", OldRule: "tools:default-deny", NewRule: "tools:git.*", Count: 1, Example: "p"},
	}
	if !reflect.DeepEqual(rep.Changes, want) || rep.Requests != 7 || rep.Evaluated != 6 || !rep.Changed() {
		t.Fatalf("report = %+v, want changes %+v of 7 requests, 6 evaluated", rep, want)
	}
}

// TestFromEvents: a bundle's hops become the rows the audit trail holds.
func TestFromEvents(t *testing.T) {
	evs := []recorder.Event{
		{RequestID: "r1", Hop: recorder.HopInbound, Method: "tools/call", Target: "crm.search", Server: "crm"},
		{RequestID: "r1", Hop: recorder.HopAuth, Principal: "sam", AuthDecision: "allowed", AuthRule: "role:support/tools:crm.*",
			Attrs: []recorder.Attr{{Key: recorder.AttrAuthRoles, Value: "support,oncall"}}},
		{RequestID: "r2", Hop: recorder.HopAuth, AuthDecision: "denied", AuthRule: "unknown bearer token"},
		{RequestID: "r1", Hop: recorder.HopResponse, TimeNs: 5},
		{RequestID: "r3", Hop: recorder.HopInbound, Method: "tools/call"}, // never answered
	}
	got := whatif.FromEvents(evs)
	if len(got) != 2 {
		t.Fatalf("FromEvents = %+v, want r1 and r2", got)
	}
	r1 := got[0]
	if r1.RequestID != "r1" || r1.Principal != "sam" || r1.Method != "tools/call" || r1.Target != "crm.search" || r1.Server != "crm" ||
		r1.Decision != "allowed" || r1.Rule != "role:support/tools:crm.*" || !reflect.DeepEqual(r1.Roles, []string{"support", "oncall"}) {
		t.Errorf("r1 = %+v", r1)
	}
	if got[1].RequestID != "r2" || got[1].Decision != "denied" {
		t.Errorf("r2 = %+v", got[1])
	}
}
