package aethercache

/*
#include <stdlib.h>
#include <aether_cache/aether_cache.h>
*/
import "C"

// ModelMapping is a resolve name that maps to a differently named GlobalModel.
type ModelMapping struct {
	MappingName            string   `json:"mapping_name"`
	GlobalModelName        string   `json:"global_model_name"`
	GlobalModelDisplayName string   `json:"global_model_display_name"`
	Providers              []string `json:"providers"`
	TTL                    *int64   `json:"ttl"` // nil: no expiry or gone
}

// UnmappedName is a resolve entry that is NOT_FOUND, invalid or unreadable.
type UnmappedName struct {
	MappingName string `json:"mapping_name"`
	Status      string `json:"status"` // "not_found", "invalid" or "error"
	TTL         *int64 `json:"ttl"`
}

// ProviderModelMapping is a cached provider Model with its own names.
type ProviderModelMapping struct {
	ProviderID             string   `json:"provider_id"`
	ProviderName           string   `json:"provider_name"`
	GlobalModelID          string   `json:"global_model_id"`
	GlobalModelName        string   `json:"global_model_name"`
	GlobalModelDisplayName string   `json:"global_model_display_name"`
	ProviderModelName      string   `json:"provider_model_name"`
	Aliases                []string `json:"aliases"`
	TTL                    *int64   `json:"ttl"`
	HitCount               int64    `json:"hit_count"`
}

// ModelMappingStats is the `data` of the model-mapping stats body.
type ModelMappingStats struct {
	Available  bool   `json:"available"`
	Message    string `json:"message"`
	TTLSeconds int    `json:"ttl_seconds"`
	TotalKeys  int64  `json:"total_keys"`
	Breakdown  struct {
		ModelByID             int64 `json:"model_by_id"`
		ModelByProviderGlobal int64 `json:"model_by_provider_global"`
		GlobalModelByID       int64 `json:"global_model_by_id"`
		GlobalModelByName     int64 `json:"global_model_by_name"`
		GlobalModelResolve    int64 `json:"global_model_resolve"`
	} `json:"breakdown"`
	Mappings              []ModelMapping         `json:"mappings"`
	Unmapped              []UnmappedName         `json:"unmapped"`
	ProviderModelMappings []ProviderModelMapping `json:"provider_model_mappings"`
}

// ModelMappingStats snapshots the model-mapping cache (Available is false on
// a store other than Redis).
func (c *Cache) ModelMappingStats() (ModelMappingStats, error) {
	var s ModelMappingStats
	err := c.data(&s, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_model_mapping_stats(b, h)
	})
	return s, err
}

// mappingCleared is the admin body of the model-mapping clears.
type mappingCleared struct {
	DeletedCount int      `json:"deleted_count"`
	DeletedKeys  []string `json:"deleted_keys"`
}

// ClearModelMappings deletes every model:* and global_model:* key and
// returns how many; ErrUnsupported on a store other than Redis.
func (c *Cache) ClearModelMappings() (int, error) {
	var r mappingCleared
	err := c.decode(&r, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_model_mapping_clear_all(b, h)
	})
	return r.DeletedCount, err
}

// ClearModelMapping deletes global_model:resolve:{name} and
// global_model:name:{name}; it returns the keys that existed, in that order.
func (c *Cache) ClearModelMapping(modelName string) ([]string, error) {
	var cs cstrings
	defer cs.free()
	m := cs.str(modelName)
	var r mappingCleared
	err := c.decode(&r, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_model_mapping_clear_model(b, h, m)
	})
	return r.DeletedKeys, err
}

// ClearProviderModelMapping deletes model:provider_global:{p}:{g} and its
// hits key; it returns the keys that existed, in that order.
func (c *Cache) ClearProviderModelMapping(providerID, globalModelID string) ([]string, error) {
	var cs cstrings
	defer cs.free()
	p, g := cs.str(providerID), cs.str(globalModelID)
	var r mappingCleared
	err := c.decode(&r, func(b *C.acache_buf, h *C.acache) C.int {
		return C.acache_model_mapping_clear_provider(b, h, p, g)
	})
	return r.DeletedKeys, err
}
