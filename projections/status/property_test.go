package status

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"qingling/events"
)

var start = time.Date(2023, 12, 1, 9, 0, 0, 0, events.Shanghai)

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func feed(x *Projection, log []stored) {
	for _, s := range log {
		x.ApplyEvent(s.seq, s.e, s.p)
	}
}

func diffRows(lay *layout, got, want []vec) string {
	for r := range want {
		if got[r] != want[r] {
			return fmt.Sprintf("row %s: got %v, want %v", lay.rows[r].key, got[r].counts(), want[r].counts())
		}
	}
	return ""
}

func liveRows(x *Projection) []vec {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return append([]vec(nil), x.live...)
}

func asOfRows(x *Projection, at time.Time) []vec {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.asOf(at.UnixNano())
}

func checkNonNegative(t *rapid.T, lay *layout, vals []vec, what string) {
	for r := range vals {
		for k, v := range vals[r] {
			if v < 0 {
				t.Fatalf("%s: row %s count %d is %d", what, lay.rows[r].key, k, v)
			}
		}
	}
}

// TestFoldProperties runs random valid histories (commands through events.Decide, some
// recorded with a skewed clock) and checks, at every step and at the end:
//   - the incremental live rows equal the oracle (events.Evolve of the events recorded by
//     now, read with the Hazard's methods) — deadline crossings included, with no event;
//   - a rebuild from scratch and the as-of fold at the end equal the live rows;
//   - as-of at earlier instants and the daily figures equal the oracle at those instants;
//   - a snapshot taken mid-stream and fed the rest equals the rebuild (no double counting,
//     even when the feed repeats events);
//   - no count is ever negative, and zeroed holds exactly when no major is open and nothing
//     is overdue.
func TestFoldProperties(t *testing.T) {
	cat := catalog(t)
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(cat, start)
		clk := &clock{t: start}
		x := New(Config{Catalog: cat, Clock: clk.now})
		lay := x.lay
		cutoff := time.Unix(0, x.cutoff)
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		var instants []time.Time
		for range steps {
			w.step(t)
			if w.now.After(clk.t) {
				clk.t = w.now
			}
			feed(x, w.log[x.Seq():])
			if rapid.Bool().Draw(t, "tick") {
				clk.t = clk.t.Add(time.Duration(rapid.IntRange(0, 20*24).Draw(t, "idle")) * time.Hour)
				x.Advance(clk.t)
			}
			instants = append(instants, clk.t)
			x.Advance(clk.t) // what Tick does when no event comes
			live := liveRows(x)
			checkNonNegative(t, lay, live, "live")
			if d := diffRows(lay, live, oracle(lay, cat, w.log, clk.t, cutoff)); d != "" {
				t.Fatalf("live after seq %d at %s: %s", x.Seq(), clk.t, d)
			}
		}
		live := liveRows(x)

		re := New(Config{Catalog: cat, Clock: clk.now})
		feed(re, w.log)
		re.Advance(clk.t)
		if d := diffRows(lay, liveRows(re), live); d != "" {
			t.Fatalf("rebuild differs from incremental: %s", d)
		}
		if d := diffRows(lay, asOfRows(x, clk.t), live); d != "" {
			t.Fatalf("as-of at the end differs from live: %s", d)
		}

		for _, at := range instants {
			at = at.Add(-time.Duration(rapid.IntRange(0, 48*3600).Draw(t, "back")) * time.Second)
			got := asOfRows(x, at)
			checkNonNegative(t, lay, got, "as-of")
			if d := diffRows(lay, got, oracle(lay, cat, w.log, at, cutoff)); d != "" {
				t.Fatalf("as-of %s: %s", at, d)
			}
		}

		// daily figures of a few rows against the oracle at each day's end
		today := dayOf(clk.t.UnixNano())
		for _, key := range []string{"all.530000", lay.rows[lay.leafRow[lay.leaf(w.sectors[0], w.regions[0])][0]].key} {
			r := lay.byKey[key]
			sector, region := keyRegion(key)
			from := time.Unix(0, dayEnd(dayOf(start.UnixNano())-1)+1)
			_, days, err := x.Daily(sector, region, from, clk.t)
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range days {
				di := dayOf(from.UnixNano()) + int32(i)
				if di == today {
					continue
				}
				want := oracle(lay, cat, w.log, time.Unix(0, dayEnd(di)), cutoff)[r].counts()
				if d.Counts != want {
					t.Fatalf("daily %s %s: got %+v, want %+v", key, d.Date, d.Counts, want)
				}
			}
		}

		// restart mid-stream from a snapshot
		k := rapid.IntRange(0, len(w.log)).Draw(t, "snapshot_at")
		part := New(Config{Catalog: cat, Clock: clk.now})
		feed(part, w.log[:k])
		var buf bytes.Buffer
		if err := part.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		restored := New(Config{Catalog: cat, Clock: clk.now})
		if err := restored.ReadSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		feed(restored, w.log[max(k-3, 0):]) // a feed that repeats a few events must not double count
		if d := diffRows(lay, liveRows(restored), live); d != "" {
			t.Fatalf("restored at %d of %d differs from rebuild: %s", k, len(w.log), d)
		}

		// verdicts
		res, err := x.Status(Select{}, time.Time{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range res.Rows {
			if row.Zeroed != (row.OpenMajor == 0 && row.Overdue == 0) || row.StockZeroed != (row.StockMajor == 0) {
				t.Fatalf("verdicts of %s: %+v", row.Key, row)
			}
		}
		// zeroed exactly when no hazard of the row is an open major or overdue
		states := map[string]*events.Hazard{}
		for _, s := range w.log {
			h := states[s.e.Subject]
			if nh, err := events.Evolve(cat, h, s.e, s.p, s.raw, s.seq); err == nil && h == nil {
				states[s.e.Subject] = nh
			}
		}
		bad := map[string]bool{}
		for _, h := range states {
			if (h.Status.Open() && h.Grade == events.GradeMajor) || h.Overdue(clk.t) {
				bad["all.530000"] = true
			}
		}
		for _, row := range res.Rows {
			if row.Key == "all.530000" && row.Zeroed == bad["all.530000"] {
				t.Fatalf("all.530000 zeroed=%v, but open major or overdue hazards: %v", row.Zeroed, bad["all.530000"])
			}
		}
	})
}
