package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"qingling/events"
	"qingling/handlers/client"
	"qingling/handlers/evidence"
)

// TestOutboxOfflineThenSyncInterrupted: 500 findings written while the server is down; a sync
// killed halfway; a crash between an answer and the removal of its entry; the sync run again.
// The server ends with exactly 500 hazards, each with the occurred_at it was queued with.
func TestOutboxOfflineThenSyncInterrupted(t *testing.T) {
	const n = 500
	s := startServer(t)
	ctx := context.Background()
	dir := t.TempDir()
	field := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	tick := 0
	box := &client.Outbox{Dir: dir, Clock: func() time.Time { tick++; return field.Add(time.Duration(tick) * time.Second) }}
	tr, _ := client.NewHTTP(deadURL(t))
	down := &client.Client{T: tr, Actor: "insp-1", Retry: client.Retry{Attempts: 1}}

	occurred := map[string]time.Time{}
	var ids []string
	for i := 0; i < n; i++ {
		var files []client.File
		if i%100 == 0 {
			pic := photo(t, i/100+1)
			files = append(files, client.File{SHA256: evidence.Sum(pic), Name: fmt.Sprintf("p%d.png", i), Data: pic})
		}
		cmd, err := client.NewCommand(events.ActReport, "", finding(fmt.Sprintf("第%d处隐患", i+1), client.Evidence(files)...), client.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		_, queued, err := box.Deliver(ctx, down, cmd, files)
		if err != nil || queued == nil {
			t.Fatalf("finding %d: queued %v, err %v", i, queued, err)
		}
		at, ok := queued.OccurredAt()
		if !ok {
			t.Fatalf("entry %d has no occurred_at", i)
		}
		occurred[cmd.HazardID] = at
		ids = append(ids, cmd.HazardID)
	}
	// a later command on the first finding, queued after it: order is kept
	plan, _ := client.NewCommand(events.ActPlan, ids[0], events.Planned{Measures: "清理可燃物"}, client.Opts{})
	if _, q, err := box.Deliver(ctx, down, plan, nil); err != nil || q == nil {
		t.Fatalf("plan: %v", err)
	}
	entries, _ := box.Entries()
	if len(entries) != n+1 || entries[0].Seq != 1 || entries[n].Action != events.ActPlan {
		t.Fatalf("outbox holds %d entries", len(entries))
	}
	saved, err := os.ReadFile(entries[99].Path) // to play a crash after its answer, below
	if err != nil {
		t.Fatal(err)
	}

	// the link is back; the first sync is killed after 250 answers
	up := s.httpClient(t, "insp-1")
	sctx, cancel := context.WithCancel(ctx)
	rep, err := box.Sync(sctx, up, func(done, total int) {
		if done == n/2 {
			cancel()
		}
	})
	cancel()
	if !errors.Is(err, context.Canceled) || rep.Sent != n/2 || rep.Left != n/2+1 {
		t.Fatalf("interrupted sync: %+v %v", rep, err)
	}
	if left, _ := box.Entries(); len(left) != n/2+1 || left[0].Seq != n/2+1 {
		t.Fatalf("after the interruption %d entries are left", len(left))
	}
	if got := s.index.Len(); got != n/2 {
		t.Fatalf("server holds %d hazards after the interrupted sync", got)
	}
	// a crash between the answer and the removal leaves an entry that was already recorded
	if err := os.WriteFile(entries[99].Path, saved, 0o640); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var calls []int
	rep, err = box.Sync(ctx, up, func(done, total int) { mu.Lock(); calls = append(calls, done); mu.Unlock() })
	if err != nil || rep.Sent != n/2+1 || rep.Replayed != 1 || rep.Left != 0 || len(rep.Rejected) != 0 || len(calls) != n/2+2 {
		t.Fatalf("second sync: %+v %v (%d progress calls)", rep, err, len(calls))
	}
	if left, _ := box.Entries(); len(left) != 0 {
		t.Fatalf("%d entries left", len(left))
	}
	if files, _ := os.ReadDir(filepath.Join(dir, "files")); len(files) != 0 {
		t.Fatalf("%d evidence copies left in the outbox", len(files))
	}

	if got := s.index.Len(); got != n {
		t.Fatalf("server holds %d hazards, want exactly %d", got, n)
	}
	if seq := s.lastSeq(t); seq != n+1 {
		t.Fatalf("the log holds %d events, want %d (500 reports and one plan)", seq, n+1)
	}
	for _, id := range ids {
		h, ok := s.index.Get(id)
		if !ok || h.FoundAt != events.InstantOf(occurred[id]) || !h.RecordedAt.After(h.FoundAt.Time().Add(47*time.Hour)) {
			t.Fatalf("hazard %s: found %v (queued %v), recorded %v", id, h.FoundAt, occurred[id], h.RecordedAt)
		}
	}
	if h, _ := s.index.Get(ids[0]); h.Status != events.StatusPlanned {
		t.Fatalf("the plan queued after the report: status %s", h.Status)
	}
	hist, err := up.History(ctx, ids[7])
	if err != nil || len(hist) != 1 || hist[0].OccurredAt != events.FormatInstant(occurred[ids[7]]) || hist[0].OccurredAt == hist[0].RecordedAt {
		t.Fatalf("history: %+v %v", hist, err)
	}
	if list, _ := s.ev.List(ctx); len(list) != n/100 {
		t.Fatalf("evidence bucket holds %d files, want %d", len(list), n/100)
	}
}

func TestOutboxRejectsRefusedAndKeepsGoing(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	box := &client.Outbox{Dir: t.TempDir()}
	good, _ := client.NewCommand(events.ActReport, "", finding("好"), client.Opts{})
	bad, _ := client.NewCommand(events.ActComplete, good.HazardID, events.Completed{}, client.Opts{}) // fine: general from reported
	clear, _ := client.NewCommand(events.ActClear, good.HazardID, events.Cleared{Method: "on-site"}, client.Opts{})
	clear.Actor = "insp-1" // the completer: refused by a rule
	after, _ := client.NewCommand(events.ActReport, "", finding("后"), client.Opts{})
	for _, c := range []client.Command{good, bad, clear, after} {
		if _, err := box.Queue(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := box.Sync(ctx, s.httpClient(t, "insp-1"), nil)
	if err != nil || rep.Sent != 3 || len(rep.Rejected) != 1 || rep.Rejected[0].Error.Code != "completer_cannot_clear" {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	rej, _ := box.Rejected()
	if len(rej) != 1 || rej[0].Seq != 3 || rej[0].Error == nil {
		t.Fatalf("rejected/: %+v", rej)
	}
	// numbering continues above the rejected entries
	e, err := box.Queue(after, nil)
	if err != nil || e.Seq != 4 {
		t.Fatalf("next entry %d %v", e.Seq, err)
	}
	// an unreachable server stops the sync and keeps the entry
	tr, _ := client.NewHTTP(deadURL(t))
	rep, err = box.Sync(ctx, &client.Client{T: tr, Actor: "insp-1", Retry: client.Retry{Attempts: 1}}, nil)
	if !client.Unreachable(err) || rep.Left != 1 {
		t.Fatalf("sync to a dead server: %+v %v", rep, err)
	}
	if left, _ := box.Entries(); len(left) != 1 {
		t.Fatalf("entry lost: %d left", len(left))
	}
}

// TestOutboxConcurrentWriters: writers racing for sequence numbers never share one and never
// lose an entry.
func TestOutboxConcurrentWriters(t *testing.T) {
	box := &client.Outbox{Dir: t.TempDir()}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				c, _ := client.NewCommand(events.ActReport, "", finding("x"), client.Opts{})
				if _, err := box.Queue(c, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	entries, err := box.Entries()
	if err != nil || len(entries) != 200 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
}
