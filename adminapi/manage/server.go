package manage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/edfi-tools/instancemgr/adminapi/internal/respond"
)

// Server serves the manage write routes in production. A reverse proxy in
// front of the Admin API sends POST and DELETE of /v2/odsInstances/manage
// and /v3/dataStores/manage here and every other route, the GETs included,
// to the Admin API, which reads the same rows.
//
// Each call is authorized by the Admin API itself: the caller's
// Authorization and Tenant headers go with a GET of the same resource
// (the collection for POST, the request for DELETE), which the Admin API
// guards with the same policy as the write (AdminApiEndpointBuilder
// requires the default policy of every manage route) and answers 400 to
// when EnableDataStoreManagement is off. Anything but 200 is relayed to the
// caller as the Admin API gave it, so a missing token, a forbidden scope,
// an unknown tenant, a disabled feature or a request that is not there
// read exactly as they would without instancemgr in between.
type Server struct {
	endpoints *Endpoints
	adminAPI  *url.URL
	client    *http.Client
	tenants   []string
	fallback  string
	log       *slog.Logger
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// AdminAPI is the Admin API's base URL, which authorizes each call.
	AdminAPI string
	// Client makes the authorizing calls (nil: http.DefaultClient).
	Client *http.Client
	// Tenants are the tenant names served; a request without a Tenant
	// header is for Fallback.
	Tenants  []string
	Fallback string
	Log      *slog.Logger
}

// maxRelayed bounds an Admin API answer relayed to the caller.
const maxRelayed = 64 << 10

// NewServer returns the write routes over endpoints.
func NewServer(endpoints *Endpoints, o ServerOptions) (*Server, error) {
	u, err := url.Parse(strings.TrimSuffix(o.AdminAPI, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the Admin API's URL %q is not an http(s) URL", o.AdminAPI)
	}
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{endpoints: endpoints, adminAPI: u, client: o.Client, tenants: o.Tenants, fallback: o.Fallback, log: o.Log}, nil
}

// route is what a request path and method ask for: ok false when it is
// not one of the write routes.
func route(method, path string) (rt Route, id int, ok bool) {
	p := strings.TrimSuffix(strings.ToLower(path), "/")
	for _, rt := range []Route{{V3: false}, {V3: true}} {
		switch {
		case method == http.MethodPost && p == rt.Base():
			return rt, 0, true
		case method == http.MethodDelete && strings.HasPrefix(p, rt.Base()+"/"):
			n, err := strconv.Atoi(p[len(rt.Base())+1:])
			if err != nil || n <= 0 {
				return rt, 0, false
			}
			return rt, n, true
		}
	}
	return Route{}, 0, false
}

// ServeHTTP answers the write routes; anything else is 404 or 405, since
// the proxy sends nothing else here.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, id, ok := route(r.Method, r.URL.Path)
	if !ok {
		if _, _, post := route(http.MethodPost, r.URL.Path); post {
			w.Header().Set("Allow", http.MethodPost)
			respond.WriteProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "instancemgr serves only POST and DELETE of the manage routes; the Admin API serves the rest.")
			return
		}
		respond.WriteProblem(w, http.StatusNotFound, "Not Found", "instancemgr serves only POST and DELETE of the manage routes; the Admin API serves the rest.")
		return
	}
	tenant, ok := s.tenant(r.Header.Get("Tenant"))
	if !s.authorized(w, r, rt, id) {
		return
	}
	if !ok {
		// The Admin API knows the tenant, instancemgr's configuration
		// does not: a deployment error, not the caller's.
		s.log.Error("a manage request names a tenant instancemgr is not configured for", "tenant", r.Header.Get("Tenant"))
		respond.WriteProblem(w, http.StatusServiceUnavailable, "Service Unavailable",
			fmt.Sprintf("instancemgr has no configuration entry for tenant %q.", r.Header.Get("Tenant")))
		return
	}
	if id == 0 {
		s.endpoints.Create(w, r, rt, tenant)
		return
	}
	s.endpoints.Delete(w, r, rt, tenant, id)
}

// tenant maps the Tenant header to a configured tenant.
func (s *Server) tenant(header string) (string, bool) {
	header = strings.TrimSpace(header)
	if header == "" {
		return s.fallback, slices.Contains(s.tenants, s.fallback)
	}
	for _, t := range s.tenants {
		if strings.EqualFold(t, header) {
			return t, true
		}
	}
	return "", false
}

// authorized asks the Admin API whether the caller may read the resource
// the call writes, and relays its answer when it is not 200.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, rt Route, id int) bool {
	path := "/v2/odsInstances/manage"
	if rt.V3 {
		path = "/v3/dataStores/manage"
	}
	u := *s.adminAPI
	u.Path += path
	if id > 0 {
		u.Path += "/" + strconv.Itoa(id)
	} else {
		u.RawQuery = "offset=0&limit=1"
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		s.log.Error("build the authorizing request", "err", err)
		respond.WriteProblem(w, http.StatusInternalServerError, "Internal Server Error", "The call could not be authorized.")
		return false
	}
	for _, h := range []string{"Authorization", "Tenant"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The URL names the Admin API's host and path only; the token is
		// in a header and never logged.
		s.log.Error("the Admin API could not be reached to authorize a manage call", "url", u.Redacted(), "err", errors.Unwrap(err))
		respond.WriteProblem(w, http.StatusBadGateway, "Bad Gateway", "The Admin API could not be reached to authorize this call.")
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRelayed))
		return true
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRelayed))
	for _, h := range []string{"Content-Type", "WWW-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	s.log.Info("a manage call was refused by the Admin API", "method", r.Method, "route", rt.Noun(), "status", resp.StatusCode)
	return false
}
