package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/recorder"
)

// TestClassify: which server answers are permanent.
func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"network", errors.New("dial tcp: connection refused"), false},
		{"type mismatch", &clickhouse.Exception{Code: 53, Message: "Type mismatch"}, true},
		{"throwIf in a view", &clickhouse.Exception{Code: 395, Message: "Value passed to 'throwIf' function is non zero"}, true},
		{"too many parts (merges behind)", &clickhouse.Exception{Code: 252, Message: "Too many parts (300). Merges are processing significantly slower than inserts."}, false},
		{"too many partitions in one insert", &clickhouse.Exception{Code: 252, Message: "Too many partitions for single INSERT block (more than 100)."}, true},
		{"unknown table", &clickhouse.Exception{Code: 60, Message: "Table mcptrail.hops doesn't exist."}, false},
		{"memory", &clickhouse.Exception{Code: 241, Message: "Memory limit exceeded"}, false},
	}
	for _, tt := range tests {
		got := recorder.IsPermanent(classify(fmt.Errorf("inserting: %w", tt.err)))
		if got != tt.want {
			t.Errorf("classify(%s) permanent = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func poisonEvents(prefix string, n int) []*recorder.Event {
	out := make([]*recorder.Event, n)
	for i := range out {
		out[i] = &recorder.Event{
			RequestID: fmt.Sprintf("%s-%03d", prefix, i), Hop: recorder.HopResponse, Method: "tools/call",
			TimeNs: time.Now().UnixNano(),
		}
	}
	return out
}

// TestRejectedBatchIsQuarantined: a batch the server always rejects used to
// be retried forever, blocking every later batch. The store marks the
// rejection permanent; the pipeline quarantines that batch and writes the
// next ones; requeued once the cause is gone, it is written.
//
// The server's rule: a materialized view on hops that throws on a poisoned
// request id, as a CHECK constraint does on servers that have them.
func TestRejectedBatchIsQuarantined(t *testing.T) {
	s := migratedStore(t)
	ctx := context.Background()
	view := s.cfg.Database + ".poison_rule"
	if err := s.conn.Exec(ctx, "CREATE MATERIALIZED VIEW "+view+" ENGINE = Memory AS SELECT throwIf(request_id LIKE 'bad-%') AS x FROM "+s.table("hops")); err != nil {
		t.Fatalf("creating the rule: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "spool")
	p, err := recorder.NewPipeline(recorder.Config{Dir: dir, BatchSize: 10, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, e := range poisonEvents("bad", 10) {
		if err := p.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush with a rejected batch: %v (stats %+v)", err, p.Stats())
	}
	for _, e := range poisonEvents("good", 5) {
		if err := p.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush after a rejected batch: %v (stats %+v)", err, p.Stats())
	}
	st := p.Stats()
	if st.Quarantined != 10 || st.Written != 5 || st.QuarantineFiles != 1 {
		t.Fatalf("Stats = %+v, want 10 quarantined in one file and 5 written", st)
	}
	if n := count(t, s, "SELECT count() FROM "+s.table("hops")+" WHERE request_id LIKE 'good-%'"); n != 5 {
		t.Errorf("later batch: %d hops in ClickHouse, want 5", n)
	}

	// The cause is gone; requeue while the pipeline runs.
	if err := s.conn.Exec(ctx, "DROP TABLE "+view); err != nil {
		t.Fatal(err)
	}
	if n, err := recorder.Requeue(dir); n != 1 || err != nil {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(t, s, "SELECT count() FROM "+s.table("hops")+" FINAL WHERE request_id LIKE 'bad-%'") != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("requeued batch not written (stats %+v)", p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
