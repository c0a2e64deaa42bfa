package events_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"qingling/events"
)

// storedSample is every event type as stored: each action tried on a hazard of each status.
func storedSample(tb testing.TB) [][]byte {
	var raws [][]byte
	for _, grade := range []string{events.GradeGeneral, events.GradeMajor} {
		for _, st := range allStatuses[1:] {
			for _, action := range events.Actions[1:] {
				w := build(tb, st, grade)
				_, e, err := w.try(action, actorFor(action), defaultBody(w, action, grade))
				if err == nil {
					w.apply(e)
				}
				raws = append(raws, w.raws...)
			}
		}
	}
	return raws
}

// decodeBoth decodes raw with a Decoder, and a view decoder, and with ParseEvent + Payload and
// says how they differ.
func decodeBoth(raw []byte) string {
	if d := decodeWith(events.NewDecoder(), raw); d != "" {
		return d
	}
	return decodeWith(events.NewViewDecoder(), raw)
}

func decodeWith(d *events.Decoder, raw []byte) string {
	e1 := &events.Event{}
	p1, err1 := d.Decode(raw, e1)
	e2, err2 := events.ParseEvent(raw)
	var p2 any
	if err2 == nil {
		p2, err2 = e2.Payload()
	}
	switch {
	case (err1 == nil) != (err2 == nil):
		return "errors differ: decoder " + errString(err1) + ", encoding/json " + errString(err2)
	case err1 != nil:
		return ""
	}
	d1, d2 := e1.Data, e2.Data
	e1.Data, e2.Data = nil, nil
	if !reflect.DeepEqual(e1, e2) || !reflect.DeepEqual(p1, p2) {
		b1, _ := json.Marshal([]any{e1, p1})
		b2, _ := json.Marshal([]any{e2, p2})
		return "decoded differently: " + string(b1) + " vs " + string(b2)
	}
	var x, y any
	_ = json.Unmarshal(d1, &x)
	_ = json.Unmarshal(d2, &y)
	if !reflect.DeepEqual(x, y) {
		return "data " + string(d1) + " vs " + string(d2)
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestDecoderAsParseEvent: the Decoder reads every stored type, and every odd spelling, as
// ParseEvent and Payload do; what Marshal writes takes the hand-read way.
func TestDecoderAsParseEvent(t *testing.T) {
	raws := storedSample(t)
	types := map[string]bool{}
	for _, raw := range raws {
		var e events.Event
		if events.DecodeMarshalled(raw, &e) == nil {
			t.Fatalf("Marshal's layout not read by hand: %s", raw)
		}
		types[e.Type] = true
		if d := decodeBoth(raw); d != "" {
			t.Fatalf("%s: %s", raw, d)
		}
	}
	if len(types) != 12 {
		t.Fatalf("sample covers %d types: %v", len(types), types)
	}
	raw := string(raws[0])
	odd := []string{
		strings.Replace(raw, `"type"`, `"TYPE"`, 1),                              // names without regard to case
		strings.Replace(raw, `"sector"`, `"Sector"`, 1),                          // in the payload too
		strings.Replace(raw, `"actor":"`, `"actor":"x","actor":"`, 1),            // the last of duplicates
		strings.Replace(raw, `"grade":"`, `"grade":"x","grade":"`, 1),            // in the payload too
		strings.Replace(raw, `"specversion":"1.0"`, `"specversion":"0.3"`, 1),    // not an event
		strings.Replace(raw, `"data":{`, `"data":{"sector":"mine"},"data":{`, 1), // the last "data" counts
		strings.Replace(raw, `"data":{`, `"type":"hazard.amended","data":{`, 1),  // a later "type"
		strings.Replace(raw, `"data":{`, `"data":{"unknown":1,`, 1),              // a name no field has
		strings.TrimSuffix(raw, "}") + `,"id":"other"}`,                          // a field after the data
		strings.TrimSuffix(raw, "}") + `,"data":{"sector":"mine"}}`,              // a second data after it
		strings.Replace(raw, `"actor":"`, `"actor":"\u00e9`, 1),                  // an escape
		strings.Replace(raw, `"actor":"`, `"actor":"é`, 1),                       // not ASCII
		strings.Replace(raw, `"site":{"name":"`, `"site":{"name":"`+"\xff", 1),   // invalid UTF-8 in the payload
		strings.Replace(raw, `"time":"`, `"time":"x`, 1),                         // not a time
		strings.Replace(raw, `+08:00"`, `+08:00" `, 1),                           // white space
		strings.Replace(raw, `"data":{`, `"data":null,"x":{`, 1),
		`{"specversion":"1.0","type":"hazard.nonsense","subject":"x","data":{}}`,
		`{"specversion":"1.0","type":"hazard.reported","subject":"x","data":{"grade":7}}`,
		`{"data":{"reason":"r"},"specversion":"1.0","type":"hazard.withdrawn","subject":"x"}`, // data before type
		`not json`, `{`, ``,
	}
	for i, c := range odd {
		if c == raw {
			t.Fatalf("odd case %d changed nothing", i)
		}
		if d := decodeBoth([]byte(c)); d != "" {
			t.Fatalf("odd case %d %s: %s", i, c, d)
		}
	}
}

// TestViewDecoderViews: a view decoder's strings share the stored bytes (a change to them
// shows), a Decoder's are copies (it does not).
func TestViewDecoderViews(t *testing.T) {
	raw := storedSample(t)[0]
	for _, c := range []struct {
		d    *events.Decoder
		view bool
	}{{events.NewDecoder(), false}, {events.NewViewDecoder(), true}} {
		b := append([]byte(nil), raw...)
		var e events.Event
		p, err := c.d.Decode(b, &e)
		if err != nil {
			t.Fatal(err)
		}
		r := p.(*events.Reported)
		subject, site := strings.Clone(e.Subject), strings.Clone(r.Site.Name)
		for i := range b {
			b[i] = 'x'
		}
		changed := e.Subject != subject || r.Site.Name != site
		if changed != c.view {
			t.Fatalf("view %v: strings changed with the bytes: %v (subject %q, site %q)", c.view, changed, e.Subject, r.Site.Name)
		}
	}
}

// TestViewDecoderAllocs is the replay's regression guard: a view decoder allocates only the
// payload and what hangs off it (a location, an amendment's pointers, the evidence array) —
// never its strings — for every stored type.
func TestViewDecoderAllocs(t *testing.T) {
	d := events.NewViewDecoder()
	var e events.Event
	for _, raw := range storedSample(t) {
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := d.Decode(raw, &e); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 4 {
			t.Fatalf("%.0f allocations decoding %s", allocs, raw)
		}
	}
}

// FuzzDecoder: whatever the bytes, the Decoder agrees with ParseEvent and Payload.
func FuzzDecoder(f *testing.F) {
	for _, raw := range storedSample(f)[:40] {
		f.Add(raw)
	}
	f.Add([]byte(`{"specversion":"1.0","type":"hazard.withdrawn","subject":"s","data":{"reason":"r"},"time":"2025-03-02T09:31:00+08:00"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if d := decodeBoth(raw); d != "" {
			t.Fatalf("%q: %s", raw, d)
		}
	})
}

// BenchmarkDecoder: a report and a plan as stored, by the Decoder and by encoding/json.
func BenchmarkDecoder(b *testing.B) {
	w := build(b, events.StatusPlanned, events.GradeMajor)
	b.Run("Decoder", func(b *testing.B) {
		d := events.NewDecoder()
		var e events.Event
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := d.Decode(w.raws[i%2], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ViewDecoder", func(b *testing.B) {
		d := events.NewViewDecoder()
		var e events.Event
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := d.Decode(w.raws[i%2], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseEvent+Payload", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e, err := events.ParseEvent(w.raws[i%2])
			if err == nil {
				_, err = e.Payload()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
