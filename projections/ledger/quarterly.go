package ledger

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"qingling/events"
	"qingling/projections/status"
)

// Sources in the order of the table's columns.
var sourceOrder = []string{"inspection", "self-check", "third-party", "tip-off"}

// StatRow is one row of the quarterly statistics table: a sector (or all) × a region.
// Period figures are of the hazards found (occurredat) in the period, in their state as of
// the table's instant; the others are cumulative as of that instant. Every figure but the
// counts by source comes from the status projection, so the table and /v1/status agree.
type StatRow struct {
	Key      string
	Sector   string
	SectorZh string
	SectorEn string
	Region   string
	RegionZh string
	Level    string

	Found, FoundGeneral, FoundMajor int
	BySource                        [4]int // inspection, self-check, third-party, tip-off
	Cleared, ClearedOnTime          int
	MajorDue, MajorClearedOnTime    int
	DynamicZeroRate                 *float64

	status.Counts
}

// Table is the quarterly statistics table.
type Table struct {
	From, To, AsOf time.Time
	Rows           []StatRow
}

// Quarterly builds the table for sel over [from, to), as of asOf (zero: the end of the
// period, or now when the period has not ended), from the status projection x and, for the
// counts by source, the ledger l; both must have been fed the same log.
func Quarterly(x *status.Projection, l *Ledger, sel status.Select, from, to, asOf time.Time) (Table, error) {
	if !from.Before(to) {
		return Table{}, events.Errorf(events.KindInvalid, "invalid_period", "from", "the period's start %s is not before its end %s", events.FormatInstant(from), events.FormatInstant(to))
	}
	if asOf.IsZero() {
		asOf = to.Add(-time.Nanosecond)
		if now := time.Now(); asOf.After(now) {
			asOf = now
		}
	}
	res, err := x.Status(sel, asOf, &status.PeriodSpec{From: from, To: to})
	if err != nil {
		return Table{}, err
	}
	// Counts by source per sector × county, from the same definition as the period figures:
	// found in the period, recorded by asOf, not withdrawn.
	type leaf struct{ sector, county string }
	bySource := map[leaf]*[4]int{}
	for _, r := range l.Rows(Query{From: from, To: to, AsOf: asOf}) {
		if r.FoundAt.Before(from) {
			continue // carried over, not found in the period
		}
		k := leaf{r.Sector, r.County}
		if bySource[k] == nil {
			bySource[k] = &[4]int{}
		}
		for i, s := range sourceOrder {
			if r.Source == s {
				bySource[k][i]++
			}
		}
	}
	t := Table{From: from, To: to, AsOf: res.AsOf}
	for _, row := range res.Rows {
		sr := StatRow{Key: row.Key, Sector: row.Sector, SectorZh: row.SectorZh, SectorEn: row.SectorEn, Region: row.Region,
			RegionZh: row.RegionZh, Level: row.Level, Counts: row.Counts}
		if p := row.Period; p != nil {
			sr.Found, sr.FoundMajor, sr.FoundGeneral = p.Found, p.FoundMajor, p.Found-p.FoundMajor
			sr.Cleared, sr.ClearedOnTime, sr.MajorDue, sr.MajorClearedOnTime = p.Cleared, p.ClearedOnTime, p.MajorDue, p.MajorClearedOnTime
			sr.DynamicZeroRate = p.DynamicZeroRate
		}
		for k, v := range bySource {
			if (row.Sector == status.AllSectors || row.Sector == k.sector) && l.cat.Contains(row.Region, k.county) {
				for i := range v {
					sr.BySource[i] += v[i]
				}
			}
		}
		t.Rows = append(t.Rows, sr)
	}
	return t, nil
}

// QuarterlyHeader is the table's column headings (隐患排查治理情况季度统计表).
var QuarterlyHeader = []string{
	"行政区划代码", "地区", "层级", "行业领域", "行业代码",
	"本期排查隐患", "其中一般隐患", "其中重大隐患",
	"执法检查发现", "企业自查发现", "第三方服务发现", "举报发现",
	"本期发现已整改销号", "其中按期整改", "重大隐患应销号", "重大隐患按期销号", "动态清零率",
	"未销号隐患", "其中重大", "逾期未整改", "其中重大逾期", "待验收", "验收超期",
	"挂牌督办未销号", "挂牌督办逾期", "存量隐患", "增量隐患", "存量重大隐患", "是否清零", "存量重大是否清零",
}

// LevelZh of a row's level.
func RowLevelZh(level string) string {
	switch level {
	case status.LevelProvince:
		return "省"
	case status.LevelPrefecture:
		return "州市"
	case status.LevelCounty:
		return "县（市、区）"
	}
	return level
}

// Values are the row's figures under QuarterlyHeader from column 5 on (numbers; the rate is
// a fraction or nil).
func (r *StatRow) Values() []any {
	yes := func(b bool) any {
		if b {
			return "是"
		}
		return "否"
	}
	var rate any
	if r.DynamicZeroRate != nil {
		rate = *r.DynamicZeroRate
	}
	return []any{
		r.Found, r.FoundGeneral, r.FoundMajor,
		r.BySource[0], r.BySource[1], r.BySource[2], r.BySource[3],
		r.Cleared, r.ClearedOnTime, r.MajorDue, r.MajorClearedOnTime, rate,
		r.Open, r.OpenMajor, r.Overdue, r.OverdueMajor, r.AwaitingVerification, r.VerificationOverdue,
		r.Listed, r.ListedOverdue, r.Stock, r.Increment, r.StockMajor, yes(r.Counts.Zeroed()), yes(r.Counts.StockZeroed()),
	}
}

// Labels are the row's first five cells.
func (r *StatRow) Labels() []string {
	return []string{r.Region, r.RegionZh, RowLevelZh(r.Level), r.SectorZh, r.Sector}
}

var quarterRe = regexp.MustCompile(`^(\d{4})[Qq]([1-4])$`) // compiled once; read-only

// ParseQuarter reads "2025Q1" as [2025-01-01, 2025-04-01) in Asia/Shanghai.
func ParseQuarter(s string) (from, to time.Time, err error) {
	m := quarterRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return time.Time{}, time.Time{}, events.Errorf(events.KindInvalid, "invalid_quarter", "quarter", "quarter must look like 2025Q1, not %q", s)
	}
	y, _ := strconv.Atoi(m[1])
	q, _ := strconv.Atoi(m[2])
	from = time.Date(y, time.Month(3*(q-1)+1), 1, 0, 0, 0, 0, events.Shanghai)
	return from, from.AddDate(0, 3, 0), nil
}

// ParseDay reads a date (the start of that day in Asia/Shanghai) or an RFC 3339 instant.
func ParseDay(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation("2006-01-02", s, events.Shanghai); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, events.Errorf(events.KindInvalid, "invalid_"+field, field, "%s must be a date (2025-04-01) or an RFC 3339 time, not %q", field, s)
}

// Period resolves the report period from a quarter, or from/to (to is exclusive; a date as
// to means the start of that day, so "--from 2025-01-01 --to 2025-04-01" is 2025Q1).
func Period(quarter, from, to string) (time.Time, time.Time, error) {
	if quarter != "" {
		if from != "" || to != "" {
			return time.Time{}, time.Time{}, events.Errorf(events.KindInvalid, "invalid_period", "quarter", "give a quarter or from/to, not both")
		}
		return ParseQuarter(quarter)
	}
	if from == "" || to == "" {
		return time.Time{}, time.Time{}, events.Errorf(events.KindInvalid, "invalid_period", "from", "give a quarter (2025Q1) or both from and to")
	}
	f, err := ParseDay("from", from)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	t, err := ParseDay("to", to)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, events.Errorf(events.KindInvalid, "invalid_period", "to", "to %s is not after from %s", to, from)
	}
	return f, t, nil
}

// PeriodLabel names a period for titles and file names: 2025Q1 or 2025-01-01_2025-03-31.
func PeriodLabel(from, to time.Time) string {
	f, t := from.In(events.Shanghai), to.In(events.Shanghai)
	if f.Day() == 1 && f.Hour() == 0 && f.Minute() == 0 && (f.Month()-1)%3 == 0 && t.Equal(f.AddDate(0, 3, 0)) {
		return fmt.Sprintf("%dQ%d", f.Year(), (f.Month()-1)/3+1)
	}
	return f.Format("2006-01-02") + "_" + t.Add(-time.Nanosecond).Format("2006-01-02")
}
