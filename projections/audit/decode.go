package audit

import (
	"encoding/json"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"qingling/events"
)

// v1 makes encoding/json/v2 read exactly what encoding/json (events.ParseEvent) reads: names
// matched without regard to case, the last of duplicate names, invalid UTF-8 replaced.
var v1 = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) // read-only

// envelope is events.Event with data kept raw (a slice of the stored bytes).
type envelope struct {
	events.Event
	Data jsontext.Value `json:"data"`
}

// decode reads a stored event and its payload about twice as fast as events.ParseEvent and
// Event.Payload, with their semantics; whatever it does not take (and every error, for its
// message) goes to them. e.Data aliases raw.
func decode(raw []byte) (*events.Event, any, error) {
	var env envelope
	if jsonv2.Unmarshal(raw, &env, v1) == nil && env.SpecVersion == "1.0" && env.Type != "" && env.Subject != "" {
		if p := events.NewPayload(env.Type); p != nil && jsonv2.Unmarshal(env.Data, p, v1) == nil {
			e := env.Event
			e.Data = json.RawMessage(env.Data)
			return &e, p, nil
		}
	}
	e, err := events.ParseEvent(raw)
	if err != nil {
		return nil, nil, err
	}
	p, err := e.Payload()
	return e, p, err
}
