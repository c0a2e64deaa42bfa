package projections

import (
	"fmt"
	"strings"
	"testing"
)

// TestWordTable: each string once, the same number for the same bytes whatever they view, the
// table's own copy (the bytes looked up may change after), through growth of the lookup and
// of the chunks, and a word of a megabyte.
func TestWordTable(t *testing.T) {
	w := newWordTable()
	if w.num("") != 0 || w.get(0) != "" || w.count() != 0 {
		t.Fatal("the empty string is word 0")
	}
	const n = 200_000
	buf := []byte("site-0000000")
	nums := make([]uint32, n)
	for i := range n {
		copy(buf[5:], fmt.Sprintf("%07d", i))
		nums[i] = w.num(string(buf)) // a fresh string each time, as a replay's view would be
	}
	for i := range buf {
		buf[i] = 'x'
	}
	if w.count() != n {
		t.Fatalf("%d words for %d strings", w.count(), n)
	}
	for i := range n {
		s := fmt.Sprintf("site-%07d", i)
		if got := w.get(nums[i]); got != s {
			t.Fatalf("word %d is %q, want %q", nums[i], got, s)
		}
		if again := w.num(s); again != nums[i] {
			t.Fatalf("%q numbered %d, then %d", s, nums[i], again)
		}
	}
	if w.count() != n {
		t.Fatalf("looking up known strings added words: %d", w.count())
	}
	big := strings.Repeat("大", wordChunk/3+1) // more than a chunk holds
	b := w.num(big)
	if w.get(b) != big || w.num(big) != b || w.num(big[:len(big)-3]) == b {
		t.Fatal("a word of a megabyte")
	}
	if len(w.chunks) < 2 || len(w.slots) < 2*n {
		t.Fatalf("%d chunks, %d slots: the test did not reach the growth it meant to", len(w.chunks), len(w.slots))
	}
	// what get returns stays the same bytes (sameString compares the pointers)
	if p, q := w.get(nums[7]), w.get(nums[7]); !sameString(p, q) {
		t.Fatal("get answers a word at two places")
	}
}
