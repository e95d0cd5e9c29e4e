package diff

import (
	"encoding/json"

	"github.com/mcptrail/mcptrail/recorder/jsoncanon"
)

// The canonical form lives in recorder/jsoncanon, shared with tool pinning;
// these keep replay's callers unchanged.

// Parse decodes JSON into the tree Diff and Canonical work on (see
// jsoncanon.Parse).
func Parse(b []byte) (any, error) { return jsoncanon.Parse(b) }

// Canonical returns the canonical form of a JSON document (see
// jsoncanon.Canonical).
func Canonical(b []byte) ([]byte, error) { return jsoncanon.Canonical(b) }

// AppendCanonical appends the canonical encoding of a parsed value to dst.
func AppendCanonical(dst []byte, v any) []byte { return jsoncanon.AppendCanonical(dst, v) }

// CanonicalNumber spells a JSON number canonically.
func CanonicalNumber(n json.Number) string { return jsoncanon.CanonicalNumber(n) }

// Equal reports whether two JSON documents are equal after canonicalisation.
func Equal(a, b []byte) bool { return jsoncanon.Equal(a, b) }
