package proxy_test

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/sse"
)

// TestListenURIsRace: a listen stream's URIs are written as its
// subscriptions are accepted, while other streams ending read every
// stream's URIs (run with -race; no recorder, so that its lock does not
// order the two).
func TestListenURIsRace(t *testing.T) {
	url := startEverythingHTTP(t)
	cfg := &config.Config{Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}}}
	e := startGateway(t, cfg, func(o *proxy.Options) {
		o.Recorder = nil
		o.Logger = slog.New(slog.DiscardHandler)
	})
	open := func(uris []string) (string, context.CancelFunc, error) {
		body := modernBody(0, "subscriptions/listen", map[string]any{"notifications": map[string]any{
			"resourceSubscriptions": uris}}, nil)
		req, _ := http.NewRequest(http.MethodPost, e.url+"/mcp", strings.NewReader(body))
		for k, v := range modernHeaders("subscriptions/listen", "") {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			return "", nil, err
		}
		var ack string
		_, _ = sse.Read(resp.Body, 1<<20, func(_, data []byte) bool { ack = string(data); return false })
		return ack, func() { cancel(); resp.Body.Close() }, nil
	}
	var many []string
	for i := 1; i <= 200; i++ {
		many = append(many, "demo://resource/dynamic/text/"+strconv.Itoa(i))
	}
	type opened struct {
		ack   string
		close context.CancelFunc
		err   error
	}
	big := make(chan opened, 1)
	go func() {
		ack, c, err := open(many)
		big <- opened{ack, c, err}
	}()
	for range 20 {
		_, c, err := open([]string{many[0]})
		if err != nil {
			t.Fatal(err)
		}
		c()
	}
	b := <-big
	if b.err != nil {
		t.Fatal(b.err)
	}
	defer b.close()
	if !strings.Contains(b.ack, many[len(many)-1]) {
		t.Fatalf("acknowledgement does not name %s: %.200s", many[len(many)-1], b.ack)
	}
}
