package jsstore

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	Dir        string // JetStream store directory
	Listen     string // host:port to let NATS clients in; "" = in-process only
	NoSync     bool   // relax fsync (the file store then syncs every 2 minutes)
	ServerName string
	Options    func(*server.Options) // further settings (users, TLS, cluster) applied last
}

// RunServer starts an embedded NATS server with JetStream and waits until it is ready.
func RunServer(cfg ServerConfig) (*server.Server, error) {
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		SyncAlways: !cfg.NoSync,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.Options != nil {
		cfg.Options(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server: not ready after 30s")
	}
	return s, nil
}

// ConnectInProcess connects to an embedded server without a socket.
func ConnectInProcess(s *server.Server, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s), nats.MaxReconnects(-1)}, opts...)
	return nats.Connect("", opts...)
}

func splitHostPort(hp string) (string, int, error) {
	var host string
	var port int
	i := len(hp) - 1
	for i >= 0 && hp[i] != ':' {
		i--
	}
	if i < 0 {
		return "", 0, fmt.Errorf("listen address %q: want host:port", hp)
	}
	host = hp[:i]
	if _, err := fmt.Sscanf(hp[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("listen address %q: bad port", hp)
	}
	if port == 0 {
		port = -1 // any free port
	}
	return host, port, nil
}
