package events_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"qingling/events"
)

func sha(i int) string { return fmt.Sprintf("%064x", i) }

func evidenceList(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"sha256": sha(i), "name": fmt.Sprintf("p%d.jpg", i)}
	}
	return out
}

// TestReportValidation checks each rule a report is held to, decode or decide.
func TestReportValidation(t *testing.T) {
	valid := uscc(t, "91530100MA6K00000")
	badCheck := valid[:17] + string("0123456789ABCDEFGHJKLMNPQRTUWXY"[(strings.IndexByte("0123456789ABCDEFGHJKLMNPQRTUWXY", valid[17])+1)%31])
	long := func(n int) string { return strings.Repeat("隐", n) }
	set := func(fields map[string]any) string { return withFields(t, reportGeneral, fields) }
	setMajor := func(fields map[string]any) string { return withFields(t, reportMajor, fields) }
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	cases := []struct {
		name      string
		body      string
		kind      events.Kind
		code, fld string // code "" = accepted
	}{
		{"general", reportGeneral, 0, "", ""},
		{"major", reportMajor, 0, "", ""},
		{"forest general without credit code", withFields(t, reportGeneral, map[string]any{"sector": "forest", "region": "532301", "site": map[string]any{"name": "某村坟地"}, "source": "tip-off"}), 0, "", ""},
		{"forest major", withFields(t, reportMajor, map[string]any{"sector": "forest", "criterion": "forest-firesource"}), 0, "", ""},
		{"mine major", withFields(t, reportMajor, map[string]any{"sector": "mine", "criterion": "mine-tp-02", "source": "self-check"}), 0, "", ""},
		{"unknown sector", set(map[string]any{"sector": "coal"}), events.KindInvalid, "unknown_sector", "sector"},
		{"empty sector", set(map[string]any{"sector": nil}), events.KindInvalid, "unknown_sector", "sector"},
		{"sector case", set(map[string]any{"sector": "Chem"}), events.KindInvalid, "unknown_sector", "sector"},
		{"unknown region", set(map[string]any{"region": "530199"}), events.KindInvalid, "unknown_region", "region"},
		{"region not six digits", set(map[string]any{"region": "53018"}), events.KindInvalid, "unknown_region", "region"},
		{"prefecture region", set(map[string]any{"region": "530100"}), events.KindInvalid, "region_not_county", "region"},
		{"province region", set(map[string]any{"region": "530000"}), events.KindInvalid, "region_not_county", "region"},
		{"criterion of another sector", setMajor(map[string]any{"criterion": "mine-tp-02"}), events.KindInvalid, "criterion_sector", "criterion"},
		{"general with another sector's criterion", set(map[string]any{"criterion": "forest-firesource"}), events.KindInvalid, "criterion_sector", "criterion"},
		{"unknown criterion", setMajor(map[string]any{"criterion": "chem-2017-50"}), events.KindInvalid, "unknown_criterion", "criterion"},
		{"major without criterion", setMajor(map[string]any{"criterion": nil}), events.KindInvalid, "criterion_required", "criterion"},
		{"general with its criterion", set(map[string]any{"criterion": "chem-2017-05"}), 0, "", ""},
		{"bad grade", set(map[string]any{"grade": "minor"}), events.KindInvalid, "invalid_grade", "grade"},
		{"grade case", set(map[string]any{"grade": "Major", "criterion": "chem-2017-05"}), events.KindInvalid, "invalid_grade", "grade"},
		{"no grade", set(map[string]any{"grade": nil}), events.KindInvalid, "invalid_grade", "grade"},
		{"bad source", set(map[string]any{"source": "rumour"}), events.KindInvalid, "invalid_source", "source"},
		{"no source", set(map[string]any{"source": nil}), events.KindInvalid, "invalid_source", "source"},
		{"valid credit code", set(map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": valid}}), 0, "", ""},
		{"credit code wrong check", set(map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": badCheck}}), events.KindInvalid, "invalid_credit_code", "site.credit_code"},
		{"credit code lowercase", set(map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": strings.ToLower(valid)}}), events.KindInvalid, "invalid_credit_code", "site.credit_code"},
		{"credit code short", set(map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": valid[:17]}}), events.KindInvalid, "invalid_credit_code", "site.credit_code"},
		{"credit code with I", set(map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": "91530100MA6I000000"}}), events.KindInvalid, "invalid_credit_code", "site.credit_code"},
		{"bad site id", set(map[string]any{"site": map[string]any{"name": "某村", "id": "Ab"}}), events.KindInvalid, "invalid_site_id", "site.id"},
		{"no site name", set(map[string]any{"site": map[string]any{"credit_code": valid}}), events.KindInvalid, "required", "site.name"},
		{"blank site name", set(map[string]any{"site": map[string]any{"name": " \t "}}), events.KindInvalid, "required", "site.name"},
		{"id uppercase", set(map[string]any{"id": "0193F2C4-0000-7000-8000-00000000000A"}), events.KindInvalid, "invalid_uuid", "id"},
		{"id without hyphens", set(map[string]any{"id": "0193f2c4000070008000000000000001"}), events.KindInvalid, "invalid_uuid", "id"},
		{"id with braces", set(map[string]any{"id": "{0193f2c4-0000-7000-8000-000000000001}"}), events.KindInvalid, "invalid_uuid", "id"},
		{"id urn", set(map[string]any{"id": "urn:uuid:0193f2c4-0000-7000-8000-000000000001"}), events.KindInvalid, "invalid_uuid", "id"},
		{"id not a uuid", set(map[string]any{"id": "hazard-1"}), events.KindInvalid, "invalid_uuid", "id"},
		{"canonical id", set(map[string]any{"id": "0193f2c4-0000-7000-8000-00000000000a"}), 0, "", ""},
		{"command_id uppercase", set(map[string]any{"command_id": "0193F2C4-0000-7000-8000-00000000000A"}), events.KindInvalid, "invalid_uuid", "command_id"},
		{"command_id braces", set(map[string]any{"command_id": "{0193f2c4-0000-7000-8000-000000000001}"}), events.KindInvalid, "invalid_uuid", "command_id"},
		{"supersedes uppercase", set(map[string]any{"supersedes": "0193F2C4-0000-7000-8000-00000000000A"}), events.KindInvalid, "invalid_uuid", "supersedes"},
		{"occurred in the future", set(map[string]any{"occurred_at": at(events.MaxClockSkew + time.Second)}), events.KindInvalid, "occurred_in_future", "occurred_at"},
		{"occurred a nanosecond past the skew", set(map[string]any{"occurred_at": at(events.MaxClockSkew + time.Nanosecond)}), events.KindInvalid, "occurred_in_future", "occurred_at"},
		{"occurred within the skew", set(map[string]any{"occurred_at": at(events.MaxClockSkew)}), 0, "", ""},
		{"occurred slightly ahead", set(map[string]any{"occurred_at": at(time.Minute)}), 0, "", ""},
		{"occurred in the past", set(map[string]any{"occurred_at": "2025-03-02T09:30:00+08:00"}), 0, "", ""},
		{"occurred implausibly early", set(map[string]any{"occurred_at": "1999-12-31T23:59:59+08:00"}), events.KindInvalid, "invalid_occurred_at", "occurred_at"},
		{"occurred without offset", set(map[string]any{"occurred_at": "2025-03-02T09:30:00"}), events.KindInvalid, "invalid_occurred_at", "occurred_at"},
		{"occurred as a date", set(map[string]any{"occurred_at": "2025-03-02"}), events.KindInvalid, "invalid_occurred_at", "occurred_at"},
		{"deadline before occurred", set(map[string]any{"deadline": "2025-03-09"}), events.KindInvalid, "deadline_before_occurred", "deadline"},
		{"deadline equal to occurred", set(map[string]any{"deadline": t0.Format(time.RFC3339)}), events.KindInvalid, "deadline_before_occurred", "deadline"},
		{"deadline a nanosecond after", set(map[string]any{"deadline": t0.Add(time.Nanosecond).Format(time.RFC3339Nano)}), 0, "", ""},
		{"deadline today", set(map[string]any{"deadline": "2025-03-10"}), 0, "", ""},
		{"deadline before an earlier occurred_at", set(map[string]any{"occurred_at": "2025-03-02T09:30:00+08:00", "deadline": "2025-03-01"}), events.KindInvalid, "deadline_before_occurred", "deadline"},
		{"deadline missing", set(map[string]any{"deadline": nil}), events.KindInvalid, "required", "deadline"},
		{"deadline garbage", set(map[string]any{"deadline": "next week"}), events.KindInvalid, "invalid_deadline", "deadline"},
		{"deadline without offset", set(map[string]any{"deadline": "2025-04-30T18:00:00"}), events.KindInvalid, "invalid_deadline", "deadline"},
		{"deadline not a day", set(map[string]any{"deadline": "2025-02-30"}), events.KindInvalid, "invalid_deadline", "deadline"},
		{"deadline beyond year 9999", set(map[string]any{"deadline": "9999-12-31T23:00:00-12:00"}), events.KindInvalid, "invalid_deadline", "deadline"},
		{"description missing", set(map[string]any{"description": nil}), events.KindInvalid, "required", "description"},
		{"site name at the limit", set(map[string]any{"site": map[string]any{"name": long(events.MaxNameLen)}}), 0, "", ""},
		{"site name too long", set(map[string]any{"site": map[string]any{"name": long(events.MaxNameLen + 1)}}), events.KindInvalid, "too_long", "site.name"},
		{"padded site name within the limit once trimmed", set(map[string]any{"site": map[string]any{"name": "  " + long(events.MaxNameLen) + "  "}}), 0, "", ""},
		{"description at the limit", set(map[string]any{"description": long(events.MaxTextLen)}), 0, "", ""},
		{"description too long", set(map[string]any{"description": long(events.MaxTextLen + 1)}), events.KindInvalid, "too_long", "description"},
		{"site name with BEL", set(map[string]any{"site": map[string]any{"name": "甲\a公司"}}), events.KindInvalid, "control_character", "site.name"},
		{"site name with newline", set(map[string]any{"site": map[string]any{"name": "甲\n公司"}}), events.KindInvalid, "control_character", "site.name"},
		{"site name with tab", set(map[string]any{"site": map[string]any{"name": "甲\t公司"}}), events.KindInvalid, "control_character", "site.name"},
		{"site name with NUL", set(map[string]any{"site": map[string]any{"name": "甲\x00公司"}}), events.KindInvalid, "control_character", "site.name"},
		{"site name with DEL", set(map[string]any{"site": map[string]any{"name": "甲\x7f公司"}}), events.KindInvalid, "control_character", "site.name"},
		{"site name with C1 control", set(map[string]any{"site": map[string]any{"name": "甲\u0085公司"}}), events.KindInvalid, "control_character", "site.name"},
		{"description with newline and tab", set(map[string]any{"description": "第一行\n\t第二行"}), 0, "", ""},
		{"description with CR", set(map[string]any{"description": "第一行\r\n第二行"}), events.KindInvalid, "control_character", "description"},
		{"description with line separator", set(map[string]any{"description": "甲\u2028乙"}), events.KindInvalid, "control_character", "description"},
		{"description with ESC", set(map[string]any{"description": "甲\x1b[31m乙"}), events.KindInvalid, "control_character", "description"},
		{"lone surrogate becomes U+FFFD", `{"sector":"chem","region":"530181","site":{"name":"甲\ud800"},"grade":"general","description":"d","source":"inspection","deadline":"2025-04-30"}`, events.KindInvalid, "control_character", "site.name"},
		{"location out of range", set(map[string]any{"location": map[string]any{"lat": 24.9, "lon": 181}}), events.KindInvalid, "invalid_location", "location"},
		{"location null island", set(map[string]any{"location": map[string]any{"lat": 0, "lon": 0}}), events.KindInvalid, "invalid_location", "location"},
		{"location address with control", set(map[string]any{"location": map[string]any{"lat": 24.9, "lon": 102.5, "address": "a\nb"}}), events.KindInvalid, "control_character", "location.address"},
		{"evidence at the limit", set(map[string]any{"evidence": evidenceList(events.MaxEvidence)}), 0, "", ""},
		{"too much evidence", set(map[string]any{"evidence": evidenceList(events.MaxEvidence + 1)}), events.KindInvalid, "too_many", "evidence"},
		{"sha256 uppercase", set(map[string]any{"evidence": []any{map[string]any{"sha256": strings.ToUpper(sha(10))}}}), events.KindInvalid, "invalid_evidence_0__sha256", "evidence[0].sha256"},
		{"sha256 short", set(map[string]any{"evidence": []any{map[string]any{"sha256": sha(1)}, map[string]any{"sha256": sha(2)[1:]}}}), events.KindInvalid, "invalid_evidence_1__sha256", "evidence[1].sha256"},
		{"sha256 not hex", set(map[string]any{"evidence": []any{map[string]any{"sha256": strings.Repeat("g", 64)}}}), events.KindInvalid, "invalid_evidence_0__sha256", "evidence[0].sha256"},
		{"sha256 missing", set(map[string]any{"evidence": []any{map[string]any{"name": "p.jpg"}}}), events.KindInvalid, "invalid_evidence_0__sha256", "evidence[0].sha256"},
		{"evidence name with control", set(map[string]any{"evidence": []any{map[string]any{"sha256": sha(1), "name": "p\n.jpg"}}}), events.KindInvalid, "control_character", "evidence[0].name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			if c.code == "" {
				w.do(events.ActReport, inspector, c.body)
				if w.h.Status != events.StatusReported {
					t.Fatalf("status %s", w.h.Status)
				}
				return
			}
			wantErr(t, w.refuse(events.ActReport, inspector, c.body), c.kind, c.code, c.fld)
		})
	}
}

func TestReportNormalisation(t *testing.T) {
	code := uscc(t, "91530100MA6K00000")
	cases := []struct {
		name   string
		fields map[string]any
		check  func(t *testing.T, w *world, r *events.Reported)
	}{
		{"site id assigned when no credit code", map[string]any{"site": map[string]any{"name": "某村"}}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Site.ID != w.id || r.Site.CreditCode != "" || w.h.SiteKey != w.id {
				t.Fatalf("site %+v key %s, want id %s", r.Site, w.h.SiteKey, w.id)
			}
		}},
		{"client site id kept", map[string]any{"site": map[string]any{"name": "某村", "id": "village-530181-12"}}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Site.ID != "village-530181-12" || w.h.SiteKey != "village-530181-12" {
				t.Fatalf("site %+v key %s", r.Site, w.h.SiteKey)
			}
		}},
		{"credit code is the key and drops an id", map[string]any{"site": map[string]any{"name": "甲公司", "credit_code": code, "id": "ignored-id"}}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Site.ID != "" || r.Site.CreditCode != code || w.h.SiteKey != code {
				t.Fatalf("site %+v key %s", r.Site, w.h.SiteKey)
			}
		}},
		{"bare date deadline is the end of that day in Shanghai", map[string]any{"deadline": "2025-04-30"}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Deadline != "2025-04-30T23:59:59.999999999+08:00" {
				t.Fatalf("deadline %q", r.Deadline)
			}
			if !w.h.ReportDeadline.Equal(endOfDay(2025, 4, 30)) || !w.h.ReportDeadline.Equal(time.Date(2025, 4, 30, 15, 59, 59, 999999999, time.UTC)) {
				t.Fatalf("report deadline %v", w.h.ReportDeadline)
			}
		}},
		{"padded bare date", map[string]any{"deadline": " 2025-04-30 "}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Deadline != "2025-04-30T23:59:59.999999999+08:00" {
				t.Fatalf("deadline %q", r.Deadline)
			}
		}},
		{"instant deadline written in Shanghai time", map[string]any{"deadline": "2025-04-30T00:00:00Z"}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Deadline != "2025-04-30T08:00:00+08:00" || !w.h.ReportDeadline.Equal(time.Date(2025, 4, 30, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("deadline %q %v", r.Deadline, w.h.ReportDeadline)
			}
		}},
		{"text is trimmed", map[string]any{"description": "\n  储罐区\n防火堤破损 \t", "site": map[string]any{"name": "  安宁化工  "}}, func(t *testing.T, w *world, r *events.Reported) {
			if r.Description != "储罐区\n防火堤破损" || r.Site.Name != "安宁化工" || w.h.SiteName != "安宁化工" {
				t.Fatalf("description %q site %q", r.Description, r.Site.Name)
			}
		}},
		{"occurred_at becomes the event's occurredat", map[string]any{"occurred_at": "2025-03-02T09:30:00+08:00"}, func(t *testing.T, w *world, r *events.Reported) {
			e := w.evs[0]
			want := time.Date(2025, 3, 2, 9, 30, 0, 0, events.Shanghai)
			if !e.OccurredAt.Equal(want) || !e.Time.Equal(t0) || !w.h.FoundAt.Equal(want) || !w.h.RecordedAt.Equal(t0) {
				t.Fatalf("occurredat %v time %v", e.OccurredAt, e.Time)
			}
		}},
		{"occurredat defaults to the record time", nil, func(t *testing.T, w *world, r *events.Reported) {
			if !w.evs[0].OccurredAt.Equal(t0) || !w.evs[0].Time.Equal(t0) {
				t.Fatalf("occurredat %v time %v", w.evs[0].OccurredAt, w.evs[0].Time)
			}
		}},
		{"evidence names trimmed", map[string]any{"evidence": []any{map[string]any{"sha256": sha(7), "name": " p1.jpg "}}}, func(t *testing.T, w *world, r *events.Reported) {
			if len(r.Evidence) != 1 || r.Evidence[0].Name != "p1.jpg" || r.Evidence[0].SHA256 != sha(7) {
				t.Fatalf("evidence %+v", r.Evidence)
			}
		}},
		{"meta fields are not data", map[string]any{"command_id": "0193f2c4-0000-7000-8000-0000000000cc", "sig": "c2ln"}, func(t *testing.T, w *world, r *events.Reported) {
			e := w.evs[0]
			if e.CommandID != "0193f2c4-0000-7000-8000-0000000000cc" || e.Sig != "c2ln" {
				t.Fatalf("commandid %q sig %q", e.CommandID, e.Sig)
			}
			var m map[string]any
			if err := json.Unmarshal(e.Data, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"command_id", "sig", "occurred_at", "expected_version", "id"} {
				if _, ok := m[k]; ok {
					t.Errorf("data carries %q: %s", k, e.Data)
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.do(events.ActReport, inspector, withFields(t, reportGeneral, c.fields))
			p, err := w.evs[0].Payload()
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, w, p.(*events.Reported))
		})
	}
}

// TestActionValidation checks the body rules of the actions after the report.
func TestActionValidation(t *testing.T) {
	cases := []struct {
		name, action string
		from         events.Status
		grade        string
		body         string
		kind         events.Kind
		code, fld    string
	}{
		{"percent below 0", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":-1}`, events.KindInvalid, "invalid_percent", "percent"},
		{"percent above 100", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":101}`, events.KindInvalid, "invalid_percent", "percent"},
		{"percent 0", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":0}`, 0, "", ""},
		{"percent 100", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":100,"note":"done"}`, 0, "", ""},
		{"percent fractional", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":50.5}`, events.KindInvalid, "wrong_type", "percent"},
		{"progress note too long", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":1,"note":"` + strings.Repeat("x", events.MaxTextLen+1) + `"}`, events.KindInvalid, "too_long", "note"},
		{"progress too much evidence", events.ActProgress, events.StatusPlanned, events.GradeGeneral, withFields(t, `{"percent":1}`, map[string]any{"evidence": evidenceList(events.MaxEvidence + 1)}), events.KindInvalid, "too_many", "evidence"},
		{"progress bad sha", events.ActProgress, events.StatusPlanned, events.GradeGeneral, `{"percent":1,"evidence":[{"sha256":"abc"}]}`, events.KindInvalid, "invalid_evidence_0__sha256", "evidence[0].sha256"},
		{"complete bad sha", events.ActComplete, events.StatusRectifying, events.GradeGeneral, `{"evidence":[{"sha256":"` + strings.Repeat("A", 64) + `"}]}`, events.KindInvalid, "invalid_evidence_0__sha256", "evidence[0].sha256"},
		{"complete empty body object", events.ActComplete, events.StatusRectifying, events.GradeGeneral, `{}`, 0, "", ""},
		{"reject without reason", events.ActReject, events.StatusAwaiting, events.GradeGeneral, `{}`, events.KindInvalid, "required", "reason"},
		{"reject blank reason", events.ActReject, events.StatusAwaiting, events.GradeGeneral, `{"reason":" \n "}`, events.KindInvalid, "required", "reason"},
		{"reject with evidence", events.ActReject, events.StatusAwaiting, events.GradeGeneral, withFields(t, bodyReject, map[string]any{"evidence": evidenceList(2)}), 0, "", ""},
		{"clear without method", events.ActClear, events.StatusAwaiting, events.GradeGeneral, `{"note":"n"}`, events.KindInvalid, "required", "method"},
		{"clear method with newline", events.ActClear, events.StatusAwaiting, events.GradeGeneral, `{"method":"on\nsite"}`, events.KindInvalid, "control_character", "method"},
		{"clear with evidence", events.ActClear, events.StatusAwaiting, events.GradeMajor, withFields(t, bodyClear, map[string]any{"evidence": evidenceList(events.MaxEvidence)}), 0, "", ""},
		{"reopen without reason", events.ActReopen, events.StatusCleared, events.GradeGeneral, `{}`, events.KindInvalid, "required", "reason"},
		{"reopen deadline in the past", events.ActReopen, events.StatusCleared, events.GradeGeneral, `{"reason":"r","deadline":"2025-03-01"}`, events.KindInvalid, "deadline_before_occurred", "deadline"},
		{"withdraw without reason", events.ActWithdraw, events.StatusReported, events.GradeGeneral, `{"reason":""}`, events.KindInvalid, "required", "reason"},
		{"plan responsible too long", events.ActPlan, events.StatusReported, events.GradeMajor, withFields(t, planFull, map[string]any{"responsible": strings.Repeat("张", events.MaxNameLen+1)}), events.KindInvalid, "too_long", "responsible"},
		{"plan funds with newline", events.ActPlan, events.StatusReported, events.GradeMajor, withFields(t, planFull, map[string]any{"funds": "5\n万"}), events.KindInvalid, "control_character", "funds"},
		{"plan measures multi-line", events.ActPlan, events.StatusReported, events.GradeMajor, withFields(t, planFull, map[string]any{"measures": "一、修复\n二、复查"}), 0, "", ""},
		{"plan deadline before occurred", events.ActPlan, events.StatusReported, events.GradeMajor, withFields(t, planFull, map[string]any{"deadline": "2025-03-09"}), events.KindInvalid, "deadline_before_occurred", "deadline"},
		{"extend deadline in the past", events.ActExtend, events.StatusRectifying, events.GradeGeneral, `{"deadline":"2025-03-01","reason":"r"}`, events.KindInvalid, "deadline_before_occurred", "deadline"},
		{"extend garbage deadline", events.ActExtend, events.StatusRectifying, events.GradeGeneral, `{"deadline":"soon","reason":"r"}`, events.KindInvalid, "invalid_deadline", "deadline"},
		{"action occurred in the future", events.ActComplete, events.StatusRectifying, events.GradeGeneral, `{"occurred_at":"2025-03-11T10:00:00+08:00"}`, events.KindInvalid, "occurred_in_future", "occurred_at"},
		{"amend description too long", events.ActAmend, events.StatusReported, events.GradeGeneral, `{"description":"` + strings.Repeat("隐", events.MaxTextLen+1) + `"}`, events.KindInvalid, "too_long", "description"},
		{"amend description multi-line", events.ActAmend, events.StatusReported, events.GradeGeneral, `{"description":"a\nb"}`, 0, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := build(t, c.from, c.grade)
			if c.code == "" {
				w.do(c.action, actorFor(c.action), c.body)
				return
			}
			wantErr(t, w.refuse(c.action, actorFor(c.action), c.body), c.kind, c.code, c.fld)
		})
	}
}

// TestDecodeCommandErrors covers the strict decoder: bytes, depth, shape, fields, types.
func TestDecodeCommandErrors(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	oversize := `{"description":"` + strings.Repeat("a", events.MaxCommandBody) + `"}`
	cases := []struct {
		name, action, body string
		kind               events.Kind
		code, fld          string
	}{
		{"unknown action", "approve", `{}`, events.KindNotFound, "unknown_action", "action"},
		{"empty action", "", `{}`, events.KindNotFound, "unknown_action", "action"},
		{"invalid UTF-8", events.ActReport, "{\"description\":\"\xff\xfe\"}", events.KindInvalid, "invalid_utf8", ""},
		{"invalid UTF-8 outside strings", events.ActWithdraw, "{\"reason\":\"r\"}\xc3", events.KindInvalid, "invalid_utf8", ""},
		{"too deep", events.ActReport, `{"evidence":` + nest(events.MaxJSONDepth) + `}`, events.KindInvalid, "too_deep", ""},
		{"too deep, unclosed", events.ActReject, strings.Repeat("{", events.MaxJSONDepth+1), events.KindInvalid, "too_deep", ""},
		{"at the depth limit is only a type error", events.ActReport, `{"evidence":` + nest(events.MaxJSONDepth-1) + `}`, events.KindInvalid, "wrong_type", "*"},
		{"unknown field", events.ActReport, withFields(t, reportGeneral, map[string]any{"status": "cleared"}), events.KindInvalid, "unknown_field", "status"},
		{"unknown nested field", events.ActReport, withFields(t, reportGeneral, map[string]any{"site": map[string]any{"name": "a", "owner": "b"}}), events.KindInvalid, "unknown_field", "owner"},
		{"unknown action field", events.ActWithdraw, `{"reason":"r","force":true}`, events.KindInvalid, "unknown_field", "force"},
		{"report field on an action", events.ActAmend, `{"sector":"mine"}`, events.KindInvalid, "unknown_field", "sector"},
		{"id on an action", events.ActAmend, `{"id":"0193f2c4-0000-7000-8000-000000000001","description":"d"}`, events.KindInvalid, "unknown_field", "id"},
		{"wrong type string for int", events.ActProgress, `{"percent":"50"}`, events.KindInvalid, "wrong_type", "percent"},
		{"wrong type number for string", events.ActReport, `{"sector":5}`, events.KindInvalid, "wrong_type", "sector"},
		{"wrong type nested", events.ActReport, `{"site":{"name":5}}`, events.KindInvalid, "wrong_type", "site.name"},
		{"wrong type object for string", events.ActReject, `{"reason":{"text":"r"}}`, events.KindInvalid, "wrong_type", "reason"},
		{"wrong type meta on report", events.ActReport, `{"expected_version":"1"}`, events.KindInvalid, "wrong_type", "expected_version"},
		{"wrong type meta on action", events.ActAmend, `{"expected_version":true}`, events.KindInvalid, "wrong_type", "expected_version"},
		{"wrong type evidence", events.ActComplete, `{"evidence":{"sha256":"x"}}`, events.KindInvalid, "wrong_type", "evidence"},
		{"array body", events.ActReport, `[]`, events.KindInvalid, "wrong_type", ""},
		{"string body", events.ActWithdraw, `"withdraw"`, events.KindInvalid, "wrong_type", ""},
		{"truncated", events.ActReport, reportGeneral[:len(reportGeneral)/2], events.KindInvalid, "malformed_json", ""},
		{"truncated action", events.ActWithdraw, `{"reason":"r"`, events.KindInvalid, "malformed_json", ""},
		{"empty body", events.ActComplete, ``, events.KindInvalid, "malformed_json", ""},
		{"whitespace body", events.ActComplete, " \n\t", events.KindInvalid, "malformed_json", ""},
		{"trailing object", events.ActReport, reportGeneral + `{}`, events.KindInvalid, "malformed_json", ""},
		{"trailing garbage", events.ActWithdraw, `{"reason":"r"} x`, events.KindInvalid, "malformed_json", ""},
		{"two objects", events.ActComplete, `{} {}`, events.KindInvalid, "malformed_json", ""},
		{"syntax error", events.ActReport, `{"sector":"chem",}`, events.KindInvalid, "malformed_json", ""},
		{"single quotes", events.ActWithdraw, `{'reason':'r'}`, events.KindInvalid, "malformed_json", ""},
		{"oversize", events.ActAmend, oversize, events.KindTooLarge, "body_too_large", ""},
		{"oversize report", events.ActReport, reportGeneral + strings.Repeat(" ", events.MaxCommandBody), events.KindTooLarge, "body_too_large", ""},
		{"bad occurred_at", events.ActComplete, `{"occurred_at":"yesterday"}`, events.KindInvalid, "invalid_occurred_at", "occurred_at"},
		{"bad command_id", events.ActComplete, `{"command_id":"1234"}`, events.KindInvalid, "invalid_uuid", "command_id"},
		{"expected_version 0", events.ActComplete, `{"expected_version":0}`, events.KindInvalid, "invalid_expected_version", "expected_version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hid := absentID
			if c.action == events.ActReport {
				hid = ""
			}
			cmd, err := events.DecodeCommand(c.action, hid, []byte(c.body))
			if cmd != nil {
				t.Fatalf("got a command with error %v", err)
			}
			wantErr(t, err, c.kind, c.code, c.fld)
		})
	}
}

func TestDecodeCommandAccepts(t *testing.T) {
	t.Run("body exactly at the size limit", func(t *testing.T) {
		body := `{"reason":"r"` + strings.Repeat(" ", events.MaxCommandBody-len(`{"reason":"r"}`)) + `}`
		if len(body) != events.MaxCommandBody {
			t.Fatalf("len %d", len(body))
		}
		cmd, err := events.DecodeCommand(events.ActWithdraw, absentID, []byte(body))
		if err != nil || cmd.Payload.(*events.Withdrawn).Reason != "r" {
			t.Fatalf("%v %+v", err, cmd)
		}
	})
	t.Run("brackets inside strings do not count as depth", func(t *testing.T) {
		body := `{"reason":"` + strings.Repeat(`[{\"`, 40) + `"}`
		cmd, err := events.DecodeCommand(events.ActWithdraw, absentID, []byte(body))
		if err != nil || !strings.HasPrefix(cmd.Payload.(*events.Withdrawn).Reason, `[{"[{"`) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("meta and payload split", func(t *testing.T) {
		body := `{"note":"n","percent":40,"command_id":"0193f2c4-0000-7000-8000-0000000000aa","expected_version":3,"occurred_at":"2025-03-10T09:00:00+08:00","sig":"c2ln"}`
		cmd, err := events.DecodeCommand(events.ActProgress, absentID, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		p := cmd.Payload.(*events.Progressed)
		if cmd.Action != events.ActProgress || cmd.HazardID != absentID || cmd.CommandID != "0193f2c4-0000-7000-8000-0000000000aa" ||
			cmd.ExpectedVersion == nil || *cmd.ExpectedVersion != 3 || cmd.Sig != "c2ln" ||
			!cmd.OccurredAt.Equal(time.Date(2025, 3, 10, 9, 0, 0, 0, events.Shanghai)) || p.Note != "n" || p.Percent != 40 {
			t.Fatalf("%+v %+v", cmd, p)
		}
	})
	t.Run("report id from body, not the argument", func(t *testing.T) {
		cmd, err := events.DecodeCommand(events.ActReport, "", []byte(withFields(t, reportGeneral, map[string]any{"id": absentID})))
		if err != nil || cmd.HazardID != absentID {
			t.Fatalf("%v %+v", err, cmd)
		}
		if _, ok := cmd.Payload.(*events.Reported); !ok {
			t.Fatalf("payload %T", cmd.Payload)
		}
	})
	t.Run("action hazard id must be canonical", func(t *testing.T) {
		for _, id := range []string{"0193F2C4-0000-7000-8000-000000000001", "0193f2c4000070008000000000000001", "{0193f2c4-0000-7000-8000-000000000001}"} {
			_, err := events.DecodeCommand(events.ActWithdraw, id, []byte(bodyWithdraw))
			wantErr(t, err, events.KindInvalid, "invalid_uuid", "id")
		}
	})
	t.Run("every action decodes to its payload type", func(t *testing.T) {
		w := newWorld(t)
		for _, a := range events.Actions {
			hid := absentID
			if a == events.ActReport {
				hid = ""
			}
			cmd, err := events.DecodeCommand(a, hid, []byte(defaultBody(w, a, events.GradeGeneral)))
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			want := fmt.Sprintf("%T", events.NewPayload(events.ActionType(a)))
			if got := fmt.Sprintf("%T", cmd.Payload); got != want {
				t.Errorf("%s: payload %s, want %s", a, got, want)
			}
		}
	})
}

func TestDecideNeedsResolvedIDs(t *testing.T) {
	cat := catalog(t)
	cmd, err := events.DecodeCommand(events.ActReport, "", []byte(reportGeneral))
	if err != nil {
		t.Fatal(err)
	}
	_, err = events.Decide(cat, nil, cmd, t0, events.DefaultSource)
	wantErr(t, err, events.KindInternal, "missing_ids", "")
}

func TestParseDeadline(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2025-04-30", endOfDay(2025, 4, 30), true},
		{"2024-02-29", endOfDay(2024, 2, 29), true},
		{"2025-12-31", endOfDay(2025, 12, 31), true},
		{"2025-04-30T18:00:00+08:00", time.Date(2025, 4, 30, 18, 0, 0, 0, events.Shanghai), true},
		{"2025-04-30T10:00:00Z", time.Date(2025, 4, 30, 18, 0, 0, 0, events.Shanghai), true},
		{"2025-04-30T10:00:00.5-02:00", time.Date(2025, 4, 30, 12, 0, 0, 500000000, time.UTC), true},
		{"2025-02-29", time.Time{}, false},
		{"2025/04/30", time.Time{}, false},
		{"20250430", time.Time{}, false},
		{"", time.Time{}, false},
		{"9999-12-31", endOfDay(9999, 12, 31), true},
		{"9999-12-31T20:00:00-08:00", time.Time{}, false}, // 10000-01-01 in Shanghai: cannot be written back
	}
	for _, c := range cases {
		got, err := events.ParseDeadline("deadline", c.in)
		if !c.ok {
			if err == nil {
				t.Errorf("ParseDeadline(%q) = %v, want an error", c.in, got)
			} else {
				wantErr(t, err, events.KindInvalid, "invalid_deadline", "deadline")
			}
			continue
		}
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseDeadline(%q) = %v, %v; want %v", c.in, got, err, c.want)
			continue
		}
		// What Decide writes into data reads back as the same instant.
		back, perr := time.Parse(time.RFC3339Nano, events.FormatInstant(got))
		if perr != nil || !back.Equal(got) {
			t.Errorf("FormatInstant(%v) = %q does not read back: %v", got, events.FormatInstant(got), perr)
		}
	}
	if s := events.FormatInstant(time.Date(2025, 4, 30, 0, 0, 0, 0, time.UTC)); s != "2025-04-30T08:00:00+08:00" {
		t.Errorf("FormatInstant = %s", s)
	}
}

func TestValidCreditCode(t *testing.T) {
	const chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	seeds := []string{"91530100MA6K00000", "91530181MA6NXY001", "12530000015121416", "92530102MA6P8AB3C", "00000000000000000"}
	for _, s := range seeds {
		code := uscc(t, s)
		if !events.ValidCreditCode(code) {
			t.Errorf("ValidCreditCode(%s) = false", code)
		}
		// Any single substitution is caught (31 is prime and no weight is 0 mod 31).
		for i := 0; i < 18; i++ {
			for _, c := range chars {
				if byte(c) == code[i] {
					continue
				}
				bad := code[:i] + string(c) + code[i+1:]
				if events.ValidCreditCode(bad) {
					t.Fatalf("ValidCreditCode(%s) = true after changing position %d", bad, i)
				}
			}
		}
		if events.ValidCreditCode(strings.ToLower(code)) && strings.ToLower(code) != code {
			t.Errorf("lowercase %s accepted", code)
		}
		if events.ValidCreditCode(code+"0") || events.ValidCreditCode(code[:17]) || events.ValidCreditCode(" "+code[1:]) {
			t.Errorf("wrong length or space accepted for %s", code)
		}
	}
	for _, bad := range []string{"", "91530100MA6I000000", "91530100MA6O000000", "91530100MA6Z000000", "91530100MA6S000000", "91530100MA6V000000", "９1530100MA6K00000X"} {
		if events.ValidCreditCode(bad) {
			t.Errorf("ValidCreditCode(%q) = true", bad)
		}
	}
}
