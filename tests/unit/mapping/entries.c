/* The model-mapping stats logic on raw entries (keys and values as bytes with
 * lengths, as a scan hands them over), without a store. The memory store
 * cannot hold a key with a NUL byte (its set slot takes a NUL-terminated
 * name), so these cases feed such keys straight to the census; the same keys
 * on a real redis-server are in tests/integration/mapping_redis.c. */
#include <string.h>

#include <criterion/criterion.h>

#include "mapping/mapping_priv.h"

#define E(k, v)                                                                          \
    {                                                                                    \
        k, sizeof(k) - 1, NULL, v, sizeof(v) - 1                                         \
    }
#define GONE(k)                                                                          \
    {                                                                                    \
        k, sizeof(k) - 1, NULL, NULL, 0                                                  \
    }

static char *render(const acache_entry *e, size_t n, int64_t ttl)
{
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(acache__model_mapping_stats_from_entries(&s, e, n, NULL, 300, 0, ttl),
                 ACACHE_OK, "%s", acache_last_error());
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache__model_mapping_stats_render(&b, s), ACACHE_OK);
    acache__model_mapping_stats_free(s);
    return b.ptr; /* the caller frees */
}

/* Issue 8 item 1, the exact repro: the ':' is found past the NUL. */
Test(mapping_entries, nul_in_provider_global_key)
{
    const acache_entry e[] = {
        E("model:provider_global:p", "{\"provider_model_name\": \"x\"}"),
        E("model:provider_global:p\0:g", "x"),
        E("model:provider_global:q\0r:g", "{\"provider_model_name\": \"y\", "
                                          "\"provider_model_mappings\": "
                                          "[{\"name\": \"a\\u0000b\"}]}"),
        E("model:provider_global:hits:q\0r:g", "7"),
    };
    char *j = render(e, sizeof e / sizeof e[0], 60);
    cr_assert_str_eq(
        j, "{\"status\": \"ok\", \"data\": {\"available\": true, \"ttl_seconds\": 300, "
           "\"total_keys\": 3, \"breakdown\": {\"model_by_id\": 0, "
           "\"model_by_provider_global\": 3, \"global_model_by_id\": 0, "
           "\"global_model_by_name\": 0, \"global_model_resolve\": 0}, \"mappings\": [], "
           "\"provider_model_mappings\": [{\"provider_id\": \"q\\u0000r\", "
           "\"provider_name\": null, \"global_model_id\": \"g\", \"global_model_name\": "
           "null, \"global_model_display_name\": null, \"provider_model_name\": \"y\", "
           "\"aliases\": [\"a\\u0000b\"], \"ttl\": 60, \"hit_count\": 7}], "
           "\"unmapped\": null}}");
    free(j);
}

/* A resolve name with a NUL is its own entry, not the name before the NUL;
 * values that are gone or empty are omitted. */
Test(mapping_entries, nul_in_resolve_key)
{
    const acache_entry e[] = {
        E("global_model:resolve:m", "NOT_FOUND"),
        E("global_model:resolve:m\0", "{\"id\": \"g\", \"name\": \"m\"}"),
        E("global_model:resolve:m\0z", "[]"),
        GONE("global_model:resolve:gone"),
        E("global_model:resolve:empty", ""),
        E("global_model:resolve:\xff", "NOT_FOUND"),
    };
    char *j = render(e, sizeof e / sizeof e[0], 0);
    cr_assert_str_eq(
        j,
        "{\"status\": \"ok\", \"data\": {\"available\": true, \"ttl_seconds\": 300, "
        "\"total_keys\": 6, \"breakdown\": {\"model_by_id\": 0, "
        "\"model_by_provider_global\": 0, \"global_model_by_id\": 0, "
        "\"global_model_by_name\": 0, \"global_model_resolve\": 6}, "
        "\"mappings\": [{\"mapping_name\": \"m\\u0000\", \"global_model_name\": \"m\", "
        "\"global_model_display_name\": null, \"providers\": [], \"ttl\": null}], "
        "\"provider_model_mappings\": null, \"unmapped\": ["
        "{\"mapping_name\": \"m\", \"status\": \"not_found\", \"ttl\": null}, "
        "{\"mapping_name\": \"m\\u0000z\", \"status\": \"error\", \"ttl\": null}, "
        "{\"mapping_name\": \"\xef\xbf\xbd\", \"status\": \"not_found\", "
        "\"ttl\": null}]}}");
    free(j);
}

/* Repeated keys (SCAN may return one twice) are listed once, counted twice
 * as Aether counts them; the cap keeps the first names in byte order. */
Test(mapping_entries, repeats_and_cap)
{
    const acache_entry e[] = {
        E("global_model:resolve:b", "NOT_FOUND"),
        E("global_model:resolve:a", "NOT_FOUND"),
        E("global_model:resolve:b", "NOT_FOUND"),
    };
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(acache__model_mapping_stats_from_entries(&s, e, 3, NULL, 300, 1, 5),
                 ACACHE_OK);
    /* A key SCAN returned twice is one key: the breakdown counts distinct keys
     * (Aether's scan_iter count would include the repeat; that number depends
     * on the server's rehashing, so it is not one to reproduce). */
    cr_assert_eq(acache__model_mapping_stats_breakdown(s, ACACHE_MM_GLOBAL_MODEL_RESOLVE),
                 2);
    cr_assert_eq(acache__model_mapping_stats_unmapped_count(s), 1);
    cr_assert_str_eq(acache__model_mapping_stats_unmapped_name(s, 0), "a");
    cr_assert_eq(acache__model_mapping_stats_unmapped_ttl(s, 0), 5);
    acache__model_mapping_stats_free(s);
    cr_assert_eq(acache__model_mapping_stats_from_entries(&s, e, 3, NULL, 300, 0, 5),
                 ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_unmapped_count(s), 2);
    acache__model_mapping_stats_free(s);
}
