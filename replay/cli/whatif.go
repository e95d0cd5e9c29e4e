package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/replay/whatif"
)

// auditReader streams the audit trail (*clickhouse.Store implements it).
type auditReader interface {
	Audit(ctx context.Context, q clickhouse.AuditQuery, emit func(clickhouse.AuditRow) error) error
}

// PolicyChangedError is returned when a what-if found decisions the
// candidate config changes; the report has been written. main maps it to
// exit 1, as a replay's regressions.
type PolicyChangedError struct{ NewlyDenied, NewlyAllowed int }

func (e *PolicyChangedError) Error() string {
	return fmt.Sprintf("the candidate config changes %d decision(s): %d newly denied, %d newly allowed",
		e.NewlyDenied+e.NewlyAllowed, e.NewlyDenied, e.NewlyAllowed)
}

// newPolicyCmd is `mcptrail policy whatif`.
func newPolicyCmd(env *Env) *cobra.Command {
	pol := &cobra.Command{Use: "policy", Short: "Work with the gateway's policy against recorded traffic"}
	var (
		sel       selectionFlags
		candidate string
		format    string
		top       int
	)
	cmd := &cobra.Command{
		Use:   "whatif --config candidate.yaml --since 30d",
		Short: "Re-decide every recorded request under a candidate config, without calling any backend, and report what changes",
		Long: `Re-evaluates the policy decision of every recorded request (the audit trail:
principal, roles, method, target) under the candidate config, with the policy
chain the gateway runs, and reports what would change: newly denied and newly
allowed requests by principal, target and rule. No backend is called.

Not re-evaluated, and counted apart by reason: denials by checks that need what
is not recorded (rate limits and concurrency caps depend on timing; argument
validation and argument rules on the arguments), refusals before policy (bad
tokens, ambiguous keys), completions, and requests no rule decides
(initialize, lists). A JWT principal keeps the roles it was recorded with: a
change of auth.oauth.bindings is not re-evaluated (the claims are not
recorded); a change of the roles' rules is.

Exit code 1 when any decision changes (for CI), 0 otherwise.`,
		Example: `  mcptrail policy whatif --config candidate.yaml --since 30d
  mcptrail policy whatif --config candidate.yaml --bundle incident.mcptrail --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if candidate == "" {
				return errors.New("whatif needs --config candidate.yaml")
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			cfg, err := config.Load(candidate)
			if err != nil {
				return err
			}
			pe, err := proxy.NewPolicyEvaluator(cfg)
			if err != nil {
				return fmt.Errorf("compiling the policy of %s: %w", candidate, err)
			}
			ev := whatif.New(pe)
			ctx := cmd.Context()
			start := time.Now()
			if err := readRecorded(ctx, env, &sel, func(r whatif.Request) error { ev.Add(ctx, r); return nil }); err != nil {
				return err
			}
			rep := ev.Report()
			if format == "json" {
				out := struct {
					Config     string `json:"config"`
					ConfigHash string `json:"config_hash"`
					*whatif.Report
				}{candidate, cfg.Hash, rep}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return fmt.Errorf("writing the report: %w", err)
				}
			} else if err := renderWhatif(env.Stdout, candidate, rep, top, time.Since(start)); err != nil {
				return err
			}
			if rep.Changed() {
				return &PolicyChangedError{NewlyDenied: rep.NewlyDenied, NewlyAllowed: rep.NewlyAllowed}
			}
			return nil
		},
	}
	sel.register(cmd)
	f := cmd.Flags()
	f.StringVar(&candidate, "config", "", "the candidate gateway config to decide the recorded requests with")
	f.StringVar(&format, "format", "text", "text or json")
	f.IntVar(&top, "top", 20, "text: at most this many groups per kind of change")
	pol.AddCommand(cmd)
	return pol
}

// readRecorded streams the selected requests: from ClickHouse's audit
// table (one narrow row per request, months of it, without loading hops
// or payloads), or from a bundle's hops, as replay reads them.
func readRecorded(ctx context.Context, env *Env, sel *selectionFlags, emit func(whatif.Request) error) error {
	if !sel.fromClickHouse() {
		src, err := sel.load(ctx, env)
		if err != nil {
			return err
		}
		defer src.close()
		for _, r := range whatif.FromEvents(src.events) {
			if err := emit(r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(sel.requestIDs) > 0 || sel.session != "" || sel.trace != "" || sel.server != "" || sel.failed {
		return errors.New("whatif selects from the audit trail by --since/--until, --principal and --tool only")
	}
	now := time.Now()
	q := clickhouse.AuditQuery{Principal: sel.principal, Tool: sel.tool}
	var err error
	if q.Since, err = parseWhen(sel.since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if q.Until, err = parseWhen(sel.until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if q.Since.IsZero() {
		return errors.New("select the window with --since (or read a --bundle)")
	}
	st, closer, err := sel.openStore(ctx, env)
	if err != nil {
		return err
	}
	if closer != nil {
		defer closer.Close()
	}
	ar, ok := st.(auditReader)
	if !ok {
		return errors.New("this store cannot stream the audit trail")
	}
	err = ar.Audit(ctx, q, func(a clickhouse.AuditRow) error {
		return emit(whatif.Request{Time: a.Time, RequestID: a.RequestID, Principal: a.Principal, Roles: a.Roles,
			Method: a.Method, Target: a.Target, Server: a.Server, Decision: a.Decision, Rule: a.Rule})
	})
	if err != nil {
		return fmt.Errorf("reading the audit trail: %w", err)
	}
	return nil
}

// renderWhatif writes the text report.
func renderWhatif(w io.Writer, candidate string, rep *whatif.Report, top int, took time.Duration) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "what-if %s: %d recorded requests, %d re-decided in %s\n", candidate, rep.Requests, rep.Evaluated, took.Round(time.Millisecond))
	fmt.Fprintf(tw, "  newly denied %d  newly allowed %d  unchanged %d  allowed by another rule %d\n",
		rep.NewlyDenied, rep.NewlyAllowed, rep.Unchanged, rep.RuleChanged)
	for _, kind := range []struct{ kind, title string }{
		{whatif.NewlyDenied, "NEWLY DENIED"}, {whatif.NewlyAllowed, "NEWLY ALLOWED"}, {whatif.RuleChanged, "ALLOWED BY ANOTHER RULE"},
	} {
		shown, more := 0, 0
		for _, c := range rep.Changes {
			if c.Kind != kind.kind {
				continue
			}
			if shown >= top {
				more += c.Count
				continue
			}
			if shown == 0 {
				fmt.Fprintf(tw, "\n%s\nCALLS\tPRINCIPAL\tMETHOD\tTARGET\tRULE THEN\tRULE NOW\tEXAMPLE REQUEST\n", kind.title)
			}
			shown++
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Count, c.Principal, c.Method, c.Target, dashIfEmpty(c.OldRule), dashIfEmpty(c.NewRule), c.Example)
		}
		if more > 0 {
			fmt.Fprintf(tw, "  … and %d more calls\n", more)
		}
	}
	if len(rep.NotEvaluated) > 0 {
		fmt.Fprintf(tw, "\nNOT RE-EVALUATED (the record cannot answer)\n")
		reasons := make([]string, 0, len(rep.NotEvaluated))
		for r := range rep.NotEvaluated {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			fmt.Fprintf(tw, "%d\t%s\n", rep.NotEvaluated[r], r)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

func dashIfEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
