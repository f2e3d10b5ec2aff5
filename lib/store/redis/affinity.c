/* Affinity slots of the Redis store: get, touch (the swap path, else the
 * touch script), the compare-and-delete script. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    else if (r->type == REDIS_REPLY_STRING) {
        rc = acache_record_parse(r->str, r->len, cb, payload);
        if (!rc) /* the touch that usually follows can then swap */
            acache__redis_hint_from_value(s->hints, key, r->str, r->len);
    } else
        rc = acache__redis_reply_fail(r, "GET", key);
    freeReplyObject(r);
    return rc;
}

/* Python repr() of a clock reading: a time with at most 6 decimals (the
 * wall clock's microseconds, plus a whole TTL) is its microsecond text with
 * the trailing zeros cut, when that reads back as the same double: below
 * 2^32 one ulp is under 1e-6, so no shorter text reads back, and the text is
 * what repr() prints. Anything else goes to acache__fmt_double (its
 * snprintf/strtod search costs ~25k instructions, most of a swap's client
 * time). */
static int fmt_time(char *buf, size_t size, double v)
{
    if (size >= 32 && v >= 1.0 && v < 4294967296.0) {
        long long u = llround(v * 1e6);
        long long ip = u / 1000000, fp = u % 1000000;
        char tmp[32];
        int n = 0;
        do
            tmp[n++] = (char)('0' + ip % 10);
        while ((ip /= 10) > 0);
        int len = 0;
        while (n > 0)
            buf[len++] = tmp[--n];
        buf[len++] = '.';
        int digits = 6;
        while (digits > 1 && fp % 10 == 0) {
            fp /= 10;
            digits--;
        }
        for (int i = digits - 1; i >= 0; i--, fp /= 10)
            buf[len + i] = (char)('0' + fp % 10);
        len += digits;
        buf[len] = '\0';
        if (strtod(buf, NULL) == v)
            return len;
    }
    return acache__fmt_double(buf, size, v);
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
    int el = fmt_time(exp, sizeof exp, req->now + req->ttl_s);
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
    const char *argv[16];
    size_t lens[16];
    const char *now, *ttl, *delta, *seq;
    touch_text *tt;
    /* repair.lua only: W's created_at and count text, the old value O */
    const char *w_created, *w_count, *force;
    int repair_wait;
    size_t w_created_len;
    const char *old;
    size_t old_len;
    int has_old;
    /* from the reply */
    int outcome;
    double created_at;
    int64_t count;
    char created[64]; /* a refresh's created_at text, as the script kept it */
    size_t created_len;
    char now_text[40]; /* `now` points here once need_now() ran */
} touch_ctx;

/* now as repr text, made only for a script call (the touch script compares
 * it and writes it as a new pin's created_at): a swap does not need it. */
static void need_now(touch_ctx *t)
{
    if (!t->now_text[0])
        fmt_time(t->now_text, sizeof t->now_text, t->req->now);
    t->now = t->now_text;
}

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

/* The reply of touch.lua or repair.lua: 1 / 3 / 4 as an integer, or
 * "COUNT CREATED_AT" for a refresh (bytes with a length: parsed from a
 * bounded copy). 1 when understood. */
static int touch_parse(touch_ctx *t, const redisReply *r)
{
    t->created_len = 0;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && t->req->once_key) {
        /* this batch was applied by an earlier call that seemed to fail */
        t->outcome = ACACHE_TOUCH_REFRESHED;
        t->created_at = t->req->now;
        t->count = 0;
        return 1;
    }
    if (r->type == REDIS_REPLY_INTEGER &&
        (r->integer == ACACHE_TOUCH_CREATED || r->integer == ACACHE_TOUCH_SWITCHED ||
         r->integer == ACACHE_TOUCH_SWITCHED_PROVIDER)) {
        t->outcome = (int)r->integer;
        t->created_at = t->req->now;
        t->count = t->req->count_delta ? (int64_t)t->req->count_delta : 1;
        return 1;
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
            size_t cl = r->len - (size_t)(end + 1 - buf);
            if (cl < sizeof t->created) {
                memcpy(t->created, end + 1, cl);
                t->created_len = cl;
            }
            return 1;
        }
    }
    return 0;
}

static int touch_take(void *p, size_t i, const redisReply *r)
{
    (void)i;
    touch_ctx *t = p;
    if (touch_parse(t, r))
        return ACACHE_OK;
    return acache__redis_reply_fail(r, "EVALSHA", t->req->key);
}

/* ---- the swap path (docs/affinity.md "Touch: the swap path") ----
 *
 * A touch of a pin whose exact bytes this store knows (hint.c) is one
 * native `SET key W EX ttl GET`, W being the refresh of those bytes. Redis
 * runs that as cheaply as any SET (a script costs it 6x more, whatever it
 * does), and the old value it returns says whether W was right: the known
 * bytes -> W is exactly what touch.lua would have written; anything else ->
 * repair.lua puts in the touch's true effect on that old value, in the same
 * call. The value between the two always has the caller's target. */

/* repair.lua: EVALSHA sha 1 KEY head now mid ttl p e k delta Wc Wn [O] */
static int repair_build(void *p, size_t i, script_call *call)
{
    (void)i;
    touch_ctx *t = p;
    const acache_touch_req *req = t->req;
    const char *args[16] = {
        NULL,        NULL,       "1",          req->key,         t->tt->head,
        t->now,      t->tt->mid, t->ttl,       req->provider_id, req->endpoint_id,
        req->key_id, t->delta,   t->w_created, t->w_count,       t->force,
        t->old};
    int k = t->has_old ? 16 : 15;
    for (int j = 2; j < k; j++) {
        t->argv[j] = args[j];
        /* head, W's created_at and O are bytes with a length */
        t->lens[j] = j == 4    ? t->tt->head_len
                     : j == 12 ? t->w_created_len
                     : j == 15 ? t->old_len
                               : strlen(args[j]);
    }
    t->lens[6] = t->tt->mid_len;
    call->argc = k;
    call->argv = t->argv;
    call->lens = t->lens;
    return ACACHE_OK;
}

static int repair_take(void *p, size_t i, const redisReply *r)
{
    (void)i;
    touch_ctx *t = p;
    if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == 4 &&
        memcmp(r->str, "WAIT", 4) == 0) {
        t->repair_wait = 1; /* nothing written: run it again shortly */
        return ACACHE_OK;
    }
    if (touch_parse(t, r))
        return ACACHE_OK;
    /* Not acache__redis_reply_fail: its notes would let the cluster code
     * or the Sentinel guard run the touch again, and the SET already ran. */
    return acache_error_set(ACACHE_ESTORE,
                            "redis EVALSHA %s: %.*s (repair after SET ... GET: the "
                            "touch's outcome is unknown)",
                            t->req->key, r->type == REDIS_REPLY_ERROR ? (int)r->len : 22,
                            r->type == REDIS_REPLY_ERROR ? r->str
                                                         : "unexpected reply type");
}

static int starts_with(const redisReply *r, const char *w)
{
    size_t n = strlen(w);
    return r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, w, n) == 0;
}

enum { SWAP_DONE, SWAP_NOT_RUN };

/* Outcome in t (SWAP_DONE, rc), or SWAP_NOT_RUN: nothing was written, take
 * the script path (a server without SET ... GET, a key of another type). */
static int touch_swap(redis_store *s, rconn *c, const acache_touch_req *req,
                      const hint_view *hv, uint64_t d, touch_ctx *t, int *rc)
{
    size_t klen = strlen(req->key);
    int64_t n = hv->count;
    n = (uint64_t)n > (uint64_t)INT64_MAX - d ? INT64_MAX : n + (int64_t)d;
    char cnt[24];
    int cl = snprintf(cnt, sizeof cnt, "%" PRId64, n);
    /* W = the hint's head and created_at text, then mid (expire_at) */
    char w[HINT_MAX + 96];
    size_t pre = hv->created_off + hv->created_len, wl = pre;
    memcpy(w, hv->val, pre);
    memcpy(w + wl, t->tt->mid, t->tt->mid_len);
    wl += t->tt->mid_len;
    memcpy(w + wl, cnt, (size_t)cl);
    wl += (size_t)cl;
    w[wl++] = '}';
    const char *argv[6] = {"SET", req->key, w, "EX", t->ttl, "GET"};
    size_t lens[6] = {3, klen, wl, 2, strlen(t->ttl), 3};
    int argc = 6;
    if (req->ttl_s == 0) {
        argv[3] = "GET";
        lens[3] = 3;
        argc = 4;
    }
    redisReply *r;
    if (acache__redis_command(c, argc, argv, lens, &r) != 0) {
        acache__redis_hint_drop(s->hints, req->key, klen);
        *rc = acache__redis_io_fail(s, c, "SET", req->key);
        return SWAP_DONE;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int not_run = 0;
        if (starts_with(r, "ERR syntax error")) { /* Redis < 6.2: no SET ... GET */
            acache__redis_hints_script_only(s->hints);
            not_run = 1;
        } else if (starts_with(r, "WRONGTYPE")) { /* the script overwrites it */
            not_run = 1;
        }
        acache__redis_hint_drop(s->hints, req->key, klen);
        if (!not_run)
            *rc = acache__redis_reply_fail(r, "SET", req->key); /* did not run */
        freeReplyObject(r);
        return not_run ? SWAP_NOT_RUN : SWAP_DONE;
    }
    if (r->type == REDIS_REPLY_STRING && r->len == hv->val_len &&
        memcmp(r->str, hv->val, r->len) == 0) {
        freeReplyObject(r);
        t->outcome = ACACHE_TOUCH_REFRESHED;
        t->count = n;
        t->created_at = hv->created_at;
        hint_fill f = {.val = w,
                       .val_len = wl,
                       .created_off = hv->created_off,
                       .created_len = hv->created_len,
                       .created_at = hv->created_at,
                       .expire_at = req->now + req->ttl_s,
                       .count = n,
                       .strs = {req->provider_id, req->endpoint_id, req->key_id,
                                req->api_format, req->model_name}};
        acache__redis_hint_put(s->hints, req->key, klen, &f);
        *rc = ACACHE_OK;
        return SWAP_DONE;
    }
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL) {
        freeReplyObject(r);
        acache__redis_hint_drop(s->hints, req->key, klen);
        *rc = acache_error_set(ACACHE_ESTORE,
                               "redis SET %s: unexpected reply type (the touch's outcome "
                               "is unknown)",
                               req->key);
        return SWAP_DONE;
    }
    /* Someone else wrote since we knew the value (or it expired, or was
     * removed): repair, and let this key take the script for a while. */
    acache__redis_hint_contend(s->hints, req->key, klen, s->touch_contended_ms);
    t->w_created = hv->val + hv->created_off;
    t->w_created_len = hv->created_len;
    t->w_count = cnt;
    t->has_old = r->type == REDIS_REPLY_STRING;
    t->old = t->has_old ? r->str : NULL;
    t->old_len = t->has_old ? r->len : 0;
    need_now(t);
    /* "WAIT" (repair.lua): the correction would take the count below 0
     * until another writer's repair lands; run it again, with a back-off,
     * then clamp (the count is then off: an error, outcome unknown). */
    int64_t deadline =
        acache__monotonic_ms() + (s->command_ms < 1000 ? s->command_ms : 1000);
    long pause_us = 100;
    t->force = "0";
    for (;;) {
        t->repair_wait = 0;
        *rc = acache__redis_eval(s, c, &acache__redis_repair_script,
                                 acache__redis_repair_sha(), 1, repair_build, repair_take,
                                 t, req->key);
        if (*rc || !t->repair_wait)
            break;
        if (t->force[0] == '1') {
            *rc = acache_error_set(
                ACACHE_ESTORE, "redis EVALSHA %s: the repair did not apply", req->key);
            break;
        }
        if (acache__monotonic_ms() >= deadline) {
            t->force = "1";
            continue;
        }
        struct timespec ts = {0, pause_us * 1000};
        nanosleep(&ts, NULL);
        pause_us = pause_us < 5000 ? pause_us * 2 : pause_us;
    }
    if (!*rc && t->force[0] == '1')
        *rc = acache_error_set(
            ACACHE_ESTORE,
            "redis EVALSHA %s: the repair waited %u ms for other writers' "
            "repairs and clamped the count at 0 (request_count may be off)",
            req->key, s->command_ms < 1000 ? s->command_ms : 1000u);
    freeReplyObject(r);
    t->created_len = 0; /* the repaired bytes are not known: no hint */
    return SWAP_DONE;
}

/* After a script touch: the bytes it wrote are known exactly. */
static void hint_after_script(redis_store *s, const acache_touch_req *req,
                              const touch_text *tt, const touch_ctx *t)
{
    size_t klen = strlen(req->key);
    if (req->once_key && t->count == 0) { /* an earlier call's batch: unknown */
        acache__redis_hint_drop(s->hints, req->key, klen);
        return;
    }
    const char *created = t->now;
    size_t created_len = strlen(t->now);
    char cnt[24];
    if (t->outcome == ACACHE_TOUCH_REFRESHED) {
        if (!t->created_len) {
            acache__redis_hint_drop(s->hints, req->key, klen);
            return;
        }
        created = t->created;
        created_len = t->created_len;
    }
    int cl = snprintf(cnt, sizeof cnt, "%" PRId64, t->count);
    size_t vl = tt->head_len + created_len + tt->mid_len + (size_t)cl + 1;
    if (vl > HINT_MAX) {
        acache__redis_hint_drop(s->hints, req->key, klen);
        return;
    }
    char v[HINT_MAX];
    memcpy(v, tt->head, tt->head_len);
    memcpy(v + tt->head_len, created, created_len);
    memcpy(v + tt->head_len + created_len, tt->mid, tt->mid_len);
    memcpy(v + tt->head_len + created_len + tt->mid_len, cnt, (size_t)cl);
    v[vl - 1] = '}';
    hint_fill f = {.val = v,
                   .val_len = vl,
                   .created_off = tt->head_len,
                   .created_len = created_len,
                   .created_at = t->created_at,
                   .expire_at = req->now + req->ttl_s,
                   .count = t->count,
                   .strs = {req->provider_id, req->endpoint_id, req->key_id,
                            req->api_format, req->model_name}};
    acache__redis_hint_put(s->hints, req->key, klen, &f);
}

int acache__redis_affinity_touch(acache_store *self, const acache_touch_req *req,
                                 int *result, acache_record_cb cb, void *payload)
{
    redis_store *s = (redis_store *)self;
    char ttl[16], delta[24];
    snprintf(ttl, sizeof ttl, "%u", (unsigned)req->ttl_s);
    uint64_t d = req->count_delta ? req->count_delta : 1;
    if (d > UINT64_C(1000000000000000))
        return acache_error_set(ACACHE_EINVALID, "touch count delta above 10^15");
    snprintf(delta, sizeof delta, "%" PRIu64, d);
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRIu64, req->once_seq);
    touch_text tt = {NULL, NULL, NULL, 0, 0};
    touch_ctx t = {.req = req, .ttl = ttl, .delta = delta, .seq = seq, .tt = &tt};
    /* The swap path: synchronous touches (a deferred flush's at-most-once
     * record needs the script), not under wait_replicas (the script path
     * waits for the replicas), on a pin whose bytes we know. Its head and
     * mid come from the hint, not from jansson. */
    hint_view hv;
    char mid[96];
    int use_swap = !req->once_key && s->wait_replicas == 0 &&
                   acache__redis_hint_find(s->hints, req, &hv);
    if (use_swap) {
        char exp[40];
        fmt_time(exp, sizeof exp, req->now + req->ttl_s);
        tt.head = hv.val;
        tt.head_len = hv.created_off;
        tt.mid = mid;
        tt.mid_len = (size_t)snprintf(mid, sizeof mid,
                                      ", \"expire_at\": %s, \"request_count\": ", exp);
    }
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c;
    int rc;
    /* Not retried (see redis_priv.h): a replay could count twice. */
    if (!(rc = acache__redis_conn_get(s, &c))) {
        if (!use_swap || touch_swap(s, c, req, &hv, d, &t, &rc) == SWAP_NOT_RUN) {
            need_now(&t);
            if (!(rc = render_touch(&tt, req))) {
                rc = acache__redis_eval(s, c, &acache__redis_touch_script, s->touch_sha,
                                        1, touch_build, touch_take, &t, req->key);
                if (!rc)
                    hint_after_script(s, req, &tt, &t);
                else
                    acache__redis_hint_drop(s->hints, req->key, strlen(req->key));
            }
        }
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

/* The optimistic compare-and-delete of one batch (at most OPT_BATCH keys):
 * WATCH + MGET + MULTI, the filters checked here on the values read, then
 * UNLINK of the matches + EXEC, which Redis refuses when any watched key was
 * written (or expired) since the WATCH. A key still goes only when the value
 * that matched is the one deleted, with no writer in between, but Redis pays
 * about what a plain MGET + UNLINK costs: the script decodes every candidate
 * with cjson (about 20k instructions per value, most of an invalidation's
 * Redis time). Small batches: Redis checks each WATCHed key against the ones
 * the connection already watches (quadratic; 500 keys cost 9 ms). 50 rather
 * than 100 saves Redis ~3k instructions per deleted pin (callgrind: 2000
 * pins of 20k, 183M -> 177M; the raw SCAN+MGET+UNLINK floor 158M, the
 * old per-key script 218M) for one more round trip per 100 keys: Redis is the
 * resource a fleet shares.
 * *done = 0 hands the batch to the script: EXEC refused, a value this parser
 * cannot read (the script's cjson decides about unreadable values, as
 * before), or an error reply to WATCH or MULTI (an ACL). A reply out of step
 * fails the call and discards the connection (it could hold WATCH state). */
#define OPT_BATCH 50
void (*acache__redis_delete_hook)(void); /* tests: runs between MGET and EXEC */

typedef struct opt_match {
    const acache_match *m;
    int yes;
} opt_match;

static int field_eq(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

static void opt_cb(const acache_record *rec, void *payload)
{
    opt_match *o = payload;
    o->yes = field_eq(o->m->provider_id, rec->provider_id) &&
             field_eq(o->m->endpoint_id, rec->endpoint_id) &&
             field_eq(o->m->key_id, rec->key_id);
}

static int is_status(const redisReply *r, const char *want)
{
    size_t n = strlen(want);
    return r->type == REDIS_REPLY_STATUS && r->len == n && memcmp(r->str, want, n) == 0;
}

/* Read `n` replies into r[] (all NULL on failure, *discard set). */
static int read_n(rconn *c, redisReply **r, int n, int *discard)
{
    for (int j = 0; j < n; j++)
        if (rconn_read(c, &r[j]) != 0) {
            for (int i = 0; i < j; i++) {
                freeReplyObject(r[i]);
                r[i] = NULL;
            }
            *discard = 1;
            return -1;
        }
    return 0;
}

static int opt_batch(redis_store *s, rconn *c, const acache_key *keys, size_t k,
                     const acache_match *m, const char **argv, size_t *lens,
                     size_t *deleted, int *done, int *discard)
{
    *done = 0;
    key_label lb;
    const char *what = acache__redis_key_label(&lb, &keys[0]);
    for (size_t j = 0; j < k; j++) {
        argv[1 + j] = keys[j].ptr;
        lens[1 + j] = keys[j].len;
    }
    const char *one[1];
    argv[0] = "WATCH";
    lens[0] = 5;
    int ok = rconn_append(c, (int)k + 1, argv, lens) == 0;
    argv[0] = "MGET";
    lens[0] = 4;
    ok = ok && rconn_append(c, (int)k + 1, argv, lens) == 0;
    one[0] = "MULTI";
    if (!ok || rconn_append(c, 1, one, NULL) != 0) {
        *discard = 1; /* part of it may be queued */
        return acache__oom();
    }
    redisReply *r[3] = {NULL, NULL, NULL};
    if (read_n(c, r, 3, discard) != 0)
        return acache__redis_io_fail(s, c, "WATCH", what);
    int watched = is_status(r[0], "OK"), in_multi = is_status(r[2], "OK");
    int undecided = 0;
    size_t nm = 0;
    const redisReply *v = r[1];
    if (v->type == REDIS_REPLY_ARRAY && v->elements == k) {
        for (size_t j = 0; j < k && !undecided; j++) {
            const redisReply *e = v->element[j];
            if (e->type != REDIS_REPLY_STRING)
                continue; /* missing, or of another type: never matches */
            opt_match o = {m, 0};
            if (acache_record_parse(e->str, e->len, opt_cb, &o) != ACACHE_OK)
                undecided = 1;
            else if (o.yes) {
                argv[1 + nm] = keys[j].ptr;
                lens[1 + nm++] = keys[j].len;
            }
        }
        acache_clear_error(); /* a value the parser refused: the script decides */
    } else {
        undecided = 1;
    }
    for (int j = 0; j < 3; j++)
        freeReplyObject(r[j]);
    if (undecided || nm == 0 || !watched || !in_multi) {
        /* Nothing to delete, or the script decides: leave no state behind
         * (DISCARD also forgets the WATCH). */
        if (in_multi || watched) {
            one[0] = in_multi ? "DISCARD" : "UNWATCH";
            redisReply *x = NULL;
            if (rconn_append(c, 1, one, NULL) != 0) {
                *discard = 1;
                return acache__oom();
            }
            if (read_n(c, &x, 1, discard) != 0)
                return acache__redis_io_fail(s, c, one[0], what);
            if (!is_status(x, "OK"))
                *discard = 1;
            freeReplyObject(x);
        }
        *done = !undecided && nm == 0;
        return ACACHE_OK;
    }
    if (acache__redis_delete_hook)
        acache__redis_delete_hook();
    argv[0] = "UNLINK";
    lens[0] = 6;
    one[0] = "EXEC";
    if (rconn_append(c, (int)nm + 1, argv, lens) != 0 ||
        rconn_append(c, 1, one, NULL) != 0) {
        *discard = 1;
        return acache__oom();
    }
    if (read_n(c, r, 2, discard) != 0)
        return acache__redis_io_fail(s, c, "EXEC", what);
    int rc = ACACHE_OK;
    const redisReply *x = r[1];
    if (x->type == REDIS_REPLY_ARRAY && x->elements == 1 &&
        x->element[0]->type == REDIS_REPLY_INTEGER) {
        *deleted += (size_t)x->element[0]->integer;
        *done = 1;
    } else if (x->type != REDIS_REPLY_NIL && x->type != REDIS_REPLY_ERROR) {
        *discard = 1;
        rc = acache__redis_reply_fail(x, "EXEC", what);
    } /* nil: a watched key changed; an error: EXECABORT. The script decides. */
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}

static int delete_script(redis_store *s, rconn *c, const acache_key *keys, size_t n,
                         const acache_match *m, const char **argv, size_t *lens,
                         size_t *deleted)
{
    delete_ctx d = {.keys = keys, .n = n, .argv = argv, .lens = lens};
    const char *fv[3] = {m->provider_id, m->endpoint_id, m->key_id};
    int rc = ACACHE_OK;
    for (int i = 0; i < 3 && !rc; i++)
        if (!(d.filt[i] = acache__sprintf("%s%s", fv[i] ? "=" : "", fv[i] ? fv[i] : "")))
            rc = ACACHE_ENOMEM;
    if (!rc) {
        key_label lb;
        rc = acache__redis_eval(s, c, &acache__redis_delete_script, s->delete_sha,
                                (n + DEL_BATCH - 1) / DEL_BATCH, delete_build,
                                delete_take, &d, acache__redis_key_label(&lb, &keys[0]));
    }
    *deleted += d.deleted;
    for (int i = 0; i < 3; i++)
        free(d.filt[i]);
    return rc;
}

int acache__redis_affinity_delete_if(acache_store *self, const acache_key *keys, size_t n,
                                     const acache_match *m, size_t *deleted)
{
    redis_store *s = (redis_store *)self;
    *deleted = 0;
    for (size_t i = 0; i < n; i++) /* the touch swap path's hints (hint.c) */
        acache__redis_hint_drop(s->hints, keys[i].ptr, keys[i].len);
    if (!m || (!m->provider_id && !m->endpoint_id && !m->key_id))
        return acache__redis_del(self, keys, n, deleted);
    if (n == 0)
        return ACACHE_OK;
    /* Optimistic for batches worth the extra round trips (bulk invalidation);
     * the script alone for a few keys, on a cluster node (cluster.c groups
     * keys by slot for it) and under ?wait_replicas (the script path WAITs). */
    int optimistic =
        n >= 16 && !s->cluster_node && !(s->wait_replicas > 0 && s->replicas > 0);
    size_t cap = (n < DEL_BATCH ? n : DEL_BATCH) + 6;
    const char **argv = acache__malloc(cap * sizeof *argv);
    size_t *lens = acache__malloc(cap * sizeof *lens);
    int rc = (argv && lens) ? ACACHE_OK : acache__oom();
    if (!rc) {
        sigpipe_guard g;
        acache__redis_sigpipe_block(s, &g);
        rconn *c;
        if (!(rc = acache__redis_conn_get(s, &c))) {
            int discard = 0;
            if (!optimistic)
                rc = delete_script(s, c, keys, n, m, argv, lens, deleted);
            for (size_t at = 0; optimistic && !rc && at < n; at += OPT_BATCH) {
                size_t k = n - at < OPT_BATCH ? n - at : OPT_BATCH;
                int done = 0;
                rc = opt_batch(s, c, keys + at, k, m, argv, lens, deleted, &done,
                               &discard);
                if (!rc && !done)
                    rc = delete_script(s, c, keys + at, k, m, argv, lens, deleted);
            }
            acache__redis_conn_put(s, c, discard);
        }
        acache__redis_sigpipe_restore(&g);
    }
    free(argv);
    free(lens);
    return rc;
}
