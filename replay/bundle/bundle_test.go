package bundle

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

var update = flag.Bool("update", false, "rewrite golden files: go test ./replay/bundle -update")

func sample() *Bundle {
	created := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	return &Bundle{
		Header: Header{
			Created:    created,
			Generator:  "mcptrail test",
			ConfigHash: "3f2a",
			Selection:  Selection{From: created.Add(-time.Hour), To: created, SessionIDs: []string{"s1"}, Query: "outcome != ok"},
			Tools: map[string]json.RawMessage{
				"everything": json.RawMessage(`{"tools":[{"name":"echo","inputSchema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}}]}`),
			},
		},
		Events: []recorder.Event{
			{EventID: "01E1", RequestID: "01R1", SessionID: "s1", Hop: recorder.HopInbound, Seq: 0, TimeNs: 1764000000000000000, DurationUs: 1500,
				Method: "tools/call", Server: "everything", Target: "everything.echo", RPCID: "7", ProtocolVersion: "2025-11-25",
				Params: []byte(`{"name":"everything.echo","arguments":{"message":"<hi> & «redacted:api_key:hmac:0123456789abcdef»"}}`)},
			{EventID: "01E2", RequestID: "01R1", SessionID: "s1", Hop: recorder.HopUpstream, Seq: 1, TimeNs: 1764000000000100000, DurationUs: 1200,
				Method: "tools/call", Server: "everything", Target: "everything.echo", Backend: "everything", Attempt: 1, UpstreamVersion: "2025-06-18",
				Params: []byte(`{"name":"echo","arguments":{"message":"<hi>"},"_meta":{"progressToken":1}}`),
				Result: []byte(`{"content":[{"type":"text","text":"Echo: <hi>"}],  "isError":false}`), // spacing kept verbatim
				Attrs:  []recorder.Attr{{Key: "k", Value: "v"}}},
			{EventID: "01E3", RequestID: "01R1", SessionID: "s1", Hop: recorder.HopResponse, Seq: 2, TimeNs: 1764000000001500000, DurationUs: 1500,
				Method: "tools/call", Server: "everything", Target: "everything.echo", Outcome: recorder.OutcomeJSONRPCError, ErrorCode: -32602,
				Result: []byte("{\n  \"code\": -32602,\n  \"message\": \"pretty\"\n}"), PayloadTruncated: false},
			{EventID: "01E4", RequestID: "01R2", Hop: recorder.HopUpstream, Method: "tools/call", Server: "everything", Outcome: recorder.OutcomeTransportError,
				Params: []byte(`{"name":"big","arguments":{"blob":"aaaa`), PayloadTruncated: true},
		},
	}
}

func TestGolden(t *testing.T) {
	var plain bytes.Buffer
	if err := WritePlain(&plain, sample()); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/small.golden.jsonl"
	if *update {
		if err := os.WriteFile(golden, plain.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./replay/bundle -update): %v", err)
	}
	if !bytes.Equal(plain.Bytes(), want) {
		t.Errorf("bundle differs from %s (run go test ./replay/bundle -update if intended):\n%s", golden, plain.Bytes())
	}
	// The golden file reads back to the sample.
	got, err := Read(bytes.NewReader(want))
	if err != nil {
		t.Fatalf("Read(golden): %v", err)
	}
	checkEqual(t, got, sample())
}

func checkEqual(t *testing.T, got, want *Bundle) {
	t.Helper()
	want.Format, want.Version, want.EventCount = Format, Version, len(want.Events)
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("header = %+v\nwant %+v", got.Header, want.Header)
	}
	if len(got.Events) != len(want.Events) {
		t.Fatalf("%d events, want %d", len(got.Events), len(want.Events))
	}
	for i := range want.Events {
		if !reflect.DeepEqual(got.Events[i], want.Events[i]) {
			t.Errorf("event %d =\n%+v\nwant\n%+v", i, got.Events[i], want.Events[i])
		}
	}
}

func TestRoundTripGzip(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	if b := buf.Bytes(); b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("Write output is not gzip: % x", b[:2])
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, got, sample())
	// Payload bytes are exactly as recorded, not re-encoded.
	if string(got.Events[1].Result) != `{"content":[{"type":"text","text":"Echo: <hi>"}],  "isError":false}` {
		t.Errorf("result bytes changed: %s", got.Events[1].Result)
	}
}

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		is      error
		wantMsg string
	}{
		{"empty", "", ErrNotBundle, "empty input"},
		{"not json", "hello\n", ErrNotBundle, "not a bundle header"},
		{"other format", `{"format":"other","version":1}` + "\n", ErrNotBundle, `format "other"`},
		{"future version", `{"format":"mcptrail-bundle","version":2}` + "\n", ErrVersion, "version 2, this build reads version 1"},
		{"missing version", `{"format":"mcptrail-bundle"}` + "\n", ErrVersion, "version missing"},
		{"gzip future version", gz(`{"format":"mcptrail-bundle","version":9}`), ErrVersion, "version 9"},
		{"truncated", `{"format":"mcptrail-bundle","version":1,"events":2}` + "\n" + `{"event_id":"a","hop":"inbound","outcome":"ok"}` + "\n", nil, "announces 2 events, found 1"},
		{"bad event line", `{"format":"mcptrail-bundle","version":1,"events":1}` + "\n" + `{"event_id":` + "\n", nil, "line 2"},
		{"both payload forms", `{"format":"mcptrail-bundle","version":1,"events":1}` + "\n" + `{"params":{},"params_b64":"e30="}` + "\n", nil, "both verbatim and as base64"},
		{"broken gzip", "\x1f\x8b\x08garbage", nil, "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tt.in))
			if err == nil {
				t.Fatal("Read: nil error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Read err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Read err = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	var plain, zipped bytes.Buffer
	_ = WritePlain(&plain, sample())
	_ = Write(&zipped, sample())
	f.Add(plain.Bytes())
	f.Add(zipped.Bytes())
	f.Add([]byte(`{"format":"mcptrail-bundle","version":1,"events":1}` + "\n" + `{"params":[1,2],"result_b64":"AAE="}`))
	f.Add([]byte(`{"format":"mcptrail-bundle","version":2}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := Read(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, b); err != nil {
			t.Fatalf("Write after Read: %v", err)
		}
		b2, err := Read(&out)
		if err != nil {
			t.Fatalf("Read after Write: %v", err)
		}
		if !reflect.DeepEqual(b.Events, b2.Events) && !(len(b.Events) == 0 && len(b2.Events) == 0) {
			t.Fatalf("round trip changed events:\n%+v\n%+v", b.Events, b2.Events)
		}
	})
}

func BenchmarkWriteRead(b *testing.B) {
	bd := sample()
	for len(bd.Events) < 1000 {
		bd.Events = append(bd.Events, bd.Events[:4]...)
	}
	var n int
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		if err := Write(&buf, bd); err != nil {
			b.Fatal(err)
		}
		got, err := Read(&buf)
		if err != nil {
			b.Fatal(err)
		}
		n += len(got.Events)
	}
	if n != b.N*len(bd.Events) {
		b.Fatalf("read %d events, want %d", n, b.N*len(bd.Events))
	}
}
