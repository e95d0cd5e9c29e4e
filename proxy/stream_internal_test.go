package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestStreamOfAClientThatStopsReadingEnds: a GET stream whose client stops
// reading ends once a write cannot complete, instead of holding its
// goroutine and connection forever. Fails before the fix: stream writes
// had no deadline.
func TestStreamOfAClientThatStopsReadingEnds(t *testing.T) {
	old := streamWriteTimeout
	streamWriteTimeout = 200 * time.Millisecond
	t.Cleanup(func() { streamWriteTimeout = old })
	g := testGateway(t)
	s := g.newSession("s1", nil)
	if err := g.sessions.add(s, config.Limits{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(c, "GET /mcp HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\nMcp-Session-Id: s1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stream to open", s.hasStream)
	// Never read: the socket buffers fill and a write blocks.
	msg := bytes.Repeat([]byte("x"), 64<<10)
	for !s.isClosed() && s.hasStream() {
		s.push(msg)
		if s.dropped.Load() > 0 {
			break // the queue is full too: the writer is blocked
		}
	}
	waitUntil(t, "the stream of a client that stopped reading to end", func() bool { return !s.hasStream() })
}
