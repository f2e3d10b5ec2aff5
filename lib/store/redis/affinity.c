/* Affinity slots of the Redis store: get, the touch script, the
 * compare-and-delete script. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/json.h"
#include "redis_priv.h"

int acache__redis_affinity_get(acache_store *self, const char *key, acache_record_cb cb,
                               void *payload)
{
    redis_store *s = (redis_store *)self;
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = acache__redis_run(s, 1, "GET", key, 2, argv, NULL, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = acache_error_set(ACACHE_ENOTFOUND, "no affinity at %s", key);
    else if (r->type == REDIS_REPLY_STRING)
        rc = acache_record_parse(r->str, r->len, cb, payload);
    else
        rc = acache__redis_reply_fail(r, "GET", key);
    freeReplyObject(r);
    return rc;
}

/* The value of a touched pin, rendered in C so the script only concatenates:
 * `full` is a new pin's value; `head`/`tail` frame created_at and
 * request_count for a refresh. One allocation holds all three. */
typedef struct {
    char *mem;
    const char *full, *head, *tail, *pin; /* pin: `{"provider_id": .., "key_id": .., ` */
} touch_text;

static int render_touch(touch_text *t, const acache_touch_req *req)
{
    json_t *o = json_object();
    int bad = !o;
    if (o) {
        bad |= acache__json_set(o, "provider_id", acache__json_str(req->provider_id));
        bad |= acache__json_set(o, "endpoint_id", acache__json_str(req->endpoint_id));
        bad |= acache__json_set(o, "key_id", acache__json_str(req->key_id));
        bad |= acache__json_set(o, "api_format", acache__json_str(req->api_format));
        bad |= acache__json_set(o, "model_name", acache__json_str(req->model_name));
    }
    /* Strings only: jansson's own output has Python's separators. */
    char *strs = bad ? NULL : json_dumps(o, 0);
    json_decref(o);
    if (!strs)
        return acache__oom();
    size_t slen = strlen(strs) - 1; /* without the closing brace */
    /* The pin prefix ends right before ", \"api_format\": " (searched from the
     * end: the value strings before it cannot contain that unescaped). */
    static const char fmt_key[] = ", \"api_format\": ";
    char *fk = strstr(strs, fmt_key);
    for (char *n = fk; n; n = strstr(n + 1, fmt_key))
        fk = n;
    size_t plen = fk ? (size_t)(fk - strs) + 2 : 0;
    char now[40], exp[40];
    acache__fmt_double(now, sizeof now, req->now);
    acache__fmt_double(exp, sizeof exp, req->now + req->ttl_s);
    static const char c_at[] = ", \"created_at\": ", e_at[] = ", \"expire_at\": ",
                      r_ct[] = ", \"request_count\": ";
    size_t cap = 3 * slen + 2 * sizeof c_at + 2 * sizeof e_at + 2 * sizeof r_ct +
                 strlen(now) + 2 * strlen(exp) + 16;
    char *m = acache__malloc(cap);
    if (!m) {
        free(strs);
        return acache__oom();
    }
    int a =
        snprintf(m, cap, "%.*s%s%s%s%s%s1}", (int)slen, strs, c_at, now, e_at, exp, r_ct);
    int b = snprintf(m + a + 1, cap - (size_t)a - 1, "%.*s%s", (int)slen, strs, c_at);
    int c = snprintf(m + a + b + 2, cap - (size_t)(a + b) - 2, "%s%s%s", e_at, exp, r_ct);
    /* No prefix found (cannot happen for our own rendering): an empty prefix
     * disables the script's fast path rather than matching everything. */
    snprintf(m + a + b + c + 3, cap - (size_t)(a + b + c) - 3, "%.*s", (int)plen,
             plen ? strs : "");
    free(strs);
    t->mem = m;
    t->full = m;
    t->head = m + a + 1;
    t->tail = m + a + b + 2;
    t->pin = m + a + b + c + 3;
    return ACACHE_OK;
}

typedef struct touch_ctx {
    const acache_touch_req *req;
    const char *argv[13];
    size_t lens[13];
    const char *now, *ttl;
    touch_text *tt;
    /* from the reply */
    int outcome;
    double created_at;
    int64_t count;
} touch_ctx;

static int touch_build(void *p, size_t i, script_call *call)
{
    (void)i;
    touch_ctx *t = p;
    const acache_touch_req *req = t->req;
    const char *args[] = {
        NULL,        NULL,   "1",    req->key,    req->provider_id, req->endpoint_id,
        req->key_id, t->now, t->ttl, t->tt->full, t->tt->head,      t->tt->tail,
        t->tt->pin};
    for (int k = 2; k < 13; k++) {
        t->argv[k] = args[k];
        t->lens[k] = strlen(args[k]);
    }
    call->argc = 13;
    call->argv = t->argv;
    call->lens = t->lens;
    return ACACHE_OK;
}

static int touch_take(void *p, size_t i, const redisReply *r)
{
    (void)i;
    touch_ctx *t = p;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return acache__redis_reply_fail(r, "EVALSHA", t->req->key);
    t->outcome = (int)r->element[0]->integer;
    t->created_at = t->outcome == ACACHE_TOUCH_REFRESHED
                        ? strtod(r->element[1]->str, NULL)
                        : t->req->now;
    t->count = strtoll(r->element[2]->str, NULL, 10);
    return ACACHE_OK;
}

int acache__redis_affinity_touch(acache_store *self, const acache_touch_req *req,
                                 int *result, acache_record_cb cb, void *payload)
{
    redis_store *s = (redis_store *)self;
    char now[40], ttl[16];
    snprintf(now, sizeof now, "%.17g", req->now);
    snprintf(ttl, sizeof ttl, "%u", (unsigned)req->ttl_s);
    touch_text tt = {NULL, NULL, NULL, NULL, NULL};
    int rc = render_touch(&tt, req);
    if (rc)
        return rc;
    touch_ctx t = {.req = req, .now = now, .ttl = ttl, .tt = &tt};
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c;
    /* Not retried (see redis_priv.h): a replay could count twice. */
    if (!(rc = acache__redis_conn_get(s, &c))) {
        rc = acache__redis_eval(s, c, &acache__redis_touch_script, s->touch_sha, 1,
                                touch_build, touch_take, &t, req->key);
        acache__redis_conn_put(s, c, 0);
    }
    acache__redis_sigpipe_restore(&g);
    free(tt.mem);
    if (rc)
        return rc;
    acache_record rec = {
        .provider_id = req->provider_id,
        .endpoint_id = req->endpoint_id,
        .key_id = req->key_id,
        .api_format = req->api_format,
        .model_name = req->model_name,
        .created_at = t.created_at,
        .expire_at = req->now + req->ttl_s,
        .request_count = t.count,
    };
    if (result)
        *result = t.outcome;
    if (cb)
        cb(&rec, payload);
    return ACACHE_OK;
}

/* ---- compare-and-delete ---- */

typedef struct delete_ctx {
    const acache_key *keys;
    size_t n;
    char *filt[3];
    const char **argv;
    size_t *lens;
    char nkeys[24];
    size_t deleted;
    key_label lb;
} delete_ctx;

/* Call i: EVALSHA sha nkeys KEYS[batch i]... filters. */
static int delete_build(void *p, size_t i, script_call *call)
{
    delete_ctx *d = p;
    size_t start = i * DEL_BATCH;
    size_t k = d->n - start < DEL_BATCH ? d->n - start : DEL_BATCH;
    snprintf(d->nkeys, sizeof d->nkeys, "%zu", k);
    d->argv[2] = d->nkeys;
    d->lens[2] = strlen(d->nkeys);
    for (size_t j = 0; j < k; j++) {
        d->argv[3 + j] = d->keys[start + j].ptr;
        d->lens[3 + j] = d->keys[start + j].len;
    }
    for (size_t j = 0; j < 3; j++) {
        d->argv[3 + k + j] = d->filt[j];
        d->lens[3 + k + j] = strlen(d->filt[j]);
    }
    call->argc = (int)(k + 6);
    call->argv = d->argv;
    call->lens = d->lens;
    return ACACHE_OK;
}

static int delete_take(void *p, size_t i, const redisReply *r)
{
    delete_ctx *d = p;
    if (r->type != REDIS_REPLY_INTEGER)
        return acache__redis_reply_fail(
            r, "EVALSHA", acache__redis_key_label(&d->lb, &d->keys[i * DEL_BATCH]));
    d->deleted += (size_t)r->integer;
    return ACACHE_OK;
}

int acache__redis_affinity_delete_if(acache_store *self, const acache_key *keys, size_t n,
                                     const acache_match *m, size_t *deleted)
{
    redis_store *s = (redis_store *)self;
    *deleted = 0;
    if (!m || (!m->provider_id && !m->endpoint_id && !m->key_id))
        return acache__redis_del(self, keys, n, deleted);
    if (n == 0)
        return ACACHE_OK;
    delete_ctx d = {.keys = keys, .n = n};
    const char *fv[3] = {m->provider_id, m->endpoint_id, m->key_id};
    size_t cap = (n < DEL_BATCH ? n : DEL_BATCH) + 6;
    d.argv = acache__malloc(cap * sizeof *d.argv);
    d.lens = acache__malloc(cap * sizeof *d.lens);
    int rc = (d.argv && d.lens) ? ACACHE_OK : acache__oom();
    for (int i = 0; i < 3 && !rc; i++)
        if (!(d.filt[i] = acache__sprintf("%s%s", fv[i] ? "=" : "", fv[i] ? fv[i] : "")))
            rc = ACACHE_ENOMEM;
    if (!rc) {
        sigpipe_guard g;
        acache__redis_sigpipe_block(s, &g);
        rconn *c;
        if (!(rc = acache__redis_conn_get(s, &c))) {
            key_label lb;
            rc = acache__redis_eval(s, c, &acache__redis_delete_script, s->delete_sha,
                                    (n + DEL_BATCH - 1) / DEL_BATCH, delete_build,
                                    delete_take, &d,
                                    acache__redis_key_label(&lb, &keys[0]));
            acache__redis_conn_put(s, c, 0);
        }
        acache__redis_sigpipe_restore(&g);
    }
    *deleted = d.deleted;
    for (int i = 0; i < 3; i++)
        free(d.filt[i]);
    free(d.argv);
    free(d.lens);
    return rc;
}
