package runner

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"
)

func TestPacer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		speed float64
		at    []int64 // recorded times, seconds
		want  time.Duration
	}{
		{"as fast as possible", 0, []int64{10, 12, 20}, 0},
		{"recorded pacing", 1, []int64{10, 12, 20}, 10 * time.Second},
		{"twice as fast", 2, []int64{10, 12, 20}, 5 * time.Second},
		{"late requests do not wait", 1, []int64{10, 9, 10}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := pacer{speed: tt.speed}
				start := time.Now()
				for _, s := range tt.at {
					if err := p.wait(context.Background(), s*int64(time.Second)); err != nil {
						t.Fatal(err)
					}
				}
				if got := time.Since(start); got != tt.want {
					t.Errorf("paced %v, want %v", got, tt.want)
				}
			})
		})
	}
}

func TestRewriteParams(t *testing.T) {
	for _, tt := range []struct{ in, token, want string }{
		{`{"name":"a"}`, "t", `{"name":"a"}`},
		{`{"name":"a","_meta":{"traceparent":"00-x","mcptrail.dev/request-id":"R"}}`, "t", `{"name":"a"}`},
		{`{"name":"a","_meta":{"progressToken":1,"traceparent":"x","k":"v"}}`, "replay-1", `{"name":"a","_meta":{"progressToken":"replay-1","k":"v"}}`},
		{`{"_meta":{"progressToken":"p"}}`, "", `{"_meta":{"progressToken":"p"}}`},
		{`not json`, "t", `not json`},
		{``, "t", ``},
	} {
		if got := string(rewriteParams([]byte(tt.in), tt.token)); got != tt.want {
			t.Errorf("rewriteParams(%s, %q) = %s, want %s", tt.in, tt.token, got, tt.want)
		}
	}
}

func TestNormalizeAnswer(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"content":[],"_meta":{"mcptrail.dev/request-id":"R"}}`, `{"content":[]}`},
		{`{"content":[],"_meta":{"mcptrail.dev/request-id":"R","x":1}}`, `{"content":[],"_meta":{"x":1}}`},
		{`{"code":-32003,"message":"no","data":{"requestId":"R"}}`, `{"code":-32003,"message":"no"}`},
		{`{"code":-32003,"message":"no","data":{"requestId":"R","server":"s"}}`, `{"code":-32003,"message":"no","data":{"server":"s"}}`},
		{`{"data":{"requestId":"R"}}`, `{"data":{"requestId":"R"}}`}, // not an error object
		{`[1]`, `[1]`},
	} {
		if got := string(normalizeAnswer([]byte(tt.in))); got != tt.want {
			t.Errorf("normalizeAnswer(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzRewriteParams: rewriting never panics and keeps valid JSON valid.
func FuzzRewriteParams(f *testing.F) {
	for _, s := range []string{`{"name":"a","_meta":{"progressToken":1,"traceparent":"x"}}`, `{"_meta":null}`, `{"_meta":{}}`, `{}`, `[]`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := rewriteParams(b, "replay-1")
		if json.Valid(b) && !json.Valid(out) {
			t.Fatalf("rewriteParams(%s) = %s: invalid JSON", b, out)
		}
		n := normalizeAnswer(b)
		if json.Valid(b) && !json.Valid(n) {
			t.Fatalf("normalizeAnswer(%s) = %s: invalid JSON", b, n)
		}
	})
}
