package jsonrpc

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

var idKeyEqual = [][]string{
	{`1`, `1.0`, `1e0`, `10E-1`, `0.1e1`, `1.000`, `1E+0`},
	{`0`, `-0`, `0.0`, `0e5`},
	{`-12`, `-1.2e1`, `-120e-1`},
	{`"1"`, `"\u0031"`},
	{`"a\/b"`, `"a/b"`},
	{`9007199254740993`, `9007199254740993.0`},
}

var idKeyDistinct = []string{`1`, `"1"`, `2`, `10`, `0.1`, `-1`, `9007199254740992`, `9007199254740993`, `"1.0"`, `null`}

// TestIDKey: JSON-equal ids share a key; different ones do not.
func TestIDKey(t *testing.T) {
	for _, group := range idKeyEqual {
		for _, id := range group[1:] {
			if a, b := IDKey(json.RawMessage(group[0])), IDKey(json.RawMessage(id)); a != b {
				t.Errorf("IDKey(%s) = %q, IDKey(%s) = %q; want equal", group[0], a, id, b)
			}
		}
	}
	seen := map[string]string{}
	for _, id := range idKeyDistinct {
		k := IDKey(json.RawMessage(id))
		if prev, dup := seen[k]; dup {
			t.Errorf("IDKey(%s) = IDKey(%s) = %q; want distinct", id, prev, k)
		}
		seen[k] = id
	}
}

// FuzzIDKeyNumbers: two JSON numbers share a key exactly when their values
// are equal (checked with big.Rat, for exponents it can afford).
func FuzzIDKeyNumbers(f *testing.F) {
	for _, g := range idKeyEqual {
		for _, id := range g {
			if !strings.HasPrefix(id, `"`) {
				f.Add(g[0], id)
			}
		}
	}
	f.Add("1", "2")
	f.Fuzz(func(t *testing.T, a, b string) {
		var na, nb json.Number
		if json.Unmarshal([]byte(a), &na) != nil || json.Unmarshal([]byte(b), &nb) != nil || len(a) > 40 || len(b) > 40 ||
			strings.ContainsAny(a, " \t\n\r\"") || strings.ContainsAny(b, " \t\n\r\"") {
			return
		}
		for _, n := range []string{a, b} {
			if i := strings.IndexAny(n, "eE"); i >= 0 && len(n)-i > 5 {
				return // big.Rat would spell out a huge exponent
			}
		}
		ra, okA := new(big.Rat).SetString(a)
		rb, okB := new(big.Rat).SetString(b)
		if !okA || !okB {
			return
		}
		if same, eq := IDKey(json.RawMessage(a)) == IDKey(json.RawMessage(b)), ra.Cmp(rb) == 0; same != eq {
			t.Errorf("IDKey(%s) == IDKey(%s) is %v, but the values are equal: %v", a, b, same, eq)
		}
	})
}
