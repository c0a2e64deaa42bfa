package projections

import (
	"hash/maphash"
	"unsafe"
)

// wordTable holds the index's strings, each once, numbered from 1 (0 is ""), without a pointer
// per string for the collector to scan: the bytes in chunks that never move, each word's
// place as a number, the lookup an open-addressing table of numbers. A log of 10M events holds
// 10–15M distinct strings (sites, names, people); as a []string and a map[string]uint32 they
// were 30M pointers that every collection scanned.
type wordTable struct {
	chunks [][]byte          // the bytes; full chunks are never written again
	at     []uint64          // word n (from 1) is at[n-1]: chunk<<40 | offset<<20 | length
	big    map[uint32]string // words of 1 MiB and more (only a log not written by Qingling has one)
	slots  []uint64          // hash (low 32 bits)<<32 | word number; 0 = empty
	seed   maphash.Seed
}

const (
	wordChunk  = 1 << 20
	wordBigLen = 1<<20 - 1 // the length field's all-ones: the word is in big
)

func newWordTable() wordTable {
	return wordTable{seed: maphash.MakeSeed(), slots: make([]uint64, 1024)}
}

// count is how many words the table holds ("" aside).
func (t *wordTable) count() int { return len(t.at) }

// get is word n, viewing the table's bytes.
func (t *wordTable) get(n uint32) string {
	if n == 0 {
		return ""
	}
	a := t.at[n-1]
	c, off, ln := a>>40, a>>20&(wordChunk-1), a&(wordChunk-1)
	if ln == wordBigLen {
		return t.big[n]
	}
	return unsafe.String(&t.chunks[c][off], ln)
}

// num is s's number, adding a copy of s (which may view an event's bytes) when new.
func (t *wordTable) num(s string) uint32 {
	if s == "" {
		return 0
	}
	h := maphash.String(t.seed, s)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := t.slots[i]
		if e == 0 {
			break
		}
		if uint32(e>>32) == uint32(h) && t.get(uint32(e)) == s {
			return uint32(e)
		}
	}
	n := t.add(s)
	if len(t.at)+1 > len(t.slots)*7/10 {
		t.grow()
	}
	t.insert(uint32(h), n)
	return n
}

// add stores a copy of s as the next word.
func (t *wordTable) add(s string) uint32 {
	n := uint32(len(t.at) + 1)
	if len(s) >= wordBigLen {
		if t.big == nil {
			t.big = map[uint32]string{}
		}
		t.big[n] = string([]byte(s))
		t.at = append(t.at, wordBigLen)
		return n
	}
	last := len(t.chunks) - 1
	if last < 0 || len(t.chunks[last])+len(s) > cap(t.chunks[last]) {
		t.chunks = append(t.chunks, make([]byte, 0, max(wordChunk/16, min(wordChunk, 16*len(s)))))
		last++
	}
	ch := t.chunks[last]
	off := len(ch)
	t.chunks[last] = append(ch, s...)
	t.at = append(t.at, uint64(last)<<40|uint64(off)<<20|uint64(len(s)))
	return n
}

// insert puts word n, of hash h, in the lookup table (which has room).
func (t *wordTable) insert(h uint32, n uint32) {
	mask := uint64(len(t.slots) - 1)
	i := uint64(h) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = uint64(h)<<32 | uint64(n)
}

// grow doubles the lookup table.
func (t *wordTable) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	for _, e := range old {
		if e != 0 {
			t.insert(uint32(e>>32), uint32(e))
		}
	}
}
