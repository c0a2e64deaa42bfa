package jsstore

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"qingling/events"
)

// maxAllocsGroupAppend bounds the client side of one append through the committer (queue
// entry, batch message and headers, the commit's context, the answer), measured with the
// server answered by a stub: 18 when written (go1.26, amd64), with some headroom.
const maxAllocsGroupAppend = 24

func TestAllocsGroupCommitAppend(t *testing.T) {
	s := &Store{cfg: Config{Stream: "HAZARDS"}}
	s.gc = newCommitter(s, GroupCommit{Mode: GroupOn, MinInFlight: 1, MinBatch: 1, MaxBatch: 256, Linger: time.Second})
	var seq uint64
	s.gc.publish = func(_ context.Context, msgs []*nats.Msg) (*jetstreamext.BatchAck, error) {
		seq += uint64(len(msgs))
		return &jetstreamext.BatchAck{Stream: "HAZARDS", Sequence: seq, BatchSize: uint64(len(msgs))}, nil
	}
	id := events.NewID()
	a := Append{Subject: subj(id), Data: payload(id, 1), MsgID: events.NewID(), HazardID: id, Expect: 12345}
	ctx := context.Background()
	var failed error
	allocs := testing.AllocsPerRun(500, func() {
		ack, err := s.Append(ctx, a)
		if err == nil && ack.Seq != seq {
			t.Errorf("ack at %d, want %d", ack.Seq, seq)
		}
		if err != nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if st := s.Stats(); st.Batched < 500 || st.Single != 0 {
		t.Fatalf("stats %+v: the appends did not go through the committer", st)
	}
	t.Logf("Store.Append through the committer: %.0f allocations", allocs)
	if allocs > maxAllocsGroupAppend {
		t.Fatalf("Store.Append through the committer: %.0f allocations per append, at most %d expected", allocs, maxAllocsGroupAppend)
	}
}
