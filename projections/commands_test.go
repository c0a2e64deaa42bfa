package projections

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"qingling/events"
)

// TestCommandsOfAReplay: a replay's commands are found once it ends, wherever they came from
// (bulk, map), and a snapshot taken while a replay still gathers them keeps them too.
func TestCommandsOfAReplay(t *testing.T) {
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	raws := benchEvents(t) // a report and a plan of one hazard
	apply := func(x *Index, seq uint64, raw []byte, replay bool) *events.Event {
		e, p, err := newDecoder().decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		sum := sha256.Sum256(raw)
		if _, err := x.applyLocked(seq, &sum, uuid.MustParse(e.CommandID), true, replay, e, p); err != nil {
			t.Fatal(err)
		}
		x.markAppliedLocked(seq)
		return e
	}
	x := NewIndex(cat)
	rep := apply(x, 1, raws[0], true)   // gathered by a replay
	plan := apply(x, 2, raws[1], false) // recorded one by one
	if r, ok := x.Command(rep.CommandID); !ok || r.Seq != 1 || r.Type != events.TypeReported {
		t.Fatalf("a running replay's command: %+v %v", r, ok)
	}
	if r, ok := x.Command(plan.CommandID); !ok || r.Seq != 2 || r.Type != events.TypePlanned || r.HazardID != plan.Subject || r.Version != 2 {
		t.Fatalf("the map's command: %+v %v", r, ok)
	}

	// a snapshot now holds both
	var hz bytes.Buffer
	bw := bufio.NewWriter(&hz)
	if _, err := x.snapshotHazards(bw); err != nil || bw.Flush() != nil {
		t.Fatal(err)
	}
	var cmds bytes.Buffer
	if n := x.snapshotCommands(&cmds); n != 2 {
		t.Fatalf("%d commands written", n)
	}
	y := NewIndex(cat)
	if err := y.restore(hz.Bytes(), cmds.Bytes(), 2); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*events.Event{rep, plan} {
		if r, ok := y.Command(e.CommandID); !ok || r.HazardID != e.Subject || r.Type != e.Type {
			t.Fatalf("restored command %s: %+v %v", e.Type, r, ok)
		}
	}

	x.settleCommands()
	if r, ok := x.Command(rep.CommandID); !ok || r.Seq != 1 || r.Type != events.TypeReported || r.Version != 1 {
		t.Fatalf("the replay's command after it settled: %+v %v", r, ok)
	}
	if _, ok := x.Command(uuid.NewString()); ok {
		t.Fatal("an unknown command is found")
	}
}

// TestMergeRuns: a replay's commands, gathered in sorted runs, merge into the order of the
// ids, whatever their number (a run, a part of one, several and a part).
func TestMergeRuns(t *testing.T) {
	for _, n := range []int{1, 7, runLen, runLen + 3, 3*runLen + 11, 4 * runLen} {
		x := NewIndex(nil)
		for i := range n {
			x.gather(cmdEntry{id: uuid.New(), r: cmdRec{seq: uint64(i)}})
		}
		x.bulk = []cmdEntry{{id: uuid.New()}, {id: uuid.New()}}
		sortEntries(x.bulk)
		x.settleCommands()
		if len(x.bulk) != n+2 || !slices.IsSortedFunc(x.bulk, compareEntries) || x.pending != nil {
			t.Fatalf("n %d: %d in the bulk, sorted %v", n, len(x.bulk), slices.IsSortedFunc(x.bulk, compareEntries))
		}
		seen := map[uint64]bool{}
		for _, c := range x.bulk {
			seen[c.r.seq] = true
		}
		if len(seen) != n { // seqs 0..n-1 (the bulk's two are 0 as well)
			t.Fatalf("n %d: %d distinct records", n, len(seen))
		}
	}
}

// TestCommandDuringReplay: a running replay's commands are found in its full runs and in the
// run that fills, before they settle; an unknown one is not.
func TestCommandDuringReplay(t *testing.T) {
	x := NewIndex(nil)
	ids := make([]uuid.UUID, 2*runLen+100)
	for i := range ids {
		ids[i] = uuid.New()
		x.gather(cmdEntry{id: ids[i], r: cmdRec{seq: uint64(i + 1)}})
	}
	for _, i := range []int{0, runLen - 1, runLen, 2*runLen - 1, 2 * runLen, len(ids) - 1} {
		if r, ok := x.command(ids[i]); !ok || r.seq != uint64(i+1) {
			t.Fatalf("command %d: %+v %v", i, r, ok)
		}
	}
	if _, ok := x.command(uuid.New()); ok {
		t.Fatal("an unknown command is found")
	}
}

// TestReserveKeepsOddHazards: an index that holds only hazards with odd ids (none in the id
// map) is not emptied by a replay's reserve.
func TestReserveKeepsOddHazards(t *testing.T) {
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	raw := benchEvents(t)[0]
	e, p, err := newDecoder().decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	odd := strings.ToUpper(e.Subject)
	e.Subject = odd
	x := NewIndex(cat)
	x.mu.Lock()
	_, err = x.applyLocked(1, nil, uuid.MustParse(e.CommandID), true, true, e, p)
	x.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	x.reserve(10000)
	if h, ok := x.Get(odd); !ok || h.ID != odd || x.Len() != 1 {
		t.Fatalf("after reserve: %v %q, %d hazards", ok, h.ID, x.Len())
	}
}

// TestSortRun: runs of random ids, of ids sharing their first bytes (UUIDv7 of one period) and
// of a few repeated ids come out sorted, each entry once.
func TestSortRun(t *testing.T) {
	mk := func(n int, id func(i int) uuid.UUID) []cmdEntry {
		p := make([]cmdEntry, n)
		for i := range p {
			p[i] = cmdEntry{id: id(i), r: cmdRec{seq: uint64(i + 1)}}
		}
		return p
	}
	v7 := func(int) uuid.UUID { return uuid.Must(uuid.NewV7()) }
	for name, p := range map[string][]cmdEntry{
		"v4":       mk(runLen, func(int) uuid.UUID { return uuid.New() }),
		"v7":       mk(5000, v7),
		"repeated": mk(3000, func(i int) uuid.UUID { return uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i % 7)}) }),
		"one":      mk(1, v7),
		"none":     nil,
	} {
		want := slices.Clone(p)
		slices.SortFunc(want, compareEntries)
		sortRun(p, make([]cmdEntry, len(p)))
		if !slices.IsSortedFunc(p, compareEntries) {
			t.Fatalf("%s: not sorted", name)
		}
		seqs := func(p []cmdEntry) []uint64 {
			var s []uint64
			for _, c := range p {
				s = append(s, c.r.seq)
			}
			slices.Sort(s)
			return s
		}
		if !slices.Equal(seqs(p), seqs(want)) {
			t.Fatalf("%s: entries lost or repeated", name)
		}
	}
}
