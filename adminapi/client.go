package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
)

// Defaults for the zero values of Config.
const (
	DefaultScope          = "edfi_admin_api/full_access"
	DefaultTimeout        = 10 * time.Second
	DefaultMaxAttempts    = 4
	DefaultRetryBaseDelay = 200 * time.Millisecond
	DefaultRetryMaxDelay  = 5 * time.Second
)

// TokenPath is the Admin API's own token endpoint below its base URL,
// where TokenURL points unless a separate identity provider (Keycloak)
// issues the tokens.
const TokenPath = "/connect/token"

const (
	// maxResponseBody bounds what a successful answer may hold.
	maxResponseBody = 32 << 20
	// maxErrorBody bounds what is read of a failed answer.
	maxErrorBody = 64 << 10
	// maxExcerpt is how much of a failed answer's body an error keeps.
	maxExcerpt = 300
)

// Config configures a Client. Zero values take the defaults above.
type Config struct {
	BaseURL      string // e.g. http://127.0.0.1:8089, with or without a trailing slash or path prefix
	TokenURL     string // the token endpoint: Admin API's /connect/token or Keycloak's
	ClientID     string
	ClientSecret string
	Scope        string // default DefaultScope

	Timeout time.Duration // per HTTP attempt; default DefaultTimeout
	// MaxAttempts is the number of attempts per call, the first included;
	// 1 means no retry. The one renewal of a rejected token is not counted.
	MaxAttempts    int
	RetryBaseDelay time.Duration // first backoff; default DefaultRetryBaseDelay
	RetryMaxDelay  time.Duration // cap of every backoff; default DefaultRetryMaxDelay

	HTTPClient *http.Client // optional; its Timeout, if any, applies on top of Timeout
	Logger     *slog.Logger // optional; default discards
	// Observe, if set, hears every exchange with the Admin API (the token
	// endpoint aside): its endpoint (method and path, ids as {id}), the
	// answer's class (2xx, 4xx, 5xx...; "network" when none came) and how
	// long it took. Metrics use it; every value is from a bounded set.
	Observe func(endpoint, class string, d time.Duration)
}

// Client calls the Admin API's worker and console endpoints. It is safe for
// concurrent use; all calls share one cached access token.
type Client struct {
	base         *url.URL
	tokenURL     string
	tokenURLSafe string // tokenURL for messages: no query, no user info
	clientID     string
	clientSecret string
	scope        string
	timeout      time.Duration
	maxAttempts  int
	baseDelay    time.Duration
	maxDelay     time.Duration
	hc           *http.Client
	log          *slog.Logger
	observe      func(endpoint, class string, d time.Duration)

	// now is the clock token lifetimes are measured with; tests replace it.
	now func() time.Time
	tok tokenCache
}

// New validates cfg, reporting every problem at once, and returns a Client.
// It does not contact the server.
func New(cfg Config) (*Client, error) {
	var problems []error
	base, err := absoluteHTTPURL("BaseURL", cfg.BaseURL)
	if err != nil {
		problems = append(problems, err)
	}
	tokenURL, err := absoluteHTTPURL("TokenURL", cfg.TokenURL)
	if err != nil {
		problems = append(problems, err)
	}
	if cfg.ClientID == "" {
		problems = append(problems, errors.New("ClientID is required"))
	}
	if cfg.ClientSecret == "" {
		problems = append(problems, errors.New("ClientSecret is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Timeout", cfg.Timeout}, {"RetryBaseDelay", cfg.RetryBaseDelay}, {"RetryMaxDelay", cfg.RetryMaxDelay}} {
		if d.v < 0 {
			problems = append(problems, fmt.Errorf("%s is %s, must not be negative", d.name, d.v))
		}
	}
	if cfg.MaxAttempts < 0 {
		problems = append(problems, fmt.Errorf("MaxAttempts is %d, must not be negative", cfg.MaxAttempts))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("admin api client config: %w", errors.Join(problems...))
	}

	c := &Client{
		base:         base,
		tokenURL:     cfg.TokenURL,
		tokenURLSafe: safeURL(tokenURL),
		clientID:     cfg.ClientID,
		clientSecret: cfg.ClientSecret,
		scope:        orDefault(cfg.Scope, DefaultScope),
		timeout:      orDefault(cfg.Timeout, DefaultTimeout),
		maxAttempts:  orDefault(cfg.MaxAttempts, DefaultMaxAttempts),
		baseDelay:    orDefault(cfg.RetryBaseDelay, DefaultRetryBaseDelay),
		maxDelay:     orDefault(cfg.RetryMaxDelay, DefaultRetryMaxDelay),
		hc:           cfg.HTTPClient,
		log:          cfg.Logger,
		observe:      cfg.Observe,
		now:          time.Now,
		tok:          tokenCache{fetching: make(chan struct{}, 1)},
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: defaultTransport()}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	// A first backoff above the cap raises the cap rather than being cut.
	c.maxDelay = max(c.maxDelay, c.baseDelay)
	return c, nil
}

// MaxIdleConns is how many idle connections to the Admin API a Client
// keeps for reuse (unless Config.HTTPClient is given): as many as the
// bridge polls tenants at once, or a consumer replica runs jobs at once
// (each job calls the Admin API). net/http keeps two idle connections per
// host by default, so parallel calls would mostly open, and over TLS
// handshake, a connection of their own: the messaging benchmark saw 994
// connections for 10,000 calls at concurrency 4.
const MaxIdleConns = 256

// defaultTransport is http.DefaultTransport's configuration (proxy from
// the environment, timeouts, HTTP/2) keeping that many idle connections,
// to the Admin API and to the token endpoint.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2 * MaxIdleConns
	t.MaxIdleConnsPerHost = MaxIdleConns
	return t
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func absoluteHTTPURL(field, s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is required", field)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s %q is not an absolute http or https URL", field, safeURL(u))
	}
	return u, nil
}

// safeURL is u for messages: without user info, query or fragment.
func safeURL(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.Fragment, v.RawFragment = nil, "", "", ""
	return v.String()
}

// ---- worker endpoints ----

// Tenants lists the tenants (GET /adminconsole/tenants).
func (c *Client) Tenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	err := c.call(ctx, request{
		what: "list tenants", method: http.MethodGet, path: "/adminconsole/tenants", out: &out,
	})
	return out, err
}

// Instances lists the worker's view of instance requests
// (GET /adminconsole/instances), filtered by status and tenant when they are
// not empty. A non-empty tenant is also sent as the Tenant header.
func (c *Client) Instances(ctx context.Context, tenant, status string) ([]WorkerInstance, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if tenant != "" {
		q.Set("tenantName", tenant)
	}
	what := "list instances" + inTenant(tenant)
	if status != "" {
		what += fmt.Sprintf(" with status %q", status)
	}
	var out []WorkerInstance
	err := c.call(ctx, request{
		what: what, method: http.MethodGet, path: "/adminconsole/instances", query: q, tenant: tenant, out: &out,
	})
	return out, err
}

// Instance gets one instance request (GET /adminconsole/instances/{id}).
func (c *Client) Instance(ctx context.Context, tenant string, id int) (WorkerInstance, error) {
	return getOne[WorkerInstance](ctx, c, "get instance", "/adminconsole/instances/%d", tenant, id)
}

// OdsInstance gets the console's view of an instance request, with its type,
// contexts and derivatives (GET /adminconsole/odsInstances/{id}).
func (c *Client) OdsInstance(ctx context.Context, tenant string, id int) (OdsInstance, error) {
	return getOne[OdsInstance](ctx, c, "get ods instance", "/adminconsole/odsInstances/%d", tenant, id)
}

// getOne GETs the resource at pathFormat with id, in tenant.
func getOne[T any](ctx context.Context, c *Client, what, pathFormat, tenant string, id int) (T, error) {
	var out T
	err := c.call(ctx, request{
		what:   fmt.Sprintf("%s %d%s", what, id, inTenant(tenant)),
		method: http.MethodGet, path: fmt.Sprintf(pathFormat, id), tenant: tenant, out: &out,
	})
	return out, err
}

// Completed marks a created instance completed
// (POST /adminconsole/instances/{id}/completed).
func (c *Client) Completed(ctx context.Context, tenant string, id int, connectionString string) error {
	return c.markWithConnectionString(ctx, tenant, id, "completed", connectionString)
}

// Renamed marks a renamed instance completed again
// (POST /adminconsole/instances/{id}/renamed).
func (c *Client) Renamed(ctx context.Context, tenant string, id int, connectionString string) error {
	return c.markWithConnectionString(ctx, tenant, id, "renamed", connectionString)
}

// RenameFailed marks a rename failed (POST /adminconsole/instances/{id}/renameFailed).
func (c *Client) RenameFailed(ctx context.Context, tenant string, id int) error {
	return c.mark(ctx, tenant, id, "renameFailed")
}

// Deleted marks an instance deleted (POST /adminconsole/instances/{id}/deleted).
func (c *Client) Deleted(ctx context.Context, tenant string, id int) error {
	return c.mark(ctx, tenant, id, "deleted")
}

// DeleteFailed marks a delete failed (POST /adminconsole/instances/{id}/deleteFailed).
func (c *Client) DeleteFailed(ctx context.Context, tenant string, id int) error {
	return c.mark(ctx, tenant, id, "deleteFailed")
}

func (c *Client) mark(ctx context.Context, tenant string, id int, action string) error {
	return c.call(ctx, request{
		what:   fmt.Sprintf("mark instance %d %s%s", id, action, inTenant(tenant)),
		method: http.MethodPost, path: fmt.Sprintf("/adminconsole/instances/%d/%s", id, action), tenant: tenant,
	})
}

func (c *Client) markWithConnectionString(ctx context.Context, tenant string, id int, action, connectionString string) error {
	return c.call(ctx, request{
		what:   fmt.Sprintf("mark instance %d %s%s", id, action, inTenant(tenant)),
		method: http.MethodPost, path: fmt.Sprintf("/adminconsole/instances/%d/%s", id, action), tenant: tenant,
		body: ConnectionStringBody{ConnectionString: connectionString},
		// A validation answer may quote the connection string back.
		redact: []string{connectionString},
	})
}

// ---- console endpoints (dev mode and tests request work with these) ----

// CreateOdsInstance requests a new instance (POST /adminconsole/odsInstances)
// and returns it as the console now sees it. Like every call it is retried
// after a 5xx or a lost answer; a retry of a create that did land fails with
// 400, since names are unique per tenant.
func (c *Client) CreateOdsInstance(ctx context.Context, tenant string, req InstanceRequest) (OdsInstance, error) {
	var out OdsInstance
	err := c.call(ctx, request{
		what:   fmt.Sprintf("create ods instance %q%s", req.Name, inTenant(tenant)),
		method: http.MethodPost, path: "/adminconsole/odsInstances", tenant: tenant, body: req, out: &out,
	})
	return out, err
}

// UpdateOdsInstance changes an instance request (PUT /adminconsole/odsInstances/{id});
// a new name on a Completed instance requests a rename.
func (c *Client) UpdateOdsInstance(ctx context.Context, tenant string, id int, req InstanceRequest) error {
	return c.call(ctx, request{
		what:   fmt.Sprintf("update ods instance %d%s", id, inTenant(tenant)),
		method: http.MethodPut, path: fmt.Sprintf("/adminconsole/odsInstances/%d", id), tenant: tenant, body: req,
	})
}

// DeleteOdsInstance requests that an instance be deleted
// (DELETE /adminconsole/odsInstances/{id}).
func (c *Client) DeleteOdsInstance(ctx context.Context, tenant string, id int) error {
	return c.call(ctx, request{
		what:   fmt.Sprintf("delete ods instance %d%s", id, inTenant(tenant)),
		method: http.MethodDelete, path: fmt.Sprintf("/adminconsole/odsInstances/%d", id), tenant: tenant,
	})
}

// OdsInstances lists the console's view of instance requests
// (GET /adminconsole/odsInstances), filtered by status when it is not empty.
func (c *Client) OdsInstances(ctx context.Context, tenant, status string) ([]OdsInstance, error) {
	q := url.Values{}
	what := "list ods instances" + inTenant(tenant)
	if status != "" {
		q.Set("status", status)
		what += fmt.Sprintf(" with status %q", status)
	}
	var out []OdsInstance
	err := c.call(ctx, request{
		what: what, method: http.MethodGet, path: "/adminconsole/odsInstances", query: q, tenant: tenant, out: &out,
	})
	return out, err
}

func inTenant(tenant string) string {
	if tenant == "" {
		return ""
	}
	return fmt.Sprintf(" in tenant %q", tenant)
}

// ---- the call machinery ----

// request is one API call.
type request struct {
	what   string // what is being done, to start the call's error with
	method string
	path   string // below BaseURL
	query  url.Values
	tenant string // sent as the Tenant header when not empty
	body   any    // sent as JSON when not nil
	out    any    // a 2xx answer is decoded into it when not nil
	redact []string
}

// FailureReasons are every value FailureReason returns.
var FailureReasons = []string{"auth", "server", "network", "other"}

// FailureReason classes a failed call for metrics and alerts: "auth" (the
// credentials or the token were refused: the same until someone changes
// them), "server" (a 5xx), "network" (no answer) or "other".
func FailureReason(err error) string {
	var te *transportError
	switch {
	case errors.Is(err, ErrUnauthorized):
		return "auth"
	case errors.Is(err, ErrServer):
		return "server"
	case errors.As(err, &te):
		return "network"
	}
	return "other"
}

// transportError is a failure to get an answer at all: connection refused or
// reset, or no answer within the attempt's timeout.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// retryable is the one place that decides whether a failed attempt is tried
// again: lost answers and 5xx may heal; 4xx answers, answers that cannot be
// read and the caller's own cancellation will not.
func retryable(err error) bool {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr.Status >= 500
	}
	var tokErr *TokenError
	if errors.As(err, &tokErr) {
		return tokErr.Status >= 500
	}
	var te *transportError
	return errors.As(err, &te)
}

// transportError marks err, from an attempt run under actx, as retryable
// unless it is the caller's ctx that ended.
func (c *Client) transportError(ctx, actx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %s: %w", c.timeout, err)
	}
	return &transportError{err: err}
}

// call runs r, retrying with exponential backoff and jitter while retryable
// says so, up to c.maxAttempts attempts or until ctx ends. Its error starts
// with r.what; errors.As finds the last attempt's *Error or *TokenError.
func (c *Client) call(ctx context.Context, r request) error {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("%s: encode request: %w", r.what, err)
		}
	}
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.baseDelay),
		backoff.WithMaxInterval(c.maxDelay),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(0), // attempts, not time, bound the retries
	)
	refreshed := false
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, r, payload, &refreshed)
		if err == nil {
			return nil
		}
		if attempt > 1 {
			err = fmt.Errorf("attempt %d of %d: %w", attempt, c.maxAttempts, err)
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= c.maxAttempts {
			return fmt.Errorf("%s: %w", r.what, err)
		}
		// The jitter may take an interval past MaxInterval; the cap is a cap.
		wait := min(bo.NextBackOff(), c.maxDelay)
		c.logRetry(r, attempt, wait, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: gave up after attempt %d: %w; last error: %w", r.what, attempt, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// attempt sends r once with a cached or fresh token. A 401 drops the token
// and sends r again with a new one, once per call: a token can expire or be
// revoked early, but a second 401 means the client is not allowed.
func (c *Client) attempt(ctx context.Context, r request, payload []byte, refreshed *bool) error {
	tok, err := c.token(ctx)
	if err != nil {
		return err
	}
	err = c.send(ctx, r, payload, tok)
	var apiErr *Error
	if *refreshed || !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		return err
	}
	*refreshed = true
	c.dropToken(tok)
	c.log.Debug("admin api rejected the access token; fetching a new one", c.logAttrs(r)...)
	if tok, err = c.token(ctx); err != nil {
		return err
	}
	return c.send(ctx, r, payload, tok)
}

// send makes one HTTP exchange, bounded by c.timeout.
func (c *Client) send(ctx context.Context, r request, payload []byte, tok string) error {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	u := *c.base
	u.Path, u.RawPath = c.fullPath(r.path), ""
	u.RawQuery = r.query.Encode()
	req, err := http.NewRequestWithContext(actx, r.method, u.String(), body)
	if err != nil {
		return fmt.Errorf("build request %s %s: %w", r.method, u.Path, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.tenant != "" {
		req.Header.Set("Tenant", r.tenant)
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if c.observe != nil {
		class := "network"
		if err == nil {
			class = fmt.Sprintf("%dxx", resp.StatusCode/100)
		}
		c.observe(r.method+" "+endpointOf(r.path), class, time.Since(start))
	}
	if err != nil {
		return c.transportError(ctx, actx, err)
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	limit := int64(maxErrorBody)
	if ok {
		limit = maxResponseBody
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return c.transportError(ctx, actx, fmt.Errorf("read answer to %s %s: %w", r.method, u.Path, err))
	}
	if !ok {
		return c.apiError(r, u.Path, resp.StatusCode, data, tok)
	}
	if r.out == nil {
		return nil
	}
	if err := json.Unmarshal(data, r.out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", r.method, u.Path, err)
	}
	return nil
}

// endpointOf is a path with its numeric segments (instance ids) as {id}.
func endpointOf(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s != "" && strings.Trim(s, "0123456789") == "" {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// fullPath is p below the BaseURL's own path, with or without its trailing slash.
func (c *Client) fullPath(p string) string {
	return strings.TrimRight(c.base.Path, "/") + p
}

func (c *Client) apiError(r request, path string, status int, data []byte, tok string) *Error {
	redact := append([]string{tok}, r.redact...)
	e := &Error{Method: r.method, Path: path, Status: status}
	if status == http.StatusBadRequest || status == http.StatusUnprocessableEntity {
		var pd ProblemDetails
		if json.Unmarshal(data, &pd) == nil && (pd.Title != "" || len(pd.Errors) > 0) {
			pd.Title = c.scrub(pd.Title, redact...)
			for k, msgs := range pd.Errors {
				for i := range msgs {
					msgs[i] = c.scrub(msgs[i], redact...)
				}
				pd.Errors[k] = msgs
			}
			e.Problem = &pd
		}
	}
	e.Body = excerpt(c.scrub(string(data), redact...))
	return e
}

// logAttrs says which call a record is about; never its headers or body.
func (c *Client) logAttrs(r request) []any {
	attrs := []any{"method", r.method, "path", c.fullPath(r.path)}
	if r.tenant != "" {
		attrs = append(attrs, "tenant", r.tenant)
	}
	return attrs
}

func (c *Client) logRetry(r request, attempt int, wait time.Duration, err error) {
	attrs := append(c.logAttrs(r), "attempt", attempt, "max_attempts", c.maxAttempts, "wait", wait)
	var apiErr *Error
	var tokErr *TokenError
	switch {
	case errors.As(err, &apiErr):
		attrs = append(attrs, "status", apiErr.Status)
	case errors.As(err, &tokErr):
		attrs = append(attrs, "status", tokErr.Status, "token_url", tokErr.URL)
	default:
		// Transport errors name the URL and the failure, never a header or body.
		attrs = append(attrs, "status", 0, "err", err.Error())
	}
	c.log.Warn("admin api call failed; retrying", attrs...)
}

// passwordSetting matches the password of an ADO.NET or libpq connection string.
var passwordSetting = regexp.MustCompile(`(?i)\b(password|pwd)(\s*=\s*)("[^"]*"|'[^']*'|[^;\s"']*)`)

// scrub removes the client secret, the given values and anything that looks
// like a connection string password from text that came back from a server.
func (c *Client) scrub(s string, values ...string) string {
	for _, v := range values {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	s = strings.ReplaceAll(s, c.clientSecret, "[redacted]") // never empty: New checks
	return passwordSetting.ReplaceAllString(s, "${1}${2}[redacted]")
}

// excerpt is the start of a body on one line, cut at maxExcerpt bytes.
func excerpt(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxExcerpt {
		return s
	}
	cut := maxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
