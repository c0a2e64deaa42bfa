// Package ledger builds the statutory reports from the events: the hazard ledger (隐患台账,
// one row per hazard) and the quarterly statistics table (per region and sector), both as of
// an instant, as pure functions of the log.
package ledger

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"qingling/events"
)

// Ledger keeps every hazard's events in the compact form the reports need. It is a
// projections.Projection: feed it the log in stream order with ApplyEvent.
type Ledger struct {
	cat *events.Catalog

	mu  sync.Mutex
	hz  map[string]*hazard
	ord []*hazard
}

type hazard struct {
	id  string
	evs []rec
}

// rec is one event without its bytes.
type rec struct {
	seq      uint64
	time     time.Time
	occurred time.Time
	actor    string
	typ      string
	p        any
}

// New returns an empty ledger.
func New(cat *events.Catalog) *Ledger { return &Ledger{cat: cat, hz: map[string]*hazard{}} }

// ApplyEvent folds one stored event (projections.Projection). A hazard begins with its report.
func (l *Ledger) ApplyEvent(seq uint64, e *events.Event, p any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hz[e.Subject]
	if h == nil {
		if _, ok := p.(*events.Reported); !ok {
			return
		}
		h = &hazard{id: e.Subject}
		l.hz[e.Subject] = h
		l.ord = append(l.ord, h)
	}
	if n := len(h.evs); n > 0 && h.evs[n-1].seq >= seq {
		return
	}
	h.evs = append(h.evs, rec{seq: seq, time: e.Time, occurred: e.OccurredAt, actor: e.Actor, typ: e.Type, p: p})
}

// Row is one hazard of the ledger, as of an instant.
type Row struct {
	ID            string
	Sector        string
	SectorZh      string
	Province      string
	ProvinceZh    string
	Prefecture    string
	PrefectureZh  string
	County        string
	CountyZh      string
	SiteName      string
	SiteKey       string
	Grade         string
	Criterion     string
	CriterionZh   string
	Description   string
	Source        string
	FoundAt       time.Time
	RecordedAt    time.Time
	Deadline      time.Time
	Responsible   string
	Status        events.Status
	Listed        bool
	ListLevel     string
	ListAuthority string
	ListDocument  string
	ListDeadline  time.Time
	Extensions    int
	Rejections    int
	CompletedAt   time.Time // occurredat of the completion that was accepted (or the last one)
	ClearedAt     time.Time // occurredat of the clear-to-zero (验收销号)
	ClearedOnTime bool
	Overdue       bool
	ReportedBy    string
	ClearedBy     string
	State         events.Hazard // the state as of the instant (for scope checks)
}

// Query selects the ledger's rows.
type Query struct {
	Sector string // "" = every sector
	Region string // any level; "" = everywhere
	// The period [From, To): a row is every hazard found before To that was found in the
	// period or was still open at From (carried over, 上期结转). From zero = since the start.
	From, To time.Time
	// AsOf: the rows show each hazard as recorded by this instant (default: To − 1 ns).
	AsOf time.Time
	// Keep, when set, drops hazards the reader may not read.
	Keep func(h *events.Hazard) bool
}

// Rows returns the ledger for q, sorted by county, found time and id. Withdrawn hazards are
// left out (they are excluded from every count).
func (l *Ledger) Rows(q Query) []Row {
	at := q.AsOf
	if at.IsZero() && !q.To.IsZero() {
		at = q.To.Add(-time.Nanosecond)
	}
	l.mu.Lock()
	list := append([]*hazard(nil), l.ord...)
	l.mu.Unlock()
	var out []Row
	for _, h := range list {
		r, ok := l.row(h, at)
		if !ok || r.Status == events.StatusWithdrawn {
			continue
		}
		if q.Sector != "" && r.Sector != q.Sector {
			continue
		}
		if q.Region != "" && !l.cat.Contains(q.Region, r.County) {
			continue
		}
		if !q.To.IsZero() && !r.FoundAt.Before(q.To) {
			continue
		}
		if !q.From.IsZero() && r.FoundAt.Before(q.From) {
			// carried over only when still open at the start of the period
			if prev, ok := l.row(h, q.From.Add(-time.Nanosecond)); !ok || !prev.Status.Open() {
				continue
			}
		}
		if q.Keep != nil && !q.Keep(&r.State) {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.County != b.County {
			return a.County < b.County
		}
		if !a.FoundAt.Equal(b.FoundAt) {
			return a.FoundAt.Before(b.FoundAt)
		}
		return a.ID < b.ID
	})
	return out
}

// row folds a hazard's events recorded by at (zero: all of them).
func (l *Ledger) row(hz *hazard, at time.Time) (Row, bool) {
	var h *events.Hazard
	var r Row
	for i := range hz.evs {
		ev := &hz.evs[i]
		if !at.IsZero() && ev.time.After(at) {
			continue // as recorded by at: filtered on record time, not cut at the first later one
		}
		e := events.Event{ID: "", Type: ev.typ, Subject: hz.id, Time: ev.time, OccurredAt: ev.occurred, Actor: ev.actor}
		nh, err := events.Evolve(l.cat, h, &e, ev.p, nil, ev.seq)
		if err != nil {
			continue
		}
		h = nh
		switch p := ev.p.(type) {
		case *events.Reported:
			r.Description, r.SiteName = p.Description, p.Site.Name
		case *events.Amended:
			if p.Description != nil {
				r.Description = *p.Description
			}
			if p.Site != nil {
				r.SiteName = p.Site.Name
			}
		case *events.Listed:
			r.ListAuthority, r.ListDocument = p.Authority, p.Document
		case *events.Graded:
			if p.Grade != events.GradeMajor {
				r.ListAuthority, r.ListDocument = "", ""
			}
		case *events.Planned:
			if p.Responsible != "" {
				r.Responsible = p.Responsible
			}
		case *events.Extended:
			r.Extensions++
		case *events.Cleared:
			r.ClearedAt = ev.occurred
		case *events.Reopened:
			r.ClearedAt, r.Responsible = time.Time{}, ""
		}
	}
	if h == nil {
		return Row{}, false
	}
	cat := l.cat
	r.ID, r.Sector, r.County, r.Prefecture, r.Province = h.ID, h.Sector, h.Region, h.Prefecture, h.Province
	if s, ok := cat.Sector(h.Sector); ok {
		r.SectorZh = s.NameZh
	}
	for code, dst := range map[string]*string{h.Province: &r.ProvinceZh, h.Prefecture: &r.PrefectureZh, h.Region: &r.CountyZh} {
		if g, ok := cat.Region(code); ok {
			*dst = g.NameZh
		}
	}
	r.SiteKey, r.Grade, r.Criterion, r.Source = h.SiteKey, h.Grade, h.Criterion, h.Source
	if k, ok := cat.Criterion(h.Criterion); ok {
		r.CriterionZh = k.SubjectZh
	}
	r.FoundAt, r.RecordedAt, r.Deadline, r.Status = h.FoundAt.Time(), h.RecordedAt.Time(), h.Deadline(), h.Status
	r.Listed, r.ListLevel, r.ListDeadline = h.Listed, h.ListLevel, h.ListDeadline.Time()
	if !h.Listed {
		r.ListAuthority, r.ListDocument = "", ""
	}
	r.Rejections, r.CompletedAt, r.ClearedOnTime = h.Rejections, h.CompletedAt.Time(), h.Status == events.StatusCleared && h.OnTime
	if h.Status != events.StatusCleared {
		r.ClearedAt = time.Time{}
	}
	asOf := at
	if asOf.IsZero() {
		asOf = time.Now()
	}
	r.Overdue = h.Overdue(asOf)
	r.ReportedBy, r.ClearedBy = h.ReportedBy, h.ClearedBy
	r.State = *h
	return r, true
}

// Labels in Chinese, as the statutory forms use them.

// StatusZh names a status.
func StatusZh(s events.Status) string {
	switch s {
	case events.StatusReported:
		return "待整改"
	case events.StatusPlanned:
		return "已制定方案"
	case events.StatusRectifying:
		return "整改中"
	case events.StatusAwaiting:
		return "待验收"
	case events.StatusCleared:
		return "已销号"
	case events.StatusWithdrawn:
		return "已撤销"
	}
	return string(s)
}

// GradeZh names a grade.
func GradeZh(g string) string {
	switch g {
	case events.GradeMajor:
		return "重大"
	case events.GradeGeneral:
		return "一般"
	}
	return g
}

// SourceZh names a source of a finding.
func SourceZh(s string) string {
	switch s {
	case "inspection":
		return "执法检查"
	case "self-check":
		return "企业自查"
	case "third-party":
		return "第三方服务"
	case "tip-off":
		return "举报"
	}
	return s
}

// LevelZh names a listing level.
func LevelZh(l string) string {
	switch l {
	case "province":
		return "省级"
	case "prefecture":
		return "州市级"
	case "county":
		return "县级"
	}
	return l
}

// TimeZh writes an instant as the forms do (Asia/Shanghai, to the minute); zero is empty.
func TimeZh(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(events.Shanghai).Format("2006-01-02 15:04")
}

// DateZh writes a deadline: the date alone when it is the end of a day.
func DateZh(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	s := t.In(events.Shanghai)
	if s.Hour() == 23 && s.Minute() == 59 && s.Second() == 59 {
		return s.Format("2006-01-02")
	}
	return s.Format("2006-01-02 15:04")
}

// LedgerHeader is the ledger's column headings (隐患台账).
var LedgerHeader = []string{
	"序号", "隐患编号", "行业领域", "州市", "县（市、区）", "行政区划代码", "单位/场所", "统一社会信用代码/场所编号",
	"隐患等级", "判定依据", "隐患描述", "来源", "发现时间", "登记时间", "整改期限", "整改责任人", "整改状态",
	"挂牌督办", "督办文号", "督办期限", "延期次数", "验收不合格次数", "完成时间", "验收销号时间", "是否按期",
}

// Cells are the row's cells under LedgerHeader (n is its 1-based number).
func (r *Row) Cells(n int) []string {
	criterion := ""
	if r.Criterion != "" {
		criterion = strings.TrimSpace(r.Criterion + " " + r.CriterionZh)
	}
	listed, doc := "否", ""
	if r.Listed {
		listed = LevelZh(r.ListLevel) + "挂牌督办"
		doc = strings.TrimSpace(r.ListAuthority + " " + r.ListDocument)
	}
	onTime := ""
	switch {
	case r.Status == events.StatusCleared && r.ClearedOnTime:
		onTime = "是"
	case r.Status == events.StatusCleared:
		onTime = "否"
	case r.Overdue:
		onTime = "否（逾期未整改）"
	}
	return []string{
		itoa(n), r.ID, r.SectorZh, r.PrefectureZh, r.CountyZh, r.County, r.SiteName, r.SiteKey,
		GradeZh(r.Grade), criterion, r.Description, SourceZh(r.Source), TimeZh(r.FoundAt), TimeZh(r.RecordedAt),
		DateZh(r.Deadline), r.Responsible, StatusZh(r.Status), listed, doc, DateZh(r.ListDeadline),
		itoa(r.Extensions), itoa(r.Rejections), TimeZh(r.CompletedAt), TimeZh(r.ClearedAt), onTime,
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
