/* acache-demo: a guided tour on the embedded defaults (memory store, JSON
 * catalog), all in one process since memory:// lives in the process.
 *
 *   acache-demo CATALOG.json TRAFFIC.jsonl
 *
 * Records the traffic through the library, then prints what an operator sees:
 * the enriched listing with masked keys, one user's pins, an invalidation,
 * stats, Prometheus metrics, the model-mapping stats and a TTL
 * recommendation. The clock is pinned to the catalog's "_demo_now" so the
 * usage rows always fall inside the analysis window (the CLI's --now does the
 * same). scripts/demo.sh prints where the programs are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <aether_cache/aether_cache.h>
#include <jansson.h>

static double demo_now;

static double demo_clock(void *payload)
{
    (void)payload;
    return demo_now;
}

static void section(const char *title)
{
    printf("\n==== %s ====\n", title);
}

/* Print a JSON body re-indented, or the error as the HTTP server would. */
static void show(int rc, acache_buf *b)
{
    if (rc != ACACHE_OK) {
        printf("(HTTP %d) %s: %s\n", acache_http_status(rc), acache_strerror(rc),
               acache_last_error());
        return;
    }
    acache_buf p = ACACHE_BUF_INIT;
    if (acache_json_reformat(&p, b->ptr, b->size, 2) == ACACHE_OK)
        printf("%s\n", p.ptr);
    else
        printf("%s\n", b->ptr);
    acache_buf_dispose(&p);
    acache_buf_dispose(b);
}

/* The TTL recommendations in plain English, from the report's numbers: the JSON
 * keeps Aether's Chinese recommendation_reason (docs/analysis.md translates it). */
static void explain_ttl(acache *c, int hours)
{
    acache_buf b = ACACHE_BUF_INIT;
    if (acache_ttl_analysis(&b, c, hours, NULL, NULL) != ACACHE_OK)
        return;
    json_t *root = json_loadb(b.ptr, b.size, 0, NULL);
    acache_buf_dispose(&b);
    printf(
        "In English (recommendation_reason above is Aether's text, kept for its UI):\n");
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(root, "users"), i, g)
    {
        const char *who = json_string_value(json_object_get(g, "username"));
        if (!who)
            who = json_string_value(json_object_get(g, "group_id"));
        int ttl = (int)json_integer_value(json_object_get(g, "recommended_ttl_minutes"));
        json_t *pct = json_object_get(g, "percentiles");
        if (ttl <= 5)
            printf("  %s: TTL %d min: high-frequency, 90%% of request gaps within %.2f "
                   "min\n",
                   who, ttl, json_number_value(json_object_get(pct, "p90")));
        else
            printf("  %s: TTL %d min: %s, 75%% of request gaps within %.2f min\n", who,
                   ttl,
                   ttl <= 15   ? "medium-high frequency"
                   : ttl <= 30 ? "medium frequency"
                               : "low frequency (a long TTL)",
                   json_number_value(json_object_get(pct, "p75")));
    }
    json_decref(root);
}

static int replay(acache *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[4096];
    int n = 0, created = 0, refreshed = 0, switched = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            continue;
        acache_touch t = ACACHE_TOUCH_INIT;
        t.affinity_key = json_string_value(json_object_get(o, "affinity_key"));
        t.api_format = json_string_value(json_object_get(o, "api_format"));
        t.model_name = json_string_value(json_object_get(o, "model"));
        t.provider_id = json_string_value(json_object_get(o, "provider_id"));
        t.endpoint_id = json_string_value(json_object_get(o, "endpoint_id"));
        t.key_id = json_string_value(json_object_get(o, "key_id"));
        /* As a gateway does: look the pin up, schedule, then record. */
        acache_affinity *pin = NULL;
        int hit = acache_affinity_get(&pin, c, t.affinity_key, t.api_format,
                                      t.model_name) == ACACHE_OK;
        acache_affinity_free(pin);
        acache_scheduler_record_batch(c, 3);
        acache_scheduler_record_candidates(c, 3);
        acache_scheduler_record_cache(c, hit);
        acache_scheduler_record_request(c, t.api_format, t.model_name);
        acache_touch_result r;
        if (acache_affinity_touch(&r, c, &t) == ACACHE_OK) {
            n++;
            created += r == ACACHE_TOUCH_CREATED;
            refreshed += r == ACACHE_TOUCH_REFRESHED;
            switched += r == ACACHE_TOUCH_SWITCHED;
        } else {
            fprintf(stderr, "touch: %s\n", acache_last_error());
        }
        demo_now += 3; /* requests arrive over a few minutes */
        json_decref(o);
    }
    fclose(f);
    printf("recorded %d requests: %d new pins, %d refreshed, %d key switches\n", n,
           created, refreshed, switched);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: acache-demo CATALOG.json TRAFFIC.jsonl\n");
        return 2;
    }
    json_t *cat = json_load_file(argv[1], 0, NULL);
    json_t *now = cat ? json_object_get(cat, "_demo_now") : NULL;
    demo_now = json_is_number(now) ? json_number_value(now) : 1764000000.0;
    json_decref(cat);

    acache_options opts = ACACHE_OPTIONS_INIT;
    opts.store_uri = "memory://";
    opts.catalog_uri = argv[1];
    opts.encryption_key = "demo-encryption-key"; /* the example catalog's key */
    opts.clock = demo_clock;
    acache *c = NULL;
    int rc = acache_open(&c, &opts);
    if (rc) {
        fprintf(stderr, "open: %s: %s\n", acache_strerror(rc), acache_last_error());
        return 3;
    }
    acache_buf b = ACACHE_BUF_INIT;

    section("1. gateway traffic recorded through acache_affinity_touch()");
    if (replay(c, argv[2]))
        return 3;

    section("2. enriched listing (GET /affinities?limit=3): names and masked keys");
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.limit = 3;
    show(acache_list_affinities(&b, c, &q), &b);

    section("3. one user's pins (GET /affinity/alice)");
    show(acache_user_affinities(&b, c, "alice"), &b);

    section("4. invalidate alice's pins (DELETE /users/alice)");
    acache_target alice = ACACHE_TARGET_INIT;
    alice.kind = ACACHE_TARGET_USER;
    alice.identifier = "alice";
    show(acache_invalidate_json(&b, c, &alice), &b);

    section("5. stats (GET /stats)");
    show(acache_stats_json(&b, c), &b);

    section("6. Prometheus metrics (GET /metrics)");
    if (acache_metrics_text(&b, c) == ACACHE_OK)
        fwrite(b.ptr, 1, b.size, stdout);
    acache_buf_dispose(&b);

    section("7. model-mapping cache (only a Redis store has one)");
    show(acache_model_mapping_stats(&b, c), &b);

    section("8. TTL recommendation from the catalog's usage rows (hours=168)");
    show(acache_ttl_analysis(&b, c, 168, NULL, NULL), &b);
    explain_ttl(c, 168);

    section("9. cache-hit analysis (hours=168)");
    show(acache_hit_analysis(&b, c, 168, NULL, NULL), &b);

    acache_close(c);
    return 0;
}
