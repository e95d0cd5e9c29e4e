package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// The security matrix (issue 7, "Done means"): principals × methods ×
// targets through the real binary, in front of two real backends
// (server-everything and server-memory over stdio), recording into
// ClickHouse. Every cell says what must happen — allowed, denied by policy
// (-32003) or refused as ambiguous (-32600) — from an oracle written here
// independently of the gateway's rule engine; a denied cell must not reach
// a backend (no upstream hop) and must be recorded with the rule that
// denied it, in hops and in the audit trail. Lists must show exactly what
// the oracle allows. Another file may add session and stream rows.

// matrixPrincipal is one token of the matrix config and the oracle of what
// it may do.
type matrixPrincipal struct {
	name, token string
	allow       func(kind, target string) bool
}

// A cell's expected outcome.
const (
	wantAllowed   = "allowed"
	wantDenied    = "denied"    // -32003, rule recorded, no upstream hop
	wantAmbiguous = "ambiguous" // -32600, rule ambiguous-key, no upstream hop
)

// matrixCell is one request of the matrix.
type matrixCell struct {
	principal *matrixPrincipal
	method    string // for the summary: the JSON-RPC method or a variant name
	target    string
	kind      string // oracle kind: tool, prompt, resource, completion, method
	oracle    string // oracle target
	body      string // raw JSON-RPC message; "" builds it from params
	params    map[string]any
	want      string
	modern    bool // sent as a sessionless 2026-07-28 request

	// outcome
	code  int
	reqID string
}

func prefixed(target string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(target, p) {
			return true
		}
	}
	return false
}

func TestSecurityMatrix(t *testing.T) {
	npm := npmDir(t)
	srv := chtest.Shared(t)
	env := newEnv(t, srv.Addr())
	everything := filepath.Join(npm, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	memory := filepath.Join(npm, "node_modules/@modelcontextprotocol/server-memory/dist/index.js")

	principals := []*matrixPrincipal{
		{name: "eve", token: "tok-eve-" + randAlnum(20), allow: func(kind, target string) bool {
			return kind == "tool" && target == "everything.echo"
		}},
		{name: "rita", token: "tok-rita-" + randAlnum(20), allow: func(kind, target string) bool {
			switch kind {
			case "tool", "prompt", "completion":
				return strings.HasPrefix(target, "everything.")
			case "resource":
				return strings.HasPrefix(target, "everything:demo://resource/static/") && !strings.Contains(target, "..")
			}
			return false
		}},
		{name: "max", token: "tok-max-" + randAlnum(20), allow: func(kind, target string) bool {
			switch kind {
			case "tool":
				return strings.HasPrefix(target, "memory.")
			case "resource":
				return strings.HasPrefix(target, "memory:")
			}
			return false
		}},
		{name: "root", token: "tok-root-" + randAlnum(20), allow: func(kind, target string) bool { return true }},
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
shutdown_timeout: 20s
instance: e2e-matrix
servers:
  - name: everything
    transport: stdio
    command: node
    args: [%q, stdio]
    required: true
  - name: memory
    transport: stdio
    command: node
    args: [%q]
    env:
      MEMORY_FILE_PATH: %q
    required: true
auth:
  tokens:
    - name: eve
      sha256: %s
      tools: ["everything.echo"]
    - name: rita
      sha256: %s
      tools: ["everything.*"]
      prompts: ["everything.*"]
      resources: ["everything:demo://resource/static/*"]
      completions: ["everything.*"]
    - name: max
      sha256: %s
      tools: ["memory.*"]
      resources: ["memory:*"]
    - name: root
      sha256: %s
      tools: ["*"]
      prompts: ["*"]
      resources: ["*"]
      completions: ["*"]
      methods: ["*"]
recorder:
  clickhouse:
    addr: ["${E2E_CH_ADDR}"]
    database: ${E2E_CH_DB}
  spool:
    dir: ${E2E_SPOOL_DIR}
  flush_interval: 100ms
  redaction:
    hmac_key_env: E2E_REDACTION_KEY
`, everything, memory, filepath.Join(t.TempDir(), "memory.jsonl"),
		sha256hex(principals[0].token), sha256hex(principals[1].token), sha256hex(principals[2].token), sha256hex(principals[3].token))
	cfgPath := filepath.Join(t.TempDir(), "matrix.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Config = cfgPath
	gw := startGateway(t, env)
	clients := map[string]*mcpClient{}
	for _, p := range principals {
		clients[p.name] = dial(t, gw.url, p.token)
	}

	// The targets, from the backends' own lists (as root sees them).
	root := clients["root"]
	staticDoc := ""
	for _, u := range matrixList(t, root, "resources/list", "resources", "uri") {
		if strings.HasPrefix(u, "demo://resource/static/document/") {
			staticDoc = u
			break
		}
	}
	if staticDoc == "" {
		t.Fatal("server-everything lists no demo://resource/static/document/ resource")
	}
	const memURI = "memory://knowledge-graph"

	type target struct {
		method, kind, oracle string
		params               map[string]any
	}
	targets := []target{
		{"tools/call", "tool", "everything.echo", map[string]any{"name": "everything.echo", "arguments": map[string]any{"message": "m"}}},
		{"tools/call", "tool", "everything.get-env", map[string]any{"name": "everything.get-env", "arguments": map[string]any{}}},
		{"tools/call", "tool", "memory.read_graph", map[string]any{"name": "memory.read_graph", "arguments": map[string]any{}}},
		{"tools/call", "tool", "memory.no_such_tool", map[string]any{"name": "memory.no_such_tool", "arguments": map[string]any{}}},
		{"prompts/get", "prompt", "everything.simple-prompt", map[string]any{"name": "everything.simple-prompt", "arguments": map[string]any{}}},
		{"prompts/get", "prompt", "memory.anything", map[string]any{"name": "memory.anything", "arguments": map[string]any{}}},
		{"resources/read", "resource", "everything:" + staticDoc, map[string]any{"uri": staticDoc}},
		{"resources/read", "resource", "memory:" + memURI, map[string]any{"uri": memURI}},
		{"resources/read", "resource", "everything:demo://resource/static/document/../../dynamic", map[string]any{"uri": "demo://resource/static/document/../../dynamic"}},
		// Node's URL parser drops the tab: the backend reads demo://resource/dynamic/text/1.
		{"resources/read", "resource", "everything:demo://resource/static/\t../dynamic/text/1", map[string]any{"uri": "demo://resource/static/\t../dynamic/text/1"}},
		{"resources/subscribe", "resource", "everything:" + staticDoc, map[string]any{"uri": staticDoc}},
		{"resources/subscribe", "resource", "memory:" + memURI, map[string]any{"uri": memURI}},
		{"resources/unsubscribe", "resource", "everything:" + staticDoc, map[string]any{"uri": staticDoc}},
		{"completion/complete", "completion", "everything.completable-prompt", map[string]any{
			"ref": map[string]any{"type": "ref/prompt", "name": "everything.completable-prompt"}, "argument": map[string]any{"name": "department", "value": "E"}}},
		{"completion/complete", "completion", "everything:demo://resource/dynamic/text/{resourceId}", map[string]any{
			"ref": map[string]any{"type": "ref/resource", "uri": "demo://resource/dynamic/text/{resourceId}"}, "argument": map[string]any{"name": "resourceId", "value": "1"}}},
		{"custom/thing", "method", "custom/thing", map[string]any{}},
		{"tasks/list", "method", "tasks/list", map[string]any{}},
	}
	// Messages whose keys a backend could read differently from the
	// gateway: refused for everyone, root included.
	ambiguous := []struct{ name, body string }{
		{"dup name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","name":"everything.get-env","arguments":{"message":"x"}}}`},
		{"escaped dup name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","n\u0061me":"everything.get-env","arguments":{"message":"x"}}}`},
		{"case variant name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","NAME":"everything.get-env","arguments":{"message":"x"}}}`},
		{"dup uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"` + staticDoc + `","uri":"` + memURI + `"}}`},
		{"dup ref name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"everything.completable-prompt","name":"memory.x"},"argument":{"name":"department","value":""}}}`},
		{"dup method", `{"jsonrpc":"2.0","id":1,"method":"ping","m\u0065thod":"tools/call","params":{"name":"everything.get-env","arguments":{}}}`},
		{"dup progressToken", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","arguments":{"message":"x"},"_meta":{"progressToken":1,"progressToken":"mcptrail-1"}}}`},
	}

	var cells []*matrixCell
	for _, p := range principals {
		for _, tg := range targets {
			want := wantDenied
			if p.allow(tg.kind, tg.oracle) {
				want = wantAllowed
			}
			cells = append(cells, &matrixCell{principal: p, method: tg.method, target: tg.oracle, kind: tg.kind, oracle: tg.oracle, params: tg.params, want: want})
		}
		for _, a := range ambiguous {
			cells = append(cells, &matrixCell{principal: p, method: "ambiguous: " + a.name, target: a.name, body: a.body, want: wantAmbiguous})
		}
		// The same decisions for a sessionless 2026-07-28 client, whose
		// requests take the gateway's modern path.
		for _, tg := range targets {
			if !modernMethods[tg.method] {
				continue
			}
			want := wantDenied
			if p.allow(tg.kind, tg.oracle) {
				want = wantAllowed
			}
			cells = append(cells, &matrixCell{principal: p, method: "2026 " + tg.method, target: tg.oracle, kind: tg.kind, oracle: tg.oracle, params: tg.params, want: want, modern: true})
		}
	}
	// Callers who are nobody: a wrong token and none at all. Every request
	// is refused (401, -32003) before it is read, and recorded.
	nobody := []*matrixPrincipal{
		{name: "wrong", token: "tok-wrong-" + randAlnum(20), allow: func(string, string) bool { return false }},
		{name: "none", token: "", allow: func(string, string) bool { return false }},
	}
	for _, p := range nobody {
		clients[p.name] = &mcpClient{base: gw.url, token: p.token}
		for _, tg := range targets {
			body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": tg.method, "params": tg.params})
			cells = append(cells, &matrixCell{principal: p, method: tg.method, target: tg.oracle, kind: tg.kind, oracle: tg.oracle, body: string(body), want: wantDenied})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range cells {
		cl := clients[c.principal.name]
		var resp rpcResponse
		var err error
		switch {
		case c.modern:
			resp, c.reqID, err = postModern(ctx, gw.url, c.principal.token, strings.TrimPrefix(c.method, "2026 "), c.params)
		case c.body != "":
			resp, c.reqID, err = postRaw(ctx, cl, c.body)
		default:
			resp, c.reqID, err = cl.request(ctx, c.method, c.params)
			if err != nil && resp.Error != nil {
				err = nil // an HTTP error status with a JSON-RPC answer
			}
		}
		if err != nil {
			t.Fatalf("%s %s %s: %v", c.principal.name, c.method, c.target, err)
		}
		if resp.Error != nil {
			c.code = resp.Error.Code
		}
		if c.reqID == "" {
			t.Fatalf("%s %s %s: no X-Request-Id", c.principal.name, c.method, c.target)
		}
	}

	// What the recorder says about each request.
	gw.waitWritten(t)
	conn := chConn(t, env.CHAddr)
	type recorded struct {
		upstream, denied uint64
		rule             string
		auditDecision    string
		auditRule        string
	}
	rec := map[string]*recorded{}
	ids := make([]string, 0, len(cells))
	for _, c := range cells {
		ids = append(ids, c.reqID)
		rec[c.reqID] = &recorded{}
	}
	idSet := ch.GroupSet{}
	for _, id := range ids {
		idSet.Value = append(idSet.Value, id)
	}
	rows, err := conn.Query(ctx, `SELECT request_id, countIf(hop = 'upstream'), countIf(hop = 'auth' AND auth_decision = 'denied'),
		anyIf(auth_rule, hop = 'auth' AND auth_decision = 'denied') FROM `+env.CHDB+`.hops WHERE request_id IN ? GROUP BY request_id`, idSet)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, rule string
		var up, den uint64
		if err := rows.Scan(&id, &up, &den, &rule); err != nil {
			t.Fatal(err)
		}
		rec[id].upstream, rec[id].denied, rec[id].rule = up, den, rule
	}
	rows.Close()
	rows, err = conn.Query(ctx, `SELECT request_id, any(decision), any(rule) FROM `+env.CHDB+`.audit FINAL WHERE request_id IN ? GROUP BY request_id`, idSet)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, dec, rule string
		if err := rows.Scan(&id, &dec, &rule); err != nil {
			t.Fatal(err)
		}
		rec[id].auditDecision, rec[id].auditRule = dec, rule
	}
	rows.Close()

	type tally struct{ cells, passed, unauthorized int }
	byRow := map[string]*tally{}
	total := tally{}
	for _, c := range cells {
		r := rec[c.reqID]
		var fail string
		switch c.want {
		case wantAllowed:
			// Allowed: served by the backend (which may still answer
			// an error, e.g. for a tool it does not have), or refused
			// for a reason other than policy and protocol.
			switch c.code {
			case -32003, -32600, -32020, -32021, -32022:
				fail = fmt.Sprintf("refused with %d, want allowed", c.code)
			}
			// And it reached its backend, so denials elsewhere are not
			// an artefact of a broken route (an unknown method has
			// no backend to go to among two).
			if fail == "" && c.kind != "method" && r.upstream == 0 {
				fail = fmt.Sprintf("allowed (code %d) but never reached a backend", c.code)
			}
		case wantDenied, wantAmbiguous:
			wantCode, wantRule := -32003, ""
			if c.want == wantAmbiguous {
				wantCode, wantRule = -32600, "ambiguous-key"
			}
			switch {
			case c.code != wantCode || r.upstream > 0:
				fail = fmt.Sprintf("UNAUTHORIZED: answered %d with %d upstream hop(s), want %d and none", c.code, r.upstream, wantCode)
			case r.denied == 0 || r.rule == "" || (wantRule != "" && r.rule != wantRule):
				fail = fmt.Sprintf("denied but its auth hop is not recorded with a rule (denied hops %d, rule %q)", r.denied, r.rule)
			case r.auditDecision != "denied" || r.auditRule != r.rule:
				fail = fmt.Sprintf("audit row says %q by %q, want denied by %q", r.auditDecision, r.auditRule, r.rule)
			}
		}
		row := c.principal.name + " " + c.method
		if byRow[row] == nil {
			byRow[row] = &tally{}
		}
		byRow[row].cells++
		total.cells++
		if fail == "" {
			byRow[row].passed++
			total.passed++
			continue
		}
		if strings.HasPrefix(fail, "UNAUTHORIZED") {
			byRow[row].unauthorized++
			total.unauthorized++
		}
		t.Errorf("%s %s %s (request %s): %s", c.principal.name, c.method, c.target, c.reqID, fail)
	}

	// Lists show exactly what the calls allow: every item root sees is
	// checked against each principal's oracle.
	lists := []struct{ method, field, key, kind string }{
		{"tools/list", "tools", "name", "tool"},
		{"prompts/list", "prompts", "name", "prompt"},
		{"resources/list", "resources", "uri", "resource"},
		{"resources/templates/list", "resourceTemplates", "uriTemplate", "resource"},
	}
	oracleTarget := func(kind, item string) string {
		if kind != "resource" {
			return item
		}
		if strings.HasPrefix(item, "memory://") {
			return "memory:" + item
		}
		return "everything:" + item
	}
	for _, l := range lists {
		all := matrixList(t, root, l.method, l.field, l.key)
		if len(all) == 0 && l.method != "resources/templates/list" {
			t.Errorf("root's %s is empty", l.method)
		}
		for _, p := range principals {
			shown := map[string]bool{}
			for _, it := range matrixList(t, clients[p.name], l.method, l.field, l.key) {
				shown[it] = true
			}
			row := p.name + " " + l.method
			byRow[row] = &tally{}
			for _, it := range all {
				want := p.allow(l.kind, oracleTarget(l.kind, it))
				byRow[row].cells++
				total.cells++
				if shown[it] == want {
					byRow[row].passed++
					total.passed++
					continue
				}
				if shown[it] {
					byRow[row].unauthorized++
					total.unauthorized++
				}
				t.Errorf("%s %s: item %s shown = %v, want %v", p.name, l.method, it, shown[it], want)
			}
		}
	}

	// The summary: one row per principal, one column per method (the
	// ambiguous-key variants and the unknown methods folded into one
	// column each); a cell reads passed/checked, with "!n" when n
	// unauthorized operations passed.
	columns := []string{"tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe", "completion/complete",
		"unknown", "ambiguous", "2026 sessionless", "tools/list", "prompts/list", "resources/list", "resources/templates/list"}
	column := func(method string) string {
		switch {
		case strings.HasPrefix(method, "ambiguous"):
			return "ambiguous"
		case strings.HasPrefix(method, "2026 "):
			return "2026 sessionless"
		case method == "custom/thing" || method == "tasks/list":
			return "unknown"
		}
		return method
	}
	grid := map[string]map[string]*tally{}
	for r, tl := range byRow {
		who, method, _ := strings.Cut(r, " ")
		if grid[who] == nil {
			grid[who] = map[string]*tally{}
		}
		col := column(method)
		if grid[who][col] == nil {
			grid[who][col] = &tally{}
		}
		g := grid[who][col]
		g.cells, g.passed, g.unauthorized = g.cells+tl.cells, g.passed+tl.passed, g.unauthorized+tl.unauthorized
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "security matrix: %d principals (+ a wrong token and none) × 2 backends (server-everything, server-memory) × %d methods and %d ambiguous-key variants: %d checks, %d passed, %d unauthorized operations passed\n",
		len(principals), len(columns)-1, len(ambiguous), total.cells, total.passed, total.unauthorized)
	fmt.Fprintf(&sb, "%-6s", "")
	for _, col := range columns {
		fmt.Fprintf(&sb, " %*s", max(len(col), 7), col)
	}
	sb.WriteByte('\n')
	for _, p := range append(principals, nobody...) {
		fmt.Fprintf(&sb, "%-6s", p.name)
		for _, col := range columns {
			cell := "-"
			if g := grid[p.name][col]; g != nil {
				cell = fmt.Sprintf("%d/%d", g.passed, g.cells)
				if g.unauthorized > 0 {
					cell += fmt.Sprintf("!%d", g.unauthorized)
				}
			}
			fmt.Fprintf(&sb, " %*s", max(len(col), 7), cell)
		}
		sb.WriteByte('\n')
	}
	t.Log("\n" + sb.String())
	if total.unauthorized != 0 {
		t.Errorf("%d unauthorized operations passed, want 0", total.unauthorized)
	}
}

// modernMethods are the targets' methods also sent as 2026-07-28 requests.
var modernMethods = map[string]bool{"tools/call": true, "prompts/get": true, "resources/read": true, "completion/complete": true, "custom/thing": true}

// postModern sends one sessionless 2026-07-28 request (protocol version,
// client info and capabilities in _meta; Mcp-Method and Mcp-Name headers).
func postModern(ctx context.Context, base, token, method string, params map[string]any) (rpcResponse, string, error) {
	p := map[string]any{}
	for k, v := range params {
		p[k] = v
	}
	p["_meta"] = map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "matrix", "version": "1"},
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": p})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/mcp", bytes.NewReader(body))
	if err != nil {
		return rpcResponse{}, "", err
	}
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", method)
	for _, k := range []string{"name", "uri"} {
		if v, ok := params[k].(string); ok {
			req.Header.Set("Mcp-Name", v)
		}
	}
	return doRaw(req, token)
}

// matrixList reads every page of a list and returns each item's key.
func matrixList(t *testing.T, c *mcpClient, method, field, key string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	cursor := ""
	for range 100 {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		resp, _, err := c.request(ctx, method, params)
		if err != nil || resp.Error != nil {
			t.Fatalf("%s: %v %+v", method, err, resp.Error)
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(resp.Result, &page); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		var items []map[string]any
		_ = json.Unmarshal(page[field], &items)
		for _, it := range items {
			s, _ := it[key].(string)
			out = append(out, s)
		}
		cursor = ""
		_ = json.Unmarshal(page["nextCursor"], &cursor)
		if cursor == "" {
			return out
		}
	}
	t.Fatalf("%s: more than 100 pages", method)
	return nil
}

// postRaw sends one raw JSON-RPC body on c's session and returns the
// answer and the X-Request-Id.
func postRaw(ctx context.Context, c *mcpClient, body string) (rpcResponse, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/mcp", bytes.NewReader([]byte(body)))
	if err != nil {
		return rpcResponse{}, "", err
	}
	req.Header.Set("Mcp-Session-Id", c.sid)
	return doRaw(req, c.token)
}

// doRaw sends req with token and returns the final answer and the
// X-Request-Id.
func doRaw(req *http.Request, token string) (rpcResponse, string, error) {
	var out rpcResponse
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpc.Do(req)
	if err != nil {
		return out, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, "", err
	}
	if i := bytes.LastIndex(b, []byte("data:")); i >= 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b = bytes.TrimSpace(b[i+len("data:"):])
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, "", fmt.Errorf("decoding %s: %w", b, err)
	}
	return out, resp.Header.Get("X-Request-Id"), nil
}
