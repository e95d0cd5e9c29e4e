package proxy

import (
	"context"
	"strconv"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/auth"
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
	g := &Gateway{auth: a, policies: []PolicyCheck{tokenCheck{enabled: true}}}
	ctx := context.Background()
	b.Run("call", func(b *testing.B) {
		req := PolicyRequest{Principal: p, Method: "tools/call", Kind: auth.Tools, Target: "crm.search", Server: "crm"}
		allowed := 0
		b.ReportAllocs()
		for b.Loop() {
			if !g.decide(ctx, &req).Deny {
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
			if !g.decide(ctx, &req).Deny {
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
		c := &call{g: g, princ: p}
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
