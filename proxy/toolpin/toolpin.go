// Package toolpin identifies a tool definition for pinning (issue 11.7, the
// rug-pull defence): which members of a listed tool are pinned, their
// canonical JSON and its hash, and a readable diff between two versions.
//
// The canonical form (recorder/jsoncanon) sorts keys and spells numbers and
// strings one way, so a backend that reorders keys or re-encodes "<" as
// "\u003c" has not changed its tool; a changed word of the description, a
// schema keyword or an annotation such as readOnlyHint has. A definition
// with a key twice in one object has no single meaning (parsers disagree on
// which one counts), so it is not canonicalised: its raw bytes are pinned
// instead, and any byte change of it is a change.
package toolpin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/mcptrail/mcptrail/recorder/jsoncanon"
)

// Fields are the members of a tool that are pinned: what a model reads to
// decide whether and how to call it, and what the gateway's own checks
// (argument validation, read-only retries and caching) rely on. The name is
// the pin's key; _meta and icons are not pinned.
var Fields = []string{"annotations", "description", "inputSchema", "outputSchema", "title"}

// Definition is the pinned part of one tool.
type Definition struct {
	// Canonical is a JSON object holding the pinned fields present in the
	// tool, canonical; {"unparsed": "<raw tool>"} for a tool that is not
	// a JSON object or repeats a key.
	Canonical []byte
	// Hash is the hex sha256 of Canonical.
	Hash string
}

// Of returns the pinned definition of one tools/list item.
func Of(tool []byte) Definition {
	v, err := jsoncanon.ParseStrict(tool)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		c := jsoncanon.AppendCanonical(nil, map[string]any{"unparsed": string(tool)})
		return Definition{Canonical: c, Hash: hash(c)}
	}
	pinned := make(map[string]any, len(Fields))
	for _, f := range Fields {
		if x, ok := m[f]; ok {
			pinned[f] = x
		}
	}
	c := jsoncanon.AppendCanonical(nil, pinned)
	return Definition{Canonical: c, Hash: hash(c)}
}

func hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Short is the first 12 hex digits of a hash, for messages.
func Short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Change is one difference between two definitions.
type Change struct {
	// Path is the RFC 6901 pointer of what changed: "/description",
	// "/inputSchema/properties/path/pattern", "/annotations/readOnlyHint".
	Path string `json:"path"`
	// Old and New are canonical JSON; absent (nil) on the side that lacks
	// the value.
	Old json.RawMessage `json:"old,omitempty"`
	New json.RawMessage `json:"new,omitempty"`
	// Words is a word diff of a changed string ("[-old-]{+new+}"), empty
	// for other values.
	Words string `json:"words,omitempty"`
}

// String renders the change on one line.
func (c Change) String() string {
	switch {
	case c.Words != "":
		return c.Path + ": " + c.Words
	case c.Old == nil:
		return c.Path + ": added " + string(c.New)
	case c.New == nil:
		return c.Path + ": removed (was " + string(c.Old) + ")"
	}
	return c.Path + ": " + string(c.Old) + " → " + string(c.New)
}

// Diff lists what differs between two canonical definitions, in path order.
func Diff(oldDef, newDef []byte) []Change {
	a, errA := jsoncanon.Parse(oldDef)
	b, errB := jsoncanon.Parse(newDef)
	if errA != nil || errB != nil {
		return []Change{{Path: "", Old: rawOrNil(oldDef), New: rawOrNil(newDef)}}
	}
	var out []Change
	walk("", a, b, true, true, &out)
	return out
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return jsoncanon.AppendCanonical(nil, string(b))
}

// Render is the changes, one per line.
func Render(cs []Change) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(c.String())
	}
	return b.String()
}

func walk(path string, a, b any, hasA, hasB bool, out *[]Change) {
	if hasA && hasB {
		ma, okA := a.(map[string]any)
		mb, okB := b.(map[string]any)
		if okA && okB {
			for _, k := range jsoncanon.UnionKeys(ma, mb) {
				va, inA := ma[k]
				vb, inB := mb[k]
				walk(path+"/"+escape(k), va, vb, inA, inB, out)
			}
			return
		}
		la, okA := a.([]any)
		lb, okB := b.([]any)
		if okA && okB {
			for i := range max(len(la), len(lb)) {
				var va, vb any
				if i < len(la) {
					va = la[i]
				}
				if i < len(lb) {
					vb = lb[i]
				}
				walk(path+"/"+itoa(i), va, vb, i < len(la), i < len(lb), out)
			}
			return
		}
	}
	var ca, cb []byte
	if hasA {
		ca = jsoncanon.AppendCanonical(nil, a)
	}
	if hasB {
		cb = jsoncanon.AppendCanonical(nil, b)
	}
	if hasA == hasB && string(ca) == string(cb) {
		return
	}
	c := Change{Path: path, Old: ca, New: cb}
	sa, okA := a.(string)
	sb, okB := b.(string)
	if hasA && hasB && okA && okB {
		c.Words = WordDiff(sa, sb)
	}
	*out = append(*out, c)
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
