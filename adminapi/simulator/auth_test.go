package simulator_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
)

func TestRegister(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	form := func(id, secret, display string) url.Values {
		v := url.Values{}
		for k, val := range map[string]string{"ClientId": id, "ClientSecret": secret, "DisplayName": display} {
			if val != "" {
				v.Set(k, val)
			}
		}
		return v
	}
	tests := []struct {
		name      string
		body      any
		opts      []option
		want      int
		wantError string
	}{
		{"new client", form("console", "S3cret-value", "Admin Console"), nil, 200, ""},
		{"no bearer token needed", form("other", "S3cret-value", "Other"), []option{noAuth()}, 200, ""},
		{"duplicate ClientId", form("console", "another", "Again"), nil, 400, "invalid_request"},
		{"duplicate of the simulatortest client", form(e.srv.ClientID, "x", "x"), nil, 400, "invalid_request"},
		{"missing ClientId", form("", "s", "d"), nil, 400, "invalid_request"},
		{"missing ClientSecret", form("c1", "", "d"), nil, 400, "invalid_request"},
		{"missing DisplayName", form("c2", "s", ""), nil, 400, "invalid_request"},
		{"JSON instead of a form", `{"ClientId":"c3","ClientSecret":"s","DisplayName":"d"}`, nil, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.expect(t, tt.want, "POST", "/connect/register", tt.body, tt.opts...)
			if tt.wantError == "" {
				return
			}
			var oe adminapi.OAuthError
			decode(t, r, &oe)
			if oe.Error != tt.wantError || oe.ErrorDescription == "" {
				t.Fatalf("error body %s, want error %q with a description", r.body, tt.wantError)
			}
		})
	}

	// The registered client gets tokens.
	e.expect(t, 200, "POST", "/connect/token", url.Values{
		"client_id": {"console"}, "client_secret": {"S3cret-value"},
		"grant_type": {"client_credentials"}, "scope": {"edfi_admin_api/full_access"},
	})
}

func TestRegisterClient(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	if err := sim.RegisterClient("worker", "s3cr3t-first"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ id, secret string }{{"worker", "s3cr3t-second"}, {"", "s3cr3t-third"}, {"c", ""}} {
		err := sim.RegisterClient(tt.id, tt.secret)
		if err == nil {
			t.Errorf("RegisterClient(%q, ...) succeeded, want an error", tt.id)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error %q shows the secret", err)
		}
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t, simulator.Options{TokenTTL: 90 * time.Second})
	good := func() url.Values {
		return url.Values{
			"client_id": {e.srv.ClientID}, "client_secret": {e.srv.ClientSecret},
			"grant_type": {"client_credentials"}, "scope": {"edfi_admin_api/full_access"},
		}
	}
	with := func(k, v string) url.Values {
		f := good()
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	basic := func(id, secret string) option {
		return authorization("Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
	noCreds := func() url.Values { f := good(); f.Del("client_id"); f.Del("client_secret"); return f }

	tests := []struct {
		name      string
		method    string
		body      any
		opts      []option
		want      int
		wantError string
	}{
		{"client credentials", "POST", good(), []option{noAuth()}, 200, ""},
		{"client credentials in Basic auth", "POST", noCreds(), []option{basic(e.srv.ClientID, e.srv.ClientSecret)}, 200, ""},
		{"credentials in both places", "POST", good(), []option{basic(e.srv.ClientID, e.srv.ClientSecret)}, 400, "invalid_request"},
		{"unknown client", "POST", with("client_id", "nobody"), nil, 401, "invalid_client"},
		{"wrong secret", "POST", with("client_secret", "wrong"), nil, 401, "invalid_client"},
		{"wrong secret in Basic auth", "POST", noCreds(), []option{basic(e.srv.ClientID, "wrong")}, 401, "invalid_client"},
		{"missing client_id", "POST", with("client_id", ""), nil, 400, "invalid_request"},
		{"password grant", "POST", with("grant_type", "password"), nil, 400, "unsupported_grant_type"},
		{"missing grant_type", "POST", with("grant_type", ""), nil, 400, "invalid_request"},
		{"other scope", "POST", with("scope", "edfi_admin_api/tenant_access"), nil, 400, "invalid_scope"},
		{"extra scope", "POST", with("scope", "edfi_admin_api/full_access openid"), nil, 400, "invalid_scope"},
		{"missing scope", "POST", with("scope", ""), nil, 400, "invalid_scope"},
		{"JSON body", "POST", `{"client_id":"x"}`, nil, 400, "invalid_request"},
		{"GET", "GET", nil, nil, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.expect(t, tt.want, tt.method, "/connect/token", tt.body, tt.opts...)
			switch {
			case tt.want == 200:
				var tok adminapi.TokenResponse
				decode(t, r, &tok)
				if tok.AccessToken == "" || tok.TokenType != "bearer" || tok.ExpiresIn != 90 {
					t.Fatalf("token response %s", r.body)
				}
				if cc := r.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
				e.expect(t, 200, "GET", "/adminconsole/tenants", nil, bearer(tok.AccessToken))
			case tt.wantError != "":
				var oe adminapi.OAuthError
				decode(t, r, &oe)
				if oe.Error != tt.wantError {
					t.Fatalf("error %q (%s), want %q", oe.Error, r.body, tt.wantError)
				}
				if strings.Contains(string(r.body), e.srv.ClientSecret) {
					t.Fatalf("the answer shows the secret: %s", r.body)
				}
			}
		})
	}
}

// Every endpoint but register and token needs a live bearer token.
func TestBearerToken(t *testing.T) {
	clk := newClock()
	e := newEnv(t, simulator.Options{Now: clk.Now, TokenTTL: time.Minute})
	id := e.create(t)
	endpoints := []struct{ method, path string }{
		{"GET", "/adminconsole/tenants"},
		{"GET", "/adminconsole/odsInstances"},
		{"POST", "/adminconsole/odsInstances"},
		{"GET", "/adminconsole/odsInstances/1"},
		{"PUT", "/adminconsole/odsInstances/1"},
		{"DELETE", "/adminconsole/odsInstances/1"},
		{"GET", "/v2/odsInstances"},
		{"GET", "/adminconsole/instances"},
		{"GET", "/adminconsole/instances/1"},
		{"POST", "/adminconsole/instances/1/completed"},
		{"POST", "/adminconsole/instances/1/renamed"},
		{"POST", "/adminconsole/instances/1/renameFailed"},
		{"POST", "/adminconsole/instances/1/deleted"},
		{"POST", "/adminconsole/instances/1/deleteFailed"},
	}
	// A token issued now expires with the clock; e.token was issued at the
	// start too, so it expires with it.
	expiring := e.srv.Token(t)
	variants := []struct {
		name   string
		opt    option
		before func()
		after  func()
	}{
		{"missing", noAuth(), nil, nil},
		{"Basic scheme", authorization("Basic " + base64.StdEncoding.EncodeToString([]byte("a:b"))), nil, nil},
		{"Bearer without token", authorization("Bearer "), nil, nil},
		{"token with a space", authorization("Bearer abc def"), nil, nil},
		{"unknown token", bearer("not-a-token"), nil, nil},
		{"expired token", bearer(expiring), func() { clk.Add(time.Minute) }, func() { clk.Add(-time.Minute) }},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			if v.before != nil {
				v.before()
				t.Cleanup(v.after)
			}
			for _, ep := range endpoints {
				r := e.do(t, ep.method, ep.path, conn(pgConn), v.opt)
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s %s: got %s, want 401", ep.method, ep.path, r)
				}
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s: WWW-Authenticate %q", ep.method, ep.path, r.header.Get("WWW-Authenticate"))
				}
			}
		})
	}

	// One second before expiry the token still works; nothing changed above.
	clk.Add(time.Minute - time.Second)
	e.expect(t, 200, "GET", "/adminconsole/instances/1", nil, bearer(expiring))
	e.expect(t, 200, "GET", "/adminconsole/instances/1", nil, authorization("bearer "+expiring))
	e.wantStatus(t, id, adminapi.StatusPending)
	clk.Add(time.Second)
	e.expect(t, 401, "GET", "/adminconsole/instances/1", nil, bearer(expiring))
	// A new token works again.
	e.expect(t, 200, "GET", "/adminconsole/instances/1", nil, bearer(e.srv.Token(t)))
}
