/* Every allocation failure in the analyses and the model-mapping stats is
 * reported (never a crash, never a leak: ASan checks at exit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

#include "harness.h"
#include "mapping/mapping_priv.h"
#include "util/util.h"
#include "worked_data.h"

typedef int (*json_fn)(acache_buf *out, acache *c);

static int ttl_fn(acache_buf *o, acache *c)
{
    return acache_ttl_analysis(o, c, 168, NULL, NULL);
}
static int hit_fn(acache_buf *o, acache *c)
{
    return acache_hit_analysis(o, c, 168, NULL, NULL);
}
static int tl_fn(acache_buf *o, acache *c)
{
    return acache_interval_timeline(o, c, 24, 10000, NULL, 1);
}
static int mm_fn(acache_buf *o, acache *c)
{
    return acache_model_mapping_stats(o, c);
}

static void run_until_ok(acache *c, json_fn fn)
{
    acache_buf ref = ACACHE_BUF_INIT;
    cr_assert_eq(fn(&ref, c), ACACHE_OK, "%s", acache_last_error());
    for (unsigned long n = 1; n < 100000; n++) {
        acache_buf b = ACACHE_BUF_INIT;
        acache__alloc_fail_at(n);
        int rc = fn(&b, c);
        acache__alloc_fail_at(0);
        if (rc == ACACHE_OK) {
            cr_log_info("succeeded after %lu failure points", n - 1);
            cr_assert_gt(n, 1);
            cr_assert_str_eq(b.ptr, ref.ptr);
            acache_buf_dispose(&b);
            break;
        }
        cr_assert(rc < 0);
        cr_assert_null(b.ptr, "failed call %lu left output", n);
    }
    acache_buf_dispose(&ref);
}

static acache *open_worked(char *path)
{
    strcpy(path, "/tmp/acache-oom-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, WORKED_EPOCH, strlen(WORKED_EPOCH)),
                 (ssize_t)strlen(WORKED_EPOCH));
    close(fd);
    th_set_time(WORKED_NOW);
    acache_options o = ACACHE_OPTIONS_INIT;
    o.catalog_uri = path;
    return th_open(&o);
}

Test(analysis_oom, every_failure_is_clean, .timeout = 120)
{
    char path[64];
    acache *c = open_worked(path);
    run_until_ok(c, ttl_fn);
    run_until_ok(c, hit_fn);
    run_until_ok(c, tl_fn);
    acache_close(c);
    unlink(path);
}

Test(analysis_oom, mapping_stats_every_failure_is_clean, .timeout = 120)
{
    char path[64];
    acache *c = open_worked(path);
    acache_handle_store(c)->caps |= ACACHE_STORE_CAP_RAW_KEYS;
    th_load_jsonl(c, TH_TESTDATA("aether-redis/model-mapping.jsonl"));
    run_until_ok(c, mm_fn);
    acache_close(c);
    unlink(path);
}
