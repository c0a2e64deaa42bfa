package projections

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections/status"
)

// Snapshots keep the read model — the hazard index and the zero-out status — in one file
// with its checkpoint, the last stream sequence the status has applied (and that event's id,
// to tell a snapshot of another log). On start the runner loads it and catches up from the
// checkpoint + 1 instead of replaying the log from sequence 1.
//
// The status part is written under the status lock at exactly the checkpoint. The index part
// is copied afterwards in chunks, so commands are never held up for long; a hazard copied
// later than the checkpoint already holds some events after it, and the index ignores events
// a hazard already has (Index.ApplyParsed), so the catch-up leaves every part exact.
//
// File layout: magic, a JSON header, then length-prefixed sections (status, index hazards in
// gob chunks, command ids), then the SHA-256 of everything before it. Written to a temporary
// file, synced and renamed, so a crash leaves the previous snapshot.
type Snapshots struct {
	Path   string // e.g. <data>/readmodel.snap
	Index  *Index
	Status *status.Projection
	Log    *slog.Logger
	Parts  []SnapshotPart // other read models kept beside the index and status

	mu      sync.Mutex // one save at a time
	lastSeq uint64
}

// SnapshotHeader describes a snapshot file.
type SnapshotHeader struct {
	Format     int       `json:"format"`
	Seq        uint64    `json:"seq"`
	EventID    string    `json:"event_id"`
	Written    time.Time `json:"written"`
	HazardType string    `json:"hazard_type"`
	Hazards    int       `json:"hazards"`
	Commands   int       `json:"commands"`
}

const (
	snapMagic  = "QLREADMODEL\n"
	snapFormat = 2
	snapChunk  = 4096
)

// hazardType fingerprints events.Hazard's fields: a snapshot of another shape is rebuilt.
func hazardType() string {
	t := reflect.TypeOf(events.Hazard{})
	h := sha256.New()
	for i := range t.NumField() {
		f := t.Field(i)
		fmt.Fprintf(h, "%s %s\n", f.Name, f.Type)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

var typeCodes = []string{events.TypeReported, events.TypeAmended, events.TypeGraded, events.TypeListed, events.TypePlanned, events.TypeProgressed,
	events.TypeExtended, events.TypeCompleted, events.TypeVerifyFailed, events.TypeCleared, events.TypeReopened, events.TypeWithdrawn} // read-only

// SnapshotPart is another read model kept in the snapshot. It is written after the status
// part, so it holds at least every event the checkpoint covers (the catch-up from the
// checkpoint + 1 must be harmless to apply to it again), and read before the catch-up. A part
// the snapshot does not hold, or cannot be read, is left as it was: its owner rebuilds it.
type SnapshotPart interface {
	SnapshotName() string
	WriteSnapshot(w io.Writer) error // ErrPartNotReady: leave the part out this time
	ReadSnapshot(b []byte) error
}

// ErrPartNotReady is what a SnapshotPart answers when it cannot be saved yet (it is still
// being rebuilt): the snapshot is written without it.
var ErrPartNotReady = errors.New("snapshot part not ready")

// Save writes a snapshot; it does nothing when nothing was applied since the last one. The
// file is written as it is made (a chunk of hazards at a time), not built in memory first.
func (s *Snapshots) Save() (SnapshotHeader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stBuf bytes.Buffer
	seq, eventID := s.Status.Checkpoint()
	if err := s.Status.WriteSnapshot(&stBuf); err != nil {
		return SnapshotHeader{}, err
	}
	if seq2, _ := s.Status.Checkpoint(); seq2 != seq {
		// cannot happen: WriteSnapshot holds the lock; but never write a torn checkpoint
		return SnapshotHeader{}, fmt.Errorf("snapshot: status moved from %d to %d while written", seq, seq2)
	}
	if seq == 0 || seq == s.lastSeq {
		return SnapshotHeader{Seq: seq}, nil
	}
	hdr := SnapshotHeader{Format: snapFormat, Seq: seq, EventID: eventID, Written: time.Now().UTC(), HazardType: hazardType()}
	hj, _ := json.Marshal(hdr)

	dir := filepath.Dir(s.Path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return hdr, err
	}
	f, err := os.CreateTemp(dir, ".readmodel-*.tmp")
	if err != nil {
		return hdr, err
	}
	defer os.Remove(f.Name())
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	bw.WriteString(snapMagic)
	writeSection(bw, hj)
	writeSection(bw, stBuf.Bytes())
	stBuf = bytes.Buffer{}
	if hdr.Hazards, err = s.Index.snapshotHazards(bw); err != nil {
		f.Close()
		return hdr, err
	}
	var cmdBuf bytes.Buffer
	hdr.Commands = s.Index.snapshotCommands(&cmdBuf)
	writeSection(bw, cmdBuf.Bytes())
	cmdBuf = bytes.Buffer{}
	for _, p := range s.Parts {
		var pb bytes.Buffer
		if err := p.WriteSnapshot(&pb); errors.Is(err, ErrPartNotReady) {
			continue
		} else if err != nil {
			f.Close()
			return hdr, fmt.Errorf("snapshot part %s: %w", p.SnapshotName(), err)
		}
		writeSection(bw, []byte(p.SnapshotName()))
		writeSection(bw, pb.Bytes())
	}
	writeSection(bw, nil) // the end of the parts
	tj, _ := json.Marshal(snapTrailer{Hazards: hdr.Hazards, Commands: hdr.Commands})
	writeSection(bw, tj)
	if err := bw.Flush(); err != nil {
		f.Close()
		return hdr, err
	}
	if _, err := f.Write(sum.Sum(nil)); err != nil {
		f.Close()
		return hdr, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return hdr, err
	}
	if err := f.Close(); err != nil {
		return hdr, err
	}
	if err := os.Rename(f.Name(), s.Path); err != nil {
		return hdr, err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	s.lastSeq = seq
	return hdr, nil
}

// snapTrailer closes a snapshot with what is known only once it is written.
type snapTrailer struct {
	Hazards  int `json:"hazards"`
	Commands int `json:"commands"`
}

func writeUvarint(w *bufio.Writer, v uint64) {
	var b [binary.MaxVarintLen64]byte
	w.Write(b[:binary.PutUvarint(b[:], v)])
}

func writeSection(w *bufio.Writer, b []byte) {
	writeUvarint(w, uint64(len(b)))
	w.Write(b)
}

// Log is what Load checks a snapshot against: the event at its checkpoint must be the one
// the snapshot names.
type Log interface {
	Get(ctx context.Context, seq uint64) (jsstore.Msg, error)
}

// ErrNoSnapshot: there is no usable snapshot (none, or of another log or shape).
var ErrNoSnapshot = errors.New("no usable snapshot")

// snapReader reads the length-prefixed sections of a snapshot's body, as slices of it.
type snapReader struct {
	b []byte
	i int
}

func (r *snapReader) section() ([]byte, bool) {
	n, k := binary.Uvarint(r.b[r.i:])
	if k <= 0 || n > uint64(len(r.b)-r.i-k) {
		return nil, false
	}
	r.i += k
	s := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return s, true
}

// Load reads the snapshot into the empty index and status (before the runner starts) and
// returns its header. A missing, damaged or foreign snapshot answers ErrNoSnapshot (wrapped
// with the reason) and leaves both empty.
func (s *Snapshots) Load(ctx context.Context, log Log) (SnapshotHeader, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return SnapshotHeader{}, ErrNoSnapshot
	}
	if err != nil {
		return SnapshotHeader{}, err
	}
	no := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrNoSnapshot, s.Path, fmt.Sprintf(format, args...))
	}
	if len(b) < len(snapMagic)+sha256.Size || string(b[:len(snapMagic)]) != snapMagic {
		return SnapshotHeader{}, no("not a snapshot")
	}
	body, want := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
		return SnapshotHeader{}, no("checksum mismatch (damaged)")
	}
	r := &snapReader{b: body, i: len(snapMagic)}
	hj, ok := r.section()
	var hdr SnapshotHeader
	if !ok || json.Unmarshal(hj, &hdr) != nil || hdr.Format != snapFormat {
		return hdr, no("unknown format")
	}
	stSec, ok1 := r.section()
	hzStart := r.i
	for ok1 {
		c, ok := r.section()
		if !ok {
			return hdr, no("truncated hazards")
		}
		if len(c) == 0 {
			break
		}
	}
	hzSec := body[hzStart:r.i]
	cmdSec, ok2 := r.section()
	parts := map[string][]byte{}
	for ok1 && ok2 {
		name, ok := r.section()
		if !ok {
			return hdr, no("truncated parts")
		}
		if len(name) == 0 {
			break
		}
		pb, ok := r.section()
		if !ok {
			return hdr, no("truncated part %s", name)
		}
		parts[string(name)] = pb
	}
	tj, ok3 := r.section()
	var tr snapTrailer
	if !ok1 || !ok2 || !ok3 || json.Unmarshal(tj, &tr) != nil || r.i != len(body) {
		return hdr, no("truncated")
	}
	hdr.Hazards, hdr.Commands = tr.Hazards, tr.Commands
	if hdr.HazardType != hazardType() {
		return hdr, no("written by another version of the hazard index")
	}
	if log != nil {
		m, err := log.Get(ctx, hdr.Seq)
		if err != nil {
			if events.ErrorOf(err).Kind == events.KindNotFound {
				return hdr, no("the log has no event at its checkpoint %d", hdr.Seq)
			}
			return hdr, err // the store is unavailable: do not throw a good snapshot away
		}
		if m.MsgID != hdr.EventID {
			return hdr, no("the event at %d is %s, not %s: another log", hdr.Seq, m.MsgID, hdr.EventID)
		}
	}
	if err := s.Status.ReadSnapshot(bytes.NewReader(stSec)); err != nil {
		return hdr, no("%v", err)
	}
	if err := s.Index.restore(hzSec, cmdSec, hdr.Seq); err != nil {
		s.Status.Reset()
		return hdr, no("%v", err)
	}
	for _, p := range s.Parts {
		if pb, ok := parts[p.SnapshotName()]; ok {
			if err := p.ReadSnapshot(pb); err != nil {
				s.log().Warn("snapshot part not read; its owner rebuilds it", "part", p.SnapshotName(), "err", err)
			}
		}
	}
	s.mu.Lock()
	s.lastSeq = hdr.Seq
	s.mu.Unlock()
	return hdr, nil
}

// Run saves a snapshot every interval while the log moves on, until ctx ends.
func (s *Snapshots) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		h, err := s.Save()
		switch {
		case err != nil:
			s.log().Warn("snapshot failed", "path", s.Path, "err", err)
		case h.Hazards > 0:
			s.log().Info("snapshot saved", "path", s.Path, "seq", h.Seq, "hazards", h.Hazards, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

func (s *Snapshots) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// snapshotHazards gob-encodes every hazard in chunks, taking the read lock per chunk only.
// Each chunk is length-prefixed; a zero length ends them.
func (x *Index) snapshotHazards(w *bufio.Writer) (int, error) {
	n := 0
	chunk := make([]events.Hazard, 0, snapChunk)
	var b bytes.Buffer
	for i := 0; ; {
		chunk = chunk[:0]
		x.mu.RLock()
		for ; i < len(x.byRep) && len(chunk) < snapChunk; i++ {
			chunk = append(chunk, x.hazard(x.byRep[i]))
		}
		x.mu.RUnlock()
		if len(chunk) == 0 {
			writeUvarint(w, 0)
			return n, nil
		}
		b.Reset()
		if err := gob.NewEncoder(&b).Encode(chunk); err != nil {
			return n, err
		}
		writeSection(w, b.Bytes())
		n += len(chunk)
	}
}

// snapshotCommands encodes every recorded command — the bulk, the map and a running replay's
// — sorted by id, so that a restore takes them as its bulk without sorting. Under the read
// lock it only copies the map's and the replay's (the bulk is never changed in place, nor a
// slot's id once made); it sorts and writes after.
func (x *Index) snapshotCommands(w *bytes.Buffer) int {
	x.mu.RLock()
	bulk, all := x.bulk, x.all
	extra := make([]cmdEntry, 0, len(x.cmds)+len(x.pending))
	for id, r := range x.cmds {
		extra = append(extra, cmdEntry{id, r})
	}
	extra = append(extra, x.pending...)
	x.mu.RUnlock()
	slices.SortFunc(extra, compareEntries)
	n := len(bulk) + len(extra)
	w.Grow(n * 40)
	var b [binary.MaxVarintLen64]byte
	put := func(c cmdEntry) {
		hid := all[c.r.hz].id // uuid.Nil for an odd id: its commands are not kept
		w.Write(c.id[:])
		w.Write(hid[:])
		w.WriteByte(byte(c.r.vt & 0xff))
		w.Write(b[:binary.PutUvarint(b[:], uint64(c.r.vt>>8))])
		w.Write(b[:binary.PutUvarint(b[:], c.r.seq)])
	}
	merge(bulk, extra, put)
	return n
}

// restore fills the empty index from a snapshot's sections. Each chunk of hazards becomes
// slots as it is decoded (gob's copies of the strings are garbage at once: the table keeps one
// of each), under the lock, which nothing else waits for at a start.
func (x *Index) restore(hz, cmds []byte, seq uint64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.hz) != 0 || x.applied != 0 {
		return fmt.Errorf("index is not empty")
	}
	r := bytes.NewReader(hz)
	for r.Len() > 0 {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return x.unrestore(fmt.Errorf("index chunk: truncated"))
		}
		if n == 0 {
			break // the end of the chunks
		}
		var chunk []events.Hazard
		if err := gob.NewDecoder(io.LimitReader(r, int64(n))).Decode(&chunk); err != nil {
			return x.unrestore(fmt.Errorf("index chunk: %w", err))
		}
		for i := range chunk {
			if len(x.all) >= math.MaxUint32-1 {
				return x.unrestore(fmt.Errorf("index: %d hazards", len(x.all)))
			}
			x.put(uint32(len(x.all)), &chunk[i])
		}
	}
	// A hazard copied twice (shifted between chunks) has one report sequence: keep the later
	// copy (the earlier stays in all, unreferenced).
	byRep := make([]uint32, len(x.all))
	for i := range byRep {
		byRep[i] = uint32(i)
	}
	slices.SortFunc(byRep, func(a, b uint32) int {
		if c := cmp.Compare(x.all[a].reportSeq, x.all[b].reportSeq); c != 0 {
			return c
		}
		return cmp.Compare(x.all[b].seq, x.all[a].seq)
	})
	byRep = slices.CompactFunc(byRep, func(a, b uint32) bool { return x.all[a].reportSeq == x.all[b].reportSeq })
	num := make(map[uuid.UUID]uint32, len(byRep))
	for _, n := range byRep {
		if !x.all[n].oddID {
			num[x.all[n].id] = n
		}
	}
	cm := make([]cmdEntry, 0, len(cmds)/40)
	cr := bytes.NewReader(cmds)
	for cr.Len() > 0 {
		var id, hid uuid.UUID
		if _, err := io.ReadFull(cr, id[:]); err != nil {
			return x.unrestore(fmt.Errorf("commands: truncated"))
		}
		if _, err := io.ReadFull(cr, hid[:]); err != nil {
			return x.unrestore(fmt.Errorf("commands: truncated"))
		}
		code, err := cr.ReadByte()
		if err != nil || int(code) >= len(typeCodes) {
			return x.unrestore(fmt.Errorf("commands: bad type"))
		}
		v, err1 := binary.ReadUvarint(cr)
		s, err2 := binary.ReadUvarint(cr)
		if err1 != nil || err2 != nil {
			return x.unrestore(fmt.Errorf("commands: truncated"))
		}
		if n, ok := num[hid]; ok && v <= maxVersion {
			cm = append(cm, cmdEntry{id, newCmdRec(s, n, int(v), code)})
		} // else a hazard reported after its chunk was copied: the catch-up records it again
	}
	if !slices.IsSortedFunc(cm, compareEntries) {
		sortEntries(cm) // a snapshot from before the bulk
	}
	x.hz, x.byRep, x.bulk = num, byRep, cm
	for _, n := range byRep {
		if x.all[n].oddID {
			x.register(n)
		}
	}
	x.markAppliedLocked(seq)
	return nil
}

// unrestore empties what a failed restore filled and answers err. Under x.mu.
func (x *Index) unrestore(err error) error {
	x.all, x.amends, x.words, x.oddIDs, x.recent = nil, nil, newWordTable(), nil, [nStrings]uint32{}
	x.fewNum = map[string]uint32{}
	return err
}
