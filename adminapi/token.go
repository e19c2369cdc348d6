package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Token renewal: a cached token is renewed once less than
// min(maxRenewMargin, lifetime/renewFraction) of its lifetime remains, so a
// call never sets out with a token that expires on the way. The lifetime is
// measured from the moment the token was requested, which errs on the early
// side. A token whose answer carried no expires_in is kept until the API
// rejects it with 401.
const (
	maxRenewMargin = 60 * time.Second
	renewFraction  = 10
)

// maxTokenBody bounds what is read from the token endpoint.
const maxTokenBody = 64 << 10

// TokenError is a failed answer from the token endpoint. A 4xx (unknown
// client, wrong secret, refused scope) matches ErrUnauthorized, since it will
// be the same next time until the credentials change; a 5xx matches ErrServer.
// It never matches ErrValidation, which callers read as "the request itself is
// bad". It never holds the client secret or a token.
type TokenError struct {
	URL    string // the token endpoint, without query or user info
	Status int
	// Code and Description are the OAuth error and error_description, when
	// the body had them; otherwise Description is the start of the body.
	Code        string
	Description string
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "get access token from %s: status %d", e.URL, e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	return b.String()
}

// Is classifies a TokenError for errors.Is.
func (e *TokenError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status >= 400 && e.Status < 500
	case ErrServer:
		return e.Status >= 500
	}
	return false
}

// tokenCache holds the access token that all calls of a Client share.
type tokenCache struct {
	// fetching has room for one: whoever holds it is the only caller talking
	// to the token endpoint, so concurrent callers do not stampede it. A
	// channel rather than a mutex lets waiters give up when their ctx ends.
	fetching chan struct{}
	// queued counts callers waiting for fetching; tests await it.
	queued atomic.Int32

	mu      sync.Mutex
	value   string
	renewAt time.Time // zero when the token's lifetime is unknown
}

// CheckToken reports whether a token can be had (a cached one counts): the
// readiness of anything that calls the Admin API. The error never holds
// the secret.
func (c *Client) CheckToken(ctx context.Context) error {
	_, err := c.token(ctx)
	return err
}

// token returns a usable access token, fetching one when none is cached or
// the cached one is due for renewal.
func (c *Client) token(ctx context.Context) (string, error) {
	if tok, ok := c.cachedToken(); ok {
		return tok, nil
	}
	c.tok.queued.Add(1)
	select {
	case c.tok.fetching <- struct{}{}:
		c.tok.queued.Add(-1)
	case <-ctx.Done():
		c.tok.queued.Add(-1)
		return "", fmt.Errorf("wait for access token: %w", ctx.Err())
	}
	defer func() { <-c.tok.fetching }()
	// Whoever held fetching before us has probably just cached a fresh one.
	if tok, ok := c.cachedToken(); ok {
		return tok, nil
	}
	return c.fetchToken(ctx)
}

func (c *Client) cachedToken() (string, bool) {
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	if c.tok.value == "" {
		return "", false
	}
	if !c.tok.renewAt.IsZero() && !c.now().Before(c.tok.renewAt) {
		return "", false
	}
	return c.tok.value, true
}

// dropToken forgets tok after the API rejected it. Only that token is
// dropped: when several calls see the same 401, the first one's replacement
// survives the others.
func (c *Client) dropToken(tok string) {
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	if c.tok.value == tok {
		c.tok.value = ""
		c.tok.renewAt = time.Time{}
	}
}

// fetchToken asks the token endpoint for a token by client credentials and
// caches it. The caller holds c.tok.fetching.
func (c *Client) fetchToken(ctx context.Context) (string, error) {
	form := url.Values{
		"client_id":     {c.clientID},
		"client_secret": {c.clientSecret},
		"grant_type":    {"client_credentials"},
	}
	if c.scope != "" {
		form.Set("scope", c.scope)
	}
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("get access token from %s: %w", c.tokenURLSafe, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	requested := c.now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("get access token from %s: %w", c.tokenURLSafe, c.transportError(ctx, actx, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return "", fmt.Errorf("read access token from %s: %w", c.tokenURLSafe, c.transportError(ctx, actx, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", c.tokenError(resp.StatusCode, data)
	}

	var tr struct {
		AccessToken string    `json:"access_token"`
		TokenType   string    `json:"token_type"`
		ExpiresIn   expiresIn `json:"expires_in"`
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		// The error of a failed decode names types and offsets, never values.
		return "", fmt.Errorf("decode access token response from %s: %w", c.tokenURLSafe, err)
	}
	if tr.AccessToken == "" {
		return "", fmt.Errorf("access token response from %s has no access_token", c.tokenURLSafe)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", fmt.Errorf("access token from %s has token_type %q, want bearer", c.tokenURLSafe, tr.TokenType)
	}

	var renewAt time.Time
	if tr.ExpiresIn > 0 {
		lifetime := time.Duration(tr.ExpiresIn) * time.Second
		renewAt = requested.Add(lifetime - min(maxRenewMargin, lifetime/renewFraction))
	}
	c.tok.mu.Lock()
	c.tok.value, c.tok.renewAt = tr.AccessToken, renewAt
	c.tok.mu.Unlock()
	c.log.Debug("fetched access token", "token_url", c.tokenURLSafe, "expires_in", int(tr.ExpiresIn))
	return tr.AccessToken, nil
}

func (c *Client) tokenError(status int, data []byte) *TokenError {
	e := &TokenError{URL: c.tokenURLSafe, Status: status}
	var oe OAuthError
	if json.Unmarshal(data, &oe) == nil && oe.Error != "" {
		e.Code = excerpt(c.scrub(oe.Error))
		e.Description = excerpt(c.scrub(oe.ErrorDescription))
	} else {
		e.Description = excerpt(c.scrub(string(data)))
	}
	return e
}

// expiresIn accepts expires_in as a number or, as some servers send it, a
// string of digits.
type expiresIn int

func (e *expiresIn) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*e = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("expires_in is not a whole number of seconds")
	}
	*e = expiresIn(n)
	return nil
}
