package export

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/handlers/auditlog"
	"qingling/projections/audit"
	"qingling/projections/ledger"
	"qingling/projections/status"
)

// Reports are the inputs of both reports, built by one ordered read of the log.
type Reports struct {
	Catalog *events.Catalog
	Ledger  *ledger.Ledger
	Status  *status.Projection
	Events  int
	Skipped int // messages that are not decodable events (verify names them)
}

// NewReports returns empty inputs to feed with Apply.
func NewReports(cat *events.Catalog, clock func() time.Time) *Reports {
	return &Reports{Catalog: cat, Ledger: ledger.New(cat), Status: status.New(status.Config{Catalog: cat, Clock: clock})}
}

// Apply folds one stored event into both.
func (r *Reports) Apply(seq uint64, e *events.Event, p any) {
	r.Events++
	r.Ledger.ApplyEvent(seq, e, p)
	r.Status.ApplyEvent(seq, e, p)
}

type decoded struct {
	seq uint64
	e   *events.Event
	p   any
}

// Load reads the log (the subjects of filter, or all) into new Reports.
func Load(ctx context.Context, js jetstream.JetStream, stream string, cat *events.Catalog, filter string, clock func() time.Time, progress func(done, total uint64)) (*Reports, error) {
	r := NewReports(cat, clock)
	var total uint64
	if str, err := js.Stream(ctx, stream); err == nil {
		if info, err := str.Info(ctx); err == nil {
			total = info.State.Msgs
		}
	}
	var subjects []string
	if filter != "" && filter != "hz.>" {
		subjects = []string{filter}
	}
	err := auditlog.Walk(ctx, js, stream, subjects, 0, func(m audit.Msg) decoded {
		e, err := events.ParseEvent(m.Data)
		if err != nil {
			return decoded{seq: m.Seq}
		}
		p, err := e.Payload()
		if err != nil {
			return decoded{seq: m.Seq}
		}
		e.Data = nil // the payload is decoded; the bytes are not kept
		return decoded{seq: m.Seq, e: e, p: p}
	}, func(d decoded, done uint64) {
		if d.e == nil {
			r.Skipped++
		} else {
			r.Apply(d.seq, d.e, d.p)
		}
		if progress != nil && done%4096 == 0 {
			progress(done, max(total, done))
		}
	})
	if err != nil {
		return nil, err
	}
	if progress != nil {
		progress(uint64(r.Events+r.Skipped), uint64(r.Events+r.Skipped))
	}
	return r, nil
}
