package proxy

import (
	"context"
	"maps"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// Rate limits (limits.rate_per_principal, limits.rate_per_tool,
// servers[].tools.<name>.rate) are token buckets of golang.org/x/time/rate,
// the maintained Go limiter: it takes the time as an argument (TokensAt,
// AllowN), so both buckets of a call are checked at one instant and a
// test can pin the clock, and it does not allocate per call.

// Rules and limit names of the rate limits, as recorded and counted.
const (
	RuleRatePrincipal  = "rate:principal"
	RuleRateTool       = "rate:tool"
	RuleToolQueue      = "tool-queue"
	limitRatePrincipal = "rate_per_principal"
	limitRateTool      = "rate_per_tool"
	limitToolQueue     = "tool_queue"

	RuleHeldPerPrincipal  = "held:principal"
	limitHeldPerPrincipal = "max_held_per_principal"

	limitInflightPerSession = "max_inflight_per_session"
)

// maxBuckets bounds the buckets kept; past it, full ones (which a new
// bucket would equal) are dropped.
const maxBuckets = 100_000

type rateSpec struct {
	limit rate.Limit
	burst int
}

func newRateSpec(r config.Rate) (rateSpec, bool) {
	if !r.Enabled() {
		return rateSpec{}, false
	}
	perSec, burst, err := r.PerSecond()
	if err != nil {
		return rateSpec{}, false // rejected by config validation
	}
	return rateSpec{rate.Limit(perSec), burst}, true
}

// rateLimits holds the token buckets of every principal and principal ×
// tool.
type rateLimits struct {
	principal, tool rateSpec
	hasPrincipal    bool
	hasTool         bool
	perTool         map[string]rateSpec // "<server><sep><tool>" → its own rate
	now             func() time.Time

	mu      sync.Mutex // makes a check of two buckets one step
	buckets map[bucketKey]*rate.Limiter

	// shared, when set (redis.addr), holds the buckets instead (shared.go).
	shared   sharedBuckets
	failOpen bool // redis.rate_limit_fail_open
}

// bucketKey names a bucket: a principal's (tool "") or a principal ×
// tool's.
type bucketKey struct{ principal, tool string }

func newRateLimits(cfg *config.Config, sep string) *rateLimits {
	l := &rateLimits{perTool: map[string]rateSpec{}, buckets: map[bucketKey]*rate.Limiter{}, now: time.Now}
	l.principal, l.hasPrincipal = newRateSpec(cfg.Limits.RatePerPrincipal)
	l.tool, l.hasTool = newRateSpec(cfg.Limits.RatePerTool)
	for _, s := range cfg.Servers {
		for name, t := range s.Tools {
			if sp, ok := newRateSpec(t.Rate); ok {
				l.perTool[s.Name+sep+name] = sp
			}
		}
	}
	return l
}

// sameSpecs reports whether o limits exactly what l does, so that a reload
// can keep l's buckets.
func (l *rateLimits) sameSpecs(o *rateLimits) bool {
	return l.principal == o.principal && l.hasPrincipal == o.hasPrincipal && l.tool == o.tool && l.hasTool == o.hasTool &&
		maps.Equal(l.perTool, o.perTool)
}

func (l *rateLimits) enabled() bool {
	return l != nil && (l.hasPrincipal || l.hasTool || len(l.perTool) > 0)
}

func (l *rateLimits) bucket(key bucketKey, sp rateSpec) *rate.Limiter {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			now := l.now()
			for k, v := range l.buckets {
				if v.TokensAt(now) >= float64(v.Burst()) {
					delete(l.buckets, k)
				}
			}
		}
		b = rate.NewLimiter(sp.limit, sp.burst)
		l.buckets[key] = b
	}
	return b
}

// allow takes one token from the principal's bucket and, when tool is
// set ("<server><sep><tool>"), from the principal × tool bucket. When one
// is empty it takes none and returns the rule that refused and how long
// until a token will be there.
func (l *rateLimits) allow(principal, tool string) (rule string, retry time.Duration) {
	if !l.enabled() {
		return "", 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Every bucket is used under l.mu only: a bucket that has a token now
	// still has it when it is taken below, so a call refused by its
	// second bucket takes nothing from the first.
	var take [2]*rate.Limiter
	n := 0
	check := func(key bucketKey, sp rateSpec, r string) bool {
		bk := l.bucket(key, sp)
		if tokens := bk.TokensAt(now); tokens < 1 {
			rule = r
			retry = time.Duration(math.Ceil((1 - tokens) / float64(sp.limit) * float64(time.Second)))
			return false
		}
		take[n] = bk
		n++
		return true
	}
	ok := true
	if l.hasPrincipal {
		ok = check(bucketKey{principal, ""}, l.principal, RuleRatePrincipal)
	}
	if ok && tool != "" {
		sp, has := l.perTool[tool]
		if !has {
			sp, has = l.tool, l.hasTool
		}
		if has {
			ok = check(bucketKey{principal, tool}, sp, RuleRateTool)
		}
	}
	if ok {
		for _, bk := range take[:n] {
			bk.AllowN(now, 1)
		}
	}
	return rule, retry
}

// limitRate applies the rate limits to a request of c's principal (and
// tool, "" for other requests). On a refusal it records the denied
// decision and returns the error answer.
func (c *call) limitRate(ctx context.Context, tool string) (jsonrpc.Message, bool) {
	if !c.ps.rates.enabled() {
		return jsonrpc.Message{}, true
	}
	var rule string
	var retry time.Duration
	if c.ps.rates.shared != nil {
		var err error
		if rule, retry, err = c.ps.rates.allowShared(ctx, principalName(c.princ), tool); err != nil {
			return c.rateUnavailable(ctx, err)
		}
	} else {
		rule, retry = c.ps.rates.allow(principalName(c.princ), tool)
	}
	if rule == "" {
		return jsonrpc.Message{}, true
	}
	limit := limitRatePrincipal
	if rule == RuleRateTool {
		limit = limitRateTool
	}
	secs := int64(math.Ceil(retry.Seconds()))
	msg := "mcptrail: rate limited (" + limit + "): retry after " + strconv.FormatInt(secs, 10) + "s"
	return c.refuseAtLimit(ctx, limit, rule, msg, retry), false
}

// refuseAtLimit refuses c at a limit (-32029): the denied decision is
// recorded under rule and counted, and error.data names the limit.
func (c *call) refuseAtLimit(ctx context.Context, limit, rule, msg string, retry time.Duration) jsonrpc.Message {
	g := c.g
	t0 := time.Now()
	c.authResult, c.authRule = auth.ResultDenied, rule
	g.metrics.policyDecision(ctx, "limits", auth.ResultDenied, rule)
	g.metrics.limitRefusal(ctx, limit)
	g.stats.denied.Add(1)
	c.record(recorder.HopAuth, t0, time.Since(t0), func(e *recorder.Event) {
		e.Outcome = recorder.OutcomeDenied
		e.ErrorCode = jsonrpc.CodeLimited
		e.ErrorMessage = msg
	})
	resp := c.failData(jsonrpc.CodeLimited, msg, limit, retry)
	c.outcome = recorder.OutcomeDenied
	return resp
}

// rateUnavailable answers a call whose shared rate limits could not be
// checked: refused (the default) or, with redis.rate_limit_fail_open, let
// through. Either way it is logged with the request ID.
func (c *call) rateUnavailable(ctx context.Context, err error) (jsonrpc.Message, bool) {
	g := c.g
	if c.ps.rates.failOpen {
		g.logger.Warn("shared rate limits unavailable: call let through (redis.rate_limit_fail_open)", "request_id", c.reqID, "err", err)
		return jsonrpc.Message{}, true
	}
	// Redis's error names its address: the client gets the request ID,
	// the log line the cause.
	g.logger.Error("shared rate limits unavailable: call refused", "request_id", c.reqID, "err", err)
	msg := "mcptrail: rate limits unavailable, call refused (redis.rate_limit_fail_open is false; request " + c.reqID + ")"
	return c.refuseAtLimit(ctx, limitRateUnavailable, RuleRateUnavailable, msg, 0), false
}

// failData is fail with the data of a limit's refusal: requestId, limit
// and, when known, retryAfter (whole seconds, rounded up, as in the HTTP
// Retry-After header) and retryAfterMs.
func (c *call) failData(code int, msg, limit string, retry time.Duration) jsonrpc.Message {
	m := c.fail(code, msg)
	o := &jsonrpc.Object{}
	o.SetString("requestId", c.reqID)
	o.SetString("limit", limit)
	if retry > 0 {
		o.Set("retryAfter", []byte(strconv.FormatInt(int64(math.Ceil(retry.Seconds())), 10)))
		o.Set("retryAfterMs", []byte(strconv.FormatInt(int64(math.Ceil(float64(retry)/float64(time.Millisecond))), 10)))
	}
	m.Error.Data = o.Marshal()
	return m
}

// retryAfterHeader is the Retry-After value (seconds) of a limit's
// refusal, "" for any other answer.
func retryAfterHeader(m jsonrpc.Message) string {
	if m.Error == nil || m.Error.Code != jsonrpc.CodeLimited {
		return ""
	}
	v, ok := jsonrpc.Lookup(m.Error.Data, "retryAfter")
	if !ok {
		return ""
	}
	return string(v)
}
