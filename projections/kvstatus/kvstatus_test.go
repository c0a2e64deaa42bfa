package kvstatus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections/kvstatus"
	"qingling/projections/status"
)

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, events.Shanghai)

type stored struct {
	seq uint64
	e   *events.Event
	p   any
}

// reports makes n valid report events in one county.
func reports(t *testing.T, cat *events.Catalog, n int, county string) []stored {
	var out []stored
	for i := range n {
		cmd := &events.Command{Action: events.ActReport, HazardID: fmt.Sprintf("0193f2c4-0000-7000-8000-%012d", i+1), CommandID: fmt.Sprintf("0193f2c4-0000-7000-9000-%012d", i+1),
			Actor: events.Actor{ID: "insp-1"}, Payload: &events.Reported{Sector: "chem", Region: county, Site: events.Site{Name: "某化工有限公司"}, Grade: events.GradeGeneral,
				Description: "作业票证填写不规范", Source: "inspection", Deadline: events.FormatInstant(t0.Add(time.Duration(i+1) * time.Hour))}}
		ev, err := events.Decide(cat, nil, cmd, t0, events.DefaultSource)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := ev.Marshal()
		e, _ := events.ParseEvent(raw)
		p, _ := e.Payload()
		out = append(out, stored{uint64(i + 1), e, p})
	}
	return out
}

func setup(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	ns, err := jsstore.RunServer(jsstore.ServerConfig{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := jsstore.ConnectInProcess(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := kvstatus.Open(context.Background(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

func value(t *testing.T, kv jetstream.KeyValue, key string) (kvstatus.Value, uint64) {
	t.Helper()
	e, err := kv.Get(context.Background(), key)
	if err != nil {
		return kvstatus.Value{}, 0
	}
	var v kvstatus.Value
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatal(err)
	}
	return v, e.Revision()
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestWriterCoalescesCatchUpAndFollowsLive: 200 events applied before the projection has
// caught up become one put per changed row; afterwards each change is written as it happens,
// deadline crossings included.
func TestWriterCoalescesCatchUpAndFollowsLive(t *testing.T) {
	cat, _ := events.LoadCatalog()
	js, kv := setup(t)
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	sp := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return *now.Load() }})
	var ready atomic.Bool
	w := &kvstatus.Writer{JS: js, KV: kv, Status: sp, Ready: ready.Load, Log: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	evs := reports(t, cat, 201, "530181")
	for _, s := range evs[:200] {
		sp.ApplyEvent(s.seq, s.e, s.p)
	}
	ready.Store(true)
	w.Kick()
	poll(t, "the catch-up's rows", func() bool { v, _ := value(t, kv, "all.530000"); return v.Open == 200 })
	poll(t, "the catch-up's acks", func() bool { return w.Puts() >= 6 }) // acks are counted after the values land
	if n := w.Puts(); n != 6 {
		t.Fatalf("catch-up wrote %d values, want 6 (one per changed row)", n)
	}
	st, _ := kv.Status(ctx)
	if st.Values() != 6 {
		t.Fatalf("bucket holds %d values", st.Values())
	}
	// live: one more event
	sp.ApplyEvent(evs[200].seq, evs[200].e, evs[200].p)
	poll(t, "the live change", func() bool { v, _ := value(t, kv, "chem.530000.530100.530181"); return v.Open == 201 && v.Seq == 201 })
	// a deadline passes: no event, yet the rows change
	later := t0.Add(90 * time.Minute)
	now.Store(&later)
	tctx, tcancel := context.WithCancel(ctx)
	go sp.Tick(tctx, 10*time.Millisecond)
	defer tcancel()
	poll(t, "the crossing", func() bool { v, _ := value(t, kv, "chem.530000.530100"); return v.Overdue == 1 })
	v, _ := value(t, kv, "chem.530000.530100")
	if v.Zeroed || v.Seq != 201 || v.RegionZh != "昆明市" || v.AsOf == "" {
		t.Fatalf("value after the crossing: %+v", v)
	}
}

// TestWritersShareTheBucket: two instances with the same state write each change once; an
// instance that lags does not write its older rows over newer ones.
func TestWritersShareTheBucket(t *testing.T) {
	cat, _ := events.LoadCatalog()
	js, kv := setup(t)
	clock := func() time.Time { return t0 }
	evs := reports(t, cat, 3, "530102")
	a := status.New(status.Config{Catalog: cat, Clock: clock})
	b := status.New(status.Config{Catalog: cat, Clock: clock})
	ctx := context.Background()
	for _, s := range evs {
		a.ApplyEvent(s.seq, s.e, s.p)
		b.ApplyEvent(s.seq, s.e, s.p)
	}
	wa := &kvstatus.Writer{JS: js, KV: kv, Status: a, Log: quiet()}
	wb := &kvstatus.Writer{JS: js, KV: kv, Status: b, Log: quiet()}
	if err := wa.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if wa.Puts() != 6 || wb.Puts() != 0 {
		t.Fatalf("puts: %d and %d, want 6 and 0", wa.Puts(), wb.Puts())
	}
	// a lagging instance (it has seen only the first event) writes nothing over them
	lag := status.New(status.Config{Catalog: cat, Clock: clock})
	lag.ApplyEvent(evs[0].seq, evs[0].e, evs[0].p)
	wl := &kvstatus.Writer{JS: js, KV: kv, Status: lag, Log: quiet()}
	if err := wl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := value(t, kv, "all.530000"); wl.Puts() != 0 || v.Open != 3 {
		t.Fatalf("lagging writer: %d puts, all.530000 open %d", wl.Puts(), v.Open)
	}
	if h, _ := kv.History(ctx, "all.530000"); len(h) != 1 {
		t.Fatalf("history of all.530000: %d entries, want 1", len(h))
	}

	// a running writer whose knowledge of a key is stale (someone else wrote it, or deleted it)
	// retries with the key's real revision
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go wa.Run(rctx)
	<-wa.Reconciled()
	if _, err := kv.Put(ctx, "chem.530000.530100.530102", []byte(`{"open":99}`)); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "chem.530000.530100"); err != nil {
		t.Fatal(err)
	}
	more := reports(t, cat, 4, "530102")[3]
	a.ApplyEvent(more.seq, more.e, more.p)
	poll(t, "the retried writes", func() bool {
		c, _ := value(t, kv, "chem.530000.530100.530102")
		p, _ := value(t, kv, "chem.530000.530100")
		return c.Open == 4 && p.Open == 4
	})
}
