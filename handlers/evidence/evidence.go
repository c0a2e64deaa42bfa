// Package evidence keeps photos and documents in the JetStream object store bucket hz_evidence,
// each named by the SHA-256 of its bytes, so that the same file is stored once and an event can
// reference a file by its digest.
package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/events/jsstore"
)

// Bucket is the object store bucket of evidence files (design.md).
const Bucket = "hz_evidence"

// MaxSize is the largest file accepted.
const MaxSize = 20 << 20

// Types lists the accepted content types, as http.DetectContentType names them.
var Types = map[string]bool{ // read-only lookup table
	"image/jpeg":      true,
	"image/png":       true,
	"image/webp":      true,
	"image/gif":       true,
	"application/pdf": true,
	"video/mp4":       true,
}

var shaRe = regexp.MustCompile(`^[0-9a-f]{64}$`) // compiled once; read-only

// Info describes a stored file.
type Info struct {
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	Name        string `json:"name,omitempty"` // the name it was first uploaded with
	Created     bool   `json:"created"`        // false: the same bytes were already stored
	// Uploaders are the users who uploaded these bytes (the object's "uploaded_by"
	// metadata), at most MaxUploaders; kept from clients, who need not know who else did.
	Uploaders []string `json:"-"`
}

// MaxUploaders bounds the uploaders recorded per file; later ones are not recorded (they may
// still fetch the file once a hazard they may read references it).
const MaxUploaders = 32

// uploaded reports whether user id uploaded the file.
func (i Info) uploaded(id string) bool { return id != "" && slices.Contains(i.Uploaders, id) }

// Sum is the evidence name of data: its SHA-256 in lowercase hex.
func Sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// Check applies the size and type limits and returns the sniffed content type. Tools call it
// before queueing a file offline, so that the server will not refuse it later.
func Check(data []byte) (string, error) {
	if len(data) == 0 {
		return "", events.Errorf(events.KindInvalid, "evidence_empty", "evidence", "the file is empty")
	}
	if len(data) > MaxSize {
		return "", tooLarge(int64(len(data)))
	}
	ct := http.DetectContentType(data)
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if !Types[ct] {
		return "", events.Errorf(events.KindInvalid, "evidence_type", "evidence",
			"files of type %s are not accepted; send a photo (JPEG, PNG, WebP, GIF), a PDF or an MP4 video", ct)
	}
	return ct, nil
}

func tooLarge(n int64) *events.Error {
	return events.Errorf(events.KindTooLarge, "evidence_too_large", "evidence",
		"the file has %.1f MiB, at most %d MiB are accepted", float64(n)/(1<<20), MaxSize>>20)
}

// CanUpload refuses uploads by read-only roles (desks, auditors); nil u means no identities.
func CanUpload(u *events.User) error {
	if u != nil && (u.Role == events.RoleDesk || u.Role == events.RoleAuditor) {
		return events.Errorf(events.KindForbidden, "read_only_role", "", "a %s may not upload evidence", u.Role)
	}
	return nil
}

// CheckSum refuses anything but a SHA-256 in lowercase hex.
func CheckSum(sum string) error {
	if !shaRe.MatchString(sum) {
		return events.Errorf(events.KindInvalid, "invalid_sha256", "sha256", "a file is named by its SHA-256: 64 lowercase hex digits")
	}
	return nil
}

// Config of the bucket.
type Config struct {
	Bucket   string // default hz_evidence
	Replicas int    // default 1
}

// Store is the evidence bucket.
type Store struct {
	// Scope, when set, decides which user may fetch which file (scope.go); without it, with
	// identities on, no user may. Set it before serving.
	Scope *Scope

	obs   jetstream.ObjectStore
	locks [64]sync.Mutex // one upload per digest at a time, so a file is written once
}

// Open creates or updates the bucket (the server does this at start).
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = Bucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: cfg.Bucket, Storage: jetstream.FileStorage,
		Replicas: cfg.Replicas, Description: "Qingling evidence files, named by SHA-256"})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.Bucket, err)
	}
	return &Store{obs: obs}, nil
}

// Put stores data under its SHA-256 after checking its size and type. The same bytes stored
// again are not written again (Created is then false).
func (s *Store) Put(ctx context.Context, data []byte, name string) (Info, error) {
	return s.PutBy(ctx, data, name, "")
}

// PutBy is Put by user uploader (none: ""), who is recorded among the file's uploaders, so
// that it may fetch the file back while no event references it (Scope).
func (s *Store) PutBy(ctx context.Context, data []byte, name, uploader string) (Info, error) {
	ct, err := Check(data)
	if err != nil {
		return Info{}, err
	}
	if name != "" {
		if strings.ContainsAny(name, "/\\\x00\r\n") || len([]rune(name)) > events.MaxNameLen {
			return Info{}, events.Errorf(events.KindInvalid, "invalid_name", "name", "a file name has at most %d characters and no path", events.MaxNameLen)
		}
	}
	sum := Sum(data)
	b, _ := hex.DecodeString(sum[:2])
	mu := &s.locks[int(b[0])%len(s.locks)]
	mu.Lock()
	defer mu.Unlock()
	if info, err := s.Stat(ctx, sum); err == nil {
		if uploader == "" || info.uploaded(uploader) || len(info.Uploaders) >= MaxUploaders {
			return info, nil
		}
		return s.addUploader(ctx, info, uploader)
	} else if events.KindOf(err) != events.KindNotFound {
		return Info{}, err
	}
	meta := jetstream.ObjectMeta{Name: sum, Headers: nats.Header{"Content-Type": []string{ct}}, Metadata: map[string]string{}}
	if name != "" {
		meta.Metadata["name"] = name
	}
	if uploader != "" {
		meta.Metadata[metaUploaders] = uploader
	}
	oi, err := s.obs.Put(ctx, meta, bytes.NewReader(data))
	if err != nil {
		return Info{}, jsstore.Unavailable(err)
	}
	info := infoOf(oi)
	info.Created = true
	return info, nil
}

// Has reports whether a file is stored; app.Service.Evidence uses it.
func (s *Store) Has(ctx context.Context, sum string) (bool, error) {
	_, err := s.Stat(ctx, sum)
	if err == nil {
		return true, nil
	}
	if events.KindOf(err) == events.KindNotFound {
		return false, nil
	}
	return false, err
}

// Stat describes a stored file.
func (s *Store) Stat(ctx context.Context, sum string) (Info, error) {
	if err := CheckSum(sum); err != nil {
		return Info{}, err
	}
	oi, err := s.obs.GetInfo(ctx, sum)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return Info{}, notFound(sum)
	}
	if err != nil {
		return Info{}, jsstore.Unavailable(err)
	}
	return infoOf(oi), nil
}

// Open reads a stored file. The reader fails at its end if the bytes do not match the digest
// the object store recorded.
func (s *Store) Open(ctx context.Context, sum string) (io.ReadCloser, Info, error) {
	if err := CheckSum(sum); err != nil {
		return nil, Info{}, err
	}
	res, err := s.obs.Get(ctx, sum)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, Info{}, notFound(sum)
	}
	if err != nil {
		return nil, Info{}, jsstore.Unavailable(err)
	}
	oi, err := res.Info()
	if err != nil {
		res.Close()
		return nil, Info{}, jsstore.Unavailable(err)
	}
	return res, infoOf(oi), nil
}

// List names every stored file, sorted (for audits and tests).
func (s *Store) List(ctx context.Context) ([]Info, error) {
	ois, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, jsstore.Unavailable(err)
	}
	out := make([]Info, 0, len(ois))
	for _, oi := range ois {
		out = append(out, infoOf(oi))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SHA256 < out[j].SHA256 })
	return out, nil
}

// metaUploaders is the object metadata naming the uploaders, comma-separated (user names
// have no commas).
const metaUploaders = "uploaded_by"

// addUploader records one more uploader of a stored file. Under the digest's lock; two
// servers adding one at the same moment may keep only one of them.
func (s *Store) addUploader(ctx context.Context, info Info, uploader string) (Info, error) {
	oi, err := s.obs.GetInfo(ctx, info.SHA256)
	if err != nil {
		return Info{}, jsstore.Unavailable(err)
	}
	md := maps.Clone(oi.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	ups := append(slices.Clone(info.Uploaders), uploader)
	md[metaUploaders] = strings.Join(ups, ",")
	if err := s.obs.UpdateMeta(ctx, info.SHA256, jetstream.ObjectMeta{Name: oi.Name, Description: oi.Description, Headers: oi.Headers, Metadata: md}); err != nil {
		return Info{}, jsstore.Unavailable(err)
	}
	info.Uploaders = ups
	return info, nil
}

func infoOf(oi *jetstream.ObjectInfo) Info {
	info := Info{SHA256: oi.Name, Size: int64(oi.Size), ContentType: oi.Headers.Get("Content-Type"), Name: oi.Metadata["name"]}
	if v := oi.Metadata[metaUploaders]; v != "" {
		info.Uploaders = strings.Split(v, ",")
	}
	return info
}

func notFound(sum string) error {
	return events.Errorf(events.KindNotFound, "evidence_not_found", "sha256", "no evidence file %s", sum)
}
