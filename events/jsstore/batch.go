package jsstore

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"qingling/events"
)

// Group commit (/work/shared/jetstream.md, "Durable appends need group commit").
//
// A file stream that fsyncs before it acknowledges (SyncAlways) fsyncs every message on its
// own, so appends barely get faster with more clients. The one way JetStream gathers writes
// under one fsync is the atomic batch (AllowAtomicPublish): on R1 it costs a fixed ~2 ms (the
// server stages the batch in a temporary file store) plus ~16 µs a message, so it pays from
// about 16 messages on, and the more the better.
//
// At 16 in flight it is a tie, and plain publishes are kept (BenchmarkDurableModes): the
// server handles a stream's messages one at a time and fsyncs each plain publish on its own
// (filestore.go: writeMsgRecord → flushPendingMsgsLocked → mfd.Sync), so pipelining plain
// publishes saves no fsync; a batch is written under one fsync, but the temporary store costs
// about seven syncs and ~25 metadata operations (newBatchStore: three mkdirs, two O_SYNC
// metadata files, two directory fsyncs, a probe file, the staging fsync; then an inline
// delete). A batch of 16 took ~2.5 ms on a quiet disk against 16 fsyncs of 150–190 µs, and
// 4–10 ms when the shared disk was busy (its metadata operations slow down more than fsyncs),
// where batches of 16 ran at 0.5–0.86× raw. At 24 batches measured 1.09–1.49× (once
// 0.84× on a very busy disk); at 64 and 128, 1.7–5×.
//
// So each Store has one committer for its stream. While few appends are in flight, each goes
// out as a plain publish from its caller's goroutine, exactly as without group commit. From
// MinInFlight appends in flight on, appends queue at the committer, which sends them as one
// atomic batch as soon as every append in flight has queued (or Linger has passed since the
// first did), one batch at a time. A batch holds at most one event per hazard, each with its
// own expected-sequence check: the per-subject check, or for a new hazard the check on every
// subject of its id (Nats-Expected-Last-Subject-Sequence-Subject, which the server accepts in
// batches: jetstream_batching.go, checkMsgHeadersPreClusteredProposal). A batch is stored
// contiguously, so member i of a batch acked at last sequence L with n members is at
// L-n+1+i.
//
// One stale check or one Msg-Id already stored (10201) rejects a batch as a whole without
// naming the member; so does anything else that goes wrong. Then every member is sent again on
// its own, through the plain path with its conflict and duplicate resolution, so that each gets
// its own precise answer. Gatherings smaller than MinBatch go out as plain publishes too.

// GroupMode turns group commit on or off.
type GroupMode int

// Group commit modes.
const (
	// GroupAuto is on, unless Config.NoSync says the server does not fsync before acking
	// (then every append is cheap on its own, and a batch's fixed cost is a loss).
	GroupAuto GroupMode = iota
	GroupOn
	GroupOff
)

// GroupCommit configures the committer.
type GroupCommit struct {
	Mode GroupMode
	// MinInFlight is the number of appends in flight (in this Store) from which they are
	// gathered into batches; below it each is a plain publish. Default 24.
	MinInFlight int
	// MinBatch is the smallest batch worth sending; smaller gatherings go out as plain
	// publishes. Default 12.
	MinBatch int
	// MaxBatch bounds a batch (the server allows 1,000). Default 256.
	MaxBatch int
	// Linger is how long the committer waits, from the first queued append, for the others in
	// flight to queue. Default 1 ms.
	Linger time.Duration
}

func (g *GroupCommit) setDefaults(noSync bool) {
	if g.Mode == GroupAuto {
		g.Mode = GroupOn
		if noSync {
			g.Mode = GroupOff
		}
	}
	if g.MinInFlight <= 0 {
		g.MinInFlight = 24
	}
	if g.MinBatch <= 0 {
		g.MinBatch = 12
	}
	if g.MaxBatch <= 0 {
		g.MaxBatch = 256
	}
	g.MaxBatch = min(g.MaxBatch, 1000)
	if g.Linger <= 0 {
		g.Linger = time.Millisecond
	}
}

// AppendStats counts how appends went out.
type AppendStats struct {
	Single   uint64 // plain publishes (including members of rejected batches sent again)
	Batches  uint64 // atomic batches committed
	Batched  uint64 // appends committed in them
	Rejected uint64 // batches rejected as a whole, whose members were sent again on their own
	// Gathering is the committer's time from the first queued append to a batch's send;
	// Committing, from its send to its answer.
	Gathering, Committing time.Duration
	Lingered              uint64 // batches sent because Linger passed, not all in flight queued
	Small                 uint64 // gatherings under MinBatch, sent as plain publishes
}

// Stats counts the appends since Open.
func (s *Store) Stats() AppendStats {
	st := AppendStats{Single: s.singles.Load()}
	if c := s.gc; c != nil {
		st.Batches, st.Batched, st.Rejected = c.batches.Load(), c.batched.Load(), c.rejected.Load()
		st.Gathering, st.Committing, st.Lingered, st.Small = time.Duration(c.gathering.Load()), time.Duration(c.committing.Load()), c.lingered.Load(), c.small.Load()
	}
	return st
}

// committer gathers appends into atomic batches, one batch at a time.
type committer struct {
	s   *Store
	cfg GroupCommit

	inflight atomic.Int64 // appends in Store.Append
	direct   atomic.Int64 // of which sent on their own (and not going to queue)
	queued   atomic.Int64 // appends waiting at the committer or in its batch

	mu      sync.Mutex
	queue   []*pending
	running bool          // a run goroutine exists
	kick    chan struct{} // a new append queued

	// publish sends one atomic batch (jetstreamext.PublishMsgBatch; the first message without
	// a flow-control round trip).
	publish func(ctx context.Context, msgs []*nats.Msg) (*jetstreamext.BatchAck, error)

	batches, batched, rejected, lingered, small atomic.Uint64
	gathering, committing                       atomic.Int64
}

// pending is one queued append and where its answer goes.
type pending struct {
	ctx  context.Context
	a    Append // Subject already prefixed
	key  string // the hazard
	done chan outcome
}

// outcome of a queued append: an ack, or "send it on your own" (resend). A member of a batch
// whose answer was lost is resent too: if the batch landed, its Msg-Id makes it a duplicate
// ack of what an earlier attempt (the batch) stored.
type outcome struct {
	ack    Ack
	resend bool
}

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan outcome, 1)} }} // recycled queue entries; holds no state between uses

func newCommitter(s *Store, cfg GroupCommit) *committer {
	c := &committer{s: s, cfg: cfg, kick: make(chan struct{}, 1)}
	c.publish = func(ctx context.Context, msgs []*nats.Msg) (*jetstreamext.BatchAck, error) {
		return jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: 2 * time.Second})
	}
	return c
}

// hazardKey is what a batch may hold once: the hazard id (the subject's last token).
func hazardKey(a *Append) string {
	if a.HazardID != "" {
		return a.HazardID
	}
	return a.Subject[strings.LastIndexByte(a.Subject, '.')+1:]
}

// append runs a through the committer. ok false: send it on its own.
func (c *committer) append(ctx context.Context, a Append) (ack Ack, ok bool, err error) {
	p := pendingPool.Get().(*pending)
	p.ctx, p.a, p.key = ctx, a, hazardKey(&a)
	c.queued.Add(1)
	c.mu.Lock()
	c.queue = append(c.queue, p)
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.run()
	} else {
		c.poke()
	}
	select {
	case o := <-p.done:
		c.queued.Add(-1)
		*p = pending{done: p.done}
		pendingPool.Put(p)
		if o.resend {
			return Ack{}, false, nil
		}
		return o.ack, true, nil
	case <-ctx.Done():
		// p stays with the committer (which may still answer into p.done); it is not recycled.
		c.queued.Add(-1)
		return Ack{}, true, Unavailable(ctx.Err())
	}
}

// enter counts an append in flight and tells whether it goes to the committer.
func (c *committer) enter() bool {
	n := c.inflight.Add(1)
	return n >= int64(c.cfg.MinInFlight) || c.queued.Load() > 0
}

// leave uncounts an append (and wakes a committer waiting for it to queue).
func (c *committer) leave() {
	c.inflight.Add(-1)
	c.poke()
}

// plain counts an append sent on its own until done is called.
func (c *committer) plain() (done func()) {
	c.direct.Add(1)
	c.poke()
	return c.unplain
}

func (c *committer) unplain() { c.direct.Add(-1) }

// poke wakes a gathering committer to look again.
func (c *committer) poke() {
	if c.queued.Load() > 0 {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// run commits batches until the queue is empty.
func (c *committer) run() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	seen := map[string]struct{}{}
	var batch []*pending
	for {
		batch = c.gather(timer, seen, batch[:0])
		if len(batch) == 0 {
			return
		}
		c.commit(batch)
		clear(batch)
	}
}

// gather waits until every append in flight has queued, MaxBatch have, or Linger has passed,
// then takes the batch: the queued appends in order, at most one per hazard (later ones of a
// hazard wait for the next batch). It returns nothing, and ends the run, when the queue is empty.
func (c *committer) gather(timer *time.Timer, seen map[string]struct{}, batch []*pending) []*pending {
	var deadline time.Time
	start := time.Now()
	for {
		c.mu.Lock()
		q := len(c.queue)
		if q == 0 {
			c.running = false
			c.mu.Unlock()
			return batch
		}
		// The appends in flight that are not plain publishes have queued or will: the
		// callers of the last batch count until they have left Append, as they are the ones
		// most likely to queue next.
		// (A gathering too small to send as a batch waits out the linger all the same: the
		// plain publishes it would turn into take longer than that.)
		all := (q >= int(c.inflight.Load()-c.direct.Load()) && q >= c.cfg.MinBatch) || q >= c.cfg.MaxBatch
		if all || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			if !all {
				c.lingered.Add(1)
			}
			c.gathering.Add(int64(time.Since(start)))
			clear(seen)
			rest := c.queue[:0]
			for _, p := range c.queue {
				if _, dup := seen[p.key]; dup || len(batch) == c.cfg.MaxBatch {
					rest = append(rest, p)
					continue
				}
				seen[p.key] = struct{}{}
				batch = append(batch, p)
			}
			clear(c.queue[len(rest):])
			c.queue = rest
			c.mu.Unlock()
			timer.Stop()
			return batch
		}
		c.mu.Unlock()
		if deadline.IsZero() {
			deadline = time.Now().Add(c.cfg.Linger)
			timer.Reset(c.cfg.Linger)
		}
		select {
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// commit sends one batch and answers its members.
func (c *committer) commit(batch []*pending) {
	live := batch[:0]
	for _, p := range batch {
		if p.ctx.Err() == nil { // its caller has given up
			live = append(live, p)
		}
	}
	batch = live
	if len(batch) < c.cfg.MinBatch {
		c.small.Add(1)
		for _, p := range batch {
			p.done <- outcome{resend: true}
		}
		return
	}
	msgs := make([]*nats.Msg, len(batch))
	for i, p := range batch {
		msgs[i] = c.s.appendMsg(&p.a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	ack, err := c.publish(ctx, msgs)
	c.committing.Add(int64(time.Since(start)))
	cancel()
	if err != nil || ack == nil || ack.BatchSize != uint64(len(batch)) || ack.Sequence < ack.BatchSize {
		// Rejected as a whole (a stale check, a stored Msg-Id, limits), or no answer: every member
		// on its own. Without an answer the batch may have landed, which their Msg-Ids reveal.
		c.rejected.Add(1)
		for _, p := range batch {
			p.done <- outcome{resend: true}
		}
		return
	}
	c.batches.Add(1)
	c.batched.Add(uint64(len(batch)))
	first := ack.Sequence - ack.BatchSize + 1
	for i, p := range batch {
		p.done <- outcome{ack: Ack{Seq: first + uint64(i), Data: p.a.Data}}
	}
}

// appendMsg is a's message with its Msg-Id and expectation headers, for a plain publish or a
// batch: what jetstream.WithMsgID, WithExpectStream and WithExpectLastSequencePerSubject (or
// ForSubject, for a new hazard) set.
func (s *Store) appendMsg(a *Append) *nats.Msg {
	h := make(nats.Header, 7)
	h[jetstream.MsgIDHeader] = []string{a.MsgID}
	h[jetstream.ExpectedStreamHeader] = []string{s.cfg.Stream}
	if a.New {
		h[jetstream.ExpectedLastSubjSeqHeader] = []string{"0"}
		h[jetstream.ExpectedLastSubjSeqSubjHeader] = []string{s.cfg.Prefix + events.AnySubject(a.HazardID)}
	} else {
		h[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(a.Expect, 10)}
	}
	return &nats.Msg{Subject: a.Subject, Data: a.Data, Header: h}
}
