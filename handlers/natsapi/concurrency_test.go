package natsapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/handlers/natsapi"
)

// barrier lets callers through only once n of them are waiting at the same time, or fails
// them all at the deadline: served one at a time, n requests never meet.
type barrier struct {
	n        int
	deadline time.Time
	mu       sync.Mutex
	arrived  int
	met      chan struct{}
}

func newBarrier(n int, within time.Duration) *barrier {
	return &barrier{n: n, deadline: time.Now().Add(within), met: make(chan struct{})}
}

func (b *barrier) wait() error {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.met)
	}
	b.mu.Unlock()
	select {
	case <-b.met:
		return nil
	case <-time.After(time.Until(b.deadline)):
		b.mu.Lock()
		defer b.mu.Unlock()
		return fmt.Errorf("%d requests never were in flight at once (%d arrived by the deadline)", b.n, b.arrived)
	}
}

// hookUsers is a users store whose every lookup (once per request, commands included) first
// calls hook.
type hookUsers struct {
	users
	hook func()
}

func (u hookUsers) Lookup(id string) (*events.User, bool) {
	u.hook()
	return u.users.Lookup(id)
}

var inspector = users{"insp-km": {ID: "insp-km", Role: events.RoleInspector, Sectors: []string{"chem"}, Jurisdiction: "530100"}}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// restart replaces e's service by one with cfg (App and Log filled in).
func (e *env) restart(t *testing.T, cfg natsapi.Config) {
	t.Helper()
	_ = e.svc.Stop()
	cfg.App, cfg.Log = e.app, quiet()
	svc, err := natsapi.Start(e.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	e.svc = svc
}

// send runs n requests at once and collects their replies.
func (e *env) send(t *testing.T, n int, mk func(i int) *nats.Msg) []*nats.Msg {
	t.Helper()
	out := make([]*nats.Msg, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = e.nc.RequestMsg(mk(i), 20*time.Second) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

func reportMsg(t *testing.T) func(int) *nats.Msg {
	body, err := json.Marshal(majorReport(time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	return func(int) *nats.Msg {
		return &nats.Msg{Subject: natsapi.Subject("insp-km", "report"), Data: body, Header: nats.Header{}}
	}
}

// TestCommandsServedConcurrently: n reports must all be inside the service at the same
// moment (the users lookup of each waits for the other n-1), so that they can meet in the
// store's group commit; served one message at a time, the first would wait alone.
func TestCommandsServedConcurrently(t *testing.T) {
	e := start(t)
	const n = 16
	b := newBarrier(n, 10*time.Second)
	var failed atomic.Value
	e.restart(t, natsapi.Config{Users: hookUsers{inspector, func() {
		if err := b.wait(); err != nil {
			failed.Store(err)
		}
	}}})
	ids := map[string]bool{}
	for _, r := range e.send(t, n, reportMsg(t)) {
		var v map[string]any
		if r.Header.Get(natsapi.HeaderStatus) != "201" || json.Unmarshal(r.Data, &v) != nil {
			t.Fatalf("report: %v %s", r.Header, r.Data)
		}
		ids[v["id"].(string)] = true
	}
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("%d hazards from %d reports", len(ids), n)
	}
}

// TestQueriesServedConcurrently is the same for a query (the status endpoint's function).
func TestQueriesServedConcurrently(t *testing.T) {
	e := start(t)
	const n = 32
	b := newBarrier(n, 10*time.Second)
	e.restart(t, natsapi.Config{Status: func(context.Context, *events.User, url.Values) (any, error) {
		if err := b.wait(); err != nil {
			return nil, events.Errorf(events.KindUnavailable, "barrier", "", "%v", err)
		}
		return map[string]any{"rows": []any{}}, nil
	}})
	for _, r := range e.send(t, n, func(int) *nats.Msg { return nats.NewMsg(natsapi.Subject("desk-1", "status")) }) {
		if r.Header.Get(natsapi.HeaderStatus) != "200" {
			t.Fatalf("status: %v %s", r.Header, r.Data)
		}
	}
}

// TestInFlightBounded: with MaxInFlight 2, a third request waits for a slot (it is neither
// refused nor dropped) and every request is answered once slots free up.
func TestInFlightBounded(t *testing.T) {
	e := start(t)
	const n = 6
	var cur, peak atomic.Int32
	release := make(chan struct{})
	e.restart(t, natsapi.Config{MaxInFlight: 2, Users: hookUsers{inspector, func() {
		c := cur.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		select { // bounded, so that a failing run ends
		case <-release:
		case <-time.After(20 * time.Second):
		}
		cur.Add(-1)
	}}})
	done := make(chan []*nats.Msg)
	go func() { done <- e.send(t, n, reportMsg(t)) }()
	waitUntil(t, "two requests in flight", func() bool { return cur.Load() == 2 })
	for range n {
		select {
		case release <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting request never got a slot")
		}
	}
	for _, r := range <-done {
		if r.Header.Get(natsapi.HeaderStatus) != "201" {
			t.Fatalf("report: %v %s", r.Header, r.Data)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Fatalf("%d requests in flight at once, want at most (and at some point) 2", p)
	}
}

// TestStopWaitsForRequestsInFlight: Stop returns only once a request in flight has been
// answered, and that request runs to its end (its context is not cancelled under it).
func TestStopWaitsForRequestsInFlight(t *testing.T) {
	e := start(t)
	entered, release := make(chan struct{}), make(chan struct{})
	e.restart(t, natsapi.Config{Status: func(ctx context.Context, _ *events.User, _ url.Values) (any, error) {
		close(entered)
		select {
		case <-release:
			return map[string]any{"rows": []any{}}, nil
		case <-ctx.Done():
			return nil, events.Errorf(events.KindUnavailable, "cancelled", "", "cancelled while in flight")
		}
	}})
	replied := make(chan *nats.Msg, 1)
	go func() {
		r, err := e.nc.Request(natsapi.Subject("desk-1", "status"), nil, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		replied <- r
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- e.svc.Stop() }()
	waitUntil(t, "the endpoints unsubscribed", e.svc.Service().Stopped)
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if r := <-replied; r == nil || r.Header.Get(natsapi.HeaderStatus) != "200" {
		t.Fatalf("the request in flight: %v", r)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the last request was answered")
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
