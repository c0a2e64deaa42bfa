package client

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/events"
)

// Signer signs commands with a user's nkey (README, "Signatures"): ed25519 over the canonical
// bytes of the event the command records, which the client computes itself (events.SignCommand).
// A signed command carries occurred_at (stamped here when missing) and its payload as the
// server records it (normalised), with "sig" in its body; once signed its body never changes,
// so every retry and every outbox sync sends the same bytes.
type Signer struct {
	Actor   string // the user the server records as actor (the key's owner)
	Public  string // the nkey public key
	Catalog *events.Catalog
	Sign    func([]byte) ([]byte, error)
	Clock   func() time.Time // occurred_at of a command without one; default time.Now
}

// NewSigner reads a user nkey seed ("SU…") for actor.
func NewSigner(cat *events.Catalog, actor, seed string) (*Signer, error) {
	if actor == "" {
		return nil, events.Errorf(events.KindInvalid, "actor_required", "actor", "to sign, name the key's user (--actor)")
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return nil, events.Errorf(events.KindInvalid, "invalid_nkey", "nkey", "the nkey seed cannot be read: %v", err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, events.Errorf(events.KindInvalid, "invalid_nkey", "nkey", "the nkey seed is not a user key")
	}
	return &Signer{Actor: actor, Public: pub, Catalog: cat, Sign: kp.Sign}, nil
}

// Signed reports whether a command's body carries a signature.
func (cmd *Command) Signed() bool {
	var m struct {
		Sig string `json:"sig"`
	}
	return json.Unmarshal(cmd.Body, &m) == nil && m.Sig != ""
}

// SignCommand signs cmd in place unless it is signed already. Its body is rewritten once:
// occurred_at stamped (if missing), the payload normalised as Decide records it, and "sig".
// A payload the server would refuse outright (an unknown sector, a bad deadline) is refused
// here with the server's code.
func (s *Signer) SignCommand(cmd *Command) error {
	if cmd.Signed() {
		return nil
	}
	dc, err := events.DecodeCommand(cmd.Action, cmd.HazardID, cmd.Body)
	if err != nil {
		return err
	}
	if dc.HazardID == "" {
		dc.HazardID = cmd.HazardID
	}
	if dc.OccurredAt.IsZero() {
		now := time.Now
		if s.Clock != nil {
			now = s.Clock
		}
		dc.OccurredAt = now()
	}
	// one instant, one spelling: the server parses it back from the body and signs over UTC
	dc.OccurredAt = dc.OccurredAt.Round(0)
	dc.Actor.ID = s.Actor
	if err := events.SignCommand(s.Catalog, dc, s.Sign); err != nil {
		return err
	}
	body, err := events.CommandBody(dc)
	if err != nil {
		return err
	}
	cmd.Body = body
	return nil
}

// sign signs a command the client sends as its own user (the signer's); a command queued by
// another user is sent as it is, and the server decides (signature_required where it must be
// signed).
func (c *Client) sign(cmd *Command) error {
	if c.Signer == nil || cmd.Signed() {
		return nil
	}
	actor := cmd.Actor
	if actor == "" {
		actor = c.Actor
	}
	if actor != "" && actor != c.Signer.Actor {
		return nil
	}
	return c.Signer.SignCommand(cmd)
}
