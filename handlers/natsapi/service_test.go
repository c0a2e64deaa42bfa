package natsapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/evidence"
	"qingling/handlers/internal/testserver"
	"qingling/handlers/natsapi"
)

type env struct {
	nc    *nats.Conn
	store *jsstore.Store
	app   *app.Service
	svc   *natsapi.Server
	refs  *evidence.Refs // fed by the runner
}

// start runs a real in-process NATS server with JetStream, the store, the index fed by the
// runner, the command service and the NATS service.
func start(t *testing.T) *env {
	t.Helper()
	js := testserver.Start(t)
	refs := evidence.NewRefs(true)
	a := &app.Service{Catalog: js.Catalog, Index: js.Index(t, refs), Log: js.Store}
	svc, err := natsapi.Start(js.Conn, natsapi.Config{App: a, Log: js.Log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return &env{nc: js.Conn, store: js.Store, app: a, svc: svc, refs: refs}
}

type reply struct {
	msg  *nats.Msg
	body map[string]any
}

func (r reply) errCode() string { return r.msg.Header.Get(natsapi.HeaderErrorCode) }
func (r reply) status() string {
	if s := r.msg.Header.Get(micro.ErrorCodeHeader); s != "" {
		return s
	}
	return r.msg.Header.Get(natsapi.HeaderStatus)
}

func (e *env) req(t *testing.T, user, verb string, body any, hdr ...string) reply {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case nil:
	case string:
		data = []byte(b)
	default:
		data, _ = json.Marshal(b)
	}
	m := &nats.Msg{Subject: natsapi.Subject(user, verb), Data: data, Header: nats.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", m.Subject, data, err)
	}
	r := reply{msg: res}
	_ = json.Unmarshal(res.Data, &r.body)
	return r
}

func (e *env) lastSeq(t *testing.T) uint64 {
	t.Helper()
	s, err := e.store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func day(d int) string { return time.Now().AddDate(0, 0, d).In(events.Shanghai).Format("2006-01-02") }

func majorReport(occurred time.Time) map[string]any {
	return map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "安宁某化工有限公司"},
		"grade": "major", "criterion": "chem-2017-05", "description": "储罐区未设紧急切断", "source": "inspection",
		"occurred_at": occurred.Format(time.RFC3339), "deadline": day(30)}
}

func TestEveryCommandOverNATS(t *testing.T) {
	e := start(t)
	occurred := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	r := e.req(t, "insp-1", "report", majorReport(occurred), "Idempotency-Key", "0193f2c4-0000-7000-8000-000000000001")
	if r.status() != "201" || r.body["status"] != "reported" || r.body["version"].(float64) != 1 {
		t.Fatalf("report: %v %s", r.msg.Header, r.msg.Data)
	}
	id := r.body["id"].(string)
	if id != events.ReportID("0193f2c4-0000-7000-8000-000000000001") {
		t.Fatalf("report id %s is not derived from the command id", id)
	}
	steps := []struct {
		verb, user string
		body       map[string]any
		check      func(b map[string]any) bool
	}{
		{"amend", "insp-1", map[string]any{"description": "储罐区未设紧急切断阀"}, func(b map[string]any) bool { return b["status"] == "reported" }},
		{"list", "verifier-1", map[string]any{"level": "prefecture", "authority": "昆明市应急管理局", "document": "昆应急〔2026〕3号", "deadline": day(40)}, func(b map[string]any) bool { return b["listed"] == true }},
		{"plan", "rect-1", map[string]any{"responsible": "张三", "measures": "加装紧急切断阀", "funds": "30万元", "deadline": day(20), "contingency": "专项应急预案"}, func(b map[string]any) bool { return b["status"] == "planned" }},
		{"extend", "verifier-1", map[string]any{"deadline": day(25), "reason": "设备到货延迟"}, func(b map[string]any) bool { return b["status"] == "planned" }},
		{"progress", "rect-1", map[string]any{"note": "阀门到货", "percent": 60}, func(b map[string]any) bool { return b["status"] == "rectifying" }},
		{"complete", "rect-1", map[string]any{"note": "完成"}, func(b map[string]any) bool { return b["status"] == "awaiting_verification" }},
		{"reject", "verifier-1", map[string]any{"reason": "未调试"}, func(b map[string]any) bool { return b["status"] == "rectifying" }},
		{"complete", "rect-1", map[string]any{"note": "已调试"}, func(b map[string]any) bool { return b["status"] == "awaiting_verification" }},
		{"clear", "verifier-1", map[string]any{"method": "on-site", "note": "验收合格"}, func(b map[string]any) bool { return b["status"] == "cleared" }},
		{"reopen", "verifier-1", map[string]any{"reason": "复查发现阀门拆除", "deadline": day(10)}, func(b map[string]any) bool { return b["status"] == "reported" }},
		{"grade", "verifier-1", map[string]any{"grade": "general", "reason": "复核为一般隐患"}, func(b map[string]any) bool { return b["grade"] == "general" && b["listed"] == false }},
		{"withdraw", "verifier-1", map[string]any{"reason": "重复录入"}, func(b map[string]any) bool { return b["status"] == "withdrawn" }},
	}
	seen := map[string]bool{"report": true}
	for i, s := range steps {
		s.body["id"] = id
		r := e.req(t, s.user, s.verb, s.body)
		if r.status() != "200" || r.body["version"].(float64) != float64(i+2) || !s.check(r.body) {
			t.Fatalf("%s: %v %s", s.verb, r.msg.Header, r.msg.Data)
		}
		seen[s.verb] = true
	}
	for _, a := range events.Actions {
		if !seen[a] {
			t.Errorf("command %s not exercised", a)
		}
	}
	// queries
	show := e.req(t, "auditor-1", "show", map[string]any{"id": id})
	det, _ := show.body["details"].(map[string]any)
	if show.status() != "200" || show.body["status"] != "withdrawn" || det["description"] != "储罐区未设紧急切断阀" {
		t.Fatalf("show: %s", show.msg.Data)
	}
	hist := e.req(t, "auditor-1", "history", map[string]any{"id": id})
	evs, _ := hist.body["events"].([]any)
	if len(evs) != 13 {
		t.Fatalf("history: %d events: %s", len(evs), hist.msg.Data)
	}
	first := evs[0].(map[string]any)
	if first["occurred_at"] != events.FormatInstant(occurred) || first["occurred_at"] == first["recorded_at"] {
		t.Fatalf("history keeps occurred_at %v apart from recorded_at %v (want %s)", first["occurred_at"], first["recorded_at"], events.FormatInstant(occurred))
	}
	list := e.req(t, "desk-chem", "list", map[string]any{"sector": "chem", "status": "withdrawn", "limit": 10})
	if items, _ := list.body["items"].([]any); list.status() != "200" || len(items) != 1 {
		t.Fatalf("list query: %s", list.msg.Data)
	}
	if r := e.req(t, "desk-chem", "list", nil); r.status() != "200" {
		t.Fatalf("list query without a body: %s", r.msg.Data)
	}
	if r := e.req(t, "desk-chem", "list", map[string]any{"sector": "coal"}); r.status() != "400" || r.errCode() != "unknown_sector" {
		t.Fatalf("list query with an unknown sector: %v %s", r.msg.Header, r.msg.Data)
	}
}

func TestRefusedIdempotentAndConflictOverNATS(t *testing.T) {
	e := start(t)
	r := e.req(t, "insp-1", "report", majorReport(time.Now().Add(-time.Hour)))
	id := r.body["id"].(string)
	plan := map[string]any{"id": id, "responsible": "张三", "measures": "加装紧急切断阀", "funds": "30万元", "deadline": day(20), "contingency": "专项应急预案"}
	if r := e.req(t, "rect-1", "plan", plan); r.status() != "200" {
		t.Fatalf("plan: %s", r.msg.Data)
	}

	// the idempotent retry: the same key twice appends once and says so
	key := "0193f2c4-0000-7000-8000-0000000000a1"
	prog := map[string]any{"id": id, "note": "阀门到货", "percent": 60}
	r1 := e.req(t, "rect-1", "progress", prog, "Idempotency-Key", key)
	seq := e.lastSeq(t)
	r2 := e.req(t, "rect-1", "progress", prog, "Idempotency-Key", key)
	if r1.status() != "200" || r2.status() != "200" || r2.msg.Header.Get(natsapi.HeaderReplayed) != "true" || r2.body["replayed"] != true ||
		r2.body["version"] != r1.body["version"] || e.lastSeq(t) != seq {
		t.Fatalf("retry: %s / %v %s (seq %d → %d)", r1.msg.Data, r2.msg.Header, r2.msg.Data, seq, e.lastSeq(t))
	}
	// the key may also travel in the body
	body := map[string]any{"id": id, "note": "安装中", "percent": 80, "command_id": "0193f2c4-0000-7000-8000-0000000000a2"}
	if a, b := e.req(t, "rect-1", "progress", body), e.req(t, "rect-1", "progress", body); a.status() != "200" || b.msg.Header.Get(natsapi.HeaderReplayed) != "true" {
		t.Fatalf("retry by body command_id: %s / %s", a.msg.Data, b.msg.Data)
	}
	// the same report again is a retry of the report: 200 with the hazard
	rep := majorReport(time.Now().Add(-time.Hour))
	rep["command_id"] = "0193f2c4-0000-7000-8000-0000000000a3"
	first := e.req(t, "insp-1", "report", rep)
	again := e.req(t, "insp-1", "report", rep)
	if first.status() != "201" || again.status() != "200" || again.body["id"] != first.body["id"] {
		t.Fatalf("report retry: %s / %v %s", first.msg.Data, again.msg.Header, again.msg.Data)
	}

	refuse := func(name, user, verb string, body any, status, code string, hdr ...string) {
		t.Helper()
		before := e.lastSeq(t)
		r := e.req(t, user, verb, body, hdr...)
		errBody, _ := r.body["error"].(map[string]any)
		if r.status() != status || r.errCode() != code || errBody["code"] != code || r.msg.Header.Get(micro.ErrorHeader) == "" || errBody["message"] == "" {
			t.Fatalf("%s: %v %s, want %s %s", name, r.msg.Header, r.msg.Data, status, code)
		}
		if e.lastSeq(t) != before {
			t.Fatalf("%s wrote to the log", name)
		}
	}
	if r := e.req(t, "rect-1", "complete", map[string]any{"id": id, "note": "完成"}); r.status() != "200" {
		t.Fatalf("complete: %s", r.msg.Data)
	}
	refuse("the completer clears", "rect-1", "clear", map[string]any{"id": id, "method": "on-site"}, "422", "completer_cannot_clear")
	refuse("the reporter clears", "insp-1", "clear", map[string]any{"id": id, "method": "on-site"}, "422", "reporter_cannot_clear")
	refuse("stale version", "verifier-1", "reject", map[string]any{"id": id, "reason": "x", "expected_version": 2}, "409", "version_conflict")
	refuse("key reused", "rect-1", "plan", plan, "409", "command_id_reused", "Idempotency-Key", key)
	refuse("key and body differ", "rect-1", "progress", body, "400", "command_id_mismatch", "Idempotency-Key", key)
	refuse("no id", "rect-1", "progress", map[string]any{"percent": 1}, "400", "required")
	refuse("bad id", "rect-1", "progress", map[string]any{"id": "ABC", "percent": 1}, "400", "invalid_uuid")
	refuse("unknown hazard", "rect-1", "progress", map[string]any{"id": "0193f2c4-0000-7000-8000-0000000000ff", "percent": 1}, "404", "hazard_not_found")
	refuse("unknown field", "rect-1", "progress", map[string]any{"id": id, "percentage": 1}, "400", "unknown_field")
	refuse("malformed", "rect-1", "progress", `{"id": `, "400", "malformed_json")
	refuse("bad user", "-x", "show", map[string]any{"id": id}, "400", "invalid_actor")
	refuse("show unknown", "auditor-1", "show", map[string]any{"id": "0193f2c4-0000-7000-8000-0000000000ff"}, "404", "hazard_not_found")
	refuse("show extra field", "auditor-1", "show", map[string]any{"id": id, "x": 1}, "400", "unknown_field")
}

func TestMicroDiscovery(t *testing.T) {
	e := start(t)
	_ = e.req(t, "insp-1", "report", majorReport(time.Now().Add(-time.Hour)))
	_ = e.req(t, "insp-1", "show", map[string]any{"id": "0193f2c4-0000-7000-8000-0000000000ff"})

	var ping micro.Ping
	msg, err := e.nc.Request("$SRV.PING.qingling", nil, 5*time.Second)
	if err != nil || json.Unmarshal(msg.Data, &ping) != nil || ping.Name != "qingling" || ping.Type != micro.PingResponseType {
		t.Fatalf("PING: %v %s", err, msg.Data)
	}
	var info micro.Info
	msg, err = e.nc.Request("$SRV.INFO.qingling", nil, 5*time.Second)
	if err != nil || json.Unmarshal(msg.Data, &info) != nil || info.Name != "qingling" || info.Version == "" {
		t.Fatalf("INFO: %v %s", err, msg.Data)
	}
	var subjects []string
	for _, ep := range info.Endpoints {
		subjects = append(subjects, ep.Subject)
		if ep.QueueGroup != "q" {
			t.Errorf("endpoint %s: queue group %q", ep.Name, ep.QueueGroup)
		}
	}
	for _, v := range natsapi.Verbs() {
		if !slices.Contains(subjects, "qingling.cmd.*."+v) {
			t.Errorf("INFO lacks qingling.cmd.*.%s: %v", v, subjects)
		}
	}
	var stats micro.Stats
	msg, err = e.nc.Request("$SRV.STATS.qingling", nil, 5*time.Second)
	if err != nil || json.Unmarshal(msg.Data, &stats) != nil || stats.Name != "qingling" {
		t.Fatalf("STATS: %v %s", err, msg.Data)
	}
	got := map[string]*micro.EndpointStats{}
	for _, s := range stats.Endpoints {
		got[s.Name] = s
	}
	// micro counts the hand-off to a goroutine; the outcomes are in each endpoint's data
	data := func(name string) natsapi.EndpointData {
		t.Helper()
		var d natsapi.EndpointData
		if got[name] == nil || json.Unmarshal(got[name].Data, &d) != nil {
			t.Fatalf("STATS %s: %+v", name, got[name])
		}
		return d
	}
	if d := data("report"); got["report"].NumRequests != 1 || d.NumRequests != 1 || d.NumErrors != 0 || d.ProcessingTime <= 0 {
		t.Fatalf("STATS report: %+v %+v", got["report"], d)
	}
	if d := data("show"); got["show"].NumRequests != 1 || d.NumRequests != 1 || d.NumErrors != 1 || d.LastError != "404:hazard_not_found" {
		t.Fatalf("STATS show: %+v %+v", got["show"], d)
	}
}

type users map[string]*events.User

func (u users) Lookup(id string) (*events.User, bool) { x, ok := u[id]; return x, ok }

// TestIdentitiesAndEvidenceOverNATS: with a users store, the subject's user decides by its
// role and scope; evidence goes up and down through the service, and a download is scoped:
// to the uploader while no event references the file, then to whoever may read a hazard
// that references it. Every other download is answered as for a file not stored.
func TestIdentitiesAndEvidenceOverNATS(t *testing.T) {
	e := start(t)
	_ = e.svc.Stop()
	ctx := context.Background()
	st, err := evidence.Open(ctx, e.store.JetStream(), evidence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st.Scope = &evidence.Scope{Refs: e.refs, App: e.app, LastSeq: e.store.LastSeq}
	e.app.Evidence = st.Has
	us := users{
		"insp-km":     {ID: "insp-km", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		"insp-km2":    {ID: "insp-km2", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		"insp-qj":     {ID: "insp-qj", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530300"},
		"desk-km":     {ID: "desk-km", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		"desk-forest": {ID: "desk-forest", Role: events.RoleDesk, Sectors: []string{"forest"}, Jurisdiction: "530100"},
		"auditor":     {ID: "auditor", Role: events.RoleAuditor},
		"gone":        {ID: "gone", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100", Disabled: true},
	}
	svc, err := natsapi.Start(e.nc, natsapi.Config{App: e.app, Users: us, Evidence: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })

	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...)
	up := func(user string, data []byte) *nats.Msg {
		m := &nats.Msg{Subject: natsapi.Subject(user, "upload"), Data: data, Header: nats.Header{natsapi.HeaderEvidenceName: {"p.png"}}}
		r, err := e.nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := up("desk-km", png); r.Header.Get(micro.ErrorCodeHeader) != "403" || r.Header.Get(natsapi.HeaderErrorCode) != "read_only_role" {
		t.Fatalf("desk upload: %v %s", r.Header, r.Data)
	}
	r := up("insp-km", png)
	var info evidence.Info
	if r.Header.Get(natsapi.HeaderStatus) != "201" || json.Unmarshal(r.Data, &info) != nil || info.SHA256 != evidence.Sum(png) {
		t.Fatalf("upload: %v %s", r.Header, r.Data)
	}
	if strings.Contains(string(r.Data), "insp-km") {
		t.Fatalf("an upload's answer names its uploaders: %s", r.Data)
	}
	if r := up("insp-km", png); r.Header.Get(natsapi.HeaderStatus) != "200" {
		t.Fatalf("second upload: %v %s", r.Header, r.Data)
	}
	missing := e.req(t, "insp-km", "download", map[string]any{"sha256": strings.Repeat("0", 64)})
	if missing.status() != "404" || missing.errCode() != "evidence_not_found" {
		t.Fatalf("download of a file not stored: %v", missing.msg.Header)
	}
	download := func(user, sum string, want bool) {
		t.Helper()
		dl := e.req(t, user, "download", map[string]any{"sha256": sum})
		if want {
			if dl.status() != "200" || evidence.Sum(dl.msg.Data) != sum || dl.msg.Header.Get("Content-Type") != "image/png" {
				t.Fatalf("%s downloads %s: %v", user, sum[:8], dl.msg.Header)
			}
			return
		}
		// refused exactly as a file not stored is: nothing tells the file exists
		if dl.status() != "404" || dl.errCode() != "evidence_not_found" || len(dl.msg.Header) != len(missing.msg.Header) ||
			strings.ReplaceAll(string(dl.msg.Data), sum, "") != strings.ReplaceAll(string(missing.msg.Data), strings.Repeat("0", 64), "") {
			t.Fatalf("%s downloads %s: %v %s, want it answered as %v %s", user, sum[:8], dl.msg.Header, dl.msg.Data, missing.msg.Header, missing.msg.Data)
		}
	}
	// not referenced yet: the uploader only
	download("insp-km", info.SHA256, true)
	for _, u := range []string{"insp-km2", "desk-km", "desk-forest", "auditor", "nobody"} {
		if u == "nobody" {
			if r := e.req(t, u, "download", map[string]any{"sha256": info.SHA256}); r.status() != "401" {
				t.Fatalf("unknown user downloads: %v", r.msg.Header)
			}
			continue
		}
		download(u, info.SHA256, false)
	}
	// whoever uploads the same bytes has them: it is an uploader too
	if r := up("insp-qj", png); r.Header.Get(natsapi.HeaderStatus) != "200" {
		t.Fatalf("insp-qj uploads the same bytes: %v %s", r.Header, r.Data)
	}
	download("insp-qj", info.SHA256, true)

	rep := majorReport(time.Now().Add(-time.Hour))
	rep["evidence"] = []any{map[string]any{"sha256": strings.Repeat("1", 64)}}
	if r := e.req(t, "insp-km", "report", rep); r.status() != "422" || r.errCode() != "evidence_missing" {
		t.Fatalf("missing evidence: %v %s", r.msg.Header, r.msg.Data)
	}
	rep["evidence"] = []any{map[string]any{"sha256": info.SHA256, "name": "p.png"}}
	ok := e.req(t, "insp-km", "report", rep)
	if ok.status() != "201" || ok.body["reported_by"] != "insp-km" {
		t.Fatalf("inspector report: %v %s", ok.msg.Header, ok.msg.Data)
	}
	// referenced by a chem hazard in 530181: whoever may read it, and no one else, not even
	// an uploader from another jurisdiction (the answer right after the report: the service
	// waits for the feed to bring the reference)
	for _, c := range []struct {
		user string
		want bool
	}{{"desk-km", true}, {"insp-km", true}, {"insp-km2", true}, {"auditor", true}, {"desk-forest", false}, {"insp-qj", false}} {
		download(c.user, info.SHA256, c.want)
	}
	if got := e.refs.Hazards(info.SHA256); len(got) != 1 || got[0] != ok.body["id"] {
		t.Fatalf("references of %s: %v", info.SHA256[:8], got)
	}

	for _, c := range []struct{ user, verb, status, code string }{
		{"nobody", "report", "401", "unknown_user"},
		{"gone", "report", "401", "user_disabled"},
		{"desk-km", "report", "403", ""},
	} {
		if r := e.req(t, c.user, c.verb, majorReport(time.Now().Add(-time.Hour))); r.status() != c.status || (c.code != "" && r.errCode() != c.code) {
			t.Errorf("%s %s: %v %s", c.user, c.verb, r.msg.Header, r.msg.Data)
		}
	}
	if r := e.req(t, "desk-km", "show", map[string]any{"id": ok.body["id"]}); r.status() != "200" {
		t.Fatalf("desk reads its jurisdiction: %v %s", r.msg.Header, r.msg.Data)
	}
}

func TestStatusEndpointWhenConfigured(t *testing.T) {
	e := start(t)
	if r, err := e.nc.Request(natsapi.Subject("desk-1", "status"), nil, 200*time.Millisecond); err == nil {
		t.Fatalf("status answered without a status function: %s", r.Data)
	}
	_ = e.svc.Stop()
	svc, err := natsapi.Start(e.nc, natsapi.Config{App: e.app, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Status: func(_ context.Context, u *events.User, q url.Values) (any, error) {
			if q.Get("sector") == "coal" {
				return nil, events.Errorf(events.KindInvalid, "unknown_sector", "sector", "unknown sector")
			}
			return map[string]any{"rows": []any{}, "sector": q.Get("sector"), "as_of": q.Get("as_of")}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	r := e.req(t, "desk-1", "status", map[string]any{"sector": "mine", "as_of": "2026-01-01"})
	if r.status() != "200" || r.body["sector"] != "mine" || r.body["as_of"] != "2026-01-01" {
		t.Fatalf("status: %v %s", r.msg.Header, r.msg.Data)
	}
	if r := e.req(t, "desk-1", "status", map[string]any{"sector": "coal"}); r.status() != "400" || r.errCode() != "unknown_sector" {
		t.Fatalf("status refused: %v %s", r.msg.Header, r.msg.Data)
	}
}
