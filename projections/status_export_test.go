package projections

import "qingling/events"

// DecodeFast exposes the replay's decoder to the external tests.
func DecodeFast(raw []byte) (*events.Event, any, error) { return newDecoder().decode(raw) }

// Slots is how many hazard slots x holds and has room for.
func Slots(x *Index) (n, room int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.all), cap(x.all)
}
