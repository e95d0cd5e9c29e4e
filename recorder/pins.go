package recorder

// Pin events are the history of tool pinning (the rug-pull defence): the
// first version of a tool the gateway saw, each change it saw afterwards,
// and each version an operator approved. The newest pinned or approved
// event of a tool is its pin.

// Pin event kinds.
const (
	PinPinned   = "pinned"   // first seen (trust on first use)
	PinChanged  = "changed"  // seen differing from the pin
	PinApproved = "approved" // approved by an operator: the new pin
)

// PinEvent is one row of a tool's pin history.
type PinEvent struct {
	TimeNs int64
	// Server and Tool name the tool as its server knows it.
	Server, Tool string
	// Kind is PinPinned, PinChanged or PinApproved.
	Kind string
	// Hash is the hex sha256 of Definition; PrevHash the pin it differed
	// from (changed) or replaced (approved).
	Hash, PrevHash string
	// Definition is the pinned members of the tool, canonical JSON.
	Definition string
	// Diff is what changed (changed events), JSON: [{path, old, new, words}].
	Diff string
	// Action is what the gateway did about a change: warn, hide or deny.
	Action string
	// Actor is who approved (approved events) or the gateway instance that
	// saw the tool.
	Actor string
}
