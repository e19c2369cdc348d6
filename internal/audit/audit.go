// Package audit writes the audit trail: one JSON line per write a caller
// asked for (who, from where, what, and the answer) and one per job's
// outcome, with the same request id, on a logger of its own whose lines
// carry an "audit" object, whatever the role's log format. docs/operations.md
// ("Audit log") lists the fields.
//
// It must never write a token, a secret or a connection string: callers
// pass what a person may read, and the client id is the token's claim,
// never the token.
package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
)

// Logger writes audit lines. A nil Logger writes nothing.
type Logger struct{ log *slog.Logger }

// New returns a Logger writing JSON lines to w.
func New(w io.Writer) *Logger {
	return &Logger{log: slog.New(slog.NewJSONHandler(w, nil))}
}

// Write is one call to a write route, as answered.
type Write struct {
	// RequestID names the request and the operation asked for
	// (create.<tenant>.m<id>): its job's outcome carries it too, when the
	// call named or made a request.
	RequestID string
	// ClientID is the Admin API client the caller's token names, once the
	// Admin API has accepted the token; "" when it is not known.
	ClientID string
	// Source is the caller's address: the peer, or the X-Forwarded-For
	// entry of a configured trusted proxy.
	Source                string
	Method, Route, Tenant string
	InstanceID            int
	Name                  string
	Status                int
	// Refusal says why a call was refused ("" when it was accepted).
	Refusal string
}

// Outcome is how a job ended.
type Outcome struct {
	// RequestID is the write's (the job id less a rename's or delete's
	// generation); JobID the job's.
	RequestID  string
	JobID      string
	Op, Tenant string
	InstanceID int
	Result     string // acked, terminated
	Code       string // the dead letter's code, for a job that ended without success
	Reason     string
	Attempt    uint64
}

// Write records a call to a write route.
func (l *Logger) Write(ctx context.Context, w Write) {
	if l == nil {
		return
	}
	attrs := []any{slog.String("event", "write"), slog.String("request_id", w.RequestID), slog.String("client_id", w.ClientID),
		slog.String("source", w.Source), slog.String("method", w.Method), slog.String("route", w.Route), slog.String("tenant", w.Tenant),
		slog.Int("instance_id", w.InstanceID), slog.String("name", w.Name), slog.Int("status", w.Status)}
	if w.Refusal != "" {
		attrs = append(attrs, slog.String("refusal", w.Refusal))
	}
	l.log.InfoContext(ctx, "audit", slog.Group("audit", attrs...))
}

// Outcome records how a job ended.
func (l *Logger) Outcome(ctx context.Context, o Outcome) {
	if l == nil {
		return
	}
	attrs := []any{slog.String("event", "outcome"), slog.String("request_id", o.RequestID), slog.String("job_id", o.JobID), slog.String("op", o.Op),
		slog.String("tenant", o.Tenant), slog.Int("instance_id", o.InstanceID), slog.String("result", o.Result), slog.Uint64("attempt", o.Attempt)}
	if o.Code != "" {
		attrs = append(attrs, slog.String("code", o.Code), slog.String("reason", o.Reason))
	}
	l.log.InfoContext(ctx, "audit", slog.Group("audit", attrs...))
}

// ClientID is the Admin API client an Authorization header's bearer token
// names: its client_id claim (OpenIddict puts it in every access token, and
// Ed-Fi's own audit log reads it), else its sub (Ed-Fi's token service sets
// it to the client id). The token's signature is not checked here: call it
// only once the Admin API has accepted the token. "" when the token is not
// a JWT or names no client.
func ClientID(authorization string) string {
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return ""
	}
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		ClientID any `json:"client_id"`
		Sub      any `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	for _, c := range []any{claims.ClientID, claims.Sub} {
		if s, ok := c.(string); ok && s != "" {
			return s
		}
	}
	return ""
}
