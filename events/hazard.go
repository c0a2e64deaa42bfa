package events

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// Shanghai is the zone of all calendar arithmetic (China has kept UTC+8 without DST since 1991).
var Shanghai = time.FixedZone("Asia/Shanghai", 8*3600) // constant zone, never reassigned

// VerificationWindow: a hazard awaiting verification longer than this is verification_overdue.
const VerificationWindow = 10 * 24 * time.Hour

// Hazard is the current state of one hazard, built by Evolve from its events.
// It holds what commands, filters and counts need; text lives in the stream.
type Hazard struct {
	ID         string `json:"id"`
	Version    int    `json:"version"`
	Seq        uint64 `json:"seq"`
	Sector     string `json:"sector"`
	Province   string `json:"province"`
	Prefecture string `json:"prefecture"`
	Region     string `json:"region"`
	SiteKey    string `json:"site_key"`
	SiteName   string `json:"site_name"`
	Grade      string `json:"grade"`
	Criterion  string `json:"criterion,omitempty"`
	Source     string `json:"source"`
	Status     Status `json:"status"`
	Home       string `json:"home"`

	ListLevel    string  `json:"list_level,omitempty"`
	ListDeadline Instant `json:"list_deadline,omitzero"`

	ReportDeadline Instant `json:"-"`
	PlanDeadline   Instant `json:"-"`
	ExtDeadline    Instant `json:"-"`

	ReportedBy  string  `json:"reported_by"`
	CompletedBy string  `json:"completed_by,omitempty"`
	ClearedBy   string  `json:"cleared_by,omitempty"`
	FoundAt     Instant `json:"found_at"`                // occurredat of the report
	RecordedAt  Instant `json:"recorded_at"`             // time of the report
	UpdatedAt   Instant `json:"updated_at"`              // time of the last event
	CompletedAt Instant `json:"completed_at,omitzero"`   // occurredat of the last completion
	AwaitingAt  Instant `json:"awaiting_since,omitzero"` // time the last completion was recorded
	ClearedAt   Instant `json:"cleared_at,omitzero"`
	Supersedes  string  `json:"supersedes,omitempty"`
	Rejections  int     `json:"rejections"`

	ReportSeq uint64   `json:"-"`
	AmendSeqs []uint64 `json:"-"`
	LastHash  [32]byte `json:"-"`
	// HashUnknown: LastHash was not computed — a replay leaves it to the hazard's next
	// command (most replayed hazards never get one). Resolve it from the stored event at Seq
	// (SetLastHash) before deciding on the hazard; PrevHash answers "" until then.
	HashUnknown bool `json:"-"`

	// the flags last, packed together (the index holds one Hazard per hazard)
	Listed   bool `json:"listed"`
	Planned5 bool `json:"plan_complete"` // 五落实 all present in the current plan
	OnTime   bool `json:"cleared_on_time"`
}

// Deadline is the effective deadline: the latest extension, else the plan's, else the report's.
func (h *Hazard) Deadline() time.Time { return h.deadline().Time() }

func (h *Hazard) deadline() Instant {
	switch {
	case h.ExtDeadline != 0:
		return h.ExtDeadline
	case h.PlanDeadline != 0:
		return h.PlanDeadline
	}
	return h.ReportDeadline
}

// Overdue: still to be rectified and the effective deadline is before at.
func (h *Hazard) Overdue(at time.Time) bool {
	switch h.Status {
	case StatusReported, StatusPlanned, StatusRectifying:
		d := h.deadline()
		return d != 0 && d.Before(at)
	}
	return false
}

// VerificationOverdue: awaiting verification for longer than VerificationWindow at at.
func (h *Hazard) VerificationOverdue(at time.Time) bool {
	return h.Status == StatusAwaiting && at.Sub(h.AwaitingAt.Time()) > VerificationWindow
}

// ListedOverdue: listed, open, and the listing deadline is before at.
func (h *Hazard) ListedOverdue(at time.Time) bool {
	return h.Listed && h.Status.Open() && !h.ListDeadline.IsZero() && h.ListDeadline.Before(at)
}

// Subject of the hazard's events.
func (h *Hazard) Subject() string {
	return Subject(h.Sector, h.Province, h.Prefecture, h.Region, h.ID)
}

// PrevHash is the prevhash the hazard's next event carries; "" while the hash is unknown.
func (h *Hazard) PrevHash() string {
	if h.Version == 0 {
		return HashString(GenesisHash(h.ID))
	}
	if h.HashUnknown {
		return ""
	}
	return HashString(h.LastHash)
}

// SetLastHash resolves an unknown hash from raw, the stored bytes of the hazard's last event
// (the event at h.Seq).
func (h *Hazard) SetLastHash(raw []byte) {
	h.LastHash, h.HashUnknown = sha256.Sum256(raw), false
}

// Evolve applies a stored event (raw: its stored bytes; seq: its stream sequence) to the
// state h, which is nil before the report. It returns the new state; h is modified in place
// when not nil. Evolve trusts what the log holds: checks belong to Decide and to verify.
func Evolve(cat *Catalog, h *Hazard, e *Event, p any, raw []byte, seq uint64) (*Hazard, error) {
	return EvolveSum(cat, h, e, p, sha256.Sum256(raw), seq)
}

// EvolveSum is Evolve given sum, the SHA-256 of the event's stored bytes. A replay, which
// does not hash, marks the result HashUnknown after.
func EvolveSum(cat *Catalog, h *Hazard, e *Event, p any, sum [32]byte, seq uint64) (*Hazard, error) {
	if h == nil {
		h = new(Hazard)
		if err := EvolveFirst(cat, h, e, p, sum, seq); err != nil {
			return nil, err
		}
		return h, nil
	}
	switch v := p.(type) {
	case *Amended:
		if v.Site != nil {
			h.SiteName = v.Site.Name
		}
		h.AmendSeqs = append(h.AmendSeqs, seq)
	case *Graded:
		h.Grade, h.Criterion = v.Grade, v.Criterion
		if v.Grade != GradeMajor {
			h.Listed, h.ListLevel, h.ListDeadline = false, "", 0
		}
	case *Listed:
		h.Listed, h.ListLevel, h.ListDeadline = true, v.Level, parseInstant(v.Deadline)
	case *Planned:
		if d := parseInstant(v.Deadline); d != 0 {
			h.PlanDeadline = d
		}
		h.Planned5 = v.Responsible != "" && v.Measures != "" && v.Funds != "" && v.Deadline != "" && v.Contingency != ""
		if h.Status == StatusReported {
			h.Status = StatusPlanned
		}
	case *Progressed:
		h.Status = StatusRectifying
	case *Extended:
		h.ExtDeadline = parseInstant(v.Deadline)
	case *Completed:
		h.Status, h.CompletedBy, h.CompletedAt, h.AwaitingAt = StatusAwaiting, e.Actor, InstantOf(e.OccurredAt), InstantOf(e.Time)
	case *VerifyFailed:
		h.Status = StatusRectifying
		h.Rejections++
	case *Cleared:
		h.Status, h.ClearedBy, h.ClearedAt = StatusCleared, e.Actor, InstantOf(e.Time)
		h.OnTime = h.CompletedAt <= h.deadline()
	case *Reopened:
		h.Status = StatusReported
		h.CompletedBy, h.ClearedBy, h.CompletedAt, h.AwaitingAt, h.ClearedAt, h.OnTime = "", "", 0, 0, 0, false
		h.PlanDeadline, h.ExtDeadline, h.Planned5 = 0, 0, false
		if d := parseInstant(v.Deadline); d != 0 {
			h.ReportDeadline = d
		}
	case *Withdrawn:
		h.Status = StatusWithdrawn
	case *Reported:
		return h, fmt.Errorf("hazard %s: reported twice (seq %d)", h.ID, seq)
	default:
		return h, fmt.Errorf("hazard %s: unknown event type %s", h.ID, e.Type)
	}
	h.stamp(e, sum, seq)
	return h, nil
}

// EvolveFirst is EvolveSum of a hazard's first event, its report, into *h (overwritten): the
// index folds a replay's reports into one Hazard of its own rather than a new one each.
func EvolveFirst(cat *Catalog, h *Hazard, e *Event, p any, sum [32]byte, seq uint64) error {
	r, ok := p.(*Reported)
	if !ok {
		return fmt.Errorf("hazard %s: first event is %s, not %s", e.Subject, e.Type, TypeReported)
	}
	prov, pref, _ := cat.Path(r.Region)
	*h = Hazard{ID: e.Subject, Sector: r.Sector, Province: prov, Prefecture: pref, Region: r.Region,
		SiteKey: r.Site.Key(), SiteName: r.Site.Name, Grade: r.Grade, Criterion: r.Criterion, Source: r.Source,
		Status: StatusReported, ReportedBy: e.Actor, FoundAt: InstantOf(e.OccurredAt), RecordedAt: InstantOf(e.Time),
		ReportDeadline: parseInstant(r.Deadline), Supersedes: r.Supersedes, ReportSeq: seq, Home: e.Source}
	if s, ok := cat.Sector(r.Sector); ok {
		h.Sector = s.Code // share the catalog's string
	}
	h.stamp(e, sum, seq)
	return nil
}

// stamp records in h that e, of stored bytes hashing to sum at sequence seq, is its last event.
func (h *Hazard) stamp(e *Event, sum [32]byte, seq uint64) {
	h.Version++
	h.Seq = seq
	h.UpdatedAt = InstantOf(e.Time)
	h.LastHash, h.HashUnknown = sum, false
}

func parseInstant(s string) Instant {
	if s == "" {
		return 0
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return InstantOf(t)
}
