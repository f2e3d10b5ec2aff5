/* The catalog behaviour checks shared by the JSON and PostgreSQL backends. */
#include "catalog_suite.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aether_cache/errors.h"

#define ALICE "11111111-1111-4111-8111-111111111111"
#define BOB "22222222-2222-4222-8222-222222222222"
#define EVIL "33333333-3333-4333-8333-333333333333"
#define WILD "44444444-4444-4444-8444-444444444444"
#define ZOE "55555555-5555-4555-8555-555555555555"
#define UPPER "AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA"

/* ---- collecting rows as JSON for easy comparison ---- */

typedef struct coll {
    json_t *rows; /* id -> row (look-ups) or [row, ...] (usage) */
    size_t calls;
    size_t stop_after; /* 0 = never */
    acache_catalog *cat;
    int nested_rc;
} coll;

static void coll_init(coll *c)
{
    memset(c, 0, sizeof *c);
    c->rows = json_object();
}

static int coll_put(coll *c, const char *id, json_t *row)
{
    cr_assert(row, "row did not convert to JSON");
    cr_assert(id, "row without an id");
    cr_assert_null(json_object_get(c->rows, id), "row %s reported twice", id);
    json_object_set_new(c->rows, id, row);
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after ? 42 : 0;
}

static int user_cb(const acache_cat_user *u, void *p)
{
    return coll_put(
        p, u->id, json_pack("{s:s?, s:s?}", "username", u->username, "email", u->email));
}

static int key_cb(const acache_cat_api_key *k, void *p)
{
    return coll_put(p, k->id,
                    json_pack("{s:s?, s:s?, s:s?, s:b}", "user_id", k->user_id, "name",
                              k->name, "key_encrypted", k->key_encrypted, "is_standalone",
                              k->is_standalone));
}

static int provider_cb(const acache_cat_provider *v, void *p)
{
    return coll_put(p, v->id,
                    json_pack("{s:s?, s:s?, s:b}", "name", v->name, "display_name",
                              v->display_name, "is_active", v->is_active));
}

static int endpoint_cb(const acache_cat_endpoint *e, void *p)
{
    return coll_put(p, e->id,
                    json_pack("{s:s?, s:s?, s:s?}", "provider_id", e->provider_id,
                              "api_format", e->api_format, "base_url", e->base_url));
}

static int pkey_cb(const acache_cat_provider_key *k, void *p)
{
    return coll_put(p, k->id,
                    json_pack("{s:s?, s:s?, s:s?, s:f}", "endpoint_id", k->endpoint_id,
                              "name", k->name, "api_key", k->api_key, "rate_multiplier",
                              k->rate_multiplier));
}

static int gm_cb(const acache_cat_global_model *g, void *p)
{
    return coll_put(p, g->id,
                    json_pack("{s:s?, s:s?, s:b}", "name", g->name, "display_name",
                              g->display_name, "is_active", g->is_active));
}

static int model_cb(const acache_cat_model *m, void *p)
{
    /* The mappings come back as JSON text; compare them parsed, since
     * PostgreSQL's jsonb output and jansson's differ in spacing and key order. */
    json_t *mappings = json_null();
    if (m->provider_model_mappings) {
        json_error_t err;
        mappings = json_loads(m->provider_model_mappings, JSON_DECODE_ANY, &err);
        cr_assert(mappings, "mappings of %s are not JSON: %s", m->id,
                  m->provider_model_mappings);
    }
    return coll_put(p, m->id,
                    json_pack("{s:s?, s:s?, s:s?, s:o, s:b}", "provider_id",
                              m->provider_id, "global_model_id", m->global_model_id,
                              "provider_model_name", m->provider_model_name, "mappings",
                              mappings, "is_active", m->is_active));
}

static json_t *num_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static int usage_cb(const acache_cat_usage *u, void *p)
{
    coll *c = p;
    if (!json_is_array(c->rows)) {
        json_decref(c->rows);
        c->rows = json_array();
    }
    json_t *row =
        json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:f, s:I, s:I, s:I, s:o, s:o}", "id",
                  u->id, "user_id", u->user_id, "api_key_id", u->api_key_id, "model",
                  u->model, "status", u->status, "created_at", u->created_at,
                  "input_tokens", (json_int_t)u->input_tokens, "cache_read_input_tokens",
                  (json_int_t)u->cache_read_input_tokens, "cache_creation_input_tokens",
                  (json_int_t)u->cache_creation_input_tokens, "cache_read_cost_usd",
                  num_or_null(u->cache_read_cost_usd), "cache_creation_cost_usd",
                  num_or_null(u->cache_creation_cost_usd));
    cr_assert(row);
    json_array_append_new(c->rows, row);
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after ? 42 : 0;
}

/* got is consumed; want is JSON text. */
static void expect_json(json_t *got, const char *want_text)
{
    json_error_t err;
    json_t *want = json_loads(want_text, JSON_DECODE_ANY, &err);
    cr_assert(want, "bad expectation (line %d: %s): %s", err.line, err.text, want_text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        cr_assert_fail("catalog rows differ\n got: %s\nwant: %s", g, w);
    }
    json_decref(want);
    json_decref(got);
}

static void expect_ids(json_t *got, const char *const *ids, size_t n)
{
    cr_assert_eq(json_object_size(got), n, "got %zu rows, want %zu",
                 json_object_size(got), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_not_null(json_object_get(got, ids[i]), "row %s missing", ids[i]);
    json_decref(got);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static json_t *users(acache_catalog *cat, int by, const char *const *v, size_t n)
{
    coll c;
    coll_init(&c);
    int rc = cat->users(cat, by, v, n, user_cb, &c);
    cr_assert_eq(rc, ACACHE_OK, "users: %d %s", rc, acache_last_error());
    return c.rows;
}

static json_t *api_keys(acache_catalog *cat, int by, const char *const *v, size_t n)
{
    coll c;
    coll_init(&c);
    int rc = cat->api_keys(cat, by, v, n, key_cb, &c);
    cr_assert_eq(rc, ACACHE_OK, "api_keys: %d %s", rc, acache_last_error());
    return c.rows;
}

static json_t *models(acache_catalog *cat, int by, const char *const *v, size_t n)
{
    coll c;
    coll_init(&c);
    int rc = cat->models(cat, by, v, n, model_cb, &c);
    cr_assert_eq(rc, ACACHE_OK, "models: %d %s", rc, acache_last_error());
    return c.rows;
}

static json_t *global_models(acache_catalog *cat, int by, const char *const *v, size_t n)
{
    coll c;
    coll_init(&c);
    int rc = cat->global_models(cat, by, v, n, gm_cb, &c);
    cr_assert_eq(rc, ACACHE_OK, "global_models: %d %s", rc, acache_last_error());
    return c.rows;
}

static json_t *usage(acache_catalog *cat, const acache_usage_filter *f)
{
    coll c;
    coll_init(&c);
    json_decref(c.rows);
    c.rows = json_array();
    int rc = cat->usage_scan(cat, f, usage_cb, &c);
    cr_assert_eq(rc, ACACHE_OK, "usage_scan: %d %s", rc, acache_last_error());
    return c.rows;
}

/* ---- the checks ---- */

void acache_catsuite_users_by_id(acache_catalog *cat)
{
    const char *v[] = {ALICE, ZOE, EVIL};
    expect_json(users(cat, ACACHE_BY_ID, v, N(v)),
                "{\"" ALICE
                "\": {\"username\": \"alice\", \"email\": \"alice@example.com\"},"
                " \"" ZOE "\": {\"username\": \"zo\u00eb \u7528\u6237\", \"email\": "
                "\"zoe@\u4f8b\u3048.jp\"},"
                " \"" EVIL "\": {\"username\": \"x' OR '1'='1\", \"email\": "
                "\"evil\\\"quote@example.com\"}}");
}

void acache_catsuite_users_by_username(acache_catalog *cat)
{
    const char *v[] = {"bob", "zo\xc3\xab \xe7\x94\xa8\xe6\x88\xb7", "nobody"};
    const char *ids[] = {BOB, ZOE};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v, N(v)), ids, N(ids));
    /* Exact match only: no case folding, no prefix or pattern match. */
    const char *v2[] = {"Bob", "bo", "BOB", "bob "};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v2, N(v2)), NULL, 0);
}

void acache_catsuite_users_by_email(acache_catalog *cat)
{
    const char *v[] = {"alice@example.com", "evil\"quote@example.com", "alice"};
    const char *ids[] = {ALICE, EVIL};
    expect_ids(users(cat, ACACHE_BY_EMAIL, v, N(v)), ids, N(ids));
    /* A username is not an email and vice versa. */
    const char *v2[] = {"bob"};
    expect_ids(users(cat, ACACHE_BY_EMAIL, v2, N(v2)), NULL, 0);
    const char *v3[] = {"bob@example.com"};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v3, N(v3)), NULL, 0);
}

void acache_catsuite_ids_are_case_sensitive_text(acache_catalog *cat)
{
    const char *lower[] = {"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"};
    expect_ids(users(cat, ACACHE_BY_ID, lower, 1), NULL, 0);
    const char *upper[] = {UPPER};
    const char *ids[] = {UPPER};
    expect_ids(users(cat, ACACHE_BY_ID, upper, 1), ids, 1);
    /* Not a uuid column: non-UUID text is just another value, not an error. */
    const char *odd[] = {"not-a-uuid", "", "11111111111141118111111111111111"};
    expect_ids(users(cat, ACACHE_BY_ID, odd, N(odd)), NULL, 0);
}

void acache_catsuite_duplicate_and_missing_values(acache_catalog *cat)
{
    const char *v[] = {ALICE, ALICE, "missing", BOB, ALICE};
    const char *ids[] = {ALICE, BOB};
    expect_ids(users(cat, ACACHE_BY_ID, v, N(v)), ids, N(ids));
    const char *k[] = {ALICE, ALICE};
    const char *kids[] = {"a0000001-0000-4000-8000-000000000001",
                          "a0000002-0000-4000-8000-000000000002",
                          "a0000004-0000-4000-8000-000000000004"};
    expect_ids(api_keys(cat, ACACHE_BY_USER_ID, k, N(k)), kids, N(kids));
}

void acache_catsuite_api_keys_by_id(acache_catalog *cat)
{
    const char *v[] = {"a0000001-0000-4000-8000-000000000001",
                       "a0000002-0000-4000-8000-000000000002",
                       "a0000004-0000-4000-8000-000000000004", BOB};
    expect_json(api_keys(cat, ACACHE_BY_ID, v, N(v)),
                "{\"a0000001-0000-4000-8000-000000000001\": {\"user_id\": \"" ALICE
                "\", \"name\": \"Alice default\", \"key_encrypted\": \"enc-alice-1\","
                " \"is_standalone\": false},"
                " \"a0000002-0000-4000-8000-000000000002\": {\"user_id\": \"" ALICE
                "\", \"name\": null, \"key_encrypted\": null, \"is_standalone\": false},"
                " \"a0000004-0000-4000-8000-000000000004\": {\"user_id\": \"" ALICE
                "\", \"name\": \"Standalone\", \"key_encrypted\": \"enc-sa\","
                " \"is_standalone\": true}}");
}

void acache_catsuite_api_keys_by_user_id(acache_catalog *cat)
{
    const char *v[] = {BOB, EVIL, ZOE};
    expect_json(api_keys(cat, ACACHE_BY_USER_ID, v, N(v)),
                "{\"a0000003-0000-4000-8000-000000000003\": {\"user_id\": \"" BOB
                "\", \"name\": \"Bob CI\", \"key_encrypted\": \"enc-bob\","
                " \"is_standalone\": false},"
                " \"a0000005-0000-4000-8000-000000000005\": {\"user_id\": \"" EVIL
                "\", \"name\": \"x' OR '1'='1\", \"key_encrypted\": \"enc-evil\","
                " \"is_standalone\": false}}");
    /* A key id is not a user id. */
    const char *k[] = {"a0000003-0000-4000-8000-000000000003"};
    expect_ids(api_keys(cat, ACACHE_BY_USER_ID, k, 1), NULL, 0);
}

void acache_catsuite_providers_by_id(acache_catalog *cat)
{
    const char *v[] = {"b0000001-0000-4000-8000-000000000001",
                       "b0000002-0000-4000-8000-000000000002",
                       "b0000003-0000-4000-8000-000000000003", "anthropic"};
    coll c;
    coll_init(&c);
    cr_assert_eq(cat->providers(cat, ACACHE_BY_ID, v, N(v), provider_cb, &c), ACACHE_OK);
    expect_json(c.rows,
                "{\"b0000001-0000-4000-8000-000000000001\": {\"name\": \"anthropic\","
                " \"display_name\": \"Anthropic\", \"is_active\": true},"
                " \"b0000002-0000-4000-8000-000000000002\": {\"name\": \"openai\","
                " \"display_name\": \"OpenAI\", \"is_active\": false},"
                " \"b0000003-0000-4000-8000-000000000003\": {\"name\": \"gemini\","
                " \"display_name\": \"\", \"is_active\": true}}");
}

void acache_catsuite_endpoints_by_id(acache_catalog *cat)
{
    const char *v[] = {"c0000001-0000-4000-8000-000000000001",
                       "c0000002-0000-4000-8000-000000000002", "nope"};
    coll c;
    coll_init(&c);
    cr_assert_eq(cat->endpoints(cat, ACACHE_BY_ID, v, N(v), endpoint_cb, &c), ACACHE_OK);
    expect_json(c.rows,
                "{\"c0000001-0000-4000-8000-000000000001\": {\"provider_id\": "
                "\"b0000001-0000-4000-8000-000000000001\", \"api_format\": \"CLAUDE\","
                " \"base_url\": \"https://api.anthropic.com\"},"
                " \"c0000002-0000-4000-8000-000000000002\": {\"provider_id\": "
                "\"b0000002-0000-4000-8000-000000000002\", \"api_format\": \"OPENAI\","
                " \"base_url\": \"https://api.openai.com/v1\"}}");
}

void acache_catsuite_provider_keys_by_id(acache_catalog *cat)
{
    const char *v[] = {"d0000001-0000-4000-8000-000000000001",
                       "d0000002-0000-4000-8000-000000000002",
                       "d0000003-0000-4000-8000-000000000003"};
    coll c;
    coll_init(&c);
    cr_assert_eq(cat->provider_keys(cat, ACACHE_BY_ID, v, N(v), pkey_cb, &c), ACACHE_OK);
    expect_json(c.rows, "{\"d0000001-0000-4000-8000-000000000001\": {\"endpoint_id\": "
                        "\"c0000001-0000-4000-8000-000000000001\", \"name\": \"main\","
                        " \"api_key\": \"enc-pk-1\", \"rate_multiplier\": 1.5},"
                        " \"d0000002-0000-4000-8000-000000000002\": {\"endpoint_id\": "
                        "\"c0000002-0000-4000-8000-000000000002\", \"name\": \"backup\","
                        " \"api_key\": \"enc-pk-2\", \"rate_multiplier\": 1.0},"
                        " \"d0000003-0000-4000-8000-000000000003\": {\"endpoint_id\": "
                        "\"c0000003-0000-4000-8000-000000000003\", \"name\": \"cheap\","
                        " \"api_key\": \"enc-pk-3\", \"rate_multiplier\": 0.1}}");
}

static const char GM_ALL[] =
    "{\"e0000001-0000-4000-8000-000000000001\": {\"name\": \"claude-sonnet-4\","
    " \"display_name\": \"Claude Sonnet 4\", \"is_active\": true},"
    " \"e0000002-0000-4000-8000-000000000002\": {\"name\": \"gpt-4o\","
    " \"display_name\": \"GPT-4o\", \"is_active\": false},"
    " \"e0000003-0000-4000-8000-000000000003\": {\"name\": \"qwen2.5:7b\","
    " \"display_name\": \"Qwen 2.5 7B\", \"is_active\": true}}";

void acache_catsuite_global_models_by_id(acache_catalog *cat)
{
    const char *v[] = {"e0000001-0000-4000-8000-000000000001",
                       "e0000002-0000-4000-8000-000000000002",
                       "e0000003-0000-4000-8000-000000000003", "claude-sonnet-4"};
    expect_json(global_models(cat, ACACHE_BY_ID, v, N(v)), GM_ALL);
}

void acache_catsuite_global_models_by_name(acache_catalog *cat)
{
    const char *v[] = {"claude-sonnet-4", "gpt-4o", "qwen2.5:7b", "gpt-4",
                       "e0000001-0000-4000-8000-000000000001"};
    expect_json(global_models(cat, ACACHE_BY_NAME, v, N(v)), GM_ALL);
}

static const char M1[] =
    "\"f0000001-0000-4000-8000-000000000001\": {\"provider_id\": "
    "\"b0000001-0000-4000-8000-000000000001\", \"global_model_id\": "
    "\"e0000001-0000-4000-8000-000000000001\", \"provider_model_name\": "
    "\"claude-sonnet-4-20250514\", \"mappings\": [{\"name\": \"claude-sonnet-4-latest\", "
    "\"priority\": 1, \"api_formats\": [\"CLAUDE\"]}, {\"name\": \"sonnet\"}], "
    "\"is_active\": true}";
static const char M3[] =
    "\"f0000003-0000-4000-8000-000000000003\": {\"provider_id\": "
    "\"b0000003-0000-4000-8000-000000000003\", \"global_model_id\": "
    "\"e0000001-0000-4000-8000-000000000001\", \"provider_model_name\": "
    "\"claude-via-gemini\", \"mappings\": null, \"is_active\": false}";

void acache_catsuite_models_by_id(acache_catalog *cat)
{
    const char *v[] = {"f0000001-0000-4000-8000-000000000001",
                       "f0000002-0000-4000-8000-000000000002",
                       "f0000004-0000-4000-8000-000000000004"};
    char want[2048];
    snprintf(
        want, sizeof want,
        "{%s, \"f0000002-0000-4000-8000-000000000002\": {\"provider_id\": "
        "\"b0000002-0000-4000-8000-000000000002\", \"global_model_id\": "
        "\"e0000002-0000-4000-8000-000000000002\", \"provider_model_name\": "
        "\"gpt-4o-2024-08-06\", \"mappings\": null, \"is_active\": true},"
        " \"f0000004-0000-4000-8000-000000000004\": {\"provider_id\": "
        "\"b0000001-0000-4000-8000-000000000001\", \"global_model_id\": "
        "\"e0000003-0000-4000-8000-000000000003\", \"provider_model_name\": "
        "\"qwen2.5:7b\", \"mappings\": [\"odd\", {\"name\": \"q\", \"priority\": 2.5},"
        " {\"name\": \"  \"}], \"is_active\": true}}",
        M1);
    expect_json(models(cat, ACACHE_BY_ID, v, N(v)), want);
}

void acache_catsuite_models_by_global_model_id(acache_catalog *cat)
{
    const char *v[] = {"e0000001-0000-4000-8000-000000000001"};
    char want[2048];
    snprintf(want, sizeof want, "{%s, %s}", M1, M3);
    expect_json(models(cat, ACACHE_BY_GLOBAL_MODEL_ID, v, N(v)), want);
}

void acache_catsuite_injection_finds_only_itself(acache_catalog *cat)
{
    const char *v[] = {"x' OR '1'='1"};
    const char *ids[] = {EVIL};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v, 1), ids, 1);
    const char *v2[] = {"' OR 1=1 --", "x' OR '1'='1' --", "\") OR true --", "{}", "NULL",
                        "null"};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v2, N(v2)), NULL, 0);
    expect_ids(users(cat, ACACHE_BY_ID, v2, N(v2)), NULL, 0);
    const char *ak[] = {"x' OR '1'='1"};
    expect_ids(api_keys(cat, ACACHE_BY_ID, ak, 1), NULL, 0);
}

void acache_catsuite_hostile_values_match_literally(acache_catalog *cat)
{
    /* LIKE / glob / regex / array-literal metacharacters are plain text. */
    const char *v[] = {"100%_match\\*?[{},]"};
    const char *ids[] = {WILD};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v, 1), ids, 1);
    const char *pats[] = {"%",
                          "_",
                          "*",
                          "?",
                          "[",
                          "\\",
                          "100%",
                          "1__%",
                          ".*",
                          "alic%",
                          "al_ce",
                          "\"",
                          "{\"alice\"}",
                          "alice\",\"bob",
                          "alice,bob",
                          "{alice,bob}",
                          "wild%@example.com_"};
    expect_ids(users(cat, ACACHE_BY_USERNAME, pats, N(pats)), NULL, 0);
    const char *e[] = {"wild%@example.com", "evil\"quote@example.com"};
    const char *eids[] = {WILD, EVIL};
    expect_ids(users(cat, ACACHE_BY_EMAIL, e, N(e)), eids, N(eids));
}

void acache_catsuite_invalid_utf8_and_long_values(acache_catalog *cat)
{
    static char longv[20001];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    /* Values no UTF8 database can hold match nothing, and do not spoil the
     * valid values in the same batch. */
    const char *v[] = {"\xff\xfe", "alice\xc3", "\xc0\xaf", "\xed\xa0\x80",
                       longv,      "alice",     "bob\x80"};
    const char *ids[] = {ALICE};
    expect_ids(users(cat, ACACHE_BY_USERNAME, v, N(v)), ids, 1);
    expect_ids(users(cat, ACACHE_BY_ID, v, N(v)), NULL, 0);
    acache_usage_filter f = {.since = 0, .user_id = "\xff"};
    json_t *rows = usage(cat, &f);
    cr_assert_eq(json_array_size(rows), 0);
    json_decref(rows);
    f.user_id = longv;
    rows = usage(cat, &f);
    cr_assert_eq(json_array_size(rows), 0);
    json_decref(rows);
}

void acache_catsuite_empty_and_null_inputs(acache_catalog *cat)
{
    coll c;
    coll_init(&c);
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, NULL, 0, user_cb, &c), ACACHE_OK);
    const char *none[] = {NULL, NULL};
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, none, 2, user_cb, &c), ACACHE_OK);
    const char *some[] = {NULL, ALICE, NULL};
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, some, 3, user_cb, &c), ACACHE_OK);
    const char *ids[] = {ALICE};
    expect_ids(c.rows, ids, 1);
}

void acache_catsuite_bad_arguments(acache_catalog *cat)
{
    const char *v[] = {ALICE};
    coll c;
    coll_init(&c);
    cr_assert_eq(cat->users(cat, ACACHE_BY_USER_ID, v, 1, user_cb, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->users(cat, 99, v, 1, user_cb, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->api_keys(cat, ACACHE_BY_EMAIL, v, 1, key_cb, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->providers(cat, ACACHE_BY_NAME, v, 1, provider_cb, &c),
                 ACACHE_EINVALID);
    cr_assert_eq(cat->endpoints(cat, ACACHE_BY_USERNAME, v, 1, endpoint_cb, &c),
                 ACACHE_EINVALID);
    cr_assert_eq(cat->provider_keys(cat, -1, v, 1, pkey_cb, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->global_models(cat, ACACHE_BY_GLOBAL_MODEL_ID, v, 1, gm_cb, &c),
                 ACACHE_EINVALID);
    cr_assert_eq(cat->models(cat, ACACHE_BY_NAME, v, 1, model_cb, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, v, 1, NULL, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, NULL, 1, user_cb, &c), ACACHE_EINVALID);
    cr_assert_eq(cat->usage_scan(cat, NULL, usage_cb, &c), ACACHE_EINVALID);
    cr_assert_str_neq(acache_last_error(), "");
    cr_assert_eq(c.calls, 0);
    json_decref(c.rows);
}

void acache_catsuite_callback_stops_lookup(acache_catalog *cat)
{
    const char *v[] = {ALICE, BOB, EVIL, ZOE};
    coll c;
    coll_init(&c);
    c.stop_after = 2;
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, v, N(v), user_cb, &c), 42);
    cr_assert_eq(c.calls, 2);
    json_decref(c.rows);
}

void acache_catsuite_batch_values(const char **values, size_t n)
{
    static char buf[1000][40];
    static const char *const real[] = {ALICE, BOB, EVIL, WILD, ZOE, UPPER};
    for (size_t i = 0; i < n && i < 1000; i++) {
        if (i % 167 == 0 && i / 167 < N(real)) {
            values[i] = real[i / 167];
        } else {
            snprintf(buf[i], sizeof buf[i], "%08zx-0000-4000-8000-%012zx", i, i * 7919);
            values[i] = buf[i];
        }
    }
}

void acache_catsuite_batch_of_1000(acache_catalog *cat)
{
    const char *v[1000];
    acache_catsuite_batch_values(v, N(v));
    const char *ids[] = {ALICE, BOB, EVIL, WILD, ZOE, UPPER};
    expect_ids(users(cat, ACACHE_BY_ID, v, N(v)), ids, N(ids));
}

/* Completed rows in (created_at, id) order. */
#define R10                                                                              \
    "{\"id\": \"u-0010\", \"user_id\": \"" ALICE "\", \"api_key_id\": "                  \
    "\"a0000001-0000-4000-8000-000000000001\", \"model\": \"claude-sonnet-4\", "         \
    "\"status\": \"completed\", \"created_at\": 1735689599.999999, \"input_tokens\": "   \
    "3, "                                                                                \
    "\"cache_read_input_tokens\": 4, \"cache_creation_input_tokens\": 5, "               \
    "\"cache_read_cost_usd\": 0.125, \"cache_creation_cost_usd\": 0.0625}"
#define R01                                                                              \
    "{\"id\": \"u-0001\", \"user_id\": \"" ALICE "\", \"api_key_id\": "                  \
    "\"a0000002-0000-4000-8000-000000000002\", \"model\": \"claude-sonnet-4\", "         \
    "\"status\": \"completed\", \"created_at\": 1735787045.123456, \"input_tokens\": "   \
    "10, "                                                                               \
    "\"cache_read_input_tokens\": 0, \"cache_creation_input_tokens\": 5000, "            \
    "\"cache_read_cost_usd\": 0.0, \"cache_creation_cost_usd\": 0.01875}"
#define R02                                                                              \
    "{\"id\": \"u-0002\", \"user_id\": \"" ALICE "\", \"api_key_id\": "                  \
    "\"a0000001-0000-4000-8000-000000000001\", \"model\": \"claude-sonnet-4\", "         \
    "\"status\": \"completed\", \"created_at\": 1735787045.123456, "                     \
    "\"input_tokens\": 100, \"cache_read_input_tokens\": 2000, "                         \
    "\"cache_creation_input_tokens\": 300, \"cache_read_cost_usd\": 0.0006, "            \
    "\"cache_creation_cost_usd\": 0.001125}"
#define R03                                                                              \
    "{\"id\": \"u-0003\", \"user_id\": \"" BOB "\", \"api_key_id\": "                    \
    "\"a0000003-0000-4000-8000-000000000003\", \"model\": \"gpt-4o\", "                  \
    "\"status\": \"completed\", \"created_at\": 1735787045.5, \"input_tokens\": 7, "     \
    "\"cache_read_input_tokens\": 1, \"cache_creation_input_tokens\": 2, "               \
    "\"cache_read_cost_usd\": 1e-05, \"cache_creation_cost_usd\": 2.5}"
#define R04                                                                              \
    "{\"id\": \"u-0004\", \"user_id\": null, \"api_key_id\": null, "                     \
    "\"model\": \"qwen2.5:7b\", \"status\": \"completed\", "                             \
    "\"created_at\": 1735787046.000001, \"input_tokens\": 0, "                           \
    "\"cache_read_input_tokens\": 0, \"cache_creation_input_tokens\": 0, "               \
    "\"cache_read_cost_usd\": 0.0, \"cache_creation_cost_usd\": 0.0}"
#define R07                                                                              \
    "{\"id\": \"u-0007\", \"user_id\": \"" BOB "\", \"api_key_id\": "                    \
    "\"a0000003-0000-4000-8000-000000000003\", \"model\": \"gpt-4o\", "                  \
    "\"status\": \"completed\", \"created_at\": 1735787400.0, \"input_tokens\": -1, "    \
    "\"cache_read_input_tokens\": -1, \"cache_creation_input_tokens\": 4, "              \
    "\"cache_read_cost_usd\": null, \"cache_creation_cost_usd\": null}"
#define R08                                                                              \
    "{\"id\": \"u-0008\", \"user_id\": \"" ALICE "\", \"api_key_id\": "                  \
    "\"a0000004-0000-4000-8000-000000000004\", \"model\": \"claude-sonnet-4\", "         \
    "\"status\": \"completed\", \"created_at\": 1735790400.0, \"input_tokens\": 0, "     \
    "\"cache_read_input_tokens\": 0, \"cache_creation_input_tokens\": 0, "               \
    "\"cache_read_cost_usd\": 0.0, \"cache_creation_cost_usd\": 0.0}"
#define R09                                                                              \
    "{\"id\": \"u-0009\", \"user_id\": \"" EVIL "\", \"api_key_id\": "                   \
    "\"a0000005-0000-4000-8000-000000000005\", \"model\": \"x' OR '1'='1\", "            \
    "\"status\": \"completed\", \"created_at\": 1735790400.0, \"input_tokens\": 1, "     \
    "\"cache_read_input_tokens\": 1, \"cache_creation_input_tokens\": 1, "               \
    "\"cache_read_cost_usd\": 0.5, \"cache_creation_cost_usd\": 0.25}"

void acache_catsuite_usage_order_and_columns(acache_catalog *cat)
{
    acache_usage_filter f = {.since = 0, .since_inclusive = 1};
    expect_json(usage(cat, &f), "[" R10 ", " R01 ", " R02 ", " R03 ", " R04 ", " R07
                                ", " R08 ", " R09 "]");
}

static void expect_usage_ids(acache_catalog *cat, const acache_usage_filter *f,
                             const char *want)
{
    json_t *rows = usage(cat, f), *row;
    char got[512] = "";
    size_t i;
    json_array_foreach(rows, i, row)
    {
        size_t l = strlen(got);
        snprintf(got + l, sizeof got - l, "%s%s", i ? "," : "",
                 json_string_value(json_object_get(row, "id")));
    }
    json_decref(rows);
    cr_assert_str_eq(got, want, "since=%.6f inclusive=%d user=%s key=%s req=%d", f->since,
                     f->since_inclusive, f->user_id ? f->user_id : "-",
                     f->api_key_id ? f->api_key_id : "-", f->require_user_id);
}

void acache_catsuite_usage_window_boundary(acache_catalog *cat)
{
    acache_usage_filter f = {.since = 1735787045.123456, .since_inclusive = 1};
    expect_usage_ids(cat, &f, "u-0001,u-0002,u-0003,u-0004,u-0007,u-0008,u-0009");
    f.since_inclusive = 0;
    expect_usage_ids(cat, &f, "u-0003,u-0004,u-0007,u-0008,u-0009");
    /* Half a microsecond either side of a row. */
    f.since = 1735787046.0000005;
    f.since_inclusive = 0;
    expect_usage_ids(cat, &f, "u-0004,u-0007,u-0008,u-0009");
    f.since = 1735787046.0000015;
    f.since_inclusive = 1;
    expect_usage_ids(cat, &f, "u-0007,u-0008,u-0009");
    f.since = 1735790400.0;
    f.since_inclusive = 0;
    expect_usage_ids(cat, &f, "");
    f.since = -1e300;
    expect_usage_ids(cat, &f, "u-0010,u-0001,u-0002,u-0003,u-0004,u-0007,u-0008,u-0009");
    f.since = 1e300;
    f.since_inclusive = 1;
    expect_usage_ids(cat, &f, "");
}

void acache_catsuite_usage_filters(acache_catalog *cat)
{
    acache_usage_filter f = {.since = 0, .user_id = ALICE};
    expect_usage_ids(cat, &f, "u-0010,u-0001,u-0002,u-0008");
    f.user_id = NULL;
    f.api_key_id = "a0000003-0000-4000-8000-000000000003";
    expect_usage_ids(cat, &f, "u-0003,u-0007");
    f.user_id = ALICE;
    expect_usage_ids(cat, &f, "");
    f.user_id = NULL;
    f.api_key_id = NULL;
    f.require_user_id = 1;
    expect_usage_ids(cat, &f, "u-0010,u-0001,u-0002,u-0003,u-0007,u-0008,u-0009");
    f.user_id = "x' OR '1'='1";
    expect_usage_ids(cat, &f, "");
    f.user_id = EVIL;
    f.api_key_id = "a0000005-0000-4000-8000-000000000005";
    f.since = 1735790400.0;
    f.since_inclusive = 1;
    expect_usage_ids(cat, &f, "u-0009");
}

void acache_catsuite_usage_callback_stops(acache_catalog *cat)
{
    acache_usage_filter f = {.since = 0};
    coll c;
    coll_init(&c);
    c.stop_after = 3;
    cr_assert_eq(cat->usage_scan(cat, &f, usage_cb, &c), 42);
    cr_assert_eq(c.calls, 3);
    json_decref(c.rows);
    /* The catalog is usable straight after an interrupted scan. */
    json_t *rows = usage(cat, &f);
    cr_assert_eq(json_array_size(rows), 8);
    json_decref(rows);
}

static int nested_usage_cb(const acache_cat_usage *u, void *p)
{
    coll *c = p;
    if (!u->user_id)
        return 0;
    coll inner;
    coll_init(&inner);
    const char *v[] = {u->user_id};
    c->nested_rc = c->cat->users(c->cat, ACACHE_BY_ID, v, 1, user_cb, &inner);
    if (c->nested_rc == 0 && json_object_size(inner.rows) == 1)
        c->calls++;
    json_decref(inner.rows);
    return c->nested_rc;
}

void acache_catsuite_nested_calls_from_callbacks(acache_catalog *cat)
{
    acache_usage_filter f = {.since = 0};
    coll c;
    coll_init(&c);
    c.cat = cat;
    cr_assert_eq(cat->usage_scan(cat, &f, nested_usage_cb, &c), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(c.calls, 7);
    json_decref(c.rows);
}
