package redact

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Config selects the redaction rules (the redact.* keys).
type Config struct {
	// Keys are key rules. A bare name ("password", "api_key") matches an
	// object key at any depth that contains its words (keys.go: "password"
	// matches db_password and passwordHash), and the value of a key=value
	// or "Key: value" pair in text. A dotted
	// path ("*.token", "arguments.card.number") matches when the last
	// segments of a value's key path equal it, "*" matching any one key;
	// array elements add no segment. The whole value under a matching key
	// is replaced, whatever its type (null is kept).
	// Nil means the defaults (DefaultKeys); a non-nil list replaces them,
	// so list the defaults again to keep them.
	Keys []string
	// Patterns names built-in value pattern sets that are searched in every
	// string value: "secrets" (AWS access key ids, GitHub, Slack, Stripe,
	// npm, Google, OpenAI and Anthropic API keys, JWTs, "Bearer <token>",
	// PEM private keys, the password in a URL's user info) and "pii"
	// (e-mail addresses, phone numbers). Nil means ["secrets"]; an empty
	// list turns patterns off (key rules still apply to key/value pairs
	// in text).
	Patterns []string
	// Custom adds named regular expressions (RE2 syntax). If the expression
	// has a group named "secret", only that group is replaced.
	Custom []Pattern
	// MaxPayloadBytes caps each payload after redaction, in bytes. Default
	// 65536; -1 disables the cap.
	MaxPayloadBytes int
}

// Pattern is a named regular expression for Config.Custom. Name appears in
// the placeholders it produces and in Fill's secrets map.
type Pattern struct {
	Name   string
	Regexp string
}

// DefaultKeys are the key rules used when Config.Keys is nil. Bare rules
// match keys by their words (see keys.go): "password" also catches
// db_password, passwordHash and DBPassword; "api_key" catches apiKey,
// x_api_key and X-API-Key; "token" catches accessToken and csrf_token but
// not maxTokens, token_count or MCP's progressToken. The same rules find
// key=value and "Key: value" pairs in free text.
var DefaultKeys = []string{
	"password", "passwd", "passphrase", "secret", "token", "access_token", "refresh_token",
	"api_key", "apikey", "authorization", "cookie", "set-cookie", "private_key",
	"client_secret", "x-api-key", "api-key", "x-auth-token", "proxy-authorization",
	"credential", "creds", "access_key", "signing_key", "encryption_key", "privkey",
	"bearer", "dsn", "account_key", "session_key", "x-amz-signature",
}

// DefaultMaxPayloadBytes is the payload cap used when MaxPayloadBytes is 0.
const DefaultMaxPayloadBytes = 65536

// builtin is a pattern of a built-in set, with cheap literal hints: the
// expression only runs on strings containing one of them.
type builtin struct {
	name   string
	expr   string
	hints  []string
	foldHn bool // hints match case-insensitively (ASCII)
}

// builtinSets are the named pattern sets for Config.Patterns. A private key
// without its END line (a capped error text) is redacted to the end of the
// string: all that follows BEGIN is key material.
var builtinSets = map[string][]builtin{
	"secrets": {
		{name: "pem_private_key", expr: `-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)`, hints: []string{"PRIVATE KEY"}},
		{name: "bearer", expr: `(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)`, hints: []string{"bearer"}, foldHn: true},
		// The token patterns below have distinctive prefixes, so they need
		// no word boundary before them: a key glued to a name by an
		// underscore or a letter (awskey_AKIA…, token=ghp_…) is still found.
		{name: "jwt", expr: `eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`, hints: []string{"eyJ"}},
		{name: "aws_access_key_id", expr: `(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}`, hints: []string{"AKIA", "ASIA", "ABIA", "ACCA"}},
		{name: "github_token", expr: `(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})`, hints: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}},
		{name: "slack_token", expr: `xox[abposre]-[A-Za-z0-9-]{10,}`, hints: []string{"xox"}},
		{name: "google_api_key", expr: `AIza[0-9A-Za-z_\-]{35}`, hints: []string{"AIza"}},
		{name: "stripe_key", expr: `(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{16,}`, hints: []string{"_live_", "_test_"}},
		{name: "llm_api_key", expr: `\bsk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_\-]{32,}`, hints: []string{"sk-"}},
		{name: "npm_token", expr: `npm_[A-Za-z0-9]{36}`, hints: []string{"npm_"}},
		// The password of a URL's user info: postgres://user:secret@host.
		{name: "url_password", expr: `[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:(?P<secret>[^/\s@]+)@`, hints: []string{"://"}},
	},
	"pii": {
		{name: "email", expr: `[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`, hints: []string{"@"}},
		{name: "phone", expr: `(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{2,4}\)|\b\d{2,4})[\s.\-]?\d{3,4}[\s.\-]?\d{3,4}\b`},
	},
}

// validRuleName keeps rule names parseable inside placeholders.
func validRuleName(s string) bool {
	return s != "" && !strings.ContainsAny(s, ":«» \t\r\n\"\\")
}

// compiled is a ready-to-run pattern.
type compiled struct {
	name   string
	re     *regexp.Regexp
	group  int // index of the "secret" group, 0 for the whole match
	hints  []string
	foldHn bool
}

// keyRule is a parsed Config.Keys entry.
type keyRule struct {
	name string   // as configured, lower-cased; used in placeholders
	segs []string // lower-cased path segments; one for a bare name
	bare bool
}

func (c Config) withDefaults() Config {
	if c.Keys == nil {
		c.Keys = DefaultKeys
	}
	if c.Patterns == nil {
		c.Patterns = []string{"secrets"}
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	return c
}

// compile validates c (with defaults applied) and builds its rules.
func (c Config) compile() ([]keyRule, []compiled, error) {
	var errs []error
	var keys []keyRule
	for _, k := range c.Keys {
		k = strings.ToLower(strings.TrimSpace(k))
		if !validRuleName(k) {
			errs = append(errs, fmt.Errorf("redact.keys: invalid key rule %q", k))
			continue
		}
		segs := strings.Split(k, ".")
		if slices.Contains(segs, "") {
			errs = append(errs, fmt.Errorf("redact.keys: empty path segment in %q", k))
			continue
		}
		keys = append(keys, keyRule{name: k, segs: segs, bare: len(segs) == 1 && segs[0] != "*"})
	}
	var pats []compiled
	seen := map[string]bool{}
	add := func(name, expr string, hints []string, fold bool, key string) {
		if !validRuleName(name) {
			errs = append(errs, fmt.Errorf("%s: invalid pattern name %q", key, name))
			return
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("%s: duplicate pattern name %q", key, name))
			return
		}
		seen[name] = true
		re, err := regexp.Compile(expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: pattern %q: %w", key, name, err))
			return
		}
		group := re.SubexpIndex("secret")
		if group < 0 {
			group = 0
		}
		pats = append(pats, compiled{name: name, re: re, group: group, hints: hints, foldHn: fold})
	}
	for _, set := range c.Patterns {
		bs, ok := builtinSets[set]
		if !ok {
			errs = append(errs, fmt.Errorf("redact.patterns: unknown pattern set %q (want secrets or pii)", set))
			continue
		}
		for _, b := range bs {
			add(b.name, b.expr, b.hints, b.foldHn, "redact.patterns")
		}
	}
	for _, p := range c.Custom {
		if p.Regexp == "" {
			errs = append(errs, fmt.Errorf("redact.custom: pattern %q has an empty regexp", p.Name))
			continue
		}
		add(p.Name, p.Regexp, nil, false, "redact.custom")
	}
	if c.MaxPayloadBytes < -1 {
		errs = append(errs, fmt.Errorf("redact.max_payload_bytes: %d is invalid (use -1 for no cap)", c.MaxPayloadBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return keys, pats, nil
}
