package projections

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/uuid"

	"qingling/events"
)

// TestSlotCompact guards the index's memory: a hazard is kept in 224 bytes without a pointer
// (the collector never scans the hazards).
func TestSlotCompact(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n > 224 {
		t.Fatalf("slot is %d bytes, at most 224 expected", n)
	}
	var walk func(reflect.Type) bool
	walk = func(ty reflect.Type) bool {
		switch ty.Kind() {
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			return true
		case reflect.Array:
			return walk(ty.Elem())
		case reflect.Struct:
			for i := range ty.NumField() {
				if walk(ty.Field(i).Type) {
					return true
				}
			}
		}
		return false
	}
	if walk(reflect.TypeFor[slot]()) {
		t.Fatal("slot holds a pointer")
	}
}

// TestIDSpellings: canonical and idView spell an id as uuid does, and canonical refuses any
// other spelling.
func TestIDSpellings(t *testing.T) {
	x := NewIndex(nil)
	for range 100 {
		u := uuid.New()
		got, ok := events.ParseCanonicalUUID(u.String())
		if !ok || got != u {
			t.Fatalf("ParseCanonicalUUID(%s) = %v %v", u, got, ok)
		}
		x.all = append(x.all, slot{id: u})
		var buf [36]byte
		if v := x.idView(uint32(len(x.all)-1), &buf); v != u.String() {
			t.Fatalf("idView %s, want %s", v, u)
		}
	}
	u := uuid.New().String()
	for _, odd := range []string{strings.ToUpper(u), "{" + u + "}", u[:35], u + "0", strings.ReplaceAll(u, "-", "_"), "urn:uuid:" + u, ""} {
		if _, ok := events.ParseCanonicalUUID(odd); ok {
			t.Fatalf("canonical accepted %q", odd)
		}
	}
}
