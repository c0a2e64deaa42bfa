//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// lockReadModel takes the data directory's read-model lock, so that `qingling rebuild` and
// `qingling serve` never work on the same embedded store at once.
func lockReadModel(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is locked: a qingling server (or rebuild) is using this data directory", path)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
