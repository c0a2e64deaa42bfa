package projections

import (
	"context"
	"errors"
	"runtime"

	"github.com/google/uuid"

	"qingling/events"
	"qingling/events/jsstore"
)

// Replay feeds the index and the projections every event from the index's applied sequence
// + 1 up to the log's last sequence at the start, then returns that sequence. It is the
// catch-up of a start and the whole of `qingling rebuild`: decoding runs on every core while
// one goroutine applies the events in stream order. progress, when set, is called now and
// then with the events done and the total.
//
// A replay does not hash the events: the index's hazards come out HashUnknown, and the
// command path hashes a hazard's last event when it next decides on it (Hazard.SetLastHash) —
// one read by sequence for the hazards that get another command, none for the rest.
func Replay(ctx context.Context, src Source, idx *Index, projs []Projection, progress func(done, total int)) (uint64, error) {
	target, err := src.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	from := idx.Applied() + 1
	if target < from {
		return idx.Applied(), nil
	}
	total := int(target - from + 1)
	idx.reserve(total)
	defer idx.trimReserve()
	for _, pr := range projs {
		if r, ok := pr.(Reserver); ok {
			r.Reserve(total)
			defer r.Trim()
		}
	}
	defer idx.settleCommands() // however the replay ends: its events are applied
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type item struct {
		m      jsstore.Msg
		e      events.Event
		p      any
		cmd    uuid.UUID
		hasCmd bool
		hz     uint32 // the index's number of its hazard
		err    error
	}
	numbering := new(byte) // this replay, for NumberedProjection
	const batch = 256
	// Three stages: batches are decoded concurrently, each by its own goroutine;
	// this goroutine applies them to the index in stream order; another applies them to the
	// projections and marks them applied. The channels bound how many are in flight.
	order := make(chan chan []item, 4*max(runtime.GOMAXPROCS(0), 2))
	toProjs := make(chan []item, 4)
	// Batches done with come back for reuse: a replay then makes a fifth less garbage.
	free := make(chan []item, cap(order)+cap(toProjs)+4)
	newBatch := func() []item {
		select {
		case b := <-free:
			return b[:0]
		default:
			return make([]item, 0, batch)
		}
	}

	errDone := errors.New("replay: reached the target")
	var readErr error
	go func() {
		defer close(order)
		buf := newBatch()
		flush := func() {
			if len(buf) == 0 {
				return
			}
			out := make(chan []item, 1)
			b := buf
			go func() {
				d := events.NewViewDecoder() // the index and projections clone what they keep
				for i := range b {
					it := &b[i]
					if it.p, it.err = d.Decode(it.m.Data, &it.e); it.err == nil {
						u, err := uuid.Parse(it.e.CommandID)
						it.cmd, it.hasCmd = u, err == nil
					}
				}
				out <- b
			}()
			select {
			case order <- out:
			case <-ctx.Done():
			}
			buf = newBatch()
		}
		err := src.Follow(ctx, from, func(m jsstore.Msg, pending uint64) error {
			buf = buf[:len(buf)+1] // zero: new, or cleared when done with
			buf[len(buf)-1].m = m
			if len(buf) == batch || pending == 0 || m.Seq >= target {
				flush()
			}
			if m.Seq >= target {
				return errDone
			}
			return nil
		})
		if !errors.Is(err, errDone) {
			readErr = err
		}
	}()
	projsDone := make(chan struct{})
	go func() {
		defer close(projsDone)
		done := 0
		for b := range toProjs {
			for _, pr := range projs {
				if np, ok := pr.(NumberedProjection); ok {
					np.ApplyNumbered(numbering, len(b), func(i int) (uint64, uint32, *events.Event, any) {
						if b[i].err != nil {
							return 0, 0, nil, nil
						}
						return b[i].m.Seq, b[i].hz, &b[i].e, b[i].p
					})
					continue
				}
				if bp, ok := pr.(BatchProjection); ok {
					bp.ApplyEvents(len(b), func(i int) (uint64, *events.Event, any) {
						if b[i].err != nil {
							return 0, nil, nil
						}
						return b[i].m.Seq, &b[i].e, b[i].p
					})
					continue
				}
				for i := range b {
					if it := &b[i]; it.err == nil {
						pr.ApplyEvent(it.m.Seq, &it.e, it.p)
					}
				}
			}
			idx.MarkApplied(b[len(b)-1].m.Seq)
			clear(b) // no message, event or payload kept alive by a batch waiting for reuse
			select {
			case free <- b:
			default:
			}
			done += len(b)
			if progress != nil {
				progress(done, total)
			}
		}
	}()
	for out := range order {
		b := <-out
		// a batch at a time: the index's lock taken once
		idx.mu.Lock()
		for i := range b {
			if it := &b[i]; it.err == nil {
				it.hz, it.err = idx.applyLocked(it.m.Seq, nil, it.cmd, it.hasCmd, true, &it.e, it.p)
			}
		}
		idx.mu.Unlock()
		toProjs <- b
	}
	close(toProjs)
	<-projsDone
	if readErr != nil && idx.Applied() < target {
		return idx.Applied(), readErr
	}
	return idx.Applied(), ctx.Err()
}

// decoder is the replay's events.Decoder, answering a fresh event.
type decoder struct{ d *events.Decoder }

func newDecoder() *decoder { return &decoder{events.NewDecoder()} }

func (d *decoder) decode(raw []byte) (*events.Event, any, error) {
	e := &events.Event{}
	p, err := d.d.Decode(raw, e)
	if err != nil {
		return nil, nil, err
	}
	return e, p, nil
}
