package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/recfmt"
	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/replay/cli"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/report"
)

const timeLayout = "2006-01-02 15:04:05.000"

var funcs = template.FuncMap{
	"dur":      recfmt.Duration,
	"bytes":    recfmt.Bytes,
	"detail":   recfmt.HopDetail,
	"outcome":  recfmt.OutcomeText,
	"time":     func(t time.Time) string { return t.UTC().Format(timeLayout) },
	"day":      func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"ns":       func(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05.000 UTC") },
	"us":       func(us int64) string { return recfmt.Duration(time.Duration(us) * time.Microsecond) },
	"dash":     func(s string) string { return cmp.Or(s, "—") },
	"path":     func(id string) string { return url.PathEscape(id) },
	"outClass": func(o recorder.Outcome) string { return "o-" + o.String() },
	"int":      toInt,
	"scale":    func(n, of uint64) uint64 { return n * 1000 / max(of, 1) },
	"scale2":   func(a, b, of uint64) uint64 { return (a + b) * 1000 / max(of, 1) },
	"nsdur":    func(ns int64) string { return recfmt.Duration(time.Duration(ns)) },
}

// ---- calls ----

// callsFilter is the calls page's query string.
type callsFilter struct {
	Since, Until, Principal, Server, Tool, Outcome, Decision string
	Limit                                                    int
}

var outcomes = []string{"ok", "tool_error", "jsonrpc_error", "transport_error", "denied"}
var decisions = []string{"allowed", "denied", "none"}
var limits = []int{50, 100, 500, 1000}

func (c *Console) parseCalls(r *http.Request) (callsFilter, clickhouse.CallsQuery, error) {
	q := r.URL.Query()
	f := callsFilter{Since: q.Get("since"), Until: q.Get("until"), Principal: strings.TrimSpace(q.Get("principal")), Server: strings.TrimSpace(q.Get("server")),
		Tool: strings.TrimSpace(q.Get("tool")), Outcome: q.Get("outcome"), Decision: q.Get("decision"), Limit: 100}
	if _, ok := q["since"]; !ok {
		f.Since = "1h"
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		f.Limit = min(n, 1000)
	}
	cq := clickhouse.CallsQuery{Principal: f.Principal, Server: f.Server, Tool: f.Tool, Limit: f.Limit}
	var err error
	if cq.Since, cq.Until, err = recfmt.ParseWindow("since", f.Since, "until", f.Until, c.cfg.Now()); err != nil {
		return f, cq, err
	}
	switch {
	case f.Outcome == "failed":
		cq.FailedOnly = true
	case f.Outcome == "" || slices.Contains(outcomes, f.Outcome):
		cq.Outcome = f.Outcome
	default:
		return f, cq, fmt.Errorf("outcome %q: want one of %s or failed", f.Outcome, strings.Join(outcomes, ", "))
	}
	if f.Decision != "" && !slices.Contains(decisions, f.Decision) {
		return f, cq, fmt.Errorf("decision %q: want allowed, denied or none", f.Decision)
	}
	cq.Decision = f.Decision
	return f, cq, nil
}

type callsPage struct {
	F                   callsFilter
	Outcomes, Decisions []string
	Limits              []int
	Calls               []clickhouse.Call
	Error               string
	LiveURL             template.URL // calls.json with the same filters
}

func (c *Console) calls(w http.ResponseWriter, r *http.Request) {
	f, q, err := c.parseCalls(r)
	d := callsPage{F: f, Outcomes: outcomes, Decisions: decisions, Limits: limits, LiveURL: sameQuery("/console/calls.json", r)}
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "calls", page{Title: "Calls", Nav: "calls", Data: d})
		return
	}
	if err := c.query(r, func(ctx context.Context, s *clickhouse.Store) (err error) {
		d.Calls, err = s.Calls(ctx, q)
		return err
	}); err != nil {
		c.failQuery(w, r, "calls", err)
		return
	}
	c.render(w, r, http.StatusOK, "calls", page{Title: "Calls", Nav: "calls", Data: d})
}

// callJSON is a call in calls.json (the live tail): the shape of
// `mcptrail calls --json` with display strings, so that the script formats
// nothing itself.
type callJSON struct {
	recfmt.CallJSON
	TimeText     string `json:"time_text"`
	DurationText string `json:"duration_text"`
}

func (c *Console) callsJSON(w http.ResponseWriter, r *http.Request) {
	_, q, err := c.parseCalls(r)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	var calls []clickhouse.Call
	if err := c.query(r, func(ctx context.Context, s *clickhouse.Store) (err error) {
		calls, err = s.Calls(ctx, q)
		return err
	}); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "reading calls: " + err.Error()})
		return
	}
	out := make([]callJSON, len(calls))
	for i, k := range calls {
		out[i] = callJSON{recfmt.NewCallJSON(k), k.Time.UTC().Format(timeLayout), recfmt.Duration(k.Duration)}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"calls": out})
}

// find jumps to the trace of a pasted request, trace or session ID.
func (c *Console) find(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		http.Redirect(w, r, "/console/calls", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/trace/"+url.PathEscape(id), http.StatusSeeOther)
}

// ---- trace ----

// maxTraceRequests bounds a trace or session page.
const maxTraceRequests = 50

type hopView struct {
	recorder.Event
	Offset         int64 // ns from the request's start
	BarX, BarW     int   // in a 0..1000 viewBox
	Params, Result string
	Attrs          []recorder.Attr
}

type requestView struct {
	ID, Title string
	Start     int64
	Total     time.Duration
	Response  *recorder.Event
	First     recorder.Event
	Hops      []hopView
	TraceLink string
	Ticks     []tick
	ErrorHop  *recorder.Event
}

type tick struct {
	X     int
	Label string
}

type tracePage struct {
	ID        string
	Requests  []requestView
	Truncated bool
}

var traceIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (c *Console) trace(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.PathValue("id"))
	if id == "" || len(id) > 200 {
		c.fail(w, r, http.StatusBadRequest, "No such call", errors.New("paste a request, trace or session ID"))
		return
	}
	var evs []recorder.Event
	err := c.query(r, func(ctx context.Context, s *clickhouse.Store) (err error) {
		evs, err = s.Trace(ctx, id, clickhouse.WithPayloads(), clickhouse.WithMaxRequests(maxTraceRequests))
		return err
	})
	if errors.Is(err, clickhouse.ErrNotFound) {
		c.render(w, r, http.StatusNotFound, "error", page{Title: "Not found", Nav: "calls", Data: errorPage{Heading: "Nothing recorded for " + id,
			Message: "No recorded request, trace or session has this ID.",
			Hint:    "Events reach ClickHouse about one recorder.flush_interval after the call; calls older than the hop retention are gone."}})
		return
	}
	if err != nil {
		c.failQuery(w, r, "the trace", err)
		return
	}
	d := tracePage{ID: id}
	for i := 0; i < len(evs); {
		j := i
		for j < len(evs) && evs[j].RequestID == evs[i].RequestID {
			j++
		}
		d.Requests = append(d.Requests, c.requestView(evs[i:j]))
		i = j
	}
	d.Truncated = len(d.Requests) >= maxTraceRequests
	c.render(w, r, http.StatusOK, "trace", page{Title: "Trace " + id, Nav: "calls", Data: d})
}

func (c *Console) requestView(evs []recorder.Event) requestView {
	v := requestView{ID: evs[0].RequestID, First: evs[0]}
	start, end := evs[0].TimeNs, evs[0].TimeNs
	for i := range evs {
		e := &evs[i]
		start = min(start, e.TimeNs)
		end = max(end, e.TimeNs+e.DurationUs*1000)
		if e.Hop == recorder.HopResponse {
			v.Response = e
		}
		if e.ErrorMessage != "" || e.ErrorCode != 0 {
			if v.ErrorHop == nil || e.Hop == recorder.HopResponse {
				v.ErrorHop = e
			}
		}
	}
	v.Start, v.Total = start, time.Duration(end-start)
	v.Title = strings.TrimSpace(v.First.Method + " " + v.First.Target)
	span := max(end-start, 1)
	for _, e := range evs {
		h := hopView{Event: e, Offset: e.TimeNs - start, Attrs: e.Attrs}
		h.BarX = int(h.Offset * 1000 / span)
		h.BarW = max(int(e.DurationUs*1000*1000/span), 3)
		h.BarX = min(h.BarX, 997)
		h.BarW = min(h.BarW, 1000-h.BarX)
		h.Params, h.Result = pretty(e.Params), pretty(e.Result)
		v.Hops = append(v.Hops, h)
	}
	for i := 0; i <= 4; i++ {
		v.Ticks = append(v.Ticks, tick{X: i * 250, Label: "+" + recfmt.Duration(time.Duration(span*int64(i)/4))})
	}
	if tu := c.cfg.TraceURL(); tu != "" && traceIDRe.MatchString(v.First.TraceID) {
		v.TraceLink = strings.ReplaceAll(tu, "{trace_id}", v.First.TraceID)
	}
	return v
}

// pretty indents JSON bodies; anything else is shown as it is.
func pretty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if json.Valid(b) && json.Indent(&buf, b, "", "  ") == nil {
		return buf.String()
	}
	return string(b)
}

// ---- audit ----

type auditFilter struct {
	Since, Until, Principal, Tool, Decision, Rule string
}

// auditRows bounds the rows shown on the audit page; the download has all.
const auditRows = 200

func (c *Console) parseAudit(r *http.Request) (auditFilter, clickhouse.AuditQuery, error) {
	q := r.URL.Query()
	f := auditFilter{Since: q.Get("since"), Until: q.Get("until"), Principal: strings.TrimSpace(q.Get("principal")), Tool: strings.TrimSpace(q.Get("tool")),
		Decision: q.Get("decision"), Rule: strings.TrimSpace(q.Get("rule"))}
	if _, ok := q["since"]; !ok {
		f.Since = "30d" // as `mcptrail audit`
	}
	aq := clickhouse.AuditQuery{Principal: f.Principal, Tool: f.Tool, Decision: f.Decision, Rule: f.Rule}
	var err error
	if aq.Since, aq.Until, err = recfmt.ParseWindow("since", f.Since, "until", f.Until, c.cfg.Now()); err != nil {
		return f, aq, err
	}
	if f.Decision != "" && !slices.Contains(decisions, f.Decision) {
		return f, aq, fmt.Errorf("decision %q: want allowed, denied or none", f.Decision)
	}
	return f, aq, nil
}

type auditPage struct {
	F         auditFilter
	Decisions []string
	Days      []clickhouse.AuditDay
	MaxDay    uint64
	Total     uint64
	Rows      []clickhouse.AuditRow
	Shown     int
	Error     string
	// CSVURL and JSONLURL download exactly the filtered rows.
	CSVURL, JSONLURL template.URL
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	f, q, err := c.parseAudit(r)
	d := auditPage{F: f, Decisions: decisions, CSVURL: sameQuery("/console/audit.csv", r), JSONLURL: sameQuery("/console/audit.jsonl", r)}
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "audit", page{Title: "Audit", Nav: "audit", Data: d})
		return
	}
	if err := c.query(r, func(ctx context.Context, s *clickhouse.Store) error {
		days, err := s.AuditDays(ctx, q, 0)
		if err != nil {
			return err
		}
		d.Days = days
		for _, day := range days {
			d.Total += day.Total
			d.MaxDay = max(d.MaxDay, day.Total)
		}
		pq := q
		pq.Limit = auditRows
		return s.Audit(ctx, pq, func(row clickhouse.AuditRow) error {
			d.Rows = append(d.Rows, row)
			return nil
		})
	}); err != nil {
		c.failQuery(w, r, "the audit trail", err)
		return
	}
	d.Shown = len(d.Rows)
	c.render(w, r, http.StatusOK, "audit", page{Title: "Audit", Nav: "audit", Data: d})
}

// auditExport streams exactly the filtered rows, as `mcptrail audit
// --format csv|jsonl` writes them (recfmt). A failure before the first
// row is an error page; one mid-stream aborts the response, so that a
// download is never silently cut short.
func (c *Console) auditExport(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, q, err := c.parseAudit(r)
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, "Bad filter", err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), c.cfg.ExportTimeout)
		defer cancel()
		sctx, scancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
		s, err := c.store(sctx)
		scancel()
		if err != nil {
			c.failQuery(w, r, "the audit trail", err)
			return
		}
		ct := map[string]string{"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}[format]
		started := false
		var aw *recfmt.AuditWriter
		start := func() error {
			started = true
			w.Header().Set("Content-Type", ct)
			w.Header().Set("Content-Disposition", `attachment; filename="mcptrail-audit.`+format+`"`)
			var err error
			aw, err = recfmt.NewAuditWriter(w, format)
			return err
		}
		err = s.Audit(ctx, q, func(row clickhouse.AuditRow) error {
			if !started {
				if err := start(); err != nil {
					return err
				}
			}
			return aw.Write(row)
		})
		if err == nil && !started {
			err = start()
		}
		if err == nil {
			err = aw.Close()
		}
		if err != nil {
			if !started {
				c.failQuery(w, r, "the audit trail", err)
				return
			}
			c.log(r).Warn("audit download aborted", "err", err)
			panic(http.ErrAbortHandler)
		}
	}
}

// ---- replay runs ----

type replaysPage struct {
	Runs []clickhouse.ReplayRunSummary
}

func (c *Console) replays(w http.ResponseWriter, r *http.Request) {
	var d replaysPage
	if err := c.query(r, func(ctx context.Context, s *clickhouse.Store) (err error) {
		d.Runs, err = s.ReplayRuns(ctx, 200)
		return err
	}); err != nil {
		c.failQuery(w, r, "replay runs", err)
		return
	}
	c.render(w, r, http.StatusOK, "replays", page{Title: "Replay runs", Nav: "replays", Data: d})
}

type replayPage struct {
	Run    clickhouse.ReplayRunSummary
	Report *report.Report
	Cases  []caseView
	Shown  int
}

type caseView struct {
	report.Case
	OutcomeChange bool
	Changes       []changeView
}

type changeView struct {
	diff.Change
	Path string
}

// maxReplayResults bounds a replay run's page.
const maxReplayResults = 2000

func (c *Console) replay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var (
		run     clickhouse.ReplayRunSummary
		results []clickhouse.ReplayResult
	)
	err := c.query(r, func(ctx context.Context, s *clickhouse.Store) (err error) {
		run, results, err = s.ReplayRunResults(ctx, id, maxReplayResults)
		return err
	})
	if errors.Is(err, clickhouse.ErrNotFound) {
		c.render(w, r, http.StatusNotFound, "error", page{Title: "Not found", Nav: "replays", Data: errorPage{Heading: "No replay run " + id,
			Message: "No stored replay run has this ID.", Hint: "Runs are stored by mcptrail replay unless --no-store."}})
		return
	}
	if err != nil {
		c.failQuery(w, r, "the replay run", err)
		return
	}
	cases := cli.Cases(results)
	d := replayPage{Run: run, Report: report.Build(run.Mode, cases, 20), Shown: len(results)}
	for _, k := range cases {
		cv := caseView{Case: k}
		for _, ch := range k.Diff.Changes {
			cv.OutcomeChange = cv.OutcomeChange || ch.Kind == diff.KindOutcomeChanged
			cv.Changes = append(cv.Changes, changeView{Change: ch, Path: cmp.Or(ch.Path, "/")})
		}
		d.Cases = append(d.Cases, cv)
	}
	// Outcome changes first, then other regressions by risk, then the rest.
	slices.SortStableFunc(d.Cases, func(a, b caseView) int {
		return cmp.Or(-cmp.Compare(boolInt(a.OutcomeChange), boolInt(b.OutcomeChange)),
			-cmp.Compare(boolInt(a.Regression()), boolInt(b.Regression())),
			-cmp.Compare(maxRisk(a.Changes), maxRisk(b.Changes)))
	})
	c.render(w, r, http.StatusOK, "replay", page{Title: "Replay run " + run.ID, Nav: "replays", Data: d})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func maxRisk(chs []changeView) diff.Risk {
	var r diff.Risk
	for _, c := range chs {
		r = max(r, c.Risk)
	}
	return r
}

// ---- health ----

type healthPage struct {
	Gateway   *proxy.Status
	CHAddr    string
	CHOK      bool
	CHVersion string
	CHError   string
	CHLatency time.Duration
}

func (c *Console) health(w http.ResponseWriter, r *http.Request) {
	var d healthPage
	if c.cfg.Status != nil {
		st := c.cfg.Status()
		d.Gateway = &st
	}
	if a, ok := c.cfg.Store.(addrer); ok {
		d.CHAddr = strings.Join(a.Addr(), ",")
	}
	t0 := time.Now()
	err := c.query(r, func(ctx context.Context, s *clickhouse.Store) error {
		d.CHVersion = s.Features().Version
		return s.Ping(ctx)
	})
	d.CHLatency = time.Since(t0)
	d.CHOK = err == nil
	if err != nil {
		d.CHError = err.Error()
	}
	status := http.StatusOK
	if !d.CHOK || d.Gateway != nil && !d.Gateway.Ready {
		status = http.StatusServiceUnavailable
	}
	c.render(w, r, status, "health", page{Title: "Health", Nav: "health", Data: d})
}

// toInt lets templates compare counts of any integer type.
func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case uint32:
		return int(n)
	case uint64:
		return int(n)
	case int64:
		return int(n)
	}
	return 0
}

// sameQuery is path with r's query, re-encoded from its parsed values (so
// that it is a well-formed URL whatever was sent).
func sameQuery(path string, r *http.Request) template.URL {
	q := r.URL.Query().Encode()
	if q == "" {
		return template.URL(path)
	}
	return template.URL(path + "?" + q)
}
