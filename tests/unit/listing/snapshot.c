/* Listing snapshots (issue 11 item 4): every page cut from a snapshot equals
 * the listing built without one, and rule 3 decides each pin on its own
 * fields even though the api_keys row's answer is computed once. */
#include "fixture.h"

static acache *c;

static void setup(void)
{
    lf_write_catalog(LF_FERNET_KEY);
    c = lf_open(1, LF_FERNET_KEY, NULL);
    lf_fill(c);
    /* key-a1 on a second provider: a rule-3 match on provider_id selects this
     * pin and not key-a1's other two. */
    lf_pin(c, "key-a1", "gemini", "gm-1", "prov-2", "ep-2", "pk-2", 250);
}

static void teardown(void)
{
    acache_close(c);
    c = NULL;
    lf_remove_catalog();
}

TestSuite(listing_snapshot, .init = setup, .fini = teardown);

static char *page_json(const char *kw, int64_t limit, int64_t offset, int fresh)
{
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = kw;
    q.limit = limit;
    q.offset = offset;
    acache__listing *l = NULL;
    int rc = fresh ? acache__list_affinities_fresh(&l, c, &q)
                   : acache__list_affinities(&l, c, &q);
    cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache__listing_to_json(&b, l), ACACHE_OK);
    acache__listing_free(l);
    char *s = strdup(b.ptr);
    acache_buf_dispose(&b);
    cr_assert_not_null(s);
    return s;
}

Test(listing_snapshot, every_page_equals_the_listing_without_snapshot)
{
    /* none, rule 1 (key id), rule 2 (user), rule 3 on key, user and pin fields */
    static const char *kws[] = {NULL, "key-a1", "alice", "lice", "ov-2", "PK-", "zz"};
    for (size_t k = 0; k < sizeof kws / sizeof kws[0]; k++)
        for (int64_t limit = 1; limit <= 7; limit++) {
            atomic_fetch_add(&c->admin_gen, 1); /* the first page builds one */
            for (int64_t off = 0; off <= 7; off++) {
                char *snap = page_json(kws[k], limit, off, 0);
                char *fresh = page_json(kws[k], limit, off, 1);
                cr_assert_str_eq(snap, fresh, "keyword %s limit %lld offset %lld",
                                 kws[k] ? kws[k] : "(none)", (long long)limit,
                                 (long long)off);
                free(snap);
                free(fresh);
            }
        }
}

Test(listing_snapshot, rule3_decides_each_pin_of_a_key)
{
    /* provider_id: only key-a1's pin on prov-2, beside key-a2's */
    acache__listing *l = lf_list(c, "ov-2", 100, 0);
    LF_EXPECT(l, "key-a2/openai,key-a1/gemini");
    acache__listing_free(l);
    /* key_id: pk-1 is on key-a1's claude and openai pins only */
    l = lf_list(c, "PK-1", 100, 0);
    LF_EXPECT(l, "key-a1/claude,key-a1/openai");
    acache__listing_free(l);
    /* the key's own fields: every pin of key-a1 (its name), in order */
    l = lf_list(c, "LICE MAIN", 100, 0);
    LF_EXPECT(l, "key-a1/claude,key-a1/openai,key-a1/gemini");
    acache__listing_free(l);
    /* a key with no api_keys row matches on its affinity key alone */
    l = lf_list(c, "y-zz", 100, 0);
    LF_EXPECT(l, "key-zz/gemini");
    acache__listing_free(l);
}

/* Many pins with equal expire_at: the order is expire_at descending, ties by
 * (affinity_key, api_format, model_name), on the snapshot's pages as on the
 * listing without one. */
Test(listing_snapshot, order_of_many_pins_with_ties)
{
    char ak[32], model[32];
    for (int i = 0; i < 600; i++) {
        snprintf(ak, sizeof ak, "bulk-%03d", (i * 37) % 200);
        snprintf(model, sizeof model, "m-%d", i % 3);
        lf_pin(c, ak, "claude", model, "prov-1", "ep-1", "pk-1", (uint32_t)(100 + i % 4));
    }
    /* keys shorter than, as long as and longer than the sort's 8-byte prefix */
    static const char *shorts[] = {"abcdefgh0", "b", "abcdefghi", "ab", "abcdefgh", "a"};
    for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++)
        lf_pin(c, shorts[i], "claude", "m-0", "prov-1", "ep-1", "pk-1", 100);
    acache__listing *l = lf_list(c, NULL, 1000, 0);
    size_t n = acache__listing_count(l);
    cr_assert_eq(n, 612);
    for (size_t i = 1; i < n; i++) {
        const acache__listing_item *a = acache__listing_at(l, i - 1),
                                   *b = acache__listing_at(l, i);
        double ea = acache__listing_item_expire_at(a),
               eb = acache__listing_item_expire_at(b);
        cr_assert_geq(ea, eb, "item %zu", i);
        if (ea == eb) {
            int r = strcmp(acache__listing_item_affinity_key(a),
                           acache__listing_item_affinity_key(b));
            if (r == 0)
                r = strcmp(acache__listing_item_api_format(a),
                           acache__listing_item_api_format(b));
            if (r == 0)
                r = strcmp(acache__listing_item_global_model_id(a),
                           acache__listing_item_global_model_id(b));
            cr_assert_lt(r, 0, "item %zu", i);
        }
    }
    acache__listing_free(l);
    for (int64_t off = 0; off < 612; off += 97) {
        char *snap = page_json(NULL, 100, off, 0);
        char *fresh = page_json(NULL, 100, off, 1);
        cr_assert_str_eq(snap, fresh, "offset %lld", (long long)off);
        free(snap);
        free(fresh);
    }
}
