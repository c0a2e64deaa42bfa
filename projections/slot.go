package projections

import (
	"strings"
	"unsafe"

	"qingling/events"
)

// The strings of a hazard, in slot.s.
const (
	sID = iota
	sSector
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

// slot is a hazard as the index keeps it: events.Hazard with its strings as numbers in the
// index's string table (each string once, however many hazards repeat it) and its counters
// in 32 bits — 208 bytes without a pointer where events.Hazard is 448 with 17, so that the
// collector never scans the hazards. Amendments, which few hazards have, live beside it.
type slot struct {
	seq, reportSeq uint64
	t              [nInstants]events.Instant
	lastHash       [32]byte
	version        int32
	rejections     int32
	s              [nStrings]uint32
	listed         bool
	planned5       bool
	onTime         bool
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

// fields are h's strings in slot order.
func fields(h *events.Hazard) [nStrings]*string {
	return [nStrings]*string{&h.ID, &h.Sector, &h.Province, &h.Prefecture, &h.Region, &h.SiteKey, &h.SiteName,
		&h.Grade, &h.Criterion, &h.Source, (*string)(&h.Status), &h.Home, &h.ListLevel, &h.ReportedBy,
		&h.CompletedBy, &h.ClearedBy, &h.Supersedes}
}

func instants(h *events.Hazard) [nInstants]*events.Instant {
	return [nInstants]*events.Instant{&h.ListDeadline, &h.ReportDeadline, &h.PlanDeadline, &h.ExtDeadline,
		&h.FoundAt, &h.RecordedAt, &h.UpdatedAt, &h.CompletedAt, &h.AwaitingAt, &h.ClearedAt}
}

// hazard is slot n as an events.Hazard (its strings are the table's: nothing is copied but
// the amendments). Under x.mu.
func (x *Index) hazard(n uint32) events.Hazard {
	s := &x.all[n]
	h := events.Hazard{Seq: s.seq, ReportSeq: s.reportSeq, LastHash: s.lastHash, Version: int(s.version),
		Rejections: int(s.rejections), Listed: s.listed, Planned5: s.planned5, OnTime: s.onTime}
	for i, f := range fields(&h) {
		*f = x.words[s.s[i]]
	}
	for i, t := range instants(&h) {
		*t = s.t[i]
	}
	if a := x.amends[n]; len(a) > 0 {
		h.AmendSeqs = append([]uint64(nil), a...)
	}
	return h
}

// put stores h as slot n (n == len(x.all) appends it). A string h shares with the slot's old
// state is kept without a lookup; any other is found in, or added to, the table. Under x.mu.
func (x *Index) put(n uint32, h *events.Hazard) {
	if int(n) == len(x.all) {
		x.all = append(x.all, slot{})
	}
	s := &x.all[n]
	for i, f := range fields(h) {
		if old := x.words[s.s[i]]; !sameString(old, *f) {
			s.s[i] = x.word(*f, i == sID)
		}
	}
	for i, t := range instants(h) {
		s.t[i] = *t
	}
	s.seq, s.reportSeq, s.lastHash = h.Seq, h.ReportSeq, h.LastHash
	s.version, s.rejections = int32(h.Version), int32(h.Rejections)
	s.listed, s.planned5, s.onTime = h.Listed, h.Planned5, h.OnTime
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

// word is s's number in the string table, adding a copy of it (s may view an event's bytes)
// when new. unique: s is a hazard id, which no other hazard repeats, added without the
// lookup (the id → number map holds it). Under x.mu.
func (x *Index) word(s string, unique bool) uint32 {
	if s == "" {
		return 0
	}
	if !unique {
		if w, ok := x.wordNum[s]; ok {
			return w
		}
	}
	s = strings.Clone(s)
	w := uint32(len(x.words))
	x.words = append(x.words, s)
	if !unique {
		x.wordNum[s] = w
	}
	return w
}
