package proxy

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// A request's path is route → policy → forward: the gateway first resolves
// what the backend would execute (which server, under which name or URI),
// then every PolicyCheck decides on that, then the request is forwarded.
// Lists are filtered by the same checks, asked about the call each listed
// item would be, so a list never shows what a call would deny.

// PolicyRequest is what a policy check sees of one request (or of one list
// item: the call it would take). Checks must not keep or modify it.
type PolicyRequest struct {
	// Principal is the caller; the anonymous principal when
	// authentication is off.
	Principal *auth.Principal
	// Method is the JSON-RPC method ("tools/call" for a tools/list item).
	Method string
	// Kind is what the request acts on.
	Kind auth.Kind
	// Target names it as the backend will execute it, in the form Kind
	// documents: "<server><sep><tool>", "<server>:<uri>", or the method.
	Target string
	// Server is the backend that would serve it; "" when none does.
	Server string
}

// PolicyDecision is one check's answer.
type PolicyDecision struct {
	// Deny refuses the request; the zero value allows it.
	Deny bool
	// Code and Message are the JSON-RPC error the client gets on a
	// denial; default -32003 and "<kind> <target> is not allowed for
	// principal <name>".
	Code    int
	Message string
	// Rule names what decided, as recorded in hops.auth_rule and
	// audit.rule: "tools:crm.*", "resources:default-deny". It must come
	// from configuration, never from the request (it is a metric label).
	Rule string
	// Check is the Name of the check that decided; Gateway.decide sets it.
	Check string
}

// PolicyCheck is one policy. It must be safe for concurrent use and cheap:
// it runs on every request and on every item of every list.
type PolicyCheck interface {
	// Name identifies the check in spans and logs.
	Name() string
	// Check decides on one request.
	Check(ctx context.Context, req *PolicyRequest) PolicyDecision
}

// tokenCheck is the static-token rules of auth.tokens.
type tokenCheck struct {
	enabled bool
	sep     string // the namespace separator
}

var _ PolicyCheck = tokenCheck{}

func (tokenCheck) Name() string { return "tokens" }

func (t tokenCheck) Check(_ context.Context, r *PolicyRequest) PolicyDecision {
	if !t.enabled {
		return PolicyDecision{}
	}
	ok, rule := r.Principal.Allow(r.Kind, r.Target)
	if ok && r.Kind == auth.Methods && r.Server != "" && !r.Principal.MayUse(r.Server, cmp.Or(t.sep, ".")) {
		// A methods pattern names methods, not backends: the backend
		// the request routes to must be one the principal may use.
		ok, rule = false, "methods:server-not-allowed"
	}
	// No Message: the default one (notAllowed) is built only for a
	// request that is answered, not for each hidden list item.
	return PolicyDecision{Deny: !ok, Rule: rule}
}

// AttrAuthRoles is the auth hop attribute that records a JWT principal's
// roles, comma-separated in binding order (the audit trail's roles).
const AttrAuthRoles = recorder.AttrAuthRoles

// notAllowed is the message of a denial whose check gave none.
func notAllowed(r *PolicyRequest) string {
	who := "nobody"
	if r.Principal != nil {
		who = r.Principal.Name
	}
	return kindNoun[r.Kind] + " " + r.Target + " is not allowed for principal " + who
}

var kindNoun = [auth.NumKinds]string{"tool", "prompt", "resource", "completion", "method"}

// decide runs the policy chain: the first denial wins; an allowed request
// carries the first rule that named itself.
func (ps *policySet) decide(ctx context.Context, r *PolicyRequest) PolicyDecision {
	var allow PolicyDecision
	for _, p := range ps.policies {
		d := p.Check(ctx, r)
		if d.Deny {
			if d.Code == 0 {
				d.Code = jsonrpc.CodeUnauthorized
			}
			d.Check = p.Name()
			return d
		}
		if allow.Rule == "" && d.Rule != "" {
			allow.Rule, allow.Check = d.Rule, p.Name()
		}
	}
	return allow
}

// authorize runs the policy chain on what the call would execute and
// records the decision as an auth hop; on a denial it returns the answer.
func (c *call) authorize(ctx context.Context, kind auth.Kind, target, server string) (jsonrpc.Message, bool) {
	g := c.g
	if !c.ps.policyOn() {
		c.authResult = auth.ResultNone
		return jsonrpc.Message{}, true
	}
	_, span := g.tracer.Start(ctx, "auth")
	defer span.End()
	if span.IsRecording() { // attributes only for a recording span (see Gateway.Serve)
		span.SetAttributes(attribute.String("mcptrail.policy.kind", kind.String()), attribute.String("mcptrail.policy.target", target))
	}
	t0 := time.Now()
	req := PolicyRequest{Principal: c.princ, Method: c.msg.Method, Kind: kind, Target: target, Server: server}
	d := c.ps.decide(ctx, &req)
	if d.Deny && d.Message == "" {
		d.Message = notAllowed(&req)
	}
	c.authRule = d.Rule
	if d.Deny {
		c.authResult = auth.ResultDenied
	} else {
		c.authResult = auth.ResultAllowed
	}
	span.SetAttributes(attribute.String("mcptrail.policy.rule", d.Rule))
	g.metrics.policyDecision(ctx, d.Check, c.authResult, d.Rule)
	c.record(recorder.HopAuth, t0, time.Since(t0), func(e *recorder.Event) {
		if c.princ != nil && len(c.princ.Roles) > 0 {
			e.Attrs = append(e.Attrs, recorder.Attr{Key: AttrAuthRoles, Value: strings.Join(c.princ.Roles, ",")})
		}
		if d.Deny {
			e.Outcome = recorder.OutcomeDenied
			e.ErrorCode = int32(d.Code)
			e.ErrorMessage = d.Message
		}
	})
	if d.Deny {
		span.SetStatus(codes.Error, "denied")
		m := c.fail(d.Code, d.Message)
		c.outcome = recorder.OutcomeDenied
		g.stats.denied.Add(1)
		return m, false
	}
	return jsonrpc.Message{}, true
}

// allowed filters one list item: the same chain, asked about the call the
// item would take, not recorded.
func (c *call) allowed(ctx context.Context, req *PolicyRequest) bool {
	return !c.ps.decide(ctx, req).Deny
}

// nameTarget is the policy target of a tool or prompt the client named:
// the serving backend and its own name when the name routes, else the name
// as sent (which only a "*" pattern matches).
func (g *Gateway) nameTarget(kind listKind, name string) (target, server string, rt nameRoute, ok bool) {
	rt, ok = g.routeName(kind, name)
	if !ok {
		return name, "", rt, false
	}
	return rt.server + g.sep() + rt.name, rt.server, rt, true
}

// uriTarget is the policy target of a resource URI: "<server>:<uri>" as the
// serving backend knows it, or ":<uri>" when no backend serves it.
func uriTarget(rt resourceRoute) string {
	var b strings.Builder
	b.Grow(len(rt.server) + 1 + len(rt.uri))
	b.WriteString(rt.server)
	b.WriteByte(':')
	b.WriteString(rt.uri)
	return b.String()
}

// RuleAmbiguousKey is the rule recorded for a message refused because a key
// could be read differently by the gateway and a backend (jsonrpc.Decode).
const RuleAmbiguousKey = "ambiguous-key"

// recordAmbiguous records the refusal of a message with an ambiguous key
// as a denied auth hop, so the audit trail shows the attempt and its rule.
func (g *Gateway) recordAmbiguous(reqID string, p *auth.Principal, err error) bool {
	var amb *jsonrpc.AmbiguousKeyError
	if !errors.As(err, &amb) {
		return false
	}
	g.stats.denied.Add(1)
	who := ""
	if p != nil {
		who = p.Name
	}
	e := &recorder.Event{
		RequestID: reqID, Hop: recorder.HopAuth, TimeNs: time.Now().UnixNano(), Principal: who,
		AuthDecision: auth.ResultDenied, AuthRule: RuleAmbiguousKey, Outcome: recorder.OutcomeDenied,
		ErrorCode: jsonrpc.CodeInvalidRequest, ErrorMessage: amb.Error(), // quotes the client's key
	}
	g.redactOwn(e)
	g.logger.Warn("request denied", "request_id", reqID, "principal", who, "rule", RuleAmbiguousKey, "reason", e.ErrorMessage)
	if g.rec != nil {
		_ = g.rec.Record(e)
	}
	return true
}

// redactOwn stamps an event the gateway records of its own (not a hop of
// a call) with the gateway's identity and redacts it as record would.
func (g *Gateway) redactOwn(e *recorder.Event) {
	e.GatewayInstance, e.GatewayVersion, e.ConfigHash = g.instance, g.version, g.conf().Hash
	if g.redactor != nil {
		e.RedactionVersion = g.redactor.Version()
		redactFields(g.redactor, e)
	} else {
		capIdentifiers(e)
	}
}

// mayHear reports whether what backend b sends outside any call (log
// messages, unknown notifications) may reach session s: only when its
// principal may use something of b.
func (g *Gateway) mayHear(s *Session, b *Backend) bool {
	return !g.ps().auth.Enabled() || s.princ.MayUse(b.Name(), g.sep())
}
