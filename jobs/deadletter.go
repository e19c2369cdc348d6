package jobs

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// DeadPrefix starts every dead-letter subject: instances.dead. followed by
// the rest of the subject the job was delivered on
// (instances.dead.<operation>.<tenant>.<instance id>[.<generation>]).
const DeadPrefix = SubjectPrefix + ".dead"

// MaxReasonBytes caps a dead letter's reason: a reason is for a person to
// read, and an error that quotes a huge input must not make a huge letter.
const MaxReasonBytes = 4096

// DeadLetter is a job that ended without success, with why.
type DeadLetter struct {
	Reason string `json:"reason"`
	// Code is a short machine-readable class of Reason: malformed,
	// invalid_name, unknown_tenant, conflict, protected, not_found,
	// exhausted, failed.
	Code     string    `json:"code"`
	Attempts uint64    `json:"attempts"`
	FailedAt time.Time `json:"failedAt"`
	// Subject and StreamSequence locate the original in the job stream.
	Subject        string `json:"subject"`
	StreamSequence uint64 `json:"streamSequence"`
	JobID          string `json:"jobId,omitempty"`
	// Message is the original message when it was JSON; Raw holds it
	// otherwise (base64 in JSON).
	Message json.RawMessage `json:"message,omitempty"`
	Raw     []byte          `json:"raw,omitempty"`
}

// DeadSubject is where the dead letter of a message delivered on subject
// goes. It comes from the subject the stream delivered, never from the
// message body, which anyone who can publish could have written; a subject
// outside the job stream's goes to instances.dead.malformed.
func DeadSubject(subject string) string {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok || rest == "" || strings.HasPrefix(rest, "dead.") {
		return DeadPrefix + ".malformed"
	}
	return DeadPrefix + "." + rest
}

// NewDeadLetter fills a dead letter from the original message body. The
// reason is cut to MaxReasonBytes.
func NewDeadLetter(body []byte, subject string, streamSeq, attempts uint64, jobID, code, reason string) DeadLetter {
	d := DeadLetter{Reason: CapReason(reason), Code: code, Attempts: attempts, FailedAt: time.Now().UTC(), Subject: subject, StreamSequence: streamSeq, JobID: jobID}
	if json.Valid(body) {
		d.Message = json.RawMessage(body)
	} else {
		d.Raw = body
	}
	return d
}

// CapReason cuts reason to at most MaxReasonBytes, on a character boundary,
// saying that it did.
func CapReason(reason string) string {
	const mark = " [cut]"
	if len(reason) <= MaxReasonBytes {
		return reason
	}
	cut := MaxReasonBytes - len(mark)
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + mark
}
