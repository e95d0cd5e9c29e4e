package recorder

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"
)

func fullEvent() Event {
	return Event{
		EventID: "01JEVENT0000000000000000000", RequestID: "01JREQ", SessionID: "sess-1",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		Hop: HopUpstream, Seq: 3, TimeNs: 1764000000123456789, DurationUs: 1500, QueueUs: -1,
		ConnectUs: 20, TTFBUs: 900, Method: "tools/call", Server: "crm", Target: "crm.search",
		RPCID: `"abc"`, Principal: "alice", AuthDecision: "allowed", AuthRule: "token:ops",
		RouteRule: "crm.*", Backend: "crm-2", Attempt: 2, Fallback: true,
		Outcome: OutcomeJSONRPCError, ErrorCode: -32603, ErrorMessage: "internal «é» error",
		RequestBytes: 1 << 31, ResponseBytes: 77, ClientName: "claude", ClientVersion: "1.0",
		ProtocolVersion: "2025-06-18", UpstreamVersion: "2025-03-26", GatewayInstance: "gw-a",
		GatewayVersion: "v0.1.0", ConfigHash: "deadbeef", RedactionVersion: "r1", RedactionCount: 65535,
		Params: []byte(`{"name":"search"}`), Result: []byte{}, PayloadTruncated: true,
		ParamsSHA256: "aa", ResultSHA256: "bb",
		Attrs: []Attr{{"k", "v"}, {"", ""}},
	}
}

func TestEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
	}{
		{"zero", Event{}},
		{"full", fullEvent()},
		{"nil vs empty payload", Event{Params: nil, Result: []byte{}}},
		{"extremes", Event{TimeNs: -1 << 63, DurationUs: 1<<63 - 1, Seq: 1<<32 - 1, ErrorCode: -1 << 31}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendEvent(nil, &tt.ev)
			var got Event
			if err := DecodeEvent(b, &got); err != nil {
				t.Fatalf("DecodeEvent(AppendEvent(ev)) error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.ev) {
				t.Errorf("DecodeEvent(AppendEvent(ev)) = %+v, want %+v", got, tt.ev)
			}
			if (got.Params == nil) != (tt.ev.Params == nil) || (got.Result == nil) != (tt.ev.Result == nil) {
				t.Errorf("nil-ness of payloads not preserved")
			}
		})
	}
}

func TestDecodeEventRejectsEveryTruncation(t *testing.T) {
	ev := fullEvent()
	b := AppendEvent(nil, &ev)
	for i := range len(b) {
		var got Event
		if err := DecodeEvent(b[:i], &got); err == nil {
			t.Fatalf("DecodeEvent(first %d of %d bytes) = nil error, want error", i, len(b))
		}
	}
	if err := DecodeEvent(append(b, 0), new(Event)); err == nil {
		t.Errorf("DecodeEvent(with trailing byte) = nil error, want error")
	}
	bad := bytes.Clone(b)
	bad[0] = 99
	if err := DecodeEvent(bad, new(Event)); err == nil {
		t.Errorf("DecodeEvent(unknown version) = nil error, want error")
	}
}

func TestDecodedBytesAreIndependent(t *testing.T) {
	ev := fullEvent()
	b := AppendEvent(nil, &ev)
	var got Event
	if err := DecodeEvent(b, &got); err != nil {
		t.Fatal(err)
	}
	clear(b)
	got.Params[0] = 'X'
	if got.Method != "tools/call" {
		t.Errorf("Method = %q after clobbering input and Params, want tools/call", got.Method)
	}
}

func segmentOf(evs ...Event) []byte {
	b := segmentHeader(2)
	for i := range evs {
		b = AppendRecord(b, &evs[i])
	}
	return b
}

func TestDecodeSegment(t *testing.T) {
	a, b, c := Event{EventID: "a"}, Event{EventID: "b"}, Event{EventID: "c"}
	whole := segmentOf(a, b, c)
	recLen := len(AppendRecord(nil, &a))
	tests := []struct {
		name      string
		data      []byte
		wantIDs   []string
		skipped   int
		tornBytes int
		wantErr   bool
	}{
		{"whole", whole, []string{"a", "b", "c"}, 0, 0, false},
		{"header only", segmentHeader(2), nil, 0, 0, false},
		{"torn tail", whole[:len(whole)-3], []string{"a", "b"}, 0, recLen - 3, false},
		{"torn record header", whole[:len(whole)-recLen+5], []string{"a", "b"}, 0, 5, false},
		{"corrupt middle payload", func() []byte {
			d := bytes.Clone(whole)
			d[segmentHeaderLen+recLen+recordHeaderLen+2] ^= 0xff
			return d
		}(), []string{"a", "c"}, 1, 0, false},
		{"checksum holds, encoding does not", func() []byte {
			d := bytes.Clone(whole)
			rec := d[segmentHeaderLen+recLen:]
			rec[recordHeaderLen] = codecVersion + 1 // a newer format
			binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(rec[recordHeaderLen:recLen], castagnoli))
			return d
		}(), []string{"a", "c"}, 1, 0, false},
		{"length past end", func() []byte {
			d := bytes.Clone(whole)
			binary.LittleEndian.PutUint32(d[segmentHeaderLen+recLen:], 1<<30)
			return d
		}(), []string{"a"}, 0, 2 * recLen, false},
		{"bad magic", append([]byte("XXXXXXXX"), whole[8:]...), nil, 0, 0, true},
		{"bad header crc", func() []byte { d := bytes.Clone(whole); d[9] ^= 1; return d }(), nil, 0, 0, true},
		{"short", whole[:5], nil, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeSegment(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodeSegment error = %v, wantErr %v", err, tt.wantErr)
			}
			var ids []string
			for _, e := range c.events {
				ids = append(ids, e.EventID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) || c.skipped != tt.skipped || c.tornBytes != tt.tornBytes {
				t.Errorf("decodeSegment = ids %v skipped %d torn %d, want %v %d %d",
					ids, c.skipped, c.tornBytes, tt.wantIDs, tt.skipped, tt.tornBytes)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	full := fullEvent()
	f.Add(AppendEvent(nil, &full))
	f.Add(AppendEvent(nil, &Event{}))
	f.Add([]byte{codecVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev Event
		if err := DecodeEvent(b, &ev); err != nil {
			if !reflect.DeepEqual(ev, Event{}) {
				t.Fatalf("DecodeEvent failed but left a non-zero event")
			}
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		var again Event
		if err := DecodeEvent(AppendEvent(nil, &ev), &again); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if !reflect.DeepEqual(ev, again) {
			t.Fatalf("round trip changed the event: %+v vs %+v", ev, again)
		}
	})
}

func FuzzDecodeSegment(f *testing.F) {
	f.Add(segmentOf(Event{EventID: "a"}, fullEvent()))
	f.Add(segmentHeader(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeSegment(b)
		if err != nil {
			return
		}
		if c.batchSize <= 0 || c.tornBytes > len(b) {
			t.Fatalf("decodeSegment = batch %d torn %d for %d bytes", c.batchSize, c.tornBytes, len(b))
		}
	})
}

func BenchmarkAppendEvent(b *testing.B) {
	ev := fullEvent()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRecord(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
	if len(buf) < 200 {
		b.Fatalf("record of %d bytes is implausibly small", len(buf))
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	ev := fullEvent()
	buf := AppendEvent(nil, &ev)
	var got Event
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := DecodeEvent(buf, &got); err != nil {
			b.Fatal(err)
		}
	}
	if got.Target != ev.Target {
		b.Fatalf("decoded Target = %q", got.Target)
	}
}

// TestEventCloneSharesNothing: a clone of an event decoded in place (its
// strings and payloads pointing into a segment's bytes, as Writers get
// them) survives those bytes being reused, field for field.
func TestEventCloneSharesNothing(t *testing.T) {
	// Every string field set, by reflection, so that a field added to
	// Event (and to the codec) but not to Clone fails here.
	ev := fullEvent()
	rv := reflect.ValueOf(&ev).Elem()
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.String {
			f.SetString(rv.Type().Field(i).Name + "-value")
		}
	}
	buf := AppendEvent(nil, &ev)
	var inPlace Event
	if err := decodeEvent(unsafeString(buf), &inPlace, true); err != nil {
		t.Fatal(err)
	}
	want := inPlace.Clone()
	if !reflect.DeepEqual(want, ev) {
		t.Fatalf("Clone = %+v, want %+v", want, ev)
	}
	for i := range buf {
		buf[i] = 'X' // the writer's buffer, reused for the next segment
	}
	if !reflect.DeepEqual(want, ev) {
		t.Fatalf("clone changed with the bytes it was decoded from: %+v, want %+v", want, ev)
	}
}
