package status

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"qingling/events"
)

// AllSectors is the sector token of the cross-sector rows.
const AllSectors = "all"

// Levels of a row.
const (
	LevelProvince   = "province"
	LevelPrefecture = "prefecture"
	LevelCounty     = "county"
)

// rowInfo describes one row: a sector (or all) × a region at one level.
type rowInfo struct {
	key                string // hz_status key: <sector>.<province>[.<prefecture>[.<county>]]
	sector, region     string
	level              string
	sectorZh, sectorEn string
	regionZh           string
	parent             int32   // the row one level up (-1 for a province)
	children           []int32 // the rows one level down
	leaves             []int32 // the leaves under this row
}

// layout numbers every row and leaf of a catalog. Leaves are sector × county (no "all");
// each leaf rolls up into six rows: its sector and "all", each at county, prefecture and
// province level.
type layout struct {
	rows    []rowInfo
	byKey   map[string]int32
	bySR    map[string]int32 // sector + "." + region → its row at the highest level
	leafOf  map[string]int32 // sector + "." + county → leaf
	leafRow [][6]int32
	sectors []string // sector tokens, "all" first
	// provinces lists the province rows per sector token.
	provinces   map[string][]int32
	fingerprint string
}

func newLayout(cat *events.Catalog) *layout {
	l := &layout{byKey: map[string]int32{}, bySR: map[string]int32{}, leafOf: map[string]int32{}, provinces: map[string][]int32{}}
	fp := sha256.New()
	type sec struct{ code, zh, en string }
	secs := []sec{{AllSectors, "全部行业", "All sectors"}}
	for _, s := range cat.Sectors {
		secs = append(secs, sec{s.Code, s.NameZh, s.NameEn})
	}
	add := func(s sec, region, level, key string, parent int32) int32 {
		g, _ := cat.Region(region)
		i := int32(len(l.rows))
		l.rows = append(l.rows, rowInfo{key: key, sector: s.code, region: region, level: level, sectorZh: s.zh, sectorEn: s.en, regionZh: g.NameZh, parent: parent})
		l.byKey[key] = i
		if _, ok := l.bySR[s.code+"."+region]; !ok {
			l.bySR[s.code+"."+region] = i
		}
		if parent >= 0 {
			l.rows[parent].children = append(l.rows[parent].children, i)
		}
		fp.Write([]byte(key + "\n"))
		return i
	}
	for _, s := range secs {
		l.sectors = append(l.sectors, s.code)
		for _, prov := range cat.Provinces {
			pk := s.code + "." + prov
			pi := add(s, prov, LevelProvince, pk, -1)
			l.provinces[s.code] = append(l.provinces[s.code], pi)
			for _, pref := range cat.Children(prov) {
				fk := pk + "." + pref
				fi := add(s, pref, LevelPrefecture, fk, pi)
				for _, county := range cat.Children(pref) {
					add(s, county, LevelCounty, fk+"."+county, fi)
				}
			}
		}
	}
	for _, s := range secs[1:] {
		for _, prov := range cat.Provinces {
			for _, pref := range cat.Children(prov) {
				for _, county := range cat.Children(pref) {
					leaf := int32(len(l.leafRow))
					l.leafOf[s.code+"."+county] = leaf
					var rows [6]int32
					for j, sc := range []string{s.code, AllSectors} {
						rows[3*j] = l.byKey[sc+"."+prov+"."+pref+"."+county]
						rows[3*j+1] = l.byKey[sc+"."+prov+"."+pref]
						rows[3*j+2] = l.byKey[sc+"."+prov]
					}
					for _, r := range rows {
						l.rows[r].leaves = append(l.rows[r].leaves, leaf)
					}
					l.leafRow = append(l.leafRow, rows)
				}
			}
		}
	}
	l.fingerprint = hex.EncodeToString(fp.Sum(nil))[:16]
	return l
}

// leaf finds the leaf of a sector and county code (-1 if the catalog has neither).
func (l *layout) leaf(sector, county string) int32 {
	if i, ok := l.leafOf[sector+"."+county]; ok {
		return i
	}
	return -1
}

// find returns the row of a sector token and region code at its highest level (-1 if none).
func (l *layout) find(sector, region string) int32 {
	if i, ok := l.bySR[sector+"."+region]; ok {
		return i
	}
	return -1
}

// keyRegion splits a row key into its sector and the region of the row (the last code).
func keyRegion(key string) (sector, region string) {
	sector, rest, _ := strings.Cut(key, ".")
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		return sector, rest[i+1:]
	}
	return sector, rest
}
