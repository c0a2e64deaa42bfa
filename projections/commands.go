package projections

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/google/uuid"
)

// cmdEntry is a command record with its id, as the index keeps the commands that a replay or
// a snapshot brings: in one slice sorted by id (32 bytes each, no map's slack), where a
// replay only appends — a map of a million takes a cache miss for every insert.
type cmdEntry struct {
	id uuid.UUID
	r  cmdRec
}

func compareIDs(a, b uuid.UUID) int {
	if c := cmp.Compare(binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])); c != 0 {
		return c
	}
	return cmp.Compare(binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:]))
}

func compareEntries(a, b cmdEntry) int { return compareIDs(a.id, b.id) }

// command looks up id among the recorded commands: those recorded one by one (the map), the
// bulk, then a running replay's (each full run by halves, the filling one from end to end: a
// server answers commands during its catch-up). Under x.mu.
func (x *Index) command(id uuid.UUID) (cmdRec, bool) {
	if r, ok := x.cmds[id]; ok {
		return r, true
	}
	if r, ok := search(x.bulk, id); ok {
		return r, true
	}
	p := x.pending
	for len(p) >= runLen {
		if r, ok := search(p[:runLen], id); ok {
			return r, true
		}
		p = p[runLen:]
	}
	for _, c := range p {
		if c.id == id {
			return c.r, true
		}
	}
	return cmdRec{}, false
}

// search looks up id in the sorted run p.
func search(p []cmdEntry, id uuid.UUID) (cmdRec, bool) {
	i, ok := slices.BinarySearchFunc(p, id, func(e cmdEntry, id uuid.UUID) int { return compareIDs(e.id, id) })
	if !ok {
		return cmdRec{}, false
	}
	return p[i].r, true
}

// runLen is the length of the sorted runs a replay gathers its commands in: each is sorted as
// it fills (in cache), and settleCommands merges them.
const runLen = 1 << 16

// gather adds a replay's command to pending, sorting each run as it fills. Under x.mu.
func (x *Index) gather(c cmdEntry) {
	x.pending = append(x.pending, c)
	if n := len(x.pending); n%runLen == 0 {
		if len(x.sortBuf) < runLen {
			x.sortBuf = make([]cmdEntry, runLen)
		}
		sortRun(x.pending[n-runLen:], x.sortBuf)
	}
}

// sortRun sorts p by id, tmp (as long) its scratch: stably by the ids' first two bytes, a
// byte at a time (random ids — UUIDv4, v5 — then share them with about one other in a run),
// then each group sharing them by comparison (UUIDv7's share them for weeks: one group,
// already about in order). A comparison sort of a run took twice its gathering.
func sortRun(p, tmp []cmdEntry) {
	tmp = tmp[:len(p)]
	for _, b := range [2]int{1, 0} {
		var at [257]int
		for i := range p {
			at[int(p[i].id[b])+1]++
		}
		for k := 1; k < len(at); k++ {
			at[k] += at[k-1]
		}
		for i := range p {
			k := p[i].id[b]
			tmp[at[k]] = p[i]
			at[k]++
		}
		p, tmp = tmp, p
	}
	// two passes: the sorted order is back in p
	for lo := 0; lo < len(p); {
		hi := lo + 1
		for hi < len(p) && p[hi].id[0] == p[lo].id[0] && p[hi].id[1] == p[lo].id[1] {
			hi++
		}
		if hi-lo > 1 {
			slices.SortFunc(p[lo:hi], compareEntries)
		}
		lo = hi
	}
}

// settleCommands merges the commands a replay gathered into the bulk, under the lock: they are
// never out of sight of Command or of a snapshot (~30 ms for a million).
func (x *Index) settleCommands() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.pending) == 0 {
		return
	}
	x.bulk = mergeEntries(x.bulk, mergeRuns(x.pending))
	x.pending, x.sortBuf = nil, nil
}

// mergeRuns sorts p, whose runs of runLen (the last may be shorter) are each sorted but the
// last: bottom-up merges through a second buffer.
func mergeRuns(p []cmdEntry) []cmdEntry {
	n := len(p)
	slices.SortFunc(p[n-n%runLen:], compareEntries)
	if n <= runLen {
		return p
	}
	buf := make([]cmdEntry, n)
	for w := runLen; w < n; w *= 2 {
		for lo := 0; lo < n; lo += 2 * w {
			mid, hi := min(lo+w, n), min(lo+2*w, n)
			mergeInto(buf[lo:hi], p[lo:mid], p[mid:hi])
		}
		p, buf = buf, p
	}
	return p
}

// sortEntries sorts p by id (a snapshot's commands from before they were written sorted).
func sortEntries(p []cmdEntry) { slices.SortFunc(p, compareEntries) }

// merge calls emit with the entries of the sorted a and b, in order.
func merge(a, b []cmdEntry, emit func(cmdEntry)) {
	for len(a) > 0 && len(b) > 0 {
		if compareEntries(a[0], b[0]) <= 0 {
			emit(a[0])
			a = a[1:]
		} else {
			emit(b[0])
			b = b[1:]
		}
	}
	for _, c := range a {
		emit(c)
	}
	for _, c := range b {
		emit(c)
	}
}

// mergeInto merges the sorted a and b into dst, which is as long as both.
func mergeInto(dst, a, b []cmdEntry) {
	i := 0
	merge(a, b, func(c cmdEntry) { dst[i] = c; i++ })
}

// mergeEntries merges two sorted runs into a new one (or answers the other when one is empty).
func mergeEntries(a, b []cmdEntry) []cmdEntry {
	switch {
	case len(a) == 0:
		return b
	case len(b) == 0:
		return a
	}
	out := make([]cmdEntry, len(a)+len(b))
	mergeInto(out, a, b)
	return out
}
