// Package diff compares recorded and replayed MCP answers structurally.
//
// Documents are canonicalised first (key order, number spelling), so equal
// JSON is equal. Each difference carries an RFC 6901 JSON Pointer, a kind
// (added, removed, type_changed, value_changed) and a risk level; a change of
// outcome (ok, tool_error, jsonrpc_error, transport_error) is reported first.
// Arrays are compared index by index. Ignore rules hide paths that are known
// to vary (timestamps, ids), per server and target.
package diff

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/mcptrail/mcptrail/recorder/jsoncanon"
)

// Kind says how a value changed.
type Kind string

// Kinds of change.
const (
	KindOutcomeChanged Kind = "outcome_changed" // the call's outcome differs (always first)
	KindAdded          Kind = "added"           // present only in the replayed answer
	KindRemoved        Kind = "removed"         // present only in the recorded answer
	KindTypeChanged    Kind = "type_changed"    // e.g. string became number
	KindValueChanged   Kind = "value_changed"   // same type, different value
	// KindOrderChanged: a list of named things (tools, prompts, resources,
	// templates, prompt arguments) holds the same members in another order.
	// Old and New list the common members' identities in each order.
	KindOrderChanged Kind = "order_changed"
)

// Risk ranks how likely a change breaks a client.
type Risk uint8

// Risk levels, from least to most severe.
const (
	RiskNone   Risk = iota
	RiskLow         // additions
	RiskMedium      // changed or removed values
	RiskHigh        // outcome, isError, error code, content type
)

var riskNames = [...]string{"none", "low", "medium", "high"}

func (r Risk) String() string {
	if int(r) < len(riskNames) {
		return riskNames[r]
	}
	return "unknown"
}

// MarshalText encodes the risk by name.
func (r Risk) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a risk name.
func (r *Risk) UnmarshalText(b []byte) error {
	for i, n := range riskNames {
		if n == string(b) {
			*r = Risk(i)
			return nil
		}
	}
	return fmt.Errorf("unknown risk %q", b)
}

// Change is one difference between two documents.
type Change struct {
	Path string `json:"path"` // RFC 6901 pointer; "" is the whole document
	Kind Kind   `json:"kind"`
	Risk Risk   `json:"risk"`
	// Old and New are canonical JSON; nil when absent on that side.
	Old json.RawMessage `json:"old,omitempty"`
	New json.RawMessage `json:"new,omitempty"`
}

func (c Change) String() string {
	old, new := "∅", "∅"
	if c.Old != nil {
		old = string(c.Old)
	}
	if c.New != nil {
		new = string(c.New)
	}
	p := c.Path
	if p == "" {
		p = "/"
	}
	return fmt.Sprintf("%s %s (%s): %s → %s", c.Kind, p, c.Risk, old, new)
}

// Diff compares two parsed documents (see Parse) and returns the changes in
// document order (object keys sorted), skipping paths the rules ignore.
// Risk is assigned by RiskOf with isErrorObject false.
func Diff(old, new any, rules IgnoreRules) []Change {
	d := differ{rules: rules}
	d.walk(nil, old, new)
	return d.out
}

type differ struct {
	rules   IgnoreRules
	out     []Change
	errObj  bool
	ignored int
	// list is the member holding named items when the documents are the
	// results of a list method ("tools" for tools/list), else "".
	list string
	// skipIsError drops /isError changes: the outcome change says it.
	skipIsError bool
}

func (d *differ) walk(toks []string, a, b any) {
	if len(d.rules) > 0 && d.rules.Ignored(toks) {
		if !equalValues(a, b) {
			d.ignored++
		}
		return
	}
	if at, ok := a.([]any); ok {
		if bt, ok := b.([]any); ok {
			if key := d.identityKey(toks); key != "" && d.walkByIdentity(toks, key, at, bt) {
				return
			}
		}
	}
	switch at := a.(type) {
	case map[string]any:
		bt, ok := b.(map[string]any)
		if !ok {
			d.add(toks, KindTypeChanged, a, b)
			return
		}
		for _, k := range jsoncanon.UnionKeys(at, bt) {
			av, aok := at[k]
			bv, bok := bt[k]
			sub := append(toks[:len(toks):len(toks)], k)
			switch {
			case aok && bok:
				d.walk(sub, av, bv)
			case aok:
				d.absent(sub, KindRemoved, av, nil)
			default:
				d.absent(sub, KindAdded, nil, bv)
			}
		}
	case []any:
		bt, ok := b.([]any)
		if !ok {
			d.add(toks, KindTypeChanged, a, b)
			return
		}
		for i := 0; i < max(len(at), len(bt)); i++ {
			sub := append(toks[:len(toks):len(toks)], strconv.Itoa(i))
			switch {
			case i < len(at) && i < len(bt):
				d.walk(sub, at[i], bt[i])
			case i < len(at):
				d.absent(sub, KindRemoved, at[i], nil)
			default:
				d.absent(sub, KindAdded, nil, bt[i])
			}
		}
	default:
		if typeName(a) != typeName(b) {
			d.add(toks, KindTypeChanged, a, b)
			return
		}
		if !equalValues(a, b) {
			d.add(toks, KindValueChanged, a, b)
		}
	}
}

// absent records an added or removed member unless a rule ignores it.
func (d *differ) absent(toks []string, k Kind, a, b any) {
	if len(d.rules) > 0 && d.rules.Ignored(toks) {
		d.ignored++
		return
	}
	d.add(toks, k, a, b)
}

func (d *differ) add(toks []string, k Kind, a, b any) {
	if d.skipIsError && len(toks) == 1 && toks[0] == "isError" {
		return
	}
	c := Change{Path: joinPointer(toks), Kind: k}
	if k != KindAdded {
		c.Old = AppendCanonical(nil, a)
	}
	if k != KindRemoved {
		c.New = AppendCanonical(nil, b)
	}
	if d.list != "" && len(toks) > 0 && toks[0] == d.list {
		c.Risk = CatalogRisk(toks, k)
	} else {
		c.Risk = RiskOf(toks, k, a, b, d.errObj)
	}
	d.out = append(d.out, c)
}

func joinPointer(toks []string) string {
	var sb strings.Builder
	for _, t := range toks {
		sb.WriteByte('/')
		sb.WriteString(EscapeToken(t))
	}
	return sb.String()
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func equalValues(a, b any) bool {
	switch at := a.(type) {
	case nil:
		return b == nil
	case string:
		bt, ok := b.(string)
		return ok && at == bt
	case bool:
		bt, ok := b.(bool)
		return ok && at == bt
	case json.Number:
		if bt, ok := b.(json.Number); ok {
			return at == bt || CanonicalNumber(at) == CanonicalNumber(bt)
		}
	}
	return string(AppendCanonical(nil, a)) == string(AppendCanonical(nil, b))
}

// RiskOf classifies one change at a path. High: isError, a JSON-RPC error
// code (when comparing error objects), a content item's type, or a
// type change of the whole answer. Low: additions. Medium: everything else.
func RiskOf(toks []string, k Kind, old, new any, isErrorObject bool) Risk {
	switch {
	case k == KindOutcomeChanged:
		return RiskHigh
	case len(toks) == 0 && k == KindTypeChanged:
		return RiskHigh
	case len(toks) == 1 && toks[0] == "isError":
		return RiskHigh
	case isErrorObject && len(toks) == 1 && toks[0] == "code":
		return RiskHigh
	case len(toks) == 3 && toks[0] == "content" && toks[2] == "type":
		return RiskHigh
	case k == KindAdded:
		return RiskLow
	}
	return RiskMedium
}
