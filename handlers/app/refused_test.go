package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
)

func TestRefusedCommandWritesNothing(t *testing.T) {
	n := startNode(t, t.TempDir(), jsstore.Config{}, false)
	a := newInstance(t, n, nil, false)
	a.svc.Evidence = func(_ context.Context, sha string) (bool, error) { return !strings.HasPrefix(sha, "0000"), nil }
	general := a.must(t, events.ActReport, "", inspector, reportGeneral).Hazard.ID
	major := a.must(t, events.ActReport, "", inspector, reportMajor).Hazard.ID
	done := a.must(t, events.ActReport, "", inspector, reportGeneral).Hazard.ID
	a.must(t, events.ActComplete, done, rectifier, bodyComplete)
	absent := events.NewID()
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	missing := `{"percent":10,"evidence":[{"sha256":"` + strings.Repeat("0", 64) + `"}]}`

	cases := []struct {
		name   string
		action string
		id     string
		actor  events.Actor
		body   string
		kind   events.Kind
		code   string
	}{
		{"clear a reported hazard", events.ActClear, general, verifier, bodyClear, events.KindRule, "invalid_transition"},
		{"list a general hazard", events.ActList, general, verifier, bodyList, events.KindRule, "list_requires_major"},
		{"progress a major hazard without a plan", events.ActProgress, major, rectifier, bodyProgress, events.KindRule, "invalid_transition"},
		{"a major plan without funds", events.ActPlan, major, rectifier, with(t, planFull, map[string]any{"funds": ""}), events.KindRule, "plan_incomplete"},
		{"the completer clears", events.ActClear, done, rectifier, bodyClear, events.KindRule, "completer_cannot_clear"},
		{"evidence not stored", events.ActProgress, general, rectifier, missing, events.KindRule, "evidence_missing"},
		{"percent over 100", events.ActProgress, general, rectifier, `{"percent":150}`, events.KindInvalid, "invalid_percent"},
		{"occurred in the future", events.ActProgress, general, rectifier, with(t, bodyProgress, map[string]any{"occurred_at": future}), events.KindInvalid, "occurred_in_future"},
		{"report in an unknown region", events.ActReport, "", inspector, with(t, reportGeneral, map[string]any{"region": "539999"}), events.KindInvalid, "unknown_region"},
		{"report with a deadline passed", events.ActReport, "", inspector, with(t, reportGeneral, map[string]any{"deadline": "2001-01-01"}), events.KindInvalid, "deadline_before_occurred"},
		{"extend to an earlier deadline", events.ActExtend, general, verifier, `{"deadline":"2099-01-01","reason":"x"}`, events.KindRule, "deadline_not_later"},
		{"unknown hazard", events.ActProgress, absent, rectifier, bodyProgress, events.KindNotFound, "hazard_not_found"},
		{"stale expected_version", events.ActProgress, general, rectifier, with(t, bodyProgress, map[string]any{"expected_version": 7}), events.KindConflict, "version_conflict"},
	}
	last, appends := n.lastSeq(t), a.log.appends.Load()
	for _, c := range cases {
		before, _ := a.idx.Get(c.id)
		_, err := a.exec(t, c.action, c.id, c.actor, c.body)
		if err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
		wantCode(t, err, c.kind, c.code)
		if got := n.lastSeq(t); got != last {
			t.Fatalf("%s: stream last seq %d, want %d", c.name, got, last)
		}
		if got := a.log.appends.Load(); got != appends {
			t.Fatalf("%s: the refused command reached the log", c.name)
		}
		if after, _ := a.idx.Get(c.id); after.Version != before.Version || after.Seq != before.Seq {
			t.Fatalf("%s: index changed from %d/%d to %d/%d", c.name, before.Version, before.Seq, after.Version, after.Seq)
		}
	}
	// The hazards still take commands afterwards.
	if res := a.must(t, events.ActProgress, general, rectifier, bodyProgress); res.Hazard.Version != 2 {
		t.Fatalf("progress after refusals: version %d", res.Hazard.Version)
	}
}
