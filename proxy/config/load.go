package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads the file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading config %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes a config file's bytes, expanding ${ENV} references from the
// process environment. path is used in errors and stored in Config.Path.
func Parse(data []byte, path string) (*Config, error) {
	return ParseEnv(data, path, os.LookupEnv)
}

// ParseEnv is Parse with an explicit environment lookup.
//
// The steps, in order: parse YAML; walk the document against the Config
// schema, rejecting unknown keys, expanding ${NAME} and ${NAME:-default} in
// values (never keys; "$${" is a literal "${") and accepting day durations
// ("30d"); decode; apply defaults; Validate.
func ParseEnv(data []byte, path string, lookup func(string) (string, bool)) (*Config, error) {
	sum := sha256.Sum256(data)
	cfg := &Config{Path: path, Hash: hex.EncodeToString(sum[:])}
	name := displayName(path)

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: parsing YAML: %w", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("%s: parsing YAML: %w", name, err)
		}
		return nil, fmt.Errorf("%s:%d: more than one YAML document; put the whole config in one", name, extra.Line)
	}

	if len(doc.Content) > 0 {
		root := doc.Content[0]
		w := &walker{file: name, lookup: lookup, lines: map[int][]located{}, env: map[string]bool{}, present: map[string]bool{}, seen: map[*yaml.Node]bool{}}
		w.walk(root, reflect.TypeOf(Config{}), "")
		if len(w.errs) > 0 {
			return nil, errors.Join(w.errs...)
		}
		if err := root.Decode(cfg); err != nil {
			return nil, w.explain(err)
		}
		cfg.envPaths, cfg.present = w.env, w.present
	}
	cfg.Path, cfg.Hash = path, hex.EncodeToString(sum[:]) // even if the YAML tried to set them
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func displayName(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	dayDuration  = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)d(.*)$`)
)

// walker checks a YAML node tree against the Config type before decoding:
// yaml.v3's Node.Decode has no KnownFields, and env expansion has to happen
// on values (not on text, where a secret containing ": " would change the
// document's structure), so the strictness is done here, with key paths.
type walker struct {
	file    string
	lookup  func(string) (string, bool)
	errs    []error
	lines   map[int][]located // line → values there, to put key paths in yaml's type errors
	env     map[string]bool   // key paths whose value used ${ENV}
	present map[string]bool   // key paths written in the file
	seen    map[*yaml.Node]bool
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	key := path
	if key == "" {
		key = "(top level)"
	}
	w.errs = append(w.errs, fmt.Errorf("%s:%d: %s: %s", w.file, n.Line, key, fmt.Sprintf(format, args...)))
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if w.seen[n] { // an anchor used twice is already checked and expanded
		return
	}
	w.seen[n] = true
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with no value: the zero value, then defaults
	}
	if path != "" {
		w.lines[n.Line] = append(w.lines[n.Line], located{path: path, node: n})
	}
	switch {
	case t == durationType:
		if !w.scalar(n, path) {
			return
		}
		w.expand(n, t, path)
		d, err := ParseDuration(n.Value)
		if err != nil {
			w.fail(n, path, "%v", err)
			return
		}
		n.Value, n.Tag, n.Style = d.String(), "!!str", 0
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "expected a mapping of keys, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" { // "<<: *defaults" merges another mapping in
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						w.walk(m, t, path)
					}
				} else {
					w.walk(v, t, path)
				}
				continue
			}
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				w.fail(k, join(path, k.Value), "unknown key%s", suggest(t, k.Value))
				continue
			}
			w.present[join(path, k.Value)] = true
			w.walk(v, f.Type, join(path, k.Value))
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, v := range n.Content {
			w.walk(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.fail(k, path, "keys must be strings")
				continue
			}
			w.walk(v, t.Elem(), join(path, k.Value))
		}
	default:
		if w.scalar(n, path) {
			w.expand(n, t, path)
		}
	}
}

func (w *walker) scalar(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode {
		w.fail(n, path, "expected a single value, got %s", describe(n))
		return false
	}
	return true
}

// expand replaces ${NAME} references in a scalar. The node's tag is fixed
// from the target type, not re-guessed from the text: a password "null" or
// "0123" from the environment stays that string.
func (w *walker) expand(n *yaml.Node, t reflect.Type, path string) {
	if !strings.Contains(n.Value, "$") {
		return
	}
	out, used, err := Expand(n.Value, w.lookup)
	if err != nil {
		w.fail(n, path, "%v", err)
		return
	}
	if out == n.Value {
		return
	}
	n.Value = out
	if used {
		w.env[path] = true
	}
	if t.Kind() == reflect.String || t == durationType {
		n.Tag = "!!str"
	} else {
		n.Tag, n.Style = "", 0 // numbers and booleans resolve from the expanded text
	}
}

// explain adds key paths to yaml's type errors, which only name lines.
func (w *walker) explain(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: decoding: %w", w.file, err)
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		line := 0
		rest := msg
		if strings.HasPrefix(msg, "line ") {
			if i := strings.Index(msg, ":"); i > 0 {
				line, _ = strconv.Atoi(msg[len("line "):i])
				rest = strings.TrimSpace(msg[i+1:])
			}
		}
		if p, ok := w.pathAt(line, rest); ok {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %s", w.file, line, p, rest))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s", w.file, msg))
		}
	}
	return errors.Join(errs...)
}

type located struct {
	path string
	node *yaml.Node
}

// pathAt finds the key path of the value a yaml error on a line is about:
// the scalar whose text the message quotes (yaml writes "cannot unmarshal
// !!str `x` into int"), else the deepest value on the line.
func (w *walker) pathAt(line int, msg string) (string, bool) {
	vals := w.lines[line]
	if len(vals) == 0 {
		return "", false
	}
	for _, v := range vals {
		if v.node.Kind == yaml.ScalarNode && strings.Contains(msg, "`"+v.node.Value+"`") {
			return v.path, true
		}
	}
	return vals[len(vals)-1].path, true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggest names the valid keys of t, so a typo is fixed without the docs.
func suggest(t reflect.Type, key string) string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if strings.EqualFold(strings.ReplaceAll(name, "_", ""), strings.NewReplacer("_", "", "-", "").Replace(key)) ||
			editDistance(strings.ToLower(key), name) <= 2 {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
		keys = append(keys, name)
	}
	return " (valid keys: " + strings.Join(keys, ", ") + ")"
}

// Expand replaces ${NAME} and ${NAME:-default} in s using lookup. As in a
// shell, the default is used when NAME is unset or empty; a reference to an
// unset NAME without a default is an error. "$${" produces a literal "${";
// any other "$" is kept as is. used reports whether any reference was
// expanded.
func Expand(s string, lookup func(string) (string, bool)) (out string, used bool, err error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "$")
		if i < 0 || i+1 >= len(s) {
			b.WriteString(s)
			return b.String(), used, nil
		}
		b.WriteString(s[:i])
		s = s[i:]
		switch {
		case strings.HasPrefix(s, "$${"):
			b.WriteString("${")
			s = s[3:]
		case strings.HasPrefix(s, "${"):
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return "", used, fmt.Errorf("unterminated ${ in %q", s)
			}
			ref := s[2:end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validEnvName(name) {
				return "", used, fmt.Errorf("invalid environment variable reference ${%s}: a name is letters, digits and _ (not starting with a digit), optionally followed by :-default", ref)
			}
			val, ok := lookup(name)
			switch {
			case ok && (val != "" || !hasDef):
				b.WriteString(val)
			case hasDef:
				b.WriteString(def)
			default:
				return "", used, fmt.Errorf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
			}
			used = true
			s = s[end+1:]
		default:
			b.WriteByte('$')
			s = s[1:]
		}
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ParseDuration parses a Go duration ("1h30m", "500ms") or one with a
// leading day count ("30d", "1d12h"). Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	var d time.Duration
	if m := dayDuration.FindStringSubmatch(s); m != nil {
		days, err := strconv.ParseFloat(m[1], 64)
		if err != nil || days > 100*365 {
			return 0, fmt.Errorf("invalid duration %q: at most 36500d", orig)
		}
		d = time.Duration(days * float64(24*time.Hour))
		s = m[2]
		if s == "" {
			return d, nil
		}
	}
	rest, err := time.ParseDuration(s)
	if err != nil || rest < 0 {
		return 0, fmt.Errorf("invalid duration %q: use Go syntax such as 500ms, 1h30m, or days such as 30d", orig)
	}
	return d + rest, nil
}

// editDistance is the Levenshtein distance, for typo suggestions.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
