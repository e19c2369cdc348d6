package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Version is the version of the Job message this code writes. Decode
// rejects any other version, so a message from a newer bridge is terminated
// with a clear reason instead of being half-understood.
const Version = 1

// Operation is what a job asks for.
type Operation string

// The operations, which are also the second token of a job's subject.
const (
	OpCreate Operation = "create"
	OpRename Operation = "rename"
	OpDelete Operation = "delete"
)

// SubjectPrefix is the first token of every job subject.
const SubjectPrefix = "instances"

// ErrMalformed marks a message that can never be processed: bad JSON, an
// unknown version or operation, or missing fields. Such a message is
// terminated, never redelivered.
var ErrMalformed = errors.New("malformed job")

// Context is one context key/value of an instance (dbo.odsinstancecontexts).
type Context struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Job is one unit of work for the consumer.
type Job struct {
	Version   int       `json:"version"`
	ID        string    `json:"jobId"`
	Operation Operation `json:"operation"`
	Tenant    string    `json:"tenant"`
	// InstanceID is the Admin API's instance id (GET /adminconsole/instances/{id}).
	InstanceID   int    `json:"instanceId"`
	Name         string `json:"name"`
	InstanceType string `json:"instanceType,omitempty"`
	// Database is the instance's database now, as the system recorded it:
	// the old name for a rename, the one to drop for a delete.
	Database string `json:"database,omitempty"`
	// Generation is the ledger's rename count when the job was made; each
	// rename of an instance is its own job.
	Generation  int       `json:"generation,omitempty"`
	Contexts    []Context `json:"contexts,omitempty"`
	Derivatives []string  `json:"derivatives,omitempty"`
	// Template is the database template the request names (the newest
	// Admin API's Minimal or Sample); empty for a request that names none,
	// which copies the tenant's configured template.
	Template    string    `json:"template,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
	// Line is the Admin API line of the request (adminApi.flavor): absent
	// for adminconsole, as in every message before lines, "manage" for
	// the newest line, whose ids are another table's.
	Line provisioning.Line `json:"line,omitempty"`
}

// NewCreate returns a create job with its deterministic ID.
func NewCreate(tenant string, instanceID int, name string) Job {
	j := Job{Version: Version, Operation: OpCreate, Tenant: tenant, InstanceID: instanceID, Name: name, RequestedAt: time.Now().UTC()}
	return j.OnLine(provisioning.LineAdminConsole)
}

// NewRename returns a rename job: database is renamed after newName.
func NewRename(tenant string, instanceID int, newName, database string, generation int) Job {
	j := Job{Version: Version, Operation: OpRename, Tenant: tenant, InstanceID: instanceID, Name: newName, Database: database, Generation: generation, RequestedAt: time.Now().UTC()}
	return j.OnLine(provisioning.LineAdminConsole)
}

// NewDelete returns a delete job for database. Like a rename, it carries the
// ledger generation: a delete that failed moves the generation on, so a
// delete requested again is a new job on a subject of its own.
func NewDelete(tenant string, instanceID int, name, database string, generation int) Job {
	j := Job{Version: Version, Operation: OpDelete, Tenant: tenant, InstanceID: instanceID, Name: name, Database: database, Generation: generation, RequestedAt: time.Now().UTC()}
	return j.OnLine(provisioning.LineAdminConsole)
}

// OnLine returns j (made by NewCreate, NewRename or NewDelete) as a job of
// the instance of line: its Line and the ID made for it, renames and
// deletes with their generation.
func (j Job) OnLine(line provisioning.Line) Job {
	j.Line = line
	j.ID = j.wantID()
	return j
}

// Owner is the request the job is for.
func (j Job) Owner() provisioning.Owner {
	return provisioning.Owner{Tenant: j.Tenant, InstanceID: j.InstanceID, Line: j.Line}
}

// IDFor is the job ID of an operation on an instance of line. It is
// deterministic so that every poll that sees the same pending request
// produces the same ID, which is also the JetStream message ID used for
// de-duplication. The instance's token (InstanceToken) keeps the lines
// apart: the stream keeps acknowledged jobs, and an adminconsole job on a
// manage job's subject would stop it from being published.
func IDFor(line provisioning.Line, op Operation, tenant string, instanceID int) string {
	return string(op) + "." + SubjectToken(tenant) + "." + InstanceToken(line, instanceID)
}

// manageToken begins a manage instance's token; adminconsole's is the bare
// number, as before lines existed.
const manageToken = "m"

// InstanceToken is the instance's token in job IDs and subjects: "5" for
// adminconsole's instance 5, "m5" for the manage line's request 5.
func InstanceToken(line provisioning.Line, instanceID int) string {
	if line == provisioning.LineManage {
		return manageToken + strconv.Itoa(instanceID)
	}
	return strconv.Itoa(instanceID)
}

// ParseInstanceToken reads an InstanceToken; the id must be positive.
func ParseInstanceToken(tok string) (provisioning.Line, int, error) {
	line, digits := provisioning.LineAdminConsole, tok
	if rest, ok := strings.CutPrefix(tok, manageToken); ok {
		line, digits = provisioning.LineManage, rest
	}
	id, err := strconv.Atoi(digits)
	if err != nil || id <= 0 || strconv.Itoa(id) != digits {
		return "", 0, fmt.Errorf("%q is not an instance token (a positive number, or m and one for the manage line)", tok)
	}
	return line, id, nil
}

// wantID is the ID the job's operation, tenant, instance and (for renames
// and deletes) generation make: the only ID a job may carry, so that its
// subject names the very request its fields do.
func (j Job) wantID() string {
	id := IDFor(j.Line, j.Operation, j.Tenant, j.InstanceID)
	if j.Operation != OpCreate {
		id += "." + strconv.Itoa(j.Generation)
	}
	return id
}

// Subject is the subject the job is published on:
// instances.<operation>.<tenant>.<instance token>[.<generation>] (renames and
// deletes carry the generation); it is
// "instances." followed by the job ID. One subject per job lets the bridge
// publish with "expected last subject sequence 0", so the stream itself
// refuses a second copy of the job however long it stays pending.
func (j Job) Subject() string {
	return SubjectPrefix + "." + j.ID
}

// Validate reports every missing or invalid field at once, wrapped in
// ErrMalformed.
func (j Job) Validate() error {
	var problems []string
	if j.Version != Version {
		problems = append(problems, fmt.Sprintf("unknown version %d (this consumer reads %d)", j.Version, Version))
	}
	switch j.Operation {
	case OpCreate, OpRename, OpDelete:
	case "":
		problems = append(problems, "operation is missing")
	default:
		problems = append(problems, fmt.Sprintf("unknown operation %q", j.Operation))
	}
	if j.ID == "" {
		problems = append(problems, "jobId is missing")
	}
	if j.Tenant == "" {
		problems = append(problems, "tenant is missing")
	}
	if j.InstanceID <= 0 {
		problems = append(problems, "instanceId is missing or not positive")
	}
	if strings.TrimSpace(j.Name) == "" {
		problems = append(problems, "name is missing")
	}
	if j.Generation < 0 || j.Operation == OpCreate && j.Generation != 0 {
		problems = append(problems, fmt.Sprintf("generation %d is not one its operation has", j.Generation))
	}
	if len(problems) == 0 && j.ID != j.wantID() {
		problems = append(problems, fmt.Sprintf("jobId %q is not the one its operation, tenant and instance make (%q)", j.ID, j.wantID()))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrMalformed, strings.Join(problems, "; "))
	}
	return nil
}

// Encode validates j and returns its JSON form.
func Encode(j Job) ([]byte, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// Decode parses and validates a message body. Every error wraps ErrMalformed.
func Decode(data []byte) (Job, error) {
	var j Job
	// A body that is one JSON object and nothing more (every job the
	// bridge writes) is read in one pass; anything else goes the Decoder's
	// way, which says what is wrong as it always has.
	if json.Unmarshal(data, &j) == nil {
		if err := j.Validate(); err != nil {
			return Job{}, err
		}
		return j, nil
	}
	j = Job{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&j); err != nil {
		return Job{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Job{}, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// SubjectToken encodes s as one NATS subject token: letters, digits, '_'
// and '-' stay as they are, every other byte becomes %XX. The encoding is
// reversible, so two tenants never share a token.
func SubjectToken(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	if b.Len() == 0 {
		return "%"
	}
	return b.String()
}
