package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/projections"
)

// Actors: the reporting inspector, the site's rectifier, a verifier.
var (
	inspector = events.Actor{ID: "insp-1", Role: "inspector"}
	rectifier = events.Actor{ID: "rect-1", Role: "rectifier"}
	verifier  = events.Actor{ID: "ver-1", Role: "verifier"}
)

// Bodies of well-formed commands (a general chemicals hazard in 安宁市 Anning, 530181).
const (
	reportGeneral = `{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司"},"grade":"general",` +
		`"description":"储罐区防火堤破损","source":"inspection","deadline":"2099-04-30"}`
	reportMajor = `{"sector":"chem","region":"530181","site":{"name":"安宁化工有限公司"},"grade":"major","criterion":"chem-2017-05",` +
		`"description":"一级重大危险源罐区未实现紧急切断功能","source":"inspection","deadline":"2099-04-30"}`
	planFull     = `{"responsible":"张三","measures":"修复防火堤","funds":"5万元","deadline":"2099-04-20","contingency":"应急预案已备案"}`
	bodyProgress = `{"note":"已完成一半","percent":50}`
	bodyComplete = `{"note":"整改完成"}`
	bodyClear    = `{"method":"on-site","note":"现场核查合格"}`
	bodyReopen   = `{"reason":"复查再次发现"}`
	bodyWithdraw = `{"reason":"录入错误"}`
	bodyAmend    = `{"description":"储罐区东侧防火堤破损"}`
	bodyExtend   = `{"deadline":"2099-12-31","reason":"设备采购周期长"}`
	bodyList     = `{"level":"prefecture","authority":"昆明市应急管理局","document":"昆安办〔2025〕3号","deadline":"2099-05-31"}`
	gradeToMajor = `{"grade":"major","criterion":"chem-2017-05","reason":"复核为重大隐患"}`
)

// node is one embedded NATS server with JetStream, a connection and the store.
type node struct {
	dir   string
	srv   *server.Server
	nc    *nats.Conn
	store *jsstore.Store
	once  sync.Once
}

func startNode(tb testing.TB, dir string, cfg jsstore.Config, noSync bool) *node {
	tb.Helper()
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: dir, NoSync: noSync})
	if err != nil {
		tb.Fatalf("RunServer: %v", err)
	}
	n := &node{dir: dir, srv: srv}
	tb.Cleanup(n.stop)
	if n.nc, err = jsstore.ConnectInProcess(srv); err != nil {
		tb.Fatalf("connect: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n.store, err = jsstore.Open(ctx, n.nc, cfg); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return n
}

// stop closes the connection and shuts the server down, waiting until it has.
func (n *node) stop() {
	n.once.Do(func() {
		if n.nc != nil {
			n.nc.Close()
		}
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	})
}

func (n *node) lastSeq(tb testing.TB) uint64 {
	tb.Helper()
	seq, err := n.store.LastSeq(ctxT(tb))
	if err != nil {
		tb.Fatalf("LastSeq: %v", err)
	}
	return seq
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// instance is one server's command path: its own index and runner over a shared log.
type instance struct {
	svc    *app.Service
	idx    *projections.Index
	runner *projections.Runner
	log    *spyLog
	src    *pausable
	cancel context.CancelFunc
	done   chan struct{}
}

// newInstance starts a runner feeding a fresh index from n's stream and a service on it.
// With paused, the feed delivers nothing until src.resume().
func newInstance(tb testing.TB, n *node, gate *barrier, paused bool) *instance {
	tb.Helper()
	cat, err := events.LoadCatalog()
	if err != nil {
		tb.Fatalf("LoadCatalog: %v", err)
	}
	in := &instance{idx: projections.NewIndex(cat), log: &spyLog{Log: n.store, gate: gate}, src: newPausable(n.store, paused), done: make(chan struct{})}
	in.svc = &app.Service{Catalog: cat, Index: in.idx, Log: in.log}
	in.runner = &projections.Runner{Source: in.src, Index: in.idx, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { defer close(in.done); _ = in.runner.Run(ctx) }()
	tb.Cleanup(in.stop)
	return in
}

func (in *instance) stop() {
	in.cancel()
	<-in.done
}

// caughtUp waits until the index has applied everything the stream holds now.
func (in *instance) caughtUp(tb testing.TB, n *node) {
	tb.Helper()
	want := n.lastSeq(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := in.idx.WaitApplied(ctx, want); err != nil {
		tb.Fatalf("index did not reach seq %d (at %d): %v", want, in.idx.Applied(), err)
	}
}

// exec decodes body as a client's command and executes it.
func (in *instance) exec(tb testing.TB, action, id string, actor events.Actor, body string) (app.Result, error) {
	tb.Helper()
	cmd, err := events.DecodeCommand(action, id, []byte(body))
	if err != nil {
		tb.Fatalf("DecodeCommand %s %s: %v", action, body, err)
	}
	cmd.Actor = actor
	return in.svc.Execute(ctxT(tb), cmd)
}

func (in *instance) must(tb testing.TB, action, id string, actor events.Actor, body string) app.Result {
	tb.Helper()
	res, err := in.exec(tb, action, id, actor, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", action, id, err)
	}
	return res
}

// spyLog counts appends and stale refusals, and can hold appends at a barrier.
type spyLog struct {
	app.Log
	gate    *barrier
	appends atomic.Int64
	stales  atomic.Int64
}

func (l *spyLog) Append(ctx context.Context, a jsstore.Append) (jsstore.Ack, error) {
	l.appends.Add(1)
	l.gate.wait()
	ack, err := l.Log.Append(ctx, a)
	var st *jsstore.StaleError
	if errors.As(err, &st) {
		l.stales.Add(1)
	}
	return ack, err
}

// barrier, when armed for n, holds appends until n of them have arrived, so that n servers
// are sure to have decided on the same state before any of them appends.
type barrier struct {
	mu       sync.Mutex
	need     int
	arrived  int
	release  chan struct{}
	timedOut atomic.Bool
}

func (b *barrier) arm(n int) {
	b.mu.Lock()
	b.need, b.arrived, b.release = n, 0, make(chan struct{})
	b.mu.Unlock()
}

func (b *barrier) wait() {
	if b == nil {
		return
	}
	b.mu.Lock()
	if b.need == 0 {
		b.mu.Unlock()
		return
	}
	b.arrived++
	ch := b.release
	if b.arrived == b.need {
		close(ch)
		b.need = 0
	}
	b.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		b.timedOut.Store(true)
	}
}

// pausable is a projection source whose delivery can be held back, to make one server's index
// lag behind the log.
type pausable struct {
	*jsstore.Store
	open chan struct{}
	once sync.Once
}

func newPausable(s *jsstore.Store, paused bool) *pausable {
	p := &pausable{Store: s, open: make(chan struct{})}
	if !paused {
		p.resume()
	}
	return p
}

func (p *pausable) resume() { p.once.Do(func() { close(p.open) }) }

func (p *pausable) Follow(ctx context.Context, from uint64, fn func(jsstore.Msg, uint64) error) error {
	return p.Store.Follow(ctx, from, func(m jsstore.Msg, pending uint64) error {
		select {
		case <-p.open:
		case <-ctx.Done():
			return ctx.Err()
		}
		return fn(m, pending)
	})
}

// history reads a hazard's stored events (under any subject) and checks the prevhash chain:
// the first event chains to SHA-256 of the id, each later one to SHA-256 of the stored bytes
// of the one before. All events are on one subject and carry distinct ids and command ids.
func history(tb testing.TB, n *node, id string) ([]jsstore.Msg, []*events.Event) {
	tb.Helper()
	msgs, err := n.store.History(ctxT(tb), events.AnySubject(id), 0)
	if err != nil {
		tb.Fatalf("History %s: %v", id, err)
	}
	prev := events.GenesisHash(id)
	evs := make([]*events.Event, len(msgs))
	ids, cmds := map[string]bool{}, map[string]bool{}
	for i, m := range msgs {
		e, err := events.ParseEvent(m.Data)
		if err != nil {
			tb.Fatalf("event %d of %s: %v", i, id, err)
		}
		if e.Subject != id || m.Subject != msgs[0].Subject {
			tb.Fatalf("event %d of %s: subject %s on %s, first on %s", i, id, e.Subject, m.Subject, msgs[0].Subject)
		}
		if e.PrevHash != events.HashString(prev) {
			tb.Fatalf("event %d (seq %d) of %s: prevhash %s, want %s", i, m.Seq, id, e.PrevHash, events.HashString(prev))
		}
		if m.MsgID != e.ID || ids[e.ID] || cmds[e.CommandID] {
			tb.Fatalf("event %d of %s: id %s (Msg-Id %s) or command id %s repeated", i, id, e.ID, m.MsgID, e.CommandID)
		}
		if (i == 0) != (e.Type == events.TypeReported) {
			tb.Fatalf("event %d of %s is %s", i, id, e.Type)
		}
		ids[e.ID], cmds[e.CommandID] = true, true
		prev = sha256.Sum256(m.Data)
		evs[i] = e
	}
	return msgs, evs
}

// wantCode checks err is an *events.Error of kind and code.
func wantCode(tb testing.TB, err error, kind events.Kind, code string) {
	tb.Helper()
	var e *events.Error
	if !errors.As(err, &e) {
		tb.Fatalf("err %v (%T), want %s (kind %d)", err, err, code, kind)
	}
	if e.Kind != kind || e.Code != code {
		tb.Fatalf("err %s kind %d (%s), want %s kind %d", e.Code, e.Kind, e.Message, code, kind)
	}
}

// with returns body with the fields set (JSON object merge).
func with(tb testing.TB, body string, fields map[string]any) string {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		tb.Fatalf("with: %v", err)
	}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("with: %v", err)
	}
	return string(b)
}

// waitForgotten waits until the stream's dedup window has dropped every Msg-Id stored so far:
// it stores a probe with a fresh Msg-Id and republishes it until the server no longer calls it
// a duplicate (ids expire oldest first). The probe adds two messages on a subject of its own.
func waitForgotten(tb testing.TB, n *node, within time.Duration) {
	tb.Helper()
	ctx := ctxT(tb)
	js := n.store.JetStream()
	probe, id := events.Subject("chem", "530000", "530100", "530181", events.NewID()), events.NewID()
	if _, err := js.Publish(ctx, probe, []byte(`{}`), jetstream.WithMsgID(id)); err != nil {
		tb.Fatalf("probe: %v", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(within)
	for {
		ack, err := js.Publish(ctx, probe, []byte(`{}`), jetstream.WithMsgID(id))
		if err != nil {
			tb.Fatalf("probe: %v", err)
		}
		if !ack.Duplicate {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dedup window did not pass within %v", within)
		}
		<-tick.C
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func hash(b []byte) [32]byte { return sha256.Sum256(b) }
