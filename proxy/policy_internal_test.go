package proxy

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// BenchmarkPolicyDecide is the policy chain's cost per call (one decision)
// and per tools/list of 100 items (one decision each), with a token of 20
// patterns per kind, the matching one last.
func BenchmarkPolicyDecide(b *testing.B) {
	tok := auth.Token{Name: "bench", SHA256: auth.HashToken("bench-secret")}
	for i := range 19 {
		n := strconv.Itoa(i)
		tok.Tools = append(tok.Tools, "other"+n+".*")
		tok.Resources = append(tok.Resources, "other"+n+":file:///srv/"+n+"/*")
	}
	tok.Tools = append(tok.Tools, "crm.*")
	tok.Resources = append(tok.Resources, "files:file:///srv/reports/*")
	a, err := auth.New([]auth.Token{tok})
	if err != nil {
		b.Fatal(err)
	}
	p, err := a.Authenticate("Bearer bench-secret")
	if err != nil {
		b.Fatal(err)
	}
	g := &Gateway{}
	g.pol.Store(&policySet{auth: a, policies: []PolicyCheck{tokenCheck{enabled: true}}})
	ctx := context.Background()
	b.Run("call", func(b *testing.B) {
		req := PolicyRequest{Principal: p, Method: "tools/call", Kind: auth.Tools, Target: "crm.search", Server: "crm"}
		allowed := 0
		b.ReportAllocs()
		for b.Loop() {
			if !g.ps().decide(ctx, &req).Deny {
				allowed++
			}
		}
		if allowed != b.N {
			b.Fatalf("allowed %d of %d", allowed, b.N)
		}
	})
	b.Run("resource", func(b *testing.B) {
		req := PolicyRequest{Principal: p, Method: "resources/read", Kind: auth.Resources, Target: "files:file:///srv/reports/2026/q4.pdf", Server: "files"}
		allowed := 0
		b.ReportAllocs()
		for b.Loop() {
			if !g.ps().decide(ctx, &req).Deny {
				allowed++
			}
		}
		if allowed != b.N {
			b.Fatalf("allowed %d of %d", allowed, b.N)
		}
	})
	b.Run("list100", func(b *testing.B) {
		items := make([]catalogItem, 100)
		for i := range items {
			srv := "crm"
			if i%2 == 1 {
				srv = "hr"
			}
			items[i] = catalogItem{server: srv, target: srv + ".tool" + strconv.Itoa(i)}
		}
		c := &call{g: g, ps: g.ps(), princ: p}
		shown := 0
		b.ReportAllocs()
		for b.Loop() {
			req := PolicyRequest{Principal: p, Method: "tools/call", Kind: auth.Tools}
			for _, it := range items {
				req.Target, req.Server = it.target, it.server
				if c.allowed(ctx, &req) {
					shown++
				}
			}
		}
		if shown != 50*b.N {
			b.Fatalf("shown %d, want %d", shown, 50*b.N)
		}
	})
}

// TestBackendMessagesReachOnlyPrincipalsThatMayUseIt: a log message or
// other notification a backend sends outside any call goes to the sessions
// of principals that may use that backend, not to every session.
func TestBackendMessagesReachOnlyPrincipalsThatMayUseIt(t *testing.T) {
	cfg := &config.Config{NamespaceSeparator: ".", Auth: config.Auth{Tokens: []config.Token{
		{Name: "a", SHA256: auth.HashToken("a"), Tools: []string{"alpha.*"}},
		{Name: "b", SHA256: auth.HashToken("b"), Tools: []string{"beta.echo"}, Resources: []string{"alpha:test://x"}},
		{Name: "c", SHA256: auth.HashToken("c"), Prompts: []string{"beta.*"}},
		{Name: "all", SHA256: auth.HashToken("all"), Tools: []string{"*"}},
	}}}
	for _, s := range []string{"alpha", "beta"} {
		cfg.Servers = append(cfg.Servers, config.Server{Name: s, Transport: "http", URL: "http://127.0.0.1:1/mcp"})
	}
	g, err := New(Options{Config: cfg, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	sessions := map[string]*Session{}
	for _, tok := range []string{"a", "b", "c", "all"} {
		p, err := g.ps().auth.Authenticate("Bearer " + tok)
		if err != nil {
			t.Fatal(err)
		}
		s := g.newSession("s-"+tok, p)
		s.setLogLevel("debug")
		if err := g.sessions.add(s, cfg.Limits); err != nil {
			t.Fatal(err)
		}
		sessions[tok] = s
	}
	g.backendNotification(context.Background(), g.bs().byName["alpha"], jsonrpc.NewNotification("notifications/message", json.RawMessage(`{"level":"info","data":"alpha log"}`)))
	g.backendNotification(context.Background(), g.bs().byName["alpha"], jsonrpc.NewNotification("notifications/custom", json.RawMessage(`{"x":1}`)))
	want := map[string]int{"a": 2, "b": 2, "c": 0, "all": 2}
	for tok, s := range sessions {
		if got := len(streamed(s)); got != want[tok] {
			t.Errorf("session of token %s got %d of alpha's messages, want %d", tok, got, want[tok])
		}
	}
}
