package export_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/xuri/excelize/v2"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/demo"
	"qingling/handlers/export"
	"qingling/handlers/internal/testserver"
	"qingling/projections"
	"qingling/projections/ledger"
	"qingling/projections/status"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// The simulated history: a fixed seed and a fixed end, so the reports are the same every run.
var (
	demoNow = time.Date(2025, 6, 30, 18, 0, 0, 0, events.Shanghai)
	demoCfg = demo.Config{Hazards: 150, Seed: 2025, Now: demoNow, Days: 200}
	q2From  = time.Date(2025, 4, 1, 0, 0, 0, 0, events.Shanghai)
	q2To    = time.Date(2025, 7, 1, 0, 0, 0, 0, events.Shanghai)
)

type world struct {
	ctx   context.Context
	cat   *events.Catalog
	store *jsstore.Store
	js    jetstream.JetStream
	svc   *app.Service
}

func newWorld(t *testing.T) *world {
	t.Helper()
	js := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	w := &world{ctx: ctx, cat: js.Catalog, store: js.Store, js: js.Store.JetStream()}
	w.svc = &app.Service{Catalog: w.cat, Index: projections.NewIndex(w.cat), Log: w.store}
	return w
}

// demoWorld loads the simulated history through the real command path.
func demoWorld(t *testing.T) (*world, *export.Reports) {
	t.Helper()
	w := newWorld(t)
	if _, err := demo.Load(w.ctx, w.svc, demo.Plan(w.cat, demoCfg), demoCfg); err != nil {
		t.Fatal(err)
	}
	reps, err := export.Load(w.ctx, w.js, "HAZARDS", w.cat, "hz.>", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reps.Skipped != 0 || reps.Events == 0 {
		t.Fatalf("loaded %d events, skipped %d", reps.Events, reps.Skipped)
	}
	return w, reps
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./handlers/export -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(go test ./handlers/export -update rewrites it after a deliberate change)", path, i+1, g, w)
			}
		}
	}
}

// xlsxDump is the text of every cell of a sheet, tab-separated, one line per row.
func xlsxDump(t *testing.T, b []byte, sheet string) []byte {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the XLSX does not open: %v", err)
	}
	defer f.Close()
	rows, err := f.GetRows(sheet)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, r := range rows {
		out.WriteString(strings.Join(r, "\t") + "\n")
	}
	return out.Bytes()
}

func TestGoldenExports(t *testing.T) {
	w, reps := demoWorld(t)
	rows := reps.Ledger.Rows(ledger.Query{Region: "530000", From: q2From, To: q2To})
	if len(rows) == 0 {
		t.Fatal("an empty ledger")
	}
	var b bytes.Buffer
	if err := export.WriteLedgerCSV(&b, rows); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("\xEF\xBB\xBF序号,隐患编号,行业领域")) {
		t.Fatalf("the CSV does not start with a BOM and the Chinese headings: %q", b.Bytes()[:40])
	}
	golden(t, "ledger_2025Q2.csv", b.Bytes())

	asOf := q2To.Add(-time.Nanosecond)
	b.Reset()
	if err := export.WriteLedgerXLSX(&b, export.Title("隐患台账 Hazard ledger", q2From, q2To, asOf), rows); err != nil {
		t.Fatal(err)
	}
	golden(t, "ledger_2025Q2.xlsx", xlsxDump(t, b.Bytes(), export.LedgerSheet))

	tab, err := ledger.Quarterly(reps.Status, reps.Ledger, status.Select{Region: "530000"}, q2From, q2To, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := export.WriteQuarterlyCSV(&b, tab); err != nil {
		t.Fatal(err)
	}
	golden(t, "quarterly_2025Q2.csv", b.Bytes())
	b.Reset()
	if err := export.WriteQuarterlyXLSX(&b, export.Title("隐患排查治理情况统计表 Quarterly statistics", q2From, q2To, tab.AsOf), tab); err != nil {
		t.Fatal(err)
	}
	golden(t, "quarterly_2025Q2.xlsx", xlsxDump(t, b.Bytes(), export.QuarterlySheet))
	_ = w
}

// TestXLSXTotalsEqualStatus: the quarterly XLSX, opened with excelize, holds exactly the
// figures the live status projection (fed by the runner, as serve feeds it) gives for the
// same period and instant; the counts by source add up to those found; and the ledger's rows
// found in the period are the table's found.
func TestXLSXTotalsEqualStatus(t *testing.T) {
	w, reps := demoWorld(t)
	// The status as the server computes it: the runner feeding the index and the projection.
	live := status.New(status.Config{Catalog: w.cat})
	idx := projections.NewIndex(w.cat)
	runner := &projections.Runner{Source: w.store, Index: idx, Projections: []projections.Projection{live}}
	rctx, stop := context.WithCancel(w.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(rctx) }()
	last, _ := w.store.LastSeq(w.ctx)
	if err := idx.WaitApplied(w.ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done

	for _, p := range []struct{ from, to time.Time }{{q2From, q2To}, {time.Date(2025, 1, 1, 0, 0, 0, 0, events.Shanghai), q2From}, {time.Date(2025, 5, 10, 0, 0, 0, 0, events.Shanghai), time.Date(2025, 6, 20, 0, 0, 0, 0, events.Shanghai)}} {
		asOf := p.to.Add(-time.Nanosecond)
		tab, err := ledger.Quarterly(reps.Status, reps.Ledger, status.Select{Region: "530000"}, p.from, p.to, asOf)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := export.WriteQuarterlyXLSX(&b, "t", tab); err != nil {
			t.Fatal(err)
		}
		f, err := excelize.OpenReader(&b)
		if err != nil {
			t.Fatal(err)
		}
		cells, err := f.GetRows(export.QuarterlySheet, excelize.Options{RawCellValue: true})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, err := live.Status(status.Select{Region: "530000"}, asOf, &status.PeriodSpec{From: p.from, To: p.to})
		if err != nil {
			t.Fatal(err)
		}
		head := ledger.QuarterlyHeader
		col := func(name string) int {
			for i, h := range head {
				if h == name {
					return i
				}
			}
			t.Fatalf("no column %s", name)
			return -1
		}
		data := cells[export.FirstDataRow-1:]
		if len(data) != len(want.Rows) {
			t.Fatalf("%d rows in the XLSX, %d in the status", len(data), len(want.Rows))
		}
		for i, r := range want.Rows {
			got := data[i]
			num := func(name string) int {
				v, err := strconv.Atoi(got[col(name)])
				if err != nil {
					t.Fatalf("row %d %s: %q", i, name, got[col(name)])
				}
				return v
			}
			if got[0] != r.Region || got[4] != r.Sector {
				t.Fatalf("row %d is %s/%s, the status row %s/%s", i, got[0], got[4], r.Region, r.Sector)
			}
			c, pr := r.Counts, r.Period
			checks := map[string]int{
				"本期排查隐患": pr.Found, "其中重大隐患": pr.FoundMajor, "其中一般隐患": pr.Found - pr.FoundMajor,
				"本期发现已整改销号": pr.Cleared, "其中按期整改": pr.ClearedOnTime, "重大隐患应销号": pr.MajorDue, "重大隐患按期销号": pr.MajorClearedOnTime,
				"未销号隐患": c.Open, "其中重大": c.OpenMajor, "逾期未整改": c.Overdue, "其中重大逾期": c.OverdueMajor, "待验收": c.AwaitingVerification,
				"验收超期": c.VerificationOverdue, "挂牌督办未销号": c.Listed, "挂牌督办逾期": c.ListedOverdue, "存量隐患": c.Stock,
				"增量隐患": c.Increment, "存量重大隐患": c.StockMajor,
			}
			for name, v := range checks {
				if g := num(name); g != v {
					t.Errorf("%s %s %s: the XLSX says %d, the status %d", p.from.Format("01-02"), r.Key, name, g, v)
				}
			}
			if src := num("执法检查发现") + num("企业自查发现") + num("第三方服务发现") + num("举报发现"); src != pr.Found {
				t.Errorf("%s: by source %d, found %d", r.Key, src, pr.Found)
			}
			rate := got[col("动态清零率")]
			switch {
			case pr.DynamicZeroRate == nil && rate != "":
				t.Errorf("%s: rate %q, the status has none", r.Key, rate)
			case pr.DynamicZeroRate != nil:
				if g, err := strconv.ParseFloat(rate, 64); err != nil || fmt.Sprintf("%.9f", g) != fmt.Sprintf("%.9f", *pr.DynamicZeroRate) {
					t.Errorf("%s: rate %q, the status %v", r.Key, rate, *pr.DynamicZeroRate)
				}
			}
		}
		// The ledger: its rows found in the period are the province's found.
		rows := reps.Ledger.Rows(ledger.Query{Region: "530000", From: p.from, To: p.to, AsOf: asOf})
		found := 0
		for _, r := range rows {
			if !r.FoundAt.Before(p.from) {
				found++
			}
		}
		if top := want.Rows[0]; top.Sector != status.AllSectors || top.Region != "530000" || found != top.Period.Found {
			t.Errorf("the ledger lists %d hazards found in the period, the status of %s counts %d", found, top.Key, top.Period.Found)
		}
	}
}

// TestStatusAsOfEqualsLive: the commands run one after the other on a moving clock while a
// live status projection follows them; the status captured live at instants T equals the
// status at T rebuilt from the log afterwards.
func TestStatusAsOfEqualsLive(t *testing.T) {
	w := newWorld(t)
	var now time.Time
	clock := func() time.Time { return now }
	w.svc.Clock = clock
	live := status.New(status.Config{Catalog: w.cat, Clock: clock})
	cfg := demoCfg
	cfg.Hazards = 80
	var steps []demo.Step
	for _, h := range demo.Plan(w.cat, cfg) {
		steps = append(steps, h...)
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At.Before(steps[j].At) })
	sel := status.Select{Region: "530000"}
	type capture struct {
		at   time.Time
		rows []status.Row
	}
	var caps []capture
	for i, st := range steps {
		now = st.At
		c := *st.Cmd
		res, err := w.svc.Execute(w.ctx, &c)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		m, err := w.store.Get(w.ctx, res.Hazard.Seq)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := events.ParseEvent(m.Data)
		p, _ := e.Payload()
		live.ApplyEvent(m.Seq, e, p)
		// Capture only between instants: the next command is recorded strictly later.
		if i%37 == 0 && i+1 < len(steps) && steps[i+1].At.After(now) {
			res, err := live.Status(sel, time.Time{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			caps = append(caps, capture{at: res.AsOf, rows: res.Rows})
		}
	}
	// A capture after the end, once deadlines have passed by the clock alone.
	now = now.AddDate(0, 2, 0)
	res, _ := live.Status(sel, time.Time{}, nil)
	caps = append(caps, capture{at: res.AsOf, rows: res.Rows})
	if len(caps) < 5 {
		t.Fatalf("only %d captures", len(caps))
	}
	reps, err := export.Load(w.ctx, w.js, "HAZARDS", w.cat, "hz.>", clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps {
		got, err := reps.Status.Status(sel, c.at, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Rows) != len(c.rows) {
			t.Fatalf("as of %s: %d rows, live %d", c.at, len(got.Rows), len(c.rows))
		}
		nonzero := false
		for i := range got.Rows {
			if got.Rows[i].Counts != c.rows[i].Counts {
				t.Errorf("as of %s, %s: rebuilt %+v, live %+v", events.FormatInstant(c.at), c.rows[i].Key, got.Rows[i].Counts, c.rows[i].Counts)
			}
			nonzero = nonzero || c.rows[i].Open > 0
		}
		if !nonzero && c.at.Before(demoNow) {
			t.Errorf("as of %s: nothing open — the capture checks nothing", c.at)
		}
	}
}

// TestStreamPrefix: a county office's log (leaf.<county>.hz.…) is filtered under its prefix;
// the hub's and a single server's (hz.…) as they are.
func TestStreamPrefix(t *testing.T) {
	for _, c := range []struct {
		subjects []string
		want     string
	}{
		{[]string{"hz.*.*.*.*.*"}, ""},
		{[]string{"leaf.530102.hz.*.*.*.*.*"}, "leaf.530102."},
		{nil, ""},
		{[]string{"other.>"}, ""},
	} {
		if got := export.StreamPrefix(c.subjects); got != c.want {
			t.Errorf("StreamPrefix(%v) = %q, want %q", c.subjects, got, c.want)
		}
	}
}
