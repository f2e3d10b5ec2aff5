/* The record parse's strict fast path (issue 12 item 3): the exact layout
 * that Python's json.dumps and this library write is read without jansson,
 * and every deviation falls back to jansson with the same result. Each case
 * compares acache_record_parse with the jansson-only parse. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

#include "core/core.h"

typedef struct seen {
    int calls;
    char s[5][512];
    int has[5];
    double created_at, expire_at;
    int64_t count;
} seen;

static void keep(const acache_record *rec, void *payload)
{
    seen *x = payload;
    const char *f[5] = {rec->provider_id, rec->endpoint_id, rec->key_id, rec->api_format,
                        rec->model_name};
    for (int i = 0; i < 5; i++) {
        x->has[i] = f[i] != NULL;
        snprintf(x->s[i], sizeof x->s[i], "%s", f[i] ? f[i] : "");
    }
    x->created_at = rec->created_at;
    x->expire_at = rec->expire_at;
    x->count = rec->request_count;
    x->calls++;
}

/* Both parses agree on `json`; returns the status (and the record in *out). */
static int agree(const char *json, seen *out)
{
    seen a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    size_t len = strlen(json);
    int ra = acache_record_parse(json, len, keep, &a);
    int rb = acache__record_parse_jansson(json, len, keep, &b);
    cr_assert_eq(ra, rb, "status differs on %s", json);
    cr_assert_eq(a.calls, b.calls, "%s", json);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(a.has[i], b.has[i], "%s", json);
        cr_assert_str_eq(a.s[i], b.s[i], "%s", json);
    }
    cr_assert(memcmp(&a.created_at, &b.created_at, sizeof a.created_at) == 0, "%s", json);
    cr_assert(memcmp(&a.expire_at, &b.expire_at, sizeof a.expire_at) == 0, "%s", json);
    cr_assert_eq(a.count, b.count, "%s", json);
    if (out)
        *out = a;
    return ra;
}

#define HEAD                                                                             \
    "{\"provider_id\": \"prov-1\", \"endpoint_id\": \"ep-1\", \"key_id\": \"key-1\", "   \
    "\"api_format\": \"claude\", \"model_name\": \"claude-3\", "
#define STRICT                                                                           \
    HEAD "\"created_at\": 1764625067.123456, \"expire_at\": 1764625367.5, "              \
         "\"request_count\": 42}"

Test(record_fast, strict_layout_reads_every_field)
{
    seen r;
    cr_assert_eq(agree(STRICT, &r), ACACHE_OK);
    cr_assert_str_eq(r.s[0], "prov-1");
    cr_assert_str_eq(r.s[1], "ep-1");
    cr_assert_str_eq(r.s[2], "key-1");
    cr_assert_str_eq(r.s[3], "claude");
    cr_assert_str_eq(r.s[4], "claude-3");
    cr_assert_eq(r.created_at, 1764625067.123456);
    cr_assert_eq(r.expire_at, 1764625367.5);
    cr_assert_eq(r.count, 42);
}

Test(record_fast, rendered_records_take_the_fast_path_and_agree)
{
    acache_record rec = {"p", "e", "k", "f", "m", 1.0 / 3.0, 1e21, INT64_MAX};
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_record_render(&b, &rec), ACACHE_OK);
    seen r;
    cr_assert_eq(agree(b.ptr, &r), ACACHE_OK, "%s", b.ptr);
    cr_assert_eq(r.created_at, 1.0 / 3.0);
    cr_assert_eq(r.count, INT64_MAX);
    acache_buf_dispose(&b);
}

/* Every kind of deviation: jansson decides, and both paths agree. */
Test(record_fast, every_deviation_falls_back_to_jansson)
{
    static const char *const cases[] = {
        /* escapes in strings */
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": 1}",
        "{\"provider_id\": \"p\\\"q\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"\\u6a21\\u578b\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        "{\"provider_id\": \"p\\u0000x\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        /* raw UTF-8 (jansson validates it) and invalid UTF-8 */
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"\xe6\xa8\xa1\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"\xff\xfe\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        /* a control character inside a string */
        "{\"provider_id\": \"p\tq\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        /* key order */
        "{\"endpoint_id\": \"e\", \"provider_id\": \"p\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        /* missing fields (older writers), extra field, duplicate field */
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": 1}",
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5}",
        STRICT,
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1, \"extra\": true}",
        "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1, \"request_count\": 2}",
        /* whitespace: compact separators, trailing newline, leading space */
        "{\"provider_id\":\"p\",\"endpoint_id\":\"e\",\"key_id\":\"k\","
        "\"api_format\":\"f\",\"model_name\":\"m\",\"created_at\":1.5,"
        "\"expire_at\":2.5,\"request_count\":1}",
        STRICT "\n",
        " " STRICT,
        STRICT " x",
        /* numbers outside the strict grammar, or out of range */
        HEAD "\"created_at\": 01.5, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 1., \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": .5, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": +1.5, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 1e, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 1e999, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 1e-999, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": NaN, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": Infinity, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 0x10, \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 1764625067, \"expire_at\": -0.0, \"request_count\": 1}",
        HEAD "\"created_at\": 99999999999999999999, \"expire_at\": 2.5, "
             "\"request_count\": 1}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": 1.0}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": 1e300}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": -7}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": 007}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, "
             "\"request_count\": 9223372036854775807}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, "
             "\"request_count\": 9223372036854775808}",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, "
             "\"request_count\": -9223372036854775808}",
        /* wrong types */
        HEAD "\"created_at\": \"1.5\", \"expire_at\": 2.5, \"request_count\": 1}",
        HEAD "\"created_at\": 1.5, \"expire_at\": null, \"request_count\": 1}",
        "{\"provider_id\": 7, \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
        "\"expire_at\": 2.5, \"request_count\": 1}",
        /* truncated, not an object, empty */
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": 1",
        HEAD "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": }",
        "[1, 2, 3]",
        "",
    };
    int ok = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ok += agree(cases[i], NULL) == ACACHE_OK;
    cr_assert_gt(ok, 10, "some deviations are still valid values");
}

/* Values longer than the stack buffer take the heap copy. */
Test(record_fast, long_values)
{
    size_t n = 5000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    size_t cap = n + 512;
    char *json = malloc(cap);
    snprintf(json, cap,
             "{\"provider_id\": \"%s\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
             "\"api_format\": \"f\", \"model_name\": \"m\", \"created_at\": 1.5, "
             "\"expire_at\": 2.5, \"request_count\": 3}",
             big);
    seen r;
    cr_assert_eq(agree(json, &r), ACACHE_OK);
    cr_assert_eq(r.count, 3);
    free(json);
    free(big);
}

/* Not NUL-terminated: the parse reads exactly len bytes. */
Test(record_fast, reads_only_len_bytes)
{
    const char *s = STRICT;
    size_t len = strlen(s);
    char *copy = malloc(len);
    memcpy(copy, s, len);
    seen r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(acache_record_parse(copy, len, keep, &r), ACACHE_OK);
    cr_assert_eq(r.count, 42);
    cr_assert_neq(acache_record_parse(copy, len - 1, keep, &r), ACACHE_OK);
    free(copy);
}
