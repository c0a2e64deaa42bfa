package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"qingling/events"
)

func TestActionsAndTypes(t *testing.T) {
	want := map[string]string{
		"report": "hazard.reported", "amend": "hazard.amended", "grade": "hazard.graded", "list": "hazard.listed",
		"plan": "rectification.planned", "progress": "rectification.progressed", "extend": "rectification.extended",
		"complete": "rectification.completed", "reject": "verification.failed", "clear": "hazard.cleared",
		"reopen": "hazard.reopened", "withdraw": "hazard.withdrawn",
	}
	if len(events.Actions) != 12 || events.Actions[0] != events.ActReport {
		t.Fatalf("Actions = %v", events.Actions)
	}
	seen := map[string]bool{}
	for _, a := range events.Actions {
		typ := events.ActionType(a)
		if typ != want[a] {
			t.Errorf("ActionType(%s) = %q, want %q", a, typ, want[a])
		}
		if seen[typ] {
			t.Errorf("type %s twice", typ)
		}
		seen[typ] = true
		p := events.NewPayload(typ)
		if p == nil {
			t.Errorf("NewPayload(%s) = nil", typ)
			continue
		}
		// The payload is a pointer that data decodes into and encodes from.
		if err := json.Unmarshal([]byte(`{}`), p); err != nil {
			t.Errorf("%s payload: %v", typ, err)
		}
	}
	for _, bad := range []string{"", "approve", "Report", "hazard.reported"} {
		if events.ActionType(bad) != "" {
			t.Errorf("ActionType(%q) = %q", bad, events.ActionType(bad))
		}
	}
	if events.NewPayload("hazard.deleted") != nil || events.NewPayload("") != nil {
		t.Error("NewPayload of an unknown type")
	}
}

func TestEvidenceOf(t *testing.T) {
	ev := []events.Evidence{{SHA256: sha(1), Name: "a"}}
	for _, p := range []any{&events.Reported{Evidence: ev}, &events.Progressed{Evidence: ev}, &events.Completed{Evidence: ev},
		&events.VerifyFailed{Evidence: ev}, &events.Cleared{Evidence: ev}} {
		if got := events.EvidenceOf(p); len(got) != 1 || got[0] != ev[0] {
			t.Errorf("EvidenceOf(%T) = %v", p, got)
		}
	}
	for _, p := range []any{&events.Amended{}, &events.Withdrawn{}, &events.Planned{}, nil} {
		if got := events.EvidenceOf(p); got != nil {
			t.Errorf("EvidenceOf(%T) = %v", p, got)
		}
	}
}

func TestStatusOpen(t *testing.T) {
	open := map[events.Status]bool{
		events.StatusReported: true, events.StatusPlanned: true, events.StatusRectifying: true, events.StatusAwaiting: true,
		events.StatusCleared: false, events.StatusWithdrawn: false, "": false,
	}
	for s, want := range open {
		if s.Open() != want {
			t.Errorf("%q.Open() = %v", s, !want)
		}
	}
	if len(openStatuses) != 4 {
		t.Errorf("openStatuses = %v", openStatuses)
	}
	if !slices.Equal(events.ListLevels, []string{"county", "prefecture", "province"}) {
		t.Errorf("ListLevels = %v", events.ListLevels)
	}
	if !slices.Equal(events.Sources, []string{"inspection", "self-check", "third-party", "tip-off"}) {
		t.Errorf("Sources = %v", events.Sources)
	}
}

func TestSiteKey(t *testing.T) {
	if k := (events.Site{Name: "a", CreditCode: "X", ID: "y"}).Key(); k != "X" {
		t.Errorf("Key = %q", k)
	}
	if k := (events.Site{Name: "a", ID: "y"}).Key(); k != "y" {
		t.Errorf("Key = %q", k)
	}
	if k := (events.Site{Name: "a"}).Key(); k != "" {
		t.Errorf("Key = %q", k)
	}
}

func TestErrors(t *testing.T) {
	e := events.Errorf(events.KindRule, "plan_incomplete", "funds", "missing %d", 1)
	if e.Error() != "plan_incomplete: missing 1 (funds)" {
		t.Errorf("Error() = %q", e.Error())
	}
	if s := events.Errorf(events.KindConflict, "version_conflict", "", "v").Error(); s != "version_conflict: v" {
		t.Errorf("Error() = %q", s)
	}
	wrapped := fmt.Errorf("decide: %w", e)
	if events.KindOf(wrapped) != events.KindRule || events.ErrorOf(wrapped) != e {
		t.Error("ErrorOf does not unwrap")
	}
	foreign := errors.New("disk on fire")
	fe := events.ErrorOf(foreign)
	if fe.Kind != events.KindInternal || fe.Code != "internal" || !errors.Is(fe, foreign) || fe.Message == foreign.Error() {
		t.Errorf("foreign error: %+v", fe)
	}
	b, _ := json.Marshal(e)
	if string(b) != `{"code":"plan_incomplete","message":"missing 1","field":"funds"}` {
		t.Errorf("JSON = %s", b)
	}
	b, _ = json.Marshal(events.Errorf(events.KindInvalid, "x", "", "m"))
	if string(b) != `{"code":"x","message":"m"}` {
		t.Errorf("JSON without field = %s", b)
	}
}

func TestParseEventRefuses(t *testing.T) {
	for _, b := range []string{``, `null`, `{}`, `[]`, `{"specversion":"0.3","type":"hazard.reported","subject":"s"}`,
		`{"specversion":"1.0","subject":"s"}`, `{"specversion":"1.0","type":"hazard.reported"}`,
		`{"specversion":"1.0","type":"hazard.reported","subject":"s","time":"yesterday"}`, `{"specversion":"1.0"`} {
		if e, err := events.ParseEvent([]byte(b)); err == nil {
			t.Errorf("ParseEvent(%s) = %+v", b, e)
		}
	}
	e, err := events.ParseEvent([]byte(`{"specversion":"1.0","type":"hazard.exploded","subject":"s","data":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Payload(); err == nil {
		t.Error("Payload of an unknown type")
	}
	e, _ = events.ParseEvent([]byte(`{"specversion":"1.0","type":"rectification.progressed","subject":"s","data":{"percent":"x"}}`))
	if _, err := e.Payload(); err == nil {
		t.Error("Payload with a wrong type")
	}
}

func TestMarshalNoHTMLEscape(t *testing.T) {
	w := newWorld(t)
	w.do(events.ActReport, inspector, withFields(t, reportGeneral, map[string]any{"description": "<b>A&B</b> 甲"}))
	raw := w.raws[0]
	if !json.Valid(raw) || raw[len(raw)-1] == '\n' {
		t.Fatalf("stored bytes %q", raw)
	}
	if !contains(raw, `<b>A&B</b> 甲`) {
		t.Fatalf("stored bytes escape HTML or non-ASCII: %s", raw)
	}
	for _, k := range []string{`"specversion":"1.0"`, `"type":"hazard.reported"`, `"datacontenttype":"application/json"`, `"occurredat":`, `"commandid":`, `"prevhash":`, `"actorrole":"inspector"`} {
		if !contains(raw, k) {
			t.Errorf("stored bytes lack %s", k)
		}
	}
	if contains(raw, `"sig"`) {
		t.Error("empty sig stored")
	}
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
