package auditlog_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/auditlog"
	"qingling/projections/audit"
)

const tamperHazards = 60

func TestUntouchedLogPasses(t *testing.T) {
	r := newRig(t, tamperHazards)
	rep := r.verify(nil)
	if !rep.OK() {
		t.Fatalf("an untouched log has problems: %v", rep.Problems)
	}
	if rep.Events == 0 || rep.Covered != rep.Events || rep.Pending != 0 || rep.Checkpoints == 0 || rep.Hazards != tamperHazards {
		t.Fatalf("report %+v", rep)
	}
	// Events after the last checkpoint are pending, not problems.
	r.exec(events.ActReport, "", events.Actor{ID: "insp-1", Role: events.RoleInspector}, reportBody, time.Now().Add(-time.Minute))
	rep = r.verify(nil)
	if !rep.OK() || rep.Pending != 1 {
		t.Fatalf("one event after the last checkpoint: ok=%v pending=%d %v", rep.OK(), rep.Pending, rep.Problems)
	}
}

const reportBody = `{"sector":"trade","region":"530102","site":{"name":"五华制造厂"},"grade":"general","description":"粉尘清扫不及时","source":"inspection","deadline":"2099-01-31"}`

// An event published straight onto a hazard's subject, bypassing the service, with a correct
// prevhash and a valid lifecycle step: only the checkpoints can tell.
func TestForgedEventIsFound(t *testing.T) {
	r := newRig(t, tamperHazards)
	var target events.Hazard
	r.svc.Index.Each(func(h *events.Hazard) bool {
		if h.Status.Open() {
			target = *h
			return false
		}
		return true
	})
	if target.ID == "" {
		t.Fatal("no open hazard in the sample")
	}
	desc := "伪造：隐患已消除"
	cmd := &events.Command{Action: events.ActAmend, HazardID: target.ID, CommandID: events.NewID(),
		Actor: events.Actor{ID: target.ReportedBy, Role: events.RoleInspector}, Payload: &events.Amended{Description: &desc}}
	ev, err := events.Decide(r.cat, &target, cmd, target.UpdatedAt.Time().Add(time.Hour), events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := ev.Marshal()
	ack, err := r.js.PublishMsg(r.ctx, &nats.Msg{Subject: target.Subject(), Data: raw, Header: nats.Header{jetstream.MsgIDHeader: []string{ev.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	// The server carries on; its next checkpoint vouches for the log up to its end.
	r.checkpoint()
	rep := r.verify(nil)
	want(t, rep, audit.CodeNotAppended, ack.Sequence, target.ID)
	if len(rep.Problems) != 1 {
		t.Fatalf("want exactly the forged event, got %v", rep.Problems)
	}
}

// A backup in which one event's payload was altered, restored over the log: the server
// cannot notice (it trusts its stream), verify can.
func TestAlteredPayloadIsFound(t *testing.T) {
	r := newRig(t, tamperHazards)
	id := r.hazardWith(3)
	victim, next := r.seqOf[id][0], r.seqOf[id][1]
	msgs := r.messages()
	for i := range msgs {
		if msgs[i].Seq != victim {
			continue
		}
		e, err := events.ParseEvent(msgs[i].Data)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		_ = json.Unmarshal(e.Data, &d)
		d["description"] = "已篡改的描述"
		e.Data, _ = json.Marshal(d)
		msgs[i].Data, _ = e.Marshal()
	}
	r.rebuild("HAZARDS", jsstore.StreamConfig(jsstore.Config{}), msgs)
	rep := r.verify(nil)
	want(t, rep, audit.CodeHashMismatch, victim, id, audit.CodeBrokenChain)
	want(t, rep, audit.CodeBrokenChain, next, id, audit.CodeHashMismatch)

	// Altering the last event of a hazard breaks no chain: the checkpoint still names it.
	r2 := newRig(t, tamperHazards)
	id2 := r2.hazardWith(2)
	last := r2.seqOf[id2][len(r2.seqOf[id2])-1]
	msgs = r2.messages()
	for i := range msgs {
		if msgs[i].Seq == last {
			msgs[i].Data = []byte(strings.Replace(string(msgs[i].Data), `"actor":"`, `"actor":"x`, 1))
		}
	}
	r2.rebuild("HAZARDS", jsstore.StreamConfig(jsstore.Config{}), msgs)
	rep = r2.verify(nil)
	want(t, rep, audit.CodeHashMismatch, last, id2, audit.CodeRefused)
}

// The operator deletes the stream (DenyDelete cannot be switched off, but a stream can be
// deleted) and restores it from a backup with one message missing.
func TestRestoredWithOneMissingIsFound(t *testing.T) {
	r := newRig(t, tamperHazards)
	id := r.hazardWith(3)
	gone := r.seqOf[id][1]
	msgs := r.messages()
	var kept []audit.Msg
	for _, m := range msgs {
		if m.Seq != gone {
			kept = append(kept, m)
		}
	}
	r.rebuild("HAZARDS", jsstore.StreamConfig(jsstore.Config{}), kept)
	rep := r.verify(nil)
	allowed := []string{audit.CodeMoved, audit.CodeBrokenChain, audit.CodeRefused, audit.CodeTruncated}
	want(t, rep, audit.CodeRemoved, gone, id, allowed...)
	// The hazard's next event chains to the missing one: it now sits one seq lower.
	want(t, rep, audit.CodeBrokenChain, r.seqOf[id][2]-1, id, append(allowed, audit.CodeRemoved)...)
	if gone < uint64(len(msgs)) {
		found := false
		for _, p := range rep.Problems {
			found = found || (p.Code == audit.CodeMoved && p.Seq == gone+1)
		}
		if !found {
			t.Errorf("the events after the removed one are not reported as moved: %v", rep.Problems)
		}
	}
}

// The last events of the log cut off, and the checkpoint that vouched for them removed too:
// only the auditor's exported copy can show it.
func TestTruncatedTailIsFoundWithExportedCheckpoints(t *testing.T) {
	r := newRig(t, tamperHazards)
	insp := events.Actor{ID: "insp-1", Role: events.RoleInspector}
	var tail []uint64
	hazardOf := map[uint64]string{}
	for i := 0; i < 3; i++ {
		res := r.exec(events.ActReport, "", insp, reportBody, time.Now().Add(-time.Minute))
		tail = append(tail, res.Hazard.Seq)
		hazardOf[res.Hazard.Seq] = res.Hazard.ID
	}
	r.checkpoint()
	exported, _, err := auditlog.ReadCheckpoints(r.ctx, r.js)
	if err != nil || len(exported) < 2 {
		t.Fatalf("%d checkpoints, %v", len(exported), err)
	}
	msgs := r.messages()
	cps := r.checkpointMsgs()
	r.rebuild("HAZARDS", jsstore.StreamConfig(jsstore.Config{}), msgs[:len(msgs)-3])
	r.rebuild(auditlog.CheckpointStream, auditlog.CheckpointStreamConfig(1), cps[:len(cps)-1])

	// With only what the server holds, the cut is invisible.
	if rep := r.verify(nil); !rep.OK() {
		t.Fatalf("without the exported copy: %v", rep.Problems)
	}
	rep := r.verify(exported)
	for _, seq := range tail {
		want(t, rep, audit.CodeTruncated, seq, hazardOf[seq], audit.CodeCheckpointMissing)
	}
	want(t, rep, audit.CodeCheckpointMissing, tail[2], "", audit.CodeTruncated)
}

func TestCheckpointsResumeAfterRestart(t *testing.T) {
	r := newRig(t, 5)
	first, _, _ := auditlog.ReadCheckpoints(r.ctx, r.js)
	// A new checkpointer with the same key continues the chain.
	pub, _ := r.key.PublicKey()
	cp2 := &auditlog.Checkpointer{JS: r.js, Recorder: r.rec, Instance: pub, Sign: r.key.Sign, Stream: "HAZARDS"}
	if err := cp2.Start(r.ctx); err != nil {
		t.Fatal(err)
	}
	r.exec(events.ActReport, "", events.Actor{ID: "insp-1", Role: events.RoleInspector}, reportBody, time.Now().Add(-time.Minute))
	c, err := cp2.Checkpoint(r.ctx, true)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	// The first run did not stop cleanly (no final checkpoint): the restart says so first.
	all, _, _ := auditlog.ReadCheckpoints(r.ctx, r.js)
	restart := all[len(first)]
	if !restart.Restart || restart.N != uint64(len(first))+1 || restart.Prev != first[len(first)-1].Digest() || restart.Count != 0 {
		t.Fatalf("restart marker %+v does not follow %d", restart, len(first))
	}
	if c.N != uint64(len(first))+2 || c.Prev != restart.Digest() || !c.Final || c.Restart {
		t.Fatalf("resumed checkpoint %+v does not follow the restart marker", c)
	}
	if rep := r.verify(nil); !rep.OK() || rep.Pending != 0 {
		t.Fatalf("after a restart: %+v", rep)
	}
	// Nothing new: no checkpoint.
	if c, err := cp2.Checkpoint(r.ctx, false); c != nil || err != nil {
		t.Fatalf("an idle checkpoint was written: %v %v", c, err)
	}
}
