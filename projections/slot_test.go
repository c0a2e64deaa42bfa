package projections

import (
	"reflect"
	"testing"
	"unsafe"
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
