package events_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"qingling/events"
)

// canon parses JSON text as SigningBytes does (numbers as float64) and canonicalises it.
func canon(t *testing.T, in string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatalf("parse %s: %v", in, err)
	}
	b, err := events.Canonical(v)
	if err != nil {
		t.Fatalf("Canonical(%s): %v", in, err)
	}
	return string(b)
}

// RFC 8785 §3.2.2: the example of the whole transformation.
func TestJCSRFC8785Example(t *testing.T) {
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	want := `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`
	if got := canon(t, in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// RFC 8785 §3.2.3: property sorting by UTF-16 code units.
func TestJCSSortingUTF16(t *testing.T) {
	in := `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`
	want := "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\"," +
		"\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"
	if got := canon(t, in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16 although after it in UTF-8
	// and in code points; Chinese keys sort by their code units.
	if got := canon(t, `{"\ufb33":1,"😀":2,"乙":3,"甲":4,"a":5,"B":6,"":7}`); got != "{\"\":7,\"B\":6,\"a\":5,\"乙\":3,\"甲\":4,\"😀\":2,\"\ufb33\":1}" {
		t.Fatalf("got %s", got)
	}
	// Nested objects are sorted too; arrays keep their order.
	if got := canon(t, `{"b":{"z":1,"y":[3,{"d":1,"c":2}]},"a":[]}`); got != `{"a":[],"b":{"y":[3,{"c":2,"d":1}],"z":1}}` {
		t.Fatalf("got %s", got)
	}
}

// RFC 8785 Appendix B: number serialisation, by IEEE 754 bit pattern.
func TestJCSNumbers(t *testing.T) {
	cases := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"}, // -0
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, c := range cases {
		f := math.Float64frombits(c.bits)
		b, err := events.Canonical(f)
		if err != nil || string(b) != c.want {
			t.Errorf("%016x (%v): got %s %v, want %s", c.bits, f, b, err, c.want)
		}
	}
	more := []struct {
		in   float64
		want string
	}{
		{1e21, "1e+21"}, {1e-7, "1e-7"}, {0.000001, "0.000001"}, {1e20, "100000000000000000000"},
		{333333333.33333329, "333333333.3333333"}, {4.50, "4.5"}, {-1, "-1"}, {100, "100"}, {0.1, "0.1"},
		{24.92, "24.92"}, {102.48, "102.48"}, {math.Copysign(0, -1), "0"},
	}
	for _, c := range more {
		if b, err := events.Canonical(c.in); err != nil || string(b) != c.want {
			t.Errorf("%v: got %s %v, want %s", c.in, b, err, c.want)
		}
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := events.Canonical([]any{bad}); err == nil {
			t.Errorf("Canonical(%v) accepted", bad)
		}
	}
	// -0 as text, in data, comes out as 0.
	if got := canon(t, `{"lat":-0,"lon":-0.0,"n":[-0e5]}`); got != `{"lat":0,"lon":0,"n":[0]}` {
		t.Errorf("negative zero: %s", got)
	}
	// Other Go number forms.
	for _, c := range []struct {
		v    any
		want string
	}{
		{7, "7"}, {-12, "-12"}, {json.Number("1E30"), "1e+30"}, {json.Number("4.50"), "4.5"}, {json.Number("-0"), "0"},
	} {
		if b, err := events.Canonical(c.v); err != nil || string(b) != c.want {
			t.Errorf("%#v: got %s %v, want %s", c.v, b, err, c.want)
		}
	}
	if _, err := events.Canonical(json.Number("1e400")); err == nil {
		t.Error("json.Number out of range accepted")
	}
}

func TestJCSStrings(t *testing.T) {
	cases := []struct{ in, want string }{
		{"\u001f", `"\u001f"`},
		{"\x00\x01\x07\x0b\x0e\x1b", `"\u0000\u0001\u0007\u000b\u000e\u001b"`},
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{`"\`, `"\"\\"`},
		{"<>&", `"<>&"`},
		{"/", `"/"`},
		{"\x7f", "\"\x7f\""},
		{"\u2028\u2029", "\"\u2028\u2029\""},
		{"安宁化工 ö € 😀", `"安宁化工 ö € 😀"`},
		{"", `""`},
	}
	for _, c := range cases {
		b, err := events.Canonical(c.in)
		if err != nil || string(b) != c.want {
			t.Errorf("Canonical(%q) = %s %v, want %s", c.in, b, err, c.want)
		}
		// The canonical text is JSON that reads back to the same string.
		var back string
		if err := json.Unmarshal(b, &back); err != nil || back != c.in {
			t.Errorf("%s reads back as %q, %v", b, back, err)
		}
	}
	// Keys are escaped the same way.
	if got := canon(t, `{"a\u001fb":"<&>"}`); got != `{"a\u001fb":"<&>"}` {
		t.Errorf("key escaping: %s", got)
	}
	if got := canon(t, `[true,false,null,"x",[],{}]`); got != `[true,false,null,"x",[],{}]` {
		t.Errorf("literals: %s", got)
	}
	if _, err := events.Canonical(struct{}{}); err == nil {
		t.Error("Canonical accepted a struct")
	}
	if _, err := events.Canonical(map[string]any{"a": []any{int64(1)}}); err == nil {
		t.Error("Canonical accepted an int64")
	}
}

func TestJCSIdempotent(t *testing.T) {
	in := `{"z":[1,2.50,{"b":"\u00e9","a":null}],"é":"x","a\u0000":"\t","big":1e21,"neg":-0.5}`
	first := canon(t, in)
	if second := canon(t, first); second != first {
		t.Fatalf("canonical form not stable:\n%s\n%s", first, second)
	}
}

// TestSigningBytes checks the signed fields, their canonical form, and that they survive
// storage and any re-encoding of the envelope or the data.
func TestSigningBytes(t *testing.T) {
	w := newWorld(t)
	_, e, err := w.try(events.ActReport, inspector, withFields(t, reportMajor, map[string]any{"evidence": evidenceList(2), "occurred_at": "2025-03-10T09:30:00+08:00"}))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := e.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	var signed map[string]any
	if err := json.Unmarshal(sb, &signed); err != nil {
		t.Fatalf("signing bytes are not JSON: %v", err)
	}
	keys := []string{"actor", "commandid", "data", "id", "occurredat", "subject", "type"}
	if len(signed) != len(keys) {
		t.Fatalf("signed fields %v", signed)
	}
	for _, k := range keys {
		if _, ok := signed[k]; !ok {
			t.Fatalf("%q not signed", k)
		}
	}
	if !bytes.HasPrefix(sb, []byte(`{"actor":"insp-1","commandid":"`)) || signed["occurredat"] != "2025-03-10T01:30:00Z" || signed["id"] != e.ID || signed["subject"] != e.Subject {
		t.Fatalf("signing bytes %s", sb)
	}
	if again, _ := events.Canonical(signed); !bytes.Equal(again, sb) {
		t.Fatal("signing bytes are not canonical")
	}

	// Stable across Marshal → ParseEvent → Marshal.
	raw, _ := e.Marshal()
	stored, err := events.ParseEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := stored.Marshal()
	if !bytes.Equal(raw, raw2) {
		t.Fatalf("re-marshal changed the stored bytes:\n%s\n%s", raw, raw2)
	}
	stored2, _ := events.ParseEvent(raw2)
	for _, x := range []*events.Event{stored, stored2} {
		if b, err := x.SigningBytes(); err != nil || !bytes.Equal(b, sb) {
			t.Fatalf("signing bytes changed after storage: %s %v", b, err)
		}
	}

	// Unaffected by the data's key order and whitespace, the occurredat zone, and the unsigned
	// envelope fields.
	var data any
	_ = json.Unmarshal(e.Data, &data)
	indented, _ := json.MarshalIndent(data, "", "   ")
	v := *e
	v.Data = indented
	v.OccurredAt = e.OccurredAt.UTC()
	v.Time = e.Time.Add(time.Hour)
	v.Source, v.PrevHash, v.Sig, v.ActorRole, v.DataContentType = "qingling/field-7", strings.Repeat("0", 64), "xx", "admin", "text/json"
	if b, err := v.SigningBytes(); err != nil || !bytes.Equal(b, sb) {
		t.Fatalf("signing bytes depend on unsigned presentation:\n%s\n%s", b, sb)
	}

	// Changed by every signed field.
	mutations := map[string]func(x *events.Event){
		"id":         func(x *events.Event) { x.ID = absentID },
		"type":       func(x *events.Event) { x.Type = events.TypeAmended },
		"subject":    func(x *events.Event) { x.Subject = absentID },
		"commandid":  func(x *events.Event) { x.CommandID = absentID },
		"occurredat": func(x *events.Event) { x.OccurredAt = x.OccurredAt.Add(time.Nanosecond) },
		"actor":      func(x *events.Event) { x.Actor = "insp-2" },
		"data":       func(x *events.Event) { x.Data = bytes.Replace(x.Data, []byte("530181"), []byte("530102"), 1) },
	}
	for name, mut := range mutations {
		x := *e
		mut(&x)
		if b, err := x.SigningBytes(); err != nil || bytes.Equal(b, sb) {
			t.Errorf("changing %s does not change the signing bytes (%v)", name, err)
		}
	}

	// An ed25519 signature over them verifies after storage and fails on tampering.
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	sig := ed25519.Sign(key, sb)
	storedSB, _ := stored.SigningBytes()
	if !ed25519.Verify(key.Public().(ed25519.PublicKey), storedSB, sig) {
		t.Fatal("signature does not verify on the stored event")
	}
	tampered := *stored
	tampered.Actor = "insp-2"
	tsb, _ := tampered.SigningBytes()
	if ed25519.Verify(key.Public().(ed25519.PublicKey), tsb, sig) {
		t.Fatal("signature verifies on a tampered event")
	}

	// No data and bad data.
	empty := *e
	empty.Data = nil
	if b, err := empty.SigningBytes(); err != nil || !bytes.Contains(b, []byte(`"data":null`)) {
		t.Errorf("nil data: %s %v", b, err)
	}
	broken := *e
	broken.Data = json.RawMessage(`{"a":`)
	if _, err := broken.SigningBytes(); err == nil {
		t.Error("broken data signed")
	}
}
