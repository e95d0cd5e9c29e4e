package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/proxy/argrules"
	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// Hot reload. Everything the gateway derives from its configuration that a
// reload may change is held in two immutable values swapped atomically:
//
//   - a policySet: the config itself, the authenticator (tokens, OAuth,
//     roles), the policy chain, argument rules, output filters, rate limits
//     and per-tool concurrency gates;
//   - a backendSet: the backends in configured order.
//
// A request takes the policySet once, when it starts, and keeps it to the
// end: an in-flight call finishes under the config it started with, and no
// request ever sees half of one config and half of another. A new set is
// built completely (and fails as a whole) before it is swapped in, so there
// is no moment without policy. Backends whose config is unchanged keep
// their connections and sessions; added ones start, removed (or changed)
// ones leave the routing at once and are closed once their in-flight
// calls have finished.

// policySet is one configuration's policy, immutable once built.
type policySet struct {
	cfg        *config.Config
	auth       *auth.Authenticator
	policies   []PolicyCheck // the token rules first, then Options.Policies
	argRules   map[toolKey][]*argrules.Rule
	outFilters *outputFilters
	rates      *rateLimits
	toolGates  map[string]*toolGate
	origins    originSet // allowed_origins
}

// newPolicySet compiles cfg's policy. Rate limit buckets and per-tool
// concurrency gates whose settings did not change are carried over from
// prev, so a reload neither refills a bucket nor lets a gate's queue
// overrun its cap.
func newPolicySet(cfg *config.Config, o Options, out JSONRedactor, prev *policySet, shared sharedStore, pins *pinTracker) (*policySet, error) {
	toks := make([]auth.Token, 0, len(cfg.Auth.Tokens))
	for _, t := range cfg.Auth.Tokens {
		toks = append(toks, auth.Token{Name: t.Name, SHA256: t.SHA256, Principal: t.Principal,
			Tools: t.Tools, Prompts: t.Prompts, Resources: t.Resources, Completions: t.Completions, Methods: t.Methods})
	}
	a, err := auth.NewWithOAuth(toks, oauthConfig(cfg.Auth))
	if err != nil {
		return nil, fmt.Errorf("configuring auth: %w", err)
	}
	sep := cmp.Or(cfg.NamespaceSeparator, config.DefaultNamespaceSeparator)
	ps := &policySet{cfg: cfg, auth: a, origins: newOriginSet(cfg.AllowedOrigins)}
	ps.policies = []PolicyCheck{tokenCheck{enabled: a.Enabled(), sep: sep}}
	if pins != nil && pinningCanDeny(cfg) {
		ps.policies = append(ps.policies, pins)
	}
	ps.policies = append(ps.policies, o.Policies...)
	if ps.argRules, err = compileArgRules(cfg.Servers); err != nil {
		return nil, err
	}
	if ps.outFilters, err = compileOutputFilters(cfg.Servers, out); err != nil {
		return nil, err
	}
	ps.rates, ps.toolGates = newRateLimits(cfg, sep), newToolGates(cfg, sep)
	if shared != nil {
		ps.rates.shared, ps.rates.failOpen = shared, cfg.Redis.RateLimitFailOpen
	}
	if prev != nil {
		if prev.rates.sameSpecs(ps.rates) {
			ps.rates = prev.rates
		}
		for k, gate := range ps.toolGates {
			if old := prev.toolGates[k]; old != nil && old.limit == gate.limit && old.queueMax == gate.queueMax {
				ps.toolGates[k] = old
			}
		}
	}
	return ps, nil
}

// policyOn reports whether any check can deny: with authentication off and
// no other check, nothing is decided (and nothing recorded as decided).
func (ps *policySet) policyOn() bool { return ps.auth.Enabled() || len(ps.policies) > 1 }

// backendSet is the backends of one configuration, immutable once built.
type backendSet struct {
	order  []string
	list   []*Backend // in order
	byName map[string]*Backend
}

func newBackendSet(list []*Backend) *backendSet {
	s := &backendSet{list: list, byName: make(map[string]*Backend, len(list))}
	for _, b := range list {
		s.order = append(s.order, b.Name())
		s.byName[b.Name()] = b
	}
	return s
}

// ps is the current policy; a request takes it once and keeps it.
func (g *Gateway) ps() *policySet { return g.pol.Load() }

// conf is the current configuration.
func (g *Gateway) conf() *config.Config { return g.pol.Load().cfg }

// Config is the configuration in force: the one the gateway was built
// with, or the last one a reload applied. It must not be modified.
func (g *Gateway) Config() *config.Config { return g.conf() }

// bs is the current set of backends.
func (g *Gateway) bs() *backendSet { return g.backendSet.Load() }

// ReloadResult says what a reload changed.
type ReloadResult struct {
	// HashBefore and HashAfter are the hashes of the config in force
	// before and after; Candidate the hash of the file that was loaded
	// (equal to HashAfter unless the reload was rejected; "" when it did
	// not load).
	HashBefore, HashAfter, Candidate string
	// Added, Removed and Restarted name backends; the others kept their
	// connections and sessions.
	Added, Removed, Restarted []string
}

// Changed reports whether the reload changed anything.
func (r ReloadResult) Changed() bool { return r.HashBefore != r.HashAfter }

// String summarizes the result for logs and the audit trail.
func (r ReloadResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s → %s", short(r.HashBefore), short(r.HashAfter))
	for _, part := range []struct {
		what  string
		names []string
	}{{"added", r.Added}, {"removed", r.Removed}, {"restarted", r.Restarted}} {
		if len(part.names) > 0 {
			fmt.Fprintf(&b, "; %s %s", part.what, strings.Join(part.names, ","))
		}
	}
	return b.String()
}

func short(h string) string { return h[:min(len(h), 12)] }

// ReloadStatus is the outcome of the last reload, for /statusz.
type ReloadStatus struct {
	// ConfigHash is the hash of the config in force.
	ConfigHash string `json:"config_hash"`
	// Reloads and Failures count reload attempts that were applied or
	// rejected since start.
	Reloads  int64 `json:"reloads"`
	Failures int64 `json:"failures"`
	// LastAt is the time of the last attempt; LastError its error when it
	// was rejected (the previous config stayed in force).
	LastAt    time.Time `json:"last_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// reloadState serializes reloads and remembers the last outcome.
type reloadState struct {
	mu     sync.Mutex // one reload at a time
	status ReloadStatus
	// removed remembers backends a reload removed, so that a call naming
	// one of their tools is told why it is unknown.
	removed map[string]bool
}

// ErrRestartRequired wraps a reload refused because it changes a setting
// that only a restart applies.
var ErrRestartRequired = errors.New("only a restart applies this change")

// restartOnly lists settings a running gateway cannot change: they shape
// listeners, the recorder, the cache or every name in the catalog.
func restartOnly(old, next *config.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("listen", old.Listen, next.Listen)
	diff("namespace_separator", old.NamespaceSeparator, next.NamespaceSeparator)
	diff("instance", old.Instance, next.Instance)
	diff("cache", old.Cache, next.Cache)
	diff("admin.listen", old.Admin.Listen, next.Admin.Listen)
	diff("recorder", old.Recorder, next.Recorder)
	diff("redis", old.Redis, next.Redis)
	diff("sessions", sessionsRestartOnly(old.Sessions), sessionsRestartOnly(next.Sessions))
	diff("limits.read_header_timeout", old.Limits.ReadHeaderTimeout, next.Limits.ReadHeaderTimeout)
	diff("limits.idle_timeout", old.Limits.IdleTimeout, next.Limits.IdleTimeout)
	diff("limits.body_read_timeout", old.Limits.BodyReadTimeout, next.Limits.BodyReadTimeout)
	return keys
}

// ReloadFile loads the config at path, applies prepare to it (the command
// line's overrides; may be nil), and swaps it in, recording the attempt
// (trigger names its cause: "sighup", "file", ...). It fails, leaving the
// config in force untouched, when the file does not load or validate, when
// it changes a restart-only setting or would turn authentication off: such
// a reload is logged, recorded and counted. Calls in flight finish under
// the config they started with. A file with the hash of the config in
// force changes nothing and is not recorded.
func (g *Gateway) ReloadFile(ctx context.Context, path string, prepare func(*config.Config), trigger string) (ReloadResult, error) {
	return g.reloadWith(ctx, path, func() (*config.Config, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		if prepare != nil {
			prepare(cfg)
		}
		return cfg, nil
	}, trigger)
}

func (g *Gateway) reloadWith(ctx context.Context, path string, load func() (*config.Config, error), trigger string) (ReloadResult, error) {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	cur := g.conf().Hash
	res := ReloadResult{HashBefore: cur, HashAfter: cur}
	next, err := load()
	if err == nil {
		if next.Hash == cur && next.Hash != "" {
			g.logger.Debug("config reload: unchanged", "trigger", trigger, "config", path)
			return res, nil
		}
		res, err = g.swap(next)
		res.Candidate = next.Hash
	}
	now := time.Now()
	g.reload.status.LastAt = now
	if err != nil {
		g.reload.status.Failures++
		g.reload.status.LastError = err.Error()
		g.logger.Error("config reload rejected; the previous config stays in force", "trigger", trigger, "config", path, "err", err)
	} else {
		g.reload.status.Reloads++
		g.reload.status.LastError = ""
		g.logger.Info("config reloaded", "trigger", trigger, "config", path, "summary", res.String())
	}
	g.metrics.configReload(ctx, err == nil)
	g.recordReload(now, path, trigger, res, err)
	return res, err
}

// swap builds next's policy and backends and swaps them in.
func (g *Gateway) swap(next *config.Config) (ReloadResult, error) {
	cur := g.ps()
	res := ReloadResult{HashBefore: cur.cfg.Hash, HashAfter: next.Hash}
	if keys := restartOnly(cur.cfg, next); len(keys) > 0 {
		res.HashAfter = res.HashBefore
		return res, fmt.Errorf("%s changed: %w", strings.Join(keys, ", "), ErrRestartRequired)
	}
	ps, err := newPolicySet(next, g.opts, g.outRedactor, cur, g.shared, g.pins)
	if err != nil {
		res.HashAfter = res.HashBefore
		return res, err
	}
	if cur.auth.Enabled() && !ps.auth.Enabled() {
		// A file caught half-written, or an auth section lost in an
		// edit, must not open the gateway to everyone.
		res.HashAfter = res.HashBefore
		return res, fmt.Errorf("auth: a reload cannot turn authentication off (no tokens and no oauth left): %w", ErrRestartRequired)
	}
	if cur.cfg.Admin.TokenSHA256 != "" && next.Admin.TokenSHA256 == "" {
		// Likewise for the admin endpoints: a lost admin section must
		// not open them (on admin.listen they would answer anyone).
		res.HashAfter = res.HashBefore
		return res, fmt.Errorf("admin.token_sha256: a reload cannot remove the admin token: %w", ErrRestartRequired)
	}
	// Backends: keep the unchanged ones as they are, start new ones, and
	// retire removed or changed ones.
	old := g.bs()
	var (
		list    []*Backend
		started []*Backend
		retired []*Backend
	)
	keep := map[string]bool{}
	for _, s := range next.Servers {
		if b := old.byName[s.Name]; b != nil && reflect.DeepEqual(b.cfg, s) {
			list = append(list, b)
			keep[s.Name] = true
			continue
		}
		nb := g.newBackend(s)
		list = append(list, nb)
		started = append(started, nb)
		if old.byName[s.Name] != nil {
			res.Restarted = append(res.Restarted, s.Name)
		} else {
			res.Added = append(res.Added, s.Name)
		}
	}
	for _, b := range old.list {
		if !keep[b.Name()] {
			retired = append(retired, b)
			if !slices.Contains(res.Restarted, b.Name()) {
				res.Removed = append(res.Removed, b.Name())
			}
		}
	}
	// Policy first: a new backend's tools must never be served before the
	// rules that govern them are in force. The policy of a removed
	// backend's tools goes with it, but its calls in flight keep theirs.
	// The pins are kept; the actions of the new config apply to the
	// tools observed already.
	g.pins.reconfigure(next)
	g.sealed.setLifetime(next.Sessions.Lifetime)
	g.pol.Store(ps)
	select {
	case g.reloaded <- struct{}{}:
	default:
	}
	g.backendSet.Store(newBackendSet(list))
	// Under reload.mu (reloadWith).
	if g.reload.removed == nil {
		g.reload.removed = map[string]bool{}
	}
	for _, name := range res.Removed {
		g.reload.removed[name] = true
	}
	for _, name := range res.Added {
		delete(g.reload.removed, name)
	}
	if len(started) > 0 || len(retired) > 0 {
		g.backendChanged(nil)
	}
	for _, b := range started {
		g.startBackend(b)
	}
	for _, b := range retired {
		g.retire(b)
	}
	return res, nil
}

// newBackend builds a backend of the gateway; it starts nothing.
func (g *Gateway) newBackend(s config.Server) *Backend {
	b := newBackend(s, g, g.client, g.logger)
	b.version = g.version
	if g.opts.Now != nil {
		b.brk = newBreakers(s.Breaker, g.opts.Now)
	}
	return b
}

// startBackend runs b's connection loop until b is retired or the gateway
// stops.
func (g *Gateway) startBackend(b *Backend) {
	ctx, cancel := context.WithCancel(g.ctx)
	b.gctx, b.stop = ctx, cancel
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		b.run(ctx, cmp.Or(b.cfg.HealthInterval, g.opts.HealthInterval))
	}()
}

// retire closes a backend a reload removed once its calls in flight have
// finished (or after the shutdown timeout, as a shutdown would).
func (g *Gateway) retire(b *Backend) {
	b.retired.Store(true)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		deadline := time.NewTimer(cmp.Or(g.conf().ShutdownTimeout, config.DefaultShutdownTimeout))
		defer deadline.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for b.busy() {
			select {
			case <-deadline.C:
				g.logger.Warn("removed backend closed with calls in flight", "server", b.Name())
				b.stop()
				return
			case <-g.ctx.Done():
				return
			case <-tick.C:
			}
		}
		b.stop()
		g.logger.Info("removed backend closed", "server", b.Name())
	}()
}

// removedHint explains an unknown name that belongs to a backend a reload
// removed; "" otherwise.
func (g *Gateway) removedHint(name string) string {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	sep := g.sep()
	for server := range g.reload.removed {
		if strings.HasPrefix(name, server+sep) {
			return " (server " + server + " was removed from the configuration)"
		}
	}
	return ""
}

// ReloadStatus is the outcome of the reloads so far.
func (g *Gateway) ReloadStatus() ReloadStatus {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	st := g.reload.status
	st.ConfigHash = g.conf().Hash
	return st
}

// Reload hop attributes: the config hashes before and after, and what
// changed.
const (
	AttrConfigHashBefore = "config.hash_before"
	AttrConfigHashAfter  = "config.hash_after"
	AttrConfigChanges    = "config.changes"
	// AttrConfigHashCandidate is the hash of the file a reload loaded,
	// whether or not it was applied.
	AttrConfigHashCandidate = "config.hash_candidate"
	// MethodReload is the method of a reload's audit record.
	MethodReload = "mcptrail/reload"
)

// recordReload writes a reload to the audit trail: one response hop with
// method mcptrail/reload, the config path as target, the trigger as rule,
// decision allowed (applied) or denied (rejected, with the reason), and
// the hashes before and after as attributes.
func (g *Gateway) recordReload(at time.Time, path, trigger string, res ReloadResult, err error) {
	if g.rec == nil {
		return
	}
	e := &recorder.Event{
		EventID: NewRequestID(), RequestID: NewRequestID(), Hop: recorder.HopResponse, TimeNs: at.UnixNano(),
		DurationUs: time.Since(at).Microseconds(), Method: MethodReload, Target: path, Principal: auth.Gateway,
		AuthDecision: auth.ResultAllowed, AuthRule: "reload:" + trigger,
		GatewayInstance: g.instance, GatewayVersion: g.version, ConfigHash: g.conf().Hash,
		Attrs: []recorder.Attr{
			{Key: AttrConfigHashBefore, Value: res.HashBefore},
			{Key: AttrConfigHashAfter, Value: res.HashAfter},
			{Key: AttrConfigChanges, Value: res.String()},
			{Key: AttrConfigHashCandidate, Value: res.Candidate},
		},
	}
	if err != nil {
		e.AuthDecision, e.Outcome, e.ErrorMessage = auth.ResultDenied, recorder.OutcomeDenied, err.Error()
	}
	if g.redactor != nil {
		e.RedactionVersion = g.redactor.Version()
		redactFields(g.redactor, e)
	} else {
		capIdentifiers(e)
	}
	_ = g.rec.Record(e)
}
