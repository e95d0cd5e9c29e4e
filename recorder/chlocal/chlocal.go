// Package chlocal supervises a local ClickHouse server: the embedded default
// storage of mcptrail when no ClickHouse address is configured, and the
// throwaway server of integration tests (see chlocal/chtest).
//
// Start writes its own config and users XML into Options.Dir, picks free
// ports on 127.0.0.1 (the server listens nowhere else), starts the child with
// a parent-death signal so it never outlives mcptrail, and returns once a
// native-protocol ping succeeds.
//
// Running as root: ClickHouse refuses to start when the effective user does
// not own the data directory (newer releases) and 18.16 happily runs as root
// when it does. Start therefore keeps Dir owned by the user the server runs
// as: the current user by default, or Options.User (for example "clickhouse",
// as the Debian package expects) in which case Dir is chowned to that user
// and the child drops privileges to it.
package chlocal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/recorder/chlocal/port"
)

// ErrNoBinary is returned by Start when no ClickHouse server binary is found.
var ErrNoBinary = errors.New("no ClickHouse server binary found (looked for clickhouse, clickhouse-server, /usr/bin/clickhouse, /usr/sbin/clickhouse-server); " +
	"install it: on Debian/Ubuntu `apt-get install -y clickhouse-server clickhouse-client` (or scripts/install-clickhouse.sh); " +
	"elsewhere the official single binary: `curl https://clickhouse.com/ | sh` and put ./clickhouse on PATH or set the binary path")

// Options configure a local server.
type Options struct {
	// Dir holds the generated config, the data and the logs. It is created
	// (mode 0750) when missing and reused across restarts. Required.
	Dir string
	// Binary is the server executable. Empty searches, in order: clickhouse
	// on PATH (the single multi-call binary, started as `clickhouse server`),
	// clickhouse-server on PATH, /usr/bin/clickhouse, /usr/sbin/clickhouse-server.
	Binary string
	// User is the OS user the server runs as. Empty runs it as the current
	// user. Only honoured when mcptrail runs as root; Dir is then chowned to
	// that user and every parent of Dir must be traversable by it.
	User string
	// StartTimeout bounds how long Start waits for the first successful
	// ping. Default 30s.
	StartTimeout time.Duration
	// TCPPort and HTTPPort fix the ports on 127.0.0.1; 0 picks free ones.
	TCPPort, HTTPPort int
	// RequirePassword gives the server's only user ("default") a generated
	// password, kept in Dir/password (mode 0600, reused across restarts;
	// users.xml holds only its SHA-256), so that nothing on the host
	// connects without it. ReadPassword reads it back for other processes
	// of the same user (the mcptrail CLI). Off for throwaway test servers.
	RequirePassword bool
	// Supervise restarts the server, with backoff, when it exits without
	// Stop (a crash, an OOM kill, kill -9), logging each exit and restart.
	Supervise bool
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
	// Cluster makes the server one replica of a local cluster (see
	// StartCluster, which fills it); nil, the default, is a single server
	// with no remote_servers, ZooKeeper or macros.
	Cluster *ClusterMember
}

// Server is a running (or stopped) local ClickHouse child process.
// Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	bin      string
	multi    bool // bin is the multi-call binary: run as `clickhouse server`
	tcpPort  int
	httpPort int
	ihPort   int   // interserver HTTP port (cluster members only)
	logStart int64 // size of log/server.log before this start (cluster members)
	cred     *syscall.Credential
	log      *slog.Logger

	password string // empty unless Options.RequirePassword

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	exitErr  error         // cmd.Wait's result once done is closed
	state    State
	quit     chan struct{} // closed by Stop: no more restarts
	quitOnce sync.Once
	supDone  chan struct{} // closed when the supervisor has returned
}

// State is what the supervisor knows about the server.
type State struct {
	Running     bool
	PID         int
	Restarts    int       // restarts after an unexpected exit
	LastExit    string    // how the server last exited unexpectedly
	LastExitAt  time.Time // when
	NextRestart time.Time // zero unless a restart is pending
}

// Start launches a server in o.Dir and waits until it answers a ping.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("starting local ClickHouse: Options.Dir is empty")
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolving local ClickHouse dir %s: %w", o.Dir, err)
	}
	o.Dir = dir
	bin, multi, err := findBinary(o.Binary)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, bin: bin, multi: multi, log: lg.With("component", "chlocal"), quit: make(chan struct{}), supDone: make(chan struct{})}
	// A port picked here is free when picked but may be taken by another
	// process before the server binds it; then pick again. Ports the
	// caller chose are never changed, nor is the other port then.
	picked := o.TCPPort == 0 && o.HTTPPort == 0
	for attempt := 1; ; attempt++ {
		if err := s.pickPorts(); err != nil {
			return nil, err
		}
		if err := s.prepareDir(); err != nil {
			return nil, err
		}
		err := s.start(ctx)
		if err == nil {
			break
		}
		if !picked || attempt == maxPortAttempts || !errors.Is(err, errPortInUse) {
			return nil, err
		}
		s.log.Warn("local ClickHouse port taken before the server bound it; picking others", "attempt", attempt, "err", err)
		_ = os.Remove(filepath.Join(s.opts.Dir, "server.err.log"))
	}
	if o.Supervise {
		go s.supervise()
	} else {
		close(s.supDone)
	}
	return s, nil
}

// Password is the generated password of the "default" user, empty unless
// Options.RequirePassword.
func (s *Server) Password() string { return s.password }

// State reports the supervisor's view of the server.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Running = s.cmd != nil && !isClosed(s.done)
	if st.Running {
		st.PID = s.cmd.Process.Pid
	}
	return st
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Supervisor backoff between restarts; it resets once the server has
// stayed up for supervisorReset.
const (
	supervisorMin   = 500 * time.Millisecond
	supervisorMax   = 30 * time.Second
	supervisorReset = time.Minute
)

// supervise restarts the server whenever it exits without Stop.
func (s *Server) supervise() {
	defer close(s.supDone)
	backoff := supervisorMin
	upSince := time.Now()
	for {
		s.mu.Lock()
		cmd, done := s.cmd, s.done
		s.mu.Unlock()
		if cmd != nil {
			select {
			case <-done:
			case <-s.quit:
				return
			}
			select {
			case <-s.quit:
				return // Stop's own SIGTERM
			default:
			}
			s.mu.Lock()
			exit := fmt.Sprint(s.exitErr)
			if s.exitErr == nil {
				exit = "exit status 0"
			}
			s.state.LastExit, s.state.LastExitAt = exit, time.Now()
			s.mu.Unlock()
			_ = s.reap(cmd)
			if time.Since(upSince) >= supervisorReset {
				backoff = supervisorMin
			}
		}
		s.mu.Lock()
		s.state.NextRestart = time.Now().Add(backoff)
		restarts := s.state.Restarts
		s.mu.Unlock()
		s.log.Error("local ClickHouse exited unexpectedly; restarting it", "exit", s.State().LastExit,
			"restart_in", backoff.String(), "restarts_so_far", restarts, "dir", s.opts.Dir)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.quit:
			t.Stop()
			return
		}
		backoff = min(2*backoff, supervisorMax)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := s.start(ctx)
		cancel()
		s.mu.Lock()
		s.state.NextRestart = time.Time{}
		if err == nil {
			s.state.Restarts++
		}
		s.mu.Unlock()
		if err != nil {
			select {
			case <-s.quit: // Stop interrupted the restart
				return
			default:
			}
			s.log.Error("restarting local ClickHouse failed; will try again", "err", err)
			continue
		}
		upSince = time.Now()
		s.log.Warn("local ClickHouse restarted", "pid", s.PID(), "addr", s.Addr(), "restarts", s.State().Restarts)
	}
}

// Addr is the native-protocol address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort)) }

// HTTPAddr is the HTTP interface address, "127.0.0.1:PORT".
func (s *Server) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)) }

// PID is the process id of the running server, 0 when stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Dir is the absolute data and config directory.
func (s *Server) Dir() string { return s.opts.Dir }

// Stop sends SIGTERM and waits for the server to exit; when ctx ends first
// it sends SIGKILL and waits for that. Stopping a stopped server is a no-op.
func (s *Server) Stop(ctx context.Context) error {
	s.quitOnce.Do(func() { close(s.quit) })
	<-s.supDone
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return s.reap(cmd)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling local ClickHouse pid %d: %w", cmd.Process.Pid, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("local ClickHouse did not stop in time, killing", "pid", cmd.Process.Pid)
		_ = cmd.Process.Kill()
		<-done
	}
	return s.reap(cmd)
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. Data not yet flushed by the server is lost; use it in loss tests.
func (s *Server) Kill() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing local ClickHouse pid %d: %w", cmd.Process.Pid, err)
	}
	<-done
	return s.reap(cmd)
}

// Restart stops the server (gracefully, bounded by ctx) when it is running
// and starts it again on the same Dir and ports.
func (s *Server) Restart(ctx context.Context) error {
	stopCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err := s.Stop(stopCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("restarting local ClickHouse: %w", err)
	}
	return s.start(ctx)
}

// reap clears cmd as the current child; it reports nothing for the exit
// status because SIGTERM/SIGKILL exits are what was asked for.
func (s *Server) reap(cmd *exec.Cmd) error {
	s.mu.Lock()
	if s.cmd == cmd {
		s.cmd, s.done = nil, nil
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("starting local ClickHouse: already running")
	}
	args := []string{"--config-file=" + filepath.Join(s.opts.Dir, "config.xml")}
	if s.multi {
		args = append([]string{"server"}, args...)
	}
	// Not CommandContext: the server must outlive the ctx that started it.
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.opts.Dir
	s.logStart = 0
	if fi, err := os.Stat(filepath.Join(s.opts.Dir, "log", "server.log")); err == nil {
		s.logStart = fi.Size() // readiness reads only what this start logs
	}
	logf, err := os.OpenFile(filepath.Join(s.opts.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("opening local ClickHouse stdout log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL, // dies with mcptrail
		Setpgid:    true,            // a Ctrl-C to mcptrail is handled by mcptrail, not the child
		Credential: s.cred,
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		logf.Close()
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	logf.Close() // the child holds its own descriptor
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		s.mu.Lock()
		s.exitErr = waitErr
		s.mu.Unlock()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	s.log.Info("local ClickHouse starting", "pid", cmd.Process.Pid, "addr", s.Addr(), "dir", s.opts.Dir, "binary", s.bin)

	if err := s.waitReady(ctx, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		_ = s.reap(cmd)
		if errors.Is(err, errExited) {
			err = fmt.Errorf("%w (%v)", err, waitErr)
		}
		tail := s.logTail()
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("starting local ClickHouse in %s: %w; %s", s.opts.Dir, err, tail)
	}
	return nil
}

var errExited = errors.New("server exited before accepting connections")

func (s *Server) waitReady(ctx context.Context, done <-chan struct{}) error {
	return waitReady(ctx, s.opts.StartTimeout, done, "ping", s.ping)
}

// waitReady probes a starting child every 100ms until probe succeeds, the
// child exits (done closes: errExited) or timeout passes.
func waitReady(ctx context.Context, timeout time.Duration, done <-chan struct{}, what string, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-done:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-tick.C:
		}
		if last = probe(ctx); last == nil {
			return nil
		}
	}
}

func (s *Server) ping(ctx context.Context) error {
	// Cheap TCP probe first so that the driver is not dialled in a loop
	// against a port nobody listens on yet.
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return err
	}
	c.Close()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}, DialTimeout: 2 * time.Second, MaxOpenConns: 1,
		Auth: clickhouse.Auth{Username: "default", Password: s.password}})
	if err != nil {
		return err
	}
	defer conn.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		return err
	}
	if s.opts.Cluster != nil {
		return s.ddlWorkerReady()
	}
	return nil
}

// ddlWorkerMarks are what the DDL worker logs (at debug) once it has its
// ZooKeeper session: 18.16, then newer releases.
var ddlWorkerMarks = [][]byte{[]byte("DDLWorker: Processing tasks"), []byte("Initialized DDLWorker thread")}

// ddlWorkerReady reports whether the distributed DDL worker started since
// this start has its ZooKeeper session. Until then an ON CLUSTER query
// crashes an 18.16 server (a null ZooKeeper in DDLWorker::enqueueQuery), and
// the server answers pings long before.
func (s *Server) ddlWorkerReady() error {
	f, err := os.Open(filepath.Join(s.opts.Dir, "log", "server.log"))
	if err != nil {
		return fmt.Errorf("reading the server log for the DDL worker: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.logStart, io.SeekStart); err != nil {
		return fmt.Errorf("reading the server log for the DDL worker: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("reading the server log for the DDL worker: %w", err)
	}
	for _, m := range ddlWorkerMarks {
		if bytes.Contains(b, m) {
			return nil
		}
	}
	return errors.New("the distributed DDL worker has no ZooKeeper session yet")
}

func (s *Server) logTail() string {
	var out []string
	for _, name := range []string{"server.err.log", "stdout.log"} {
		b, err := os.ReadFile(filepath.Join(s.opts.Dir, name))
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		out = append(out, name+": "+string(bytes.TrimSpace(b)))
	}
	if len(out) == 0 {
		return "no server log output"
	}
	return fmt.Sprint(out)
}

// passwordFile holds the generated password of the default user.
const passwordFile = "password"

// ensurePassword returns the password kept in dir, generating it (32
// random bytes, hex) on first use. The file is mode 0600 and rewritten
// with that mode if it was loosened.
func ensurePassword(dir string) (string, error) {
	path := filepath.Join(dir, passwordFile)
	if pw, err := ReadPassword(dir); err == nil && pw != "" {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("restricting %s: %w", path, err)
		}
		return pw, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating the local ClickHouse password: %w", err)
	}
	pw := hex.EncodeToString(b[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return pw, nil
}

// ReadPassword reads the password that a server started with
// RequirePassword keeps in dir; the error wraps fs.ErrNotExist when there
// is none.
func ReadPassword(dir string) (string, error) {
	path := filepath.Join(dir, passwordFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the local ClickHouse password %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// findBinary resolves the server executable; multi reports the multi-call
// binary that needs a "server" sub-command.
func findBinary(explicit string) (path string, multi bool, err error) {
	if explicit != "" {
		p, err := exec.LookPath(explicit)
		if err != nil {
			return "", false, fmt.Errorf("%w: %s: %v", ErrNoBinary, explicit, err)
		}
		return p, isMulti(p), nil
	}
	for _, name := range []string{"clickhouse", "clickhouse-server", "/usr/bin/clickhouse", "/usr/sbin/clickhouse-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, isMulti(p), nil
		}
	}
	return "", false, ErrNoBinary
}

// isMulti reports whether p is the multi-call binary (named clickhouse,
// possibly via a symlink such as /usr/bin/clickhouse-server → clickhouse in
// modern packages, which also dispatch on argv[0] and so need no sub-command).
func isMulti(p string) bool { return filepath.Base(p) == "clickhouse" }

// maxPortAttempts bounds how often Start picks new ports after losing a
// race for the ones it picked.
const maxPortAttempts = 5

// errPortInUse marks a start that failed because a port was already bound.
var errPortInUse = errors.New("port already in use")

// pickPorts fills the ports the caller left zero.
func (s *Server) pickPorts() error {
	var err error
	if s.opts.TCPPort == 0 {
		if s.tcpPort, err = freePort(); err != nil {
			return fmt.Errorf("picking native port for local ClickHouse: %w", err)
		}
	} else {
		s.tcpPort = s.opts.TCPPort
	}
	if s.opts.HTTPPort == 0 {
		if s.httpPort, err = freePort(); err != nil {
			return fmt.Errorf("picking http port for local ClickHouse: %w", err)
		}
	} else {
		s.httpPort = s.opts.HTTPPort
	}
	if c := s.opts.Cluster; c != nil {
		if c.InterserverPort != 0 {
			s.ihPort = c.InterserverPort
		} else if s.ihPort, err = freePort(); err != nil {
			return fmt.Errorf("picking interserver port for local ClickHouse: %w", err)
		}
	}
	return nil
}

// freePort is the port picker Start uses; a variable so that a test can
// hand out a taken port first.
var freePort = FreePort

// FreePort returns a port on 127.0.0.1 that nothing listens on; see
// port.Free.
func FreePort() (int, error) { return port.Free() }

func (s *Server) prepareDir() error {
	if err := os.MkdirAll(s.opts.Dir, 0o750); err != nil {
		return fmt.Errorf("creating local ClickHouse dir %s: %w", s.opts.Dir, err)
	}
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(s.opts.Dir, sub), 0o750); err != nil {
			return fmt.Errorf("creating local ClickHouse dir %s: %w", sub, err)
		}
	}
	var buf bytes.Buffer
	if err := configTmpl.Execute(&buf, map[string]any{"Dir": s.opts.Dir, "TCP": s.tcpPort, "HTTP": s.httpPort,
		"Cluster": s.opts.Cluster, "Interserver": s.ihPort}); err != nil {
		return fmt.Errorf("rendering local ClickHouse config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.opts.Dir, "config.xml"), buf.Bytes(), 0o640); err != nil {
		return fmt.Errorf("writing local ClickHouse config: %w", err)
	}
	users := usersXML
	if s.opts.RequirePassword {
		pw, err := ensurePassword(s.opts.Dir)
		if err != nil {
			return err
		}
		s.password = pw
		sum := sha256.Sum256([]byte(pw))
		users = strings.Replace(usersXML, "<password></password>",
			"<password_sha256_hex>"+hex.EncodeToString(sum[:])+"</password_sha256_hex>", 1)
	}
	if err := os.WriteFile(filepath.Join(s.opts.Dir, "users.xml"), []byte(users), 0o640); err != nil {
		return fmt.Errorf("writing local ClickHouse users: %w", err)
	}
	if s.opts.User == "" || os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(s.opts.User)
	if err != nil {
		return fmt.Errorf("looking up local ClickHouse user %s: %w", s.opts.User, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(s.opts.Dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("handing local ClickHouse dir %s to user %s: %w", s.opts.Dir, s.opts.User, err)
	}
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

// The config keeps caches small (the defaults assume a dedicated host with
// many GB) and pins the time zone to UTC so DateTime values read back the
// same everywhere.
var configTmpl = template.Must(template.New("config").Parse(`<?xml version="1.0"?>
<!-- generated by mcptrail chlocal; rewritten on every start -->
<yandex>
  <logger>
    <level>{{if .Cluster}}debug{{else}}warning{{end}}</level>{{if .Cluster}}<!-- the DDL worker's readiness is read from it -->{{end}}
    <log>{{.Dir}}/log/server.log</log>
    <errorlog>{{.Dir}}/server.err.log</errorlog>
    <size>10M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{{.TCP}}</tcp_port>
  <http_port>{{.HTTP}}</http_port>
  <path>{{.Dir}}/data/</path>
  <tmp_path>{{.Dir}}/tmp/</tmp_path>
  <user_files_path>{{.Dir}}/user_files/</user_files_path>
  <format_schema_path>{{.Dir}}/format_schemas/</format_schema_path>
  <users_config>{{.Dir}}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
{{- with .Cluster}}
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{{$.Interserver}}</interserver_http_port>
  <remote_servers>
    <{{.Name}}>
      <shard>
        <internal_replication>true</internal_replication>
        {{- range .Replicas}}
        <replica><host>{{.Host}}</host><port>{{.Port}}</port></replica>
        {{- end}}
      </shard>
    </{{.Name}}>
  </remote_servers>
  <zookeeper>
    {{- range .ZooKeeper}}
    <node><host>{{.Host}}</host><port>{{.Port}}</port></node>
    {{- end}}
    <session_timeout_ms>{{.SessionTimeoutMs}}</session_timeout_ms>
  </zookeeper>
  <macros>
    <shard>{{.Shard}}</shard>
    <replica>{{.Replica}}</replica>
  </macros>
  <distributed_ddl>
    <path>/clickhouse/task_queue/ddl</path>
  </distributed_ddl>
  <!-- system.part_log: every part created, fetched or merged, so that a
       test can count the rows really inserted whatever merges did later. -->
  <part_log>
    <database>system</database>
    <table>part_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds>
  </part_log>
{{- end}}
</yandex>
`))

const usersXML = `<?xml version="1.0"?>
<!-- generated by mcptrail chlocal -->
<yandex>
  <profiles>
    <default>
      <max_memory_usage>2000000000</max_memory_usage>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`
