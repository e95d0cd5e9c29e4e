package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mcptrail/mcptrail/recorder"
)

// Metric names, as OpenTelemetry instruments; a Prometheus exporter turns
// them into mcptrail_requests_total, mcptrail_request_duration_seconds, …
// (dots become underscores, units and _total are appended).
const (
	metricRequests         = "mcptrail.requests"
	metricRequestDuration  = "mcptrail.request.duration"
	metricPolicyDecisions  = "mcptrail.policy.decisions"
	metricConfigReloads    = "mcptrail.config.reloads"
	metricLimitRefusals    = "mcptrail.limit.refusals"
	metricToolChanges      = "mcptrail.tool.changes"
	metricPinsDropped      = "mcptrail.pinning.events.dropped"
	metricSessions         = "mcptrail.sessions"
	metricStreams          = "mcptrail.streams"
	metricStreamDropped    = "mcptrail.stream.messages.dropped"
	metricBackendUp        = "mcptrail.backend.up"
	metricCircuitState     = "mcptrail.backend.circuit.state"
	metricCircuitOpens     = "mcptrail.backend.circuit.opens"
	metricCircuitToolsOpen = "mcptrail.backend.circuit.tools_open"
	metricCircuitRejected  = "mcptrail.backend.circuit.rejected"
	metricRetries          = "mcptrail.upstream.retries"
	metricFallbacks        = "mcptrail.upstream.fallbacks"
	metricCacheHits        = "mcptrail.cache.hits"
	metricCacheMisses      = "mcptrail.cache.misses"
	metricCacheStale       = "mcptrail.cache.stale"
	metricCacheEvictions   = "mcptrail.cache.evictions"
	metricCacheSize        = "mcptrail.cache.size"
	metricCacheEntries     = "mcptrail.cache.entries"
	// Only with sealed sessions / Redis (README "Replicas").
	metricSessionsResumed  = "mcptrail.sessions.resumed"
	metricSharedErrors     = "mcptrail.shared.cache.errors"
	metricRecEnqueued      = "mcptrail.recorder.events.enqueued"
	metricRecSpooled       = "mcptrail.recorder.events.spooled"
	metricRecWritten       = "mcptrail.recorder.events.written"
	metricRecDropped       = "mcptrail.recorder.events.dropped"
	metricRecRetried       = "mcptrail.recorder.batches.retried"
	metricRecQuarantined   = "mcptrail.recorder.events.quarantined"
	metricRecUnacked       = "mcptrail.recorder.events.unacknowledged"
	metricRecQuarantineSz  = "mcptrail.recorder.quarantine.size"
	metricRecQueue         = "mcptrail.recorder.queue.events"
	metricRecSpoolSize     = "mcptrail.recorder.spool.size"
	metricRecSpoolSegments = "mcptrail.recorder.spool.segments"
	metricRecWrites        = "mcptrail.recorder.writes"
	metricRecWriteTime     = "mcptrail.recorder.write.time"
	metricRecWriteLast     = "mcptrail.recorder.write.last_duration"
)

// Policy decisions, as counted by PolicyDecision.
const (
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
)

// durationBuckets suit MCP calls: from a cached or local answer (100 µs) to
// a backend at its timeout (60 s).
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// RecorderStats is what a Recorder exposes to be measured; the gateway reads
// it at collection time only.
type RecorderStats interface {
	Stats() recorder.Stats
}

// metrics holds the gateway's instruments. Only what happens once per call
// is measured on the request path (a counter and a histogram where the call
// ends, a counter per policy decision); everything the gateway already
// counts — sessions, streams, backends, the recorder's Stats — is read by
// one callback when the metrics are collected. A nil *metrics (no
// MeterProvider configured) measures nothing and costs nothing.
type metrics struct {
	requests  metric.Int64Counter
	duration  metric.Float64Histogram
	decisions metric.Int64Counter
	reloads   metric.Int64Counter
	reloadOK  metric.AddOption
	reloadBad metric.AddOption
	refusals  metric.Int64Counter
	changes   metric.Int64Counter
	limitAttr map[string]metric.AddOption // limit name → its attribute

	// Attribute sets are built once per distinct label combination: every
	// label has a bounded set of values (see observeCall), so these maps
	// stop growing, and a call's measurement allocates nothing.
	callAttrs     attrCache[callLabels]
	durationAttrs attrCache[callLabels]
	decisionAttrs attrCache[decisionLabels]
}

type callLabels struct{ server, method, tool, outcome string }

type decisionLabels struct{ check, decision, rule string }

// attrCache maps labels to a prebuilt attribute option; copy on write, so
// reads take no lock.
type attrCache[K comparable] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]metric.MeasurementOption]
}

func (c *attrCache[K]) get(k K, build func(K) attribute.Set) metric.MeasurementOption {
	if m := c.m.Load(); m != nil {
		if o, ok := (*m)[k]; ok {
			return o
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if o, ok := (*old)[k]; ok {
			return o
		}
	}
	next := make(map[K]metric.MeasurementOption, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	o := metric.WithAttributeSet(build(k))
	next[k] = o
	c.m.Store(&next)
	return o
}

func lenOf[K comparable, V any](m *map[K]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

func newMetrics(mp metric.MeterProvider, g *Gateway) (*metrics, error) {
	meter := mp.Meter("github.com/mcptrail/mcptrail/proxy", metric.WithInstrumentationVersion(g.version))
	m := &metrics{}
	var err error
	if m.requests, err = meter.Int64Counter(metricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Client requests served, by backend server, method, tool and outcome (ok, tool_error, jsonrpc_error, transport_error, denied, …).")); err != nil {
		return nil, err
	}
	if m.duration, err = meter.Float64Histogram(metricRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from receiving a client request to its answer, by backend server, method and tool."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if m.decisions, err = meter.Int64Counter(metricPolicyDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Policy decisions, by check, decision (allowed, denied) and the rule that decided.")); err != nil {
		return nil, err
	}
	if m.reloads, err = meter.Int64Counter(metricConfigReloads, metric.WithUnit("{reload}"),
		metric.WithDescription("Config reloads, by result: applied, or rejected (the previous config stayed in force).")); err != nil {
		return nil, err
	}
	m.reloadOK = metric.WithAttributes(attribute.String("result", "applied"))
	m.reloadBad = metric.WithAttributes(attribute.String("result", "rejected"))
	m.reloads.Add(context.Background(), 0, m.reloadOK)
	m.reloads.Add(context.Background(), 0, m.reloadBad)
	if m.refusals, err = meter.Int64Counter(metricLimitRefusals, metric.WithUnit("{refusal}"),
		metric.WithDescription("Requests refused at a configured limit, by the limits.* key (max_sessions, max_sessions_per_principal, rate_per_principal, rate_per_tool, max_held_per_principal, max_inflight_per_session), the sessions.* key (max_revoked, max_revoked_per_principal: new sealed sessions refused while too many DELETEd ones have not expired) or tool_queue (a tool's full wait queue).")); err != nil {
		return nil, err
	}
	if m.changes, err = meter.Int64Counter(metricToolChanges, metric.WithUnit("{change}"),
		metric.WithDescription("Tool definitions seen differing from their pin, by server and the pinning action taken (warn, hide, deny).")); err != nil {
		return nil, err
	}
	// Every limit is exported from the start (at 0), so that an alert on
	// its rate has a series before the first refusal.
	m.limitAttr = map[string]metric.AddOption{}
	for _, l := range []string{limitSessions, limitSessionsPerPrincipal, limitRatePrincipal, limitRateTool, limitToolQueue, limitHeldPerPrincipal, limitInflightPerSession, limitRevoked, limitRevokedPerPrincipal, limitUpstreamSubsPerPrincipal, limitUpstreamSubsPerServer} {
		m.limitAttr[l] = metric.WithAttributeSet(attribute.NewSet(attribute.String("limit", l)))
		m.refusals.Add(context.Background(), 0, m.limitAttr[l])
	}

	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		if err != nil {
			return nil
		}
		var i metric.Int64ObservableGauge
		i, err = meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return i
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		if err != nil {
			return nil
		}
		var i metric.Int64ObservableCounter
		i, err = meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return i
	}
	sessions := gauge(metricSessions, "{session}", "Client sessions the gateway holds.")
	streams := gauge(metricStreams, "{stream}", "Open standalone server→client streams (GET /mcp and legacy /sse).")
	streamDropped := counter(metricStreamDropped, "{message}", "Messages for a session's standalone stream dropped because the client did not read them.")
	backendUp := gauge(metricBackendUp, "", "1 when the backend is connected and initialized, else 0.")
	circuitState := gauge(metricCircuitState, "", "The backend's circuit breaker: 0 closed, 1 open, 2 half-open (one probe in flight).")
	circuitOpens := counter(metricCircuitOpens, "{open}", "Times the backend's circuit breaker opened.")
	circuitToolsOpen := gauge(metricCircuitToolsOpen, "{tool}", "Tools of the backend whose own circuit breaker is open or half-open.")
	circuitRejected := counter(metricCircuitRejected, "{request}", "Requests failed at once (not sent) because the backend's or the tool's circuit was open.")
	retries := counter(metricRetries, "{attempt}", "Upstream attempts that were retries of an idempotent request, by the server retried.")
	fallbacks := counter(metricFallbacks, "{attempt}", "Upstream attempts sent to a server as the fallback of another.")
	cacheHits := counter(metricCacheHits, "{request}", "Tool calls answered from the result cache (fresh, or shared with an identical call in flight).")
	cacheMisses := counter(metricCacheMisses, "{request}", "Calls of cached tools the cache could not answer fresh.")
	cacheStale := counter(metricCacheStale, "{request}", "Calls answered with an expired cached result, marked stale, because the server could not answer.")
	cacheEvictions := counter(metricCacheEvictions, "{entry}", "Cached results evicted to stay within cache.max_bytes.")
	cacheSize := gauge(metricCacheSize, "By", "Bytes the result cache holds.")
	cacheEntries := gauge(metricCacheEntries, "{entry}", "Results the cache holds.")
	pinsDropped := counter(metricPinsDropped, "{event}", "Tool pin history events (pinned, changed) dropped because the pin store (ClickHouse) did not take them and the queue waiting for it was full; a dropped pin is written again once the store answers.")
	instruments := []metric.Observable{sessions, streams, streamDropped, backendUp,
		circuitState, circuitOpens, circuitToolsOpen, circuitRejected, retries, fallbacks,
		cacheHits, cacheMisses, cacheStale, cacheEvictions, cacheSize, cacheEntries, pinsDropped}
	var resumed, sharedErrs metric.Int64ObservableCounter
	if g.sealed != nil {
		resumed = counter(metricSessionsResumed, "{session}", "Sealed sessions this replica rebuilt from an id it did not hold (opened by another replica, or by this one before it forgot an idle session).")
		instruments = append(instruments, resumed)
	}
	if g.shared != nil {
		sharedErrs = counter(metricSharedErrors, "{error}", "Failed Redis operations of the shared result cache (a read served as a miss, or an answer left uncached).")
		instruments = append(instruments, sharedErrs)
	}

	rs, recording := g.rec.(RecorderStats)
	var (
		enqueued, spooled, written, dropped, retried, quarantined, unacked, writes metric.Int64ObservableCounter
		queue, spoolSize, spoolSegments, quarantineSize                            metric.Int64ObservableGauge
		writeTime                                                                  metric.Float64ObservableCounter
		writeLast                                                                  metric.Float64ObservableGauge
	)
	if recording {
		enqueued = counter(metricRecEnqueued, "{event}", "Hop events accepted into the recorder's in-memory queue.")
		spooled = counter(metricRecSpooled, "{event}", "Hop events made durable in the disk spool (acknowledged).")
		written = counter(metricRecWritten, "{event}", "Hop events confirmed written to ClickHouse.")
		dropped = counter(metricRecDropped, "{event}", "Hop events lost: overflow (recorder.overflow: drop), disk errors, corrupt segments.")
		retried = counter(metricRecRetried, "{batch}", "Failed batch writes to ClickHouse that were retried.")
		quarantined = counter(metricRecQuarantined, "{event}", "Hop events in batches ClickHouse rejected for good, set aside in the quarantine directory.")
		unacked = counter(metricRecUnacked, "{event}", "Hop events spooled but never acknowledged because their fsync failed.")
		quarantineSize = gauge(metricRecQuarantineSz, "By", "Bytes the quarantine directory holds (mcptrail recorder requeue sends them again).")
		writes = counter(metricRecWrites, "{batch}", "Successful batch writes to ClickHouse.")
		queue = gauge(metricRecQueue, "{event}", "Hop events waiting in the recorder's in-memory queue.")
		spoolSize = gauge(metricRecSpoolSize, "By", "Bytes of spool segment files on disk.")
		spoolSegments = gauge(metricRecSpoolSegments, "{segment}", "Spool segment files on disk, the active one included.")
		if err == nil {
			writeTime, err = meter.Float64ObservableCounter(metricRecWriteTime, metric.WithUnit("s"),
				metric.WithDescription("Total time spent in successful batch writes to ClickHouse; divided by the writes counter it is the mean write latency."))
		}
		if err == nil {
			writeLast, err = meter.Float64ObservableGauge(metricRecWriteLast, metric.WithUnit("s"),
				metric.WithDescription("Duration of the last successful batch write to ClickHouse."))
		}
		instruments = append(instruments, enqueued, spooled, written, dropped, retried, quarantined, unacked, writes,
			queue, spoolSize, spoolSegments, quarantineSize, writeTime, writeLast)
	}
	if err != nil {
		return nil, err
	}

	// Backends come and go with reloads: each one's attributes are built
	// when it is first observed.
	var backendAttrs sync.Map // server name → metric.ObserveOption
	attrsOf := func(name string) metric.ObserveOption {
		if v, ok := backendAttrs.Load(name); ok {
			return v.(metric.ObserveOption)
		}
		v, _ := backendAttrs.LoadOrStore(name, metric.WithAttributes(attribute.String("server", name)))
		return v.(metric.ObserveOption)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var nSessions, nStreams int64
		g.sessions.Range(func(s *Session) bool {
			nSessions++
			nStreams += int64(s.streaming.Load())
			return true
		})
		o.ObserveInt64(sessions, nSessions)
		o.ObserveInt64(streams, nStreams)
		o.ObserveInt64(streamDropped, g.stats.dropped.Load())
		o.ObserveInt64(pinsDropped, g.pins.dropped.Load())
		for _, b := range g.bs().list {
			up := int64(0)
			if b.snap.Load() != nil {
				up = 1
			}
			attrs := attrsOf(b.Name())
			o.ObserveInt64(backendUp, up, attrs)
			state, toolsOpen := b.brk.states()
			o.ObserveInt64(circuitState, int64(state), attrs)
			o.ObserveInt64(circuitOpens, int64(b.brk.all.openCount()), attrs)
			o.ObserveInt64(circuitToolsOpen, int64(toolsOpen), attrs)
			o.ObserveInt64(circuitRejected, b.stats.rejected.Load(), attrs)
			o.ObserveInt64(retries, b.stats.retries.Load(), attrs)
			o.ObserveInt64(fallbacks, b.stats.fallbacks.Load(), attrs)
		}
		if rc := g.cache; rc != nil {
			o.ObserveInt64(cacheHits, rc.hits.Load())
			o.ObserveInt64(cacheMisses, rc.misses.Load())
			o.ObserveInt64(cacheStale, rc.stale.Load())
			o.ObserveInt64(cacheEvictions, rc.evictions.Load())
			size, n := rc.usage()
			o.ObserveInt64(cacheSize, size)
			o.ObserveInt64(cacheEntries, int64(n))
			if sharedErrs != nil {
				o.ObserveInt64(sharedErrs, rc.sharedErrors.Load())
			}
		}
		if resumed != nil {
			o.ObserveInt64(resumed, g.sealed.resumed.Load())
		}
		if recording {
			st := rs.Stats()
			o.ObserveInt64(enqueued, int64(st.Enqueued))
			o.ObserveInt64(spooled, int64(st.Spooled))
			o.ObserveInt64(written, int64(st.Written))
			o.ObserveInt64(dropped, int64(st.Dropped))
			o.ObserveInt64(retried, int64(st.Retried))
			o.ObserveInt64(quarantined, int64(st.Quarantined))
			o.ObserveInt64(unacked, int64(st.Unacknowledged))
			o.ObserveInt64(quarantineSize, st.QuarantineBytes)
			o.ObserveInt64(writes, int64(st.Writes))
			o.ObserveInt64(queue, int64(st.QueueLen))
			o.ObserveInt64(spoolSize, st.SpoolBytes)
			o.ObserveInt64(spoolSegments, int64(st.SpoolSegments))
			o.ObserveFloat64(writeTime, st.WriteLatencySum.Seconds())
			o.ObserveFloat64(writeLast, st.WriteLatencyLast.Seconds())
		}
		return nil
	}, instruments...)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// observeCall measures a finished call: the one place on the request path
// where request metrics are taken. Labels are bounded: server is a
// configured backend or "", method one of the MCP methods or "other", tool
// a tool in the merged catalog or "" (a client cannot mint label values).
func (m *metrics) observeCall(ctx context.Context, c *call, d time.Duration) {
	if m == nil {
		return
	}
	l := callLabels{server: c.server, method: metricMethod(c.msg.Method), outcome: c.outcome.String()}
	if c.msg.Method == "tools/call" {
		if _, ok := c.g.catalog.Load().toolRO[c.target]; ok {
			l.tool = c.target
		}
	}
	m.requests.Add(ctx, 1, m.callAttrs.get(l, func(l callLabels) attribute.Set {
		return attribute.NewSet(attribute.String("server", l.server), attribute.String("method", l.method),
			attribute.String("tool", l.tool), attribute.String("outcome", l.outcome))
	}))
	l.outcome = "" // the histogram is not split by outcome: fewer series
	m.duration.Record(ctx, d.Seconds(), m.durationAttrs.get(l, func(l callLabels) attribute.Set {
		return attribute.NewSet(attribute.String("server", l.server), attribute.String("method", l.method),
			attribute.String("tool", l.tool))
	}))
}

// PolicyDecision counts one decision of a policy check (an authentication,
// an allowlist, a rate limit, …). rule names what decided — a configured
// pattern or rule name, never a value taken from the request — so the
// label stays bounded. It is safe on a nil receiver.
func (m *metrics) policyDecision(ctx context.Context, check, decision, rule string) {
	if m == nil {
		return
	}
	m.decisions.Add(ctx, 1, m.decisionAttrs.get(decisionLabels{check, decision, rule}, func(l decisionLabels) attribute.Set {
		return attribute.NewSet(attribute.String("check", l.check), attribute.String("decision", l.decision),
			attribute.String("rule", l.rule))
	}))
}

// toolChanged counts a tool seen differing from its pin.
func (m *metrics) toolChanged(ctx context.Context, server, action string) {
	if m == nil {
		return
	}
	m.changes.Add(ctx, 1, metric.WithAttributes(attribute.String("server", server), attribute.String("action", action)))
}

// configReload counts a reload, applied or rejected.
func (m *metrics) configReload(ctx context.Context, applied bool) {
	if m == nil {
		return
	}
	if applied {
		m.reloads.Add(ctx, 1, m.reloadOK)
	} else {
		m.reloads.Add(ctx, 1, m.reloadBad)
	}
}

// Limits whose refusals are counted, by their config key under limits.
const (
	limitSessions             = "max_sessions"
	limitSessionsPerPrincipal = "max_sessions_per_principal"
)

// limitRefusal counts a request refused at a limit (one of the limit*
// names). It is safe on a nil receiver.
func (m *metrics) limitRefusal(ctx context.Context, limit string) {
	if m == nil {
		return
	}
	o, ok := m.limitAttr[limit]
	if !ok {
		o = metric.WithAttributes(attribute.String("limit", limit))
	}
	m.refusals.Add(ctx, 1, o)
}

// knownMethods are the methods whose names become label values; any other
// method a client sends is counted as "other".
var knownMethods = map[string]bool{
	"initialize": true, "ping": true, "server/discover": true,
	"tools/list": true, "tools/call": true,
	"prompts/list": true, "prompts/get": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
	"completion/complete": true, "logging/setLevel": true,
	"tasks/get": true, "tasks/list": true, "tasks/result": true, "tasks/cancel": true,
}

func metricMethod(m string) string {
	if knownMethods[m] {
		return m
	}
	return "other"
}
