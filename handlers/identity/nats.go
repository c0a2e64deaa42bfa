package identity

import (
	"encoding/base64"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/nats-io/nats-server/v2/server"

	"qingling/events"
)

// InboxPrefix is a user's private inbox prefix: clients connect with
// nats.CustomInboxPrefix(InboxPrefix(user)) so that no one can read another's replies.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// Permissions are a user's NATS allow lists, generated from the users file (README lists them).
func Permissions(cat *events.Catalog, u *events.User) *server.Permissions {
	pub := []string{"qingling.cmd." + u.ID + ".>", "$SRV.>"}
	sub := []string{InboxPrefix(u.ID) + ".>"}
	switch u.Role {
	case events.RoleDesk:
		// hz_status watches, one single-filter watch per own key: only the subject-scoped
		// consumer create, never the bare create nor direct gets that take any filter in the body.
		pub = append(pub, "$JS.API.INFO", "$JS.API.STREAM.INFO.KV_hz_status",
			"$JS.API.CONSUMER.INFO.KV_hz_status.*", "$JS.API.CONSUMER.MSG.NEXT.KV_hz_status.*",
			"$JS.API.CONSUMER.DELETE.KV_hz_status.*", "$JS.FC.KV_hz_status.>")
		for _, key := range StatusKeys(cat, u) {
			pub = append(pub, "$JS.API.CONSUMER.CREATE.KV_hz_status.*.$KV.hz_status."+key,
				"$JS.API.CONSUMER.CREATE.KV_hz_status.*.$KV.hz_status."+key+".>")
		}
	case events.RoleAuditor:
		pub = append(pub, "$JS.API.INFO", "$JS.API.STREAM.INFO.HAZARDS", "$JS.API.STREAM.INFO.HZ_CHECKPOINTS",
			"$JS.API.CONSUMER.CREATE.HAZARDS.>", "$JS.API.CONSUMER.INFO.HAZARDS.*", "$JS.API.CONSUMER.MSG.NEXT.HAZARDS.*",
			"$JS.API.CONSUMER.DELETE.HAZARDS.*", "$JS.API.DIRECT.GET.HAZARDS.>", "$JS.API.DIRECT.GET.HAZARDS",
			"$JS.API.STREAM.MSG.GET.HAZARDS", "$JS.FC.HAZARDS.>",
			"$JS.API.CONSUMER.CREATE.HZ_CHECKPOINTS.>", "$JS.API.CONSUMER.INFO.HZ_CHECKPOINTS.*",
			"$JS.API.CONSUMER.MSG.NEXT.HZ_CHECKPOINTS.*", "$JS.API.CONSUMER.DELETE.HZ_CHECKPOINTS.*", "$JS.FC.HZ_CHECKPOINTS.>")
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub, Deny: []string{"hz.>", "leaf.>"}},
		Subscribe: &server.SubjectPermission{Allow: sub, Deny: []string{"hz.>", "_INBOX.>"}},
	}
}

// StatusKeys are the hz_status key prefixes a desk may watch: its sectors × its jurisdiction.
func StatusKeys(cat *events.Catalog, u *events.User) []string {
	path := []string{u.Jurisdiction}
	for g, ok := cat.Region(u.Jurisdiction); ok && g.Parent != ""; g, ok = cat.Region(g.Parent) {
		path = append([]string{g.Parent}, path...)
	}
	sectors := u.Sectors
	if len(sectors) == 1 && sectors[0] == "all" {
		sectors = []string{"all"}
		for _, s := range cat.Sectors {
			sectors = append(sectors, s.Code)
		}
	}
	keys := make([]string, 0, len(sectors))
	for _, s := range sectors {
		keys = append(keys, s+"."+strings.Join(path, "."))
	}
	return keys
}

// UserByKey finds the user of an nkey public key (current or past).
func (s *Store) UserByKey(pub string) (Record, bool) {
	for _, r := range s.List() {
		for _, k := range r.PublicKeys {
			if k == pub {
				return r, true
			}
		}
	}
	return Record{}, false
}

// Lookup finds an enabled or disabled user by id (for sessions).
func (s *Store) Lookup(id string) (*events.User, bool) {
	r, ok := s.User(id)
	if !ok {
		return nil, false
	}
	u := r.User
	return &u, true
}

// NATSAuth authenticates NATS clients against the users file as it is now (no server reload
// needed when users change): a client proves its nkey by signing the server's nonce, and gets
// the permissions generated for its user; a disabled or rotated-away key is refused at once.
// service is the public key of Qingling's own connection, which gets every right.
func (s *Store) NATSAuth(service string) server.Authentication {
	return &natsAuth{s: s, service: service}
}

type natsAuth struct {
	s       *Store
	service string
}

func (a *natsAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil || o.Nkey == "" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return false
		}
	}
	kp, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil || kp.Verify(c.GetNonce(), sig) != nil {
		return false
	}
	if o.Nkey == a.service {
		c.RegisterUser(&server.User{Username: "qingling"})
		return true
	}
	r, ok := a.s.UserByKey(o.Nkey)
	if !ok || r.Disabled || r.CurrentKey() != o.Nkey {
		return false
	}
	u := r.User
	c.RegisterUser(&server.User{Username: u.ID, Permissions: Permissions(a.s.cat, &u)})
	return true
}
