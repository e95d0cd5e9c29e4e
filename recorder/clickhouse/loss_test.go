package clickhouse

import (
	"context"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// TestWriteFailsWhileServerDown pins the writer contract on a server crash:
// no nil without durability, and the retry with the same token after a
// restart stores the batch exactly once.
func TestWriteFailsWhileServerDown(t *testing.T) {
	ctx := context.Background()
	srv := chtest.StartForTest(t)
	cfg := DefaultConfig()
	cfg.Addr = []string{srv.Addr()}
	cfg.DialTimeout = 2 * time.Second
	s, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	evs := fixture(time.Now().UTC().Add(-time.Minute))

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = s.WriteBatch(wctx, "crash-1", evs)
	cancel()
	if err == nil {
		t.Fatal("WriteBatch returned nil while the server was down")
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping returned nil while the server was down")
	}

	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the pool may hand out connections that died with the server
		if err = s.WriteBatch(ctx, "crash-1", evs); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("WriteBatch after restart: %v", err)
	}
	if err := s.WriteBatch(ctx, "crash-1", evs); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count() FROM mcptrail.hops"); n != uint64(len(evs)) {
		t.Fatalf("hops rows after crash, restart and retries = %d, want %d", n, len(evs))
	}
}

func TestWriteCanceled(t *testing.T) {
	s := migratedStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WriteBatch(ctx, "c", fixture(time.Now())); err == nil {
		t.Fatal("WriteBatch with a canceled context returned nil")
	}
}

// TestImports pins the dependency direction: recorder packages import
// nothing of mcptrail outside recorder.
func TestImports(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/mcptrail/mcptrail/") && !strings.HasPrefix(p, "github.com/mcptrail/mcptrail/recorder") {
				t.Errorf("%s imports %s; recorder/clickhouse may import only recorder packages", f, p)
			}
		}
	}
}

// FuzzSplitStatements: splitting never panics, yields no empty statement,
// and is stable when its own output is joined and split again.
func FuzzSplitStatements(f *testing.F) {
	for _, m := range migrations {
		f.Add(m.text)
	}
	f.Add("CREATE A;\n" + guardPrefix + "t c\nALTER B;\n")
	f.Add("-- only a comment\n")
	f.Fuzz(func(t *testing.T, in string) {
		stmts, err := splitStatements(in)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, s := range stmts {
			if strings.TrimSpace(s.SQL) == "" && s.IfMissingColumn == "" {
				continue
			}
			if s.IfMissingColumn != "" {
				b.WriteString(guardPrefix + s.IfMissingTable + " " + s.IfMissingColumn + "\n")
			}
			b.WriteString(s.SQL + ";\n")
		}
		again, err := splitStatements(b.String())
		if err != nil {
			t.Fatalf("re-splitting %q: %v", b.String(), err)
		}
		if len(again) > len(stmts) {
			t.Fatalf("re-split grew from %d to %d statements", len(stmts), len(again))
		}
	})
}
