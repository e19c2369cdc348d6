package bench

import (
	"fmt"
	"slices"
	"time"
)

// Quantile is the nearest-rank q-quantile of ds (0 for none).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Secs prints a duration in seconds with millisecond precision.
func Secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// Ms prints a duration in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%d", d.Milliseconds()) }

// Ms1 prints a duration in milliseconds with one decimal.
func Ms1(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
