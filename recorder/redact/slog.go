package redact

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
)

// Handler returns a slog.Handler that redacts before passing records to
// next: the message and string values through the patterns, attributes
// whose key matches a key rule (group names form the path) replaced whole,
// []byte and json.RawMessage values as JSON, errors by their text.
func (r *Redactor) Handler(next slog.Handler) slog.Handler {
	return &handler{r: r, next: next}
}

type handler struct {
	r      *Redactor
	next   slog.Handler
	groups []string // open groups
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	msg, _ := h.r.String(rec.Message)
	out := slog.NewRecord(rec.Time, rec.Level, msg, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(h.groups, a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(h.groups, a)
	}
	return &handler{r: h.r, next: h.next.WithAttrs(red), groups: h.groups}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	groups := append(append([]string(nil), h.groups...), name)
	return &handler{r: h.r, next: h.next.WithGroup(name), groups: groups}
}

// attr redacts one attribute found under the group path.
func (h *handler) attr(groups []string, a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	path := append(groups[:len(groups):len(groups)], a.Key)
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		red := make([]slog.Attr, len(attrs))
		sub := path
		if a.Key == "" {
			sub = groups // an inlined group adds no path segment
		}
		for i, g := range attrs {
			red[i] = h.attr(sub, g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	}
	if rule, ok := h.r.matchKey(path); ok {
		if a.Value.Kind() == slog.KindString && h.r.isPlaceholder(a.Value.String()) {
			return a
		}
		return slog.String(a.Key, h.r.placeholder(rule, []byte(a.Value.String())))
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s, n := h.r.String(a.Value.String()); n > 0 {
			return slog.String(a.Key, s)
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case json.RawMessage:
			out, _ := h.r.JSON(v)
			if !json.Valid(out) {
				return slog.String(a.Key, string(out))
			}
			return slog.Any(a.Key, json.RawMessage(out))
		case []byte:
			out, _ := h.r.JSON(v)
			return slog.String(a.Key, string(out))
		case error:
			s, _ := h.r.String(v.Error())
			return slog.String(a.Key, s)
		case string:
			s, _ := h.r.String(v)
			return slog.String(a.Key, s)
		default:
			// A map or struct carries keys (header names, field names)
			// that the key rules must see, as group names are: check its
			// JSON form first.
			if out, ok := h.jsonForm(v); ok {
				return slog.String(a.Key, out)
			}
			// Other values are formatted by the next handler; redact that
			// text so secrets in Stringers or structs do not escape.
			s := a.Value.String()
			if red, n := h.r.String(s); n > 0 {
				return slog.String(a.Key, red)
			}
		}
	}
	return a
}

// jsonForm returns the redacted JSON encoding of a map or struct value v
// when redaction changed something in it.
func (h *handler) jsonForm(v any) (string, bool) {
	switch reflect.Indirect(reflect.ValueOf(v)).Kind() {
	case reflect.Map, reflect.Struct:
	default:
		return "", false
	}
	if _, ok := v.(fmt.Stringer); ok {
		return "", false // formatted by its own String method
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	out, n := h.r.JSON(b)
	if n == 0 {
		return "", false
	}
	return string(out), true
}
