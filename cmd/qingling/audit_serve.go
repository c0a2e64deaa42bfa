package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/handlers/app"
	"qingling/handlers/auditlog"
	"qingling/handlers/export"
	"qingling/handlers/httpapi"
)

// AuditConfig: command signatures and checkpoints.
type AuditConfig struct {
	// RequireSignatures lists the roles whose commands must be signed (needs identities).
	RequireSignatures []string
	// CheckpointEvery events (default 1000) or CheckpointInterval (default 5 min), whichever
	// comes first, the server signs a checkpoint into HZ_CHECKPOINTS.
	CheckpointEvery    int
	CheckpointInterval time.Duration
}

// auditWiring is what serve runs for auditors: the recorder of this server's acks, its
// checkpoints, and the export downloads.
type auditWiring struct {
	Recorder    *auditlog.Recorder
	Checkpoints *auditlog.Checkpointer
	ServerKey   string // the public key this server signs checkpoints with
}

// openAudit puts the recorder under the command path, checks signatures when identities are
// on, resumes this server's checkpoint chain and runs it until runCtx ends (then it writes a
// final checkpoint). It runs before the demo or any command.
func (m *Main) openAudit(ctx, runCtx context.Context) error {
	cfg := &m.Config
	if len(cfg.RequireSignatures) > 0 && m.Users == nil {
		return errors.New("--require-signatures needs identities (a users file)")
	}
	if m.Users != nil {
		users := m.Users
		m.App.Verifier = &app.KeyVerifier{Require: cfg.RequireSignatures, CurrentKey: func(u string) (string, bool) {
			r, ok := users.User(u)
			return r.CurrentKey(), ok && !r.Disabled && r.CurrentKey() != ""
		}}
	}
	kp, err := serverKey(cfg.DataDir)
	if err != nil {
		return err
	}
	pub, _ := kp.PublicKey()
	every := cfg.CheckpointEvery
	if every <= 0 {
		every = 1000
	}
	m.ServerKey = pub
	m.Recorder = auditlog.NewRecorder(m.Store, every)
	m.App.Log = m.Recorder
	m.Checkpoints = &auditlog.Checkpointer{JS: m.Store.JetStream(), Recorder: m.Recorder, Instance: pub, Sign: kp.Sign,
		Stream: m.Store.StreamName(), Every: every, Interval: cfg.CheckpointInterval, Replicas: cfg.Replicas, Clock: cfg.Clock, Log: cfg.Log}
	if err := m.Checkpoints.Start(ctx); err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.Checkpoints.Run(runCtx) }()
	cfg.Log.Info("checkpoints signed by this server", "key", pub, "every", every)
	return nil
}

// auditRoutes mounts /v1/export/ledger and /v1/export/quarterly after prev's routes.
func (m *Main) auditRoutes(api *httpapi.Server, prev func(*http.ServeMux)) func(*http.ServeMux) {
	h := &export.Handler{API: api, JS: m.Store.JetStream(), Stream: m.Store.StreamName(), Catalog: m.Catalog, Clock: m.Config.Clock}
	return func(mux *http.ServeMux) {
		if prev != nil {
			prev(mux)
		}
		h.Mount(mux)
	}
}

// serverKey is this server's checkpoint signing key, <data>/server.nk (created on first start,
// readable by the server only). Its public key is in every checkpoint it signs.
func serverKey(dir string) (nkeys.KeyPair, error) {
	path := filepath.Join(dir, "server.nk")
	if b, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return kp, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	kp, err := nkeys.CreateServer()
	if err != nil {
		return nil, err
	}
	seed, _ := kp.Seed()
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		return nil, err
	}
	return kp, nil
}

// lockData takes the data directory's lock, held by a running server (status.go), so that
// the audit verbs never open a store a server is using.
func lockData(dir string) (func(), error) {
	release, err := lockReadModel(filepath.Join(dir, "readmodel.lock"))
	if err != nil {
		return nil, fmt.Errorf("%w — stop it, or read the log with --nats", err)
	}
	return release, nil
}

// register adds serve's audit flags; the function returned checks them after parsing.
func (c *AuditConfig) register(fs *flag.FlagSet) func() error {
	roles := fs.String("require-signatures", envOr("QINGLING_REQUIRE_SIGNATURES", ""), "roles whose commands must be signed with the user's nkey, e.g. inspector,verifier")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", 1000, "sign a checkpoint every this many events appended here")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", 5*time.Minute, "… or at least this often while the log moves")
	return func() error {
		var err error
		c.RequireSignatures, err = app.ParseRoles(*roles)
		return err
	}
}
