package proxy

// ProfileCatalogs is how many capability-profile catalogs the gateway keeps.
func (g *Gateway) ProfileCatalogs() int {
	n := 0
	g.profileCats.Range(func(any, any) bool { n++; return true })
	return n
}
