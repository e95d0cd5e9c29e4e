package clickhouse

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// likeMatch is a reference implementation of ClickHouse LIKE with backslash
// escapes: % any run, _ one character.
func likeMatch(p, s []rune) bool {
	if len(p) == 0 {
		return len(s) == 0
	}
	switch p[0] {
	case '%':
		for i := 0; i <= len(s); i++ {
			if likeMatch(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '_':
		return len(s) > 0 && likeMatch(p[1:], s[1:])
	case '\\':
		if len(p) > 1 {
			return len(s) > 0 && s[0] == p[1] && likeMatch(p[2:], s[1:])
		}
	}
	return len(s) > 0 && s[0] == p[0] && likeMatch(p[1:], s[1:])
}

// globMatch is the documented glob: * any run, ? one character.
func globMatch(g, s []rune) bool {
	if len(g) == 0 {
		return len(s) == 0
	}
	switch g[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if globMatch(g[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return len(s) > 0 && globMatch(g[1:], s[1:])
	}
	return len(s) > 0 && s[0] == g[0] && globMatch(g[1:], s[1:])
}

var globTests = []struct {
	glob, like string
	match      []string
	noMatch    []string
}{
	{"crm.*", `crm.%`, []string{"crm.", "crm.search"}, []string{"crm", "xcrm.search"}},
	{"crm.ge?", `crm.ge_`, []string{"crm.get"}, []string{"crm.ge", "crm.gets"}},
	{"a_b%c", `a\_b\%c`, []string{"a_b%c"}, []string{"axbyc", "a_bxc"}},
	{`back\slash`, `back\\slash`, []string{`back\slash`}, []string{"backslash"}},
	{"*", "%", []string{"", "anything"}, nil},
	{"", "", []string{""}, []string{"x"}},
}

func TestGlobToLike(t *testing.T) {
	for _, tt := range globTests {
		if got := globToLike(tt.glob); got != tt.like {
			t.Errorf("globToLike(%q) = %q, want %q", tt.glob, got, tt.like)
		}
		for _, s := range tt.match {
			if !likeMatch([]rune(globToLike(tt.glob)), []rune(s)) {
				t.Errorf("LIKE %q does not match %q", globToLike(tt.glob), s)
			}
		}
		for _, s := range tt.noMatch {
			if likeMatch([]rune(globToLike(tt.glob)), []rune(s)) {
				t.Errorf("LIKE %q matches %q", globToLike(tt.glob), s)
			}
		}
	}
}

// FuzzGlobToLike checks that the LIKE pattern matches exactly what the glob
// matches.
func FuzzGlobToLike(f *testing.F) {
	for _, tt := range globTests {
		for _, s := range append(tt.match, tt.noMatch...) {
			f.Add(tt.glob, s)
		}
	}
	f.Fuzz(func(t *testing.T, glob, s string) {
		if !utf8.ValidString(glob) || !utf8.ValidString(s) || len(glob) > 12 || len(s) > 24 {
			return // the recursive reference matchers are exponential
		}
		like := globToLike(glob)
		if g, l := globMatch([]rune(glob), []rune(s)), likeMatch([]rune(like), []rune(s)); g != l {
			t.Fatalf("glob %q matches %q = %v, but LIKE %q = %v", glob, s, g, like, l)
		}
	})
}

func TestPartitionExpired(t *testing.T) {
	cutoff := time.Date(2026, 10, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		part    string
		monthly bool
		want    bool
	}{
		{"20261024", false, true},
		{"20261025", false, false}, // ends 10-26, after the cutoff
		{"20261026", false, false},
		{"202609", true, true},
		{"202610", true, false},
		{"garbage", false, false},
		{"2026102", false, false},
		{"20261024", true, false}, // wrong shape for monthly: kept
	}
	for _, tt := range tests {
		if got := partitionExpired(tt.part, tt.monthly, cutoff); got != tt.want {
			t.Errorf("partitionExpired(%q, monthly=%v) = %v, want %v", tt.part, tt.monthly, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Addr = []string{"h:9000"}
	tests := []struct {
		name   string
		mutate func(*Config)
		errHas string
	}{
		{"ok", func(*Config) {}, ""},
		{"no addr", func(c *Config) { c.Addr = nil }, "recorder.clickhouse.addr"},
		{"bad db", func(c *Config) { c.Database = "x; DROP" }, "recorder.clickhouse.database"},
		{"bad cluster", func(c *Config) { c.Cluster = "a'b" }, "recorder.clickhouse.cluster"},
		{"negative retention", func(c *Config) { c.Retention.Payloads = -time.Hour }, "retention.payloads"},
	}
	for _, tt := range tests {
		c := ok
		tt.mutate(&c)
		err := c.Validate()
		if tt.errHas == "" {
			if err != nil {
				t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: Validate() = %v, want error naming %s", tt.name, err, tt.errHas)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		v            string
		major, minor int
		want         bool
	}{
		{"18.16.1", 20, 1, false}, {"20.1.2.4", 20, 1, true}, {"25.8.1", 20, 1, true}, {"19.17", 20, 1, false}, {"x", 1, 0, false},
	}
	for _, tt := range tests {
		if got := versionAtLeast(tt.v, tt.major, tt.minor); got != tt.want {
			t.Errorf("versionAtLeast(%q, %d, %d) = %v, want %v", tt.v, tt.major, tt.minor, got, tt.want)
		}
	}
}

func TestTTLChange(t *testing.T) {
	const day = 24 * time.Hour
	withTTL := "ReplacingMergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (request_id, event_id) TTL toDateTime(ts) + toIntervalDay(30) SETTINGS index_granularity = 8192"
	noTTL := "ReplacingMergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (request_id, event_id) SETTINGS index_granularity = 8192"
	tests := []struct {
		name   string
		engine string
		keep   time.Duration
		want   string
	}{
		{"unchanged", withTTL, 30 * day, ""},
		{"longer", withTTL, 60 * day, "MODIFY TTL toDateTime(ts) + INTERVAL 60 DAY"},
		{"prefix is not a match", withTTL, 3 * day, "MODIFY TTL toDateTime(ts) + INTERVAL 3 DAY"},
		{"forever", withTTL, 0, "REMOVE TTL"},
		{"forever already", noTTL, 0, ""},
		{"newly limited", noTTL, 7 * day, "MODIFY TTL toDateTime(ts) + INTERVAL 7 DAY"},
		{"seconds", noTTL, 90 * time.Minute, "MODIFY TTL toDateTime(ts) + INTERVAL 5400 SECOND"},
	}
	for _, tt := range tests {
		if got := ttlChange(tt.engine, tt.keep); got != tt.want {
			t.Errorf("%s: ttlChange(..., %s) = %q, want %q", tt.name, tt.keep, got, tt.want)
		}
	}
}
