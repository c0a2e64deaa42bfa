package jsstore

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// natsMeta is nats.go's reading of an ack subject, the reference for ackMeta.
func natsMeta(reply string) (seq uint64, ts int64, pending uint64, ok bool) {
	m, err := (&nats.Msg{Reply: reply, Sub: &nats.Subscription{}}).Metadata()
	if err != nil {
		return 0, 0, 0, false
	}
	return m.Sequence.Stream, m.Timestamp.UnixNano(), m.NumPending, true
}

var ackSeeds = []string{
	"$JS.ACK.HAZARDS.c1.1.42.17.1764590000123456789.9",
	"$JS.ACK._.ABCDEFG.HAZARDS.c1.1.42.17.1764590000123456789.9.XyZ",
	"$JS.ACK.hub.ABCDEFG.HAZARDS.c1.3.18446744073709551615.2.1.0",
	"$JS.ACK.hub.ABCDEFG.HAZARDS.c1.3.7.2.1.0",
	"$JS.ACK.hub.ABCDEFG.HAZARDS.c1.3.7.2.1.0.tok.more",
	"$JS.ACK.HAZARDS.c1.1.42.17.1764590000123456789",
	"$JS.ACK.HAZARDS.c1.1.42.17.1764590000123456789.9.x",
	"$JS.ACK.HAZARDS.c1.1.4x2.17.1764590000123456789.9",
	"$JS.ACK.HAZARDS.c1.1..17.1764590000123456789.9",
	"$JS.ACK.HAZARDS.c1.1.18446744073709551616.17.1.9",
	"$JS.ACK.HAZARDS.c1.1.1.17.9223372036854775808.9",
	"$JS.NAK.HAZARDS.c1.1.42.17.1764590000123456789.9",
	"_INBOX.abc",
	"",
}

// TestAckMeta: the sequence, time and pending read from each form of ack subject, and a
// refusal of anything else.
func TestAckMeta(t *testing.T) {
	for _, c := range []struct {
		reply        string
		seq, pending uint64
		ts           int64
		ok           bool
	}{
		{ackSeeds[0], 42, 9, 1764590000123456789, true},
		{ackSeeds[1], 42, 9, 1764590000123456789, true},
		{ackSeeds[2], 18446744073709551615, 0, 1, true},
		{ackSeeds[4], 7, 0, 1, true},
		{ackSeeds[5], 0, 0, 0, false}, // 8 tokens
		{ackSeeds[6], 0, 0, 0, false}, // 10
		{ackSeeds[7], 0, 0, 0, false},
		{ackSeeds[8], 0, 0, 0, false},
		{ackSeeds[9], 0, 0, 0, false}, // overflows
		{ackSeeds[10], 0, 0, 0, false},
		{ackSeeds[11], 0, 0, 0, false},
		{ackSeeds[12], 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		seq, ts, pending, ok := ackMeta(c.reply)
		if seq != c.seq || ts != c.ts || pending != c.pending || ok != c.ok {
			t.Errorf("ackMeta(%q) = %d %d %d %v, want %d %d %d %v", c.reply, seq, ts, pending, ok, c.seq, c.ts, c.pending, c.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ackMeta(ackSeeds[1]) }); n != 0 {
		t.Fatalf("ackMeta allocates %.0f times", n)
	}
}

// FuzzAckMeta: wherever ackMeta reads a subject, nats.go's parser reads the same numbers.
func FuzzAckMeta(f *testing.F) {
	for _, s := range ackSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		seq, ts, pending, ok := ackMeta(reply)
		if !ok {
			return
		}
		rs, rt, rp, rok := natsMeta(reply)
		if !rok || rs != seq || rt != ts || rp != pending {
			t.Fatalf("%q: ackMeta %d %d %d, nats.go %d %d %d (%v)", reply, seq, ts, pending, rs, rt, rp, rok)
		}
	})
}
