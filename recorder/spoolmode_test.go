package recorder_test

import (
	"os"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/recordertest"
)

// TestSpoolIsPrivate: the spool holds recorded calls (principals,
// arguments, results) until the store has them; its directory and segments
// are for the gateway's user only, like the quarantine.
func TestSpoolIsPrivate(t *testing.T) {
	mem := recordertest.NewMemoryWriter()
	mem.FailNext(1<<30, nil) // keep everything on disk
	cfg := testConfig(t)
	p := start(t, cfg, mem)
	record(t, p, 0, 10)
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Spooled < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v, want 10 spooled", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	files := spoolFiles(t, cfg.Dir, "*")
	if len(files) == 0 {
		t.Fatal("no spool files")
	}
	for _, path := range append(files, cfg.Dir) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group or others", path, perm)
		}
	}
}
