/* libFuzzer: the record parse's strict fast path against jansson (issue 12
 * item 3). For any bytes, acache_record_parse (fast path, jansson fallback)
 * and the jansson-only parse agree: same status, same strings, the same
 * doubles bit for bit, the same count. The input is also tried reshaped
 * into the strict layout (its bytes spliced into the field slots), so that
 * the fuzzer reaches the fast path's number and string checks often. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

#include "core/core.h"

typedef struct seen {
    int calls;
    char *s[5];
    size_t len[5];
    double created_at, expire_at;
    int64_t count;
} seen;

static void keep(const acache_record *rec, void *payload)
{
    seen *x = payload;
    const char *f[5] = {rec->provider_id, rec->endpoint_id, rec->key_id, rec->api_format,
                        rec->model_name};
    for (int i = 0; i < 5; i++) {
        x->s[i] = f[i] ? strdup(f[i]) : NULL;
        if (f[i] && !x->s[i])
            abort();
    }
    x->created_at = rec->created_at;
    x->expire_at = rec->expire_at;
    x->count = rec->request_count;
    x->calls++;
}

static void drop(seen *x)
{
    for (int i = 0; i < 5; i++)
        free(x->s[i]);
}

static void check(const char *json, size_t len)
{
    seen a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int ra = acache_record_parse(json, len, keep, &a);
    int rb = acache__record_parse_jansson(json, len, keep, &b);
    if (ra != rb || a.calls != b.calls)
        abort();
    for (int i = 0; i < 5; i++) {
        if (!a.s[i] != !b.s[i])
            abort();
        if (a.s[i] && strcmp(a.s[i], b.s[i]) != 0)
            abort();
    }
    if (memcmp(&a.created_at, &b.created_at, sizeof a.created_at) != 0 ||
        memcmp(&a.expire_at, &b.expire_at, sizeof a.expire_at) != 0 || a.count != b.count)
        abort();
    drop(&a);
    drop(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check((const char *)data, size);
    /* Reshaped: the input split at '|' fills the eight slots of the layout. */
    static const char *const pre[8] = {
        "{\"provider_id\": \"",   "\", \"endpoint_id\": \"", "\", \"key_id\": \"",
        "\", \"api_format\": \"", "\", \"model_name\": \"",  "\", \"created_at\": ",
        ", \"expire_at\": ",      ", \"request_count\": "};
    size_t cap = size + 256;
    char *buf = malloc(cap);
    if (!buf)
        return 0;
    size_t o = 0, at = 0;
    for (int k = 0; k < 8; k++) {
        size_t l = strlen(pre[k]);
        memcpy(buf + o, pre[k], l);
        o += l;
        const uint8_t *bar = at < size ? memchr(data + at, '|', size - at) : NULL;
        size_t end = bar ? (size_t)(bar - data) : size;
        if (k < 7 && !bar)
            end = at < size ? at + (size - at) / 2 : at; /* share what is left */
        if (end > at) {
            memcpy(buf + o, data + at, end - at);
            o += end - at;
        }
        at = bar ? end + 1 : end;
    }
    buf[o++] = '}';
    check(buf, o);
    free(buf);
    return 0;
}
