// Package provisioningtest is to the provisioning interfaces what River's
// rivertest and riverdrivertest are to River: in-memory fakes of Engine and
// Registry for tests of the code above them (the consumer's handlers), and
// exported conformance suites (Engine, Registry) that every implementation
// must pass, the PostgreSQL one and the fakes alike, so that a test against
// a fake says something about the real thing.
//
// The fakes keep everything in memory and must never be used outside tests.
package provisioningtest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// MemoryEngine is an in-memory provisioning.Engine: databases and reservations in
// maps, held to the same ownership rules as the PostgreSQL engine. It
// records every statement that changes a database in Calls.
type MemoryEngine struct {
	// Guard is checked before every rename and drop; without one, nothing
	// is renamed or dropped.
	Guard *provisioning.Guard

	mu    sync.Mutex
	dbs   map[string]bool
	res   map[string]provisioning.Reservation // by lower-case name
	calls []string
}

var _ provisioning.Engine = (*MemoryEngine)(nil)

// NewMemoryEngine returns an engine whose server holds the given databases (a
// template, say), made by nobody the engine knows.
func NewMemoryEngine(guard *provisioning.Guard, databases ...string) *MemoryEngine {
	e := &MemoryEngine{Guard: guard, dbs: map[string]bool{}, res: map[string]provisioning.Reservation{}}
	for _, d := range databases {
		e.dbs[d] = true
	}
	return e
}

// MakeForeign creates a database as someone else would, outside the
// engine: no reservation, no call recorded.
func (e *MemoryEngine) MakeForeign(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dbs[name] = true
}

// Databases lists the server's databases, sorted.
func (e *MemoryEngine) Databases() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.dbs))
}

// Calls lists the changes made, in order: "create NAME", "rename OLD NEW",
// "drop NAME".
func (e *MemoryEngine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty database name", provisioning.ErrInvalidName)
	case len(name) > provisioning.MaxNameBytes:
		return fmt.Errorf("%w: database name of %d bytes", provisioning.ErrInvalidName, len(name))
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: database name holds a NUL byte", provisioning.ErrInvalidName)
	}
	return nil
}

// DatabaseExists implements provisioning.Engine.
func (e *MemoryEngine) DatabaseExists(_ context.Context, name string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dbs[name], nil
}

// Reserve implements provisioning.Engine.
func (e *MemoryEngine) Reserve(_ context.Context, name string, owner provisioning.Owner) (provisioning.Reservation, bool, error) {
	if err := checkName(name); err != nil {
		return provisioning.Reservation{}, false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := strings.ToLower(name)
	_, held := e.res[key]
	if !held {
		e.res[key] = provisioning.Reservation{Database: name, Owner: owner, State: provisioning.StateReserved}
	}
	res, err := e.ownedBy(name, owner)
	return res, !held && err == nil, err
}

// Reservation implements provisioning.Engine.
func (e *MemoryEngine) Reservation(_ context.Context, name string) (provisioning.Reservation, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, ok := e.res[strings.ToLower(name)]
	return res, ok, nil
}

// ownedBy is the PostgreSQL engine's rule; the caller holds e.mu.
func (e *MemoryEngine) ownedBy(name string, owner provisioning.Owner) (provisioning.Reservation, error) {
	res, ok := e.res[strings.ToLower(name)]
	switch {
	case !ok:
		return res, fmt.Errorf("%w: database name %q is not reserved for %s", provisioning.ErrConflict, name, owner)
	case res.Owner != owner:
		return res, fmt.Errorf("%w: database name %q is reserved for %s, not for %s", provisioning.ErrConflict, res.Database, res.Owner, owner)
	case res.Database != name:
		return res, fmt.Errorf("%w: database name %q differs only in letter case from %q, reserved for %s", provisioning.ErrConflict, name, res.Database, res.Owner)
	}
	return res, nil
}

func (e *MemoryEngine) madeBy(name string, owner provisioning.Owner) error {
	res, err := e.ownedBy(name, owner)
	if err != nil {
		return err
	}
	if res.State == provisioning.StateReserved {
		return fmt.Errorf("%w: database %q is reserved for %s but instancemgr never made it", provisioning.ErrConflict, name, owner)
	}
	return nil
}

func (e *MemoryEngine) setState(name string, state provisioning.ReservationState) {
	key := strings.ToLower(name)
	res := e.res[key]
	res.State = state
	e.res[key] = res
}

// Release implements provisioning.Engine.
func (e *MemoryEngine) Release(_ context.Context, name string, owner provisioning.Owner) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := strings.ToLower(name)
	res, ok := e.res[key]
	if ok && res.Owner == owner && res.Database == name && (res.State == provisioning.StateReserved || !e.dbs[name]) {
		delete(e.res, key)
	}
	return nil
}

// CreateDatabase implements provisioning.Engine.
func (e *MemoryEngine) CreateDatabase(_ context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.ownedBy(name, owner)
	if err != nil {
		return false, fmt.Errorf("create database %q: %w", name, err)
	}
	if e.dbs[name] {
		if res.State == provisioning.StateReserved {
			return false, fmt.Errorf("%w: database %q exists but instancemgr did not make it (the name was only reserved for %s); it is left alone", provisioning.ErrConflict, name, owner)
		}
		e.setState(name, provisioning.StateMade)
		return false, nil
	}
	if !e.dbs[template] {
		return false, fmt.Errorf("create database %q: template %q does not exist", name, template)
	}
	e.dbs[name] = true
	e.setState(name, provisioning.StateMade)
	e.calls = append(e.calls, "create "+name)
	return true, nil
}

// RenameDatabase implements provisioning.Engine.
func (e *MemoryEngine) RenameDatabase(_ context.Context, old, new string, owner provisioning.Owner) error {
	for _, n := range []string{old, new} {
		if err := e.Guard.CheckDestructive(n); err != nil {
			return fmt.Errorf("rename database %q to %q: %w", old, new, err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.madeBy(old, owner); err != nil {
		return fmt.Errorf("rename database %q to %q: %w", old, new, err)
	}
	if _, err := e.ownedBy(new, owner); err != nil {
		return fmt.Errorf("rename database %q to %q: %w", old, new, err)
	}
	switch {
	case !e.dbs[old]:
		return fmt.Errorf("rename database %q to %q: %q does not exist", old, new, old)
	case e.dbs[new]:
		return fmt.Errorf("rename database %q to %q: %q already exists", old, new, new)
	}
	delete(e.dbs, old)
	e.dbs[new] = true
	e.setState(new, provisioning.StateMade)
	e.calls = append(e.calls, "rename "+old+" "+new)
	return nil
}

// DropDatabase implements provisioning.Engine.
func (e *MemoryEngine) DropDatabase(_ context.Context, name string, owner provisioning.Owner) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.dbs[name] {
		return false, nil
	}
	if err := e.madeBy(name, owner); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	delete(e.dbs, name)
	e.calls = append(e.calls, "drop "+name)
	return true, nil
}

// Import implements provisioning.Engine.
func (e *MemoryEngine) Import(_ context.Context, name string, owner provisioning.Owner) error {
	if err := checkName(name); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := strings.ToLower(name)
	if _, ok := e.res[key]; !ok {
		e.res[key] = provisioning.Reservation{Database: name, Owner: owner, State: provisioning.StateMade}
	}
	_, err := e.ownedBy(name, owner)
	return err
}
