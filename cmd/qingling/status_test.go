package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"qingling/events"
	"qingling/projections/kvstatus"
)

// feedEvent is one SSE event as a client sees it, with when it arrived.
type feedEvent struct {
	id, event string
	value     kvstatus.Value
	at        time.Time
}

// follow reads /v1/feed in the background.
func follow(tb testing.TB, base, query, lastID string) (<-chan feedEvent, func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/feed"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		tb.Fatalf("feed: %d %s", res.StatusCode, b)
	}
	ch := make(chan feedEvent, 4096)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		_ = readSSE(res.Body, func(id, event string, data []byte) {
			ev := feedEvent{id: id, event: event, at: time.Now()}
			_ = json.Unmarshal(data, &ev.value)
			ch <- ev
		})
	}()
	return ch, cancel
}

// until reads events until one satisfies ok.
func until(tb testing.TB, ch <-chan feedEvent, d time.Duration, what string, ok func(feedEvent) bool) feedEvent {
	tb.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, open := <-ch:
			if !open {
				tb.Fatalf("feed ended while waiting for %s", what)
			}
			if ok(ev) {
				return ev
			}
		case <-deadline:
			tb.Fatalf("no feed event for %s", what)
		}
	}
}

func reportBody(county, grade string, occurred, deadline time.Time) map[string]any {
	b := map[string]any{"sector": "chem", "region": county, "site": map[string]any{"name": "某化工有限公司"}, "grade": grade,
		"description": "储罐区未设紧急切断", "source": "inspection", "occurred_at": events.FormatInstant(occurred), "deadline": events.FormatInstant(deadline),
		"command_id": uuid.NewString()}
	if grade == "major" {
		b["criterion"] = "chem-2017-05"
	}
	return b
}

// TestStatusAndFeedFollowCommands: a feed subscriber sees a row change after a command; the
// status read with the command's seq (min_seq) has it; a client reconnecting with
// Last-Event-ID gets exactly the changes it missed.
func TestStatusAndFeedFollowCommands(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := m.URL()
	ch, stop := follow(t, base, "?sector=chem&region=530100", "")
	defer stop()
	now := time.Now()
	r := call(t, "POST", base+"/v1/hazards", "insp-1", reportBody("530181", "major", now.Add(-time.Hour), now.AddDate(0, 1, 0)))
	if r.Code != 201 {
		t.Fatalf("report: %d %s", r.Code, r.Raw)
	}
	seq := uint64(r.Body["seq"].(float64))
	// the rows change in any order (a writer that has just started reconciles from the top)
	seen := map[string]feedEvent{}
	until(t, ch, 10*time.Second, "the county and prefecture rows", func(e feedEvent) bool {
		if e.value.Open == 1 {
			seen[e.value.Key] = e
		}
		_, c := seen["chem.530000.530100.530181"]
		_, p := seen["chem.530000.530100"]
		return c && p
	})
	ev := seen["chem.530000.530100.530181"]
	if ev.value.Open != 1 || ev.value.OpenMajor != 1 || ev.value.Zeroed || ev.value.Seq != seq || ev.value.RegionZh != "安宁市" {
		t.Fatalf("feed value: %+v", ev.value)
	}
	st := call(t, "GET", fmt.Sprintf("%s/v1/status?sector=chem&region=530181&min_seq=%d", base, seq), "", nil)
	rows, _ := st.Body["rows"].([]any)
	if st.Code != 200 || len(rows) != 1 || rows[0].(map[string]any)["open_major"].(float64) != 1 {
		t.Fatalf("status: %d %s", st.Code, st.Raw)
	}
	prefRev := seen["chem.530000.530100"].id
	if mustAtoi(ev.id) > mustAtoi(prefRev) {
		prefRev = ev.id
	}
	stop()

	// while the client is away: two more findings
	for _, c := range []string{"530102", "530181"} {
		if r := call(t, "POST", base+"/v1/hazards", "insp-1", reportBody(c, "general", now.Add(-time.Hour), now.AddDate(0, 0, 7))); r.Code != 201 {
			t.Fatalf("report: %d %s", r.Code, r.Raw)
		}
	}
	ch2, stop2 := follow(t, base, "?sector=chem&region=530100", prefRev)
	defer stop2()
	got := map[string]int{}
	last := prefRev
	for got["chem.530000.530100"] != 3 {
		ev := until(t, ch2, 10*time.Second, "the missed changes", func(feedEvent) bool { return true })
		if a, _ := strconv.Atoi(ev.id); a <= mustAtoi(last) {
			t.Fatalf("revision %s after %s", ev.id, last)
		}
		last = ev.id
		got[ev.value.Key] = ev.value.Open
	}
	if got["chem.530000.530100.530102"] != 1 || got["chem.530000.530100.530181"] != 2 {
		t.Fatalf("missed changes: %v", got)
	}
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestDeadlineCrossingMovesStatusAndFeed: with an injected clock, a deadline that passes
// changes the status and the feed although no event is recorded.
func TestDeadlineCrossingMovesStatusAndFeed(t *testing.T) {
	var clock atomic.Pointer[time.Time]
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, events.Shanghai)
	clock.Store(&start)
	m, err := Open(context.Background(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		Clock: func() time.Time { return *clock.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			m.Close()
		}
	}()
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	base := m.URL()
	if r := call(t, "POST", base+"/v1/hazards", "insp-1", reportBody("530181", "general", start, start.Add(time.Hour))); r.Code != 201 {
		t.Fatalf("report: %d %s", r.Code, r.Raw)
	}
	ch, stop := follow(t, base, "?sector=chem&region=530181", "")
	defer stop()
	until(t, ch, 10*time.Second, "the current row", func(e feedEvent) bool { return e.value.Open == 1 && e.value.Overdue == 0 })
	seq := lastSeq(t, m)
	later := start.Add(time.Hour + time.Second)
	clock.Store(&later)
	t0 := time.Now()
	ev := until(t, ch, 10*time.Second, "the crossing", func(e feedEvent) bool { return e.value.Overdue == 1 })
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the crossing took %s to reach the feed", d)
	}
	if ev.value.Zeroed || ev.value.Seq != seq {
		t.Fatalf("after the crossing: %+v", ev.value)
	}
	st := call(t, "GET", base+"/v1/status?sector=chem&region=530181", "", nil)
	if row := st.Body["rows"].([]any)[0].(map[string]any); row["overdue"].(float64) != 1 || row["zeroed"] != false {
		t.Fatalf("status after the crossing: %s", st.Raw)
	}
	if lastSeq(t, m) != seq {
		t.Fatal("the crossing recorded an event")
	}
	// as of before the crossing, the recorded past is unchanged
	st = call(t, "GET", base+"/v1/status?sector=chem&region=530181&as_of="+url.QueryEscape(events.FormatInstant(start.Add(time.Hour))), "", nil)
	if row := st.Body["rows"].([]any)[0].(map[string]any); row["overdue"].(float64) != 0 || row["open"].(float64) != 1 {
		t.Fatalf("as of the deadline: %s", st.Raw)
	}
	// shutting down ends the feed cleanly, without waiting for it
	began := time.Now()
	m.Close()
	closed = true
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Close took %s with a feed open", d)
	}
	until(t, ch, 5*time.Second, "the end of the feed", func(e feedEvent) bool { return e.event == "end" })
}

// TestRestartLoadsSnapshotAndRebuild: a restart loads the read model from its snapshot (at
// the last sequence, before any catch-up) with the same status; `qingling rebuild` refuses a
// data directory in use, rebuilds it once stopped, and serves the same status after.
func TestRestartLoadsSnapshotAndRebuild(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NoSync: true, Demo: true, DemoSize: 150, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "ready", m.Runner.Ready)
	last := lastSeq(t, m)
	waitFor(t, 10*time.Second, "caught up", func() bool { return m.Status.Seq() == last })
	before := call(t, "GET", m.URL()+"/v1/status?region=530000", "", nil).Raw

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"rebuild", "--data", dir}, &out, &errb); code == exitOK || !strings.Contains(errb.String(), "locked") {
		t.Fatalf("rebuild while serving: %d %s", code, errb.String())
	}
	m.Close()

	m, err = Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Status.Seq(); s != last || m.Index.Applied() != last || m.Index.Len() != 150 {
		t.Fatalf("after restart, before catch-up: status at %d, index at %d with %d hazards; want %d", s, m.Index.Applied(), m.Index.Len(), last)
	}
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	if after := call(t, "GET", m.URL()+"/v1/status?region=530000", "", nil).Raw; !sameRows(t, before, after) {
		t.Fatalf("status differs after restart")
	}
	m.Close()

	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"rebuild", "--data", dir}, &out, &errb); code != exitOK || !strings.Contains(out.String(), fmt.Sprintf("rebuilt %d events, 150 hazards", last)) {
		t.Fatalf("rebuild: %d %s %s", code, out.String(), errb.String())
	}
	log := &logBuf{}
	m, err = Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	if after := call(t, "GET", m.URL()+"/v1/status?region=530000", "", nil).Raw; !sameRows(t, before, after) {
		t.Fatalf("status differs after rebuild")
	}
	// the rebuilt snapshot holds the evidence references too: no backfill of the log
	if !m.Refs.Complete() || log.has("evidence references read") || !log.has("read model loaded from its snapshot") {
		t.Fatalf("evidence references after a start from the rebuilt snapshot: complete %v\n%s", m.Refs.Complete(), log.b.String())
	}
}

// sameRows compares two /v1/status answers' rows (the live instant differs).
func sameRows(t *testing.T, a, b []byte) bool {
	var x, y struct {
		Rows []map[string]any `json:"rows"`
	}
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil || len(x.Rows) == 0 {
		t.Fatalf("bad status answers:\n%s\n%s", a, b)
	}
	xa, _ := json.Marshal(x.Rows)
	ya, _ := json.Marshal(y.Rows)
	return bytes.Equal(xa, ya)
}

// TestStatusAndWatchVerbs: `qingling status` prints the prefecture × sector table with names
// and codes; `qingling watch` prints live changes.
func TestStatusAndWatchVerbs(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	now := time.Now()
	r := call(t, "POST", m.URL()+"/v1/hazards", "insp-1", reportBody("530181", "major", now.Add(-time.Hour), now.AddDate(0, 1, 0)))
	if r.Code != 201 {
		t.Fatal(r.Code)
	}
	seq := strconv.Itoa(int(r.Body["seq"].(float64)))
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"status", "--server", m.URL(), "--min-seq", seq}, &out, &errb); code != exitOK {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	for _, want := range []string{"昆明市 530100", "曲靖市 530300", "合计 云南省 530000", "危险化学品 chem", "全部行业 all", "1/1/0 ✗", "0/0/0 ✓"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("status table lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"status", "--server", m.URL(), "--sector", "chem", "--region", "530100", "--from", now.Format("2006-01-02"), "--to", now.Format("2006-01-02")}, &out, &errb); code != exitOK ||
		!strings.Contains(out.String(), "安宁市 530181") || !strings.Contains(out.String(), "动态清零率") {
		t.Fatalf("status --sector: %d\n%s%s", code, out.String(), errb.String())
	}
	if code := run(context.Background(), []string{"status", "--server", m.URL(), "--sector", "coal"}, &out, &errb); code != exitInvalid {
		t.Fatalf("status --sector coal: %d", code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"watch", "--server", m.URL(), "--sector", "chem", "--region", "530181"}, pw, &errb)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "chem.530000.530100.530181") || !strings.Contains(sc.Text(), "安宁市") {
		t.Fatalf("watch: %q", sc.Text())
	}
	if r := call(t, "POST", m.URL()+"/v1/hazards", "insp-1", reportBody("530181", "general", now.Add(-time.Hour), now.AddDate(0, 0, 5))); r.Code != 201 {
		t.Fatal(r.Code)
	}
	if !sc.Scan() || !strings.Contains(sc.Text(), "未销号 2") {
		t.Fatalf("watch after a command: %q", sc.Text())
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if code := <-done; code != exitOK {
		t.Fatalf("watch exit %d", code)
	}
}

// BenchmarkFeedLatency measures command ack (the HTTP answer to a report) → the SSE event of
// the hazard's county row, through the whole serve wiring: append, ordered consumer, status,
// hz_status put, the hub's watch, the SSE stream. QINGLING_BENCH_SYNC=1 fsyncs every write.
func BenchmarkFeedLatency(b *testing.B) {
	m, err := Open(context.Background(), Config{DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", NoSync: !benchSync(), Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !m.Runner.Ready() && time.Now().Before(deadline) {
		<-time.After(5 * time.Millisecond)
	}
	ch, stop := follow(b, m.URL(), "?sector=chem&region=530181", "")
	defer stop()
	client := &http.Client{}
	now := time.Now()
	var lat []time.Duration
	var mu sync.Mutex
	early := 0
	b.ResetTimer()
	for i := range b.N {
		body, _ := json.Marshal(reportBody("530181", "general", now.Add(-time.Hour), now.AddDate(0, 0, 30)))
		req, _ := http.NewRequest("POST", m.URL()+"/v1/hazards", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Qingling-Actor", "insp-1")
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		ack := time.Now()
		if res.StatusCode != 201 {
			b.Fatalf("report: %d", res.StatusCode)
		}
		ev := until(b, ch, 10*time.Second, "the row", func(e feedEvent) bool {
			return e.value.Key == "chem.530000.530100.530181" && e.value.Open == i+1
		})
		mu.Lock()
		if ev.at.Before(ack) {
			early++ // the feed was faster than the HTTP answer
		}
		lat = append(lat, max(ev.at.Sub(ack), 0))
		mu.Unlock()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e6 }
	b.ReportMetric(q(0.5), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(q(1), "max_ms")
	b.ReportMetric(100*float64(early)/float64(len(lat)), "before_ack_%")
}

func benchSync() bool { v, _ := strconv.ParseBool(envOr("QINGLING_BENCH_SYNC", "false")); return v }
