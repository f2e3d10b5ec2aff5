/* Identifier resolution, one user's affinities and invalidation by identifier
 * (admin-api.md). */
#include "fixture.h"

static acache *c;

static void setup(void)
{
    lf_write_catalog(LF_FERNET_KEY);
    c = lf_open(1, LF_FERNET_KEY, NULL);
    lf_fill(c);
}

static void teardown(void)
{
    acache_close(c);
    c = NULL;
    lf_remove_catalog();
}

TestSuite(users, .init = setup, .fini = teardown);

static void expect_user(const char *ident, const char *want)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_resolve_user(&b, c, ident);
    if (!want) {
        cr_assert_eq(rc, ACACHE_ENOTFOUND, "%s resolved to %s", ident, b.ptr);
        cr_assert_null(b.ptr);
        return;
    }
    cr_assert_eq(rc, ACACHE_OK, "%s: %s", ident, acache_last_error());
    cr_assert_str_eq(b.ptr, want, "identifier %s", ident);
    acache_buf_dispose(&b);
}

Test(users, resolution_order)
{
    expect_user("user-1", "user-1");            /* id beats user-4's username */
    expect_user("alice", "user-1");             /* username beats user-4's email */
    expect_user("alice@example.com", "user-1"); /* email */
    expect_user("bob@corp.example", "user-2");
    expect_user("key-b1", "user-2");     /* API key id -> its owner */
    expect_user("key-a1", "user-5");     /* a username beats a key id */
    expect_user("  \tBob \n", "user-2"); /* trimmed */
    expect_user("bob", NULL);            /* exact, case-sensitive */
    expect_user("nobody", NULL);
    expect_user("", NULL);
    expect_user("   ", NULL);
    expect_user("user-%", NULL);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_resolve_user(&b, c, NULL), ACACHE_EINVALID);
}

Test(users, user_affinity_ok)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_user_affinities(&b, c, " alice@example.com "), ACACHE_OK, "%s",
                 acache_last_error());
    json_t *j = lf_parse(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    cr_assert_null(json_object_get(j, "message"));
    json_t *ui = json_object_get(j, "user_info");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "user_id")), "user-1");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "username")), "alice");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "email")),
                     "alice@example.com");
    json_t *arr = json_object_get(j, "affinities");
    cr_assert_eq(json_array_size(arr), 3);
    cr_assert_eq(json_integer_value(json_object_get(j, "total_endpoints")), 3);
    json_t *first = json_array_get(arr, 0); /* key-a2, expires last */
    static const char *fields[] = {"provider_id", "endpoint_id",  "key_id",
                                   "api_format",  "model_name",   "created_at",
                                   "expire_at",   "request_count"};
    cr_assert_eq(json_object_size(first), 8);
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(first, k, v) cr_assert_str_eq(k, fields[i++]);
    cr_assert_str_eq(json_string_value(json_object_get(first, "key_id")), "pk-2");
    cr_assert_str_eq(json_string_value(json_object_get(first, "model_name")), "gpt-4o");
    cr_assert_float_eq(json_real_value(json_object_get(first, "expire_at")), LF_NOW + 600,
                       1e-6);
    json_decref(j);

    /* an API key id resolves to its owner: all of the owner's pins */
    cr_assert_eq(acache_user_affinities(&b, c, "key-b1"), ACACHE_OK);
    j = lf_parse(&b);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "user_info"), "username")),
        "Bob");
    cr_assert_eq(json_array_size(json_object_get(j, "affinities")), 1);
    json_decref(j);
    acache_buf_dispose(&b);
}

Test(users, user_affinity_none_and_unknown)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_user_affinities(&b, c, "carol"), ACACHE_OK);
    json_t *j = lf_parse(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "not_found");
    cr_assert(json_is_string(json_object_get(j, "message")));
    cr_assert_eq(json_array_size(json_object_get(j, "affinities")), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "total_endpoints")), 0);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "user_info"), "user_id")),
        "user-3");
    json_decref(j);
    acache_buf_dispose(&b);

    cr_assert_eq(acache_user_affinities(&b, c, "ghost-user"), ACACHE_ENOTFOUND);
    cr_assert_null(b.ptr);
    cr_assert(strstr(acache_last_error(), "ghost-user") != NULL, "%s",
              acache_last_error());
    cr_assert(strstr(acache_last_error(), "username") != NULL);
    cr_assert(strstr(acache_last_error(), "API key id") != NULL);
    cr_assert_eq(acache_http_status(ACACHE_ENOTFOUND), 404);
}

Test(users, clear_by_api_key_id)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache__clear_user_json(&b, c, "key-b1"), ACACHE_OK, "%s",
                 acache_last_error());
    json_t *j = lf_parse(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    cr_assert(json_is_string(json_object_get(j, "message")));
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 1);
    json_t *ui = json_object_get(j, "user_info");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "user_id")), "user-2");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "username")), "Bob");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "email")), "bob@corp.example");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "api_key_id")), "key-b1");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "api_key_name")), "Bob Key");
    json_decref(j);
    acache_buf_dispose(&b);

    acache__listing *l = lf_list(c, NULL, 100, 0);
    LF_EXPECT(l, "key-a2/openai,key-a1/claude,key-a1/openai,key-zz/gemini");
    acache__listing_free(l);
}

Test(users, clear_key_id_first_then_user)
{
    /* "key-a1" is an API key id and user-5's username: the key wins here,
     * as in Aether (resolution alone would pick user-5). */
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache__clear_user_json(&b, c, "key-a1"), ACACHE_OK);
    json_t *j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "user_info"), "user_id")),
        "user-1");
    json_decref(j);

    cr_assert_eq(acache__clear_user_json(&b, c, "alice"), ACACHE_OK);
    j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 1); /* key-a2's pin */
    json_t *ui = json_object_get(j, "user_info");
    cr_assert_str_eq(json_string_value(json_object_get(ui, "user_id")), "user-1");
    cr_assert_null(json_object_get(ui, "api_key_id"));
    json_decref(j);

    cr_assert_eq(acache__clear_user_json(&b, c, "carol"), ACACHE_OK); /* nothing pinned */
    j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);
    acache_buf_dispose(&b);

    cr_assert_eq(acache__clear_user_json(&b, c, "nobody-here"), ACACHE_ENOTFOUND);
    cr_assert_null(b.ptr);
    cr_assert(strstr(acache_last_error(), "nobody-here") != NULL);

    acache__listing *l = lf_list(c, NULL, 100, 0);
    LF_EXPECT(l, "key-zz/gemini,key-b1/claude");
    acache__listing_free(l);
}

Test(users, invalidate_target_user)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_USER;
    t.identifier = "user-1";
    size_t removed = 99;
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(removed, 3);
    t.identifier = "key-b1";
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_OK);
    cr_assert_eq(removed, 1);
    t.identifier = "no-such-user";
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_ENOTFOUND);
    cr_assert_eq(removed, 0);
    t.identifier = NULL;
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_EINVALID);

    acache__listing *l = lf_list(c, NULL, 100, 0);
    LF_EXPECT(l, "key-zz/gemini");
    acache__listing_free(l);
}

Test(users_config, no_catalog_finds_nobody)
{
    acache *h = lf_open(0, NULL, NULL);
    lf_fill(h);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_resolve_user(&b, h, "user-1"), ACACHE_ENOTFOUND);
    cr_assert_eq(acache_user_affinities(&b, h, "key-a1"), ACACHE_ENOTFOUND);
    cr_assert(strstr(acache_last_error(), "key-a1") != NULL);
    cr_assert_eq(acache__clear_user_json(&b, h, "key-a1"), ACACHE_ENOTFOUND);
    cr_assert_null(b.ptr);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_USER;
    t.identifier = "key-a1";
    cr_assert_eq(acache_invalidate(NULL, h, &t), ACACHE_ENOTFOUND);
    acache__listing *l = lf_list(h, NULL, 100, 0);
    cr_assert_eq(acache__listing_total(l), 5, "nothing was removed");
    acache__listing_free(l);
    acache_close(h);
}

/* Issue 8 item 2: a user with no api_keys rows (dave) has no pins; the empty
 * key list selected every pin of the store. */
Test(users, user_without_api_keys_has_no_pins)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_user_affinities(&b, c, "dave"), ACACHE_OK, "%s",
                 acache_last_error());
    json_t *j = lf_parse(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "not_found");
    cr_assert(json_is_string(json_object_get(j, "message")));
    cr_assert_eq(json_array_size(json_object_get(j, "affinities")), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "total_endpoints")), 0);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "user_info"), "user_id")),
        "user-7");
    json_decref(j);
    acache_buf_dispose(&b);

    /* The mechanism: an empty (or all-NULL) key list is a filter matching
     * nothing, for every caller. */
    acache__listing *l = NULL;
    cr_assert_eq(acache__listing_for_keys(&l, c, NULL, 0), ACACHE_OK);
    cr_assert_eq(acache__listing_total(l), 0);
    acache__listing_free(l);
    const char *none[1] = {NULL};
    cr_assert_eq(acache__listing_for_keys(&l, c, none, 1), ACACHE_OK);
    cr_assert_eq(acache__listing_total(l), 0);
    acache__listing_free(l);
    const char *one[2] = {NULL, "key-b1"};
    cr_assert_eq(acache__listing_for_keys(&l, c, one, 2), ACACHE_OK);
    LF_EXPECT(l, "key-b1/claude");
    acache__listing_free(l);

    /* The listing's rule 2 for him: no pins, matched_user_id set. */
    l = lf_list(c, "dave@example.com", 100, 0);
    cr_assert_eq(acache__listing_total(l), 0);
    cr_assert_str_eq(acache__listing_matched_user_id(l), "user-7");
    acache__listing_free(l);

    /* Invalidation by that user removes nothing. */
    cr_assert_eq(acache__clear_user_json(&b, c, "dave"), ACACHE_OK);
    j = lf_parse(&b);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);
    acache_buf_dispose(&b);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_USER;
    t.identifier = "user-7";
    size_t removed = 99;
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(removed, 0);
    l = lf_list(c, NULL, 100, 0);
    cr_assert_eq(acache__listing_total(l), 5, "nothing was removed");
    acache__listing_free(l);
}
