package events_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"qingling/events"
)

// encoderMarshal is how Event.Marshal encoded before it was written out by hand: the
// reference it must equal byte for byte.
func encoderMarshal(e *events.Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// trickyStrings holds every ASCII byte, HTML characters, line and paragraph separators,
// invalid UTF-8, and Chinese text.
func trickyStrings() []string {
	var ascii strings.Builder
	for c := range 128 {
		ascii.WriteByte(byte(c))
	}
	return []string{"", ascii.String(), `<a href="x">&amp;</a>`, "行\u2028段\u2029尾", "bad \xff\xfe utf8 \xc3", "\u00e9\u0301 \U0001F600",
		"安宁化工有限公司 储罐区防火堤破损", `back\slash "quoted"`, "\x7f\x00\x1f"}
}

func checkMarshal(t *testing.T, e *events.Event) {
	t.Helper()
	want, wantErr := encoderMarshal(e)
	got, gotErr := e.Marshal()
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%+v: Marshal err %v, encoding/json err %v", e, gotErr, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal differs from encoding/json:\n got %q\nwant %q", got, want)
	}
}

func TestMarshalEqualsEncodingJSON(t *testing.T) {
	base := events.Event{SpecVersion: "1.0", ID: events.NewID(), Source: events.DefaultSource, Type: events.TypeProgressed,
		Subject: events.NewID(), Time: time.Date(2025, 3, 10, 10, 0, 0, 123456789, events.Shanghai), DataContentType: "application/json",
		OccurredAt: time.Date(2025, 3, 10, 9, 30, 0, 0, time.UTC), Actor: "rect-1", ActorRole: "rectifier", CommandID: events.NewID(),
		PrevHash: strings.Repeat("ab", 32), Data: json.RawMessage(`{"note":"已完成一半","percent":50}`)}
	checkMarshal(t, &base)
	for _, s := range trickyStrings() {
		for field := range 9 {
			e := base
			switch field {
			case 0:
				e.SpecVersion = s
			case 1:
				e.ID = s
			case 2:
				e.Source = s
			case 3:
				e.Type = s
			case 4:
				e.Subject = s
			case 5:
				e.Actor = s
			case 6:
				e.ActorRole = s
			case 7:
				e.CommandID, e.PrevHash = s, s
			case 8:
				e.Sig = s
			}
			checkMarshal(t, &e)
		}
	}
	// Data: absent, empty (an error), spaced out, with HTML characters and escapes, and invalid.
	for _, d := range []string{"", " { \"a\" : [ 1 , 2 ] ,\n\t\"b\": \"<&>\\u2028\" } ", `"x"`, `null`, `{"a":"\u003c"}`, `{"a":`, `nope`, `{} {}`} {
		e := base
		e.Data = json.RawMessage(d)
		checkMarshal(t, &e)
		e.Data = nil
		checkMarshal(t, &e)
	}
	// Instants: zones, zero nanoseconds, the zero time, years out of range.
	for _, tm := range []time.Time{{}, time.Unix(0, 0), time.Date(2025, 1, 1, 0, 0, 0, 1000, time.FixedZone("X", -3*3600-1800)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(), time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("", 25*3600))} {
		e := base
		e.Time = tm
		checkMarshal(t, &e)
		e = base
		e.OccurredAt = tm
		checkMarshal(t, &e)
	}
}

func FuzzMarshal(f *testing.F) {
	for _, s := range trickyStrings() {
		f.Add(s, `{"note":"x"}`, int64(0))
	}
	f.Fuzz(func(t *testing.T, s, data string, nanos int64) {
		if !utf8.ValidString(data) {
			data = strings.ToValidUTF8(data, "?")
		}
		e := events.Event{SpecVersion: "1.0", ID: s, Source: s, Type: s, Subject: s, Time: time.Unix(0, nanos).In(events.Shanghai), DataContentType: s,
			OccurredAt: time.Unix(0, nanos), Actor: s, ActorRole: s, CommandID: s, PrevHash: s, Sig: s, Data: json.RawMessage(data)}
		checkMarshal(t, &e)
	})
}

func BenchmarkMarshal(b *testing.B) {
	e := events.Event{SpecVersion: "1.0", ID: events.NewID(), Source: events.DefaultSource, Type: events.TypeProgressed,
		Subject: events.NewID(), Time: time.Now(), DataContentType: "application/json", OccurredAt: time.Now(), Actor: "rect-1",
		ActorRole: "rectifier", CommandID: events.NewID(), PrevHash: strings.Repeat("ab", 32), Data: json.RawMessage(`{"note":"已完成一半","percent":50}`)}
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := encoderMarshal(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
