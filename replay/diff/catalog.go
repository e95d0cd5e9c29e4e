package diff

import (
	"slices"
)

// ListMember maps a list method to the member of its result that holds the
// named items and to the member that names each item: tools and prompts by
// name, resources by uri, templates by uriTemplate.
var ListMember = map[string]struct{ Field, Key string }{
	"tools/list":               {"tools", "name"},
	"prompts/list":             {"prompts", "name"},
	"resources/list":           {"resources", "uri"},
	"resources/templates/list": {"resourceTemplates", "uriTemplate"},
}

// setKey marks an array compared as a set of strings (a schema's required).
const setKey = "\x00set"

// identityKey returns how the array at toks is compared: by the member named
// by the returned key, as a set (setKey), or by index ("").
func (d *differ) identityKey(toks []string) string {
	if d.list == "" || len(toks) == 0 || toks[0] != d.list {
		return ""
	}
	switch {
	case len(toks) == 1:
		for _, lm := range ListMember {
			if lm.Field == d.list {
				return lm.Key
			}
		}
	case d.list == "prompts" && len(toks) == 3 && toks[2] == "arguments":
		return "name"
	case len(toks) > 2 && toks[len(toks)-1] == "required":
		return setKey
	}
	return ""
}

// walkByIdentity compares two arrays of named objects member by member, the
// path naming each member by its identity (/tools/echo/annotations), and
// reports an order change of the common members once, as low risk. It
// returns false (compare by index) when the arrays are not such lists:
// an item without its key, or a key given twice.
func (d *differ) walkByIdentity(toks []string, key string, a, b []any) bool {
	if key == setKey {
		as, ok1 := stringSet(a)
		bs, ok2 := stringSet(b)
		if !ok1 || !ok2 {
			return false
		}
		for _, s := range as {
			if !slices.Contains(bs, s) {
				d.absent(append(toks[:len(toks):len(toks)], s), KindRemoved, s, nil)
			}
		}
		for _, s := range bs {
			if !slices.Contains(as, s) {
				d.absent(append(toks[:len(toks):len(toks)], s), KindAdded, nil, s)
			}
		}
		return true
	}
	ids := func(xs []any) ([]string, map[string]any, bool) {
		order := make([]string, 0, len(xs))
		m := make(map[string]any, len(xs))
		for _, x := range xs {
			o, ok := x.(map[string]any)
			if !ok {
				return nil, nil, false
			}
			id, ok := o[key].(string)
			if _, dup := m[id]; !ok || dup {
				return nil, nil, false
			}
			order = append(order, id)
			m[id] = x
		}
		return order, m, true
	}
	ao, am, ok1 := ids(a)
	bo, bm, ok2 := ids(b)
	if !ok1 || !ok2 {
		return false
	}
	var commonA, commonB []any
	for _, id := range ao {
		sub := append(toks[:len(toks):len(toks)], id)
		if bv, ok := bm[id]; ok {
			commonA = append(commonA, id)
			d.walk(sub, am[id], bv)
		} else {
			d.absent(sub, KindRemoved, am[id], nil)
		}
	}
	for _, id := range bo {
		if _, ok := am[id]; ok {
			commonB = append(commonB, id)
		} else {
			d.absent(append(toks[:len(toks):len(toks)], id), KindAdded, nil, bm[id])
		}
	}
	if !slices.Equal(commonA, commonB) {
		d.add(toks, KindOrderChanged, commonA, commonB)
	}
	return true
}

func stringSet(xs []any) ([]string, bool) {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// CatalogRisk rates a change in a list result (a catalog): a removed tool,
// prompt, resource or template, a newly required argument, or a whole
// item's type change is high; any other schema or annotation change is
// medium (a tightened schema or a dropped readOnlyHint changes what a
// client may do); an added item or member, an order change, is low.
func CatalogRisk(toks []string, k Kind) Risk {
	switch {
	case k == KindOrderChanged:
		return RiskLow
	case len(toks) <= 2 && (k == KindRemoved || k == KindTypeChanged):
		return RiskHigh
	case len(toks) > 3 && toks[len(toks)-2] == "required" && k == KindAdded:
		return RiskHigh // inputSchema/required/<arg>
	case len(toks) > 3 && toks[2] == "arguments" && toks[len(toks)-1] == "required" && k != KindRemoved:
		return RiskHigh // a prompt argument became required
	case len(toks) > 2 && (toks[2] == "inputSchema" || toks[2] == "annotations" || toks[2] == "arguments"):
		return RiskMedium
	case k == KindAdded:
		return RiskLow
	}
	return RiskMedium
}
