package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/demo"
	"qingling/handlers/evidence"
	"qingling/handlers/httpapi"
	"qingling/handlers/identity"
	"qingling/handlers/natsapi"
	"qingling/handlers/web"
	"qingling/projections"
)

// Config of a running Qingling.
type Config struct {
	DataDir    string
	HTTPAddr   string
	NATSListen string // let NATS clients in on this address ("" = in-process only)
	NATSURL    string // use an existing NATS server instead of the embedded one
	NoSync     bool
	Replicas   int
	Demo       bool
	DemoSize   int
	Duplicates time.Duration
	Clock      func() time.Time
	Log        *slog.Logger
	// Users is the users file; "" runs without identities (the actor is X-Qingling-Actor),
	// which only tests do: serve always sets it.
	Users      string
	RateLimit  float64 // per identity, requests/s
	TLSCert    string  // HTTPS and NATS TLS
	TLSKey     string
	DemoTokens map[string]string // filled with the demo users' tokens when not nil
	Out        io.Writer         // where first-start notices go (default stderr)
	StoreRetry time.Duration     // how long an append retries while NATS is unreachable (default 5s)
	LeaseTTL   time.Duration     // the hz_status writer lease (default 10s)
	NATSCreds  string            // --nats-creds: a NATS credentials file for --nats
	NATSNkey   string            // --nats-nkey: an nkey seed file for --nats
	NATSCA     string            // --nats-ca: CA certificates to trust for --nats over TLS
	// County leaf offices (leaf.go).
	Home         string         // this instance's JetStream domain and hazards' home
	LeafRemote   string         // a county office's leafnode link to the hub
	LeafCounty   string         // a county office writes under leaf.<county>.hz.>
	LeafListen   string         // the hub's leafnode listen address
	LeafPassword string         // the hub's password for leaf links (user "leaf")
	Leaves       []jsstore.Leaf // the hub sources these offices' logs
	AuditConfig                 // signatures and checkpoints (audit_serve.go)
}

// Main is one running Qingling: NATS (embedded or not), the store, the projections, HTTP.
type Main struct {
	Config   Config
	NATS     *server.Server // nil with an external NATS
	Conn     *nats.Conn
	Store    *jsstore.Store
	Catalog  *events.Catalog
	Index    *projections.Index
	Runner   *projections.Runner
	App      *app.Service
	HTTP     *http.Server
	Listener net.Listener
	Users    *identity.Store
	Evidence *evidence.Store // hz_evidence
	Service  *natsapi.Server // the NATS micro service "qingling"

	statusWiring // zero-out status, hz_status, feeds, snapshots (status.go)
	auditWiring  // this server's acks, checkpoints, signatures (audit_serve.go)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open starts everything; Close stops it.
func Open(ctx context.Context, cfg Config) (*Main, error) {
	m := &Main{Config: cfg}
	if err := m.open(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Main) open(ctx context.Context) error {
	cfg := &m.Config
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	log := cfg.Log
	var err error
	if m.Catalog, err = events.LoadCatalog(); err != nil {
		return err
	}
	if cfg.Out == nil {
		cfg.Out = os.Stderr
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return err
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	var service nkeys.KeyPair // the service's own NATS identity when clients are let in
	if cfg.Users != "" {
		if m.Users, err = bootstrapUsers(cfg, m.Catalog, cfg.Out); err != nil {
			return err
		}
		if service, err = nkeys.CreateUser(); err != nil {
			return err
		}
	}
	if cfg.NATSURL != "" {
		// No reconnect buffer: while NATS is away an append fails (and is retried within its
		// bound, then answered 503) instead of waiting in a buffer and landing after the 503.
		opts := []nats.Option{nats.Name("qingling"), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1)}
		if cfg.NATSCreds != "" {
			opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
		}
		if cfg.NATSNkey != "" {
			o, err := nats.NkeyOptionFromSeed(cfg.NATSNkey)
			if err != nil {
				return fmt.Errorf("--nats-nkey: %w", err)
			}
			opts = append(opts, o)
		}
		if cfg.NATSCA != "" {
			opts = append(opts, nats.RootCAs(cfg.NATSCA))
		}
		m.Conn, err = nats.Connect(cfg.NATSURL, opts...)
		if err != nil {
			return fmt.Errorf("connect %s: %w", cfg.NATSURL, err)
		}
	} else {
		scfg := jsstore.ServerConfig{Dir: filepath.Join(cfg.DataDir, "jetstream"), Listen: cfg.NATSListen, NoSync: cfg.NoSync, ServerName: "qingling"}
		var connOpts []nats.Option
		var leafErr error
		pub := ""
		if m.Users != nil {
			pub, _ = service.PublicKey()
			connOpts = append(connOpts, nats.Nkey(pub, service.Sign))
		}
		scfg.Options = func(o *server.Options) {
			if m.Users != nil {
				o.CustomClientAuthentication = m.Users.NATSAuth(pub)
				o.AlwaysEnableNonce = true
				o.TLSConfig = tlsConf
			}
			leafErr = cfg.leafOptions(o)
		}
		m.NATS, err = jsstore.RunServer(scfg)
		if err == nil {
			err = leafErr
		}
		if err != nil {
			return err
		}
		if cfg.NATSListen != "" {
			log.Info("NATS clients may connect", "url", m.NATS.ClientURL())
		}
		if m.Conn, err = jsstore.ConnectInProcess(m.NATS, append(connOpts, nats.Name("qingling"))...); err != nil {
			return err
		}
	}
	if m.Store, err = jsstore.Open(ctx, m.Conn, jsstore.Config{Replicas: cfg.Replicas, Duplicates: cfg.Duplicates, RetryFor: cfg.StoreRetry, Leaves: cfg.Leaves, Prefix: leafPrefix(cfg.LeafCounty),
		NoSync: cfg.NoSync && cfg.NATSURL == ""}); err != nil {
		return err
	}
	m.Index = projections.NewIndex(m.Catalog)
	m.Runner = &projections.Runner{Source: m.Store, Index: m.Index, Log: log}
	m.App = &app.Service{Catalog: m.Catalog, Index: m.Index, Log: m.Store, Clock: cfg.Clock, Home: cfg.source()}
	if m.Evidence, err = evidence.Open(ctx, m.Store.JetStream(), evidence.Config{Replicas: cfg.Replicas}); err != nil {
		return err
	}
	m.App.Evidence = m.Evidence.Has
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if err := m.openAudit(ctx, runCtx); err != nil {
		return err
	}
	if err := m.openStatus(ctx); err != nil {
		return err
	}
	m.scopeEvidence(runCtx) // evidence_scope.go: who may fetch which file
	m.runStatus(runCtx)     // catch-up, then the runner; the status clock, KV writer, feed, snapshots

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	api := &httpapi.Server{App: m.App, Log: log, Ready: m.Runner.Ready, Registry: reg, RateLimit: cfg.RateLimit}
	api.Health = func() map[string]any {
		h := map[string]any{"embedded_nats": m.NATS != nil}
		if m.Lease != nil {
			h["hz_status_writer"] = map[string]any{"instance": m.Lease.Holder, "held": m.Lease.Held(), "fenced": m.KVWriter.Fenced()}
		}
		if m.NATS != nil {
			if jc := m.NATS.JetStreamConfig(); jc != nil {
				h["sync_always"] = jc.SyncAlways
			}
		}
		return h
	}
	if m.Users != nil {
		key, err := sessionKey(cfg.DataDir)
		if err != nil {
			return err
		}
		api.Auth, api.Sessions = m.Users, &httpapi.Sessions{Key: key, Secure: tlsConf != nil}
	}
	api.Extra = evidence.Routes(api, m.Evidence)
	ncfg := natsapi.Config{App: m.App, Log: log, Evidence: m.Evidence}
	if m.Users != nil {
		ncfg.Users = m.Users
	}
	ncfg.Status = m.natsStatus
	if m.Service, err = natsapi.Start(m.Conn, ncfg); err != nil {
		return err
	}
	board, err := web.New(m.Catalog)
	if err != nil {
		return err
	}
	api.Extra = m.auditRoutes(api, api.Extra) // /v1/export/ledger, /v1/export/quarterly
	// /v1/status, /v1/status/daily, /v1/feed
	api.Extra = m.statusRoutes(api, api.Extra)
	api.Extra = web.Routes(board, api.Extra) // the board at / and /assets/ (public), after every other route
	m.HTTP = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 0 /* SSE */, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	m.HTTP.RegisterOnShutdown(m.closeFeeds) // end the feeds, or Shutdown waits for them
	addr := cfg.HTTPAddr
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	if m.Listener, err = net.Listen("tcp", addr); err != nil {
		return err
	}
	if tlsConf != nil {
		m.Listener = tls.NewListener(m.Listener, tlsConf)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.HTTP.Serve(m.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http", "err", err)
		}
	}()
	log.Info("qingling serving", "http", "http://"+m.Listener.Addr().String(), "data", cfg.DataDir, "sync_always", cfg.NATSURL == "" && !cfg.NoSync)
	if cfg.Demo {
		if err := m.loadDemo(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (m *Main) loadDemo(ctx context.Context) error {
	last, err := m.Store.LastSeq(ctx)
	if err != nil {
		return err
	}
	if last > 0 {
		m.Config.Log.Info("demo: the log already has events; not loading the sample again", "last_seq", last)
		return nil
	}
	now := m.App.Now().Truncate(time.Second)
	cfg := demo.Config{Hazards: m.Config.DemoSize, Now: now}
	bar := newProgress(os.Stderr, "demo: loading sample hazards 载入示例隐患")
	cfg.Progress = bar.Set
	plan := demo.Plan(m.Catalog, cfg)
	start := time.Now()
	n, err := demo.Load(ctx, m.App, plan, cfg)
	bar.Done()
	if err != nil {
		return err
	}
	m.Config.Log.Info("demo loaded", "hazards", len(plan), "commands", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// URL is the HTTP base URL.
func (m *Main) URL() string {
	if m.Config.TLSCert != "" {
		return "https://" + m.Listener.Addr().String()
	}
	return "http://" + m.Listener.Addr().String()
}

// Close stops HTTP (letting requests finish), the projections, the connection and NATS.
func (m *Main) Close() error {
	if m.HTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = m.HTTP.Shutdown(ctx)
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	m.closeStatus()
	if m.Service != nil {
		_ = m.Service.Stop()
	}
	if m.Conn != nil {
		_ = m.Conn.Drain()
		for i := 0; i < 100 && !m.Conn.IsClosed(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		m.Conn.Close()
	}
	if m.NATS != nil {
		m.NATS.Shutdown()
		m.NATS.WaitForShutdown()
	}
	return nil
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.DataDir, "data", envOr("QINGLING_DATA", "data"), "data directory (embedded NATS store)")
	fs.StringVar(&cfg.HTTPAddr, "http", envOr("QINGLING_HTTP", "127.0.0.1:8080"), "HTTP listen address")
	fs.StringVar(&cfg.NATSListen, "nats-listen", envOr("QINGLING_NATS_LISTEN", ""), "let NATS clients connect to the embedded server on this address (e.g. 127.0.0.1:4222)")
	fs.StringVar(&cfg.NATSURL, "nats", envOr("QINGLING_NATS", ""), "use an existing NATS / JetStream server or cluster instead of the embedded one")
	fs.BoolVar(&cfg.NoSync, "no-sync", false, "relax fsync: acknowledged events may be lost on power failure (faster; see README)")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas to create (3 on a cluster)")
	fs.BoolVar(&cfg.Demo, "demo", false, "load a deterministic sample of about 2,000 hazards into an empty log")
	fs.IntVar(&cfg.DemoSize, "demo-hazards", 2000, "number of sample hazards with --demo")
	fs.StringVar(&cfg.Users, "users", envOr("QINGLING_USERS", ""), "users file (default <data>/users.json)")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 50, "requests per second per identity (burst 4×); 0 = unlimited")
	fs.StringVar(&cfg.TLSCert, "tls-cert", envOr("QINGLING_TLS_CERT", ""), "TLS certificate (PEM) for HTTPS and the NATS listener")
	fs.StringVar(&cfg.TLSKey, "tls-key", envOr("QINGLING_TLS_KEY", ""), "TLS private key (PEM)")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", envOr("QINGLING_NATS_CREDS", ""), "credentials file for --nats")
	fs.StringVar(&cfg.NATSNkey, "nats-nkey", envOr("QINGLING_NATS_NKEY", ""), "nkey seed file for --nats")
	fs.StringVar(&cfg.NATSCA, "nats-ca", envOr("QINGLING_NATS_CA", ""), "CA certificate file to trust for --nats (tls://…)")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", 10*time.Second, "how long the hz_status writer's lease lasts unrenewed before another instance takes over")
	fs.StringVar(&cfg.Home, "home", envOr("QINGLING_HOME", ""), "this instance's JetStream domain and its hazards' home (a county office: e.g. c530102)")
	fs.StringVar(&cfg.LeafRemote, "leaf-remote", envOr("QINGLING_LEAF_REMOTE", ""), "county office: leafnode link to the province, e.g. nats-leaf://leaf:PASSWORD@hub:7422")
	fs.StringVar(&cfg.LeafCounty, "leaf-county", envOr("QINGLING_LEAF_COUNTY", ""), "county office: write under leaf.<county>.hz.>")
	fs.StringVar(&cfg.LeafListen, "leaf-listen", envOr("QINGLING_LEAF_LISTEN", ""), "province: accept county offices' leafnode links on this address")
	fs.StringVar(&cfg.LeafPassword, "leaf-password", envOr("QINGLING_LEAF_PASSWORD", ""), "province: password of leaf links (user leaf)")
	leafSrc := fs.String("leaf-source", envOr("QINGLING_LEAF_SOURCE", ""), "province: source these offices' logs, DOMAIN:COUNTY[,…]")
	auditFlags := cfg.AuditConfig.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := auditFlags(); err != nil {
		fmt.Fprintln(stderr, "qingling serve:", err)
		return exitUsage
	}
	if *leafSrc != "" {
		cat, err := events.LoadCatalog()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure
		}
		if cfg.Leaves, err = parseLeaves(*leafSrc, cat); err != nil {
			fmt.Fprintln(stderr, "qingling serve:", err)
			return exitUsage
		}
	}
	if cfg.Users == "" {
		cfg.Users = filepath.Join(cfg.DataDir, "users.json")
	}
	cfg.Out = stdout
	m, err := Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "qingling serve:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "Qingling 清零 is running at %s  (Ctrl-C to stop)\n", m.URL())
	<-ctx.Done()
	fmt.Fprintln(stderr, "qingling: shutting down")
	m.Close()
	return exitOK
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// natsStatus answers the NATS service's status query through the same handler as
// GET /v1/status, as the user the service authenticated.
func (m *Main) natsStatus(ctx context.Context, u *events.User, params url.Values) (any, error) {
	if u != nil {
		ctx = httpapi.WithUser(ctx, u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/status?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	rec := &bufferWriter{header: http.Header{}, code: http.StatusOK}
	m.HTTP.Handler.ServeHTTP(rec, req)
	if rec.code != http.StatusOK {
		var body struct {
			Error *events.Error `json:"error"`
		}
		if json.Unmarshal(rec.buf.Bytes(), &body) != nil || body.Error == nil {
			return nil, fmt.Errorf("status query: HTTP %d", rec.code)
		}
		body.Error.Kind = httpapi.KindOfStatus(rec.code)
		return nil, body.Error
	}
	return json.RawMessage(rec.buf.Bytes()), nil
}

// bufferWriter is an in-memory http.ResponseWriter.
type bufferWriter struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *bufferWriter) WriteHeader(code int)        { b.code = code }
