// Package bench implements `mcptrail bench`: a closed-loop load generator
// for MCP streamable HTTP endpoints. For each concurrency level K it opens K
// sessions; each initializes once and then calls one tool in a loop with a
// unique payload that must come back in the result. It reports throughput,
// latency percentiles and errors per target and concurrency, and compares
// targets (for example direct vs through the gateway) in one run.
//
// The client is raw JSON-RPC over net/http, not an SDK, so the bench's own
// overhead stays small next to what it measures.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Target is one endpoint to load.
type Target struct {
	// Name labels the target in the report, for example "direct" or "gateway".
	Name string
	// URL is the streamable HTTP endpoint, for example http://127.0.0.1:8080/mcp.
	URL string
	// Tool, when set, overrides Config.Tool for this target (a gateway
	// names the backend's tool with its namespace: "tb.echo").
	Tool string
}

// Config is the bench configuration. Zero values take the defaults named.
type Config struct {
	// Targets are loaded one after another at each concurrency level; the
	// first is the baseline the others are compared with. At least one.
	Targets []Target
	// Concurrency lists the session counts to run; default 1, 8, 64.
	Concurrency []int
	// Duration is how long each (target, concurrency) run lasts; default 15s.
	Duration time.Duration
	// Tool is the tool to call; it must echo its "message" argument back in
	// a text content item (the text must contain it). Default "echo".
	Tool string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// PayloadBytes is the size of each call's unique message; default 200.
	PayloadBytes int
	// ProtocolVersion is sent in initialize; default "2025-11-25".
	ProtocolVersion string
	// Timeout bounds each HTTP exchange; default 30s.
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{1, 8, 64}
	}
	if c.Duration == 0 {
		c.Duration = 15 * time.Second
	}
	if c.Tool == "" {
		c.Tool = "echo"
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
	if c.ProtocolVersion == "" {
		c.ProtocolVersion = "2025-11-25"
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	for i := range c.Targets {
		if c.Targets[i].Name == "" {
			c.Targets[i].Name = "target" + strconv.Itoa(i+1)
		}
	}
}

// Validate reports the first invalid setting, naming its flag.
func (c *Config) Validate() error {
	if len(c.Targets) == 0 {
		return errors.New("bench: at least one --url is required")
	}
	for _, t := range c.Targets {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bench: --url %s=%s: want an http(s) URL", t.Name, t.URL)
		}
	}
	for _, k := range c.Concurrency {
		if k < 1 || k > 10000 {
			return fmt.Errorf("bench: -c %d: want 1..10000", k)
		}
	}
	if c.Duration < 0 {
		return fmt.Errorf("bench: -d %s: must be positive", c.Duration)
	}
	if c.PayloadBytes < 32 || c.PayloadBytes > 1<<20 {
		return fmt.Errorf("bench: --payload %d: want 32..1048576 bytes", c.PayloadBytes)
	}
	return nil
}

// ParseArgs parses the command line of `mcptrail bench` (without the
// subcommand name). Usage and flag errors go to stderr.
func ParseArgs(args []string, stderr io.Writer) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("url", "target `[name=]URL` (repeatable; the first is the baseline)", func(s string) error {
		name, u, ok := strings.Cut(s, "=")
		if !ok || strings.Contains(name, "/") || strings.Contains(name, ":") {
			name, u = "", s
		}
		cfg.Targets = append(cfg.Targets, Target{Name: name, URL: u})
		return nil
	})
	conc := fs.String("c", "1,8,64", "comma-separated concurrency levels (sessions)")
	fs.DurationVar(&cfg.Duration, "d", 15*time.Second, "duration of each run")
	fs.StringVar(&cfg.Tool, "tool", "echo", "tool to call; must echo its message argument")
	fs.StringVar(&cfg.Token, "token", "", "bearer token")
	fs.IntVar(&cfg.PayloadBytes, "payload", 200, "bytes of unique payload per call")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	for _, f := range strings.Split(*conc, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return Config{}, fmt.Errorf("bench: -c %q: %w", *conc, err)
		}
		cfg.Concurrency = append(cfg.Concurrency, k)
	}
	cfg.setDefaults()
	return cfg, cfg.Validate()
}

// Result is the outcome of one (target, concurrency) run.
type Result struct {
	Target      string
	URL         string
	Concurrency int
	// Calls counts tools/call exchanges that completed and verified.
	Calls int64
	// Errors counts failed sessions and calls: HTTP errors, JSON-RPC
	// errors, isError results and payloads that did not come back.
	Errors int64
	// FirstError describes the first error seen, empty when none.
	FirstError string
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
	// CallsPerSec is Calls / Elapsed.
	CallsPerSec float64
	// Latency percentiles of successful calls (within ~3%) and exact max.
	P50, P90, P99, Max time.Duration
}

// Run loads every target at every concurrency level and writes the report
// table to out. It returns the results even when some calls failed; the
// error is for setup problems and cancellation.
func Run(ctx context.Context, cfg Config, out io.Writer) ([]Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	maxK := 0
	for _, k := range cfg.Concurrency {
		maxK = max(maxK, k)
	}
	var results []Result
	for _, k := range cfg.Concurrency {
		for _, t := range cfg.Targets {
			if err := ctx.Err(); err != nil {
				return results, fmt.Errorf("bench cancelled before %s at c=%d: %w", t.Name, k, err)
			}
			results = append(results, runOne(ctx, cfg, t, k, maxK))
		}
	}
	if err := WriteReport(out, results); err != nil {
		return results, fmt.Errorf("writing bench report: %w", err)
	}
	return results, ctx.Err()
}

func runOne(ctx context.Context, cfg Config, t Target, k, maxK int) Result {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConns:        maxK * 2,
		MaxIdleConnsPerHost: maxK * 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: cfg.Timeout}

	tcfg := cfg
	if t.Tool != "" {
		tcfg.Tool = t.Tool
	}
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		errCount atomic.Int64
		firstErr atomic.Pointer[string]
		mu       sync.Mutex
		total    histogram
		calls    int64
	)
	noteErr := func(err error) {
		errCount.Add(1)
		s := err.Error()
		firstErr.CompareAndSwap(nil, &s)
	}
	start := time.Now()
	timer := time.AfterFunc(cfg.Duration, func() { stop.Store(true) })
	defer timer.Stop()
	for w := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &session{hc: hc, url: t.URL, token: cfg.Token, protocol: cfg.ProtocolVersion}
			h := new(histogram)
			n := worker(ctx, s, tcfg, w, &stop, h, noteErr)
			mu.Lock()
			total.merge(h)
			calls += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := Result{
		Target: t.Name, URL: t.URL, Concurrency: k,
		Calls: calls, Errors: errCount.Load(), Elapsed: elapsed,
		P50: total.quantile(0.50), P90: total.quantile(0.90), P99: total.quantile(0.99), Max: time.Duration(total.max),
	}
	if elapsed > 0 {
		r.CallsPerSec = float64(calls) / elapsed.Seconds()
	}
	if p := firstErr.Load(); p != nil {
		r.FirstError = *p
	}
	return r
}

// worker runs one session until stop is set or ctx ends and returns the
// number of verified calls. A call in flight when stop is set completes.
func worker(ctx context.Context, s *session, cfg Config, w int, stop *atomic.Bool, h *histogram, noteErr func(error)) int64 {
	if err := s.initialize(ctx); err != nil {
		noteErr(fmt.Errorf("session %d: %w", w, err))
		return 0
	}
	defer s.close(context.WithoutCancel(ctx))
	var ok int64
	buf := make([]byte, 0, cfg.PayloadBytes+256)
	// Every session makes at least one call, however short the run: on a
	// loaded machine initialize can outlast a short -d, and a run with no
	// call would report neither speed nor the target's error.
	for seq := 0; ctx.Err() == nil && (seq == 0 || !stop.Load()); seq++ {
		payload := makePayload(w, seq, cfg.PayloadBytes)
		t0 := time.Now()
		var err error
		buf, err = s.callTool(ctx, buf[:0], cfg.Tool, payload)
		d := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			noteErr(fmt.Errorf("session %d call %d: %w", w, seq, err))
			continue
		}
		h.record(d)
		ok++
	}
	return ok
}

// makePayload returns a message unique to (worker, seq) padded to n bytes
// with JSON-safe characters.
func makePayload(w, seq, n int) string {
	var b strings.Builder
	b.Grow(n)
	fmt.Fprintf(&b, "w%05d-s%010d-", w, seq)
	const pad = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := 0; b.Len() < n; i++ {
		b.WriteByte(pad[i%len(pad)])
	}
	return b.String()
}

// WriteReport prints results as a table, then, for every target after the
// first, its ratio to the first at the same concurrency.
func WriteReport(out io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconc\tcalls\tcalls/s\tp50\tp90\tp99\tmax\terrors\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", r.Target, r.Concurrency, r.Calls, r.CallsPerSec,
			fmtDur(r.P50), fmtDur(r.P90), fmtDur(r.P99), fmtDur(r.Max), r.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.FirstError != "" {
			fmt.Fprintf(out, "first error (%s, c=%d): %s\n", r.Target, r.Concurrency, r.FirstError)
		}
	}
	base := map[int]Result{}
	for _, r := range results {
		if _, ok := base[r.Concurrency]; !ok {
			base[r.Concurrency] = r
		}
	}
	for _, r := range results {
		b := base[r.Concurrency]
		if b.Target == r.Target || b.CallsPerSec == 0 || b.P50 == 0 {
			continue
		}
		_, err := fmt.Fprintf(out, "%s/%s c=%d: throughput x%.2f, p50 x%.2f (%s), p99 x%.2f (%s)\n",
			r.Target, b.Target, r.Concurrency, r.CallsPerSec/b.CallsPerSec,
			float64(r.P50)/float64(b.P50), fmtDelta(r.P50-b.P50),
			float64(r.P99)/float64(max(b.P99, 1)), fmtDelta(r.P99-b.P99))
		if err != nil {
			return err
		}
	}
	return nil
}

func fmtDur(d time.Duration) string {
	switch a := max(d, -d); {
	case a >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case a >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

func fmtDelta(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}
