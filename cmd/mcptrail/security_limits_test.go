package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSecurityOversizedID sends a 900 KB JSON-RPC id through the real
// binary and reads ClickHouse: every hop stores at most a few hundred
// bytes of it, marked (mcptrail.truncated), and the client gets its id back
// whole. Fails before the fix: the id was stored whole on every hop.
func TestSecurityOversizedID(t *testing.T) {
	gw, env := startSecurityGateway(t)
	c := dial(t, gw.url, env.Tokens["alice"])
	id := strings.Repeat("9", 900_000) // a number: the id keeps its JSON type
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, status, reqID, err := c.post(ctx, map[string]any{"jsonrpc": "2.0", "id": json.Number(id), "method": "tools/call",
		"params": map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": "big id"}}})
	if err != nil || status != 200 || resp.Error != nil {
		t.Fatalf("tools/call with a 900 KB id: HTTP %d %v %+v", status, err, resp.Error)
	}
	if string(resp.ID) != id {
		t.Errorf("answer id is %d bytes, want the request's %d bytes unchanged", len(resp.ID), len(id))
	}
	gw.waitWritten(t)
	conn := chConn(t, env.CHAddr)
	q := fmt.Sprintf("SELECT hop, length(rpc_id), has(attr_keys, 'mcptrail.truncated'), rpc_id FROM %s.hops WHERE request_id = ?", env.CHDB)
	rows, err := conn.Query(context.Background(), q, reqID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	hops, marked, total := 0, 0, uint64(0)
	for rows.Next() {
		var hop, rpcID string
		var n uint64
		var has uint8
		if err := rows.Scan(&hop, &n, &has, &rpcID); err != nil {
			t.Fatal(err)
		}
		hops++
		total += n
		if n > 400 {
			t.Errorf("%s hop stores a %d-byte rpc_id", hop, n)
		}
		if strings.Contains(rpcID, "truncated from 900000 bytes") {
			marked++
			if has == 0 {
				t.Errorf("%s hop: rpc_id cut but no mcptrail.truncated attribute", hop)
			}
		}
	}
	if hops == 0 || marked == 0 {
		t.Errorf("request %s: %d hops, %d with a marked rpc_id; want hops and the client's id marked as truncated", reqID, hops, marked)
	}
	t.Logf("900 KB id: %d hops store %d bytes of rpc_id in all", hops, total)
}
