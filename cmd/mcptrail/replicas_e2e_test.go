package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/redisstate/redistest"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// replicaConfig is the gateway config of TestReplicasBehindHAProxy: sealed
// sessions, Redis-shared limits, server-everything over HTTP with a rate
// limit on get-sum, recording to ClickHouse.
const replicaConfig = `instance: ${E2E_INSTANCE}
shutdown_timeout: 10s
servers:
  - name: everything
    transport: http
    url: ${E2E_EVERYTHING_URL}
    required: true
    tools:
      get-sum:
        rate: {rate: 6/h, burst: 6}
auth:
  tokens:
    - name: full
      sha256: ${E2E_FULL_SHA}
      principal: alice
      tools: ["*"]
sessions:
  keys_file: ${E2E_SESSION_KEYS}
redis:
  addr: ${E2E_REDIS_ADDR}
recorder:
  clickhouse:
    addr: ["${E2E_CH_ADDR}"]
    database: ${E2E_CH_DB}
  spool:
    dir: ${E2E_SPOOL_DIR}
    fsync: interval
    fsync_interval: 50ms
  flush_interval: 100ms
  redaction:
    hmac_key_env: E2E_REDACTION_KEY
`

// haproxyBin is Debian's haproxy (scripts/setup.sh installs it).
func haproxyBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	t.Fatal("haproxy not found: run scripts/setup.sh (it installs Debian's haproxy)")
	return ""
}

// startHAProxy balances round-robin, without stickiness, over the
// gateways' listeners, checking /healthz; a request refused by a dead
// gateway is sent to the other (redispatch). It returns the frontend URL.
func startHAProxy(t *testing.T, backends ...string) string {
	t.Helper()
	bin := haproxyBin(t)
	dir := t.TempDir()
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "    server gw%d %s check inter 300ms fall 2 rise 1\n", i, strings.TrimPrefix(b, "http://"))
	}
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		cfg := fmt.Sprintf(`global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    retries 3
    option redispatch
frontend mcp
    bind 127.0.0.1:%d
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /healthz
%s`, port, servers.String())
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("haproxy-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-db", "-f", path)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting haproxy: %v", err)
		}
		log.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		up := false
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			select {
			case <-done:
			default:
				if resp, err := httpc.Get(url + "/healthz"); err == nil {
					resp.Body.Close()
					up = resp.StatusCode == http.StatusOK
				}
				if up {
					return url
				}
				continue
			}
			break
		}
		b, _ := os.ReadFile(log.Name())
		if attempt == 3 {
			t.Fatalf("haproxy did not serve on %s: %s", url, b)
		}
		_ = cmd.Process.Kill()
		<-done
	}
}

// bearer adds the gateway token to every request of the SDK client.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// replicaClient is one official Go SDK client session (2025-11-25).
type replicaClient struct {
	cs       *mcp.ClientSession
	progress atomic.Int64 // progress notifications received
	sampled  atomic.Int64 // sampling requests answered
}

func statusOf(t *testing.T, g *gateway) proxy.Status {
	t.Helper()
	st, _, err := fetchStatus(context.Background(), g.admin)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReplicasBehindHAProxy: two `mcptrail serve` replicas with sealed
// sessions and Redis behind HAProxy (round-robin, no stickiness); official
// Go SDK clients run a bounded loop of calls with progress notifications
// and sampling; one replica is SIGKILLed while calls run on it. Only the
// calls in flight on the dead replica fail, each with an error; the
// sessions continue on the other replica; a rate limit holds across both;
// every answered call is in ClickHouse exactly once.
func TestReplicasBehindHAProxy(t *testing.T) {
	npm := npmDir(t)
	everything := startEverythingHTTP(t, npm)
	chSrv := chtest.Shared(t)
	rds := redistest.Start(t)
	db := chtest.Database(t, chSrv.Addr())

	mcptrailBin(t) // built first: runCLI's deadline is for running it
	key, stderr, code := runCLI(t, "session-key", "--id", "7")
	if code != 0 {
		t.Fatalf("mcptrail session-key: %d %s", code, stderr)
	}
	dir := t.TempDir()
	keys := filepath.Join(dir, "session-keys")
	cfgPath := filepath.Join(dir, "replica.yaml")
	if err := os.WriteFile(keys, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(replicaConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "tok-full-" + randAlnum(24)
	replica := func(name string) *gateway {
		env := e2eEnv{
			Config: cfgPath, CHAddr: chSrv.Addr(), CHDB: db, SpoolDir: t.TempDir(),
			FullToken: token, LimitedToken: "unused-" + randAlnum(8), RedactKey: randAlnum(32),
			Extra: []string{"E2E_INSTANCE=" + name, "E2E_EVERYTHING_URL=" + everything,
				"E2E_SESSION_KEYS=" + keys, "E2E_REDIS_ADDR=" + rds.Addr},
		}
		return startGateway(t, env)
	}
	a, b := replica("replica-a"), replica("replica-b")
	lb := startHAProxy(t, a.url, b.url)

	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: bearer{token: token, base: transport}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const nClients = 4
	clients := make([]*replicaClient, nClients)
	for i := range clients {
		rc := &replicaClient{}
		c := mcp.NewClient(&mcp.Implementation{Name: "replica-test", Version: "1"}, &mcp.ClientOptions{
			CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
				rc.sampled.Add(1)
				return &mcp.CreateMessageResult{Role: "assistant", Content: &mcp.TextContent{Text: "sampled"}, Model: "test-model", StopReason: "endTurn"}, nil
			},
			ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { rc.progress.Add(1) },
		})
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: lb + "/mcp", HTTPClient: hc},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("client %d connect through HAProxy: %v", i, err)
		}
		defer cs.Close()
		rc.cs = cs
		clients[i] = rc
	}

	var (
		mu       sync.Mutex
		answered []string // request IDs of answered calls (from result._meta)
		failures []string
	)
	call := func(rc *replicaClient, name string, args map[string]any, progress bool) error {
		p := &mcp.CallToolParams{Name: name, Arguments: args}
		if progress {
			p.Meta = mcp.Meta{"progressToken": "p-" + randAlnum(12)}
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		res, err := rc.cs.CallTool(cctx, p)
		if err != nil {
			return err
		}
		if res.IsError {
			return fmt.Errorf("%s: tool error %v", name, res.Content)
		}
		id, _ := res.Meta[proxy.MetaRequestID].(string)
		if id == "" {
			return fmt.Errorf("%s: no %s in result._meta", name, proxy.MetaRequestID)
		}
		mu.Lock()
		answered = append(answered, id)
		mu.Unlock()
		return nil
	}
	round := func(phase string, iterations int) {
		var wg sync.WaitGroup
		for i, rc := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := range iterations {
					for _, step := range []struct {
						name     string
						args     map[string]any
						progress bool
					}{
						{"everything.echo", map[string]any{"message": fmt.Sprintf("c%d-%s-%d", i, phase, it)}, false},
						{"everything.trigger-long-running-operation", map[string]any{"duration": 0.2, "steps": 2}, true},
						{"everything.trigger-sampling-request", map[string]any{"prompt": "hi", "maxTokens": 5}, false},
					} {
						if err := call(rc, step.name, step.args, step.progress); err != nil {
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%s client %d: %s: %v", phase, i, step.name, err))
							mu.Unlock()
						}
					}
				}
			}()
		}
		wg.Wait()
	}

	// Before the kill: every session is served by both replicas in turn.
	round("before", 3)
	// The rate limit (burst 6 on get-sum) holds across both replicas.
	limited := 0
	for i := range 10 {
		err := call(clients[i%nClients], "everything.get-sum", map[string]any{"a": 1, "b": 2}, false)
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "rate limited (rate_per_tool)"):
			limited++
		default:
			t.Errorf("get-sum %d: %v", i, err)
		}
	}
	if limited != 4 {
		t.Errorf("get-sum through both replicas: %d of 10 rate limited, want 4 (burst 6)", limited)
	}
	if len(failures) > 0 {
		t.Fatalf("errors before the kill:\n%s", strings.Join(failures, "\n"))
	}
	resumedBefore := statusOf(t, a).SessionsResumed + statusOf(t, b).SessionsResumed
	// Everything replica a answered is written before it dies: the test
	// is about the calls in flight, not about the recorder's last
	// milliseconds of queue (see the README on a replica's death).
	a.waitWritten(t)

	// Calls in flight on both replicas: two long operations per client.
	var inflight sync.WaitGroup
	var inflightErrs []string
	before := make([]int64, nClients)
	for i, rc := range clients {
		before[i] = rc.progress.Load()
		for range 2 {
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				if err := call(rc, "everything.trigger-long-running-operation", map[string]any{"duration": 4, "steps": 8}, true); err != nil {
					mu.Lock()
					inflightErrs = append(inflightErrs, fmt.Sprintf("client %d: %v", i, err))
					mu.Unlock()
				}
			}()
		}
	}
	for i, rc := range clients {
		waitFor(t, fmt.Sprintf("progress of client %d's long calls", i), 30*time.Second, nil, func() (bool, error) {
			return rc.progress.Load() >= before[i]+2, nil
		})
	}
	a.kill()
	inflight.Wait()

	// After the kill: the same sessions, on the surviving replica.
	round("after", 3)
	if len(failures) > 0 {
		t.Errorf("errors after the kill (want none):\n%s", strings.Join(failures, "\n"))
	}
	if len(inflightErrs) == 0 || len(inflightErrs) > 2*nClients {
		t.Errorf("calls in flight that failed: %d of %d, want between 1 and %d", len(inflightErrs), 2*nClients, 2*nClients)
	}
	for _, e := range inflightErrs {
		t.Logf("in flight on the killed replica: %s", e)
	}
	stB := statusOf(t, b)
	var sampled int64
	for _, rc := range clients {
		sampled += rc.sampled.Load()
	}
	if sampled < 6*nClients {
		t.Errorf("sampling requests answered: %d, want at least %d", sampled, 6*nClients)
	}

	// Every answered call is in ClickHouse exactly once.
	b.waitWritten(t)
	conn := chConn(t, chSrv.Addr())
	rows, err := conn.Query(context.Background(), "SELECT request_id, count(), uniqExact(event_id) FROM "+db+".hops WHERE hop = 'response' GROUP BY request_id")
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ rows, events uint64 }
	inCH := map[string]seen{}
	for rows.Next() {
		var id string
		var s seen
		if err := rows.Scan(&id, &s.rows, &s.events); err != nil {
			t.Fatal(err)
		}
		inCH[id] = s
	}
	rows.Close()
	missing, dup := 0, 0
	for _, id := range answered {
		s := inCH[id]
		switch {
		case s.events == 0:
			missing++
		case s.events != 1 || s.rows != 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		t.Errorf("answered calls: %d, missing in ClickHouse %d, more than once %d", len(answered), missing, dup)
	}
	t.Logf("replicas: calls answered %d, errors %d (all in flight on the killed replica), rate limited %d, sampling %d, sessions resumed on another replica %d before the kill and %d on the survivor in all, survivor requests %d",
		len(answered), len(inflightErrs), limited, sampled, resumedBefore, stB.SessionsResumed, stB.Requests)
}
