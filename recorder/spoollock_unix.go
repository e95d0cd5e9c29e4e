//go:build unix

package recorder

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockSpool takes an exclusive advisory lock on the directory itself (no
// lock file: an empty spool stays empty) for this process. Two pipelines
// sharing a spool would seal each other's active segments and write (and
// delete) each other's files. The kernel drops the lock when the process
// dies, so a crash never leaves the directory locked.
func lockSpool(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening spool directory %s to lock it: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking spool directory %s: %w", dir, ErrSpoolInUse)
		}
		return nil, fmt.Errorf("locking spool directory %s: %w", dir, err)
	}
	return f, nil
}
