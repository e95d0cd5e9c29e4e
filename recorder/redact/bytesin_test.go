package redact

import (
	"strings"
	"testing"
)

// bytesInSlow is the definition bytesIn implements.
func bytesInSlow(s string) byteSet {
	var set byteSet
	for i := 0; i < len(s); i++ {
		c := s[i]
		set[c>>6] |= 1 << (c & 63)
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
			set[c>>6] |= 1 << (c & 63)
		}
	}
	return set
}

func TestBytesIn(t *testing.T) {
	var all strings.Builder
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	for _, s := range []string{"", "a", "A", "Z", "@[`{", "AZaz", "Bearer ABC", "x=Y;", all.String(), all.String()[1:], "\xff\x80\x00"} {
		if got, want := bytesIn(s), bytesInSlow(s); got != want {
			t.Errorf("bytesIn(%q) = %x, want %x", s, got, want)
		}
	}
}

func FuzzBytesIn(f *testing.F) {
	f.Add("Authorization: Bearer abc")
	f.Add("\x00\xffAZ[`az{")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := bytesIn(s), bytesInSlow(s); got != want {
			t.Fatalf("bytesIn(%q) = %x, want %x", s, got, want)
		}
	})
}

func BenchmarkBytesIn(b *testing.B) {
	s := "Echo: m12345 " + strings.Repeat("pQ", 100)
	for _, tc := range []struct {
		name string
		f    func(string) byteSet
	}{{"per-byte", bytesInSlow}, {"bytesIn", bytesIn}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			var set byteSet
			for b.Loop() {
				set = tc.f(s)
			}
			if !set.has('q') {
				b.Fatal("lower case of Q missing")
			}
		})
	}
}
