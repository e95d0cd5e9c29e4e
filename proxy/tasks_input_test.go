package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// TestModernTaskInputRequired: server-everything's simulate-research-query
// with ambiguous: true asks for an elicitation on tasks/result while its
// task is input_required (2025-11-25). A 2026 client sees the task as
// input_required with that elicitation in inputRequests; another
// principal's tasks/update is refused as its tasks/get is; the owner's
// tasks/update answers the backend's request and the task completes with
// the answer in its result. A second such task of the same principal is
// refused at limits.max_held_per_principal. The elicitation and the update
// are recorded and linked to the tools/call that made the task. Over stdio
// the backend's request has no causal context: its related-task names the
// task.
func TestModernTaskInputRequired(t *testing.T) {
	for _, tr := range []string{"http", "stdio"} {
		t.Run(tr, func(t *testing.T) {
			server := config.Server{Name: "everything", Transport: "stdio", Command: "node", Args: []string{everythingJS(t), "stdio"}, Timeout: 30 * time.Second}
			if tr == "http" {
				server = config.Server{Name: "everything", Transport: "http", URL: startEverythingHTTP(t), Timeout: 30 * time.Second}
			}
			testTaskInputRequired(t, server)
		})
	}
}

func testTaskInputRequired(t *testing.T, server config.Server) {
	e := startGateway(t, &config.Config{
		Servers: []config.Server{server},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "alice", SHA256: sha("alice-token"), Tools: []string{"everything.*"}},
			{Name: "bob", SHA256: sha("bob-token"), Tools: []string{"everything.*"}},
		}},
		Limits: config.Limits{MaxHeldPerPrincipal: 1},
	})
	caps := map[string]any{"elicitation": map[string]any{}, "extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}
	as := func(token, method, name string) map[string]string {
		h := modernHeaders(method, name)
		h["Authorization"] = "Bearer " + token
		return h
	}
	id := 0
	send := func(token, method string, params map[string]any) (string, rpcAnswer) {
		t.Helper()
		id++
		name := ""
		if method == "tools/call" {
			name, _ = params["name"].(string)
		}
		resp, b := post(t, e.url, modernBody(id, method, params, caps), as(token, method, name))
		return resp.Header.Get(proxy.HeaderRequestID), decodeAnswer(t, b)
	}
	start := func(topic string) (string, string) {
		t.Helper()
		callID, a := send("alice-token", "tools/call", map[string]any{"name": "everything.simulate-research-query",
			"arguments": map[string]any{"topic": topic, "ambiguous": true}})
		var taskID string
		_ = json.Unmarshal(a.Result["taskId"], &taskID)
		if a.Error != nil || string(a.Result["resultType"]) != `"task"` {
			t.Fatalf("tools/call = %+v, want an extension task", a)
		}
		return callID, taskID
	}
	get := func(token, taskID string) rpcAnswer {
		t.Helper()
		_, a := send(token, "tasks/get", map[string]any{"taskId": taskID})
		return a
	}

	callID, taskID := start("gateways")
	var a rpcAnswer
	waitFor(t, "task input_required", func() bool {
		a = get("alice-token", taskID)
		return a.Error != nil || string(a.Result["status"]) != `"working"`
	})
	if a.Error != nil || string(a.Result["status"]) != `"input_required"` || string(a.Result["resultType"]) != `"complete"` {
		t.Fatalf("tasks/get = %+v, want status input_required", a)
	}
	key := oneElicitation(t, a.Result["inputRequests"], "gateways")
	// Asked again, the same request under the same key.
	if a := get("alice-token", taskID); string(a.Result["status"]) != `"input_required"` || !strings.Contains(string(a.Result["inputRequests"]), `"`+key+`"`) {
		t.Errorf("second tasks/get = %+v, want the same input request %s", a, key)
	}

	// Another task of alice's that needs input is one held request too many.
	_, other := start("owners")
	waitFor(t, "second task refused at the held limit", func() bool {
		a = get("alice-token", other)
		return a.Error != nil || string(a.Result["status"]) != `"working"`
	})
	if a.Error == nil || a.Error.Code != -32029 || !strings.Contains(string(a.Error.Data), "max_held_per_principal") {
		t.Errorf("tasks/get of a second task needing input = %+v, want -32029 max_held_per_principal", a)
	}

	answer := map[string]any{key: map[string]any{"action": "accept", "content": map[string]any{"interpretation": "historical"}}}
	if _, a := send("bob-token", "tasks/update", map[string]any{"taskId": taskID, "inputResponses": answer}); a.Error == nil || a.Error.Code != -32602 {
		t.Errorf("bob's tasks/update of alice's task = %+v, want -32602 Task not found", a)
	}
	if a := get("alice-token", taskID); string(a.Result["status"]) != `"input_required"` {
		t.Errorf("after bob's update: %+v, want still input_required", a)
	}
	updateID, a := send("alice-token", "tasks/update", map[string]any{"taskId": taskID, "inputResponses": answer})
	if a.Error != nil || string(a.Result["resultType"]) != `"complete"` {
		t.Fatalf("tasks/update = %+v, want an empty result", a)
	}
	waitFor(t, "task completed", func() bool {
		a = get("alice-token", taskID)
		return a.Error != nil || string(a.Result["status"]) != `"working"` && string(a.Result["status"]) != `"input_required"`
	})
	if a.Error != nil || string(a.Result["status"]) != `"completed"` || !strings.Contains(string(a.Result["result"]), "Clarification**: historical") {
		t.Errorf("final tasks/get = %+v, want completed with the client's clarification", a)
	}

	var linked, sawElicit bool
	waitFor(t, "update and elicitation recorded", func() bool {
		for _, ev := range e.rec.snapshot() {
			for _, at := range ev.Attrs {
				linked = linked || ev.RequestID == updateID && at.Key == "mcp.mrtr.origin_request_id" && at.Value == callID
				sawElicit = sawElicit || ev.Hop == recorder.HopServerRequest && ev.Method == "elicitation/create" &&
					at.Key == "mcp.mrtr.input_key" && at.Value == key && ev.Outcome == recorder.OutcomeOK
			}
		}
		return linked && sawElicit
	})
}
