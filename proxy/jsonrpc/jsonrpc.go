// Package jsonrpc decodes and encodes JSON-RPC 2.0 messages at the envelope
// level. Params, results and error data stay json.RawMessage, so whatever the
// gateway does not need to touch is relayed byte for byte.
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Standard JSON-RPC and MCP error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeResourceNotFound is MCP's code for an unknown resource URI.
	CodeResourceNotFound = -32002
	// Gateway-specific codes live in the implementation-defined server range.
	CodeBackendUnavailable = -32001
	CodeUnauthorized       = -32003
	CodeRequestTimeout     = -32004
	CodeRequestTooLarge    = -32005
	// CodeLimited refuses a request at a rate limit or a full queue; its
	// data says which limit and when to retry.
	CodeLimited = -32029
)

// Kind classifies a message by its envelope.
type Kind uint8

// Message kinds.
const (
	KindInvalid Kind = iota
	KindRequest
	KindNotification
	KindResponse // result or error
)

// Message is one JSON-RPC 2.0 message. Exactly one of the shapes is set:
// request (ID+Method), notification (Method only), response (ID+Result or
// ID+Error).
type Message struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Error is a JSON-RPC error object. Data is kept raw.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

// Kind reports what shape the message has.
func (m *Message) Kind() Kind {
	switch {
	case m.Method != "" && m.ID != nil:
		return KindRequest
	case m.Method != "":
		return KindNotification
	case m.ID != nil && (m.Result != nil || m.Error != nil):
		return KindResponse
	}
	return KindInvalid
}

// DecodeError says why a message could not be decoded and which JSON-RPC code
// the answer must carry (-32700 for bad JSON, -32600 for a bad envelope).
type DecodeError struct {
	Code int
	Err  error
	// ID is the request id when it could still be read, so the error
	// response can be correlated; nil otherwise.
	ID json.RawMessage
}

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// ErrorCode returns the JSON-RPC code and request id (nil when unknown) to
// answer a Decode error with: the DecodeError's own, else -32700.
func ErrorCode(err error) (code int, id json.RawMessage) {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Code, de.ID
	}
	return CodeParseError, nil
}

// ErrBatch is returned for a JSON array: batching was removed from MCP in
// 2025-06-18 and the gateway does not accept it.
var ErrBatch = errors.New("JSON-RPC batches are not supported")

// Decode parses one message. The returned message aliases b (its raw fields
// are sub-slices), so b must not be modified while the message is in use.
//
// A key that parsers could read differently (a duplicate, after unescaping
// and case folding, or a field the gateway reads spelled in another case) in
// the envelope, params, params._meta or params.ref is refused with
// CodeInvalidRequest (see AmbiguousKeyError): what the gateway routes and
// authorizes must be what the backend executes.
func Decode(b []byte) (Message, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return Message{}, &DecodeError{Code: CodeParseError, Err: errors.New("empty message")}
	}
	switch b[0] {
	case '[':
		if !json.Valid(b) {
			return Message{}, &DecodeError{Code: CodeParseError, Err: errors.New("malformed JSON")}
		}
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: ErrBatch}
	case '{':
	default:
		if !json.Valid(b) {
			return Message{}, &DecodeError{Code: CodeParseError, Err: errors.New("malformed JSON")}
		}
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New("message is not a JSON object")}
	}
	if !json.Valid(b) {
		return Message{}, &DecodeError{Code: CodeParseError, Err: errors.New("malformed JSON")}
	}
	var (
		m                  Message
		version, method    []byte
		hasMethod, badType bool
		errRaw             []byte
	)
	err := checkKeys(b, "envelope", envelopeKeys, func(key, val []byte, escaped bool) {
		switch {
		case keyEquals(key, escaped, "jsonrpc"):
			version = val
		case keyEquals(key, escaped, "id"):
			m.ID = nullToNil(val)
		case keyEquals(key, escaped, "method"):
			hasMethod = true
			if len(val) == 0 || val[0] != '"' {
				badType = true
			}
			method = val
		case keyEquals(key, escaped, "params"):
			m.Params = nullToNil(val)
		case keyEquals(key, escaped, "result"):
			m.Result = val
		case keyEquals(key, escaped, "error"):
			errRaw = nullToNil(val)
		}
	})
	if _, ambiguous := err.(*AmbiguousKeyError); ambiguous { // not errors.As: &target escapes
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: err}
	}
	if err != nil {
		return Message{}, &DecodeError{Code: CodeParseError, Err: err}
	}
	id := m.ID
	if id != nil && !validID(id) {
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New("id must be a string or a number")}
	}
	if string(version) != `"2.0"` {
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New(`"jsonrpc" must be "2.0"`), ID: id}
	}
	if badType {
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New(`"method" must be a string`), ID: id}
	}
	if errRaw != nil {
		m.Error = &Error{}
		if err := json.Unmarshal(errRaw, m.Error); err != nil {
			return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: fmt.Errorf("invalid error object: %w", err), ID: id}
		}
		m.Error.Data = nullToNil(m.Error.Data)
	}
	if hasMethod {
		name, ok := (&Object{members: []member{{key: []byte("m"), val: method}}}).GetString("m")
		if !ok || name == "" {
			return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New(`"method" must not be empty`), ID: id}
		}
		if m.Result != nil || m.Error != nil {
			return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New("a message cannot have both method and result/error"), ID: id}
		}
		m.Method = name
		if m.Params != nil && m.Params[0] != '{' && m.Params[0] != '[' {
			return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New(`"params" must be an object or array`), ID: id}
		}
		if err := checkParams(m.Params); err != nil {
			return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: err, ID: id}
		}
		return m, nil
	}
	if id == nil {
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New(`message has neither "method" nor "id"`)}
	}
	if (m.Result == nil) == (m.Error == nil) {
		return Message{}, &DecodeError{Code: CodeInvalidRequest, Err: errors.New(`a response needs exactly one of "result" and "error"`), ID: id}
	}
	return m, nil
}

func nullToNil(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || string(r) == "null" {
		return nil
	}
	return r
}

func validID(id json.RawMessage) bool {
	switch c := id[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return true
	}
	return false
}

// Encode appends the wire form of m to dst.
func (m Message) Encode(dst []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0"`...)
	if m.ID != nil {
		dst = append(dst, `,"id":`...)
		dst = append(dst, m.ID...)
	}
	if m.Method != "" {
		dst = append(dst, `,"method":`...)
		dst = appendJSONString(dst, m.Method)
		if m.Params != nil {
			dst = append(dst, `,"params":`...)
			dst = append(dst, m.Params...)
		}
	}
	if m.Result != nil {
		dst = append(dst, `,"result":`...)
		dst = append(dst, m.Result...)
	}
	if m.Error != nil {
		dst = append(dst, `,"error":`...)
		dst = m.Error.encode(dst)
	}
	return append(dst, '}')
}

// Marshal returns the wire form of m.
func (m Message) Marshal() []byte { return m.Encode(make([]byte, 0, 64+len(m.Params)+len(m.Result))) }

// JSON returns the wire form of the error object.
func (e *Error) JSON() json.RawMessage {
	return e.encode(make([]byte, 0, 48+len(e.Message)+len(e.Data)))
}

func (e *Error) encode(dst []byte) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, e.Message)
	if e.Data != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, e.Data...)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string (encoding/json escaping rules).
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // never fails for a string
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// NewRequest builds a request message.
func NewRequest(id json.RawMessage, method string, params json.RawMessage) Message {
	return Message{ID: id, Method: method, Params: params}
}

// NewNotification builds a notification message.
func NewNotification(method string, params json.RawMessage) Message {
	return Message{Method: method, Params: params}
}

// NewResult builds a success response.
func NewResult(id json.RawMessage, result json.RawMessage) Message {
	return Message{ID: id, Result: result}
}

// NewError builds an error response. data may be nil.
func NewError(id json.RawMessage, code int, msg string, data json.RawMessage) Message {
	if id == nil {
		id = json.RawMessage("null")
	}
	return Message{ID: id, Error: &Error{Code: code, Message: msg, Data: data}}
}

// IntID renders n as a JSON-RPC id.
func IntID(n int64) json.RawMessage { return strconv.AppendInt(nil, n, 10) }

// IDKey is a JSON-RPC id as a map key under which ids that JSON deems
// equal meet: a string by its value ("\u0031" is "1"), a number by its
// value (1, 1.0, 1e0 and 10E-1 are one id), and never a string and a
// number alike ("1" is not 1). The id must be valid JSON.
func IDKey(id json.RawMessage) string {
	if len(id) > 0 && id[0] == '"' {
		return "s" + IDString(id)
	}
	if len(id) > 0 && (id[0] == '-' || id[0] >= '0' && id[0] <= '9') {
		return "n" + canonicalNumber(string(id))
	}
	return string(id)
}

// canonicalNumber writes a JSON number as its significant digits and a
// decimal exponent, without parsing its value (a huge exponent costs
// nothing); a number it cannot read is kept as it is.
func canonicalNumber(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	exp := int64(0)
	if hasExp {
		e, err := strconv.ParseInt(strings.TrimPrefix(expPart, "+"), 10, 64)
		if err != nil || e > 1<<40 || e < -(1<<40) {
			return s
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= int64(len(frac))
	if digits == "" {
		return "0"
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	if neg {
		trimmed = "-" + trimmed
	}
	return trimmed + "e" + strconv.FormatInt(exp, 10)
}

// IDString returns the id as text for logs and records: numbers as digits,
// strings without quotes.
func IDString(id json.RawMessage) string {
	if len(id) > 1 && id[0] == '"' {
		var s string
		if json.Unmarshal(id, &s) == nil {
			return s
		}
	}
	return string(id)
}
