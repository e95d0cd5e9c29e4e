package proxy

// ToolWaiters is how many calls wait at tool target's concurrency cap
// ("<server><sep><tool>"), -1 when it has none.
func (g *Gateway) ToolWaiters(target string) int {
	if t := g.ps().toolGates[target]; t != nil {
		return t.waiters()
	}
	return -1
}
