package app

import (
	"fmt"
	"slices"
	"strings"

	"qingling/events"
)

// Verifier checks a command's signature against the event Decide made of it (the signed
// bytes are the event's SigningBytes), before anything is appended.
type Verifier interface {
	VerifyCommand(cmd *events.Command, ev *events.Event) error
}

// KeyVerifier checks signatures against each user's current nkey and requires them from the
// roles listed. A new command must be signed with the current key: a rotated key stays valid
// only for what it signed before (verify checks those against every registered key).
type KeyVerifier struct {
	// CurrentKey returns a user's current nkey public key; false when the user has none.
	CurrentKey func(user string) (string, bool)
	// Require lists the roles whose commands must be signed.
	Require []string
}

var _ Verifier = (*KeyVerifier)(nil)

// VerifyCommand implements Verifier.
func (v *KeyVerifier) VerifyCommand(cmd *events.Command, ev *events.Event) error {
	role := cmd.Actor.Role
	if cmd.Actor.User != nil {
		role = cmd.Actor.User.Role
	}
	if cmd.Sig == "" {
		if slices.Contains(v.Require, role) {
			return events.Errorf(events.KindForbidden, "signature_required", "sig",
				"commands of a %s must be signed with the user's nkey (sig over the event's canonical bytes; see README)", role)
		}
		return nil
	}
	if cmd.OccurredAt.IsZero() {
		return events.Errorf(events.KindInvalid, "occurred_at_required", "occurred_at",
			"a signed command must carry occurred_at: it is part of the signed bytes")
	}
	bad := func(format string, args ...any) error {
		return events.Errorf(events.KindUnauthenticated, "bad_signature", "sig", format, args...)
	}
	key, ok := "", false
	if v.CurrentKey != nil {
		key, ok = v.CurrentKey(cmd.Actor.ID)
	}
	if !ok || key == "" {
		return bad("user %s has no registered nkey to check the signature against", cmd.Actor.ID)
	}
	msg, err := ev.SigningBytes()
	if err != nil {
		return err
	}
	if err := events.VerifySignature(key, msg, cmd.Sig); err != nil {
		return bad("the signature does not verify with %s's current key over the recorded event (normalise the payload as events.NormalizePayload does; sign with the current key): %v", cmd.Actor.ID, err)
	}
	return nil
}

// ParseRoles reads a comma-separated list of roles ("inspector,verifier"; "" = none).
func ParseRoles(s string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(events.Roles, r) {
			return nil, fmt.Errorf("unknown role %q (roles: %s)", r, strings.Join(events.Roles, ", "))
		}
		out = append(out, r)
	}
	return out, nil
}
