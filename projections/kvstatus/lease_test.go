package kvstatus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"qingling/events"
	"qingling/projections/kvstatus"
	"qingling/projections/status"
)

// TestLeaseFencesAPausedHolder: A holds the lease and writes; A pauses past the lease, B takes
// over; A, resumed with its old revision, cannot write; B can.
func TestLeaseFencesAPausedHolder(t *testing.T) {
	cat, _ := events.LoadCatalog()
	js, kv := setup(t)
	ctx := context.Background()
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	clock := func() time.Time { return *now.Load() }
	a := &kvstatus.Lease{KV: kv, Holder: "a", TTL: 5 * time.Second, Now: clock}
	b := &kvstatus.Lease{KV: kv, Holder: "b", TTL: 5 * time.Second, Now: clock}
	if ok, err := a.TryOnce(ctx); !ok || err != nil {
		t.Fatalf("a acquires: %v %v", ok, err)
	}
	if ok, _ := b.TryOnce(ctx); ok {
		t.Fatal("b took a live lease")
	}
	evs := reports(t, cat, 2, "530102")
	pa := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return t0 }})
	pa.ApplyEvent(evs[0].seq, evs[0].e, evs[0].p)
	wa := &kvstatus.Writer{JS: js, KV: kv, Status: pa, Lease: a, Log: quiet()}
	if err := wa.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := value(t, kv, "all.530000"); v.Open != 1 || v.Writer != "a" {
		t.Fatalf("a's write: %+v", v)
	}
	// a pauses (no renewal); past the TTL b takes over
	later := start.Add(6 * time.Second)
	now.Store(&later)
	if ok, err := b.TryOnce(ctx); !ok || err != nil {
		t.Fatalf("b takes over: %v %v", ok, err)
	}
	// a resumes: its projection moved on, it tries to write with its old revision
	pa.ApplyEvent(evs[1].seq, evs[1].e, evs[1].p)
	if err := wa.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if wa.Fenced() == 0 {
		t.Fatal("a's puts were not fenced")
	}
	if v, _ := value(t, kv, "all.530000"); v.Open != 1 || v.Writer != "a" {
		t.Fatalf("a wrote after losing the lease: %+v", v)
	}
	if a.Held() {
		t.Fatal("a still believes it holds the lease")
	}
	if ok, _ := a.TryOnce(ctx); ok {
		t.Fatal("a took b's live lease back")
	}
	// b writes
	pb := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return t0 }})
	pb.ApplyEvent(evs[0].seq, evs[0].e, evs[0].p)
	pb.ApplyEvent(evs[1].seq, evs[1].e, evs[1].p)
	wb := &kvstatus.Writer{JS: js, KV: kv, Status: pb, Lease: b, Log: quiet()}
	if err := wb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := value(t, kv, "all.530000"); v.Open != 2 || v.Writer != "b" {
		t.Fatalf("b's write: %+v", v)
	}
	// renewals keep the holder's writes valid
	if ok, _ := b.TryOnce(ctx); !ok {
		t.Fatal("b cannot renew")
	}
	if wb.Fenced() != 0 {
		t.Fatalf("b fenced itself: %d", wb.Fenced())
	}
}
