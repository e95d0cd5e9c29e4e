// Package cli implements mcptrail's replay commands: `replay mock`,
// `replay upstream`, `replay e2e`, `export` and `mock`. cmd/mcptrail only
// registers them and maps a *RegressionError to exit code 1.
//
// Traffic is selected from ClickHouse (--request-id, --session, --trace,
// --since/--until, --server, --tool, --principal, --failed) or read from a
// bundle file (--bundle). See replay/README.md for the modes.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/bundle"
)

// Store is what the commands need of the recording store
// (*clickhouse.Store implements it).
type Store interface {
	Select(ctx context.Context, sel clickhouse.Selection) ([]recorder.Event, error)
	WriteReplayRun(ctx context.Context, run clickhouse.ReplayRun, results []clickhouse.ReplayResult) error
}

var _ Store = (*clickhouse.Store)(nil)

// Env is what the commands use of the outside world; tests replace it.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Environ is the environment (os.Environ form), for MCPTRAIL_SECRET_*.
	Environ []string
	Logger  *slog.Logger
	// OpenStore opens the recording store for a ClickHouse address and
	// database; nil uses clickhouse.Open.
	OpenStore func(ctx context.Context, cfg clickhouse.Config) (Store, io.Closer, error)
	// LocalAddr finds the native address of the local ClickHouse that
	// `mcptrail serve` runs in a directory; used when no address is given.
	LocalAddr func(dir string) (string, error)
	// LocalPassword reads the password of that local ClickHouse's user
	// (it has one when `mcptrail serve` supervises it); nil or an error
	// means none.
	LocalPassword func(dir string) (string, error)
	// StderrIsTerminal enables the progress bar.
	StderrIsTerminal bool
	// Version names this build in bundles and is the replay gateway's
	// serverInfo version.
	Version string
}

// DefaultEnv is the process's environment.
func DefaultEnv(version string) *Env {
	fi, err := os.Stderr.Stat()
	return &Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ(),
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		StderrIsTerminal: err == nil && fi.Mode()&os.ModeCharDevice != 0,
		Version:          version,
	}
}

// RegressionError is returned when a replay found regressions (changed or
// failed requests); the report has been written. main maps it to exit 1.
type RegressionError struct{ Count int }

func (e *RegressionError) Error() string {
	return fmt.Sprintf("replay found %d regression(s)", e.Count)
}

// Commands returns the replay command tree and the export and mock commands.
func Commands(env *Env) []*cobra.Command {
	rep := &cobra.Command{
		Use:   "replay",
		Short: "Replay recorded traffic hop by hop and report differences",
		Long: `Replay recorded MCP traffic against one hop at a time:

  mock      recorded client requests → this build's gateway → recorded backend answers
  upstream  recorded upstream requests → live backends (read-only tools unless --allow-writes)
  e2e       recorded client requests → a full gateway with live backends

Exit code 1 when anything regressed.`,
	}
	rep.AddCommand(newReplayCmd(env, "mock"), newReplayCmd(env, "upstream"), newReplayCmd(env, "e2e"))
	return []*cobra.Command{rep, newExportCmd(env), newMockCmd(env), newPolicyCmd(env)}
}

// selectionFlags are shared by every command that reads recorded traffic.
type selectionFlags struct {
	requestIDs   []string
	session      string
	trace        string
	since, until string
	server, tool string
	principal    string
	failed       bool
	limit        int
	bundle       string
	clickhouse   []string
	database     string
	storeConfig  string
	separator    string
}

func (s *selectionFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&s.requestIDs, "request-id", nil, "request id(s) to select (repeat or comma-separate)")
	f.StringVar(&s.session, "session", "", "select every request of this MCP session")
	f.StringVar(&s.trace, "trace", "", "select every request of this W3C trace id")
	f.StringVar(&s.since, "since", "", "select requests at or after this time (RFC 3339, or a duration ago such as 1h)")
	f.StringVar(&s.until, "until", "", "select requests before this time (RFC 3339, or a duration ago)")
	f.StringVar(&s.server, "server", "", "only requests routed to this backend")
	f.StringVar(&s.tool, "tool", "", "only requests whose target matches this glob, e.g. crm.*")
	f.StringVar(&s.principal, "principal", "", "only requests of this principal")
	f.BoolVar(&s.failed, "failed", false, "only requests that failed")
	f.IntVar(&s.limit, "limit", 1000, "at most this many requests from ClickHouse")
	f.StringVar(&s.bundle, "bundle", "", "read the traffic from this bundle file instead of ClickHouse")
	f.StringSliceVar(&s.clickhouse, "clickhouse", nil, "ClickHouse native address(es) host:port; default recorder.clickhouse.addr of --store-config")
	f.StringVar(&s.database, "database", "", "ClickHouse database; default recorder.clickhouse.database or mcptrail")
	f.StringVar(&s.storeConfig, "store-config", "", "gateway config whose recorder.clickhouse section names the store")
	f.StringVar(&s.separator, "separator", ".", "namespace separator the traffic was recorded with")
}

func (s *selectionFlags) fromClickHouse() bool { return s.bundle == "" }

// selection turns the flags into a store selection.
func (s *selectionFlags) selection(now time.Time) (clickhouse.Selection, error) {
	sel := clickhouse.Selection{RequestIDs: s.requestIDs, SessionID: s.session, TraceID: s.trace,
		Server: s.server, Tool: s.tool, Principal: s.principal, FailedOnly: s.failed, Limit: s.limit}
	var err error
	if sel.Since, err = parseWhen(s.since, now); err != nil {
		return sel, fmt.Errorf("--since: %w", err)
	}
	if sel.Until, err = parseWhen(s.until, now); err != nil {
		return sel, fmt.Errorf("--until: %w", err)
	}
	if len(sel.RequestIDs) == 0 && sel.SessionID == "" && sel.TraceID == "" && sel.Since.IsZero() {
		return sel, errors.New("select traffic with --request-id, --session, --trace or --since (or read a --bundle)")
	}
	return sel, nil
}

// parseWhen accepts RFC 3339 or a duration before now ("90m").
func parseWhen(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", v)
	}
	return now.Add(-d), nil
}

// source is loaded traffic and where it came from.
type source struct {
	events []recorder.Event
	header bundle.Header
	store  Store
	closer io.Closer
}

func (s *source) close() {
	if s.closer != nil {
		_ = s.closer.Close()
	}
}

// openStore connects to ClickHouse as the flags say.
func (s *selectionFlags) openStore(ctx context.Context, env *Env) (Store, io.Closer, error) {
	cfg := clickhouse.Config{Addr: s.clickhouse, Database: s.database}
	localDir := config.DefaultLocalDir
	source, hint := "--clickhouse", "check that ClickHouse runs there, or pass --clickhouse host:port"
	if s.storeConfig != "" {
		gc, err := config.Load(s.storeConfig)
		if err != nil {
			return nil, nil, fmt.Errorf("loading --store-config: %w", err)
		}
		ch := gc.Recorder.ClickHouse
		if len(cfg.Addr) == 0 {
			cfg.Addr = ch.Addr
			source = s.storeConfig + ": recorder.clickhouse.addr"
		}
		if cfg.Database == "" {
			cfg.Database = ch.Database
		}
		cfg.Username, cfg.Password, cfg.Cluster = ch.Username, ch.Password, ch.Cluster
		if ch.LocalDir != "" {
			localDir = ch.LocalDir
		}
	}
	if len(cfg.Addr) == 0 && env.LocalAddr != nil {
		// The local ClickHouse of a running `mcptrail serve`.
		a, err := env.LocalAddr(localDir)
		if err != nil {
			return nil, nil, fmt.Errorf("finding the local ClickHouse of `mcptrail serve`: %w; start the gateway with `mcptrail serve` (it runs ClickHouse in that directory), or pass --clickhouse host:port or --store-config, or read a --bundle", err)
		}
		if env.LocalPassword != nil {
			if pw, err := env.LocalPassword(localDir); err == nil {
				cfg.Username, cfg.Password = "default", pw
			}
		}
		cfg.Addr = []string{a}
		source = "the local ClickHouse in " + localDir
		hint = "it runs only while `mcptrail serve` runs: start the gateway (mcptrail serve --config ...), or pass --clickhouse host:port"
	}
	if len(cfg.Addr) == 0 {
		return nil, nil, errors.New("no ClickHouse address: give --clickhouse host:port or --store-config, run it next to a running `mcptrail serve` with a local ClickHouse, or read a --bundle")
	}
	if cfg.Database == "" {
		cfg.Database = config.DefaultDatabase
	}
	if env.OpenStore != nil {
		return env.OpenStore(ctx, cfg)
	}
	cfg.DialTimeout = 3 * time.Second // a command-line user waits for an answer
	st, err := clickhouse.Open(ctx, cfg, env.Logger)
	if err != nil {
		return nil, nil, fmt.Errorf("ClickHouse at %s (from %s) is unreachable: %w\n  %s", strings.Join(cfg.Addr, ","), source, err, hint)
	}
	return st, st, nil
}

// load reads the selected traffic. From ClickHouse the selection is widened
// by the setup requests of its sessions (initialize and the lists), which a
// replay needs to open sessions and to rebuild the backends' catalogs.
func (s *selectionFlags) load(ctx context.Context, env *Env) (*source, error) {
	if !s.fromClickHouse() {
		if q := s.query(); q != "" {
			// The selection flags filter ClickHouse; silently replaying the
			// whole bundle instead would answer a different question.
			return nil, fmt.Errorf("--bundle is replayed whole: drop the selection flags (%s), or select from ClickHouse without --bundle", q)
		}
		f, err := os.Open(s.bundle)
		if err != nil {
			return nil, fmt.Errorf("opening bundle: %w", err)
		}
		defer f.Close()
		b, err := bundle.Read(f)
		if err != nil {
			return nil, fmt.Errorf("reading bundle %s: %w", s.bundle, err)
		}
		src := &source{events: b.Events, header: b.Header}
		if len(s.clickhouse) > 0 || s.storeConfig != "" {
			if src.store, src.closer, err = s.openStore(ctx, env); err != nil {
				return nil, err
			}
		}
		return src, nil
	}
	sel, err := s.selection(time.Now())
	if err != nil {
		return nil, err
	}
	st, closer, err := s.openStore(ctx, env)
	if err != nil {
		return nil, err
	}
	src := &source{store: st, closer: closer}
	events, err := st.Select(ctx, sel)
	if err != nil {
		src.close()
		return nil, fmt.Errorf("selecting traffic: %w", err)
	}
	if events, err = withSessionSetup(ctx, st, events); err != nil {
		src.close()
		return nil, err
	}
	src.events = events
	src.header = bundle.Header{
		Generator: "mcptrail " + env.Version,
		Selection: bundle.Selection{From: sel.Since, To: sel.Until, RequestIDs: sel.RequestIDs, Query: s.query()},
	}
	for _, e := range events {
		if src.header.ConfigHash == "" {
			src.header.ConfigHash = e.ConfigHash
		}
		if e.SessionID != "" && !slices.Contains(src.header.Selection.SessionIDs, e.SessionID) {
			src.header.Selection.SessionIDs = append(src.header.Selection.SessionIDs, e.SessionID)
		}
		if e.Server != "" && !slices.Contains(src.header.Selection.Servers, e.Server) {
			src.header.Selection.Servers = append(src.header.Selection.Servers, e.Server)
		}
	}
	src.header.Tools = toolsLists(events, s.separator)
	return src, nil
}

// toolsLists is the tools/list answer of each backend, for a bundle header.
func toolsLists(events []recorder.Event, sep string) map[string]json.RawMessage {
	out := replay.ToolsLists(events)
	for server, byMethod := range replay.BackendLists(events, sep) {
		if _, ok := out[server]; !ok && byMethod["tools/list"] != nil {
			out[server] = byMethod["tools/list"]
		}
	}
	return out
}

func (s *selectionFlags) query() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("request-id", strings.Join(s.requestIDs, ","))
	add("session", s.session)
	add("trace", s.trace)
	add("since", s.since)
	add("until", s.until)
	add("server", s.server)
	add("tool", s.tool)
	add("principal", s.principal)
	if s.failed {
		add("failed", "true")
	}
	return strings.Join(parts, " ")
}

var setupMethods = []string{"initialize", "tools/list", "prompts/list", "resources/list", "resources/templates/list"}

// withSessionSetup adds the initialize and list requests of every session
// in events that the selection left out.
func withSessionSetup(ctx context.Context, st Store, events []recorder.Event) ([]recorder.Event, error) {
	have := map[string]bool{}
	var sessions []string
	for _, e := range events {
		have[eventKey(&e)] = true
		if e.SessionID != "" && !slices.Contains(sessions, e.SessionID) {
			sessions = append(sessions, e.SessionID)
		}
	}
	for _, sid := range sessions {
		more, err := st.Select(ctx, clickhouse.Selection{SessionID: sid})
		if err != nil {
			return nil, fmt.Errorf("selecting the setup requests of session %s: %w", sid, err)
		}
		for _, e := range more {
			if k := eventKey(&e); !have[k] && slices.Contains(setupMethods, e.Method) {
				have[k] = true
				events = append(events, e)
			}
		}
	}
	return events, nil
}

// eventKey identifies an event: its id, or its request, hop and sequence
// number when it has none yet (the id is assigned by the recorder pipeline).
func eventKey(e *recorder.Event) string {
	if e.EventID != "" {
		return e.EventID
	}
	return fmt.Sprintf("%s/%d/%d", e.RequestID, e.Hop, e.Seq)
}
