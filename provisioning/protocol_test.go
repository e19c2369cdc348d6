package provisioning_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// stager is a server whose rename is a statement of its own, as SQL
// Server's is: the staged create protocol and the rename protocol run
// against it step by step, and a test can act as someone else at a named
// step (before the step runs) or stop the delivery there (a crash).
type stager struct {
	mu     sync.Mutex
	dbs    map[string]int
	res    map[string]provisioning.Reservation
	nextID int
	// at runs before each step: "copy", "record", "rename", "made",
	// "ddl". A non-nil error stops the delivery there.
	at func(step string) error
}

var owner = provisioning.Owner{Tenant: "t", InstanceID: 7}

func newStager() *stager {
	return &stager{dbs: map[string]int{}, res: map[string]provisioning.Reservation{}, at: func(string) error { return nil }}
}

func (s *stager) makeDB(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.dbs[name] = s.nextID
}

func (s *stager) dropDB(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dbs, name)
}

func (s *stager) has(name string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.dbs[name]
	return id, ok
}

func (s *stager) Reservation(_ context.Context, name string) (provisioning.Reservation, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.res[strings.ToLower(name)]
	return r, ok, nil
}

func (s *stager) SetState(_ context.Context, name string, o provisioning.Owner, state provisioning.ReservationState, identity string) error {
	if state == provisioning.StateMade {
		if err := s.at("made"); err != nil {
			return err
		}
	} else if identity != "" {
		if err := s.at("record"); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.res[strings.ToLower(name)]
	if !ok || r.Owner != o {
		return fmt.Errorf("%w: reservation gone", provisioning.ErrConflict)
	}
	r.State = state
	if identity != "" {
		r.Identity = identity
	}
	s.res[strings.ToLower(name)] = r
	return nil
}

func (s *stager) Identity(_ context.Context, name string) (string, bool, error) {
	id, ok := s.has(name)
	if !ok {
		return "", false, nil
	}
	return strconv.Itoa(id), true, nil
}

func (s *stager) MarkMaking(_ context.Context, name string, o provisioning.Owner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.res[strings.ToLower(name)]
	if r.State == provisioning.StateReserved {
		r.State = provisioning.StateMaking
		s.res[strings.ToLower(name)] = r
	}
	return nil
}

func (s *stager) DropScratch(_ context.Context, scratch string) error {
	if !strings.HasPrefix(scratch, provisioning.ScratchPrefix) {
		return errors.New("not a scratch name")
	}
	s.dropDB(scratch)
	return nil
}

func (s *stager) RenameScratch(_ context.Context, scratch, name string) error {
	if err := s.at("rename"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.dbs[scratch]
	switch {
	case !ok:
		return provisioning.ErrScratchGone
	case s.dbs[name] != 0:
		return fmt.Errorf("%w: %q exists", provisioning.ErrConflict, name)
	}
	delete(s.dbs, scratch)
	s.dbs[name] = id
	return nil
}

func (s *stager) reserve(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res[strings.ToLower(name)] = provisioning.Reservation{Database: name, Owner: owner, State: provisioning.StateReserved}
}

func (s *stager) create(ctx context.Context, name string) (bool, error) {
	return provisioning.MakeStaged(ctx, s, name, owner, func(_ context.Context, scratch string) (bool, error) {
		if err := s.at("copy"); err != nil {
			return false, err
		}
		if _, ok := s.has(scratch); ok {
			return false, nil
		}
		s.makeDB(scratch)
		return true, nil
	})
}

func (s *stager) rename(ctx context.Context, old, new string) (bool, error) {
	return provisioning.Move(ctx, s, old, new, owner, func(context.Context, string) error {
		if err := s.at("ddl"); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		id, ok := s.dbs[old]
		if !ok || s.dbs[new] != 0 {
			return errors.New("rename failed")
		}
		delete(s.dbs, old)
		s.dbs[new] = id
		return nil
	})
}

var errCrash = errors.New("the delivery died here")

// The staged create (SQL Server's) never takes a database that merely has
// the reserved name for the system's, whatever step a delivery dies at and
// whenever someone else makes a database under the name; and a delivery
// that died at any step is finished by the next one.
func TestMakeStagedKeepsOwnershipByIdentity(t *testing.T) {
	ctx := context.Background()
	const name = "EdFi_Ods_X"
	tests := []struct {
		name string
		// crash is the step the first delivery dies at ("" runs it
		// through); foreign is the step before which someone else makes a
		// database under the name ("" never).
		crash, foreign string
		// swap drops the system's database under the name after the first
		// delivery and makes another there.
		swap bool
		want error
	}{
		{name: "runs through"},
		{name: "dies before the copy", crash: "copy"},
		{name: "dies after the copy, before its identity is recorded", crash: "record"},
		{name: "dies after recording, before the rename", crash: "rename"},
		{name: "dies after the rename, before made", crash: "made"},
		{name: "someone else's database before the copy", foreign: "copy", want: provisioning.ErrConflict},
		{name: "someone else's database before the rename", foreign: "rename", want: provisioning.ErrConflict},
		{name: "someone else's database while a dead delivery's copy waits", crash: "rename", foreign: "after-crash", want: provisioning.ErrConflict},
		{name: "the renamed copy swapped before made", crash: "made", swap: true, want: provisioning.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStager()
			s.reserve(name)
			var foreignID int
			s.at = func(step string) error {
				if step == tt.foreign {
					s.makeDB(name)
					foreignID, _ = s.has(name)
				}
				if step == tt.crash {
					return errCrash
				}
				return nil
			}
			_, err := s.create(ctx, name)
			if tt.crash != "" && !errors.Is(err, errCrash) {
				t.Fatalf("first delivery: %v, want it to die at %s", err, tt.crash)
			}
			s.at = func(string) error { return nil }
			if tt.foreign == "after-crash" {
				s.makeDB(name)
				foreignID, _ = s.has(name)
			}
			if tt.swap {
				s.dropDB(name)
				s.makeDB(name)
				foreignID, _ = s.has(name)
			}
			if tt.crash != "" {
				_, err = s.create(ctx, name) // the redelivery
			}
			res, _, _ := s.Reservation(ctx, name)
			scratch := provisioning.ScratchName(res)
			if _, left := s.has(scratch); left {
				t.Errorf("the copy %q is left behind", scratch)
			}
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				if id, ok := s.has(name); !ok || id != foreignID {
					t.Fatalf("someone else's database was touched: %d %v, want %d", id, ok, foreignID)
				}
				if res.State == provisioning.StateMade {
					t.Fatalf("a foreign database is marked made: %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, ok := s.has(name)
			if !ok || res.State != provisioning.StateMade || res.Identity != strconv.Itoa(id) {
				t.Fatalf("after the create: database %d %v, reservation %+v", id, ok, res)
			}
			// Delivered once more: adopted, nothing made.
			if created, err := s.create(ctx, name); err != nil || created {
				t.Fatalf("another delivery: %v %v", created, err)
			}
		})
	}
}

// Two deliveries of one staged create, the second copying after the first
// has published: the second's copy is surplus and dropped, and the name's
// reservation keeps recording the published database, so the system never
// disowns its own copy (found by the model, RECORD_OVER_PUBLISHED).
func TestMakeStagedSecondDeliveryAfterThePublish(t *testing.T) {
	ctx := context.Background()
	const name = "EdFi_Ods_Twice"
	s := newStager()
	s.reserve(name)
	first := true
	s.at = func(step string) error {
		if step == "copy" && first {
			first = false
			// The first delivery runs through before the second copies.
			if _, err := s.create(ctx, name); err != nil {
				t.Fatalf("first delivery: %v", err)
			}
		}
		return nil
	}
	created, err := s.create(ctx, name)
	if err != nil || created {
		t.Fatalf("second delivery: %v, %v; want done, nothing made", created, err)
	}
	res, _, _ := s.Reservation(ctx, name)
	id, ok := s.has(name)
	if !ok || res.State != provisioning.StateMade || res.Identity != strconv.Itoa(id) {
		t.Fatalf("database %d %v, reservation %+v: the published copy is disowned", id, ok, res)
	}
	if _, left := s.has(provisioning.ScratchName(res)); left {
		t.Fatal("the surplus copy is left")
	}
}

// A rename on a server whose rename is a statement of its own: a database
// swapped under the old name between the check and the statement is
// renamed (the statement cannot check) but never marked made; a rename
// redelivered after a crash between the DDL and made is finished only when
// the database under the new name is the one renamed.
func TestMoveChecksIdentityAroundTheDDL(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) *stager {
		s := newStager()
		s.reserve("Old")
		if _, err := s.create(ctx, "Old"); err != nil {
			t.Fatal(err)
		}
		s.reserve("New")
		return s
	}
	t.Run("swapped before the statement", func(t *testing.T) {
		s := setup(t)
		s.at = func(step string) error {
			if step == "ddl" {
				s.dropDB("Old")
				s.makeDB("Old")
			}
			return nil
		}
		if _, err := s.rename(ctx, "Old", "New"); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("got %v, want a conflict", err)
		}
		if res, _, _ := s.Reservation(ctx, "New"); res.State == provisioning.StateMade {
			t.Fatalf("someone else's database marked made: %+v", res)
		}
	})
	// crashed is a server where a rename's delivery died after its
	// statement, before marking the new name made.
	crashed := func(t *testing.T) *stager {
		s := setup(t)
		s.at = func(step string) error {
			if step == "made" {
				return errCrash
			}
			return nil
		}
		if _, err := s.rename(ctx, "Old", "New"); !errors.Is(err, errCrash) {
			t.Fatal(err)
		}
		s.at = func(string) error { return nil }
		return s
	}
	t.Run("crash after the statement, then finished", func(t *testing.T) {
		s := crashed(t)
		if renamed, err := s.rename(ctx, "Old", "New"); err != nil || renamed {
			t.Fatalf("redelivery: %v %v, want done", renamed, err)
		}
		if res, _, _ := s.Reservation(ctx, "New"); res.State != provisioning.StateMade {
			t.Fatalf("new name %+v", res)
		}
	})
	t.Run("crash after the statement, then swapped", func(t *testing.T) {
		s := crashed(t)
		s.dropDB("New")
		s.makeDB("New")
		if _, err := s.rename(ctx, "Old", "New"); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("redelivery onto a swapped database: %v, want a conflict", err)
		}
		if _, err := provisioning.Drop(ctx, s, "New", owner, func(context.Context, string) error {
			t.Fatal("dropped a database the system did not make")
			return nil
		}); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("drop: %v", err)
		}
	})
}

// A measurement's round is twice the copies at once, queued; a large
// template's round stops at what a gibibyte holds, never below the copies
// at once.
func TestCalibrationRoundCopies(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		atOnce int
		bytes  int64
		want   int
	}{
		{1, 17 * mb, 4},
		{4, 17 * mb, 8},
		{8, 17 * mb, 16},
		{4, 121 * mb, 8},
		{8, 121 * mb, 8},
		{4, 400 * mb, 4},
		{2, 3 << 30, 2},
		{8, 0, 16},
	} {
		if got := provisioning.CalibrationRoundCopies(c.atOnce, c.bytes); got != c.want {
			t.Errorf("%d at once, %d MB: %d copies a round, want %d", c.atOnce, c.bytes/mb, got, c.want)
		}
	}
	if provisioning.MaxCalibrationNames != 2*provisioning.MaxCalibrationCopies {
		t.Errorf("%d names for rounds of %d at once", provisioning.MaxCalibrationNames, provisioning.MaxCalibrationCopies)
	}
}
