package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"time"
	"unsafe"
)

// runWriter sends sealed segments to the Writer, oldest first.
func (p *Pipeline) runWriter() {
	defer close(p.writeDone)
	// Requeued batches (mcptrail recorder requeue) are looked for when
	// idle and at least this often.
	rescan := time.NewTicker(requeueScan)
	defer rescan.Stop()
	for {
		p.mu.Lock()
		var seg *segment
		if len(p.sealed) > 0 {
			seg = p.sealed[0]
		}
		p.mu.Unlock()
		if seg != nil {
			if err := p.writeSegment(p.writeCtx, seg); err != nil {
				return // only when writeCtx is cancelled
			}
			p.mu.Lock()
			p.sealed = p.sealed[1:]
			p.mu.Unlock()
			continue
		}
		p.scanQuarantine()
		if p.adoptRequeued() {
			continue
		}
		select {
		case <-p.writerPoke:
		case <-rescan.C:
		case <-p.drainWrite:
			// The spooler has sealed its last segment; drain what is left.
			p.mu.Lock()
			n := len(p.sealed)
			p.mu.Unlock()
			if n == 0 {
				return
			}
		case <-p.writeCtx.Done():
			return
		}
	}
}

// writeSegment writes every unconfirmed chunk of seg, retrying with backoff
// until it succeeds or ctx is done, then deletes the segment.
func (p *Pipeline) writeSegment(ctx context.Context, seg *segment) error {
	path := p.path(seg.id, extSealed)
	// The file stays in memory while its chunks are written; each chunk is
	// decoded into the same room, its strings and payloads pointing into
	// the file's bytes.
	var (
		file []byte
		idx  segmentIndex
	)
	defer p.wbuf.release()
	for attempt := 0; ; attempt++ {
		b, err := p.wbuf.readFile(path)
		if err == nil {
			file = b
			idx, err = scanSegment(b)
			if errors.Is(err, errSegmentHeader) {
				p.quarantine(seg, err)
				return nil
			}
		}
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) {
			// Removed behind our back (an operator, or another process
			// sharing the directory): nothing left to send, and retrying
			// would stall every later segment.
			p.vanished(seg, err)
			return nil
		}
		err = fmt.Errorf("reading spool segment %s: %w", path, err)
		p.setError(err)
		p.logger.Error("reading spool segment", "err", err)
		if err := p.backoff(ctx, attempt); err != nil {
			return err
		}
	}
	events := len(idx.records)
	if idx.skipped > 0 || idx.tornBytes > 0 {
		p.logger.Warn("spool segment has corrupt or torn records; skipping them",
			"segment", seg.id, "corrupt_records", idx.skipped, "torn_tail_bytes", idx.tornBytes)
		if missing := seg.events - events; seg.live && missing > 0 {
			p.droppedLive.Add(uint64(missing))
			p.drop(uint64(missing), "spool records corrupt")
		}
	}

	ackPath := p.path(seg.id, extAck)
	acked := readAck(ackPath)
	skipped := 0 // events of this run's chunks set aside in quarantine or that did not decode
	bs := idx.batchSize
	chunks := (events + bs - 1) / bs
	var room []Event
	if acked < chunks {
		room = p.wbuf.events(min(bs, events))
	}
	for i := acked; i < chunks; i++ {
		chunk, bad := decodeChunk(file, idx.records[i*bs:min((i+1)*bs, events)], room)
		if bad > 0 {
			p.logger.Warn("spool segment has records that do not decode; skipping them",
				"segment", seg.id, "chunk", i, "records", bad)
			if seg.live {
				p.droppedLive.Add(uint64(bad))
				p.drop(uint64(bad), "spool records corrupt")
			}
			skipped += bad // not written: Flush counts them dropped
		}
		token := chunkToken(seg.id, i)
		quarantined := false
		// A chunk whose every record failed to decode has nothing to send.
		for attempt := 0; len(chunk) > 0; attempt++ {
			start := time.Now()
			err := p.w.WriteBatch(ctx, token, chunk)
			if err == nil || IsPermanent(err) {
				p.failingSince.Store(0) // storage answers
			} else {
				p.failingSince.CompareAndSwap(0, time.Now().UnixNano())
			}
			if err == nil {
				d := time.Since(start)
				p.latLast.Store(int64(d))
				p.latSum.Add(int64(d))
				p.latCount.Add(1)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err = fmt.Errorf("writing batch %s (%d events): %w", token, len(chunk), err)
			p.setError(err)
			if IsPermanent(err) {
				qerr := p.quarantineBatch(seg.id, i, bs, chunk, err)
				if qerr == nil {
					quarantined = true
					break
				}
				// Cannot set it aside: keep it and retry like any error.
				p.setError(qerr)
				p.logger.Error("quarantining a rejected batch failed; will retry the batch", "err", qerr)
			} else {
				p.logger.Warn("recorder write failed; will retry", "err", err, "attempt", attempt+1)
			}
			p.retried.Add(1)
			if err := p.backoff(ctx, attempt); err != nil {
				return err
			}
		}
		if quarantined {
			p.quarantined.Add(uint64(len(chunk)))
			if seg.live {
				p.quarantinedLive.Add(uint64(len(chunk)))
			}
			skipped += len(chunk)
		} else {
			p.written.Add(uint64(len(chunk)))
		}
		if i+1 < chunks {
			if err := writeAck(ackPath, i+1); err != nil {
				p.setError(err)
				p.logger.Warn("saving ack checkpoint; chunks may be resent after a restart", "err", err)
			}
		}
		p.notify()
	}
	p.remove(seg)
	if seg.live {
		// Counted for Flush only once the segment is gone, so that a
		// returned Flush also means an empty spool.
		p.writtenLive.Add(uint64(events - min(acked*bs, events) - skipped))
		p.notify()
	}
	return nil
}

// remove deletes a fully written segment and its checkpoint.
func (p *Pipeline) remove(seg *segment) {
	path := p.path(seg.id, extSealed)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A segment that cannot be deleted would be resent after a restart
		// (deduplicated by token); keep going.
		err = fmt.Errorf("deleting written spool segment %s: %w", path, err)
		p.setError(err)
		p.logger.Error("deleting spool segment", "err", err)
	}
	_ = os.Remove(p.path(seg.id, extAck))
	p.forget(seg)
}

// quarantine renames a segment with an unreadable header out of the way.
func (p *Pipeline) quarantine(seg *segment, cause error) {
	from, to := p.path(seg.id, extSealed), p.path(seg.id, extCorrupt)
	err := os.Rename(from, to)
	p.setError(fmt.Errorf("spool segment %s: %w", from, cause))
	p.logger.Error("spool segment is corrupt; moved aside, its events are lost",
		"segment", from, "moved_to", to, "cause", cause, "rename_err", err)
	p.lost(seg, "spool segment corrupt")
	p.forget(seg)
}

// vanished forgets a segment whose file is gone before it was written.
func (p *Pipeline) vanished(seg *segment, cause error) {
	err := fmt.Errorf("spool segment %s disappeared before it was written; its events are lost: %w", seg.id, cause)
	p.setError(err)
	p.logger.Error("spool segment missing", "segment", seg.id, "err", err)
	_ = os.Remove(p.path(seg.id, extAck))
	p.lost(seg, "spool segment disappeared")
	p.forget(seg)
}

// lost counts the events of a live segment that will never be written as
// dropped, so that Flush and the Stats balance. (A leftover's count is not
// known; replayPending covers it.)
func (p *Pipeline) lost(seg *segment, reason string) {
	if seg.live && seg.events > 0 {
		p.droppedLive.Add(uint64(seg.events))
		p.drop(uint64(seg.events), reason)
	}
}

func (p *Pipeline) forget(seg *segment) {
	p.spoolBytes.Add(-seg.size)
	p.spoolSegments.Add(-1)
	if !seg.live {
		p.replayPending.Add(-1)
	}
	p.poke(p.spaceFreed)
	p.notify()
}

// backoff sleeps for an exponentially growing, jittered delay between
// RetryMin and RetryMax, or returns ctx.Err() if ctx is done first.
func (p *Pipeline) backoff(ctx context.Context, attempt int) error {
	d := p.cfg.RetryMax
	if attempt < 30 {
		if e := p.cfg.RetryMin << attempt; e > 0 && e < d {
			d = e
		}
	}
	// Equal jitter: half fixed, half random, so that many gateways
	// retrying against one ClickHouse spread out.
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writerBuffers are the file bytes and the decoded events of the segment
// being written, reused for the next one: two allocations of a few MiB per
// segment were a tenth of the recording gateway's garbage. Buffers grown
// past keepBufferBytes (a segment far over the default size) are let go
// once the segment is written. Only the writer goroutine uses them.
type writerBuffers struct {
	file []byte
	room []Event
}

const keepBufferBytes = 8 << 20

// readFile reads the file at path into the reused buffer.
func (wb *writerBuffers) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := int(st.Size())
	if cap(wb.file) < size {
		wb.file = make([]byte, size)
	}
	b := wb.file[:size]
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// events returns room for n decoded events.
func (wb *writerBuffers) events(n int) []Event {
	if cap(wb.room) < n {
		wb.room = make([]Event, 0, n)
	}
	return wb.room[:0]
}

// release drops what the last segment decoded (its strings point into the
// file buffer) and the buffers that grew too large to keep.
func (wb *writerBuffers) release() {
	clear(wb.room[:cap(wb.room)])
	if cap(wb.file) > keepBufferBytes {
		wb.file = nil
	}
	if int(unsafe.Sizeof(Event{}))*cap(wb.room) > keepBufferBytes {
		wb.room = nil
	}
}
