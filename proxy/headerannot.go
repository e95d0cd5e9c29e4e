package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// headerAnnotationError checks a tool's inputSchema against the 2026-07-28
// rules for x-mcp-header (server/tools, "x-mcp-header"): a non-empty HTTP
// token (1*tchar, so no control characters), unique case-insensitively in
// the schema, only on a property of type integer, string or boolean, and
// only on a property statically reachable from the root through a chain of
// "properties" keys (never through items, composition, conditionals, $ref
// or $defs). Clients on streamable HTTP MUST exclude a tool that breaks one
// from tools/list; the error says which rule and where.
func headerAnnotationError(schema json.RawMessage) error {
	// Most schemas have no annotation; one spelled with a \u escape is
	// still one.
	if !bytes.Contains(schema, []byte("x-mcp-header")) && !bytes.Contains(schema, []byte(`\u`)) {
		return nil
	}
	var root any
	if json.Unmarshal(schema, &root) != nil {
		return nil // not a schema at all: nothing to mirror into headers
	}
	return walkHeaderAnnotations(root, "", true, map[string]string{})
}

// walkHeaderAnnotations checks the annotations in the schema node at path;
// static says the node is the root or reached from it by properties only.
func walkHeaderAnnotations(node any, path string, static bool, seen map[string]string) error {
	switch n := node.(type) {
	case []any:
		for i, v := range n {
			if err := walkHeaderAnnotations(v, fmt.Sprintf("%s/%d", path, i), false, seen); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		if v, ok := n["x-mcp-header"]; ok {
			if err := checkHeaderAnnotation(n, v, path, static && path != "", seen); err != nil {
				return err
			}
		}
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := n[k]
			switch k {
			case "x-mcp-header", "const", "enum", "default", "examples":
				// Values, not schemas.
			case "properties", "$defs", "definitions", "patternProperties", "dependentSchemas":
				m, ok := v.(map[string]any)
				if !ok {
					continue
				}
				names := make([]string, 0, len(m))
				for name := range m {
					names = append(names, name)
				}
				slices.Sort(names)
				for _, name := range names {
					if err := walkHeaderAnnotations(m[name], path+"/"+k+"/"+name, k == "properties" && static, seen); err != nil {
						return err
					}
				}
			default:
				if err := walkHeaderAnnotations(v, path+"/"+k, false, seen); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkHeaderAnnotation(prop map[string]any, v any, path string, static bool, seen map[string]string) error {
	name, ok := v.(string)
	if !ok || name == "" {
		return fmt.Errorf("x-mcp-header at %s is not a non-empty string", path)
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return !isTChar(r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return fmt.Errorf("x-mcp-header %q at %s has %q, which an HTTP header name cannot contain", name, path, r)
	}
	if !static {
		return fmt.Errorf("x-mcp-header %q at %s is not on a property reached from the schema root through properties only", name, path)
	}
	if !headerPrimitive(prop["type"]) {
		t, _ := json.Marshal(prop["type"])
		return fmt.Errorf("x-mcp-header %q at %s is on a property of type %s, not integer, string or boolean", name, path, t)
	}
	lower := strings.ToLower(name)
	if prev, dup := seen[lower]; dup {
		return fmt.Errorf("x-mcp-header %q at %s repeats the one at %s (names are case-insensitive)", name, path, prev)
	}
	seen[lower] = path
	return nil
}

// headerPrimitive reports whether a schema's type admits only values an
// x-mcp-header may carry; a missing type admits any.
func headerPrimitive(t any) bool {
	ok := func(s any) bool { return s == "integer" || s == "string" || s == "boolean" }
	switch t := t.(type) {
	case string:
		return ok(t)
	case []any:
		return len(t) > 0 && !slices.ContainsFunc(t, func(s any) bool { return !ok(s) })
	}
	return false
}

// isTChar reports whether r is an HTTP token character (RFC 9110 5.6.2).
func isTChar(r rune) bool {
	switch {
	case r >= '0' && r <= '9', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
