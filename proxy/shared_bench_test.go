package proxy_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/redisstate/redistest"
)

// BenchmarkSharedState is a full tools/call through the gateway with a
// rate limit (never reached), and a cache hit, with the state in process
// and in a local redis-server: the difference is what Redis adds per call.
func BenchmarkSharedState(b *testing.B) {
	r := redistest.Start(b)
	for _, tc := range []struct {
		name          string
		redis, cached bool
	}{
		{"rate-limited/in-process", false, false},
		{"rate-limited/redis", true, false},
		{"cache-hit/in-process", false, true},
		{"cache-hit/redis", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			url, sid, stop := benchGateway(b, nil, nil, func(c *config.Config) {
				c.Limits.RatePerPrincipal = config.Rate{Rate: "1000000000/s", Burst: 1 << 30}
				if tc.cached {
					c.Servers[0].Tools = map[string]config.ToolSettings{"echo": {Cache: &config.ToolCache{TTL: time.Hour, Force: true}}}
				}
				if tc.redis {
					c.Redis = config.Redis{Addr: r.Addr, Prefix: fmt.Sprintf("bench-%d:", time.Now().UnixNano()), Timeout: time.Second}
				}
			})
			defer stop()
			body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"shared"}}}`
			do := func() []byte { return benchPost(b, url, sid, body) }
			do()
			if out := do(); !bytes.Contains(out, []byte("shared")) || bytes.Contains(out, []byte(`"error"`)) ||
				bytes.Contains(out, []byte(proxy.MetaCache)) != tc.cached {
				b.Fatalf("answer %s (cached %v)", out, tc.cached)
			}
			b.ReportAllocs()
			for b.Loop() {
				do()
			}
		})
	}
}
