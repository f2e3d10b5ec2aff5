/* ThreadSanitizer stress (Criterion cannot start under TSan): 8 threads share
 * one handle and mix every hot-path and admin call. Exit 0 and a clean TSan
 * report is the pass; the final count check catches lost updates.
 *   tsan-threads memory|redis   (redis: a private redis-server, as the tests use) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <aether_cache/aether_cache.h>
#include <hiredis/hiredis.h>

#include "redis_server.h"

#define THREADS 8
#define ITER 2000

static acache *c;
static int redis_port; /* redis mode: the subscriber is killed meanwhile */

/* L1 invalidation (docs/redis.md): the handle's subscriber connection is
 * killed a few times while the threads run, so its reader thread flushes,
 * bypasses and re-subscribes concurrently with gets filling the L1. */
static void *killer(void *arg)
{
    (void)arg;
    redisContext *r = redisConnect("127.0.0.1", redis_port);
    for (int i = 0; r && !r->err && i < 5; i++) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        redisReply *x = redisCommand(r, "CLIENT KILL TYPE pubsub");
        if (x)
            freeReplyObject(x);
    }
    if (r)
        redisFree(r);
    return NULL;
}

static void *run(void *arg)
{
    long id = (long)arg;
    char ak[32];
    snprintf(ak, sizeof ak, "tsan-%ld", id % 2);
    for (int i = 0; i < ITER; i++) {
        acache_touch t = ACACHE_TOUCH_INIT;
        t.affinity_key = "shared";
        t.api_format = "claude";
        t.model_name = "m";
        t.provider_id = "p";
        t.endpoint_id = "e";
        t.key_id = "k";
        acache_affinity_touch(NULL, c, &t);
        t.affinity_key = ak;
        t.key_id = i % 3 ? "k" : "k2";
        acache_affinity_touch(NULL, c, &t);
        acache_affinity *a = NULL;
        if (acache_affinity_get(&a, c, ak, "claude", "m") == ACACHE_OK)
            acache_affinity_free(a);
        if (i % 50 == 0) {
            acache_affinity_invalidate(c, ak, "claude", "m", NULL, NULL, NULL);
            acache_buf b = ACACHE_BUF_INIT;
            acache_stats_json(&b, c);
            acache_buf_dispose(&b);
            acache_metrics_text(&b, c);
            acache_buf_dispose(&b);
            acache_scheduler_record_request(c, "claude", ak);
            acache_scheduler_record_batch(c, 3);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    test_redis server = {0};
    o.store_uri = "memory://";
    if (argc > 1 && strcmp(argv[1], "redis") == 0) {
        if (test_redis_start(&server) != 0)
            return 2;
        o.store_uri = server.uri;
        redis_port = server.port;
        o.l1_invalidation = ACACHE_L1_TRACKING;
    }
    if (acache_open(&c, &o) != ACACHE_OK) {
        fprintf(stderr, "open: %s\n", acache_last_error());
        test_redis_stop(&server);
        return 2;
    }
    size_t n;
    acache_target all = ACACHE_TARGET_INIT;
    all.kind = ACACHE_TARGET_ALL;
    acache_invalidate(&n, c, &all);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, run, (void *)i);
    pthread_t k;
    if (redis_port)
        pthread_create(&k, NULL, killer, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    if (redis_port)
        pthread_join(k, NULL);
    acache_affinity *a = NULL;
    int rc = acache_affinity_get(&a, c, "shared", "claude", "m");
    long got = rc == ACACHE_OK ? (long)acache_affinity_request_count(a) : -1;
    acache_affinity_free(a);
    acache_close(c);
    test_redis_stop(&server);
    if (got != THREADS * ITER) {
        fprintf(stderr, "lost updates: request_count %ld, want %d\n", got,
                THREADS * ITER);
        return 1;
    }
    printf("tsan threads on %s: 1 passed, 0 failed\n", o.store_uri);
    return 0;
}
