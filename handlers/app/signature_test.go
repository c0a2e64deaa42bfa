package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/internal/testserver"
	"qingling/projections"
)

// sigService is a command service on a real JetStream store with a KeyVerifier whose users'
// current keys the test controls.
func sigService(t *testing.T, require []string, keys map[string]string) (*app.Service, *jsstore.Store) {
	t.Helper()
	js := testserver.Start(t)
	svc := &app.Service{Catalog: js.Catalog, Index: projections.NewIndex(js.Catalog), Log: js.Store,
		Verifier: &app.KeyVerifier{Require: require, CurrentKey: func(u string) (string, bool) { k, ok := keys[u]; return k, ok }}}
	return svc, js.Store
}

func sigCommand(t *testing.T, svc *app.Service, action, id string, actor events.Actor, body string, at time.Time, kp nkeys.KeyPair) *events.Command {
	t.Helper()
	cmd, err := events.DecodeCommand(action, id, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Actor, cmd.OccurredAt, cmd.CommandID = actor, at, events.NewID()
	if kp != nil {
		if err := events.SignCommand(svc.Catalog, cmd, kp.Sign); err != nil {
			t.Fatal(err)
		}
	}
	return cmd
}

func TestServiceChecksSignatures(t *testing.T) {
	insp, _ := nkeys.CreateUser()
	rect, _ := nkeys.CreateUser()
	inspPub, _ := insp.PublicKey()
	rectPub, _ := rect.PublicKey()
	keys := map[string]string{"insp-1": inspPub, "rect-1": rectPub}
	svc, store := sigService(t, []string{events.RoleInspector}, keys)
	ctx := context.Background()
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	insA := events.Actor{ID: "insp-1", Role: events.RoleInspector}
	recA := events.Actor{ID: "rect-1", Role: events.RoleRectifier}

	// An inspector must sign.
	_, err := svc.Execute(ctx, sigCommand(t, svc, events.ActReport, "", insA, reportGeneral, at, nil))
	sigWantCode(t, err, events.KindForbidden, "signature_required")

	// Signed with the current key: accepted, and the stored event carries the signature.
	cmd := sigCommand(t, svc, events.ActReport, "", insA, reportGeneral, at, insp)
	res, err := svc.Execute(ctx, cmd)
	if err != nil {
		t.Fatalf("signed report: %v", err)
	}
	m, err := store.Get(ctx, res.Hazard.Seq)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := events.ParseEvent(m.Data)
	if stored.Sig == "" || stored.Sig != cmd.Sig {
		t.Fatalf("stored sig %q, sent %q", stored.Sig, cmd.Sig)
	}
	if _, err := events.VerifyEventSignature(stored, []string{inspPub}); err != nil {
		t.Fatalf("the stored event does not verify offline: %v", err)
	}
	id := res.Hazard.ID

	// A rectifier need not sign; when it does, a wrong key is refused and nothing is written.
	if _, err := svc.Execute(ctx, sigCommand(t, svc, events.ActProgress, id, recA, bodyProgress, at.Add(time.Minute), nil)); err != nil {
		t.Fatalf("unsigned rectifier command: %v", err)
	}
	last, _ := store.LastSeq(ctx)
	_, err = svc.Execute(ctx, sigCommand(t, svc, events.ActProgress, id, recA, bodyProgress, at.Add(2*time.Minute), insp))
	sigWantCode(t, err, events.KindUnauthenticated, "bad_signature")

	// A signature over other data (the client did not send what it signed) is refused.
	forged := sigCommand(t, svc, events.ActProgress, id, recA, bodyProgress, at.Add(3*time.Minute), rect)
	forged.Payload.(*events.Progressed).Percent = 99
	_, err = svc.Execute(ctx, forged)
	sigWantCode(t, err, events.KindUnauthenticated, "bad_signature")

	// A signed command without occurred_at cannot be checked.
	noTime := sigCommand(t, svc, events.ActProgress, id, recA, bodyProgress, at.Add(4*time.Minute), rect)
	noTime.OccurredAt = time.Time{}
	_, err = svc.Execute(ctx, noTime)
	sigWantCode(t, err, events.KindInvalid, "occurred_at_required")
	if now, _ := store.LastSeq(ctx); now != last {
		t.Fatalf("refused commands wrote events: last seq %d → %d", last, now)
	}

	// After a rotation the old key signs no new command; its old signature still verifies
	// against every registered key.
	newInsp, _ := nkeys.CreateUser()
	newPub, _ := newInsp.PublicKey()
	keys["insp-1"] = newPub
	_, err = svc.Execute(ctx, sigCommand(t, svc, events.ActAmend, id, insA, bodyAmend, at.Add(5*time.Minute), insp))
	sigWantCode(t, err, events.KindUnauthenticated, "bad_signature")
	if _, err := svc.Execute(ctx, sigCommand(t, svc, events.ActAmend, id, insA, bodyAmend, at.Add(6*time.Minute), newInsp)); err != nil {
		t.Fatalf("signed with the new key: %v", err)
	}
	if _, err := events.VerifyEventSignature(stored, []string{inspPub, newPub}); err != nil {
		t.Fatalf("the rotated key's old signature: %v", err)
	}

	// A retry of a recorded signed command is answered, not re-checked or appended.
	again := *cmd
	if res, err := svc.Execute(ctx, &again); err != nil || !res.Replayed {
		t.Fatalf("retry of the signed report: %+v %v", res, err)
	}
}

func TestParseRoles(t *testing.T) {
	r, err := app.ParseRoles(" inspector, verifier ,")
	if err != nil || strings.Join(r, ",") != "inspector,verifier" {
		t.Fatalf("%v %v", r, err)
	}
	if _, err := app.ParseRoles("inspector,boss"); err == nil {
		t.Fatal("an unknown role is accepted")
	}
}

func sigWantCode(t *testing.T, err error, kind events.Kind, code string) {
	t.Helper()
	e := events.ErrorOf(err)
	if err == nil || e.Kind != kind || e.Code != code {
		t.Fatalf("got %v (kind %d), want %s (kind %d)", err, e.Kind, code, kind)
	}
}
