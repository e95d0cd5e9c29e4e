package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/proxy/toolpin"
	"github.com/mcptrail/mcptrail/recorder"
)

// Tool pinning (issue 11.7, the rug-pull defence). At every catalog
// rebuild each listed tool's definition (toolpin.Of) is compared with its
// pin: the first version seen, or the one an operator approved. A tool
// whose definition differs is recorded (a tool_pins row, an audit event, a
// metric, a WARN) and, by its pinning action, served (warn), hidden and
// refused until approved (hide), or has every tool of its server hidden
// and refused (deny). The refusal is a PolicyCheck in the chain, so a list
// never shows what a call would be refused.
//
// Pins live in memory and, through PinStore, in ClickHouse. They are read
// from the store at start and every pinning.poll_interval (which is how
// approvals made by `mcptrail tools approve` reach a running gateway), and
// new history rows are written from a background loop, so ClickHouse being
// down never blocks a catalog rebuild or a call.

// PinStore keeps the pins and their history (recorder/clickhouse does).
type PinStore interface {
	// LoadPins returns, per server and tool, the pin (its newest pinned
	// or approved event) and the newest changed event, if any.
	LoadPins(ctx context.Context) ([]recorder.PinEvent, error)
	// AppendPins stores events; nil only once they are durable. Writing an
	// event twice is harmless.
	AppendPins(ctx context.Context, evs []recorder.PinEvent) error
}

// Rules recorded for pinning refusals.
const (
	RulePinChanged    = "pinning:hide"
	RulePinServer     = "pinning:deny"
	RulePinUnverified = "pinning:unverified"
)

// MethodToolChanged is the method of the audit event a tool change records.
const MethodToolChanged = "mcptrail/tool_changed"

type pinned struct {
	hash string
	def  []byte
	// local: pinned here while the store's pins were not read yet; the
	// store's pin replaces it once read, else it is written then.
	local bool
}

// pinVerdict is a refusal, its message built once per state.
type pinVerdict struct {
	rule, message string
}

// pinState is what the check reads: only the tools (and servers) refused.
type pinState struct {
	tools   map[toolKey]pinVerdict
	servers map[string]pinVerdict
}

type pinTracker struct {
	// cfg is the current configuration; reconfigure replaces it (hot
	// reload).
	cfg      atomic.Pointer[config.Config]
	sep      string
	store    PinStore // nil: memory only
	logger   *slog.Logger
	instance string
	// onChange hears of a change (the audit event and the metric).
	onChange func(ev recorder.PinEvent)
	// onState hears that the set of refused tools changed (clients are
	// told their tool lists changed).
	onState func()

	state atomic.Pointer[pinState]
	kick  chan struct{}
	// failing: the last read of the store failed (run's goroutine only).
	failing bool

	mu       sync.Mutex
	loaded   bool // the store's pins were read (always, without a store)
	pins     map[toolKey]pinned
	reported map[toolKey]string            // the newest changed hash recorded
	observed map[toolKey]map[string]pinned // from the last catalog rebuild
	defs     map[string]toolpin.Definition // raw tool → definition, last rebuild
	refused  map[toolKey]string            // the refused tools (server-wide: tool "") → rule

	// pending is the history to write to the store, oldest first, within
	// maxPending events and maxPendingBytes (queue): past either bound
	// the oldest event is dropped and counted. A dropped pinned event
	// sets resync, so that the pins the store lacks are queued again once
	// it answers; a dropped changed event is lost from tool_pins (its
	// audit event and metric were recorded when it was seen).
	pending                     []recorder.PinEvent
	pendingBytes                int
	maxPending, maxPendingBytes int
	resync                      bool
	droppedLogged               bool         // since pending was last emptied
	dropped                     atomic.Int64 // events dropped from pending
}

func newPinTracker(cfg *config.Config, sep string, store PinStore, logger *slog.Logger, instance string) *pinTracker {
	t := &pinTracker{
		sep: sep, store: store, logger: logger.With("component", "pinning"), instance: instance,
		kick:     make(chan struct{}, 1),
		loaded:   store == nil,
		pins:     map[toolKey]pinned{},
		reported: map[toolKey]string{},
		observed: map[toolKey]map[string]pinned{},

		maxPending: maxPendingPins, maxPendingBytes: maxPendingPinBytes,
	}
	t.cfg.Store(cfg)
	t.state.Store(&pinState{})
	return t
}

// reconfigure applies a new configuration's pinning actions to what is
// observed now (hot reload): a tool refused under hide may be served under
// warn, and the other way round. The pins themselves are kept.
func (t *pinTracker) reconfigure(cfg *config.Config) {
	if old := t.cfg.Swap(cfg); old.PinningPollInterval() != cfg.PinningPollInterval() {
		t.wake() // run rearms its ticker with the new interval
	}
	t.mu.Lock()
	changes, stateChanged := t.evaluateLocked()
	t.mu.Unlock()
	t.report(changes, stateChanged)
}

// canDeny reports whether any tool may be refused: some action is hide or
// deny. Otherwise the check stays out of the chain (it would allow all).
func (t *pinTracker) canDeny() bool { return pinningCanDeny(t.cfg.Load()) }

// pinningCanDeny reports whether cfg sets hide or deny anywhere.
func pinningCanDeny(cfg *config.Config) bool {
	deny := func(a string) bool { return a == config.PinningHide || a == config.PinningDeny }
	if deny(cfg.Pinning.OnChange) {
		return true
	}
	for _, s := range cfg.Servers {
		if deny(s.Pinning) {
			return true
		}
		for _, ts := range s.Tools {
			if deny(ts.Pinning) {
				return true
			}
		}
	}
	return false
}

var _ PolicyCheck = (*pinTracker)(nil)

func (t *pinTracker) Name() string { return "pinning" }

// Check refuses a tool whose definition differs from its pin under hide,
// every tool of a server with such a tool under deny, and, while the pins
// could not be read, tools not pinned yet under hide or deny. It does not
// allocate.
func (t *pinTracker) Check(_ context.Context, r *PolicyRequest) PolicyDecision {
	if r.Kind != auth.Tools || r.Server == "" {
		return PolicyDecision{}
	}
	st := t.state.Load()
	if len(st.tools) == 0 && len(st.servers) == 0 {
		return PolicyDecision{}
	}
	if v, ok := st.servers[r.Server]; ok {
		return PolicyDecision{Deny: true, Rule: v.rule, Message: v.message}
	}
	n := len(r.Server) + len(t.sep)
	if len(r.Target) <= n || r.Target[:len(r.Server)] != r.Server || r.Target[len(r.Server):n] != t.sep {
		return PolicyDecision{}
	}
	if v, ok := st.tools[toolKey{r.Server, r.Target[n:]}]; ok {
		return PolicyDecision{Deny: true, Rule: v.rule, Message: v.message}
	}
	return PolicyDecision{}
}

// observe takes the tools of every catalog the gateway serves (the primary
// one and each capability profile's) after a rebuild.
func (t *pinTracker) observe(cats []*catalog) {
	t.mu.Lock()
	obs := map[toolKey]map[string]pinned{}
	next := make(map[string]toolpin.Definition, len(t.defs))
	for _, c := range cats {
		for _, it := range c.items[listTools] {
			name := it.target[len(it.server)+len(t.sep):]
			d, ok := next[string(it.raw)]
			if !ok {
				if d, ok = t.defs[string(it.raw)]; !ok {
					d = toolpin.Of(it.raw)
				}
				next[string(it.raw)] = d
			}
			k := toolKey{it.server, name}
			if obs[k] == nil {
				obs[k] = map[string]pinned{}
			}
			obs[k][d.Hash] = pinned{hash: d.Hash, def: d.Canonical}
		}
	}
	t.defs, t.observed = next, obs
	changes, stateChanged := t.evaluateLocked()
	t.mu.Unlock()
	t.report(changes, stateChanged)
	t.wake()
}

// evaluateLocked compares what is observed with the pins, pins what is new,
// queues what changed for the store, and publishes the refusals. mu held;
// the caller reports the changes (report) once it is released.
func (t *pinTracker) evaluateLocked() (changes []recorder.PinEvent, stateChanged bool) {
	cfg := t.cfg.Load()
	now := time.Now().UnixNano()
	st := &pinState{tools: map[toolKey]pinVerdict{}, servers: map[string]pinVerdict{}}
	for _, k := range slices.SortedFunc(maps.Keys(t.observed), compareToolKey) {
		seen := t.observed[k]
		action := cfg.PinningFor(k.server, k.tool)
		if action == config.PinningOff {
			continue
		}
		pin, ok := t.pins[k]
		if !ok {
			// First seen: pin it. Of several versions at once (capability
			// profiles listing different ones), the smallest hash, so
			// that every gateway pins the same. Before the store's pins
			// are read the pin is only local (merge settles it).
			pin = seen[slices.Min(slices.Collect(maps.Keys(seen)))]
			pin.local = !t.loaded
			t.pins[k] = pin
			if t.loaded {
				t.queue(t.pinnedEvent(k, pin, now))
			}
		}
		if pin.local && action != config.PinningWarn {
			// It may be a changed version of a pin in the store.
			st.tools[k] = pinVerdict{RulePinUnverified, "mcptrail: tool " + k.server + t.sep + k.tool +
				" is hidden until its pin can be read: the pin store (ClickHouse) has been unreachable since the gateway started"}
			continue
		}
		for _, h := range slices.Sorted(maps.Keys(seen)) {
			if h == pin.hash {
				continue
			}
			if t.reported[k] != h {
				t.reported[k] = h
				diff, _ := json.Marshal(toolpin.Diff(pin.def, seen[h].def))
				ev := recorder.PinEvent{TimeNs: now, Server: k.server, Tool: k.tool, Kind: recorder.PinChanged,
					Hash: h, PrevHash: pin.hash, Definition: string(seen[h].def), Diff: string(diff), Action: action, Actor: t.instance}
				t.queue(ev)
				changes = append(changes, ev)
			}
			full := k.server + t.sep + k.tool
			approve := " Approve it with: mcptrail tools approve " + full + " --hash " + h
			switch action {
			case config.PinningHide:
				st.tools[k] = pinVerdict{RulePinChanged, "mcptrail: tool " + full + " changed since it was pinned (sha256 " +
					toolpin.Short(pin.hash) + " → " + toolpin.Short(h) + "); it is hidden until the change is approved." + approve}
			case config.PinningDeny:
				st.servers[k.server] = pinVerdict{RulePinServer, "mcptrail: tool " + full + " changed since it was pinned (sha256 " +
					toolpin.Short(pin.hash) + " → " + toolpin.Short(h) + "); every tool of server " + k.server +
					" is refused until the change is approved." + approve}
			}
		}
	}
	refused := map[toolKey]string{}
	for k, v := range st.tools {
		refused[k] = v.rule
	}
	for s, v := range st.servers {
		refused[toolKey{server: s}] = v.rule
	}
	stateChanged = !maps.Equal(refused, t.refused)
	t.refused = refused
	t.state.Store(st)
	return changes, stateChanged
}

// report logs and records changes, and tells clients when what is refused
// changed.
func (t *pinTracker) report(changes []recorder.PinEvent, stateChanged bool) {
	for _, ev := range changes {
		t.logger.Warn("tool changed since it was pinned", "server", ev.Server, "tool", ev.Tool, "action", ev.Action,
			"pinned_sha256", ev.PrevHash, "sha256", ev.Hash, "diff", toolpin.Render(decodeChanges(ev.Diff)))
		if t.onChange != nil {
			t.onChange(ev)
		}
	}
	if stateChanged && t.onState != nil {
		t.onState()
	}
}

func (t *pinTracker) pinnedEvent(k toolKey, pin pinned, now int64) recorder.PinEvent {
	return recorder.PinEvent{TimeNs: now, Server: k.server, Tool: k.tool, Kind: recorder.PinPinned,
		Hash: pin.hash, Definition: string(pin.def), Actor: t.instance}
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func decodeChanges(s string) []toolpin.Change {
	var cs []toolpin.Change
	_ = json.Unmarshal([]byte(s), &cs)
	return cs
}

func (t *pinTracker) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run syncs with the store until ctx ends: it reads the pins (at once, then
// every poll interval, or at a kick when they were never read) and writes
// pending history.
func (t *pinTracker) run(ctx context.Context) {
	if t.store == nil {
		return
	}
	tick := time.NewTicker(t.cfg.Load().PinningPollInterval())
	defer tick.Stop()
	for {
		t.sync(ctx)
		select {
		case <-ctx.Done():
			t.flush(context.WithoutCancel(ctx), time.Second)
			return
		case <-tick.C:
		case <-t.kick:
		}
		tick.Reset(t.cfg.Load().PinningPollInterval()) // a reload may change it
	}
}

// sync reads the pins, merges them, then writes what is pending.
func (t *pinTracker) sync(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	evs, err := t.store.LoadPins(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && !t.failing {
			t.logger.Warn("reading tool pins failed; enforcing the pins in memory until the store answers", "err", err)
		}
		t.failing = true
		return
	}
	if t.failing {
		t.logger.Info("reading tool pins again")
		t.failing = false
	}
	t.mu.Lock()
	t.merge(evs)
	changes, stateChanged := t.evaluateLocked()
	pending := t.takePending()
	t.mu.Unlock()
	t.report(changes, stateChanged)
	if len(pending) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = t.store.AppendPins(wctx, pending)
	cancel()
	if err != nil {
		t.logger.Warn("writing tool pin history failed; retrying", "events", len(pending), "err", err)
		t.mu.Lock()
		newer := t.takePending()
		for _, ev := range append(pending, newer...) {
			t.queue(ev)
		}
		t.mu.Unlock()
	}
}

// merge makes the store's pins the truth: an approval there replaces the
// pin in memory; a pin made here while the store was unread gives way to
// the store's. mu held.
func (t *pinTracker) merge(evs []recorder.PinEvent) {
	stored := map[toolKey]bool{}
	for _, ev := range evs {
		k := toolKey{ev.Server, ev.Tool}
		switch ev.Kind {
		case recorder.PinPinned, recorder.PinApproved:
			stored[k] = true
			if cur, ok := t.pins[k]; !ok || cur.hash != ev.Hash || cur.local {
				if ok && t.loaded && cur.hash != ev.Hash {
					t.logger.Info("tool pin replaced from the store", "server", ev.Server, "tool", ev.Tool, "kind", ev.Kind,
						"sha256", ev.Hash, "by", ev.Actor)
				}
				t.pins[k] = pinned{hash: ev.Hash, def: []byte(ev.Definition)}
			}
		case recorder.PinChanged:
			if _, ok := t.reported[k]; !ok {
				t.reported[k] = ev.Hash
			}
		}
	}
	if !t.loaded {
		now := time.Now().UnixNano()
		for k, p := range t.pins {
			if p.local {
				p.local = false
				t.pins[k] = p
				t.queue(t.pinnedEvent(k, p, now))
			}
		}
	}
	if t.resync {
		// Pinned events were dropped while the store was down: write
		// the pins it lacks again (not already waiting in pending).
		waiting := map[toolKey]bool{}
		for _, ev := range t.pending {
			if ev.Kind == recorder.PinPinned {
				waiting[toolKey{ev.Server, ev.Tool}] = true
			}
		}
		now := time.Now().UnixNano()
		for _, k := range slices.SortedFunc(maps.Keys(t.pins), compareToolKey) {
			if !stored[k] && !waiting[k] && !t.pins[k].local {
				t.queue(t.pinnedEvent(k, t.pins[k], now))
			}
		}
		t.resync = false
	}
	t.loaded = true
}

// Bounds of the pin history waiting for the store (pinTracker.pending):
// about an hour of a backend changing a tool every second, within what a
// gateway can hold without notice.
const (
	maxPendingPins     = 4096
	maxPendingPinBytes = 8 << 20
)

// queue adds ev to the history waiting for the store, dropping (and
// counting) the oldest events past the bounds; it never blocks. mu held.
func (t *pinTracker) queue(ev recorder.PinEvent) {
	t.pending = append(t.pending, ev)
	t.pendingBytes += pinEventSize(ev)
	for len(t.pending) > 0 && (len(t.pending) > t.maxPending || t.pendingBytes > t.maxPendingBytes) {
		old := t.pending[0]
		t.pending[0] = recorder.PinEvent{} // let its strings go
		t.pending = t.pending[1:]
		t.pendingBytes -= pinEventSize(old)
		t.dropped.Add(1)
		if old.Kind == recorder.PinPinned {
			t.resync = true
		}
		if !t.droppedLogged {
			t.droppedLogged = true
			t.logger.Warn("tool pin history waiting for the store is full: dropping the oldest events (counted in mcptrail_pinning_events_dropped_total)",
				"max_events", t.maxPending, "max_bytes", t.maxPendingBytes)
		}
	}
}

// takePending empties pending and returns what it held. mu held.
func (t *pinTracker) takePending() []recorder.PinEvent {
	p := t.pending
	t.pending, t.pendingBytes, t.droppedLogged = nil, 0, false
	return p
}

// pinEventSize is what ev costs in memory, roughly.
func pinEventSize(ev recorder.PinEvent) int {
	return 128 + len(ev.Server) + len(ev.Tool) + len(ev.Kind) + len(ev.Hash) + len(ev.PrevHash) +
		len(ev.Definition) + len(ev.Diff) + len(ev.Action) + len(ev.Actor)
}

func compareToolKey(a, b toolKey) int {
	if a.server != b.server {
		return compareStr(a.server, b.server)
	}
	return compareStr(a.tool, b.tool)
}

// flush writes what is pending, within d.
func (t *pinTracker) flush(ctx context.Context, d time.Duration) {
	t.mu.Lock()
	pending := t.takePending()
	loaded := t.loaded
	t.mu.Unlock()
	if len(pending) == 0 || !loaded {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := t.store.AppendPins(ctx, pending); err != nil {
		t.logger.Warn("tool pin history lost at shutdown", "events", len(pending), "err", err)
	}
}

// recordToolChange records a change as an audit event of the gateway's
// own: a response hop of method mcptrail/tool_changed, principal mcptrail,
// whose rule says what was done and whose message carries both hashes and
// the diff.
func (g *Gateway) recordToolChange(ev recorder.PinEvent) {
	g.metrics.toolChanged(context.Background(), ev.Server, ev.Action)
	if g.rec == nil {
		return
	}
	decision, outcome := auth.ResultAllowed, recorder.OutcomeOK
	if ev.Action != config.PinningWarn {
		decision, outcome = auth.ResultDenied, recorder.OutcomeDenied
	}
	e := &recorder.Event{
		RequestID: NewRequestID(), Hop: recorder.HopResponse, TimeNs: ev.TimeNs,
		Method: MethodToolChanged, Server: ev.Server, Target: ev.Server + g.sep() + ev.Tool, Backend: ev.Server,
		Principal: auth.Gateway, AuthDecision: decision, AuthRule: "pinning:" + ev.Action, Outcome: outcome,
		ErrorMessage: "tool " + ev.Server + g.sep() + ev.Tool + " changed: sha256 " + ev.PrevHash + " → " + ev.Hash + "\n" +
			toolpin.Render(decodeChanges(ev.Diff)),
		Attrs: []recorder.Attr{{Key: "pinning.old_sha256", Value: ev.PrevHash}, {Key: "pinning.new_sha256", Value: ev.Hash},
			{Key: "pinning.action", Value: ev.Action}},
	}
	g.redactOwn(e)
	_ = g.rec.Record(e)
}

// pinsChanged tells every client that its tool list may have changed: a
// tool was hidden or shown again by pinning (the catalog itself did not
// change, so no rebuild says so).
func (g *Gateway) pinsChanged() {
	msg := jsonrpc.NewNotification(listChangedMethods[listTools], nil).Marshal()
	g.sessions.Range(func(s *Session) bool {
		s.push(msg)
		return true
	})
	g.listChangedToListeners(jsonrpc.NewNotification(listChangedMethods[listTools], nil))
}
