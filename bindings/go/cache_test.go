package aethercache

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if majorMinor(Version()) != majorMinor(BindingVersion) {
		t.Fatalf("library %s, binding %s", Version(), BindingVersion)
	}
}

func TestConstantsUpToDate(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	out, err := exec.Command(py, "../gen_constants.py", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("gen_constants.py --check: %v\n%s", err, out)
	}
}

func TestTouchGet(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store})
		if got := c.StoreType(); !strings.HasPrefix(store, got) {
			t.Fatalf("store type %q for %s", got, store)
		}
		if r := pin(t, c, "ak-1", "claude-sonnet"); r != TouchCreated {
			t.Fatalf("first touch: %v", r)
		}
		if r := pin(t, c, "ak-1", "claude-sonnet"); r != TouchRefreshed {
			t.Fatalf("second touch: %v", r)
		}
		a := must(c.Get("ak-1", "claude", "claude-sonnet")).ok(t)
		want := Affinity{AffinityKey: "ak-1", APIFormat: "claude", ModelName: "claude-sonnet",
			ProviderID: "prov-1", EndpointID: "ep-1", KeyID: "pk-1", RequestCount: 2,
			CreatedAt: a.CreatedAt, ExpireAt: a.ExpireAt}
		if a != want || math.Abs(a.ExpireAt.Sub(a.CreatedAt).Seconds()-300) > 2 ||
			math.Abs(time.Since(a.CreatedAt).Seconds()) > 5 {
			t.Fatalf("got %+v", a)
		}
		r := must(c.Touch(Touch{AffinityKey: "ak-1", APIFormat: "claude",
			ModelName: "claude-sonnet", ProviderID: "prov-1", EndpointID: "ep-1", KeyID: "pk-2"})).ok(t)
		if r != TouchSwitched {
			t.Fatalf("switch: %v", r)
		}
		r = must(c.Touch(Touch{AffinityKey: "ak-9", APIFormat: "claude", ModelName: "m",
			ProviderID: "p", EndpointID: "e", KeyID: "k", NoCaching: true})).ok(t)
		if r != TouchSkipped {
			t.Fatalf("no caching: %v", r)
		}
		if _, err := c.Get("ak-9", "claude", "m"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("skipped pin: %v", err)
		}
		must(c.Touch(Touch{AffinityKey: "ak-t", APIFormat: "claude", ModelName: "ns:m:v1",
			ProviderID: "p", EndpointID: "e", KeyID: "k", TTL: time.Minute})).ok(t)
		a = must(c.Get("ak-t", "claude", "ns:m:v1")).ok(t)
		if math.Abs(a.ExpireAt.Sub(a.CreatedAt).Seconds()-60) > 2 {
			t.Fatalf("ttl: %+v", a)
		}
	})
}

func TestDefaultTTL(t *testing.T) {
	c := open(t, Options{DefaultTTL: 42 * time.Second})
	pin(t, c, "ak-1", "m")
	a := must(c.Get("ak-1", "claude", "m")).ok(t)
	if math.Abs(a.ExpireAt.Sub(a.CreatedAt).Seconds()-42) > 2 {
		t.Fatalf("got %+v", a)
	}
	if cfg := must(c.Config()).ok(t); cfg.CacheTTLSeconds != 42 {
		t.Fatalf("config %+v", cfg)
	}
}

func TestRecordsAndInvalidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store})
		pin(t, c, "ak-1", "m1")
		pin(t, c, "ak-1", "m2")
		pin(t, c, "ak-2", "m1")
		must(c.Touch(Touch{AffinityKey: "ak-3", APIFormat: "claude", ModelName: "m1",
			ProviderID: "prov-2", EndpointID: "e", KeyID: "k"})).ok(t)
		if recs := must(c.Records("")).ok(t); len(recs) != 4 {
			t.Fatalf("records: %+v", recs)
		}
		if recs := must(c.Records("ak-2")).ok(t); len(recs) != 1 || recs[0].ModelName != "m1" {
			t.Fatalf("records of ak-2: %+v", recs)
		}
		err := c.InvalidateSingle("ak-1", "claude", "m1", Filter{KeyID: "other"})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("filter mismatch: %v", err)
		}
		if err := c.InvalidateSingle("ak-1", "claude", "m1",
			Filter{KeyID: "pk-1", ProviderID: "prov-1", EndpointID: "ep-1"}); err != nil {
			t.Fatal(err)
		}
		if err := c.InvalidateSingle("ak-1", "claude", "m1", Filter{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second invalidate: %v", err)
		}
		if n := must(c.InvalidateAPIKey("ak-1")).ok(t); n != 1 {
			t.Fatalf("api key: %d", n)
		}
		if n := must(c.InvalidateProvider("prov-2")).ok(t); n != 1 {
			t.Fatalf("provider: %d", n)
		}
		if n := must(c.ClearAll()).ok(t); n != 1 {
			t.Fatalf("clear all: %d", n)
		}
		if cnt := must(c.Counters()).ok(t); cnt.CacheInvalidations < 1 || cnt.ActiveAffinities != 0 {
			t.Fatalf("counters %+v", cnt)
		}
	})
}

func TestListingAndUsers(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store, Catalog: writeCatalog(t)})
		pin(t, c, "ak-1", "claude-sonnet")
		pin(t, c, "ak-2", "m2")
		pin(t, c, "ak-3", "claude-sonnet")
		l := must(c.ListAffinities(ListQuery{Keyword: "alice"})).ok(t)
		if l.MatchedUserID != "user-1" || l.Meta.Total != 2 || len(l.Items) != 2 {
			t.Fatalf("listing %+v", l)
		}
		var it ListingItem
		for _, i := range l.Items {
			if i.AffinityKey == "ak-2" {
				it = i
			}
		}
		if it.Username != "alice" || it.UserAPIKeyName != "alice ci" || !it.IsStandalone ||
			it.ProviderName != "Anthropic" || it.EndpointURL != "https://api.example.com" ||
			it.KeyName != "primary" || it.RateMultiplier != 1.5 || it.ModelName != "m2" {
			t.Fatalf("item %+v", it)
		}
		page := must(c.ListAffinities(ListQuery{Limit: 1, Offset: 1})).ok(t)
		if page.Meta.Total != 3 || page.Meta.Count != 1 || page.Meta.Limit != 1 {
			t.Fatalf("page %+v", page.Meta)
		}
		if _, err := c.ListAffinities(ListQuery{Limit: 5000}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("limit: %v", err)
		}
		if id := must(c.ResolveUser("bob@example.com")).ok(t); id != "user-2" {
			t.Fatalf("resolve %q", id)
		}
		if _, err := c.ResolveUser("nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("resolve nobody: %v", err)
		}
		u := must(c.UserAffinities("alice")).ok(t)
		if u.Status != "ok" || u.TotalEndpoints != 2 || u.UserInfo.Email != "alice@example.com" {
			t.Fatalf("user affinities %+v", u)
		}
		var e *Error
		if _, err := c.UserAffinities("nobody"); !errors.As(err, &e) ||
			e.Status != StatusNotFound || !strings.Contains(e.Message, "nobody") {
			t.Fatalf("unknown user: %v", err)
		}
		r := must(c.InvalidateUser("ak-2")).ok(t)
		if r.Count != 1 || r.UserInfo.APIKeyID != "ak-2" {
			t.Fatalf("clear key %+v", r)
		}
		r = must(c.InvalidateUser("alice")).ok(t)
		if r.Status != "ok" || r.Count != 1 || r.UserInfo.UserID != "user-1" {
			t.Fatalf("clear user %+v", r)
		}
		if _, err := c.InvalidateUser("nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("clear nobody: %v", err)
		}
	})
}

func TestStatsConfigMetrics(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store})
		pin(t, c, "ak-1", "m")
		must(c.Get("ak-1", "claude", "m")).ok(t)
		if _, err := c.Get("ak-x", "claude", "m"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		c.RecordBatch(4)
		c.RecordCandidates(8)
		c.RecordCache(true)
		c.RecordConcurrencyDenied()
		c.RecordRequest("claude", "m")
		s := must(c.Stats()).ok(t)
		a := s.AffinityStats
		if a.CacheHits != 1 || a.CacheMisses != 1 || a.CacheHitRate != 0.5 ||
			a.ActiveAffinities == nil || *a.ActiveAffinities != 1 || a.Config.DefaultTTL != 300 {
			t.Fatalf("affinity stats %+v", a)
		}
		m := s.SchedulerMetrics
		if m.TotalBatches != 1 || m.LastBatchSize != 4 || m.TotalCandidates != 8 ||
			m.ConcurrencyDenied != 1 || m.LastModelName != "m" || m.LastUpdatedAt == nil ||
			m.AvgCandidatesPerBatch != 8 {
			t.Fatalf("scheduler %+v", m)
		}
		if s.Scheduler != "cache_aware" || s.DynamicReservation.Config.StableMaxReservation != 0.35 {
			t.Fatalf("stats %+v", s)
		}
		cnt := must(c.Counters()).ok(t)
		if cnt.TotalAffinities != 1 || cnt.DefaultTTL != 300*time.Second {
			t.Fatalf("counters %+v", cnt)
		}
		cfg := must(c.Config()).ok(t)
		if cfg.CacheTTLSeconds != 300 || cfg.DynamicReservation.Config.ProbePhaseRequests != 100 ||
			cfg.Description["cache_ttl"] == "" {
			t.Fatalf("config %+v", cfg)
		}
		text := must(c.Metrics()).ok(t)
		if !strings.Contains(text, "cache_affinity_hits 1.0\n") ||
			!strings.Contains(text, `cache_scheduler_info{scheduler="cache_aware"} 1`) {
			t.Fatalf("metrics:\n%s", text)
		}
	})
}

func TestModelMappingMemory(t *testing.T) {
	c := open(t, Options{})
	s := must(c.ModelMappingStats()).ok(t)
	if s.Available || s.Message == "" {
		t.Fatalf("stats %+v", s)
	}
	if _, err := c.ClearModelMappings(); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := c.ClearModelMapping("x"); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := c.ClearProviderModelMapping("p", "g"); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
}

func TestModelMappingRedis(t *testing.T) {
	recs := readJSONL(t, sharedFile(t, "testdata/aether-redis/model-mapping.jsonl"))
	r := startRedis(t)
	resolve := 0
	for _, rec := range recs {
		k := rec["key"].(string)
		r.cli(t, "SET", k, rec["value"].(string), "EX", fmt.Sprint(rec["ttl"]))
		if strings.HasPrefix(k, "global_model:resolve:") {
			resolve++
		}
	}
	c := open(t, Options{Store: r.uri})
	s := must(c.ModelMappingStats()).ok(t)
	b := s.Breakdown
	if !s.Available || s.TTLSeconds != 300 || int(b.GlobalModelResolve) != resolve ||
		s.TotalKeys != b.ModelByID+b.ModelByProviderGlobal+b.GlobalModelByID+
			b.GlobalModelByName+b.GlobalModelResolve {
		t.Fatalf("stats %+v", s)
	}
	statuses := map[string]bool{}
	for _, u := range s.Unmapped {
		statuses[u.Status] = true
	}
	if !statuses["not_found"] || !statuses["invalid"] {
		t.Fatalf("unmapped %+v", s.Unmapped)
	}
	if keys := must(c.ClearModelMapping("gpt-9-turbo")).ok(t); fmt.Sprint(keys) !=
		"[global_model:resolve:gpt-9-turbo]" {
		t.Fatalf("clear model keys %q", keys)
	}
	if keys := must(c.ClearModelMapping("gpt-9-turbo")).ok(t); len(keys) != 0 {
		t.Fatalf("cleared again: %q", keys)
	}
	if _, err := c.ClearModelMapping(""); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	pid, gid := "prov-0001-aaaa", "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
	keys := must(c.ClearProviderModelMapping(pid, gid)).ok(t)
	if fmt.Sprint(keys) != "[model:provider_global:"+pid+":"+gid+
		" model:provider_global:hits:"+pid+":"+gid+"]" {
		t.Fatalf("clear provider keys %q", keys)
	}
	left := r.cli(t, "DBSIZE")
	if n := must(c.ClearModelMappings()).ok(t); fmt.Sprint(n) != left {
		t.Fatalf("cleared %d, had %s", n, left)
	}
}

func TestAnalyses(t *testing.T) {
	c := open(t, Options{Catalog: writeCatalog(t)})
	ttl := must(c.TTLAnalysis(24, "", "")).ok(t)
	if ttl.AnalysisPeriodHours != 24 || ttl.TotalUsersAnalyzed != 1 || len(ttl.Users) != 1 ||
		ttl.Users[0].GroupID != "user-1" || ttl.Users[0].RequestCount != 3 ||
		ttl.Users[0].Username == nil || *ttl.Users[0].Username != "alice" {
		t.Fatalf("ttl %+v", ttl)
	}
	d := ttl.TTLDistribution
	if d.Min5+d.Min15+d.Min30+d.Min60 != 1 {
		t.Fatalf("distribution %+v", d)
	}
	byKey := must(c.TTLAnalysis(24, "", "ak-1")).ok(t)
	if len(byKey.Users) != 1 || byKey.Users[0].GroupID != "ak-1" || byKey.Users[0].Username != nil {
		t.Fatalf("by key %+v", byKey)
	}
	hit := must(c.HitAnalysis(24, "", "")).ok(t)
	if hit.TotalRequests != 6 || hit.RequestsWithCacheHit != 3 || hit.TotalInputTokens != 600 ||
		hit.TotalCacheReadTokens != 220 || hit.RequestCacheHitRate != 50 ||
		hit.EstimatedSavingsUSD != 0.027 {
		t.Fatalf("hit %+v", hit)
	}
	tl := must(c.IntervalTimeline(TimelineQuery{Limit: 100})).ok(t)
	if tl.TotalPoints != 4 || len(tl.Points) != 4 || tl.Users != nil ||
		len(tl.Models) != 1 || !strings.HasSuffix(tl.Points[0].X, "+00:00") {
		t.Fatalf("timeline %+v", tl)
	}
	multi := must(c.IntervalTimeline(TimelineQuery{Limit: 100, IncludeUserInfo: true})).ok(t)
	if multi.Users["user-1"] != "alice" || multi.Users["user-2"] != "bob" ||
		len(multi.UserOrder) != 2 || multi.Points[0].UserID != multi.UserOrder[0] {
		t.Fatalf("multi %+v", multi)
	}
	one := must(c.IntervalTimeline(TimelineQuery{Limit: 100, UserID: "user-2"})).ok(t)
	if len(one.Points) != 1 || one.Points[0].Y != 20 {
		t.Fatalf("one user %+v", one)
	}
	if _, err := c.TTLAnalysis(0, "", ""); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := c.HitAnalysis(721, "", ""); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	bare := open(t, Options{})
	if _, err := bare.TTLAnalysis(24, "", ""); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := bare.HitAnalysis(24, "", ""); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := bare.IntervalTimeline(TimelineQuery{}); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
}

type cryptoVectors struct {
	Decrypt []struct {
		ID            string `json:"id"`
		EncryptionKey string `json:"encryption_key"`
		Stored        string `json:"stored"`
		Masked        string `json:"masked"`
		Plaintext     string `json:"plaintext"`
	} `json:"decrypt"`
	Invalid []struct {
		EncryptionKey string `json:"encryption_key"`
		Stored        string `json:"stored"`
	} `json:"invalid"`
	Mask []struct {
		Input     *string `json:"input"`
		PrefixLen uint    `json:"prefix_len"`
		SuffixLen uint    `json:"suffix_len"`
		Output    *string `json:"output"`
	} `json:"mask"`
}

func loadCrypto(t *testing.T) cryptoVectors {
	b, err := os.ReadFile(sharedFile(t, "testdata/aether-crypto/vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v cryptoVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMaskKey(t *testing.T) {
	v := loadCrypto(t)
	for _, m := range v.Mask {
		in, want := "", ""
		if m.Input != nil {
			in = *m.Input
		}
		if m.Output != nil {
			want = *m.Output
		}
		if got := must(MaskKey(in, m.PrefixLen, m.SuffixLen)).ok(t); got != want {
			t.Errorf("MaskKey(%q, %d, %d) = %q, want %q", in, m.PrefixLen, m.SuffixLen, got, want)
		}
	}
}

func TestDecryptAndMask(t *testing.T) {
	v := loadCrypto(t)
	byKey := map[string]*Cache{}
	for _, d := range v.Decrypt {
		c := byKey[d.EncryptionKey]
		if c == nil {
			c = open(t, Options{EncryptionKey: d.EncryptionKey})
			byKey[d.EncryptionKey] = c
		}
		if got := must(c.DecryptAndMask(d.Stored)).ok(t); got != d.Masked {
			t.Errorf("%s: %q, want %q", d.ID, got, d.Masked)
		}
	}
	dev := v.Decrypt[0]
	c := open(t, Options{UseDevEncryptionKey: true})
	if got := must(c.DecryptAndMask(dev.Stored)).ok(t); got != dev.Masked {
		t.Fatalf("dev key: %q", got)
	}
	if got := must(c.DecryptAndMask("")).ok(t); got != "" {
		t.Fatalf("empty: %q", got)
	}
	if _, err := c.DecryptAndMask("not-a-token"); !errors.Is(err, ErrCrypto) {
		t.Fatalf("garbage: %v", err)
	}
	bad := v.Invalid[0]
	wrong := open(t, Options{EncryptionKey: bad.EncryptionKey})
	if _, err := wrong.DecryptAndMask(bad.Stored); !errors.Is(err, ErrCrypto) {
		t.Fatalf("wrong key: %v", err)
	}
	if got := must(DecryptAndMaskWithKey(dev.EncryptionKey, dev.Stored)).ok(t); got != dev.Masked {
		t.Fatalf("with key: %q", got)
	}
	none := open(t, Options{})
	_, err := none.DecryptAndMask(dev.Stored)
	if !errors.Is(err, ErrCrypto) || strings.Contains(err.Error(), dev.Plaintext) {
		t.Fatalf("no key: %v", err)
	}
}

func TestErrors(t *testing.T) {
	_, err := Open(Options{Store: "bogus://x"})
	var e *Error
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("bogus store: %v", err)
	}
	_, err = Open(Options{Store: fmt.Sprintf("redis://127.0.0.1:%d/0", freePort(t)),
		ConnectTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrStore) || errors.Is(err, ErrNotFound) {
		t.Fatalf("closed port: %v", err)
	}
	bad := t.TempDir() + "/catalog.json"
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = Open(Options{Catalog: bad}); !errors.Is(err, ErrCatalog) {
		t.Fatalf("bad catalog: %v", err)
	}
	c := open(t, Options{})
	if _, err := c.Get("a:b", "claude", "m"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("colon: %v", err)
	}
	_, err = c.Get("first-key", "claude", "m")
	if !errors.As(err, &e) || !strings.Contains(e.Message, "first-key") {
		t.Fatalf("message: %v", err)
	}
	if HTTPStatus(StatusNotFound) != 404 || HTTPStatus(StatusInvalid) != 422 {
		t.Fatal("http status")
	}
	if !errors.Is(&Error{Status: StatusNoMemory, Message: "x"}, ErrNoMemory) ||
		!errors.Is(&Error{Status: StatusError, Message: "x"}, ErrGeneric) ||
		errors.Is(ErrNotFound, ErrInvalid) {
		t.Fatal("sentinels")
	}
}

func TestStoreDown(t *testing.T) {
	r := startRedis(t)
	c := open(t, Options{Store: r.uri, L1TTL: -1, ConnectTimeout: 300 * time.Millisecond,
		CommandTimeout: 300 * time.Millisecond})
	pin(t, c, "k", "m")
	r.stop()
	if _, err := c.Touch(Touch{AffinityKey: "k", APIFormat: "claude", ModelName: "m",
		ProviderID: "p", EndpointID: "e", KeyID: "x"}); !errors.Is(err, ErrStore) {
		t.Fatalf("touch after stop: %v", err)
	}
	if _, err := c.Get("k", "claude", "m"); !errors.Is(err, ErrStore) {
		t.Fatalf("get after stop: %v", err)
	}
}

func TestClose(t *testing.T) {
	c, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	pin(t, c, "k", "m")
	c.Close()
	c.Close()
	if _, err := c.Get("k", "claude", "m"); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := c.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("stats after close: %v", err)
	}
	c.RecordBatch(1) // no-op, no crash
}

func TestGoroutines(t *testing.T) {
	const workers, per = 32, 50
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store})
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				mine := fmt.Sprintf("key-%d", w)
				for i := 0; i < per; i++ {
					if _, err := c.Touch(Touch{AffinityKey: "shared", APIFormat: "claude",
						ModelName: "m", ProviderID: "p", EndpointID: "e", KeyID: "k"}); err != nil {
						errs <- err
						return
					}
					_, err := c.Get(mine, "claude", "absent")
					var e *Error
					// The message read on this goroutine's locked thread is its own.
					if !errors.As(err, &e) || e.Status != StatusNotFound ||
						!strings.Contains(e.Message, mine) {
						errs <- fmt.Errorf("worker %d: %v", w, err)
						return
					}
					if i%10 == 0 {
						if _, err := c.Stats(); err != nil {
							errs <- err
							return
						}
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// The store, not the handle's L1 copy (refilled out of order under
		// concurrency), holds the exact count.
		recs := must(c.Records("shared")).ok(t)
		if len(recs) != 1 || recs[0].RequestCount != workers*per {
			t.Fatalf("records %+v", recs)
		}
	})
}

func TestCloseWhileGoroutinesCall(t *testing.T) {
	c, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	pin(t, c, "k", "m")
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				if _, err := c.Get("k", "claude", "m"); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	close(start)
	time.Sleep(20 * time.Millisecond)
	c.Close()
	wg.Wait()
}

// BenchmarkGet measures one Get of a live pin on memory:// (binding overhead
// + the C call); bindings/bench_bindings.sh prints it next to the C figure.
func BenchmarkGet(b *testing.B) {
	c, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Touch(Touch{AffinityKey: "bench-key", APIFormat: "claude",
		ModelName: "claude-sonnet", ProviderID: "p", EndpointID: "e", KeyID: "k"}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Get("bench-key", "claude", "claude-sonnet"); err != nil {
			b.Fatal(err)
		}
	}
}

// Issue 8 item 16: reservation checks are recorded and derived as Aether's
// get_stats does (scheduler_metrics and dynamic_reservation).
func TestRecordReservation(t *testing.T) {
	c := open(t, Options{})
	s := must(c.Stats()).ok(t)
	if s.SchedulerMetrics.LastReservationResult != nil || s.DynamicReservation.LastResult != nil ||
		s.DynamicReservation.TotalChecks != 0 {
		t.Fatalf("before any check: %+v", s)
	}
	if err := c.RecordReservation(0.1, ReservationProbe, 0.2, 0.3); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordReservation(0.35, ReservationStable, 0.75, 0.9); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordReservation(math.NaN(), ReservationStable, 1, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NaN ratio: %v", err)
	}
	if err := c.RecordReservation(0.2, ReservationPhase(9), 1, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown phase: %v", err)
	}
	s = must(c.Stats()).ok(t)
	m := s.SchedulerMetrics
	// float64 steps, as the library computes (Go constant arithmetic is exact)
	avg, alpha, keep := 0.0, 0.1, 0.9
	for _, r := range []float64{0.1, 0.35} {
		avg = alpha*r + keep*avg
	}
	if m.ReservationProbeCount != 1 || m.ReservationStableCount != 1 ||
		m.AvgReservationRatio != avg || m.LastUpdatedAt == nil {
		t.Fatalf("scheduler metrics %+v", m)
	}
	want := ReservationResult{Ratio: 0.35, Phase: "stable", Confidence: 0.75, LoadFactor: 0.9}
	if m.LastReservationResult == nil || *m.LastReservationResult != want {
		t.Fatalf("last_reservation_result %+v", m.LastReservationResult)
	}
	d := s.DynamicReservation
	if d.CurrentAvgRatio != 0.044 || d.ProbePhaseRatio != 0.5 || d.TotalChecks != 2 ||
		d.LastResult == nil || *d.LastResult != want {
		t.Fatalf("dynamic_reservation %+v", d)
	}
	c.Close()
	if err := c.RecordReservation(0.1, ReservationProbe, 0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed handle: %v", err)
	}
}

func TestReportLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store})
		target := Touch{AffinityKey: "ak-r", APIFormat: "claude", ModelName: "m",
			ProviderID: "p", EndpointID: "e", KeyID: "k"}
		if r := must(c.Report(target, OutcomeSuccess)).ok(t); r.Action != ReportCreated {
			t.Fatalf("success: %+v", r)
		}
		for i := uint32(1); i <= 2; i++ {
			r := must(c.Report(target, OutcomeTransient)).ok(t)
			if r.Action != ReportKept || r.Failures != i {
				t.Fatalf("transient %d: %+v", i, r)
			}
		}
		if r := must(c.Report(target, OutcomeTransient)).ok(t); r.Action != ReportDropped {
			t.Fatalf("third transient: %+v", r)
		}
		if r := must(c.Report(target, OutcomeTerminal)).ok(t); r.Action != ReportNotPinned {
			t.Fatalf("terminal on nothing: %+v", r)
		}
		pin(t, c, "ak-1", "m1")
		must(c.Touch(Touch{AffinityKey: "ak-2", APIFormat: "claude", ModelName: "m1",
			ProviderID: "prov-1", EndpointID: "ep-2", KeyID: "pk-2"})).ok(t)
		if n := must(c.InvalidateKey("pk-1")).ok(t); n != 1 {
			t.Fatalf("InvalidateKey: %d", n)
		}
		if n := must(c.InvalidateEndpoint("ep-2")).ok(t); n != 1 {
			t.Fatalf("InvalidateEndpoint: %d", n)
		}
	})
}
