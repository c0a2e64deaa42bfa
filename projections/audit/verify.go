package audit

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"qingling/events"
)

// Msg is one stored message of the log.
type Msg struct {
	Seq     uint64
	Subject string
	Data    []byte
	MsgID   string // Nats-Msg-Id
	// Source is the Nats-Stream-Source header of a message sourced from another stream (a
	// county office's log on the hub): its own checkpoints vouch for it, not this log's.
	Source string
}

// Keys maps each user id to every nkey public key it ever had (a rotated key still verifies
// what it signed). The users file and `qingling checkpoint export --keys` both give them.
type Keys map[string][]string

// Options of a verification.
type Options struct {
	Catalog *events.Catalog
	// Keys, when not nil, checks every signature; an actor without keys is a problem.
	Keys Keys
	// RequireSigned lists roles (actorrole) whose events must be signed.
	RequireSigned []string
	// Checkpoints are those of the HZ_CHECKPOINTS stream; Exported an auditor's copy kept
	// elsewhere (`qingling checkpoint export`). Where both hold a checkpoint, the copy rules.
	Checkpoints []*Checkpoint
	Exported    []*Checkpoint
	// ServerKeys, when not empty, are the only instance keys whose checkpoints are trusted.
	ServerKeys []string
	// Partial: the messages are a subject-filtered part of the log (a sector or region), so
	// sequence gaps and checkpoints, which concern the whole log, are not checked.
	Partial bool
	// Only problems of events in this sector, region (any level) and record-time range
	// [From, To) are reported; the chains are still followed from each hazard's report.
	Sector, Region string
	From, To       time.Time
	// SizeHint is the number of messages expected (it sizes the verifier's table).
	SizeHint int
	// MaxPerCode caps the problems listed per code (the rest are counted); default 1000.
	MaxPerCode int
}

// Problem is one finding, naming the sequence and, where known, the hazard.
type Problem struct {
	Code    string `json:"code"`
	Seq     uint64 `json:"seq,omitempty"`
	Hazard  string `json:"hazard,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Code)
	if p.Seq != 0 {
		fmt.Fprintf(&b, " seq %d", p.Seq)
	}
	if p.Hazard != "" {
		b.WriteString(" hazard " + p.Hazard)
	}
	return b.String() + ": " + p.Message
}

// Problem codes (stable; README lists them).
const (
	CodeGap                 = "gap"                  // stream sequences missing (first seq > 1 or holes)
	CodeBadEvent            = "bad_event"            // not a decodable Qingling event
	CodeBadSubject          = "bad_subject"          // subject not hz.<sector>.<prov>.<pref>.<county>.<id>, or not the event's
	CodeIDMismatch          = "id_mismatch"          // event id ≠ UUIDv5(hazard, command id), or ≠ Nats-Msg-Id
	CodeTwoSubjects         = "two_subjects"         // the same hazard id under two subjects
	CodeBrokenChain         = "broken_chain"         // prevhash ≠ SHA-256 of the hazard's previous stored event
	CodeRefused             = "refused"              // the lifecycle would have refused the event
	CodeBadSignature        = "bad_signature"        // sig does not verify with any of the actor's keys
	CodeUnknownSigner       = "unknown_signer"       // signed by an actor without known keys
	CodeUnsigned            = "unsigned"             // a role that must sign did not
	CodeHashMismatch        = "hash_mismatch"        // stored bytes ≠ what the server appended at that seq
	CodeMoved               = "moved"                // checkpointed events sit at other seqs (log rebuilt)
	CodeRemoved             = "removed"              // a checkpointed event is not in the log
	CodeTruncated           = "truncated"            // the log ends before what checkpoints cover
	CodeNotAppended         = "not_appended"         // no server checkpointed it: slipped into the stream
	CodeCheckpointSig       = "checkpoint_signature" // a checkpoint's signature does not verify
	CodeCheckpointUntrusted = "checkpoint_untrusted" // signed by a key not pinned with ServerKeys
	CodeCheckpointChain     = "checkpoint_chain"     // numbering, prev link or totals broken
	CodeCheckpointHash      = "checkpoint_hash"      // running hash does not recompute from the log
	CodeCheckpointMissing   = "checkpoint_missing"   // in the exported copy, not in HZ_CHECKPOINTS
	CodeCheckpointDiffers   = "checkpoint_differs"   // exported copy and stream disagree
	CodeBadCheckpoint       = "bad_checkpoint"       // undecodable entries
)

// Report of a verification.
type Report struct {
	Events      int    `json:"events"`
	Hazards     int    `json:"hazards"`
	FirstSeq    uint64 `json:"first_seq"`
	LastSeq     uint64 `json:"last_seq"`
	Signed      int    `json:"signed"`
	SigChecked  int    `json:"signatures_checked"`
	Checkpoints int    `json:"checkpoints"`
	Instances   int    `json:"instances"`
	Covered     int    `json:"covered"` // events of the log some checkpoint covers
	Pending     int    `json:"pending"` // events after the horizon, not yet checkpointed
	// Unvouched: events no checkpoint covers that lie in a window where an instance stopped
	// uncleanly (its acks since its previous checkpoint were lost with the process). Not a
	// problem by themselves: their chains, hashes and signatures are still checked.
	Unvouched int            `json:"unvouched"`
	Sourced   int            `json:"sourced"` // events sourced from county offices' logs (their checkpoints vouch for them)
	Horizon   uint64         `json:"horizon"` // every event up to here must be covered
	Partial   bool           `json:"partial"` // gaps and checkpoints not checked
	Problems  []Problem      `json:"problems"`
	Dropped   map[string]int `json:"dropped,omitempty"` // problems over the cap, per code
}

// OK reports whether nothing is wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 && len(r.Dropped) == 0 }

// logEntry is what the verifier keeps of each message for the checkpoint checks.
type logEntry struct {
	seq  uint64
	hash [32]byte
	hz   int32 // index into Verifier.ids; -1 when the subject names no hazard
	in   bool  // inside the report filter
	// sourced from another stream
	sourced bool
}

type hzState struct {
	idx      int32
	subject  string
	h        *events.Hazard
	n        int // events seen
	lastSeq  uint64
	lastHash [32]byte
	orphan   bool // its first event was not a report
}

// Verifier walks a log. Feed it every message in stream order with Add (or Prepare, which
// may run concurrently, then Apply in order), then call Finish.
type Verifier struct {
	opts   Options
	log    []logEntry
	hz     map[string]*hzState
	ids    []string
	next   uint64
	counts map[string]int
	rep    Report

	decoders sync.Pool // of *decoder, for Prepare's goroutines
	prepared sync.Pool // of *Prepared, back from Apply
}

// New returns a verifier.
func New(opts Options) *Verifier {
	if opts.MaxPerCode == 0 {
		opts.MaxPerCode = 1000
	}
	return &Verifier{opts: opts, hz: map[string]*hzState{}, next: 1, counts: map[string]int{}, rep: Report{Partial: opts.Partial},
		log: make([]logEntry, 0, opts.SizeHint)}
}

func (v *Verifier) problem(p Problem) {
	v.counts[p.Code]++
	if v.counts[p.Code] > v.opts.MaxPerCode {
		if v.rep.Dropped == nil {
			v.rep.Dropped = map[string]int{}
		}
		v.rep.Dropped[p.Code]++
		return
	}
	v.rep.Problems = append(v.rep.Problems, p)
}

// Prepared is a message with the work that needs no order done: hash, decode, signature.
type Prepared struct {
	Msg     Msg
	hash    [32]byte
	event   events.Event
	ev      *events.Event // &event once decoded
	payload any
	err     error // decode failure
	sigErr  error // signature failure (with keys)
	sigDone bool
	tokens  []string
	tok     [8]string
	id      string   // the hazard id the subject names ("" if none)
	wantID  string   // UUIDv5(hazard, command id)
	prev    [32]byte // the event's prevhash, decoded
	prevOK  bool
}

// Prepare does a message's order-free work; it is safe to call from several goroutines.
func (v *Verifier) Prepare(m Msg) *Prepared {
	p, _ := v.prepared.Get().(*Prepared)
	if p == nil {
		p = &Prepared{}
	}
	*p = Prepared{Msg: m, hash: sha256.Sum256(m.Data)}
	p.tokens = splitSubject(m.Subject, &p.tok)
	if len(p.tokens) == 8 && p.tokens[0] == "leaf" {
		p.tokens = p.tokens[2:] // a county office's own log: leaf.<county>.hz.…
	}
	var hzUUID uuid.UUID
	if len(p.tokens) == 6 && p.tokens[0] == "hz" {
		if u, ok := canonicalUUID(p.tokens[5]); ok {
			p.id, hzUUID = p.tokens[5], u
		}
	}
	d, _ := v.decoders.Get().(*decoder)
	if d == nil {
		d = newDecoder()
	}
	p.payload, p.err = d.decode(m.Data, &p.event)
	v.decoders.Put(d)
	if p.err == nil {
		p.ev = &p.event
	}
	if p.err == nil {
		switch {
		case p.id != "" && p.ev.Subject == p.id:
			p.wantID = eventID(hzUUID, p.ev.CommandID)
		case events.CanonicalUUID("subject", p.ev.Subject) == nil:
			p.wantID = events.EventID(p.ev.Subject, p.ev.CommandID)
		}
		if len(p.ev.PrevHash) == 64 {
			p.prevOK = decodeHex(p.prev[:], p.ev.PrevHash)
		}
	}
	if p.err == nil && p.ev.Sig != "" && v.opts.Keys != nil {
		if keys := v.opts.Keys[p.ev.Actor]; len(keys) > 0 {
			_, p.sigErr = events.VerifyEventSignature(p.ev, keys)
			p.sigDone = true
		}
	}
	return p
}

// Add checks one message (Prepare then Apply).
func (v *Verifier) Add(m Msg) { v.Apply(v.Prepare(m)) }

// Apply checks one prepared message; messages must come in stream order. It takes p: p is
// reused afterwards.
func (v *Verifier) Apply(p *Prepared) {
	defer v.prepared.Put(p)
	m := &p.Msg
	r := &v.rep
	r.Events++
	if r.FirstSeq == 0 {
		r.FirstSeq = m.Seq
	}
	if !v.opts.Partial && m.Seq > v.next {
		v.problem(Problem{Code: CodeGap, Seq: v.next, Message: gapMessage(v.next, m.Seq-1)})
	}
	if m.Seq >= v.next {
		v.next = m.Seq + 1
	}
	r.LastSeq = max(r.LastSeq, m.Seq)
	v.log = append(v.log, logEntry{seq: m.Seq, hash: p.hash, hz: -1, sourced: m.Source != ""})
	le := &v.log[len(v.log)-1]
	if le.sourced {
		r.Sourced++
	}

	id := p.id
	e := p.ev
	le.in = v.inFilter(p.tokens, e)
	in := le.in
	report := func(code, hazard, format string, args ...any) {
		if in {
			v.problem(Problem{Code: code, Seq: m.Seq, Hazard: hazard, Message: fmt.Sprintf(format, args...)})
		}
	}
	if id == "" {
		report(CodeBadSubject, "", "subject %q is not hz.<sector>.<province>.<prefecture>.<county>.<hazard id>", m.Subject)
		return
	}
	hz := v.hz[id]
	if hz == nil {
		hz = &hzState{idx: int32(len(v.ids)), subject: m.Subject}
		v.hz[id] = hz
		v.ids = append(v.ids, id)
	}
	le.hz = hz.idx
	if p.err != nil {
		report(CodeBadEvent, id, "%v", p.err)
		return
	}
	if e.Subject != id {
		report(CodeBadSubject, id, "the event names hazard %s but is stored under %s", e.Subject, m.Subject)
		return
	}
	if hz.subject != m.Subject {
		report(CodeTwoSubjects, id, "hazard %s is stored under %s and, here, under %s", id, hz.subject, m.Subject)
		return
	}
	if e.ID != p.wantID {
		report(CodeIDMismatch, id, "event id %s is not UUIDv5(hazard, command id %s) = %s", e.ID, e.CommandID, p.wantID)
	}
	if m.MsgID != "" && m.MsgID != e.ID {
		report(CodeIDMismatch, id, "Nats-Msg-Id %s is not the event id %s", m.MsgID, e.ID)
	}
	// The per-hazard chain: prevhash is the SHA-256 of the previous stored event.
	var want [32]byte
	if hz.n > 0 {
		want = hz.lastHash
	} else {
		want = events.GenesisHash(id)
	}
	if !p.prevOK || p.prev != want {
		if hz.n == 0 {
			report(CodeBrokenChain, id, "the hazard's first event in the log has prevhash %s, not SHA-256 of its id: its earlier events are missing, or it was forged", clip(e.PrevHash))
		} else {
			report(CodeBrokenChain, id, "prevhash %s is not SHA-256 of the hazard's previous event (seq %d, %s): that event's bytes were altered, an event between them was removed, or this one was forged",
				clip(e.PrevHash), hz.lastSeq, clip(events.HashString(hz.lastHash)))
		}
	}
	hz.n++
	hz.lastSeq, hz.lastHash = m.Seq, p.hash
	// Signatures.
	if e.Sig != "" {
		r.Signed++
		switch {
		case p.sigDone:
			r.SigChecked++
			if p.sigErr != nil {
				report(CodeBadSignature, id, "%v", p.sigErr)
			}
		case v.opts.Keys != nil:
			report(CodeUnknownSigner, id, "signed by %s, whose public keys are not known", e.Actor)
		}
	} else if slices.Contains(v.opts.RequireSigned, e.ActorRole) {
		report(CodeUnsigned, id, "%s (%s) did not sign this %s", e.Actor, e.ActorRole, e.Type)
	}
	// The lifecycle, replayed: the event must be one Decide would have made.
	if hz.orphan {
		return
	}
	if hz.h == nil {
		rp, ok := p.payload.(*events.Reported)
		if !ok {
			hz.orphan = true
			report(CodeRefused, id, "the hazard's first event is %s, not %s", e.Type, events.TypeReported)
			return
		}
		prov, pref, _ := v.opts.Catalog.Path(rp.Region)
		subject := m.Subject
		if i := strings.Index(subject, ".hz."); i >= 0 && strings.HasPrefix(subject, "leaf.") {
			subject = subject[i+1:] // a county office's own log (leaf.<county>.hz.…)
		}
		if s := events.Subject(rp.Sector, prov, pref, rp.Region, id); s != subject {
			report(CodeBadSubject, id, "reported for sector %s, region %s, so belongs under %s, not %s", rp.Sector, rp.Region, s, m.Subject)
		}
	}
	cmd := &events.Command{Action: actionOf(e.Type), HazardID: id, CommandID: e.CommandID, OccurredAt: e.OccurredAt,
		Actor: events.Actor{ID: e.Actor, Role: e.ActorRole}, Payload: p.payload}
	refused := false
	if cmd.Action == "" {
		report(CodeRefused, id, "unknown event type %q", e.Type)
		refused = true
	} else if _, err := events.Check(v.opts.Catalog, hz.h, cmd, e.Time); err != nil {
		report(CodeRefused, id, "%s would have been refused: %v", e.Type, err)
		refused = true
	}
	// Evolve's own hash of the bytes is not needed: the chain is checked above (nil raw).
	nh, err := events.Evolve(v.opts.Catalog, hz.h, e, p.payload, nil, m.Seq)
	if err != nil {
		if !refused {
			report(CodeRefused, id, "%v", err)
		}
		return
	}
	hz.h = nh
}

func (v *Verifier) inFilter(tokens []string, e *events.Event) bool {
	o := &v.opts
	if o.Sector != "" && (len(tokens) < 2 || tokens[1] != o.Sector) {
		return false
	}
	if o.Region != "" && (len(tokens) < 5 || !v.opts.Catalog.Contains(o.Region, tokens[4])) {
		return false
	}
	if e != nil && ((!o.From.IsZero() && e.Time.Before(o.From)) || (!o.To.IsZero() && !e.Time.Before(o.To))) {
		return false
	}
	return true
}

func actionOf(typ string) string {
	for _, a := range events.Actions {
		if events.ActionType(a) == typ {
			return a
		}
	}
	return ""
}

func gapMessage(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("stream sequence %d is missing", from)
	}
	return fmt.Sprintf("stream sequences %d–%d are missing (%d messages)", from, to, to-from+1)
}

func clip(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// at finds the log entry of seq.
func (v *Verifier) at(seq uint64) *logEntry {
	i := sort.Search(len(v.log), func(i int) bool { return v.log[i].seq >= seq })
	if i < len(v.log) && v.log[i].seq == seq {
		return &v.log[i]
	}
	return nil
}

func (v *Verifier) hazardOf(le *logEntry) string {
	if le == nil || le.hz < 0 {
		return ""
	}
	return v.ids[le.hz]
}

// Finish checks the checkpoints against the log walked and returns the report.
func (v *Verifier) Finish() Report {
	v.rep.Hazards = len(v.hz)
	if !v.opts.Partial {
		v.checkpoints()
	}
	return v.rep
}

type cpKey struct {
	instance string
	n        uint64
}

// checkpoints checks the signed checkpoints: their chains, then every entry against the log,
// then that every event up to the horizon is covered.
func (v *Verifier) checkpoints() {
	// Merge stream and exported copy; the copy rules where they differ.
	chosen := map[cpKey]*Checkpoint{}
	for _, c := range v.opts.Checkpoints {
		k := cpKey{c.Instance, c.N}
		if old, dup := chosen[k]; dup && old.Digest() != c.Digest() {
			v.problem(Problem{Code: CodeCheckpointChain, Message: fmt.Sprintf("HZ_CHECKPOINTS holds two different checkpoints numbered %d of instance %s", c.N, c.Instance)})
		}
		chosen[k] = c
	}
	for _, c := range v.opts.Exported {
		k := cpKey{c.Instance, c.N}
		if s, ok := chosen[k]; !ok {
			v.problem(Problem{Code: CodeCheckpointMissing, Seq: c.LastSeq, Message: fmt.Sprintf("exported checkpoint %d of instance %s (%s, through seq %d) is not in HZ_CHECKPOINTS: the checkpoint stream was cut or rebuilt", c.N, c.Instance, c.Time.Format(time.RFC3339), c.Through)})
		} else if s.Digest() != c.Digest() {
			v.problem(Problem{Code: CodeCheckpointDiffers, Seq: c.LastSeq, Message: fmt.Sprintf("checkpoint %d of instance %s differs between HZ_CHECKPOINTS and the exported copy", c.N, c.Instance)})
		}
		chosen[k] = c
	}
	if len(chosen) == 0 {
		return
	}
	byInst := map[string][]*Checkpoint{}
	for _, c := range chosen {
		byInst[c.Instance] = append(byInst[c.Instance], c)
	}
	insts := make([]string, 0, len(byInst))
	for i := range byInst {
		insts = append(insts, i)
	}
	sort.Strings(insts)
	v.rep.Instances = len(insts)

	// Every digest some checkpoint lists, and every digest of the log: to tell a moved event
	// from an altered or removed one.
	// Both are built only when an entry does not match.
	entriesOf := map[*Checkpoint][]Entry{}
	for _, c := range chosen {
		es, err := DecodeEntries(c.Entries)
		if err != nil {
			v.problem(Problem{Code: CodeBadCheckpoint, Message: fmt.Sprintf("checkpoint %d of instance %s: %v", c.N, c.Instance, err)})
			continue
		}
		entriesOf[c] = es
	}
	var listedSet map[[8]byte]bool
	listed := func(d [8]byte) bool {
		if listedSet == nil {
			listedSet = map[[8]byte]bool{}
			for _, es := range entriesOf {
				for _, e := range es {
					listedSet[e.Digest] = true
				}
			}
		}
		return listedSet[d]
	}
	var inLog map[[8]byte]uint64
	where := func(d [8]byte) (uint64, bool) {
		if inLog == nil {
			inLog = make(map[[8]byte]uint64, len(v.log))
			for _, le := range v.log {
				var k [8]byte
				copy(k[:], le.hash[:8])
				inLog[k] = le.seq
			}
		}
		s, ok := inLog[d]
		return s, ok
	}
	covered := newBitset(v.rep.LastSeq)
	explained := newBitset(v.rep.LastSeq) // seqs already reported as altered
	type window struct{ from, to uint64 } // (from, to]: an instance's unclean stop
	var lost []window
	horizon, anyOpen, maxThrough := uint64(0), false, uint64(0)
	var mv movedRuns
	for _, inst := range insts {
		list := byInst[inst]
		sort.Slice(list, func(i, j int) bool { return list[i].N < list[j].N })
		trusted := len(v.opts.ServerKeys) == 0 || slices.Contains(v.opts.ServerKeys, inst)
		if !trusted {
			v.problem(Problem{Code: CodeCheckpointUntrusted, Message: fmt.Sprintf("%d checkpoints are signed by instance %s, which is not among the pinned server keys", len(list), inst)})
		}
		h, hashKnown := GenesisHash(inst), true
		var prev, lastValid *Checkpoint
		for _, c := range list {
			v.rep.Checkpoints++
			sigOK := c.VerifySig() == nil
			if !sigOK {
				v.problem(Problem{Code: CodeCheckpointSig, Seq: c.LastSeq, Message: fmt.Sprintf("checkpoint %d of instance %s: the signature does not verify with the instance key", c.N, inst)})
			}
			switch {
			case prev == nil && c.N != 1:
				v.problem(Problem{Code: CodeCheckpointChain, Seq: c.LastSeq, Message: fmt.Sprintf("instance %s: checkpoints 1–%d are missing", inst, c.N-1)})
				hashKnown = false
			case prev != nil && c.N != prev.N+1:
				v.problem(Problem{Code: CodeCheckpointChain, Seq: c.LastSeq, Message: fmt.Sprintf("instance %s: checkpoints %d–%d are missing", inst, prev.N+1, c.N-1)})
				hashKnown = false
			case prev != nil && c.Prev != prev.Digest():
				v.problem(Problem{Code: CodeCheckpointChain, Seq: c.LastSeq, Message: fmt.Sprintf("instance %s: checkpoint %d does not name checkpoint %d as its predecessor", inst, c.N, prev.N)})
			case prev == nil && c.Prev != "":
				v.problem(Problem{Code: CodeCheckpointChain, Seq: c.LastSeq, Message: fmt.Sprintf("instance %s: checkpoint 1 names a predecessor", inst)})
			}
			if c.Restart && sigOK && trusted {
				from := uint64(0)
				if prev != nil {
					from = prev.Through
				}
				lost = append(lost, window{from, c.Through})
			}
			es, ok := entriesOf[c]
			if !ok {
				prev, hashKnown = c, false
				continue
			}
			if c.Count != len(es) || (prev != nil && c.N == prev.N+1 && c.Total != prev.Total+uint64(len(es))) {
				v.problem(Problem{Code: CodeCheckpointChain, Seq: c.LastSeq, Message: fmt.Sprintf("instance %s: checkpoint %d counts %d events (total %d) but lists %d", inst, c.N, c.Count, c.Total, len(es))})
			}
			counts := sigOK && trusted
			allMatch := true
			for _, en := range es {
				le := v.at(en.Seq)
				if le != nil && bytes.Equal(le.hash[:8], en.Digest[:]) {
					h = Chain(h, en.Seq, le.hash)
					if counts {
						covered.set(en.Seq)
					}
					continue
				}
				allMatch = false
				hazard := uuid.UUID(en.Hazard).String()
				if s, found := where(en.Digest); found {
					mv.add(en.Seq, s, hazard)
					if counts {
						covered.set(s)
					}
					continue
				}
				switch {
				case en.Seq > v.rep.LastSeq:
					v.problem(Problem{Code: CodeTruncated, Seq: en.Seq, Hazard: hazard, Message: fmt.Sprintf("instance %s appended this event (checkpoint %d) but the log ends at seq %d: the tail was cut off", inst, c.N, v.rep.LastSeq)})
				case le == nil || listed(digestOf(le)):
					v.problem(Problem{Code: CodeRemoved, Seq: en.Seq, Hazard: hazard, Message: fmt.Sprintf("instance %s appended an event of this hazard at this seq (checkpoint %d); it is not in the log", inst, c.N)})
				default:
					explained.set(en.Seq)
					v.problem(Problem{Code: CodeHashMismatch, Seq: en.Seq, Hazard: hazard, Message: fmt.Sprintf("the stored bytes (hazard %s, SHA-256 %s) are not what instance %s appended here (checkpoint %d): the payload was altered", v.hazardOf(le), clip(events.HashString(le.hash)), inst, c.N)})
				}
			}
			if allMatch && hashKnown && hex.EncodeToString(h[:]) != c.Hash {
				v.problem(Problem{Code: CodeCheckpointHash, Seq: c.LastSeq, Message: fmt.Sprintf("instance %s: the running hash of checkpoint %d does not recompute from the log", inst, c.N)})
			}
			// Resynchronise on the checkpoint's own hash, so one problem is reported once.
			if b, err := hex.DecodeString(c.Hash); err == nil && len(b) == 32 {
				copy(h[:], b)
				hashKnown = true
			}
			if counts {
				maxThrough = max(maxThrough, c.Through)
				lastValid = c
			}
			prev = c
		}
		// The horizon: every open instance has vouched for its events up to here.
		if last := lastValid; last != nil && !last.Final {
			if !anyOpen || last.Through < horizon {
				horizon = last.Through
			}
			anyOpen = true
		}
	}
	mv.report(v)
	if !anyOpen {
		horizon = maxThrough
	}
	if maxThrough > v.rep.LastSeq {
		v.problem(Problem{Code: CodeTruncated, Seq: v.rep.LastSeq + 1, Message: fmt.Sprintf("checkpoints cover the log through seq %d, but it ends at seq %d: %s missing at the end", maxThrough, v.rep.LastSeq, plural(maxThrough-v.rep.LastSeq, "event is", "events are"))})
	}
	v.rep.Horizon = horizon
	for i := range v.log {
		le := &v.log[i]
		switch {
		case covered.has(le.seq):
			v.rep.Covered++
		case explained.has(le.seq), le.sourced:
		case le.seq > horizon:
			v.rep.Pending++
		case slices.ContainsFunc(lost, func(w window) bool { return le.seq > w.from && le.seq <= w.to }):
			v.rep.Unvouched++
		case le.in:
			v.problem(Problem{Code: CodeNotAppended, Seq: le.seq, Hazard: v.hazardOf(le), Message: "no Qingling server checkpointed this event although every one has checkpointed past it: it was published into the stream bypassing the service"})
		}
	}
}

func digestOf(le *logEntry) [8]byte {
	var d [8]byte
	copy(d[:], le.hash[:8])
	return d
}

// movedRuns groups checkpointed events found at other seqs into runs with one offset.
type movedRuns struct {
	list []movedRun
}

type movedRun struct {
	from, to uint64 // checkpointed seqs
	at       uint64 // where from sits now
	n        int
	hazard   string
}

func (m *movedRuns) add(seq, now uint64, hazard string) {
	m.list = append(m.list, movedRun{from: seq, to: seq, at: now, n: 1, hazard: hazard})
}

func (m *movedRuns) report(v *Verifier) {
	sort.Slice(m.list, func(i, j int) bool { return m.list[i].from < m.list[j].from })
	var runs []movedRun
	for _, e := range m.list {
		if k := len(runs); k > 0 {
			r := &runs[k-1]
			if e.from == r.to+1 && e.at-e.from == r.at-r.from {
				r.to, r.n = e.from, r.n+1
				continue
			}
		}
		runs = append(runs, e)
	}
	for _, r := range runs {
		msg := fmt.Sprintf("the event appended at seq %d now sits at seq %d", r.from, r.at)
		if r.n > 1 {
			msg = fmt.Sprintf("the %d events appended at seqs %d–%d now sit at seqs %d–%d", r.n, r.from, r.to, r.at, r.at+(r.to-r.from))
		}
		v.problem(Problem{Code: CodeMoved, Seq: r.from, Hazard: r.hazard, Message: msg + ": the log was rebuilt with messages removed or inserted before them"})
	}
}

type bitset []uint64

func newBitset(n uint64) bitset { return make(bitset, n/64+1) }

func (b bitset) set(i uint64) {
	if i/64 < uint64(len(b)) {
		b[i/64] |= 1 << (i % 64)
	}
}

func (b bitset) has(i uint64) bool { return i/64 < uint64(len(b)) && b[i/64]&(1<<(i%64)) != 0 }

func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// eventID is events.EventID (UUIDv5 of hazard and command id) without its allocations.
func eventID(hazard uuid.UUID, commandID string) string {
	var buf [16 + 64]byte
	if len(commandID) > 64 {
		return events.EventID(hazard.String(), commandID)
	}
	copy(buf[:16], hazard[:])
	n := 16 + copy(buf[16:], commandID)
	sum := sha1.Sum(buf[:n])
	var u uuid.UUID
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}

// splitSubject splits a subject into at most 8 tokens without allocating (more: nil).
func splitSubject(s string, into *[8]string) []string {
	n := 0
	for {
		if n == len(into) {
			return nil
		}
		i := strings.IndexByte(s, '.')
		if i < 0 {
			into[n] = s
			return into[:n+1]
		}
		into[n], s = s[:i], s[i+1:]
		n++
	}
}

// canonicalUUID parses s if it is a UUID spelled canonically (lowercase, hyphenated).
func canonicalUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.UUID{}, false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return uuid.UUID{}, false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return uuid.UUID{}, false
			}
		}
	}
	u, err := uuid.Parse(s)
	return u, err == nil
}

// decodeHex decodes lowercase hex s (as HashString writes it) into dst (len(s) == 2*len(dst)).
func decodeHex(dst []byte, s string) bool {
	val := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		}
		return 0, false
	}
	for i := range dst {
		hi, ok1 := val(s[2*i])
		lo, ok2 := val(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}
