package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
)

type node struct {
	name, dir         string
	port, clusterPort int
	srv               *server.Server
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster runs three JetStream nodes in this process on ports the OS picked.
func startCluster(t *testing.T) []*node {
	t.Helper()
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = &node{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), port: freePort(t), clusterPort: freePort(t)}
	}
	for _, n := range nodes {
		n.start(t, nodes)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.srv != nil {
				n.srv.Shutdown()
			}
		}
	})
	return nodes
}

func (n *node) start(t *testing.T, all []*node) {
	t.Helper()
	var routes []string
	for _, o := range all {
		if o != n {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
		}
	}
	s, err := jsstore.RunServer(jsstore.ServerConfig{Dir: n.dir, Listen: "127.0.0.1:" + strconv.Itoa(n.port), ServerName: n.name, Options: func(o *server.Options) {
		o.Cluster = server.ClusterOpts{Name: "qingling", Host: "127.0.0.1", Port: n.clusterPort}
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = s
}

// TestClusterFailover: R3 streams on three nodes, writers running, the stream leader shut down;
// after recovery every acknowledged event is present exactly once.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	nodes := startCluster(t)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	ctx := context.Background()
	m, err := Open(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSURL: strings.Join(urls, ","), Replicas: 3, Log: quietLog(), StoreRetry: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	js := m.Store.JetStream()
	info, err := js.Stream(ctx, "HAZARDS")
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("HAZARDS has %d replicas", r)
	}
	for _, name := range []string{"HZ_CHECKPOINTS", "KV_hz_status", "OBJ_hz_evidence"} {
		si, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := si.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas", name, r)
		}
	}
	var (
		mu    sync.Mutex
		acked = map[string]bool{} // event ids acknowledged to a client
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		fails int
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				cmd := &events.Command{Action: events.ActReport, CommandID: events.NewID(), Actor: events.Actor{ID: "insp"},
					Payload: &events.Reported{Sector: "mine", Region: "530113", Site: events.Site{Name: fmt.Sprintf("矿%d-%d", w, n)}, Grade: "general",
						Description: "支护不到位", Source: "inspection", Deadline: "2099-01-01"}}
				res, err := m.App.Execute(ctx, cmd)
				if err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
					continue
				}
				mu.Lock()
				acked[res.EventID] = true
				mu.Unlock()
			}
		}(w)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 20*time.Second, "writes before the failover", func() bool { return count() > 200 })
	si, err := js.Stream(ctx, "HAZARDS")
	if err != nil {
		t.Fatal(err)
	}
	leader := si.CachedInfo().Cluster.Leader
	var victim *node
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no stream leader (%q)", leader)
	}
	before := count()
	victim.srv.Shutdown()
	victim.srv.WaitForShutdown()
	waitFor(t, 60*time.Second, "writes after the leader went away", func() bool { return count() > before+200 })
	victim.start(t, nodes)
	waitFor(t, 60*time.Second, "more writes with the node back", func() bool { return count() > before+400 })
	close(stop)
	wg.Wait()
	// every acknowledged event is in the stream exactly once (read on every node's view)
	last, err := m.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// read the whole stream back (the cluster may still be settling: retry from where it stopped)
	seen := map[string]int{}
	next := uint64(1)
	readDeadline := time.Now().Add(60 * time.Second)
	for next <= last {
		if time.Now().After(readDeadline) {
			t.Fatalf("could not read the stream back past seq %d", next)
		}
		cons, err := js.OrderedConsumer(ctx, "HAZARDS", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next})
		if err != nil {
			continue
		}
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			continue
		}
		for msg := range batch.Messages() {
			md, _ := msg.Metadata()
			if md.Sequence.Stream != next {
				continue
			}
			next++
			seen[msg.Headers().Get(nats.MsgIdHdr)]++
		}
	}
	lost, doubled := 0, 0
	for id := range acked {
		switch seen[id] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	for _, c := range seen {
		if c > 1 {
			doubled++
		}
	}
	t.Logf("leader %s shut down; acknowledged %d, stored %d, failed (not acknowledged) %d, lost %d, doubled %d", leader, len(acked), last, fails, lost, doubled)
	if lost != 0 || doubled != 0 {
		t.Fatalf("lost %d, doubled %d", lost, doubled)
	}
}
