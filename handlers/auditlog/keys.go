package auditlog

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"qingling/projections/audit"
)

// KeysFile is the public-key export (`qingling checkpoint export --keys`): every user's nkey
// public keys, oldest first, so that anyone can check signatures without the server. The
// users file has the same shape (with more fields), so either can be given to verify.
type KeysFile struct {
	Version int         `json:"version"`
	Users   []KeyRecord `json:"users"`
}

// KeyRecord is one user's keys.
type KeyRecord struct {
	ID         string   `json:"id"`
	Role       string   `json:"role"`
	PublicKeys []string `json:"public_keys"`
}

// ReadKeys reads a keys export or a users file.
func ReadKeys(r io.Reader) (audit.Keys, error) {
	var f KeysFile
	if err := json.NewDecoder(io.LimitReader(r, 64<<20)).Decode(&f); err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	keys := audit.Keys{}
	for _, u := range f.Users {
		if u.ID == "" {
			return nil, fmt.Errorf("keys file: a user without an id")
		}
		keys[u.ID] = append(keys[u.ID], u.PublicKeys...)
	}
	return keys, nil
}

// WriteKeys writes a keys export, users sorted by id.
func WriteKeys(w io.Writer, users []KeyRecord) error {
	sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
	b, err := json.MarshalIndent(KeysFile{Version: 1, Users: users}, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteCheckpoints writes checkpoints as JSON lines, in the order given.
func WriteCheckpoints(w io.Writer, cps []*audit.Checkpoint) error {
	for _, c := range cps {
		b, err := c.Marshal()
		if err != nil {
			return err
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// ReadCheckpointFile reads checkpoints written by WriteCheckpoints.
func ReadCheckpointFile(r io.Reader) ([]*audit.Checkpoint, error) {
	dec := json.NewDecoder(r)
	var out []*audit.Checkpoint
	for n := 1; dec.More(); n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("checkpoints line %d: %w", n, err)
		}
		c, err := audit.ParseCheckpoint(raw)
		if err != nil {
			return nil, fmt.Errorf("checkpoints line %d: %w", n, err)
		}
		out = append(out, c)
	}
	return out, nil
}
