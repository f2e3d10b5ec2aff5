/* Model-mapping cache on a private redis-server, through the public functions
 * (the same cases as tests/unit/mapping on the memory store). */
#define MM_SUITE mapping_redis
#define MM_STATS acache_model_mapping_stats_get
#define MM_STATS_JSON acache_model_mapping_stats_json
#define MM_CLEAR_ALL acache_model_mapping_clear_all
#define MM_CLEAR_ALL_JSON acache_model_mapping_clear_all_json
#define MM_CLEAR_MODEL acache_model_mapping_clear_model
#define MM_CLEAR_MODEL_JSON acache_model_mapping_clear_model_json
#define MM_CLEAR_PROVIDER acache_model_mapping_clear_provider
#define MM_CLEAR_PROVIDER_JSON acache_model_mapping_clear_provider_json

#include "../unit/mapping/mapping_cases.h"

Test(mapping_redis, store_is_redis)
{
    acache *c = th_open(NULL);
    cr_assert_str_eq(acache_store_type(c), "redis");
    acache_close(c);
}
