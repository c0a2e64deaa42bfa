package projections_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/demo"
	"qingling/projections"
	"qingling/projections/status"
)

var benchNow = time.Date(2025, 6, 30, 18, 0, 0, 0, events.Shanghai)

// sample is a valid history of n hazards (the demo's distribution), decided and evolved in
// memory, in record-time order.
type sampleEvent struct {
	subject, msgID string
	raw            []byte
	at             time.Time
}

func sample(tb testing.TB, cat *events.Catalog, n int) []sampleEvent {
	tb.Helper()
	plan := demo.Plan(cat, demo.Config{Hazards: n, Now: benchNow, Days: 720})
	var out []sampleEvent
	for _, steps := range plan {
		var h *events.Hazard
		seq := uint64(0)
		for _, st := range steps {
			c := *st.Cmd
			events.ResolveIDs(&c)
			e, err := events.Decide(cat, h, &c, st.At, events.DefaultSource)
			if err != nil {
				break // the demo plan can draw a field time before the finding; keep what was accepted
			}
			raw, _ := e.Marshal()
			p, _ := e.Payload()
			seq++
			if h, err = events.Evolve(cat, h, e, p, raw, seq); err != nil {
				tb.Fatal(err)
			}
			out = append(out, sampleEvent{subject: h.Subject(), msgID: e.ID, raw: raw, at: st.At})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// logWith starts an in-process JetStream with the sample in its log.
func logWith(tb testing.TB, evs []sampleEvent) *jsstore.Store {
	tb.Helper()
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: tb.TempDir(), NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := jsstore.ConnectInProcess(srv)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	ctx := context.Background()
	st, err := jsstore.Open(ctx, nc, jsstore.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	js := st.JetStream()
	for i, e := range evs {
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: e.subject, Data: e.raw, Header: nats.Header{jetstream.MsgIDHeader: []string{e.msgID}}}); err != nil {
			tb.Fatal(err)
		}
		if i%4096 == 4095 {
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		tb.Fatal("publish did not complete")
	}
	if last, _ := st.LastSeq(ctx); last != uint64(len(evs)) {
		tb.Fatalf("log has %d events, want %d", last, len(evs))
	}
	return st
}

func benchHazards(def int) int {
	if v, err := strconv.Atoi(os.Getenv("QINGLING_BENCH_HAZARDS")); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRebuild compares a rebuild of the read model (index + status, Replay) with a raw
// ordered consumer that only reads the same stream, in one run; ratio_% is rebuild/raw.
func BenchmarkRebuild(b *testing.B) {
	cat, _ := events.LoadCatalog()
	evs := sample(b, cat, benchHazards(20000))
	st := logWith(b, evs)
	ctx := context.Background()
	target := uint64(len(evs))
	var raw, rebuild time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		n := 0
		stop := fmt.Errorf("done")
		_ = st.Follow(ctx, 1, func(m jsstore.Msg, _ uint64) error {
			n += len(m.Data) & 1 // touch the data
			if m.Seq >= target {
				return stop
			}
			return nil
		})
		raw += time.Since(t0)

		t0 = time.Now()
		idx := projections.NewIndex(cat)
		sp := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return benchNow }})
		if seq, err := projections.Replay(ctx, st, idx, []projections.Projection{sp}, nil); err != nil || seq != target {
			b.Fatalf("replay: %d %v", seq, err)
		}
		rebuild += time.Since(t0)
	}
	b.StopTimer()
	ev := float64(len(evs) * b.N)
	b.ReportMetric(ev/raw.Seconds(), "raw_ev/s")
	b.ReportMetric(ev/rebuild.Seconds(), "rebuild_ev/s")
	b.ReportMetric(100*raw.Seconds()/rebuild.Seconds(), "ratio_%")
	b.ReportMetric(float64(len(evs)), "events")
}

// BenchmarkMemoryPerHazard measures the heap the read model keeps per hazard (the index and
// the status apart) after folding a sample, with runtime.MemStats after a GC.
func BenchmarkMemoryPerHazard(b *testing.B) {
	cat, _ := events.LoadCatalog()
	n := benchHazards(20000)
	evs := sample(b, cat, n)
	type parsed struct {
		e *events.Event
		p any
	}
	ps := make([]parsed, len(evs))
	for i, s := range evs {
		e, _ := events.ParseEvent(s.raw)
		p, _ := e.Payload()
		ps[i] = parsed{e, p}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var idxBytes, stBytes float64
	b.ResetTimer()
	for range b.N {
		h0 := heap()
		idx := projections.NewIndex(cat)
		for i, s := range evs {
			if err := idx.ApplyParsed(uint64(i+1), s.raw, ps[i].e, ps[i].p); err != nil {
				b.Fatal(err)
			}
		}
		h1 := heap()
		sp := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return benchNow }})
		for i := range evs {
			sp.ApplyEvent(uint64(i+1), ps[i].e, ps[i].p)
		}
		h2 := heap()
		idxBytes += float64(h1 - h0)
		stBytes += float64(h2 - h1)
		runtime.KeepAlive(idx)
		runtime.KeepAlive(sp)
	}
	b.ReportMetric(idxBytes/float64(b.N*n), "index_B/hazard")
	b.ReportMetric(stBytes/float64(b.N*n), "status_B/hazard")
	b.ReportMetric((idxBytes+stBytes)/float64(b.N*n), "total_B/hazard")
	b.ReportMetric(float64(len(evs))/float64(n), "events/hazard")
}

// memLog is a log held in memory: BenchmarkReplayPipeline measures Replay's own cost
// (decoding, hashing, the index and the status) without a server beside it.
type memLog struct{ msgs []jsstore.Msg }

func (l *memLog) LastSeq(context.Context) (uint64, error) { return uint64(len(l.msgs)), nil }

func (l *memLog) Follow(ctx context.Context, from uint64, fn func(jsstore.Msg, uint64) error) error {
	for i := from - 1; i < uint64(len(l.msgs)); i++ {
		if err := fn(l.msgs[i], uint64(len(l.msgs))-i-1); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// BenchmarkReplayPipeline replays the demo's lifecycle mix from memory into a fresh index and
// status: the CPU Qingling adds to a read of the log, per event. QINGLING_BENCH_HAZARDS sets how
// many hazards (30,000 by default; a larger log shows the collector's share as a replay of a
// big log has it).
func BenchmarkReplayPipeline(b *testing.B) {
	cat, _ := events.LoadCatalog()
	log := &memLog{}
	for i, s := range sample(b, cat, benchHazards(30000)) {
		log.msgs = append(log.msgs, jsstore.Msg{Seq: uint64(i + 1), Subject: s.subject, Data: s.raw, MsgID: s.msgID})
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		idx := projections.NewIndex(cat)
		st := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return benchNow }})
		if _, err := projections.Replay(context.Background(), log, idx, []projections.Projection{st}, nil); err != nil {
			b.Fatal(err)
		}
		n += len(log.msgs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}
