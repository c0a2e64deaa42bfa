package main

import (
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
			// The leaf link may not publish hazard subjects on the hub: offices reach HAZARDS only
			// through sourcing, which never carries two writers' expected-sequence checks.
			o.LeafNode.Users = []*server.User{{Username: "leaf", Password: c.LeafPassword, Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Deny: []string{"hz.>"}}}}}
		}
		if o.JetStreamDomain == "" {
			o.JetStreamDomain = "hub"
		}
	}
	return nil
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
