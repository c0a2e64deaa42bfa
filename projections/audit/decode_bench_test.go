package audit

import (
	"testing"
	"time"

	"qingling/events"
)

func benchEvent(b *testing.B) []byte {
	cat, _ := events.LoadCatalog()
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, events.Shanghai)
	cmd, _ := events.DecodeCommand(events.ActReport, "", []byte(`{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司"},"grade":"major","criterion":"chem-2017-05","description":"化工有限公司：一级或者二级重大危险源罐区未实现紧急切断功能","source":"inspection","deadline":"2025-04-30","location":{"lat":24.91,"lon":102.48}}`))
	cmd.CommandID, cmd.OccurredAt, cmd.Actor = events.NewID(), at, events.Actor{ID: "inspector-530181", Role: "inspector"}
	events.ResolveIDs(cmd)
	ev, err := events.Decide(cat, nil, cmd, at.Add(time.Minute), events.DefaultSource)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := ev.Marshal()
	return raw
}

func BenchmarkDecodeFast(b *testing.B) {
	raw := benchEvent(b)
	d := newDecoder()
	var e events.Event
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := d.decode(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV1(b *testing.B) {
	raw := benchEvent(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e, err := events.ParseEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Payload(); err != nil {
			b.Fatal(err)
		}
	}
}
