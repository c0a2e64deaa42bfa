package status

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"
)

// A snapshot of the projection is its compact events and the sequence they are complete up
// to; everything else (live rows, daily deltas, the crossing queue) is derived again on load.

const snapMagic = "QLSTATUS1\n"

// Checkpoint is the last stream sequence applied and the id of its event.
func (x *Projection) Checkpoint() (seq uint64, eventID string) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.seq, x.lastID
}

// WriteSnapshot writes the projection's state. It holds the read lock while it writes, so
// the feed waits (hazards are small: about 30 bytes and 1 µs each).
func (x *Projection) WriteSnapshot(w io.Writer) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	bw := bufio.NewWriterSize(w, 1<<16)
	var buf [binary.MaxVarintLen64]byte
	uv := func(v uint64) { bw.Write(buf[:binary.PutUvarint(buf[:], v)]) }
	sv := func(v int64) { bw.Write(buf[:binary.PutVarint(buf[:], v)]) }
	str := func(s string) { uv(uint64(len(s))); bw.WriteString(s) }
	bw.WriteString(snapMagic)
	str(x.lay.fingerprint)
	sv(x.cutoff)
	uv(x.seq)
	str(x.lastID)
	ids := make([]uuid.UUID, len(x.hz))
	for id, i := range x.ids {
		ids[i] = id
	}
	copy(ids[len(x.hz)-len(x.pendIDs):], x.pendIDs)
	uv(uint64(len(x.hz)))
	for i := range x.hz {
		h := &x.hz[i]
		bw.Write(ids[i][:])
		uv(uint64(h.leaf))
		sv(h.found)
		uv(uint64(len(h.evs)))
		prev := h.found
		for _, e := range h.evs {
			f := e.kind << 2
			if e.major {
				f |= 1
			}
			if e.p != 0 {
				f |= 2
			}
			bw.WriteByte(f)
			sv(e.t - prev)
			prev = e.t
			if e.p != 0 {
				sv(e.p - e.t)
			}
		}
	}
	return bw.Flush()
}

// ErrSnapshotMismatch: the snapshot was written for another catalog or stock cut-off.
var ErrSnapshotMismatch = errors.New("status snapshot: written for another catalog or stock cut-off")

// ReadSnapshot replaces the projection's state with a snapshot's and derives the rest at the
// clock's instant.
func (x *Projection) ReadSnapshot(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var err error
	fail := func(e error) {
		if err == nil {
			err = e
		}
	}
	uv := func() uint64 { v, e := binary.ReadUvarint(br); fail(e); return v }
	sv := func() int64 { v, e := binary.ReadVarint(br); fail(e); return v }
	str := func() string {
		n := uv()
		if n > 1<<20 {
			fail(fmt.Errorf("status snapshot: string of %d bytes", n))
			return ""
		}
		b := make([]byte, n)
		_, e := io.ReadFull(br, b)
		fail(e)
		return string(b)
	}
	magic := make([]byte, len(snapMagic))
	if _, e := io.ReadFull(br, magic); e != nil || string(magic) != snapMagic {
		return fmt.Errorf("status snapshot: bad magic")
	}
	if fp, cut := str(), sv(); err == nil && (fp != x.lay.fingerprint || cut != x.cutoff) {
		return ErrSnapshotMismatch
	}
	seq, lastID := uv(), str()
	n := uv()
	if err != nil {
		return fmt.Errorf("status snapshot: %w", err)
	}
	now := x.clock().UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.reset()
	x.hz = make([]hazard, 0, min(n, 1<<24))
	for i := uint64(0); i < n && err == nil; i++ {
		var id uuid.UUID
		_, e := io.ReadFull(br, id[:])
		fail(e)
		h := hazard{leaf: int32(uv()), found: sv()}
		if h.leaf < 0 || int(h.leaf) >= len(x.lay.leafRow) {
			fail(fmt.Errorf("status snapshot: leaf %d out of range", h.leaf))
			break
		}
		k := uv()
		if k > 1<<20 {
			fail(fmt.Errorf("status snapshot: %d events in one hazard", k))
			break
		}
		h.evs = make([]cev, k)
		prev := h.found
		for j := range h.evs {
			f, e := br.ReadByte()
			fail(e)
			c := cev{kind: f >> 2, major: f&1 != 0}
			c.t = prev + sv()
			prev = c.t
			if f&2 != 0 {
				c.p = c.t + sv()
			}
			h.evs[j] = c
		}
		x.ids[id] = int32(len(x.hz))
		x.hz = append(x.hz, h)
	}
	if err != nil {
		x.reset()
		return fmt.Errorf("status snapshot: %w", err)
	}
	x.seq, x.lastID, x.now = seq, lastID, now
	for i := range x.hz {
		h := &x.hz[i]
		first := int64(0)
		for j, e := range h.evs {
			if j == 0 || e.t < first {
				first = e.t
			}
		}
		if len(h.evs) > 0 {
			h.walk(first, x.cutoff, func(at int64, from, to uint16) { x.addDaily(h.leaf, dayOf(at), from, to) })
		}
		x.setMask(int32(i), h.maskAt(now, x.cutoff))
		x.schedule(int32(i))
	}
	return nil
}
