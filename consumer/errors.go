package consumer

import (
	"errors"
	"fmt"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/job"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// ErrTerminal marks a failure that no retry can heal.
var ErrTerminal = errors.New("terminal failure")

// Terminal marks err as terminal.
func Terminal(err error) error { return fmt.Errorf("%w: %w", ErrTerminal, err) }

// IsTerminal is the one place that decides whether a failed job is retried
// (nak with backoff) or ended (term): bad input and answers that will be the
// same next time are terminal, everything else is retried until MaxDeliver.
func IsTerminal(err error) bool {
	switch {
	case errors.Is(err, ErrTerminal),
		errors.Is(err, job.ErrMalformed),
		errors.Is(err, provisioning.ErrInvalidName),
		errors.Is(err, provisioning.ErrProtected),
		errors.Is(err, provisioning.ErrConflict),
		errors.Is(err, provisioning.ErrNotRecorded),
		errors.Is(err, ErrUnknownTenant),
		errors.Is(err, adminapi.ErrNotFound),
		errors.Is(err, adminapi.ErrValidation):
		return true
	}
	return false
}

// ReasonCode classifies why a job ended, for dead letters and metrics.
func ReasonCode(err error) string {
	switch {
	case errors.Is(err, job.ErrMalformed):
		return "malformed"
	case errors.Is(err, provisioning.ErrInvalidName):
		return "invalid_name"
	case errors.Is(err, provisioning.ErrProtected):
		return "protected"
	case errors.Is(err, provisioning.ErrConflict):
		return "conflict"
	case errors.Is(err, provisioning.ErrNotRecorded):
		return "not_recorded"
	case errors.Is(err, adminapi.ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrUnknownTenant):
		return "unknown_tenant"
	}
	return "failed"
}

// ErrUnknownTenant marks a job for a tenant with no database mapping.
var ErrUnknownTenant = errors.New("tenant has no database mapping")
