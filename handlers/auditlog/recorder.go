package auditlog

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/projections/audit"
)

// Log is the event log the recorder wraps: the command path's log plus its last sequence.
type Log interface {
	app.Log
	LastSeq(ctx context.Context) (uint64, error)
}

// Recorder is the command service's log (app.Service.Log) that remembers every event this
// server appended and saw acknowledged, in ack order — from its own acks, never by reading
// the stream back, so that an event someone else slipped into the stream is in no checkpoint.
// A duplicate ack (an earlier attempt of the same event landed, its ack lost) is recorded
// too: the event is this service's.
type Recorder struct {
	Log Log

	// inflight is held shared by every append while it runs; a checkpoint takes it
	// exclusively for a moment, so that no append that started before it is still running.
	inflight sync.RWMutex
	mu       sync.Mutex
	pending  []audit.Acked
	full     chan struct{} // signalled when pending reaches Every
	every    int
}

var _ app.Log = (*Recorder)(nil)

// NewRecorder wraps log; every is the number of events that triggers a checkpoint.
func NewRecorder(log Log, every int) *Recorder {
	return &Recorder{Log: log, every: every, full: make(chan struct{}, 1)}
}

// Append implements app.Log.
func (r *Recorder) Append(ctx context.Context, a jsstore.Append) (jsstore.Ack, error) {
	r.inflight.RLock()
	defer r.inflight.RUnlock()
	ack, err := r.Log.Append(ctx, a)
	if err == nil {
		r.mu.Lock()
		r.pending = append(r.pending, audit.Acked{Seq: ack.Seq, Hazard: a.HazardID, Hash: sha256.Sum256(ack.Data)})
		n := len(r.pending)
		r.mu.Unlock()
		if r.every > 0 && n >= r.every {
			select {
			case r.full <- struct{}{}:
			default:
			}
		}
	}
	return ack, err
}

// Get implements app.Log.
func (r *Recorder) Get(ctx context.Context, seq uint64) (jsstore.Msg, error) {
	return r.Log.Get(ctx, seq)
}

// History implements app.Log.
func (r *Recorder) History(ctx context.Context, subject string, from uint64) ([]jsstore.Msg, error) {
	return r.Log.History(ctx, subject, from)
}

// LastSeq is the log's last sequence.
func (r *Recorder) LastSeq(ctx context.Context) (uint64, error) { return r.Log.LastSeq(ctx) }

// settle returns the acks so far once every append in flight has finished.
func (r *Recorder) settle() []audit.Acked {
	r.inflight.Lock()
	r.mu.Lock()
	out := r.pending
	r.pending = nil
	r.mu.Unlock()
	r.inflight.Unlock()
	return out
}

// putBack returns acks that did not make it into a stored checkpoint.
func (r *Recorder) putBack(acks []audit.Acked) {
	r.mu.Lock()
	r.pending = append(acks, r.pending...)
	r.mu.Unlock()
}

// Checkpointer signs this server's checkpoints every Every events or Interval.
type Checkpointer struct {
	JS       jetstream.JetStream
	Recorder *Recorder
	Instance string                       // the server key's public key
	Sign     func([]byte) ([]byte, error) // the server key's Sign
	Stream   string                       // the log stream (HAZARDS)
	Every    int                          // events per checkpoint (the Recorder's trigger)
	Interval time.Duration                // at most this long between checkpoints while the log moves
	Replicas int
	Clock    func() time.Time
	Log      *slog.Logger

	mu      sync.Mutex
	w       audit.Writer
	through uint64
	subjSeq uint64 // last sequence of the instance's subject in HZ_CHECKPOINTS
	started bool
}

// Start creates the checkpoint stream if needed and resumes the instance's chain from its
// last stored checkpoint.
func (c *Checkpointer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.JS.CreateOrUpdateStream(ctx, CheckpointStreamConfig(c.Replicas)); err != nil {
		return fmt.Errorf("stream %s: %w", CheckpointStream, err)
	}
	c.w = audit.Writer{Instance: c.Instance, Stream: c.Stream, Sign: c.Sign}
	str, err := c.JS.Stream(ctx, CheckpointStream)
	if err != nil {
		return err
	}
	var last *audit.Checkpoint
	m, err := str.GetLastMsgForSubject(ctx, CheckpointSubject(c.Instance))
	// A stream just created on a cluster has no leader for a moment: retry a bounded time.
	for deadline := time.Now().Add(30 * time.Second); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && time.Now().Before(deadline) &&
		(errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		m, err = str.GetLastMsgForSubject(ctx, CheckpointSubject(c.Instance))
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("last checkpoint: %w", err)
	default:
		if last, err = audit.ParseCheckpoint(m.Data); err != nil {
			return fmt.Errorf("last checkpoint (seq %d): %w", m.Sequence, err)
		}
		c.subjSeq, c.through = m.Sequence, last.Through
	}
	if err := c.w.Resume(last); err != nil {
		return err
	}
	c.started = true
	if last != nil && !last.Final {
		// The previous run of this instance did not stop cleanly: say so at once, so that
		// verify knows its last, uncheckpointed acks were lost with it.
		c.w.Restarting = true
		if err := c.firstCheckpoint(ctx); err != nil {
			return err
		}
	}
	if last == nil {
		// A new instance announces itself before it appends anything, so that verify does
		// not take its first events for someone else's while it has no checkpoint yet.
		if err := c.firstCheckpoint(ctx); err != nil {
			return err
		}
	}
	return nil
}

// firstCheckpoint writes the announcing checkpoint, retrying a bounded time while a new
// cluster stream elects its leader.
func (c *Checkpointer) firstCheckpoint(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.checkpoint(ctx, false, true)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Run checkpoints until ctx ends; then it writes a final checkpoint (within 5 s).
func (c *Checkpointer) Run(ctx context.Context) {
	interval := c.Interval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := c.Checkpoint(fctx, true); err != nil && c.Log != nil {
				c.Log.Error("final checkpoint", "err", err)
			}
			cancel()
			return
		case <-tick.C:
		case <-c.Recorder.full:
		}
		if _, err := c.Checkpoint(ctx, false); err != nil && c.Log != nil && ctx.Err() == nil {
			c.Log.Error("checkpoint", "err", err)
		}
	}
}

// Checkpoint signs and stores a checkpoint of the events acknowledged since the last one. It
// stores nothing when nothing happened (neither this server's events nor the log's end moved),
// unless final. It returns the checkpoint stored, or nil.
func (c *Checkpointer) Checkpoint(ctx context.Context, final bool) (*audit.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkpoint(ctx, final, false)
}

func (c *Checkpointer) checkpoint(ctx context.Context, final, force bool) (*audit.Checkpoint, error) {
	if !c.started {
		return nil, errors.New("checkpointer not started")
	}
	// Every event of this server with a seq up to the log's end now was appended by an
	// append already running: once those settle, all of them are among the acks.
	through, err := c.Recorder.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	acks := c.Recorder.settle()
	if len(acks) == 0 && through == c.through && !final && !force {
		return nil, nil
	}
	now := time.Now()
	if c.Clock != nil {
		now = c.Clock()
	}
	cp, err := c.w.Next(acks, through, now, final)
	if err != nil {
		c.Recorder.putBack(acks)
		return nil, err
	}
	data, err := cp.Marshal()
	if err != nil {
		c.Recorder.putBack(acks)
		return nil, err
	}
	msg := &nats.Msg{Subject: CheckpointSubject(c.Instance), Data: data, Header: nats.Header{}}
	ack, err := c.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(c.Instance+"."+strconv.FormatUint(cp.N, 10)),
		jetstream.WithExpectStream(CheckpointStream), jetstream.WithExpectLastSequencePerSubject(c.subjSeq))
	if err == nil && !ack.Duplicate {
		c.w.Advance(cp)
		c.subjSeq, c.through = ack.Sequence, cp.Through
		return cp, nil
	}
	// Either it failed, or an earlier attempt whose ack was lost stored checkpoint N (a retry
	// then gets a wrong-last-sequence refusal or a duplicate ack): continue from what is stored.
	if rerr := c.resync(ctx, acks); rerr != nil {
		c.Recorder.putBack(acks)
		return nil, fmt.Errorf("publish checkpoint %d: %w (resync: %v)", cp.N, err, rerr)
	}
	if err == nil {
		err = errors.New("an earlier attempt was stored")
	}
	return nil, fmt.Errorf("publish checkpoint %d: %w; resynchronised, the next checkpoint retries", cp.N, err)
}

// resync re-reads the instance's last stored checkpoint. If it is newer than the chain here
// (an attempt whose ack was lost), the chain moves on to it and the acks it holds (a prefix
// of acks: failed batches are put back in front) are dropped; the rest are put back.
func (c *Checkpointer) resync(ctx context.Context, acks []audit.Acked) error {
	str, err := c.JS.Stream(ctx, CheckpointStream)
	if err != nil {
		return err
	}
	m, err := str.GetLastMsgForSubject(ctx, CheckpointSubject(c.Instance))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		c.Recorder.putBack(acks)
		return nil
	}
	if err != nil {
		return err
	}
	last, err := audit.ParseCheckpoint(m.Data)
	if err != nil {
		return err
	}
	if last.N <= c.w.N() {
		c.Recorder.putBack(acks)
		return nil
	}
	if last.N != c.w.N()+1 || last.Count > len(acks) {
		return fmt.Errorf("stored checkpoint %d does not follow checkpoint %d of this server", last.N, c.w.N())
	}
	c.w.Advance(last)
	c.subjSeq, c.through = m.Sequence, last.Through
	c.Recorder.putBack(acks[last.Count:])
	return nil
}
