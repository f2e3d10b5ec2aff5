/* JSON file catalog: the shared catalog suite plus file handling (open
 * errors, defaults, reload). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/internal.h"
#include "catalog/postgres.h"
#include "catalog_suite.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include <jansson.h>

static acache_catalog *g_cat;

static void setup(void)
{
    int rc = acache__catalog_open(&g_cat, ACACHE_CATALOG_SEED);
    cr_assert_eq(rc, ACACHE_OK, "open seed: %s", acache_last_error());
    cr_assert_str_eq(g_cat->scheme, "json");
    cr_assert_eq(g_cat->version, ACACHE_CATALOG_VERSION);
}

static void teardown(void)
{
    if (g_cat)
        g_cat->free(g_cat);
    g_cat = NULL;
}

#define T(name)                                                                          \
    Test(catalog_json, name, .init = setup, .fini = teardown)                            \
    {                                                                                    \
        acache_catsuite_##name(g_cat);                                                   \
    }
ACACHE_CATALOG_SUITE(T)
#undef T

/* ---- file handling ---- */

static char g_dir[64];

static void tmp_setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/acache-jc.XXXXXX");
    cr_assert(mkdtemp(g_dir));
}

static void tmp_teardown(void)
{
    teardown();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

static char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 128, "%s/%s", g_dir, name);
    return p;
}

/* Write atomically (temp + rename), as editors and deploy tools do. */
static void write_file(const char *path, const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

static int name_cb(const acache_cat_user *u, void *p)
{
    snprintf(p, 64, "%s", u->username);
    return 0;
}

static const char *username_of(acache_catalog *cat, const char *id, int *rc)
{
    static char name[64];
    name[0] = '\0';
    const char *v[] = {id};
    *rc = cat->users(cat, ACACHE_BY_ID, v, 1, name_cb, name);
    return name;
}

Test(catalog_json, open_uri_forms, .init = tmp_setup, .fini = tmp_teardown)
{
    char *path = tmp_path("c.json");
    write_file(path,
               "{\"users\": [{\"id\": \"u1\", \"username\": \"n\", \"email\": \"e\"}]}");
    char uri[200];
    snprintf(uri, sizeof uri, "json://%s", path);
    acache_catalog *cat = NULL;
    cr_assert_eq(acache__catalog_open(&cat, uri), ACACHE_OK, "%s", acache_last_error());
    cr_assert_not(acache__catalog_is_postgres(cat));
    void *res = NULL;
    cr_assert_eq(acache__pg_query(cat, "SELECT 1", 0, NULL, &res), ACACHE_EINVALID);
    cat->free(cat);
    cr_assert_eq(acache__catalog_open(&cat, path), ACACHE_OK);
    cat->free(cat);

    const char *bad[] = {"", "file:///etc/x.json", "redis://localhost",
                         "json://relative/x", "mysql://u@h/db"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cat = (acache_catalog *)1;
        cr_assert_eq(acache__catalog_open(&cat, bad[i]), ACACHE_EINVALID, "%s", bad[i]);
        cr_assert_null(cat);
    }
    cr_assert_eq(acache__catalog_open(&cat, NULL), ACACHE_EINVALID);
}

Test(catalog_json, missing_file_names_path, .init = tmp_setup, .fini = tmp_teardown)
{
    acache_catalog *cat = NULL;
    char *path = tmp_path("nope.json");
    cr_assert_eq(acache__catalog_open(&cat, path), ACACHE_ECATALOG);
    cr_assert_null(cat);
    cr_assert(strstr(acache_last_error(), path), "%s", acache_last_error());
}

Test(catalog_json, syntax_error_gives_line_and_column, .init = tmp_setup,
     .fini = tmp_teardown)
{
    char *path = tmp_path("bad.json");
    write_file(path, "{\n  \"users\": [\n    {\"id\": \"u1\",, }\n  ]\n}\n");
    acache_catalog *cat = NULL;
    cr_assert_eq(acache__catalog_open(&cat, path), ACACHE_ECATALOG);
    const char *msg = acache_last_error();
    cr_assert(strstr(msg, path) && strstr(msg, "line 3") && strstr(msg, "column"), "%s",
              msg);
}

Test(catalog_json, schema_errors_name_the_field, .init = tmp_setup, .fini = tmp_teardown)
{
    static const struct {
        const char *doc, *needle;
    } cases[] = {
        {"[]", "top level"},
        {"{\"users\": {}}", "\"users\" must be an array"},
        {"{\"users\": [7]}", "users[0]: must be an object"},
        {"{\"users\": [{\"id\": \"a\", \"username\": 5, \"email\": \"e\"}]}",
         "users[0].username"},
        {"{\"users\": [{\"id\": \"a\", \"email\": \"e\"}]}", "users[0].username"},
        {"{\"users\": [{\"id\": \"a\", \"username\": \"n\", \"email\": \"e\"},"
         " {\"id\": \"a\", \"username\": \"m\", \"email\": \"f\"}]}",
         "users[1].id: duplicate"},
        {"{\"users\": [{\"id\": \"a\", \"username\": \"n\", \"email\": \"e\"},"
         " {\"id\": \"b\", \"username\": \"n\", \"email\": \"f\"}]}",
         "users[1].username: duplicate"},
        {"{\"api_keys\": [{\"id\": \"k\", \"user_id\": \"u\", \"is_standalone\": 1}]}",
         "api_keys[0].is_standalone"},
        {"{\"provider_api_keys\": [{\"id\": \"k\", \"endpoint_id\": \"e\", \"name\": "
         "\"n\","
         " \"api_key\": \"x\", \"rate_multiplier\": \"2\"}]}",
         "provider_api_keys[0].rate_multiplier"},
        {"{\"usage\": [{\"id\": \"r\", \"model\": \"m\", \"created_at\": "
         "\"yesterday\"}]}",
         "usage[0].created_at"},
        {"{\"usage\": [{\"id\": \"r\", \"model\": \"m\"}]}", "usage[0].created_at"},
        {"{\"usage\": [{\"id\": \"r\", \"model\": \"m\", \"created_at\": 1,"
         " \"input_tokens\": 1.5}]}",
         "usage[0].input_tokens"},
        {"{\"usage\": [{\"id\": \"r\", \"model\": \"m\", \"created_at\": 1,"
         " \"status\": null}]}",
         "usage[0].status"},
        {"{\"users\": [], \"users\": []}", "duplicate"},
    };
    char *path = tmp_path("s.json");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].doc);
        acache_catalog *cat = NULL;
        cr_assert_eq(acache__catalog_open(&cat, path), ACACHE_ECATALOG, "%s",
                     cases[i].doc);
        cr_assert(strstr(acache_last_error(), cases[i].needle), "case %zu: %s", i,
                  acache_last_error());
    }
}

static int key_flags_cb(const acache_cat_api_key *k, void *p)
{
    ((int *)p)[0] = k->is_standalone;
    ((int *)p)[1] = k->name == NULL && k->key_encrypted == NULL;
    return 0;
}

static int pk_cb(const acache_cat_provider_key *k, void *p)
{
    *(double *)p = k->rate_multiplier;
    return 0;
}

static int prov_cb(const acache_cat_provider *v, void *p)
{
    *(int *)p = v->is_active;
    return 0;
}

static int usage_one_cb(const acache_cat_usage *u, void *p)
{
    *(acache_cat_usage *)p = *u;
    return 0;
}

Test(catalog_json, defaults_and_unknown_fields, .init = tmp_setup, .fini = tmp_teardown)
{
    char *path = tmp_path("d.json");
    write_file(
        path,
        "{\"_comment\": \"x\", \"extra_table\": [1],"
        " \"api_keys\": [{\"id\": \"k\", \"user_id\": \"u\", \"color\": \"red\"}],"
        " \"providers\": [{\"id\": \"p\", \"name\": \"n\", \"display_name\": \"d\"}],"
        " \"provider_api_keys\": [{\"id\": \"pk\", \"endpoint_id\": \"e\","
        "   \"name\": \"n\", \"api_key\": \"x\"}],"
        " \"usage\": [{\"id\": \"r\", \"model\": \"m\","
        "   \"created_at\": \"2025-01-02T03:04:05-05:30\"}]}");
    cr_assert_eq(acache__catalog_open(&g_cat, path), ACACHE_OK, "%s",
                 acache_last_error());
    int flags[2] = {-1, -1};
    const char *k[] = {"k"};
    cr_assert_eq(g_cat->api_keys(g_cat, ACACHE_BY_ID, k, 1, key_flags_cb, flags), 0);
    cr_assert_eq(flags[0], 0);
    cr_assert_eq(flags[1], 1);
    double rate = 0;
    const char *pk[] = {"pk"};
    cr_assert_eq(g_cat->provider_keys(g_cat, ACACHE_BY_ID, pk, 1, pk_cb, &rate), 0);
    cr_assert_eq(rate, 1.0);
    int active = 0;
    const char *p[] = {"p"};
    cr_assert_eq(g_cat->providers(g_cat, ACACHE_BY_ID, p, 1, prov_cb, &active), 0);
    cr_assert_eq(active, 1);
    acache_cat_usage u;
    memset(&u, 0, sizeof u);
    acache_usage_filter f = {.since = 0};
    cr_assert_eq(g_cat->usage_scan(g_cat, &f, usage_one_cb, &u), 0);
    cr_assert_str_eq(u.status, "completed");
    cr_assert_eq(u.input_tokens, 0);
    cr_assert_eq(u.cache_read_cost_usd, 0.0);
    /* 2025-01-02T03:04:05-05:30 = 08:34:05Z */
    cr_assert_eq(u.created_at, 1735806845.0);
}

Test(catalog_json, timestamp_forms, .init = tmp_setup, .fini = tmp_teardown)
{
    static const struct {
        const char *ts;
        double want;
    } cases[] = {
        {"\"2025-01-02T03:04:05.123456+00:00\"", 1735787045.123456},
        {"\"2025-01-02 03:04:05.123456Z\"", 1735787045.123456},
        {"\"2025-01-02T03:04:05.1234565+00:00\"", 1735787045.123457},
        {"\"2025-01-02T03:04:05+0100\"", 1735783445.0},
        {"\"2025-01-02T03:04:05+01\"", 1735783445.0},
        {"\"2025-01-02T03:04:05\"", 1735787045.0},
        {"\"2025-01-02T03:04\"", 1735787040.0},
        {"\"2024-02-29T00:00:00Z\"", 1709164800.0},
        {"1735787045.123456", 1735787045.123456},
        {"1735787045", 1735787045.0},
    };
    char *path = tmp_path("t.json");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc,
                 "{\"usage\": [{\"id\": \"r\", \"model\": \"m\", \"created_at\": %s}]}",
                 cases[i].ts);
        write_file(path, doc);
        acache_catalog *cat = NULL;
        cr_assert_eq(acache__catalog_open(&cat, path), ACACHE_OK, "%s: %s", cases[i].ts,
                     acache_last_error());
        acache_cat_usage u;
        memset(&u, 0, sizeof u);
        acache_usage_filter f = {.since = 0};
        cr_assert_eq(cat->usage_scan(cat, &f, usage_one_cb, &u), 0);
        cr_assert_eq(u.created_at, cases[i].want, "%s: got %.6f", cases[i].ts,
                     u.created_at);
        cat->free(cat);
    }
    const char *bad[] = {"\"2025-02-30T00:00:00Z\"",
                         "\"2025-01-02T24:00:00Z\"",
                         "\"2025-01-02\"",
                         "\"2025-01-02T03:04:05.Z\"",
                         "\"2025-01-02T03:04:05+25:00\"",
                         "\"2025-01-02T03:04:05Zjunk\"",
                         "\"2024-\"",
                         "\"2024-01-01T1\"",
                         "\" 2025-01-02T03:04\"",
                         "\"+025-01-02T03:04\"",
                         "\"2025-1-02T03:04\"",
                         "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc,
                 "{\"usage\": [{\"id\": \"r\", \"model\": \"m\", \"created_at\": %s}]}",
                 bad[i]);
        write_file(path, doc);
        acache_catalog *cat = NULL;
        cr_assert_eq(acache__catalog_open(&cat, path), ACACHE_ECATALOG, "%s", bad[i]);
    }
}

/* Issue 8 item 5: truncated timestamps were read past their end (hidden by
 * jansson's spare bytes). Every prefix of a full timestamp, in a heap block
 * of exactly its size, under ASan: first NUL-terminated (as jansson hands
 * strings over), then without a terminator at all ((ptr,len) contract). */
Test(catalog_json, iso8601_truncated_exact_size)
{
    static const char full[] = "2025-01-02T03:04:05.123456+01:00";
    const size_t n = sizeof full - 1;
    /* prefixes that are timestamps themselves */
    static const size_t ok_len[] = {16, 19, 21, 22, 23, 24, 25, 26, 29, 32};
    for (int terminated = 1; terminated >= 0; terminated--) {
        for (size_t len = 0; len <= n; len++) {
            char *s = malloc(len + (size_t)terminated);
            cr_assert_not_null(s);
            memcpy(s, full, len);
            if (terminated)
                s[len] = '\0';
            int64_t us = 0;
            int rc = acache__iso8601_parse(s, len, &us);
            int want = -1;
            for (size_t k = 0; k < sizeof ok_len / sizeof ok_len[0]; k++)
                if (ok_len[k] == len)
                    want = 0;
            cr_assert_eq(rc, want, "prefix %zu '%.*s'", len, (int)len, full);
            free(s);
        }
    }
    static const char *const truncated[] = {"2024-",
                                            "2024-01-01T1",
                                            "2024-01-01T10:0",
                                            "2024-01-01T10:00:",
                                            "2024-01-01T10:00:0",
                                            "2024-01-01T10:00:00.",
                                            "2024-01-01T10:00+",
                                            "2024-01-01T10:00+0",
                                            "2024-01-01T10:00+01:"};
    for (size_t i = 0; i < sizeof truncated / sizeof truncated[0]; i++) {
        size_t len = strlen(truncated[i]);
        char *s = malloc(len + 1);
        memcpy(s, truncated[i], len + 1);
        int64_t us = 0;
        cr_assert_eq(acache__iso8601_parse(s, len, &us), -1, "%s", truncated[i]);
        free(s);
    }
    int64_t us = 0;
    cr_assert_eq(acache__iso8601_parse(full, n, &us), 0);
    cr_assert_eq(us, INT64_C(1735783445123456));
    /* an embedded NUL is not a timestamp, whatever follows */
    cr_assert_eq(acache__iso8601_parse("2025-01-02T03:04\0Z", 18, &us), -1);
}

#define DOC_V1                                                                           \
    "{\"users\": [{\"id\": \"u1\", \"username\": \"first\", \"email\": \"e\"}]}"
#define DOC_V2                                                                           \
    "{\"users\": [{\"id\": \"u1\", \"username\": \"second\", \"email\": \"e\"}]}"

Test(catalog_json, reload_on_change, .init = tmp_setup, .fini = tmp_teardown)
{
    char *path = tmp_path("r.json");
    write_file(path, DOC_V1);
    cr_assert_eq(acache__catalog_open(&g_cat, path), ACACHE_OK);
    int rc;
    cr_assert_str_eq(username_of(g_cat, "u1", &rc), "first");

    write_file(path, DOC_V2);
    cr_assert_eq(acache__json_catalog_recheck(g_cat), ACACHE_OK);
    cr_assert_str_eq(username_of(g_cat, "u1", &rc), "second");
    cr_assert_eq(rc, 0);

    /* An invalid file is reported once; the previous contents keep serving. */
    write_file(path, "{\"users\": [");
    rc = acache__json_catalog_recheck(g_cat);
    cr_assert_eq(rc, ACACHE_ECATALOG);
    cr_assert(strstr(acache_last_error(), "previous contents"), "%s",
              acache_last_error());
    cr_assert(strstr(acache_last_error(), "line 1"), "%s", acache_last_error());
    cr_assert_eq(acache__json_catalog_recheck(g_cat), ACACHE_OK);
    cr_assert_str_eq(username_of(g_cat, "u1", &rc), "second");
    cr_assert_eq(rc, 0);

    /* Removed: reported once, still serving. */
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(acache__json_catalog_recheck(g_cat), ACACHE_ECATALOG);
    cr_assert_eq(acache__json_catalog_recheck(g_cat), ACACHE_OK);
    cr_assert_str_eq(username_of(g_cat, "u1", &rc), "second");

    write_file(path, DOC_V1);
    cr_assert_eq(acache__json_catalog_recheck(g_cat), ACACHE_OK);
    cr_assert_str_eq(username_of(g_cat, "u1", &rc), "first");
}

Test(catalog_json, reload_by_timer, .init = tmp_setup, .fini = tmp_teardown)
{
    char *path = tmp_path("r.json");
    write_file(path, DOC_V1);
    cr_assert_eq(acache__catalog_open(&g_cat, path), ACACHE_OK);
    int rc;
    write_file(path, DOC_V2);
    /* Checked at most once a second: a look-up within the second still sees v1
     * (the file is stat'ed lazily, so this is not guaranteed on a slow
     * machine; only the eventual switch is asserted). */
    usleep(1100 * 1000);
    cr_assert_str_eq(username_of(g_cat, "u1", &rc), "second");
    cr_assert_eq(rc, 0);
}

static void *lookup_thread(void *arg)
{
    acache_catalog *cat = arg;
    for (int i = 0; i < 2000; i++) {
        char name[64] = "";
        const char *v[] = {"u1"};
        int rc = cat->users(cat, ACACHE_BY_ID, v, 1, name_cb, name);
        if (rc != 0 && rc != ACACHE_ECATALOG)
            return (void *)1;
        if (rc == 0 && strcmp(name, "first") != 0 && strcmp(name, "second") != 0)
            return (void *)2;
    }
    return NULL;
}

Test(catalog_json, concurrent_lookups_during_reloads, .init = tmp_setup,
     .fini = tmp_teardown)
{
    char *path = tmp_path("r.json");
    write_file(path, DOC_V1);
    cr_assert_eq(acache__catalog_open(&g_cat, path), ACACHE_OK);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, lookup_thread, g_cat), 0);
    for (int i = 0; i < 50; i++) {
        write_file(path, i % 2 ? DOC_V1 : DOC_V2);
        acache__json_catalog_recheck(g_cat);
    }
    for (int i = 0; i < 4; i++) {
        void *res;
        pthread_join(th[i], &res);
        cr_assert_null(res);
    }
}

static int count_cb(const acache_cat_usage *row, void *p)
{
    (void)row;
    ++*(size_t *)p;
    return 0;
}

typedef struct demo_ctx {
    acache__crypto *k;
    size_t ok;
} demo_ctx;

static void demo_decrypts(demo_ctx *d, const char *stored)
{
    cr_assert_not_null(stored);
    char *plain = NULL;
    size_t len = 0;
    int rc = acache__crypto_decrypt(d->k, stored, strlen(stored), &plain, &len);
    cr_assert_eq(rc, ACACHE_OK, "demo value does not decrypt: %s", acache_last_error());
    cr_assert(len > 8 && strncmp(plain, "sk-", 3) == 0);
    acache__secret_free(plain, len);
    d->ok++;
}

static int demo_key_cb(const acache_cat_api_key *k, void *p)
{
    demo_decrypts(p, k->key_encrypted);
    return 0;
}

static int demo_pkey_cb(const acache_cat_provider_key *k, void *p)
{
    demo_decrypts(p, k->api_key);
    return 0;
}

static const char **ids_of(json_t *root, const char *table, size_t *n)
{
    json_t *rows = json_object_get(root, table), *row;
    size_t i;
    *n = json_array_size(rows);
    const char **ids = calloc(*n, sizeof *ids);
    json_array_foreach(rows, i, row) ids[i] =
        json_string_value(json_object_get(row, "id"));
    return ids;
}

Test(catalog_json, example_catalog_loads_and_decrypts)
{
    const char *path = ACACHE_SOURCE_DIR "/examples/catalog.json";
    acache_catalog *cat = NULL;
    int rc = acache__catalog_open(&cat, path);
    cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());
    size_t n = 0;
    acache_usage_filter f = {.since = 0};
    cr_assert_eq(cat->usage_scan(cat, &f, count_cb, &n), 0);
    cr_assert_geq(n, 20);

    json_t *root = json_load_file(path, 0, NULL);
    cr_assert(root);
    demo_ctx d = {0};
    const char *pass = "demo-encryption-key";
    cr_assert_eq(acache__crypto_new(&d.k, pass, strlen(pass)), ACACHE_OK);
    size_t nk, npk;
    const char **kids = ids_of(root, "api_keys", &nk);
    const char **pkids = ids_of(root, "provider_api_keys", &npk);
    cr_assert_eq(nk, 5);
    cr_assert_eq(npk, 5);
    cr_assert_eq(cat->api_keys(cat, ACACHE_BY_ID, kids, nk, demo_key_cb, &d), 0);
    cr_assert_eq(cat->provider_keys(cat, ACACHE_BY_ID, pkids, npk, demo_pkey_cb, &d), 0);
    cr_assert_eq(d.ok, 10);
    free(kids);
    free(pkids);
    acache__crypto_free(d.k);
    json_decref(root);
    cat->free(cat);
}
