package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCapIdent(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
		cut      bool
	}{
		{"short", "abc", 8, "abc", false},
		{"exact", "abcdefgh", 8, "abcdefgh", false},
		{"long", "abcdefghij", 8, "abcdefgh…(truncated from 10 bytes)", true},
		{"cut inside a rune", "aé" + strings.Repeat("x", 10), 2, "a…(truncated from 13 bytes)", true},
		{"empty", "", 0, "", false},
	}
	for _, tt := range tests {
		got, cut := capIdent(tt.in, tt.max)
		if got != tt.want || cut != tt.cut {
			t.Errorf("%s: capIdent(%q, %d) = %q, %v; want %q, %v", tt.name, tt.in, tt.max, got, cut, tt.want, tt.cut)
		}
	}
}

func FuzzCapIdent(f *testing.F) {
	for _, s := range []string{"", "abc", "aé€😀", strings.Repeat("é", 300)} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got, cut := capIdent(s, max)
		if !cut {
			if got != s || len(s) > max {
				t.Fatalf("capIdent(%q, %d) = %q uncut", s, max, got)
			}
			return
		}
		prefix, _, ok := strings.Cut(got, "…(truncated from ")
		if !ok || len(prefix) > max || !strings.HasPrefix(s, prefix) {
			t.Fatalf("capIdent(%q, %d) = %q", s, max, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("capIdent(%q, %d) = %q splits a rune", s, max, got)
		}
	})
}
