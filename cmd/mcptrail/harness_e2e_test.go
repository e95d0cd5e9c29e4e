package main

// Helpers of the end-to-end tests: the mcptrail binary (built once per test
// binary with -race), processes, a raw MCP client over streamable HTTP and
// direct ClickHouse queries.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal"
)

var bin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// mcptrailBin builds ./cmd/mcptrail with -race once per test binary.
func mcptrailBin(t testing.TB) string {
	t.Helper()
	bin.once.Do(func() {
		bin.dir, bin.err = os.MkdirTemp("", "mcptrail-e2e-bin-")
		if bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "mcptrail")
		cmd := exec.Command("go", "build", "-race", "-o", bin.path, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			bin.err = fmt.Errorf("go build -race ./cmd/mcptrail: %v\n%s", err, out)
		}
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

func removeBin() {
	if bin.dir != "" {
		_ = os.RemoveAll(bin.dir)
	}
}

// httpc is the tests' client; TestMain closes its idle connections before
// checking for leaked goroutines.
var httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := chlocal.FreePort()
	if err != nil {
		t.Fatalf("picking a free port: %v", err)
	}
	return port
}

// proc is a child process whose output goes to a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	path := ""
	if _, ok := t.(*testing.B); ok {
		path = benchBin(t)
	} else {
		path = mcptrailBin(t)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (SIGKILL after 30s).
func (p *proc) stop(t testing.TB) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop on SIGTERM; killing it", p.name)
		p.kill()
	}
}

// kill sends SIGKILL, as a crash would, and waits.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) output(t testing.TB) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatalf("reading %s output: %v", p.name, err)
	}
	return string(b)
}

// waitFor polls cond until it holds; it fails the test after limit, and
// early when the process p (if any) exits.
func waitFor(t testing.TB, what string, limit time.Duration, p *proc, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if p != nil && p.exited() {
			t.Fatalf("waiting for %s: %s exited (%v); output:\n%s", what, p.name, p.err, tail(p.output(t), 4000))
		}
		if time.Now().After(deadline) {
			msg := ""
			if p != nil {
				msg = "; " + p.name + " output:\n" + tail(p.output(t), 4000)
			}
			t.Fatalf("waiting for %s: gave up after %s (last error: %v)%s", what, limit, last, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ---- the gateway ----

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// e2eEnv is what testdata/e2e/gateway.yaml reads from the environment.
type e2eEnv struct {
	Config                  string // default testdata/e2e/gateway.yaml
	LocalDir                string // recorder.clickhouse.local_dir of gateway-local.yaml
	CHAddr, CHDB, SpoolDir  string
	TBURL, DeadURL          string
	FullToken, LimitedToken string
	HeaderSecret, RedactKey string
	Extra                   []string // more VAR=value for the gateway
}

func (e e2eEnv) list() []string {
	return append([]string{
		"E2E_CH_ADDR=" + e.CHAddr, "E2E_CH_DB=" + e.CHDB, "E2E_SPOOL_DIR=" + e.SpoolDir,
		"E2E_TB_URL=" + e.TBURL, "E2E_DEAD_URL=" + e.DeadURL,
		"E2E_FULL_SHA=" + sha256hex(e.FullToken), "E2E_LIMITED_SHA=" + sha256hex(e.LimitedToken),
		"E2E_HEADER_SECRET=" + e.HeaderSecret, "E2E_REDACTION_KEY=" + e.RedactKey, "E2E_LOCAL_DIR=" + e.LocalDir,
	}, e.Extra...)
}

const gatewayConfig = "../../testdata/e2e/gateway.yaml"

// startTestBackend runs `mcptrail testbackend --http` and returns its URL.
// extraArgs are more flags of `mcptrail testbackend` (--mutable).
func startTestBackend(t testing.TB, extraArgs ...string) (*proc, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "testbackend", nil, append([]string{"testbackend", "--http", addr}, extraArgs...)...)
	url := "http://" + addr + "/mcp"
	waitFor(t, "testbackend to listen", 60*time.Second, p, func() (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
	return p, url
}

type gateway struct {
	*proc
	url   string // the MCP listener
	admin string // admin.listen: /statusz, /metrics
	// adminToken is sent to the admin endpoints when the config sets
	// admin.token_sha256.
	adminToken string
}

// startGateway runs `mcptrail serve` with the e2e config and waits for
// /readyz.
func startGateway(t testing.TB, env e2eEnv, extraArgs ...string) *gateway {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := env.Config
	if cfg == "" {
		cfg = gatewayConfig
	}
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := append([]string{"serve", "--config", cfg, "--listen", addr, "--admin-listen", admin, "--log-level", "debug"}, extraArgs...)
	p := startProc(t, "gateway", env.list(), args...)
	g := &gateway{proc: p, url: "http://" + addr, admin: "http://" + admin}
	waitReady(t, p, g.url, 90*time.Second)
	return g
}

// waitReady waits until the gateway p serves at base answers /readyz 200.
func waitReady(t testing.TB, p *proc, base string, limit time.Duration) {
	t.Helper()
	waitFor(t, "gateway /readyz", limit, p, func() (bool, error) {
		code, body := readyz(base)
		return code == http.StatusOK, fmt.Errorf("readyz %d %s", code, body)
	})
}

// serveYAML runs `mcptrail serve` with the config text cfg (its listen is
// overridden by a free port) until the test ends, once /readyz answers 200,
// and returns its base URL.
func serveYAML(t testing.TB, cfg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "gateway", nil, "serve", "--config", path, "--listen", addr)
	waitReady(t, p, "http://"+addr, 30*time.Second)
	return "http://" + addr
}

// everythingOnly is a gateway config for one server-everything at url,
// without namespace, recording off.
func everythingOnly(url string) string {
	return "servers:\n  - name: everything\n    transport: http\n    url: " + url + "\n    no_namespace: true\n    required: true\nrecorder:\n  enabled: false\n"
}

// stats reads the recorder counters from /statusz.
func (g *gateway) stats(t testing.TB) recorder.Stats {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.admin+"/statusz", nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+g.adminToken)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("GET /statusz: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStatus(raw)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recorder == nil {
		t.Fatalf("/statusz has no recorder.pipeline: %s", raw)
	}
	return st.Recorder.Pipeline
}

// waitWritten waits until every event the gateway accepted is acknowledged
// (spooled) and written to ClickHouse, and returns the counters.
func (g *gateway) waitWritten(t testing.TB) recorder.Stats {
	t.Helper()
	var st recorder.Stats
	waitFor(t, "the recorder to write every event", 90*time.Second, g.proc, func() (bool, error) {
		st = g.stats(t)
		return st.QueueLen == 0 && st.Spooled+st.Dropped == st.Enqueued && st.Written >= st.Spooled,
			fmt.Errorf("stats %+v", st)
	})
	return st
}

// ---- a raw MCP client ----

type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *rpcError       `json:"error"`
}

type mcpClient struct {
	base, token, sid string
	next             int
}

// post sends one JSON-RPC message and returns the final response (also
// when it arrives as the last event of an SSE stream), the HTTP status and
// the X-Request-Id.
func (c *mcpClient) post(ctx context.Context, msg map[string]any) (rpcResponse, int, string, error) {
	var out rpcResponse
	body, _ := json.Marshal(msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/mcp", bytes.NewReader(body))
	if err != nil {
		return out, 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return out, 0, "", err
	}
	defer resp.Body.Close()
	reqID := resp.Header.Get("X-Request-Id")
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		c.sid = sid
	}
	if resp.StatusCode == http.StatusAccepted {
		return out, resp.StatusCode, reqID, nil
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data:")
			if !ok {
				continue
			}
			var m rpcResponse
			if json.Unmarshal([]byte(strings.TrimSpace(line)), &m) == nil && (m.Result != nil || m.Error != nil) {
				out = m
			}
		}
		return out, resp.StatusCode, reqID, sc.Err()
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, resp.StatusCode, reqID, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, resp.StatusCode, reqID, fmt.Errorf("decoding %s: %w", b, err)
	}
	return out, resp.StatusCode, reqID, nil
}

func (c *mcpClient) request(ctx context.Context, method string, params any) (rpcResponse, string, error) {
	c.next++
	resp, status, reqID, err := c.post(ctx, map[string]any{"jsonrpc": "2.0", "id": c.next, "method": method, "params": params})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("%s: HTTP %d", method, status)
	}
	return resp, reqID, err
}

// dial initializes a session.
func dial(t testing.TB, base, token string) *mcpClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &mcpClient{base: base, token: token}
	resp, _, err := c.request(ctx, "initialize", map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "e2e", "version": "1.0"},
	})
	if err != nil || resp.Error != nil {
		t.Fatalf("initialize: %v %+v", err, resp.Error)
	}
	if c.sid == "" {
		t.Fatal("initialize: no Mcp-Session-Id")
	}
	if _, status, _, err := c.post(ctx, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}); err != nil || status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %v (HTTP %d)", err, status)
	}
	return c
}

// callTool calls a tool and returns the response and the request ID.
func (c *mcpClient) callTool(t testing.TB, name string, args map[string]any) (rpcResponse, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, reqID, err := c.request(ctx, "tools/call", map[string]any{"name": name, "arguments": args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	if reqID == "" {
		t.Fatalf("tools/call %s: no X-Request-Id", name)
	}
	return resp, reqID
}

// ---- the CLI ----

// runCLI runs the binary and returns stdout, stderr and the exit code.
func runCLI(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	return runCLIEnv(t, nil, args...)
}

// runCLIEnv is runCLI with extra environment variables.
func runCLIEnv(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runCLIIn(t, t.TempDir(), env, args...) // no mcptrail.yaml there: only flags count
}

// ---- ClickHouse ----

func chConn(t testing.TB, addr string) driver.Conn {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatalf("connecting to ClickHouse %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// chColumn is a column of a ClickHouse table.
type chColumn struct{ table, name, typ string }

// stringColumns lists the String-typed columns (Nullable, LowCardinality,
// arrays of them too) of every table of db; there must be at least 20.
func stringColumns(t testing.TB, conn driver.Conn, db string) []chColumn {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT table, name, type FROM system.columns WHERE database = ? AND type LIKE '%String%'", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []chColumn
	for rows.Next() {
		var c chColumn
		if err := rows.Scan(&c.table, &c.name, &c.typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if len(cols) < 20 {
		t.Fatalf("found only %d String columns in %s: %v", len(cols), db, cols)
	}
	return cols
}

func queryUint(t testing.TB, conn driver.Conn, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
