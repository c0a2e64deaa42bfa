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
	rec := CommandRecord{HazardID: x.all[r.hz].ID, Version: int(r.vt >> 8), Seq: r.seq}
	if t := int(r.vt & 0xff); t < len(typeCodes) {
		rec.Type = typeCodes[t]
	}
	return rec
}

// Index is the in-memory hazard index: every hazard's current state and every command id,
// fed by the stream in order (and by the command path with its own acked events).
type Index struct {
	cat *events.Catalog

	mu      sync.RWMutex
	hz      map[string]uint32 // a hazard's number in all
	byRep   []*events.Hazard  // by report sequence, for stable cursors
	all     []*events.Hazard  // in the order the index met them
	cmds    map[uuid.UUID]cmdRec
	applied uint64            // last stream sequence applied in order by the feed
	notify  chan struct{}     // closed (and replaced) when applied moves on and someone waits
	waiting atomic.Int32      // waiters on notify: registered under the read lock
	strs    map[string]string // one copy of each repeated string of hazards (sites, actors, codes)
}

// NewIndex returns an empty index.
func NewIndex(cat *events.Catalog) *Index {
	return &Index{cat: cat, hz: map[string]uint32{}, cmds: map[uuid.UUID]cmdRec{}, notify: make(chan struct{}), strs: map[string]string{}}
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
	return x.applyLocked(seq, sum, cmd, cmdErr == nil, e, p)
}

// applyLocked is ApplyParsed under x.mu, given the stored bytes' SHA-256 and the command id
// (when it is a UUID: hasCmd).
func (x *Index) applyLocked(seq uint64, sum [32]byte, cmd uuid.UUID, hasCmd bool, e *events.Event, p any) error {
	n, known := x.hz[e.Subject]
	var h *events.Hazard
	if known {
		if h = x.all[n]; h.Seq >= seq {
			return nil
		}
	}
	nh, err := events.EvolveSum(x.cat, h, e, p, sum, seq)
	if err != nil {
		return err
	}
	x.share(nh, p)
	if h == nil {
		if len(x.all) == math.MaxUint32 {
			return events.Errorf(events.KindUnavailable, "index_full", "", "the index holds %d hazards, its most", len(x.all))
		}
		n = uint32(len(x.all))
		x.all = append(x.all, nh)
		x.hz[nh.ID] = n
		if k := len(x.byRep); k == 0 || x.byRep[k-1].ReportSeq < seq {
			x.byRep = append(x.byRep, nh) // in stream order: the usual case
		} else {
			i := sort.Search(k, func(i int) bool { return x.byRep[i].ReportSeq > seq })
			x.byRep = append(x.byRep, nil)
			copy(x.byRep[i+1:], x.byRep[i:])
			x.byRep[i] = nh
		}
	}
	if hasCmd {
		x.cmds[cmd] = newCmdRec(seq, n, nh.Version, typeCode(e.Type))
	}
	return nil
}

// share points h's strings that many hazards repeat (codes, sites, actors, homes) at one copy
// each, instead of one copy per hazard decoded from its own event: a sixth of the index's
// memory. Only the fields the event p can have set are looked at. Under x.mu.
func (x *Index) share(h *events.Hazard, p any) {
	switch p.(type) {
	case *events.Reported:
		// a replay's strings view the stored bytes (events.NewViewDecoder): each one kept is a
		// shared copy, the catalog's, or a clone
		h.ID, h.Supersedes = strings.Clone(h.ID), strings.Clone(h.Supersedes)
		if g, ok := x.cat.Region(h.Region); ok {
			h.Region = g.Code
		} else {
			h.Region = x.str(h.Region)
		}
		if s, ok := x.cat.Sector(h.Sector); ok {
			h.Sector = s.Code
		} else {
			h.Sector = x.str(h.Sector)
		}
		h.SiteKey, h.SiteName, h.ReportedBy = x.str(h.SiteKey), x.str(h.SiteName), x.str(h.ReportedBy)
		h.Grade, h.Criterion, h.Source, h.Home = x.word(h.Grade), x.criterion(h.Criterion), x.word(h.Source), x.word(h.Home)
	case *events.Amended:
		h.SiteName = x.str(h.SiteName)
	case *events.Graded:
		h.Grade, h.Criterion = x.word(h.Grade), x.criterion(h.Criterion)
	case *events.Listed:
		h.ListLevel = x.word(h.ListLevel)
	case *events.Completed:
		h.CompletedBy = x.str(h.CompletedBy)
	case *events.Cleared:
		h.ClearedBy = x.str(h.ClearedBy)
	}
}

// shareAll is share for every repeated string of h. Under x.mu.
func (x *Index) shareAll(h *events.Hazard) {
	if g, ok := x.cat.Region(h.Region); ok {
		h.Region, h.Province, h.Prefecture = g.Code, x.str(h.Province), x.str(h.Prefecture)
	}
	h.Status = events.Status(x.str(string(h.Status)))
	for _, f := range []*string{&h.SiteKey, &h.SiteName, &h.Grade, &h.Criterion, &h.Source, &h.Home, &h.ReportedBy,
		&h.ListLevel, &h.CompletedBy, &h.ClearedBy} {
		*f = x.str(*f)
	}
}

// reserve sizes the empty index's maps for a replay of n events (one command each, a few a
// hazard), so that they do not grow and rehash all the way up.
func (x *Index) reserve(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.cmds) != 0 || len(x.hz) != 0 || n < 4096 {
		return
	}
	x.cmds = make(map[uuid.UUID]cmdRec, n)
	x.hz = make(map[string]uint32, n/3)
	x.all = make([]*events.Hazard, 0, n/3)
	x.byRep = make([]*events.Hazard, 0, n/3)
}

// get is hazard id, or nil. Under x.mu.
func (x *Index) get(id string) *events.Hazard {
	if n, ok := x.hz[id]; ok {
		return x.all[n]
	}
	return nil
}

// word is str for a value of few (grades, sources, homes, list levels): the constant's copy
// without a lookup when it is one.
func (x *Index) word(s string) string {
	switch s {
	case events.GradeGeneral:
		return events.GradeGeneral
	case events.GradeMajor:
		return events.GradeMajor
	case events.DefaultSource:
		return events.DefaultSource
	}
	for _, c := range events.Sources {
		if s == c {
			return c
		}
	}
	for _, c := range events.ListLevels {
		if s == c {
			return c
		}
	}
	return x.str(s)
}

// criterion is str for a criterion code: the catalog's copy.
func (x *Index) criterion(s string) string {
	if k, ok := x.cat.Criterion(s); ok {
		return k.Code
	}
	return x.str(s)
}

// str is s's shared copy. Under x.mu.
func (x *Index) str(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := x.strs[s]; ok {
		return c
	}
	if x.strs == nil {
		x.strs = map[string]string{}
	}
	s = strings.Clone(s) // s may view an event's bytes
	x.strs[s] = s
	return s
}

// MarkApplied records that the feed has applied every event up to seq, and wakes waiters.
func (x *Index) MarkApplied(seq uint64) {
	x.mu.Lock()
	if seq > x.applied {
		x.applied = seq
		if x.waiting.Load() > 0 { // no channel to close and replace per event while nobody waits
			close(x.notify)
			x.notify = make(chan struct{})
		}
	}
	x.mu.Unlock()
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
		h, ch := x.get(id), x.notify
		done := h != nil && h.Seq >= seq
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
	h := x.get(id)
	ok := h != nil
	if !ok {
		return events.Hazard{}, false
	}
	c := *h
	c.AmendSeqs = append([]uint64(nil), h.AmendSeqs...)
	return c, true
}

// Command looks up a recorded command id.
func (x *Index) Command(commandID string) (CommandRecord, bool) {
	u, err := uuid.Parse(commandID)
	if err != nil {
		return CommandRecord{}, false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, ok := x.cmds[u]
	if !ok {
		return CommandRecord{}, false
	}
	return x.record(r), true
}

// Len is the number of hazards.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.hz)
}

// Each calls fn for every hazard in report order, under the read lock; fn must not keep h.
func (x *Index) Each(fn func(h *events.Hazard) bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, h := range x.byRep {
		if !fn(h) {
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
	i := sort.Search(len(x.byRep), func(i int) bool { return x.byRep[i].ReportSeq > after })
	var p Page
	for ; i < len(x.byRep); i++ {
		h := x.byRep[i]
		if !x.match(&f, h) {
			continue
		}
		if len(p.Items) == f.Limit {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], p.Items[len(p.Items)-1].ReportSeq)
			p.Next = base64.RawURLEncoding.EncodeToString(b[:])
			break
		}
		c := *h
		c.AmendSeqs = nil
		p.Items = append(p.Items, c)
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
