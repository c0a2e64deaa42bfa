package status

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"qingling/events"
)

// fixture drives one projection with hand-written commands at a hand-moved clock.
type fixture struct {
	t   *testing.T
	w   *world
	clk *clock
	x   *Projection
}

func newFixture(t *testing.T, at time.Time) *fixture {
	cat := catalog(t)
	clk := &clock{t: at}
	return &fixture{t: t, w: newWorld(cat, at), clk: clk, x: New(Config{Catalog: cat, Clock: clk.now})}
}

// at moves the clock (and the live status) to t.
func (f *fixture) at(t time.Time) { f.clk.t = t; f.x.Advance(t) }

// do executes a command on hazard i (-1: report) recorded now; it must be accepted.
func (f *fixture) do(i int, actor string, p any, occurred time.Time) int {
	f.t.Helper()
	act := actionOf(p)
	if occurred.IsZero() {
		occurred = f.clk.t
	}
	if !f.w.exec(i, &events.Command{Action: act, OccurredAt: occurred, Actor: events.Actor{ID: actor}, Payload: p}, f.clk.t) {
		f.t.Fatalf("%s refused", act)
	}
	last := f.w.log[len(f.w.log)-1]
	f.x.ApplyEvent(last.seq, last.e, last.p)
	if i < 0 {
		return len(f.w.hz) - 1
	}
	return i
}

// actionOf is the verb whose event carries payload p.
func actionOf(p any) string {
	for _, a := range events.Actions {
		if fmt.Sprintf("%T", events.NewPayload(events.ActionType(a))) == fmt.Sprintf("%T", p) {
			return a
		}
	}
	return ""
}

func (f *fixture) report(county string, major bool, deadline time.Time, found time.Time) int {
	r := &events.Reported{Sector: "chem", Region: county, Site: events.Site{Name: "某化工有限公司"}, Grade: events.GradeGeneral,
		Description: "储罐区未设紧急切断", Source: "inspection", Deadline: events.FormatInstant(deadline)}
	if major {
		r.Grade, r.Criterion = events.GradeMajor, "chem-2017-05"
	}
	return f.do(-1, "insp-1", r, found)
}

// row returns the live row of key.
func (f *fixture) row(key string) Row {
	f.t.Helper()
	sector, region := keyRegion(key)
	res, err := f.x.Status(Select{Sector: sector, Region: region}, time.Time{}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range res.Rows {
		if r.Key == key {
			return r
		}
	}
	f.t.Fatalf("no row %s", key)
	return Row{}
}

var (
	d0     = time.Date(2025, 3, 1, 10, 0, 0, 0, events.Shanghai)
	county = "chem.530000.530100.530181"
	pref   = "chem.530000.530100"
)

func TestFoldTable(t *testing.T) {
	plan := func(deadline time.Time) *events.Planned {
		return &events.Planned{Responsible: "张三", Measures: "加装紧急切断阀", Funds: "30万元", Deadline: events.FormatInstant(deadline), Contingency: "专项应急预案"}
	}
	tests := []struct {
		name string
		run  func(f *fixture)
		key  string
		want Counts
		zero bool
	}{
		{"a major finding is open, increment, not zeroed", func(f *fixture) {
			f.report("530181", true, d0.AddDate(0, 0, 30), time.Time{})
		}, county, Counts{Open: 1, OpenMajor: 1, Increment: 1}, false},
		{"a general finding alone keeps the row zeroed", func(f *fixture) {
			f.report("530181", false, d0.AddDate(0, 0, 3), time.Time{})
		}, county, Counts{Open: 1, Increment: 1}, true},
		{"the deadline passes with no event: overdue", func(f *fixture) {
			f.report("530181", false, d0.Add(time.Hour), time.Time{})
			f.at(d0.Add(time.Hour + time.Nanosecond))
		}, county, Counts{Open: 1, Overdue: 1, Increment: 1}, false},
		{"at the deadline itself it is not yet overdue", func(f *fixture) {
			f.report("530181", true, d0.Add(time.Hour), time.Time{})
			f.at(d0.Add(time.Hour))
		}, county, Counts{Open: 1, OpenMajor: 1, Increment: 1}, false},
		{"an extension takes it out of overdue", func(f *fixture) {
			i := f.report("530181", true, d0.Add(time.Hour), time.Time{})
			f.at(d0.Add(2 * time.Hour))
			f.do(i, "ver-1", &events.Extended{Deadline: events.FormatInstant(d0.AddDate(0, 0, 10)), Reason: "设备采购周期长"}, time.Time{})
		}, county, Counts{Open: 1, OpenMajor: 1, Increment: 1}, false},
		{"found on the cut-off day is stock", func(f *fixture) {
			f.report("530181", true, d0.AddDate(0, 0, 30), time.Date(2023, 12, 31, 23, 59, 0, 0, events.Shanghai))
		}, county, Counts{Open: 1, OpenMajor: 1, Stock: 1, StockMajor: 1}, false},
		{"found the next day is increment", func(f *fixture) {
			f.report("530181", true, d0.AddDate(0, 0, 30), time.Date(2024, 1, 1, 0, 0, 0, 0, events.Shanghai))
		}, county, Counts{Open: 1, OpenMajor: 1, Increment: 1}, false},
		{"awaiting verification over ten days", func(f *fixture) {
			i := f.report("530181", false, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
			f.at(d0.Add(events.VerificationWindow + time.Nanosecond))
		}, county, Counts{Open: 1, AwaitingVerification: 1, VerificationOverdue: 1, Increment: 1}, true},
		{"awaiting exactly ten days is not yet overdue", func(f *fixture) {
			i := f.report("530181", false, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
			f.at(d0.Add(events.VerificationWindow))
		}, county, Counts{Open: 1, AwaitingVerification: 1, Increment: 1}, true},
		{"cleared on time", func(f *fixture) {
			i := f.report("530181", true, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "rect-1", plan(d0.AddDate(0, 0, 20)), time.Time{})
			f.at(d0.AddDate(0, 0, 5))
			f.do(i, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
			f.at(d0.AddDate(0, 0, 40))
			f.do(i, "ver-1", &events.Cleared{Method: "on-site"}, time.Time{})
		}, county, Counts{Cleared: 1, ClearedOnTime: 1}, true},
		{"completed after the plan's deadline: cleared, not on time", func(f *fixture) {
			i := f.report("530181", true, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "rect-1", plan(d0.AddDate(0, 0, 2)), time.Time{})
			f.at(d0.AddDate(0, 0, 5))
			f.do(i, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
			f.do(i, "ver-1", &events.Cleared{Method: "on-site"}, time.Time{})
		}, county, Counts{Cleared: 1}, true},
		{"completion occurred in the field before the deadline, recorded after: on time", func(f *fixture) {
			i := f.report("530181", false, d0.AddDate(0, 0, 2), time.Time{})
			f.at(d0.AddDate(0, 0, 3))
			f.do(i, "rect-1", &events.Completed{Note: "完成"}, d0.AddDate(0, 0, 1))
			f.do(i, "ver-1", &events.Cleared{Method: "on-site"}, time.Time{})
		}, county, Counts{Cleared: 1, ClearedOnTime: 1}, true},
		{"listed, then the listing deadline passes", func(f *fixture) {
			i := f.report("530181", true, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "ver-1", &events.Listed{Level: "prefecture", Authority: "昆明市安委办", Document: "昆安委办督〔2025〕3号", Deadline: events.FormatInstant(d0.AddDate(0, 0, 10))}, time.Time{})
			f.at(d0.AddDate(0, 0, 11))
		}, county, Counts{Open: 1, OpenMajor: 1, Listed: 1, ListedOverdue: 1, Increment: 1}, false},
		{"graded down to general: unlisted", func(f *fixture) {
			i := f.report("530181", true, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "ver-1", &events.Listed{Level: "county", Authority: "安宁市安委办", Document: "安委办督〔2025〕1号", Deadline: events.FormatInstant(d0.AddDate(0, 0, 10))}, time.Time{})
			f.do(i, "ver-1", &events.Graded{Grade: events.GradeGeneral, Reason: "复核"}, time.Time{})
		}, county, Counts{Open: 1, Increment: 1}, true},
		{"withdrawn leaves every count", func(f *fixture) {
			i := f.report("530181", true, d0.Add(time.Hour), time.Time{})
			f.do(i, "ver-1", &events.Withdrawn{Reason: "录入错误"}, time.Time{})
			f.at(d0.AddDate(0, 0, 30))
		}, county, Counts{}, true},
		{"reopened after clearance: open again", func(f *fixture) {
			i := f.report("530181", false, d0.AddDate(0, 0, 30), time.Time{})
			f.do(i, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
			f.do(i, "ver-1", &events.Cleared{Method: "on-site"}, time.Time{})
			f.do(i, "ver-1", &events.Reopened{Reason: "复发"}, time.Time{})
		}, county, Counts{Open: 1, Increment: 1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, d0)
			tc.run(f)
			got := f.row(tc.key)
			if got.Counts != tc.want || got.Zeroed != tc.zero {
				t.Fatalf("%s:\n got %+v zeroed=%v\nwant %+v zeroed=%v", tc.key, got.Counts, got.Zeroed, tc.want, tc.zero)
			}
			// the live row is the as-of fold at the live instant
			res, err := f.x.Status(Select{Sector: "chem", Region: "530000"}, f.clk.t, nil)
			if err != nil {
				t.Fatal(err)
			}
			live, _ := f.x.Status(Select{Sector: "chem", Region: "530000"}, time.Time{}, nil)
			for i := range res.Rows {
				if res.Rows[i].Counts != live.Rows[i].Counts {
					t.Fatalf("as-of now %s differs from live: %+v vs %+v", res.Rows[i].Key, res.Rows[i].Counts, live.Rows[i].Counts)
				}
			}
		})
	}
}

func TestRollUp(t *testing.T) {
	f := newFixture(t, d0)
	f.report("530181", true, d0.AddDate(0, 0, 30), time.Time{})
	f.report("530102", false, d0.Add(time.Hour), time.Time{})
	f.report("530302", false, d0.Add(time.Hour), time.Time{})
	f.at(d0.Add(2 * time.Hour))
	for key, want := range map[string]Counts{
		"chem.530000.530100.530181": {Open: 1, OpenMajor: 1, Increment: 1},
		"chem.530000.530100.530102": {Open: 1, Overdue: 1, Increment: 1},
		"chem.530000.530100":        {Open: 2, OpenMajor: 1, Overdue: 1, Increment: 2},
		"chem.530000.530300":        {Open: 1, Overdue: 1, Increment: 1},
		"chem.530000":               {Open: 3, OpenMajor: 1, Overdue: 2, Increment: 3},
		"all.530000.530100.530181":  {Open: 1, OpenMajor: 1, Increment: 1},
		"all.530000":                {Open: 3, OpenMajor: 1, Overdue: 2, Increment: 3},
		"mine.530000":               {},
	} {
		if got := f.row(key); got.Counts != want {
			t.Errorf("%s: got %+v, want %+v", key, got.Counts, want)
		}
	}
	res, err := f.x.Status(Select{Sector: "chem", Region: "530100"}, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1+14 || res.Rows[0].Key != pref || res.Rows[0].RegionZh != "昆明市" || res.Rows[0].SectorZh != "危险化学品" {
		t.Fatalf("select chem × 530100: %d rows, first %+v", len(res.Rows), res.Rows[0])
	}
	res, _ = f.x.Status(Select{Region: "530000"}, time.Time{}, nil)
	if len(res.Rows) != 7*(1+16) {
		t.Fatalf("select every sector × 530000: %d rows", len(res.Rows))
	}
	for _, bad := range []Select{{Sector: "coal"}, {Region: "999999"}} {
		if _, err := f.x.Status(bad, time.Time{}, nil); events.ErrorOf(err).Kind != events.KindInvalid {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestAsOfFiltersOnRecordTime(t *testing.T) {
	f := newFixture(t, d0)
	i := f.report("530181", false, d0.AddDate(0, 0, 30), time.Time{})
	f.at(d0.Add(2 * time.Hour))
	// another writer, its clock an hour behind, records the completion "before" the last event
	if !f.w.exec(i, &events.Command{Action: events.ActComplete, Actor: events.Actor{ID: "rect-1"}, Payload: &events.Completed{Note: "完成"}}, d0.Add(time.Hour)) {
		t.Fatal("complete refused")
	}
	last := f.w.log[len(f.w.log)-1]
	f.x.ApplyEvent(last.seq, last.e, last.p)
	if !f.w.exec(i, &events.Command{Action: events.ActClear, Actor: events.Actor{ID: "ver-1"}, Payload: &events.Cleared{Method: "on-site"}}, d0.Add(3*time.Hour)) {
		t.Fatal("clear refused")
	}
	last = f.w.log[len(f.w.log)-1]
	f.clk.t = d0.Add(3 * time.Hour)
	f.x.ApplyEvent(last.seq, last.e, last.p)
	for _, tc := range []struct {
		at   time.Time
		want Counts
	}{
		{d0.Add(-time.Minute), Counts{}},
		{d0, Counts{Open: 1, Increment: 1}},
		{d0.Add(90 * time.Minute), Counts{Open: 1, AwaitingVerification: 1, Increment: 1}},
		{d0.Add(3 * time.Hour), Counts{Cleared: 1, ClearedOnTime: 1}},
	} {
		res, err := f.x.Status(Select{Sector: "chem", Region: "530181"}, tc.at, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows[0].Counts != tc.want {
			t.Errorf("as of %s: got %+v, want %+v", tc.at, res.Rows[0].Counts, tc.want)
		}
	}
	if _, err := f.x.Status(Select{}, d0.AddDate(1, 0, 0), nil); events.ErrorOf(err).Code != "as_of_in_future" {
		t.Errorf("future as_of: %v", err)
	}
}

func TestPeriodAndDynamicZeroRate(t *testing.T) {
	f := newFixture(t, d0)
	plan := &events.Planned{Responsible: "张三", Measures: "整改", Funds: "1万元", Deadline: events.FormatInstant(d0.AddDate(0, 0, 5)), Contingency: "预案"}
	a := f.report("530181", true, d0.AddDate(0, 0, 10), time.Time{}) // cleared on time
	b := f.report("530181", true, d0.AddDate(0, 0, 3), time.Time{})  // past its deadline, open
	f.report("530181", true, d0.AddDate(0, 0, 60), time.Time{})      // not yet due
	f.report("530181", false, d0.AddDate(0, 0, 1), time.Time{})      // general
	w := f.report("530181", true, d0.AddDate(0, 0, 1), time.Time{})  // withdrawn
	f.do(w, "ver-1", &events.Withdrawn{Reason: "重复"}, time.Time{})
	f.do(a, "rect-1", plan, time.Time{})
	f.do(a, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
	f.do(a, "ver-1", &events.Cleared{Method: "on-site"}, time.Time{})
	_ = b
	f.at(d0.AddDate(0, 0, 20))
	p := &PeriodSpec{From: d0.Add(-time.Hour), To: d0.Add(time.Hour)}
	res, err := f.x.Status(Select{Sector: "chem", Region: "530181"}, time.Time{}, p)
	if err != nil {
		t.Fatal(err)
	}
	got := *res.Rows[0].Period
	if got.Found != 4 || got.FoundMajor != 3 || got.Cleared != 1 || got.ClearedOnTime != 1 || got.MajorDue != 2 || got.MajorClearedOnTime != 1 ||
		got.DynamicZeroRate == nil || *got.DynamicZeroRate != 0.5 {
		t.Fatalf("period: %+v rate %v", got, got.DynamicZeroRate)
	}
	// before any deadline passed, only the cleared one is due
	res, _ = f.x.Status(Select{Sector: "chem", Region: "530181"}, d0.Add(time.Minute), p)
	if r := res.Rows[0].Period; r.MajorDue != 1 || r.DynamicZeroRate == nil || *r.DynamicZeroRate != 1 {
		t.Fatalf("period as of the start: %+v", r)
	}
	// before the report was recorded, nothing was found
	res, _ = f.x.Status(Select{Sector: "chem", Region: "530181"}, d0.Add(-time.Nanosecond), p)
	if r := res.Rows[0].Period; r.Found != 0 || r.DynamicZeroRate != nil {
		t.Fatalf("period before the reports: %+v", r)
	}
	// found outside the period
	res, _ = f.x.Status(Select{Sector: "chem", Region: "530181"}, time.Time{}, &PeriodSpec{From: d0.AddDate(0, 0, 1), To: d0.AddDate(0, 0, 2)})
	if r := res.Rows[0].Period; r.Found != 0 {
		t.Fatalf("empty period: %+v", r)
	}
}

func TestDaily(t *testing.T) {
	f := newFixture(t, d0)
	i := f.report("530181", true, d0.Add(26*time.Hour), time.Time{}) // due the next day 12:00
	f.at(d0.AddDate(0, 0, 3))
	f.do(i, "ver-1", &events.Extended{Deadline: events.FormatInstant(d0.AddDate(0, 0, 30)), Reason: "延期"}, time.Time{})
	f.at(d0.AddDate(0, 0, 4).Add(time.Hour))
	_, days, err := f.x.Daily("chem", "530181", d0.AddDate(0, 0, -1), d0.AddDate(0, 0, 10))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		date          string
		open, overdue int
		partial       bool
	}{{"2025-02-28", 0, 0, false}, {"2025-03-01", 1, 0, false}, {"2025-03-02", 1, 1, false}, {"2025-03-03", 1, 1, false}, {"2025-03-04", 1, 0, false}, {"2025-03-05", 1, 0, true}}
	if len(days) != len(want) {
		t.Fatalf("days: %+v", days)
	}
	for k, d := range days {
		if d.Date != want[k].date || d.Open != want[k].open || d.Overdue != want[k].overdue || d.Partial != want[k].partial {
			t.Errorf("day %d: got %s open %d overdue %d partial %v, want %+v", k, d.Date, d.Open, d.Overdue, d.Partial, want[k])
		}
	}
	if days[1].AsOf != "2025-03-01T23:59:59.999999999+08:00" {
		t.Errorf("as_of of a day: %s", days[1].AsOf)
	}
}

func TestCrossingQueueWakes(t *testing.T) {
	f := newFixture(t, d0)
	f.report("530181", false, d0.Add(time.Hour), time.Time{})
	next, ok := f.x.NextWake()
	if !ok || !next.Equal(d0.Add(time.Hour+time.Nanosecond)) {
		t.Fatalf("next wake %v %v", next, ok)
	}
	f.x.TakeDirty()
	f.at(d0.Add(time.Hour + time.Nanosecond))
	rows, _, asOf := f.x.TakeDirty()
	if len(rows) != 6 || rows[0].Key != county || rows[0].Overdue != 1 || !asOf.Equal(d0.Add(time.Hour+time.Nanosecond)) {
		t.Fatalf("dirty after the crossing: %d rows, %+v at %s", len(rows), rows, asOf)
	}
	if _, ok := f.x.NextWake(); ok {
		t.Fatal("nothing else should be scheduled")
	}
}

// TestDailyBeyond16Bits: a day's change of a leaf is kept in 16 bits a count, and what goes
// beyond spills over exactly: 33,000 reports in one county on one day, all withdrawn the next.
func TestDailyBeyond16Bits(t *testing.T) {
	if testing.Short() {
		t.Skip("33,000 reports")
	}
	const n = 33000
	f := newFixture(t, d0)
	first := -1
	for k := range n {
		i := f.report("530181", false, d0.AddDate(0, 0, 30), time.Time{})
		if k == 0 {
			first = i
		}
	}
	f.at(d0.AddDate(0, 0, 1))
	for i := first; i < first+n; i++ {
		f.do(i, "insp-1", &events.Withdrawn{Reason: "重复上报"}, time.Time{})
	}
	f.at(d0.AddDate(0, 0, 2))
	_, days, err := f.x.Daily("chem", "530181", d0, d0.AddDate(0, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 3 || days[0].Open != n || days[0].Increment != n || days[1].Open != 0 || days[2].Open != 0 {
		t.Fatalf("days: %+v", days)
	}
	if len(f.x.wide) == 0 {
		t.Fatal("nothing spilled beyond 16 bits: the test does not reach the case")
	}
	if got := f.row("chem.530000.530100.530181").Open; got != 0 {
		t.Fatalf("live open %d", got)
	}
}

// TestApplyNumberedForgetsAnotherReplaysNumbers: a replay finds hazards by the numbers it
// gave them; the next replay numbers them otherwise, and the projection forgets the first's
// numbers (else the second's events would count for the wrong hazards).
func TestApplyNumberedForgetsAnotherReplaysNumbers(t *testing.T) {
	f := newFixture(t, d0)
	a := f.report("530181", false, d0.Add(72*time.Hour), d0)
	f.report("530102", false, d0.Add(72*time.Hour), d0)
	split := len(f.w.log)
	f.at(d0.Add(time.Hour))
	f.do(a, "rect-1", &events.Planned{Responsible: "张三", Measures: "加装紧急切断阀", Funds: "30万元", Deadline: events.FormatInstant(d0.Add(48 * time.Hour)), Contingency: "专项应急预案"}, time.Time{})
	f.do(a, "rect-1", &events.Progressed{Note: "已完成一半", Percent: 50}, time.Time{})
	f.do(a, "rect-1", &events.Completed{Note: "完成"}, time.Time{}) // a counts as awaiting verification, b as open

	y := New(Config{Catalog: f.w.cat, Clock: f.clk.now})
	replay := func(log []stored, number map[string]uint32) {
		y.ApplyNumbered(new(byte), len(log), func(i int) (uint64, uint32, *events.Event, any) {
			return log[i].seq, number[log[i].e.Subject], log[i].e, log[i].p
		})
	}
	ida, idb := f.w.log[0].e.Subject, f.w.log[1].e.Subject
	replay(f.w.log[:split], map[string]uint32{ida: 0, idb: 1})
	replay(f.w.log[split:], map[string]uint32{ida: 1, idb: 0})
	got, _, _ := y.All()
	want, _, _ := f.x.All()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].Counts != want[i].Counts {
			t.Fatalf("row %s: %+v, want %+v", want[i].Key, got[i].Counts, want[i].Counts)
		}
	}
}

// TestReserveAndTrim: a replay's reserve holds hazards without growing; Trim leaves no more
// than a fifth of the room unused; a projection with hazards is not reserved again.
func TestReserveAndTrim(t *testing.T) {
	f := newFixture(t, d0)
	f.x.Reserve(100_000)
	if cap(f.x.hz) != 50_000 {
		t.Fatalf("reserved room for %d hazards", cap(f.x.hz))
	}
	for range 3 {
		f.report("530181", false, d0.Add(72*time.Hour), d0)
	}
	f.x.Reserve(100_000)
	if len(f.x.hz) != 3 || cap(f.x.hz) != 50_000 {
		t.Fatalf("reserve of a projection with hazards: %d of %d", len(f.x.hz), cap(f.x.hz))
	}
	f.x.Trim()
	if n, c := len(f.x.hz), cap(f.x.hz); n != 3 || c-n > c/5 {
		t.Fatalf("after Trim: %d hazards, room for %d", n, c)
	}
}

// TestNumberedReplayMatchesApplyEvent: a numbered replay (its new hazards kept out of the map
// by id until it ends) counts and snapshots as events applied one by one do — with an id
// spelled otherwise (capitals: another number in the index, the same hazard here) between,
// and a snapshot taken while the replay's hazards are still out of the map.
func TestNumberedReplayMatchesApplyEvent(t *testing.T) {
	f := newFixture(t, d0)
	a := f.report("530181", false, d0.Add(72*time.Hour), d0)
	f.report("530102", false, d0.Add(72*time.Hour), d0)
	f.at(d0.Add(time.Hour))
	f.do(a, "rect-1", &events.Completed{Note: "完成"}, time.Time{})
	log := slices.Clone(f.w.log)
	odd := *log[0].e // the report of a again, its id in capitals
	odd.Subject = strings.ToUpper(odd.Subject)
	log = append(log[:2:2], append([]stored{{seq: 3, e: &odd, p: log[0].p}}, log[2:]...)...)
	for i := range log {
		log[i].seq = uint64(i + 1)
	}
	number := map[string]uint32{log[0].e.Subject: 0, log[1].e.Subject: 1, odd.Subject: 2}

	ref := New(Config{Catalog: f.w.cat, Clock: f.clk.now})
	y := New(Config{Catalog: f.w.cat, Clock: f.clk.now})
	token := new(byte)
	snap := func(x *Projection) []byte {
		var b bytes.Buffer
		if err := x.WriteSnapshot(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for k := range log {
		ref.ApplyEvent(log[k].seq, log[k].e, log[k].p)
		y.ApplyNumbered(token, 1, func(int) (uint64, uint32, *events.Event, any) {
			return log[k].seq, number[log[k].e.Subject], log[k].e, log[k].p
		})
		if k == 1 && len(y.pendIDs) != 2 {
			t.Fatalf("after two reports of a numbered replay: %d hazards out of the map", len(y.pendIDs))
		}
		if !bytes.Equal(snap(ref), snap(y)) {
			t.Fatalf("after event %d (%s): snapshots differ", k+1, log[k].e.Type)
		}
	}
	y.Trim()
	if len(y.pendIDs) != 0 || len(y.ids) != 2 || len(y.hz) != 2 {
		t.Fatalf("after the replay: %d out of the map, %d in it, %d hazards", len(y.pendIDs), len(y.ids), len(y.hz))
	}
}
