package projections

import (
	"strings"
	"unsafe"

	"github.com/google/uuid"

	"qingling/events"
)

// The strings of a hazard but its id, in slot.s.
const (
	sSector = iota
	sProvince
	sPrefecture
	sRegion
	sSiteKey
	sSiteName
	sGrade
	sCriterion
	sSource
	sStatus
	sHome
	sListLevel
	sReportedBy
	sCompletedBy
	sClearedBy
	sSupersedes
	nStrings
)

// slot is a hazard as the index keeps it: events.Hazard with its id as 16 bytes, its other
// strings as numbers in the index's string table (each string once, however many hazards
// repeat it) and its counters in 32 bits — 224 bytes without a pointer where events.Hazard is
// 448 with 17 (and its id 48 more), so that the collector never scans the hazards.
// Amendments, which few hazards have, live beside it, as does an id not spelled canonically
// (oddID; only a log written by something else could hold one).
type slot struct {
	seq, reportSeq uint64
	t              [nInstants]events.Instant
	lastHash       [32]byte
	id             uuid.UUID
	version        int32
	rejections     int32
	s              [nStrings]uint32
	listed         bool
	planned5       bool
	onTime         bool
	oddID          bool
	hashUnknown    bool
}

// The instants of a hazard, in slot.t.
const (
	tListDeadline = iota
	tReportDeadline
	tPlanDeadline
	tExtDeadline
	tFoundAt
	tRecordedAt
	tUpdatedAt
	tCompletedAt
	tAwaitingAt
	tClearedAt
	nInstants
)

// fields are h's strings but its id, in slot order.
func fields(h *events.Hazard) [nStrings]*string {
	return [nStrings]*string{&h.Sector, &h.Province, &h.Prefecture, &h.Region, &h.SiteKey, &h.SiteName,
		&h.Grade, &h.Criterion, &h.Source, (*string)(&h.Status), &h.Home, &h.ListLevel, &h.ReportedBy,
		&h.CompletedBy, &h.ClearedBy, &h.Supersedes}
}

func instants(h *events.Hazard) [nInstants]*events.Instant {
	return [nInstants]*events.Instant{&h.ListDeadline, &h.ReportDeadline, &h.PlanDeadline, &h.ExtDeadline,
		&h.FoundAt, &h.RecordedAt, &h.UpdatedAt, &h.CompletedAt, &h.AwaitingAt, &h.ClearedAt}
}

// hazard is slot n as an events.Hazard (its strings are the table's: nothing is made but the
// id's spelling and a copy of the amendments). Under x.mu.
func (x *Index) hazard(n uint32) events.Hazard { return x.hazardAs(n, x.idOf(n), true) }

// idOf is hazard n's id. Under x.mu.
func (x *Index) idOf(n uint32) string {
	if s := &x.all[n]; !s.oddID {
		return s.id.String()
	}
	return x.oddIDs[n]
}

// idView spells hazard n's id into buf and answers it, as a string viewing buf for a
// canonical id: valid while buf is, for one look at the hazard (List's filter). Under x.mu.
func (x *Index) idView(n uint32, buf *[36]byte) string {
	s := &x.all[n]
	if s.oddID {
		return x.oddIDs[n]
	}
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, b := range s.id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			buf[j] = '-'
			j++
		}
		buf[j], buf[j+1] = hexDigits[b>>4], hexDigits[b&0xf]
		j += 2
	}
	return unsafe.String(&buf[0], len(buf))
}

// hazardAs is hazard for the caller that has its id already spelled (as the event has it);
// amends: with a copy of the amendments (else without them).
func (x *Index) hazardAs(n uint32, id string, amends bool) events.Hazard {
	s := &x.all[n]
	h := events.Hazard{ID: id, Seq: s.seq, ReportSeq: s.reportSeq, LastHash: s.lastHash, Version: int(s.version),
		Rejections: int(s.rejections), Listed: s.listed, Planned5: s.planned5, OnTime: s.onTime, HashUnknown: s.hashUnknown}
	for i, f := range fields(&h) {
		*f = x.words.get(s.s[i])
	}
	for i, t := range instants(&h) {
		*t = s.t[i]
	}
	if a := x.amends[n]; amends && len(a) > 0 {
		h.AmendSeqs = append([]uint64(nil), a...)
	}
	return h
}

// put stores h as slot n; n == len(x.all) appends it with h's id (which never changes: later
// puts leave it). A string h shares with the slot's old state, or equal to the last new value
// of its field, is kept without a lookup; any other is found in, or added to, the table.
// Under x.mu.
func (x *Index) put(n uint32, h *events.Hazard) {
	if int(n) == len(x.all) {
		u, ok := events.ParseCanonicalUUID(h.ID)
		x.putNew(h, u, ok)
		return
	}
	x.store(&x.all[n], n, h)
}

// putNew is put of a new hazard, its id already read as a UUID (canon: spelled canonically).
// Under x.mu.
func (x *Index) putNew(h *events.Hazard, u uuid.UUID, canon bool) {
	n := uint32(len(x.all))
	x.all = append(x.all, slot{})
	s := &x.all[n]
	if canon {
		s.id = u
	} else {
		if x.oddIDs == nil {
			x.oddIDs = map[uint32]string{}
		}
		s.oddID, x.oddIDs[n] = true, strings.Clone(h.ID)
	}
	x.store(s, n, h)
}

// store writes h into slot s, hazard n. Under x.mu.
func (x *Index) store(s *slot, n uint32, h *events.Hazard) {
	for i, f := range fields(h) {
		switch r := x.recent[i]; {
		case sameString(x.words.get(s.s[i]), *f):
		case x.words.get(r) == *f: // as the field's last new value: no lookup (province, home, status…)
			s.s[i] = r
		default:
			s.s[i] = x.wordOf(i, *f)
			x.recent[i] = s.s[i]
		}
	}
	for i, t := range instants(h) {
		s.t[i] = *t
	}
	s.seq, s.reportSeq, s.lastHash = h.Seq, h.ReportSeq, h.LastHash
	s.version, s.rejections = int32(h.Version), int32(h.Rejections)
	s.listed, s.planned5, s.onTime, s.hashUnknown = h.Listed, h.Planned5, h.OnTime, h.HashUnknown
	if len(h.AmendSeqs) != len(x.amends[n]) {
		if x.amends == nil {
			x.amends = map[uint32][]uint64{}
		}
		x.amends[n] = append([]uint64(nil), h.AmendSeqs...)
	}
}

// sameString: a and b are the same bytes in memory (a string the table already holds).
func sameString(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.StringData(a) == unsafe.StringData(b))
}

// fewValues: the fields of few values (catalog codes, statuses, sources…), whose words are
// also found in a small table of their own that stays in the cache (a lookup in the table of
// every string missed it at each report of a replay).
const fewValues = 1<<sSector | 1<<sProvince | 1<<sPrefecture | 1<<sRegion | 1<<sGrade | 1<<sCriterion |
	1<<sSource | 1<<sStatus | 1<<sHome | 1<<sListLevel

// wordOf is word for a value of field i. Under x.mu.
func (x *Index) wordOf(i int, s string) uint32 {
	if fewValues&(1<<i) == 0 || s == "" {
		return x.words.num(s)
	}
	if w, ok := x.fewNum[s]; ok {
		return w
	}
	w := x.words.num(s)
	if len(x.fewNum) < 1<<12 { // a log of many values (not Qingling's) uses the big table alone
		x.fewNum[x.words.get(w)] = w // the table's copy, never a view of an event
	}
	return w
}

// register makes hazard n (just put) findable by its id. Under x.mu.
func (x *Index) register(n uint32) {
	if s := &x.all[n]; !s.oddID {
		x.hz[s.id] = n
		return
	}
	if x.oddHz == nil {
		x.oddHz = map[string]uint32{}
	}
	x.oddHz[x.oddIDs[n]] = n
}

// lookup is hazard id's number. Under x.mu.
func (x *Index) lookup(id string) (uint32, bool) {
	u, canon := events.ParseCanonicalUUID(id)
	return x.lookupAs(id, u, canon)
}

// lookupAs is lookup given id read as a UUID (canon: spelled canonically).
func (x *Index) lookupAs(id string, u uuid.UUID, canon bool) (uint32, bool) {
	if canon {
		n, ok := x.hz[u]
		return n, ok
	}
	n, ok := x.oddHz[id]
	return n, ok
}
