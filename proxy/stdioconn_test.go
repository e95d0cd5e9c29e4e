package proxy

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// TestStdioConnBackendExits: a stdio backend that dies fails the calls
// waiting on it at once, with its exit status and the tail of its stderr;
// answers it wrote before dying are still delivered.
func TestStdioConnBackendExits(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		wantErr      []string // "" = want the answer
	}{
		{"answers then exits", `read l; echo '{"jsonrpc":"2.0","id":1,"result":{"ok":true}}'; exit 0`, nil},
		{"dies without answering", `read l; echo "backend crashed: bad config" >&2; exit 3`, []string{"exit status 3", "backend crashed: bad config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := startStdio(exec.Command("sh", "-c", tc.script), connHooks{
				notification: func(context.Context, jsonrpc.Message) {},
				request:      func(_ context.Context, m jsonrpc.Message) jsonrpc.Message { return m },
			}, discard)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := c.call(ctx, 1, "ping", nil, nil, nil)
			if tc.wantErr == nil {
				if err != nil || string(res.Result) != `{"ok":true}` {
					t.Errorf("call = %s, %v; want the answer written before the exit", res.Result, err)
				}
				return
			}
			if err == nil || ctx.Err() != nil {
				t.Fatalf("call = %s, %v; want an error at once", res.Result, err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
