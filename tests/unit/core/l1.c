/* The L1's hit path (issue 12 item 4): a hit hands out a reference to the
 * cached, immutable record instead of a copy, and checks expiry with a
 * coarse clock that may err early but never late. Memory store with the
 * REMOTE capability, so the handle puts an L1 in front of it. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

#include "core/core.h"

static acache *open_l1(void)
{
    acache_store *s = NULL;
    cr_assert_eq(acache__store_memory_new(&s), ACACHE_OK);
    s->caps |= ACACHE_STORE_CAP_REMOTE;
    acache *c = NULL;
    cr_assert_eq(acache_open_with_store(&c, NULL, s), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_not_null(c->l1);
    return c;
}

static void pin(acache *c, const char *ak, uint32_t ttl_s)
{
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = ak;
    t.api_format = "claude";
    t.model_name = "m";
    t.provider_id = "p";
    t.endpoint_id = "e";
    t.key_id = "k";
    t.supports_caching = 1;
    t.ttl_s = ttl_s;
    cr_assert_eq(acache_affinity_touch(NULL, c, &t), ACACHE_OK, "%s",
                 acache_last_error());
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(l1, a_hit_is_a_reference_that_outlives_the_entry)
{
    acache *c = open_l1();
    pin(c, "ak", 300);
    acache_affinity *fill = NULL, *a = NULL, *b = NULL;
    cr_assert_eq(acache_affinity_get(&fill, c, "ak", "claude", "m"), ACACHE_OK);
    cr_assert_eq(acache_affinity_get(&a, c, "ak", "claude", "m"), ACACHE_OK);
    cr_assert_eq(acache_affinity_get(&b, c, "ak", "claude", "m"), ACACHE_OK);
    cr_expect_eq(a, b, "two hits share the cached record (no copy)");
    /* the L1 drops its reference; ours stay valid (ASan would see a use
     * after free) */
    cr_assert_eq(acache_affinity_invalidate(c, "ak", "claude", "m", NULL, NULL, NULL),
                 ACACHE_OK);
    acache_affinity_free(a);
    cr_expect_str_eq(acache_affinity_provider_id(b), "p");
    cr_expect_str_eq(acache_affinity_client_key(b), "ak");
    acache_affinity_free(b);
    acache_affinity_free(fill);
    acache_affinity *gone = NULL;
    cr_expect_eq(acache_affinity_get(&gone, c, "ak", "claude", "m"), ACACHE_ENOTFOUND);
    acache_close(c);
}

/* The hit's coarse clock is an upper bound: once expire_at has passed on the
 * precise clock, no hit serves the pin, though the L1's own TTL (3 s) would
 * still keep it. */
Test(l1, an_expired_pin_is_never_served_from_the_l1, .timeout = 20)
{
    acache *c = open_l1();
    enum { K = 4 };
    double expire[K];
    char ak[K][16];
    for (int i = 0; i < K; i++) {
        snprintf(ak[i], sizeof ak[i], "ak%d", i);
        pin(c, ak[i], 1);
        acache_affinity *a = NULL;
        cr_assert_eq(acache_affinity_get(&a, c, ak[i], "claude", "m"), ACACHE_OK);
        expire[i] = acache_affinity_expire_at(a);
        acache_affinity_free(a);
    }
    for (int i = 0; i < K; i++) {
        /* just past expire_at (0.3 ms), well inside the L1 TTL */
        while (wall() < expire[i] + 0.0003) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, ak[i], "claude", "m");
        cr_expect_eq(rc, ACACHE_ENOTFOUND, "pin %d served %.4f s after it expired", i,
                     wall() - expire[i]);
        acache_affinity_free(a);
    }
    acache_close(c);
}

typedef struct {
    acache *c;
    int gets;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *h = p;
    for (int i = 0; i < 20000; i++) {
        acache_affinity *a = NULL;
        if (acache_affinity_get(&a, h->c, "hot", "claude", "m") == ACACHE_OK) {
            if (strcmp(acache_affinity_provider_id(a), "p") == 0)
                h->gets++;
            acache_affinity_free(a);
        }
    }
    return NULL;
}

/* Threads share one record's references while touches and invalidations
 * drop the L1's own: every reader sees a whole record, none is freed twice
 * (run under ASan here, TSan with the thread sanitizer build). */
Test(l1, threads_share_references_while_the_entry_churns, .timeout = 60)
{
    acache *c = open_l1();
    pin(c, "hot", 300);
    enum { T = 4 };
    pthread_t th[T];
    hammer_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (hammer_arg){c, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 300; i++) {
        if (i % 2)
            pin(c, "hot", 300);
        else
            acache_affinity_invalidate(c, "hot", "claude", "m", NULL, NULL, NULL);
    }
    pin(c, "hot", 300);
    int total = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        total += args[i].gets;
    }
    cr_expect_gt(total, 0);
    acache_close(c);
}
