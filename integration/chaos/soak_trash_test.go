package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// The soak deletes with a retention: a delete moves the database to trash,
// the consumer replicas' purge loops drop it once due (each replica purges
// when it starts, and the soak kills and restarts them), and an operator
// restores some deleted instances and purges others with the instancemgr
// binary, as the runbook says.

// soakRetention is short enough that restarted replicas purge during the
// soak, long enough that most deleted instances can still be restored.
const soakRetention = 8 * time.Second

// inTrash is one trash record of the soak: its database's trash name, the
// name it had and its identity (the oid instancemgr moved there).
type inTrash struct {
	server              *pgxpool.Pool
	tenant              string
	id                  int
	name, original, oid string
}

// restoredAs is what a restore that succeeded gave an instance: its
// database and that database's identity, which a later rename keeps.
type restoredAs struct {
	database, oid string
}

// trash is what trash holds of the soak's instances, on both servers: its
// databases once had the soak's prefix (other tests share tenant names).
func (s *soak) trash() []inTrash {
	var out []inTrash
	for _, server := range []*pgxpool.Pool{s.tenants[0].server, s.tenants[2].server} {
		rows, err := server.Query(context.Background(), `SELECT database_name, coalesce(original_name, ''), tenant, instance_id, coalesce(database_identity, '')
			FROM instancemgr.reservations WHERE state = 'trashed' AND tenant = ANY($1) AND starts_with(original_name, $2)`, []string{"t1", "t2", "t3"}, s.prefix+"_")
		if err != nil {
			s.t.Fatalf("read the trash: %v", err)
		}
		for rows.Next() {
			t := inTrash{server: server}
			if err := rows.Scan(&t.name, &t.original, &t.tenant, &t.id, &t.oid); err != nil {
				s.t.Fatal(err)
			}
			out = append(out, t)
		}
		rows.Close()
	}
	return out
}

// trashReservation is a trash record as a reservation, for its scratch name.
func (s *soak) trashReservation(t inTrash) provisioning.Reservation {
	line := provisioning.LineAdminConsole
	if s.manage {
		line = provisioning.LineManage
	}
	return provisioning.Reservation{Database: t.name, Owner: provisioning.Owner{Tenant: t.tenant, InstanceID: t.id, Line: line}}
}

// trashOf is what trash holds of one instance.
func (s *soak) trashOf(tenant string, id int) []inTrash {
	var out []inTrash
	for _, t := range s.trash() {
		if t.tenant == tenant && t.id == id {
			out = append(out, t)
		}
	}
	return out
}

// oidOf is the identity of database on server, "" when there is none.
func oidOf(server *pgxpool.Pool, database string) string {
	var oid uint32
	if err := server.QueryRow(context.Background(), `SELECT oid FROM pg_database WHERE datname = $1`, database).Scan(&oid); err != nil {
		return ""
	}
	return strconv.FormatUint(uint64(oid), 10)
}

// ledgerOf is the database the ledger names for an instance, "" when it
// has no entry.
func (s *soak) ledgerOf(tn *soakTenant, id int) string {
	var db string
	_ = tn.admin.QueryRow(context.Background(), `SELECT database_name FROM instancemgr.instances WHERE tenant = $1 AND instance_id = $2`, tn.name, id).Scan(&db)
	return db
}

// operator runs instancemgr as an operator would, against the soak's
// configuration, and returns what it printed and whether it succeeded.
func (s *soak) operator(args ...string) (string, error) {
	cmd := exec.Command(bins.Instancemgr, args...)
	cmd.Env = append(os.Environ(), s.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	// With the processes' logs, kept when the soak fails.
	if f, ferr := os.OpenFile(filepath.Join(s.h.Dir(), "operator.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "%s instancemgr %s (exit: %v)\n%s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(args, " "), err, out.String())
		f.Close()
	}
	return out.String(), err
}

// early records a violation seen as an operation returned, for check.
func (s *soak) early(kind, format string, args ...any) {
	s.violations[kind] = append(s.violations[kind], fmt.Sprintf(format, args...))
}

// restore puts a deleted instance back with `instancemgr trash restore`,
// sometimes as a new name; or asks what must be refused (an instance not
// Deleted, a name in use) and checks that the refusal changed nothing.
func (s *soak) restore() {
	var r *simulator.InstanceState
	var as, kind string
	switch n := s.rng.IntN(8); {
	case n == 0:
		r, kind = s.pick(adminapi.StatusCompleted), "restore of an instance not Deleted"
	default:
		r, kind = s.pick(adminapi.StatusDeleted), "restore"
		if r == nil {
			return
		}
		switch {
		case n == 1:
			// The name of another instance of the tenant that is there.
			var taken []string
			for _, o := range s.records() {
				if o.TenantName == r.TenantName && o.Status == adminapi.StatusCompleted {
					taken = append(taken, o.Name)
				}
			}
			if len(taken) == 0 {
				return
			}
			slices.Sort(taken) // map order is not the seed's
			as, kind = taken[s.rng.IntN(len(taken))], "restore as a name in use"
		case n <= 3:
			as, kind = s.freshName(), "restore as a new name"
		}
	}
	if r == nil {
		return
	}
	tn := s.tenantOf(r)
	before := s.trashOf(tn.name, r.ID)
	if r.Status == adminapi.StatusDeleted && len(before) == 0 {
		return // purged: nothing to restore
	}
	args := []string{"trash", "restore", "-config", s.cfgPath}
	if as != "" {
		args = append(args, "-as", as)
	}
	out, err := s.operator(append(args, tn.name, strconv.Itoa(r.ID))...)
	after := s.records()[r.ID]
	if err == nil {
		s.ops[kind]++
		s.restored(tn, r, as, before, after, out)
		return
	}
	// What it said last is its error; the audit line comes before.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	msg := lines[len(lines)-1]
	switch {
	case strings.HasPrefix(msg, "instancemgr: conflict: "):
		s.ops[kind+", refused (conflict)"]++
	default:
		// A fault before anything moved, or a registration that failed
		// and put the database back to trash; never one left half done.
		s.ops[kind+", failed under a fault"]++
		if strings.Contains(msg, "moving it back to trash failed") {
			s.early("restore_left_half_done", "%s/%d: %s", tn.name, r.ID, msg)
		}
	}
	if !strings.HasPrefix(msg, "instancemgr: ") {
		s.early("restore_error_unclear", "%s/%d exited %v: %q", tn.name, r.ID, err, msg)
	}
	// A refusal changes nothing: the status, no ledger entry for a deleted
	// instance, and its database still in trash (or purged meanwhile).
	switch {
	case after.Status != r.Status:
		s.early("restore_refusal_changed", "%s/%d: %s became %s (%s)", tn.name, r.ID, r.Status, after.Status, msg)
	case r.Status == adminapi.StatusDeleted && s.ledgerOf(tn, r.ID) != "":
		s.early("restore_refusal_changed", "%s/%d: refused, yet the ledger names %q (%s)", tn.name, r.ID, s.ledgerOf(tn, r.ID), msg)
	}
	for _, b := range before {
		now := s.trashOf(tn.name, r.ID)
		if len(now) > 0 && !containsOID(now, b.oid) {
			s.early("restore_refusal_changed", "%s/%d: refused, and trash no longer holds %s (oid %s): %+v", tn.name, r.ID, b.name, b.oid, now)
		}
	}
}

func containsOID(ts []inTrash, oid string) bool {
	for _, t := range ts {
		if t.oid == oid {
			return true
		}
	}
	return false
}

// restored checks a restore the binary said it did: the instance is
// Completed again under its name (or as's), its ledger names the database
// the name maps to, and that database is the one trash held.
func (s *soak) restored(tn *soakTenant, r *simulator.InstanceState, as string, before []inTrash, after simulator.InstanceState, out string) {
	name := r.Name
	if as != "" {
		name = as
	}
	want, err := s.naming.DatabaseName(tn.name, name)
	if err != nil {
		s.t.Fatal(err)
	}
	oid := oidOf(tn.server, want)
	switch {
	case after.Status != adminapi.StatusCompleted || after.Name != name:
		s.early("restored_not_completed", "%s/%d: %s %q after a restore to %q (%s)", tn.name, r.ID, after.Status, after.Name, name, out)
	case s.ledgerOf(tn, r.ID) != want:
		s.early("restored_not_registered", "%s/%d: ledger %q, want %q (%s)", tn.name, r.ID, s.ledgerOf(tn, r.ID), want, out)
	case !containsOID(before, oid):
		s.early("restored_other_database", "%s/%d: %q has oid %q, trash held %+v", tn.name, r.ID, want, oid, before)
	}
	s.restores[r.ID] = restoredAs{database: want, oid: oid}
	if as != "" {
		s.prevName[r.ID] = r.Name
	}
}

// purgeNow drops a deleted instance's database before its retention ends,
// with `instancemgr trash purge`, as an operator short of space would.
func (s *soak) purgeNow() {
	r := s.pick(adminapi.StatusDeleted)
	if r == nil {
		return
	}
	tn := s.tenantOf(r)
	before := s.trashOf(tn.name, r.ID)
	if len(before) == 0 {
		return
	}
	out, err := s.operator("trash", "purge", "-config", s.cfgPath, tn.name, strconv.Itoa(r.ID))
	switch {
	case err == nil:
		s.ops["trash purge"]++
		for _, b := range before {
			if oidOf(b.server, b.name) != "" {
				s.early("purged_database_left", "%s/%d: %s still exists after `trash purge` (%s)", tn.name, r.ID, b.name, out)
			}
		}
		if now := s.trashOf(tn.name, r.ID); len(now) > 0 {
			s.early("purged_record_left", "%s/%d: trash still holds %+v after `trash purge`", tn.name, r.ID, now)
		}
	case strings.Contains(out, "trash holds nothing"):
		s.ops["trash purge, purged by a replica first"]++
	default:
		s.ops["trash purge, failed"]++
		s.early("purge_failed", "%s/%d: %v: %s", tn.name, r.ID, err, out)
	}
}

// checkTrash checks what trash holds once the system drained: each
// record's database is there under its trash name with the identity
// recorded, its instance is Deleted and nothing registers it; each
// instance restored and still Completed is registered with the database
// trash held. Deleted instances trash no longer holds were purged.
func (s *soak) checkTrash(ctx context.Context, recs map[int]simulator.InstanceState, info map[string]int, bad func(kind, format string, args ...any)) {
	held := map[string]bool{}
	for _, t := range s.trash() {
		held[fmt.Sprintf("%s/%d", t.tenant, t.id)] = true
		info["trash: held at the end"]++
		got := oidOf(t.server, t.name)
		if got == "" {
			// A purge that died between moving the database to its scratch
			// name and dropping it: the next pass drops it there, by
			// identity, and forgets the record.
			if got = oidOf(t.server, provisioning.ScratchName(s.trashReservation(t))); got == t.oid {
				info["trash: purge interrupted, left under its scratch name for the next pass"]++
				continue
			}
		}
		if got != t.oid {
			bad("trash_database_lost", "%s/%d: %s (was %s) has oid %q, trash recorded %q", t.tenant, t.id, t.name, t.original, got, t.oid)
		}
		// A delete the Admin API refused after the move leaves its instance
		// Delete_Failed and its ledger entry, on the name it had, until
		// the delete is asked again (as after a drop with no retention).
		r, ok := recs[t.id]
		failed := ok && r.Status == adminapi.StatusDeleteFailed
		switch {
		case failed:
			info["trash: of a Delete_Failed instance"]++
		case !ok || r.Status != adminapi.StatusDeleted:
			bad("trash_of_live_instance", "%s/%d: trash holds %s, the instance is %s", t.tenant, t.id, t.name, r.Status)
		}
		for _, tn := range s.tenants {
			if tn.name != t.tenant {
				continue
			}
			var byName, byInstance int
			if err := tn.admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE database_name = $1), count(*) FILTER (WHERE tenant = $2 AND instance_id = $3) FROM instancemgr.instances`,
				t.name, t.tenant, t.id).Scan(&byName, &byInstance); err != nil {
				s.t.Fatal(err)
			}
			if byName > 0 || (byInstance > 0 && !failed) {
				bad("trash_registered", "%s/%d: trash holds %s, yet the ledger names it %d times and has %d entries for its instance", t.tenant, t.id, t.name, byName, byInstance)
			}
		}
	}
	for _, r := range recs {
		if r.Status == adminapi.StatusDeleted && !held[fmt.Sprintf("%s/%d", r.TenantName, r.ID)] {
			info["trash: purged"]++
		}
	}
	for id, rs := range s.restores {
		r := recs[id]
		if r.Status != adminapi.StatusCompleted {
			continue // deleted again since
		}
		tn := s.tenantOf(&r)
		db := s.ledgerOf(tn, id)
		if got := oidOf(tn.server, db); db == "" || got != rs.oid {
			bad("restored_other_database", "%s/%d: ledger %q with oid %q, restored oid %q", tn.name, id, db, got, rs.oid)
		}
		info["restored and Completed at the end"]++
	}
	for kind, list := range s.violations {
		for _, v := range list {
			bad(kind, "%s", v)
		}
	}
}

// dropTrash drops what trash holds of the soak once it ends: the test's
// databases must not outlive it (its prefix's cleanup knows their names,
// not their trash names).
func (s *soak) dropTrash() {
	for _, t := range s.trash() {
		for _, db := range []string{t.name, provisioning.ScratchName(s.trashReservation(t))} {
			_, _ = t.server.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		}
		_, _ = t.server.Exec(context.Background(), `DELETE FROM instancemgr.reservations WHERE database_name = $1`, t.name)
	}
}
