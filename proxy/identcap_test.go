package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
)

// TestOversizedIdentifiersAreCapped: a huge JSON-RPC id, method, tool name
// and clientInfo are stored cut to a bounded size with a marker and the
// mcptrail.truncated attribute naming the columns, on every hop; the client
// still gets its full id back. Fails before the fix: a 900 KB id was
// stored whole on every hop.
func TestOversizedIdentifiersAreCapped(t *testing.T) {
	e := startGateway(t, oneBackend(t))
	auth := map[string]string{"Authorization": "Bearer alice-token"}
	hugeName := strings.Repeat("n", 100_000)
	initResp, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"`+hugeName+`","version":"`+hugeName+`"}}}`, auth)
	if initResp.StatusCode != 200 {
		t.Fatalf("initialize: %d %.200s", initResp.StatusCode, b)
	}
	hdr := map[string]string{"Authorization": "Bearer alice-token", "Mcp-Session-Id": initResp.Header.Get("Mcp-Session-Id")}

	hugeID := `"` + strings.Repeat("i", 900_000) + `"`
	tests := []struct {
		name, body string
		id         string // the id the answer must carry, unchanged
		cols       []string
	}{
		{"huge id", `{"jsonrpc":"2.0","id":` + hugeID + `,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"hi"}}}`, hugeID, []string{"rpc_id", "client_name", "client_version"}},
		{"huge tool name", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.` + strings.Repeat("t", 50_000) + `","arguments":{}}}`, "2", []string{"target"}},
		{"huge method", `{"jsonrpc":"2.0","id":3,"method":"` + strings.Repeat("m", 50_000) + `","params":{}}`, "3", []string{"method"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := post(t, e.url, tt.body, hdr)
			var ans struct {
				ID json.RawMessage `json:"id"`
			}
			raw := b
			if i := strings.LastIndex(string(b), "data: "); i >= 0 {
				raw = []byte(strings.TrimSpace(string(b[i+6:])))
			}
			if err := json.Unmarshal(raw, &ans); err != nil || string(ans.ID) != tt.id {
				t.Fatalf("answer (HTTP %d) id = %.60s (%d bytes), want the request's id unchanged (%d bytes); err %v", resp.StatusCode, ans.ID, len(ans.ID), len(tt.id), err)
			}
			reqID := resp.Header.Get("X-Request-Id")
			evs := e.rec.byRequest(reqID)
			if len(evs) == 0 {
				t.Fatalf("no events recorded for %s", reqID)
			}
			for _, ev := range evs {
				for col, v := range map[string]string{"rpc_id": ev.RPCID, "method": ev.Method, "target": ev.Target,
					"client_name": ev.ClientName, "client_version": ev.ClientVersion} {
					if len(v) > 2048+64 {
						t.Errorf("%s hop: %s is %d bytes stored", ev.Hop, col, len(v))
					}
				}
			}
			var inbound *recorder.Event
			for i := range evs {
				if evs[i].Hop == recorder.HopInbound {
					inbound = &evs[i]
				}
			}
			if inbound == nil {
				t.Fatal("no inbound hop recorded")
			}
			trunc := attr(*inbound, "mcptrail.truncated")
			for _, col := range tt.cols {
				if !strings.Contains(trunc, col) {
					t.Errorf("inbound hop: mcptrail.truncated = %q, want it to name %s", trunc, col)
				}
			}
			cut := map[string]string{"rpc_id": inbound.RPCID, "target": inbound.Target, "method": inbound.Method}[tt.cols[0]]
			if !strings.Contains(cut, "…(truncated from ") {
				t.Errorf("inbound %s = %.80q, want a truncation marker", tt.cols[0], cut)
			}
		})
	}
}

func attr(e recorder.Event, key string) string {
	for _, a := range e.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}
