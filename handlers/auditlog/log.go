// Package auditlog is the NATS side of auditing: it records the events this server appended
// and saw acknowledged, signs checkpoints of them into the HZ_CHECKPOINTS stream, and reads
// the log and the checkpoints in order for verify, replay and export.
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
	"qingling/projections/audit"
)

// Names fixed by design: the checkpoint stream and its subjects hzcp.<instance key>.
const (
	CheckpointStream = "HZ_CHECKPOINTS"
	checkpointPrefix = "hzcp."
)

// CheckpointSubject is the subject of an instance's checkpoints.
func CheckpointSubject(instance string) string { return checkpointPrefix + instance }

// CheckpointStreamConfig: file storage, no deletes, purges, rollups or TTLs — checkpoints
// are as permanent as the log they vouch for.
func CheckpointStreamConfig(replicas int) jetstream.StreamConfig {
	if replicas == 0 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        CheckpointStream,
		Description: "Qingling signed checkpoints of the HAZARDS log (append-only)",
		Subjects:    []string{checkpointPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Replicas:    replicas,
		Duplicates:  2 * time.Minute,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// ReadLog delivers every message of stream (of the subjects in filter, all when empty) in
// order to fn, from seq 1 up to the stream's end when the read started, with one ordered
// consumer. pending is how many messages are still to come.
func ReadLog(ctx context.Context, js jetstream.JetStream, stream string, filter []string, fn func(m audit.Msg, pending uint64) error) error {
	str, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filter, DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return jsstore.Unavailable(err)
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if err := fn(audit.Msg{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), Source: m.Headers().Get("Nats-Stream-Source")}, md.NumPending); err != nil {
			return err
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}

// ErrNoCheckpoints: the checkpoint stream does not exist.
var ErrNoCheckpoints = errors.New("no " + CheckpointStream + " stream")

// ReadCheckpoints reads every checkpoint of the stream, in stream order. A message that is
// not a checkpoint is returned in bad (by sequence).
func ReadCheckpoints(ctx context.Context, js jetstream.JetStream) (cps []*audit.Checkpoint, bad map[uint64]error, err error) {
	if _, err := js.Stream(ctx, CheckpointStream); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, ErrNoCheckpoints
	} else if err != nil {
		return nil, nil, err
	}
	err = ReadLog(ctx, js, CheckpointStream, nil, func(m audit.Msg, _ uint64) error {
		c, err := audit.ParseCheckpoint(m.Data)
		if err != nil {
			if bad == nil {
				bad = map[uint64]error{}
			}
			bad[m.Seq] = err
			return nil
		}
		cps = append(cps, c)
		return nil
	})
	return cps, bad, err
}

// SubjectFilter is the log subject of a sector (or ""), a region at any level (or "") and a
// hazard id (or ""): what replay, verify and the exports read.
func SubjectFilter(cat *events.Catalog, sector, region, hazard string) (string, error) {
	tok := []string{"hz", "*", "*", "*", "*", "*"}
	if sector != "" {
		if _, ok := cat.Sector(sector); !ok {
			return "", events.Errorf(events.KindInvalid, "unknown_sector", "sector", "unknown sector %q", sector)
		}
		tok[1] = sector
	}
	if region != "" {
		g, ok := cat.Region(region)
		if !ok {
			return "", events.Errorf(events.KindInvalid, "unknown_region", "region", "unknown region code %q", region)
		}
		path := []string{g.Code}
		for p, ok := cat.Region(g.Parent); ok; p, ok = cat.Region(p.Parent) {
			path = append([]string{p.Code}, path...)
		}
		if len(path) > 3 {
			return "", events.Errorf(events.KindInvalid, "unknown_region", "region", "region %s is below county level", region)
		}
		copy(tok[2:], path)
	}
	if hazard != "" {
		if err := events.CanonicalUUID("hazard", hazard); err != nil {
			return "", err
		}
		tok[5] = hazard
	}
	if tok[5] == "*" && tok[4] == "*" && tok[3] == "*" && tok[2] == "*" && tok[1] == "*" {
		return "hz.>", nil
	}
	return strings.Join(tok, "."), nil
}
