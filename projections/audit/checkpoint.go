// Package audit proves a hazard log untampered: it checks signed checkpoints and walks the
// stored events (Verifier), without NATS — the caller feeds it the log in stream order.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"qingling/events"
)

// A checkpoint is a Qingling server's signed statement of the events it appended and saw
// acknowledged since its previous checkpoint, in ack order. Each server instance (named by the
// nkey it signs with) keeps its own chain: checkpoints numbered 1, 2, … each naming the
// previous one's digest, and a running hash over all its events,
//
//	H₀ = SHA-256("qingling-checkpoints/v1\n" + instance)
//	Hᵢ = SHA-256(Hᵢ₋₁ ‖ seq as 8 bytes big-endian ‖ SHA-256 of the stored bytes)
//
// So with several instances writing one log, each checkpoint covers only its own instance's
// events; verify takes the union. Entries list every covered event (seq, hazard, the first 8
// bytes of its hash) so that verify names the sequence and the hazard of an event altered,
// moved or missing, not only "something in this range".
type Checkpoint struct {
	V        int       `json:"v"`
	Instance string    `json:"instance"` // the signing server's nkey public key
	N        uint64    `json:"n"`        // 1, 2, … per instance
	Prev     string    `json:"prev"`     // Digest of the instance's previous checkpoint ("" for n = 1)
	Time     time.Time `json:"time"`
	Stream   string    `json:"stream"`
	Count    int       `json:"count"`    // events in this checkpoint
	Total    uint64    `json:"total"`    // events in the instance's chain up to here
	LastSeq  uint64    `json:"last_seq"` // the highest seq the instance has seen acknowledged
	// Through: every event the instance appended with a seq up to here is in this or an
	// earlier checkpoint of its chain (it waited for its appends in flight to settle).
	Through uint64 `json:"through"`
	Hash    string `json:"hash"`            // the running hash after this checkpoint's events (hex)
	Entries string `json:"entries"`         // base64 of EntrySize-byte entries, in ack order
	Final   bool   `json:"final,omitempty"` // the instance stopped cleanly after this checkpoint
	// Restart: the instance started again after an unclean stop (a crash, SIGKILL, power cut);
	// what it appended after its previous checkpoint, up to Through, was acknowledged but its
	// record of those acks was lost with the process, so no checkpoint vouches for them.
	Restart bool   `json:"restart,omitempty"`
	Sig     string `json:"sig"` // ed25519 by Instance over SigningBytes, base64
}

// Version of the checkpoint format.
const Version = 1

// EntrySize is the size of one encoded entry: seq (8), hazard UUID (16), digest (8).
const EntrySize = 32

// Entry is one event a checkpoint covers.
type Entry struct {
	Seq    uint64
	Hazard uuid.UUID
	Digest [8]byte // first 8 bytes of SHA-256 of the stored bytes
}

// Acked is one event an instance appended, as its ack told it.
type Acked struct {
	Seq    uint64
	Hazard string
	Hash   [32]byte // SHA-256 of the stored bytes
}

// EncodeEntries encodes entries for Checkpoint.Entries.
func EncodeEntries(list []Acked) string {
	b := make([]byte, 0, len(list)*EntrySize)
	for _, a := range list {
		b = binary.BigEndian.AppendUint64(b, a.Seq)
		u, _ := uuid.Parse(a.Hazard)
		b = append(b, u[:]...)
		b = append(b, a.Hash[:8]...)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeEntries decodes Checkpoint.Entries.
func DecodeEntries(s string) ([]Entry, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%EntrySize != 0 {
		return nil, errors.New("checkpoint entries are not base64 of 32-byte entries")
	}
	out := make([]Entry, len(b)/EntrySize)
	for i := range out {
		e := b[i*EntrySize:]
		out[i].Seq = binary.BigEndian.Uint64(e)
		copy(out[i].Hazard[:], e[8:24])
		copy(out[i].Digest[:], e[24:32])
	}
	return out, nil
}

// GenesisHash starts an instance's running hash.
func GenesisHash(instance string) [32]byte {
	return sha256.Sum256([]byte("qingling-checkpoints/v1\n" + instance))
}

// Chain folds one event into a running hash.
func Chain(h [32]byte, seq uint64, eventHash [32]byte) [32]byte {
	var b [32 + 8 + 32]byte
	copy(b[:32], h[:])
	binary.BigEndian.PutUint64(b[32:40], seq)
	copy(b[40:], eventHash[:])
	return sha256.Sum256(b[:])
}

// SigningBytes are the RFC 8785 canonical JSON of the checkpoint without its sig.
func (c *Checkpoint) SigningBytes() ([]byte, error) {
	cc := *c
	cc.Sig = ""
	b, err := json.Marshal(&cc)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "sig")
	return events.Canonical(m)
}

// Digest identifies a checkpoint: SHA-256 (hex) of its signing bytes.
func (c *Checkpoint) Digest() string {
	b, err := c.SigningBytes()
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// VerifySig checks the checkpoint's signature by its instance key.
func (c *Checkpoint) VerifySig() error {
	b, err := c.SigningBytes()
	if err != nil {
		return err
	}
	return events.VerifySignature(c.Instance, b, c.Sig)
}

// Marshal encodes a checkpoint as one JSON line (no trailing newline).
func (c *Checkpoint) Marshal() ([]byte, error) { return json.Marshal(c) }

// ParseCheckpoint decodes one checkpoint strictly.
func ParseCheckpoint(b []byte) (*Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if c.V != Version || c.Instance == "" || c.N == 0 {
		return nil, fmt.Errorf("checkpoint: not a version %d Qingling checkpoint", Version)
	}
	return &c, nil
}

// Writer is one instance's side of its chain: it turns batches of acks into signed
// checkpoints. It is not safe for concurrent use.
type Writer struct {
	Instance string
	Stream   string
	Sign     func([]byte) ([]byte, error) // the instance key's Sign (nkeys)

	n     uint64
	prev  string
	hash  [32]byte
	total uint64
	last  uint64
	init  bool
	// Restarting marks the next checkpoint as a restart after an unclean stop.
	Restarting bool
}

// Resume continues the chain after last, the instance's latest checkpoint (nil: a new chain).
func (w *Writer) Resume(last *Checkpoint) error {
	w.init = true
	w.hash = GenesisHash(w.Instance)
	w.n, w.prev, w.total, w.last = 0, "", 0, 0
	if last == nil {
		return nil
	}
	if last.Instance != w.Instance {
		return fmt.Errorf("checkpoint of %s cannot continue the chain of %s", last.Instance, w.Instance)
	}
	h, err := hex.DecodeString(last.Hash)
	if err != nil || len(h) != 32 {
		return fmt.Errorf("checkpoint %d: bad hash", last.N)
	}
	copy(w.hash[:], h)
	w.n, w.prev, w.total, w.last = last.N, last.Digest(), last.Total, last.LastSeq
	return nil
}

// Next makes the next checkpoint of the chain over acks (in ack order) at instant now;
// through is the seq up to which every event the instance appended is in acks or earlier.
// Next does not move the chain on (Advance does, once the checkpoint is stored), so a
// checkpoint that fails to publish is made again, with the same number, by the next call.
func (w *Writer) Next(acks []Acked, through uint64, now time.Time, final bool) (*Checkpoint, error) {
	if !w.init {
		if err := w.Resume(nil); err != nil {
			return nil, err
		}
	}
	h, last := w.hash, w.last
	for _, a := range acks {
		h = Chain(h, a.Seq, a.Hash)
		last = max(last, a.Seq)
	}
	c := &Checkpoint{V: Version, Instance: w.Instance, N: w.n + 1, Prev: w.prev, Time: now.UTC(), Stream: w.Stream,
		Count: len(acks), Total: w.total + uint64(len(acks)), LastSeq: last, Through: max(through, last),
		Hash: hex.EncodeToString(h[:]), Entries: EncodeEntries(acks), Final: final, Restart: w.Restarting}
	b, err := c.SigningBytes()
	if err != nil {
		return nil, err
	}
	sig, err := w.Sign(b)
	if err != nil {
		return nil, err
	}
	c.Sig = base64.StdEncoding.EncodeToString(sig)
	return c, nil
}

// Advance moves the chain past c, once it is stored.
func (w *Writer) Advance(c *Checkpoint) {
	if c.Restart {
		w.Restarting = false
	}
	w.n, w.prev, w.total, w.last = c.N, c.Digest(), c.Total, c.LastSeq
	h, _ := hex.DecodeString(c.Hash)
	copy(w.hash[:], h)
}

// N is the number of the chain's last stored checkpoint.
func (w *Writer) N() uint64 { return w.n }
