package events_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"qingling/events"
)

// Cell outcomes of the lifecycle table.
const (
	notFound  = "404"   // KindNotFound hazard_not_found (no such hazard)
	exists    = "409"   // KindConflict hazard_exists (a report on an existing hazard)
	refused   = "x"     // KindRule invalid_transition
	majorOnly = "major" // KindRule list_requires_major
	unchanged = "="     // accepted, status unchanged
)

// lifecycle is design.md's lifecycle table, one cell per action × grade × status. Columns
// follow allStatuses: none, reported, planned, rectifying, awaiting_verification, cleared,
// withdrawn. A cell names the resulting status or one of the refusals above.
var lifecycle = func() []struct {
	action         string
	general, major [7]string
} {
	const (
		R = string(events.StatusReported)
		P = string(events.StatusPlanned)
		F = string(events.StatusRectifying)
		A = string(events.StatusAwaiting)
		C = string(events.StatusCleared)
		W = string(events.StatusWithdrawn)
	)
	return []struct {
		action         string
		general, major [7]string
	}{
		{events.ActReport, [7]string{R, exists, exists, exists, exists, exists, exists}, [7]string{R, exists, exists, exists, exists, exists, exists}},
		{events.ActAmend, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}},
		{events.ActGrade, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}},
		{events.ActList, [7]string{notFound, majorOnly, majorOnly, majorOnly, majorOnly, refused, refused}, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}},
		{events.ActPlan, [7]string{notFound, P, P, F, refused, refused, refused}, [7]string{notFound, P, P, F, refused, refused, refused}},
		{events.ActProgress, [7]string{notFound, F, F, F, refused, refused, refused}, [7]string{notFound, refused, F, F, refused, refused, refused}},
		{events.ActExtend, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}, [7]string{notFound, unchanged, unchanged, unchanged, unchanged, refused, refused}},
		{events.ActComplete, [7]string{notFound, A, A, A, refused, refused, refused}, [7]string{notFound, refused, A, A, refused, refused, refused}},
		{events.ActReject, [7]string{notFound, refused, refused, refused, F, refused, refused}, [7]string{notFound, refused, refused, refused, F, refused, refused}},
		{events.ActClear, [7]string{notFound, refused, refused, refused, C, refused, refused}, [7]string{notFound, refused, refused, refused, C, refused, refused}},
		{events.ActReopen, [7]string{notFound, refused, refused, refused, refused, R, refused}, [7]string{notFound, refused, refused, refused, refused, R, refused}},
		{events.ActWithdraw, [7]string{notFound, W, W, W, W, W, refused}, [7]string{notFound, W, W, W, W, W, refused}},
	}
}()

// lifecycleCell looks up the table; for an accepted cell it gives the resulting status.
func lifecycleCell(action, grade string, from events.Status) (cell string, to events.Status, accepted bool) {
	i := slices.Index(allStatuses, from)
	for _, row := range lifecycle {
		if row.action != action || i < 0 {
			continue
		}
		cell = row.general[i]
		if grade == events.GradeMajor {
			cell = row.major[i]
		}
		switch cell {
		case notFound, exists, refused, majorOnly:
			return cell, "", false
		case unchanged:
			return cell, from, true
		}
		return cell, events.Status(cell), true
	}
	return "", "", false
}

// TestLifecycleTable checks every cell of design.md's lifecycle table: each action from each
// status (none = not reported) for each grade, with the state built by real commands.
func TestLifecycleTable(t *testing.T) {
	rows := lifecycle
	var covered []string
	cells := 0
	for _, row := range rows {
		covered = append(covered, row.action)
		for _, grade := range []string{events.GradeGeneral, events.GradeMajor} {
			want := row.general
			if grade == events.GradeMajor {
				want = row.major
			}
			for i, from := range allStatuses {
				cell := want[i]
				cells++
				t.Run(fmt.Sprintf("%s/%s/%s", row.action, grade, statusName(from)), func(t *testing.T) {
					checkCell(t, row.action, grade, from, cell)
				})
			}
		}
	}
	if !slices.Equal(covered, events.Actions) {
		t.Errorf("table covers %v, want every action %v", covered, events.Actions)
	}
	if cells != len(events.Actions)*2*len(allStatuses) {
		t.Errorf("%d cells checked", cells)
	}
}

func checkCell(t *testing.T, action, grade string, from events.Status, cell string) {
	w := build(t, from, grade)
	body := defaultBody(w, action, grade)
	switch cell {
	case notFound:
		wantErr(t, w.refuse(action, actorFor(action), body), events.KindNotFound, "hazard_not_found", "id")
		return
	case exists:
		wantErr(t, w.refuse(action, actorFor(action), body), events.KindConflict, "hazard_exists", "id")
		return
	case refused:
		wantErr(t, w.refuse(action, actorFor(action), body), events.KindRule, "invalid_transition", "status")
		return
	case majorOnly:
		wantErr(t, w.refuse(action, actorFor(action), body), events.KindRule, "list_requires_major", "")
		return
	}
	before := events.Hazard{}
	if w.h != nil {
		before = *w.h
	}
	e := w.do(action, actorFor(action), body)
	if e.Type != events.ActionType(action) || e.Subject != w.id {
		t.Fatalf("event %s on %s, want %s on %s", e.Type, e.Subject, events.ActionType(action), w.id)
	}
	want := events.Status(cell)
	if cell == unchanged {
		want = before.Status
	}
	if w.h.Status != want {
		t.Fatalf("%s from %s: status %s, want %s", action, statusName(from), w.h.Status, want)
	}
	if w.h.Version != before.Version+1 {
		t.Fatalf("version %d, want %d", w.h.Version, before.Version+1)
	}
	switch action {
	case events.ActList:
		if !w.h.Listed || w.h.ListLevel != "prefecture" || w.h.ListDeadline != events.InstantOf(endOfDay(2025, 5, 31)) {
			t.Fatalf("after list: listed %v level %q deadline %v", w.h.Listed, w.h.ListLevel, w.h.ListDeadline)
		}
	case events.ActGrade:
		if w.h.Grade == grade {
			t.Fatalf("grade stayed %s", grade)
		}
	case events.ActExtend:
		if !w.h.Deadline().Equal(endOfDay(2025, 12, 31)) {
			t.Fatalf("deadline after extend = %v", w.h.Deadline())
		}
	case events.ActComplete:
		if w.h.CompletedBy != rectifier || w.h.AwaitingAt.IsZero() {
			t.Fatalf("completed by %q awaiting since %v", w.h.CompletedBy, w.h.AwaitingAt)
		}
	case events.ActClear:
		if w.h.ClearedBy != verifier || w.h.ClearedAt.IsZero() {
			t.Fatalf("cleared by %q at %v", w.h.ClearedBy, w.h.ClearedAt)
		}
	case events.ActReject:
		if w.h.Rejections != 1 {
			t.Fatalf("rejections = %d", w.h.Rejections)
		}
	}
}

func TestPlanMovesReportedOnly(t *testing.T) {
	for _, grade := range []string{events.GradeGeneral, events.GradeMajor} {
		t.Run(grade, func(t *testing.T) {
			w := build(t, events.StatusReported, grade)
			w.do(events.ActPlan, rectifier, planFull)
			if w.h.Status != events.StatusPlanned || !w.h.Planned5 || !w.h.PlanDeadline.Equal(endOfDay(2025, 4, 20)) {
				t.Fatalf("after plan: %s planned5=%v plan deadline %v", w.h.Status, w.h.Planned5, w.h.PlanDeadline)
			}
			w.do(events.ActProgress, rectifier, bodyProgress)
			if w.h.Status != events.StatusRectifying {
				t.Fatalf("after progress: %s", w.h.Status)
			}
			w.do(events.ActPlan, rectifier, withFields(t, planFull, map[string]any{"deadline": "2025-04-25"}))
			if w.h.Status != events.StatusRectifying {
				t.Fatalf("plan on rectifying moved status to %s", w.h.Status)
			}
			if !w.h.Deadline().Equal(endOfDay(2025, 4, 25)) {
				t.Fatalf("revised plan deadline not effective: %v", w.h.Deadline())
			}
		})
	}
}

func TestReopenClearsPlan(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeMajor)
	w.do(events.ActPlan, rectifier, planFull)
	w.do(events.ActExtend, verifier, `{"deadline":"2025-06-30","reason":"采购"}`)
	w.do(events.ActProgress, rectifier, bodyProgress)
	w.do(events.ActComplete, rectifier, bodyComplete)
	w.do(events.ActClear, verifier, bodyClear)
	if !w.h.OnTime {
		t.Fatal("cleared hazard completed before its deadline is not on time")
	}
	w.do(events.ActReopen, verifier, `{"reason":"复查再次发现","deadline":"2025-07-31"}`)
	h := w.h
	if h.Status != events.StatusReported {
		t.Fatalf("reopened status %s", h.Status)
	}
	if !h.PlanDeadline.IsZero() || !h.ExtDeadline.IsZero() || h.Planned5 {
		t.Fatalf("reopen kept the plan: plan %v ext %v planned5 %v", h.PlanDeadline, h.ExtDeadline, h.Planned5)
	}
	if h.CompletedBy != "" || h.ClearedBy != "" || !h.CompletedAt.IsZero() || !h.AwaitingAt.IsZero() || !h.ClearedAt.IsZero() || h.OnTime {
		t.Fatalf("reopen kept completion or clearance: %+v", h)
	}
	if !h.Deadline().Equal(endOfDay(2025, 7, 31)) {
		t.Fatalf("deadline after reopen = %v", h.Deadline())
	}
	// A major hazard needs a new plan before anything else moves.
	wantErr(t, w.refuse(events.ActProgress, rectifier, bodyProgress), events.KindRule, "invalid_transition", "status")
	wantErr(t, w.refuse(events.ActComplete, rectifier, bodyComplete), events.KindRule, "invalid_transition", "status")
	w.do(events.ActPlan, rectifier, withFields(t, planFull, map[string]any{"deadline": "2025-07-15"}))
	if w.h.Status != events.StatusPlanned || !w.h.Planned5 || !w.h.Deadline().Equal(endOfDay(2025, 7, 15)) {
		t.Fatalf("new plan: %s %v %v", w.h.Status, w.h.Planned5, w.h.Deadline())
	}
	w.do(events.ActProgress, rectifier, bodyProgress)
	if w.h.Status != events.StatusRectifying {
		t.Fatalf("progress after new plan: %s", w.h.Status)
	}
}

func TestReopenWithoutDeadlineKeepsReportDeadline(t *testing.T) {
	w := build(t, events.StatusCleared, events.GradeGeneral)
	w.do(events.ActReopen, verifier, bodyReopen)
	if w.h.Status != events.StatusReported || !w.h.Deadline().Equal(endOfDay(2025, 4, 30)) {
		t.Fatalf("reopened: %s, deadline %v", w.h.Status, w.h.Deadline())
	}
	// A general hazard may be worked on again straight away.
	w.do(events.ActComplete, rectifier, bodyComplete)
	if w.h.Status != events.StatusAwaiting {
		t.Fatalf("complete after reopen: %s", w.h.Status)
	}
}

func TestMajorPlanNeedsAllFive(t *testing.T) {
	five := []string{"responsible", "measures", "funds", "deadline", "contingency"}
	for _, missing := range five {
		for _, how := range []string{"absent", "blank"} {
			t.Run(missing+"/"+how, func(t *testing.T) {
				w := build(t, events.StatusReported, events.GradeMajor)
				var v any // nil deletes the field
				if how == "blank" {
					v = "   "
				}
				err := w.refuse(events.ActPlan, rectifier, withFields(t, planFull, map[string]any{missing: v}))
				if how == "blank" && missing == "deadline" {
					// A blank deadline is not a date at all.
					wantErr(t, err, events.KindInvalid, "invalid_deadline", "deadline")
					return
				}
				wantErr(t, err, events.KindRule, "plan_incomplete", missing)
			})
		}
	}
	t.Run("several missing names the first", func(t *testing.T) {
		w := build(t, events.StatusReported, events.GradeMajor)
		err := w.refuse(events.ActPlan, rectifier, `{"measures":"修复"}`)
		wantErr(t, err, events.KindRule, "plan_incomplete", "responsible")
	})
	t.Run("major on rectifying too", func(t *testing.T) {
		w := build(t, events.StatusRectifying, events.GradeMajor)
		wantErr(t, w.refuse(events.ActPlan, rectifier, withFields(t, planFull, map[string]any{"funds": nil})), events.KindRule, "plan_incomplete", "funds")
	})
	t.Run("general needs measures only", func(t *testing.T) {
		w := build(t, events.StatusReported, events.GradeGeneral)
		wantErr(t, w.refuse(events.ActPlan, rectifier, `{"responsible":"张三"}`), events.KindInvalid, "required", "measures")
		w.do(events.ActPlan, rectifier, `{"measures":"修复防火堤"}`)
		if w.h.Status != events.StatusPlanned || w.h.Planned5 {
			t.Fatalf("general plan: %s planned5 %v", w.h.Status, w.h.Planned5)
		}
		if !w.h.Deadline().Equal(endOfDay(2025, 4, 30)) {
			t.Fatalf("plan without deadline changed the deadline to %v", w.h.Deadline())
		}
	})
}

func TestSeparationOfDuties(t *testing.T) {
	cases := []struct {
		name, grade, completer, clearer string
		code                            string // "" = accepted
	}{
		{"general completer", events.GradeGeneral, rectifier, rectifier, "completer_cannot_clear"},
		{"major completer", events.GradeMajor, rectifier, rectifier, "completer_cannot_clear"},
		{"major reporter", events.GradeMajor, rectifier, inspector, "reporter_cannot_clear"},
		{"major reporter who also completed", events.GradeMajor, inspector, inspector, "completer_cannot_clear"},
		{"general reporter", events.GradeGeneral, rectifier, inspector, ""},
		{"general other rectifier", events.GradeGeneral, rectifier, "rect-2", ""},
		{"general verifier", events.GradeGeneral, rectifier, verifier, ""},
		{"major verifier", events.GradeMajor, rectifier, verifier, ""},
		{"general reporter who completed", events.GradeGeneral, inspector, inspector, "completer_cannot_clear"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := build(t, events.StatusRectifying, c.grade)
			w.do(events.ActComplete, c.completer, bodyComplete)
			if w.h.CompletedBy != c.completer || w.h.ReportedBy != inspector {
				t.Fatalf("completed by %q reported by %q", w.h.CompletedBy, w.h.ReportedBy)
			}
			if c.code != "" {
				wantErr(t, w.refuse(events.ActClear, c.clearer, bodyClear), events.KindRule, c.code, "")
				return
			}
			w.do(events.ActClear, c.clearer, bodyClear)
			if w.h.Status != events.StatusCleared || w.h.ClearedBy != c.clearer {
				t.Fatalf("cleared: %s by %q", w.h.Status, w.h.ClearedBy)
			}
		})
	}
	t.Run("after a rejection the new completer is the one barred", func(t *testing.T) {
		w := build(t, events.StatusAwaiting, events.GradeGeneral) // completed by rectifier
		w.do(events.ActReject, verifier, bodyReject)
		w.do(events.ActComplete, "rect-2", bodyComplete)
		wantErr(t, w.refuse(events.ActClear, "rect-2", bodyClear), events.KindRule, "completer_cannot_clear", "")
		w.do(events.ActClear, rectifier, bodyClear)
		if w.h.ClearedBy != rectifier {
			t.Fatalf("cleared by %q", w.h.ClearedBy)
		}
	})
}

func TestExtendMustBeLater(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeGeneral) // report deadline 2025-04-30
	for _, d := range []string{"2025-04-30", "2025-04-29", "2025-04-30T23:59:59.999999999+08:00", "2025-04-30T15:59:59.999999999Z"} {
		wantErr(t, w.refuse(events.ActExtend, verifier, fmt.Sprintf(`{"deadline":%q,"reason":"r"}`, d)), events.KindRule, "deadline_not_later", "")
	}
	w.do(events.ActExtend, verifier, `{"deadline":"2025-05-01T00:00:00+08:00","reason":"r"}`)
	if !w.h.ExtDeadline.Equal(time.Date(2025, 5, 1, 0, 0, 0, 0, events.Shanghai)) {
		t.Fatalf("ext deadline %v", w.h.ExtDeadline)
	}
	// Now compared with the extension, not the report.
	wantErr(t, w.refuse(events.ActExtend, verifier, `{"deadline":"2025-04-30","reason":"r"}`), events.KindRule, "deadline_not_later", "")
	wantErr(t, w.refuse(events.ActExtend, verifier, `{"deadline":"2025-05-15"}`), events.KindInvalid, "required", "reason")
	wantErr(t, w.refuse(events.ActExtend, verifier, `{"reason":"r"}`), events.KindInvalid, "required", "deadline")
	w.do(events.ActExtend, verifier, `{"deadline":"2025-05-15","reason":"r"}`)
	if !w.h.Deadline().Equal(endOfDay(2025, 5, 15)) {
		t.Fatalf("deadline %v", w.h.Deadline())
	}
}

func TestExpectedVersion(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeGeneral)
	for _, v := range []int{2, 7} {
		wantErr(t, w.refuse(events.ActAmend, inspector, fmt.Sprintf(`{"description":"x","expected_version":%d}`, v)), events.KindConflict, "version_conflict", "expected_version")
	}
	w.do(events.ActAmend, inspector, `{"description":"x","expected_version":1}`)
	if w.h.Version != 2 {
		t.Fatalf("version %d", w.h.Version)
	}
	wantErr(t, w.refuse(events.ActAmend, inspector, `{"description":"x","expected_version":1}`), events.KindConflict, "version_conflict", "expected_version")
	w.do(events.ActPlan, rectifier, `{"measures":"m","expected_version":2}`)
	if w.h.Version != 3 || w.h.Status != events.StatusPlanned {
		t.Fatalf("after plan: version %d status %s", w.h.Version, w.h.Status)
	}
	// A version conflict is reported before the lifecycle rule.
	wantErr(t, w.refuse(events.ActClear, verifier, `{"method":"m","expected_version":1}`), events.KindConflict, "version_conflict", "expected_version")
	for _, v := range []string{"0", "-1"} {
		_, err := events.DecodeCommand(events.ActAmend, w.id, []byte(`{"description":"x","expected_version":`+v+`}`))
		wantErr(t, err, events.KindInvalid, "invalid_expected_version", "expected_version")
	}
}

func TestGradeRules(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeGeneral)
	cases := []struct {
		body      string
		kind      events.Kind
		code, fld string
	}{
		{`{"grade":"major","reason":"r"}`, events.KindInvalid, "criterion_required", "criterion"},
		{`{"grade":"major","criterion":"mine-tp-02","reason":"r"}`, events.KindInvalid, "criterion_sector", "criterion"},
		{`{"grade":"major","criterion":"chem-2099-01","reason":"r"}`, events.KindInvalid, "unknown_criterion", "criterion"},
		{`{"grade":"grave","criterion":"chem-2017-05","reason":"r"}`, events.KindInvalid, "invalid_grade", "grade"},
		{`{"grade":"major","criterion":"chem-2017-05"}`, events.KindInvalid, "required", "reason"},
		{`{"grade":"general","reason":"r"}`, events.KindRule, "grade_unchanged", ""},
	}
	for _, c := range cases {
		wantErr(t, w.refuse(events.ActGrade, verifier, c.body), c.kind, c.code, c.fld)
	}
	w.do(events.ActGrade, verifier, gradeToMajor)
	if w.h.Grade != events.GradeMajor || w.h.Criterion != "chem-2017-05" {
		t.Fatalf("graded: %s %s", w.h.Grade, w.h.Criterion)
	}
	wantErr(t, w.refuse(events.ActGrade, verifier, gradeToMajor), events.KindRule, "grade_unchanged", "")
	w.do(events.ActGrade, verifier, `{"grade":"major","criterion":"chem-2017-01","reason":"另一条"}`)
	if w.h.Criterion != "chem-2017-01" {
		t.Fatalf("criterion change: %s", w.h.Criterion)
	}
	w.do(events.ActList, verifier, bodyList)
	if !w.h.Listed {
		t.Fatal("not listed")
	}
	w.do(events.ActGrade, verifier, gradeToGen)
	if w.h.Grade != events.GradeGeneral || w.h.Criterion != "" || w.h.Listed || w.h.ListLevel != "" || !w.h.ListDeadline.IsZero() {
		t.Fatalf("downgrade kept the listing: %+v", w.h)
	}
	wantErr(t, w.refuse(events.ActList, verifier, bodyList), events.KindRule, "list_requires_major", "")
}

func TestListLevels(t *testing.T) {
	w := build(t, events.StatusPlanned, events.GradeMajor)
	for _, c := range []struct{ body, code, field string }{
		{withFields(t, bodyList, map[string]any{"level": "national"}), "invalid_level", "level"},
		{withFields(t, bodyList, map[string]any{"authority": nil}), "required", "authority"},
		{withFields(t, bodyList, map[string]any{"document": " "}), "required", "document"},
		{withFields(t, bodyList, map[string]any{"deadline": nil}), "required", "deadline"},
		{withFields(t, bodyList, map[string]any{"deadline": "2025-03-01"}), "deadline_before_occurred", "deadline"},
	} {
		wantErr(t, w.refuse(events.ActList, verifier, c.body), events.KindInvalid, c.code, c.field)
	}
	w.do(events.ActList, verifier, withFields(t, bodyList, map[string]any{"level": "county"}))
	wantErr(t, w.refuse(events.ActList, verifier, withFields(t, bodyList, map[string]any{"level": "county"})), events.KindRule, "already_listed", "")
	w.do(events.ActList, verifier, withFields(t, bodyList, map[string]any{"level": "province"}))
	if w.h.ListLevel != "province" {
		t.Fatalf("list level %s", w.h.ListLevel)
	}
	wantErr(t, w.refuse(events.ActList, verifier, bodyList), events.KindRule, "already_listed", "") // prefecture is lower
}

func TestClearedOnTime(t *testing.T) {
	deadline := endOfDay(2025, 4, 30)
	cases := []struct {
		name      string
		extend    string    // optional extension before completion
		completed time.Time // completion occurredat
		clearAt   time.Time // record time of the clearance
		onTime    bool
	}{
		{"early", "", time.Date(2025, 4, 1, 9, 0, 0, 0, events.Shanghai), time.Date(2025, 4, 2, 9, 0, 0, 0, events.Shanghai), true},
		{"at the deadline", "", deadline, deadline.Add(time.Hour), true},
		{"one nanosecond late", "", deadline.Add(time.Nanosecond), deadline.Add(time.Hour), false},
		{"cleared long after an on-time completion", "", deadline.Add(-time.Hour), deadline.AddDate(0, 2, 0), true},
		{"late for the report but within the extension", "2025-05-31", time.Date(2025, 5, 20, 0, 0, 0, 0, events.Shanghai), time.Date(2025, 5, 21, 0, 0, 0, 0, events.Shanghai), true},
		{"late even with the extension", "2025-05-31", endOfDay(2025, 6, 1), endOfDay(2025, 6, 2), false},
		{"UTC completion instant compared as an instant", "", time.Date(2025, 4, 30, 15, 59, 59, 0, time.UTC), deadline.Add(time.Hour), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := build(t, events.StatusReported, events.GradeGeneral)
			if c.extend != "" {
				w.do(events.ActExtend, verifier, fmt.Sprintf(`{"deadline":%q,"reason":"r"}`, c.extend))
			}
			w.now = c.completed.Add(time.Minute) // recorded a minute after it happened
			w.do(events.ActComplete, rectifier, fmt.Sprintf(`{"occurred_at":%q}`, c.completed.Format(time.RFC3339Nano)))
			if !w.h.CompletedAt.Equal(c.completed) {
				t.Fatalf("completed at %v, want %v", w.h.CompletedAt, c.completed)
			}
			if !w.h.AwaitingAt.Equal(c.completed.Add(time.Minute)) {
				t.Fatalf("awaiting since %v: must be the record time", w.h.AwaitingAt)
			}
			w.now = c.clearAt
			w.do(events.ActClear, verifier, bodyClear)
			if w.h.OnTime != c.onTime {
				t.Fatalf("OnTime = %v, want %v (completed %v, deadline %v)", w.h.OnTime, c.onTime, c.completed, w.h.Deadline())
			}
			if !w.h.ClearedAt.Equal(c.clearAt) {
				t.Fatalf("cleared at %v", w.h.ClearedAt)
			}
		})
	}
}

func TestDeadlinePrecedence(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeGeneral)
	if !w.h.Deadline().Equal(endOfDay(2025, 4, 30)) || !w.h.ReportDeadline.Equal(endOfDay(2025, 4, 30)) {
		t.Fatalf("report deadline %v", w.h.Deadline())
	}
	w.do(events.ActPlan, rectifier, `{"measures":"m","deadline":"2025-04-20"}`)
	if !w.h.Deadline().Equal(endOfDay(2025, 4, 20)) {
		t.Fatalf("plan deadline should win over the report's: %v", w.h.Deadline())
	}
	w.do(events.ActPlan, rectifier, `{"measures":"m2"}`)
	if !w.h.Deadline().Equal(endOfDay(2025, 4, 20)) {
		t.Fatalf("a plan revision without a deadline keeps the plan deadline: %v", w.h.Deadline())
	}
	w.do(events.ActExtend, verifier, `{"deadline":"2025-05-31","reason":"r"}`)
	if !w.h.Deadline().Equal(endOfDay(2025, 5, 31)) {
		t.Fatalf("extension should win: %v", w.h.Deadline())
	}
	w.do(events.ActPlan, rectifier, `{"measures":"m3","deadline":"2025-06-30"}`)
	if !w.h.Deadline().Equal(endOfDay(2025, 5, 31)) || !w.h.PlanDeadline.Equal(endOfDay(2025, 6, 30)) {
		t.Fatalf("extension should still win over a later plan: %v (plan %v)", w.h.Deadline(), w.h.PlanDeadline)
	}
	w.do(events.ActExtend, verifier, `{"deadline":"2025-07-31","reason":"r"}`)
	if !w.h.Deadline().Equal(endOfDay(2025, 7, 31)) {
		t.Fatalf("latest extension should win: %v", w.h.Deadline())
	}

	// The method itself, on constructed values.
	i := events.InstantOf
	d1, d2, d3 := endOfDay(2025, 1, 1), endOfDay(2025, 2, 1), endOfDay(2025, 3, 1)
	for _, c := range []struct {
		h    events.Hazard
		want time.Time
	}{
		{events.Hazard{ReportDeadline: i(d1)}, d1},
		{events.Hazard{ReportDeadline: i(d1), PlanDeadline: i(d2)}, d2},
		{events.Hazard{ReportDeadline: i(d1), PlanDeadline: i(d3), ExtDeadline: i(d2)}, d2},
		{events.Hazard{ReportDeadline: i(d3), ExtDeadline: i(d1)}, d1},
		{events.Hazard{}, time.Time{}},
	} {
		if got := c.h.Deadline(); !got.Equal(c.want) {
			t.Errorf("Deadline() = %v, want %v", got, c.want)
		}
	}
}

func TestOverdue(t *testing.T) {
	for _, grade := range []string{events.GradeGeneral, events.GradeMajor} {
		for _, s := range allStatuses[1:] {
			t.Run(grade+"/"+string(s), func(t *testing.T) {
				w := build(t, s, grade)
				d := w.h.Deadline()
				wantD := endOfDay(2025, 4, 30)
				if s != events.StatusReported && s != events.StatusWithdrawn {
					wantD = endOfDay(2025, 4, 20) // the plan's
				}
				if !d.Equal(wantD) {
					t.Fatalf("deadline %v, want %v", d, wantD)
				}
				toRectify := s == events.StatusReported || s == events.StatusPlanned || s == events.StatusRectifying
				if w.h.Overdue(d) || w.h.Overdue(d.Add(-time.Hour)) || w.h.Overdue(t0) {
					t.Fatal("overdue at or before its deadline")
				}
				if got := w.h.Overdue(d.Add(time.Nanosecond)); got != toRectify {
					t.Fatalf("Overdue just after the deadline = %v, want %v", got, toRectify)
				}
				if got := w.h.Overdue(d.AddDate(1, 0, 0)); got != toRectify {
					t.Fatalf("Overdue a year later = %v, want %v", got, toRectify)
				}
			})
		}
	}
	t.Run("extension lifts overdue", func(t *testing.T) {
		w := build(t, events.StatusRectifying, events.GradeGeneral)
		at := endOfDay(2025, 4, 25)
		if !w.h.Overdue(at) {
			t.Fatal("should be overdue after the plan deadline")
		}
		w.do(events.ActExtend, verifier, `{"deadline":"2025-05-31","reason":"r"}`)
		if w.h.Overdue(at) || !w.h.Overdue(endOfDay(2025, 6, 1)) {
			t.Fatal("extension not applied to overdue")
		}
	})
	if (&events.Hazard{Status: events.StatusReported}).Overdue(t0) {
		t.Error("a hazard without any deadline is never overdue")
	}
}

func TestVerificationOverdue(t *testing.T) {
	w := build(t, events.StatusAwaiting, events.GradeMajor)
	since := w.h.AwaitingAt.Time()
	if !since.Equal(w.evs[len(w.evs)-1].Time) {
		t.Fatalf("awaiting since %v, want the completion's record time %v", since, w.evs[len(w.evs)-1].Time)
	}
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{since, false},
		{since.Add(events.VerificationWindow - time.Nanosecond), false},
		{since.Add(events.VerificationWindow), false},
		{since.Add(events.VerificationWindow + time.Nanosecond), true},
		{since.AddDate(0, 1, 0), true},
	} {
		if got := w.h.VerificationOverdue(c.at); got != c.want {
			t.Errorf("VerificationOverdue(since+%v) = %v, want %v", c.at.Sub(since), got, c.want)
		}
	}
	if events.VerificationWindow != 10*24*time.Hour {
		t.Errorf("VerificationWindow = %v, design says 10 days", events.VerificationWindow)
	}
	late := since.AddDate(0, 1, 0)
	w.do(events.ActReject, verifier, bodyReject)
	if w.h.VerificationOverdue(late) {
		t.Error("rejected hazard still verification-overdue")
	}
	for _, s := range []events.Status{events.StatusReported, events.StatusPlanned, events.StatusRectifying, events.StatusCleared, events.StatusWithdrawn} {
		if build(t, s, events.GradeGeneral).h.VerificationOverdue(late) {
			t.Errorf("%s hazard counted verification-overdue", s)
		}
	}
}

func TestListedOverdue(t *testing.T) {
	w := build(t, events.StatusRectifying, events.GradeMajor)
	if w.h.ListedOverdue(endOfDay(2026, 1, 1)) {
		t.Fatal("unlisted hazard listed-overdue")
	}
	w.do(events.ActList, verifier, bodyList) // listing deadline 2025-05-31
	d := endOfDay(2025, 5, 31)
	if w.h.ListedOverdue(d) || !w.h.ListedOverdue(d.Add(time.Nanosecond)) {
		t.Fatal("listed-overdue boundary wrong")
	}
	w.do(events.ActComplete, rectifier, bodyComplete)
	if !w.h.ListedOverdue(d.Add(time.Nanosecond)) {
		t.Fatal("an open listed hazard awaiting verification is still listed-overdue")
	}
	w.do(events.ActClear, verifier, bodyClear)
	if w.h.ListedOverdue(d.Add(time.Nanosecond)) {
		t.Fatal("cleared hazard listed-overdue")
	}
}

func TestWithdrawAndSupersede(t *testing.T) {
	w := build(t, events.StatusRectifying, events.GradeGeneral)
	wantErr(t, w.refuse(events.ActWithdraw, inspector, `{}`), events.KindInvalid, "required", "reason")
	w.do(events.ActWithdraw, inspector, bodyWithdraw)
	old := w.id
	if w.h.Status.Open() {
		t.Fatal("withdrawn hazard counted open")
	}
	n := newWorld(t)
	n.n = 100 // a different command id, so a different hazard id
	n.do(events.ActReport, inspector, withFields(t, reportGeneral, map[string]any{"region": "530102", "supersedes": old}))
	if n.h.Supersedes != old || n.id == old || n.h.Region != "530102" {
		t.Fatalf("supersedes %q id %s region %s", n.h.Supersedes, n.id, n.h.Region)
	}
}

func TestOccurredBeforeFound(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeGeneral)
	err := w.refuse(events.ActAmend, inspector, fmt.Sprintf(`{"description":"x","occurred_at":%q}`, t0.Add(-time.Second).Format(time.RFC3339)))
	wantErr(t, err, events.KindInvalid, "invalid_occurred_at", "occurred_at")
	w.do(events.ActAmend, inspector, fmt.Sprintf(`{"description":"x","occurred_at":%q}`, t0.Format(time.RFC3339)))
}

func TestEvolveRefusesBrokenLogs(t *testing.T) {
	cat := catalog(t)
	w := build(t, events.StatusReported, events.GradeGeneral)
	report, raw := w.evs[0], w.raws[0]
	p, _ := report.Payload()

	// The first event must be a report.
	amend := *report
	amend.Type = events.TypeAmended
	if _, err := events.Evolve(cat, nil, &amend, &events.Amended{}, raw, 1); err == nil {
		t.Error("Evolve accepted a first event that is not a report")
	}
	// A second report on the same hazard.
	h := *w.h
	if _, err := events.Evolve(cat, &h, report, p, raw, 2); err == nil {
		t.Error("Evolve accepted a second report")
	}
	// An unknown payload.
	h = *w.h
	if _, err := events.Evolve(cat, &h, report, struct{}{}, raw, 2); err == nil {
		t.Error("Evolve accepted an unknown payload")
	}
	// Reported state from the log.
	if w.h.Sector != "chem" || w.h.Province != "530000" || w.h.Prefecture != "530100" || w.h.Region != "530181" ||
		w.h.SiteName != "安宁化工有限公司" || w.h.SiteKey != w.id || w.h.Source != "inspection" || w.h.ReportedBy != inspector ||
		!w.h.FoundAt.Equal(t0) || !w.h.RecordedAt.Equal(t0) || w.h.Home != events.DefaultSource || w.h.ReportSeq != 1 {
		t.Errorf("reported state: %+v", w.h)
	}
	if got, want := w.h.Subject(), "hz.chem.530000.530100.530181."+w.id; got != want {
		t.Errorf("Subject() = %s, want %s", got, want)
	}
}

func TestAmend(t *testing.T) {
	code := uscc(t, "91530100MA6K00000")
	w := newWorld(t)
	w.do(events.ActReport, inspector, withFields(t, reportGeneral, map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": code}}))
	wantErr(t, w.refuse(events.ActAmend, inspector, `{}`), events.KindInvalid, "nothing_to_amend", "")
	wantErr(t, w.refuse(events.ActAmend, inspector, `{"description":"  "}`), events.KindInvalid, "required", "description")
	other := uscc(t, "91530100MA6K00001")
	wantErr(t, w.refuse(events.ActAmend, inspector, fmt.Sprintf(`{"site":{"name":"乙公司","credit_code":%q}}`, other)), events.KindRule, "site_key_fixed", "")
	wantErr(t, w.refuse(events.ActAmend, inspector, `{"site":{"name":"乙公司","id":"some-place"}}`), events.KindRule, "site_key_fixed", "")
	wantErr(t, w.refuse(events.ActAmend, inspector, `{"site":{"name":""}}`), events.KindInvalid, "required", "site.name")
	wantErr(t, w.refuse(events.ActAmend, inspector, `{"location":{"lat":100,"lon":1}}`), events.KindInvalid, "invalid_location", "location")
	w.do(events.ActAmend, inspector, fmt.Sprintf(`{"site":{"name":" 甲化工有限公司 ","credit_code":%q},"location":{"lat":24.9,"lon":102.5,"address":" 安宁市草铺街道 "}}`, code))
	if w.h.SiteName != "甲化工有限公司" || w.h.SiteKey != code || len(w.h.AmendSeqs) != 1 || w.h.AmendSeqs[0] != w.h.Seq {
		t.Fatalf("amended: %q %q %v", w.h.SiteName, w.h.SiteKey, w.h.AmendSeqs)
	}
	p, _ := w.evs[len(w.evs)-1].Payload()
	a := p.(*events.Amended)
	if a.Location.Address != "安宁市草铺街道" || a.Site.Name != "甲化工有限公司" {
		t.Fatalf("amendment not normalised: %+v %+v", a.Site, a.Location)
	}
	w.do(events.ActAmend, verifier, `{"site":{"name":"甲化工"}}`) // name only keeps the key
	if w.h.SiteKey != code || w.h.SiteName != "甲化工" {
		t.Fatalf("name-only amendment: %q %q", w.h.SiteKey, w.h.SiteName)
	}
}

// TestDecideRefusesUnknownHash: a hazard whose last hash a replay left unknown is never decided
// on (its event would carry a broken prevhash); resolved from its stored bytes, it chains.
func TestDecideRefusesUnknownHash(t *testing.T) {
	w := build(t, events.StatusReported, events.GradeMajor)
	known := w.h.LastHash
	w.h.LastHash, w.h.HashUnknown = [32]byte{}, true
	if w.h.PrevHash() != "" {
		t.Fatalf("PrevHash of an unknown hash: %q", w.h.PrevHash())
	}
	_, e, err := w.try(events.ActPlan, rectifier, planFull)
	if ee, ok := err.(*events.Error); !ok || ee.Code != "hash_unknown" || e != nil {
		t.Fatalf("decide on an unknown hash: %v, %v", e, err)
	}
	w.h.SetLastHash(w.raws[len(w.raws)-1])
	if w.h.HashUnknown || w.h.LastHash != known {
		t.Fatal("SetLastHash did not restore the hash of the last stored event")
	}
	if e := w.do(events.ActPlan, rectifier, planFull); e.PrevHash != events.HashString(known) {
		t.Fatalf("prevhash %s after resolving", e.PrevHash)
	}
}
