package client

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/handlers/evidence"
	"qingling/handlers/identity"
	"qingling/handlers/natsapi"
)

// NATS is the transport over the NATS service (qingling.cmd.<user>.<verb>), evidence included
// (verbs upload and download).
type NATS struct {
	nc      *nats.Conn
	own     bool
	user    string        // who downloads (the subject's user)
	Timeout time.Duration // per request, default 20s

	mu     sync.Mutex
	denied string        // the last permissions violation the server reported (DialNATS only)
	notify chan struct{} // closed at each violation, so that a request stops waiting
}

var _ Transport = (*NATS)(nil)

// DialNATS connects to a NATS server as user (seed: its nkey seed, "" without identities); a
// server that cannot be reached is Unreachable.
func DialNATS(url, user, seed string, opts ...nats.Option) (*NATS, error) {
	uopts, err := NATSOptions(user, seed)
	if err != nil {
		return nil, err
	}
	t := &NATS{user: user, Timeout: 20 * time.Second, own: true, notify: make(chan struct{})}
	// A denied publish or subscribe arrives only as an asynchronous error, and the request
	// then times out: keep it, to say "not permitted" instead of "no answer".
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			t.mu.Lock()
			t.denied = err.Error()
			close(t.notify)
			t.notify = make(chan struct{})
			t.mu.Unlock()
		}
	})
	opts = append(append([]nats.Option{nats.Name("qingling-client"), nats.Timeout(5 * time.Second), onErr}, uopts...), opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			return nil, events.Errorf(events.KindUnauthenticated, "nats_auth", "nkey", "NATS at %s refused the credentials: %v", url, err)
		}
		return nil, unreachable("cannot reach NATS at %s: %v", url, err)
	}
	t.nc = nc
	return t, nil
}

// NewNATS uses an existing connection (it is not closed by Close); user downloads evidence.
func NewNATS(nc *nats.Conn, user string) *NATS {
	return &NATS{nc: nc, user: user, Timeout: 20 * time.Second}
}

// Close closes the connection if DialNATS opened it.
func (t *NATS) Close() error {
	if t.own {
		t.nc.Close()
	}
	return nil
}

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_@-]{0,63}$`) // compiled once; read-only

// Call sends one request and reads the reply's status and error headers.
func (t *NATS) Call(ctx context.Context, r Request) (Response, error) {
	verb, body, err := natsBody(r)
	if err != nil {
		return Response{}, err
	}
	hdr := nats.Header{}
	if r.CommandID != "" {
		hdr.Set("Idempotency-Key", r.CommandID)
	}
	reply, err := t.request(ctx, r.Actor, verb, body, hdr)
	if err != nil {
		return Response{}, err
	}
	status := 200
	if s := reply.Header.Get(natsapi.HeaderStatus); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			status = n
		}
	}
	return Response{Status: status, Replayed: reply.Header.Get(natsapi.HeaderReplayed) == "true", Body: reply.Data}, nil
}

// request sends one request and turns an error reply into the API's error.
func (t *NATS) request(ctx context.Context, actor, verb string, body []byte, hdr nats.Header) (*nats.Msg, error) {
	if !tokenRe.MatchString(actor) {
		return nil, events.Errorf(events.KindInvalid, "invalid_actor", "actor", "over NATS the user is a subject token: 1–64 letters, digits and _ @ - (no dots)")
	}
	msg := &nats.Msg{Subject: natsapi.Subject(actor, verb), Data: body, Header: hdr}
	rctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	t.mu.Lock()
	t.denied = ""
	notify := t.notify
	t.mu.Unlock()
	if notify != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-notify:
				cancel()
			case <-stop:
			}
		}()
	}
	reply, err := t.nc.RequestMsgWithContext(rctx, msg)
	if err != nil {
		t.mu.Lock()
		denied := t.denied
		t.mu.Unlock()
		if denied != "" {
			return nil, events.Errorf(events.KindForbidden, "nats_not_permitted", "subject", "NATS refused %s for this user: %s", msg.Subject, denied)
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, unreachable("no Qingling service answers on %s", msg.Subject)
		}
		return nil, unreachable("NATS request %s: %v (not permitted for this user, or no answer in time)", msg.Subject, err)
	}
	if s := reply.Header.Get(micro.ErrorCodeHeader); s != "" {
		n, _ := strconv.Atoi(s)
		if n == 0 {
			n = 500
		}
		return nil, errorFromBody(n, reply.Data)
	}
	return reply, nil
}

// natsBody maps a request to the service's verb and body: actions and hazard queries carry
// the hazard "id" in the body; the list query is "list" without one.
func natsBody(r Request) (string, []byte, error) {
	switch {
	case r.Verb == events.ActReport:
		return r.Verb, r.Body, nil
	case r.Command():
		fields := map[string]json.RawMessage{}
		if len(r.Body) > 0 {
			if err := json.Unmarshal(r.Body, &fields); err != nil {
				return "", nil, events.Errorf(events.KindInvalid, "malformed_json", "", "the command body must be one JSON object")
			}
		}
		id, _ := json.Marshal(r.HazardID)
		fields["id"] = id
		b, err := json.Marshal(fields)
		return r.Verb, b, err
	case r.Verb == VerbShow || r.Verb == VerbHistory:
		q := map[string]any{"id": r.HazardID}
		if s := r.Query.Get("min_seq"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return "", nil, events.Errorf(events.KindInvalid, "invalid_min_seq", "min_seq", "min_seq must be a stream sequence")
			}
			q["min_seq"] = n
		}
		b, err := json.Marshal(q)
		return r.Verb, b, err
	case r.Verb == VerbHazards:
		q := map[string]string{}
		for k, v := range r.Query {
			if len(v) > 0 {
				q[k] = v[0]
			}
		}
		b, err := json.Marshal(q)
		return natsapi.VerbList, b, err
	}
	return "", nil, events.Errorf(events.KindInvalid, "unknown_action", "verb", "unknown verb %q", r.Verb)
}

// NATSOptions are the connection options of a user: its private inbox prefix (servers with
// identities let a user read replies only there) and, with seed, its nkey.
func NATSOptions(user, seed string) ([]nats.Option, error) {
	opts := []nats.Option{nats.CustomInboxPrefix(identity.InboxPrefix(user))}
	if seed != "" {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
		if err != nil {
			return nil, events.Errorf(events.KindInvalid, "invalid_nkey", "nkey", "the nkey seed cannot be read: %v", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, events.Errorf(events.KindInvalid, "invalid_nkey", "nkey", "the nkey seed is not a user key: %v", err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	return opts, nil
}

// PutEvidence uploads a file through the service (verb upload); it must fit in one NATS
// message.
func (t *NATS) PutEvidence(ctx context.Context, actor string, data []byte, name string) (evidence.Info, error) {
	if limit := t.nc.MaxPayload() - 4096; int64(len(data)) > limit {
		return evidence.Info{}, events.Errorf(events.KindTooLarge, "too_large_for_nats", "evidence",
			"the file has %.1f MiB, more than one NATS message carries (%.1f MiB); upload it over HTTP (--server)", float64(len(data))/(1<<20), float64(limit)/(1<<20))
	}
	hdr := nats.Header{}
	if name != "" {
		hdr.Set(natsapi.HeaderEvidenceName, name)
	}
	reply, err := t.request(ctx, actor, natsapi.VerbUpload, data, hdr)
	if err != nil {
		return evidence.Info{}, err
	}
	var info evidence.Info
	if err := json.Unmarshal(reply.Data, &info); err != nil {
		return info, events.Errorf(events.KindInternal, "bad_response", "", "the server's answer could not be read: %v", err)
	}
	return info, nil
}

// GetEvidence downloads a file through the service (verb download).
func (t *NATS) GetEvidence(ctx context.Context, sha256 string) ([]byte, evidence.Info, error) {
	body, _ := json.Marshal(map[string]string{"sha256": sha256})
	reply, err := t.request(ctx, t.user, natsapi.VerbDownload, body, nats.Header{})
	if err != nil {
		return nil, evidence.Info{}, err
	}
	return reply.Data, evidence.Info{SHA256: sha256, Size: int64(len(reply.Data)), ContentType: reply.Header.Get("Content-Type")}, nil
}
