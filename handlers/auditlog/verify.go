package auditlog

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/projections/audit"
)

// VerifyConfig says what to verify.
type VerifyConfig struct {
	Stream string // the log stream, default HAZARDS
	// Options of the verifier; Checkpoints are read from HZ_CHECKPOINTS unless NoStream.
	Options audit.Options
	// NoCheckpointStream: do not read HZ_CHECKPOINTS (check only an exported copy, if any).
	NoCheckpointStream bool
	// Filter: subjects to read (a sector or region); the verification is then partial.
	Filter   []string
	Workers  int                           // goroutines decoding and checking signatures; default GOMAXPROCS
	Progress func(done, total uint64)      // called now and then with messages done of total
	Notes    func(format string, a ...any) // informational notes (no checkpoint stream …)
}

// Verify walks the log (and its checkpoints) on js and returns the report.
func Verify(ctx context.Context, js jetstream.JetStream, cfg VerifyConfig) (audit.Report, error) {
	if cfg.Stream == "" {
		cfg.Stream = "HAZARDS"
	}
	note := cfg.Notes
	if note == nil {
		note = func(string, ...any) {}
	}
	opts := cfg.Options
	if len(cfg.Filter) > 0 {
		opts.Partial = true
	}
	if !opts.Partial && !cfg.NoCheckpointStream {
		cps, bad, err := ReadCheckpoints(ctx, js)
		switch {
		case errors.Is(err, ErrNoCheckpoints):
			note("there is no %s stream: only an exported copy of checkpoints can vouch for the log", CheckpointStream)
		case err != nil:
			return audit.Report{}, err
		}
		for seq, e := range bad {
			note("%s seq %d is not a checkpoint: %v", CheckpointStream, seq, e)
		}
		opts.Checkpoints = cps
	}
	var total uint64
	if str, err := js.Stream(ctx, cfg.Stream); err == nil {
		if info, err := str.Info(ctx); err == nil {
			total = info.State.Msgs
		}
	}
	if opts.SizeHint == 0 && len(cfg.Filter) == 0 {
		opts.SizeHint = int(min(total, 1<<26))
	}
	v := audit.New(opts)
	err := Walk(ctx, js, cfg.Stream, cfg.Filter, cfg.Workers, v.Prepare, func(p *audit.Prepared, done uint64) {
		v.Apply(p)
		if cfg.Progress != nil && done%4096 == 0 {
			cfg.Progress(done, max(total, done))
		}
	})
	if err != nil {
		return audit.Report{}, err
	}
	rep := v.Finish()
	if cfg.Progress != nil {
		cfg.Progress(uint64(rep.Events), max(total, uint64(rep.Events)))
	}
	return rep, nil
}

// Walk reads the stream in order and runs prepare on several goroutines, then apply on the
// results in stream order (done counts the messages applied).
func Walk[P any](ctx context.Context, js jetstream.JetStream, stream string, filter []string, workers int,
	prepare func(audit.Msg) P, apply func(p P, done uint64)) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const batch = 256
	type job struct {
		msgs []audit.Msg
		out  []P
		done chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *job, workers*2)
	order := make(chan *job, workers*4)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				for k, m := range j.msgs {
					j.out[k] = prepare(m)
				}
				close(j.done)
			}
		}()
	}
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		var n uint64
		for j := range order {
			<-j.done
			for _, p := range j.out {
				n++
				apply(p, n)
			}
		}
	}()
	cur := &job{}
	flush := func() {
		if len(cur.msgs) == 0 {
			return
		}
		cur.out, cur.done = make([]P, len(cur.msgs)), make(chan struct{})
		order <- cur
		jobs <- cur
		cur = &job{}
	}
	err := ReadLog(ctx, js, stream, filter, func(m audit.Msg, _ uint64) error {
		cur.msgs = append(cur.msgs, m)
		if len(cur.msgs) == batch {
			flush()
		}
		return nil
	})
	flush()
	close(jobs)
	close(order)
	wg.Wait()
	<-applied
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	return nil
}
