package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/identity"
	"qingling/projections/kvstatus"
)

func healthOf(t *testing.T, url string) map[string]any {
	res, err := http.Get(url + "/healthz")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var h map[string]any
	json.NewDecoder(res.Body).Decode(&h)
	w, _ := h["hz_status_writer"].(map[string]any)
	return w
}

// TestLeaseTakeoverAfterSIGSTOP: two Qingling processes on one NATS; the hz_status writer is
// paused with SIGSTOP past its lease, the other takes over, and the paused one, resumed, cannot
// write.
func TestLeaseTakeoverAfterSIGSTOP(t *testing.T) {
	if testing.Short() {
		t.Skip("two processes")
	}
	bin := qinglingBinary(t)
	ns, err := jsstore.RunServer(jsstore.ServerConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(t.TempDir(), "users.json")
	st, _ := identity.Open(users, cat)
	insp, _ := st.Add(events.User{ID: "insp", Role: events.RoleInspector, Sectors: []string{"all"}, Jurisdiction: "530000"})
	start := func() *child {
		return startChild(t, bin, "--nats", ns.ClientURL(), "--data", t.TempDir(), "--http", "127.0.0.1:0", "--users", users, "--lease-ttl", "2s")
	}
	a, b := start(), start()
	defer func() { a.cmd.Process.Signal(syscall.SIGCONT); a.kill(); b.kill() }()
	var holder, other *child
	waitFor(t, 20*time.Second, "one instance to hold the lease", func() bool {
		ha, hb := healthOf(t, a.url), healthOf(t, b.url)
		switch {
		case ha["held"] == true && hb["held"] != true:
			holder, other = a, b
		case hb["held"] == true && ha["held"] != true:
			holder, other = b, a
		}
		return holder != nil
	})
	holderName := healthOf(t, holder.url)["instance"].(string)
	nc, _ := nats.Connect(ns.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), kvstatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	report := func(url string, n int) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"sector": "fireworks", "region": "532501", "site": map[string]any{"name": fmt.Sprintf("个旧烟花厂%d", n)},
			"grade": "general", "description": "工房内药物存放超量", "source": "inspection", "deadline": "2099-01-01"})
		code, m, err := postJSON(http.DefaultClient, url+"/v1/hazards", insp.Token, body)
		if err != nil || code != 201 {
			t.Fatalf("report: %d %v %v", code, m, err)
		}
	}
	report(holder.url, 1)
	rowKey := "fireworks.530000.532500.532501"
	rowOpen := func() (int, string, uint64) {
		e, err := kv.Get(context.Background(), rowKey)
		if err != nil {
			return 0, "", 0
		}
		var v kvstatus.Value
		json.Unmarshal(e.Value(), &v)
		return v.Open, v.Writer, e.Revision()
	}
	waitFor(t, 10*time.Second, "the holder to write the row", func() bool { n, w, _ := rowOpen(); return n == 1 && w == holderName })

	// pause the holder past its lease
	if err := holder.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused, _ := kv.Get(context.Background(), kvstatus.LeaseKey) // the revision the paused holder fences with
	waitFor(t, 20*time.Second, "the other to take the lease over", func() bool { return healthOf(t, other.url)["held"] == true })
	lease, _ := kv.Get(context.Background(), kvstatus.LeaseKey)
	takeover := lease.Revision()
	report(other.url, 2)
	otherName := healthOf(t, other.url)["instance"].(string)
	waitFor(t, 10*time.Second, "the new holder to write the row", func() bool { n, w, _ := rowOpen(); return n == 2 && w == otherName })

	// whatever the paused holder still has in flight is refused by the server: its fence is stale
	_, err = js.Publish(context.Background(), "$KV."+kvstatus.Bucket+"."+rowKey, []byte(`{"open":99}`),
		jetstream.WithExpectLastSequenceForSubject(paused.Revision(), kvstatus.LeaseSubject))
	if err == nil {
		t.Fatal("a put fenced by the paused holder's lease revision was accepted")
	}
	// resume the paused one: it learns of the new finding through its projection, tries to
	// write, and is fenced off
	if err := holder.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the resumed instance to see it lost the lease", func() bool {
		h := healthOf(t, holder.url)
		return h != nil && h["held"] == false
	})
	report(other.url, 3)
	waitFor(t, 10*time.Second, "the holder's write", func() bool { n, w, _ := rowOpen(); return n == 3 && w == otherName })
	// no value written by the former holder after the takeover
	hist, err := kv.History(context.Background(), rowKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		var v kvstatus.Value
		json.Unmarshal(e.Value(), &v)
		if e.Revision() > takeover && v.Writer == holderName {
			t.Fatalf("the former holder wrote revision %d after the takeover at %d", e.Revision(), takeover)
		}
	}
	h := healthOf(t, holder.url)
	t.Logf("former holder %s: held=%v fenced=%v; new holder %s took over at revision %d", holderName, h["held"], h["fenced"], otherName, takeover)
}
