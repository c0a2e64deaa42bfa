// Package app is the command and query path shared by every way in (HTTP, NATS): it decides
// commands against the in-memory hazard index and appends their events to the log.
package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections"
)

// Log is the event log as the command path uses it.
type Log interface {
	Append(ctx context.Context, a jsstore.Append) (jsstore.Ack, error)
	Get(ctx context.Context, seq uint64) (jsstore.Msg, error)
	History(ctx context.Context, subject string, from uint64) ([]jsstore.Msg, error)
}

// Service runs commands and queries.
type Service struct {
	Catalog *events.Catalog
	Index   *projections.Index
	Log     Log
	Clock   func() time.Time // the record clock; nil = time.Now
	Home    string           // the `source` of events appended here
	// Evidence, when set, checks that referenced files are stored.
	Evidence func(ctx context.Context, sha256 string) (bool, error)
	// Verifier, when set, checks a command's signature against its event before it is
	// appended (signature.go); without it a sig is stored unchecked.
	Verifier Verifier

	locks [4096]sync.Mutex // per-hazard stripes; few enough to stay small, many enough that 128 writers rarely share one
	seed  maphash.Seed
	once  sync.Once
}

// Result of a command.
type Result struct {
	Hazard   events.Hazard
	EventID  string
	Replayed bool // the command was already recorded; nothing was appended
}

const maxRedecide = 8

// Execute decides and records one command. A command id already recorded is answered with
// its recorded result; a command decided on stale state is re-decided on fresh state.
func (s *Service) Execute(ctx context.Context, cmd *events.Command) (Result, error) {
	events.ResolveIDs(cmd)
	mu := s.lock(cmd.HazardID)
	mu.Lock()
	defer mu.Unlock()
	for attempt := 0; ; attempt++ {
		cur, exists := s.Index.Get(cmd.HazardID)
		var h *events.Hazard
		if exists {
			h = &cur
		}
		if u := cmd.Actor.User; u != nil {
			if err := events.Authorize(s.Catalog, u, cmd, h, s.Now()); err != nil {
				return Result{}, err
			}
		}
		if res, done, err := s.recorded(ctx, cmd); done {
			return res, err
		}
		if h != nil && h.Home != "" && h.Home != s.home() {
			return Result{}, events.Errorf(events.KindRule, "wrong_home", "id",
				"hazard %s is homed at %s; only its home accepts commands for it (this is %s)", h.ID, h.Home, s.home())
		}
		if h != nil && cmd.Action == events.ActReport {
			return s.knownReport(ctx, cmd, h)
		}
		if h != nil && h.HashUnknown { // after the checks that need no hash: they read nothing
			if err := s.resolveHash(ctx, h); err != nil {
				return Result{}, err
			}
		}
		ev, err := events.Decide(s.Catalog, h, cmd, s.Now(), s.home())
		if err != nil {
			return Result{}, err
		}
		if s.Verifier != nil {
			if err := s.Verifier.VerifyCommand(cmd, ev); err != nil {
				return Result{}, err
			}
		}
		if err := s.checkEvidence(ctx, cmd.Payload); err != nil {
			return Result{}, err
		}
		raw, err := ev.Marshal()
		if err != nil {
			return Result{}, err
		}
		a := jsstore.Append{Data: raw, MsgID: ev.ID, HazardID: cmd.HazardID}
		if h == nil {
			r := cmd.Payload.(*events.Reported)
			prov, pref, _ := s.Catalog.Path(r.Region)
			a.Subject, a.New = events.Subject(r.Sector, prov, pref, r.Region, cmd.HazardID), true
		} else {
			a.Subject, a.Expect = h.Subject(), h.Seq
		}
		ack, err := s.Log.Append(ctx, a)
		var stale *jsstore.StaleError
		if errors.As(err, &stale) {
			// Re-decide on fresh state; with an expected_version, Decide then answers version_conflict.
			if attempt >= maxRedecide {
				return Result{}, events.Errorf(events.KindConflict, "contention", "", "hazard %s changed %d times while deciding; retry", cmd.HazardID, attempt)
			}
			if err := s.waitFeed(ctx, stale.Current); err != nil {
				return Result{}, err
			}
			continue
		}
		if err != nil {
			return Result{}, err
		}
		if ack.Duplicate {
			// An earlier attempt of this command landed (possibly through another server, with
			// another body): fold it in, then answer it from the command map as a retry.
			if attempt >= maxRedecide {
				return Result{}, events.Errorf(events.KindConflict, "contention", "", "hazard %s changed %d times while deciding; retry", cmd.HazardID, attempt)
			}
			if err := s.foldDuplicate(ctx, h, ack); err != nil {
				return Result{}, err
			}
			continue
		}
		// The stored bytes are raw: fold the decided event in without decoding them again
		// (a third of the command path's CPU), with its instants as they read back from the log.
		stored := *ev
		stored.Time, stored.OccurredAt = ev.Time.Round(0), ev.OccurredAt.Round(0)
		if err := s.Index.ApplyParsed(ack.Seq, ack.Data, &stored, cmd.Payload); err != nil {
			return Result{}, err
		}
		// The answer is the state this event made: the index's, unless it has applied a later
		// event since; then the state decided on (the store checked it was still the last)
		// evolved by this event.
		if cur, ok := s.Index.Get(cmd.HazardID); ok && cur.Seq == ack.Seq {
			return Result{Hazard: cur, EventID: ev.ID}, nil
		}
		var base *events.Hazard
		if h != nil {
			c := *h
			c.AmendSeqs = slices.Clone(h.AmendSeqs)
			base = &c
		}
		st, err := events.Evolve(s.Catalog, base, &stored, cmd.Payload, ack.Data, ack.Seq)
		if err != nil {
			return Result{}, err
		}
		return Result{Hazard: *st, EventID: ev.ID}, nil
	}
}

// resolveHash hashes the stored event at h.Seq, which a replay applied without hashing, into
// h and the index: one read by sequence, once per replayed hazard that gets another command.
func (s *Service) resolveHash(ctx context.Context, h *events.Hazard) error {
	m, err := s.Log.Get(ctx, h.Seq)
	if err != nil {
		return err
	}
	e, err := events.ParseEvent(m.Data)
	if err != nil {
		return err
	}
	if e.Subject != h.ID {
		return events.Errorf(events.KindInternal, "index_mismatch", "", "the event at sequence %d is of hazard %s, not %s", h.Seq, e.Subject, h.ID)
	}
	h.SetLastHash(m.Data)
	s.Index.ResolveHash(h.ID, h.Seq, h.LastHash)
	return nil
}

// foldDuplicate brings the index up to an already stored event of the hazard. It applies the
// event itself only when it directly follows h (the state decided on); otherwise events in
// between are missing here, and the feed must bring them in order.
func (s *Service) foldDuplicate(ctx context.Context, h *events.Hazard, ack jsstore.Ack) error {
	e, err := events.ParseEvent(ack.Data)
	if err != nil {
		return err
	}
	if (h == nil && e.Type == events.TypeReported) || (h != nil && e.PrevHash == h.PrevHash()) {
		return s.Index.Apply(ack.Seq, ack.Data)
	}
	return s.waitFeed(ctx, ack.Seq)
}

// waitFeed waits (a bounded time) until the feed has applied the log up to seq, which another
// server wrote: the feed applies in order, so the hazard then holds it. (Index.WaitHazard is
// not used: it reads the shared hazard's seq outside the index lock.)
func (s *Service) waitFeed(ctx context.Context, seq uint64) error {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Index.WaitApplied(wctx, seq); err != nil && ctx.Err() != nil {
		return jsstore.Unavailable(ctx.Err())
	}
	return nil
}

// recorded answers a command id the index already knows.
func (s *Service) recorded(ctx context.Context, cmd *events.Command) (Result, bool, error) {
	rec, ok := s.Index.Command(cmd.CommandID)
	if !ok {
		return Result{}, false, nil
	}
	if rec.HazardID != cmd.HazardID || rec.Type != events.ActionType(cmd.Action) {
		return Result{}, true, events.Errorf(events.KindConflict, "command_id_reused", "command_id",
			"command id %s was already used for %s on hazard %s", cmd.CommandID, rec.Type, rec.HazardID)
	}
	h, _ := s.Index.Get(rec.HazardID)
	if cmd.Action == events.ActReport {
		res, err := s.knownReport(ctx, cmd, &h)
		return res, true, err
	}
	return Result{Hazard: h, EventID: events.EventID(rec.HazardID, cmd.CommandID), Replayed: true}, true, nil
}

// knownReport answers a report whose hazard exists: the same body is a retry (200 with the
// hazard), another body is an id conflict.
func (s *Service) knownReport(ctx context.Context, cmd *events.Command, h *events.Hazard) (Result, error) {
	conflict := events.Errorf(events.KindConflict, "id_conflict", "id", "hazard %s already exists with another report", h.ID)
	m, err := s.Log.Get(ctx, h.ReportSeq)
	if err != nil {
		return Result{}, err
	}
	stored, err := events.ParseEvent(m.Data)
	if err != nil {
		return Result{}, err
	}
	// Normalise the retry as the original was, at the original's instants.
	occurred := cmd.OccurredAt
	if occurred.IsZero() {
		occurred = stored.OccurredAt
	}
	retry := *cmd
	retry.OccurredAt = occurred
	ev, err := events.Decide(s.Catalog, nil, &retry, stored.Time, stored.Source)
	if err != nil || !bytes.Equal(compact(ev.Data), compact(stored.Data)) || !occurred.Equal(stored.OccurredAt) {
		return Result{}, conflict
	}
	return Result{Hazard: *h, EventID: stored.ID, Replayed: true}, nil
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}

func (s *Service) checkEvidence(ctx context.Context, p any) error {
	if s.Evidence == nil {
		return nil
	}
	for i, ev := range events.EvidenceOf(p) {
		ok, err := s.Evidence(ctx, ev.SHA256)
		if err != nil {
			return err
		}
		if !ok {
			return events.Errorf(events.KindRule, "evidence_missing", "evidence", "evidence[%d] %s is not stored; upload it first (PUT /v1/evidence)", i, ev.SHA256)
		}
	}
	return nil
}

func (s *Service) lock(id string) *sync.Mutex {
	s.once.Do(func() { s.seed = maphash.MakeSeed() })
	return &s.locks[maphash.String(s.seed, id)%uint64(len(s.locks))]
}

// Now is the record clock.
func (s *Service) Now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *Service) home() string {
	if s.Home != "" {
		return s.Home
	}
	return events.DefaultSource
}

// Hazard returns a hazard's state.
func (s *Service) Hazard(id string) (events.Hazard, error) {
	if err := events.CanonicalUUID("id", id); err != nil {
		return events.Hazard{}, err
	}
	h, ok := s.Index.Get(id)
	if !ok {
		return events.Hazard{}, events.Errorf(events.KindNotFound, "hazard_not_found", "id", "no hazard %s", id)
	}
	return h, nil
}

// CheckRead refuses a read of h by u (nil u: a trusted internal caller, or no identities).
func (s *Service) CheckRead(u *events.User, h *events.Hazard) error {
	if u == nil || events.CanRead(s.Catalog, u, h) {
		return nil
	}
	return events.Errorf(events.KindForbidden, "not_readable", "id", "%s may not read hazard %s", u.ID, h.ID)
}

// ReadHazard is Hazard for a reader u (nil: unrestricted).
func (s *Service) ReadHazard(u *events.User, id string) (events.Hazard, error) {
	h, err := s.Hazard(id)
	if err == nil {
		err = s.CheckRead(u, &h)
	}
	return h, err
}

// ReadHistory is History for a reader u (nil: unrestricted).
func (s *Service) ReadHistory(ctx context.Context, u *events.User, id string) ([]Stored, error) {
	if _, err := s.ReadHazard(u, id); err != nil {
		return nil, err
	}
	return s.History(ctx, id)
}

// Readable is the list filter for reader u (nil: everything).
func (s *Service) Readable(u *events.User) func(*events.Hazard) bool {
	if u == nil {
		return nil
	}
	return func(h *events.Hazard) bool { return events.CanRead(s.Catalog, u, h) }
}

// Stored is one event of a history with its place in the log.
type Stored struct {
	Seq   uint64        `json:"seq"`
	Hash  string        `json:"hash"` // SHA-256 of the stored bytes
	Event *events.Event `json:"event"`
}

// History returns a hazard's events in order.
func (s *Service) History(ctx context.Context, id string) ([]Stored, error) {
	h, err := s.Hazard(id)
	if err != nil {
		return nil, err
	}
	msgs, err := s.Log.History(ctx, h.Subject(), h.ReportSeq)
	if err != nil {
		return nil, err
	}
	out := make([]Stored, 0, len(msgs))
	for _, m := range msgs {
		e, err := events.ParseEvent(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, Stored{Seq: m.Seq, Hash: events.HashString(sha256.Sum256(m.Data)), Event: e})
	}
	return out, nil
}

// Details are the parts of a hazard kept in the stream rather than the index.
type Details struct {
	Description string            `json:"description"`
	Site        events.Site       `json:"site"`
	Location    *events.Location  `json:"location,omitempty"`
	Evidence    []events.Evidence `json:"evidence,omitempty"`
	CriterionZh string            `json:"criterion_zh,omitempty"`
}

// Details reads the report and its amendments by sequence (direct gets, no consumer).
func (s *Service) Details(ctx context.Context, h *events.Hazard) (Details, error) {
	var d Details
	for _, seq := range append([]uint64{h.ReportSeq}, h.AmendSeqs...) {
		m, err := s.Log.Get(ctx, seq)
		if err != nil {
			return d, err
		}
		e, err := events.ParseEvent(m.Data)
		if err != nil {
			return d, err
		}
		p, err := e.Payload()
		if err != nil {
			return d, err
		}
		switch v := p.(type) {
		case *events.Reported:
			d.Description, d.Site, d.Location, d.Evidence = v.Description, v.Site, v.Location, v.Evidence
		case *events.Amended:
			if v.Description != nil {
				d.Description = *v.Description
			}
			if v.Site != nil {
				d.Site.Name = v.Site.Name
			}
			if v.Location != nil {
				d.Location = v.Location
			}
		}
	}
	if k, ok := s.Catalog.Criterion(h.Criterion); ok {
		d.CriterionZh = k.SubjectZh
	}
	return d, nil
}
