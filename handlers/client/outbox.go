package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"qingling/events"
	"qingling/handlers/evidence"
)

// Outbox keeps commands that could not reach the server, one file per command in Dir, named
// by a sequence number so that they are sent in the order they were written. The evidence
// files they reference are copied into Dir/files (named by SHA-256). An entry is removed only
// after the server acknowledged it; since every entry keeps its command id, sending an entry
// twice (a sync interrupted between the answer and the removal) records it once.
//
//	DIR/000000000001.json    {"action","hazard_id","command_id","actor","body","queued_at","files"}
//	DIR/files/<sha256>       the evidence an entry references
//	DIR/rejected/…json       entries the server refused (a rule, a conflict), with its error
type Outbox struct {
	Dir   string
	Clock func() time.Time // the field clock, default time.Now: a queued command's occurred_at
	// Catalog, when set, checks a report as the server will before it is queued, so that a
	// finding is not kept for days only to be refused for a typo.
	Catalog *events.Catalog
	// Signer, when set, signs a command before it is queued (Deliver also uses the client's):
	// the entry keeps the signed body, and every sync sends those bytes.
	Signer *Signer
}

// sign signs cmd with the outbox's signer, else the client's (for its own user's commands).
func (o *Outbox) sign(c *Client, cmd *Command) error {
	if o.Signer != nil {
		return o.Signer.SignCommand(cmd)
	}
	if c != nil {
		return c.sign(cmd)
	}
	return nil
}

// check decides a queued report offline; other commands depend on state the server holds.
func (o *Outbox) check(cmd Command) error {
	if o.Catalog == nil || cmd.Action != events.ActReport {
		return nil
	}
	dc, err := events.DecodeCommand(cmd.Action, "", cmd.Body)
	if err != nil {
		return err
	}
	events.ResolveIDs(dc)
	_, err = events.Decide(o.Catalog, nil, dc, o.now().Add(events.MaxClockSkew), events.DefaultSource)
	return err
}

// Entry is one queued command.
type Entry struct {
	Command
	QueuedAt time.Time     `json:"queued_at"`
	Files    []File        `json:"files,omitempty"`
	Error    *events.Error `json:"error,omitempty"` // why it was rejected (in rejected/)

	Seq  int64  `json:"-"`
	Path string `json:"-"`
}

// File is an evidence file a command references, kept in the outbox until sent.
type File struct {
	SHA256 string `json:"sha256"`
	Name   string `json:"name,omitempty"`
	Data   []byte `json:"-"` // given to Queue or Deliver; read from DIR/files on sync
}

// LoadFile reads a local file as evidence, checking the limits the server applies.
func LoadFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, events.Errorf(events.KindInvalid, "file_unreadable", "evidence", "%v", err)
	}
	if _, err := evidence.Check(data); err != nil {
		e := events.ErrorOf(err)
		e.Message = filepath.Base(path) + ": " + e.Message
		return File{}, e
	}
	return File{SHA256: evidence.Sum(data), Name: filepath.Base(path), Data: data}, nil
}

// Evidence lists the files as the references a command carries.
func Evidence(files []File) []events.Evidence {
	out := make([]events.Evidence, len(files))
	for i, f := range files {
		out[i] = events.Evidence{SHA256: f.SHA256, Name: f.Name}
	}
	return out
}

func (o *Outbox) now() time.Time {
	if o.Clock != nil {
		return o.Clock()
	}
	return time.Now()
}

const entryDigits = 12

func entryName(seq int64) string { return fmt.Sprintf("%0*d.json", entryDigits, seq) }

func parseEntryName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, ".json")
	if !ok || len(s) != entryDigits {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// Queue writes a command (and copies its files) into the outbox. The command is stamped with
// occurred_at from the field clock unless it has one. Writers in several processes may queue
// at once: each entry is created whole under a fresh sequence number.
func (o *Outbox) Queue(cmd Command, files []File) (Entry, error) {
	if err := cmd.StampOccurred(o.now()); err != nil {
		return Entry{}, err
	}
	if err := o.sign(nil, &cmd); err != nil {
		return Entry{}, err
	}
	if err := o.check(cmd); err != nil {
		return Entry{}, err
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "files"), 0o750); err != nil {
		return Entry{}, err
	}
	e := Entry{Command: cmd, QueuedAt: o.now()}
	for _, f := range files {
		if f.Data == nil {
			return Entry{}, fmt.Errorf("outbox: evidence %s has no data", f.SHA256)
		}
		if err := writeFileAtomic(filepath.Join(o.Dir, "files", f.SHA256), f.Data); err != nil {
			return Entry{}, err
		}
		e.Files = append(e.Files, File{SHA256: f.SHA256, Name: f.Name})
	}
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return Entry{}, err
	}
	tmp, err := writeTemp(o.Dir, data)
	if err != nil {
		return Entry{}, err
	}
	defer os.Remove(tmp)
	for attempt := 0; attempt < 1000; attempt++ {
		last, err := o.lastSeq()
		if err != nil {
			return Entry{}, err
		}
		e.Seq = last + 1
		e.Path = filepath.Join(o.Dir, entryName(e.Seq))
		// a hard link fails if the name exists: the entry appears whole, under a number no
		// other writer took
		if err := os.Link(tmp, e.Path); err == nil {
			return e, syncDir(o.Dir)
		} else if !errors.Is(err, os.ErrExist) {
			return Entry{}, err
		}
	}
	return Entry{}, fmt.Errorf("outbox %s: could not take a sequence number", o.Dir)
}

func (o *Outbox) lastSeq() (int64, error) {
	var last int64
	for _, dir := range []string{o.Dir, filepath.Join(o.Dir, "rejected")} {
		des, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		for _, de := range des {
			if n, ok := parseEntryName(de.Name()); ok && n > last {
				last = n
			}
		}
	}
	return last, nil
}

// Entries lists the queued commands in order.
func (o *Outbox) Entries() ([]Entry, error) { return readEntries(o.Dir) }

// Rejected lists the entries the server refused.
func (o *Outbox) Rejected() ([]Entry, error) { return readEntries(filepath.Join(o.Dir, "rejected")) }

func readEntries(dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		n, ok := parseEntryName(de.Name())
		if !ok || de.IsDir() {
			continue
		}
		p := filepath.Join(dir, de.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var e Entry
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("outbox entry %s: %w", p, err)
		}
		e.Seq, e.Path = n, p
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// Deliver sends a command now, or queues it when the server cannot be reached: its files are
// uploaded first, and the command is stamped with occurred_at (and signed, with a signer)
// before the first attempt, so a queued copy is byte for byte the command that may already
// have arrived.
func (o *Outbox) Deliver(ctx context.Context, c *Client, cmd Command, files []File) (Result, *Entry, error) {
	if err := cmd.StampOccurred(o.now()); err != nil {
		return Result{}, nil, err
	}
	if err := o.sign(c, &cmd); err != nil {
		return Result{}, nil, err
	}
	if err := o.check(cmd); err != nil {
		return Result{}, nil, err
	}
	err := upload(ctx, c, files)
	var res Result
	if err == nil {
		res, err = c.Send(ctx, cmd)
	}
	if err == nil || !Retryable(err) {
		return res, nil, err
	}
	e, qerr := o.Queue(cmd, files)
	if qerr != nil {
		return Result{}, nil, fmt.Errorf("%w; and it could not be queued: %v", err, qerr)
	}
	return Result{CommandID: cmd.CommandID}, &e, nil
}

func upload(ctx context.Context, c *Client, files []File) error {
	for _, f := range files {
		if _, err := c.PutEvidence(ctx, f.Data, f.Name); err != nil {
			return err
		}
	}
	return nil
}

// SyncReport says what a sync did.
type SyncReport struct {
	Total    int     // entries found
	Sent     int     // recorded now
	Replayed int     // already recorded (an earlier, interrupted sync had sent them)
	Rejected []Entry // refused by the server; moved to rejected/
	Left     int     // still queued (the server became unreachable, or ctx ended)
}

// Sync sends the queued commands in order, each entry removed only once the server has
// answered it. A command the server refuses (a rule, a conflict, invalid) is moved to
// rejected/ with the error, and the sync goes on. An unreachable server ends the sync with
// the rest left queued. progress, if set, is called after each entry.
func (o *Outbox) Sync(ctx context.Context, c *Client, progress func(done, total int)) (SyncReport, error) {
	start := time.Now()
	entries, err := o.Entries()
	if err != nil {
		return SyncReport{}, err
	}
	rep := SyncReport{Total: len(entries)}
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			rep.Left = len(entries) - i
			return rep, err
		}
		res, err := o.send(ctx, c, e)
		switch {
		case err == nil:
			if res.Replayed {
				rep.Replayed++
			} else {
				rep.Sent++
			}
			if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				rep.Left = len(entries) - i
				return rep, err
			}
		case Retryable(err) || ctx.Err() != nil:
			rep.Left = len(entries) - i
			return rep, err
		default:
			e.Error = events.ErrorOf(err)
			if err := o.reject(e); err != nil {
				rep.Left = len(entries) - i
				return rep, err
			}
			rep.Rejected = append(rep.Rejected, e)
		}
		if progress != nil {
			progress(i+1, len(entries))
		}
	}
	o.collect(start)
	return rep, nil
}

func (o *Outbox) send(ctx context.Context, c *Client, e Entry) (Result, error) {
	for _, f := range e.Files {
		data, err := os.ReadFile(filepath.Join(o.Dir, "files", f.SHA256))
		if err != nil {
			return Result{}, events.Errorf(events.KindInvalid, "evidence_lost", "evidence", "the outbox lost evidence %s (%s): %v", f.SHA256, f.Name, err)
		}
		if _, err := c.PutEvidence(ctx, data, f.Name); err != nil {
			return Result{}, err
		}
	}
	return c.Send(ctx, e.Command)
}

func (o *Outbox) reject(e Entry) error {
	dir := filepath.Join(o.Dir, "rejected")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, filepath.Base(e.Path)), data); err != nil {
		return err
	}
	return os.Remove(e.Path)
}

// collect removes evidence copies no entry references any more (only those written before
// the sync started, so a command queued meanwhile keeps its files).
func (o *Outbox) collect(before time.Time) {
	entries, err := o.Entries()
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for _, e := range entries {
		for _, f := range e.Files {
			keep[f.SHA256] = true
		}
	}
	dir := filepath.Join(o.Dir, "files")
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if keep[de.Name()] || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.ModTime().Before(before) {
			_ = os.Remove(filepath.Join(dir, de.Name()))
		}
	}
}

func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := writeTemp(filepath.Dir(path), data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	_ = d.Sync() // best effort: not every file system syncs directories
	return nil
}
