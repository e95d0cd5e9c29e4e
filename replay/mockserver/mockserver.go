// Package mockserver serves recorded MCP backends for hop-isolated replay.
//
// Each recorded backend is exposed as a minimal streamable-HTTP MCP server
// at /{server}/mcp: POST carries one JSON-RPC message and gets one JSON
// response, or an SSE stream when the recorded call sent the client
// requests (sampling, elicitation, roots: sent again, each waiting for the
// answer the client POSTs back), log messages or progress; notifications
// and client responses get 202 Accepted; DELETE ends the session.
// initialize is answered from the recording (or the reconstruction
// replay.BackendHandshakes adds to it), or synthesized from the recorded
// protocol version and the methods that were recorded, and assigns an
// Mcp-Session-Id. List requests get the lists recorded for the client
// capability profile the session's initialize declared, when there are
// such. Everything else is answered from a match.Store, relaying the
// recorded result or error bytes unchanged; ping and list methods that were
// never recorded get an empty answer. On a miss the server either answers
// JSON-RPC error -32603 whose data names the closest recorded request, or
// hands the request to a forward hook.
package mockserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
)

// MissPolicy says what to do with a request that has no recorded answer.
type MissPolicy string

// Miss policies.
const (
	// MissError answers JSON-RPC error -32603 naming the closest recorded request.
	MissError MissPolicy = "error"
	// MissForward passes the request to Config.Forward (e.g. a live backend).
	MissForward MissPolicy = "forward"
)

// ForwardFunc answers a request that missed the recording. request is the
// JSON-RPC request as received; the returned bytes must be one JSON-RPC
// response message and are relayed unchanged.
type ForwardFunc func(ctx context.Context, server string, request []byte) (response []byte, err error)

// Config configures a Server.
type Config struct {
	// Miss is the miss policy: "error" (the default) or "forward".
	Miss MissPolicy
	// Forward is called on a miss when Miss is "forward"; required then.
	Forward ForwardFunc
	// ProtocolVersion is used in a synthesized initialize result when the
	// recording holds neither an initialize exchange nor a protocol version.
	// Default "2025-11-25".
	ProtocolVersion string
	// MaxBodyBytes caps a request body. Default 4 MiB.
	MaxBodyBytes int64
}

// Stats counts what the server answered.
type Stats struct {
	Requests  int64 `json:"requests"`  // JSON-RPC requests received
	Hits      int64 `json:"hits"`      // answered from the recording (incl. synthesized initialize)
	Misses    int64 `json:"misses"`    // no recorded answer
	Forwarded int64 `json:"forwarded"` // misses handed to Forward
}

// Server is the mock. It implements http.Handler and is safe for concurrent use.
type Server struct {
	store *match.Store
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux

	sessions sync.Map // session id → server name
	// profiles holds each session's client capability profile (the
	// match.ProfileKey of what its initialize declared).
	profiles sync.Map
	// pending holds the mock's requests to the client (recorded sampling,
	// elicitation, roots) that wait for the answer the client POSTs back:
	// JSON-RPC id → chan jsonrpc.Message.
	pending sync.Map
	reqSeq  atomic.Int64

	requests, hits, misses, forwarded atomic.Int64
}

var _ http.Handler = (*Server)(nil)

// New builds a mock serving the backends recorded in store.
func New(store *match.Store, cfg Config, log *slog.Logger) (*Server, error) {
	switch cfg.Miss {
	case "":
		cfg.Miss = MissError
	case MissError:
	case MissForward:
		if cfg.Forward == nil {
			return nil, errors.New("mockserver: miss policy forward needs a Forward func")
		}
	default:
		return nil, fmt.Errorf("mockserver: unknown miss policy %q (want error or forward)", cfg.Miss)
	}
	if cfg.ProtocolVersion == "" {
		cfg.ProtocolVersion = "2025-11-25"
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: store, cfg: cfg, log: log.With("component", "replay.mockserver")}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /{server}/mcp", s.post)
	s.mux.HandleFunc("DELETE /{server}/mcp", s.delete)
	s.mux.HandleFunc("GET /{server}/mcp", func(w http.ResponseWriter, r *http.Request) {
		// No server-initiated stream: the recording has nothing to push.
		w.Header().Set("Allow", "POST, DELETE")
		http.Error(w, "this replay mock serves no SSE stream", http.StatusMethodNotAllowed)
	})
	return s, nil
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Hits: s.hits.Load(), Misses: s.misses.Load(), Forwarded: s.forwarded.Load()}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Mcp-Session-Id")
	if owner, ok := s.sessions.Load(id); !ok || owner != r.PathValue("server") {
		http.Error(w, "unknown session", http.StatusNotFound)
		return
	}
	if _, ok := s.sessions.LoadAndDelete(id); !ok {
		http.Error(w, "unknown session", http.StatusNotFound)
		return
	}
	s.profiles.Delete(id)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) post(w http.ResponseWriter, r *http.Request) {
	server := r.PathValue("server")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		writeMessage(w, http.StatusRequestEntityTooLarge, jsonrpc.NewError(nil, jsonrpc.CodeRequestTooLarge, "reading request body: "+err.Error(), nil))
		return
	}
	msg, err := jsonrpc.Decode(body)
	if err != nil {
		code, id := jsonrpc.ErrorCode(err)
		writeMessage(w, http.StatusBadRequest, jsonrpc.NewError(id, code, err.Error(), nil))
		return
	}
	if msg.Kind() == jsonrpc.KindResponse {
		// The client's answer to a recorded request the mock sent.
		if ch, ok := s.pending.LoadAndDelete(string(msg.ID)); ok {
			ch.(chan jsonrpc.Message) <- msg
		}
	}
	if msg.Kind() != jsonrpc.KindRequest {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.requests.Add(1)
	log := s.log.With("server", server, "method", msg.Method, "rpc_id", jsonrpc.IDString(msg.ID))
	if sid := r.Header.Get("Mcp-Session-Id"); sid != "" && msg.Method != "initialize" {
		if owner, ok := s.sessions.Load(sid); !ok || owner != server {
			writeMessage(w, http.StatusNotFound, jsonrpc.NewError(msg.ID, jsonrpc.CodeInvalidRequest, "unknown or ended session", nil))
			return
		}
	}
	if !s.store.HasServer(server) && s.cfg.Miss != MissForward {
		writeMessage(w, http.StatusNotFound, jsonrpc.NewError(msg.ID, jsonrpc.CodeMethodNotFound,
			fmt.Sprintf("mcptrail replay: nothing was recorded for server %q", server), nil))
		return
	}

	if msg.Method == "initialize" {
		sid := newSessionID()
		s.sessions.Store(sid, server)
		var p struct {
			Capabilities json.RawMessage `json:"capabilities"`
		}
		_ = json.Unmarshal(msg.Params, &p)
		s.profiles.Store(sid, match.ProfileKey(p.Capabilities))
		w.Header().Set("Mcp-Session-Id", sid)
		x, ok := s.store.Session("initialize", server)
		if !ok {
			s.hits.Add(1)
			res := jsonrpc.NewResult(msg.ID, s.synthesizeInitialize(server))
			writeMessage(w, http.StatusOK, res)
			return
		}
		s.hits.Add(1)
		s.writeRecorded(w, r, msg.ID, x)
		return
	}

	if res, ok := s.profileList(r.Header.Get("Mcp-Session-Id"), server, msg); ok {
		// The catalog the recorded clients of this session's profile saw.
		s.hits.Add(1)
		writeMessage(w, http.StatusOK, jsonrpc.NewResult(msg.ID, res))
		return
	}
	x, err := s.store.LookupFor(recordedRequest(msg.Params), msg.Method, server, msg.Params)
	r = r.WithContext(context.WithValue(r.Context(), paramsKey{}, json.RawMessage(msg.Params)))
	if err == nil {
		s.hits.Add(1)
		s.writeRecorded(w, r, msg.ID, x)
		return
	}
	if errors.Is(err, match.ErrNoMatch) {
		// Nothing recorded for a list means nothing was listed; ping
		// needs no recording.
		if empty, ok := emptyAnswers[msg.Method]; ok {
			s.hits.Add(1)
			writeMessage(w, http.StatusOK, jsonrpc.NewResult(msg.ID, json.RawMessage(empty)))
			return
		}
	}
	s.misses.Add(1)
	if s.cfg.Miss == MissForward {
		s.forwarded.Add(1)
		resp, ferr := s.cfg.Forward(r.Context(), server, body)
		if ferr != nil {
			log.Warn("forwarding missed request", "error", ferr)
			writeMessage(w, http.StatusOK, jsonrpc.NewError(msg.ID, jsonrpc.CodeBackendUnavailable,
				fmt.Sprintf("mcptrail replay: forwarding %s to %s: %v", msg.Method, server, ferr), nil))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(resp)
		return
	}
	log.Info("no recorded answer", "error", err)
	writeMessage(w, http.StatusOK, jsonrpc.NewError(msg.ID, jsonrpc.CodeInternalError, "mcptrail replay: "+err.Error(), missData(err)))
}

// profileList is the list answer recorded for the client capability
// profile of session sid (see match.Store.AddProfileList), for a list
// request without a cursor.
func (s *Server) profileList(sid, server string, msg jsonrpc.Message) (json.RawMessage, bool) {
	if _, ok := emptyAnswers[msg.Method]; !ok || msg.Method == "ping" {
		return nil, false
	}
	if cur, ok := jsonrpc.Lookup(msg.Params, "cursor"); ok && string(cur) != `""` && string(cur) != "null" {
		return nil, false
	}
	p, ok := s.profiles.Load(sid)
	if !ok {
		return nil, false
	}
	return s.store.ProfileList(server, p.(string), msg.Method)
}

// emptyAnswers are served for session-level methods that were not recorded.
var emptyAnswers = map[string]string{
	"ping":                     `{}`,
	"tools/list":               `{"tools":[]}`,
	"prompts/list":             `{"prompts":[]}`,
	"resources/list":           `{"resources":[]}`,
	"resources/templates/list": `{"resourceTemplates":[]}`,
}

// missData is the error data of a miss: the key, the closest recorded
// request and what differed.
func missData(err error) json.RawMessage {
	var me *match.MissError
	if !errors.As(err, &me) {
		return nil
	}
	d := struct {
		Method  string        `json:"method"`
		Server  string        `json:"server"`
		Name    string        `json:"name,omitempty"`
		Closest string        `json:"closest,omitempty"`
		Changes []diff.Change `json:"changes,omitempty"`
	}{Method: me.Key.Method, Server: me.Key.Server, Name: me.Key.Name, Changes: me.Changes}
	if me.Closest != nil {
		d.Closest = me.Closest.String()
	}
	b, _ := json.Marshal(d)
	return b
}

// MaxRecordedTimeout bounds how long the mock withholds the answer to a
// request whose recorded call timed out.
const MaxRecordedTimeout = 10 * time.Minute

// writeRecorded relays a recorded answer with the live request's id. A
// recorded timeout (the gateway gave up waiting: transport_error -32004) is
// reproduced by not answering until the caller gives up too, so the
// gateway under test times out the same way.
func (s *Server) writeRecorded(w http.ResponseWriter, r *http.Request, id json.RawMessage, x diff.Exchange) {
	if x.Truncated {
		writeMessage(w, http.StatusOK, jsonrpc.NewError(id, jsonrpc.CodeInternalError,
			"mcptrail replay: the recorded answer was truncated at the payload cap and cannot be replayed", nil))
		return
	}
	outcome, code := diff.Classify(x)
	body := diff.ResponseBody(x.Response)
	if outcome == recorder.OutcomeTransportError && code == jsonrpc.CodeRequestTimeout {
		t := time.NewTimer(MaxRecordedTimeout)
		defer t.Stop()
		select {
		case <-r.Context().Done():
		case <-t.C:
		}
		http.Error(w, "mcptrail replay: recorded timeout", http.StatusGatewayTimeout)
		return
	}
	tok := progressToken(r)
	if (len(x.Progress) > 0 && tok != nil || len(x.ServerRequests) > 0 || len(x.Logs) > 0) && outcome != recorder.OutcomeTransportError && outcome != recorder.OutcomeDenied {
		s.writeStream(w, r, id, tok, x, outcome, code, body)
		return
	}
	switch outcome {
	case recorder.OutcomeTransportError, recorder.OutcomeDenied:
		// Reproduce the failure at the transport level.
		http.Error(w, "mcptrail replay: recorded "+outcome.String(), http.StatusBadGateway)
		return
	case recorder.OutcomeJSONRPCError:
		if body == nil || body[0] != '{' {
			body, _ = json.Marshal(jsonrpc.Error{Code: code, Message: "recorded error (payload not recorded)"})
		}
		writeRaw(w, id, "error", body)
		return
	}
	writeRaw(w, id, "result", body)
}

// progressToken is the live request's params._meta.progressToken, or nil.
func progressToken(r *http.Request) json.RawMessage {
	v, _ := r.Context().Value(paramsKey{}).(json.RawMessage)
	o, err := jsonrpc.ParseObject(v)
	if err != nil {
		return nil
	}
	m, err := jsonrpc.ParseObject(o.Get("_meta"))
	if err != nil {
		return nil
	}
	return m.Get("progressToken")
}

type paramsKey struct{}

// writeStream answers as an SSE stream: the recorded requests to the client
// (each waits for the client's answer, as the backend did), the recorded log
// notifications, the recorded progress notifications (with the live
// request's token, when it has one), then the recorded answer.
func (s *Server) writeStream(w http.ResponseWriter, r *http.Request, id, tok json.RawMessage, x diff.Exchange, outcome recorder.Outcome, code int, body json.RawMessage) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	for _, sr := range x.ServerRequests {
		rid := json.RawMessage(strconv.Quote("mcptrail-replay-" + strconv.FormatInt(s.reqSeq.Add(1), 10)))
		ch := make(chan jsonrpc.Message, 1)
		s.pending.Store(string(rid), ch)
		_, _ = fmt.Fprintf(w, "event: message\ndata: %s\n\n", jsonrpc.NewRequest(rid, sr.Method, sr.Params).Marshal())
		flush()
		select {
		case <-ch:
			// The recorded answer follows whatever the client said: the
			// replay compares what the client gets, not this hop.
		case <-r.Context().Done():
			s.pending.Delete(string(rid))
			return
		}
	}
	for _, p := range x.Logs {
		_, _ = fmt.Fprintf(w, "event: message\ndata: %s\n\n", jsonrpc.NewNotification("notifications/message", p).Marshal())
	}
	for _, p := range x.Progress {
		o, err := jsonrpc.ParseObject(p)
		if err != nil || tok == nil {
			continue
		}
		o.Set("progressToken", tok)
		_, _ = fmt.Fprintf(w, "event: message\ndata: %s\n\n", jsonrpc.NewNotification("notifications/progress", o.Marshal()).Marshal())
	}
	member := "result"
	if outcome == recorder.OutcomeJSONRPCError {
		member = "error"
		if body == nil || body[0] != '{' {
			body, _ = json.Marshal(jsonrpc.Error{Code: code, Message: "recorded error (payload not recorded)"})
		}
	}
	b := append([]byte(`{"jsonrpc":"2.0","id":`), id...)
	b = append(append(append(append(b, `,"`...), member...), `":`...), body...)
	b = append(b, '}')
	_, _ = fmt.Fprintf(w, "event: message\ndata: %s\n\n", b)
}

func writeRaw(w http.ResponseWriter, id json.RawMessage, member string, raw json.RawMessage) {
	b := make([]byte, 0, len(raw)+48)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"`...)
	b = append(b, member...)
	b = append(b, `":`...)
	b = append(b, raw...)
	b = append(b, '}')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

func writeMessage(w http.ResponseWriter, status int, m jsonrpc.Message) {
	b := m.Marshal()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// synthesizeInitialize builds an initialize result from what was recorded:
// the protocol version and a capability per recorded method family.
func (s *Server) synthesizeInitialize(server string) json.RawMessage {
	pv := s.store.ProtocolVersion(server)
	if pv == "" {
		pv = s.cfg.ProtocolVersion
	}
	caps := map[string]any{}
	for _, m := range s.store.Methods(server) {
		switch {
		case m == "tools/list" || m == "tools/call":
			caps["tools"] = map[string]any{}
		case m == "prompts/list" || m == "prompts/get":
			caps["prompts"] = map[string]any{}
		case len(m) > 10 && m[:10] == "resources/":
			caps["resources"] = map[string]any{}
		case m == "completion/complete":
			caps["completions"] = map[string]any{}
		case m == "logging/setLevel":
			caps["logging"] = map[string]any{}
		}
	}
	b, _ := json.Marshal(map[string]any{
		"protocolVersion": pv,
		"capabilities":    caps,
		"serverInfo":      map[string]string{"name": server, "version": "mcptrail-replay"},
	})
	return b
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recordedRequest reads the recorded request a replayed request names: the
// gateway passes the client's request ID upstream in params._meta, and the
// replay runner sends match.ReplayRequestID of the recorded one.
func recordedRequest(params json.RawMessage) string {
	meta, ok := jsonrpc.Lookup(params, "_meta")
	if !ok {
		return ""
	}
	o, err := jsonrpc.ParseObject(meta)
	if err != nil {
		return ""
	}
	id, _ := o.GetString("mcptrail.dev/request-id")
	rec, ok := match.RecordedRequestID(id)
	if !ok {
		return ""
	}
	return rec
}
