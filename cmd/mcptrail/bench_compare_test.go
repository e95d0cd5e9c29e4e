package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBenchCompareTiny runs `mcptrail bench --compare` for one round of a
// second per cell (it starts its own backend, gateways and local
// ClickHouse, in a --work-dir it creates) and checks the table's shape and that every figure it
// measured is non-zero. It asserts no speed.
func TestBenchCompareTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, benchBin(t), "bench", "--compare", "--rounds", "1", "-d", "1s", "-c", "1,8", "--work-dir", filepath.Join(t.TempDir(), "new"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench --compare: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 5 {
		t.Fatalf("bench --compare printed %d lines, want a header, a rule and 3 rows:\n%s", len(lines), out)
	}
	wantHeader := "| | c=1 calls/s (vs direct) | c=8 calls/s (vs direct) | c=1 added p50 | gateway CPU/call c=1 | gateway CPU/call c=8 | ClickHouse CPU/call | gateway peak RSS |"
	if lines[0] != wantHeader {
		t.Errorf("header = %q, want %q", lines[0], wantHeader)
	}
	num := `[1-9][0-9,]*`
	dur := `[0-9.]*[1-9][0-9.]*(µs|ms|s)`
	ratio := `\([0-9]+\.[0-9]{2}×\)`
	rows := []struct{ name, re string }{
		{"direct", `^\| direct \| ` + num + ` \| ` + num + ` \| — \| — \| — \| — \| — \|$`},
		{"recording off", `^\| mcptrail, recording off \| ` + num + ` ` + ratio + ` \| ` + num + ` ` + ratio + ` \| [+-]?` + `[0-9.]+(µs|ms|s)` +
			` \| ` + dur + ` \| ` + dur + ` \| — \| [1-9][0-9]* MB \|$`},
		{"recording on", `^\| mcptrail, recording on \| ` + num + ` ` + ratio + ` \| ` + num + ` ` + ratio + ` \| [+-]?` + `[0-9.]+(µs|ms|s)` +
			` \| ` + dur + ` \| ` + dur + ` \| ` + dur + ` \| [1-9][0-9]* MB \|$`},
	}
	for i, r := range rows {
		if !regexp.MustCompile(r.re).MatchString(lines[2+i]) {
			t.Errorf("%s row = %q, want it to match %s", r.name, lines[2+i], r.re)
		}
	}
	if strings.Contains(string(out), "errors (") {
		t.Errorf("calls failed:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^the binary's own pages in the gateway's RSS at the end \(RssFile, part of the peak\): [1-9][0-9]* MB off, [1-9][0-9]* MB on$`).Match(out) {
		t.Errorf("no RssFile line:\n%s", out)
	}
	if !regexp.MustCompile(`; [1-9][0-9]* calls recorded`).Match(out) {
		t.Errorf("no recorded calls counted:\n%s", out)
	}
}
