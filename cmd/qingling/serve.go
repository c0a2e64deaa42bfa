package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/demo"
	"qingling/handlers/httpapi"
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
	if cfg.NATSURL != "" {
		m.Conn, err = nats.Connect(cfg.NATSURL, nats.Name("qingling"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect %s: %w", cfg.NATSURL, err)
		}
	} else {
		if cfg.DataDir == "" {
			cfg.DataDir = "data"
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return err
		}
		m.NATS, err = jsstore.RunServer(jsstore.ServerConfig{Dir: filepath.Join(cfg.DataDir, "jetstream"), Listen: cfg.NATSListen, NoSync: cfg.NoSync, ServerName: "qingling"})
		if err != nil {
			return err
		}
		if cfg.NATSListen != "" {
			log.Info("NATS clients may connect", "url", m.NATS.ClientURL())
		}
		if m.Conn, err = jsstore.ConnectInProcess(m.NATS, nats.Name("qingling")); err != nil {
			return err
		}
	}
	if m.Store, err = jsstore.Open(ctx, m.Conn, jsstore.Config{Replicas: cfg.Replicas, Duplicates: cfg.Duplicates}); err != nil {
		return err
	}
	m.Index = projections.NewIndex(m.Catalog)
	m.Runner = &projections.Runner{Source: m.Store, Index: m.Index, Log: log}
	m.App = &app.Service{Catalog: m.Catalog, Index: m.Index, Log: m.Store, Clock: cfg.Clock}
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go func() { defer m.wg.Done(); _ = m.Runner.Run(runCtx) }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	api := &httpapi.Server{App: m.App, Log: log, Ready: m.Runner.Ready, Registry: reg}
	m.HTTP = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 0 /* SSE */, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	addr := cfg.HTTPAddr
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	if m.Listener, err = net.Listen("tcp", addr); err != nil {
		return err
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
func (m *Main) URL() string { return "http://" + m.Listener.Addr().String() }

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
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
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
