package events_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/events"
)

func TestDecodeNKeyMatchesNKeys(t *testing.T) {
	for _, mk := range []func() (nkeys.KeyPair, error){nkeys.CreateUser, nkeys.CreateServer} {
		kp, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		raw, _ := kp.PublicKey()
		key, err := events.DecodeNKey(pub)
		if err != nil {
			t.Fatalf("DecodeNKey(%s): %v", pub, err)
		}
		msg := []byte("清零 message")
		sig, _ := kp.Sign(msg)
		if err := events.VerifySignature(raw, msg, base64.StdEncoding.EncodeToString(sig)); err != nil {
			t.Fatalf("a signature by %s does not verify: %v", pub, err)
		}
		if len(key) != 32 {
			t.Fatalf("key of %d bytes", len(key))
		}
		// One changed character breaks the checksum.
		bad := []byte(pub)
		if bad[20] == 'B' {
			bad[20] = 'C'
		} else {
			bad[20] = 'B'
		}
		if _, err := events.DecodeNKey(string(bad)); err == nil {
			t.Fatalf("a corrupted key %s decodes", bad)
		}
	}
	for _, s := range []string{"", "U", "SUAM", strings.Repeat("A", 56)} {
		if _, err := events.DecodeNKey(s); err == nil {
			t.Errorf("DecodeNKey(%q) succeeds", s)
		}
	}
	seed, _ := nkeys.CreateAccount()
	acc, _ := seed.PublicKey()
	if _, err := events.DecodeNKey(acc); err == nil {
		t.Errorf("an account key %s is accepted as a signing key", acc)
	}
}

// signStep is one command of a signed history: a deliberately untidy body (spaces, bare
// dates) that the client normalises before signing.
type signStep struct {
	action, actor, body string
}

var signHistory = []signStep{
	{events.ActReport, "ins-1", `{"sector":"chem","region":"530181","site":{"name":"  安宁化工有限公司 "},"grade":"general","description":" 储罐区消防通道堵塞\n","source":"inspection","deadline":"2025-04-30","location":{"lat":24.9,"lon":102.4,"address":" 安宁市 "}}`},
	{events.ActAmend, "ins-1", `{"description":"  储罐区消防通道堵塞，已拍照 "}`},
	{events.ActGrade, "ver-1", `{"grade":"major","criterion":"chem-2017-05","reason":" 复核为重大隐患 "}`},
	{events.ActList, "ver-1", `{"level":"prefecture","authority":" 昆明市安委办 ","document":"昆安委办督〔2025〕3号","deadline":"2025-05-31"}`},
	{events.ActPlan, "rec-1", `{"responsible":" 张三 ","measures":"更换紧急切断阀","funds":"20万元","deadline":"2025-05-15","contingency":"专项应急预案"}`},
	{events.ActProgress, "rec-1", `{"note":" 已采购设备 ","percent":40,"evidence":[{"sha256":"` + strings.Repeat("ab", 32) + `","name":" p1.jpg "}]}`},
	{events.ActExtend, "ver-1", `{"deadline":"2025-06-15","reason":" 设备到货延迟 "}`},
	{events.ActComplete, "rec-1", `{"note":" 整改完成 "}`},
	{events.ActReject, "ver-1", `{"reason":" 不合格 "}`},
	{events.ActComplete, "rec-1", `{"note":"复查已整改"}`},
	{events.ActClear, "ver-2", `{"method":" on-site ","note":" 合格 "}`},
	{events.ActReopen, "ver-1", `{"reason":" 复发 ","deadline":"2025-08-01"}`},
	{events.ActWithdraw, "ver-1", `{"reason":" 录入错误 "}`},
}

// TestSignedHistory runs a whole lifecycle of signed commands: the client signs each command
// before the server has decided it, the server's event verifies, and only the signer's keys
// verify it.
func TestSignedHistory(t *testing.T) {
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]nkeys.KeyPair{}
	for _, u := range []string{"ins-1", "rec-1", "ver-1", "ver-2"} {
		keys[u], _ = nkeys.CreateUser()
	}
	pub := func(u string) string { p, _ := keys[u].PublicKey(); return p }
	var h *events.Hazard
	hazardID := ""
	at := time.Date(2025, 3, 10, 9, 0, 0, 0, events.Shanghai)
	for i, st := range signHistory {
		at = at.Add(time.Hour)
		// Client: decode its own body, say when it happened, sign.
		cmd, err := events.DecodeCommand(st.action, hazardID, []byte(st.body))
		if err != nil {
			t.Fatalf("step %d %s: %v", i, st.action, err)
		}
		cmd.CommandID, cmd.OccurredAt, cmd.Actor = events.NewID(), at, events.Actor{ID: st.actor}
		if err := events.SignCommand(cat, cmd, keys[st.actor].Sign); err != nil {
			t.Fatalf("step %d %s: sign: %v", i, st.action, err)
		}
		body, err := events.CommandBody(cmd)
		if err != nil {
			t.Fatal(err)
		}
		// Server: decode the wire body, decide at its own clock.
		got, err := events.DecodeCommand(st.action, hazardID, body)
		if err != nil {
			t.Fatalf("step %d %s: server decode of %s: %v", i, st.action, body, err)
		}
		got.Actor = events.Actor{ID: st.actor}
		events.ResolveIDs(got)
		ev, err := events.Decide(cat, h, got, at.Add(time.Minute), events.DefaultSource)
		if err != nil {
			t.Fatalf("step %d %s: decide: %v", i, st.action, err)
		}
		if ev.Sig != cmd.Sig {
			t.Fatalf("step %d: the event does not carry the command's signature", i)
		}
		if k, err := events.VerifyEventSignature(ev, []string{pub("ver-2"), pub(st.actor)}); err != nil || k != pub(st.actor) {
			t.Fatalf("step %d %s: the server's event does not verify with the signer's key (%v); data %s", i, st.action, err, ev.Data)
		}
		other := "ins-1"
		if st.actor == other {
			other = "rec-1"
		}
		if _, err := events.VerifyEventSignature(ev, []string{pub(other)}); err == nil {
			t.Fatalf("step %d: the event verifies with another user's key", i)
		}
		raw, _ := ev.Marshal()
		stored, err := events.ParseEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.VerifyEventSignature(stored, []string{pub(st.actor)}); err != nil {
			t.Fatalf("step %d: the stored bytes do not verify: %v", i, err)
		}
		p, _ := stored.Payload()
		h, err = events.Evolve(cat, h, stored, p, raw, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		hazardID = h.ID
	}
	if h.Status != events.StatusWithdrawn {
		t.Fatalf("the history ends in %s", h.Status)
	}
}

// TestNormalizeIsDecideFixedPoint: for every action the client's normalisation gives the data
// Decide records, and Decide changes nothing in already normalised data.
func TestNormalizeIsDecideFixedPoint(t *testing.T) {
	cat, _ := events.LoadCatalog()
	var h *events.Hazard
	hazardID := ""
	at := time.Date(2025, 3, 10, 9, 0, 0, 0, events.Shanghai)
	seen := map[string]bool{}
	for i, st := range signHistory {
		at = at.Add(time.Hour)
		raw, err := events.DecodeCommand(st.action, hazardID, []byte(st.body))
		if err != nil {
			t.Fatal(err)
		}
		raw.CommandID, raw.OccurredAt, raw.Actor = events.NewID(), at, events.Actor{ID: st.actor}
		events.ResolveIDs(raw)
		norm := *raw
		norm.Payload = clonePayload(t, raw)
		if err := events.NormalizePayload(cat, &norm); err != nil {
			t.Fatalf("step %d %s: normalise: %v", i, st.action, err)
		}
		normData, _ := json.Marshal(norm.Payload)
		ev, err := events.Decide(cat, h, raw, at.Add(time.Minute), events.DefaultSource)
		if err != nil {
			t.Fatalf("step %d %s: %v", i, st.action, err)
		}
		if !jsonEqual(t, ev.Data, normData) {
			t.Fatalf("step %d %s: Decide recorded %s, the client normalised to %s", i, st.action, ev.Data, normData)
		}
		again := norm
		again.Payload = clonePayload(t, &norm)
		ev2, err := events.Decide(cat, h, &again, at.Add(time.Minute), events.DefaultSource)
		if err != nil || !jsonEqual(t, ev2.Data, normData) {
			t.Fatalf("step %d %s: Decide on normalised data gives %s (%v), want %s", i, st.action, ev2.Data, err, normData)
		}
		b, _ := ev.Marshal()
		stored, _ := events.ParseEvent(b)
		p, _ := stored.Payload()
		h, _ = events.Evolve(cat, h, stored, p, b, uint64(i+1))
		hazardID = h.ID
		seen[st.action] = true
	}
	for _, a := range events.Actions {
		if !seen[a] {
			t.Errorf("action %s is not covered", a)
		}
	}
}

func TestSignatureRefusals(t *testing.T) {
	cat, _ := events.LoadCatalog()
	kp, _ := nkeys.CreateUser()
	old, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	oldPub, _ := old.PublicKey()
	cmd, _ := events.DecodeCommand(events.ActReport, "", []byte(signHistory[0].body))
	cmd.Actor = events.Actor{ID: "ins-1"}
	if err := events.SignCommand(cat, cmd, kp.Sign); err == nil || events.ErrorOf(err).Code != "occurred_at_required" {
		t.Fatalf("signing without occurred_at: %v", err)
	}
	cmd.OccurredAt = time.Date(2025, 3, 10, 9, 0, 0, 0, events.Shanghai)
	if err := events.SignCommand(cat, cmd, old.Sign); err != nil {
		t.Fatal(err)
	}
	ev, err := events.Decide(cat, nil, cmd, cmd.OccurredAt.Add(time.Minute), events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	// A rotated key's old signature still verifies against the user's keys, oldest first.
	if k, err := events.VerifyEventSignature(ev, []string{oldPub, pub}); err != nil || k != oldPub {
		t.Fatalf("old key's signature: %v (%s)", err, k)
	}
	if _, err := events.VerifyEventSignature(ev, []string{pub}); err == nil {
		t.Fatal("verifies with a key that did not sign")
	}
	// One changed byte of the data, of the actor, of occurredat or of the signature fails.
	tamper := []func(e *events.Event){
		func(e *events.Event) { e.Data = bytes.Replace(e.Data, []byte("堵塞"), []byte("畅通"), 1) },
		func(e *events.Event) { e.Actor = "ins-2" },
		func(e *events.Event) { e.OccurredAt = e.OccurredAt.Add(time.Second) },
		func(e *events.Event) { e.Type = events.TypeAmended },
		func(e *events.Event) {
			s, _ := base64.StdEncoding.DecodeString(e.Sig)
			s[5] ^= 0x10
			e.Sig = base64.StdEncoding.EncodeToString(s)
		},
		func(e *events.Event) { e.Sig = "not base64!" },
	}
	for i, f := range tamper {
		c := *ev
		c.Data = append([]byte(nil), ev.Data...)
		f(&c)
		if _, err := events.VerifyEventSignature(&c, []string{oldPub, pub}); err == nil {
			t.Errorf("tamper %d: still verifies", i)
		}
	}
	// Fields outside the signed set (record time, prevhash, source) may differ.
	c := *ev
	c.Time, c.PrevHash, c.Source = c.Time.Add(time.Hour), strings.Repeat("0", 64), "qingling/other"
	if _, err := events.VerifyEventSignature(&c, []string{oldPub}); err != nil {
		t.Fatalf("unsigned fields changed the verdict: %v", err)
	}
}

func clonePayload(t *testing.T, cmd *events.Command) any {
	t.Helper()
	b, _ := json.Marshal(cmd.Payload)
	p := events.NewPayload(events.ActionType(cmd.Action))
	if err := json.Unmarshal(b, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ca, _ := events.Canonical(x)
	cb, _ := events.Canonical(y)
	return bytes.Equal(ca, cb)
}
