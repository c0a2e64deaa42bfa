package audit

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"qingling/events"
)

func TestEventIDAsEvents(t *testing.T) {
	for i := 0; i < 200; i++ {
		h, c := events.NewID(), events.NewID()
		if i%7 == 0 {
			c = strings.Repeat("x", i)
		}
		if got, want := eventID(uuid.MustParse(h), c), events.EventID(h, c); got != want {
			t.Fatalf("eventID(%s, %q) = %s, events.EventID %s", h, c, got, want)
		}
	}
}
