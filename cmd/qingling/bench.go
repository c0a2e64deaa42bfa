package main

// qingling bench: every path side by side with raw JetStream, in one process and one run
// (issue 8). Durable rows share one embedded server with serve's settings (SyncAlways); the
// rows without fsync share a second one that differs only in NoSync. Ratios compare rows
// measured moments apart, with the raw and Qingling runs of each concurrency interleaved in
// rounds, so that the noise of a shared machine falls on both alike.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/demo"
	"qingling/handlers/natsapi"
	"qingling/projections"
	"qingling/projections/status"
)

type benchConfig struct {
	events     int
	appends    int
	rounds     int
	clients    []int
	json       bool
	store      string
	rows       map[string]bool
	cpuprofile string
	blockprof  string
	feedN      int
	group      jsstore.GroupCommit // the bench store's group commit (serve's defaults unless set)
	out        io.Writer
	errw       io.Writer
}

var benchGroups = []string{"startup", "rebuild", "memory", "append", "nosync", "nats", "http", "feed"}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := benchConfig{out: stdout, errw: stderr}
	fs.IntVar(&cfg.events, "events", 100_000, "events in the log for rebuild, memory and start-up (up to 10 million)")
	fs.IntVar(&cfg.appends, "appends", 20_000, "appends per append row")
	fs.IntVar(&cfg.rounds, "rounds", 2, "rounds each append row is split into, interleaved with its raw baseline")
	clients := fs.String("clients", "1,16,64,128", "concurrent clients of the append rows")
	fs.BoolVar(&cfg.json, "json", false, "print the rows as JSON")
	fs.StringVar(&cfg.store, "store", "", "keep the prepared log in this directory and reuse it in later runs (default: a temporary one)")
	rows := fs.String("rows", strings.Join(benchGroups, ","), "row groups to run: "+strings.Join(benchGroups, ","))
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured rows to this file")
	fs.StringVar(&cfg.blockprof, "blockprofile", "", "write profiles of where goroutines waited to FILE.block and FILE.mutex")
	fs.IntVar(&cfg.feedN, "feed", 300, "commands for the feed latency row")
	fs.IntVar(&cfg.group.MinInFlight, "group-min-inflight", 0, "store rows: appends in flight from which group commit batches (0: the store's default)")
	fs.IntVar(&cfg.group.MinBatch, "group-min-batch", 0, "store rows: smallest batch (0: the store's default)")
	fs.DurationVar(&cfg.group.Linger, "group-linger", 0, "store rows: group commit linger (0: the store's default)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			fmt.Fprintf(stderr, "qingling bench: --clients %q: want numbers from 1 to 4096\n", *clients)
			return exitUsage
		}
		cfg.clients = append(cfg.clients, n)
	}
	cfg.rows = map[string]bool{}
	for _, r := range strings.Split(*rows, ",") {
		r = strings.TrimSpace(r)
		if !slices.Contains(benchGroups, r) {
			fmt.Fprintf(stderr, "qingling bench: --rows: unknown group %q; groups: %s\n", r, strings.Join(benchGroups, ","))
			return exitUsage
		}
		cfg.rows[r] = true
	}
	if cfg.events < 2 || cfg.events > 10_000_000 || cfg.appends < 1 || cfg.rounds < 1 {
		fmt.Fprintln(stderr, "qingling bench: --events from 2 to 10,000,000, --appends and --rounds at least 1")
		return exitUsage
	}
	rowsOut, err := runBench(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "qingling bench:", err)
		return exitFailure
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rowsOut)
	}
	return exitOK
}

// benchRow is one measured line.
type benchRow struct {
	Name     string  `json:"name"`
	Clients  int     `json:"clients,omitempty"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	P50      float64 `json:"p50_ms,omitempty"`
	P99      float64 `json:"p99_ms,omitempty"`
	Baseline string  `json:"baseline,omitempty"`
	BaseVal  float64 `json:"baseline_value,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// target of a row: a ratio at least min, or a value at most max.
type target struct {
	ratio float64 // ≥ ratio × baseline
	max   float64 // value ≤ max
}

func (t target) apply(r *benchRow) {
	switch {
	case t.ratio > 0:
		r.Target = fmt.Sprintf("≥%.1f×", t.ratio)
		if r.BaseVal > 0 {
			ok := r.Ratio >= t.ratio
			r.Met = &ok
		}
	case t.max > 0:
		r.Target = fmt.Sprintf("≤%s %s", trimFloat(t.max), r.Unit)
		ok := r.Value <= t.max
		r.Met = &ok
	}
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

type bench struct {
	cfg   benchConfig
	cat   *events.Catalog
	rows  []benchRow
	data  []byte // a stored-size progress event
	quiet *slog.Logger
}

func (b *bench) add(r benchRow, t target) {
	if r.BaseVal > 0 && r.Ratio == 0 {
		r.Ratio = r.Value / r.BaseVal
	}
	t.apply(&r)
	b.rows = append(b.rows, r)
	if b.cfg.json {
		return
	}
	fmt.Fprintln(b.cfg.out, b.line(&r))
}

// line is a row of the table (fixed columns, so rows can be printed as they are measured).
func (b *bench) line(r *benchRow) string {
	clients, ratio, met, lat := "", "", "", ""
	if r.Clients > 0 {
		clients = strconv.Itoa(r.Clients)
	}
	if r.BaseVal > 0 {
		ratio = fmt.Sprintf("%.2f×", r.Ratio)
	}
	if r.Met != nil {
		met = map[bool]string{true: "met", false: "MISSED"}[*r.Met]
	}
	if r.P99 > 0 {
		lat = fmt.Sprintf("%.2f / %.2f", r.P50, r.P99)
	}
	return fmt.Sprintf("%-46s %7s %10s %-8s %15s %6s %-13s %-6s %s", r.Name, clients, humanNum(r.Value), r.Unit, lat, ratio, r.Target, met, r.Note)
}

func humanNum(v float64) string {
	if v >= 100 {
		s := strconv.FormatInt(int64(v+0.5), 10)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func runBench(ctx context.Context, cfg benchConfig) ([]benchRow, error) {
	cat, err := events.LoadCatalog()
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, cat: cat, quiet: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if b.data, err = progressEvent(cat); err != nil {
		return nil, err
	}
	dir := cfg.store
	if dir == "" {
		if dir, err = os.MkdirTemp("", "qingling-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	if !cfg.json {
		fmt.Fprintf(cfg.out, "qingling bench: log of %d events, %d appends a row in %d rounds, GOMAXPROCS %d, %s, nats-server %s\n",
			cfg.events, cfg.appends, cfg.rounds, runtime.GOMAXPROCS(0), runtime.Version(), server.VERSION)
		fmt.Fprintln(cfg.out, "ratios are to the raw JetStream row of the same concurrency and sync setting, measured in the same run")
		fmt.Fprintln(cfg.out)
	}
	if err := b.prepareLog(ctx, dir); err != nil {
		return nil, err
	}
	if cfg.store != "" {
		// Run on a copy: the rows' own commands must not grow the kept log.
		work, err := os.MkdirTemp(filepath.Dir(filepath.Clean(cfg.store)), "qingling-bench-run-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
		if err := copyTree(filepath.Join(dir, "jetstream"), filepath.Join(work, "jetstream")); err != nil {
			return nil, err
		}
		dir = work
	}
	if cfg.blockprof != "" {
		runtime.SetBlockProfileRate(1)
		runtime.SetMutexProfileFraction(1)
		defer func() {
			for _, kind := range []string{"block", "mutex"} {
				if f, err := os.Create(cfg.blockprof + "." + kind); err == nil {
					_ = pprof.Lookup(kind).WriteTo(f, 0)
					f.Close()
				}
			}
			runtime.SetBlockProfileRate(0)
			runtime.SetMutexProfileFraction(0)
		}()
	}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	if !cfg.json {
		fmt.Fprintf(cfg.out, "%-46s %7s %10s %-8s %15s %6s %-13s %-6s %s\n", "row", "clients", "value", "unit", "p50 / p99 ms", "×raw", "target", "", "note")
	}

	if cfg.rows["memory"] {
		if err := b.memory(ctx); err != nil {
			return nil, err
		}
	}
	// The rebuild as `qingling rebuild` runs it: the embedded server alone in the process, no
	// serving read model beside it (whose heap the collector would scan meanwhile).
	if cfg.rows["rebuild"] {
		if err := b.rebuildAlone(ctx, dir); err != nil {
			return nil, err
		}
	}
	if cfg.rows["startup"] || cfg.rows["append"] || cfg.rows["nats"] || cfg.rows["http"] || cfg.rows["feed"] {
		if err := b.serveRows(ctx, dir); err != nil {
			return nil, err
		}
	}
	if cfg.rows["nosync"] {
		if err := b.noSyncAppends(ctx); err != nil {
			return nil, err
		}
	}
	return b.rows, nil
}

// serveRows opens Qingling over the prepared log in dir as serve does and runs the rows that
// need it running: start-up without and with the read-model snapshot (which the first start
// writes after its catch-up), appends through the store, NATS and HTTP, the feed.
func (b *bench) serveRows(ctx context.Context, dir string) error {
	cfg := b.cfg
	if err := os.Remove(filepath.Join(dir, "readmodel.snap")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var m *Main
	for _, how := range []string{"cold: replays the log", "warm: snapshot + tail"} {
		if m != nil {
			m.Close()
		}
		var h0 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&h0)
		_, statErr := os.Stat(filepath.Join(dir, "readmodel.snap"))
		took, mm, err := b.startServe(ctx, dir)
		if err != nil {
			return err
		}
		m = mm
		if !cfg.rows["startup"] {
			break
		}
		logLen, err := m.Store.LastSeq(ctx)
		if err != nil {
			m.Close()
			return err
		}
		var h1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&h1)
		note := fmt.Sprintf("log of %d events, %d hazards; heap %+.0f MiB (NATS server included)", logLen, m.Index.Len(), float64(int64(h1.HeapAlloc)-int64(h0.HeapAlloc))/(1<<20))
		if statErr == nil {
			note += "; snapshot found"
		}
		b.add(benchRow{Name: "serve start-up, " + how, Value: took.Seconds(), Unit: "s", Note: note},
			target{max: 5 * float64(max(logLen, 1_000_000)) / 1e6})
	}
	defer m.Close()
	if cfg.rows["append"] || cfg.rows["nats"] || cfg.rows["http"] {
		if err := b.durableAppends(ctx, m); err != nil {
			return err
		}
	}
	if cfg.rows["feed"] {
		if err := b.feed(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// startServe opens Qingling on dir as serve does and waits until its runner is ready. The
// snapshot a cold start writes after readiness is waited for too (not timed), so that it
// does not run beside the rows measured next.
func (b *bench) startServe(ctx context.Context, dir string) (time.Duration, *Main, error) {
	snap := filepath.Join(dir, "readmodel.snap")
	_, statErr := os.Stat(snap)
	start := time.Now()
	m, err := Open(ctx, Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Log: b.quiet, Out: io.Discard})
	if err != nil {
		return 0, nil, err
	}
	for !m.Runner.Ready() {
		if ctx.Err() != nil {
			m.Close()
			return 0, nil, ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	for deadline := time.Now().Add(2 * time.Minute); statErr != nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(snap); err == nil || ctx.Err() != nil {
			break
		}
	}
	return took, m, nil
}

// progressEvent is a progress event as the service stores it.
func progressEvent(cat *events.Catalog) ([]byte, error) {
	g := newLogGen(cat)
	_, _, h, err := g.hazard(0)
	if err != nil {
		return nil, err
	}
	cmd := &events.Command{Action: events.ActProgress, HazardID: h.ID, CommandID: events.NewID(), Actor: events.Actor{ID: "rectifier-bench", Role: events.RoleRectifier},
		Payload: &events.Progressed{Note: "已完成主要整改措施，剩余防火堤修补", Percent: 60}}
	ev, err := events.Decide(cat, h, cmd, h.UpdatedAt.Time().Add(time.Hour), events.DefaultSource)
	if err != nil {
		return nil, err
	}
	return ev.Marshal()
}

// ---- the prepared log ----

// logGen makes hazard i's report and plan, decided on a synthetic clock.
type logGen struct {
	cat      *events.Catalog
	counties []string
	sectors  []string
	t0       time.Time
}

var benchNS = uuid.MustParse("a4f0c1d2-7e55-4b8e-9a61-0b5c2d9e8f13") // constant namespace of bench ids

func newLogGen(cat *events.Catalog) *logGen {
	g := &logGen{cat: cat, t0: time.Date(2025, 1, 1, 8, 0, 0, 0, events.Shanghai), sectors: []string{"mine", "chem", "fireworks", "trade", "forest", "gas"}}
	for _, prov := range cat.Provinces {
		for _, pref := range cat.Children(prov) {
			g.counties = append(g.counties, cat.Children(pref)...)
		}
	}
	return g
}

func (g *logGen) hazard(i int) (report, plan *events.Event, h *events.Hazard, err error) {
	county := g.counties[i%len(g.counties)]
	sector := g.sectors[(i/len(g.counties))%len(g.sectors)]
	found := g.t0.Add(time.Duration(i) * 2 * time.Second)
	n := i % 50
	site := events.Site{Name: fmt.Sprintf("第%d号生产经营单位", n)}
	if sector == "forest" {
		site.ID = fmt.Sprintf("forest-%s-%02d", county, n)
	} else {
		site.CreditCode = demo.CreditCode(county, sector, n)
	}
	grade, criterion := events.GradeGeneral, ""
	if i%4 == 0 {
		if crit := g.cat.CriteriaOf(sector); len(crit) > 0 {
			grade, criterion = events.GradeMajor, crit[i%len(crit)]
		}
	}
	cmdID := uuid.NewSHA1(benchNS, strconv.AppendInt(nil, int64(i), 10)).String()
	rep := &events.Command{Action: events.ActReport, HazardID: events.ReportID(cmdID), CommandID: cmdID, OccurredAt: found,
		Actor: events.Actor{ID: "inspector-" + county, Role: events.RoleInspector},
		Payload: &events.Reported{Sector: sector, Region: county, Site: site, Grade: grade, Criterion: criterion,
			Description: "储罐区防火堤破损，部分区域未设置可燃气体检测报警装置", Source: "inspection",
			Location: &events.Location{Lat: 22 + float64(i%600)/100, Lon: 98 + float64(i%700)/100}, Deadline: events.FormatInstant(found.AddDate(0, 0, 30))}}
	if report, err = events.Decide(g.cat, nil, rep, found.Add(time.Minute), events.DefaultSource); err != nil {
		return nil, nil, nil, err
	}
	raw, err := report.Marshal()
	if err != nil {
		return nil, nil, nil, err
	}
	if h, err = events.Evolve(g.cat, nil, report, rep.Payload, raw, 1); err != nil {
		return nil, nil, nil, err
	}
	pl := &events.Command{Action: events.ActPlan, HazardID: h.ID, CommandID: uuid.NewSHA1(benchNS, []byte(cmdID+"/plan")).String(), OccurredAt: found.Add(time.Hour),
		Actor: events.Actor{ID: "rectifier-" + site.Key(), Role: events.RoleRectifier},
		Payload: &events.Planned{Responsible: "企业主要负责人", Measures: "修复防火堤并加装可燃气体检测报警装置", Funds: "12万元",
			Deadline: events.FormatInstant(found.AddDate(0, 0, 25)), Contingency: "整改期间设置警戒区并专人值守"}}
	if plan, err = events.Decide(g.cat, h, pl, found.Add(2*time.Hour), events.DefaultSource); err != nil {
		return nil, nil, nil, err
	}
	praw, err := plan.Marshal()
	if err != nil {
		return nil, nil, nil, err
	}
	if h, err = events.Evolve(g.cat, h, plan, pl.Payload, praw, 2); err != nil {
		return nil, nil, nil, err
	}
	return report, plan, h, nil
}

// prepareLog fills dir's HAZARDS stream with cfg.events valid events (report and plan of
// events/2 hazards), by bulk async publishes on a server with fsync relaxed, or keeps what
// an earlier run prepared there.
func (b *bench) prepareLog(ctx context.Context, dir string) error {
	marker := filepath.Join(dir, "bench-events")
	want := b.cfg.events - b.cfg.events%2
	st, closeStore, err := embeddedStore(ctx, dir, true)
	if err != nil {
		return err
	}
	defer closeStore()
	last, err := st.LastSeq(ctx)
	if err != nil {
		return err
	}
	if mb, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(mb)) == strconv.Itoa(want) && last >= uint64(want) {
		if !b.cfg.json {
			fmt.Fprintf(b.cfg.out, "reusing the log prepared in %s (%d events)\n\n", dir, last)
		}
		return nil
	}
	if last != 0 {
		return fmt.Errorf("%s holds a log of %d events not prepared for --events %d; remove it or use another --store", dir, last, want)
	}
	js, err := jetstream.New(st.JetStream().Conn(), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	bar := newProgress(b.cfg.errw, "bench: loading the log 载入事件")
	hazards := want / 2
	const chunk = 512
	type batch []*nats.Msg
	work := make(chan int)
	out := make(chan batch, 8)
	var genErr atomic.Value
	var wg sync.WaitGroup
	for range max(runtime.GOMAXPROCS(0)-1, 1) {
		wg.Go(func() {
			g := newLogGen(b.cat)
			for lo := range work {
				msgs := make(batch, 0, 2*chunk)
				for i := lo; i < min(lo+chunk, hazards); i++ {
					r, p, _, err := g.hazard(i)
					if err != nil {
						genErr.Store(err)
						return
					}
					for _, e := range []*events.Event{r, p} {
						raw, err := e.Marshal()
						if err != nil {
							genErr.Store(err)
							return
						}
						msgs = append(msgs, &nats.Msg{Subject: hazardSubject(b.cat, r, e), Data: raw, Header: nats.Header{jetstream.MsgIDHeader: []string{e.ID}}})
					}
				}
				out <- msgs
			}
		})
	}
	go func() {
		defer close(work)
		for lo := 0; lo < hazards; lo += chunk {
			select {
			case work <- lo:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(out) }()
	var pubErrs atomic.Int64
	done := 0
	for msgs := range out {
		for _, msg := range msgs {
			for try := 0; ; try++ {
				_, err := js.PublishMsgAsync(msg)
				if err == nil {
					break
				}
				if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || try == 100 {
					pubErrs.Add(1)
					break
				}
			}
		}
		done += len(msgs)
		bar.Set(done, want)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return errors.New("bulk load: acks did not arrive within a minute")
	}
	bar.Done()
	if e, _ := genErr.Load().(error); e != nil {
		return e
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if last, err = st.LastSeq(ctx); err != nil {
		return err
	}
	if last != uint64(want) || pubErrs.Load() > 0 {
		return fmt.Errorf("bulk load stored %d of %d events (%d publish errors)", last, want, pubErrs.Load())
	}
	if !b.cfg.json {
		fmt.Fprintf(b.cfg.out, "prepared a log of %d events (%d hazards) in %s\n\n", want, hazards, dir)
	}
	return os.WriteFile(marker, []byte(strconv.Itoa(want)+"\n"), 0o644)
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

func hazardSubject(cat *events.Catalog, report, e *events.Event) string {
	var r events.Reported
	_ = json.Unmarshal(report.Data, &r)
	prov, pref, _ := cat.Path(r.Region)
	return events.Subject(r.Sector, prov, pref, r.Region, e.Subject)
}

// ---- rebuild and memory ----

// memory measures the heap of the read model of the prepared log — its events generated
// again and decoded as the runner decodes stored bytes — in a quiet process (before the
// embedded server, whose block caches share the heap, runs): the index, then the status.
func (b *bench) memory(ctx context.Context) error {
	hazards := b.cfg.events / 2
	heap := func() float64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	pass := func(apply func(seq uint64, raw []byte, e *events.Event, p any) error) error {
		type item struct {
			raw  [2][]byte
			i    int
			done chan struct{}
		}
		const chunk = 256
		work := make(chan []item, 4)
		var genErr atomic.Value
		go func() {
			defer close(work)
			for lo := 0; lo < hazards; lo += chunk {
				it := make([]item, 0, chunk)
				for i := lo; i < min(lo+chunk, hazards); i++ {
					it = append(it, item{i: i})
				}
				select {
				case work <- it:
				case <-ctx.Done():
					return
				}
			}
		}()
		order := make(chan chan []item, 8)
		go func() {
			defer close(order)
			for it := range work {
				out := make(chan []item, 1)
				order <- out
				go func() {
					g := newLogGen(b.cat)
					for k := range it {
						r, p, _, err := g.hazard(it[k].i)
						if err == nil {
							it[k].raw[0], err = r.Marshal()
						}
						if err == nil {
							it[k].raw[1], err = p.Marshal()
						}
						if err != nil {
							genErr.Store(err)
						}
					}
					out <- it
				}()
			}
		}()
		for out := range order {
			for _, it := range <-out {
				for k, raw := range it.raw {
					e, err := events.ParseEvent(raw)
					if err != nil {
						return err
					}
					p, err := e.Payload()
					if err != nil {
						return err
					}
					if err := apply(uint64(2*it.i+k+1), raw, e, p); err != nil {
						return err
					}
				}
			}
		}
		if e, _ := genErr.Load().(error); e != nil {
			return e
		}
		return ctx.Err()
	}
	// Let what the loader's server left behind be freed first (its timers run after shutdown).
	for range 3 {
		heap()
		time.Sleep(100 * time.Millisecond)
	}
	h0 := heap()
	idx := projections.NewIndex(b.cat)
	if err := pass(idx.ApplyParsed); err != nil {
		return err
	}
	h1 := heap()
	st := status.New(status.Config{Catalog: b.cat})
	if err := pass(func(seq uint64, _ []byte, e *events.Event, p any) error { st.ApplyEvent(seq, e, p); return nil }); err != nil {
		return err
	}
	h2 := heap()
	n := float64(idx.Len())
	runtime.KeepAlive(idx)
	runtime.KeepAlive(st)
	b.add(benchRow{Name: "read model heap per hazard (index + status)", Value: (h2 - h0) / n, Unit: "bytes",
		Note: fmt.Sprintf("the log's mix (report + plan): %d hazards, %.0f MiB: index %.0f B + status %.0f B a hazard", idx.Len(), (h2-h0)/(1<<20), (h1-h0)/n, (h2-h1)/n)}, target{max: 1024})
	idx, st = nil, nil
	return b.demoMemory(heap)
}

// demoMemory is the read model's heap per hazard for the demo's lifecycle mix (about 3.6
// events a hazard: plans, progress, completions, rejections, clears, listings, extensions).
func (b *bench) demoMemory(heap func() float64) error {
	hazards := min(b.cfg.events/2, 100_000)
	type stored struct {
		raw []byte
		e   *events.Event
		p   any
	}
	var log []stored
	for _, steps := range demo.Plan(b.cat, demo.Config{Hazards: hazards, Now: time.Date(2025, 6, 30, 18, 0, 0, 0, events.Shanghai), Days: 720}) {
		var h *events.Hazard
		for _, step := range steps {
			c := *step.Cmd
			events.ResolveIDs(&c)
			e, err := events.Decide(b.cat, h, &c, step.At, events.DefaultSource)
			if err != nil {
				break // a step the lifecycle refuses (the plan draws times freely): keep what was accepted
			}
			raw, err := e.Marshal()
			if err != nil {
				return err
			}
			if e, err = events.ParseEvent(raw); err != nil {
				return err
			}
			p, err := e.Payload()
			if err != nil {
				return err
			}
			if h, err = events.Evolve(b.cat, h, e, p, raw, uint64(len(log)+1)); err != nil {
				return err
			}
			log = append(log, stored{raw, e, p})
		}
	}
	h0 := heap()
	idx := projections.NewIndex(b.cat)
	for i, s := range log {
		if err := idx.ApplyParsed(uint64(i+1), s.raw, s.e, s.p); err != nil {
			return err
		}
	}
	h1 := heap()
	st := status.New(status.Config{Catalog: b.cat})
	for i, s := range log {
		st.ApplyEvent(uint64(i+1), s.e, s.p)
	}
	h2 := heap()
	n := float64(idx.Len())
	runtime.KeepAlive(log)
	runtime.KeepAlive(idx)
	runtime.KeepAlive(st)
	b.add(benchRow{Name: "read model heap per hazard, demo lifecycle mix", Value: (h2 - h0) / n, Unit: "bytes",
		Note: fmt.Sprintf("%d hazards, %.1f events a hazard: index %.0f B + status %.0f B a hazard", idx.Len(), float64(len(log))/n, (h1-h0)/n, (h2-h1)/n)}, target{max: 1024})
	return nil
}

// embeddedStore runs an embedded server on the data directory dir, configured as serve
// configures its own (noSync: fsync relaxed), and opens the event store on it; closeStore
// shuts both down.
func embeddedStore(ctx context.Context, dir string, noSync bool) (st *jsstore.Store, closeStore func(), err error) {
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: filepath.Join(dir, "jetstream"), NoSync: noSync, ServerName: "qingling"})
	if err != nil {
		return nil, nil, err
	}
	stop := func() { srv.Shutdown(); srv.WaitForShutdown() }
	nc, err := jsstore.ConnectInProcess(srv)
	if err != nil {
		stop()
		return nil, nil, err
	}
	if st, err = jsstore.Open(ctx, nc, jsstore.Config{}); err != nil {
		nc.Close()
		stop()
		return nil, nil, err
	}
	return st, func() { nc.Close(); stop() }, nil
}

// rebuildAlone runs the rebuild row over the log in dir on an embedded server of its own,
// configured as `qingling rebuild` and `serve` configure theirs.
func (b *bench) rebuildAlone(ctx context.Context, dir string) error {
	store, closeStore, err := embeddedStore(ctx, dir, false)
	if err != nil {
		return err
	}
	defer closeStore()
	logLen, err := store.LastSeq(ctx)
	if err != nil {
		return err
	}
	return b.rebuild(ctx, store, logLen)
}

// rebuild replays the whole log into a fresh index and status projection as `qingling
// rebuild` does (projections.Replay), against a raw ordered consumer reading the same stream.
func (b *bench) rebuild(ctx context.Context, st *jsstore.Store, logLen uint64) error {
	rawRead := func() (time.Duration, error) {
		str, err := st.JetStream().Stream(ctx, st.StreamName())
		if err != nil {
			return 0, err
		}
		start := time.Now()
		cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return 0, err
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(1024))
		if err != nil {
			return 0, err
		}
		defer it.Stop()
		var n uint64
		size := 0
		for n < logLen {
			msg, err := it.Next()
			if err != nil {
				return 0, err
			}
			size += len(msg.Data()) // touch what a consumer gets
			n++
		}
		runtime.KeepAlive(size)
		return time.Since(start), nil
	}
	// the rebuild as `qingling rebuild` runs it
	replay := func() (time.Duration, *projections.Index, *status.Projection, error) {
		idx := projections.NewIndex(b.cat)
		sp := status.New(status.Config{Catalog: b.cat})
		start := time.Now()
		seq, err := projections.Replay(ctx, st, idx, []projections.Projection{sp}, nil)
		took := time.Since(start)
		if err == nil && seq < logLen {
			err = fmt.Errorf("rebuild: replayed to %d of %d", seq, logLen)
		}
		return took, idx, sp, err
	}
	// raw, rebuild, raw, rebuild, …, raw: each rebuild against the mean of the reads around it
	// (the machine's speed drifts), the median of the rounds reported. The process's CPU time
	// (the embedded server's included) per event says where the limit is.
	rounds := max(b.cfg.rounds, 1)
	var raws, rebuilds, ratios, rawCPUs, rebuildCPUs []float64
	hazards := 0
	perEvent := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(logLen) }
	read := func() error {
		c0 := cpuTime()
		took, err := rawRead()
		if err == nil {
			raws = append(raws, float64(logLen)/took.Seconds())
			rawCPUs = append(rawCPUs, perEvent(cpuTime()-c0))
		}
		return err
	}
	if err := read(); err != nil {
		return err
	}
	for range rounds {
		c0 := cpuTime()
		took, idx, _, err := replay()
		if err != nil {
			return err
		}
		rebuildCPUs = append(rebuildCPUs, perEvent(cpuTime()-c0))
		rebuilds = append(rebuilds, float64(logLen)/took.Seconds())
		hazards = idx.Len()
		runtime.GC() // the next read as the first: the rebuilt read model (dead by now) not in the heap
		if err := read(); err != nil {
			return err
		}
		k := len(raws)
		ratios = append(ratios, rebuilds[len(rebuilds)-1]/((raws[k-1]+raws[k-2])/2))
	}
	med := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	raw, reb := med(raws), med(rebuilds)
	rawCPU, rebuildCPU := med(rawCPUs), med(rebuildCPUs)
	b.add(benchRow{Name: "raw ordered consumer read", Value: raw, Unit: "events/s",
		Note: fmt.Sprintf("%d events, median of %d reads; CPU %.1f µs an event (%.2f cores)", logLen, len(raws), rawCPU, rawCPU*raw/1e6)}, target{})
	note := fmt.Sprintf("%d hazards; CPU %.1f µs an event (%.2f cores)", hazards, rebuildCPU, rebuildCPU*reb/1e6)
	if rounds > 1 {
		note = fmt.Sprintf("×raw: the median of %d rounds' ratios, each against the reads around it (%.2f–%.2f×); ", rounds, slices.Min(ratios), slices.Max(ratios)) + note
	}
	b.add(benchRow{Name: "rebuild: index + status (Replay)", Value: reb, Unit: "events/s", Baseline: "raw ordered consumer read", BaseVal: raw,
		Ratio: med(ratios), Note: note}, target{ratio: 0.7})
	return nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ---- appends ----

// op is one append by one client.
type op func(ctx context.Context) error

// measure runs n ops spread over the clients (each client's ops one after another).
func measure(ctx context.Context, clients []op, n int) (time.Duration, []time.Duration, error) {
	lat := make([][]time.Duration, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	for c, f := range clients {
		share := n / len(clients)
		if c < n%len(clients) {
			share++
		}
		lat[c] = make([]time.Duration, 0, share)
		wg.Go(func() {
			for range share {
				t := time.Now()
				if errs[c] = f(ctx); errs[c] != nil {
					return
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	var all []time.Duration
	for c := range lat {
		if errs[c] != nil {
			return 0, nil, errs[c]
		}
		all = append(all, lat[c]...)
	}
	return took, all, nil
}

// series is a row being measured in rounds.
type series struct {
	took time.Duration
	lat  []time.Duration
	n    int
}

func (s *series) run(ctx context.Context, clients []op, n int) error {
	took, lat, err := measure(ctx, clients, n)
	if err != nil {
		return err
	}
	s.took += took
	s.lat = append(s.lat, lat...)
	s.n += n
	return nil
}

func (s *series) row(name string, clients int) benchRow {
	slices.Sort(s.lat)
	pct := func(p float64) float64 {
		if len(s.lat) == 0 {
			return 0
		}
		return float64(s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))].Microseconds()) / 1000
	}
	return benchRow{Name: name, Clients: clients, Value: float64(s.n) / s.took.Seconds(), Unit: "events/s", P50: pct(0.5), P99: pct(0.99)}
}

// interleave measures kinds (each with its own clients) in rounds, one after another.
func (b *bench) interleave(ctx context.Context, kinds ...[]op) ([]*series, error) {
	out := make([]*series, len(kinds))
	for i := range out {
		out[i] = &series{}
	}
	for r := range b.cfg.rounds {
		n := b.cfg.appends / b.cfg.rounds
		if r < b.cfg.appends%b.cfg.rounds {
			n++
		}
		for i, k := range kinds {
			if err := out[i].run(ctx, k, n); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// benchStream is where the raw and store rows append, on the same server as the log.
const benchStream = "BENCH"

func benchSubject(id string) string { return events.Subject("chem", "530000", "530100", "530181", id) }

// rawClients publish b.data with the headers the store sends (Msg-Id, expected stream, the
// subject's expected last sequence), each client on its own subject.
func (b *bench) rawClients(ctx context.Context, js jetstream.JetStream, prefix string, n int) ([]op, error) {
	out := make([]op, n)
	for c := range out {
		subj := prefix + benchSubject(events.NewID())
		ack, err := js.Publish(ctx, subj, b.data, jetstream.WithMsgID(events.NewID()), jetstream.WithExpectStream(benchStream), jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			return nil, err
		}
		last := ack.Sequence
		out[c] = func(ctx context.Context) error {
			ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b.data},
				jetstream.WithMsgID(events.NewID()), jetstream.WithExpectStream(benchStream), jetstream.WithExpectLastSequencePerSubject(last), jetstream.WithRetryAttempts(0))
			if err == nil {
				last = ack.Sequence
			}
			return err
		}
	}
	return out, nil
}

// storeClients append b.data through the store, each client on its own hazard.
func (b *bench) storeClients(ctx context.Context, st *jsstore.Store, n int) ([]op, error) {
	out := make([]op, n)
	for c := range out {
		id := events.NewID()
		ack, err := st.Append(ctx, jsstore.Append{Subject: benchSubject(id), Data: b.data, MsgID: events.NewID(), New: true, HazardID: id})
		if err != nil {
			return nil, err
		}
		last := ack.Seq
		out[c] = func(ctx context.Context) error {
			ack, err := st.Append(ctx, jsstore.Append{Subject: benchSubject(id), Data: b.data, MsgID: events.NewID(), HazardID: id, Expect: last})
			if err == nil {
				last = ack.Seq
			}
			return err
		}
	}
	return out, nil
}

// rawAsync publishes asynchronously from one client, as fast as acks come back.
func (b *bench) rawAsync(ctx context.Context, js jetstream.JetStream, prefix string, n int) (benchRow, error) {
	subj := prefix + benchSubject(events.NewID())
	start := time.Now()
	var failed atomic.Int64
	for range n {
		msg := &nats.Msg{Subject: subj, Data: b.data}
		id := events.NewID()
		for try := 0; ; try++ {
			_, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(benchStream))
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || try == 100 {
				failed.Add(1)
				break
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return benchRow{}, ctx.Err()
	case <-time.After(2 * time.Minute):
		return benchRow{}, errors.New("raw async publish: acks did not arrive")
	}
	if failed.Load() > 0 {
		return benchRow{}, fmt.Errorf("raw async publish: %d failed", failed.Load())
	}
	return benchRow{Name: "raw async publish (window 4096)", Clients: 1, Value: float64(n) / time.Since(start).Seconds(), Unit: "events/s"}, nil
}

// appendServer is one embedded server's BENCH stream with a raw connection and a store.
type appendServer struct {
	rawJS  jetstream.JetStream
	store  *jsstore.Store
	closer []func()
}

func (a *appendServer) close() {
	for i := len(a.closer) - 1; i >= 0; i-- {
		a.closer[i]()
	}
}

func openAppendServer(ctx context.Context, srv *server.Server, noSync bool, group jsstore.GroupCommit) (*appendServer, error) {
	a := &appendServer{}
	rawNC, err := jsstore.ConnectInProcess(srv, nats.Name("bench-raw"))
	if err != nil {
		return nil, err
	}
	a.closer = append(a.closer, rawNC.Close)
	if a.rawJS, err = jetstream.New(rawNC, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		a.close()
		return nil, err
	}
	storeNC, err := jsstore.ConnectInProcess(srv, nats.Name("bench-store"))
	if err != nil {
		a.close()
		return nil, err
	}
	a.closer = append(a.closer, storeNC.Close)
	if a.store, err = jsstore.Open(ctx, storeNC, jsstore.Config{Stream: benchStream, Prefix: "bench.", NoSync: noSync, GroupCommit: group}); err != nil {
		a.close()
		return nil, err
	}
	a.closer = append(a.closer, func() { _ = a.rawJS.DeleteStream(context.Background(), benchStream) })
	return a, nil
}

func (b *bench) durableAppends(ctx context.Context, m *Main) error {
	a, err := openAppendServer(ctx, m.NATS, false, b.cfg.group)
	if err != nil {
		return err
	}
	defer a.close()
	raw := map[int]float64{}
	for _, c := range b.cfg.clients {
		rc, err := b.rawClients(ctx, a.rawJS, "bench.", c)
		if err != nil {
			return err
		}
		var kinds [][]op
		kinds = append(kinds, rc)
		if b.cfg.rows["append"] {
			sc, err := b.storeClients(ctx, a.store, c)
			if err != nil {
				return err
			}
			kinds = append(kinds, sc)
		}
		before := a.store.Stats()
		s, err := b.interleave(ctx, kinds...)
		if err != nil {
			return err
		}
		rr := s[0].row("raw sync publish (SyncAlways)", c)
		raw[c] = rr.Value
		b.add(rr, target{})
		if b.cfg.rows["append"] {
			st := a.store.Stats()
			row := s[1].row("store append, group commit", c)
			row.Baseline, row.BaseVal = rr.Name, rr.Value
			if batched := st.Batched - before.Batched; batched > 0 {
				nb := float64(max(st.Batches-before.Batches, 1))
				row.Note = fmt.Sprintf("%.0f%% batched, mean batch %.0f, gathering %.2f ms, committing %.2f ms; lingered %d, small %d, rejected %d",
					100*float64(batched)/float64(s[1].n), float64(batched)/nb, (st.Gathering-before.Gathering).Seconds()*1000/nb, (st.Committing-before.Committing).Seconds()*1000/nb,
					st.Lingered-before.Lingered, st.Small-before.Small, st.Rejected-before.Rejected)
			} else {
				row.Note = "plain publishes"
			}
			t := target{}
			switch {
			case c >= 128:
				t.ratio = 3.5
			case c >= 64:
				t.ratio = 2.5
			case c >= 16:
				t.ratio = 1.0
			}
			b.add(row, t)
		}
	}
	if b.cfg.rows["append"] {
		row, err := b.rawAsync(ctx, a.rawJS, "bench.", b.cfg.appends)
		if err != nil {
			return err
		}
		b.add(row, target{})
	}
	for _, via := range []string{"nats", "http"} {
		if !b.cfg.rows[via] {
			continue
		}
		for _, c := range b.cfg.clients {
			rc, err := b.rawClients(ctx, a.rawJS, "bench.", c)
			if err != nil {
				return err
			}
			var sc []op
			name := "command through the NATS service (natsapi)"
			if via == "nats" {
				sc, err = b.natsClients(ctx, m, c)
			} else {
				name = "command through HTTP (net/http, 127.0.0.1)"
				sc, err = b.httpClients(ctx, m, c)
			}
			if err != nil {
				return err
			}
			before := m.Store.Stats()
			s, err := b.interleave(ctx, rc, sc)
			if err != nil {
				return err
			}
			rr := s[0].row("raw sync publish (SyncAlways)", c)
			row := s[1].row(name, c)
			row.Baseline, row.BaseVal = rr.Name, rr.Value
			st := m.Store.Stats()
			if batched := st.Batched - before.Batched; batched > 0 {
				row.Note = fmt.Sprintf("%.0f%% batched, mean batch %.0f; raw %s/s in this pair", 100*float64(batched)/float64(s[1].n),
					float64(batched)/float64(max(st.Batches-before.Batches, 1)), humanNum(rr.Value))
			} else {
				row.Note = fmt.Sprintf("raw %s/s in this pair", humanNum(rr.Value))
			}
			t := target{}
			if via == "http" && c == 16 {
				t.ratio = 0.5
			}
			b.add(row, t)
		}
	}
	return nil
}

func (b *bench) noSyncAppends(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "qingling-bench-nosync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: dir, NoSync: true, ServerName: "qingling"})
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	a, err := openAppendServer(ctx, srv, true, b.cfg.group)
	if err != nil {
		return err
	}
	defer a.close()
	for _, c := range b.cfg.clients {
		rc, err := b.rawClients(ctx, a.rawJS, "bench.", c)
		if err != nil {
			return err
		}
		sc, err := b.storeClients(ctx, a.store, c)
		if err != nil {
			return err
		}
		s, err := b.interleave(ctx, rc, sc)
		if err != nil {
			return err
		}
		rr := s[0].row("raw sync publish, no fsync", c)
		b.add(rr, target{})
		row := s[1].row("store append, no fsync", c)
		row.Baseline, row.BaseVal = rr.Name, rr.Value
		b.add(row, target{ratio: 0.8})
	}
	return nil
}

// ---- the service, over NATS and HTTP ----

const benchReport = `{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司","credit_code":"91530181PLM9QQPDAY"},"grade":"general",` +
	`"description":"储罐区防火堤破损","source":"inspection","deadline":"2099-04-30"}`

func progressBody(id string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"note":"已完成主要整改措施，剩余防火堤修补","percent":60}`, id)
}

func (b *bench) natsClients(ctx context.Context, m *Main, n int) ([]op, error) {
	nc, err := jsstore.ConnectInProcess(m.NATS, nats.Name("bench-client"))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, nc.Close)
	call := func(ctx context.Context, user, verb string, body []byte) ([]byte, error) {
		msg := nats.NewMsg(natsapi.Subject(user, verb))
		msg.Data = body
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := nc.RequestMsgWithContext(rctx, msg)
		if err != nil {
			return nil, err
		}
		if s := resp.Header.Get(natsapi.HeaderStatus); s != "200" && s != "201" {
			return nil, fmt.Errorf("%s %s: status %s: %s", verb, user, s, resp.Data)
		}
		return resp.Data, nil
	}
	out := make([]op, n)
	for c := range out {
		var bodies [][]byte
		for range b.hazardsPerClient(n) {
			resp, err := call(ctx, fmt.Sprintf("insp-%d", c), events.ActReport, []byte(benchReport))
			if err != nil {
				return nil, err
			}
			id, err := hazardIDOf(resp)
			if err != nil {
				return nil, err
			}
			bodies = append(bodies, progressBody(id))
		}
		user, i := fmt.Sprintf("rect-%d", c), 0
		out[c] = func(ctx context.Context) error {
			i++
			_, err := call(ctx, user, events.ActProgress, bodies[i%len(bodies)])
			return err
		}
	}
	return out, nil
}

// hazardsPerClient: a service client takes turns over hazards of its own, so that a hazard
// gets at most ~20 events from the run, as hazards do in life (the status projection folds
// each hazard's events again on every new one).
func (b *bench) hazardsPerClient(clients int) int {
	return min(max(b.cfg.appends/clients/20, 1), 64)
}

func hazardIDOf(body []byte) (string, error) {
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("no hazard id in %.200s", body)
	}
	return v.ID, nil
}

func (b *bench) httpClient(n int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: 2 * n, MaxIdleConnsPerHost: 2 * n, IdleConnTimeout: time.Minute}}
}

func httpCall(ctx context.Context, cl *http.Client, url, actor string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Qingling-Actor", actor)
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		return nil, fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, rb)
	}
	return rb, nil
}

func (b *bench) httpClients(ctx context.Context, m *Main, n int) ([]op, error) {
	cl := b.httpClient(n)
	body := []byte(`{"note":"已完成主要整改措施，剩余防火堤修补","percent":60}`)
	out := make([]op, n)
	for c := range out {
		var urls []string
		for range b.hazardsPerClient(n) {
			resp, err := httpCall(ctx, cl, m.URL()+"/v1/hazards", fmt.Sprintf("insp-%d", c), []byte(benchReport))
			if err != nil {
				return nil, err
			}
			id, err := hazardIDOf(resp)
			if err != nil {
				return nil, err
			}
			urls = append(urls, m.URL()+"/v1/hazards/"+id+"/progress")
		}
		actor, i := fmt.Sprintf("rect-%d", c), 0
		out[c] = func(ctx context.Context) error {
			i++
			_, err := httpCall(ctx, cl, urls[i%len(urls)], actor, body)
			return err
		}
	}
	return out, nil
}

// ---- feed latency ----

// feed measures command ack → SSE delivery on /v1/feed: one report at a time (each changes
// the counts of its county's rows), the time from its HTTP answer to the next feed event.
func (b *bench) feed(ctx context.Context, m *Main) error {
	name := "feed latency: command ack → SSE event (/v1/feed)"
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, m.URL()+"/v1/feed?sector=chem&region=530181", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("X-Qingling-Actor", "bench-desk")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b.add(benchRow{Name: name, Unit: "ms", Note: fmt.Sprintf("not measured: GET /v1/feed answers %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))}, target{})
		return nil
	}
	arrivals := make(chan time.Time, 1024)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		data := false
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "data:") {
				data = true
			}
			if line == "" && data {
				data = false
				select {
				case arrivals <- time.Now():
				default:
				}
			}
		}
	}()
	cl := b.httpClient(1)
	var lat []time.Duration
	missed := 0
	for i := 0; i < b.cfg.feedN; i++ {
		for len(arrivals) > 0 {
			<-arrivals
		}
		if _, err := httpCall(ctx, cl, m.URL()+"/v1/hazards", "bench-insp", []byte(benchReport)); err != nil {
			return err
		}
		acked := time.Now()
		select {
		case t := <-arrivals:
			lat = append(lat, max(t.Sub(acked), 0))
		case <-time.After(2 * time.Second):
			missed++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(lat) == 0 {
		b.add(benchRow{Name: name, Unit: "ms", Note: fmt.Sprintf("no feed event within 2 s after %d reports", missed)}, target{})
		return nil
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	note := fmt.Sprintf("%d reports, p50 %.2f ms", len(lat), p(0.5))
	if missed > 0 {
		note += fmt.Sprintf(", %d without an event within 2 s", missed)
	}
	b.add(benchRow{Name: name + " p99", Clients: 1, Value: p(0.99), Unit: "ms", P50: p(0.5), P99: p(0.99), Note: note}, target{max: 10})
	return nil
}
