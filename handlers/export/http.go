package export

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qingling/events"
	"qingling/handlers/auditlog"
	"qingling/handlers/httpapi"
	"qingling/projections/ledger"
	"qingling/projections/status"
)

// Handler serves GET /v1/export/ledger and GET /v1/export/quarterly (README lists the
// parameters). Each download reads the log afresh (an ordered read, filtered by sector and
// region); at most Concurrent downloads are built at once.
type Handler struct {
	API        *httpapi.Server
	JS         jetstream.JetStream
	Stream     string // default HAZARDS
	Catalog    *events.Catalog
	Clock      func() time.Time
	Concurrent int // default 2

	sem chan struct{}
}

// Mount adds the routes (for httpapi.Server.Extra).
func (h *Handler) Mount(mux *http.ServeMux) {
	if h.Concurrent <= 0 {
		h.Concurrent = 2
	}
	if h.Stream == "" {
		h.Stream = "HAZARDS"
	}
	h.sem = make(chan struct{}, h.Concurrent)
	mux.Handle("GET /v1/export/ledger", h.API.Route("GET /v1/export/ledger", h.ledger))
	mux.Handle("GET /v1/export/quarterly", h.API.Route("GET /v1/export/quarterly", h.quarterly))
}

// request is what both downloads take.
type request struct {
	user           *events.User
	sector, region string
	from, to, asOf time.Time
	format, label  string
}

func (h *Handler) parse(r *http.Request, needPeriod bool) (request, error) {
	q := r.URL.Query()
	var req request
	actor, err := h.API.Actor(r)
	if err != nil {
		return req, err
	}
	req.user = actor.User
	req.sector, req.region = q.Get("sector"), q.Get("region")
	req.format = q.Get("format")
	if req.format == "" {
		req.format = CSV
	}
	if err := CheckFormat(req.format); err != nil {
		return req, err
	}
	if needPeriod || q.Get("quarter") != "" || q.Get("from") != "" || q.Get("to") != "" {
		if req.from, req.to, err = ledger.Period(q.Get("quarter"), q.Get("from"), q.Get("to")); err != nil {
			return req, err
		}
		req.label = ledger.PeriodLabel(req.from, req.to)
	} else {
		req.to = h.now()
		req.label = req.to.In(events.Shanghai).Format("2006-01-02")
	}
	if s := q.Get("as_of"); s != "" {
		if req.asOf, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return req, events.Errorf(events.KindInvalid, "invalid_as_of", "as_of", "as_of must be an RFC 3339 time")
		}
	}
	return req, nil
}

func (h *Handler) now() time.Time {
	if h.Clock != nil {
		return h.Clock()
	}
	return time.Now()
}

func (h *Handler) load(ctx context.Context, req request) (*Reports, error) {
	filter, err := auditlog.SubjectFilter(h.Catalog, req.sector, req.region, "")
	if err != nil {
		return nil, err
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return Load(ctx, h.JS, h.Stream, h.Catalog, filter, h.Clock, nil)
}

func (h *Handler) ledger(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r, false)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if u := req.user; u != nil && u.Role == events.RoleRectifier && len(u.Sites) == 0 {
		httpapi.WriteError(w, r, events.Errorf(events.KindForbidden, "not_readable", "", "%s has no sites to list", u.ID))
		return
	}
	reps, err := h.load(r.Context(), req)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	q := ledger.Query{Sector: req.sector, Region: req.region, From: req.from, To: req.to, AsOf: req.asOf}
	if u := req.user; u != nil {
		q.Keep = func(hz *events.Hazard) bool { return events.CanRead(h.Catalog, u, hz) }
	}
	rows := reps.Ledger.Rows(q)
	asOf := req.asOf
	if asOf.IsZero() {
		if asOf = req.to.Add(-time.Nanosecond); asOf.After(h.now()) {
			asOf = h.now()
		}
	}
	var buf bytes.Buffer
	if req.format == XLSX {
		err = WriteLedgerXLSX(&buf, Title("隐患台账 Hazard ledger", req.from, req.to, asOf), rows)
	} else {
		err = WriteLedgerCSV(&buf, rows)
	}
	h.send(w, r, err, &buf, "ledger", req)
}

func (h *Handler) quarterly(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r, true)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	sel := status.Select{Sector: req.sector, Region: req.region}
	if u := req.user; u != nil {
		if u.Role == events.RoleRectifier {
			httpapi.WriteError(w, r, events.Errorf(events.KindForbidden, "not_readable", "", "the statistics table is for regulators and auditors"))
			return
		}
		sel.Keep = func(sector, region string) bool { return events.CanReadScope(h.Catalog, u, sector, region) }
	}
	reps, err := h.load(r.Context(), req)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	t, err := ledger.Quarterly(reps.Status, reps.Ledger, sel, req.from, req.to, req.asOf)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if len(t.Rows) == 0 {
		httpapi.WriteError(w, r, events.Errorf(events.KindForbidden, "not_readable", "", "no row of this table is within your sectors and jurisdiction"))
		return
	}
	var buf bytes.Buffer
	if req.format == XLSX {
		err = WriteQuarterlyXLSX(&buf, Title("隐患排查治理情况统计表 Quarterly statistics", req.from, req.to, t.AsOf), t)
	} else {
		err = WriteQuarterlyCSV(&buf, t)
	}
	h.send(w, r, err, &buf, "quarterly", req)
}

func (h *Handler) send(w http.ResponseWriter, r *http.Request, err error, buf *bytes.Buffer, name string, req request) {
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", ContentType(req.format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="qingling-%s-%s.%s"`, name, req.label, req.format))
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = buf.WriteTo(w)
}
