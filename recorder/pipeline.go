package recorder

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
)

// Writer is implemented by storage (recorder/clickhouse).
//
// WriteBatch returns nil only when the batch is durable. It must be
// idempotent for the same token: a retried batch, even after a restart of
// the process, carries the same token and the same events and must not
// create duplicates. It is called from one goroutine at a time; it must not
// keep events after returning nor modify them (their strings and payloads
// point into the chunk of the spool segment being written, whose memory
// the pipeline reuses for the next chunk: keep Event.Clone()s), and should
// honour ctx.
type Writer interface {
	WriteBatch(ctx context.Context, token string, events []Event) error
}

// Chunks goes over a batch's events a chunk at a time, in order, calling
// yield once per chunk; it may be called again to go over the batch once
// more. A chunk's events are valid only during yield. An error from yield
// ends it and is returned as is; its own errors (reading the spool) are
// not the batch's fault. Passes must not overlap: every chunk is decoded
// into the same memory.
type Chunks func(yield func([]Event) error) error

// StreamWriter is a Writer that also takes a whole spool segment as one
// batch, read chunk by chunk: storage makes one insert of it (one part per
// table in ClickHouse, whose CPU per event falls with larger parts) while
// the pipeline holds one chunk decoded at a time. WriteChunks has
// WriteBatch's contract. A Permanent error makes the pipeline write the
// segment again chunk by chunk with WriteBatch, setting aside only the
// chunks that are refused.
type StreamWriter interface {
	Writer
	WriteChunks(ctx context.Context, token string, chunks Chunks) error
}

// Discard is a Writer that confirms every batch and keeps nothing.
type Discard struct{}

// WriteBatch implements Writer.
func (Discard) WriteBatch(context.Context, string, []Event) error { return nil }

var _ Writer = Discard{}

var (
	// ErrOverflow is returned by Record under the fail_closed policy when
	// the queue is full or the spool is over its disk budget.
	ErrOverflow = errors.New("recorder overflow: queue full or spool disk budget exhausted")
	// ErrClosed is returned by Record after Shutdown.
	ErrClosed = errors.New("recorder is shut down")
	// ErrSpoolInUse is returned by Start when another pipeline (in this
	// or another process) holds the spool directory.
	ErrSpoolInUse = errors.New("spool directory is in use by another recorder")
	// ErrSpoolFailed is returned by Record under the fail_closed policy
	// while the spool cannot make events durable (an fsync failed and no
	// fsync has succeeded since).
	ErrSpoolFailed = errors.New("recorder spool failed: events cannot be made durable (fsync error)")
)

// Permanent marks err as an error that retrying the same batch cannot fix
// (the storage rejects its contents). The pipeline then sets the batch
// aside in the quarantine directory instead of retrying it, and moves on.
// Errors not marked are retried with backoff. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Stats are the pipeline's counters, in events unless the name says bytes.
// Every accepted event ends up in exactly one of: waiting (queue or spool),
// Written, Quarantined, or Dropped.
type Stats struct {
	Enqueued       uint64 // accepted into the in-memory queue
	Spooled        uint64 // acknowledged: on disk and durable per the fsync policy
	Unacknowledged uint64 // spooled but never acknowledged: their fsync failed
	Written        uint64 // confirmed by the Writer (including leftovers from a previous run)
	Retried        uint64 // failed WriteBatch attempts that were retried (in batches)
	Quarantined    uint64 // in batches the storage rejected for good, set aside on disk
	Dropped        uint64 // lost to overflow, disk errors or use after Shutdown
	QueueLen       int    // events currently in the in-memory queue
	QueueBytes     int64  // approximate memory those events hold (bounded by Config.QueueBytes)
	SpoolBytes     int64  // bytes of segment files on disk
	SpoolSegments  int    // segment files on disk, active one included
	Fsyncs         uint64 // fsync calls on spool segments
	SpoolFailed    bool   // an fsync failed and none succeeded since

	// StorageFailing is set while the Writer's last attempt failed (it is
	// being retried), since StorageFailingSince.
	StorageFailing      bool
	StorageFailingSince time.Time `json:",omitzero"`

	// QuarantineFiles and QuarantineBytes are what the quarantine
	// directory holds now (requeue with `mcptrail recorder requeue`).
	QuarantineFiles int
	QuarantineBytes int64

	// The overflow risk: the policy, the disk budget, how fast the spool
	// grew over the last minute (bytes/s, negative when it shrinks) and,
	// when it grows, the estimated time until the budget is used up.
	Overflow          string
	MaxDiskBytes      int64
	SpoolGrowthPerSec float64
	SpoolFullIn       time.Duration

	WriteLatencyLast time.Duration // duration of the last successful WriteBatch
	WriteLatencyAvg  time.Duration // mean duration of successful WriteBatch calls
	WriteLatencySum  time.Duration // total duration of successful WriteBatch calls
	Writes           uint64        // successful WriteBatch calls
	LastError        string        // last WriteBatch or spool error, empty if none
}

// Pipeline takes Events on the hot path and makes them durable: Record puts
// them on a bounded queue; one spooler goroutine appends them to checksummed
// segment files; one writer goroutine hands sealed segments to the Writer in
// chunks and deletes each segment once every chunk is confirmed.
type Pipeline struct {
	cfg    Config
	w      Writer
	logger *slog.Logger
	queue  chan *Event
	ids    idGen

	failClosed bool
	// syncFile fsyncs a spool file; tests replace it to inject failures.
	syncFile     func(*os.File) error
	syncDir      func(dir string) error
	spoolFailed  atomic.Bool  // an fsync failed and none succeeded since
	failingSince atomic.Int64 // unix nanos of the first failed write of the current streak, 0 when writing works
	// extra holds the later hops of admitted calls that found the queue
	// full under fail_closed (at most QueueSize of them); the spooler
	// takes them before the queue.
	extraMu   sync.Mutex
	extra     []*Event
	extraBase int // calls in flight when extra last became non-empty
	extraN    atomic.Int64
	// calls counts, per request ID, the calls admitted under fail_closed
	// whose response hop was not recorded yet.
	admitMu  sync.Mutex
	calls    map[string]int
	startMu  sync.Mutex // serialises Start with itself and with Shutdown
	started  atomic.Bool
	closed   atomic.Bool
	inflight atomic.Int64 // Record calls between their closed check and their send
	// queuedBytes is the memSize of the events in the queue (Config.QueueBytes).
	queuedBytes atomic.Int64
	diskFull    atomic.Bool

	// counters
	enqueued, spooled, written, retried, dropped atomic.Uint64
	fsyncs, unacked, quarantined                 atomic.Uint64
	writtenLive, droppedLive, quarantinedLive    atomic.Uint64 // for Flush: events of this run
	quarantineFiles, quarantineBytes             atomic.Int64
	growth                                       growthMeter
	spoolBytes                                   atomic.Int64
	spoolSegments                                atomic.Int64
	replayPending                                atomic.Int64 // leftover segments not yet written
	latLast, latSum, latCount                    atomic.Int64
	lastDropLog                                  atomic.Int64
	flushTarget                                  atomic.Uint64

	// wbuf is the writer goroutine's memory, kept from one segment to the
	// next (writeSegment).
	wbuf writerBuffers

	mu        sync.Mutex
	sealed    []*segment
	progress  chan struct{} // closed and replaced whenever Flush may have become true
	lastError string

	spoolPoke  chan struct{} // flush requested
	writerPoke chan struct{} // a segment was sealed
	spaceFreed chan struct{} // a segment was deleted
	stopSpool  chan struct{}
	drainWrite chan struct{} // spooler finished: writer exits when nothing is left
	spoolDone  chan struct{}
	writeDone  chan struct{}
	writeCtx   context.Context
	cancel     context.CancelFunc

	shutdownOnce sync.Once
	shutdownErr  error
	lock         *os.File // the spool directory lock, held from Start to Shutdown
}

// segment is a spool segment known to the writer.
type segment struct {
	id   string
	size int64
	live bool // created by this process
	// events is how many events a live segment holds (unknown, 0, for
	// leftovers): what is lost if its file disappears.
	events int

	// The writer's progress this run, kept when it reads the segment
	// again (errReread) or loses it: the first chunk not yet done (even
	// if its checkpoint could not be saved), and the events written, set
	// aside (refused or undecodable) and missing from the file.
	next    int
	written int
	skipped int
	missing int
}

// NewPipeline validates cfg and returns a Pipeline that is not yet running.
// Events recorded before Start wait in the queue.
func NewPipeline(cfg Config, w Writer, logger *slog.Logger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring recorder: %w", err)
	}
	if w == nil {
		return nil, errors.New("configuring recorder: nil Writer")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	p := &Pipeline{
		cfg:        cfg,
		w:          w,
		logger:     logger.With("component", "recorder"),
		queue:      make(chan *Event, cfg.QueueSize),
		failClosed: cfg.Overflow == OverflowFailClosed,
		syncFile:   (*os.File).Sync,
		syncDir:    syncDir,
		calls:      map[string]int{},
		progress:   make(chan struct{}),
		spoolPoke:  make(chan struct{}, 1),
		writerPoke: make(chan struct{}, 1),
		spaceFreed: make(chan struct{}, 1),
		stopSpool:  make(chan struct{}),
		drainWrite: make(chan struct{}),
		spoolDone:  make(chan struct{}),
		writeDone:  make(chan struct{}),
	}
	p.ids.init()
	return p, nil
}

// Start opens the spool, queues segments left by a previous run for the
// writer and starts the spooler and writer goroutines. It returns without
// waiting for any write. Background work runs on its own context; ctx only
// bounds Start itself.
func (p *Pipeline) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("starting recorder: %w", err)
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if p.closed.Load() {
		return fmt.Errorf("starting recorder: %w", ErrClosed)
	}
	if p.started.Load() {
		return errors.New("starting recorder: already started")
	}
	// The spool holds recorded calls: for the gateway's user only.
	if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("creating spool directory %s: %w", p.cfg.Dir, err)
	}
	lock, err := lockSpool(p.cfg.Dir)
	if errors.Is(err, ErrSpoolInUse) {
		return fmt.Errorf("starting recorder: %w", err)
	} else if err != nil {
		// A file system without flock: run unlocked rather than not at all.
		p.logger.Warn("cannot lock the spool directory; make sure no other mcptrail uses it", "err", err)
	}
	started := false
	defer func() {
		if !started && lock != nil {
			lock.Close()
		}
	}()
	files, err := listSpool(p.cfg.Dir)
	if err != nil {
		return err
	}
	var leftoverBytes int64
	// Collected apart and published only once every leftover is sealed: a
	// Start that fails half-way and is retried must not queue a segment
	// twice (the second copy would be missing after the first is written).
	leftovers := make([]*segment, 0, len(files))
	for _, f := range files {
		if f.ext == extOpen || f.ext == extRequeued {
			// The process died with this segment active; seal it as is.
			// A torn tail record is detected when the writer reads it.
			// (Or a quarantined batch was requeued while stopped.)
			from, to := p.path(f.id, f.ext), p.path(f.id, extSealed)
			if err := os.Rename(from, to); err != nil {
				return fmt.Errorf("sealing leftover spool segment %s: %w", from, err)
			}
		}
		leftovers = append(leftovers, &segment{id: f.id, size: f.size})
		leftoverBytes += f.size
	}
	p.sealed = leftovers
	p.scanQuarantine()
	p.spoolBytes.Add(leftoverBytes)
	p.spoolSegments.Add(int64(len(files)))
	p.replayPending.Store(int64(len(files)))
	if len(files) > 0 {
		p.logger.Info("replaying spool segments left by a previous run",
			"segments", len(files), "bytes", leftoverBytes, "dir", p.cfg.Dir)
	}
	p.writeCtx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// Only now may Shutdown wait for the goroutines: a failed Start leaves
	// the pipeline unstarted (and Start may be retried).
	p.started.Store(true)
	started, p.lock = true, lock
	go p.runSpooler()
	go p.runWriter()
	p.poke(p.writerPoke)
	return nil
}

// Record hands ev to the pipeline; the pipeline owns ev and its slices from
// then on. It never blocks. It fills ev.EventID with a ULID if it is empty.
// Under the drop policy it returns nil even when the event is dropped (the
// drop is counted and logged); under fail_closed it returns ErrOverflow or
// ErrSpoolFailed.
//
// Under fail_closed only an event that admits a call may be refused: a
// call is admitted by its inbound hop and ends with its response hop (the
// proxy records both for every call). The hops of an admitted call are
// never refused for want of room: when the queue is full they wait in a
// side list, which holds up to perCallReserve hops per admitted call in
// flight, and new calls are refused while it is not empty. Events of
// requests that were not admitted (a refused call's response, a request
// refused before it became a call) are refused like new calls.
func (p *Pipeline) Record(ev *Event) error {
	if ev == nil {
		return errors.New("recording event: nil event")
	}
	p.inflight.Add(1)
	if p.closed.Load() {
		p.inflight.Add(-1)
		p.drop(1, "recorder is shut down")
		return ErrClosed
	}
	if !p.failClosed {
		return p.enqueue(ev)
	}
	admitted := p.admitted(ev)
	if !admitted {
		var err error
		switch {
		case p.spoolFailed.Load():
			err = ErrSpoolFailed
		case p.diskFull.Load() || p.extraN.Load() > 0:
			err = ErrOverflow
		}
		if err != nil {
			p.inflight.Add(-1)
			p.drop(1, err.Error())
			return err
		}
	}
	if ev.EventID == "" {
		ev.EventID = p.ids.next(ev.TimeNs)
	}
	if p.offer(ev) {
		p.enqueued.Add(1)
		p.inflight.Add(-1)
		p.track(ev, admitted)
		return nil
	}
	if admitted {
		p.extraMu.Lock()
		if len(p.extra) == 0 {
			// New calls are refused from now until the list is drained:
			// the calls in flight now are all that can add to it.
			p.extraBase = p.inflightCalls()
		}
		if len(p.extra) < perCallReserve*max(1, p.extraBase) {
			p.extra = append(p.extra, ev)
			p.extraN.Store(int64(len(p.extra)))
			p.enqueued.Add(1)
			p.extraMu.Unlock()
			p.inflight.Add(-1)
			p.track(ev, admitted)
			p.poke(p.spoolPoke)
			return nil
		}
		p.extraMu.Unlock()
	}
	p.inflight.Add(-1)
	p.drop(1, "queue full")
	if admitted && ev.Hop == HopResponse {
		p.endCall(ev.RequestID) // dropped or not, the call is over
	}
	return ErrOverflow
}

// perCallReserve is how many hops per admitted call in flight may wait
// beyond the full queue under fail_closed (auth, route, upstream attempts,
// server requests, notifications, response), counted over the calls in
// flight when the side list started filling.
const perCallReserve = 16

// enqueue is Record under the drop policy: never refused, dropped and
// counted when the queue is full.
func (p *Pipeline) enqueue(ev *Event) error {
	if ev.EventID == "" {
		ev.EventID = p.ids.next(ev.TimeNs)
	}
	if p.offer(ev) {
		p.enqueued.Add(1)
		p.inflight.Add(-1)
	} else {
		p.inflight.Add(-1)
		p.drop(1, "queue full")
	}
	return nil
}

// offer puts ev on the queue unless the queue is full in events or in
// bytes (Config.QueueBytes; an empty queue always takes one event). The
// spooler gives the bytes back with took.
func (p *Pipeline) offer(ev *Event) bool {
	n := ev.memSize()
	if after := p.queuedBytes.Add(n); after > p.cfg.QueueBytes && after != n {
		p.queuedBytes.Add(-n)
		return false
	}
	select {
	case p.queue <- ev:
		return true
	default:
		p.queuedBytes.Add(-n)
		return false
	}
}

// took returns the queue bytes of an event the spooler took off the
// queue, before anything (Prepare) changes it.
func (p *Pipeline) took(ev *Event) *Event {
	p.queuedBytes.Add(-ev.memSize())
	return ev
}

// admitted reports whether ev belongs to a call admitted earlier (and not
// yet ended by its response hop).
func (p *Pipeline) admitted(ev *Event) bool {
	if ev.Hop == HopInbound || ev.RequestID == "" {
		return false
	}
	p.admitMu.Lock()
	n := p.calls[ev.RequestID]
	p.admitMu.Unlock()
	return n > 0
}

// track updates the calls in flight after ev was accepted.
func (p *Pipeline) track(ev *Event, admitted bool) {
	if ev.RequestID == "" {
		return
	}
	switch {
	case ev.Hop == HopInbound:
		p.admitMu.Lock()
		p.calls[ev.RequestID]++
		p.admitMu.Unlock()
	case admitted && ev.Hop == HopResponse:
		p.endCall(ev.RequestID)
	}
}

// endCall forgets one admitted call of request id: its response hop was
// accepted or, beyond every reserve, dropped.
func (p *Pipeline) endCall(id string) {
	p.admitMu.Lock()
	if n := p.calls[id]; n <= 1 {
		delete(p.calls, id)
	} else {
		p.calls[id] = n - 1
	}
	p.admitMu.Unlock()
}

func (p *Pipeline) inflightCalls() int {
	p.admitMu.Lock()
	defer p.admitMu.Unlock()
	return len(p.calls)
}

// takeExtra removes and returns the side list of admitted calls' hops.
func (p *Pipeline) takeExtra() []*Event {
	if p.extraN.Load() == 0 {
		return nil
	}
	p.extraMu.Lock()
	out := p.extra
	p.extra = nil
	p.extraN.Store(0)
	p.extraMu.Unlock()
	return out
}

// Acknowledged returns how many events are durably spooled (Stats.Spooled).
func (p *Pipeline) Acknowledged() uint64 { return p.spooled.Load() }

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{
		Enqueued:         p.enqueued.Load(),
		Spooled:          p.spooled.Load(),
		Unacknowledged:   p.unacked.Load(),
		Written:          p.written.Load(),
		Retried:          p.retried.Load(),
		Quarantined:      p.quarantined.Load(),
		Dropped:          p.dropped.Load(),
		QueueLen:         len(p.queue) + int(p.extraN.Load()),
		QueueBytes:       p.queuedBytes.Load(),
		SpoolBytes:       p.spoolBytes.Load(),
		SpoolSegments:    int(p.spoolSegments.Load()),
		Fsyncs:           p.fsyncs.Load(),
		SpoolFailed:      p.spoolFailed.Load(),
		QuarantineFiles:  int(p.quarantineFiles.Load()),
		QuarantineBytes:  p.quarantineBytes.Load(),
		Overflow:         p.cfg.Overflow,
		MaxDiskBytes:     p.cfg.MaxDiskBytes,
		WriteLatencyLast: time.Duration(p.latLast.Load()),
	}
	if since := p.failingSince.Load(); since != 0 {
		s.StorageFailing, s.StorageFailingSince = true, time.Unix(0, since)
	}
	s.SpoolGrowthPerSec = p.growth.rate()
	if s.SpoolGrowthPerSec > 0 {
		if left := s.MaxDiskBytes - s.SpoolBytes; left > 0 {
			s.SpoolFullIn = time.Duration(float64(left) / s.SpoolGrowthPerSec * float64(time.Second)).Round(time.Second)
		}
	}
	n := p.latCount.Load()
	sum := p.latSum.Load() // after the count: a write in between is in the sum only
	if n > 0 {
		s.WriteLatencySum, s.Writes = time.Duration(sum), uint64(n)
		s.WriteLatencyAvg = time.Duration(sum / n)
	}
	p.mu.Lock()
	s.LastError = p.lastError
	p.mu.Unlock()
	return s
}

// Flush waits until every event recorded before the call, and every segment
// left by a previous run, is confirmed by the Writer or counted as dropped.
// It seals the active segment early instead of waiting for SegmentAge.
func (p *Pipeline) Flush(ctx context.Context) error {
	if !p.started.Load() {
		return errors.New("flushing recorder: not started")
	}
	target := p.enqueued.Load()
	for {
		cur := p.flushTarget.Load()
		if cur >= target || p.flushTarget.CompareAndSwap(cur, target) {
			break
		}
	}
	p.poke(p.spoolPoke)
	for {
		p.mu.Lock()
		ch := p.progress
		p.mu.Unlock()
		done := p.writtenLive.Load() + p.droppedLive.Load() + p.quarantinedLive.Load()
		if done >= target && p.replayPending.Load() == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-p.writeDone:
			return fmt.Errorf("flushing recorder: %d of %d events written: %w", done, target, ErrClosed)
		case <-ctx.Done():
			return fmt.Errorf("flushing recorder: %d of %d events written: %w", done, target, ctx.Err())
		}
	}
}

// Shutdown stops accepting events, spools what is queued, seals the active
// segment and lets the writer try to write everything until ctx is done.
// Whatever is not confirmed by then stays on disk for the next Start. It is
// safe to call more than once and before Start.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() { p.shutdownErr = p.shutdown(ctx) })
	return p.shutdownErr
}

func (p *Pipeline) shutdown(ctx context.Context) error {
	p.startMu.Lock()
	p.closed.Store(true)
	p.startMu.Unlock()
	// Wait for Record calls that passed the closed check to finish their
	// send, so that the spooler's final drain sees every accepted event.
	for p.inflight.Load() != 0 {
		runtime.Gosched()
	}
	if !p.started.Load() {
		if n := len(p.queue) + len(p.takeExtra()); n > 0 {
			p.drop(uint64(n), "shut down before start")
		}
		return nil
	}
	close(p.stopSpool)
	<-p.spoolDone
	close(p.drainWrite)
	select {
	case <-p.writeDone:
	case <-ctx.Done():
		p.cancel()
		<-p.writeDone
	}
	p.cancel()
	if p.lock != nil {
		p.lock.Close() // releases the flock
	}
	if n := p.spoolSegments.Load(); n > 0 {
		err := fmt.Errorf("shutting down recorder: %d segments (%d bytes) left in %s for the next start",
			n, p.spoolBytes.Load(), p.cfg.Dir)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		}
		return err
	}
	return nil
}

func (p *Pipeline) path(id, ext string) string { return filepath.Join(p.cfg.Dir, id+ext) }

// poke does a non-blocking send on a wake-up channel of capacity one.
func (p *Pipeline) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// notify wakes Flush callers.
func (p *Pipeline) notify() {
	p.mu.Lock()
	close(p.progress)
	p.progress = make(chan struct{})
	p.mu.Unlock()
}

func (p *Pipeline) setError(err error) {
	p.mu.Lock()
	p.lastError = err.Error()
	p.mu.Unlock()
}

// drop counts n lost events and logs loudly, at most once per second, with
// the running total.
func (p *Pipeline) drop(n uint64, reason string) {
	total := p.dropped.Add(n)
	now := time.Now().UnixNano()
	last := p.lastDropLog.Load()
	if now-last < int64(time.Second) || !p.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	p.logger.Warn("recorder DROPPING audit events",
		"reason", reason, "dropped_total", total, "overflow_policy", p.cfg.Overflow,
		"queue_len", len(p.queue), "spool_bytes", p.spoolBytes.Load(), "max_disk_bytes", p.cfg.MaxDiskBytes)
}

// idGen makes monotonic ULIDs for Record without a heap allocation per
// ID: the 80-bit entropy is kept as two integers (random for each new
// millisecond, incremented within one), and the text of many IDs is carved
// from one buffer.
type idGen struct {
	mu     sync.Mutex
	rng    *rand.ChaCha8
	lastMs uint64
	hi     uint16 // entropy bits 79..64
	lo     uint64 // entropy bits 63..0
	buf    []byte
}

const idArena = ulid.EncodedSize * 256

func (g *idGen) init() {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[0:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[16:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[24:], rand.Uint64())
	g.rng = rand.NewChaCha8(seed)
}

// next returns a ULID string whose time part is timeNs (or now if zero).
func (g *idGen) next(timeNs int64) string {
	ms := uint64(time.Now().UnixMilli())
	if timeNs > 0 {
		ms = uint64(timeNs / int64(time.Millisecond))
	}
	var id ulid.ULID
	g.mu.Lock()
	if ms <= g.lastMs {
		// Same (or an earlier) millisecond: stay monotonic by continuing
		// the previous sequence.
		ms = g.lastMs
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	} else {
		g.lastMs = ms
		g.hi, g.lo = uint16(g.rng.Uint64()), g.rng.Uint64()
		g.hi &= 0x7fff // leave room to increment without overflow
	}
	binary.BigEndian.PutUint16(id[6:], g.hi)
	binary.BigEndian.PutUint64(id[8:], g.lo)
	if len(g.buf) < ulid.EncodedSize {
		g.buf = make([]byte, idArena)
	}
	dst := g.buf[:ulid.EncodedSize:ulid.EncodedSize]
	g.buf = g.buf[ulid.EncodedSize:]
	g.mu.Unlock()
	if id.SetTime(ms) != nil {
		id.SetTime(ulid.MaxTime())
	}
	_ = id.MarshalTextTo(dst)
	return unsafeString(dst)
}
