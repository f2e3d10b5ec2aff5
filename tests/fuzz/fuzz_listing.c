/* libFuzzer: the enriched listing over arbitrary (key bytes, value bytes)
 * pairs, as any writer of the shared Redis can store them (issue 8 items 3
 * and 11), with a keyword from the input.
 *
 * Input: the first line is the keyword (empty: none; it stops at a NUL, as
 * the C API does); every further line is "key-suffix TAB value", served under
 * "cache_affinity:" + key-suffix (which may hold NUL bytes) with the value
 * parsed as Aether JSON. The memory store cannot hold keys with a NUL (its
 * slots take C strings), so a small read-only store serves the entries the
 * way the Redis store's SCAN + MGET hands them over; a small fixed catalog
 * (non-ASCII names, a user without keys, a key without user) enriches them.
 *
 * Checked: every call succeeds; the JSON parses back (JSON_ALLOW_NUL) with
 * items == meta.count <= meta.total; every item's affinity_key is, byte for
 * byte, the affinity_key field of an input key (never a truncated one); a
 * keyword never selects more than the unfiltered listing holds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/catalog.h>
#include <aether_cache/sys/store.h>

#include "admin/listing_priv.h"
#include "core/core.h"

#define NOW 1000.0

static const uint8_t *in_data;
static size_t in_size;
static size_t body_off; /* where the entry lines start */

/* ---- store: the input's entries ---- */

typedef struct {
    const char *prefix;
    size_t plen;
    acache_entry_batch_cb cb;
    void *payload;
    char *key;
    size_t key_len;
    int rc, seen;
} scan_ctx;

static void emit(scan_ctx *s, const acache_record *rec)
{
    acache_entry e = {s->key, s->key_len, rec, NULL, 0};
    s->seen = 1;
    if (!s->rc)
        s->rc = s->cb(&e, 1, s->payload);
}

static void rec_cb(const acache_record *rec, void *payload)
{
    emit(payload, rec);
}

static int f_scan(acache_store *self, const char *prefix, acache_entry_batch_cb cb,
                  void *payload)
{
    (void)self;
    static const char kp[] = ACACHE_AFFINITY_PREFIX;
    scan_ctx s = {prefix, strlen(prefix), cb, payload, NULL, 0, 0, 0};
    size_t i = body_off;
    while (i < in_size && !s.rc) {
        const uint8_t *line = in_data + i;
        const uint8_t *nl = memchr(line, '\n', in_size - i);
        size_t len = nl ? (size_t)(nl - line) : in_size - i;
        i += len + 1;
        const uint8_t *tab = memchr(line, '\t', len);
        if (!tab)
            continue;
        size_t klen = (size_t)(tab - line), vlen = len - klen - 1;
        s.key_len = sizeof kp - 1 + klen;
        if (!(s.key = malloc(s.key_len + 1)))
            abort();
        memcpy(s.key, kp, sizeof kp - 1);
        memcpy(s.key + sizeof kp - 1, line, klen);
        s.key[s.key_len] = '\0';
        if (s.key_len >= s.plen && memcmp(s.key, prefix, s.plen) == 0) {
            s.seen = 0;
            if (acache_record_parse((const char *)tab + 1, vlen, rec_cb, &s) != ACACHE_OK)
                emit(&s, NULL); /* unreadable: skipped and counted by the core */
            else if (!s.seen)
                abort();
        }
        free(s.key);
        s.key = NULL;
    }
    return s.rc;
}

static int f_get(acache_store *self, const char *key, acache_record_cb cb, void *payload)
{
    (void)self, (void)key, (void)cb, (void)payload;
    return ACACHE_ENOTFOUND;
}

static int f_touch(acache_store *self, const acache_touch_req *req, int *result,
                   acache_record_cb cb, void *payload)
{
    (void)self, (void)req, (void)result, (void)cb, (void)payload;
    return ACACHE_ESTORE; /* read-only: the listing never writes */
}

static int f_delete_if(acache_store *self, const acache_key *keys, size_t n,
                       const acache_match *m, size_t *deleted)
{
    (void)self, (void)keys, (void)n, (void)m;
    *deleted = 0;
    return ACACHE_OK;
}

static void f_store_free(acache_store *self)
{
    (void)self;
}

static acache_store store = {
    .version = ACACHE_STORE_VERSION,
    .scheme = "fuzz",
    .affinity_get = f_get,
    .affinity_touch = f_touch,
    .affinity_delete_if = f_delete_if,
    .affinity_scan = f_scan,
    .free = f_store_free,
};

/* ---- catalog: fixed rows ---- */

static const acache_cat_user users[] = {
    {"u1", "alice", "ALICE@EXAMPLE.COM"},
    {"u2", "Zo\xc3\xab", "ZO\xc3\x8b@EXAMPLE.COM"},
    {"u3", "k1", "nokeys@example.com"}, /* username equal to a key id */
    {"u4", "\xce\xa3\xce\xa3", NULL},   /* final sigma context */
};
static const acache_cat_api_key api_keys[] = {
    {"k1", "u1", "Alice Main", "gAAAAABbogus", 0},
    {"k2", "u1", "Alice CI", NULL, 1},
    {"k3", "u2",
     "Zo\xc3\xab \xe2\x84\xaa"
     "ey",
     NULL, 0},
    {"k4", NULL, "orphan", "not-a-token", 0},
    {" k5 ", "u2", "spaced", NULL, 0},
};
static const acache_cat_provider providers[] = {{"p1", "anthropic", "Anthropic", 1}};
static const acache_cat_endpoint endpoints[] = {{"e1", "p1", "CLAUDE", "https://x"}};
static const acache_cat_provider_key pkeys[] = {{"pk1", "e1", "prod", "bogus", 1.5}};
static const acache_cat_global_model gms[] = {{"g1", "claude", "Claude", 1}};

#define N(a) (sizeof a / sizeof a[0])

static int eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static int any_of(const char *v, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (eq(v, values[i]))
            return 1;
    return 0;
}

static int c_users(acache_catalog *self, int by, const char *const *v, size_t n,
                   acache_cat_user_cb cb, void *payload)
{
    (void)self;
    for (size_t i = 0; i < N(users); i++) {
        const char *f = by == ACACHE_BY_USERNAME ? users[i].username
                        : by == ACACHE_BY_EMAIL  ? users[i].email
                                                 : users[i].id;
        int rc;
        if (any_of(f, v, n) && (rc = cb(&users[i], payload)) != 0)
            return rc;
    }
    return ACACHE_OK;
}

static int c_keys(acache_catalog *self, int by, const char *const *v, size_t n,
                  acache_cat_api_key_cb cb, void *payload)
{
    (void)self;
    for (size_t i = 0; i < N(api_keys); i++) {
        const char *f = by == ACACHE_BY_USER_ID ? api_keys[i].user_id : api_keys[i].id;
        int rc;
        if (any_of(f, v, n) && (rc = cb(&api_keys[i], payload)) != 0)
            return rc;
    }
    return ACACHE_OK;
}

#define BY_ID(name, rows, cbtype)                                                        \
    static int name(acache_catalog *self, int by, const char *const *v, size_t n,        \
                    cbtype cb, void *payload)                                            \
    {                                                                                    \
        (void)self, (void)by;                                                            \
        for (size_t i = 0; i < N(rows); i++) {                                           \
            int rc;                                                                      \
            if (any_of(rows[i].id, v, n) && (rc = cb(&rows[i], payload)) != 0)           \
                return rc;                                                               \
        }                                                                                \
        return ACACHE_OK;                                                                \
    }

BY_ID(c_providers, providers, acache_cat_provider_cb)
BY_ID(c_endpoints, endpoints, acache_cat_endpoint_cb)
BY_ID(c_pkeys, pkeys, acache_cat_provider_key_cb)
BY_ID(c_gms, gms, acache_cat_global_model_cb)

static void c_free(acache_catalog *self)
{
    (void)self;
}

static acache_catalog catalog = {
    .version = ACACHE_CATALOG_VERSION,
    .scheme = "fuzz",
    .users = c_users,
    .api_keys = c_keys,
    .providers = c_providers,
    .endpoints = c_endpoints,
    .provider_keys = c_pkeys,
    .global_models = c_gms,
    .free = c_free,
};

/* ---- the target ---- */

static acache *handle;

static double clock_cb(void *payload)
{
    (void)payload;
    return NOW;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    acache_options o = ACACHE_OPTIONS_INIT;
    o.clock = clock_cb;
    o.encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    if (acache_open_with_backends(&handle, &o, &store, &catalog) != ACACHE_OK)
        abort();
    return 0;
}

/* Does s[0..n) hold U+FFFD (then it may stand for invalid input bytes)? */
static int memmem_fffd(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, "\xef\xbf\xbd", 3) == 0)
            return 1;
    return 0;
}

/* Is ak[0..n) the affinity_key field (up to the first ':') of an input key? */
static int input_has_ak(const char *ak, size_t n)
{
    size_t i = body_off;
    while (i < in_size) {
        const uint8_t *line = in_data + i;
        const uint8_t *nl = memchr(line, '\n', in_size - i);
        size_t len = nl ? (size_t)(nl - line) : in_size - i;
        i += len + 1;
        const uint8_t *tab = memchr(line, '\t', len);
        const uint8_t *colon = tab ? memchr(line, ':', (size_t)(tab - line)) : NULL;
        if (colon && (size_t)(colon - line) == n && memcmp(line, ak, n) == 0)
            return 1;
    }
    return 0;
}

/* Render the listing for `kw`, check its shape, return meta.total. */
static size_t check_listing(const char *kw)
{
    acache_buf b = ACACHE_BUF_INIT;
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = kw;
    q.limit = 1000;
    int rc = acache_list_affinities(&b, handle, &q);
    if (rc != ACACHE_OK)
        abort();
    json_error_t err;
    json_t *j = json_loadb(b.ptr, b.size, JSON_ALLOW_NUL, &err);
    if (!j)
        abort();
    json_t *data = json_object_get(j, "data");
    json_t *items = json_object_get(data, "items");
    json_t *meta = json_object_get(data, "meta");
    if (!json_is_array(items) || !json_is_object(meta))
        abort();
    json_int_t total = json_integer_value(json_object_get(meta, "total"));
    json_int_t count = json_integer_value(json_object_get(meta, "count"));
    if ((json_int_t)json_array_size(items) != count || count > total)
        abort();
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *ak = json_object_get(json_array_get(items, i), "affinity_key");
        if (!json_is_string(ak) || json_string_length(ak) == 0)
            abort();
        /* invalid UTF-8 is rendered as U+FFFD: compare only valid keys */
        size_t n = json_string_length(ak);
        const char *v = json_string_value(ak);
        if (!memmem_fffd(v, n) && !input_has_ak(v, n))
            abort();
    }
    json_decref(j);
    acache_buf_dispose(&b);
    return (size_t)total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!handle)
        LLVMFuzzerInitialize(NULL, NULL);
    const uint8_t *nl = memchr(data, '\n', size);
    size_t kwlen = nl ? (size_t)(nl - data) : size;
    char *kw = malloc(kwlen + 1);
    if (!kw)
        abort();
    memcpy(kw, data, kwlen);
    kw[kwlen] = '\0';
    in_data = data;
    in_size = size;
    body_off = nl ? kwlen + 1 : size;
    /* The store's contents changed under the handle (as another process's
     * writes would): drop the listing snapshots of the previous input, which
     * only this handle's own writes invalidate. */
    atomic_fetch_add(&handle->admin_gen, 1);

    size_t all = check_listing(NULL);
    if (kw[0] && check_listing(kw) > all)
        abort();

    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_user_affinities(&b, handle, kw);
    if (rc != ACACHE_OK && rc != ACACHE_ENOTFOUND)
        abort();
    acache_buf_dispose(&b);
    rc = acache__affinity_list_json(&b, handle, NULL);
    if (rc != ACACHE_OK)
        abort();
    acache_buf_dispose(&b);
    free(kw);
    return 0;
}
