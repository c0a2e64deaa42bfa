package jsstore

import "strings"

// ackMeta is what Follow needs of a JetStream message's ack subject (its reply): the stream
// sequence, the time stored (Unix nanoseconds) and the messages still pending. nats.go's
// Msg.Metadata gives the same, with an allocation and a split of every token; a replay reads
// a million of them.
//
// The two forms (as nats.go's parser reads them):
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>                     (9 tokens)
//	$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<more>…]  (11 or more)
func ackMeta(reply string) (seq uint64, ts int64, pending uint64, ok bool) {
	const prefix = "$JS.ACK."
	if !strings.HasPrefix(reply, prefix) {
		return 0, 0, 0, false
	}
	var at [9]int // where the tokens after the prefix begin (the first 9)
	n, start := 0, len(prefix)
	for i := len(prefix); ; i++ {
		if i < len(reply) && reply[i] != '.' {
			continue
		}
		if n < len(at) {
			at[n] = start
		}
		n++
		if i == len(reply) {
			break
		}
		start = i + 1
	}
	var base int // where <delivered> is among them
	switch tokens := n + 2; {
	case tokens == 9:
		base = 2
	case tokens >= 11:
		base = 4
	default:
		return 0, 0, 0, false
	}
	num := func(k int) (uint64, bool) {
		s := reply[at[k]:]
		if j := strings.IndexByte(s, '.'); j >= 0 {
			s = s[:j]
		}
		if s == "" {
			return 0, false
		}
		var v uint64
		for i := 0; i < len(s); i++ {
			c := uint64(s[i] - '0')
			if c > 9 || v > (1<<64-1-c)/10 {
				return 0, false
			}
			v = v*10 + c
		}
		return v, true
	}
	seq, ok1 := num(base + 1)
	t, ok2 := num(base + 3)
	pending, ok3 := num(base + 4)
	if !ok1 || !ok2 || !ok3 || t > 1<<63-1 {
		return 0, 0, 0, false
	}
	return seq, int64(t), pending, true
}
