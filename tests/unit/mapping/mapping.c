/* Model-mapping cache on the memory store granted ACACHE_STORE_CAP_RAW_KEYS
 * (the feature asks the capability, never the store's name); without the
 * capability the public functions report "Redis not enabled", as Aether. */
#include "core/core.h"
#include "mapping/mapping_priv.h"

#define MM_SUITE mapping_memory
#define MM_STORE_CAPS ACACHE_STORE_CAP_RAW_KEYS
#define MM_STATS acache__model_mapping_stats_get
#define MM_STATS_JSON acache_model_mapping_stats
#define MM_CLEAR_ALL acache__model_mapping_clear_all
#define MM_CLEAR_ALL_JSON acache_model_mapping_clear_all
#define MM_CLEAR_MODEL acache__model_mapping_clear_model
#define MM_CLEAR_MODEL_JSON acache_model_mapping_clear_model
#define MM_CLEAR_PROVIDER acache__model_mapping_clear_provider
#define MM_CLEAR_PROVIDER_JSON acache_model_mapping_clear_provider

#include "mapping_cases.h"

Test(mapping_memory, without_raw_keys_capability_says_redis_not_enabled)
{
    acache *c = mm_open(NULL, 0);
    cr_assert_eq(acache__store_caps(acache_handle_store(c)), ACACHE_STORE_CAP_RAW_KEYS);
    acache_handle_store(c)->caps = 0; /* the memory store as acache_open makes it */
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_model_mapping_stats(&b, c), ACACHE_OK);
    cr_assert_str_eq(b.ptr, "{\"status\": \"ok\", \"data\": {\"available\": false, "
                            "\"message\": \"Redis not enabled\"}}");
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(acache__model_mapping_stats_get(&s, c), ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_available(s), 0);
    cr_assert_str_eq(acache__model_mapping_stats_message(s), "Redis not enabled");
    cr_assert_eq(acache__model_mapping_stats_ttl_seconds(s), 300);
    acache__model_mapping_stats_free(s);

    size_t n = 7;
    unsigned int bits = 7;
    cr_assert_eq(acache__model_mapping_clear_all(&n, c), ACACHE_EUNSUPPORTED);
    cr_assert_eq(n, 0);
    cr_assert(strstr(acache_last_error(), "Redis not enabled") != NULL);
    cr_assert_eq(acache_http_status(ACACHE_EUNSUPPORTED), 503);
    cr_assert_eq(acache__model_mapping_clear_model(&bits, c, "x"), ACACHE_EUNSUPPORTED);
    cr_assert_eq(acache__model_mapping_clear_provider(&bits, c, "p", "g"),
                 ACACHE_EUNSUPPORTED);
    cr_assert_eq(acache_model_mapping_clear_all(&b, c), ACACHE_EUNSUPPORTED);
    cr_assert_eq(acache_model_mapping_clear_model(&b, c, "x"), ACACHE_EUNSUPPORTED);
    cr_assert_eq(acache_model_mapping_clear_provider(&b, c, "p", "g"),
                 ACACHE_EUNSUPPORTED);
    /* nothing was deleted */
    cr_assert(mm_exists(c, "global_model:resolve:gpt-9-turbo"));
    acache_buf_dispose(&b);
    mm_done(c);
}

Test(mapping_memory, ttl_setting_is_reported)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.mapping_ttl_s = 600;
    acache *c = th_open(&o);
    acache_handle_store(c)->caps |= ACACHE_STORE_CAP_RAW_KEYS;
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(acache__model_mapping_stats_get(&s, c), ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_ttl_seconds(s), 600);
    cr_assert_eq(acache__model_mapping_stats_total_keys(s), 0);
    acache__model_mapping_stats_free(s);
    acache_close(c);
}
