package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// canary is a secret written through one channel of the gateway.
type canary struct {
	channel string // how it was sent
	secret  string // what must never be found
}

// TestE2ECanaries writes canary secrets through every channel a client, a
// backend or the configuration can use (issue 7 item 10) into the real
// binary in front of server-everything (stdio) and proxy/testbackend
// (HTTP), then counts them in every String column of every table of the
// database, in the spool files and in the gateway's log (which also
// carries its trace spans, exported to the console). Every count must
// be 0; a non-secret marker sent the same ways proves that each scan finds
// what is there.
//
// The recorder's flush interval is an hour, so every event sits in the
// spool (acknowledged, on disk) when the spool is scanned; stopping the
// gateway then writes it all to ClickHouse.
func TestE2ECanaries(t *testing.T) {
	npm := npmDir(t)
	srv := chtest.Shared(t)
	env := newEnv(t, srv.Addr())
	rnd := func(n int) string { return randAlnum(n) }
	up := func(n int) string { return strings.ToUpper(randAlnum(n)) }

	var canaries []canary
	add := func(channel, secret string) string {
		canaries = append(canaries, canary{channel, secret})
		return secret
	}
	marker := "marker" + rnd(20) // no secret: every scan must find it

	// Configuration: a backend header, a secret in a backend URL (in
	// connection error messages), the client's bearer token.
	add("config: backend header X-Api-Key", env.HeaderSecret)
	add("client: gateway bearer token", env.FullToken)
	env.DeadURL += "?api_key=" + add("config: backend URL query (error message)", "dk"+rnd(22))

	js := filepath.Join(npm, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	cfgPath := filepath.Join(t.TempDir(), "canary.yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
shutdown_timeout: 20s
instance: e2e-canary
servers:
  - name: everything
    transport: stdio
    command: node
    args: [%q, stdio]
    required: true
  - name: tb
    transport: http
    url: ${E2E_TB_URL}
    headers:
      X-Api-Key: ${E2E_HEADER_SECRET}
    required: true
  - name: dead
    transport: http
    url: ${E2E_DEAD_URL}
    connect_timeout: 1s
    required: false
auth:
  tokens:
    - name: full
      sha256: ${E2E_FULL_SHA}
      principal: alice
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
    fsync: interval
    fsync_interval: 20ms
  flush_interval: 1h
  redaction:
    hmac_key_env: E2E_REDACTION_KEY
`, js)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Config = cfgPath
	// Spans leave the process too: the console exporter writes them to
	// the log, which is scanned.
	env.Extra = []string{"OTEL_TRACES_EXPORTER=console"}
	gw := startGateway(t, env)

	// Client side: initialize with canaries in clientInfo.
	c := &rawClient{t: t, base: gw.url, token: env.FullToken}
	c.send(nil, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{"elicitation": map[string]any{}},
		"clientInfo": map[string]any{
			"name":    "agent " + add("clientInfo.name", "xoxb-"+rnd(12)+"-"+rnd(16)),
			"version": "1.0 token=" + add("clientInfo.version", "cv"+rnd(22)),
		},
	}})
	if c.sid == "" {
		t.Fatalf("initialize gave no session")
	}
	c.send(nil, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})

	call := func(hdr map[string]string, id any, method string, params map[string]any) string {
		return c.send(hdr, map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	}
	echo := func(msg string, args map[string]any) string {
		a := map[string]any{"message": msg}
		for k, v := range args {
			a[k] = v
		}
		return call(nil, 10, "tools/call", map[string]any{"name": "everything.echo", "arguments": a})
	}

	// Arguments under keys that contain a secret word.
	echo(marker, map[string]any{
		"db_password":  add("args key db_password", "dbp"+rnd(21)),
		"passwordHash": add("args key passwordHash", "pwh"+rnd(21)),
		"apiKey":       add("args key apiKey", "apk"+rnd(21)),
		"api-key":      add("args key api-key", "apd"+rnd(21)),
		"x_api_key":    add("args key x_api_key", "xak"+rnd(21)),
		"clientSecret": add("args key clientSecret", "csk"+rnd(21)),
		"accessToken":  add("args key accessToken", "atk"+rnd(21)),
		"nested":       []any{map[string]any{"keys": []string{"k " + add("args nested OpenAI key", "sk-proj-"+rnd(40))}}},
	})
	// Secrets in text: arguments, and the echo in the result.
	echo(`{"password": "`+add("text: JSON after a prefix", "jpw"+rnd(21))+`"}`, nil)
	echo("login password="+add("text: form password=", "fpw"+rnd(21))+"&token="+add("text: form &token=", "ftk"+rnd(21))+"&user=bob", nil)
	echo("Authorization: Bearer "+add("text: Authorization: Bearer", "brr"+rnd(29)), nil)
	echo("awskey_"+add("text: AWS key after an underscore", "AKIA"+up(16)), nil)
	echo("-----BEGIN RSA PRIVATE KEY-----\n"+add("text: PEM private key", "MIIE"+rnd(40))+"\n-----END RSA PRIVATE KEY-----", nil)
	echo("dsn postgres://app:"+add("text: URL user-info password", "upw"+rnd(21))+"@db:5432/x", nil)
	// A tool's result text from the HTTP backend (tb.echo returns it as is).
	call(nil, 11, "tools/call", map[string]any{"name": "tb.echo", "arguments": map[string]any{
		"message": `result: {"client_secret":"` + add("tb result: JSON client_secret", "tcs"+rnd(21)) + `"}`}})

	// Protocol fields.
	call(nil, 12, "resources/read", map[string]any{"uri": "demo://resource/static/document/x.md?token=" + add("resource URI query", "rut"+rnd(21))})
	call(nil, 13, "resources/read", map[string]any{"uri": "test://static/1?api_key=" + add("resource URI query (tb)", "rua"+rnd(21))})
	call(nil, add("JSON-RPC id", "ghp_"+rnd(36)), "tools/call", map[string]any{"name": "everything.echo", "arguments": map[string]any{"message": "id"}})
	call(nil, 14, "tools/call", map[string]any{"name": "everything.echo_" + add("tool name (gateway error)", "sk_live_"+rnd(24)), "arguments": map[string]any{}})
	call(nil, 15, "tools/call", map[string]any{"name": "tb.missing_" + add("tool name (backend error)", "AIza"+rnd(35)), "arguments": map[string]any{}})
	call(nil, 16, "tools/call", map[string]any{"name": "everything.marker_" + marker, "arguments": map[string]any{}})
	call(nil, 17, "prompts/get", map[string]any{"name": "everything.npm_" + add("prompt name", rnd(36)), "arguments": map[string]any{}})
	call(nil, 18, "custom/password="+add("method name", "mpw"+rnd(21)), map[string]any{})
	call(map[string]string{"X-Request-Id": add("X-Request-Id header", "sk_test_"+rnd(24))}, 19, "tools/call",
		map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": "rid"}})
	call(nil, 20, "tools/call", map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": "meta"},
		"_meta": map[string]any{"apiToken": add("_meta apiToken", "mtk"+rnd(21)), "progressToken": 5}})
	call(map[string]string{"X-Api-Key": add("client header X-Api-Key", "chk"+rnd(21)), "Cookie": "session=" + add("client header Cookie", "cks"+rnd(21))},
		21, "tools/call", map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": "headers"}})
	call(nil, 22, "tools/call", map[string]any{"name": "dead.anything", "arguments": map[string]any{}})
	call(nil, 23, "completion/complete", map[string]any{"ref": map[string]any{"type": "ref/prompt", "name": "everything.args-prompt"},
		"argument": map[string]any{"name": "city", "value": "x secret=" + add("completion argument value", "cpv"+rnd(21))}})
	// The client's answer to a backend's request (elicitation), which the
	// backend's result echoes.
	elicited := add("client answer to elicitation/create", "eli"+rnd(21))
	answered := c.sendAnswering(map[string]any{"jsonrpc": "2.0", "id": 25, "method": "tools/call",
		"params": map[string]any{"name": "tb.elicit", "arguments": map[string]any{"message": "your name?"}}},
		func(method string) any {
			return map[string]any{"action": "accept", "content": map[string]any{"name": "bob", "apiKey": elicited}}
		})
	if !answered {
		t.Errorf("tb.elicit: the backend's elicitation/create never reached the client")
	}
	// A session id that is not ours, carrying a secret.
	other := &rawClient{t: t, base: gw.url, token: env.FullToken, sid: add("Mcp-Session-Id header", "sk_live_"+rnd(26))}
	other.send(nil, map[string]any{"jsonrpc": "2.0", "id": 24, "method": "tools/list"})

	if len(canaries) < 20 {
		t.Fatalf("only %d canaries", len(canaries))
	}

	// The spool, while every event sits in it.
	waitFor(t, "every event to be spooled", 60*time.Second, gw.proc, func() (bool, error) {
		st := gw.stats(t)
		return st.QueueLen == 0 && st.Enqueued > 0 && st.Spooled+st.Dropped == st.Enqueued, fmt.Errorf("stats %+v", st)
	})
	spool := readTree(t, env.SpoolDir)
	// What the gateway serves about itself: /statusz and /metrics.
	var served []byte
	for _, path := range []string{"/statusz", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, gw.admin+path, nil) // the admin listener
		req.Header.Set("Authorization", "Bearer "+env.FullToken)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		served = append(served, b...)
	}
	gw.stop(t)
	spool = append(spool, readTree(t, env.SpoolDir)...) // what shutdown left
	logs := append([]byte(gw.output(t)), served...)     // scanned as log lines

	// ClickHouse: every String-typed column of every table.
	conn := chConn(t, env.CHAddr)
	ctx := context.Background()
	cols := stringColumns(t, conn, env.CHDB)
	needles := append([]string{marker}, secretsOf(canaries)...)
	chRows := make([]uint64, len(needles))
	where := map[int][]string{}
	for _, c := range cols {
		expr := "position(" + c.name + ", ?) > 0"
		if strings.HasPrefix(c.typ, "Array(") {
			expr = "arrayExists(x -> position(x, ?) > 0, " + c.name + ")"
		}
		parts := make([]string, len(needles))
		args := make([]any, len(needles))
		for i, n := range needles {
			parts[i] = "countIf(" + expr + ")"
			args[i] = n
		}
		counts := make([]uint64, len(needles))
		dest := make([]any, len(needles))
		for i := range counts {
			dest[i] = &counts[i]
		}
		q := "SELECT " + strings.Join(parts, ", ") + " FROM " + env.CHDB + "." + c.table
		if err := conn.QueryRow(ctx, q, args...).Scan(dest...); err != nil {
			t.Fatalf("scanning %s.%s: %v", c.table, c.name, err)
		}
		for i, n := range counts {
			if n > 0 {
				chRows[i] += n
				where[i] = append(where[i], c.table+"."+c.name)
			}
		}
	}

	// The backend → client leg was recorded, so its canary was exposed.
	if n := queryUint(t, conn, "SELECT count() FROM "+env.CHDB+".hops WHERE hop = 'server_request'"); n == 0 {
		t.Errorf("no server_request hop recorded: the elicitation channel was not exercised")
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%-44s %8s %8s %8s\n", "channel", "CH rows", "spool", "log+status")
	var leaks, totalCH, totalSpool, totalLog int
	for i, n := range needles {
		name := "marker (not a secret)"
		if i > 0 {
			name = canaries[i-1].channel
		}
		sp := 0
		for _, f := range spool {
			sp += bytes.Count(f, []byte(n))
		}
		lg := 0
		for _, line := range bytes.Split(logs, []byte("\n")) {
			if bytes.Contains(line, []byte(n)) {
				lg++
			}
		}
		fmt.Fprintf(&b, "%-44s %8d %8d %8d %s\n", name, chRows[i], sp, lg, strings.Join(where[i], " "))
		if i == 0 {
			if chRows[i] == 0 || sp == 0 || lg == 0 {
				t.Errorf("the non-secret marker was found %d/%d/%d times in ClickHouse/spool/log: the scans cannot be trusted", chRows[i], sp, lg)
			}
			continue
		}
		totalCH, totalSpool, totalLog = totalCH+int(chRows[i]), totalSpool+sp, totalLog+lg
		if chRows[i]+uint64(sp)+uint64(lg) > 0 {
			leaks++
		}
	}
	fmt.Fprintf(&b, "%d canaries through %d channels, %d String columns scanned: %d leaked (%d ClickHouse rows, %d spool occurrences, %d log lines)\n",
		len(canaries), len(canaries), len(cols), leaks, totalCH, totalSpool, totalLog)
	t.Log("\n" + b.String())
	if leaks > 0 {
		t.Errorf("%d of %d canaries leaked", leaks, len(canaries))
	}
}

func secretsOf(cs []canary) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.secret
	}
	return out
}

// readTree returns the contents of every file under dir.
func readTree(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		names = append(names, d.Name())
		out = append(out, b)
		return nil
	})
	if err != nil {
		t.Fatalf("reading spool %s: %v", dir, err)
	}
	sort.Strings(names)
	t.Logf("spool %s: %v", dir, names)
	return out
}

// rawClient posts JSON-RPC messages with chosen headers and keeps the
// session id the gateway gives it.
type rawClient struct {
	t                *testing.T
	base, token, sid string
}

// send posts msg and returns the response body (the answer, or the SSE
// stream that carries it).
func (c *rawClient) send(hdr map[string]string, msg map[string]any) string {
	c.t.Helper()
	body, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/mcp", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		c.t.Fatalf("POST %s: %v", msg["method"], err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" && c.sid == "" {
		c.sid = sid
	}
	c.t.Logf("%s → HTTP %d %s", msg["method"], resp.StatusCode, strconv.Quote(tail(string(out), 300)))
	return string(out)
}

// TestE2ELogsRedactedWithoutRecording: with recording off the gateway's log
// still goes through the redactor.
func TestE2ELogsRedactedWithoutRecording(t *testing.T) {
	_, tbURL := startTestBackend(t)
	secret := "sk_live_" + randAlnum(24)
	uriSecret := "ru" + randAlnum(22)
	cfgPath := filepath.Join(t.TempDir(), "norecord.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nservers:\n  - name: tb\n    transport: http\n    url: %s\n    required: true\nrecorder:\n  enabled: false\n", tbURL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, e2eEnv{Config: cfgPath})
	c := &rawClient{t: t, base: gw.url}
	c.send(nil, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "e2e", "version": "1"}}})
	c.send(nil, map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "tb.x_" + secret}})
	c.send(nil, map[string]any{"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": map[string]any{"uri": "test://static/9?token=" + uriSecret}})
	gw.stop(t)
	logs := gw.output(t)
	if !strings.Contains(logs, "tb.x_«redacted:stripe_key:") {
		t.Errorf("the failed call's WARN line is missing or not redacted:\n%s", logs)
	}
	for _, s := range []string{secret, uriSecret} {
		if strings.Contains(logs, s) {
			t.Errorf("the gateway log carries %s:\n%s", s, logs)
		}
	}
}

// sendAnswering posts msg and reads its SSE answer as it comes, answering
// each request the backend sends the client on it with answer(method). It
// reports whether there was one.
func (c *rawClient) sendAnswering(msg map[string]any, answer func(method string) any) bool {
	c.t.Helper()
	body, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/mcp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Mcp-Session-Id", c.sid)
	resp, err := httpc.Do(req)
	if err != nil {
		c.t.Fatalf("POST %s: %v", msg["method"], err)
	}
	defer resp.Body.Close()
	answered := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal([]byte(strings.TrimSpace(line)), &m) != nil || m.Method == "" || m.ID == nil {
			continue
		}
		answered = true
		c.send(nil, map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": answer(m.Method)})
	}
	return answered
}
