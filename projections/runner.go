package projections

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
)

// Source is the event log as the runner reads it.
type Source interface {
	Follow(ctx context.Context, from uint64, fn func(m jsstore.Msg, pending uint64) error) error
	LastSeq(ctx context.Context) (uint64, error)
}

// Projection is a read model fed by the runner, after the index, in stream order. It may not
// keep e itself (a replay reuses its events' memory), and the strings of the events a replay
// brings view the stored bytes (events.NewViewDecoder): a string or payload kept is a
// strings.Clone of it, or it keeps the whole stored event alive.
type Projection interface {
	ApplyEvent(seq uint64, e *events.Event, p any)
}

// BatchProjection is a Projection that also takes a run of events at once (under one lock).
type BatchProjection interface {
	Projection
	ApplyEvents(n int, event func(i int) (seq uint64, e *events.Event, p any))
}

// Reserver is a Projection that a replay tells how many events it brings before the first
// (Reserve), and that it is done (Trim: give back what was reserved and is unused).
type Reserver interface {
	Reserve(events int)
	Trim()
}

// NumberedProjection is a Projection that a replay feeds a run at a time with the index's
// number of each event's hazard (stable for the replay; replay is a pointer of the replay's
// own, the same for all its runs).
type NumberedProjection interface {
	Projection
	ApplyNumbered(replay any, n int, event func(i int) (seq uint64, hz uint32, e *events.Event, p any))
}

// Runner feeds the index and the projections from one ordered consumer.
type Runner struct {
	Source      Source
	Index       *Index
	Projections []Projection
	Log         *slog.Logger
	// OnCaughtUp is called (from the runner's goroutine) each time the feed reaches the end.
	OnCaughtUp func(seq uint64)

	ready atomic.Bool
	dec   *decoder // the feed's decoder (status_rebuild.go), used by Run's goroutine only
}

// replayFrom is how far behind the log the runner must be to catch up through Replay (every
// core decoding) before it follows the log event by event.
const replayFrom = 4096

// Ready reports whether the runner has caught up with the log since it started.
func (r *Runner) Ready() bool { return r.ready.Load() }

// Run feeds until ctx ends, reconnecting after failures.
func (r *Runner) Run(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		target, err := r.Source.LastSeq(ctx)
		if err == nil && target > r.Index.Applied()+replayFrom {
			_, err = Replay(ctx, r.Source, r.Index, r.Projections, nil)
		}
		if err == nil {
			if r.Index.Applied() >= target {
				r.caughtUp(r.Index.Applied())
			}
			err = r.Source.Follow(ctx, r.Index.Applied()+1, func(m jsstore.Msg, pending uint64) error {
				if err := r.apply(m); err != nil {
					log.Error("projection: event skipped", "seq", m.Seq, "subject", m.Subject, "err", err)
				}
				r.Index.MarkApplied(m.Seq)
				wait = 100 * time.Millisecond
				if pending == 0 && m.Seq >= target {
					r.caughtUp(m.Seq)
				}
				return nil
			})
		}
		if ctx.Err() != nil {
			break
		}
		log.Warn("projection feed interrupted; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
	return ctx.Err()
}

func (r *Runner) caughtUp(seq uint64) {
	r.ready.Store(true)
	if r.OnCaughtUp != nil {
		r.OnCaughtUp(seq)
	}
}

func (r *Runner) apply(m jsstore.Msg) error {
	if r.dec == nil {
		r.dec = newDecoder()
	}
	e, p, err := r.dec.decode(m.Data)
	if err != nil {
		return err
	}
	if err := r.Index.ApplyParsed(m.Seq, m.Data, e, p); err != nil {
		return err
	}
	for _, pr := range r.Projections {
		pr.ApplyEvent(m.Seq, e, p)
	}
	return nil
}
