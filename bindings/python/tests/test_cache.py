"""Every Cache operation, on memory:// and on a private redis-server."""
import math
import time

import pytest

import aether_cache as ac
from aether_cache import Affinity, Cache, TouchResult
from aether_cache import constants as K


def pin(c, key="ak-1", fmt="claude", model="claude-sonnet", prov="prov-1", ep="ep-1",
        pk="pk-1", **kw):
    return c.touch(affinity_key=key, api_format=fmt, model_name=model, provider_id=prov,
                   endpoint_id=ep, key_id=pk, **kw)


def test_open_reports_store_type(cache, store_uri):
    assert cache.store_type == ("memory" if store_uri.startswith("memory") else "redis")
    assert not cache.closed


def test_touch_then_get(cache):
    t0 = time.time()
    assert pin(cache) == TouchResult.CREATED
    assert pin(cache) == TouchResult.REFRESHED
    a = cache.get("ak-1", "claude", "claude-sonnet")
    assert isinstance(a, Affinity)
    assert (a.affinity_key, a.api_format, a.model_name) == ("ak-1", "claude", "claude-sonnet")
    assert (a.provider_id, a.endpoint_id, a.key_id) == ("prov-1", "ep-1", "pk-1")
    assert a.request_count == 2
    assert t0 - 1 <= a.created_at <= a.expire_at
    assert a.expire_at == pytest.approx(a.created_at + 300, abs=2)
    with pytest.raises(Exception):
        a.request_count = 5  # frozen


def test_touch_switch_skip_and_ttl(cache):
    pin(cache)
    assert pin(cache, pk="pk-2") == TouchResult.SWITCHED
    assert cache.get("ak-1", "claude", "claude-sonnet").key_id == "pk-2"
    assert pin(cache, key="ak-9", supports_caching=False) == TouchResult.SKIPPED
    with pytest.raises(ac.NotFoundError):
        cache.get("ak-9", "claude", "claude-sonnet")
    pin(cache, key="ak-2", ttl=60)
    a = cache.get("ak-2", "claude", "claude-sonnet")
    assert a.expire_at - a.created_at == pytest.approx(60, abs=2)


def test_model_name_may_contain_colons(cache):
    pin(cache, model="ns:model:v1")
    assert cache.get("ak-1", "claude", "ns:model:v1").model_name == "ns:model:v1"


def test_default_ttl_option(store_uri):
    with Cache(store=store_uri, default_ttl=42) as c:
        pin(c)
        a = c.get("ak-1", "claude", "claude-sonnet")
        assert a.expire_at - a.created_at == pytest.approx(42, abs=2)
        assert c.config()["cache_ttl_seconds"] == 42


def test_clock_option():
    with Cache(clock=lambda: 1_700_000_000.5) as c:
        pin(c)
        a = c.get("ak-1", "claude", "claude-sonnet")
        assert a.created_at == 1_700_000_000.5
        assert a.expire_at == 1_700_000_300.5


def test_records(cache):
    pin(cache)
    pin(cache, key="ak-2", model="m2")
    recs = cache.records()
    assert sorted(r.affinity_key for r in recs) == ["ak-1", "ak-2"]
    assert [r.model_name for r in cache.records("ak-2")] == ["m2"]
    assert cache.records("nobody") == []


def test_invalidate_single_with_filters(cache):
    pin(cache)
    with pytest.raises(ac.NotFoundError):
        cache.invalidate_single("ak-1", "claude", "claude-sonnet", key_id="other")
    with pytest.raises(ac.NotFoundError):
        cache.invalidate_single("ak-1", "claude", "claude-sonnet", provider_id="other")
    cache.invalidate_single("ak-1", "claude", "claude-sonnet", key_id="pk-1",
                            provider_id="prov-1", endpoint_id="ep-1")
    with pytest.raises(ac.NotFoundError):
        cache.get("ak-1", "claude", "claude-sonnet")
    with pytest.raises(ac.NotFoundError) as ei:
        cache.invalidate_single("ak-1", "claude", "claude-sonnet")
    assert isinstance(ei.value, LookupError)


def test_invalidate_api_key_provider_clear_all(cache):
    pin(cache)
    pin(cache, model="m2")
    pin(cache, key="ak-2", prov="prov-2")
    pin(cache, key="ak-3", prov="prov-2")
    assert cache.invalidate_api_key("ak-1") == 2
    assert cache.invalidate_api_key("ak-1") == 0
    assert cache.invalidate_provider("prov-2") == 2
    pin(cache)
    pin(cache, key="ak-5")
    assert cache.clear_all() == 2
    assert cache.records() == []
    assert cache.counters()["cache_invalidations"] >= 1


def test_list_affinities_plain(cache):
    for i in range(5):
        pin(cache, key="ak-%d" % i)
    page = cache.list_affinities(limit=2, offset=1)
    assert page["meta"] == {"total": 5, "limit": 2, "offset": 1, "count": 2}
    assert len(page["items"]) == 2
    assert page["matched_user_id"] is None
    item = page["items"][0]
    assert item["provider_id"] == "prov-1" and item["rate_multiplier"] == 1.0
    assert cache.list_affinities(keyword="AK-3")["meta"]["total"] == 1
    with pytest.raises(ac.InvalidArgumentError):
        cache.list_affinities(limit=0)
    with pytest.raises(ValueError):
        cache.list_affinities(offset=-1)


def test_list_affinities_enriched(cat_cache):
    pin(cat_cache, key="ak-1")
    pin(cat_cache, key="ak-2")
    pin(cat_cache, key="ak-3")
    page = cat_cache.list_affinities(keyword="alice")
    assert page["matched_user_id"] == "user-1"
    assert sorted(i["affinity_key"] for i in page["items"]) == ["ak-1", "ak-2"]
    item = next(i for i in page["items"] if i["affinity_key"] == "ak-2")
    assert item["username"] == "alice"
    assert item["user_api_key_name"] == "alice ci"
    assert item["is_standalone"] is True
    assert item["provider_name"] == "Anthropic"
    assert item["endpoint_url"] == "https://api.example.com"
    assert item["key_name"] == "primary"
    assert item["rate_multiplier"] == 1.5
    assert cat_cache.list_affinities(keyword="ak-3")["matched_user_id"] == "user-2"


def test_resolve_user(cat_cache):
    assert cat_cache.resolve_user("alice") == "user-1"
    assert cat_cache.resolve_user("bob@example.com") == "user-2"
    assert cat_cache.resolve_user("ak-2") == "user-1"
    with pytest.raises(ac.NotFoundError):
        cat_cache.resolve_user("nobody")


def test_user_affinities(cat_cache):
    body = cat_cache.user_affinities("alice")
    assert body["status"] == "not_found"
    pin(cat_cache, key="ak-1")
    pin(cat_cache, key="ak-2", model="m2")
    pin(cat_cache, key="ak-3")
    body = cat_cache.user_affinities("alice")
    assert body["status"] == "ok"
    assert body["user_info"] == {"user_id": "user-1", "username": "alice",
                                 "email": "alice@example.com"}
    assert body["total_endpoints"] == 2
    assert {a["model_name"] for a in body["affinities"]} == {"claude-sonnet", "m2"}
    with pytest.raises(ac.NotFoundError) as ei:
        cat_cache.user_affinities("nobody")
    assert "nobody" in ei.value.message


def test_invalidate_user(cat_cache):
    pin(cat_cache, key="ak-1")
    pin(cat_cache, key="ak-2")
    pin(cat_cache, key="ak-3")
    body = cat_cache.invalidate_user("ak-2")
    assert body["count"] == 1 and body["user_info"]["api_key_id"] == "ak-2"
    body = cat_cache.invalidate_user("alice")
    assert body["status"] == "ok" and body["count"] == 1
    assert [r.affinity_key for r in cat_cache.records()] == ["ak-3"]
    with pytest.raises(ac.NotFoundError):
        cat_cache.invalidate_user("nobody")


def test_stats_counters_config_metrics(cache):
    pin(cache)
    cache.get("ak-1", "claude", "claude-sonnet")
    with pytest.raises(ac.NotFoundError):
        cache.get("ak-x", "claude", "claude-sonnet")
    cache.record_batch(4)
    cache.record_candidates(8)
    cache.record_cache(True)
    cache.record_cache(False)
    cache.record_concurrency_denied()
    cache.record_request("claude", "claude-sonnet")
    s = cache.stats()
    aff = s["affinity_stats"]
    assert aff["cache_hits"] == 1 and aff["cache_misses"] == 1
    assert aff["cache_hit_rate"] == 0.5 and aff["active_affinities"] == 1
    assert aff["storage_type"] == cache.store_type
    sm = s["scheduler_metrics"]
    assert sm["total_batches"] == 1 and sm["last_batch_size"] == 4
    assert sm["total_candidates"] == 8 and sm["concurrency_denied"] == 1
    assert sm["last_model_name"] == "claude-sonnet"
    assert sm["avg_candidates_per_batch"] == 8.0
    cnt = cache.counters()
    assert cnt["total_affinities"] == 1 and cnt["active_affinities"] == 1
    assert cnt["default_ttl_s"] == 300
    cfg = cache.config()
    assert cfg["cache_ttl_seconds"] == 300 and cfg["cache_reservation_ratio"] == 0.1
    text = cache.metrics()
    assert "# TYPE cache_affinity_hits gauge\ncache_affinity_hits 1.0\n" in text
    assert 'cache_scheduler_info{scheduler="cache_aware"} 1' in text


def test_record_reservation(cache):
    """Issue 8 item 16: reservation checks feed scheduler_metrics and the
    derived dynamic_reservation figures, as Aether's get_stats does."""
    s = cache.stats()
    assert s["scheduler_metrics"]["last_reservation_result"] is None
    assert s["dynamic_reservation"]["last_result"] is None
    assert s["dynamic_reservation"]["total_checks"] == 0
    cache.record_reservation(0.1, "probe", 0.2, 0.3)
    cache.record_reservation(0.1, ac.ReservationPhase.PROBE, 0.4, 0.6)
    cache.record_reservation(0.35, "stable", 0.75, 0.9)
    for bad in (dict(ratio=math.nan), dict(phase="warmup"), dict(phase=7),
                dict(confidence=math.inf)):
        args = dict(ratio=0.2, phase="stable", confidence=1.0, load_factor=1.0)
        args.update(bad)
        with pytest.raises(ac.InvalidArgumentError):
            cache.record_reservation(**args)
    avg = 0.0
    for r in (0.1, 0.1, 0.35):
        avg = 0.1 * r + 0.9 * avg
    s = cache.stats()
    sm = s["scheduler_metrics"]
    last = {"ratio": 0.35, "phase": "stable", "confidence": 0.75, "load_factor": 0.9}
    assert sm["reservation_probe_count"] == 2 and sm["reservation_stable_count"] == 1
    assert sm["avg_reservation_ratio"] == avg
    assert sm["last_reservation_result"] == last
    keys = list(sm)
    i = keys.index("last_updated_at")
    assert keys[i + 1:i + 5] == ["reservation_probe_count", "reservation_stable_count",
                                 "avg_reservation_ratio", "last_reservation_result"]
    assert keys[i + 5:] == ["cache_hit_rate", "avg_candidates_per_batch"]
    dr = s["dynamic_reservation"]
    assert dr["current_avg_ratio"] == round(avg, 3) == 0.052
    assert dr["probe_phase_ratio"] == round(2 / 3, 3)
    assert dr["total_checks"] == 3 and dr["last_result"] == last


def test_model_mapping_unavailable_on_memory():
    with Cache() as c:
        s = c.model_mapping_stats()
        assert s["available"] is False and s["message"]
        with pytest.raises(ac.UnsupportedError):
            c.clear_model_mappings()
        with pytest.raises(ac.UnsupportedError):
            c.clear_model_mapping("x")
        with pytest.raises(ac.UnsupportedError):
            c.clear_provider_model_mapping("p", "g")


def test_model_mapping_on_redis(redis_server, mapping_records):
    redis_server.cli("FLUSHALL")
    for r in mapping_records:
        redis_server.cli("SET", r["key"], r["value"], "EX", str(r["ttl"]))
    with Cache(store=redis_server.uri) as c:
        s = c.model_mapping_stats()
        assert s["available"] is True
        assert s["total_keys"] == sum(s["breakdown"].values())
        assert s["breakdown"]["global_model_resolve"] == sum(
            r["key"].startswith("global_model:resolve:") for r in mapping_records)
        assert {u["status"] for u in s["unmapped"]} >= {"not_found", "invalid"}
        assert c.clear_model_mapping("gpt-9-turbo") == ["global_model:resolve:gpt-9-turbo"]
        assert c.clear_model_mapping("gpt-9-turbo") == []
        with pytest.raises(ac.InvalidArgumentError):
            c.clear_model_mapping("")
        pid, gid = "prov-0001-aaaa", "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
        assert c.clear_provider_model_mapping(pid, gid) == [
            "model:provider_global:%s:%s" % (pid, gid),
            "model:provider_global:hits:%s:%s" % (pid, gid)]
        left = int(redis_server.cli("DBSIZE"))
        assert c.clear_model_mappings() == left
        assert c.model_mapping_stats()["total_keys"] == 0


def test_analyses(cat_cache):
    ttl = cat_cache.ttl_analysis(hours=24)
    assert ttl["analysis_period_hours"] == 24
    groups = {u["group_id"]: u for u in ttl["users"]}
    # user-2 has one interval only: groups need at least two to be reported.
    assert set(groups) == {"user-1"}
    assert groups["user-1"]["request_count"] == 3
    assert groups["user-1"]["username"] == "alice"
    assert sum(ttl["ttl_distribution"].values()) == ttl["total_users_analyzed"] == 1
    by_key = cat_cache.ttl_analysis(hours=24, api_key_id="ak-1")
    assert [u["group_id"] for u in by_key["users"]] == ["ak-1"]

    hit = cat_cache.hit_analysis(hours=24)
    assert hit["total_requests"] == 6 and hit["requests_with_cache_hit"] == 3
    assert hit["total_input_tokens"] == 600 and hit["total_cache_read_tokens"] == 220
    assert hit["request_cache_hit_rate"] == 50.0
    assert hit["total_cache_read_cost_usd"] == 0.003
    assert hit["estimated_savings_usd"] == 0.027
    assert cat_cache.hit_analysis(hours=24, user_id="user-2")["total_requests"] == 2

    tl = cat_cache.interval_timeline(hours=24, limit=100)
    assert tl["total_points"] == len(tl["points"]) == 4
    assert "users" not in tl and tl["models"] == ["claude-sonnet"]
    assert all(p["x"].endswith("+00:00") for p in tl["points"])
    multi = cat_cache.interval_timeline(hours=24, limit=100, include_user_info=True)
    assert multi["users"] == {"user-1": "alice", "user-2": "bob"}
    one = cat_cache.interval_timeline(hours=24, limit=100, user_id="user-2")
    assert [p["y"] for p in one["points"]] == [20.0]


def test_analyses_errors(cache, cat_cache):
    with pytest.raises(ac.UnsupportedError):
        cache.ttl_analysis()
    with pytest.raises(ac.UnsupportedError):
        cache.hit_analysis()
    with pytest.raises(ac.UnsupportedError):
        cache.interval_timeline()
    with pytest.raises(ac.InvalidArgumentError):
        cat_cache.ttl_analysis(hours=0)
    with pytest.raises(ac.InvalidArgumentError):
        cat_cache.hit_analysis(hours=721)
    with pytest.raises(ac.InvalidArgumentError):
        cat_cache.interval_timeline(limit=0)


def test_mask_key_vectors(crypto_vectors):
    for v in crypto_vectors["mask"]:
        got = Cache.mask_key(v["input"], v["prefix_len"], v["suffix_len"])
        assert got == v["output"], v
    assert Cache.mask_key(b"sk-\x00\xffabcdefghijkl") == "sk-\x00\ufffdabc********ijkl"


def test_decrypt_and_mask_vectors(crypto_vectors):
    by_key = {}
    for v in crypto_vectors["decrypt"]:
        by_key.setdefault(v["encryption_key"], []).append(v)
    for key, vs in by_key.items():
        with Cache(encryption_key=key) as c:
            for v in vs:
                assert c.decrypt_and_mask(v["stored"]) == v["masked"], v["id"]
    dev = by_key["dev-encryption-key-do-not-use-in-production"][0]
    with Cache(use_dev_encryption_key=True) as c:
        assert c.decrypt_and_mask(dev["stored"]) == dev["masked"]
        assert c.decrypt_and_mask("") is None
        with pytest.raises(ac.CryptoError):
            c.decrypt_and_mask("not-a-token")
    bad = crypto_vectors["invalid"][0]
    with Cache(encryption_key=bad["encryption_key"]) as c:
        with pytest.raises(ac.CryptoError):
            c.decrypt_and_mask(bad["stored"])
    assert Cache.decrypt_and_mask_with_key(dev["encryption_key"], dev["stored"]) == \
        dev["masked"]
    with Cache() as c:
        with pytest.raises(ac.CryptoError) as ei:
            c.decrypt_and_mask(dev["stored"])
        assert dev["plaintext"] not in ei.value.message


def test_close_is_idempotent_and_final(store_uri):
    c = Cache(store=store_uri)
    pin(c)
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(ac.ClosedError) as ei:
        c.get("ak-1", "claude", "claude-sonnet")
    assert isinstance(ei.value, ValueError)
    with pytest.raises(ac.ClosedError):
        c.stats()
    assert not math.isnan(time.time())


def test_report_lifecycle_and_invalidate_by_key_endpoint(cache):
    target = dict(affinity_key="ak-r", api_format="claude", model_name="m", provider_id="p",
                  endpoint_id="e", key_id="k")
    assert cache.report(**target, outcome=ac.Outcome.SUCCESS) == (ac.ReportAction.CREATED, 0)
    assert cache.report(**target, outcome=ac.Outcome.TRANSIENT) == (ac.ReportAction.KEPT, 1)
    assert cache.report(**target, outcome=ac.Outcome.SUCCESS)[0] == ac.ReportAction.REFRESHED
    assert cache.report(**target, outcome=ac.Outcome.TRANSIENT) == (ac.ReportAction.KEPT, 1)
    assert cache.report(**target, outcome=ac.Outcome.TRANSIENT) == (ac.ReportAction.KEPT, 2)
    assert cache.report(**target, outcome=ac.Outcome.TRANSIENT) == (ac.ReportAction.DROPPED, 3)
    assert cache.report(**target, outcome=ac.Outcome.TERMINAL) == (ac.ReportAction.NOT_PINNED, 0)
    with pytest.raises(ac.InvalidArgumentError):
        cache.report(**target, outcome=9)
    pin(cache, key="ak-1", pk="pk-1")
    pin(cache, key="ak-2", pk="pk-1", ep="ep-2")
    pin(cache, key="ak-3", pk="pk-3", ep="ep-2")
    assert cache.invalidate_key("pk-1") == 2
    assert cache.invalidate_endpoint("ep-2") == 1
    assert cache.invalidate_key("pk-1") == 0
    assert cache.counters()["cache_invalidations"] >= 4
