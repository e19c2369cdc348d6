package adminapi

import (
	"errors"
	"fmt"
	"strings"
)

// Instance statuses, as Admin API 2.2.2 spells them.
const (
	StatusPending       = "Pending"
	StatusInProgress    = "InProgress"
	StatusCompleted     = "Completed"
	StatusPendingRename = "Pending_Rename"
	StatusRenameFailed  = "Rename_Failed"
	StatusPendingDelete = "Pending_Delete"
	StatusDeleted       = "Deleted"
	StatusDeleteFailed  = "Delete_Failed"
	StatusError         = "Error"
)

// Tenant is one element of GET /adminconsole/tenants.
type Tenant struct {
	TenantID int            `json:"tenantId"`
	Document TenantDocument `json:"document"`
}

// TenantDocument carries a tenant's name and discovery URL.
type TenantDocument struct {
	Name                string `json:"name"`
	EdfiAPIDiscoveryURL string `json:"edfiApiDiscoveryUrl"`
}

// WorkerInstance is one element of GET /adminconsole/instances: the worker's
// view of an instance request.
type WorkerInstance struct {
	ID            int    `json:"id"`
	TenantID      int    `json:"tenantId"`
	TenantName    string `json:"tenantName"`
	OdsInstanceID *int   `json:"odsInstanceId"`
	InstanceName  string `json:"instanceName"`
	ResourceURL   string `json:"resourceUrl"`
	OAuthURL      string `json:"oAuthUrl"`
	ClientID      string `json:"clientId"`
	ClientSecret  string `json:"clientSecret"`
	Status        string `json:"status"`
	// DatabaseTemplate is the template a manage request names, read with
	// the list (the newest line's rows); Admin API 2.2.2 has none.
	DatabaseTemplate string `json:"databaseTemplate,omitempty"`
}

// OdsInstance is the console's view of an instance request
// (GET /adminconsole/odsInstances/{id}).
type OdsInstance struct {
	ID                     int                     `json:"id"`
	TenantID               int                     `json:"tenantId"`
	Name                   string                  `json:"name"`
	InstanceType           string                  `json:"instanceType"`
	Status                 string                  `json:"status"`
	BaseURL                *string                 `json:"baseUrl"`
	OdsInstanceContexts    []OdsInstanceContext    `json:"odsInstanceContexts"`
	OdsInstanceDerivatives []OdsInstanceDerivative `json:"odsInstanceDerivatives"`
	// DatabaseTemplate is the template a manage request names (Minimal or
	// Sample: the newest Admin API's); Admin API 2.2.2 has none.
	DatabaseTemplate string `json:"databaseTemplate,omitempty"`
}

// OdsInstanceContext is a context key/value of an instance.
type OdsInstanceContext struct {
	ID           int    `json:"id,omitempty"`
	InstanceID   int    `json:"instanceId,omitempty"`
	ContextKey   string `json:"contextKey"`
	ContextValue string `json:"contextValue"`
}

// OdsInstanceDerivative is a derivative (read replica, snapshot) of an instance.
type OdsInstanceDerivative struct {
	ID             int    `json:"id,omitempty"`
	InstanceID     int    `json:"instanceId,omitempty"`
	DerivativeType string `json:"derivativeType"`
}

// InstanceRequest is the body of POST and PUT /adminconsole/odsInstances.
type InstanceRequest struct {
	TenantID               int                     `json:"tenantId"`
	TenantName             string                  `json:"tenantName"`
	Name                   string                  `json:"name"`
	InstanceType           string                  `json:"instanceType"`
	OdsInstanceContexts    []OdsInstanceContext    `json:"odsInstanceContexts"`
	OdsInstanceDerivatives []OdsInstanceDerivative `json:"odsInstanceDerivatives"`
}

// TokenResponse is the body of a successful POST /connect/token.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// OAuthError is the body of a failed /connect/register or /connect/token.
type OAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// ProblemDetails is the body of a 400 validation failure.
type ProblemDetails struct {
	Title  string              `json:"title"`
	Status int                 `json:"status,omitempty"`
	Errors map[string][]string `json:"errors,omitempty"`
}

// ConnectionStringBody is the body of the completed and renamed calls.
type ConnectionStringBody struct {
	ConnectionString string `json:"connectionString"`
}

// Sentinel errors that callers test with errors.Is. Every non-2xx answer is
// an *Error, which matches the sentinel for its status class.
var (
	ErrNotFound     = errors.New("admin api: not found")
	ErrConflict     = errors.New("admin api: conflict")
	ErrValidation   = errors.New("admin api: validation failed")
	ErrUnauthorized = errors.New("admin api: unauthorized")
	ErrServer       = errors.New("admin api: server error")
)

// Error is a non-2xx answer from the Admin API.
type Error struct {
	Method string
	Path   string
	Status int
	// Problem holds the parsed problem details of a 400, when the body had them.
	Problem *ProblemDetails
	// Body is the start of the response body, for diagnostics (never a token).
	Body string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin api %s %s: status %d", e.Method, e.Path, e.Status)
	if e.Problem != nil && len(e.Problem.Errors) > 0 {
		fmt.Fprintf(&b, ": %s %v", e.Problem.Title, e.Problem.Errors)
	} else if e.Body != "" {
		fmt.Fprintf(&b, ": %s", e.Body)
	}
	return b.String()
}

// Is lets errors.Is(err, ErrNotFound) and friends classify an *Error.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == 404
	case ErrConflict:
		return e.Status == 409
	case ErrValidation:
		return e.Status == 400 || e.Status == 422
	case ErrUnauthorized:
		return e.Status == 401 || e.Status == 403
	case ErrServer:
		return e.Status >= 500
	}
	return false
}
