/* Model-mapping cache on a private redis-server, through the public functions
 * (the same cases as tests/unit/mapping on the memory store). */
#define MM_SUITE mapping_redis
#define MM_STATS acache__model_mapping_stats_get
#define MM_STATS_JSON acache_model_mapping_stats
#define MM_CLEAR_ALL acache__model_mapping_clear_all
#define MM_CLEAR_ALL_JSON acache_model_mapping_clear_all
#define MM_CLEAR_MODEL acache__model_mapping_clear_model
#define MM_CLEAR_MODEL_JSON acache_model_mapping_clear_model
#define MM_CLEAR_PROVIDER acache__model_mapping_clear_provider
#define MM_CLEAR_PROVIDER_JSON acache_model_mapping_clear_provider

#include <hiredis/hiredis.h>

#include "../unit/mapping/mapping_cases.h"

Test(mapping_redis, store_is_redis)
{
    acache *c = th_open(NULL);
    cr_assert_str_eq(acache_store_type(c), "redis");
    acache_close(c);
}

/* A side connection to the harness's private redis-server, for keys the
 * store's NUL-terminated set slot cannot write. */
static redisContext *mm_raw(void)
{
    int port = 0;
    cr_assert_eq(sscanf(th_store_uri(), "redis://127.0.0.1:%d", &port), 1, "%s",
                 th_store_uri());
    redisContext *r = redisConnect("127.0.0.1", port);
    cr_assert(r && !r->err, "raw connect");
    return r;
}

static void mm_raw_set(redisContext *r, const char *key, size_t klen, const char *val)
{
    redisReply *rep = redisCommand(r, "SET %b %b EX 300", key, klen, val, strlen(val));
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS, "SET");
    freeReplyObject(rep);
}

static long long mm_raw_exists(redisContext *r, const char *key, size_t klen)
{
    redisReply *rep = redisCommand(r, "EXISTS %b", key, klen);
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER, "EXISTS");
    long long n = rep->integer;
    freeReplyObject(rep);
    return n;
}

#define KLEN(s) (sizeof(s) - 1)

/* Issue 8 item 1: keys with an embedded NUL byte crashed the stats (read_pg
 * looked for the ':' again with strchr on a copy that stops at the NUL). The
 * exact repro, plus NUL keys that would be read as another key if a name
 * were cut at the NUL. */
Test(mapping_redis, keys_with_nul_bytes)
{
    acache *c = mm_open(NULL, 0);
    redisContext *r = mm_raw();
    static const char pg_nul[] = "model:provider_global:p\0:g";
    static const char pg_nul2[] = "model:provider_global:q\0r:g2";
    static const char hits_nul2[] = "model:provider_global:hits:q\0r:g2";
    static const char rs_nul[] = "global_model:resolve:gpt-9-turbo\0x";
    mm_set(c, "model:provider_global:p", "{\"provider_model_name\": \"x\"}");
    mm_raw_set(r, pg_nul, KLEN(pg_nul), "x");
    mm_raw_set(r, pg_nul2, KLEN(pg_nul2), "{\"provider_model_name\": \"y\"}");
    mm_raw_set(r, hits_nul2, KLEN(hits_nul2), "5");
    /* global_model:resolve:gpt-9-turbo holds NOT_FOUND: this one is a mapping */
    mm_raw_set(r, rs_nul, KLEN(rs_nul),
               "{\"id\": \"g2\", \"name\": \"n\\u0000m\", \"display_name\": \"N\"}");

    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_model_mapping_stats(&b, c), ACACHE_OK, "%s", acache_last_error());
    /* A key holding a NUL cannot be named to the store's ttl slot: ttl null. */
    cr_assert_str_eq(
        mm_norm(b.ptr),
        "{\"status\": \"ok\", \"data\": {\"available\": true, \"ttl_seconds\": 300, "
        "\"total_keys\": 12, \"breakdown\": {\"model_by_id\": 1, "
        "\"model_by_provider_global\": 4, \"global_model_by_id\": 1, "
        "\"global_model_by_name\": 1, \"global_model_resolve\": 5}, "
        "\"mappings\": [{\"mapping_name\": \"claude-sonnet-4-5-20250929\", "
        "\"global_model_name\": \"claude-sonnet-4-5\", \"global_model_display_name\": "
        "\"Claude Sonnet 4.5\", \"providers\": [], \"ttl\": 300}, "
        "{\"mapping_name\": \"gpt-9-turbo\\u0000x\", \"global_model_name\": "
        "\"n\\u0000m\", \"global_model_display_name\": \"N\", \"providers\": [], "
        "\"ttl\": null}], "
        "\"provider_model_mappings\": [{\"provider_id\": \"" PROV "\", "
        "\"provider_name\": null, \"global_model_id\": \"" GM_ID "\", "
        "\"global_model_name\": null, \"global_model_display_name\": null, "
        "\"provider_model_name\": \"claude-sonnet-4-5-20250929\", \"aliases\": "
        "[\"sonnet\", \"claude-3-7-sonnet\"], \"ttl\": 300, \"hit_count\": 17}, "
        "{\"provider_id\": \"q\\u0000r\", \"provider_name\": null, "
        "\"global_model_id\": \"g2\", \"global_model_name\": null, "
        "\"global_model_display_name\": null, \"provider_model_name\": \"y\", "
        "\"aliases\": [], \"ttl\": null, \"hit_count\": 5}], "
        "\"unmapped\": [{\"mapping_name\": \"gpt-9-turbo\", \"status\": \"not_found\", "
        "\"ttl\": 300}, {\"mapping_name\": \"weird*name?[x]\", \"status\": \"invalid\", "
        "\"ttl\": 300}]}}");

    /* The structured snapshot agrees; C getters see names up to the NUL. */
    acache__model_mapping_stats *s = NULL;
    cr_assert_eq(acache__model_mapping_stats_get(&s, c), ACACHE_OK);
    cr_assert_eq(acache__model_mapping_stats_mapping_count(s), 2);
    cr_assert_str_eq(acache__model_mapping_stats_mapping_name(s, 1), "gpt-9-turbo");
    cr_assert_eq(acache__model_mapping_stats_pm_count(s), 2);
    cr_assert_eq(acache__model_mapping_stats_pm_hit_count(s, 1), 5);
    acache__model_mapping_stats_free(s);

    /* Clear-all removes them too (keys are deleted with their lengths). */
    size_t n = 0;
    cr_assert_eq(acache__model_mapping_clear_all(&n, c), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(n, 14);
    cr_assert_eq(mm_raw_exists(r, pg_nul, KLEN(pg_nul)), 0);
    cr_assert_eq(mm_raw_exists(r, hits_nul2, KLEN(hits_nul2)), 0);
    cr_assert_eq(mm_raw_exists(r, rs_nul, KLEN(rs_nul)), 0);
    redisFree(r);
    acache_buf_dispose(&b);
    mm_done(c);
}
