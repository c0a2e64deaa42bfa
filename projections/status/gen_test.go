package status

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"qingling/events"
)

var (
	catOnce sync.Once
	catVal  *events.Catalog
	catErr  error
)

func catalog(tb testing.TB) *events.Catalog {
	tb.Helper()
	catOnce.Do(func() { catVal, catErr = events.LoadCatalog() })
	if catErr != nil {
		tb.Fatal(catErr)
	}
	return catVal
}

// stored is one event as the log holds it.
type stored struct {
	seq uint64
	raw []byte
	e   *events.Event
	p   any
}

// world makes valid histories: every command goes through events.Decide on the current state
// of its hazard (folded with events.Evolve), at a clock that moves on; a refused command
// records nothing.
type world struct {
	cat     *events.Catalog
	now     time.Time
	seq     uint64
	n       int
	hz      []*events.Hazard
	log     []stored
	sectors []string
	regions []string
}

func newWorld(cat *events.Catalog, start time.Time) *world {
	w := &world{cat: cat, now: start}
	for _, s := range cat.Sectors {
		w.sectors = append(w.sectors, s.Code)
	}
	var all []string
	for _, p := range cat.Provinces {
		for _, f := range cat.Children(p) {
			all = append(all, cat.Children(f)...)
		}
	}
	// a few counties, so that rows fill up: most of one prefecture and two elsewhere
	w.regions = append(all[:10:10], all[len(all)-2:]...)
	return w
}

func (w *world) id(prefix int) string {
	w.n++
	return fmt.Sprintf("%08x-0000-4000-8000-%012d", prefix, w.n)
}

// exec decides cmd on hazard i (-1 for a report) recorded at `at`; it returns whether an
// event was recorded.
func (w *world) exec(i int, cmd *events.Command, at time.Time) bool {
	var h *events.Hazard
	if i >= 0 {
		h = w.hz[i]
		cmd.HazardID = h.ID
	}
	cmd.CommandID = w.id(1)
	events.ResolveIDs(cmd)
	e, err := events.Decide(w.cat, h, cmd, at, events.DefaultSource)
	if err != nil {
		return false
	}
	raw, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	se, err := events.ParseEvent(raw)
	if err != nil {
		panic(err)
	}
	p, err := se.Payload()
	if err != nil {
		panic(err)
	}
	w.seq++
	nh, err := events.Evolve(w.cat, h, se, p, raw, w.seq)
	if err != nil {
		panic(err)
	}
	if i < 0 {
		w.hz = append(w.hz, nh)
	}
	w.log = append(w.log, stored{seq: w.seq, raw: raw, e: se, p: p})
	return true
}

var dayDurations = []time.Duration{0, time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour, 11 * 24 * time.Hour, 40 * 24 * time.Hour}

// step draws one command and executes it.
func (w *world) step(t *rapid.T) {
	w.now = w.now.Add(rapid.SampledFrom(dayDurations).Draw(t, "advance") + time.Duration(rapid.IntRange(0, 3600).Draw(t, "jitter"))*time.Second)
	at := w.now
	if rapid.IntRange(0, 9).Draw(t, "skewed") == 0 {
		at = at.Add(-time.Duration(rapid.IntRange(1, 7200).Draw(t, "skew")) * time.Second) // another writer's clock
	}
	act := events.ActReport
	i := -1
	if len(w.hz) > 0 && rapid.IntRange(0, 3).Draw(t, "new") > 0 {
		i = rapid.IntRange(0, len(w.hz)-1).Draw(t, "hazard")
		act = rapid.SampledFrom(events.Actions[1:]).Draw(t, "action")
	}
	occurred := at.Add(-time.Duration(rapid.IntRange(0, 72).Draw(t, "occurred_ago")) * time.Hour)
	if i >= 0 && occurred.Before(w.hz[i].FoundAt.Time()) {
		occurred = w.hz[i].FoundAt.Time()
	}
	later := func(name string) string {
		d := occurred.Add(time.Duration(rapid.IntRange(1, 60*24).Draw(t, name)) * time.Hour)
		if rapid.Bool().Draw(t, name+"_date") {
			return d.In(events.Shanghai).Format("2006-01-02")
		}
		return events.FormatInstant(d)
	}
	cmd := &events.Command{Action: act, OccurredAt: occurred, Actor: events.Actor{ID: "insp-1"}}
	switch act {
	case events.ActReport:
		sector := rapid.SampledFrom(w.sectors).Draw(t, "sector")
		r := &events.Reported{Sector: sector, Region: rapid.SampledFrom(w.regions).Draw(t, "region"), Site: events.Site{Name: "某单位"},
			Grade: events.GradeGeneral, Description: "隐患", Source: "inspection", Deadline: later("deadline")}
		if rapid.Bool().Draw(t, "major") {
			r.Grade, r.Criterion = events.GradeMajor, rapid.SampledFrom(w.cat.CriteriaOf(sector)).Draw(t, "criterion")
		}
		cmd.Payload = r
	case events.ActAmend:
		d := "更正"
		cmd.Payload = &events.Amended{Description: &d}
	case events.ActGrade:
		g := &events.Graded{Grade: events.GradeGeneral, Reason: "复核"}
		if w.hz[i].Grade == events.GradeGeneral {
			g.Grade, g.Criterion = events.GradeMajor, w.cat.CriteriaOf(w.hz[i].Sector)[0]
		}
		cmd.Payload, cmd.Actor.ID = g, "ver-1"
	case events.ActList:
		cmd.Payload, cmd.Actor.ID = &events.Listed{Level: rapid.SampledFrom(events.ListLevels).Draw(t, "level"), Authority: "安委办", Document: "督〔2025〕1号", Deadline: later("list_deadline")}, "ver-1"
	case events.ActPlan:
		cmd.Payload, cmd.Actor.ID = &events.Planned{Responsible: "张三", Measures: "整改", Funds: "1万元", Deadline: later("plan_deadline"), Contingency: "预案"}, "rect-1"
	case events.ActProgress:
		cmd.Payload, cmd.Actor.ID = &events.Progressed{Note: "进展", Percent: 50}, "rect-1"
	case events.ActExtend:
		d := w.hz[i].Deadline().Add(time.Duration(rapid.IntRange(1, 30*24).Draw(t, "ext")) * time.Hour)
		cmd.Payload, cmd.Actor.ID = &events.Extended{Deadline: events.FormatInstant(d), Reason: "延期"}, "ver-1"
	case events.ActComplete:
		cmd.Payload, cmd.Actor.ID = &events.Completed{Note: "完成"}, "rect-1"
	case events.ActReject:
		cmd.Payload, cmd.Actor.ID = &events.VerifyFailed{Reason: "不合格"}, "ver-1"
	case events.ActClear:
		cmd.Payload, cmd.Actor.ID = &events.Cleared{Method: "on-site"}, "ver-1"
	case events.ActReopen:
		rp := &events.Reopened{Reason: "复发"}
		if rapid.Bool().Draw(t, "reopen_deadline") {
			rp.Deadline = later("reopen_deadline")
		}
		cmd.Payload, cmd.Actor.ID = rp, "ver-1"
	case events.ActWithdraw:
		cmd.Payload, cmd.Actor.ID = &events.Withdrawn{Reason: "录入错误"}, "ver-1"
	}
	w.exec(i, cmd, at)
}

// oracle computes every row as of at the slow way: each hazard's events recorded by at,
// folded with events.Evolve in stream order, read with the Hazard's own methods.
func oracle(lay *layout, cat *events.Catalog, log []stored, at time.Time, cutoff time.Time) []vec {
	states := map[string]*events.Hazard{}
	for _, s := range log {
		if s.e.Time.After(at) {
			continue
		}
		h := states[s.e.Subject]
		nh, err := events.Evolve(cat, h, s.e, s.p, s.raw, s.seq)
		if err == nil && h == nil {
			states[s.e.Subject] = nh
		}
	}
	vals := make([]vec, len(lay.rows))
	for _, h := range states {
		var m uint16
		set := func(b int, on bool) {
			if on {
				m |= 1 << b
			}
		}
		open, major := h.Status.Open(), h.Grade == events.GradeMajor
		stock := open && h.FoundAt.Before(cutoff)
		set(cOpen, open)
		set(cOpenMajor, open && major)
		set(cOverdue, h.Overdue(at))
		set(cOverdueMajor, h.Overdue(at) && major)
		set(cAwaiting, h.Status == events.StatusAwaiting)
		set(cVerificationOverdue, h.VerificationOverdue(at))
		set(cListed, h.Listed && open)
		set(cListedOverdue, h.ListedOverdue(at))
		set(cCleared, h.Status == events.StatusCleared)
		set(cClearedOnTime, h.Status == events.StatusCleared && h.OnTime)
		set(cStock, stock)
		set(cIncrement, open && !stock)
		set(cStockMajor, stock && major)
		for _, r := range lay.leafRow[lay.leaf(h.Sector, h.Region)] {
			vals[r].add(m, 1)
		}
	}
	return vals
}
