package audit

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"qingling/events"
)

// TestDecodeAsParseEvent: the fast decoder reads what events.ParseEvent and Payload read.
func TestDecodeAsParseEvent(t *testing.T) {
	cat, _ := events.LoadCatalog()
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, events.Shanghai)
	cmd, err := events.DecodeCommand(events.ActReport, "", []byte(`{"sector":"chem","region":"530181","site":{"name":"安宁化工"},"grade":"major","criterion":"chem-2017-05","description":"<罐区> & \"引号\"","source":"inspection","deadline":"2099-04-30","location":{"lat":24.9,"lon":102.5},"evidence":[{"sha256":"`+strings.Repeat("a", 64)+`","name":"p.jpg"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cmd.CommandID, cmd.OccurredAt, cmd.Actor = events.NewID(), at, events.Actor{ID: "insp-1", Role: "inspector"}
	events.ResolveIDs(cmd)
	ev, err := events.Decide(cat, nil, cmd, at.Add(time.Minute), events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := ev.Marshal()
	cases := []string{
		string(raw),
		strings.Replace(string(raw), `"type"`, `"TYPE"`, 1),                                 // names without regard to case
		strings.Replace(string(raw), `"actor":"insp-1"`, `"actor":"x","actor":"insp-2"`, 1), // the last of duplicates
		strings.Replace(string(raw), `"specversion":"1.0"`, `"specversion":"0.3"`, 1),       // not an event
		`{"specversion":"1.0","type":"hazard.nonsense","subject":"x","data":{}}`,
		`{"specversion":"1.0","type":"hazard.reported","subject":"x","data":{"grade":7}}`,
		`not json`,
		strings.Replace(string(raw), `"data":{`, `"data":{"sector":"mine"},"data":{`, 1),      // the last "data" counts
		strings.Replace(string(raw), `"data":{`, `"type":"hazard.amended","data":{`, 1),       // a later "type"
		`{"data":{"reason":"r"},"specversion":"1.0","type":"hazard.withdrawn","subject":"x"}`, // data before type
	}
	for i, c := range cases {
		e1 := &events.Event{}
		p1, err1 := newDecoder().decode([]byte(c), e1)
		e2, err2 := events.ParseEvent([]byte(c))
		var p2 any
		if err2 == nil {
			p2, err2 = e2.Payload()
		}
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("case %d: fast %v, encoding/json %v", i, err1, err2)
		}
		if err1 != nil {
			continue
		}
		d1, d2 := e1.Data, e2.Data
		e1.Data, e2.Data = nil, nil
		if !reflect.DeepEqual(e1, e2) || !reflect.DeepEqual(p1, p2) {
			t.Fatalf("case %d: fast %+v %+v, encoding/json %+v %+v", i, e1, p1, e2, p2)
		}
		var x, y any
		_ = json.Unmarshal(d1, &x)
		_ = json.Unmarshal(d2, &y)
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("case %d: data %s vs %s", i, d1, d2)
		}
	}
}

func TestEventIDAsEvents(t *testing.T) {
	for i := 0; i < 200; i++ {
		h, c := events.NewID(), events.NewID()
		if i%7 == 0 {
			c = strings.Repeat("x", i)
		}
		if got, want := eventID(uuid.MustParse(h), c), events.EventID(h, c); got != want {
			t.Fatalf("eventID(%s, %q) = %s, events.EventID %s", h, c, got, want)
		}
	}
}
