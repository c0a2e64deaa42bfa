package evidence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/evidence"
	"qingling/projections"
)

func sumOf(c byte) string { return strings.Repeat(string(c), 64) }

const (
	hz1 = "0193f2c4-0000-7000-8000-000000000001"
	hz2 = "0193f2c4-0000-7000-8000-000000000002"
)

func TestRefsFold(t *testing.T) {
	r := evidence.NewRefs(true)
	ev := func(hz string, p any) { r.ApplyEvent(1, &events.Event{Subject: hz}, p) }
	ev(hz1, &events.Reported{Evidence: []events.Evidence{{SHA256: sumOf('a')}, {SHA256: sumOf('b')}}})
	ev(hz1, &events.Progressed{Evidence: []events.Evidence{{SHA256: sumOf('a')}}}) // again: once
	ev(hz2, &events.Cleared{Evidence: []events.Evidence{{SHA256: sumOf('a')}}})
	ev(hz2, &events.Completed{Evidence: []events.Evidence{{SHA256: sumOf('a')}}})
	ev(hz2, &events.VerifyFailed{Evidence: []events.Evidence{{SHA256: sumOf('c')}}})
	ev(hz2, &events.Amended{})                                                            // no evidence
	ev("not-a-uuid", &events.Reported{Evidence: []events.Evidence{{SHA256: sumOf('d')}}}) // ignored
	ev(hz1, &events.Reported{Evidence: []events.Evidence{{SHA256: "ABC"}}})               // ignored
	for sum, want := range map[string][]string{
		sumOf('a'): {hz1, hz2}, sumOf('b'): {hz1}, sumOf('c'): {hz2}, sumOf('d'): nil, sumOf('e'): nil, "ABC": nil,
	} {
		if got := r.Hazards(sum); !slices.Equal(got, want) {
			t.Errorf("Hazards(%s) = %v, want %v", sum[:3], got, want)
		}
	}
	if r.Len() != 3 || !r.Complete() {
		t.Fatalf("Len %d, complete %v", r.Len(), r.Complete())
	}

	// kept in the read-model snapshot: the same references come back, complete
	var buf bytes.Buffer
	if err := r.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	back := evidence.NewRefs(false)
	if err := back.ReadSnapshot(buf.Bytes()); err != nil || !back.Complete() || back.Len() != 3 {
		t.Fatalf("read back: %v, complete %v, %d files", err, back.Complete(), back.Len())
	}
	for _, sum := range []string{sumOf('a'), sumOf('b'), sumOf('c')} {
		got, want := back.Hazards(sum), r.Hazards(sum)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("read back Hazards(%s) = %v, want %v", sum[:3], got, want)
		}
	}
	for _, cut := range []int{0, 1, 20, buf.Len() - 1} {
		if err := evidence.NewRefs(false).ReadSnapshot(buf.Bytes()[:cut]); err == nil {
			t.Errorf("a snapshot part cut at %d read without error", cut)
		}
	}
	if err := evidence.NewRefs(false).WriteSnapshot(&buf); !errors.Is(err, projections.ErrPartNotReady) {
		t.Fatalf("an incomplete Refs wrote itself: %v", err)
	}
}

// follower replays msgs, or fails with err after them.
type follower struct {
	msgs []jsstore.Msg
	err  error
}

func (f follower) Follow(ctx context.Context, from uint64, fn func(jsstore.Msg, uint64) error) error {
	for _, m := range f.msgs {
		if m.Seq < from {
			continue
		}
		if err := fn(m, 0); err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	<-ctx.Done() // a follow never ends by itself
	return ctx.Err()
}

func reportBytes(t *testing.T, sum string) []byte {
	t.Helper()
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cmd := &events.Command{Action: events.ActReport, Actor: events.Actor{ID: "insp-1"}, OccurredAt: now.Add(-time.Minute),
		Payload: &events.Reported{Sector: "chem", Region: "530181", Site: events.Site{Name: "厂"}, Grade: events.GradeGeneral, Description: "d",
			Source: "inspection", Deadline: now.AddDate(0, 1, 0).Format(time.RFC3339), Evidence: []events.Evidence{{SHA256: sum}}}}
	events.ResolveIDs(cmd)
	ev, err := events.Decide(cat, nil, cmd, now, events.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestBackfill reads the references of the events up to a sequence (those a snapshot
// covers), then marks the references complete; a failed read leaves them incomplete.
func TestBackfill(t *testing.T) {
	msgs := []jsstore.Msg{{Seq: 1, Data: []byte(`{"not":"an event"}`)}, {Seq: 2, Data: reportBytes(t, sumOf('a'))},
		{Seq: 3, Data: []byte(`{"evidence": "mentioned, not an event"}`)}, {Seq: 4, Data: reportBytes(t, sumOf('b'))}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	r := evidence.NewRefs(false)
	if r.Complete() {
		t.Fatal("complete before its backfill")
	}
	wctx, wcancel := context.WithCancel(ctx)
	wcancel()
	if r.WaitComplete(wctx) == nil {
		t.Fatal("WaitComplete returned before the backfill")
	}
	if err := r.Backfill(ctx, follower{msgs: msgs}, 3); err != nil {
		t.Fatal(err)
	}
	if len(r.Hazards(sumOf('a'))) != 1 || r.Hazards(sumOf('b')) != nil || !r.Complete() || r.WaitComplete(ctx) != nil {
		t.Fatalf("after backfill to 3: a %v, b %v, complete %v", r.Hazards(sumOf('a')), r.Hazards(sumOf('b')), r.Complete())
	}

	broken := evidence.NewRefs(false)
	if err := broken.Backfill(ctx, follower{msgs: msgs[:2], err: errors.New("gone")}, 4); err == nil || broken.Complete() {
		t.Fatalf("a failed backfill: %v, complete %v", err, broken.Complete())
	}
	if err := broken.Backfill(ctx, follower{msgs: msgs}, 4); err != nil || !broken.Complete() || broken.Len() != 2 {
		t.Fatalf("the retry: %v, complete %v, %d files", err, broken.Complete(), broken.Len())
	}
}

// tokens authenticates "tok-<id>" as user id.
type tokens map[string]*events.User

func (ts tokens) Authenticate(tok string) (*events.User, error) {
	if u, ok := ts[strings.TrimPrefix(tok, "tok-")]; ok && strings.HasPrefix(tok, "tok-") {
		return u, nil
	}
	return nil, events.Errorf(events.KindUnauthenticated, "invalid_token", "Authorization", "unknown token")
}

func (ts tokens) Lookup(id string) (*events.User, bool) { u, ok := ts[id]; return u, ok }

func (e *env) as(t *testing.T, method, path, user string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return e.do(t, method, path, body, "", append([]string{"Authorization", "Bearer tok-" + user}, hdr...)...)
}

// TestDownloadScopedOverHTTP: with identities, GET /v1/evidence/{sha256} answers a file to
// its uploaders while no event references it, then to whoever may read a hazard whose events
// reference it; every other user gets the answer of a file not stored.
func TestDownloadScopedOverHTTP(t *testing.T) {
	users := tokens{
		"insp-km":     {ID: "insp-km", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		"insp-qj":     {ID: "insp-qj", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530300"},
		"desk-km":     {ID: "desk-km", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530100"},
		"desk-county": {ID: "desk-county", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530181"},
		"desk-forest": {ID: "desk-forest", Role: events.RoleDesk, Sectors: []string{"forest"}, Jurisdiction: "530100"},
		"desk-qj":     {ID: "desk-qj", Role: events.RoleDesk, Sectors: []string{"chem"}, Jurisdiction: "530300"},
		"rect-other":  {ID: "rect-other", Role: events.RoleRectifier, Sites: []string{"91530181MA6K000020"}},
	}
	e := startWith(t, users)
	photo, other := picture(t, "png", 11), picture(t, "jpeg", 12)
	sum := evidence.Sum(photo)
	if res, b := e.as(t, "PUT", "/v1/evidence?name=p.png", "insp-km", photo); res.StatusCode != 201 || strings.Contains(string(b), "insp-km") {
		t.Fatalf("upload: %d %s", res.StatusCode, b)
	}
	if res, b := e.as(t, "PUT", "/v1/evidence", "insp-qj", other); res.StatusCode != 201 {
		t.Fatalf("upload: %d %s", res.StatusCode, b)
	}
	_, missing := e.as(t, "GET", "/v1/evidence/"+sumOf('0'), "insp-km", nil)
	get := func(user, sum string, want bool) {
		t.Helper()
		res, b := e.as(t, "GET", "/v1/evidence/"+sum, user, nil)
		if want {
			if res.StatusCode != 200 || evidence.Sum(b) != sum {
				t.Fatalf("%s fetches %s: %d %s", user, sum[:8], res.StatusCode, b)
			}
			return
		}
		if res.StatusCode != 404 || errCode(b) != "evidence_not_found" || errorOf(b, sum) != errorOf(missing, sumOf('0')) {
			t.Fatalf("%s fetches %s: %d %s, want it answered as %s", user, sum[:8], res.StatusCode, b, missing)
		}
		// a revalidation is refused the same way (not 304)
		if res, _ := e.as(t, "GET", "/v1/evidence/"+sum, user, nil, "If-None-Match", `"`+sum+`"`); res.StatusCode != 404 {
			t.Fatalf("%s revalidates %s: %d", user, sum[:8], res.StatusCode)
		}
	}
	get("insp-km", sum, true)
	get("insp-qj", evidence.Sum(other), true)
	for _, u := range []string{"insp-qj", "desk-km", "desk-forest", "rect-other"} {
		get(u, sum, false)
	}
	if res, _ := e.do(t, "GET", "/v1/evidence/"+sum, nil, ""); res.StatusCode != 401 {
		t.Fatalf("anonymous fetch: %d", res.StatusCode)
	}

	body, _ := json.Marshal(map[string]any{"sector": "chem", "region": "530181", "site": map[string]any{"name": "安宁某化工有限公司"},
		"grade": "general", "description": "储罐区防火堤破损", "source": "inspection",
		"deadline": time.Now().AddDate(0, 0, 10).Format("2006-01-02"), "evidence": []any{map[string]any{"sha256": sum, "name": "p.png"}}})
	if res, b := e.as(t, "POST", "/v1/hazards", "insp-km", body, "Content-Type", "application/json"); res.StatusCode != 201 {
		t.Fatalf("report: %d %s", res.StatusCode, b)
	}
	// right after the report (the reference reaches Refs through the feed): the desks of
	// chem over 530181, the inspector who attached it; not another sector or jurisdiction
	for _, c := range []struct {
		user string
		want bool
	}{{"desk-km", true}, {"desk-county", true}, {"insp-km", true}, {"desk-forest", false}, {"desk-qj", false}, {"insp-qj", false}, {"rect-other", false}} {
		get(c.user, sum, c.want)
	}
	// HEAD is scoped as GET is
	if res, _ := e.as(t, "HEAD", "/v1/evidence/"+sum, "desk-forest", nil); res.StatusCode != 404 {
		t.Fatalf("HEAD by the forest desk: %d", res.StatusCode)
	}
}

// errorOf is an error body without its request id and with the digest it names taken out.
func errorOf(b []byte, sum string) string {
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	delete(v, "request_id")
	out, _ := json.Marshal(v)
	return strings.ReplaceAll(string(out), sum, "")
}
