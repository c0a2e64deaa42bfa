package jsstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"qingling/events"
)

// BenchmarkAtomicBatch is the server's price of one atomic batch of n events on a durable R1
// file stream, sent back to back by one committer (no gathering): events/s and ms a batch.
//
//	go test -run '^$' -bench AtomicBatch -benchtime 200x ./events/jsstore/
func BenchmarkAtomicBatch(b *testing.B) {
	for _, n := range []int{1, 16, 32, 64, 128, 256} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			srv, err := RunServer(ServerConfig{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
			nc, err := ConnectInProcess(srv)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			ctx := context.Background()
			s, err := Open(ctx, nc, Config{})
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 700)
			ids := make([]string, n)
			last := make([]uint64, n)
			for i := range ids {
				ids[i] = events.NewID()
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				msgs := make([]*nats.Msg, n)
				for i := range msgs {
					a := Append{Subject: events.Subject("chem", "530000", "530100", "530181", ids[i]), Data: data, MsgID: events.NewID(), HazardID: ids[i], Expect: last[i]}
					msgs[i] = s.appendMsg(&a)
				}
				ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: 2 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				for i := range last {
					last[i] = ack.Sequence - uint64(n) + 1 + uint64(i)
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(b.N*n)/el.Seconds(), "events/s")
			b.ReportMetric(el.Seconds()*1000/float64(b.N), "ms/batch")
		})
	}
}
