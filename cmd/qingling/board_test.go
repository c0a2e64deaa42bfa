package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"
)

// The board (handlers/web) in Debian's headless Chromium against a demo server: sign in with
// a token, read a prefecture's tile and compare it with /v1/status, clear a hazard through the
// API and see the tile change without a reload, open a hazard's history, and sign in as one
// sector's desk and see no other sector. Screenshots go to $QINGLING_SCREENSHOT_DIR, else the
// repository's screenshots/ (gitignored).
func TestBoard(t *testing.T) {
	chrome := boardChromium(t)
	dir := t.TempDir()
	tokens := map[string]string{}
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Demo: true, DemoSize: 300, NoSync: true,
		Users: filepath.Join(dir, "users.json"), DemoTokens: tokens, Log: quietLog(), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	waitFor(t, 10*time.Second, "ready", m.Runner.Ready)
	base := m.URL()
	for _, u := range []string{"demo-desk", "demo-desk-forest", "demo-verifier"} {
		if tokens[u] == "" {
			t.Fatalf("no demo token for %s", u)
		}
	}
	desk, forest, verifier := tokens["demo-desk"], tokens["demo-desk-forest"], tokens["demo-verifier"]

	// The page is public; without a session it shows the sign-in form and nothing else.
	if r := boardGet(t, base+"/", ""); r.Code != 200 || !strings.Contains(string(r.Raw), "signin-form") {
		t.Fatalf("GET / without a credential = %d", r.Code)
	}
	if r := boardGet(t, base+"/v1/nope", desk); r.Code != 404 || !strings.Contains(string(r.Raw), `"no_route"`) {
		t.Fatalf("an unknown /v1/ route = %d %s, want the API's JSON 404", r.Code, r.Raw)
	}

	// The browser reaches the server through a TCP relay that the test can cut, to see the
	// page lose its feed and get it back.
	relay := boardRelay(t, m.Listener.Addr().String())
	ctx, shots := boardBrowser(t, chrome)
	console := boardWatchConsole(ctx)
	boardDo(t, ctx, "load the page", chromedp.Navigate(relay.url+"/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if n := boardEval[int](t, ctx, `document.querySelectorAll('g.tile, #tabs [role=tab], #overdue tbody tr').length`); n != 0 {
		t.Fatalf("%d tiles/tabs/rows shown before sign-in", n)
	}
	if vis := boardEval[bool](t, ctx, `!document.getElementById('board').hidden`); vis {
		t.Fatal("the board is visible before sign-in")
	}

	// Pick the prefecture: 530100 昆明市 when it has a hazard awaiting verification that
	// demo-verifier may clear, else the first prefecture that has one.
	hz, pref := boardClearable(t, base, verifier, "", "530100")
	t.Logf("prefecture %s; will clear hazard %s (%s, %s)", pref, hz["id"], hz["grade"], hz["region"])

	boardSignIn(t, ctx, desk)
	tile := fmt.Sprintf(`g.tile[data-region="%s"]`, pref)
	boardWait(t, ctx, 10*time.Second, "the prefecture tiles", fmt.Sprintf(`(document.querySelectorAll('g.tile').length === 16 && document.querySelector('%s [data-count="open"]').textContent !== '–')`, tile))
	if tabs := boardEval[[]string](t, ctx, `[...document.querySelectorAll('#tabs [role=tab]')].map(b => b.dataset.sector)`); !slices.Equal(tabs, []string{"all", "mine", "chem", "fireworks", "trade", "forest", "gas"}) {
		t.Fatalf("demo-desk's tabs = %v", tabs)
	}
	boardWait(t, ctx, 5*time.Second, "the live indicator", `document.getElementById('live').dataset.state === 'live'`)

	// The tile's numbers are /v1/status's.
	want := boardStatusRow(t, base, desk, "all", "530000", pref)
	tileCounts := func() map[string]int {
		return boardEval[map[string]int](t, ctx, fmt.Sprintf(`Object.fromEntries([...document.querySelectorAll('%s [data-count]')].map(e => [e.dataset.count, Number(e.textContent)]))`, tile))
	}
	shown := tileCounts()
	for _, k := range []string{"open", "open_major", "overdue", "awaiting_verification"} {
		if shown[k] != want[k] {
			t.Errorf("tile %s %s = %d, /v1/status says %d", pref, k, shown[k], want[k])
		}
	}
	t.Logf("tile %s: %v (matches /v1/status)", pref, shown)
	province := boardStatusRow(t, base, desk, "all", "530000", "530000")
	for _, k := range []string{"open_major", "overdue", "awaiting_verification", "listed"} {
		if got := boardEval[string](t, ctx, fmt.Sprintf(`document.querySelector('[data-value="%s"]').textContent`, k)); got != fmt.Sprint(province[k]) {
			t.Errorf("headline %s = %s, /v1/status says %d", k, got, province[k])
		}
	}
	shots("board.png", false)
	shots("board-full.png", true)

	// Clear the hazard through the API; the tile follows from the feed, without a reload.
	boardDo(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
	id := hz["id"].(string)
	r := boardCall(t, "POST", base+"/v1/hazards/"+id+"/clear", verifier, map[string]any{"method": "on-site", "note": "浏览器测试 browser test"}, "Idempotency-Key", uuid.NewString())
	if r.Code != 200 {
		t.Fatalf("clear %s = %d %s", id, r.Code, r.Raw)
	}
	cleared := time.Now()
	cond := fmt.Sprintf(`(() => { const c = k => Number(document.querySelector('%s [data-count="' + k + '"]').textContent);
		return c('awaiting_verification') === %d && c('open') === %d; })()`, tile, shown["awaiting_verification"]-1, shown["open"]-1)
	boardWait(t, ctx, 2*time.Second, "the tile to show the clearance within 2 s", cond)
	took := time.Since(cleared)
	t.Logf("the page showed the clearance %v after the API answered", took.Round(time.Millisecond))
	if !boardEval[bool](t, ctx, fmt.Sprintf(`document.querySelector('%s').classList.contains('flash')`, tile)) {
		t.Error("the changed tile is not marked as just changed")
	}
	shots("board-live.png", false)
	if !boardEval[bool](t, ctx, `window.__sameDocument === true`) {
		t.Fatal("the page reloaded")
	}
	after := boardStatusRow(t, base, desk, "all", "530000", pref)
	boardWait(t, ctx, 3*time.Second, "the headline to follow", fmt.Sprintf(`document.querySelector('[data-value="awaiting_verification"]').textContent === '%d'`,
		boardStatusRow(t, base, desk, "all", "530000", "530000")["awaiting_verification"]))
	if after["awaiting_verification"] != shown["awaiting_verification"]-1 {
		t.Errorf("/v1/status after the clearance: awaiting %d, want %d", after["awaiting_verification"], shown["awaiting_verification"]-1)
	}

	// The overdue list opens a hazard's state, evidence and history.
	boardWait(t, ctx, 5*time.Second, "the overdue list", `document.querySelectorAll('#overdue tbody button.open').length > 0`)
	boardDo(t, ctx, "open a hazard", chromedp.Click(chromedp.CSS("#overdue tbody button.open")))
	boardWait(t, ctx, 5*time.Second, "its history", `document.getElementById('hazard').open && document.querySelectorAll('#hz-body .timeline li').length > 0`)
	if txt := boardEval[string](t, ctx, `document.querySelector('#hz-body .timeline li').textContent`); !strings.Contains(txt, "发现登记") || !strings.Contains(txt, "reported") {
		t.Errorf("first history entry = %q", txt)
	}
	if txt := boardEval[string](t, ctx, `document.getElementById('hz-body').textContent`); strings.Contains(txt, "[object") || !strings.Contains(txt, "编号") || !strings.Contains(txt, "Deadline") {
		t.Errorf("hazard dialog = %q", txt)
	}
	shots("hazard.png", false)
	boardDo(t, ctx, "close the dialog", chromedp.Click(chromedp.CSS("#hz-close")))
	boardWait(t, ctx, 2*time.Second, "the dialog to close", `!document.getElementById('hazard').open`)

	// Keyboard: the arrow keys move between sector tabs; Tab from the tabs reaches the tiles;
	// Enter on a prefecture opens its counties and puts the focus on them.
	boardDo(t, ctx, "arrow to the next tab", chromedp.Focus(chromedp.CSS("#tab-all")), chromedp.KeyEvent(kb.ArrowRight))
	boardWait(t, ctx, 2*time.Second, "the mine tab", `document.activeElement.id === 'tab-mine' && document.activeElement.getAttribute('aria-selected') === 'true'`)
	boardDo(t, ctx, "arrow back", chromedp.KeyEvent(kb.ArrowLeft))
	boardWait(t, ctx, 5*time.Second, "the all tab's tiles", fmt.Sprintf(`document.activeElement.id === 'tab-all' && document.querySelector('%s [data-count="open"]').textContent === '%d'`, tile, after["open"]))
	boardDo(t, ctx, "tab to the tiles", chromedp.KeyEvent(kb.Tab))
	if r := boardEval[string](t, ctx, `(document.activeElement.closest && document.activeElement.closest('g.tile') || {dataset: {}}).dataset.region || ''`); r == "" || m.Catalog.Children(r) == nil {
		t.Errorf("Tab from the sector tabs reached %q, not a prefecture tile", boardEval[string](t, ctx, `document.activeElement.outerHTML.slice(0, 80)`))
	}
	boardDo(t, ctx, "open the prefecture with Enter", chromedp.Focus(chromedp.CSS(tile)), chromedp.KeyEvent(kb.Enter))
	counties := len(m.Catalog.Children(pref))
	boardWait(t, ctx, 5*time.Second, "the counties", fmt.Sprintf(`(() => { const t = [...document.querySelectorAll('g.tile')];
		return t.length === %d && t.every(g => g.dataset.region.startsWith('%s') && g.dataset.region !== '%s'); })()`, counties, pref[:4], pref))
	if r := boardEval[string](t, ctx, `(document.activeElement.closest && document.activeElement.closest('g.tile') || {dataset: {}}).dataset.region || ''`); !strings.HasPrefix(r, pref[:4]) || r == pref {
		t.Errorf("after Enter the focus is on %q, not on a county tile", r)
	}
	county := hz["region"].(string)
	wantC := boardStatusRow(t, base, desk, "all", pref, county)
	if got := boardEval[int](t, ctx, fmt.Sprintf(`Number(document.querySelector('g.tile[data-region="%s"] [data-count="open"]').textContent)`, county)); got != wantC["open"] {
		t.Errorf("county %s open = %d, /v1/status says %d", county, got, wantC["open"])
	}
	shots("counties.png", false)

	// On a phone-sized screen the board is still readable (compact tiles, no horizontal scroll).
	boardDo(t, ctx, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Click(chromedp.CSS("#crumbs button")))
	boardWait(t, ctx, 5*time.Second, "the compact map", `document.querySelectorAll('g.tile').length === 16 && document.querySelector('#map svg').viewBox.baseVal.width < 400`)
	boardDo(t, ctx, "scroll to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	if over := boardEval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
		t.Error("the page scrolls sideways on a phone")
	}
	shots("board-phone.png", false)
	boardDo(t, ctx, "laptop", chromedp.EmulateViewport(1366, 900))

	// Sign out: nothing of the board stays.
	boardDo(t, ctx, "sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if n := boardEval[int](t, ctx, `document.querySelectorAll('g.tile, #tabs [role=tab], #overdue tbody tr').length`); n != 0 {
		t.Fatalf("%d tiles/tabs/rows left after sign-out", n)
	}

	// The forest desk sees only forest: one tab, forest rows, no other sector anywhere.
	boardSignIn(t, ctx, forest)
	boardWait(t, ctx, 10*time.Second, "the forest board", fmt.Sprintf(`document.querySelectorAll('g.tile').length === 16 && document.querySelector('%s [data-count="open"]').textContent !== '–'`, tile))
	if tabs := boardEval[[]string](t, ctx, `[...document.querySelectorAll('#tabs [role=tab]')].map(b => b.dataset.sector)`); !slices.Equal(tabs, []string{"forest"}) {
		t.Fatalf("demo-desk-forest's tabs = %v, want only forest", tabs)
	}
	forestRows := boardStatusRows(t, base, forest, "forest", "530000")
	for _, g := range boardEval[[]map[string]any](t, ctx, `[...document.querySelectorAll('g.tile')].map(g => ({region: g.dataset.region, open: Number(g.querySelector('[data-count="open"]').textContent), open_major: Number(g.querySelector('[data-count="open_major"]').textContent)}))`) {
		w := forestRows[g["region"].(string)]
		if w == nil || int(g["open"].(float64)) != w["open"] || int(g["open_major"].(float64)) != w["open_major"] {
			t.Errorf("forest tile %v, /v1/status says %v", g, w)
		}
	}
	text := boardEval[string](t, ctx, `document.body.innerText`)
	for _, s := range m.Catalog.Sectors {
		if s.Code != "forest" && (strings.Contains(text, s.NameZh) || strings.Contains(text, s.NameEn)) {
			t.Errorf("the forest desk's page mentions %s %s", s.NameZh, s.NameEn)
		}
	}
	if strings.Contains(text, "全部行业") || strings.Contains(text, "All sectors") {
		t.Error("the forest desk's page offers all sectors")
	}
	boardWait(t, ctx, 5*time.Second, "the forest overdue list", `document.getElementById('overdue-count').textContent !== ''`)
	if bad := boardEval[[]string](t, ctx, `[...document.querySelectorAll('#overdue tbody tr td:nth-child(3)')].map(td => td.textContent).filter(s => !s.includes('森林草原火灾'))`); len(bad) > 0 {
		t.Errorf("the forest desk's overdue list shows other sectors: %v", bad)
	}
	if r := boardGet(t, base+"/v1/status?sector=all&region=530000", forest); r.Code == 200 && len(r.Body["rows"].([]any)) > 0 {
		t.Errorf("/v1/status?sector=all gives the forest desk %d rows", len(r.Body["rows"].([]any)))
	}
	shots("board-forest.png", false)

	// The feed drops: the indicator says 重连中 reconnecting; it comes back by itself, and the
	// numbers follow commands again without a reload.
	relay.cut(true)
	boardWait(t, ctx, 5*time.Second, "the reconnecting indicator", `document.getElementById('live').dataset.state === 'reconnecting' && document.getElementById('live-text').textContent.includes('重连中')`)
	shots("reconnecting.png", false)
	relay.cut(false)
	boardWait(t, ctx, 10*time.Second, "the live indicator again", `document.getElementById('live').dataset.state === 'live' && document.getElementById('live-text').textContent.includes('实时')`)
	fh, fpref := boardClearable(t, base, verifier, "forest", "")
	ftile := fmt.Sprintf(`g.tile[data-region="%s"]`, fpref)
	before := boardStatusRow(t, base, forest, "forest", "530000", fpref)
	boardWait(t, ctx, 5*time.Second, "the forest tile", fmt.Sprintf(`document.querySelector('%s [data-count="awaiting_verification"]').textContent === '%d'`, ftile, before["awaiting_verification"]))
	if r := boardCall(t, "POST", base+"/v1/hazards/"+fh["id"].(string)+"/clear", verifier, map[string]any{"method": "on-site", "note": "重连后 after reconnecting"}, "Idempotency-Key", uuid.NewString()); r.Code != 200 {
		t.Fatalf("clear %s = %d %s", fh["id"], r.Code, r.Raw)
	}
	cleared = time.Now()
	boardWait(t, ctx, 2*time.Second, "the forest tile to show the clearance after the reconnection", fmt.Sprintf(`document.querySelector('%s [data-count="awaiting_verification"]').textContent === '%d'`, ftile, before["awaiting_verification"]-1))
	t.Logf("after reconnecting, the page showed a clearance %v after the API answered", time.Since(cleared).Round(time.Millisecond))
	if !boardEval[bool](t, ctx, `window.__sameDocument === true`) {
		t.Fatal("the page reloaded")
	}
	console.check(t)
}

// relay forwards TCP connections to a backend; cut closes every connection and refuses new
// ones until it is lifted.
type relay struct {
	url     string
	backend string
	ln      net.Listener
	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]bool
}

func boardRelay(t *testing.T, backend string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{url: "http://" + ln.Addr().String(), backend: backend, ln: ln, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); r.cut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *relay) track(c net.Conn, on bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on && r.down {
		return false
	}
	if on {
		r.conns[c] = true
	} else {
		delete(r.conns, c)
	}
	return true
}

func (r *relay) serve(c net.Conn) {
	defer c.Close()
	if !r.track(c, true) {
		return
	}
	defer r.track(c, false)
	b, err := net.Dial("tcp", r.backend)
	if err != nil {
		return
	}
	defer b.Close()
	if !r.track(b, true) {
		return
	}
	defer r.track(b, false)
	go func() { _, _ = io.Copy(b, c); b.Close() }()
	_, _ = io.Copy(c, b)
}

func (r *relay) cut(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
	if down {
		for c := range r.conns {
			c.Close()
		}
	}
}

// chromiumPath finds Debian's chromium; without it the test fails in CI and skips elsewhere.
func boardChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium); the board's browser test cannot run")
	}
	t.Skip("chromium is not installed; skipping the browser test (it fails instead when CI=true)")
	return ""
}

// boardBrowser starts headless Chromium with a fresh profile and returns its tab's context and
// a function that saves a screenshot (PNG) of the viewport or the full page under a name.
func boardBrowser(t *testing.T, chrome string) (context.Context, func(name string, full bool)) {
	t.Helper()
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	// The first action starts the browser, which lives as long as the context of that call: no timeout here.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dir := os.Getenv("QINGLING_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "screenshots") // the repository's, gitignored
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return ctx, func(name string, full bool) {
		t.Helper()
		shot := chromedp.CaptureScreenshot() // the viewport, as the user sees it
		if full {
			shot = chromedp.FullScreenshot(100) // the whole page, PNG
		}
		png, err := chromedp.Run(ctx, shot)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(p)
		t.Logf("screenshot: %s (%d bytes)", abs, len(png))
	}
}

func boardSignIn(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	boardDo(t, ctx, "sign in", chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#signin-button")), chromedp.WaitVisible(chromedp.CSS("#board")))
}

func boardDo(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func boardEval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS polls a JavaScript condition in the page until it holds or d passes.
func boardWait(t *testing.T, ctx context.Context, d time.Duration, what, js string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, time.Until(deadline)+time.Second)
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool](`(() => { try { return !!(`+js+`); } catch (e) { return false; } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state := boardEval[string](t, ctx, `(document.getElementById('notice') || {}).textContent + ' | live=' + (document.getElementById('live') || {dataset: {}}).dataset.state +
				' | focus=' + (document.activeElement && document.activeElement.id) + ' | tab=' + ((document.querySelector('[role=tab][aria-selected=true]') || {}).id)`)
			t.Fatalf("timed out after %v waiting for %s (err %v; page: %s)", d, what, err, state)
		}
		<-tick.C
	}
}

// consoleLog collects the page's uncaught exceptions and CSP refusals.
type boardConsole struct {
	mu   sync.Mutex
	msgs []string
}

func boardWatchConsole(ctx context.Context) *boardConsole {
	l := &boardConsole{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				l.mu.Lock()
				l.msgs = append(l.msgs, m.String())
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *boardConsole) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		t.Errorf("page console: %s", m)
	}
}

// boardClearable finds a hazard of sector ("" = any) awaiting verification that demo-verifier
// may clear, in prefecture prefer if it has one.
func boardClearable(t *testing.T, base, verifier, sector, prefer string) (map[string]any, string) {
	t.Helper()
	r := boardGet(t, base+"/v1/hazards?status=awaiting_verification&region=530000&limit=500&sector="+sector, verifier)
	if r.Code != 200 {
		t.Fatalf("list awaiting = %d %s", r.Code, r.Raw)
	}
	items, _ := r.Body["items"].([]any)
	var pick map[string]any
	for _, it := range items {
		h := it.(map[string]any)
		if h["completed_by"] == "demo-verifier" || h["reported_by"] == "demo-verifier" {
			continue
		}
		if h["prefecture"] == prefer {
			return h, prefer
		}
		if pick == nil {
			pick = h
		}
	}
	if pick == nil {
		t.Fatal("the demo has no hazard awaiting verification")
	}
	return pick, pick["prefecture"].(string)
}

// statusRows reads /v1/status for sector × region as user, by region code.
func boardStatusRows(t *testing.T, base, token, sector, region string) map[string]map[string]int {
	t.Helper()
	r := boardGet(t, base+"/v1/status?"+url.Values{"sector": {sector}, "region": {region}}.Encode(), token)
	if r.Code != 200 {
		t.Fatalf("/v1/status?sector=%s&region=%s = %d %s", sector, region, r.Code, r.Raw)
	}
	var body struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int{}
	for _, row := range body.Rows {
		if row["sector"] != sector {
			continue
		}
		c := map[string]int{}
		for k, v := range row {
			if f, ok := v.(float64); ok {
				c[k] = int(f)
			}
		}
		out[row["region"].(string)] = c
	}
	return out
}

func boardStatusRow(t *testing.T, base, token, sector, region, row string) map[string]int {
	t.Helper()
	rows := boardStatusRows(t, base, token, sector, region)
	if rows[row] == nil {
		t.Fatalf("/v1/status?sector=%s&region=%s has no row %s", sector, region, row)
	}
	return rows[row]
}

func boardGet(t *testing.T, u, token string) apiResp { return boardCall(t, "GET", u, token, nil) }

func boardCall(t *testing.T, method, u, token string, body any, hdr ...string) apiResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := apiResp{Code: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}
