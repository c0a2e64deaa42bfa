package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/handlers/identity"
)

// permErrors collects the server's asynchronous permission violations for one connection.
type permErrors struct {
	mu   sync.Mutex
	seen []string
}

func (p *permErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	p.mu.Lock()
	p.seen = append(p.seen, err.Error())
	p.mu.Unlock()
}

func (p *permErrors) has(sub string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.seen {
		if strings.Contains(s, "Permissions Violation") && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestNATSPermissions: users connect to the embedded server with their nkeys and get exactly
// the allow lists generated from the users file.
func TestNATSPermissions(t *testing.T) {
	dir := t.TempDir()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, _ := identity.Open(users, cat)
	creds := map[string]identity.Credentials{}
	for _, u := range []events.User{
		{ID: "desk-km", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		{ID: "auditor", Role: events.RoleAuditor},
		{ID: "insp", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
	} {
		c, err := st.Add(u)
		if err != nil {
			t.Fatal(err)
		}
		creds[u.ID] = c
	}
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Users: users, NoSync: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	// the status bucket exists once serve runs; make sure of it for this test
	js, _ := jetstream.New(m.Conn)
	kvAdmin, err := js.KeyValue(ctx, "hz_status")
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kvAdmin, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "hz_status", History: 64})
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvAdmin.Put(ctx, "chem.530000.530100", []byte(`{"open":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kvAdmin.Put(ctx, "chem.530000.530300", []byte(`{"open":2}`)); err != nil {
		t.Fatal(err)
	}
	connect := func(user string) (*nats.Conn, *permErrors) {
		kp, err := nkeys.FromSeed([]byte(creds[user].Seed))
		if err != nil {
			t.Fatal(err)
		}
		pe := &permErrors{}
		nc, err := nats.Connect(m.NATS.ClientURL(), nats.Nkey(creds[user].NKey, kp.Sign), nats.CustomInboxPrefix(identity.InboxPrefix(user)), nats.ErrorHandler(pe.handler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc, pe
	}
	// A connection without a known key is refused.
	if nc, err := nats.Connect(m.NATS.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	desk, deskErr := connect("desk-km")
	djs, _ := jetstream.New(desk)
	kv, err := djs.KeyValue(ctx, "hz_status")
	if err != nil {
		t.Fatalf("desk binds hz_status: %v", err)
	}
	w, err := kv.Watch(ctx, "chem.530000.530100")
	if err != nil {
		t.Fatalf("desk watches its own key: %v", err)
	}
	select {
	case e := <-w.Updates():
		if e == nil || e.Key() != "chem.530000.530100" {
			t.Fatalf("desk watch got %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("desk watch delivered nothing")
	}
	w.Stop()
	// The status query over the NATS service, scoped like HTTP's.
	sm, err := desk.Request("qingling.cmd.desk-km.status", []byte(`{"sector":"chem","region":"530100"}`), 5*time.Second)
	if err != nil || sm.Header.Get("Qingling-Status") != "200" || !strings.Contains(string(sm.Data), `"rows"`) {
		t.Fatalf("desk status over NATS: %v %v %s", err, sm.Header, sm.Data)
	}
	sm, err = desk.Request("qingling.cmd.desk-km.status", []byte(`{"sector":"mine","region":"530100"}`), 5*time.Second)
	if err != nil || strings.Contains(string(sm.Data), `"key"`) {
		t.Fatalf("desk reads another sector's status over NATS: %v %v %s", err, sm.Header, sm.Data)
	}
	// Another jurisdiction's key, the bare create, and direct gets are refused.
	for _, subj := range []string{
		"$JS.API.CONSUMER.CREATE.KV_hz_status.x.$KV.hz_status.chem.530000.530300",
		"$JS.API.CONSUMER.CREATE.KV_hz_status",
		"$JS.API.CONSUMER.CREATE.KV_hz_status.x",
		"$JS.API.DIRECT.GET.KV_hz_status",
		"$JS.API.DIRECT.GET.KV_hz_status.$KV.hz_status.chem.530000.530300",
		"$JS.API.STREAM.MSG.GET.KV_hz_status",
		"$JS.API.CONSUMER.CREATE.HAZARDS",
		"hz.chem.530000.530100.530181.0193f2c4-0000-7000-8000-000000000001",
	} {
		_, err := desk.Request(subj, []byte(`{"stream_name":"KV_hz_status","config":{"filter_subject":"$KV.hz_status.>"}}`), 300*time.Millisecond)
		if err == nil {
			t.Errorf("desk request on %s answered", subj)
		}
		waitFor(t, 3*time.Second, "permission violation for "+subj, func() bool { return deskErr.has(subj) })
	}
	// An inspector may not publish onto the log itself, nor read another's inbox.
	insp, inspErr := connect("insp")
	if err := insp.Publish("hz.chem.530000.530100.530181.0193f2c4-0000-7000-8000-000000000001", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	insp.Flush()
	waitFor(t, 3*time.Second, "hz.> denied", func() bool { return inspErr.has("hz.chem") })
	if _, err := insp.SubscribeSync("_INBOX_desk-km.>"); err == nil {
		insp.Flush()
		waitFor(t, 3*time.Second, "foreign inbox denied", func() bool { return inspErr.has("_INBOX_desk-km") })
	}
	// The auditor reads HAZARDS and writes nothing.
	aud, audErr := connect("auditor")
	ajs, _ := jetstream.New(aud)
	if _, err := ajs.Stream(ctx, "HAZARDS"); err != nil {
		t.Fatalf("auditor stream info: %v", err)
	}
	if err := aud.Publish("hz.chem.530000.530100.530181.0193f2c4-0000-7000-8000-000000000002", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	aud.Flush()
	waitFor(t, 3*time.Second, "auditor write denied", func() bool { return audErr.has("hz.chem") })
	if last := lastSeq(t, m); last != 0 {
		t.Fatalf("the log has %d events; nothing should have been written", last)
	}
}

func nkeyPair(t *testing.T, seed string) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}
