package app_test

import (
	"fmt"
	"sync"
	"testing"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
)

const racers = 16

// race sends racers progress commands to hazard id at once, alternating between the two
// servers; the first append of each server is held until both have decided.
func race(t *testing.T, gate *barrier, servers []*instance, id string, expected *int) ([]app.Result, []error) {
	t.Helper()
	gate.arm(len(servers))
	results, errs := make([]app.Result, racers), make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			body := fmt.Sprintf(`{"note":"第%d步","percent":%d}`, i, i)
			if expected != nil {
				body = with(t, body, map[string]any{"expected_version": *expected})
			}
			cmd, err := events.DecodeCommand(events.ActProgress, id, []byte(body))
			if err != nil {
				errs[i] = err
				return
			}
			cmd.Actor = rectifier
			results[i], errs[i] = servers[i%len(servers)].svc.Execute(ctxT(t), cmd)
		})
	}
	wg.Wait()
	if gate.timedOut.Load() {
		t.Fatal("the servers never appended at the same time")
	}
	return results, errs
}

func twoServers(t *testing.T) (*node, *barrier, []*instance) {
	n := startNode(t, t.TempDir(), jsstore.Config{}, false)
	gate := &barrier{}
	return n, gate, []*instance{newInstance(t, n, gate, false), newInstance(t, n, gate, false)}
}

func stales(servers []*instance) int64 {
	var s int64
	for _, in := range servers {
		s += in.log.stales.Load()
	}
	return s
}

func TestConcurrentExpectedVersionOneWins(t *testing.T) {
	n, _, servers := twoServers(t)
	rep := servers[0].must(t, events.ActReport, "", inspector, reportGeneral)
	id := rep.Hazard.ID
	for _, in := range servers {
		in.caughtUp(t, n)
	}
	one := 1
	results, errs := race(t, servers[0].log.gate, servers, id, &one)

	won := -1
	for i, err := range errs {
		if err == nil {
			if won >= 0 {
				t.Fatalf("commands %d and %d both won at expected_version 1", won, i)
			}
			won = i
			continue
		}
		wantCode(t, err, events.KindConflict, "version_conflict")
	}
	if won < 0 {
		t.Fatal("no command won")
	}
	if r := results[won]; r.Replayed || r.Hazard.Version != 2 || r.Hazard.Status != events.StatusRectifying {
		t.Fatalf("winner: %+v", r)
	}
	// The loser of the two held appends went through StaleError → WaitHazard → Decide.
	if s := stales(servers); s < 1 {
		t.Fatalf("%d stale appends: the optimistic-concurrency path was not exercised", s)
	}
	msgs, evs := history(t, n, id)
	if len(msgs) != 2 || evs[1].Type != events.TypeProgressed || evs[1].ID != results[won].EventID {
		t.Fatalf("history: %d events, want the report and the winner's progress", len(msgs))
	}
	for _, in := range servers {
		in.caughtUp(t, n)
		h, _ := in.idx.Get(id)
		if h.Version != 2 || h.Seq != msgs[1].Seq {
			t.Fatalf("index at version %d seq %d, want 2 and %d", h.Version, h.Seq, msgs[1].Seq)
		}
	}
	if got := n.lastSeq(t); got != msgs[1].Seq {
		t.Fatalf("stream last seq %d, want %d", got, msgs[1].Seq)
	}
}

func TestConcurrentWithoutExpectedVersionAllRedecided(t *testing.T) {
	n, gate, servers := twoServers(t)
	rep := servers[1].must(t, events.ActReport, "", inspector, reportGeneral)
	id := rep.Hazard.ID
	for _, in := range servers {
		in.caughtUp(t, n)
	}
	results, errs := race(t, gate, servers, id, nil)
	eventIDs, versions := map[string]int{}, map[int]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		r := results[i]
		if r.Replayed || versions[r.Hazard.Version] {
			t.Fatalf("command %d: %+v (replayed, or version %d twice)", i, r, r.Hazard.Version)
		}
		eventIDs[r.EventID] = i
		versions[r.Hazard.Version] = true
	}
	if s := stales(servers); s < 1 {
		t.Fatalf("%d stale appends: the re-decide path was not exercised", s)
	}
	for v := 2; v <= racers+1; v++ {
		if !versions[v] {
			t.Fatalf("no command answered with version %d: %v", v, versions)
		}
	}
	msgs, evs := history(t, n, id)
	if len(msgs) != racers+1 {
		t.Fatalf("history has %d events, want %d", len(msgs), racers+1)
	}
	notes := map[string]bool{}
	for _, e := range evs[1:] {
		i, ok := eventIDs[e.ID]
		if !ok || e.Type != events.TypeProgressed {
			t.Fatalf("event %s (%s) is no command's answer", e.ID, e.Type)
		}
		delete(eventIDs, e.ID)
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		note := p.(*events.Progressed).Note
		if notes[note] || note != fmt.Sprintf("第%d步", i) {
			t.Fatalf("event of command %d carries %q", i, note)
		}
		notes[note] = true
	}
	if len(eventIDs) != 0 {
		t.Fatalf("answers without stored events: %v", eventIDs)
	}
	for _, in := range servers {
		in.caughtUp(t, n)
		h, _ := in.idx.Get(id)
		if h.Version != racers+1 || h.Seq != msgs[racers].Seq || h.LastHash != hash(msgs[racers].Data) {
			t.Fatalf("index at version %d seq %d, want %d and %d", h.Version, h.Seq, racers+1, msgs[racers].Seq)
		}
	}
	// The chain goes on from either server.
	for _, in := range servers {
		in.must(t, events.ActProgress, id, rectifier, bodyProgress)
	}
	if msgs, _ := history(t, n, id); len(msgs) != racers+3 {
		t.Fatalf("history has %d events after two more, want %d", len(msgs), racers+3)
	}
}
