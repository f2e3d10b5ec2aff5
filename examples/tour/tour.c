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
    if (acache_affinity_touch(&result, c, &t) == ACACHE_OK && result == ACACHE_TOUCH_CREATED)
        puts("pinned");

    if (acache_affinity_get(&pin, c, "client-key-id", "claude", "global-model-id") == ACACHE_OK) {
        printf("pinned to key %s, %lld requests\n", acache_affinity_key_id(pin),
               (long long)acache_affinity_request_count(pin));
        acache_affinity_free(pin);
    }

    /* Operator side: every admin operation also has a JSON form. */
    acache_buf body = ACACHE_BUF_INIT;
    if (acache_stats_json(&body, c) == ACACHE_OK)
        printf("%s\n", body.ptr);
    acache_buf_dispose(&body);

    size_t removed = 0;
    acache_affinity_invalidate_provider(&removed, c, "provider-id");
    printf("removed %zu pins\n", removed);

    acache_close(c);
    return 0;
}
