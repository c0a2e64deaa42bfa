package evidence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/evidence"
	"qingling/handlers/httpapi"
	"qingling/handlers/internal/testserver"
)

func picture(t *testing.T, format string, seed uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := range img.Pix {
		img.Pix[i] = uint8(i) + seed
	}
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, nil)
	case "gif":
		p := image.NewPaletted(img.Rect, []color.Color{color.Black, color.White})
		err = gif.Encode(&b, p, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckLimits(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		ct   string // "" = refused
		code string
	}{
		{"png", picture(t, "png", 0), "image/png", ""},
		{"jpeg", picture(t, "jpeg", 0), "image/jpeg", ""},
		{"gif", picture(t, "gif", 0), "image/gif", ""},
		{"webp", append([]byte("RIFF\x10\x00\x00\x00WEBPVP8 "), make([]byte, 32)...), "image/webp", ""},
		{"pdf", []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"), "application/pdf", ""},
		{"mp4", append([]byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"), make([]byte, 32)...), "video/mp4", ""},
		{"html", []byte("<html><script>alert(1)</script></html>"), "", "evidence_type"},
		{"text", []byte("just some notes"), "", "evidence_type"},
		{"exe", append([]byte("MZ\x90\x00"), make([]byte, 64)...), "", "evidence_type"},
		{"empty", nil, "", "evidence_empty"},
		{"too large", append(picture(t, "png", 0), make([]byte, evidence.MaxSize)...), "", "evidence_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct, err := evidence.Check(c.data)
			if c.ct != "" {
				if err != nil || ct != c.ct {
					t.Fatalf("got %q %v, want %s", ct, err, c.ct)
				}
				return
			}
			if e := events.ErrorOf(err); err == nil || e.Code != c.code || e.Message == "" {
				t.Fatalf("got %v, want %s", err, c.code)
			}
		})
	}
}

type env struct {
	srv   *httptest.Server
	st    *evidence.Store
	store *jsstore.Store
	refs  *evidence.Refs
}

func start(t *testing.T) *env { t.Helper(); return startWith(t, nil) }

// startWith runs the evidence routes on a real in-process NATS JetStream; with auth,
// identities are on and downloads are scoped.
func startWith(t *testing.T, auth httpapi.Authenticator) *env {
	t.Helper()
	js := testserver.Start(t)
	store := js.Store
	st, err := evidence.Open(context.Background(), store.JetStream(), evidence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	refs := evidence.NewRefs(true)
	a := &app.Service{Catalog: js.Catalog, Index: js.Index(t, refs), Log: store, Evidence: st.Has}
	st.Scope = &evidence.Scope{Refs: refs, App: a, LastSeq: store.LastSeq}
	api := &httpapi.Server{App: a, Log: js.Log}
	if auth != nil {
		api.Auth = auth
	}
	api.Extra = evidence.Routes(api, st)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{srv: srv, st: st, store: store, refs: refs}
}

func (e *env) do(t *testing.T, method, path string, body []byte, actor string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if actor != "" {
		req.Header.Set("X-Qingling-Actor", actor)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func errCode(b []byte) string {
	var v struct {
		Error events.Error `json:"error"`
	}
	_ = json.Unmarshal(b, &v)
	return v.Error.Code
}

func TestUploadDuplicateDownload(t *testing.T) {
	e := start(t)
	photo := picture(t, "jpeg", 7)
	res, b := e.do(t, "PUT", "/v1/evidence?name=p1.jpg", photo, "insp-1")
	var info evidence.Info
	if res.StatusCode != 201 || json.Unmarshal(b, &info) != nil || info.SHA256 != evidence.Sum(photo) || !info.Created || info.ContentType != "image/jpeg" || info.Size != int64(len(photo)) {
		t.Fatalf("upload: %d %s", res.StatusCode, b)
	}
	// the same bytes again are stored once
	res, b = e.do(t, "PUT", "/v1/evidence?name=again.jpg", photo, "insp-2")
	var again evidence.Info
	if res.StatusCode != 200 || json.Unmarshal(b, &again) != nil || again.SHA256 != info.SHA256 || again.Created || again.Name != "p1.jpg" {
		t.Fatalf("duplicate upload: %d %s", res.StatusCode, b)
	}
	if list, err := e.st.List(context.Background()); err != nil || len(list) != 1 {
		t.Fatalf("bucket holds %d files (%v), want 1", len(list), err)
	}
	res, b = e.do(t, "GET", "/v1/evidence/"+info.SHA256, nil, "")
	if res.StatusCode != 200 || evidence.Sum(b) != info.SHA256 || res.Header.Get("Content-Type") != "image/jpeg" || res.Header.Get("ETag") != `"`+info.SHA256+`"` {
		t.Fatalf("download: %d %v, sha %s", res.StatusCode, res.Header, evidence.Sum(b))
	}
	missing := strings.Repeat("0", 64)
	if res, b := e.do(t, "GET", "/v1/evidence/"+missing, nil, ""); res.StatusCode != 404 || errCode(b) != "evidence_not_found" {
		t.Fatalf("missing file: %d %s", res.StatusCode, b)
	}
	if res, b := e.do(t, "GET", "/v1/evidence/ABC", nil, ""); res.StatusCode != 400 || errCode(b) != "invalid_sha256" {
		t.Fatalf("bad name: %d %s", res.StatusCode, b)
	}
}

func TestUploadRefused(t *testing.T) {
	e := start(t)
	for _, c := range []struct {
		name   string
		body   []byte
		actor  string
		status int
		code   string
	}{
		{"too large", append(picture(t, "png", 1), make([]byte, evidence.MaxSize)...), "insp-1", 413, "evidence_too_large"},
		{"wrong type", []byte("#!/bin/sh\nrm -rf /\n"), "insp-1", 400, "evidence_type"},
		{"html", []byte("<!DOCTYPE html><html><body>x</body></html>"), "insp-1", 400, "evidence_type"},
		{"empty", nil, "insp-1", 400, "evidence_empty"},
		{"no actor", picture(t, "png", 2), "", 401, "actor_required"},
	} {
		res, b := e.do(t, "PUT", "/v1/evidence", c.body, c.actor)
		if res.StatusCode != c.status || errCode(b) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, res.StatusCode, b, c.status, c.code)
		}
	}
	if list, _ := e.st.List(context.Background()); len(list) != 0 {
		t.Fatalf("refused uploads stored %d files", len(list))
	}
}

func TestEventMayReferenceOnlyStoredEvidence(t *testing.T) {
	e := start(t)
	photo := picture(t, "png", 3)
	report := func(sum string) (*http.Response, []byte) {
		body, _ := json.Marshal(map[string]any{"sector": "forest", "region": "530102", "site": map[string]any{"name": "西山林区坟地"},
			"grade": "general", "description": "林区坟地违规用火", "source": "inspection",
			"deadline": time.Now().AddDate(0, 0, 10).Format("2006-01-02"), "evidence": []any{map[string]any{"sha256": sum, "name": "p.png"}}})
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/hazards", bytes.NewReader(body))
		req.Header.Set("X-Qingling-Actor", "insp-1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	if res, b := report(evidence.Sum(photo)); res.StatusCode != 422 || errCode(b) != "evidence_missing" {
		t.Fatalf("reference to a file not stored: %d %s", res.StatusCode, b)
	}
	if seq, _ := e.store.LastSeq(context.Background()); seq != 0 {
		t.Fatalf("a refused report wrote seq %d", seq)
	}
	if res, b := e.do(t, "PUT", "/v1/evidence", photo, "insp-1"); res.StatusCode != 201 {
		t.Fatalf("upload: %d %s", res.StatusCode, b)
	}
	if res, b := report(evidence.Sum(photo)); res.StatusCode != 201 {
		t.Fatalf("report with stored evidence: %d %s", res.StatusCode, b)
	}
}
