// Package proxy is mcptrail's gateway: it serves MCP to clients, aggregates
// many backend MCP servers under namespaces, applies policy, and relays every
// message at the JSON-RPC level so that what it does not route passes
// unchanged. Every hop carries a request ID and a trace, and is handed to a
// Recorder.
package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/singleflight"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/h1"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// DefaultVersion is the gateway's version when Options.Version is empty.
const DefaultVersion = "dev"

// Protocol versions the gateway speaks with clients, newest first.
const (
	protocol2026          = "2026-07-28"
	defaultBackendVersion = "2025-11-25"
	latestLegacyVersion   = "2025-11-25"
)

var clientVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// Meta keys the gateway stamps into params._meta and result._meta.
const (
	MetaRequestID = "mcptrail.dev/request-id"
	// HeaderRequestID carries the request ID on HTTP hops.
	HeaderRequestID = "X-Request-Id"
)

// Recorder receives hop events. Record must not block; it takes ownership of
// the event. It returns an error only when the recorder refuses the event
// under a fail-closed policy.
type Recorder interface {
	Record(ev *recorder.Event) error
}

// Redactor redacts payloads and strings before they are recorded or logged.
type Redactor interface {
	Payload(b []byte) (out []byte, count int, truncated bool, sha256hex string)
	String(s string) (string, int)
	Version() string
}

// Options configure a Gateway. Config is required; everything else has a
// working default.
type Options struct {
	Config *config.Config
	// Version is this build's version (cmd sets it at build time): the
	// gateway's serverInfo and clientInfo, /statusz, metrics and every
	// recorded event carry it. Default DefaultVersion.
	Version        string
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider // default: no-op (tracing off)
	// MeterProvider receives the gateway's metrics (requests, durations,
	// policy decisions, sessions, streams, backends and, when the Recorder
	// implements RecorderStats, the recorder's counters); nil: none.
	MeterProvider metric.MeterProvider
	// MetricsHandler, when set, is served at /metrics next to /statusz
	// (for example the Prometheus exposition of MeterProvider).
	MetricsHandler http.Handler
	// Console, when set, is served under /console/ next to /statusz,
	// behind the same admin check (the web console). When it implements
	// AdminDenier it renders its own refusals (a login form).
	Console    http.Handler
	Propagator propagation.TextMapPropagator
	Recorder   Recorder // nil: nothing recorded
	Redactor   Redactor // nil: payloads are not recorded
	// OutputRedactor applies the recorder's redaction rules to what tools
	// return (servers[].output.redact), with recording on or off; default
	// Redactor when it can redact JSON.
	OutputRedactor JSONRedactor
	// DeferRedactionBytes: events whose payloads total at most this many
	// bytes reach the Recorder with their payloads unredacted, and, when it
	// is above 0, every event reaches it with its other strings
	// unredacted (Event.Unredacted), for it to redact off the hot path
	// with RedactEvent. 0 redacts everything here.
	DeferRedactionBytes int
	// HealthInterval is how often an idle backend is pinged; default 5s.
	// Pings feed the circuit breakers and readiness.
	HealthInterval time.Duration
	// Now is the clock of the circuit breakers; default time.Now. Tests
	// move it instead of sleeping.
	Now func() time.Time
	// PageSize is the number of items per page of merged lists; default 100.
	PageSize int
	// ServerRequestTimeout bounds how long a backend's sampling/elicitation
	// request waits for the client; default 5m.
	ServerRequestTimeout time.Duration
	// Policies are checks run after the token rules of Config.Auth (and
	// tool pinning), in order, on every request and list item; the first
	// denial wins.
	Policies []PolicyCheck
	// PinStore keeps tool pins and their history (pinning); nil keeps
	// them in memory for the life of the gateway.
	PinStore PinStore
}

// Gateway is the routing proxy. Create it with New, then Start it and serve
// Handler(); Shutdown stops it.
type Gateway struct {
	// cache holds tools' results (cache.go); flight shares identical
	// cached calls in flight.
	cache  *resultCache
	flight singleflight.Group
	// readOnlySeen remembers each tool's readOnlyHint (string → bool) for
	// while its server is down (resilience.go).
	readOnlySeen sync.Map

	logger   *slog.Logger
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	rec      Recorder
	redactor Redactor
	// pol is the policy in force (reload.go): config, authenticator,
	// policy chain, argument rules, output filters, rate limits and
	// per-tool concurrency caps, swapped whole by a reload.
	pol         atomic.Pointer[policySet]
	outRedactor JSONRedactor
	// pins is tool pinning (pins.go); it outlives reloads and every
	// policy set's chain holds it.
	pins       *pinTracker
	reload     reloadState
	opts       Options
	instance   string
	version    string          // Options.Version
	serverInfo json.RawMessage // {"name":"mcptrail","version":…}

	// backendSet is the backends in force, swapped by a reload; client
	// is the HTTP client they share.
	backendSet atomic.Pointer[backendSet]
	client     *http.Client
	catalog    atomic.Pointer[catalog]
	catMu      sync.Mutex // serializes catalog rebuilds
	// profileCats holds the catalog of each client capability profile
	// seen (profile.go); key "" is catalog.
	profileCats sync.Map // string → *catalog

	sessions sessionTable
	progress sync.Map    // gateway progress token → *progressRoute
	held     sync.Map    // requestState token → *heldCall (mrtr.go)
	heldBy   ownerCounts // held calls waiting on their client, per principal
	tokenSeq atomic.Int64

	listens listeners // open subscriptions/listen streams (listen.go)
	// upsubs are the resource streams to 2026 backends (upstream_subs.go).
	upsubs upstreamSubs
	tasks  taskTable // tasks handed to 2026 clients (tasks.go)
	// taskInputs holds, by the gateway's task id, the tasks/result a task
	// of a 2025 backend asks its input on (tasks.go).
	taskInputs sync.Map // string → *heldCall

	ctx    context.Context
	cancel context.CancelFunc
	// streams ends every long-lived SSE stream; it is cancelled first at
	// shutdown so that http.Server.Shutdown is not held up by them.
	streams      context.Context
	closeStreams context.CancelFunc
	wg           sync.WaitGroup
	inflight     sync.WaitGroup
	closing      atomic.Bool
	stopOnce     sync.Once

	stats   gatewayStats
	metrics *metrics // nil without a MeterProvider

	// reloaded wakes the janitor after a reload (it may change
	// limits.session_idle_timeout).
	reloaded chan struct{}

	// sealed seals 2025 session ids (sealed.go); nil: not configured.
	sealed *sealedSessions
	// shared holds rate limits and cached results in Redis (shared.go);
	// nil: both stay in this process. With it, replicaTag ("" without)
	// makes this replica's server→client request ids unique.
	shared     sharedStore
	replicaTag string
}

type gatewayStats struct {
	requests, errors, denied, dropped atomic.Int64
}

type progressRoute struct {
	c        *call
	original json.RawMessage
}

// New builds a gateway from its options; it starts nothing.
func New(o Options) (*Gateway, error) {
	if o.Config == nil {
		return nil, errors.New("proxy: Options.Config is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = config.DefaultHealthInterval
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	if o.ServerRequestTimeout <= 0 {
		o.ServerRequestTimeout = 5 * time.Minute
	}
	inst := o.Config.Instance
	if inst == "" {
		inst, _ = os.Hostname()
	}
	g := &Gateway{
		logger:   o.Logger.With("component", "gateway"),
		tracer:   o.TracerProvider.Tracer("github.com/mcptrail/mcptrail/proxy"),
		prop:     o.Propagator,
		rec:      o.Recorder,
		redactor: o.Redactor,
		opts:     o,
		instance: inst,
		version:  cmp.Or(o.Version, DefaultVersion),
		client:   upstreamHTTPClient(),
		reloaded: make(chan struct{}, 1),
	}
	g.serverInfo, _ = json.Marshal(map[string]string{"name": "mcptrail", "version": g.version})
	g.pins = newPinTracker(o.Config, cmp.Or(o.Config.NamespaceSeparator, config.DefaultNamespaceSeparator), o.PinStore, g.logger, inst)
	g.pins.onChange, g.pins.onState = g.recordToolChange, g.pinsChanged
	g.outRedactor = outputRedactor(o)
	// The shared store (redis.addr) outlives reloads: rate limits of every
	// policy set use it.
	g.shared = newSharedStore(o.Config.Redis)
	ps, err := newPolicySet(o.Config, o, g.outRedactor, nil, g.shared, g.pins)
	if err != nil {
		return nil, err
	}
	g.pol.Store(ps)
	g.streams, g.closeStreams = context.WithCancel(context.Background())
	g.catalog.Store(buildCatalog(nil, nil, g.sep(), nil))
	if g.sealed, err = newSealedSessions(o.Config.Sessions, o.Now); err != nil {
		return nil, err
	}
	g.cache = newResultCache(cmp.Or(o.Config.Cache.MaxBytes, config.DefaultCacheMaxBytes), o.Now)
	if g.shared != nil {
		g.cache.shared = g.shared
		g.replicaTag = newID()[:8] + "-"
	}
	var list []*Backend
	for _, s := range o.Config.Servers {
		list = append(list, g.newBackend(s))
	}
	g.backendSet.Store(newBackendSet(list))
	if o.MeterProvider != nil {
		if g.metrics, err = newMetrics(o.MeterProvider, g); err != nil {
			return nil, fmt.Errorf("configuring metrics: %w", err)
		}
	}
	return g, nil
}

// upstreamHTTPClient is shared by all HTTP backends. The pool is sized for
// many concurrent calls per backend: a small idle pool makes every burst
// churn sockets.
func upstreamHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	// Plain-HTTP backends are served on the calling goroutine (h1): a
	// call then costs no hand-offs to net/http's per-connection reader
	// and writer goroutines. TLS and proxied backends keep net/http.
	return &http.Client{Transport: &h1.Transport{
		Fallback:       t,
		Proxy:          t.Proxy,
		DialContext:    t.DialContext,
		MaxIdlePerHost: t.MaxIdleConnsPerHost,
		IdleTimeout:    t.IdleConnTimeout,
	}}
}

// sep is the namespace separator; a reload cannot change it.
func (g *Gateway) sep() string {
	return cmp.Or(g.conf().NamespaceSeparator, config.DefaultNamespaceSeparator)
}

// Start connects to every backend in the background and returns at once;
// Ready reports when the required ones are up.
func (g *Gateway) Start(ctx context.Context) error {
	g.ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, b := range g.bs().list {
		g.startBackend(b)
	}
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.janitor(g.ctx)
	}()
	go func() {
		defer g.wg.Done()
		g.pins.run(g.ctx)
	}()
	if g.shared != nil && g.sealed != nil {
		resubscribed := make(chan struct{}, 1)
		g.wg.Add(2)
		go func() {
			defer g.wg.Done()
			g.shared.SubscribeAnswers(g.ctx, func() {
				select {
				case resubscribed <- struct{}{}:
				default:
				}
			}, g.relayedAnswer)
		}()
		go func() {
			defer g.wg.Done()
			g.shareRevocations(g.ctx, resubscribed)
		}()
	}
	return nil
}

// Ready reports whether every required backend is initialized (and at least
// one backend when none is marked required).
func (g *Gateway) Ready() (bool, string) {
	anyReady := false
	bs := g.bs()
	for _, b := range bs.list {
		if b.Ready() {
			anyReady = true
			continue
		}
		if b.cfg.Required {
			return false, "required backend " + b.Name() + " is not ready"
		}
	}
	if !anyReady && len(bs.list) > 0 {
		return false, "no backend is ready"
	}
	if col := g.catalog.Load().collisions; len(col) > 0 {
		return false, "names collide between servers (set a namespace on the server mounted with no_namespace): " + strings.Join(col, "; ")
	}
	if sp, ok := g.rec.(StatusProvider); ok {
		if rs := sp.RecorderStatus(); !rs.Healthy && !rs.ReadyWhenDegraded {
			return false, "recorder degraded: " + strings.Join(rs.Problems, "; ")
		}
	}
	return true, ""
}

// Backend returns the named backend, or nil.
func (g *Gateway) Backend(name string) *Backend { return g.bs().byName[name] }

// CloseStreams ends every open SSE stream (GET /mcp, /sse). Register it
// with http.Server.RegisterOnShutdown: streams never go idle by themselves.
func (g *Gateway) CloseStreams() { g.closeStreams() }

// Shutdown stops accepting requests, waits for in-flight ones until ctx
// ends, then closes the backends. It is safe to call twice and before Start.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var err error
	g.stopOnce.Do(func() {
		g.closing.Store(true)
		g.closeStreams()
		done := make(chan struct{})
		go func() { g.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("waiting for in-flight requests: %w", ctx.Err())
		}
		g.sessions.Range(func(s *Session) bool {
			s.close()
			return true
		})
		if g.cancel != nil {
			g.cancel()
		}
		g.wg.Wait()
		g.client.CloseIdleConnections()
		if g.shared != nil {
			_ = g.shared.Close()
		}
	})
	return err
}

// janitor expires idle sessions (limits.session_idle_timeout), checking a
// few times per timeout and at least every minute.
func (g *Gateway) janitor(ctx context.Context) {
	// A reload may change the timeout: it wakes the janitor, which then
	// applies the new one at once and ticks at its pace.
	period := func(idle time.Duration) time.Duration { return min(max(idle/4, 10*time.Millisecond), time.Minute) }
	idle := g.sessionIdleTimeout()
	t := time.NewTicker(period(idle))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.reloaded:
			if next := g.sessionIdleTimeout(); next != idle {
				idle = next
				t.Reset(period(idle))
			}
			continue
		case <-t.C:
			// Read at every sweep too: a reload may have changed it.
			idle = g.sessionIdleTimeout()
			t.Reset(period(idle))
			if n := g.expireIdle(time.Now().Add(-idle)); n > 0 {
				g.logger.Info("idle sessions expired", "sessions", n, "idle_timeout", idle)
			}
			if n := g.releaseProfiles(time.Now().Add(-idle)); n > 0 {
				g.logger.Info("upstream connections of unused client capability profiles closed", "connections", n)
			}
			if g.sealed != nil {
				g.sealed.revoked.prune(g.sealed.now())
			}
		}
	}
}

// backendChanged rebuilds the merged catalog and tells clients what changed.
func (g *Gateway) backendChanged(*Backend) {
	g.catMu.Lock()
	bs := g.bs()
	snaps := make(map[string]*backendSnapshot, len(bs.list))
	namespaces := make(map[string]string, len(bs.list))
	for _, b := range bs.list {
		snaps[b.Name()] = b.snap.Load()
		namespaces[b.Name()] = b.namespace()
	}
	next := buildCatalog(bs.order, snaps, g.sep(), namespaces)
	for _, err := range next.schemaErrs {
		g.logger.Warn("tool arguments are not validated", "error", err)
	}
	prev := g.catalog.Swap(next)
	for name, why := range next.badHeaders {
		if prev == nil || prev.badHeaders[name] != why {
			g.logger.Warn("tool hidden from 2026-07-28 clients: invalid x-mcp-header annotation", "tool", name, "reason", why)
		}
	}
	type change struct {
		key        string
		prev, next *catalog
	}
	changes := []change{{"", prev, next}}
	g.profileCats.Range(func(k, v any) bool {
		nc := g.buildProfileCatalog(k.(string))
		g.profileCats.Store(k, nc)
		changes = append(changes, change{k.(string), v.(*catalog), nc})
		return true
	})
	cats := make([]*catalog, len(changes))
	for i, ch := range changes {
		cats[i] = ch.next
	}
	g.pins.observe(cats)
	g.catMu.Unlock()
	if len(next.collisions) > 0 && !slices.Equal(prev.collisions, next.collisions) {
		g.logger.Error("servers mounted without a namespace collide; the colliding names are left out: give the server a namespace (remove no_namespace)",
			"collisions", next.collisions)
	}
	// subscriptions/listen streams (2026-07-28) hear of a list change of
	// any profile once.
	var listeners [numLists]bool
	for _, ch := range changes {
		for _, kind := range g.notifyListChanges(ch.key, ch.prev, ch.next) {
			if !listeners[kind] {
				listeners[kind] = true
				g.listChangedToListeners(jsonrpc.NewNotification(listChangedMethods[kind], nil))
			}
		}
	}
}

func sameItems(a, b []catalogItem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || string(a[i].raw) != string(b[i].raw) {
			return false
		}
	}
	return true
}

// backendNotification relays a notification from a backend to the client(s)
// it concerns. One that arrived on a call's own response stream (ctx carries
// the call) concerns that call's client only.
func (g *Gateway) backendNotification(ctx context.Context, b *Backend, n jsonrpc.Message) {
	origin, _ := ctx.Value(callKey{}).(*call)
	// Outside a call, a message concerns the sessions of the capability
	// profile whose connection it came on.
	profile, _ := ctx.Value(profileKeyCtx{}).(string)
	fromProfile := func(s *Session) bool { return s.profileKey() == profile }
	switch n.Method {
	case "notifications/progress":
		o, err := jsonrpc.ParseObject(n.Params)
		if err != nil {
			return
		}
		tok := o.Get("progressToken")
		v, ok := g.progress.Load(string(tok))
		if !ok {
			return
		}
		pr := v.(*progressRoute)
		if pr.c.server != b.Name() {
			// Tokens are sequential, so a backend could guess another's:
			// only the backend serving the call may report its progress.
			return
		}
		o.Set("progressToken", pr.original)
		msg := jsonrpc.NewNotification(n.Method, o.Marshal())
		pr.c.notify(msg.Marshal())
		g.recordNotification(pr.c, b.Name(), &msg)
	case "notifications/tools/list_changed":
		go b.Refresh(g.ctx, listTools)
	case "notifications/prompts/list_changed":
		go b.Refresh(g.ctx, listPrompts)
	case "notifications/resources/list_changed":
		go func() {
			b.Refresh(g.ctx, listResources)
			b.Refresh(g.ctx, listTemplates)
		}()
	case "notifications/resources/updated":
		o, err := jsonrpc.ParseObject(n.Params)
		if err != nil {
			return
		}
		uri, _ := o.GetString("uri")
		exposed := g.catalog.Load().exposeURI(b.Name(), uri)
		o.SetString("uri", exposed)
		modern := modernUpstream(b.cfg.ProtocolVersion)
		if modern {
			// The subscription id is the gateway's own stream's: each
			// client gets its own (a listener's) or none (a session).
			if meta, err := jsonrpc.ParseObject(o.Get("_meta")); err == nil && meta.Get(metaSubscriptionID) != nil {
				meta.Delete(metaSubscriptionID)
				if m := meta.Marshal(); string(m) == "{}" {
					o.Delete("_meta")
				} else {
					o.Set("_meta", m)
				}
			}
		}
		g.resourceUpdatedToListeners(exposed, o.Marshal())
		msg := jsonrpc.NewNotification(n.Method, o.Marshal()).Marshal()
		g.sessions.Range(func(s *Session) bool {
			// A 2026 backend's streams are the primary connection's and
			// serve every profile.
			if (modern || fromProfile(s)) && s.subscribed(exposed) {
				s.push(msg)
			}
			return true
		})
	case "notifications/message":
		// Log messages go to the sessions that asked for their level; one
		// sent during a call is recorded with it.
		msg := n.Marshal()
		var p struct {
			Level string `json:"level"`
		}
		_ = json.Unmarshal(n.Params, &p)
		if origin != nil {
			if origin.sess != nil && origin.sess.wantsLog(p.Level) {
				origin.notify(msg)
				g.recordNotification(origin, b.Name(), &n)
			}
			return
		}
		g.sessions.Range(func(s *Session) bool {
			if fromProfile(s) && s.wantsLog(p.Level) && g.mayHear(s, b) {
				s.push(msg)
			}
			return true
		})
	default:
		if origin != nil {
			origin.notify(n.Marshal())
			return
		}
		msg := n.Marshal()
		g.sessions.Range(func(s *Session) bool {
			if fromProfile(s) && g.mayHear(s, b) {
				s.push(msg)
			}
			return true
		})
	}
}

// backendRequest routes a server→client request (sampling, elicitation,
// roots) to the client session whose call caused it and returns its answer.
func (g *Gateway) backendRequest(ctx context.Context, b *Backend, req jsonrpc.Message) jsonrpc.Message {
	c, _ := ctx.Value(callKey{}).(*call)
	if h := g.taskInputFor(b, req); h != nil {
		c = h.inner // a request for a task's input waits for tasks/update
	}
	if c == nil {
		// A stdio backend, or the backend's GET stream, gives no causal
		// context. Route to the most recent call in flight on this backend,
		// but only when all of them belong to one client session: a
		// sampling prompt must never reach another client.
		sessions := map[*Session]bool{}
		b.inflight.Range(func(_, v any) bool {
			cc := v.(*call)
			sessions[cc.sess] = true
			if c == nil || cc.start.After(c.start) {
				c = cc
			}
			return true
		})
		if len(sessions) > 1 {
			g.logger.Warn("backend request with no causal link and calls from several sessions in flight: refused",
				"server", b.Name(), "method", req.Method, "sessions", len(sessions))
			return jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, fmt.Sprintf("mcptrail: cannot tell which of %d client sessions %s is for", len(sessions), req.Method), nil)
		}
	}
	if c == nil || c.sess == nil {
		return jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, "mcptrail: no client session to route "+req.Method+" to", nil)
	}
	return c.serverRequest(ctx, b, req)
}

type callKey struct{}

// newID returns a random hex id for sessions.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errorData renders the data of a gateway-produced JSON-RPC error.
func errorData(requestID string, extra ...string) json.RawMessage {
	o := &jsonrpc.Object{}
	o.SetString("requestId", requestID)
	for i := 0; i+1 < len(extra); i += 2 {
		o.SetString(extra[i], extra[i+1])
	}
	return o.Marshal()
}
