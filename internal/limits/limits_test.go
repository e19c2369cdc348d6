package limits

import (
	"testing"
	"time"
)

// A key gets a minute's worth of creates at once, then one more each
// 60/perMinute seconds; a refusal takes nothing and says how long to wait;
// keys do not share a bucket; -1 allows everything.
func TestRateIsPerKeyAndSaysWhenToComeBack(t *testing.T) {
	now := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	r := NewRate(3)
	r.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := r.Take("district-a"); !ok {
			t.Fatalf("create %d of 3 refused", i+1)
		}
	}
	ok, after := r.Take("district-a")
	if ok || after != 20*time.Second {
		t.Fatalf("a fourth create: ok %v, retry after %s; want refused for 20s", ok, after)
	}
	if ok, _ := r.Take("district-b"); !ok {
		t.Fatal("another tenant was held back by the first one's rate")
	}
	now = now.Add(19 * time.Second)
	if ok, after := r.Take("district-a"); ok || after != time.Second {
		t.Fatalf("after 19s: ok %v, retry after %s; want refused for 1s more (a refusal takes nothing)", ok, after)
	}
	now = now.Add(time.Second)
	if ok, _ := r.Take("district-a"); !ok {
		t.Fatal("after 20s the next create is still refused")
	}
	if ok, _ := NewRate(-1).Take("x"); !ok {
		t.Fatal("-1 limited")
	}
	var none *Rate
	if ok, _ := none.Take("x"); !ok {
		t.Fatal("a nil rate limited")
	}
}

func TestWithDefaults(t *testing.T) {
	got := Limits{CreatesPerMinute: -1}.WithDefaults()
	want := Limits{InstancesPerTenant: DefaultInstancesPerTenant, CreatesPerMinute: -1, CreatesPerMinutePerClient: DefaultCreatesPerMinutePerClient}
	if got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
}
