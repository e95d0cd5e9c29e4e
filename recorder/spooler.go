package recorder

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/oklog/ulid/v2"
)

// unsafeString views b as a string; b must never be written again.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// maxDrain bounds how many queued events the spooler writes with one
// write(2) (and, under "always", one fsync): a group commit.
const maxDrain = 1024

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
	for {
		select {
		case ev := <-p.queue:
			s.add(ev, false)
			for i := 1; i < maxDrain; i++ {
				select {
				case ev := <-p.queue:
					s.add(ev, false)
					continue
				default:
				}
				break
			}
			s.write()
		case <-p.spoolPoke:
		case <-ticker.C:
		case <-p.stopSpool:
			for {
				select {
				case ev := <-p.queue:
					s.add(ev, true)
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

// maintain applies the time- and flush-based rules after each wake-up.
func (s *spooler) maintain(now time.Time) {
	p := s.p
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
		s.sync()
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
	start := len(s.buf)
	s.buf = AppendRecord(s.buf, ev)
	n := int64(len(s.buf) - start)
	for !s.fits() {
		// Under fail_closed, wait for the writer to free space unless the
		// record could never fit or the pipeline is stopping.
		if p.failClosed && !stopping && p.spoolBytes.Load()+int64(start) > 0 {
			p.diskFull.Store(true)
			// Hand everything before this record to the writer first,
			// or it could never free the space we wait for.
			rec := append([]byte(nil), s.buf[start:]...)
			s.buf = s.buf[:start]
			s.write()
			s.seal()
			s.buf = append(s.buf[:0], rec...)
			start = 0
			select {
			case <-p.spaceFreed:
				continue
			case <-p.stopSpool:
			}
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
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
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
		if err := syncDir(p.cfg.Dir); err != nil {
			err = fmt.Errorf("syncing spool directory for segment %s: %w", path, err)
			p.setError(err)
			p.logger.Warn("spool directory fsync failed", "err", err)
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
		s.sync()
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

// sync fsyncs the active segment and acknowledges what it holds.
func (s *spooler) sync() {
	p := s.p
	if s.f == nil {
		return
	}
	if err := s.f.Sync(); err != nil {
		err = fmt.Errorf("syncing spool segment %s: %w", s.id, err)
		p.setError(err)
		p.logger.Error("spool fsync failed", "err", err)
	}
	p.fsyncs.Add(1)
	p.spooled.Add(s.unsynced)
	s.unsynced = 0
	s.lastSync = time.Now()
}

// seal makes the active segment durable per policy, renames it to .seg
// and hands it to the writer.
func (s *spooler) seal() {
	p := s.p
	if s.f == nil {
		return
	}
	if p.cfg.Fsync != FsyncNever {
		s.sync()
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
