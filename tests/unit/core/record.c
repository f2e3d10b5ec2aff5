/* Affinity values from other writers: request_count outside int64 (issue 8
 * item 4). Casting such a real to int64_t was undefined behaviour. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

static void keep_count(const acache_record *rec, void *payload)
{
    *(int64_t *)payload = rec->request_count;
}

static int64_t count_of(const char *count_text)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
             "\"created_at\": 1.5, \"expire_at\": 2.5, \"request_count\": %s}",
             count_text);
    int64_t n = -42;
    cr_assert_eq(acache_record_parse(json, strlen(json), keep_count, &n), ACACHE_OK,
                 "%s: %s", count_text, acache_last_error());
    return n;
}

Test(record, real_request_count_saturates)
{
    cr_assert_eq(count_of("1e300"), INT64_MAX);
    cr_assert_eq(count_of("-1e300"), INT64_MIN);
    cr_assert_eq(count_of("9.3e18"), INT64_MAX);
    cr_assert_eq(count_of("9223372036854775808.0"), INT64_MAX); /* 2^63 */
    cr_assert_eq(count_of("-9223372036854775808.0"), INT64_MIN);
    cr_assert_eq(count_of("9.2e18"), INT64_C(9200000000000000000));
    cr_assert_eq(count_of("3.7"), 3);
    cr_assert_eq(count_of("-3.7"), -3);
    cr_assert_eq(count_of("7"), 7);
    cr_assert_eq(count_of("\"7\""), 0); /* not a number: 0, as before */
}

Test(record, saturated_count_renders_as_an_integer)
{
    acache_record rec = {.provider_id = "p",
                         .endpoint_id = "e",
                         .key_id = "k",
                         .request_count = count_of("1e300")};
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_record_render(&b, &rec), ACACHE_OK);
    cr_assert(strstr(b.ptr, "\"request_count\": 9223372036854775807}") != NULL, "%s",
              b.ptr);
    acache_buf_dispose(&b);
}
