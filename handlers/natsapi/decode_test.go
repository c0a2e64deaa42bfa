package natsapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"qingling/events"
)

func TestDecodeRequest(t *testing.T) {
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	const id = "0193f2c4-0000-7000-8000-000000000001"
	const key = "0193f2c4-0000-7000-8000-0000000000a1"
	cases := []struct {
		name, subject, key, body string
		code                     string // "" = decodes
		check                    func(r *request) bool
	}{
		{"report", "qingling.cmd.insp-1.report", key, `{"sector":"chem"}`, "", func(r *request) bool {
			return r.cmd != nil && r.cmd.Action == "report" && r.cmd.CommandID == key && r.actor.ID == "insp-1"
		}},
		{"action takes the id from the body", "qingling.cmd.rect-1.plan", "", `{"id":"` + id + `","measures":"m"}`, "", func(r *request) bool {
			return r.cmd.HazardID == id && r.cmd.Payload.(*events.Planned).Measures == "m"
		}},
		{"list with an id is the command", "qingling.cmd.v.list", "", `{"id":"` + id + `","level":"county"}`, "", func(r *request) bool {
			return r.cmd != nil && r.cmd.Action == "list"
		}},
		{"list without an id is the query", "qingling.cmd.v.list", "", `{"sector":"mine","limit":5,"overdue":true}`, "", func(r *request) bool {
			return r.query() && r.filter.Sector == "mine" && r.filter.Limit == 5 && *r.filter.Overdue
		}},
		{"empty list query", "qingling.cmd.v.list", "", ``, "", func(r *request) bool { return r.query() }},
		{"show", "qingling.cmd.a.show", "", `{"id":"` + id + `","min_seq":7}`, "", func(r *request) bool { return r.id == id && r.minSeq == 7 }},
		{"history", "qingling.cmd.a.history", "", `{"id":"` + id + `"}`, "", func(r *request) bool { return r.id == id }},
		{"wrong prefix", "other.cmd.a.show", "", `{}`, "no_route", nil},
		{"too many tokens", "qingling.cmd.a.b.show", "", `{}`, "no_route", nil},
		{"unknown verb", "qingling.cmd.a.status2", "", `{}`, "unknown_action", nil},
		{"bad user", "qingling.cmd.@x.show", "", `{}`, "invalid_actor", nil},
		{"bad key", "qingling.cmd.a.report", "KEY", `{}`, "invalid_uuid", nil},
		{"id not a string", "qingling.cmd.a.plan", "", `{"id":7}`, "wrong_type", nil},
		{"array body", "qingling.cmd.a.plan", "", `[1]`, "", nil},
		{"trailing data", "qingling.cmd.a.plan", "", `{"id":"` + id + `"} {}`, "malformed_json", nil},
		{"list query nested", "qingling.cmd.a.list", "", `{"sector":{"x":1}}`, "wrong_type", nil},
		{"list query unknown", "qingling.cmd.a.list", "", `{"colour":"red"}`, "unknown_parameter", nil},
		{"invalid utf-8", "qingling.cmd.a.plan", "", "{\"id\":\"\xff\"}", "invalid_utf8", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := nats.Header{}
			if c.key != "" {
				hdr.Set("Idempotency-Key", c.key)
			}
			r, err := decodeRequest(cat, c.subject, hdr, []byte(c.body))
			if c.check == nil {
				var e *events.Error
				if err == nil || !errors.As(err, &e) || (c.code != "" && e.Code != c.code) {
					t.Fatalf("got %v, want error %q", err, c.code)
				}
				return
			}
			if err != nil || !c.check(r) {
				t.Fatalf("got %+v, %v", r, err)
			}
		})
	}
}

// FuzzDecodeRequest: whatever arrives on a subject, decoding answers a request or a domain
// error with a code, never panics, and the error fits in a NATS header.
func FuzzDecodeRequest(f *testing.F) {
	cat, err := events.LoadCatalog()
	if err != nil {
		f.Fatal(err)
	}
	id := "0193f2c4-0000-7000-8000-000000000001"
	for _, s := range []struct{ subject, key, body string }{
		{"qingling.cmd.insp-1.report", "", `{"sector":"chem","region":"530181","site":{"name":"x"},"grade":"general","description":"d","source":"inspection","deadline":"2030-01-01"}`},
		{"qingling.cmd.rect-1.plan", "0193f2c4-0000-7000-8000-0000000000a1", `{"id":"` + id + `","measures":"m","command_id":"0193f2c4-0000-7000-8000-0000000000a1"}`},
		{"qingling.cmd.v.list", "", `{"id":"` + id + `","level":"county","authority":"a","document":"d","deadline":"2030-01-01"}`},
		{"qingling.cmd.v.list", "", `{"sector":"mine","region":"530100","limit":10,"overdue":true}`},
		{"qingling.cmd.a.show", "", `{"id":"` + id + `","min_seq":3}`},
		{"qingling.cmd.a.history", "", `{"id":"` + id + `"}`},
		{"qingling.cmd.a.progress", "", `{"id":"` + id + `","percent":50,"evidence":[{"sha256":"` + strings.Repeat("a", 64) + `"}]}`},
		{"qingling.cmd.a.withdraw", "", `{"id":null,"reason":"x"}`},
		{"qingling.cmd.a.amend", "", `{"id":"` + id + `","\n":1}`},
		{"qingling.cmd.a.clear", "", `{"id":"` + id + `","method":"on-site","expected_version":0}`},
		{"qingling.cmd.a.list", "", `{"found_from":"2025-01-01","cursor":"AAAAAAAAAAE"}`},
		{"qingling.cmd.a.grade", "", `[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`},
		{"qingling.cmd..report", "", `{}`},
		{"qingling.cmd.a.reopen", "x", "\x00"},
		{"qingling.cmd.desk-1.status", "", `{"sector":"mine","region":"530100","as_of":"2026-01-01"}`},
		{"qingling.cmd.a.download", "", `{"sha256":"` + strings.Repeat("b", 64) + `"}`},
		{"qingling.cmd.a.upload", "", "\x89PNG\r\n\x1a\n\x00\x00"},
	} {
		f.Add(s.subject, s.key, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, subject, key string, body []byte) {
		hdr := nats.Header{}
		if key != "" {
			hdr.Set("Idempotency-Key", key)
		}
		r, err := decodeRequest(cat, subject, hdr, body)
		if err != nil {
			var e *events.Error
			if !errors.As(err, &e) || e.Code == "" || e.Message == "" || e.Kind == events.KindInternal {
				t.Fatalf("%q %q: not a domain error: %#v", subject, body, err)
			}
			for _, v := range []string{headerSafe(e.Message), headerSafe(e.Field), e.Code} {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("header value %q has a line break", v)
				}
			}
			return
		}
		if r.verb == "" || r.actor.ID == "" {
			t.Fatalf("decoded without verb or actor: %+v", r)
		}
		if !r.query() {
			if r.cmd.Action != r.verb || r.cmd.Actor.ID != r.actor.ID {
				t.Fatalf("command %+v does not match request %+v", r.cmd, r)
			}
			if r.verb != events.ActReport && events.CanonicalUUID("id", r.cmd.HazardID) != nil {
				t.Fatalf("action without a canonical hazard id: %q", r.cmd.HazardID)
			}
			if key != "" && r.cmd.CommandID != key {
				t.Fatalf("Idempotency-Key %q not applied: %q", key, r.cmd.CommandID)
			}
		} else if (r.verb == VerbShow || r.verb == VerbHistory) && events.CanonicalUUID("id", r.id) != nil {
			t.Fatalf("query without a canonical id: %q", r.id)
		}
	})
}
