package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"qingling/events"
	"qingling/handlers/app"
	"qingling/handlers/httpapi"
	"qingling/projections"
)

func newHandler(t *testing.T) (*Handler, *events.Catalog) {
	t.Helper()
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cat)
	if err != nil {
		t.Fatal(err)
	}
	return h, cat
}

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// The page names its assets by content, and every name it uses resolves.
func TestPageAndAssets(t *testing.T) {
	h, _ := newHandler(t)
	w := get(t, h, "GET", "/")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP = %q", csp)
	}
	page := w.Body.String()
	refs := regexp.MustCompile(`"(/assets/[^"?]+)\?v=([0-9a-f]{12})"`).FindAllStringSubmatch(page, -1)
	if len(refs) != 3 {
		t.Fatalf("want app.js, app.css and catalog.json named by content, got %v", refs)
	}
	types := map[string]string{"/assets/app.js": "text/javascript", "/assets/app.css": "text/css", "/assets/catalog.json": "application/json"}
	for _, ref := range refs {
		a := get(t, h, "GET", ref[1]+"?v="+ref[2])
		if a.Code != 200 || !strings.HasPrefix(a.Header().Get("Content-Type"), types[ref[1]]) {
			t.Fatalf("GET %s = %d %s", ref[1], a.Code, a.Header().Get("Content-Type"))
		}
		if !strings.Contains(a.Header().Get("ETag"), ref[2]) {
			t.Errorf("%s: ETag %s does not match the page's version %s", ref[1], a.Header().Get("ETag"), ref[2])
		}
		if nm := get(t, h, "GET", ref[1], "If-None-Match", a.Header().Get("ETag")); nm.Code != http.StatusNotModified {
			t.Errorf("%s with its ETag = %d, want 304", ref[1], nm.Code)
		}
		if a.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s without nosniff", ref[1])
		}
	}
	if strings.Contains(page, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(page) || strings.Contains(page, "style=") {
		t.Error("the page has inline script or style, which its CSP refuses")
	}
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		b, _ := embedded.ReadFile("assets/" + name)
		for _, u := range regexp.MustCompile(`https?://[^\s"'<>)]+`).FindAllString(string(b), -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s refers to %s: the board must work with no internet", name, u)
			}
		}
	}
	for path, code := range map[string]int{"/assets/nope.js": 404, "/assets/": 404, "/assets/../web.go": 404} {
		if w := get(t, h, "GET", path); w.Code != code {
			t.Errorf("GET %s = %d, want %d", path, w.Code, code)
		}
	}
	if w := get(t, h, "POST", "/"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", w.Code)
	}
	if w := get(t, h, "HEAD", "/"); w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD / = %d with %d bytes", w.Code, w.Body.Len())
	}
}

// catalog.json carries the sectors with both names and the region tree.
func TestCatalogJSON(t *testing.T) {
	h, cat := newHandler(t)
	var c catalog
	if err := json.Unmarshal(h.assets["catalog.json"].body, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Sectors) != len(cat.Sectors) || c.Sectors[0].NameZh == "" || c.Sectors[0].NameEn == "" {
		t.Fatalf("sectors = %+v", c.Sectors)
	}
	seen := map[string]bool{}
	prefectures := 0
	for _, g := range c.Regions {
		if g.Parent != "" && !seen[g.Parent] {
			t.Fatalf("region %s comes before its parent %s", g.Code, g.Parent)
		}
		seen[g.Code] = true
		if g.Level == "prefecture" && g.Parent == "530000" {
			prefectures++
		}
	}
	if prefectures != 16 || len(c.Provinces) != 1 || c.Provinces[0] != "530000" {
		t.Fatalf("prefectures of Yunnan = %d, provinces %v", prefectures, c.Provinces)
	}
}

// Mounted on the API, the board answers exactly "/" and "/assets/"; every other path is still
// the API's JSON 404, and the page needs no credential even with identities on.
func TestRoutesOnAPI(t *testing.T) {
	h, cat := newHandler(t)
	api := &httpapi.Server{App: &app.Service{Catalog: cat, Index: projections.NewIndex(cat)}, Auth: noAuth{}, Sessions: &httpapi.Sessions{Key: []byte("k")}}
	api.Extra = Routes(h, nil)
	mux := api.Handler()
	if w := get(t, mux, "GET", "/"); w.Code != 200 || !strings.Contains(w.Body.String(), "清零") {
		t.Fatalf("GET / on the API = %d", w.Code)
	}
	if w := get(t, mux, "GET", "/assets/catalog.json"); w.Code != 200 {
		t.Fatalf("GET /assets/catalog.json on the API = %d", w.Code)
	}
	for _, path := range []string{"/v1/nope", "/index.html", "/v1/"} {
		w := get(t, mux, "GET", path)
		body, _ := io.ReadAll(w.Body)
		if w.Code != 404 || !strings.Contains(string(body), `"no_route"`) {
			t.Errorf("GET %s = %d %s, want the API's JSON 404", path, w.Code, body)
		}
	}
	if w := get(t, mux, "GET", "/v1/me"); w.Code != 401 {
		t.Errorf("GET /v1/me without a credential = %d, want 401", w.Code)
	}
}

type noAuth struct{}

func (noAuth) Authenticate(string) (*events.User, error) {
	return nil, events.Errorf(events.KindUnauthenticated, "invalid_token", "", "no")
}
func (noAuth) Lookup(string) (*events.User, bool) { return nil, false }
