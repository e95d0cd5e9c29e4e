package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unsafe"
)

// The spool stores each Event as one record:
//
//	uint32 LE  payload length
//	uint32 LE  CRC32C (Castagnoli) of the payload
//	payload    AppendEvent encoding
//
// The payload starts with a format version byte, then every field of Event
// in declaration order: strings and byte slices as uvarint length + bytes
// (byte slices store length+1 so that nil and empty stay distinct), integers
// as (zig-zag) varints, bools as one byte. The encoding is positional, so a
// new Event field needs a new codecVersion.

const (
	codecVersion    = 1
	recordHeaderLen = 8
	// maxRecordLen bounds a single record; anything larger in a length
	// field is treated as corruption rather than allocated.
	maxRecordLen = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCodec is wrapped by every decoding error.
var errCodec = errors.New("decoding spool record")

// AppendEvent appends the binary encoding of ev to dst and returns the
// extended slice. It never fails and does not allocate beyond growing dst.
func AppendEvent(dst []byte, ev *Event) []byte {
	dst = append(dst, codecVersion)
	dst = appendString(dst, ev.EventID)
	dst = appendString(dst, ev.RequestID)
	dst = appendString(dst, ev.SessionID)
	dst = appendString(dst, ev.TraceID)
	dst = appendString(dst, ev.SpanID)
	dst = append(dst, byte(ev.Hop))
	dst = binary.AppendUvarint(dst, uint64(ev.Seq))
	dst = binary.AppendVarint(dst, ev.TimeNs)
	dst = binary.AppendVarint(dst, ev.DurationUs)
	dst = binary.AppendVarint(dst, ev.QueueUs)
	dst = binary.AppendVarint(dst, ev.ConnectUs)
	dst = binary.AppendVarint(dst, ev.TTFBUs)
	dst = appendString(dst, ev.Method)
	dst = appendString(dst, ev.Server)
	dst = appendString(dst, ev.Target)
	dst = appendString(dst, ev.RPCID)
	dst = appendString(dst, ev.Principal)
	dst = appendString(dst, ev.AuthDecision)
	dst = appendString(dst, ev.AuthRule)
	dst = appendString(dst, ev.RouteRule)
	dst = appendString(dst, ev.Backend)
	dst = append(dst, ev.Attempt, boolByte(ev.Fallback), byte(ev.Outcome))
	dst = binary.AppendVarint(dst, int64(ev.ErrorCode))
	dst = appendString(dst, ev.ErrorMessage)
	dst = binary.AppendUvarint(dst, uint64(ev.RequestBytes))
	dst = binary.AppendUvarint(dst, uint64(ev.ResponseBytes))
	dst = appendString(dst, ev.ClientName)
	dst = appendString(dst, ev.ClientVersion)
	dst = appendString(dst, ev.ProtocolVersion)
	dst = appendString(dst, ev.UpstreamVersion)
	dst = appendString(dst, ev.GatewayInstance)
	dst = appendString(dst, ev.GatewayVersion)
	dst = appendString(dst, ev.ConfigHash)
	dst = appendString(dst, ev.RedactionVersion)
	dst = binary.AppendUvarint(dst, uint64(ev.RedactionCount))
	dst = appendBytes(dst, ev.Params)
	dst = appendBytes(dst, ev.Result)
	dst = append(dst, boolByte(ev.PayloadTruncated))
	dst = appendString(dst, ev.ParamsSHA256)
	dst = appendString(dst, ev.ResultSHA256)
	dst = binary.AppendUvarint(dst, uint64(len(ev.Attrs)))
	for _, a := range ev.Attrs {
		dst = appendString(dst, a.Key)
		dst = appendString(dst, a.Value)
	}
	return dst
}

// AppendRecord appends a framed, checksummed record holding ev to dst.
func AppendRecord(dst []byte, ev *Event) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordHeaderLen)...)
	dst = AppendEvent(dst, ev)
	payload := dst[start+recordHeaderLen:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// DecodeEvent decodes one AppendEvent payload into ev, overwriting every
// field. Strings share one copy of the payload, so a decoded Event costs a
// few allocations however many fields it has; ev does not alias b.
func DecodeEvent(b []byte, ev *Event) error {
	// One immutable copy; every string field is a substring of it. Byte
	// slices get their own copies so that consumers may modify them.
	return decodeEvent(string(b), ev, false)
}

// decodeEvent is DecodeEvent on s, which the strings of ev share. With
// alias, ev's byte slices point into s too (no copy): for the writer,
// which decodes records of a segment file it never modifies, and hands
// them to a Writer that must not modify them either.
func decodeEvent(s string, ev *Event, alias bool) error {
	if len(s) == 0 {
		return fmt.Errorf("%w: empty payload", errCodec)
	}
	if s[0] != codecVersion {
		return fmt.Errorf("%w: unknown format version %d", errCodec, s[0])
	}
	d := decoder{s: s, off: 1, alias: alias}
	*ev = Event{}
	ev.EventID = d.str()
	ev.RequestID = d.str()
	ev.SessionID = d.str()
	ev.TraceID = d.str()
	ev.SpanID = d.str()
	ev.Hop = Hop(d.byte())
	ev.Seq = uint32(d.uvarint(1<<32 - 1))
	ev.TimeNs = d.varint()
	ev.DurationUs = d.varint()
	ev.QueueUs = d.varint()
	ev.ConnectUs = d.varint()
	ev.TTFBUs = d.varint()
	ev.Method = d.str()
	ev.Server = d.str()
	ev.Target = d.str()
	ev.RPCID = d.str()
	ev.Principal = d.str()
	ev.AuthDecision = d.str()
	ev.AuthRule = d.str()
	ev.RouteRule = d.str()
	ev.Backend = d.str()
	ev.Attempt = d.byte()
	ev.Fallback = d.bool()
	ev.Outcome = Outcome(d.byte())
	code := d.varint()
	if code < -1<<31 || code > 1<<31-1 {
		d.fail("error code out of range")
	}
	ev.ErrorCode = int32(code)
	ev.ErrorMessage = d.str()
	ev.RequestBytes = uint32(d.uvarint(1<<32 - 1))
	ev.ResponseBytes = uint32(d.uvarint(1<<32 - 1))
	ev.ClientName = d.str()
	ev.ClientVersion = d.str()
	ev.ProtocolVersion = d.str()
	ev.UpstreamVersion = d.str()
	ev.GatewayInstance = d.str()
	ev.GatewayVersion = d.str()
	ev.ConfigHash = d.str()
	ev.RedactionVersion = d.str()
	ev.RedactionCount = uint16(d.uvarint(1<<16 - 1))
	ev.Params = d.bytes()
	ev.Result = d.bytes()
	ev.PayloadTruncated = d.bool()
	ev.ParamsSHA256 = d.str()
	ev.ResultSHA256 = d.str()
	// Each Attr takes at least two bytes, which bounds the allocation.
	n := d.uvarint(1<<64 - 1)
	if d.err == "" && n > uint64(len(s)-d.off)/2 {
		d.fail("attribute count past end of record")
	}
	if n > 0 && d.err == "" {
		ev.Attrs = make([]Attr, n)
		for i := range ev.Attrs {
			ev.Attrs[i].Key = d.str()
			ev.Attrs[i].Value = d.str()
		}
	}
	if d.err == "" && d.off != len(s) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(s)-d.off))
	}
	if d.err != "" {
		*ev = Event{}
		return fmt.Errorf("%w: %s at byte %d", errCodec, d.err, d.off)
	}
	return nil
}

// decoder reads fields from s; after the first error every read returns a
// zero value and err keeps the first message.
type decoder struct {
	s     string
	off   int
	err   string
	alias bool // bytes returns slices of s instead of copies
}

func (d *decoder) fail(msg string) {
	if d.err == "" {
		d.err = msg
	}
	d.off = len(d.s)
}

func (d *decoder) byte() byte {
	if d.off >= len(d.s) {
		d.fail("unexpected end of record")
		return 0
	}
	c := d.s[d.off]
	d.off++
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("invalid bool")
		return false
	}
}

func (d *decoder) uvarint(limit uint64) uint64 {
	// Most varints (lengths, small counts) are one byte.
	if d.off < len(d.s) && d.s[d.off] < 0x80 {
		x := uint64(d.s[d.off])
		if x <= limit {
			d.off++
			return x
		}
	}
	var x uint64
	var shift uint
	for i := 0; ; i++ {
		if d.off >= len(d.s) {
			d.fail("unexpected end of record in varint")
			return 0
		}
		c := d.s[d.off]
		d.off++
		if i == binary.MaxVarintLen64-1 && c > 1 {
			d.fail("varint overflows 64 bits")
			return 0
		}
		if c < 0x80 {
			x |= uint64(c) << shift
			break
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	if x > limit {
		d.fail(fmt.Sprintf("value %d exceeds %d", x, limit))
		return 0
	}
	return x
}

func (d *decoder) varint() int64 {
	ux := d.uvarint(1<<64 - 1)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) str() string {
	n := d.uvarint(1<<64 - 1)
	if d.err == "" && n > uint64(len(d.s)-d.off) {
		d.fail("string length past end of record")
	}
	if d.err != "" {
		return ""
	}
	v := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint(1<<64 - 1)
	if d.err == "" && n > uint64(len(d.s)-d.off)+1 {
		d.fail("byte slice length past end of record")
	}
	if d.err != "" || n == 0 {
		return nil
	}
	n--
	v := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	if d.alias && n > 0 {
		return unsafe.Slice(unsafe.StringData(v), int(n)) // cap = len: an append copies
	}
	return []byte(v)
}
