package consumer

import (
	"testing"
	"time"
)

// JetStream adds (BackOff[attempt-1] - AckWait) to a nak's delay; nakDelay
// takes it off again so that a retry waits the wanted delay or the backoff
// step, whichever is longer.
func TestNakDelayCompensatesForBackOff(t *testing.T) {
	c := &Consumer{opts: Options{AckWait: 2 * time.Second, BackOff: []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}}}
	tests := []struct {
		attempt   uint64
		want, got time.Duration
	}{
		{1, 5 * time.Second, 5 * time.Second},         // first step is the ack wait: nothing to take off
		{2, 5 * time.Second, 3 * time.Second},         // server adds 2s
		{3, 10 * time.Second, 4 * time.Second},        // server adds 6s
		{9, 10 * time.Second, 4 * time.Second},        // past the end: the last step
		{2, 100 * time.Millisecond, time.Millisecond}, // never a plain nak, which would mean "now"
	}
	for _, tt := range tests {
		if got := c.nakDelay(tt.attempt, tt.want); got != tt.got {
			t.Errorf("nakDelay(%d, %s) = %s, want %s", tt.attempt, tt.want, got, tt.got)
		}
	}
	plain := &Consumer{}
	if got := plain.nakDelay(3, time.Second); got != time.Second {
		t.Errorf("without BackOff the delay is sent as is, got %s", got)
	}
}
