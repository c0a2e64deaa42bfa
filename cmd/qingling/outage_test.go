package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
)

// TestOutageAnswers503AndRecovers: with its NATS server gone, a command is answered 503 within
// a bound, and once NATS is back the next command succeeds without restarting Qingling.
func TestOutageAnswers503AndRecovers(t *testing.T) {
	natsDir := t.TempDir()
	ns, err := jsstore.RunServer(jsstore.ServerConfig{Dir: natsDir, Listen: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(ns.Addr().String())
	port, _ := strconv.Atoi(portStr)
	m, err := Open(context.Background(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSURL: ns.ClientURL(), Log: quietLog(), StoreRetry: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	report := func(n int) apiResp { // a retried report keeps its command id, as clients do
		return call(t, "POST", m.URL()+"/v1/hazards", "insp", map[string]any{"sector": "gas", "region": "530102", "site": map[string]any{"name": fmt.Sprintf("燃气站%d", n)},
			"grade": "general", "description": "钢瓶检验过期", "source": "inspection", "deadline": "2099-01-01", "command_id": events.ReportID(fmt.Sprint("outage-", n))})
	}
	if r := report(1); r.Code != 201 {
		t.Fatalf("before the outage: %d %s", r.Code, r.Raw)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	start := time.Now()
	r := report(2)
	took := time.Since(start)
	if r.Code != 503 || errCode(r) != "store_unavailable" {
		t.Fatalf("during the outage: %d %s", r.Code, r.Raw)
	}
	if took > 8*time.Second {
		t.Fatalf("503 took %v; it must come within a bound", took)
	}
	t.Logf("503 after %v", took.Round(time.Millisecond))
	ns2, err := jsstore.RunServer(jsstore.ServerConfig{Dir: natsDir, Listen: "127.0.0.1:" + strconv.Itoa(port), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Shutdown()
	waitFor(t, 20*time.Second, "a command to succeed after NATS returns", func() bool { return report(3).Code == 201 })
	waitFor(t, 10*time.Second, "projection to catch up", func() bool { return m.Index.Len() == 2 })
	h := call(t, "GET", m.URL()+"/v1/hazards?limit=10", "", nil)
	if n := len(h.Body["items"].([]any)); n != 2 {
		t.Fatalf("after recovery %d hazards, want 2", n)
	}
}

// TestReplicasThatCannotBePlaced: --replicas 3 on a single server is a clear error at start.
func TestReplicasThatCannotBePlaced(t *testing.T) {
	ns, err := jsstore.RunServer(jsstore.ServerConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	_, err = Open(context.Background(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSURL: ns.ClientURL(), Replicas: 3, Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "replicas 3") {
		t.Fatalf("want a clear replicas error, got %v", err)
	}
	t.Log(err)
}
