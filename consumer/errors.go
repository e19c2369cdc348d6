package consumer

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// ErrForeign ends a message that is not its source's request: it came on
// another subject than its job's, or names another name, template,
// database or generation than the Admin API's request (or the manage row)
// and the ledger have, or an operation that Admin API line does not have.
// A message is a pointer; the source is the authority. Nothing is changed
// and no failure is reported to the source, whose request the message does
// not speak for.
var ErrForeign = errors.New("the message disagrees with its request")

// foreign is ErrForeign with what disagrees.
func foreign(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrForeign, fmt.Sprintf(format, args...))
}

// ErrLimit ends a create over its tenant's instance limit
// (limits.instancesPerTenant): nothing was made.
var ErrLimit = errors.New("over the tenant's instance limit")

// ErrRateLimited delays a create over its tenant's rate
// (limits.createsPerMinute): it is retried once the rate allows.
var ErrRateLimited = errors.New("over the tenant's create rate")

// retryAfter is a retryable failure that knows when to try again.
type retryAfter struct {
	err   error
	after time.Duration
}

func (r *retryAfter) Error() string { return r.err.Error() }
func (r *retryAfter) Unwrap() error { return r.err }

// ErrTerminal marks a failure that no retry can heal.
var ErrTerminal = errors.New("terminal failure")

// Terminal marks err as terminal.
func Terminal(err error) error { return fmt.Errorf("%w: %w", ErrTerminal, err) }

// failureClasses is the one table that decides whether a failed job is
// retried (nak with backoff) or ended (term), and the reason code its dead
// letter and metrics carry. The first matching row wins. Bad input and
// answers that will be the same next time are terminal; everything else is
// retried until MaxDeliver.
var failureClasses = []struct {
	err      error
	code     string
	terminal bool
}{
	{jobs.ErrMalformed, "malformed", true},
	{ErrForeign, "foreign", true},
	{ErrLimit, "limit", true},
	{provisioning.ErrInvalidName, "invalid_name", true},
	{provisioning.ErrProtected, "protected", true},
	{provisioning.ErrConflict, "conflict", true},
	{provisioning.ErrNotRecorded, "not_recorded", true},
	{provisioning.ErrRejected, "rejected", true},
	{ErrDeletionDisabled, "delete_disabled", true},
	{adminapi.ErrNotFound, "not_found", true},
	{provisioning.ErrUnknownTenant, "unknown_tenant", true},
	{adminapi.ErrValidation, "failed", true},
	{ErrTerminal, "failed", true},
	// Retried like every error not above; the code tells a failure that
	// was expected to heal (a busy template, sessions that stay, a lost
	// connection) from one nothing expected, in logs and metrics.
	{provisioning.ErrTransient, "transient", false},
	{ErrRateLimited, "rate_limited", false},
}

func classify(err error) (code string, terminal bool) {
	for _, c := range failureClasses {
		if errors.Is(err, c.err) {
			return c.code, c.terminal
		}
	}
	return "failed", false
}

// IsTerminal reports whether a failed job ends now instead of being retried.
func IsTerminal(err error) bool {
	_, terminal := classify(err)
	return terminal
}

// ReasonCode classifies why a job ended, for dead letters and metrics.
func ReasonCode(err error) string {
	code, _ := classify(err)
	return code
}

// ReasonCodes lists every code a dead letter can carry.
func ReasonCodes() []string {
	codes := []string{"exhausted"}
	for _, c := range failureClasses {
		if c.terminal && !slices.Contains(codes, c.code) {
			codes = append(codes, c.code)
		}
	}
	return codes
}
