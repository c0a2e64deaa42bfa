package audit_test

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/projections/audit"
)

// memLog builds a log in memory through Decide, as the service would, and checkpoints it.
type memLog struct {
	t     *testing.T
	cat   *events.Catalog
	msgs  []audit.Msg
	state map[string]*events.Hazard
	acks  []audit.Acked
	at    time.Time
}

func newMemLog(t *testing.T) *memLog {
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return &memLog{t: t, cat: cat, state: map[string]*events.Hazard{}, at: time.Date(2025, 3, 1, 9, 0, 0, 0, events.Shanghai)}
}

// do decides a command and appends its event; kp, when set, signs it.
func (l *memLog) do(action, id string, actor events.Actor, body string, kp nkeys.KeyPair) string {
	l.t.Helper()
	l.at = l.at.Add(time.Hour)
	cmd, err := events.DecodeCommand(action, id, []byte(body))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd.Actor, cmd.CommandID, cmd.OccurredAt = actor, events.NewID(), l.at
	if kp != nil {
		if err := events.SignCommand(l.cat, cmd, kp.Sign); err != nil {
			l.t.Fatal(err)
		}
	}
	events.ResolveIDs(cmd)
	ev, err := events.Decide(l.cat, l.state[cmd.HazardID], cmd, l.at.Add(time.Minute), events.DefaultSource)
	if err != nil {
		l.t.Fatalf("%s: %v", action, err)
	}
	l.append(ev, "")
	return cmd.HazardID
}

func (l *memLog) append(ev *events.Event, subject string) {
	l.t.Helper()
	raw, _ := ev.Marshal()
	h := l.state[ev.Subject]
	if subject == "" {
		if h != nil {
			subject = h.Subject()
		} else {
			p, _ := ev.Payload()
			r := p.(*events.Reported)
			prov, pref, _ := l.cat.Path(r.Region)
			subject = events.Subject(r.Sector, prov, pref, r.Region, ev.Subject)
		}
	}
	seq := uint64(len(l.msgs) + 1)
	l.msgs = append(l.msgs, audit.Msg{Seq: seq, Subject: subject, Data: raw, MsgID: ev.ID})
	l.acks = append(l.acks, audit.Acked{Seq: seq, Hazard: ev.Subject, Hash: sha256.Sum256(raw)})
	p, _ := ev.Payload()
	if nh, err := events.Evolve(l.cat, h, ev, p, raw, seq); err == nil {
		l.state[ev.Subject] = nh
	}
}

func (l *memLog) verify(opts audit.Options) audit.Report {
	opts.Catalog = l.cat
	v := audit.New(opts)
	for _, m := range l.msgs {
		v.Add(m)
	}
	return v.Finish()
}

func codes(rep audit.Report) string {
	var c []string
	for _, p := range rep.Problems {
		c = append(c, p.Code)
	}
	return strings.Join(c, ",")
}

func only(t *testing.T, rep audit.Report, code string, seq uint64, hazard string) {
	t.Helper()
	if len(rep.Problems) != 1 || rep.Problems[0].Code != code || rep.Problems[0].Seq != seq || rep.Problems[0].Hazard != hazard {
		t.Fatalf("want one %s at seq %d (hazard %s), got %v", code, seq, hazard, rep.Problems)
	}
}

var (
	insp = events.Actor{ID: "insp-1", Role: events.RoleInspector}
	rect = events.Actor{ID: "rect-1", Role: events.RoleRectifier}
	ver  = events.Actor{ID: "ver-1", Role: events.RoleVerifier}
)

const (
	report   = `{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司"},"grade":"general","description":"储罐区防火堤破损","source":"inspection","deadline":"2099-04-30"}`
	progress = `{"note":"已完成一半","percent":50}`
	complete = `{"note":"整改完成"}`
	clear    = `{"method":"on-site","note":"合格"}`
)

func TestCleanLogPasses(t *testing.T) {
	l := newMemLog(t)
	id := l.do(events.ActReport, "", insp, report, nil)
	l.do(events.ActProgress, id, rect, progress, nil)
	l.do(events.ActComplete, id, rect, complete, nil)
	l.do(events.ActClear, id, ver, clear, nil)
	rep := l.verify(audit.Options{})
	if !rep.OK() || rep.Events != 4 || rep.Hazards != 1 {
		t.Fatalf("%+v", rep)
	}
}

func TestLifecycleRefusalsAreFound(t *testing.T) {
	l := newMemLog(t)
	id := l.do(events.ActReport, "", insp, report, nil)
	l.do(events.ActProgress, id, rect, progress, nil)
	l.do(events.ActComplete, id, rect, complete, nil)
	// The completer clears its own work: Decide refuses that; here it is forged with a good chain.
	h := *l.state[id]
	ev := forge(t, l, &h, events.ActClear, rect, &events.Cleared{Method: "on-site"})
	l.append(ev, "")
	rep := l.verify(audit.Options{})
	only(t, rep, audit.CodeRefused, 4, id)
	if !strings.Contains(rep.Problems[0].Message, "completer_cannot_clear") {
		t.Fatalf("message %q does not name the rule", rep.Problems[0].Message)
	}
}

// forge makes an event directly, bypassing Decide's refusals, with a correct chain.
func forge(t *testing.T, l *memLog, h *events.Hazard, action string, actor events.Actor, p any) *events.Event {
	t.Helper()
	l.at = l.at.Add(time.Hour)
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	cid := events.NewID()
	return &events.Event{SpecVersion: "1.0", ID: events.EventID(h.ID, cid), Source: events.DefaultSource, Type: events.ActionType(action),
		Subject: h.ID, Time: l.at, DataContentType: "application/json", OccurredAt: l.at, Actor: actor.ID, ActorRole: actor.Role,
		CommandID: cid, PrevHash: h.PrevHash(), Data: data}
}

func TestSameHazardUnderTwoSubjects(t *testing.T) {
	l := newMemLog(t)
	id := l.do(events.ActReport, "", insp, report, nil)
	h := *l.state[id]
	ev := forge(t, l, &h, events.ActProgress, rect, &events.Progressed{Percent: 10})
	l.append(ev, events.Subject("mine", h.Province, h.Prefecture, h.Region, id))
	rep := l.verify(audit.Options{})
	only(t, rep, audit.CodeTwoSubjects, 2, id)
}

func TestGapsAreFound(t *testing.T) {
	l := newMemLog(t)
	id := l.do(events.ActReport, "", insp, report, nil)
	l.do(events.ActProgress, id, rect, progress, nil)
	l.do(events.ActComplete, id, rect, complete, nil)
	l.msgs = l.msgs[1:] // the log starts at seq 2: its report is gone
	rep := l.verify(audit.Options{})
	if codes(rep) != "gap,broken_chain,refused" || rep.Problems[0].Seq != 1 || rep.Problems[1].Hazard != id {
		t.Fatalf("%v", rep.Problems)
	}
	// A subject-filtered walk does not report gaps.
	if rep := l.verify(audit.Options{Partial: true}); codes(rep) != "broken_chain,refused" {
		t.Fatalf("partial: %v", rep.Problems)
	}
}

func TestSignaturesInTheLog(t *testing.T) {
	l := newMemLog(t)
	oldKey, _ := nkeys.CreateUser()
	newKey, _ := nkeys.CreateUser()
	other, _ := nkeys.CreateUser()
	oldPub, _ := oldKey.PublicKey()
	newPub, _ := newKey.PublicKey()
	otherPub, _ := other.PublicKey()
	id := l.do(events.ActReport, "", insp, report, oldKey) // signed before the rotation
	l.do(events.ActProgress, id, rect, progress, other)    // the rectifier's key
	l.do(events.ActComplete, id, rect, complete, nil)
	l.do(events.ActClear, id, ver, clear, newKey) // ver signs with a key that is insp's
	keys := audit.Keys{"insp-1": {oldPub, newPub}, "rect-1": {otherPub}}
	rep := l.verify(audit.Options{Keys: keys, RequireSigned: []string{events.RoleRectifier}})
	// The rotated key's old signature verifies; an unsigned rectifier event and a verifier
	// without keys are reported.
	if codes(rep) != "unsigned,unknown_signer" || rep.Problems[0].Seq != 3 || rep.Problems[1].Seq != 4 || rep.SigChecked != 2 {
		t.Fatalf("%+v", rep)
	}
	// Another key, and one changed byte of a signed event, fail.
	keys["ver-1"] = []string{oldPub}
	rep = l.verify(audit.Options{Keys: keys})
	only(t, rep, audit.CodeBadSignature, 4, id)
	e, _ := events.ParseEvent(l.msgs[1].Data)
	e.Data = []byte(strings.Replace(string(e.Data), "50", "51", 1))
	l.msgs[1].Data, _ = e.Marshal()
	keys["ver-1"] = []string{newPub}
	rep = l.verify(audit.Options{Keys: keys})
	if codes(rep) != "bad_signature,broken_chain" || rep.Problems[0].Seq != 2 || rep.Problems[1].Seq != 3 {
		t.Fatalf("%v", rep.Problems)
	}
}

func TestCheckpointTampering(t *testing.T) {
	l := newMemLog(t)
	id := l.do(events.ActReport, "", insp, report, nil)
	l.do(events.ActProgress, id, rect, progress, nil)
	srv, _ := nkeys.CreateServer()
	pub, _ := srv.PublicKey()
	w := audit.Writer{Instance: pub, Stream: "HAZARDS", Sign: srv.Sign}
	c1, err := w.Next(l.acks, 2, l.at, false)
	if err != nil {
		t.Fatal(err)
	}
	w.Advance(c1)
	l.acks = nil
	l.do(events.ActComplete, id, rect, complete, nil)
	c2, _ := w.Next(l.acks, 3, l.at, false)
	w.Advance(c2)

	rep := l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{c1, c2}})
	if !rep.OK() || rep.Covered != 3 || rep.Checkpoints != 2 {
		t.Fatalf("%+v", rep)
	}
	// A checkpoint whose claim was changed no longer verifies, and does not count: what it
	// covered is pending again.
	bad := *c2
	bad.Through = 99
	rep = l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{c1, &bad}})
	if codes(rep) != "checkpoint_signature" || rep.Pending != 1 || rep.Covered != 2 {
		t.Fatalf("%v", rep.Problems)
	}
	// A checkpoint removed from the middle of the chain.
	rep = l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{c2}})
	if codes(rep) != "checkpoint_chain,not_appended,not_appended" {
		t.Fatalf("%v", rep.Problems)
	}
	// Pinned server keys: another instance's checkpoints are not trusted.
	rep = l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{c1, c2}, ServerKeys: []string{"NOTTHEKEY"}})
	if !strings.HasPrefix(codes(rep), "checkpoint_untrusted") || rep.Covered != 0 {
		t.Fatalf("%v", rep.Problems)
	}
	// Serialised and parsed, a checkpoint is the same.
	b, _ := c2.Marshal()
	back, err := audit.ParseCheckpoint(b)
	if err != nil || back.Digest() != c2.Digest() || back.VerifySig() != nil {
		t.Fatalf("round trip: %v", err)
	}
}

func TestSeveralInstances(t *testing.T) {
	l := newMemLog(t)
	a, _ := nkeys.CreateServer()
	b, _ := nkeys.CreateServer()
	pa, _ := a.PublicKey()
	pb, _ := b.PublicKey()
	wa := audit.Writer{Instance: pa, Sign: a.Sign}
	wb := audit.Writer{Instance: pb, Sign: b.Sign}
	// B announces itself with an empty checkpoint when it starts, before it appends.
	cb0, _ := wb.Next(nil, 0, l.at, false)
	wb.Advance(cb0)
	id := l.do(events.ActReport, "", insp, report, nil) // seq 1 by A
	l.do(events.ActProgress, id, rect, progress, nil)   // seq 2 by B
	l.do(events.ActComplete, id, rect, complete, nil)   // seq 3 by A
	ca, _ := wa.Next([]audit.Acked{l.acks[0], l.acks[2]}, 3, l.at, false)
	wa.Advance(ca)

	// Without B's checkpoints, A vouches for the log through seq 3 and seq 2 is nobody's.
	rep := l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{ca}})
	only(t, rep, audit.CodeNotAppended, 2, id)
	// B has announced itself but not yet checkpointed seq 2: it is pending, not a problem.
	rep = l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{ca, cb0}})
	if !rep.OK() || rep.Horizon != 0 || rep.Pending != 1 || rep.Covered != 2 {
		t.Fatalf("%+v", rep)
	}
	cb1, _ := wb.Next([]audit.Acked{l.acks[1]}, 3, l.at, false)
	wb.Advance(cb1)
	rep = l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{ca, cb0, cb1}})
	if !rep.OK() || rep.Covered != 3 || rep.Instances != 2 || rep.Horizon != 3 {
		t.Fatalf("%+v", rep)
	}
	// A stops cleanly (final); B's later checkpoints alone then set the horizon.
	caf, _ := wa.Next(nil, 3, l.at, true)
	l.do(events.ActClear, id, ver, clear, nil) // seq 4 by B
	cb2, _ := wb.Next([]audit.Acked{l.acks[3]}, 4, l.at, false)
	rep = l.verify(audit.Options{Checkpoints: []*audit.Checkpoint{ca, caf, cb0, cb1, cb2}})
	if !rep.OK() || rep.Covered != 4 || rep.Horizon != 4 {
		t.Fatalf("%+v", rep)
	}
}
