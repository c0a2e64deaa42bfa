// Package httpapi is Qingling's HTTP API (design.md, "HTTP API").
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"qingling/events"
	"qingling/handlers/app"
	"qingling/projections"
)

// Server serves the API.
type Server struct {
	App   *app.Service
	Log   *slog.Logger
	Ready func() bool
	// Health adds facts to /healthz (e.g. whether the store fsyncs before it acknowledges).
	Health  func() map[string]any
	MaxBody int64 // default events.MaxCommandBody
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	// Auth, when set, turns identities on: bearer tokens or session cookies on every route but
	// the public ones, and X-Qingling-Actor is refused. Without it the actor is that header.
	Auth     Authenticator
	Sessions *Sessions
	// RateLimit is each identity's sustained requests per second (burst 4×); 0 = unlimited.
	RateLimit float64
	// MetricsPublic serves /metrics without an admin token (when it has its own listen address).
	MetricsPublic bool
	limit         *limiter
	// Extra lets later parts mount more routes on the same mux.
	Extra func(mux *http.ServeMux)

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	commands *prometheus.CounterVec
}

// Handler builds the routes.
func (s *Server) Handler() http.Handler {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if s.MaxBody == 0 {
		s.MaxBody = events.MaxCommandBody
	}
	if s.Registry == nil {
		s.Registry = prometheus.NewRegistry()
	}
	s.limit = &limiter{rate: rate.Limit(s.RateLimit), burst: int(4*s.RateLimit) + 1, m: map[string]*rate.Limiter{}}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qingling_http_requests_total", Help: "HTTP requests by route and status."}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qingling_http_request_seconds", Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"})
	s.commands = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qingling_commands_total", Help: "Commands by action and outcome code."}, []string{"action", "outcome"})
	s.Registry.MustRegister(s.requests, s.latency, s.commands)

	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.instrument(pattern, h)) }
	route("POST /v1/hazards", s.report)
	route("POST /v1/hazards/{id}/{action}", s.action)
	route("GET /v1/hazards/{id}", s.get)
	route("GET /v1/hazards/{id}/history", s.history)
	route("GET /v1/hazards", s.list)
	route("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		h := map[string]any{"status": "ok"}
		if s.Health != nil {
			for k, v := range s.Health() {
				h[k] = v
			}
		}
		writeJSON(w, 200, h)
	})
	route("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.Ready != nil && !s.Ready() {
			writeJSON(w, 503, map[string]any{"ready": false, "applied": s.App.Index.Applied()})
			return
		}
		writeJSON(w, 200, map[string]any{"ready": true, "applied": s.App.Index.Applied()})
	})
	route("POST /v1/session", s.session)
	route("DELETE /v1/session", s.endSession)
	route("GET /v1/me", s.me)
	metrics := promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})
	route("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if u := UserFrom(r.Context()); s.Auth != nil && !s.MetricsPublic && (u == nil || u.Role != events.RoleAdmin) {
			writeError(w, r, events.Errorf(events.KindForbidden, "admin_only", "", "/metrics needs an admin token"))
			return
		}
		metrics.ServeHTTP(w, r)
	})
	if s.Extra != nil {
		s.Extra(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, events.Errorf(events.KindNotFound, "no_route", "", "no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyLogger
)

var reqIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`) // compiled once; read-only

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !reqIDRe.MatchString(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		log := s.Log.With("request_id", id, "method", r.Method, "path", r.URL.Path)
		ctx := context.WithValue(context.WithValue(r.Context(), keyRequestID, id), keyLogger, log)
		rec := &recorder{ResponseWriter: w, code: 200}
		r = r.WithContext(ctx)
		if s.Auth != nil && !public[route] && !(route == "GET /metrics" && s.MetricsPublic) && UserFrom(r.Context()) == nil {
			u, err := s.authenticate(r)
			if err != nil {
				writeError(rec, r, err)
				s.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
				return
			}
			if !s.limit.allow(u.ID) {
				rec.Header().Set("Retry-After", "1")
				writeError(rec, r, events.Errorf(events.KindRateLimited, "rate_limited", "", "too many requests from %s; slow down", u.ID))
				s.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), keyUser, u))
		}
		h(rec, r)
		d := time.Since(start)
		s.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		s.latency.WithLabelValues(route).Observe(d.Seconds())
		log.Debug("request", "status", rec.code, "duration", d)
	})
}

// Route wraps a handler mounted through Extra with the API's request id, logging and metrics.
func (s *Server) Route(pattern string, h http.HandlerFunc) http.Handler {
	return s.instrument(pattern, h)
}

// WriteError answers err as the API's JSON error, its status from its kind (errors.go).
func WriteError(w http.ResponseWriter, r *http.Request, err error) { writeError(w, r, err) }

// WriteJSON answers v as JSON with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

func requestID(r *http.Request) string { id, _ := r.Context().Value(keyRequestID).(string); return id }

func logger(r *http.Request) *slog.Logger {
	if l, ok := r.Context().Value(keyLogger).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

var actorRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`) // compiled once; read-only

// actor names the caller: the authenticated user, or without identities the X-Qingling-Actor header.
func (s *Server) actor(r *http.Request) (events.Actor, error) {
	if s.Auth != nil {
		if r.Header.Get("X-Qingling-Actor") != "" {
			return events.Actor{}, events.Errorf(events.KindInvalid, "actor_header_refused", "X-Qingling-Actor", "X-Qingling-Actor is refused: the actor comes from the credential")
		}
		u := UserFrom(r.Context())
		if u == nil {
			return events.Actor{}, events.Errorf(events.KindUnauthenticated, "unauthenticated", "", "sign in first")
		}
		return events.Actor{ID: u.ID, Role: u.Role, User: u}, nil
	}
	return ParseActor("X-Qingling-Actor", r.Header.Get("X-Qingling-Actor"), r.Header.Get("X-Qingling-Role"))
}

// Actor names the caller of a route mounted through Extra, as the API's own routes do.
func (s *Server) Actor(r *http.Request) (events.Actor, error) { return s.actor(r) }

// ParseActor checks a user name given in field (a header, a subject token) the same way for
// every way in.
func ParseActor(field, name, role string) (events.Actor, error) {
	if name == "" {
		return events.Actor{}, events.Errorf(events.KindUnauthenticated, "actor_required", field, "name the acting user in %s", field)
	}
	if !actorRe.MatchString(name) {
		return events.Actor{}, events.Errorf(events.KindInvalid, "invalid_actor", field, "%s must be 1–64 letters, digits and . _ @ -", field)
	}
	return events.Actor{ID: name, Role: role}, nil
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, events.Errorf(events.KindInvalid, "unsupported_media_type", "Content-Type", "send application/json, not %q", ct)
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxBody))
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	s.command(w, r, events.ActReport, "")
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	act := r.PathValue("action")
	if act == events.ActReport || events.ActionType(act) == "" {
		writeError(w, r, events.Errorf(events.KindNotFound, "unknown_action", "action", "unknown action %q; one of amend, grade, list, plan, progress, extend, complete, reject, clear, reopen, withdraw", act))
		return
	}
	id := r.PathValue("id")
	if err := events.CanonicalUUID("id", id); err != nil {
		writeError(w, r, err)
		return
	}
	s.command(w, r, act, id)
}

func (s *Server) command(w http.ResponseWriter, r *http.Request, act, id string) {
	res, err := s.run(w, r, act, id)
	outcome := "ok"
	if err != nil {
		outcome = events.ErrorOf(err).Code
	} else if res.Replayed {
		outcome = "replayed"
	}
	s.commands.WithLabelValues(act, outcome).Inc()
	if err != nil {
		writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if act == events.ActReport && !res.Replayed {
		code = http.StatusCreated
		w.Header().Set("Location", "/v1/hazards/"+res.Hazard.ID)
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, code, view(&res.Hazard, s.App.Now(), res.Replayed))
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, act, id string) (app.Result, error) {
	who, err := s.actor(r)
	if err != nil {
		return app.Result{}, err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return app.Result{}, err
	}
	cmd, err := events.DecodeCommand(act, id, body)
	if err != nil {
		return app.Result{}, err
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if err := events.CanonicalUUID("Idempotency-Key", key); err != nil {
			return app.Result{}, err
		}
		if cmd.CommandID != "" && cmd.CommandID != key {
			return app.Result{}, events.Errorf(events.KindInvalid, "command_id_mismatch", "command_id", "Idempotency-Key and command_id differ")
		}
		cmd.CommandID = key
	}
	cmd.Actor = who
	return s.App.Execute(r.Context(), cmd)
}

// HazardView is a hazard's state as the API shows it.
type HazardView struct {
	events.Hazard
	Deadline            string       `json:"deadline"`
	Overdue             bool         `json:"overdue"`
	VerificationOverdue bool         `json:"verification_overdue"`
	ListedOverdue       bool         `json:"listed_overdue"`
	Replayed            bool         `json:"replayed,omitempty"`
	Details             *app.Details `json:"details,omitempty"`
}

// View is a hazard's state as every way in shows it at instant now.
func View(h *events.Hazard, now time.Time, replayed bool) HazardView { return view(h, now, replayed) }

func view(h *events.Hazard, now time.Time, replayed bool) HazardView {
	v := HazardView{Hazard: *h, Overdue: h.Overdue(now), VerificationOverdue: h.VerificationOverdue(now), ListedOverdue: h.ListedOverdue(now), Replayed: replayed}
	if d := h.Deadline(); !d.IsZero() {
		v.Deadline = events.FormatInstant(d)
	}
	return v
}

// waitSeq lets a reader name the seq it wrote (read your writes); bounded.
func (s *Server) waitSeq(r *http.Request) error {
	v := r.URL.Query().Get("min_seq")
	if v == "" {
		return nil
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return events.Errorf(events.KindInvalid, "invalid_min_seq", "min_seq", "min_seq must be a stream sequence")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.App.Index.WaitApplied(ctx, seq); err != nil {
		return events.Errorf(events.KindUnavailable, "not_caught_up", "min_seq", "projection has not reached seq %d yet", seq)
	}
	return nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	if err := s.waitSeq(r); err != nil {
		writeError(w, r, err)
		return
	}
	h, err := s.App.ReadHazard(UserFrom(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	d, err := s.App.Details(r.Context(), &h)
	if err != nil {
		writeError(w, r, err)
		return
	}
	v := view(&h, s.App.Now(), false)
	v.Details = &d
	writeJSON(w, 200, v)
}

// HistoryItem is one event in a history, with when it happened and when it was recorded apart.
type HistoryItem struct {
	Seq        uint64        `json:"seq"`
	Type       string        `json:"type"`
	Actor      string        `json:"actor"`
	ActorRole  string        `json:"actor_role,omitempty"`
	OccurredAt string        `json:"occurred_at"`
	RecordedAt string        `json:"recorded_at"`
	PrevHash   string        `json:"prevhash"`
	Hash       string        `json:"hash"`
	Event      *events.Event `json:"event"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	hist, err := s.App.ReadHistory(r.Context(), UserFrom(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, 200, map[string]any{"id": r.PathValue("id"), "events": HistoryItems(hist)})
}

// HistoryItems shows a history as the API does.
func HistoryItems(hist []app.Stored) []HistoryItem {
	items := make([]HistoryItem, 0, len(hist))
	for _, st := range hist {
		e := st.Event
		items = append(items, HistoryItem{Seq: st.Seq, Type: e.Type, Actor: e.Actor, ActorRole: e.ActorRole,
			OccurredAt: events.FormatInstant(e.OccurredAt), RecordedAt: events.FormatInstant(e.Time),
			PrevHash: e.PrevHash, Hash: st.Hash, Event: e})
	}
	return items
}

var listParams = map[string]bool{"sector": true, "region": true, "status": true, "grade": true, "overdue": true, "listed": true, "source": true, "site": true, // read-only
	"found_from": true, "found_to": true, "recorded_from": true, "recorded_to": true, "cursor": true, "limit": true, "min_seq": true}

// ParseFilter reads the list endpoint's query parameters.
func ParseFilter(q url.Values, cat *events.Catalog) (projections.Filter, error) {
	var f projections.Filter
	for k := range q {
		if !listParams[k] {
			return f, events.Errorf(events.KindInvalid, "unknown_parameter", k, "unknown query parameter %q", k)
		}
	}
	f.Sector, f.Region, f.Status, f.Grade, f.Source, f.Site, f.Cursor = q.Get("sector"), q.Get("region"), q.Get("status"), q.Get("grade"), q.Get("source"), q.Get("site"), q.Get("cursor")
	if _, ok := cat.Sector(f.Sector); f.Sector != "" && f.Sector != "all" && !ok {
		return f, events.Errorf(events.KindInvalid, "unknown_sector", "sector", "unknown sector %q", f.Sector)
	}
	if _, ok := cat.Region(f.Region); f.Region != "" && !ok {
		return f, events.Errorf(events.KindInvalid, "unknown_region", "region", "unknown region code %q", f.Region)
	}
	switch events.Status(f.Status) {
	case "", "open", events.StatusReported, events.StatusPlanned, events.StatusRectifying, events.StatusAwaiting, events.StatusCleared, events.StatusWithdrawn:
	default:
		return f, events.Errorf(events.KindInvalid, "invalid_status", "status", "unknown status %q", f.Status)
	}
	if f.Grade != "" && f.Grade != events.GradeGeneral && f.Grade != events.GradeMajor {
		return f, events.Errorf(events.KindInvalid, "invalid_grade", "grade", "grade must be general or major")
	}
	for _, b := range []struct {
		name string
		dst  **bool
	}{{"overdue", &f.Overdue}, {"listed", &f.Listed}} {
		if v := q.Get(b.name); v != "" {
			x, err := strconv.ParseBool(v)
			if err != nil {
				return f, events.Errorf(events.KindInvalid, "invalid_"+b.name, b.name, "%s must be true or false", b.name)
			}
			*b.dst = &x
		}
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"found_from", &f.FoundFrom}, {"found_to", &f.FoundTo}, {"recorded_from", &f.RecordedFrom}, {"recorded_to", &f.RecordedTo}} {
		if v := q.Get(t.name); v != "" {
			x, err := ParseTime(t.name, v)
			if err != nil {
				return f, err
			}
			*t.dst = x
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return f, events.Errorf(events.KindInvalid, "invalid_limit", "limit", "limit must be 1–500")
		}
		f.Limit = n
	}
	return f, nil
}

// ParseTime reads an RFC 3339 instant or a bare date (the start of that day in Asia/Shanghai).
func ParseTime(field, v string) (time.Time, error) {
	if t, err := time.ParseInLocation("2006-01-02", v, events.Shanghai); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, events.Errorf(events.KindInvalid, "invalid_time", field, "%s must be a date (2025-04-30) or an RFC 3339 time", field)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if err := s.waitSeq(r); err != nil {
		writeError(w, r, err)
		return
	}
	f, err := ParseFilter(r.URL.Query(), s.App.Catalog)
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := s.App.Now()
	f.At = now
	f.Readable = s.App.Readable(UserFrom(r.Context()))
	page, err := s.App.Index.List(f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	items := make([]HazardView, len(page.Items))
	for i := range page.Items {
		items[i] = view(&page.Items[i], now, false)
	}
	writeJSON(w, 200, map[string]any{"items": items, "next": page.Next})
}
