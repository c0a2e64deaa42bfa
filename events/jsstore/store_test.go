package jsstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
)

// node is one embedded server with a connection and a store on its HAZARDS stream.
type node struct {
	srv   *server.Server
	nc    *nats.Conn
	store *jsstore.Store
}

func start(tb testing.TB, dir string, cfg jsstore.Config) *node {
	tb.Helper()
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: dir})
	if err != nil {
		tb.Fatalf("RunServer: %v", err)
	}
	nc, err := jsstore.ConnectInProcess(srv)
	if err != nil {
		srv.Shutdown()
		tb.Fatalf("connect: %v", err)
	}
	n := &node{srv: srv, nc: nc}
	tb.Cleanup(n.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n.store, err = jsstore.Open(ctx, nc, cfg); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return n
}

func (n *node) stop() {
	n.nc.Close()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// subject of hazard id in the chemicals sector of 安宁市 (Anning, 530181).
func subject(id string) string { return events.Subject("chem", "530000", "530100", "530181", id) }

func body(id string, n int) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":"%s","subject":"%s","n":%d}`, events.NewID(), id, n)
}

func stream(tb testing.TB, n *node) jetstream.Stream {
	tb.Helper()
	str, err := n.store.JetStream().Stream(ctxT(tb), n.store.StreamName())
	if err != nil {
		tb.Fatalf("stream: %v", err)
	}
	return str
}

func lastSeq(tb testing.TB, n *node) uint64 {
	tb.Helper()
	seq, err := n.store.LastSeq(ctxT(tb))
	if err != nil {
		tb.Fatalf("LastSeq: %v", err)
	}
	return seq
}

func mustAppend(tb testing.TB, n *node, a jsstore.Append) jsstore.Ack {
	tb.Helper()
	ack, err := n.store.Append(ctxT(tb), a)
	if err != nil {
		tb.Fatalf("Append %s: %v", a.Subject, err)
	}
	return ack
}

// wantStale checks err is a conflict carrying a *StaleError at current.
func wantStale(tb testing.TB, err error, current uint64) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("append succeeded, want a stale conflict at %d", current)
	}
	var e *events.Error
	if !errors.As(err, &e) || e.Kind != events.KindConflict || e.Code != "stale_state" {
		tb.Fatalf("err %v: want *events.Error conflict stale_state", err)
	}
	var st *jsstore.StaleError
	if !errors.As(err, &st) {
		tb.Fatalf("err %v: no *jsstore.StaleError", err)
	}
	if st.Current != current {
		tb.Fatalf("StaleError.Current = %d, want %d", st.Current, current)
	}
}

// waitForgotten waits until the stream's dedup window has dropped every Msg-Id stored so far:
// it stores a probe with a fresh Msg-Id, then republishes it until the server no longer calls it
// a duplicate (ids expire oldest first). It returns the number of probe messages stored (2).
func waitForgotten(tb testing.TB, n *node, within time.Duration) int {
	tb.Helper()
	ctx := ctxT(tb)
	probe, id := subject(events.NewID()), events.NewID()
	if _, err := n.store.JetStream().Publish(ctx, probe, []byte(`{}`), jetstream.WithMsgID(id)); err != nil {
		tb.Fatalf("probe: %v", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(within)
	for {
		ack, err := n.store.JetStream().Publish(ctx, probe, []byte(`{}`), jetstream.WithMsgID(id))
		if err != nil {
			tb.Fatalf("probe: %v", err)
		}
		if !ack.Duplicate {
			return 2
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dedup window did not pass within %v", within)
		}
		<-tick.C
	}
}

func TestStreamConfig(t *testing.T) {
	n := start(t, t.TempDir(), jsstore.Config{})
	ctx := ctxT(t)
	str := stream(t, n)
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != "HAZARDS" || len(c.Subjects) != 1 || c.Subjects[0] != "hz.*.*.*.*.*" {
		t.Fatalf("stream %s subjects %v, want HAZARDS on hz.*.*.*.*.*", c.Name, c.Subjects)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"file storage", c.Storage == jetstream.FileStorage},
		{"limits retention", c.Retention == jetstream.LimitsPolicy},
		{"no max age", c.MaxAge == 0},
		{"no max msgs", c.MaxMsgs == -1},
		{"no max bytes", c.MaxBytes == -1},
		{"no per-subject limit", c.MaxMsgsPerSubject <= 0},
		{"deny delete", c.DenyDelete},
		{"deny purge", c.DenyPurge},
		{"no rollup", !c.AllowRollup},
		{"no msg TTL", !c.AllowMsgTTL},
		{"no schedules", !c.AllowMsgSchedules},
		{"atomic publish", c.AllowAtomicPublish},
		{"direct get", c.AllowDirect},
		{"2-minute dedup window", c.Duplicates == 2*time.Minute},
		{"one replica", c.Replicas == 1},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("stream config: want %s; got %+v", ch.name, c)
		}
	}

	id := events.NewID()
	ack := mustAppend(t, n, jsstore.Append{Subject: subject(id), Data: body(id, 1), MsgID: events.NewID(), New: true, HazardID: id})
	if err := str.DeleteMsg(ctx, ack.Seq); err == nil {
		t.Error("DeleteMsg succeeded on the log stream")
	}
	if err := str.SecureDeleteMsg(ctx, ack.Seq); err == nil {
		t.Error("SecureDeleteMsg succeeded on the log stream")
	}
	if err := str.Purge(ctx); err == nil {
		t.Error("Purge succeeded on the log stream")
	}
	if err := str.Purge(ctx, jetstream.WithPurgeSubject(subject(id))); err == nil {
		t.Error("Purge of one subject succeeded on the log stream")
	}
	js := n.store.JetStream()
	for _, h := range []struct{ k, v string }{
		{jetstream.MsgRollup, jetstream.MsgRollupSubject},
		{jetstream.MsgTTLHeader, "1s"},
		{jetstream.ScheduleHeader, "@every 1s"},
	} {
		m := &nats.Msg{Subject: subject(id), Data: []byte(`{}`), Header: nats.Header{h.k: []string{h.v}}}
		if h.k == jetstream.ScheduleHeader {
			m.Header.Set(jetstream.ScheduleTargetHeader, subject(events.NewID()))
		}
		if _, err := js.PublishMsg(ctx, m); err == nil {
			t.Errorf("a publish with %s: %s was accepted", h.k, h.v)
		}
	}
	// Updating the stream back to deletes and purges is refused (they cannot be switched off).
	c.DenyDelete, c.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, c); err == nil {
		t.Error("UpdateStream switched DenyDelete/DenyPurge off")
	}
	if got := lastSeq(t, n); got != ack.Seq {
		t.Fatalf("last seq %d, want %d: something was stored", got, ack.Seq)
	}
	m, err := n.store.Get(ctx, ack.Seq)
	if err != nil || !bytes.Equal(m.Data, ack.Data) {
		t.Fatalf("Get(%d) after delete and purge attempts: %v %q", ack.Seq, err, m.Data)
	}
}

func TestAppendNewChecksEverySubject(t *testing.T) {
	n := start(t, t.TempDir(), jsstore.Config{})
	id := events.NewID()
	first := mustAppend(t, n, jsstore.Append{Subject: subject(id), Data: body(id, 1), MsgID: events.NewID(), New: true, HazardID: id})
	if first.Duplicate || first.Seq != 1 {
		t.Fatalf("first report: %+v", first)
	}
	// The same hazard id in another sector, another county and another province.
	others := []string{
		events.Subject("mine", "530000", "530100", "530181", id),
		events.Subject("chem", "530000", "530100", "530102", id),
		events.Subject("forest", "420000", "429000", "429004", id),
	}
	for _, subj := range others {
		_, err := n.store.Append(ctxT(t), jsstore.Append{Subject: subj, Data: body(id, 2), MsgID: events.NewID(), New: true, HazardID: id})
		wantStale(t, err, first.Seq)
		// The same event id under another subject is not "the same event" either.
		_, err = n.store.Append(ctxT(t), jsstore.Append{Subject: subj, Data: first.Data, MsgID: mustMsgID(t, n, first.Seq), New: true, HazardID: id})
		wantStale(t, err, first.Seq)
	}
	// A new report under the same subject with a new event id is refused too.
	_, err := n.store.Append(ctxT(t), jsstore.Append{Subject: subject(id), Data: body(id, 3), MsgID: events.NewID(), New: true, HazardID: id})
	wantStale(t, err, first.Seq)
	// Another hazard id is independent.
	other := events.NewID()
	if ack := mustAppend(t, n, jsstore.Append{Subject: subject(other), Data: body(other, 1), MsgID: events.NewID(), New: true, HazardID: other}); ack.Seq != 2 {
		t.Fatalf("other hazard at %d, want 2", ack.Seq)
	}
	if got := lastSeq(t, n); got != 2 {
		t.Fatalf("stream last seq %d, want 2", got)
	}
}

func mustMsgID(tb testing.TB, n *node, seq uint64) string {
	tb.Helper()
	m, err := n.store.Get(ctxT(tb), seq)
	if err != nil {
		tb.Fatalf("Get(%d): %v", seq, err)
	}
	return m.MsgID
}

func TestAppendStaleExpect(t *testing.T) {
	n := start(t, t.TempDir(), jsstore.Config{})
	id := events.NewID()
	subj := subject(id)
	r := mustAppend(t, n, jsstore.Append{Subject: subj, Data: body(id, 1), MsgID: events.NewID(), New: true, HazardID: id})
	// An unrelated hazard moves the stream on, so that the subject's seq differs from the stream's.
	x := events.NewID()
	mustAppend(t, n, jsstore.Append{Subject: subject(x), Data: body(x, 1), MsgID: events.NewID(), New: true, HazardID: x})
	p := mustAppend(t, n, jsstore.Append{Subject: subj, Data: body(id, 2), MsgID: events.NewID(), Expect: r.Seq, HazardID: id})
	if p.Seq != 3 || p.Duplicate {
		t.Fatalf("second event: %+v", p)
	}
	// Decided on the state after the report: stale.
	_, err := n.store.Append(ctxT(t), jsstore.Append{Subject: subj, Data: body(id, 3), MsgID: events.NewID(), Expect: r.Seq, HazardID: id})
	wantStale(t, err, p.Seq)
	// An expectation from the future, and "subject empty", are stale too.
	_, err = n.store.Append(ctxT(t), jsstore.Append{Subject: subj, Data: body(id, 3), MsgID: events.NewID(), Expect: 99, HazardID: id})
	wantStale(t, err, p.Seq)
	_, err = n.store.Append(ctxT(t), jsstore.Append{Subject: subj, Data: body(id, 3), MsgID: events.NewID(), Expect: 0, HazardID: id})
	wantStale(t, err, p.Seq)
	// Expecting a later event of another subject is no help.
	_, err = n.store.Append(ctxT(t), jsstore.Append{Subject: subj, Data: body(id, 3), MsgID: events.NewID(), Expect: 2, HazardID: id})
	wantStale(t, err, p.Seq)
	if got := lastSeq(t, n); got != 3 {
		t.Fatalf("stream last seq %d, want 3", got)
	}
	// The fresh expectation goes through.
	if ack := mustAppend(t, n, jsstore.Append{Subject: subj, Data: body(id, 3), MsgID: events.NewID(), Expect: p.Seq, HazardID: id}); ack.Seq != 4 {
		t.Fatalf("fresh append at %d, want 4", ack.Seq)
	}
}

func TestAppendRetryIsDuplicate(t *testing.T) {
	const window = time.Second
	n := start(t, t.TempDir(), jsstore.Config{Duplicates: window})
	id := events.NewID()
	subj := subject(id)
	report := jsstore.Append{Subject: subj, Data: body(id, 1), MsgID: events.NewID(), New: true, HazardID: id}
	r := mustAppend(t, n, report)
	step := jsstore.Append{Subject: subj, Data: body(id, 2), MsgID: events.NewID(), Expect: r.Seq, HazardID: id}
	s := mustAppend(t, n, step)
	if r.Duplicate || s.Duplicate {
		t.Fatalf("first attempts reported as duplicates: %+v %+v", r, s)
	}

	retry := func(phase string) {
		t.Helper()
		// The report retried after a later event: the wildcard check fails, and the hazard's
		// last event is not the report, so this is a conflict at the store.
		_, err := n.store.Append(ctxT(t), report)
		wantStale(t, err, s.Seq)
		// The last event retried as it was sent (same Msg-Id, same expectation).
		ack, err := n.store.Append(ctxT(t), step)
		if err != nil {
			t.Fatalf("%s: retry: %v", phase, err)
		}
		if !ack.Duplicate || ack.Seq != s.Seq || !bytes.Equal(ack.Data, step.Data) {
			t.Fatalf("%s: retry ack %+v, want duplicate at %d with the stored bytes", phase, ack, s.Seq)
		}
	}
	retry("within the window")

	// A retry decided on the current state (expectation met) is caught by the server's dedup;
	// it is re-encoded (another record time), and the ack must carry the stored bytes.
	reencoded := step
	reencoded.Data, reencoded.Expect = body(id, 22), s.Seq
	ack, err := n.store.Append(ctxT(t), reencoded)
	if err != nil {
		t.Fatalf("server-deduplicated retry: %v", err)
	}
	if !ack.Duplicate || ack.Seq != s.Seq || !bytes.Equal(ack.Data, step.Data) {
		t.Fatalf("server-deduplicated retry: ack %+v (data %q), want duplicate at %d with %q", ack, ack.Data, s.Seq, step.Data)
	}

	// A report retried right after it landed (nothing after it), in and after the window.
	id2 := events.NewID()
	report2 := jsstore.Append{Subject: subject(id2), Data: body(id2, 1), MsgID: events.NewID(), New: true, HazardID: id2}
	r2 := mustAppend(t, n, report2)
	if ack, err := n.store.Append(ctxT(t), report2); err != nil || !ack.Duplicate || ack.Seq != r2.Seq {
		t.Fatalf("report retried within the window: %+v %v", ack, err)
	}

	probes := waitForgotten(t, n, 10*window)
	retry("after the window")
	if ack, err := n.store.Append(ctxT(t), report2); err != nil || !ack.Duplicate || ack.Seq != r2.Seq || !bytes.Equal(ack.Data, report2.Data) {
		t.Fatalf("report retried after the window: %+v %v", ack, err)
	}

	for subj, want := range map[string]int{subj: 2, subject(id2): 1} {
		h, err := n.store.History(ctxT(t), subj, 0)
		if err != nil || len(h) != want {
			t.Fatalf("history of %s: %d events (%v), want %d", subj, len(h), err, want)
		}
	}
	if got, want := lastSeq(t, n), uint64(3+probes); got != want {
		t.Fatalf("stream last seq %d, want %d (3 events and %d probes)", got, want, probes)
	}
}

func TestHistoryAndGet(t *testing.T) {
	n := start(t, t.TempDir(), jsstore.Config{})
	ctx := ctxT(t)
	// Two hazards interleaved; one has more events than a direct-get batch (256).
	a, b := events.NewID(), events.NewID()
	var want = map[string][]jsstore.Msg{}
	last := map[string]uint64{}
	for i := 0; i < 300; i++ {
		for _, id := range []string{a, b} {
			if id == b && i >= 5 {
				continue
			}
			ap := jsstore.Append{Subject: subject(id), Data: body(id, i), MsgID: events.NewID(), HazardID: id, New: i == 0, Expect: last[id]}
			ack := mustAppend(t, n, ap)
			last[id] = ack.Seq
			want[id] = append(want[id], jsstore.Msg{Seq: ack.Seq, Subject: ap.Subject, Data: ap.Data, MsgID: ap.MsgID})
		}
	}
	for _, id := range []string{a, b} {
		got, err := n.store.History(ctx, subject(id), 0)
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		if len(got) != len(want[id]) {
			t.Fatalf("history of %s: %d events, want %d", id, len(got), len(want[id]))
		}
		for i, m := range got {
			w := want[id][i]
			if m.Seq != w.Seq || m.Subject != w.Subject || m.MsgID != w.MsgID || !bytes.Equal(m.Data, w.Data) || m.Time.IsZero() {
				t.Fatalf("history of %s [%d]: %+v, want %+v", id, i, m, w)
			}
		}
	}
	// From a sequence on.
	from := want[a][200].Seq
	got, err := n.store.History(ctx, subject(a), from)
	if err != nil || len(got) != 100 || got[0].Seq != from {
		t.Fatalf("History from %d: %d events (%v), want 100 from %d", from, len(got), err, from)
	}
	// A subject with no events, and a wildcard over both hazards.
	if got, err := n.store.History(ctx, subject(events.NewID()), 0); err != nil || len(got) != 0 {
		t.Fatalf("History of an empty subject: %d, %v", len(got), err)
	}
	all, err := n.store.History(ctx, "hz.chem.530000.>", 0)
	if err != nil || len(all) != 305 {
		t.Fatalf("History of hz.chem.530000.>: %d, %v; want 305", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("history out of order at %d: %d after %d", i, all[i].Seq, all[i-1].Seq)
		}
	}

	w := want[b][3]
	m, err := n.store.Get(ctx, w.Seq)
	if err != nil || m.Seq != w.Seq || m.Subject != w.Subject || m.MsgID != w.MsgID || !bytes.Equal(m.Data, w.Data) {
		t.Fatalf("Get(%d) = %+v, %v; want %+v", w.Seq, m, err, w)
	}
	_, err = n.store.Get(ctx, 10_000)
	var e *events.Error
	if !errors.As(err, &e) || e.Kind != events.KindNotFound {
		t.Fatalf("Get of a missing seq: %v, want not found", err)
	}

	// Follow delivers everything in order, with pending counting down to 0.
	fctx, cancel := context.WithCancel(ctx)
	var seen []uint64
	err = n.store.Follow(fctx, 1, func(m jsstore.Msg, pending uint64) error {
		seen = append(seen, m.Seq)
		if pending == 0 {
			cancel()
		}
		return nil
	})
	cancel()
	if !errors.Is(err, context.Canceled) || len(seen) != 305 || seen[0] != 1 || seen[304] != 305 {
		t.Fatalf("Follow: %d events (%v), err %v", len(seen), seen[:min(3, len(seen))], err)
	}
}

// TestFollowReadsAckSubjects: the ack subjects this server sends are read by Follow's own
// parser (not its fallback to nats.go's), with nats.go's numbers.
func TestFollowReadsAckSubjects(t *testing.T) {
	n := start(t, t.TempDir(), jsstore.Config{})
	ctx := ctxT(t)
	for i := range 3 {
		id := events.NewID()
		mustAppend(t, n, jsstore.Append{Subject: subject(id), Data: body(id, i), MsgID: events.NewID(), New: true, HazardID: id})
	}
	cons, err := stream(t, n).OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq, ts, pending, ok := jsstore.AckMeta(m.Reply())
		if !ok || seq != md.Sequence.Stream || ts != md.Timestamp.UnixNano() || pending != md.NumPending {
			t.Fatalf("%s: %d %d %d %v; nats.go %d %d %d", m.Reply(), seq, ts, pending, ok, md.Sequence.Stream, md.Timestamp.UnixNano(), md.NumPending)
		}
	}
}
