package main

// The recorder's command-line surface: trace, calls, audit, status and
// migrate. Each command resolves where the recordings are (storeFlags),
// runs one query and renders it; the renderers are pure functions of their
// input so that they are tested with golden files.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/recfmt"
	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

// addRecorderCommands adds the commands that read (or prepare) the
// recordings: trace, calls, audit, status and migrate.
func addRecorderCommands(root *cobra.Command) {
	root.AddCommand(newTraceCmd(), newCallsCmd(), newAuditCmd(), newStatusCmd(), newMigrateCmd(), newRecorderCmd())
}

// storeFlags say where the recordings are. Precedence: --clickhouse, then
// recorder.clickhouse.addr of the config file, then the local ClickHouse
// that `mcptrail serve` runs in recorder.clickhouse.local_dir.
type storeFlags struct {
	configPath string
	configSet  bool
	addr       string
	database   string
}

func (f *storeFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVarP(&f.configPath, "config", "c", "mcptrail.yaml", "gateway config file; its recorder.clickhouse section says where recordings are")
	fs.StringVar(&f.addr, "clickhouse", "", "ClickHouse native address(es), host:port[,host:port] (default: from --config, else the local server of mcptrail serve)")
	fs.StringVar(&f.database, "database", "", "ClickHouse database (default: from --config, else mcptrail)")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) { f.configSet = cmd.Flags().Changed("config") }
}

// loadConfig returns the config file, or nil when the default file does
// not exist. An explicitly named file must load.
func (f *storeFlags) loadConfig() (*config.Config, error) {
	if !f.configSet {
		if _, err := os.Stat(f.configPath); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	return config.Load(f.configPath)
}

// separator is the namespace_separator of the config file, which joins a
// server's and a tool's name as clients see them; the default when there is
// no config (or it does not load: the command that needs it says so).
func (f *storeFlags) separator() string {
	if cfg, err := f.loadConfig(); err == nil && cfg != nil && cfg.NamespaceSeparator != "" {
		return cfg.NamespaceSeparator
	}
	return config.DefaultNamespaceSeparator
}

// target is a resolved ClickHouse location with a description of where it
// came from, for error messages.
type target struct {
	cfg    clickhouse.Config
	source string
	hint   string // how to make it reachable
}

// resolve works out the ClickHouse address and database.
func (f *storeFlags) resolve() (target, error) {
	cfg, err := f.loadConfig()
	if err != nil {
		return target{}, err
	}
	var t target
	switch {
	case f.addr != "":
		t.cfg = clickhouse.DefaultConfig()
		if cfg != nil {
			t.cfg = clickhouseConfig(cfg, "")
		}
		t.cfg.Addr = splitAddrs(f.addr)
		t.source = "--clickhouse"
		t.hint = "check that ClickHouse runs there (for a throwaway server: scripts/clickhouse-server.sh), or let `mcptrail serve` run a local one and drop --clickhouse"
	case cfg != nil && !cfg.Recorder.ClickHouse.Local():
		t.cfg = clickhouseConfig(cfg, "")
		t.source = cfg.Path + ": recorder.clickhouse.addr"
		t.hint = "check that ClickHouse runs there, or pass --clickhouse host:port"
	default:
		dir := config.DefaultLocalDir
		if cfg != nil {
			t.cfg = clickhouseConfig(cfg, "")
			dir = cfg.Recorder.ClickHouse.LocalDir
		} else {
			t.cfg = clickhouse.DefaultConfig()
		}
		addr, err := localAddr(dir)
		if err != nil {
			return target{}, fmt.Errorf("finding the local ClickHouse of `mcptrail serve`: %w; start the gateway with `mcptrail serve` (it runs ClickHouse in that directory), or pass --clickhouse host:port or --config with recorder.clickhouse.addr", err)
		}
		t.cfg.Addr = []string{addr}
		// Its only user has a generated password, kept next to its data.
		pw, err := chlocal.ReadPassword(dir)
		switch {
		case err == nil:
			t.cfg.Username, t.cfg.Password = "default", pw
		case !errors.Is(err, fs.ErrNotExist):
			return target{}, fmt.Errorf("the local ClickHouse of `mcptrail serve` needs its password: %w (run as the user that runs the gateway)", err)
		}
		t.source = "the local ClickHouse in " + dir
		t.hint = "it runs only while `mcptrail serve` runs: start the gateway (mcptrail serve --config ...), or pass --clickhouse host:port"
	}
	if f.database != "" {
		t.cfg.Database = f.database
	}
	if t.cfg.Database == "" {
		t.cfg.Database = config.DefaultDatabase
	}
	return t, nil
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			if _, _, err := net.SplitHostPort(a); err != nil {
				a = net.JoinHostPort(a, "9000")
			}
			out = append(out, a)
		}
	}
	return out
}

var tcpPortRe = regexp.MustCompile(`<tcp_port>\s*(\d+)\s*</tcp_port>`)

// localAddr reads the native port of the local server from the config.xml
// that recorder/chlocal rewrites in its directory on every start (it picks
// free ports, so the address is only known there).
func localAddr(dir string) (string, error) {
	p := filepath.Join(dir, "config.xml")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	m := tcpPortRe.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("reading %s: no <tcp_port>", p)
	}
	return net.JoinHostPort("127.0.0.1", string(m[1])), nil
}

// open connects to the resolved ClickHouse with a short dial timeout: a
// command-line user waits for an answer.
func (f *storeFlags) open(ctx context.Context) (*clickhouse.Store, target, error) {
	t, err := f.resolve()
	if err != nil {
		return nil, t, err
	}
	t.cfg.DialTimeout = 3 * time.Second
	st, err := clickhouse.Open(ctx, t.cfg, nil)
	if err != nil {
		return nil, t, fmt.Errorf("ClickHouse at %s (from %s) is unreachable: %w\n  %s", strings.Join(t.cfg.Addr, ","), t.source, err, t.hint)
	}
	return st, t, nil
}

// explainQueryErr adds the fix to errors whose cause is a missing schema.
func explainQueryErr(err error, t target) error {
	if err != nil && (strings.Contains(err.Error(), "doesn't exist") || strings.Contains(err.Error(), "does not exist")) {
		return fmt.Errorf("%w\n  database %s at %s has no mcptrail tables: run `mcptrail migrate --clickhouse %s --database %s` (serve migrates at start)",
			err, t.cfg.Database, strings.Join(t.cfg.Addr, ","), strings.Join(t.cfg.Addr, ","), t.cfg.Database)
	}
	return err
}

// ---- time ranges ----

// parseWhen parses a --since/--until value (recfmt.ParseWhen).
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	return recfmt.ParseWhen("--"+flag, s, now)
}

// parseWindow parses --since and --until (recfmt.ParseWindow).
func parseWindow(since, until string, now time.Time) (time.Time, time.Time, error) {
	return recfmt.ParseWindow("--since", since, "--until", until, now)
}

var (
	fmtDur      = recfmt.Duration
	fmtBytes    = recfmt.Bytes
	hopDetail   = recfmt.HopDetail
	outcomeText = recfmt.OutcomeText
)

// ---- trace ----

func newTraceCmd() *cobra.Command {
	var (
		sf       storeFlags
		asJSON   bool
		payloads bool
	)
	cmd := &cobra.Command{
		Use:   "trace <request-id|trace-id|session-id>",
		Short: "Show every hop of one call: timing, outcome, routing and auth decisions, redacted payloads",
		Example: `  mcptrail trace 01JD6T3Q8Z9X4K2M5N7P0R1S2T       # the X-Request-Id of an answer
  mcptrail trace 4bf92f3577b34da6a3ce929d0e0e4736 --payloads
  mcptrail trace 01JD6T3Q8Z9X4K2M5N7P0R1S2T --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, t, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			var opts []clickhouse.ReadOption
			opts = append(opts, clickhouse.WithPayloads())
			evs, err := st.Trace(ctx, strings.TrimSpace(args[0]), opts...)
			if errors.Is(err, clickhouse.ErrNotFound) {
				return fmt.Errorf("no recorded request, trace or session %q in database %s at %s (events reach ClickHouse about one recorder.flush_interval after the call; find ids with `mcptrail calls --since 1h`)",
					args[0], t.cfg.Database, strings.Join(t.cfg.Addr, ","))
			}
			if err != nil {
				return explainQueryErr(err, t)
			}
			if asJSON {
				return writeTraceJSON(cmd.OutOrStdout(), evs)
			}
			return renderTrace(cmd.OutOrStdout(), evs, traceOptions{FullPayloads: payloads})
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the hops as a JSON array")
	cmd.Flags().BoolVar(&payloads, "payloads", false, "print the full redacted request and response bodies instead of a preview")
	return cmd
}

type traceOptions struct {
	// FullPayloads prints whole bodies (indented) instead of one-line previews.
	FullPayloads bool
	// BarWidth is the width of the timeline bar in cells. Default 24.
	BarWidth int
	// PreviewBytes caps a preview line. Default 96.
	PreviewBytes int
}

// renderTrace prints each request of evs (ordered as Store.Trace returns
// them) as a header and one line per hop with a duration bar.
func renderTrace(w io.Writer, evs []recorder.Event, o traceOptions) error {
	if o.BarWidth <= 0 {
		o.BarWidth = 24
	}
	if o.PreviewBytes <= 0 {
		o.PreviewBytes = 96
	}
	ew := &errWriter{w: w}
	for i := 0; i < len(evs); {
		j := i
		for j < len(evs) && evs[j].RequestID == evs[i].RequestID {
			j++
		}
		if i > 0 {
			ew.printf("\n")
		}
		renderRequest(ew, evs[i:j], o)
		i = j
	}
	return ew.err
}

func renderRequest(w *errWriter, evs []recorder.Event, o traceOptions) {
	start, end := evs[0].TimeNs, evs[0].TimeNs
	var resp *recorder.Event
	for i := range evs {
		e := &evs[i]
		start = min(start, e.TimeNs)
		end = max(end, e.TimeNs+e.DurationUs*1000)
		if e.Hop == recorder.HopResponse {
			resp = e
		}
	}
	first := evs[0]
	title := first.Method
	if first.Target != "" {
		title += " " + first.Target
	}
	w.printf("request %s  %s\n", first.RequestID, title)
	w.printf("  at %s  total %s", time.Unix(0, start).UTC().Format("2006-01-02 15:04:05.000 UTC"), fmtDur(time.Duration(end-start)))
	if resp != nil {
		w.printf("  outcome %s", outcomeText(resp))
	} else {
		w.printf("  outcome (no response hop recorded)")
	}
	w.printf("\n")
	var meta []string
	add := func(k, v string) {
		if v != "" {
			meta = append(meta, k+" "+v)
		}
	}
	add("principal", first.Principal)
	add("session", first.SessionID)
	add("trace", first.TraceID)
	if first.ClientName != "" {
		add("client", strings.TrimSpace(first.ClientName+" "+first.ClientVersion))
	}
	add("protocol", first.ProtocolVersion)
	add("gateway", strings.TrimSpace(first.GatewayInstance+" "+first.GatewayVersion))
	if len(meta) > 0 {
		w.printf("  %s\n", strings.Join(meta, "  "))
	}
	w.printf("\n  %-3s %-14s %10s %10s  %-15s %-12s %-*s  %s\n", "#", "HOP", "START", "DURATION", "OUTCOME", "SERVER", o.BarWidth+2, "TIMELINE", "DETAIL")
	span := end - start
	for i := range evs {
		e := &evs[i]
		off := e.TimeNs - start
		w.printf("  %-3d %-14s %10s %10s  %-15s %-12s %s  %s\n", e.Seq, e.Hop.String(), "+"+fmtDur(time.Duration(off)), fmtDur(time.Duration(e.DurationUs)*time.Microsecond),
			e.Outcome.String(), dash(e.Backend), bar(off, e.DurationUs*1000, span, o.BarWidth), hopDetail(e))
		if e.ErrorMessage != "" {
			w.printf("        error: %s\n", e.ErrorMessage)
		}
		for _, p := range []struct {
			name string
			body []byte
		}{{"params", e.Params}, {"result", e.Result}} {
			if len(p.body) == 0 {
				continue
			}
			if o.FullPayloads {
				w.printf("        %s:\n%s\n", p.name, indentBody(p.body, "          "))
			} else {
				w.printf("        %s: %s\n", p.name, preview(p.body, o.PreviewBytes))
			}
		}
		if e.PayloadTruncated && (len(e.Params) > 0 || len(e.Result) > 0) {
			w.printf("        (payloads truncated at recorder.payloads.max_bytes)\n")
		}
	}
}

// bar draws the hop's extent within the request's span: '·' before and
// after, '█' for the hop (at least one cell, '│' for instant hops).
func bar(off, dur, span int64, width int) string {
	if span <= 0 {
		span = 1
	}
	from := int(off * int64(width) / span)
	to := int((off + dur) * int64(width) / span)
	from = min(max(from, 0), width-1)
	to = min(max(to, from+1), width)
	fill := "█"
	if dur == 0 {
		fill = "│"
	}
	return "|" + strings.Repeat("·", from) + strings.Repeat(fill, to-from) + strings.Repeat("·", width-to) + "|"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// preview is the body on one line, cut at max bytes on a rune boundary.
func preview(b []byte, maxBytes int) string {
	s := string(b)
	var buf bytes.Buffer
	if json.Valid(b) {
		if err := json.Compact(&buf, b); err == nil {
			s = buf.String()
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxBytes {
		return s
	}
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%s)", fmtBytes(uint32(len(b))))
}

func indentBody(b []byte, prefix string) string {
	var out strings.Builder
	if json.Valid(b) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, prefix, "  "); err == nil {
			return prefix + buf.String()
		}
	}
	for i, line := range strings.Split(string(b), "\n") {
		if i > 0 {
			out.WriteByte('\n')
		}
		out.WriteString(prefix + line)
	}
	return out.String()
}

// traceHopJSON is the --json shape of one hop: the event's one JSON shape
// (recorder.EventJSON, shared with replay bundles) with its payloads inline
// as JSON when they are JSON, else as strings.
type traceHopJSON struct {
	recorder.EventJSON
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

func rawOrString(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

func writeTraceJSON(w io.Writer, evs []recorder.Event) error {
	out := make([]traceHopJSON, len(evs))
	for i := range evs {
		e := &evs[i]
		out[i] = traceHopJSON{EventJSON: recorder.NewEventJSON(e), Params: rawOrString(e.Params), Result: rawOrString(e.Result)}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing trace JSON: %w", err)
	}
	return nil
}

// ---- calls ----

func newCallsCmd() *cobra.Command {
	var (
		sf           storeFlags
		q            clickhouse.CallsQuery
		since, until string
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "calls",
		Short: "List recent calls with their request ids, newest first",
		Example: `  mcptrail calls --since 1h --failed
  mcptrail calls --since 1d --server crm --tool 'crm.*' --principal alice --limit 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if q.Since, q.Until, err = parseWindow(since, until, time.Now()); err != nil {
				return err
			}
			if q.Limit < 0 {
				return fmt.Errorf("--limit %d: want a positive number", q.Limit)
			}
			ctx := cmd.Context()
			st, t, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			calls, err := st.Calls(ctx, q)
			if err != nil {
				return explainQueryErr(err, t)
			}
			if asJSON {
				return writeCallsJSON(cmd.OutOrStdout(), calls)
			}
			return renderCalls(cmd.OutOrStdout(), calls)
		},
	}
	sf.register(cmd)
	fs := cmd.Flags()
	fs.StringVar(&since, "since", "1h", "start of the window: a duration back from now (30m, 1h, 7d) or a time")
	fs.StringVar(&until, "until", "", "end of the window (exclusive), same forms; default now")
	fs.BoolVar(&q.FailedOnly, "failed", false, "only calls whose outcome is not ok")
	fs.StringVar(&q.Server, "server", "", "only calls routed to this server")
	fs.StringVar(&q.Tool, "tool", "", "only calls whose target matches this glob (crm.*)")
	fs.StringVar(&q.Principal, "principal", "", "only calls by this principal")
	fs.IntVar(&q.Limit, "limit", 100, "at most this many calls")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

// renderCalls prints calls as an aligned table.
func renderCalls(w io.Writer, calls []clickhouse.Call) error {
	ew := &errWriter{w: w}
	if len(calls) == 0 {
		ew.printf("no calls in this window\n")
		return ew.err
	}
	rows := [][]string{{"TIME (UTC)", "REQUEST ID", "PRINCIPAL", "METHOD", "TARGET", "OUTCOME", "DURATION", "ERROR"}}
	for _, c := range calls {
		errText := c.ErrorMessage
		if c.ErrorCode != 0 {
			errText = strings.TrimSpace(fmt.Sprintf("%d %s", c.ErrorCode, errText))
		}
		rows = append(rows, []string{c.Time.UTC().Format("2006-01-02 15:04:05.000"), c.RequestID, dash(c.Principal), c.Method, dash(c.Target),
			c.Outcome.String(), fmtDur(c.Duration), truncate(errText, 60)})
	}
	writeTable(ew, rows)
	return ew.err
}

func writeCallsJSON(w io.Writer, calls []clickhouse.Call) error {
	enc := json.NewEncoder(w)
	for _, c := range calls {
		if err := enc.Encode(recfmt.NewCallJSON(c)); err != nil {
			return fmt.Errorf("writing calls: %w", err)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeTable pads columns to their widest cell (in runes).
func writeTable(w *errWriter, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		w.printf("%s\n", strings.TrimRight(b.String(), " "))
	}
}

// ---- audit ----

func newAuditCmd() *cobra.Command {
	var (
		sf                   storeFlags
		q                    clickhouse.AuditQuery
		since, until, format string
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Export the audit trail (who called what, allowed or denied), streaming, for compliance",
		Example: `  mcptrail audit --principal alice --since 90d --format csv > alice.csv
  mcptrail audit --principal ci-bot --since 30d --tool 'crm.*' --decision denied
  mcptrail audit --role admin --since 7d --format jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if q.Since, q.Until, err = parseWindow(since, until, time.Now()); err != nil {
				return err
			}
			switch q.Decision {
			case "", "allowed", "denied", "none":
			default:
				return fmt.Errorf("--decision %q: want allowed, denied or none", q.Decision)
			}
			out, err := newAuditWriter(cmd.OutOrStdout(), format)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, t, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Audit(ctx, q, out.write); err != nil {
				return explainQueryErr(err, t)
			}
			return out.close()
		},
	}
	sf.register(cmd)
	fs := cmd.Flags()
	fs.StringVar(&q.Principal, "principal", "", "only this principal (default: everyone)")
	fs.StringVar(&since, "since", "30d", "start of the window: a duration back from now (90d) or a time (2026-01-01)")
	fs.StringVar(&until, "until", "", "end of the window (exclusive); default now")
	fs.StringVar(&q.Tool, "tool", "", "only targets matching this glob (crm.*)")
	fs.StringVar(&q.Decision, "decision", "", "only this auth decision: allowed, denied or none")
	fs.StringVar(&q.Rule, "rule", "", "only rows decided by this rule (tools:crm.*, token name)")
	fs.StringVar(&q.Role, "role", "", "only calls whose principal had this role (auth.oauth.bindings)")
	fs.StringVar(&format, "format", "table", "table, csv or jsonl")
	return cmd
}

// auditWriter streams rows in one format; nothing is held beyond a row.
type auditWriter struct {
	write func(clickhouse.AuditRow) error
	close func() error
}

// newAuditWriter writes csv and jsonl with recfmt (the console's
// download shares it) and the table itself.
func newAuditWriter(w io.Writer, format string) (*auditWriter, error) {
	switch format {
	case "csv", "jsonl":
		aw, err := recfmt.NewAuditWriter(w, format)
		if err != nil {
			return nil, err
		}
		return &auditWriter{write: aw.Write, close: aw.Close}, nil
	case "table":
		// Fixed widths so that rows stream without buffering the result.
		ew := &errWriter{w: w}
		line := func(c ...string) {
			ew.printf("%-24s  %-16s  %-16s  %-14s  %-28s  %-8s  %-24s  %-15s  %s\n", c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])
		}
		line("TIME (UTC)", "PRINCIPAL", "ROLES", "METHOD", "TARGET", "DECISION", "RULE", "OUTCOME", "REQUEST ID")
		n := 0
		return &auditWriter{
			write: func(r clickhouse.AuditRow) error {
				n++
				line(r.Time.UTC().Format("2006-01-02 15:04:05.000"), truncate(dash(r.Principal), 16), truncate(dash(strings.Join(r.Roles, ",")), 16),
					truncate(r.Method, 14), truncate(dash(r.Target), 28), dash(r.Decision), truncate(dash(r.Rule), 24), r.Outcome.String(), r.RequestID)
				return ew.err
			},
			close: func() error {
				if n == 0 {
					ew.printf("no audit rows in this window\n")
				}
				return ew.err
			},
		}, nil
	}
	return nil, fmt.Errorf("--format %q: want table, csv or jsonl", format)
}

// ---- status ----

func newStatusCmd() *cobra.Command {
	var (
		url        string
		configPath string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running gateway's recorder counters and backend health (from /statusz)",
		Long: `Show a running gateway's recorder counters and backend health, read from its
/statusz admin endpoint: on admin.listen when the config sets it, else on listen.
When the gateway has an admin token (admin.token_sha256), put the token in
MCPTRAIL_ADMIN_TOKEN.`,
		Example: `  mcptrail status
  mcptrail status --url http://gateway.internal:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				url = "http://" + config.DefaultListen
				if cfg, err := config.Load(configPath); err == nil {
					url = "http://" + dialable(cmp.Or(cfg.Admin.Listen, cfg.Listen))
				} else if cmd.Flags().Changed("config") {
					return err
				}
			}
			st, raw, err := fetchStatus(cmd.Context(), url)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			return renderStatus(cmd.OutOrStdout(), url, st)
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "gateway admin base URL (default: http://<admin.listen or listen> of --config, else http://"+config.DefaultListen+")")
	cmd.Flags().StringVarP(&configPath, "config", "c", "mcptrail.yaml", "gateway config file, for its listen address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print /statusz as it came")
	return cmd
}

// dialable turns a listen address such as ":8080" into one to dial.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// gatewayStatus is /statusz, the type the gateway serves it from.
type gatewayStatus = proxy.Status

func fetchStatus(ctx context.Context, base string) (gatewayStatus, []byte, error) {
	var gs gatewayStatus
	u := strings.TrimRight(base, "/") + "/statusz"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return gs, nil, fmt.Errorf("reading gateway status: %w", err)
	}
	if tok := os.Getenv("MCPTRAIL_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gs, nil, fmt.Errorf("reading gateway status from %s: %w (is `mcptrail serve` running there? pass --url)", u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return gs, nil, fmt.Errorf("reading gateway status from %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return gs, raw, fmt.Errorf("reading gateway status from %s: HTTP %s", u, resp.Status)
	}
	gs, err = parseStatus(raw)
	if err != nil {
		return gs, raw, fmt.Errorf("reading gateway status from %s: %w", u, err)
	}
	return gs, raw, nil
}

func parseStatus(raw []byte) (gatewayStatus, error) {
	var gs gatewayStatus
	if err := json.Unmarshal(raw, &gs); err != nil {
		return gs, fmt.Errorf("decoding /statusz: %w", err)
	}
	return gs, nil
}

func renderStatus(w io.Writer, url string, st gatewayStatus) error {
	ew := &errWriter{w: w}
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	ew.printf("gateway %s  %s  version %s  instance %s\n", url, ready, st.Version, st.Instance)
	ew.printf("  requests %d  errors %d  denied %d  sessions %d  dropped stream messages %d\n", st.Requests, st.Errors, st.Denied, st.Sessions, st.Dropped)
	if c := st.Config; c != nil {
		ew.printf("  config %s  reloads %d  rejected %d", short(c.ConfigHash), c.Reloads, c.Failures)
		if c.LastError != "" {
			ew.printf("  LAST RELOAD REJECTED at %s: %s", c.LastAt.UTC().Format(time.RFC3339), c.LastError)
		}
		ew.printf("\n")
	}
	ew.printf("\n")
	if r := st.Recorder; r == nil {
		ew.printf("recorder  off (serve --no-record or recorder.enabled: false)\n")
	} else {
		renderRecorder(ew, r)
	}
	ew.printf("\n")
	rows := [][]string{{"BACKEND", "TRANSPORT", "STATE", "PROTOCOL", "TOOLS", "LAST ERROR"}}
	for _, b := range st.Backends {
		state := "ready"
		if !b.Ready {
			state = "down"
		}
		rows = append(rows, []string{b.Name, b.Transport, state, dash(b.ProtocolVersion), strconv.Itoa(b.Tools), truncate(b.LastError, 80)})
	}
	writeTable(ew, rows)
	return ew.err
}

// renderRecorder prints the recorder's health first, then where its
// events are, with the overflow risk spelled out.
func renderRecorder(ew *errWriter, r *recorder.Status) {
	health := "healthy"
	if !r.Healthy {
		health = "DEGRADED"
		if r.ReadyWhenDegraded {
			health += " (gateway stays ready: recorder.ready_when_degraded)"
		} else {
			health += " (gateway NOT ready: recorder.ready_when_degraded is false)"
		}
	}
	ew.printf("recorder  %s\n", health)
	for _, p := range r.Problems {
		ew.printf("  ! %s\n", p)
	}
	conn := "connected"
	if !r.Storage.Connected {
		conn = "NOT CONNECTED"
	}
	ew.printf("  clickhouse %s  %s\n", dash(r.Storage.Addr), conn)
	if l := r.Storage.Local; l != nil {
		state := fmt.Sprintf("running pid %d", l.PID)
		if !l.Running {
			state = "DOWN"
			if !l.NextRestart.IsZero() {
				state += ", restart at " + l.NextRestart.UTC().Format(time.TimeOnly)
			}
		}
		ew.printf("  local server %s  %s  restarts %d", l.Dir, state, l.Restarts)
		if l.LastExit != "" {
			ew.printf("  last exit %s (%s)", l.LastExit, l.LastExitAt.UTC().Format(time.RFC3339))
		}
		ew.printf("\n")
	}
	p := r.Pipeline
	ew.printf("  enqueued %d  spooled (acknowledged) %d  written %d  retried %d  quarantined %d  dropped %d\n",
		p.Enqueued, p.Spooled, p.Written, p.Retried, p.Quarantined, p.Dropped)
	if p.Unacknowledged > 0 {
		ew.printf("  unacknowledged (fsync failed) %d\n", p.Unacknowledged)
	}
	ew.printf("  queue %d  fsyncs %d  write latency last %s  avg %s\n", p.QueueLen, p.Fsyncs, fmtDur(p.WriteLatencyLast), fmtDur(p.WriteLatencyAvg))
	ew.printf("  %s\n", spoolLine(p))
	if p.Spooled > p.Written {
		ew.printf("  backlog %d events not yet in ClickHouse\n", p.Spooled-p.Written)
	}
	if p.QuarantineFiles > 0 {
		ew.printf("  quarantine %d batches (%s) rejected by ClickHouse: fix the cause, then `mcptrail recorder requeue`\n",
			p.QuarantineFiles, fmtBytes64(p.QuarantineBytes))
	}
	if p.LastError != "" {
		ew.printf("  last error: %s\n", p.LastError)
	}
}

// spoolLine says how full the spool is, how fast it fills and what happens
// when it is full.
func spoolLine(p recorder.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "spool %s of %s (%.0f%%) in %d segments", fmtBytes64(p.SpoolBytes), fmtBytes64(p.MaxDiskBytes), percent(p.SpoolBytes, p.MaxDiskBytes), p.SpoolSegments)
	switch {
	case p.SpoolFullIn > 0:
		fmt.Fprintf(&b, ", growing %s/s: full in ~%s", fmtBytes64(int64(p.SpoolGrowthPerSec)), fmtDur(p.SpoolFullIn))
	case p.SpoolGrowthPerSec < 0:
		fmt.Fprintf(&b, ", draining %s/s", fmtBytes64(int64(-p.SpoolGrowthPerSec)))
	}
	switch p.Overflow {
	case recorder.OverflowFailClosed:
		b.WriteString("; when full: new calls are refused (overflow: fail_closed)")
	case recorder.OverflowDrop:
		b.WriteString("; when full: events are DROPPED and calls go unrecorded (overflow: drop)")
	}
	return b.String()
}

func percent(n, of int64) float64 {
	if of <= 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

func fmtBytes64(n int64) string {
	if n < 0 {
		n = 0
	}
	if n >= 1<<30 {
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	}
	return fmtBytes(uint32(n))
}

// ---- migrate ----

func newMigrateCmd() *cobra.Command {
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the ClickHouse schema and print its version",
		Example: `  mcptrail migrate --config mcptrail.yaml
  mcptrail migrate --clickhouse 127.0.0.1:9000 --database mcptrail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, t, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			before, _ := st.SchemaVersion(ctx) // 0 on a fresh database
			if err := st.Migrate(ctx); err != nil {
				return fmt.Errorf("migrating database %s at %s: %w", t.cfg.Database, strings.Join(t.cfg.Addr, ","), err)
			}
			v, err := st.SchemaVersion(ctx)
			if err != nil {
				return fmt.Errorf("reading the schema version: %w", err)
			}
			f := st.Features()
			state := "up to date"
			if v != before {
				state = fmt.Sprintf("migrated from version %d", before)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schema version %d (%s) in database %s at %s, ClickHouse %s\n", v, state, t.cfg.Database, strings.Join(t.cfg.Addr, ","), f.Version)
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}

// errWriter keeps the first write error so that renderers can print freely.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}

// ---- recorder requeue ----

func newRecorderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recorder",
		Short: "Manage the recorder's spool (requeue batches ClickHouse rejected)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRequeueCmd())
	return cmd
}

func newRequeueCmd() *cobra.Command {
	var (
		configPath string
		spoolDir   string
	)
	cmd := &cobra.Command{
		Use:   "requeue",
		Short: "Hand the batches ClickHouse rejected (the spool's quarantine) back to the writer",
		Long: "A batch ClickHouse rejects for its contents (not for being down) is set aside in <spool dir>/quarantine " +
			"so that later batches are written; `mcptrail status` counts them. Once the cause is fixed (a schema, a " +
			"setting, a materialized view), requeue them: a running gateway writes them within seconds, a stopped one at its next start.",
		Example: `  mcptrail recorder requeue --config mcptrail.yaml
  mcptrail recorder requeue --spool-dir ./.mcptrail/spool`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := spoolDir
			if dir == "" {
				cfg, err := config.Load(configPath)
				if err != nil {
					return fmt.Errorf("%w (or pass --spool-dir)", err)
				}
				dir = cfg.Recorder.Spool.Dir
			}
			files, bytes, err := recorder.QuarantineUsage(dir)
			if err != nil {
				return err
			}
			n, err := recorder.Requeue(dir)
			if err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "quarantine of %s is empty: nothing to requeue\n", dir)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "requeued %d of %d quarantined batches (%s) in %s\n", n, files, fmtBytes64(bytes), dir)
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "mcptrail.yaml", "gateway config file, for recorder.spool.dir")
	cmd.Flags().StringVar(&spoolDir, "spool-dir", "", "the spool directory (default: recorder.spool.dir of --config)")
	return cmd
}

// short abbreviates a config hash as logs and status show it.
func short(h string) string { return h[:min(len(h), 12)] }
