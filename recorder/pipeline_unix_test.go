//go:build unix

package recorder_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/recordertest"
)

// TestDiskFullMidWriteCountsEachEventOnce fills the disk in the middle of a
// group write (a file size limit gives the partial write that ENOSPC
// gives): the records that reached the file are written to storage, the
// rest are dropped, and no event is counted as both. It runs in a child
// process so that the limit touches nothing else.
func TestDiskFullMidWriteCountsEachEventOnce(t *testing.T) {
	dir := os.Getenv("MCPTRAIL_TEST_FSIZE_DIR")
	if dir == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFullMidWriteCountsEachEventOnce$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MCPTRAIL_TEST_FSIZE_DIR="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child test: %v\n%s", err, out)
		}
		return
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 4096 // Go ignores SIGXFSZ: writes past it fail with EFBIG
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Dir = filepath.Join(dir, "spool")
	w := recordertest.NewMemoryWriter()
	p, err := recorder.NewPipeline(cfg, w, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200 // queued before Start: the spooler writes them as one group
	record(t, p, 0, n)
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(t.Context())
	flush(t, p)
	s := p.Stats()
	if s.Written == 0 || s.Dropped == 0 || s.Written+s.Dropped != n || uint64(len(w.Events())) != s.Written {
		t.Fatalf("Stats = %+v, %d events stored; want some written, the rest dropped, Written+Dropped = %d", s, len(w.Events()), n)
	}
	requireExactlyOnce(t, w, int(s.Written))
	if s.Spooled != s.Written {
		t.Errorf("Spooled = %d, want %d: the records that reached the file are acknowledged", s.Spooled, s.Written)
	}
}
