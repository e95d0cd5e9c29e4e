package toolpin_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/toolpin"
	"github.com/mcptrail/mcptrail/recorder/jsoncanon"
)

// FuzzCanonicalReorder: re-encoding a tool with its keys in another order
// (at every level) and other whitespace never changes its hash, and a
// definition always diffs empty against itself.
func FuzzCanonicalReorder(f *testing.F) {
	f.Add([]byte(echo), uint64(1))
	f.Add([]byte(`{"name":"x","inputSchema":{"type":"object","properties":{"b":{"type":"number","maximum":1e3},"a":{"type":"string","enum":["<",">","&"]}}},"title":"\u00e9"}`), uint64(7))
	f.Add([]byte(`{"name":"y","annotations":{"readOnlyHint":false},"description":"line\nbreak"}`), uint64(42))
	f.Fuzz(func(t *testing.T, tool []byte, seed uint64) {
		v, err := jsoncanon.ParseStrict(tool)
		if _, obj := v.(map[string]any); err != nil || !obj {
			return // pinned by its raw bytes (TestOfChange)
		}
		d := toolpin.Of(tool)
		var buf bytes.Buffer
		writeShuffled(&buf, v, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		d2 := toolpin.Of(buf.Bytes())
		if d.Hash != d2.Hash {
			t.Fatalf("reordering changed the hash:\n%s\n%s\ncanonical\n%s\n%s", tool, buf.Bytes(), d.Canonical, d2.Canonical)
		}
		if cs := toolpin.Diff(d.Canonical, d2.Canonical); len(cs) != 0 {
			t.Fatalf("Diff of equal definitions = %v", cs)
		}
		if !json.Valid(d.Canonical) {
			t.Fatalf("canonical form is not JSON: %s", d.Canonical)
		}
	})
}

// writeShuffled encodes v with object keys in a random order and random
// whitespace.
func writeShuffled(buf *bytes.Buffer, v any, r *rand.Rand) {
	ws := func() {
		buf.WriteString([]string{"", " ", "\n", "\t  "}[r.IntN(4)])
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			ws()
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			ws()
			writeShuffled(buf, t[k], r)
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			ws()
			writeShuffled(buf, e, r)
		}
		buf.WriteByte(']')
	case json.Number:
		buf.WriteString(strings.ToUpper(string(t))) // 1e3 and 1E3 are one number
	default:
		b, _ := json.Marshal(t)
		buf.Write(b)
	}
}
