/* Every listing entry point, then an explicit LeakSanitizer pass: Criterion's
 * workers exit without reliably reporting leaks, so check them here. */
#include "fixture.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>

Test(listing_leaks, every_path_frees_what_it_allocates)
{
    lf_write_catalog(LF_FERNET_KEY);
    lf_proxy *p = NULL;
    acache *c = lf_open(1, LF_FERNET_KEY, &p);
    lf_fill(c);
    static const char *kws[] = {NULL, "bO", "alice", "key-a1", "carol", "\xff", "zzz"};
    for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++)
        acache__listing_free(lf_list(c, kws[i], 2, 1));
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&b, c, "x", 10, 0), ACACHE_OK);
    cr_assert_eq(th_list_json(&b, c, NULL, 0, 0), ACACHE_EINVALID);
    cr_assert_eq(acache_user_affinities(&b, c, "alice"), ACACHE_OK);
    cr_assert_eq(acache_user_affinities(&b, c, "carol"), ACACHE_OK);
    cr_assert_eq(acache_user_affinities(&b, c, "nobody"), ACACHE_ENOTFOUND);
    cr_assert_eq(acache_user_affinities(&b, c, "key-b1"), ACACHE_OK);
    cr_assert_eq(acache_resolve_user(&b, c, "key-b1"), ACACHE_OK);
    cr_assert_eq(acache__clear_user_json(&b, c, "key-b1"), ACACHE_OK);
    cr_assert_eq(acache__clear_user_json(&b, c, "alice"), ACACHE_OK);
    cr_assert_eq(acache__clear_user_json(&b, c, "nobody"), ACACHE_ENOTFOUND);
    acache_buf_dispose(&b);
    acache_close(c);
    lf_remove_catalog();
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks reported above");
}

/* Fail the Nth allocation for every N a listing makes: each failure surfaces as
 * ACACHE_ENOMEM and frees what was built so far. */
Test(listing_leaks, allocation_failures)
{
    lf_write_catalog(LF_FERNET_KEY);
    lf_proxy *p = NULL;
    acache *c = lf_open(1, LF_FERNET_KEY, &p);
    lf_fill(c);
    static const char *kws[] = {NULL, "bO", "alice", "key-a1"};
    for (size_t k = 0; k < sizeof kws / sizeof kws[0]; k++) {
        int ok_streak = 0;
        for (unsigned long n = 1; n < 2000 && ok_streak < 3; n++) {
            acache_buf b = ACACHE_BUF_INIT;
            acache__alloc_fail_at(n);
            int rc = th_list_json(&b, c, kws[k], 100, 0);
            int rc2 = acache_user_affinities(&b, c, k % 2 ? "key-a1" : "alice");
            acache__alloc_fail_at(0);
            cr_assert(rc == ACACHE_OK || rc == ACACHE_ENOMEM, "n=%lu rc=%d %s", n, rc,
                      acache_last_error());
            cr_assert(rc2 == ACACHE_OK || rc2 == ACACHE_ENOMEM, "n=%lu rc2=%d %s", n, rc2,
                      acache_last_error());
            ok_streak = (rc == ACACHE_OK && rc2 == ACACHE_OK) ? ok_streak + 1 : 0;
            acache_buf_dispose(&b);
        }
        cr_assert_eq(ok_streak, 3);
    }
    acache_close(c);
    lf_remove_catalog();
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks reported above");
}
#endif
