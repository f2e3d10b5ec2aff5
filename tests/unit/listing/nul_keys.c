/* Storage keys holding a NUL byte (issue 8 item 3, listing side): such a key
 * is listed, sorted, matched and rendered with all its bytes, never under its
 * truncated prefix, and never enriched as the key id that prefix names.
 *
 * The memory store cannot hold such a key: its slots take C-string keys (a
 * limit of the store vtable). Redis can (SET with %b). So these tests open the
 * handle on a small read-only store that serves fixed scan entries, as the
 * Redis store's SCAN + MGET would hand them over (key bytes with a length). */
#include "fixture.h"

typedef struct {
    const char *key;
    size_t key_len;
    acache_record rec;
} nk_entry;

#define NK(lit) lit, sizeof lit - 1
#define NK_REC(prov, key, exp)                                                           \
    {                                                                                    \
        prov, "ep-1", key, NULL, NULL, LF_NOW - 10, LF_NOW + exp, 2                      \
    }

/* api_format and model_name come from the key: the values lack them. */
static const nk_entry nk_entries[] = {
    {NK("cache_affinity:a\0b:claude:m"), NK_REC("prov-1", "pk-1", 500)},
    {NK("cache_affinity:a:claude:m"), NK_REC("prov-1", "pk-1", 400)},
    /* a prefix that is a real API key id: not enriched as key-a1 */
    {NK("cache_affinity:key-a1\0zz:claude:m"), NK_REC("prov-1", "pk-1", 300)},
    {NK("cache_affinity:key-a1:claude:gm-1"), NK_REC("prov-1", "pk-1", 300)},
    /* NUL in the key's api_format and model fields */
    {NK("cache_affinity:key-b1:cl\0x:gm-1\0y"), NK_REC("prov-1", "pk-1", 200)},
};
#define NK_N (sizeof nk_entries / sizeof nk_entries[0])

static int nk_get(acache_store *self, const char *key, acache_record_cb cb, void *payload)
{
    (void)self, (void)key, (void)cb, (void)payload;
    return ACACHE_ENOTFOUND;
}

static int nk_touch(acache_store *self, const acache_touch_req *req, int *result,
                    acache_record_cb cb, void *payload)
{
    (void)self, (void)req, (void)result, (void)cb, (void)payload;
    return acache_error_set(ACACHE_ESTORE, "read-only test store");
}

static int nk_delete_if(acache_store *self, const acache_key *keys, size_t n,
                        const acache_match *m, size_t *deleted)
{
    (void)self, (void)keys, (void)n, (void)m;
    *deleted = 0;
    return ACACHE_OK;
}

/* 1: the scan hands every entry over twice, as Redis SCAN may while it
 * rehashes (a key returned in two batches). */
static int nk_repeat;

static int nk_scan(acache_store *self, const char *prefix, acache_entry_batch_cb cb,
                   void *payload)
{
    (void)self;
    acache_entry e[NK_N];
    size_t n = 0, plen = strlen(prefix);
    for (size_t i = 0; i < NK_N; i++) {
        if (nk_entries[i].key_len < plen || memcmp(nk_entries[i].key, prefix, plen) != 0)
            continue;
        e[n] = (acache_entry){nk_entries[i].key, nk_entries[i].key_len,
                              &nk_entries[i].rec, NULL, 0};
        n++;
    }
    int rc = n ? cb(e, n, payload) : ACACHE_OK;
    if (rc == ACACHE_OK && n && nk_repeat)
        rc = cb(e, n, payload);
    return rc;
}

static void nk_free(acache_store *self)
{
    free(self);
}

static acache *c;

static void setup(void)
{
    lf_write_catalog(LF_FERNET_KEY);
    th_set_time(LF_NOW);
    acache_store *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->version = ACACHE_STORE_VERSION;
    s->scheme = "nul-test";
    s->affinity_get = nk_get;
    s->affinity_touch = nk_touch;
    s->affinity_delete_if = nk_delete_if;
    s->affinity_scan = nk_scan;
    s->free = nk_free;
    acache_catalog *cat = NULL;
    cr_assert_eq(acache__catalog_open(&cat, lf_path), ACACHE_OK, "%s",
                 acache_last_error());
    acache_options o = ACACHE_OPTIONS_INIT;
    o.clock = lf_clock;
    o.encryption_key = LF_FERNET_KEY;
    cr_assert_eq(acache_open_with_backends(&c, &o, s, cat), ACACHE_OK, "%s",
                 acache_last_error());
}

static void teardown(void)
{
    nk_repeat = 0;
    acache_close(c);
    c = NULL;
    lf_remove_catalog();
}

TestSuite(nul_keys, .init = setup, .fini = teardown);

/* The string's bytes equal `want[0..n)`. */
static void expect_bytes(json_t *s, const char *want, size_t n, const char *what)
{
    cr_assert(json_is_string(s), "%s is not a string", what);
    cr_assert_eq(json_string_length(s), n, "%s: length %zu, want %zu", what,
                 json_string_length(s), n);
    cr_assert(memcmp(json_string_value(s), want, n) == 0, "%s differs", what);
}

static json_t *list_items(const char *kw)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&b, c, kw, 100, 0), ACACHE_OK, "%s", acache_last_error());
    json_t *j = lf_parse(&b);
    acache_buf_dispose(&b);
    json_t *items = json_object_get(json_object_get(j, "data"), "items");
    cr_assert(json_is_array(items));
    json_incref(items);
    json_decref(j);
    return items;
}

static const char *str_of(json_t *item, const char *field)
{
    return json_string_value(json_object_get(item, field));
}

Test(nul_keys, listed_with_every_byte)
{
    json_t *items = list_items(NULL);
    cr_assert_eq(json_array_size(items), NK_N);
    /* expire_at descending; the tie at 300 by key bytes ("key-a1" < "key-a1\0zz") */
    json_t *it = json_array_get(items, 0);
    expect_bytes(json_object_get(it, "affinity_key"), "a\0b", 3, "affinity_key 0");
    cr_assert_str_eq(str_of(it, "api_format"), "claude");
    expect_bytes(json_object_get(it, "global_model_id"), "m", 1, "model 0");
    expect_bytes(json_object_get(json_array_get(items, 1), "affinity_key"), "a", 1,
                 "affinity_key 1");

    it = json_array_get(items, 2);
    expect_bytes(json_object_get(it, "affinity_key"), "key-a1", 6, "affinity_key 2");
    cr_assert_str_eq(str_of(it, "user_api_key_name"), "Alice Main");
    cr_assert_str_eq(str_of(it, "model_name"), "claude-sonnet-4"); /* gm-1 */

    it = json_array_get(items, 3);
    expect_bytes(json_object_get(it, "affinity_key"), "key-a1\0zz", 9, "affinity_key 3");
    /* not enriched under the truncated "key-a1" */
    cr_assert(json_is_null(json_object_get(it, "user_api_key_name")));
    cr_assert(json_is_null(json_object_get(it, "user_id")));
    cr_assert(json_is_null(json_object_get(it, "user_api_key_prefix")));

    it = json_array_get(items, 4);
    expect_bytes(json_object_get(it, "api_format"), "cl\0x", 4, "api_format 4");
    expect_bytes(json_object_get(it, "global_model_id"), "gm-1\0y", 6,
                 "global_model_id 4");
    /* not the GlobalModel gm-1 either */
    expect_bytes(json_object_get(it, "model_name"), "gm-1\0y", 6, "model_name 4");
    cr_assert(json_is_null(json_object_get(it, "model_display_name")));
    json_decref(items);

    /* The C getters can only show the part before the NUL. */
    acache__listing *l = lf_list(c, NULL, 100, 0);
    cr_assert_str_eq(acache__listing_item_affinity_key(acache__listing_at(l, 0)), "a");
    acache__listing_free(l);
}

Test(nul_keys, selected_and_matched_by_all_bytes)
{
    /* rule 1 for key-a1: its own pin, not "key-a1\0zz" */
    json_t *items = list_items("key-a1");
    cr_assert_eq(json_array_size(items), 1);
    expect_bytes(json_object_get(json_array_get(items, 0), "affinity_key"), "key-a1", 6,
                 "rule 1");
    json_decref(items);

    /* rule 3 sees the bytes after the NUL ("key-b1" has a 'b' too) */
    items = list_items("B");
    cr_assert_eq(json_array_size(items), 2);
    expect_bytes(json_object_get(json_array_get(items, 0), "affinity_key"), "a\0b", 3,
                 "rule 3");
    json_decref(items);
    items = list_items("ZZ");
    cr_assert_eq(json_array_size(items), 1);
    json_decref(items);
}

Test(nul_keys, affinity_json_keeps_every_byte)
{
    acache__affinity_list *all = NULL;
    cr_assert_eq(acache__affinity_list_fetch(&all, c, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    int seen = 0;
    for (size_t i = 0; i < acache__affinity_list_count(all); i++) {
        acache_buf b = ACACHE_BUF_INIT;
        cr_assert_eq(acache_affinity_to_json(&b, acache__affinity_list_at(all, i)),
                     ACACHE_OK);
        if (strstr(b.ptr, "\"a\\u0000b\"")) {
            json_t *j = lf_parse(&b);
            expect_bytes(json_object_get(j, "affinity_key"), "a\0b", 3, "affinity json");
            json_decref(j);
            seen++;
        }
        acache_buf_dispose(&b);
    }
    cr_assert_eq(seen, 1);
    acache__affinity_list_free(all);
}

/* SCAN may return a key twice: the listing shows each pin once and counts it
 * once. */
Test(nul_keys, a_key_scanned_twice_is_listed_once)
{
    nk_repeat = 1;
    json_t *items = list_items(NULL);
    cr_assert_eq(json_array_size(items), NK_N);
    for (size_t i = 1; i < json_array_size(items); i++) {
        json_t *a = json_object_get(json_array_get(items, i - 1), "affinity_key");
        json_t *b = json_object_get(json_array_get(items, i), "affinity_key");
        json_t *ma = json_object_get(json_array_get(items, i - 1), "global_model_id");
        json_t *mb = json_object_get(json_array_get(items, i), "global_model_id");
        cr_assert(!(json_equal(a, b) && json_equal(ma, mb)), "item %zu repeated", i);
    }
    json_decref(items);
}
