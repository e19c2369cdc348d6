package provisioning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// The ownership protocol, written once for every engine. Its steps and the
// states they move through are modelled in provisioning/model (Promela,
// checked by spin); a change here that the model does not follow is a
// change to the model too.

// Inspector reads a server's reservations and its databases' identities.
type Inspector interface {
	Reservation(ctx context.Context, name string) (Reservation, bool, error)
	// Identity is the server's identity of the database of exactly that
	// name (exists false: there is none).
	Identity(ctx context.Context, name string) (identity string, exists bool, err error)
}

// ReservationStore is what an engine keeps of its server's reservations and
// databases: all the ownership protocol below reads and moves. The SQL
// engines implement it; the protocol is written once, here.
type ReservationStore interface {
	Inspector
	// SetState moves owner's reservation of exactly name to state, and
	// records identity as the identity of its database unless identity is
	// empty (then the recorded one stays). It is ErrConflict when the
	// reservation is gone.
	SetState(ctx context.Context, name string, owner Owner, state ReservationState, identity string) error
}

// OwnedBy returns name's reservation when owner holds it (CheckOwner).
func OwnedBy(ctx context.Context, s Inspector, name string, owner Owner) (Reservation, error) {
	res, ok, err := s.Reservation(ctx, name)
	if err != nil {
		return res, err
	}
	return res, CheckOwner(res, ok, name, owner)
}

// MadeBy returns name's reservation when owner holds it and the system made
// its database (CheckMade).
func MadeBy(ctx context.Context, s Inspector, name string, owner Owner) (Reservation, error) {
	res, ok, err := s.Reservation(ctx, name)
	if err != nil {
		return res, err
	}
	return res, CheckMade(res, ok, name, owner)
}

// Same is the identity rule: nil only when current, the identity of the
// database now under res.Database, is the one the reservation recorded
// when the system made it. A reservation made by a version that recorded
// no identity is taken by its name once, as that version took it, and the
// identity found is recorded from then on; one the system was still making
// with none recorded holds nothing the system can recognise.
func Same(ctx context.Context, s ReservationStore, res Reservation, current string) error {
	switch {
	case res.Identity == "" && res.State == StateMade:
		return s.SetState(ctx, res.Database, res.Owner, StateMade, current)
	case res.Identity == "":
		return fmt.Errorf("%w: a database exists under %q, but instancemgr has recorded no database of its own there (the name is %s for %s); it is left alone", ErrConflict, res.Database, res.State, res.Owner)
	case res.Identity != current:
		return fmt.Errorf("%w: the database under %q is not the one instancemgr made for %s (it is %s, instancemgr made %s); it is left alone", ErrConflict, res.Database, res.Owner, current, res.Identity)
	}
	return nil
}

// Holds reports whether the database under name is the one the system
// made for owner: the name is owner's, past reserved, and the database
// under it has the identity recorded. It changes nothing (a reservation of
// an earlier version, with no identity, holds nothing here).
func Holds(ctx context.Context, s Inspector, name string, owner Owner) (bool, error) {
	_, held, err := holder(ctx, s, name, owner)
	return held, err
}

// holder is Holds with the reservation it read.
func holder(ctx context.Context, s Inspector, name string, owner Owner) (Reservation, bool, error) {
	res, err := OwnedBy(ctx, s, name, owner)
	if errors.Is(err, ErrConflict) {
		return res, false, nil
	}
	if err != nil || res.State == StateReserved || res.Identity == "" {
		return res, false, err
	}
	current, ok, err := s.Identity(ctx, name)
	return res, ok && current == res.Identity, err
}

// toCreate is where a create starts: owner's reservation of name, and the
// identity of a database of that name, if one exists.
func toCreate(ctx context.Context, s ReservationStore, name string, owner Owner) (Reservation, string, bool, error) {
	res, err := OwnedBy(ctx, s, name, owner)
	if err != nil {
		return res, "", false, fmt.Errorf("create database %q: %w", name, err)
	}
	current, exists, err := s.Identity(ctx, name)
	return res, current, exists, err
}

// Publisher is a ReservationStore whose engine can copy a template under a
// scratch name and then publish the copy: rename it to the reserved name
// and mark the reservation made with the copy's identity in one
// transaction (PostgreSQL, whose ALTER DATABASE ... RENAME is
// transactional). On such a server a database under a reserved name is the
// system's exactly when its reservation says made and names its identity,
// so nothing that appears under the name while a copy is being made is
// ever mistaken for it.
type Publisher interface {
	Scratcher
	// Publish renames scratch to name and marks owner's reservation of name
	// made, recording the copy's identity, together or not at all. It is
	// ErrScratchGone when scratch does not exist, and ErrConflict when a
	// database named name already does or the reservation is gone.
	Publish(ctx context.Context, scratch, name string, owner Owner) error
}

// Scratcher is a ReservationStore that makes copies under scratch names.
type Scratcher interface {
	ReservationStore
	// DropScratch drops a scratch copy that can no longer be published.
	// It drops only names with ScratchPrefix.
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
const ScratchPrefix = SystemPrefix + "copy_"

// CalibrationOwner holds the reservations a copy strategy measurement
// copies under (instancemgr calibrate): no tenant is called this.
var CalibrationOwner = Owner{Tenant: "instancemgr:calibrate", InstanceID: 0}

// MaxCalibrationCopies bounds how many copies a measurement makes at once.
const MaxCalibrationCopies = 8

// CalibrationRoundBytes bounds what one round of a measurement copies
// beyond its first atOnce copies: a measurement is four rounds, each kept
// until the round ends, so a large template's measurement neither fills
// the disk nor writes more than a few times this.
const CalibrationRoundBytes = 1 << 30

// CalibrationRoundCopies is how many copies one round of a measurement of
// a template of templateBytes makes, atOnce at a time: twice as many (at
// least 4), queued to its copiers as jobs are to workers, so that copies
// start apart as jobs do and a file copy's checkpoints are shared as jobs
// share them, not as a batch started together shares them; but no more
// than CalibrationRoundBytes of copies, nor fewer than atOnce.
func CalibrationRoundCopies(atOnce int, templateBytes int64) int {
	m := max(2*atOnce, 4)
	if templateBytes > 0 {
		m = min(m, int(CalibrationRoundBytes/templateBytes))
	}
	return max(m, atOnce, 1)
}

// MaxCalibrationNames bounds the names a measurement reserves: a round's
// copies at MaxCalibrationCopies at once.
var MaxCalibrationNames = CalibrationRoundCopies(MaxCalibrationCopies, 0)

// CalibrationReservation is the name reserved for the i-th copy of a
// measurement of template; no database is ever made under it, only under
// its scratch name.
func CalibrationReservation(template string, i int) string {
	h := sha256.Sum256([]byte(template))
	return fmt.Sprintf("%scalibrate_%s_%d", SystemPrefix, hex.EncodeToString(h[:8]), i)
}

// CalibrationCopy is the name the i-th copy of a measurement of template
// is made under: the scratch name of its CalibrationReservation.
func CalibrationCopy(template string, i int) string {
	return ScratchName(Reservation{Database: CalibrationReservation(template, i), Owner: CalibrationOwner})
}

// ScratchName is the name a reservation's copy is made under before it is
// published: the same for every delivery of the request that holds it,
// and for no other request.
func ScratchName(res Reservation) string {
	key := res.Database + "\x00" + res.Owner.Tenant + "\x00" + strconv.Itoa(res.Owner.InstanceID)
	if res.Owner.Line != LineAdminConsole { // adminconsole's names stay what they were
		key += "\x00" + res.Owner.Line.String()
	}
	h := sha256.Sum256([]byte(key))
	return ScratchPrefix + hex.EncodeToString(h[:12])
}

// existing settles a create that finds a database under name already: it
// is the system's (created=false, no error) only when the reservation says
// made and the database is the one recorded (Same); anything else is
// someone else's, ErrConflict, and a copy an earlier delivery left under
// the reservation's scratch name can never be published now.
func existing(ctx context.Context, s Scratcher, res Reservation, current string) (bool, error) {
	if res.State == StateMade {
		if err := Same(ctx, s, res, current); err != nil {
			return false, fmt.Errorf("create database %q: %w", res.Database, err)
		}
		return false, nil
	}
	err := fmt.Errorf("%w: database %q exists but instancemgr did not make it (the name is %s for %s, and instancemgr gives a database its name only once it has recorded the copy's identity); it is left alone", ErrConflict, res.Database, res.State, res.Owner)
	if res.State == StateMaking {
		if derr := s.DropScratch(ctx, ScratchName(res)); derr != nil {
			return false, errors.Join(err, fmt.Errorf("drop the unpublished copy %q: %w", ScratchName(res), derr))
		}
	}
	return false, err
}

// copyScratch marks res making and has make copy the template under its
// scratch name (created=false when an earlier delivery's copy is there).
// "making" says a scratch copy may exist; a made reservation whose
// database is gone (dropped by hand) stays made while it is made again.
func copyScratch(ctx context.Context, s Scratcher, res Reservation, make func(ctx context.Context, scratch string) (bool, error)) (string, bool, error) {
	if res.State == StateReserved {
		if err := s.MarkMaking(ctx, res.Database, res.Owner); err != nil {
			return "", false, err
		}
	}
	scratch := ScratchName(res)
	created, err := make(ctx, scratch)
	return scratch, created, err
}

// publishedMeanwhile reports whether another delivery of the same job has
// published its copy under name: the reservation says made and the
// database under name is the recorded one.
func publishedMeanwhile(ctx context.Context, s ReservationStore, name string, owner Owner) bool {
	now, held, err := holder(ctx, s, name, owner)
	return err == nil && held && now.State == StateMade
}

// MakePublished is the create protocol of a Publisher. name must be
// reserved for owner. An existing database under name is the system's only
// when the reservation says made and records its identity (created=false);
// anything else is someone else's, ErrConflict. Otherwise the reservation
// goes to making, make copies the template as scratch (created=false when
// an earlier delivery's copy is there already), and Publish gives the copy
// its name, marks it made and records its identity in one transaction.
func MakePublished(ctx context.Context, s Publisher, name string, owner Owner, make func(ctx context.Context, scratch string) (created bool, err error)) (bool, error) {
	res, current, exists, err := toCreate(ctx, s, name, owner)
	if err != nil {
		return false, err
	}
	if exists {
		return existing(ctx, s, res, current)
	}
	scratch, created, err := copyScratch(ctx, s, res, make)
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
	// one made its own: then the name is the system's, and this delivery's
	// copy, if it made one, is surplus.
	if publishedMeanwhile(ctx, s, name, owner) {
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

// Stager is a Scratcher whose engine renames a database in a statement of
// its own, outside any transaction (SQL Server). It publishes a copy in
// steps: the copy's identity is recorded in the reservation (still making)
// before the copy is renamed to its name, and the reservation marked made
// after; a database under the name is the system's only when it has the
// recorded identity.
type Stager interface {
	Scratcher
	// RenameScratch renames scratch to name. It is ErrScratchGone when
	// scratch does not exist and ErrConflict when name already does.
	RenameScratch(ctx context.Context, scratch, name string) error
}

// MakeStaged is the create protocol of a Stager. As MakePublished, with
// the publication in three steps, each of which a later delivery can tell
// was done: record the copy's identity (making), rename the copy, mark
// made.
func MakeStaged(ctx context.Context, s Stager, name string, owner Owner, make func(ctx context.Context, scratch string) (created bool, err error)) (bool, error) {
	res, current, exists, err := toCreate(ctx, s, name, owner)
	if err != nil {
		return false, err
	}
	if exists {
		if res.State == StateMaking && res.Identity != "" && res.Identity == current {
			// A delivery died after renaming its copy, before marking it.
			return false, s.SetState(ctx, name, owner, StateMade, "")
		}
		return existing(ctx, s, res, current)
	}
	scratch, created, err := copyScratch(ctx, s, res, make)
	if err != nil {
		return false, err
	}
	copyID, ok, err := s.Identity(ctx, scratch)
	switch {
	case err != nil:
		return false, err
	case !ok && publishedMeanwhile(ctx, s, name, owner):
		return false, nil
	case !ok:
		return false, fmt.Errorf("%w: the copy %q for %q is gone before it was published; the next delivery makes it again", ErrTransient, scratch, name)
	}
	// Another delivery may have renamed its copy to name since this one
	// looked: this copy is then surplus, and recording it would disown the
	// published one (the model's RECORD_OVER_PUBLISHED).
	if now, held, err := holder(ctx, s, name, owner); err != nil {
		return false, err
	} else if held {
		if now.Identity != copyID {
			if derr := s.DropScratch(ctx, scratch); derr != nil {
				return false, fmt.Errorf("drop the surplus copy %q: %w", scratch, derr)
			}
		}
		return false, s.SetState(ctx, name, owner, StateMade, "")
	}
	if err := s.SetState(ctx, name, owner, StateMaking, copyID); err != nil {
		return false, err
	}
	err = s.RenameScratch(ctx, scratch, name)
	if errors.Is(err, ErrScratchGone) || errors.Is(err, ErrConflict) {
		// Another delivery renamed a copy first: the system's only when
		// the database under name is the copy it recorded last.
		if now, held, herr := holder(ctx, s, name, owner); herr == nil && held {
			if errors.Is(err, ErrConflict) && now.Identity != copyID {
				if derr := s.DropScratch(ctx, scratch); derr != nil {
					return false, fmt.Errorf("drop the surplus copy %q: %w", scratch, derr)
				}
			}
			return false, s.SetState(ctx, name, owner, StateMade, "")
		}
		if errors.Is(err, ErrScratchGone) {
			return false, fmt.Errorf("%w: the copy %q for %q is gone before it was published; the next delivery makes it again", ErrTransient, scratch, name)
		}
		if derr := s.DropScratch(ctx, scratch); derr != nil {
			return false, errors.Join(err, fmt.Errorf("drop the unpublished copy %q: %w", scratch, derr))
		}
		return false, err
	}
	if err != nil {
		return false, err
	}
	return created, s.SetState(ctx, name, owner, StateMade, "")
}

// Move is the rename protocol. old must be owner's and made, and the
// database under it the one the system made (Same); new must be reserved
// for owner. Before the DDL the new name's reservation goes to making and
// records the identity the database will carry under it (a rename keeps
// a database's identity), so a later delivery takes the rename as done
// only when the database under new is that very one. rename is given that
// identity: an engine whose rename is transactional checks it and marks
// new made in the rename's own transaction. renamed is false when an
// earlier delivery did it.
func Move(ctx context.Context, s ReservationStore, old, new string, owner Owner, rename func(ctx context.Context, identity string) error) (bool, error) {
	wrap := func(err error) error { return fmt.Errorf("rename database %q to %q: %w", old, new, err) }
	resOld, err := MadeBy(ctx, s, old, owner)
	if err != nil {
		return false, wrap(err)
	}
	resNew, err := OwnedBy(ctx, s, new, owner)
	if err != nil {
		return false, wrap(err)
	}
	curOld, oldExists, err := s.Identity(ctx, old)
	if err != nil {
		return false, err
	}
	curNew, newExists, err := s.Identity(ctx, new)
	if err != nil {
		return false, err
	}
	switch {
	case oldExists && !newExists:
		if err := Same(ctx, s, resOld, curOld); err != nil {
			return false, wrap(err)
		}
		if err := s.SetState(ctx, new, owner, StateMaking, curOld); err != nil {
			return false, err
		}
		if err := rename(ctx, curOld); err != nil {
			return false, err
		}
		// Confirm what the rename did: a database swapped under old between
		// the check and the DDL (on an engine whose rename cannot check)
		// is reported, never taken as the system's.
		cur, ok, err := s.Identity(ctx, new)
		if err != nil {
			return false, err
		}
		if !ok || cur != curOld {
			return false, wrap(fmt.Errorf("%w: after the rename the database under %q is not the one instancemgr renamed (%s); it is not marked made", ErrConflict, new, curOld))
		}
		return true, s.SetState(ctx, new, owner, StateMade, "")
	case !oldExists && newExists && resNew.State == StateMade && resNew.Identity == "":
		// Renamed and marked by a version that recorded no identity.
		return false, wrap(Same(ctx, s, resNew, curNew))
	case !oldExists && newExists && resNew.State != StateReserved && resNew.Identity != "" && resNew.Identity == curNew:
		// An earlier delivery renamed it (and died before marking it made).
		return false, s.SetState(ctx, new, owner, StateMade, "")
	case !oldExists && newExists:
		return false, wrap(fmt.Errorf("%w: %q is gone and %q exists, but the database under %q is not the one instancemgr renamed; it is left alone", ErrConflict, old, new, new))
	case oldExists && newExists:
		return false, wrap(fmt.Errorf("%w: both %q and %q exist; nothing is dropped to make room", ErrConflict, old, new))
	default:
		return false, wrap(fmt.Errorf("%w: neither %q nor %q exists", ErrConflict, old, new))
	}
}

// Drop is the drop protocol: a database already gone is not an error
// (dropped=false); one that exists is dropped only when owner's, made, and
// the very database the system made (Same). drop is given its identity: an
// engine that can checks it in the statement or transaction that drops.
func Drop(ctx context.Context, s ReservationStore, name string, owner Owner, drop func(ctx context.Context, identity string) error) (bool, error) {
	current, exists, err := s.Identity(ctx, name)
	if err != nil || !exists {
		return false, err
	}
	res, err := MadeBy(ctx, s, name, owner)
	if err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	if err := Same(ctx, s, res, current); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	if err := drop(ctx, current); err != nil {
		return false, err
	}
	return true, nil
}
