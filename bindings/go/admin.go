package aethercache

/*
#include <stdlib.h>
#include <aether_cache/aether_cache.h>
*/
import "C"

import (
	"encoding/json"
	"time"
)

// JSON null strings decode to "" throughout: the library never uses "" as a
// meaningful value where it could also send null, except where a field is a
// pointer below.

// ListingItem is one item of the enriched listing (GET .../affinities; docs/admin-json.md).
type ListingItem struct {
	AffinityKey       string    `json:"affinity_key"`
	UserAPIKeyName    string    `json:"user_api_key_name"`
	UserAPIKeyPrefix  string    `json:"user_api_key_prefix"`
	IsStandalone      bool      `json:"is_standalone"`
	UserID            string    `json:"user_id"`
	Username          string    `json:"username"`
	Email             string    `json:"email"`
	ProviderID        string    `json:"provider_id"`
	ProviderName      string    `json:"provider_name"`
	EndpointID        string    `json:"endpoint_id"`
	EndpointAPIFormat string    `json:"endpoint_api_format"`
	EndpointURL       string    `json:"endpoint_url"`
	KeyID             string    `json:"key_id"`
	KeyName           string    `json:"key_name"`
	KeyPrefix         string    `json:"key_prefix"`
	RateMultiplier    float64   `json:"rate_multiplier"`
	GlobalModelID     string    `json:"global_model_id"`
	ModelName         string    `json:"model_name"`
	ModelDisplayName  string    `json:"model_display_name"`
	APIFormat         string    `json:"api_format"`
	CreatedAt         time.Time `json:"created_at"` // epoch seconds in the JSON
	ExpireAt          time.Time `json:"expire_at"`  // epoch seconds in the JSON
	RequestCount      int64     `json:"request_count"`
}

// UnmarshalJSON reads the library's form, whose timestamps are epoch seconds.
func (l *ListingItem) UnmarshalJSON(b []byte) error {
	type plain ListingItem // without this method, so no recursion
	w := struct {
		*plain
		// Shallower fields win over the embedded ones of the same JSON name.
		CreatedAt epochTime `json:"created_at"`
		ExpireAt  epochTime `json:"expire_at"`
	}{plain: (*plain)(l)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	l.CreatedAt, l.ExpireAt = time.Time(w.CreatedAt), time.Time(w.ExpireAt)
	return nil
}

// MarshalJSON writes the library's form (epoch-second timestamps).
func (l ListingItem) MarshalJSON() ([]byte, error) {
	type plain ListingItem
	return json.Marshal(struct {
		plain
		CreatedAt epochTime `json:"created_at"`
		ExpireAt  epochTime `json:"expire_at"`
	}{plain(l), epochTime(l.CreatedAt), epochTime(l.ExpireAt)})
}

// Listing is one page of the enriched listing.
type Listing struct {
	Items []ListingItem `json:"items"`
	Meta  struct {
		Total  int `json:"total"`
		Limit  int `json:"limit"`
		Offset int `json:"offset"`
		Count  int `json:"count"`
	} `json:"meta"`
	MatchedUserID string `json:"matched_user_id"`
}

// ListQuery selects a listing page. Limit 0 means 100.
type ListQuery struct {
	Keyword string
	Limit   int64 // 1..1000
	Offset  int64 // >= 0
}

// ListAffinities builds the enriched, filtered, sorted, paginated listing.
func (c *Cache) ListAffinities(q ListQuery) (Listing, error) {
	var cs cstrings
	defer cs.free()
	kw := cs.opt(q.Keyword)
	if q.Limit == 0 {
		q.Limit = 100
	}
	in := C.acache_list_query{version: C.ACACHE_LIST_QUERY_VERSION, keyword: kw,
		limit: C.int64_t(q.Limit), offset: C.int64_t(q.Offset)}
	var l Listing
	err := c.data(&l, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_list_affinities(b, h, &in)
	})
	return l, err
}

// ResolveUser returns the user id of a user id, username, email or API key id.
func (c *Cache) ResolveUser(identifier string) (string, error) {
	var cs cstrings
	defer cs.free()
	id := cs.str(identifier)
	return c.text(func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_resolve_user(b, h, id)
	})
}

// UserInfo names the user (and, when cleared by key, the API key).
type UserInfo struct {
	UserID     string `json:"user_id"`
	Username   string `json:"username"`
	Email      string `json:"email"`
	APIKeyID   string `json:"api_key_id,omitempty"`
	APIKeyName string `json:"api_key_name,omitempty"`
}

// UserAffinities is the body of GET .../affinity/{identifier}.
type UserAffinities struct {
	Status         string     `json:"status"` // "ok" or "not_found" (no pins)
	Message        string     `json:"message"`
	UserInfo       UserInfo   `json:"user_info"`
	Affinities     []Affinity `json:"affinities"`
	TotalEndpoints int        `json:"total_endpoints"`
}

// UserAffinities lists one user's pins; ErrNotFound for an unknown identifier.
func (c *Cache) UserAffinities(identifier string) (UserAffinities, error) {
	var cs cstrings
	defer cs.free()
	id := cs.str(identifier)
	var u UserAffinities
	err := c.decode(&u, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_user_affinities(b, h, id)
	})
	return u, err
}

// ClearUserResult is the body of DELETE .../users/{identifier}.
type ClearUserResult struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	UserInfo UserInfo `json:"user_info"`
	Count    int      `json:"count"`
}

// InvalidateUser removes the pins of a user, or of one API key when the
// identifier is an API key id; ErrNotFound for an unknown identifier.
func (c *Cache) InvalidateUser(identifier string) (ClearUserResult, error) {
	var cs cstrings
	defer cs.free()
	t := C.acache_target{version: C.ACACHE_TARGET_VERSION, kind: C.ACACHE_TARGET_USER,
		identifier: cs.str(identifier)}
	var r ClearUserResult
	err := c.decode(&r, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_invalidate_json(b, h, &t)
	})
	return r, err
}

// ReservationConfig is the dynamic reservation configuration.
type ReservationConfig struct {
	ProbePhaseRequests   int     `json:"probe_phase_requests"`
	ProbeReservation     float64 `json:"probe_reservation"`
	StableMinReservation float64 `json:"stable_min_reservation"`
	StableMaxReservation float64 `json:"stable_max_reservation"`
	LowLoadThreshold     float64 `json:"low_load_threshold"`
	HighLoadThreshold    float64 `json:"high_load_threshold"`
}

// AffinityStats are the affinity counters of the stats body.
type AffinityStats struct {
	StorageType        string  `json:"storage_type"`
	TotalAffinities    int64   `json:"total_affinities"`
	ActiveAffinities   *int64  `json:"active_affinities"` // nil: could not be counted
	CacheHits          int64   `json:"cache_hits"`
	CacheMisses        int64   `json:"cache_misses"`
	CacheHitRate       float64 `json:"cache_hit_rate"`
	CacheInvalidations int64   `json:"cache_invalidations"`
	ProviderSwitches   int64   `json:"provider_switches"`
	KeySwitches        int64   `json:"key_switches"`
	MalformedRecords   int64   `json:"malformed_records"`
	Config             struct {
		DefaultTTL int `json:"default_ttl"`
	} `json:"config"`
}

// ReservationResult is one reservation check (see RecordReservation).
type ReservationResult struct {
	Ratio      float64 `json:"ratio"`
	Phase      string  `json:"phase"` // "probe" or "stable"
	Confidence float64 `json:"confidence"`
	LoadFactor float64 `json:"load_factor"`
}

// SchedulerMetrics are the scheduler counters of the stats body.
type SchedulerMetrics struct {
	TotalBatches       int64    `json:"total_batches"`
	LastBatchSize      int64    `json:"last_batch_size"`
	TotalCandidates    int64    `json:"total_candidates"`
	LastCandidateCount int64    `json:"last_candidate_count"`
	CacheHits          int64    `json:"cache_hits"`
	CacheMisses        int64    `json:"cache_misses"`
	ConcurrencyDenied  int64    `json:"concurrency_denied"`
	LastAPIFormat      string   `json:"last_api_format"`
	LastModelName      string   `json:"last_model_name"`
	LastUpdatedAt      *float64 `json:"last_updated_at"`
	// Reservation checks reported with RecordReservation.
	ReservationProbeCount  int64              `json:"reservation_probe_count"`
	ReservationStableCount int64              `json:"reservation_stable_count"`
	AvgReservationRatio    float64            `json:"avg_reservation_ratio"`
	LastReservationResult  *ReservationResult `json:"last_reservation_result"` // nil before the first
	CacheHitRate           float64            `json:"cache_hit_rate"`
	AvgCandidatesPerBatch  float64            `json:"avg_candidates_per_batch"`
}

// Stats is the `data` of the admin stats body.
type Stats struct {
	Scheduler             string  `json:"scheduler"`
	CacheReservationRatio float64 `json:"cache_reservation_ratio"`
	DynamicReservation    struct {
		Enabled         bool               `json:"enabled"`
		Config          ReservationConfig  `json:"config"`
		CurrentAvgRatio float64            `json:"current_avg_ratio"`
		ProbePhaseRatio float64            `json:"probe_phase_ratio"`
		TotalChecks     int64              `json:"total_checks"`
		LastResult      *ReservationResult `json:"last_result"` // nil before the first check
	} `json:"dynamic_reservation"`
	AffinityStats    AffinityStats    `json:"affinity_stats"`
	SchedulerMetrics SchedulerMetrics `json:"scheduler_metrics"`
}

// Stats returns the admin stats (counters, scheduler metrics, reservation).
func (c *Cache) Stats() (Stats, error) {
	var s Stats
	err := c.data(&s, func(b *C.acache_buf, h *C.acache) C.int { return C.acache_stats_json(b, h) })
	return s, err
}

// Config is the `data` of the admin config body.
type Config struct {
	CacheTTLSeconds       int     `json:"cache_ttl_seconds"`
	CacheReservationRatio float64 `json:"cache_reservation_ratio"`
	DynamicReservation    struct {
		Enabled     bool              `json:"enabled"`
		Config      ReservationConfig `json:"config"`
		Description map[string]string `json:"description"`
	} `json:"dynamic_reservation"`
	Description map[string]string `json:"description"`
}

// Config returns the admin config.
func (c *Cache) Config() (Config, error) {
	var cfg Config
	err := c.data(&cfg, func(b *C.acache_buf, h *C.acache) C.int { return C.acache_config_json(b, h) })
	return cfg, err
}

// Metrics returns the Prometheus text exposition (format 0.0.4).
func (c *Cache) Metrics() (string, error) {
	return c.text(func(b *C.acache_buf, h *C.acache) C.int { return C.acache_metrics_text(b, h) })
}
