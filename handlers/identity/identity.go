// Package identity keeps Qingling's users in a users file: roles and scopes, API tokens
// (stored only as SHA-256 hashes) and NATS nkeys (public keys only, every past key kept so that
// old signatures stay checkable).
package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"qingling/events"
)

// Record is one user as the users file keeps it.
type Record struct {
	events.User
	TokenHash  string    `json:"token_hash"`
	PublicKeys []string  `json:"public_keys"` // nkey user keys, oldest first; the last is current
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// CurrentKey is the user's current nkey.
func (r *Record) CurrentKey() string {
	if len(r.PublicKeys) == 0 {
		return ""
	}
	return r.PublicKeys[len(r.PublicKeys)-1]
}

// File is the users file's format.
type File struct {
	Version int       `json:"version"`
	Users   []*Record `json:"users"`
}

// Credentials are issued once, on add and rotate; only their hashes and public keys are kept.
type Credentials struct {
	User  string `json:"user"`
	Token string `json:"token"`     // HTTP bearer token
	Seed  string `json:"nkey_seed"` // NATS nkey seed, also the signing key
	NKey  string `json:"nkey"`      // its public key
}

// MaxFileSize bounds the users file.
const MaxFileSize = 16 << 20

// Store is the users file, reloaded when it changes on disk.
type Store struct {
	path string
	cat  *events.Catalog
	now  func() time.Time

	mu      sync.RWMutex
	users   map[string]*Record
	modTime time.Time
	checked time.Time
}

// Open loads the users file at path; a missing file gives an empty store (Exists reports it).
func Open(path string, cat *events.Catalog) (*Store, error) {
	s := &Store{path: path, cat: cat, now: time.Now, users: map[string]*Record{}}
	if err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// Path of the users file.
func (s *Store) Path() string { return s.path }

// Exists reports whether the users file exists.
func (s *Store) Exists() bool {
	_, err := os.Stat(s.path)
	return err == nil
}

// Decode parses and checks a users file.
func Decode(b []byte, cat *events.Catalog) (*File, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("users file over %d bytes", MaxFileSize)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("users file: trailing data")
	}
	seen := map[string]bool{}
	for i, r := range f.Users {
		if r == nil {
			return nil, fmt.Errorf("users file: entry %d is null", i)
		}
		if err := r.User.Validate(cat); err != nil {
			return nil, fmt.Errorf("users file: user %d (%q): %w", i, r.ID, err)
		}
		if seen[r.ID] {
			return nil, fmt.Errorf("users file: user %q twice", r.ID)
		}
		seen[r.ID] = true
		if len(r.TokenHash) != 64 {
			return nil, fmt.Errorf("users file: user %q: token_hash must be 64 hex digits", r.ID)
		}
		if _, err := hex.DecodeString(r.TokenHash); err != nil {
			return nil, fmt.Errorf("users file: user %q: token_hash: %w", r.ID, err)
		}
		for _, k := range r.PublicKeys {
			if !nkeys.IsValidPublicUserKey(k) {
				return nil, fmt.Errorf("users file: user %q: %q is not an nkey user public key", r.ID, k)
			}
		}
	}
	return &f, nil
}

func (s *Store) reload(force bool) error {
	st, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.mu.RLock()
	same := st.ModTime().Equal(s.modTime) && !force
	s.mu.RUnlock()
	if same {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	f, err := Decode(b, s.cat)
	if err != nil {
		return err
	}
	users := make(map[string]*Record, len(f.Users))
	for _, r := range f.Users {
		users[r.ID] = r
	}
	s.mu.Lock()
	s.users, s.modTime = users, st.ModTime()
	s.mu.Unlock()
	return nil
}

// maybeReload picks up changes made by `qingling user` while the server runs (at most once a second).
func (s *Store) maybeReload() {
	s.mu.Lock()
	due := s.now().Sub(s.checked) > time.Second
	if due {
		s.checked = s.now()
	}
	s.mu.Unlock()
	if due {
		_ = s.reload(false) // a broken file keeps the last good one
	}
}

func (s *Store) save() error {
	f := File{Version: 1}
	for _, r := range s.users {
		f.Users = append(f.Users, r)
	}
	sort.Slice(f.Users, func(i, j int) bool { return f.Users[i].ID < f.Users[j].ID })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".users-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return err
	}
	if st, err := os.Stat(s.path); err == nil {
		s.modTime = st.ModTime()
	}
	return nil
}

func newCredentials(id string) (Credentials, string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Credentials{}, "", err
	}
	token := "qlt_" + id + "_" + hex.EncodeToString(b[:])
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Credentials{}, "", err
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	return Credentials{User: id, Token: token, Seed: string(seed), NKey: pub}, hashToken(token), nil
}

func hashToken(t string) string { h := sha256.Sum256([]byte(t)); return hex.EncodeToString(h[:]) }

// Add creates a user and returns its credentials (shown once).
func (s *Store) Add(u events.User) (Credentials, error) {
	if err := u.Validate(s.cat); err != nil {
		return Credentials{}, err
	}
	if err := s.reload(false); err != nil {
		return Credentials{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.users[u.ID]; dup {
		return Credentials{}, events.Errorf(events.KindConflict, "user_exists", "id", "user %s already exists", u.ID)
	}
	c, hash, err := newCredentials(u.ID)
	if err != nil {
		return Credentials{}, err
	}
	now := s.now().UTC()
	s.users[u.ID] = &Record{User: u, TokenHash: hash, PublicKeys: []string{c.NKey}, Created: now, Updated: now}
	return c, s.save()
}

// Rotate issues new credentials; the old token stops working, the old public key is kept.
func (s *Store) Rotate(id string) (Credentials, error) {
	if err := s.reload(false); err != nil {
		return Credentials{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.users[id]
	if !ok {
		return Credentials{}, events.Errorf(events.KindNotFound, "user_not_found", "id", "no user %s", id)
	}
	c, hash, err := newCredentials(id)
	if err != nil {
		return Credentials{}, err
	}
	r.TokenHash, r.PublicKeys, r.Updated = hash, append(r.PublicKeys, c.NKey), s.now().UTC()
	return c, s.save()
}

// SetDisabled disables or re-enables a user.
func (s *Store) SetDisabled(id string, disabled bool) error {
	if err := s.reload(false); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.users[id]
	if !ok {
		return events.Errorf(events.KindNotFound, "user_not_found", "id", "no user %s", id)
	}
	r.Disabled, r.Updated = disabled, s.now().UTC()
	return s.save()
}

// List returns every user, sorted by id.
func (s *Store) List() []Record {
	s.maybeReload()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Record, 0, len(s.users))
	for _, r := range s.users {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// User returns one user's record.
func (s *Store) User(id string) (Record, bool) {
	s.maybeReload()
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.users[id]
	if !ok {
		return Record{}, false
	}
	return *r, true
}

// Authenticate checks a bearer token (constant-time) and returns its enabled user.
func (s *Store) Authenticate(token string) (*events.User, error) {
	s.maybeReload()
	bad := events.Errorf(events.KindUnauthenticated, "invalid_token", "Authorization", "unknown or revoked token")
	id, ok := tokenUser(token)
	if !ok {
		return nil, bad
	}
	s.mu.RLock()
	r, found := s.users[id]
	s.mu.RUnlock()
	want := strings.Repeat("0", 64)
	if found {
		want = r.TokenHash
	}
	if subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(want)) != 1 || !found {
		return nil, bad
	}
	if r.Disabled {
		return nil, events.Errorf(events.KindUnauthenticated, "user_disabled", "Authorization", "user %s is disabled", id)
	}
	u := r.User
	return &u, nil
}

func tokenUser(t string) (string, bool) {
	if !strings.HasPrefix(t, "qlt_") || len(t) > 200 {
		return "", false
	}
	rest := t[4:]
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}
