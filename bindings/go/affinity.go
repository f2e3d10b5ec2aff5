package aethercache

/*
#include <stdlib.h>
#include <aether_cache/aether_cache.h>
*/
import "C"

import "time"

// Affinity is one pin (spec affinity.md "The record").
type Affinity struct {
	AffinityKey  string  `json:"affinity_key"`
	APIFormat    string  `json:"api_format"`
	ModelName    string  `json:"model_name"`
	ProviderID   string  `json:"provider_id"`
	EndpointID   string  `json:"endpoint_id"`
	KeyID        string  `json:"key_id"`
	CreatedAt    float64 `json:"created_at"`
	ExpireAt     float64 `json:"expire_at"`
	RequestCount int64   `json:"request_count"`
}

// Touch is a request served through (provider, endpoint, key).
type Touch struct {
	AffinityKey, APIFormat, ModelName string
	ProviderID, EndpointID, KeyID     string
	NoCaching                         bool          // the provider does not cache prompts: nothing is written
	TTL                               time.Duration // whole seconds; 0 = the handle's default
}

// Get returns the live pin for (affinityKey, apiFormat, modelName), or an
// error matching ErrNotFound.
func (c *Cache) Get(affinityKey, apiFormat, modelName string) (Affinity, error) {
	var cs cstrings
	defer cs.free()
	k, f, m := cs.str(affinityKey), cs.str(apiFormat), cs.str(modelName)
	var a Affinity
	err := c.call(func(h *C.acache) C.int {
		var out *C.acache_affinity
		rc := C.acache_affinity_get(&out, h, k, f, m)
		if rc < 0 {
			return rc
		}
		a = Affinity{
			AffinityKey:  C.GoString(C.acache_affinity_affinity_key(out)),
			APIFormat:    C.GoString(C.acache_affinity_api_format(out)),
			ModelName:    C.GoString(C.acache_affinity_model_name(out)),
			ProviderID:   C.GoString(C.acache_affinity_provider_id(out)),
			EndpointID:   C.GoString(C.acache_affinity_endpoint_id(out)),
			KeyID:        C.GoString(C.acache_affinity_key_id(out)),
			CreatedAt:    float64(C.acache_affinity_created_at(out)),
			ExpireAt:     float64(C.acache_affinity_expire_at(out)),
			RequestCount: int64(C.acache_affinity_request_count(out)),
		}
		C.acache_affinity_free(out)
		return rc
	})
	return a, err
}

// Touch records a served request: creates, refreshes or switches the pin.
func (c *Cache) Touch(t Touch) (TouchResult, error) {
	var cs cstrings
	defer cs.free()
	k, f, m := cs.str(t.AffinityKey), cs.str(t.APIFormat), cs.str(t.ModelName)
	p, e, key := cs.str(t.ProviderID), cs.str(t.EndpointID), cs.str(t.KeyID)
	supports := C.int(1)
	if t.NoCaching {
		supports = 0
	}
	var res C.acache_touch_result
	err := c.call(func(h *C.acache) C.int {
		return C.acache_affinity_set(&res, h, k, f, m, p, e, key, supports,
			C.uint32_t(t.TTL/time.Second))
	})
	return TouchResult(res), err
}

// Records lists every live raw record, or only those of affinityKey when it
// is not "".
func (c *Cache) Records(affinityKey string) ([]Affinity, error) {
	var cs cstrings
	defer cs.free()
	k := cs.opt(affinityKey)
	var out []Affinity
	err := c.decode(&out, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_affinity_list_json(b, h, k)
	})
	return out, err
}

// Filter restricts InvalidateSingle: each non-empty field must match the pin.
type Filter struct {
	KeyID, ProviderID, EndpointID string
}

// InvalidateSingle deletes one pin if every filter matches; ErrNotFound
// when it is absent or a filter differs.
func (c *Cache) InvalidateSingle(affinityKey, apiFormat, modelName string, f Filter) error {
	var cs cstrings
	defer cs.free()
	k, fm, m := cs.str(affinityKey), cs.str(apiFormat), cs.str(modelName)
	kid, pid, eid := cs.opt(f.KeyID), cs.opt(f.ProviderID), cs.opt(f.EndpointID)
	return c.call(func(h *C.acache) C.int {
		return C.acache_affinity_invalidate(h, k, fm, m, kid, pid, eid)
	})
}

func (c *Cache) count(f func(n *C.size_t, h *C.acache) C.int) (int, error) {
	var n C.size_t
	err := c.call(func(h *C.acache) C.int { return f(&n, h) })
	return int(n), err
}

// InvalidateAPIKey removes every pin of one client API key.
func (c *Cache) InvalidateAPIKey(affinityKey string) (int, error) {
	var cs cstrings
	defer cs.free()
	k := cs.str(affinityKey)
	return c.count(func(n *C.size_t, h *C.acache) C.int {
		return C.acache_affinity_invalidate_api_key(n, h, k)
	})
}

// InvalidateProvider removes every pin naming providerID.
func (c *Cache) InvalidateProvider(providerID string) (int, error) {
	var cs cstrings
	defer cs.free()
	p := cs.str(providerID)
	return c.count(func(n *C.size_t, h *C.acache) C.int {
		return C.acache_affinity_invalidate_provider(n, h, p)
	})
}

// ClearAll removes every affinity record.
func (c *Cache) ClearAll() (int, error) {
	return c.count(func(n *C.size_t, h *C.acache) C.int {
		return C.acache_affinity_clear_all(n, h)
	})
}

// Counters are the handle's raw affinity counters (acache_stats).
type Counters struct {
	TotalAffinities    uint64
	CacheHits          uint64
	CacheMisses        uint64
	CacheHitRate       float64
	CacheInvalidations uint64
	ProviderSwitches   uint64
	KeySwitches        uint64
	MalformedRecords   uint64
	ActiveAffinities   int64 // -1 when the store could not count them
	DefaultTTL         time.Duration
}

// Counters reads the handle's counters and the number of stored records.
func (c *Cache) Counters() (Counters, error) {
	var s C.acache_stats
	s.version = C.ACACHE_STATS_VERSION
	err := c.call(func(h *C.acache) C.int { return C.acache_stats_get(&s, h) })
	return Counters{
		TotalAffinities:    uint64(s.total_affinities),
		CacheHits:          uint64(s.cache_hits),
		CacheMisses:        uint64(s.cache_misses),
		CacheHitRate:       float64(s.cache_hit_rate),
		CacheInvalidations: uint64(s.cache_invalidations),
		ProviderSwitches:   uint64(s.provider_switches),
		KeySwitches:        uint64(s.key_switches),
		MalformedRecords:   uint64(s.malformed_records),
		ActiveAffinities:   int64(s.active_affinities),
		DefaultTTL:         time.Duration(s.default_ttl_s) * time.Second,
	}, err
}

// RecordBatch reports a candidate batch of batchSize (scheduler counters).
func (c *Cache) RecordBatch(batchSize uint64) {
	c.void(func(h *C.acache) { C.acache_scheduler_record_batch(h, C.uint64_t(batchSize)) })
}

// RecordCandidates reports that count candidates were enumerated.
func (c *Cache) RecordCandidates(count uint64) {
	c.void(func(h *C.acache) { C.acache_scheduler_record_candidates(h, C.uint64_t(count)) })
}

// RecordCache reports a cache hit or miss seen while scheduling.
func (c *Cache) RecordCache(hit bool) {
	v := C.int(0)
	if hit {
		v = 1
	}
	c.void(func(h *C.acache) { C.acache_scheduler_record_cache(h, v) })
}

// RecordConcurrencyDenied reports a candidate rejected for concurrency.
func (c *Cache) RecordConcurrencyDenied() {
	c.void(func(h *C.acache) { C.acache_scheduler_record_concurrency_denied(h) })
}

// RecordReservation reports a reservation check of the scheduler: the ratio
// it chose in phase, with its confidence and load factor. It feeds the
// reservation counters of Stats (SchedulerMetrics and DynamicReservation).
// An unknown phase or a NaN/infinite value is ErrInvalid (nothing recorded).
func (c *Cache) RecordReservation(ratio float64, phase ReservationPhase, confidence,
	loadFactor float64) error {
	return c.call(func(h *C.acache) C.int {
		return C.acache_scheduler_record_reservation(h, C.double(ratio),
			C.acache_reservation_phase(phase), C.double(confidence), C.double(loadFactor))
	})
}

// RecordRequest remembers the last request's api format and model.
func (c *Cache) RecordRequest(apiFormat, modelName string) {
	var cs cstrings
	defer cs.free()
	f, m := cs.opt(apiFormat), cs.opt(modelName)
	c.void(func(h *C.acache) { C.acache_scheduler_record_request(h, f, m) })
}
