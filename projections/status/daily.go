package status

import (
	"math"
	"math/bits"
	"sort"
	"time"

	"qingling/events"
)

// Daily figures: the status of a row at the end of each day (Asia/Shanghai), as recorded by
// then. Each leaf keeps the per-day deltas of its counts (the steps of its hazards' counts,
// bucketed by the day they happen on), so the figure of day d is the sum of the deltas up to d.

const day = int64(24 * time.Hour)
const offset = int64(8 * time.Hour) // Asia/Shanghai is UTC+8 all year

// dayOf is the Shanghai day (days since 1970-01-01) of an instant.
func dayOf(t int64) int32 {
	t += offset
	d := t / day
	if t%day < 0 {
		d--
	}
	return int32(d)
}

// dayEnd is the last instant of a day: the as-of instant of its daily figure.
func dayEnd(d int32) int64 { return (int64(d)+1)*day - offset - 1 }

func dayDate(d int32) string {
	return time.Unix(0, int64(d)*day-offset).In(events.Shanghai).Format("2006-01-02")
}

// dayDelta is one day's change of a leaf's counts, in 16 bits a count (32 bytes, not 56:
// there is one per leaf per day that saw a change). A change beyond 16 bits goes to
// Projection.wide, added on read, so the figures stay exact whatever the size of a day.
type dayDelta struct {
	day int32
	v   [nCounts]int16
}

// leafDay keys Projection.wide: a leaf and a day.
type leafDay struct {
	leaf, day int32
}

// addDaily records that a hazard of leaf changes from mask from to mask to on day d.
func (x *Projection) addDaily(leaf int32, d int32, from, to uint16) {
	if from == to {
		return
	}
	s := x.daily[leaf]
	i := sort.Search(len(s), func(i int) bool { return s[i].day >= d })
	if i == len(s) || s[i].day != d {
		if len(s) == cap(s) { // grow by a quarter, not double: there is one slice per leaf
			g := make([]dayDelta, len(s), len(s)+len(s)/4+4)
			copy(g, s)
			s = g
		}
		s = append(s, dayDelta{})
		copy(s[i+1:], s[i:])
		s[i] = dayDelta{day: d}
		x.daily[leaf] = s
	}
	x.addDelta(leaf, &s[i], from&^to, -1)
	x.addDelta(leaf, &s[i], to&^from, +1)
}

// addDelta adds sign to every count of dd whose bit is set in m.
func (x *Projection) addDelta(leaf int32, dd *dayDelta, m uint16, sign int32) {
	for m != 0 {
		b := bits.TrailingZeros16(m)
		m &^= 1 << b
		if v := int32(dd.v[b]) + sign; v >= math.MinInt16 && v <= math.MaxInt16 {
			dd.v[b] = int16(v)
			continue
		}
		if x.wide == nil {
			x.wide = map[leafDay]*vec{}
		}
		k := leafDay{leaf, dd.day}
		w := x.wide[k]
		if w == nil {
			w = new(vec)
			x.wide[k] = w
		}
		w[b] += sign
	}
}

// addDay adds the change of leaf on dd to a.
func (x *Projection) addDay(a *vec, leaf int32, dd *dayDelta) {
	for i := range a {
		a[i] += int32(dd.v[i])
	}
	if x.wide != nil {
		if w := x.wide[leafDay{leaf, dd.day}]; w != nil {
			addVec(a, w)
		}
	}
}

// Day is a row's status at the end of one day.
type Day struct {
	Date string `json:"date"`
	AsOf string `json:"as_of"`
	Counts
	Zeroed      bool `json:"zeroed"`
	StockZeroed bool `json:"stock_zeroed"`
	// Partial marks today: the figure is the live status, the day has not ended.
	Partial bool `json:"partial,omitempty"`
}

// MaxDays bounds a daily query.
const MaxDays = 3700

// Daily returns the row of sector × region for each day from..to (dates in Asia/Shanghai,
// inclusive); days after today are left out and today is the live status.
func (x *Projection) Daily(sector, region string, from, to time.Time) (Row, []Day, error) {
	x.Advance(x.clock())
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, err := x.lookup(sector, region)
	if err != nil {
		return Row{}, nil, err
	}
	d0, d1 := dayOf(from.UnixNano()), dayOf(to.UnixNano())
	today := dayOf(x.now)
	if d1 > today {
		d1 = today
	}
	if d1 < d0 {
		return x.row(r, &x.live[r]), nil, nil
	}
	if int(d1-d0)+1 > MaxDays {
		return Row{}, nil, events.Errorf(events.KindInvalid, "range_too_long", "from", "at most %d days per query", MaxDays)
	}
	var base vec
	buckets := make([]vec, d1-d0+1)
	for _, leaf := range x.lay.rows[r].leaves {
		for i := range x.daily[leaf] {
			dd := &x.daily[leaf][i]
			switch {
			case dd.day < d0:
				x.addDay(&base, leaf, dd)
			case dd.day <= d1:
				x.addDay(&buckets[dd.day-d0], leaf, dd)
			}
		}
	}
	out := make([]Day, len(buckets))
	for i := range buckets {
		addVec(&base, &buckets[i])
		d := d0 + int32(i)
		v, at, partial := base, dayEnd(d), false
		if d == today {
			v, at, partial = x.live[r], x.now, true
		}
		c := v.counts()
		out[i] = Day{Date: dayDate(d), AsOf: events.FormatInstant(time.Unix(0, at)), Counts: c, Zeroed: c.Zeroed(), StockZeroed: c.StockZeroed(), Partial: partial}
	}
	return x.row(r, &x.live[r]), out, nil
}

func addVec(a, b *vec) {
	for i := range a {
		a[i] += b[i]
	}
}
