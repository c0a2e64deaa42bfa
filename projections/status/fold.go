package status

import (
	"time"

	"qingling/events"
)

// A hazard is kept as its compact events: what the counts need of each, nothing else. The
// status of a hazard at any instant T is the fold of its events recorded by T (stream order,
// filtered on record time), so the live status, the as-of status, the daily figures and a
// restored snapshot are all the same pure function of the events.

// Event kinds of the compact form.
const (
	kNone uint8 = iota
	kReported
	kAmended
	kGraded
	kListed
	kPlanned
	kProgressed
	kExtended
	kCompleted
	kVerifyFailed
	kCleared
	kReopened
	kWithdrawn
)

// cev is one compact event: record time, one instant parameter (a deadline, or for a completion
// its occurredat; 0 = none), the kind, and for reported/graded whether the grade is major.
type cev struct {
	t     int64
	p     int64
	kind  uint8
	major bool
}

// Statuses of the compact state (0 = the hazard does not exist yet at that instant).
const (
	sNone uint8 = iota
	sReported
	sPlanned
	sRectifying
	sAwaiting
	sCleared
	sWithdrawn
)

// state is what the counts need of a hazard's state; it mirrors events.Evolve.
type state struct {
	status                 uint8
	major, listed, onTime  bool
	rep, plan, ext, listDL int64
	completed, awaiting    int64
}

func (s *state) deadline() int64 {
	switch {
	case s.ext != 0:
		return s.ext
	case s.plan != 0:
		return s.plan
	}
	return s.rep
}

func (s *state) open() bool { return s.status >= sReported && s.status <= sAwaiting }

// apply folds one compact event, the way events.Evolve folds the full one.
func (s *state) apply(e *cev) {
	if s.status == sNone {
		if e.kind == kReported {
			*s = state{status: sReported, major: e.major, rep: e.p}
		}
		return // Evolve refuses anything but a report as a first event
	}
	switch e.kind {
	case kGraded:
		s.major = e.major
		if !e.major {
			s.listed, s.listDL = false, 0
		}
	case kListed:
		s.listed, s.listDL = true, e.p
	case kPlanned:
		if e.p != 0 {
			s.plan = e.p
		}
		if s.status == sReported {
			s.status = sPlanned
		}
	case kProgressed, kVerifyFailed:
		s.status = sRectifying
	case kExtended:
		s.ext = e.p
	case kCompleted:
		s.status, s.completed, s.awaiting = sAwaiting, e.p, e.t
	case kCleared:
		s.status = sCleared
		s.onTime = s.completed <= s.deadline()
	case kReopened:
		s.status = sReported
		s.completed, s.awaiting, s.onTime = 0, 0, false
		s.plan, s.ext = 0, 0
		if e.p != 0 {
			s.rep = e.p
		}
	case kWithdrawn:
		s.status = sWithdrawn
	}
}

// Count bits: one per count, in the order of Counts' fields.
const (
	cOpen = iota
	cOpenMajor
	cOverdue
	cOverdueMajor
	cAwaiting
	cVerificationOverdue
	cListed
	cListedOverdue
	cCleared
	cClearedOnTime
	cStock
	cIncrement
	cStockMajor
	nCounts
)

const window = int64(events.VerificationWindow)

// mask is the hazard's contribution to its rows at instant at: one bit per count.
// found is the report's occurredat, cutoff the first instant after the stock cut-off date.
func (s *state) mask(at, found, cutoff int64) uint16 {
	var m uint16
	set := func(bit int, on bool) {
		if on {
			m |= 1 << bit
		}
	}
	open := s.open()
	rectify := s.status == sReported || s.status == sPlanned || s.status == sRectifying
	d := s.deadline()
	overdue := rectify && d != 0 && d < at
	listed := s.listed && open
	stock := open && found < cutoff
	set(cOpen, open)
	set(cOpenMajor, open && s.major)
	set(cOverdue, overdue)
	set(cOverdueMajor, overdue && s.major)
	set(cAwaiting, s.status == sAwaiting)
	set(cVerificationOverdue, s.status == sAwaiting && at-s.awaiting > window)
	set(cListed, listed)
	set(cListedOverdue, listed && s.listDL != 0 && s.listDL < at)
	set(cCleared, s.status == sCleared)
	set(cClearedOnTime, s.status == sCleared && s.onTime)
	set(cStock, stock)
	set(cIncrement, open && !stock)
	set(cStockMajor, stock && s.major)
	return m
}

// crossing is the first instant after at at which the state's mask changes by time alone
// (a deadline passes, the verification window ends, the listing deadline passes); 0 = never.
func (s *state) crossing(at int64) int64 {
	next := int64(0)
	consider := func(c int64) {
		if c > at && (next == 0 || c < next) {
			next = c
		}
	}
	switch s.status {
	case sReported, sPlanned, sRectifying:
		if d := s.deadline(); d != 0 {
			consider(d + 1) // overdue from the first instant after the deadline
		}
	case sAwaiting:
		consider(s.awaiting + window + 1)
	}
	if s.listed && s.open() && s.listDL != 0 {
		consider(s.listDL + 1)
	}
	return next
}

// hazard is one hazard of the projection.
type hazard struct {
	evs   []cev
	found int64 // occurredat of the report
	next  int64 // the live crossing scheduled for it (0 = none)
	leaf  int32 // its sector × county row
	mask  uint16
}

// stateAt folds the events recorded by at.
func (h *hazard) stateAt(at int64) state {
	var s state
	for i := range h.evs {
		if h.evs[i].t <= at {
			s.apply(&h.evs[i])
		}
	}
	return s
}

func (h *hazard) maskAt(at, cutoff int64) uint16 {
	s := h.stateAt(at)
	return s.mask(at, h.found, cutoff)
}

// nextBreak is the first instant after at at which the hazard's mask may change: an event
// recorded later than at, or a crossing of its state at at. 0 = never.
func (h *hazard) nextBreak(s *state, at int64) int64 {
	next := s.crossing(at)
	for i := range h.evs {
		if t := h.evs[i].t; t > at && (next == 0 || t < next) {
			next = t
		}
	}
	return next
}

// walk calls fn for each change of the hazard's mask at instants from a on, with the mask
// before and after the change.
func (h *hazard) walk(a, cutoff int64, fn func(at int64, from, to uint16)) {
	prev := h.maskAt(a-1, cutoff)
	for t := a; t != 0; {
		s := h.stateAt(t)
		m := s.mask(t, h.found, cutoff)
		if m != prev {
			fn(t, prev, m)
			prev = m
		}
		t = h.nextBreak(&s, t)
	}
}

// compact turns a stored event into its compact form; ok is false for an unknown type.
func compact(e *events.Event, p any) (c cev, ok bool) {
	c.t = nanos(e.Time)
	switch v := p.(type) {
	case *events.Reported:
		c.kind, c.p, c.major = kReported, instant(v.Deadline), v.Grade == events.GradeMajor
	case *events.Amended:
		c.kind = kAmended
	case *events.Graded:
		c.kind, c.major = kGraded, v.Grade == events.GradeMajor
	case *events.Listed:
		c.kind, c.p = kListed, instant(v.Deadline)
	case *events.Planned:
		c.kind, c.p = kPlanned, instant(v.Deadline)
	case *events.Progressed:
		c.kind = kProgressed
	case *events.Extended:
		c.kind, c.p = kExtended, instant(v.Deadline)
	case *events.Completed:
		c.kind, c.p = kCompleted, nanos(e.OccurredAt)
	case *events.VerifyFailed:
		c.kind = kVerifyFailed
	case *events.Cleared:
		c.kind = kCleared
	case *events.Reopened:
		c.kind, c.p = kReopened, instant(v.Deadline)
	case *events.Withdrawn:
		c.kind = kWithdrawn
	default:
		return c, false
	}
	return c, true
}

// nanos maps an instant to Unix nanoseconds, the zero time to 0 (before every real instant,
// as the zero time.Time is).
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// instant parses a deadline as events.Evolve does (RFC 3339; anything else is no deadline).
func instant(s string) int64 {
	if s == "" {
		return 0
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return nanos(t)
}
