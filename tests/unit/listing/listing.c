/* The enriched listing: selection rules, keyword matching, sort, pagination,
 * enrichment and masks, batching (admin-api.md "Enriched listing"). */
#include "fixture.h"

static acache *c;
static lf_proxy *proxy;

static void setup(void)
{
    lf_write_catalog(LF_FERNET_KEY);
    c = lf_open(1, LF_FERNET_KEY, &proxy);
    lf_fill(c);
    lf_proxy_reset(proxy);
}

static void teardown(void)
{
    acache_close(c);
    c = NULL;
    lf_remove_catalog();
}

TestSuite(listing, .init = setup, .fini = teardown);

Test(listing, no_keyword_sorted_and_enriched)
{
    acache__listing *l = lf_list(c, NULL, 100, 0);
    cr_assert_eq(acache__listing_total(l), 5);
    cr_assert_eq(acache__listing_count(l), 5);
    cr_assert_null(acache__listing_matched_user_id(l));
    LF_EXPECT(l, "key-a2/openai,key-a1/claude,key-a1/openai,key-zz/gemini,key-b1/claude");

    const acache__listing_item *it =
        acache__listing_at(l, 1); /* key-a1 / claude / gm-1 */
    cr_assert_str_eq(acache__listing_item_user_api_key_name(it), "Alice Main");
    cr_assert_str_eq(acache__listing_item_user_api_key_prefix(it),
                     "sk-alice********cdef");
    cr_assert_eq(acache__listing_item_is_standalone(it), 0);
    cr_assert_str_eq(acache__listing_item_user_id(it), "user-1");
    cr_assert_str_eq(acache__listing_item_username(it), "alice");
    cr_assert_str_eq(acache__listing_item_email(it), "alice@example.com");
    cr_assert_str_eq(acache__listing_item_provider_id(it), "prov-1");
    cr_assert_str_eq(acache__listing_item_provider_name(it), "Anthropic Direct");
    cr_assert_str_eq(acache__listing_item_endpoint_id(it), "ep-1");
    cr_assert_str_eq(acache__listing_item_endpoint_api_format(it), "CLAUDE");
    cr_assert_str_eq(acache__listing_item_endpoint_url(it), "https://api.anthropic.com");
    cr_assert_str_eq(acache__listing_item_key_id(it), "pk-1");
    cr_assert_str_eq(acache__listing_item_key_name(it), "anthropic-prod");
    cr_assert_str_eq(acache__listing_item_key_prefix(it), "sk-ant-a********mnop");
    cr_assert_float_eq(acache__listing_item_rate_multiplier(it), 1.5, 1e-12);
    cr_assert_str_eq(acache__listing_item_global_model_id(it), "gm-1");
    cr_assert_str_eq(acache__listing_item_model_name(it), "claude-sonnet-4");
    cr_assert_str_eq(acache__listing_item_model_display_name(it), "Claude Sonnet 4");
    cr_assert_str_eq(acache__listing_item_api_format(it), "claude");
    cr_assert_float_eq(acache__listing_item_created_at(it), LF_NOW, 1e-6);
    cr_assert_float_eq(acache__listing_item_expire_at(it), LF_NOW + 300, 1e-6);
    cr_assert_eq(acache__listing_item_request_count(it), 1);

    it = acache__listing_at(l, 0); /* key-a2: no ciphertext, raw model, short key */
    cr_assert_null(acache__listing_item_user_api_key_prefix(it));
    cr_assert_str_eq(acache__listing_item_key_prefix(it), "short********");
    cr_assert_str_eq(acache__listing_item_global_model_id(it), "gpt-4o");
    cr_assert_str_eq(acache__listing_item_model_name(it), "gpt-4o");
    cr_assert_null(acache__listing_item_model_display_name(it));
    cr_assert_float_eq(acache__listing_item_rate_multiplier(it), 0.8, 1e-12);

    it = acache__listing_at(l, 3); /* key-zz: nothing known anywhere */
    cr_assert_null(acache__listing_item_user_api_key_name(it));
    cr_assert_null(acache__listing_item_user_api_key_prefix(it));
    cr_assert_null(acache__listing_item_user_id(it));
    cr_assert_null(acache__listing_item_username(it));
    cr_assert_null(acache__listing_item_email(it));
    cr_assert_null(acache__listing_item_provider_name(it));
    cr_assert_null(acache__listing_item_endpoint_api_format(it));
    cr_assert_null(acache__listing_item_endpoint_url(it));
    cr_assert_null(acache__listing_item_key_name(it));
    cr_assert_null(acache__listing_item_key_prefix(it));
    cr_assert_float_eq(acache__listing_item_rate_multiplier(it), 1.0, 1e-12);
    cr_assert_eq(acache__listing_item_is_standalone(it), 0);
    cr_assert_str_eq(acache__listing_item_model_name(it), "claude-sonnet-4");

    it = acache__listing_at(l, 4); /* key-b1: undecryptable key, standalone, ':' model */
    cr_assert_null(acache__listing_item_user_api_key_prefix(it));
    cr_assert_eq(acache__listing_item_is_standalone(it), 1);
    cr_assert_str_eq(acache__listing_item_username(it), "Bob");
    cr_assert_str_eq(acache__listing_item_model_name(it), "qwen2.5:7b");
    cr_assert_str_eq(acache__listing_item_key_prefix(it), "sk-ant-a********mnop");

    cr_assert_null(acache__listing_at(l, 5));
    acache__listing_free(l);
}

Test(listing, one_lookup_per_table_and_one_decrypt_per_ciphertext)
{
    acache__listing *l = lf_list(c, NULL, 100, 0);
    for (int t = LF_USERS; t <= LF_GMS; t++)
        cr_assert_eq(proxy->calls[t], 1, "table %d looked up %d times", t,
                     proxy->calls[t]);
    cr_assert_eq(proxy->calls[LF_MODELS], 0);
    /* distinct values, not one per record */
    cr_assert_eq(proxy->values[LF_KEYS], 4);
    cr_assert_eq(proxy->values[LF_PKEYS], 4);
    cr_assert_eq(proxy->values[LF_GMS], 3);
    /* key-a1, pk-1 (= pk-3), pk-2, "not-a-token"; key-a1 appears twice */
    cr_assert_eq(acache__listing_decrypt_count(l), 4);
    acache__listing_free(l);

    /* Many more records: still one look-up per table. */
    char ak[32];
    for (int i = 0; i < 60; i++) {
        snprintf(ak, sizeof ak, "bulk-%02d", i);
        lf_pin(c, ak, "claude", "gm-1", "prov-1", "ep-1", "pk-1", 50);
    }
    lf_proxy_reset(proxy);
    l = lf_list(c, NULL, 1000, 0);
    cr_assert_eq(acache__listing_total(l), 65);
    for (int t = LF_USERS; t <= LF_GMS; t++)
        cr_assert_eq(proxy->calls[t], 1, "table %d looked up %d times", t,
                     proxy->calls[t]);
    cr_assert_eq(acache__listing_decrypt_count(l), 4);
    acache__listing_free(l);

    /* Rule 3 with a keyword: the resolution look-ups plus one per table. */
    lf_proxy_reset(proxy);
    l = lf_list(c, "bulk-1", 1000, 0);
    cr_assert_eq(acache__listing_total(l), 10);
    cr_assert_eq(proxy->calls[LF_KEYS], 2);  /* rule 1 + enrichment */
    cr_assert_eq(proxy->calls[LF_USERS], 4); /* id, username, email + enrichment */
    for (int t = LF_PROVS; t <= LF_GMS; t++)
        cr_assert_eq(proxy->calls[t], 1);
    acache__listing_free(l);
}

Test(listing, only_the_page_is_enriched)
{
    acache__listing *l = lf_list(c, NULL, 1, 4); /* key-b1 only */
    cr_assert_eq(acache__listing_count(l), 1);
    cr_assert_eq(proxy->values[LF_KEYS], 1);
    cr_assert_eq(proxy->values[LF_PKEYS], 1);
    /* "not-a-token" and pk-1's ciphertext */
    cr_assert_eq(acache__listing_decrypt_count(l), 2);
    acache__listing_free(l);
}

Test(listing, rule1_api_key_id)
{
    acache__listing *l = lf_list(c, "key-a1", 100, 0);
    LF_EXPECT(l, "key-a1/claude,key-a1/openai");
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-1");
    cr_assert_str_eq(acache__listing_item_username(acache__listing_at(l, 0)), "alice");
    cr_assert_eq(proxy->calls[LF_KEYS], 1); /* the rule-1 row is reused */
    acache__listing_free(l);

    l = lf_list(c, "  key-b1\t\n", 100, 0); /* trimmed */
    LF_EXPECT(l, "key-b1/claude");
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-2");
    acache__listing_free(l);

    l = lf_list(c, "key-c1", 100, 0); /* a key without pins */
    cr_assert_eq(acache__listing_total(l), 0);
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-3");
    acache__listing_free(l);
}

Test(listing, rule2_user)
{
    const char *idents[] = {"user-1", "alice", "alice@example.com"};
    for (size_t i = 0; i < 3; i++) {
        acache__listing *l = lf_list(c, idents[i], 100, 0);
        LF_EXPECT(l, "key-a2/openai,key-a1/claude,key-a1/openai");
        cr_assert_str_eq(acache__listing_matched_user_id(l), "user-1");
        acache__listing_free(l);
    }
    acache__listing *l = lf_list(c, "bob@corp.example", 100, 0);
    LF_EXPECT(l, "key-b1/claude");
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-2");
    cr_assert_str_eq(acache__listing_item_email(acache__listing_at(l, 0)),
                     "bob@corp.example");
    acache__listing_free(l);

    l = lf_list(c, "carol", 100, 0); /* a user whose keys have no pins */
    cr_assert_eq(acache__listing_total(l), 0);
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-3");
    acache__listing_free(l);

    l = lf_list(c, "eve@example.com", 100, 0); /* a user without keys */
    cr_assert_eq(acache__listing_total(l), 0);
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-5");
    acache__listing_free(l);
}

Test(listing, rule3_keyword_on_each_field)
{
    static const struct {
        const char *kw, *expect;
    } cases[] = {
        {"KEY-Z", "key-zz/gemini"},                              /* affinity_key */
        {"lice mai", "key-a1/claude,key-a1/openai"},             /* user_api_key_name */
        {"ER-2", "key-b1/claude"},                               /* user_id */
        {"bO", "key-b1/claude"},                                 /* username / key name */
        {"CORP.EXAMPLE", "key-b1/claude"},                       /* email */
        {"ov-2", "key-a2/openai"},                               /* provider_id */
        {"PK-3", "key-b1/claude"},                               /* key_id */
        {"ALICE@", "key-a2/openai,key-a1/claude,key-a1/openai"}, /* email, not a user */
        {"relay", ""},  /* provider name / key name are not matched */
        {"openai", ""}, /* nor api_format */
        {"zzz-nothing", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        acache__listing *l = lf_list(c, cases[i].kw, 100, 0);
        char got[512];
        lf_keys(l, got, sizeof got);
        cr_assert_str_eq(got, cases[i].expect, "keyword %s", cases[i].kw);
        cr_assert_null(acache__listing_matched_user_id(l), "keyword %s", cases[i].kw);
        cr_assert_eq(acache__listing_total(l), acache__listing_count(l));
        acache__listing_free(l);
    }
    /* only "" is no keyword (a blank one is matched as given: issue 8 item 11) */
    acache__listing *l = lf_list(c, "", 100, 0);
    cr_assert_eq(acache__listing_total(l), 5);
    cr_assert_null(acache__listing_matched_user_id(l));
    acache__listing_free(l);
}

/* Issue 8 item 11: Aether trims the keyword only to resolve a user (rule 2);
 * rules 1 and 3 see it as given. */
Test(listing, keyword_trimmed_only_to_resolve_a_user)
{
    static const struct {
        const char *kw, *expect, *user;
    } cases[] = {
        {"   ", "", NULL},         /* rule 3 on "   ": nothing (was: every pin) */
        {" OV-2 ", "", NULL},      /* " ov-2 " is in no field (was: prov-2's pin) */
        {"Alice Main ", "", NULL}, /* nor "alice main " */
        {"\tkey-z", "", NULL},     /* nor "\tkey-z" */
        /* trimmed "key-a2" resolves (step 4) to user-1: all of alice's keys
         * (was: rule 1 on the trimmed keyword, key-a2's pin only) */
        {" key-a2 ", "key-a2/openai,key-a1/claude,key-a1/openai", "user-1"},
        /* trimmed "key-a1" is user-5's username (step 2 < step 4): no keys */
        {" key-a1 ", "", "user-5"},
        {"  key-b1\t\n", "key-b1/claude", "user-2"},
        {" alice\n", "key-a2/openai,key-a1/claude,key-a1/openai", "user-1"},
        {"key-a2", "key-a2/openai", "user-1"}, /* rule 1 untrimmed */
        {"KEY-Z", "key-zz/gemini", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        acache__listing *l = lf_list(c, cases[i].kw, 100, 0);
        char got[512];
        lf_keys(l, got, sizeof got);
        cr_assert_str_eq(got, cases[i].expect, "keyword '%s'", cases[i].kw);
        const char *u = acache__listing_matched_user_id(l);
        if (cases[i].user)
            cr_assert(u && strcmp(u, cases[i].user) == 0, "keyword '%s': user %s",
                      cases[i].kw, u ? u : "(null)");
        else
            cr_assert_null(u, "keyword '%s': user %s", cases[i].kw, u);
        acache__listing_free(l);
    }
    /* Trimming changed nothing: step 4 is rule 1 again and is not re-asked. */
    lf_proxy_reset(proxy);
    acache__listing *l = lf_list(c, "no-such-thing", 100, 0);
    cr_assert_eq(proxy->calls[LF_KEYS], 2); /* rule 1 + enrichment */
    acache__listing_free(l);
    lf_proxy_reset(proxy);
    l = lf_list(c, " no-such-thing ", 100, 0);
    cr_assert_eq(proxy->calls[LF_KEYS], 3); /* rule 1, step 4, enrichment */
    acache__listing_free(l);
}

/* Issue 8 item 11: case folding is Unicode, as Python's str.lower(). */
Test(listing, keyword_unicode_case_folding)
{
    lf_pin(c, "key-z1", "claude", "gm-1", "prov-1", "ep-1", "pk-1", 50);
    /* data that is not valid UTF-8 (a Redis key is bytes) */
    lf_pin(c, "BAD\xff\xc3KEY\xe2\x84", "claude", "gm-1", "prov-1", "ep-1", "pk-1", 40);
    static const struct {
        const char *kw, *expect;
    } cases[] = {
        {"zo\xc3\xab@", "key-z1/claude"},        /* 'zoë@' in ZOË@EXAMPLE.COM */
        {"ZO\xc3\x8b@example", "key-z1/claude"}, /* both sides folded */
        {"\xc3\x8b k", "key-z1/claude"},         /* 'Ë k' in 'Zoë Key' */
        {"\xe2\x84\xaa"
         "ey-z1",
         "key-z1/claude"}, /* KELVIN SIGN folds to 'k' */
        /* a lone lead byte: the raw byte of the bad key, never half of 'ë' */
        {"\xc3", "BAD\xff\xc3KEY\xe2\x84/claude"},
        {"\xab", ""}, /* nor a lone continuation byte */
        {"o\xc3", ""},
        /* invalid bytes of the data compare byte for byte, the rest is folded */
        {"bad\xff\xc3k", "BAD\xff\xc3KEY\xe2\x84/claude"},
        {"\xff", "BAD\xff\xc3KEY\xe2\x84/claude"},
        {"key\xe2\x84", "BAD\xff\xc3KEY\xe2\x84/claude"},
        {"\xc3\xbf", ""},                           /* 'ÿ' is not the byte 0xff */
        {"\xc3k", "BAD\xff\xc3KEY\xe2\x84/claude"}, /* raw 0xc3, then 'K' folded */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        acache__listing *l = lf_list(c, cases[i].kw, 100, 0);
        char got[512];
        lf_keys(l, got, sizeof got);
        cr_assert_str_eq(got, cases[i].expect, "keyword case %zu", i);
        acache__listing_free(l);
    }
}

Test(listing, hostile_keywords)
{
    lf_pin(c, "odd_key%[*?]\\'x", "claude", "m", "prov-1", "ep-1", "pk-1", 50);
    static const char *only_odd[] = {"_", "%", "[", "*", "?", "\\", "'", "%[*?]\\'"};
    for (size_t i = 0; i < sizeof only_odd / sizeof only_odd[0]; i++) {
        acache__listing *l = lf_list(c, only_odd[i], 100, 0);
        char got[512];
        lf_keys(l, got, sizeof got);
        cr_assert_str_eq(got, "odd_key%[*?]\\'x/claude", "keyword %s", only_odd[i]);
        acache__listing_free(l);
    }
    static const char *none[] = {
        "\"", "%%", "k_y", "%key", "\xff\xfe", "\xc3", "a;DROP TABLE users;--"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        acache__listing *l = lf_list(c, none[i], 100, 0);
        cr_assert_eq(acache__listing_total(l), 0, "keyword %s", none[i]);
        acache__listing_free(l);
    }
    size_t n = 100000;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    acache__listing *l = lf_list(c, big, 100, 0);
    cr_assert_eq(acache__listing_total(l), 0);
    acache__listing_free(l);
    free(big);
}

Test(listing, pagination_and_meta)
{
    acache__listing *l = lf_list(c, NULL, 2, 1);
    LF_EXPECT(l, "key-a1/claude,key-a1/openai");
    cr_assert_eq(acache__listing_total(l), 5);
    cr_assert_eq(acache__listing_count(l), 2);
    cr_assert_eq(acache__listing_limit(l), 2);
    cr_assert_eq(acache__listing_offset(l), 1);
    acache__listing_free(l);

    l = lf_list(c, NULL, 2, 4);
    LF_EXPECT(l, "key-b1/claude");
    acache__listing_free(l);

    l = lf_list(c, NULL, 1000, 5);
    cr_assert_eq(acache__listing_total(l), 5);
    cr_assert_eq(acache__listing_count(l), 0);
    cr_assert_null(acache__listing_at(l, 0));
    acache__listing_free(l);

    l = lf_list(c, NULL, 1, INT64_MAX);
    cr_assert_eq(acache__listing_count(l), 0);
    acache__listing_free(l);

    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&b, c, NULL, 2, 3), ACACHE_OK);
    json_t *j = lf_parse(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_t *data = json_object_get(j, "data");
    json_t *meta = json_object_get(data, "meta");
    cr_assert_eq(json_integer_value(json_object_get(meta, "total")), 5);
    cr_assert_eq(json_integer_value(json_object_get(meta, "limit")), 2);
    cr_assert_eq(json_integer_value(json_object_get(meta, "offset")), 3);
    cr_assert_eq(json_integer_value(json_object_get(meta, "count")), 2);
    cr_assert_eq(json_array_size(json_object_get(data, "items")), 2);
    cr_assert(json_is_null(json_object_get(data, "matched_user_id")));
    json_decref(j);
    acache_buf_dispose(&b);
}

Test(listing, limit_and_offset_are_validated)
{
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    acache__listing *l = (acache__listing *)&q; /* must be reset to NULL */
    cr_assert_eq(q.limit, 100);
    cr_assert_eq(q.offset, 0);
    const int64_t bad[][2] = {{0, 0},         {-1, 0}, {1001, 0},
                              {INT64_MAX, 0}, {1, -1}, {100, INT64_MIN}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q.limit = bad[i][0];
        q.offset = bad[i][1];
        cr_assert_eq(acache__list_affinities(&l, c, &q), ACACHE_EINVALID);
        cr_assert_null(l);
    }
    q.limit = 1000;
    q.offset = 0;
    q.version = 0;
    cr_assert_eq(acache__list_affinities(&l, c, &q), ACACHE_EINVALID);
    q.version = ACACHE_LIST_QUERY_VERSION + 1;
    cr_assert_eq(acache__list_affinities(&l, c, &q), ACACHE_EINVALID);

    cr_assert_eq(acache__list_affinities(&l, c, NULL), ACACHE_OK); /* defaults */
    cr_assert_eq(acache__listing_limit(l), 100);
    acache__listing_free(l);

    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&b, c, NULL, 0, 0), ACACHE_EINVALID);
    cr_assert_eq(th_list_json(&b, c, NULL, 10, -5), ACACHE_EINVALID);
    cr_assert_null(b.ptr);
    cr_assert_eq(acache_http_status(ACACHE_EINVALID), 422);
}

Test(listing, ties_are_deterministic)
{
    /* Same expire_at for all: order is (affinity_key, api_format, model_name). */
    lf_pin(c, "tie-b", "claude", "m2", "prov-1", "ep-1", "pk-1", 1000);
    lf_pin(c, "tie-a", "openai", "m1", "prov-1", "ep-1", "pk-1", 1000);
    lf_pin(c, "tie-a", "claude", "m9", "prov-1", "ep-1", "pk-1", 1000);
    lf_pin(c, "tie-a", "claude", "m1", "prov-1", "ep-1", "pk-1", 1000);
    acache__listing *l = lf_list(c, "tie-", 100, 0);
    char got[512];
    lf_keys(l, got, sizeof got);
    cr_assert_str_eq(got, "tie-a/claude,tie-a/claude,tie-a/openai,tie-b/claude");
    cr_assert_str_eq(acache__listing_item_global_model_id(acache__listing_at(l, 0)),
                     "m1");
    cr_assert_str_eq(acache__listing_item_global_model_id(acache__listing_at(l, 1)),
                     "m9");
    acache__listing_free(l);
    /* pages of one reproduce the same order */
    const char *want[] = {"m1", "m9", "m1", "m2"};
    for (int i = 0; i < 4; i++) {
        l = lf_list(c, "tie-", 1, i);
        cr_assert_str_eq(acache__listing_item_global_model_id(acache__listing_at(l, 0)),
                         want[i]);
        acache__listing_free(l);
    }
}

Test(listing, expired_pins_are_not_listed)
{
    th_advance(250); /* R3 (100) and R4 (200) have expired */
    acache__listing *l = lf_list(c, NULL, 100, 0);
    LF_EXPECT(l, "key-a2/openai,key-a1/claude,key-a1/openai");
    acache__listing_free(l);
}

Test(listing, json_item_shape)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&b, c, "key-zz", 100, 0), ACACHE_OK);
    json_t *j = lf_parse(&b);
    json_t *it = json_array_get(json_object_get(json_object_get(j, "data"), "items"), 0);
    static const char *fields[] = {"affinity_key",
                                   "user_api_key_name",
                                   "user_api_key_prefix",
                                   "is_standalone",
                                   "user_id",
                                   "username",
                                   "email",
                                   "provider_id",
                                   "provider_name",
                                   "endpoint_id",
                                   "endpoint_api_format",
                                   "endpoint_url",
                                   "key_id",
                                   "key_name",
                                   "key_prefix",
                                   "rate_multiplier",
                                   "global_model_id",
                                   "model_name",
                                   "model_display_name",
                                   "api_format",
                                   "created_at",
                                   "expire_at",
                                   "request_count"};
    cr_assert_eq(json_object_size(it), sizeof fields / sizeof fields[0]);
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(it, k, v) cr_assert_str_eq(k, fields[i++], "field order");
    cr_assert(json_is_null(json_object_get(it, "user_api_key_name")));
    cr_assert(json_is_false(json_object_get(it, "is_standalone")));
    cr_assert(json_is_real(json_object_get(it, "rate_multiplier")));
    cr_assert(json_is_real(json_object_get(it, "expire_at")));
    cr_assert(json_is_integer(json_object_get(it, "request_count")));
    cr_assert_str_eq(json_string_value(json_object_get(it, "model_name")),
                     "claude-sonnet-4");
    cr_assert(strstr(b.ptr, "\"rate_multiplier\": 1.0") != NULL, "%s", b.ptr);
    json_decref(j);

    acache__listing *l = lf_list(c, "key-a1", 100, 0);
    cr_assert_eq(acache__listing_to_json(&b, l), ACACHE_OK);
    j = lf_parse(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "matched_user_id")), "user-1");
    cr_assert_null(json_object_get(j, "status"), "the data object only");
    json_decref(j);
    acache__listing_free(l);
    acache_buf_dispose(&b);
}

/* ---- other configurations ---- */

Test(listing_config, no_catalog)
{
    acache *h = lf_open(0, LF_FERNET_KEY, NULL);
    lf_fill(h);
    acache__listing *l = lf_list(h, NULL, 100, 0);
    cr_assert_eq(acache__listing_total(l), 5);
    for (size_t i = 0; i < 5; i++) {
        const acache__listing_item *it = acache__listing_at(l, i);
        cr_assert_null(acache__listing_item_user_api_key_name(it));
        cr_assert_null(acache__listing_item_user_api_key_prefix(it));
        cr_assert_null(acache__listing_item_user_id(it));
        cr_assert_null(acache__listing_item_provider_name(it));
        cr_assert_null(acache__listing_item_key_prefix(it));
        cr_assert_null(acache__listing_item_model_display_name(it));
        cr_assert_str_eq(acache__listing_item_model_name(it),
                         acache__listing_item_global_model_id(it));
        cr_assert_float_eq(acache__listing_item_rate_multiplier(it), 1.0, 1e-12);
    }
    cr_assert_eq(acache__listing_decrypt_count(l), 0);
    acache__listing_free(l);

    /* raw fields only: an API key id is a plain substring here */
    l = lf_list(h, "KEY-A1", 100, 0);
    LF_EXPECT(l, "key-a1/claude,key-a1/openai");
    cr_assert_null(acache__listing_matched_user_id(l));
    acache__listing_free(l);
    l = lf_list(h, "alice", 100, 0);
    cr_assert_eq(acache__listing_total(l), 0);
    acache__listing_free(l);
    l = lf_list(h, "pk-2", 100, 0);
    LF_EXPECT(l, "key-a2/openai");
    acache__listing_free(l);
    acache_close(h);
}

Test(listing_config, no_encryption_key_gives_null_masks)
{
    lf_write_catalog(LF_FERNET_KEY);
    acache *h = lf_open(1, NULL, NULL);
    lf_fill(h);
    acache__listing *l = lf_list(h, NULL, 100, 0);
    for (size_t i = 0; i < acache__listing_count(l); i++) {
        cr_assert_null(
            acache__listing_item_user_api_key_prefix(acache__listing_at(l, i)));
        cr_assert_null(acache__listing_item_key_prefix(acache__listing_at(l, i)));
    }
    cr_assert_str_eq(acache__listing_item_key_name(acache__listing_at(l, 1)),
                     "anthropic-prod");
    cr_assert_eq(acache__listing_decrypt_count(l), 0);
    acache__listing_free(l);
    acache_close(h);
    lf_remove_catalog();
}

Test(listing_config, wrong_key_gives_null_masks_and_keeps_last_error)
{
    lf_write_catalog(LF_FERNET_KEY);
    acache *h = lf_open(1, "a passphrase that is not the catalog's key", NULL);
    lf_fill(h);
    acache_error_set(ACACHE_ERROR, "earlier failure");
    acache__listing *l = lf_list(h, NULL, 100, 0);
    cr_assert_str_eq(acache_last_error(), "earlier failure");
    for (size_t i = 0; i < acache__listing_count(l); i++) {
        cr_assert_null(
            acache__listing_item_user_api_key_prefix(acache__listing_at(l, i)));
        cr_assert_null(acache__listing_item_key_prefix(acache__listing_at(l, i)));
    }
    acache__listing_free(l);
    acache_close(h);
    lf_remove_catalog();
}

Test(listing_config, passphrase_key)
{
    const char *pass = "correct horse battery staple";
    lf_write_catalog(pass);
    acache *h = lf_open(1, pass, NULL);
    lf_fill(h);
    acache__listing *l = lf_list(h, "key-a1", 1, 0);
    cr_assert_str_eq(acache__listing_item_user_api_key_prefix(acache__listing_at(l, 0)),
                     "sk-alice********cdef");
    acache__listing_free(l);
    acache_close(h);
    lf_remove_catalog();
}
