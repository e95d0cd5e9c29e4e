package recorder

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkWriteSegment is the writer's side of the spool: read a sealed
// segment of 20,000 events (two chunks of 10,000) and hand it to a Writer
// that counts, chunk by chunk. It reports the bytes allocated per event.
func BenchmarkWriteSegment(b *testing.B) {
	const n, bs = 20000, 10000
	dir := filepath.Join(b.TempDir(), "spool")
	w := &countingWriter{}
	p, err := NewPipeline(Config{Dir: dir, BatchSize: bs}, w, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	data := segmentHeader(bs)
	payload := strings.Repeat("p", 200)
	for i := range n {
		ev := fullEvent()
		ev.EventID, ev.Attrs = "01JEVENT"+strconv.Itoa(i), nil
		ev.Params = []byte(`{"name":"echo","arguments":{"message":"m` + strconv.Itoa(i) + payload + `"}}`)
		ev.Result = []byte(`{"content":[{"type":"text","text":"m` + strconv.Itoa(i) + payload + `"}]}`)
		data = AppendRecord(data, &ev)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		id := "seg" + strconv.Itoa(i)
		i++
		if err := os.WriteFile(p.path(id, extSealed), data, 0o600); err != nil {
			b.Fatal(err)
		}
		p.spoolSegments.Add(1)
		p.replayPending.Add(1)
		b.StartTimer()
		if err := p.writeSegment(context.Background(), &segment{id: id, size: int64(len(data))}); err != nil {
			b.Fatal(err)
		}
	}
	if got := w.n.Load(); got != int64(i*n) {
		b.Fatalf("writer got %d events, want %d", got, i*n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*n), "ns/event")
}
