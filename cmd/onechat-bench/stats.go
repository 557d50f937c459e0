package main

import (
	"math"
	"slices"
)

// latency summarises durations, in milliseconds.
type latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// summarize sorts ns (nanoseconds) in place and summarises it; nil when
// empty. Every value is kept (at most rate × duration of them), so the
// percentiles are exact.
func summarize(ns []int64) *latency {
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(ns)
	var sum float64
	for _, v := range ns {
		sum += float64(v)
	}
	return &latency{
		Count: len(ns),
		Mean:  sum / float64(len(ns)) / 1e6,
		P50:   percentile(ns, 0.50),
		P90:   percentile(ns, 0.90),
		P99:   percentile(ns, 0.99),
		P999:  percentile(ns, 0.999),
		Max:   float64(ns[len(ns)-1]) / 1e6,
	}
}

// percentile is the nearest-rank q-quantile of sorted ns, in ms.
func percentile(sorted []int64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1e6
}
