package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// upFailure is how one upstream attempt failed.
type upFailure uint8

const (
	upNone        upFailure = iota // the backend answered (a JSON-RPC error is an answer)
	upUnavailable                  // not connected (or waiting for a slot was cut short)
	upTransport                    // connection error or HTTP refusal
	upTimeout                      // no answer within the server's timeout
	upCancelled                    // the client cancelled
	upCircuitOpen                  // not sent: the circuit is open
)

// AttrResilience is the attribute key of a call's recorded hops that says
// how the gateway's resilience shaped its answer: circuit_open (failed at
// once), fallback, retried, cached, stale.
const AttrResilience = "mcptrail.resilience"

// idempotent reports whether the request may be sent again after a
// transport failure: reads, lists, prompts and completions, and tools/call
// of a tool its server annotates readOnlyHint.
func (c *call) idempotent() bool {
	switch c.msg.Method {
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list",
		"resources/read", "prompts/get", "completion/complete", "ping":
		return true
	case "tools/call":
		return c.readOnly()
	}
	return false
}

// readOnly reports whether the called tool is annotated readOnlyHint: as
// the catalog says, or, while its server is down and the catalog lacks it,
// as it last said.
func (c *call) readOnly() bool {
	ro, known := c.g.catalog.Load().toolRO[c.target]
	if known {
		if prev, ok := c.g.readOnlySeen.Load(c.target); !ok || prev.(bool) != ro {
			c.g.readOnlySeen.Store(c.target, ro) // bounded by the tools ever listed
		}
		return ro
	}
	prev, _ := c.g.readOnlySeen.Load(c.target)
	ro, _ = prev.(bool)
	return ro
}

// forward sends the (already rewritten) request to b and relays its answer:
// from the result cache when the tool opted in, through b's circuit
// breakers, with retries of idempotent requests, and on to b's fallbacks
// when b is down, open-circuited or timed out.
func (c *call) forward(ctx context.Context, b *Backend) jsonrpc.Message {
	if b == nil {
		// Routed by a catalog from before a reload removed the server.
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: the server of this request was removed from the configuration")
	}
	if !b.enter() {
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: server "+b.Name()+" was removed from the configuration")
	}
	defer b.leave()
	c.server = b.Name()
	if c.authResult == "" && c.ps.auth.Enabled() {
		c.authResult = "allowed"
	}
	// No route hop: the routing decision (c.routeRule, c.server) is on
	// every later hop of the call, so a hop of its own would only cost a
	// row (issue 10).
	if cc := c.cachePolicy(b); cc != nil {
		return c.forwardCached(ctx, b, cc)
	}
	return c.forwardChain(ctx, b)
}

// forwardChain is forward without the cache.
func (c *call) forwardChain(ctx context.Context, b *Backend) jsonrpc.Message {
	g := c.g
	bs := g.bs()
	chain := []*Backend{b}
	for _, name := range b.cfg.Fallbacks {
		if f := bs.byName[name]; f != nil {
			chain = append(chain, f)
		}
	}
	tool := ""
	if c.msg.Method == "tools/call" {
		tool, _ = c.params.GetString("name")
	}
	idem := c.idempotent()
	attempt := 0
	var out jsonrpc.Message
	var how string
	for i, be := range chain {
		fallback := i > 0
		tries := 1
		if idem {
			tries += be.cfg.Retries
		}
		for try := 0; try < tries; try++ {
			if try > 0 && !c.backoff(ctx, be, try) {
				return out
			}
			attempt++
			if try > 0 {
				be.stats.retries.Add(1)
			}
			if fallback && try == 0 {
				be.stats.fallbacks.Add(1)
			}
			tb := be.brk.tool(tool)
			okAll, probeAll := be.brk.all.allow()
			okTool, probeTool := true, false
			if okAll {
				if okTool, probeTool = tb.allow(); !okTool {
					be.brk.all.done(probeAll, resultNeutral)
				}
			}
			if !okAll || !okTool {
				out = c.circuitOpen(be, tool, !okTool)
				break
			}
			c.outcome, c.errCode, c.errMsg = recorder.OutcomeOK, 0, ""
			out = c.forwardOnce(ctx, be, attempt, fallback)
			switch c.upFail {
			case upNone:
				be.brk.all.done(probeAll, resultSuccess)
				tb.done(probeTool, resultSuccess)
			case upTimeout:
				// A slow tool is that tool's problem; a slow anything
				// else is the backend's.
				r := resultFailure
				if tb != nil {
					r = resultNeutral
				}
				be.brk.all.done(probeAll, r)
				tb.done(probeTool, resultFailure)
			case upTransport, upUnavailable:
				be.brk.all.done(probeAll, resultFailure)
				tb.done(probeTool, resultNeutral)
			default:
				be.brk.all.done(probeAll, resultNeutral)
				tb.done(probeTool, resultNeutral)
			}
			if c.upFail == upNone || c.upFail == upCancelled || ctx.Err() != nil {
				if fallback {
					how = "fallback"
				} else if attempt > 1 {
					how = "retried"
				}
				if how != "" {
					c.attrs = append(c.attrs, recorder.Attr{Key: AttrResilience, Value: how})
				}
				return out
			}
			if c.upFail != upTransport {
				break // timeouts and outages go to the next server, not again
			}
		}
	}
	if c.upFail == upCircuitOpen {
		c.attrs = append(c.attrs, recorder.Attr{Key: AttrResilience, Value: "circuit_open"})
	}
	return out
}

// circuitOpen is the answer of a call refused by an open circuit: at once,
// with the request ID, naming the server (and the tool when its own
// breaker is open).
func (c *call) circuitOpen(b *Backend, tool string, toolOnly bool) jsonrpc.Message {
	c.server = b.Name()
	c.upFail = upCircuitOpen
	b.stats.rejected.Add(1)
	what := "backend " + b.Name()
	extra := []string{"server", b.Name(), "reason", "circuit_open"}
	if toolOnly {
		what = fmt.Sprintf("tool %s of backend %s", tool, b.Name())
		extra = append(extra, "tool", tool)
	}
	resp := c.fail(jsonrpc.CodeBackendUnavailable, "mcptrail: circuit open: "+what+" is failing; not sent", extra...)
	c.outcome = recorder.OutcomeTransportError
	return resp
}

// backoff waits before retry number try (from 1): full jitter over
// retry_backoff·2^(try-1), but never past the call's deadline. It reports
// false when the call cannot wait that long or ends meanwhile.
func (c *call) backoff(ctx context.Context, b *Backend, try int) bool {
	base := b.cfg.RetryBackoff
	if base <= 0 {
		base = config.DefaultRetryBackoff
	}
	d := base << min(try-1, 10)
	d = time.Duration(rand.Int64N(int64(d)) + 1)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	return sleepCtx(ctx, d)
}
