/* Backend vtables by capability (issue 9 item 2): ACACHE_STORE_INIT /
 * acache_store_init and the catalog twin, the store capability word, and the
 * catalog's optional analysis slot (version 1 catalogs accepted, a missing
 * slot or EUNSUPPORTED = the generic C path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/catalog.h>
#include <aether_cache/sys/store.h>

#include "../analysis/worked_data.h"
#include "core/core.h"

Test(backends, store_init)
{
    acache_store s = ACACHE_STORE_INIT;
    cr_assert_eq(s.version, ACACHE_STORE_VERSION);
    cr_assert_null(s.affinity_get);
    cr_assert_eq(s.caps, 0);
    memset(&s, 0xA5, sizeof s);
    cr_assert_eq(acache_store_init(&s, ACACHE_STORE_VERSION), ACACHE_OK);
    cr_assert_eq(s.version, ACACHE_STORE_VERSION);
    cr_assert_null(s.scan);
    cr_assert_null(s.free);
    cr_assert_eq(s.caps, 0);
    /* Version 1 had other delete signatures: not accepted (store.h). */
    cr_assert_eq(acache_store_init(&s, 1), ACACHE_EINVALID);
    cr_assert_eq(acache_store_init(&s, ACACHE_STORE_VERSION + 1), ACACHE_EINVALID);
    cr_assert_eq(acache_store_init(NULL, ACACHE_STORE_VERSION), ACACHE_EINVALID);
}

Test(backends, catalog_init)
{
    acache_catalog k = ACACHE_CATALOG_INIT;
    cr_assert_eq(k.version, 2);
    cr_assert_null(k.analysis);
    memset(&k, 0xA5, sizeof k);
    cr_assert_eq(acache_catalog_init(&k, 1), ACACHE_OK);
    cr_assert_eq(k.version, 1);
    cr_assert_null(k.users);
    cr_assert_null(k.analysis);
    cr_assert_eq(acache_catalog_init(&k, 2), ACACHE_OK);
    cr_assert_eq(acache_catalog_init(&k, 0), ACACHE_EINVALID);
    cr_assert_eq(acache_catalog_init(&k, 3), ACACHE_EINVALID);
    cr_assert_eq(acache_catalog_init(NULL, 2), ACACHE_EINVALID);
}

/* The L1 follows ACACHE_STORE_CAP_REMOTE, not the store's name. */
Test(backends, l1_follows_remote_capability)
{
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, NULL), ACACHE_OK);
    cr_assert_eq(acache__store_caps(acache_handle_store(c)), 0, "memory store: no caps");
    cr_assert_null(c->l1);
    acache_close(c);

    acache_store *s = NULL;
    cr_assert_eq(acache__store_memory_new(&s), ACACHE_OK);
    s->caps |= ACACHE_STORE_CAP_REMOTE;
    cr_assert_eq(acache_open_with_store(&c, NULL, s), ACACHE_OK);
    cr_assert_not_null(c->l1);
    cr_assert_str_eq(acache_store_type(c), "memory");
    acache_close(c);
}

/* A provider invalidation gives the same result with and without the byte
 * pre-filter (CAP_JSON_VALUES: the memory store's raw scan renders JSON). */
Test(backends, provider_invalidation_with_json_values_capability)
{
    for (int cap = 0; cap < 2; cap++) {
        acache_store *s = NULL;
        cr_assert_eq(acache__store_memory_new(&s), ACACHE_OK);
        if (cap)
            s->caps |= ACACHE_STORE_CAP_JSON_VALUES;
        acache *c = NULL;
        cr_assert_eq(acache_open_with_store(&c, NULL, s), ACACHE_OK);
        const char *provs[3] = {"p-1", "p-2", "p-1"};
        const char *keys[3] = {"k1", "k2", "k3"};
        for (int i = 0; i < 3; i++) {
            acache_touch t = ACACHE_TOUCH_INIT;
            t.affinity_key = keys[i];
            t.api_format = "openai";
            t.model_name = "m";
            t.provider_id = provs[i];
            t.endpoint_id = "e";
            t.key_id = "pk";
            cr_assert_eq(acache_affinity_touch(NULL, c, &t), ACACHE_OK, "%s",
                         acache_last_error());
        }
        size_t n = 0;
        cr_assert_eq(acache__affinity_invalidate_provider(&n, c, "p-1"), ACACHE_OK);
        cr_assert_eq(n, 2, "cap %d", cap);
        acache_affinity *a = NULL;
        cr_assert_eq(acache_affinity_get(&a, c, "k2", "openai", "m"), ACACHE_OK);
        acache_affinity_free(a);
        acache_close(c);
    }
}

/* ---- the catalog analysis slot ---- */

static char g_path[64];

static acache_catalog *worked_catalog(void)
{
    strcpy(g_path, "/tmp/acache-backends-XXXXXX");
    int fd = mkstemp(g_path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, WORKED_EPOCH, strlen(WORKED_EPOCH)),
                 (ssize_t)strlen(WORKED_EPOCH));
    close(fd);
    acache_catalog *cat = NULL;
    cr_assert_eq(acache__catalog_open(&cat, g_path), ACACHE_OK, "%s",
                 acache_last_error());
    return cat;
}

static double fixed_clock(void *payload)
{
    (void)payload;
    return WORKED_NOW;
}

static acache *open_with(acache_catalog *cat)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.clock = fixed_clock;
    acache *c = NULL;
    cr_assert_eq(acache_open_with_backends(&c, &o, NULL, cat), ACACHE_OK, "%s",
                 acache_last_error());
    return c;
}

static void bodies_are(acache *c, const char *ttl, const char *hits)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_ttl_analysis(&b, c, 168, NULL, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_str_eq(b.ptr, ttl);
    cr_assert_eq(acache_hit_analysis(&b, c, 168, NULL, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_str_eq(b.ptr, hits);
    cr_assert_eq(acache_interval_timeline(&b, c, 24, 10000, NULL, 1), ACACHE_OK);
    cr_assert_str_eq(b.ptr, TL_MULTI);
    acache_buf_dispose(&b);
}

static int must_not_run(acache_catalog *self, const acache_analysis_query *q,
                        acache_analysis_cb cb, void *payload)
{
    (void)self, (void)q, (void)cb, (void)payload;
    cr_assert_fail("a version 1 catalog's analysis field was read");
    return ACACHE_ERROR;
}

Test(backends, json_catalog_has_no_analysis_slot)
{
    acache_catalog *cat = worked_catalog();
    cr_assert_eq(cat->version, ACACHE_CATALOG_VERSION);
    cr_assert_null(cat->analysis);
    acache *c = open_with(cat);
    bodies_are(c, TTL_ALL, HIT_ALL);
    acache_close(c);
    unlink(g_path);
}

/* A version 1 catalog: nothing past `free` is read (here a poisoned slot). */
Test(backends, version_1_catalog_runs_the_generic_path)
{
    acache_catalog *cat = worked_catalog();
    cat->version = 1;
    cat->analysis = must_not_run;
    acache *c = open_with(cat);
    bodies_are(c, TTL_ALL, HIT_ALL);
    cat->analysis = NULL; /* the JSON catalog's free() does not care */
    acache_close(c);
    unlink(g_path);
}

static int g_calls;

/* Answers HITS with fixed sums, declines the other kinds. */
static int hits_only(acache_catalog *self, const acache_analysis_query *q,
                     acache_analysis_cb cb, void *payload)
{
    (void)self;
    g_calls++;
    if (q->kind != ACACHE_ANALYSIS_HITS)
        return acache_error_set(ACACHE_EUNSUPPORTED, "not this one");
    cr_assert_null(q->user_id);
    cr_assert_null(q->api_key_id);
    /* 168 h before now, inclusive: the first microsecond of the window. */
    cr_assert_eq(q->min_created_us, (int64_t)(WORKED_NOW - 168 * 3600) * 1000000);
    acache_analysis_row row = {.kind = ACACHE_ANALYSIS_HITS};
    row.as.hits.requests = 4;
    row.as.hits.requests_with_hit = 1;
    row.as.hits.input_tokens = 30;
    row.as.hits.cache_read_tokens = 10;
    row.as.hits.cache_read_cost_usd = 0.5;
    return cb(&row, payload);
}

Test(backends, analysis_slot_answers_or_declines)
{
    acache_catalog *cat = worked_catalog();
    cat->analysis = hits_only;
    acache *c = open_with(cat);
    g_calls = 0;
    bodies_are(
        c, TTL_ALL,
        "{\"analysis_period_hours\": 168, \"total_requests\": 4, "
        "\"requests_with_cache_hit\": 1, \"request_cache_hit_rate\": 25.0, "
        "\"total_input_tokens\": 30, \"total_cache_read_tokens\": 10, "
        "\"total_cache_creation_tokens\": 0, \"token_cache_hit_rate\": 25.0, "
        "\"total_cache_read_cost_usd\": 0.5, \"total_cache_creation_cost_usd\": 0.0, "
        "\"estimated_savings_usd\": 4.5}");
    cr_assert_eq(g_calls, 3, "asked once per analysis");
    /* A declined kind leaves no error behind. */
    cr_assert_eq(acache_last_error()[0], '\0');
    cat->analysis = NULL;
    acache_close(c);
    unlink(g_path);
}
