package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// savedState is what Persist keeps on disk: the instance requests and the
// counters that number them, so that a restarted simulator goes on where it
// stopped, as a real Admin API with its database would. Clients and tokens
// are not kept: they are registered and requested again at each start.
type savedState struct {
	Version     int             `json:"version"`
	NextID      int             `json:"nextId"`
	NextCtxID   int             `json:"nextContextId"`
	NextDerivID int             `json:"nextDerivativeId"`
	NextOdsID   int             `json:"nextOdsInstanceId"`
	Instances   []savedInstance `json:"instances"`
}

type savedInstance struct {
	ID               int                              `json:"id"`
	TenantID         int                              `json:"tenantId"`
	TenantName       string                           `json:"tenantName"`
	ClientKey        string                           `json:"clientKey,omitempty"`
	ClientSecret     string                           `json:"clientSecret,omitempty"`
	Name             string                           `json:"name"`
	InstanceType     string                           `json:"instanceType"`
	Status           string                           `json:"status"`
	RegisteredName   string                           `json:"registeredName"`
	ConnectionString string                           `json:"connectionString"`
	OdsInstanceID    *int                             `json:"odsInstanceId"`
	Contexts         []adminapi.OdsInstanceContext    `json:"contexts"`
	Derivatives      []adminapi.OdsInstanceDerivative `json:"derivatives"`
	Calls            map[string]int                   `json:"calls"`
	Timeline         Timeline                         `json:"timeline"`
}

const stateVersion = 1

// Persist keeps the simulator's instances in the file at path: it loads
// them now when the file exists, and writes the file again after every
// request that may change them. The file holds connection strings with
// passwords, so it is written readable by its owner only.
func (s *Simulator) Persist(path string) error {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read simulator state: %w", err)
	default:
		var st savedState
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("simulator state %s: %w", path, err)
		}
		if st.Version != stateVersion {
			return fmt.Errorf("simulator state %s: version %d, this simulator reads %d", path, st.Version, stateVersion)
		}
		s.mu.Lock()
		s.restore(st)
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.statePath = path
	s.mu.Unlock()
	return s.save()
}

func (s *Simulator) restore(st savedState) {
	s.nextID, s.nextCtxID, s.nextDerivID, s.nextOdsID = st.NextID, st.NextCtxID, st.NextDerivID, st.NextOdsID
	s.instances = map[int]*instance{}
	s.byTenant = map[int][]int{}
	for _, in := range slices.SortedFunc(slices.Values(st.Instances), func(a, b savedInstance) int { return a.ID - b.ID }) {
		if in.Calls == nil {
			in.Calls = map[string]int{}
		}
		s.instances[in.ID] = &instance{
			id: in.ID, tenantID: in.TenantID, tenantName: in.TenantName, clientKey: in.ClientKey, clientSecret: in.ClientSecret, name: in.Name, instanceType: in.InstanceType, status: in.Status,
			registeredName: in.RegisteredName, connectionString: in.ConnectionString, odsInstanceID: in.OdsInstanceID,
			contexts: in.Contexts, derivatives: in.Derivatives, calls: in.Calls, timeline: in.Timeline,
		}
		s.byTenant[in.TenantID] = append(s.byTenant[in.TenantID], in.ID)
	}
}

// save writes the state file, when Persist set one: to a temporary file
// first, renamed over the old one, so a crash never leaves half a file.
// Without one it returns at once: the snapshot costs a copy of every
// instance under the lock, which only a file needs.
func (s *Simulator) save() error {
	s.saveMu.Lock() // snapshots are written in the order they are taken
	defer s.saveMu.Unlock()
	s.mu.Lock()
	path := s.statePath
	if path == "" {
		s.mu.Unlock()
		return nil
	}
	st := savedState{Version: stateVersion, NextID: s.nextID, NextCtxID: s.nextCtxID, NextDerivID: s.nextDerivID, NextOdsID: s.nextOdsID}
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		in := s.instances[id]
		st.Instances = append(st.Instances, savedInstance{
			ID: in.id, TenantID: in.tenantID, TenantName: in.tenantName, ClientKey: in.clientKey, ClientSecret: in.clientSecret, Name: in.name, InstanceType: in.instanceType, Status: in.status,
			RegisteredName: in.registeredName, ConnectionString: in.connectionString, OdsInstanceID: in.odsInstanceID,
			Contexts: in.contexts, Derivatives: in.derivatives, Calls: maps.Clone(in.calls), Timeline: in.timeline,
		})
	}
	s.mu.Unlock()
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".simulator-state-*")
	if err != nil {
		return fmt.Errorf("write simulator state: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write simulator state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write simulator state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write simulator state: %w", err)
	}
	return nil
}

// saveAfterChange saves after a request or call that may have changed the
// instances; a failure is logged: the simulator goes on serving.
func (s *Simulator) saveAfterChange() {
	if err := s.save(); err != nil {
		s.log.Error("could not save the simulator state", "err", err)
	}
}
