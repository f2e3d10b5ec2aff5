/* Redis store: Aether's keys and JSON values in a shared redis-server. This
 * file is the vtable and the store's lifetime; redis_priv.h maps the rest. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "redis_priv.h"

static int r_scan(acache_store *self, const char *prefix, int with_values,
                  acache_entry_batch_cb cb, void *payload)
{
    return acache__redis_scan((redis_store *)self, prefix, with_values, 0, cb, payload);
}

static int r_affinity_scan(acache_store *self, const char *prefix,
                           acache_entry_batch_cb cb, void *payload)
{
    return acache__redis_scan((redis_store *)self, prefix, 1, 1, cb, payload);
}

static void r_free(acache_store *self)
{
    redis_store *s = (redis_store *)self;
    if (!s)
        return;
    acache__redis_tracking_free(s); /* its thread dials through the pool's code */
    for (int i = 0; i < s->n_idle; i++)
        rconn_close(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    acache__redis_cluster_free(s); /* before the TLS context its nodes borrow */
    acache__redis_tls_free(s);
    acache__redis_sentinel_free(s);
    acache__redis_guard_free(s);
    acache__redis_hints_free(s->hints); /* a cluster's nodes only borrow it */
    free(s->host);
    free(s->path);
    free(s->user);
    free(s->cacert);
    free(s->cert);
    free(s->key);
    free(s->sni);
    if (s->password) {
        sodium_memzero(s->password, strlen(s->password)); /* never optimised out */
        free(s->password);
    }
    free(s);
}

int acache__store_redis_new(acache_store **out, const char *uri,
                            uint32_t connect_timeout_ms, uint32_t command_timeout_ms)
{
    return acache__store_redis_new_ex(out, uri, connect_timeout_ms, command_timeout_ms, 0,
                                      0);
}

int acache__store_redis_new_ex(acache_store **out, const char *uri,
                               uint32_t connect_timeout_ms, uint32_t command_timeout_ms,
                               uint32_t breaker_threshold, uint32_t breaker_cooldown_ms)
{
    *out = NULL;
    redis_store *s = acache__calloc(1, sizeof *s);
    if (!s)
        return acache__oom();
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return acache_error_set(ACACHE_ERROR, "redis store: cannot create a mutex");
    }
    if (pthread_cond_init(&s->cond, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return acache_error_set(ACACHE_ERROR, "redis store: cannot create a condvar");
    }
    s->parent.version = ACACHE_STORE_VERSION;
    s->parent.scheme = "redis";
    s->parent.affinity_get = acache__redis_affinity_get;
    s->parent.affinity_touch = acache__redis_affinity_touch;
    s->parent.affinity_delete_if = acache__redis_affinity_delete_if;
    s->parent.affinity_scan = r_affinity_scan;
    s->parent.get = acache__redis_get;
    s->parent.set = acache__redis_set;
    s->parent.del = acache__redis_del;
    s->parent.scan = r_scan;
    s->parent.ttl = acache__redis_ttl;
    s->parent.free = r_free;
    s->parent.affinity_fail = acache__redis_affinity_fail;
    acache__redis_counters_register(&s->parent); /* counters.c: fleet counters */
    s->parent.caps = ACACHE_STORE_CAP_REMOTE | ACACHE_STORE_CAP_JSON_VALUES |
                     ACACHE_STORE_CAP_RAW_KEYS | ACACHE_STORE_CAP_TOUCH_DELTA;
    s->connect_ms = connect_timeout_ms ? connect_timeout_ms : 2000;
    s->command_ms = command_timeout_ms ? command_timeout_ms : 2000;

    int rc = acache__redis_parse_uri(s, uri);
    if (!rc)
        rc = acache__redis_tls_init(s);
    if (!rc && !s->touch_script) /* the touch swap path's table (hint.c) */
        rc = acache__redis_hints_new(&s->hints);
    if (!rc) /* a cluster: one subscriber per primary (tracking.c) */
        acache__redis_tracking_register(&s->parent);
    if (rc) {
        r_free(&s->parent);
        return rc;
    }
    /* Connect now so that a wrong address or a server that is down fails the
     * open, not the first request. */
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c = NULL;
    /* redis-cluster:// (cluster.c): the seeds, the slot map, a pool per node. */
    rc = s->cluster ? acache__redis_cluster_start(s) : acache__redis_dial(s, &c, 1);
    acache__redis_sigpipe_restore(&g);
    if (rc) {
        r_free(&s->parent);
        return rc;
    }
    if (c) {
        s->idle[s->n_idle++] = c;
        s->n_total = 1;
    }
    /* Last: wraps whatever slots are set above (breaker.c). */
    if ((rc = acache__redis_guard_install(s, breaker_threshold, breaker_cooldown_ms))) {
        r_free(&s->parent);
        return rc;
    }
    *out = &s->parent;
    return ACACHE_OK;
}
