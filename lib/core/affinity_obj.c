/* The acache_affinity object: one allocation holding every string.
 * Immutable once built and reference counted: a "copy" (acache__affinity_dup,
 * an L1 hit) is one more reference, acache_affinity_free drops one. Nothing
 * writes an object after pack(), so sharing it between threads is safe.
 *
 * Each field keeps its length: the key fields come from the storage key,
 * which is bytes (Redis) and may hold a NUL; the C getters then see a
 * truncated string, the JSON form and the listing use the lengths. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../util/json.h"
#include "core.h"

struct acache_affinity {
    const char *affinity_key, *api_format, *model_name;
    const char *provider_id, *endpoint_id, *key_id;
    size_t len[ACACHE__F_COUNT]; /* in the order above (acache__affinity_field) */
    double created_at, expire_at;
    int64_t request_count;
    atomic_uint_fast32_t refs;
    char data[];
};

typedef struct {
    const char *s;
    size_t len;
} span;

static acache_affinity *pack(const span f[6], double created, double expire,
                             int64_t count)
{
    size_t total = 0;
    for (int i = 0; i < 6; i++)
        total += f[i].len + 1;
    acache_affinity *a = acache__malloc(sizeof *a + total);
    if (!a)
        return NULL;
    const char **dst[6] = {&a->affinity_key, &a->api_format,  &a->model_name,
                           &a->provider_id,  &a->endpoint_id, &a->key_id};
    char *p = a->data;
    for (int i = 0; i < 6; i++) {
        if (f[i].len)
            memcpy(p, f[i].s, f[i].len);
        p[f[i].len] = '\0';
        *dst[i] = p;
        a->len[i] = f[i].len;
        p += f[i].len + 1;
    }
    a->created_at = created;
    a->expire_at = expire;
    a->request_count = count;
    atomic_init(&a->refs, 1);
    return a;
}

static span sp(const char *s)
{
    span r = {s, s ? strlen(s) : 0};
    return r;
}

acache_affinity *acache__affinity_from_record(const acache_record *rec, const char *key,
                                              size_t key_len)
{
    span f[6] = {{0}};
    const char *ak = NULL, *fmt = NULL, *model = NULL;
    size_t akl = 0, fmtl = 0, modell = 0;
    if (key)
        acache__split_storage_key(key, key_len, &ak, &akl, &fmt, &fmtl, &model, &modell);
    f[0] = (span){ak, akl};
    /* The value's own api_format/model_name win: Aether splits keys on every
     * ':' and older writers omitted the fields. */
    f[1] = rec->api_format ? sp(rec->api_format) : (span){fmt, fmtl};
    f[2] = rec->model_name ? sp(rec->model_name) : (span){model, modell};
    f[3] = sp(rec->provider_id);
    f[4] = sp(rec->endpoint_id);
    f[5] = sp(rec->key_id);
    acache_affinity *a = pack(f, rec->created_at, rec->expire_at, rec->request_count);
    if (!a)
        acache__oom();
    return a;
}

const char *acache__affinity_field(const acache_affinity *a, int field, size_t *len)
{
    const char *const v[ACACHE__F_COUNT] = {a->affinity_key, a->api_format,
                                            a->model_name,   a->provider_id,
                                            a->endpoint_id,  a->key_id};
    *len = a->len[field];
    return v[field];
}

int acache__affinity_refresh(acache_affinity *a, double expire_at, int64_t count)
{
    /* Only its sole owner may change a record: every other holder was
     * promised an immutable one (acache__affinity_dup). */
    if (atomic_load_explicit(&a->refs, memory_order_acquire) != 1)
        return 0;
    a->expire_at = expire_at;
    a->request_count = count;
    return 1;
}

acache_affinity *acache__affinity_dup(const acache_affinity *a)
{
    /* Immutable: one more reference instead of a copy (an L1 hit used to be
     * mostly malloc + memcpy + free). Relaxed: the holder already sees it. */
    acache_affinity *m = (acache_affinity *)a;
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void acache__affinity_to_record(const acache_affinity *a, acache_record *rec)
{
    rec->provider_id = a->provider_id;
    rec->endpoint_id = a->endpoint_id;
    rec->key_id = a->key_id;
    rec->api_format = a->api_format;
    rec->model_name = a->model_name;
    rec->created_at = a->created_at;
    rec->expire_at = a->expire_at;
    rec->request_count = a->request_count;
}

const char *acache_affinity_client_key(const acache_affinity *a)
{
    return a ? a->affinity_key : NULL;
}
const char *acache_affinity_api_format(const acache_affinity *a)
{
    return a ? a->api_format : NULL;
}
const char *acache_affinity_model_name(const acache_affinity *a)
{
    return a ? a->model_name : NULL;
}
const char *acache_affinity_provider_id(const acache_affinity *a)
{
    return a ? a->provider_id : NULL;
}
const char *acache_affinity_endpoint_id(const acache_affinity *a)
{
    return a ? a->endpoint_id : NULL;
}
const char *acache_affinity_key_id(const acache_affinity *a)
{
    return a ? a->key_id : NULL;
}
double acache_affinity_created_at(const acache_affinity *a)
{
    return a ? a->created_at : 0.0;
}
double acache_affinity_expire_at(const acache_affinity *a)
{
    return a ? a->expire_at : 0.0;
}
int64_t acache_affinity_request_count(const acache_affinity *a)
{
    return a ? a->request_count : 0;
}

void acache_affinity_free(acache_affinity *a)
{
    /* acq_rel: the last holder's free sees every other holder's reads done. */
    if (a && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        free(a);
}

json_t *acache__affinity_json(const acache_affinity *a)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    static const struct {
        const char *name;
        int field;
    } order[] = {
        {"affinity_key", ACACHE__F_AFFINITY_KEY}, {"provider_id", ACACHE__F_PROVIDER_ID},
        {"endpoint_id", ACACHE__F_ENDPOINT_ID},   {"key_id", ACACHE__F_KEY_ID},
        {"api_format", ACACHE__F_API_FORMAT},     {"model_name", ACACHE__F_MODEL_NAME}};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        size_t len;
        const char *v = acache__affinity_field(a, order[i].field, &len);
        bad |= acache__json_set(o, order[i].name, acache__json_strn(v, len));
    }
    bad |= acache__json_set(o, "created_at", json_real(a->created_at));
    bad |= acache__json_set(o, "expire_at", json_real(a->expire_at));
    bad |= acache__json_set(o, "request_count", json_integer(a->request_count));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int acache_affinity_to_json(acache_buf *out, const acache_affinity *a)
{
    if (!out || !a)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_affinity_to_json: NULL argument");
    json_t *o = acache__affinity_json(a);
    if (!o)
        return acache__oom();
    int rc = acache__json_dump(out, o, 0);
    json_decref(o);
    return rc;
}
