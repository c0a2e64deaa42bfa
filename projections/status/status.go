// Package status is the zero-out status projection (design.md, "Zero-out status"): for every
// sector × county the counts of open, overdue, awaiting, listed, cleared, stock and increment
// hazards, rolled up to prefecture, province and the cross-sector total "all", with the
// verdicts zeroed and stock_zeroed; daily figures per row; period figures.
//
// Status is a pure function of the events and an as-of instant T: each hazard's state at T is
// the fold of its events recorded by T (record `time`, filtered, in stream order), and its
// counts are read from that state at T (overdue when the effective deadline is before T, and
// so on). The projection keeps each hazard as a few compact events (see fold.go), so that:
//
//   - the live rows are updated per event in O(events of that hazard), never by recounting;
//   - deadline crossings (overdue, the 10-day verification window, the listing deadline) sit
//     in a time-ordered queue, and Advance applies those that have passed — no event needed;
//   - an as-of query for any past instant folds the compact events in memory (no replay);
//   - daily figures are kept as per-day deltas of each leaf, so a date range costs a sum;
//   - a snapshot is just the compact events, and loading one re-derives everything else.
package status

import (
	"context"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"qingling/events"
)

// Counts of one row (design.md, "Zero-out status"); cumulative as of an instant.
type Counts struct {
	Open                 int `json:"open"`
	OpenMajor            int `json:"open_major"`
	Overdue              int `json:"overdue"`
	OverdueMajor         int `json:"overdue_major"`
	AwaitingVerification int `json:"awaiting_verification"`
	VerificationOverdue  int `json:"verification_overdue"`
	Listed               int `json:"listed"`
	ListedOverdue        int `json:"listed_overdue"`
	Cleared              int `json:"cleared"`
	ClearedOnTime        int `json:"cleared_on_time"`
	Stock                int `json:"stock"`
	Increment            int `json:"increment"`
	StockMajor           int `json:"stock_major"`
}

// Zeroed: no open major hazard and nothing overdue.
func (c Counts) Zeroed() bool { return c.OpenMajor == 0 && c.Overdue == 0 }

// StockZeroed: no major hazard of the stock is open.
func (c Counts) StockZeroed() bool { return c.StockMajor == 0 }

type vec [nCounts]int32

func (v *vec) counts() Counts {
	return Counts{Open: int(v[cOpen]), OpenMajor: int(v[cOpenMajor]), Overdue: int(v[cOverdue]), OverdueMajor: int(v[cOverdueMajor]),
		AwaitingVerification: int(v[cAwaiting]), VerificationOverdue: int(v[cVerificationOverdue]), Listed: int(v[cListed]),
		ListedOverdue: int(v[cListedOverdue]), Cleared: int(v[cCleared]), ClearedOnTime: int(v[cClearedOnTime]),
		Stock: int(v[cStock]), Increment: int(v[cIncrement]), StockMajor: int(v[cStockMajor])}
}

// add adds sign to every count whose bit is set in m.
func (v *vec) add(m uint16, sign int32) {
	for m != 0 {
		b := bits.TrailingZeros16(m)
		v[b] += sign
		m &^= 1 << b
	}
}

// Row is one row of the status: a sector (or "all") × a region at one level.
type Row struct {
	Key      string `json:"key"` // the hz_status key
	Sector   string `json:"sector"`
	SectorZh string `json:"sector_zh"`
	SectorEn string `json:"sector_en"`
	Region   string `json:"region"`
	RegionZh string `json:"region_zh"`
	Level    string `json:"level"`
	Counts
	Zeroed      bool    `json:"zeroed"`
	StockZeroed bool    `json:"stock_zeroed"`
	Period      *Period `json:"period,omitempty"`
}

// Period figures of a row: the hazards found (occurredat) in [From, To), as of the query's
// instant. MajorDue counts the major ones whose outcome is due — cleared already, or past
// their effective deadline; DynamicZeroRate = MajorClearedOnTime / MajorDue (null when none
// is due), so it lies in [0, 1].
type Period struct {
	From               string   `json:"from"`
	To                 string   `json:"to"`
	Found              int      `json:"found"`
	FoundMajor         int      `json:"found_major"`
	Cleared            int      `json:"cleared"`
	ClearedOnTime      int      `json:"cleared_on_time"`
	MajorDue           int      `json:"major_due"`
	MajorClearedOnTime int      `json:"major_cleared_on_time"`
	DynamicZeroRate    *float64 `json:"dynamic_zero_rate"`
}

// Config of a projection.
type Config struct {
	Catalog *events.Catalog
	// Clock is the live clock (injectable for tests and the demo); nil = time.Now.
	Clock func() time.Time
	// StockCutoff is the last day of the stock (存量): hazards found on or before that day
	// (Asia/Shanghai) are stock, later ones increment. Zero = 2023-12-31.
	StockCutoff time.Time
}

// Projection is the live zero-out status. It is fed by the runner (ApplyEvent, in stream
// order) and by the clock (Advance); every method is safe for concurrent use.
type Projection struct {
	lay    *layout
	clock  func() time.Time
	cutoff int64 // the first instant after the cut-off day

	mu       sync.RWMutex
	seq      uint64 // last stream sequence applied
	lastID   string // the id of that event
	now      int64  // the live instant: counts are as of now
	ids      map[uuid.UUID]int32
	hz       []hazard
	live     []vec            // per row, as of now
	daily    [][]dayDelta     // per leaf, sorted by day
	wide     map[leafDay]*vec // what a day's change holds beyond 16 bits a count (daily.go)
	queue    wakeQueue
	dirty    []bool
	dirtyL   []int32
	tickAt   int64       // when Tick next wakes by itself (0 = Tick is not running)
	pendIDs  []uuid.UUID // the ids of the last len(pendIDs) hazards, not in ids yet (mapPending)
	reserved bool        // hz was made by Reserve (Trim)
	numOf    any         // the replay byNum is for (ApplyNumbered)
	byNum    []int32     // for it: a hazard's number in the replay → its place in hz + 1 (0: unknown)

	changed chan struct{} // rows became dirty
	kick    chan struct{} // wakes Tick
}

// New returns an empty projection.
func New(cfg Config) *Projection {
	cut := cfg.StockCutoff
	if cut.IsZero() {
		cut = time.Date(2023, 12, 31, 0, 0, 0, 0, events.Shanghai)
	}
	y, m, d := cut.In(events.Shanghai).Date()
	x := &Projection{lay: newLayout(cfg.Catalog), clock: cfg.Clock,
		cutoff:  time.Date(y, m, d+1, 0, 0, 0, 0, events.Shanghai).UnixNano(),
		changed: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
	if x.clock == nil {
		x.clock = time.Now
	}
	x.reset()
	return x
}

// Reset empties the projection.
func (x *Projection) Reset() {
	x.mu.Lock()
	x.reset()
	x.mu.Unlock()
}

func (x *Projection) reset() {
	x.seq, x.lastID, x.now = 0, "", 0
	x.ids = map[uuid.UUID]int32{}
	x.hz = nil
	x.live = make([]vec, len(x.lay.rows))
	x.daily = make([][]dayDelta, len(x.lay.leafRow))
	x.wide = nil
	x.queue = nil
	x.dirty = make([]bool, len(x.lay.rows))
	x.dirtyL = nil
	x.numOf, x.byNum, x.pendIDs, x.reserved = nil, nil, nil, false
}

// ApplyEvent folds one stored event (projections.Projection). Events at or before the last
// applied sequence are ignored, so a feed that repeats itself never double counts.
func (x *Projection) ApplyEvent(seq uint64, e *events.Event, p any) {
	now := x.clock().UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.applyLocked(now, seq, e, p)
}

// ApplyEvents is ApplyEvent for n events in stream order under one lock (a catch-up's
// batches): event(i) is the i-th, e nil for one to pass over.
func (x *Projection) ApplyEvents(n int, event func(i int) (seq uint64, e *events.Event, p any)) {
	now := x.clock().UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range n {
		if seq, e, p := event(i); e != nil {
			x.applyLocked(now, seq, e, p)
		}
	}
	x.lastID = strings.Clone(x.lastID) // a replay's strings view the stored bytes
}

// Reserve makes room, in an empty projection, for the hazards of a replay of n events (two
// events a hazard and more: pages never written stay the system's; Trim gives back the rest).
func (x *Projection) Reserve(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.hz) == 0 && n >= 4096 {
		x.hz, x.reserved = make([]hazard, 0, n/2), true
	}
}

// Trim gives back the room Reserve made that a replay left unused (more than a fifth; a
// slice grown by appends is left as it is), puts the hazards the replay made in the map by
// id, and forgets the replay's numbers.
func (x *Projection) Trim() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mapPending()
	x.numOf, x.byNum = nil, nil // the replay is over: its numbers are not needed again
	if c := cap(x.hz); x.reserved && c-len(x.hz) > c/5 {
		x.hz = append([]hazard(nil), x.hz...)
	}
	x.reserved = false
}

// mapPending puts the hazards a numbered replay made in the map by id, at once: inserted one
// by one beside the replay, each took a cache miss (a seventh of a 10M cold start).
func (x *Projection) mapPending() {
	if len(x.pendIDs) == 0 {
		return
	}
	if len(x.ids) == 0 {
		x.ids = make(map[uuid.UUID]int32, len(x.pendIDs))
	}
	base := int32(len(x.hz) - len(x.pendIDs))
	for k, id := range x.pendIDs {
		x.ids[id] = base + int32(k)
	}
	x.pendIDs = nil
}

// ApplyNumbered is ApplyEvents for a replay that numbers the hazards (projections.Replay: the
// index's numbers): event(i) also answers its hazard's number, the same for every event of a
// hazard within the replay. A hazard is then found by its number, without a lookup by id,
// from its second event of the replay on. replay is a value of its own for each replay:
// another one forgets the numbers of the last.
func (x *Projection) ApplyNumbered(replay any, n int, event func(i int) (seq uint64, hz uint32, e *events.Event, p any)) {
	now := x.clock().UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	if replay != x.numOf {
		x.mapPending() // found by the last replay's numbers only
		x.numOf, x.byNum = replay, x.byNum[:0]
	}
	for i := range n {
		if seq, hz, e, p := event(i); e != nil {
			x.applyAs(now, seq, int64(hz), e, p)
		}
	}
	x.lastID = strings.Clone(x.lastID)
}

func (x *Projection) applyLocked(now int64, seq uint64, e *events.Event, p any) {
	x.applyAs(now, seq, -1, e, p)
}

// applyAs is applyLocked for the event of hazard number num of a numbered replay (-1: none).
func (x *Projection) applyAs(now int64, seq uint64, num int64, e *events.Event, p any) {
	if seq <= x.seq && x.seq != 0 {
		return
	}
	c, ok := compact(e, p)
	x.advance(now)
	x.seq, x.lastID = seq, e.ID
	if !ok {
		return
	}
	i := int32(-1)
	if num >= 0 && num < int64(len(x.byNum)) {
		i = x.byNum[num] - 1
	}
	if i < 0 {
		id, canon := events.ParseCanonicalUUID(e.Subject)
		if !canon {
			var err error
			if id, err = uuid.Parse(e.Subject); err != nil {
				return
			}
		}
		// A hazard this numbered replay made is found by its number whenever its id is spelled
		// canonically (the index numbers each such id once): those wait out of the map (see
		// pendIDs); any other lookup needs them in it.
		byNumOnly := num >= 0 && canon
		if !byNumOnly {
			x.mapPending()
		}
		var exists bool
		if i, exists = x.ids[id]; !exists {
			r, report := p.(*events.Reported)
			if !report {
				return // like events.Evolve: a hazard begins with its report
			}
			leaf := x.lay.leaf(r.Sector, r.Region)
			if leaf < 0 {
				return
			}
			i = int32(len(x.hz))
			x.hz = append(x.hz, hazard{found: nanos(e.OccurredAt), leaf: leaf})
			if byNumOnly {
				x.pendIDs = append(x.pendIDs, id)
			} else {
				x.ids[id] = i // pendIDs are mapped already (above): they stay a suffix of hz
			}
		}
		if num >= 0 {
			if need := int(num) + 1; need > len(x.byNum) {
				x.byNum = append(x.byNum, make([]int32, need-len(x.byNum))...)
			}
			x.byNum[num] = i + 1
		}
	}
	x.addEvent(i, c)
}

func (x *Projection) addEvent(i int32, c cev) {
	h := &x.hz[i]
	// The hazard's counts change only from c.t on: take out its old daily steps from there,
	// put in the new ones.
	h.walk(c.t, x.cutoff, func(at int64, from, to uint16) { x.addDaily(h.leaf, dayOf(at), to, from) })
	evs := make([]cev, len(h.evs)+1) // exact size: most hazards have a handful of events
	copy(evs, h.evs)
	evs[len(h.evs)] = c
	h.evs = evs
	h.walk(c.t, x.cutoff, func(at int64, from, to uint16) { x.addDaily(h.leaf, dayOf(at), from, to) })
	x.setMask(i, h.maskAt(x.now, x.cutoff))
	x.schedule(i)
}

// setMask moves hazard i's live contribution to m.
func (x *Projection) setMask(i int32, m uint16) {
	h := &x.hz[i]
	old := h.mask
	if old == m {
		return
	}
	h.mask = m
	for _, r := range x.lay.leafRow[h.leaf] {
		x.live[r].add(old&^m, -1)
		x.live[r].add(m&^old, +1)
		if !x.dirty[r] {
			x.dirty[r] = true
			x.dirtyL = append(x.dirtyL, r)
		}
	}
	select {
	case x.changed <- struct{}{}:
	default:
	}
}

// schedule queues hazard i's next break after now.
func (x *Projection) schedule(i int32) {
	h := &x.hz[i]
	s := h.stateAt(x.now)
	n := h.nextBreak(&s, x.now)
	if n == h.next {
		return
	}
	h.next = n
	if n != 0 {
		x.queue.push(wake{at: n, hz: i})
		if len(x.queue) > 2*len(x.hz)+1024 {
			x.compactQueue()
		}
		if n < x.tickAt {
			select {
			case x.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (x *Projection) compactQueue() {
	q := x.queue[:0]
	for i := range x.hz {
		if x.hz[i].next != 0 {
			q = append(q, wake{at: x.hz[i].next, hz: int32(i)})
		}
	}
	x.queue = q
	x.queue.init()
}

// advance moves the live instant to now, applying every break that has passed.
func (x *Projection) advance(now int64) {
	if now <= x.now {
		return
	}
	x.now = now
	for len(x.queue) > 0 && x.queue[0].at <= now {
		w := x.queue.pop()
		h := &x.hz[w.hz]
		if h.next != w.at {
			continue // superseded by a later event of the hazard
		}
		h.next = 0
		x.setMask(w.hz, h.maskAt(now, x.cutoff))
		x.schedule(w.hz)
	}
}

// Advance moves the live status to the instant now (a deadline may have passed).
func (x *Projection) Advance(now time.Time) {
	x.mu.Lock()
	x.advance(now.UnixNano())
	x.mu.Unlock()
}

// NextWake is the instant of the next scheduled change of the live status.
func (x *Projection) NextWake() (time.Time, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.queue) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, x.queue[0].at), true
}

// Tick keeps the live status at the clock until ctx ends: it wakes at the next scheduled
// change (or after at most limit, to follow a clock that is moved by hand) and applies it.
func (x *Projection) Tick(ctx context.Context, limit time.Duration) {
	if limit <= 0 {
		limit = 250 * time.Millisecond
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	defer func() { x.mu.Lock(); x.tickAt = 0; x.mu.Unlock() }()
	for {
		now := x.clock().UnixNano()
		x.mu.Lock()
		x.advance(now)
		wait := int64(limit)
		if len(x.queue) > 0 {
			wait = min(wait, max64(x.queue[0].at-now, 0))
		}
		x.tickAt = now + wait
		x.mu.Unlock()
		t.Reset(time.Duration(wait))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-x.kick: // Reset below needs no drain (Go ≥ 1.23 timers)
		}
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Changed is signalled when rows have changed since the last TakeDirty.
func (x *Projection) Changed() <-chan struct{} { return x.changed }

// TakeDirty returns the rows that changed since the last call, with the sequence and
// instant they are as of. Rows at county level come first.
func (x *Projection) TakeDirty() (rows []Row, seq uint64, asOf time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	sort.Slice(x.dirtyL, func(i, j int) bool {
		return levelRank(x.lay.rows[x.dirtyL[i]].level) < levelRank(x.lay.rows[x.dirtyL[j]].level)
	})
	for _, r := range x.dirtyL {
		x.dirty[r] = false
		rows = append(rows, x.row(r, &x.live[r]))
	}
	x.dirtyL = x.dirtyL[:0]
	return rows, x.seq, time.Unix(0, x.now).In(events.Shanghai)
}

// All returns every row as of the live instant (for a full reconciliation of the KV bucket).
func (x *Projection) All() (rows []Row, seq uint64, asOf time.Time) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for r := range x.live {
		rows = append(rows, x.row(int32(r), &x.live[r]))
	}
	return rows, x.seq, time.Unix(0, x.now).In(events.Shanghai)
}

func levelRank(l string) int {
	switch l {
	case LevelCounty:
		return 0
	case LevelPrefecture:
		return 1
	}
	return 2
}

func (x *Projection) row(r int32, v *vec) Row {
	ri := &x.lay.rows[r]
	c := v.counts()
	return Row{Key: ri.key, Sector: ri.sector, SectorZh: ri.sectorZh, SectorEn: ri.sectorEn, Region: ri.region, RegionZh: ri.regionZh,
		Level: ri.level, Counts: c, Zeroed: c.Zeroed(), StockZeroed: c.StockZeroed()}
}

// Now is the projection's clock.
func (x *Projection) Now() time.Time { return x.clock() }

// Seq is the last stream sequence applied.
func (x *Projection) Seq() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.seq
}

// Len is the number of hazards.
func (x *Projection) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.hz)
}

// wake is a scheduled break of one hazard.
type wake struct {
	at int64
	hz int32
}

// wakeQueue is a binary min-heap by instant.
type wakeQueue []wake

func (q *wakeQueue) push(w wake) {
	*q = append(*q, w)
	s := *q
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].at <= s[i].at {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (q *wakeQueue) pop() wake {
	s := *q
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	*q = s[:n]
	q.down(0)
	return top
}

func (q wakeQueue) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(q) {
			return
		}
		m := l
		if r := l + 1; r < len(q) && q[r].at < q[l].at {
			m = r
		}
		if q[i].at <= q[m].at {
			return
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}

func (q wakeQueue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}
