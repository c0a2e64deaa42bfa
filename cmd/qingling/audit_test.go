package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/xuri/excelize/v2"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/export"
	"qingling/handlers/identity"
)

func auditRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func currentQuarter() string {
	now := time.Now().In(events.Shanghai)
	return fmt.Sprintf("%dQ%d", now.Year(), (int(now.Month())-1)/3+1)
}

// TestAuditEndToEnd: a server with identities requires inspectors to sign; a signed report
// goes in, an unsigned one is refused; the exports download over HTTP; once the server is
// stopped, verify, checkpoint export, replay and export work on its data directory, and an
// event slipped into the stored log while it was down is found by the next checkpoint.
func TestAuditEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Demo: true, DemoSize: 60, NoSync: true, Log: quietLog(),
		Users: filepath.Join(dir, "users.json"), Out: io.Discard, DemoTokens: map[string]string{}}
	cfg.RequireSignatures = []string{events.RoleInspector}
	m, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Close() }()
	cred, err := m.Users.Add(events.User{ID: "insp-sig", Role: events.RoleInspector, Sectors: []string{"all"}, Jurisdiction: "530000"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(cred.Seed))
	if err != nil {
		t.Fatal(err)
	}
	post := func(cmd *events.Command) (int, string) {
		body, _ := events.CommandBody(cmd)
		req, _ := http.NewRequest("POST", m.URL()+"/v1/hazards", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cred.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	report := func() *events.Command {
		cmd, err := events.DecodeCommand(events.ActReport, "", []byte(`{"sector":"trade","region":"530102","site":{"name":"五华制造厂"},"grade":"general","description":"粉尘清扫不及时","source":"inspection","deadline":"2099-01-31"}`))
		if err != nil {
			t.Fatal(err)
		}
		cmd.CommandID, cmd.OccurredAt, cmd.Actor = events.NewID(), time.Now().Add(-time.Minute).Truncate(time.Second), events.Actor{ID: "insp-sig"}
		return cmd
	}
	if code, body := post(report()); code != 403 || !strings.Contains(body, "signature_required") {
		t.Fatalf("an unsigned inspector's report: %d %s", code, body)
	}
	signed := report()
	if err := events.SignCommand(m.Catalog, signed, kp.Sign); err != nil {
		t.Fatal(err)
	}
	if code, body := post(signed); code != 201 {
		t.Fatalf("a signed report: %d %s", code, body)
	}
	tampered := report()
	_ = events.SignCommand(m.Catalog, tampered, kp.Sign)
	tampered.Payload.(*events.Reported).Description = "别的描述"
	if code, body := post(tampered); code != 401 || !strings.Contains(body, "bad_signature") {
		t.Fatalf("a report that is not what was signed: %d %s", code, body)
	}

	// Downloads: an auditor gets the XLSX table, a rectifier is refused.
	get := func(token, path string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", m.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	q := currentQuarter()
	res, b := get(cfg.DemoTokens["demo-auditor"], "/v1/export/quarterly?quarter="+q+"&format=xlsx&region=530000")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != export.ContentType(export.XLSX) {
		t.Fatalf("quarterly download: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	f, err := excelize.OpenReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the downloaded XLSX does not open: %v", err)
	}
	rows, _ := f.GetRows(export.QuarterlySheet)
	f.Close()
	if len(rows) < export.FirstDataRow || rows[export.FirstDataRow-1][0] != "530000" {
		t.Fatalf("quarterly rows: %v", rows[:min(len(rows), 3)])
	}
	res, b = get(cfg.DemoTokens["demo-auditor"], "/v1/export/ledger?format=csv&sector=forest")
	if res.StatusCode != 200 || !bytes.HasPrefix(b, []byte("\uFEFF序号")) || !strings.Contains(res.Header.Get("Content-Disposition"), "qingling-ledger-") {
		t.Fatalf("ledger download: %d %q", res.StatusCode, b[:min(len(b), 60)])
	}
	if res, _ := get(cfg.DemoTokens["demo-rectifier"], "/v1/export/quarterly?quarter="+q); res.StatusCode != 403 {
		t.Fatalf("a rectifier's quarterly download: %d", res.StatusCode)
	}
	if res, b := get(cfg.DemoTokens["demo-auditor"], "/v1/export/quarterly?quarter=2025Q5"); res.StatusCode != 400 {
		t.Fatalf("a bad quarter: %d %s", res.StatusCode, b)
	}
	m.Close()

	// The server is stopped: verify its data directory (keys from its users file).
	code, out, errs := auditRun(t, "verify", "--data", dir, "--require-signatures", "inspector")
	if code != exitOK || !strings.Contains(out, "OK") || !strings.Contains(out, "1 signed, 1 checked") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errs)
	}
	cps := filepath.Join(dir, "..", "cps.jsonl")
	keys := filepath.Join(dir, "..", "keys.json")
	if code, _, errs := auditRun(t, "checkpoint", "export", "--data", dir, "--out", cps, "--keys", keys); code != exitOK {
		t.Fatalf("checkpoint export: %d %s", code, errs)
	}
	code, out, errs = auditRun(t, "verify", "--data", dir, "--checkpoints", cps, "--keys", keys, "--json")
	var rep struct {
		Events, Covered, Pending int
		Problems                 []any
	}
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || rep.Covered != rep.Events || rep.Events == 0 {
		t.Fatalf("verify with the exported copy: %d %v %+v %s", code, err, rep, errs)
	}
	code, out, _ = auditRun(t, "replay", "--data", dir, "--sector", "trade", "--region", "530102")
	if code != exitOK || !strings.Contains(out, `"subject":"hz.trade.530000.530100.530102.`) || strings.Contains(out, "hz.mine.") {
		t.Fatalf("replay: %d %s", code, out[:min(len(out), 300)])
	}
	xlsx := filepath.Join(dir, "..", "ledger.xlsx")
	if code, _, errs := auditRun(t, "export", "ledger", "--data", dir, "--quarter", q, "--out", xlsx); code != exitOK {
		t.Fatalf("export ledger: %d %s", code, errs)
	}
	if f, err := excelize.OpenFile(xlsx); err != nil {
		t.Fatalf("the exported ledger does not open: %v", err)
	} else {
		f.Close()
	}

	// Someone with access to the stored log publishes an event while the server is down.
	forged := forgeReport(t, dir)
	m2, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(), Users: cfg.Users, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	m2.Close() // its final checkpoint vouches for the log up to its end
	code, out, _ = auditRun(t, "verify", "--data", dir, "--checkpoints", cps)
	if code != exitProblems || !strings.Contains(out, fmt.Sprintf("not_appended seq %d hazard %s", forged.seq, forged.id)) {
		t.Fatalf("verify after a forged event: %d\n%s", code, out)
	}
	// A running server's data directory is not opened behind its back.
	m3, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NoSync: true, Log: quietLog(), Users: cfg.Users, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Close()
	if code, _, errs := auditRun(t, "verify", "--data", dir); code != exitFailure || !strings.Contains(errs, "locked") {
		t.Fatalf("verify on a running server's directory: %d %s", code, errs)
	}
}

type forgedEvent struct {
	seq uint64
	id  string
}

// forgeReport publishes a well-formed report straight into the stored log of a stopped server.
func forgeReport(t *testing.T, dir string) forgedEvent {
	t.Helper()
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: filepath.Join(dir, "jetstream"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := jsstore.ConnectInProcess(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cat, _ := events.LoadCatalog()
	cmd, _ := events.DecodeCommand(events.ActReport, "", []byte(`{"sector":"gas","region":"530102","site":{"name":"伪造燃气站"},"grade":"general","description":"伪造","source":"inspection","deadline":"2099-01-31"}`))
	cmd.CommandID, cmd.Actor = events.NewID(), events.Actor{ID: "demo-inspector", Role: events.RoleInspector}
	events.ResolveIDs(cmd)
	ev, err := events.Decide(cat, nil, cmd, time.Now(), events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := ev.Marshal()
	js, _ := jetstream.New(nc)
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: events.Subject("gas", "530000", "530100", "530102", cmd.HazardID), Data: raw,
		Header: nats.Header{jetstream.MsgIDHeader: []string{ev.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	return forgedEvent{seq: ack.Sequence, id: cmd.HazardID}
}

// TestAuditOverNATS: an auditor, with only the read rights its role grants on NATS, verifies
// the running log, exports the checkpoints and replays a region — without the server's help.
func TestAuditOverNATS(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	cat, _ := events.LoadCatalog()
	st, err := identity.Open(users, cat)
	if err != nil {
		t.Fatal(err)
	}
	aud, err := st.Add(events.User{ID: "aud-1", Role: events.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	desk, err := st.Add(events.User{ID: "desk-1", Role: events.RoleDesk, Sectors: []string{"all"}, Jurisdiction: "530000"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Users: users, Demo: true, DemoSize: 40, NoSync: true, Log: quietLog(), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Checkpoints.Checkpoint(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	seed := func(c identity.Credentials) string {
		p := filepath.Join(dir, c.User+".nk")
		if err := os.WriteFile(p, []byte(c.Seed), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	url := m.NATS.ClientURL()
	code, out, errs := auditRun(t, "verify", "--nats", url, "--user", "aud-1", "--nkey", seed(aud), "--keys", users)
	if code != exitOK || !strings.Contains(out, "OK") || !strings.Contains(out, "0 pending") {
		t.Fatalf("verify as an auditor: %d\n%s\n%s", code, out, errs)
	}
	cps := filepath.Join(dir, "cps.jsonl")
	if code, _, errs := auditRun(t, "checkpoint", "export", "--nats", url, "--user", "aud-1", "--nkey", seed(aud), "--out", cps); code != exitOK {
		t.Fatalf("checkpoint export as an auditor: %d %s", code, errs)
	}
	if code, out, _ := auditRun(t, "replay", "--nats", url, "--user", "aud-1", "--nkey", seed(aud), "--region", "530100"); code != exitOK || strings.Count(out, "\n") == 0 {
		t.Fatalf("replay as an auditor: %d %q", code, out)
	}
	// A desk may not read the log itself.
	if code, _, _ := auditRun(t, "verify", "--nats", url, "--user", "desk-1", "--nkey", seed(desk)); code == exitOK {
		t.Fatal("a desk read the whole log")
	}
}
