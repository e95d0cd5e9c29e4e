package sse

import (
	"slices"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   []string
		lastID string
	}{
		{"two events", "id: 1\ndata: a\n\nid: 2\ndata: b\n\n", []string{"a", "b"}, "2"},
		{"multi-line and crlf", "data: x\r\ndata: y\r\n\r\n", []string{"x\ny"}, ""},
		{"comments and empty events", ": ping\n\nevent: message\n\nretry: 5\n\ndata:z\n\n", []string{"z"}, ""},
		{"unterminated last event", "data: tail", []string{"tail"}, ""},
		{"empty data line counts", "data:\n\n", []string{""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			last, err := Read(strings.NewReader(tt.in), 1<<10, func(_, d []byte) bool {
				got = append(got, string(d))
				return true
			})
			if err != nil || !slices.Equal(got, tt.want) || last != tt.lastID {
				t.Errorf("Read(%q) = %q, last id %q, %v; want %q, %q", tt.in, got, last, err, tt.want, tt.lastID)
			}
		})
	}
	if _, err := Read(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 10, func(_, _ []byte) bool { return true }); err == nil {
		t.Errorf("Read accepted an event over the limit")
	}
}

func FuzzRead(f *testing.F) {
	f.Add("id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
	f.Add("data: x\r\ndata: y\r\n\r\n")
	f.Add(": ping\n\nevent: message\n\nretry: 5\n\ndata:z\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		n := 0
		_, _ = Read(strings.NewReader(in), 1<<12, func(_, d []byte) bool {
			if len(d) > 1<<12 {
				t.Fatalf("event of %d bytes over the limit", len(d))
			}
			n++
			return true
		})
		if n > strings.Count(in, "data")+1 {
			t.Fatalf("%d events from %d data fields", n, strings.Count(in, "data"))
		}
	})
}
