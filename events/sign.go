package events

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// Signatures (design.md, "Envelope"): the actor signs, with the ed25519 key of its nkey, the
// RFC 8785 canonical JSON of {"id","type","subject","commandid","occurredat","actor","data"} of
// the event its command records (Event.SigningBytes). A client can compute those bytes before
// sending: the event id derives from hazard and command ids, the type from the action, the
// subject is the hazard id, occurredat is the client's (so a signed command must carry
// occurred_at), the actor is the client's user and data is the normalised payload. The server
// verifies against the data it records, so the client normalises its payload first with
// NormalizePayload (the same rules as Decide); CommandSigningBytes and SignCommand do it all.
//
// Keys are nkey public keys (base32, with a CRC); they are decoded here with the standard
// library so that anyone can check a signature without NATS.

// NKey prefixes (the first byte of a decoded key).
const (
	nkeyPrefixUser   byte = 20 << 3 // "U..."
	nkeyPrefixServer byte = 13 << 3 // "N..."
)

var nkeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding) // read-only encoding

// DecodeNKey decodes an nkey public key (user "U…" or server "N…") into its ed25519 key.
func DecodeNKey(pub string) (ed25519.PublicKey, error) {
	raw, err := nkeyEncoding.DecodeString(pub)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize+2 {
		return nil, fmt.Errorf("%q is not an nkey public key", clip(pub, 60))
	}
	body := raw[:len(raw)-2]
	if crc16(body) != binary.LittleEndian.Uint16(raw[len(raw)-2:]) {
		return nil, fmt.Errorf("nkey %q: bad checksum", clip(pub, 60))
	}
	if body[0] != nkeyPrefixUser && body[0] != nkeyPrefixServer {
		return nil, fmt.Errorf("nkey %q is neither a user nor a server key", clip(pub, 60))
	}
	return ed25519.PublicKey(body[1:]), nil
}

// crc16 is CRC-16/XMODEM, as nkeys checksums keys.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// VerifySignature checks a base64 (standard, padded) ed25519 signature of msg by the nkey pub.
func VerifySignature(pub string, msg []byte, sig string) error {
	key, err := DecodeNKey(pub)
	if err != nil {
		return err
	}
	s, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return fmt.Errorf("signature is not %d bytes of standard base64", ed25519.SignatureSize)
	}
	if !ed25519.Verify(key, msg, s) {
		return fmt.Errorf("signature does not verify with key %s", pub)
	}
	return nil
}

// VerifyEventSignature checks an event's sig against a user's keys (any of them: a rotated
// key stays valid for what it signed). It returns the key that verified.
func VerifyEventSignature(e *Event, keys []string) (string, error) {
	if e.Sig == "" {
		return "", fmt.Errorf("event %s is not signed", e.ID)
	}
	msg, err := e.SigningBytes()
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		if VerifySignature(k, msg, e.Sig) == nil {
			return k, nil
		}
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("no public key of %s is known", e.Actor)
	}
	return "", fmt.Errorf("the signature of event %s verifies with none of %s's %d keys", e.ID, e.Actor, len(keys))
}

// CommandSigningBytes resolves the command's ids, normalises its payload (NormalizePayload)
// and returns the bytes its event will be signed over. The command must carry OccurredAt and
// its actor's id.
func CommandSigningBytes(cat *Catalog, cmd *Command) ([]byte, error) {
	if cmd.OccurredAt.IsZero() {
		return nil, Errorf(KindInvalid, "occurred_at_required", "occurred_at", "a signed command must carry occurred_at")
	}
	if cmd.Actor.ID == "" {
		return nil, Errorf(KindInvalid, "actor_required", "actor", "a signed command names its actor")
	}
	ResolveIDs(cmd)
	if err := NormalizePayload(cat, cmd); err != nil {
		return nil, err
	}
	data, err := encodePayload(cmd.Payload)
	if err != nil {
		return nil, err
	}
	e := Event{ID: EventID(cmd.HazardID, cmd.CommandID), Type: ActionType(cmd.Action), Subject: cmd.HazardID,
		CommandID: cmd.CommandID, OccurredAt: cmd.OccurredAt, Actor: cmd.Actor.ID, Data: data}
	return e.SigningBytes()
}

// SignCommand signs a command with sign (an nkeys KeyPair's Sign) and sets cmd.Sig.
func SignCommand(cat *Catalog, cmd *Command, sign func([]byte) ([]byte, error)) error {
	msg, err := CommandSigningBytes(cat, cmd)
	if err != nil {
		return err
	}
	s, err := sign(msg)
	if err != nil {
		return err
	}
	cmd.Sig = base64.StdEncoding.EncodeToString(s)
	return nil
}

// CommandBody encodes a command as the JSON body the transports decode (DecodeCommand):
// payload fields with command_id, occurred_at, sig, expected_version and, for a report, id.
func CommandBody(cmd *Command) ([]byte, error) {
	p, err := encodePayload(cmd.Payload)
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, err
	}
	put := func(k string, v any) {
		b, _ := json.Marshal(v)
		m[k] = b
	}
	if cmd.CommandID != "" {
		put("command_id", cmd.CommandID)
	}
	if !cmd.OccurredAt.IsZero() {
		put("occurred_at", cmd.OccurredAt.Format(time.RFC3339Nano))
	}
	if cmd.Sig != "" {
		put("sig", cmd.Sig)
	}
	if cmd.ExpectedVersion != nil {
		put("expected_version", *cmd.ExpectedVersion)
	}
	if cmd.Action == ActReport && cmd.HazardID != "" {
		put("id", cmd.HazardID)
	}
	return json.Marshal(m)
}

// encodePayload encodes a payload as Decide stores it (no HTML escaping).
func encodePayload(p any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// NormalizePayload applies to cmd.Payload the normalisations Decide applies (trimmed text,
// deadlines as RFC 3339 instants in Asia/Shanghai, a site id for a place without a credit
// code), without the hazard's state: the rules that need the state are left to Decide. It is
// the very step Decide runs (normalize), so the result is a fixed point of Decide's
// normalisation, which sign_test.go checks for every action. cmd must have its ids resolved;
// a zero OccurredAt means now.
func NormalizePayload(cat *Catalog, cmd *Command) error {
	occurred := cmd.OccurredAt
	if occurred.IsZero() {
		occurred = time.Now()
	}
	if err := normalize(cat, cmd.HazardID, cmd.Payload, occurred); err != nil {
		return err
	}
	return nil
}
