package main

import (
	"context"
	"encoding/json"
	"strconv"

	"fmt"
	"github.com/nats-io/nats.go"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/handlers/identity"
)

type secEnv struct {
	m      *Main
	tokens map[string]string
	creds  map[string]identity.Credentials
	conns  map[string]*nats.Conn
	root   *testing.T // connections live as long as the whole test
	n      int
}

// natsCall sends verb with body over the NATS service as user and answers like call does:
// the HTTP status the same answer has (Qingling-Status) and the body.
func (e *secEnv) natsCall(t *testing.T, user, verb string, body map[string]any) apiResp {
	t.Helper()
	nc := e.conns[user]
	if nc == nil {
		c := e.creds[user]
		kp := nkeyPair(t, c.Seed)
		var err error
		nc, err = nats.Connect(e.m.NATS.ClientURL(), nats.Nkey(c.NKey, kp.Sign), nats.CustomInboxPrefix(identity.InboxPrefix(user)))
		if err != nil {
			if user == "gone" { // a disabled user cannot even connect
				return apiResp{Code: 401}
			}
			t.Fatalf("connect %s: %v", user, err)
		}
		e.conns[user] = nc
		e.root.Cleanup(nc.Close)
	}
	b, _ := json.Marshal(body)
	msg, err := nc.Request("qingling.cmd."+user+"."+verb, b, 10*time.Second)
	if err != nil {
		t.Fatalf("nats %s %s: %v", user, verb, err)
	}
	code, _ := strconv.Atoi(msg.Header.Get("Qingling-Status"))
	r := apiResp{Code: code, Raw: msg.Data}
	_ = json.Unmarshal(msg.Data, &r.Body)
	return r
}

func validCode(prefix string) string {
	const chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	weights := [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}
	sum := 0
	for i := 0; i < 17; i++ {
		sum += strings.IndexByte(chars, prefix[i]) * weights[i]
	}
	return prefix + string(chars[(31-sum%31)%31])
}

var codeA, codeB = validCode("91530181MA6K00001"), validCode("91530181MA6K00002")

// newSecEnv starts Qingling with identities and one user per role and scope.
func newSecEnv(t *testing.T) *secEnv {
	t.Helper()
	dir := t.TempDir()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, err := identity.Open(users, cat)
	if err != nil {
		t.Fatal(err)
	}
	env := &secEnv{tokens: map[string]string{}, creds: map[string]identity.Credentials{}, conns: map[string]*nats.Conn{}, root: t}
	for _, u := range []events.User{
		{ID: "insp-in", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		{ID: "insp-sector", Role: events.RoleInspector, Sectors: []string{"forest"}, Jurisdiction: "530100"},
		{ID: "insp-out", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530300"},
		{ID: "rect-own", Role: events.RoleRectifier, Sites: []string{codeA}},
		{ID: "rect-other", Role: events.RoleRectifier, Sites: []string{codeB}},
		{ID: "ver-in", Role: events.RoleVerifier, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		{ID: "ver-sector", Role: events.RoleVerifier, Sectors: []string{"mine"}, Jurisdiction: "530000"},
		{ID: "ver-out", Role: events.RoleVerifier, Sectors: []string{"chem"}, Jurisdiction: "530300"},
		{ID: "ver-county", Role: events.RoleVerifier, Sectors: []string{"chem"}, Jurisdiction: "530181"},
		{ID: "desk-in", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		{ID: "desk-out", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530300"},
		{ID: "auditor", Role: events.RoleAuditor},
		{ID: "admin", Role: events.RoleAdmin},
		{ID: "gone", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
	} {
		c, err := st.Add(u)
		if err != nil {
			t.Fatal(err)
		}
		env.tokens[u.ID] = c.Token
		env.creds[u.ID] = c
	}
	if err := st.SetDisabled("gone", true); err != nil {
		t.Fatal(err)
	}
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Users: users, NoSync: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	env.m = m
	return env
}

// hazardIn builds, through the trusted command path, a chem hazard at site A in 530181 in the
// given status; "completer" and "reporter" are setup users, never the users under test.
func (e *secEnv) hazardIn(t *testing.T, grade string, status events.Status, listed bool) string {
	t.Helper()
	e.n++
	crit := ""
	if grade == events.GradeMajor {
		crit = "chem-2017-05"
	}
	now := time.Now()
	run := func(action, id, actor string, p any) string {
		t.Helper()
		cmd := &events.Command{Action: action, HazardID: id, Actor: events.Actor{ID: actor}, Payload: p, OccurredAt: now.Add(-time.Minute)}
		res, err := e.m.App.Execute(context.Background(), cmd)
		if err != nil {
			t.Fatalf("setup %s: %v", action, err)
		}
		return res.Hazard.ID
	}
	dl := now.AddDate(0, 1, 0).Format(time.RFC3339)
	id := run(events.ActReport, "", "setup-reporter", &events.Reported{Sector: "chem", Region: "530181", Site: events.Site{Name: fmt.Sprintf("厂%d", e.n), CreditCode: codeA},
		Grade: grade, Criterion: crit, Description: "d", Source: "inspection", Deadline: dl})
	if listed {
		run(events.ActList, id, "setup-verifier", &events.Listed{Level: "county", Authority: "安宁市安委办", Document: "安委〔2026〕1号", Deadline: dl})
	}
	plan := &events.Planned{Responsible: "r", Measures: "m", Funds: "f", Deadline: dl, Contingency: "c"}
	switch status {
	case events.StatusReported:
	case events.StatusPlanned:
		run(events.ActPlan, id, "setup-rect", plan)
	case events.StatusRectifying:
		run(events.ActPlan, id, "setup-rect", plan)
		run(events.ActProgress, id, "setup-rect", &events.Progressed{Percent: 50})
	case events.StatusAwaiting, events.StatusCleared:
		run(events.ActPlan, id, "setup-rect", plan)
		run(events.ActComplete, id, "setup-completer", &events.Completed{})
		if status == events.StatusCleared {
			run(events.ActClear, id, "setup-verifier", &events.Cleared{Method: "on-site"})
		}
	}
	return id
}

// TestAuthorisationMatrix tries every role × action × sector × jurisdiction × site over HTTP and NATS,
// with the expected answer written out here (not computed by the code under test), and checks
// that nothing is written on a refusal.
func TestAuthorisationMatrix(t *testing.T) {
	e := newSecEnv(t)
	later := time.Now().AddDate(0, 2, 0).Format("2006-01-02")
	type action struct {
		name, grade string
		status      events.Status
		listed      bool
		body        map[string]any
		allowed     []string
	}
	everyone := []string{"insp-in", "insp-sector", "insp-out", "rect-own", "rect-other", "ver-in", "ver-sector", "ver-out", "ver-county", "desk-in", "desk-out", "auditor", "admin", "gone"}
	actions := []action{
		{"amend", "general", events.StatusReported, false, map[string]any{"description": "更正"}, []string{"ver-in", "ver-county"}},
		{"grade", "general", events.StatusReported, false, map[string]any{"grade": "major", "criterion": "chem-2017-05", "reason": "复核"}, []string{"ver-in", "ver-county"}},
		{"list", "major", events.StatusReported, false, map[string]any{"level": "prefecture", "authority": "昆明市安委办", "document": "昆安委〔2026〕2号", "deadline": later}, []string{"ver-in"}},
		{"plan", "general", events.StatusReported, false, map[string]any{"measures": "整改"}, []string{"insp-in", "rect-own"}},
		{"progress", "general", events.StatusPlanned, false, map[string]any{"percent": 30}, []string{"insp-in", "rect-own"}},
		{"extend", "general", events.StatusPlanned, false, map[string]any{"deadline": later, "reason": "设备采购"}, []string{"ver-in", "ver-county"}},
		{"complete", "general", events.StatusRectifying, false, map[string]any{"note": "完成"}, []string{"insp-in", "rect-own"}},
		{"reject", "general", events.StatusAwaiting, false, map[string]any{"reason": "不合格"}, []string{"ver-in", "ver-county"}},
		{"clear", "general", events.StatusAwaiting, false, map[string]any{"method": "on-site"}, []string{"ver-in", "ver-county", "rect-own"}},
		{"clear", "major", events.StatusAwaiting, false, map[string]any{"method": "on-site"}, []string{"ver-in", "ver-county"}},
		{"clear", "major", events.StatusAwaiting, true, map[string]any{"method": "on-site"}, []string{"ver-in", "ver-county"}},
		{"reopen", "general", events.StatusCleared, false, map[string]any{"reason": "复发"}, []string{"ver-in", "ver-county"}},
		{"withdraw", "general", events.StatusReported, false, map[string]any{"reason": "录错"}, []string{"ver-in", "ver-county"}},
	}
	for _, a := range actions {
		for _, who := range everyone {
			for _, over := range []string{"http", "nats"} {
				name := fmt.Sprintf("%s-%s-%s-listed=%v/%s/%s", a.name, a.grade, a.status, a.listed, who, over)
				t.Run(name, func(t *testing.T) {
					id := e.hazardIn(t, a.grade, a.status, a.listed)
					want := contains(a.allowed, who)
					before := lastSeq(t, e.m)
					var r apiResp
					if over == "http" {
						r = call(t, "POST", e.m.URL()+"/v1/hazards/"+id+"/"+a.name, "", a.body, "Authorization", "Bearer "+e.tokens[who])
					} else {
						body := map[string]any{"id": id}
						for k, v := range a.body {
							body[k] = v
						}
						r = e.natsCall(t, who, a.name, body)
					}
					if want && r.Code != 200 {
						t.Fatalf("want allowed, got %d %s", r.Code, r.Raw)
					}
					if !want {
						if r.Code != 403 && r.Code != 401 {
							t.Fatalf("want 401/403, got %d %s", r.Code, r.Raw)
						}
						if lastSeq(t, e.m) != before {
							t.Fatal("a refused command wrote to the log")
						}
					}
				})
			}
		}
	}
	// Reports: inspectors within sector and jurisdiction; rectifiers only self-checks of their sites.
	reports := []struct {
		who, sector, region, source, site string
		ok                                bool
	}{
		{"insp-in", "chem", "530181", "inspection", codeB, true},
		{"insp-in", "chem", "530302", "inspection", codeB, false},
		{"insp-in", "forest", "530181", "inspection", codeB, false},
		{"insp-sector", "chem", "530181", "inspection", codeB, false},
		{"insp-out", "chem", "530181", "tip-off", codeB, false},
		{"insp-in", "chem", "530181", "self-check", codeB, false},
		{"rect-own", "chem", "530181", "self-check", codeA, true},
		{"rect-own", "chem", "530181", "self-check", codeB, false},
		{"rect-own", "chem", "530181", "inspection", codeA, false},
		{"rect-other", "chem", "530181", "self-check", codeA, false},
		{"ver-in", "chem", "530181", "inspection", codeB, false},
		{"desk-in", "chem", "530181", "inspection", codeB, false},
		{"auditor", "chem", "530181", "inspection", codeB, false},
		{"admin", "chem", "530181", "inspection", codeB, false},
		{"gone", "chem", "530181", "inspection", codeB, false},
	}
	for i, c := range reports {
		for _, over := range []string{"http", "nats"} {
			t.Run(fmt.Sprintf("report-%d-%s-%s-%s-%s/%s", i, c.who, c.sector, c.region, c.source, over), func(t *testing.T) {
				body := map[string]any{"sector": c.sector, "region": c.region, "site": map[string]any{"name": "某厂", "credit_code": c.site},
					"grade": "general", "description": "d", "source": c.source, "deadline": later}
				before := lastSeq(t, e.m)
				var r apiResp
				if over == "http" {
					r = call(t, "POST", e.m.URL()+"/v1/hazards", "", body, "Authorization", "Bearer "+e.tokens[c.who])
				} else {
					r = e.natsCall(t, c.who, "report", body)
				}
				if c.ok != (r.Code == 201) || (!c.ok && r.Code != 403 && r.Code != 401) {
					t.Fatalf("want ok=%v, got %d %s", c.ok, r.Code, r.Raw)
				}
				if !c.ok && lastSeq(t, e.m) != before {
					t.Fatal("a refused report wrote to the log")
				}
			})
		}
	}
	// Reads: within sector and jurisdiction; rectifiers their own sites; auditors and admins all.
	id := e.hazardIn(t, "general", events.StatusReported, false)
	readers := []string{"insp-in", "rect-own", "ver-in", "ver-county", "desk-in", "auditor", "admin"}
	for _, who := range everyone {
		for _, path := range []string{"", "/history"} {
			r := call(t, "GET", e.m.URL()+"/v1/hazards/"+id+path, "", nil, "Authorization", "Bearer "+e.tokens[who])
			if want := contains(readers, who); want != (r.Code == 200) {
				t.Errorf("read%s by %s: got %d %s", path, who, r.Code, r.Raw)
			}
			verb := map[string]string{"": "show", "/history": "history"}[path]
			if r := e.natsCall(t, who, verb, map[string]any{"id": id}); contains(readers, who) != (r.Code == 200) {
				t.Errorf("%s over NATS by %s: got %d %s", verb, who, r.Code, r.Raw)
			}
		}
		r := call(t, "GET", e.m.URL()+"/v1/hazards?limit=500", "", nil, "Authorization", "Bearer "+e.tokens[who])
		items, _ := r.Body["items"].([]any)
		listed := false
		for _, it := range items {
			listed = listed || it.(map[string]any)["id"] == id
		}
		if want := contains(readers, who); want != listed {
			t.Errorf("list by %s: hazard listed=%v (%d, %d items)", who, listed, r.Code, len(items))
		}
	}
	// The reporter may withdraw their own finding within 24 hours.
	r := call(t, "POST", e.m.URL()+"/v1/hazards", "", map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "某厂"},
		"grade": "general", "description": "d", "source": "inspection", "deadline": later}, "Authorization", "Bearer "+e.tokens["insp-in"])
	if r.Code != 201 {
		t.Fatalf("report: %d %s", r.Code, r.Raw)
	}
	own := r.Body["id"].(string)
	if r := call(t, "POST", e.m.URL()+"/v1/hazards/"+own+"/withdraw", "", map[string]any{"reason": "录错"}, "Authorization", "Bearer "+e.tokens["insp-in"]); r.Code != 200 {
		t.Fatalf("reporter withdraw: %d %s", r.Code, r.Raw)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestSessionsAndHostileCredentials: cookies, CSRF, forged actor header, disabled users, metrics.
func TestSessionsAndHostileCredentials(t *testing.T) {
	e := newSecEnv(t)
	u := e.m.URL()
	// public routes
	if r := call(t, "GET", u+"/healthz", "", nil); r.Code != 200 {
		t.Fatalf("healthz %d", r.Code)
	}
	for _, c := range []struct {
		name string
		hdr  []string
		want int
		code string
	}{
		{"no credential", nil, 401, "unauthenticated"},
		{"bad token", []string{"Authorization", "Bearer qlt_admin_0000"}, 401, "invalid_token"},
		{"not bearer", []string{"Authorization", "Basic YWRtaW46eA=="}, 401, "invalid_authorization"},
		{"disabled user", []string{"Authorization", "Bearer " + e.tokens["gone"]}, 401, "user_disabled"},
		{"forged actor header", []string{"Authorization", "Bearer " + e.tokens["insp-in"], "X-Qingling-Actor", "ver-in"}, 400, "actor_header_refused"},
	} {
		before := lastSeq(t, e.m)
		r := call(t, "POST", u+"/v1/hazards", "", map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "x"},
			"grade": "general", "description": "d", "source": "inspection", "deadline": "2099-01-01"}, c.hdr...)
		if r.Code != c.want || errCode(r) != c.code {
			t.Errorf("%s: got %d %s", c.name, r.Code, r.Raw)
		}
		if lastSeq(t, e.m) != before {
			t.Errorf("%s wrote", c.name)
		}
	}
	// /metrics needs an admin
	if r := call(t, "GET", u+"/metrics", "", nil, "Authorization", "Bearer "+e.tokens["desk-in"]); r.Code != 403 {
		t.Errorf("metrics as desk: %d", r.Code)
	}
	if r := call(t, "GET", u+"/metrics", "", nil, "Authorization", "Bearer "+e.tokens["admin"]); r.Code != 200 || !strings.Contains(string(r.Raw), "qingling_http_requests_total") {
		t.Errorf("metrics as admin: %d", r.Code)
	}
	// a session cookie works for reads; writes need the CSRF token
	r := call(t, "POST", u+"/v1/session", "", map[string]any{"token": e.tokens["insp-in"]})
	if r.Code != 200 || r.Body["csrf"] == "" {
		t.Fatalf("session: %d %s", r.Code, r.Raw)
	}
	csrf := r.Body["csrf"].(string)
	// find the cookie the server set
	req := mustCookie(t, u, e.tokens["insp-in"])
	if r := call(t, "GET", u+"/v1/me", "", nil, "Cookie", req); r.Code != 200 || r.Body["id"] != "insp-in" {
		t.Fatalf("me via cookie: %d %s", r.Code, r.Raw)
	}
	body := map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "x"}, "grade": "general", "description": "d", "source": "inspection", "deadline": "2099-01-01"}
	if r := call(t, "POST", u+"/v1/hazards", "", body, "Cookie", req); r.Code != 403 || errCode(r) != "csrf" {
		t.Fatalf("cookie write without csrf: %d %s", r.Code, r.Raw)
	}
	if r := call(t, "POST", u+"/v1/hazards", "", body, "Cookie", req, "X-CSRF-Token", "wrong"); r.Code != 403 {
		t.Fatalf("cookie write with a wrong csrf: %d %s", r.Code, r.Raw)
	}
	if r := call(t, "POST", u+"/v1/hazards", "", body, "Cookie", req, "X-CSRF-Token", csrf); r.Code != 201 {
		t.Fatalf("cookie write with csrf: %d %s", r.Code, r.Raw)
	}
	if r := call(t, "GET", u+"/v1/me", "", nil, "Cookie", "ql_session=forged.123.abc"); r.Code != 401 {
		t.Fatalf("forged cookie: %d", r.Code)
	}
}

func mustCookie(t *testing.T, base, token string) string {
	t.Helper()
	r := callRaw(t, "POST", base+"/v1/session", `{"token":"`+token+`"}`)
	for _, c := range r.Cookies() {
		if c.Name == "ql_session" {
			if !c.HttpOnly || c.SameSite == 0 {
				t.Fatalf("session cookie not HttpOnly/SameSite: %+v", c)
			}
			return c.Name + "=" + c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestHostileInputs: each hostile body gets its precise status and code, and writes nothing.
func TestHostileInputs(t *testing.T) {
	e := newSecEnv(t)
	id := e.hazardIn(t, "general", events.StatusReported, false)
	tok := e.tokens["insp-in"]
	good := `{"sector":"chem","region":"530181","site":{"name":"某厂"},"grade":"general","description":"d","source":"inspection","deadline":"2099-01-01"}`
	cases := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"truncated JSON", "/v1/hazards", good[:40], 400, "malformed_json"},
		{"empty body", "/v1/hazards", "", 400, "malformed_json"},
		{"wrong type", "/v1/hazards", strings.Replace(good, `"grade":"general"`, `"grade":7`, 1), 400, "wrong_type"},
		{"array body", "/v1/hazards", `[1,2]`, 400, "wrong_type"},
		{"10 MB body", "/v1/hazards", `{"description":"` + strings.Repeat("x", 10<<20) + `"}`, 413, "body_too_large"},
		{"10,000-deep nesting", "/v1/hazards", strings.Repeat("[", 10000) + strings.Repeat("]", 10000), 400, "too_deep"},
		{"invalid UTF-8", "/v1/hazards", strings.Replace(good, "某厂", "\xff\xfe", 1), 400, "invalid_utf8"},
		{"unknown field", "/v1/hazards", strings.Replace(good, `"grade"`, `"admin":true,"grade"`, 1), 400, "unknown_field"},
		{"unknown sector", "/v1/hazards", strings.Replace(good, `"chem"`, `"coal"`, 1), 400, "unknown_sector"},
		{"unknown region", "/v1/hazards", strings.Replace(good, `"530181"`, `"999999"`, 1), 400, "unknown_region"},
		{"prefecture as region", "/v1/hazards", strings.Replace(good, `"530181"`, `"530100"`, 1), 400, "region_not_county"},
		{"control character in name", "/v1/hazards", strings.Replace(good, "某厂", `某\u0007厂`, 1), 400, "control_character"},
		{"non-canonical id", "/v1/hazards", strings.Replace(good, `{`, `{"id":"0193F2C4-0000-7000-8000-000000000001",`, 1), 400, "invalid_uuid"},
		{"trailing garbage", "/v1/hazards", good + `{}`, 400, "malformed_json"},
		{"criterion of another sector", "/v1/hazards", strings.Replace(good, `"grade":"general"`, `"grade":"major","criterion":"mine-tp-02"`, 1), 400, "criterion_sector"},
		{"future occurred_at", "/v1/hazards", strings.Replace(good, `{`, `{"occurred_at":"2099-01-01T00:00:00+08:00",`, 1), 400, "occurred_in_future"},
		{"bad action", "/v1/hazards/" + id + "/destroy", `{}`, 404, "unknown_action"},
		{"percent out of range", "/v1/hazards/" + id + "/progress", `{"percent":101}`, 400, "invalid_percent"},
		{"stale version", "/v1/hazards/" + id + "/plan", `{"measures":"m","expected_version":9}`, 409, "version_conflict"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := lastSeq(t, e.m)
			r := call(t, "POST", e.m.URL()+c.path, "", c.body, "Authorization", "Bearer "+tok)
			if r.Code != c.status || errCode(r) != c.code {
				t.Fatalf("got %d %s, want %d %s", r.Code, clipBytes(r.Raw), c.status, c.code)
			}
			if lastSeq(t, e.m) != before {
				t.Fatal("wrote to the log")
			}
		})
	}
}

func clipBytes(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
