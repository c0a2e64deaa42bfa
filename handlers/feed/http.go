package feed

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"qingling/events"
	"qingling/handlers/httpapi"
	"qingling/projections"
	"qingling/projections/status"
)

// API mounts the status routes on the HTTP API's mux (httpapi.Server.Extra).
type API struct {
	Server  *httpapi.Server
	Catalog *events.Catalog
	Index   *projections.Index // read your writes: min_seq waits for it
	Status  *status.Projection
	Hub     *Hub
	// Heartbeat is the interval of the feed's comment lines (default 15s).
	Heartbeat time.Duration
	// WaitFor bounds a min_seq wait (default 5s).
	WaitFor time.Duration
}

// Mount adds GET /v1/status, /v1/status/daily and /v1/feed.
func (a *API) Mount(mux *http.ServeMux) {
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{{"GET /v1/status", a.status}, {"GET /v1/status/daily", a.daily}, {"GET /v1/feed", a.feed}} {
		mux.Handle(r.pattern, a.Server.Route(r.pattern, r.h))
	}
}

func invalid(field, format string, args ...any) error {
	return events.Errorf(events.KindInvalid, "invalid_"+field, field, format, args...)
}

func checkParams(q url.Values, allowed ...string) error {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return events.Errorf(events.KindInvalid, "unknown_parameter", k, "unknown query parameter %q", k)
		}
	}
	return nil
}

// waitSeq: a caller that names the seq it wrote waits (bounded) until the projections have it.
func (a *API) waitSeq(r *http.Request) error {
	v := r.URL.Query().Get("min_seq")
	if v == "" {
		return nil
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return invalid("min_seq", "min_seq must be a stream sequence")
	}
	d := a.WaitFor
	if d == 0 {
		d = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	if err := a.Index.WaitApplied(ctx, seq); err != nil {
		return events.Errorf(events.KindUnavailable, "not_caught_up", "min_seq", "the projections have not reached seq %d yet", seq)
	}
	return nil
}

// instant reads an RFC 3339 time, or a date: its start (start=true) or its end.
func instant(field, v string, start bool) (time.Time, error) {
	if d, err := time.ParseInLocation("2006-01-02", v, events.Shanghai); err == nil {
		if start {
			return d, nil
		}
		return d.AddDate(0, 0, 1).Add(-time.Nanosecond), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, invalid(field, "%s must be a date (2025-04-30) or an RFC 3339 time", field)
}

func (a *API) keep(r *http.Request) func(sector, region string) bool {
	u := httpapi.UserFrom(r.Context())
	if u == nil {
		return nil // no identities: everyone reads everything
	}
	return func(sector, region string) bool { return events.CanReadScope(a.Catalog, u, sector, region) }
}

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	AsOf string       `json:"as_of"`
	Live bool         `json:"live"`
	Seq  uint64       `json:"seq"`
	Rows []status.Row `json:"rows"`
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "sector", "region", "as_of", "from", "to", "min_seq"); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.waitSeq(r); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	var asOf time.Time
	var err error
	if v := q.Get("as_of"); v != "" {
		if asOf, err = instant("as_of", v, false); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		if _, e := time.Parse("2006-01-02", v); e == nil && asOf.After(a.Status.Now()) && asOf.Add(-24*time.Hour).Before(a.Status.Now()) {
			asOf = time.Time{} // today's end has not come: the status now
		}
	}
	var period *status.PeriodSpec
	if q.Get("from") != "" || q.Get("to") != "" {
		if q.Get("from") == "" || q.Get("to") == "" {
			httpapi.WriteError(w, r, events.Errorf(events.KindInvalid, "required", "from", "period figures need both from and to"))
			return
		}
		from, err := instant("from", q.Get("from"), true)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		to, err := instant("to", q.Get("to"), false)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		if _, e := time.Parse("2006-01-02", q.Get("to")); e == nil {
			to = to.Add(time.Nanosecond) // a date is inclusive: up to the next day's start
		}
		if !to.After(from) {
			httpapi.WriteError(w, r, invalid("to", "to must be after from"))
			return
		}
		period = &status.PeriodSpec{From: from, To: to}
	}
	res, err := a.Status.Status(status.Select{Sector: q.Get("sector"), Region: q.Get("region"), Keep: a.keep(r)}, asOf, period)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if res.Rows == nil {
		res.Rows = []status.Row{}
	}
	httpapi.WriteJSON(w, http.StatusOK, StatusResponse{AsOf: events.FormatInstant(res.AsOf), Live: res.Live, Seq: res.Seq, Rows: res.Rows})
}

// DailyResponse is the body of GET /v1/status/daily.
type DailyResponse struct {
	Key      string       `json:"key"`
	Sector   string       `json:"sector"`
	SectorZh string       `json:"sector_zh"`
	Region   string       `json:"region"`
	RegionZh string       `json:"region_zh"`
	Level    string       `json:"level"`
	Days     []status.Day `json:"days"`
}

func (a *API) daily(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "sector", "region", "from", "to", "min_seq"); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.waitSeq(r); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	sector := q.Get("sector")
	if sector == "" {
		sector = status.AllSectors
	}
	to := a.Status.Now().In(events.Shanghai)
	var err error
	if v := q.Get("to"); v != "" {
		if to, err = instant("to", v, true); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	from := to.AddDate(0, 0, -29)
	if v := q.Get("from"); v != "" {
		if from, err = instant("from", v, true); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	row, days, err := a.Status.Daily(sector, q.Get("region"), from, to)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if keep := a.keep(r); keep != nil && !keep(row.Sector, row.Region) {
		httpapi.WriteError(w, r, events.Errorf(events.KindForbidden, "out_of_scope", "region", "%s × %s is outside your sectors or jurisdiction", row.Sector, row.Region))
		return
	}
	if days == nil {
		days = []status.Day{}
	}
	httpapi.WriteJSON(w, http.StatusOK, DailyResponse{Key: row.Key, Sector: row.Sector, SectorZh: row.SectorZh, Region: row.Region, RegionZh: row.RegionZh, Level: row.Level, Days: days})
}

// matcher accepts the keys of sector (a token, "all", or "" for any) within region.
func (a *API) matcher(r *http.Request, sector, region string) func(key string) bool {
	keep := a.keep(r)
	return func(key string) bool {
		t := strings.Split(key, ".")
		if len(t) < 2 || (sector != "" && t[0] != sector) {
			return false
		}
		if region != "" {
			in := false
			for _, c := range t[1:] {
				in = in || c == region
			}
			if !in {
				return false
			}
		}
		return keep == nil || keep(t[0], t[len(t)-1])
	}
}

func (a *API) feed(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "sector", "region", "last_event_id"); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	sector, region := q.Get("sector"), q.Get("region")
	if _, ok := a.Catalog.Sector(sector); sector != "" && sector != status.AllSectors && !ok {
		httpapi.WriteError(w, r, events.Errorf(events.KindInvalid, "unknown_sector", "sector", "unknown sector %q", sector))
		return
	}
	if _, ok := a.Catalog.Region(region); region != "" && !ok {
		httpapi.WriteError(w, r, events.Errorf(events.KindInvalid, "unknown_region", "region", "unknown region code %q", region))
		return
	}
	var after uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" || q.Get("last_event_id") != "" {
		if v == "" {
			v = q.Get("last_event_id")
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			httpapi.WriteError(w, r, invalid("last_event_id", "Last-Event-ID must be a revision number"))
			return
		}
		after = n
	}
	rc := http.NewResponseController(w)
	ctx := r.Context()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	sub, err := a.Hub.Subscribe(wctx, a.matcher(r, sector, region), after)
	cancel()
	if err != nil {
		if err == ErrClosed || wctx.Err() != nil {
			err = events.Errorf(events.KindUnavailable, "feed_unavailable", "", "the feed is not available; retry")
		}
		httpapi.WriteError(w, r, err)
		return
	}
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	mark := after
	send := func(e Entry) error {
		if e.Rev <= mark {
			return nil
		}
		mark = e.Rev
		var err error
		if e.Deleted {
			_, err = fmt.Fprintf(w, "id: %d\nevent: delete\ndata: {\"key\":%q}\n\n", e.Rev, e.Key)
		} else {
			_, err = fmt.Fprintf(w, "id: %d\nevent: status\ndata: %s\n\n", e.Rev, e.Value)
		}
		return err
	}
	for _, e := range sub.Backlog {
		if send(e) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	beat := a.Heartbeat
	if beat == 0 {
		beat = 15 * time.Second
	}
	tick := time.NewTicker(beat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Done():
			// drain what was queued, then say why the stream ends
			for {
				select {
				case e := <-sub.C:
					if send(e) != nil {
						return
					}
					continue
				default:
				}
				break
			}
			fmt.Fprintf(w, "event: end\ndata: {\"reason\":%q}\n\n", sub.Reason())
			_ = rc.Flush()
			return
		case e := <-sub.C:
			if send(e) != nil {
				return
			}
			for n := len(sub.C); n > 0; n-- { // send what is queued before one flush
				if send(<-sub.C) != nil {
					return
				}
			}
			if rc.Flush() != nil {
				return
			}
		case <-tick.C:
			if _, err := fmt.Fprintf(w, ": heartbeat %s\n\n", time.Now().UTC().Format(time.RFC3339)); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
