package evidence

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"sync"

	"github.com/google/uuid"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections"
)

// Refs is the read model of which hazards' events reference each evidence file (the
// payloads' evidence: [{sha256, name}]). References only ever accumulate — no event takes
// one back — so Refs is a set union and the order it is fed in does not matter.
//
// The runner feeds it as a projection. A read-model snapshot holds the index but not Refs,
// so after a start from a snapshot Backfill reads the log up to the snapshot's sequence;
// until it has, Refs is not Complete. Per file it keeps the 32 bytes of the digest and the
// 16 of one hazard id, with a slice only for a file several hazards share.
type Refs struct {
	mu       sync.RWMutex
	by       map[[32]byte]hazards
	complete bool
	done     chan struct{} // closed once complete
}

type hazards struct {
	first uuid.UUID
	more  []uuid.UUID
}

// NewRefs returns an empty Refs; complete says whether the feed will bring every event (the
// log is read from its start), or Backfill must run first.
func NewRefs(complete bool) *Refs {
	r := &Refs{by: map[[32]byte]hazards{}, done: make(chan struct{})}
	if complete {
		r.complete = true
		close(r.done)
	}
	return r
}

// ApplyEvent implements projections.Projection.
func (r *Refs) ApplyEvent(_ uint64, e *events.Event, p any) {
	evs := events.EvidenceOf(p)
	if len(evs) == 0 {
		return
	}
	id, err := uuid.Parse(e.Subject)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		if k, ok := key(ev.SHA256); ok {
			r.add(k, id)
		}
	}
}

// add records that hazard id references file k. Under r.mu.
func (r *Refs) add(k [32]byte, id uuid.UUID) {
	h, ok := r.by[k]
	switch {
	case !ok:
		r.by[k] = hazards{first: id}
	case h.first == id:
	default:
		for _, x := range h.more {
			if x == id {
				return
			}
		}
		h.more = append(h.more, id)
		r.by[k] = h
	}
}

// Hazards lists the ids of the hazards referencing a file (nil: none, or a malformed digest).
func (r *Refs) Hazards(sum string) []string {
	k, ok := key(sum)
	if !ok {
		return nil
	}
	r.mu.RLock()
	h, ok := r.by[k]
	r.mu.RUnlock()
	if !ok {
		return nil
	}
	out := make([]string, 0, 1+len(h.more))
	out = append(out, h.first.String())
	for _, x := range h.more {
		out = append(out, x.String())
	}
	return out
}

// Len is the number of files referenced.
func (r *Refs) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.by)
}

// Complete reports whether Refs holds every reference of the events fed so far.
func (r *Refs) Complete() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.complete
}

// WaitComplete waits until Refs is complete, or ctx ends.
func (r *Refs) WaitComplete(ctx context.Context) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Follower reads the event log in order (jsstore.Store is one).
type Follower interface {
	Follow(ctx context.Context, from uint64, fn func(m jsstore.Msg, pending uint64) error) error
}

var errBackfilled = errors.New("evidence: backfill reached its end")

// evidenceKey is in every event that references a file: events without it are not decoded.
var evidenceKey = []byte(`"evidence"`)

// Backfill adds the references of the log's events 1..upto (those a snapshot skipped), then
// marks Refs complete. It decodes only events whose bytes mention evidence.
func (r *Refs) Backfill(ctx context.Context, log Follower, upto uint64) error {
	if upto > 0 {
		err := log.Follow(ctx, 1, func(m jsstore.Msg, _ uint64) error {
			if m.Seq > upto {
				return errBackfilled
			}
			if bytes.Contains(m.Data, evidenceKey) {
				if e, err := events.ParseEvent(m.Data); err == nil {
					if p, err := e.Payload(); err == nil {
						r.ApplyEvent(m.Seq, e, p)
					}
				}
			}
			if m.Seq == upto {
				return errBackfilled
			}
			return nil
		})
		if err != nil && !errors.Is(err, errBackfilled) {
			return err
		}
	}
	r.mu.Lock()
	if !r.complete {
		r.complete = true
		close(r.done)
	}
	r.mu.Unlock()
	return nil
}

// SnapshotName names Refs in the read-model snapshot (projections.SnapshotPart), which keeps
// it so that a start from the snapshot needs no backfill.
func (r *Refs) SnapshotName() string { return "evidence.refs" }

// WriteSnapshot writes every reference: the number of files, then each file's digest, its
// number of hazards and their ids. An incomplete Refs (a backfill still running) is not
// written.
func (r *Refs) WriteSnapshot(w io.Writer) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.complete {
		return projections.ErrPartNotReady
	}
	b := binary.AppendUvarint(make([]byte, 0, 16+len(r.by)*50), uint64(len(r.by)))
	for k, h := range r.by {
		b = append(b, k[:]...)
		b = binary.AppendUvarint(b, uint64(1+len(h.more)))
		b = append(b, h.first[:]...)
		for _, x := range h.more {
			b = append(b, x[:]...)
		}
	}
	_, err := w.Write(b)
	return err
}

// ReadSnapshot adds the references WriteSnapshot wrote and marks Refs complete.
func (r *Refs) ReadSnapshot(b []byte) error {
	bad := errors.New("evidence references: truncated")
	files, n := binary.Uvarint(b)
	if n <= 0 || files > uint64(len(b)) {
		return bad
	}
	b = b[n:]
	by := make(map[[32]byte]hazards, files)
	for range files {
		if len(b) < 32 {
			return bad
		}
		var k [32]byte
		copy(k[:], b)
		c, n := binary.Uvarint(b[32:])
		if n <= 0 || c == 0 || c > uint64(len(b)) || len(b[32+n:]) < int(c)*16 {
			return bad
		}
		b = b[32+n:]
		var h hazards
		copy(h.first[:], b)
		for i := 1; i < int(c); i++ {
			var id uuid.UUID
			copy(id[:], b[i*16:])
			h.more = append(h.more, id)
		}
		b = b[int(c)*16:]
		by[k] = h
	}
	if len(b) != 0 {
		return bad
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, h := range by {
		r.add(k, h.first)
		for _, id := range h.more {
			r.add(k, id)
		}
	}
	if !r.complete {
		r.complete = true
		close(r.done)
	}
	return nil
}

// key is a digest's 32 bytes; false for anything but 64 lowercase hex digits.
func key(sum string) ([32]byte, bool) {
	var k [32]byte
	if !shaRe.MatchString(sum) {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(sum))
	return k, err == nil
}
