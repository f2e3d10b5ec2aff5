package aethercache

import "context"

// The context variants and what a context can interrupt are described in
// the package documentation ("Contexts").

// ctxResult carries a call's results out of withContext's goroutine (Go 1.19
// allows no type declaration inside a generic function).
type ctxResult[T any] struct {
	v   T
	err error
}

// withContext runs f under ctx as described above. f must own everything it
// touches (its C strings and buffers), since it may outlive the caller.
func withContext[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if ctx.Done() == nil {
		return f()
	}
	ch := make(chan ctxResult[T], 1) // buffered: an abandoned call never blocks
	go func() {
		v, err := f()
		ch <- ctxResult[T]{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-ch: // finished as the context ended: the result stands
			return r.v, r.err
		default:
			return zero, ctx.Err()
		}
	}
}

// withContextErr is withContext for calls that return only an error.
func withContextErr(ctx context.Context, f func() error) error {
	_, err := withContext(ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// OpenContext is Open under ctx. Open connects to the store (and, for
// PostgreSQL, the catalog); when ctx ends first, the handle opened in the
// background is closed as soon as it exists.
func OpenContext(ctx context.Context, opts Options) (*Cache, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		return Open(opts)
	}
	type result struct {
		c   *Cache
		err error
	}
	ch := make(chan result, 1)
	abandoned := make(chan struct{})
	go func() {
		c, err := Open(opts)
		select {
		case ch <- result{c, err}:
		case <-abandoned:
			if c != nil {
				c.Close()
			}
		}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		select {
		case r := <-ch:
			return r.c, r.err
		default:
		}
		close(abandoned)
		// The goroutine may have sent just before abandoned closed.
		select {
		case r := <-ch:
			if r.c != nil {
				r.c.Close()
			}
		default:
		}
		return nil, ctx.Err()
	}
}

// GetContext is Get under ctx.
func (c *Cache) GetContext(ctx context.Context, affinityKey, apiFormat, modelName string) (Affinity, error) {
	return withContext(ctx, func() (Affinity, error) { return c.Get(affinityKey, apiFormat, modelName) })
}

// TouchContext is Touch under ctx.
func (c *Cache) TouchContext(ctx context.Context, t Touch) (TouchResult, error) {
	return withContext(ctx, func() (TouchResult, error) { return c.Touch(t) })
}

// ReportContext is Report under ctx.
func (c *Cache) ReportContext(ctx context.Context, t Touch, outcome Outcome) (ReportResult, error) {
	return withContext(ctx, func() (ReportResult, error) { return c.Report(t, outcome) })
}

// RecordsContext is Records under ctx.
func (c *Cache) RecordsContext(ctx context.Context, affinityKey string) ([]Affinity, error) {
	return withContext(ctx, func() ([]Affinity, error) { return c.Records(affinityKey) })
}

// InvalidateSingleContext is InvalidateSingle under ctx.
func (c *Cache) InvalidateSingleContext(ctx context.Context, affinityKey, apiFormat, modelName string, f Filter) error {
	return withContextErr(ctx, func() error {
		return c.InvalidateSingle(affinityKey, apiFormat, modelName, f)
	})
}

// InvalidateAPIKeyContext is InvalidateAPIKey under ctx.
func (c *Cache) InvalidateAPIKeyContext(ctx context.Context, affinityKey string) (int, error) {
	return withContext(ctx, func() (int, error) { return c.InvalidateAPIKey(affinityKey) })
}

// InvalidateProviderContext is InvalidateProvider under ctx.
func (c *Cache) InvalidateProviderContext(ctx context.Context, providerID string) (int, error) {
	return withContext(ctx, func() (int, error) { return c.InvalidateProvider(providerID) })
}

// InvalidateKeyContext is InvalidateKey under ctx.
func (c *Cache) InvalidateKeyContext(ctx context.Context, keyID string) (int, error) {
	return withContext(ctx, func() (int, error) { return c.InvalidateKey(keyID) })
}

// InvalidateEndpointContext is InvalidateEndpoint under ctx.
func (c *Cache) InvalidateEndpointContext(ctx context.Context, endpointID string) (int, error) {
	return withContext(ctx, func() (int, error) { return c.InvalidateEndpoint(endpointID) })
}

// InvalidateUserContext is InvalidateUser under ctx.
func (c *Cache) InvalidateUserContext(ctx context.Context, identifier string) (ClearUserResult, error) {
	return withContext(ctx, func() (ClearUserResult, error) { return c.InvalidateUser(identifier) })
}

// ClearAllContext is ClearAll under ctx.
func (c *Cache) ClearAllContext(ctx context.Context) (int, error) {
	return withContext(ctx, c.ClearAll)
}

// CountersContext is Counters under ctx (it counts the stored records).
func (c *Cache) CountersContext(ctx context.Context) (Counters, error) {
	return withContext(ctx, c.Counters)
}

// ListAffinitiesContext is ListAffinities under ctx.
func (c *Cache) ListAffinitiesContext(ctx context.Context, q ListQuery) (Listing, error) {
	return withContext(ctx, func() (Listing, error) { return c.ListAffinities(q) })
}

// ResolveUserContext is ResolveUser under ctx.
func (c *Cache) ResolveUserContext(ctx context.Context, identifier string) (string, error) {
	return withContext(ctx, func() (string, error) { return c.ResolveUser(identifier) })
}

// UserAffinitiesContext is UserAffinities under ctx.
func (c *Cache) UserAffinitiesContext(ctx context.Context, identifier string) (UserAffinities, error) {
	return withContext(ctx, func() (UserAffinities, error) { return c.UserAffinities(identifier) })
}

// StatsContext is Stats under ctx.
func (c *Cache) StatsContext(ctx context.Context) (Stats, error) {
	return withContext(ctx, c.Stats)
}

// MetricsContext is Metrics under ctx.
func (c *Cache) MetricsContext(ctx context.Context) (string, error) {
	return withContext(ctx, c.Metrics)
}

// ModelMappingStatsContext is ModelMappingStats under ctx.
func (c *Cache) ModelMappingStatsContext(ctx context.Context) (ModelMappingStats, error) {
	return withContext(ctx, c.ModelMappingStats)
}

// ClearModelMappingsContext is ClearModelMappings under ctx.
func (c *Cache) ClearModelMappingsContext(ctx context.Context) (int, error) {
	return withContext(ctx, c.ClearModelMappings)
}

// ClearModelMappingContext is ClearModelMapping under ctx.
func (c *Cache) ClearModelMappingContext(ctx context.Context, modelName string) ([]string, error) {
	return withContext(ctx, func() ([]string, error) { return c.ClearModelMapping(modelName) })
}

// ClearProviderModelMappingContext is ClearProviderModelMapping under ctx.
func (c *Cache) ClearProviderModelMappingContext(ctx context.Context, providerID, globalModelID string) ([]string, error) {
	return withContext(ctx, func() ([]string, error) {
		return c.ClearProviderModelMapping(providerID, globalModelID)
	})
}

// TTLAnalysisContext is TTLAnalysis under ctx.
func (c *Cache) TTLAnalysisContext(ctx context.Context, hours int, userID, apiKeyID string) (TTLAnalysis, error) {
	return withContext(ctx, func() (TTLAnalysis, error) { return c.TTLAnalysis(hours, userID, apiKeyID) })
}

// HitAnalysisContext is HitAnalysis under ctx.
func (c *Cache) HitAnalysisContext(ctx context.Context, hours int, userID, apiKeyID string) (HitAnalysis, error) {
	return withContext(ctx, func() (HitAnalysis, error) { return c.HitAnalysis(hours, userID, apiKeyID) })
}

// IntervalTimelineContext is IntervalTimeline under ctx.
func (c *Cache) IntervalTimelineContext(ctx context.Context, q TimelineQuery) (Timeline, error) {
	return withContext(ctx, func() (Timeline, error) { return c.IntervalTimeline(q) })
}
