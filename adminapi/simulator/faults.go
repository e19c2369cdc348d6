package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// Fault makes the simulator misbehave on matching calls. In JSON (the
// /_simulator/faults endpoint) its fields are method, path, status, delay (a
// Go duration string such as "250ms", or a number of milliseconds), drop,
// times and share.
type Fault struct {
	Method string        // "" = any
	Path   string        // path pattern, case-insensitive, `*` matches one segment: "/adminconsole/instances/*/completed"
	Status int           // status to answer instead of handling (e.g. 503); 0 = handle normally after Delay
	Delay  time.Duration // wait before answering (honour request ctx)
	Drop   bool          // hijack and close the connection without answering
	Times  int           // how many matching calls it applies to; 0 = until cleared
	Share  float64       // fraction of matching calls affected (0 or 1 = all); use a seeded rand
}

// problems lists what is wrong with f, each prefixed with its JSON field.
func (f Fault) problems() map[string]string {
	p := map[string]string{}
	if !strings.HasPrefix(f.Path, "/") {
		p["path"] = "path must start with /"
	}
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		p["status"] = "status must be 0 or between 200 and 599"
	}
	if f.Drop && f.Status != 0 {
		p["drop"] = "drop and status exclude each other"
	}
	if f.Delay < 0 {
		p["delay"] = "delay must not be negative"
	}
	if f.Times < 0 {
		p["times"] = "times must not be negative"
	}
	if math.IsNaN(f.Share) || f.Share < 0 || f.Share > 1 {
		p["share"] = "share must be between 0 and 1"
	}
	return p
}

type faultJSON struct {
	Method string          `json:"method,omitempty"`
	Path   string          `json:"path"`
	Status int             `json:"status,omitempty"`
	Delay  json.RawMessage `json:"delay,omitempty"`
	Drop   bool            `json:"drop,omitempty"`
	Times  int             `json:"times,omitempty"`
	Share  float64         `json:"share,omitempty"`
}

// MarshalJSON writes Delay as a Go duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Method: f.Method, Path: f.Path, Status: f.Status, Drop: f.Drop, Times: f.Times, Share: f.Share}
	if f.Delay != 0 {
		j.Delay, _ = json.Marshal(f.Delay.String())
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Delay as a Go duration string or a number of
// milliseconds. Unknown fields are an error: a typo must not silently turn a
// fault plan into no fault.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*f = Fault{Method: j.Method, Path: j.Path, Status: j.Status, Drop: j.Drop, Times: j.Times, Share: j.Share}
	raw := bytes.TrimSpace(j.Delay)
	switch {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("delay: %w", err)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("delay: %w", err)
		}
		f.Delay = d
	default:
		var ms float64
		if err := json.Unmarshal(raw, &ms); err != nil {
			return fmt.Errorf("delay must be a duration string or milliseconds: %w", err)
		}
		f.Delay = time.Duration(ms * float64(time.Millisecond))
	}
	return nil
}

type activeFault struct {
	Fault
	pattern []string
	left    int // calls it still applies to, when Times > 0
	rng     *rand.Rand
}

// InjectFault adds f to the fault plan. It panics when f is malformed (a
// path that does not start with "/", a status outside 200-599, Drop with a
// Status, a negative Delay or Times, a Share outside [0, 1]).
func (s *Simulator) InjectFault(f Fault) {
	if p := f.problems(); len(p) > 0 {
		panic(fmt.Sprintf("simulator: InjectFault(%+v): %v", f, p))
	}
	s.addFaults([]Fault{f})
}

// ClearFaults removes every fault.
func (s *Simulator) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
	s.log.Info("faults cleared", "op", "fault")
}

func (s *Simulator) addFaults(fs []Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		f.Method = strings.ToUpper(f.Method)
		s.faultSeq++
		s.faults = append(s.faults, &activeFault{
			Fault:   f,
			pattern: segments(f.Path),
			left:    f.Times,
			rng:     rand.New(rand.NewPCG(s.seed, s.faultSeq)),
		})
		s.log.Info("fault injected", "op", "fault", "method", f.Method, "path", f.Path, "status", f.Status,
			"delay", f.Delay, "drop", f.Drop, "times", f.Times, "share", f.Share)
	}
}

// plan returns the faults still in force, Times holding what is left.
func (s *Simulator) plan() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, af := range s.faults {
		f := af.Fault
		f.Times = af.left
		out = append(out, f)
	}
	return out
}

// pickFault returns the first fault that matches the call and is selected by
// its Share, consuming one of its Times.
func (s *Simulator) pickFault(method, path string) (Fault, bool) {
	segs := segments(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, af := range s.faults {
		if af.Method != "" && af.Method != method {
			continue
		}
		if !matchPattern(af.pattern, segs) {
			continue
		}
		if af.Share > 0 && af.Share < 1 && af.rng.Float64() >= af.Share {
			continue
		}
		if af.Times > 0 {
			af.left--
			if af.left == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return af.Fault, true
	}
	return Fault{}, false
}

func matchPattern(pattern, segs []string) bool {
	if len(pattern) != len(segs) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != segs[i] {
			return false
		}
	}
	return true
}

// applyFault carries out the fault that applies to r, if any. It reports
// whether the request should still be handled.
func (s *Simulator) applyFault(w http.ResponseWriter, r *http.Request, path string) bool {
	f, ok := s.pickFault(r.Method, path)
	if !ok {
		return true
	}
	log := s.log.With("op", "fault", "method", r.Method, "path", path)
	log.Info("fault applies", "status", f.Status, "delay", f.Delay, "drop", f.Drop)
	if f.Delay > 0 {
		// net/http notices that the caller went away only once the body has
		// been read, so read it now and hand the handler a copy.
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			if err != nil {
				log.Info("fault: the request body could not be read", "err", err)
				return false
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			log.Info("fault delay cut short by the caller", "delay", f.Delay)
			return false
		}
	}
	switch {
	case f.Drop:
		dropConnection(w)
		return false
	case f.Status != 0:
		if f.Status >= 400 {
			writeProblem(w, f.Status, http.StatusText(f.Status), "Simulated fault.")
		} else {
			w.WriteHeader(f.Status)
		}
		return false
	}
	return true
}

// dropConnection closes the connection without an answer. Servers that
// cannot hijack (HTTP/2) abort the stream instead.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// serveFaults serves /_simulator/faults, without a bearer token: POST adds a
// JSON array of faults (all or none), DELETE clears the plan, GET shows it.
func (s *Simulator) serveFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.plan())
	case http.MethodDelete:
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		var fs []Fault
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		if err := dec.Decode(&fs); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeProblem(w, http.StatusRequestEntityTooLarge, "Payload Too Large", "The request body is too large.")
				return
			}
			writeProblem(w, http.StatusBadRequest, "Bad Request", "The body must be a JSON array of faults: "+err.Error())
			return
		}
		errs := map[string][]string{}
		for i, f := range fs {
			for field, msg := range f.problems() {
				key := fmt.Sprintf("[%d].%s", i, field)
				errs[key] = append(errs[key], msg)
			}
		}
		if len(errs) > 0 {
			writeJSON(w, http.StatusBadRequest, problem{ProblemDetails: adminapi.ProblemDetails{Title: "Validation failed", Status: http.StatusBadRequest, Errors: errs}})
			return
		}
		s.addFaults(fs)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// statusPath reads the instance id of /_simulator/instances/{id}/status.
func statusPath(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, instancesPath+"/")
	if !ok {
		return 0, false
	}
	idText, ok := strings.CutSuffix(rest, "/status")
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(idText)
	return id, err == nil && id > 0
}

// serveSetStatus is SetStatus over HTTP (POST /_simulator/instances/{id}/status,
// body {"status": "Completed"}): an operator setting a request right, for
// test deployments in another process, like the fault endpoints.
func (s *Simulator) serveSetStatus(w http.ResponseWriter, r *http.Request, id int) {
	var body struct {
		Status string `json:"status"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "The body must be {\"status\": \"...\"}: "+err.Error())
		return
	}
	if err := s.SetStatus(id, body.Status); err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
