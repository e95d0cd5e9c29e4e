package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/oklog/ulid/v2"
)

// unsafeString views b as a string; b must not be written while the string
// is in use. (The writer reuses its chunk buffer: the events it decodes
// into strings over it are valid until it reads the next chunk.)
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// maxDrain bounds how many queued events the spooler writes with one
// write(2) (and, under "always", one fsync): a group commit.
const maxDrain = 1024

// spoolLinger is how long the spooler waits, when a wake-up finds a few
// events and then an empty queue, for more before it writes them: at low
// rates the hops of a call cost one wake-up and one write(2) together
// rather than one each. It delays an event's acknowledgement (under
// "always" its fsync, under "interval" nothing that matters) by at most
// this much; Flush and Shutdown cut it short.
const spoolLinger = 2 * time.Millisecond

// spooler is the state owned by the spooler goroutine.
type spooler struct {
	p        *Pipeline
	f        *os.File // active segment, nil when none
	id       string
	size     int64     // bytes in the active segment, buffered ones included
	opened   time.Time // when the active segment was created
	first    uint64    // processed count before the active segment's first event
	events   int       // events in the active segment
	unsynced uint64    // events written but not yet fsynced (interval policy)
	lastSync time.Time
	buf      []byte // encoded records not yet written to f
	bufN     uint64 // events in buf
	// processed counts events taken off the queue (spooled or dropped).
	processed uint64
	warnedAt  time.Time // last nearly-full warning, zero when below the mark
	// dirPending: the active segment's directory entry is not known to be
	// durable (the directory fsync at its creation failed).
	dirPending bool
}

func (p *Pipeline) runSpooler() {
	defer close(p.spoolDone)
	s := &spooler{p: p, buf: make([]byte, 0, 64<<10), lastSync: time.Now()}
	tick := p.cfg.SegmentAge / 2
	if p.cfg.Fsync == FsyncInterval && p.cfg.FsyncInterval < tick {
		tick = p.cfg.FsyncInterval
	}
	tick = max(tick, 5*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		if extra := p.takeExtra(); len(extra) > 0 {
			for _, ev := range extra {
				s.add(ev, false)
			}
			s.write()
		}
		select {
		case ev := <-p.queue:
			s.add(p.took(ev), false)
			if s.drain(maxDrain-1) < maxDrain-1 {
				// The queue ran dry: give the rest of the call a moment
				// to arrive, so that its hops share one wake-up and one
				// write.
				linger.Reset(spoolLinger)
				select {
				case <-linger.C:
				case <-p.spoolPoke:
				case <-p.stopSpool: // handled by the next turn of the loop
				}
				linger.Stop()
				s.drain(maxDrain)
			}
			s.write()
		case <-p.spoolPoke:
		case <-ticker.C:
		case <-p.stopSpool:
			for _, ev := range p.takeExtra() {
				s.add(ev, true)
			}
			for {
				select {
				case ev := <-p.queue:
					s.add(p.took(ev), true)
					continue
				default:
				}
				break
			}
			s.write()
			s.seal()
			p.diskFull.Store(false)
			p.notify()
			return
		}
		s.maintain(time.Now())
	}
}

// drain adds up to n events that are already queued, without waiting,
// and returns how many it took.
func (s *spooler) drain(n int) int {
	for i := range n {
		select {
		case ev := <-s.p.queue:
			s.add(s.p.took(ev), false)
		default:
			return i
		}
	}
	return n
}

// maintain applies the time- and flush-based rules after each wake-up.
func (s *spooler) maintain(now time.Time) {
	p := s.p
	p.growth.sample(now, p.spoolBytes.Load())
	s.watchBudget(now)
	if p.spoolFailed.Load() && s.f == nil {
		s.probe()
	}
	if s.f == nil {
		return
	}
	if ft := p.flushTarget.Load(); ft > s.first && s.processed >= ft {
		s.seal()
		return
	}
	if now.Sub(s.opened) >= p.cfg.SegmentAge {
		s.seal()
		return
	}
	if p.cfg.Fsync == FsyncInterval && s.unsynced > 0 && now.Sub(s.lastSync) >= p.cfg.FsyncInterval {
		if s.sync() != nil {
			s.seal()
		}
	}
}

// spoolWarnRatio is the share of the disk budget past which the spooler
// warns, once per minute while it stays above.
const spoolWarnRatio = 0.8

// watchBudget warns while the spool is nearly full: with overflow drop the
// next events are lost, with fail_closed the next calls are refused.
func (s *spooler) watchBudget(now time.Time) {
	p := s.p
	used := p.spoolBytes.Load()
	if float64(used) < spoolWarnRatio*float64(p.cfg.MaxDiskBytes) {
		s.warnedAt = time.Time{}
		return
	}
	if !s.warnedAt.IsZero() && now.Sub(s.warnedAt) < time.Minute {
		return
	}
	s.warnedAt = now
	consequence := "new events will be DROPPED (recorder.overflow: drop): calls will be served unrecorded"
	if p.failClosed {
		consequence = "new calls will be REFUSED (recorder.overflow: fail_closed)"
	}
	st := p.Stats()
	p.logger.Warn("recorder spool is nearly full; is ClickHouse reachable? "+consequence,
		"spool_bytes", used, "max_disk_bytes", p.cfg.MaxDiskBytes,
		"used_percent", int(100*float64(used)/float64(p.cfg.MaxDiskBytes)),
		"growth_bytes_per_sec", int64(st.SpoolGrowthPerSec), "full_in", st.SpoolFullIn.String(),
		"last_error", st.LastError, "dir", p.cfg.Dir)
}

// probe checks whether the spool directory can make a file durable again
// after an fsync failed, by writing and fsyncing a scratch file.
func (s *spooler) probe() {
	p := s.p
	path := filepath.Join(p.cfg.Dir, "fsync-probe.tmp")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.Write([]byte("probe\n"))
		if err == nil {
			err = p.syncFile(f)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		_ = os.Remove(path)
	}
	if err == nil {
		p.spoolFailed.Store(false)
		p.logger.Info("recorder spool recovered: fsync works again", "dir", p.cfg.Dir)
	}
}

// add encodes ev into the pending buffer, applying the disk budget and
// rolling the segment at SegmentBytes. stopping means no waiting for space.
func (s *spooler) add(ev *Event, stopping bool) {
	p := s.p
	if ev.Unredacted {
		if p.cfg.Prepare != nil {
			p.cfg.Prepare(ev)
		} else {
			ev.Params, ev.Result, ev.ErrorMessage = nil, nil, ""
		}
		ev.Unredacted = false
	}
	if !fitRecord(ev) {
		p.logger.Error("recorder event too large for a spool record even without its payloads; dropped",
			"request_id", ev.RequestID, "hop", ev.Hop.String(), "max_record_bytes", maxRecordLen)
		s.processed++
		p.droppedLive.Add(1)
		p.drop(1, "event too large")
		p.notify()
		return
	}
	start := len(s.buf)
	s.buf = AppendRecord(s.buf, ev)
	n := int64(len(s.buf) - start)
	// Under fail_closed every queued event belongs to an admitted call:
	// when stopping, it goes over the disk budget (by at most the queue)
	// rather than being lost.
	for !s.fits() && !(p.failClosed && stopping) {
		// Under fail_closed, wait for the writer to free space unless the
		// record could never fit.
		if p.failClosed && p.spoolBytes.Load()+int64(start) > 0 {
			p.diskFull.Store(true)
			// Hand everything before this record to the writer first,
			// or it could never free the space we wait for.
			rec := append([]byte(nil), s.buf[start:]...)
			s.buf = s.buf[:start]
			s.write()
			s.seal()
			s.buf = append(s.buf[:0], rec...)
			start = 0
			s.watchBudget(time.Now()) // the loop's maintain does not run while we wait
			select {
			case <-p.spaceFreed:
			case <-p.stopSpool:
				stopping = true
			}
			continue
		}
		s.buf = s.buf[:start]
		s.processed++
		p.droppedLive.Add(1)
		p.drop(1, "spool disk budget exhausted")
		p.notify()
		return
	}
	p.diskFull.Store(false)
	if s.f == nil {
		if err := s.open(); err != nil {
			s.buf = s.buf[:start]
			s.processed++
			p.droppedLive.Add(1)
			p.setError(err)
			p.logger.Error("opening spool segment", "err", err)
			p.drop(1, "spool error")
			p.notify()
			return
		}
	}
	s.size += n
	s.events++
	s.bufN++
	s.processed++
	if s.size >= p.cfg.SegmentBytes {
		s.write()
		s.seal()
	}
}

// fits reports whether the pending buffer fits in the disk budget,
// counting the header of a segment that is still to be created.
func (s *spooler) fits() bool {
	hdr := int64(0)
	if s.f == nil {
		hdr = segmentHeaderLen
	}
	return s.p.spoolBytes.Load()+int64(len(s.buf))+hdr <= s.p.cfg.MaxDiskBytes
}

// open creates a new active segment.
func (s *spooler) open() error {
	p := s.p
	id := ulid.Make().String()
	path := p.path(id, extOpen)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating spool segment %s: %w", path, err)
	}
	if _, err := f.Write(segmentHeader(p.cfg.BatchSize)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing spool segment header %s: %w", path, err)
	}
	if p.cfg.Fsync != FsyncNever {
		// The new file's directory entry must be durable too, or a power
		// loss can take the whole segment, fsynced records and all. Some
		// file systems cannot fsync a directory: record less durably
		// rather than not at all.
		// A directory fsync that fails for another reason leaves the
		// segment's name undurable: its events are not acknowledged until
		// it succeeds (sync retries it).
		err := p.syncDir(p.cfg.Dir)
		s.dirPending = err != nil && !unsupported(err)
		if err != nil {
			err = fmt.Errorf("syncing spool directory for segment %s: %w", path, err)
			p.setError(err)
			p.logger.Warn("spool directory fsync failed", "err", err, "retried", s.dirPending)
		}
	}
	s.f, s.id, s.size, s.events, s.first = f, id, segmentHeaderLen, 0, s.processed
	s.opened = time.Now()
	p.spoolBytes.Add(segmentHeaderLen)
	p.spoolSegments.Add(1)
	return nil
}

// write appends the pending buffer to the active segment and acknowledges
// the events per the fsync policy.
func (s *spooler) write() {
	p := s.p
	if len(s.buf) == 0 || s.f == nil {
		s.buf, s.bufN = s.buf[:0], 0
		return
	}
	n, err := s.f.Write(s.buf)
	p.spoolBytes.Add(int64(n))
	if err != nil {
		// What reached the file may end in a torn record, which the
		// reader skips; the whole records before it will be written to
		// storage like any others (and acknowledged with them below),
		// the rest of this group is lost.
		err = fmt.Errorf("appending to spool segment %s: %w", s.id, err)
		p.setError(err)
		p.logger.Error("spool write failed; sealing segment", "err", err)
		kept := wholeRecords(s.buf[:n])
		if lost := s.bufN - kept; lost > 0 {
			p.droppedLive.Add(lost)
			p.drop(lost, "spool write error")
			s.events -= int(lost)
		}
		s.size -= int64(len(s.buf) - n)
		s.buf, s.bufN = s.buf[:0], kept
		s.ack()
		s.seal()
		return
	}
	s.ack()
}

// ack acknowledges the bufN events just written per the fsync policy.
func (s *spooler) ack() {
	p := s.p
	switch p.cfg.Fsync {
	case FsyncAlways:
		s.unsynced += s.bufN
		s.buf, s.bufN = s.buf[:0], 0
		if s.sync() != nil {
			s.seal()
		}
		return
	case FsyncInterval:
		s.unsynced += s.bufN
	default:
		p.spooled.Add(s.bufN)
	}
	s.buf, s.bufN = s.buf[:0], 0
}

// wholeRecords counts the complete records at the start of b.
func wholeRecords(b []byte) uint64 {
	var n uint64
	for len(b) >= recordHeaderLen {
		l := binary.LittleEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-recordHeaderLen) {
			break
		}
		b = b[recordHeaderLen+int(l):]
		n++
	}
	return n
}

// sync fsyncs the active segment and acknowledges what it holds. When the
// fsync fails those events are not acknowledged (they are still handed to
// the writer with the segment, which the caller must seal: after a failed
// fsync the kernel may have dropped the dirty pages and a later fsync of
// the same file can report success for data that is gone), and the spool
// counts as failed until an fsync succeeds again.
func (s *spooler) sync() error {
	p := s.p
	if s.f == nil {
		return nil
	}
	p.fsyncs.Add(1)
	s.lastSync = time.Now()
	err := p.syncFile(s.f)
	if err != nil {
		err = fmt.Errorf("syncing spool segment %s: %w", s.id, err)
	} else if s.dirPending {
		if err = p.syncDir(p.cfg.Dir); err != nil {
			err = fmt.Errorf("syncing spool directory for segment %s: %w", s.id, err)
		} else {
			s.dirPending = false
		}
	}
	if err != nil {
		p.setError(err)
		p.unacked.Add(s.unsynced)
		s.unsynced = 0
		if !p.spoolFailed.Swap(true) || p.failClosed {
			p.logger.Error("spool fsync failed: events since the last fsync are NOT durable and not acknowledged", "err", err,
				"overflow_policy", p.cfg.Overflow)
		}
		return err
	}
	p.spoolFailed.Store(false)
	p.spooled.Add(s.unsynced)
	s.unsynced = 0
	return nil
}

// seal makes the active segment durable per policy, renames it to .seg
// and hands it to the writer.
func (s *spooler) seal() {
	p := s.p
	if s.f == nil {
		return
	}
	if p.cfg.Fsync != FsyncNever && s.unsynced > 0 {
		_ = s.sync() // a failure is counted and logged by sync
	}
	if err := s.f.Close(); err != nil {
		p.setError(fmt.Errorf("closing spool segment %s: %w", s.id, err))
	}
	from, to := p.path(s.id, extOpen), p.path(s.id, extSealed)
	if err := os.Rename(from, to); err != nil {
		// Leave it as .open; the next Start seals it.
		err = fmt.Errorf("sealing spool segment %s: %w", from, err)
		p.setError(err)
		p.logger.Error("sealing spool segment", "err", err)
	} else {
		p.mu.Lock()
		p.sealed = append(p.sealed, &segment{id: s.id, size: s.size, live: true, events: s.events})
		p.mu.Unlock()
		p.poke(p.writerPoke)
	}
	s.f = nil
	s.events = 0
}

// unsupported reports a file system that cannot fsync a directory at all:
// record less durably rather than not at all.
func unsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EROFS)
}

// syncDir fsyncs a directory, making the names created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fitRecord makes ev fit in one spool record (maxRecordLen): a record
// larger than that would be taken for corruption when read back, so an
// event that would not fit loses its payloads (marked truncated, with an
// attribute saying why) rather than its hop. It reports false when even
// that is not enough.
func fitRecord(ev *Event) bool {
	if encodedSizeBound(ev) <= maxRecordLen {
		return true
	}
	ev.Params, ev.Result = nil, nil
	ev.PayloadTruncated = true
	ev.Attrs = append(ev.Attrs, Attr{Key: "mcptrail.payload_dropped", Value: "event over the 256 MiB spool record limit"})
	return encodedSizeBound(ev) <= maxRecordLen
}

// encodedSizeBound is an upper bound of AppendEvent's output for ev.
func encodedSizeBound(ev *Event) int {
	const perField = 10 // a uvarint length
	n := 256 + len(ev.Params) + len(ev.Result) + 2*perField
	for _, s := range ev.stringFields() {
		n += len(*s) + perField
	}
	for _, a := range ev.Attrs {
		n += len(a.Key) + len(a.Value) + 2*perField
	}
	return n
}

// growthMeter estimates how fast the spool grows, from samples at least
// growthStep apart over about the last minute.
type growthMeter struct {
	mu      sync.Mutex
	samples [7]growthSample
	n, next int
}

type growthSample struct {
	at    time.Time
	bytes int64
}

const growthStep = 10 * time.Second

func (g *growthMeter) sample(now time.Time, bytes int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n > 0 {
		last := g.samples[(g.next+len(g.samples)-1)%len(g.samples)]
		if now.Sub(last.at) < growthStep {
			return
		}
	}
	g.samples[g.next] = growthSample{now, bytes}
	g.next = (g.next + 1) % len(g.samples)
	g.n = min(g.n+1, len(g.samples))
}

// rate is the growth in bytes per second between the oldest and newest
// samples, 0 before two samples exist.
func (g *growthMeter) rate() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n < 2 {
		return 0
	}
	oldest := g.samples[(g.next+len(g.samples)-g.n)%len(g.samples)]
	newest := g.samples[(g.next+len(g.samples)-1)%len(g.samples)]
	dt := newest.at.Sub(oldest.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(newest.bytes-oldest.bytes) / dt
}
