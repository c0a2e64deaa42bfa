//go:build !linux

package main

// physicalMemory is unknown here: a catch-up keeps the collector's default pace unless
// GOMEMLIMIT is set.
func physicalMemory() int64 { return 0 }
