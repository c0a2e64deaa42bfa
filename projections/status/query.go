package status

import (
	"time"

	"qingling/events"
)

// Select names rows: for each sector (Sector "" = "all" and every sector), the row of Region
// ("" = every province) and the rows one level below it.
type Select struct {
	Sector string
	Region string
	// Keep, when set, drops rows the caller may not read.
	Keep func(sector, region string) bool
}

// PeriodSpec asks for period figures: hazards found in [From, To).
type PeriodSpec struct {
	From, To time.Time
}

// Result of a status query.
type Result struct {
	AsOf time.Time // the instant the counts are as of
	Live bool      // the live status (no as_of given)
	Seq  uint64    // the last stream sequence the projection has applied
	Rows []Row
}

func (x *Projection) lookup(sector, region string) (int32, error) {
	if sector == "" {
		sector = AllSectors
	}
	if _, ok := x.lay.provinces[sector]; !ok {
		return -1, events.Errorf(events.KindInvalid, "unknown_sector", "sector", "unknown sector %q", sector)
	}
	if region == "" {
		if p := x.lay.provinces[sector]; len(p) == 1 {
			return p[0], nil
		}
		return -1, events.Errorf(events.KindInvalid, "required", "region", "name a region")
	}
	r := x.lay.find(sector, region)
	if r < 0 {
		return -1, events.Errorf(events.KindInvalid, "unknown_region", "region", "unknown region code %q", region)
	}
	return r, nil
}

func (x *Projection) selectRows(sel Select) ([]int32, error) {
	sectors := x.lay.sectors
	if sel.Sector != "" {
		sectors = []string{sel.Sector}
	}
	var out []int32
	for _, s := range sectors {
		var tops []int32
		if sel.Region == "" {
			if _, ok := x.lay.provinces[s]; !ok {
				return nil, events.Errorf(events.KindInvalid, "unknown_sector", "sector", "unknown sector %q", s)
			}
			tops = x.lay.provinces[s]
		} else {
			r, err := x.lookup(s, sel.Region)
			if err != nil {
				return nil, err
			}
			tops = []int32{r}
		}
		for _, t := range tops {
			for _, r := range append([]int32{t}, x.lay.rows[t].children...) {
				if ri := &x.lay.rows[r]; sel.Keep == nil || sel.Keep(ri.sector, ri.region) {
					out = append(out, r)
				}
			}
		}
	}
	return out, nil
}

// Status returns the selected rows as of asOf (zero = the live status now), with period
// figures when p is given. An as-of instant in the past folds every hazard's events recorded
// by then; it gives exactly what the live status showed at that instant.
func (x *Projection) Status(sel Select, asOf time.Time, p *PeriodSpec) (Result, error) {
	now := x.clock()
	x.Advance(now)
	if asOf.After(now) {
		return Result{}, events.Errorf(events.KindInvalid, "as_of_in_future", "as_of", "as_of %s is later than now", events.FormatInstant(asOf))
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	ids, err := x.selectRows(sel)
	if err != nil {
		return Result{}, err
	}
	res := Result{Seq: x.seq, Live: asOf.IsZero()}
	at := x.now
	if !res.Live {
		at = asOf.UnixNano()
	}
	res.AsOf = time.Unix(0, at).In(events.Shanghai)
	vals := x.live
	if !res.Live && at != x.now {
		vals = x.asOf(at)
	}
	var per []periodVec
	if p != nil {
		per = x.period(at, p.From.UnixNano(), p.To.UnixNano())
	}
	for _, r := range ids {
		row := x.row(r, &vals[r])
		if per != nil {
			row.Period = per[r].period(p)
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

// asOf computes every row as of at from the compact events (called with mu held).
func (x *Projection) asOf(at int64) []vec {
	vals := make([]vec, len(x.lay.rows))
	for i := range x.hz {
		h := &x.hz[i]
		if m := h.maskAt(at, x.cutoff); m != 0 {
			for _, r := range x.lay.leafRow[h.leaf] {
				vals[r].add(m, 1)
			}
		}
	}
	return vals
}

type periodVec [6]int32

const (
	pFound = iota
	pFoundMajor
	pCleared
	pClearedOnTime
	pMajorDue
	pMajorClearedOnTime
)

func (v *periodVec) period(p *PeriodSpec) *Period {
	out := &Period{From: events.FormatInstant(p.From), To: events.FormatInstant(p.To), Found: int(v[pFound]), FoundMajor: int(v[pFoundMajor]),
		Cleared: int(v[pCleared]), ClearedOnTime: int(v[pClearedOnTime]), MajorDue: int(v[pMajorDue]), MajorClearedOnTime: int(v[pMajorClearedOnTime])}
	if out.MajorDue > 0 {
		r := float64(out.MajorClearedOnTime) / float64(out.MajorDue)
		out.DynamicZeroRate = &r
	}
	return out
}

// period computes the period figures of every row (called with mu held): hazards found in
// [from, to), in their state as of at; withdrawn ones and those not yet recorded by at are out.
func (x *Projection) period(at, from, to int64) []periodVec {
	vals := make([]periodVec, len(x.lay.rows))
	for i := range x.hz {
		h := &x.hz[i]
		if h.found < from || h.found >= to {
			continue
		}
		s := h.stateAt(at)
		if s.status == sNone || s.status == sWithdrawn {
			continue
		}
		var v periodVec
		v[pFound] = 1
		cleared := s.status == sCleared
		onTime := cleared && s.onTime
		d := s.deadline()
		if cleared {
			v[pCleared] = 1
		}
		if onTime {
			v[pClearedOnTime] = 1
		}
		if s.major {
			v[pFoundMajor] = 1
			if cleared || (d != 0 && d < at) {
				v[pMajorDue] = 1
			}
			if onTime {
				v[pMajorClearedOnTime] = 1
			}
		}
		for _, r := range x.lay.leafRow[h.leaf] {
			for k := range v {
				vals[r][k] += v[k]
			}
		}
	}
	return vals
}
