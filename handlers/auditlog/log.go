// Package auditlog is the NATS side of auditing: it records the events this server appended
// and saw acknowledged, signs checkpoints of them into the HZ_CHECKPOINTS stream, and reads
// the log and the checkpoints in order for verify, replay and export.
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
		if err := fn(audit.Msg{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), MsgID: m.Headers().Get(jetstream.MsgIDHeader)}, md.NumPending); err != nil {
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
