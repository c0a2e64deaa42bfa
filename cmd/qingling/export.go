package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"qingling/events"
	"qingling/handlers/auditlog"
	"qingling/handlers/export"
	"qingling/projections/ledger"
	"qingling/projections/status"
)

func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const synopsis = "export ledger|quarterly (--quarter 2025Q1 | --from DATE --to DATE) [--sector S] [--region R] [--format csv|xlsx] --out FILE [--nats URL --user U --nkey FILE | --data DIR]"
	if len(args) == 0 || (args[0] != "ledger" && args[0] != "quarterly") {
		fmt.Fprintln(stderr, "usage: qingling "+synopsis)
		return exitUsage
	}
	which := args[0]
	fs := flag.NewFlagSet("export "+which, flag.ContinueOnError)
	fs.SetOutput(stderr)
	auditUsage(fs, stderr, synopsis)
	var lf logFlags
	lf.register(fs)
	quarter := fs.String("quarter", "", "the quarter, e.g. 2025Q1 (Asia/Shanghai)")
	from := fs.String("from", "", "period start: a date (inclusive) or an RFC 3339 instant")
	to := fs.String("to", "", "period end: a date (exclusive: 2025-04-01 ends 2025Q1) or an RFC 3339 instant")
	sector := fs.String("sector", "", "only this sector")
	region := fs.String("region", "", "only this region (any level)")
	format := fs.String("format", "", "csv or xlsx (default: from --out's extension, else csv)")
	asOfS := fs.String("as-of", "", "as recorded by this instant (default: the end of the period, or now)")
	out := fs.String("out", "", "write the report here (- = stdout)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "qingling export %s: %v\n", which, err); return exitFailure }
	if *out == "" {
		fmt.Fprintln(stderr, "qingling export: --out FILE is required")
		return exitUsage
	}
	if *format == "" {
		*format = export.CSV
		if strings.EqualFold(filepath.Ext(*out), ".xlsx") {
			*format = export.XLSX
		}
	}
	if err := export.CheckFormat(*format); err != nil {
		return fail(err)
	}
	var pfrom, pto time.Time
	var err error
	if which == "quarterly" || *quarter != "" || *from != "" || *to != "" {
		if pfrom, pto, err = ledger.Period(*quarter, *from, *to); err != nil {
			return fail(err)
		}
	} else {
		pto = time.Now()
	}
	var asOf time.Time
	if *asOfS != "" {
		if asOf, err = time.Parse(time.RFC3339Nano, *asOfS); err != nil {
			return fail(fmt.Errorf("--as-of must be an RFC 3339 time"))
		}
	}
	cat, err := events.LoadCatalog()
	if err != nil {
		return fail(err)
	}
	filter, err := auditlog.SubjectFilter(cat, *sector, *region, "")
	if err != nil {
		return fail(err)
	}
	js, done, err := lf.open(ctx)
	if err != nil {
		return fail(err)
	}
	defer done()
	bar := newProgress(os.Stderr, "export: reading the log 读取事件")
	reps, err := export.Load(ctx, js, lf.stream, cat, filter, nil, func(n, total uint64) { bar.Set(int(n), int(total)) })
	bar.Done()
	if err != nil {
		return fail(err)
	}
	if asOf.IsZero() {
		if asOf = pto.Add(-time.Nanosecond); asOf.After(time.Now()) {
			asOf = time.Now()
		}
	}
	var buf bytes.Buffer
	rows := 0
	switch which {
	case "ledger":
		list := reps.Ledger.Rows(ledger.Query{Sector: *sector, Region: *region, From: pfrom, To: pto, AsOf: asOf})
		rows = len(list)
		if *format == export.XLSX {
			err = export.WriteLedgerXLSX(&buf, export.Title("隐患台账 Hazard ledger", pfrom, pto, asOf), list)
		} else {
			err = export.WriteLedgerCSV(&buf, list)
		}
	case "quarterly":
		var t ledger.Table
		if t, err = ledger.Quarterly(reps.Status, reps.Ledger, status.Select{Sector: *sector, Region: *region}, pfrom, pto, asOf); err != nil {
			return fail(err)
		}
		rows = len(t.Rows)
		if *format == export.XLSX {
			err = export.WriteQuarterlyXLSX(&buf, export.Title("隐患排查治理情况统计表 Quarterly statistics", pfrom, pto, t.AsOf), t)
		} else {
			err = export.WriteQuarterlyCSV(&buf, t)
		}
	}
	if err != nil {
		return fail(err)
	}
	w, closeOut, err := outFile(*out, stdout)
	if err != nil {
		return fail(err)
	}
	_, err = buf.WriteTo(w)
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if reps.Skipped > 0 {
		fmt.Fprintf(stderr, "warning: %d messages of the log are not events (qingling verify names them)\n", reps.Skipped)
	}
	fmt.Fprintf(stderr, "%s: %d rows from %d events, as of %s, written to %s\n", which, rows, reps.Events, events.FormatInstant(asOf), *out)
	return exitOK
}
