package recordertest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/mcptrail/mcptrail/recorder"
)

// StreamWriter is a MemoryWriter that also takes batches chunk by chunk
// (recorder.StreamWriter), as the ClickHouse store does: it goes over the
// chunks twice (once per table, there), checks that both passes give the
// same events, and then stores them as one WriteBatch would. Refuse makes
// WriteChunks fail with the given error (a recorder.Permanent one to make
// the pipeline fall back to WriteBatch).
type StreamWriter struct {
	*MemoryWriter

	mu     sync.Mutex
	chunks [][]int // chunk sizes of each WriteChunks call's first pass
	refuse error
}

var _ recorder.StreamWriter = (*StreamWriter)(nil)

// NewStreamWriter returns an empty StreamWriter that accepts every batch.
func NewStreamWriter() *StreamWriter { return &StreamWriter{MemoryWriter: NewMemoryWriter()} }

// Refuse makes every WriteChunks call fail with err (nil: none does).
func (w *StreamWriter) Refuse(err error) {
	w.mu.Lock()
	w.refuse = err
	w.mu.Unlock()
}

// WriteChunks implements recorder.StreamWriter.
func (w *StreamWriter) WriteChunks(ctx context.Context, token string, chunks recorder.Chunks) error {
	w.mu.Lock()
	refuse := w.refuse
	w.mu.Unlock()
	if refuse != nil {
		return refuse
	}
	if w.written(token) {
		// Like the ClickHouse store: a written batch is not read again.
		return w.WriteBatch(ctx, token, nil)
	}
	var (
		first, second []recorder.Event
		sizes         []int
	)
	err := chunks(func(evs []recorder.Event) error {
		sizes = append(sizes, len(evs))
		for i := range evs {
			first = append(first, evs[i].Clone())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := chunks(func(evs []recorder.Event) error {
		for i := range evs {
			second = append(second, evs[i].Clone())
		}
		return nil
	}); err != nil {
		return err
	}
	if !slices.EqualFunc(first, second, func(a, b recorder.Event) bool { return a.EventID == b.EventID }) {
		return fmt.Errorf("recordertest: two passes over batch %s differ: %d and %d events", token, len(first), len(second))
	}
	w.mu.Lock()
	w.chunks = append(w.chunks, sizes)
	w.mu.Unlock()
	return w.WriteBatch(ctx, token, first)
}

// Chunks returns the chunk sizes of every WriteChunks call that got its
// events (before WriteBatch's failure injection and token check).
func (w *StreamWriter) Chunks() [][]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.chunks)
}
