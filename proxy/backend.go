package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// listKind names the four lists a backend serves.
type listKind int

const (
	listTools listKind = iota
	listPrompts
	listResources
	listTemplates
	numLists
)

var listMethods = [numLists]string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
var listFields = [numLists]string{"tools", "prompts", "resources", "resourceTemplates"}
var listCaps = [numLists]string{"tools", "prompts", "resources", "resources"}

// backendSnapshot is an immutable view of a connected backend.
type backendSnapshot struct {
	conn            upstreamConn
	protocolVersion string
	capabilities    map[string]json.RawMessage
	serverInfo      json.RawMessage
	instructions    string
	lists           [numLists][]json.RawMessage
}

// backendProfile is what a backend told about itself at its last
// handshake; it outlives the connection so that a client initializing while
// the backend reconnects is still offered what it serves.
type backendProfile struct {
	capabilities map[string]json.RawMessage
	instructions string
}

// serverName reads the backend's serverInfo name and version.
func (s *backendSnapshot) serverName() (name, version string) {
	o, err := jsonrpc.ParseObject(s.serverInfo)
	if err != nil {
		return "", ""
	}
	name, _ = o.GetString("name")
	version, _ = o.GetString("version")
	return name, version
}

func (s *backendSnapshot) has(capability string) bool { _, ok := s.capabilities[capability]; return ok }

// Backend is one upstream MCP server: its connection, what it serves, and the
// loop that keeps it connected. Calls share one upstream connection.
type Backend struct {
	cfg    config.Server
	logger *slog.Logger
	hooks  backendHooks
	client *http.Client
	// version is the gateway's, sent as clientInfo.version.
	version string

	snap atomic.Pointer[backendSnapshot]
	// profile is set at the first successful handshake and kept.
	profile atomic.Pointer[backendProfile]
	// listed is set once the merged catalog includes the current snap.
	listed atomic.Bool
	nextID atomic.Int64
	sem    chan struct{} // nil when unlimited

	// listHints are the caching hints of each list's last fetch (2026
	// backends give them; nil otherwise).
	listHints [numLists]atomic.Pointer[cacheHint]

	mu      sync.Mutex
	lastErr error
	kick    chan struct{}
	// refreshing serializes Refresh: each one copies the snapshot it read,
	// so two at once would lose one's list.
	refreshing chan struct{}
	// variants are extra connections, one per client capability profile
	// (see profile.go); gctx is the run loop's context they live in.
	variantMu sync.Mutex
	variants  map[string]*variant
	gctx      context.Context
	// stop ends the run loop (and closes the connections): at shutdown,
	// or when a reload removed the backend.
	stop context.CancelFunc
	// active counts the calls admitted (enter); retired is set when a
	// reload removed the backend.
	active  atomic.Int64
	retired atomic.Bool
	// inflight maps upstream request ids to the client call they serve, so
	// that a server→client request can be routed back to its cause.
	inflight sync.Map // string → *call
	// brk are the circuit breakers (breaker.go).
	brk   *breakers
	stats resilienceStats
	// listenIDs are the ids of the gateway's resource streams open on
	// this 2026 backend (upstream_subs.go).
	listenIDs listenIDs
}

// backendHooks are the gateway's reactions to backend events.
type backendHooks interface {
	backendChanged(b *Backend)
	// backendConnected tells of a new connection of b, published as
	// snap: the primary (profile "") or a client capability profile's.
	backendConnected(b *Backend, profile string, snap *backendSnapshot)
	// backendNotification gets ctx of the call whose stream carried n
	// (callKey), or a context without one.
	backendNotification(ctx context.Context, b *Backend, n jsonrpc.Message)
	backendRequest(ctx context.Context, b *Backend, req jsonrpc.Message) jsonrpc.Message
}

func newBackend(cfg config.Server, hooks backendHooks, client *http.Client, logger *slog.Logger) *Backend {
	b := &Backend{
		cfg:    cfg,
		hooks:  hooks,
		client: client,
		logger: logger.With("server", cfg.Name),
		kick:   make(chan struct{}, 1),
		brk:    newBreakers(cfg.Breaker, time.Now),
	}
	b.refreshing = make(chan struct{}, 1)
	if cfg.MaxConcurrency > 0 {
		b.sem = make(chan struct{}, cfg.MaxConcurrency)
	}
	return b
}

// enter admits a call to the backend, unless a reload retired it; every
// admitted call must leave. A retired backend is closed only once the
// calls admitted before have left (Gateway.retire): with sequentially
// consistent atomics, a call either is counted before the retirement is
// seen or sees it.
// clientVersion is the version the gateway names itself with upstream.
func (b *Backend) clientVersion() string {
	if b.version == "" {
		return DefaultVersion
	}
	return b.version
}

func (b *Backend) enter() bool {
	b.active.Add(1)
	if b.retired.Load() {
		b.active.Add(-1)
		return false
	}
	return true
}

func (b *Backend) leave() { b.active.Add(-1) }

// busy reports whether calls are in flight on the backend.
func (b *Backend) busy() bool { return b.active.Load() > 0 }

// Name is the backend's namespace.
func (b *Backend) Name() string { return b.cfg.Name }

// Ready reports whether the backend is connected and initialized.
// It turns true only once the merged catalog includes the backend, so a
// client that sees /readyz (or Ready) also sees the backend's tools.
// An open circuit makes it not ready until a probe succeeds.
func (b *Backend) Ready() bool {
	return b.snap.Load() != nil && b.listed.Load() && b.brk.all.current() != breakerOpen
}

// CircuitState is the state of the backend's own circuit breaker: closed,
// open or half_open.
func (b *Backend) CircuitState() string { return b.brk.all.current().String() }

// LastError is the most recent connection error, nil when healthy.
func (b *Backend) LastError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// run keeps the backend connected until ctx ends: connect, serve, and on
// failure reconnect with capped exponential backoff and jitter.
func (b *Backend) run(ctx context.Context, healthEvery time.Duration) {
	backoff := 200 * time.Millisecond
	const maxBackoff = 30 * time.Second
	for ctx.Err() == nil {
		snap, err := b.connect(ctx)
		if err != nil {
			b.setErr(err)
			b.brk.all.failure()
			b.logger.Warn("backend connect failed", "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff+time.Duration(rand.Int64N(int64(backoff/4)+1))) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = 200 * time.Millisecond
		b.setErr(nil)
		b.brk.all.healthy()
		// A kick left by a failure of the previous connection must not
		// end this one.
		select {
		case <-b.kick:
		default:
		}
		b.listed.Store(false)
		b.profile.Store(&backendProfile{capabilities: snap.capabilities, instructions: snap.instructions})
		b.snap.Store(snap)
		b.hooks.backendChanged(b)
		b.listed.Store(true)
		b.logger.Info("backend ready", "protocol_version", snap.protocolVersion, "tools", len(snap.lists[listTools]))
		b.hooks.backendConnected(b, "", snap)
		stopListen := b.listenUpstream(ctx, snap)
		b.watch(ctx, snap, healthEvery)
		stopListen()
		b.clearSnap(snap.conn)
		_ = snap.conn.close()
		b.closeVariants()
		if ctx.Err() != nil {
			return
		}
		b.logger.Warn("backend lost, reconnecting", "err", b.LastError())
		b.hooks.backendChanged(b)
	}
}

// watch returns when the connection is judged dead: a call failed at the
// transport level (markDown) or a health ping failed.
func (b *Backend) watch(ctx context.Context, snap *backendSnapshot, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, b.connectTimeout())
			_, err := b.rawCall(pctx, snap, healthMethod(snap.protocolVersion), nil, nil)
			cancel()
			if err != nil && ctx.Err() == nil {
				b.setErr(fmt.Errorf("health ping: %w", err))
				b.brk.all.failure()
				return
			}
			if err == nil {
				b.brk.all.healthy()
			}
		}
	}
}

// markDown reports a transport failure seen by a call on conn; the run loop
// drops the connection and reconnects. A failure of a connection that is no
// longer the current one (a call that outlived a reconnect) changes nothing.
func (b *Backend) markDown(conn upstreamConn, err error) {
	if b.dropVariantConn(conn) {
		return
	}
	if !b.clearSnap(conn) {
		return
	}
	b.setErr(err)
	b.hooks.backendChanged(b)
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// clearSnap unpublishes the current snapshot if it is served by conn. Refresh
// replaces the snapshot with a copy on the same connection, so the match is
// by connection, not by snapshot. It reports whether it cleared one.
func (b *Backend) clearSnap(conn upstreamConn) bool {
	for {
		cur := b.snap.Load()
		if cur == nil || cur.conn != conn {
			return false
		}
		if b.snap.CompareAndSwap(cur, nil) {
			return true
		}
	}
}

func (b *Backend) setErr(err error) {
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
}

// Refresh re-reads the backend's lists after a list_changed notification.
func (b *Backend) Refresh(ctx context.Context, kind listKind) { b.refresh(ctx, &b.snap, kind) }

// refresh re-reads one list of the connection published in slot.
func (b *Backend) refresh(ctx context.Context, slot *atomic.Pointer[backendSnapshot], kind listKind) {
	select {
	case b.refreshing <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-b.refreshing }()
	old := slot.Load()
	if old == nil {
		return
	}
	items, err := b.fetchList(ctx, old, kind)
	if err != nil {
		b.logger.Warn("refreshing list failed", "list", listMethods[kind], "err", err)
		return
	}
	next := *old
	next.lists[kind] = items
	// Only a reconnect or markDown can have replaced old meanwhile; their
	// snapshot wins.
	if slot.CompareAndSwap(old, &next) {
		b.hooks.backendChanged(b)
	}
}

func (b *Backend) connectTimeout() time.Duration {
	if b.cfg.ConnectTimeout > 0 {
		return b.cfg.ConnectTimeout
	}
	return config.DefaultConnectTimeout
}

// newConn opens a connection of the configured transport: the gateway's own
// streamable-HTTP client, or mcp-go's stdio and legacy SSE transports.
func (b *Backend) newConn(ctx context.Context, v *variant) (upstreamConn, error) {
	key := ""
	if v != nil {
		key = v.key
	}
	hooks := connHooks{
		notification: func(ctx context.Context, n jsonrpc.Message) {
			if v != nil {
				// A variant's lists are its own.
				if kinds := changedLists(n.Method); kinds != nil {
					for _, k := range kinds {
						v.staleLists.Or(1 << k)
					}
					go b.refreshStale(b.gctx, v)
					return
				}
			}
			if modernUpstream(b.cfg.ProtocolVersion) && !b.upstreamListenMessage(n) {
				return
			}
			if kinds := changedLists(n.Method); kinds != nil && modernUpstream(b.cfg.ProtocolVersion) {
				// A 2026 backend tells of changes on the primary's
				// subscriptions/listen only: its profiles' lists are
				// stale too.
				for _, pv := range b.variantList() {
					for _, k := range kinds {
						pv.staleLists.Or(1 << k)
					}
					go b.refreshStale(b.gctx, pv)
				}
			}
			b.hooks.backendNotification(context.WithValue(ctx, profileKeyCtx{}, key), b, n)
		},
		request: func(ctx context.Context, req jsonrpc.Message) jsonrpc.Message {
			return b.hooks.backendRequest(ctx, b, req)
		},
	}
	// A connection lives until the backend drops it, not for this
	// attempt's timeout.
	ctx = context.WithoutCancel(ctx)
	headers, err := backendHeaders(b.cfg)
	if err != nil {
		return nil, err
	}
	switch b.cfg.Transport {
	case "http":
		return newHTTPConn(b.cfg.URL, b.client, headers, hooks, b.logger), nil
	case "stdio":
		env := stdioEnv(b.cfg, os.Environ())
		cmd := exec.Command(b.cfg.Command, b.cfg.Args...)
		cmd.Env = env
		cmd.Dir = b.cfg.Dir
		// The backend dies with the gateway and gets its own process
		// group, so a kill reaches its children.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		return startStdio(cmd, hooks, b.logger)
	case "sse":
		tr, err := transport.NewSSE(b.cfg.URL,
			transport.WithHTTPClient(b.client),
			transport.WithHeaders(headers),
			transport.WithSSELogger(b.logger),
		)
		if err != nil {
			return nil, err
		}
		return newMCPConn(ctx, tr, hooks)
	}
	return nil, fmt.Errorf("unknown transport %q", b.cfg.Transport)
}

// connect starts a connection, runs the initialize handshake with the
// backend's own protocol version, and loads its lists.
func (b *Backend) connect(ctx context.Context) (*backendSnapshot, error) {
	conn, err := b.newConn(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("starting %s transport: %w", b.cfg.Transport, err)
	}
	snap, err := b.handshake(ctx, conn, json.RawMessage(`{}`))
	if err != nil {
		_ = conn.close()
		return nil, err
	}
	return snap, nil
}

// handshake initializes conn declaring the client capabilities caps (a
// JSON object) and loads the backend's lists.
func (b *Backend) handshake(ctx context.Context, conn upstreamConn, caps json.RawMessage) (*backendSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, b.connectTimeout())
	defer cancel()
	version := b.cfg.ProtocolVersion
	if version == "" {
		version = defaultBackendVersion
	}
	if modernUpstream(version) {
		return b.discoverHandshake(ctx, conn, version)
	}
	params, _ := json.Marshal(map[string]any{
		"protocolVersion": version,
		"capabilities":    caps,
		"clientInfo":      map[string]string{"name": "mcptrail", "version": b.clientVersion()},
	})
	snap := &backendSnapshot{conn: conn}
	res, err := b.rawCall(ctx, snap, "initialize", params, nil)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("initialize: %w", res.Error)
	}
	var init struct {
		ProtocolVersion string                     `json:"protocolVersion"`
		Capabilities    map[string]json.RawMessage `json:"capabilities"`
		ServerInfo      json.RawMessage            `json:"serverInfo"`
		Instructions    string                     `json:"instructions"`
	}
	if err := json.Unmarshal(res.Result, &init); err != nil {
		return nil, fmt.Errorf("decoding initialize result: %w", err)
	}
	snap.protocolVersion = init.ProtocolVersion
	snap.capabilities = init.Capabilities
	snap.serverInfo = init.ServerInfo
	snap.instructions = init.Instructions
	conn.setProtocolVersion(init.ProtocolVersion)
	if err := conn.notify(ctx, "notifications/initialized", nil); err != nil {
		return nil, fmt.Errorf("sending initialized: %w", err)
	}
	if err := b.fetchLists(ctx, snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// fetchLists reads every list snap's capabilities offer.
func (b *Backend) fetchLists(ctx context.Context, snap *backendSnapshot) error {
	for k := range numLists {
		if !snap.has(listCaps[k]) {
			continue
		}
		items, err := b.fetchList(ctx, snap, k)
		if err != nil {
			return err
		}
		snap.lists[k] = items
	}
	return nil
}

// fetchList reads every page of one list.
func (b *Backend) fetchList(ctx context.Context, snap *backendSnapshot, kind listKind) ([]json.RawMessage, error) {
	var all []json.RawMessage
	cursor := ""
	for page := 0; page < 1000; page++ {
		var params json.RawMessage
		if cursor != "" {
			params, _ = json.Marshal(map[string]string{"cursor": cursor})
		}
		res, err := b.rawCall(ctx, snap, listMethods[kind], params, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", listMethods[kind], err)
		}
		if res.Error != nil {
			if res.Error.Code == jsonrpc.CodeMethodNotFound {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: %w", listMethods[kind], res.Error)
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(res.Result, &body); err != nil {
			return nil, fmt.Errorf("decoding %s result: %w", listMethods[kind], err)
		}
		if page == 0 {
			b.listHints[kind].Store(cacheHintOf(body))
		}
		var items []json.RawMessage
		if raw := body[listFields[kind]]; raw != nil {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("decoding %s items: %w", listMethods[kind], err)
			}
		}
		all = append(all, items...)
		cursor = ""
		if c := body["nextCursor"]; c != nil {
			_ = json.Unmarshal(c, &cursor)
		}
		if cursor == "" {
			return all, nil
		}
	}
	return nil, fmt.Errorf("%s: more than 1000 pages", listMethods[kind])
}

// upstreamResult is a backend's answer with what the recorder wants to know.
type upstreamResult struct {
	Result json.RawMessage
	Error  *jsonrpc.Error
	ID     string // upstream JSON-RPC id
}

// rawCall sends one request of the gateway's own (handshake, lists, pings).
func (b *Backend) rawCall(ctx context.Context, snap *backendSnapshot, method string, params json.RawMessage, header http.Header) (upstreamResult, error) {
	return snap.conn.call(ctx, b.nextID.Add(1), method, params, header, nil)
}

// acquire takes a concurrency slot, returning how long it waited.
func (b *Backend) acquire(ctx context.Context) (time.Duration, error) {
	if b.sem == nil {
		return 0, nil
	}
	select {
	case b.sem <- struct{}{}:
		return 0, nil
	default:
	}
	start := time.Now()
	select {
	case b.sem <- struct{}{}:
		return time.Since(start), nil
	case <-ctx.Done():
		return time.Since(start), fmt.Errorf("waiting for a concurrency slot on %s: %w", b.cfg.Name, ctx.Err())
	}
}

func (b *Backend) release() {
	if b.sem != nil {
		<-b.sem
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// namespace is the prefix of the backend's tool and prompt names; "" when
// it is mounted without one.
func (b *Backend) namespace() string {
	if b.cfg.NoNamespace {
		return ""
	}
	return b.cfg.Name
}
