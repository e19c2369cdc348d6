// Package respond writes and reads HTTP bodies the way the Admin API's
// ASP.NET Core endpoints do, for the simulator and for the manage endpoints
// instancemgr serves itself: problem details, validation failures and
// [FromBody] JSON binding.
package respond

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// MaxBody bounds request bodies; the largest legitimate one is well under it.
const MaxBody = 1 << 20

// Problem is an RFC 9457 problem details body: the contract's fields plus
// the detail ASP.NET adds.
type Problem struct {
	adminapi.ProblemDetails
	Detail string `json:"detail,omitempty"`
}

// JSON writes v with status; a Problem goes as application/problem+json.
func JSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; failing here is a bug.
		panic(fmt.Sprintf("respond: marshal %T: %v", v, err))
	}
	ct := "application/json; charset=utf-8"
	if _, ok := v.(Problem); ok {
		ct = "application/problem+json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteProblem answers status with a problem body.
func WriteProblem(w http.ResponseWriter, status int, title, detail string) {
	JSON(w, status, Problem{ProblemDetails: adminapi.ProblemDetails{Title: title, Status: status}, Detail: detail})
}

// ValidationProblem is the body of a 400 validation failure.
func ValidationProblem(errs map[string][]string) Problem {
	return Problem{ProblemDetails: adminapi.ProblemDetails{Title: "Validation failed", Status: http.StatusBadRequest, Errors: errs}}
}

// WriteValidation answers 400 with errs.
func WriteValidation(w http.ResponseWriter, errs map[string][]string) {
	JSON(w, http.StatusBadRequest, ValidationProblem(errs))
}

// DecodeJSONBody reads a JSON request body into v the way an ASP.NET Core
// minimal API binds [FromBody]: the content type must be JSON (else 415), the
// body must be one well-formed JSON value (else 400). Unknown properties are
// ignored and names match case-insensitively, as System.Text.Json's web
// defaults do. It answers the request itself and returns false on failure.
func DecodeJSONBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !IsJSON(r.Header.Get("Content-Type")) {
		WriteUnsupported(w)
		return false
	}
	if err := DecodeJSON(http.MaxBytesReader(w, r.Body, MaxBody), v); err != nil {
		WriteDecodeError(w, err)
		return false
	}
	return true
}

// WriteUnsupported answers 415: the request body is not JSON.
func WriteUnsupported(w http.ResponseWriter) {
	WriteProblem(w, http.StatusUnsupportedMediaType, "Unsupported Media Type",
		"The request body must be JSON (Content-Type: application/json).")
}

// DecodeJSON reads exactly one JSON value from rd into v, as
// DecodeJSONBody does; its error is for WriteDecodeError.
func DecodeJSON(rd io.Reader, v any) error {
	dec := json.NewDecoder(rd)
	err := dec.Decode(v)
	if err == nil {
		// One value only: anything but white space after it is malformed.
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the request body is empty")
	}
	return err
}

// WriteDecodeError answers a body DecodeJSON could not read: 413 when it
// was over MaxBody, else 400 saying what is wrong with it.
func WriteDecodeError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		WriteProblem(w, http.StatusRequestEntityTooLarge, "Payload Too Large", "The request body is too large.")
		return
	}
	WriteProblem(w, http.StatusBadRequest, "Bad Request", "Invalid JSON in the request body: "+err.Error())
}

// IsJSON says whether contentType is a JSON media type.
func IsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
