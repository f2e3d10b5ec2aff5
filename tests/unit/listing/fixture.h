/* Shared fixture of the listing tests: a JSON catalog written to a temp file,
 * a memory store filled through the public touch API, and a counting catalog
 * proxy. Everything is static: each test file gets its own copy. */
#ifndef ACACHE_TEST_LISTING_FIXTURE_H
#define ACACHE_TEST_LISTING_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "admin/listing_priv.h"
#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/catalog.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "harness.h"

/* base64url of bytes 0..31: a Fernet key used directly (no PBKDF2 per test). */
#define LF_FERNET_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define LF_NOW 1800000000.0

#define PLAIN_A1 "sk-alice-1234567890abcdef"
#define PLAIN_PK1 "sk-ant-api03-abcdefghijklmnop"
#define PLAIN_PK2 "short"

static char lf_path[256];
/* When set (PostgreSQL tests), the catalog URI used instead of lf_path. */
static const char *lf_catalog_uri;

static inline char *lf_encrypt(const char *key, const char *plain)
{
    acache__crypto *k = NULL;
    cr_assert_eq(acache__crypto_new(&k, key, strlen(key)), ACACHE_OK, "%s",
                 acache_last_error());
    unsigned char iv[16];
    for (int i = 0; i < 16; i++)
        iv[i] = (unsigned char)(i * 7 + 1);
    char *stored = NULL;
    cr_assert_eq(
        acache__crypto_encrypt(k, plain, strlen(plain), 1700000000u, iv, &stored),
        ACACHE_OK, "%s", acache_last_error());
    acache__crypto_free(k);
    return stored;
}

/* Writes the catalog; `key` is the encryption key the ciphertexts use. */
static inline void lf_write_catalog(const char *key)
{
    char *a1 = lf_encrypt(key, PLAIN_A1);
    char *pk1 = lf_encrypt(key, PLAIN_PK1);
    char *pk2 = lf_encrypt(key, PLAIN_PK2);
    json_t *root = json_pack(
        "{s:[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s},"
        "    {s:s,s:s,s:s},{s:s,s:s,s:s}],"
        " s:[{s:s,s:s,s:s,s:s,s:b},{s:s,s:s,s:s,s:n,s:b},{s:s,s:s,s:s,s:s,s:b},"
        "    {s:s,s:s,s:s,s:n,s:b},{s:s,s:s,s:s,s:n,s:b}],"
        " s:[{s:s,s:s,s:s,s:b},{s:s,s:s,s:s,s:b}],"
        " s:[{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s}],"
        " s:[{s:s,s:s,s:s,s:s,s:f},{s:s,s:s,s:s,s:s,s:f},{s:s,s:s,s:s,s:s,s:f}],"
        " s:[{s:s,s:s,s:s,s:b}], s:[], s:[]}",
        "users", "id", "user-1", "username", "alice", "email", "alice@example.com", "id",
        "user-2", "username", "Bob", "email", "bob@corp.example", "id", "user-3",
        "username", "carol", "email", "carol@example.com",
        /* resolution order: this username is user-1's id, this email alice's name */
        "id", "user-4", "username", "user-1", "email", "alice",
        /* a username equal to an API key id wins over the key (step 2 < step 4) */
        "id", "user-5", "username", "key-a1", "email", "eve@example.com",
        /* non-ASCII letters for Unicode case folding (key-z1, pinned by tests) */
        "id", "user-6", "username", "zoe", "email", "ZO\xc3\x8b@EXAMPLE.COM",
        /* no api_keys rows at all */
        "id", "user-7", "username", "dave", "email", "dave@example.com", "api_keys", "id",
        "key-a1", "user_id", "user-1", "name", "Alice Main", "key_encrypted", a1,
        "is_standalone", 0, "id", "key-a2", "user_id", "user-1", "name", "Alice CI",
        "key_encrypted", "is_standalone", 0, "id", "key-b1", "user_id", "user-2", "name",
        "Bob Key", "key_encrypted", "not-a-token", "is_standalone", 1, "id", "key-c1",
        "user_id", "user-3", "name", "Carol", "key_encrypted", "is_standalone", 0, "id",
        "key-z1", "user_id", "user-6", "name", "Zo\xc3\xab Key", "key_encrypted",
        "is_standalone", 0, "providers", "id", "prov-1", "name", "anthropic",
        "display_name", "Anthropic Direct", "is_active", 1, "id", "prov-2", "name",
        "relay", "display_name", "OpenAI Relay", "is_active", 1, "provider_endpoints",
        "id", "ep-1", "provider_id", "prov-1", "api_format", "CLAUDE", "base_url",
        "https://api.anthropic.com", "id", "ep-2", "provider_id", "prov-2", "api_format",
        "OPENAI", "base_url", "https://relay.example/v1", "provider_api_keys", "id",
        "pk-1", "endpoint_id", "ep-1", "name", "anthropic-prod", "api_key", pk1,
        "rate_multiplier", 1.5, "id", "pk-2", "endpoint_id", "ep-2", "name", "relay-key",
        "api_key", pk2, "rate_multiplier", 0.8,
        /* the same stored text as pk-1: decrypted once per listing */
        "id", "pk-3", "endpoint_id", "ep-1", "name", "anthropic-spare", "api_key", pk1,
        "rate_multiplier", 1.0, "global_models", "id", "gm-1", "name", "claude-sonnet-4",
        "display_name", "Claude Sonnet 4", "is_active", 1, "models", "usage");
    cr_assert_not_null(root, "json_pack of the catalog failed");
    snprintf(lf_path, sizeof lf_path, "/tmp/acache-listing-XXXXXX");
    int fd = mkstemp(lf_path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(json_dump_file(root, lf_path, 0), 0);
    json_decref(root);
    free(a1);
    free(pk1);
    free(pk2);
}

static inline void lf_remove_catalog(void)
{
    if (lf_path[0])
        unlink(lf_path);
    lf_path[0] = '\0';
}

/* ---- counting catalog proxy ---- */

enum { LF_USERS, LF_KEYS, LF_PROVS, LF_EPS, LF_PKEYS, LF_GMS, LF_MODELS, LF_NT };

typedef struct {
    acache_catalog parent;
    acache_catalog *inner;
    int calls[LF_NT];
    size_t values[LF_NT]; /* values asked for, summed */
} lf_proxy;

#define LF_FWD(slot, idx, cbtype)                                                        \
    static inline int lf_##slot(acache_catalog *self, int by, const char *const *values, \
                                size_t n, cbtype cb, void *payload)                      \
    {                                                                                    \
        lf_proxy *p = (lf_proxy *)self;                                                  \
        p->calls[idx]++;                                                                 \
        p->values[idx] += n;                                                             \
        return p->inner->slot(p->inner, by, values, n, cb, payload);                     \
    }

LF_FWD(users, LF_USERS, acache_cat_user_cb)
LF_FWD(api_keys, LF_KEYS, acache_cat_api_key_cb)
LF_FWD(providers, LF_PROVS, acache_cat_provider_cb)
LF_FWD(endpoints, LF_EPS, acache_cat_endpoint_cb)
LF_FWD(provider_keys, LF_PKEYS, acache_cat_provider_key_cb)
LF_FWD(global_models, LF_GMS, acache_cat_global_model_cb)
LF_FWD(models, LF_MODELS, acache_cat_model_cb)

static inline int lf_usage_scan(acache_catalog *self, const acache_usage_filter *f,
                                acache_cat_usage_cb cb, void *payload)
{
    lf_proxy *p = (lf_proxy *)self;
    return p->inner->usage_scan(p->inner, f, cb, payload);
}

static inline void lf_proxy_free(acache_catalog *self)
{
    lf_proxy *p = (lf_proxy *)self;
    p->inner->free(p->inner);
    free(p);
}

static inline void lf_proxy_reset(lf_proxy *p)
{
    memset(p->calls, 0, sizeof p->calls);
    memset(p->values, 0, sizeof p->values);
}

static inline double lf_clock(void *payload)
{
    (void)payload;
    return th_time();
}

/* Open a handle: catalog none / file / proxied file, crypto key or none. */
static inline acache *lf_open(int with_catalog, const char *enc_key, lf_proxy **proxy_out)
{
    th_set_time(LF_NOW);
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = th_store_uri();
    o.clock = lf_clock;
    o.encryption_key = enc_key;
    acache *c = NULL;
    if (proxy_out) {
        lf_proxy *p = calloc(1, sizeof *p);
        cr_assert_not_null(p);
        cr_assert_eq(
            acache__catalog_open(&p->inner, lf_catalog_uri ? lf_catalog_uri : lf_path),
            ACACHE_OK, "%s", acache_last_error());
        p->parent.version = ACACHE_CATALOG_VERSION;
        p->parent.scheme = "proxy";
        p->parent.users = lf_users;
        p->parent.api_keys = lf_api_keys;
        p->parent.providers = lf_providers;
        p->parent.endpoints = lf_endpoints;
        p->parent.provider_keys = lf_provider_keys;
        p->parent.global_models = lf_global_models;
        p->parent.models = lf_models;
        p->parent.usage_scan = lf_usage_scan;
        p->parent.free = lf_proxy_free;
        cr_assert_eq(acache_open_with_backends(&c, &o, NULL, &p->parent), ACACHE_OK, "%s",
                     acache_last_error());
        *proxy_out = p;
    } else {
        o.catalog_uri = with_catalog ? (lf_catalog_uri ? lf_catalog_uri : lf_path) : NULL;
        cr_assert_eq(acache_open(&c, &o), ACACHE_OK, "%s", acache_last_error());
    }
    return c;
}

static inline void lf_pin(acache *c, const char *ak, const char *fmt, const char *model,
                          const char *prov, const char *ep, const char *key, uint32_t ttl)
{
    cr_assert_eq(acache__affinity_set(NULL, c, ak, fmt, model, prov, ep, key, 1, ttl),
                 ACACHE_OK, "touch %s: %s", ak, acache_last_error());
}

/* Expected order without keyword (expire_at desc, ties by key):
 *   R2 (600) key-a2/openai/gpt-4o, R1 (300) key-a1/claude/gm-1,
 *   R5 (300) key-a1/openai/gm-1, R4 (200) key-zz/gemini/gm-1,
 *   R3 (100) key-b1/claude/qwen2.5:7b */
static inline void lf_fill(acache *c)
{
    lf_pin(c, "key-a1", "claude", "gm-1", "prov-1", "ep-1", "pk-1", 300);
    lf_pin(c, "key-a2", "openai", "gpt-4o", "prov-2", "ep-2", "pk-2", 600);
    lf_pin(c, "key-b1", "claude", "qwen2.5:7b", "prov-1", "ep-1", "pk-3", 100);
    lf_pin(c, "key-zz", "gemini", "gm-1", "prov-x", "ep-x", "pk-x", 200);
    lf_pin(c, "key-a1", "openai", "gm-1", "prov-1", "ep-1", "pk-1", 300);
}

static inline acache__listing *lf_list(acache *c, const char *kw, int64_t limit,
                                       int64_t offset)
{
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = kw;
    q.limit = limit;
    q.offset = offset;
    acache__listing *l = NULL;
    int rc = acache__list_affinities(&l, c, &q);
    cr_assert_eq(rc, ACACHE_OK, "list(%s): %s", kw ? kw : "(null)", acache_last_error());
    cr_assert_not_null(l);
    return l;
}

/* The page's affinity keys joined by ',' with api_format, e.g. "key-a1/claude,...". */
static inline void lf_keys(const acache__listing *l, char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t i = 0; i < acache__listing_count(l); i++) {
        const acache__listing_item *it = acache__listing_at(l, i);
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s/%s", i ? "," : "",
                 acache__listing_item_affinity_key(it),
                 acache__listing_item_api_format(it));
    }
}

#define LF_EXPECT(l, expected)                                                           \
    do {                                                                                 \
        char got_[1024];                                                                 \
        lf_keys((l), got_, sizeof got_);                                                 \
        cr_assert_str_eq(got_, (expected));                                              \
    } while (0)

static inline json_t *lf_parse(const acache_buf *b)
{
    json_error_t err;
    json_t *j = json_loadb(b->ptr, b->size, JSON_ALLOW_NUL, &err);
    cr_assert_not_null(j, "bad JSON (%s): %s", err.text, b->ptr);
    return j;
}

#endif
