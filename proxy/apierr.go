package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"
)

// maxBody is the largest request body the REST API reads (INTERFACE.md).
const maxBody = 64 << 10

// bodyReadTimeout bounds how long reading a request body may take.
const bodyReadTimeout = 30 * time.Second

// apiError is the JSON error body of every 4xx answer.
type apiError struct {
	Status int    `json:"-"`
	Msg    string `json:"error"`
	Field  string `json:"field,omitempty"`
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func badRequest(field, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Field: field, Msg: fmt.Sprintf(format, args...)}
}

var (
	errUnauthorized = &apiError{Status: http.StatusUnauthorized, Msg: "missing or invalid credentials"}
	errNoDevice     = &apiError{Status: http.StatusNotFound, Msg: "no such device"}
	errNoStream     = &apiError{Status: http.StatusNotFound, Msg: "the device does not follow that upstream"}
	errNotFound     = &apiError{Status: http.StatusNotFound, Msg: "not found"}
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wakeline"`)
	}
	writeJSON(w, e.Status, e)
}

func methodNotAllowed(w http.ResponseWriter, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Msg: "method not allowed; use " + strings.Join(allow, " or ")})
}

// decodeBody reads a JSON body of at most maxBody bytes into v, rejecting
// unknown fields and trailing data, and turns every failure into a 4xx that
// names the field where json can tell which.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &apiError{Status: http.StatusUnsupportedMediaType, Msg: "content type must be application/json"}
	}
	// A body trickled in slowly must not hold a handler forever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err); e.Status == http.StatusRequestEntityTooLarge {
				return e
			}
		}
		return badRequest("", "body must hold a single JSON object")
	}
	return nil
}

func jsonError(err error) *apiError {
	var (
		tooLarge *http.MaxBytesError
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body larger than %d bytes", maxBody)}
	case errors.As(err, &syntax):
		return badRequest("", "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return badRequest(typ.Field, "must be %s, not %s", jsonKind(typ.Type), typ.Value)
	case errors.Is(err, io.EOF):
		return badRequest("", "empty body; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "truncated JSON")
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest(strings.Trim(msg, `"`), "unknown field")
	}
	return badRequest("", "invalid JSON: %v", err)
}

// jsonKind names what a Go type expects in JSON words, not Go ones.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another JSON type"
}
