/* Internal helpers: Python float repr, JSON dumping, options, allocation failure. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "core/core.h"
#include "util/json.h"

static void repr_is(double v, const char *want)
{
    char buf[64];
    acache__fmt_double(buf, sizeof buf, v);
    cr_assert_str_eq(buf, want, "repr(%.17g)", v);
}

Test(util, float_repr_matches_python)
{
    repr_is(0.1, "0.1");
    repr_is(12.0, "12.0");
    repr_is(100.0, "100.0");
    repr_is(4.6, "4.6");
    repr_is(0.0186, "0.0186");
    repr_is(1795309733.4665794, "1795309733.4665794");
    repr_is(1e16, "1e+16");
    repr_is(1e-5, "1e-05");
    repr_is(0.0001, "0.0001");
    repr_is(123456789012345.0, "123456789012345.0");
    repr_is(-2.5, "-2.5");
    repr_is(0.0, "0.0");
    repr_is(7.600000000000001, "7.600000000000001");
}

Test(util, json_dump_uses_python_separators_and_reals)
{
    json_t *o = json_pack("{s:f, s:[f, i], s:s}", "a", 0.1, "b", 4.6, 3, "c",
                          "\x01"
                          "5\x01");
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache__json_dump(&b, o, 0), ACACHE_OK);
    /* A string holding the marker byte forces jansson's own digits. */
    cr_assert(strstr(b.ptr, "\"a\": 0.1") == NULL || strstr(b.ptr, "\\u0001") != NULL);
    json_decref(o);
    o = json_pack("{s:f, s:[f, i], s:s}", "a", 0.1, "b", 4.6, 3, "c", "ü");
    cr_assert_eq(acache__json_dump(&b, o, 0), ACACHE_OK);
    cr_assert_str_eq(b.ptr, "{\"a\": 0.1, \"b\": [4.6, 3], \"c\": \"ü\"}");
    json_decref(o);
    acache_buf_dispose(&b);
}

Test(util, invalid_utf8_strings_are_replaced_not_dropped)
{
    json_t *s = acache__json_str("ok\xff\xfe!");
    cr_assert_not_null(s);
    cr_assert_str_eq(json_string_value(s), "ok\xEF\xBF\xBD\xEF\xBF\xBD!");
    json_decref(s);
}

Test(util, options_versions)
{
    acache_options o;
    cr_assert_eq(acache_options_init(&o, 0), ACACHE_EINVALID);
    cr_assert_eq(acache_options_init(&o, ACACHE_OPTIONS_VERSION + 1), ACACHE_EINVALID);
    cr_assert_eq(acache_options_init(&o, ACACHE_OPTIONS_VERSION), ACACHE_OK);
    cr_assert_eq(acache_options_size(), sizeof(acache_options));
    o.version = 7;
    acache *c = (acache *)1;
    cr_assert_eq(acache_open(&c, &o), ACACHE_EINVALID);
    cr_assert_null(c);
    acache_options bad = ACACHE_OPTIONS_INIT;
    bad.store_uri = "ftp://nope";
    cr_assert_eq(acache_open(&c, &bad), ACACHE_EINVALID);
    cr_assert(strstr(acache_last_error(), "ftp://nope"));
    acache_close(NULL);
    cr_assert_str_eq(acache_version(), ACACHE_VERSION_STRING);
    cr_assert_eq(acache_version_number(), ACACHE_VERSION_NUMBER);
    cr_assert_str_eq(acache_strerror(ACACHE_ENOTFOUND), "not found");
    cr_assert_str_eq(acache_strerror(-1000), "unknown status");
}

Test(util, error_messages_are_per_thread)
{
    acache_error_set(ACACHE_ERROR, "main thread %d", 1);
    cr_assert_str_eq(acache_last_error(), "main thread 1");
    acache_clear_error();
    cr_assert_str_eq(acache_last_error(), "");
}

/* Fail each allocation in turn through a full open/touch/list/stats/close
 * cycle: every path must report ENOMEM (or succeed) and leak nothing (ASan). */
Test(util, every_allocation_failure_is_handled)
{
    int failures_seen = 0;
    for (unsigned long n = 1; n < 400; n++) {
        acache__alloc_fail_at(n);
        acache *c = NULL;
        int rc = acache_open(&c, NULL);
        if (rc == ACACHE_OK) {
            acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0);
            acache_affinity *a = NULL;
            acache_affinity_get(&a, c, "ak", "claude", "m");
            acache_affinity_free(a);
            acache__affinity_list *l = NULL;
            acache__affinity_list_fetch(&l, c, NULL);
            acache__affinity_list_free(l);
            acache_buf b = ACACHE_BUF_INIT;
            acache_stats_json(&b, c);
            acache_buf_dispose(&b);
            acache_metrics_text(&b, c);
            acache_buf_dispose(&b);
            acache_close(c);
        } else {
            cr_assert_eq(rc, ACACHE_ENOMEM, "open failed with %d: %s", rc,
                         acache_last_error());
            failures_seen++;
        }
    }
    acache__alloc_fail_at(0);
    cr_assert_gt(failures_seen, 0);
}
