package events

import (
	"embed"
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"time"
)

//go:embed data/*.csv
var dataFS embed.FS // read-only embedded data, not mutable state

// Sector is one supervised sector (its token is the first subject token).
type Sector struct {
	Code   string `json:"code"`
	NameZh string `json:"name_zh"`
	NameEn string `json:"name_en"`
}

// Region is a GB/T 2260 division.
type Region struct {
	Code   string `json:"code"`
	NameZh string `json:"name_zh"`
	Level  string `json:"level"` // province, prefecture, county
	Parent string `json:"parent,omitempty"`
}

// Criterion is one item of a sector's official major-hazard criteria.
type Criterion struct {
	Code      string `json:"code"`
	Sector    string `json:"sector"`
	Standard  string `json:"standard"`
	Document  string `json:"document"`
	Part      string `json:"part,omitempty"`
	Item      string `json:"item"`
	SubjectZh string `json:"subject_zh"`
	GlossEn   string `json:"gloss_en"`
	Confirmed string `json:"confirmed"`
	ValidFrom string `json:"valid_from,omitempty"`
	ValidTo   string `json:"valid_to,omitempty"`
	Successor string `json:"successor,omitempty"`
}

// Catalog holds the sectors, regions and criteria. It is read-only after Load.
type Catalog struct {
	Sectors   []Sector
	sectors   map[string]Sector
	regions   map[string]Region
	children  map[string][]string
	criteria  map[string]Criterion
	Provinces []string
}

// LoadCatalog reads the embedded catalogs.
func LoadCatalog() (*Catalog, error) {
	c := &Catalog{sectors: map[string]Sector{}, regions: map[string]Region{}, children: map[string][]string{}, criteria: map[string]Criterion{}}
	if err := readCSV("data/sectors.csv", func(r map[string]string) error {
		s := Sector{Code: r["code"], NameZh: r["name_zh"], NameEn: r["name_en"]}
		c.Sectors = append(c.Sectors, s)
		c.sectors[s.Code] = s
		return nil
	}); err != nil {
		return nil, err
	}
	files, _ := dataFS.ReadDir("data")
	for _, f := range files {
		if len(f.Name()) > 8 && f.Name()[:8] == "regions_" {
			if err := readCSV("data/"+f.Name(), func(r map[string]string) error {
				g := Region{Code: r["code"], NameZh: r["name_zh"], Level: r["level"], Parent: r["parent"]}
				if len(g.Code) != 6 {
					return fmt.Errorf("region %q: code must have six digits", g.Code)
				}
				if _, dup := c.regions[g.Code]; dup {
					return fmt.Errorf("region %q twice", g.Code)
				}
				c.regions[g.Code] = g
				if g.Level == "province" {
					c.Provinces = append(c.Provinces, g.Code)
				} else {
					c.children[g.Parent] = append(c.children[g.Parent], g.Code)
				}
				return nil
			}); err != nil {
				return nil, err
			}
		}
	}
	for code, g := range c.regions {
		if g.Level != "province" {
			p, ok := c.regions[g.Parent]
			want := map[string]string{"prefecture": "province", "county": "prefecture"}[g.Level]
			if !ok || p.Level != want {
				return nil, fmt.Errorf("region %s (%s): parent %q is not a %s", code, g.Level, g.Parent, want)
			}
		}
	}
	for _, k := range c.children {
		sort.Strings(k)
	}
	sort.Strings(c.Provinces)
	if err := readCSV("data/criteria.csv", func(r map[string]string) error {
		k := Criterion{Code: r["code"], Sector: r["sector"], Standard: r["standard"], Document: r["document"], Part: r["part"],
			Item: r["item"], SubjectZh: r["subject_zh"], GlossEn: r["gloss_en"], Confirmed: r["confirmed"],
			ValidFrom: r["valid_from"], ValidTo: r["valid_to"], Successor: r["successor"]}
		if _, ok := c.sectors[k.Sector]; !ok {
			return fmt.Errorf("criterion %s: unknown sector %q", k.Code, k.Sector)
		}
		if _, dup := c.criteria[k.Code]; dup {
			return fmt.Errorf("criterion %s twice", k.Code)
		}
		c.criteria[k.Code] = k
		return nil
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func readCSV(name string, row func(map[string]string) error) error {
	f, err := dataFS.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	head, err := r.Read()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m := make(map[string]string, len(head))
		for i, h := range head {
			m[h] = rec[i]
		}
		if err := row(m); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

// Sector returns the sector with this token.
func (c *Catalog) Sector(code string) (Sector, bool) { s, ok := c.sectors[code]; return s, ok }

// Region returns the region with this code.
func (c *Catalog) Region(code string) (Region, bool) { g, ok := c.regions[code]; return g, ok }

// Children lists the codes directly under a region, sorted.
func (c *Catalog) Children(code string) []string { return c.children[code] }

// Criterion returns the criterion with this code.
func (c *Catalog) Criterion(code string) (Criterion, bool) { k, ok := c.criteria[code]; return k, ok }

// CriteriaOf lists a sector's criteria codes, sorted.
func (c *Catalog) CriteriaOf(sector string) []string {
	var out []string
	for code, k := range c.criteria {
		if k.Sector == sector {
			out = append(out, code)
		}
	}
	sort.Strings(out)
	return out
}

// Path gives province, prefecture, county of a county-level code.
func (c *Catalog) Path(county string) (province, prefecture string, ok bool) {
	g, ok := c.regions[county]
	if !ok || g.Level != "county" {
		return "", "", false
	}
	p := c.regions[g.Parent]
	return p.Parent, p.Code, true
}

// Contains reports whether region inner lies within (or is) region outer.
func (c *Catalog) Contains(outer, inner string) bool {
	for code := inner; code != ""; code = c.regions[code].Parent {
		if code == outer {
			return true
		}
	}
	return false
}

// CriterionValid reports whether a criterion may be cited for sector at instant t.
func (c *Catalog) CriterionValid(code, sector string, t time.Time) *Error {
	k, ok := c.criteria[code]
	if !ok {
		return Errorf(KindInvalid, "unknown_criterion", "criterion", "unknown criterion %q", code)
	}
	if k.Sector != sector {
		return Errorf(KindInvalid, "criterion_sector", "criterion", "criterion %s belongs to sector %s, not %s", code, k.Sector, sector)
	}
	day := t.In(Shanghai).Format("2006-01-02")
	if (k.ValidFrom != "" && day < k.ValidFrom) || (k.ValidTo != "" && day > k.ValidTo) {
		msg := fmt.Sprintf("criterion %s is not in force on %s", code, day)
		if k.Successor != "" {
			msg += "; use " + k.Successor
		}
		return Errorf(KindInvalid, "criterion_not_in_force", "criterion", "%s", msg)
	}
	return nil
}
