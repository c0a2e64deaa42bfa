package events_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/uuid"

	"qingling/events"
)

func TestResolveIDs(t *testing.T) {
	const cid = "0193f2c4-1111-7000-8000-000000000042"
	t.Run("report with command id takes UUIDv5 of it", func(t *testing.T) {
		cmd, err := events.DecodeCommand(events.ActReport, "", []byte(withFields(t, reportGeneral, map[string]any{"command_id": cid})))
		if err != nil {
			t.Fatal(err)
		}
		events.ResolveIDs(cmd)
		if cmd.HazardID != events.ReportID(cid) || cmd.CommandID != cid {
			t.Fatalf("ids %s %s, want %s %s", cmd.HazardID, cmd.CommandID, events.ReportID(cid), cid)
		}
		u := uuid.MustParse(cmd.HazardID)
		if u.Version() != 5 || u.String() != cmd.HazardID {
			t.Fatalf("ReportID %s is not a canonical UUIDv5", cmd.HazardID)
		}
		// A retry, however much later, names the same hazard.
		again, _ := events.DecodeCommand(events.ActReport, "", []byte(withFields(t, reportGeneral, map[string]any{"command_id": cid})))
		events.ResolveIDs(again)
		if again.HazardID != cmd.HazardID {
			t.Fatalf("retry got hazard %s, first %s", again.HazardID, cmd.HazardID)
		}
		if events.ReportID("0193f2c4-1111-7000-8000-000000000043") == cmd.HazardID {
			t.Fatal("different command ids give the same hazard id")
		}
	})
	t.Run("report with a client id keeps it", func(t *testing.T) {
		cmd, err := events.DecodeCommand(events.ActReport, "", []byte(withFields(t, reportGeneral, map[string]any{"command_id": cid, "id": absentID})))
		if err != nil {
			t.Fatal(err)
		}
		events.ResolveIDs(cmd)
		if cmd.HazardID != absentID || cmd.CommandID != cid {
			t.Fatalf("ids %s %s", cmd.HazardID, cmd.CommandID)
		}
	})
	t.Run("report without command id gets fresh UUIDv7s", func(t *testing.T) {
		a, _ := events.DecodeCommand(events.ActReport, "", []byte(reportGeneral))
		b, _ := events.DecodeCommand(events.ActReport, "", []byte(reportGeneral))
		events.ResolveIDs(a)
		events.ResolveIDs(b)
		for _, id := range []string{a.HazardID, a.CommandID, b.HazardID, b.CommandID} {
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 7 || u.String() != id {
				t.Fatalf("%q is not a canonical UUIDv7", id)
			}
		}
		if a.HazardID == b.HazardID || a.CommandID == b.CommandID || a.HazardID == a.CommandID {
			t.Fatal("fresh ids repeat")
		}
	})
	t.Run("action keeps its hazard id and gets a command id", func(t *testing.T) {
		cmd, _ := events.DecodeCommand(events.ActWithdraw, absentID, []byte(bodyWithdraw))
		events.ResolveIDs(cmd)
		if cmd.HazardID != absentID || events.CanonicalUUID("command_id", cmd.CommandID) != nil {
			t.Fatalf("ids %s %s", cmd.HazardID, cmd.CommandID)
		}
		withID, _ := events.DecodeCommand(events.ActWithdraw, absentID, []byte(`{"reason":"r","command_id":"`+cid+`"}`))
		events.ResolveIDs(withID)
		if withID.CommandID != cid {
			t.Fatalf("command id replaced: %s", withID.CommandID)
		}
	})
}

func TestEventIDDeterministic(t *testing.T) {
	const h1, h2 = "0193f2c4-0000-7000-8000-000000000001", "0193f2c4-0000-7000-8000-000000000002"
	const c1, c2 = "0193f2c4-1111-7000-8000-000000000001", "0193f2c4-1111-7000-8000-000000000002"
	id := events.EventID(h1, c1)
	if id != events.EventID(h1, c1) {
		t.Fatal("EventID not deterministic")
	}
	u := uuid.MustParse(id)
	if u.Version() != 5 || u.String() != id {
		t.Fatalf("EventID %s is not a canonical UUIDv5", id)
	}
	if want := uuid.NewSHA1(uuid.MustParse(h1), []byte(c1)).String(); id != want {
		t.Fatalf("EventID = %s, want UUIDv5(hazard, command) %s", id, want)
	}
	for _, other := range []string{events.EventID(h1, c2), events.EventID(h2, c1), events.EventID(h2, c2)} {
		if other == id {
			t.Fatal("EventID collides across hazards or commands")
		}
	}
	if events.ReportID(c1) == events.EventID(h1, c1) {
		t.Fatal("report id and event id coincide")
	}

	// Deciding the same command twice (a retry) yields the same event id.
	w := build(t, events.StatusRectifying, events.GradeGeneral)
	body := `{"note":"n","command_id":"` + c1 + `"}`
	_, e1, err1 := w.try(events.ActComplete, rectifier, body)
	_, e2, err2 := w.try(events.ActComplete, rectifier, body)
	if err1 != nil || err2 != nil || e1.ID != e2.ID || e1.ID != events.EventID(w.id, c1) || e1.CommandID != c1 {
		t.Fatalf("retry: %v %v %+v %+v", err1, err2, e1, e2)
	}
}

// TestPrevHashChain follows a hazard through its whole life: the first event chains to
// the SHA-256 of the hazard id, each later one to the SHA-256 of the previous stored bytes.
func TestPrevHashChain(t *testing.T) {
	for _, grade := range []string{events.GradeGeneral, events.GradeMajor} {
		t.Run(grade, func(t *testing.T) {
			w := build(t, events.StatusCleared, grade)
			w.do(events.ActReopen, verifier, bodyReopen)
			w.do(events.ActAmend, inspector, bodyAmend)
			w.do(events.ActWithdraw, inspector, bodyWithdraw)
			if len(w.evs) < 8 {
				t.Fatalf("only %d events", len(w.evs))
			}
			genesis := sha256.Sum256([]byte(w.id))
			if w.evs[0].PrevHash != hex.EncodeToString(genesis[:]) || w.evs[0].PrevHash != events.HashString(events.GenesisHash(w.id)) {
				t.Fatalf("first prevhash %s", w.evs[0].PrevHash)
			}
			for i := 1; i < len(w.evs); i++ {
				sum := sha256.Sum256(w.raws[i-1])
				if w.evs[i].PrevHash != hex.EncodeToString(sum[:]) {
					t.Fatalf("event %d (%s) prevhash %s, want sha256 of event %d's stored bytes", i, w.evs[i].Type, w.evs[i].PrevHash, i-1)
				}
			}
			last := sha256.Sum256(w.raws[len(w.raws)-1])
			if w.h.LastHash != last || w.h.PrevHash() != hex.EncodeToString(last[:]) {
				t.Fatal("hazard's next prevhash is not the hash of its last stored event")
			}
			if w.h.Version != len(w.evs) || w.h.Seq != uint64(len(w.evs)) {
				t.Fatalf("version %d seq %d after %d events", w.h.Version, w.h.Seq, len(w.evs))
			}
			for i, e := range w.evs {
				if e.Subject != w.id || e.SpecVersion != "1.0" || e.Source != events.DefaultSource || e.DataContentType != "application/json" || e.Actor == "" || e.ActorRole == "" {
					t.Fatalf("event %d envelope: %+v", i, e)
				}
			}
		})
	}
	if got := (&events.Hazard{ID: absentID}).PrevHash(); got != events.HashString(events.GenesisHash(absentID)) {
		t.Errorf("PrevHash of an empty hazard = %s", got)
	}
}

func TestSubjects(t *testing.T) {
	if got := events.Subject("mine", "530000", "530100", "530102", absentID); got != "hz.mine.530000.530100.530102."+absentID {
		t.Errorf("Subject = %s", got)
	}
	if got := events.AnySubject(absentID); got != "hz.*.*.*.*."+absentID {
		t.Errorf("AnySubject = %s", got)
	}
}

func TestCanonicalUUID(t *testing.T) {
	for _, s := range []string{"0193f2c4-0000-7000-8000-000000000001", "00000000-0000-0000-0000-000000000000", events.NewID()} {
		if err := events.CanonicalUUID("id", s); err != nil {
			t.Errorf("CanonicalUUID(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "0193F2C4-0000-7000-8000-000000000001", "0193f2c4000070008000000000000001",
		"{0193f2c4-0000-7000-8000-000000000001}", "urn:uuid:0193f2c4-0000-7000-8000-000000000001",
		" 0193f2c4-0000-7000-8000-000000000001", "0193f2c4-0000-7000-8000-00000000000g", "0193f2c4-0000-7000-8000-0000000000011"} {
		wantErr(t, events.CanonicalUUID("subject", s), events.KindInvalid, "invalid_uuid", "subject")
	}
}

// TestParseCanonicalUUID: a UUID is canonical exactly when uuid.Parse reads it and String
// spells it back the same.
func TestParseCanonicalUUID(t *testing.T) {
	id := uuid.NewString()
	for _, s := range []string{id, strings.ToUpper(id), "{" + id + "}", "urn:uuid:" + id, strings.ReplaceAll(id, "-", ""),
		id[:35] + "g", id[:8] + "_" + id[9:], "", "00000000-0000-0000-0000-000000000000", id[:35] + "F"} {
		u, ok := events.ParseCanonicalUUID(s)
		p, err := uuid.Parse(s)
		want := err == nil && p.String() == s
		if ok != want || ok && u != p {
			t.Errorf("ParseCanonicalUUID(%q) = %v, %v; want %v", s, u, ok, want)
		}
	}
}
