//go:build !unix

package recorder

import "os"

// lockSpool does not lock where flock is unavailable: keep one process
// per spool directory by configuration.
func lockSpool(string) (*os.File, error) { return nil, nil }
