package events

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// The embedded criteria carry no validity window yet; these tests give one to a private copy
// of the catalog to check the rule that will apply when codes change.
func TestCriterionValidityWindow(t *testing.T) {
	cat, err := LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	k := cat.criteria["chem-2017-05"]
	k.ValidFrom, k.ValidTo, k.Successor = "2018-01-01", "2025-03-31", "chem-2025-05"
	cat.criteria["chem-2017-05"] = k

	cases := []struct {
		at   time.Time
		code string // "" = in force
	}{
		{time.Date(2025, 3, 10, 10, 0, 0, 0, Shanghai), ""},
		{time.Date(2018, 1, 1, 0, 0, 0, 0, Shanghai), ""},
		{time.Date(2017, 12, 31, 15, 59, 59, 0, time.UTC), "criterion_not_in_force"}, // 23:59:59 on 12-31 in Shanghai
		{time.Date(2017, 12, 31, 16, 0, 0, 0, time.UTC), ""},                         // already 2018-01-01 in Shanghai
		{time.Date(2025, 3, 31, 23, 59, 59, 999999999, Shanghai), ""},
		{time.Date(2025, 3, 31, 16, 0, 0, 0, time.UTC), "criterion_not_in_force"}, // 2025-04-01 00:00 in Shanghai
		{time.Date(2026, 1, 1, 0, 0, 0, 0, Shanghai), "criterion_not_in_force"},
	}
	for _, c := range cases {
		err := cat.CriterionValid("chem-2017-05", "chem", c.at)
		if c.code == "" {
			if err != nil {
				t.Errorf("at %v: %v", c.at, err)
			}
			continue
		}
		if err == nil || err.Code != c.code || err.Kind != KindInvalid || err.Field != "criterion" {
			t.Errorf("at %v: %v, want %s", c.at, err, c.code)
			continue
		}
		if !strings.Contains(err.Message, "use chem-2025-05") {
			t.Errorf("message %q does not name the successor", err.Message)
		}
	}

	// Decide judges the criterion at the field time (occurred_at), not the record time.
	report := func(occurred string) error {
		cmd, derr := DecodeCommand(ActReport, "", []byte(`{"sector":"chem","region":"530181","site":{"name":"甲"},"grade":"major",`+
			`"criterion":"chem-2017-05","description":"d","source":"inspection","deadline":"2025-12-31","occurred_at":"`+occurred+`"}`))
		if derr != nil {
			return derr
		}
		cmd.CommandID = "0193f2c4-1111-7000-8000-000000000001"
		ResolveIDs(cmd)
		_, err := Decide(cat, nil, cmd, time.Date(2025, 4, 10, 10, 0, 0, 0, Shanghai), DefaultSource)
		return err
	}
	if err := report("2025-03-30T10:00:00+08:00"); err != nil {
		t.Errorf("found while in force, reported later: %v", err)
	}
	if err := report("2025-04-02T10:00:00+08:00"); KindOf(err) != KindInvalid || ErrorOf(err).Code != "criterion_not_in_force" {
		t.Errorf("found after the criterion lapsed: %v", err)
	}
	// The other catalog is untouched.
	fresh, _ := LoadCatalog()
	if err := fresh.CriterionValid("chem-2017-05", "chem", time.Date(2026, 1, 1, 0, 0, 0, 0, Shanghai)); err != nil {
		t.Errorf("fresh catalog: %v", err)
	}
}

func TestFieldCodeAndClip(t *testing.T) {
	for in, want := range map[string]string{"": "input", "deadline": "deadline", "site.name": "site_name", "evidence[3].sha256": "evidence_3__sha256"} {
		if got := fieldCode(in); got != want {
			t.Errorf("fieldCode(%q) = %q, want %q", in, got, want)
		}
	}
	if got := clip("abc", 5); got != "abc" {
		t.Errorf("clip short = %q", got)
	}
	if got := clip("abcdef", 3); got != "abc…" {
		t.Errorf("clip = %q", got)
	}
	// Never cuts a rune in half.
	for n := 0; n < 10; n++ {
		got := clip("安宁化工有限公司", n)
		if !strings.HasSuffix(got, "…") && got != "安宁化工有限公司" {
			t.Errorf("clip(%d) = %q", n, got)
		}
		if r := strings.TrimSuffix(got, "…"); !strings.HasPrefix("安宁化工有限公司", r) || strings.ContainsRune(r, '\uFFFD') {
			t.Errorf("clip(%d) = %q cuts a rune", n, got)
		}
	}
}

// TestSpecial8: every byte value at every position of a word; special8 reports exactly the
// words holding a quote, a backslash or a control character (the scans then look closer).
func TestSpecial8(t *testing.T) {
	for c := range 256 {
		want := c == '"' || c == '\\' || c < 0x20
		for pos := range 8 {
			for _, fill := range []byte{'a', 0xe4, ' ', '~'} {
				var b [8]byte
				for i := range b {
					b[i] = fill
				}
				b[pos] = byte(c)
				if got := special8(binary.LittleEndian.Uint64(b[:])); got != want {
					t.Fatalf("byte %#x at %d among %#x: special8 %v", c, pos, fill, got)
				}
			}
		}
	}
}
