package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"qingling/events"
	"qingling/handlers/identity"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// qinglingBinary builds cmd/qingling once per test run.
func qinglingBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qingling-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "qingling")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var runningRe = regexp.MustCompile(`running at (http://\S+)`)

// child is `qingling serve` as a separate process.
type child struct {
	cmd *exec.Cmd
	url string
}

func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := runningRe.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	select {
	case u := <-urls:
		waitFor(t, 60*time.Second, "readyz", func() bool {
			res, err := http.Get(u + "/readyz")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == 200
		})
		c := &child{cmd: cmd, url: u}
		t.Cleanup(c.kill) // one still running at the end goes before its data directory
		return c
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("serve did not start")
	}
	return nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = c.cmd.Process.Wait()
}

func postJSON(client *http.Client, url, token string, body []byte) (int, map[string]any, error) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m, nil
}

// TestCrashSafety runs `qingling serve` as a child process under concurrent load, kills it with
// SIGKILL at random moments, restarts it on the same data directory, and checks that every
// acknowledged event is in the log exactly once.
func TestCrashSafety(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 3
	}
	bin := qinglingBinary(t)
	dir := t.TempDir()
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, _ := identity.Open(users, cat)
	insp, err := st.Add(events.User{ID: "insp", Role: events.RoleInspector, Sectors: []string{"all"}, Jurisdiction: "530000"})
	if err != nil {
		t.Fatal(err)
	}
	ver, err := st.Add(events.User{ID: "ver", Role: events.RoleVerifier, Sectors: []string{"all"}, Jurisdiction: "530000"})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--data", dir, "--http", "127.0.0.1:0", "--users", users, "--rate-limit", "0"}
	rng := rand.New(rand.NewPCG(7, 11))
	var (
		mu      sync.Mutex
		acked   = map[string]string{} // report command id → hazard id
		amended = map[string]string{} // amend command id → hazard id
		sent    = map[string][]byte{} // every command id sent → body (to retry at the end)
	)
	counties := []string{"530102", "530181", "530302", "532301", "533102"}
	client := &http.Client{Timeout: 10 * time.Second}
	for k := 0; k < kills; k++ {
		c := startChild(t, bin, args...)
		if k == 0 {
			// the running server has fsync-before-ack in force
			res, err := client.Get(c.url + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			var h map[string]any
			json.NewDecoder(res.Body).Decode(&h)
			res.Body.Close()
			if h["sync_always"] != true {
				t.Fatalf("serve runs without sync_always: %v", h)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					cid := events.NewID()
					county := counties[(w+n)%len(counties)]
					body, _ := json.Marshal(map[string]any{"command_id": cid, "sector": "trade", "region": county, "site": map[string]any{"name": fmt.Sprintf("厂%d-%d-%d", k, w, n)},
						"grade": "general", "description": "粉尘清扫不及时", "source": "inspection", "deadline": "2099-12-31"})
					mu.Lock()
					sent[cid] = body
					mu.Unlock()
					code, m, err := postJSON(client, c.url+"/v1/hazards", insp.Token, body)
					if err != nil {
						return // killed
					}
					if code != 201 && code != 200 {
						t.Errorf("report: %d %v", code, m)
						return
					}
					id := m["id"].(string)
					mu.Lock()
					acked[cid] = id
					mu.Unlock()
					if n%3 == 0 { // a second event on the same hazard, through its per-subject check
						acid := events.NewID()
						ab, _ := json.Marshal(map[string]any{"command_id": acid, "description": "更正描述"})
						code, _, err := postJSON(client, c.url+"/v1/hazards/"+id+"/amend", ver.Token, ab)
						if err != nil {
							return
						}
						if code == 200 {
							mu.Lock()
							amended[acid] = id
							mu.Unlock()
						}
					}
				}
			}(w)
		}
		time.AfterFunc(time.Duration(150+rng.IntN(700))*time.Millisecond, func() { c.kill(); close(stop) })
		wg.Wait()
	}
	c := startChild(t, bin, args...)
	defer c.kill()
	// every acknowledged report and amendment is there, once
	get := func(id string) map[string]any {
		req, _ := http.NewRequest("GET", c.url+"/v1/hazards/"+id+"/history", nil)
		req.Header.Set("Authorization", "Bearer "+ver.Token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		if res.StatusCode != 200 {
			return nil
		}
		return m
	}
	lost, doubled := 0, 0
	amendsOf := map[string]int{}
	for _, id := range amended {
		amendsOf[id]++
	}
	for cid, id := range acked {
		h := get(id)
		if h == nil {
			lost++
			t.Errorf("acknowledged report %s (command %s) lost", id, cid)
			continue
		}
		evs := h["events"].([]any)
		reports, amends := 0, 0
		seenCmd := map[string]bool{}
		for _, x := range evs {
			e := x.(map[string]any)["event"].(map[string]any)
			if seenCmd[e["commandid"].(string)] {
				doubled++
			}
			seenCmd[e["commandid"].(string)] = true
			switch e["type"] {
			case events.TypeReported:
				reports++
			case events.TypeAmended:
				amends++
			}
		}
		if reports != 1 {
			doubled++
			t.Errorf("hazard %s has %d reports", id, reports)
		}
		if amends < amendsOf[id] {
			lost++
			t.Errorf("hazard %s: %d acknowledged amendments, %d stored", id, amendsOf[id], amends)
		}
	}
	// retrying everything that was ever sent appends nothing new for what landed
	retried := 0
	for cid, body := range sent {
		code, m, err := postJSON(client, c.url+"/v1/hazards", insp.Token, body)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := acked[cid]; ok && code != 200 {
			t.Errorf("retry of acknowledged %s: %d %v", cid, code, m)
		}
		retried++
	}
	// the projections equal a fresh rebuild, and verify passes
	statusOf := func(url string) string {
		req, _ := http.NewRequest("GET", url+"/v1/status?sector=trade&region=530000", nil)
		req.Header.Set("Authorization", "Bearer "+ver.Token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		rows, _ := json.Marshal(m["rows"])
		return string(rows)
	}
	before := statusOf(c.url)
	c.kill()
	if out, err := exec.Command(bin, "verify", "--data", dir).CombinedOutput(); err != nil {
		t.Fatalf("verify after %d kills: %v\n%s", kills, err, out)
	}
	if out, err := exec.Command(bin, "rebuild", "--data", dir).CombinedOutput(); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	c = startChild(t, bin, args...)
	if after := statusOf(c.url); after != before || !bytes.Contains([]byte(after), []byte(`"open"`)) {
		t.Fatalf("status after a fresh rebuild differs:\nbefore %s\nafter  %s", before, after)
	}
	t.Logf("kills %d, acknowledged reports %d, acknowledged amendments %d, lost %d, doubled %d, retried %d", kills, len(acked), len(amended), lost, doubled, retried)
	if len(acked) == 0 {
		t.Fatal("no command was acknowledged; the test proved nothing")
	}
	_ = context.Background
}
