package projections

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"qingling/events"
	"qingling/events/jsstore"
)

// Replay feeds the index and the projections every event from the index's applied sequence
// + 1 up to the log's last sequence at the start, then returns that sequence. It is the
// catch-up of a start and the whole of `qingling rebuild`: decoding runs on every core while
// one goroutine applies the events in stream order. progress, when set, is called now and
// then with the events done and the total.
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type item struct {
		m   jsstore.Msg
		e   *events.Event
		p   any
		err error
	}
	const batch = 256
	// Batches are decoded concurrently, each by its own goroutine; the channel of their
	// results, in stream order, bounds how many are in flight.
	order := make(chan chan []item, 4*max(runtime.GOMAXPROCS(0), 2))

	errDone := errors.New("replay: reached the target")
	var readErr error
	go func() {
		defer close(order)
		buf := make([]item, 0, batch)
		flush := func() {
			if len(buf) == 0 {
				return
			}
			out := make(chan []item, 1)
			b := buf
			go func() {
				d := newDecoder()
				for i := range b {
					b[i].e, b[i].p, b[i].err = d.decode(b[i].m.Data)
				}
				out <- b
			}()
			select {
			case order <- out:
			case <-ctx.Done():
			}
			buf = make([]item, 0, batch)
		}
		err := src.Follow(ctx, from, func(m jsstore.Msg, pending uint64) error {
			buf = append(buf, item{m: m})
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
	done := 0
	for out := range order {
		b := <-out
		for i := range b {
			it := &b[i]
			if it.err == nil {
				it.err = idx.ApplyParsed(it.m.Seq, it.m.Data, it.e, it.p)
			}
			if it.err == nil {
				for _, pr := range projs {
					pr.ApplyEvent(it.m.Seq, it.e, it.p)
				}
			}
			idx.MarkApplied(it.m.Seq)
		}
		done += len(b)
		if progress != nil {
			progress(done, total)
		}
	}
	if readErr != nil && idx.Applied() < target {
		return idx.Applied(), readErr
	}
	return idx.Applied(), ctx.Err()
}

// v1Compat makes the faster decoder read what encoding/json reads: names matched without
// regard to case, the last of duplicate names, invalid UTF-8 replaced.
var v1Compat = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) // read-only

// decoder reads stored events about three times faster than events.ParseEvent and Payload
// (encoding/json): one pass with encoding/json/v2 semantics set to v1's, the payload decoded
// in place when the type comes before the data (as Marshal writes it), and e.Data a slice of
// the stored bytes rather than a copy. Anything it does not take goes to events.ParseEvent.
// A decoder is used by one goroutine at a time.
type decoder struct {
	raw  []byte
	e    *events.Event
	p    any
	pFor string // the type p was made for
	opts jsonv2.Options
}

func newDecoder() *decoder {
	d := &decoder{}
	d.opts = jsonv2.JoinOptions(v1Compat, jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *json.RawMessage) error {
		if v != &d.e.Data {
			return jsonv2.SkipFunc
		}
		start := dec.InputOffset()
		if d.p == nil && d.e.Type != "" {
			if p := events.NewPayload(d.e.Type); p != nil {
				if err := jsonv2.UnmarshalDecode(dec, p, v1Compat); err != nil {
					return err
				}
				d.p, d.pFor = p, d.e.Type
				*v = trimSpace(d.raw[start:dec.InputOffset()])
				return nil
			}
		}
		val, err := dec.ReadValue()
		if err != nil {
			return err
		}
		end := dec.InputOffset()
		*v = d.raw[end-int64(len(val)) : end]
		return nil
	})))
	return d
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r' || b[0] == ':' || b[0] == ',') {
		b = b[1:]
	}
	return b
}

func (d *decoder) decode(raw []byte) (*events.Event, any, error) {
	d.raw, d.e, d.p = raw, &events.Event{}, nil
	e := d.e
	if jsonv2.Unmarshal(raw, e, d.opts) == nil && e.SpecVersion == "1.0" && e.Type != "" && e.Subject != "" {
		p := d.p
		if p == nil {
			if p = events.NewPayload(e.Type); p == nil || jsonv2.Unmarshal(e.Data, p, v1Compat) != nil {
				p = nil
			}
		}
		if p != nil && (d.p == nil || d.pFor == e.Type) {
			return e, p, nil
		}
	}
	ev, err := events.ParseEvent(raw)
	if err != nil {
		return nil, nil, err
	}
	p, err := ev.Payload()
	return ev, p, err
}
