package main

// End-to-end tests of the recorder's availability: ClickHouse down at
// start, the supervised local ClickHouse killed, its password.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/recorder/chlocal"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// readyz returns /readyz's status code and body, 0 when nothing answers.
func readyz(url string) (int, string) {
	resp, err := httpc.Get(url + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestE2EClickHouseDownAtStart: a configured ClickHouse that is down when
// the gateway starts used to stop it (serve exited 2). Now the gateway
// serves, its events wait in the spool, and once ClickHouse comes up on
// that address the writer connects, migrates and writes them. With
// recorder.ready_when_degraded false, /readyz says why it is not ready
// until then.
func TestE2EClickHouseDownAtStart(t *testing.T) {
	chPort := freePort(t)
	_, tbURL := startTestBackend(t)
	env := e2eEnv{ // like newEnv, on a ClickHouse address where nothing listens yet
		CHAddr: "127.0.0.1:" + strconv.Itoa(chPort), CHDB: "e2e_down", SpoolDir: t.TempDir(), TBURL: tbURL,
		DeadURL:   "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/mcp",
		FullToken: "tok-full-" + randAlnum(24), LimitedToken: "tok-limited-" + randAlnum(24),
		HeaderSecret: "hdr-" + randAlnum(24), RedactKey: randAlnum(32),
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "gateway", append(env.list(), "E2E_READY_WHEN_DEGRADED=false"),
		"serve", "--config", gatewayConfig, "--listen", addr, "--admin-listen", admin, "--log-level", "debug")
	gw := &gateway{proc: p, url: "http://" + addr, admin: "http://" + admin}
	started := time.Now()
	waitFor(t, "/readyz to report the degraded recorder", 90*time.Second, p, func() (bool, error) {
		code, body := readyz(gw.url)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "recorder degraded"), fmt.Errorf("readyz %d %s", code, body)
	})
	c := dial(t, gw.url, env.FullToken)
	var ids []string
	for i := range 5 {
		res, id := c.callTool(t, "tb.echo", map[string]any{"message": fmt.Sprintf("while ClickHouse is down %d", i)})
		if res.Error != nil {
			t.Fatalf("call %d with ClickHouse down: %+v", i, res.Error)
		}
		ids = append(ids, id)
	}
	st, _, err := fetchStatus(context.Background(), gw.admin)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Recorder; r == nil || r.Healthy || r.Storage.Connected || r.Pipeline.Written != 0 {
		t.Fatalf("status with ClickHouse down = %+v, want a degraded, unconnected recorder that wrote nothing", r)
	}

	down := time.Since(started)
	srv, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir(), TCPPort: chPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	up := time.Now()
	waitFor(t, "/readyz once ClickHouse is up", 90*time.Second, p, func() (bool, error) {
		code, body := readyz(gw.url)
		return code == http.StatusOK, fmt.Errorf("readyz %d %s", code, body)
	})
	written := gw.waitWritten(t)
	t.Logf("ClickHouse down for the first %s of the gateway; its events written %s after it answered (writer backoff)",
		down.Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
	if written.Dropped != 0 {
		t.Errorf("dropped %d events", written.Dropped)
	}
	conn := chConn(t, srv.Addr())
	for _, id := range ids {
		if n := queryUint(t, conn, "SELECT count() FROM "+env.CHDB+".audit WHERE request_id = ?", id); n != 1 {
			t.Errorf("request %s: %d audit rows, want 1", id, n)
		}
	}
	if out := p.output(t); !strings.Contains(out, "ClickHouse is unreachable at start") {
		t.Errorf("gateway log does not say ClickHouse was unreachable at start")
	}

	// migrate: false, ClickHouse down, ready_when_degraded default (true):
	// the gateway starts, is ready, and says the recorder is degraded.
	env.CHAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	env.SpoolDir = t.TempDir()
	addr2 := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p2 := startProc(t, "gateway-nomigrate", append(env.list(), "E2E_CH_MIGRATE=false"),
		"serve", "--config", gatewayConfig, "--listen", addr2)
	waitFor(t, "/readyz of the gateway with migrate: false", 90*time.Second, p2, func() (bool, error) {
		code, body := readyz("http://" + addr2)
		return code == http.StatusOK && strings.HasPrefix(body, "ready; recorder degraded: "), fmt.Errorf("readyz %d %s", code, body)
	})
}

// TestE2ELocalClickHouseSupervised: the local ClickHouse that serve runs
// has a password (the CLI finds it in the data dir; a connection without
// it is refused), and after kill -9 it is restarted, logged, reported by
// status, and recording goes on.
func TestE2ELocalClickHouseSupervised(t *testing.T) {
	_, tbURL := startTestBackend(t)
	cfg, err := filepath.Abs("../../testdata/e2e/gateway-local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := e2eEnv{Config: cfg, TBURL: tbURL, LocalDir: filepath.Join(t.TempDir(), "clickhouse"), SpoolDir: t.TempDir()}
	gw := startGateway(t, env)
	c := dial(t, gw.url, "")
	_, id1 := c.callTool(t, "tb.echo", map[string]any{"message": "before the kill"})
	gw.waitWritten(t)

	chAddr, err := localAddr(env.LocalDir)
	if err != nil {
		t.Fatal(err)
	}
	nopw, err := ch.Open(&ch.Options{Addr: []string{chAddr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := nopw.Ping(context.Background()); err == nil {
		t.Errorf("the gateway's local ClickHouse accepted a connection without password")
	}
	nopw.Close()

	st, _, err := fetchStatus(context.Background(), gw.admin)
	if err != nil {
		t.Fatal(err)
	}
	local := st.Recorder.Storage.Local
	if local == nil || !local.Running || local.PID == 0 {
		t.Fatalf("status lacks the running local server: %+v", st.Recorder.Storage)
	}
	if err := syscall.Kill(local.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the local ClickHouse to be restarted", 90*time.Second, gw.proc, func() (bool, error) {
		st, _, err := fetchStatus(context.Background(), gw.admin)
		if err != nil {
			return false, err
		}
		l := st.Recorder.Storage.Local
		return l.Running && l.Restarts == 1 && l.PID != local.PID, fmt.Errorf("local %+v", l)
	})
	_, id2 := c.callTool(t, "tb.echo", map[string]any{"message": "after the kill"})
	gw.waitWritten(t)
	for _, id := range []string{id1, id2} {
		out, stderr, code := runCLIEnv(t, env.list(), "trace", id, "--config", cfg)
		if code != 0 || !strings.Contains(out, "request "+id) {
			t.Errorf("trace %s through the restarted local server: exit %d\n%s%s", id, code, out, stderr)
		}
	}
	out, stderr, code := runCLIEnv(t, env.list(), "status", "--url", gw.admin)
	if code != 0 || !strings.Contains(out, "restarts 1") || !strings.Contains(out, "last exit signal: killed") {
		t.Errorf("status after the restart: exit %d\n%s%s", code, out, stderr)
	}
	log := gw.output(t)
	for _, want := range []string{"local ClickHouse exited unexpectedly", "local ClickHouse restarted"} {
		if !strings.Contains(log, want) {
			t.Errorf("gateway log lacks %q", want)
		}
	}
	_ = chtest.Shared // keep the shared server helper linked for TestMain
}
