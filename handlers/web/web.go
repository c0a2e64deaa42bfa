// Package web serves the zero-out board (design.md, "HTTP API": GET / and its assets): one
// page, its script and style sheet, embedded in the binary, no CDN and no build step. The
// page is public — it asks for sign-in and shows nothing without a session; every figure it
// shows comes from the API under the signed-in identity (/v1/me, /v1/status,
// /v1/status/daily, /v1/hazards, /v1/feed), which filters what that identity may read.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"qingling/events"
)

//go:embed assets
var embedded embed.FS // read-only embedded files, not mutable state

// asset is one file served under /assets/, with its validator.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves "/" (the page) and "/assets/...".
type Handler struct {
	index  asset
	assets map[string]asset // by name under /assets/
}

// New builds the handler; the catalog's sectors and regions are served as
// /assets/catalog.json (reference data — names and the region tree, no hazard data).
func New(cat *events.Catalog) (*Handler, error) {
	h := &Handler{assets: map[string]asset{}}
	err := fs.WalkDir(embedded, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := embedded.ReadFile(p)
		if err != nil {
			return err
		}
		h.assets[strings.TrimPrefix(p, "assets/")] = newAsset(b, path.Ext(p))
		return nil
	})
	if err != nil {
		return nil, err
	}
	cj, err := catalogJSON(cat)
	if err != nil {
		return nil, err
	}
	h.assets["catalog.json"] = newAsset(cj, ".json")
	page, ok := h.assets["index.html"]
	if !ok {
		return nil, fmt.Errorf("web: assets/index.html missing")
	}
	delete(h.assets, "index.html")
	// Name each asset by its content so that a new binary never runs with a cached old script.
	b := page.body
	for _, name := range []string{"app.js", "app.css", "catalog.json"} {
		a, ok := h.assets[name]
		if !ok {
			return nil, fmt.Errorf("web: assets/%s missing", name)
		}
		b = bytes.ReplaceAll(b, []byte(`"/assets/`+name+`"`), []byte(`"/assets/`+name+`?v=`+a.etag[1:13]+`"`))
	}
	h.index = newAsset(b, ".html")
	return h, nil
}

func newAsset(b []byte, ext string) asset {
	sum := sha256.Sum256(b)
	ct := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png"}[ext]
	if ct == "" {
		ct = "application/octet-stream"
	}
	return asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// catalog is what the page needs of the catalog.
type catalog struct {
	Sectors   []events.Sector `json:"sectors"`
	Provinces []string        `json:"provinces"`
	Regions   []events.Region `json:"regions"` // every region, parents before children
}

func catalogJSON(cat *events.Catalog) ([]byte, error) {
	c := catalog{Sectors: cat.Sectors, Provinces: cat.Provinces}
	var walk func(code string)
	walk = func(code string) {
		if g, ok := cat.Region(code); ok {
			c.Regions = append(c.Regions, g)
		}
		for _, ch := range cat.Children(code) {
			walk(ch)
		}
	}
	for _, p := range cat.Provinces {
		walk(p)
	}
	return json.Marshal(c)
}

// Routes mounts the page on the API's mux after next (use it as httpapi.Server.Extra, chained):
// "GET /{$}" is the page and "GET /assets/" its files, so the API's catch-all still answers
// every other path (unknown /v1/ routes stay JSON 404s).
func Routes(h *Handler, next func(*http.ServeMux)) func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		if next != nil {
			next(mux)
		}
		mux.Handle("GET /{$}", h)
		mux.Handle("GET /assets/", h)
	}
}

// The page loads only its own files and talks only to its own origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves the page at "/" and its files under "/assets/".
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var a asset
	switch {
	case r.URL.Path == "/":
		a = h.index
	case strings.HasPrefix(r.URL.Path, "/assets/"):
		var ok bool
		if a, ok = h.assets[strings.TrimPrefix(r.URL.Path, "/assets/")]; !ok {
			http.NotFound(w, r)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.URL.Path == "/" {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
