// Package client is the Go client of Qingling for enforcement tools (a field app, a county
// office script, the qingling CLI): typed calls for every command and query over HTTP or over
// NATS behind one Transport, command ids generated for the caller, retries with backoff that
// reuse them, evidence uploads, and an offline outbox (outbox.go).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"qingling/events"
	"qingling/handlers/evidence"
	"qingling/handlers/httpapi"
)

// Hazard is a hazard's state as the server shows it.
type Hazard = httpapi.HazardView

// HistoryItem is one event of a hazard's history; occurred_at (field time) and recorded_at
// (record time) are apart.
type HistoryItem = httpapi.HistoryItem

// Query verbs (the commands are events.Actions).
const (
	VerbShow    = "show"
	VerbHistory = "history"
	VerbHazards = "hazards" // the hazard list query (over NATS: verb "list" without an id)
)

// Request is one call as a Transport carries it.
type Request struct {
	Actor     string
	Verb      string // an action (events.Actions), VerbShow, VerbHistory or VerbHazards
	HazardID  string // actions, show, history
	CommandID string // commands
	Body      []byte // commands: the HTTP API's JSON body
	Query     url.Values
}

// Command reports whether the request is a command.
func (r *Request) Command() bool { return events.ActionType(r.Verb) != "" }

// Response is a Transport's successful answer.
type Response struct {
	Status   int // the HTTP status of the answer (201 for a new report)
	Replayed bool
	Body     []byte
}

// Transport carries requests to one Qingling server: HTTP or NATS. A server that cannot be
// reached is an error for which Unreachable is true; a refusal is an *events.Error whose Kind
// is the HTTP API's.
type Transport interface {
	Call(ctx context.Context, r Request) (Response, error)
	PutEvidence(ctx context.Context, actor string, data []byte, name string) (evidence.Info, error)
	GetEvidence(ctx context.Context, sha256 string) ([]byte, evidence.Info, error)
	Close() error
}

// Unreachable reports an error that means the server was not reached or did not answer.
func Unreachable(err error) bool {
	var e *events.Error
	return errors.As(err, &e) && e.Code == codeUnreachable
}

const codeUnreachable = "unreachable"

func unreachable(format string, args ...any) error {
	return events.Errorf(events.KindUnavailable, codeUnreachable, "", format, args...)
}

// Retryable reports an error worth retrying with the same command id: unreachable, the store
// unavailable, rate limited.
func Retryable(err error) bool {
	var e *events.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Kind == events.KindUnavailable || e.Kind == events.KindRateLimited
}

// Retry is the backoff policy. Every attempt of a command carries the same command id, so a
// retry after an answer that was lost is answered with the recorded result.
type Retry struct {
	Attempts int           // in all; default 4
	Base     time.Duration // first wait; default 250ms, doubled each time, with jitter
	Max      time.Duration // longest wait; default 4s
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 4
	}
	if r.Base <= 0 {
		r.Base = 250 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 4 * time.Second
	}
	return r
}

func (r Retry) wait(attempt int) time.Duration {
	d := r.Base << min(attempt-1, 20)
	if d > r.Max || d <= 0 {
		d = r.Max
	}
	return d/2 + rand.N(d/2+1) // equal jitter
}

// Client makes typed calls through a Transport as one user.
type Client struct {
	T     Transport
	Actor string // the acting user (X-Qingling-Actor over HTTP, the subject's user over NATS)
	Retry Retry
	// Signer, when set, signs every command of its user before the first attempt (sign.go);
	// a command that is signed already is sent byte for byte as it is.
	Signer *Signer
}

// New returns a client acting as actor.
func New(t Transport, actor string) *Client { return &Client{T: t, Actor: actor} }

// Close closes the transport.
func (c *Client) Close() error { return c.T.Close() }

func (c *Client) call(ctx context.Context, r Request) (Response, error) {
	p := c.Retry.withDefaults()
	for attempt := 1; ; attempt++ {
		res, err := c.T.Call(ctx, r)
		if err == nil || !Retryable(err) || attempt >= p.Attempts || ctx.Err() != nil {
			return res, err
		}
		t := time.NewTimer(p.wait(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return res, err
		case <-t.C:
		}
	}
}

// Opts are the fields every command may carry.
type Opts struct {
	CommandID       string    // default: a fresh UUIDv7, kept across retries
	OccurredAt      time.Time // when it happened in the field; zero: when the server records it
	ExpectedVersion int       // 0: none; else 409 version_conflict unless the hazard is at it
}

// Command is one command ready to send (or to queue): its body is the HTTP API's, with the
// command id in it, so every transport and every retry sends the same bytes.
type Command struct {
	Action    string          `json:"action"`
	HazardID  string          `json:"hazard_id"`
	CommandID string          `json:"command_id"`
	Actor     string          `json:"actor,omitempty"` // empty: the client's
	Body      json.RawMessage `json:"body"`
}

// NewCommand builds a command from its payload (an events payload such as events.Reported or
// *events.Planned, or any value that marshals to the action's body). A report without hazardID
// gets the id the server would derive from its command id.
func NewCommand(action, hazardID string, payload any, o Opts) (Command, error) {
	if events.ActionType(action) == "" {
		return Command{}, events.Errorf(events.KindInvalid, "unknown_action", "action", "unknown action %q", action)
	}
	cid := o.CommandID
	if cid == "" {
		cid = events.NewID()
	}
	if err := events.CanonicalUUID("command_id", cid); err != nil {
		return Command{}, err
	}
	if action == events.ActReport && hazardID == "" {
		hazardID = events.ReportID(cid)
	}
	if err := events.CanonicalUUID("id", hazardID); err != nil {
		return Command{}, err
	}
	fields := map[string]json.RawMessage{}
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return Command{}, err
		}
		if err := json.Unmarshal(b, &fields); err != nil {
			return Command{}, events.Errorf(events.KindInvalid, "invalid_payload", "", "the payload of %s must be a JSON object", action)
		}
	}
	set := func(k string, v any) { b, _ := json.Marshal(v); fields[k] = b }
	set("command_id", cid)
	if action == events.ActReport {
		set("id", hazardID)
	}
	if !o.OccurredAt.IsZero() {
		set("occurred_at", o.OccurredAt.Format(time.RFC3339Nano))
	}
	if o.ExpectedVersion > 0 {
		set("expected_version", o.ExpectedVersion)
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return Command{}, err
	}
	return Command{Action: action, HazardID: hazardID, CommandID: cid, Body: body}, nil
}

// OccurredAt returns the command's occurred_at, if it has one.
func (cmd *Command) OccurredAt() (time.Time, bool) {
	var m struct {
		OccurredAt string `json:"occurred_at"`
	}
	if json.Unmarshal(cmd.Body, &m) != nil || m.OccurredAt == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, m.OccurredAt)
	return t, err == nil
}

// StampOccurred sets occurred_at to t unless the command has one: a command that may wait in
// an outbox must carry its field time, and must carry the same one on every attempt.
func (cmd *Command) StampOccurred(t time.Time) error {
	if _, ok := cmd.OccurredAt(); ok {
		return nil
	}
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(cmd.Body, &fields); err != nil {
		return err
	}
	b, _ := json.Marshal(t.Format(time.RFC3339Nano))
	fields["occurred_at"] = b
	body, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	cmd.Body = body
	return nil
}

// Result of a command.
type Result struct {
	Hazard    Hazard
	CommandID string
	Status    int  // 201: a new report; 200 otherwise
	Replayed  bool // the command was already recorded; nothing was appended
}

// Send sends a command, retrying with the same command id (and the same bytes: a command is
// signed once, before the first attempt).
func (c *Client) Send(ctx context.Context, cmd Command) (Result, error) {
	if err := c.sign(&cmd); err != nil {
		return Result{CommandID: cmd.CommandID}, err
	}
	actor := cmd.Actor
	if actor == "" {
		actor = c.Actor
	}
	res, err := c.call(ctx, Request{Actor: actor, Verb: cmd.Action, HazardID: cmd.HazardID, CommandID: cmd.CommandID, Body: cmd.Body})
	if err != nil {
		return Result{CommandID: cmd.CommandID}, err
	}
	out := Result{CommandID: cmd.CommandID, Status: res.Status, Replayed: res.Replayed}
	if err := json.Unmarshal(res.Body, &out.Hazard); err != nil {
		return out, events.Errorf(events.KindInternal, "bad_response", "", "the server's answer is not a hazard: %v", err)
	}
	out.Replayed = out.Replayed || out.Hazard.Replayed
	return out, nil
}

// Do builds and sends one command.
func (c *Client) Do(ctx context.Context, action, hazardID string, payload any, o Opts) (Result, error) {
	cmd, err := NewCommand(action, hazardID, payload, o)
	if err != nil {
		return Result{}, err
	}
	return c.Send(ctx, cmd)
}

// Report records a finding. id may be empty (it is then derived from the command id).
func (c *Client) Report(ctx context.Context, id string, p events.Reported, o Opts) (Result, error) {
	return c.Do(ctx, events.ActReport, id, p, o)
}

// Amend corrects description, site name or location.
func (c *Client) Amend(ctx context.Context, id string, p events.Amended, o Opts) (Result, error) {
	return c.Do(ctx, events.ActAmend, id, p, o)
}

// Grade changes grade and criterion.
func (c *Client) Grade(ctx context.Context, id string, p events.Graded, o Opts) (Result, error) {
	return c.Do(ctx, events.ActGrade, id, p, o)
}

// List lists a major hazard for government supervision (挂牌督办).
func (c *Client) List(ctx context.Context, id string, p events.Listed, o Opts) (Result, error) {
	return c.Do(ctx, events.ActList, id, p, o)
}

// Plan records the rectification plan (五落实 for a major hazard).
func (c *Client) Plan(ctx context.Context, id string, p events.Planned, o Opts) (Result, error) {
	return c.Do(ctx, events.ActPlan, id, p, o)
}

// Progress records a rectification step.
func (c *Client) Progress(ctx context.Context, id string, p events.Progressed, o Opts) (Result, error) {
	return c.Do(ctx, events.ActProgress, id, p, o)
}

// Extend moves the deadline later.
func (c *Client) Extend(ctx context.Context, id string, p events.Extended, o Opts) (Result, error) {
	return c.Do(ctx, events.ActExtend, id, p, o)
}

// Complete declares the rectification done and asks for verification.
func (c *Client) Complete(ctx context.Context, id string, p events.Completed, o Opts) (Result, error) {
	return c.Do(ctx, events.ActComplete, id, p, o)
}

// Reject records a failed verification (验收不合格).
func (c *Client) Reject(ctx context.Context, id string, p events.VerifyFailed, o Opts) (Result, error) {
	return c.Do(ctx, events.ActReject, id, p, o)
}

// Clear confirms clear-to-zero (验收销号).
func (c *Client) Clear(ctx context.Context, id string, p events.Cleared, o Opts) (Result, error) {
	return c.Do(ctx, events.ActClear, id, p, o)
}

// Reopen reopens a cleared hazard found again.
func (c *Client) Reopen(ctx context.Context, id string, p events.Reopened, o Opts) (Result, error) {
	return c.Do(ctx, events.ActReopen, id, p, o)
}

// Withdraw withdraws a hazard entered in error.
func (c *Client) Withdraw(ctx context.Context, id string, p events.Withdrawn, o Opts) (Result, error) {
	return c.Do(ctx, events.ActWithdraw, id, p, o)
}

// Show returns a hazard's state with its details. minSeq > 0 waits until the server's read
// model has applied that seq (read your writes).
func (c *Client) Show(ctx context.Context, id string, minSeq uint64) (Hazard, error) {
	var h Hazard
	q := url.Values{}
	if minSeq > 0 {
		q.Set("min_seq", strconv.FormatUint(minSeq, 10))
	}
	err := c.query(ctx, Request{Verb: VerbShow, HazardID: id, Query: q}, &h)
	return h, err
}

// History returns a hazard's events in order.
func (c *Client) History(ctx context.Context, id string) ([]HistoryItem, error) {
	var out struct {
		Events []HistoryItem `json:"events"`
	}
	err := c.query(ctx, Request{Verb: VerbHistory, HazardID: id}, &out)
	return out.Events, err
}

// Page is one page of the hazard list.
type Page struct {
	Items []Hazard `json:"items"`
	Next  string   `json:"next"` // the cursor of the next page; empty at the end
}

// Hazards lists hazards; the filter takes the HTTP API's query parameters (sector, region,
// status, grade, overdue, listed, source, site, found_from, found_to, recorded_from,
// recorded_to, limit, cursor, min_seq).
func (c *Client) Hazards(ctx context.Context, filter url.Values) (Page, error) {
	var p Page
	err := c.query(ctx, Request{Verb: VerbHazards, Query: filter}, &p)
	return p, err
}

func (c *Client) query(ctx context.Context, r Request, v any) error {
	r.Actor = c.Actor
	res, err := c.call(ctx, r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res.Body, v); err != nil {
		return events.Errorf(events.KindInternal, "bad_response", "", "the server's answer could not be read: %v", err)
	}
	return nil
}

// PutEvidence stores a file (checked against the size and type limits first) and returns its
// SHA-256, retrying like a command (the same bytes are stored once).
func (c *Client) PutEvidence(ctx context.Context, data []byte, name string) (evidence.Info, error) {
	if _, err := evidence.Check(data); err != nil {
		return evidence.Info{}, err
	}
	p := c.Retry.withDefaults()
	for attempt := 1; ; attempt++ {
		info, err := c.T.PutEvidence(ctx, c.Actor, data, name)
		if err == nil || !Retryable(err) || attempt >= p.Attempts || ctx.Err() != nil {
			return info, err
		}
		t := time.NewTimer(p.wait(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return info, err
		case <-t.C:
		}
	}
}

// GetEvidence fetches a stored file and checks that its bytes match their name.
func (c *Client) GetEvidence(ctx context.Context, sha256 string) ([]byte, evidence.Info, error) {
	if err := evidence.CheckSum(sha256); err != nil {
		return nil, evidence.Info{}, err
	}
	data, info, err := c.T.GetEvidence(ctx, sha256)
	if err != nil {
		return nil, info, err
	}
	if got := evidence.Sum(data); got != sha256 {
		return nil, info, events.Errorf(events.KindInternal, "evidence_corrupt", "sha256", "evidence %s arrived with SHA-256 %s", sha256, got)
	}
	return data, info, nil
}

// errorFromBody reads the API's {"error": {...}} for an answer with HTTP status code.
func errorFromBody(status int, body []byte) *events.Error {
	var b struct {
		Error *events.Error `json:"error"`
	}
	e := &events.Error{Code: "http_" + strconv.Itoa(status), Message: "the server answered " + strconv.Itoa(status)}
	if json.Unmarshal(body, &b) == nil && b.Error != nil && b.Error.Code != "" {
		e = b.Error
	}
	e.Kind = httpapi.KindOfStatus(status)
	return e
}
