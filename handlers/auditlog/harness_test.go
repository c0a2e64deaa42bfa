package auditlog_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/auditlog"
	"qingling/handlers/demo"
	"qingling/handlers/internal/testserver"
	"qingling/projections"
	"qingling/projections/audit"
)

// demoNow is the fixed end of the simulated history.
var demoNow = time.Date(2025, 6, 30, 18, 0, 0, 0, events.Shanghai)

// rig is a Qingling command path on a real JetStream store, with the recorder and the
// checkpointer wired as serve wires them.
type rig struct {
	t      testing.TB
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	store  *jsstore.Store
	cat    *events.Catalog
	svc    *app.Service
	rec    *auditlog.Recorder
	cp     *auditlog.Checkpointer
	key    nkeys.KeyPair
	ctx    context.Context
	plan   [][]demo.Step
	seqOf  map[string][]uint64 // hazard → its seqs
	subjOf map[string]string
}

func newRig(t testing.TB, hazards int) *rig {
	t.Helper()
	js := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &rig{t: t, srv: js.Server, nc: js.Conn, ctx: ctx, store: js.Store, js: js.Store.JetStream(), cat: js.Catalog}
	r.key, _ = nkeys.CreateServer()
	pub, _ := r.key.PublicKey()
	r.rec = auditlog.NewRecorder(r.store, 0)
	r.cp = &auditlog.Checkpointer{JS: r.js, Recorder: r.rec, Instance: pub, Sign: r.key.Sign, Stream: r.store.StreamName()}
	if err := r.cp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.svc = &app.Service{Catalog: r.cat, Index: projections.NewIndex(r.cat), Log: r.rec}
	if hazards > 0 {
		cfg := demo.Config{Hazards: hazards, Seed: 11, Now: demoNow, Days: 120}
		r.plan = demo.Plan(r.cat, cfg)
		if _, err := demo.Load(ctx, r.svc, r.plan, cfg); err != nil {
			t.Fatal(err)
		}
	}
	r.checkpoint()
	r.index()
	return r
}

func (r *rig) checkpoint() *audit.Checkpoint {
	r.t.Helper()
	c, err := r.cp.Checkpoint(r.ctx, false)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// index reads which seqs belong to which hazard.
func (r *rig) index() {
	r.t.Helper()
	r.seqOf, r.subjOf = map[string][]uint64{}, map[string]string{}
	for _, m := range r.messages() {
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		r.seqOf[id] = append(r.seqOf[id], m.Seq)
		r.subjOf[id] = m.Subject
	}
}

// messages reads the whole log stream.
func (r *rig) messages() []audit.Msg {
	r.t.Helper()
	var out []audit.Msg
	if err := auditlog.ReadLog(r.ctx, r.js, "HAZARDS", nil, func(m audit.Msg, _ uint64) error {
		m.Data = append([]byte(nil), m.Data...)
		out = append(out, m)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// hazardWith finds a hazard with at least n events.
func (r *rig) hazardWith(n int) string {
	r.t.Helper()
	best := ""
	for id, seqs := range r.seqOf {
		if len(seqs) >= n && (best == "" || id < best) {
			best = id
		}
	}
	if best == "" {
		r.t.Fatalf("no hazard with %d events", n)
	}
	return best
}

// exec runs one command through the service.
func (r *rig) exec(action, id string, actor events.Actor, body string, at time.Time) app.Result {
	r.t.Helper()
	cmd, err := events.DecodeCommand(action, id, []byte(body))
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Actor, cmd.CommandID, cmd.OccurredAt = actor, events.NewID(), at
	res, err := r.svc.Execute(r.ctx, cmd)
	if err != nil {
		r.t.Fatalf("%s %s: %v", action, id, err)
	}
	return res
}

// rebuild deletes the log stream and restores it from msgs (an operator's backup), with
// their original Msg-Ids, as a plain publish that no service checks.
func (r *rig) rebuild(stream string, cfg jetstream.StreamConfig, msgs []audit.Msg) {
	r.t.Helper()
	if err := r.js.DeleteStream(r.ctx, stream); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.js.CreateStream(r.ctx, cfg); err != nil {
		r.t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := r.js.PublishMsg(r.ctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{jetstream.MsgIDHeader: []string{m.MsgID}}}); err != nil {
			r.t.Fatal(err)
		}
	}
}

// checkpointMsgs reads the checkpoint stream as raw messages.
func (r *rig) checkpointMsgs() []audit.Msg {
	r.t.Helper()
	var out []audit.Msg
	if err := auditlog.ReadLog(r.ctx, r.js, auditlog.CheckpointStream, nil, func(m audit.Msg, _ uint64) error {
		m.Data = append([]byte(nil), m.Data...)
		out = append(out, m)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// verify runs the whole verification as `qingling verify` does.
func (r *rig) verify(exported []*audit.Checkpoint) audit.Report {
	r.t.Helper()
	rep, err := auditlog.Verify(r.ctx, r.js, auditlog.VerifyConfig{Options: audit.Options{Catalog: r.cat, Exported: exported}})
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

// want asserts that the report holds a problem of code at seq naming hazard, and that every
// problem's code is among allowed.
func want(t *testing.T, rep audit.Report, code string, seq uint64, hazard string, allowed ...string) {
	t.Helper()
	dump(t, rep)
	found := false
	for _, p := range rep.Problems {
		if p.Code == code && p.Seq == seq && p.Hazard == hazard {
			found = true
		}
		ok := p.Code == code
		for _, a := range allowed {
			ok = ok || p.Code == a
		}
		if !ok {
			t.Errorf("unexpected problem %s", p)
		}
	}
	if !found {
		t.Errorf("no %s problem at seq %d naming hazard %s; problems:", code, seq, hazard)
		for _, p := range rep.Problems {
			t.Logf("  %s", p)
		}
	}
}

// dump logs every problem (shown with -v or on failure).
func dump(t *testing.T, rep audit.Report) {
	t.Helper()
	for _, p := range rep.Problems {
		t.Log(p)
	}
}
