// Package bundle reads and writes incident bundles: self-contained .mcptrail
// files holding the recorded events of a selection of requests, with the
// tools/list answer of each backend, so that an incident can be replayed on
// another machine without access to the recording store.
//
// The format is gzip-compressed JSON lines: one header line, then one line
// per event. See FORMAT.md for the field-by-field description.
package bundle

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// Format is the value of the header's "format" member.
const Format = "mcptrail-bundle"

// Version is the format version this package writes and reads.
const Version = 1

// MaxLineBytes caps one line (an event with its payloads) when reading.
const MaxLineBytes = 64 << 20

// Errors callers branch on.
var (
	// ErrNotBundle: the input is not an mcptrail bundle at all.
	ErrNotBundle = errors.New("not an mcptrail bundle")
	// ErrVersion: a bundle of a version this build cannot read.
	ErrVersion = errors.New("unsupported mcptrail bundle version")
)

// Header is the first line of a bundle.
type Header struct {
	// Format is always "mcptrail-bundle".
	Format string `json:"format"`
	// Version is the format version, 1.
	Version int `json:"version"`
	// Created is when the bundle was written (UTC).
	Created time.Time `json:"created"`
	// Generator names the program that wrote it, e.g. "mcptrail 0.3.0".
	Generator string `json:"generator,omitempty"`
	// ConfigHash is the sha256 (hex) of the gateway config in effect when
	// the events were recorded.
	ConfigHash string `json:"config_hash,omitempty"`
	// Selection records how the events were chosen.
	Selection Selection `json:"selection"`
	// Tools maps a backend namespace to the raw tools/list result it served.
	Tools map[string]json.RawMessage `json:"tools,omitempty"`
	// Events is the number of event lines that follow; a reader treats a
	// different count as a truncated or damaged bundle.
	EventCount int `json:"events"`
}

// Selection describes which events a bundle holds. All fields are optional.
type Selection struct {
	From       time.Time `json:"from,omitzero"` // earliest event time, inclusive
	To         time.Time `json:"to,omitzero"`   // latest event time, exclusive
	SessionIDs []string  `json:"session_ids,omitempty"`
	RequestIDs []string  `json:"request_ids,omitempty"`
	Servers    []string  `json:"servers,omitempty"`
	// Query is the filter as the user gave it, for humans.
	Query string `json:"query,omitempty"`
}

// Bundle is a header and its events, in recorded order.
type Bundle struct {
	Header
	Events []recorder.Event
}

// eventLine is a bundle's event line: the event's one JSON shape
// (recorder.EventJSON), its payloads spliced in verbatim by writeEvent so
// their bytes survive unchanged, or base64 when they cannot be.
type eventLine struct {
	recorder.EventJSON
	// ParamsB64 and ResultB64 carry payloads that are not single-line valid
	// JSON (cut at the cap, or pretty-printed), base64-encoded.
	ParamsB64 []byte `json:"params_b64,omitempty"`
	ResultB64 []byte `json:"result_b64,omitempty"`
}

// eventLineIn adds the verbatim payload members for decoding.
type eventLineIn struct {
	eventLine
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
}

func toLine(e *recorder.Event) eventLine {
	return eventLine{EventJSON: recorder.NewEventJSON(e)}
}

func (l *eventLineIn) toEvent() recorder.Event {
	e := l.EventJSON.Event()
	e.Params = payload(l.Params, l.ParamsB64)
	e.Result = payload(l.Result, l.ResultB64)
	return e
}

func payload(raw json.RawMessage, b64 []byte) []byte {
	if b64 != nil {
		return b64
	}
	if raw == nil {
		return nil
	}
	return []byte(raw)
}

// inline reports whether a payload can be embedded verbatim: valid JSON on a
// single line (a JSON line must not contain a newline).
func inline(p []byte) bool {
	return len(p) > 0 && !bytes.ContainsAny(p, "\r\n") &&
		len(bytes.TrimSpace(p)) == len(p) && json.Valid(p)
}

// Write writes b as a gzip-compressed bundle. Header.Format, Version and
// EventCount are filled in; Created defaults to now. Payload bytes are kept
// exactly as recorded.
func Write(w io.Writer, b *Bundle) error {
	zw := gzip.NewWriter(w)
	if err := WritePlain(zw, b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing bundle: closing gzip stream: %w", err)
	}
	return nil
}

// WritePlain writes b as uncompressed JSON lines (Read accepts both).
func WritePlain(w io.Writer, b *Bundle) error {
	h := b.Header
	h.Format, h.Version, h.EventCount = Format, Version, len(b.Events)
	if h.Created.IsZero() {
		h.Created = time.Now()
	}
	h.Created = h.Created.UTC()
	bw := bufio.NewWriter(w)
	if err := encodeLine(bw, h); err != nil {
		return fmt.Errorf("writing bundle header: %w", err)
	}
	for i := range b.Events {
		if err := writeEvent(bw, &b.Events[i]); err != nil {
			return fmt.Errorf("writing bundle event %d (%s): %w", i, b.Events[i].EventID, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	return nil
}

func encodeLine(w *bufio.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v) // Encode appends the newline
}

func writeEvent(w *bufio.Writer, e *recorder.Event) error {
	l := toLine(e)
	var params, result []byte
	if e.Params != nil {
		if inline(e.Params) {
			params = e.Params
		} else {
			l.ParamsB64 = e.Params
		}
	}
	if e.Result != nil {
		if inline(e.Result) {
			result = e.Result
		} else {
			l.ResultB64 = e.Result
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return err
	}
	line := bytes.TrimRight(buf.Bytes(), "\n")
	line = line[:len(line)-1] // drop '}' to splice payloads in
	if _, err := w.Write(line); err != nil {
		return err
	}
	if params != nil {
		w.WriteString(`,"params":`)
		w.Write(params)
	}
	if result != nil {
		w.WriteString(`,"result":`)
		w.Write(result)
	}
	_, err := w.WriteString("}\n")
	return err
}

// Read reads a bundle written by Write (gzip) or WritePlain. A stream that is
// not a bundle gives an error wrapping ErrNotBundle; a bundle of another
// version one wrapping ErrVersion. Errors name the line they concern.
func Read(r io.Reader) (*Bundle, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(2)
	var src io.Reader = br
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading bundle: opening gzip stream: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading bundle header: %w", err)
		}
		return nil, fmt.Errorf("reading bundle: empty input: %w", ErrNotBundle)
	}
	var probe struct {
		Format  *string `json:"format"`
		Version *int    `json:"version"`
	}
	if err := json.Unmarshal(sc.Bytes(), &probe); err != nil || probe.Format == nil {
		return nil, fmt.Errorf("reading bundle header: first line is not a bundle header: %w", ErrNotBundle)
	}
	if *probe.Format != Format {
		return nil, fmt.Errorf("reading bundle header: format %q, want %q: %w", *probe.Format, Format, ErrNotBundle)
	}
	if probe.Version == nil || *probe.Version != Version {
		v := "missing"
		if probe.Version != nil {
			v = fmt.Sprint(*probe.Version)
		}
		return nil, fmt.Errorf("reading bundle header: version %s, this build reads version %d: %w", v, Version, ErrVersion)
	}
	b := &Bundle{}
	if err := json.Unmarshal(sc.Bytes(), &b.Header); err != nil {
		return nil, fmt.Errorf("reading bundle header: %w", err)
	}
	if b.EventCount < 0 {
		return nil, fmt.Errorf("reading bundle header: negative event count %d", b.EventCount)
	}
	line := 1
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l eventLineIn
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("reading bundle line %d: %w", line, err)
		}
		if l.Params != nil && l.ParamsB64 != nil || l.Result != nil && l.ResultB64 != nil {
			return nil, fmt.Errorf("reading bundle line %d: payload given both verbatim and as base64", line)
		}
		b.Events = append(b.Events, l.toEvent())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading bundle line %d: %w", line+1, err)
	}
	if len(b.Events) != b.EventCount {
		return nil, fmt.Errorf("reading bundle: header announces %d events, found %d (truncated or damaged)", b.EventCount, len(b.Events))
	}
	return b, nil
}
