package client_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/client"
	"qingling/handlers/evidence"
	"qingling/handlers/httpapi"
	"qingling/handlers/internal/testserver"
	"qingling/handlers/natsapi"
	"qingling/projections"
)

// server is one Qingling on a real in-process NATS JetStream: HTTP (with evidence) and the
// NATS service, both on the same command service.
type server struct {
	nc    *nats.Conn
	store *jsstore.Store
	ev    *evidence.Store
	index *projections.Index
	url   string
}

func startServer(t testing.TB) *server { t.Helper(); return startServerWith(t, nil) }

// startServerWith lets the test configure the command service (a signature Verifier).
func startServerWith(t testing.TB, configure func(*app.Service)) *server {
	t.Helper()
	js := testserver.Start(t)
	nc, store, log := js.Conn, js.Store, js.Log
	ev, err := evidence.Open(context.Background(), store.JetStream(), evidence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	idx := js.Index(t)
	a := &app.Service{Catalog: js.Catalog, Index: idx, Log: store, Evidence: ev.Has}
	if configure != nil {
		configure(a)
	}
	api := &httpapi.Server{App: a, Log: log}
	api.Extra = evidence.Routes(api, ev)
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	svc, err := natsapi.Start(nc, natsapi.Config{App: a, Log: log, Evidence: ev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return &server{nc: nc, store: store, ev: ev, index: idx, url: hs.URL}
}

func (s *server) httpClient(t testing.TB, actor string) *client.Client {
	t.Helper()
	tr, err := client.NewHTTP(s.url)
	if err != nil {
		t.Fatal(err)
	}
	return client.New(tr, actor)
}

func (s *server) natsClient(actor string) *client.Client {
	return client.New(client.NewNATS(s.nc, actor), actor)
}

func (s *server) lastSeq(t *testing.T) uint64 {
	t.Helper()
	n, err := s.store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// deadURL is an HTTP address nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func photo(t *testing.T, seed int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(i*seed + seed)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func day(d int) string { return time.Now().AddDate(0, 0, d).In(events.Shanghai).Format("2006-01-02") }

func finding(desc string, ev ...events.Evidence) events.Reported {
	return events.Reported{Sector: "forest", Region: "530102", Site: events.Site{Name: "西山林区坟地"}, Grade: events.GradeGeneral,
		Description: desc, Source: "inspection", Deadline: day(30), Evidence: ev}
}
