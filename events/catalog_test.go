package events_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"qingling/events"
)

func TestCatalogSectors(t *testing.T) {
	cat := catalog(t)
	want := []struct{ code, zh, en string }{
		{"mine", "非煤矿山", "Non-coal mines"},
		{"chem", "危险化学品", "Hazardous chemicals"},
		{"fireworks", "烟花爆竹", "Fireworks"},
		{"trade", "工贸", "Industry and trade"},
		{"forest", "森林草原火灾", "Forest and grassland fire"},
		{"gas", "城镇燃气", "Urban gas"},
	}
	if len(cat.Sectors) != len(want) {
		t.Fatalf("got %d sectors, want %d", len(cat.Sectors), len(want))
	}
	for i, w := range want {
		got := cat.Sectors[i]
		if got.Code != w.code || got.NameZh != w.zh || got.NameEn != w.en {
			t.Errorf("sector %d = %+v, want %s %s %s", i, got, w.code, w.zh, w.en)
		}
		s, ok := cat.Sector(w.code)
		if !ok || s != got {
			t.Errorf("Sector(%q) = %+v, %v", w.code, s, ok)
		}
	}
	for _, bad := range []string{"", "coal", "Mine", "MINE", "all"} {
		if _, ok := cat.Sector(bad); ok {
			t.Errorf("Sector(%q) found", bad)
		}
	}
}

func TestCatalogRegionsYunnan(t *testing.T) {
	cat := catalog(t)
	if !slices.Equal(cat.Provinces, []string{"530000"}) {
		t.Fatalf("Provinces = %v, want [530000]", cat.Provinces)
	}
	yn, ok := cat.Region("530000")
	if !ok || yn.Level != "province" || yn.NameZh != "云南省" || yn.Parent != "" {
		t.Fatalf("Region(530000) = %+v, %v", yn, ok)
	}
	prefs := cat.Children("530000")
	if len(prefs) != 16 {
		t.Fatalf("530000 has %d prefectures, want 16", len(prefs))
	}
	if !slices.IsSorted(prefs) {
		t.Errorf("Children(530000) not sorted: %v", prefs)
	}
	counties := 0
	for _, p := range prefs {
		g, ok := cat.Region(p)
		if !ok || g.Level != "prefecture" || g.Parent != "530000" || g.NameZh == "" {
			t.Errorf("prefecture %s = %+v, %v", p, g, ok)
		}
		kids := cat.Children(p)
		if len(kids) == 0 {
			t.Errorf("prefecture %s has no counties", p)
		}
		if !slices.IsSorted(kids) {
			t.Errorf("Children(%s) not sorted", p)
		}
		for _, c := range kids {
			counties++
			g, ok := cat.Region(c)
			if !ok || g.Level != "county" || g.Parent != p || len(g.Code) != 6 || g.NameZh == "" {
				t.Errorf("county %s = %+v, %v", c, g, ok)
			}
			if len(cat.Children(c)) != 0 {
				t.Errorf("county %s has children", c)
			}
			prov, pref, ok := cat.Path(c)
			if !ok || prov != "530000" || pref != p {
				t.Errorf("Path(%s) = %s %s %v", c, prov, pref, ok)
			}
		}
	}
	if counties != 129 {
		t.Errorf("Yunnan has %d counties, want 129", counties)
	}
}

func TestCatalogPathContains(t *testing.T) {
	cat := catalog(t)
	paths := []struct {
		code, prov, pref string
		ok               bool
	}{
		{"530181", "530000", "530100", true}, // 安宁市 under 昆明市
		{"530102", "530000", "530100", true}, // 五华区
		{"530100", "", "", false},            // a prefecture is not a county
		{"530000", "", "", false},            // nor is the province
		{"999999", "", "", false},
		{"", "", "", false},
	}
	for _, p := range paths {
		prov, pref, ok := cat.Path(p.code)
		if prov != p.prov || pref != p.pref || ok != p.ok {
			t.Errorf("Path(%q) = %q %q %v, want %q %q %v", p.code, prov, pref, ok, p.prov, p.pref, p.ok)
		}
	}
	contains := []struct {
		outer, inner string
		want         bool
	}{
		{"530000", "530181", true},
		{"530100", "530181", true},
		{"530181", "530181", true},
		{"530000", "530100", true},
		{"530000", "530000", true},
		{"530181", "530100", false}, // a county does not contain its prefecture
		{"530300", "530181", false}, // 曲靖市 does not contain 安宁市
		{"530102", "530181", false}, // sibling counties
		{"530100", "530000", false},
		{"530000", "999999", false},
		{"999999", "530181", false},
	}
	for _, c := range contains {
		if got := cat.Contains(c.outer, c.inner); got != c.want {
			t.Errorf("Contains(%s, %s) = %v, want %v", c.outer, c.inner, got, c.want)
		}
	}
}

func TestCatalogCriteria(t *testing.T) {
	cat := catalog(t)
	want := map[string]int{"chem": 20, "fireworks": 20, "forest": 8, "gas": 4, "mine": 61, "trade": 13}
	total := 0
	for _, s := range cat.Sectors {
		codes := cat.CriteriaOf(s.Code)
		if len(codes) != want[s.Code] {
			t.Errorf("%s has %d criteria, want %d", s.Code, len(codes), want[s.Code])
		}
		if !slices.IsSorted(codes) {
			t.Errorf("CriteriaOf(%s) not sorted", s.Code)
		}
		for _, code := range codes {
			k, ok := cat.Criterion(code)
			if !ok || k.Code != code || k.Sector != s.Code || k.Standard == "" || k.SubjectZh == "" {
				t.Errorf("Criterion(%s) = %+v, %v", code, k, ok)
			}
			if err := cat.CriterionValid(code, s.Code, t0); err != nil {
				t.Errorf("CriterionValid(%s, %s) = %v", code, s.Code, err)
			}
		}
		total += len(codes)
	}
	if total != 126 {
		t.Errorf("%d criteria in all, want 126", total)
	}
	if len(cat.CriteriaOf("coal")) != 0 {
		t.Error("CriteriaOf(unknown sector) not empty")
	}
	for _, code := range []string{"chem-2017-05", "mine-tp-02", "forest-firesource"} {
		if _, ok := cat.Criterion(code); !ok {
			t.Errorf("Criterion(%s) missing", code)
		}
	}
	k, _ := cat.Criterion("chem-2017-05")
	if !strings.Contains(k.Document, "2017") || k.Item != "5" {
		t.Errorf("chem-2017-05 = %+v", k)
	}
}

func TestCriterionValid(t *testing.T) {
	cat := catalog(t)
	cases := []struct {
		code, sector string
		wantCode     string
	}{
		{"chem-2017-05", "chem", ""},
		{"mine-tp-02", "mine", ""},
		{"forest-firesource", "forest", ""},
		{"mine-tp-02", "chem", "criterion_sector"},
		{"chem-2017-05", "forest", "criterion_sector"},
		{"forest-firesource", "gas", "criterion_sector"},
		{"chem-2017-99", "chem", "unknown_criterion"},
		{"", "chem", "unknown_criterion"},
		{"CHEM-2017-05", "chem", "unknown_criterion"},
	}
	for _, c := range cases {
		err := cat.CriterionValid(c.code, c.sector, t0)
		if c.wantCode == "" {
			if err != nil {
				t.Errorf("CriterionValid(%q, %q) = %v", c.code, c.sector, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("CriterionValid(%q, %q) = nil, want %s", c.code, c.sector, c.wantCode)
			continue
		}
		wantErr(t, err, events.KindInvalid, c.wantCode, "criterion")
	}
	// The same criterion is valid whatever the instant when it carries no validity window.
	if err := cat.CriterionValid("chem-2017-05", "chem", time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Errorf("criterion without window refused: %v", err)
	}
}

func TestLoadCatalogIndependent(t *testing.T) {
	a, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a.Sectors) != len(b.Sectors) || len(a.Children("530100")) != len(b.Children("530100")) {
		t.Fatal("two loads should give equal, distinct catalogs")
	}
}
