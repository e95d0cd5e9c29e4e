package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// TestAnswerToAClientThatStopsReadingEnds: a POST whose client never reads
// a large answer ends (its connection is closed) once the write cannot
// complete within finalWriteTimeout. Fails before the fix: the handler
// blocked forever.
func TestAnswerToAClientThatStopsReadingEnds(t *testing.T) {
	old := finalWriteTimeout
	finalWriteTimeout = 300 * time.Millisecond
	t.Cleanup(func() { finalWriteTimeout = old })
	g := testGateway(t)
	g.conf().MaxBodyBytes = 64 << 20
	s := g.newSession("s2", nil)
	if err := g.sessions.add(s, config.Limits{}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	srv := httptest.NewUnstartedServer(g.Handler())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			close(closed)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	// ping is answered by the gateway itself; a huge id makes the answer
	// large enough to fill the socket buffers.
	id := `"` + strings.Repeat("i", 10<<20) + `"`
	body := `{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`
	req := "POST /mcp HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: s2\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	// Never read the answer.
	select {
	case <-closed:
	case <-time.After(60 * time.Second): // bounds a broken build only
		t.Fatal("the connection of a client that never reads its answer stays open")
	}
}
