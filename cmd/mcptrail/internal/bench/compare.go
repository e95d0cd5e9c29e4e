package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal"
)

// CompareConfig configures `mcptrail bench --compare`: one interleaved run
// of the echo test backend loaded directly, through a gateway that does not
// record, and through a gateway that records into ClickHouse.
type CompareConfig struct {
	// Exe is the mcptrail binary that runs the backend and the gateways.
	Exe string
	// Rounds is how many interleaved rounds run; each reported figure is
	// the median over rounds. Default 3.
	Rounds int
	// Duration is how long each (round, concurrency, target) cell lasts;
	// default 5s.
	Duration time.Duration
	// Concurrency lists the session counts; default 1, 64.
	Concurrency []int
	// PayloadBytes is the size of each call's unique message; default 200.
	PayloadBytes int
	// ClickHouse is a ClickHouse native address (host:port, user default,
	// no password) for the recording gateway. Empty starts a local server
	// (chlocal) in WorkDir.
	ClickHouse string
	// ClickHousePID is the process id of the server at ClickHouse, read for
	// its CPU column; 0 leaves the column empty. Set for a local server.
	ClickHousePID int
	// WorkDir holds the configs, spool, logs and local ClickHouse data.
	// Empty makes (and removes) a temporary directory.
	WorkDir string
	// ProfileDir, when set, runs the gateways with --debug-addr and saves
	// a CPU profile of each gateway during its last cell at the highest
	// concurrency, and a heap profile right after it, as
	// <ProfileDir>/{off,on}-{cpu,heap}.pprof.
	ProfileDir string
}

func (c *CompareConfig) setDefaults() {
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{1, 64}
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
}

// ParseCompareArgs parses `mcptrail bench --compare [flags]` (without the
// subcommand name and without --compare).
func ParseCompareArgs(args []string, stderr io.Writer) (CompareConfig, error) {
	var cfg CompareConfig
	fs := flag.NewFlagSet("bench --compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Rounds, "rounds", 3, "interleaved rounds; figures are medians over rounds")
	fs.DurationVar(&cfg.Duration, "d", 5*time.Second, "duration of each cell (round x concurrency x target)")
	conc := fs.String("c", "1,64", "comma-separated concurrency levels (sessions)")
	fs.IntVar(&cfg.PayloadBytes, "payload", 200, "bytes of unique payload per call")
	fs.StringVar(&cfg.ClickHouse, "clickhouse", "", "ClickHouse native address for the recording gateway (empty: start a local server)")
	fs.IntVar(&cfg.ClickHousePID, "clickhouse-pid", 0, "pid of the server at --clickhouse, for its CPU column")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "directory for configs, spool, logs and local ClickHouse (default: a temporary one)")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "save CPU and heap profiles of both gateways' last cell at the highest concurrency here")
	if err := fs.Parse(args); err != nil {
		return CompareConfig{}, err
	}
	if fs.NArg() > 0 {
		return CompareConfig{}, fmt.Errorf("bench --compare: unexpected argument %q", fs.Arg(0))
	}
	for _, f := range strings.Split(*conc, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 || k > 10000 {
			return CompareConfig{}, fmt.Errorf("bench --compare: -c %q: want levels in 1..10000", *conc)
		}
		cfg.Concurrency = append(cfg.Concurrency, k)
	}
	if cfg.Rounds < 1 || cfg.Rounds > 100 {
		return CompareConfig{}, fmt.Errorf("bench --compare: --rounds %d: want 1..100", cfg.Rounds)
	}
	if cfg.Duration <= 0 {
		return CompareConfig{}, fmt.Errorf("bench --compare: -d %s: must be positive", cfg.Duration)
	}
	if cfg.PayloadBytes < 32 || cfg.PayloadBytes > 1<<20 {
		return CompareConfig{}, fmt.Errorf("bench --compare: --payload %d: want 32..1048576 bytes", cfg.PayloadBytes)
	}
	return cfg, nil
}

// Cell is the median outcome of one (target, concurrency) over the rounds.
type Cell struct {
	Target      string
	Concurrency int
	CallsPerSec float64
	P50         time.Duration
	// CPUPerCall is the gateway process's user+system CPU per verified
	// call (zero for the direct target).
	CPUPerCall time.Duration
	Errors     int64
	FirstError string
}

// Comparison is the outcome of RunCompare.
type Comparison struct {
	Cells []Cell
	// ClickHouseCPUPerCall is the ClickHouse server's CPU from the first
	// round until the recorder had written everything, divided by the
	// calls recorded (zero when its pid is unknown).
	ClickHouseCPUPerCall time.Duration
	// ClickHouseIdlePerCall is the part of ClickHouseCPUPerCall that the
	// server spends when idle (background merges of its own logs, timers):
	// its CPU rate over a quiet window before the first round, times the
	// measured window, divided by the calls recorded.
	ClickHouseIdlePerCall time.Duration
	// ClickHouseSystemPerCall is the part of ClickHouseCPUPerCall spent in
	// the kernel (system time): mostly creating, writing and removing the
	// files of parts.
	ClickHouseSystemPerCall time.Duration
	// ClickHouseStorage describes the filesystem of the local server's
	// data directory (empty for --clickhouse): what a part's files cost
	// the kernel depends on it.
	ClickHouseStorage string
	// RecordedCalls counts the recording gateway's verified calls.
	RecordedCalls int64
	// PeakRSS is each gateway's peak resident set (VmHWM), by target name.
	PeakRSS map[string]int64
	// FileRSS is the part of each gateway's resident set, at the end, that
	// is file-backed (RssFile: the pages of the binary it touched), by
	// target name: memory the gateway shares with the page cache and that
	// recording does not change.
	FileRSS map[string]int64
	// Conditions describes the run (rounds, cell duration, cores, load).
	Conditions string
}

// Compare target names, in table order.
const (
	TargetDirect   = "direct"
	TargetNoRecord = "mcptrail, recording off"
	TargetRecord   = "mcptrail, recording on"
)

// RunCompare starts the echo backend, the two gateways and (unless given)
// a local ClickHouse, runs the interleaved rounds, prints the table to out
// and stops everything it started.
func RunCompare(ctx context.Context, cfg CompareConfig, out io.Writer) (*Comparison, error) {
	cfg.setDefaults()
	if cfg.Exe == "" {
		return nil, errors.New("bench --compare: no mcptrail binary")
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "mcptrail-bench-")
		if err != nil {
			return nil, fmt.Errorf("making the work directory: %w", err)
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	} else if err := os.MkdirAll(cfg.WorkDir, 0o750); err != nil {
		return nil, fmt.Errorf("making the work directory: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	var procs []*child
	defer func() {
		for _, p := range slices.Backward(procs) {
			p.stop()
		}
	}()
	start := func(name string, args ...string) (*child, error) {
		p, err := startChild(cfg.Exe, filepath.Join(cfg.WorkDir, name+".log"), args...)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		procs = append(procs, p)
		return p, nil
	}

	backendAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	backend, err := start("backend", "testbackend", "--http", backendAddr)
	if err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, 60*time.Second, backend, func() error {
		c, err := net.Dial("tcp", backendAddr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("waiting for the backend: %w", err)
	}

	chAddr, chPID := cfg.ClickHouse, cfg.ClickHousePID
	var chStorage string
	if chAddr == "" {
		srv, err := chlocal.Start(ctx, chlocal.Options{Dir: filepath.Join(cfg.WorkDir, "clickhouse"), StartTimeout: 90 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("starting a local ClickHouse: %w", err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = srv.Stop(sctx)
		}()
		chAddr, chPID = srv.Addr(), srv.PID()
		chStorage = describeFS(filepath.Join(cfg.WorkDir, "clickhouse"))
	}

	gwConfig := filepath.Join(cfg.WorkDir, "gateway.yaml")
	yaml := fmt.Sprintf(`# written by mcptrail bench --compare
listen: 127.0.0.1:0
instance: bench
servers:
  - name: tb
    transport: http
    url: http://%s/mcp
    required: true
recorder:
  clickhouse:
    addr: [%q]
    database: mcptrail_bench
  spool:
    dir: %q
`, backendAddr, chAddr, filepath.Join(cfg.WorkDir, "spool"))
	if err := os.WriteFile(gwConfig, []byte(yaml), 0o600); err != nil {
		return nil, fmt.Errorf("writing the gateway config: %w", err)
	}
	type gw struct {
		p                   *child
		url, statusz, debug string
	}
	startGateway := func(name string, extra ...string) (gw, error) {
		listen, err := freeAddr()
		if err != nil {
			return gw{}, err
		}
		admin, err := freeAddr()
		if err != nil {
			return gw{}, err
		}
		args := append([]string{"serve", "--config", gwConfig, "--listen", listen, "--admin-listen", admin, "--log-level", "warn"}, extra...)
		var debug string
		if cfg.ProfileDir != "" {
			if debug, err = freeAddr(); err != nil {
				return gw{}, err
			}
			args = append(args, "--debug-addr", debug)
		}
		p, err := start(name, args...)
		if err != nil {
			return gw{}, err
		}
		g := gw{p: p, url: "http://" + listen + "/mcp", statusz: "http://" + admin + "/statusz", debug: debug}
		err = waitUntil(ctx, 90*time.Second, p, func() error {
			resp, err := hc.Get("http://" + listen + "/readyz")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				return fmt.Errorf("readyz %d %s", resp.StatusCode, bytes.TrimSpace(b))
			}
			return nil
		})
		if err != nil {
			return gw{}, fmt.Errorf("waiting for the gateway (%s): %w", name, err)
		}
		return g, nil
	}
	off, err := startGateway("gateway-norecord", "--no-record")
	if err != nil {
		return nil, err
	}
	on, err := startGateway("gateway-record")
	if err != nil {
		return nil, err
	}

	targets := []struct {
		t       Target
		pid     int
		debug   string
		profile string
	}{
		{Target{Name: TargetDirect, URL: "http://" + backendAddr + "/mcp", Tool: "echo"}, 0, "", ""},
		{Target{Name: TargetNoRecord, URL: off.url, Tool: "tb.echo"}, off.p.pid(), off.debug, "off"},
		{Target{Name: TargetRecord, URL: on.url, Tool: "tb.echo"}, on.p.pid(), on.debug, "on"},
	}
	bcfg := Config{Concurrency: cfg.Concurrency, Duration: cfg.Duration, PayloadBytes: cfg.PayloadBytes}
	bcfg.setDefaults()
	maxK := slices.Max(cfg.Concurrency)

	type key struct {
		target string
		k      int
	}
	samples := map[key][]Cell{}
	var recorded int64
	// The server's idle rate, over a quiet window before the first round.
	var idleRate float64 // CPU seconds per second
	if chPID != 0 {
		const quiet = 3 * time.Second
		i0, _ := ProcCPU(chPID)
		select {
		case <-time.After(quiet):
		case <-ctx.Done():
			return nil, fmt.Errorf("bench --compare cancelled: %w", ctx.Err())
		}
		i1, _ := ProcCPU(chPID)
		idleRate = (i1 - i0).Seconds() / quiet.Seconds()
	}
	chCPU0, _ := ProcCPUTimes(chPID)
	window0 := time.Now()
	for round := range cfg.Rounds {
		for _, k := range cfg.Concurrency {
			for _, tg := range targets {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("bench --compare cancelled in round %d: %w", round+1, err)
				}
				var saveProfiles func()
				if cfg.ProfileDir != "" && tg.debug != "" && round == cfg.Rounds-1 && k == maxK {
					saveProfiles = profileCell(hc, tg.debug, filepath.Join(cfg.ProfileDir, tg.profile), cfg.Duration)
				}
				cpu0, _ := ProcCPU(tg.pid)
				r := runOne(ctx, bcfg, tg.t, k, maxK)
				cpu1, _ := ProcCPU(tg.pid)
				if saveProfiles != nil {
					saveProfiles()
				}
				c := Cell{Target: tg.t.Name, Concurrency: k, CallsPerSec: r.CallsPerSec, P50: r.P50, Errors: r.Errors, FirstError: r.FirstError}
				if tg.pid != 0 && r.Calls > 0 {
					c.CPUPerCall = (cpu1 - cpu0) / time.Duration(r.Calls)
				}
				if tg.t.Name == TargetRecord {
					recorded += r.Calls
				}
				samples[key{tg.t.Name, k}] = append(samples[key{tg.t.Name, k}], c)
			}
		}
	}
	// ClickHouse's share ends when the recorder has written every event.
	if err := waitUntil(ctx, 120*time.Second, on.p, func() error { return recorderDrained(hc, on.statusz) }); err != nil {
		return nil, fmt.Errorf("waiting for the recorder to write everything: %w", err)
	}
	chCPU1, _ := ProcCPUTimes(chPID)

	cmp := &Comparison{RecordedCalls: recorded, PeakRSS: map[string]int64{}, FileRSS: map[string]int64{}, ClickHouseStorage: chStorage}
	if chPID != 0 && recorded > 0 {
		cmp.ClickHouseCPUPerCall = (chCPU1.User + chCPU1.System - chCPU0.User - chCPU0.System) / time.Duration(recorded)
		cmp.ClickHouseSystemPerCall = (chCPU1.System - chCPU0.System) / time.Duration(recorded)
		idle := time.Duration(idleRate * float64(time.Since(window0)))
		cmp.ClickHouseIdlePerCall = min(idle/time.Duration(recorded), cmp.ClickHouseCPUPerCall)
	}
	for _, g := range []struct {
		name string
		p    *child
	}{{TargetNoRecord, off.p}, {TargetRecord, on.p}} {
		cmp.PeakRSS[g.name], _ = ProcPeakRSS(g.p.pid())
		cmp.FileRSS[g.name], _ = procStatusKB(g.p.pid(), "RssFile")
	}
	for _, k := range cfg.Concurrency {
		for _, tg := range targets {
			cmp.Cells = append(cmp.Cells, medianCell(samples[key{tg.t.Name, k}]))
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	cmp.Conditions = fmt.Sprintf("%d interleaved rounds of %s per cell, %d-byte unique payloads, %d CPUs, load average %s at the end",
		cfg.Rounds, cfg.Duration, cfg.PayloadBytes, runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	if err := WriteComparison(out, cmp); err != nil {
		return cmp, fmt.Errorf("writing the comparison: %w", err)
	}
	return cmp, nil
}

// profileCell starts a CPU profile of the gateway whose pprof listener is
// at debug, lasting most of a cell of length d; the function it returns
// waits for it and saves it and a heap profile as prefix-{cpu,heap}.pprof.
// Failures are printed, not fatal: the profiles are a diagnostic.
func profileCell(hc *http.Client, debug, prefix string, d time.Duration) func() {
	secs := max(1, int((d - 500*time.Millisecond).Seconds()))
	done := make(chan struct{})
	get := func(path, file string, timeout time.Duration) {
		c := &http.Client{Transport: hc.Transport, Timeout: timeout}
		resp, err := c.Get("http://" + debug + path)
		if err == nil {
			defer resp.Body.Close()
			var b []byte
			if b, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(file, b, 0o600)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench --compare: saving %s: %v\n", file, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(prefix), 0o750); err != nil {
		fmt.Fprintf(os.Stderr, "bench --compare: %v\n", err)
	}
	go func() {
		defer close(done)
		get("/debug/pprof/profile?seconds="+strconv.Itoa(secs), prefix+"-cpu.pprof", time.Duration(secs+30)*time.Second)
	}()
	return func() {
		<-done
		get("/debug/pprof/heap", prefix+"-heap.pprof", 30*time.Second)
	}
}

func medianCell(cs []Cell) Cell {
	if len(cs) == 0 {
		return Cell{}
	}
	m := cs[0]
	m.CallsPerSec = median(cs, func(c Cell) float64 { return c.CallsPerSec })
	m.P50 = time.Duration(median(cs, func(c Cell) float64 { return float64(c.P50) }))
	m.CPUPerCall = time.Duration(median(cs, func(c Cell) float64 { return float64(c.CPUPerCall) }))
	m.Errors = 0
	for _, c := range cs {
		m.Errors += c.Errors
		if m.FirstError == "" {
			m.FirstError = c.FirstError
		}
	}
	return m
}

func median(cs []Cell, f func(Cell) float64) float64 {
	v := make([]float64, len(cs))
	for i, c := range cs {
		v[i] = f(c)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// WriteComparison prints the comparison as a Markdown table (the shape of
// the README's performance section), then errors and the run's conditions.
func WriteComparison(out io.Writer, c *Comparison) error {
	var ks []int
	cells := map[string]map[int]Cell{}
	var names []string
	for _, cell := range c.Cells {
		if !slices.Contains(ks, cell.Concurrency) {
			ks = append(ks, cell.Concurrency)
		}
		if cells[cell.Target] == nil {
			cells[cell.Target] = map[int]Cell{}
			names = append(names, cell.Target)
		}
		cells[cell.Target][cell.Concurrency] = cell
	}
	if len(ks) == 0 {
		return errors.New("no results")
	}
	kMin, kMax := slices.Min(ks), slices.Max(ks)
	var b strings.Builder
	b.WriteString("| |")
	for _, k := range ks {
		fmt.Fprintf(&b, " c=%d calls/s (vs direct) |", k)
	}
	fmt.Fprintf(&b, " c=%d added p50 |", kMin)
	for _, k := range ks {
		fmt.Fprintf(&b, " gateway CPU/call c=%d |", k)
	}
	b.WriteString(" ClickHouse CPU/call | gateway peak RSS |\n|---|")
	b.WriteString(strings.Repeat("---|", 2*len(ks)+3))
	b.WriteString("\n")
	base := cells[TargetDirect]
	for _, name := range names {
		row := cells[name]
		fmt.Fprintf(&b, "| %s |", name)
		for _, k := range ks {
			if name == TargetDirect || base[k].CallsPerSec == 0 {
				fmt.Fprintf(&b, " %s |", thousands(row[k].CallsPerSec))
			} else {
				fmt.Fprintf(&b, " %s (%.2f×) |", thousands(row[k].CallsPerSec), row[k].CallsPerSec/base[k].CallsPerSec)
			}
		}
		if name == TargetDirect {
			b.WriteString(" — |")
		} else {
			fmt.Fprintf(&b, " %s |", fmtDelta(row[kMin].P50-base[kMin].P50))
		}
		for _, k := range ks {
			b.WriteString(" " + dashIfZero(row[k].CPUPerCall) + " |")
		}
		if name == TargetRecord {
			b.WriteString(" " + dashIfZero(c.ClickHouseCPUPerCall) + " |")
		} else {
			b.WriteString(" — |")
		}
		if rss := c.PeakRSS[name]; rss > 0 {
			fmt.Fprintf(&b, " %d MB |\n", (rss+(1<<19))>>20)
		} else {
			b.WriteString(" — |\n")
		}
	}
	if on, off := cells[TargetRecord], cells[TargetNoRecord]; on != nil && off != nil {
		fmt.Fprintf(&b, "\nrecording on vs off: throughput")
		for _, k := range ks {
			if off[k].CallsPerSec > 0 {
				fmt.Fprintf(&b, " c=%d %.2f×", k, on[k].CallsPerSec/off[k].CallsPerSec)
			}
		}
		fmt.Fprintf(&b, "; gateway CPU for recording at c=%d: %s per call\n", kMax, fmtDelta(on[kMax].CPUPerCall-off[kMax].CPUPerCall))
	}
	if off, on := c.FileRSS[TargetNoRecord], c.FileRSS[TargetRecord]; off > 0 && on > 0 {
		fmt.Fprintf(&b, "the binary's own pages in the gateway's RSS at the end (RssFile, part of the peak): %d MB off, %d MB on\n", (off+(1<<19))>>20, (on+(1<<19))>>20)
	}
	if c.ClickHouseCPUPerCall > 0 {
		fmt.Fprintf(&b, "ClickHouse CPU/call: %s in user space, %s in the kernel", fmtDur(c.ClickHouseCPUPerCall-c.ClickHouseSystemPerCall), fmtDur(c.ClickHouseSystemPerCall))
		if c.ClickHouseIdlePerCall > 0 {
			fmt.Fprintf(&b, "; %s of it the server spends when idle", fmtDur(c.ClickHouseIdlePerCall))
		}
		if c.ClickHouseStorage != "" {
			fmt.Fprintf(&b, "; its data is on %s", c.ClickHouseStorage)
		}
		b.WriteString("\n")
	}
	for _, name := range names {
		for _, k := range ks {
			if cl := cells[name][k]; cl.Errors > 0 {
				fmt.Fprintf(&b, "errors (%s, c=%d): %d, first: %s\n", name, k, cl.Errors, cl.FirstError)
			}
		}
	}
	fmt.Fprintf(&b, "%s; %d calls recorded\n", c.Conditions, c.RecordedCalls)
	_, err := io.WriteString(out, b.String())
	return err
}

func dashIfZero(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmtDur(d)
}

// thousands formats v rounded, with commas: 12,345.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// recorderDrained reports nil once the gateway's /statusz says every
// accepted event is written (or dropped).
func recorderDrained(hc *http.Client, statusz string) error {
	resp, err := hc.Get(statusz)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var st struct {
		Recorder *struct {
			Pipeline struct {
				Enqueued, Spooled, Written, Dropped, Quarantined uint64
				QueueLen                                         int
			} `json:"pipeline"`
		} `json:"recorder"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("decoding /statusz: %w", err)
	}
	if st.Recorder == nil {
		return errors.New("/statusz has no recorder")
	}
	p := st.Recorder.Pipeline
	if p.QueueLen != 0 || p.Spooled+p.Dropped != p.Enqueued || p.Written+p.Quarantined < p.Spooled {
		return fmt.Errorf("recorder not drained: %+v", p)
	}
	return nil
}

// ProcCPU returns the user+system CPU time pid has used (Linux
// /proc/<pid>/stat); 0 and an error for pid 0 or elsewhere.
func ProcCPU(pid int) (time.Duration, error) {
	t, err := ProcCPUTimes(pid)
	return t.User + t.System, err
}

// CPUTimes is a process's CPU time in user space and in the kernel.
type CPUTimes struct {
	User, System time.Duration
}

// ProcCPUTimes returns pid's user and system CPU time so far.
func ProcCPUTimes(pid int) (CPUTimes, error) {
	if pid == 0 {
		return CPUTimes{}, errors.New("no pid")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPUTimes{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return CPUTimes{}, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return CPUTimes{}, fmt.Errorf("parsing /proc stat: %w", err)
	}
	const clkTck = 100 // USER_HZ, 100 on every Linux ABI Go supports
	return CPUTimes{User: time.Duration(ut) * (time.Second / clkTck), System: time.Duration(st) * (time.Second / clkTck)}, nil
}

// ProcPeakRSS returns pid's peak resident set size in bytes (VmHWM).
func ProcPeakRSS(pid int) (int64, error) {
	return procStatusKB(pid, "VmHWM")
}

// procStatusKB returns the field of /proc/<pid>/status given in kB, in bytes.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// child is a process bench --compare started, its output in a log file.
type child struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startChild(exe, logPath string, args ...string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *child) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) logTail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// waitUntil polls ready until it returns nil, p exits, ctx ends or timeout.
func waitUntil(ctx context.Context, timeout time.Duration, p *child, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("process exited: %s", p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	port, err := chlocal.FreePort()
	if err != nil {
		return "", fmt.Errorf("picking a free port: %w", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
