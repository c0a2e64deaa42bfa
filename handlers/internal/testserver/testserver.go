// Package testserver starts a real in-process NATS server with JetStream and the event store
// on it, for the tests of the handlers packages (Go cannot share helpers between _test files
// of different packages). Only tests import it.
package testserver

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections"
)

// JetStream is one embedded server in the test's temporary directory, a client connected in
// process and the opened store; all of it is closed when the test ends.
type JetStream struct {
	Server  *server.Server
	Conn    *nats.Conn
	Store   *jsstore.Store
	Catalog *events.Catalog
	Log     *slog.Logger // discards; for the services under test
}

// Start runs the server (fsync relaxed), connects and opens the store.
func Start(t testing.TB) *JetStream {
	t.Helper()
	ns, err := jsstore.RunServer(jsstore.ServerConfig{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := jsstore.ConnectInProcess(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jsstore.Open(ctx, nc, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return &JetStream{Server: ns, Conn: nc, Store: store, Catalog: cat, Log: slog.New(slog.DiscardHandler)}
}

// Index returns a fresh index that a projections.Runner feeds, with ps, from the store's log
// until the test ends (the runner is stopped and waited for before the server shuts down).
func (j *JetStream) Index(t testing.TB, ps ...projections.Projection) *projections.Index {
	t.Helper()
	idx := projections.NewIndex(j.Catalog)
	run := &projections.Runner{Source: j.Store, Index: idx, Log: j.Log, Projections: ps}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return idx
}
