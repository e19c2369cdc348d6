//go:build !unix

package bench

import "time"

// processCPU is not measured here: per-job CPU reads 0.
func processCPU() time.Duration { return 0 }

// syncDisks is a no-op here.
func syncDisks() {}
