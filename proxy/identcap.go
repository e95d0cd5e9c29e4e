package proxy

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mcptrail/mcptrail/recorder"
)

// Caps on the identifiers a client (or backend) chooses, as they are
// stored and logged. The protocol bounds none of them, and each is written
// on every hop of a request (a 900 KB JSON-RPC id was stored four times):
// what is longer keeps its first bytes and a marker saying how long it
// was, and the event carries the attribute mcptrail.truncated naming the
// columns cut. The answer to the client and the relayed message keep the
// full value: only the audit copy is cut. The full request, id included,
// is in the payload table (itself capped by recorder.payloads.max_bytes).
const (
	maxRPCIDBytes  = 256  // hops.rpc_id
	maxMethodBytes = 256  // hops.method
	maxTargetBytes = 2048 // hops.target: a tool or prompt name, a resource URI
	maxIdentBytes  = 256  // client and backend names and versions, rules
	maxAttrBytes   = 2048 // an extra attribute's value
)

// truncatedAttr names the columns capIdentifiers cut.
const truncatedAttr = "mcptrail.truncated"

// capIdent cuts s to max bytes at a UTF-8 boundary and marks the cut with
// the original length. It reports whether it cut.
func capIdent(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(truncated from " + strconv.Itoa(len(s)) + " bytes)", true
}

// capForLog is capIdent for a log attribute.
func capForLog(s string, max int) string {
	out, _ := capIdent(s, max)
	return out
}

// capIdentifiers caps e's client-chosen identifiers in place, after their
// redaction (a cut before it could split a secret so that no rule sees
// it), and records which were cut.
func capIdentifiers(e *recorder.Event) {
	fields := [...]struct {
		col string
		p   *string
		max int
	}{
		{"rpc_id", &e.RPCID, maxRPCIDBytes},
		{"method", &e.Method, maxMethodBytes},
		{"target", &e.Target, maxTargetBytes},
		{"client_name", &e.ClientName, maxIdentBytes},
		{"client_version", &e.ClientVersion, maxIdentBytes},
		{"protocol_version", &e.ProtocolVersion, maxIdentBytes},
		{"upstream_version", &e.UpstreamVersion, maxIdentBytes},
		{"auth_rule", &e.AuthRule, maxIdentBytes},
		{"route_rule", &e.RouteRule, maxIdentBytes},
		{"principal", &e.Principal, maxIdentBytes},
	}
	var cut []string
	for _, f := range fields {
		var was bool
		if *f.p, was = capIdent(*f.p, f.max); was {
			cut = append(cut, f.col)
		}
	}
	for i := range e.Attrs {
		a := &e.Attrs[i]
		var k, v bool
		a.Key, k = capIdent(a.Key, maxIdentBytes)
		a.Value, v = capIdent(a.Value, maxAttrBytes)
		if k || v {
			cut = append(cut, "attrs")
		}
	}
	if len(cut) > 0 {
		e.Attrs = append(e.Attrs, recorder.Attr{Key: truncatedAttr, Value: strings.Join(cut, ",")})
	}
}
