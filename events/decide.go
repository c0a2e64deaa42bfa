package events

import (
	"regexp"
	"slices"
	"time"
)

var siteIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{2,63}$`) // compiled once; read-only

// ResolveIDs fills a command's missing ids the way design.md fixes them: a report without an
// id takes UUIDv5(command_id), or a fresh UUIDv7 without one; a command without a command id
// gets a fresh one (and is then not idempotent).
func ResolveIDs(cmd *Command) {
	if cmd.Action == ActReport && cmd.HazardID == "" {
		if cmd.CommandID != "" {
			cmd.HazardID = ReportID(cmd.CommandID)
		} else {
			cmd.HazardID = NewID()
		}
	}
	if cmd.CommandID == "" {
		cmd.CommandID = NewID()
	}
}

// Decide checks a command against the hazard's state h (nil if it does not exist) at the
// record instant now, and returns the one event it records, or a typed error.
// It normalises cmd.Payload in place. The event's prevhash chains to h.
func Decide(cat *Catalog, h *Hazard, cmd *Command, now time.Time, source string) (*Event, error) {
	if h != nil && h.HashUnknown {
		return nil, Errorf(KindInternal, "hash_unknown", "", "hazard %s: the hash of its last event is not resolved", h.ID)
	}
	occurred, err := Check(cat, h, cmd, now)
	if err != nil {
		return nil, err
	}
	data, err := encodePayload(cmd.Payload) // stored without HTML escaping, like the envelope (Event.Marshal)
	if err != nil {
		return nil, err
	}
	e := &Event{SpecVersion: "1.0", ID: EventID(cmd.HazardID, cmd.CommandID), Source: source, Type: ActionType(cmd.Action),
		Subject: cmd.HazardID, Time: now, DataContentType: "application/json", OccurredAt: occurred,
		Actor: cmd.Actor.ID, ActorRole: cmd.Actor.Role, CommandID: cmd.CommandID, Sig: cmd.Sig, Data: data}
	if h == nil {
		e.PrevHash = HashString(GenesisHash(cmd.HazardID))
	} else {
		e.PrevHash = h.PrevHash()
	}
	return e, nil
}

// Check applies Decide's rules to cmd on h at now, normalising cmd.Payload in place as Decide
// does, without making the event; it returns the instant the command occurred. Verify
// replays the log with it.
func Check(cat *Catalog, h *Hazard, cmd *Command, now time.Time) (time.Time, error) {
	if cmd.HazardID == "" || cmd.CommandID == "" {
		return time.Time{}, Errorf(KindInternal, "missing_ids", "", "command ids not resolved")
	}
	occurred := cmd.OccurredAt
	if occurred.IsZero() {
		occurred = now
	}
	if occurred.After(now.Add(MaxClockSkew)) {
		return time.Time{}, Errorf(KindInvalid, "occurred_in_future", "occurred_at", "occurred_at %s is in the future (server time %s)", FormatInstant(occurred), FormatInstant(now))
	}
	if occurred.Year() < 2000 {
		return time.Time{}, invalid("occurred_at", "occurred_at %s is implausibly early", FormatInstant(occurred))
	}
	if cmd.Action == ActReport {
		if h != nil {
			return time.Time{}, Errorf(KindConflict, "hazard_exists", "id", "hazard %s already exists", cmd.HazardID)
		}
	} else {
		if h == nil {
			return time.Time{}, Errorf(KindNotFound, "hazard_not_found", "id", "no hazard %s", cmd.HazardID)
		}
		if cmd.ExpectedVersion != nil && *cmd.ExpectedVersion != h.Version {
			return time.Time{}, Errorf(KindConflict, "version_conflict", "expected_version", "hazard %s is at version %d, not %d", h.ID, h.Version, *cmd.ExpectedVersion)
		}
		if occurred.Before(h.FoundAt.Time()) {
			return time.Time{}, invalid("occurred_at", "occurred_at %s is before the hazard was found (%s)", FormatInstant(occurred), FormatInstant(h.FoundAt.Time()))
		}
	}
	if err := decide(cat, h, cmd, occurred); err != nil {
		return time.Time{}, err
	}
	return occurred, nil
}

// decide applies the lifecycle rules of cmd's action to h and normalises cmd.Payload with the
// action's step of normalize, which SignCommand applies too. Each case keeps the order its
// checks have always had, so a command with several problems reports the same one: the
// rules on the hazard's state first, then the payload's normalisation, then the rules on the
// normalised fields. An amendment and an extension interleave the two (a rule stands between
// two fields' normalisation), so their normalisation comes in two parts.
func decide(cat *Catalog, h *Hazard, cmd *Command, occurred time.Time) error {
	switch p := cmd.Payload.(type) {
	case *Reported:
		if err := normReported(cat, cmd.HazardID, p, occurred); err != nil { // a report's rules need no state
			return err
		}
	case *Amended:
		if err := needOpen(h, ActAmend); err != nil {
			return err
		}
		if p.Description == nil && p.Site == nil && p.Location == nil {
			return Errorf(KindInvalid, "nothing_to_amend", "", "amend needs description, site or location")
		}
		if err := normAmendedDescription(p); err != nil {
			return err
		}
		if p.Site != nil && (p.Site.CreditCode != "" || p.Site.ID != "") && p.Site.Key() != h.SiteKey {
			return rule("site_key_fixed", "the site's credit code or id cannot be amended; withdraw and re-report")
		}
		if err := normAmendedPlace(p); err != nil {
			return err
		}
	case *Graded:
		if err := needOpen(h, ActGrade); err != nil {
			return err
		}
		if err := checkGrade(cat, h.Sector, p.Grade, &p.Criterion, occurred); err != nil {
			return err
		}
		if err := normGraded(p); err != nil {
			return err
		}
		if p.Grade == h.Grade && p.Criterion == h.Criterion {
			return rule("grade_unchanged", "hazard is already %s with criterion %q", h.Grade, h.Criterion)
		}
	case *Listed:
		if err := needOpen(h, ActList); err != nil {
			return err
		}
		if h.Grade != GradeMajor {
			return rule("list_requires_major", "only a major hazard can be listed for supervision")
		}
		if !slices.Contains(ListLevels, p.Level) {
			return invalid("level", "level must be county, prefecture or province")
		}
		if h.Listed && levelRank(p.Level) <= levelRank(h.ListLevel) {
			return rule("already_listed", "hazard is already listed at %s level", h.ListLevel)
		}
		if err := normListed(p, occurred); err != nil {
			return err
		}
	case *Planned:
		if !slices.Contains([]Status{StatusReported, StatusPlanned, StatusRectifying}, h.Status) {
			return transition(h, ActPlan)
		}
		if err := normPlanned(p, occurred); err != nil {
			return err
		}
		if err := planComplete(h, p); err != nil {
			return err
		}
	case *Progressed:
		if !rectifiable(h) {
			return transition(h, ActProgress)
		}
		if p.Percent < 0 || p.Percent > 100 {
			return invalid("percent", "percent must be between 0 and 100")
		}
		if err := normNoteEvidence(&p.Note, &p.Evidence); err != nil {
			return err
		}
	case *Extended:
		if err := needOpen(h, ActExtend); err != nil {
			return err
		}
		if err := normExtendedDeadline(p, occurred); err != nil {
			return err
		}
		if d := parseInstant(p.Deadline); !d.After(h.Deadline()) {
			return rule("deadline_not_later", "the new deadline %s is not after the current one %s", d, FormatInstant(h.Deadline()))
		}
		if err := normExtendedReason(p); err != nil {
			return err
		}
	case *Completed:
		if !rectifiable(h) {
			return transition(h, ActComplete)
		}
		if err := normNoteEvidence(&p.Note, &p.Evidence); err != nil {
			return err
		}
	case *VerifyFailed:
		if h.Status != StatusAwaiting {
			return transition(h, ActReject)
		}
		if err := normVerifyFailed(p); err != nil {
			return err
		}
	case *Cleared:
		if h.Status != StatusAwaiting {
			return transition(h, ActClear)
		}
		if cmd.Actor.ID != "" && cmd.Actor.ID == h.CompletedBy {
			return rule("completer_cannot_clear", "%s completed this hazard and cannot also clear it", cmd.Actor.ID)
		}
		if h.Grade == GradeMajor && cmd.Actor.ID != "" && cmd.Actor.ID == h.ReportedBy {
			return rule("reporter_cannot_clear", "%s reported this major hazard and cannot also clear it", cmd.Actor.ID)
		}
		if err := normCleared(p); err != nil {
			return err
		}
	case *Reopened:
		if h.Status != StatusCleared {
			return transition(h, ActReopen)
		}
		if err := normReopened(p, occurred); err != nil {
			return err
		}
	case *Withdrawn:
		if h.Status == StatusWithdrawn {
			return transition(h, ActWithdraw)
		}
		if err := normWithdrawn(p); err != nil {
			return err
		}
	default:
		return unknownPayload(p)
	}
	return nil
}

// rectifiable tells whether h takes progress and completion: planned or rectifying, or a
// general hazard still reported (it may be fixed on the spot).
func rectifiable(h *Hazard) bool {
	return h.Status == StatusPlanned || h.Status == StatusRectifying || (h.Grade == GradeGeneral && h.Status == StatusReported)
}

// planComplete checks a normalised plan against h's grade: a major hazard's plan needs all
// five of 五落实, any other plan its measures.
func planComplete(h *Hazard, p *Planned) *Error {
	if h.Grade != GradeMajor {
		if p.Measures == "" {
			return Errorf(KindInvalid, "required", "measures", "measures is required")
		}
		return nil
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"responsible", p.Responsible}, {"measures", p.Measures}, {"funds", p.Funds}, {"deadline", p.Deadline}, {"contingency", p.Contingency}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	e := rule("plan_incomplete", "a major hazard's plan needs all five of 五落实 (responsible, measures, funds, deadline, contingency); missing: %v", missing)
	e.Field = missing[0]
	return e
}

func unknownPayload(p any) *Error {
	return Errorf(KindInternal, "unknown_payload", "", "unknown payload %T", p)
}

// normalize is the per-payload normalisation that needs no hazard state: text trimmed,
// checked for UTF-8 and control characters and capped, deadlines parsed and written as RFC
// 3339 instants after occurred, evidence checked, a report's fields validated and its site
// id given. decide applies the same steps (between its rules), and NormalizePayload applies
// this, so a client signs the data the server records. id is the hazard's id.
func normalize(cat *Catalog, id string, payload any, occurred time.Time) *Error {
	switch p := payload.(type) {
	case *Reported:
		return normReported(cat, id, p, occurred)
	case *Amended:
		if err := normAmendedDescription(p); err != nil {
			return err
		}
		return normAmendedPlace(p)
	case *Graded:
		return normGraded(p)
	case *Listed:
		return normListed(p, occurred)
	case *Planned:
		return normPlanned(p, occurred)
	case *Progressed:
		return normNoteEvidence(&p.Note, &p.Evidence)
	case *Extended:
		if err := normExtendedDeadline(p, occurred); err != nil {
			return err
		}
		return normExtendedReason(p)
	case *Completed:
		return normNoteEvidence(&p.Note, &p.Evidence)
	case *VerifyFailed:
		return normVerifyFailed(p)
	case *Cleared:
		return normCleared(p)
	case *Reopened:
		return normReopened(p, occurred)
	case *Withdrawn:
		return normWithdrawn(p)
	default:
		return unknownPayload(p)
	}
}

// normReported checks and normalises a report, which has no state to check against: a place
// without a credit code or site id takes the hazard's id as its site id.
func normReported(cat *Catalog, id string, p *Reported, occurred time.Time) *Error {
	var err *Error
	if _, ok := cat.Sector(p.Sector); !ok {
		return Errorf(KindInvalid, "unknown_sector", "sector", "unknown sector %q", clip(p.Sector, 40))
	}
	if g, ok := cat.Region(p.Region); !ok {
		return Errorf(KindInvalid, "unknown_region", "region", "unknown region code %q", clip(p.Region, 40))
	} else if g.Level != "county" {
		return Errorf(KindInvalid, "region_not_county", "region", "region %s (%s) is a %s; give a county-level code", g.Code, g.NameZh, g.Level)
	}
	if err := checkGrade(cat, p.Sector, p.Grade, &p.Criterion, occurred); err != nil {
		return err
	}
	if !slices.Contains(Sources, p.Source) {
		return invalid("source", "source must be one of %v", Sources)
	}
	if p.Site.Name, err = required("site.name", p.Site.Name, MaxNameLen, false); err != nil {
		return err
	}
	switch {
	case p.Site.CreditCode != "":
		if !ValidCreditCode(p.Site.CreditCode) {
			return Errorf(KindInvalid, "invalid_credit_code", "site.credit_code", "site.credit_code %q is not a valid unified social credit code", clip(p.Site.CreditCode, 40))
		}
		p.Site.ID = ""
	case p.Site.ID != "":
		if !siteIDRe.MatchString(p.Site.ID) {
			return invalid("site.id", "site.id must be 3–64 lowercase letters, digits and hyphens")
		}
	default:
		p.Site.ID = id // a place without a credit code gets a site id when first reported
	}
	if p.Location != nil {
		if err := checkLocation(p.Location); err != nil {
			return err
		}
	}
	if p.Description, err = required("description", p.Description, MaxTextLen, true); err != nil {
		return err
	}
	if p.Deadline, err = deadlineAfter("deadline", p.Deadline, occurred, true); err != nil {
		return err
	}
	if p.Evidence, err = evidence(p.Evidence); err != nil {
		return err
	}
	if p.Supersedes != "" {
		if err := CanonicalUUID("supersedes", p.Supersedes); err != nil {
			return err
		}
	}
	return nil
}

func normAmendedDescription(p *Amended) *Error {
	if p.Description != nil {
		d, err := required("description", *p.Description, MaxTextLen, true)
		if err != nil {
			return err
		}
		p.Description = &d
	}
	return nil
}

func normAmendedPlace(p *Amended) *Error {
	if p.Site != nil {
		var err *Error
		if p.Site.Name, err = required("site.name", p.Site.Name, MaxNameLen, false); err != nil {
			return err
		}
	}
	if p.Location != nil {
		return checkLocation(p.Location)
	}
	return nil
}

func normGraded(p *Graded) *Error {
	var err *Error
	p.Reason, err = required("reason", p.Reason, MaxTextLen, true)
	return err
}

func normListed(p *Listed, occurred time.Time) *Error {
	var err *Error
	if p.Authority, err = required("authority", p.Authority, MaxNameLen, false); err != nil {
		return err
	}
	if p.Document, err = required("document", p.Document, MaxNameLen, false); err != nil {
		return err
	}
	p.Deadline, err = deadlineAfter("deadline", p.Deadline, occurred, true)
	return err
}

func normPlanned(p *Planned, occurred time.Time) *Error {
	var err *Error
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"responsible", &p.Responsible, MaxNameLen}, {"measures", &p.Measures, MaxTextLen}, {"funds", &p.Funds, MaxNameLen}, {"contingency", &p.Contingency, MaxTextLen}} {
		if *f.v, err = text(f.name, *f.v, f.max, f.max == MaxTextLen); err != nil {
			return err
		}
	}
	p.Deadline, err = deadlineAfter("deadline", p.Deadline, occurred, false)
	return err
}

// normNoteEvidence normalises the optional note and the evidence of a progress report or a
// completion.
func normNoteEvidence(note *string, ev *[]Evidence) *Error {
	var err *Error
	if *note, err = text("note", *note, MaxTextLen, true); err != nil {
		return err
	}
	*ev, err = evidence(*ev)
	return err
}

func normExtendedDeadline(p *Extended, occurred time.Time) *Error {
	var err *Error
	p.Deadline, err = deadlineAfter("deadline", p.Deadline, occurred, true)
	return err
}

func normExtendedReason(p *Extended) *Error {
	var err *Error
	p.Reason, err = required("reason", p.Reason, MaxTextLen, true)
	return err
}

func normVerifyFailed(p *VerifyFailed) *Error {
	var err *Error
	if p.Reason, err = required("reason", p.Reason, MaxTextLen, true); err != nil {
		return err
	}
	p.Evidence, err = evidence(p.Evidence)
	return err
}

func normCleared(p *Cleared) *Error {
	var err *Error
	if p.Method, err = required("method", p.Method, MaxNameLen, false); err != nil {
		return err
	}
	return normNoteEvidence(&p.Note, &p.Evidence)
}

func normReopened(p *Reopened, occurred time.Time) *Error {
	var err *Error
	if p.Reason, err = required("reason", p.Reason, MaxTextLen, true); err != nil {
		return err
	}
	p.Deadline, err = deadlineAfter("deadline", p.Deadline, occurred, false)
	return err
}

func normWithdrawn(p *Withdrawn) *Error {
	var err *Error
	p.Reason, err = required("reason", p.Reason, MaxTextLen, true)
	return err
}

func checkGrade(cat *Catalog, sector, grade string, criterion *string, at time.Time) *Error {
	switch grade {
	case GradeMajor:
		if *criterion == "" {
			return Errorf(KindInvalid, "criterion_required", "criterion", "a major hazard must cite a criterion of its sector")
		}
	case GradeGeneral:
		if *criterion == "" {
			return nil
		}
	default:
		return invalid("grade", "grade must be general or major")
	}
	return cat.CriterionValid(*criterion, sector, at)
}

func checkLocation(l *Location) *Error {
	if l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180 || (l.Lat == 0 && l.Lon == 0) {
		return invalid("location", "location must have lat in [-90, 90] and lon in [-180, 180]")
	}
	a, err := text("location.address", l.Address, MaxNameLen, false)
	l.Address = a
	return err
}

// deadlineAfter normalises a deadline field to an RFC 3339 instant after occurred.
func deadlineAfter(field, s string, occurred time.Time, need bool) (string, *Error) {
	if s == "" {
		if need {
			return "", Errorf(KindInvalid, "required", field, "%s is required", field)
		}
		return "", nil
	}
	t, err := ParseDeadline(field, s)
	if err != nil {
		return "", err
	}
	if !t.After(occurred) {
		return "", Errorf(KindInvalid, "deadline_before_occurred", field, "%s %s is not after occurred_at %s", field, FormatInstant(t), FormatInstant(occurred))
	}
	return FormatInstant(t), nil
}

func needOpen(h *Hazard, action string) error {
	if !h.Status.Open() {
		return transition(h, action)
	}
	return nil
}

func transition(h *Hazard, action string) *Error {
	e := rule("invalid_transition", "cannot %s a %s hazard in status %s", action, h.Grade, h.Status)
	e.Field = "status"
	return e
}

func levelRank(l string) int { return slices.Index(ListLevels, l) }
