package recorder

import (
	"bufio"
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
// until it succeeds or ctx is done, then deletes the segment. A
// StreamWriter gets what is left of the segment as one batch; other
// writers, and a StreamWriter that refuses it for good, get it chunk by
// chunk. Either way the file is read a chunk at a time (BatchSize events;
// at most streamChunkBytes of them when streamed), not held whole.
func (p *Pipeline) writeSegment(ctx context.Context, seg *segment) error {
	for attempt := 0; ; attempt++ {
		err := p.writeSegmentOnce(ctx, seg)
		if !errors.Is(err, errReread) {
			return err
		}
		// The file changed under its index (or the disk failed): index
		// it again, resuming at its checkpoint.
		p.setError(err)
		p.logger.Error("reading spool segment", "err", err)
		if err := p.backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// errReread: a chunk of a segment could not be read as its index says.
var errReread = errors.New("spool segment changed or unreadable; reading it again")

// streamChunkBytes bounds the bytes of a chunk handed to a StreamWriter
// (a record larger than it is a piece of its own), so that a segment of
// large payloads is not read whole at once: its token covers the
// segment's chunks, whatever the pieces it is read in. The piece, its
// decoded events and the storage's encoded and compressed block of it are
// most of what recording holds in memory: at c=64 (bench --compare,
// alternated) the gateway's peak RSS read 83-84 MB with 2 MiB pieces,
// 73-76 with 1 MiB, 66-71 with 512 KiB and 64, 64 with 256 KiB.
// ClickHouse squashes the blocks of one INSERT into one part, so smaller
// pieces do not make more parts.
const streamChunkBytes = 256 << 10

// streamFallbackAfter is how many transient failures of a segment written
// as one batch make the pipeline write it chunk by chunk instead: a
// failure due to its size would otherwise block every later segment.
const streamFallbackAfter = 10

func (p *Pipeline) writeSegmentOnce(ctx context.Context, seg *segment) error {
	path := p.path(seg.id, extSealed)
	var (
		f   *os.File
		idx segmentIndex
	)
	defer p.wbuf.release()
	for attempt := 0; ; attempt++ {
		var err error
		f, idx, err = p.wbuf.scan(path)
		if errors.Is(err, errSegmentHeader) {
			p.quarantine(seg, err)
			return nil
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
	defer f.Close()
	events := len(idx.records)
	if idx.skipped > 0 || idx.tornBytes > 0 {
		p.logger.Warn("spool segment has corrupt or torn records; skipping them",
			"segment", seg.id, "corrupt_records", idx.skipped, "torn_tail_bytes", idx.tornBytes)
	}
	// Records the file lacks (corrupt, torn, or cut between two records
	// after it was written) are counted once, however often it is read.
	if missing := seg.events - events - seg.missing; seg.live && missing > 0 {
		seg.missing += missing
		p.droppedLive.Add(uint64(missing))
		p.drop(uint64(missing), "spool records corrupt")
	}

	ackPath := p.path(seg.id, extAck)
	// A checkpoint that could not be saved is still known in memory.
	acked := max(readAck(ackPath), seg.next)
	bs := idx.batchSize
	chunks := (events + bs - 1) / bs
	var room []Event // sized for the longest run decoded at once
	// decode reads records [a, b) and decodes them into room; a record
	// that does not decode is left out and counted in bad.
	decode := func(a, b int) (chunk []Event, bad int, err error) {
		buf, spans, err := readChunk(f, idx.records[a:b], p.wbuf.chunk, p.wbuf.spans)
		p.wbuf.chunk, p.wbuf.spans = buf, spans
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, fmt.Errorf("%w: records %d to %d of %s: %w", errReread, a, b, path, err)
		}
		chunk, bad = decodeChunk(buf, spans, room)
		return chunk, bad, nil
	}
	countBad := func(bad int) {
		if bad == 0 {
			return
		}
		p.logger.Warn("spool segment has records that do not decode; skipping them",
			"segment", seg.id, "records", bad)
		if seg.live {
			p.droppedLive.Add(uint64(bad))
			p.drop(uint64(bad), "spool records corrupt")
		}
	}

	next := acked // the first chunk not yet written
	if sw, ok := p.w.(StreamWriter); ok && acked < chunks {
		// The records of chunks [acked, chunks), in pieces of at most bs
		// records and streamChunkBytes.
		var pieces [][2]int
		longest := 0
		for a := acked * bs; a < events; {
			b, size := a, 0
			for b < events && b-a < bs && (b == a || size+idx.records[b].n <= streamChunkBytes) {
				size += idx.records[b].n
				b++
			}
			pieces = append(pieces, [2]int{a, b})
			longest = max(longest, b-a)
			a = b
		}
		room = p.wbuf.events(longest)
		bad, err := p.streamSegment(ctx, sw, seg, decode, pieces, acked)
		if err != nil {
			return err // ctx is done, or errReread
		}
		if bad >= 0 {
			countBad(bad)
			seg.skipped += bad
			next, seg.next = chunks, chunks
		}
	}
	if next < chunks {
		room = p.wbuf.events(min(bs, events))
	}
	for i := next; i < chunks; i++ {
		chunk, bad, err := decode(i*bs, min((i+1)*bs, events))
		if err != nil {
			return err
		}
		countBad(bad)
		seg.skipped += bad // not written: Flush counts them dropped
		token := chunkToken(seg.id, i)
		quarantined := false
		// A chunk whose every record failed to decode has nothing to send.
		for attempt := 0; len(chunk) > 0; attempt++ {
			start := time.Now()
			err := p.w.WriteBatch(ctx, token, chunk)
			p.storageAnswered(err, start)
			if err == nil {
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
			seg.skipped += len(chunk)
		} else {
			p.written.Add(uint64(len(chunk)))
			seg.written += len(chunk)
		}
		seg.next = i + 1
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
		p.writtenLive.Add(uint64(seg.written))
		p.notify()
	}
	return nil
}

// streamSegment writes the records of pieces, chunks from chunk on, as one
// batch with sw, retrying until it is written or refused, and counts what
// it wrote (Stats, seg.written). It returns how
// many records did not decode (left out, as in the chunk path), or -1 when
// sw refused the batch for good (Permanent) or failed streamFallbackAfter
// times: the caller then writes the chunks one by one. Its token is not a
// chunk's, so that a segment partly written chunk by chunk (by an older
// version, or after a refusal) is never taken for written; the events
// resent then collapse on their ids. An errReread from decode ends it.
func (p *Pipeline) streamSegment(ctx context.Context, sw StreamWriter, seg *segment,
	decode func(a, b int) ([]Event, int, error), pieces [][2]int, chunk int) (bad int, err error) {
	token := streamToken(seg.id, chunk)
	var (
		events  = -1 // set by a whole pass
		readErr error
	)
	chunks := func(yield func([]Event) error) error {
		n, b := 0, 0
		for _, pc := range pieces {
			evs, bi, err := decode(pc[0], pc[1])
			if err != nil {
				readErr = err
				return err
			}
			n, b = n+len(evs), b+bi
			if len(evs) == 0 {
				continue
			}
			if err := yield(evs); err != nil {
				return err
			}
		}
		// Every pass decodes the same records: the last whole one counts.
		events, bad = n, b
		return nil
	}
	for attempt := 0; ; attempt++ {
		readErr = nil
		start := time.Now()
		err := sw.WriteChunks(ctx, token, chunks)
		if readErr != nil && errors.Is(err, readErr) {
			return 0, readErr // the spool's fault, not the storage's
		}
		p.storageAnswered(err, start)
		if err == nil {
			if events < 0 {
				// Written before (the token was known): count its events
				// all the same.
				if err := chunks(func([]Event) error { return nil }); err != nil {
					return 0, err
				}
			}
			p.written.Add(uint64(events))
			seg.written += events
			return bad, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		err = fmt.Errorf("writing segment %s from chunk %d as batch %s: %w", seg.id, chunk, token, err)
		p.setError(err)
		if IsPermanent(err) || attempt+1 >= streamFallbackAfter {
			if !IsPermanent(err) {
				p.retried.Add(1) // retried, chunk by chunk
			}
			p.logger.Warn("segment not written as one batch; writing it chunk by chunk", "err", err, "attempts", attempt+1)
			return -1, nil
		}
		p.logger.Warn("recorder write failed; will retry", "err", err, "attempt", attempt+1)
		p.retried.Add(1)
		if err := p.backoff(ctx, attempt); err != nil {
			return 0, err
		}
	}
}

// storageAnswered updates the storage health and latency figures after a
// write that returned err and started at start.
func (p *Pipeline) storageAnswered(err error, start time.Time) {
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
	}
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
	if !seg.live {
		return
	}
	// What this run wrote, set aside or counted dropped already (a
	// segment lost when it was read again) is not lost.
	if seg.written > 0 {
		p.writtenLive.Add(uint64(seg.written))
	}
	if n := seg.events - seg.written - seg.skipped - seg.missing; n > 0 {
		p.droppedLive.Add(uint64(n))
		p.drop(uint64(n), reason)
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

// writerBuffers are the bytes and the decoded events of the chunk being
// written, and the scan's, reused for the next: allocations of a few MiB
// per segment were a tenth of the recording gateway's garbage. Buffers
// grown past keepBufferBytes (a chunk of very large events) are let go
// once the segment is written. Only the writer goroutine uses them.
type writerBuffers struct {
	chunk   []byte
	spans   []recordSpan
	scratch []byte
	room    []Event
}

const keepBufferBytes = 8 << 20

// scan opens the segment file at path and indexes its records (reading it
// once, a buffer at a time). The caller closes the file.
func (wb *writerBuffers) scan(path string) (*os.File, segmentIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, segmentIndex{}, err
	}
	st, err := f.Stat()
	if err == nil {
		var idx segmentIndex
		idx, err = scanRecords(bufio.NewReaderSize(f, 64<<10), st.Size(), wb.scratch)
		wb.scratch = idx.scratch
		if err == nil {
			return f, idx, nil
		}
	}
	f.Close()
	return nil, segmentIndex{}, err
}

// events returns room for n decoded events.
func (wb *writerBuffers) events(n int) []Event {
	if cap(wb.room) < n {
		wb.room = make([]Event, 0, n)
	}
	return wb.room[:0]
}

// release drops what the last chunk decoded (its strings point into the
// chunk buffer) and the buffers that grew too large to keep.
func (wb *writerBuffers) release() {
	clear(wb.room[:cap(wb.room)])
	if cap(wb.chunk) > keepBufferBytes {
		wb.chunk = nil
	}
	if cap(wb.scratch) > keepBufferBytes {
		wb.scratch = nil
	}
	if int(unsafe.Sizeof(recordSpan{}))*cap(wb.spans) > keepBufferBytes {
		wb.spans = nil
	}
	if int(unsafe.Sizeof(Event{}))*cap(wb.room) > keepBufferBytes {
		wb.room = nil
	}
}
