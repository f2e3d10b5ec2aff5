/* libFuzzer: the model-mapping stats (issue 8 items 1 and 14) over arbitrary
 * key and value bytes, as the scans of a shared Redis would hand them over:
 * census, classification, catalog join and JSON rendering, without a store.
 *
 * Input: byte 0 picks the options (bit 0: join with a small catalog, bits
 * 1-3: list cap 1..8 or the default 100, bit 4: listed TTLs positive). The
 * rest is records separated by 0x1E; in each, the first byte picks a key
 * prefix (a Redis family, or none), the bytes up to the first 0x1F are the
 * rest of the key (NUL included) and the bytes after it the value; a record
 * without 0x1F is a key whose value is gone. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <aether_cache/aether_cache.h>
#include <jansson.h>

#include "catalog/internal.h"
#include "mapping/mapping_priv.h"

#define MAX_ENTRIES 256
#define MAX_KEY 512

static const char *const prefixes[8] = {
    "model:id:",
    "model:provider_global:",
    "model:provider_global:hits:",
    "global_model:id:",
    "global_model:name:",
    "global_model:resolve:",
    "model:",
    "",
};

/* Ids the fuzzer can reach from the seeds: providers p, q (inactive), GM g. */
static const char catalog_json[] =
    "{\"providers\": [{\"id\": \"p\", \"name\": \"prov\", \"display_name\": \"Prov\", "
    "\"is_active\": true}, {\"id\": \"q\", \"name\": \"q\", \"display_name\": \"\", "
    "\"is_active\": false}], \"global_models\": [{\"id\": \"g\", \"name\": \"gm\", "
    "\"display_name\": \"GM\", \"is_active\": true}], \"models\": [{\"id\": \"m1\", "
    "\"provider_id\": \"p\", \"global_model_id\": \"g\", \"provider_model_name\": \"x\", "
    "\"provider_model_mappings\": [{\"name\": \"alias\"}, {\"name\": \"a b\"}], "
    "\"is_active\": true}]}";

static acache_catalog *cat;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A memfd stays readable by path for the catalog's reload checks. */
    int fd = memfd_create("fuzz_mapping_catalog", 0);
    if (fd < 0 || write(fd, catalog_json, sizeof catalog_json - 1) !=
                      (ssize_t)(sizeof catalog_json - 1))
        abort();
    static char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (acache__catalog_json_new(&cat, path) != ACACHE_OK) {
        fprintf(stderr, "fuzz_mapping: catalog: %s\n", acache_last_error());
        abort();
    }
    return 0;
}

static void read_back(const acache__model_mapping_stats *s)
{
    size_t sink = 0;
    for (size_t i = 0; i < acache__model_mapping_stats_mapping_count(s); i++) {
        const char *n = acache__model_mapping_stats_mapping_name(s, i);
        sink += n ? strlen(n) : 0;
        for (size_t k = 0; k < acache__model_mapping_stats_mapping_provider_count(s, i);
             k++)
            sink += strlen(acache__model_mapping_stats_mapping_provider(s, i, k));
    }
    for (size_t i = 0; i < acache__model_mapping_stats_unmapped_count(s); i++)
        sink += (size_t)acache__model_mapping_stats_unmapped_status(s, i);
    for (size_t i = 0; i < acache__model_mapping_stats_pm_count(s); i++)
        for (size_t k = 0; k < acache__model_mapping_stats_pm_alias_count(s, i); k++)
            sink += strlen(acache__model_mapping_stats_pm_alias(s, i, k));
    if (sink == (size_t)-1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t opt = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    static acache_entry e[MAX_ENTRIES];
    static char keys[MAX_ENTRIES][MAX_KEY + 32];
    size_t n = 0;
    while (p < end && n < MAX_ENTRIES) {
        const char *rs = memchr(p, 0x1E, (size_t)(end - p));
        const char *rec_end = rs ? rs : end;
        if (rec_end > p) {
            const char *pre = prefixes[(uint8_t)*p & 7];
            const char *k = p + 1;
            const char *us = memchr(k, 0x1F, (size_t)(rec_end - k));
            size_t klen = (size_t)((us ? us : rec_end) - k);
            if (klen > MAX_KEY)
                klen = MAX_KEY;
            size_t pl = strlen(pre);
            memcpy(keys[n], pre, pl);
            memcpy(keys[n] + pl, k, klen);
            e[n] = (acache_entry){keys[n], pl + klen, NULL, NULL, 0};
            if (us) {
                e[n].value = us + 1;
                e[n].value_len = (size_t)(rec_end - us - 1);
            }
            n++;
        }
        p = rs ? rs + 1 : end;
    }
    size_t cap = (opt >> 1) & 7;
    acache__model_mapping_stats *s = NULL;
    if (acache__model_mapping_stats_from_entries(&s, e, n, (opt & 1) ? cat : NULL, 300,
                                                 cap, (opt & 16) ? 42 : -1) != ACACHE_OK)
        return 0;
    read_back(s);
    acache_buf b = ACACHE_BUF_INIT;
    if (acache__model_mapping_stats_render(&b, s) == ACACHE_OK && b.ptr) {
        /* The output is JSON. */
        json_t *j = json_loadb(b.ptr, b.size, JSON_ALLOW_NUL, NULL);
        if (!j)
            abort();
        json_decref(j);
    }
    acache_buf_dispose(&b);
    acache__model_mapping_stats_free(s);
    return 0;
}
