package app_test

// Append throughput, side by side in one run:
//   - raw:            JetStream sync publish (js.Publish with Msg-Id and expected last subject sequence)
//   - store:          jsstore.Store.Append
//   - service:        app.Service.Execute of progress commands, with its projection feed running
//   - service-nofeed: the same with the feed stopped (the index fed by the command path alone)
//
// with SyncAlways on and off, one hazard at a time (seq: one goroutine, one hazard) and in
// parallel across hazards (par: GOMAXPROCS×8 goroutines, one hazard each). Each kind has its own
// embedded server with the same settings; the kinds take turns in 8 rounds, so that the noise of
// a shared machine falls on all of them alike. Metrics: <kind>-events/s and <kind>/raw-% (ns/op is
// the time of all four kinds together per op and means little).
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 8000x ./handlers/app/
//
// Service commands are handed over decoded, as a transport does after events.DecodeCommand
// (measured on its own by BenchmarkDecodeCommand).

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
)

const benchParallelism = 8

var benchKinds = []string{"raw", "store", "service", "service-nofeed"}

func BenchmarkAppend(b *testing.B) {
	for _, syncAlways := range []bool{true, false} {
		for _, par := range []bool{false, true} {
			mode := "seq"
			if par {
				mode = "par"
			}
			b.Run(fmt.Sprintf("sync=%v/%s", syncAlways, mode), func(b *testing.B) {
				benchAppend(b, !syncAlways, par)
			})
		}
	}
}

func benchAppend(b *testing.B, noSync, par bool) {
	workers := 1
	if par {
		workers = runtime.GOMAXPROCS(0) * benchParallelism
	}
	ops := map[string][]func() error{}
	for _, kind := range benchKinds {
		ops[kind] = benchWorkers(b, kind, noSync, workers)
	}
	const rounds = 8
	chunk := (b.N + rounds - 1) / rounds
	elapsed := map[string]time.Duration{}
	b.ResetTimer()
	for left := b.N; left > 0; left -= chunk {
		n := min(chunk, left)
		for _, kind := range benchKinds {
			start := time.Now()
			if err := runChunk(ops[kind], n); err != nil {
				b.Fatalf("%s: %v", kind, err)
			}
			elapsed[kind] += time.Since(start)
		}
	}
	b.StopTimer()
	rate := map[string]float64{}
	for _, kind := range benchKinds {
		rate[kind] = float64(b.N) / elapsed[kind].Seconds()
		b.ReportMetric(rate[kind], kind+"-events/s")
	}
	for _, kind := range benchKinds[1:] {
		b.ReportMetric(100*rate[kind]/rate["raw"], kind+"/raw-%")
	}
}

// runChunk runs n operations spread over the workers, each worker on its own goroutine.
func runChunk(workers []func() error, n int) error {
	if len(workers) == 1 {
		for range n {
			if err := workers[0](); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for w, f := range workers {
		share := n / len(workers)
		if w < n%len(workers) {
			share++
		}
		wg.Go(func() {
			for range share {
				if errs[w] = f(); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// benchWorkers starts a server for kind and returns one append function per worker, each on
// its own hazard.
func benchWorkers(b *testing.B, kind string, noSync bool, workers int) []func() error {
	n := startNode(b, b.TempDir(), jsstore.Config{}, noSync)
	ctx := context.Background()
	_, h, _ := reported(b)
	data := mustEvent(b, h) // a stored-size progress event for raw and store
	fs := make([]func() error, workers)
	switch kind {
	case "raw":
		js := n.store.JetStream()
		for w := range fs {
			subj, last := events.Subject("chem", "530000", "530100", "530181", events.NewID()), uint64(0)
			fs[w] = func() error {
				ack, err := js.Publish(ctx, subj, data, jetstream.WithMsgID(events.NewID()), jetstream.WithExpectLastSequencePerSubject(last))
				if err == nil {
					last = ack.Sequence
				}
				return err
			}
		}
	case "store":
		for w := range fs {
			id := events.NewID()
			subj, last := events.Subject("chem", "530000", "530100", "530181", id), uint64(0)
			fs[w] = func() error {
				ack, err := n.store.Append(ctx, jsstore.Append{Subject: subj, Data: data, MsgID: events.NewID(), HazardID: id, Expect: last})
				if err == nil {
					last = ack.Seq
				}
				return err
			}
		}
	case "service", "service-nofeed":
		in := newInstance(b, n, nil, false)
		in.svc.Log = n.store // no test spy in the measured path
		for w := range fs {
			id := in.must(b, events.ActReport, "", inspector, reportGeneral).Hazard.ID
			fs[w] = func() error {
				cmd := &events.Command{Action: events.ActProgress, HazardID: id, Actor: rectifier,
					Payload: &events.Progressed{Note: "已完成一半", Percent: 50}}
				_, err := in.svc.Execute(ctx, cmd)
				return err
			}
		}
		in.caughtUp(b, n)
		if kind == "service-nofeed" {
			in.stop()
		}
	default:
		b.Fatalf("unknown kind %q", kind)
	}
	return fs
}

// mustEvent is a progress event of h as the service stores it.
func mustEvent(tb testing.TB, h *events.Hazard) []byte {
	tb.Helper()
	cat, err := events.LoadCatalog()
	if err != nil {
		tb.Fatal(err)
	}
	ev, err := events.Decide(cat, h, progressCommand(tb, h.ID), time.Now(), events.DefaultSource)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := ev.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// BenchmarkDecodeCommand is the transports' share of a command: decoding a progress body.
func BenchmarkDecodeCommand(b *testing.B) {
	id := events.NewID()
	for b.Loop() {
		if _, err := events.DecodeCommand(events.ActProgress, id, []byte(bodyProgress)); err != nil {
			b.Fatal(err)
		}
	}
}
