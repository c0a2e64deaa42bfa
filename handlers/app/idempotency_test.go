package app_test

import (
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
)

func wantReplay(tb testing.TB, res app.Result, first app.Result) {
	tb.Helper()
	if !res.Replayed || res.EventID != first.EventID || res.Hazard.ID != first.Hazard.ID {
		tb.Fatalf("retry answered %+v, want a replay of event %s on %s", res, first.EventID, first.Hazard.ID)
	}
}

func TestRetriedCommandIsRecordedOnce(t *testing.T) {
	const window = 500 * time.Millisecond
	n := startNode(t, t.TempDir(), jsstore.Config{Duplicates: window}, false)
	a := newInstance(t, n, nil, false)
	report := with(t, reportGeneral, map[string]any{"command_id": events.NewID()})
	cP := events.NewID()
	progress := with(t, bodyProgress, map[string]any{"command_id": cP})

	rep := a.must(t, events.ActReport, "", inspector, report)
	id := rep.Hazard.ID
	if rep.Replayed || rep.Hazard.Version != 1 {
		t.Fatalf("report: %+v", rep)
	}
	prog := a.must(t, events.ActProgress, id, rectifier, progress)
	if prog.Replayed || prog.Hazard.Version != 2 || prog.EventID != events.EventID(id, cP) {
		t.Fatalf("progress: %+v", prog)
	}
	onlyOnce := func(phase string) {
		t.Helper()
		msgs, evs := history(t, n, id)
		if len(msgs) != 2 || evs[0].ID != rep.EventID || evs[1].ID != prog.EventID {
			t.Fatalf("%s: history has %d events, want the report and one progress", phase, len(msgs))
		}
	}
	retry := func(phase string, in *instance) {
		t.Helper()
		for range 2 {
			wantReplay(t, in.must(t, events.ActReport, "", inspector, report), rep)
			res := in.must(t, events.ActProgress, id, rectifier, progress)
			wantReplay(t, res, prog)
			if res.Hazard.Version != 2 {
				t.Fatalf("%s: replay answered version %d", phase, res.Hazard.Version)
			}
		}
		onlyOnce(phase)
	}
	appends := a.log.appends.Load()
	retry("within the dedup window", a)

	waitForgotten(t, n, 20*window)
	retry("after the dedup window", a)
	if got := a.log.appends.Load(); got != appends {
		t.Fatalf("retries appended %d times", got-appends)
	}

	// A server started a week later, its index rebuilt from the stream.
	later := newInstance(t, n, nil, false)
	later.svc.Clock = func() time.Time { return time.Now().Add(7 * 24 * time.Hour) }
	later.caughtUp(t, n)
	retry("a week later on a rebuilt index", later)
	if got := later.log.appends.Load(); got != 0 {
		t.Fatalf("retries on the rebuilt index appended %d times", got)
	}
}

func TestReportWithKnownID(t *testing.T) {
	n := startNode(t, t.TempDir(), jsstore.Config{}, false)
	a := newInstance(t, n, nil, false)
	cR := events.NewID()
	report := with(t, reportGeneral, map[string]any{"command_id": cR})
	rep := a.must(t, events.ActReport, "", inspector, report)
	id := rep.Hazard.ID
	if id != events.ReportID(cR) {
		t.Fatalf("hazard id %s, want UUIDv5 of the command id %s", id, events.ReportID(cR))
	}
	seq := n.lastSeq(t)

	// Through lagging servers (their feed holds everything back): they do not know the hazard,
	// decide a new report, and the store tells them the event is there already.
	// The same command retried: answered as a replay without the feed.
	lag := newInstance(t, n, nil, true)
	wantReplay(t, lag.must(t, events.ActReport, "", inspector, report), rep)
	// The same command id with another body (same event id, same subject): an id conflict.
	lag2 := newInstance(t, n, nil, true)
	_, err := lag2.exec(t, events.ActReport, "", inspector, with(t, report, map[string]any{"description": "另一处隐患"}))
	wantCode(t, err, events.KindConflict, "id_conflict")

	other := map[string]map[string]any{
		"another body":   {"description": "另一处隐患 another finding"},
		"another county": {"region": "530102"},
		"another sector": {"sector": "trade"},
		"another grade":  {"grade": "major", "criterion": "chem-2017-05"},
	}
	for name, f := range other {
		for _, cmdID := range []string{cR, events.NewID()} {
			body := with(t, with(t, report, f), map[string]any{"id": id, "command_id": cmdID})
			_, err := a.exec(t, events.ActReport, "", inspector, body)
			wantCode(t, err, events.KindConflict, "id_conflict")
			if name == "another body" {
				continue
			}
			// Through a lagging server: with the same command id on the same subject the store
			// finds the same event id there (a duplicate, folded in without the feed); otherwise
			// only the expected-sequence check (the wildcard one for another subject) stops it.
			lag := newInstance(t, n, nil, true)
			if cmdID == cR && f["sector"] == nil && f["region"] == nil {
				_, err := lag.exec(t, events.ActReport, "", inspector, body)
				wantCode(t, err, events.KindConflict, "id_conflict")
				continue
			}
			errc := make(chan error, 1)
			go func() { _, err := lag.exec(t, events.ActReport, "", inspector, body); errc <- err }()
			eventually(t, 10*time.Second, name+" "+cmdID+": the lagging server's stale append", func() bool { return lag.log.stales.Load() > 0 })
			lag.src.resume()
			wantCode(t, <-errc, events.KindConflict, "id_conflict")
		}
	}
	// The same body with the known id, under the same or another command id: 200 with the hazard.
	for _, cmdID := range []string{cR, events.NewID()} {
		res := a.must(t, events.ActReport, "", inspector, with(t, report, map[string]any{"id": id, "command_id": cmdID}))
		if !res.Replayed || res.Hazard.ID != id || res.Hazard.Version != 1 || res.EventID != rep.EventID {
			t.Fatalf("same body again: %+v", res)
		}
	}
	if got := n.lastSeq(t); got != seq {
		t.Fatalf("stream last seq %d, want %d: a refused report was stored", got, seq)
	}
	if msgs, _ := history(t, n, id); len(msgs) != 1 {
		t.Fatalf("%d events for %s under any subject, want one report", len(msgs), id)
	}
}

func TestCommandIDReused(t *testing.T) {
	n := startNode(t, t.TempDir(), jsstore.Config{}, false)
	a := newInstance(t, n, nil, false)
	cR, cP := events.NewID(), events.NewID()
	id := a.must(t, events.ActReport, "", inspector, with(t, reportGeneral, map[string]any{"command_id": cR})).Hazard.ID
	id2 := a.must(t, events.ActReport, "", inspector, reportGeneral).Hazard.ID
	a.must(t, events.ActProgress, id, rectifier, with(t, bodyProgress, map[string]any{"command_id": cP}))
	seq := n.lastSeq(t)
	cases := []struct {
		name, action, id, body string
	}{
		{"progress id for complete", events.ActComplete, id, with(t, bodyComplete, map[string]any{"command_id": cP})},
		{"progress id on another hazard", events.ActProgress, id2, with(t, bodyProgress, map[string]any{"command_id": cP})},
		{"report id for progress", events.ActProgress, id, with(t, bodyProgress, map[string]any{"command_id": cR})},
		{"progress id for a report", events.ActReport, "", with(t, reportGeneral, map[string]any{"command_id": cP})},
		{"report id for a report of another id", events.ActReport, "", with(t, reportGeneral, map[string]any{"command_id": cR, "id": id2})},
	}
	for _, c := range cases {
		_, err := a.exec(t, c.action, c.id, rectifier, c.body)
		if err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
		wantCode(t, err, events.KindConflict, "command_id_reused")
	}
	if got := n.lastSeq(t); got != seq {
		t.Fatalf("stream last seq %d, want %d", got, seq)
	}
}
