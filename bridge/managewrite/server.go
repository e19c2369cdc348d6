package managewrite

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/internal/forwarded"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/internal/respond"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
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
// read exactly as they would without instancemgr in between. Redirects are
// not followed: a gateway that sends a bad token to its login page is
// refusing, and its 3xx goes back to the caller. A 200 is a yes only when
// it is the Admin API's answer for that resource (a JSON array for the
// collection, a JSON object with the request's "id" for one request):
// anything else that answers 200 in front of the Admin API (a login page,
// another request) has not authorized the call.
type Server struct {
	endpoints *Endpoints
	adminAPI  *url.URL
	client    *http.Client
	tenants   []string
	public    string // origin of every Location; "" for none
	proxies   forwarded.Proxies
	log       *slog.Logger
	audit     *audit.Logger
	// tenantRate and clientRate are limits.createsPerMinute and
	// createsPerMinutePerClient; nil for none.
	tenantRate, clientRate *limits.Rate
	refusals               *prometheus.CounterVec
	publisher              Publisher
}

// Publisher puts a request's job on the queue at once, as the bridge's
// next poll would (bridge.Bridge.Publish): the same job, under the same
// guard, so that the poll then finds it queued. It reads the request from
// EdFi_Admin, not from the call, and logs and counts a failure, which the
// next poll makes good.
type Publisher interface {
	Publish(ctx context.Context, tenant string, id int, op jobs.Operation)
}

// publishTimeout bounds a publish after the answer; past it the next poll
// publishes the job.
const publishTimeout = 10 * time.Second

// ServerOptions configure a Server.
type ServerOptions struct {
	// AdminAPI is the Admin API's base URL, which authorizes each call.
	AdminAPI string
	// Client makes the authorizing calls (nil: a client of its own); the
	// server uses a copy that follows no redirects.
	Client *http.Client
	// Tenants are the tenant names served. A request without a Tenant
	// header is for the only one; with several it is refused, as the
	// Admin API with multi-tenancy refuses a write without the header.
	Tenants []string
	// PublicBaseURL is where callers reach the Admin API (scheme, host,
	// path base), from which a Location is absolute. Without it the origin
	// comes from X-Forwarded-Proto and X-Forwarded-Host when the request
	// came from one of TrustedProxies, else a Location is a path: the
	// caller's Host and this listener's scheme are never used, since
	// behind a proxy they name the internal host.
	PublicBaseURL  string
	TrustedProxies forwarded.Proxies
	Log            *slog.Logger
	// Audit hears every call, as answered (nil: none).
	Audit *audit.Logger
	// TenantRate and ClientRate bound the creates a minute of a tenant and
	// of an Admin API client (nil: none); past them a POST is 429 with
	// Retry-After.
	TenantRate, ClientRate *limits.Rate
	// Refusals counts the calls refused by a limit, by limit (nil: none).
	Refusals *prometheus.CounterVec
	// Publisher publishes a written request's job once its row has
	// committed (nil: none; the bridge's next poll publishes it).
	Publisher Publisher
}

// maxRelayed bounds an Admin API answer relayed to the caller.
const maxRelayed = 64 << 10

// NewServer returns the write routes over endpoints.
func NewServer(endpoints *Endpoints, o ServerOptions) (*Server, error) {
	u, err := url.Parse(strings.TrimSuffix(o.AdminAPI, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the Admin API's URL %q is not an http(s) URL", o.AdminAPI)
	}
	public, err := forwarded.ParseBaseURL(o.PublicBaseURL)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{endpoints: endpoints, adminAPI: u, client: NoRedirects(o.Client), tenants: o.Tenants,
		public: public, proxies: o.TrustedProxies, log: o.Log, audit: o.Audit,
		tenantRate: o.TenantRate, clientRate: o.ClientRate, refusals: o.Refusals, publisher: o.Publisher}, nil
}

// NewRefusals is the counter of calls refused by a limit:
// instancemgr_manage_refusals_total{limit}, limit being instances,
// tenant_rate or client_rate.
func NewRefusals(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "instancemgr_manage_refusals_total",
		Help: "Manage write calls refused by a limit (limits.instancesPerTenant, createsPerMinute, createsPerMinutePerClient).",
	}, []string{"limit"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// recorder keeps the status a handler answered, for the audit line.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

// origin is the scheme, host and path base of a Location for r: the
// public base URL, else what a trusted proxy forwarded, else none.
func (s *Server) origin(r *http.Request) string {
	if s.public != "" {
		return s.public
	}
	if scheme, host, ok := s.proxies.Origin(r); ok {
		return scheme + "://" + host
	}
	return ""
}

// NoRedirects is a copy of c (nil: a zero client) that returns a redirect
// as the answer instead of following it; c itself is left as it is.
func NoRedirects(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
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

// ServeHTTP answers the write routes, and writes one audit line for each
// call as answered: who (the client its token names, once the Admin API
// accepted the token), from where, what, and the status.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w}
	call := servedCall{Write: audit.Write{Source: s.proxies.ClientAddr(r), Method: r.Method, Route: r.URL.Path, Tenant: strings.TrimSpace(r.Header.Get("Tenant"))}}
	s.serve(rec, r, &call)
	call.Status = cmp.Or(rec.status, http.StatusOK)
	s.audit.Write(r.Context(), call.Write)
	written := call.served && call.Refusal == "" && call.InstanceID > 0
	if !written && (!call.served || call.ClientID == "") {
		return
	}
	// The answer goes first: the caller waits neither for the job nor for
	// the audit row.
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if written && s.publisher != nil {
		s.publish(r, call)
	}
	if call.ClientID != "" {
		s.endpoints.auditRow(r.Context(), call.Write)
	}
}

// publish publishes the job of the request call wrote, whose row has
// committed, whether or not the caller is still there.
func (s *Server) publish(r *http.Request, call servedCall) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), publishTimeout)
	defer cancel()
	op := jobs.OpCreate
	if r.Method == http.MethodDelete {
		op = jobs.OpDelete
	}
	s.publisher.Publish(ctx, call.Tenant, call.InstanceID, op)
}

// servedCall is a call's audit line, and whether its tenant is one this
// server writes (whose EdFi_Admin gets the Admin API's audit row).
type servedCall struct {
	audit.Write
	served bool
}

// serve answers the write routes; anything else is 404 or 405, since the
// proxy sends nothing else here. It fills in call what it learns.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, call *servedCall) {
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
	header := strings.TrimSpace(r.Header.Get("Tenant"))
	if header == "" && len(s.tenants) != 1 {
		// The Admin API's TenantResolverMiddleware answers this before
		// authentication, and lets the authorizing GET through without
		// the header: instancemgr must answer it itself, and first.
		rt.Validation(w, map[string][]string{"Tenant": {"Tenant header is missing (adminconsole)"}})
		call.Refusal = "no Tenant header, and several tenants are served"
		return
	}
	tenant, ok := s.tenant(header)
	asked := tenant
	if !ok {
		asked = header // the Admin API answers for a tenant it knows and instancemgr does not
	}
	if !s.authorized(w, r, rt, id, asked) {
		call.Refusal = "not authorized by the Admin API"
		return
	}
	// The Admin API accepted the token: the client it names is who asked.
	call.ClientID = audit.ClientID(r.Header.Get("Authorization"))
	if !ok {
		// The Admin API knows the tenant, instancemgr's configuration
		// does not: a deployment error, not the caller's.
		call.Refusal = "a tenant instancemgr is not configured for"
		s.log.Error("a manage request names a tenant instancemgr is not configured for", "tenant", r.Header.Get("Tenant"))
		respond.WriteProblem(w, http.StatusServiceUnavailable, "Service Unavailable",
			fmt.Sprintf("instancemgr has no configuration entry for tenant %q.", r.Header.Get("Tenant")))
		return
	}
	call.Tenant, call.served = tenant, true
	if id == 0 {
		if why := s.overRate(w, tenant, call.ClientID); why != "" {
			call.Refusal = why
			return
		}
		call.InstanceID, call.Name, call.Refusal = s.endpoints.Create(w, r, rt, tenant, s.origin(r))
		if call.InstanceID > 0 {
			call.RequestID = jobs.IDFor(provisioning.LineManage, jobs.OpCreate, tenant, call.InstanceID)
		}
		if strings.HasPrefix(call.Refusal, limitRefusal) {
			s.refused("instances")
		}
		return
	}
	call.InstanceID = id
	call.RequestID = jobs.IDFor(provisioning.LineManage, jobs.OpDelete, tenant, id)
	call.Refusal = s.endpoints.Delete(w, r, rt, tenant, id)
}

// overRate answers 429 with Retry-After, Ed-Fi's answer to a client over
// its rate, when the tenant or the client has started its creates of the
// minute, and says why; "" when neither has.
func (s *Server) overRate(w http.ResponseWriter, tenant, client string) string {
	for _, l := range []struct {
		rate        *limits.Rate
		key, metric string
		setting     string
	}{
		// The client's first: a client over its own rate must not use up
		// its tenant's, which every other client of the tenant shares.
		{s.clientRate, "client:" + client, "client_rate", "limits.createsPerMinutePerClient"},
		{s.tenantRate, "tenant:" + tenant, "tenant_rate", "limits.createsPerMinute"},
	} {
		if l.metric == "client_rate" && client == "" {
			continue
		}
		if ok, after := l.rate.Take(l.key); !ok {
			s.refused(l.metric)
			secs := int(after / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			why := fmt.Sprintf("Too many instances requested: %s allows no more this minute; try again in %d s.", l.setting, max(secs, 1))
			respond.WriteProblem(w, http.StatusTooManyRequests, "Too Many Requests", why)
			return why
		}
	}
	return ""
}

func (s *Server) refused(limit string) {
	if s.refusals != nil {
		s.refusals.WithLabelValues(limit).Inc()
	}
}

// tenant maps the Tenant header to a configured tenant; no header is
// the only tenant's.
func (s *Server) tenant(header string) (string, bool) {
	if header == "" && len(s.tenants) == 1 {
		return s.tenants[0], true
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
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, rt Route, id int, tenant string) bool {
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
	if v := r.Header.Get("Authorization"); v != "" {
		req.Header.Set("Authorization", v)
	}
	// The tenant the call will write, also when the caller named none and
	// it goes to the only one configured: the yes must be for that tenant.
	if tenant != "" {
		req.Header.Set("Tenant", tenant)
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
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRelayed))
	if resp.StatusCode/100 == 2 {
		if why := notTheResource(resp.StatusCode, resp.Header.Get("Content-Type"), body, id); why != "" {
			// Something in front of the Admin API said yes without being
			// its yes: a gateway's login page, a cache, a misrouted path.
			// The caller is not authorized, and the fault is upstream, so
			// 502 (relaying a 204 would read as a delete done).
			s.log.Error("the Admin API's 200 to an authorizing call is not the resource; the call is refused",
				"method", r.Method, "route", rt.Noun(), "url", u.Redacted(), "content_type", resp.Header.Get("Content-Type"), "why", why)
			respond.WriteProblem(w, http.StatusBadGateway, "Bad Gateway",
				"The Admin API's answer to the authorizing call was not the resource it was asked for ("+why+"), so the call is refused.")
			return false
		}
		return true
	}
	for _, h := range []string{"Content-Type", "WWW-Authenticate", "Location"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	s.log.Info("a manage call was refused by the Admin API", "method", r.Method, "route", rt.Noun(), "status", resp.StatusCode)
	return false
}

// notTheResource says why a success is not the Admin API's answer to the
// authorizing GET ("" when it is): a 200 with a JSON array for the
// collection (id 0), a JSON object whose "id" (System.Text.Json's camel
// case) is id for one request.
func notTheResource(status int, contentType string, body []byte, id int) string {
	if status != http.StatusOK {
		return fmt.Sprintf("status %d, not 200", status)
	}
	if !respond.IsJSON(contentType) {
		return fmt.Sprintf("content type %q, not JSON", contentType)
	}
	if id == 0 {
		var list []json.RawMessage
		if err := json.Unmarshal(body, &list); err != nil || list == nil {
			return "not a JSON array"
		}
		return ""
	}
	var one map[string]json.RawMessage
	if err := json.Unmarshal(body, &one); err != nil || one == nil {
		return "not a JSON object"
	}
	raw, ok := one["id"]
	if !ok {
		return "it has no id"
	}
	var got int
	if err := json.Unmarshal(raw, &got); err != nil || got != id {
		return fmt.Sprintf("its id is %s, not %d", truncate(string(raw), 20), id)
	}
	return ""
}

// truncate is managerows.CutTo, marked when it cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return managerows.CutTo(s, n) + "…"
}
