package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/recorder/redact"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/bundle"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
	"github.com/mcptrail/mcptrail/replay/mockserver"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/runner"
	"github.com/mcptrail/mcptrail/replay/secrets"
)

// replayFlags are the flags of the three replay modes.
type replayFlags struct {
	sel           selectionFlags
	configPath    string
	gatewayURL    string
	targets       []string
	tokens        []string
	secretsPath   string
	ignore        []string
	exclude       []string
	accept        string
	concurrency   int
	speed         float64
	baselineTwice bool
	allowWrites   bool
	yes           bool
	format        string
	junit         string
	output        string
	timeout       time.Duration
	noStore       bool
	verbose       bool
}

func newReplayCmd(env *Env, mode string) *cobra.Command {
	var f replayFlags
	short := map[string]string{
		"mock":     "Replay client requests through this build's gateway against recorded backend answers",
		"upstream": "Replay upstream requests straight to live backends",
		"e2e":      "Replay client requests through a gateway with live backends",
	}[mode]
	cmd := &cobra.Command{
		Use:   mode + " [selection flags]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReplay(cmd.Context(), env, runner.Mode(mode), &f)
		},
	}
	f.sel.register(cmd)
	fl := cmd.Flags()
	switch mode {
	case "mock":
		fl.StringVar(&f.configPath, "config", "", "candidate gateway config; its backends are replaced by the mock (default: the recorded servers)")
		fl.StringVar(&f.gatewayURL, "gateway-url", "", "replay against this running candidate gateway's /mcp endpoint instead (its config points at `mcptrail mock`)")
	case "e2e":
		fl.StringVar(&f.configPath, "config", "", "gateway config to run in-process, with its real backends")
		fl.StringVar(&f.gatewayURL, "gateway-url", "", "replay against this running gateway's /mcp endpoint instead")
		fl.BoolVar(&f.allowWrites, "allow-writes", false, "also replay tools not annotated readOnlyHint (asks for confirmation unless --yes)")
		fl.BoolVar(&f.yes, "yes", false, "do not ask for confirmation")
	case "upstream":
		fl.StringVar(&f.configPath, "config", "", "gateway config whose servers are the live backends")
		fl.StringSliceVar(&f.targets, "target", nil, "live backend: server=http://host/mcp, server=sse:http://host/sse or 'server=stdio:command args' (overrides --config)")
		fl.BoolVar(&f.allowWrites, "allow-writes", false, "also replay tools not annotated readOnlyHint (asks for confirmation unless --yes)")
		fl.BoolVar(&f.yes, "yes", false, "do not ask for confirmation")
	}
	if mode != "upstream" {
		fl.StringSliceVar(&f.tokens, "token", nil, "bearer token for the gateway: TOKEN, or principal=TOKEN per recorded principal")
	}
	fl.StringVar(&f.secretsPath, "secrets", "", "KEY=VALUE file refilling redacted values (keys: rule names or full placeholders); MCPTRAIL_SECRET_<RULE> also works")
	fl.StringSliceVar(&f.ignore, "ignore-path", nil, "ignore differences at [server:][target:]/json/pointer (* and ** globs; tool:/** accepts a whole answer)")
	fl.StringSliceVar(&f.exclude, "exclude", nil, "do not replay these requests: a request id or a tool/prompt/resource glob such as 'everything.get-*'")
	fl.StringVar(&f.accept, "accept", "", "file of accepted differences: --ignore-path rules and 'exclude GLOB|ID' lines, one per line ('#' comments)")
	fl.IntVar(&f.concurrency, "concurrency", 4, "sessions replayed in parallel")
	fl.Float64Var(&f.speed, "speed", 0, "0: as fast as possible; 1.0: recorded pacing; 2.0: twice as fast")
	fl.BoolVar(&f.baselineTwice, "baseline-twice", false, "replay twice; differences that vary between the two passes are noise, not regressions")
	fl.StringVar(&f.format, "format", "text", "report format: text or json")
	fl.StringVarP(&f.output, "output", "o", "", "write the report to this file instead of stdout")
	fl.StringVar(&f.junit, "junit", "", "also write a JUnit XML report to this file")
	fl.DurationVar(&f.timeout, "timeout", 60*time.Second, "per-request timeout")
	fl.BoolVar(&f.noStore, "no-store-results", false, "do not write the run's results to ClickHouse")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the in-process gateway's log and backends' stderr here instead of to a log file")
	return cmd
}

func runReplay(ctx context.Context, env *Env, mode runner.Mode, f *replayFlags) error {
	if f.format != "text" && f.format != "json" {
		return fmt.Errorf("--format %q: want text or json", f.format)
	}
	accepted, err := readAccept(f.accept)
	if err != nil {
		return err
	}
	ignore, err := diff.ParseIgnoreRules(append(slices.Clone(f.ignore), accepted.rules...))
	if err != nil {
		return fmt.Errorf("--ignore-path: %w", err)
	}
	sec, err := secrets.Load(f.secretsPath, env.Environ)
	if err != nil {
		return fmt.Errorf("loading secrets: %w", err)
	}
	var cfg *config.Config
	if f.configPath != "" {
		if cfg, err = config.Load(f.configPath); err != nil {
			return fmt.Errorf("loading --config: %w", err)
		}
	}
	src, err := f.sel.load(ctx, env)
	if err != nil {
		return err
	}
	defer src.close()
	if len(src.events) == 0 {
		return errors.New("the selection holds no recorded events")
	}
	// The in-process gateway's warnings and the backends' stderr go to a
	// log file (its path printed at the end), not into the report.
	backendStderr := &closingWriter{w: env.Stderr}
	defer backendStderr.close() // stderr drains may outlive the run
	logger := env.Logger
	if !f.verbose {
		lf, err := os.CreateTemp("", "mcptrail-replay-*.log")
		if err != nil {
			return fmt.Errorf("creating the replay log file: %w", err)
		}
		defer func() {
			backendStderr.close()
			st, err := lf.Stat()
			_ = lf.Close()
			if err == nil && st.Size() == 0 {
				_ = os.Remove(lf.Name())
				return
			}
			fmt.Fprintf(env.Stderr, "gateway and backend logs: %s (--verbose prints them here)\n", lf.Name())
		}()
		backendStderr.w = lf
		logger = slog.New(slog.NewTextHandler(backendStderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	reqs, excluded, err := exclude(replay.Requests(src.events), append(slices.Clone(f.exclude), accepted.excludes...))
	if err != nil {
		return err
	}
	if excluded > 0 {
		fmt.Fprintf(env.Stderr, "excluded %d request(s) (--exclude, --accept)\n", excluded)
	}
	o := runner.RunOptions{Options: runner.Options{
		Mode: mode, Secrets: sec, Ignore: ignore, Concurrency: f.concurrency, Speed: f.speed,
		AllowWrites: f.allowWrites, Timeout: f.timeout, Logger: logger, Stderr: backendStderr, Separator: f.sel.separator,
	}, BaselineTwice: f.baselineTwice}
	if o.Tokens, err = parseTokens(f.tokens); err != nil {
		return err
	}
	target := f.gatewayURL
	switch mode {
	case runner.ModeMock:
		o.KeepPlaceholders = true
		if f.gatewayURL == "" {
			store, err := replay.NewMockStore(src.events, match.Config{IgnoreParams: nil}, f.sel.separator, src.header.Tools)
			if err != nil {
				return err
			}
			mock, err := runner.StartMock(store, mockserver.Config{}, "127.0.0.1:0", logger)
			if err != nil {
				return err
			}
			defer mock.Close()
			gw, err := runner.StartGateway(ctx, mockGatewayConfig(cfg, src.events, f.sel.separator, store.Servers(), mock.URL), 30*time.Second, logger, runner.WithVersion(env.Version))
			if err != nil {
				return err
			}
			defer gw.Close()
			o.GatewayURL = gw.MCPURL
			o.BeforePass = func(int) { store.Reset() }
			target = "in-process gateway, recorded servers"
			if cfg != nil {
				target = "in-process gateway, " + cfg.Path
			}
		} else {
			o.GatewayURL = f.gatewayURL
		}
	case runner.ModeE2E:
		switch {
		case f.gatewayURL != "":
			o.GatewayURL = f.gatewayURL
		case cfg != nil:
			gw, err := runner.StartGateway(ctx, cfg, 30*time.Second, logger, runner.WithVersion(env.Version))
			if err != nil {
				return err
			}
			defer gw.Close()
			o.GatewayURL = gw.MCPURL
			target = "in-process gateway, " + cfg.Path
		default:
			return errors.New("replay e2e needs --config (run the gateway in-process) or --gateway-url")
		}
	case runner.ModeUpstream:
		o.Targets = map[string]config.Server{}
		if cfg != nil {
			for _, s := range cfg.Servers {
				o.Targets[s.Name] = s
			}
		}
		for _, t := range f.targets {
			s, err := runner.ParseTarget(t)
			if err != nil {
				return fmt.Errorf("--target: %w", err)
			}
			o.Targets[s.Name] = s
		}
		if len(o.Targets) == 0 {
			return errors.New("replay upstream needs --target server=… or --config")
		}
		o.Catalog = recordedCatalog(src, f.sel.separator)
		var names []string
		for n, s := range o.Targets {
			names = append(names, n+"="+s.URL+s.Command)
		}
		sort.Strings(names)
		target = strings.Join(names, " ")
	}
	if mode == runner.ModeUpstream || mode == runner.ModeE2E {
		// Both reach live backends.
		if o.ReadOnly == nil {
			o.ReadOnly = readOnlyHints(src, f.sel.separator)
		}
		if f.allowWrites && !f.yes {
			if err := confirmWrites(env, reqs, o.ReadOnly); err != nil {
				return err
			}
		}
	}
	if env.StderrIsTerminal {
		o.Progress = progressBar(env.Stderr)
	}
	started := time.Now()
	rep, err := runner.Run(ctx, reqs, o)
	if env.StderrIsTerminal {
		fmt.Fprint(env.Stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	rep.Selection, _ = json.Marshal(src.header.Selection)
	rep.ConfigHash = src.header.ConfigHash
	if len(rep.Against) > 0 && rep.Against[0].Name == "gateway" {
		rep.Against[0].Address = target
	}
	if err := writeReports(env, rep, f); err != nil {
		return err
	}
	if src.store != nil && !f.noStore {
		run := clickhouse.ReplayRun{ID: ulid.Make().String(), Started: started, Finished: time.Now(), Mode: string(mode), Target: target}
		sel, _ := json.Marshal(src.header.Selection)
		run.Selection = string(sel)
		results, err := redactResults(Results(rep.Cases), env.Environ)
		if err != nil {
			return err
		}
		if err := src.store.WriteReplayRun(ctx, run, results); err != nil {
			return fmt.Errorf("storing replay run: %w", err)
		}
		fmt.Fprintf(env.Stderr, "replay run %s stored\n", run.ID)
	}
	if n := rep.Regressions(); n > 0 {
		return &RegressionError{Count: n}
	}
	return nil
}

// closingWriter serialises writes to w and drops them once closed, so
// that goroutines draining a backend's stderr never write to a closed
// file or into the caller's writer after the run returned.
type closingWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (c *closingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *closingWriter) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// parseTokens reads --token values: TOKEN (for everyone) or principal=TOKEN.
// A base64 TOKEN may end in '=' padding: "dG9rZW4=" is a token, not
// principal "dG9rZW4" with an empty token.
func parseTokens(vs []string) (map[string]string, error) {
	if len(vs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range vs {
		k, tok, ok := strings.Cut(v, "=")
		if !ok || isPaddedBase64(v) {
			k, tok = "", v
		}
		if tok == "" {
			return nil, fmt.Errorf("--token %q: empty token", v)
		}
		out[k] = tok
	}
	return out, nil
}

// isPaddedBase64 reports whether v's only '=' are base64 padding: one or
// two at the end of a length that is a multiple of 4 ("dG9rZW4=").
func isPaddedBase64(v string) bool {
	body := strings.TrimRight(v, "=")
	pad := len(v) - len(body)
	return body != "" && pad >= 1 && pad <= 2 && len(v)%4 == 0 && !strings.Contains(body, "=")
}

// readOnlyHints is each backend's tools' readOnlyHint: from the recorded
// lists, else the bundle header's.
func readOnlyHints(src *source, separator string) map[string]map[string]bool {
	return replay.ReadOnlyTools(recordedCatalog(src, separator))
}

// recordedCatalog is each backend's recorded lists (replay.BackendLists),
// with the bundle header's tools/list for a backend that has none.
func recordedCatalog(src *source, separator string) map[string]map[string]json.RawMessage {
	lists := replay.BackendLists(src.events, separator)
	for server, res := range src.header.Tools {
		if lists[server] == nil {
			lists[server] = map[string]json.RawMessage{}
		}
		if lists[server]["tools/list"] == nil {
			lists[server]["tools/list"] = res
		}
	}
	return lists
}

// confirmWrites lists the write tools that would be called and asks. ro is
// the replay's own read-only map (runner.Options.ReadOnly), so that the
// question names exactly the tools the replay treats as writes.
func confirmWrites(env *Env, reqs []replay.Request, ro map[string]map[string]bool) error {
	counts := map[string]int{}
	for i := range reqs {
		up := reqs[i].FinalUpstream()
		if up == nil || up.Method != "tools/call" {
			continue
		}
		var p struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(up.Params, &p)
		if !ro[up.Server][p.Name] {
			counts[up.Server+"."+p.Name]++
		}
	}
	if len(counts) == 0 {
		return nil
	}
	var names []string
	for n, c := range counts {
		names = append(names, fmt.Sprintf("%s (%d)", n, c))
	}
	sort.Strings(names)
	fmt.Fprintf(env.Stderr, "--allow-writes will call tools that may change live systems: %s\nContinue? [y/N] ", strings.Join(names, ", "))
	line, _ := bufio.NewReader(env.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("aborted: write tools not confirmed (use --yes to skip the question)")
	}
	return nil
}

func progressBar(w io.Writer) func(done, total int) {
	var mu sync.Mutex
	return func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		const width = 30
		n := 0
		if total > 0 {
			n = done * width / total
		}
		fmt.Fprintf(w, "\r[%s%s] %d/%d", strings.Repeat("=", n), strings.Repeat(" ", width-n), done, total)
	}
}

func writeReports(env *Env, rep *report.Report, f *replayFlags) error {
	out := env.Stdout
	if f.output != "" {
		file, err := os.Create(f.output)
		if err != nil {
			return fmt.Errorf("creating report file: %w", err)
		}
		defer file.Close()
		out = file
	}
	var err error
	if f.format == "json" {
		err = report.WriteJSON(out, rep)
	} else {
		err = report.WriteText(out, rep)
	}
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if f.junit != "" {
		file, err := os.Create(f.junit)
		if err != nil {
			return fmt.Errorf("creating JUnit report: %w", err)
		}
		defer file.Close()
		if err := report.WriteJUnit(file, rep); err != nil {
			return fmt.Errorf("writing JUnit report %s: %w", f.junit, err)
		}
	}
	return nil
}

// Results converts report cases to the store's replay results. Noise cases
// are stored as identical; their removed differences are in the report only.
func Results(cases []report.Case) []clickhouse.ReplayResult {
	out := make([]clickhouse.ReplayResult, 0, len(cases))
	for _, c := range cases {
		r := clickhouse.ReplayResult{RequestID: c.RequestID, Tool: c.Tool(), Error: c.Reason,
			OriginalLatency: time.Duration(c.RecordedUs) * time.Microsecond, ReplayLatency: time.Duration(c.ReplayUs) * time.Microsecond}
		switch c.Status {
		case report.StatusChanged:
			r.Status = clickhouse.ReplayChanged
		case report.StatusFailed:
			r.Status = clickhouse.ReplayFailed
		case report.StatusSkipped:
			r.Status = clickhouse.ReplaySkipped
		default:
			r.Status = clickhouse.ReplayIdentical
		}
		// Noise paths ride along as changes of kind "noise", so that a
		// stored run still says what --baseline-twice set aside.
		chs := c.Diff.Changes
		for _, p := range c.NoisePaths {
			chs = append(chs[:len(chs):len(chs)], diff.Change{Path: p, Kind: kindNoise})
		}
		if len(chs) > 0 {
			b, _ := json.Marshal(chs)
			r.Diff = string(b)
		}
		out = append(out, r)
	}
	return out
}

// kindNoise marks a stored change that was noise (a path that differed
// between two baseline passes), not a regression.
const kindNoise diff.Kind = "noise"

// Cases converts stored replay results back into report cases (the
// inverse of Results), so that a stored run is summarised with
// replay/report as the terminal report is. Noise cases were stored as
// identical with their noise paths; a stored identical result with other
// changes left had only reorderings.
func Cases(results []clickhouse.ReplayResult) []report.Case {
	out := make([]report.Case, 0, len(results))
	for _, r := range results {
		c := report.Case{RequestID: r.RequestID, Target: r.Tool, Reason: r.Error,
			RecordedUs: r.OriginalLatency.Microseconds(), ReplayUs: r.ReplayLatency.Microseconds()}
		switch r.Status {
		case clickhouse.ReplayChanged:
			c.Status = report.StatusChanged
		case clickhouse.ReplayFailed:
			c.Status = report.StatusFailed
		case clickhouse.ReplaySkipped:
			c.Status = report.StatusSkipped
		default:
			c.Status = report.StatusIdentical
		}
		if r.Diff != "" {
			var chs []diff.Change
			if err := json.Unmarshal([]byte(r.Diff), &chs); err != nil && c.Reason == "" {
				c.Reason = "stored diff unreadable: " + err.Error()
			}
			for _, ch := range chs {
				if ch.Kind == kindNoise {
					c.NoiseChanges++
					c.NoisePaths = append(c.NoisePaths, ch.Path)
					continue
				}
				c.Diff.Changes = append(c.Diff.Changes, ch)
			}
		}
		if c.Status == report.StatusIdentical {
			switch {
			case len(c.Diff.Changes) > 0:
				c.Status = report.StatusReordered
			case c.NoiseChanges > 0:
				c.Status = report.StatusNoise
			}
		}
		out = append(out, c)
	}
	return out
}

// redactResults redacts what a replay stores beside the recording: a live
// backend's answer can carry secrets the recording never had (and so no
// filled-in secret masks), and they must not reach ClickHouse. The
// default rules apply, keyed by MCPTRAIL_REDACTION_KEY when it is set.
func redactResults(rs []clickhouse.ReplayResult, environ []string) ([]clickhouse.ReplayResult, error) {
	var key []byte
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, config.DefaultHMACKeyEnv+"="); ok {
			key = []byte(v)
		}
	}
	r, err := redact.New(redact.Config{}, key)
	if err != nil {
		return nil, fmt.Errorf("redacting replay results: %w", err)
	}
	for i := range rs {
		rs[i].Diff, _ = r.String(rs[i].Diff)
		rs[i].Error, _ = r.String(rs[i].Error)
		rs[i].Tool, _ = r.String(rs[i].Tool)
	}
	return rs, nil
}

func newExportCmd(env *Env) *cobra.Command {
	var sel selectionFlags
	var out string
	cmd := &cobra.Command{
		Use:   "export [selection flags] -o incident.mcptrail",
		Short: "Write the selected requests to a bundle file for replay elsewhere",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("export needs -o FILE")
			}
			src, err := sel.load(cmd.Context(), env)
			if err != nil {
				return err
			}
			defer src.close()
			if len(src.events) == 0 {
				return errors.New("the selection holds no recorded events")
			}
			if src.header.Tools == nil {
				src.header.Tools = toolsLists(src.events, sel.separator)
			}
			f, err := os.Create(out)
			if err != nil {
				return fmt.Errorf("creating bundle: %w", err)
			}
			if err := bundle.Write(f, &bundle.Bundle{Header: src.header, Events: src.events}); err != nil {
				f.Close()
				return fmt.Errorf("writing bundle %s: %w", out, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("writing bundle %s: %w", out, err)
			}
			fmt.Fprintf(env.Stderr, "wrote %d events of %d requests to %s\n", len(src.events), len(replay.Requests(src.events)), out)
			return nil
		},
	}
	sel.register(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "bundle file to write")
	return cmd
}

func newMockCmd(env *Env) *cobra.Command {
	var sel selectionFlags
	var listen, miss string
	cmd := &cobra.Command{
		Use:   "mock [selection flags] --listen :PORT",
		Short: "Serve the recorded backends of a selection (each at /{server}/mcp)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			src, err := sel.load(ctx, env)
			if err != nil {
				return err
			}
			src.close()
			store, err := replay.NewMockStore(src.events, match.Config{}, sel.separator, src.header.Tools)
			if err != nil {
				return err
			}
			mock, err := runner.StartMock(store, mockserver.Config{Miss: mockserver.MissPolicy(miss)}, listen, env.Logger)
			if err != nil {
				return err
			}
			defer mock.Close()
			for _, s := range store.Servers() {
				fmt.Fprintf(env.Stderr, "serving recorded %s at %s/%s/mcp\n", s, mock.URL, s)
			}
			<-ctx.Done()
			st := mock.Server.Stats()
			fmt.Fprintf(env.Stderr, "mock served %d requests: %d from the recording, %d misses\n", st.Requests, st.Hits, st.Misses)
			return nil
		},
	}
	sel.register(cmd)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7070", "address to serve on")
	cmd.Flags().StringVar(&miss, "miss", "error", "what a request without a recorded answer gets: error")
	return cmd
}

// mockGatewayConfig is the config of the in-process gateway of `replay
// mock`: base (or, without one, the recorded servers in catalog order,
// mounted without a namespace when the recording shows they were) with
// every backend pointing at the mock, and the recorded timeouts.
func mockGatewayConfig(base *config.Config, events []recorder.Event, separator string, servers []string, mockURL string) *config.Config {
	cfg := runner.MockConfig(base, replay.CatalogOrder(events, separator, servers), mockURL)
	if base == nil {
		cfg = runner.WithNoNamespace(cfg, replay.RecordedNoNamespace(events, separator))
	}
	return runner.WithTimeouts(cfg, runner.RecordedTimeouts(events))
}
