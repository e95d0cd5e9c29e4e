package chlocal_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/recorder/chlocal"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func query(t *testing.T, addr, q string) uint64 {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func exec(t *testing.T, addr, q string) {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestLifecycle covers start, data surviving a graceful restart, data
// surviving a SIGKILL + restart on the same dir and ports, and idempotent Stop.
func TestLifecycle(t *testing.T) {
	s := chtest.StartForTest(t)
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", addr)
	}
	if got := query(t, addr, "SELECT toUInt64(1+1)"); got != 2 {
		t.Fatalf("SELECT 1+1 = %d, want 2", got)
	}
	exec(t, addr, "CREATE DATABASE IF NOT EXISTS lc")
	exec(t, addr, "CREATE TABLE lc.t (x UInt64) ENGINE = MergeTree ORDER BY x")
	exec(t, addr, "INSERT INTO lc.t (x) SELECT number FROM system.numbers LIMIT 10")

	ctx := context.Background()
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Addr() != addr {
		t.Fatalf("Addr after restart = %s, want %s", s.Addr(), addr)
	}
	if got := query(t, addr, "SELECT count() FROM lc.t"); got != 10 {
		t.Fatalf("rows after restart = %d, want 10", got)
	}

	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if got := query(t, addr, "SELECT count() FROM lc.t"); got != 10 {
		t.Fatalf("rows after kill+restart = %d, want 10", got)
	}

	stopCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(stopCtx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill after Stop: %v", err)
	}
	for _, f := range []string{"config.xml", "users.xml"} {
		if _, err := os.Stat(filepath.Join(s.Dir(), f)); err != nil {
			t.Errorf("generated %s: %v", f, err)
		}
	}
}

func TestNoBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir(), Binary: "clickhouse-does-not-exist"})
	if !errors.Is(err, chlocal.ErrNoBinary) {
		t.Fatalf("Start with missing binary: err = %v, want ErrNoBinary", err)
	}
	if !strings.Contains(err.Error(), "apt-get install") || !strings.Contains(err.Error(), "clickhouse.com") {
		t.Fatalf("error lacks install hints: %v", err)
	}
}

func TestBadBinaryFailsFast(t *testing.T) {
	// /bin/false exits at once: Start must report the exit, not wait 30s.
	_, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir(), Binary: "/bin/false", StartTimeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start(/bin/false) err = %v, want exited before accepting connections", err)
	}
}

// TestRunAsUser drops privileges to the Debian package's user when root.
func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		// Not a skip: as non-root the option is documented to be ignored.
		t.Log("not root: checking that User is ignored")
	}
	base := t.TempDir()
	// t.TempDir's parents are 0700; the dropped user must traverse them.
	for p := base; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: filepath.Join(base, "ch"), User: "clickhouse"})
	if err != nil {
		t.Fatalf("Start as clickhouse: %v", err)
	}
	defer s.Stop(context.Background())
	st, err := os.Stat(filepath.Join(s.Dir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	uid := st.Sys().(*syscall.Stat_t).Uid
	if os.Geteuid() == 0 && uid == 0 {
		t.Fatalf("data dir owned by root, want user clickhouse")
	}
	if got := query(t, s.Addr(), "SELECT toUInt64(7)"); got != 7 {
		t.Fatalf("query = %d, want 7", got)
	}
}

// TestHelperProcess is not a test: TestDiesWithParent runs the test binary
// with this test selected to get a parent it can SIGKILL.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("CHLOCAL_HELPER_DIR")
	if dir == "" {
		return
	}
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: dir})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("PID", s.PID())
	select {} // until killed
}

func TestDiesWithParent(t *testing.T) {
	cmd := osexec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "CHLOCAL_HELPER_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var line string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if line = sc.Text(); strings.HasPrefix(line, "PID ") || strings.HasPrefix(line, "ERR ") {
			break
		}
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "PID "))
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q", line)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("server pid %d not running before the parent dies: %v", pid, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The server is our grandchild; once it dies it is reparented and
	// reaped by init (or a subreaper), so poll for it to vanish.
	for range 300 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return // dead, waiting to be reaped
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("server pid %d survived its parent", pid)
}

// TestPasswordRequired: the supervised server's only user has a generated
// password, kept in the data dir with mode 0600; a connection without it
// is refused.
func TestPasswordRequired(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := chlocal.Start(ctx, chlocal.Options{Dir: dir, RequirePassword: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	info, err := os.Stat(filepath.Join(dir, "password"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", info.Mode().Perm())
	}
	pw, err := chlocal.ReadPassword(dir)
	if err != nil || len(pw) != 64 || pw != s.Password() {
		t.Fatalf("ReadPassword = %q, %v; want the server's 64-hex-digit password", pw, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "users.xml")); strings.Contains(string(b), pw) {
		t.Error("users.xml holds the plain password")
	}
	for _, auth := range []clickhouse.Auth{{}, {Username: "default", Password: "wrong"}} {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}, Auth: auth, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Ping(ctx)
		conn.Close()
		if err == nil {
			t.Errorf("connection with password %q accepted, want it refused", auth.Password)
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}, Auth: clickhouse.Auth{Username: "default", Password: pw}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection with the password: %v", err)
	}
	// Restarted on the same dir: the same password.
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := chlocal.ReadPassword(dir); again != pw || s.Password() != pw {
		t.Errorf("password changed across a restart")
	}
}

// TestSupervisedRestartAfterKill9: a supervised server killed from outside
// comes back on the same address, and the exit and restart are logged.
func TestSupervisedRestartAfterKill9(t *testing.T) {
	var logs syncBuffer
	ctx := context.Background()
	s, err := chlocal.Start(ctx, chlocal.Options{Dir: t.TempDir(), Supervise: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	exec(t, s.Addr(), "CREATE DATABASE IF NOT EXISTS sup")
	pid := s.PID()
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for st := s.State(); !(st.Running && st.Restarts == 1); st = s.State() {
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: state %+v; log:\n%s", st, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("kill -9 to answering again: %s", time.Since(killed).Round(time.Millisecond))
	if s.PID() == pid {
		t.Errorf("PID unchanged after the restart")
	}
	if got := query(t, s.Addr(), "SELECT count() FROM system.databases WHERE name = 'sup'"); got != 1 {
		t.Errorf("database lost across the restart")
	}
	st := s.State()
	if !strings.Contains(st.LastExit, "killed") || st.LastExitAt.IsZero() {
		t.Errorf("State = %+v, want the kill recorded", st)
	}
	if l := logs.String(); !strings.Contains(l, "exited unexpectedly") || !strings.Contains(l, "restarted") {
		t.Errorf("log lacks the exit and the restart:\n%s", l)
	}
	// Stop is final: no restart after it.
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.State(); st.Running {
		t.Errorf("running after Stop: %+v", st)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestStartPicksAgainWhenPortTaken: a port picked as free can be bound by
// another process before the server binds it (CI lost a whole package's
// tests to this); Start must pick again instead of failing.
func TestStartPicksAgainWhenPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	var calls int
	restore := chlocal.SetFreePort(func(real func() (int, error)) (int, error) {
		calls++
		if calls == 1 {
			return takenPort, nil
		}
		return real()
	})
	defer restore()
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("Start with a taken first port: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	if strings.HasSuffix(s.Addr(), ":"+strconv.Itoa(takenPort)) {
		t.Fatalf("server claims the taken port %d", takenPort)
	}
	if calls < 4 {
		t.Fatalf("port picker called %d times, want a second pair after the taken port", calls)
	}
	if n := query(t, s.Addr(), "SELECT toUInt64(1)"); n != 1 {
		t.Fatalf("query = %d", n)
	}
}

// TestStartKeepsCallerPorts: a port the caller chose is never swapped for
// another; a taken one is an error that says so.
func TestStartKeepsCallerPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir(), TCPPort: taken.Addr().(*net.TCPAddr).Port})
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Start on a taken caller port: err = %v, want address already in use", err)
	}
}
