package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/auditlog"
)

// TestLeafOffice: a county office keeps accepting findings while its link to the province is
// cut; when the link returns they reach the hub exactly once, and the hub refuses commands
// for hazards homed at the office, naming the home.
func TestLeafOffice(t *testing.T) {
	if testing.Short() {
		t.Skip("two servers")
	}
	ctx := context.Background()
	hubDir := t.TempDir()
	leafPort := freePort(t)
	hubCfg := Config{DataDir: hubDir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		LeafListen: "127.0.0.1:" + strconv.Itoa(leafPort), LeafPassword: "s3cret",
		Leaves: []jsstore.Leaf{{Domain: "c530102", County: "530102"}}}
	hub, err := Open(ctx, hubCfg)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := Open(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		Home: "c530102", LeafCounty: "530102", LeafRemote: fmt.Sprintf("nats-leaf://leaf:s3cret@127.0.0.1:%d", leafPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer leaf.Close()
	report := func(m *Main, n int) apiResp {
		return call(t, "POST", m.URL()+"/v1/hazards", "insp-wh", map[string]any{"sector": "forest", "region": "530102", "site": map[string]any{"name": fmt.Sprintf("西山林区%d号坟区", n)},
			"grade": "general", "description": "坟区祭祀用火隐患", "source": "inspection", "deadline": "2099-01-01", "command_id": events.ReportID(fmt.Sprint("leaf-test-", n))})
	}
	r := report(leaf, 0)
	if r.Code != 201 || r.Body["home"] != "qingling/c530102" {
		t.Fatalf("leaf report: %d %s", r.Code, r.Raw)
	}
	waitFor(t, 30*time.Second, "the hub to source the office's first finding", func() bool { return hub.Index.Len() == 1 })
	// Cut the link: the province goes away; the office keeps working.
	hub.Close()
	for n := 1; n <= 20; n++ {
		if r := report(leaf, n); r.Code != 201 {
			t.Fatalf("leaf report %d while cut off: %d %s", n, r.Code, r.Raw)
		}
	}
	if r := report(leaf, 5); r.Code != 200 {
		t.Fatalf("a retry at the leaf: %d %s", r.Code, r.Raw)
	}
	hub, err = Open(ctx, hubCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	waitFor(t, 60*time.Second, "the office's findings to reach the hub", func() bool { return hub.Index.Len() == 21 })
	last, err := hub.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last != 21 {
		t.Fatalf("hub log has %d events for 21 findings", last)
	}
	// The hub refuses commands for the office's hazards, naming their home.
	id := r.Body["id"].(string)
	before := lastSeq(t, hub)
	got := call(t, "POST", hub.URL()+"/v1/hazards/"+id+"/plan", "rect", map[string]any{"measures": "清理可燃物"})
	if got.Code != 422 || errCode(got) != "wrong_home" {
		t.Fatalf("hub command for a leaf hazard: %d %s", got.Code, got.Raw)
	}
	if lastSeq(t, hub) != before {
		t.Fatal("the refused command wrote")
	}
	st := call(t, "GET", hub.URL()+"/v1/hazards/"+id, "", nil)
	if st.Body["home"] != "qingling/c530102" || st.Body["region"] != "530102" {
		t.Fatalf("hub state: %s", st.Raw)
	}
	// and the office accepts it
	if r := call(t, "POST", leaf.URL()+"/v1/hazards/"+id+"/plan", "rect", map[string]any{"measures": "清理可燃物"}); r.Code != 200 {
		t.Fatalf("leaf plan: %d %s", r.Code, r.Raw)
	}
	waitFor(t, 30*time.Second, "the plan to reach the hub", func() bool { h, _ := hub.Index.Get(id); return h.Version == 2 })
}

// TestLeafOfficeFilters: at a county office the log keeps its events under
// leaf.<county>.hz.…; replay, verify and the exports (CLI and HTTP) filtered by sector,
// region or hazard find them there, and at the hub (hz.…, sourced) as well.
func TestLeafOfficeFilters(t *testing.T) {
	if testing.Short() {
		t.Skip("two servers")
	}
	ctx := context.Background()
	hubDir, leafDir := t.TempDir(), t.TempDir()
	leafPort := freePort(t)
	hub, err := Open(ctx, Config{DataDir: hubDir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		LeafListen: "127.0.0.1:" + strconv.Itoa(leafPort), LeafPassword: "s3cret", Leaves: []jsstore.Leaf{{Domain: "c530102", County: "530102"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { hub.Close() }()
	leaf, err := Open(ctx, Config{DataDir: leafDir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		Home: "c530102", LeafCounty: "530102", LeafRemote: fmt.Sprintf("nats-leaf://leaf:s3cret@127.0.0.1:%d", leafPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { leaf.Close() }()
	report := func(sector, site string) string {
		t.Helper()
		r := call(t, "POST", leaf.URL()+"/v1/hazards", "insp-wh", map[string]any{"sector": sector, "region": "530102", "site": map[string]any{"name": site},
			"grade": "general", "description": "现场检查发现隐患", "source": "inspection", "deadline": "2099-01-01"})
		if r.Code != 201 {
			t.Fatalf("leaf report: %d %s", r.Code, r.Raw)
		}
		return r.Body["id"].(string)
	}
	var forest []string
	for i := 0; i < 3; i++ {
		forest = append(forest, report("forest", fmt.Sprintf("西山林区%d号坟区", i)))
	}
	trade := report("trade", "五华制造厂")
	if r := call(t, "POST", leaf.URL()+"/v1/hazards/"+forest[0]+"/plan", "rect", map[string]any{"measures": "清理可燃物"}); r.Code != 200 {
		t.Fatalf("leaf plan: %d %s", r.Code, r.Raw)
	}

	// HTTP downloads at the office, while it runs
	ledgerCSV := func(base, query string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/v1/export/ledger?format=csv&"+query, nil)
		req.Header.Set("X-Qingling-Actor", "aud-1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("ledger %s: %d %s", query, res.StatusCode, b)
		}
		return string(b)
	}
	has := func(what, out string, want, not []string) {
		t.Helper()
		for _, id := range want {
			if !strings.Contains(out, id) {
				t.Fatalf("%s lacks %s:\n%s", what, id, out[:min(len(out), 600)])
			}
		}
		for _, id := range not {
			if strings.Contains(out, id) {
				t.Fatalf("%s holds %s, which its filter excludes", what, id)
			}
		}
	}
	has("office ledger sector=forest", ledgerCSV(leaf.URL(), "sector=forest"), forest, []string{trade})
	has("office ledger region=530100", ledgerCSV(leaf.URL(), "region=530100"), append([]string{trade}, forest...), nil)
	waitFor(t, 30*time.Second, "the hub to source the office's log", func() bool { h, _ := hub.Index.Get(forest[0]); return h.Version == 2 && hub.Index.Len() == 4 })
	has("hub ledger sector=trade", ledgerCSV(hub.URL(), "sector=trade"), []string{trade}, forest)

	// the CLI on the stopped office's data directory
	leaf.Close()
	lines := func(out string) []replayLine {
		t.Helper()
		var ls []replayLine
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var r replayLine
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("replay line %q: %v", l, err)
			}
			ls = append(ls, r)
		}
		return ls
	}
	replay := func(dir string, args ...string) []replayLine {
		t.Helper()
		code, out, errs := auditRun(t, append([]string{"replay", "--data", dir}, args...)...)
		if code != exitOK {
			t.Fatalf("replay %v: %d %s", args, code, errs)
		}
		return lines(out)
	}
	if got := replay(leafDir, "--sector", "forest"); len(got) != 4 || !strings.HasPrefix(got[0].Subject, "leaf.530102.hz.forest.") {
		t.Fatalf("office replay --sector forest: %d lines %+v", len(got), got)
	}
	if got := replay(leafDir, "--region", "530102"); len(got) != 5 {
		t.Fatalf("office replay --region 530102: %d lines", len(got))
	}
	if got := replay(leafDir, "--sector", "trade", "--region", "530100"); len(got) != 1 || got[0].Event.Subject != trade {
		t.Fatalf("office replay trade: %+v", got)
	}
	if got := replay(leafDir, "--hazard", forest[0]); len(got) != 2 {
		t.Fatalf("office replay --hazard: %d lines", len(got))
	}
	if got := replay(leafDir, "--region", "530103"); len(got) != 0 {
		t.Fatalf("office replay of another county: %d lines", len(got))
	}
	// verify --sector reads the office's events too, and finds nothing wrong with them.
	code, out, errs := auditRun(t, "verify", "--data", leafDir, "--sector", "forest", "--json")
	var rep struct {
		Events, Hazards int
		Problems        []struct{ Code string }
	}
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || rep.Events != 4 || rep.Hazards != 3 || len(rep.Problems) != 0 {
		t.Fatalf("office verify --sector forest: %d %v %+v %s\n%s", code, err, rep, errs, out)
	}
	csvOut := filepath.Join(t.TempDir(), "ledger.csv")
	if code, _, errs := auditRun(t, "export", "ledger", "--data", leafDir, "--sector", "forest", "--out", csvOut); code != exitOK {
		t.Fatalf("office export ledger: %d %s", code, errs)
	}
	b, _ := os.ReadFile(csvOut)
	has("office export ledger --sector forest", string(b), forest, []string{trade})

	// and the hub, whose copy is under hz.…
	hub.Close()
	if got := replay(hubDir, "--sector", "forest"); len(got) != 4 || !strings.HasPrefix(got[0].Subject, "hz.forest.") {
		t.Fatalf("hub replay --sector forest: %d lines", len(got))
	}
}

// TestLeafLinkPermissions: the hub's leaf user (--leaf-listen, --leaf-password) may not
// publish the log (hz.>) nor checkpoints (hzcp.>) on the hub, nor receive them from it: a
// client at a real county office publishes both, and nothing arrives at the hub; the hub's
// HZ_CHECKPOINTS holds only its own instance's checkpoints, the office's only the office's.
func TestLeafLinkPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("two servers")
	}
	ctx := context.Background()
	leafPort := freePort(t)
	hub, err := Open(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		LeafListen: "127.0.0.1:" + strconv.Itoa(leafPort), LeafPassword: "s3cret", Leaves: []jsstore.Leaf{{Domain: "c530102", County: "530102"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	leaf, err := Open(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", NoSync: true, Log: quietLog(),
		Home: "c530102", LeafCounty: "530102", LeafRemote: fmt.Sprintf("nats-leaf://leaf:s3cret@127.0.0.1:%d", leafPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer leaf.Close()
	waitFor(t, 30*time.Second, "the leaf link", func() bool { return hub.NATS.NumLeafNodes() == 1 && leaf.NATS.NumLeafNodes() == 1 })
	lc, err := nats.Connect(leaf.NATS.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	hc, err := nats.Connect(hub.NATS.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	// each side's checkpoint stream holds its own instance's checkpoints (both wrote one at
	// start) and what was published on that side (local), nothing from across the link
	onlyOwn := func(m *Main, local ...string) {
		t.Helper()
		js, _ := jetstream.New(m.Conn)
		str, err := js.Stream(ctx, auditlog.CheckpointStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := str.Info(ctx, jetstream.WithSubjectFilter("hzcp.>"))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.State.Subjects) != 1+len(local) || info.State.Subjects["hzcp."+m.ServerKey] == 0 {
			t.Fatalf("%s %s holds %v; its instance's key is %s, published there %v", m.Config.Home, auditlog.CheckpointStream, info.State.Subjects, m.ServerKey, local)
		}
		for _, l := range local {
			if info.State.Subjects[l] == 0 {
				t.Fatalf("%s %s lacks %s, published there", m.Config.Home, auditlog.CheckpointStream, l)
			}
		}
	}
	// office → hub: "probe.office" is allowed; the forbidden subjects published before the last
	// probe would arrive before it on the one link
	deployOnlyAllowed(t, "office → hub", lc, hc, "probe.office",
		[]string{"hzcp.NFORGEDINSTANCE", "hz.forest.530000.530100.530102.0193f2c4-0000-7000-8000-0000000000aa"},
		[]string{"hzcp.>", "hz.>", "probe.>"})
	onlyOwn(hub)
	if n := hub.Index.Len(); n != 0 {
		t.Fatalf("the hub's log took %d hazards from the link", n)
	}
	deployOnlyAllowed(t, "hub → office", hc, lc, "probe.hub",
		[]string{"hzcp.NFORGEDHUB", "hz.forest.530000.530100.530102.0193f2c4-0000-7000-8000-0000000000bb"},
		[]string{"hzcp.>", "hz.>", "probe.>"})
	onlyOwn(leaf, "hzcp.NFORGEDINSTANCE")
}
