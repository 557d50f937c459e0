// Package httpapi serves onechat's HTTP API: sending and syncing messages
// with the same JSON objects the socket transports carry, plus health
// endpoints.
package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/session"
)

// Config configures the API.
type Config struct {
	MaxFrame int
	// Ready reports whether the node can serve; /readyz answers 503 and
	// the reason while it cannot.
	Ready func() error
}

// API is the HTTP handler for /v1 and the health endpoints.
type API struct {
	hub    *session.Hub
	verify *auth.Verifier
	log    *slog.Logger
	cfg    Config
}

// New returns an API over hub.
func New(hub *session.Hub, verify *auth.Verifier, log *slog.Logger, cfg Config) *API {
	return &API{hub: hub, verify: verify, log: log, cfg: cfg}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("/v1/messages", Methods(http.HandlerFunc(a.messages), http.MethodGet, http.MethodPost))
	registerHealth(mux, a.cfg.Ready)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
}

// Starting is the handler while the node starts: health endpoints answer
// and everything else is unavailable.
func Starting(ready func() error) http.Handler {
	mux := http.NewServeMux()
	registerHealth(mux, ready)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, protocol.Errorf(protocol.CodeUnavailable, "the node is starting; retry"))
	})
	return mux
}

func registerHealth(mux *http.ServeMux, ready func() error) {
	mux.Handle("/healthz", Methods(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}), http.MethodGet))
	mux.Handle("/readyz", Methods(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable,
				map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}), http.MethodGet))
}

// Methods lets only the given methods (and HEAD with GET) reach h; others
// get method_not_allowed with an Allow header.
func Methods(h http.Handler, methods ...string) http.Handler {
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m || (r.Method == http.MethodHead && m == http.MethodGet) {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		writeError(w, protocol.Errorf(protocol.CodeMethodNotAllowed, "%s %s: use %s", r.Method, r.URL.Path, allow))
	})
}

func (a *API) messages(w http.ResponseWriter, r *http.Request) {
	user, perr := a.authenticate(r)
	if perr != nil {
		writeError(w, perr)
		return
	}
	if r.Method == http.MethodPost {
		a.send(w, r, user)
		return
	}
	a.sync(w, r, user)
}

func (a *API) authenticate(r *http.Request) (string, *protocol.Error) {
	token, ok := auth.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return "", protocol.Errorf(protocol.CodeAuthRequired, "send Authorization: Bearer <token>")
	}
	claims, err := a.verify.Verify(token)
	switch {
	case errors.Is(err, auth.ErrExpired):
		return "", protocol.Errorf(protocol.CodeTokenExpired, "%v", err)
	case err != nil:
		return "", protocol.Errorf(protocol.CodeAuthFailed, "%v", err)
	}
	return claims.User, nil
}

func (a *API) send(w http.ResponseWriter, r *http.Request, user string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(a.cfg.MaxFrame)))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, protocol.Errorf(protocol.CodeFrameTooLarge, "body is over %d bytes", a.cfg.MaxFrame))
		return
	case err != nil:
		writeError(w, protocol.Errorf(protocol.CodeBadJSON, "read body: %v", err))
		return
	}
	f, perr := protocol.Decode(body, a.cfg.MaxFrame)
	if perr != nil {
		writeError(w, perr)
		return
	}
	if f.Op != protocol.OpSend {
		writeError(w, &protocol.Error{Code: protocol.CodeUnknownOp, Ref: f.Ref,
			Text: "POST /v1/messages takes a send object: {\"op\":\"send\",...}"})
		return
	}
	if f.From != "" && f.From != user {
		writeError(w, &protocol.Error{Code: protocol.CodeBadField, Ref: f.Ref,
			Text: "from is set by the server; leave it out"})
		return
	}
	ack, perr := a.hub.Send(user, f, "")
	if perr != nil {
		perr.Ref = f.Ref
		writeError(w, perr)
		return
	}
	writeJSON(w, http.StatusOK, ack)
}

func (a *API) sync(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	after, err := uintParam(q.Get("after"))
	if err != nil {
		writeError(w, protocol.Errorf(protocol.CodeBadField, "after must be a non-negative integer"))
		return
	}
	limit, err := uintParam(q.Get("limit"))
	if err != nil {
		writeError(w, protocol.Errorf(protocol.CodeBadField, "limit must be a non-negative integer"))
		return
	}
	page, perr := a.hub.Page(r.Context(), user, after, int(min(limit, 1<<20)))
	if perr != nil {
		writeError(w, perr)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func uintParam(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// Status maps an error code to its HTTP status.
func Status(c protocol.Code) int {
	switch c {
	case protocol.CodeAuthRequired, protocol.CodeAuthFailed, protocol.CodeTokenExpired:
		return http.StatusUnauthorized
	case protocol.CodeFrameTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable, protocol.CodeShuttingDown:
		return http.StatusServiceUnavailable
	case protocol.CodeInternal:
		return http.StatusInternalServerError
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	}
	return http.StatusBadRequest
}

func writeError(w http.ResponseWriter, e *protocol.Error) {
	writeJSON(w, Status(e.Code),
		protocol.ErrorFrame{Op: protocol.OpError, Ref: e.Ref, Code: e.Code, Error: e.Text})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
