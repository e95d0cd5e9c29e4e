// Package whatif re-evaluates recorded requests' policy decisions under a
// candidate config without calling any backend: `mcptrail policy whatif`.
//
// Each recorded request (one audit row: principal, roles, method, target,
// server, decision, rule) is decided again by the candidate's policy chain
// (proxy.PolicyEvaluator, the code a gateway runs) and the two decisions
// are compared. What the record cannot answer is counted apart, by reason:
// decisions of checks that need what is not recorded (rate limits and
// concurrency caps depend on timing; argument validation and argument
// rules on the arguments, whose payloads are redacted and kept shorter),
// refusals before policy (bad tokens, ambiguous keys, session owners), and
// requests no rule decides (initialize, lists — lists are filtered by the
// same rules as the calls they list).
package whatif

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/recorder"
)

// Request is a recorded request as the audit trail keeps it.
type Request struct {
	Time      time.Time
	RequestID string
	Principal string
	Roles     []string
	Method    string
	Target    string // as the client named it
	Server    string // the backend it was routed to; "" when none
	Decision  string // allowed | denied | none | filtered
	Rule      string
}

// Change kinds.
const (
	NewlyDenied  = "newly_denied"
	NewlyAllowed = "newly_allowed"
	RuleChanged  = "rule_changed" // allowed both times, by another rule
)

// Change is a group of recorded requests whose decision the candidate
// changes the same way.
type Change struct {
	Kind      string `json:"kind"`
	Principal string `json:"principal"`
	Method    string `json:"method"`
	Target    string `json:"target"`
	OldRule   string `json:"old_rule"`
	NewRule   string `json:"new_rule"`
	Count     int    `json:"count"`
	// Example is one such request, for `mcptrail trace`.
	Example string `json:"example_request_id"`
}

// Report is the outcome of a what-if run.
type Report struct {
	Requests     int `json:"requests"`     // recorded requests read
	Evaluated    int `json:"evaluated"`    // decided again and compared
	Unchanged    int `json:"unchanged"`    // the same decision and rule
	NewlyDenied  int `json:"newly_denied"` // allowed then, denied now
	NewlyAllowed int `json:"newly_allowed"`
	RuleChanged  int `json:"rule_changed"`
	// NotEvaluated counts what the record cannot answer, by reason.
	NotEvaluated map[string]int `json:"not_evaluated"`
	Changes      []Change       `json:"changes"`
}

// Changed reports whether the candidate changes any decision.
func (r *Report) Changed() bool { return r.NewlyDenied+r.NewlyAllowed > 0 }

// Reasons a recorded request is not compared.
const (
	SkipNotDecided   = "not decided by policy (initialize, lists, notifications, ping)"
	SkipRefused      = "refused before policy (authentication, ambiguous key, session owner)"
	SkipCompletions  = "completions (the recorded target is not the one their rules match)"
	SkipReload       = "config reloads"
	skipCheckPrefix  = "denied by "
	skipCheckSuffix  = " (needs what is not recorded)"
	maxChangeGroups  = 10000
	maxMemo          = 100000
	rateLimitedCheck = "a rate limit or concurrency cap"
	argumentsCheck   = "argument validation or an argument rule"
)

// tokenRule matches the rules the token and role check records.
var tokenRule = regexp.MustCompile(`^(role:[^/]+/)?(tools|prompts|resources|completions|methods):|^unauthenticated$|^unknown-kind$`)

// Evaluator compares recorded requests with a candidate's decisions.
type Evaluator struct {
	pe    *proxy.PolicyEvaluator
	sep   string
	rep   Report
	group map[Change]*Change
	// memo caches decisions: a month of traffic repeats the same few
	// thousand (principal, roles, method, target) over and over.
	memo map[memoKey]memoVal
}

type memoKey struct{ principal, roles, method, target, server string }

type memoVal struct {
	deny bool
	rule string
}

// New builds an evaluator for a candidate's policy.
func New(pe *proxy.PolicyEvaluator) *Evaluator {
	return &Evaluator{pe: pe, sep: pe.Separator(), group: map[Change]*Change{}, memo: map[memoKey]memoVal{},
		rep: Report{NotEvaluated: map[string]int{}}}
}

// Add compares one recorded request.
func (e *Evaluator) Add(ctx context.Context, r Request) {
	e.rep.Requests++
	kind, target, skip := e.policyTarget(r)
	if skip != "" {
		e.rep.NotEvaluated[skip]++
		return
	}
	wasAllowed := r.Decision != auth.ResultDenied
	if r.Decision == auth.ResultDenied && r.Rule == "" {
		e.rep.NotEvaluated[SkipRefused]++
		return
	}
	byTokens := r.Rule == "" || tokenRule.MatchString(r.Rule)
	deny, rule := e.decide(ctx, r, kind, target)
	if !byTokens && r.Decision == auth.ResultDenied {
		// Denied by a check the record cannot re-run: still denied if
		// the candidate's rules deny it, else unknown.
		if deny {
			e.rep.Evaluated++
			e.rep.Unchanged++
			return
		}
		e.rep.NotEvaluated[skipCheckPrefix+checkOf(r.Rule)+skipCheckSuffix]++
		return
	}
	e.rep.Evaluated++
	var ch string
	switch {
	case wasAllowed && deny:
		ch = NewlyDenied
		e.rep.NewlyDenied++
	case !wasAllowed && !deny:
		ch = NewlyAllowed
		e.rep.NewlyAllowed++
	case !deny && byTokens && r.Rule != rule:
		ch = RuleChanged
		e.rep.RuleChanged++
	default:
		e.rep.Unchanged++
		return
	}
	key := Change{Kind: ch, Principal: r.Principal, Method: r.Method, Target: r.Target, OldRule: r.Rule, NewRule: rule}
	if g := e.group[key]; g != nil {
		g.Count++
		return
	}
	if len(e.group) >= maxChangeGroups {
		key.Principal, key.Target = "(more)", "(more)"
		if g := e.group[key]; g != nil {
			g.Count++
			return
		}
	}
	key.Count, key.Example = 1, r.RequestID
	e.group[Change{Kind: key.Kind, Principal: key.Principal, Method: key.Method, Target: key.Target, OldRule: key.OldRule, NewRule: key.NewRule}] = &key
}

// decide runs the candidate's chain for r; several static tokens held by
// one principal allow what any of them allows (the record does not say
// which was used).
func (e *Evaluator) decide(ctx context.Context, r Request, kind auth.Kind, target string) (deny bool, rule string) {
	k := memoKey{r.Principal, strings.Join(r.Roles, ","), r.Method, target, r.Server}
	if v, ok := e.memo[k]; ok {
		return v.deny, v.rule
	}
	jwt := len(r.Roles) > 0 || strings.HasPrefix(r.Rule, "role:")
	ps := e.pe.Principals(r.Principal, r.Roles, jwt)
	if len(ps) == 0 {
		ps = []*auth.Principal{nil} // not authenticated: the chain denies
	}
	req := proxy.PolicyRequest{Method: r.Method, Kind: kind, Target: target, Server: r.Server}
	deny = true
	for _, p := range ps {
		req.Principal = p
		d := e.pe.Decide(ctx, &req)
		if !d.Deny {
			deny, rule = false, d.Rule
			break
		}
		if rule == "" {
			rule = d.Rule
		}
	}
	if len(e.memo) >= maxMemo {
		clear(e.memo) // unique targets (resource URIs) must not grow it without bound
	}
	e.memo[k] = memoVal{deny, rule}
	return deny, rule
}

// policyTarget maps a recorded request to what the policy chain decides
// on, or says why it is not compared.
func (e *Evaluator) policyTarget(r Request) (auth.Kind, string, string) {
	switch m := r.Method; {
	case m == proxy.MethodReload:
		return 0, "", SkipReload
	case m == "":
		return 0, "", SkipRefused
	case m == "tools/call":
		return auth.Tools, e.nameTarget(r), ""
	case m == "prompts/get":
		return auth.Prompts, e.nameTarget(r), ""
	case m == "resources/read", m == "resources/subscribe", m == "resources/unsubscribe":
		uri := strings.TrimPrefix(r.Target, "mcptrail://"+r.Server+"/")
		return auth.Resources, r.Server + ":" + uri, ""
	case m == "completion/complete":
		return 0, "", SkipCompletions
	case m == "initialize", m == "ping", m == "server/discover", m == "subscriptions/listen",
		strings.HasSuffix(m, "/list"), strings.HasPrefix(m, "notifications/"), strings.HasPrefix(m, "tasks/"):
		return 0, "", SkipNotDecided
	}
	return auth.Methods, r.Method, ""
}

// nameTarget is "<server><sep><tool>" as the backend knows the tool: the
// client's name without its namespace (a server mounted with no_namespace
// has none), or the name as sent when it routed nowhere.
func (e *Evaluator) nameTarget(r Request) string {
	if r.Server == "" {
		return r.Target
	}
	if strings.HasPrefix(r.Target, r.Server+e.sep) {
		return r.Target
	}
	return r.Server + e.sep + r.Target
}

func checkOf(rule string) string {
	switch {
	case strings.HasPrefix(rule, "rate:"), rule == proxy.RuleToolQueue:
		return rateLimitedCheck
	case strings.HasPrefix(rule, "arguments"), strings.HasPrefix(rule, "args"), strings.Contains(rule, "argument"):
		return argumentsCheck
	}
	return "rule " + rule
}

// Report returns the comparison so far, the biggest changes first.
func (e *Evaluator) Report() *Report {
	rep := e.rep
	rep.Changes = make([]Change, 0, len(e.group))
	for _, g := range e.group {
		rep.Changes = append(rep.Changes, *g)
	}
	order := map[string]int{NewlyDenied: 0, NewlyAllowed: 1, RuleChanged: 2}
	sort.Slice(rep.Changes, func(i, j int) bool {
		a, b := rep.Changes[i], rep.Changes[j]
		if a.Kind != b.Kind {
			return order[a.Kind] < order[b.Kind]
		}
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return slices.Compare([]string{a.Principal, a.Target, a.Method, a.NewRule}, []string{b.Principal, b.Target, b.Method, b.NewRule}) < 0
	})
	return &rep
}

// FromEvents turns recorded hops (a bundle) into requests the way the
// store builds audit rows: one per request with a response hop (or only a
// denied auth hop), the auth hop's decision, rule and roles winning.
func FromEvents(evs []recorder.Event) []Request {
	type acc struct {
		r        Request
		response bool
		auth     bool
	}
	var order []string
	byID := map[string]*acc{}
	for i := range evs {
		ev := &evs[i]
		if ev.RequestID == "" {
			continue
		}
		a := byID[ev.RequestID]
		if a == nil {
			a = &acc{r: Request{RequestID: ev.RequestID}}
			byID[ev.RequestID] = a
			order = append(order, ev.RequestID)
		}
		fill := func(dst *string, v string) {
			if *dst == "" {
				*dst = v
			}
		}
		fill(&a.r.Principal, ev.Principal)
		fill(&a.r.Method, ev.Method)
		fill(&a.r.Target, ev.Target)
		fill(&a.r.Server, ev.Server)
		switch ev.Hop {
		case recorder.HopAuth:
			if ev.AuthDecision != "" {
				a.r.Decision, a.r.Rule, a.auth = ev.AuthDecision, ev.AuthRule, true
			}
			if roles := ev.Roles(); roles != nil {
				a.r.Roles = roles
			}
		case recorder.HopResponse:
			a.response = true
			a.r.Time = time.Unix(0, ev.TimeNs)
			if !a.auth {
				fill(&a.r.Decision, ev.AuthDecision)
				fill(&a.r.Rule, ev.AuthRule)
			}
			if a.r.Roles == nil {
				a.r.Roles = ev.Roles()
			}
		}
	}
	out := make([]Request, 0, len(order))
	for _, id := range order {
		a := byID[id]
		if a.response || (a.auth && a.r.Decision == auth.ResultDenied) {
			out = append(out, a.r)
		}
	}
	return out
}
