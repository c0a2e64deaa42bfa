// Package export writes the statutory reports — the hazard ledger (隐患台账) and the quarterly
// statistics table — as CSV (UTF-8 with a BOM, so that Excel reads the Chinese) and XLSX, and
// serves them as HTTP downloads. The figures come from projections/ledger and, for the
// table, the status projection.
package export

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/xuri/excelize/v2"

	"qingling/events"
	"qingling/projections/ledger"
)

// Formats.
const (
	CSV  = "csv"
	XLSX = "xlsx"
)

// Sheet names.
const (
	LedgerSheet    = "隐患台账"
	QuarterlySheet = "季度统计"
)

// ContentType of a format.
func ContentType(format string) string {
	if format == XLSX {
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	return "text/csv; charset=utf-8"
}

// CheckFormat refuses an unknown format.
func CheckFormat(f string) error {
	if f != CSV && f != XLSX {
		return events.Errorf(events.KindInvalid, "invalid_format", "format", "format must be csv or xlsx, not %q", f)
	}
	return nil
}

const bom = "\uFEFF"

// WriteLedgerCSV writes the ledger as CSV.
func WriteLedgerCSV(w io.Writer, rows []ledger.Row) error {
	if _, err := io.WriteString(w, bom); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // what Excel writes and expects
	if err := cw.Write(ledger.LedgerHeader); err != nil {
		return err
	}
	for i := range rows {
		if err := cw.Write(rows[i].Cells(i + 1)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteQuarterlyCSV writes the table as CSV; the rate is a percentage with one decimal.
func WriteQuarterlyCSV(w io.Writer, t ledger.Table) error {
	if _, err := io.WriteString(w, bom); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(ledger.QuarterlyHeader); err != nil {
		return err
	}
	for i := range t.Rows {
		rec := t.Rows[i].Labels()
		for _, v := range t.Rows[i].Values() {
			rec = append(rec, csvValue(v))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(100*x, 'f', 1, 64) + "%"
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// Title of a report for its period and instant.
func Title(name string, from, to, asOf time.Time) string {
	period := ledger.PeriodLabel(from, to)
	if from.IsZero() {
		period = "截至 " + to.Add(-time.Nanosecond).In(events.Shanghai).Format("2006-01-02")
	}
	return fmt.Sprintf("%s（%s，数据截至 %s）", name, period, asOf.In(events.Shanghai).Format("2006-01-02 15:04"))
}

// XLSX layout: row 1 the title (merged), row 2 the headings, data from row 3; the headings
// stay in view.
const headerRow = 2

type book struct {
	f                   *excelize.File
	title, header, rate int
}

func newBook() (*book, error) {
	f := excelize.NewFile()
	b := &book{f: f}
	var err error
	if b.title, err = f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true, Size: 14}}); err != nil {
		return nil, err
	}
	if b.header, err = f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}, Alignment: &excelize.Alignment{WrapText: true, Vertical: "center", Horizontal: "center"},
		Fill:   excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"DDEBF7"}},
		Border: []excelize.Border{{Type: "bottom", Color: "888888", Style: 1}}}); err != nil {
		return nil, err
	}
	pct := "0.0%"
	if b.rate, err = f.NewStyle(&excelize.Style{CustomNumFmt: &pct}); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *book) sheet(name string, cols int, widths func(col int) float64) (*excelize.StreamWriter, error) {
	if err := b.f.SetSheetName("Sheet1", name); err != nil {
		return nil, err
	}
	sw, err := b.f.NewStreamWriter(name)
	if err != nil {
		return nil, err
	}
	for c := 1; c <= cols; c++ {
		if err := sw.SetColWidth(c, c, widths(c)); err != nil {
			return nil, err
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: headerRow, TopLeftCell: fmt.Sprintf("A%d", headerRow+1), ActivePane: "bottomLeft"}); err != nil {
		return nil, err
	}
	return sw, nil
}

func (b *book) head(sw *excelize.StreamWriter, title string, header []string) error {
	if err := sw.SetRow("A1", []any{excelize.Cell{StyleID: b.title, Value: title}}); err != nil {
		return err
	}
	last, _ := excelize.CoordinatesToCellName(len(header), 1)
	if err := sw.MergeCell("A1", last); err != nil {
		return err
	}
	cells := make([]any, len(header))
	for i, h := range header {
		cells[i] = excelize.Cell{StyleID: b.header, Value: h}
	}
	return sw.SetRow(fmt.Sprintf("A%d", headerRow), cells, excelize.RowOpts{Height: 32})
}

func (b *book) finish(w io.Writer, sw *excelize.StreamWriter) error {
	if err := sw.Flush(); err != nil {
		return err
	}
	// Fixed document properties keep the bytes reproducible for the same data.
	fixed := "2000-01-01T00:00:00Z"
	if err := b.f.SetDocProps(&excelize.DocProperties{Creator: "Qingling 清零", Created: fixed, Modified: fixed, Title: ""}); err != nil {
		return err
	}
	if err := b.f.Write(w); err != nil {
		return err
	}
	return b.f.Close()
}

// WriteLedgerXLSX writes the ledger as one sheet 隐患台账.
func WriteLedgerXLSX(w io.Writer, title string, rows []ledger.Row) error {
	b, err := newBook()
	if err != nil {
		return err
	}
	wide := map[int]float64{2: 38, 7: 30, 8: 22, 10: 34, 11: 44, 19: 30}
	sw, err := b.sheet(LedgerSheet, len(ledger.LedgerHeader), func(c int) float64 {
		if w, ok := wide[c]; ok {
			return w
		}
		return 14
	})
	if err != nil {
		return err
	}
	if err := b.head(sw, title, ledger.LedgerHeader); err != nil {
		return err
	}
	for i := range rows {
		cells := rows[i].Cells(i + 1)
		vals := make([]any, len(cells))
		for k, c := range cells {
			vals[k] = c
		}
		// numbers as numbers: 序号, 延期次数, 验收不合格次数
		vals[0], vals[20], vals[21] = i+1, rows[i].Extensions, rows[i].Rejections
		if err := sw.SetRow(fmt.Sprintf("A%d", headerRow+1+i), vals); err != nil {
			return err
		}
	}
	return b.finish(w, sw)
}

// WriteQuarterlyXLSX writes the table as one sheet 季度统计.
func WriteQuarterlyXLSX(w io.Writer, title string, t ledger.Table) error {
	b, err := newBook()
	if err != nil {
		return err
	}
	sw, err := b.sheet(QuarterlySheet, len(ledger.QuarterlyHeader), func(c int) float64 {
		switch c {
		case 2, 4:
			return 20
		}
		return 11
	})
	if err != nil {
		return err
	}
	if err := b.head(sw, title, ledger.QuarterlyHeader); err != nil {
		return err
	}
	for i := range t.Rows {
		var vals []any
		for _, l := range t.Rows[i].Labels() {
			vals = append(vals, l)
		}
		for _, v := range t.Rows[i].Values() {
			switch x := v.(type) {
			case float64:
				vals = append(vals, excelize.Cell{StyleID: b.rate, Value: x})
			case nil:
				vals = append(vals, "")
			default:
				vals = append(vals, x)
			}
		}
		if err := sw.SetRow(fmt.Sprintf("A%d", headerRow+1+i), vals); err != nil {
			return err
		}
	}
	return b.finish(w, sw)
}

// FirstDataRow is the XLSX row (1-based) of the first data row.
const FirstDataRow = headerRow + 1
