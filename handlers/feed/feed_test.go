package feed_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/handlers/app"
	"qingling/handlers/feed"
	"qingling/handlers/httpapi"
	"qingling/handlers/internal/testserver"
	"qingling/projections"
	"qingling/projections/kvstatus"
	"qingling/projections/status"
)

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, events.Shanghai)

type env struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	hub *feed.Hub
	api *feed.API
	srv *httptest.Server
	sp  *status.Projection
	idx *projections.Index
	now time.Time
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T, keep int) *env {
	t.Helper()
	j := testserver.Start(t)
	js, cat := j.Store.JetStream(), j.Catalog
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kv, err := kvstatus.Open(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, kv: kv, now: t0}
	e.idx = projections.NewIndex(cat)
	e.sp = status.New(status.Config{Catalog: cat, Clock: func() time.Time { return e.now }})
	e.hub = &feed.Hub{KV: kv, JS: js, Keep: keep, Log: quiet()}
	go e.hub.Run(ctx)
	api := &httpapi.Server{App: &app.Service{Catalog: cat, Index: e.idx}, Log: quiet()}
	e.api = &feed.API{Server: api, Catalog: cat, Index: e.idx, Status: e.sp, Hub: e.hub, Heartbeat: 30 * time.Millisecond, WaitFor: 200 * time.Millisecond}
	api.Extra = e.api.Mount
	e.srv = httptest.NewServer(api.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) put(t *testing.T, key string, open int) uint64 {
	t.Helper()
	b, _ := json.Marshal(kvstatus.Value{Row: status.Row{Key: key, Counts: status.Counts{Open: open}}})
	rev, err := e.kv.Put(context.Background(), key, b)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

type sseEvent struct {
	id, event string
	data      string
}

// stream connects to the feed and returns its events as they come.
func (e *env) stream(t *testing.T, query, lastID string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/v1/feed"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("feed: %d %s", res.StatusCode, b)
	}
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ": heartbeat"):
				ch <- sseEvent{event: "heartbeat"}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return ch, cancel
}

// next returns the next event that is not a heartbeat (or fails after d).
func next(t *testing.T, ch <-chan sseEvent, d time.Duration) sseEvent {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.event == "heartbeat" {
				continue
			}
			return ev
		case <-deadline:
			t.Fatal("no event in time")
		}
	}
}

func TestFeedLiveResumeAndFilters(t *testing.T) {
	e := newEnv(t, 3)
	r1 := e.put(t, "chem.530000.530100.530181", 1)
	e.put(t, "mine.530000.530100.530181", 1)

	// a fresh subscriber gets the current value of every matching key, then live changes
	ch, stop := e.stream(t, "?sector=chem", "")
	defer stop()
	if ev := next(t, ch, 5*time.Second); ev.id != strconv.FormatUint(r1, 10) || ev.event != "status" || !strings.Contains(ev.data, `"open":1`) {
		t.Fatalf("first event: %+v", ev)
	}
	r3 := e.put(t, "chem.530000.530300.530302", 2)
	e.put(t, "mine.530000.530300.530302", 5) // filtered out
	if ev := next(t, ch, 5*time.Second); ev.id != strconv.FormatUint(r3, 10) || !strings.Contains(ev.data, "530302") {
		t.Fatalf("live event: %+v", ev)
	}
	// heartbeats keep the connection alive
	deadline := time.After(5 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-ch:
			seen = ev.event == "heartbeat"
		case <-deadline:
			t.Fatal("no heartbeat")
		}
	}
	stop()

	// a gap: more changes while the client was away, more than the hub keeps in memory
	var revs []uint64
	for i := range 6 {
		revs = append(revs, e.put(t, "chem.530000.530100", 10+i))
		e.put(t, "forest.530000.530100", i)
	}
	waitFor(t, func() bool { return e.hub.Last() >= revs[5]+1 })
	for _, from := range []uint64{r3, revs[3]} { // from history, from memory
		var want []string
		for _, r := range revs {
			if r > from {
				want = append(want, strconv.FormatUint(r, 10))
			}
		}
		ch, stop := e.stream(t, "?sector=chem&region=530100", strconv.FormatUint(from, 10))
		var got []string
		for range want {
			got = append(got, next(t, ch, 5*time.Second).id)
		}
		stop()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("resume after %d: got %v, want %v", from, got, want)
		}
	}
}

func TestFeedEndsCleanlyOnClose(t *testing.T) {
	e := newEnv(t, 0)
	e.put(t, "chem.530000", 1)
	ch, stop := e.stream(t, "", "")
	defer stop()
	next(t, ch, 5*time.Second)
	e.hub.Close()
	if ev := next(t, ch, 5*time.Second); ev.event != "end" || !strings.Contains(ev.data, "shutdown") {
		t.Fatalf("end event: %+v", ev)
	}
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
	res, _ := http.Get(e.srv.URL + "/v1/feed")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("feed after close: %d", res.StatusCode)
	}
}

func TestFeedRejectsBadInput(t *testing.T) {
	e := newEnv(t, 0)
	for q, want := range map[string]string{"?sector=coal": "unknown_sector", "?region=999999": "unknown_region", "?x=1": "unknown_parameter", "?last_event_id=abc": "invalid_last_event_id"} {
		res, err := http.Get(e.srv.URL + "/v1/feed" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s", q, res.StatusCode, b)
		}
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	if res.StatusCode != 200 && v != nil {
		t.Logf("%s: %s", url, b)
	}
	return res.StatusCode
}

func TestStatusEndpoints(t *testing.T) {
	e := newEnv(t, 0)
	cat, _ := events.LoadCatalog()
	// one major finding recorded at t0, due in a day
	cmd := &events.Command{Action: events.ActReport, HazardID: "0193f2c4-0000-7000-8000-000000000001", CommandID: "0193f2c4-0000-7000-8000-0000000000c1",
		Actor: events.Actor{ID: "insp-1"}, Payload: &events.Reported{Sector: "chem", Region: "530181", Site: events.Site{Name: "某化工有限公司"}, Grade: events.GradeMajor,
			Criterion: "chem-2017-05", Description: "储罐区未设紧急切断", Source: "inspection", Deadline: events.FormatInstant(t0.Add(24 * time.Hour))}}
	ev, err := events.Decide(cat, nil, cmd, t0, events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := ev.Marshal()
	p, _ := ev.Payload()
	_ = e.idx.ApplyParsed(1, raw, ev, p)
	e.sp.ApplyEvent(1, ev, p)
	e.idx.MarkApplied(1)
	e.now = t0.AddDate(0, 0, 3)

	var st feed.StatusResponse
	if c := getJSON(t, e.srv.URL+"/v1/status?sector=chem&region=530100&min_seq=1", &st); c != 200 || !st.Live || st.Seq != 1 || len(st.Rows) != 15 {
		t.Fatalf("status: %d %+v", c, st)
	}
	if r := st.Rows[0]; r.Key != "chem.530000.530100" || r.Open != 1 || r.Overdue != 1 || r.Zeroed || r.RegionZh != "昆明市" {
		t.Fatalf("row: %+v", r)
	}
	// as of a past date: the end of 2025-03-01, before the deadline
	if c := getJSON(t, e.srv.URL+"/v1/status?sector=chem&region=530181&as_of=2025-03-01", &st); c != 200 || st.Live || st.Rows[0].Overdue != 0 || st.Rows[0].Open != 1 {
		t.Fatalf("as of: %d %+v", c, st)
	}
	if c := getJSON(t, e.srv.URL+"/v1/status?sector=chem&region=530181&as_of=2025-02-28", &st); c != 200 || st.Rows[0].Open != 0 {
		t.Fatalf("as of before: %d %+v", c, st)
	}
	// today's date: the day has not ended, so the status now
	if c := getJSON(t, e.srv.URL+"/v1/status?sector=chem&region=530181&as_of=2025-03-04", &st); c != 200 || !st.Live || st.Rows[0].Overdue != 1 {
		t.Fatalf("as of today: %d %+v", c, st)
	}
	// period figures
	if c := getJSON(t, e.srv.URL+"/v1/status?sector=chem&region=530181&from=2025-03-01&to=2025-03-01", &st); c != 200 || st.Rows[0].Period == nil ||
		st.Rows[0].Period.FoundMajor != 1 || st.Rows[0].Period.MajorDue != 1 || *st.Rows[0].Period.DynamicZeroRate != 0 {
		t.Fatalf("period: %d %+v", c, st.Rows[0].Period)
	}
	// daily
	var d feed.DailyResponse
	if c := getJSON(t, e.srv.URL+"/v1/status/daily?sector=chem&region=530181&from=2025-02-28&to=2025-03-10", &d); c != 200 || len(d.Days) != 5 ||
		d.Days[0].Open != 0 || d.Days[1].Open != 1 || d.Days[1].Overdue != 0 || d.Days[2].Overdue != 1 || !d.Days[4].Partial || d.Key != "chem.530000.530100.530181" {
		t.Fatalf("daily: %d %+v", c, d)
	}
	for q, code := range map[string]int{"/v1/status?sector=coal": 400, "/v1/status?as_of=tomorrow": 400, "/v1/status?from=2025-03-01": 400,
		"/v1/status?as_of=2030-01-01": 400, "/v1/status?min_seq=9": 503, "/v1/status/daily?region=999999": 400, "/v1/status?bogus=1": 400} {
		if c := getJSON(t, e.srv.URL+q, nil); c != code {
			t.Errorf("%s: %d, want %d", q, c, code)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		<-tick.C
	}
}
