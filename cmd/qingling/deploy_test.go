package main

// Tests of the deployment files in deploy/: every nats-server config is parsed by nats-server
// itself and checked for what it promises (JetStream, sync always, loopback monitoring, TLS,
// permissions); the 3-node cluster and a county leaf office are started in process from those
// files; and deploy/backup.sh is run with the nats CLI when it is installed.
//
// The files name production paths and ports. The tests rewrite only those: the TLS directory
// /etc/nats/tls/ becomes a directory of freshly made test certificates (in the copied files,
// before parsing, because nats-server loads certificates while it parses), and after parsing
// the listen ports become random loopback ports, routes and leaf remotes point at them, and
// store_dir becomes a temporary directory.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"go/build"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"qingling/events/jsstore"
	"qingling/handlers/auditlog"
)

const deployDir = "../../deploy"

// deployEnv is a copy of deploy/nats with test certificates, and the secrets the configs read
// from the environment.
type deployEnv struct {
	dir      string // the copied deploy/nats
	tls      string // test CA and node certificate
	password string // QINGLING_NATS_PASSWORD
	seed     string // QINGLING_LEAF_SEED
	leafPub  string // its public key
}

func newDeployEnv(t *testing.T) *deployEnv {
	t.Helper()
	root := t.TempDir()
	e := &deployEnv{dir: filepath.Join(root, "nats"), tls: filepath.Join(root, "tls"), password: "test-" + randHex(t)}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	e.seed = string(seed)
	e.leafPub, _ = kp.PublicKey()
	writeTestCerts(t, e.tls)
	src := filepath.Join(deployDir, "nats")
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(e.dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b = bytes.ReplaceAll(b, []byte("/etc/nats/tls/"), []byte(e.tls+"/"))
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("QINGLING_NATS_PASSWORD", e.password)
	t.Setenv("QINGLING_LEAF_SEED", e.seed)
	return e
}

func (e *deployEnv) parse(t *testing.T, rel string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(filepath.Join(e.dir, rel))
	if err != nil {
		t.Fatalf("nats-server cannot parse deploy/nats/%s: %v", rel, err)
	}
	return opts
}

// TestDeployConfigs parses every nats-server config under deploy/nats and checks each for what
// its comments promise. A new .conf without expectations here fails the test.
func TestDeployConfigs(t *testing.T) {
	e := newDeployEnv(t)
	checks := map[string]func(t *testing.T, o *server.Options){
		"single.conf": func(t *testing.T, o *server.Options) {
			want(t, "server_name", o.ServerName, "qingling-single")
			want(t, "client listen", fmt.Sprintf("%s:%d", o.Host, o.Port), "127.0.0.1:4222")
			want(t, "tls", o.TLSConfig == nil, true)
			want(t, "cluster", o.Cluster.Port, 0)
			want(t, "leafnodes", o.LeafNode.Port, 0)
			want(t, "store_dir", o.StoreDir, "/var/lib/nats/jetstream")
			want(t, "domain", o.JetStreamDomain, "")
		},
		"cluster/node-1.conf": clusterNodeCheck(1),
		"cluster/node-2.conf": clusterNodeCheck(2),
		"cluster/node-3.conf": clusterNodeCheck(3),
		"leaf/county-office.conf": func(t *testing.T, o *server.Options) {
			want(t, "server_name", o.ServerName, "county-c530102")
			want(t, "client listen", fmt.Sprintf("%s:%d", o.Host, o.Port), "127.0.0.1:4222")
			want(t, "domain", o.JetStreamDomain, "c530102")
			want(t, "cluster", o.Cluster.Port, 0)
			want(t, "leafnode listener", o.LeafNode.Port, 0)
			if len(o.LeafNode.Remotes) != 1 {
				t.Fatalf("leaf remotes: %d, want 1", len(o.LeafNode.Remotes))
			}
			r := o.LeafNode.Remotes[0]
			var urls []string
			for _, u := range r.URLs {
				urls = append(urls, u.String())
			}
			want(t, "remote urls", strings.Join(urls, " "), "tls://nats-1.qingling.internal:7422 tls://nats-2.qingling.internal:7422 tls://nats-3.qingling.internal:7422")
			want(t, "remote nkey seed from QINGLING_LEAF_SEED", r.Nkey, e.seed)
			want(t, "remote tls with the hub's CA", r.TLSConfig != nil && r.TLSConfig.RootCAs != nil, true)
		},
		"leaf/hub-leafnodes.conf": func(t *testing.T, o *server.Options) {
			want(t, "leafnode listen", fmt.Sprintf("%s:%d", o.LeafNode.Host, o.LeafNode.Port), "0.0.0.0:7422")
			want(t, "leafnode tls", o.LeafNode.TLSConfig != nil, true)
			// no leafnodes authorization: offices authenticate as ordinary users, whose
			// permissions then apply to their links
			want(t, "leafnode users", len(o.LeafNode.Users)+len(o.LeafNode.Username)+len(o.LeafNode.Nkey), 0)
			if len(o.Nkeys) != 1 || o.Nkeys[0].Permissions == nil {
				t.Fatalf("want one office nkey user with permissions, got %+v", o.Nkeys)
			}
			p := o.Nkeys[0].Permissions
			for _, subj := range []string{"hz.>", "hzcp.>", "$KV.>", "$O.>", "$JS.API.>", "qingling.cmd.>"} {
				if !slices.Contains(p.Publish.Deny, subj) {
					t.Errorf("the office may publish %s on the hub; deny has %v", subj, p.Publish.Deny)
				}
			}
			for _, subj := range []string{"hz.>", "hzcp.>"} {
				if !slices.Contains(p.Subscribe.Deny, subj) {
					t.Errorf("the office may receive %s from the hub; deny has %v", subj, p.Subscribe.Deny)
				}
			}
			// serve --leaf-listen gives its leaf links the same denies
			gen := LeafPermissions()
			for _, subj := range p.Publish.Deny {
				if !slices.Contains(gen.Publish.Deny, subj) {
					t.Errorf("serve's leaf permissions let the office publish %s", subj)
				}
			}
			for _, subj := range p.Subscribe.Deny {
				if !slices.Contains(gen.Subscribe.Deny, subj) {
					t.Errorf("serve's leaf permissions let the office receive %s", subj)
				}
			}
		},
	}
	var found []string
	err := filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".conf") && d.Name() != "users.conf" {
			rel, _ := filepath.Rel(e.dir, path)
			found = append(found, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != len(checks) {
		t.Errorf("deploy/nats has %v; the test checks %d files — add expectations for new ones", found, len(checks))
	}
	for _, rel := range found {
		t.Run(rel, func(t *testing.T) {
			check, ok := checks[rel]
			if !ok {
				t.Fatalf("no expectations for deploy/nats/%s", rel)
			}
			o := e.parse(t, rel)
			if rel != "leaf/hub-leafnodes.conf" { // a snippet merged into the cluster nodes
				want(t, "jetstream", o.JetStream, true)
				want(t, "sync_interval: always", o.SyncAlways, true)
				want(t, "max_payload", o.MaxPayload, int32(8<<20))
				want(t, "monitoring", fmt.Sprintf("%s:%d", o.HTTPHost, o.HTTPPort), "127.0.0.1:8222")
				want(t, "lame_duck_duration", o.LameDuckDuration, 30*time.Second)
				// users.conf, included: Qingling's service user, password from the environment
				if len(o.Users) != 1 || o.Users[0].Username != "qingling" || o.Users[0].Password != e.password {
					t.Errorf("users: want only qingling with QINGLING_NATS_PASSWORD, got %+v", o.Users)
				}
			}
			check(t, o)
		})
	}
}

func clusterNodeCheck(n int) func(t *testing.T, o *server.Options) {
	return func(t *testing.T, o *server.Options) {
		want(t, "server_name", o.ServerName, fmt.Sprintf("qingling-n%d", n))
		want(t, "client listen", fmt.Sprintf("%s:%d", o.Host, o.Port), "0.0.0.0:4222")
		want(t, "client tls", o.TLSConfig != nil, true)
		want(t, "client_advertise", o.ClientAdvertise, fmt.Sprintf("nats-%d.qingling.internal:4222", n))
		want(t, "store_dir", o.StoreDir, fmt.Sprintf("/var/lib/nats/node-%d", n))
		want(t, "domain", o.JetStreamDomain, "")
		want(t, "cluster name", o.Cluster.Name, "qingling")
		want(t, "cluster port", o.Cluster.Port, 6222)
		want(t, "cluster advertise", o.Cluster.Advertise, fmt.Sprintf("nats-%d.qingling.internal:6222", n))
		want(t, "routes", len(o.Routes), 3)
		want(t, "route tls is mutual", o.Cluster.TLSConfig != nil && o.Cluster.TLSConfig.ClientAuth == tls.RequireAndVerifyClientCert, true)
	}
}

// TestDeployCluster starts the three cluster nodes from deploy/nats/cluster, with the hub side
// of deploy/nats/leaf/hub-leafnodes.conf merged in, and a county office from
// deploy/nats/leaf/county-office.conf; then checks: a meta leader is elected, every node has
// sync always in force, HAZARDS is placed with R3, the office's link cannot publish hz.> (nor
// checkpoints, commands, status or evidence) on the hub nor receive them from it, and the hub can source the
// office's leaf.530102.hz.> subjects into hz.> across the link.
func TestDeployCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster and a leaf node")
	}
	e := newDeployEnv(t)
	ports := deployFreePorts(t, 3)
	snippet := e.parse(t, "leaf/hub-leafnodes.conf")
	var hub []*server.Server
	for i := 1; i <= 3; i++ {
		o := e.parse(t, fmt.Sprintf("cluster/node-%d.conf", i))
		o.Host, o.Port, o.ClientAdvertise = "127.0.0.1", -1, ""
		o.HTTPPort = -1
		o.StoreDir = t.TempDir()
		o.Cluster.Host, o.Cluster.Port, o.Cluster.Advertise = "127.0.0.1", ports[i-1], ""
		if len(o.Routes) != 3 {
			t.Fatalf("node-%d: %d routes, want 3", i, len(o.Routes))
		}
		for j := range o.Routes {
			o.Routes[j] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[j])}
		}
		// the snippet's two halves, as its comments say: its leafnodes {} and its users
		o.LeafNode = snippet.LeafNode
		o.LeafNode.Host, o.LeafNode.Port, o.LeafNode.Advertise = "127.0.0.1", -1, ""
		office := *snippet.Nkeys[0]
		office.Nkey = e.leafPub
		o.Nkeys = append(o.Nkeys, &office)
		hub = append(hub, deployStart(t, o))
	}
	deployWait(t, 30*time.Second, "a JetStream meta leader", func() bool {
		return slices.ContainsFunc(hub, (*server.Server).JetStreamIsLeader)
	})
	for _, s := range hub {
		if c := s.JetStreamConfig(); c == nil || !c.SyncAlways {
			t.Fatalf("%s: sync always is not in force: %+v", s.Name(), c)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hc := deployConnect(t, hub[0].ClientURL(), e, nats.RootCAs(filepath.Join(e.tls, "ca.pem")))
	store, err := jsstore.Open(ctx, hc, jsstore.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	hjs := store.JetStream()
	hz, err := hjs.Stream(ctx, "HAZARDS")
	if err != nil {
		t.Fatal(err)
	}
	deployWait(t, 30*time.Second, "HAZARDS on 3 current replicas", func() bool {
		info, err := hz.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		return !slices.ContainsFunc(info.Cluster.Replicas, func(p *jetstream.PeerInfo) bool { return !p.Current })
	})
	if _, err := hjs.Publish(ctx, "hz.mine.530000.530100.530102.0193f2c4-0000-7000-8000-000000000001", []byte(`{}`)); err != nil {
		t.Fatalf("append to the R3 HAZARDS: %v", err)
	}

	// the county office
	lo := e.parse(t, "leaf/county-office.conf")
	lo.Port, lo.HTTPPort, lo.StoreDir = -1, -1, t.TempDir()
	lo.LeafNode.Remotes[0].URLs = nil
	for _, s := range hub {
		v, err := s.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		lo.LeafNode.Remotes[0].URLs = append(lo.LeafNode.Remotes[0].URLs, &url.URL{Scheme: "tls", Host: fmt.Sprintf("127.0.0.1:%d", v.LeafNode.Port)})
	}
	leaf := deployStart(t, lo)
	deployWait(t, 30*time.Second, "the office's leaf link", func() bool {
		n := 0
		for _, s := range hub {
			n += s.NumLeafNodes()
		}
		return n == 1 && leaf.NumLeafNodes() == 1
	})
	lc := deployConnect(t, leaf.ClientURL(), e)

	// office → hub: only what is not denied arrives; messages on one link keep their order, so
	// once the closing message is in, anything forbidden sent before it would have been too.
	deployOnlyAllowed(t, "office → hub", lc, hc, "leaf.530102.probe",
		[]string{"hz.mine.530000.530100.530102.0193f2c4-0000-7000-8000-000000000002", "qingling.cmd.someone.report",
			"$KV.hz_status.mine.530000", "$O.hz_evidence.C.x", "$JS.API.STREAM.NAMES", "hzcp.NFORGEDINSTANCE"},
		[]string{"hz.>", "qingling.cmd.>", "$KV.>", "$O.>", "$JS.API.>", "hzcp.>", "leaf.>"})
	if info, err := hz.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("HAZARDS after the office's attempts: %v msgs (err %v), want only the hub's 1", info.State.Msgs, err)
	}
	// hub → office
	deployOnlyAllowed(t, "hub → office", hc, lc, "probe.office",
		[]string{"hz.mine.530000.530100.530102.0193f2c4-0000-7000-8000-000000000003", "$KV.hz_status.mine.530000", "qingling.cmd.someone.report", "hzcp.NFORGEDHUB"},
		[]string{"hz.>", "$KV.>", "qingling.cmd.>", "hzcp.>", "probe.>"})

	// the office's findings reach the hub through sourcing across domains, with the transform
	ljs, err := jetstream.New(lc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ljs.CreateStream(ctx, jetstream.StreamConfig{Name: "HAZARDS", Subjects: []string{"leaf.530102.hz.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("the office's own stream in domain c530102: %v", err)
	}
	const leafSubj = "leaf.530102.hz.mine.530000.530100.530102.0193f2c4-0000-7000-8000-00000000000"
	for i := range 3 {
		if _, err := ljs.Publish(ctx, fmt.Sprint(leafSubj, i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	src, err := hjs.CreateStream(ctx, jetstream.StreamConfig{Name: "FROM_C530102", Storage: jetstream.FileStorage, Replicas: 3,
		Sources: []*jetstream.StreamSource{{Name: "HAZARDS", Domain: "c530102",
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "leaf.530102.hz.>", Destination: "hz.>"}}}}})
	if err != nil {
		t.Fatalf("a hub stream sourcing domain c530102: %v", err)
	}
	deployWait(t, 30*time.Second, "3 sourced findings on the hub", func() bool {
		info, err := src.Info(ctx)
		return err == nil && info.State.Msgs == 3
	})
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := src.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if w := fmt.Sprint(strings.TrimPrefix(leafSubj, "leaf.530102."), seq-1); m.Subject != w {
			t.Errorf("sourced seq %d: subject %s, want %s", seq, m.Subject, w)
		}
	}
}

// deployOnlyAllowed publishes each forbidden subject and then a closing allowed one from pub,
// and checks that sub, listening on all of listen, receives the closing one and none before it.
func deployOnlyAllowed(t *testing.T, what string, pub, sub *nats.Conn, allowed string, forbidden, listen []string) {
	t.Helper()
	ch := make(chan *nats.Msg, 256)
	for _, l := range listen {
		s, err := sub.ChanSubscribe(l, ch)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Unsubscribe()
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	// interest travels over routes and the leaf link on its own schedule: probe until it arrives
	deadline := time.Now().Add(30 * time.Second)
	for ready := false; !ready; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never arrived", what, allowed)
		}
		if err := pub.Publish(allowed, []byte("probe")); err != nil {
			t.Fatal(err)
		}
		_ = pub.Flush()
		select {
		case m := <-ch:
			ready = m.Subject == allowed
			if !ready {
				t.Fatalf("%s: received %s", what, m.Subject)
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, f := range forbidden {
		if err := pub.Publish(f, []byte("forbidden")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(allowed, []byte("last")); err != nil {
		t.Fatal(err)
	}
	_ = pub.Flush()
	for {
		select {
		case m := <-ch:
			if m.Subject != allowed {
				t.Fatalf("%s: %s got through", what, m.Subject)
			}
			if string(m.Data) == "last" {
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the closing %s never arrived", what, allowed)
		}
	}
}

// TestDeployBackupRestore runs deploy/backup.sh against a server started from
// deploy/nats/single.conf: it backs up HAZARDS, KV hz_status and the object store hz_evidence,
// restores them into an empty server, and checks every message is back unchanged (sequence,
// subject, data, headers, time) with DenyDelete and DenyPurge still set. It needs the nats CLI
// (`go install github.com/nats-io/natscli/nats@v0.5.0`) and is skipped without it.
func TestDeployBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the nats CLI")
	}
	natsCLI, err := exec.LookPath("nats")
	if err != nil { // where go install puts it
		natsCLI, err = exec.LookPath(filepath.Join(build.Default.GOPATH, "bin", "nats"))
	}
	if err != nil {
		t.Skip("the nats CLI is not installed (go install github.com/nats-io/natscli/nats@v0.5.0)")
	}
	e := newDeployEnv(t)
	start := func() *server.Server {
		o := e.parse(t, "single.conf")
		o.Port, o.HTTPPort, o.StoreDir = -1, -1, t.TempDir()
		return deployStart(t, o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	s1 := start()
	nc := deployConnect(t, s1.ClientURL(), e)
	store, err := jsstore.Open(ctx, nc, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	js := store.JetStream()
	for i := range 200 {
		m := nats.NewMsg(fmt.Sprintf("hz.chem.530000.530100.5301%02d.0193f2c4-0000-7000-8000-%012d", i%20, i%50))
		m.Data = fmt.Appendf(nil, `{"n":%d}`, i)
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("event-%d", i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "hz_status", History: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "chem.530000.530100.530102", []byte(`{"open":3}`)); err != nil {
		t.Fatal(err)
	}
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "hz_evidence"})
	if err != nil {
		t.Fatal(err)
	}
	photo := bytes.Repeat([]byte("jpeg"), 100_000) // 400 kB: several chunks
	if _, err := obs.PutBytes(ctx, "sha256-of-photo", photo); err != nil {
		t.Fatal(err)
	}
	// the signed checkpoints cannot be rebuilt: a log without them is refused, not half backed up
	refused := filepath.Join(t.TempDir(), "refused")
	if out, err := deployScript(natsCLI, s1.ClientURL(), e, "backup", refused).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "HZ_CHECKPOINTS") || fileExists(refused) {
		t.Fatalf("backup of HAZARDS without HZ_CHECKPOINTS: err %v, output:\n%s", err, out)
	}
	if _, err := js.CreateStream(ctx, auditlog.CheckpointStreamConfig(1)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, auditlog.CheckpointSubject("NTESTINSTANCE"), fmt.Appendf(nil, `{"n":%d,"sig":"x"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	before := deployStreamMsgs(ctx, t, js, "HAZARDS")
	beforeCP := deployStreamMsgs(ctx, t, js, auditlog.CheckpointStream)

	backup := filepath.Join(t.TempDir(), "backup")
	deployRunScript(t, natsCLI, s1.ClientURL(), e, "backup", backup)
	nc.Close()
	s1.Shutdown()
	s1.WaitForShutdown()

	s2 := start()
	deployRunScript(t, natsCLI, s2.ClientURL(), e, "restore", backup)
	nc2 := deployConnect(t, s2.ClientURL(), e)
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	after := deployStreamMsgs(ctx, t, js2, "HAZARDS")
	if len(after) != len(before) {
		t.Fatalf("restored HAZARDS has %d messages, the original %d", len(after), len(before))
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.Sequence != b.Sequence || a.Subject != b.Subject || !bytes.Equal(a.Data, b.Data) || !a.Time.Equal(b.Time) ||
			a.Header.Get(jetstream.MsgIDHeader) != b.Header.Get(jetstream.MsgIDHeader) {
			t.Fatalf("message %d differs after restore:\n was %d %s %s %v %v\n now %d %s %s %v %v", i,
				b.Sequence, b.Subject, b.Data, b.Time, b.Header, a.Sequence, a.Subject, a.Data, a.Time, a.Header)
		}
	}
	str, err := js2.Stream(ctx, "HAZARDS")
	if err != nil {
		t.Fatal(err)
	}
	if c := str.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge || c.AllowRollup || c.AllowMsgTTL {
		t.Fatalf("restored HAZARDS config lost its protections: %+v", c)
	}
	if err := str.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("restored HAZARDS allowed a delete")
	}
	if afterCP := deployStreamMsgs(ctx, t, js2, auditlog.CheckpointStream); !deploySameMsgs(beforeCP, afterCP) {
		t.Fatalf("restored %s differs: %d messages, were %d", auditlog.CheckpointStream, len(afterCP), len(beforeCP))
	}
	// Qingling starts on the restored log and carries on from its last sequence
	store2, err := jsstore.Open(ctx, nc2, jsstore.Config{})
	if err != nil {
		t.Fatalf("qingling's store on the restored log: %v", err)
	}
	if last, err := store2.LastSeq(ctx); err != nil || last != before[len(before)-1].Sequence {
		t.Fatalf("restored last seq %d (err %v), want %d", last, err, before[len(before)-1].Sequence)
	}
	kv2, err := js2.KeyValue(ctx, "hz_status")
	if err != nil {
		t.Fatal(err)
	}
	if ent, err := kv2.Get(ctx, "chem.530000.530100.530102"); err != nil || string(ent.Value()) != `{"open":3}` {
		t.Fatalf("restored hz_status: %v %v", ent, err)
	}
	obs2, err := js2.ObjectStore(ctx, "hz_evidence")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := obs2.GetBytes(ctx, "sha256-of-photo"); err != nil || !bytes.Equal(got, photo) {
		t.Fatalf("restored hz_evidence: %d bytes, err %v", len(got), err)
	}
	// a second restore over existing streams is refused, not merged
	cmd := deployScript(natsCLI, s2.ClientURL(), e, "restore", backup)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already exists") {
		t.Fatalf("restore over existing streams: err %v, output:\n%s", err, out)
	}
}

// deploySameMsgs: the same sequences, subjects, data, timestamps and message ids.
func deploySameMsgs(a, b []*jetstream.RawStreamMsg) bool {
	return slices.EqualFunc(a, b, func(x, y *jetstream.RawStreamMsg) bool {
		return x.Sequence == y.Sequence && x.Subject == y.Subject && bytes.Equal(x.Data, y.Data) && x.Time.Equal(y.Time) &&
			x.Header.Get(jetstream.MsgIDHeader) == y.Header.Get(jetstream.MsgIDHeader)
	})
}

// TestDeployBackupVerifies: Qingling writes real events and signed checkpoints into a server
// started from deploy/nats/single.conf and stops cleanly; backup.sh backs it up and restores it
// into an empty server; there `qingling verify` passes with every event vouched for by the
// restored checkpoints, which are byte for byte the originals (they cannot be re-derived).
func TestDeployBackupVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the nats CLI")
	}
	natsCLI, err := exec.LookPath("nats")
	if err != nil {
		natsCLI, err = exec.LookPath(filepath.Join(build.Default.GOPATH, "bin", "nats"))
	}
	if err != nil {
		t.Skip("the nats CLI is not installed (go install github.com/nats-io/natscli/nats@v0.5.0)")
	}
	e := newDeployEnv(t)
	start := func() *server.Server {
		o := e.parse(t, "single.conf")
		o.Port, o.HTTPPort, o.StoreDir = -1, -1, t.TempDir()
		return deployStart(t, o)
	}
	withPassword := func(s *server.Server) string {
		return strings.Replace(s.ClientURL(), "nats://", "nats://qingling:"+e.password+"@", 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s1 := start()
	m, err := Open(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSURL: withPassword(s1), Log: quietLog(), AuditConfig: AuditConfig{CheckpointEvery: 5}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		r := call(t, "POST", m.URL()+"/v1/hazards", "insp-1", map[string]any{"sector": "chem", "region": "530102", "site": map[string]any{"name": fmt.Sprintf("化工厂%d", i)},
			"grade": "general", "description": "储罐区防火堤破损", "source": "inspection", "deadline": "2099-01-01"})
		if r.Code != 201 {
			t.Fatalf("report %d: %d %s", i, r.Code, r.Raw)
		}
	}
	m.Close() // a clean stop: its final checkpoint covers every event
	nc := deployConnect(t, s1.ClientURL(), e)
	js, _ := jetstream.New(nc)
	beforeCP := deployStreamMsgs(ctx, t, js, auditlog.CheckpointStream)
	beforeLog := deployStreamMsgs(ctx, t, js, "HAZARDS")
	if len(beforeCP) < 3 || len(beforeLog) != 12 {
		t.Fatalf("%d checkpoints, %d events", len(beforeCP), len(beforeLog))
	}
	backup := filepath.Join(t.TempDir(), "backup")
	deployRunScript(t, natsCLI, s1.ClientURL(), e, "backup", backup)
	nc.Close()
	s1.Shutdown()
	s1.WaitForShutdown()

	s2 := start()
	deployRunScript(t, natsCLI, s2.ClientURL(), e, "restore", backup)
	js2, _ := jetstream.New(deployConnect(t, s2.ClientURL(), e))
	if got := deployStreamMsgs(ctx, t, js2, auditlog.CheckpointStream); !deploySameMsgs(beforeCP, got) {
		t.Fatalf("restored checkpoints differ: %d, were %d", len(got), len(beforeCP))
	}
	code, out, errs := auditRun(t, "verify", "--nats", withPassword(s2), "--json")
	var rep struct{ Events, Covered, Checkpoints int }
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || rep.Events != 12 || rep.Covered != 12 || rep.Checkpoints != len(beforeCP) {
		t.Fatalf("verify of the restored log: exit %d, %v %+v\n%s\n%s", code, err, rep, out, errs)
	}
}

func deployScript(natsCLI, url string, e *deployEnv, args ...string) *exec.Cmd {
	cmd := exec.Command("bash", append([]string{filepath.Join(deployDir, "backup.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "NATS_URL="+url, "NATS_USER=qingling", "NATS_PASSWORD="+e.password,
		"NATS_CLI="+natsCLI, "NATS_CONTEXT=")
	return cmd
}

func deployRunScript(t *testing.T, natsCLI, url string, e *deployEnv, args ...string) {
	t.Helper()
	out, err := deployScript(natsCLI, url, e, args...).CombinedOutput()
	t.Logf("backup.sh %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("backup.sh %s: %v", strings.Join(args, " "), err)
	}
}

func deployStreamMsgs(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	str, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("%s seq %d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

func deployStart(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.NoLog, o.NoSigs = true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("%s not ready", o.ServerName)
	}
	return s
}

func deployConnect(t *testing.T, url string, e *deployEnv, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.UserInfo("qingling", e.password), nats.MaxReconnects(-1)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func deployWait(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	waitFor(t, d, what, ok)
}

// deployFreePorts picks n free loopback ports (held open together, so they differ).
func deployFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func want[T comparable](t *testing.T, what string, got, wanted T) {
	t.Helper()
	if got != wanted {
		t.Errorf("%s: %v, want %v", what, got, wanted)
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// writeTestCerts writes ca.pem, and node.pem / node-key.pem for 127.0.0.1 and the nodes' names,
// usable by servers and (for mutual route TLS) clients.
func writeTestCerts(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qingling test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	node := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "qingling test node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost", "nats-1.qingling.internal", "nats-2.qingling.internal", "nats-3.qingling.internal"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, node, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":       {Type: "CERTIFICATE", Bytes: caDER},
		"node.pem":     {Type: "CERTIFICATE", Bytes: der},
		"node-key.pem": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
