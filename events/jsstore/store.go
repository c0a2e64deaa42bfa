// Package jsstore is the hazard event log on NATS JetStream.
package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"qingling/events"
)

// Config of the log stream.
type Config struct {
	Stream     string        // default HAZARDS
	Replicas   int           // default 1
	Duplicates time.Duration // dedup window, default 2 minutes
	RetryFor   time.Duration // how long to retry an append on timeouts and no responders, default 5s
	// Prefix is put before every hazard subject: a county leaf office writes to its own
	// subjects ("leaf.<county>.") which the hub sources into its HAZARDS.
	Prefix string
	// Leaves are the county offices whose logs this (hub) stream sources, with a subject
	// transform leaf.<county>.hz.> → hz.>.
	Leaves []Leaf
	// NoSync says the server does not fsync before it acknowledges (ServerConfig.NoSync):
	// group commit is then off unless asked for.
	NoSync bool
	// GroupCommit gathers concurrent appends into atomic batches (batch.go); on by default
	// (GroupAuto) for a durable stream, off with GroupCommit.Mode = GroupOff.
	GroupCommit GroupCommit
}

// Leaf is a county office's JetStream domain and county code.
type Leaf struct {
	Domain string
	County string
}

// LeafPrefix is the subject prefix a county office writes under.
func LeafPrefix(county string) string { return "leaf." + county + "." }

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "HAZARDS"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.RetryFor == 0 {
		c.RetryFor = 5 * time.Second
	}
	c.GroupCommit.setDefaults(c.NoSync)
}

// Store appends and reads hazard events.
type Store struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	str jetstream.Stream
	cfg Config

	gc      *committer // nil without group commit
	singles atomic.Uint64
	noRetry jetstream.PublishOpt // Append retries by itself
}

// Msg is one stored event.
type Msg struct {
	Seq     uint64
	Subject string
	Data    []byte
	Time    time.Time // the stream's timestamp
	MsgID   string
}

// StreamConfig is the log stream's configuration: file storage, every hazard subject,
// no deletes, purges, rollups, TTLs or schedules; direct gets and atomic batches allowed.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	cfg.setDefaults()
	return jetstream.StreamConfig{
		Name:               cfg.Stream,
		Description:        "Qingling hazard events (append-only)",
		Subjects:           []string{cfg.Prefix + "hz.*.*.*.*.*"},
		Sources:            leafSources(cfg),
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.Duplicates,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowRollup:        false,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		AllowMsgTTL:        false,
		AllowMsgSchedules:  false,
	}
}

func leafSources(cfg Config) []*jetstream.StreamSource {
	var out []*jetstream.StreamSource
	for _, l := range cfg.Leaves {
		out = append(out, &jetstream.StreamSource{Name: cfg.Stream, External: &jetstream.ExternalStream{APIPrefix: "$JS." + l.Domain + ".API"},
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: LeafPrefix(l.County) + "hz.>", Destination: "hz.>"}}})
	}
	return out
}

// Open creates or updates the stream and returns a store on it.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var str jetstream.Stream
	deadline := time.Now().Add(30 * time.Second)
	for {
		str, err = js.CreateOrUpdateStream(ctx, StreamConfig(cfg))
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		var apiErr *jetstream.APIError
		// 10005 "no suitable peers for placement" is also what a cluster still meeting its peers
		// says: give it a few seconds before taking it as too few servers for the replicas.
		forming := errors.As(err, &apiErr) && apiErr.ErrorCode == 10005 && time.Now().Before(deadline.Add(-20*time.Second))
		if errors.As(err, &apiErr) && apiErr.Code != 503 && !forming {
			break // a real refusal (e.g. too few servers for the replicas asked), not a cluster still forming
		}
		// a cluster without a meta leader yet answers with timeouts or 503s for a few seconds
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s (replicas %d): %w", cfg.Stream, cfg.Replicas, err)
	}
	st := &Store{nc: nc, js: js, str: str, cfg: cfg, noRetry: jetstream.WithRetryAttempts(0)}
	if cfg.GroupCommit.Mode == GroupOn {
		st.gc = newCommitter(st, cfg.GroupCommit)
	}
	return st, nil
}

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// StreamName is the log stream's name.
func (s *Store) StreamName() string { return s.cfg.Stream }

// Append is one event to append.
type Append struct {
	Subject  string
	Data     []byte
	MsgID    string // the event id
	New      bool   // first event of a hazard: no event may exist for HazardID under any subject
	HazardID string
	Expect   uint64 // otherwise: the hazard subject's last sequence
}

// Ack of an append.
type Ack struct {
	Seq       uint64
	Duplicate bool   // the event was already stored (an earlier attempt landed)
	Data      []byte // the stored bytes (the earlier attempt's, for a duplicate)
}

// Append stores one event with its optimistic-concurrency check. A stale check comes back as
// an *events.Error of kind conflict and code "stale_state"; an earlier attempt of the same
// event is reported as a duplicate ack. Timeouts and missing responders are retried with the
// same Msg-Id for up to Config.RetryFor, then answered as unavailable. With many appends in
// flight, they are committed in atomic batches (batch.go), with the same answers.
func (s *Store) Append(ctx context.Context, a Append) (Ack, error) {
	a.Subject = s.cfg.Prefix + a.Subject
	if c := s.gc; c != nil {
		grouped := c.enter()
		defer c.leave()
		if grouped {
			if ack, ok, err := c.append(ctx, a); ok {
				return ack, err
			}
		}
		defer c.plain()()
	}
	return s.appendOne(ctx, a)
}

// appendOne is Append as a plain publish; a.Subject is prefixed.
func (s *Store) appendOne(ctx context.Context, a Append) (Ack, error) {
	s.singles.Add(1)
	msg := s.appendMsg(&a) // Msg-Id, expected stream and expected sequence headers
	deadline := time.Now().Add(s.cfg.RetryFor)
	wait := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := s.js.PublishMsg(pctx, msg, s.noRetry)
		cancel()
		if err == nil {
			if ack.Duplicate {
				return s.duplicate(ctx, a, ack.Sequence)
			}
			return Ack{Seq: ack.Sequence, Data: a.Data}, nil
		}
		if IsConflict(err) {
			return s.resolveConflict(ctx, a, err)
		}
		if !transient(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return Ack{}, Unavailable(err)
		}
		select {
		case <-ctx.Done():
			return Ack{}, Unavailable(ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// resolveConflict tells an earlier attempt of this very event that landed from a real conflict.
func (s *Store) resolveConflict(ctx context.Context, a Append, cause error) (Ack, error) {
	subj := a.Subject
	if a.New {
		subj = s.cfg.Prefix + events.AnySubject(a.HazardID)
	}
	last, err := s.str.GetLastMsgForSubject(ctx, subj)
	// The same event id under another subject (a report retried with another sector or
	// region) is not the same event: it is a conflict.
	if err == nil && last.Header.Get(jetstream.MsgIDHeader) == a.MsgID && last.Subject == a.Subject {
		return Ack{Seq: last.Sequence, Duplicate: true, Data: last.Data}, nil
	}
	cur := uint64(0)
	if err == nil {
		cur = last.Sequence
	}
	return Ack{}, stale(subj, cur, cause)
}

// duplicate answers a publish the server deduplicated by Msg-Id: the ack carries the stored
// bytes (an earlier attempt's, which differ from this one's in at least their record time),
// so that the caller's state chains to what the log holds.
func (s *Store) duplicate(ctx context.Context, a Append, seq uint64) (Ack, error) {
	m, err := s.Get(ctx, seq)
	// A direct get may be answered by a replica that has not applied seq yet.
	for deadline := time.Now().Add(s.cfg.RetryFor); events.KindOf(err) == events.KindNotFound && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return Ack{}, Unavailable(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		m, err = s.Get(ctx, seq)
	}
	if err != nil {
		return Ack{}, err
	}
	if m.Subject != a.Subject || m.MsgID != a.MsgID {
		return Ack{}, stale(m.Subject, seq, fmt.Errorf("event %s is stored under %s", a.MsgID, m.Subject))
	}
	return Ack{Seq: seq, Duplicate: true, Data: m.Data}, nil
}

func stale(subj string, cur uint64, cause error) error {
	e := events.Errorf(events.KindConflict, "stale_state", "", "hazard changed concurrently (last sequence %d)", cur)
	e.Err = &StaleError{Current: cur, Subject: subj, cause: cause}
	return e
}

// StaleError carries the subject's current last sequence after a failed expectation.
type StaleError struct {
	Current uint64
	Subject string
	cause   error
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("stale: %s at %d: %v", e.Subject, e.Current, e.cause)
}
func (e *StaleError) Unwrap() error { return e.cause }

// IsConflict reports a failed expected-sequence check (10071, or 10164 on replicated streams).
func IsConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

func transient(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrReconnectBufExceeded)
}

// Unavailable wraps a store failure as a 503.
func Unavailable(err error) error {
	return &events.Error{Kind: events.KindUnavailable, Code: "store_unavailable", Message: "the event store is unavailable; retry later", Err: err}
}

// Get reads one stored event by sequence.
func (s *Store) Get(ctx context.Context, seq uint64) (Msg, error) {
	m, err := s.str.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return Msg{}, events.Errorf(events.KindNotFound, "event_not_found", "", "no event at sequence %d", seq)
		}
		return Msg{}, Unavailable(err)
	}
	return Msg{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, Time: m.Time, MsgID: m.Header.Get(jetstream.MsgIDHeader)}, nil
}

// History reads every event of one subject from sequence from on, without a consumer
// (batched direct get).
func (s *Store) History(ctx context.Context, subject string, from uint64) ([]Msg, error) {
	if from == 0 {
		from = 1
	}
	subject = s.cfg.Prefix + subject
	var out []Msg
	for {
		it, err := jetstreamext.GetBatch(ctx, s.js, s.cfg.Stream, 256, jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(subject))
		if err != nil {
			return nil, Unavailable(err)
		}
		n := 0
		var pending uint64
		for m, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				return out, nil
			}
			if err != nil {
				return nil, Unavailable(err)
			}
			n++
			out = append(out, Msg{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, Time: m.Time, MsgID: m.Header.Get(jetstream.MsgIDHeader)})
			from = m.Sequence + 1
			pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
		}
		if n == 0 || pending == 0 {
			return out, nil
		}
	}
}

// LastSeq is the stream's last sequence.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	info, err := s.str.Info(ctx)
	if err != nil {
		return 0, Unavailable(err)
	}
	return info.State.LastSeq, nil
}

// Follow delivers every event from sequence from on, in order, to fn, until ctx ends or fn
// fails. It uses one ordered consumer (no acks; it heals gaps by itself).
func (s *Store) Follow(ctx context.Context, from uint64, fn func(Msg, uint64) error) error {
	if from == 0 {
		from = 1
	}
	cons, err := s.str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from, InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return Unavailable(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return Unavailable(err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return Unavailable(err)
		}
		seq, ts, pending, ok := ackMeta(m.Reply())
		if !ok { // a form ackMeta does not know: nats.go's reading
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			seq, ts, pending = md.Sequence.Stream, md.Timestamp.UnixNano(), md.NumPending
		}
		if err := fn(Msg{Seq: seq, Subject: m.Subject(), Data: m.Data(), Time: time.Unix(0, ts), MsgID: m.Headers().Get(jetstream.MsgIDHeader)}, pending); err != nil {
			return err
		}
	}
}
