package natsapi

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/handlers/httpapi"
	"qingling/projections"
)

// request is one decoded NATS request: a command, or a query with its arguments.
type request struct {
	verb   string
	actor  events.Actor
	cmd    *events.Command    // a command; nil for a query
	id     string             // show, history
	minSeq uint64             // show, list: wait until the read model has applied this seq
	filter projections.Filter // list (the query)
	params url.Values         // status: the HTTP query parameters
	sha256 string             // download
	data   []byte             // upload: the file
	name   string             // upload: its name
}

func (r *request) query() bool { return r.cmd == nil }

// HeaderEvidenceName names an uploaded file (the upload's body is the file itself).
const HeaderEvidenceName = "Qingling-Evidence-Name"

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`) // compiled once; read-only

// parseSubject splits qingling.cmd.<user>.<verb>.
func parseSubject(subject string) (user, verb string, err error) {
	t := strings.Split(subject, ".")
	if len(t) != 4 || t[0] != "qingling" || t[1] != "cmd" {
		return "", "", events.Errorf(events.KindNotFound, "no_route", "subject", "no endpoint for subject %q; use qingling.cmd.<user>.<verb>", clip(subject, 80))
	}
	return t[2], t[3], nil
}

// decodeRequest reads a request the same way the HTTP API reads its own: the user named by the
// subject is the actor (until identities exist), the body is the HTTP body plus, for an action
// and a query, the hazard "id". The verb "list" is the listing command (挂牌督办) when the body
// names a hazard id, and the hazard list query otherwise.
func decodeRequest(cat *events.Catalog, subject string, hdr nats.Header, body []byte) (*request, error) {
	user, verb, err := parseSubject(subject)
	if err != nil {
		return nil, err
	}
	if !isVerb(verb) {
		return nil, events.Errorf(events.KindNotFound, "unknown_action", "subject", "unknown verb %q; one of %s", clip(verb, 40), strings.Join(Verbs(), ", "))
	}
	who, err := httpapi.ParseActor("subject", user, hdr.Get("X-Qingling-Role"))
	if err != nil {
		return nil, err
	}
	req := &request{verb: verb, actor: who}
	if verb == VerbUpload {
		req.data, req.name = body, hdr.Get(HeaderEvidenceName)
		return req, nil
	}
	if len(body) > events.MaxCommandBody {
		return nil, events.Errorf(events.KindTooLarge, "body_too_large", "", "request body over %d bytes", events.MaxCommandBody)
	}
	if !utf8.Valid(body) {
		return nil, events.Errorf(events.KindInvalid, "invalid_utf8", "", "body is not valid UTF-8")
	}
	switch verb {
	case events.ActReport:
		req.cmd, err = events.DecodeCommand(verb, "", body)
	case VerbShow, VerbHistory:
		err = req.decodeHazardQuery(body)
	case VerbStatus:
		fields, perr := object(body, true)
		if perr != nil {
			return nil, perr
		}
		req.params, err = values(fields)
	case VerbDownload:
		var q struct {
			SHA256 string `json:"sha256"`
		}
		if _, err = object(body, false); err == nil {
			if json.Unmarshal(body, &q) != nil {
				err = events.Errorf(events.KindInvalid, "malformed_json", "", "a download request is {\"sha256\": \"<64 hex digits>\"}")
			} else if !sha256Re.MatchString(q.SHA256) {
				err = events.Errorf(events.KindInvalid, "invalid_sha256", "sha256", "a file is named by its SHA-256: 64 lowercase hex digits")
			}
		}
		req.sha256 = q.SHA256
	default:
		fields, perr := object(body, verb == events.ActList)
		switch {
		case perr != nil && verb == events.ActList:
			err = perr
		case perr != nil:
			// let the command decoder name what is wrong with the body
			if _, err = events.DecodeCommand(verb, "", body); err == nil {
				err = perr
			}
		case verb == events.ActList && fields["id"] == nil:
			err = req.decodeListQuery(cat, fields)
		default:
			req.cmd, err = decodeAction(verb, fields)
		}
	}
	if err != nil {
		return nil, err
	}
	if req.cmd != nil {
		if err := applyKey(req.cmd, hdr.Get("Idempotency-Key")); err != nil {
			return nil, err
		}
		req.cmd.Actor = who
	}
	return req, nil
}

// object reads a body that is one JSON object; an empty body is an empty object when
// emptyOK.
func object(body []byte, emptyOK bool) (map[string]json.RawMessage, error) {
	if emptyOK && len(bytes.TrimSpace(body)) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, events.Errorf(events.KindInvalid, "malformed_json", "", "the body must be one JSON object")
	}
	if dec.More() {
		return nil, events.Errorf(events.KindInvalid, "malformed_json", "", "trailing data after the JSON object")
	}
	return m, nil
}

func hazardID(raw json.RawMessage) (string, error) {
	if raw == nil {
		return "", events.Errorf(events.KindInvalid, "required", "id", "name the hazard in the body's \"id\"")
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		return "", events.Errorf(events.KindInvalid, "wrong_type", "id", "id must be a string")
	}
	if err := events.CanonicalUUID("id", id); err != nil {
		return "", err
	}
	return id, nil
}

// decodeAction takes the hazard id out of the body and decodes the rest as HTTP does.
func decodeAction(verb string, fields map[string]json.RawMessage) (*events.Command, error) {
	id, err := hazardID(fields["id"])
	if err != nil {
		return nil, err
	}
	delete(fields, "id")
	rest, err := json.Marshal(fields)
	if err != nil {
		return nil, events.Errorf(events.KindInvalid, "malformed_json", "", "the body must be one JSON object")
	}
	return events.DecodeCommand(verb, id, rest)
}

func applyKey(cmd *events.Command, key string) error {
	if key == "" {
		return nil
	}
	if err := events.CanonicalUUID("Idempotency-Key", key); err != nil {
		return err
	}
	if cmd.CommandID != "" && cmd.CommandID != key {
		return events.Errorf(events.KindInvalid, "command_id_mismatch", "command_id", "Idempotency-Key and command_id differ")
	}
	cmd.CommandID = key
	return nil
}

func (r *request) decodeHazardQuery(body []byte) error {
	var q struct {
		ID     string `json:"id"`
		MinSeq uint64 `json:"min_seq,omitempty"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
			f := strings.Trim(strings.TrimPrefix(s, "json: unknown field "), `"`)
			return events.Errorf(events.KindInvalid, "unknown_field", clip(f, 60), "unknown field %q; a %s request takes id and min_seq", clip(f, 60), r.verb)
		}
		return events.Errorf(events.KindInvalid, "malformed_json", "", "a %s request is {\"id\": \"<hazard id>\"}", r.verb)
	}
	if dec.More() {
		return events.Errorf(events.KindInvalid, "malformed_json", "", "trailing data after the JSON object")
	}
	if err := events.CanonicalUUID("id", q.ID); err != nil {
		return err
	}
	r.id, r.minSeq = q.ID, q.MinSeq
	return nil
}

// decodeListQuery turns {"sector": "mine", "limit": 50, "overdue": true} into the HTTP
// query parameters and checks them as the HTTP API does.
func (r *request) decodeListQuery(cat *events.Catalog, fields map[string]json.RawMessage) error {
	q, err := values(fields)
	if err != nil {
		return err
	}
	f, err := httpapi.ParseFilter(q, cat)
	if err != nil {
		return err
	}
	if v := q.Get("min_seq"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return events.Errorf(events.KindInvalid, "invalid_min_seq", "min_seq", "min_seq must be a stream sequence")
		}
		r.minSeq = n
	}
	r.filter = f
	return nil
}

// values turns {"sector": "mine", "limit": 50, "overdue": true} into HTTP query parameters.
func values(fields map[string]json.RawMessage) (url.Values, error) {
	q := url.Values{}
	for k, raw := range fields {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, events.Errorf(events.KindInvalid, "malformed_json", clip(k, 60), "malformed value of %q", clip(k, 60))
		}
		switch x := v.(type) {
		case string:
			q.Set(k, x)
		case bool:
			q.Set(k, strconv.FormatBool(x))
		case float64:
			q.Set(k, strconv.FormatFloat(x, 'f', -1, 64))
		default:
			return nil, events.Errorf(events.KindInvalid, "wrong_type", clip(k, 60), "%q must be a string, number or boolean", clip(k, 60))
		}
	}
	return q, nil
}

// headerSafe makes a text fit for a NATS header value: one line, bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return clip(s, 500)
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
