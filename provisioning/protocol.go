package provisioning

import (
	"context"
	"fmt"
)

// ReservationStore is what an engine keeps of its server's reservations and
// databases: all the ownership protocol below reads and moves. The SQL
// engines implement it; the protocol is written once, here.
type ReservationStore interface {
	Reservation(ctx context.Context, name string) (Reservation, bool, error)
	// SetState moves owner's reservation of exactly name to state, or is
	// ErrConflict when it is gone.
	SetState(ctx context.Context, name string, owner Owner, state ReservationState) error
	DatabaseExists(ctx context.Context, name string) (bool, error)
}

// OwnedBy returns name's reservation when owner holds it (CheckOwner).
func OwnedBy(ctx context.Context, s ReservationStore, name string, owner Owner) (Reservation, error) {
	res, ok, err := s.Reservation(ctx, name)
	if err != nil {
		return res, err
	}
	return res, CheckOwner(res, ok, name, owner)
}

// MadeBy is nil when owner holds name and the system made its database
// (CheckMade).
func MadeBy(ctx context.Context, s ReservationStore, name string, owner Owner) error {
	res, ok, err := s.Reservation(ctx, name)
	if err != nil {
		return err
	}
	return CheckMade(res, ok, name, owner)
}

// Make is the create protocol: name must be reserved for owner; an existing
// database is adopted (created=false) only when the reservation says the
// system was making it, and is ErrConflict otherwise; else the reservation
// goes to making, make creates the database (created=false when another
// delivery of the same job got there first), and the reservation to made.
func Make(ctx context.Context, s ReservationStore, name string, owner Owner, make func(ctx context.Context) (created bool, err error)) (bool, error) {
	res, err := OwnedBy(ctx, s, name, owner)
	if err != nil {
		return false, fmt.Errorf("create database %q: %w", name, err)
	}
	exists, err := s.DatabaseExists(ctx, name)
	if err != nil {
		return false, err
	}
	if exists {
		if res.State == StateReserved {
			return false, fmt.Errorf("%w: database %q exists but instancemgr did not make it (the name was only reserved for %s); it is left alone", ErrConflict, name, owner)
		}
		return false, s.SetState(ctx, name, owner, StateMade)
	}
	// From here a database of this name is the system's: a delivery that
	// dies after creating it leaves "making", and the next one adopts it.
	if err := s.SetState(ctx, name, owner, StateMaking); err != nil {
		return false, err
	}
	created, err := make(ctx)
	if err != nil {
		return false, err
	}
	return created, s.SetState(ctx, name, owner, StateMade)
}

// Move is the rename protocol: old must be owner's and made, new reserved
// for owner; new goes to making while rename runs, then to made.
func Move(ctx context.Context, s ReservationStore, old, new string, owner Owner, rename func(ctx context.Context) error) error {
	if err := MadeBy(ctx, s, old, owner); err != nil {
		return fmt.Errorf("rename database %q to %q: %w", old, new, err)
	}
	if _, err := OwnedBy(ctx, s, new, owner); err != nil {
		return fmt.Errorf("rename database %q to %q: %w", old, new, err)
	}
	if err := s.SetState(ctx, new, owner, StateMaking); err != nil {
		return err
	}
	if err := rename(ctx); err != nil {
		return err
	}
	return s.SetState(ctx, new, owner, StateMade)
}

// Drop is the drop protocol: a database already gone is not an error
// (dropped=false); one that exists is dropped only when owner's and made.
func Drop(ctx context.Context, s ReservationStore, name string, owner Owner, drop func(ctx context.Context) error) (bool, error) {
	exists, err := s.DatabaseExists(ctx, name)
	if err != nil || !exists {
		return false, err
	}
	if err := MadeBy(ctx, s, name, owner); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	if err := drop(ctx); err != nil {
		return false, err
	}
	return true, nil
}
