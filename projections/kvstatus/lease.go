package kvstatus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseKey is the key in hz_status that names the one instance writing the bucket.
const LeaseKey = "_writer"

// LeaseSubject is the lease key's subject; every row put is fenced by its revision.
const LeaseSubject = "$KV." + Bucket + "." + LeaseKey

// Lease elects the one instance that writes hz_status. The holder renews the lease key with
// compare-and-set; another instance takes it over only once it has gone unrenewed for TTL
// (by the renewal instant the holder wrote; instances' clocks must agree to well within TTL). Every row the holder writes carries
// Nats-Expected-Last-Subject-Sequence = the lease's revision on the lease key's subject, so a
// paused former holder's writes fail once another holds the lease.
type Lease struct {
	KV       jetstream.KeyValue
	Holder   string        // this instance's name
	TTL      time.Duration // default 10s
	Interval time.Duration // renew/try period, default TTL/3
	Now      func() time.Time
	Log      *slog.Logger
	// OnAcquire is called (from Run's goroutine) each time this instance becomes the holder.
	OnAcquire func()

	mu  sync.Mutex
	rev uint64 // the lease key's revision while held, else 0
	// use keeps renewals from changing the revision under the writer's in-flight puts
	// (which would fence this very holder off).
	use sync.RWMutex
}

// Use returns the revision to fence puts with (0: not held) and holds renewals off until
// release is called.
func (l *Lease) Use() (rev uint64, release func()) {
	l.use.RLock()
	return l.Revision(), l.use.RUnlock
}

type leaseValue struct {
	Holder string `json:"holder"`
	At     string `json:"at"`
}

func (l *Lease) ttl() time.Duration {
	if l.TTL == 0 {
		return 10 * time.Second
	}
	return l.TTL
}

func (l *Lease) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Revision is the lease key's revision if this instance holds the lease, else 0.
func (l *Lease) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Held reports whether this instance holds the lease.
func (l *Lease) Held() bool { return l.Revision() != 0 }

// Lost is called by the writer when a fenced put failed: the lease moved on.
func (l *Lease) Lost(rev uint64) {
	l.mu.Lock()
	if l.rev == rev {
		l.rev = 0
	}
	l.mu.Unlock()
}

// TryOnce acquires or renews the lease once and reports whether it is held.
func (l *Lease) TryOnce(ctx context.Context) (bool, error) {
	l.use.Lock()
	defer l.use.Unlock()
	val, _ := json.Marshal(leaseValue{Holder: l.Holder, At: l.now().UTC().Format(time.RFC3339Nano)})
	cur, err := l.KV.Get(ctx, LeaseKey)
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = l.KV.Create(ctx, LeaseKey, val)
	case err != nil:
		return l.Held(), err
	default:
		var v leaseValue
		_ = json.Unmarshal(cur.Value(), &v)
		// The holder's name is stable across restarts (it is kept with the instance's data),
		// so a restarted holder takes its lease back at once.
		mine := v.Holder == l.Holder
		at, _ := time.Parse(time.RFC3339Nano, v.At)
		if !mine && l.now().Sub(at) < l.ttl() {
			l.set(0)
			return false, nil // someone else holds a live lease
		}
		rev, err = l.KV.Update(ctx, LeaseKey, val, cur.Revision())
	}
	if err != nil {
		l.set(0)
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSeq(err) {
			return false, nil // another instance got there first
		}
		return false, err
	}
	was := l.Held()
	l.set(rev)
	if !was && l.OnAcquire != nil {
		defer l.OnAcquire()
	}
	return true, nil
}

func (l *Lease) set(rev uint64) {
	l.mu.Lock()
	l.rev = rev
	l.mu.Unlock()
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Run keeps trying and renewing until ctx ends.
func (l *Lease) Run(ctx context.Context) error {
	every := l.Interval
	if every == 0 {
		every = l.ttl() / 3
	}
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		was := l.Held()
		held, err := l.TryOnce(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("hz_status lease", "err", err)
		}
		if held != was {
			log.Info("hz_status lease", "holder", l.Holder, "held", held)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
