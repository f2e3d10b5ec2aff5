/* The README's API tour, compiled with the examples so it cannot rot. */
#include <stdio.h>

#include <aether_cache/aether_cache.h>

int main(void)
{
    acache_options opts = ACACHE_OPTIONS_INIT;
    opts.store_uri = "memory://"; /* or "redis://127.0.0.1:6379/0" */
    acache *c = NULL;
    int rc = acache_open(&c, &opts);
    if (rc < 0) {
        fprintf(stderr, "open: %s: %s\n", acache_strerror(rc), acache_last_error());
        return 1;
    }

    /* Gateway hot path: look up the pin, then record the request. */
    acache_affinity *pin = NULL;
    if (acache_affinity_get(&pin, c, "client-key-id", "claude", "global-model-id") ==
        ACACHE_ENOTFOUND)
        puts("no pin yet: schedule freely");
    acache_affinity_free(pin);

    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = "client-key-id";
    t.api_format = "claude";
    t.model_name = "global-model-id";
    t.provider_id = "provider-id";
    t.endpoint_id = "endpoint-id";
    t.key_id = "provider-key-id";
    acache_touch_result result;
    if (acache_affinity_touch(&result, c, &t) == ACACHE_OK &&
        result == ACACHE_TOUCH_CREATED)
        puts("pinned");

    if (acache_affinity_get(&pin, c, "client-key-id", "claude", "global-model-id") ==
        ACACHE_OK) {
        printf("pinned to key %s, %lld requests\n", acache_affinity_key_id(pin),
               (long long)acache_affinity_request_count(pin));
        acache_affinity_free(pin);
    }

    /* Operator side: reports are the admin HTTP bodies, as JSON (docs/http-api.md). */
    acache_buf body = ACACHE_BUF_INIT;
    acache_list_query q = ACACHE_LIST_QUERY_INIT; /* keyword, limit, offset */
    if (acache_list_affinities(&body, c, &q) == ACACHE_OK)
        printf("%s\n", body.ptr); /* {"status": "ok", "data": {"items": ...}} */
    acache_buf_dispose(&body);    /* the one release function of acache_buf */

    /* One entry point removes pins: one pin, a client key, a user, a provider, all. */
    acache_target target = ACACHE_TARGET_INIT;
    target.kind = ACACHE_TARGET_PROVIDER;
    target.provider_id = "provider-id";
    size_t removed = 0;
    acache_invalidate(&removed, c, &target);
    printf("removed %zu pins\n", removed);

    acache_close(c);
    return 0;
}
