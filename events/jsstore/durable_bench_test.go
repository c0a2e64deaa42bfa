package jsstore

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
)

// BenchmarkDurableModes compares, on one durable R1 stream and in finely interleaved rounds
// (this machine's disk drifts by tens of percent within seconds), raw JetStream sync publish
// with the store's appends: the default configuration, always plain, always batched. Each
// round runs every kind once with the same number of clients, each client on its own hazard.
// QL_KINDS=0,3 runs only those kinds; QL_VERBOSE=1 logs every round.
//
//	QL_CLIENTS=16 QL_ROUNDS=24 QL_PER_ROUND=2000 go test -run '^$' -bench DurableModes -benchtime 1x ./events/jsstore/
//
// At 16 clients it shows why 16 in flight go as plain publishes: the server fsyncs each plain
// publish on its own (filestore.go: writeMsgRecord → flushPendingMsgsLocked → mfd.Sync, one
// message at a time in the stream's internalLoop), and an atomic batch, though written under
// one fsync, first builds and afterwards deletes a temporary file store (newBatchStore: three
// mkdirs, two O_SYNC metadata files, two directory fsyncs, a probe file, the staging block's
// fsync). Sixteen fsyncs (~2.4–3.0 ms) and a batch of 16 (~2.5 ms on a quiet disk) are even;
// when the shared disk is busy the batch's metadata operations slow down more than fsyncs
// (4–10 ms a batch of 16 measured), so batches of 16 fall to 0.5–0.8× raw.
func BenchmarkDurableModes(b *testing.B) {
	clients, rounds, per := envInt("QL_CLIENTS", 16), envInt("QL_ROUNDS", 24), envInt("QL_PER_ROUND", 2000)
	srv, err := RunServer(ServerConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	ctx := context.Background()
	open := func(g GroupCommit) *Store {
		nc, err := ConnectInProcess(srv)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		s, err := Open(ctx, nc, Config{GroupCommit: g})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	def := open(GroupCommit{})
	batched := open(GroupCommit{Mode: GroupOn, MinInFlight: max(clients/2, 1), MinBatch: max(clients/2, 1)})
	kinds := []struct {
		name string
		op   func(c int) func() error
	}{
		{"raw sync publish", rawOp(b, open(GroupCommit{Mode: GroupOff}).js, clients)},
		{"store, default", storeOp(b, def, clients)},
		{"store, plain", storeOp(b, open(GroupCommit{Mode: GroupOff}), clients)},
		{"store, batched", storeOp(b, batched, clients)},
	}
	if only := os.Getenv("QL_KINDS"); only != "" { // e.g. "0,3": raw and batched
		keep := kinds[:0]
		for k, kind := range kinds {
			if slices.Contains(strings.Split(only, ","), strconv.Itoa(k)) {
				keep = append(keep, kind)
			}
		}
		kinds = keep
	}
	took := make([]time.Duration, len(kinds))
	ratios := make([][]float64, len(kinds)) // per round, to raw
	b.ResetTimer()
	for range b.N {
		for range rounds {
			var raw time.Duration
			for k, kind := range kinds {
				start := time.Now()
				var wg sync.WaitGroup
				errs := make([]error, clients)
				for c := range clients {
					op := kind.op(c)
					wg.Go(func() {
						for i := c; i < per; i += clients {
							if err := op(); err != nil {
								errs[c] = err
								return
							}
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				for _, err := range errs {
					if err != nil {
						b.Fatalf("%s: %v", kind.name, err)
					}
				}
				took[k] += el
				if os.Getenv("QL_VERBOSE") != "" {
					b.Logf("%s: %.0f/s", kind.name, float64(per)/el.Seconds())
				}
				if k == 0 {
					raw = el
				}
				ratios[k] = append(ratios[k], raw.Seconds()/el.Seconds())
			}
		}
	}
	b.StopTimer()
	for k, kind := range kinds {
		r := slices.Sorted(slices.Values(ratios[k]))
		b.ReportMetric(float64(rounds*per*b.N)/took[k].Seconds(), fmt.Sprintf("events/s_%d_%s", k, shortName(kind.name)))
		if k > 0 {
			b.ReportMetric(took[0].Seconds()/took[k].Seconds(), fmt.Sprintf("xraw_%d_%s", k, shortName(kind.name)))
			b.Logf("%-18s %.3f× raw overall; rounds: p25 %.2f median %.2f p75 %.2f", kind.name, took[0].Seconds()/took[k].Seconds(),
				r[len(r)/4], r[len(r)/2], r[3*len(r)/4])
		}
	}
	for _, s := range []*Store{def, batched} {
		st := s.Stats()
		nb := float64(max(st.Batches, 1))
		b.Logf("batches %d (mean %.1f), gathering %.2f ms, committing %.2f ms a batch; lingered %d, small %d, rejected %d; %d plain",
			st.Batches, float64(st.Batched)/nb, st.Gathering.Seconds()*1000/nb, st.Committing.Seconds()*1000/nb, st.Lingered, st.Small, st.Rejected, st.Single)
	}
}

func shortName(s string) string {
	out := []byte{}
	for _, r := range []byte(s) {
		if r >= 'a' && r <= 'z' {
			out = append(out, r)
		}
	}
	return string(out)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// rawOp: client c publishes with the headers the store sends, on a subject of its own.
func rawOp(b *testing.B, js jetstream.JetStream, clients int) func(c int) func() error {
	subjs, last := make([]string, clients), make([]uint64, clients)
	data := make([]byte, 700)
	for c := range subjs {
		subjs[c] = "hz.chem.530000.530100.530181." + events.NewID()
	}
	return func(c int) func() error {
		return func() error {
			ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: subjs[c], Data: data},
				jetstream.WithMsgID(events.NewID()), jetstream.WithExpectStream("HAZARDS"), jetstream.WithExpectLastSequencePerSubject(last[c]), jetstream.WithRetryAttempts(0))
			if err == nil {
				last[c] = ack.Sequence
			}
			return err
		}
	}
}

// storeOp: client c appends to a hazard of its own.
func storeOp(b *testing.B, s *Store, clients int) func(c int) func() error {
	ids, last := make([]string, clients), make([]uint64, clients)
	data := make([]byte, 700)
	for c := range ids {
		ids[c] = events.NewID()
		ack, err := s.Append(context.Background(), Append{Subject: subj(ids[c]), Data: data, MsgID: events.NewID(), New: true, HazardID: ids[c]})
		if err != nil {
			b.Fatal(err)
		}
		last[c] = ack.Seq
	}
	return func(c int) func() error {
		return func() error {
			ack, err := s.Append(context.Background(), Append{Subject: subj(ids[c]), Data: data, MsgID: events.NewID(), HazardID: ids[c], Expect: last[c]})
			if err == nil {
				last[c] = ack.Seq
			}
			return err
		}
	}
}
