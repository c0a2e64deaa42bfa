package projections_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/projections"
	"qingling/projections/status"
)

// TestSnapshotRestartMidStream: a read model saved mid-stream, loaded on a restart and caught
// up from its checkpoint + 1 (not from 1) equals a rebuild from scratch; a snapshot of
// another log or a damaged one is refused and the read model stays empty.
func TestSnapshotRestartMidStream(t *testing.T) {
	cat, _ := events.LoadCatalog()
	ctx := context.Background()
	clock := func() time.Time { return benchNow }
	evs := sample(t, cat, 600)
	half := len(evs) / 2
	st := logWith(t, evs[:half])
	path := filepath.Join(t.TempDir(), "readmodel.snap")

	idx := projections.NewIndex(cat)
	sp := status.New(status.Config{Catalog: cat, Clock: clock})
	if _, err := projections.Replay(ctx, st, idx, []projections.Projection{sp}, nil); err != nil {
		t.Fatal(err)
	}
	snaps := &projections.Snapshots{Path: path, Index: idx, Status: sp}
	h, err := snaps.Save()
	if err != nil || h.Seq != uint64(half) || h.Hazards != idx.Len() || h.Commands == 0 {
		t.Fatalf("save: %+v %v", h, err)
	}
	if again, err := snaps.Save(); err != nil || again.Hazards != 0 {
		t.Fatalf("a second save with nothing new should do nothing: %+v %v", again, err)
	}

	// the log moves on while the service is down
	js := st.JetStream()
	for _, e := range evs[half:] {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: e.subject, Data: e.raw, Header: nats.Header{jetstream.MsgIDHeader: []string{e.msgID}}}); err != nil {
			t.Fatal(err)
		}
	}

	// restart: load and catch up
	idx2 := projections.NewIndex(cat)
	sp2 := status.New(status.Config{Catalog: cat, Clock: clock})
	h2, err := (&projections.Snapshots{Path: path, Index: idx2, Status: sp2}).Load(ctx, st)
	if err != nil || h2.Seq != uint64(half) || idx2.Applied() != uint64(half) || sp2.Seq() != uint64(half) {
		t.Fatalf("load: %+v %v (applied %d, status %d)", h2, err, idx2.Applied(), sp2.Seq())
	}
	total := 0
	if _, err := projections.Replay(ctx, st, idx2, []projections.Projection{sp2}, func(_, n int) { total = n }); err != nil {
		t.Fatal(err)
	}
	if total != len(evs)-half {
		t.Fatalf("caught up %d events, want only the %d after the checkpoint", total, len(evs)-half)
	}

	// a rebuild from scratch
	idx3 := projections.NewIndex(cat)
	sp3 := status.New(status.Config{Catalog: cat, Clock: clock})
	if _, err := projections.Replay(ctx, st, idx3, []projections.Projection{sp3}, nil); err != nil {
		t.Fatal(err)
	}
	assertSameReadModel(t, idx2, sp2, idx3, sp3)

	// another log: the checkpoint's event is not the same
	other := logWith(t, evs[1:half+1])
	idx4 := projections.NewIndex(cat)
	sp4 := status.New(status.Config{Catalog: cat, Clock: clock})
	if _, err := (&projections.Snapshots{Path: path, Index: idx4, Status: sp4}).Load(ctx, other); !errors.Is(err, projections.ErrNoSnapshot) || idx4.Len() != 0 || sp4.Len() != 0 {
		t.Fatalf("foreign snapshot: %v, %d hazards", err, idx4.Len())
	}
	// damaged
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	os.WriteFile(path, b, 0o600)
	if _, err := (&projections.Snapshots{Path: path, Index: idx4, Status: sp4}).Load(ctx, st); !errors.Is(err, projections.ErrNoSnapshot) {
		t.Fatalf("damaged snapshot: %v", err)
	}
	if _, err := (&projections.Snapshots{Path: path + ".none", Index: idx4, Status: sp4}).Load(ctx, st); !errors.Is(err, projections.ErrNoSnapshot) {
		t.Fatalf("missing snapshot: %v", err)
	}
}

// notePart is a SnapshotPart holding some bytes.
type notePart struct {
	name   string
	data   []byte
	ready  bool
	loaded []byte
}

func (p *notePart) SnapshotName() string { return p.name }
func (p *notePart) WriteSnapshot(w io.Writer) error {
	if !p.ready {
		return projections.ErrPartNotReady
	}
	_, err := w.Write(p.data)
	return err
}
func (p *notePart) ReadSnapshot(b []byte) error { p.loaded = bytes.Clone(b); return nil }

// TestSnapshotParts: other read models ride in the snapshot; a part not ready is left out
// (its owner rebuilds it), and one the file does not hold is not touched.
func TestSnapshotParts(t *testing.T) {
	cat, _ := events.LoadCatalog()
	ctx := context.Background()
	evs := sample(t, cat, 50)
	st := logWith(t, evs)
	path := filepath.Join(t.TempDir(), "readmodel.snap")
	idx := projections.NewIndex(cat)
	sp := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return benchNow }})
	if _, err := projections.Replay(ctx, st, idx, []projections.Projection{sp}, nil); err != nil {
		t.Fatal(err)
	}
	a := &notePart{name: "a", data: []byte("alpha"), ready: true}
	b := &notePart{name: "b", data: []byte("beta")} // not ready
	empty := &notePart{name: "empty", ready: true}
	if _, err := (&projections.Snapshots{Path: path, Index: idx, Status: sp, Parts: []projections.SnapshotPart{a, b, empty}}).Save(); err != nil {
		t.Fatal(err)
	}
	a2, b2, c2, e2 := &notePart{name: "a"}, &notePart{name: "b"}, &notePart{name: "c"}, &notePart{name: "empty"}
	idx2 := projections.NewIndex(cat)
	sp2 := status.New(status.Config{Catalog: cat, Clock: func() time.Time { return benchNow }})
	h, err := (&projections.Snapshots{Path: path, Index: idx2, Status: sp2, Parts: []projections.SnapshotPart{c2, b2, a2, e2}}).Load(ctx, st)
	if err != nil || h.Hazards != idx.Len() || idx2.Len() != idx.Len() {
		t.Fatalf("load: %+v %v", h, err)
	}
	if string(a2.loaded) != "alpha" || b2.loaded != nil || c2.loaded != nil || e2.loaded == nil || len(e2.loaded) != 0 {
		t.Fatalf("parts loaded: a %q, b %q, c %q, empty %q", a2.loaded, b2.loaded, c2.loaded, e2.loaded)
	}
}

// TestOddHazardID: a hazard whose id is not spelled canonically (a log written by something
// else) is kept with its spelling, found by it, and survives a snapshot.
func TestOddHazardID(t *testing.T) {
	cat, _ := events.LoadCatalog()
	ctx := context.Background()
	clock := func() time.Time { return benchNow }
	evs := sample(t, cat, 20)
	var odd string
	for i := range evs {
		e, err := events.ParseEvent(evs[i].raw)
		if err != nil {
			t.Fatal(err)
		}
		if odd == "" && e.Type == events.TypeReported {
			odd = e.Subject
		}
		if e.Subject == odd {
			up := strings.ToUpper(odd)
			evs[i].raw = bytes.ReplaceAll(evs[i].raw, []byte(odd), []byte(up))
			evs[i].subject = strings.ReplaceAll(evs[i].subject, odd, up)
		}
	}
	up := strings.ToUpper(odd)
	st := logWith(t, evs)
	idx := projections.NewIndex(cat)
	sp := status.New(status.Config{Catalog: cat, Clock: clock})
	if _, err := projections.Replay(ctx, st, idx, []projections.Projection{sp}, nil); err != nil {
		t.Fatal(err)
	}
	h, ok := idx.Get(up)
	if _, lower := idx.Get(odd); !ok || lower || h.ID != up || idx.Len() != 20 {
		t.Fatalf("odd id: found %v (lower %v), id %q, %d hazards", ok, lower, h.ID, idx.Len())
	}
	path := filepath.Join(t.TempDir(), "readmodel.snap")
	if _, err := (&projections.Snapshots{Path: path, Index: idx, Status: sp}).Save(); err != nil {
		t.Fatal(err)
	}
	idx2 := projections.NewIndex(cat)
	sp2 := status.New(status.Config{Catalog: cat, Clock: clock})
	if _, err := (&projections.Snapshots{Path: path, Index: idx2, Status: sp2}).Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	h2, ok := idx2.Get(up)
	if !ok || !sameHazard(&h, &h2) || idx2.Len() != 20 {
		t.Fatalf("after the snapshot: found %v, %d hazards\n%+v\n%+v", ok, idx2.Len(), h, h2)
	}
}
