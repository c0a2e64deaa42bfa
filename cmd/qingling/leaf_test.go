package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
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
