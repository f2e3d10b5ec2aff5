/* Model-mapping cache cases (model-mapping.md), included by
 * tests/unit/mapping/mapping.c (memory store granted
 * ACACHE_STORE_CAP_RAW_KEYS via MM_STORE_CAPS) and
 * tests/integration/mapping_redis.c (private redis-server), both through the
 * public functions. The includer defines MM_SUITE and the MM_* call macros.
 * Data: model-mapping.jsonl. */
#ifndef ACACHE_TEST_MAPPING_CASES_H
#define ACACHE_TEST_MAPPING_CASES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

#include "harness.h"

#define GM_ID "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
#define PROV "prov-0001-aaaa"

static char mm_path[64];

/* Catalog: the provider, GlobalModel and Model behind model-mapping.jsonl,
 * with is_active flags and extra rows the cases switch. */
static const char *mm_catalog(int provider_active, int gm_active)
{
    static char buf[2048];
    snprintf(
        buf, sizeof buf,
        "{\"providers\": ["
        "{\"id\": \"" PROV "\", \"name\": \"anthropic-main\", \"display_name\": "
        "\"Anthropic Main\", \"is_active\": %s},"
        "{\"id\": \"prov-2\", \"name\": \"backup\", \"display_name\": \"\", "
        "\"is_active\": true}],"
        "\"global_models\": [{\"id\": \"" GM_ID "\", \"name\": \"claude-sonnet-4-5\", "
        "\"display_name\": \"Claude Sonnet 4.5\", \"is_active\": %s}],"
        "\"models\": ["
        "{\"id\": \"m1\", \"provider_id\": \"" PROV "\", \"global_model_id\": \"" GM_ID
        "\", \"provider_model_name\": \"claude-sonnet-4-5-20250929\", "
        "\"provider_model_mappings\": [{\"name\": \"sonnet\"}], \"is_active\": true},"
        "{\"id\": \"m2\", \"provider_id\": \"prov-2\", \"global_model_id\": \"" GM_ID
        "\", \"provider_model_name\": \"other\", \"provider_model_mappings\": "
        "[{\"name\": \"claude-sonnet-4-5-20250929\"}], \"is_active\": true},"
        "{\"id\": \"m3\", \"provider_id\": \"prov-2\", \"global_model_id\": \"" GM_ID
        "\", \"provider_model_name\": \"claude-sonnet-4-5-20250929x\", "
        "\"is_active\": false}]}",
        provider_active ? "true" : "false", gm_active ? "true" : "false");
    return buf;
}

static acache *mm_open(const char *catalog_json, uint32_t cap)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.mapping_list_cap = cap;
    mm_path[0] = '\0';
    if (catalog_json) {
        strcpy(mm_path, "/tmp/acache-mm-XXXXXX");
        int fd = mkstemp(mm_path);
        cr_assert(fd >= 0);
        cr_assert_eq(write(fd, catalog_json, strlen(catalog_json)),
                     (ssize_t)strlen(catalog_json));
        close(fd);
        o.catalog_uri = mm_path;
    }
    acache *c = th_open(&o);
#ifdef MM_STORE_CAPS
    /* The feature follows the capability, not the store's name. */
    acache_handle_store(c)->caps |= MM_STORE_CAPS;
#endif
    /* Private Redis per test process, but Criterion may reuse it: start clean. */
    size_t d = 0;
    cr_assert_eq(MM_CLEAR_ALL(&d, c), ACACHE_OK, "%s", acache_last_error());
    th_load_jsonl(c, TH_TESTDATA("aether-redis/model-mapping.jsonl"));
    return c;
}

static void mm_done(acache *c)
{
    size_t d = 0;
    MM_CLEAR_ALL(&d, c);
    acache_close(c);
    if (mm_path[0])
        unlink(mm_path);
}

static void mm_set(acache *c, const char *key, const char *value)
{
    acache_store *s = acache_handle_store(c);
    cr_assert_eq(s->set(s, key, value, strlen(value), 300), ACACHE_OK);
}

static int mm_exists(acache *c, const char *key)
{
    acache_store *s = acache_handle_store(c);
    acache_buf b = ACACHE_BUF_INIT;
    int rc = s->get(s, key, &b);
    acache_buf_dispose(&b);
    return rc == ACACHE_OK;
}

/* A second may tick between SET and TTL on Redis: show 299 as 300. */
static char *mm_norm(char *s)
{
    char *p;
    while ((p = strstr(s, "\"ttl\": 299")))
        p[9] = '3', p[10] = '0', p[11] = '0';
    return s;
}

#define MM_MAPPINGS_FULL                                                                 \
    "\"mappings\": [{\"mapping_name\": \"claude-sonnet-4-5-20250929\", "                 \
    "\"global_model_name\": \"claude-sonnet-4-5\", \"global_model_display_name\": "      \
    "\"Claude Sonnet 4.5\", \"providers\": [\"Anthropic Main\", \"backup\"], \"ttl\": "  \
    "300}]"
#define MM_UNMAPPED                                                                      \
    "\"unmapped\": [{\"mapping_name\": \"gpt-9-turbo\", \"status\": \"not_found\", "     \
    "\"ttl\": 300}, {\"mapping_name\": \"weird*name?[x]\", \"status\": \"invalid\", "    \
    "\"ttl\": 300}]"
#define MM_BREAKDOWN                                                                     \
    "\"ttl_seconds\": 300, \"total_keys\": 8, \"breakdown\": {\"model_by_id\": 1, "      \
    "\"model_by_provider_global\": 1, \"global_model_by_id\": 1, "                       \
    "\"global_model_by_name\": 1, \"global_model_resolve\": 4}"
#define MM_PM                                                                            \
    "\"provider_model_mappings\": [{\"provider_id\": \"" PROV "\", \"provider_name\": "  \
    "\"Anthropic Main\", \"global_model_id\": \"" GM_ID "\", \"global_model_name\": "    \
    "\"claude-sonnet-4-5\", \"global_model_display_name\": \"Claude Sonnet 4.5\", "      \
    "\"provider_model_name\": \"claude-sonnet-4-5-20250929\", \"aliases\": "             \
    "[\"sonnet\", \"claude-3-7-sonnet\"], \"ttl\": 300, \"hit_count\": 17}]"

static void mm_expect_stats(acache *c, const char *expected)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(MM_STATS_JSON(&b, c), ACACHE_OK, "%s", acache_last_error());
    cr_assert_str_eq(mm_norm(b.ptr), expected);
    acache_buf_dispose(&b);
}

Test(MM_SUITE, stats_with_catalog)
{
    acache *c = mm_open(mm_catalog(1, 1), 0);
    mm_expect_stats(c,
                    "{\"status\": \"ok\", \"data\": {\"available\": true, " MM_BREAKDOWN
                    ", " MM_MAPPINGS_FULL ", " MM_PM ", " MM_UNMAPPED "}}");
    mm_done(c);
}

Test(MM_SUITE, stats_structured)
{
    acache *c = mm_open(mm_catalog(1, 1), 0);
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_available(s), 1);
    cr_assert_null(acache__model_mapping_stats_message(s));
    cr_assert_eq(acache__model_mapping_stats_total_keys(s), 8);
    cr_assert_eq(acache__model_mapping_stats_breakdown(s, ACACHE_MM_GLOBAL_MODEL_RESOLVE),
                 4);
    cr_assert_eq(acache__model_mapping_stats_mapping_count(s), 1);
    cr_assert_eq(acache__model_mapping_stats_mapping_provider_count(s, 0), 2);
    cr_assert_str_eq(acache__model_mapping_stats_mapping_provider(s, 0, 1), "backup");
    cr_assert_eq(acache__model_mapping_stats_unmapped_count(s), 2);
    cr_assert_eq(acache__model_mapping_stats_unmapped_status(s, 0), ACACHE_MM_NOT_FOUND);
    cr_assert_eq(acache__model_mapping_stats_unmapped_status(s, 1), ACACHE_MM_INVALID);
    cr_assert_eq(acache__model_mapping_stats_pm_count(s), 1);
    cr_assert_eq(acache__model_mapping_stats_pm_hit_count(s, 0), 17);
    cr_assert_eq(acache__model_mapping_stats_pm_alias_count(s, 0), 2);
    cr_assert_null(acache__model_mapping_stats_pm_alias(s, 0, 2));
    cr_assert_eq(acache__model_mapping_stats_pm_ttl(s, 5), -1);
    acache__model_mapping_stats_free(s);
    mm_done(c);
}

Test(MM_SUITE, stats_without_catalog)
{
    acache *c = mm_open(NULL, 0);
    mm_expect_stats(
        c, "{\"status\": \"ok\", \"data\": {\"available\": true, " MM_BREAKDOWN
           ", \"mappings\": [{\"mapping_name\": \"claude-sonnet-4-5-20250929\", "
           "\"global_model_name\": \"claude-sonnet-4-5\", \"global_model_display_name\": "
           "\"Claude Sonnet 4.5\", \"providers\": [], \"ttl\": 300}], "
           "\"provider_model_mappings\": [{\"provider_id\": \"" PROV "\", "
           "\"provider_name\": null, \"global_model_id\": \"" GM_ID "\", "
           "\"global_model_name\": null, \"global_model_display_name\": null, "
           "\"provider_model_name\": \"claude-sonnet-4-5-20250929\", \"aliases\": "
           "[\"sonnet\", \"claude-3-7-sonnet\"], \"ttl\": 300, \"hit_count\": "
           "17}], " MM_UNMAPPED "}}");
    mm_done(c);
}

Test(MM_SUITE, inactive_provider_and_global_model)
{
    acache *c = mm_open(mm_catalog(0, 1), 0);
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK);
    /* the inactive provider drops out of providers and of provider_model_mappings */
    cr_assert_eq(acache__model_mapping_stats_mapping_provider_count(s, 0), 1);
    cr_assert_str_eq(acache__model_mapping_stats_mapping_provider(s, 0, 0), "backup");
    cr_assert_eq(acache__model_mapping_stats_pm_count(s), 0);
    acache__model_mapping_stats_free(s);
    mm_done(c);

    c = mm_open(mm_catalog(1, 0), 0);
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_pm_count(s), 0);
    acache__model_mapping_stats_free(s);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(MM_STATS_JSON(&b, c), ACACHE_OK);
    cr_assert(strstr(b.ptr, "\"provider_model_mappings\": null, " MM_UNMAPPED "}}") !=
                  NULL,
              "%s", b.ptr);
    acache_buf_dispose(&b);
    mm_done(c);
}

Test(MM_SUITE, provider_global_filters_and_missing_hits)
{
    acache *c = mm_open(mm_catalog(1, 1), 0);
    /* same name as the GlobalModel and no mappings: not a mapping */
    mm_set(c, "model:provider_global:prov-2:" GM_ID,
           "{\"id\": \"m9\", \"provider_model_name\": \"claude-sonnet-4-5\", "
           "\"provider_model_mappings\": null}");
    /* remainder does not split into exactly two parts: counted, not listed */
    mm_set(c, "model:provider_global:a:b:c", "{\"provider_model_name\": \"x\"}");
    /* invalid JSON under a well-formed key: skipped */
    mm_set(c, "model:provider_global:prov-3:" GM_ID, "{oops");
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK);
    cr_assert_eq(
        acache__model_mapping_stats_breakdown(s, ACACHE_MM_MODEL_BY_PROVIDER_GLOBAL), 4);
    cr_assert_eq(acache__model_mapping_stats_pm_count(s), 1);
    acache__model_mapping_stats_free(s);

    /* a different name with no hits key: listed, hit_count 0, alias = GM name */
    mm_set(c, "model:provider_global:prov-2:" GM_ID,
           "{\"provider_model_name\": \"sonnet-backup\", \"provider_model_mappings\": "
           "[{\"name\": \"  \"}, 7, {\"name\": 3}]}");
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_pm_count(s), 2);
    /* sorted by provider_name: "Anthropic Main" < "backup" */
    cr_assert_str_eq(acache__model_mapping_stats_pm_provider_name(s, 1), "backup");
    cr_assert_eq(acache__model_mapping_stats_pm_hit_count(s, 1), 0);
    cr_assert_eq(acache__model_mapping_stats_pm_alias_count(s, 1), 1);
    cr_assert_str_eq(acache__model_mapping_stats_pm_alias(s, 1, 0), "claude-sonnet-4-5");
    acache__model_mapping_stats_free(s);
    mm_done(c);
}

Test(MM_SUITE, cap_limits_listed_entries)
{
    acache *c = mm_open(mm_catalog(1, 1), 1);
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK);
    /* first resolve name in key order is the direct match (skipped) */
    cr_assert_eq(acache__model_mapping_stats_breakdown(s, ACACHE_MM_GLOBAL_MODEL_RESOLVE),
                 4);
    cr_assert_eq(acache__model_mapping_stats_mapping_count(s), 0);
    cr_assert_eq(acache__model_mapping_stats_unmapped_count(s), 0);
    acache__model_mapping_stats_free(s);
    mm_done(c);
}

Test(MM_SUITE, clear_model_literal_name)
{
    acache *c = mm_open(NULL, 0);
    /* keys a glob "weird*name?[x]" would match */
    mm_set(c, "global_model:resolve:weirdABCnameZx", "NOT_FOUND");
    mm_set(c, "global_model:name:weird-name-x", "{}");
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(MM_CLEAR_MODEL_JSON(&b, c, "weird*name?[x]"), ACACHE_OK);
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared model mapping cache "
                     "for weird*name?[x]\", \"model_name\": \"weird*name?[x]\", "
                     "\"deleted_keys\": [\"global_model:resolve:weird*name?[x]\"]}");
    cr_assert(mm_exists(c, "global_model:resolve:weirdABCnameZx"));
    cr_assert(mm_exists(c, "global_model:name:weird-name-x"));
    cr_assert(!mm_exists(c, "global_model:resolve:weird*name?[x]"));

    unsigned int bits = 99;
    cr_assert_eq(MM_CLEAR_MODEL(&bits, c, "claude-sonnet-4-5"), ACACHE_OK);
    cr_assert_eq(bits, ACACHE_MM_CLEARED_RESOLVE | ACACHE_MM_CLEARED_NAME);
    cr_assert_eq(MM_CLEAR_MODEL_JSON(&b, c, "claude-sonnet-4-5"), ACACHE_OK);
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared model mapping cache "
                     "for claude-sonnet-4-5\", \"model_name\": \"claude-sonnet-4-5\", "
                     "\"deleted_keys\": []}");
    cr_assert_eq(MM_CLEAR_MODEL(&bits, c, ""), ACACHE_EINVALID);
    acache_buf_dispose(&b);
    mm_done(c);
}

Test(MM_SUITE, clear_provider)
{
    acache *c = mm_open(NULL, 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(MM_CLEAR_PROVIDER_JSON(&b, c, PROV, GM_ID), ACACHE_OK);
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared provider model mapping "
                     "cache for " PROV ":" GM_ID "\", \"provider_id\": \"" PROV "\", "
                     "\"global_model_id\": \"" GM_ID "\", \"deleted_keys\": "
                     "[\"model:provider_global:" PROV ":" GM_ID "\", "
                     "\"model:provider_global:hits:" PROV ":" GM_ID "\"]}");
    cr_assert(mm_exists(c, "model:id:c9d8e7f6-a5b4-4c3d-9e2f-1a0b9c8d7e6f"));
    unsigned int bits = 99;
    cr_assert_eq(MM_CLEAR_PROVIDER(&bits, c, PROV, GM_ID), ACACHE_OK);
    cr_assert_eq(bits, 0);
    cr_assert_eq(MM_CLEAR_PROVIDER(&bits, c, PROV, NULL), ACACHE_EINVALID);
    /* glob characters are literal here too */
    mm_set(c, "model:provider_global:p1:g1", "{}");
    cr_assert_eq(MM_CLEAR_PROVIDER(&bits, c, "p*", "g?"), ACACHE_OK);
    cr_assert_eq(bits, 0);
    cr_assert(mm_exists(c, "model:provider_global:p1:g1"));
    acache_buf_dispose(&b);
    mm_done(c);
}

Test(MM_SUITE, clear_all_leaves_other_keys)
{
    acache *c = mm_open(NULL, 0);
    mm_set(c, "modelx:other", "1");
    mm_set(c, "cache_affinity:k:CLAUDE:m",
           "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
           "\"created_at\": 1.0, \"expire_at\": 4102444800.0, \"request_count\": 1}");
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(MM_CLEAR_ALL_JSON(&b, c), ACACHE_OK);
    cr_assert_str_eq(b.ptr, "{\"status\": \"ok\", \"message\": \"Cleared 9 model mapping "
                            "cache keys\", \"deleted_count\": 9}");
    cr_assert(mm_exists(c, "modelx:other"));
    cr_assert(mm_exists(c, "cache_affinity:k:CLAUDE:m"));
    mm_expect_stats(c, "{\"status\": \"ok\", \"data\": {\"available\": true, "
                       "\"ttl_seconds\": 300, \"total_keys\": 0, \"breakdown\": "
                       "{\"model_by_id\": 0, \"model_by_provider_global\": 0, "
                       "\"global_model_by_id\": 0, \"global_model_by_name\": 0, "
                       "\"global_model_resolve\": 0}, \"mappings\": [], "
                       "\"provider_model_mappings\": null, \"unmapped\": null}}");
    acache_store *s = acache_handle_store(c);
    size_t d = 0;
    const acache_key keys[] = {{"modelx:other", 12}, {"cache_affinity:k:CLAUDE:m", 25}};
    s->del(s, keys, 2, &d);
    acache_buf_dispose(&b);
    mm_done(c);
}

/* Issue 8 item 14: a resolve value is classified as Aether reads it. JSON that
 * is not an object (Aether's `.get` on it raises) and bytes that are not UTF-8
 * (its decode() raises) are "error" with ttl null; invalid JSON stays
 * "invalid" with its TTL; an empty value is omitted but still counted. */
Test(MM_SUITE, resolve_value_shapes)
{
    acache *c = mm_open(NULL, 0);
    mm_set(c, "global_model:resolve:a-array", "[{\"name\": \"claude-sonnet-4-5\"}]");
    mm_set(c, "global_model:resolve:b-empty", "");
    mm_set(c, "global_model:resolve:c-string", "\"claude-sonnet-4-5\"");
    mm_set(c, "global_model:resolve:d-number", "5");
    mm_set(c, "global_model:resolve:e-null", "null");
    mm_set(c, "global_model:resolve:f-latin1", "{\"name\": \"caf\xe9\"}");
    mm_set(c, "global_model:resolve:g-blank", " ");
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(MM_STATS(&s, c), ACACHE_OK, "%s", acache_last_error());
    cr_assert_eq(acache__model_mapping_stats_breakdown(s, ACACHE_MM_GLOBAL_MODEL_RESOLVE),
                 11);
    cr_assert_eq(acache__model_mapping_stats_unmapped_count(s), 8);
    cr_assert_str_eq(acache__model_mapping_stats_unmapped_name(s, 0), "a-array");
    cr_assert_eq(acache__model_mapping_stats_unmapped_status(s, 0), ACACHE_MM_ERROR);
    cr_assert_eq(acache__model_mapping_stats_unmapped_ttl(s, 0), -1);
    acache__model_mapping_stats_free(s);
    mm_expect_stats(
        c,
        "{\"status\": \"ok\", \"data\": {\"available\": true, \"ttl_seconds\": 300, "
        "\"total_keys\": 15, \"breakdown\": {\"model_by_id\": 1, "
        "\"model_by_provider_global\": 1, \"global_model_by_id\": 1, "
        "\"global_model_by_name\": 1, \"global_model_resolve\": 11}, "
        "\"mappings\": [{\"mapping_name\": \"claude-sonnet-4-5-20250929\", "
        "\"global_model_name\": \"claude-sonnet-4-5\", \"global_model_display_name\": "
        "\"Claude Sonnet 4.5\", \"providers\": [], \"ttl\": 300}], "
        "\"provider_model_mappings\": [{\"provider_id\": \"" PROV "\", "
        "\"provider_name\": null, \"global_model_id\": \"" GM_ID "\", "
        "\"global_model_name\": null, \"global_model_display_name\": null, "
        "\"provider_model_name\": \"claude-sonnet-4-5-20250929\", \"aliases\": "
        "[\"sonnet\", \"claude-3-7-sonnet\"], \"ttl\": 300, \"hit_count\": 17}], "
        "\"unmapped\": ["
        "{\"mapping_name\": \"a-array\", \"status\": \"error\", \"ttl\": null}, "
        "{\"mapping_name\": \"c-string\", \"status\": \"error\", \"ttl\": null}, "
        "{\"mapping_name\": \"d-number\", \"status\": \"error\", \"ttl\": null}, "
        "{\"mapping_name\": \"e-null\", \"status\": \"error\", \"ttl\": null}, "
        "{\"mapping_name\": \"f-latin1\", \"status\": \"error\", \"ttl\": null}, "
        "{\"mapping_name\": \"g-blank\", \"status\": \"invalid\", \"ttl\": 300}, "
        "{\"mapping_name\": \"gpt-9-turbo\", \"status\": \"not_found\", \"ttl\": 300}, "
        "{\"mapping_name\": \"weird*name?[x]\", \"status\": \"invalid\", "
        "\"ttl\": 300}]}}");
    mm_done(c);
}

/* Issue 8 item 14: the keys of `data` come in Aether's order. */
Test(MM_SUITE, stats_key_order)
{
    acache *c = mm_open(mm_catalog(1, 1), 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(MM_STATS_JSON(&b, c), ACACHE_OK, "%s", acache_last_error());
    const char *m = strstr(b.ptr, "\"mappings\": ");
    const char *p = strstr(b.ptr, "\"provider_model_mappings\": ");
    const char *u = strstr(b.ptr, "\"unmapped\": ");
    cr_assert(m && p && u && m < p && p < u, "%s", b.ptr);
    acache_buf_dispose(&b);
    mm_done(c);
}

#endif
