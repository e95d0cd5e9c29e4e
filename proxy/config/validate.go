package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mcptrail/mcptrail/proxy/argrules"
	"github.com/mcptrail/mcptrail/proxy/auth"
)

// ApplyDefaults fills every zero-valued key that has a default. Parse calls
// it; call it yourself for a Config built in code.
func (c *Config) ApplyDefaults() { c.applyDefaults() }

func (c *Config) applyDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.NamespaceSeparator, DefaultNamespaceSeparator)
	setDefault(&c.ClientTraceContext, DefaultClientTraceContext)
	setDefault(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	l := &c.Limits
	setDefault(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&l.BodyReadTimeout, DefaultBodyReadTimeout)
	setDefault(&l.IdleTimeout, DefaultIdleTimeout)
	setDefault(&l.MaxSessions, DefaultMaxSessions)
	setDefault(&l.MaxSessionsPerPrincipal, DefaultMaxSessionsPerPrincipal)
	setDefault(&l.MaxSubscriptions, DefaultMaxSubscriptions)
	setDefault(&l.MaxUpstreamSubscriptionsPerPrincipal, DefaultMaxUpstreamSubscriptionsPerPrincipal)
	setDefault(&l.MaxUpstreamSubscriptionsPerServer, DefaultMaxUpstreamSubscriptionsPerServer)
	setDefault(&l.MaxTasksPerPrincipal, DefaultMaxTasksPerPrincipal)
	setDefault(&l.MaxHeldPerPrincipal, DefaultMaxHeldPerPrincipal)
	setDefault(&l.MaxInflightPerSession, DefaultMaxInflightPerSession)
	setDefault(&l.SessionIdleTimeout, DefaultSessionIdleTimeout)
	setDefault(&c.Cache.MaxBytes, DefaultCacheMaxBytes)
	c.applyReplicaDefaults()
	c.Admin.TokenSHA256 = strings.ToLower(c.Admin.TokenSHA256)
	if c.Instance == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Instance = h
		} else {
			c.Instance = "mcptrail"
		}
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		if s.Transport == "" {
			switch {
			case s.Command != "":
				s.Transport = TransportStdio
			case s.URL != "":
				s.Transport = TransportHTTP
			}
		}
		setDefault(&s.Timeout, DefaultServerTimeout)
		setDefault(&s.ConnectTimeout, DefaultConnectTimeout)
		setDefault(&s.ProtocolVersion, DefaultProtocolVersion)
		setDefault(&s.Breaker.Failures, DefaultBreakerFailures)
		setDefault(&s.Breaker.OpenFor, DefaultBreakerOpenFor)
		setDefault(&s.RetryBackoff, DefaultRetryBackoff)
	}
	for i := range c.Auth.Tokens {
		t := &c.Auth.Tokens[i]
		setDefault(&t.Principal, t.Name)
		t.SHA256 = strings.ToLower(t.SHA256)
	}
	r := &c.Recorder
	if r.Enabled == nil {
		r.Enabled = boolPtr(true)
	}
	setDefault(&r.QueueSize, DefaultQueueSize)
	setDefault(&r.QueueBytes, DefaultQueueBytes)
	setDefault(&r.BatchSize, DefaultBatchSize)
	setDefault(&r.FlushInterval, DefaultFlushInterval)
	setDefault(&r.Overflow, DefaultOverflow)
	ch := &r.ClickHouse
	setDefault(&ch.Database, DefaultDatabase)
	if ch.Migrate == nil {
		ch.Migrate = boolPtr(true)
	}
	setDefault(&ch.LocalDir, DefaultLocalDir)
	sp := &r.Spool
	setDefault(&sp.Dir, DefaultSpoolDir)
	setDefault(&sp.Fsync, DefaultFsync)
	setDefault(&sp.FsyncInterval, DefaultFsyncInterval)
	setDefault(&sp.MaxBytes, DefaultSpoolMaxBytes)
	setDefault(&sp.SegmentBytes, min(DefaultSpoolSegmentBytes, sp.MaxBytes))
	if r.Payloads.Enabled == nil {
		r.Payloads.Enabled = boolPtr(true)
	}
	setDefault(&r.Payloads.MaxBytes, DefaultPayloadMaxBytes)
	if r.Redaction.Patterns == nil { // absent; an explicit [] disables them
		r.Redaction.Patterns = append([]string(nil), DefaultRedactionPatterns...)
	}
	setDefault(&r.Redaction.HMACKeyEnv, DefaultHMACKeyEnv)
	// Retention 0 means forever, so only absent keys get defaults.
	rt := &r.Retention
	if !c.present["recorder.retention.hops"] && rt.Hops == 0 {
		rt.Hops = DefaultRetentionHops
	}
	if !c.present["recorder.retention.payloads"] && rt.Payloads == 0 {
		rt.Payloads = DefaultRetentionPayloads
		if rt.Hops > 0 {
			rt.Payloads = min(rt.Payloads, rt.Hops)
		}
	}
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

var (
	serverName      = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	llmToolName     = regexp.MustCompile(`^[a-zA-Z0-9_-]*$`)
	protocolVersion = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	identifier      = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	headerName      = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9a-zA-Z-]+$")
)

// Validate checks the whole config and returns every problem found, each
// naming the file and the key ("mcptrail.yaml: servers[1].url: ...").
// Zero values of keys that have defaults are accepted.
func (c *Config) Validate() error {
	v := validator{file: displayName(c.Path)}
	if c.Listen != "" {
		if err := checkHostPort(c.Listen); err != nil {
			v.add("listen", "%v", err)
		}
	}
	if sep := c.NamespaceSeparator; sep != "" {
		switch {
		case len(sep) > 8:
			v.add("namespace_separator", "%q is longer than 8 bytes", sep)
		case strings.ContainsFunc(sep, func(r rune) bool {
			return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsSpace(r) || unicode.IsControl(r)
		}):
			v.add("namespace_separator", "%q may not contain letters, digits or spaces: it must split \"server<sep>tool\" unambiguously", sep)
		}
	}
	if c.MaxBodyBytes < 0 {
		v.add("max_body_bytes", "must not be negative, got %d", c.MaxBodyBytes)
	}
	v.nonNegative("shutdown_timeout", c.ShutdownTimeout)
	c.validateLimits(&v)
	c.validateReplicas(&v)

	if len(c.Servers) == 0 {
		v.add("servers", "at least one server is required")
	}
	names := map[string]int{}
	for i := range c.Servers {
		c.validateServer(&v, i, names)
	}
	tokens := map[string]int{}
	hashes := map[string]int{}
	for i, t := range c.Auth.Tokens {
		key := fmt.Sprintf("auth.tokens[%d]", i)
		switch j, dup := tokens[t.Name]; {
		case t.Name == "":
			v.add(key+".name", "is required")
		case dup:
			v.add(key+".name", "%q is also the name of auth.tokens[%d]", t.Name, j)
		default:
			tokens[t.Name] = i
		}
		if err := auth.CheckStaticPrincipal(t.Principal); err != nil && t.Name != "" {
			// t.Principal defaults to t.Name.
			v.add(key+".principal", "%v", err)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
			v.add(key+".sha256", "must be 64 hex digits (the sha256 of the token; run `mcptrail token hash`), got %d characters", len(t.SHA256))
		} else if j, dup := hashes[strings.ToLower(t.SHA256)]; dup {
			v.add(key+".sha256", "same token hash as auth.tokens[%d]", j)
		} else {
			hashes[strings.ToLower(t.SHA256)] = i
		}
		empty := true
		for kind, l := range t.Patterns() {
			empty = empty && len(l.Patterns) == 0
			for k, p := range l.Patterns {
				if err := auth.CheckPattern(auth.Kind(kind), p); err != nil {
					v.add(fmt.Sprintf("%s.%s[%d]", key, l.Key, k), "%v", err)
				}
			}
		}
		if empty {
			v.add(key+".tools", `is empty, and so are prompts, resources, completions and methods; list what this token may use (tools: ["*"] for every tool)`)
		}
	}
	c.validateOAuth(&v)
	c.validateRecorder(&v)
	validPinning(&v, "pinning.on_change", c.Pinning.OnChange)
	v.nonNegative("pinning.poll_interval", c.Pinning.PollInterval)
	return v.err()
}

func (c *Config) validateOAuth(v *validator) {
	roles := map[string]int{}
	for i, r := range c.Auth.Roles {
		key := fmt.Sprintf("auth.roles[%d]", i)
		if r.Name == "" {
			v.add(key+".name", "is required")
		} else if j, dup := roles[r.Name]; dup {
			v.add(key+".name", "%q is also the name of auth.roles[%d]", r.Name, j)
		} else {
			roles[r.Name] = i
		}
		t := Token{Tools: r.Tools, Prompts: r.Prompts, Resources: r.Resources, Completions: r.Completions, Methods: r.Methods}
		for kind, l := range t.Patterns() {
			for k, p := range l.Patterns {
				if err := auth.CheckPattern(auth.Kind(kind), p); err != nil {
					v.add(fmt.Sprintf("%s.%s[%d]", key, l.Key, k), "%v", err)
				}
			}
		}
	}
	o := c.Auth.OAuth
	if o == nil {
		if len(c.Auth.Roles) > 0 {
			v.add("auth.roles", "roles are given by auth.oauth.bindings; set auth.oauth")
		}
		return
	}
	if u, err := url.Parse(o.Issuer); o.Issuer == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.add("auth.oauth.issuer", "%q: want the issuer's http(s) URL", o.Issuer)
	}
	if u, err := url.Parse(o.Resource); o.Resource == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		v.add("auth.oauth.resource", "%q: want this gateway's absolute http(s) resource URI without a fragment", o.Resource)
	}
	if o.ClockSkew < 0 || o.ClockSkew > auth.MaxClockSkew {
		v.add("auth.oauth.clock_skew", "%s: want between 0 and %s", o.ClockSkew, auth.MaxClockSkew)
	}
	for i, a := range o.Algorithms {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			v.add(fmt.Sprintf("auth.oauth.algorithms[%d]", i), "%q is not allowed (asymmetric algorithms only)", a)
		}
	}
	for i, b := range o.Bindings {
		if _, ok := roles[b.Role]; !ok {
			v.add(fmt.Sprintf("auth.oauth.bindings[%d].role", i), "%q is not the name of any auth.roles entry", b.Role)
		}
		if len(b.Subjects)+len(b.Groups)+len(b.Scopes) == 0 {
			v.add(fmt.Sprintf("auth.oauth.bindings[%d]", i), "names no subjects, groups or scopes: it would give role %q to nobody", b.Role)
		}
	}
}

func (c *Config) validateLimits(v *validator) {
	l := &c.Limits
	v.nonNegative("limits.read_header_timeout", l.ReadHeaderTimeout)
	v.nonNegative("limits.body_read_timeout", l.BodyReadTimeout)
	v.nonNegative("limits.idle_timeout", l.IdleTimeout)
	v.nonNegative("limits.session_idle_timeout", l.SessionIdleTimeout)
	v.nonNegativeInt("limits.max_sessions", l.MaxSessions)
	if c.Cache.MaxBytes < 0 {
		v.add("cache.max_bytes", "must not be negative, got %d", c.Cache.MaxBytes)
	}
	v.nonNegativeInt("limits.max_sessions_per_principal", l.MaxSessionsPerPrincipal)
	v.nonNegativeInt("limits.max_tasks_per_principal", l.MaxTasksPerPrincipal)
	v.nonNegativeInt("limits.max_held_per_principal", l.MaxHeldPerPrincipal)
	v.nonNegativeInt("limits.max_inflight_per_session", l.MaxInflightPerSession)
	v.nonNegativeInt("limits.max_subscriptions", l.MaxSubscriptions)
	v.nonNegativeInt("limits.max_upstream_subscriptions_per_principal", l.MaxUpstreamSubscriptionsPerPrincipal)
	v.nonNegativeInt("limits.max_upstream_subscriptions_per_server", l.MaxUpstreamSubscriptionsPerServer)
	if l.MaxSessions > 0 && l.MaxSessionsPerPrincipal > l.MaxSessions {
		v.add("limits.max_sessions_per_principal", "%d is more than limits.max_sessions (%d)", l.MaxSessionsPerPrincipal, l.MaxSessions)
	}
	c.validateRateLimits(v)
	switch c.ClientTraceContext {
	case "", TraceContextLink, TraceContextParent:
	default:
		v.add("client_trace_context", "%q: want %s or %s", c.ClientTraceContext, TraceContextLink, TraceContextParent)
	}
	for i, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			v.add(fmt.Sprintf("allowed_origins[%d]", i), "%v", err)
		}
	}
	if c.Admin.Listen != "" {
		if err := checkHostPort(c.Admin.Listen); err != nil {
			v.add("admin.listen", "%v", err)
		} else if c.Admin.Listen == c.Listen {
			v.add("admin.listen", "%q is also listen; give the admin endpoints their own address or leave admin.listen empty", c.Admin.Listen)
		}
	}
	if t := c.Admin.TokenSHA256; t != "" {
		if b, err := hex.DecodeString(t); err != nil || len(b) != 32 {
			v.add("admin.token_sha256", "must be 64 hex digits (the sha256 of the token; run `mcptrail token hash`), got %d characters", len(t))
		}
	}
	if t := c.Admin.TraceURL; t != "" {
		if u, err := url.Parse(strings.ReplaceAll(t, "{trace_id}", "0")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("admin.trace_url", "%q is not an http(s) URL", t)
		} else if !strings.Contains(t, "{trace_id}") {
			v.add("admin.trace_url", "%q has no {trace_id} placeholder", t)
		}
	}
}

// checkOrigin accepts "*" or an origin as browsers send it:
// scheme://host[:port], nothing else.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin like \"https://app.example.com\" (scheme://host[:port], no path)", o)
	}
	return nil
}

func (c *Config) validateServer(v *validator, i int, names map[string]int) {
	s := &c.Servers[i]
	key := fmt.Sprintf("servers[%d]", i)
	switch j, dup := names[s.Name]; {
	case s.Name == "":
		v.add(key+".name", "is required")
	case !serverName.MatchString(s.Name):
		v.add(key+".name", "%q may contain only letters, digits, _ and -", s.Name)
	case dup:
		v.add(key+".name", "%q is also the name of servers[%d]", s.Name, j)
	case c.NamespaceSeparator != "" && strings.Contains(s.Name, c.NamespaceSeparator):
		v.add(key+".name", "%q contains the namespace_separator %q, so its tool names would be ambiguous", s.Name, c.NamespaceSeparator)
	default:
		names[s.Name] = i
	}
	switch s.Transport {
	case TransportStdio:
		if s.Command == "" {
			v.add(key+".command", "is required for transport stdio")
		}
		if s.URL != "" {
			v.add(key+".url", "is not used by transport stdio (use transport http or sse)")
		}
		if len(s.Headers) > 0 {
			v.add(key+".headers", "are not used by transport stdio")
		}
		if len(s.HeaderFiles) > 0 {
			v.add(key+".header_files", "are not used by transport stdio")
		}
	case TransportHTTP, TransportSSE:
		if s.URL == "" {
			v.add(key+".url", "is required for transport %s", s.Transport)
		} else if err := checkURL(s.URL); err != nil {
			v.add(key+".url", "%v", err)
		}
		if s.Command != "" || len(s.Args) > 0 || len(s.Env) > 0 || len(s.EnvPassthrough) > 0 || s.Dir != "" {
			v.add(key+".command", "command, args, env, env_passthrough and dir are used only by transport stdio")
		}
		for h := range s.Headers {
			if !headerName.MatchString(h) {
				v.add(key+".headers."+h, "is not a valid HTTP header name")
			}
		}
		for h, f := range s.HeaderFiles {
			if !headerName.MatchString(h) {
				v.add(key+".header_files."+h, "is not a valid HTTP header name")
			} else if _, dup := s.Headers[h]; dup {
				v.add(key+".header_files."+h, "is also in headers")
			} else if f == "" {
				v.add(key+".header_files."+h, "needs a file path")
			}
		}
	case "":
		v.add(key+".transport", "is required: stdio (with command) or http/sse (with url)")
	default:
		v.add(key+".transport", "%q is not one of stdio, http, sse", s.Transport)
	}
	for name := range s.Env {
		if !validEnvName(name) {
			v.add(key+".env."+name, "is not a valid environment variable name")
		}
	}
	for k, name := range s.EnvPassthrough {
		if n, _ := strings.CutSuffix(name, "*"); !validEnvName(n) {
			v.add(fmt.Sprintf("%s.env_passthrough[%d]", key, k), "%q is not an environment variable name or a prefix ending in *", name)
		}
	}
	v.nonNegative(key+".timeout", s.Timeout)
	v.nonNegative(key+".connect_timeout", s.ConnectTimeout)
	if s.ProtocolVersion != "" && !protocolVersion.MatchString(s.ProtocolVersion) {
		v.add(key+".protocol_version", "%q is not a protocol version like %q", s.ProtocolVersion, DefaultProtocolVersion)
	}
	if s.MaxConcurrency < 0 {
		v.add(key+".max_concurrency", "must not be negative (0 means unlimited), got %d", s.MaxConcurrency)
	}
	validateOutput(v, key+".output", s.Output)
	for _, tool := range slices.Sorted(maps.Keys(s.Tools)) {
		validateOutput(v, key+".tools."+tool+".output", s.Tools[tool].Output)
		for j, r := range s.Tools[tool].ArgumentRules {
			rk := fmt.Sprintf("%s.tools.%s.argument_rules[%d]", key, tool, j)
			if _, err := r.Compile(rk); err != nil {
				v.add(rk, "%v", err)
			}
		}
	}
	if s.Breaker.Failures < -1 {
		v.add(key+".breaker.failures", "must be at least 1, or -1 to disable the breaker, got %d", s.Breaker.Failures)
	}
	v.nonNegative(key+".breaker.open_for", s.Breaker.OpenFor)
	if s.Retries < 0 || s.Retries > 10 {
		v.add(key+".retries", "must be between 0 and 10, got %d", s.Retries)
	}
	v.nonNegative(key+".retry_backoff", s.RetryBackoff)
	v.nonNegative(key+".health_interval", s.HealthInterval)
	validPinning(v, key+".pinning", s.Pinning)
	for _, name := range slices.Sorted(maps.Keys(s.Tools)) {
		validPinning(v, key+".tools."+name+".pinning", s.Tools[name].Pinning)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Tools)) {
		tc := s.Tools[name].Cache
		if tc == nil {
			continue
		}
		tk := key + ".tools." + name + ".cache"
		v.nonNegative(tk+".ttl", tc.TTL)
		v.nonNegative(tk+".serve_stale", tc.ServeStale)
		if tc.Scope != "" && tc.Scope != "private" && tc.Scope != "public" {
			v.add(tk+".scope", "%q is not private or public", tc.Scope)
		}
	}
	for k, f := range s.Fallbacks {
		fk := fmt.Sprintf("%s.fallbacks[%d]", key, k)
		switch {
		case f == s.Name:
			v.add(fk, "%q is the server itself", f)
		case !c.hasServer(f):
			v.add(fk, "%q is not the name of a server", f)
		}
	}
}

// Compile compiles the rule; key names it in records and errors.
func (r ArgumentRule) Compile(key string) (*argrules.Rule, error) {
	switch {
	case (r.Deny == "") == (r.Allow == ""):
		return nil, errors.New("exactly one of deny and allow must be set")
	case r.Deny != "":
		rule, err := argrules.Compile(key, r.Deny, true, r.Message)
		if err != nil {
			return nil, fmt.Errorf("deny: %w", err)
		}
		return rule, nil
	default:
		rule, err := argrules.Compile(key, r.Allow, false, r.Message)
		if err != nil {
			return nil, fmt.Errorf("allow: %w", err)
		}
		return rule, nil
	}
}

func (c *Config) hasServer(name string) bool {
	for _, s := range c.Servers {
		if s.Name == name {
			return true
		}
	}
	return false
}

func (c *Config) validateRecorder(v *validator) {
	r := &c.Recorder
	v.nonNegativeInt("recorder.queue_size", r.QueueSize)
	if r.QueueBytes < 0 {
		v.add("recorder.queue_bytes", "must not be negative, got %d", r.QueueBytes)
	}
	v.nonNegativeInt("recorder.batch_size", r.BatchSize)
	v.nonNegative("recorder.flush_interval", r.FlushInterval)
	switch r.Overflow {
	case "", OverflowDrop, OverflowFailClosed:
	default:
		v.add("recorder.overflow", "%q is not one of drop, fail_closed", r.Overflow)
	}
	ch := &r.ClickHouse
	for i, a := range ch.Addr {
		if err := checkHostPort(a); err != nil {
			v.add(fmt.Sprintf("recorder.clickhouse.addr[%d]", i), "%v", err)
		}
	}
	if ch.Database != "" && !identifier.MatchString(ch.Database) {
		v.add("recorder.clickhouse.database", "%q is not a plain identifier (letters, digits, _)", ch.Database)
	}
	if ch.Cluster != "" && !identifier.MatchString(ch.Cluster) {
		v.add("recorder.clickhouse.cluster", "%q is not a plain identifier (letters, digits, _)", ch.Cluster)
	}
	sp := &r.Spool
	switch sp.Fsync {
	case "", FsyncAlways, FsyncInterval, FsyncNever:
	default:
		v.add("recorder.spool.fsync", "%q is not one of always, interval, never", sp.Fsync)
	}
	v.nonNegative("recorder.spool.fsync_interval", sp.FsyncInterval)
	if sp.MaxBytes < 0 {
		v.add("recorder.spool.max_bytes", "must not be negative, got %d", sp.MaxBytes)
	}
	if sp.SegmentBytes < 0 {
		v.add("recorder.spool.segment_bytes", "must not be negative, got %d", sp.SegmentBytes)
	} else if sp.MaxBytes > 0 && sp.SegmentBytes > sp.MaxBytes {
		v.add("recorder.spool.segment_bytes", "%d is larger than recorder.spool.max_bytes %d", sp.SegmentBytes, sp.MaxBytes)
	}
	v.nonNegativeInt("recorder.payloads.max_bytes", r.Payloads.MaxBytes)
	rd := &r.Redaction
	for i, k := range rd.Keys {
		if strings.TrimSpace(k) == "" {
			v.add(fmt.Sprintf("recorder.redaction.keys[%d]", i), "is empty")
		}
	}
	for i, p := range rd.Patterns {
		if strings.TrimSpace(p) == "" {
			v.add(fmt.Sprintf("recorder.redaction.patterns[%d]", i), "is empty")
		}
	}
	custom := map[string]int{}
	for i, p := range rd.Custom {
		key := fmt.Sprintf("recorder.redaction.custom[%d]", i)
		switch j, dup := custom[p.Name]; {
		case p.Name == "":
			v.add(key+".name", "is required")
		case dup:
			v.add(key+".name", "%q is also the name of recorder.redaction.custom[%d]", p.Name, j)
		default:
			custom[p.Name] = i
		}
		if p.Regexp == "" {
			v.add(key+".regexp", "is required")
		} else if _, err := regexp.Compile(p.Regexp); err != nil {
			v.add(key+".regexp", "%v", err)
		}
	}
	if rd.HMACKeyEnv != "" && !validEnvName(rd.HMACKeyEnv) {
		v.add("recorder.redaction.hmac_key_env", "%q is not a valid environment variable name", rd.HMACKeyEnv)
	}
	rt := &r.Retention
	v.nonNegative("recorder.retention.hops", rt.Hops)
	v.nonNegative("recorder.retention.payloads", rt.Payloads)
	v.nonNegative("recorder.retention.audit", rt.Audit)
	if rt.Hops > 0 && (rt.Payloads == 0 || rt.Payloads > rt.Hops) {
		v.add("recorder.retention.payloads", "%s outlives recorder.retention.hops %s; payloads are kept at most as long as hops", fmtDays(rt.Payloads), fmtDays(rt.Hops))
	}
}

// Warnings lists legal but risky settings, for logging at startup.
func (c *Config) Warnings() []string {
	var w []string
	if sep := c.NamespaceSeparator; !llmToolName.MatchString(sep) {
		w = append(w, fmt.Sprintf(`namespace_separator %q makes tool names like "crm%ssearch" that LLM APIs requiring [a-zA-Z0-9_-] (OpenAI, Anthropic) reject: set namespace_separator: __`, sep, sep))
	}
	if o := c.Auth.OAuth; o != nil && len(o.Bindings) == 0 {
		w = append(w, "auth.oauth has no bindings: a JWT gets no role and is denied everything (deny by default)")
	}
	if o := c.Auth.OAuth; o != nil {
		if u, err := url.Parse(o.Issuer); err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
			w = append(w, fmt.Sprintf("auth.oauth.issuer %s is plain http: its discovery document and keys can be changed in transit, and with them which tokens are accepted; use https", o.Issuer))
		}
	}
	if len(c.Auth.Tokens) == 0 && c.Auth.OAuth == nil && c.Listen != "" {
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) {
			w = append(w, fmt.Sprintf("auth.tokens is empty and listen %s is not a loopback address: anyone who can reach it can call every tool", c.Listen))
		}
	}
	w = append(w, c.replicaWarnings()...)
	if pw := c.Recorder.ClickHouse.Password; pw != "" && !c.FromEnv("recorder.clickhouse.password") {
		w = append(w, "recorder.clickhouse.password is written in the config file: use ${ENV_VAR} so the secret stays out of it")
	}
	for i, s := range c.Servers {
		for h := range s.Headers {
			if secretHeader(h) && !c.FromEnv(fmt.Sprintf("servers[%d].headers.%s", i, h)) {
				w = append(w, fmt.Sprintf("servers[%d].headers.%s is written in the config file: use ${ENV_VAR} so the secret stays out of it", i, h))
			}
		}
	}
	for i, t := range c.Auth.Tokens {
		for kind, l := range t.Patterns() {
			for k, p := range l.Patterns {
				if p == "*" {
					if auth.Kind(kind) == auth.Tools {
						w = append(w, fmt.Sprintf("auth.tokens[%d] (%s) may call every tool", i, t.Name))
					}
					continue
				}
				if !c.patternHasServer(auth.Kind(kind), p) {
					form := "<server>" + c.NamespaceSeparator + "<name>"
					if auth.Kind(kind) == auth.Resources {
						form = "<server>:<uri>"
					}
					w = append(w, fmt.Sprintf("auth.tokens[%d].%s[%d] %q matches no server: %s are named %s", i, l.Key, k, p, l.Key, form))
				}
			}
		}
	}
	for i, r := range c.Auth.Roles {
		t := Token{Tools: r.Tools, Prompts: r.Prompts, Resources: r.Resources, Completions: r.Completions, Methods: r.Methods}
		for kind, l := range t.Patterns() {
			for k, p := range l.Patterns {
				if p != "*" && !c.patternHasServer(auth.Kind(kind), p) {
					w = append(w, fmt.Sprintf("auth.roles[%d].%s[%d] %q matches no server", i, l.Key, k, p))
				}
			}
		}
	}
	if !c.Recorder.IsEnabled() {
		w = append(w, "recorder.enabled is false: calls are not recorded")
	}
	return w
}

// patternHasServer reports whether a pattern of kind k can match a target
// of some configured server. Targets are named after their server even when
// it is mounted with no_namespace.
func (c *Config) patternHasServer(k auth.Kind, p string) bool {
	if k == auth.Methods {
		return true
	}
	prefix, wild := strings.CutSuffix(p, "*")
	for _, s := range c.Servers {
		for _, ns := range []string{s.Name + c.NamespaceSeparator, s.Name + ":"} {
			if (ns[len(ns)-1] == ':') != (k == auth.Resources) && k != auth.Completions {
				continue
			}
			if strings.HasPrefix(prefix, ns) || (wild && strings.HasPrefix(ns, prefix)) {
				return true
			}
		}
	}
	return false
}

func secretHeader(h string) bool {
	h = strings.ToLower(h)
	for _, s := range []string{"authorization", "cookie", "token", "secret", "key", "password", "credential"} {
		if strings.Contains(h, s) {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", s, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: invalid host %q", s, host)
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http or https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}

func fmtDays(d time.Duration) string {
	if d == 0 {
		return "0 (forever)"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

type validator struct {
	file string
	errs []error
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s: %s", v.file, key, fmt.Sprintf(format, args...)))
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.add(key, "must not be negative, got %s", d)
	}
}

func (v *validator) nonNegativeInt(key string, n int) {
	if n < 0 {
		v.add(key, "must not be negative, got %d", n)
	}
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func validateOutput(v *validator, key string, f OutputFilter) {
	switch f.Redact {
	case "", OutputRedactOff, OutputRedactRedact, OutputRedactBlock:
	default:
		v.add(key+".redact", "%q is not off, redact or block", f.Redact)
	}
	if f.MaxBytes < 0 {
		v.add(key+".max_bytes", "must not be negative (0 means no cap), got %d", f.MaxBytes)
	}
	for i, p := range f.DenyPatterns {
		if _, err := regexp.Compile(p); err != nil {
			v.add(fmt.Sprintf("%s.deny_patterns[%d]", key, i), "%v", err)
		}
	}
}

func validPinning(v *validator, key, a string) {
	switch a {
	case "", PinningOff, PinningWarn, PinningHide, PinningDeny:
	default:
		v.add(key, "%q is not off, warn, hide or deny", a)
	}
}
