package main

// The zero-out status in a running Qingling (wiring), and the verbs `qingling status`,
// `qingling watch` and `qingling rebuild`.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/evidence"
	"qingling/handlers/feed"
	"qingling/handlers/httpapi"
	"qingling/projections"
	"qingling/projections/kvstatus"
	"qingling/projections/status"
)

// snapshotEvery is how often the read model is saved while the log moves on; it is also
// saved after a long catch-up and on a clean stop.
const snapshotEvery = 5 * time.Minute

// statusWiring is the zero-out status part of Main.
type statusWiring struct {
	Status    *status.Projection
	Snapshots *projections.Snapshots
	KVWriter  *kvstatus.Writer
	Lease     *kvstatus.Lease // the one instance writing hz_status
	Feed      *feed.Hub
	Refs      *evidence.Refs // which hazards reference each evidence file (evidence_scope.go)

	releaseLock func()
}

// openStatus builds the status projection and loads the read-model snapshot, before the
// runner starts (serve.go).
func (m *Main) openStatus(ctx context.Context) error {
	log := m.Config.Log
	release, err := lockReadModel(filepath.Join(m.Config.DataDir, "readmodel.lock"))
	if err != nil {
		return err
	}
	m.releaseLock = release
	m.Status = status.New(status.Config{Catalog: m.Catalog, Clock: m.Config.Clock})
	m.Runner.Projections = append(m.Runner.Projections, m.Status)
	m.Refs = evidence.NewRefs(false)
	m.Snapshots = &projections.Snapshots{Path: filepath.Join(m.Config.DataDir, "readmodel.snap"), Index: m.Index, Status: m.Status, Log: log,
		Parts: []projections.SnapshotPart{m.Refs}}
	start := time.Now()
	switch h, err := m.Snapshots.Load(ctx, m.Store); {
	case err == nil:
		log.Info("read model loaded from its snapshot", "seq", h.Seq, "hazards", h.Hazards, "written", h.Written.Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, projections.ErrNoSnapshot):
		if err != projections.ErrNoSnapshot { // there is one, but not for this log or version
			log.Warn("read model: snapshot not used; rebuilding from the log", "reason", err)
		}
	default:
		return fmt.Errorf("read model snapshot: %w", err)
	}
	js := m.Store.JetStream()
	kv, err := kvstatus.Open(ctx, js, m.Config.Replicas)
	if err != nil {
		return fmt.Errorf("hz_status: %w", err)
	}
	name, err := instanceName(m.Config.DataDir)
	if err != nil {
		return err
	}
	m.KVWriter = &kvstatus.Writer{JS: js, KV: kv, Status: m.Status, Ready: m.Runner.Ready, Log: log}
	m.Lease = &kvstatus.Lease{KV: kv, Holder: name, TTL: m.Config.LeaseTTL, Log: log, OnAcquire: m.KVWriter.Acquired}
	m.KVWriter.Lease = m.Lease
	m.Feed = &feed.Hub{KV: kv, JS: js, Log: log}
	prev := m.Runner.OnCaughtUp
	m.Runner.OnCaughtUp = func(seq uint64) {
		if prev != nil {
			prev(seq)
		}
		m.KVWriter.Kick()
	}
	return nil
}

// runStatus starts what keeps the status live: the catch-up then the runner (instead of the
// runner alone), the clock, the KV writer, the feed's watch and the snapshots.
func (m *Main) runStatus(ctx context.Context) {
	m.wg.Add(6)
	go func() { defer m.wg.Done(); _ = m.Lease.Run(ctx) }()
	go func() { defer m.wg.Done(); m.catchUp(ctx); _ = m.Runner.Run(ctx) }()
	go func() { defer m.wg.Done(); m.Status.Tick(ctx, 250*time.Millisecond) }()
	go func() { defer m.wg.Done(); _ = m.KVWriter.Run(ctx) }()
	go func() { defer m.wg.Done(); _ = m.Feed.Run(ctx) }()
	go func() { defer m.wg.Done(); m.Snapshots.Run(ctx, snapshotEvery) }()
}

// catchUp replays what the log holds beyond the snapshot with every core decoding, and saves
// a snapshot when that was long.
func (m *Main) catchUp(ctx context.Context) {
	start, from := time.Now(), m.Index.Applied()
	seq, err := projections.Replay(ctx, m.Store, m.Index, m.Runner.Projections, nil)
	if err != nil {
		if ctx.Err() == nil {
			m.Config.Log.Warn("read model: catch-up interrupted; the runner carries on", "err", err)
		}
		return
	}
	n := seq - from
	if n > 0 {
		m.Config.Log.Info("read model caught up", "from", from+1, "to", seq, "events", n, "took", time.Since(start).Round(time.Millisecond))
	}
	// after readiness, not before it: Save runs beside the runner (as the periodic one does);
	// then the start-up's garbage (the snapshot's sections, the replay's messages) goes back to
	// the system, or the process keeps the peak of its start as its size
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if n > 10000 {
			if _, err := m.Snapshots.Save(); err != nil {
				m.Config.Log.Warn("snapshot failed", "err", err)
			}
		}
		debug.FreeOSMemory()
	}()
}

// statusRoutes mounts /v1/status, /v1/status/daily and /v1/feed after next's routes.
func (m *Main) statusRoutes(api *httpapi.Server, next func(*http.ServeMux)) func(*http.ServeMux) {
	a := &feed.API{Server: api, Catalog: m.Catalog, Index: m.Index, Status: m.Status, Hub: m.Feed}
	return func(mux *http.ServeMux) {
		a.Mount(mux)
		if next != nil {
			next(mux)
		}
	}
}

// closeFeeds ends every feed cleanly (http.Server.RegisterOnShutdown), so that Shutdown does
// not wait for streams that never end by themselves.
func (m *Main) closeFeeds() {
	if m.Feed != nil {
		m.Feed.Close()
	}
}

// closeStatus saves the read model once the runner has stopped (Close).
func (m *Main) closeStatus() {
	if m.Snapshots != nil {
		if _, err := m.Snapshots.Save(); err != nil {
			m.Config.Log.Warn("snapshot on close failed", "err", err)
		}
	}
	if m.releaseLock != nil {
		m.releaseLock()
		m.releaseLock = nil
	}
}

// --- client verbs ---

// statusClient reads the status API.
type statusClient struct {
	server, token, actor string
	http                 *http.Client
}

func (c *statusClient) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", envOr("QINGLING_SERVER", "http://127.0.0.1:8080"), "Qingling HTTP server")
	fs.StringVar(&c.token, "token", envOr("QINGLING_TOKEN", ""), "API token (servers with identities)")
	fs.StringVar(&c.actor, "actor", envOr("QINGLING_ACTOR", ""), "acting user (X-Qingling-Actor, servers without identities)")
}

func (c *statusClient) request(ctx context.Context, path string, q url.Values) (*http.Request, error) {
	u := strings.TrimRight(c.server, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, events.Errorf(events.KindInvalid, "invalid_server", "server", "bad server URL %q", c.server)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else if c.actor != "" {
		req.Header.Set("X-Qingling-Actor", c.actor)
	}
	return req, nil
}

// errorOf reads an API error body.
func errorOf(res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	var body struct {
		Error *events.Error `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != nil {
		e := body.Error
		e.Kind = httpapi.KindOfStatus(res.StatusCode)
		return e
	}
	return events.Errorf(httpapi.KindOfStatus(res.StatusCode), "http_"+strconv.Itoa(res.StatusCode), "", "%s", strings.TrimSpace(string(b)))
}

func (c *statusClient) get(ctx context.Context, path string, q url.Values, v any) error {
	req, err := c.request(ctx, path, q)
	if err != nil {
		return err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return events.Errorf(events.KindUnavailable, "unreachable", "server", "cannot reach %s: %v", c.server, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return errorOf(res)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

func failStatus(stderr io.Writer, err error) int {
	e := events.ErrorOf(err)
	fmt.Fprintf(stderr, "qingling: %s: %s", e.Code, e.Message)
	if e.Field != "" {
		fmt.Fprintf(stderr, " (%s)", e.Field)
	}
	fmt.Fprintln(stderr)
	return exitCodeOf(e)
}

// statusCmd prints the zero-out status as a table: prefectures (rows) × sectors (columns),
// or with --sector every count of one sector per prefecture.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &statusClient{http: &http.Client{Timeout: 30 * time.Second}}
	c.register(fs)
	sector := fs.String("sector", "", "one sector (mine, chem, fireworks, trade, forest, gas, all): every count, per region")
	region := fs.String("region", "", "the region whose children are listed (default: the province)")
	asOf := fs.String("as-of", "", "as recorded by this instant (RFC 3339) or the end of this date")
	from := fs.String("from", "", "period figures: found from this date")
	to := fs.String("to", "", "period figures: found up to this date")
	minSeq := fs.Uint64("min-seq", 0, "wait until the server has applied this seq (read your writes)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	q := url.Values{}
	for k, v := range map[string]string{"sector": *sector, "region": *region, "as_of": *asOf, "from": *from, "to": *to} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *minSeq > 0 {
		q.Set("min_seq", strconv.FormatUint(*minSeq, 10))
	}
	var res feed.StatusResponse
	if err := c.get(ctx, "/v1/status", q, &res); err != nil {
		return failStatus(stderr, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return exitOK
	}
	printStatus(stdout, &res, *sector != "")
	return exitOK
}

// width is a string's width on a terminal: East Asian wide characters take two columns.
func width(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r >= 0x1100 && r <= 0x115F, r >= 0x2E80 && r <= 0xA4CF, r >= 0xAC00 && r <= 0xD7A3, r >= 0xF900 && r <= 0xFAFF,
			r >= 0xFE30 && r <= 0xFE4F, r >= 0xFF00 && r <= 0xFF60, r >= 0xFFE0 && r <= 0xFFE6, r == '✓' || r == '✗':
			if r == '✓' || r == '✗' {
				n++
			} else {
				n += 2
			}
		default:
			n++
		}
	}
	return n
}

func pad(s string, w int, right bool) string {
	if d := w - width(s); d > 0 {
		if right {
			return strings.Repeat(" ", d) + s
		}
		return s + strings.Repeat(" ", d)
	}
	return s
}

func printTable(w io.Writer, head []string, rows [][]string) {
	ws := make([]int, len(head))
	for i, h := range head {
		ws[i] = width(h)
	}
	for _, r := range rows {
		for i, c := range r {
			ws[i] = max(ws[i], width(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(pad(c, ws[i], i > 0))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("─", ws[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}

func verdict(r *status.Row) string {
	if r.Zeroed {
		return "✓"
	}
	return "✗"
}

func printStatus(w io.Writer, res *feed.StatusResponse, detail bool) {
	when := "实时 live"
	if !res.Live {
		when = "截至 as of"
	}
	asOf, _ := time.Parse(time.RFC3339Nano, res.AsOf)
	fmt.Fprintf(w, "清零状态 zero-out status — %s %s (seq %d)\n\n", when, asOf.In(events.Shanghai).Format("2006-01-02 15:04:05"), res.Seq)
	type regionKey struct{ code, level string }
	var regions []regionKey
	seen := map[regionKey]bool{}
	names := map[string]string{}
	cells := map[string]map[regionKey]*status.Row{}
	var sectors []string
	for i := range res.Rows {
		r := &res.Rows[i]
		k := regionKey{r.Region, r.Level}
		if !seen[k] {
			seen[k] = true
			regions = append(regions, k)
		}
		names[r.Region] = r.RegionZh
		if cells[r.Sector] == nil {
			cells[r.Sector] = map[regionKey]*status.Row{}
			sectors = append(sectors, r.Sector)
		}
		cells[r.Sector][k] = r
	}
	// the region itself last, as the total
	sort.SliceStable(regions, func(i, j int) bool { return levelRank(regions[i].level) < levelRank(regions[j].level) })
	label := func(k regionKey) string {
		s := names[k.code] + " " + k.code
		if k.level == status.LevelProvince || (len(regions) > 0 && k == regions[len(regions)-1]) {
			s = "合计 " + s
		}
		return s
	}
	if detail {
		head := []string{"地区 region", "未销号 open", "重大 major", "逾期 overdue", "重大逾期", "待验收 awaiting", "验收超期", "挂牌 listed", "挂牌逾期", "已销号 cleared", "按期", "存量 stock", "增量 incr.", "存量重大", "清零"}
		for _, s := range sectors {
			var rows [][]string
			var sname string
			for _, k := range regions {
				r := cells[s][k]
				if r == nil {
					continue
				}
				sname = r.SectorZh + " " + r.SectorEn + " (" + r.Sector + ")"
				rows = append(rows, []string{label(k), itoa(r.Open), itoa(r.OpenMajor), itoa(r.Overdue), itoa(r.OverdueMajor), itoa(r.AwaitingVerification),
					itoa(r.VerificationOverdue), itoa(r.Listed), itoa(r.ListedOverdue), itoa(r.Cleared), itoa(r.ClearedOnTime), itoa(r.Stock), itoa(r.Increment), itoa(r.StockMajor), verdict(r)})
				if r.Period != nil {
					defer printPeriod(w, r)
				}
			}
			fmt.Fprintf(w, "%s\n", sname)
			printTable(w, head, rows)
			fmt.Fprintln(w)
		}
		return
	}
	head := []string{"地区 region"}
	for _, s := range sectors {
		for _, r := range cells[s] {
			head = append(head, r.SectorZh+" "+s)
			break
		}
	}
	var rows [][]string
	for _, k := range regions {
		row := []string{label(k)}
		for _, s := range sectors {
			r := cells[s][k]
			if r == nil {
				row = append(row, "")
				continue
			}
			row = append(row, fmt.Sprintf("%d/%d/%d %s", r.Open, r.OpenMajor, r.Overdue, verdict(r)))
		}
		rows = append(rows, row)
	}
	printTable(w, head, rows)
	fmt.Fprintln(w, "\n每格 each cell: 未销号/重大/逾期 open/major/overdue; ✓ 已清零 zeroed (无未销号重大隐患且无逾期), ✗ 未清零")
}

func printPeriod(w io.Writer, r *status.Row) {
	p := r.Period
	rate := "—"
	if p.DynamicZeroRate != nil {
		rate = fmt.Sprintf("%.1f%%", 100**p.DynamicZeroRate)
	}
	fmt.Fprintf(w, "%s %s %s 期间 period %s – %s: 发现 found %d (重大 major %d), 已销号 cleared %d (按期 on time %d); 动态清零率 dynamic zero rate %s (%d/%d)\n",
		r.SectorZh, r.RegionZh, r.Region, p.From, p.To, p.Found, p.FoundMajor, p.Cleared, p.ClearedOnTime, rate, p.MajorClearedOnTime, p.MajorDue)
}

func levelRank(l string) int {
	switch l {
	case status.LevelCounty:
		return 0
	case status.LevelPrefecture:
		return 1
	}
	return 2
}

func itoa(n int) string { return strconv.Itoa(n) }

// watchCmd prints live changes of the status from /v1/feed, reconnecting with Last-Event-ID.
func watchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &statusClient{http: &http.Client{}}
	c.register(fs)
	sector := fs.String("sector", "", "only this sector (or all)")
	region := fs.String("region", "", "only rows within this region")
	after := fs.Uint64("after", 0, "resume after this revision (0: the current value of every row first)")
	asJSON := fs.Bool("json", false, "print each change as JSON, one per line")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	q := url.Values{}
	if *sector != "" {
		q.Set("sector", *sector)
	}
	if *region != "" {
		q.Set("region", *region)
	}
	last := *after
	wait := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := c.watchOnce(ctx, q, &last, func(rev uint64, data []byte) {
			wait = 500 * time.Millisecond
			if *asJSON {
				fmt.Fprintf(stdout, "%s\n", data)
				return
			}
			var v kvstatus.Value
			if json.Unmarshal(data, &v) != nil {
				return
			}
			at, _ := time.Parse(time.RFC3339Nano, v.AsOf)
			fmt.Fprintf(stdout, "%s  #%-6d %s  %s %s %s  未销号 %d  重大 %d  逾期 %d  待验收 %d  挂牌 %d  存量重大 %d  %s\n",
				at.In(events.Shanghai).Format("01-02 15:04:05"), rev, v.Key, v.SectorZh, v.RegionZh, v.Region,
				v.Open, v.OpenMajor, v.Overdue, v.AwaitingVerification, v.Listed, v.StockMajor, map[bool]string{true: "✓ 已清零", false: "✗ 未清零"}[v.Zeroed])
		})
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			if k := events.ErrorOf(err).Kind; k == events.KindInvalid || k == events.KindForbidden || k == events.KindUnauthenticated {
				return failStatus(stderr, err)
			}
			fmt.Fprintf(stderr, "qingling watch: %v; reconnecting (after #%d)\n", events.ErrorOf(err).Message, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
	return exitOK
}

// watchOnce follows one feed connection until it ends; last carries the revision to resume from.
func (c *statusClient) watchOnce(ctx context.Context, q url.Values, last *uint64, fn func(rev uint64, data []byte)) error {
	req, err := c.request(ctx, "/v1/feed", q)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*last, 10))
	}
	res, err := c.http.Do(req)
	if err != nil {
		return events.Errorf(events.KindUnavailable, "unreachable", "server", "cannot reach %s: %v", c.server, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return errorOf(res)
	}
	return readSSE(res.Body, func(id, event string, data []byte) {
		if event == "end" {
			return
		}
		rev, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return
		}
		*last = rev
		if event == "status" {
			fn(rev, data)
		}
	})
}

// readSSE calls fn for each event of a Server-Sent Events stream until it ends.
func readSSE(r io.Reader, fn func(id, event string, data []byte)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, event string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 || event != "" {
				if event == "" {
					event = "message"
				}
				fn(id, event, data)
			}
			event, data = "", nil
		case strings.HasPrefix(line, ":"):
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				id = v
			case "event":
				event = v
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, v...)
			}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return events.Errorf(events.KindUnavailable, "feed_ended", "", "the feed broke off: %v", err)
	}
	return nil
}

// rebuildCmd rebuilds the read model from scratch: every event of the log into a fresh index
// and status, a new snapshot, and the hz_status bucket reconciled.
func rebuildCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", envOr("QINGLING_DATA", "data"), "data directory (embedded NATS store; the snapshot is written here)")
	natsURL := fs.String("nats", envOr("QINGLING_NATS", ""), "use an existing NATS / JetStream server instead of the embedded store")
	noKV := fs.Bool("no-kv", false, "do not reconcile the hz_status bucket")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cat, err := events.LoadCatalog()
	if err != nil {
		fmt.Fprintln(stderr, "qingling rebuild:", err)
		return exitFailure
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		fmt.Fprintln(stderr, "qingling rebuild:", err)
		return exitFailure
	}
	release, err := lockReadModel(filepath.Join(*dataDir, "readmodel.lock"))
	if err != nil {
		fmt.Fprintln(stderr, "qingling rebuild:", err, "— stop it first, or rebuild with --nats against a shared server")
		return exitFailure
	}
	defer release()
	var nc *nats.Conn
	if *natsURL != "" {
		if nc, err = nats.Connect(*natsURL, nats.Name("qingling-rebuild")); err != nil {
			fmt.Fprintln(stderr, "qingling rebuild:", err)
			return exitUnreachable
		}
	} else {
		srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: filepath.Join(*dataDir, "jetstream"), ServerName: "qingling"})
		if err != nil {
			fmt.Fprintln(stderr, "qingling rebuild:", err)
			return exitFailure
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		if nc, err = jsstore.ConnectInProcess(srv, nats.Name("qingling-rebuild")); err != nil {
			fmt.Fprintln(stderr, "qingling rebuild:", err)
			return exitFailure
		}
	}
	defer nc.Close()
	store, err := jsstore.Open(ctx, nc, jsstore.Config{})
	if err != nil {
		fmt.Fprintln(stderr, "qingling rebuild:", err)
		return exitFailure
	}
	idx := projections.NewIndex(cat)
	sp := status.New(status.Config{Catalog: cat})
	bar := newProgress(stderr, "rebuild: replaying the log 重建读模型")
	start := time.Now()
	refs := evidence.NewRefs(true) // read from the log's start: complete
	seq, err := projections.Replay(ctx, store, idx, []projections.Projection{sp, refs}, bar.Set)
	took := time.Since(start)
	bar.Done()
	if err != nil {
		fmt.Fprintln(stderr, "qingling rebuild:", err)
		return exitFailure
	}
	snaps := &projections.Snapshots{Path: filepath.Join(*dataDir, "readmodel.snap"), Index: idx, Status: sp, Parts: []projections.SnapshotPart{refs}}
	h, err := snaps.Save()
	if err != nil {
		fmt.Fprintln(stderr, "qingling rebuild: snapshot:", err)
		return exitFailure
	}
	rate := float64(seq) / max(took.Seconds(), 1e-9)
	fmt.Fprintf(stdout, "rebuilt %d events, %d hazards in %s (%.0f events/s); snapshot %s at seq %d\n", seq, idx.Len(), took.Round(time.Millisecond), rate, snaps.Path, h.Seq)
	if !*noKV {
		js := store.JetStream()
		kv, err := kvstatus.Open(ctx, js, 0)
		if err == nil {
			w := &kvstatus.Writer{JS: js, KV: kv, Status: sp}
			if err = w.Sync(ctx); err == nil {
				fmt.Fprintf(stdout, "hz_status reconciled: %d rows written\n", w.Puts())
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "qingling rebuild: hz_status:", err)
			return exitFailure
		}
	}
	return exitOK
}

// instanceName is this instance's stable name (kept in the data directory), the holder name of
// the hz_status lease.
func instanceName(dir string) (string, error) {
	p := filepath.Join(dir, "instance.id")
	if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	host, _ := os.Hostname()
	name := host + "-" + events.NewID()[24:]
	return name, os.WriteFile(p, []byte(name+"\n"), 0o644)
}
