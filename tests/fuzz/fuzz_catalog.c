/* libFuzzer: a JSON catalog from arbitrary bytes (issue 8 item 5).
 * The bytes go to the timestamp parser directly (libFuzzer's buffer has
 * exactly `size` bytes, so ASan sees any read past the end), then through a
 * memfd as a catalog file: load, look-ups, and the three usage analyses over
 * whatever usage rows (ISO 8601 or epoch created_at) it holds. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <aether_cache/aether_cache.h>

#include "catalog/internal.h"
#include "core/core.h"

#define NOW 1800000000.0

static double fixed_clock(void *payload)
{
    (void)payload;
    return NOW;
}

static int fd = -1;
static char path[64];

static int count_user(const acache_cat_user *row, void *payload)
{
    (void)row;
    ++*(size_t *)payload;
    return 0;
}

static int count_usage(const acache_cat_usage *row, void *payload)
{
    (void)row;
    ++*(size_t *)payload;
    return 0;
}

static void lookups(acache_catalog *cat)
{
    static const char *const ids[] = {"u1", "alice", "alice@example.com", ""};
    size_t n = 0;
    cat->users(cat, ACACHE_BY_ID, ids, 4, count_user, &n);
    cat->users(cat, ACACHE_BY_USERNAME, ids, 4, count_user, &n);
    cat->users(cat, ACACHE_BY_EMAIL, ids, 4, count_user, &n);
    acache_usage_filter f = {.since = 0};
    cat->usage_scan(cat, &f, count_usage, &n);
}

static void analyses(void)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = "memory://";
    o.catalog_uri = path;
    o.clock = fixed_clock;
    acache *c = NULL;
    if (acache_open(&c, &o) != ACACHE_OK)
        return;
    acache_buf b = ACACHE_BUF_INIT;
    acache_ttl_analysis(&b, c, 720, NULL, NULL);
    acache_buf_dispose(&b);
    acache_hit_analysis(&b, c, 720, NULL, NULL);
    acache_buf_dispose(&b);
    acache_interval_timeline(&b, c, 720, 100, NULL, 1);
    acache_buf_dispose(&b);
    acache_user_affinities(&b, c, "alice");
    acache_buf_dispose(&b);
    acache_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t us;
    (void)acache__iso8601_parse((const char *)data, size, &us);

    if (fd < 0) {
        fd = memfd_create("acache-fuzz-catalog", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    acache_catalog *cat = NULL;
    if (acache__catalog_open(&cat, path) == ACACHE_OK) {
        lookups(cat);
        cat->free(cat);
        analyses();
    }
    return 0;
}
