package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Event is one CloudEvents 1.0 document in structured mode, with Qingling's extensions.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	OccurredAt      time.Time       `json:"occurredat"`
	Actor           string          `json:"actor"`
	ActorRole       string          `json:"actorrole,omitempty"`
	CommandID       string          `json:"commandid"`
	PrevHash        string          `json:"prevhash"`
	Sig             string          `json:"sig,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// DefaultSource is the home of hazards reported on the main (hub) deployment.
const DefaultSource = "qingling/hub"

// Namespace for name-based ids derived from command ids.
var namespace = uuid.MustParse("6f1c3a52-9a43-4c1e-9d6e-0c1e3a5b7d21") // constant, never reassigned

// EventID derives an event id from its hazard and command: a retry yields the same id.
func EventID(hazardID, commandID string) string {
	return uuid.NewSHA1(uuid.MustParse(hazardID), []byte(commandID)).String()
}

// ReportID derives a hazard id from a report's command id.
func ReportID(commandID string) string {
	return uuid.NewSHA1(namespace, []byte(commandID)).String()
}

// NewID returns a fresh UUIDv7.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// CanonicalUUID checks that s is a UUID spelled canonically (lowercase, hyphenated).
func CanonicalUUID(field, s string) *Error {
	u, err := uuid.Parse(s)
	if err != nil || u.String() != s {
		return Errorf(KindInvalid, "invalid_uuid", field, "%s must be a canonical UUID (lowercase, hyphenated), got %q", field, clip(s, 60))
	}
	return nil
}

// Subject is the stream subject of a hazard: hz.<sector>.<province>.<prefecture>.<county>.<id>.
func Subject(sector, province, prefecture, county, id string) string {
	return "hz." + sector + "." + province + "." + prefecture + "." + county + "." + id
}

// AnySubject matches a hazard id under any sector and region.
func AnySubject(id string) string { return "hz.*.*.*.*." + id }

// GenesisHash is the prevhash of a hazard's first event: SHA-256 of its id.
func GenesisHash(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// Hash of stored bytes, as a prevhash string.
func HashString(h [32]byte) string { return hex.EncodeToString(h[:]) }

// Marshal encodes an event as stored (no HTML escaping, no trailing newline).
func (e *Event) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// ParseEvent decodes stored bytes.
func ParseEvent(b []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	if e.SpecVersion != "1.0" || e.Type == "" || e.Subject == "" {
		return nil, fmt.Errorf("event %q: not a Qingling CloudEvent", e.ID)
	}
	return &e, nil
}

// SigningBytes are the RFC 8785 canonical JSON of the signed fields.
func (e *Event) SigningBytes() ([]byte, error) {
	var data any
	if len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, &data); err != nil {
			return nil, err
		}
	}
	return Canonical(map[string]any{
		"id": e.ID, "type": e.Type, "subject": e.Subject, "commandid": e.CommandID,
		"occurredat": e.OccurredAt.UTC().Format(time.RFC3339Nano), "actor": e.Actor, "data": data,
	})
}

// Payload decodes the event's data into its typed payload.
func (e *Event) Payload() (any, error) {
	p := NewPayload(e.Type)
	if p == nil {
		return nil, fmt.Errorf("event %s: unknown type %q", e.ID, e.Type)
	}
	if err := json.Unmarshal(e.Data, p); err != nil {
		return nil, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return p, nil
}
