package proxy

// BackendBusy reports whether calls are in flight on backend name.
func (g *Gateway) BackendBusy(name string) bool {
	b := g.bs().byName[name]
	return b != nil && b.busy()
}
