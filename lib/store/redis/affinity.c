/* Affinity slots of the Redis store: get, the touch script, the
 * compare-and-delete script. */
#include <inttypes.h>
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

/* The text of a touched pin, rendered in C so that the script only compares
 * and concatenates (scripts/touch.lua): `head` is the value up to and
 * including `"created_at": `, `mid` frames expire_at before request_count.
 * One allocation holds both. */
typedef struct touch_text {
    char *mem;
    const char *head, *mid;
    size_t head_len, mid_len;
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
    char exp[40];
    int el = acache__fmt_double(exp, sizeof exp, req->now + req->ttl_s);
    static const char c_at[] = ", \"created_at\": ", e_at[] = ", \"expire_at\": ",
                      r_ct[] = ", \"request_count\": ";
    size_t cap = slen + sizeof c_at + sizeof e_at + sizeof r_ct + (size_t)el + 2;
    char *m = acache__malloc(cap);
    if (!m) {
        free(strs);
        return acache__oom();
    }
    int a = snprintf(m, cap, "%.*s%s", (int)slen, strs, c_at);
    int b = snprintf(m + a + 1, cap - (size_t)a - 1, "%s%s%s", e_at, exp, r_ct);
    free(strs);
    t->mem = m;
    t->head = m;
    t->head_len = (size_t)a;
    t->mid = m + a + 1;
    t->mid_len = (size_t)b;
    return ACACHE_OK;
}

typedef struct touch_ctx {
    const acache_touch_req *req;
    const char *argv[14];
    size_t lens[14];
    const char *now, *ttl, *delta, *seq;
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
    int once = req->once_key != NULL;
    /* EVALSHA sha nkeys KEYS[1] [KEYS[2]] ARGV[1..8] [ARGV[9]] */
    const char *args[14] = {NULL, NULL, once ? "2" : "1", req->key};
    int k = 4;
    if (once)
        args[k++] = req->once_key;
    int head = k;
    args[k++] = t->tt->head;
    args[k++] = t->now;
    int mid = k;
    args[k++] = t->tt->mid;
    args[k++] = t->ttl;
    args[k++] = req->provider_id;
    args[k++] = req->endpoint_id;
    args[k++] = req->key_id;
    args[k++] = t->delta;
    if (once)
        args[k++] = t->seq;
    for (int j = 2; j < k; j++) {
        t->argv[j] = args[j];
        t->lens[j] = strlen(args[j]);
    }
    t->lens[head] = t->tt->head_len;
    t->lens[mid] = t->tt->mid_len;
    call->argc = k;
    call->argv = t->argv;
    call->lens = t->lens;
    return ACACHE_OK;
}

/* The script's reply: 1 / 3 as an integer, or "COUNT CREATED_AT" for a
 * refresh (bytes with a length: parsed from a bounded copy). */
static int touch_take(void *p, size_t i, const redisReply *r)
{
    (void)i;
    touch_ctx *t = p;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && t->req->once_key) {
        /* this batch was applied by an earlier call that seemed to fail */
        t->outcome = ACACHE_TOUCH_REFRESHED;
        t->created_at = t->req->now;
        t->count = 0;
        return ACACHE_OK;
    }
    if (r->type == REDIS_REPLY_INTEGER &&
        (r->integer == ACACHE_TOUCH_CREATED || r->integer == ACACHE_TOUCH_SWITCHED ||
         r->integer == ACACHE_TOUCH_SWITCHED_PROVIDER)) {
        t->outcome = (int)r->integer;
        t->created_at = t->req->now;
        t->count = t->req->count_delta ? (int64_t)t->req->count_delta : 1;
        return ACACHE_OK;
    }
    char buf[96];
    if (r->type == REDIS_REPLY_STRING && r->len > 2 && r->len < sizeof buf) {
        memcpy(buf, r->str, r->len);
        buf[r->len] = '\0';
        char *end;
        long long n = strtoll(buf, &end, 10);
        if (*end == ' ') {
            t->outcome = ACACHE_TOUCH_REFRESHED;
            t->count = (int64_t)n;
            t->created_at = strtod(end + 1, NULL);
            return ACACHE_OK;
        }
    }
    return acache__redis_reply_fail(r, "EVALSHA", t->req->key);
}

int acache__redis_affinity_touch(acache_store *self, const acache_touch_req *req,
                                 int *result, acache_record_cb cb, void *payload)
{
    redis_store *s = (redis_store *)self;
    /* now as repr text: the script compares it and writes it as a new
     * pin's created_at (repr reads back as the same double). */
    char now[40], ttl[16], delta[24];
    acache__fmt_double(now, sizeof now, req->now);
    snprintf(ttl, sizeof ttl, "%u", (unsigned)req->ttl_s);
    uint64_t d = req->count_delta ? req->count_delta : 1;
    if (d > UINT64_C(1000000000000000))
        return acache_error_set(ACACHE_EINVALID, "touch count delta above 10^15");
    snprintf(delta, sizeof delta, "%" PRIu64, d);
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRIu64, req->once_seq);
    touch_text tt = {NULL, NULL, NULL, 0, 0};
    int rc = render_touch(&tt, req);
    if (rc)
        return rc;
    touch_ctx t = {
        .req = req, .now = now, .ttl = ttl, .delta = delta, .seq = seq, .tt = &tt};
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
