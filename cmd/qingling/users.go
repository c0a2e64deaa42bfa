package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"qingling/events"
	"qingling/handlers/demo"
	"qingling/handlers/identity"
)

// bootstrapUsers opens the users file; on first start it creates an admin and writes its
// token to <data>/admin.token (0600); with demo it also creates one user of each role.
func bootstrapUsers(cfg *Config, cat *events.Catalog, out io.Writer) (*identity.Store, error) {
	st, err := identity.Open(cfg.Users, cat)
	if err != nil {
		return nil, err
	}
	if !st.Exists() {
		c, err := st.Add(events.User{ID: "admin", Role: events.RoleAdmin})
		if err != nil {
			return nil, err
		}
		p := filepath.Join(cfg.DataDir, "admin.token")
		if err := os.WriteFile(p, []byte(c.Token+"\n"), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "Created user admin; its API token is in %s (mode 0600). Users file: %s\n", p, cfg.Users)
	}
	if cfg.Demo {
		demoUsers := []events.User{
			{ID: "demo-inspector", Role: events.RoleInspector, Sectors: []string{"all"}, Jurisdiction: "530000"},
			{ID: "demo-rectifier", Role: events.RoleRectifier, Sites: demoSites()},
			{ID: "demo-verifier", Role: events.RoleVerifier, Sectors: []string{"all"}, Jurisdiction: "530000"},
			{ID: "demo-desk", Role: events.RoleDesk, Sectors: []string{"all"}, Jurisdiction: "530000"},
			{ID: "demo-desk-forest", Role: events.RoleDesk, Sectors: []string{"forest"}, Jurisdiction: "530000"},
			{ID: "demo-auditor", Role: events.RoleAuditor},
		}
		var lines []string
		for _, u := range demoUsers {
			if _, ok := st.User(u.ID); ok {
				continue
			}
			c, err := st.Add(u)
			if err != nil {
				return nil, err
			}
			lines = append(lines, fmt.Sprintf("  %-17s %-9s %s", u.ID, u.Role, c.Token))
			if cfg.DemoTokens != nil {
				cfg.DemoTokens[u.ID] = c.Token
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(out, "Demo users (tokens shown once):\n%s\n", strings.Join(lines, "\n"))
		}
	}
	return st, nil
}

// sessionKey reads or creates the HMAC key for session cookies.
func sessionKey(dir string) ([]byte, error) {
	p := filepath.Join(dir, "session.key")
	b, err := os.ReadFile(p)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, os.WriteFile(p, b, 0o600)
}

const userUsage = `usage: qingling user <add|list|disable|enable|rotate> [flags]

  add     --id ID --role ROLE [--sectors a,b|all] [--jurisdiction CODE] [--sites key1,key2]
  list
  disable --id ID
  enable  --id ID
  rotate  --id ID        new token and nkey; the old public key is kept for old signatures

Every verb takes --users FILE (default <data>/users.json, QINGLING_USERS) and --json.
Roles: inspector rectifier verifier desk auditor admin.
`

func userCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return exitUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	users := fs.String("users", envOr("QINGLING_USERS", filepath.Join(envOr("QINGLING_DATA", "data"), "users.json")), "users file")
	id := fs.String("id", "", "user id")
	role := fs.String("role", "", "role")
	sectors := fs.String("sectors", "", "comma-separated sectors, or all")
	juris := fs.String("jurisdiction", "", "region code (county, prefecture or province)")
	sites := fs.String("sites", "", "comma-separated site keys (credit codes or site ids)")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	cat, err := events.LoadCatalog()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	st, err := identity.Open(*users, cat)
	if err != nil {
		fmt.Fprintln(stderr, "qingling user:", err)
		return exitFailure
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	printCreds := func(c identity.Credentials) int {
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(c)
		} else {
			fmt.Fprintf(stdout, "user %s\n  token (HTTP Bearer): %s\n  nkey seed (NATS, signing): %s\n  nkey public key: %s\nKeep them safe: they are shown once.\n", c.User, c.Token, c.Seed, c.NKey)
		}
		return exitOK
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "qingling user:", err)
		switch events.KindOf(err) {
		case events.KindInvalid:
			return exitInvalid
		case events.KindNotFound:
			return exitNotFound
		case events.KindConflict:
			return exitConflict
		}
		return exitFailure
	}
	switch verb {
	case "add":
		c, err := st.Add(events.User{ID: *id, Role: *role, Sectors: split(*sectors), Jurisdiction: *juris, Sites: split(*sites)})
		if err != nil {
			return fail(err)
		}
		return printCreds(c)
	case "rotate":
		c, err := st.Rotate(*id)
		if err != nil {
			return fail(err)
		}
		return printCreds(c)
	case "disable", "enable":
		if err := st.SetDisabled(*id, verb == "disable"); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "user %s %sd\n", *id, verb)
		return exitOK
	case "list":
		list := st.List()
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(list)
			return exitOK
		}
		for _, r := range list {
			state := ""
			if r.Disabled {
				state = " (disabled)"
			}
			fmt.Fprintf(stdout, "%-20s %-9s sectors=%s jurisdiction=%s sites=%s keys=%d%s\n", r.ID, r.Role, strings.Join(r.Sectors, ","), r.Jurisdiction, strings.Join(r.Sites, ","), len(r.PublicKeys), state)
		}
		return exitOK
	}
	fmt.Fprint(stderr, userUsage)
	return exitUsage
}

// demoSites are the demo rectifier's sites: the first chemical plants of Anning and Xishan.
func demoSites() []string {
	var out []string
	for n := 1; n <= 5; n++ {
		out = append(out, demo.CreditCode("530181", "chem", n), demo.CreditCode("530112", "trade", n))
	}
	return out
}
