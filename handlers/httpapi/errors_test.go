package httpapi_test

import (
	"testing"

	"qingling/events"
	"qingling/handlers/httpapi"
)

func TestKindOfStatusInvertsTheTable(t *testing.T) {
	for k := events.KindInternal; k <= events.KindUnavailable; k++ {
		code := httpapi.StatusOf(events.Errorf(k, "x", "", "x"))
		if code == 0 {
			t.Fatalf("kind %d has no status", k)
		}
		if got := httpapi.KindOfStatus(code); got != k {
			t.Errorf("KindOfStatus(%d) = %d, want %d", code, got, k)
		}
	}
	beyond := map[int]events.Kind{
		502: events.KindUnavailable, 504: events.KindUnavailable,
		405: events.KindInvalid, 415: events.KindInvalid, 499: events.KindInvalid,
		500: events.KindInternal, 501: events.KindInternal, 200: events.KindInternal, 302: events.KindInternal, 0: events.KindInternal,
	}
	for code, want := range beyond {
		if got := httpapi.KindOfStatus(code); got != want {
			t.Errorf("KindOfStatus(%d) = %d, want %d", code, got, want)
		}
	}
}
