package jsstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
)

// TestGroupCommitUnderConcurrency: 96 writers at once, most on hazards of their own, some
// contending on shared hazards (re-deciding on the current sequence a conflict gives them).
// Every acked event is stored once, where its ack says, in each hazard's order; nothing
// unacked is stored; and batches were committed along the way.
func TestGroupCommitUnderConcurrency(t *testing.T) {
	// A long linger lets gatherings fill on a loaded machine too, so that batches do happen.
	n := start(t, t.TempDir(), jsstore.Config{GroupCommit: jsstore.GroupCommit{Mode: jsstore.GroupOn, Linger: 20 * time.Millisecond}})
	const (
		writers = 96
		own     = 12 // events per writer on its own hazard
		shared  = 4  // hazards every writer also appends to, contending
		tries   = 3  // appends each writer makes to each shared hazard
	)
	type acked struct {
		seq  uint64
		data []byte
		id   string
	}
	var mu sync.Mutex
	byHazard := map[string][]acked{}
	record := func(hz string, seq uint64, a jsstore.Append) {
		mu.Lock()
		byHazard[hz] = append(byHazard[hz], acked{seq, a.Data, a.MsgID})
		mu.Unlock()
	}
	sharedIDs := make([]string, shared)
	sharedLast := make([]uint64, shared)
	for i := range sharedIDs {
		sharedIDs[i] = events.NewID()
		a := jsstore.Append{Subject: subject(sharedIDs[i]), Data: body(sharedIDs[i], 0), MsgID: events.NewID(), New: true, HazardID: sharedIDs[i]}
		ack := mustAppend(t, n, a)
		record(sharedIDs[i], ack.Seq, a)
		sharedLast[i] = ack.Seq
	}
	ctx := ctxT(t)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			id := events.NewID()
			last := uint64(0)
			known := append([]uint64(nil), sharedLast...)
			for i := range own {
				a := jsstore.Append{Subject: subject(id), Data: body(id, i), MsgID: events.NewID(), HazardID: id, New: i == 0, Expect: last}
				ack, err := n.store.Append(ctx, a)
				if err != nil || ack.Duplicate {
					errs <- fmt.Errorf("writer %d event %d: %+v %v", w, i, ack, err)
					return
				}
				record(id, ack.Seq, a)
				last = ack.Seq
				if i%4 == 3 { // now and then, a contended append on a shared hazard
					s := (w + i) % shared
					for range tries {
						a := jsstore.Append{Subject: subject(sharedIDs[s]), Data: body(sharedIDs[s], i), MsgID: events.NewID(), HazardID: sharedIDs[s], Expect: known[s]}
						ack, err := n.store.Append(ctx, a)
						var st *jsstore.StaleError
						if errors.As(err, &st) {
							known[s] = st.Current
							continue
						}
						if err != nil || ack.Duplicate {
							errs <- fmt.Errorf("writer %d shared %d: %+v %v", w, s, ack, err)
							return
						}
						record(sharedIDs[s], ack.Seq, a)
						known[s] = ack.Seq
						break
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	seqs := map[uint64]bool{}
	for hz, acks := range byHazard {
		total += len(acks)
		h, err := n.store.History(ctx, subject(hz), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != len(acks) {
			t.Fatalf("hazard %s: %d events stored, %d acked", hz, len(h), len(acks))
		}
		// Acks of one hazard were recorded in the order they came back, which for a shared
		// hazard may differ from the log's; compare by sequence.
		want := map[uint64]acked{}
		for _, a := range acks {
			if seqs[a.seq] {
				t.Fatalf("seq %d acked twice", a.seq)
			}
			seqs[a.seq] = true
			want[a.seq] = a
		}
		for i, m := range h {
			a, ok := want[m.Seq]
			if !ok || m.MsgID != a.id || !bytes.Equal(m.Data, a.data) {
				t.Fatalf("hazard %s event %d at %d: %s %q, acked %+v", hz, i, m.Seq, m.MsgID, m.Data, a)
			}
			if i > 0 && m.Seq <= h[i-1].Seq {
				t.Fatalf("hazard %s out of order at %d", hz, i)
			}
		}
	}
	if last := lastSeq(t, n); last != uint64(total) {
		t.Fatalf("stream holds %d events, %d acked", last, total)
	}
	st := n.store.Stats()
	t.Logf("%d events: %+v", total, st)
	if st.Batches == 0 || st.Batched == 0 {
		t.Fatalf("no batch committed with %d writers: %+v", writers, st)
	}
	if st.Batched+st.Single < uint64(total) {
		t.Fatalf("stats %+v count fewer appends than the %d stored", st, total)
	}
}

// TestGroupCommitOff: the default without fsync, and Mode GroupOff, publish one by one.
func TestGroupCommitOff(t *testing.T) {
	for name, cfg := range map[string]jsstore.Config{
		"no-sync": {NoSync: true},
		"off":     {GroupCommit: jsstore.GroupCommit{Mode: jsstore.GroupOff}},
	} {
		t.Run(name, func(t *testing.T) {
			n := start(t, t.TempDir(), cfg)
			var wg sync.WaitGroup
			for range 40 {
				wg.Go(func() {
					id := events.NewID()
					if _, err := n.store.Append(ctxT(t), jsstore.Append{Subject: subject(id), Data: body(id, 0), MsgID: events.NewID(), New: true, HazardID: id}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if st := n.store.Stats(); st.Batches != 0 || st.Single != 40 {
				t.Fatalf("stats %+v: want 40 plain publishes", st)
			}
		})
	}
}
