// Package natsapi is Qingling's NATS service (nats.go micro, service name "qingling"): every
// command and query of the HTTP API on the request subjects qingling.cmd.<user>.<verb>, so that
// NATS permissions can bind a caller to its own user name. Rules, idempotency and errors are the
// HTTP API's: both call handlers/app.
package natsapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"qingling/events"
	"qingling/handlers/app"
	"qingling/handlers/httpapi"
)

// Names fixed by design.md and relied on by clients.
const (
	ServiceName   = "qingling"
	SubjectPrefix = "qingling.cmd"

	VerbShow    = "show"
	VerbHistory = "history"
	VerbList    = "list" // the listing command with an "id", the hazard list query without

	// Reply headers. An error reply also carries micro's Nats-Service-Error (the message) and
	// Nats-Service-Error-Code (the HTTP status the same error has on the HTTP API).
	HeaderErrorCode  = "Qingling-Error-Code"  // the stable error code, e.g. evidence_missing
	HeaderErrorField = "Qingling-Error-Field" // the field it concerns, when one does
	HeaderStatus     = "Qingling-Status"      // the HTTP status of the same answer (201 for a new report)
	HeaderReplayed   = "Idempotent-Replayed"  // "true": the command was already recorded
)

// Verbs lists every verb the service answers: the commands, then the queries.
func Verbs() []string { return append(slices.Clone(events.Actions), VerbShow, VerbHistory) }

func isVerb(v string) bool { return v == VerbShow || v == VerbHistory || events.ActionType(v) != "" }

// Subject is the request subject of a verb for a user.
func Subject(user, verb string) string { return SubjectPrefix + "." + user + "." + verb }

// Config of the service.
type Config struct {
	App     *app.Service
	Log     *slog.Logger
	Version string        // semver, default 0.1.0
	Timeout time.Duration // per request, default 15s
}

// Server is the running service.
type Server struct {
	cfg    Config
	svc    micro.Service
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// Start adds the service and its endpoints (one per verb, queue group "q", so several
// instances share the load) on nc.
func Start(nc *nats.Conn, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "0.1.0"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	s := &Server{cfg: cfg}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     cfg.Version,
		Description: "Qingling 清零: hazard commands and queries; subjects qingling.cmd.<user>.<verb>",
		Metadata:    map[string]string{"subjects": SubjectPrefix + ".<user>.<verb>"},
	})
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.svc = svc
	for _, v := range Verbs() {
		kind := "command"
		if !slices.Contains(events.Actions, v) {
			kind = "query"
		} else if v == VerbList {
			kind = "command (with id) or query (without)"
		}
		if err := svc.AddEndpoint(v, micro.HandlerFunc(s.handle),
			micro.WithEndpointSubject(SubjectPrefix+".*."+v),
			micro.WithEndpointMetadata(map[string]string{"kind": kind})); err != nil {
			_ = svc.Stop()
			s.cancel()
			return nil, err
		}
	}
	return s, nil
}

// Service is the micro service (Info, Stats).
func (s *Server) Service() micro.Service { return s.svc }

// Stop drains the endpoints and ends requests in flight.
func (s *Server) Stop() error {
	var err error
	s.once.Do(func() {
		err = s.svc.Stop()
		s.cancel()
	})
	return err
}

func (s *Server) handle(mr micro.Request) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	code, v, hdr, err := s.serve(ctx, mr)
	log := s.cfg.Log.With("subject", mr.Subject())
	if err != nil {
		e := events.ErrorOf(err)
		status := httpapi.StatusOf(e)
		if status >= 500 {
			log.Error("nats request failed", "code", e.Code, "err", err)
		} else {
			log.Info("nats request refused", "status", status, "code", e.Code, "field", e.Field)
		}
		body, _ := json.Marshal(map[string]any{"error": e})
		h := micro.Headers{HeaderErrorCode: {e.Code}, HeaderStatus: {strconv.Itoa(status)}}
		if e.Field != "" {
			h[HeaderErrorField] = []string{headerSafe(e.Field)}
		}
		if e.Kind == events.KindUnavailable {
			h["Retry-After"] = []string{"2"}
		}
		if rerr := mr.Error(strconv.Itoa(status), headerSafe(e.Message), body, micro.WithHeaders(h)); rerr != nil {
			log.Debug("nats reply", "err", rerr)
		}
		return
	}
	hdr[HeaderStatus] = []string{strconv.Itoa(code)}
	if rerr := mr.RespondJSON(v, micro.WithHeaders(hdr)); rerr != nil {
		log.Debug("nats reply", "err", rerr)
	}
	log.Debug("nats request", "status", code, "duration", time.Since(start))
}

func (s *Server) serve(ctx context.Context, mr micro.Request) (int, any, micro.Headers, error) {
	a := s.cfg.App
	hdr := micro.Headers{}
	req, err := decodeRequest(a.Catalog, mr.Subject(), nats.Header(mr.Headers()), mr.Data())
	if err != nil {
		return 0, nil, nil, err
	}
	if !req.query() {
		res, err := a.Execute(ctx, req.cmd)
		if err != nil {
			return 0, nil, nil, err
		}
		code := 200
		if req.verb == events.ActReport && !res.Replayed {
			code = 201
		}
		if res.Replayed {
			hdr[HeaderReplayed] = []string{"true"}
		}
		return code, httpapi.View(&res.Hazard, a.Now(), res.Replayed), hdr, nil
	}
	if err := s.waitSeq(ctx, req.minSeq); err != nil {
		return 0, nil, nil, err
	}
	switch req.verb {
	case VerbShow:
		h, err := a.Hazard(req.id)
		if err != nil {
			return 0, nil, nil, err
		}
		d, err := a.Details(ctx, &h)
		if err != nil {
			return 0, nil, nil, err
		}
		v := httpapi.View(&h, a.Now(), false)
		v.Details = &d
		return 200, v, hdr, nil
	case VerbHistory:
		hist, err := a.History(ctx, req.id)
		if err != nil {
			return 0, nil, nil, err
		}
		return 200, map[string]any{"id": req.id, "events": httpapi.HistoryItems(hist)}, hdr, nil
	default: // the list query
		now := a.Now()
		f := req.filter
		f.At = now
		page, err := a.Index.List(f)
		if err != nil {
			return 0, nil, nil, err
		}
		items := make([]httpapi.HazardView, len(page.Items))
		for i := range page.Items {
			items[i] = httpapi.View(&page.Items[i], now, false)
		}
		return 200, map[string]any{"items": items, "next": page.Next}, hdr, nil
	}
}

func (s *Server) waitSeq(ctx context.Context, seq uint64) error {
	if seq == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cfg.App.Index.WaitApplied(wctx, seq); err != nil {
		return events.Errorf(events.KindUnavailable, "not_caught_up", "min_seq", "projection has not reached seq %d yet", seq)
	}
	return nil
}
