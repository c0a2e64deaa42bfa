package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/projections"
)

type step struct {
	action string
	actor  events.Actor
	body   string
}

func TestRestartKeepsEveryHistory(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, jsstore.Config{}, false)
	a := newInstance(t, n, nil, false)
	lives := [][]step{
		{{events.ActReport, inspector, reportGeneral}, {events.ActProgress, rectifier, bodyProgress}, {events.ActComplete, rectifier, bodyComplete},
			{events.ActClear, verifier, bodyClear}, {events.ActReopen, verifier, bodyReopen}},
		{{events.ActReport, inspector, reportMajor}, {events.ActPlan, rectifier, planFull}, {events.ActProgress, rectifier, bodyProgress},
			{events.ActExtend, verifier, bodyExtend}},
		{{events.ActReport, inspector, reportGeneral}, {events.ActWithdraw, inspector, bodyWithdraw}},
		{{events.ActReport, inspector, reportGeneral}, {events.ActAmend, inspector, bodyAmend}, {events.ActGrade, verifier, gradeToMajor},
			{events.ActList, verifier, bodyList}},
	}
	ids := make([]string, len(lives))
	var cmdIDs []string // one recorded command id per hazard, to retry after the restart
	// Interleave the hazards, so that their events are scattered over the stream.
	for i := 0; ; i++ {
		more := false
		for h, life := range lives {
			if i >= len(life) {
				continue
			}
			more = true
			cid := events.NewID()
			res := a.must(t, life[i].action, ids[h], life[i].actor, with(t, life[i].body, map[string]any{"command_id": cid}))
			ids[h] = res.Hazard.ID
			if i == 1 {
				cmdIDs = append(cmdIDs, cid)
			}
		}
		if !more {
			break
		}
	}
	type record struct {
		state events.Hazard
		raws  [][]byte
	}
	before := map[string]record{}
	for h, id := range ids {
		state, _ := a.idx.Get(id)
		msgs, _ := history(t, n, id)
		if state.Version != len(lives[h]) || len(msgs) != state.Version || state.Seq != msgs[len(msgs)-1].Seq {
			t.Fatalf("hazard %d: version %d seq %d, history of %d", h, state.Version, state.Seq, len(msgs))
		}
		r := record{state: state}
		for _, m := range msgs {
			r.raws = append(r.raws, m.Data)
		}
		before[id] = r
	}
	last := n.lastSeq(t)

	a.stop()
	n.stop()
	n = startNode(t, dir, jsstore.Config{}, false)
	if got := n.lastSeq(t); got != last {
		t.Fatalf("after the restart the stream ends at %d, before at %d", got, last)
	}
	b := newInstance(t, n, nil, false)
	b.caughtUp(t, n)
	if b.idx.Len() != len(ids) {
		t.Fatalf("rebuilt index holds %d hazards, want %d", b.idx.Len(), len(ids))
	}
	for h, id := range ids {
		want := before[id]
		got, ok := b.idx.Get(id)
		if !ok {
			t.Fatalf("hazard %d lost", h)
		}
		// The state the command path folded in equals the one replay builds from the log.
		if sameState(t, got, want.state) != "" {
			t.Fatalf("hazard %d rebuilt from the log differs from the command path's: %s", h, sameState(t, got, want.state))
		}
		msgs, _ := history(t, n, id) // checks the chain
		if len(msgs) != len(want.raws) {
			t.Fatalf("hazard %d: %d events after the restart, %d before", h, len(msgs), len(want.raws))
		}
		for i, m := range msgs {
			if !bytes.Equal(m.Data, want.raws[i]) {
				t.Fatalf("hazard %d event %d changed across the restart", h, i)
			}
		}
		// A command recorded before the restart is still answered as recorded.
		cmd := lives[h][1]
		res, err := b.exec(t, cmd.action, id, cmd.actor, with(t, cmd.body, map[string]any{"command_id": cmdIDs[h]}))
		if err != nil || !res.Replayed || res.Hazard.Version != want.state.Version {
			t.Fatalf("hazard %d: retry after the restart: %+v, %v", h, res, err)
		}
	}
	if got := n.lastSeq(t); got != last {
		t.Fatalf("retries after the restart stored events (last seq %d, was %d)", got, last)
	}

	// New commands continue each chain: the major hazard progresses, the reopened one is planned.
	res := b.must(t, events.ActProgress, ids[1], rectifier, bodyProgress)
	res2 := b.must(t, events.ActPlan, ids[0], rectifier, planFull)
	for _, r := range []struct {
		id      string
		version int
		want    events.Status
		got     events.Hazard
	}{{ids[1], 5, events.StatusRectifying, res.Hazard}, {ids[0], 6, events.StatusPlanned, res2.Hazard}} {
		msgs, evs := history(t, n, r.id)
		if len(msgs) != r.version || r.got.Version != r.version || r.got.Status != r.want || r.got.Seq != msgs[len(msgs)-1].Seq {
			t.Fatalf("after the restart: %s at version %d status %s, history of %d", r.id, r.got.Version, r.got.Status, len(msgs))
		}
		if evs[len(evs)-1].PrevHash != events.HashString(before[r.id].state.LastHash) {
			t.Fatal("the first event after the restart does not chain to the last one before")
		}
	}
}

// sameState compares two states field by field, the unexported-to-JSON ones included; it
// returns "" when they are the same.
func sameState(tb testing.TB, a, b events.Hazard) string {
	tb.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		tb.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		tb.Fatal(err)
	}
	switch {
	case !bytes.Equal(ja, jb):
		return fmt.Sprintf("%s\nvs\n%s", ja, jb)
	case a.ReportDeadline != b.ReportDeadline || a.PlanDeadline != b.PlanDeadline || a.ExtDeadline != b.ExtDeadline:
		return "deadlines differ"
	case a.ReportSeq != b.ReportSeq || !slices.Equal(a.AmendSeqs, b.AmendSeqs) || a.LastHash != b.LastHash:
		return "report seq, amend seqs or last hash differ"
	case a.Overdue(b.UpdatedAt.Time()) != b.Overdue(b.UpdatedAt.Time()) || !a.Deadline().Equal(b.Deadline()):
		return "deadline or overdue differ"
	}
	return ""
}

// getSpy counts reads by sequence.
type getSpy struct {
	app.Log
	gets atomic.Int64
}

func (l *getSpy) Get(ctx context.Context, seq uint64) (jsstore.Msg, error) {
	l.gets.Add(1)
	return l.Log.Get(ctx, seq)
}

// TestReplayedHazardResolvesItsHash: an index a replay built (a cold start's catch-up, which
// hashes no event) knows no hazard's last hash; the first command on a hazard reads its last
// event once by sequence and chains to it, later ones read nothing; a hazard with no new
// command is never read.
func TestReplayedHazardResolvesItsHash(t *testing.T) {
	n := startNode(t, t.TempDir(), jsstore.Config{}, false)
	a := newInstance(t, n, nil, false)
	one := a.must(t, events.ActReport, "", inspector, reportMajor).Hazard
	planCmd := events.NewID()
	one = a.must(t, events.ActPlan, one.ID, rectifier, with(t, planFull, map[string]any{"command_id": planCmd})).Hazard
	two := a.must(t, events.ActReport, "", inspector, reportGeneral).Hazard
	a.stop()

	cat, _ := events.LoadCatalog()
	idx := projections.NewIndex(cat)
	if _, err := projections.Replay(ctxT(t), n.store, idx, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{one.ID, two.ID} {
		if h, _ := idx.Get(id); !h.HashUnknown {
			t.Fatalf("hazard %s: replayed with a known hash", id)
		}
	}
	spy := &getSpy{Log: n.store}
	svc := &app.Service{Catalog: cat, Index: idx, Log: spy}
	run := func(action, id string, actor events.Actor, body string) events.Hazard {
		cmd, err := events.DecodeCommand(action, id, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Actor = actor
		res, err := svc.Execute(ctxT(t), cmd)
		if err != nil {
			t.Fatalf("%s %s: %v", action, id, err)
		}
		return res.Hazard
	}
	// A retry of a recorded command is answered without the hash: nothing is read.
	if h := run(events.ActPlan, one.ID, rectifier, with(t, planFull, map[string]any{"command_id": planCmd})); h.Version != 2 || spy.gets.Load() != 0 {
		t.Fatalf("retry after the replay: version %d, %d events read by sequence", h.Version, spy.gets.Load())
	}
	run(events.ActProgress, one.ID, rectifier, bodyProgress)
	if got := spy.gets.Load(); got != 1 {
		t.Fatalf("first command after the replay read %d events by sequence, want 1", got)
	}
	if h, _ := idx.Get(one.ID); h.HashUnknown {
		t.Fatal("the index still does not know the hash after a command")
	}
	run(events.ActProgress, one.ID, rectifier, bodyProgress)
	if got := spy.gets.Load(); got != 1 {
		t.Fatalf("second command read %d events by sequence in all, want 1", got)
	}
	if _, evs := history(t, n, one.ID); len(evs) != 4 { // checks the chain
		t.Fatalf("history of %d events, want 4", len(evs))
	}
	if h, _ := idx.Get(two.ID); !h.HashUnknown {
		t.Fatal("a hazard without a new command was resolved")
	}
}
