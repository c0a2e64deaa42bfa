package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"qingling/events"
)

// status is the one table from error kinds to HTTP status codes.
var status = map[events.Kind]int{ // read-only lookup table
	events.KindInternal:        http.StatusInternalServerError,
	events.KindInvalid:         http.StatusBadRequest,
	events.KindUnauthenticated: http.StatusUnauthorized,
	events.KindForbidden:       http.StatusForbidden,
	events.KindNotFound:        http.StatusNotFound,
	events.KindConflict:        http.StatusConflict,
	events.KindTooLarge:        http.StatusRequestEntityTooLarge,
	events.KindRule:            http.StatusUnprocessableEntity,
	events.KindRateLimited:     http.StatusTooManyRequests,
	events.KindUnavailable:     http.StatusServiceUnavailable,
}

// KindOfStatus maps an HTTP status back to its error kind: the inverse of the table, with a
// gateway's 502 and 504 as unavailable too, any other 4xx as invalid and the rest internal.
func KindOfStatus(code int) events.Kind {
	for k, c := range status {
		if c == code {
			return k
		}
	}
	switch {
	case code == http.StatusBadGateway || code == http.StatusGatewayTimeout:
		return events.KindUnavailable
	case code >= 400 && code < 500:
		return events.KindInvalid
	}
	return events.KindInternal
}

// StatusOf maps an error to its HTTP status.
func StatusOf(err error) int { return status[events.ErrorOf(err).Kind] }

type errorBody struct {
	Error     *events.Error `json:"error"`
	RequestID string        `json:"request_id,omitempty"`
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = events.Errorf(events.KindTooLarge, "body_too_large", "", "request body over %d bytes", mbe.Limit)
	}
	e := events.ErrorOf(err)
	code := status[e.Kind]
	log := logger(r)
	if code >= 500 {
		log.Error("request failed", "code", e.Code, "err", err)
	} else {
		log.Info("request refused", "status", code, "code", e.Code, "field", e.Field)
	}
	if e.Kind == events.KindUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	writeJSON(w, code, errorBody{Error: e, RequestID: requestID(r)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
