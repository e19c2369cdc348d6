package consumer_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/consumer"
)

// A job that takes minutes (a large template copy) is told apart from one
// that takes longer still: the duration buckets reach past ten minutes.
func TestJobDurationBucketsReachPastTenMinutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := consumer.NewMetrics(reg)
	m.Duration.WithLabelValues("create").Observe(11 * 60)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "instancemgr_consumer_job_seconds" {
			continue
		}
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			if b.GetCumulativeCount() == 1 {
				if b.GetUpperBound() > 30*60 {
					t.Fatalf("an 11-minute job first counts in the bucket up to %v s: too coarse", b.GetUpperBound())
				}
				return
			}
		}
		t.Fatal("an 11-minute job is in no finite bucket (only +Inf)")
	}
	t.Fatal("instancemgr_consumer_job_seconds not exported")
}
