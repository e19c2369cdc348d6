package provisioning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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

// toCreate is where a create starts: owner's reservation of name, and
// whether a database of that name exists.
func toCreate(ctx context.Context, s ReservationStore, name string, owner Owner) (Reservation, bool, error) {
	res, err := OwnedBy(ctx, s, name, owner)
	if err != nil {
		return res, false, fmt.Errorf("create database %q: %w", name, err)
	}
	exists, err := s.DatabaseExists(ctx, name)
	return res, exists, err
}

// Make is the create protocol: name must be reserved for owner; an existing
// database is adopted (created=false) only when the reservation says the
// system was making it, and is ErrConflict otherwise; else the reservation
// goes to making, make creates the database (created=false when another
// delivery of the same job got there first), and the reservation to made.
func Make(ctx context.Context, s ReservationStore, name string, owner Owner, make func(ctx context.Context) (created bool, err error)) (bool, error) {
	res, exists, err := toCreate(ctx, s, name, owner)
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

// Publisher is a ReservationStore whose engine can copy a template under a
// scratch name and then publish the copy: rename it to the reserved name
// and mark the reservation made in one transaction (PostgreSQL, whose
// ALTER DATABASE ... RENAME is transactional). On such a server a database
// under a reserved name is the system's exactly when its reservation says
// made, so nothing that appears under the name while a copy is being made
// is ever mistaken for it.
type Publisher interface {
	ReservationStore
	// Publish renames scratch to name and marks owner's reservation of name
	// made, together or not at all. It is ErrScratchGone when scratch does
	// not exist, and ErrConflict when a database named name already does or
	// the reservation is gone.
	Publish(ctx context.Context, scratch, name string, owner Owner) error
	// DropScratch drops a scratch copy that can no longer be published.
	DropScratch(ctx context.Context, scratch string) error
	// MarkMaking moves owner's reservation of name from reserved to
	// making and leaves making or made as they are, in one statement: a
	// delivery that read "reserved" never turns back another delivery's
	// "made". It is ErrConflict when the reservation is gone.
	MarkMaking(ctx context.Context, name string, owner Owner) error
}

// ErrScratchGone is Publish's answer when the scratch copy does not exist:
// another delivery of the same job published it, or nothing made it yet.
var ErrScratchGone = errors.New("scratch copy not found")

// ScratchPrefix begins every scratch name: they are the system's own, apart
// from any naming pattern an ODS database follows.
const ScratchPrefix = "instancemgr_copy_"

// ScratchName is the name a reservation's copy is made under before it is
// published: the same for every delivery of the request that holds it,
// and for no other request.
func ScratchName(res Reservation) string {
	h := sha256.Sum256([]byte(res.Database + "\x00" + res.Owner.Tenant + "\x00" + strconv.Itoa(res.Owner.InstanceID)))
	return ScratchPrefix + hex.EncodeToString(h[:12])
}

// MakePublished is the create protocol of a Publisher. name must be
// reserved for owner. An existing database under name is the system's only
// when the reservation says made (created=false); under reserved or making
// it is someone else's, ErrConflict. Otherwise the reservation goes to
// making, make copies the template as scratch (created=false when an
// earlier delivery's copy is there already), and Publish gives the copy
// its name and marks it made in one transaction.
func MakePublished(ctx context.Context, s Publisher, name string, owner Owner, make func(ctx context.Context, scratch string) (created bool, err error)) (bool, error) {
	res, exists, err := toCreate(ctx, s, name, owner)
	if err != nil {
		return false, err
	}
	scratch := ScratchName(res)
	if exists {
		if res.State == StateMade {
			return false, nil
		}
		err := fmt.Errorf("%w: database %q exists but instancemgr did not make it (the name is %s for %s, and instancemgr gives a database its name only as it marks it made); it is left alone", ErrConflict, name, res.State, owner)
		if res.State == StateMaking {
			// An earlier delivery may have left its copy: it can never be
			// published now.
			if derr := s.DropScratch(ctx, scratch); derr != nil {
				return false, errors.Join(err, fmt.Errorf("drop the unpublished copy %q: %w", scratch, derr))
			}
		}
		return false, err
	}
	// "making" says a scratch copy may exist. A made reservation whose
	// database is gone (dropped by hand) stays made while it is made again.
	if res.State == StateReserved {
		if err := s.MarkMaking(ctx, name, owner); err != nil {
			return false, err
		}
	}
	created, err := make(ctx, scratch)
	if err != nil {
		return false, err
	}
	err = s.Publish(ctx, scratch, name, owner)
	if err == nil {
		return created, nil
	}
	if !errors.Is(err, ErrScratchGone) && !errors.Is(err, ErrConflict) {
		return false, err
	}
	// Another delivery of this job may have published its copy while this
	// one made its own: then the name is the system's (made), and this
	// delivery's copy, if it made one, is surplus.
	if now, rerr := OwnedBy(ctx, s, name, owner); rerr == nil && now.State == StateMade {
		if errors.Is(err, ErrConflict) {
			if derr := s.DropScratch(ctx, scratch); derr != nil {
				return false, fmt.Errorf("drop the surplus copy %q: %w", scratch, derr)
			}
		}
		return false, nil
	}
	if errors.Is(err, ErrScratchGone) {
		return false, fmt.Errorf("%w: the copy %q for %q is gone before it was published; the next delivery makes it again", ErrTransient, scratch, name)
	}
	if derr := s.DropScratch(ctx, scratch); derr != nil {
		return false, errors.Join(err, fmt.Errorf("drop the unpublished copy %q: %w", scratch, derr))
	}
	return false, err
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
