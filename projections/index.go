// Package projections holds read models built only from events: the hazard index and the
// zero-out status.
package projections

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"qingling/events"
)

// CommandRecord is what the index remembers of each recorded command.
type CommandRecord struct {
	HazardID string
	Type     string
	Version  int
	Seq      uint64
}

// cmdRec is a CommandRecord as the index keeps it, for there is one per event: 16 bytes
// without a pointer (the collector never scans the map), the hazard by its number in
// Index.all, the version and the type's code (typeCodes) in vt.
type cmdRec struct {
	seq uint64
	hz  uint32
	vt  uint32 // version<<8 | type code
}

// maxVersion is the highest version a command record holds.
const maxVersion = 1<<24 - 1

func newCmdRec(seq uint64, hz uint32, version int, typ uint8) cmdRec {
	return cmdRec{seq: seq, hz: hz, vt: uint32(min(version, maxVersion))<<8 | uint32(typ)}
}

func typeCode(t string) uint8 {
	for i, c := range typeCodes {
		if c == t {
			return uint8(i)
		}
	}
	return uint8(len(typeCodes))
}

func (x *Index) record(r cmdRec) CommandRecord {
	rec := CommandRecord{HazardID: x.idOf(r.hz), Version: int(r.vt >> 8), Seq: r.seq}
	if t := int(r.vt & 0xff); t < len(typeCodes) {
		rec.Type = typeCodes[t]
	}
	return rec
}

// Index is the in-memory hazard index: every hazard's current state and every command id,
// fed by the stream in order (and by the command path with its own acked events).
type Index struct {
	cat *events.Catalog

	mu       sync.RWMutex
	hz       map[uuid.UUID]uint32 // a hazard's number in all
	oddHz    map[string]uint32    // the same for ids not spelled canonically, with
	oddIDs   map[uint32]string    // their spelling
	byRep    []uint32             // hazard numbers by report sequence, for stable cursors
	all      []slot               // in the order the index met them (slot.go)
	amends   map[uint32][]uint64
	words    wordTable            // the hazards' strings, each once; word 0 is ""
	recent   [nStrings]uint32     // per string field, the word its last new value was (put)
	fewNum   map[string]uint32    // word numbers of the fields of few values (wordOf)
	cmds     map[uuid.UUID]cmdRec // commands recorded one by one (the command path, the live feed)
	bulk     []cmdEntry           // commands a replay or a snapshot brought, sorted (commands.go)
	pending  []cmdEntry           // a running replay's, sorted into bulk when it ends
	sortBuf  []cmdEntry           // the scratch of sortRun
	reserved bool                 // all and byRep were made by reserve (trimReserve)
	applied  uint64               // last stream sequence applied in order by the feed
	notify   chan struct{}        // closed (and replaced) when applied moves on and someone waits
	waiting  atomic.Int32         // waiters on notify: registered under the read lock
}

// NewIndex returns an empty index.
func NewIndex(cat *events.Catalog) *Index {
	return &Index{cat: cat, hz: map[uuid.UUID]uint32{}, cmds: map[uuid.UUID]cmdRec{}, notify: make(chan struct{}), words: newWordTable(), fewNum: map[string]uint32{}}
}

// Apply folds one stored event into the index. An event the hazard already has (its seq is
// not after the hazard's) is ignored, so the feed and the command path may both apply it.
func (x *Index) Apply(seq uint64, raw []byte) error {
	e, err := events.ParseEvent(raw)
	if err != nil {
		return err
	}
	p, err := e.Payload()
	if err != nil {
		return err
	}
	return x.ApplyParsed(seq, raw, e, p)
}

// ApplyParsed is Apply for an event already decoded.
func (x *Index) ApplyParsed(seq uint64, raw []byte, e *events.Event, p any) error {
	cmd, cmdErr := uuid.Parse(e.CommandID)
	sum := sha256.Sum256(raw)
	x.mu.Lock()
	defer x.mu.Unlock()
	_, err := x.applyLocked(seq, &sum, cmd, cmdErr == nil, false, e, p)
	return err
}

// applyLocked is ApplyParsed under x.mu, given the stored bytes' SHA-256 (nil: not computed,
// the hazard's hash is then unknown) and the command id (when it is a UUID: hasCmd); it
// answers the hazard's number.
// replay: the command is gathered for settleCommands rather than put in the map.
func (x *Index) applyLocked(seq uint64, sum *[32]byte, cmd uuid.UUID, hasCmd, replay bool, e *events.Event, p any) (uint32, error) {
	u, canon := events.ParseCanonicalUUID(e.Subject)
	n, known := x.lookupAs(e.Subject, u, canon)
	var hash [32]byte
	if sum != nil {
		hash = *sum
	}
	var cur events.Hazard // the state folded: no Hazard made on the heap
	nh, err := &cur, error(nil)
	if known {
		if x.all[n].seq >= seq {
			return n, nil
		}
		cur = x.hazardAs(n, e.Subject, true)
		nh, err = events.EvolveSum(x.cat, &cur, e, p, hash, seq)
	} else {
		err = events.EvolveFirst(x.cat, &cur, e, p, hash, seq)
	}
	if err != nil {
		return 0, err
	}
	nh.HashUnknown = sum == nil
	if !known {
		if len(x.all) == math.MaxUint32 {
			return 0, events.Errorf(events.KindUnavailable, "index_full", "", "the index holds %d hazards, its most", len(x.all))
		}
		n = uint32(len(x.all))
		x.putNew(nh, u, canon)
		x.register(n)
		if k := len(x.byRep); k == 0 || x.all[x.byRep[k-1]].reportSeq < seq {
			x.byRep = append(x.byRep, n) // in stream order: the usual case
		} else {
			i := sort.Search(k, func(i int) bool { return x.all[x.byRep[i]].reportSeq > seq })
			x.byRep = append(x.byRep, 0)
			copy(x.byRep[i+1:], x.byRep[i:])
			x.byRep[i] = n
		}
	} else {
		x.put(n, nh)
	}
	switch r := newCmdRec(seq, n, nh.Version, typeCode(e.Type)); {
	case !hasCmd:
	case replay:
		x.gather(cmdEntry{cmd, r})
	default:
		x.cmds[cmd] = r
	}
	return n, nil
}

// ResolveHash records the hash of hazard id's last event, the event at seq, where a replay
// left it unknown; it reports whether the hazard's last event is still that one.
func (x *Index) ResolveHash(id string, seq uint64, sum [32]byte) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.lookup(id)
	if !ok || x.all[n].seq != seq {
		return false
	}
	s := &x.all[n]
	if s.hashUnknown {
		s.lastHash, s.hashUnknown = sum, false
	}
	return true
}

// reserve sizes the empty index's maps for a replay of n events (one command each, a few a
// hazard), so that they do not grow and rehash all the way up. The slots are reserved for
// hazards of two events and more (a closed hazard has four or more): pages never written
// stay the system's, and trimReserve gives back what a replay left unused.
func (x *Index) reserve(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.all) != 0 || len(x.cmds) != 0 || len(x.bulk) != 0 || n < 4096 {
		return
	}
	x.pending = make([]cmdEntry, 0, n)
	x.hz = make(map[uuid.UUID]uint32, n/3)
	x.all = make([]slot, 0, n/2)
	x.byRep = make([]uint32, 0, n/2)
	x.reserved = true
}

// trimReserve copies the slots and report order into slices of their size when a replay left
// more than a fifth of what reserve made unused (the collector would pace itself on it); it
// leaves slices that grew by appends alone (no copy under the lock of a serving index).
func (x *Index) trimReserve() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if c := cap(x.all); x.reserved && c-len(x.all) > c/5 {
		x.all = append([]slot(nil), x.all...)
		x.byRep = append([]uint32(nil), x.byRep...)
	}
	x.reserved = false
}

// MarkApplied records that the feed has applied every event up to seq, and wakes waiters.
func (x *Index) MarkApplied(seq uint64) {
	x.mu.Lock()
	x.markAppliedLocked(seq)
	x.mu.Unlock()
}

func (x *Index) markAppliedLocked(seq uint64) {
	if seq > x.applied {
		x.applied = seq
		if x.waiting.Load() > 0 { // no channel to close and replace per event while nobody waits
			close(x.notify)
			x.notify = make(chan struct{})
		}
	}
}

// Applied is the last sequence the feed applied in order.
func (x *Index) Applied() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.applied
}

// WaitApplied waits until the feed has applied seq, or ctx ends.
func (x *Index) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		x.mu.RLock()
		done, ch := x.applied >= seq, x.notify
		if !done {
			x.waiting.Add(1)
		}
		x.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			x.waiting.Add(-1)
			return ctx.Err()
		case <-ch:
			x.waiting.Add(-1)
		}
	}
}

// WaitHazard waits until the index holds hazard id at seq or later, or ctx ends.
func (x *Index) WaitHazard(ctx context.Context, id string, seq uint64) error {
	for {
		x.mu.RLock()
		n, ok := x.lookup(id)
		ch := x.notify
		done := ok && x.all[n].seq >= seq
		if !done {
			x.waiting.Add(1)
		}
		x.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			x.waiting.Add(-1)
			return ctx.Err()
		case <-ch:
		case <-time.After(20 * time.Millisecond): // direct applies do not notify
		}
		x.waiting.Add(-1)
	}
}

// Get returns a copy of a hazard's state.
func (x *Index) Get(id string) (events.Hazard, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n, ok := x.lookup(id)
	if !ok {
		return events.Hazard{}, false
	}
	return x.hazard(n), true
}

// Command looks up a recorded command id.
func (x *Index) Command(commandID string) (CommandRecord, bool) {
	u, err := uuid.Parse(commandID)
	if err != nil {
		return CommandRecord{}, false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, ok := x.command(u)
	if !ok {
		return CommandRecord{}, false
	}
	return x.record(r), true
}

// Len is the number of hazards.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.hz) + len(x.oddHz)
}

// Each calls fn for every hazard in report order, under the read lock; fn must not keep h.
func (x *Index) Each(fn func(h *events.Hazard) bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var h events.Hazard // one for the walk: fn makes it escape
	for _, n := range x.byRep {
		if h = x.hazard(n); !fn(&h) {
			return
		}
	}
}

// Filter selects hazards for the list endpoint. Zero fields match everything.
type Filter struct {
	Sector, Region, Status, Grade, Source, Site  string
	Overdue, Listed                              *bool
	FoundFrom, FoundTo, RecordedFrom, RecordedTo time.Time // [from, to)
	Readable                                     func(*events.Hazard) bool
	At                                           time.Time // instant for overdue
	Cursor                                       string
	Limit                                        int
}

// Page of a list.
type Page struct {
	Items []events.Hazard
	Next  string
}

// BadCursor is returned for a cursor the index did not issue.
var errBadCursor = events.Errorf(events.KindInvalid, "invalid_cursor", "cursor", "cursor is not one this server issued")

// List returns hazards matching f in report order, after f.Cursor.
func (x *Index) List(f Filter) (Page, error) {
	after := uint64(0)
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(b) != 8 {
			return Page{}, errBadCursor
		}
		after = binary.BigEndian.Uint64(b)
	}
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 50
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	i := sort.Search(len(x.byRep), func(i int) bool { return x.all[x.byRep[i]].reportSeq > after })
	var p Page
	var id [36]byte
	var h events.Hazard // one for the whole list (the filter's Readable makes it escape)
	for ; i < len(x.byRep); i++ {
		n := x.byRep[i]
		h = x.hazardAs(n, x.idView(n, &id), false) // no allocation for a hazard the filter passes over
		if !x.match(&f, &h) {
			continue
		}
		if len(p.Items) == f.Limit {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], p.Items[len(p.Items)-1].ReportSeq)
			p.Next = base64.RawURLEncoding.EncodeToString(b[:])
			break
		}
		h.ID = strings.Clone(h.ID) // the view of id is spelled over for the next hazard
		p.Items = append(p.Items, h)
	}
	return p, nil
}

func (x *Index) match(f *Filter, h *events.Hazard) bool {
	switch {
	case f.Sector != "" && f.Sector != "all" && h.Sector != f.Sector,
		f.Region != "" && f.Region != h.Region && f.Region != h.Prefecture && f.Region != h.Province,
		f.Status != "" && string(h.Status) != f.Status && !(f.Status == "open" && h.Status.Open()),
		f.Grade != "" && h.Grade != f.Grade,
		f.Source != "" && h.Source != f.Source,
		f.Site != "" && h.SiteKey != f.Site,
		f.Listed != nil && (h.Listed && h.Status.Open()) != *f.Listed,
		f.Overdue != nil && h.Overdue(f.At) != *f.Overdue,
		!f.FoundFrom.IsZero() && h.FoundAt.Before(f.FoundFrom),
		!f.FoundTo.IsZero() && !h.FoundAt.Before(f.FoundTo),
		!f.RecordedFrom.IsZero() && h.RecordedAt.Before(f.RecordedFrom),
		!f.RecordedTo.IsZero() && !h.RecordedAt.Before(f.RecordedTo),
		f.Readable != nil && !f.Readable(h):
		return false
	}
	return true
}
