package cli_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/replay/cli"
	"github.com/mcptrail/mcptrail/replay/internal/recordtest"
)

// TestReplayThroughClickHouse stores a recording in a real ClickHouse, then
// selects it by session, replays it upstream against a regressed backend and
// checks the run and its results landed in the replay tables.
func TestReplayThroughClickHouse(t *testing.T) {
	srv, db, store := migratedStore(t)
	ctx := context.Background()
	events := recordtest.RecordTestbackend(t)
	for i := range events {
		events[i].EventID = ulid.Make().String()
	}
	if err := store.WriteBatch(ctx, "replay-test-1", events); err != nil {
		t.Fatal(err)
	}

	_, v2 := recordtest.StartBackend(t, "v2")
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Logger: slog.New(slog.DiscardHandler), Version: "test"}
	root := &cobra.Command{Use: "mcptrail", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands(env)...)
	root.SetArgs([]string{"replay", "upstream", "--clickhouse", srv.Addr(), "--database", db, "--session", events[0].SessionID,
		"--target", "backend=" + v2, "--ignore-path", "backend.now:/content/0/text"})
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := root.ExecuteContext(rctx)
	var re *cli.RegressionError
	if !errors.As(err, &re) || re.Count != 1 {
		t.Fatalf("err = %v, want 1 regression\n%s\n%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "backend.add") {
		t.Errorf("report does not name backend.add:\n%s", out.String())
	}

	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var runs, changed uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".replay_runs WHERE mode = 'upstream' AND changed = 1").Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".replay_results WHERE status = 'changed' AND tool = 'backend.add'").Scan(&changed); err != nil {
		t.Fatal(err)
	}
	if runs != 1 || changed != 1 {
		t.Errorf("stored %d runs with one change and %d changed add results, want 1 and 1", runs, changed)
	}
}
