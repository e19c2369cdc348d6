package audit

import (
	"encoding/base64"
	"testing"
)

func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return "Bearer " + enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

func TestClientID(t *testing.T) {
	for _, tc := range []struct{ auth, want string }{
		{jwt(`{"client_id":"district-9","sub":"other"}`), "district-9"},
		{jwt(`{"sub":"district-9"}`), "district-9"},
		{jwt(`{"client_id":7}`), ""},
		{jwt(`not json`), ""},
		{"Bearer opaque-reference-token", ""},
		{"Basic ZGlzdHJpY3Q6c2VjcmV0", ""},
		{"", ""},
	} {
		if got := ClientID(tc.auth); got != tc.want {
			t.Errorf("ClientID(%q) = %q, want %q", tc.auth, got, tc.want)
		}
	}
}
