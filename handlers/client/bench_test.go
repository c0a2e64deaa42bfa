package client_test

import (
	"context"
	"fmt"
	"testing"

	"qingling/events"
	"qingling/handlers/client"
)

// BenchmarkReport: one client sending reports one after another, over each transport, and an
// outbox sync (embedded JetStream without fsync; compare transports within one run).
func BenchmarkReport(b *testing.B) {
	s := startServer(b)
	ctx := context.Background()
	for _, tr := range []struct {
		name string
		c    *client.Client
	}{{"http", s.httpClient(b, "insp-1")}, {"nats", s.natsClient("insp-1")}} {
		b.Run(tr.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := tr.c.Report(ctx, "", finding(fmt.Sprint("bench ", i)), client.Opts{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("outbox-sync-http", func(b *testing.B) {
		box := &client.Outbox{Dir: b.TempDir()}
		for i := 0; i < b.N; i++ {
			cmd, _ := client.NewCommand(events.ActReport, "", finding(fmt.Sprint("queued ", i)), client.Opts{})
			if _, err := box.Queue(cmd, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		if rep, err := box.Sync(ctx, s.httpClient(b, "insp-1"), nil); err != nil || rep.Sent != b.N {
			b.Fatalf("%+v %v", rep, err)
		}
	})
}
