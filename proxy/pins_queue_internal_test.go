package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// flakyPins is a PinStore that is down while down is set.
type flakyPins struct {
	mu       sync.Mutex
	down     bool
	appended []recorder.PinEvent
}

var errPinsDown = errors.New("pin store down")

func (f *flakyPins) LoadPins(context.Context) ([]recorder.PinEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errPinsDown
	}
	return append([]recorder.PinEvent(nil), f.appended...), nil
}

func (f *flakyPins) AppendPins(_ context.Context, evs []recorder.PinEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errPinsDown
	}
	f.appended = append(f.appended, evs...)
	return nil
}

func (f *flakyPins) setDown(d bool) {
	f.mu.Lock()
	f.down = d
	f.mu.Unlock()
}

// TestPinQueueBounded: while the pin store is down, the history waiting
// for it is capped in events and in bytes, the oldest dropped and counted;
// a pin whose pinned event was dropped is written once the store is back,
// so no tool stays unpinned in the store. Fails before the fix: every
// change was queued (51 events for 51 versions), without limit.
func TestPinQueueBounded(t *testing.T) {
	cfg := &config.Config{Pinning: config.Pinning{OnChange: config.PinningWarn}, Servers: []config.Server{{Name: "crm"}}}
	store := &flakyPins{}
	pt := newPinTracker(cfg, ".", store, slog.New(slog.DiscardHandler), "i")
	pt.maxPending, pt.maxPendingBytes = 8, 4<<10
	ctx := context.Background()
	pt.sync(ctx) // the store's pins are read: new pins are queued from now on
	catalogWith := func(tools map[string]string) *catalog {
		snap := &backendSnapshot{}
		for name, desc := range tools {
			snap.lists[listTools] = append(snap.lists[listTools], json.RawMessage(`{"name":"`+name+`","description":"`+desc+`"}`))
		}
		return buildCatalog([]string{"crm"}, map[string]*backendSnapshot{"crm": snap}, ".", map[string]string{"crm": "crm"})
	}
	store.setDown(true)
	pt.observe([]*catalog{catalogWith(map[string]string{"search": "v0"})}) // pinned, then dropped below
	for i := 1; i <= 50; i++ {
		pt.observe([]*catalog{catalogWith(map[string]string{"search": "v" + strconv.Itoa(i)})})
		pt.sync(ctx) // fails: nothing written
	}
	pt.mu.Lock()
	n := len(pt.pending)
	pt.mu.Unlock()
	if n > 8 || pt.dropped.Load() != int64(51-n) {
		t.Errorf("after 51 events with the store down: %d pending, %d dropped; want at most 8 pending and the rest dropped", n, pt.dropped.Load())
	}
	// Large definitions (with their diffs, two events fit): the byte
	// bound holds too.
	big := strings.Repeat("x", 500)
	for i := range 10 {
		pt.observe([]*catalog{catalogWith(map[string]string{"search": big + strconv.Itoa(i)})})
	}
	pt.mu.Lock()
	n, size := len(pt.pending), pt.pendingBytes
	pt.mu.Unlock()
	if size > 4<<10 || n == 0 {
		t.Errorf("with 0.5 KB definitions: %d pending of %d bytes, want at most 4096 bytes", n, size)
	}
	// Back: the pin of search (its pinned event was dropped) is written.
	store.setDown(false)
	pt.sync(ctx)
	store.mu.Lock()
	defer store.mu.Unlock()
	pinned := false
	for _, ev := range store.appended {
		pinned = pinned || ev.Kind == recorder.PinPinned && ev.Tool == "search"
	}
	if !pinned {
		t.Errorf("store after it came back: %d events, no pin of crm.search; want the pin written again", len(store.appended))
	}
}
