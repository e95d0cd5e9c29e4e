package bench

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestWriteComparison(t *testing.T) {
	c := &Comparison{
		Cells: []Cell{
			{Target: TargetDirect, Concurrency: 1, CallsPerSec: 3265, P50: 300 * time.Microsecond},
			{Target: TargetNoRecord, Concurrency: 1, CallsPerSec: 1535, P50: 640 * time.Microsecond, CPUPerCall: 180 * time.Microsecond},
			{Target: TargetRecord, Concurrency: 1, CallsPerSec: 1127, P50: 790 * time.Microsecond, CPUPerCall: 250 * time.Microsecond},
			{Target: TargetDirect, Concurrency: 64, CallsPerSec: 9573},
			{Target: TargetNoRecord, Concurrency: 64, CallsPerSec: 3427, CPUPerCall: 197 * time.Microsecond},
			{Target: TargetRecord, Concurrency: 64, CallsPerSec: 1784, CPUPerCall: 322 * time.Microsecond, Errors: 2, FirstError: "boom"},
		},
		ClickHouseCPUPerCall:    250 * time.Microsecond,
		ClickHouseIdlePerCall:   40 * time.Microsecond,
		ClickHouseSystemPerCall: 150 * time.Microsecond,
		ClickHouseStorage:       "ext4 without a journal (/dev/vda at /)",
		RecordedCalls:           1234,
		PeakRSS:                 map[string]int64{TargetNoRecord: 38 << 20, TargetRecord: 183 << 20},
		FileRSS:                 map[string]int64{TargetNoRecord: 29 << 20, TargetRecord: 30 << 20},
		Conditions:              "test conditions",
	}
	var b strings.Builder
	if err := WriteComparison(&b, c); err != nil {
		t.Fatal(err)
	}
	want := `| | c=1 calls/s (vs direct) | c=64 calls/s (vs direct) | c=1 added p50 | gateway CPU/call c=1 | gateway CPU/call c=64 | ClickHouse CPU/call | gateway peak RSS |
|---|---|---|---|---|---|---|---|
| direct | 3,265 | 9,573 | — | — | — | — | — |
| mcptrail, recording off | 1,535 (0.47×) | 3,427 (0.36×) | +340µs | 180µs | 197µs | — | 38 MB |
| mcptrail, recording on | 1,127 (0.35×) | 1,784 (0.19×) | +490µs | 250µs | 322µs | 250µs | 183 MB |

recording on vs off: throughput c=1 0.73× c=64 0.52×; gateway CPU for recording at c=64: +125µs per call
the binary's own pages in the gateway's RSS at the end (RssFile, part of the peak): 29 MB off, 30 MB on
ClickHouse CPU/call: 100µs in user space, 150µs in the kernel; 40µs of it the server spends when idle; its data is on ext4 without a journal (/dev/vda at /)
errors (mcptrail, recording on, c=64): 2, first: boom
test conditions; 1234 calls recorded
`
	if got := b.String(); got != want {
		t.Errorf("WriteComparison =\n%s\nwant\n%s", got, want)
	}
}

func TestProcCPUAndRSS(t *testing.T) {
	// Burn some CPU so that at least one clock tick is counted.
	deadline := time.Now().Add(50 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	cpu, err := ProcCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("ProcCPU(self) = %v, %v; want > 0 (loop ran %d times)", cpu, err, x)
	}
	if _, err := ProcCPU(0); err == nil {
		t.Error("ProcCPU(0) succeeded")
	}
	rss, err := ProcPeakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("ProcPeakRSS(self) = %d, %v; want over 1 MiB", rss, err)
	}
	file, err := procStatusKB(os.Getpid(), "RssFile")
	if err != nil || file <= 0 || file > rss {
		t.Errorf("RssFile of self = %d, %v; want over 0 and at most the peak %d", file, err, rss)
	}
	if _, err := procStatusKB(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("procStatusKB found NoSuchField")
	}
}

func TestParseCompareArgs(t *testing.T) {
	cfg, err := ParseCompareArgs([]string{"--rounds", "1", "-d", "1s", "-c", "1,8", "--profile-dir", "/tmp/p"}, io.Discard)
	if err != nil || cfg.Rounds != 1 || cfg.Duration != time.Second || len(cfg.Concurrency) != 2 || cfg.PayloadBytes != 200 || cfg.ProfileDir != "/tmp/p" {
		t.Errorf("ParseCompareArgs = %+v, %v", cfg, err)
	}
	for _, args := range [][]string{{"--rounds", "0"}, {"-d", "0s"}, {"-c", "0"}, {"--payload", "8"}, {"extra"}} {
		if _, err := ParseCompareArgs(args, io.Discard); err == nil {
			t.Errorf("ParseCompareArgs(%q) succeeded", args)
		}
	}
}
