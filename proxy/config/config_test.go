package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const hashA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
const hashB = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

// envOf returns a lookup over a fixed map, so tests do not touch the process
// environment and can run in parallel.
func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const minimal = `
servers:
  - name: s
    command: x
`

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := ParseEnv([]byte(minimal+"instance: i\n"), "mcptrail.yaml", envOf())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(minimal + "instance: i\n"))
	want := &Config{
		Listen:             "127.0.0.1:8080",
		NamespaceSeparator: ".",
		ClientTraceContext: "link",
		MaxBodyBytes:       4 << 20,
		ShutdownTimeout:    15 * time.Second,
		Cache:              Cache{MaxBytes: 64 << 20},
		Limits: Limits{
			ReadHeaderTimeout: 10 * time.Second, BodyReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
			MaxSessions: 10000, MaxSessionsPerPrincipal: 1000, MaxSubscriptions: 256, MaxUpstreamSubscriptionsPerPrincipal: 256, MaxUpstreamSubscriptionsPerServer: 4096, MaxTasksPerPrincipal: 1000, MaxHeldPerPrincipal: 64, MaxInflightPerSession: 64, SessionIdleTimeout: 30 * time.Minute,
		},
		Instance: "i",
		Servers: []Server{{
			Name: "s", Transport: "stdio", Command: "x",
			Timeout: 60 * time.Second, ConnectTimeout: 10 * time.Second, ProtocolVersion: "2025-11-25",
			Breaker: Breaker{Failures: 5, OpenFor: 10 * time.Second}, RetryBackoff: 100 * time.Millisecond,
		}},
		Recorder: Recorder{
			Enabled: boolPtr(true),
			ClickHouse: ClickHouse{
				Database: "mcptrail", Migrate: boolPtr(true), LocalDir: "./.mcptrail/clickhouse",
			},
			Spool: Spool{
				Dir: "./.mcptrail/spool", Fsync: "interval", FsyncInterval: time.Second,
				MaxBytes: 1 << 30, SegmentBytes: 64 << 20,
			},
			QueueSize: 65536, QueueBytes: 64 << 20, BatchSize: 10000, FlushInterval: time.Second, Overflow: "drop",
			Payloads:  Payloads{Enabled: boolPtr(true), MaxBytes: 65536},
			Redaction: Redaction{Patterns: []string{"secrets"}, HMACKeyEnv: "MCPTRAIL_REDACTION_KEY"},
			Retention: Retention{Hops: 30 * 24 * time.Hour, Payloads: 7 * 24 * time.Hour},
		},
		Sessions: Sessions{Lifetime: 24 * time.Hour, MaxRevoked: 100000, MaxRevokedPerPrincipal: 10000},
		Path:     "mcptrail.yaml",
		Hash:     hex.EncodeToString(sum[:]),
	}
	cfg.envPaths, cfg.present = nil, nil
	if !reflect.DeepEqual(cfg, want) {
		g, _ := json.MarshalIndent(cfg, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("defaults:\ngot  %s\nwant %s", g, w)
	}
	if !cfg.Recorder.IsEnabled() || !cfg.Recorder.Payloads.IsEnabled() || !cfg.Recorder.ClickHouse.ShouldMigrate() || !cfg.Recorder.ClickHouse.Local() {
		t.Error("accessors disagree with the defaults")
	}
	if s := cfg.Server("s"); s == nil || s.Command != "x" {
		t.Errorf(`Server("s") = %+v`, s)
	}
	if s := cfg.Server("nope"); s != nil {
		t.Errorf(`Server("nope") = %+v, want nil`, s)
	}
}

func TestParseGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "transport inferred from url",
			yaml: "servers: [{name: a, url: 'http://h:1/mcp'}]",
			check: func(t *testing.T, c *Config) {
				if got := c.Servers[0].Transport; got != "http" {
					t.Errorf("transport = %q, want http", got)
				}
			},
		},
		{
			name: "env expansion in strings, ints, bools and durations",
			yaml: `
listen: ${HOST:-127.0.0.1}:${PORT}
max_body_bytes: ${MAX}
shutdown_timeout: ${GRACE:-3s}
servers:
  - name: a
    command: x
    required: ${REQ}
    env: {TOKEN: "${SECRET}"}
recorder:
  clickhouse: {password: "${PW}"}
`,
			env: []string{"PORT", "9999", "MAX", "1024", "REQ", "true", "SECRET", "null", "PW", "0123"},
			check: func(t *testing.T, c *Config) {
				if c.Listen != "127.0.0.1:9999" || c.MaxBodyBytes != 1024 || c.ShutdownTimeout != 3*time.Second || !c.Servers[0].Required {
					t.Errorf("got listen %q max %d grace %s required %v", c.Listen, c.MaxBodyBytes, c.ShutdownTimeout, c.Servers[0].Required)
				}
				// Values from the environment keep their text, even when YAML would read them as null or a number.
				if got := c.Servers[0].Env["TOKEN"]; got != "null" {
					t.Errorf("env TOKEN = %q, want %q", got, "null")
				}
				if got := c.Recorder.ClickHouse.Password; got != "0123" {
					t.Errorf("password = %q, want 0123", got)
				}
				if !c.FromEnv("recorder.clickhouse.password") || c.FromEnv("servers[0].command") {
					t.Error("FromEnv wrong")
				}
			},
		},
		{
			name: "day durations and forever retention",
			yaml: minimal + "recorder: {retention: {hops: 0, payloads: 1d12h, audit: 365d}}",
			check: func(t *testing.T, c *Config) {
				r := c.Recorder.Retention
				if r.Hops != 0 || r.Payloads != 36*time.Hour || r.Audit != 365*24*time.Hour {
					t.Errorf("retention = %+v", r)
				}
			},
		},
		{
			name: "explicit false and empty patterns are kept",
			yaml: minimal + "recorder: {enabled: false, clickhouse: {migrate: false}, payloads: {enabled: false}, redaction: {patterns: []}}",
			check: func(t *testing.T, c *Config) {
				r := c.Recorder
				if r.IsEnabled() || r.Payloads.IsEnabled() || r.ClickHouse.ShouldMigrate() || len(r.Redaction.Patterns) != 0 {
					t.Errorf("recorder = %+v", r)
				}
			},
		},
		{
			name: "anchors and merge keys",
			yaml: `
servers:
  - &common {name: a, command: x, timeout: 5s, required: true}
  - {<<: *common, name: b}
  - <<: *common
    name: c
    timeout: 6s
`,
			check: func(t *testing.T, c *Config) {
				for i, s := range c.Servers {
					want := 5 * time.Second
					if i == 2 {
						want = 6 * time.Second
					}
					if s.Timeout != want || !s.Required || s.Command != "x" {
						t.Errorf("server %s = %+v", s.Name, s)
					}
				}
			},
		},
		{
			name: "token principal defaults to name, hash lowercased",
			yaml: minimal + "auth: {tokens: [{name: t, sha256: " + strings.ToUpper(hashA) + ", tools: ['s.*']}]}",
			check: func(t *testing.T, c *Config) {
				tok := c.Auth.Tokens[0]
				if tok.Principal != "t" || tok.SHA256 != hashA {
					t.Errorf("token = %+v", tok)
				}
			},
		},
		{
			name: "literal dollar and escaped reference",
			yaml: minimal + "recorder: {clickhouse: {password: 'pa$$word$${X}'}}",
			check: func(t *testing.T, c *Config) {
				if got := c.Recorder.ClickHouse.Password; got != "pa$$word${X}" {
					t.Errorf("password = %q", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseEnv([]byte(tt.yaml), "mcptrail.yaml", envOf(tt.env...))
			if err != nil {
				t.Fatalf("ParseEnv: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseBad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // substrings of the error: the file, the key, the cause
	}{
		{"unknown top-level key", minimal + "listn: x", nil, []string{"mcptrail.yaml:5:", "listn: unknown key", `"listen"`}},
		{"unknown nested key", "servers: [{name: a, command: x, tiemout: 1s}]", nil, []string{"servers[0].tiemout: unknown key", `did you mean "timeout"`}},
		{"unknown key lists valid keys", "servers: [{name: a, command: x, bogus: 1}]", nil, []string{"servers[0].bogus: unknown key", "valid keys: name, transport"}},
		{"unknown key in alias target", "servers: [&a {name: a, command: x, bogus: 1}, *a]", nil, []string{"servers[0].bogus: unknown key"}},
		{"unknown recorder key", minimal + "recorder: {spool: {fsnyc: always}}", nil, []string{"recorder.spool.fsnyc: unknown key"}},
		{"unset env var", "servers: [{name: a, command: x, env: {K: '${NOPE}'}}]", nil, []string{"mcptrail.yaml:1:", "servers[0].env.K", "NOPE is not set"}},
		{"bad env reference", "servers: [{name: a, command: '${1X}'}]", nil, []string{"servers[0].command", "invalid environment variable reference"}},
		{"unterminated env reference", "servers: [{name: a, command: '${X'}]", nil, []string{"servers[0].command", "unterminated"}},
		{"type error names key", minimal + "max_body_bytes: lots", nil, []string{"mcptrail.yaml:5:", "max_body_bytes", "lots"}},
		{"type error in flow style names the deep key", "servers: [{name: a, command: x, max_concurrency: many}]", nil, []string{"mcptrail.yaml:1: servers[0].max_concurrency:", "many"}},
		{"bool type error", minimal + "recorder: {enabled: perhaps}", nil, []string{"recorder.enabled:", "perhaps"}},
		{"env type error names key", minimal + "max_body_bytes: ${M}", []string{"M", "big"}, []string{"max_body_bytes", "big"}},
		{"bad duration", minimal + "shutdown_timeout: soon", nil, []string{"shutdown_timeout", "invalid duration"}},
		{"int duration", minimal + "shutdown_timeout: 30", nil, []string{"shutdown_timeout", "invalid duration"}},
		{"mapping for scalar", minimal + "listen: {a: 1}", nil, []string{"listen: expected a single value"}},
		{"scalar for list", "servers: x", nil, []string{"servers: expected a list"}},
		{"two documents", minimal + "---\nlisten: x\n", nil, []string{"more than one YAML document"}},
		{"yaml syntax", "servers: [", nil, []string{"mcptrail.yaml: parsing YAML"}},
		{"no servers", "listen: 127.0.0.1:1", nil, []string{"servers: at least one server"}},
		{"bad listen", minimal + "listen: localhost", nil, []string{"mcptrail.yaml: listen:"}},
		{"bad listen port", minimal + "listen: ':99999'", nil, []string{"listen:", "port"}},
		{"separator with letters", minimal + "namespace_separator: x", nil, []string{"namespace_separator", "letters"}},
		{"separator in name", "namespace_separator: _\nservers: [{name: a_b, command: x}]", nil, []string{"servers[0].name", "namespace_separator"}},
		{"negative body", minimal + "max_body_bytes: -1", nil, []string{"max_body_bytes: must not be negative"}},
		{"missing name", "servers: [{command: x}]", nil, []string{"servers[0].name: is required"}},
		{"bad name", "servers: [{name: 'a b', command: x}]", nil, []string{"servers[0].name", "only letters"}},
		{"duplicate names", "servers: [{name: a, command: x}, {name: a, command: y}]", nil, []string{"servers[1].name", "servers[0]"}},
		{"missing command", "servers: [{name: a, transport: stdio}]", nil, []string{"servers[0].command: is required"}},
		{"no transport", "servers: [{name: a}]", nil, []string{"servers[0].transport: is required"}},
		{"bad transport", "servers: [{name: a, transport: grpc, url: 'http://x'}]", nil, []string{"servers[0].transport", "grpc"}},
		{"bad url scheme", "servers: [{name: a, command: x}, {name: b, url: 'ftp://x'}]", nil, []string{"servers[1].url", "not an http or https URL"}},
		{"url without host", "servers: [{name: a, transport: sse, url: 'http:///x'}]", nil, []string{"servers[0].url", "no host"}},
		{"url on stdio", "servers: [{name: a, command: x, url: 'http://x'}]", nil, []string{"servers[0].url", "not used by transport stdio"}},
		{"command on http", "servers: [{name: a, transport: http, url: 'http://x', command: y}]", nil, []string{"servers[0].command"}},
		{"bad header name", "servers: [{name: a, url: 'http://x', headers: {'a b': c}}]", nil, []string{"servers[0].headers.a b"}},
		{"bad env name", "servers: [{name: a, command: x, env: {'1A': c}}]", nil, []string{"servers[0].env.1A"}},
		{"bad protocol version", "servers: [{name: a, command: x, protocol_version: latest}]", nil, []string{"servers[0].protocol_version"}},
		{"bad pinning", minimal + "pinning: {on_change: block}", nil, []string{"pinning.on_change", `"block" is not off, warn, hide or deny`}},
		{"bad server pinning", "servers: [{name: a, command: x, pinning: hidden, tools: {t: {pinning: allow}}}]", nil, []string{"servers[0].pinning", "servers[0].tools.t.pinning", `"allow"`}},
		{"negative concurrency", "servers: [{name: a, command: x, max_concurrency: -2}]", nil, []string{"servers[0].max_concurrency"}},
		{"fallback to itself", "servers: [{name: a, command: x, fallbacks: [a]}]", nil, []string{"servers[0].fallbacks[0]", "the server itself"}},
		{"fallback to no server", "servers: [{name: a, command: x, fallbacks: [b]}]", nil, []string{"servers[0].fallbacks[0]", `"b" is not the name of a server`}},
		{"breaker failures below -1", "servers: [{name: a, command: x, breaker: {failures: -2}}]", nil, []string{"servers[0].breaker.failures"}},
		{"too many retries", "servers: [{name: a, command: x, retries: 11}]", nil, []string{"servers[0].retries"}},
		{"negative retry backoff", "servers: [{name: a, command: x, retry_backoff: -1s}]", nil, []string{"servers[0].retry_backoff"}},
		{"negative timeout", "servers: [{name: a, command: x, timeout: -1s}]", nil, []string{"servers[0].timeout"}},
		{"bad rate unit", minimal + "limits: {rate_per_principal: {rate: 5/d}}", nil, []string{"limits.rate_per_principal", "unit must be s, m or h"}},
		{"burst without rate", minimal + "limits: {rate_per_tool: {burst: 5}}", nil, []string{"limits.rate_per_tool.burst"}},
		{"bad tool rate", "servers: [{name: a, command: x, tools: {t: {rate: {rate: fast}}}}]", nil, []string{"servers[0].tools.t.rate"}},
		{"tool queue without cap", "servers: [{name: a, command: x, tools: {t: {queue_size: 3}}}]", nil, []string{"servers[0].tools.t.queue_size", "max_concurrency"}},
		{"negative tool timeout", "servers: [{name: a, command: x, tools: {t: {timeout: -1s}}}]", nil, []string{"servers[0].tools.t.timeout"}},
		{"token without name", minimal + "auth: {tokens: [{sha256: " + hashA + ", tools: ['*']}]}", nil, []string{"auth.tokens[0].name: is required"}},
		{"duplicate token names", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", tools: ['*']}, {name: t, sha256: " + hashB + ", tools: ['*']}]}", nil, []string{"auth.tokens[1].name", "auth.tokens[0]"}},
		{"duplicate token hashes", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", tools: ['*']}, {name: u, sha256: " + hashA + ", tools: ['*']}]}", nil, []string{"auth.tokens[1].sha256", "same token hash"}},
		{"short sha256", minimal + "auth: {tokens: [{name: t, sha256: abc, tools: ['*']}]}", nil, []string{"auth.tokens[0].sha256", "64 hex"}},
		{"non-hex sha256", minimal + "auth: {tokens: [{name: t, sha256: " + strings.Repeat("zz", 32) + ", tools: ['*']}]}", nil, []string{"auth.tokens[0].sha256"}},
		{"token without tools", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + "}]}", nil, []string{"auth.tokens[0].tools: is empty"}},
		{"bad tool pattern", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", tools: ['*.read']}]}", nil, []string{"auth.tokens[0].tools[0]", "only at the end"}},
		{"resource pattern without server", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", resources: ['test://static/*']}]}", nil, []string{"auth.tokens[0].resources[0]", "<server>:<uri pattern>"}},
		{"revoked caps", minimal + "sessions: {max_revoked: 5, max_revoked_per_principal: 6}", nil, []string{"sessions.max_revoked_per_principal", "more than sessions.max_revoked (5)"}},
		{"bad prompt pattern", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", prompts: ['a*b']}]}", nil, []string{"auth.tokens[0].prompts[0]", "only at the end"}},
		{"oauth principal", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", principal: 'oauth:alice', tools: ['*']}]}", nil, []string{"auth.tokens[0].principal", `the prefix "oauth:" is reserved`}},
		{"oauth principal from the name", minimal + "auth: {tokens: [{name: 'oauth:alice', sha256: " + hashA + ", tools: ['*']}]}", nil, []string{"auth.tokens[0].principal", `the prefix "oauth:" is reserved`}},
		{"anonymous principal", minimal + "auth: {tokens: [{name: t, sha256: " + hashA + ", principal: anonymous, tools: ['*']}]}", nil, []string{"auth.tokens[0].principal", `"anonymous" is reserved`}},
		{"gateway principal", minimal + "auth: {tokens: [{name: mcptrail, sha256: " + hashA + ", tools: ['*']}]}", nil, []string{"auth.tokens[0].principal", `"mcptrail" is reserved`}},
		{"bad overflow", minimal + "recorder: {overflow: block}", nil, []string{"recorder.overflow", "block"}},
		{"bad fsync", minimal + "recorder: {spool: {fsync: sometimes}}", nil, []string{"recorder.spool.fsync", "sometimes"}},
		{"segment above max", minimal + "recorder: {spool: {max_bytes: 10, segment_bytes: 20}}", nil, []string{"recorder.spool.segment_bytes", "larger"}},
		{"negative queue", minimal + "recorder: {queue_size: -1}", nil, []string{"recorder.queue_size"}},
		{"bad clickhouse addr", minimal + "recorder: {clickhouse: {addr: [db]}}", nil, []string{"recorder.clickhouse.addr[0]"}},
		{"bad database", minimal + "recorder: {clickhouse: {database: 'a-b'}}", nil, []string{"recorder.clickhouse.database"}},
		{"bad cluster", minimal + "recorder: {clickhouse: {cluster: 'x y'}}", nil, []string{"recorder.clickhouse.cluster"}},
		{"bad custom regexp", minimal + "recorder: {redaction: {custom: [{name: a, regexp: '('}]}}", nil, []string{"recorder.redaction.custom[0].regexp"}},
		{"duplicate custom", minimal + "recorder: {redaction: {custom: [{name: a, regexp: x}, {name: a, regexp: y}]}}", nil, []string{"recorder.redaction.custom[1].name"}},
		{"empty redaction key", minimal + "recorder: {redaction: {keys: ['']}}", nil, []string{"recorder.redaction.keys[0]"}},
		{"bad hmac env", minimal + "recorder: {redaction: {hmac_key_env: 'A-B'}}", nil, []string{"recorder.redaction.hmac_key_env"}},
		{"payloads outlive hops", minimal + "recorder: {retention: {hops: 1d, payloads: 2d}}", nil, []string{"recorder.retention.payloads", "outlives"}},
		{"negative retention", minimal + "recorder: {retention: {audit: -1h}}", nil, []string{"recorder.retention.audit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnv([]byte(tt.yaml), "mcptrail.yaml", envOf(tt.env...))
			if err == nil {
				t.Fatalf("ParseEnv(%q) = nil error, want one containing %q", tt.yaml, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseEnv error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestStrictAsKnownFields checks that the schema walk rejects exactly the
// keys yaml.v3's KnownFields(true) rejects.
func TestStrictAsKnownFields(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile("../../deploy/mcptrail.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		string(example),
		minimal,
		minimal + "listn: x",
		minimal + "recorder: {spool: {fsnyc: always}}",
		minimal + "recorder: {clickhouse: {Addr: [a]}}",
		"servers: [{name: a, command: x, tiemout: 1s}]",
		minimal + "auth: {tokens: [{name: t, sha: x}]}",
		minimal + "recorder: {redaction: {custom: [{name: a, regex: x}]}}",
		minimal + "recorder: {retention: {hop: 1d}}",
		minimal + "path: /x",
		minimal + "hash: abc",
	}
	for _, d := range docs {
		dec := yaml.NewDecoder(strings.NewReader(d))
		dec.KnownFields(true)
		var c Config
		kerr := dec.Decode(&c)
		kUnknown := kerr != nil && strings.Contains(kerr.Error(), "not found in type")
		_, perr := ParseEnv([]byte(d), "m.yaml", exampleEnv)
		pUnknown := perr != nil && strings.Contains(perr.Error(), "unknown key")
		if kUnknown != pUnknown {
			t.Errorf("doc %.60q: KnownFields error %v, Parse error %v", d, kerr, perr)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := &Config{Path: "x.yaml", Servers: []Server{{Name: "a"}, {Name: "a", Transport: "http", URL: "nope"}}}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, w := range []string{"x.yaml: servers[0].transport", "x.yaml: servers[1].name", "x.yaml: servers[1].url"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %q, want it to contain %q", err, w)
		}
	}
	// A config built in code validates with zero values standing for defaults.
	c = &Config{Servers: []Server{{Name: "a", Command: "x", Transport: "stdio"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(zero config) = %v", err)
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	env := envOf("A", "1", "EMPTY", "", "B_2", "two")
	tests := []struct {
		in, want string
		used     bool
		err      string
	}{
		{"plain", "plain", false, ""},
		{"${A}", "1", true, ""},
		{"x${A}y${B_2}z", "x1ytwoz", true, ""},
		{"${MISSING:-def}", "def", true, ""},
		{"${MISSING:-}", "", true, ""},
		{"${EMPTY:-def}", "def", true, ""},
		{"${EMPTY}", "", true, ""},
		{"${A:-def}", "1", true, ""},
		{"${MISSING:-a:-b}", "a:-b", true, ""},
		{"$A $ $$ $", "$A $ $$ $", false, ""},
		{"$${A}", "${A}", false, ""},
		{"$$${A}", "$${A}", false, ""}, // only "$${" is special: "$" then an escaped "${"
		{"${MISSING}", "", false, "MISSING is not set"},
		{"${}", "", false, "invalid environment variable reference"},
		{"${A", "", false, "unterminated"},
		{"${A B}", "", false, "invalid"},
	}
	for _, tt := range tests {
		got, used, err := Expand(tt.in, env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Expand(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || used != tt.used {
			t.Errorf("Expand(%q) = %q, %v, %v; want %q, %v", tt.in, got, used, err, tt.want, tt.used)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"${A}", "x$${A}", "${B:-d}", "$", "${", "$$", "${A:-${B}}"} {
		f.Add(s)
	}
	env := envOf("A", "a", "B", "")
	f.Fuzz(func(t *testing.T, s string) {
		out, used, err := Expand(s, env)
		if err != nil {
			return
		}
		if !strings.Contains(s, "${") && out != s {
			t.Errorf("Expand(%q) = %q: text without ${ must not change", s, out)
		}
		if !strings.Contains(s, "$") && used {
			t.Errorf("Expand(%q) reported a reference", s)
		}
	})
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"1s", time.Second, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"0.5d", 12 * time.Hour, true},
		{"d", 0, false},
		{"5", 0, false},
		{"-1s", 0, false},
		{"99999d", 0, false},
		{"1dx", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // substrings, one per expected warning; nil = no warnings
	}{
		{"quiet", "namespace_separator: __\nservers: [{name: a, command: x}]", nil, nil},
		{"dot separator", minimal, nil, []string{"set namespace_separator: __"}},
		{"open listen without auth", "namespace_separator: __\nlisten: 0.0.0.0:8080\nservers: [{name: a, command: x}]", nil, []string{"not a loopback address"}},
		{"literal password", "namespace_separator: __\nservers: [{name: a, command: x}]\nrecorder: {clickhouse: {password: hunter2}}", nil, []string{"recorder.clickhouse.password is written in the config file"}},
		{"password from env", "namespace_separator: __\nservers: [{name: a, command: x}]\nrecorder: {clickhouse: {password: '${PW}'}}", []string{"PW", "x"}, nil},
		{"literal auth header", "namespace_separator: __\nservers: [{name: a, url: 'http://x', headers: {Authorization: Bearer abc, X-Tenant: t}}]", nil, []string{"servers[0].headers.Authorization"}},
		{"header from env", "namespace_separator: __\nservers: [{name: a, url: 'http://x', headers: {Authorization: 'Bearer ${T}'}}]", []string{"T", "x"}, nil},
		{"star token and stray pattern", "namespace_separator: __\nservers: [{name: a, command: x}]\nauth: {tokens: [{name: t, sha256: " + hashA + ", tools: ['*', 'a__*', 'a*', 'b__x']}]}", nil, []string{"may call every tool", `"b__x" matches no server`}},
		{"stray prompt and resource patterns", "namespace_separator: __\nservers: [{name: a, command: x}]\nauth: {tokens: [{name: t, sha256: " + hashA + ", prompts: ['a__*', 'b__p'], resources: ['a:file:///x', 'b:*'], completions: ['a__p', 'a:x://{y}'], methods: ['tasks/*']}]}", nil,
			[]string{`auth.tokens[0].prompts[1] "b__p" matches no server`, `auth.tokens[0].resources[1] "b:*" matches no server`}},
		{"recorder off", "namespace_separator: __\nservers: [{name: a, command: x}]\nrecorder: {enabled: false}", nil, []string{"recorder.enabled is false"}},
		{"oauth over http", "namespace_separator: __\nlisten: 0.0.0.0:8080\nservers: [{name: a, command: x}]\nauth: {oauth: {issuer: 'http://idp.example/', resource: 'https://mcp.example/mcp', bindings: [{role: r, groups: [g]}]}, roles: [{name: r}]}", nil, []string{"auth.oauth.issuer http://idp.example/ is plain http"}},
		{"stray role pattern", "namespace_separator: __\nservers: [{name: a, command: x}]\nauth: {oauth: {issuer: 'https://i/', resource: 'https://r/', bindings: [{role: r, groups: [g]}]}, roles: [{name: r, tools: ['a__*', 'b__x'], resources: ['a:*']}]}", nil, []string{`auth.roles[0].tools[1] "b__x" matches no server`}},
		{"oauth on loopback http", "namespace_separator: __\nlisten: 0.0.0.0:8080\nservers: [{name: a, command: x}]\nauth: {oauth: {issuer: 'http://127.0.0.1:4444/', resource: 'https://mcp.example/mcp'}}", nil, []string{"auth.oauth has no bindings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseEnv([]byte(tt.yaml), "m.yaml", envOf(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings() = %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("Warnings()[%d] = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "mcptrail.yaml")
	data := []byte(minimal)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if cfg.Path != p || cfg.Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("Path, Hash = %q, %q", cfg.Path, cfg.Hash)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v, want an error naming the file", err)
	}
}

func TestHashIsOfUnexpandedBytes(t *testing.T) {
	t.Parallel()
	data := []byte("servers: [{name: a, command: x, env: {K: '${S}'}}]")
	a, err := ParseEnv(data, "", envOf("S", "one"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseEnv(data, "", envOf("S", "two"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash != b.Hash || a.Servers[0].Env["K"] == b.Servers[0].Env["K"] {
		t.Errorf("hash must identify the file, not the secrets: %s vs %s", a.Hash, b.Hash)
	}
}

var exampleEnv = envOf(
	"HOSTNAME", "gw-example",
	"CRM_API_TOKEN", "crm-secret",
	"ADMIN_TOKEN_SHA256", hashB,
	"CLICKHOUSE_PASSWORD", "ch-secret",
)

// TestExampleGolden parses deploy/mcptrail.example.yaml and compares the
// result, re-encoded as YAML, with testdata/example.golden.yaml.
// Regenerate with: go test ./proxy/config -run TestExampleGolden -update
func TestExampleGolden(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../deploy/mcptrail.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseEnv(data, "mcptrail.example.yaml", exampleEnv)
	if err != nil {
		t.Fatalf("the example config does not parse: %v", err)
	}
	got, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "example.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./proxy/config -run TestExampleGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("parsed example differs from %s; if intended, run: go test ./proxy/config -run TestExampleGolden -update\ngot:\n%s", golden, got)
	}
	// The re-encoded config parses back to the same values.
	back, err := ParseEnv(got, "mcptrail.example.yaml", envOf())
	if err != nil {
		t.Fatalf("re-parsing the encoded example: %v", err)
	}
	if again, _ := yaml.Marshal(back); !bytes.Equal(again, got) {
		t.Errorf("round trip changed the config:\n%s", again)
	}
	if w, want := cfg.Warnings(), []string{"auth.tokens[1] (admin) may call every tool"}; !slices.Equal(w, want) {
		t.Errorf("example warnings = %q, want %q", w, want)
	}
}

// TestExampleIsComplete checks that the example file sets every key of the
// schema, so it stays the complete reference.
func TestExampleIsComplete(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../deploy/mcptrail.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseEnv(data, "mcptrail.example.yaml", exampleEnv)
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for p := range cfg.present {
		present[stripIndexes(p)] = true
	}
	var missing []string
	for _, k := range schemaKeys(reflect.TypeOf(Config{}), "") {
		if !present[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("deploy/mcptrail.example.yaml lacks keys %q", missing)
	}
}

func stripIndexes(p string) string {
	var b strings.Builder
	depth := 0
	for _, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == durationType {
		return nil
	}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		k := join(prefix, name)
		keys = append(keys, k)
		keys = append(keys, schemaKeys(t.Field(i).Type, k)...)
	}
	return keys
}

// TestDemoConfig parses deploy/demo.yaml as `make run` does from the repo
// root and checks that the backends it starts exist.
func TestDemoConfig(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../deploy/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseEnv(data, "demo.yaml", envOf())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cfg.Servers {
		names = append(names, s.Name+":"+s.Transport)
	}
	if want := []string{"everything:stdio", "everything_http:http", "memory:stdio"}; !slices.Equal(names, want) {
		t.Errorf("demo servers = %q, want %q", names, want)
	}
	if cfg.Listen != "127.0.0.1:8080" || len(cfg.Auth.Tokens) != 0 || !cfg.Recorder.IsEnabled() || !cfg.Recorder.ClickHouse.Local() {
		t.Errorf("demo config: listen %q, tokens %d, recorder %v, local %v", cfg.Listen, len(cfg.Auth.Tokens), cfg.Recorder.IsEnabled(), cfg.Recorder.ClickHouse.Local())
	}
	if got := cfg.Server("everything_http").URL; got != "http://127.0.0.1:3001/mcp" {
		t.Errorf("everything_http url = %q", got)
	}
	if got := cfg.Server("memory").Env["MEMORY_FILE_PATH"]; got != "/tmp/mcptrail-demo-memory.jsonl" {
		t.Errorf("memory file = %q", got)
	}
	for _, s := range cfg.Servers {
		if s.Transport != "stdio" {
			continue
		}
		if _, err := os.Stat(filepath.Join("../..", s.Args[0])); err != nil {
			t.Errorf("server %s: entry point missing (run npm ci in testdata/npm): %v", s.Name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("servers: [{name: a, url: 'http://x', headers: {A: '${X:-y}'}}]\nrecorder: {retention: {hops: 3d}}"))
	f.Add([]byte("a: &x [*x]"))
	f.Add([]byte("servers: [{<<: [*a, *b]}]"))
	if data, err := os.ReadFile("../../deploy/mcptrail.example.yaml"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseEnv(data, "f.yaml", exampleEnv)
		if err != nil {
			return
		}
		// The schema walk must be at least as strict as yaml's KnownFields.
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		var strict Config
		if serr := dec.Decode(&strict); serr != nil && strings.Contains(serr.Error(), "not found in type") {
			t.Errorf("KnownFields rejects %q (%v) but Parse accepted it", data, serr)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Parse accepted a config that Validate rejects: %v", err)
		}
		_ = cfg.Warnings()
	})
}

func TestValidateLimitsOriginsAdmin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, want string // want "" means valid
	}{
		{"defaults", minimal, ""},
		{"origins", minimal + `allowed_origins: ["https://a.example", "http://localhost:6274", "*"]`, ""},
		{"origin with path", minimal + `allowed_origins: ["https://a.example/x"]`, "allowed_origins[0]"},
		{"origin without scheme", minimal + `allowed_origins: ["a.example"]`, "allowed_origins[0]"},
		{"negative timeout", minimal + "limits: {body_read_timeout: -1s}", "limits.body_read_timeout"},
		{"negative sessions", minimal + "limits: {max_sessions: -1}", "limits.max_sessions"},
		{"per principal over global", minimal + "limits: {max_sessions: 10, max_sessions_per_principal: 20}", "limits.max_sessions_per_principal"},
		{"admin listen", minimal + "admin: {listen: 127.0.0.1:9}", ""},
		{"admin listen same as listen", minimal + "listen: 127.0.0.1:9\nadmin: {listen: 127.0.0.1:9}", "admin.listen"},
		{"admin listen bad", minimal + "admin: {listen: nope}", "admin.listen"},
		{"admin token bad", minimal + "admin: {token_sha256: abc}", "admin.token_sha256"},
		{"admin token", minimal + "admin: {token_sha256: " + hashA + "}", ""},
		{"admin trace_url", minimal + "admin: {trace_url: \"http://jaeger:16686/trace/{trace_id}\"}", ""},
		{"admin trace_url without placeholder", minimal + "admin: {trace_url: \"http://jaeger:16686/trace/\"}", "admin.trace_url"},
		{"admin trace_url not http", minimal + "admin: {trace_url: \"javascript:alert(1)//{trace_id}\"}", "admin.trace_url"},
		{"env_passthrough", "servers: [{name: s, command: x, env_passthrough: [A, LC_*]}]", ""},
		{"env_passthrough bad", "servers: [{name: s, command: x, env_passthrough: [\"A-B\"]}]", "servers[0].env_passthrough[0]"},
		{"env_passthrough on http", "servers: [{name: s, url: 'http://x/mcp', env_passthrough: [A]}]", "servers[0].command"},
	}
	for _, tt := range tests {
		_, err := ParseEnv([]byte(tt.doc), "m.yaml", envOf())
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Parse = %v, want no error", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), " "+tt.want+":")):
			t.Errorf("%s: Parse = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

func TestValidateOAuth(t *testing.T) {
	t.Parallel()
	const oa = "auth:\n  oauth:\n    issuer: https://idp.example/\n    resource: https://mcp.example/mcp\n"
	const roles = "  roles:\n    - {name: r, tools: [\"a.*\"]}\n"
	tests := []struct {
		name, doc, want string // want "" means valid
	}{
		{"oauth", minimal + oa, ""},
		{"oauth with roles", minimal + oa + "    bindings: [{role: r, groups: [g]}]\n" + roles, ""},
		{"no issuer", minimal + "auth:\n  oauth:\n    resource: https://mcp.example/mcp\n", "auth.oauth.issuer"},
		{"no resource", minimal + "auth:\n  oauth:\n    issuer: https://idp.example/\n", "auth.oauth.resource"},
		{"relative resource", minimal + "auth:\n  oauth:\n    issuer: https://idp.example/\n    resource: /mcp\n", "auth.oauth.resource"},
		{"skew too big", minimal + oa + "    clock_skew: 1h\n", "auth.oauth.clock_skew"},
		{"alg none", minimal + oa + "    algorithms: [RS256, none]\n", "auth.oauth.algorithms[1]"},
		{"alg hs256", minimal + oa + "    algorithms: [HS256]\n", "auth.oauth.algorithms[0]"},
		{"binding to no role", minimal + oa + "    bindings: [{role: x, groups: [g]}]\n" + roles, "auth.oauth.bindings[0].role"},
		{"binding matching nothing", minimal + oa + "    bindings: [{role: r}]\n" + roles, "auth.oauth.bindings[0]"},
		{"role bad pattern", minimal + oa + "  roles:\n    - {name: r, tools: [\"a*b\"]}\n", "auth.roles[0].tools[0]"},
		{"role duplicate", minimal + oa + "  roles:\n    - {name: r}\n    - {name: r}\n", "auth.roles[1].name"},
		{"roles without oauth", minimal + "auth:\n" + roles, "auth.roles"},
		{"header_files", "servers: [{name: s, url: 'http://x/mcp', header_files: {Authorization: /run/secrets/x}}]", ""},
		{"header_files on stdio", "servers: [{name: s, command: x, header_files: {Authorization: /x}}]", "servers[0].header_files"},
		{"header_files twice", "servers: [{name: s, url: 'http://x/mcp', headers: {A: b}, header_files: {A: /x}}]", "servers[0].header_files.A"},
	}
	for _, tt := range tests {
		_, err := ParseEnv([]byte(tt.doc), "m.yaml", envOf())
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Parse = %v, want no error", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), " "+tt.want+":")):
			t.Errorf("%s: Parse = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

func TestPinningFor(t *testing.T) {
	cfg, err := ParseEnv([]byte("pinning: {on_change: hide}\nservers: [{name: a, command: x, pinning: deny, tools: {t: {pinning: warn}}}, {name: b, command: x}]\n"), "mcptrail.yaml", envOf())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ server, tool, want string }{
		{"a", "t", "warn"}, {"a", "u", "deny"}, {"b", "t", "hide"}, {"nosuch", "t", "hide"},
	} {
		if got := cfg.PinningFor(tt.server, tt.tool); got != tt.want {
			t.Errorf("PinningFor(%s, %s) = %s, want %s", tt.server, tt.tool, got, tt.want)
		}
	}
	if got := (&Config{}).PinningFor("a", "t"); got != DefaultPinningOnChange || DefaultPinningOnChange != PinningWarn {
		t.Errorf("default PinningFor = %s, want warn", got)
	}
}
