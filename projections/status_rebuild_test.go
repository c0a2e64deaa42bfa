package projections_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections"
	"qingling/projections/status"
)

// TestDecodeFastMatchesEncodingJSON: the replay's decoder reads every event of a sample (every
// type) exactly as events.ParseEvent and Payload do, and odd spellings fall back to them.
func TestDecodeFastMatchesEncodingJSON(t *testing.T) {
	cat, _ := events.LoadCatalog()
	evs := sample(t, cat, 300)
	odd := []string{
		`{"specversion":"1.0","id":"x","source":"s","subject":"0193f2c4-0000-7000-8000-000000000001","data":{"reason":"r"},"type":"hazard.withdrawn","time":"2025-03-02T09:31:00+08:00"}`,
		`{"SpecVersion":"1.0","id":"x","Type":"hazard.withdrawn","subject":"s","data":{"Reason":"r"},"time":"2025-03-02T09:31:00+08:00"}`,
		`{"specversion":"1.0","id":"x","type":"hazard.graded","subject":"s","data":{"grade":"major","grade":"general"},"type":"hazard.graded","time":"2025-03-02T09:31:00+08:00"}`,
		` { "specversion" : "1.0" , "type" : "hazard.withdrawn" , "subject" : "s" , "data" : { "reason" : "r" } , "time":"2025-03-02T09:31:00+08:00"} `,
	}
	types := map[string]bool{}
	check := func(raw []byte) {
		t.Helper()
		e1, err1 := events.ParseEvent(raw)
		var p1 any
		if err1 == nil {
			p1, err1 = e1.Payload()
		}
		e2, p2, err2 := projections.DecodeFast(raw)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%s: errors differ: %v vs %v", raw, err1, err2)
		}
		if err1 != nil {
			return
		}
		types[e1.Type] = true
		if !reflect.DeepEqual(p1, p2) {
			t.Fatalf("%s: payload %#v vs %#v", raw, p1, p2)
		}
		d1, d2 := e1.Data, e2.Data
		e1.Data, e2.Data = nil, nil
		if !reflect.DeepEqual(e1, e2) || string(compact(d1)) != string(compact(d2)) {
			t.Fatalf("%s: event %#v vs %#v (data %s / %s)", raw, e1, e2, d1, d2)
		}
	}
	for _, s := range evs {
		check(s.raw)
	}
	for _, s := range odd {
		check([]byte(s))
	}
	if len(types) < 9 {
		t.Fatalf("sample covers only %v", types)
	}
}

// TestReplayEqualsRunner: Replay over a log leaves the index and status as the live runner's
// in-order feed does, and reports progress up to the total.
func TestReplayEqualsRunner(t *testing.T) {
	cat, _ := events.LoadCatalog()
	evs := sample(t, cat, 400)
	st := logWith(t, evs)
	clock := func() time.Time { return benchNow }
	idx := projections.NewIndex(cat)
	sp := status.New(status.Config{Catalog: cat, Clock: clock})
	var last, total int
	seq, err := projections.Replay(context.Background(), st, idx, []projections.Projection{sp}, func(d, n int) { last, total = d, n })
	if err != nil || seq != uint64(len(evs)) || last != total || total != len(evs) {
		t.Fatalf("replay: seq %d err %v progress %d/%d", seq, err, last, total)
	}
	idx2 := projections.NewIndex(cat)
	sp2 := status.New(status.Config{Catalog: cat, Clock: clock})
	for i, s := range evs {
		e, _ := events.ParseEvent(s.raw)
		p, _ := e.Payload()
		_ = idx2.ApplyParsed(uint64(i+1), s.raw, e, p)
		sp2.ApplyEvent(uint64(i+1), e, p)
	}
	// The replay hashed nothing: every hazard's hash is unknown until resolved from its last
	// stored event, and then the runner's.
	var replayed []events.Hazard
	idx.Each(func(h *events.Hazard) bool { replayed = append(replayed, *h); return true })
	for _, h := range replayed {
		if !h.HashUnknown || h.PrevHash() != "" {
			t.Fatalf("replayed hazard %s: hash known (%x)", h.ID, h.LastHash)
		}
		if idx.ResolveHash(h.ID, h.Seq-1, sha256.Sum256(evs[h.Seq-1].raw)) {
			t.Fatalf("hazard %s: resolved at a sequence that is not its last", h.ID)
		}
		if !idx.ResolveHash(h.ID, h.Seq, sha256.Sum256(evs[h.Seq-1].raw)) {
			t.Fatalf("hazard %s: not resolved at its last sequence", h.ID)
		}
	}
	assertSameReadModel(t, idx, sp, idx2, sp2)
}

func assertSameReadModel(t *testing.T, idx *projections.Index, sp *status.Projection, idx2 *projections.Index, sp2 *status.Projection) {
	t.Helper()
	if idx.Len() != idx2.Len() {
		t.Fatalf("index: %d hazards vs %d", idx.Len(), idx2.Len())
	}
	idx2.Each(func(h *events.Hazard) bool {
		g, ok := idx.Get(h.ID)
		h2 := *h
		g.AmendSeqs, h2.AmendSeqs = nil, nil
		if !ok || !sameHazard(&g, &h2) {
			t.Fatalf("index hazard %s:\n%+v\n%+v", h.ID, g, h2)
		}
		return true
	})
	a, _, _ := sp.All()
	b, _, _ := sp2.All()
	if !reflect.DeepEqual(a, b) {
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("status row %s: %+v vs %+v", a[i].Key, a[i].Counts, b[i].Counts)
			}
		}
	}
	_, d1, _ := sp.Daily("all", "530000", benchNow.AddDate(0, 0, -800), benchNow)
	_, d2, _ := sp2.Daily("all", "530000", benchNow.AddDate(0, 0, -800), benchNow)
	if !reflect.DeepEqual(d1, d2) {
		t.Fatal("daily figures differ")
	}
}

// sameHazard compares states as JSON would show them (instants by value, not by location).
func compact(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}

func sameHazard(a, b *events.Hazard) bool { return reflect.DeepEqual(*a, *b) }

// TestReplayKeepsNoViews: a replay decodes strings that view the stored bytes; the read model
// keeps none of them — bytes overwritten after the replay leave the index and status equal to
// a replay of bytes that stayed as they were.
func TestReplayKeepsNoViews(t *testing.T) {
	cat, _ := events.LoadCatalog()
	evs := sample(t, cat, 400)
	clock := func() time.Time { return benchNow }
	logOf := func() *memLog {
		l := &memLog{}
		for i, s := range evs {
			l.msgs = append(l.msgs, jsstore.Msg{Seq: uint64(i + 1), Subject: s.subject, Data: bytes.Clone(s.raw), MsgID: s.msgID})
		}
		return l
	}
	replay := func(l *memLog) (*projections.Index, *status.Projection) {
		idx := projections.NewIndex(cat)
		sp := status.New(status.Config{Catalog: cat, Clock: clock})
		if seq, err := projections.Replay(context.Background(), l, idx, []projections.Projection{sp}, nil); err != nil || seq != uint64(len(evs)) {
			t.Fatalf("replay: %d %v", seq, err)
		}
		return idx, sp
	}
	spoilt := logOf()
	idx, sp := replay(spoilt)
	for _, m := range spoilt.msgs {
		for i := range m.Data {
			m.Data[i] = 'x'
		}
	}
	idx2, sp2 := replay(logOf())
	assertSameReadModel(t, idx, sp, idx2, sp2)
	n := 0
	idx2.Each(func(h *events.Hazard) bool {
		g, _ := idx.Get(h.ID)
		if !reflect.DeepEqual(g.AmendSeqs, h.AmendSeqs) {
			t.Fatalf("hazard %s amendments %v vs %v", h.ID, g.AmendSeqs, h.AmendSeqs)
		}
		n++
		return true
	})
	seq, id := sp.Checkpoint()
	seq2, id2 := sp2.Checkpoint()
	if n == 0 || seq != seq2 || id != id2 || strings.Contains(id, "xxx") {
		t.Fatalf("%d hazards; status checkpoint %d %q vs %d %q", n, seq, id, seq2, id2)
	}
}

// TestListSpellsEachID: a page's hazards carry their own ids (List spells them over one
// buffer), and a filter that passes over every hazard allocates nothing per hazard.
func TestListSpellsEachID(t *testing.T) {
	cat, _ := events.LoadCatalog()
	idx := projections.NewIndex(cat)
	for i, s := range sample(t, cat, 300) {
		if err := idx.Apply(uint64(i+1), s.raw); err != nil {
			t.Fatal(err)
		}
	}
	page, err := idx.List(projections.Filter{Limit: 500})
	if err != nil || len(page.Items) != 300 {
		t.Fatalf("%d items, %v", len(page.Items), err)
	}
	seen := map[string]bool{}
	for _, h := range page.Items {
		g, ok := idx.Get(h.ID)
		if !ok || seen[h.ID] || g.Seq != h.Seq || g.ReportSeq != h.ReportSeq {
			t.Fatalf("item %s: in the index %v, twice %v", h.ID, ok, seen[h.ID])
		}
		seen[h.ID] = true
	}
	allocs := testing.AllocsPerRun(20, func() {
		if p, err := idx.List(projections.Filter{Site: "no-such-site", Limit: 500}); err != nil || len(p.Items) != 0 {
			t.Fatalf("%d items, %v", len(p.Items), err)
		}
	})
	if allocs > 2 {
		t.Fatalf("a list that matches none of 300 hazards: %.0f allocations", allocs)
	}
}

// TestReplayBesideReaders: lists, gets, command lookups and a snapshot run while a replay
// fills the index (as a server's do during its catch-up); run with -race. Afterwards every
// command of the log is found.
func TestReplayBesideReaders(t *testing.T) {
	cat, _ := events.LoadCatalog()
	evs := sample(t, cat, 3000)
	l := &memLog{}
	for i, s := range evs {
		l.msgs = append(l.msgs, jsstore.Msg{Seq: uint64(i + 1), Subject: s.subject, Data: s.raw, MsgID: s.msgID})
	}
	idx := projections.NewIndex(cat)
	sp := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return benchNow }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, _ := events.ParseEvent(evs[0].raw)
	snaps := &projections.Snapshots{Path: filepath.Join(t.TempDir(), "readmodel.snap"), Index: idx, Status: sp}
	done := make(chan struct{})
	readers := make(chan int, 3)
	for r := range 3 {
		go func() {
			n := 0
			for ctx.Err() == nil {
				switch r {
				case 0:
					_, _ = idx.List(projections.Filter{Sector: "chem", Limit: 20})
				case 1:
					_, _ = idx.Get(first.Subject)
					_, _ = idx.Command(first.CommandID)
				case 2:
					_, _ = snaps.Save()
				}
				n++
				select {
				case <-done:
					readers <- n
					return
				default:
				}
			}
			readers <- n
		}()
	}
	if _, err := projections.Replay(ctx, l, idx, []projections.Projection{sp}, nil); err != nil {
		t.Fatal(err)
	}
	close(done)
	for range 3 {
		if n := <-readers; n == 0 {
			t.Fatal("a reader never ran")
		}
	}
	for _, s := range evs {
		e, _ := events.ParseEvent(s.raw)
		if r, ok := idx.Command(e.CommandID); !ok || r.HazardID != e.Subject || r.Type != e.Type {
			t.Fatalf("command %s of %s: %+v %v", e.CommandID, e.Type, r, ok)
		}
	}
}

// TestReplayTrimsItsReserve: a replay reserves slots for hazards of two events; a log of
// hazards with more leaves no more than a fifth of its slots unused.
func TestReplayTrimsItsReserve(t *testing.T) {
	cat, _ := events.LoadCatalog()
	evs := sample(t, cat, 1500)
	st := logWith(t, evs)
	idx := projections.NewIndex(cat)
	if _, err := projections.Replay(context.Background(), st, idx, nil, nil); err != nil {
		t.Fatal(err)
	}
	n, room := projections.Slots(idx)
	if n != idx.Len() || room-n > room/5 {
		t.Fatalf("%d events, %d hazards: %d slots, room for %d", len(evs), idx.Len(), n, room)
	}
}
