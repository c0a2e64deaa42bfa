// Package natsapi is Qingling's NATS service (nats.go micro, service name "qingling"): every
// command and query of the HTTP API on the request subjects qingling.cmd.<user>.<verb>, so that
// NATS permissions can bind a caller to its own user name. Rules, idempotency and errors are the
// HTTP API's: both call handlers/app.
package natsapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/evidence"
	"qingling/handlers/httpapi"
)

// Names fixed by design.md and relied on by clients.
const (
	ServiceName   = "qingling"
	SubjectPrefix = "qingling.cmd"

	VerbShow    = "show"
	VerbHistory = "history"
	VerbList    = "list" // the listing command with an "id", the hazard list query without
	// Evidence over NATS (NATS permissions give users no object store rights): the upload's
	// body is the file (name in Qingling-Evidence-Name), a download's body {"sha256": …}. A
	// file must fit in one NATS message (the server's max_payload); larger ones go over HTTP.
	VerbStatus   = "status" // only when Config.Status is set
	VerbUpload   = "upload"
	VerbDownload = "download"

	// Reply headers. An error reply also carries micro's Nats-Service-Error (the message) and
	// Nats-Service-Error-Code (the HTTP status the same error has on the HTTP API).
	HeaderErrorCode  = "Qingling-Error-Code"  // the stable error code, e.g. evidence_missing
	HeaderErrorField = "Qingling-Error-Field" // the field it concerns, when one does
	HeaderStatus     = "Qingling-Status"      // the HTTP status of the same answer (201 for a new report)
	HeaderReplayed   = "Idempotent-Replayed"  // "true": the command was already recorded
)

// Verbs lists the verbs of commands and queries: the commands, then the queries.
func Verbs() []string { return append(slices.Clone(events.Actions), VerbShow, VerbHistory) }

func isVerb(v string) bool {
	return v == VerbShow || v == VerbHistory || v == VerbStatus || v == VerbUpload || v == VerbDownload || events.ActionType(v) != ""
}

// Users finds the user a subject names (identity.Store is one).
type Users interface {
	Lookup(id string) (*events.User, bool)
}

// Subject is the request subject of a verb for a user.
func Subject(user, verb string) string { return SubjectPrefix + "." + user + "." + verb }

// Config of the service.
type Config struct {
	App     *app.Service
	Log     *slog.Logger
	Version string        // semver, default 0.1.0
	Timeout time.Duration // per request, default 15s
	// Users, when set, turns identities on: the subject's user must be a known, enabled user,
	// whose role and scope then decide (NATS permissions let each user publish only on its own
	// qingling.cmd.<user>.>). Without it the subject's user is the actor, unchecked.
	Users Users
	// Evidence, when set, adds the upload and download endpoints.
	Evidence *evidence.Store
	// Status, when set, adds the status endpoint: it answers the zero-out status for the HTTP
	// API's GET /v1/status query parameters (sector, region, as_of, from, to), read by user
	// (nil without identities), with the same body the HTTP route gives.
	Status func(ctx context.Context, user *events.User, params url.Values) (any, error)
	// MaxInFlight bounds the requests served at once, default 256. micro calls a handler one
	// message at a time per endpoint; the handler hands each request to its own goroutine, so
	// that commands meet in the store's group commit. When MaxInFlight are being served the
	// handler waits for one to finish: back-pressure on the subscription, nothing is dropped.
	MaxInFlight int
}

// DefaultMaxInFlight is Config.MaxInFlight's default.
const DefaultMaxInFlight = 256

// Server is the running service.
type Server struct {
	cfg    Config
	nc     *nats.Conn
	svc    micro.Service
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	sem      chan struct{}             // one slot per request being served
	mu       sync.Mutex                // guards stopping against inflight.Add
	stopping bool                      // Stop has begun: later arrivals are refused, not served
	inflight sync.WaitGroup            // requests accepted and not yet answered
	stats    map[string]*endpointStats // by verb (the endpoint's name); filled by Start
}

// endpointStats are an endpoint's outcomes. micro's own counters see only the hand-off to a
// goroutine (its error count stays 0), so the real ones ride in each endpoint's stats "data".
type endpointStats struct {
	mu         sync.Mutex
	requests   int
	errors     int
	lastError  string
	processing time.Duration
}

// EndpointData is the "data" of an endpoint in the service's STATS ($SRV.STATS.qingling):
// requests answered, errors among them and the time spent serving them.
type EndpointData struct {
	NumRequests           int           `json:"num_requests"`
	NumErrors             int           `json:"num_errors"`
	LastError             string        `json:"last_error,omitempty"`
	ProcessingTime        time.Duration `json:"processing_time"`
	AverageProcessingTime time.Duration `json:"average_processing_time"`
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
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	s := &Server{cfg: cfg, nc: nc, sem: make(chan struct{}, cfg.MaxInFlight), stats: map[string]*endpointStats{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	svc, err := micro.AddService(nc, micro.Config{
		Name:         ServiceName,
		Version:      cfg.Version,
		Description:  "Qingling 清零: hazard commands and queries; subjects qingling.cmd.<user>.<verb>",
		Metadata:     map[string]string{"subjects": SubjectPrefix + ".<user>.<verb>"},
		StatsHandler: s.endpointData,
	})
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.svc = svc
	verbs := Verbs()
	if cfg.Status != nil {
		verbs = append(verbs, VerbStatus)
	}
	if cfg.Evidence != nil {
		verbs = append(verbs, VerbUpload, VerbDownload)
	}
	for _, v := range verbs {
		s.stats[v] = &endpointStats{}
	}
	for _, v := range verbs {
		kind := "command"
		switch {
		case v == VerbUpload || v == VerbDownload:
			kind = "evidence"
		case !slices.Contains(events.Actions, v):
			kind = "query"
		case v == VerbList:
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

// Stop unsubscribes the endpoints, then waits for the requests in flight to be answered
// (each within Config.Timeout). A request still reaching the handler from a draining
// subscription after that is answered 503 service_stopping, to be retried on another instance.
func (s *Server) Stop() error {
	var err error
	s.once.Do(func() {
		err = s.svc.Stop()
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		s.inflight.Wait()
		s.cancel()
	})
	return err
}

// msg is what a request's goroutine needs of the micro request. micro's own request is left
// alone once the handler returns: micro reads it then, and answering through it from another
// goroutine would race with that read.
type msg struct {
	subject, reply string
	header         nats.Header
	data           []byte
}

// handle is micro's handler: it takes a slot (waiting while every slot is taken) and serves
// the request on its own goroutine.
func (s *Server) handle(mr micro.Request) {
	m := &msg{subject: mr.Subject(), reply: mr.Reply(), header: nats.Header(mr.Headers()), data: mr.Data()}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.answer(m, time.Now(), 0, nil, nil, events.Errorf(events.KindUnavailable, "service_stopping", "", "this Qingling is stopping; retry"))
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	s.sem <- struct{}{}
	go func() {
		defer s.inflight.Done()
		defer func() { <-s.sem }()
		s.handleOne(m)
	}()
}

func (s *Server) handleOne(m *msg) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	code, v, hdr, err := s.serve(ctx, m)
	s.answer(m, start, code, v, hdr, err)
}

// answer replies as micro's Respond, RespondJSON and Error would, and counts the outcome.
func (s *Server) answer(m *msg, start time.Time, code int, v any, hdr micro.Headers, err error) {
	log := s.cfg.Log.With("subject", m.subject)
	var data []byte
	if err == nil {
		if raw, ok := v.(rawReply); ok {
			data = raw
		} else if data, err = json.Marshal(v); err != nil {
			err = events.Errorf(events.KindInternal, "encode_failed", "", "could not encode the answer: %v", err)
		}
	}
	s.count(m.subject, start, err) // before the reply, so that STATS read after it include it
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
		h[micro.ErrorHeader] = []string{headerSafe(e.Message)}
		h[micro.ErrorCodeHeader] = []string{strconv.Itoa(status)}
		s.reply(log, m, nats.Header(h), body)
		return
	}
	hdr[HeaderStatus] = []string{strconv.Itoa(code)}
	s.reply(log, m, nats.Header(hdr), data)
	log.Debug("nats request", "status", code, "duration", time.Since(start))
}

func (s *Server) reply(log *slog.Logger, m *msg, h nats.Header, data []byte) {
	if m.reply == "" {
		log.Debug("nats reply", "err", nats.ErrMsgNoReply)
		return
	}
	if err := s.nc.PublishMsg(&nats.Msg{Subject: m.reply, Header: h, Data: data}); err != nil {
		log.Debug("nats reply", "err", err)
	}
}

// count records a request's outcome under its verb (the endpoint's name).
func (s *Server) count(subject string, start time.Time, err error) {
	_, verb, perr := parseSubject(subject)
	if perr != nil {
		return
	}
	st := s.stats[verb]
	if st == nil {
		return
	}
	st.mu.Lock()
	st.requests++
	st.processing += time.Since(start)
	if err != nil {
		e := events.ErrorOf(err)
		st.errors++
		st.lastError = strconv.Itoa(httpapi.StatusOf(e)) + ":" + e.Code
	}
	st.mu.Unlock()
}

// endpointData is micro's StatsHandler: the endpoint's EndpointData.
func (s *Server) endpointData(ep *micro.Endpoint) any {
	d := EndpointData{}
	if st := s.stats[ep.Name]; st != nil {
		st.mu.Lock()
		d = EndpointData{NumRequests: st.requests, NumErrors: st.errors, LastError: st.lastError, ProcessingTime: st.processing}
		st.mu.Unlock()
		if d.NumRequests > 0 {
			d.AverageProcessingTime = d.ProcessingTime / time.Duration(d.NumRequests)
		}
	}
	return d
}

func (s *Server) serve(ctx context.Context, m *msg) (int, any, micro.Headers, error) {
	a := s.cfg.App
	hdr := micro.Headers{}
	req, err := decodeRequest(a.Catalog, m.subject, m.header, m.data)
	if err != nil {
		return 0, nil, nil, err
	}
	if err := s.identify(req); err != nil {
		return 0, nil, nil, err
	}
	user := req.actor.User
	switch req.verb {
	case VerbUpload:
		if err := evidence.CanUpload(user); err != nil {
			return 0, nil, nil, err
		}
		uploader := ""
		if user != nil {
			uploader = user.ID
		}
		info, err := s.cfg.Evidence.PutBy(ctx, req.data, req.name, uploader)
		if err != nil {
			return 0, nil, nil, err
		}
		code := 200
		if info.Created {
			code = 201
		}
		return code, info, hdr, nil
	case VerbDownload:
		return s.download(ctx, user, req.sha256)
	case VerbStatus:
		v, err := s.cfg.Status(ctx, user, req.params)
		if err != nil {
			return 0, nil, nil, err
		}
		return 200, v, hdr, nil
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
		h, err := a.ReadHazard(user, req.id)
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
		hist, err := a.ReadHistory(ctx, user, req.id)
		if err != nil {
			return 0, nil, nil, err
		}
		return 200, map[string]any{"id": req.id, "events": httpapi.HistoryItems(hist)}, hdr, nil
	default: // the list query
		now := a.Now()
		f := req.filter
		f.At = now
		f.Readable = a.Readable(user)
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

// identify puts the subject's user, with its role and scope, on the request.
func (s *Server) identify(req *request) error {
	if s.cfg.Users == nil {
		return nil
	}
	u, ok := s.cfg.Users.Lookup(req.actor.ID)
	if !ok {
		return events.Errorf(events.KindUnauthenticated, "unknown_user", "subject", "no user %s", req.actor.ID)
	}
	if u.Disabled {
		return events.Errorf(events.KindUnauthenticated, "user_disabled", "subject", "user %s is disabled", u.ID)
	}
	req.actor = events.Actor{ID: u.ID, Role: u.Role, User: u}
	if req.cmd != nil {
		req.cmd.Actor = req.actor
	}
	return nil
}

// rawReply is an answer sent as bytes, not JSON.
type rawReply []byte

// download answers a file the user may fetch (evidence.Store.Authorize: evidence_not_found
// otherwise, before anything else is said of the file).
func (s *Server) download(ctx context.Context, user *events.User, sum string) (int, any, micro.Headers, error) {
	if err := s.cfg.Evidence.Authorize(ctx, user, sum); err != nil {
		return 0, nil, nil, err
	}
	info, err := s.cfg.Evidence.Stat(ctx, sum)
	if err != nil {
		return 0, nil, nil, err
	}
	if limit := s.nc.MaxPayload() - 4096; info.Size > limit {
		return 0, nil, nil, events.Errorf(events.KindTooLarge, "too_large_for_nats", "sha256",
			"evidence %s has %.1f MiB, more than one NATS message carries (%.1f MiB); fetch it over HTTP (GET /v1/evidence/%s)", sum, float64(info.Size)/(1<<20), float64(limit)/(1<<20), sum)
	}
	rc, info, err := s.cfg.Evidence.Open(ctx, sum)
	if err != nil {
		return 0, nil, nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return 0, nil, nil, jsstore.Unavailable(err)
	}
	return 200, rawReply(data), micro.Headers{"Content-Type": {info.ContentType}, "Qingling-Evidence-Sha256": {sum}}, nil
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
