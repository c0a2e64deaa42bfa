package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"qingling/events"
	"qingling/handlers/evidence"
)

// HTTP is the transport over the HTTP API.
type HTTP struct {
	Base   string // e.g. http://127.0.0.1:8080
	Token  string // bearer token (servers with identities); "" sends the actor in X-Qingling-Actor
	Client *http.Client
}

var _ Transport = (*HTTP)(nil)

// NewHTTP returns a transport to the server at base.
func NewHTTP(base string) (*HTTP, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, events.Errorf(events.KindInvalid, "invalid_server", "server", "the server URL must be http:// or https:// with a host, e.g. http://127.0.0.1:8080")
	}
	return &HTTP{Base: strings.TrimRight(base, "/"), Client: &http.Client{Timeout: 60 * time.Second}}, nil
}

// Close releases idle connections.
func (t *HTTP) Close() error { t.Client.CloseIdleConnections(); return nil }

// Call sends one request.
func (t *HTTP) Call(ctx context.Context, r Request) (Response, error) {
	method, path := http.MethodGet, ""
	esc := url.PathEscape
	switch {
	case r.Verb == events.ActReport:
		method, path = http.MethodPost, "/v1/hazards"
	case r.Command():
		method, path = http.MethodPost, "/v1/hazards/"+esc(r.HazardID)+"/"+r.Verb
	case r.Verb == VerbShow:
		path = "/v1/hazards/" + esc(r.HazardID)
	case r.Verb == VerbHistory:
		path = "/v1/hazards/" + esc(r.HazardID) + "/history"
	case r.Verb == VerbHazards:
		path = "/v1/hazards"
	default:
		return Response{}, events.Errorf(events.KindInvalid, "unknown_action", "verb", "unknown verb %q", r.Verb)
	}
	if len(r.Query) > 0 {
		path += "?" + r.Query.Encode()
	}
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.Base+path, body)
	if err != nil {
		return Response{}, err
	}
	t.identify(req, r.Actor)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		if r.CommandID != "" {
			req.Header.Set("Idempotency-Key", r.CommandID)
		}
	}
	status, hdr, data, err := t.do(ctx, req)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: status, Replayed: hdr.Get("Idempotent-Replayed") == "true", Body: data}, nil
}

// identify names the caller: the bearer token, or without one the actor header.
func (t *HTTP) identify(req *http.Request, actor string) {
	if t.Token != "" {
		req.Header.Set("Authorization", "Bearer "+t.Token)
	} else if actor != "" {
		req.Header.Set("X-Qingling-Actor", actor)
	}
}

func (t *HTTP) do(ctx context.Context, req *http.Request) (int, http.Header, []byte, error) {
	res, err := t.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return 0, nil, nil, ctx.Err()
		}
		return 0, nil, nil, unreachable("cannot reach %s: %v", t.Base, shortNetErr(err))
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, evidence.MaxSize+1<<20))
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return 0, nil, nil, ctx.Err()
		}
		return 0, nil, nil, unreachable("the answer from %s broke off: %v", t.Base, err)
	}
	if res.StatusCode >= 400 {
		return res.StatusCode, res.Header, data, errorFromBody(res.StatusCode, data)
	}
	return res.StatusCode, res.Header, data, nil
}

// Me asks the server whose the token is (GET /v1/me): the user id a signer signs as.
func (t *HTTP) Me(ctx context.Context) (events.User, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Base+"/v1/me", nil)
	if err != nil {
		return events.User{}, err
	}
	t.identify(req, "")
	_, _, body, err := t.do(ctx, req)
	if err != nil {
		return events.User{}, err
	}
	var u events.User
	if err := json.Unmarshal(body, &u); err != nil || u.ID == "" {
		return u, events.Errorf(events.KindInternal, "bad_response", "", "the server's answer to /v1/me names no user")
	}
	return u, nil
}

// PutEvidence uploads a file: PUT /v1/evidence.
func (t *HTTP) PutEvidence(ctx context.Context, actor string, data []byte, name string) (evidence.Info, error) {
	u := t.Base + "/v1/evidence"
	if name != "" {
		u += "?" + url.Values{"name": {name}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		return evidence.Info{}, err
	}
	t.identify(req, actor)
	req.Header.Set("Content-Type", "application/octet-stream")
	_, _, body, err := t.do(ctx, req)
	if err != nil {
		return evidence.Info{}, err
	}
	var info evidence.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return info, events.Errorf(events.KindInternal, "bad_response", "", "the server's answer could not be read: %v", err)
	}
	return info, nil
}

// GetEvidence downloads a file: GET /v1/evidence/{sha256}.
func (t *HTTP) GetEvidence(ctx context.Context, sha256 string) ([]byte, evidence.Info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Base+"/v1/evidence/"+url.PathEscape(sha256), nil)
	if err != nil {
		return nil, evidence.Info{}, err
	}
	t.identify(req, "")
	_, hdr, body, err := t.do(ctx, req)
	if err != nil {
		return nil, evidence.Info{}, err
	}
	return body, evidence.Info{SHA256: sha256, Size: int64(len(body)), ContentType: hdr.Get("Content-Type")}, nil
}

// shortNetErr drops the request line from a *url.Error ("Post "http://…": dial tcp …").
func shortNetErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%w", ue.Err)
	}
	return err
}
