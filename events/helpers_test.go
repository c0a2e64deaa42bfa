package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"qingling/events"
)

// t0 is the fixed clock every test starts from.
var t0 = time.Date(2025, 3, 10, 10, 0, 0, 0, events.Shanghai)

// absentID names a hazard that was never reported.
const absentID = "0193f2c4-0000-7000-8000-000000000001"

// Actors used throughout: the reporting inspector, the site's rectifier, a verifier.
const (
	inspector = "insp-1"
	rectifier = "rect-1"
	verifier  = "ver-1"
)

var (
	catOnce sync.Once
	catVal  *events.Catalog
	catErr  error
)

// catalog loads the embedded catalog once; it is read-only after load.
func catalog(tb testing.TB) *events.Catalog {
	tb.Helper()
	catOnce.Do(func() { catVal, catErr = events.LoadCatalog() })
	if catErr != nil {
		tb.Fatalf("LoadCatalog: %v", catErr)
	}
	return catVal
}

// world drives one hazard through real DecodeCommand → ResolveIDs → Decide → Marshal →
// ParseEvent → Evolve round trips, with an injected clock.
type world struct {
	tb   testing.TB
	cat  *events.Catalog
	id   string // hazard id (absentID before the report)
	h    *events.Hazard
	now  time.Time
	seq  uint64
	n    int
	raws [][]byte
	evs  []*events.Event
}

func newWorld(tb testing.TB) *world {
	return &world{tb: tb, cat: catalog(tb), id: absentID, now: t0}
}

func (w *world) nextCommandID() string {
	w.n++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", w.n)
}

// try decodes and decides a command at w.now without applying it.
func (w *world) try(action, actor, body string) (*events.Command, *events.Event, error) {
	w.tb.Helper()
	hid := w.id
	if action == events.ActReport {
		hid = ""
	}
	cmd, err := events.DecodeCommand(action, hid, []byte(body))
	if err != nil {
		return nil, nil, err
	}
	cmd.Actor = events.Actor{ID: actor, Role: roleOf(actor)}
	if cmd.CommandID == "" {
		cmd.CommandID = w.nextCommandID()
	}
	events.ResolveIDs(cmd)
	e, err := events.Decide(w.cat, w.h, cmd, w.now, events.DefaultSource)
	if err == nil && e == nil {
		w.tb.Fatalf("%s: Decide returned neither event nor error", action)
	}
	if err != nil && e != nil {
		w.tb.Fatalf("%s: Decide returned both an event and %v", action, err)
	}
	return cmd, e, err
}

// apply stores e the way the event store does (Marshal), reads it back (ParseEvent,
// Payload) and evolves the state from the stored bytes; the clock then moves on an hour.
func (w *world) apply(e *events.Event) {
	w.tb.Helper()
	raw, err := e.Marshal()
	if err != nil {
		w.tb.Fatalf("Marshal: %v", err)
	}
	stored, err := events.ParseEvent(raw)
	if err != nil {
		w.tb.Fatalf("ParseEvent(%s): %v", raw, err)
	}
	p, err := stored.Payload()
	if err != nil {
		w.tb.Fatalf("Payload: %v", err)
	}
	w.seq++
	prevVersion := 0
	if w.h != nil {
		prevVersion = w.h.Version
	}
	h, err := events.Evolve(w.cat, w.h, stored, p, raw, w.seq)
	if err != nil {
		w.tb.Fatalf("Evolve %s: %v", stored.Type, err)
	}
	if h.Version != prevVersion+1 || h.Seq != w.seq {
		w.tb.Fatalf("Evolve %s: version %d seq %d, want %d and %d", stored.Type, h.Version, h.Seq, prevVersion+1, w.seq)
	}
	w.h, w.id = h, h.ID
	w.raws = append(w.raws, raw)
	w.evs = append(w.evs, stored)
	w.now = w.now.Add(time.Hour)
}

// do runs a command that must be accepted.
func (w *world) do(action, actor, body string) *events.Event {
	w.tb.Helper()
	_, e, err := w.try(action, actor, body)
	if err != nil {
		w.tb.Fatalf("%s %s by %s: unexpected error %v", action, body, actor, err)
	}
	w.apply(e)
	return e
}

// refuse runs a command that must be refused and checks the state did not move.
func (w *world) refuse(action, actor, body string) *events.Error {
	w.tb.Helper()
	var before events.Hazard
	if w.h != nil {
		before = *w.h
	}
	_, e, err := w.try(action, actor, body)
	if err == nil {
		w.tb.Fatalf("%s %s by %s: accepted (event %s), want a refusal", action, body, actor, e.Type)
	}
	if w.h != nil && (w.h.Version != before.Version || w.h.Status != before.Status) {
		w.tb.Fatalf("%s: a refused command changed the state", action)
	}
	var ee *events.Error
	if !errors.As(err, &ee) {
		w.tb.Fatalf("%s: error %T %v is not an *events.Error", action, err, err)
	}
	return ee
}

func roleOf(actor string) string {
	switch {
	case strings.HasPrefix(actor, "insp"):
		return "inspector"
	case strings.HasPrefix(actor, "rect"):
		return "rectifier"
	}
	return "verifier"
}

// Bodies of well-formed commands.
const (
	reportGeneral = `{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司"},"grade":"general",` +
		`"description":"储罐区防火堤破损","source":"inspection","deadline":"2025-04-30"}`
	reportMajor = `{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司"},"grade":"major","criterion":"chem-2017-05",` +
		`"description":"一级重大危险源罐区未实现紧急切断功能","source":"inspection","deadline":"2025-04-30",` +
		`"location":{"lat":24.92,"lon":102.48}}`
	planFull     = `{"responsible":"张三","measures":"修复防火堤","funds":"5万元","deadline":"2025-04-20","contingency":"应急预案已备案"}`
	bodyProgress = `{"note":"已完成一半","percent":50}`
	bodyComplete = `{"note":"整改完成"}`
	bodyReject   = `{"reason":"验收不合格"}`
	bodyClear    = `{"method":"on-site","note":"现场核查合格"}`
	bodyReopen   = `{"reason":"复查再次发现"}`
	bodyWithdraw = `{"reason":"录入错误"}`
	bodyAmend    = `{"description":"储罐区东侧防火堤破损"}`
	bodyExtend   = `{"deadline":"2025-12-31","reason":"设备采购周期长"}`
	bodyList     = `{"level":"prefecture","authority":"昆明市应急管理局","document":"昆安办〔2025〕3号","deadline":"2025-05-31"}`
	gradeToMajor = `{"grade":"major","criterion":"chem-2017-05","reason":"复核为重大隐患"}`
	gradeToGen   = `{"grade":"general","reason":"复核为一般隐患"}`
)

func reportBody(grade string) string {
	if grade == events.GradeMajor {
		return reportMajor
	}
	return reportGeneral
}

// withFields returns body (a JSON object) with fields set (nil deletes a field).
func withFields(tb testing.TB, body string, fields map[string]any) string {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		tb.Fatalf("withFields: %v", err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("withFields: %v", err)
	}
	return string(b)
}

// build brings a hazard of grade into status ("" = not reported) through real commands.
func build(tb testing.TB, status events.Status, grade string) *world {
	tb.Helper()
	w := newWorld(tb)
	if status == "" {
		return w
	}
	w.do(events.ActReport, inspector, reportBody(grade))
	steps := map[events.Status][]string{
		events.StatusReported:   nil,
		events.StatusPlanned:    {events.ActPlan},
		events.StatusRectifying: {events.ActPlan, events.ActProgress},
		events.StatusAwaiting:   {events.ActPlan, events.ActProgress, events.ActComplete},
		events.StatusCleared:    {events.ActPlan, events.ActProgress, events.ActComplete, events.ActClear},
		events.StatusWithdrawn:  {events.ActWithdraw},
	}
	list, ok := steps[status]
	if !ok {
		tb.Fatalf("build: unknown status %q", status)
	}
	for _, a := range list {
		w.do(a, actorFor(a), defaultBody(w, a, grade))
	}
	if w.h.Status != status || w.h.Grade != grade {
		tb.Fatalf("build: got %s %s, want %s %s", w.h.Grade, w.h.Status, grade, status)
	}
	return w
}

func actorFor(action string) string {
	switch action {
	case events.ActReport, events.ActAmend, events.ActWithdraw:
		return inspector
	case events.ActPlan, events.ActProgress, events.ActComplete:
		return rectifier
	}
	return verifier
}

// defaultBody is an acceptable body for action on a hazard of grade, as far as the body goes.
func defaultBody(w *world, action, grade string) string {
	switch action {
	case events.ActReport:
		if w.h != nil {
			return withFields(w.tb, reportBody(grade), map[string]any{"id": w.id})
		}
		return reportBody(grade)
	case events.ActAmend:
		return bodyAmend
	case events.ActGrade:
		if grade == events.GradeMajor {
			return gradeToGen
		}
		return gradeToMajor
	case events.ActList:
		return bodyList
	case events.ActPlan:
		return planFull
	case events.ActProgress:
		return bodyProgress
	case events.ActExtend:
		return bodyExtend
	case events.ActComplete:
		return bodyComplete
	case events.ActReject:
		return bodyReject
	case events.ActClear:
		return bodyClear
	case events.ActReopen:
		return bodyReopen
	case events.ActWithdraw:
		return bodyWithdraw
	}
	w.tb.Fatalf("defaultBody: unknown action %q", action)
	return ""
}

var kindNames = map[events.Kind]string{
	events.KindInternal: "internal", events.KindInvalid: "invalid", events.KindUnauthenticated: "unauthenticated",
	events.KindForbidden: "forbidden", events.KindNotFound: "not_found", events.KindConflict: "conflict",
	events.KindTooLarge: "too_large", events.KindRule: "rule", events.KindRateLimited: "rate_limited",
	events.KindUnavailable: "unavailable",
}

// wantErr checks err is an *events.Error of kind and code, and of field unless field is "*".
func wantErr(tb testing.TB, err error, kind events.Kind, code, field string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %s %q", kindNames[kind], code)
	}
	var e *events.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %T %v is not an *events.Error", err, err)
	}
	if e.Kind != kind || e.Code != code || (field != "*" && e.Field != field) {
		tb.Fatalf("got %s %q field %q (%s), want %s %q field %q", kindNames[e.Kind], e.Code, e.Field, e.Message, kindNames[kind], code, field)
	}
	if e.Message == "" {
		tb.Fatalf("error %q has no message", e.Code)
	}
}

// endOfDay is 23:59:59.999999999 in Asia/Shanghai on the given day.
func endOfDay(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 23, 59, 59, 999999999, events.Shanghai)
}

// uscc completes 17 characters to a unified social credit code with the GB 32100-2015 check
// character, computed independently of the code under test.
func uscc(tb testing.TB, first17 string) string {
	tb.Helper()
	const chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	if len(first17) != 17 {
		tb.Fatalf("uscc: %q is not 17 characters", first17)
	}
	sum, w := 0, 1
	for i := 0; i < 17; i++ {
		v := strings.IndexByte(chars, first17[i])
		if v < 0 {
			tb.Fatalf("uscc: %q is not a USCC character", first17[i])
		}
		sum += v * w
		w = w * 3 % 31
	}
	return first17 + string(chars[(31-sum%31)%31])
}

func statusName(s events.Status) string {
	if s == "" {
		return "none"
	}
	return string(s)
}

var allStatuses = []events.Status{"", events.StatusReported, events.StatusPlanned, events.StatusRectifying,
	events.StatusAwaiting, events.StatusCleared, events.StatusWithdrawn}

var openStatuses = slices.DeleteFunc(slices.Clone(allStatuses), func(s events.Status) bool { return !s.Open() })
