package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/handlers/client"
	"qingling/handlers/evidence"
	"qingling/handlers/identity"
)

// buildCLI builds the qingling binary into a temp dir.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qingling")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type cliRun struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, bin string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "QINGLING_SERVER=", "QINGLING_NATS=", "QINGLING_ACTOR=", "QINGLING_TOKEN=", "QINGLING_OUTBOX=", "QINGLING_NKEY=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return cliRun{code: code, stdout: o.String(), stderr: e.String()}
}

func (r cliRun) expect(t *testing.T, code int, out ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range out {
		if !strings.Contains(r.stdout+r.stderr, s) {
			t.Fatalf("output lacks %q\nstdout: %s\nstderr: %s", s, r.stdout, r.stderr)
		}
	}
}

func cliPhoto(t *testing.T, dir string, seed uint8) string {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(i) * seed
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "a.png")
	if err := os.WriteFile(p, b.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// TestCLIAgainstLiveServer runs the built binary against Qingling's real wiring on port 0.
func TestCLIAgainstLiveServer(t *testing.T) {
	bin := buildCLI(t)
	m, err := Open(context.Background(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", NoSync: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	srv := "--server=" + m.URL()
	dir := t.TempDir()
	pic := cliPhoto(t, dir, 3)
	deadline := time.Now().AddDate(0, 0, 30).Format("2006-01-02")
	report := []string{"report", srv, "--actor", "insp-1", "--sector", "forest", "--region", "530102", "--site", "西山林区坟地",
		"-d", "坟地周边可燃物未清理", "--deadline", deadline, "--photo", pic}

	// report: readable Chinese and English, the evidence uploaded first
	r := runCLI(t, bin, report...)
	r.expect(t, exitOK, "上报 report", "森林草原火灾", "(forest)", "云南省 昆明市 五华区 (530102)", "已上报 reported", "一般 general")
	raw, _ := os.ReadFile(pic)
	if ok, err := m.Evidence.Has(context.Background(), evidence.Sum(raw)); !ok || err != nil {
		t.Fatalf("the photo was not stored: %v", err)
	}
	id := strings.Fields(r.stdout[strings.Index(r.stdout, "hazard"):])[1]
	if events.CanonicalUUID("id", id) != nil {
		t.Fatalf("no hazard id in %s", r.stdout)
	}

	// --json
	r = runCLI(t, bin, "show", id, srv, "--actor", "desk-1", "--json")
	r.expect(t, exitOK)
	var h client.Hazard
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || h.ID != id || h.Details == nil || len(h.Details.Evidence) != 1 {
		t.Fatalf("show --json: %v %s", err, r.stdout)
	}

	runCLI(t, bin, "plan", id, srv, "--actor", "rect-1", "--measures", "清理可燃物", "--deadline", deadline).expect(t, exitOK, "整改方案 plan", "已制定方案 planned")
	// 409: a stale expected version
	runCLI(t, bin, "progress", id, srv, "--actor", "rect-1", "--percent", "50", "--expected-version", "1").expect(t, exitConflict, "冲突 conflict", "version_conflict")
	runCLI(t, bin, "complete", id, srv, "--actor", "rect-1", "--note", "完成", "--photo", cliPhoto(t, t.TempDir(), 5)).expect(t, exitOK, "待验收 awaiting_verification")
	// 422: the completer may not clear
	runCLI(t, bin, "clear", id, srv, "--actor", "rect-1").expect(t, exitRefused, "被规则拒绝 refused by rule", "completer_cannot_clear")
	runCLI(t, bin, "clear", id, srv, "--actor", "verifier-1", "--json", "--method", "on-site").expect(t, exitOK, `"status": "cleared"`)
	// a resent command id is answered, not appended
	cid := "0193f2c4-0000-7000-8000-00000000c11a"
	runCLI(t, bin, "reopen", id, srv, "--actor", "verifier-1", "--reason", "复查", "--command-id", cid).expect(t, exitOK, "重新打开 reopen")
	runCLI(t, bin, "reopen", id, srv, "--actor", "verifier-1", "--reason", "复查", "--command-id", cid).expect(t, exitOK, "already recorded")

	runCLI(t, bin, "history", id, srv, "--actor", "auditor-1").expect(t, exitOK, "5 events", "发生 occurred_at", "记录 recorded_at", "上报 hazard.reported", "验收销号 hazard.cleared")
	runCLI(t, bin, "list", srv, "--actor", "desk-1", "--sector", "forest", "--region", "530100").expect(t, exitOK, id, "五华区 530102", "1 hazards")

	// refusals of other kinds
	runCLI(t, bin, "report", srv, "--actor", "insp-1", "--sector", "coal", "--region", "530102", "--site", "x", "-d", "x", "--deadline", deadline).expect(t, exitInvalid, "unknown_sector")
	runCLI(t, bin, "show", "0193f2c4-0000-7000-8000-0000000000ff", srv, "--actor", "a").expect(t, exitNotFound, "hazard_not_found")
	runCLI(t, bin, "plan", srv, "--actor", "a").expect(t, exitUsage)
	runCLI(t, bin, "report", srv, "--actor", "insp-1", "--photo", filepath.Join(dir, "missing.jpg")).expect(t, exitInvalid, "file_unreadable")

	// over NATS: the same verbs on the micro service
	nu := "--nats=" + m.NATS.ClientURL()
	r = runCLI(t, bin, append([]string{"report", nu, "--json"}, report[2:]...)...)
	r.expect(t, exitOK)
	var viaNATS client.Hazard
	if err := json.Unmarshal([]byte(r.stdout), &viaNATS); err != nil || viaNATS.Status != events.StatusReported {
		t.Fatalf("report over NATS: %s", r.stdout)
	}
	runCLI(t, bin, "withdraw", viaNATS.ID, nu, "--actor", "insp-1", "--reason", "重复录入").expect(t, exitOK, "撤回 withdraw", "已撤回 withdrawn")
	runCLI(t, bin, "clear", id, nu, "--actor", "rect-1").expect(t, exitRefused, "invalid_transition")
	runCLI(t, bin, "list", nu, "--actor", "desk-1", "--status", "withdrawn").expect(t, exitOK, viaNATS.ID)

	// unreachable: exit 8; with an outbox the command is queued, then synced
	dead := "--server=http://" + deadAddr(t)
	runCLI(t, bin, "report", dead, "--actor", "insp-1", "--retries", "1", "--sector", "forest", "--region", "530102", "--site", "x", "-d", "x", "--deadline", deadline).
		expect(t, exitUnreachable, "无法连接 unreachable")
	runCLI(t, bin, "show", id, "--nats=nats://"+deadAddr(t), "--actor", "a").expect(t, exitUnreachable, "unreachable")
	box := filepath.Join(t.TempDir(), "outbox")
	var queued []string
	for i := 0; i < 3; i++ {
		r := runCLI(t, bin, "report", dead, "--retries", "1", "--outbox", box, "--actor", "insp-1", "--sector", "forest", "--region", "530102",
			"--site", "西山林区坟地", "-d", "野外第"+string(rune('一'+i))+"处", "--deadline", deadline, "--photo", pic)
		r.expect(t, exitUnreachable, "已暂存 queued", box)
		queued = append(queued, strings.Fields(r.stdout[strings.Index(r.stdout, "hazard "):])[1])
	}
	r = runCLI(t, bin, "plan", queued[0], dead, "--actor", "rect-1", "--retries", "1", "--outbox", box, "--measures", "清理", "--json")
	r.expect(t, exitUnreachable, `"queued": true`)
	// a report the server would refuse is refused before it is queued
	runCLI(t, bin, "report", dead, "--retries", "1", "--outbox", box, "--actor", "insp-1", "--sector", "forest", "--region", "530102",
		"--site", "x", "-d", "x", "--deadline", "soon").expect(t, exitInvalid, "invalid_deadline")
	entries, _ := (&client.Outbox{Dir: box}).Entries()
	if len(entries) != 4 || len(entries[0].Files) != 1 {
		t.Fatalf("outbox: %d entries", len(entries))
	}
	runCLI(t, bin, "sync", "--outbox", box, srv).expect(t, exitOK, "已同步 synced 4 of 4", "4 recorded now")
	runCLI(t, bin, "sync", "--outbox", box, srv).expect(t, exitOK, "outbox "+box+" is empty")
	for i, qid := range queued {
		got, ok := m.Index.Get(qid)
		at, _ := entries[i].OccurredAt()
		if !ok || !got.FoundAt.Equal(at) || got.ReportedBy != "insp-1" {
			t.Fatalf("queued hazard %s: %+v (occurred %v)", qid, got, at)
		}
	}
	if got, _ := m.Index.Get(queued[0]); got.Status != events.StatusPlanned {
		t.Fatalf("the queued plan: status %s", got.Status)
	}
}

// TestCLIWithIdentities: against a server with a users file, the CLI signs in with a token
// over HTTP and with an nkey over NATS; what a user may not do exits "denied".
func TestCLIWithIdentities(t *testing.T) {
	bin := buildCLI(t)
	dir := t.TempDir()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, err := identity.Open(users, cat)
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]identity.Credentials{}
	for _, u := range []events.User{
		{ID: "insp-km", Role: events.RoleInspector, Sectors: []string{"forest"}, Jurisdiction: "530100"},
		{ID: "desk-km", Role: events.RoleDesk, Sectors: []string{"forest"}, Jurisdiction: "530100"},
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
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	srv := "--server=" + m.URL()
	deadline := time.Now().AddDate(0, 0, 30).Format("2006-01-02")
	report := []string{"--sector", "forest", "--region", "530102", "--site", "西山林区坟地", "-d", "坟地用火", "--deadline", deadline,
		"--photo", cliPhoto(t, t.TempDir(), 9), "--json"}

	r := runCLI(t, bin, append([]string{"report", srv, "--token", creds["insp-km"].Token}, report...)...)
	r.expect(t, exitOK, `"reported_by": "insp-km"`)
	var h client.Hazard
	_ = json.Unmarshal([]byte(r.stdout), &h)
	runCLI(t, bin, append([]string{"report", srv, "--actor", "insp-km"}, report...)...).expect(t, exitDenied, "unauthenticated")
	runCLI(t, bin, "withdraw", h.ID, srv, "--token", creds["desk-km"].Token, "--reason", "x").expect(t, exitDenied)
	runCLI(t, bin, "show", h.ID, srv, "--token", creds["desk-km"].Token).expect(t, exitOK, "森林草原火灾")

	seed := filepath.Join(t.TempDir(), "insp.nk")
	if err := os.WriteFile(seed, []byte(creds["insp-km"].Seed), 0o600); err != nil {
		t.Fatal(err)
	}
	nu := "--nats=" + m.NATS.ClientURL()
	runCLI(t, bin, append([]string{"report", nu, "--actor", "insp-km", "--nkey", seed}, report...)...).expect(t, exitOK, `"reported_by": "insp-km"`)
	runCLI(t, bin, "show", h.ID, nu, "--actor", "insp-km", "--nkey", seed).expect(t, exitOK, h.ID)
	// the nkey of one user cannot speak for another: NATS permissions refuse the subject
	runCLI(t, bin, "show", h.ID, nu, "--actor", "desk-km", "--nkey", seed, "--retries", "1", "--timeout", "5s").expect(t, exitDenied, "nats_not_permitted")
}

// TestCLISignsCommands: against a server started with --require-signatures, the CLI given an
// nkey seed signs every command — over HTTP (its user asked of the server when only a token
// names it) and NATS, and queued in the outbox — and the server accepts those; an unsigned
// command is refused 403 signature_required, another user's key and an outbox entry whose
// signature was tampered with 401 bad_signature; an outbox replayed after a crash is recorded once.
func TestCLISignsCommands(t *testing.T) {
	bin := buildCLI(t)
	dir := t.TempDir()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, err := identity.Open(users, cat)
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]identity.Credentials{}
	seeds := map[string]string{}
	for _, u := range []events.User{
		{ID: "insp-km", Role: events.RoleInspector, Sectors: []string{"forest"}, Jurisdiction: "530100"},
		{ID: "ver-km", Role: events.RoleVerifier, Sectors: []string{"forest"}, Jurisdiction: "530100"},
	} {
		c, err := st.Add(u)
		if err != nil {
			t.Fatal(err)
		}
		creds[u.ID] = c
		seeds[u.ID] = filepath.Join(t.TempDir(), u.ID+".nk")
		if err := os.WriteFile(seeds[u.ID], []byte(c.Seed), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Users: users, NoSync: true,
		AuditConfig: AuditConfig{RequireSignatures: []string{events.RoleInspector, events.RoleVerifier}}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	srv, nu := "--server="+m.URL(), "--nats="+m.NATS.ClientURL()
	insp := []string{"--token", creds["insp-km"].Token}
	deadline := time.Now().AddDate(0, 0, 30).Format("2006-01-02")
	report := func(desc string) []string {
		return []string{"--sector", "forest", "--region", "530102", "--site", "西山林区坟地", "-d", desc, "--deadline", deadline, "--json"}
	}
	args := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	hazard := func(r cliRun) client.Hazard {
		t.Helper()
		var h client.Hazard
		if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || h.ID == "" {
			t.Fatalf("no hazard in %s %s", r.stdout, r.stderr)
		}
		return h
	}
	// every event of the hazard is signed, and verifies with its actor's registered key
	checkSigned := func(id string, n int) {
		t.Helper()
		hist, err := m.App.History(context.Background(), id)
		if err != nil || len(hist) != n {
			t.Fatalf("history of %s: %d events, %v", id, len(hist), err)
		}
		for _, h := range hist {
			rec, _ := st.User(h.Event.Actor)
			if _, err := events.VerifyEventSignature(h.Event, rec.PublicKeys); err != nil {
				t.Fatalf("%s of %s: %v", h.Event.Type, id, err)
			}
		}
	}
	before := lastSeq(t, m)
	runCLI(t, bin, args([]string{"report", srv}, insp, report("未签名"))...).expect(t, exitDenied, "signature_required")
	if lastSeq(t, m) != before {
		t.Fatal("an unsigned command was appended")
	}
	// HTTP: a token and a seed; the CLI asks the server whose token it is
	h := hazard(runCLI(t, bin, args([]string{"report", srv, "--nkey", seeds["insp-km"]}, insp, report("  坟地用火 "))...))
	runCLI(t, bin, "grade", h.ID, srv, "--token", creds["ver-km"].Token, "--nkey", seeds["ver-km"], "--grade", "major",
		"--criterion", "forest-firesource", "--reason", "复核").expect(t, exitOK, "重大 major")
	checkSigned(h.ID, 2)
	// NATS: --actor and the seed that also signs in
	hn := hazard(runCLI(t, bin, args([]string{"report", nu, "--actor", "insp-km", "--nkey", seeds["insp-km"]}, report("NATS 上报"))...))
	runCLI(t, bin, "withdraw", hn.ID, nu, "--actor", "insp-km", "--nkey", seeds["insp-km"], "--reason", "重复录入").expect(t, exitOK, "已撤回 withdrawn")
	checkSigned(hn.ID, 2)
	// another user's key: bad_signature
	before = lastSeq(t, m)
	runCLI(t, bin, args([]string{"report", srv, "--nkey", seeds["ver-km"]}, insp, report("冒签"))...).expect(t, exitDenied, "bad_signature")
	if lastSeq(t, m) != before {
		t.Fatal("a badly signed command was appended")
	}

	// offline: the entry is signed when queued (its user must then be named: no server to ask)
	dead := "--server=http://" + deadAddr(t)
	box := filepath.Join(t.TempDir(), "outbox")
	off := []string{"--retries", "1", "--outbox", box, "--nkey", seeds["insp-km"]}
	runCLI(t, bin, args([]string{"report", dead}, off, insp, report("离线"))...).expect(t, exitInvalid, "actor_required")
	var queued []string
	for i := 0; i < 3; i++ {
		r := runCLI(t, bin, args([]string{"report", dead, "--actor", "insp-km"}, off, insp, report("离线第"+string(rune('一'+i))+"处"))...)
		r.expect(t, exitUnreachable, `"queued": true`)
		var q struct {
			HazardID string `json:"hazard_id"`
		}
		_ = json.Unmarshal([]byte(r.stdout), &q)
		queued = append(queued, q.HazardID)
	}
	entries, _ := (&client.Outbox{Dir: box}).Entries()
	if len(entries) != 3 {
		t.Fatalf("outbox: %d entries", len(entries))
	}
	saved := map[string][]byte{}
	for _, e := range entries {
		if !e.Command.Signed() {
			t.Fatalf("queued unsigned: %s", e.Body)
		}
		saved[e.Path], _ = os.ReadFile(e.Path)
	}
	before = lastSeq(t, m)
	runCLI(t, bin, "sync", "--outbox", box, srv, "--token", creds["insp-km"].Token).expect(t, exitOK, "已同步 synced 3 of 3", "3 recorded now")
	for _, id := range queued {
		checkSigned(id, 1)
	}
	// a crash between the answers and the removals: the same signed bytes, recorded once
	for p, b := range saved {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runCLI(t, bin, "sync", "--outbox", box, srv, "--token", creds["insp-km"].Token).expect(t, exitOK, "3 already recorded")
	if got := lastSeq(t, m); got != before+3 {
		t.Fatalf("outbox replay appended: seq %d → %d, want +3", before, got)
	}

	// an entry whose signature was tampered with in the outbox is refused and kept in rejected/
	r := runCLI(t, bin, args([]string{"report", dead, "--actor", "insp-km"}, off, insp, report("被篡改"))...)
	r.expect(t, exitUnreachable, `"queued": true`)
	entries, _ = (&client.Outbox{Dir: box}).Entries()
	if len(entries) != 1 {
		t.Fatalf("outbox: %d entries", len(entries))
	}
	raw, _ := os.ReadFile(entries[0].Path)
	forged := strings.Replace(string(raw), "被篡改", "已篡改", 1)
	if forged == string(raw) {
		t.Fatalf("entry lacks its description: %s", raw)
	}
	if err := os.WriteFile(entries[0].Path, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	before = lastSeq(t, m)
	runCLI(t, bin, "sync", "--outbox", box, srv, "--token", creds["insp-km"].Token).expect(t, exitDenied, "1 rejected", "bad_signature")
	if lastSeq(t, m) != before {
		t.Fatal("a tampered entry was appended")
	}
}
