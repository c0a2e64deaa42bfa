package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
	"unicode/utf8"

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
	if _, ok := ParseCanonicalUUID(s); !ok {
		return Errorf(KindInvalid, "invalid_uuid", field, "%s must be a canonical UUID (lowercase, hyphenated), got %q", field, clip(s, 60))
	}
	return nil
}

// ParseCanonicalUUID is s as a UUID when spelled canonically — lowercase and hyphenated, as
// uuid.UUID's String spells it back, what CanonicalUUID accepts — without allocating.
func ParseCanonicalUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.UUID{}, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'F' { // uuid.Parse takes capitals
			return uuid.UUID{}, false
		}
	}
	u, err := uuid.Parse(s)
	return u, err == nil
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

// Marshal encodes an event as stored: what encoding/json's Encoder writes with HTML escaping
// off, without its trailing newline (fields in struct order, omitempty as tagged, strings
// escaped as encoding/json escapes them, times in RFC 3339 with nanoseconds, data compacted),
// byte for byte, in one buffer and without reflection.
func (e *Event) Marshal() ([]byte, error) {
	b := make([]byte, 0, 256+len(e.SpecVersion)+len(e.ID)+len(e.Source)+len(e.Type)+len(e.Subject)+len(e.DataContentType)+
		len(e.Actor)+len(e.ActorRole)+len(e.CommandID)+len(e.PrevHash)+len(e.Sig)+len(e.Data))
	b = append(b, `{"specversion":`...)
	b = appendJSONString(b, e.SpecVersion)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, e.Subject)
	b = append(b, `,"time":`...)
	b, err := appendJSONTime(b, e.Time)
	if err != nil {
		return nil, err
	}
	b = append(b, `,"datacontenttype":`...)
	b = appendJSONString(b, e.DataContentType)
	b = append(b, `,"occurredat":`...)
	if b, err = appendJSONTime(b, e.OccurredAt); err != nil {
		return nil, err
	}
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, e.Actor)
	if e.ActorRole != "" {
		b = append(b, `,"actorrole":`...)
		b = appendJSONString(b, e.ActorRole)
	}
	b = append(b, `,"commandid":`...)
	b = appendJSONString(b, e.CommandID)
	b = append(b, `,"prevhash":`...)
	b = appendJSONString(b, e.PrevHash)
	if e.Sig != "" {
		b = append(b, `,"sig":`...)
		b = appendJSONString(b, e.Sig)
	}
	b = append(b, `,"data":`...)
	if e.Data == nil {
		b = append(b, "null"...)
	} else {
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, e.Data); err != nil {
			return nil, &json.MarshalerError{Type: reflect.TypeFor[json.RawMessage](), Err: err}
		}
		b = buf.Bytes()
	}
	return append(b, '}'), nil
}

// appendJSONTime appends t as encoding/json writes a time.Time (its MarshalJSON).
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, &json.MarshalerError{Type: reflect.TypeFor[time.Time](), Err: fmt.Errorf("Time.MarshalJSON: %w", err)}
	}
	return append(b, '"'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes it with HTML escaping off:
// '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX, U+2028 and U+2029
// as \u2028 and \u2029, invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
