package projections

import (
	"testing"
	"time"

	"qingling/events"
)

// benchEvents are a report and a plan as stored.
func benchEvents(tb testing.TB) [][]byte {
	tb.Helper()
	cat, err := events.LoadCatalog()
	if err != nil {
		tb.Fatal(err)
	}
	found := time.Date(2025, 3, 10, 9, 0, 0, 0, events.Shanghai)
	rep := &events.Command{Action: events.ActReport, CommandID: events.NewID(), OccurredAt: found, Actor: events.Actor{ID: "inspector-530181", Role: events.RoleInspector},
		Payload: &events.Reported{Sector: "chem", Region: "530181", Site: events.Site{Name: "第3号生产经营单位", CreditCode: "91530181PLM9QQPDAY"}, Grade: events.GradeGeneral,
			Description: "储罐区防火堤破损，部分区域未设置可燃气体检测报警装置", Source: "inspection", Location: &events.Location{Lat: 24.9, Lon: 102.5}, Deadline: events.FormatInstant(found.AddDate(0, 0, 30))}}
	events.ResolveIDs(rep)
	r, err := events.Decide(cat, nil, rep, found.Add(time.Minute), events.DefaultSource)
	if err != nil {
		tb.Fatal(err)
	}
	rraw, _ := r.Marshal()
	h, err := events.Evolve(cat, nil, r, rep.Payload, rraw, 1)
	if err != nil {
		tb.Fatal(err)
	}
	pl := &events.Command{Action: events.ActPlan, HazardID: h.ID, CommandID: events.NewID(), OccurredAt: found.Add(time.Hour), Actor: events.Actor{ID: "rectifier-91530181PLM9QQPDAY", Role: events.RoleRectifier},
		Payload: &events.Planned{Responsible: "企业主要负责人", Measures: "修复防火堤并加装可燃气体检测报警装置", Funds: "12万元", Deadline: events.FormatInstant(found.AddDate(0, 0, 25)), Contingency: "整改期间设置警戒区并专人值守"}}
	p, err := events.Decide(cat, h, pl, found.Add(2*time.Hour), events.DefaultSource)
	if err != nil {
		tb.Fatal(err)
	}
	praw, _ := p.Marshal()
	return [][]byte{rraw, praw}
}

// BenchmarkDecode is the runner's share of an applied event: decoding stored bytes.
func BenchmarkDecode(b *testing.B) {
	evs := benchEvents(b)
	b.Run("decoder", func(b *testing.B) {
		d := newDecoder()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, _, err := d.decode(evs[i%2]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseEvent+Payload", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e, err := events.ParseEvent(evs[i%2])
			if err == nil {
				_, err = e.Payload()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIndexApply folds decoded reports and plans of many hazards into a fresh index:
// the runner's serial share of an applied event.
func BenchmarkIndexApply(b *testing.B) {
	cat, err := events.LoadCatalog()
	if err != nil {
		b.Fatal(err)
	}
	type ev struct {
		raw []byte
		e   *events.Event
		p   any
	}
	const hazards = 20000
	var log []ev
	d := newDecoder()
	found := time.Date(2025, 3, 10, 9, 0, 0, 0, events.Shanghai)
	for i := range hazards {
		rep := &events.Command{Action: events.ActReport, CommandID: events.NewID(), OccurredAt: found, Actor: events.Actor{ID: "inspector-530181", Role: events.RoleInspector},
			Payload: &events.Reported{Sector: "chem", Region: "530181", Site: events.Site{Name: "第3号生产经营单位", CreditCode: "91530181PLM9QQPDAY"}, Grade: events.GradeGeneral,
				Description: "储罐区防火堤破损", Source: "inspection", Deadline: events.FormatInstant(found.AddDate(0, 0, 30))}}
		events.ResolveIDs(rep)
		r, err := events.Decide(cat, nil, rep, found.Add(time.Minute), events.DefaultSource)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := r.Marshal()
		h, err := events.Evolve(cat, nil, r, rep.Payload, raw, uint64(2*i+1))
		if err != nil {
			b.Fatal(err)
		}
		pl := &events.Command{Action: events.ActPlan, HazardID: h.ID, CommandID: events.NewID(), OccurredAt: found.Add(time.Hour), Actor: events.Actor{ID: "rect-1", Role: events.RoleRectifier},
			Payload: &events.Planned{Responsible: "企业主要负责人", Measures: "修复", Funds: "12万元", Deadline: events.FormatInstant(found.AddDate(0, 0, 25)), Contingency: "警戒"}}
		p, err := events.Decide(cat, h, pl, found.Add(2*time.Hour), events.DefaultSource)
		if err != nil {
			b.Fatal(err)
		}
		praw, _ := p.Marshal()
		for _, raw := range [][]byte{raw, praw} {
			e, pay, err := d.decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			log = append(log, ev{raw, e, pay})
		}
	}
	b.ResetTimer()
	n := 0
	for b.Loop() {
		idx := NewIndex(cat)
		for i, x := range log {
			if err := idx.ApplyParsed(uint64(i+1), x.raw, x.e, x.p); err != nil {
				b.Fatal(err)
			}
			idx.MarkApplied(uint64(i + 1))
		}
		n += len(log)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}
