package proxy

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// A held call whose client never retries, with events full of the
// backend's unanswered requests, must not block its goroutine forever once
// expiry cancels it: Shutdown waits on g.inflight for that goroutine.
func TestHeldCallDeliverAfterCancelDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		h := &heldCall{ctx: ctx, events: make(chan heldEvent, 8)}
		for range cap(h.events) {
			h.events <- heldEvent{input: &inputRequest{}}
		}
		done := make(chan struct{})
		go func() {
			h.deliver(jsonrpc.Message{})
			close(done)
		}()
		cancel() // what expire does
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the held call's goroutine is blocked delivering its result after cancellation")
		}
	})
}
