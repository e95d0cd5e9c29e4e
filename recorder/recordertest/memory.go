// Package recordertest provides fakes of recorder.Writer for tests of the
// recorder and of the packages that use it.
package recordertest

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/mcptrail/mcptrail/recorder"
)

// ErrInjected is the error MemoryWriter returns when told to fail.
var ErrInjected = errors.New("recordertest: injected write failure")

// Batch is one confirmed WriteBatch call.
type Batch struct {
	Token  string
	Events []recorder.Event
}

// MemoryWriter is an in-memory recorder.Writer. It keeps every confirmed
// batch, deduplicates by token like a real idempotent store, and can be told
// to fail. It is safe for concurrent use.
type MemoryWriter struct {
	mu       sync.Mutex
	batches  []Batch
	tokens   map[string]bool
	failNext int // >0: fail that many calls; <0: fail until told otherwise
	failErr  error
	calls    int
	dups     int
	failures int
	notify   chan struct{}
}

var _ recorder.Writer = (*MemoryWriter)(nil)

// NewMemoryWriter returns an empty MemoryWriter that accepts every batch.
func NewMemoryWriter() *MemoryWriter {
	return &MemoryWriter{tokens: map[string]bool{}, notify: make(chan struct{})}
}

// FailNext makes the next n calls fail with err (ErrInjected if nil);
// n < 0 fails every call until FailNext(0, nil).
func (m *MemoryWriter) FailNext(n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	m.mu.Lock()
	m.failNext, m.failErr = n, err
	m.mu.Unlock()
}

// WriteBatch implements recorder.Writer. A token already confirmed is
// acknowledged again without storing its events twice.
func (m *MemoryWriter) WriteBatch(ctx context.Context, token string, events []recorder.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	defer m.wake()
	if m.failNext != 0 {
		if m.failNext > 0 {
			m.failNext--
		}
		m.failures++
		return m.failErr
	}
	if m.tokens[token] {
		m.dups++
		return nil
	}
	m.tokens[token] = true
	kept := make([]recorder.Event, len(events))
	for i := range events {
		kept[i] = events[i].Clone() // events point into the spool's reused memory
	}
	m.batches = append(m.batches, Batch{Token: token, Events: kept})
	return nil
}

// written reports whether a batch with token was confirmed.
func (m *MemoryWriter) written(token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens[token]
}

func (m *MemoryWriter) wake() {
	close(m.notify)
	m.notify = make(chan struct{})
}

// WaitCalls blocks until at least n WriteBatch calls were made or ctx is done.
func (m *MemoryWriter) WaitCalls(ctx context.Context, n int) error {
	for {
		m.mu.Lock()
		calls, ch := m.calls, m.notify
		m.mu.Unlock()
		if calls >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Batches returns the confirmed batches in order.
func (m *MemoryWriter) Batches() []Batch {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.batches)
}

// Events returns the events of all confirmed batches in order.
func (m *MemoryWriter) Events() []recorder.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []recorder.Event
	for _, b := range m.batches {
		out = append(out, b.Events...)
	}
	return out
}

// Calls is the number of WriteBatch calls, failed ones included.
func (m *MemoryWriter) Calls() int { m.mu.Lock(); defer m.mu.Unlock(); return m.calls }

// Failures is the number of calls that failed on purpose.
func (m *MemoryWriter) Failures() int { m.mu.Lock(); defer m.mu.Unlock(); return m.failures }

// Duplicates is the number of calls whose token was already confirmed.
func (m *MemoryWriter) Duplicates() int { m.mu.Lock(); defer m.mu.Unlock(); return m.dups }
