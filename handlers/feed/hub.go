// Package feed serves the zero-out status to sector desks: GET /v1/status, GET
// /v1/status/daily, and GET /v1/feed, Server-Sent Events of every change of the hz_status KV
// bucket, fanned out from one watch per instance.
//
// Each feed event's id is the entry's KV revision. A client that reconnects with
// Last-Event-ID (to this instance or another: they share the bucket) gets every entry after
// that revision — from the hub's memory of recent entries, or from the bucket's history.
package feed

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"qingling/events"
	"qingling/projections/kvstatus"
)

// Entry is one KV entry of hz_status.
type Entry struct {
	Key     string
	Rev     uint64
	Value   []byte
	Time    time.Time
	Deleted bool
}

// Hub holds one watch on hz_status and fans its entries out to subscribers.
type Hub struct {
	KV  jetstream.KeyValue
	JS  jetstream.JetStream // reads the bucket's history for a resume older than Keep
	Log *slog.Logger
	// Keep is how many recent entries (at least; up to twice as many) are kept for resuming
	// without reading history (default 4096). Buffer is each subscriber's queue (default
	// 1024): a subscriber that falls that far behind is ended and resumes with Last-Event-ID.
	Keep, Buffer int

	mu     sync.Mutex
	latest map[string]Entry
	recent []Entry // every entry with Rev > floor, ascending
	floor  uint64
	last   uint64
	subs   map[*Sub]struct{}
	synced chan struct{}
	closed bool
	once   sync.Once
}

func (h *Hub) init() {
	h.once.Do(func() {
		h.latest, h.subs, h.synced = map[string]Entry{}, map[*Sub]struct{}{}, make(chan struct{})
		if h.Keep == 0 {
			h.Keep = 4096
		}
		if h.Buffer == 0 {
			h.Buffer = 1024
		}
		if h.Log == nil {
			h.Log = slog.Default()
		}
	})
}

// ErrClosed: the hub is shutting down.
var ErrClosed = errors.New("feed: shutting down")

// Run watches the bucket until ctx ends, re-watching from the last revision after a failure.
func (h *Hub) Run(ctx context.Context) error {
	h.init()
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := h.watch(ctx)
		if ctx.Err() != nil {
			break
		}
		h.Log.Warn("feed: watch of hz_status ended; watching again", "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return ctx.Err()
}

func (h *Hub) watch(ctx context.Context) error {
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	var opts []jetstream.WatchOpt
	if last > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(last+1), jetstream.UpdatesOnly())
	}
	kw, err := h.KV.WatchAll(ctx, opts...)
	if err != nil {
		return err
	}
	defer kw.Stop()
	if last > 0 {
		h.markSynced() // resuming: the initial values are in already
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				h.markSynced()
				continue
			}
			h.add(Entry{Key: e.Key(), Rev: e.Revision(), Value: e.Value(), Time: e.Created(), Deleted: e.Operation() != jetstream.KeyValuePut})
		}
	}
}

func (h *Hub) markSynced() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.synced:
	default:
		h.floor = h.last
		close(h.synced)
	}
}

func (h *Hub) add(e Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Rev <= h.last {
		return
	}
	h.last = e.Rev
	if strings.HasPrefix(e.Key, "_") {
		return // bookkeeping (the writer's lease), not a status row
	}
	h.latest[e.Key] = e
	select {
	case <-h.synced:
	default:
		return // initial values: in latest only
	}
	h.recent = append(h.recent, e)
	if len(h.recent) >= 2*h.Keep { // trim by halves: amortised O(1) per entry
		drop := len(h.recent) - h.Keep
		h.floor = h.recent[drop-1].Rev
		h.recent = append(h.recent[:0:0], h.recent[drop:]...)
	}
	for s := range h.subs {
		if !s.match(e.Key) {
			continue
		}
		select {
		case s.c <- e:
		default:
			h.end(s, "lagging")
		}
	}
}

// Last is the last revision the hub has seen.
func (h *Hub) Last() uint64 {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Sub is one subscriber: its backlog first, then live entries on C until Done.
type Sub struct {
	Backlog []Entry
	C       <-chan Entry
	c       chan Entry
	match   func(key string) bool
	done    chan struct{}
	reason  string
	hub     *Hub
}

// Done is closed when the hub ends the subscription (Reason says why).
func (s *Sub) Done() <-chan struct{} { return s.done }

// Reason the subscription ended: "shutdown" or "lagging".
func (s *Sub) Reason() string {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.reason
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.end(s, "closed")
}

func (h *Hub) end(s *Sub, reason string) {
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		s.reason = reason
		close(s.done)
	}
}

// Subscribe follows the keys match accepts. after = 0 starts with the current value of every
// such key (by revision); otherwise with every entry after that revision.
func (h *Hub) Subscribe(ctx context.Context, match func(key string) bool, after uint64) (*Sub, error) {
	h.init()
	select {
	case <-h.synced:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c := make(chan Entry, h.Buffer)
	s := &Sub{C: c, c: c, match: match, done: make(chan struct{}), hub: h}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	h.subs[s] = struct{}{}
	floor := h.floor
	if after == 0 {
		for _, e := range h.latest {
			if !e.Deleted && match(e.Key) {
				s.Backlog = append(s.Backlog, e)
			}
		}
		sort.Slice(s.Backlog, func(i, j int) bool { return s.Backlog[i].Rev < s.Backlog[j].Rev })
	} else {
		for _, e := range h.recent {
			if e.Rev > after && match(e.Key) {
				s.Backlog = append(s.Backlog, e)
			}
		}
	}
	h.mu.Unlock()
	if after > 0 && after < floor {
		old, err := h.history(ctx, after+1, floor, match)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Backlog = append(old, s.Backlog...)
	}
	return s, nil
}

// history reads the bucket's entries with revisions from..to (inclusive) without a consumer.
func (h *Hub) history(ctx context.Context, from, to uint64, match func(string) bool) ([]Entry, error) {
	prefix := "$KV." + kvstatus.Bucket + "."
	var out []Entry
	for from <= to {
		it, err := jetstreamext.GetBatch(ctx, h.JS, "KV_"+kvstatus.Bucket, 1024, jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(prefix+">"))
		if err != nil {
			return nil, events.Errorf(events.KindUnavailable, "feed_history", "Last-Event-ID", "cannot read hz_status history: %v", err)
		}
		n := 0
		for m, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				return out, nil
			}
			if err != nil {
				return nil, events.Errorf(events.KindUnavailable, "feed_history", "Last-Event-ID", "cannot read hz_status history: %v", err)
			}
			n++
			from = m.Sequence + 1
			if m.Sequence > to {
				return out, nil
			}
			key := strings.TrimPrefix(m.Subject, prefix)
			if !match(key) {
				continue
			}
			op := m.Header.Get("KV-Operation")
			out = append(out, Entry{Key: key, Rev: m.Sequence, Value: m.Data, Time: m.Time, Deleted: op == "DEL" || op == "PURGE"})
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// Close ends every subscription (a clean end for the feeds) and refuses new ones.
func (h *Hub) Close() {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.end(s, "shutdown")
	}
}
