package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// Lazy is the recorder pipeline's Writer when ClickHouse may be down: it
// connects (and, when asked, migrates) on first use and again after a
// failed attempt, so that the gateway starts and serves while ClickHouse is
// unreachable, its events wait in the spool, and they are written once
// ClickHouse is back. Connection errors are returned as retryable errors;
// the pipeline retries them with backoff. It is safe for concurrent use.
type Lazy struct {
	cfg     Config
	migrate bool
	log     *slog.Logger

	// connMu serialises connection attempts (which may take DialTimeout);
	// mu guards the fields below and is never held across I/O, so that
	// Connected (/readyz, /statusz) answers at once.
	connMu    sync.Mutex
	mu        sync.Mutex
	store     *Store
	lastErr   error
	connected time.Time
}

var _ recorder.Writer = (*Lazy)(nil)

// NewLazy returns a Lazy that has not connected yet. It validates cfg.
func NewLazy(cfg Config, migrate bool, logger *slog.Logger) (*Lazy, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring ClickHouse store: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Lazy{cfg: cfg, migrate: migrate, log: logger.With("component", "recorder.clickhouse")}, nil
}

// Store returns the connected (and migrated) store, connecting first when
// needed. While ClickHouse is unreachable it returns the connection error.
func (l *Lazy) Store(ctx context.Context) (*Store, error) {
	if s := l.current(); s != nil {
		return s, nil
	}
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if s := l.current(); s != nil {
		return s, nil
	}
	s, err := Open(ctx, l.cfg, l.log)
	if err == nil && l.migrate {
		if err = s.Migrate(ctx); err != nil {
			s.Close()
			err = fmt.Errorf("migrating ClickHouse schema at %v: %w", l.cfg.Addr, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.lastErr = err
		return nil, err
	}
	l.store, l.lastErr, l.connected = s, nil, time.Now()
	return s, nil
}

func (l *Lazy) current() *Store {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.store
}

// WriteBatch implements recorder.Writer: it connects when needed, then
// writes through the Store.
func (l *Lazy) WriteBatch(ctx context.Context, token string, evs []recorder.Event) error {
	s, err := l.Store(ctx)
	if err != nil {
		return err
	}
	return s.WriteBatch(ctx, token, evs)
}

var _ recorder.StreamWriter = (*Lazy)(nil)

// WriteChunks implements recorder.StreamWriter like WriteBatch.
func (l *Lazy) WriteChunks(ctx context.Context, token string, chunks recorder.Chunks) error {
	s, err := l.Store(ctx)
	if err != nil {
		return err
	}
	return s.WriteChunks(ctx, token, chunks)
}

// Connected reports whether a connection was made, and the last connection
// error otherwise.
func (l *Lazy) Connected() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.store != nil, l.lastErr
}

// Addr is the configured address list, for messages.
func (l *Lazy) Addr() []string { return l.cfg.Addr }

// Close closes the connection, if one was made.
func (l *Lazy) Close() error {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	l.mu.Lock()
	s := l.store
	l.store = nil
	l.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Close()
}
