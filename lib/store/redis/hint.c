/* The touch swap path's hint table (redis_priv.h, docs/affinity.md "Touch:
 * the swap path"): per storage key, the exact value bytes this store last
 * wrote or read. Direct-mapped, so a busy table simply forgets; a wrong or
 * stale hint costs one repair script, never a wrong count. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "redis_priv.h"

typedef struct hint_slot {
    pthread_mutex_t mu;
    char *mem; /* key, then (when has_val) value, then the five strings */
    size_t key_len, val_len, created_off, created_len;
    size_t str_off[5];
    int has_val;
    double created_at, expire_at;
    int64_t count;
    int64_t contended_until; /* monotonic ms */
} hint_slot;

struct redis_hints {
    _Atomic int script_only;
    hint_slot slot[HINT_SLOTS];
};

int acache__redis_hints_new(redis_hints **out)
{
    redis_hints *h = acache__calloc(1, sizeof *h);
    if (!h)
        return acache__oom();
    for (size_t i = 0; i < HINT_SLOTS; i++) {
        if (pthread_mutex_init(&h->slot[i].mu, NULL) != 0) {
            while (i-- > 0)
                pthread_mutex_destroy(&h->slot[i].mu);
            free(h);
            return acache_error_set(ACACHE_ERROR, "redis store: cannot create a mutex");
        }
    }
    *out = h;
    return ACACHE_OK;
}

void acache__redis_hints_free(redis_hints *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < HINT_SLOTS; i++) {
        pthread_mutex_destroy(&h->slot[i].mu);
        free(h->slot[i].mem);
    }
    free(h);
}

void acache__redis_hints_script_only(redis_hints *h)
{
    if (h)
        atomic_store(&h->script_only, 1);
}

static hint_slot *slot_of(redis_hints *h, const char *key, size_t len)
{
    return &h->slot[acache__hash(key, len) & (HINT_SLOTS - 1)];
}

static int same_key(const hint_slot *sl, const char *key, size_t len)
{
    return sl->mem && sl->key_len == len && memcmp(sl->mem, key, len) == 0;
}

int acache__redis_hint_find(redis_hints *h, const acache_touch_req *req, hint_view *out)
{
    if (!h || atomic_load(&h->script_only))
        return 0;
    size_t klen = strlen(req->key);
    hint_slot *sl = slot_of(h, req->key, klen);
    const char *want[5] = {req->provider_id, req->endpoint_id, req->key_id,
                           req->api_format, req->model_name};
    int ok = 0;
    pthread_mutex_lock(&sl->mu);
    if (same_key(sl, req->key, klen) && sl->has_val && sl->expire_at > req->now &&
        (sl->contended_until == 0 || sl->contended_until <= acache__monotonic_ms())) {
        ok = 1;
        for (int i = 0; i < 5 && ok; i++)
            ok = want[i] && strcmp(sl->mem + sl->str_off[i], want[i]) == 0;
    }
    if (ok) {
        memcpy(out->val, sl->mem + sl->key_len, sl->val_len);
        out->val_len = sl->val_len;
        out->created_off = sl->created_off;
        out->created_len = sl->created_len;
        out->created_at = sl->created_at;
        out->expire_at = sl->expire_at;
        out->count = sl->count;
    }
    pthread_mutex_unlock(&sl->mu);
    return ok;
}

void acache__redis_hint_put(redis_hints *h, const char *key, size_t key_len,
                            const hint_fill *f)
{
    if (!h)
        return;
    size_t sl_len[5], need = key_len + f->val_len;
    for (int i = 0; i < 5; i++) {
        if (!f->strs[i])
            return;
        sl_len[i] = strlen(f->strs[i]);
        need += sl_len[i] + 1;
    }
    hint_slot *sl = slot_of(h, key, key_len);
    if (need > HINT_MAX) { /* too big to keep: forget what was there */
        acache__redis_hint_drop(h, key, key_len);
        return;
    }
    char *m = acache__malloc(need);
    if (!m)
        return; /* a hint is optional: the next touch takes the script */
    memcpy(m, key, key_len);
    memcpy(m + key_len, f->val, f->val_len);
    size_t off[5], at = key_len + f->val_len;
    for (int i = 0; i < 5; i++) {
        off[i] = at;
        memcpy(m + at, f->strs[i], sl_len[i] + 1);
        at += sl_len[i] + 1;
    }
    pthread_mutex_lock(&sl->mu);
    if (!same_key(sl, key, key_len))
        sl->contended_until = 0; /* the mark was another key's */
    char *old = sl->mem;
    sl->mem = m;
    sl->key_len = key_len;
    sl->val_len = f->val_len;
    sl->created_off = f->created_off;
    sl->created_len = f->created_len;
    memcpy(sl->str_off, off, sizeof off);
    sl->created_at = f->created_at;
    sl->expire_at = f->expire_at;
    sl->count = f->count;
    sl->has_val = 1;
    pthread_mutex_unlock(&sl->mu);
    free(old);
}

void acache__redis_hint_drop(redis_hints *h, const char *key, size_t key_len)
{
    if (!h)
        return;
    hint_slot *sl = slot_of(h, key, key_len);
    pthread_mutex_lock(&sl->mu);
    if (same_key(sl, key, key_len))
        sl->has_val = 0;
    pthread_mutex_unlock(&sl->mu);
}

void acache__redis_hint_contend(redis_hints *h, const char *key, size_t key_len,
                                uint32_t ms)
{
    if (!h)
        return;
    hint_slot *sl = slot_of(h, key, key_len);
    char *m = NULL;
    if (key_len <= HINT_MAX && !(m = acache__malloc(key_len ? key_len : 1)))
        return;
    pthread_mutex_lock(&sl->mu);
    char *old = NULL;
    if (!same_key(sl, key, key_len)) {
        old = sl->mem;
        sl->mem = m;
        m = NULL;
        if (sl->mem)
            memcpy(sl->mem, key, key_len);
        sl->key_len = key_len;
    }
    sl->has_val = 0;
    sl->contended_until = ms ? acache__monotonic_ms() + ms : 0;
    pthread_mutex_unlock(&sl->mu);
    free(old);
    free(m);
}

/* ---- a value read with GET ---- */

/* `"s"`: plain printable ASCII without quote or backslash, which Python's
 * json.dumps and jansson both write as the bytes themselves. */
static size_t plain_string(const char *p, size_t n)
{
    if (n < 2 || p[0] != '"')
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"')
            return i + 1;
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return 0;
    }
    return 0;
}

/* A number as touch.lua matches it (-?%d[%d.eE+-]*) that reads back finite. */
static size_t number_text(const char *p, size_t n, double *out)
{
    size_t i = 0;
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || p[i] < '0' || p[i] > '9')
        return 0;
    while (i < n && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.' || p[i] == 'e' ||
                     p[i] == 'E' || p[i] == '+' || p[i] == '-'))
        i++;
    char buf[64];
    if (i >= sizeof buf)
        return 0;
    memcpy(buf, p, i);
    buf[i] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end || !isfinite(v))
        return 0;
    *out = v;
    return i;
}

static int lit(const char *p, size_t n, size_t *at, const char *s)
{
    size_t l = strlen(s);
    if (n - *at < l || memcmp(p + *at, s, l) != 0)
        return 0;
    *at += l;
    return 1;
}

void acache__redis_hint_from_value(redis_hints *h, const char *key, const char *val,
                                   size_t len)
{
    if (!h || atomic_load(&h->script_only) || len > HINT_MAX)
        return;
    /* The common get: the value this store wrote or read last, unchanged.
     * A hash, a lock and a memcmp instead of a parse and a copy. */
    size_t klen = strlen(key);
    hint_slot *hs = slot_of(h, key, klen);
    pthread_mutex_lock(&hs->mu);
    int same = same_key(hs, key, klen) && hs->has_val && hs->val_len == len &&
               memcmp(hs->mem + klen, val, len) == 0;
    pthread_mutex_unlock(&hs->mu);
    if (same)
        return;
    static const char *const names[5] = {
        "{\"provider_id\": ", ", \"endpoint_id\": ", ", \"key_id\": ",
        ", \"api_format\": ", ", \"model_name\": "};
    char strs[5][HINT_MAX];
    size_t at = 0;
    hint_fill f = {.val = val, .val_len = len};
    for (int i = 0; i < 5; i++) {
        if (!lit(val, len, &at, names[i]))
            return;
        size_t sl = plain_string(val + at, len - at);
        if (!sl)
            return;
        memcpy(strs[i], val + at + 1, sl - 2);
        strs[i][sl - 2] = '\0';
        f.strs[i] = strs[i];
        at += sl;
    }
    if (!lit(val, len, &at, ", \"created_at\": "))
        return;
    f.created_off = at;
    size_t nl = number_text(val + at, len - at, &f.created_at);
    if (!nl)
        return;
    f.created_len = nl;
    at += nl;
    if (!lit(val, len, &at, ", \"expire_at\": "))
        return;
    if (!(nl = number_text(val + at, len - at, &f.expire_at)))
        return;
    at += nl;
    if (!lit(val, len, &at, ", \"request_count\": "))
        return;
    /* canonical digits only (no sign, no leading zero), below 10^18 */
    size_t d0 = at;
    int64_t cnt = 0;
    while (at < len && val[at] >= '0' && val[at] <= '9' && at - d0 < 18)
        cnt = cnt * 10 + (val[at++] - '0');
    if (at == d0 || (val[d0] == '0' && at - d0 > 1) || at + 1 != len || val[at] != '}')
        return;
    f.count = cnt;
    acache__redis_hint_put(h, key, klen, &f);
}
