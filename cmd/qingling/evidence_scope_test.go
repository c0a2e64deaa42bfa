package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/handlers/identity"
)

func pngOf(seed byte) []byte {
	return append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{seed}, 64)...)
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// natsRaw sends data as is (an upload's file) over the NATS service as user; it answers the
// HTTP status the same answer has, and the reply.
func (e *secEnv) natsRaw(t *testing.T, user, verb string, data []byte, hdr ...string) (int, *nats.Msg) {
	t.Helper()
	nc := e.conns[user]
	if nc == nil {
		c := e.creds[user]
		var err error
		nc, err = nats.Connect(e.m.NATS.ClientURL(), nats.Nkey(c.NKey, nkeyPair(t, c.Seed).Sign), nats.CustomInboxPrefix(identity.InboxPrefix(user)))
		if err != nil {
			t.Fatalf("connect %s: %v", user, err)
		}
		e.conns[user] = nc
		e.root.Cleanup(nc.Close)
	}
	m := &nats.Msg{Subject: "qingling.cmd." + user + "." + verb, Data: data, Header: nats.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("nats %s %s: %v", user, verb, err)
	}
	code, _ := strconv.Atoi(r.Header.Get("Qingling-Status"))
	return code, r
}

// fetch downloads sum as user over HTTP and NATS; both must agree, a refusal being the
// answer to a file not stored (404 evidence_not_found).
func (e *secEnv) fetch(t *testing.T, user, sum string) bool {
	t.Helper()
	h := call(t, "GET", e.m.URL()+"/v1/evidence/"+sum, "", nil, "Authorization", "Bearer "+e.tokens[user])
	n := e.natsCall(t, user, "download", map[string]any{"sha256": sum})
	switch {
	case h.Code == 200 && n.Code == 200 && hexSum(h.Raw) == sum && hexSum(n.Raw) == sum:
		return true
	case h.Code == 404 && n.Code == 404 && errCode(h) == "evidence_not_found" && errCode(n) == "evidence_not_found":
		return false
	}
	t.Fatalf("%s fetches %s: HTTP %d %s, NATS %d %s", user, sum[:8], h.Code, clipBytes(h.Raw), n.Code, clipBytes(n.Raw))
	return false
}

func (e *secEnv) addUser(t *testing.T, u events.User) {
	t.Helper()
	c, err := e.m.Users.Add(u)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens[u.ID], e.creds[u.ID] = c.Token, c
}

func evidenceReport(sum string) map[string]any {
	return map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "安宁某化工有限公司", "credit_code": codeA},
		"grade": "general", "description": "储罐区防火堤破损", "source": "inspection",
		"deadline": time.Now().AddDate(0, 0, 10).Format("2006-01-02"), "evidence": []any{map[string]any{"sha256": sum, "name": "p.png"}}}
}

// TestEvidenceDownloadScope: with real users over HTTP and NATS, a file is fetched by its
// uploaders while no event references it, then by whoever may read a hazard referencing it.
func TestEvidenceDownloadScope(t *testing.T) {
	e := newSecEnv(t)
	e.addUser(t, events.User{ID: "desk-forest", Role: events.RoleDesk, Sectors: []string{"forest"}, Jurisdiction: "530100"})
	e.addUser(t, events.User{ID: "desk-county", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530181"})

	photo, late := pngOf(1), pngOf(2)
	sum, lateSum := hexSum(photo), hexSum(late)
	if r := call(t, "PUT", e.m.URL()+"/v1/evidence?name=p.png", "", photo, "Authorization", "Bearer "+e.tokens["insp-in"]); r.Code != 201 {
		t.Fatalf("HTTP upload: %d %s", r.Code, r.Raw)
	}
	if code, r := e.natsRaw(t, "insp-out", "upload", late, "Qingling-Evidence-Name", "late.png"); code != 201 {
		t.Fatalf("NATS upload: %d %s", code, r.Data)
	}
	// not referenced: the uploader only
	for user, want := range map[string]bool{"insp-in": true, "desk-in": false, "desk-forest": false, "auditor": false, "insp-sector": false} {
		if got := e.fetch(t, user, sum); got != want {
			t.Errorf("unreferenced: %s fetches: %v, want %v", user, got, want)
		}
	}
	if !e.fetch(t, "insp-out", lateSum) || e.fetch(t, "insp-in", lateSum) {
		t.Fatal("the NATS upload is its uploader's only")
	}

	if r := call(t, "POST", e.m.URL()+"/v1/hazards", "", evidenceReport(sum), "Authorization", "Bearer "+e.tokens["insp-in"]); r.Code != 201 {
		t.Fatalf("report: %d %s", r.Code, r.Raw)
	}
	// insp-in has the late file too (uploads the same bytes), and attaches it to a 530181 hazard
	if code, r := e.natsRaw(t, "insp-in", "upload", late); code != 200 {
		t.Fatalf("the same bytes again: %d %s", code, r.Data)
	}
	if r := e.natsCall(t, "insp-in", "report", evidenceReport(lateSum)); r.Code != 201 {
		t.Fatalf("NATS report: %d %s", r.Code, r.Raw)
	}
	for _, c := range []struct {
		user string
		want bool
	}{
		{"insp-in", true},      // attached it
		{"desk-in", true},      // chem, 530100 ⊃ 530181
		{"desk-county", true},  // chem, 530181
		{"ver-in", true},       // chem, 530100
		{"auditor", true},      // reads everything
		{"rect-own", true},     // the site's own rectifier
		{"desk-forest", false}, // forest desk: another sector
		{"insp-sector", false}, // forest inspector
		{"desk-out", false},    // chem, 530300
		{"rect-other", false},  // another site
	} {
		if got := e.fetch(t, c.user, sum); got != c.want {
			t.Errorf("referenced: %s fetches: %v, want %v", c.user, got, c.want)
		}
	}
	// referenced now: its first uploader, of another jurisdiction, may no longer fetch it
	if e.fetch(t, "insp-out", lateSum) || !e.fetch(t, "desk-in", lateSum) {
		t.Fatal("the late file, once referenced, follows its hazard")
	}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

// TestEvidenceScopeAfterRestart: the read-model snapshot does not hold the evidence
// references; after a start from it they are read back from the log, so a file referenced
// before the restart is still fetched by whoever may read its hazard, and by no one else.
func TestEvidenceScopeAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, err := identity.Open(users, cat)
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{}
	for _, u := range []events.User{
		{ID: "insp-in", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		{ID: "desk-in", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		{ID: "desk-forest", Role: events.RoleDesk, Sectors: []string{"forest"}, Jurisdiction: "530100"},
	} {
		c, err := st.Add(u)
		if err != nil {
			t.Fatal(err)
		}
		tok[u.ID] = "Bearer " + c.Token
	}
	open := func(log *logBuf) *Main {
		t.Helper()
		m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Users: users, NoSync: true, Log: slog.New(slog.NewTextHandler(log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
		return m
	}
	m := open(&logBuf{})
	photo := pngOf(3)
	sum := hexSum(photo)
	if r := call(t, "PUT", m.URL()+"/v1/evidence", "", photo, "Authorization", tok["insp-in"]); r.Code != 201 {
		t.Fatalf("upload: %d %s", r.Code, r.Raw)
	}
	if r := call(t, "POST", m.URL()+"/v1/hazards", "", evidenceReport(sum), "Authorization", tok["insp-in"]); r.Code != 201 {
		t.Fatalf("report: %d %s", r.Code, r.Raw)
	}
	last, err := m.Store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the feed to apply the report", func() bool { return m.Status.Seq() >= last })
	m.Close() // saves the snapshot (of what the status has applied)

	log := &logBuf{}
	m = open(log)
	defer m.Close()
	if !log.has("read model loaded from its snapshot") {
		t.Fatalf("the restart did not load the snapshot:\n%s", log.b.String())
	}
	// the snapshot holds the references: complete at once, without reading the log again
	if !m.Refs.Complete() || m.Refs.Len() != 1 || log.has("evidence references read") {
		t.Fatalf("references after a snapshot start: complete %v, %d files\n%s", m.Refs.Complete(), m.Refs.Len(), log.b.String())
	}
	if r := call(t, "GET", m.URL()+"/v1/evidence/"+sum, "", nil, "Authorization", tok["desk-in"]); r.Code != 200 || hexSum(r.Raw) != sum {
		t.Fatalf("desk-in after the restart: %d %s", r.Code, clipBytes(r.Raw))
	}
	if r := call(t, "GET", m.URL()+"/v1/evidence/"+sum, "", nil, "Authorization", tok["desk-forest"]); r.Code != 404 || errCode(r) != "evidence_not_found" {
		t.Fatalf("desk-forest after the restart: %d %s", r.Code, clipBytes(r.Raw))
	}
}
