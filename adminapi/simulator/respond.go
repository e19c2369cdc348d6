package simulator

import (
	"mime"
	"net/http"
	"strings"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/respond"
)

// The simulator answers as the Admin API's ASP.NET Core endpoints do, with
// the bodies of package respond, which the manage endpoints instancemgr
// serves itself share.

const maxBody = respond.MaxBody

type problem = respond.Problem

var (
	writeJSON         = respond.JSON
	writeProblem      = respond.WriteProblem
	writeValidation   = respond.WriteValidation
	validationProblem = respond.ValidationProblem
	decodeJSONBody    = respond.DecodeJSONBody
	isJSON            = respond.IsJSON
)

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, adminapi.OAuthError{Error: code, ErrorDescription: description})
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
