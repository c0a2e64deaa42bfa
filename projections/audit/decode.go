package audit

import "qingling/events"

// decoder is verify's events.Decoder: a stored event and its payload in one pass, with the
// semantics of events.ParseEvent and Event.Payload. One goroutine uses a decoder at a time.
type decoder struct{ d *events.Decoder }

func newDecoder() *decoder { return &decoder{events.NewDecoder()} }

// decode reads raw into e (which it resets) and returns its payload.
func (d *decoder) decode(raw []byte, e *events.Event) (any, error) { return d.d.Decode(raw, e) }
