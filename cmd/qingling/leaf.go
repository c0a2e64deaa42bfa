package main

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"qingling/events"
	"qingling/events/jsstore"
)

// County leaf offices. A county office runs Qingling with its own JetStream domain (--home),
// a leafnode link to the province (--leaf-remote) and writes under its own subjects
// leaf.<county>.hz.> (--leaf-county). The province (hub) listens for leaf links
// (--leaf-listen) and sources each office's log into HAZARDS with a subject transform
// (--leaf-source DOMAIN:COUNTY). Each hazard's home is the domain where it was reported, named
// in its events' `source`; only the home accepts commands for it.

// source is the `source` this instance writes: qingling/<home>.
func (c *Config) source() string {
	if c.Home == "" {
		return events.DefaultSource
	}
	return "qingling/" + c.Home
}

// leafOptions applies the leaf and hub settings to the embedded server.
func (c *Config) leafOptions(o *server.Options) error {
	if c.Home != "" {
		o.JetStreamDomain = c.Home
	}
	if c.LeafRemote != "" {
		u, err := url.Parse(c.LeafRemote)
		if err != nil {
			return fmt.Errorf("--leaf-remote: %w", err)
		}
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
		o.LeafNode.ReconnectInterval = time.Second
	}
	if c.LeafListen != "" {
		host, p, err := net.SplitHostPort(c.LeafListen)
		if err != nil {
			return fmt.Errorf("--leaf-listen: %w", err)
		}
		port, _ := strconv.Atoi(p)
		if port == 0 {
			port = -1
		}
		o.LeafNode.Host, o.LeafNode.Port = host, port
		if c.LeafPassword != "" {
			// Not o.LeafNode.Users: nats-server ignores the permissions of leafnode users. The
			// link authenticates through the client authenticator instead, which gives it
			// LeafPermissions (and leaves every other connection to the users file, if any).
			o.CustomClientAuthentication = &leafAuth{password: c.LeafPassword, next: o.CustomClientAuthentication}
		}
		if o.JetStreamDomain == "" {
			o.JetStreamDomain = "hub"
		}
	}
	return nil
}

// LeafPermissions are the hub's rights for a county office's leaf link, seen from the office
// (as deploy/nats/leaf/hub-leafnodes.conf): publish is what the office may send into the hub,
// subscribe what the hub sends it. The office's log reaches HAZARDS only through the hub's
// source of its domain, which never carries two writers' expected-sequence checks; its
// checkpoints (hzcp.>), status rows and evidence stay in its own streams, which its subjects
// would otherwise also reach on the hub (a stream's interest crosses the link); and neither side
// answers the other's Qingling commands.
func LeafPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{"hz.>", "hzcp.>", "$KV.>", "$O.>", "$JS.API.>", "qingling.cmd.>", "$SRV.>"}},
		Subscribe: &server.SubjectPermission{Deny: []string{"hz.>", "hzcp.>", "$KV.>", "$O.>", "qingling.cmd.>"}},
	}
}

// leafAuth admits the hub's leaf links (user "leaf" with the password) with LeafPermissions;
// other connections go to next, or are let in without one (a hub without identities).
type leafAuth struct {
	password string
	next     server.Authentication
}

func (a *leafAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.LEAF {
		return a.next == nil || a.next.Check(c)
	}
	o := c.GetOpts()
	if o == nil || o.Username != "leaf" || subtle.ConstantTimeCompare([]byte(o.Password), []byte(a.password)) != 1 {
		return false
	}
	c.RegisterUser(&server.User{Username: "leaf", Permissions: LeafPermissions()})
	return true
}

// parseLeaves reads --leaf-source values DOMAIN:COUNTY[,DOMAIN:COUNTY].
func parseLeaves(s string, cat *events.Catalog) ([]jsstore.Leaf, error) {
	var out []jsstore.Leaf
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		d, county, ok := strings.Cut(part, ":")
		if g, found := cat.Region(county); !ok || d == "" || !found || g.Level != "county" {
			return nil, fmt.Errorf("--leaf-source %q: want DOMAIN:COUNTY with a county code", part)
		}
		out = append(out, jsstore.Leaf{Domain: d, County: county})
	}
	return out, nil
}

func leafPrefix(county string) string {
	if county == "" {
		return ""
	}
	return jsstore.LeafPrefix(county)
}
