/* The enriched listing and user operations on a real PostgreSQL catalog (the
 * unit fixture's catalog seeded into a fresh database) and the private Redis
 * store: same answers as the JSON catalog, one look-up per table. */
#include "../unit/listing/fixture.h"
#include "pg_server.h"

static acache *c;
static lf_proxy *proxy;
static char *pg_uri;

static void setup(void)
{
    lf_write_catalog(LF_FERNET_KEY);
    pg_uri = acache_test_pg_new_db(NULL);
    acache_test_pg_seed_json(pg_uri, lf_path);
    lf_catalog_uri = pg_uri;
    c = lf_open(1, LF_FERNET_KEY, &proxy);
    cr_assert_str_eq(acache_handle_catalog(c)->scheme, "proxy");
    lf_fill(c);
    lf_proxy_reset(proxy);
}

static void teardown(void)
{
    acache_close(c);
    c = NULL;
    lf_catalog_uri = NULL;
    acache_test_pg_drop_db(pg_uri);
    pg_uri = NULL;
    lf_remove_catalog();
}

TestSuite(listing_postgres, .init = setup, .fini = teardown);

Test(listing_postgres, enriched_listing)
{
    acache__listing *l = lf_list(c, NULL, 100, 0);
    LF_EXPECT(l, "key-a2/openai,key-a1/claude,key-a1/openai,key-zz/gemini,key-b1/claude");
    for (int t = LF_USERS; t <= LF_GMS; t++)
        cr_assert_eq(proxy->calls[t], 1, "table %d looked up %d times", t,
                     proxy->calls[t]);
    cr_assert_eq(acache__listing_decrypt_count(l), 4);
    const acache__listing_item *it = acache__listing_at(l, 1);
    cr_assert_str_eq(acache__listing_item_user_api_key_prefix(it),
                     "sk-alice********cdef");
    cr_assert_str_eq(acache__listing_item_key_prefix(it), "sk-ant-a********mnop");
    cr_assert_str_eq(acache__listing_item_username(it), "alice");
    cr_assert_str_eq(acache__listing_item_provider_name(it), "Anthropic Direct");
    cr_assert_str_eq(acache__listing_item_endpoint_url(it), "https://api.anthropic.com");
    cr_assert_float_eq(acache__listing_item_rate_multiplier(it), 1.5, 1e-12);
    cr_assert_str_eq(acache__listing_item_model_name(it), "claude-sonnet-4");
    it = acache__listing_at(l, 4);
    cr_assert_eq(acache__listing_item_is_standalone(it), 1);
    cr_assert_null(acache__listing_item_user_api_key_prefix(it));
    acache__listing_free(l);
}

Test(listing_postgres, selection_rules)
{
    acache__listing *l = lf_list(c, "key-a1", 100, 0);
    LF_EXPECT(l, "key-a1/claude,key-a1/openai");
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-1");
    acache__listing_free(l);
    l = lf_list(c, "alice@example.com", 100, 0);
    LF_EXPECT(l, "key-a2/openai,key-a1/claude,key-a1/openai");
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-1");
    acache__listing_free(l);
    /* hostile text reaches SQL only as bound parameters */
    static const char *kws[] = {"CORP.EXAMPLE", "'; DROP TABLE users; --", "%", "_",
                                "\\"};
    static const char *want[] = {"key-b1/claude", "", "", "", ""};
    for (size_t i = 0; i < 5; i++) {
        l = lf_list(c, kws[i], 100, 0);
        char got[512];
        lf_keys(l, got, sizeof got);
        cr_assert_str_eq(got, want[i], "keyword %s", kws[i]);
        acache__listing_free(l);
    }
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_resolve_user(&b, c, "key-a1"), ACACHE_OK);
    cr_assert_str_eq(b.ptr, "user-5");
    cr_assert_eq(acache_resolve_user(&b, c, "key-b1"), ACACHE_OK);
    cr_assert_str_eq(b.ptr, "user-2");
    acache_buf_dispose(&b);
}

Test(listing_postgres, user_operations)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_user_affinities(&b, c, "alice"), ACACHE_OK);
    json_t *j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "total_endpoints")), 3);
    json_decref(j);
    cr_assert_eq(acache__clear_user_json(&b, c, "key-b1"), ACACHE_OK);
    j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 1);
    json_decref(j);
    cr_assert_eq(acache__clear_user_json(&b, c, "user-1"), ACACHE_OK);
    j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 3);
    json_decref(j);
    acache_buf_dispose(&b);
    cr_assert_eq(acache__clear_user_json(&b, c, "ghost"), ACACHE_ENOTFOUND);
    acache__listing *l = lf_list(c, NULL, 100, 0);
    LF_EXPECT(l, "key-zz/gemini");
    acache__listing_free(l);
}
