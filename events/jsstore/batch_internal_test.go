package jsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"qingling/events"
)

// Tests that put a known set of appends into one batch: the committer's lock is held while
// the appends enter, so that when it is let go every one of them is in flight and the
// committer waits for all of them to queue.

func openGroup(t *testing.T) *Store {
	t.Helper()
	srv, err := RunServer(ServerConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ConnectInProcess(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, nc, Config{GroupCommit: GroupCommit{Mode: GroupOn, MinInFlight: 1, MinBatch: 1, Linger: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func subj(id string) string { return events.Subject("chem", "530000", "530100", "530181", id) }

func payload(id string, n int) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":"%s","subject":"%s","n":%d}`, events.NewID(), id, n)
}

type result struct {
	ack Ack
	err error
}

// together appends all of as at once, as one gathering of the committer.
func together(t *testing.T, s *Store, as []Append) []result {
	t.Helper()
	out := make([]result, len(as))
	var wg sync.WaitGroup
	s.gc.mu.Lock()
	for i, a := range as {
		wg.Go(func() {
			out[i].ack, out[i].err = s.Append(testCtx(t), a)
		})
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); s.gc.inflight.Load() < int64(len(as)); <-tick.C {
		if time.Now().After(deadline) {
			s.gc.mu.Unlock()
			t.Fatalf("only %d of %d appends in flight", s.gc.inflight.Load(), len(as))
		}
	}
	s.gc.mu.Unlock()
	wg.Wait()
	return out
}

// plain appends a report of a fresh hazard through the plain path.
func report(t *testing.T, s *Store) (id string, ack Ack) {
	t.Helper()
	id = events.NewID()
	ack, err := s.appendOne(testCtx(t), Append{Subject: subj(id), Data: payload(id, 0), MsgID: events.NewID(), New: true, HazardID: id})
	if err != nil {
		t.Fatal(err)
	}
	return id, ack
}

// stored checks that seq holds exactly a.
func stored(t *testing.T, s *Store, seq uint64, a Append) {
	t.Helper()
	m, err := s.Get(testCtx(t), seq)
	if err != nil {
		t.Fatalf("Get(%d): %v", seq, err)
	}
	if m.Subject != a.Subject || m.MsgID != a.MsgID || !bytes.Equal(m.Data, a.Data) {
		t.Fatalf("seq %d holds %s %s %q, want %s %s %q", seq, m.Subject, m.MsgID, m.Data, a.Subject, a.MsgID, a.Data)
	}
}

func wantStale(t *testing.T, err error, current uint64) {
	t.Helper()
	var e *events.Error
	var st *StaleError
	if !errors.As(err, &e) || e.Kind != events.KindConflict || e.Code != "stale_state" || !errors.As(err, &st) || st.Current != current {
		t.Fatalf("err %v: want a stale_state conflict at %d", err, current)
	}
}

func TestBatchCommitsTogether(t *testing.T) {
	s := openGroup(t)
	var as []Append
	for i := range 8 { // existing hazards, each with its own per-subject check
		id, ack := report(t, s)
		as = append(as, Append{Subject: subj(id), Data: payload(id, 1), MsgID: events.NewID(), HazardID: id, Expect: ack.Seq})
		_ = i
	}
	for range 8 { // new hazards, with the check on every subject of their id
		id := events.NewID()
		as = append(as, Append{Subject: subj(id), Data: payload(id, 0), MsgID: events.NewID(), HazardID: id, New: true})
	}
	before := s.Stats()
	res := together(t, s, as)
	st := s.Stats()
	if st.Batches-before.Batches != 1 || st.Batched-before.Batched != 16 || st.Single != before.Single || st.Rejected != 0 {
		t.Fatalf("stats %+v after %+v: want one batch of 16 and no plain publish", st, before)
	}
	seqs := map[uint64]bool{}
	lo, hi := ^uint64(0), uint64(0)
	for i, r := range res {
		if r.err != nil || r.ack.Duplicate || !bytes.Equal(r.ack.Data, as[i].Data) {
			t.Fatalf("member %d: %+v %v", i, r.ack, r.err)
		}
		stored(t, s, r.ack.Seq, as[i])
		seqs[r.ack.Seq] = true
		lo, hi = min(lo, r.ack.Seq), max(hi, r.ack.Seq)
	}
	if len(seqs) != 16 || hi-lo != 15 || hi != 8+16 {
		t.Fatalf("batch at %d..%d (%d distinct), want 16 contiguous ending at 24", lo, hi, len(seqs))
	}
}

func TestBatchStaleMemberAlone(t *testing.T) {
	s := openGroup(t)
	var as []Append
	var cur []uint64
	for range 6 {
		id, ack := report(t, s)
		as = append(as, Append{Subject: subj(id), Data: payload(id, 1), MsgID: events.NewID(), HazardID: id, Expect: ack.Seq})
		cur = append(cur, ack.Seq)
	}
	// Member 2 was decided on a state that has moved on; member 4 reports a hazard id that
	// exists (under another sector); member 5 is new.
	moved, err := s.appendOne(testCtx(t), Append{Subject: as[2].Subject, Data: payload(as[2].HazardID, 9), MsgID: events.NewID(), HazardID: as[2].HazardID, Expect: cur[2]})
	if err != nil {
		t.Fatal(err)
	}
	taken := as[4].HazardID
	as[4] = Append{Subject: events.Subject("mine", "530000", "530100", "530181", taken), Data: payload(taken, 0), MsgID: events.NewID(), HazardID: taken, New: true}
	fresh := events.NewID()
	as[5] = Append{Subject: subj(fresh), Data: payload(fresh, 0), MsgID: events.NewID(), HazardID: fresh, New: true}

	before := s.Stats()
	res := together(t, s, as)
	st := s.Stats()
	if st.Rejected-before.Rejected != 1 || st.Batches != before.Batches || st.Single-before.Single != uint64(len(as)) {
		t.Fatalf("stats %+v after %+v: want one rejected batch whose %d members went on their own", st, before, len(as))
	}
	wantStale(t, res[2].err, moved.Seq)
	wantStale(t, res[4].err, cur[4])
	for i, r := range res {
		if i == 2 || i == 4 {
			continue
		}
		if r.err != nil || r.ack.Duplicate {
			t.Fatalf("member %d: %+v %v; want it stored", i, r.ack, r.err)
		}
		stored(t, s, r.ack.Seq, as[i])
	}
	if last, _ := s.LastSeq(testCtx(t)); last != 7+4 {
		t.Fatalf("last seq %d, want 11 (7 before, 4 members landed)", last)
	}
}

func TestBatchDuplicateMember(t *testing.T) {
	s := openGroup(t)
	var as []Append
	for range 5 {
		id, ack := report(t, s)
		as = append(as, Append{Subject: subj(id), Data: payload(id, 1), MsgID: events.NewID(), HazardID: id, Expect: ack.Seq})
	}
	// Member 0 landed before, and is sent again re-encoded (its Msg-Id is stored: 10201 rejects
	// the batch); member 1 is a report retried after it landed.
	first, err := s.appendOne(testCtx(t), as[0])
	if err != nil {
		t.Fatal(err)
	}
	retry := as[0]
	retry.Data = payload(as[0].HazardID, 2)
	retry.Expect = first.Seq
	id := events.NewID()
	rep := Append{Subject: subj(id), Data: payload(id, 0), MsgID: events.NewID(), HazardID: id, New: true}
	repAck, err := s.appendOne(testCtx(t), rep)
	if err != nil {
		t.Fatal(err)
	}
	batch := []Append{retry, rep, as[1], as[2], as[3], as[4]}
	before := s.Stats()
	res := together(t, s, batch)
	if st := s.Stats(); st.Rejected-before.Rejected != 1 {
		t.Fatalf("stats %+v: want the batch rejected", st)
	}
	if r := res[0]; r.err != nil || !r.ack.Duplicate || r.ack.Seq != first.Seq || !bytes.Equal(r.ack.Data, as[0].Data) {
		t.Fatalf("re-encoded retry: %+v %v; want a duplicate at %d with the stored bytes", r.ack, r.err, first.Seq)
	}
	if r := res[1]; r.err != nil || !r.ack.Duplicate || r.ack.Seq != repAck.Seq || !bytes.Equal(r.ack.Data, rep.Data) {
		t.Fatalf("retried report: %+v %v; want a duplicate at %d", r.ack, r.err, repAck.Seq)
	}
	for i := 2; i < len(batch); i++ {
		if r := res[i]; r.err != nil || r.ack.Duplicate {
			t.Fatalf("member %d: %+v %v", i, r.ack, r.err)
		}
		stored(t, s, res[i].ack.Seq, batch[i])
	}
}

func TestBatchOneEventPerHazard(t *testing.T) {
	s := openGroup(t)
	// Two reports of one hazard id (under two sectors) in one gathering, with others: they may
	// not share a batch (each checks the other's absence); exactly one lands.
	id := events.NewID()
	as := []Append{
		{Subject: subj(id), Data: payload(id, 0), MsgID: events.NewID(), HazardID: id, New: true},
		{Subject: events.Subject("mine", "530000", "530100", "530181", id), Data: payload(id, 0), MsgID: events.NewID(), HazardID: id, New: true},
	}
	for range 4 {
		x := events.NewID()
		as = append(as, Append{Subject: subj(x), Data: payload(x, 0), MsgID: events.NewID(), HazardID: x, New: true})
	}
	res := together(t, s, as)
	ok, conflicts := 0, 0
	for i, r := range res[:2] {
		switch {
		case r.err == nil:
			ok++
			stored(t, s, r.ack.Seq, as[i])
		case events.KindOf(r.err) == events.KindConflict:
			conflicts++
		default:
			t.Fatalf("report %d: %v", i, r.err)
		}
	}
	if ok != 1 || conflicts != 1 {
		t.Fatalf("%d stored, %d conflicts; want one of each", ok, conflicts)
	}
	for i, r := range res[2:] {
		if r.err != nil {
			t.Fatalf("member %d: %v", i+2, r.err)
		}
		stored(t, s, r.ack.Seq, as[i+2])
	}
	if h, err := s.History(testCtx(t), events.AnySubject(id), 0); err != nil || len(h) != 1 {
		t.Fatalf("hazard %s has %d events (%v), want 1", id, len(h), err)
	}
	if st := s.Stats(); st.Batches == 0 {
		t.Fatalf("stats %+v: no batch committed", st)
	}
}

func TestBatchSmallGatheringGoesPlain(t *testing.T) {
	s := openGroup(t)
	s.gc.cfg.MinBatch, s.gc.cfg.Linger = 8, 50*time.Millisecond // the three wait out the linger, then go plain
	var as []Append
	for range 3 {
		id := events.NewID()
		as = append(as, Append{Subject: subj(id), Data: payload(id, 0), MsgID: events.NewID(), HazardID: id, New: true})
	}
	res := together(t, s, as)
	for i, r := range res {
		if r.err != nil {
			t.Fatal(r.err)
		}
		stored(t, s, r.ack.Seq, as[i])
	}
	if st := s.Stats(); st.Batches != 0 || st.Single != 3 {
		t.Fatalf("stats %+v: want 3 plain publishes", st)
	}
}

func TestBatchChecksEverySubjectOfANewHazard(t *testing.T) {
	s := openGroup(t)
	taken, first := report(t, s)
	var as []Append
	for range 5 {
		id := events.NewID()
		as = append(as, Append{Subject: subj(id), Data: payload(id, 0), MsgID: events.NewID(), HazardID: id, New: true})
	}
	// The only bad member: a report of an id that exists under another sector and county.
	as = append(as, Append{Subject: events.Subject("forest", "530000", "530100", "530102", taken), Data: payload(taken, 0), MsgID: events.NewID(), HazardID: taken, New: true})
	res := together(t, s, as)
	if st := s.Stats(); st.Rejected != 1 || st.Batches != 0 {
		t.Fatalf("stats %+v: the server let a batch through with a failed wildcard check", st)
	}
	wantStale(t, res[5].err, first.Seq)
	for i, r := range res[:5] {
		if r.err != nil {
			t.Fatalf("member %d: %v", i, r.err)
		}
		stored(t, s, r.ack.Seq, as[i])
	}
	if h, err := s.History(testCtx(t), events.AnySubject(taken), 0); err != nil || len(h) != 1 {
		t.Fatalf("hazard %s has %d events (%v), want 1", taken, len(h), err)
	}
}
