package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/handlers/app"
	"qingling/handlers/client"
)

// signEnv is a server that checks signatures against each user's nkey.
type signEnv struct {
	*server
	cat  *events.Catalog
	keys map[string]nkeys.KeyPair
}

func startSigningServer(t *testing.T) *signEnv {
	t.Helper()
	cat, _ := events.LoadCatalog()
	e := &signEnv{cat: cat, keys: map[string]nkeys.KeyPair{}}
	for _, u := range []string{"insp-1", "rect-1", "verifier-1"} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		e.keys[u] = kp
	}
	e.server = startServerWith(t, func(a *app.Service) { a.Verifier = &app.KeyVerifier{CurrentKey: e.pub} })
	return e
}

func (e *signEnv) pub(user string) (string, bool) {
	kp, ok := e.keys[user]
	if !ok {
		return "", false
	}
	p, _ := kp.PublicKey()
	return p, true
}

func (e *signEnv) signer(t *testing.T, user string) *client.Signer {
	t.Helper()
	seed, _ := e.keys[user].Seed()
	s, err := client.NewSigner(e.cat, user, string(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sigOf(t *testing.T, cmd client.Command) string {
	t.Helper()
	var m struct {
		Sig string `json:"sig"`
	}
	if err := json.Unmarshal(cmd.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m.Sig
}

// TestSignedStory: every action, over HTTP and NATS, signed by the client; the server checks
// each signature before appending, and each stored event's sig verifies with its actor's key.
// The payloads need the server's normalisation (padded text, bare-date deadlines, a site
// without a credit code), so the client must sign what the server records.
func TestSignedStory(t *testing.T) {
	e := startSigningServer(t)
	ctx := context.Background()
	for _, tr := range []struct {
		name string
		mk   func(actor string) *client.Client
	}{
		{"http", func(a string) *client.Client { return e.httpClient(t, a) }},
		{"nats", e.natsClient},
	} {
		t.Run(tr.name, func(t *testing.T) {
			mk := func(u string) *client.Client { c := tr.mk(u); c.Signer = e.signer(t, u); return c }
			insp, rect, ver := mk("insp-1"), mk("rect-1"), mk("verifier-1")
			r := finding("  坟地周边可燃物未清理  ")
			res, err := insp.Report(ctx, "", r, client.Opts{})
			if err != nil || res.Status != 201 {
				t.Fatalf("signed report: %+v %v", res, err)
			}
			id := res.Hazard.ID
			d := " 坟地周边可燃物未清理，距林缘20米 "
			steps := []func() (client.Result, error){
				func() (client.Result, error) {
					return insp.Amend(ctx, id, events.Amended{Description: &d}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.Grade(ctx, id, events.Graded{Grade: "major", Criterion: "forest-firesource", Reason: " 复核 "}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.List(ctx, id, events.Listed{Level: "county", Authority: "五华区应急管理局", Document: "五应急〔2026〕1号", Deadline: day(40)}, client.Opts{})
				},
				func() (client.Result, error) {
					return rect.Plan(ctx, id, events.Planned{Responsible: "李四", Measures: "清理可燃物", Funds: "2万元", Deadline: day(20), Contingency: "扑火预案"}, client.Opts{ExpectedVersion: 4})
				},
				func() (client.Result, error) {
					return ver.Extend(ctx, id, events.Extended{Deadline: day(25), Reason: "雨季"}, client.Opts{})
				},
				func() (client.Result, error) {
					return rect.Progress(ctx, id, events.Progressed{Note: "清理一半", Percent: 50}, client.Opts{})
				},
				func() (client.Result, error) {
					return rect.Complete(ctx, id, events.Completed{Note: "完成"}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.Reject(ctx, id, events.VerifyFailed{Reason: "仍有残留"}, client.Opts{})
				},
				func() (client.Result, error) {
					return rect.Complete(ctx, id, events.Completed{Note: "已清理"}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.Clear(ctx, id, events.Cleared{Method: "on-site"}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.Reopen(ctx, id, events.Reopened{Reason: "复查发现", Deadline: day(10)}, client.Opts{})
				},
			}
			for i, step := range steps {
				if res, err := step(); err != nil || res.Replayed {
					t.Fatalf("signed step %d: %+v %v", i, res, err)
				}
			}
			hist, err := insp.History(ctx, id)
			if err != nil || len(hist) != len(steps)+1 {
				t.Fatalf("history: %d events, %v", len(hist), err)
			}
			for _, h := range hist {
				k, _ := e.pub(h.Event.Actor)
				if h.Event.Sig == "" {
					t.Fatalf("%s by %s is unsigned", h.Type, h.Event.Actor)
				}
				if _, err := events.VerifyEventSignature(h.Event, []string{k}); err != nil {
					t.Fatalf("%s: %v", h.Type, err)
				}
			}
		})
	}
}

// TestTamperedSignaturesRefused: a signature changed, a body changed after signing and a
// signature by another user's key are each refused with 401 bad_signature, nothing appended.
func TestTamperedSignaturesRefused(t *testing.T) {
	e := startSigningServer(t)
	ctx := context.Background()
	for _, c := range []*client.Client{e.httpClient(t, "insp-1"), e.natsClient("insp-1")} {
		good := e.signer(t, "insp-1")
		mk := func() client.Command {
			cmd, err := client.NewCommand(events.ActReport, "", finding("篡改测试"), client.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			if err := good.SignCommand(&cmd); err != nil {
				t.Fatal(err)
			}
			return cmd
		}
		flipped := mk()
		sig := sigOf(t, flipped)
		other := "A"
		if sig[0] == 'A' {
			other = "B"
		}
		flipped.Body = bytes.Replace(flipped.Body, []byte(sig), []byte(other+sig[1:]), 1)

		edited := mk()
		edited.Body = bytes.Replace(edited.Body, []byte("篡改测试"), []byte("篡改测试（改）"), 1)

		thief := e.signer(t, "rect-1")
		thief.Actor = "insp-1" // rect-1's key, signing as insp-1
		wrongKey, _ := client.NewCommand(events.ActReport, "", finding("篡改测试"), client.Opts{})
		if err := thief.SignCommand(&wrongKey); err != nil {
			t.Fatal(err)
		}

		before := e.lastSeq(t)
		for name, cmd := range map[string]client.Command{"flipped signature": flipped, "edited body": edited, "another user's key": wrongKey} {
			_, err := c.Send(ctx, cmd)
			if ee := events.ErrorOf(err); ee.Kind != events.KindUnauthenticated || ee.Code != "bad_signature" {
				t.Fatalf("%s: got %v, want 401 bad_signature", name, err)
			}
		}
		if got := e.lastSeq(t); got != before {
			t.Fatalf("refused commands appended: seq %d → %d", before, got)
		}
		// the same command, untouched, is accepted
		if _, err := c.Send(ctx, mk()); err != nil {
			t.Fatalf("untampered: %v", err)
		}
	}
}

// TestSignedRetriesAndOutbox: a signed command's bytes are fixed once signed — every retry
// after a lost answer sends them, the outbox keeps them, and a sync replayed after a crash
// between an answer and the entry's removal is answered from the record, once.
func TestSignedRetriesAndOutbox(t *testing.T) {
	e := startSigningServer(t)
	ctx := context.Background()

	f := &flaky{Transport: e.httpClient(t, "x").T, lose: 2}
	c := &client.Client{T: f, Actor: "insp-1", Signer: e.signer(t, "insp-1"), Retry: client.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}}
	before := e.lastSeq(t)
	res, err := c.Report(ctx, "", finding("重试签名"), client.Opts{})
	if err != nil || !res.Replayed || e.lastSeq(t) != before+1 {
		t.Fatalf("signed retries: %+v %v (seq %d → %d)", res, err, before, e.lastSeq(t))
	}
	if len(f.bodies) != 3 || f.bodies[0] != f.bodies[1] || f.bodies[1] != f.bodies[2] || !strings.Contains(f.bodies[0], `"sig":`) {
		t.Fatalf("attempts sent different or unsigned bodies: %q", f.bodies)
	}

	// offline: queued signed, by the outbox's signer and through a down client's signer
	tr, _ := client.NewHTTP(deadURL(t))
	down := &client.Client{T: tr, Actor: "insp-1", Retry: client.Retry{Attempts: 1}, Signer: e.signer(t, "insp-1")}
	field := time.Now().Add(-6 * time.Hour).Truncate(time.Second)
	box := &client.Outbox{Dir: t.TempDir(), Clock: func() time.Time { return field }, Catalog: e.cat, Signer: e.signer(t, "insp-1")}
	var ids []string
	for i := 0; i < 3; i++ {
		cmd, _ := client.NewCommand(events.ActReport, "", finding("离线第"+string(rune('一'+i))+"处"), client.Opts{})
		if _, err := box.Queue(cmd, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cmd.HazardID)
	}
	plain := &client.Outbox{Dir: box.Dir, Clock: box.Clock}
	plan, _ := client.NewCommand(events.ActPlan, ids[0], events.Planned{Measures: "清理可燃物", Deadline: day(9)}, client.Opts{})
	if _, q, err := plain.Deliver(ctx, down, plan, nil); err != nil || q == nil {
		t.Fatalf("deliver offline: %v", err)
	}
	entries, _ := box.Entries()
	if len(entries) != 4 {
		t.Fatalf("%d entries", len(entries))
	}
	saved := map[string][]byte{}
	for _, en := range entries {
		if !en.Command.Signed() {
			t.Fatalf("entry %s is unsigned: %s", en.Path, en.Body)
		}
		saved[en.Path], _ = os.ReadFile(en.Path)
	}

	up := e.httpClient(t, "insp-1") // no signer: entries are sent as they were signed
	before = e.lastSeq(t)
	rep, err := box.Sync(ctx, up, nil)
	if err != nil || rep.Sent != 4 || len(rep.Rejected) != 0 || e.lastSeq(t) != before+4 {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	// a crash between the answers and the removals: the entries come back, and are replayed
	for p, b := range saved {
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = box.Sync(ctx, up, nil)
	if err != nil || rep.Replayed != 4 || rep.Sent != 0 || e.lastSeq(t) != before+4 {
		t.Fatalf("replayed sync: %+v %v (seq %d → %d)", rep, err, before, e.lastSeq(t))
	}
	for i, en := range entries {
		hist, err := up.History(ctx, en.HazardID)
		if err != nil {
			t.Fatal(err)
		}
		var last *events.Event
		for _, h := range hist {
			if h.Event.CommandID == en.CommandID {
				last = h.Event
			}
		}
		if last == nil {
			t.Fatalf("entry %d (%s) is not in its hazard's history", i, en.CommandID)
		}
		k, _ := e.pub("insp-1")
		if last.Sig != sigOf(t, en.Command) || !last.OccurredAt.Equal(field) {
			t.Fatalf("entry %d: stored sig %q occurred %v, queued %q", i, last.Sig, last.OccurredAt, sigOf(t, en.Command))
		}
		if _, err := events.VerifyEventSignature(last, []string{k}); err != nil {
			t.Fatal(err)
		}
	}
}
