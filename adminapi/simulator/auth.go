package simulator

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// The only grant and scope Admin API 2.2.2 issues tokens for.
const (
	grantClientCredentials = "client_credentials"
	scopeFullAccess        = "edfi_admin_api/full_access"
)

type client struct {
	secretHash  [32]byte // SHA-256 of the secret; compared in constant time
	displayName string
}

type tokenInfo struct {
	clientID string
	expires  time.Time
}

// RegisterClient registers a client as POST /connect/register does, with the
// client id as display name.
func (s *Simulator) RegisterClient(clientID, secret string) error {
	if msg := s.addClient(clientID, secret, clientID); msg != "" {
		return fmt.Errorf("register client %q: %s", clientID, msg)
	}
	return nil
}

// addClient adds a client and returns "" or what is wrong with the request.
func (s *Simulator) addClient(clientID, secret, displayName string) string {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"ClientId", clientID}, {"ClientSecret", secret}, {"DisplayName", displayName},
	} {
		if strings.TrimSpace(f.value) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return strings.Join(missing, ", ") + " must not be empty."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[clientID]; ok {
		return fmt.Sprintf("A client with ClientId %q is already registered.", clientID)
	}
	s.clients[clientID] = client{secretHash: sha256.Sum256([]byte(secret)), displayName: displayName}
	s.log.Info("client registered", "op", "register", "client_id", clientID)
	return ""
}

// parseOAuthForm reads a form-encoded OAuth request body, answering the
// OAuth error itself when it cannot.
func parseOAuthForm(w http.ResponseWriter, r *http.Request) bool {
	if !isForm(r.Header.Get("Content-Type")) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The request must be form-encoded (application/x-www-form-urlencoded).")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The form body could not be read.")
		return false
	}
	return true
}

// handleRegister serves POST /connect/register (form ClientId, ClientSecret,
// DisplayName). Admin API 2.2.2 answers success with a title and status.
//
// Anyone who reaches it gets a client, and so a token with full access, as
// a real Admin API with registration enabled would give. That is acceptable
// for a test double only because `instancemgr simulator` and `dev` listen
// on loopback unless told the network is a test's
// (app.CheckSimulatorListen).
func (s *Simulator) handleRegister(w http.ResponseWriter, r *http.Request, _ *call) {
	if !parseOAuthForm(w, r) {
		return
	}
	id := r.PostForm.Get("ClientId")
	if msg := s.addClient(id, r.PostForm.Get("ClientSecret"), r.PostForm.Get("DisplayName")); msg != "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"title": fmt.Sprintf("Registered client %s successfully.", id), "status": http.StatusOK})
}

// handleToken serves POST /connect/token for the client credentials grant.
// Client credentials may come in the form or as HTTP Basic authentication,
// not both (RFC 6749 section 2.3).
func (s *Simulator) handleToken(w http.ResponseWriter, r *http.Request, _ *call) {
	if !parseOAuthForm(w, r) {
		return
	}
	form := r.PostForm
	switch grant := form.Get("grant_type"); {
	case grant == "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The mandatory 'grant_type' parameter is missing.")
		return
	case grant != grantClientCredentials:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "The specified 'grant_type' is not supported.")
		return
	}

	id, secret := form.Get("client_id"), form.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		if id != "" || secret != "" {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Client credentials must be sent in the form or in the Authorization header, not both.")
			return
		}
		// RFC 6749 section 2.3.1: both are form-encoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(bid)
		secret, err2 = url.QueryUnescape(bsecret)
		if err1 != nil || err2 != nil {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The Authorization header is not form-encoded.")
			return
		}
	}
	if id == "" || secret == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The mandatory 'client_id' and 'client_secret' parameters are missing.")
		return
	}
	s.mu.Lock()
	cl, known := s.clients[id]
	s.mu.Unlock()
	sum := sha256.Sum256([]byte(secret))
	if !known || subtle.ConstantTimeCompare(sum[:], cl.secretHash[:]) != 1 {
		s.log.Info("token refused: unknown client or wrong secret", "op", "token", "client_id", id)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "The specified client credentials are invalid.")
		return
	}

	scopes := strings.Fields(form.Get("scope"))
	if len(scopes) == 0 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "The mandatory 'scope' parameter is missing.")
		return
	}
	for _, sc := range scopes {
		if sc != scopeFullAccess {
			writeOAuthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("The specified scope %q is not allowed.", sc))
			return
		}
	}

	now := s.now()
	token := newToken(id, now.Add(s.ttl))
	s.mu.Lock()
	for t, info := range s.tokens {
		if !now.Before(info.expires) {
			delete(s.tokens, t)
		}
	}
	s.tokens[token] = tokenInfo{clientID: id, expires: now.Add(s.ttl)}
	s.mu.Unlock()
	s.log.Debug("token issued", "op", "token", "client_id", id)

	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, adminapi.TokenResponse{AccessToken: token, TokenType: "bearer", ExpiresIn: int(s.ttl / time.Second)})
}

// newToken is an access token shaped as Ed-Fi's Admin API issues them
// (OpenIddict, access token encryption off): a JWT whose payload names
// the client in sub and client_id, which an audit log reads. Its signature
// is random bytes: the simulator checks a token by looking it up.
func newToken(clientID string, expires time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	sig := make([]byte, 32)
	_, _ = rand.Read(sig) // crypto/rand.Read never fails
	payload, _ := json.Marshal(map[string]any{"sub": clientID, "client_id": clientID, "jti": enc(sig[:12]), "exp": expires.Unix(), "scope": scopeFullAccess})
	return enc([]byte(`{"alg":"RS256","typ":"at+jwt"}`)) + "." + enc(payload) + "." + enc(sig)
}

// authenticate checks the bearer token and answers 401 itself when it is
// missing, malformed, unknown or expired.
func (s *Simulator) authenticate(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request", error_description="The Authorization header is not a bearer token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	now := s.now()
	s.mu.Lock()
	info, ok := s.tokens[token]
	s.mu.Unlock()
	switch {
	case !ok:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case !now.Before(info.expires):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The token expired"`)
	default:
		return true
	}
	w.WriteHeader(http.StatusUnauthorized)
	return false
}
