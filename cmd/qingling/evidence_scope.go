package main

import (
	"context"
	"time"

	"qingling/handlers/evidence"
)

// scopeEvidence scopes evidence downloads by the hazards referencing each file (m.Refs,
// made by openStatus): the runner feeds the references; a start from a read-model snapshot
// that holds them needs nothing more, and one from an older snapshot without them backfills
// those of the events it covers. Called once the snapshot is loaded (openStatus) and before
// the runner starts (runStatus).
func (m *Main) scopeEvidence(ctx context.Context) {
	upto := m.Index.Applied()
	refs := m.Refs
	m.Runner.Projections = append(m.Runner.Projections, refs)
	m.Evidence.Scope = &evidence.Scope{Refs: refs, App: m.App, LastSeq: m.Store.LastSeq}
	if upto == 0 || refs.Complete() {
		_ = refs.Backfill(ctx, m.Store, 0) // the log is read from its start, or the snapshot held them: complete
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		start, wait := time.Now(), 100*time.Millisecond
		for {
			err := refs.Backfill(ctx, m.Store, upto)
			if err == nil {
				m.Config.Log.Info("evidence references read", "upto", upto, "files", refs.Len(), "took", time.Since(start).Round(time.Millisecond))
				return
			}
			if ctx.Err() != nil {
				return
			}
			m.Config.Log.Warn("evidence references: backfill interrupted; retrying", "err", err, "in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Second)
		}
	}()
}
