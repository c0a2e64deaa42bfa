package projections

import "qingling/events"

// DecodeFast exposes the replay's decoder to the external tests.
func DecodeFast(raw []byte) (*events.Event, any, error) { return newDecoder().decode(raw) }
