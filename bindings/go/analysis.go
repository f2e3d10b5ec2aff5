package aethercache

/*
#include <stdlib.h>
#include <aether_cache/aether_cache.h>
*/
import "C"

// IntervalBuckets counts intervals per bucket (closed on the right).
type IntervalBuckets struct {
	Within5Min  int64 `json:"within_5min"`
	Within15Min int64 `json:"within_15min"`
	Within30Min int64 `json:"within_30min"`
	Within60Min int64 `json:"within_60min"`
	Over60Min   int64 `json:"over_60min"`
}

// IntervalPercentages are the buckets' shares in percent.
type IntervalPercentages struct {
	Within5Min  float64 `json:"within_5min"`
	Within15Min float64 `json:"within_15min"`
	Within30Min float64 `json:"within_30min"`
	Within60Min float64 `json:"within_60min"`
	Over60Min   float64 `json:"over_60min"`
}

// TTLGroup is one user (or API key) of the TTL analysis.
type TTLGroup struct {
	GroupID              string              `json:"group_id"`
	Username             *string             `json:"username"`
	Email                *string             `json:"email"`
	RequestCount         int64               `json:"request_count"` // number of intervals
	IntervalDistribution IntervalBuckets     `json:"interval_distribution"`
	IntervalPercentages  IntervalPercentages `json:"interval_percentages"`
	Percentiles          struct {
		P50 float64 `json:"p50"`
		P75 float64 `json:"p75"`
		P90 float64 `json:"p90"`
	} `json:"percentiles"`
	AvgIntervalMinutes    float64 `json:"avg_interval_minutes"`
	MinIntervalMinutes    float64 `json:"min_interval_minutes"`
	MaxIntervalMinutes    float64 `json:"max_interval_minutes"`
	RecommendedTTLMinutes int     `json:"recommended_ttl_minutes"`
	RecommendationReason  string  `json:"recommendation_reason"`
}

// TTLAnalysis is the TTL recommendation report (docs/analysis.md).
type TTLAnalysis struct {
	AnalysisPeriodHours int `json:"analysis_period_hours"`
	TotalUsersAnalyzed  int `json:"total_users_analyzed"`
	TTLDistribution     struct {
		Min5  int `json:"5min"`
		Min15 int `json:"15min"`
		Min30 int `json:"30min"`
		Min60 int `json:"60min"`
	} `json:"ttl_distribution"`
	Users []TTLGroup `json:"users"`
}

// TTLAnalysis groups the last `hours` (1..720) of usage by user, or by API
// key when apiKeyID is not "". ErrUnsupported without a catalog.
func (c *Cache) TTLAnalysis(hours int, userID, apiKeyID string) (TTLAnalysis, error) {
	var cs cstrings
	defer cs.free()
	u, k := cs.opt(userID), cs.opt(apiKeyID)
	var r TTLAnalysis
	err := c.decode(&r, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_ttl_analysis(b, h, C.int(hours), u, k)
	})
	return r, err
}

// HitAnalysis is the cache-hit report (docs/analysis.md).
type HitAnalysis struct {
	AnalysisPeriodHours       int     `json:"analysis_period_hours"`
	TotalRequests             int64   `json:"total_requests"`
	RequestsWithCacheHit      int64   `json:"requests_with_cache_hit"`
	RequestCacheHitRate       float64 `json:"request_cache_hit_rate"`
	TotalInputTokens          int64   `json:"total_input_tokens"`
	TotalCacheReadTokens      int64   `json:"total_cache_read_tokens"`
	TotalCacheCreationTokens  int64   `json:"total_cache_creation_tokens"`
	TokenCacheHitRate         float64 `json:"token_cache_hit_rate"`
	TotalCacheReadCostUSD     float64 `json:"total_cache_read_cost_usd"`
	TotalCacheCreationCostUSD float64 `json:"total_cache_creation_cost_usd"`
	EstimatedSavingsUSD       float64 `json:"estimated_savings_usd"`
}

// HitAnalysis computes the cache-hit analysis of the last `hours`.
func (c *Cache) HitAnalysis(hours int, userID, apiKeyID string) (HitAnalysis, error) {
	var cs cstrings
	defer cs.free()
	u, k := cs.opt(userID), cs.opt(apiKeyID)
	var r HitAnalysis
	err := c.decode(&r, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_hit_analysis(b, h, C.int(hours), u, k)
	})
	return r, err
}

// TimelinePoint is one interval between consecutive requests of a user.
type TimelinePoint struct {
	X      string  `json:"x"` // ISO 8601, UTC
	Y      float64 `json:"y"` // minutes
	UserID string  `json:"user_id,omitempty"`
	Model  string  `json:"model,omitempty"`
}

// Timeline is the interval timeline (docs/analysis.md).
type Timeline struct {
	AnalysisPeriodHours int               `json:"analysis_period_hours"`
	TotalPoints         int               `json:"total_points"`
	Points              []TimelinePoint   `json:"points"`
	Users               map[string]string `json:"users"` // multi-user mode only
	Models              []string          `json:"models"`
	// UserOrder lists the keys of Users in the JSON's order (first
	// appearance in Points), which a Go map does not keep.
	UserOrder []string `json:"-"`
}

// TimelineQuery selects an interval timeline. Hours 0 = 24, Limit 0 = 10000.
type TimelineQuery struct {
	Hours           int
	Limit           int
	UserID          string
	IncludeUserInfo bool
}

// IntervalTimeline computes the interval timeline.
func (c *Cache) IntervalTimeline(q TimelineQuery) (Timeline, error) {
	var cs cstrings
	defer cs.free()
	u := cs.opt(q.UserID)
	if q.Hours == 0 {
		q.Hours = 24
	}
	if q.Limit == 0 {
		q.Limit = 10000
	}
	multi := C.int(0)
	if q.IncludeUserInfo {
		multi = 1
	}
	var t Timeline
	err := c.decode(&t, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_interval_timeline(b, h, C.int(q.Hours), C.int(q.Limit), u, multi)
	})
	seen := map[string]bool{}
	for _, p := range t.Points {
		if _, named := t.Users[p.UserID]; named && !seen[p.UserID] {
			seen[p.UserID] = true
			t.UserOrder = append(t.UserOrder, p.UserID)
		}
	}
	return t, err
}
