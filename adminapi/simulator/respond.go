package simulator

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

// maxBody bounds request bodies; the largest legitimate one is well under it.
const maxBody = 1 << 20

// problem is an RFC 9457 problem details body: the contract's fields plus the
// detail ASP.NET adds.
type problem struct {
	adminapi.ProblemDetails
	Detail string `json:"detail,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; failing here is a bug.
		panic(fmt.Sprintf("simulator: marshal %T: %v", v, err))
	}
	ct := "application/json; charset=utf-8"
	if _, ok := v.(problem); ok {
		ct = "application/problem+json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	writeJSON(w, status, problem{ProblemDetails: adminapi.ProblemDetails{Title: title, Status: status}, Detail: detail})
}

func writeValidation(w http.ResponseWriter, errs map[string][]string) {
	writeJSON(w, http.StatusBadRequest, validationProblem(errs))
}

func validationProblem(errs map[string][]string) problem {
	return problem{ProblemDetails: adminapi.ProblemDetails{Title: "Validation failed", Status: http.StatusBadRequest, Errors: errs}}
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, adminapi.OAuthError{Error: code, ErrorDescription: description})
}

// decodeJSONBody reads a JSON request body into v the way an ASP.NET Core
// minimal API binds [FromBody]: the content type must be JSON (else 415), the
// body must be one well-formed JSON value (else 400). Unknown properties are
// ignored and names match case-insensitively, as System.Text.Json's web
// defaults do. It answers the request itself and returns false on failure.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !isJSON(r.Header.Get("Content-Type")) {
		writeProblem(w, http.StatusUnsupportedMediaType, "Unsupported Media Type",
			"The request body must be JSON (Content-Type: application/json).")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	err := dec.Decode(v)
	if err == nil {
		// One value only: anything but white space after it is malformed.
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "Payload Too Large", "The request body is too large.")
			return false
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the request body is empty")
		}
		writeProblem(w, http.StatusBadRequest, "Bad Request", "Invalid JSON in the request body: "+err.Error())
		return false
	}
	return true
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func isForm(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// queryValue returns the first value of the query parameter name, matched
// case-insensitively as ASP.NET binds query parameters.
func queryValue(r *http.Request, name string) string {
	for k, vs := range r.URL.Query() {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}
