package reconcile

import (
	"fmt"
	"strings"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// The suggested SQL, in the tenant's engine's spelling. Every value is a
// quoted literal; none is run by reconcile.

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (c *checker) sqlServer() bool { return c.t.Engine == "sqlserver" }

func (c *checker) ident(name string) string {
	if c.sqlServer() {
		return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func (c *checker) reservationWhere(res provisioning.Listed) string {
	where := fmt.Sprintf("database_name = %s AND tenant = %s AND instance_id = %d", sqlString(res.Database), sqlString(res.Owner.Tenant), res.Owner.InstanceID)
	if res.Owner.Line != provisioning.LineAdminConsole { // adminconsole's may be NULL: made before lines
		where += " AND line = " + sqlString(res.Owner.Line.String())
	}
	return where
}

// ledgerWhere selects one ledger entry.
func ledgerWhere(rec provisioning.Record) string {
	return fmt.Sprintf("tenant = %s AND instance_id = %d AND line = %s", sqlString(rec.Tenant), rec.InstanceID, sqlString(rec.Line.String()))
}

// sqlRelease removes a reservation (in the server's maintenance database).
func (c *checker) sqlRelease(res provisioning.Listed) string {
	return "DELETE FROM instancemgr.reservations WHERE " + c.reservationWhere(res) + " (in the server's maintenance database)"
}

// sqlMarkMade takes a database over for the reservation's request.
func (c *checker) sqlMarkMade(res provisioning.Listed) string {
	return "UPDATE instancemgr.reservations SET state = 'made' WHERE " + c.reservationWhere(res) + " (in the server's maintenance database)"
}

// sqlRecordIdentity clears a made reservation's identity: the next job
// takes the database under the name for the system's, as a reservation
// of an earlier version is taken, and records its identity.
func (c *checker) sqlRecordIdentity(res provisioning.Listed) string {
	return "UPDATE instancemgr.reservations SET database_identity = NULL WHERE " + c.reservationWhere(res) + " (in the server's maintenance database; the next job records the database now under the name)"
}

// sqlDrop drops a database and then its reservation.
func (c *checker) sqlDrop(res provisioning.Listed) string {
	drop := "DROP DATABASE " + c.ident(res.Database) + " WITH (FORCE)"
	if c.sqlServer() {
		drop = "ALTER DATABASE " + c.ident(res.Database) + " SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE " + c.ident(res.Database)
	}
	return drop + "; then " + c.sqlRelease(res)
}

// sqlUnregister removes a ledger entry and its dbo rows (in EdFi_Admin).
func (c *checker) sqlUnregister(rec provisioning.Record) string {
	ledger := "DELETE FROM instancemgr.instances WHERE " + ledgerWhere(rec)
	if c.t.AdminAPIRegisters || rec.OdsInstanceID == 0 {
		return ledger + " (in EdFi_Admin)"
	}
	id := rec.OdsInstanceID
	if c.sqlServer() {
		return fmt.Sprintf("DELETE FROM dbo.OdsInstanceContexts WHERE OdsInstance_OdsInstanceId = %d; DELETE FROM dbo.OdsInstanceDerivatives WHERE OdsInstance_OdsInstanceId = %d; DELETE FROM dbo.ApiClientOdsInstances WHERE OdsInstance_OdsInstanceId = %d; DELETE FROM dbo.OdsInstances WHERE OdsInstanceId = %d; %s (in EdFi_Admin, one transaction)", id, id, id, id, ledger)
	}
	return fmt.Sprintf("DELETE FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = %d; DELETE FROM dbo.odsinstancederivatives WHERE odsinstance_odsinstanceid = %d; DELETE FROM dbo.apiclientodsinstances WHERE odsinstance_odsinstanceid = %d; DELETE FROM dbo.odsinstances WHERE odsinstanceid = %d; %s (in EdFi_Admin, one transaction)", id, id, id, id, ledger)
}

// sqlPointLedger points a ledger entry at a re-inserted row.
func (c *checker) sqlPointLedger(rec provisioning.Record) string {
	return "UPDATE instancemgr.instances SET ods_instance_id = <new row id> WHERE " + ledgerWhere(rec) + " (in EdFi_Admin)"
}

// sqlInsertLedger restores a lost ledger entry.
func (c *checker) sqlInsertLedger(i adminapi.WorkerInstance) string {
	ods := "NULL" // the Admin API's row
	if !c.t.AdminAPIRegisters {
		ods = "<its dbo.odsinstances row id>"
	}
	return fmt.Sprintf("INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name, line) VALUES (%s, %d, %s, '<its database>', %s, %s) in EdFi_Admin, and reserve the database as made for it", sqlString(c.t.Name), i.ID, ods, sqlString(i.InstanceName), sqlString(c.t.Line.String()))
}
