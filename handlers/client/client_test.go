package client_test

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"testing"
	"time"

	"qingling/events"
	"qingling/handlers/client"
	"qingling/handlers/evidence"
)

// TestTypedCalls runs the same story over HTTP and over NATS.
func TestTypedCalls(t *testing.T) {
	s := startServer(t)
	for _, tr := range []struct {
		name string
		mk   func(actor string) *client.Client
	}{
		{"http", func(a string) *client.Client { return s.httpClient(t, a) }},
		{"nats", s.natsClient},
	} {
		t.Run(tr.name, func(t *testing.T) {
			ctx := context.Background()
			insp, rect, ver := tr.mk("insp-1"), tr.mk("rect-1"), tr.mk("verifier-1")
			pic := photo(t, len(tr.name)+int(tr.name[0]))
			info, err := insp.PutEvidence(ctx, pic, "p.png")
			if err != nil || info.SHA256 != evidence.Sum(pic) || !info.Created {
				t.Fatalf("evidence: %+v %v", info, err)
			}
			if again, err := insp.PutEvidence(ctx, pic, "p.png"); err != nil || again.Created {
				t.Fatalf("evidence again: %+v %v", again, err)
			}
			got, _, err := insp.GetEvidence(ctx, info.SHA256)
			if err != nil || evidence.Sum(got) != info.SHA256 {
				t.Fatalf("download: %v", err)
			}
			occurred := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
			res, err := insp.Report(ctx, "", finding("坟地周边可燃物未清理", events.Evidence{SHA256: info.SHA256, Name: "p.png"}), client.Opts{OccurredAt: occurred})
			if err != nil || res.Status != 201 || res.Hazard.Version != 1 || res.Replayed {
				t.Fatalf("report: %+v %v", res, err)
			}
			id := res.Hazard.ID
			if id != events.ReportID(res.CommandID) {
				t.Fatalf("report id %s not derived from command id %s", id, res.CommandID)
			}
			steps := []func() (client.Result, error){
				func() (client.Result, error) {
					d := "坟地周边可燃物未清理，距林缘20米"
					return insp.Amend(ctx, id, events.Amended{Description: &d}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.Grade(ctx, id, events.Graded{Grade: "major", Criterion: "forest-firesource", Reason: "复核"}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.List(ctx, id, events.Listed{Level: "county", Authority: "五华区应急管理局", Document: "五应急〔2026〕1号", Deadline: day(40)}, client.Opts{})
				},
				func() (client.Result, error) {
					return rect.Plan(ctx, id, events.Planned{Responsible: "李四", Measures: "清理可燃物", Funds: "2万元", Deadline: day(20), Contingency: "扑火预案"}, client.Opts{})
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
					return ver.Reopen(ctx, id, events.Reopened{Reason: "复燃风险"}, client.Opts{})
				},
				func() (client.Result, error) {
					return ver.Withdraw(ctx, id, events.Withdrawn{Reason: "重复"}, client.Opts{})
				},
			}
			for i, step := range steps {
				res, err := step()
				if err != nil || res.Hazard.Version != i+2 {
					t.Fatalf("step %d: %+v %v", i, res.Hazard, err)
				}
			}
			h, err := insp.Show(ctx, id, 0)
			if err != nil || h.Status != events.StatusWithdrawn || h.Details == nil || len(h.Details.Evidence) != 1 {
				t.Fatalf("show: %+v %v", h, err)
			}
			hist, err := insp.History(ctx, id)
			if err != nil || len(hist) != 13 || hist[0].OccurredAt != events.FormatInstant(occurred) || hist[0].OccurredAt == hist[0].RecordedAt {
				t.Fatalf("history: %d events %v", len(hist), err)
			}
			page, err := insp.Hazards(ctx, url.Values{"sector": {"forest"}, "status": {"withdrawn"}})
			if err != nil || len(page.Items) < 1 {
				t.Fatalf("list: %+v %v", page, err)
			}
			// a refusal keeps its kind and code; a retry of the same command is answered, not appended
			_, err = rect.Progress(ctx, id, events.Progressed{Percent: 10}, client.Opts{})
			if e := events.ErrorOf(err); e.Kind != events.KindRule || e.Code != "invalid_transition" {
				t.Fatalf("refused: %v", err)
			}
			res2, err := insp.Report(ctx, "", finding("第二处"), client.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = rect.Progress(ctx, res2.Hazard.ID, events.Progressed{Percent: 10}, client.Opts{ExpectedVersion: 7})
			if e := events.ErrorOf(err); e.Kind != events.KindConflict || e.Code != "version_conflict" {
				t.Fatalf("conflict: %v", err)
			}
			cmd, _ := client.NewCommand(events.ActProgress, res2.Hazard.ID, events.Progressed{Percent: 20}, client.Opts{})
			a, err1 := rect.Send(ctx, cmd)
			seq := s.lastSeq(t)
			b, err2 := rect.Send(ctx, cmd)
			if err1 != nil || err2 != nil || a.Replayed || !b.Replayed || b.Hazard.Version != a.Hazard.Version || s.lastSeq(t) != seq {
				t.Fatalf("retry: %+v %v / %+v %v", a, err1, b, err2)
			}
		})
	}
}

// flaky loses the first answers: the request reaches the server, the caller sees it
// unreachable. Every attempt must carry the same command id and body.
type flaky struct {
	client.Transport
	mu     sync.Mutex
	lose   int
	bodies []string
	keys   []string
}

func (f *flaky) Call(ctx context.Context, r client.Request) (client.Response, error) {
	res, err := f.Transport.Call(ctx, r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies, f.keys = append(f.bodies, string(r.Body)), append(f.keys, r.CommandID)
	if f.lose > 0 {
		f.lose--
		return client.Response{}, events.Errorf(events.KindUnavailable, "unreachable", "", "answer lost")
	}
	return res, err
}

func TestRetriesReuseTheCommandID(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	for _, base := range []client.Transport{s.httpClient(t, "x").T, s.natsClient("x").T} {
		f := &flaky{Transport: base, lose: 2}
		c := &client.Client{T: f, Actor: "insp-1", Retry: client.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}}
		before := s.lastSeq(t)
		res, err := c.Report(ctx, "", finding("重试"), client.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		if len(f.keys) != 3 || f.keys[0] != f.keys[2] || f.bodies[0] != f.bodies[2] || f.keys[0] != res.CommandID {
			t.Fatalf("attempts: %v", f.keys)
		}
		if !res.Replayed || res.Status != 200 || s.lastSeq(t) != before+1 {
			t.Fatalf("the third attempt should be the recorded answer: %+v, seq %d → %d", res, before, s.lastSeq(t))
		}
	}
	// attempts run out: the caller learns the server is unreachable
	f := &flaky{Transport: s.httpClient(t, "x").T, lose: 10}
	c := &client.Client{T: f, Actor: "insp-1", Retry: client.Retry{Attempts: 3, Base: time.Millisecond}}
	if _, err := c.Report(ctx, "", finding("放弃"), client.Opts{}); !client.Unreachable(err) || len(f.keys) != 3 {
		t.Fatalf("got %v after %d attempts", err, len(f.keys))
	}
}

func TestUnreachableServers(t *testing.T) {
	ctx := context.Background()
	tr, _ := client.NewHTTP(deadURL(t))
	c := &client.Client{T: tr, Actor: "insp-1", Retry: client.Retry{Attempts: 2, Base: time.Millisecond}}
	if _, err := c.Report(ctx, "", finding("x"), client.Opts{}); !client.Unreachable(err) {
		t.Fatalf("http: %v", err)
	}
	if _, err := c.Show(ctx, events.NewID(), 0); !client.Unreachable(err) {
		t.Fatalf("http show: %v", err)
	}
	if _, err := client.DialNATS("nats://"+deadURL(t)[len("http://"):], "insp-1", ""); !client.Unreachable(err) {
		t.Fatalf("nats: %v", err)
	}
	if _, err := client.NewHTTP("ftp://x"); events.ErrorOf(err).Code != "invalid_server" {
		t.Fatalf("bad URL: %v", err)
	}
}

func TestNewCommandBody(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 30, 0, 0, events.Shanghai)
	cmd, err := client.NewCommand(events.ActReport, "", finding("x"), client.Opts{OccurredAt: at, ExpectedVersion: 0})
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(cmd.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body["command_id"] != cmd.CommandID || body["id"] != cmd.HazardID || body["occurred_at"] != "2026-03-02T09:30:00+08:00" {
		t.Fatalf("body %s", cmd.Body)
	}
	// the body decodes as the server decodes it
	dc, err := events.DecodeCommand(cmd.Action, "", cmd.Body)
	if err != nil || dc.HazardID != cmd.HazardID || dc.CommandID != cmd.CommandID || !dc.OccurredAt.Equal(at) {
		t.Fatalf("decode: %+v %v", dc, err)
	}
	// stamping keeps an occurred_at already there
	if err := cmd.StampOccurred(at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := cmd.OccurredAt(); !got.Equal(at) {
		t.Fatalf("stamp replaced occurred_at: %v", got)
	}
	if _, err := client.NewCommand("fly", "", nil, client.Opts{}); err == nil {
		t.Fatal("unknown action accepted")
	}
	if _, err := client.NewCommand(events.ActPlan, "ABC", nil, client.Opts{}); err == nil {
		t.Fatal("bad hazard id accepted")
	}
}
