package app_test

import (
	"testing"
	"time"

	"qingling/events"
	"qingling/projections"
)

// Allocation guards for the per-command and per-event hot paths. The bounds are the counts
// measured when they were written (go1.26, amd64) with some headroom: a change that adds
// allocations per command (re-encoding, copies of the state) trips them.
const (
	maxAllocsDecideMarshal = 20 // measured 14
	maxAllocsIndexApply    = 32 // measured 23
)

// reported returns a catalog and a general hazard's state after its report, and the report.
func reported(tb testing.TB) (*events.Catalog, *events.Hazard, []byte) {
	tb.Helper()
	cat, err := events.LoadCatalog()
	if err != nil {
		tb.Fatal(err)
	}
	cmd, err := events.DecodeCommand(events.ActReport, "", []byte(reportGeneral))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Actor = inspector
	events.ResolveIDs(cmd)
	now := time.Date(2025, 3, 10, 10, 0, 0, 0, events.Shanghai)
	ev, err := events.Decide(cat, nil, cmd, now, events.DefaultSource)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := ev.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	h, err := events.Evolve(cat, nil, ev, cmd.Payload, raw, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return cat, h, raw
}

func progressCommand(tb testing.TB, id string) *events.Command {
	tb.Helper()
	cmd, err := events.DecodeCommand(events.ActProgress, id, []byte(`{"note":"已完成一半","percent":50}`))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Actor = rectifier
	events.ResolveIDs(cmd)
	return cmd
}

func TestAllocsDecideMarshal(t *testing.T) {
	cat, h, _ := reported(t)
	cmd := progressCommand(t, h.ID)
	now := h.RecordedAt.Time().Add(time.Hour)
	var failed error
	allocs := testing.AllocsPerRun(200, func() {
		ev, err := events.Decide(cat, h, cmd, now, events.DefaultSource)
		if err == nil {
			_, err = ev.Marshal()
		}
		if err != nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	t.Logf("events.Decide+Marshal of a progress command: %.0f allocations", allocs)
	if allocs > maxAllocsDecideMarshal {
		t.Fatalf("events.Decide+Marshal: %.0f allocations per command, at most %d expected", allocs, maxAllocsDecideMarshal)
	}
}

func TestAllocsIndexApply(t *testing.T) {
	cat, h, report := reported(t)
	cmd := progressCommand(t, h.ID)
	ev, err := events.Decide(cat, h, cmd, h.RecordedAt.Time().Add(time.Hour), events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	idx := projections.NewIndex(cat)
	if err := idx.Apply(1, report); err != nil {
		t.Fatal(err)
	}
	seq := uint64(1)
	var failed error
	allocs := testing.AllocsPerRun(200, func() {
		seq++
		if err := idx.Apply(seq, raw); err != nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if got, _ := idx.Get(h.ID); got.Seq != seq || got.Version != int(seq) {
		t.Fatalf("index at seq %d version %d, want %d", got.Seq, got.Version, seq)
	}
	t.Logf("Index.Apply of a progress event: %.0f allocations", allocs)
	if allocs > maxAllocsIndexApply {
		t.Fatalf("Index.Apply: %.0f allocations per event, at most %d expected", allocs, maxAllocsIndexApply)
	}
}
