package provisioningtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// EngineSetup is what the engine conformance suite needs of an
// implementation: a fresh engine, a template it can copy, a prefix under
// which names pass the engine's guard (pattern "<Prefix>_{name}"), and a way
// to make and drop a database behind the engine's back.
type EngineSetup struct {
	Engine      provisioning.Engine
	Template    string
	Prefix      string
	MakeForeign func(t *testing.T, name string)
	DropForeign func(t *testing.T, name string)
	// Open connects to the database name as the server's administrator
	// and says why it could not: trash is closed to every login, a
	// restored database open again. Nil leaves that unchecked.
	Open func(t *testing.T, name string) error
}

var (
	ownerA = provisioning.Owner{Tenant: "t", InstanceID: 1}
	ownerB = provisioning.Owner{Tenant: "t", InstanceID: 2}
)

// Engine runs the engine conformance suite: the ownership rule as every
// engine must keep it. setup is called once per subtest.
func Engine(t *testing.T, setup func(t *testing.T) EngineSetup) {
	ctx := context.Background()
	t.Run("reservations belong to one request, ignoring letter case", func(t *testing.T) {
		s := setup(t)
		name := s.Prefix + "_Mine"
		if _, fresh, err := s.Engine.Reserve(ctx, name, ownerA); err != nil || !fresh {
			t.Fatalf("first reservation: fresh=%v, %v", fresh, err)
		}
		if res, fresh, err := s.Engine.Reserve(ctx, name, ownerA); err != nil || fresh || res.Owner != ownerA || res.State != provisioning.StateReserved {
			t.Fatalf("the same request again: %+v fresh=%v, %v", res, fresh, err)
		}
		for _, n := range []string{name, strings.ToUpper(name)} {
			if _, _, err := s.Engine.Reserve(ctx, n, ownerB); !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), "instance 1") {
				t.Fatalf("another request for %q: %v, want a conflict naming instance 1", n, err)
			}
		}
		if res, ok, err := s.Engine.Reservation(ctx, strings.ToLower(name)); err != nil || !ok || res.Database != name {
			t.Fatalf("look-up in another case: %+v %v %v", res, ok, err)
		}
		for _, bad := range []string{"", strings.Repeat("x", provisioning.MaxNameBytes+1)} {
			if _, _, err := s.Engine.Reserve(ctx, bad, ownerA); !errors.Is(err, provisioning.ErrInvalidName) {
				t.Fatalf("reserving %q: %v", bad, err)
			}
		}
	})

	t.Run("create makes or adopts only under its own reservation", func(t *testing.T) {
		s := setup(t)
		name := s.Prefix + "_Made"
		if _, err := s.Engine.CreateDatabase(ctx, name, s.Template, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("create without a reservation: %v", err)
		}
		mustReserve(t, s.Engine, name, ownerA)
		if _, err := s.Engine.CreateDatabase(ctx, name, s.Template, ownerB); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("create under another request's reservation: %v", err)
		}
		if created, err := s.Engine.CreateDatabase(ctx, name, s.Template, ownerA); err != nil || !created {
			t.Fatalf("create: %v, %v", created, err)
		}
		if created, err := s.Engine.CreateDatabase(ctx, name, s.Template, ownerA); err != nil || created {
			t.Fatalf("a second delivery adopts its own database: %v, %v", created, err)
		}
		if res, _, _ := s.Engine.Reservation(ctx, name); res.State != provisioning.StateMade {
			t.Fatalf("reservation after create: %+v", res)
		}
		mustExist(t, s.Engine, name, true)

		foreign := s.Prefix + "_Foreign"
		s.MakeForeign(t, foreign)
		mustReserve(t, s.Engine, foreign, ownerB)
		if _, err := s.Engine.CreateDatabase(ctx, foreign, s.Template, ownerB); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("adopting a database someone else made: %v", err)
		}
		if err := s.Engine.Release(ctx, foreign, ownerB); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Engine.Reservation(ctx, foreign); ok {
			t.Fatal("a reservation of nothing made survived its release")
		}
		mustExist(t, s.Engine, foreign, true)
	})

	t.Run("rename and drop act only on what the request made", func(t *testing.T) {
		s := setup(t)
		old, new := s.Prefix+"_Old", s.Prefix+"_New"
		mustReserve(t, s.Engine, old, ownerA)
		if _, err := s.Engine.CreateDatabase(ctx, old, s.Template, ownerA); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Engine.RenameDatabase(ctx, old, new, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("rename to a name not reserved: %v", err)
		}
		mustReserve(t, s.Engine, new, ownerA)
		if _, err := s.Engine.RenameDatabase(ctx, old, new, ownerB); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("rename for another request: %v", err)
		}
		if renamed, err := s.Engine.RenameDatabase(ctx, old, new, ownerA); err != nil || !renamed {
			t.Fatalf("rename: %v, %v", renamed, err)
		}
		if renamed, err := s.Engine.RenameDatabase(ctx, old, new, ownerA); err != nil || renamed {
			t.Fatalf("the rename delivered again finds it done: %v, %v", renamed, err)
		}
		mustExist(t, s.Engine, old, false)
		mustExist(t, s.Engine, new, true)
		if res, _, _ := s.Engine.Reservation(ctx, new); res.State != provisioning.StateMade {
			t.Fatalf("new name after the rename: %+v", res)
		}
		if err := s.Engine.Release(ctx, new, ownerA); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Engine.Reservation(ctx, new); !ok {
			t.Fatal("the reservation of a database the system made, still there, was released")
		}
		if err := s.Engine.Release(ctx, old, ownerA); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Engine.Reservation(ctx, old); ok {
			t.Fatal("the old name is still held after the rename")
		}

		if _, err := s.Engine.DropDatabase(ctx, new, ownerB); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("drop for another request: %v", err)
		}
		if dropped, err := s.Engine.DropDatabase(ctx, new, ownerA); err != nil || !dropped {
			t.Fatalf("drop: %v, %v", dropped, err)
		}
		if dropped, err := s.Engine.DropDatabase(ctx, new, ownerA); err != nil || dropped {
			t.Fatalf("drop again: %v, %v", dropped, err)
		}
		foreign := s.Prefix + "_Theirs"
		s.MakeForeign(t, foreign)
		if _, err := s.Engine.DropDatabase(ctx, foreign, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("drop of an unreserved database: %v", err)
		}
		mustReserve(t, s.Engine, foreign, ownerA)
		if _, err := s.Engine.DropDatabase(ctx, foreign, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("drop of a database reserved but never made: %v", err)
		}
		mustExist(t, s.Engine, foreign, true)
		if _, err := s.Engine.DropDatabase(ctx, s.Template, ownerA); !errors.Is(err, provisioning.ErrProtected) {
			t.Fatalf("drop of the template: %v", err)
		}
	})

	t.Run("a database under a made name is the system's only by identity", func(t *testing.T) {
		s := setup(t)
		name, renamed, gone := s.Prefix+"_Swapped", s.Prefix+"_SwappedNew", s.Prefix+"_SwappedGone"
		mustReserve(t, s.Engine, name, ownerA)
		if _, err := s.Engine.CreateDatabase(ctx, name, s.Template, ownerA); err != nil {
			t.Fatal(err)
		}
		made, _, _ := s.Engine.Reservation(ctx, name)
		if made.Identity == "" {
			t.Fatalf("made without an identity: %+v", made)
		}
		// Dropped by hand and made again by someone else under the name.
		s.DropForeign(t, name)
		s.MakeForeign(t, name)
		if _, err := s.Engine.CreateDatabase(ctx, name, s.Template, ownerA); !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), "not the one instancemgr made") {
			t.Fatalf("create adopting a database swapped under its made name: %v", err)
		}
		mustReserve(t, s.Engine, renamed, ownerA)
		if _, err := s.Engine.RenameDatabase(ctx, name, renamed, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("rename of a swapped database: %v", err)
		}
		mustExist(t, s.Engine, renamed, false)
		if _, err := s.Engine.DropDatabase(ctx, name, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("drop of a swapped database: %v", err)
		}
		mustExist(t, s.Engine, name, true)

		// A rename delivered again after the renamed database was swapped:
		// the name it renamed to now holds someone else's database.
		mustReserve(t, s.Engine, gone, ownerB)
		if _, err := s.Engine.CreateDatabase(ctx, gone, s.Template, ownerB); err != nil {
			t.Fatal(err)
		}
		target := s.Prefix + "_SwappedTarget"
		mustReserve(t, s.Engine, target, ownerB)
		if _, err := s.Engine.RenameDatabase(ctx, gone, target, ownerB); err != nil {
			t.Fatal(err)
		}
		s.DropForeign(t, target)
		s.MakeForeign(t, target)
		if _, err := s.Engine.RenameDatabase(ctx, gone, target, ownerB); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("a rename redelivered onto a swapped database: %v", err)
		}
		if _, err := s.Engine.DropDatabase(ctx, target, ownerB); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("drop of a database swapped under a renamed name: %v", err)
		}
		mustExist(t, s.Engine, target, true)
	})

	trashSuite(t, setup)
	importGoneSuite(t, setup)

	t.Run("import takes an earlier version's ledger as made", func(t *testing.T) {
		s := setup(t)
		name := s.Prefix + "_Legacy"
		s.MakeForeign(t, name) // made by a version that reserved nothing
		if err := s.Engine.Import(ctx, name, ownerB); err != nil {
			t.Fatal(err)
		}
		if res, _, _ := s.Engine.Reservation(ctx, name); res.State != provisioning.StateMade || res.Owner != ownerB {
			t.Fatalf("imported %+v", res)
		}
		if err := s.Engine.Import(ctx, name, ownerB); err != nil {
			t.Fatalf("import again: %v", err)
		}
		if err := s.Engine.Import(ctx, name, ownerA); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("import of a name another request holds: %v", err)
		}
	})
}

// importGoneSuite: the ledger Import is given was read before a rename or
// a delete ended, and names a database that is no longer there. Nothing
// is reserved for it: no job of an instance that has moved on would ever
// release a made reservation of its old name.
func importGoneSuite(t *testing.T, setup func(t *testing.T) EngineSetup) {
	ctx := context.Background()
	t.Run("import of a ledger entry whose database a rename moved away reserves nothing", func(t *testing.T) {
		s := setup(t)
		old, moved := s.Prefix+"_Before", s.Prefix+"_After"
		mustReserve(t, s.Engine, old, ownerB)
		if _, err := s.Engine.CreateDatabase(ctx, old, s.Template, ownerB); err != nil {
			t.Fatal(err)
		}
		mustReserve(t, s.Engine, moved, ownerB)
		if _, err := s.Engine.RenameDatabase(ctx, old, moved, ownerB); err != nil {
			t.Fatal(err)
		}
		if err := s.Engine.Release(ctx, old, ownerB); err != nil {
			t.Fatal(err)
		}
		if err := s.Engine.Import(ctx, old, ownerB); err != nil {
			t.Fatalf("import of a name whose database is gone: %v", err)
		}
		if res, held, err := s.Engine.Reservation(ctx, old); err != nil || held {
			t.Fatalf("import reserved a name with no database: %+v, %v", res, err)
		}
	})
	t.Run("import of a ledger entry whose database a delete moved to trash reserves nothing", func(t *testing.T) {
		s := setup(t)
		trash, ok := s.Engine.(provisioning.Trasher)
		if !ok {
			t.Skip("the engine keeps no trash")
		}
		name := s.Prefix + "_Trashed"
		kept := trashedAt(t, s, trash, name, ownerB, time.Hour)
		t.Cleanup(func() { _, _ = trash.Purge(context.Background(), kept) }) // trash names lack the test's prefix
		if err := s.Engine.Import(ctx, name, ownerB); err != nil {
			t.Fatalf("import of a name whose database is in trash: %v", err)
		}
		if res, held, err := s.Engine.Reservation(ctx, name); err != nil || held {
			t.Fatalf("import reserved a name whose database is in trash: %+v, %v", res, err)
		}
		if held, err := trash.Trash(ctx); err != nil || len(held) != 1 || held[0].Name != kept {
			t.Fatalf("trash after the import: %+v, %v", held, err)
		}
	})
}

// trashedAt makes owner's database name on s's engine, moves it to trash
// with retention and returns its trash name.
func trashedAt(t *testing.T, s EngineSetup, trash provisioning.Trasher, name string, owner provisioning.Owner, retention time.Duration) string {
	t.Helper()
	ctx := context.Background()
	mustReserve(t, s.Engine, name, owner)
	if _, err := s.Engine.CreateDatabase(ctx, name, s.Template, owner); err != nil {
		t.Fatal(err)
	}
	id, _, err := s.Engine.Identity(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := trash.TrashDatabase(ctx, name, owner, retention, trashGeneration); err != nil || !moved {
		t.Fatalf("move %q to trash: %v, %v", name, moved, err)
	}
	return provisioning.TrashName(provisioning.Reservation{Database: name, Owner: owner, Identity: id})
}

// trashGeneration is the ledger generation trashedAt's deletes settle at.
const trashGeneration = 3

// purgedOf is what a purge did with the trash name, if it took it.
func purgedOf(t *testing.T, trash provisioning.Trasher, name string) (provisioning.Purged, bool) {
	t.Helper()
	purged, err := trash.PurgeDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range purged {
		if p.Name == name {
			return p, true
		}
	}
	return provisioning.Purged{}, false
}

// trashSuite is the part of the suite for an engine that keeps deleted
// databases (provisioning.Trasher). The engine's reservations must be its
// test's own: a purge takes every due record it reads.
func trashSuite(t *testing.T, setup func(t *testing.T) EngineSetup) {
	ctx := context.Background()
	t.Run("trash moves by identity, is listed, and is purged once when due", func(t *testing.T) {
		s := setup(t)
		trash, ok := s.Engine.(provisioning.Trasher)
		if !ok {
			t.Skip("the engine keeps no trash")
		}
		name := s.Prefix + "_Deleted"
		kept := trashedAt(t, s, trash, name, ownerA, time.Hour)
		mustExist(t, s.Engine, name, false)
		mustExist(t, s.Engine, kept, true)
		// Another delivery, of a delete asked again after the first failed
		// at the Admin API: the record keeps its later generation.
		if moved, err := trash.TrashDatabase(ctx, name, ownerA, time.Hour, trashGeneration+1); err != nil || moved {
			t.Fatalf("another delivery: %v, %v", moved, err)
		}
		if _, ok, _ := s.Engine.Reservation(ctx, name); ok {
			t.Fatal("the original name stays reserved")
		}
		held, err := trash.Trash(ctx)
		if err != nil || len(held) != 1 || held[0].Name != kept || held[0].Original != name || held[0].Owner != ownerA || held[0].Bytes <= 0 || held[0].Generation != trashGeneration+1 {
			t.Fatalf("trash lists %+v, %v", held, err)
		}
		if _, took := purgedOf(t, trash, kept); took {
			t.Fatal("purged before its time")
		}
		due := trashedAt(t, s, trash, s.Prefix+"_Due", ownerB, time.Microsecond)
		if p, took := purgedOf(t, trash, due); !took || !p.Dropped || p.Err != nil {
			t.Fatalf("the due database: %+v took=%v", p, took)
		}
		mustExist(t, s.Engine, due, false)
		if _, took := purgedOf(t, trash, due); took {
			t.Fatal("purged twice")
		}
		if p, err := trash.Purge(ctx, kept); err != nil || !p.Dropped {
			t.Fatalf("purge now: %+v, %v", p, err)
		}
		mustExist(t, s.Engine, kept, false)
	})

	t.Run("a database swapped under a trash name is never purged", func(t *testing.T) {
		s := setup(t)
		trash, ok := s.Engine.(provisioning.Trasher)
		if !ok {
			t.Skip("the engine keeps no trash")
		}
		swapped := trashedAt(t, s, trash, s.Prefix+"_Swapped", ownerA, time.Microsecond)
		s.DropForeign(t, swapped)
		s.MakeForeign(t, swapped)
		if p, took := purgedOf(t, trash, swapped); !took || p.Dropped || !errors.Is(p.Err, provisioning.ErrConflict) {
			t.Fatalf("the swapped database: %+v took=%v", p, took)
		}
		if _, err := trash.Purge(ctx, swapped); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("purge now of the swapped database: %v", err)
		}
		mustExist(t, s.Engine, swapped, true)
		s.DropForeign(t, swapped)
		if p, took := purgedOf(t, trash, swapped); !took || p.Dropped || p.Err != nil {
			t.Fatalf("a record whose database is gone: %+v took=%v", p, took)
		}
	})

	t.Run("restore puts the very database back, open, made for its owner, never over a name in use", func(t *testing.T) {
		s := setup(t)
		restorer, ok := s.Engine.(provisioning.Restorer)
		if !ok {
			t.Skip("the engine cannot restore from trash")
		}
		name := s.Prefix + "_Restored"
		trashName := trashedAt(t, s, restorer, name, ownerA, time.Hour)
		t.Cleanup(func() { _, _ = restorer.Purge(context.Background(), trashName) }) // trash names lack the test's prefix
		held, err := restorer.Trash(ctx)
		if err != nil || len(held) != 1 {
			t.Fatalf("trash lists %+v, %v", held, err)
		}
		id := held[0].Identity
		if s.Open != nil && s.Open(t, trashName) == nil {
			t.Fatalf("the trash %q is open to logins", trashName)
		}

		taken := s.Prefix + "_Taken"
		s.MakeForeign(t, taken)
		if _, err := restorer.Restore(ctx, trashName, taken); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("restore onto a name a database holds: %v, want ErrConflict", err)
		}
		mustReserve(t, s.Engine, s.Prefix+"_held", ownerB)
		if _, err := restorer.Restore(ctx, trashName, s.Prefix+"_HELD"); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("restore onto a name a reservation holds, in other letter case: %v, want ErrConflict", err)
		}
		for _, n := range []string{taken, s.Prefix + "_HELD"} {
			if res, ok, _ := s.Engine.Reservation(ctx, n); ok && res.Owner != ownerB {
				t.Fatalf("a refused restore reserved %q: %+v", n, res)
			}
		}
		if now, ok, err := s.Engine.Identity(ctx, trashName); err != nil || !ok || now != id {
			t.Fatalf("after refused restores the trash holds %q (%v, %v), want %q", now, ok, err, id)
		}
		if s.Open != nil && s.Open(t, trashName) == nil {
			t.Fatalf("a refused restore left the trash %q open to logins", trashName)
		}
		if again, err := restorer.Trash(ctx); err != nil || len(again) != 1 || again[0].Name != trashName {
			t.Fatalf("after refused restores trash lists %+v, %v", again, err)
		}

		got, err := restorer.Restore(ctx, trashName, name)
		if err != nil {
			t.Fatalf("restore %q as %q: %v", trashName, name, err)
		}
		if got.Name != trashName || got.Original != name || got.Owner != ownerA || got.Identity != id {
			t.Fatalf("restore returned %+v", got)
		}
		if now, ok, err := s.Engine.Identity(ctx, name); err != nil || !ok || now != id {
			t.Fatalf("%q holds %q (%v, %v) after the restore, want the database trashed, %q", name, now, ok, err, id)
		}
		mustExist(t, s.Engine, trashName, false)
		if s.Open != nil {
			if err := s.Open(t, name); err != nil {
				t.Fatalf("the restored %q is closed to logins: %v", name, err)
			}
		}
		if res, ok, err := s.Engine.Reservation(ctx, name); err != nil || !ok || res.Owner != ownerA || res.State != provisioning.StateMade || res.Identity != id || res.Database != name {
			t.Fatalf("the restored reservation: %+v, %v, %v", res, ok, err)
		}
		if left, err := restorer.Trash(ctx); err != nil || len(left) != 0 {
			t.Fatalf("trash lists %+v, %v after the restore", left, err)
		}
		if _, err := restorer.Restore(ctx, trashName, name); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("a second restore: %v, want ErrConflict", err)
		}
		// A delivery of the delete it undid, late, is stale: the restored
		// database stays, open.
		if moved, err := restorer.TrashDatabase(ctx, name, ownerA, time.Hour, trashGeneration); !errors.Is(err, provisioning.ErrStale) || moved {
			t.Fatalf("the restored %q deleted by the delete it undid: %v, %v", name, moved, err)
		}
		mustExist(t, s.Engine, name, true)
		// Made for its owner: the owner's next delete moves it again.
		if moved, err := restorer.TrashDatabase(ctx, name, ownerA, time.Hour, trashGeneration+1); err != nil || !moved {
			t.Fatalf("delete the restored %q: %v, %v", name, moved, err)
		}
		if p, err := restorer.Purge(ctx, trashName); err != nil || !p.Dropped {
			t.Fatalf("purge the restored and deleted again: %+v, %v", p, err)
		}
	})
}

func mustReserve(t *testing.T, e provisioning.Engine, name string, owner provisioning.Owner) {
	t.Helper()
	if _, _, err := e.Reserve(context.Background(), name, owner); err != nil {
		t.Fatalf("reserve %q: %v", name, err)
	}
}

func mustExist(t *testing.T, e provisioning.Engine, name string, want bool) {
	t.Helper()
	if ok, err := e.DatabaseExists(context.Background(), name); err != nil || ok != want {
		t.Fatalf("%q exists=%v (%v), want %v", name, ok, err, want)
	}
}

// Registry runs the registry conformance suite: the ledger and its
// generations, as every registry must keep them, whoever writes the dbo
// rows. setup is called once per subtest.
func Registry(t *testing.T, setup func(t *testing.T) provisioning.Registry) {
	ctx := context.Background()
	boom := errors.New("the Admin API said no")
	ok := func(context.Context, provisioning.Tx) error { return nil }
	reg := provisioning.Registration{Tenant: "t", InstanceID: 7, Database: "EdFi_Ods_A", Name: "A", InstanceType: "enterprise",
		ConnectionString: "host=h;database=EdFi_Ods_A", Contexts: []provisioning.Context{{Key: "k", Value: "v"}}, Derivatives: []string{"ReadReplica"}}

	t.Run("register commits with its completion, once", func(t *testing.T) {
		r := setup(t)
		if _, err := r.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("register with a failing completion: %v", err)
		}
		if _, err := r.Lookup(ctx, "t", 7); !errors.Is(err, provisioning.ErrNotRecorded) {
			t.Fatalf("a rolled-back registration left a ledger entry: %v", err)
		}
		first, err := r.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil })
		if err != nil || first.Existed {
			t.Fatalf("register: %+v, %v", first, err)
		}
		again, err := r.Register(ctx, reg, func(_ context.Context, _ provisioning.Tx, res provisioning.RegisterResult) error {
			if !res.Existed {
				return errors.New("the completion was not told it existed")
			}
			return nil
		})
		if err != nil || !again.Existed || again.OdsInstanceID != first.OdsInstanceID {
			t.Fatalf("register again: %+v, %v", again, err)
		}
		rec, err := r.Lookup(ctx, "t", 7)
		if err != nil || rec.Database != reg.Database || rec.Name != reg.Name || rec.Generation != 0 || rec.Owner() != (provisioning.Owner{Tenant: "t", InstanceID: 7}) {
			t.Fatalf("ledger %+v, %v", rec, err)
		}
		moved := reg
		moved.Database, moved.Name = "EdFi_Ods_Other", "Other"
		if _, err := r.Register(ctx, moved, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); !errors.Is(err, provisioning.ErrConflict) ||
			!strings.Contains(err.Error(), "EdFi_Ods_A") || !strings.Contains(err.Error(), "EdFi_Ods_Other") {
			t.Fatalf("the same instance on another database: %v", err)
		}
		if recs, err := r.Records(ctx); err != nil || len(recs) != 1 || recs[0] != rec {
			t.Fatalf("records %+v, %v", recs, err)
		}
	})

	t.Run("renames and failures move the generation once", func(t *testing.T) {
		r := setup(t)
		if _, err := r.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); err != nil {
			t.Fatal(err)
		}
		ren := provisioning.Renaming{Tenant: "t", InstanceID: 7, NewName: "B", NewDatabase: "EdFi_Ods_B", ConnectionString: "host=h;database=EdFi_Ods_B"}
		if err := r.Rename(ctx, ren, func(context.Context, provisioning.Tx, provisioning.Record) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("rename with a failing completion: %v", err)
		}
		if rec, _ := r.Lookup(ctx, "t", 7); rec.Generation != 0 || rec.Database != "EdFi_Ods_A" {
			t.Fatalf("a rolled-back rename moved the ledger: %+v", rec)
		}
		var before provisioning.Record
		if err := r.Rename(ctx, ren, func(_ context.Context, _ provisioning.Tx, b provisioning.Record) error { before = b; return nil }); err != nil {
			t.Fatal(err)
		}
		if before.Database != "EdFi_Ods_A" || before.Generation != 0 {
			t.Fatalf("the completion saw %+v, want the ledger before the rename", before)
		}
		if err := r.Rename(ctx, ren, func(context.Context, provisioning.Tx, provisioning.Record) error { return nil }); !errors.Is(err, provisioning.ErrStale) {
			t.Fatalf("the same rename again: %v, want ErrStale", err)
		}
		if err := r.RenameFailed(ctx, "t", 7, 1, nil, ok); err != nil {
			t.Fatal(err)
		}
		if err := r.DeleteFailed(ctx, "t", 7, 2, ok); err != nil {
			t.Fatal(err)
		}
		renameFailed := func(ctx context.Context, tenant string, id, gen int, complete func(context.Context, provisioning.Tx) error) error {
			return r.RenameFailed(ctx, tenant, id, gen, nil, complete)
		}
		for _, fail := range []func(context.Context, string, int, int, func(context.Context, provisioning.Tx) error) error{renameFailed, r.DeleteFailed} {
			if err := fail(ctx, "t", 7, 2, ok); !errors.Is(err, provisioning.ErrStale) {
				t.Fatalf("a failure for a past generation: %v, want ErrStale", err)
			}
			if err := fail(ctx, "t", 99, 0, ok); !errors.Is(err, provisioning.ErrNotRecorded) {
				t.Fatalf("a failure for an unknown instance: %v", err)
			}
		}
		if err := r.DeleteFailed(ctx, "t", 7, 3, func(context.Context, provisioning.Tx) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("a failure whose report fails: %v", err)
		}
		if rec, _ := r.Lookup(ctx, "t", 7); rec.Generation != 3 || rec.Database != "EdFi_Ods_B" || rec.Name != "B" {
			t.Fatalf("ledger %+v, want generation 3 on EdFi_Ods_B", rec)
		}
	})

	t.Run("a rename that failed after its database moved leaves the ledger on the database as it is", func(t *testing.T) {
		r := setup(t)
		if _, err := r.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); err != nil {
			t.Fatal(err)
		}
		moved := &provisioning.Renaming{NewName: "B", NewDatabase: "EdFi_Ods_B", ConnectionString: "host=h;database=EdFi_Ods_B"}
		if err := r.RenameFailed(ctx, "t", 7, 0, moved, func(context.Context, provisioning.Tx) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("with a failing report: %v", err)
		}
		if rec, _ := r.Lookup(ctx, "t", 7); rec.Generation != 0 || rec.Database != "EdFi_Ods_A" {
			t.Fatalf("a rolled-back failure moved the ledger: %+v", rec)
		}
		if err := r.RenameFailed(ctx, "t", 7, 0, moved, func(context.Context, provisioning.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if rec, _ := r.Lookup(ctx, "t", 7); rec.Generation != 1 || rec.Database != "EdFi_Ods_B" || rec.Name != "B" {
			t.Fatalf("ledger %+v, want generation 1 on EdFi_Ods_B", rec)
		}
		if err := r.RenameFailed(ctx, "t", 7, 0, moved, func(context.Context, provisioning.Tx) error { return nil }); !errors.Is(err, provisioning.ErrStale) {
			t.Fatalf("the same failure again: %v, want ErrStale", err)
		}
	})

	t.Run("unregister commits with its completion", func(t *testing.T) {
		r := setup(t)
		if _, err := r.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := r.Unregister(ctx, "t", 7, func(context.Context, provisioning.Tx, provisioning.Record) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("unregister with a failing completion: %v", err)
		}
		if _, err := r.Lookup(ctx, "t", 7); err != nil {
			t.Fatalf("a rolled-back unregister removed the entry: %v", err)
		}
		if err := r.Unregister(ctx, "t", 7, func(context.Context, provisioning.Tx, provisioning.Record) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Lookup(ctx, "t", 7); !errors.Is(err, provisioning.ErrNotRecorded) {
			t.Fatalf("lookup after unregister: %v", err)
		}
		if err := r.Unregister(ctx, "t", 7, func(context.Context, provisioning.Tx, provisioning.Record) error { return nil }); !errors.Is(err, provisioning.ErrNotRecorded) {
			t.Fatalf("unregister again: %v", err)
		}
	})
}
