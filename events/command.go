package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what a command may carry.
const (
	MaxNameLen     = 200  // runes in a name-like field
	MaxTextLen     = 4000 // runes in a free-text field
	MaxEvidence    = 20
	MaxJSONDepth   = 16
	MaxClockSkew   = 5 * time.Minute
	MaxCommandBody = 64 << 10
)

// Actor is who issues a command.
type Actor struct {
	ID   string
	Role string
	User *User // the authenticated identity; nil on trusted internal paths (demo, tests without identities)
}

// Command is a decoded request to change one hazard.
type Command struct {
	Action          string
	HazardID        string // for a report: the client's id, or empty
	CommandID       string
	ExpectedVersion *int
	OccurredAt      time.Time // zero: when recorded
	Actor           Actor
	Sig             string
	Payload         any // *Reported, *Amended, ... (the event payload, before normalisation)
}

// Meta are the fields every command body may carry.
type Meta struct {
	CommandID       string `json:"command_id,omitempty"`
	ExpectedVersion *int   `json:"expected_version,omitempty"`
	OccurredAt      string `json:"occurred_at,omitempty"`
	Sig             string `json:"sig,omitempty"`
}

type reportBody struct {
	Meta
	ID string `json:"id,omitempty"`
	Reported
}

// DecodeCommand parses a command body strictly: one JSON object, known fields only,
// bounded depth. hazardID is empty for a report.
func DecodeCommand(action, hazardID string, body []byte) (*Command, error) {
	if ActionType(action) == "" {
		return nil, Errorf(KindNotFound, "unknown_action", "action", "unknown action %q", clip(action, 40))
	}
	if len(body) > MaxCommandBody {
		return nil, Errorf(KindTooLarge, "body_too_large", "", "command body over %d bytes", MaxCommandBody)
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	cmd := &Command{Action: action, HazardID: hazardID}
	var meta *Meta
	var p any
	if action == ActReport {
		var r reportBody
		if err := strictUnmarshal(body, &r); err != nil {
			return nil, err
		}
		meta, cmd.HazardID, p = &r.Meta, r.ID, &r.Reported
	} else {
		p = NewPayload(ActionType(action))
		m := &Meta{}
		if err := decodeActionBody(body, m, p); err != nil {
			return nil, err
		}
		meta = m
	}
	cmd.Payload = p
	cmd.CommandID, cmd.ExpectedVersion, cmd.Sig = meta.CommandID, meta.ExpectedVersion, meta.Sig
	if cmd.CommandID != "" {
		if err := CanonicalUUID("command_id", cmd.CommandID); err != nil {
			return nil, err
		}
	}
	if cmd.HazardID != "" {
		if err := CanonicalUUID("id", cmd.HazardID); err != nil {
			return nil, err
		}
	}
	if cmd.ExpectedVersion != nil && *cmd.ExpectedVersion < 1 {
		return nil, invalid("expected_version", "expected_version must be at least 1")
	}
	if meta.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, meta.OccurredAt)
		if err != nil {
			return nil, invalid("occurred_at", "occurred_at must be an RFC 3339 time with offset, e.g. 2025-03-02T09:30:00+08:00")
		}
		cmd.OccurredAt = t
	}
	return cmd, nil
}

// decodeActionBody decodes meta and payload fields from one object, refusing unknown fields.
func decodeActionBody(body []byte, m *Meta, p any) error {
	var raw map[string]json.RawMessage
	if err := strictUnmarshal(body, &raw); err != nil {
		return err
	}
	metaRaw, payloadRaw := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	for k, v := range raw {
		switch k {
		case "command_id", "expected_version", "occurred_at", "sig":
			metaRaw[k] = v
		default:
			payloadRaw[k] = v
		}
	}
	mb, _ := json.Marshal(metaRaw)
	if err := strictUnmarshal(mb, m); err != nil {
		return err
	}
	pb, _ := json.Marshal(payloadRaw)
	return strictUnmarshal(pb, p)
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(KindInvalid, "malformed_json", "", "trailing data after the JSON object")
	}
	return nil
}

func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return Errorf(KindInvalid, "malformed_json", "", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		// encoding/json names embedded structs in the path (Reported.site.name); the client
		// knows only its own field names.
		f := strings.TrimPrefix(strings.TrimPrefix(typ.Field, "Meta."), "Reported.")
		if f == "" {
			return Errorf(KindInvalid, "wrong_type", "", "the body must be a JSON object, not %s", typ.Value)
		}
		return Errorf(KindInvalid, "wrong_type", f, "field %q must be %s, not %s", f, typ.Type, typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(KindInvalid, "malformed_json", "", "truncated or empty JSON body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Errorf(KindInvalid, "unknown_field", f, "unknown field %q", clip(f, 60))
	}
	return Errorf(KindInvalid, "malformed_json", "", "%s", clip(err.Error(), 200))
}

// checkJSON refuses invalid UTF-8 and nesting deeper than MaxJSONDepth before decoding.
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return Errorf(KindInvalid, "invalid_utf8", "", "body is not valid UTF-8")
	}
	depth, inStr, esc := 0, false, false
	for _, c := range b {
		switch {
		case inStr:
			if esc {
				esc = false
			} else if c == '\\' {
				esc = true
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
			if depth > MaxJSONDepth {
				return Errorf(KindInvalid, "too_deep", "", "JSON nested deeper than %d", MaxJSONDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// text normalises a free-text or name field: trimmed, valid UTF-8, capped, and free of
// control characters (names allow none; multi-line text allows newline and tab).
func text(field, s string, max int, multiline bool) (string, *Error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", invalid(field, "%s is not valid UTF-8", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", Errorf(KindInvalid, "too_long", field, "%s has %d characters, at most %d allowed", field, n, max)
	}
	for _, r := range s {
		if (unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t'))) || r == '\u2028' || r == '\u2029' || r == utf8.RuneError {
			return "", Errorf(KindInvalid, "control_character", field, "%s contains a control character (U+%04X)", field, r)
		}
	}
	return s, nil
}

func required(field, s string, max int, multiline bool) (string, *Error) {
	s, err := text(field, s, max, multiline)
	if err == nil && s == "" {
		err = Errorf(KindInvalid, "required", field, "%s is required", field)
	}
	return s, err
}

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`) // compiled once; read-only

func evidence(list []Evidence) ([]Evidence, *Error) {
	if len(list) > MaxEvidence {
		return nil, Errorf(KindInvalid, "too_many", "evidence", "at most %d evidence files per event", MaxEvidence)
	}
	for i := range list {
		f := fmt.Sprintf("evidence[%d]", i)
		if !sha256Re.MatchString(list[i].SHA256) {
			return nil, invalid(f+".sha256", "%s.sha256 must be 64 lowercase hex digits", f)
		}
		n, err := text(f+".name", list[i].Name, MaxNameLen, false)
		if err != nil {
			return nil, err
		}
		list[i].Name = n
	}
	return list, nil
}

// ParseDeadline reads an RFC 3339 time, or a bare date meaning the end of that day in
// Asia/Shanghai, and returns the RFC 3339 instant.
func ParseDeadline(field, s string) (time.Time, *Error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation("2006-01-02", s, Shanghai); err == nil {
		return t.AddDate(0, 0, 1).Add(-time.Nanosecond), nil
	}
	// The instant must stay writable by FormatInstant as RFC 3339 (a four-digit year in Shanghai).
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil && t.In(Shanghai).Year() >= 1 && t.In(Shanghai).Year() <= 9999 {
		return t, nil
	}
	return time.Time{}, invalid(field, "%s must be a date (2025-04-30) or an RFC 3339 time", field)
}

// FormatInstant is how instants are written into event data.
func FormatInstant(t time.Time) string { return t.In(Shanghai).Format(time.RFC3339Nano) }

// ValidCreditCode checks a unified social credit code (GB 32100-2015), checksum included.
func ValidCreditCode(s string) bool {
	const chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	weights := [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}
	if len(s) != 18 {
		return false
	}
	sum := 0
	for i := 0; i < 17; i++ {
		v := strings.IndexByte(chars, s[i])
		if v < 0 {
			return false
		}
		sum += v * weights[i]
	}
	return s[17] == chars[(31-sum%31)%31]
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
