/* Pin lifecycle on Redis: the affinity_fail slot, one EVALSHA of
 * scripts/report.lua (count a failure on the pin, or compare-and-delete it),
 * so that the step is atomic between gateway processes. */
#include <stdio.h>
#include <string.h>

#include "redis_priv.h"

typedef struct fail_ctx {
    const acache_fail_req *req;
    const char *argv[9];
    size_t lens[9];
    char now[40], max[16];
    int result;
    uint32_t failures;
} fail_ctx;

static int fail_build(void *p, size_t i, script_call *call)
{
    (void)i;
    fail_ctx *f = p;
    const char *args[] = {NULL,
                          NULL,
                          "1",
                          f->req->key,
                          f->req->provider_id,
                          f->req->endpoint_id,
                          f->req->key_id,
                          f->now,
                          f->max};
    for (int k = 2; k < 9; k++) {
        f->argv[k] = args[k];
        f->lens[k] = strlen(args[k]);
    }
    call->argc = 9;
    call->argv = f->argv;
    call->lens = f->lens;
    return ACACHE_OK;
}

static int fail_take(void *p, size_t i, const redisReply *r)
{
    (void)i;
    fail_ctx *f = p;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[0]->integer < 0 ||
        r->element[0]->integer > ACACHE_FAIL_DROPPED || r->element[1]->integer < 0 ||
        r->element[1]->integer > UINT32_MAX)
        return acache__redis_reply_fail(r, "EVALSHA", f->req->key);
    f->result = (int)r->element[0]->integer;
    f->failures = (uint32_t)r->element[1]->integer;
    return ACACHE_OK;
}

int acache__redis_affinity_fail(acache_store *self, const acache_fail_req *req,
                                int *result, uint32_t *failures)
{
    redis_store *s = (redis_store *)self;
    fail_ctx f = {.req = req};
    snprintf(f.now, sizeof f.now, "%.17g", req->now);
    snprintf(f.max, sizeof f.max, "%u",
             (unsigned)(req->max_failures ? req->max_failures : 1));
    *result = ACACHE_FAIL_NOT_PINNED;
    *failures = 0;
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c;
    /* Not retried (redis_priv.h): a replay could count one failure twice. */
    int rc = acache__redis_conn_get(s, &c);
    if (!rc) {
        rc = acache__redis_eval(s, c, &acache__redis_report_script, s->report_sha, 1,
                                fail_build, fail_take, &f, req->key);
        acache__redis_conn_put(s, c, 0);
    }
    acache__redis_sigpipe_restore(&g);
    /* The value changed (failure_count) or went: the touch swap path's hint
     * is stale, so the next touch takes the script rather than a repair. */
    acache__redis_hint_drop(s->hints, req->key, strlen(req->key));
    if (rc)
        return rc;
    *result = f.result;
    *failures = f.failures;
    return ACACHE_OK;
}
