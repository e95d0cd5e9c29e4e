// Package report summarises a replay run: per tool how many requests were
// replayed, identical, changed, failed, skipped or only noisy; the top
// differences with their paths and old → new values; recorded versus replay
// latency (p50/p99) per tool. It renders terminal text, JSON and JUnit XML
// (one test case per request, a failure per regression).
//
// Noise supports --baseline-twice: replaying the same baseline twice (runs A
// and B) and comparing both to the recording, a path whose change differs
// between A and B is non-deterministic output, not a regression.
package report

import (
	"cmp"
	"encoding/json"
	"slices"

	"github.com/mcptrail/mcptrail/replay/diff"
)

// Status is the verdict on one replayed request.
type Status string

// Statuses.
const (
	StatusIdentical Status = "identical" // no difference (after ignore rules)
	StatusChanged   Status = "changed"   // differences remain: a regression
	StatusFailed    Status = "failed"    // the replay itself failed (miss, transport, unresolved secret at send time)
	StatusSkipped   Status = "skipped"   // not replayed (e.g. unresolved secrets, unsupported method)
	StatusNoise     Status = "noise"     // every difference was noise (see Noise)
	// StatusReordered: the only differences are lists of named things in
	// another order (order_changed, low risk); reported, not a regression.
	StatusReordered Status = "reordered"
)

// Case is one replayed request.
type Case struct {
	RequestID string `json:"request_id"`
	SessionID string `json:"session_id,omitempty"`
	Method    string `json:"method"`
	Server    string `json:"server,omitempty"`
	Target    string `json:"target,omitempty"`
	Status    Status `json:"status"`
	// Diff is the comparison of recorded and replayed answers.
	Diff diff.Result `json:"diff"`
	// NoiseChanges counts differences removed as noise; NoisePaths names
	// them.
	NoiseChanges int      `json:"noise_changes,omitempty"`
	NoisePaths   []string `json:"noise_paths,omitempty"`
	// RecordedUs and ReplayUs are the answer latencies in microseconds; 0
	// means unknown and is left out of the percentiles.
	RecordedUs int64 `json:"recorded_us,omitempty"`
	ReplayUs   int64 `json:"replay_us,omitempty"`
	// Reason explains a failed or skipped case.
	Reason string `json:"reason,omitempty"`
}

// Tool is the name a case is grouped under: the target, else method and server.
func (c Case) Tool() string {
	if c.Target != "" {
		return c.Target
	}
	if c.Server != "" {
		return c.Method + " " + c.Server
	}
	return c.Method
}

// Regression reports whether the case fails a CI run.
func (c Case) Regression() bool { return c.Status == StatusChanged || c.Status == StatusFailed }

// Compared builds a case from a recorded and a replayed exchange.
func Compared(recorded, replayed diff.Exchange, rules diff.IgnoreRules) Case {
	c := caseOf(recorded)
	c.Diff = diff.Compare(recorded, replayed, rules)
	c.ReplayUs = replayed.DurationUs
	c.Status = statusOf(c.Diff.Changes)
	return c
}

// statusOf is identical, reordered (only order changes) or changed.
func statusOf(chs []diff.Change) Status {
	if len(chs) == 0 {
		return StatusIdentical
	}
	for _, ch := range chs {
		if ch.Kind != diff.KindOrderChanged {
			return StatusChanged
		}
	}
	return StatusReordered
}

// WithProgress adds the differences between recorded and replayed progress
// notifications (lost, extra, changed) to a compared case.
func WithProgress(c Case, recorded, replayed []json.RawMessage, rules diff.IgnoreRules) Case {
	return withNotifications(c, diff.CompareProgress, recorded, replayed, rules)
}

// WithLogs is WithProgress for the request's log notifications
// (notifications/message), compared under /(log)/N.
func WithLogs(c Case, recorded, replayed []json.RawMessage, rules diff.IgnoreRules) Case {
	return withNotifications(c, diff.CompareLogs, recorded, replayed, rules)
}

func withNotifications(c Case, compare func(recorded, replayed []json.RawMessage, rules diff.IgnoreRules) []diff.Change,
	recorded, replayed []json.RawMessage, rules diff.IgnoreRules) Case {
	if c.Status != StatusIdentical && c.Status != StatusChanged && c.Status != StatusReordered || len(recorded) == 0 && len(replayed) == 0 {
		return c
	}
	ch := compare(recorded, replayed, rules.For(c.Server, c.Target))
	if len(ch) > 0 {
		c.Diff.Changes = append(c.Diff.Changes, ch...)
		c.Status = statusOf(c.Diff.Changes)
	}
	return c
}

// Failed builds a case for a request whose replay failed.
func Failed(recorded diff.Exchange, err error) Case {
	c := caseOf(recorded)
	c.Status, c.Reason = StatusFailed, err.Error()
	return c
}

// Skipped builds a case for a request that was not replayed.
func Skipped(recorded diff.Exchange, reason string) Case {
	c := caseOf(recorded)
	c.Status, c.Reason = StatusSkipped, reason
	return c
}

func caseOf(x diff.Exchange) Case {
	return Case{RequestID: x.RequestID, SessionID: x.SessionID, Method: x.Method, Server: x.Server, Target: x.Target, RecordedUs: x.DurationUs}
}

// ToolSummary counts the cases of one tool.
type ToolSummary struct {
	Tool      string `json:"tool"`
	Replayed  int    `json:"replayed"` // all cases but skipped ones
	Identical int    `json:"identical"`
	Changed   int    `json:"changed"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Noise     int    `json:"noise"`
	Reordered int    `json:"reordered,omitempty"`
	// Latency percentiles in microseconds (nearest rank; 0 when unknown).
	RecordedP50Us int64 `json:"recorded_p50_us"`
	RecordedP99Us int64 `json:"recorded_p99_us"`
	ReplayP50Us   int64 `json:"replay_p50_us"`
	ReplayP99Us   int64 `json:"replay_p99_us"`
}

// TopDiff is one path that changed, aggregated over a tool's cases.
type TopDiff struct {
	Tool  string    `json:"tool"`
	Path  string    `json:"path"`
	Kind  diff.Kind `json:"kind"`
	Risk  diff.Risk `json:"risk"`
	Count int       `json:"count"`
	// Old and New are the values of the first occurrence (canonical JSON).
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
}

// Target is one thing a run replayed against: a backend (upstream mode) or
// the gateway (mock, e2e), as the run's caller named it and as it named
// itself in its initialize answer.
type Target struct {
	// Name is the backend namespace, or "gateway".
	Name string `json:"name"`
	// Address is the URL or the command line.
	Address string `json:"address,omitempty"`
	// ServerName and ServerVersion are the target's serverInfo.
	ServerName    string `json:"server_name,omitempty"`
	ServerVersion string `json:"server_version,omitempty"`
	// ProtocolVersion is the version negotiated with it.
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// Env names the environment variables a stdio target was started with
	// (values are not shown: they may be secrets): the gateway's base
	// variables, env_passthrough and env, as for the recorded backend.
	Env []string `json:"env,omitempty"`
}

// NoisePath is one path whose value differed between two passes of the same
// requests (--baseline-twice), and so is not held against the target.
type NoisePath struct {
	Tool  string `json:"tool"`
	Path  string `json:"path"`
	Count int    `json:"count"` // changes removed at this path
}

// Report is a whole run.
type Report struct {
	Mode string `json:"mode"` // mock, upstream, e2e
	// Against names what was replayed against; Selection and ConfigHash
	// say what was replayed.
	Against    []Target        `json:"against,omitempty"`
	Selection  json.RawMessage `json:"selection,omitempty"`
	ConfigHash string          `json:"recorded_config_hash,omitempty"`
	Total      ToolSummary     `json:"total"`
	Tools      []ToolSummary   `json:"tools"`
	Top        []TopDiff       `json:"top_differences"`
	// MoreDiffs counts the difference groups left out of Top.
	MoreDiffs int         `json:"more_differences,omitempty"`
	Noise     []NoisePath `json:"noise,omitempty"`
	Cases     []Case      `json:"cases"`
}

// Regressions counts the cases that fail a CI run.
func (r *Report) Regressions() int {
	n := 0
	for _, c := range r.Cases {
		if c.Regression() {
			n++
		}
	}
	return n
}

// Build summarises cases; topN bounds Top (default 10).
func Build(mode string, cases []Case, topN int) *Report {
	if topN <= 0 {
		topN = 10
	}
	r := &Report{Mode: mode, Cases: cases, Total: ToolSummary{Tool: "TOTAL"}}
	byTool := map[string]*ToolSummary{}
	lat := map[string]*[2][]int64{}
	var allLat [2][]int64
	type topKey struct {
		tool, path string
		kind       diff.Kind
	}
	top := map[topKey]*TopDiff{}
	for _, c := range cases {
		name := c.Tool()
		ts := byTool[name]
		if ts == nil {
			ts = &ToolSummary{Tool: name}
			byTool[name] = ts
			lat[name] = &[2][]int64{}
		}
		for _, s := range []*ToolSummary{ts, &r.Total} {
			count(s, c.Status)
		}
		if c.Status != StatusSkipped {
			l := lat[name]
			if c.RecordedUs > 0 {
				l[0] = append(l[0], c.RecordedUs)
				allLat[0] = append(allLat[0], c.RecordedUs)
			}
			if c.ReplayUs > 0 {
				l[1] = append(l[1], c.ReplayUs)
				allLat[1] = append(allLat[1], c.ReplayUs)
			}
		}
		if c.Status != StatusChanged && c.Status != StatusReordered {
			continue
		}
		for _, ch := range c.Diff.Changes {
			k := topKey{name, ch.Path, ch.Kind}
			if t := top[k]; t != nil {
				t.Count++
				t.Risk = max(t.Risk, ch.Risk)
				continue
			}
			top[k] = &TopDiff{Tool: name, Path: ch.Path, Kind: ch.Kind, Risk: ch.Risk, Count: 1, Old: string(ch.Old), New: string(ch.New)}
		}
	}
	for name, ts := range byTool {
		setLatency(ts, lat[name])
		r.Tools = append(r.Tools, *ts)
	}
	setLatency(&r.Total, &allLat)
	slices.SortFunc(r.Tools, func(a, b ToolSummary) int { return cmp.Compare(a.Tool, b.Tool) })
	for _, t := range top {
		r.Top = append(r.Top, *t)
	}
	slices.SortFunc(r.Top, func(a, b TopDiff) int {
		// Outcome changes first (with their new error), then by risk.
		return cmp.Or(-cmp.Compare(boolInt(a.Kind == diff.KindOutcomeChanged), boolInt(b.Kind == diff.KindOutcomeChanged)),
			cmp.Compare(b.Risk, a.Risk), cmp.Compare(b.Count, a.Count),
			cmp.Compare(a.Tool, b.Tool), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Kind, b.Kind))
	})
	if len(r.Top) > topN {
		r.MoreDiffs = len(r.Top) - topN
		r.Top = r.Top[:topN]
	}
	noise := map[[2]string]int{}
	for _, c := range cases {
		for _, p := range c.NoisePaths {
			noise[[2]string{c.Tool(), p}]++
		}
	}
	for k, n := range noise {
		r.Noise = append(r.Noise, NoisePath{Tool: k[0], Path: k[1], Count: n})
	}
	slices.SortFunc(r.Noise, func(a, b NoisePath) int { return cmp.Or(cmp.Compare(a.Tool, b.Tool), cmp.Compare(a.Path, b.Path)) })
	return r
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func count(s *ToolSummary, st Status) {
	if st != StatusSkipped {
		s.Replayed++
	}
	switch st {
	case StatusIdentical:
		s.Identical++
	case StatusChanged:
		s.Changed++
	case StatusFailed:
		s.Failed++
	case StatusSkipped:
		s.Skipped++
	case StatusNoise:
		s.Noise++
	case StatusReordered:
		s.Reordered++
	}
}

func setLatency(s *ToolSummary, l *[2][]int64) {
	s.RecordedP50Us, s.RecordedP99Us = Percentile(l[0], 50), Percentile(l[0], 99)
	s.ReplayP50Us, s.ReplayP99Us = Percentile(l[1], 50), Percentile(l[1], 99)
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of xs,
// 0 for no values. xs is not modified.
func Percentile(xs []int64, p float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(p/100*float64(len(s)) + 0.999999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// NoiseSet holds, per tool, the paths whose changes are non-deterministic.
type NoiseSet map[string]map[string]bool

// Noise compares two runs (A and B) of the same requests against the same
// baseline. A path is noise for a tool when, for some request, it changed in
// one run but not the other, or changed to different values. Outcome changes
// are never noise. Cases are paired by RequestID, else by position; pairs in
// which either case failed or was skipped are left out.
func Noise(a, b []Case) NoiseSet {
	ns := NoiseSet{}
	byID := map[string]*Case{}
	for i := range b {
		if b[i].RequestID != "" {
			byID[b[i].RequestID] = &b[i]
		}
	}
	for i := range a {
		var cb *Case
		if a[i].RequestID != "" {
			cb = byID[a[i].RequestID]
		} else if i < len(b) {
			cb = &b[i]
		}
		if cb == nil || !compared(a[i].Status) || !compared(cb.Status) {
			// A request not compared in one pass (failed, skipped) has no
			// changes there; that absence is not evidence of noise.
			continue
		}
		ca := map[string]string{}
		for _, ch := range a[i].Diff.Changes {
			ca[ch.Path] = string(ch.Kind) + string(ch.New)
		}
		cbm := map[string]string{}
		for _, ch := range cb.Diff.Changes {
			cbm[ch.Path] = string(ch.Kind) + string(ch.New)
		}
		mark := func(p string) {
			if p == "" { // outcome (or whole document) changes are always reported
				return
			}
			tool := a[i].Tool()
			if ns[tool] == nil {
				ns[tool] = map[string]bool{}
			}
			ns[tool][p] = true
		}
		for p, v := range ca {
			if w, ok := cbm[p]; !ok || w != v {
				mark(p)
			}
		}
		for p := range cbm {
			if _, ok := ca[p]; !ok {
				mark(p)
			}
		}
	}
	return ns
}

// compared reports whether a case's answers were compared (so that its
// changes, or their absence, are meaningful).
func compared(s Status) bool { return s != StatusFailed && s != StatusSkipped }

// Apply removes noisy changes from the cases (in place) and returns them. A
// changed case whose every change was noise becomes StatusNoise.
func (ns NoiseSet) Apply(cases []Case) []Case {
	for i := range cases {
		c := &cases[i]
		paths := ns[c.Tool()]
		if len(paths) == 0 || len(c.Diff.Changes) == 0 {
			continue
		}
		kept := c.Diff.Changes[:0:0]
		for _, ch := range c.Diff.Changes {
			if paths[ch.Path] {
				c.NoiseChanges++
				c.NoisePaths = append(c.NoisePaths, displayPath(ch.Path))
				continue
			}
			kept = append(kept, ch)
		}
		c.Diff.Changes = kept
		if c.Status == StatusChanged || c.Status == StatusReordered {
			if len(kept) == 0 {
				c.Status = StatusNoise
			} else {
				c.Status = statusOf(kept)
			}
		}
	}
	return cases
}

func displayPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}
