// Package sse reads text/event-stream bodies (the SSE framing of MCP's
// streamable HTTP and legacy SSE transports).
package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Read parses a text/event-stream and calls fn with each event's id and
// data (data lines joined by "\n"); events without data (comments,
// keep-alives, retry hints) are skipped. It stops when fn returns false or
// the stream ends (nil error) and returns the last event id seen.
// maxEvent bounds one event's size.
func Read(r io.Reader, maxEvent int, fn func(id, data []byte) bool) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEvent+16)
	var (
		data, id []byte
		hasData  bool
		lastID   string
	)
	dispatch := func() bool {
		defer func() { data, hasData, id = data[:0], false, nil }()
		if id != nil {
			lastID = string(id)
		}
		if !hasData {
			return true
		}
		if len(data) > maxEvent {
			return true
		}
		return fn([]byte(lastID), data)
	}
	for sc.Scan() {
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(line) == 0 {
			if !dispatch() {
				return lastID, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value, _ = bytes.CutPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
			if len(data) > maxEvent {
				return lastID, fmt.Errorf("SSE event exceeds %d bytes", maxEvent)
			}
		case "id":
			id = append([]byte{}, value...)
		}
	}
	if err := sc.Err(); err != nil {
		return lastID, fmt.Errorf("reading SSE stream: %w", err)
	}
	dispatch() // a final event without its blank line
	return lastID, nil
}
