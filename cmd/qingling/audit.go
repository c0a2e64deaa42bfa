package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/handlers/app"
	"qingling/handlers/auditlog"
	"qingling/handlers/export"
	"qingling/handlers/identity"
	"qingling/projections/audit"
	"qingling/projections/ledger"
)

// Exit code of verify when it found a problem.
const exitProblems = 9

// logFlags say how an audit verb reaches the log: a running NATS (--nats, as an auditor with
// --user and --nkey), or the data directory of a stopped Qingling (--data) through an
// embedded server of its own.
type logFlags struct {
	natsURL, user, nkey, data, stream string
}

func (f *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.natsURL, "nats", envOr("QINGLING_NATS", ""), "read the log from this NATS server (e.g. nats://host:4222), as --user with --nkey")
	fs.StringVar(&f.user, "user", envOr("QINGLING_ACTOR", ""), "the NATS user (an auditor) with --nats")
	fs.StringVar(&f.nkey, "nkey", envOr("QINGLING_NKEY", ""), "file with the user's nkey seed, with --nats")
	fs.StringVar(&f.data, "data", envOr("QINGLING_DATA", "data"), "without --nats: the data directory of a stopped Qingling, opened read-only-in-spirit by an embedded server")
	fs.StringVar(&f.stream, "stream", "HAZARDS", "the log stream")
}

// open connects; close releases everything.
func (f *logFlags) open(ctx context.Context) (jetstream.JetStream, func(), error) {
	if f.natsURL != "" {
		opts := []nats.Option{nats.Name("qingling-audit")}
		if f.user != "" {
			opts = append(opts, nats.CustomInboxPrefix(identity.InboxPrefix(f.user)))
		}
		if f.nkey != "" {
			b, err := os.ReadFile(f.nkey)
			if err != nil {
				return nil, nil, err
			}
			kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
			if err != nil {
				return nil, nil, fmt.Errorf("nkey %s: %w", f.nkey, err)
			}
			pub, _ := kp.PublicKey()
			opts = append(opts, nats.Nkey(pub, kp.Sign))
		}
		nc, err := nats.Connect(f.natsURL, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("connect %s: %w", f.natsURL, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return js, nc.Close, nil
	}
	store := filepath.Join(f.data, "jetstream")
	if _, err := os.Stat(store); err != nil {
		return nil, nil, fmt.Errorf("no log at %s (give --data DIR of a Qingling, or --nats URL): %w", store, err)
	}
	unlock, err := lockData(f.data)
	if err != nil {
		return nil, nil, err
	}
	srv, err := jsstore.RunServer(jsstore.ServerConfig{Dir: store, ServerName: "qingling-audit", NoSync: true,
		Options: func(o *server.Options) { o.JetStreamMaxMemory = 64 << 20 }})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	nc, err := jsstore.ConnectInProcess(srv)
	if err != nil {
		srv.Shutdown()
		unlock()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		unlock()
		return nil, nil, err
	}
	return js, func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown(); unlock() }, nil
}

// rangeFlags select part of the log.
type rangeFlags struct {
	sector, region, hazard, from, to string
}

func (r *rangeFlags) register(fs *flag.FlagSet, hazard bool) {
	fs.StringVar(&r.sector, "sector", "", "only this sector (mine, chem, fireworks, trade, forest, gas)")
	fs.StringVar(&r.region, "region", "", "only this region (a GB/T 2260 code at any level)")
	if hazard {
		fs.StringVar(&r.hazard, "hazard", "", "only this hazard id")
	}
	fs.StringVar(&r.from, "from", "", "only events recorded at or after this date or instant")
	fs.StringVar(&r.to, "to", "", "only events recorded before this date or instant")
}

func (r *rangeFlags) times() (from, to time.Time, err error) {
	if r.from != "" {
		if from, err = ledger.ParseDay("from", r.from); err != nil {
			return
		}
	}
	if r.to != "" {
		to, err = ledger.ParseDay("to", r.to)
	}
	return
}

func auditUsage(fs *flag.FlagSet, stderr io.Writer, synopsis string) {
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: qingling %s\n\n", synopsis)
		fs.PrintDefaults()
	}
}

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	auditUsage(fs, stderr, "verify [--nats URL --user U --nkey FILE | --data DIR] [--checkpoints FILE] [--keys FILE] [--sector S] [--region R] [--from T] [--to T]")
	var lf logFlags
	var rf rangeFlags
	lf.register(fs)
	rf.register(fs, false)
	cpFile := fs.String("checkpoints", "", "an exported copy of the checkpoints (qingling checkpoint export) to check the log against")
	keysFile := fs.String("keys", "", "public keys to check signatures with: a keys export or a users file (default <data>/users.json when it exists)")
	require := fs.String("require-signatures", "", "roles whose events must be signed, e.g. inspector,verifier")
	serverKeys := fs.String("server-keys", "", "comma-separated instance keys whose checkpoints are trusted (default: any that verifies)")
	noStream := fs.Bool("no-checkpoint-stream", false, "ignore HZ_CHECKPOINTS and rely on --checkpoints only")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	maxProblems := fs.Int("max-problems", 1000, "list at most this many problems of each kind (the rest are counted)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cat, err := events.LoadCatalog()
	if err != nil {
		fmt.Fprintln(stderr, "qingling verify:", err)
		return exitFailure
	}
	from, to, err := rf.times()
	if err != nil {
		fmt.Fprintln(stderr, "qingling verify:", err)
		return exitUsage
	}
	cfg := auditlog.VerifyConfig{Stream: lf.stream, NoCheckpointStream: *noStream,
		Options: audit.Options{Catalog: cat, Sector: rf.sector, Region: rf.region, From: from, To: to, MaxPerCode: *maxProblems},
		Notes:   func(format string, a ...any) { fmt.Fprintf(stderr, "note: "+format+"\n", a...) }}
	if rf.sector != "" || rf.region != "" {
		filter, err := auditlog.SubjectFilter(cat, rf.sector, rf.region, "")
		if err != nil {
			fmt.Fprintln(stderr, "qingling verify:", err)
			return exitUsage
		}
		cfg.Filter = []string{filter}
		fmt.Fprintln(stderr, "note: a sector or region is part of the log: sequence gaps and checkpoints are not checked (verify without them for those)")
	}
	if cfg.Options.RequireSigned, err = app.ParseRoles(*require); err != nil {
		fmt.Fprintln(stderr, "qingling verify:", err)
		return exitUsage
	}
	for _, k := range strings.Split(*serverKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			cfg.Options.ServerKeys = append(cfg.Options.ServerKeys, k)
		}
	}
	if *cpFile != "" {
		f, err := os.Open(*cpFile)
		if err != nil {
			fmt.Fprintln(stderr, "qingling verify:", err)
			return exitFailure
		}
		cfg.Options.Exported, err = auditlog.ReadCheckpointFile(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "qingling verify:", err)
			return exitFailure
		}
	}
	kf := *keysFile
	if kf == "" && lf.natsURL == "" {
		if p := filepath.Join(lf.data, "users.json"); fileExists(p) {
			kf = p
		}
	}
	if kf != "" {
		f, err := os.Open(kf)
		if err != nil {
			fmt.Fprintln(stderr, "qingling verify:", err)
			return exitFailure
		}
		cfg.Options.Keys, err = auditlog.ReadKeys(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "qingling verify:", err)
			return exitFailure
		}
	} else {
		fmt.Fprintln(stderr, "note: no --keys: signatures are counted but not checked")
	}
	js, done, err := lf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "qingling verify:", err)
		return exitFailure
	}
	defer done()
	for i, f := range cfg.Filter { // at a county office the events are stored under leaf.<county>.hz.…
		if cfg.Filter[i], err = export.StreamFilter(ctx, js, lf.stream, f); err != nil {
			fmt.Fprintln(stderr, "qingling verify:", err)
			return exitFailure
		}
	}
	// A one-off walk whose live heap is a small table per event: collect garbage less often.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	bar := newProgress(os.Stderr, "verify 校验")
	cfg.Progress = func(n, total uint64) { bar.Set(int(n), int(total)) }
	start := time.Now()
	rep, err := auditlog.Verify(ctx, js, cfg)
	bar.Done()
	if err != nil {
		fmt.Fprintln(stderr, "qingling verify:", err)
		return exitFailure
	}
	took := time.Since(start)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(stdout, &rep, took)
	}
	if !rep.OK() {
		return exitProblems
	}
	return exitOK
}

func printReport(w io.Writer, rep *audit.Report, took time.Duration) {
	fmt.Fprintf(w, "log: %d events, seq %d–%d, %d hazards (%.0f events/s)\n", rep.Events, rep.FirstSeq, rep.LastSeq, rep.Hazards, float64(rep.Events)/max(took.Seconds(), 1e-9))
	fmt.Fprintf(w, "signatures: %d signed, %d checked\n", rep.Signed, rep.SigChecked)
	if rep.Partial {
		fmt.Fprintln(w, "checkpoints: not checked (part of the log)")
	} else {
		fmt.Fprintf(w, "checkpoints: %d from %d instances; %d events covered, %d pending after seq %d\n", rep.Checkpoints, rep.Instances, rep.Covered, rep.Pending, rep.Horizon)
		if rep.Unvouched > 0 {
			fmt.Fprintf(w, "  %d events acknowledged just before an unclean stop (crash, kill) are in no checkpoint; their chains, hashes and signatures were checked\n", rep.Unvouched)
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "PROBLEM", p.String())
	}
	for code, n := range rep.Dropped {
		fmt.Fprintf(w, "PROBLEM %s: %d more not listed\n", code, n)
	}
	if rep.OK() {
		fmt.Fprintln(w, "OK — the log verifies 校验通过")
	} else {
		fmt.Fprintf(w, "FAILED — %d problems 发现问题\n", len(rep.Problems)+sum(rep.Dropped))
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// replayLine is one line of `qingling replay`.
type replayLine struct {
	Seq     uint64        `json:"seq"`
	Subject string        `json:"subject"`
	Hash    string        `json:"hash"`
	Event   *events.Event `json:"event"`
}

func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	auditUsage(fs, stderr, "replay [--nats URL --user U --nkey FILE | --data DIR] [--sector S] [--region R] [--hazard ID] [--from T] [--to T] [--out FILE]")
	var lf logFlags
	var rf rangeFlags
	lf.register(fs)
	rf.register(fs, true)
	out := fs.String("out", "-", "write the JSON lines here (- = stdout)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cat, err := events.LoadCatalog()
	if err != nil {
		fmt.Fprintln(stderr, "qingling replay:", err)
		return exitFailure
	}
	filter, err := auditlog.SubjectFilter(cat, rf.sector, rf.region, rf.hazard)
	if err != nil {
		fmt.Fprintln(stderr, "qingling replay:", err)
		return exitUsage
	}
	from, to, err := rf.times()
	if err != nil {
		fmt.Fprintln(stderr, "qingling replay:", err)
		return exitUsage
	}
	w, closeOut, err := outFile(*out, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "qingling replay:", err)
		return exitFailure
	}
	js, done, err := lf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "qingling replay:", err)
		return exitFailure
	}
	defer done()
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	bar := newProgress(os.Stderr, "replay 回放")
	var subjects []string
	if filter != "hz.>" {
		// at a county office the events are stored under leaf.<county>.hz.…
		if filter, err = export.StreamFilter(ctx, js, lf.stream, filter); err != nil {
			fmt.Fprintln(stderr, "qingling replay:", err)
			return exitFailure
		}
		subjects = []string{filter}
	}
	n, total := 0, 0
	err = auditlog.ReadLog(ctx, js, lf.stream, subjects, func(m audit.Msg, pending uint64) error {
		if total == 0 {
			total = int(pending) + 1
		}
		n++
		bar.Set(n, total)
		e, err := events.ParseEvent(m.Data)
		if err != nil {
			fmt.Fprintf(stderr, "seq %d (%s): not an event: %v\n", m.Seq, m.Subject, err)
			return nil
		}
		if (!from.IsZero() && e.Time.Before(from)) || (!to.IsZero() && !e.Time.Before(to)) {
			return nil
		}
		return enc.Encode(replayLine{Seq: m.Seq, Subject: m.Subject, Hash: events.HashString(sha256.Sum256(m.Data)), Event: e})
	})
	bar.Done()
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(stderr, "qingling replay:", err)
		return exitFailure
	}
	return exitOK
}

func outFile(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "" || path == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

func checkpointCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprintln(stderr, "usage: qingling checkpoint export --out FILE [--keys FILE] [--nats URL --user U --nkey FILE | --data DIR]")
		return exitUsage
	}
	fs := flag.NewFlagSet("checkpoint export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	auditUsage(fs, stderr, "checkpoint export --out FILE [--keys FILE] [--users FILE] [--nats URL --user U --nkey FILE | --data DIR]")
	var lf logFlags
	lf.register(fs)
	out := fs.String("out", "", "write the checkpoints here, one JSON line each (- = stdout)")
	keysOut := fs.String("keys", "", "also write every user's public keys here (from --users)")
	users := fs.String("users", "", "the users file the keys come from (default <data>/users.json)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if *out == "" {
		fmt.Fprintln(stderr, "qingling checkpoint export: --out FILE is required")
		return exitUsage
	}
	js, done, err := lf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "qingling checkpoint export:", err)
		return exitFailure
	}
	defer done()
	cps, bad, err := auditlog.ReadCheckpoints(ctx, js)
	if err != nil && !errors.Is(err, auditlog.ErrNoCheckpoints) {
		fmt.Fprintln(stderr, "qingling checkpoint export:", err)
		return exitFailure
	}
	for seq, e := range bad {
		fmt.Fprintf(stderr, "warning: %s seq %d is not a checkpoint: %v\n", auditlog.CheckpointStream, seq, e)
	}
	w, closeOut, err := outFile(*out, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "qingling checkpoint export:", err)
		return exitFailure
	}
	err = auditlog.WriteCheckpoints(w, cps)
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(stderr, "qingling checkpoint export:", err)
		return exitFailure
	}
	instances := map[string]bool{}
	var through uint64
	for _, c := range cps {
		instances[c.Instance] = true
		through = max(through, c.Through)
	}
	fmt.Fprintf(stderr, "%d checkpoints of %d instances, through seq %d, written to %s\n", len(cps), len(instances), through, *out)
	if *keysOut != "" {
		path := *users
		if path == "" {
			path = filepath.Join(lf.data, "users.json")
		}
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(stderr, "qingling checkpoint export: keys:", err)
			return exitFailure
		}
		var file struct {
			Users []auditlog.KeyRecord `json:"users"`
		}
		err = json.NewDecoder(f).Decode(&file)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "qingling checkpoint export: keys:", err)
			return exitFailure
		}
		kw, closeKeys, err := outFile(*keysOut, stdout)
		if err == nil {
			err = auditlog.WriteKeys(kw, file.Users)
			if cerr := closeKeys(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "qingling checkpoint export: keys:", err)
			return exitFailure
		}
		fmt.Fprintf(stderr, "public keys of %d users written to %s\n", len(file.Users), *keysOut)
	}
	return exitOK
}
