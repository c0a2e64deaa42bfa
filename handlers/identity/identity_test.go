package identity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"qingling/events"
)

func catalog(t testing.TB) *events.Catalog {
	t.Helper()
	c, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAddAuthenticateRotateDisable(t *testing.T) {
	cat := catalog(t)
	path := filepath.Join(t.TempDir(), "users.json")
	st, err := Open(path, cat)
	if err != nil {
		t.Fatal(err)
	}
	if st.Exists() {
		t.Fatal("new store claims a file")
	}
	c, err := st.Add(events.User{ID: "insp-1", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode: %v %v", fi.Mode(), err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), c.Token) || strings.Contains(string(raw), c.Seed) {
		t.Fatal("users file holds a secret")
	}
	u, err := st.Authenticate(c.Token)
	if err != nil || u.ID != "insp-1" || u.Role != events.RoleInspector {
		t.Fatalf("authenticate: %v %v", u, err)
	}
	for _, bad := range []string{"", "qlt_insp-1_00", c.Token + "x", strings.Replace(c.Token, "insp-1", "insp-2", 1), "Bearer " + c.Token} {
		if _, err := st.Authenticate(bad); events.KindOf(err) != events.KindUnauthenticated {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	// the nkey seed is a real user key whose public key is registered
	kp, err := nkeys.FromSeed([]byte(c.Seed))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if r, ok := st.UserByKey(pub); !ok || r.ID != "insp-1" || pub != c.NKey {
		t.Fatal("public key not registered")
	}
	// rotate: the old token stops working, the old public key is kept
	c2, err := st.Rotate("insp-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Authenticate(c.Token); err == nil {
		t.Fatal("old token still works after rotate")
	}
	if _, err := st.Authenticate(c2.Token); err != nil {
		t.Fatal(err)
	}
	r, _ := st.User("insp-1")
	if len(r.PublicKeys) != 2 || r.PublicKeys[0] != c.NKey || r.CurrentKey() != c2.NKey {
		t.Fatalf("keys after rotate: %v", r.PublicKeys)
	}
	// disable
	if err := st.SetDisabled("insp-1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Authenticate(c2.Token); events.ErrorOf(err).Code != "user_disabled" {
		t.Fatalf("disabled: %v", err)
	}
	// a second store on the same file sees everything
	st2, err := Open(path, cat)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := st2.User("insp-1"); !ok || !r.Disabled || len(r.PublicKeys) != 2 {
		t.Fatalf("reload: %+v", r)
	}
	if _, err := st.Add(events.User{ID: "insp-1", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"}); events.KindOf(err) != events.KindConflict {
		t.Fatalf("duplicate add: %v", err)
	}
}

func TestUserValidation(t *testing.T) {
	cat := catalog(t)
	st, _ := Open(filepath.Join(t.TempDir(), "u.json"), cat)
	for _, u := range []events.User{
		{ID: "", Role: events.RoleAdmin},
		{ID: "a b", Role: events.RoleAdmin},
		{ID: "x", Role: "root"},
		{ID: "x", Role: events.RoleInspector, Sectors: []string{"chem"}},                         // no jurisdiction
		{ID: "x", Role: events.RoleInspector, Sectors: []string{"coal"}, Jurisdiction: "530100"}, // unknown sector
		{ID: "x", Role: events.RoleDesk, Jurisdiction: "530100"},                                 // no sectors
		{ID: "x", Role: events.RoleRectifier},                                                    // no sites
	} {
		if _, err := st.Add(u); events.KindOf(err) != events.KindInvalid {
			t.Errorf("%+v: %v", u, err)
		}
	}
	if len(st.List()) != 0 {
		t.Fatal("invalid users were stored")
	}
}

func TestPermissionsAreAllowLists(t *testing.T) {
	cat := catalog(t)
	desk := &events.User{ID: "desk-km", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530100"}
	p := Permissions(cat, desk)
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"qingling.cmd.desk-km.>", "$SRV.>", "$JS.API.CONSUMER.CREATE.KV_hz_status.*.$KV.hz_status.chem.530000.530100.>"} {
		if !has(p.Publish.Allow, want) {
			t.Errorf("desk lacks %s", want)
		}
	}
	for _, never := range []string{"$JS.API.CONSUMER.CREATE.KV_hz_status", "$JS.API.DIRECT.GET.KV_hz_status", "$JS.API.CONSUMER.CREATE.HAZARDS.>", ">", "hz.>"} {
		if has(p.Publish.Allow, never) {
			t.Errorf("desk may publish %s", never)
		}
	}
	if !has(p.Publish.Deny, "hz.>") || !has(p.Subscribe.Allow, "_INBOX_desk-km.>") || !has(p.Subscribe.Deny, "_INBOX.>") {
		t.Errorf("desk permissions: %+v %+v", p.Publish, p.Subscribe)
	}
	if keys := StatusKeys(cat, &events.User{ID: "d", Role: events.RoleDesk, Sectors: []string{"all"}, Jurisdiction: "530181"}); len(keys) != 7 || keys[0] != "all.530000.530100.530181" {
		t.Errorf("status keys: %v", keys)
	}
	aud := Permissions(cat, &events.User{ID: "aud", Role: events.RoleAuditor})
	if !has(aud.Publish.Allow, "$JS.API.CONSUMER.CREATE.HAZARDS.>") || has(aud.Publish.Allow, "hz.>") {
		t.Errorf("auditor: %v", aud.Publish.Allow)
	}
}

// FuzzDecodeUsersFile: the users file decoder never panics, and what it accepts re-encodes
// to a file it accepts again.
func FuzzDecodeUsersFile(f *testing.F) {
	cat := catalog(f)
	f.Add([]byte(`{"version":1,"users":[]}`))
	f.Add([]byte(`{"version":1,"users":[{"id":"admin","role":"admin","token_hash":"` + strings.Repeat("a", 64) + `","public_keys":[],"created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"users":[null]}`))
	f.Add([]byte(`{"version":1,"users":[{"id":"d","role":"desk","sectors":["chem"],"jurisdiction":"530100","token_hash":"zz"}]}`))
	f.Add([]byte(`{"users":[{"id":"r","role":"rectifier","sites":["x"],"token_hash":"` + strings.Repeat("0", 64) + `","public_keys":["UABC"]}]}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"version":1,"users":[],"extra":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b, cat)
		if err != nil {
			return
		}
		again, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(again, cat); err != nil {
			t.Fatalf("re-encoded file refused: %v\n%s", err, again)
		}
	})
}
