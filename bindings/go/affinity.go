package aethercache

/*
#include <stdint.h>
#include <stdlib.h>
#include <aether_cache/aether_cache.h>

// Defined in records.go (exported from Go).
extern int goAffinityVisit(acache_affinity *a, void *payload);

// acache_affinity_cb takes a const record; cgo exports cannot say const.
static int acache_go_visit(const acache_affinity *a, void *payload)
{
	return goAffinityVisit((acache_affinity *)a, payload);
}

static int acache_go_foreach(acache *c, const char *affinity_key, uintptr_t handle)
{
	return acache_affinity_foreach(c, affinity_key, acache_go_visit, (void *)handle);
}
*/
import "C"

import (
	"encoding/json"
	"runtime/cgo"
	"sort"
	"time"
)

// Affinity is one pin: which provider, endpoint and key served a client
// key's requests for one API format and model, since when, until when.
//
// Its JSON form is the library's (and Aether's): created_at and expire_at
// are epoch seconds as numbers, not RFC 3339 strings.
type Affinity struct {
	AffinityKey  string    `json:"affinity_key"`
	APIFormat    string    `json:"api_format"`
	ModelName    string    `json:"model_name"`
	ProviderID   string    `json:"provider_id"`
	EndpointID   string    `json:"endpoint_id"`
	KeyID        string    `json:"key_id"`
	CreatedAt    time.Time `json:"created_at"`
	ExpireAt     time.Time `json:"expire_at"`
	RequestCount int64     `json:"request_count"`
}

// affinityJSON is Affinity with the wire form of its timestamps.
type affinityJSON struct {
	AffinityKey  string    `json:"affinity_key"`
	APIFormat    string    `json:"api_format"`
	ModelName    string    `json:"model_name"`
	ProviderID   string    `json:"provider_id"`
	EndpointID   string    `json:"endpoint_id"`
	KeyID        string    `json:"key_id"`
	CreatedAt    epochTime `json:"created_at"`
	ExpireAt     epochTime `json:"expire_at"`
	RequestCount int64     `json:"request_count"`
}

// UnmarshalJSON reads the library's form (epoch-second numbers).
func (a *Affinity) UnmarshalJSON(b []byte) error {
	var w affinityJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*a = w.toAffinity()
	return nil
}

// MarshalJSON writes the library's form (epoch-second numbers).
func (a Affinity) MarshalJSON() ([]byte, error) {
	return json.Marshal(affinityJSON{a.AffinityKey, a.APIFormat, a.ModelName, a.ProviderID,
		a.EndpointID, a.KeyID, epochTime(a.CreatedAt), epochTime(a.ExpireAt), a.RequestCount})
}

func (w affinityJSON) toAffinity() Affinity {
	return Affinity{w.AffinityKey, w.APIFormat, w.ModelName, w.ProviderID, w.EndpointID,
		w.KeyID, time.Time(w.CreatedAt), time.Time(w.ExpireAt), w.RequestCount}
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
		a = affinityFrom(out)
		C.acache_affinity_free(out)
		return rc
	})
	return a, err
}

// affinityFrom copies a record through the library's getters.
func affinityFrom(a *C.acache_affinity) Affinity {
	return Affinity{
		AffinityKey:  C.GoString(C.acache_affinity_client_key(a)),
		APIFormat:    C.GoString(C.acache_affinity_api_format(a)),
		ModelName:    C.GoString(C.acache_affinity_model_name(a)),
		ProviderID:   C.GoString(C.acache_affinity_provider_id(a)),
		EndpointID:   C.GoString(C.acache_affinity_endpoint_id(a)),
		KeyID:        C.GoString(C.acache_affinity_key_id(a)),
		CreatedAt:    fromEpoch(float64(C.acache_affinity_created_at(a))),
		ExpireAt:     fromEpoch(float64(C.acache_affinity_expire_at(a))),
		RequestCount: int64(C.acache_affinity_request_count(a)),
	}
}

// Touch records a served request: creates, refreshes or switches the pin.
func (c *Cache) Touch(t Touch) (TouchResult, error) {
	var cs cstrings
	defer cs.free()
	// C memory only (C strings in a Go struct): allowed by the cgo pointer rules.
	in := C.acache_touch{
		version:          C.ACACHE_TOUCH_VERSION,
		affinity_key:     cs.str(t.AffinityKey),
		api_format:       cs.str(t.APIFormat),
		model_name:       cs.str(t.ModelName),
		provider_id:      cs.str(t.ProviderID),
		endpoint_id:      cs.str(t.EndpointID),
		key_id:           cs.str(t.KeyID),
		supports_caching: 1,
		ttl_s:            C.uint32_t(t.TTL / time.Second),
	}
	if t.NoCaching {
		in.supports_caching = 0
	}
	var res C.acache_touch_result
	err := c.call(func(h *C.acache) C.int { return C.acache_affinity_touch(&res, h, &in) })
	return TouchResult(res), err
}

// ReportResult is what Report did: the action and the consecutive transient
// failures on the pin after it (the kept count, or the count that dropped it).
type ReportResult struct {
	Action   ReportAction
	Failures uint32
}

// Report tells the library how a request served through t's pin target
// ended (acache_affinity_report): OutcomeSuccess is Touch; OutcomeTransient
// counts a failure on the pin and drops it at the handle's
// max_transient_failures in a row; OutcomeTerminal drops it at once. A drop
// is a compare-and-delete on t's provider/endpoint/key.
func (c *Cache) Report(t Touch, outcome Outcome) (ReportResult, error) {
	var cs cstrings
	defer cs.free()
	in := C.acache_report{
		version:          C.ACACHE_REPORT_VERSION,
		affinity_key:     cs.str(t.AffinityKey),
		api_format:       cs.str(t.APIFormat),
		model_name:       cs.str(t.ModelName),
		provider_id:      cs.str(t.ProviderID),
		endpoint_id:      cs.str(t.EndpointID),
		key_id:           cs.str(t.KeyID),
		outcome:          C.int(outcome),
		supports_caching: 1,
		ttl_s:            C.uint32_t(t.TTL / time.Second),
	}
	if t.NoCaching {
		in.supports_caching = 0
	}
	var res C.acache_report_result
	res.version = C.ACACHE_REPORT_RESULT_VERSION
	err := c.call(func(h *C.acache) C.int { return C.acache_affinity_report(&res, h, &in) })
	return ReportResult{Action: ReportAction(res.action), Failures: uint32(res.failures)}, err
}

// Records lists every live raw record, or only those of affinityKey when it
// is not "", in storage-key order (acache_affinity_foreach).
func (c *Cache) Records(affinityKey string) ([]Affinity, error) {
	var cs cstrings
	defer cs.free()
	k := cs.opt(affinityKey)
	var out []Affinity
	h := cgo.NewHandle(&out)
	defer h.Delete()
	err := c.call(func(ch *C.acache) C.int {
		return C.acache_go_foreach(ch, k, C.uintptr_t(h))
	})
	sort.Slice(out, func(i, j int) bool { return storageKey(out[i]) < storageKey(out[j]) })
	return out, err
}

// storageKey orders records as their keys cache_affinity:{key}:{format}:{model}.
func storageKey(a Affinity) string {
	return a.AffinityKey + ":" + a.APIFormat + ":" + a.ModelName
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

// invalidate runs acache_invalidate on a target of kind and returns the count.
func (c *Cache) invalidate(t C.acache_target) (int, error) {
	t.version = C.ACACHE_TARGET_VERSION
	return c.count(func(n *C.size_t, h *C.acache) C.int { return C.acache_invalidate(n, h, &t) })
}

// InvalidateAPIKey removes every pin of one client API key.
func (c *Cache) InvalidateAPIKey(affinityKey string) (int, error) {
	var cs cstrings
	defer cs.free()
	return c.invalidate(C.acache_target{kind: C.ACACHE_TARGET_API_KEY,
		affinity_key: cs.str(affinityKey)})
}

// InvalidateProvider removes every pin naming providerID.
func (c *Cache) InvalidateProvider(providerID string) (int, error) {
	var cs cstrings
	defer cs.free()
	return c.invalidate(C.acache_target{kind: C.ACACHE_TARGET_PROVIDER,
		provider_id: cs.str(providerID)})
}

// InvalidateKey removes every pin to one provider API key (key disabled).
func (c *Cache) InvalidateKey(keyID string) (int, error) {
	var cs cstrings
	defer cs.free()
	return c.invalidate(C.acache_target{kind: C.ACACHE_TARGET_KEY, key_id: cs.str(keyID)})
}

// InvalidateEndpoint removes every pin to one provider endpoint (endpoint removed).
func (c *Cache) InvalidateEndpoint(endpointID string) (int, error) {
	var cs cstrings
	defer cs.free()
	return c.invalidate(C.acache_target{kind: C.ACACHE_TARGET_ENDPOINT,
		endpoint_id: cs.str(endpointID)})
}

// ClearAll removes every affinity record.
func (c *Cache) ClearAll() (int, error) {
	return c.invalidate(C.acache_target{kind: C.ACACHE_TARGET_ALL})
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
