package clickhouse

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal"
)

// TestLazyConnectsWhenClickHouseComesUp: writes fail (retryably) while
// nothing listens at the address; once a server answers there the next
// write connects, migrates and stores the batch.
func TestLazyConnectsWhenClickHouseComesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := DefaultConfig()
	cfg.Addr = []string{"127.0.0.1:" + strconv.Itoa(port)}
	cfg.Database = "lazy_test"
	cfg.DialTimeout = 2 * time.Second
	l, err := NewLazy(cfg, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	evs := fixture(time.Now().UTC().Add(-time.Minute))
	err = l.WriteBatch(ctx, "lazy-1", evs)
	if err == nil || recorder.IsPermanent(err) {
		t.Fatalf("WriteBatch with nothing listening = %v, want a retryable error", err)
	}
	if ok, cerr := l.Connected(); ok || cerr == nil {
		t.Fatalf("Connected = %v, %v; want false with the error", ok, cerr)
	}
	srv, err := chlocal.Start(ctx, chlocal.Options{Dir: t.TempDir(), TCPPort: port})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		l.Close() // before the server, which waits for its clients
		srv.Stop(ctx)
	}()
	if err := l.WriteBatch(ctx, "lazy-1", evs); err != nil {
		t.Fatalf("WriteBatch once ClickHouse is up: %v", err)
	}
	if ok, cerr := l.Connected(); !ok || cerr != nil {
		t.Errorf("Connected = %v, %v after a write", ok, cerr)
	}
	s, err := l.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count() FROM lazy_test.hops"); n != uint64(len(evs)) {
		t.Errorf("%d hops stored, want %d", n, len(evs))
	}
}

// TestLazyConnectedAnswersDuringAConnect: /readyz and /statusz ask
// Connected; it must not wait for a connection attempt that hangs.
func TestLazyConnectedAnswersDuringAConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Addr = []string{ln.Addr().String()}
	cfg.DialTimeout = time.Minute // the attempt ends only when the test closes the connection
	l, err := NewLazy(cfg, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	attempt := make(chan error, 1)
	go func() { _, err := l.Store(ctx); attempt <- err }()
	c, err := ln.Accept() // the attempt is now waiting for a handshake
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan bool, 1)
	go func() { ok, _ := l.Connected(); answered <- ok }()
	select {
	case ok := <-answered:
		if ok {
			t.Error("Connected = true during a hanging attempt")
		}
	case err := <-attempt:
		t.Fatalf("the attempt ended (%v) before Connected answered", err)
	case <-time.After(20 * time.Second):
		c.Close()
		t.Fatal("Connected blocked behind the connection attempt")
	}
	c.Close()
	cancel()
	if err := <-attempt; err == nil {
		t.Error("a connection to a silent peer succeeded")
	}
}
