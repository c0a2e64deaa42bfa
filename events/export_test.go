package events

// DecodeMarshalled exposes the decoder's first way to the external tests.
func DecodeMarshalled(raw []byte, e *Event) any { return decodeMarshalled(raw, e, false) }
