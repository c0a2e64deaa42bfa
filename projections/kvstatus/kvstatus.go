// Package kvstatus writes the zero-out status into the KV bucket hz_status (design.md,
// "JetStream"): one key per row, <sector>.<province>[.<prefecture>[.<county>]], written only
// when the row changed, so that `nats kv watch hz_status 'chem.>'` shows live changes.
//
// Several instances may write the same bucket: every put is a compare-and-set on the key's
// revision, a row equal to what the bucket holds is not written again, and a row is never
// written over one computed later (a higher sequence, or the same sequence at a later
// instant), so instances that lag behind do not make the bucket flicker.
package kvstatus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/projections/status"
)

// Bucket is the status bucket's name.
const Bucket = "hz_status"

// Open creates or updates the bucket.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas == 0 {
		replicas = 1
	}
	return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, Description: "Qingling zero-out status per sector × region (read model)",
		History: 16, Storage: jetstream.FileStorage, Replicas: replicas})
}

// Value is what a key holds: the row, the stream sequence and the instant it is as of.
type Value struct {
	status.Row
	Seq    uint64 `json:"seq"`
	AsOf   string `json:"as_of"`
	Writer string `json:"writer,omitempty"` // the lease holder that wrote it
}

type known struct {
	rev    uint64
	exists bool // a value (not a delete marker) is stored
	counts status.Counts
	seq    uint64
	asOf   time.Time
}

// Writer publishes the projection's changed rows.
type Writer struct {
	JS     jetstream.JetStream
	KV     jetstream.KeyValue
	Status *status.Projection
	// Ready tells when the projection has caught up; nothing is written before (catch-up
	// is coalesced: one write per changed row once it is done).
	Ready func() bool
	Log   *slog.Logger
	// Lease, when set, makes this writer write only while it holds the lease, every put
	// fenced by the lease's revision instead of the key's own compare-and-set.
	Lease *Lease

	resync atomic.Bool // the lease was (re)acquired: reload the bucket and reconcile

	kick   chan struct{}
	once   sync.Once
	recon  chan struct{} // closed after the first reconciliation
	cache  map[string]*known
	puts   atomic.Int64
	fenced atomic.Int64
}

// Fenced counts puts refused because the lease had moved on.
func (w *Writer) Fenced() int64 { return w.fenced.Load() }

func (w *Writer) writerName() string {
	if w.Lease != nil {
		return w.Lease.Holder
	}
	return ""
}

// Kick wakes the writer (the runner calls it when it reaches the end of the log).
func (w *Writer) Kick() {
	select {
	case w.kickCh() <- struct{}{}:
	default:
	}
}

func (w *Writer) kickCh() chan struct{} {
	w.init()
	return w.kick
}

func (w *Writer) init() {
	w.once.Do(func() { w.kick, w.recon = make(chan struct{}, 1), make(chan struct{}) })
}

// Reconciled is closed once Run has reconciled the bucket with the caught-up projection.
func (w *Writer) Reconciled() <-chan struct{} {
	w.init()
	return w.recon
}

// Acquired is the lease's OnAcquire hook: the new holder reloads the bucket and writes
// every row that differs.
func (w *Writer) Acquired() {
	w.resync.Store(true)
	w.Kick()
}

// Puts is the number of values written.
func (w *Writer) Puts() int64 { return w.puts.Load() }

// Run writes until ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	if w.Log == nil {
		w.Log = slog.Default()
	}
	kick := w.kickCh()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for w.cache == nil {
		if err := w.load(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.Log.Warn("hz_status: cannot read the bucket; retrying", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	for w.Ready != nil && !w.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
		case <-tick.C:
		}
	}
	w.reconcile(ctx)
	close(w.recon)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.Status.Changed():
		case <-kick:
		}
		if w.resync.Swap(false) {
			if err := w.load(ctx); err != nil {
				w.resync.Store(true)
				continue
			}
			w.reconcile(ctx)
			continue
		}
		rows, seq, asOf := w.Status.TakeDirty()
		w.write(ctx, rows, seq, asOf)
	}
}

// Sync writes every row that differs from the bucket once (after a rebuild).
func (w *Writer) Sync(ctx context.Context) error {
	if w.Log == nil {
		w.Log = slog.Default()
	}
	if err := w.load(ctx); err != nil {
		return err
	}
	w.reconcile(ctx)
	return nil
}

// reconcile writes every row against what the bucket holds.
func (w *Writer) reconcile(ctx context.Context) {
	w.Status.TakeDirty()
	rows, seq, asOf := w.Status.All()
	w.write(ctx, rows, seq, asOf)
}

// load reads the bucket's current values into the cache.
func (w *Writer) load(ctx context.Context) error {
	kw, err := w.KV.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer kw.Stop()
	cache := map[string]*known{}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e := <-kw.Updates():
			if e == nil {
				w.cache = cache
				return nil
			}
			cache[e.Key()] = entryKnown(e.Revision(), e.Operation(), e.Value())
		case <-timeout:
			return errors.New("hz_status: initial values did not arrive")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func entryKnown(rev uint64, op jetstream.KeyValueOp, b []byte) *known {
	k := &known{rev: rev}
	var v Value
	if op == jetstream.KeyValuePut && json.Unmarshal(b, &v) == nil {
		k.exists, k.counts, k.seq = true, v.Counts, v.Seq
		k.asOf, _ = time.Parse(time.RFC3339Nano, v.AsOf)
	}
	return k
}

// last reads a key's last entry, delete markers included (KV.Get hides those).
func (w *Writer) last(ctx context.Context, key string) (*known, error) {
	str, err := w.JS.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		return nil, err
	}
	m, err := str.GetLastMsgForSubject(ctx, "$KV."+Bucket+"."+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	op := jetstream.KeyValuePut
	if o := m.Header.Get("KV-Operation"); o == "DEL" || o == "PURGE" {
		op = jetstream.KeyValueDelete
	}
	return entryKnown(m.Sequence, op, m.Data), nil
}

// write puts every row that differs from the bucket, with compare-and-set, all at once
// (asynchronous publishes), and retries those another writer got to first.
func (w *Writer) write(ctx context.Context, rows []status.Row, seq uint64, asOf time.Time) {
	lrev := uint64(0)
	if w.Lease != nil {
		var release func()
		lrev, release = w.Lease.Use()
		defer release()
		if lrev == 0 {
			return // not the holder: the holder writes
		}
	}
	for round := 0; round < 4 && len(rows) > 0; round++ {
		type pending struct {
			row status.Row
			f   jetstream.PubAckFuture
		}
		var ps []pending
		for _, r := range rows {
			k := w.cache[r.Key]
			switch {
			case k == nil && r.Counts == (status.Counts{}):
				continue // never written, nothing to say
			case k != nil && k.exists && k.counts == r.Counts:
				continue // unchanged
			case k != nil && k.exists && (k.seq > seq || (k.seq == seq && k.asOf.After(asOf))):
				continue // written from a later state by another instance
			}
			rev := uint64(0)
			if k != nil {
				rev = k.rev
			}
			fence := jetstream.WithExpectLastSequencePerSubject(rev)
			if w.Lease != nil {
				fence = jetstream.WithExpectLastSequenceForSubject(lrev, LeaseSubject)
			}
			b, _ := json.Marshal(Value{Row: r, Seq: seq, AsOf: events.FormatInstant(asOf), Writer: w.writerName()})
			f, err := w.JS.PublishMsgAsync(&nats.Msg{Subject: "$KV." + Bucket + "." + r.Key, Data: b}, fence)
			if err != nil {
				w.Log.Warn("hz_status: put", "key", r.Key, "err", err)
				continue
			}
			ps = append(ps, pending{row: r, f: f})
		}
		var retry []status.Row
		for _, p := range ps {
			select {
			case ack := <-p.f.Ok():
				w.cache[p.row.Key] = &known{rev: ack.Sequence, exists: true, counts: p.row.Counts, seq: seq, asOf: asOf}
				w.puts.Add(1)
			case err := <-p.f.Err():
				var apiErr *jetstream.APIError
				if w.Lease != nil && isWrongSeq(err) {
					w.Lease.Lost(lrev) // fenced out: another instance holds the lease
					w.fenced.Add(1)
					w.Log.Warn("hz_status: put fenced off; the lease moved to another instance", "key", p.row.Key)
					continue
				}
				if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
					if k, gerr := w.last(ctx, p.row.Key); gerr == nil {
						w.cache[p.row.Key] = k
					}
					retry = append(retry, p.row)
					continue
				}
				w.Log.Warn("hz_status: put", "key", p.row.Key, "err", err)
			case <-ctx.Done():
				return
			}
		}
		rows = retry
	}
}
