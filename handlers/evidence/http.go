package evidence

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"qingling/events"
	"qingling/handlers/httpapi"
)

// Routes mounts PUT /v1/evidence and GET /v1/evidence/{sha256} on the API's mux; use it as
// httpapi.Server.Extra.
func Routes(api *httpapi.Server, st *Store) func(mux *http.ServeMux) {
	h := &handler{st: st, api: api}
	return func(mux *http.ServeMux) {
		mux.Handle("PUT /v1/evidence", api.Route("PUT /v1/evidence", h.put))
		mux.Handle("GET /v1/evidence/{sha256}", api.Route("GET /v1/evidence/{sha256}", h.get))
	}
}

type handler struct {
	st  *Store
	api *httpapi.Server
}

// put stores the request body (the raw file; ?name= optionally names it) and answers its
// SHA-256: 201 when stored now, 200 when the same bytes were already stored.
func (h *handler) put(w http.ResponseWriter, r *http.Request) {
	who, err := h.api.Actor(r)
	if err == nil {
		err = CanUpload(who.User)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if r.ContentLength > MaxSize {
		httpapi.WriteError(w, r, tooLarge(r.ContentLength))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = tooLarge(mbe.Limit + 1)
		} else {
			err = events.Errorf(events.KindInvalid, "body_unreadable", "", "could not read the file: %v", err)
		}
		httpapi.WriteError(w, r, err)
		return
	}
	uploader := ""
	if who.User != nil {
		uploader = who.User.ID
	}
	info, err := h.st.PutBy(r.Context(), data, r.URL.Query().Get("name"), uploader)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	code := http.StatusOK
	if info.Created {
		code = http.StatusCreated
	}
	w.Header().Set("Location", "/v1/evidence/"+info.SHA256)
	httpapi.WriteJSON(w, code, info)
}

// get streams a stored file the user may fetch (Store.Authorize); its name is its digest,
// so it never changes.
func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	sum := r.PathValue("sha256")
	if err := h.st.Authorize(r.Context(), httpapi.UserFrom(r.Context()), sum); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if r.Header.Get("If-None-Match") == `"`+sum+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rc, info, err := h.st.Open(r.Context(), sum)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	defer rc.Close()
	hd := w.Header()
	hd.Set("Content-Type", info.ContentType)
	hd.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	hd.Set("ETag", `"`+sum+`"`)
	hd.Set("Cache-Control", "private, max-age=31536000, immutable")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "sandbox")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, rc); err != nil {
		slog.Debug("evidence: send", "sha256", sum, "err", err)
	}
}
