package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"qingling/events"
)

// marshalPlain encodes v the way a client would resend it: no HTML escaping.
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// fuzzStates are hazards in every status, built once by real commands; each fuzz input
// works on a copy.
func fuzzStates(tb testing.TB) []*events.Hazard {
	var out []*events.Hazard
	for _, grade := range []string{events.GradeGeneral, events.GradeMajor} {
		for _, s := range allStatuses[1:] {
			w := build(tb, s, grade)
			if grade == events.GradeMajor && s == events.StatusRectifying {
				w.do(events.ActList, verifier, bodyList)
			}
			out = append(out, w.h)
		}
	}
	return out
}

func cloneHazard(h *events.Hazard) *events.Hazard {
	c := *h
	c.AmendSeqs = slices.Clone(h.AmendSeqs)
	return &c
}

// checkDomainError fails unless err is a well-formed *events.Error of one of kinds.
func checkDomainError(t *testing.T, where string, err error, kinds ...events.Kind) {
	t.Helper()
	var e *events.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %T %v is not an *events.Error", where, err, err)
	}
	if e.Code == "" || e.Message == "" || !slices.Contains(kinds, e.Kind) {
		t.Fatalf("%s: malformed or unexpected error %+v", where, e)
	}
}

func addCommandSeeds(f *testing.F) {
	idx := func(a string) uint8 { return uint8(slices.Index(events.Actions, a)) }
	// Every action's default body against every state (the index's high part picks the state,
	// see FuzzDecodeCommand; the last choice is no hazard).
	w := newWorld(f)
	for k := 0; k <= 2*(len(allStatuses)-1); k++ {
		for _, a := range events.Actions {
			for _, g := range []string{events.GradeGeneral, events.GradeMajor} {
				f.Add(uint8(k*len(events.Actions))+idx(a), []byte(defaultBody(w, a, g)))
			}
		}
	}
	valid := []struct{ a, body string }{
		{events.ActReport, withFields(f, reportMajor, map[string]any{"command_id": "0193f2c4-1111-7000-8000-000000000001", "occurred_at": "2025-03-10T09:30:00+08:00",
			"evidence": evidenceList(3), "site": map[string]any{"name": "甲公司", "credit_code": uscc(f, "91530100MA6K00000")}})},
		{events.ActReport, withFields(f, reportGeneral, map[string]any{"sector": "forest", "region": "532301", "site": map[string]any{"name": "某村", "id": "village-1"}, "source": "tip-off"})},
		{events.ActReport, withFields(f, reportGeneral, map[string]any{"id": absentID, "supersedes": "0193f2c4-0000-7000-8000-000000000002", "description": "<b>a&b</b>\n\tc"})},
		{events.ActPlan, `{"measures":"m"}`},
		{events.ActProgress, `{"percent":100,"note":"done","evidence":[{"sha256":"` + sha(3) + `","name":"p.jpg"}],"expected_version":3}`},
		{events.ActExtend, `{"deadline":"2025-12-31T18:00:00+08:00","reason":"r","occurred_at":"2025-03-10T11:00:00Z"}`},
		{events.ActAmend, `{"site":{"name":"乙"},"location":{"lat":24.9,"lon":102.5,"address":"x"}}`},
		{events.ActReopen, `{"reason":"r","deadline":"2025-06-30"}`},
		{events.ActList, `{"level":"province","authority":"云南省安委办","document":"云安办〔2025〕1号","deadline":"2025-05-31"}`},
		{events.ActGrade, `{"grade":"major","criterion":"chem-2017-01","reason":"r"}`},
		{events.ActClear, `{"method":"资料审核","evidence":[]}`},
		{events.ActReport, withFields(f, reportGeneral, map[string]any{"deadline": "9999-12-31T23:00:00-12:00"})}, // past year 9999 in Shanghai
		{events.ActExtend, `{"deadline":"9999-12-31T23:59:59-23:59","reason":"r"}`},
		{events.ActReport, strings.Replace(reportGeneral, `"grade"`, `"location":{"lat":-0,"lon":102.5},"Description":"case-folded key","grade"`, 1)},
	}
	for _, v := range valid {
		f.Add(idx(v.a), []byte(v.body))
	}
	hostile := []string{
		``, ` `, `null`, `[]`, `"x"`, `0`, `{`, `}`, `{}`, `{} {}`, `{"a":1}`, `{"reason":`, `{"reason":"r"}garbage`,
		"{\"reason\":\"\xff\"}", "\xef\xbb\xbf{}", strings.Repeat("[", 17), strings.Repeat("{\"a\":", 20) + "1" + strings.Repeat("}", 20),
		`{"percent":1e400}`, `{"percent":-0}`, `{"percent":9223372036854775808}`, `{"expected_version":0}`, `{"expected_version":-1}`,
		`{"occurred_at":"9999-12-31T23:59:59+08:00"}`, `{"occurred_at":"0000-01-01T00:00:00Z"}`, `{"deadline":"9999-12-31T23:00:00-23:59","reason":"r"}`,
		`{"deadline":"0000-01-01","reason":"r"}`, `{"command_id":"{0193f2c4-1111-7000-8000-000000000001}"}`,
		`{"description":"\u0000"}`, `{"description":"\ud800"}`, `{"description":null,"site":null,"location":null}`,
		`{"location":{"lat":"NaN","lon":1}}`, `{"location":{"lat":1e308,"lon":-1e308}}`, `{"Reason":"case","REASON":"dup","reason":"last"}`,
		`{"sector":"chem","sector":"mine"}`, `{"site":{"name":"a","credit_code":"91530100MA6K00000X"}}`,
		`{"evidence":[` + strings.Repeat(`{"sha256":"`+sha(1)+`"},`, 21) + `{"sha256":"` + sha(2) + `"}]}`,
		`{"reason":"` + strings.Repeat("\\\"", 100) + `"}`, `{"reason":"\u2028"}`, `{"grade":"major","criterion":"mine-tp-02","reason":"r"}`,
	}
	for i, h := range hostile {
		f.Add(uint8(i), []byte(h))
		f.Add(idx(events.ActReport), []byte(h))
	}
}

// FuzzDecodeCommand feeds any bytes to any action: decoding never panics and refuses with a
// domain error; an accepted body's payload re-encodes to JSON that decodes to the same
// payload; deciding it on a hazard in any status never panics, and an accepted event is
// stored, read back and evolved.
func FuzzDecodeCommand(f *testing.F) {
	addCommandSeeds(f)
	cat := catalog(f)
	states := fuzzStates(f)
	now := t0.Add(24 * time.Hour)
	f.Fuzz(func(t *testing.T, ai uint8, body []byte) {
		action := events.Actions[int(ai)%len(events.Actions)]
		hid := states[0].ID
		if action == events.ActReport {
			hid = ""
		}
		cmd, err := events.DecodeCommand(action, hid, body)
		if err != nil {
			if cmd != nil {
				t.Fatal("command returned with an error")
			}
			checkDomainError(t, "decode", err, events.KindInvalid, events.KindTooLarge)
			return
		}
		if cmd.Action != action || cmd.Payload == nil || (action != events.ActReport && cmd.HazardID != hid) {
			t.Fatalf("command %+v", cmd)
		}
		if cmd.CommandID != "" && events.CanonicalUUID("command_id", cmd.CommandID) != nil {
			t.Fatalf("non-canonical command id %q accepted", cmd.CommandID)
		}
		if cmd.HazardID != "" && events.CanonicalUUID("id", cmd.HazardID) != nil {
			t.Fatalf("non-canonical hazard id %q accepted", cmd.HazardID)
		}
		if cmd.ExpectedVersion != nil && *cmd.ExpectedVersion < 1 {
			t.Fatalf("expected_version %d accepted", *cmd.ExpectedVersion)
		}

		// The payload re-encodes to JSON that decodes again, to the same payload.
		b, err := marshalPlain(cmd.Payload)
		if err != nil || !json.Valid(b) {
			t.Fatalf("payload %#v does not re-encode: %v", cmd.Payload, err)
		}
		again, err := events.DecodeCommand(action, hid, b)
		if err != nil {
			if len(b) > events.MaxCommandBody && events.KindOf(err) == events.KindTooLarge {
				return // escaping grew it past the limit
			}
			t.Fatalf("re-encoded payload %s does not decode: %v", b, err)
		}
		b2, err := marshalPlain(again.Payload)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("payload changed on a round trip:\n%s\n%s", b, b2)
		}

		// Deciding never panics; what is accepted is stored, read back and evolved. The high
		// part of the action index picks the state (none, or a hazard in some status), so one
		// exec decides once and the minimizer stays fast.
		var h *events.Hazard
		if k := int(ai) / len(events.Actions) % (len(states) + 1); k < len(states) {
			h = cloneHazard(states[k])
		}
		c, err := events.DecodeCommand(action, hid, body) // Decide normalises the payload in place
		if err != nil {
			t.Fatalf("second decode: %v", err)
		}
		c.Actor = events.Actor{ID: verifier, Role: "verifier"}
		if c.CommandID == "" {
			c.CommandID = "0193f2c4-2222-7000-8000-000000000001"
		}
		events.ResolveIDs(c)
		var version int
		var status events.Status
		if h != nil {
			version, status = h.Version, h.Status
		}
		e, err := events.Decide(cat, h, c, now, events.DefaultSource)
		if err != nil {
			if e != nil {
				t.Fatal("event returned with an error")
			}
			checkDomainError(t, "decide", err, events.KindInvalid, events.KindRule, events.KindConflict, events.KindNotFound)
			return
		}
		if h != nil && (h.Version != version || h.Status != status) {
			t.Fatal("Decide changed the state")
		}
		checkAccepted(t, cat, h, e, c)
	})
}

func checkAccepted(t *testing.T, cat *events.Catalog, h *events.Hazard, e *events.Event, c *events.Command) {
	t.Helper()
	if e.Type != events.ActionType(c.Action) || e.ID != events.EventID(c.HazardID, c.CommandID) || e.Subject != c.HazardID {
		t.Fatalf("event envelope %+v", e)
	}
	wantPrev := events.HashString(events.GenesisHash(c.HazardID))
	if h != nil {
		wantPrev = h.PrevHash()
	}
	if e.PrevHash != wantPrev {
		t.Fatalf("prevhash %s, want %s", e.PrevHash, wantPrev)
	}
	raw, err := e.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	stored, err := events.ParseEvent(raw)
	if err != nil {
		t.Fatalf("ParseEvent(%s): %v", raw, err)
	}
	sb1, err1 := e.SigningBytes()
	sb2, err2 := stored.SigningBytes()
	if err1 != nil || err2 != nil || !bytes.Equal(sb1, sb2) {
		t.Fatalf("signing bytes unstable: %v %v\n%s\n%s", err1, err2, sb1, sb2)
	}
	p, err := stored.Payload()
	if err != nil {
		t.Fatalf("Payload: %v", err)
	}
	before, grade := 0, ""
	var prevStatus events.Status
	var prevDeadline time.Time
	if h != nil {
		before, grade, prevStatus, prevDeadline = h.Version, h.Grade, h.Status, h.Deadline()
	}
	cell, to, ok := lifecycleCell(c.Action, grade, prevStatus)
	if !ok {
		t.Fatalf("%s accepted on a %s hazard in status %q; the lifecycle table says %q", c.Action, grade, prevStatus, cell)
	}
	nh, err := events.Evolve(cat, h, stored, p, raw, 99)
	if err != nil {
		t.Fatalf("Evolve: %v", err)
	}
	if nh.Version != before+1 || nh.Status != to {
		t.Fatalf("%s from %q: version %d status %q, want %d %q", c.Action, prevStatus, nh.Version, nh.Status, before+1, to)
	}
	if nh.Deadline().IsZero() && nh.Status.Open() {
		t.Fatalf("open hazard without an effective deadline after %s: %s", c.Action, e.Data)
	}
	switch v := p.(type) {
	case *events.Reported:
		if nh.ReportDeadline.IsZero() || nh.Province == "" || nh.Prefecture == "" || nh.SiteKey == "" {
			t.Fatalf("reported hazard lacks deadline, path or site key: %+v from %s", nh, e.Data)
		}
		if v.Grade == events.GradeMajor && cat.CriterionValid(v.Criterion, v.Sector, e.OccurredAt) != nil {
			t.Fatalf("major report with criterion %q accepted", v.Criterion)
		}
	case *events.Extended:
		if !nh.Deadline().After(prevDeadline) {
			t.Fatalf("extension to %v not after %v", nh.Deadline(), prevDeadline)
		}
	case *events.Listed:
		if nh.Grade != events.GradeMajor || nh.ListDeadline.IsZero() {
			t.Fatalf("listed %s hazard, list deadline %v", nh.Grade, nh.ListDeadline)
		}
	case *events.Planned:
		if nh.Grade == events.GradeMajor && !nh.Planned5 {
			t.Fatalf("incomplete plan accepted for a major hazard: %s", e.Data)
		}
	case *events.Cleared:
		if c.Actor.ID == h.CompletedBy {
			t.Fatal("completer cleared")
		}
	}
	if e.OccurredAt.Before(nh.FoundAt.Time()) {
		t.Fatal("event occurred before the hazard was found")
	}
}

// FuzzParseEvent feeds any bytes to ParseEvent: it never panics, and what it accepts
// re-marshals to bytes that parse back to the same event, with stable signing bytes.
func FuzzParseEvent(f *testing.F) {
	w := build(f, events.StatusCleared, events.GradeMajor)
	w.do(events.ActReopen, verifier, bodyReopen)
	w.do(events.ActWithdraw, inspector, bodyWithdraw)
	for _, raw := range w.raws {
		f.Add(raw)
	}
	g := build(f, events.StatusAwaiting, events.GradeGeneral)
	g.do(events.ActReject, verifier, bodyReject)
	g.do(events.ActAmend, inspector, bodyAmend)
	g.do(events.ActGrade, verifier, gradeToMajor)
	g.do(events.ActList, verifier, bodyList)
	g.do(events.ActExtend, verifier, bodyExtend)
	for _, raw := range g.raws {
		f.Add(raw)
	}
	base := `{"specversion":"1.0","id":"x","source":"qingling/hub","type":"hazard.reported","subject":"s","time":"2025-03-10T10:00:00+08:00",` +
		`"datacontenttype":"application/json","occurredat":"2025-03-10T10:00:00+08:00","actor":"a","commandid":"c","prevhash":"p","data":`
	for _, h := range []string{
		``, `null`, `{}`, `[]`, `{"specversion":"1.0","type":"t","subject":"s"}`, base + `null}`, base + `{}}`, base + `{"lat":-0}}`,
		base + `1e400}`, base + `"\ud800"}`, base + `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}}`,
		base + `{"sector":"chem","region":"999999","site":{"name":"x"},"grade":"general","deadline":"nope"}}`,
		strings.Replace(base, "2025-03-10T10:00:00+08:00", "0000-01-01T00:00:00+23:59", 1) + `{}}`,
		strings.Replace(base, "2025-03-10T10:00:00+08:00", "9999-12-31T23:59:59-23:59", 1) + `{}}`,
		strings.Replace(base, `"type":"hazard.reported"`, `"type":"hazard.reported","TYPE":"hazard.cleared"`, 1) + `{}}`,
		base + `{"<&>":"\u2028"}}`, base + "{\"a\":\"\xff\"}}", base + `{}} trailing`, base + `{}`,
	} {
		f.Add([]byte(h))
	}
	cat := catalog(f)
	state := build(f, events.StatusRectifying, events.GradeMajor).h
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := events.ParseEvent(b)
		if err != nil {
			if e != nil {
				t.Fatal("event returned with an error")
			}
			return
		}
		if e.SpecVersion != "1.0" || e.Type == "" || e.Subject == "" {
			t.Fatalf("accepted %+v", e)
		}
		raw, err := e.Marshal()
		if err != nil {
			t.Fatalf("parsed event does not marshal: %v", err)
		}
		e2, err := events.ParseEvent(raw)
		if err != nil {
			t.Fatalf("marshalled event %s does not parse: %v", raw, err)
		}
		raw2, err := e2.Marshal()
		if err != nil || !bytes.Equal(raw, raw2) {
			t.Fatalf("not a fixpoint:\n%s\n%s", raw, raw2)
		}
		sb1, err1 := e.SigningBytes()
		sb2, err2 := e2.SigningBytes()
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(sb1, sb2) {
			t.Fatalf("signing bytes differ after a round trip: %v %v", err1, err2)
		}
		if err1 == nil {
			var v any
			if json.Unmarshal(sb1, &v) != nil {
				t.Fatalf("signing bytes are not JSON: %s", sb1)
			}
			if c, err := events.Canonical(v); err != nil || !bytes.Equal(c, sb1) {
				t.Fatalf("signing bytes are not canonical: %s", sb1)
			}
		}
		p, err := e.Payload()
		if err != nil {
			return
		}
		// Evolve trusts the log, but must not panic on whatever it holds.
		if _, ok := p.(*events.Reported); ok {
			if h, err := events.Evolve(cat, nil, e, p, b, 1); err != nil || h.Version != 1 || h.Status != events.StatusReported {
				t.Fatalf("Evolve of a report: %v", err)
			}
		} else if h, err := events.Evolve(cat, cloneHazard(state), e, p, b, 9); err != nil || h.Version != state.Version+1 {
			t.Fatalf("Evolve of %s: %v", e.Type, err)
		}
	})
}
