package evidence

import (
	"context"
	"time"

	"qingling/events"
	"qingling/handlers/app"
)

// Scope decides who may fetch an evidence file. A user may fetch a file
//   - referenced by an event of a hazard the user may read (events.CanRead), or
//   - that the user uploaded, while no event references it yet.
//
// Every other fetch is answered evidence_not_found, as for a file not stored, so that a
// digest tells nothing to whoever may not see the file.
type Scope struct {
	Refs *Refs
	App  *app.Service // the hazards, and who may read them
	// LastSeq, when set, is the log's last sequence. A command's references reach Refs
	// through the feed a moment after the command was answered; before refusing, Authorize
	// waits (briefly) for the feed to reach the log's end and looks again.
	LastSeq func(ctx context.Context) (uint64, error)
}

const (
	completeWait = 5 * time.Second // for Refs' backfill after a start from a snapshot
	feedWait     = 2 * time.Second // for the feed to bring a command just answered
)

// Authorize refuses a fetch of file sum by u (nil: no identities, anyone may) with the
// not-found error of a file not stored. Without a Scope no user may fetch anything.
func (s *Store) Authorize(ctx context.Context, u *events.User, sum string) error {
	if err := CheckSum(sum); err != nil {
		return err
	}
	if u == nil {
		return nil
	}
	if s.Scope == nil || u.Disabled {
		return notFound(sum)
	}
	return s.Scope.authorize(ctx, s, u, sum)
}

func (sc *Scope) authorize(ctx context.Context, st *Store, u *events.User, sum string) error {
	seen := sc.App.Index.Applied() // what the feed had brought before the first look
	ok, err := sc.allowed(ctx, st, u, sum)
	if err != nil || ok {
		return err
	}
	if sc.behind(ctx, seen) {
		if ok, err = sc.allowed(ctx, st, u, sum); err != nil || ok {
			return err
		}
	}
	return notFound(sum)
}

func (sc *Scope) allowed(ctx context.Context, st *Store, u *events.User, sum string) (bool, error) {
	ids := sc.Refs.Hazards(sum)
	for _, id := range ids {
		if h, ok := sc.App.Index.Get(id); ok && sc.App.CheckRead(u, &h) == nil {
			return true, nil
		}
	}
	if !sc.Refs.Complete() {
		wctx, cancel := context.WithTimeout(ctx, completeWait)
		err := sc.Refs.WaitComplete(wctx)
		cancel()
		if err != nil {
			return false, events.Errorf(events.KindUnavailable, "not_caught_up", "sha256", "evidence references are still being read from the log; retry")
		}
		return sc.allowed(ctx, st, u, sum)
	}
	if len(ids) > 0 {
		return false, nil
	}
	info, err := st.Stat(ctx, sum)
	if events.KindOf(err) == events.KindNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.uploaded(u.ID), nil
}

// behind reports whether the log holds events the feed had not brought when it stood at
// seen (so that a second look may see more references), after waiting, briefly, for the
// feed to bring them.
func (sc *Scope) behind(ctx context.Context, seen uint64) bool {
	if sc.LastSeq == nil {
		return false
	}
	last, err := sc.LastSeq(ctx)
	if err != nil || last <= seen {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, feedWait)
	defer cancel()
	_ = sc.App.Index.WaitApplied(wctx, last)
	return true
}
