/* libFuzzer: an affinity value from arbitrary bytes, as any writer of the
 * shared Redis can store it (issue 8 item 4). Whatever parses must render,
 * and the rendering must parse back to the same record. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

typedef struct {
    acache_buf text; /* first rendering */
    acache_record rec;
    int seen;
} ctx;

static int same_num(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static void first_cb(const acache_record *rec, void *payload)
{
    ctx *x = payload;
    x->seen = 1;
    if (acache_record_render(&x->text, rec) != ACACHE_OK)
        abort();
    x->rec = *rec; /* its strings die with the first parse: only numbers are
                    * compared (the strings through the rendered text) */
}

static void again_cb(const acache_record *rec, void *payload)
{
    ctx *x = payload;
    acache_buf again = ACACHE_BUF_INIT;
    if (acache_record_render(&again, rec) != ACACHE_OK)
        abort();
    /* parse(render(r)) renders identically, and keeps the numbers */
    if (again.size != x->text.size || memcmp(again.ptr, x->text.ptr, again.size) != 0)
        abort();
    if (!same_num(rec->created_at, x->rec.created_at) ||
        !same_num(rec->expire_at, x->rec.expire_at) ||
        rec->request_count != x->rec.request_count)
        abort();
    if (!rec->provider_id || !rec->endpoint_id || !rec->key_id)
        abort();
    acache_buf_dispose(&again);
    x->seen = 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctx x = {.text = ACACHE_BUF_INIT, .seen = 0};
    if (acache_record_parse((const char *)data, size, first_cb, &x) == ACACHE_OK) {
        if (!x.seen)
            abort();
        if (acache_record_parse(x.text.ptr, x.text.size, again_cb, &x) != ACACHE_OK ||
            x.seen != 2)
            abort();
    }
    acache_buf_dispose(&x.text);
    return 0;
}
