package ledger_test

import (
	"testing"
	"time"

	"qingling/events"
	"qingling/projections/ledger"
)

func TestPeriods(t *testing.T) {
	from, to, err := ledger.ParseQuarter("2025Q1")
	if err != nil || !from.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, events.Shanghai)) || !to.Equal(time.Date(2025, 4, 1, 0, 0, 0, 0, events.Shanghai)) {
		t.Fatalf("2025Q1 = %s – %s, %v", from, to, err)
	}
	if ledger.PeriodLabel(from, to) != "2025Q1" {
		t.Fatalf("label %s", ledger.PeriodLabel(from, to))
	}
	f, tt, err := ledger.Period("", "2025-01-01", "2025-04-01")
	if err != nil || !f.Equal(from) || !tt.Equal(to) {
		t.Fatalf("from/to: %s %s %v", f, tt, err)
	}
	f, tt, _ = ledger.Period("", "2025-02-01", "2025-02-15")
	if ledger.PeriodLabel(f, tt) != "2025-02-01_2025-02-14" {
		t.Fatalf("label %s", ledger.PeriodLabel(f, tt))
	}
	for _, bad := range [][3]string{{"2025Q5", "", ""}, {"2025Q1", "2025-01-01", ""}, {"", "2025-04-01", "2025-01-01"}, {"", "2025-01-01", ""}, {"", "yesterday", "2025-01-01"}} {
		if _, _, err := ledger.Period(bad[0], bad[1], bad[2]); events.KindOf(err) != events.KindInvalid {
			t.Errorf("Period%q: %v", bad, err)
		}
	}
}

// TestRowsCarryOverOpenHazards: the ledger of a period lists what was found in it and what was
// found earlier and still open at its start, each as recorded by the end of the period.
func TestRowsCarryOverOpenHazards(t *testing.T) {
	cat, _ := events.LoadCatalog()
	l := ledger.New(cat)
	seq := uint64(0)
	add := func(id string, typ string, at time.Time, p any) {
		seq++
		l.ApplyEvent(seq, &events.Event{ID: events.NewID(), Type: typ, Subject: id, Time: at, OccurredAt: at, Actor: "a"}, p)
	}
	day := func(m time.Month, d int) time.Time { return time.Date(2025, m, d, 10, 0, 0, 0, events.Shanghai) }
	rep := func() *events.Reported {
		return &events.Reported{Sector: "chem", Region: "530181", Site: events.Site{Name: "厂"}, Grade: "general", Description: "d", Source: "tip-off", Deadline: events.FormatInstant(day(12, 31))}
	}
	old, oldClosed, inside, later, gone := events.NewID(), events.NewID(), events.NewID(), events.NewID(), events.NewID()
	add(old, events.TypeReported, day(1, 5), rep())                      // found before, open at the start: carried over
	add(oldClosed, events.TypeReported, day(1, 6), rep())                // found before, cleared before: out
	add(oldClosed, events.TypeCompleted, day(1, 7), &events.Completed{}) //
	add(oldClosed, events.TypeCleared, day(1, 8), &events.Cleared{Method: "on-site"})
	add(inside, events.TypeReported, day(5, 1), rep())                // found in the period
	add(inside, events.TypeCompleted, day(7, 2), &events.Completed{}) // recorded after the period: not shown
	add(later, events.TypeReported, day(7, 3), rep())                 // found after: out
	add(gone, events.TypeReported, day(5, 2), rep())                  // withdrawn: out
	add(gone, events.TypeWithdrawn, day(5, 3), &events.Withdrawn{Reason: "r"})
	rows := l.Rows(ledger.Query{From: day(4, 1), To: day(7, 1)})
	if len(rows) != 2 || rows[0].ID != old || rows[1].ID != inside || rows[1].Status != events.StatusReported {
		t.Fatalf("rows: %+v", rows)
	}
	if c := rows[0].Cells(1); c[0] != "1" || c[11] != "举报" || c[16] != "待整改" || c[17] != "否" {
		t.Fatalf("cells %q", c)
	}
}
