package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// dev -adminapi-flavor manage creates and deletes instances end to end
// through the newest Admin API's v2 and v3 manage endpoints: each request
// ends Created with one dbo.odsinstances row, whose connection string is
// encrypted the way that Admin API encrypts it and names the request's own
// database copied from its template; a delete ends Deleted with the row
// and the database gone.
func TestDevManageFlavorCreatesAndDeletesThroughTheManageEndpoints(t *testing.T) {
	t.Parallel()
	pg, prefix, args := devWorld(t, "warn")
	dataDir := t.TempDir()
	for i, a := range args {
		if a == "-data-dir" {
			args[i+1] = dataDir
		}
	}
	args = append(args, "-adminapi-flavor", "manage", "-manage-templates", "Minimal="+prefix+"_min,Sample="+prefix+"_pop")
	simURL, _, _ := startDev(t, args)
	ctx := context.Background()
	names := map[string]string{ // request name -> the database Ed-Fi's rule gives it
		prefix + " One": "EdFi_Ods_" + prefix + "_One_Minimal",
		prefix + " Two": "EdFi_Ods_" + prefix + "_Two_Sample",
	}
	t.Cleanup(func() {
		for _, db := range names {
			_, _ = pg.Exec(context.Background(), `DROP DATABASE IF EXISTS "`+db+`" WITH (FORCE)`)
		}
	})
	token := manageToken(t, simURL)
	admin := testenv.Connect(t, prefix+"_admin")
	b, err := os.ReadFile(filepath.Join(dataDir, "encryption.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := odscrypt.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}

	one := manageCall(t, token, http.MethodPost, simURL+"/v2/odsInstances/manage", `{"name":"`+prefix+` One","databaseTemplate":"Minimal"}`, http.StatusAccepted)
	two := manageCall(t, token, http.MethodPost, simURL+"/v3/dataStores/manage", `{"name":"`+prefix+` Two","databaseTemplate":"Sample"}`, http.StatusAccepted)
	ids := map[string]string{prefix + " One": simURL + "/v2/odsInstances/manage/" + lastSegment(one), prefix + " Two": simURL + "/v3/dataStores/manage/" + lastSegment(two)}
	for name, u := range ids {
		var row struct {
			Status, DatabaseName string
			OdsInstanceID        *int `json:"odsInstanceId"`
			DataStoreID          *int `json:"dataStoreId"`
		}
		testenv.Eventually(t, time.Minute, name+" Created", func() bool {
			body := manageGet(t, token, u)
			return json.Unmarshal([]byte(body), &row) == nil && row.Status == "Created"
		})
		if row.DatabaseName != names[name] {
			t.Errorf("%s: databaseName %q, want %q", name, row.DatabaseName, names[name])
		}
		odsID := row.OdsInstanceID
		if odsID == nil {
			odsID = row.DataStoreID
		}
		var n int
		var stored, itype string
		if err := admin.QueryRow(ctx, `SELECT count(*) OVER (), connectionstring, coalesce(instancetype, '') FROM dbo.odsinstances WHERE name = $1`, name).Scan(&n, &stored, &itype); err != nil || n != 1 {
			t.Fatalf("%s: %d dbo.odsinstances rows, %v", name, n, err)
		}
		if strings.Count(stored, "|") != 2 {
			t.Errorf("%s: the connection string is not stored IV|ciphertext|HMAC: %.20q…", name, stored)
		}
		plain, err := key.Decrypt(stored)
		if err != nil || !strings.Contains(plain, names[name]) {
			t.Errorf("%s: the stored connection string does not decrypt to one naming %s: %v", name, names[name], err)
		}
		var registered int
		if err := admin.QueryRow(ctx, `SELECT odsinstanceid FROM dbo.odsinstances WHERE name = $1`, name).Scan(&registered); err != nil || odsID == nil || *odsID != registered {
			t.Errorf("%s: the request names row %v, the registration is row %d (%v)", name, odsID, registered, err)
		}
	}
	var template string
	if err := pg.QueryRow(ctx, `SELECT d.datname FROM pg_database d WHERE d.datname = $1`, names[prefix+" Two"]).Scan(&template); err != nil {
		t.Fatalf("the Sample request's database: %v", err)
	}

	for name, u := range ids {
		manageCall(t, token, http.MethodDelete, u, "", http.StatusNoContent)
		testenv.Eventually(t, time.Minute, name+" Deleted", func() bool {
			return strings.Contains(manageGet(t, token, u), `"status":"Deleted"`)
		})
		var exists bool
		if err := pg.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, names[name]).Scan(&exists); err != nil || exists {
			t.Errorf("%s: database %s still exists after Deleted (%v)", name, names[name], err)
		}
	}
	var rows int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM dbo.odsinstances`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("after the deletes: %d dbo.odsinstances rows, %v", rows, err)
	}
}

// manageToken registers a client and returns its bearer token.
func manageToken(t *testing.T, simURL string) string {
	t.Helper()
	resp, err := http.PostForm(simURL+"/connect/register", url.Values{"ClientId": {"me"}, "ClientSecret": {"s3cret-Value"}, "DisplayName": {"me"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.PostForm(simURL+"/connect/token", url.Values{"client_id": {"me"}, "client_secret": {"s3cret-Value"}, "grant_type": {"client_credentials"}, "scope": {"edfi_admin_api/full_access"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v", err)
	}
	return tok.AccessToken
}

// manageCall sends one request and returns its Location.
func manageCall(t *testing.T, token, method, u, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", method, u, resp.StatusCode, want)
	}
	return resp.Header.Get("Location")
}

func manageGet(t *testing.T, token, u string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	_, body := send(t, req)
	return body
}

func lastSegment(location string) string {
	return location[strings.LastIndex(location, "/")+1:]
}
