package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// catchUpGOGC is the collector's pace while a catch-up builds the read model.
const catchUpGOGC = 400

// catchUpGC paces the collector for a catch-up and returns what puts it back. A catch-up
// builds the read model from nothing, and every collection marks all of it built so far: at
// the default pace (GOGC=100) a million events cost 18 collections and an eighth of the
// replay's CPU; at GOGC=400, 6 and less than half of that. The heap may then grow to five
// times what is live, so a soft memory limit bounds it: GOMEMLIMIT when set, else half the
// memory of the machine (or of its cgroup). Left alone when GOGC is set, or the memory is
// unknown. The restore also collects and returns the pages the catch-up's garbage held to the
// system (a full collection: a server runs it beside its work, not before it is ready).
func catchUpGC() (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	limit := debug.SetMemoryLimit(-1) // -1 reads it
	if limit == math.MaxInt64 {
		total := memoryTotal()
		if total == 0 {
			return func() {}
		}
		limit = total / 2
	}
	prevLimit := debug.SetMemoryLimit(limit)
	prev := debug.SetGCPercent(catchUpGOGC)
	return func() {
		debug.SetGCPercent(prev)
		debug.SetMemoryLimit(prevLimit)
		debug.FreeOSMemory()
	}
}

// memoryTotal is the memory this process may use: the machine's, or its cgroup's limit when
// lower. 0 when unknown.
func memoryTotal() int64 {
	total := physicalMemory()
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}
