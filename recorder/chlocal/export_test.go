package chlocal

// SetFreePort replaces the port picker for one test. f gets the real
// picker; the returned func restores it.
func SetFreePort(f func(real func() (int, error)) (int, error)) (restore func()) {
	old := freePort
	freePort = func() (int, error) { return f(old) }
	return func() { freePort = old }
}
