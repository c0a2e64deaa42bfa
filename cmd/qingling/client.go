package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"qingling/events"
	"qingling/handlers/client"
)

// clientOpts are the flags every client verb takes.
type clientOpts struct {
	server, natsURL, actor, token, nkey, outbox string
	json                                        bool
	retries                                     int
	timeout                                     time.Duration
}

func (o *clientOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.server, "server", envOr("QINGLING_SERVER", "http://127.0.0.1:8080"), "Qingling HTTP server")
	fs.StringVar(&o.natsURL, "nats", envOr("QINGLING_NATS", ""), "talk to the NATS service at this URL instead of HTTP")
	fs.StringVar(&o.actor, "actor", envOr("QINGLING_ACTOR", ""), "acting user (X-Qingling-Actor over HTTP without a token; the subject's user over NATS)")
	fs.StringVar(&o.token, "token", envOr("QINGLING_TOKEN", ""), "API token (servers with identities, HTTP)")
	fs.StringVar(&o.nkey, "nkey", envOr("QINGLING_NKEY", ""), "file with the user's nkey seed: signs every command (HTTP and NATS) and signs in over NATS")
	fs.StringVar(&o.outbox, "outbox", envOr("QINGLING_OUTBOX", ""), "offline outbox directory: a command that cannot reach the server waits there for `qingling sync`")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	fs.IntVar(&o.retries, "retries", 3, "attempts per request when the server does not answer (same command id each time)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up after this long")
}

// cli is one client verb's run.
type cli struct {
	o              clientOpts
	stdout, stderr io.Writer
	cat            *events.Catalog
}

func clientCmd(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	cat, err := events.LoadCatalog()
	if err != nil {
		fmt.Fprintln(stderr, "qingling:", err)
		return exitFailure
	}
	c.cat = cat
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.o.register(fs)
	switch verb {
	case "show", "history":
		return c.query(ctx, verb, fs, args)
	case "sync":
		return c.sync(ctx, fs, args)
	case "list":
		// `list <id> --level …` lists a hazard for supervision (挂牌督办); `list [filters]` lists hazards
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			return c.command(ctx, verb, fs, args)
		}
		return c.list(ctx, fs, args)
	}
	return c.command(ctx, verb, fs, args)
}

// parse reads flags and positional arguments in any order.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// connect builds the client; a NATS server that cannot be reached gives a nil client and the
// error (a command may still be queued).
func (c *cli) connect() (*client.Client, error) {
	retry := client.Retry{Attempts: max(c.o.retries, 1)}
	if c.o.natsURL != "" {
		if c.o.actor == "" {
			return nil, events.Errorf(events.KindInvalid, "actor_required", "actor", "over NATS, name yourself with --actor (your user name)")
		}
		seed, err := c.seed()
		if err != nil {
			return nil, err
		}
		t, err := client.DialNATS(c.o.natsURL, c.o.actor, seed)
		if err != nil {
			return nil, err
		}
		return &client.Client{T: t, Actor: c.o.actor, Retry: retry}, nil
	}
	t, err := client.NewHTTP(c.o.server)
	if err != nil {
		return nil, err
	}
	t.Token = c.o.token
	if c.o.token == "" && c.o.actor == "" {
		return nil, events.Errorf(events.KindInvalid, "actor_required", "actor", "name yourself with --actor (or give --token)")
	}
	return &client.Client{T: t, Actor: c.o.actor, Retry: retry}, nil
}

// seed reads the --nkey file ("" without one).
func (c *cli) seed() (string, error) {
	if c.o.nkey == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.o.nkey)
	if err != nil {
		return "", events.Errorf(events.KindInvalid, "invalid_nkey", "nkey", "%v", err)
	}
	return string(b), nil
}

// signer is the signer of the --nkey seed's user (nil without --nkey): every command is then
// signed (README, "Signatures"). The user is --actor; over HTTP with a token and no --actor,
// the server is asked whose token it is. cl may be nil (the server could not be reached).
func (c *cli) signer(ctx context.Context, cl *client.Client) (*client.Signer, error) {
	seed, err := c.seed()
	if seed == "" || err != nil {
		return nil, err
	}
	actor := c.o.actor
	if actor == "" && cl != nil && c.o.token != "" {
		if t, ok := cl.T.(*client.HTTP); ok {
			u, err := t.Me(ctx)
			if err != nil && !client.Unreachable(err) {
				return nil, err
			}
			actor = u.ID
		}
	}
	if actor == "" {
		return nil, events.Errorf(events.KindInvalid, "actor_required", "actor",
			"to sign with --nkey, name the key's user with --actor (the server could not be asked whose token this is)")
	}
	return client.NewSigner(c.cat, actor, seed)
}

// commandFlags are the flags of one action, and how they become its payload.
type commandFlags struct {
	occurredAt, commandID string
	expectedVersion       int
	photos                stringsFlag
	payload               func(set map[string]bool) (any, error)
}

func (c *cli) commandFlags(verb string, fs *flag.FlagSet) *commandFlags {
	cf := &commandFlags{}
	fs.StringVar(&cf.occurredAt, "occurred-at", "", "when it happened in the field (RFC 3339; default: now when queued, else when recorded)")
	fs.StringVar(&cf.commandID, "command-id", "", "command id (UUID) to resend an earlier command; default: a new one")
	fs.IntVar(&cf.expectedVersion, "expected-version", 0, "refuse (409) unless the hazard is at this version")
	photo := func() {
		fs.Var(&cf.photos, "photo", "evidence file (photo, PDF, MP4) to upload and attach; repeatable")
	}
	str := func(name, usage string) *string { return fs.String(name, "", usage) }
	switch verb {
	case events.ActReport:
		sector, region := str("sector", "sector: mine chem fireworks trade forest gas"), str("region", "county code (GB/T 2260), e.g. 530102")
		site, credit, siteID := str("site", "site name"), str("credit-code", "unified social credit code of the site"), str("site-id", "site id of a place without a credit code")
		lat, lon, addr := fs.Float64("lat", 0, "latitude"), fs.Float64("lon", 0, "longitude"), str("address", "address")
		grade := fs.String("grade", events.GradeGeneral, "general or major")
		criterion, desc := str("criterion", "criterion code (required for major), e.g. chem-2017-05"), str("description", "what was found")
		fs.StringVar(desc, "d", "", "short for --description")
		source := fs.String("source", "inspection", "inspection, self-check, third-party or tip-off")
		deadline, id, supersedes := str("deadline", "rectification deadline (2026-04-30 or RFC 3339)"), str("id", "hazard id (UUID); default: derived from the command id"), str("supersedes", "id of the withdrawn hazard this one replaces")
		photo()
		cf.payload = func(set map[string]bool) (any, error) {
			r := events.Reported{Sector: *sector, Region: *region, Site: events.Site{Name: *site, CreditCode: *credit, ID: *siteID},
				Grade: *grade, Criterion: *criterion, Description: *desc, Source: *source, Deadline: *deadline, Supersedes: *supersedes}
			if set["lat"] || set["lon"] {
				r.Location = &events.Location{Lat: *lat, Lon: *lon, Address: *addr}
			}
			return reportPayload{ID: *id, Reported: r}, nil
		}
	case events.ActAmend:
		desc, site := str("description", "corrected description"), str("site-name", "corrected site name")
		lat, lon, addr := fs.Float64("lat", 0, "latitude"), fs.Float64("lon", 0, "longitude"), str("address", "address")
		cf.payload = func(set map[string]bool) (any, error) {
			var a events.Amended
			if set["description"] {
				a.Description = desc
			}
			if set["site-name"] {
				a.Site = &events.Site{Name: *site}
			}
			if set["lat"] || set["lon"] || set["address"] {
				a.Location = &events.Location{Lat: *lat, Lon: *lon, Address: *addr}
			}
			return a, nil
		}
	case events.ActGrade:
		grade, criterion, reason := str("grade", "general or major"), str("criterion", "criterion code (major)"), str("reason", "why")
		cf.payload = func(map[string]bool) (any, error) {
			return events.Graded{Grade: *grade, Criterion: *criterion, Reason: *reason}, nil
		}
	case events.ActList:
		level, auth, doc, deadline := str("level", "county, prefecture or province"), str("authority", "listing authority"), str("document", "document number, e.g. 昆应急〔2026〕3号"), str("deadline", "listing deadline")
		cf.payload = func(map[string]bool) (any, error) {
			return events.Listed{Level: *level, Authority: *auth, Document: *doc, Deadline: *deadline}, nil
		}
	case events.ActPlan:
		resp, meas, funds, deadline, cont := str("responsible", "责任 responsible person"), str("measures", "措施 measures"), str("funds", "资金 funds"), str("deadline", "时限 deadline"), str("contingency", "预案 contingency plan")
		cf.payload = func(map[string]bool) (any, error) {
			return events.Planned{Responsible: *resp, Measures: *meas, Funds: *funds, Deadline: *deadline, Contingency: *cont}, nil
		}
	case events.ActProgress:
		note, pct := str("note", "what was done"), fs.Int("percent", 0, "percent done, 0–100")
		photo()
		cf.payload = func(map[string]bool) (any, error) { return events.Progressed{Note: *note, Percent: *pct}, nil }
	case events.ActExtend:
		deadline, reason := str("deadline", "new deadline"), str("reason", "why")
		cf.payload = func(map[string]bool) (any, error) { return events.Extended{Deadline: *deadline, Reason: *reason}, nil }
	case events.ActComplete:
		note := str("note", "note")
		photo()
		cf.payload = func(map[string]bool) (any, error) { return events.Completed{Note: *note}, nil }
	case events.ActReject:
		reason := str("reason", "why verification failed")
		photo()
		cf.payload = func(map[string]bool) (any, error) { return events.VerifyFailed{Reason: *reason}, nil }
	case events.ActClear:
		method, note := fs.String("method", "on-site", "verification method"), str("note", "note")
		photo()
		cf.payload = func(map[string]bool) (any, error) { return events.Cleared{Method: *method, Note: *note}, nil }
	case events.ActReopen:
		reason, deadline := str("reason", "why"), str("deadline", "new deadline")
		cf.payload = func(map[string]bool) (any, error) { return events.Reopened{Reason: *reason, Deadline: *deadline}, nil }
	case events.ActWithdraw:
		reason := str("reason", "why it was entered in error")
		cf.payload = func(map[string]bool) (any, error) { return events.Withdrawn{Reason: *reason}, nil }
	}
	return cf
}

// reportPayload is a report's body with its optional client id.
type reportPayload struct {
	ID string `json:"id,omitempty"`
	events.Reported
}

func withEvidence(p any, ev []events.Evidence) any {
	if len(ev) == 0 {
		return p
	}
	switch v := p.(type) {
	case reportPayload:
		v.Evidence = ev
		return v
	case events.Progressed:
		v.Evidence = ev
		return v
	case events.Completed:
		v.Evidence = ev
		return v
	case events.VerifyFailed:
		v.Evidence = ev
		return v
	case events.Cleared:
		v.Evidence = ev
		return v
	}
	return p
}

func (c *cli) command(ctx context.Context, verb string, fs *flag.FlagSet, args []string) int {
	cf := c.commandFlags(verb, fs)
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	id := ""
	if verb != events.ActReport {
		if len(pos) != 1 {
			fmt.Fprintf(c.stderr, "usage: qingling %s <hazard-id> [flags]\n", verb)
			return exitUsage
		}
		id = pos[0]
	} else if len(pos) != 0 {
		fmt.Fprintf(c.stderr, "qingling report: unexpected argument %q (flags only)\n", pos[0])
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	payload, err := cf.payload(set)
	if err != nil {
		return c.fail(err)
	}
	var files []client.File
	for _, p := range cf.photos {
		f, err := client.LoadFile(p)
		if err != nil {
			return c.fail(err)
		}
		files = append(files, f)
	}
	payload = withEvidence(payload, client.Evidence(files))
	opts := client.Opts{CommandID: cf.commandID, ExpectedVersion: cf.expectedVersion}
	if cf.occurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, cf.occurredAt)
		if err != nil {
			return c.fail(events.Errorf(events.KindInvalid, "invalid_occurred_at", "occurred-at", "--occurred-at must be an RFC 3339 time, e.g. 2026-03-02T09:30:00+08:00"))
		}
		opts.OccurredAt = t
	}
	if rp, ok := payload.(reportPayload); ok {
		id, payload = rp.ID, rp.Reported
	}
	cmd, err := client.NewCommand(verb, id, payload, opts)
	if err != nil {
		return c.fail(err)
	}
	cmd.Actor = c.o.actor
	ctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()

	var box *client.Outbox
	if c.o.outbox != "" {
		box = &client.Outbox{Dir: c.o.outbox, Catalog: c.cat}
	}
	cl, err := c.connect()
	if err != nil && (box == nil || !client.Unreachable(err)) {
		return c.fail(err)
	}
	signer, serr := c.signer(ctx, cl)
	if serr != nil {
		if cl != nil {
			cl.Close()
		}
		return c.fail(serr)
	}
	if signer != nil {
		// signed once, here: the outbox keeps these bytes and every attempt sends them
		if serr := signer.SignCommand(&cmd); serr != nil {
			if cl != nil {
				cl.Close()
			}
			return c.fail(serr)
		}
	}
	if err != nil {
		if box != nil && client.Unreachable(err) {
			e, qerr := box.Queue(cmd, files)
			var refused *events.Error
			if errors.As(qerr, &refused) {
				return c.fail(refused)
			}
			if qerr != nil {
				return c.fail(fmt.Errorf("%w; and it could not be queued: %v", err, qerr))
			}
			return c.queued(&e, err)
		}
		return c.fail(err)
	}
	defer cl.Close()
	var res client.Result
	if box != nil {
		var e *client.Entry
		res, e, err = box.Deliver(ctx, cl, cmd, files)
		if e != nil {
			return c.queued(e, err)
		}
	} else {
		for _, f := range files {
			if _, err = cl.PutEvidence(ctx, f.Data, f.Name); err != nil {
				return c.fail(err)
			}
		}
		res, err = cl.Send(ctx, cmd)
	}
	if err != nil {
		return c.fail(err)
	}
	if c.o.json {
		return c.printJSON(res.Hazard)
	}
	c.printResult(verb, res)
	return exitOK
}

// queued tells the user a command waits in the outbox: the exit code says the server was not
// reached, the message that nothing is lost.
func (c *cli) queued(e *client.Entry, cause error) int {
	if c.o.json {
		c.printJSON(map[string]any{"queued": true, "entry": e.Path, "hazard_id": e.HazardID, "command_id": e.CommandID,
			"action": e.Action, "reason": events.ErrorOf(cause).Message})
		return exitUnreachable
	}
	at, _ := e.OccurredAt()
	fmt.Fprintf(c.stdout, "已暂存 queued  %s %s  hazard %s\n", actionZh(e.Action), e.Action, e.HazardID)
	fmt.Fprintf(c.stdout, "  the server could not be reached (%s)\n", events.ErrorOf(cause).Message)
	fmt.Fprintf(c.stdout, "  kept in %s (command %s, occurred_at %s); send it with: qingling sync --outbox %s\n",
		e.Path, e.CommandID, events.FormatInstant(at), c.o.outbox)
	return exitUnreachable
}

func (c *cli) query(ctx context.Context, verb string, fs *flag.FlagSet, args []string) int {
	minSeq := fs.Uint64("min-seq", 0, "wait until the server has applied this seq (read your writes)")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintf(c.stderr, "usage: qingling %s <hazard-id> [flags]\n", verb)
		return exitUsage
	}
	cl, err := c.connect()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()
	if verb == "show" {
		h, err := cl.Show(ctx, pos[0], *minSeq)
		if err != nil {
			return c.fail(err)
		}
		if c.o.json {
			return c.printJSON(h)
		}
		c.printHazard(&h)
		return exitOK
	}
	hist, err := cl.History(ctx, pos[0])
	if err != nil {
		return c.fail(err)
	}
	if c.o.json {
		return c.printJSON(map[string]any{"id": pos[0], "events": hist})
	}
	c.printHistory(pos[0], hist)
	return exitOK
}

var listFilters = []string{"sector", "region", "status", "grade", "overdue", "listed", "source", "site", // read-only
	"found_from", "found_to", "recorded_from", "recorded_to", "cursor", "limit", "min_seq"}

func (c *cli) list(ctx context.Context, fs *flag.FlagSet, args []string) int {
	vals := map[string]*string{}
	for _, f := range listFilters {
		vals[f] = fs.String(strings.ReplaceAll(f, "_", "-"), "", "filter: "+f)
	}
	all := fs.Bool("all", false, "follow the cursor to the end")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) > 0 {
		fmt.Fprintln(c.stderr, "usage: qingling list [filters]   (or: qingling list <hazard-id> --level … to list it for supervision)")
		return exitUsage
	}
	q := url.Values{}
	for k, v := range vals {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	cl, err := c.connect()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()
	var page client.Page
	for {
		p, err := cl.Hazards(ctx, q)
		if err != nil {
			return c.fail(err)
		}
		page.Items, page.Next = append(page.Items, p.Items...), p.Next
		if !*all || p.Next == "" {
			break
		}
		q.Set("cursor", p.Next)
	}
	if c.o.json {
		return c.printJSON(page)
	}
	c.printList(page)
	return exitOK
}

func (c *cli) sync(ctx context.Context, fs *flag.FlagSet, args []string) int {
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) > 0 || c.o.outbox == "" {
		fmt.Fprintln(c.stderr, "usage: qingling sync --outbox DIR [--server URL | --nats URL]")
		return exitUsage
	}
	box := &client.Outbox{Dir: c.o.outbox}
	entries, err := box.Entries()
	if err != nil {
		return c.fail(err)
	}
	if len(entries) == 0 {
		if c.o.json {
			return c.printJSON(client.SyncReport{})
		}
		fmt.Fprintf(c.stdout, "发件箱为空 outbox %s is empty\n", c.o.outbox)
		return exitOK
	}
	if c.o.actor == "" && len(entries) > 0 {
		c.o.actor = entries[0].Actor // each entry is sent as the one who queued it
	}
	cl, err := c.connect()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	// entries queued signed are sent as they are; unsigned ones of the key's user are signed
	if cl.Signer, err = c.signer(ctx, cl); err != nil {
		return c.fail(err)
	}
	bar := newProgress(c.stderr, "同步 sync")
	rep, err := box.Sync(ctx, cl, func(n, total int) {
		if n < total { // Done draws the last
			bar.Set(n, total)
		}
	})
	bar.Done()
	if c.o.json {
		c.printJSON(map[string]any{"total": rep.Total, "sent": rep.Sent, "replayed": rep.Replayed, "rejected": rep.Rejected, "left": rep.Left})
	} else {
		fmt.Fprintf(c.stdout, "已同步 synced %d of %d: %d recorded now, %d already recorded, %d rejected, %d left\n",
			rep.Sent+rep.Replayed+len(rep.Rejected), rep.Total, rep.Sent, rep.Replayed, len(rep.Rejected), rep.Left)
		for _, e := range rep.Rejected {
			fmt.Fprintf(c.stdout, "  被拒 rejected %s %s %s: %s: %s (kept in %s/rejected)\n", filepathBase(e.Path), e.Action, e.HazardID, e.Error.Code, e.Error.Message, c.o.outbox)
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(c.stderr, "qingling sync: interrupted; %d left in %s — run it again, nothing is sent twice\n", rep.Left, c.o.outbox)
			return exitFailure
		}
		code := c.fail(err)
		fmt.Fprintf(c.stderr, "  %d left in %s — run qingling sync again when the server is reachable\n", rep.Left, c.o.outbox)
		return code
	}
	if len(rep.Rejected) > 0 {
		return exitCodeOf(rep.Rejected[0].Error)
	}
	return exitOK
}

func filepathBase(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// exitCodeOf maps an error to the exit code that says what happened.
func exitCodeOf(err error) int {
	if err == nil {
		return exitOK
	}
	switch events.ErrorOf(err).Kind {
	case events.KindInvalid, events.KindTooLarge:
		return exitInvalid
	case events.KindNotFound:
		return exitNotFound
	case events.KindConflict:
		return exitConflict
	case events.KindRule:
		return exitRefused
	case events.KindUnauthenticated, events.KindForbidden:
		return exitDenied
	case events.KindUnavailable, events.KindRateLimited:
		return exitUnreachable
	}
	return exitFailure
}

var kindZh = map[events.Kind]string{ // read-only lookup table
	events.KindInvalid:         "输入有误 invalid",
	events.KindTooLarge:        "过大 too large",
	events.KindNotFound:        "未找到 not found",
	events.KindConflict:        "冲突 conflict",
	events.KindRule:            "被规则拒绝 refused by rule",
	events.KindUnauthenticated: "未认证 not signed in",
	events.KindForbidden:       "无权限 not permitted",
	events.KindUnavailable:     "服务不可用 unavailable",
	events.KindRateLimited:     "请求过多 rate limited",
	events.KindInternal:        "失败 failed",
}

func (c *cli) fail(err error) int {
	e := events.ErrorOf(err)
	if e.Kind == events.KindInternal && e.Code == "internal" && e.Err != nil {
		e = &events.Error{Kind: events.KindInternal, Code: "failed", Message: e.Err.Error()}
	}
	if c.o.json {
		c.printJSON(map[string]any{"error": e})
		return exitCodeOf(e)
	}
	label := kindZh[e.Kind]
	if e.Code == "unreachable" {
		label = "无法连接 unreachable"
	}
	fmt.Fprintf(c.stderr, "qingling: %s: %s: %s", label, e.Code, e.Message)
	if e.Field != "" {
		fmt.Fprintf(c.stderr, " (%s)", e.Field)
	}
	fmt.Fprintln(c.stderr)
	return exitCodeOf(e)
}

func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(c.stderr, "qingling:", err)
		return exitFailure
	}
	return exitOK
}
