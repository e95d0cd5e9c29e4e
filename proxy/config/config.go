// Package config loads the mcptrail gateway configuration: one YAML file,
// decoded strictly (unknown keys are errors), with ${ENV} and ${ENV:-default}
// expansion in values, defaults applied, and a Validate step whose errors name
// the file and the key, such as
//
//	mcptrail.yaml: servers[1].url: "ftp://x" is not an http or https URL
//
// The field comments below are the user documentation of every key; the
// complete commented example lives in deploy/mcptrail.example.yaml and is
// parsed by this package's tests.
//
// Secrets (passwords, API-key headers) belong in the environment, referenced
// as ${NAME}; Warnings reports secret-looking values written literally.
package config

import (
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// Values of Config.ClientTraceContext.
const (
	TraceContextLink   = "link"
	TraceContextParent = "parent"
)

// Defaults applied by Parse when a key is absent (or zero).
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultNamespaceSeparator = "."
	DefaultClientTraceContext = TraceContextLink
	DefaultMaxBodyBytes       = 4 << 20
	DefaultShutdownTimeout    = 15 * time.Second

	DefaultReadHeaderTimeout       = 10 * time.Second
	DefaultBodyReadTimeout         = 30 * time.Second
	DefaultIdleTimeout             = 120 * time.Second
	DefaultMaxSessions             = 10000
	DefaultMaxSessionsPerPrincipal = 1000
	DefaultMaxSubscriptions        = 256
	// DefaultMaxUpstreamSubscriptionsPerPrincipal and
	// DefaultMaxUpstreamSubscriptionsPerServer bound the resource streams
	// the gateway holds open to 2026-07-28 backends (see Limits).
	DefaultMaxUpstreamSubscriptionsPerPrincipal = 256
	DefaultMaxUpstreamSubscriptionsPerServer    = 4096
	DefaultMaxTasksPerPrincipal                 = 1000
	DefaultMaxHeldPerPrincipal                  = 64
	DefaultMaxInflightPerSession                = 64
	DefaultSessionIdleTimeout                   = 30 * time.Minute

	DefaultServerTimeout   = 60 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 10 * time.Second
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultCacheMaxBytes   = 64 << 20
	DefaultCacheTTL        = 60 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultHealthInterval  = 5 * time.Second
	DefaultProtocolVersion = "2025-11-25"

	// The recorder's defaults are defined once, in package recorder.
	DefaultQueueSize     = recorder.DefaultQueueSize
	DefaultQueueBytes    = recorder.DefaultQueueBytes
	DefaultBatchSize     = recorder.DefaultBatchSize
	DefaultFlushInterval = recorder.DefaultSegmentAge
	DefaultOverflow      = recorder.DefaultOverflow

	DefaultDatabase = "mcptrail"
	DefaultLocalDir = "./.mcptrail/clickhouse"

	DefaultSpoolDir          = "./.mcptrail/spool"
	DefaultFsync             = recorder.DefaultFsync
	DefaultFsyncInterval     = recorder.DefaultFsyncInterval
	DefaultSpoolMaxBytes     = recorder.DefaultMaxDiskBytes
	DefaultSpoolSegmentBytes = recorder.DefaultSegmentBytes

	DefaultPayloadMaxBytes = 65536
	DefaultHMACKeyEnv      = "MCPTRAIL_REDACTION_KEY"

	DefaultRetentionHops     = 30 * 24 * time.Hour
	DefaultRetentionPayloads = 7 * 24 * time.Hour
)

// DefaultRedactionPatterns is the built-in pattern set used when
// recorder.redaction.patterns is absent.
var DefaultRedactionPatterns = []string{"secrets"}

// Transports a server can use.
const (
	TransportStdio = "stdio"
	TransportHTTP  = "http"
	TransportSSE   = "sse"
)

// Overflow policies of the recorder queue.
const (
	OverflowDrop       = recorder.OverflowDrop
	OverflowFailClosed = recorder.OverflowFailClosed
)

// Spool fsync policies.
const (
	FsyncAlways   = recorder.FsyncAlways
	FsyncInterval = recorder.FsyncInterval
	FsyncNever    = recorder.FsyncNever
)

// Config is the whole gateway configuration.
type Config struct {
	// Listen is the host:port the gateway serves MCP (streamable HTTP and
	// SSE), /healthz, /readyz and /metrics on. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// NamespaceSeparator joins a server name and a tool (prompt) name into
	// the name clients see: "crm" + "." + "search" = "crm.search".
	// Default ".". Use "__" when clients feed tool names to LLM APIs that
	// accept only [a-zA-Z0-9_-] (OpenAI, Anthropic). It may not contain
	// letters, digits or spaces, and no server name may contain it.
	NamespaceSeparator string `yaml:"namespace_separator"`
	// MaxBodyBytes caps one client request body, in bytes. Default 4 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownTimeout bounds a graceful shutdown: in-flight requests finish
	// and the recorder drains within it. Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Instance names this gateway in recorded events. Default the hostname.
	Instance string `yaml:"instance"`
	// AllowedOrigins are the browser origins ("https://app.example.com",
	// scheme://host[:port]) allowed to call the gateway. A request with an
	// Origin header not listed is refused with 403 (DNS-rebinding
	// protection, as the MCP transport requires); requests without Origin
	// (every non-browser client) are allowed. "*" allows every origin.
	// Default none: browsers cannot call the gateway.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// ClientTraceContext says what a client's W3C trace context (the
	// traceparent header or params._meta) is to the gateway's spans.
	// "link" (default): each request starts a new trace and carries the
	// client's span context as a span link, as a gateway at a trust
	// boundary does; a client cannot attach the gateway's spans to a trace
	// of its choosing, and its baggage is not passed on. "parent": the
	// client's context is the parent and its baggage goes to the backends
	// (for clients inside the same trust boundary).
	ClientTraceContext string `yaml:"client_trace_context"`
	// Limits bound what clients can hold on the gateway.
	Limits Limits `yaml:"limits"`
	// Cache bounds the result cache that tools opt into with
	// servers[].tools.<name>.cache.
	Cache Cache `yaml:"cache"`
	// Admin configures the admin endpoints (/statusz).
	Admin Admin `yaml:"admin"`
	// Servers are the backend MCP servers, at least one.
	Servers []Server `yaml:"servers"`
	// Auth configures bearer tokens; no tokens means no authentication.
	Auth Auth `yaml:"auth"`
	// Recorder configures what is recorded and where.
	Recorder Recorder `yaml:"recorder"`
	// Sessions configures sealed (replica-independent) 2025 sessions.
	Sessions Sessions `yaml:"sessions"`
	// Redis shares rate limits and the result cache between replicas.
	Redis Redis `yaml:"redis"`
	// Pinning pins every tool's definition (the rug-pull defence); see
	// Pinning.
	Pinning Pinning `yaml:"pinning"`

	// Path is the file the config came from ("" when parsed from memory).
	Path string `yaml:"-"`
	// Hash is the sha256 hex of the file bytes before env expansion, so it
	// identifies the config without revealing secrets.
	Hash string `yaml:"-"`

	// envPaths holds the key paths whose values came from ${ENV} expansion.
	envPaths map[string]bool
	// present holds the key paths written in the file.
	present map[string]bool
}

// Limits bound what clients can hold on the gateway; beyond a limit the
// client gets an error that names it. Durations and counts of 0 mean the
// default, not unlimited.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// BodyReadTimeout bounds reading one request body once its headers
	// are in; a slower client is cut off. Bodies are read only after the
	// bearer token is checked: unauthenticated requests are answered 401
	// and closed without reading them. Default 30s.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxSessions caps the open sessions (streamable HTTP and legacy SSE)
	// of all principals together. Default 10000.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerPrincipal caps one principal's open sessions.
	// Default 1000.
	MaxSessionsPerPrincipal int `yaml:"max_sessions_per_principal"`
	// MaxSubscriptions caps the resource URIs of one subscriptions/listen
	// stream and those one session subscribes with resources/subscribe;
	// beyond it the request is refused with -32600. Default 256.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxUpstreamSubscriptionsPerPrincipal caps the distinct resources of
	// 2026-07-28 backends one principal holds subscribed, over all its
	// sessions (resources/subscribe) and subscriptions/listen streams
	// together: each is a long-lived stream from the gateway to the
	// backend (on HTTP a connection), shared by every client subscribed
	// to the same URI. One more is refused with -32029 and error.data
	// limit "max_upstream_subscriptions_per_principal". Default 256.
	MaxUpstreamSubscriptionsPerPrincipal int `yaml:"max_upstream_subscriptions_per_principal"`
	// MaxUpstreamSubscriptionsPerServer caps those streams to one
	// 2026-07-28 backend, for all principals together; a subscription that
	// would open one more is refused with -32029 and error.data limit
	// "max_upstream_subscriptions_per_server" (joining an open one is
	// not). Default 4096.
	MaxUpstreamSubscriptionsPerServer int `yaml:"max_upstream_subscriptions_per_server"`
	// MaxTasksPerPrincipal caps the tasks one principal holds through the
	// 2026-07-28 tasks extension: at one more, its oldest task is
	// forgotten (tasks/get then says it is not found). Default 1000.
	MaxTasksPerPrincipal int `yaml:"max_tasks_per_principal"`
	// MaxHeldPerPrincipal caps one principal's multi round-trip calls that
	// wait for its retry (a 2026-07-28 client in front of a backend that
	// asks for input); one more is refused with -32029 and error.data
	// limit "max_held_per_principal". Default 64.
	MaxHeldPerPrincipal int `yaml:"max_held_per_principal"`
	// MaxInflightPerSession caps the requests of one legacy SSE session
	// (POST /message, which is answered 202 before the call runs) that
	// are being served at once; one more gets 429 with -32029 and
	// error.data limit "max_inflight_per_session". Default 64.
	MaxInflightPerSession int `yaml:"max_inflight_per_session"`
	// SessionIdleTimeout ends a session with no client request for this
	// long, also one with an open GET stream (the stream is closed; the
	// client re-initializes). Default 30m.
	SessionIdleTimeout time.Duration `yaml:"session_idle_timeout"`
	// RatePerPrincipal is a token bucket per principal over its
	// tools/call, prompts/get and resources/read requests together. A
	// request over it is refused with -32029 "rate limited", whose
	// error.data carries retryAfter (seconds, rounded up), retryAfterMs,
	// the limit and the requestId; over HTTP the answer also has a
	// Retry-After header. Refusals are recorded as denied decisions (rule
	// "rate:principal") and counted in mcptrail_limit_refusals_total
	// {limit="rate_per_principal"}. Default no limit.
	RatePerPrincipal Rate `yaml:"rate_per_principal"`
	// RatePerTool is a token bucket per principal × tool over tools/call
	// (rule "rate:tool", limit "rate_per_tool"), overridden per tool by
	// servers[].tools.<name>.rate. Default no limit.
	RatePerTool Rate `yaml:"rate_per_tool"`
	// Priority sorts callers into interactive and background for the
	// per-tool concurrency queues.
	Priority Priority `yaml:"priority"`
}

// Admin configures the admin endpoints: /statusz (and what later joins it).
type Admin struct {
	// Listen is a separate host:port for the admin endpoints, which are
	// then no longer served on listen. Empty (default): they stay on
	// listen, and need TokenSHA256 whenever auth.tokens is not empty.
	Listen string `yaml:"listen"`
	// TokenSHA256 is the hex sha256 of the admin bearer token (`mcptrail
	// token hash`). When set, every admin request needs it. Required to
	// reach /statusz on listen when auth is on; optional on admin.listen.
	TokenSHA256 string `yaml:"token_sha256"`
	// TraceURL links a call's OTel trace ID in the web console (/console/)
	// to a trace UI: "{trace_id}" is replaced by the 32 hex digits, e.g.
	// http://jaeger:16686/trace/{trace_id} or
	// https://grafana/explore?left={"queries":[{"query":"{trace_id}"}]}.
	// Empty (default): the trace ID is shown without a link.
	TraceURL string `yaml:"trace_url"`
}

// Server is one backend MCP server. Its Name is the namespace of its tools.
type Server struct {
	// Name is the namespace: letters, digits, "_" and "-"; unique.
	Name string `yaml:"name"`
	// Transport is stdio, http (streamable HTTP) or sse (legacy HTTP+SSE).
	// Default: stdio when command is set, http when url is set.
	Transport string `yaml:"transport"`
	// Command is the program to start (stdio only), looked up on PATH;
	// relative paths are relative to the working directory of mcptrail.
	Command string `yaml:"command"`
	// Args are the command's arguments (stdio only).
	Args []string `yaml:"args"`
	// Env is the command's environment (stdio only), on top of a small
	// base taken from the gateway's own: PATH, HOME, USER, LOGNAME, SHELL,
	// LANG, LANGUAGE, LC_*, TZ, TMPDIR, TMP and TEMP. Nothing else of the
	// gateway's environment (its redaction key, ClickHouse password, other
	// servers' secrets) reaches the command. Put secrets here as ${NAME}.
	Env map[string]string `yaml:"env"`
	// EnvPassthrough names more variables of the gateway's environment to
	// pass to the command unchanged (stdio only): exact names, or prefixes
	// ending in "*" ("NODE_*"). Default none.
	EnvPassthrough []string `yaml:"env_passthrough"`
	// Dir is the command's working directory (stdio only). Default the
	// gateway's working directory.
	Dir string `yaml:"dir"`
	// URL is the endpoint (http and sse only), e.g. http://127.0.0.1:3001/mcp.
	URL string `yaml:"url"`
	// Headers are sent with every request to URL (http and sse only). Put
	// secrets here as ${NAME}. The client's own Authorization is never
	// passed on: a backend gets only the credential configured for it here
	// or in header_files.
	Headers map[string]string `yaml:"headers"`
	// HeaderFiles are headers whose value is read from a file (trimmed),
	// e.g. Authorization: /run/secrets/crm-token containing "Bearer …".
	// The file is read again at every (re)connect, so a rotated secret is
	// picked up. http and sse only.
	HeaderFiles map[string]string `yaml:"header_files"`
	// Timeout bounds one request to this server. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds starting/connecting and the initialize
	// handshake. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ProtocolVersion is the MCP protocol version offered to the backend in
	// initialize (YYYY-MM-DD). Default "2025-11-25". "2026-07-28" makes the
	// gateway speak to it without a session (server/discover, per-request
	// _meta, Mcp-Method/Mcp-Name headers).
	ProtocolVersion string `yaml:"protocol_version"`
	// Required makes /readyz report not-ready until this server is
	// connected. Default false.
	Required bool `yaml:"required"`
	// MaxConcurrency caps in-flight requests to this server; excess
	// requests wait. 0 (default) means unlimited.
	MaxConcurrency int `yaml:"max_concurrency"`
	// NoNamespace mounts the server without a namespace: its tools and
	// prompts keep their own names (Name still identifies it in records).
	// Meant for a gateway in front of one server. When a name then collides
	// with another server's, the colliding names are left out and /readyz
	// names them. Default false.
	NoNamespace bool `yaml:"no_namespace"`
	// ValidateArguments checks each tools/call's arguments against the
	// tool's inputSchema from this server's own tools/list (JSON Schema
	// 2020-12 unless the schema's $schema says draft-07 etc.), compiled
	// once per catalog refresh. Invalid arguments get a tool execution
	// error (isError: true, naming the JSON pointer and the failed
	// keyword) and the server is never called. A schema that does not
	// compile (or $refs anything outside itself) is not enforced and is
	// logged. Default true; tools.<name>.validate_arguments overrides it.
	ValidateArguments *bool `yaml:"validate_arguments"`
	// Tools holds per-tool settings, keyed by the tool's name as this
	// server knows it (without the namespace).
	Tools map[string]ToolSettings `yaml:"tools"`
	// Output filters every tool's results and error texts (see
	// OutputFilter); tools.<name>.output overrides it field by field.
	Output OutputFilter `yaml:"output"`
	// Breaker is this server's circuit breaker: after Failures consecutive
	// failures (transport errors, HTTP refusals, timeouts; a JSON-RPC error
	// or a tool's isError is an answer, not a failure) calls fail at once
	// with -32001 "circuit open" for OpenFor; then one call (or a health
	// ping) probes, and its success closes the circuit. A tool that times
	// out alone opens a breaker of its own. Failed health pings and
	// reconnects count too.
	Breaker Breaker `yaml:"breaker"`
	// Retries is how many more attempts an idempotent request gets after a
	// transport failure: tools/call of a tool annotated readOnlyHint, the
	// list methods, resources/read, prompts/get, completion/complete and
	// ping. Each attempt is its own recorded upstream hop. Timeouts are not
	// retried (the fallbacks are tried instead). Default 0.
	Retries int `yaml:"retries"`
	// RetryBackoff is the base delay before a retry, doubled per attempt
	// with full jitter, and never past the client's deadline. Default 100ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// Fallbacks name servers serving the same tools, tried in order when
	// this one is not connected, its circuit is open, or the call failed at
	// the transport level or timed out. The fallback gets the request with
	// the tool's own (un-namespaced) name; its hop is recorded with
	// fallback set. Default none.
	Fallbacks []string `yaml:"fallbacks"`
	// Pinning overrides pinning.on_change for this server's tools: off,
	// warn, hide or deny; tools.<name>.pinning overrides it per tool.
	Pinning string `yaml:"pinning"`
	// HealthInterval is how often the gateway pings this server while it
	// is connected (ping, or server/discover for 2026-07-28 servers). A
	// failed ping reconnects and counts as a breaker failure; a successful
	// one probes an open circuit after breaker.open_for. Default 5s.
	HealthInterval time.Duration `yaml:"health_interval"`
}

// Cache is the gateway's result cache.
type Cache struct {
	// MaxBytes bounds the cached results (keys and results), evicting the
	// least recently used. Default 64 MiB. One result larger than a quarter
	// of it is not cached, in this process or in Redis (redis.addr).
	MaxBytes int64 `yaml:"max_bytes"`
}

// ToolCache is one tool's result caching. Only tools their server annotates
// readOnlyHint: true are cached unless Force is set. A cached answer carries
// _meta "mcptrail.dev/cache" {"ageMs", "stale"} and its call's hops the
// attribute mcptrail.resilience=cached (or stale). Identical calls in
// flight at once share one upstream call. Tool errors (isError) are not
// cached.
type ToolCache struct {
	// TTL is how long an answer is served from the cache. Default: the
	// server's ttlMs hint on its tools/list (2026-07-28 servers), else 60s.
	TTL time.Duration `yaml:"ttl"`
	// Scope is private (one entry per principal) or public (one entry
	// shared by every principal allowed to call the tool). Default: the
	// server's cacheScope hint when it gives one, else private.
	Scope string `yaml:"scope"`
	// Force caches a tool that is not annotated read-only.
	Force bool `yaml:"force"`
	// ServeStale is how long past its TTL an answer may still be served,
	// marked stale, when the server (and its fallbacks) cannot answer:
	// down, circuit open, failed or timed out. Default 0: never.
	ServeStale time.Duration `yaml:"serve_stale"`
}

// Breaker configures a server's circuit breaker.
type Breaker struct {
	// Failures is how many consecutive failures open the circuit. Default
	// 5; -1 disables the breaker.
	Failures int `yaml:"failures"`
	// OpenFor is how long the circuit stays open before a probe. Default 10s.
	OpenFor time.Duration `yaml:"open_for"`
}

// ToolSettings are the checks of one tool of a server.
type ToolSettings struct {
	// Cache caches this tool's results (opt-in; nil: not cached).
	Cache *ToolCache `yaml:"cache"`
	// ValidateArguments overrides the server's validate_arguments for
	// this tool.
	ValidateArguments *bool `yaml:"validate_arguments"`
	// ArgumentRules allow or deny calls of this tool by CEL expressions
	// over args (the arguments), principal, roles and tool (its name on
	// this server), checked after validate_arguments; all must pass. A
	// refused call gets a tool error (isError: true) and the server is
	// never called. Compiled when the config is loaded.
	ArgumentRules []ArgumentRule `yaml:"argument_rules"`
	// Output filters this tool's results and error texts; each field set
	// here replaces the server's output field of the same name.
	Output OutputFilter `yaml:"output"`
	// Timeout bounds one call of this tool, instead of the server's
	// timeout; past it the call fails with -32004 and the backend is told
	// to cancel. Default the server's timeout.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency caps this tool's calls in flight (across all
	// clients), on top of the server's max_concurrency. Excess calls wait
	// in a queue where interactive callers go before background ones
	// (limits.priority), first come first served within a class; the wait
	// is recorded as queue_us of the upstream hop. 0 (default): no cap.
	MaxConcurrency int `yaml:"max_concurrency"`
	// QueueSize caps the calls waiting for this tool; a call finding the
	// queue full is refused at once with -32029 (limit "tool_queue").
	// Default 100 when max_concurrency is set.
	QueueSize int `yaml:"queue_size"`
	// Rate overrides limits.rate_per_tool for this tool: a token bucket
	// per principal for calls of this tool.
	Rate Rate `yaml:"rate"`
	// Pinning overrides the server's pinning for this tool: off, warn,
	// hide or deny.
	Pinning string `yaml:"pinning"`
}

// Pinning actions: what the gateway does when a tool's definition differs
// from its pin.
const (
	PinningOff  = "off"
	PinningWarn = "warn"
	PinningHide = "hide"
	PinningDeny = "deny"
)

// Pinning defaults.
const (
	DefaultPinningOnChange     = PinningWarn
	DefaultPinningPollInterval = 10 * time.Second
)

// Pinning pins each tool's definition: its description, inputSchema,
// outputSchema, annotations and title, as canonical JSON (key order and
// number spelling do not count), hashed with sha256 per server at every
// catalog refresh. The first version the gateway sees is pinned (trust on
// first use) unless one is pinned already; the pins and every change are
// kept in ClickHouse (table tool_pins) and in memory, so the gateway keeps
// enforcing them while ClickHouse is down. `mcptrail tools approve
// <server>.<tool>` pins a new version; `mcptrail tools drift` lists the
// changes with a diff.
type Pinning struct {
	// OnChange is what happens when a tool differs from its pin: "warn"
	// (default) serves it, records the change (a tool_pins row, an audit
	// event and the metric mcptrail_tool_changes_total) and logs a WARN;
	// "hide" also leaves the tool out of tools/list and refuses its calls
	// (-32003, naming the approve command, with the request ID) until the
	// new version is approved or the pinned one comes back; "deny" does
	// that for every tool of the server (a server that changed one tool
	// under you is not trusted with the others); "off" does not pin.
	// servers[].pinning and servers[].tools.<name>.pinning override it.
	//
	// A tool first seen while the pins could not be read from ClickHouse
	// (down since the gateway started) cannot be told apart from a changed
	// one: under warn it is served, pinned in memory (so a later change is
	// still caught) and in the store once it answers, unless the store has
	// a pin of its own; under hide and deny it is hidden (rule
	// "pinning:unverified") until the pins are read. Memory-only (recording off): pins last as long as the
	// process.
	OnChange string `yaml:"on_change"`
	// PollInterval is how often the gateway reads the pins from ClickHouse
	// (it also reads them after every catalog refresh), to pick up
	// approvals made with `mcptrail tools approve` (and pins written by
	// other gateways), and retries reading them while ClickHouse is down.
	// Default 10s.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// PinningFor is the pinning action of a tool as its server knows it: the
// tool's setting, else the server's, else pinning.on_change, else warn.
func (c *Config) PinningFor(server, tool string) string {
	if s := c.Server(server); s != nil {
		if a := s.Tools[tool].Pinning; a != "" {
			return a
		}
		if s.Pinning != "" {
			return s.Pinning
		}
	}
	if c.Pinning.OnChange != "" {
		return c.Pinning.OnChange
	}
	return DefaultPinningOnChange
}

// PinningPollInterval is pinning.poll_interval with its default.
func (c *Config) PinningPollInterval() time.Duration {
	if c.Pinning.PollInterval > 0 {
		return c.Pinning.PollInterval
	}
	return DefaultPinningPollInterval
}

// Output redaction modes.
const (
	OutputRedactOff    = "off"
	OutputRedactRedact = "redact"
	OutputRedactBlock  = "block"
)

// OutputFilter filters what a tool returns before the client sees it. A
// filtered answer carries _meta "mcptrail.dev/filtered" naming the filter,
// and the audit records it (an auth hop with decision "filtered").
type OutputFilter struct {
	// Redact applies the recorder's redaction rules (recorder.redaction:
	// keys, patterns, custom) to results and error texts: "redact"
	// replaces each secret as the recorder would, "block" withholds a
	// result that contains any (a tool error says why), "off" (default)
	// does neither.
	Redact string `yaml:"redact"`
	// MaxBytes withholds a result larger than this many bytes (its JSON)
	// with a tool error saying its size. Default 0: no cap.
	MaxBytes int `yaml:"max_bytes"`
	// DenyPatterns are regular expressions (RE2) matched against the
	// result's JSON and the error text; a match withholds it with a tool
	// error naming the pattern's index (never the matched text).
	DenyPatterns []string `yaml:"deny_patterns"`
}

// OutputFor is the output filter of tool: the server's, with each field
// the tool sets replacing the server's.
func (s *Server) OutputFor(tool string) OutputFilter {
	f := s.Output
	t := s.Tools[tool].Output
	if t.Redact != "" {
		f.Redact = t.Redact
	}
	if t.MaxBytes != 0 {
		f.MaxBytes = t.MaxBytes
	}
	if t.DenyPatterns != nil {
		f.DenyPatterns = t.DenyPatterns
	}
	return f
}

// ArgumentRule is one CEL rule; exactly one of Deny and Allow is set.
type ArgumentRule struct {
	// Deny refuses the call when true, e.g. '!args.path.startsWith("/srv/")'.
	Deny string `yaml:"deny"`
	// Allow refuses the call when false, e.g. '"admin" in roles || args.count <= 100.0'.
	Allow string `yaml:"allow"`
	// Message is what the caller is told on a refusal. Default: the rule's
	// key and expression.
	Message string `yaml:"message"`
}

// ValidatesArguments reports whether calls of tool (as this server knows
// it) are checked against its inputSchema: the tool's setting, else the
// server's, else true.
func (s *Server) ValidatesArguments(tool string) bool {
	if t, ok := s.Tools[tool]; ok && t.ValidateArguments != nil {
		return *t.ValidateArguments
	}
	if s.ValidateArguments != nil {
		return *s.ValidateArguments
	}
	return true
}

// Auth configures client authentication.
type Auth struct {
	// Tokens are the accepted bearer tokens. Empty (and no oauth):
	// authentication is off and every caller is the principal "anonymous"
	// with access to all tools.
	Tokens []Token `yaml:"tokens"`
	// OAuth makes the gateway an OAuth 2.1 resource server (MCP
	// authorization, 2025-11-25): it also accepts JWT access tokens from
	// one issuer. Static tokens keep working beside them. Once set, a JWT
	// may do only what the roles its claims give allow (deny by default).
	OAuth *OAuth `yaml:"oauth"`
	// Roles are named rule sets for JWT principals, in the same pattern
	// form as a token's lists; auth.oauth.bindings give them to tokens.
	Roles []Role `yaml:"roles"`
}

// OAuth configures validation of JWT access tokens.
type OAuth struct {
	// Issuer is the authorization server's issuer URL. Its signing keys
	// are found by OIDC discovery (<issuer>/.well-known/openid-configuration
	// → jwks_uri), cached, and fetched again when a token names an unknown
	// key (rotation). A token's iss must equal it. Required.
	Issuer string `yaml:"issuer"`
	// Resource is this gateway's resource URI (RFC 8707/9728), e.g.
	// https://mcp.example.com/mcp. A token's aud must contain it (tokens
	// minted for another service are refused); it is the "resource" of
	// /.well-known/oauth-protected-resource. Required.
	Resource string `yaml:"resource"`
	// ClockSkew is tolerated on exp and nbf. Default 30s, at most 5m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// Algorithms are the accepted JWS algorithms. Default RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA. "none" and
	// HS* are refused.
	Algorithms []string `yaml:"algorithms"`
	// RequiredScopes must all be in the token's scope (space-separated) or
	// scp (array) claim; a token without them is answered 403
	// insufficient_scope naming them. Default none.
	RequiredScopes []string `yaml:"required_scopes"`
	// ScopesSupported are advertised in the protected resource metadata.
	// Default required_scopes.
	ScopesSupported []string `yaml:"scopes_supported"`
	// PrincipalClaim is the claim recorded as the principal. Default "sub".
	PrincipalClaim string `yaml:"principal_claim"`
	// GroupsClaim holds the caller's groups (array or space-separated
	// string). Default "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// Bindings give roles to tokens: a binding applies when the token's
	// principal is in subjects, or one of its groups is in groups, or one
	// of its scopes is in scopes. A token gets every role that applies.
	Bindings []Binding `yaml:"bindings"`
}

// Binding gives a role to matching JWTs.
type Binding struct {
	// Role is the name of an auth.roles entry.
	Role string `yaml:"role"`
	// Subjects, Groups and Scopes: any match gives the role.
	Subjects []string `yaml:"subjects"`
	Groups   []string `yaml:"groups"`
	Scopes   []string `yaml:"scopes"`
}

// Role is a named set of patterns, written like a token's lists (tools,
// prompts, resources, completions, methods), per namespace (server).
type Role struct {
	// Name identifies the role; the audit records the rule that decided as
	// "role:<name>/<kind>:<pattern>" and the principal's roles as the
	// auth.roles attribute.
	Name        string   `yaml:"name"`
	Tools       []string `yaml:"tools"`
	Prompts     []string `yaml:"prompts"`
	Resources   []string `yaml:"resources"`
	Completions []string `yaml:"completions"`
	Methods     []string `yaml:"methods"`
}

// Token is one accepted bearer token, stored as a hash.
//
// What a token may do is one pattern list per kind of target. Each pattern
// is "*" (everything of that kind), a prefix ending in "*", or an exact
// target; "*" only at the end. What no pattern allows is denied, and lists
// (tools/list, prompts/list, resources/list, resources/templates/list) show
// only what a call would be allowed. A token that lists only tools gets no
// prompts, resources or completions, and no method mcptrail does not know.
// Targets are named after the server that serves them, whether or not it is
// mounted with no_namespace.
type Token struct {
	// Name identifies the token in audit records; unique.
	Name string `yaml:"name"`
	// SHA256 is the hex sha256 of the bearer token, as printed by
	// `mcptrail token hash`. The token itself is never in the config.
	SHA256 string `yaml:"sha256"`
	// Principal is who holds the token (a user or a service), recorded with
	// every call. Default the token name. Reserved, and refused: names
	// starting with "oauth:" (JWT users own their sessions under that
	// prefix), "anonymous" (every caller while authentication is off) and
	// "mcptrail" (the gateway's own audit events).
	Principal string `yaml:"principal"`
	// Tools are the tools this token may call (tools/call) and see
	// (tools/list), as <server><separator><tool>: "*" (all), a prefix
	// ending in "*" ("crm.*"), or an exact name ("files.read").
	Tools []string `yaml:"tools"`
	// Prompts are the prompts it may get and list, named like tools:
	// "everything.simple-prompt", "everything.*".
	Prompts []string `yaml:"prompts"`
	// Resources are the resources it may read, subscribe to and list
	// (resources and resource templates), as <server>:<uri pattern> with
	// the URI as that server knows it: "memory:*" (every resource of
	// server memory), "everything:test://static/*", or "*". A prefix
	// pattern does not match a URI whose rest could climb out of it (a
	// "." or ".." segment, a backslash, %2e, %2f, %5c or %25).
	Resources []string `yaml:"resources"`
	// Completions are the completion/complete references it may ask about:
	// a prompt, named like prompts ("everything.complex_prompt"), or a
	// resource template, named like resources ("everything:test://dynamic/*").
	Completions []string `yaml:"completions"`
	// Methods are the JSON-RPC methods mcptrail does not handle itself that
	// it may send to backends ("tasks/*"); every other unknown method is
	// denied. The protocol's own methods (initialize, ping, logging/setLevel,
	// server/discover, notifications) need no pattern.
	Methods []string `yaml:"methods"`
}

// Patterns returns the token's lists in the order tools, prompts,
// resources, completions, methods, with their config keys.
func (t *Token) Patterns() []TokenPatterns {
	return []TokenPatterns{
		{"tools", t.Tools}, {"prompts", t.Prompts}, {"resources", t.Resources},
		{"completions", t.Completions}, {"methods", t.Methods},
	}
}

// TokenPatterns is one pattern list of a token.
type TokenPatterns struct {
	Key      string
	Patterns []string
}

// Recorder configures recording of every hop.
type Recorder struct {
	// Enabled turns recording on. Default true.
	Enabled *bool `yaml:"enabled"`
	// ClickHouse is where events are stored.
	ClickHouse ClickHouse `yaml:"clickhouse"`
	// Spool is the on-disk buffer between the queue and ClickHouse.
	Spool Spool `yaml:"spool"`
	// QueueSize is the in-memory queue capacity, in events. Default 65536.
	QueueSize int `yaml:"queue_size"`
	// QueueBytes bounds the same queue by the memory its events hold
	// (payloads included), in bytes. Default 64 MiB.
	QueueBytes int64 `yaml:"queue_bytes"`
	// BatchSize is the maximum number of events per ClickHouse insert.
	// Default 10000.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is the longest an event waits before a (smaller) batch
	// is written. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Overflow is what happens when the queue is full or the spool is over
	// spool.max_bytes: "drop" (default) drops and counts the event and the
	// call proceeds, so with ClickHouse down long enough to fill the spool
	// calls are served UNRECORDED (a WARN is logged from 80% full, and
	// `mcptrail status` shows the fill level and the time left);
	// "fail_closed" refuses new calls instead, so nothing is unrecorded:
	// a call once admitted keeps all its hops.
	Overflow string `yaml:"overflow"`
	// ReadyWhenDegraded keeps /readyz ready while the recorder is degraded
	// (ClickHouse unreachable, the local ClickHouse restarting, the spool
	// nearly full or failing): the gateway keeps serving and its events
	// wait in the spool. Default true. Set false to take the gateway out of
	// a load balancer's rotation instead; /statusz and `mcptrail status`
	// show the recorder's health either way.
	ReadyWhenDegraded *bool `yaml:"ready_when_degraded"`
	// Payloads controls recording of request and response bodies.
	Payloads Payloads `yaml:"payloads"`
	// Redaction controls what is removed from payloads before recording.
	Redaction Redaction `yaml:"redaction"`
	// Retention controls how long records are kept.
	Retention Retention `yaml:"retention"`
}

// ClickHouse is the storage backend.
type ClickHouse struct {
	// Addr lists native-protocol host:port addresses (port 9000 usually).
	// Empty: mcptrail starts a local ClickHouse server in LocalDir.
	Addr []string `yaml:"addr"`
	// Database holds the mcptrail tables. Default "mcptrail".
	Database string `yaml:"database"`
	// Username to connect as. Default the server's default user.
	Username string `yaml:"username"`
	// Password to connect with; use ${NAME}, never a literal.
	Password string `yaml:"password"`
	// Cluster, when set, creates tables ON CLUSTER with replicated engines.
	Cluster string `yaml:"cluster"`
	// Migrate creates and upgrades tables at startup. Default true.
	Migrate *bool `yaml:"migrate"`
	// LocalDir is the data directory of the local server (addr empty).
	// Default "./.mcptrail/clickhouse".
	LocalDir string `yaml:"local_dir"`
	// LocalBinary is the clickhouse-server binary for the local server.
	// Default: clickhouse-server (or clickhouse) found on PATH or in
	// /usr/bin and /usr/sbin.
	LocalBinary string `yaml:"local_binary"`
}

// Spool is the durable on-disk buffer.
type Spool struct {
	// Dir holds spool segments. Default "./.mcptrail/spool".
	Dir string `yaml:"dir"`
	// Fsync is when segments are synced to disk: "always" (every append),
	// "interval" (default, every fsync_interval) or "never" (the OS decides).
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the sync period for fsync: interval. Default 1s.
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// MaxBytes caps the spool on disk, in bytes; beyond it the overflow
	// policy applies. Default 1 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// SegmentBytes is the size at which a segment file is rotated, in
	// bytes. Default 4 MiB (it also bounds the writer's memory); at most
	// max_bytes.
	SegmentBytes int64 `yaml:"segment_bytes"`
}

// Payloads controls body recording.
type Payloads struct {
	// Enabled records request and response bodies (after redaction).
	// Default true. When false only metadata (method, tool, sizes,
	// outcome, latency) is recorded.
	Enabled *bool `yaml:"enabled"`
	// MaxBytes truncates each recorded body, in bytes. Default 65536.
	MaxBytes int `yaml:"max_bytes"`
}

// Redaction controls what is scrubbed from payloads before recording.
type Redaction struct {
	// Keys are added to the built-in key rules (password, secret, token,
	// api_key, authorization, cookie, credential, private_key, …). A bare
	// name matches any key at any depth that contains its words, ignoring
	// case and separators ("password" matches db_password and passwordHash;
	// "api_key" matches apiKey and X-Api-Key), and key=value or "Key:
	// value" pairs in text; a dotted path ("*.card.number") matches the
	// last keys of a value's path. The word list and its exceptions
	// (maxTokens, token_count, progressToken…): recorder/redact/keys.go.
	Keys []string `yaml:"keys"`
	// Patterns are built-in pattern sets applied to every string value.
	// Default ["secrets"] (AWS, GitHub, Slack, Stripe, Google, OpenAI and
	// Anthropic keys, JWTs, bearer tokens, private keys, passwords in
	// URLs); "pii" adds e-mail addresses and phone numbers; [] disables
	// them (key rules still apply).
	Patterns []string `yaml:"patterns"`
	// Custom are extra named regular expressions (Go RE2 syntax).
	Custom []CustomPattern `yaml:"custom"`
	// HMACKeyEnv names the environment variable holding the key used to
	// replace redacted values by a keyed hash, so equal secrets stay
	// correlatable (payload digests are keyed with it too). Default
	// "MCPTRAIL_REDACTION_KEY"; when that variable is unset, a random key
	// per process is used, so placeholders compare only within one run.
	HMACKeyEnv string `yaml:"hmac_key_env"`
}

// CustomPattern is one user-defined redaction regexp.
type CustomPattern struct {
	// Name appears in the redaction marker; unique.
	Name string `yaml:"name"`
	// Regexp is a Go (RE2) regular expression; matches are redacted.
	Regexp string `yaml:"regexp"`
}

// Retention controls how long recorded data is kept. Durations accept Go
// syntax ("720h") and days ("30d"). Storage drops whole days at a time, so
// data may outlive its retention by up to a day. 0 keeps data forever.
type Retention struct {
	// Hops is how long hop events (metadata) are kept. Default 30d.
	Hops time.Duration `yaml:"hops"`
	// Payloads is how long recorded bodies are kept. Default 7d; at most
	// hops.
	Payloads time.Duration `yaml:"payloads"`
	// Audit is how long the audit trail (auth decisions, config changes)
	// is kept. Default 0 (forever).
	Audit time.Duration `yaml:"audit"`
}

// IsEnabled reports whether recording is on (default true).
func (r *Recorder) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// IsReadyWhenDegraded reports recorder.ready_when_degraded (default true).
func (r *Recorder) IsReadyWhenDegraded() bool {
	return r.ReadyWhenDegraded == nil || *r.ReadyWhenDegraded
}

// IsEnabled reports whether bodies are recorded (default true).
func (p *Payloads) IsEnabled() bool { return p.Enabled == nil || *p.Enabled }

// ShouldMigrate reports whether tables are created and upgraded at startup
// (default true).
func (c *ClickHouse) ShouldMigrate() bool { return c.Migrate == nil || *c.Migrate }

// Local reports whether mcptrail should start its own ClickHouse server.
func (c *ClickHouse) Local() bool { return len(c.Addr) == 0 }

// Server returns the server with the given name, or nil.
func (c *Config) Server(name string) *Server {
	for i := range c.Servers {
		if c.Servers[i].Name == name {
			return &c.Servers[i]
		}
	}
	return nil
}

// FromEnv reports whether the value at the key path (as in errors, e.g.
// "recorder.clickhouse.password") came from ${ENV} expansion.
func (c *Config) FromEnv(path string) bool { return c.envPaths[path] }

func boolPtr(b bool) *bool { return &b }
