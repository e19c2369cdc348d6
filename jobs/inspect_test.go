package jobs

import (
	"strings"
	"testing"
)

// A replay goes ahead only when the code says the cause can heal or the
// configuration shows it fixed, and never twice.
func TestCheckReplay(t *testing.T) {
	body, err := Encode(NewDelete("district9", 7, "Old", "EdFi_Ods_Old", 1))
	if err != nil {
		t.Fatal(err)
	}
	letter := func(code string) StoredDead {
		return StoredDead{Seq: 3, Subject: "instances.dead.delete.district9.7.1",
			Letter: DeadLetter{Code: code, Reason: "why", Subject: "instances.delete.district9.7.1", StreamSequence: 10, Message: body}}
	}
	fixed := &ReplaySettings{Tenants: []string{"district9"}, AllowDelete: true}
	unfixed := &ReplaySettings{Tenants: []string{"other"}}
	for _, tc := range []struct {
		code     string
		settings *ReplaySettings
		refusal  string // "" when the replay may go ahead
	}{
		{"exhausted", nil, ""},
		{"failed", nil, ""},
		{"transient", nil, ""},
		{"malformed", fixed, "the message itself is the cause"},
		{"invalid_name", fixed, "the message itself is the cause"},
		{"foreign", fixed, "not its request's job"},
		{"unknown_tenant", fixed, ""},
		{"unknown_tenant", unfixed, `tenant "district9" is still not in the configuration`},
		{"unknown_tenant", nil, "without -config"},
		{"delete_disabled", fixed, ""},
		{"delete_disabled", unfixed, "allowDelete is still off"},
		{"delete_disabled", nil, "without -config"},
		{"conflict", fixed, "only a person can fix that"},
		{"protected", fixed, "only a person can fix that"},
		{"not_found", fixed, "only a person can fix that"},
	} {
		err := CheckReplay(letter(tc.code), InstanceHistory{}, tc.settings)
		switch {
		case tc.refusal == "" && err != nil:
			t.Errorf("%s %+v: refused: %v", tc.code, tc.settings, err)
		case tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)):
			t.Errorf("%s %+v: %v, want a refusal saying %q", tc.code, tc.settings, err, tc.refusal)
		}
	}

	d := letter("exhausted")
	back := InstanceHistory{Jobs: []JobMessage{
		{Stored: Stored{Seq: 10, Subject: d.Letter.Subject}, State: StateDead},
		{Stored: Stored{Seq: 14, Subject: d.Letter.Subject}, State: StateWaiting},
	}}
	if err := CheckReplay(d, back, nil); err == nil || !strings.Contains(err.Error(), "already put back: stream sequence 14") {
		t.Errorf("a job already back: %v", err)
	}
	back.Jobs[1].State = StateDead // the replay failed too: it may be replayed again
	if err := CheckReplay(d, back, nil); err != nil {
		t.Errorf("a replay that failed again: %v", err)
	}
	d.Subject = DeadPrefix + ".malformed"
	if err := CheckReplay(d, InstanceHistory{}, nil); err == nil || !strings.Contains(err.Error(), "nothing to replay") {
		t.Errorf("a letter with no job subject: %v", err)
	}
}
