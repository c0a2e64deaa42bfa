package export

import (
	"context"
	"fmt"
	"strings"
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

// StreamPrefix is the prefix of a log stream's own subjects: "leaf.<county>." at a county
// office, whose events are stored under leaf.<county>.hz.…, else "".
func StreamPrefix(subjects []string) string {
	for _, s := range subjects {
		if i := strings.Index(s, ".hz."); i > 0 && strings.HasPrefix(s, "leaf.") {
			return s[:i+1]
		}
	}
	return ""
}

// StreamFilter turns a hazard subject filter (auditlog.SubjectFilter: hz.<sector>.…) into
// the subjects the stream holds: prefixed with StreamPrefix at a county office, so that a
// sector or region finds the office's events. "" and "hz.>" (the whole log) stay as they are.
func StreamFilter(ctx context.Context, js jetstream.JetStream, stream, filter string) (string, error) {
	if filter == "" || filter == "hz.>" {
		return filter, nil
	}
	info, err := streamInfo(ctx, js, stream)
	if err != nil {
		return "", fmt.Errorf("reading the subjects of %s: %w", stream, err)
	}
	return StreamPrefix(info.Config.Subjects) + filter, nil
}

func streamInfo(ctx context.Context, js jetstream.JetStream, stream string) (*jetstream.StreamInfo, error) {
	str, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return str.Info(ctx)
}

// Load reads the log (the subjects of filter, or all) into new Reports. filter is a hazard
// subject filter; at a county office it is applied under the office's leaf prefix.
func Load(ctx context.Context, js jetstream.JetStream, stream string, cat *events.Catalog, filter string, clock func() time.Time, progress func(done, total uint64)) (*Reports, error) {
	r := NewReports(cat, clock)
	var total uint64
	var subjects []string
	if filter != "" && filter != "hz.>" {
		subjects = []string{filter}
	}
	if info, err := streamInfo(ctx, js, stream); err == nil {
		total = info.State.Msgs
		if subjects != nil {
			subjects[0] = StreamPrefix(info.Config.Subjects) + filter
		}
	} else if subjects != nil {
		return nil, fmt.Errorf("reading the subjects of %s: %w", stream, err)
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
