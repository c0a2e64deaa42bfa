package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"qingling/events"
)

// Authenticator checks a bearer token and finds a user by id.
type Authenticator interface {
	Authenticate(token string) (*events.User, error)
	Lookup(id string) (*events.User, bool)
}

const (
	sessionCookie = "ql_session"
	csrfHeader    = "X-CSRF-Token"
	sessionTTL    = 12 * time.Hour
)

// Sessions issues and checks HMAC-signed session cookies, stateless so that any instance
// with the same key accepts them.
type Sessions struct {
	Key    []byte
	Secure bool // set the Secure attribute (HTTPS)
	Now    func() time.Time
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.Key)
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Sessions) issue(user string) (cookie, csrf string) {
	exp := strconv.FormatInt(s.now().Add(sessionTTL).Unix(), 10)
	v := base64.RawURLEncoding.EncodeToString([]byte(user)) + "." + exp
	cookie = v + "." + s.mac("session", v)
	return cookie, s.mac("csrf", cookie)
}

func (s *Sessions) check(cookie string) (string, bool) {
	i := strings.LastIndexByte(cookie, '.')
	if i < 0 {
		return "", false
	}
	v, sig := cookie[:i], cookie[i+1:]
	if subtle.ConstantTimeCompare([]byte(sig), []byte(s.mac("session", v))) != 1 {
		return "", false
	}
	j := strings.IndexByte(v, '.')
	if j < 0 {
		return "", false
	}
	exp, err := strconv.ParseInt(v[j+1:], 10, 64)
	if err != nil || s.now().Unix() > exp {
		return "", false
	}
	u, err := base64.RawURLEncoding.DecodeString(v[:j])
	return string(u), err == nil
}

type keyUserT struct{}

var keyUser keyUserT

// UserFrom returns the authenticated user of a request (nil without identities).
func UserFrom(ctx context.Context) *events.User {
	u, _ := ctx.Value(keyUser).(*events.User)
	return u
}

// WithUser marks ctx as authenticated as u, for in-process callers that authenticated the user
// by other means (the NATS service serving a query through the HTTP handlers).
func WithUser(ctx context.Context, u *events.User) context.Context {
	return context.WithValue(ctx, keyUser, u)
}

// public routes need no credential.
var public = map[string]bool{"GET /healthz": true, "GET /readyz": true, "POST /v1/session": true, "DELETE /v1/session": true} // read-only

// authenticate finds the caller from a bearer token or a session cookie. Cookie-authenticated
// writes must carry the CSRF token that POST /v1/session returned.
func (s *Server) authenticate(r *http.Request) (*events.User, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, events.Errorf(events.KindUnauthenticated, "invalid_authorization", "Authorization", "use Authorization: Bearer <token>")
		}
		return s.Auth.Authenticate(strings.TrimSpace(tok))
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || s.Sessions == nil {
		return nil, events.Errorf(events.KindUnauthenticated, "unauthenticated", "Authorization", "send Authorization: Bearer <token> or sign in (POST /v1/session)")
	}
	id, ok := s.Sessions.check(c.Value)
	if !ok {
		return nil, events.Errorf(events.KindUnauthenticated, "session_invalid", "", "session expired or invalid; sign in again")
	}
	u, ok := s.Auth.Lookup(id)
	if !ok {
		return nil, events.Errorf(events.KindUnauthenticated, "session_invalid", "", "session user unknown")
	}
	if u.Disabled {
		return nil, events.Errorf(events.KindUnauthenticated, "user_disabled", "", "user %s is disabled", id)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		want := s.Sessions.mac("csrf", c.Value)
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(want)) != 1 {
			return nil, events.Errorf(events.KindForbidden, "csrf", csrfHeader, "a cookie-authenticated write needs the %s header from POST /v1/session", csrfHeader)
		}
	}
	return u, nil
}

// limiter hands out one token bucket per identity.
type limiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

func (l *limiter) allow(id string) bool {
	if l == nil || l.rate == 0 {
		return true
	}
	l.mu.Lock()
	b, ok := l.m[id]
	if !ok {
		if len(l.m) > 100000 {
			l.m = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.m[id] = b
	}
	l.mu.Unlock()
	return b.Allow()
}

type sessionReq struct {
	Token string `json:"token"`
}

// session exchanges a token for an HttpOnly, SameSite=Strict cookie (browsers' EventSource
// sends no headers) and returns the CSRF token for writes.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	if s.Auth == nil || s.Sessions == nil {
		writeError(w, r, events.Errorf(events.KindNotFound, "no_identities", "", "this server runs without identities"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err != nil {
		writeError(w, r, err)
		return
	}
	var req sessionReq
	if len(body) > 0 {
		if err := strictJSON(body, &req); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if req.Token == "" {
		req.Token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	u, err := s.Auth.Authenticate(req.Token)
	if err != nil {
		writeError(w, r, err)
		return
	}
	cookie, csrf := s.Sessions.issue(u.ID)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: cookie, Path: "/", HttpOnly: true, Secure: s.Sessions.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	writeJSON(w, 200, map[string]any{"user": u, "csrf": csrf, "expires_in": int(sessionTTL.Seconds())})
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: s.Sessions != nil && s.Sessions.Secure, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	u := UserFrom(r.Context())
	if u == nil {
		writeError(w, r, events.Errorf(events.KindUnauthenticated, "unauthenticated", "", "no identity"))
		return
	}
	writeJSON(w, 200, u)
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return events.Errorf(events.KindInvalid, "malformed_json", "", "malformed JSON: %v", err)
	}
	return nil
}
