package events

import (
	"encoding/json"
	"time"
)

// Instant is a point in time as Unix nanoseconds, 0 for none. The hazard index keeps its
// times as instants: a third of a time.Time, and nothing for the collector to scan.
type Instant int64

// InstantOf is t as an Instant; the zero time is 0.
func InstantOf(t time.Time) Instant {
	if t.IsZero() {
		return 0
	}
	return Instant(t.UnixNano())
}

// Time is the instant in Asia/Shanghai; 0 is the zero time.
func (i Instant) Time() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(i)).In(Shanghai)
}

// IsZero reports whether the instant is unset.
func (i Instant) IsZero() bool { return i == 0 }

// Before reports whether i is before t (an unset instant is before every time but the zero one).
func (i Instant) Before(t time.Time) bool { return i.Time().Before(t) }

// After reports whether i is after t.
func (i Instant) After(t time.Time) bool { return i.Time().After(t) }

// Equal reports whether i and t are the same instant.
func (i Instant) Equal(t time.Time) bool { return i.Time().Equal(t) }

// String is the instant as FormatInstant writes it.
func (i Instant) String() string {
	if i == 0 {
		return "0001-01-01T00:00:00Z" // as the zero time.Time writes itself
	}
	return FormatInstant(i.Time())
}

// MarshalJSON writes the instant as FormatInstant does (RFC 3339 in Asia/Shanghai).
func (i Instant) MarshalJSON() ([]byte, error) {
	if i == 0 {
		return time.Time{}.MarshalJSON()
	}
	return json.Marshal(FormatInstant(i.Time()))
}

// UnmarshalJSON reads an RFC 3339 time (null leaves the instant as it is).
func (i *Instant) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var t time.Time
	if err := t.UnmarshalJSON(b); err != nil {
		return err
	}
	*i = InstantOf(t)
	return nil
}
