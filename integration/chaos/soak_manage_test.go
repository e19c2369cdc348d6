package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
)

// The soak's manage flavor: the Admin Console's calls go to the bridges'
// manage write routes (as a reverse proxy would send them), each
// authorized by the simulator in the Admin API's place, and the requests
// are the rows of adminapi.odsinstancemanages in each tenant's EdFi_Admin.

// manageClient gives up on a frozen bridge: an operation then tries the
// other one.
var manageClient = &http.Client{Timeout: 3 * time.Second}

// token is a fresh access token of the soak's client, or "" when the
// token endpoint refuses (a fault).
func (s *soak) token() string {
	resp, err := manageClient.PostForm(s.simURL+"/connect/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"worker"}, "client_secret": {s.secret}, "scope": {"edfi_admin_api/full_access"}})
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var tok adminapi.TokenResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tok) != nil {
		return ""
	}
	return tok.AccessToken
}

// manageCall sends one write call for tenant through the bridges, starting
// at a random one, and returns the first answer's status: 0 when no bridge
// answered, -1 when there was no token to send.
func (s *soak) manageCall(tn *soakTenant, method, path, body string) int {
	tok := s.token()
	if tok == "" {
		return -1
	}
	first := s.rng.IntN(len(s.manageURLs))
	for i := range s.manageURLs {
		base := s.manageURLs[(first+i)%len(s.manageURLs)]
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			s.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Tenant", tn.name)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := manageClient.Do(req)
		if err != nil {
			continue // killed or frozen: the other bridge
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	return 0
}

// outcome names a write call's answer for the operations table: "" for
// the one wanted.
func outcome(status, want int) string {
	switch status {
	case want:
		return ""
	case -1:
		return ", no token (token endpoint fault)"
	case 0:
		return ", no bridge answered"
	}
	return fmt.Sprintf(", refused %d", status)
}

// manageCreate asks for instance name of tn through the manage routes.
func (s *soak) manageCreate(tn *soakTenant, name string) string {
	return outcome(s.manageCall(tn, http.MethodPost, "/v2/odsInstances/manage", `{"name":"`+name+`","databaseTemplate":"Minimal"}`), http.StatusAccepted)
}

// manageDelete asks for request id of tn to be deleted.
func (s *soak) manageDelete(tn *soakTenant, id int) string {
	return outcome(s.manageCall(tn, http.MethodDelete, "/v3/dataStores/manage/"+strconv.Itoa(id), ""), http.StatusNoContent)
}

// records are the requests by id, in the /adminconsole/ words: the
// simulator's records, or with manage every tenant's manage rows (ids of
// tenants never meet: newSoak starts them apart).
func (s *soak) records() map[int]simulator.InstanceState {
	if !s.manage {
		return s.sys.records()
	}
	out := map[int]simulator.InstanceState{}
	for _, tn := range s.tenants {
		rows, err := tn.admin.Query(context.Background(), `SELECT id, name, status FROM adminapi.odsinstancemanages`)
		if err != nil {
			s.t.Fatalf("read the manage rows of %s: %v", tn.name, err)
		}
		for rows.Next() {
			var r simulator.InstanceState
			var status string
			if err := rows.Scan(&r.ID, &r.Name, &status); err != nil {
				s.t.Fatal(err)
			}
			r.TenantName, r.Status = tn.name, managerows.BridgeStatus(status)
			out[r.ID] = r
		}
		rows.Close()
	}
	return out
}

// setManageStatus sets a request's status by hand, as an operator who set
// a failed delete right would.
func (s *soak) setManageStatus(tn *soakTenant, id int, status string) {
	if _, err := tn.admin.Exec(context.Background(), `UPDATE adminapi.odsinstancemanages SET status = $2 WHERE id = $1`, id, status); err != nil {
		s.t.Fatal(err)
	}
}

// checkManageRow is the manage flavor's part of the check of a Created
// request: the row names the dbo.odsinstances row that registers its
// database, and the database.
func (s *soak) checkManageRow(tn *soakTenant, id int, database string, bad func(kind, format string, args ...any)) {
	var db string
	var odsID *int
	var rows int
	err := tn.admin.QueryRow(context.Background(), `SELECT coalesce(m.databasename, ''), m.odsinstanceid, (SELECT count(*) FROM dbo.odsinstances o WHERE o.odsinstanceid = m.odsinstanceid)
		FROM adminapi.odsinstancemanages m WHERE m.id = $1`, id).Scan(&db, &odsID, &rows)
	if err != nil || db != database || odsID == nil || rows != 1 {
		bad("manage_row_mismatch", "%s/%d: database %q, ods instance %v with %d rows (%v); want %q", tn.name, id, db, odsID, rows, err, database)
	}
}
