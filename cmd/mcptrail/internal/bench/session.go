package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// session is one MCP streamable HTTP session spoken as raw JSON-RPC.
type session struct {
	hc       *http.Client
	url      string
	token    string
	protocol string

	id         string // Mcp-Session-Id, empty for stateless servers
	negotiated string // protocol version the server answered
	nextID     int64
}

// rpcResponse is the part of a JSON-RPC response the bench looks at.
type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *session) initialize(ctx context.Context) error {
	params, err := json.Marshal(map[string]any{
		"protocolVersion": s.protocol,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "mcptrail-bench", "version": "1"},
	})
	if err != nil {
		return fmt.Errorf("encoding initialize: %w", err)
	}
	body := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":%s}`, params)
	resp, hdr, err := s.post(ctx, body, true)
	if err != nil {
		return fmt.Errorf("initializing: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("initializing: JSON-RPC error %d: %s", resp.Error.Code, resp.Error.Message)
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(resp.Result, &res); err != nil {
		return fmt.Errorf("decoding initialize result: %w", err)
	}
	s.negotiated = res.ProtocolVersion
	s.id = hdr.Get("Mcp-Session-Id")
	if _, _, err := s.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), false); err != nil {
		return fmt.Errorf("sending notifications/initialized: %w", err)
	}
	return nil
}

// callTool calls tool with {"message": payload} and checks that payload
// comes back in a text content item. buf is scratch space for the request
// body and is returned for reuse.
func (s *session) callTool(ctx context.Context, buf []byte, tool, payload string) ([]byte, error) {
	s.nextID++
	buf = append(buf, `{"jsonrpc":"2.0","id":`...)
	buf = strconv.AppendInt(buf, s.nextID, 10)
	buf = append(buf, `,"method":"tools/call","params":{"name":`...)
	buf = appendJSONString(buf, tool)
	buf = append(buf, `,"arguments":{"message":`...)
	buf = strconv.AppendQuote(buf, payload) // payload is ASCII, so Go quoting is valid JSON
	buf = append(buf, `}}}`...)
	resp, _, err := s.post(ctx, buf, true)
	if err != nil {
		return buf, err
	}
	if resp.Error != nil {
		return buf, fmt.Errorf("tools/call %s: JSON-RPC error %d: %s", tool, resp.Error.Code, resp.Error.Message)
	}
	if got := string(resp.ID); got != strconv.FormatInt(s.nextID, 10) {
		return buf, fmt.Errorf("tools/call %s: response id %s, want %d", tool, got, s.nextID)
	}
	var res struct {
		IsError bool `json:"isError"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(resp.Result, &res); err != nil {
		return buf, fmt.Errorf("tools/call %s: decoding result: %w", tool, err)
	}
	if res.IsError {
		return buf, fmt.Errorf("tools/call %s: tool error: %.200s", tool, firstText(res.Content))
	}
	for _, c := range res.Content {
		if c.Type == "text" && strings.Contains(c.Text, payload) {
			return buf, nil
		}
	}
	return buf, fmt.Errorf("tools/call %s: payload did not come back (got %.80q)", tool, firstText(res.Content))
}

func firstText(cs []struct {
	Type string `json:"type"`
	Text string `json:"text"`
}) string {
	if len(cs) == 0 {
		return ""
	}
	return cs[0].Text
}

// close ends the session with DELETE; errors are ignored because servers
// may not support it (405) and the run is over anyway.
func (s *session) close(ctx context.Context) {
	if s.id == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.url, nil)
	if err != nil {
		return
	}
	s.setHeaders(req)
	resp, err := s.hc.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func (s *session) setHeaders(req *http.Request) {
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
	}
	if s.negotiated != "" {
		req.Header.Set("Mcp-Protocol-Version", s.negotiated)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
}

// post sends one message. For requests (wantResponse) it returns the
// response with the matching id, reading either a JSON body or an SSE
// stream (skipping notifications); for notifications it expects 202/200.
func (s *session) post(ctx context.Context, body []byte, wantResponse bool) (rpcResponse, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return rpcResponse{}, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.setHeaders(req)
	resp, err := s.hc.Do(req)
	if err != nil {
		return rpcResponse{}, nil, err
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
		resp.Body.Close()
	}()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return rpcResponse{}, resp.Header, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	if !wantResponse {
		return rpcResponse{}, resp.Header, nil
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		var r rpcResponse
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return rpcResponse{}, resp.Header, fmt.Errorf("decoding JSON response: %w", err)
		}
		return r, resp.Header, nil
	case "text/event-stream":
		r, err := readSSEResponse(resp.Body)
		return r, resp.Header, err
	}
	return rpcResponse{}, resp.Header, fmt.Errorf("unexpected Content-Type %q", resp.Header.Get("Content-Type"))
}

// readSSEResponse reads SSE events until one carries a JSON-RPC response
// (an id and no method); notifications and server requests are skipped.
func readSSEResponse(r io.Reader) (rpcResponse, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	var data []byte
	for {
		more := sc.Scan()
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if !more || len(line) == 0 {
			if len(bytes.TrimSpace(data)) > 0 { // empty data: a priming event carrying only an id
				var m rpcResponse
				if err := json.Unmarshal(data, &m); err != nil {
					return rpcResponse{}, fmt.Errorf("decoding SSE event: %w", err)
				}
				if m.Method == "" && len(m.ID) > 0 {
					return m, nil
				}
			}
			data = data[:0]
			if !more {
				if err := sc.Err(); err != nil {
					return rpcResponse{}, fmt.Errorf("reading SSE stream: %w", err)
				}
				return rpcResponse{}, errors.New("SSE stream ended without a response")
			}
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v, _ = bytes.CutPrefix(v, []byte(" "))
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
		}
	}
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // never fails for a string
	return append(dst, b...)
}
