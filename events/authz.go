package events

import (
	"slices"
	"time"
)

// Roles of users.
const (
	RoleInspector = "inspector"
	RoleRectifier = "rectifier"
	RoleVerifier  = "verifier"
	RoleDesk      = "desk"
	RoleAuditor   = "auditor"
	RoleAdmin     = "admin"
)

// Roles lists every role.
var Roles = []string{RoleInspector, RoleRectifier, RoleVerifier, RoleDesk, RoleAuditor, RoleAdmin}

// WithdrawWindow is how long a reporter may withdraw their own finding.
const WithdrawWindow = 24 * time.Hour

// User is an identity with its scope: sectors ("all" for every sector), a jurisdiction
// (a region code at any level) and, for rectifiers, the site keys of their sites.
type User struct {
	ID           string   `json:"id"`
	Role         string   `json:"role"`
	Sectors      []string `json:"sectors,omitempty"`
	Jurisdiction string   `json:"jurisdiction,omitempty"`
	Sites        []string `json:"sites,omitempty"`
	Disabled     bool     `json:"disabled,omitempty"`
}

// Validate checks a user against the catalog.
func (u *User) Validate(cat *Catalog) error {
	if !actorIDOK(u.ID) {
		return invalid("id", "user id must be 1–64 letters, digits and . _ @ -")
	}
	if !slices.Contains(Roles, u.Role) {
		return invalid("role", "role must be one of %v", Roles)
	}
	for _, s := range u.Sectors {
		if _, ok := cat.Sector(s); !ok && s != "all" {
			return Errorf(KindInvalid, "unknown_sector", "sectors", "unknown sector %q", s)
		}
	}
	switch u.Role {
	case RoleAuditor, RoleAdmin:
	case RoleRectifier:
		if len(u.Sites) == 0 {
			return Errorf(KindInvalid, "required", "sites", "a rectifier needs the site keys of their sites")
		}
	default:
		if _, ok := cat.Region(u.Jurisdiction); !ok {
			return Errorf(KindInvalid, "unknown_region", "jurisdiction", "a %s needs a jurisdiction (region code), got %q", u.Role, u.Jurisdiction)
		}
		if len(u.Sectors) == 0 {
			return Errorf(KindInvalid, "required", "sectors", "a %s needs sectors (or \"all\")", u.Role)
		}
	}
	return nil
}

func actorIDOK(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '.' || c == '_' || c == '@' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}

func (u *User) inSector(sector string) bool {
	return slices.Contains(u.Sectors, "all") || slices.Contains(u.Sectors, sector)
}

func (u *User) covers(cat *Catalog, sector, region string) bool {
	return u.inSector(sector) && u.Jurisdiction != "" && cat.Contains(u.Jurisdiction, region)
}

func (u *User) ownSite(key string) bool { return key != "" && slices.Contains(u.Sites, key) }

// level of a jurisdiction as a listing level.
func jurisdictionLevel(cat *Catalog, code string) int {
	g, _ := cat.Region(code)
	return levelRank(map[string]string{"county": "county", "prefecture": "prefecture", "province": "province"}[g.Level])
}

func forbidden(code, format string, args ...any) *Error {
	return Errorf(KindForbidden, code, "", format, args...)
}

// CanRead reports whether u may read hazard h.
func CanRead(cat *Catalog, u *User, h *Hazard) bool {
	if u == nil || u.Disabled {
		return false
	}
	switch u.Role {
	case RoleAuditor, RoleAdmin:
		return true
	case RoleRectifier:
		return u.ownSite(h.SiteKey)
	default:
		return u.covers(cat, h.Sector, h.Region)
	}
}

// CanReadScope reports whether u may read the status of sector × region (a whole row).
func CanReadScope(cat *Catalog, u *User, sector, region string) bool {
	if u == nil || u.Disabled {
		return false
	}
	switch u.Role {
	case RoleAuditor, RoleAdmin:
		return true
	case RoleRectifier:
		return false
	}
	if sector == "all" {
		if !slices.Contains(u.Sectors, "all") {
			return false
		}
	} else if !u.inSector(sector) {
		return false
	}
	return u.Jurisdiction != "" && cat.Contains(u.Jurisdiction, region)
}

// Authorize applies design.md's role rules to a command by u on h (nil for a report) at now.
// Person-level separation of duties is Decide's; this is who may ask at all.
func Authorize(cat *Catalog, u *User, cmd *Command, h *Hazard, now time.Time) error {
	if u == nil {
		return Errorf(KindUnauthenticated, "unauthenticated", "", "sign in first")
	}
	if u.Disabled {
		return Errorf(KindUnauthenticated, "user_disabled", "", "user %s is disabled", u.ID)
	}
	if cmd.Action == ActReport {
		r, _ := cmd.Payload.(*Reported)
		if r == nil {
			return Errorf(KindInternal, "bad_payload", "", "report without payload")
		}
		// unknown codes are input errors whoever asks
		if _, ok := cat.Sector(r.Sector); !ok {
			return Errorf(KindInvalid, "unknown_sector", "sector", "unknown sector %q", clip(r.Sector, 40))
		}
		if _, ok := cat.Region(r.Region); !ok {
			return Errorf(KindInvalid, "unknown_region", "region", "unknown region code %q", clip(r.Region, 40))
		}
		switch u.Role {
		case RoleInspector:
			if r.Source == "self-check" {
				return forbidden("self_check_by_rectifier", "a self-check finding is reported by the site's rectifier")
			}
			if !u.inSector(r.Sector) {
				return forbidden("outside_sector", "%s does not cover sector %s", u.ID, r.Sector)
			}
			if !cat.Contains(u.Jurisdiction, r.Region) {
				return forbidden("outside_jurisdiction", "region %s is outside %s's jurisdiction %s", r.Region, u.ID, u.Jurisdiction)
			}
			return nil
		case RoleRectifier:
			if r.Source != "self-check" {
				return forbidden("rectifier_self_check_only", "a rectifier reports only self-check findings")
			}
			if !u.ownSite(r.Site.Key()) {
				return forbidden("not_own_site", "site %q is not one of %s's sites", r.Site.Key(), u.ID)
			}
			return nil
		}
		return forbidden("role_cannot_report", "a %s cannot report findings", u.Role)
	}
	if h == nil {
		return nil // Decide answers not found
	}
	inScope := u.covers(cat, h.Sector, h.Region)
	verifier := u.Role == RoleVerifier && inScope
	scopeErr := func() error {
		if !u.inSector(h.Sector) {
			return forbidden("outside_sector", "%s does not cover sector %s", u.ID, h.Sector)
		}
		return forbidden("outside_jurisdiction", "hazard %s (region %s) is outside %s's jurisdiction", h.ID, h.Region, u.ID)
	}
	need := func(ok bool, roles string) error {
		if ok {
			return nil
		}
		if (u.Role == RoleVerifier || u.Role == RoleInspector) && !inScope {
			return scopeErr()
		}
		if u.Role == RoleRectifier && !u.ownSite(h.SiteKey) {
			return forbidden("not_own_site", "hazard %s is not at one of %s's sites", h.ID, u.ID)
		}
		return forbidden("role_not_allowed", "%s needs %s; %s is a %s", cmd.Action, roles, u.ID, u.Role)
	}
	switch cmd.Action {
	case ActAmend:
		return need(verifier || (u.ID == h.ReportedBy && (inScope || u.ownSite(h.SiteKey))), "the reporter or a verifier")
	case ActGrade, ActExtend, ActReject, ActReopen:
		return need(verifier, "a verifier")
	case ActList:
		if err := need(verifier, "a verifier"); err != nil {
			return err
		}
		if p, ok := cmd.Payload.(*Listed); ok && jurisdictionLevel(cat, u.Jurisdiction) < levelRank(p.Level) {
			return forbidden("listing_level", "listing at %s level needs a verifier at that level or above", p.Level)
		}
		return nil
	case ActPlan, ActProgress, ActComplete:
		return need(u.Role == RoleRectifier && u.ownSite(h.SiteKey) || u.Role == RoleInspector && inScope, "the site's rectifier or an inspector on its behalf")
	case ActClear:
		if h.Grade == GradeMajor {
			if err := need(verifier, "a government verifier"); err != nil {
				return err
			}
			if h.Listed && jurisdictionLevel(cat, u.Jurisdiction) < levelRank(h.ListLevel) {
				return forbidden("listing_level", "hazard listed at %s level is cleared at that level or above", h.ListLevel)
			}
			return nil
		}
		return need(verifier || u.Role == RoleRectifier && u.ownSite(h.SiteKey), "a verifier or a rectifier of the site")
	case ActWithdraw:
		if verifier {
			return nil
		}
		if u.ID == h.ReportedBy {
			if now.Sub(h.RecordedAt.Time()) > WithdrawWindow {
				return forbidden("withdraw_window", "the reporter may withdraw only within 24 h of recording; ask a verifier")
			}
			return nil
		}
		return need(false, "the reporter within 24 h or a verifier")
	}
	return forbidden("role_not_allowed", "unknown action %s", cmd.Action)
}
