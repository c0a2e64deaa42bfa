package events_test

import (
	"fmt"
	"testing"
	"time"

	"qingling/events"
)

// TestDecideCheckOrder pins which error a command with several problems reports: the rules
// on the hazard's state come before the payload's normalisation, the rules on normalised
// fields after it, and an amendment's site key and an extension's deadline rule stand
// between two of their fields.
func TestDecideCheckOrder(t *testing.T) {
	other := uscc(t, "91530100MA6K00001")
	cases := []struct {
		name          string
		status        events.Status
		grade, action string
		actor, body   string
		kind          events.Kind
		code, field   string
	}{
		{"plan on a cleared hazard with a bad field", events.StatusCleared, events.GradeGeneral, events.ActPlan, rectifier,
			`{"responsible":"a\u0001","measures":""}`, events.KindRule, "invalid_transition", "status"},
		{"major plan with a bad field and one missing", events.StatusReported, events.GradeMajor, events.ActPlan, rectifier,
			`{"responsible":"张三","measures":"m\u0001","deadline":"2025-04-20","contingency":"c"}`, events.KindInvalid, "control_character", "measures"},
		{"major plan with a bad deadline and one missing", events.StatusReported, events.GradeMajor, events.ActPlan, rectifier,
			`{"responsible":"张三","measures":"m","deadline":"soon","contingency":"c"}`, events.KindInvalid, "invalid_deadline", "deadline"},
		{"amend a withdrawn hazard with nothing", events.StatusWithdrawn, events.GradeGeneral, events.ActAmend, inspector,
			`{}`, events.KindRule, "invalid_transition", "status"},
		{"amend a bad description and the site key", events.StatusReported, events.GradeGeneral, events.ActAmend, inspector,
			fmt.Sprintf(`{"description":" ","site":{"name":"","credit_code":%q}}`, other), events.KindInvalid, "required", "description"},
		{"amend the site key with no site name", events.StatusReported, events.GradeGeneral, events.ActAmend, inspector,
			fmt.Sprintf(`{"description":"d","site":{"name":"","credit_code":%q}}`, other), events.KindRule, "site_key_fixed", ""},
		{"amend no site name and a bad location", events.StatusReported, events.GradeGeneral, events.ActAmend, inspector,
			`{"site":{"name":""},"location":{"lat":100,"lon":1}}`, events.KindInvalid, "required", "site.name"},
		{"extend to an earlier deadline without a reason", events.StatusReported, events.GradeGeneral, events.ActExtend, verifier,
			`{"deadline":"2025-04-29"}`, events.KindRule, "deadline_not_later", ""},
		{"extend to a bad deadline without a reason", events.StatusReported, events.GradeGeneral, events.ActExtend, verifier,
			`{"deadline":"soon"}`, events.KindInvalid, "invalid_deadline", "deadline"},
		{"regrade unchanged without a reason", events.StatusReported, events.GradeGeneral, events.ActGrade, verifier,
			`{"grade":"general"}`, events.KindInvalid, "required", "reason"},
		{"list a general hazard with no authority", events.StatusReported, events.GradeGeneral, events.ActList, verifier,
			`{"level":"county"}`, events.KindRule, "list_requires_major", ""},
		{"progress past 100 with a bad note", events.StatusPlanned, events.GradeGeneral, events.ActProgress, rectifier,
			`{"percent":101,"note":"\u2028"}`, events.KindInvalid, "invalid_percent", "percent"},
		{"clear by the completer without a method", events.StatusAwaiting, events.GradeGeneral, events.ActClear, rectifier,
			`{}`, events.KindRule, "completer_cannot_clear", ""},
		{"clear with a bad note and no method", events.StatusAwaiting, events.GradeGeneral, events.ActClear, verifier,
			`{"note":"\u0001"}`, events.KindInvalid, "required", "method"},
		{"reject a reported hazard without a reason", events.StatusReported, events.GradeGeneral, events.ActReject, verifier,
			`{}`, events.KindRule, "invalid_transition", "status"},
		{"reopen without a reason and a bad deadline", events.StatusCleared, events.GradeGeneral, events.ActReopen, verifier,
			`{"deadline":"soon"}`, events.KindInvalid, "required", "reason"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := build(t, c.status, c.grade)
			wantErr(t, w.refuse(c.action, c.actor, c.body), c.kind, c.code, c.field)
		})
	}
}

// TestSigningNormalizesLikeDecide: a client signing a command meets the normalisation error
// Decide would report, since both run the same step.
func TestSigningNormalizesLikeDecide(t *testing.T) {
	cat := catalog(t)
	cases := []struct{ action, body, code, field string }{
		{events.ActPlan, `{"responsible":"a\u0001","measures":"m"}`, "control_character", "responsible"},
		{events.ActAmend, `{"description":" ","site":{"name":""}}`, "required", "description"},
		{events.ActExtend, `{"deadline":"soon"}`, "invalid_deadline", "deadline"},
		{events.ActExtend, `{"deadline":"2025-05-01"}`, "required", "reason"},
		{events.ActClear, `{"method":"m","evidence":[{"sha256":"x","name":"p.jpg"}]}`, "invalid_evidence_0__sha256", "evidence[0].sha256"},
	}
	for _, c := range cases {
		cmd, err := events.DecodeCommand(c.action, absentID, []byte(c.body))
		if err != nil {
			t.Fatalf("%s %s: %v", c.action, c.body, err)
		}
		cmd.Actor = events.Actor{ID: verifier, Role: "verifier"}
		cmd.OccurredAt = t0.Add(time.Hour)
		_, err = events.CommandSigningBytes(cat, cmd)
		wantErr(t, err, events.KindInvalid, c.code, c.field)
	}
}
