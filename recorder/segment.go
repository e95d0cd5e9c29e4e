package recorder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A spool directory holds, per segment (named by a ULID so that names sort
// in creation order and never repeat across restarts):
//
//	<id>.open     the active segment, still being appended to
//	<id>.seg      a sealed segment, waiting for the writer
//	<id>.ack      how many chunks of <id>.seg the writer confirmed
//	<id>.corrupt  a segment whose header could not be read, kept for forensics
//	<id>.requeued a quarantined batch handed back by Requeue, adopted as .seg
//	quarantine/   batches the storage rejected for good (see QuarantineDir)
//
// A segment starts with a 16-byte header: the magic, the batch size used to
// cut it into chunks (fixed at creation so that chunk tokens stay the same
// across restarts even if the configuration changes) and a CRC32C of both.

const (
	extOpen    = ".open"
	extSealed  = ".seg"
	extAck     = ".ack"
	extCorrupt = ".corrupt"

	segmentHeaderLen = 16
)

var segmentMagic = [8]byte{'M', 'C', 'P', 'T', 'S', 'P', 'L', '1'}

var errSegmentHeader = errors.New("invalid segment header")

func segmentHeader(batchSize int) []byte {
	h := make([]byte, segmentHeaderLen)
	copy(h, segmentMagic[:])
	binary.LittleEndian.PutUint32(h[8:], uint32(batchSize))
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], castagnoli))
	return h
}

func parseSegmentHeader(b []byte) (batchSize int, err error) {
	if len(b) < segmentHeaderLen || !bytes.Equal(b[:8], segmentMagic[:]) {
		return 0, errSegmentHeader
	}
	if crc32.Checksum(b[:12], castagnoli) != binary.LittleEndian.Uint32(b[12:]) {
		return 0, errSegmentHeader
	}
	n := int(binary.LittleEndian.Uint32(b[8:]))
	if n <= 0 {
		return 0, errSegmentHeader
	}
	return n, nil
}

// segmentContents is what a sealed segment holds.
type segmentContents struct {
	batchSize int
	events    []Event
	// skipped counts records whose checksum or encoding was bad.
	skipped int
	// tornBytes counts trailing bytes that did not form a whole record.
	tornBytes int
}

// decodeSegment parses a whole segment file into events that do not alias
// b (see scanSegment for what it accepts).
func decodeSegment(b []byte) (segmentContents, error) {
	idx, err := scanSegment(b)
	if err != nil {
		return segmentContents{}, err
	}
	c := segmentContents{batchSize: idx.batchSize, skipped: idx.skipped, tornBytes: idx.tornBytes}
	if len(idx.records) > 0 {
		c.events = make([]Event, 0, len(idx.records))
		for _, r := range idx.records {
			c.events = append(c.events, Event{})
			if DecodeEvent(r.payload(b), &c.events[len(c.events)-1]) != nil {
				c.events = c.events[:len(c.events)-1]
				c.skipped++
			}
		}
	}
	return c, nil
}

// segmentIndex locates the valid records of a segment file, so that the
// writer decodes one chunk at a time instead of the whole segment.
type segmentIndex struct {
	batchSize int
	records   []recordSpan // the records that pass their checksum, in order
	// skipped counts records whose checksum was bad.
	skipped int
	// tornBytes counts trailing bytes that did not form a whole record.
	tornBytes int
	// scratch is scanRecords' buffer, for the next scan to reuse.
	scratch []byte
}

// recordSpan is where a record's payload lies in its segment file.
type recordSpan struct{ off, n int }

func (r recordSpan) payload(b []byte) []byte { return b[r.off : r.off+r.n] }

// scanSegment checks every record's checksum. A record with a bad checksum
// is skipped; a record whose length runs past the end of the file is a
// torn tail (a crash mid-write) and ends the scan. Only a bad header is an
// error. Records are decoded later, chunk by chunk (decodeChunk), which
// skips one whose checksum holds but whose encoding does not: written by
// a newer version, or a bug.
func scanSegment(b []byte) (segmentIndex, error) {
	return scanRecords(bytes.NewReader(b), int64(len(b)), nil)
}

// scanRecords is scanSegment over a reader of the size-byte segment file,
// read once from the start, so that the file need not be in memory;
// scratch holds each record's payload while its checksum is computed and
// is returned, grown, for reuse.
func scanRecords(r io.Reader, size int64, scratch []byte) (segmentIndex, error) {
	var idx segmentIndex
	var hdr [segmentHeaderLen]byte
	if size < segmentHeaderLen {
		return idx, errSegmentHeader
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return idx, err
	}
	bs, err := parseSegmentHeader(hdr[:])
	if err != nil {
		return idx, err
	}
	idx.batchSize = bs
	// Sized for records of ~600 bytes, the recorded hop of a small call.
	idx.records = make([]recordSpan, 0, size/512)
	off := int64(segmentHeaderLen)
	var rh [recordHeaderLen]byte
	for off < size {
		if size-off < recordHeaderLen {
			idx.tornBytes = int(size - off)
			break
		}
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			return idx, err
		}
		n := int(binary.LittleEndian.Uint32(rh[:]))
		sum := binary.LittleEndian.Uint32(rh[4:])
		if n > maxRecordLen || int64(n) > size-off-recordHeaderLen {
			idx.tornBytes = int(size - off)
			break
		}
		var payload []byte
		if br, ok := r.(*bufio.Reader); ok && n <= br.Size() {
			// Checksummed in the reader's buffer, not copied out of it.
			if payload, err = br.Peek(n); err == nil {
				_, err = br.Discard(n)
			}
		} else {
			if cap(scratch) < n {
				scratch = make([]byte, n)
			}
			payload = scratch[:n]
			_, err = io.ReadFull(r, payload)
		}
		if err != nil {
			return idx, err
		}
		rec := recordSpan{int(off) + recordHeaderLen, n}
		off += recordHeaderLen + int64(n)
		if crc32.Checksum(payload, castagnoli) != sum {
			idx.skipped++
			continue
		}
		idx.records = append(idx.records, rec)
	}
	idx.scratch = scratch
	return idx, nil
}

// readChunk reads the bytes of records, a run of a segment file's records
// in file order, into buf (grown as needed) and returns them with the
// records' spans made relative to it: decodeChunk over the two decodes
// the run without the rest of the file in memory.
func readChunk(f io.ReaderAt, records []recordSpan, buf []byte, spans []recordSpan) ([]byte, []recordSpan, error) {
	spans = spans[:0]
	if len(records) == 0 {
		return buf[:0], spans, nil
	}
	base := records[0].off
	last := records[len(records)-1]
	n := last.off + last.n - base
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if got, err := f.ReadAt(buf, int64(base)); err != nil && (err != io.EOF || got < n) {
		return buf, spans, err
	}
	for _, r := range records {
		spans = append(spans, recordSpan{r.off - base, r.n})
	}
	return buf, spans, nil
}

// decodeChunk decodes the records of a chunk into dst[:0], reusing its
// room, and counts those that do not decode (left out). The events alias
// b: b must not change while they are in use.
func decodeChunk(b []byte, records []recordSpan, dst []Event) (evs []Event, bad int) {
	dst = dst[:0]
	for _, r := range records {
		dst = append(dst, Event{})
		if decodeEvent(unsafeString(r.payload(b)), &dst[len(dst)-1], true) != nil {
			dst = dst[:len(dst)-1]
			bad++
		}
	}
	return dst, bad
}

// spoolFile is one segment found on disk at start-up.
type spoolFile struct {
	id   string
	ext  string
	size int64
}

// listSpool returns the segments in dir in creation order.
func listSpool(dir string) ([]spoolFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing spool directory %s: %w", dir, err)
	}
	var out []spoolFile
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || (ext != extOpen && ext != extSealed && ext != extRequeued) {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading spool file info %s: %w", name, err)
		}
		out = append(out, spoolFile{id: strings.TrimSuffix(name, ext), ext: ext, size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// readAck returns how many chunks of a segment were confirmed; a missing or
// unreadable checkpoint means none (resending is safe: tokens are stable).
func readAck(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// writeAck records n confirmed chunks. It is not fsynced: losing it only
// causes a resend with the same token, which the Writer deduplicates.
func writeAck(path string, n int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing ack checkpoint %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming ack checkpoint %s: %w", path, err)
	}
	return nil
}

// chunkToken is the idempotency token of chunk i of segment id.
func chunkToken(id string, i int) string { return id + "-" + strconv.Itoa(i) }

// streamToken names the batch of a segment's chunks from the i-th on,
// written as one (StreamWriter).
func streamToken(id string, i int) string { return id + "-s" + strconv.Itoa(i) }
