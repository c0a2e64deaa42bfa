package events

// Event types (design.md). The strings are the CloudEvents `type`.
const (
	TypeReported     = "hazard.reported"
	TypeAmended      = "hazard.amended"
	TypeGraded       = "hazard.graded"
	TypeListed       = "hazard.listed"
	TypePlanned      = "rectification.planned"
	TypeProgressed   = "rectification.progressed"
	TypeExtended     = "rectification.extended"
	TypeCompleted    = "rectification.completed"
	TypeVerifyFailed = "verification.failed"
	TypeCleared      = "hazard.cleared"
	TypeReopened     = "hazard.reopened"
	TypeWithdrawn    = "hazard.withdrawn"
)

// Actions are the command verbs; each yields one event type.
const (
	ActReport   = "report"
	ActAmend    = "amend"
	ActGrade    = "grade"
	ActList     = "list"
	ActPlan     = "plan"
	ActProgress = "progress"
	ActExtend   = "extend"
	ActComplete = "complete"
	ActReject   = "reject"
	ActClear    = "clear"
	ActReopen   = "reopen"
	ActWithdraw = "withdraw"
)

// Actions lists every command verb, report first.
var Actions = []string{ActReport, ActAmend, ActGrade, ActList, ActPlan, ActProgress, ActExtend, ActComplete, ActReject, ActClear, ActReopen, ActWithdraw}

// ActionType maps a verb to the event type it records.
func ActionType(action string) string {
	switch action {
	case ActReport:
		return TypeReported
	case ActAmend:
		return TypeAmended
	case ActGrade:
		return TypeGraded
	case ActList:
		return TypeListed
	case ActPlan:
		return TypePlanned
	case ActProgress:
		return TypeProgressed
	case ActExtend:
		return TypeExtended
	case ActComplete:
		return TypeCompleted
	case ActReject:
		return TypeVerifyFailed
	case ActClear:
		return TypeCleared
	case ActReopen:
		return TypeReopened
	case ActWithdraw:
		return TypeWithdrawn
	}
	return ""
}

// Status of a hazard.
type Status string

const (
	StatusReported   Status = "reported"
	StatusPlanned    Status = "planned"
	StatusRectifying Status = "rectifying"
	StatusAwaiting   Status = "awaiting_verification"
	StatusCleared    Status = "cleared"
	StatusWithdrawn  Status = "withdrawn"
)

// Open reports whether a status counts as open.
func (s Status) Open() bool { return s != StatusCleared && s != StatusWithdrawn && s != "" }

const (
	GradeGeneral = "general"
	GradeMajor   = "major"
)

// Sources of a finding.
var Sources = []string{"inspection", "self-check", "third-party", "tip-off"}

// Listing levels, lowest first.
var ListLevels = []string{"county", "prefecture", "province"}

// Site is where a hazard is: an enterprise (by unified social credit code) or a place
// without one, which gets a site id when first reported.
type Site struct {
	Name       string `json:"name"`
	CreditCode string `json:"credit_code,omitempty"`
	ID         string `json:"id,omitempty"`
}

// Key is the site key that a rectifier's scope lists.
func (s Site) Key() string {
	if s.CreditCode != "" {
		return s.CreditCode
	}
	return s.ID
}

// Location of a finding.
type Location struct {
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Address string  `json:"address,omitempty"`
}

// Evidence references a file in the evidence store by SHA-256.
type Evidence struct {
	SHA256 string `json:"sha256"`
	Name   string `json:"name,omitempty"`
}

// Payloads: the `data` of each event type. Deadlines are RFC 3339 instants.

type Reported struct {
	Sector      string     `json:"sector"`
	Region      string     `json:"region"`
	Site        Site       `json:"site"`
	Location    *Location  `json:"location,omitempty"`
	Grade       string     `json:"grade"`
	Criterion   string     `json:"criterion,omitempty"`
	Description string     `json:"description"`
	Source      string     `json:"source"`
	Deadline    string     `json:"deadline"`
	Evidence    []Evidence `json:"evidence,omitempty"`
	Supersedes  string     `json:"supersedes,omitempty"`
}

type Amended struct {
	Description *string   `json:"description,omitempty"`
	Site        *Site     `json:"site,omitempty"`
	Location    *Location `json:"location,omitempty"`
}

type Graded struct {
	Grade     string `json:"grade"`
	Criterion string `json:"criterion,omitempty"`
	Reason    string `json:"reason"`
}

type Listed struct {
	Level     string `json:"level"`
	Authority string `json:"authority"`
	Document  string `json:"document"`
	Deadline  string `json:"deadline"`
}

type Planned struct {
	Responsible string `json:"responsible,omitempty"`
	Measures    string `json:"measures,omitempty"`
	Funds       string `json:"funds,omitempty"`
	Deadline    string `json:"deadline,omitempty"`
	Contingency string `json:"contingency,omitempty"`
}

type Progressed struct {
	Note     string     `json:"note,omitempty"`
	Percent  int        `json:"percent"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

type Extended struct {
	Deadline string `json:"deadline"`
	Reason   string `json:"reason"`
}

type Completed struct {
	Note     string     `json:"note,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

type VerifyFailed struct {
	Reason   string     `json:"reason"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

type Cleared struct {
	Method   string     `json:"method"`
	Note     string     `json:"note,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

type Reopened struct {
	Reason   string `json:"reason"`
	Deadline string `json:"deadline,omitempty"`
}

type Withdrawn struct {
	Reason string `json:"reason"`
}

// NewPayload returns a pointer to the zero payload of an event type, or nil.
func NewPayload(typ string) any {
	switch typ {
	case TypeReported:
		return &Reported{}
	case TypeAmended:
		return &Amended{}
	case TypeGraded:
		return &Graded{}
	case TypeListed:
		return &Listed{}
	case TypePlanned:
		return &Planned{}
	case TypeProgressed:
		return &Progressed{}
	case TypeExtended:
		return &Extended{}
	case TypeCompleted:
		return &Completed{}
	case TypeVerifyFailed:
		return &VerifyFailed{}
	case TypeCleared:
		return &Cleared{}
	case TypeReopened:
		return &Reopened{}
	case TypeWithdrawn:
		return &Withdrawn{}
	}
	return nil
}

// Evidence lists the evidence a payload references.
func EvidenceOf(p any) []Evidence {
	switch v := p.(type) {
	case *Reported:
		return v.Evidence
	case *Progressed:
		return v.Evidence
	case *Completed:
		return v.Evidence
	case *VerifyFailed:
		return v.Evidence
	case *Cleared:
		return v.Evidence
	}
	return nil
}
