package auditlog_test

import (
	"context"
	"crypto/sha256"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"qingling/handlers/auditlog"
	"qingling/projections/audit"
)

// benchRigFor loads QINGLING_BENCH_HAZARDS sample hazards (default 5000, about 18,000
// events) through the command path, checkpointed.
func benchRigFor(b *testing.B) *rig {
	n := 5000
	if s := os.Getenv("QINGLING_BENCH_HAZARDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	b.StopTimer()
	defer b.StartTimer()
	return newRig(b, n)
}

// BenchmarkVerifyVsRead compares `qingling verify` over the whole log with a raw ordered read
// of the same stream (the floor: one ordered consumer, each message hashed so that the read is
// not optimised away). Rounds alternate raw read and verify, so that both see the same noise;
// it reports the median rate of each and their ratio. Run:
//
//	go test ./handlers/auditlog -run '^$' -bench VerifyVsRead -benchtime 10x
func BenchmarkVerifyVsRead(b *testing.B) {
	r := benchRigFor(b)
	ctx := context.Background()
	total, err := r.store.LastSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var raw, ver []float64
	for i := 0; i < b.N; i++ {
		n := 0
		start := time.Now()
		err := auditlog.ReadLog(ctx, r.js, "HAZARDS", nil, func(m audit.Msg, _ uint64) error {
			_ = sha256.Sum256(m.Data)
			n++
			return nil
		})
		if err != nil || uint64(n) != total {
			b.Fatalf("read %d of %d: %v", n, total, err)
		}
		raw = append(raw, float64(n)/time.Since(start).Seconds())

		start = time.Now()
		rep, err := auditlog.Verify(ctx, r.js, auditlog.VerifyConfig{Options: audit.Options{Catalog: r.cat}})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK() || uint64(rep.Events) != total || rep.Covered != rep.Events {
			b.Fatalf("verify: %+v", rep)
		}
		ver = append(ver, float64(rep.Events)/time.Since(start).Seconds())
	}
	mr, mv := median(raw), median(ver)
	b.ReportMetric(float64(total), "events")
	b.ReportMetric(mr, "raw-events/s")
	b.ReportMetric(mv, "verify-events/s")
	b.ReportMetric(100*mv/mr, "verify-%-of-raw")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkVerifierCPU is the verifier's own work per event, on one goroutine, over the
// messages of the bench log held in memory (no NATS).
func BenchmarkVerifierCPU(b *testing.B) {
	r := benchRigFor(b)
	msgs := r.messages()
	cps, _, err := auditlog.ReadCheckpoints(context.Background(), r.js)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := audit.New(audit.Options{Catalog: r.cat, Checkpoints: cps})
		for _, m := range msgs {
			v.Add(m)
		}
		if rep := v.Finish(); !rep.OK() {
			b.Fatal(rep.Problems)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}
