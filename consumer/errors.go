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
		errors.Is(err, adminapi.ErrNotFound),
		errors.Is(err, adminapi.ErrValidation):
		return true
	}
	return false
}
