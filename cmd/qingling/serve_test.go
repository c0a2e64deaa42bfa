package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"qingling/events"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startMain runs Qingling's real wiring on port 0 with a temp data dir.
func startMain(t *testing.T, dir string) *Main {
	t.Helper()
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	return m
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

type apiResp struct {
	Code int
	Body map[string]any
	Raw  []byte
}

func call(t *testing.T, method, url, actor string, body any, hdr ...string) apiResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	if actor != "" {
		req.Header.Set("X-Qingling-Actor", actor)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := apiResp{Code: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

func errCode(r apiResp) string {
	e, _ := r.Body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func lastSeq(t *testing.T, m *Main) uint64 {
	t.Helper()
	s, err := m.Store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEndToEndMajorHazardLifecycle(t *testing.T) {
	dir := t.TempDir()
	m := startMain(t, dir)
	u := m.URL() + "/v1/hazards"
	occurred := time.Now().Add(-time.Hour).In(events.Shanghai).Format(time.RFC3339)
	deadline := time.Now().AddDate(0, 1, 0).In(events.Shanghai).Format("2006-01-02")
	report := map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "安宁某化工有限公司"},
		"grade": "major", "criterion": "chem-2017-05", "description": "储罐区未设紧急切断", "source": "inspection",
		"occurred_at": occurred, "deadline": deadline, "command_id": "0193f2c4-0000-7000-8000-000000000001"}
	r := call(t, "POST", u, "insp-1", report)
	if r.Code != 201 {
		t.Fatalf("report: %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	if r.Body["version"].(float64) != 1 || r.Body["seq"].(float64) != 1 || r.Body["status"] != "reported" {
		t.Fatalf("report state: %s", r.Raw)
	}
	// the same report again is a retry: 200 with the existing hazard, nothing appended
	if r := call(t, "POST", u, "insp-1", report); r.Code != 200 || r.Body["id"] != id {
		t.Fatalf("retry: %d %s", r.Code, r.Raw)
	}
	hz := u + "/" + id
	refuse := func(name string, want int, code string, method, url, actor string, body any, hdr ...string) {
		t.Helper()
		before := lastSeq(t, m)
		r := call(t, method, url, actor, body, hdr...)
		if r.Code != want || errCode(r) != code {
			t.Fatalf("%s: got %d %s, want %d %s", name, r.Code, r.Raw, want, code)
		}
		if r.Body["error"].(map[string]any)["message"] == "" {
			t.Fatalf("%s: no message", name)
		}
		if after := lastSeq(t, m); after != before {
			t.Fatalf("%s wrote to the log: %d → %d", name, before, after)
		}
	}
	refuse("malformed", 400, "malformed_json", "POST", hz+"/plan", "rect-1", `{"measures": `)
	refuse("unknown field", 400, "unknown_field", "POST", hz+"/plan", "rect-1", `{"measurez": "x"}`)
	refuse("bad uuid", 400, "invalid_uuid", "POST", u+"/ABC/plan", "rect-1", `{}`)
	refuse("unknown hazard", 404, "hazard_not_found", "POST", u+"/0193f2c4-0000-7000-8000-0000000000ff/plan", "rect-1", `{"measures":"x"}`)
	refuse("no actor", 401, "actor_required", "POST", hz+"/plan", "", `{"measures":"x"}`)
	refuse("incomplete plan", 422, "plan_incomplete", "POST", hz+"/plan", "rect-1", map[string]any{"measures": "更换"})
	refuse("complete before plan", 422, "invalid_transition", "POST", hz+"/complete", "rect-1", map[string]any{})
	refuse("stale version", 409, "version_conflict", "POST", hz+"/progress", "rect-1", map[string]any{"percent": 10, "expected_version": 5})
	refuse("unknown sector", 400, "unknown_sector", "POST", u, "insp-1", map[string]any{"sector": "coal", "region": "530181", "site": map[string]any{"name": "x"}, "grade": "general", "description": "d", "source": "inspection", "deadline": deadline})
	refuse("too large", 413, "body_too_large", "POST", hz+"/progress", "rect-1", `{"note":"`+string(bytes.Repeat([]byte("x"), 100<<10))+`"}`)

	steps := []struct {
		action, actor string
		body          map[string]any
		status        string
	}{
		{"plan", "rect-1", map[string]any{"responsible": "张三", "measures": "加装紧急切断阀", "funds": "30万元", "deadline": deadline, "contingency": "应急预案"}, "planned"},
		{"progress", "rect-1", map[string]any{"note": "阀门到货", "percent": 60}, "rectifying"},
		{"complete", "rect-1", map[string]any{"note": "完成"}, "awaiting_verification"},
	}
	for i, s := range steps {
		r := call(t, "POST", hz+"/"+s.action, s.actor, s.body, "Idempotency-Key", events.EventID(id, s.action))
		if r.Code != 200 || r.Body["status"] != s.status || int(r.Body["version"].(float64)) != i+2 {
			t.Fatalf("%s: %d %s", s.action, r.Code, r.Raw)
		}
	}
	refuse("completer clears", 422, "completer_cannot_clear", "POST", hz+"/clear", "rect-1", map[string]any{"method": "on-site"})
	refuse("reporter clears", 422, "reporter_cannot_clear", "POST", hz+"/clear", "insp-1", map[string]any{"method": "on-site"})
	r = call(t, "POST", hz+"/clear", "verifier-1", map[string]any{"method": "on-site", "note": "验收合格"})
	if r.Code != 200 || r.Body["status"] != "cleared" || r.Body["cleared_on_time"] != true {
		t.Fatalf("clear: %d %s", r.Code, r.Raw)
	}
	if got := call(t, "GET", u+"?status=cleared", "", nil); got.Code != 200 || len(got.Body["items"].([]any)) != 1 {
		t.Fatalf("list: %s", got.Raw)
	}
	hist := call(t, "GET", hz+"/history", "", nil)
	evs := hist.Body["events"].([]any)
	if len(evs) != 5 {
		t.Fatalf("history has %d events: %s", len(evs), hist.Raw)
	}
	m.Close()

	// Restart on the same directory: every event is there, the chain unbroken.
	m = startMain(t, dir)
	defer m.Close()
	hist2 := call(t, "GET", m.URL()+"/v1/hazards/"+id+"/history", "", nil)
	evs2 := hist2.Body["events"].([]any)
	if len(evs2) != 5 {
		t.Fatalf("after restart: %d events", len(evs2))
	}
	prev := events.HashString(events.GenesisHash(id))
	for i, x := range evs2 {
		e := x.(map[string]any)
		if e["prevhash"] != prev {
			t.Fatalf("event %d: prevhash %v, want %s", i, e["prevhash"], prev)
		}
		prev = e["hash"].(string)
		if e["seq"] != evs[i].(map[string]any)["seq"] || e["hash"] != evs[i].(map[string]any)["hash"] {
			t.Fatalf("event %d changed across restart", i)
		}
	}
	st := call(t, "GET", m.URL()+"/v1/hazards/"+id, "", nil)
	if st.Body["status"] != "cleared" || st.Body["version"].(float64) != 5 || st.Body["details"].(map[string]any)["description"] != "储罐区未设紧急切断" {
		t.Fatalf("state after restart: %s", st.Raw)
	}
}

func TestServeDemoLoadsSample(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a sample")
	}
	m, err := Open(context.Background(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Demo: true, DemoSize: 300, NoSync: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := m.Index.Len(); n != 300 {
		t.Fatalf("demo loaded %d hazards, want 300", n)
	}
	counts := map[events.Status]int{}
	listed, overdue := 0, 0
	m.Index.Each(func(h *events.Hazard) bool {
		counts[h.Status]++
		if h.Listed {
			listed++
		}
		if h.Overdue(time.Now()) {
			overdue++
		}
		return true
	})
	for _, s := range []events.Status{events.StatusReported, events.StatusPlanned, events.StatusRectifying, events.StatusAwaiting, events.StatusCleared, events.StatusWithdrawn} {
		if counts[s] == 0 {
			t.Errorf("demo has no %s hazard: %v", s, counts)
		}
	}
	if listed == 0 || overdue == 0 {
		t.Errorf("demo: listed %d, overdue %d", listed, overdue)
	}
}

func callRaw(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}
